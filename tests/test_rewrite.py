"""rewrite: every parameter on a mix of scapy-built frames (IPv4 with and
without options, TCP, UDP with and without checksum, ICMP, IPv6 TCP/UDP/
ICMPv6, ARP, one and two VLAN tags, fragments); each output compared frame
by frame with the frame scapy builds with the same fields set and its
checksums recomputed; checksums also validated by tshark. Malformed and
random frames (hypothesis): no crash, accounting exact."""
import random
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest
from helpers import read_pcap, run_pipeline, write_pcap_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, fragment
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

T0 = 1_700_000_000_000_000_000
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def inputs():
    """The frames every case runs on, as scapy packets. (Cases that change
    only L2 fields compare bytes and skip tshark: no checksum moves.)"""
    full = IP(src="198.18.0.1", dst="198.19.0.9", id=7) / UDP(sport=1, dport=2) / Raw(
        bytes(range(100)))
    full = IP(bytes(full))
    frags = fragment(full, fragsize=48)
    return [
        ETH / IP(src="198.18.0.1", dst="198.19.0.5", tos=0x03) / UDP(sport=1000, dport=53)
        / Raw(b"udp"),
        ETH / IP(src="198.18.0.2", dst="198.19.1.5") / UDP(sport=1001, dport=53, chksum=0)
        / Raw(b"nocsum"),
        ETH / IP(src="198.18.0.3", dst="198.19.0.6", ttl=9) / TCP(sport=2000, dport=80,
                                                                    flags="S"),
        ETH / IP(src="198.18.0.4", dst="198.19.0.7", options=[IPOption_NOP()] * 4)
        / TCP(sport=2001, dport=443, flags="A") / Raw(b"opts"),
        ETH / IP(src="198.18.0.5", dst="198.19.0.8") / ICMP(id=3, seq=4) / Raw(b"ping"),
        ETH / IPv6(src="2001:2::1", dst="2001:2:0:1::5", tc=0x21) / UDP(sport=3000, dport=53)
        / Raw(b"six"),
        ETH / IPv6(src="2001:2::2", dst="2001:2:0:7::5", hlim=2) / TCP(sport=3001, dport=22),
        ETH / IPv6(src="2001:2::3", dst="2001:2:0:1::9") / ICMPv6EchoRequest(id=9, data=b"e"),
        ETH / ARP(psrc="198.18.0.1", pdst="198.18.0.2"),
        ETH / Dot1Q(vlan=10, prio=3) / IP(src="198.18.0.6", dst="198.19.0.10") / TCP(
            sport=4000, dport=80),
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=0x88A8) / Dot1AD(vlan=20)
        / Dot1Q(vlan=30) / IP(src="198.18.0.7", dst="198.19.0.11") / UDP(sport=5000, dport=9),
        ETH / frags[0],
        ETH / frags[1],
        ETH / IP(src="198.18.0.8", dst="198.19.0.12", ttl=1) / UDP(sport=6000, dport=7),
        ETH / IPv6(src="2001:2::4", dst="2001:2:0:1::4", hlim=0) / UDP(sport=6001, dport=7),
    ]


def fixed(pkt):
    """pkt's bytes with every checksum recomputed by scapy; a UDP checksum of
    0 over IPv4 stays 0; fragments are rebuilt from the whole datagram."""
    pkt = pkt.copy()
    if IP in pkt and (pkt[IP].flags.MF or pkt[IP].frag):
        return None            # handled by frag_expect
    if IP in pkt:
        del pkt[IP].chksum
    for layer in (TCP, ICMP):
        if layer in pkt:
            del pkt[layer].chksum
    if UDP in pkt and not (IP in pkt and pkt[UDP].chksum == 0):
        del pkt[UDP].chksum
    if ICMPv6EchoRequest in pkt:
        del pkt[ICMPv6EchoRequest].cksum
    return bytes(pkt)


def frag_expect(change):
    """The two fragments of inputs(), as the rewrite of the whole datagram
    cut again: what an incremental update of the first fragment must give."""
    full = IP(src="198.18.0.1", dst="198.19.0.9", id=7) / UDP(sport=1, dport=2) / Raw(
        bytes(range(100)))
    full = IP(bytes(full))
    p = ETH / full
    change(p)
    del p[IP].chksum
    del p[UDP].chksum
    full = IP(bytes(p[IP]))
    eth = bytes(p)[:len(bytes(p)) - len(bytes(p[IP]))]
    return [eth + bytes(f) for f in fragment(full, fragsize=48)[:2]]


def tshark_bad(path):
    flt = ('ip.checksum.status == "Bad" || tcp.checksum.status == "Bad" || '
           'udp.checksum.status == "Bad" || icmp.checksum.status == "Bad" || '
           'icmpv6.checksum.status == "Bad"')
    r = subprocess.run(["tshark", "-r", str(path), "-o", "ip.check_checksum:TRUE",
                        "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
                        "-Y", flt], capture_output=True, text=True, check=True)
    return r.stdout.strip().splitlines()


