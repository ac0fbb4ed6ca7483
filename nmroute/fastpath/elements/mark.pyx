"""mark: sets every packet's mark (Desc.mark) to a value, passes it on."""
from libc.stdint cimport uint32_t

from nmroute.schema import Int, Param

from nmroute.fastpath.batch cimport Batch
from nmroute.fastpath.element cimport Element


cdef class Mark(Element):
    """Sets the mark of every packet that passes (the descriptor's `mark`,
    user metadata that travels with the packet along its path) to `value`,
    and passes the packet on. Later elements may act on it: `balance` with
    `by: mark` picks its output from the mark.

    Outputs:
        out: every packet, marked
    Params:
        value: the mark, 0..2^32-1
    Counters:
        (none)
    Drops:
        (none)
    Example:
        ports: {src: "gen:count=100", dst: sink}
        elements: {m: {type: mark, value: 7}}
        links: ["src -> m -> dst"]
    """
    TYPE = "mark"
    SUMMARY = "set each packet's mark to a value; pass it on"
    OUTPUTS = ("out",)
    PARAMS = (
        Param("value", Int(0, 0xFFFFFFFF), "the mark to set"),
    )

    cdef uint32_t value

    def configure(self, value):
        self.value = value

    cdef int process(self, Batch* b) noexcept nogil:
        cdef uint32_t i, v = self.value
        for i in range(b.n):
            b.d[i].mark = v
        return 0
