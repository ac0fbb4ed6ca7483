"""nat: IPv4 source NAT with port allocation (NAPT), connection table in C."""
from nmroute.schema import Param, AddrRange, Range, Float, Int, Choice

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free

from nmroute.fastpath.batch cimport (
    Batch, Desc, BATCH_MAX, PF_IPV4, PF_FRAG, PF_L4, drop_pkt)
from nmroute.fastpath.csum cimport csum_fold, csum_update16, csum_update32
from nmroute.fastpath.drops cimport (
    DROP_NOT_IP, DROP_FRAGMENT, DROP_MALFORMED, DROP_NAT_NO_PORT, DROP_NAT_NO_MAPPING,
    DROP_TABLE_FULL)
from nmroute.fastpath.element cimport Element, PER_PACKET
from nmroute.fastpath.includes.sys cimport now_ns, CLOCK_MONOTONIC
from nmroute.fastpath.parse cimport (
    ensure_parsed, rd16, rd32, wr16, wr32, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP)

cdef extern from *:
    void prefetch "__builtin_prefetch"(const void* p) nogil

cdef enum:
    OUT_OUT = 0              # translated towards the outside
    OUT_IN = 1               # translated back towards the inside
    NIL = 0xFFFFFFFF
    P_TCP = 0                # protocol index: port pools; also expiry lists and timeouts
    P_UDP = 1
    P_ICMP = 2
    N_PROTO = 3
    L_TCP_TRANS = 3          # expiry list (and timeout) of TCP flows closing (RFC 5382)
    N_LISTS = 4
    MAX_EXTERNAL = 64
    ICMP_ECHO_REPLY = 0
    ICMP_UNREACH = 3
    ICMP_ECHO = 8
    ICMP_TIME_EXCEEDED = 11
    ICMP_PARAM_PROBLEM = 12
    # COUNTERS slots
    C_FLOWS = 0
    C_ALLOC = 1
    C_EXPIRED = 2
    C_NO_PORT = 3
    C_NO_MAPPING = 4
    C_TCP_TRANS = 5
    C_TCP_REUSED = 6
    TO_IN = -1               # outbound()/inbound() result: send to `in`
    # TCP header flags (byte 13)
    TH_FIN = 0x01
    TH_SYN = 0x02
    TH_RST = 0x04
    TH_ACK = 0x10
    # Flow.tcp: what was seen of the connection
    T_FIN_OUT = 1            # a FIN from inside
    T_FIN_IN = 2             # a FIN from outside
    T_CLOSING = 4            # a RST, or both FINs: on the transitory timeout


# One translation. Outbound key: (proto, in_addr, in_port, rem_addr, rem_port);
# inbound key: (proto, ext_addr, ext_port, rem_addr, rem_port). For ICMP echo
# the "port" is the identifier and rem_port is 0.
cdef struct Flow:
    uint32_t in_addr
    uint32_t rem_addr
    uint32_t ext_addr
    uint32_t h_out           # the keys' hashes, kept for probing and deletion
    uint32_t h_in
    uint16_t in_port
    uint16_t rem_port
    uint16_t ext_port
    uint8_t proto
    uint8_t pi               # protocol index (P_*): its port pool
    uint8_t ai               # index of ext_addr in the external range (< MAX_EXTERNAL)
    uint8_t li               # expiry list: pi, or L_TCP_TRANS
    uint8_t tcp              # T_* flags (TCP flows)
    uint32_t prev            # expiry list, oldest first
    uint32_t next
    uint64_t last_seen       # ns, on the element's clock
    uint64_t queued          # last_seen when it was (re)queued at the tail


cdef struct NatState:
    uint32_t ext_lo          # external addresses: ext_lo .. ext_lo + n_addrs - 1
    uint32_t n_addrs
    uint16_t port_lo
    uint32_t n_ports
    uint64_t timeout[N_LISTS]
    bint packet_clock
    uint64_t now
    Flow* flows
    uint32_t max_flows
    uint32_t* free_flows     # stack of free flow indexes
    uint32_t n_free
    uint32_t* tab_out        # open addressing, linear probing; flow index + 1, 0: empty
    uint32_t* tab_in
    uint32_t mask
    uint16_t* ports          # per (protocol, address): a FIFO ring of free ports
    uint32_t* port_head
    uint32_t* port_count
    uint32_t head[N_LISTS]
    uint32_t tail[N_LISTS]


