"""The Python element of the python_element bench case: does nothing, so
the figure is the cost of calling Python once per batch."""
from nmroute.fastpath.pyelement import PyElement


class Null(PyElement):
    """Every packet to `out`."""

    def process_batch(self, batch):
        return 0
