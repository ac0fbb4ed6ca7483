"""gen: counts, sizes, headers and checksums, address/port walks, MACs, rate,
and the configurations it rejects. Frames are written to a pcap file by the
pipeline and read back with scapy, then compared byte for byte with frames
scapy builds from the same parameters."""
import ipaddress
import re
import time

import pytest
from helpers import BAD_CONFIG, NO_PORT, error_lines, raw_records, run_pipeline
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

HDR = {("ipv4", "udp"): 42, ("ipv4", "tcp"): 54, ("ipv6", "udp"): 62, ("ipv6", "tcp"): 74}


def gen_to_pcap(tmp_path, port, count_check=True, settings="", args=()):
    """Run `src -> out` with `src` the given gen port; returns (result, frames)."""
    r = run_pipeline(tmp_path, f"""
        {settings}
        ports:
          src: {port}
          out: pcap:out.pcap
        links:
          - src -> out
        """, args=args)
    frames = [bytes(data) for data, _ in raw_records(tmp_path / "out.pcap")]
    if count_check:
        assert r.stats["ports"]["src"]["rx"] == len(frames)
        assert r.stats["ports"]["out"]["tx"] == len(frames)
    return r, frames


def expected_frame(size, src, dst, sport, dport, proto="udp",
                   src_mac="02:00:00:00:00:01", dst_mac="02:00:00:00:00:02"):
    """The frame gen should make, built by scapy (which computes the checksums)."""
    v6 = ipaddress.ip_address(src).version == 6
    eth = Ether(src=src_mac, dst=dst_mac)
    ip = (IPv6(src=str(src), dst=str(dst), hlim=64, tc=0, fl=0) if v6 else
          IP(src=str(src), dst=str(dst), ttl=64, id=0, flags="DF", tos=0))
    if proto == "tcp":
        l4 = TCP(sport=sport, dport=dport, seq=1, ack=0, flags="A", window=65535)
    else:
        l4 = UDP(sport=sport, dport=dport)
    pkt = eth / ip / l4
    pad = size - len(pkt)
    assert pad >= 0
    return bytes(pkt / Raw(bytes(pad))) if pad else bytes(pkt)


def recomputed(frame: bytes) -> bytes:
    """The frame with its IPv4 and L4 checksums deleted and rebuilt by scapy."""
    p = Ether(frame)
    if IP in p:
        del p[IP].chksum
    for layer in (UDP, TCP):
        if layer in p:
            del p[layer].chksum
    return bytes(p)


def walk(i, ranges):
    """The i-th value of an odometer over `ranges`, fastest first."""
    out = []
    for r in ranges:
        out.append(r[i % len(r)])
        i //= len(r)
    return out


# --- counts -------------------------------------------------------------------------

@pytest.mark.parametrize("count", [1, 255, 256, 257, 3001])
def test_count_is_exact_at_sink_and_in_stats(tmp_path, count):
    r = run_pipeline(tmp_path, f"""
        ports:
          src: "gen:count={count}"
        elements:
          c: counter
        links:
          - src -> c -> sink
        """)
    assert r.stats["ports"]["src"] == {"rx": count, "tx": 0, "drops": {}}
    assert r.stats["ports"]["sink"] == {"rx": 0, "tx": count, "drops": {}}
    assert r.stats["elements"]["c"] == {"in": count, "out": {"out": count}, "drops": {}}
    assert re.search(rf"^c\s+counter\s+{count}\s.*packets={count}, bytes={60 * count}$",
                     r.out, re.M), r.out


def test_count_is_exact_in_a_pcap_with_a_small_batch(tmp_path):
    _, frames = gen_to_pcap(tmp_path, '"gen:count=1000"', settings="settings: {batch: 7}")
    assert len(frames) == 1000


# --- sizes --------------------------------------------------------------------------

@pytest.mark.parametrize("size", [42, 60, 61, 1514, 2048])
def test_fixed_size(tmp_path, size):
    _, frames = gen_to_pcap(tmp_path, f'"gen:count=20,size={size}"')
    assert [len(f) for f in frames] == [size] * 20
    want = expected_frame(size, "198.18.0.1", "198.19.0.1", 1234, 1234)
    assert frames == [want] * 20


def test_size_range_stays_within_and_varies(tmp_path):
    _, frames = gen_to_pcap(tmp_path, '"gen:count=500,size=60-70,sport=1-500"')
    sizes = [len(f) for f in frames]
    assert all(60 <= s <= 70 for s in sizes)
    assert set(sizes) == set(range(60, 71))      # 500 draws of 11 values: all seen
    for i, f in enumerate(frames):
        assert f == expected_frame(len(f), "198.18.0.1", "198.19.0.1", 1 + i, 1234)


