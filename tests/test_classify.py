"""classify: every match field, first-match order, default, malformed output
vs drop, config errors with their location, the BPF interpreter, tcpdump
as the oracle for `expr` on a capture of mixed and malformed frames, and
random bytes (hypothesis). Frames are scapy-built, written to a pcap, run
through classify, and every output read back from its own pcap file."""
import ipaddress
import json
import operator
import random
import re
import shutil
import subprocess
from collections import Counter

import pytest
from helpers import (
    BAD_CONFIG, error_lines, raw_records, read_pcap, run_cli, run_pipeline, write_pcap_bytes)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.sctp import SCTP
from scapy.packet import Raw

from nmroute.errors import ParamError
from nmroute.errors import BpfError
from nmroute.fastpath.bpf import BpfProgram
from nmroute.fastpath.elements.classify import Classify, convert_rules

T0 = 1_700_000_000_000_000_000
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def run_classify(tmp_path, frames, rules, malformed="drop"):
    """Run frames through one classify, each output into its own pcap file.
    Returns ({output: [frame bytes, in order]}, the element's stats)."""
    write_pcap_bytes(tmp_path / "in.pcap", [(T0 + i * 1000, f) for i, f in enumerate(frames)])
    outs = Classify.outputs({"rules": rules, "malformed": malformed})
    ports = {"in": "pcap:in.pcap", **{f"o{k}": f"pcap:o{k}.pcap" for k in range(len(outs))}}
    links = ["in -> c -> o0"] + [f"c [{name}] -> o{k}" for k, name in enumerate(outs) if k]
    text = json.dumps({"ports": ports,
                       "elements": {"c": {"type": "classify", "rules": rules,
                                          "malformed": malformed}},
                       "links": links})
    r = run_pipeline(tmp_path, text)
    got = {name: [f for _, f in read_pcap(tmp_path / f"o{k}.pcap")]
           for k, name in enumerate(outs)}
    return got, r.stats["elements"]["c"]


def where(got):
    """frame -> output name (frames are distinct within a test)."""
    return {f: name for name, frames in got.items() for f in frames}


# --- each field ---------------------------------------------------------------------

def tcp4(sport=1000, dport=80, flags="S", src="198.18.0.1", dst="198.19.0.1", tos=0, **kw):
    return bytes(ETH / IP(src=src, dst=dst, tos=tos, **kw) / TCP(sport=sport, dport=dport,
                                                                  flags=flags))


def test_every_field_matches_what_it_should(tmp_path):
    f = {
        "syn80": tcp4(1000, 80, "S"),
        "synack80": tcp4(80, 1000, "SA"),
        "ack443": tcp4(1001, 443, "A", dst="198.19.7.7"),
        "udp53": bytes(ETH / IP(src="198.18.9.9", dst="198.19.0.1") / UDP(sport=5353, dport=53)),
        "ef": tcp4(1002, 22, "A", tos=46 << 2),
        "v6udp": bytes(ETH / IPv6(src="2001:2::1", dst="2001:2:0:1::9", tc=10 << 2)
                       / UDP(sport=7, dport=8)),
        "v6tcp": bytes(ETH / IPv6(src="2001:2:0:5::1", dst="2001:2::2") / TCP(dport=9, flags="A")),
        "vlan7": bytes(ETH / Dot1Q(vlan=7) / IP(dst="198.19.0.2") / ICMP()),
        "vlan2000": bytes(ETH / Dot1Q(vlan=2000) / IP(dst="198.19.0.2") / ICMP()),
        "arp": bytes(ETH / ARP(psrc="198.18.0.1", pdst="198.18.0.2")),
        "sctp": bytes(ETH / IP() / SCTP(sport=36412, dport=36412)),
        "other": bytes(ETH / IP(proto=47) / Raw(b"g" * 8)),
    }
    rules = [
        {"output": "vlan_lo", "vlan": "1-100"},
        {"output": "vlan_hi", "vlan": 2000},
        {"output": "arp", "ethertype": "arp"},
        {"output": "syn", "tcp_flags": "syn,!ack"},
        {"output": "synack", "tcp_flags": "0x12/0x12"},
        {"output": "ef", "dscp": "ef"},
        {"output": "v6dscp", "ip": 6, "dscp": "8-15"},
        {"output": "v6src", "src": "2001:2:0:5::/64"},
        {"output": "net7", "dst": "198.19.7.0/24", "dport": 443},
        {"output": "dns", "proto": "udp", "sport": "5000-6000", "src": "198.18.8.0/23"},
        {"output": "sctp", "proto": 132},
        {"output": "gre", "ip": 4, "proto": 47},
    ]
    got, _ = run_classify(tmp_path, list(f.values()), rules)
    assert where(got) == {
        f["syn80"]: "syn", f["synack80"]: "synack", f["ack443"]: "net7", f["udp53"]: "dns",
        f["ef"]: "ef", f["v6udp"]: "v6dscp", f["v6tcp"]: "v6src", f["vlan7"]: "vlan_lo",
        f["vlan2000"]: "vlan_hi", f["arp"]: "arp", f["sctp"]: "sctp", f["other"]: "gre"}
    assert got["default"] == []


