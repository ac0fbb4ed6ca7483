"""rewrite: sets or maps header fields (MACs, VLAN tag, IP addresses, ports,
DSCP/ECN, TTL), with checksums updated incrementally (RFC 1624)."""
import ipaddress

from nmroute.errors import ParamError
from nmroute.schema import Param, Mac, Int, Bool, Choice, Custom

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memmove, memset

from nmroute.fastpath.batch cimport (
    Batch, Desc, OFF_NONE, PF_VLAN, PF_IPV4, PF_IPV6, PF_L4, drop_pkt)
from nmroute.fastpath.csum cimport csum_update16
from nmroute.fastpath.drops cimport DROP_TTL_EXPIRED, DROP_OVERSIZE, DROP_MALFORMED_VLAN
from nmroute.fastpath.element cimport Element, PER_PACKET
from nmroute.fastpath.parse cimport (
    ensure_parsed, rd16, wr16, ETH_P_8021Q, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6)

cdef enum:
    # The pool's buffer size is not in Desc: a VLAN push assumes the default.
    VLAN_NONE = 0
    VLAN_PUSH = 1
    VLAN_POP = 2
    VLAN_SET = 3
    OUT_EXPIRED = 1


# An address rewrite: the whole address (any) or a prefix mapped onto another
# prefix of the same length, keeping the host bits.
cdef struct AddrMap:
    bint on
    bint any
    uint8_t frm[16]
    uint8_t to[16]
    uint8_t mask[16]


cdef struct RwState:
    bint eth_src
    bint eth_dst
    uint8_t src_mac[6]
    uint8_t dst_mac[6]
    int vlan_op
    uint16_t vid
    int pcp             # -1: keep
    AddrMap ip4_src
    AddrMap ip4_dst
    AddrMap ip6_src
    AddrMap ip6_dst
    int sport           # -1: keep
    int dport
    uint8_t tos_keep    # TOS / traffic class bits kept
    uint8_t tos_set     # bits set
    bint tos
    bint ttl_dec
    bint expired_out
    bint tuple_changes  # an address or port rewrite


def _vlan(value):
    s = str(value).strip().lower() if not isinstance(value, bool) else ""
    if s == "pop":
        return ("pop", 0)
    op, _, vid = s.partition(" ")
    if op in ("push", "set") and vid.strip().isdigit() and 0 <= int(vid) <= 4095:
        return (op, int(vid))
    raise ParamError(f"expected 'pop', 'push ID' or 'set ID' (ID 0..4095), got {value!r}")


def _addr_map(version):
    def convert(value):
        what = (f"an IPv{version} address or a mapping like "
                + ("198.18.0.0/16 -> 198.19.0.0/16" if version == 4
                   else "2001:2::/48 -> 2001:2:1::/48"))
        if not isinstance(value, str):
            raise ParamError(f"expected {what}, got {value!r}")
        try:
            if "->" in value:
                a, b = (ipaddress.ip_network(x.strip(), strict=True) for x in value.split("->"))
            else:
                a = b = ipaddress.ip_address(value.strip())
        except ValueError:
            a = b = None
        if a is None or a.version != version or b.version != version:
            raise ParamError(f"expected {what}, got {value!r}")
        if "->" not in value:
            return (a.packed, a.packed, b"\xff" * len(a.packed), True)
        if a.prefixlen != b.prefixlen:
            raise ParamError(f"the two prefixes of {value!r} differ in length")
        return (a.network_address.packed, b.network_address.packed, a.netmask.packed, False)
    return Custom(f"an IPv{version} address or a prefix mapping 'PREFIX -> PREFIX'", convert)


cdef void set_map(AddrMap* m, object v):
    memset(m, 0, sizeof(AddrMap))
    if v is None:
        return
    frm, to, mask, anyaddr = v
    m.on = True
    m.any = anyaddr
    memcpy(m.frm, <const char*>frm, len(frm))
    memcpy(m.to, <const char*>to, len(to))
    memcpy(m.mask, <const char*>mask, len(mask))


cdef inline void upd(uint8_t* cs, uint16_t old, uint16_t new) noexcept nogil:
    """Update the checksum field at cs for a word changed from old to new."""
    if cs != NULL:
        wr16(cs, csum_update16(rd16(cs), old, new))


