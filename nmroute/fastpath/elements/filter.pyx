"""filter: an ordered first-match ACL over IPv4/IPv6, optionally stateful,
with an optional policer and header sanity checks."""
import ipaddress
import weakref

from nmroute.config.params import Param, ParamError, Bool, Choice, Custom, Float, Int, Range, Str

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free

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


# --- the ACL: tuple space search ------------------------------------------------

cdef struct Rule:
    uint16_t sport_lo
    uint16_t sport_hi
    uint16_t dport_lo
    uint16_t dport_hi
    uint8_t allow
    uint8_t has_ports
    uint8_t use_proto     # the rule names a proto: checked here, not in the tuple's key
    uint8_t proto


cdef struct RuleRef:      # a rule in a key's list: its index and all that is left to check
    uint32_t idx
    uint16_t sport_lo
    uint16_t sport_hi
    uint16_t dport_lo
    uint16_t dport_hi
    uint8_t proto
    uint8_t any_proto     # 1: the rule names no proto
    uint8_t any_ports     # 1: the rule names no port


cdef struct Tuple:
    uint64_t sm_hi        # source mask (IPv4: in sm_lo, sm_hi 0)
    uint64_t sm_lo
    uint64_t dm_hi
    uint64_t dm_lo
    uint32_t min_rule     # lowest rule index in the tuple (tuples sorted on it)
    uint32_t id
    uint8_t fam6


cdef struct Tuple4:       # an IPv4 tuple's Bloom filter check: 16 bytes, 4 a cache line
    uint64_t m            # src mask << 32 | dst mask
    uint64_t mult         # its own odd multiplier (bloom_hash)


cdef struct Entry:        # one masked key of one tuple
    uint64_t s_hi
    uint64_t s_lo
    uint64_t d_hi
    uint64_t d_lo
    uint32_t tid          # EMPTY: a free slot
    uint32_t first        # its rules: rule_list[first:first + count], ascending index
    uint32_t count


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


cdef inline uint64_t key_hash3(uint64_t b, uint64_t d, uint64_t e) noexcept nogil:
    """key_hash(0, b, 0, d, e), for IPv4 keys (their high words are 0)."""
    cdef uint64_t h = (b * 0xc2b2ae3d27d4eb4fULL) ^ (d * 0xd6e8feb86659fd93ULL) ^ \
        (e * 0xff51afd7ed558ccdULL)
    h ^= h >> 32
    h *= 0xc4ceb9fe1a85ec53ULL
    h ^= h >> 29
    return h


cdef inline uint64_t bloom_hash(uint64_t x, uint64_t mult) noexcept nogil:
    """The Bloom filter hash of an IPv4 key: x the masked src << 32 | dst,
    mult the tuple's odd multiplier. Only the high bits are used: the top l
    bits of x * mult are a universal hash (Dietzfelbinger's multiply-shift:
    two distinct keys collide with probability at most 2 / 2**l)."""
    return x * mult


cdef inline uint64_t rd64(const uint8_t* p) noexcept nogil:
    return (<uint64_t>rd32(p) << 32) | rd32(p + 4)


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
    cdef object __weakref__

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


_tables = weakref.WeakValueDictionary()     # conntrack name -> ConnTable


# --- per-source policer table -------------------------------------------------------

cdef struct Bucket:
    uint64_t hi
    uint64_t lo
    uint64_t last         # ns of the last refill
    double tokens
    uint8_t fam           # 0: free


# --- params ------------------------------------------------------------------------

PROTOS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "sctp": 132}
PORT_PROTOS = (6, 17, 132)
RULE_KEYS = ("action", "src", "dst", "proto", "sport", "dport", "family")
_PORTS = Range(0, 65535, "a port")


def _err(msg, *path):
    e = ParamError(msg)
    e.path = path
    return e