@pytest.mark.parametrize("rule, hits", [
    ({"ethertype": "ipv6"}, {"v6"}),
    ({"ethertype": 0x0800}, {"syn", "frag2", "opts"}),
    ({"ip": 4}, {"syn", "frag2", "opts"}),
    ({"proto": "tcp"}, {"syn", "v6", "opts"}),
    ({"proto": "udp"}, {"frag2"}),                    # a later fragment keeps its protocol
    ({"dport": "1-65535"}, {"syn", "v6", "opts"}),    # ... but has no ports
    ({"sport": 1000}, {"syn", "opts"}),
    ({"src": "198.18.0.0/15"}, {"syn", "frag2", "opts"}),
    ({"dst": "2001:2::/48"}, {"v6"}),
    ({"tcp_flags": "syn"}, {"syn", "opts"}),
    ({"tcp_flags": 0x10}, {"v6"}),
    ({"dscp": 0}, {"syn", "frag2", "opts", "v6"}),
    ({"vlan": "0-4095"}, set()),
    ({"expr": "tcp dst port 80"}, {"syn", "opts"}),
    ({"expr": "ip[6:2] & 0x1fff != 0"}, {"frag2"}),
])
def test_one_field(tmp_path, rule, hits):
    f = {
        "syn": tcp4(1000, 80, "S"),
        "frag2": bytes(ETH / IP(src="198.18.0.5", proto=17, frag=100) / Raw(b"z" * 20)),
        "opts": bytes(ETH / IP(src="198.18.0.6", options=b"\x01" * 8) / TCP(sport=1000, dport=80,
                                                                           flags="S")),
        "v6": bytes(ETH / IPv6(src="2001:2::1", dst="2001:2::2") / TCP(dport=443, flags="A")),
        "arp": bytes(ETH / ARP()),
    }
    got, _ = run_classify(tmp_path, list(f.values()), [{"output": "hit", **rule}])
    assert {n for n, b in f.items() if b in got["hit"]} == hits
    assert len(got["hit"]) + len(got["default"]) == len(f)


def test_first_match_wins_and_outputs_in_order_of_first_appearance(tmp_path):
    a, b, c = tcp4(1, 80), tcp4(2, 80), tcp4(3, 81)
    rules = [{"output": "x", "sport": 2}, {"output": "y", "dport": 80},
             {"output": "x", "dport": "80-81"}, {"output": "z", "sport": 1}]
    assert Classify.outputs({"rules": rules}) == ("x", "y", "z", "default")
    got, stats = run_classify(tmp_path, [a, b, c, bytes(ETH / ARP())], rules)
    assert got["x"] == [b, c] and got["y"] == [a] and got["z"] == []
    assert got["default"] == [bytes(ETH / ARP())]
    assert stats["out"] == {"x": 2, "y": 1, "z": 0, "default": 1}


def test_rule_output_default_joins_default(tmp_path):
    rules = [{"output": "default", "dport": 22}, {"output": "tcp", "proto": "tcp"}]
    assert Classify.outputs({"rules": rules}) == ("default", "tcp")
    got, _ = run_classify(tmp_path, [tcp4(1, 22), tcp4(1, 80)], rules)
    assert got == {"default": [tcp4(1, 22)], "tcp": [tcp4(1, 80)]}


BAD = {
    "short": b"\x01" * 10,
    "ihl": bytes(ETH / IP(ihl=4) / UDP()),
    "l4": bytes(ETH / IP(len=24) / UDP()),
}


def test_malformed_dropped_with_reason(tmp_path):
    good = tcp4()
    got, stats = run_classify(tmp_path, [*BAD.values(), good], [{"output": "any"}])
    assert got == {"any": [good], "default": []}
    assert stats["drops"] == {"malformed:eth": 1, "malformed:ipv4": 1, "malformed:l4": 1}


def test_malformed_output(tmp_path):
    good = tcp4()
    rules = [{"output": "any"}]
    assert Classify.outputs({"rules": rules, "malformed": "output"}) == (
        "any", "default", "malformed")
    got, stats = run_classify(tmp_path, [*BAD.values(), good], rules, malformed="output")
    assert got == {"any": [good], "default": [], "malformed": list(BAD.values())}
    assert stats["drops"] == {}


def test_expr_only_rules_see_malformed_frames_field_rules_do_not(tmp_path):
    """BPF needs no parse: an expr-only rule classifies a malformed frame as
    tcpdump would; a rule with any parsed field never matches one."""
    trunc = tcp4()[:40]                        # IPv4 total length beyond the frame
    rules = [{"output": "f", "proto": "tcp"}, {"output": "e", "expr": "ip"},
             {"output": "g", "expr": "ip", "ip": 4}]
    got, stats = run_classify(tmp_path, [trunc, BAD["short"]], rules)
    assert got["e"] == [trunc] and got["f"] == got["g"] == got["default"] == []
    assert stats["drops"] == {"malformed:eth": 1}


def test_counters(tmp_path):
    rules = [{"output": "a", "dport": 22}, {"output": "b", "expr": "tcp port 80"}]
    frames = [tcp4(1, 22), tcp4(1, 80), tcp4(1, 81)]
    r_stats = run_classify(tmp_path, frames, rules)[1]
    assert r_stats["out"] == {"a": 1, "b": 1, "default": 1}
    c = Classify("c", {"rules": rules})
    assert c.counters() == {"bpf_runs": 0, "bpf_matches": 0}


def test_counters_in_the_summary(tmp_path):
    write_pcap_bytes(tmp_path / "in.pcap", [(T0, tcp4(1, 80)), (T0 + 1, tcp4(1, 81))])
    r = run_pipeline(tmp_path, """
        ports: {in: pcap:in.pcap, out: sink}
        elements:
          c: {type: classify, rules: [{output: web, expr: "tcp port 80"}]}
        links: ["in -> c -> out", "c [default] -> drop"]
        """)
    assert "bpf_runs=2, bpf_matches=1" in r.out


