"""The shared header parser (fastpath/parse.pxd), observed through classify.

Each well-formed frame goes through a classify whose rules first offer one
wrong value per parsed property (each to its own output), then the frame's
exact expected properties (output `ok`): the frame must reach `ok`. So each
property is both found (ok) and not confused with a neighbour (the wrong
values): ethertype after tags, outer VLAN id, IP version, protocol after
IPv6 extension headers (l4_proto), addresses and DSCP (l3_off), ports and
TCP flags (l4_off, PF_L4), and fragments without ports (PF_LATER_FRAG).
Malformed frames must come out with their reason, and every truncation of
valid frames must be dropped with the reason of where it was cut."""
import functools
import ipaddress
from collections import Counter

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import (
    ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.sctp import SCTP
from scapy.packet import Padding, Raw
from test_classify import run_classify

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
S4, D4 = "198.18.0.1", "198.19.0.1"
S6, D6 = "2001:2::1", "2001:2:0:1::1"
ANY_PORT = "0-65535"

# name: (frame, expected properties). Properties absent are expected absent.
CASES = {
    "ipv4-tcp": (ETH / IP(src=S4, dst=D4, tos=10 << 2) / TCP(sport=1000, dport=80, flags="S"),
                 dict(ethertype=0x0800, ip=4, proto=6, src=S4, dst=D4, dscp=10, sport=1000,
                      dport=80, tcp_flags=0x02)),
    "ipv4-tcp-options": (ETH / IP(src=S4, dst=D4) / TCP(sport=1, dport=2, flags="SA", options=[
        ("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]),
        dict(ethertype=0x0800, ip=4, proto=6, src=S4, dst=D4, dscp=0, sport=1, dport=2,
             tcp_flags=0x12)),
    "ipv4-udp": (ETH / IP(src=S4, dst=D4) / UDP(sport=53, dport=5353) / Raw(b"q" * 30),
                 dict(ethertype=0x0800, ip=4, proto=17, src=S4, dst=D4, dscp=0, sport=53,
                      dport=5353)),
    "ipv4-udp-padded": (ETH / IP(src=S4, dst=D4) / UDP(sport=7, dport=9) / Padding(b"\0" * 18),
                        dict(ethertype=0x0800, ip=4, proto=17, src=S4, dst=D4, dscp=0,
                             sport=7, dport=9)),
    "ipv4-icmp": (ETH / IP(src=S4, dst=D4) / ICMP(),
                  dict(ethertype=0x0800, ip=4, proto=1, src=S4, dst=D4, dscp=0)),
    "ipv4-sctp": (ETH / IP(src=S4, dst=D4) / SCTP(sport=36412, dport=2905),
                  dict(ethertype=0x0800, ip=4, proto=132, src=S4, dst=D4, dscp=0,
                       sport=36412, dport=2905)),
    "ipv4-gre": (ETH / IP(src=S4, dst=D4, proto=47) / Raw(b"\0" * 4),
                 dict(ethertype=0x0800, ip=4, proto=47, src=S4, dst=D4, dscp=0)),
    "ipv4-options-rr": (ETH / IP(src=S4, dst=D4, options=[IPOption_RR(routers=["1.2.3.4"])])
                        / UDP(sport=11, dport=12),
                        dict(ethertype=0x0800, ip=4, proto=17, src=S4, dst=D4, dscp=0,
                             sport=11, dport=12)),
    "ipv4-ihl15": (ETH / IP(src=S4, dst=D4, options=b"\x01" * 40) / TCP(sport=5, dport=6,
                                                                       flags="A"),
                   dict(ethertype=0x0800, ip=4, proto=6, src=S4, dst=D4, dscp=0, sport=5,
                        dport=6, tcp_flags=0x10)),
    "ipv4-first-fragment": (ETH / IP(src=S4, dst=D4, flags="MF") / UDP(sport=3, dport=4)
                            / Raw(b"f" * 40),
                            dict(ethertype=0x0800, ip=4, proto=17, src=S4, dst=D4, dscp=0,
                                 sport=3, dport=4)),
    "ipv4-later-fragment": (ETH / IP(src=S4, dst=D4, proto=17, frag=3) / Raw(b"\0\3\0\4" * 8),
                            dict(ethertype=0x0800, ip=4, proto=17, src=S4, dst=D4, dscp=0)),
    "ipv4-last-fragment-tcp": (ETH / IP(src=S4, dst=D4, proto=6, frag=185) / Raw(b"\0" * 20),
                               dict(ethertype=0x0800, ip=4, proto=6, src=S4, dst=D4, dscp=0)),
    "vlan": (ETH / Dot1Q(vlan=100, prio=5) / IP(src=S4, dst=D4) / UDP(sport=1, dport=2),
             dict(ethertype=0x0800, vlan=100, ip=4, proto=17, src=S4, dst=D4, dscp=0, sport=1,
                  dport=2)),
    "qinq-88a8": (Ether(src="02:00:00:00:00:01") / Dot1AD(vlan=200) / Dot1Q(vlan=300)
                  / IP(src=S4, dst=D4) / TCP(sport=8, dport=9, flags="R"),
                  dict(ethertype=0x0800, vlan=200, ip=4, proto=6, src=S4, dst=D4, dscp=0,
                       sport=8, dport=9, tcp_flags=0x04)),
    "qinq-9100": (Ether(type=0x9100) / Dot1Q(vlan=4000) / IPv6(src=S6, dst=D6) / UDP(dport=1),
                  dict(ethertype=0x86DD, vlan=4000, ip=6, proto=17, src=S6, dst=D6, dscp=0,
                       sport=53, dport=1)),
    "vlan-arp": (ETH / Dot1Q(vlan=9) / ARP(psrc=S4, pdst=D4),
                 dict(ethertype=0x0806, vlan=9)),
    "arp": (Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=S4, pdst=D4), dict(ethertype=0x0806)),
    "lldp": (Ether(type=0x88CC) / Raw(b"\x02\x07\x04" + b"\0" * 40), dict(ethertype=0x88CC)),
    "ipv6-tcp": (ETH / IPv6(src=S6, dst=D6, tc=46 << 2) / TCP(sport=443, dport=50000,
                                                            flags="PA"),
                 dict(ethertype=0x86DD, ip=6, proto=6, src=S6, dst=D6, dscp=46, sport=443,
                      dport=50000, tcp_flags=0x18)),
    "ipv6-udp": (ETH / IPv6(src=S6, dst=D6, tc=0xFF) / UDP(sport=547, dport=546),
                 dict(ethertype=0x86DD, ip=6, proto=17, src=S6, dst=D6, dscp=63, sport=547,
                      dport=546)),
    "ipv6-icmpv6": (ETH / IPv6(src=S6, dst=D6) / ICMPv6EchoRequest(),
                    dict(ethertype=0x86DD, ip=6, proto=58, src=S6, dst=D6, dscp=0)),
    "ipv6-sctp": (ETH / IPv6(src=S6, dst=D6) / SCTP(sport=9, dport=10),
                  dict(ethertype=0x86DD, ip=6, proto=132, src=S6, dst=D6, dscp=0, sport=9,
                       dport=10)),
    "ipv6-ext-chain": (ETH / IPv6(src=S6, dst=D6) / IPv6ExtHdrHopByHop()
                       / IPv6ExtHdrRouting(addresses=["2001:2::5", "2001:2::6"])
                       / IPv6ExtHdrDestOpt() / TCP(sport=20, dport=21, flags="F"),
                       dict(ethertype=0x86DD, ip=6, proto=6, src=S6, dst=D6, dscp=0, sport=20,
                            dport=21, tcp_flags=0x01)),
    "ipv6-first-fragment": (ETH / IPv6(src=S6, dst=D6) / IPv6ExtHdrHopByHop()
                            / IPv6ExtHdrFragment(m=1, id=7) / UDP(sport=30, dport=31)
                            / Raw(b"x" * 16),
                            dict(ethertype=0x86DD, ip=6, proto=17, src=S6, dst=D6, dscp=0,
                                 sport=30, dport=31)),
    "ipv6-later-fragment": (ETH / IPv6(src=S6, dst=D6) / IPv6ExtHdrFragment(offset=2, nh=17)
                            / Raw(b"\0\x1e\0\x1f" * 4),
                            dict(ethertype=0x86DD, ip=6, proto=17, src=S6, dst=D6, dscp=0)),
    "ipv6-no-next": (ETH / IPv6(src=S6, dst=D6, nh=59),
                     dict(ethertype=0x86DD, ip=6, proto=59, src=S6, dst=D6, dscp=0)),
}


def other_addr(a):
    a = ipaddress.ip_address(a)
    return str(type(a)(int(a) ^ 1))


def wrong_values(exp):
    """One rule per property with a value the frame must not match."""
    fam = exp.get("ip")
    rules = [{"ethertype": exp["ethertype"] ^ 1},
             {"vlan": "0-4095"} if "vlan" not in exp else {"vlan": (exp["vlan"] + 1) % 4096}]
    rules += [{"ip": 4}, {"ip": 6}] if fam is None else [{"ip": 10 - fam}]
    if fam is None:
        rules += [{"proto": 0}, {"dscp": "0-63"}, {"src": "0.0.0.0/0"}, {"dst": "::/0"}]
    else:
        rules += [{"proto": (exp["proto"] + 1) % 256}, {"dscp": (exp["dscp"] + 1) % 64},
                  {"src": other_addr(exp["src"])}, {"dst": other_addr(exp["dst"])},
                  {"src": "::/0" if fam == 4 else "0.0.0.0/0"}]
    if "sport" in exp:
        rules += [{"sport": (exp["sport"] + 1) % 65536}, {"dport": (exp["dport"] + 1) % 65536}]
    else:
        rules += [{"sport": ANY_PORT}, {"dport": ANY_PORT}]
    if "tcp_flags" in exp:
        rules.append({"tcp_flags": f"{exp['tcp_flags'] ^ 1:#x}/0xff"})
    else:
        rules.append({"tcp_flags": "0/0"})
    return rules


def expected_rule(exp):
    r = {k: v for k, v in exp.items() if k != "tcp_flags"}
    if "tcp_flags" in exp:
        r["tcp_flags"] = f"{exp['tcp_flags']:#x}/0xff"
    return r


@pytest.mark.parametrize("name", CASES)
def test_parse_finds_every_header(tmp_path, name):
    frame, exp = CASES[name]
    frame = bytes(frame)
    rules = [{"output": f"no{i}", **r} for i, r in enumerate(wrong_values(exp))]
    rules.append({"output": "ok", **expected_rule(exp)})
    got, stats = run_classify(tmp_path, [frame], rules, malformed="output")
    assert got["ok"] == [frame], {k: v for k, v in got.items() if v} | {"rules": rules}


def dest_opts(n):
    """n destination-options headers, chained."""
    return functools.reduce(lambda a, b: a / b, [IPv6ExtHdrDestOpt() for _ in range(n)])


MALFORMED = {
    "eth": [b"\x02" * 13, b"\xff"],
    "vlan": [bytes(ETH / Dot1Q())[:16], bytes(Ether() / Dot1AD() / Dot1Q() / Dot1Q() / IP()),
             bytes(Ether(type=0x9100) / Dot1Q(type=0x8100))],
    "arp": [bytes(ETH / ARP())[:41], bytes(ETH / Dot1Q() / ARP())[:45]],
    "ipv4": [bytes(ETH / IP(ihl=4) / UDP()), bytes(ETH / IP(version=6) / UDP()),
             bytes(ETH / IP(len=200) / UDP()), bytes(ETH / IP(len=19) / UDP()),
             bytes(ETH / IP(ihl=15) / UDP()), bytes(ETH / IP())[:33]],
    "ipv6": [bytes(ETH / IPv6(plen=100) / UDP()), bytes(ETH / IPv6(version=4) / UDP()),
             bytes(ETH / IPv6())[:53], bytes(ETH / IPv6(plen=4, nh=0) / Raw(b"\x11\0\0\0")),
             bytes(ETH / IPv6() / IPv6ExtHdrRouting(len=5) / UDP()),
             bytes(ETH / IPv6() / dest_opts(9) / UDP())],
    "l4": [bytes(ETH / IP() / TCP(dataofs=4)), bytes(ETH / IP() / TCP(dataofs=15)),
           bytes(ETH / IP(len=24) / UDP()), bytes(ETH / IP(len=28) / SCTP()),
           bytes(ETH / IPv6(plen=4) / ICMPv6EchoRequest()), bytes(ETH / IP(len=39) / TCP()),
           bytes(ETH / IPv6(plen=18) / IPv6ExtHdrHopByHop() / TCP())],
}


def test_eight_extension_headers_are_followed_nine_are_not(tmp_path):
    ok = bytes(ETH / IPv6() / dest_opts(8) / UDP(dport=7))
    got, _ = run_classify(tmp_path, [ok], [{"output": "u", "dport": 7}], malformed="output")
    assert got["u"] == [ok]


def test_malformed_frames_have_their_reason(tmp_path):
    frames = [f for fs in MALFORMED.values() for f in fs]
    got, stats = run_classify(tmp_path, frames, [{"output": "any"}])
    assert got == {"any": [], "default": []}
    assert stats["drops"] == {f"malformed:{k}": len(v) for k, v in MALFORMED.items()}
    got, stats = run_classify(tmp_path, frames, [{"output": "any"}], malformed="output")
    assert got["malformed"] == frames and stats["drops"] == {}


def cut_reason(frame, n):
    """The reason parse must give `frame` cut to n bytes (no Ethernet padding
    in these frames: every cut inside IP or ARP breaks a length)."""
    if n < 14:
        return "eth"
    off, tags = 14, 0
    et = int.from_bytes(frame[12:14], "big")
    while et in (0x8100, 0x88A8, 0x9100):
        if n < off + 4:
            return "vlan"
        et = int.from_bytes(frame[off + 2:off + 4], "big")
        off, tags = off + 4, tags + 1
    return {0x0800: "ipv4", 0x86DD: "ipv6", 0x0806: "arp"}.get(et)


def test_every_truncation_is_dropped_with_its_reason(tmp_path):
    valid = [bytes(CASES[n][0]) for n in ("ipv4-tcp", "ipv4-ihl15", "qinq-88a8", "ipv6-ext-chain",
                                           "ipv6-later-fragment", "vlan-arp", "lldp")]
    frames, want = [], Counter()
    for f in valid:
        for n in range(1, len(f)):
            frames.append(f[:n])
            reason = cut_reason(f, n)
            want[f"malformed:{reason}" if reason else "ok"] += 1
    got, stats = run_classify(tmp_path, frames, [{"output": "ok"}])
    assert stats["in"] == len(frames)
    assert len(got["ok"]) == want.pop("ok")
    assert all(f[12:14] == b"\x88\xcc" for f in got["ok"])
    assert stats["drops"] == dict(want)
