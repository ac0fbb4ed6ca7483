"""neighbor: answers ARP requests and IPv6 neighbour solicitations for the
router's own addresses, and learns neighbours' MACs."""
import ipaddress

cimport cython

from nmroute.errors import ParamError
from nmroute.schema import Bool, Custom, Int, Name, Param, parse_mac
from nmroute.fastpath.lpm import neighbor_table

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

from nmroute.fastpath.batch cimport (
    Batch, Desc, drop_pkt, PF_ARP, PF_IPV6, PF_L4, PF_FRAG)
from nmroute.fastpath.csum cimport csum, csum_add
from nmroute.fastpath.drops cimport DROP_BAD_CHECKSUM, DROP_MALFORMED_L4
from nmroute.fastpath.element cimport Element, PER_PACKET
from nmroute.fastpath.lpm cimport NeighborTable, NeighTable, neigh_key4, neigh_learn
from nmroute.fastpath.parse cimport ensure_parsed, rd16, rd32, wr16, wr32, IPPROTO_ICMPV6

cdef enum:
    OUT = 0
    REPLY = 1
    ND_NS = 135
    ND_NA = 136
    OPT_SLLA = 1
    OPT_TLLA = 2
    MAX_OWN = 64


def _addresses(value):
    if not isinstance(value, list) or not value:
        raise ParamError("expected a list like [{ip: 198.18.0.1, mac: 02:00:00:00:00:01}]")
    if len(value) > MAX_OWN:
        raise ParamError(f"at most {MAX_OWN} addresses")
    out = []
    for i, n in enumerate(value):
        if not isinstance(n, dict) or set(n) != {"ip", "mac"}:
            e = ParamError(f"expected {{ip: ADDR, mac: MAC}}, got {n!r}")
            e.path = (i,)
            raise e
        try:
            ip = ipaddress.ip_address(n["ip"])
        except ValueError:
            e = ParamError(f"expected an IP address, got {n['ip']!r}")
            e.path = (i, "ip")
            raise e from None
        mac = parse_mac(n["mac"])
        if mac is None:
            raise ParamError(f"expected a MAC like 02:00:00:00:00:01, got {n['mac']!r}", (i, "mac"))
        out.append((ip, mac))
    return out


ctypedef struct Own:
    uint8_t ip[16]        # IPv6, or IPv4 in the first 4 bytes
    uint8_t mac[6]
    uint8_t v6


cdef inline bint eq(const uint8_t* a, const uint8_t* b, int n) noexcept nogil:
    cdef int i
    for i in range(n):
        if a[i] != b[i]:
            return False
    return True


cdef inline bint is_zero16(const uint8_t* a) noexcept nogil:
    cdef int i
    for i in range(16):
        if a[i]:
            return False
    return True