cdef inline uint32_t hkey(uint8_t proto, uint32_t a, uint16_t ap, uint32_t b,
                          uint16_t bp) noexcept nogil:
    cdef uint64_t x = (<uint64_t>a << 32) | b
    cdef uint64_t y = (<uint64_t>proto << 32) | (<uint64_t>ap << 16) | bp
    x ^= y * 0x9E3779B97F4A7C15ULL
    x ^= x >> 29
    x *= 0xBF58476D1CE4E5B9ULL
    x ^= x >> 32
    return <uint32_t>x


cdef inline uint32_t find_out(NatState* s, uint8_t proto, uint32_t a, uint16_t ap, uint32_t b,
                              uint16_t bp, uint32_t h) noexcept nogil:
    cdef uint32_t i = h & s.mask, e
    cdef Flow* f
    while True:
        e = s.tab_out[i]
        if e == 0:
            return NIL
        f = &s.flows[e - 1]
        if (f.h_out == h and f.in_addr == a and f.in_port == ap and f.rem_addr == b
                and f.rem_port == bp and f.proto == proto):
            return e - 1
        i = (i + 1) & s.mask


cdef inline uint32_t find_in(NatState* s, uint8_t proto, uint32_t a, uint16_t ap, uint32_t b,
                             uint16_t bp, uint32_t h) noexcept nogil:
    cdef uint32_t i = h & s.mask, e
    cdef Flow* f
    while True:
        e = s.tab_in[i]
        if e == 0:
            return NIL
        f = &s.flows[e - 1]
        if (f.h_in == h and f.ext_addr == a and f.ext_port == ap and f.rem_addr == b
                and f.rem_port == bp and f.proto == proto):
            return e - 1
        i = (i + 1) & s.mask


cdef inline void tab_put(uint32_t* tab, uint32_t mask, uint32_t h, uint32_t idx) noexcept nogil:
    cdef uint32_t i = h & mask
    while tab[i] != 0:
        i = (i + 1) & mask
    tab[i] = idx + 1


cdef void tab_del(NatState* s, uint32_t* tab, bint inbound, uint32_t h,
                  uint32_t idx) noexcept nogil:
    """Remove idx, shifting later entries of its probe run back (no tombstones)."""
    cdef uint32_t i = h & s.mask, j, k, e
    while tab[i] != idx + 1:
        i = (i + 1) & s.mask
    j = i
    while True:
        j = (j + 1) & s.mask
        e = tab[j]
        if e == 0:
            break
        k = (s.flows[e - 1].h_in if inbound else s.flows[e - 1].h_out) & s.mask
        # Move e back to i unless its home k lies cyclically in (i, j].
        if (i <= j and (k <= i or k > j)) or (i > j and k <= i and k > j):
            tab[i] = e
            i = j
    tab[i] = 0


cdef inline void list_unlink(NatState* s, Flow* f) noexcept nogil:
    if f.prev != NIL:
        s.flows[f.prev].next = f.next
    else:
        s.head[f.li] = f.next
    if f.next != NIL:
        s.flows[f.next].prev = f.prev
    else:
        s.tail[f.li] = f.prev


cdef inline void list_append(NatState* s, Flow* f, uint32_t idx) noexcept nogil:
    f.next = NIL
    f.prev = s.tail[f.li]
    if f.prev != NIL:
        s.flows[f.prev].next = idx
    else:
        s.head[f.li] = idx
    s.tail[f.li] = idx
    f.queued = f.last_seen


cdef inline void list_move(NatState* s, Flow* f, uint32_t idx, uint8_t li) noexcept nogil:
    """Put a flow (just refreshed) at the tail of another expiry list."""
    list_unlink(s, f)
    f.li = li
    list_append(s, f, idx)


cdef void free_flow(NatState* s, uint32_t idx) noexcept nogil:
    cdef Flow* f = &s.flows[idx]
    cdef uint32_t pool = f.pi * s.n_addrs + f.ai
    tab_del(s, s.tab_out, False, f.h_out, idx)
    tab_del(s, s.tab_in, True, f.h_in, idx)
    list_unlink(s, f)
    # The port goes to the back of its ring: the last to be reused.
    s.ports[<uint64_t>pool * s.n_ports
            + (s.port_head[pool] + s.port_count[pool]) % s.n_ports] = f.ext_port
    s.port_count[pool] += 1
    s.free_flows[s.n_free] = idx
    s.n_free += 1


cdef void expire(NatState* s, uint64_t* stats) noexcept nogil:
    """Free the flows idle longer than their list's timeout. Each list is
    ordered by `queued`; a head refreshed since is requeued, not freed."""
    cdef int li
    cdef uint32_t idx
    cdef Flow* f
    for li in range(N_LISTS):
        while s.head[li] != NIL:
            idx = s.head[li]
            f = &s.flows[idx]
            if s.now - f.last_seen > s.timeout[li]:
                free_flow(s, idx)
                stats[C_FLOWS] -= 1
                stats[C_EXPIRED] += 1
            elif f.last_seen != f.queued:
                list_unlink(s, f)
                list_append(s, f, idx)
            else:
                break