# --- configuration errors ---------------------------------------------------------

def check_errors(tmp_path, rules_yaml, extra=""):
    p = tmp_path / "p.yaml"
    p.write_text("ports: {src: 'gen:count=1', out: sink}\n"
                 "elements:\n"
                 "  c:\n"
                 "    type: classify\n"
                 f"{extra}"
                 "    rules:\n" + rules_yaml +
                 "links: ['src -> c -> out']\n")
    r = run_cli("check", p.name, cwd=tmp_path)
    assert r.code == BAD_CONFIG, str(r)
    return error_lines(r)


@pytest.mark.parametrize("rule, at, message", [
    ("{output: a, dst: 198.18.0.1/15}", "198", "rules[1].dst: '198.18.0.1/15' has host bits "
     "set (did you mean '198.18.0.0/15'?)"),
    ("{output: a, src: 198.18.0.0/33}", "198", "rules[1].src: expected an IP prefix like "
     "198.18.0.0/15 or 2001:2::/48, got '198.18.0.0/33'"),
    ("{output: a, dport: 90-80}", "90", "rules[1].dport: expected a port or a range like "
     "0-65535, within 0..65535, got '90-80'"),
    ("{output: a, vlan: 4096}", "4096", "rules[1].vlan: expected a VLAN id or a range like "
     "0-4095, within 0..4095, got 4096"),
    ("{output: a, dprot: 80}", "80", "rules[1].dprot: unknown field 'dprot' "
     "(did you mean 'dport'?)"),
    ("{output: a, in_port: [1]}", "[", "rules[1].in_port: expected an input port name like "
     "'wan', or a list of them, got [1]"),
    ("{output: a, expr: 'tcp port 99999'}", "'", "rules[1].expr: libpcap rejects "
     "'tcp port 99999': illegal port number 99999 > 65535"),
    ("{output: a, expr: 'tcp and'}", "'", "rules[1].expr: libpcap rejects 'tcp and': "
     "can't parse filter expression: syntax error"),
    ("{output: a, tcp_flags: 'syn,!akc'}", "'", "rules[1].tcp_flags: unknown TCP flag 'akc' "
     "(did you mean 'ack'?) in 'syn,!akc'"),
    ("{output: a, proto: udp, tcp_flags: syn}", "syn", "rules[1].tcp_flags: tcp_flags needs "
     "proto tcp, but proto is 17"),
    ("{output: a, ip: 4, dst: '2001:2::/48'}", "'", "rules[1].dst: an IPv6 prefix in a rule "
     "whose ip is IPv4: it never matches"),
    ("{output: a, proto: tcpp}", "tcpp", "rules[1].proto: expected tcp, udp, icmp, icmpv6, sctp "
     "or a number 0..255, got 'tcpp' (did you mean 'tcp'?)"),
    ("{proto: tcp}", "{", "rules[1]: a rule needs 'output', the name of the output it sends "
     "to"),
    ("{output: malformed}", "malformed", "rules[1].output: 'malformed' is the output of malformed "
     "frames (param malformed: output); name this one otherwise"),
    ("[output, a]", "[", "rules[1]: expected a rule like {output: web, proto: tcp, dport: "
     "80}, got ['output', 'a']"),
])
def test_config_error_says_where_and_what(tmp_path, rule, at, message):
    """The location is the line of rules[1] and the column of `at` in it:
    the offending value (or the rule, when it is the rule that is wrong)."""
    lines = check_errors(tmp_path, f"      - {{output: ok, proto: tcp}}\n      - {rule}\n")
    assert lines[0] == f"p.yaml:7:{9 + rule.index(at)}: element 'c' (classify): {message}"


def test_config_rules_must_be_a_nonempty_list(tmp_path):
    lines = check_errors(tmp_path, "      []\n")
    assert lines[0].startswith("p.yaml:6:7: element 'c' (classify): rules: expected a "
                               "non-empty list of rules")


def test_a_catch_all_before_other_rules_is_reported(tmp_path):
    lines = check_errors(tmp_path, "      - {output: ok}\n      - {output: ok, proto: tcp}\n")
    assert lines[1:] == ["p.yaml:4:5: element 'c' (classify): rules[0] has no field, so it "
                     "matches every packet: rules after it never match"]


def test_convert_rules_is_idempotent_and_normalises():
    rules = convert_rules([{"output": "a", "ethertype": "ipv6", "proto": "TCP", "dscp": "af41",
                            "dst": "2001:2::/48", "tcp_flags": "syn,!ack,!rst",
                            "vlan": "10-20", "sport": 53}])
    assert convert_rules(rules) is rules
    assert rules == [{"output": "a", "ethertype": 0x86DD, "proto": 6, "dscp": (34, 34),
                      "dst": "2001:2::/48", "tcp_flags": (0x02, 0x16), "vlan": (10, 20),
                      "sport": (53, 53)}]
    with pytest.raises(ParamError) as e:
        convert_rules([{"output": "a"}, {"output": "b", "src": "x"}])
    assert e.value.path == (1, "src")


# --- the BPF interpreter ---------------------------------------------------------------

