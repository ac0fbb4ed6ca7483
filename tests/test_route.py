"""route: the LPM tables against a plain-Python reference (tests/reference/
lpm_ref.py) on random and nested prefixes, v4 and v6; 100,000 routes loaded
from a file (time printed); scapy-built packets through a pipeline, each
output's pcap compared with what the reference says (next-hop MACs written,
the rest untouched); no-route / no-neighbor / not-ip drops; config errors;
random and truncated frames (hypothesis) with exact accounting."""
import array
import functools
import ipaddress
import random
import time
from pathlib import Path

import pytest
from helpers import BAD_CONFIG, REPO, error_lines, read_pcap, run_pipeline, write_pcap_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference.lpm_ref import LpmRef
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from nmroute.errors import ParamError
from nmroute.fastpath.elements.route import Route
from nmroute.fastpath.lpm import Lpm4Table, Lpm6Table

T0 = 1_700_000_000_000_000_000
BENCH_ROUTES = REPO / "nmroute" / "benchcases" / "route_100k.routes"


# --- the tables against the reference --------------------------------------------

def random_prefixes(rng, version, n):
    """n prefixes, many nested in or overlapping each other: bases come from a
    few random 'regions', lengths spread over every length, /0 and the host
    length included."""
    bits = 32 if version == 4 else 128
    regions = [rng.getrandbits(bits) for _ in range(4)]
    out = [(0, 0), (regions[0], bits)]
    for _ in range(n):
        plen = rng.choice([rng.randint(0, bits), bits, bits - 8, 24 if version == 4 else 64,
                           rng.randint(bits - 12, bits)])
        base = rng.choice(regions) ^ (rng.getrandbits(12) << max(0, bits - plen - 4) if
                                      rng.random() < 0.5 else 0)
        base &= ~((1 << (bits - plen)) - 1) & ((1 << bits) - 1)
        out.append((base, plen))
    return out


def random_addresses(rng, version, prefixes, n):
    """Addresses inside the prefixes (first, last, random) and anywhere."""
    bits = 32 if version == 4 else 128
    out = []
    for _ in range(n):
        base, plen = rng.choice(prefixes)
        span = (1 << (bits - plen)) - 1
        out.append(rng.choice([base, base + span, base + (rng.getrandbits(bits) & span),
                               rng.getrandbits(bits), (base + span + 1) % (1 << bits),
                               (base - 1) % (1 << bits)]))
    return out


def build(version, prefixes):
    t = Lpm4Table() if version == 4 else Lpm6Table()
    nhs = array.array("I", range(len(prefixes)))
    plens = bytes(p for _, p in prefixes)
    if version == 4:
        t.build(array.array("I", [b for b, _ in prefixes]), plens, nhs)
    else:
        t.build(array.array("Q", [b >> 64 for b, _ in prefixes]),
                array.array("Q", [b & (2**64 - 1) for b, _ in prefixes]), plens, nhs)
    ref = LpmRef(version)
    cls = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
    for i, (b, p) in enumerate(prefixes):
        ref.add(str(cls((b, p))), i)
    return t, ref


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lpm_matches_the_reference(version, seed):
    rng = random.Random(seed * 10 + version)
    prefixes = random_prefixes(rng, version, 300)
    t, ref = build(version, prefixes)
    for a in random_addresses(rng, version, prefixes, 3000):
        assert t.lookup(a) == ref.lookup(a), (ipaddress.ip_address(a) if version == 4
                                              else ipaddress.IPv6Address(a))


@pytest.mark.parametrize("version", [4, 6])
def test_lpm_without_a_default_route_misses(version):
    bits = 32 if version == 4 else 128
    net = ipaddress.ip_network("198.18.0.0/15" if version == 4 else "2001:2::/48")
    host = int(net.network_address) + 5
    t, ref = build(version, [(int(net.network_address), net.prefixlen), (host, bits)])
    assert t.lookup(host) == 1 and t.lookup(host + 1) == 0
    assert t.lookup(int(net.network_address) - 1) is None
    assert t.lookup(int(net.broadcast_address) + 1) is None