@cython.final
cdef class Neighbor(Element):
    """Answers ARP requests and IPv6 neighbour solicitations (NS) for the
    router's own `addresses`: the request is rewritten in place into the
    reply (ARP reply; neighbour advertisement, NA, with the router flag and
    a target link-layer address option) and sent to `reply`, which the
    pipeline wires back to the port it came from. Everything else, requests
    for other addresses included, goes to `out` unchanged.

    With `table`, it learns neighbours into the neighbour table that a
    `route` element naming the same table reads: from ARP requests for our
    addresses and NS with a source link-layer option (the sender), and from
    NA with a target link-layer option (the target); an ARP packet of
    any kind updates an entry that exists. Static entries are never
    overwritten. Learned entries do not age. NDP packets are acted on only
    when valid (hop limit 255, code 0, ICMPv6 checksum right, options well
    formed); NS/NA with another hop limit or code pass to `out` untouched.
    ARP replies and NAs go on to `out` after learning (a `route` after this
    element drops them as not-ip).

    Outputs:
        out: every packet that is not answered
        reply: the answers (ARP replies, NAs), to be sent back where the
            request came from
    Counters:
        arp_replies: ARP requests answered; na_sent: solicitations answered;
        learned: neighbour entries added; table_full: entries not added
        for lack of room
    Drops:
        bad-checksum: an NS or NA with a wrong ICMPv6 checksum
        malformed:l4: an NS or NA shorter than 24 bytes or with a bad option
        malformed:eth: and the other malformed:* reasons of the header parser
    Example:
        ports:
          src: "gen:count=10"
          out: sink
          back: sink
        elements:
          nb:
            type: neighbor
            addresses:
              - {ip: 198.18.0.254, mac: "02:00:00:00:00:fe"}
              - {ip: "2001:2::fe", mac: "02:00:00:00:00:fe"}
        links: ["src -> nb -> out", "nb [reply] -> back"]
    """
    TYPE = "neighbor"
    SUMMARY = "answer ARP and neighbour solicitations for own addresses; learn neighbours"
    OUTPUTS = ("out", "reply")
    PARAMS = (
        Param("addresses", Custom("a list like [{ip: 198.18.0.1, mac: 02:00:00:00:00:01}]",
                                  _addresses), "the router's own addresses and their MACs"),
        Param("table", Name("a table name"),
              "learn into the neighbour table of the `route` naming the same table", None),
        Param("learn", Bool(), "learn neighbours (when there is a table)", True),
        Param("max_neighbors", Int(1, 1 << 22),
              "neighbour table size, when this element makes the table", 4096),
    )
    COUNTERS = ("arp_replies", "na_sent", "learned", "table_full")

    cdef Own own[MAX_OWN]
    cdef uint32_t n_own
    cdef NeighborTable nt
    cdef NeighTable* ntp        # NULL: no learning

    def configure(self, addresses, table=None, learn=True, max_neighbors=4096):
        cdef bytes b
        self.n_own = 0
        for ip, mac in addresses:
            b = ip.packed
            memcpy(self.own[self.n_own].ip, <char*>b, len(b))
            memcpy(self.own[self.n_own].mac, <char*>mac, 6)
            self.own[self.n_own].v6 = ip.version == 6
            self.n_own += 1
        if table:
            self.nt = neighbor_table(self.tables, table, max_neighbors)
            if learn:
                self.ntp = &self.nt.t

    cdef inline int find_own(self, const uint8_t* ip, bint v6) noexcept nogil:
        cdef uint32_t i
        for i in range(self.n_own):
            if self.own[i].v6 == v6 and eq(self.own[i].ip, ip, 16 if v6 else 4):
                return <int>i
        return -1

    cdef inline void learn(self, const uint8_t* key, const uint8_t* mac,
                           bint create) noexcept nogil:
        cdef int r
        if self.ntp == NULL or mac[0] & 1:        # no table, or a group MAC
            return
        r = neigh_learn(self.ntp, key, mac, create)
        if r > 0:
            self.stats[2] += 1
        elif r < 0:
            self.stats[3] += 1

    cdef int arp(self, Desc* p) noexcept nogil:
        cdef uint8_t* a = p.data + p.l3_off
        cdef uint8_t key[16]
        cdef uint8_t sha[6]
        cdef uint8_t spa[4]
        cdef int k
        if rd16(a) != 1 or rd16(a + 2) != 0x0800 or a[4] != 6 or a[5] != 4:
            return OUT
        k = self.find_own(a + 24, False)
        if rd32(a + 14) != 0:                     # not a probe (sender 0.0.0.0)
            neigh_key4(key, a + 14)
            self.learn(key, a + 8, k >= 0)
        if rd16(a + 6) != 1 or k < 0:
            return OUT
        memcpy(sha, a + 8, 6)
        memcpy(spa, a + 14, 4)
        wr16(a + 6, 2)
        memcpy(a + 8, self.own[k].mac, 6)         # sender: us
        memcpy(a + 14, self.own[k].ip, 4)
        memcpy(a + 18, sha, 6)                    # target: who asked
        memcpy(a + 24, spa, 4)
        memcpy(p.data, p.data + 6, 6)             # Ethernet back to the asker
        memcpy(p.data + 6, self.own[k].mac, 6)
        self.stats[0] += 1
        return REPLY

    cdef int ndp(self, Desc* p) noexcept nogil:
        cdef uint8_t* ip = p.data + p.l3_off
        cdef uint8_t* icmp = p.data + p.l4_off
        cdef uint32_t n = p.l3_off + p.l3_len - p.l4_off, o
        cdef uint64_t s
        cdef const uint8_t* lla = NULL
        cdef uint8_t want, t = icmp[0]
        cdef int k
        cdef uint8_t src[16]
        if (t != ND_NS and t != ND_NA) or ip[7] != 255 or icmp[1] != 0:
            return OUT
        if n < 24:
            drop_pkt(p, DROP_MALFORMED_L4)
            return -1
        s = csum_add(ip + 8, 32, <uint64_t>n + IPPROTO_ICMPV6)
        if csum(icmp, n, s) != 0:
            drop_pkt(p, DROP_BAD_CHECKSUM)
            return -1
        want = OPT_SLLA if t == ND_NS else OPT_TLLA
        o = 24
        while o < n:
            if n - o < 8 or icmp[o + 1] == 0 or <uint32_t>icmp[o + 1] * 8 > n - o:
                drop_pkt(p, DROP_MALFORMED_L4)
                return -1
            if icmp[o] == want and icmp[o + 1] == 1:
                lla = icmp + o + 2
            o += <uint32_t>icmp[o + 1] * 8
        if t == ND_NA:
            if lla != NULL:
                self.learn(icmp + 8, lla, True)
            return OUT
        k = self.find_own(icmp + 8, True)
        memcpy(src, ip + 8, 16)
        if lla != NULL and not is_zero16(src):
            self.learn(src, lla, k >= 0)
        if k < 0:
            return OUT
        # The NA: IPv6 header, then 24 bytes of NA and a target link-layer
        # option, right after it (any extension headers are gone).
        wr32(ip, 0x60000000)
        wr16(ip + 4, 32)
        ip[6] = IPPROTO_ICMPV6
        ip[7] = 255
        memcpy(ip + 8, self.own[k].ip, 16)
        icmp = ip + 40
        icmp[4] = 0xA0                            # Router, Override
        if is_zero16(src):                        # DAD: to all nodes, not solicited
            memcpy(ip + 24, b"\xff\x02\0\0\0\0\0\0\0\0\0\0\0\0\0\x01", 16)
            memcpy(p.data, b"\x33\x33\0\0\0\x01", 6)
        else:
            memcpy(ip + 24, src, 16)
            icmp[4] |= 0x40                       # Solicited
            memcpy(p.data, p.data + 6, 6)
        memcpy(p.data + 6, self.own[k].mac, 6)
        icmp[0] = ND_NA
        icmp[1] = 0
        icmp[2] = 0
        icmp[3] = 0
        icmp[5] = 0
        icmp[6] = 0
        icmp[7] = 0
        memcpy(icmp + 8, self.own[k].ip, 16)
        icmp[24] = OPT_TLLA
        icmp[25] = 1
        memcpy(icmp + 26, self.own[k].mac, 6)
        wr16(icmp + 2, csum(icmp, 32, csum_add(ip + 8, 32, 32 + IPPROTO_ICMPV6)))
        p.len = p.l3_off + 72
        p.l3_len = 72
        p.l4_off = p.l3_off + 40
        self.stats[1] += 1
        return REPLY

    cdef int process(self, Batch* b) noexcept nogil:
        cdef uint32_t i
        cdef int r
        cdef Desc* p
        for i in range(b.n):
            p = &b.d[i]
            r = ensure_parsed(p)
            if r:
                drop_pkt(p, <uint16_t>r)
            elif p.pflags & PF_ARP:
                p.out = <uint16_t>self.arp(p)
            elif (p.pflags & (PF_IPV6 | PF_L4 | PF_FRAG)) == (PF_IPV6 | PF_L4) and \
                    p.l4_proto == IPPROTO_ICMPV6:
                r = self.ndp(p)
                if r >= 0:
                    p.out = <uint16_t>r
            else:
                p.out = OUT
        return PER_PACKET