def test_bpf_validation_rejects_unsafe_programs():
    ret = (0x06, 0, 0, 1)
    for prog, msg in [
        ([], "1 to 4096 instructions"),
        ([(0x15, 5, 0, 1), ret], "jump past the end"),
        ([(0x05, 0, 0, 1), ret], "jump past the end"),
        ([(0x60, 0, 0, 16), ret], "scratch memory index 16"),
        ([(0x34, 0, 0, 0), ret], "division by zero"),
        ([(0x64, 0, 0, 32), ret], "shift by 32"),
        ([(0xff, 0, 0, 0), ret], "unknown opcode 0xff"),
        ([(0x00, 0, 0, 0)], "not a return"),
    ]:
        with pytest.raises(BpfError, match=msg):
            BpfProgram.from_insns(prog)


def test_bpf_runtime_semantics_follow_libpcap():
    run = lambda prog, data, **kw: BpfProgram.from_insns(prog).run(data, **kw)  # noqa: E731
    # Loads past the end return 0 (reject), at any offset, even near 2**32.
    assert run([(0x20, 0, 0, 0), (0x16, 0, 0, 0)], b"\x00\x00\x00\x07") == 7
    assert run([(0x20, 0, 0, 1), (0x06, 0, 0, 9)], b"\x00\x00\x00\x07") == 0
    assert run([(0x30, 0, 0, 0xFFFFFFFF), (0x06, 0, 0, 9)], b"\x01") == 0
    assert run([(0x01, 0, 0, 0xFFFFFFFF), (0x48, 0, 0, 2), (0x06, 0, 0, 9)], b"\x01" * 8) == 0
    # Division or modulo by a zero X returns 0; shifts by X >= 32 give 0.
    assert run([(0x00, 0, 0, 5), (0x3c, 0, 0, 0), (0x06, 0, 0, 9)], b"") == 0
    assert run([(0x00, 0, 0, 5), (0x9c, 0, 0, 0), (0x06, 0, 0, 9)], b"") == 0
    assert run([(0x00, 0, 0, 5), (0x01, 0, 0, 40), (0x6c, 0, 0, 0), (0x16, 0, 0, 0)], b"") == 0
    # `len` is the wire length; MSH reads an IPv4 header length.
    assert run([(0x80, 0, 0, 0), (0x16, 0, 0, 0)], b"ab", wirelen=1500) == 1500
    assert run([(0xb1, 0, 0, 0), (0x87, 0, 0, 0), (0x16, 0, 0, 0)], b"\x46") == 24
    # Scratch memory, X, jumps, negation.
    prog = [(0x00, 0, 0, 3), (0x02, 0, 0, 4), (0x00, 0, 0, 0), (0x61, 0, 0, 4),
            (0x87, 0, 0, 0), (0x84, 0, 0, 0), (0x15, 0, 1, 0xFFFFFFFD), (0x06, 0, 0, 1),
            (0x06, 0, 0, 2)]
    assert run(prog, b"") == 1


def test_fused_instruction_pairs_give_the_same_verdicts():
    frames = mixed_frames(300, seed=3)
    for e in EXPRS:
        insns = BpfProgram.compile(e).instructions()
        fused, plain = BpfProgram.from_insns(insns), BpfProgram.from_insns(insns, fuse=False)
        assert [fused.run(f) for f in frames] == [plain.run(f) for f in frames], e



ALU = {0x00: operator.add, 0x10: operator.sub, 0x20: operator.mul, 0x30: operator.floordiv,
       0x90: operator.mod, 0x50: operator.and_, 0x40: operator.or_, 0xA0: operator.xor,
       0x60: operator.lshift, 0x70: operator.rshift, 0x80: lambda a, _: -a}


def ref_bpf(insns, pkt, wirelen=None):
    """libpcap's bpf_filter, plainly, in Python: the oracle for bpf_run."""
    acc = x = pc = 0
    mem = [0] * 16
    wl = len(pkt) if wirelen is None else wirelen
    MASK32 = 0xFFFFFFFF

    def load(off, size):
        if off + size > len(pkt):
            return None
        return int.from_bytes(pkt[off:off + size], "big")

    while True:
        code, jt, jf, k = insns[pc]
        cls, size = code & 0x07, {0x00: 4, 0x08: 2, 0x10: 1}.get(code & 0x18)
        mode = code & 0xE0
        if cls == 0x06:
            return k if code & 0x18 == 0 else (acc if code & 0x18 == 0x10 else x)
        if cls == 0x00 and mode in (0x20, 0x40):          # LD ABS / IND
            v = load(k if mode == 0x20 else x + k, size)
            if v is None:
                return 0
            acc = v
        elif code == 0xB1:                                 # LDX MSH
            v = load(k, 1)
            if v is None:
                return 0
            x = (v & 0x0F) << 2
        elif code in (0x00, 0x01):
            acc, x = (k, x) if code == 0x00 else (acc, k)
        elif code in (0x80, 0x81):
            acc, x = (wl, x) if code == 0x80 else (acc, wl)
        elif code in (0x60, 0x61):
            acc, x = (mem[k], x) if code == 0x60 else (acc, mem[k])
        elif code in (0x02, 0x03):
            mem[k] = acc if code == 0x02 else x
        elif code == 0x05:
            pc += k
        elif cls == 0x05:
            src = x if code & 0x08 else k
            op = code & 0xF0
            if op == 0x10:
                c = acc == src
            elif op == 0x20:
                c = acc > src
            elif op == 0x30:
                c = acc >= src
            else:
                c = acc & src != 0
            pc += jt if c else jf
        elif cls == 0x04:
            op, src = code & 0xF0, (x if code & 0x08 else k)
            if op in (0x30, 0x90) and src == 0:
                return 0
            acc = 0 if op in (0x60, 0x70) and src >= 32 else ALU[op](acc, src) & MASK32
        elif code == 0x07:
            x = acc
        elif code == 0x87:
            acc = x
        else:
            raise AssertionError(f"opcode {code:#x}")
        pc += 1