def test_lpm4_nested_within_one_24():
    """/24 < /25 < /30 < /32 in one second-level group, inserted longest
    first: the order given must not matter."""
    base = int(ipaddress.IPv4Address("198.18.7.0"))
    prefixes = [(base + 4, 32), (base + 4, 30), (base, 25), (base, 24), (0, 0)]
    t, ref = build(4, prefixes)
    for off in range(256):
        assert t.lookup(base + off) == ref.lookup(base + off)
    assert [t.lookup(base + o) for o in (4, 5, 8, 200)] == [0, 1, 2, 3]
    assert t.lookup("8.8.8.8") == 4
    assert t.groups == 1


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)), max_size=12),
       st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20))
def test_lpm4_hypothesis(routes, addrs):
    prefixes = [(b & ~((1 << (32 - p)) - 1) & 0xFFFFFFFF, p) for b, p in routes]
    # Addresses near the prefixes too.
    addrs = addrs + [b for b, _ in prefixes] + [(b - 1) % 2**32 for b, _ in prefixes]
    t, ref = build(4, prefixes)
    for a in addrs:
        assert t.lookup(a) == ref.lookup(a)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)), max_size=12),
       st.lists(st.integers(0, 2**128 - 1), min_size=1, max_size=20))
def test_lpm6_hypothesis(routes, addrs):
    prefixes = [(b & ~((1 << (128 - p)) - 1) & (2**128 - 1), p) for b, p in routes]
    addrs = addrs + [b for b, _ in prefixes] + [(b + 1) % 2**128 for b, _ in prefixes]
    t, ref = build(6, prefixes)
    for a in addrs:
        assert t.lookup(a) == ref.lookup(a)


# --- 100,000 routes ----------------------------------------------------------------

def dotted(a):
    return f"{a >> 24}.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255}"


@functools.lru_cache(maxsize=1)
def make_routes(n=100_000, seed=7):
    """The bench case's routes: every /24 of 198.18.0.0/15, /28s and /32s
    within it (second-level groups), the rest spread over 100.64.0.0/10,
    through four next hops on two outputs."""
    rng = random.Random(seed)
    hops = [("198.18.0.1", "a"), ("198.18.0.2", "a"), ("198.19.0.1", "b"),
            ("198.19.0.2", "b")]
    seen, lines = set(), []

    def add(net, plen):
        if (net, plen) not in seen and len(lines) < n:
            seen.add((net, plen))
            via, out = rng.choice(hops)
            lines.append(f"{dotted(net)}/{plen} via {via} output {out}")

    base = 198 << 24 | 18 << 16
    for i in range(512):
        add(base + i * 256, 24)
    for _ in range(20_000):
        add(base + (rng.getrandbits(17) & ~15), 28)
    for _ in range(10_000):
        add(base + rng.getrandbits(17), 32)
    cgn = 100 << 24 | 64 << 16
    while len(lines) < n:
        plen = rng.choice([20, 22, 24, 24, 24, 26, 29])
        add(cgn + (rng.getrandbits(22) & ~((1 << (32 - plen)) - 1)), plen)
    return "# generated by tests/test_route.py make_routes()\n" + "\n".join(lines) + "\n"


def test_bench_routes_file_is_the_generated_one():
    assert BENCH_ROUTES.read_text() == make_routes()


def test_100k_routes_load_fast(tmp_path, capsys):
    path = tmp_path / "r.routes"
    path.write_text(make_routes())
    spec = {p.name: p for p in Route.PARAMS}
    t0 = time.perf_counter()
    params = {"routes_file": spec["routes_file"].convert(str(path)),
              "macs": {"a": b"\x02\0\0\0\0\x0a", "b": b"\x02\0\0\0\0\x0b"},
              "neighbors": None, "routes": None, "table": None, "max_neighbors": 4096}
    r = Route("r", params)
    seconds = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\n100,000 IPv4 routes parsed and loaded in {seconds * 1000:.0f} ms")
    assert seconds < 5
    assert sorted(r.output_names) == ["a", "b"]
    ref = LpmRef(4)
    rng = random.Random(3)
    lines = path.read_text().splitlines()[1:]
    for ln in lines:
        w = ln.split()
        ref.add(w[0], w[4])
    for _ in range(2000):
        a = str(ipaddress.IPv4Address(rng.choice([int(ipaddress.IPv4Address("198.18.0.0")),
                                                  int(ipaddress.IPv4Address("100.64.0.0"))])
                                      + rng.getrandbits(22 if rng.random() < .5 else 17)))
        assert r.lookup(a) == ref.lookup(a), a


