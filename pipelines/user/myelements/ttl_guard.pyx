"""TtlGuard: an element written in Cython, outside nmroute, built on first load."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t

from nmroute.fastpath.batch cimport Batch, Desc, PF_IPV4, PF_IPV6, drop_pkt
from nmroute.fastpath.csum cimport csum_update16
from nmroute.fastpath.drops cimport DROP_TTL_EXPIRED
from nmroute.fastpath.element cimport Element, PER_PACKET
from nmroute.fastpath.parse cimport ensure_parsed, rd16, wr16

from nmroute.schema import Int, Param


cdef class TtlGuard(Element):
    """Drops IP packets whose TTL (hop limit) is below `min_ttl` and
    decrements it in the others, updating the IPv4 header checksum
    (RFC 1624). Frames that are not IP go to `other`, untouched.

    Outputs:
        out: IPv4 and IPv6 packets, TTL decremented
        other: everything else
    Counters:
        decremented: packets whose TTL was decremented
    Drops:
        ttl-expired: TTL below min_ttl
        malformed:*: headers that lie about their lengths
    Example:
        ports: {src: "gen:count=100", dst: sink}
        elements: {g: {type: "myelements.ttl_guard:TtlGuard", min_ttl: 2}}
        links: ["src -> g -> dst", "g [other] -> drop"]
    """
    TYPE = "ttl-guard"
    SUMMARY = "drop IP packets with a low TTL, decrement the others"
    OUTPUTS = ("out", "other")
    PARAMS = (Param("min_ttl", Int(1, 255), "lowest TTL let through (before decrement)", 2),)
    COUNTERS = ("decremented",)

    cdef uint8_t min_ttl

    def configure(self, min_ttl=2):
        self.min_ttl = min_ttl

    cdef int process(self, Batch* b) noexcept nogil:
        cdef uint32_t i, done = 0
        for i in range(b.n):
            done += guard(&b.d[i], self.min_ttl)
        self.stats[0] += done
        return PER_PACKET


cdef inline uint32_t guard(Desc* p, uint8_t min_ttl) noexcept nogil:
    """Sets p's output or drops it; 1 if its TTL was decremented."""
    cdef int r = ensure_parsed(p)
    cdef uint8_t* ip
    cdef uint16_t old
    if r:
        drop_pkt(p, r)
        return 0
    if p.pflags & PF_IPV4:
        ip = p.data + p.l3_off
        if ip[8] < min_ttl:
            drop_pkt(p, DROP_TTL_EXPIRED)
            return 0
        old = rd16(ip + 8)
        ip[8] -= 1
        wr16(ip + 10, csum_update16(rd16(ip + 10), old, rd16(ip + 8)))
    elif p.pflags & PF_IPV6:
        ip = p.data + p.l3_off
        if ip[7] < min_ttl:
            drop_pkt(p, DROP_TTL_EXPIRED)
            return 0
        ip[7] -= 1
    else:
        p.out = 1
        return 0
    p.out = 0
    return 1