def random_program(rnd, frames):
    """A valid program made mostly of the runs bpf.decode fuses (load + test,
    load + AND + JEQ, MSH + indexed load + test) with operands that
    sometimes match the frames, among ALU, scratch-memory and jump
    instructions."""
    loads = [(0x20, 4), (0x28, 2), (0x30, 1), (0x48, 2), (0x50, 1), (0x40, 4)]
    tests = [0x15, 0x25, 0x35, 0x45]
    body = []

    def value(off, size):
        f = rnd.choice(frames)
        if rnd.random() < 0.7 and off + size <= len(f):
            return int.from_bytes(f[off:off + size], "big")
        return rnd.choice((0, 1, 6, 0x800, 0x1FFF, rnd.getrandbits(32)))

    for _ in range(rnd.randrange(1, 12)):
        r = rnd.random()
        code, size = rnd.choice(loads)
        off = rnd.choice((rnd.randrange(0, 70), rnd.randrange(0, 20),
                          0xFFFFFFFF - rnd.randrange(4)))
        if r < 0.15:
            body.append((0xB1, 0, 0, rnd.randrange(0, 40)))
            code, size = rnd.choice(loads[3:5])
            off = rnd.randrange(0, 30)
        if r < 0.85:
            body.append((code, 0, 0, off))
            if rnd.random() < 0.3:
                mask = rnd.choice((0xFF, 0x0F, 0xFFF, 0xFFFE0000, rnd.getrandbits(32)))
                body.append((0x54, 0, 0, mask))
                body.append(("test", 0x15, value(off, size) & mask))
            else:
                body.append(("test", rnd.choice(tests), value(off, size)))
        else:
            body.append(rnd.choice([
                (0x04, 0, 0, rnd.getrandbits(8)), (0x0c, 0, 0, 0), (0x24, 0, 0, 3),
                (0x3c, 0, 0, 0), (0x94, 0, 0, 7), (0x64, 0, 0, rnd.randrange(32)),
                (0x7c, 0, 0, 0), (0x84, 0, 0, 0), (0x07, 0, 0, 0), (0x87, 0, 0, 0),
                (0x02, 0, 0, 3), (0x60, 0, 0, rnd.choice((3, 5))), (0x61, 0, 0, 3),
                (0x80, 0, 0, 0), (0x01, 0, 0, rnd.randrange(40)), (0x1d, 0, 0, 0),
                (0x2d, 0, 0, 0), (0x05, 0, 0, 0), (0x45, 0, 0, 0)]))
            if body[-1][0] in (0x1d, 0x2d, 0x45):
                body[-1] = ("test", body[-1][0], rnd.getrandbits(8))
    rets = [(0x06, 0, 0, 0), (0x06, 0, 0, 0x40000), (0x16, 0, 0, 0)]
    n = len(body) + len(rets)
    prog = []
    for i, ins in enumerate(body):
        if ins[0] == "test":
            jt, jf = (rnd.randrange(0, min(255, n - i - 1)) for _ in range(2))
            prog.append((ins[1], jt, jf, ins[2]))
        elif ins[0] == 0x05:
            prog.append((0x05, 0, 0, rnd.randrange(0, n - i - 1)))
        else:
            prog.append(ins)
    return prog + rets


def test_decoded_programs_equal_a_reference_interpreter():
    """Random programs (mostly fusable runs, jumps landing anywhere, loads
    past the end) on random and real frames: bpf_run, fused or not, gives
    what a plain reading of libpcap's bpf_filter gives."""
    rnd = random.Random(11)
    frames = mixed_frames(40, seed=5) + [b"", b"\x45", bytes(rnd.getrandbits(8)
                                                             for _ in range(30))]
    fused_ops = set()
    for _ in range(1500):
        prog = random_program(rnd, frames)
        fused, plain = BpfProgram.from_insns(prog), BpfProgram.from_insns(prog, fuse=False)
        fused_ops.update(op[0] for op in fused.decoded_ops())
        for f in rnd.sample(frames, 12):
            want = ref_bpf(prog, f)
            assert fused.run(f) == want, (prog, f.hex())
            assert plain.run(f) == want, (prog, f.hex())
    # every fused op was exercised (op numbers: bpf.pyx's enum, from O_W_ABS_EQ on)
    first_fused = BpfProgram.from_insns([(0x20, 0, 0, 0), (0x15, 0, 0, 0),
                                         (0x06, 0, 0, 0)]).decoded_ops()[0][0]
    assert set(range(first_fused, first_fused + 29)) <= fused_ops


def test_reference_interpreter_agrees_with_tcpdump_programs():
    frames = mixed_frames(200, seed=3)
    for e in EXPRS:
        prog = BpfProgram.compile(e)
        assert [prog.run(f) for f in frames] == [ref_bpf(prog.instructions(), f)
                                                 for f in frames], e


def test_decode_fuses_and_drops_covered_instructions():
    prog = BpfProgram.compile("tcp dst port 80 and net 198.18.0.0/15")
    ops = prog.decoded_ops()
    assert len(prog.instructions()) == 18 and len(ops) == 9
    # a jump into the middle of a fused run keeps the instructions it lands on
    insns = [(0x28, 0, 0, 0), (0x15, 1, 0, 1), (0x15, 0, 1, 2), (0x06, 0, 0, 7),
             (0x06, 0, 0, 0)]
    p = BpfProgram.from_insns(insns)
    assert len(p.decoded_ops()) == 4
    assert [p.run(bytes([0, v])) for v in (1, 2, 3)] == [7, 7, 0]
    assert [ref_bpf(insns, bytes([0, v])) for v in (1, 2, 3)] == [7, 7, 0]