# --- packets through a pipeline ----------------------------------------------------

MAC_A, MAC_B = "02:00:00:00:aa:01", "02:00:00:00:bb:01"
NEIGH = {"198.18.0.2": "02:00:00:00:00:02", "198.19.0.1": "02:00:00:00:01:01",
         "198.19.0.77": "02:00:00:00:01:77", "2001:2::2": "02:00:00:00:06:02",
         "2001:2:0:1::1": "02:00:00:00:06:11", "2001:2:0:2::9": "02:00:00:00:06:29"}
ROUTES = [  # prefix, via, output
    ("198.18.0.0/24", None, "a"),
    ("198.19.0.0/16", "198.19.0.1", "b"),
    ("198.19.0.64/26", None, "a"),        # nested, directly connected
    ("198.19.0.99/32", "198.18.0.2", "a"),
    ("2001:2::/64", None, "a"),
    ("2001:2::/48", "2001:2:0:1::1", "b"),
    ("2001:2:0:2::/64", "2001:2::99", "a"),   # next hop without a neighbour entry
]


def route_yaml(routes=ROUTES, extra=""):
    lines = []
    for prefix, via, out in routes:
        v = f", via: '{via}'" if via else ""
        lines.append(f"              - {{prefix: '{prefix}'{v}, output: {out}}}")
    neigh = "\n".join(f"              - {{ip: '{ip}', mac: '{m}'}}" for ip, m in NEIGH.items())
    return f"""
        ports:
          in: pcap:in.pcap
          a: {{port: pcap:a.pcap, precision: ns}}
          b: {{port: pcap:b.pcap, precision: ns}}
        elements:
          r:
            type: route
            routes:
{chr(10).join(lines)}
            macs: {{a: '{MAC_A}', b: '{MAC_B}'}}
            neighbors:
{neigh}
{extra}
        links:
          - in -> r -> a
          - r [b] -> b
        """


def expected(frame: bytes):
    """(output, rewritten frame) or ('drop', reason), from the reference."""
    p = Ether(frame)
    ip = p.getlayer(IP) or p.getlayer(IPv6)
    if ip is None:
        return ("drop", "not-ip")
    version = 4 if IP in p else 6
    ref = LpmRef(version)
    for prefix, via, out in ROUTES:
        if ipaddress.ip_network(prefix).version == version:
            ref.add(prefix, (via, out))
    hit = ref.lookup(ip.dst)
    if hit is None:
        return ("drop", "no-route")
    via, out = hit
    mac = NEIGH.get(str(ipaddress.ip_address(via or ip.dst)))
    if mac is None:
        return ("drop", "no-neighbor")
    src = MAC_A if out == "a" else MAC_B
    b = bytes.fromhex(mac.replace(":", "")) + bytes.fromhex(src.replace(":", "")) + frame[12:]
    return (out, b)


def packets():
    e = Ether(src="02:00:00:00:ee:01", dst="02:00:00:00:ee:02")
    out = []
    v4 = ["198.18.0.2", "198.18.0.3", "198.19.0.5", "198.19.0.77", "198.19.0.70",
          "198.19.0.99", "198.19.255.255", "203.0.113.1", "198.18.1.1"]
    v6 = ["2001:2::2", "2001:2::3", "2001:2:0:1::1", "2001:2:0:5::5", "2001:2:0:2::1",
          "2001:3::1"]
    for i, d in enumerate(v4):
        out.append(e / IP(src="198.18.0.10", dst=d, ttl=9) / UDP(sport=i, dport=53)
                   / Raw(b"x" * i))
    for i, d in enumerate(v6):
        out.append(e / IPv6(src="2001:2::10", dst=d) / TCP(sport=i, dport=80))
    out.append(e / Dot1Q(vlan=5) / IP(src="198.18.0.10", dst="198.19.0.5") / UDP())
    out.append(e / ARP(psrc="198.18.0.2", pdst="198.18.0.1"))
    out.append(Ether(src="02:00:00:00:ee:01", dst="02:00:00:00:ee:02", type=0x88B5)
               / Raw(b"\0" * 46))
    return [bytes(p) for p in out]


