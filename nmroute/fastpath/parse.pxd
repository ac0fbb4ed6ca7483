# Header parsing, once per packet: Ethernet, up to two VLAN tags, ARP, IPv4
# (options, fragments), IPv6 (extension headers), and the L4 header (TCP,
# UDP, ICMP, ICMPv6, SCTP). parse() fills the descriptor's offsets and flags
# (batch.pxd: PF_*) or returns the reason to drop it. Nothing is read past
# Desc.len; every length field is checked before it is trusted.
from libc.stdint cimport uint8_t, uint16_t, uint32_t

from nmroute.fastpath.batch cimport (
    Desc, OFF_NONE, PF_PARSED, PF_VLAN, PF_ARP, PF_IPV4, PF_IPV6, PF_FRAG, PF_LATER_FRAG, PF_L4)
from nmroute.fastpath.drops cimport (
    DROP_MALFORMED_ETH, DROP_MALFORMED_VLAN, DROP_MALFORMED_ARP, DROP_MALFORMED_IPV4,
    DROP_MALFORMED_IPV6, DROP_MALFORMED_L4)

cdef enum:
    ETH_HLEN = 14
    ETH_P_IP = 0x0800
    ETH_P_ARP = 0x0806
    ETH_P_IPV6 = 0x86DD
    ETH_P_8021Q = 0x8100
    ETH_P_8021AD = 0x88A8
    ETH_P_QINQ = 0x9100
    IPPROTO_HOPOPTS = 0
    IPPROTO_ICMP = 1
    IPPROTO_TCP = 6
    IPPROTO_UDP = 17
    IPPROTO_ROUTING = 43
    IPPROTO_FRAGMENT = 44
    IPPROTO_AH = 51
    IPPROTO_ICMPV6 = 58
    IPPROTO_DSTOPTS = 60
    IPPROTO_SCTP = 132
    MAX_EXT_HEADERS = 8
    MAX_VLAN_TAGS = 2


cdef inline uint16_t rd16(const uint8_t* p) noexcept nogil:
    return (<uint16_t>p[0] << 8) | p[1]


cdef inline uint32_t rd32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline void wr16(uint8_t* p, uint16_t v) noexcept nogil:
    p[0] = v >> 8
    p[1] = v & 0xFF


cdef inline void wr32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = v >> 24
    p[1] = (v >> 16) & 0xFF
    p[2] = (v >> 8) & 0xFF
    p[3] = v & 0xFF


cdef inline int parse_l4(Desc* p, uint8_t proto, uint32_t off, uint32_t end) noexcept nogil:
    """The L4 header at off, the IP payload ending at end."""
    cdef uint32_t need, left = end - off
    p.l4_proto = proto
    if proto == IPPROTO_TCP:
        if left < 20:
            return DROP_MALFORMED_L4
        need = (p.data[off + 12] >> 4) * 4
        if need < 20 or need > left:
            return DROP_MALFORMED_L4
    elif proto == IPPROTO_UDP or proto == IPPROTO_ICMP or proto == IPPROTO_ICMPV6:
        if left < 8:
            return DROP_MALFORMED_L4
    elif proto == IPPROTO_SCTP:
        if left < 12:
            return DROP_MALFORMED_L4
    else:
        return 0      # another protocol: its header is not ours to check
    p.l4_off = <uint16_t>off
    p.pflags |= PF_L4
    return 0


cdef inline int parse_ipv4(Desc* p, uint32_t off) noexcept nogil:
    cdef const uint8_t* ip = p.data + off
    cdef uint32_t left = p.len - off, ihl, total
    cdef uint16_t frag
    if left < 20 or ip[0] >> 4 != 4:
        return DROP_MALFORMED_IPV4
    ihl = (ip[0] & 0x0F) * 4
    total = rd16(ip + 2)
    if ihl < 20 or ihl > left or total < ihl or total > left:
        return DROP_MALFORMED_IPV4
    p.l3_off = <uint16_t>off
    p.l3_len = <uint16_t>total
    p.pflags |= PF_IPV4
    p.l4_proto = ip[9]
    frag = rd16(ip + 6)
    if frag & 0x3FFF:                 # MF set or a fragment offset
        p.pflags |= PF_FRAG
        if frag & 0x1FFF:
            p.pflags |= PF_LATER_FRAG
            return 0
    return parse_l4(p, ip[9], off + ihl, off + total)