cdef inline uint32_t new_flow(NatState* s, uint8_t proto, uint8_t pi, uint32_t in_addr,
                              uint16_t in_port, uint32_t rem_addr, uint16_t rem_port,
                              uint32_t h_out, uint64_t* stats, uint16_t* reason) noexcept nogil:
    cdef uint32_t ai = 0, pool, idx
    cdef Flow* f
    if s.n_addrs > 1:       # paired pooling: one inside host, one outside address
        ai = hkey(0, in_addr, 0, 0, 0) % s.n_addrs
    pool = pi * s.n_addrs + ai
    if s.port_count[pool] == 0:
        stats[C_NO_PORT] += 1
        reason[0] = DROP_NAT_NO_PORT
        return NIL
    if s.n_free == 0:
        reason[0] = DROP_TABLE_FULL
        return NIL
    s.n_free -= 1
    idx = s.free_flows[s.n_free]
    f = &s.flows[idx]
    f.ext_port = s.ports[<uint64_t>pool * s.n_ports + s.port_head[pool]]
    s.port_head[pool] = (s.port_head[pool] + 1) % s.n_ports
    s.port_count[pool] -= 1
    f.proto = proto
    f.pi = pi
    f.ai = <uint8_t>ai
    f.li = pi
    f.tcp = 0
    f.in_addr = in_addr
    f.in_port = in_port
    f.rem_addr = rem_addr
    f.rem_port = rem_port
    f.ext_addr = s.ext_lo + ai
    f.h_out = h_out
    f.h_in = hkey(proto, f.ext_addr, f.ext_port, rem_addr, rem_port)
    f.last_seen = s.now
    tab_put(s.tab_out, s.mask, h_out, idx)
    tab_put(s.tab_in, s.mask, f.h_in, idx)
    list_append(s, f, idx)
    stats[C_FLOWS] += 1
    stats[C_ALLOC] += 1
    return idx


cdef inline uint32_t delta16(uint16_t old, uint16_t new) noexcept nogil:
    """RFC 1624 eqn. 3's ~m + m', summed over the words a packet changes and
    applied to a checksum once (csum_apply)."""
    return (~old & 0xFFFF) + new


cdef inline void csum_apply(uint8_t* cs, uint32_t delta) noexcept nogil:
    """HC' = ~(~HC + sum of ~m + m')."""
    wr16(cs, ~csum_fold((~rd16(cs) & 0xFFFF) + <uint64_t>delta) & 0xFFFF)


cdef inline void translate(uint8_t* addr, uint8_t* port, uint32_t new_addr, uint16_t new_port,
                           uint8_t* ipcs, uint8_t* l4, uint8_t proto) noexcept nogil:
    """Rewrite an address and a port (or ICMP identifier) of a packet whose
    L4 header (TCP, UDP or ICMP, complete) is at l4; one checksum update
    each for the IP header and the L4 header (with its pseudo-header)."""
    cdef uint32_t old_addr = rd32(addr)
    cdef uint32_t da = delta16(old_addr >> 16, new_addr >> 16) + delta16(
        old_addr & 0xFFFF, new_addr & 0xFFFF)
    cdef uint32_t dp = delta16(rd16(port), new_port)
    wr32(addr, new_addr)
    wr16(port, new_port)
    csum_apply(ipcs, da)
    if proto == IPPROTO_TCP:
        csum_apply(l4 + 16, da + dp)
    elif proto == IPPROTO_UDP:
        if rd16(l4 + 6) != 0:          # 0: no checksum; it stays 0
            csum_apply(l4 + 6, da + dp)
            if rd16(l4 + 6) == 0:
                wr16(l4 + 6, 0xFFFF)   # a computed 0 is sent as 0xFFFF (RFC 768)
    else:
        csum_apply(l4 + 2, dp)         # ICMP: no pseudo-header


cdef inline void put16(uint8_t* field, uint16_t new, uint8_t* cs1, uint8_t* cs2) noexcept nogil:
    """Write a 16-bit field, updating up to two checksums (NULL: none)."""
    cdef uint16_t old = rd16(field)
    wr16(field, new)
    if cs1 != NULL:
        wr16(cs1, csum_update16(rd16(cs1), old, new))
    if cs2 != NULL:
        wr16(cs2, csum_update16(rd16(cs2), old, new))


