"""balance: flows spread over N outputs by a flow hash. Every frame's
output is checked against a plain-Python reference (ref_output: the same
tuple, murmur3 rounds and (hash * N) >> 32), and the properties that make
it a load balancer are checked on their own: a flow's packets stay
together, flows spread evenly, reversed flows meet with `symmetric`, the
fragments of a datagram stay together."""
import json
import random
import shutil
import struct
from collections import Counter

import pytest
from helpers import (BAD_CONFIG, REPO, assert_accounting, error_lines, raw_records, run_cli,
                     run_pipeline, write_pcap_bytes)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.sctp import SCTP
from scapy.packet import Raw

T0 = 1_700_000_000_000_000_000
M32 = 0xFFFFFFFF
A, B = "02:00:00:00:00:01", "02:00:00:00:00:02"


# --- the reference ------------------------------------------------------------------------

def _rotl(x, r):
    return ((x << r) | (x >> (32 - r))) & M32


def _mix(h, k):
    k = (k * 0xCC9E2D51) & M32
    k = (_rotl(k, 15) * 0x1B873593) & M32
    h = _rotl(h ^ k, 13)
    return (h * 5 + 0xE6546B64) & M32


def _fmix(h):
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    return h ^ (h >> 16)


def _words(b):
    return struct.unpack(f">{len(b) // 4}I", b)


def flow_tuple(f):
    """(a, b, ports a, ports b, proto) of a well-formed frame's flow, or
    ('mac', dst, src) for non-IP."""
    off = 12
    et = int.from_bytes(f[12:14], "big")
    while et in (0x8100, 0x88A8, 0x9100):
        off += 4
        et = int.from_bytes(f[off:off + 2], "big")
    ip = off + 2
    if et == 0x0800:
        ihl = (f[ip] & 15) * 4
        proto, frag = f[ip + 9], int.from_bytes(f[ip + 6:ip + 8], "big") & 0x3FFF
        a, b, l4 = f[ip + 12:ip + 16], f[ip + 16:ip + 20], ip + ihl
    elif et == 0x86DD:
        a, b, nh, o, frag = f[ip + 8:ip + 24], f[ip + 24:ip + 40], f[ip + 6], ip + 40, 0
        while nh in (0, 43, 60, 44):
            if nh == 44:
                frag = 1
                nh = f[o]
                break
            nh, o = f[o], o + (f[o + 1] + 1) * 8
        proto, l4 = nh, o
    else:
        return ("mac", f[0:6], f[6:12])
    pa = pb = 0
    if not frag and proto in (6, 17, 132):
        pa, pb = int.from_bytes(f[l4:l4 + 2], "big"), int.from_bytes(f[l4 + 2:l4 + 4], "big")
    return (a, b, pa, pb, proto)


def ref_hash(f, seed=0, symmetric=False):
    t = flow_tuple(f)
    h = seed
    if t[0] == "mac":
        _, a, b = t
        if symmetric and a > b:
            a, b = b, a
        for w in _words(a + b):
            h = _mix(h, w)
        return _fmix(h ^ 12)
    a, b, pa, pb, proto = t
    if symmetric and (a, pa) > (b, pb):
        a, b, pa, pb = b, a, pb, pa
    for w in _words(a) + _words(b) + ((pa << 16) | pb, proto):
        h = _mix(h, w)
    return _fmix(h ^ (2 * len(a) + 5))


def ref_output(f, n, seed=0, symmetric=False):
    return (ref_hash(f, seed, symmetric) * n) >> 32


# --- running ------------------------------------------------------------------------------

def run_balance(tmp_path, frames, n, params="", batch=256):
    """frames through `balance` with n outputs; returns (run, frames per output)."""
    write_pcap_bytes(tmp_path / "in.pcap", [(T0 + i, f) for i, f in enumerate(frames)],
                     nsec=True)
    outs = "\n".join(f"  o{k}: pcap:o{k}.pcap" for k in range(n))
    links = "\n".join(f"  - lb [{k}] -> o{k}" for k in range(1, n))
    r = run_pipeline(tmp_path, f"""
settings: {{batch: {batch}}}
ports:
  in: pcap:in.pcap
{outs}
elements:
  lb: {{type: balance, outputs: {n}{params}}}
links:
  - in -> lb -> o0
{links}
""")
    got = [[f for f, _ in raw_records(tmp_path / f"o{k}.pcap")] for k in range(n)]
    return r, got