def _prefix(value, i, key):
    if not isinstance(value, str):
        raise _err(f"expected an IP prefix like 198.18.0.0/15 or 2001:2::/48, got {value!r}",
                   i, key)
    try:
        net = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise _err(f"expected an IP prefix like 198.18.0.0/15 or 2001:2::/48, got {value!r}",
                   i, key) from None
    return net


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
    out = []
    for i, r in enumerate(value):
        if isinstance(r, CompiledRule):
            out.append(r)
            continue
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
                net = _prefix(r[k], i, k)
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
            p = r["proto"]
            if isinstance(p, str) and p.lower() in PROTOS:
                rule["proto"] = PROTOS[p.lower()]
            elif isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 255:
                rule["proto"] = p
            else:
                raise _err(f"expected tcp, udp, icmp, icmpv6, sctp or 0..255, got {p!r}",
                           i, "proto")
        for k in ("sport", "dport"):
            if r.get(k) is not None:
                try:
                    rule[k] = _PORTS.convert(r[k])
                except ParamError as e:
                    raise _err(str(e), i, k) from None
        if (rule["sport"] or rule["dport"]) and rule["proto"] is not None and \
                rule["proto"] not in PORT_PROTOS:
            raise _err("ports need proto tcp, udp or sctp (or no proto)", i,
                       "sport" if rule["sport"] else "dport")
        out.append(rule)
    return out


def _mask(fam, plen):
    """(hi, lo) of the mask of a prefix length, an IPv4 one in lo."""
    bits = 32 if fam == 4 else 128
    m = ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)
    return (m >> 64, m & 0xFFFFFFFFFFFFFFFF)


def _split(fam, addr):
    if fam == 4:
        return (0, addr)
    return (addr >> 64, addr & 0xFFFFFFFFFFFFFFFF)