cdef inline int parse_ipv6(Desc* p, uint32_t off) noexcept nogil:
    cdef const uint8_t* ip = p.data + off
    cdef uint32_t left = p.len - off, end, o, hl, _i
    cdef uint8_t nh
    if left < 40 or ip[0] >> 4 != 6:
        return DROP_MALFORMED_IPV6
    end = off + 40 + rd16(ip + 4)
    if end > p.len:
        return DROP_MALFORMED_IPV6
    p.l3_off = <uint16_t>off
    p.l3_len = <uint16_t>(end - off)
    p.pflags |= PF_IPV6
    nh = ip[6]
    o = off + 40
    for _i in range(MAX_EXT_HEADERS + 1):
        if nh == IPPROTO_HOPOPTS or nh == IPPROTO_ROUTING or nh == IPPROTO_DSTOPTS:
            if end - o < 8:
                return DROP_MALFORMED_IPV6
            hl = (<uint32_t>p.data[o + 1] + 1) * 8
        elif nh == IPPROTO_AH:
            if end - o < 8:
                return DROP_MALFORMED_IPV6
            hl = (<uint32_t>p.data[o + 1] + 2) * 4
        elif nh == IPPROTO_FRAGMENT:
            if end - o < 8:
                return DROP_MALFORMED_IPV6
            hl = 8
            p.pflags |= PF_FRAG
            if rd16(p.data + o + 2) & 0xFFF8:
                p.pflags |= PF_LATER_FRAG
                p.l4_proto = p.data[o]
                return 0
        else:
            return parse_l4(p, nh, o, end)
        if hl > end - o:
            return DROP_MALFORMED_IPV6
        nh = p.data[o]
        o += hl
    return DROP_MALFORMED_IPV6          # a chain longer than we follow


cdef inline int parse_frame(Desc* p) noexcept nogil:
    cdef const uint8_t* d = p.data
    cdef uint32_t off = ETH_HLEN
    cdef uint16_t et, tci
    p.pflags = PF_PARSED
    p.l3_off = OFF_NONE
    p.l4_off = OFF_NONE
    p.l4_proto = 0
    p.l3_len = 0
    p.n_vlan = 0
    p.vlan = 0
    p.inner_vlan = 0
    if p.len < ETH_HLEN:
        return DROP_MALFORMED_ETH
    et = rd16(d + 12)
    while et == ETH_P_8021Q or et == ETH_P_8021AD or et == ETH_P_QINQ:
        if p.n_vlan == MAX_VLAN_TAGS or p.len - off < 4:
            return DROP_MALFORMED_VLAN
        tci = rd16(d + off)
        if p.n_vlan == 0:
            p.vlan = tci
        else:
            p.inner_vlan = tci
        p.n_vlan += 1
        p.pflags |= PF_VLAN
        et = rd16(d + off + 2)
        off += 4
    p.ethertype = et
    if et == ETH_P_IP:
        return parse_ipv4(p, off)
    if et == ETH_P_IPV6:
        return parse_ipv6(p, off)
    if et == ETH_P_ARP:
        if p.len - off < 28:
            return DROP_MALFORMED_ARP
        p.l3_off = <uint16_t>off
        p.pflags |= PF_ARP
    return 0


cdef inline int parse(Desc* p) noexcept nogil:
    """Parse p's headers into its descriptor. Returns 0, or a DropReason
    (malformed:eth/vlan/arp/ipv4/ipv6/l4) for a frame that lies about its
    lengths; such a frame is left unparsed (pflags 0), so that a later
    ensure_parsed() gives the same reason. Frames of other ethertypes parse
    to their L2 header only."""
    cdef int r = parse_frame(p)
    if r:
        p.pflags = 0
    return r


cdef inline int ensure_parsed(Desc* p) noexcept nogil:
    """parse() unless a classify upstream already did (parse once)."""
    if p.pflags & PF_PARSED:
        return 0
    return parse(p)