def check_against_reference(tmp_path, frames, n, params="", seed=0, symmetric=False):
    r, got = run_balance(tmp_path, frames, n, params)
    expected = [[] for _ in range(n)]
    for f in frames:
        expected[ref_output(f, n, seed, symmetric)].append(f)
    assert got == expected
    return r, got


def udp(src, dst, sport, dport, payload=b"x"):
    return bytes(Ether(src=A, dst=B) / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport)
                 / Raw(payload))


def mixed_flows(rng, count):
    """(flow key, frame) of many flows of every kind the hash tells apart."""
    out = []
    for i in range(count):
        s4, d4 = f"198.18.{rng.randrange(256)}.{rng.randrange(256)}", f"198.19.0.{i % 256}"
        s6, d6 = f"2001:2::{rng.randrange(1 << 16):x}", f"2001:2:0:1::{i:x}"
        sp, dp = rng.randrange(1024, 65536), rng.choice([53, 80, 443, 4789])
        kind = i % 8
        if kind == 0:
            p = Ether(src=A, dst=B) / IP(src=s4, dst=d4) / UDP(sport=sp, dport=dp)
        elif kind == 1:
            p = Ether(src=A, dst=B) / IP(src=s4, dst=d4) / TCP(sport=sp, dport=dp)
        elif kind == 2:
            p = Ether(src=A, dst=B) / IPv6(src=s6, dst=d6) / TCP(sport=sp, dport=dp)
        elif kind == 3:
            p = Ether(src=A, dst=B) / IPv6(src=s6, dst=d6) / IPv6ExtHdrHopByHop() / UDP(
                sport=sp, dport=dp)
        elif kind == 4:
            p = Ether(src=A, dst=B) / Dot1Q(vlan=7) / IP(src=s4, dst=d4) / ICMP(id=sp)
        elif kind == 5:
            p = Ether(src=A, dst=B) / IP(src=s4, dst=d4) / SCTP(sport=sp, dport=dp)
        elif kind == 6:
            p = Ether(src=f"02:00:00:00:{i >> 8 & 255:02x}:{i & 255:02x}", dst=B) / ARP()
        else:
            p = Ether(src=A, dst=B) / IP(src=s4, dst=d4, proto=47) / Raw(b"gre!")
        out.append((i, bytes(p)))
    return out


# --- behaviour ------------------------------------------------------------------------------

def test_every_frame_takes_the_reference_output(tmp_path):
    frames = [f for _, f in mixed_flows(random.Random(1), 400)]
    r, got = check_against_reference(tmp_path, frames, 4)
    assert r.stats["elements"]["lb"]["drops"] == {}
    assert all(got)


def test_seed_and_names(tmp_path):
    frames = [f for _, f in mixed_flows(random.Random(2), 200)]
    write_pcap_bytes(tmp_path / "in.pcap", [(T0 + i, f) for i, f in enumerate(frames)])
    run_pipeline(tmp_path, """
        ports: {in: pcap:in.pcap, x: pcap:x.pcap, y: pcap:y.pcap, z: pcap:z.pcap}
        elements: {lb: {type: balance, names: [x, y, z], seed: 12345}}
        links: ["in -> lb -> x", "lb [y] -> y", "lb [z] -> z"]
        """)
    for k, name in enumerate("xyz"):
        got = [f for f, _ in raw_records(tmp_path / f"{name}.pcap")]
        assert got == [f for f in frames if ref_output(f, 3, seed=12345) == k]


def fast_udp4(src, dst, sport, dport, payload):
    """An Ethernet/IPv4/UDP frame assembled by hand (no checksums: balance
    reads none), for tests that need thousands."""
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 0, 0, 64, 17, 0, src, dst)
    return (bytes.fromhex("020000000002020000000001") + b"\x08\x00" + ip
            + struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload)


def test_a_flow_stays_on_one_output_and_flows_spread_evenly(tmp_path):
    rng = random.Random(3)
    flows = [(bytes([198, 18, i >> 8, i & 255]), bytes([198, 19, rng.randrange(256), 1]),
              rng.randrange(1024, 65536), 443) for i in range(2000)]
    frames = [fast_udp4(*fl, payload=bytes([k])) for k in range(3) for fl in flows]
    r, got = run_balance(tmp_path, frames, 4, batch=64)
    assert got == [[f for f in frames if ref_output(f, 4) == k] for k in range(4)]
    where = {}
    for k, fs in enumerate(got):
        for f in fs:
            where.setdefault(f[26:38], set()).add(k)      # addresses and ports
    assert len(where) == len(flows) and all(len(s) == 1 for s in where.values())
    per_output = Counter(next(iter(s)) for s in where.values())
    expected = len(flows) / 4
    chi2 = sum((per_output[k] - expected) ** 2 / expected for k in range(4))
    assert chi2 < 16.3          # 3 degrees of freedom, p = 0.001