cdef inline void map_addr(uint8_t* a, const AddrMap* m, int n,
                          uint8_t* cs1, uint8_t* cs2) noexcept nogil:
    """Rewrite the n-byte address at a, updating up to two checksums."""
    cdef int i
    cdef uint16_t old, new
    cdef uint8_t b[16]
    if not m.any:
        for i in range(n):
            if a[i] & m.mask[i] != m.frm[i]:
                return
    for i in range(n):
        b[i] = (a[i] & ~m.mask[i]) | m.to[i]
    for i in range(0, n, 2):
        old = rd16(a + i)
        new = rd16(b + i)
        if old != new:
            wr16(a + i, new)
            upd(cs1, old, new)
            upd(cs2, old, new)


cdef inline void shift_offsets(Desc* p, int by) noexcept nogil:
    if p.l3_off != OFF_NONE:
        p.l3_off = <uint16_t>(p.l3_off + by)
    if p.l4_off != OFF_NONE:
        p.l4_off = <uint16_t>(p.l4_off + by)
    p.len = <uint16_t>(p.len + by)


cdef inline int do_vlan(const RwState* st, Desc* p, uint32_t buf_size) noexcept nogil:
    """The VLAN operation; returns 0 or a drop reason."""
    cdef uint8_t* d = p.data
    cdef uint16_t tci
    if st.vlan_op == VLAN_PUSH:
        if p.n_vlan >= 2:
            return DROP_MALFORMED_VLAN       # would make a third tag
        if <uint32_t>p.len + 4 > buf_size:
            return DROP_OVERSIZE
        memmove(d + 16, d + 12, p.len - 12)
        tci = st.vid | ((st.pcp if st.pcp >= 0 else 0) << 13)
        wr16(d + 12, ETH_P_8021Q)
        wr16(d + 14, tci)
        shift_offsets(p, 4)
        p.inner_vlan = p.vlan
        p.vlan = tci
        p.n_vlan += 1
        p.pflags |= PF_VLAN
    elif st.vlan_op == VLAN_POP:
        if p.n_vlan == 0:
            return 0
        memmove(d + 12, d + 16, p.len - 16)
        shift_offsets(p, -4)
        p.vlan = p.inner_vlan
        p.inner_vlan = 0
        p.n_vlan -= 1
        if p.n_vlan == 0:
            p.pflags &= ~PF_VLAN
    elif p.n_vlan > 0 and (st.vlan_op == VLAN_SET or st.pcp >= 0):
        tci = rd16(d + 14)
        if st.vlan_op == VLAN_SET:
            tci = (tci & 0xF000) | st.vid
        if st.pcp >= 0:
            tci = (tci & 0x1FFF) | (st.pcp << 13)
        wr16(d + 14, tci)
        p.vlan = tci
    return 0


cdef inline int rewrite_one(const RwState* st, Desc* p, uint32_t buf_size) noexcept nogil:
    """Rewrite one packet: returns 0 (out), OUT_EXPIRED, or -reason."""
    cdef int r = ensure_parsed(p)
    cdef uint8_t* d
    cdef uint8_t* ip
    cdef uint8_t* l4 = NULL
    cdef uint8_t* cs = NULL
    cdef uint8_t* ipcs = NULL
    cdef bint v4, v6, udp = False
    cdef uint16_t old, new
    cdef uint8_t tc
    if r:
        return -r
    v4 = p.pflags & PF_IPV4
    v6 = p.pflags & PF_IPV6
    if st.ttl_dec and (v4 or v6):
        if p.data[p.l3_off + (8 if v4 else 7)] <= 1:
            return OUT_EXPIRED
    d = p.data
    if st.eth_dst:
        memcpy(d, st.dst_mac, 6)
    if st.eth_src:
        memcpy(d + 6, st.src_mac, 6)
    if st.vlan_op != VLAN_NONE or st.pcp >= 0:
        r = do_vlan(st, p, buf_size)
        if r:
            return -r
    if not (v4 or v6):
        return 0
    ip = d + p.l3_off
    if p.pflags & PF_L4:
        l4 = d + p.l4_off
        if p.l4_proto == IPPROTO_TCP:
            cs = l4 + 16
        elif p.l4_proto == IPPROTO_UDP:
            udp = True
            if rd16(l4 + 6) != 0:        # 0: no checksum (IPv4); it stays 0
                cs = l4 + 6
        elif p.l4_proto == IPPROTO_ICMPV6 and v6:
            cs = l4 + 2
    if v4:
        ipcs = ip + 10
        if st.tos:
            old = rd16(ip)
            new = (old & 0xFF00) | (ip[1] & st.tos_keep) | st.tos_set
            wr16(ip, new)
            upd(ipcs, old, new)
        if st.ttl_dec:
            old = rd16(ip + 8)
            new = old - 0x100
            wr16(ip + 8, new)
            upd(ipcs, old, new)
        if st.ip4_src.on:
            map_addr(ip + 12, &st.ip4_src, 4, ipcs, cs)
        if st.ip4_dst.on:
            map_addr(ip + 16, &st.ip4_dst, 4, ipcs, cs)
    else:
        if st.tos:
            tc = ((ip[0] & 0x0F) << 4) | (ip[1] >> 4)
            tc = (tc & st.tos_keep) | st.tos_set
            ip[0] = (ip[0] & 0xF0) | (tc >> 4)
            ip[1] = (ip[1] & 0x0F) | ((tc & 0x0F) << 4)
        if st.ttl_dec:
            ip[7] -= 1
        if st.ip6_src.on:
            map_addr(ip + 8, &st.ip6_src, 16, NULL, cs)
        if st.ip6_dst.on:
            map_addr(ip + 24, &st.ip6_dst, 16, NULL, cs)
    if l4 != NULL and (p.l4_proto == IPPROTO_TCP or udp):
        if st.sport >= 0:
            old = rd16(l4)
            wr16(l4, <uint16_t>st.sport)
            upd(cs, old, <uint16_t>st.sport)
        if st.dport >= 0:
            old = rd16(l4 + 2)
            wr16(l4 + 2, <uint16_t>st.dport)
            upd(cs, old, <uint16_t>st.dport)
    if udp and cs != NULL and rd16(cs) == 0:
        wr16(cs, 0xFFFF)                 # a computed 0 is sent as 0xFFFF (RFC 768)
    if st.tuple_changes:
        p.hash = 0                       # addresses or ports changed: a flow hash is stale
    return 0