def test_tshark_check_sees_bad_checksums(tmp_path):
    """The checksum oracle used on every output flags each kind of bad sum."""
    bad = [ETH / IP(src="198.18.0.1", dst="198.19.0.1", chksum=1) / UDP(),
           ETH / IP(src="198.18.0.1", dst="198.19.0.1") / UDP(chksum=1),
           ETH / IP(src="198.18.0.1", dst="198.19.0.1") / TCP(chksum=1),
           ETH / IP(src="198.18.0.1", dst="198.19.0.1") / ICMP(chksum=1),
           ETH / IPv6(src="2001:2::1", dst="2001:2::2") / ICMPv6EchoRequest(cksum=1),
           ETH / IP(src="198.18.0.1", dst="198.19.0.1") / UDP()]
    write_pcap_bytes(tmp_path / "bad.pcap", [(T0, bytes(p)) for p in bad])
    assert len(tshark_bad(tmp_path / "bad.pcap")) == 5


def subdir(tmp_path):
    return Path(tempfile.mkdtemp(dir=tmp_path))


def run_rewrite(tmp_path, params, frames, expired_out=False, chain=None, check_csum=True):
    write_pcap_bytes(tmp_path / "in.pcap", [(T0 + i, bytes(f)) for i, f in enumerate(frames)],
                     nsec=True)
    text = "\n".join(f"    {k}: {v!r}" if isinstance(v, str) else f"    {k}: {v}"
                     for k, v in params.items())
    links = ["in -> rw -> out"]
    extra = ""
    if expired_out:
        links.append("rw [expired] -> exp")
    if chain:
        links = ["in -> rw -> rw2 -> out"]
        extra = "  rw2:\n    type: rewrite\n" + "\n".join(
            f"    {k}: {v!r}" if isinstance(v, str) else f"    {k}: {v}"
            for k, v in chain.items()) + "\n"
    yaml = ("ports:\n  in: pcap:in.pcap\n  out: {port: pcap:out.pcap, precision: ns}\n"
            + ("  exp: {port: pcap:exp.pcap, precision: ns}\n" if expired_out else "")
            + "elements:\n  rw:\n    type: rewrite\n" + text + "\n" + extra
            + "links:\n" + "".join(f"  - {ln}\n" for ln in links))
    r = run_pipeline(tmp_path, yaml)
    out = [f for _, f in read_pcap(tmp_path / "out.pcap")]
    if out and check_csum:
        assert tshark_bad(tmp_path / "out.pcap") == []
    return r, out


def is_frag(p):
    return IP in p and (p[IP].flags.MF or p[IP].frag)


def expect(frames, change, drop=lambda p: False):
    """The frames scapy makes after change(p) (in place), skipping those
    drop(p) says are dropped."""
    out = []
    frag_done = False
    for p in frames:
        if drop(p):
            continue
        if is_frag(p):
            if not frag_done:
                out.extend(frag_expect(change))
                frag_done = True
            continue
        q = p.copy()
        change(q)
        out.append(fixed(q))
    return out


def expired(p):
    return (IP in p and p[IP].ttl <= 1) or (IPv6 in p and p[IPv6].hlim <= 1)


def set_field(layer, **kw):
    def change(p):
        if layer in p:
            for k, v in kw.items():
                setattr(p[layer], k, v)
    return change


def ports(sport=None, dport=None):
    def change(p):
        for layer in (TCP, UDP):
            if layer in p:
                if sport is not None:
                    p[layer].sport = sport
                if dport is not None:
                    p[layer].dport = dport
    return change


def map_prefix(layer, field, frm, to, plen):
    import ipaddress

    def change(p):
        if layer in p:
            a = ipaddress.ip_address(getattr(p[layer], field))
            n = ipaddress.ip_network(frm)
            if a in n:
                host = int(a) & ((1 << (a.max_prefixlen - plen)) - 1)
                setattr(p[layer], field, str(ipaddress.ip_address(
                    int(ipaddress.ip_network(to).network_address) | host)))
    return change


def tos(dscp=None, ecn=None):
    def change(p):
        for layer, f in ((IP, "tos"), (IPv6, "tc")):
            if layer in p:
                v = getattr(p[layer], f)
                if dscp is not None:
                    v = (v & 0x03) | (dscp << 2)
                if ecn is not None:
                    v = (v & 0xFC) | ecn
                setattr(p[layer], f, v)
    return change


def ttl(p):
    if IP in p:
        p[IP].ttl -= 1
    elif IPv6 in p:
        p[IPv6].hlim -= 1