def test_ports_and_addresses_each_move_flows(tmp_path):
    """Changing only the source port, or only the address, spreads too."""
    by_port = [udp("198.18.0.1", "198.19.0.1", 1000 + i, 80) for i in range(400)]
    by_addr = [udp(f"198.18.1.{i}", "198.19.0.1", 1000, 80) for i in range(1, 255)]
    for frames in (by_port, by_addr):
        r, got = check_against_reference(tmp_path, frames, 4)
        assert min(len(g) for g in got) > len(frames) / 8


def test_symmetric_puts_both_directions_on_one_output(tmp_path):
    rng = random.Random(4)
    fwd, rev = [], []
    for i in range(300):
        s, d, sp, dp = f"198.18.0.{i % 250 + 1}", f"198.19.{i % 7}.9", 2000 + i, 80 + i % 3
        if i % 3 == 0:
            fwd.append(udp(s, d, sp, dp))
            rev.append(udp(d, s, dp, sp))
        elif i % 3 == 1:
            s6, d6 = f"2001:2::{i:x}", f"2001:2:0:1::{rng.randrange(9):x}"
            fwd.append(bytes(Ether(src=A, dst=B) / IPv6(src=s6, dst=d6) / TCP(sport=sp, dport=dp)))
            rev.append(bytes(Ether(src=B, dst=A) / IPv6(src=d6, dst=s6) / TCP(sport=dp, dport=sp)))
        else:
            m = f"02:00:00:00:01:{i % 256:02x}"
            fwd.append(bytes(Ether(src=m, dst=B) / ARP()))
            rev.append(bytes(Ether(src=B, dst=m) / ARP()))
    frames = fwd + rev
    r, got = check_against_reference(tmp_path, frames, 4, ", symmetric: true", symmetric=True)
    where = {f: k for k, fs in enumerate(got) for f in fs}
    assert all(where[a] == where[b] for a, b in zip(fwd, rev))
    # Without symmetric, reversed flows do part ways.
    r, got = check_against_reference(tmp_path, frames, 4)
    where = {f: k for k, fs in enumerate(got) for f in fs}
    assert sum(where[a] != where[b] for a, b in zip(fwd, rev)) > 100


def test_same_address_pair_symmetric_sorts_by_port(tmp_path):
    a = udp("198.18.0.1", "198.18.0.1", 5000, 53)
    b = udp("198.18.0.1", "198.18.0.1", 53, 5000)
    r, got = check_against_reference(tmp_path, [a, b] * 10, 8, ", symmetric: true",
                                     symmetric=True)
    assert sum(1 for g in got if g) == 1