# --- tcpdump as the oracle for expr -------------------------------------------------------

EXPRS = [
    "tcp dst port 80 and net 198.18.0.0/16", "udp", "ip6", "vlan and tcp", "icmp or icmp6",
    "tcp[tcpflags] & tcp-syn != 0", "ip[6:2] & 0x1fff != 0", "greater 200", "ether broadcast",
    "arp", "sctp", "ip6 and tcp port 443", "vlan 10", "ip and len < 100",
    "dst net 2001:2::/64 and tcp", "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-ack", "ip6 proto 44",
    "less 60",
]


def mixed_frames(n=500, seed=7):
    """Scapy-built frames of every kind, some truncated or malformed."""
    rnd = random.Random(seed)
    frames = []
    for _ in range(n):
        src4 = f"198.{rnd.choice((18, 19, 20))}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
        dst4 = f"198.18.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
        sport, dport = rnd.choice((80, 443, 1234, 53)), rnd.choice((80, 443, 22, 53, 5353))
        payload = Raw(bytes(rnd.randrange(256) for _ in range(rnd.choice((0, 10, 100, 300)))))
        eth = Ether(src="02:00:00:00:00:01",
                    dst=rnd.choice(("02:00:00:00:00:02", "ff:ff:ff:ff:ff:ff")))
        if rnd.random() < 0.2:
            eth = eth / Dot1Q(vlan=rnd.choice((10, 20)))
        if rnd.random() < 0.05:
            eth = Ether(src="02:00:00:00:00:01") / Dot1AD(vlan=5) / Dot1Q(vlan=10)
        k = rnd.randrange(12)
        flags = rnd.choice(("S", "SA", "A", "FA", "R", "PA"))
        if k == 0:
            p = eth / IP(src=src4, dst=dst4) / TCP(sport=sport, dport=dport, flags=flags) / payload
        elif k == 1:
            p = eth / IP(src=src4, dst=dst4) / UDP(sport=sport, dport=dport) / payload
        elif k == 2:
            p = eth / IP(src=src4, dst=dst4, flags="MF", frag=rnd.choice((0, 0, 5))) / UDP(
                sport=sport, dport=dport) / payload
        elif k == 3:
            p = eth / IP(src=src4, dst=dst4) / ICMP() / payload
        elif k == 4:
            p = eth / IPv6(src="2001:2::1", dst=rnd.choice(("2001:2::2", "2001:db8::1"))) / TCP(
                sport=sport, dport=dport, flags=flags) / payload
        elif k == 5:
            p = eth / IPv6(src="2001:2::1", dst="2001:2::3") / IPv6ExtHdrHopByHop() / \
                IPv6ExtHdrRouting(addresses=["2001:2::9"]) / IPv6ExtHdrDestOpt() / UDP(
                    sport=sport, dport=dport) / payload
        elif k == 6:
            p = eth / IPv6(src="2001:2::1", dst="2001:2::3") / IPv6ExtHdrFragment(
                offset=rnd.choice((0, 9)), m=1, nh=6) / TCP(dport=dport, flags=flags) / payload
        elif k == 7:
            p = eth / IPv6(src="2001:2::1", dst="2001:2::3") / ICMPv6EchoRequest() / payload
        elif k == 8:
            p = eth / ARP(psrc="198.18.0.1", pdst=dst4)
        elif k == 9:
            p = eth / IP(src=src4, dst=dst4) / SCTP(sport=sport, dport=dport) / payload
        elif k == 10:
            p = eth / IP(src=src4, dst=dst4, options=b"\x01" * 4 * rnd.randrange(1, 11)) / TCP(
                sport=sport, dport=dport, flags=flags) / payload
        else:
            p = Ether(type=0x88cc) / Raw(b"\x02\x07" + bytes(rnd.randrange(256) for _ in range(40)))
        b = bytes(p)
        r = rnd.random()
        if r < 0.1:
            b = b[:rnd.randrange(len(b))]                      # truncated anywhere
        elif r < 0.15:
            b = bytearray(b)                                     # a byte of the headers flipped
            b[rnd.randrange(12, min(len(b), 60))] ^= 1 << rnd.randrange(8)
            b = bytes(b)
        elif r < 0.2 and len(b) < 60:
            b = b + b"\x00" * (60 - len(b))                      # Ethernet padding
        frames.append(b)
    return frames


