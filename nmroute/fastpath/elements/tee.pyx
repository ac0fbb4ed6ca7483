"""tee: every packet to `out`, and a copy of it to `copy`."""
from nmroute.fastpath.batch cimport Batch
from nmroute.fastpath.element cimport Element


cdef class Tee(Element):
    """Sends every packet to `out` and a copy of it to `copy`.

    The copy is a new buffer taken from the pool before `out`'s branch runs,
    so either branch may rewrite its packets. When the pool has no spare
    buffer left the copy is dropped (reason no-buffer); the original still
    goes to `out`.

    Outputs:
        out: every packet
        copy: a copy of every packet
    Counters:
        (none)
    Drops:
        no-buffer: no spare buffer for a copy
    Example:
        ports: {src: "gen:count=100", a: sink, b: sink}
        elements: {t: tee}
        links: ["src -> t -> a", "t [copy] -> b"]
    """
    TYPE = "tee"
    SUMMARY = "every packet to `out`, a copy to `copy`"
    OUTPUTS = ("out", "copy")
    PARAMS = ()
    FANOUT = True

    cdef int process(self, Batch* b) noexcept nogil:
        return 0