def test_fragments_of_a_datagram_stay_together(tmp_path):
    """v4 and v6 fragments, the first one (which has the ports) included,
    hash on the 3-tuple: a datagram's fragments all take one output."""
    frames, groups = [], []
    for i in range(40):
        p4 = IP(src=f"198.18.0.{i + 1}", dst="198.19.0.1", id=i) / UDP(sport=i, dport=9) / Raw(
            b"z" * 3000)
        frags4 = [bytes(Ether(src=A, dst=B) / f) for f in fragment(p4, fragsize=1000)]
        payload = bytes(UDP(sport=i, dport=9) / Raw(b"y" * 2400))
        frags6 = []
        for off in range(0, len(payload), 1000):
            hdr = IPv6(src=f"2001:2::{i + 1:x}", dst="2001:2::ff") / IPv6ExtHdrFragment(
                id=i, nh=17, offset=off // 8, m=int(off + 1000 < len(payload)))
            frags6.append(bytes(Ether(src=A, dst=B) / hdr / Raw(payload[off:off + 1000])))
        groups += [frags4, frags6]
        frames += frags4 + frags6
    r, got = check_against_reference(tmp_path, frames, 4)
    where = {f: k for k, fs in enumerate(got) for f in fs}
    for g in groups:
        assert len(g) >= 3 and len({where[f] for f in g}) == 1
    assert sum(1 for g in got if g) > 1


def test_one_output(tmp_path):
    frames = [f for _, f in mixed_flows(random.Random(5), 50)]
    r, got = run_balance(tmp_path, frames, 1)
    assert got == [frames]


def test_by_mark_without_marks_sends_all_to_output_0(tmp_path):
    frames = [f for _, f in mixed_flows(random.Random(6), 50)]
    r, got = run_balance(tmp_path, frames, 3, ", by: mark")
    assert got == [frames, [], []]


@pytest.mark.parametrize("params, message", [
    ("symmetric: true", "give either `outputs: N` or `names: [...]`"),
    ("outputs: 2, names: [a, b]", "give either `outputs: N` or `names: [...]`"),
    ("outputs: 0", "outputs: expected an integer from 1 to 1024"),
    ("names: [a, a]", "output name 'a' given twice"),
    ("names: []", "expected a list of 1 to 1024 output names"),
    ("outputs: 2, by: hash", "by: expected one of 'flow', 'mark'"),
])
def test_bad_params_are_config_errors(tmp_path, params, message):
    r = run_pipeline(tmp_path, f"""
        ports: {{src: "gen:count=1"}}
        elements: {{lb: {{type: balance, {params}}}}}
        links: [src -> lb -> drop]
        """, expect=BAD_CONFIG)
    assert any(message in ln for ln in error_lines(r)), r.err


def test_each_kind_of_malformed_frame_is_dropped_with_its_reason(tmp_path):
    good = udp("198.18.0.1", "198.19.0.1", 1, 2)
    tcp = bytes(Ether(src=A, dst=B) / IP(src="198.18.0.1", dst="198.19.0.1") / TCP())
    bad_tcp = tcp[:14 + 20 + 12] + b"\x20" + tcp[14 + 20 + 13:]     # data offset 8 bytes
    frames = [good[:10], good[:30], bad_tcp, good[:14] + b"\x60" + good[15:],
              bytes(Ether(src=A, dst=B, type=0x8100)) + b"\x00",
              bytes(Ether(src=A, dst=B) / ARP())[:30], good]
    r, got = run_balance(tmp_path, frames, 2)
    assert r.stats["elements"]["lb"]["drops"] == {
        "malformed:eth": 1, "malformed:ipv4": 2, "malformed:l4": 1, "malformed:vlan": 1,
        "malformed:arp": 1}
    assert [f for g in got for f in g] == [good]


# --- malformed frames -------------------------------------------------------------------------

def mutate(rng, f):
    f = bytearray(f)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(3)
        if op == 0 and f:
            del f[rng.randrange(len(f)):]
        elif op == 1 and f:
            f[rng.randrange(len(f))] = rng.randrange(256)
        else:
            f += bytes(rng.randrange(256) for _ in range(rng.randrange(8)))
    return bytes(f)


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32), sym=st.booleans(),
       junk=st.lists(st.binary(min_size=0, max_size=120), max_size=30))
def test_malformed_frames_are_dropped_with_a_reason(tmp_path, seed, sym, junk):
    """Truncated, bit-flipped and random frames: none crashes, each is
    either sent or dropped as malformed:*, and rx == tx + drops."""
    rng = random.Random(seed)
    good = [f for _, f in mixed_flows(rng, 60)]
    frames = [mutate(rng, f) for f in good] + [j for j in junk if j] + good
    r, got = run_balance(tmp_path, frames, 4, ", symmetric: true" if sym else "")
    lb = r.stats["elements"]["lb"]
    assert lb["in"] == len(frames)
    assert sum(lb["out"].values()) + sum(lb["drops"].values()) == len(frames)
    assert all(k.startswith("malformed:") for k in lb["drops"])
    sent = [f for g in got for f in g]
    assert all(f in sent for f in good)
    # What was sent went where the reference says, whatever the junk.
    for k, g in enumerate(got):
        for f in g:
            if f in good:
                assert ref_output(f, 4, symmetric=sym) == k


# --- the example pipeline -------------------------------------------------------------------------

def test_loadbalancer_example_pipeline(tmp_path):
    (tmp_path / "pipelines").mkdir()
    for f in ["loadbalancer.yaml", "loadbalancer.pcap"]:
        shutil.copy(REPO / "pipelines" / f, tmp_path / "pipelines" / f)
    r = run_cli("run", "pipelines/loadbalancer.yaml", "--stats-json", tmp_path / "s.json",
                cwd=tmp_path)
    assert r.code == 0, str(r)
    stats = json.loads((tmp_path / "s.json").read_text())
    assert_accounting(stats, {"lb": "balance"})
    frames = [f for f, _ in raw_records(tmp_path / "pipelines/loadbalancer.pcap")]
    for k in range(4):
        got = [f for f, _ in raw_records(tmp_path / f"loadbalancer-{k}.pcap")]
        assert got == [f for f in frames if ref_output(f, 4, symmetric=True) == k]
        assert got