CASES = {
    "eth_src": ({"eth_src": "02:00:00:00:00:aa"}, set_field(Ether, src="02:00:00:00:00:aa")),
    "eth_dst": ({"eth_dst": "02:00:00:00:00:bb"}, set_field(Ether, dst="02:00:00:00:00:bb")),
    "ipv4_src": ({"ipv4_src": "198.18.100.1"}, set_field(IP, src="198.18.100.1")),
    "ipv4_dst_map": ({"ipv4_dst": "198.19.0.0/24 -> 198.18.200.0/24"},
                     map_prefix(IP, "dst", "198.19.0.0/24", "198.18.200.0/24", 24)),
    "ipv6_src": ({"ipv6_src": "2001:2::99"}, set_field(IPv6, src="2001:2::99")),
    "ipv6_dst_map": ({"ipv6_dst": "2001:2:0:1::/64 -> 2001:2:0:ff::/64"},
                     map_prefix(IPv6, "dst", "2001:2:0:1::/64", "2001:2:0:ff::/64", 64)),
    "sport": ({"sport": 33333}, ports(sport=33333)),
    "dport": ({"dport": 8080}, ports(dport=8080)),
    "dscp": ({"dscp": 46}, tos(dscp=46)),
    "ecn": ({"ecn": 3}, tos(ecn=3)),
    "dscp_ecn": ({"dscp": 10, "ecn": 1}, tos(dscp=10, ecn=1)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_param(tmp_path, case):
    params, change = CASES[case]
    frames = inputs()
    r, out = run_rewrite(tmp_path, params, frames)
    assert out == expect(frames, change)
    n = len(frames)
    assert r.stats["elements"]["rw"] == {"in": n, "out": {"out": n}, "drops": {}}


def test_ttl_dec_drops_expired(tmp_path):
    frames = inputs()
    r, out = run_rewrite(tmp_path, {"ttl_dec": True}, frames)
    assert out == expect(frames, ttl, drop=expired)
    assert r.stats["elements"]["rw"]["drops"] == {"ttl-expired": 2}
    assert "rewritten=13, l2_only=1, expired=2" in r.out


def test_ttl_dec_expired_to_output_unchanged(tmp_path):
    frames = inputs()
    r, out = run_rewrite(tmp_path, {"ttl_dec": True, "expired": "output",
                                    "eth_dst": "02:00:00:00:00:cc"}, frames, expired_out=True)

    def change(p):
        ttl(p)
        p[Ether].dst = "02:00:00:00:00:cc"
    assert out == expect(frames, change, drop=expired)
    exp = [f for _, f in read_pcap(tmp_path / "exp.pcap")]
    assert exp == [bytes(p) for p in frames if expired(p)]
    assert r.stats["elements"]["rw"]["out"] == {"out": 13, "expired": 2}


def test_everything_at_once(tmp_path):
    frames = inputs()
    params = {"eth_src": "02:00:00:00:00:aa", "ttl_dec": True, "ipv4_src": "198.18.100.1",
              "ipv4_dst": "198.19.0.0/16 -> 198.18.0.0/16", "ipv6_src": "2001:2::99",
              "ipv6_dst": "2001:2::/48 -> 2001:2:1::/48", "sport": 1, "dport": 2,
              "dscp": 63, "ecn": 0}
    changes = [set_field(Ether, src="02:00:00:00:00:aa"), ttl, set_field(IP, src="198.18.100.1"),
               map_prefix(IP, "dst", "198.19.0.0/16", "198.18.0.0/16", 16),
               set_field(IPv6, src="2001:2::99"),
               map_prefix(IPv6, "dst", "2001:2::/48", "2001:2:1::/48", 48),
               ports(1, 2), tos(63, 0)]

    def change(p):
        for c in changes:
            c(p)
    r, out = run_rewrite(tmp_path, params, frames)
    assert out == expect(frames, change, drop=expired)


# --- VLAN ---------------------------------------------------------------------------

def tags(b):
    n, off = 0, 12
    while struct.unpack("!H", b[off:off + 2])[0] in (0x8100, 0x88A8):
        n, off = n + 1, off + 4
    return n


def test_vlan_push(tmp_path):
    frames = inputs()
    r, out = run_rewrite(tmp_path, {"vlan": "push 100", "pcp": 5}, frames, check_csum=False)
    tci = struct.pack("!HH", 0x8100, (5 << 13) | 100)
    assert out == [bytes(p)[:12] + tci + bytes(p)[12:] for p in frames if tags(bytes(p)) < 2]
    assert r.stats["elements"]["rw"]["drops"] == {"malformed:vlan": 1}    # the QinQ frame


def test_vlan_pop(tmp_path):
    frames = inputs()
    r, out = run_rewrite(tmp_path, {"vlan": "pop"}, frames, check_csum=False)
    assert out == [bytes(p)[:12] + bytes(p)[16:] if tags(bytes(p)) else bytes(p)
                   for p in frames]


def test_vlan_set_and_pcp(tmp_path):
    frames = inputs()
    r, out = run_rewrite(tmp_path, {"vlan": "set 300"}, frames, check_csum=False)

    def setvid(b, vid=None, pcp=None):
        if not tags(b):
            return b
        t = struct.unpack("!H", b[14:16])[0]
        if vid is not None:
            t = (t & 0xF000) | vid
        if pcp is not None:
            t = (t & 0x1FFF) | (pcp << 13)
        return b[:14] + struct.pack("!H", t) + b[16:]
    assert out == [setvid(bytes(p), vid=300) for p in frames]
    r, out = run_rewrite(subdir(tmp_path), {"pcp": 7}, frames, check_csum=False)
    assert out == [setvid(bytes(p), pcp=7) for p in frames]


def test_offsets_follow_a_push_and_a_pop(tmp_path):
    """A second rewrite after the VLAN move must find the IP/L4 headers
    where they now are (the descriptor's offsets were updated)."""
    frames = [p for p in inputs() if tags(bytes(p)) == 0 and not is_frag(p)]
    for op, fix in (("push 7", lambda b: b[:12] + struct.pack("!HH", 0x8100, 7) + b[12:]),
                    ("pop", lambda b: b)):
        d = subdir(tmp_path)
        src = frames if op.startswith("push") else [
            Ether(bytes(p)[:12] + struct.pack("!HH", 0x8100, 9) + bytes(p)[12:])
            for p in frames]
        r, out = run_rewrite(d, {"vlan": op}, src, chain={
            "ipv4_dst": "198.18.77.77", "ipv6_dst": "2001:2::77", "dport": 99, "ttl_dec": True})

        def change(p):
            set_field(IP, dst="198.18.77.77")(p)
            set_field(IPv6, dst="2001:2::77")(p)
            ports(dport=99)(p)
            ttl(p)
        assert out == [fix(b) for b in expect(frames, change, drop=expired)]


def test_vlan_push_oversize(tmp_path):
    frames = [ETH / IP(src="198.18.0.1", dst="198.19.0.1") / UDP() / Raw(b"x" * (n - 42))
              for n in (2044, 2045)]
    r, out = run_rewrite(tmp_path, {"vlan": "push 1"}, frames, check_csum=False)
    assert [len(f) for f in out] == [2048]
    assert r.stats["elements"]["rw"]["drops"] == {"oversize": 1}


def test_bad_params_refused(tmp_path):
    from helpers import BAD_CONFIG
    for params, msg in [({}, "nothing to rewrite"),
                        ({"vlan": "swap 3"}, "expected 'pop', 'push ID' or 'set ID'"),
                        ({"ipv4_dst": "198.18.0.0/16 -> 198.19.0.0/24"}, "differ in length"),
                        ({"ipv4_src": "2001:2::1"}, "expected an IPv4 address"),
                        ({"expired": "output", "eth_dst": "02:00:00:00:00:01"},
                         "expired: output needs ttl_dec")]:
        text = "\n".join(f"    {k}: {v!r}" for k, v in params.items())
        y = ("ports:\n  src: 'gen:count=1'\nelements:\n  rw:\n    type: rewrite\n" + text
             + "\nlinks:\n  - src -> rw -> sink\n")
        r = run_pipeline(tmp_path, y, expect=BAD_CONFIG)
        assert msg in r.err, (params, r.err)


# --- fuzz ---------------------------------------------------------------------------

def mutated(data, seed):
    rnd = random.Random(seed)
    b = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        b[rnd.randrange(len(b))] = rnd.randrange(256)
    return bytes(b[:rnd.randint(0, len(b))]) if rnd.random() < 0.3 else bytes(b)


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(st.binary(min_size=1, max_size=120), max_size=30),
       seeds=st.lists(st.integers(0, 2**32), min_size=1, max_size=60),
       op=st.sampled_from(["push 5", "pop", "set 9"]))
def test_fuzz_malformed_frames(tmp_path, frames, seeds, op):
    base = [bytes(p) for p in inputs()]
    fz = [bytes(f) for f in frames] + [mutated(base[s % len(base)], s) for s in seeds]
    fz = [f for f in fz if f]
    r, out = run_rewrite(subdir(tmp_path), {
        "vlan": op, "ttl_dec": True, "ipv4_dst": "198.19.0.0/16 -> 198.18.0.0/16",
        "ipv6_src": "2001:2::1", "sport": 5, "dscp": 1}, fz, check_csum=False)
    e = r.stats["elements"]["rw"]
    assert e["in"] == len(fz) and len(out) == e["out"].get("out", 0)