cdef class Rewrite(Element):
    """Sets header fields, or maps addresses from one prefix onto another,
    and updates the IPv4 header, TCP, UDP and ICMPv6 checksums
    incrementally (RFC 1624; pseudo-headers included; a UDP checksum of 0
    stays 0: over IPv4 it means none, over IPv6 it is invalid and left as
    it came). Each IP parameter applies to its own family;
    frames that are not IP get only the Ethernet and VLAN rewrites. Port
    rewrites apply to TCP and UDP (not to non-first fragments, which carry
    no ports). An address mapping 'A/n -> B/n' rewrites only addresses in
    A/n, keeping their host bits; a plain address rewrites every packet.

    vlan: 'push ID' adds an outer 802.1Q tag (PCP from `pcp`, else 0);
    'pop' removes the outer tag (untagged frames pass as they are); 'set ID'
    changes the outer tag's VID (untagged frames stay untagged). `pcp`
    alone sets the PCP of an existing outer tag. Pushing or popping moves
    the frame within its buffer and updates the descriptor's offsets. The
    descriptor does not say how large its buffer is: a push assumes the
    default 2048 bytes and drops (oversize) a frame that would outgrow it.

    ttl_dec: a packet arriving with TTL / hop limit 0 or 1 is not rewritten
    at all: it is dropped (ttl-expired) or, with `expired: output`, sent
    unchanged to the `expired` output (for the host stack to answer).

    Outputs:
        out: every rewritten packet
        expired: with `expired: output`, packets whose TTL / hop limit ran out
    Counters:
        rewritten: packets sent to out; l2_only: of those, frames that are
        not IP (Ethernet/VLAN rewrites only); expired: TTL / hop limit ran out
    Drops:
        ttl-expired: TTL / hop limit ran out (with `expired: drop`)
        oversize: a VLAN push would not fit in a 2048-byte buffer
        malformed:vlan: a VLAN push onto a frame that has two tags already
        malformed:eth: (and the other malformed:* reasons) from parsing
    Example:
        ports: {src: "gen:count=100,dst=198.19.0.0/24", dst: sink}
        elements:
          rw: {type: rewrite, eth_dst: "02:00:00:00:00:99", ttl_dec: true,
               ipv4_dst: "198.19.0.0/24 -> 198.18.7.0/24", dport: 53}
        links: ["src -> rw -> dst"]
    """
    TYPE = "rewrite"
    SUMMARY = "set or map header fields; checksums updated incrementally"
    OUTPUTS = ("out", "expired")
    PARAMS = (
        Param("eth_src", Mac(), "new source MAC", None),
        Param("eth_dst", Mac(), "new destination MAC", None),
        Param("vlan", Custom("'pop', 'push ID' or 'set ID'", _vlan),
              "VLAN tag operation: pop, push ID, set ID", None),
        Param("pcp", Int(0, 7), "priority of a pushed or set tag", None),
        Param("ipv4_src", _addr_map(4), "new IPv4 source, or 'PREFIX -> PREFIX'", None),
        Param("ipv4_dst", _addr_map(4), "new IPv4 destination, or 'PREFIX -> PREFIX'", None),
        Param("ipv6_src", _addr_map(6), "new IPv6 source, or 'PREFIX -> PREFIX'", None),
        Param("ipv6_dst", _addr_map(6), "new IPv6 destination, or 'PREFIX -> PREFIX'", None),
        Param("sport", Int(0, 65535), "new TCP/UDP source port", None),
        Param("dport", Int(0, 65535), "new TCP/UDP destination port", None),
        Param("dscp", Int(0, 63), "new DSCP", None),
        Param("ecn", Int(0, 3), "new ECN bits", None),
        Param("ttl_dec", Bool(), "decrement the TTL / hop limit", False),
        Param("expired", Choice("drop", "output"),
              "with ttl_dec, what becomes of a packet whose TTL runs out", "drop"),
    )
    COUNTERS = ("rewritten", "l2_only", "expired")

    cdef RwState st

    @classmethod
    def outputs(cls, params):
        if params.get("expired") == "output":
            return ("out", "expired")
        return ("out",)

    @classmethod
    def check(cls, params):
        msgs = []
        fields = [p.name for p in cls.PARAMS if p.name not in ("ttl_dec", "expired")]
        if not params.get("ttl_dec") and all(params.get(f) is None for f in fields):
            msgs.append("nothing to rewrite: give at least one of "
                        + ", ".join(fields[:4]) + ", ..., ttl_dec")
        if params.get("expired") == "output" and not params.get("ttl_dec"):
            msgs.append("expired: output needs ttl_dec: true")
        vlan = params.get("vlan")
        if params.get("pcp") is not None and vlan is not None and vlan[0] == "pop":
            msgs.append("pcp makes no sense with vlan: pop")
        return msgs

    def configure(self, eth_src=None, eth_dst=None, vlan=None, pcp=None, ipv4_src=None,
                  ipv4_dst=None, ipv6_src=None, ipv6_dst=None, sport=None, dport=None,
                  dscp=None, ecn=None, ttl_dec=False, expired="drop"):
        cdef RwState* st = &self.st
        memset(st, 0, sizeof(RwState))
        if eth_src is not None:
            st.eth_src = True
            memcpy(st.src_mac, <const char*>eth_src, 6)
        if eth_dst is not None:
            st.eth_dst = True
            memcpy(st.dst_mac, <const char*>eth_dst, 6)
        st.vlan_op = VLAN_NONE
        if vlan is not None:
            st.vlan_op = {"push": VLAN_PUSH, "pop": VLAN_POP, "set": VLAN_SET}[vlan[0]]
            st.vid = vlan[1]
        st.pcp = -1 if pcp is None else pcp
        set_map(&st.ip4_src, ipv4_src)
        set_map(&st.ip4_dst, ipv4_dst)
        set_map(&st.ip6_src, ipv6_src)
        set_map(&st.ip6_dst, ipv6_dst)
        st.sport = -1 if sport is None else sport
        st.dport = -1 if dport is None else dport
        st.tos = dscp is not None or ecn is not None
        st.tos_keep = 0xFF
        st.tos_set = 0
        if dscp is not None:
            st.tos_keep &= 0x03
            st.tos_set |= dscp << 2
        if ecn is not None:
            st.tos_keep &= 0xFC
            st.tos_set |= ecn
        changes = (ipv4_src, ipv4_dst, ipv6_src, ipv6_dst, sport, dport)
        st.tuple_changes = any(v is not None for v in changes)
        st.ttl_dec = bool(ttl_dec)
        st.expired_out = expired == "output"

    cdef int process(self, Batch* b) noexcept nogil:
        cdef uint32_t i
        cdef int r
        cdef Desc* p
        cdef const RwState* st = &self.st
        cdef uint64_t* stats = self.stats
        for i in range(b.n):
            p = &b.d[i]
            r = rewrite_one(st, p, b.buf_size)
            if r == 0:
                p.out = 0
                stats[0] += 1
                if not p.pflags & (PF_IPV4 | PF_IPV6):
                    stats[1] += 1
            elif r == OUT_EXPIRED:
                stats[2] += 1
                if st.expired_out:
                    p.out = OUT_EXPIRED
                else:
                    drop_pkt(p, DROP_TTL_EXPIRED)
            else:
                drop_pkt(p, <uint16_t>(-r))
        return PER_PACKET
