"""sink: counts what it is sent and releases it (netmap's pkt-gen -f rx, without a NIC)."""
from libc.stdint cimport uint32_t, uint64_t

from nmroute.fastpath.ports.port cimport Port
from nmroute.fastpath.ring cimport NmRing, ring_next


cdef class Sink(Port):
    """Counts frames and bytes sent to it, then gives the slots back.

    Example:
        ports: {out: sink}
        links: ["src -> out"]
    """
    SCHEME = "sink"
    SUMMARY = "count and release every frame sent to it"
    DIRECTIONS = ("tx",)
    ARG = None
    PARAMS = ()

    cdef int txsync(self) noexcept nogil:
        cdef NmRing* r = self.tx
        cdef uint32_t i = r.hwcur, n = 0
        cdef uint64_t nbytes = 0
        while i != r.head:
            nbytes += r.slots[i].len
            n += 1
            i = ring_next(r, i)
        return self.tx_done(i, n, nbytes)