def test_size_range_with_tcp_over_ipv6_has_good_checksums(tmp_path):
    _, frames = gen_to_pcap(
        tmp_path, '{port: gen, count: 300, size: 74-201, proto: tcp, family: ipv6}')
    assert all(74 <= len(f) <= 201 for f in frames)
    assert len({len(f) % 2 for f in frames}) == 2     # odd and even lengths both seen
    for f in frames:
        assert recomputed(f) == f


# --- headers and checksums ----------------------------------------------------------

@pytest.mark.parametrize("family,proto", sorted(HDR))
def test_headers_and_checksums(tmp_path, family, proto):
    src, dst = {"ipv4": ("198.18.0.7", "198.19.1.9"),
                "ipv6": ("2001:2::7", "2001:2:0:1::9")}[family]
    for size in (HDR[family, proto], 60 if family == "ipv4" else 86, 1000, 1001):
        _, frames = gen_to_pcap(
            tmp_path, f"{{port: gen, count: 3, size: {size}, proto: {proto}, src: '{src}', "
                      f"dst: '{dst}', sport: 5000, dport: 80}}")
        assert len(frames) == 3
        want = expected_frame(size, src, dst, 5000, 80, proto)
        for f in frames:
            assert f == want, f"{family}/{proto} size {size}"
            assert recomputed(f) == f
            p = Ether(f)
            ip = p[IP] if family == "ipv4" else p[IPv6]
            l4 = p[TCP] if proto == "tcp" else p[UDP]
            assert (ip.src, ip.dst, l4.sport, l4.dport) == (src, dst, 5000, 80)
            if family == "ipv4":
                assert ip.len == size - 14 and ip.ihl == 5 and ip.proto == (
                    6 if proto == "tcp" else 17)
            else:
                assert ip.plen == size - 54 and ip.nh == (6 if proto == "tcp" else 17)
            if proto == "udp":
                assert l4.len == size - (34 if family == "ipv4" else 54)


def test_family_follows_the_addresses(tmp_path):
    _, frames = gen_to_pcap(tmp_path, '{port: gen, count: 1, size: 62, dst: "2001:2::99"}')
    p = Ether(frames[0])
    assert IPv6 in p and p[IPv6].src == "2001:2::1" and p[IPv6].dst == "2001:2::99"


def test_default_ipv6_addresses(tmp_path):
    _, frames = gen_to_pcap(tmp_path, '{port: gen, count: 1, size: 62, family: ipv6}')
    assert frames[0] == expected_frame(62, "2001:2::1", "2001:2:0:1::1", 1234, 1234)


# --- walks --------------------------------------------------------------------------

def test_addresses_and_ports_walk_like_an_odometer(tmp_path):
    """Source port fastest, then source address, destination port, destination."""
    sports, srcs = [1000, 1001, 1002], ["198.18.0.1", "198.18.0.2"]
    dports, dsts = [80, 81], ["198.19.0.10", "198.19.0.11", "198.19.0.12"]
    total = 3 * 2 * 2 * 3
    count = total + 5       # and it wraps around to the start
    _, frames = gen_to_pcap(
        tmp_path, f"{{port: gen, count: {count}, sport: 1000-1002, src: "
                  f"198.18.0.1-198.18.0.2, dport: 80-81, dst: 198.19.0.10-198.19.0.12}}")
    assert len(frames) == count
    seen = []
    for i, f in enumerate(frames):
        sport, src, dport, dst = walk(i, [sports, srcs, dports, dsts])
        assert f == expected_frame(60, src, dst, sport, dport), f"frame {i}"
        seen.append((src, dst, sport, dport))
    assert len(set(seen)) == total


def test_prefix_walks_its_hosts(tmp_path):
    _, frames = gen_to_pcap(tmp_path, '{port: gen, count: 254, dst: 198.19.3.0/24}')
    assert [Ether(f)[IP].dst for f in frames] == [f"198.19.3.{i}" for i in range(1, 255)]