def run_frames(tmp_path, frames, text=None):
    write_pcap_bytes(tmp_path / "in.pcap", [(T0 + i, f) for i, f in enumerate(frames)],
                     nsec=True)
    r = run_pipeline(tmp_path, text or route_yaml())
    outs = {o: [f for _, f in read_pcap(tmp_path / f"{o}.pcap")] for o in ("a", "b")}
    return r, outs


def test_packets_routed_and_rewritten_as_the_reference_says(tmp_path):
    frames = packets()
    r, outs = run_frames(tmp_path, frames)
    want = {"a": [], "b": []}
    drops = {}
    for f in frames:
        o, v = expected(f)
        if o == "drop":
            drops[v] = drops.get(v, 0) + 1
        else:
            want[o].append(v)
    assert outs == want
    assert r.stats["elements"]["r"]["drops"] == drops
    assert drops == {"no-route": 3, "no-neighbor": 4, "not-ip": 2}
    assert len(want["a"]) >= 4 and len(want["b"]) >= 3


def test_next_hop_mac_rewrite_exactly(tmp_path):
    f = bytes(Ether(src="02:00:00:00:ee:01", dst="02:00:00:00:ee:02")
              / IP(src="198.18.0.10", dst="198.19.3.4", ttl=9) / UDP(sport=1, dport=2))
    r, outs = run_frames(tmp_path, [f])
    assert outs["a"] == []
    (g,) = outs["b"]
    p = Ether(g)
    assert p.dst == NEIGH["198.19.0.1"] and p.src == MAC_B
    assert g[12:] == f[12:]              # TTL and everything else untouched
    assert p[IP].ttl == 9


def test_no_route_drops_everything(tmp_path):
    frames = [bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
              / IP(src="198.18.0.1", dst=f"192.0.2.{i}") / UDP())
              for i in range(1, 40)]
    r, outs = run_frames(tmp_path, frames)
    assert outs == {"a": [], "b": []}
    assert r.stats["elements"]["r"]["drops"] == {"no-route": 39}


def test_routes_file_with_the_same_result(tmp_path):
    lines = [f"{p}{' via ' + v if v else ''} output {o}  # {i}" for i, (p, v, o) in
             enumerate(ROUTES)]
    (tmp_path / "t.routes").write_text("# routes\n\n" + "\n".join(lines) + "\n")
    text = route_yaml(routes=[]).replace("routes:\n\n", "routes_file: t.routes\n")
    assert "routes_file" in text
    frames = packets()
    r1, outs1 = run_frames(tmp_path, frames, text)
    r2, outs2 = run_frames(tmp_path, frames)
    assert outs1 == outs2 and outs1["a"]
    assert r1.stats["elements"]["r"] == r2.stats["elements"]["r"]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.one_of(
    st.binary(max_size=80),
    st.sampled_from(packets()).flatmap(
        lambda f: st.integers(0, len(f)).map(lambda n: f[:n])),
    st.sampled_from(packets()).flatmap(
        lambda f: st.tuples(st.integers(14, len(f) - 1), st.integers(0, 255)).map(
            lambda t: f[:t[0]] + bytes([t[1]]) + f[t[0] + 1:]))), min_size=1, max_size=40))
