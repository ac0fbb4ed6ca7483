"""counter: counts packets and bytes, passes every packet on."""
from libc.stdint cimport uint32_t, uint64_t

from nmroute.fastpath.batch cimport Batch
from nmroute.fastpath.element cimport Element


cdef class Counter(Element):
    """Counts the packets and bytes that pass, and passes them all on.

    Outputs:
        out: every packet
    Counters:
        packets, bytes
    Drops:
        (none)
    Example:
        ports: {src: "gen:count=1000", dst: sink}
        elements: {c: counter}
        links: ["src -> c -> dst"]
    """
    TYPE = "counter"
    SUMMARY = "count packets and bytes; pass them on"
    OUTPUTS = ("out",)
    PARAMS = ()
    COUNTERS = ("packets", "bytes")

    cdef int process(self, Batch* b) noexcept nogil:
        cdef uint32_t i
        cdef uint64_t nbytes = 0
        for i in range(b.n):
            nbytes += b.d[i].len
        self.stats[0] += b.n
        self.stats[1] += nbytes
        return 0
