"""classify: parses each packet once and sends it to the output of the first
rule it matches (header fields, or a tcpdump expression run as classic BPF)."""
import ipaddress

from nmroute.errors import ParamError
from nmroute.schema import (
    NAME_RE, PORT_PROTOS, Param, Choice, Custom, Prefix, PortRange, Proto, Range, did_you_mean,
    each, parse_int)

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free

from nmroute.fastpath.batch cimport (
    Batch, Desc, drop_pkt, PF_IPV4, PF_IPV6, PF_L4)
from nmroute.fastpath.element cimport Element, PER_PACKET
from nmroute.fastpath.parse cimport parse, rd16, rd32
from nmroute.fastpath.bpf cimport BpfOp, BpfProgram, bpf_run

from nmroute.errors import BpfError

# What a rule checks (Rule.need).
cdef enum:
    M_ETHERTYPE = 1 << 0
    M_VLAN = 1 << 1
    M_IP4 = 1 << 2
    M_IP6 = 1 << 3
    M_IP = 1 << 4          # either version (proto, dscp)
    M_PROTO = 1 << 5
    M_SRC = 1 << 6
    M_DST = 1 << 7
    M_SPORT = 1 << 8
    M_DPORT = 1 << 9
    M_FLAGS = 1 << 10
    M_DSCP = 1 << 11
    M_EXPR = 1 << 12
    M_IN_PORT = 1 << 13
    MAX_IN_PORTS = 64      # in_port matches the first 64 input ports
    P_TCP = 6
    P_UDP = 17
    P_SCTP = 132
    NO_OUT = 0xFFFF

# Own counters, in COUNTERS order.
cdef enum:
    C_BPF_RUNS = 0
    C_BPF_MATCHES = 1


# One rule, flat. Addresses are 32-bit words in host order, already masked;
# IPv4 uses word 0.
cdef struct Rule:
    uint32_t need
    uint16_t out
    uint16_t ethertype
    uint16_t vlan_lo
    uint16_t vlan_hi
    uint16_t sport_lo
    uint16_t sport_hi
    uint16_t dport_lo
    uint16_t dport_hi
    uint8_t proto
    uint8_t flags_val
    uint8_t flags_mask
    uint8_t dscp_lo
    uint8_t dscp_hi
    uint32_t src[4]
    uint32_t src_mask[4]
    uint32_t dst[4]
    uint32_t dst_mask[4]
    const BpfOp* prog
    uint64_t in_ports        # bit i: Desc.in_port i (set by bind_ports)


# --- rules as written -> rules as data ---------------------------------------------

FIELDS = ("ethertype", "vlan", "ip", "proto", "src", "dst", "sport", "dport", "tcp_flags",
          "dscp", "expr", "in_port")
RESERVED = ("malformed",)
ETHERTYPES = {"ipv4": 0x0800, "ip": 0x0800, "ipv6": 0x86DD, "ip6": 0x86DD, "arp": 0x0806}
TCP_FLAGS = {"fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "ack": 0x10, "urg": 0x20,
             "ece": 0x40, "cwr": 0x80}
DSCP_NAMES = {"ef": 46, "be": 0, **{f"cs{i}": 8 * i for i in range(8)},
              **{f"af{c}{d}": 8 * c + 2 * d for c in range(1, 5) for d in range(1, 4)}}


def _err(msg, *path):
    return ParamError(msg, path)


def _ethertype(v):
    if isinstance(v, str) and v.strip().lower() in ETHERTYPES:
        return ETHERTYPES[v.strip().lower()]
    n = parse_int(v)
    if n is None or not 0 <= n <= 0xFFFF:
        raise ParamError(f"expected an ethertype (0..0xffff, or ipv4, ipv6, arp), got {v!r}")
    return n


def _ip(v):
    n = parse_int(v)
    if n not in (4, 6):
        raise ParamError(f"expected 4 or 6, got {v!r}")
    return n