cdef inline void put32(uint8_t* field, uint32_t new, uint8_t* cs1, uint8_t* cs2) noexcept nogil:
    put16(field, new >> 16, cs1, cs2)
    put16(field + 2, new & 0xFFFF, cs1, cs2)


cdef inline void put_cs(uint8_t* cs, uint16_t new, uint8_t* outer) noexcept nogil:
    """Write a checksum field that itself lies under an outer checksum."""
    put16(cs, new, outer, NULL)


cdef inline uint8_t* l4_csum(uint8_t* l4, uint8_t proto, uint32_t have) noexcept nogil:
    """The L4 checksum field if present in `have` bytes (NULL for a UDP 0)."""
    if proto == IPPROTO_TCP:
        return l4 + 16 if have >= 18 else NULL
    if proto == IPPROTO_UDP:
        return l4 + 6 if have >= 8 and rd16(l4 + 6) != 0 else NULL
    if proto == IPPROTO_ICMP:
        return l4 + 2 if have >= 4 else NULL
    return NULL


cdef inline void tcp_track(NatState* s, Flow* f, uint32_t idx, uint8_t flags, uint8_t fin,
                           uint64_t* stats) noexcept nogil:
    """Follow a TCP flow's close (RFC 5382 REQ-5), f just refreshed by a
    segment with these flags (fin: T_FIN_OUT or T_FIN_IN, its direction). A
    RST either way, or a FIN each way, moves it to the transitory timeout;
    a SYN without ACK on a closing flow (a new connection on the same
    5-tuple) takes it back to the established one, keeping its port."""
    if f.tcp & T_CLOSING:
        if flags & (TH_SYN | TH_ACK | TH_RST) == TH_SYN:
            f.tcp = 0
            list_move(s, f, idx, P_TCP)
            stats[C_TCP_REUSED] += 1
        return
    if flags & TH_FIN:
        f.tcp |= fin
    if flags & TH_RST or f.tcp & (T_FIN_OUT | T_FIN_IN) == T_FIN_OUT | T_FIN_IN:
        f.tcp |= T_CLOSING
        list_move(s, f, idx, L_TCP_TRANS)
        stats[C_TCP_TRANS] += 1


cdef inline bint is_icmp_error(uint8_t t) noexcept nogil:
    return t == ICMP_UNREACH or t == ICMP_TIME_EXCEEDED or t == ICMP_PARAM_PROBLEM


cdef inline int icmp_error(NatState* s, Desc* p, bint from_inside) noexcept nogil:
    """An ICMP error quoting a packet of a flow (RFC 5508): 0 (to `out`),
    TO_IN or a drop reason. From outside (section 4.1) it quotes a packet
    the NAT sent: the quoted source (external address and port) goes back
    to the inside host's, and so does the outer destination. From inside
    (section 4.2, REQ-4) it quotes a packet the NAT translated in: the
    quoted destination (the inside host's address and port) becomes the
    external ones, and the outer source, whichever inside host sent the
    error, the flow's external address. The quoted checksums (as far as
    the quote holds them), the ICMP checksum and the outer IP checksum are
    updated incrementally. A quote is looked up, never refreshes a flow."""
    cdef uint8_t* ip = p.data + p.l3_off
    cdef uint8_t* icmp = p.data + p.l4_off
    cdef uint32_t avail = <uint32_t>p.l3_off + p.l3_len - p.l4_off - 8, ihl
    cdef uint8_t* inner = icmp + 8
    cdef uint8_t* il4
    cdef uint8_t* ocs = icmp + 2
    cdef uint8_t* ics
    cdef uint8_t* pa
    cdef uint8_t* pf
    cdef uint8_t iproto
    cdef uint16_t isport, idport, old, oldp, newp, c
    cdef uint32_t isrc, idst, olda, newa, idx
    cdef Flow* f
    if avail < 28 or inner[0] >> 4 != 4:
        return DROP_MALFORMED
    ihl = (inner[0] & 0x0F) * 4
    if ihl < 20 or ihl + 8 > avail:
        return DROP_MALFORMED
    if rd16(inner + 6) & 0x1FFF:
        return DROP_NAT_NO_MAPPING          # quotes a non-first fragment: no ports
    il4 = inner + ihl
    iproto = inner[9]
    isrc = rd32(inner + 12)
    idst = rd32(inner + 16)
    if iproto == IPPROTO_TCP or iproto == IPPROTO_UDP:
        isport = rd16(il4)
        idport = rd16(il4 + 2)
        pf = il4 + 2 if from_inside else il4
    elif iproto == IPPROTO_ICMP and il4[0] == (ICMP_ECHO_REPLY if from_inside else ICMP_ECHO):
        # The identifier is the inside host's end; the remote's "port" is 0.
        isport = 0 if from_inside else rd16(il4 + 4)
        idport = rd16(il4 + 4) if from_inside else 0
        pf = il4 + 4
    else:
        return DROP_NAT_NO_MAPPING
    if from_inside:
        idx = find_out(s, iproto, idst, idport, isrc, isport,
                       hkey(iproto, idst, idport, isrc, isport))
        if idx == NIL:
            return DROP_NAT_NO_MAPPING
        f = &s.flows[idx]
        pa = inner + 16
        olda = idst
        newa = f.ext_addr
        newp = f.ext_port
    else:
        if isrc != rd32(ip + 16):
            return DROP_NAT_NO_MAPPING
        idx = find_in(s, iproto, isrc, isport, idst, idport,
                      hkey(iproto, isrc, isport, idst, idport))
        if idx == NIL:
            return DROP_NAT_NO_MAPPING
        f = &s.flows[idx]
        pa = inner + 12
        olda = isrc
        newa = f.in_addr
        newp = f.in_port
    ics = l4_csum(il4, iproto, avail - ihl)
    oldp = rd16(pf)
    put16(pf, newp, ocs, NULL)
    if ics != NULL:
        c = csum_update16(rd16(ics), oldp, newp)
        if iproto != IPPROTO_ICMP:
            c = csum_update32(c, olda, newa)          # the pseudo-header's address
            if iproto == IPPROTO_UDP and c == 0:
                c = 0xFFFF
        put_cs(ics, c, ocs)
    # The quoted address and its header checksum, both under the ICMP checksum.
    old = rd16(inner + 10)
    put32(pa, newa, ocs, NULL)
    put_cs(inner + 10, csum_update32(old, olda, newa), ocs)
    if from_inside:
        put32(ip + 12, newa, ip + 10, NULL)
        return 0
    put32(ip + 16, newa, ip + 10, NULL)
    return TO_IN