def test_expr_counts_equal_tcpdump(tmp_path):
    """Malformed frames are included: expr-only rules see them (BPF needs no
    parse), so classify's count on each expression's output must equal
    `tcpdump -r FILE EXPR | wc -l` on every frame of the capture."""
    tcpdump = shutil.which("tcpdump") or "/usr/bin/tcpdump"
    frames = mixed_frames()
    write_pcap_bytes(tmp_path / "in.pcap", [(T0 + i * 1000, f) for i, f in enumerate(frames)])
    ports = {f"i{k}": "pcap:in.pcap" for k in range(len(EXPRS))}
    elements = {f"c{k}": {"type": "classify", "rules": [{"output": "hit", "expr": e}]}
                for k, e in enumerate(EXPRS)}
    links = [f"i{k} -> c{k} -> drop" for k in range(len(EXPRS))] + [
        f"c{k} [default] -> drop" for k in range(len(EXPRS))]
    r = run_pipeline(tmp_path, json.dumps({"ports": ports, "elements": elements,
                                           "links": links}))
    drops = Counter()
    for k, e in enumerate(EXPRS):
        out = subprocess.run([tcpdump, "-tt", "-nr", str(tmp_path / "in.pcap"), e],
                             capture_output=True, text=True, check=True).stdout
        # Not `| wc -l`: tcpdump adds hex-dump lines to some truncated frames.
        want = len(re.findall(r"^\d+\.\d+ ", out, re.M))
        subprocess.run([tcpdump, "-r", str(tmp_path / "in.pcap"), "-w",
                        str(tmp_path / "hit.pcap"), e], capture_output=True, check=True)
        assert len(raw_records(tmp_path / "hit.pcap")) == want
        st_ = r.stats["elements"][f"c{k}"]
        assert st_["out"]["hit"] == want, (e, st_)
        assert st_["in"] == len(frames)
        drops.update(st_["drops"])
    assert 0 < sum(r.stats["elements"]["c0"]["drops"].values()) < len(frames) // 5
    hits = [r.stats["elements"][f"c{k}"]["out"]["hit"] for k in range(len(EXPRS))]
    assert all(0 < h < len(frames) for h in hits), hits     # every expression discriminates


# --- a plain-Python reference ---------------------------------------------------------

def u16(b, o):
    return int.from_bytes(b[o:o + 2], "big")


def ref_l4(r, b, proto, off, end):
    """The L4 header at off of an IP payload ending at end (RFC 793/768/4960/792)."""
    r["proto"], left = proto, end - off
    need = {6: 20, 17: 8, 132: 12, 1: 8, 58: 8}.get(proto, 0)
    if left < need:
        return "l4"
    if proto == 6 and not 20 <= (b[off + 12] >> 4) * 4 <= left:
        return "l4"
    if proto in (6, 17, 132):
        r["sport"], r["dport"] = u16(b, off), u16(b, off + 2)
    if proto == 6:
        r["flags"] = b[off + 13]
    return r


def ref_parse(b):
    """The headers of frame b as a dict, or the malformed:<what> it is."""
    if len(b) < 14:
        return "eth"
    off, et, tags = 14, u16(b, 12), []
    while et in (0x8100, 0x88A8, 0x9100):
        if len(tags) == 2 or len(b) - off < 4:
            return "vlan"
        tags.append(u16(b, off) & 0xFFF)
        et, off = u16(b, off + 2), off + 4
    r = {"ethertype": et, "vlan": tags[0] if tags else None}
    left = len(b) - off
    if et == 0x0800:
        if left < 20 or b[off] >> 4 != 4:
            return "ipv4"
        ihl, total = (b[off] & 15) * 4, u16(b, off + 2)
        if not 20 <= ihl <= total <= left:
            return "ipv4"
        r.update(ip=4, src=b[off + 12:off + 16], dst=b[off + 16:off + 20], dscp=b[off + 1] >> 2,
                 proto=b[off + 9])
        if u16(b, off + 6) & 0x1FFF:               # a later fragment: no L4 header
            return r
        return ref_l4(r, b, b[off + 9], off + ihl, off + total)
    if et == 0x86DD:
        if left < 40 or b[off] >> 4 != 6:
            return "ipv6"
        end = off + 40 + u16(b, off + 4)
        if end > len(b):
            return "ipv6"
        r.update(ip=6, src=b[off + 8:off + 24], dst=b[off + 24:off + 40],
                 dscp=((b[off] & 15) << 2) | (b[off + 1] >> 6))
        nh, o = b[off + 6], off + 40
        for _ in range(9):                             # 8 extension headers at most
            if nh not in (0, 43, 44, 51, 60):
                return ref_l4(r, b, nh, o, end)
            if end - o < 8:
                return "ipv6"
            if nh == 44 and u16(b, o + 2) & 0xFFF8:
                r["proto"] = b[o]
                return r
            hl = 8 if nh == 44 else (b[o + 1] + 2) * 4 if nh == 51 else (b[o + 1] + 1) * 8
            if hl > end - o:
                return "ipv6"
            nh, o = b[o], o + hl
        return "ipv6"
    if et == 0x0806 and left < 28:
        return "arp"
    return r


def ref_match(rule, r, frame, progs):
    def within(key, v):
        return v is not None and rule[key][0] <= v <= rule[key][1]

    for key, want in rule.items():
        if key == "ethertype" and r["ethertype"] != want:
            return False
        if key == "vlan" and not within(key, r["vlan"]):
            return False
        if key == "ip" and r.get("ip") != want:
            return False
        if key in ("proto", "dscp") and r.get("ip") is None:
            return False
        if key == "proto" and r["proto"] != want:
            return False
        if key == "dscp" and not within(key, r["dscp"]):
            return False
        if key in ("src", "dst"):
            net = ipaddress.ip_network(want)
            if r.get("ip") != net.version or ipaddress.ip_address(r[key]) not in net:
                return False
        if key in ("sport", "dport") and not within(key, r.get(key)):
            return False
        if key == "tcp_flags" and ("flags" not in r or r["flags"] & want[1] != want[0]):
            return False
        if key == "expr" and not progs[want].run(frame):
            return False
    return True