def test_random_and_truncated_frames(tmp_path, frames):
    frames = [f for f in frames if f]
    if not frames:
        return
    # Own addresses on a: unresolved next hops there become requests.
    extra = "            addresses: {a: [198.18.0.1, '2001:2::1']}"
    r, outs = run_frames(tmp_path, frames, route_yaml(extra=extra))
    e = r.stats["elements"]["r"]
    assert e["in"] == len(frames)
    assert sum(e["out"].values()) + sum(e["drops"].values()) == len(frames)
    assert len(outs["a"]) + len(outs["b"]) == sum(e["out"].values())
    reasons = {"no-route", "no-neighbor", "not-ip"} | {
        f"malformed:{k}" for k in ("eth", "vlan", "arp", "ipv4", "ipv6", "l4")}
    assert set(e["drops"]) <= reasons
    for g in outs["a"] + outs["b"]:     # what left was rewritten for a known next hop
        assert g[6:12] in (bytes.fromhex(MAC_A.replace(":", "")),
                           bytes.fromhex(MAC_B.replace(":", "")))


# --- configuration -----------------------------------------------------------------

def test_bad_routes_are_config_errors(tmp_path):
    r = run_pipeline(tmp_path, """
        ports: {src: "gen:count=1", out: sink}
        elements:
          r:
            type: route
            routes:
              - {prefix: 198.18.0.0/24, output: out}
              - {prefix: 198.18.0.1/24, output: out}
            macs: {out: "02:00:00:00:00:01"}
        links: ["src -> r -> out"]
        """, expect=BAD_CONFIG)
    line = error_lines(r)[0]
    assert line.startswith("p.yaml:7:"), line
    assert line.endswith("element 'r' (route): routes[1].prefix: '198.18.0.1/24' has host "
                         "bits set"), line


def test_missing_mac_and_via_family(tmp_path):
    r = run_pipeline(tmp_path, """
        ports: {src: "gen:count=1", out: sink}
        elements:
          r:
            type: route
            routes:
              - {prefix: 198.18.0.0/24, output: out}
              - {prefix: "2001:2::/64", via: 198.18.0.1, output: out}
            macs: {out: "02:00:00:00:00:01"}
          r2:
            type: route
            routes: [{prefix: 198.18.0.0/24, output: x}]
            macs: {y: "02:00:00:00:00:01"}
        links: ["src -> r -> r2 -> out"]
        """, expect=BAD_CONFIG)
    text = "\n".join(error_lines(r))
    assert "routes[1].via: '198.18.0.1' is not of the prefix's IP version" in text
    assert "macs: no MAC for output 'x'" in text
    assert "macs: 'y' is not an output of any route" in text


def test_bad_routes_file_line(tmp_path):
    (tmp_path / "t.routes").write_text("198.18.0.0/24 output a\n198.18.1.0/33 output a\n")
    r = run_pipeline(tmp_path, """
        ports: {src: "gen:count=1", out: sink}
        elements:
          r: {type: route, routes_file: t.routes, macs: {a: "02:00:00:00:00:01"}}
        links: ["src -> r -> out"]
        """, expect=BAD_CONFIG)
    text = "\n".join(error_lines(r))
    assert "t.routes:2: prefix: length must be 0..32" in text


def test_routes_file_kind_rejects_junk(tmp_path):
    spec = {p.name: p for p in Route.PARAMS}["routes_file"]
    (tmp_path / "t.routes").write_text("198.18.0.0/24 via output a\n")
    with pytest.raises(ParamError, match="t.routes:1: expected 'PREFIX"):
        spec.convert(str(tmp_path / "t.routes"))
    assert Path(spec.convert(str(BENCH_ROUTES))).is_absolute()


# --- resolution: unresolved next hops become requests --------------------------------