cdef inline int outbound(NatState* s, Desc* p, uint64_t* stats, uint32_t h) noexcept nogil:
    """A packet from inside (h: its key's hash, see key_hash): 0 (translated,
    to `out`) or a drop reason."""
    cdef uint8_t* ip = p.data + p.l3_off
    cdef uint8_t* l4 = p.data + p.l4_off
    cdef uint8_t proto = p.l4_proto, pi
    cdef uint16_t sport, dport = 0, reason = 0
    cdef uint32_t src = rd32(ip + 12), dst = rd32(ip + 16), idx
    cdef Flow* f
    if proto == IPPROTO_TCP or proto == IPPROTO_UDP:
        pi = P_TCP if proto == IPPROTO_TCP else P_UDP
        sport = rd16(l4)
        dport = rd16(l4 + 2)
    elif proto == IPPROTO_ICMP and l4[0] == ICMP_ECHO:
        pi = P_ICMP
        sport = rd16(l4 + 4)
    elif proto == IPPROTO_ICMP and is_icmp_error(l4[0]):
        return icmp_error(s, p, True)
    else:
        return DROP_NAT_NO_MAPPING
    idx = find_out(s, proto, src, sport, dst, dport, h)
    if idx == NIL:
        idx = new_flow(s, proto, pi, src, sport, dst, dport, h, stats, &reason)
        if idx == NIL:
            return reason
    f = &s.flows[idx]
    f.last_seen = s.now
    if proto == IPPROTO_TCP:
        tcp_track(s, f, idx, l4[13], T_FIN_OUT, stats)
    translate(ip + 12, l4 + (4 if proto == IPPROTO_ICMP else 0), f.ext_addr, f.ext_port,
              ip + 10, l4, proto)
    return 0


cdef inline int inbound(NatState* s, Desc* p, uint32_t h, uint64_t* stats) noexcept nogil:
    """A packet to an external address (h: its key's hash, see key_hash):
    TO_IN or a drop reason."""
    cdef uint8_t* ip = p.data + p.l3_off
    cdef uint8_t* l4 = p.data + p.l4_off
    cdef uint8_t proto = p.l4_proto
    cdef uint16_t sport = 0, dport
    cdef uint32_t src = rd32(ip + 12), dst = rd32(ip + 16), idx
    cdef uint8_t t
    cdef Flow* f
    if proto == IPPROTO_TCP or proto == IPPROTO_UDP:
        sport = rd16(l4)
        dport = rd16(l4 + 2)
    elif proto == IPPROTO_ICMP:
        t = l4[0]
        if t == ICMP_ECHO_REPLY:
            dport = rd16(l4 + 4)
        elif is_icmp_error(t):
            return icmp_error(s, p, False)
        else:
            return DROP_NAT_NO_MAPPING
    else:
        return DROP_NAT_NO_MAPPING
    idx = find_in(s, proto, dst, dport, src, sport, h)
    if idx == NIL:
        return DROP_NAT_NO_MAPPING
    f = &s.flows[idx]
    f.last_seen = s.now
    if proto == IPPROTO_TCP:
        tcp_track(s, f, idx, l4[13], T_FIN_IN, stats)
    translate(ip + 16, l4 + (4 if proto == IPPROTO_ICMP else 2), f.in_addr, f.in_port,
              ip + 10, l4, proto)
    return TO_IN