def _flags(v):
    """(value, mask): 'syn,!ack', 'VALUE/MASK' (like 0x02/0x12), or an
    integer (those flags set)."""
    what = "TCP flags like 'syn', 'syn,!ack' or VALUE/MASK like 0x02/0x12"
    if isinstance(v, str) and "/" in v:
        a, _, b = v.partition("/")
        val, mask = parse_int(a), parse_int(b)
        if val is None or mask is None or not (0 <= val <= 255 and 0 <= mask <= 255):
            raise ParamError(f"expected {what}, got {v!r}")
        if val & ~mask:
            raise ParamError(f"{v!r}: the value has bits outside the mask, it never matches")
        return (val, mask)
    n = parse_int(v)
    if n is not None:
        if not 0 < n <= 255:
            raise ParamError(f"expected {what}, got {v!r}")
        return (n, n)
    if not isinstance(v, str) or not v.strip():
        raise ParamError(f"expected {what}, got {v!r}")
    val = mask = 0
    for word in v.replace(" ", "").lower().split(","):
        neg = word.startswith("!")
        name = word[1:] if neg else word
        if name not in TCP_FLAGS:
            raise ParamError(f"unknown TCP flag {name!r}{did_you_mean(name, TCP_FLAGS)} "
                             f"in {v!r}")
        bit = TCP_FLAGS[name]
        if mask & bit:
            raise ParamError(f"TCP flag {name!r} given twice in {v!r}")
        mask |= bit
        if not neg:
            val |= bit
    return (val, mask)


def _dscp(v):
    if isinstance(v, str) and v.strip().lower() in DSCP_NAMES:
        n = DSCP_NAMES[v.strip().lower()]
        return (n, n)
    return Range(0, 63, "a DSCP value (or ef, csN, afXY)").convert(v)


def _expr(v):
    if not isinstance(v, str) or not v.strip():
        raise ParamError(f"expected a tcpdump filter expression like 'tcp dst port 80', "
                         f"got {v!r}")
    try:
        BpfProgram.compile(v)
    except BpfError as e:
        raise ParamError(f"libpcap rejects {v!r}: {e}") from None
    return v


def _in_port(v):
    """An input port name, or a list of them."""
    names = [v] if isinstance(v, str) else v
    if not isinstance(names, (list, tuple)) or not names or not all(
            isinstance(n, str) and NAME_RE.fullmatch(n) for n in names):
        raise ParamError(f"expected an input port name like 'wan', or a list of them, got {v!r}")
    return tuple(names)


_CONVERT = {
    "ethertype": _ethertype,
    "vlan": Range(0, 4095, "a VLAN id").convert,
    "ip": _ip,
    "proto": Proto().convert,
    "src": lambda v: str(Prefix().convert(v)),
    "dst": lambda v: str(Prefix().convert(v)),
    "sport": PortRange().convert,
    "dport": PortRange().convert,
    "tcp_flags": _flags,
    "dscp": _dscp,
    "expr": _expr,
    "in_port": _in_port,
}


class Rules(list):
    """Rules converted and checked: a list of dicts of plain values."""


def _family(rule):
    """The IP version a rule's fields need (4, 6 or None), and the field
    that says so."""
    for key in ("ip", "src", "dst"):
        if key in rule:
            v = rule[key]
            return (v if key == "ip" else ipaddress.ip_network(v).version), key
    return None, None


def _check_rule(i, rule):
    fam, by = _family(rule)
    for key in ("src", "dst"):
        if key in rule and fam is not None:
            v = ipaddress.ip_network(rule[key]).version
            if v != fam:
                raise _err(f"an IPv{v} prefix in a rule whose {by} is IPv{fam}: it never "
                           f"matches", i, key)
    if "ethertype" in rule and fam is not None:
        want = 0x0800 if fam == 4 else 0x86DD
        if rule["ethertype"] != want:
            raise _err(f"ethertype {rule['ethertype']:#06x} with IPv{fam} ({by}): it never "
                       f"matches", i, "ethertype")
    proto = rule.get("proto")
    for key in ("sport", "dport"):
        if key in rule and proto is not None and proto not in PORT_PROTOS:
            raise _err(f"ports need proto tcp, udp or sctp, but proto is {proto}", i, key)
    if "tcp_flags" in rule and proto is not None and proto != P_TCP:
        raise _err(f"tcp_flags needs proto tcp, but proto is {proto}", i, "tcp_flags")


def _field_hint(key):
    """' (did you mean ...)' for a misspelt field; a same-letters anagram
    (dprot -> dport) beats difflib's nearest (proto)."""
    names = (*FIELDS, "output")
    for name in names:
        if sorted(name) == sorted(key.lower()):
            return f" (did you mean '{name}'?)"
    return did_you_mean(key, names)


def convert_rules(value):
    """YAML rules -> Rules; ParamError with .path (index, field) when wrong."""
    if isinstance(value, Rules):
        return value
    if not isinstance(value, (list, tuple)) or not value:
        raise ParamError("expected a non-empty list of rules like "
                         "{output: web, proto: tcp, dport: 80}, got " + repr(value))
    return Rules(each(value, _rule))


