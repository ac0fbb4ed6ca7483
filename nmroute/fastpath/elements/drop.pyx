"""drop: drops every packet, counted under reason `drop`."""
from libc.stdint cimport uint32_t

from nmroute.fastpath.batch cimport Batch, drop_pkt
from nmroute.fastpath.drops cimport DROP_DROP
from nmroute.fastpath.element cimport Element, PER_PACKET


cdef class Drop(Element):
    """Drops every packet it receives, counted under the reason `drop`.

    The name `drop` may be used in links without declaring it: `x [1] -> drop`.

    Outputs:
        (none)
    Counters:
        (none: the executor counts the drops)
    Drops:
        drop: every packet
    Example:
        ports: {src: "gen:count=100"}
        links: ["src -> drop"]
    """
    TYPE = "drop"
    SUMMARY = "drop every packet (reason: drop)"
    OUTPUTS = ()
    PARAMS = ()

    cdef int process(self, Batch* b) noexcept nogil:
        cdef uint32_t i
        for i in range(b.n):
            drop_pkt(&b.d[i], DROP_DROP)
        return PER_PACKET
