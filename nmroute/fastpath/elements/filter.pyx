"""filter: an ordered first-match ACL over IPv4/IPv6, optionally stateful,
with an optional policer and header sanity checks."""
import array
import ipaddress

from nmroute.errors import ParamError
from nmroute.schema import (
    PORT_PROTOS, Param, Bool, Choice, Custom, Float, Int, Name, Prefix, PortRange, Proto, each)

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy

from nmroute.fastpath.batch cimport (
    Batch, Desc, drop_pkt, PF_IPV4, PF_IPV6, PF_L4, PF_FRAG)
from nmroute.fastpath.element cimport Element, PER_PACKET
from nmroute.fastpath.drops cimport (
    DROP_NOT_IP, DROP_DENIED, DROP_POLICED, DROP_TABLE_FULL, DROP_TTL_EXPIRED,
    DROP_BAD_CHECKSUM, DROP_MALFORMED_L4)
from nmroute.fastpath.parse cimport ensure_parsed, rd16, rd32
from nmroute.fastpath.csum cimport csum
from nmroute.fastpath.includes.sys cimport timespec, clock_gettime

cdef extern from "<time.h>" nogil:
    enum: CLOCK_MONOTONIC_COARSE

cdef enum:
    NO_RULE = 0xFFFFFFFF
    EMPTY = 0xFFFFFFFF
    MAX_PROBE = 16          # connection / source table: slots tried per lookup
    SWEEP = 256             # connection table: slots a full table frees expired entries in
    TOMB = 0xFF             # Conn.fam of a freed slot
    P_TCP = 6
    P_UDP = 17
    P_ICMP = 1
    P_ICMPV6 = 58
    P_SCTP = 132


# Own counters, in COUNTERS order.
cdef enum:
    C_ALLOWED = 0
    C_DENIED = 1
    C_ESTABLISHED = 2
    C_CREATED = 3
    C_EVICTIONS = 4
    C_TABLE_FULL = 5
    C_POLICED = 6
    C_POLICE_TABLE_FULL = 7
    C_N = 8


# --- the ACL: bit vectors over the source and destination classes ----------------

cdef extern from *:
    int ctz64 "__builtin_ctzll"(unsigned long long x) nogil

cdef enum:
    CHILD = 0x80000000      # an IPv4 trie entry that points to a node (else a class)


cdef struct Rule:         # what is left to check of a rule once its addresses matched
    uint16_t sport_lo
    uint16_t sport_hi
    uint16_t dport_lo
    uint16_t dport_hi
    uint8_t proto
    uint8_t any_proto     # 1: the rule names no proto
    uint8_t any_ports     # 1: the rule names no port
    uint8_t allow


cdef struct Field:        # one address field (src or dst) of one family
    uint64_t* bits        # n_cls x words: the rules each class of addresses matches
    uint64_t* summ        # n_cls: bit k set if words [k*chunk, (k+1)*chunk) hold a rule
    #                       that names a prefix of the class (so class 0's is 0)
    uint32_t* root        # IPv4: 65536 entries by the top 16 bits: a class, or CHILD | node
    uint32_t* nodes       # IPv4: nodes of 256 entries, by the next 8 bits
    Key6* keys            # IPv6: hash table of the field's prefixes
    uint32_t kmask
    uint32_t n_lens       # IPv6: the distinct prefix lengths, longest first
    uint8_t lens[128]
    uint64_t m_hi[128]    # their masks
    uint64_t m_lo[128]


cdef struct Key6:         # an IPv6 prefix of a field and its class; cls 0: a free slot
    uint64_t hi
    uint64_t lo
    uint32_t plen
    uint32_t cls


cdef inline uint64_t key_hash(uint64_t a, uint64_t b, uint64_t c, uint64_t d,
                              uint64_t e) noexcept nogil:
    """A hash of five words: one multiply each (independent, so they
    overlap), then one mixing round."""
    cdef uint64_t h = (a * 0x9e3779b97f4a7c15ULL) ^ (b * 0xc2b2ae3d27d4eb4fULL) ^ \
        (c * 0x165667b19e3779f9ULL) ^ (d * 0xd6e8feb86659fd93ULL) ^ (e * 0xff51afd7ed558ccdULL)
    h ^= h >> 32
    h *= 0xc4ceb9fe1a85ec53ULL
    h ^= h >> 29
    return h


cdef inline uint64_t rd64(const uint8_t* p) noexcept nogil:
    return (<uint64_t>rd32(p) << 32) | rd32(p + 4)


cdef struct Acl:          # the rules, compiled
    Rule* rules
    uint32_t n_rules
    uint32_t words        # 64-bit words of a rule bit vector
    uint32_t chunk        # words a summary bit stands for
    uint64_t ww[2]        # per family: the summary of the rules that name no address
    Field fld[4]          # IPv4 src, IPv4 dst, IPv6 src, IPv6 dst


cdef inline uint32_t cls4(const Field* fd, uint32_t a) noexcept nogil:
    """The class of IPv4 address a in field fd: one to three table reads."""
    cdef uint32_t e = fd.root[a >> 16]
    if e & CHILD:
        e = fd.nodes[((e ^ CHILD) << 8) | ((a >> 8) & 0xFF)]
        if e & CHILD:
            e = fd.nodes[((e ^ CHILD) << 8) | (a & 0xFF)]
    return e