def _rule(i, raw):
    """Rule i as written -> a dict of converted fields."""
    if not isinstance(raw, dict):
        raise _err(f"expected a rule like {{output: web, proto: tcp, dport: 80}}, "
                   f"got {raw!r}", i)
    rule = {}
    for key, v in raw.items():
        if key == "output":
            if not isinstance(v, str) or not NAME_RE.fullmatch(v):
                raise _err(f"expected an output name like 'web', got {v!r}", i, key)
            if v in RESERVED:
                raise _err(f"'{v}' is the output of malformed frames (param "
                           f"malformed: output); name this one otherwise", i, key)
            rule[key] = v
            continue
        if key not in _CONVERT:
            raise _err(f"unknown field '{key}'{_field_hint(str(key))}", i, key)
        try:
            rule[key] = _CONVERT[key](v)
        except ParamError as e:
            raise e.within(i, key) from None
    if "output" not in rule:
        raise _err("a rule needs 'output', the name of the output it sends to", i)
    _check_rule(i, rule)
    return rule


def _addr_words(prefix):
    net = ipaddress.ip_network(prefix)
    nw = 1 if net.version == 4 else 4
    bits = 32 * nw
    a, m = int(net.network_address), int(net.netmask)
    sh = [bits - 32 * (k + 1) for k in range(nw)]
    return ([(a >> s) & 0xFFFFFFFF for s in sh], [(m >> s) & 0xFFFFFFFF for s in sh])


# --- per packet ---------------------------------------------------------------------

cdef inline bint addr_match(const uint8_t* a, const uint32_t* val, const uint32_t* mask,
                            bint v6) noexcept nogil:
    if (rd32(a) & mask[0]) != val[0]:
        return False
    if not v6:
        return True
    return ((rd32(a + 4) & mask[1]) == val[1] and (rd32(a + 8) & mask[2]) == val[2]
            and (rd32(a + 12) & mask[3]) == val[3])


cdef inline bint match(const Rule* r, Desc* p, uint64_t* runs) noexcept nogil:
    """Whether well-formed (parsed) p matches every field of r."""
    cdef uint32_t need = r.need
    cdef uint16_t v
    cdef const uint8_t* ip
    cdef const uint8_t* l4
    cdef bint v6
    if need == M_EXPR:                 # the common expr-only rule: straight to BPF
        runs[0] += 1
        return bpf_run(r.prog, p.data, p.len, p.len) != 0
    if need & M_IN_PORT and (p.in_port >= MAX_IN_PORTS or not (r.in_ports >> p.in_port) & 1):
        return False
    if need & M_ETHERTYPE and p.ethertype != r.ethertype:
        return False
    if need & M_VLAN:
        v = p.vlan & 0x0FFF
        if p.n_vlan == 0 or v < r.vlan_lo or v > r.vlan_hi:
            return False
    if need & (M_IP | M_IP4 | M_IP6):
        if need & M_IP4 and not p.pflags & PF_IPV4:
            return False
        if need & M_IP6 and not p.pflags & PF_IPV6:
            return False
        if not p.pflags & (PF_IPV4 | PF_IPV6):
            return False
        v6 = (p.pflags & PF_IPV6) != 0
        ip = p.data + p.l3_off        # parse checked 20 (IPv4) / 40 (IPv6) bytes
        if need & M_PROTO and p.l4_proto != r.proto:
            return False
        if need & M_DSCP:
            v = ((ip[0] & 0x0F) << 2 | ip[1] >> 6) if v6 else ip[1] >> 2
            if v < r.dscp_lo or v > r.dscp_hi:
                return False
        if need & M_SRC and not addr_match(ip + (8 if v6 else 12), r.src, r.src_mask, v6):
            return False
        if need & M_DST and not addr_match(ip + (24 if v6 else 16), r.dst, r.dst_mask, v6):
            return False
        if need & (M_SPORT | M_DPORT | M_FLAGS):
            if not p.pflags & PF_L4:
                return False
            l4 = p.data + p.l4_off       # parse checked the whole L4 header
            if need & (M_SPORT | M_DPORT):
                if p.l4_proto != P_TCP and p.l4_proto != P_UDP and p.l4_proto != P_SCTP:
                    return False
                v = rd16(l4)
                if need & M_SPORT and (v < r.sport_lo or v > r.sport_hi):
                    return False
                v = rd16(l4 + 2)
                if need & M_DPORT and (v < r.dport_lo or v > r.dport_hi):
                    return False
            if need & M_FLAGS and (p.l4_proto != P_TCP
                                   or (l4[13] & r.flags_mask) != r.flags_val):
                return False
    if need & M_EXPR:
        runs[0] += 1
        return bpf_run(r.prog, p.data, p.len, p.len) != 0
    return True