def test_unresolved_next_hops_become_arp_requests_and_solicitations(tmp_path):
    e = Ether(src="02:00:00:00:ee:01", dst=MAC_A)
    frames = [e / IP(src="198.19.0.5", dst="198.18.0.3") / UDP(),
              e / IP(src="198.19.0.5", dst="198.18.0.3") / UDP(),       # asked lately
              e / IP(src="198.19.0.5", dst="198.19.0.70") / TCP(),
              e / IPv6(src="2001:2:0:1::5", dst="2001:2::3") / UDP(),
              e / IPv6(src="2001:2:0:1::5", dst="2001:2:0:2::1") / UDP(),  # via 2001:2::99
              e / IP(src="198.18.0.5", dst="198.19.0.5") / UDP()]         # resolved
    extra = "            addresses: {a: [198.18.0.1, '2001:2::1'], b: 198.19.0.254}"
    r, outs = run_frames(tmp_path, [bytes(f) for f in frames], route_yaml(extra=extra))
    assert r.stats["elements"]["r"]["drops"] == {"no-neighbor": 1}
    assert "requests=4" in r.out
    reqs = [Ether(f) for f in outs["a"]]
    assert len(reqs) == 4 and len(outs["b"]) == 1
    arps = [(p.dst, p.src, p[ARP].op, p[ARP].hwsrc, p[ARP].psrc, p[ARP].pdst, len(bytes(p)))
            for p in reqs if ARP in p]
    assert arps == [("ff:ff:ff:ff:ff:ff", MAC_A, 1, MAC_A, "198.18.0.1", t, 60)
                    for t in ("198.18.0.3", "198.19.0.70")]
    nss = [p for p in reqs if ICMPv6ND_NS in p]
    assert [p[ICMPv6ND_NS].tgt for p in nss] == ["2001:2::3", "2001:2::99"]
    for p, grp, mac in zip(nss, ("ff02::1:ff00:3", "ff02::1:ff00:99"),
                           ("33:33:ff:00:00:03", "33:33:ff:00:00:99")):
        assert (p.dst, p.src, p[IPv6].src, p[IPv6].dst, p[IPv6].hlim) == (
            mac, MAC_A, "2001:2::1", grp, 255)
        assert p[ICMPv6NDOptSrcLLAddr].lladdr == MAC_A
        cks = p[ICMPv6ND_NS].cksum
        del p[ICMPv6ND_NS].cksum
        assert Ether(bytes(p))[ICMPv6ND_NS].cksum == cks


def test_request_answer_learned_then_forwarded(tmp_path):
    """Batch 1: a packet to an unknown host becomes an ARP request. Batch 2:
    the host's reply is learned by `neighbor` (same table), and the next
    packet to it is forwarded to its MAC."""
    host = "02:00:00:00:0a:33"
    e = Ether(src="02:00:00:00:ee:01", dst=MAC_A)
    first = [e / IP(src="198.19.0.5", dst="198.18.0.3") / UDP(dport=1)]
    second = [Ether(src=host, dst=MAC_A) / ARP(op=2, hwsrc=host, psrc="198.18.0.3",
                                               hwdst=MAC_A, pdst="198.18.0.1"),
              e / IP(src="198.19.0.5", dst="198.18.0.3") / UDP(dport=2)]
    write_pcap_bytes(tmp_path / "in1.pcap", [(T0, bytes(f)) for f in first], nsec=True)
    write_pcap_bytes(tmp_path / "in2.pcap", [(T0 + i, bytes(f)) for i, f in enumerate(second)],
                     nsec=True)
    r = run_pipeline(tmp_path, f"""
        ports:
          in1: pcap:in1.pcap
          in2: pcap:in2.pcap
          a: {{port: pcap:a.pcap, precision: ns}}
        elements:
          nb: {{type: neighbor, table: t, addresses: [{{ip: 198.18.0.1, mac: "{MAC_A}"}}]}}
          r:
            type: route
            table: t
            routes: [{{prefix: 198.18.0.0/24, output: a}}]
            macs: {{a: "{MAC_A}"}}
            addresses: {{a: [198.18.0.1]}}
        links:
          - in1 -> nb -> r -> a
          - in2 -> nb
          - nb [reply] -> drop
        """)
    out = [Ether(f) for _, f in read_pcap(tmp_path / "a.pcap")]
    assert ARP in out[0] and out[0][ARP].op == 1 and out[0][ARP].pdst == "198.18.0.3"
    assert out[1].dst == host and out[1][UDP].dport == 2
    assert len(out) == 2
    assert r.stats["elements"]["r"]["drops"] == {"not-ip": 1}     # the ARP reply