cdef inline uint32_t cls6(const Field* fd, uint64_t hi, uint64_t lo) noexcept nogil:
    """The class of an IPv6 address in field fd: a hash probe per prefix
    length, longest first, until one holds the masked address."""
    cdef uint32_t j, k, pl
    cdef uint64_t mh, ml
    cdef const Key6* e
    for j in range(fd.n_lens):
        mh = hi & fd.m_hi[j]
        ml = lo & fd.m_lo[j]
        pl = fd.lens[j]
        k = key_hash(mh, ml, pl, 0, 0) & fd.kmask
        while True:
            e = &fd.keys[k]
            if e.cls == 0:
                break
            if e.lo == ml and e.hi == mh and e.plen == pl:
                return e.cls
            k = (k + 1) & fd.kmask
    return 0


cdef inline uint32_t first_of(const Acl* t, uint64_t m, uint32_t w, uint8_t proto,
                              bint has_ports, uint16_t sport, uint16_t dport) noexcept nogil:
    """The first rule of word w of a bit vector, m its bits, whose proto and
    ports match, or NO_RULE."""
    cdef uint32_t idx
    cdef const Rule* r
    while m:
        idx = (w << 6) | <uint32_t>ctz64(m)
        m &= m - 1
        r = &t.rules[idx]
        if not r.any_proto and r.proto != proto:
            continue
        if not r.any_ports:
            if not has_ports:
                continue
            if (sport < r.sport_lo or sport > r.sport_hi
                    or dport < r.dport_lo or dport > r.dport_hi):
                continue
        return idx
    return NO_RULE


cdef uint32_t acl_scan(const Acl* t, const uint64_t* a, const uint64_t* b, uint64_t summ,
                       uint8_t proto, bint has_ports, uint16_t sport,
                       uint16_t dport) noexcept nogil:
    """acl_first() past the class lookups: the words of a AND b that summ
    marks, in order, each word's rules in order."""
    cdef uint32_t w, wend, idx, words = t.words, chunk = t.chunk
    cdef uint64_t m
    if chunk == 1:          # up to 4096 rules: a summary bit a word
        while summ:
            w = <uint32_t>ctz64(summ)
            summ &= summ - 1
            m = a[w] & b[w]
            if m:
                idx = first_of(t, m, w, proto, has_ports, sport, dport)
                if idx != NO_RULE:
                    return idx
        return NO_RULE
    while summ:
        w = <uint32_t>ctz64(summ) * chunk
        summ &= summ - 1
        wend = w + chunk if w + chunk < words else words
        while w < wend:
            m = a[w] & b[w]
            if m:
                idx = first_of(t, m, w, proto, has_ports, sport, dport)
                if idx != NO_RULE:
                    return idx
            w += 1
    return NO_RULE


cdef inline uint32_t acl_first(const Acl* t, int f, uint64_t s_hi, uint64_t s_lo,
                               uint64_t d_hi, uint64_t d_lo, uint8_t proto, bint has_ports,
                               uint16_t sport, uint16_t dport) noexcept nogil:
    """The lowest index of a rule that matches, or NO_RULE: the rules of
    the source's class AND those of the destination's, in index order,
    the first whose proto and ports match."""
    cdef const Field* fs = &t.fld[2 * f]
    cdef const Field* fd = &t.fld[2 * f + 1]
    cdef uint32_t cs, cd
    cdef uint64_t summ
    if f == 0:
        cs = cls4(fs, <uint32_t>s_lo)
        cd = cls4(fd, <uint32_t>d_lo)
    else:
        cs = cls6(fs, s_hi, s_lo)
        cd = cls6(fd, d_hi, d_lo)
    # A rule of both classes names a prefix of one of them, or no address.
    summ = fs.summ[cs] | fd.summ[cd] | t.ww[f]
    if summ == 0:
        return NO_RULE
    return acl_scan(t, fs.bits + <size_t>cs * t.words, fd.bits + <size_t>cd * t.words, summ,
                    proto, has_ports, sport, dport)


# --- connection table -------------------------------------------------------------

cdef struct Conn:
    uint64_t a_hi         # the lower (address, port) end of the flow
    uint64_t a_lo
    uint64_t b_hi
    uint64_t b_lo
    uint64_t expires      # ns on the filter's clock
    uint16_t pa
    uint16_t pb
    uint8_t proto
    uint8_t fam           # 4 or 6; 0: a never-used slot; TOMB: freed


cdef class ConnTable:
    """A flat open-addressing table of connections, shared by the filters
    that name the same `conntrack` table."""
    cdef Conn* slots
    cdef uint32_t mask
    cdef uint32_t used        # slots holding an entry (live or expired)
    cdef uint32_t cursor      # where the next sweep starts
    cdef uint32_t max_conns

    def __cinit__(self, uint32_t max_conns):
        cdef uint32_t size = 64
        while size < 2 * max_conns:
            size <<= 1
        self.slots = <Conn*>calloc(size, sizeof(Conn))
        if self.slots == NULL:
            raise MemoryError()
        self.mask = size - 1
        self.max_conns = max_conns

    def __dealloc__(self):
        free(self.slots)


# --- per-source policer table -------------------------------------------------------