cdef inline int key_hash(NatState* s, Desc* p, uint32_t* h, uint64_t* stats) noexcept nogil:
    """Parse p and hash the key it is looked up by: 0 for an outbound packet,
    TO_IN for one to an external address, or a drop reason."""
    cdef int r = ensure_parsed(p)
    cdef uint8_t* ip
    cdef uint8_t* l4
    cdef uint32_t src, dst
    cdef uint8_t proto = p.l4_proto
    h[0] = 0
    if r:
        return r
    if not p.pflags & PF_IPV4:
        return DROP_NOT_IP
    if p.pflags & PF_FRAG:
        return DROP_FRAGMENT
    ip = p.data + p.l3_off
    src = rd32(ip + 12)
    dst = rd32(ip + 16)
    if dst - s.ext_lo < s.n_addrs:
        if not p.pflags & PF_L4:
            stats[C_NO_MAPPING] += 1
            return DROP_NAT_NO_MAPPING
        l4 = p.data + p.l4_off
        if proto == IPPROTO_TCP or proto == IPPROTO_UDP:
            h[0] = hkey(proto, dst, rd16(l4 + 2), src, rd16(l4))
        elif proto == IPPROTO_ICMP and l4[0] == ICMP_ECHO_REPLY:
            h[0] = hkey(proto, dst, rd16(l4 + 4), src, 0)
        return TO_IN
    if not p.pflags & PF_L4:
        return DROP_NAT_NO_MAPPING
    l4 = p.data + p.l4_off
    if proto == IPPROTO_TCP or proto == IPPROTO_UDP:
        h[0] = hkey(proto, src, rd16(l4), dst, rd16(l4 + 2))
    elif proto == IPPROTO_ICMP and l4[0] == ICMP_ECHO:
        h[0] = hkey(proto, src, rd16(l4 + 4), dst, 0)
    elif not (proto == IPPROTO_ICMP and is_icmp_error(l4[0])):
        return DROP_NAT_NO_MAPPING      # (an ICMP error is looked up by its quote)
    return 0