def test_ipv6_range_carries_into_the_upper_64_bits(tmp_path):
    a = ipaddress.ip_address("2001:2::ffff:ffff:ffff:fffe")
    addrs = [str(a + k) for k in range(4)]        # ...fffe, ...ffff, 2001:2:0:1::, ::1
    _, frames = gen_to_pcap(
        tmp_path, f"{{port: gen, count: 8, size: 62, src: '{addrs[0]}-{addrs[-1]}', "
                  f"dst: '2001:2:0:ffff:ffff:ffff:ffff:ffff-2001:2:1::', sport: 7}}")
    dsts = ["2001:2:0:ffff:ffff:ffff:ffff:ffff", "2001:2:1::"]
    for i, f in enumerate(frames):
        _, src, _, dst = walk(i, [[7], addrs, [1234], dsts])
        assert f == expected_frame(62, src, dst, 7, 1234), f"frame {i}"


def test_macs(tmp_path):
    _, frames = gen_to_pcap(tmp_path, "{port: gen, count: 2, src_mac: '0a:1b:2c:3d:4e:5f', "
                                      "dst_mac: 'ff:ff:ff:ff:ff:ff'}")
    for f in frames:
        assert f[:6] == bytes.fromhex("ffffffffffff")
        assert f[6:12] == bytes.fromhex("0a1b2c3d4e5f")
        assert f == expected_frame(60, "198.18.0.1", "198.19.0.1", 1234, 1234,
                                   src_mac="0a:1b:2c:3d:4e:5f", dst_mac="ff:ff:ff:ff:ff:ff")


def test_default_macs(tmp_path):
    _, frames = gen_to_pcap(tmp_path, '"gen:count=1"')
    assert frames[0][:12] == bytes.fromhex("020000000002" "020000000001")


# --- rate ---------------------------------------------------------------------------

def test_rate_limits(tmp_path):
    t0 = time.monotonic()
    _, frames = gen_to_pcap(tmp_path, '"gen:count=200,rate=2000"')
    elapsed = time.monotonic() - t0
    assert len(frames) == 200
    assert elapsed >= 0.05      # 200 frames at 2000/s take ~0.1 s; unlimited, ~1 ms


# --- configurations it rejects --------------------------------------------------------

@pytest.mark.parametrize("port,message", [
    ("{port: gen, family: ipv6, proto: tcp, size: 60}",
     "size: 60 is too small for ipv6/tcp: the headers take 74 bytes"),
    ("{port: gen, family: ipv6, size: 61}",
     "size: 61 is too small for ipv6/udp: the headers take 62 bytes"),
    ("{port: gen, proto: tcp, size: 50-100}",
     "size: 50 is too small for ipv4/tcp: the headers take 54 bytes"),
    ('"gen:src=198.18.0.1,dst=2001:2::1"', "src and dst are of different IP versions"),
    ("{port: gen, family: ipv6, src: 198.18.0.1}", "family ipv6 but addresses are IPv4"),
])
def test_bad_combinations_are_config_errors(tmp_path, port, message):
    r = run_pipeline(tmp_path, f"""
        ports:
          src: {port}
        links:
          - src -> sink
        """, expect=BAD_CONFIG)
    assert error_lines(r) == [f"p.yaml:2:8: port 'src' (gen): {message}"]
    assert r.stats is None


def test_size_larger_than_a_buffer_cannot_open(tmp_path):
    r = run_pipeline(tmp_path, """
        ports:
          src: "gen:count=1,size=3000"
        links:
          - src -> sink
        """, expect=NO_PORT)
    assert r.err.strip() == "nmroute: src: size 3000 exceeds the buffer size 2048"


def test_random_destinations_stay_in_their_range_and_spread(tmp_path):
    """random: dst draws each destination in its range (pkt-gen's -Z); the
    source still walks, and checksums stay right."""
    run_pipeline(tmp_path, """
        ports:
          src: {port: gen, count: 2000, dst: 198.19.0.0/24, src: 198.18.0.1-198.18.0.4,
                random: dst}
          out: pcap:out.pcap
        links: [src -> out]
        """)
    frames = [Ether(f) for f, _ in raw_records(tmp_path / "out.pcap")]
    dsts = [int(ipaddress.ip_address(f[IP].dst)) for f in frames]
    lo, hi = int(ipaddress.ip_address("198.19.0.1")), int(ipaddress.ip_address("198.19.0.254"))
    assert all(lo <= d <= hi for d in dsts)
    assert len(set(dsts)) > 200                       # 254 possible, 2000 draws
    assert dsts[:20] != sorted(dsts[:20])
    assert [f[IP].src for f in frames[:8]] == [f"198.18.0.{i}" for i in (1, 2, 3, 4)] * 2
    for f in frames[:50]:
        g = f[IP].copy()
        del g.chksum
        del g[UDP].chksum
        g = IP(bytes(g))
        assert (g.chksum, g[UDP].chksum) == (f[IP].chksum, f[UDP].chksum)