cdef class Filter(Element):
    """An ordered first-match ACL of allow/deny rules over IPv4 and IPv6,
    with an optional connection table (stateful mode), an optional policer
    and optional header sanity checks.

    A rule matches on any of: `src` and `dst` prefixes, `proto` (tcp, udp,
    icmp, icmpv6, sctp or a number), `sport` and `dport` (a port or a range
    like 1024-65535); a field left out matches anything. A rule with no
    address matches both families (`family: ipv4|ipv6` narrows it). The
    first matching rule decides; no match: `default`.

    Lookup is tuple space search (Srinivasan et al., SIGCOMM '99): the rules
    are grouped by (family, src prefix length, dst prefix length); in each
    group ("tuple") the masked addresses of its rules are keys of one shared
    hash table (slots of 8 bytes: a fingerprint and an entry index, so
    misses stay in cache), each key holding its rules in ascending order.
    A packet probes the tuples in the order of their lowest rule index and
    keeps the lowest matching rule index found; it stops as soon as a
    tuple's lowest index cannot beat it, so first-match order holds
    exactly. Proto and ports are checked after the hash hit, against the
    key's rules in order (proto is not part of the key: that halves the
    tuples a miss probes). IPv4 tuples are first checked against one Bloom
    filter of all IPv4 keys (64 bits a key, one bit each, hashed from the
    masked src << 32 | dst with the tuple's own multiplier): a miss costs a
    64-bit AND, a hash and one word read, without branching on the hash
    table's probe sequence; about 1 in 64 misses goes on to the table.
    This was chosen over a bit-vector scheme because
    its memory is linear in the rules and it builds in one pass; its cost is
    the number of distinct tuples probed (rules built from a few prefix
    lengths, as real ACLs are, make few tuples), not the number of rules.

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
        Param("conntrack", Str(r"[A-Za-z_][A-Za-z0-9_.-]*", "a table name"),
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

    # ACL
    cdef Rule* rules
    cdef uint32_t n_rules
    cdef Tuple* tuples
    cdef uint32_t n_tup[2]        # tuples per family (IPv4, IPv6)
    cdef uint32_t tup_off[2]      # first tuple of each family in `tuples`
    cdef Entry* entries           # one per (tuple, masked key)
    cdef uint64_t* slots          # hash table: fingerprint << 32 | entry + 1; 0 free
    cdef uint32_t tmask
    cdef RuleRef* rule_list
    cdef Tuple4* tup4             # the IPv4 tuples' Bloom checks, as tuples[:n_tup[0]]
    cdef uint64_t* bloom          # one Bloom filter of the IPv4 keys: 64 bits, 1 set, a key
    cdef uint32_t wshift          # 64 - log2(words in bloom)
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
    cdef readonly str table_name
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
        free(self.rules)
        free(self.tuples)
        free(self.entries)
        free(self.slots)
        free(self.rule_list)
        free(self.tup4)
        free(self.bloom)
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
                t = _tables.get(conntrack)
                if t is None:
                    t = ConnTable(max_conns)
                    _tables[conntrack] = t
                elif (<ConnTable>t).max_conns != <uint32_t>max_conns:
                    raise ValueError(f"connection table {conntrack!r} is shared with a filter "
                                     f"of max_conns {(<ConnTable>t).max_conns}")
                self.table_name = conntrack
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

    def close(self):
        # A later run starts from an empty table.
        if self.table_name and _tables.get(self.table_name) is self.ct:
            del _tables[self.table_name]

    def _build_acl(self, rules):
        cdef uint32_t i, j, k, n = len(rules), n_e
        cdef uint64_t h
        cdef Entry* e
        cdef RuleRef* rr
        cdef Rule* rl
        self.n_rules = n
        self.rules = <Rule*>calloc(max(n, 1), sizeof(Rule))
        if self.rules == NULL:
            raise MemoryError()
        # tuples[(fam, slen, dlen)] -> {masked key: [rule indexes]}
        tuples = {}
        for i, r in enumerate(rules):
            self.rules[i].allow = r["action"] == "allow"
            self.rules[i].has_ports = bool(r["sport"] or r["dport"])
            self.rules[i].use_proto = r["proto"] is not None
            self.rules[i].proto = r["proto"] or 0
            self.rules[i].sport_lo, self.rules[i].sport_hi = r["sport"] or (0, 65535)
            self.rules[i].dport_lo, self.rules[i].dport_hi = r["dport"] or (0, 65535)
            for fam in ((r["family"],) if r["family"] else (4, 6)):
                s = r["src"] or (fam, 0, 0)
                d = r["dst"] or (fam, 0, 0)
                key_t = (fam, s[2], d[2])
                sm, dm = _mask(fam, s[2]), _mask(fam, d[2])
                sa, da = _split(fam, s[1]), _split(fam, d[1])
                key = (sa[0] & sm[0], sa[1] & sm[1], da[0] & dm[0], da[1] & dm[1])
                tuples.setdefault(key_t, {}).setdefault(key, []).append(i)
        order = sorted(tuples.items(), key=lambda kv: (kv[0][0], min(min(v) for v in
                                                                     kv[1].values())))
        n_tuples = len(order)
        n_keys = sum(len(v) for _, v in order)
        self.tuples = <Tuple*>calloc(max(n_tuples, 1), sizeof(Tuple))
        size = 16
        while size < 2 * n_keys:
            size <<= 1
        self.entries = <Entry*>calloc(max(n_keys, 1), sizeof(Entry))
        self.slots = <uint64_t*>calloc(size, sizeof(uint64_t))
        self.rule_list = <RuleRef*>calloc(max(n, 1) * 2, sizeof(RuleRef))
        if (self.tuples == NULL or self.entries == NULL or self.slots == NULL
                or self.rule_list == NULL):
            raise MemoryError()
        self.tmask = size - 1
        n_e = 0
        self.n_tup[0] = self.n_tup[1] = 0
        self.tup_off[0] = 0
        pos = 0
        for j, ((fam, slen, dlen), keys) in enumerate(order):
            f = 0 if fam == 4 else 1
            if f == 1 and self.n_tup[1] == 0:
                self.tup_off[1] = j
            self.n_tup[f] += 1
            t = &self.tuples[j]
            t.sm_hi, t.sm_lo = _mask(fam, slen)
            t.dm_hi, t.dm_lo = _mask(fam, dlen)
            t.fam6 = f
            t.id = j
            t.min_rule = min(min(v) for v in keys.values())
            for key, idxs in keys.items():
                h = key_hash(key[0], key[1], key[2], key[3], j)
                k = h & self.tmask
                while self.slots[k] != 0:
                    k = (k + 1) & self.tmask
                self.slots[k] = ((h >> 32) << 32) | (n_e + 1)
                e = &self.entries[n_e]
                n_e += 1
                e.s_hi, e.s_lo, e.d_hi, e.d_lo = key
                e.tid = j
                e.first = pos
                e.count = len(idxs)
                for i in sorted(idxs):
                    rr = &self.rule_list[pos]
                    rl = &self.rules[i]
                    rr.idx = i
                    rr.sport_lo, rr.sport_hi = rl.sport_lo, rl.sport_hi
                    rr.dport_lo, rr.dport_hi = rl.dport_lo, rl.dport_hi
                    rr.proto, rr.any_proto = rl.proto, not rl.use_proto
                    rr.any_ports = not rl.has_ports
                    pos += 1
        if self.n_tup[1] == 0:
            self.tup_off[1] = n_tuples
        self._build_bloom(order)

    def _build_bloom(self, order):
        """tup4 and the Bloom filter of the IPv4 tuples (the first n_tup[0] of order)."""
        cdef uint32_t j, n4 = self.n_tup[0], words = 8, wbits = 3
        cdef uint64_t h, x, mult
        cdef Tuple4* t
        n_keys = sum(len(keys) for _, keys in order[:n4])
        while words < n_keys:           # 64 bits a key
            words <<= 1
            wbits += 1
        self.tup4 = <Tuple4*>calloc(max(n4, 1), sizeof(Tuple4))
        self.bloom = <uint64_t*>calloc(words, sizeof(uint64_t))
        if self.tup4 == NULL or self.bloom == NULL:
            raise MemoryError()
        self.wshift = 64 - wbits
        for j in range(n4):
            (fam, slen, dlen), keys = order[j]
            t = &self.tup4[j]
            t.m = (_mask(4, slen)[1] << 32) | _mask(4, dlen)[1]
            mult = 0x9e3779b97f4a7c15 * (j + 1) & 0xFFFFFFFFFFFFFFFF
            mult = ((mult ^ (mult >> 31)) * 0xbf58476d1ce4e5b9 & 0xFFFFFFFFFFFFFFFF) | 1
            t.mult = mult
            for key in keys:
                x = (<uint64_t>key[1] << 32) | <uint64_t>key[3]
                h = bloom_hash(x, t.mult)
                self.bloom[h >> self.wshift] |= 1ULL << ((h >> (self.wshift - 6)) & 63)

    def lookup(self, int fam, src, dst, int proto, sport=None, dport=None):
        """The index of the first rule matching these fields, or None (for tests)."""
        cdef uint32_t r
        s = _split(fam, int(ipaddress.ip_address(src)))
        d = _split(fam, int(ipaddress.ip_address(dst)))
        r = self.acl(0 if fam == 4 else 1, s[0], s[1], d[0], d[1], proto,
                     sport is not None, sport or 0, dport or 0)
        return None if r == NO_RULE else r

    # --- per packet -------------------------------------------------------------

    cdef inline uint32_t probe(self, Tuple* t, uint64_t ms_hi, uint64_t ms_lo, uint64_t md_hi,
                               uint64_t md_lo, uint8_t proto, bint has_ports, uint16_t sport,
                               uint16_t dport, uint32_t best) noexcept nogil:
        """Look the masked key up in tuple t: the lowest index below best of
        a rule of the key that matches the proto and ports, else best."""
        cdef uint32_t k, j
        cdef Entry* e
        cdef const RuleRef* rr
        cdef uint64_t h, v
        if t.fam6:
            h = key_hash(ms_hi, ms_lo, md_hi, md_lo, t.id)
        else:
            h = key_hash3(ms_lo, md_lo, t.id)
        k = h & self.tmask
        while True:
            v = self.slots[k]
            if v == 0:
                return best
            if (v >> 32) == (h >> 32):
                e = &self.entries[<uint32_t>v - 1]
                if (e.tid == t.id and e.s_lo == ms_lo and e.d_lo == md_lo
                        and e.s_hi == ms_hi and e.d_hi == md_hi):
                    for j in range(e.first, e.first + e.count):
                        rr = &self.rule_list[j]
                        if rr.idx >= best:
                            break
                        if not rr.any_proto and rr.proto != proto:
                            continue
                        if not rr.any_ports:
                            if not has_ports:
                                continue
                            if (sport < rr.sport_lo or sport > rr.sport_hi
                                    or dport < rr.dport_lo or dport > rr.dport_hi):
                                continue
                        return rr.idx
                    return best
            k = (k + 1) & self.tmask

    cdef uint32_t acl(self, int f, uint64_t s_hi, uint64_t s_lo, uint64_t d_hi, uint64_t d_lo,
                      uint8_t proto, bint has_ports, uint16_t sport,
                      uint16_t dport) noexcept nogil:
        """The lowest index of a rule that matches, or NO_RULE."""
        cdef uint32_t best = NO_RULE, ti, end
        cdef Tuple* t
        if f == 0:
            return self.acl4(<uint32_t>s_lo, <uint32_t>d_lo, proto, has_ports, sport, dport)
        end = self.tup_off[f] + self.n_tup[f]
        for ti in range(self.tup_off[f], end):
            t = &self.tuples[ti]
            if t.min_rule >= best:
                break
            best = self.probe(t, s_hi & t.sm_hi, s_lo & t.sm_lo, d_hi & t.dm_hi, d_lo & t.dm_lo,
                              proto, has_ports, sport, dport, best)
        return best

    cdef uint32_t acl4(self, uint32_t s, uint32_t d, uint8_t proto, bint has_ports,
                       uint16_t sport, uint16_t dport) noexcept nogil:
        """acl() for IPv4: each tuple is first checked against the Bloom
        filter, with one 64-bit mask, a hash and one word read, and probed
        only if the filter says its key may be there."""
        cdef uint32_t best = NO_RULE, ti = 0, end = self.n_tup[0], nb
        cdef uint64_t sd = (<uint64_t>s << 32) | d, x, h
        cdef uint32_t wshift = self.wshift, bshift = self.wshift - 6
        cdef const uint64_t* bloom = self.bloom
        cdef const Tuple4* tup4 = self.tup4
        cdef const Tuple4* t
        while ti < end:
            t = &tup4[ti]
            x = sd & t.m
            h = bloom_hash(x, t.mult)
            if (bloom[h >> wshift] >> ((h >> bshift) & 63)) & 1:
                nb = self.probe(&self.tuples[ti], 0, x >> 32, 0, x & 0xFFFFFFFFULL,
                                proto, has_ports, sport, dport, best)
                if nb != best:
                    best = nb
                    while end > ti + 1 and self.tuples[end - 1].min_rule >= best:
                        end -= 1
            ti += 1
        return best

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
                if f == 0:
                    r = self.acl4(<uint32_t>s_lo, <uint32_t>d_lo, proto, has_ports, sport,
                                  dport)
                else:
                    r = self.acl(f, s_hi, s_lo, d_hi, d_lo, proto, has_ports, sport, dport)
                allow = self.rules[r].allow if r != NO_RULE else self.default_allow
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