cdef class Nat(Element):
    """IPv4 source NAT with port allocation (NAPT, RFC 3022), with a bounded
    connection table in flat C hash tables.

    One input carries both directions. A packet whose destination is one
    of the `external` addresses is a reply from outside: it is translated
    back (destination address and port to the inside host's) and sent to
    `in`, or dropped (nat-no-mapping) when no flow matches its protocol,
    external port and remote address and port (address- and
    port-dependent filtering). Every other packet is outbound: its source
    address and port are translated to an external address (chosen by the
    inside host's address, so a host keeps one outside address) and a port
    of `ports`, taken from a per-protocol free list (a freed port goes to
    its back, the last to be reused), and it goes to `out`.

    In RFC 4787's terms, mapping is address- and port-dependent: a mapping
    is per 5-tuple, so one inside address and port talking to two remote
    endpoints gets two external ports (not endpoint-independent mapping,
    which REQ-1 asks for; STUN-style hole punching does not work through
    it). Filtering is address- and port-dependent too. There is no
    hairpinning: inside hosts cannot reach each other through the external
    address.

    ICMP echo requests/replies are translated by their identifier, like a
    port. ICMP errors (destination unreachable, time exceeded, parameter
    problem) are translated both ways (RFC 5508), matched by the packet
    they quote; all other ICMP types are dropped. From outside, an error
    quoting a packet the NAT sent has the quoted source (address, port,
    checksums as far as the quote holds them) translated back to the
    inside host's, and so has its outer destination; it goes to `in`.
    From inside, an error quoting a packet that came in through a flow
    (say a host's port unreachable for a UDP datagram from its remote
    peer) has the quoted destination translated to the external address
    and port, and its outer source, whichever inside host or router sent
    it, to the flow's external address (REQ-4); it goes to `out`. An
    error refreshes no flow. All checksums, the ICMP one included, are
    updated incrementally (RFC 1624).

    TCP flows follow their close (RFC 5382 REQ-5): a RST either way, or a
    FIN each way, puts the flow on `tcp_transitory_timeout` (counted in
    tcp_transitory); until then it lives on `tcp_timeout`. A SYN without
    ACK on such a closing flow (a new connection on the same 5-tuple)
    puts it back on `tcp_timeout`, keeping its port (counted in
    tcp_reused). Sequence numbers are not checked: a RST that the inside
    host ignores only shortens the idle timeout.

    Flows idle longer than their timeout expire; the clock is read once
    per batch: the system's monotonic clock, or with `clock: packet` the
    packets' own timestamps (to replay a capture deterministically).
    Fragments are dropped (reason fragment); frames that are not IPv4,
    ICMPv6 included, are dropped (not-ip): IPv6 is not translated.

    Outputs:
        out: outbound packets and ICMP errors from inside, translated to
            an external address (and port)
        in: replies and ICMP errors from outside, translated back towards
            the inside
    Counters:
        flows: flows in the table now; allocations: flows created;
        expirations: flows expired; port_exhaustion: new flows refused for
        want of a port; unknown_inbound: packets from outside with no flow;
        tcp_transitory: TCP flows put on the transitory timeout (RST, or a
        FIN each way); tcp_reused: closing TCP flows reopened by a SYN
    Drops:
        nat-no-port: no free external port for a new flow
        nat-no-mapping: from outside with no flow; an ICMP error quoting no
            flow; outbound not TCP/UDP/echo/ICMP error
        table-full: max_flows flows in the table already
        fragment: an IPv4 fragment
        not-ip: not IPv4
        malformed: an ICMP error whose quoted packet is cut short
        malformed:ipv4: (and the other malformed:* reasons) from parsing
    Example:
        ports:
          src: "gen:count=1000,src=198.18.0.1-198.18.0.10,dst=198.19.0.1"
          dst: sink
        elements:
          nat: {type: nat, external: 198.18.255.1, ports: 20000-29999}
        links: ["src -> nat -> dst", "nat [in] -> drop"]
    """
    TYPE = "nat"
    SUMMARY = "IPv4 source NAT with port allocation (NAPT)"
    OUTPUTS = ("out", "in")
    PARAMS = (
        Param("external", AddrRange(),
              f"the outside IPv4 address, or a range of at most {MAX_EXTERNAL}"),
        Param("ports", Range(1, 65535, "a port"), "external ports to allocate", "1024-65535"),
        Param("tcp_timeout", Float(0.001),
              "seconds an established TCP flow lives idle (RFC 5382: at least 7440)", 7440),
        Param("tcp_transitory_timeout", Float(0.001),
              "seconds a TCP flow lives idle after a RST or a FIN each way "
              "(RFC 5382: at least 240)", 240),
        Param("udp_timeout", Float(0.001), "seconds a UDP flow lives idle", 300),
        Param("icmp_timeout", Float(0.001), "seconds an ICMP echo flow lives idle", 60),
        Param("max_flows", Int(1, 1 << 22), "flows the table holds", 65536),
        Param("clock", Choice("system", "packet"),
              "time for expiry: the monotonic clock, or packet timestamps", "system"),
    )
    COUNTERS = ("flows", "allocations", "expirations", "port_exhaustion", "unknown_inbound",
                "tcp_transitory", "tcp_reused")

    cdef NatState st

    @classmethod
    def check(cls, params):
        ext = params.get("external")
        if ext is None:
            return []
        if ext[0].version != 4:
            return ["external: the NAT is IPv4 only, got an IPv6 address"]
        n = int(ext[1]) - int(ext[0]) + 1
        if n > MAX_EXTERNAL:
            return [f"external: at most {MAX_EXTERNAL} addresses, got {n}"]
        return []

    def __dealloc__(self):
        self._free()

    cdef void _free(self) noexcept:
        free(self.st.flows)
        free(self.st.free_flows)
        free(self.st.tab_out)
        free(self.st.tab_in)
        free(self.st.ports)
        free(self.st.port_head)
        free(self.st.port_count)
        self.st.flows = NULL
        self.st.free_flows = NULL
        self.st.tab_out = NULL
        self.st.tab_in = NULL
        self.st.ports = NULL
        self.st.port_head = NULL
        self.st.port_count = NULL

    def configure(self, external, ports=(1024, 65535), tcp_timeout=7440,
                  tcp_transitory_timeout=240, udp_timeout=300, icmp_timeout=60,
                  max_flows=65536, clock="system"):
        cdef NatState* s = &self.st
        cdef uint32_t size = 2, i, k, pool
        msgs = type(self).check({"external": external})
        if msgs:
            raise ValueError(msgs[0])
        self._free()
        s.ext_lo = int(external[0])
        s.n_addrs = int(external[1]) - int(external[0]) + 1
        s.port_lo = ports[0]
        s.n_ports = ports[1] - ports[0] + 1
        s.timeout[P_TCP] = <uint64_t>(tcp_timeout * 1e9)
        s.timeout[P_UDP] = <uint64_t>(udp_timeout * 1e9)
        s.timeout[P_ICMP] = <uint64_t>(icmp_timeout * 1e9)
        s.timeout[L_TCP_TRANS] = <uint64_t>(tcp_transitory_timeout * 1e9)
        s.packet_clock = clock == "packet"
        s.now = 0
        s.max_flows = max_flows
        while size < 2 * <uint32_t>max_flows:
            size <<= 1
        s.mask = size - 1
        s.flows = <Flow*>calloc(max_flows, sizeof(Flow))
        s.free_flows = <uint32_t*>calloc(max_flows, sizeof(uint32_t))
        s.tab_out = <uint32_t*>calloc(size, sizeof(uint32_t))
        s.tab_in = <uint32_t*>calloc(size, sizeof(uint32_t))
        s.ports = <uint16_t*>calloc(<size_t>N_PROTO * s.n_addrs * s.n_ports, sizeof(uint16_t))
        s.port_head = <uint32_t*>calloc(N_PROTO * s.n_addrs, sizeof(uint32_t))
        s.port_count = <uint32_t*>calloc(N_PROTO * s.n_addrs, sizeof(uint32_t))
        if (s.flows == NULL or s.free_flows == NULL or s.tab_out == NULL or s.tab_in == NULL
                or s.ports == NULL or s.port_head == NULL or s.port_count == NULL):
            self._free()
            raise MemoryError("nat: cannot allocate the connection table")
        for i in range(<uint32_t>max_flows):
            s.free_flows[i] = max_flows - 1 - i       # flow 0 first
        s.n_free = max_flows
        for pool in range(<uint32_t>N_PROTO * s.n_addrs):
            for k in range(s.n_ports):
                s.ports[<size_t>pool * s.n_ports + k] = <uint16_t>(s.port_lo + k)
            s.port_count[pool] = s.n_ports
        for i in range(<uint32_t>N_LISTS):
            s.head[i] = NIL
            s.tail[i] = NIL

    cdef int process(self, Batch* b) noexcept nogil:
        # Three passes, so that the table and flow cache misses of a batch
        # overlap (prefetch) rather than come one after another: parse and
        # hash, then fetch table buckets, then translate.
        cdef NatState* s = &self.st
        cdef uint64_t* stats = self.stats
        cdef uint64_t t
        cdef uint32_t i, e
        cdef uint32_t hs[BATCH_MAX]
        cdef int todo[BATCH_MAX]
        cdef int r
        cdef Desc* p
        cdef uint32_t n = b.n if b.n <= BATCH_MAX else BATCH_MAX
        if n == 0:
            return PER_PACKET
        t = b.d[n - 1].ts if s.packet_clock else now_ns(CLOCK_MONOTONIC)
        if t > s.now:
            s.now = t
        expire(s, stats)
        for i in range(n):
            todo[i] = key_hash(s, &b.d[i], &hs[i], stats)
            if todo[i] == TO_IN:
                prefetch(&s.tab_in[hs[i] & s.mask])
            elif todo[i] == 0:
                prefetch(&s.tab_out[hs[i] & s.mask])
        for i in range(n):
            if todo[i] == TO_IN:
                e = s.tab_in[hs[i] & s.mask]
            elif todo[i] == 0:
                e = s.tab_out[hs[i] & s.mask]
            else:
                continue
            if e != 0:
                prefetch(&s.flows[e - 1])
        for i in range(n):
            p = &b.d[i]
            r = todo[i]
            if r == 0:
                r = outbound(s, p, stats, hs[i])
            elif r == TO_IN:
                r = inbound(s, p, hs[i], stats)
                if r == DROP_NAT_NO_MAPPING:
                    stats[C_NO_MAPPING] += 1
            if r == TO_IN:
                p.out = OUT_IN
                p.hash = 0          # the 5-tuple changed: a flow hash is stale
            elif r == 0:
                p.out = OUT_OUT
                p.hash = 0
            else:
                drop_pkt(p, <uint16_t>r)
        return PER_PACKET