cdef struct Bucket:
    uint64_t hi
    uint64_t lo
    uint64_t last         # ns of the last refill
    double tokens
    uint8_t fam           # 0: free


# --- params ------------------------------------------------------------------------

RULE_KEYS = ("action", "src", "dst", "proto", "sport", "dport", "family")
_PORTS = PortRange()


def _err(msg, *path):
    return ParamError(msg, path)


_PREFIX = Prefix()
_PROTO = Proto()


class CompiledRule(dict):
    """A rule after _rules: action, src, dst (None or (family, int address,
    prefix length)), proto, sport, dport (None or (lo, hi)), family."""


def _rules(value):
    """The `rules` list as written -> a list of CompiledRule; errors say which
    rule and which key (ParamError.path, e.g. (2, 'dst')). Idempotent."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise ParamError(f"expected a list of rules, got {value!r}")
    return each(value, _rule)


def _rule(i, r):
    """Rule i as written -> a CompiledRule."""
    if isinstance(r, CompiledRule):
        return r
    if not isinstance(r, dict):
        raise _err(f"expected a rule like {{action: allow, dst: 198.19.0.0/16}}, got {r!r}", i)
    for k in r:
        if k not in RULE_KEYS:
            raise _err(f"unknown key {k!r}; a rule has {', '.join(RULE_KEYS)}", i, k)
    if "action" not in r:
        raise _err("missing 'action' (allow or deny)", i)
    action = str(r["action"]).lower()
    if action not in ("allow", "deny"):
        raise _err(f"expected 'allow' or 'deny', got {r['action']!r}", i, "action")
    rule = CompiledRule(action=action, src=None, dst=None, proto=None, sport=None,
                        dport=None, family=None)
    fams = set()
    for k in ("src", "dst"):
        if r.get(k) is not None:
            try:
                net = _PREFIX.convert(r[k])
            except ParamError as e:
                raise e.within(i, k) from None
            rule[k] = (net.version, int(net.network_address), net.prefixlen)
            fams.add(net.version)
    if len(fams) > 1:
        raise _err("src and dst are of different IP versions", i, "dst")
    if r.get("family") is not None:
        fam = {"ipv4": 4, "ipv6": 6, "4": 4, "6": 6}.get(str(r["family"]).lower())
        if fam is None:
            raise _err(f"expected 'ipv4' or 'ipv6', got {r['family']!r}", i, "family")
        if fams and fam not in fams:
            raise _err("the family differs from the addresses'", i, "family")
        fams = {fam}
    rule["family"] = fams.pop() if fams else None
    if r.get("proto") is not None:
        try:
            rule["proto"] = _PROTO.convert(r["proto"])
        except ParamError as e:
            raise e.within(i, "proto") from None
    for k in ("sport", "dport"):
        if r.get(k) is not None:
            try:
                rule[k] = _PORTS.convert(r[k])
            except ParamError as e:
                raise e.within(i, k) from None
    if (rule["sport"] or rule["dport"]) and rule["proto"] is not None and \
            rule["proto"] not in PORT_PROTOS:
        raise _err("ports need proto tcp, udp or sctp (or no proto)", i,
                   "sport" if rule["sport"] else "dport")
    return rule


def _mask(fam, plen):
    """(hi, lo) of the mask of a prefix length, an IPv4 one in lo."""
    bits = 32 if fam == 4 else 128
    m = ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)
    return (m >> 64, m & 0xFFFFFFFFFFFFFFFF)


def _split(fam, addr):
    if fam == 4:
        return (0, addr)
    return (addr >> 64, addr & 0xFFFFFFFFFFFFFFFF)


_CHILD = 0x80000000          # CHILD, as a Python int


def _trie4(cls_of):
    """The IPv4 class lookup of a field, from {(address, length): class}:
    a root of 65536 entries by the top 16 bits, then nodes of 256 entries
    for the next 8 bits and the last 8. An entry is the class of the longest
    prefix covering its addresses (prefixes are painted shortest first, and
    a new node starts as a copy of the entry it replaces) or CHILD | node."""
    root = array.array("I", [0]) * 65536
    nodes = array.array("I")

    def child(tab, j):
        e = tab[j]
        if not e & _CHILD:
            tab[j] = _CHILD | (len(nodes) >> 8)
            nodes.extend(array.array("I", [e]) * 256)
        return (tab[j] ^ _CHILD) << 8

    for (a, pl), c in sorted(cls_of.items(), key=lambda kv: kv[0][1]):
        if pl <= 16:
            j, cnt, tab = a >> 16, 1 << (16 - pl), root
        elif pl <= 24:
            j, cnt, tab = child(root, a >> 16) + ((a >> 8) & 0xFF), 1 << (24 - pl), nodes
        else:
            j = child(nodes, child(root, a >> 16) + ((a >> 8) & 0xFF)) + (a & 0xFF)
            cnt, tab = 1 << (32 - pl), nodes
        tab[j:j + cnt] = array.array("I", [c]) * cnt
    return root, nodes


cdef class Filter(Element):
    """An ordered first-match ACL of allow/deny rules over IPv4 and IPv6,
    with an optional connection table (stateful mode), an optional policer
    and optional header sanity checks.

    A rule matches on any of: `src` and `dst` prefixes, `proto` (tcp, udp,
    icmp, icmpv6, sctp or a number), `sport` and `dport` (a port or a range
    like 1024-65535); a field left out matches anything. A rule with no
    address matches both families (`family: ipv4|ipv6` narrows it). The
    first matching rule decides; no match: `default`.

    Lookup is a bit-vector scheme (Lakshman and Stiliadis, SIGCOMM '98)
    on the two addresses. Per family and address field, the prefixes the
    rules name cut the address space into classes: the addresses whose
    longest matching prefix is P (class 0: no prefix matches). Each class
    has a bit vector of the rules it satisfies: those naming P or a prefix
    containing P, and those naming no address in that field. A packet
    finds its source and destination classes (IPv4: a 16-8-8 table, one to
    three reads; IPv6: a hash probe per prefix length the field uses,
    longest first), ANDs the two vectors word by word in rule order, and
    checks each rule left (proto, ports) in that order: the first that
    passes is the first match, exactly, and the search stops there. A
    summary word per class marks the vector words holding rules that name
    one of its prefixes; with the family's words of rules naming no
    address, those are the only words a rule of both classes can be in, so
    a packet whose addresses match no rule's prefix reads no vector at all.
    The cost is two class lookups and the words up to the first match; the
    memory is about N * N / 4 bytes for N rules of distinct prefixes (0.25
    MB for 1,000 rules, 25 MB for 10,000), built once at configure time.
    Tuple space search was tried first: a miss probed every (src length,
    dst length) group, and 1,000 rules cost about 3x this.

    Packets: parsed once (parse.ensure_parsed); a malformed one is dropped
    with the parse reason. A later IP fragment has no L4 header: it matches
    only rules that name no port (a rule naming sport or dport, even
    0-65535, needs TCP, UDP or SCTP ports). Non-IP frames follow `non_ip`;
    allowed ones bypass the connection table and the policer.

    Stateful mode (`stateful: true`): a packet that the ACL allows creates
    an entry for its flow (5-tuple, both directions as one key); a later
    packet of a known flow, in either direction, is allowed without the ACL
    (counted `established`), so replies get in even where the ACL denies
    them. Entries live `tcp_timeout`, `udp_timeout` or `icmp_timeout`
    seconds (other protocols: udp_timeout) after their last packet; the
    clock is read once per batch (CLOCK_MONOTONIC_COARSE, or with
    `clock: packet` the first packet's capture timestamp, for replaying
    captures). The table is flat, open addressing with linear probing
    (2 x max_conns slots, at most `max_conns` entries, each within 16 slots
    of its hash). An expired entry on a new flow's probe path is reused;
    when the table is full, the next 256 slots are swept of expired
    entries first (both counted `evictions`). A new flow that still finds
    no room is dropped (table-full, counted `table_full`). Filters that name the same
    `conntrack` table share it: put one filter on each direction of a
    firewall. Later fragments carry no ports and are not matched against
    the table. Flows use ports for TCP, UDP and SCTP, 0 otherwise.

    Policer (`rate` > 0): a token bucket of `rate` packets per second and
    `burst` packets, applied to allowed packets; over-rate ones are dropped
    (policed). `per: src` keeps one bucket per source address in a table of
    `max_sources` (a hash table twice that size); a source that finds no
    bucket is dropped (table-full, counted `police_table_full`). A bucket
    that has refilled to `burst` is free for another source.

    Sanity checks (`sanity: true`), before the ACL: IPv4 header checksum
    (bad-checksum), TTL or hop limit 0 (ttl-expired), UDP length field
    against the IP payload (malformed:l4).

    Outputs:
        allow: allowed packets
        deny: denied packets, only with `deny: output`
    Counters:
        allowed, denied (by the ACL or default), established (allowed by the
        connection table), created (new connections), evictions (expired
        entries reused), table_full, policed, police_table_full
    Drops:
        denied: the ACL denied it (unless `deny: output`)
        not-ip: a non-IP frame with `non_ip: deny`
        the parse reason (malformed:eth, :vlan, :arp, :ipv4, :ipv6, :l4): headers
            that lie about their lengths; with `sanity: true` also malformed:l4 for
            a UDP length that does not fit the IP payload
        table-full: no room in the connection or source table
        policed: over the policer's rate
        bad-checksum: with `sanity: true`, an IPv4 header checksum is wrong
        ttl-expired: with `sanity: true`, TTL or hop limit 0
    Example:
        ports: {src: "gen:count=1000,dst=198.19.0.0/24,dport=80-81", dst: sink}
        elements:
          fw:
            type: filter
            default: deny
            rules:
              - {action: deny, dst: 198.19.0.7/32}
              - {action: allow, proto: udp, dport: 80}
        links: ["src -> fw -> dst"]
    """
    TYPE = "filter"
    SUMMARY = "first-match ACL (IPv4/IPv6), optionally stateful, with a policer"
    OUTPUTS = ("allow", "deny")
    PARAMS = (
        Param("rules", Custom("a list of rules like {action: allow, dst: 198.19.0.0/16, "
                              "proto: tcp, dport: 80}", _rules),
              "the ACL, first match wins", ()),
        Param("default", Choice("allow", "deny"), "what no rule matches gets", "deny"),
        Param("deny", Choice("drop", "output"),
              "denied packets: dropped (reason denied) or sent to output `deny`", "drop"),
        Param("non_ip", Choice("allow", "deny"), "non-IP frames: allowed, or dropped (not-ip)",
              "deny"),
        Param("sanity", Bool(), "check IPv4 checksum, TTL/hop limit and UDP length", False),
        Param("stateful", Bool(), "keep a connection table; replies of known flows pass",
              False),
        Param("conntrack", Name("a table name"),
              "share the connection table with the filters naming the same one", None),
        Param("max_conns", Int(1, 1 << 24), "connection table size", 65536),
        Param("tcp_timeout", Float(0.001), "seconds a TCP flow lives after its last packet",
              300.0),
        Param("udp_timeout", Float(0.001), "seconds a UDP (or other) flow lives", 60.0),
        Param("icmp_timeout", Float(0.001), "seconds an ICMP flow lives", 30.0),
        Param("clock", Choice("mono", "packet"),
              "time for timeouts and the policer: monotonic, or packets' timestamps", "mono"),
        Param("rate", Float(0), "policer rate in packets per second; 0: no policer", 0),
        Param("burst", Int(1), "policer bucket size in packets", 32),
        Param("per", Choice("all", "src"), "one bucket for all, or one per source", "all"),
        Param("max_sources", Int(1, 1 << 22), "per-source policer table size", 4096),
    )
    COUNTERS = ("allowed", "denied", "established", "created", "evictions", "table_full",
                "policed", "police_table_full")

    cdef Acl tab                  # the ACL
    cdef uint8_t default_allow
    cdef uint8_t deny_out
    cdef uint8_t non_ip_allow
    cdef uint8_t sanity
    # connection table
    cdef ConnTable ct
    cdef Conn* conns
    cdef uint32_t ct_mask
    cdef uint32_t ct_max
    cdef uint32_t* ct_used        # slots in use, shared with the table's other filters
    cdef uint32_t* ct_cursor
    cdef uint64_t timeout[3]      # ns: tcp, udp/other, icmp
    cdef uint8_t packet_clock
    cdef uint64_t now
    # policer
    cdef uint8_t police
    cdef uint8_t per_src
    cdef double rate_ns           # tokens per ns
    cdef double burst
    cdef double tokens
    cdef uint64_t last
    cdef Bucket* buckets
    cdef uint32_t bmask
    cdef uint32_t n_src           # buckets in use
    cdef uint32_t max_src

    @classmethod
    def outputs(cls, params):
        return ("allow", "deny") if params.get("deny") == "output" else ("allow",)

    @classmethod
    def check(cls, params):
        msgs = []
        if params.get("conntrack") and not params.get("stateful"):
            msgs.append("conntrack: names a connection table, which needs stateful: true")
        return msgs

    def __dealloc__(self):
        cdef int i
        free(self.tab.rules)
        for i in range(4):
            free(self.tab.fld[i].bits)
            free(self.tab.fld[i].summ)
            free(self.tab.fld[i].root)
            free(self.tab.fld[i].nodes)
            free(self.tab.fld[i].keys)
        free(self.buckets)

    def configure(self, rules=(), default="deny", deny="drop", non_ip="deny", sanity=False,
                  stateful=False, conntrack=None, max_conns=65536, tcp_timeout=300.0,
                  udp_timeout=60.0, icmp_timeout=30.0, clock="mono", rate=0, burst=32,
                  per="all", max_sources=4096):
        rules = _rules(rules)       # done by the loader already, unless built by hand
        self.default_allow = default == "allow"
        self.deny_out = deny == "output"
        self.non_ip_allow = non_ip == "allow"
        self.sanity = bool(sanity)
        self._build_acl(list(rules))
        self.packet_clock = clock == "packet"
        self.timeout[0] = <uint64_t>(tcp_timeout * 1e9)
        self.timeout[1] = <uint64_t>(udp_timeout * 1e9)
        self.timeout[2] = <uint64_t>(icmp_timeout * 1e9)
        if stateful:
            if conntrack:
                t = self.tables.get(
                    "conntrack", conntrack, lambda: ConnTable(max_conns),
                    lambda t: None if (<ConnTable>t).max_conns == <uint32_t>max_conns else
                    f"made with max_conns {(<ConnTable>t).max_conns}, not {max_conns}")
            else:
                t = ConnTable(max_conns)
            self.ct = t
            self.conns = self.ct.slots
            self.ct_mask = self.ct.mask
            self.ct_max = self.ct.max_conns
            self.ct_used = &self.ct.used
            self.ct_cursor = &self.ct.cursor
        self.police = rate > 0
        self.per_src = per == "src"
        self.rate_ns = rate / 1e9
        self.burst = burst
        self.tokens = burst
        self.last = 0
        if self.police and self.per_src:
            size = 64
            while size < 2 * max_sources:
                size <<= 1
            self.buckets = <Bucket*>calloc(size, sizeof(Bucket))
            if self.buckets == NULL:
                raise MemoryError()
            self.bmask = size - 1
            self.max_src = max_sources

    def _build_acl(self, rules):
        cdef uint32_t i, f, w, n = len(rules)
        cdef Rule* rl
        self.tab.n_rules = n
        self.tab.rules = <Rule*>calloc(max(n, 1), sizeof(Rule))
        if self.tab.rules == NULL:
            raise MemoryError()
        for i, r in enumerate(rules):
            rl = &self.tab.rules[i]
            rl.allow = r["action"] == "allow"
            rl.any_proto = r["proto"] is None
            rl.proto = r["proto"] or 0
            rl.any_ports = not (r["sport"] or r["dport"])
            rl.sport_lo, rl.sport_hi = r["sport"] or (0, 65535)
            rl.dport_lo, rl.dport_hi = r["dport"] or (0, 65535)
        self.tab.words = max(1, (n + 63) // 64)
        self.tab.chunk = (self.tab.words + 63) // 64
        for i, (fam, key) in enumerate(((4, "src"), (4, "dst"), (6, "src"), (6, "dst"))):
            self._build_field(&self.tab.fld[i], fam, key, rules)
        for f in range(2):      # the words holding rules that name no address
            self.tab.ww[f] = 0
            for w in range(self.tab.words):
                if self.tab.fld[2 * f].bits[w] & self.tab.fld[2 * f + 1].bits[w]:
                    self.tab.ww[f] |= 1ULL << (w // self.tab.chunk)

    cdef int _build_field(self, Field* fd, int fam, str key, list rules) except -1:
        """fd's classes, their bit vectors and its prefix lookup, from the
        `key` prefixes of the rules of family fam."""
        cdef uint32_t c, w, words = self.tab.words
        cdef uint64_t s
        cdef Key6* k6
        cdef size_t size
        cdef bytes data
        bits = 32 if fam == 4 else 128
        ones = (1 << bits) - 1
        wild = 0                    # the rules of the family that name no such prefix
        pref = {}                   # (masked address, length) -> its rules, a bit each
        for i, r in enumerate(rules):
            if r["family"] is not None and r["family"] != fam:
                continue
            p = r[key]
            if p is None or p[2] == 0:
                wild |= 1 << i
            else:
                a = p[1] & (ones ^ ((1 << (bits - p[2])) - 1))
                pref[(a, p[2])] = pref.get((a, p[2]), 0) | (1 << i)
        # A class per prefix (the addresses it is the longest match of): its
        # rules, its ancestors' and the wildcards. Class 0: no prefix matches.
        lens = sorted({pl for _, pl in pref})
        cls_bits = [wild]
        cls_of = {}
        for a, pl in sorted(pref, key=lambda ap: ap[1]):
            v = wild | pref[(a, pl)]
            for ln in reversed(lens):
                if ln < pl:
                    c = cls_of.get((a & (ones ^ ((1 << (bits - ln)) - 1)), ln), 0)
                    if c:
                        v |= cls_bits[c]
                        break
            cls_of[(a, pl)] = len(cls_bits)
            cls_bits.append(v)
        data = b"".join(v.to_bytes(words * 8, "little") for v in cls_bits)
        fd.bits = <uint64_t*>calloc(len(cls_bits) * words, sizeof(uint64_t))
        fd.summ = <uint64_t*>calloc(len(cls_bits), sizeof(uint64_t))
        if fd.bits == NULL or fd.summ == NULL:
            raise MemoryError()
        memcpy(fd.bits, <const char*>data, len(data))
        for c in range(len(cls_bits)):       # class 0 (the wildcards) is all of them
            s = 0
            for w in range(words):
                if fd.bits[<size_t>c * words + w] & ~fd.bits[w]:
                    s |= 1ULL << (w // self.tab.chunk)
            fd.summ[c] = s
        if fam == 4:
            self._build_trie(fd, cls_of)
            return 0
        # IPv6: a hash table of the prefixes, probed per length, longest first.
        size = 16
        while size < <size_t>(2 * len(cls_of)):
            size <<= 1
        fd.keys = <Key6*>calloc(size, sizeof(Key6))
        if fd.keys == NULL:
            raise MemoryError()
        fd.kmask = size - 1
        for (a, pl), c in cls_of.items():
            h = key_hash(a >> 64, a & 0xFFFFFFFFFFFFFFFF, pl, 0, 0) & fd.kmask
            while fd.keys[h].cls:
                h = (h + 1) & fd.kmask
            k6 = &fd.keys[h]
            k6.hi, k6.lo, k6.plen, k6.cls = a >> 64, a & 0xFFFFFFFFFFFFFFFF, pl, c
        fd.n_lens = len(lens)
        for i, pl in enumerate(reversed(lens)):
            fd.lens[i] = pl
            fd.m_hi[i], fd.m_lo[i] = _mask(6, pl)
        return 0

    cdef int _build_trie(self, Field* fd, dict cls_of) except -1:
        cdef bytes raw_root, raw_nodes
        root, nodes = _trie4(cls_of)
        raw_root, raw_nodes = root.tobytes(), nodes.tobytes()
        fd.root = <uint32_t*>calloc(65536, sizeof(uint32_t))
        fd.nodes = <uint32_t*>calloc(max(len(nodes), 1), sizeof(uint32_t))
        if fd.root == NULL or fd.nodes == NULL:
            raise MemoryError()
        memcpy(fd.root, <const char*>raw_root, 65536 * sizeof(uint32_t))
        if len(nodes):
            memcpy(fd.nodes, <const char*>raw_nodes, len(nodes) * sizeof(uint32_t))
        return 0

    def lookup(self, int fam, src, dst, int proto, sport=None, dport=None):
        """The index of the first rule matching these fields, or None (for tests)."""
        cdef uint32_t r
        s = _split(fam, int(ipaddress.ip_address(src)))
        d = _split(fam, int(ipaddress.ip_address(dst)))
        r = acl_first(&self.tab, 0 if fam == 4 else 1, s[0], s[1], d[0], d[1], proto,
                      sport is not None, sport or 0, dport or 0)
        return None if r == NO_RULE else r

    # --- per packet -------------------------------------------------------------

    cdef int conn_find(self, uint8_t fam, uint8_t proto, uint64_t s_hi, uint64_t s_lo,
                       uint16_t sp, uint64_t d_hi, uint64_t d_lo, uint16_t dp,
                       bint create) noexcept nogil:
        """Look the flow up (refreshing it) or, with create, add it.
        Returns 1 found (live), 0 not found, 2 created, -1 no room.

        Every entry lies within MAX_PROBE slots of its home slot, so a lookup
        probes at most that many. A slot is never-used (fam 0: ends a
        probe), a tombstone (fam TOMB: an expired entry a sweep freed) or an
        entry, live or expired."""
        cdef uint64_t a_hi, a_lo, b_hi, b_lo, tmo
        cdef uint16_t pa, pb
        cdef uint32_t k, home, expired = EMPTY, free_slot = EMPTY
        cdef int _i
        cdef Conn* c
        if (s_hi < d_hi or (s_hi == d_hi and (s_lo < d_lo or (s_lo == d_lo and sp <= dp)))):
            a_hi, a_lo, pa, b_hi, b_lo, pb = s_hi, s_lo, sp, d_hi, d_lo, dp
        else:
            a_hi, a_lo, pa, b_hi, b_lo, pb = d_hi, d_lo, dp, s_hi, s_lo, sp
        if proto == P_TCP:
            tmo = self.timeout[0]
        elif proto == P_ICMP or proto == P_ICMPV6:
            tmo = self.timeout[2]
        else:
            tmo = self.timeout[1]
        home = key_hash(a_hi, a_lo, b_hi, b_lo, (<uint64_t>pa << 32) | (<uint64_t>pb << 16)
                        | (<uint64_t>proto << 8) | fam) & self.ct_mask
        k = home
        for _i in range(MAX_PROBE):
            c = &self.conns[k]
            if c.fam == 0:
                if free_slot == EMPTY:
                    free_slot = k
                break
            if c.fam == TOMB:
                if free_slot == EMPTY:
                    free_slot = k
            elif (c.a_lo == a_lo and c.b_lo == b_lo and c.pa == pa and c.pb == pb
                    and c.proto == proto and c.fam == fam and c.a_hi == a_hi
                    and c.b_hi == b_hi):
                if c.expires > self.now:
                    c.expires = self.now + tmo
                    return 1
                if not create:
                    return 0
                c.expires = self.now + tmo     # the same flow again: its entry anew
                return 2
            elif expired == EMPTY and c.expires <= self.now:
                expired = k
            k = (k + 1) & self.ct_mask
        if not create:
            return 0
        if expired != EMPTY:
            k = expired
            self.stats[C_EVICTIONS] += 1
        else:
            if self.ct_used[0] >= self.ct_max:
                self.sweep()
            if free_slot == EMPTY or self.ct_used[0] >= self.ct_max:
                return -1
            k = free_slot
            self.ct_used[0] += 1
        c = &self.conns[k]
        c.a_hi, c.a_lo, c.b_hi, c.b_lo = a_hi, a_lo, b_hi, b_lo
        c.pa, c.pb, c.proto, c.fam = pa, pb, proto, fam
        c.expires = self.now + tmo
        return 2

    cdef void sweep(self) noexcept nogil:
        """Free the expired entries of the next SWEEP slots (a full table's
        last resort before table-full): each becomes a tombstone."""
        cdef uint32_t k = self.ct_cursor[0]
        cdef int _i
        cdef Conn* c
        for _i in range(SWEEP):
            c = &self.conns[k]
            if c.fam != 0 and c.fam != TOMB and c.expires <= self.now:
                c.fam = TOMB
                self.ct_used[0] -= 1
                self.stats[C_EVICTIONS] += 1
            k = (k + 1) & self.ct_mask
        self.ct_cursor[0] = k

    cdef int police_src(self, uint8_t fam, uint64_t hi, uint64_t lo) noexcept nogil:
        """0: pass, DROP_POLICED, or DROP_TABLE_FULL (no bucket for the source)."""
        cdef uint32_t k = key_hash(hi, lo, fam, 0, 0) & self.bmask
        cdef int _i
        cdef Bucket* b
        cdef Bucket* free_b = NULL
        cdef double t
        for _i in range(MAX_PROBE):
            b = &self.buckets[k]
            if b.fam == 0:
                if free_b == NULL and self.n_src < self.max_src:
                    free_b = b
                    self.n_src += 1
                break
            t = b.tokens + (self.now - b.last) * self.rate_ns if self.now > b.last else b.tokens
            if t > self.burst:
                t = self.burst
            if b.fam == fam and b.lo == lo and b.hi == hi:
                b.last = self.now
                if t >= 1.0:
                    b.tokens = t - 1.0
                    return 0
                b.tokens = t
                return DROP_POLICED
            if free_b == NULL and t >= self.burst:
                free_b = b          # refilled: idle long enough to hand over
            k = (k + 1) & self.bmask
        if free_b == NULL:
            self.stats[C_POLICE_TABLE_FULL] += 1
            return DROP_TABLE_FULL
        free_b.fam, free_b.hi, free_b.lo, free_b.last = fam, hi, lo, self.now
        free_b.tokens = self.burst - 1.0
        return 0

    cdef int sane(self, Desc* p) noexcept nogil:
        """0, or the reason a header fails the sanity checks."""
        cdef const uint8_t* ip = p.data + p.l3_off
        cdef uint32_t ihl, ulen
        if p.pflags & PF_IPV4:
            ihl = (ip[0] & 0x0F) * 4
            if csum(ip, ihl, 0) != 0:
                return DROP_BAD_CHECKSUM
            if ip[8] == 0:
                return DROP_TTL_EXPIRED
        elif ip[7] == 0:
            return DROP_TTL_EXPIRED
        if p.pflags & PF_L4 and p.l4_proto == P_UDP and not p.pflags & PF_FRAG:
            ulen = rd16(p.data + p.l4_off + 4)
            if ulen < 8 or ulen > <uint32_t>p.l3_off + p.l3_len - p.l4_off:
                return DROP_MALFORMED_L4
        return 0

    cdef int process(self, Batch* b) noexcept nogil:
        cdef uint32_t i, r
        cdef Desc* p
        cdef const uint8_t* ip
        cdef int why, f, st
        cdef uint8_t fam, proto
        cdef bint has_ports, allow
        cdef uint16_t sport, dport
        cdef uint64_t s_hi, s_lo, d_hi, d_lo, now
        cdef uint16_t deny_to = 1 if self.deny_out else 0
        cdef uint64_t n_allow = 0, n_deny = 0
        cdef timespec ts
        if self.packet_clock:
            if b.n and b.d[0].ts:
                self.now = b.d[0].ts
        else:
            clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
            self.now = <uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec
        now = self.now
        if self.police and not self.per_src:
            if self.last and now > self.last:
                self.tokens += (now - self.last) * self.rate_ns
                if self.tokens > self.burst:
                    self.tokens = self.burst
            self.last = now
        for i in range(b.n):
            p = &b.d[i]
            why = ensure_parsed(p)
            if why:
                drop_pkt(p, why)
                continue
            if p.pflags & PF_IPV4:
                fam = 4
                f = 0
                ip = p.data + p.l3_off
                s_hi = d_hi = 0
                s_lo = rd32(ip + 12)
                d_lo = rd32(ip + 16)
            elif p.pflags & PF_IPV6:
                fam = 6
                f = 1
                ip = p.data + p.l3_off
                s_hi = rd64(ip + 8)
                s_lo = rd64(ip + 16)
                d_hi = rd64(ip + 24)
                d_lo = rd64(ip + 32)
            else:
                if self.non_ip_allow:
                    n_allow += 1
                    p.out = 0
                else:
                    drop_pkt(p, DROP_NOT_IP)
                continue
            if self.sanity:
                why = self.sane(p)
                if why:
                    drop_pkt(p, why)
                    continue
            proto = p.l4_proto
            has_ports = (p.pflags & PF_L4 != 0 and
                         (proto == P_TCP or proto == P_UDP or proto == P_SCTP))
            if has_ports:
                sport = rd16(p.data + p.l4_off)
                dport = rd16(p.data + p.l4_off + 2)
            else:
                sport = dport = 0
            st = 0
            if self.conns != NULL and not (p.pflags & PF_FRAG and not p.pflags & PF_L4):
                st = self.conn_find(fam, proto, s_hi, s_lo, sport, d_hi, d_lo, dport, False)
            if st == 1:
                self.stats[C_ESTABLISHED] += 1
            else:
                r = acl_first(&self.tab, f, s_hi, s_lo, d_hi, d_lo, proto, has_ports, sport,
                              dport)
                allow = self.tab.rules[r].allow if r != NO_RULE else self.default_allow
                if not allow:
                    n_deny += 1
                    if deny_to:
                        p.out = deny_to
                    else:
                        drop_pkt(p, DROP_DENIED)
                    continue
                if self.conns != NULL and not (p.pflags & PF_FRAG and not p.pflags & PF_L4):
                    st = self.conn_find(fam, proto, s_hi, s_lo, sport, d_hi, d_lo, dport, True)
                    if st < 0:
                        self.stats[C_TABLE_FULL] += 1
                        drop_pkt(p, DROP_TABLE_FULL)
                        continue
                    self.stats[C_CREATED] += 1
            if self.police:
                if self.per_src:
                    why = self.police_src(fam, s_hi, s_lo)
                    if why:
                        if why == DROP_POLICED:
                            self.stats[C_POLICED] += 1
                        drop_pkt(p, why)
                        continue
                elif self.tokens >= 1.0:
                    self.tokens -= 1.0
                else:
                    self.stats[C_POLICED] += 1
                    drop_pkt(p, DROP_POLICED)
                    continue
            n_allow += 1
            p.out = 0
        self.stats[C_ALLOWED] += n_allow
        self.stats[C_DENIED] += n_deny
        return PER_PACKET