def ref_classify(frame, rules, malformed):
    """The output classify must choose for frame, or 'drop:<reason>'."""
    progs = {r["expr"]: BpfProgram.compile(r["expr"]) for r in rules if "expr" in r}
    r = ref_parse(frame)
    if isinstance(r, str):
        for rule in rules:
            if set(rule) == {"output", "expr"} and progs[rule["expr"]].run(frame):
                return rule["output"]
        return "malformed" if malformed == "output" else f"drop:malformed:{r}"
    for rule in rules:
        if ref_match({k: v for k, v in rule.items() if k != "output"}, r, frame, progs):
            return rule["output"]
    return "default"


def check_against_reference(tmp_path, frames, rules, malformed):
    got, stats = run_classify(tmp_path, frames, rules, malformed)
    conv = convert_rules(rules)
    want, drops = {name: [] for name in got}, Counter()
    for f in frames:
        out = ref_classify(f, conv, malformed)
        if out.startswith("drop:"):
            drops[out[5:]] += 1
        else:
            want[out].append(f)
    assert got == want
    assert stats["drops"] == dict(drops)
    assert stats["in"] == len(frames) == sum(stats["out"].values()) + sum(drops.values())
    return got


def test_mixed_capture_matches_the_reference(tmp_path):
    rules = [
        {"output": "arp", "ethertype": "arp"},
        {"output": "web", "proto": "tcp", "dport": "80-443", "dst": "198.18.0.0/16"},
        {"output": "syn", "tcp_flags": "syn,!ack"},
        {"output": "v6ext", "ip": 6, "proto": "udp", "sport": 53},
        {"output": "frag", "expr": "ip[6:2] & 0x1fff != 0"},
        {"output": "vlan", "vlan": "10-19", "dscp": "0-7"},
        {"output": "icmp", "proto": "icmp"},
        {"output": "icmp", "proto": "icmpv6", "src": "2001:2::/64"},
        {"output": "sctp", "ip": 4, "proto": "sctp", "sport": "1-1000"},
        {"output": "frag", "ip": 6, "dst": "2001:2::3/128", "proto": 6},
    ]
    got = check_against_reference(tmp_path, mixed_frames(), rules, "drop")
    assert all(got[name] for name in got if name != "default"), {k: len(v) for k, v in got.items()}


# --- random bytes -----------------------------------------------------------------------

FUZZ_RULES = [
    {"output": "a", "expr": "tcp[tcpflags] & tcp-syn != 0"},
    {"output": "b", "ip": 4, "proto": "udp", "dport": "0-1000"},
    {"output": "c", "src": "2001:2::/48", "tcp_flags": "psh"},
    {"output": "d", "vlan": "0-4095", "dscp": "0-31"},
    {"output": "e", "expr": "len >= 60 and ether[12] == 0x86"},
]
SEEDS = [tcp4(), bytes(ETH / Dot1Q(vlan=3) / IPv6(src="2001:2::1") / IPv6ExtHdrHopByHop()
                       / IPv6ExtHdrFragment(m=1) / TCP(flags="A")),
         bytes(ETH / Dot1AD() / Dot1Q() / IP(options=b"\x01" * 8) / UDP(dport=53)),
         bytes(ETH / IPv6(src="2001:2::1") / TCP(flags="PA")), *mixed_frames(40, seed=11)]


def mutate(t):
    """A seed frame cut at `cut`, with `patch` written at `pos`."""
    seed, cut, patch, pos = t
    b = seed[:cut]
    b = b[:pos] + patch + b[pos + len(patch):]
    return b or b"\x00"


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.one_of(
    st.binary(min_size=1, max_size=300),
    st.sampled_from(SEEDS),
    st.tuples(st.sampled_from(SEEDS), st.integers(1, 200), st.binary(max_size=4),
              st.integers(0, 199)).map(mutate)),
    min_size=1, max_size=60),
    st.sampled_from(["drop", "output"]))
def test_random_frames_no_crash_exact_accounting(tmp_path_factory, frames, malformed):
    """Each frame on the output the reference picks, unchanged; drops by reason."""
    check_against_reference(tmp_path_factory.mktemp("fuzz"), frames, FUZZ_RULES, malformed)


def test_in_port_matches_the_input_port_by_name(tmp_path):
    """in_port names an input port of the pipeline; frames from it take the
    rule's output, the others fall through."""
    frames = [bytes(Ether() / IP(src="198.18.0.1", dst="198.19.0.1") / UDP(dport=53))] * 3
    write_pcap_bytes(tmp_path / "a.pcap", [(i, f) for i, f in enumerate(frames)])
    write_pcap_bytes(tmp_path / "b.pcap", [(i, f) for i, f in enumerate(frames[:2])])
    r = run_pipeline(tmp_path, """
        ports: {a: pcap:a.pcap, b: pcap:b.pcap, from_b: "pcap:from_b.pcap", rest: sink}
        elements:
          c:
            type: classify
            rules:
              - {output: wan, in_port: b, proto: udp}
        links: [a -> c, b -> c, "c [wan] -> from_b", "c [default] -> rest"]
        """)
    assert r.stats["elements"]["c"]["out"] == {"wan": 2, "default": 3}
    assert [f for _, f in read_pcap(tmp_path / "from_b.pcap")] == frames[:2]


def test_in_port_must_be_a_port_the_pipeline_reads(tmp_path):
    r = run_pipeline(tmp_path, """
        ports: {src: "gen:count=1", out: sink}
        elements:
          c: {type: classify, rules: [{output: x, in_port: scr}]}
        links: [src -> c -> out, "c [x] -> drop"]
        """, expect=BAD_CONFIG)
    assert any("rules[0].in_port: 'scr' is not a port this pipeline reads from "
               "(did you mean 'src'?)" in ln for ln in error_lines(r)), r.err