cdef class Classify(Element):
    """Parses each packet's headers once (Ethernet, VLAN/QinQ, ARP, IPv4,
    IPv6 and its extension headers, TCP/UDP/ICMP/ICMPv6/SCTP: the offsets
    travel with the packet for later elements) and sends it to the output of
    the first rule it matches, else to `default`.

    Each rule is a mapping: `output` (a name) and match fields, all of which
    must match: ethertype (a number, or ipv4, ipv6, arp; after VLAN tags),
    vlan (outer VLAN id or range like 100-199), ip (4 or 6), proto (tcp,
    udp, icmp, icmpv6, sctp or a number; after IPv6 extension headers), src
    and dst (an IPv4 or IPv6 prefix), sport and dport (a port or range; TCP,
    UDP, SCTP), tcp_flags ('syn', 'syn,!ack', or VALUE/MASK like 0x02/0x12),
    dscp (0..63, a range, or ef, csN, afXY), expr (a tcpdump filter,
    compiled by libpcap at load and run as classic BPF by nmroute's own
    interpreter; `len` is the frame's length). Fields that need a header
    never match a packet without it (ports: a non-first fragment, ICMP).
    A rule with no field matches every well-formed packet. in_port (an
    input port's name, or a list of them) matches packets that entered the
    pipeline through that port.

    A malformed frame (parse's reasons) is offered to the rules that have
    only `expr`, in order, since BPF needs no parse (so expr counts equal
    tcpdump's on any capture); unmatched, it goes to `malformed` (param
    malformed: output) or is dropped with its reason. A malformed frame sent
    to an output carries no parse result: a later element parses it again.

    Outputs:
        NAME: one per distinct rule output, in order of first appearance
        default: packets no rule matched
        malformed: malformed frames, only with param malformed: output
    Counters:
        bpf_runs: expressions run; bpf_matches: those that matched
    Drops:
        malformed: malformed:eth, malformed:vlan, malformed:arp, malformed:ipv4,
          malformed:ipv6, malformed:l4: frames that lie about their lengths,
          that no expr-only rule matched (malformed: drop, the default)
    Example:
        ports: {src: "gen:count=100,proto=tcp,dport=80", web: sink, rest: sink}
        elements:
          c:
            type: classify
            rules:
              - {output: web, ip: 4, proto: tcp, dport: 80-88, dst: 198.19.0.0/16}
              - {output: syn, expr: "tcp[tcpflags] & tcp-syn != 0"}
        links: ["src -> c -> web", "c [syn] -> drop", "c [default] -> rest"]
    """
    TYPE = "classify"
    SUMMARY = "parse headers; first-match rules (fields or tcpdump expr) pick the output"
    OUTPUTS = ("default",)
    PARAMS = (
        Param("rules", Custom("a list of rules like {output: web, proto: tcp, dport: 80}",
                              convert_rules),
              "ordered rules: `output` and fields to match (first match wins)"),
        Param("malformed", Choice("drop", "output"),
              "malformed frames: dropped with their reason, or sent to `malformed`", "drop"),
    )
    COUNTERS = ("bpf_runs", "bpf_matches")

    cdef Rule* rules
    cdef uint32_t n_rules
    cdef uint16_t default_out
    cdef uint16_t malformed_out      # NO_OUT: drop
    cdef bint any_expr_only
    cdef list progs                  # keeps the BPF programs alive
    cdef list in_port_rules          # (rule index, port names)

    @classmethod
    def outputs(cls, params):
        try:
            rules = convert_rules(params.get("rules"))
        except ParamError:
            return cls.OUTPUTS
        names = []
        for r in rules:
            if r["output"] not in names:
                names.append(r["output"])
        if "default" not in names:
            names.append("default")
        if params.get("malformed") == "output":
            names.append("malformed")
        return tuple(names)

    @classmethod
    def check(cls, params):
        msgs = []
        rules = params.get("rules") or []
        for i, r in enumerate(rules):
            if not set(r) - {"output"} and i + 1 < len(rules):
                msgs.append(f"rules[{i}] has no field, so it matches every packet: "
                            f"rules after it never match")
                break
        return msgs

    def configure(self, rules, malformed="drop"):
        rules = convert_rules(rules)
        names = list(self.output_names)
        self.default_out = names.index("default")
        self.malformed_out = names.index("malformed") if malformed == "output" else NO_OUT
        self.rules = <Rule*>calloc(len(rules), sizeof(Rule))
        if self.rules == NULL:
            raise MemoryError()
        self.n_rules = len(rules)
        self.progs = []
        self.in_port_rules = []
        self.any_expr_only = False
        for i, r in enumerate(rules):
            self._compile(&self.rules[i], r, names.index(r["output"]))
            if self.rules[i].need == M_EXPR:
                self.any_expr_only = True

    cdef _compile(self, Rule* c, dict r, int out):
        cdef BpfProgram prog
        cdef uint32_t need = 0
        c.out = out
        if "ethertype" in r:
            need |= M_ETHERTYPE
            c.ethertype = r["ethertype"]
        if "vlan" in r:
            need |= M_VLAN
            c.vlan_lo, c.vlan_hi = r["vlan"]
        fam, _ = _family(r)
        if fam is not None:
            need |= M_IP4 if fam == 4 else M_IP6
        if "proto" in r:
            need |= M_IP | M_PROTO
            c.proto = r["proto"]
        if "dscp" in r:
            need |= M_IP | M_DSCP
            c.dscp_lo, c.dscp_hi = r["dscp"]
        for key, bit in (("src", M_SRC), ("dst", M_DST)):
            if key in r:
                need |= bit
                words, masks = _addr_words(r[key])
                for k in range(len(words)):
                    if key == "src":
                        c.src[k], c.src_mask[k] = words[k], masks[k]
                    else:
                        c.dst[k], c.dst_mask[k] = words[k], masks[k]
        if "sport" in r:
            need |= M_IP | M_SPORT
            c.sport_lo, c.sport_hi = r["sport"]
        if "dport" in r:
            need |= M_IP | M_DPORT
            c.dport_lo, c.dport_hi = r["dport"]
        if "tcp_flags" in r:
            need |= M_IP | M_FLAGS
            c.flags_val, c.flags_mask = r["tcp_flags"]
        if "in_port" in r:
            need |= M_IN_PORT        # the port bits come in bind_ports()
            self.in_port_rules.append((c - self.rules, r["in_port"]))
        if "expr" in r:
            need |= M_EXPR
            prog = BpfProgram.compile(r["expr"])
            self.progs.append(prog)
            c.prog = prog.ops
        c.need = need

    @classmethod
    def port_refs(cls, params):
        return [(f"rules[{i}].in_port", name)
                for i, r in enumerate(params.get("rules") or ())
                for name in r.get("in_port", ())]

    def bind_ports(self, dict port_ids):
        cdef uint64_t bits
        for i, names in self.in_port_rules:
            bits = 0
            for name in names:
                if port_ids[name] >= MAX_IN_PORTS:
                    raise ValueError(f"in_port '{name}': only the first {MAX_IN_PORTS} "
                                     "input ports can be matched")
                bits |= 1ULL << port_ids[name]
            self.rules[i].in_ports = bits

    def __dealloc__(self):
        free(self.rules)

    cdef int process(self, Batch* b) noexcept nogil:
        cdef uint32_t i, j, n_rules = self.n_rules
        cdef const Rule* rules = self.rules
        cdef uint16_t out, first = NO_OUT
        cdef bint uniform = True       # every packet to one output: no scatter
        cdef Desc* p
        cdef int reason
        cdef uint64_t runs = 0, hits = 0, before
        for i in range(b.n):
            p = &b.d[i]
            reason = parse(p)
            out = NO_OUT
            if reason == 0:
                for j in range(n_rules):
                    before = runs
                    if match(&rules[j], p, &runs):
                        out = rules[j].out
                        hits += runs - before
                        break
                if out == NO_OUT:
                    out = self.default_out
            else:
                p.pflags = 0           # no parse result: a later element parses again
                if self.any_expr_only:
                    for j in range(n_rules):
                        if rules[j].need == M_EXPR:
                            runs += 1
                            if bpf_run(rules[j].prog, p.data, p.len, p.len) != 0:
                                out = rules[j].out
                                hits += 1
                                break
                if out == NO_OUT:
                    out = self.malformed_out
                if out == NO_OUT:
                    drop_pkt(p, <uint16_t>reason)
                    uniform = False
                    continue
            p.out = out
            if i == 0:
                first = out
            elif out != first:
                uniform = False
        self.stats[C_BPF_RUNS] += runs
        self.stats[C_BPF_MATCHES] += hits
        if uniform and first != NO_OUT:
            return first
        return PER_PACKET
