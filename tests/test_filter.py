"""filter: first-match ACL (v4/v6), deny output vs drop, non-IP, fragments,
stateful mode (connection table, timeouts, table full), policer, sanity
checks, a 2,000-rule ACL and overlapping rules (nested prefixes, up to
4,200 rules) against the plain-Python reference, fuzzing, param errors, and
the firewall example pipeline.

Inputs are pcap files of scapy-built frames; each output goes to its own
pcap file, read back and compared with what tests/reference/filter_ref.py
decides for the same frames."""
import random
import shutil

import pytest
import yaml
from helpers import REPO, read_pcap, run_cli, run_pipeline, write_pcap_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import filter_ref as ref
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import ARP, Ether
from scapy.layers.sctp import SCTP
from scapy.packet import Raw

from nmroute.fastpath.elements.filter import Filter

T0 = 1_700_000_000_000_000_000
SEC = 1_000_000_000
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")



def net(addr, plen):
    """The prefix of length plen that holds addr (rules take no host bits)."""
    return str(ref.ipaddress.ip_network(f"{addr}/{plen}", strict=False))

def frames_in(tmp_path, pkts, gap_ns=1000, name="in.pcap"):
    """Write scapy packets (or (t_ns, packet)) to a pcap; returns their bytes."""
    recs = []
    for i, p in enumerate(pkts):
        t, p = p if isinstance(p, tuple) else (T0 + i * gap_ns, p)
        recs.append((t, bytes(p)))
    write_pcap_bytes(tmp_path / name, recs, nsec=True)
    return [f for _, f in recs]


def frames_of(path):
    return [f for _, f in read_pcap(path)]


def pipeline(params: dict, outputs=("allow",), batch=256) -> str:
    """A pcap -> filter -> pcap pipeline; params as YAML."""
    el = {"fw": {"type": "filter", **params}}
    ports = {"in": "pcap:in.pcap"}
    links = []
    for i, o in enumerate(outputs):
        ports[o] = f"pcap:{o}.pcap"
        links.append(f"fw [{o}] -> {o}" if i else f"in -> fw -> {o}")
    doc = {"settings": {"batch": batch}, "ports": ports, "elements": el, "links": links}
    return yaml.safe_dump(doc, sort_keys=False)


def fw_stats(r):
    return r.stats["elements"]["fw"]


def own(r):
    """The filter's own counters, from the summary table."""
    row = [ln for ln in r.out.splitlines() if ln.split()[:1] == ["fw"]][0]
    return {k: int(v) for k, v in (kv.split("=") for kv in row.split("  ")[-1].split(", "))}


# --- first match, each field, v4 + v6 -----------------------------------------------

RULES = [
    {"action": "deny", "src": "198.18.0.66/32"},                         # 0: src
    {"action": "allow", "dst": "198.19.1.0/24", "proto": "tcp", "dport": "80-81"},
    {"action": "deny", "dst": "198.19.1.0/24"},                          # 2: after 1
    {"action": "allow", "proto": "udp", "sport": 53},                    # 3: any family
    {"action": "allow", "proto": "icmp"},
    {"action": "deny", "src": "2001:2::bad/128"},
    {"action": "allow", "dst": "2001:2:0:1::/64", "proto": "tcp", "sport": "1000-2000"},
    {"action": "allow", "family": "ipv6", "proto": "icmpv6"},
    {"action": "allow", "src": "198.18.0.0/15", "dst": "198.18.0.0/15", "proto": 132},
]


def mixed_packets():
    v4 = [
        IP(src="198.18.0.66", dst="198.19.1.1") / TCP(dport=80),       # rule 0 beats 1
        IP(src="198.18.0.1", dst="198.19.1.1") / TCP(dport=80),        # 1
        IP(src="198.18.0.1", dst="198.19.1.1") / TCP(dport=81),        # 1
        IP(src="198.18.0.1", dst="198.19.1.1") / TCP(dport=82),        # 2
        IP(src="198.18.0.1", dst="198.19.1.1") / UDP(dport=80),        # 2 (proto)
        IP(src="198.18.0.1", dst="198.19.2.1") / TCP(dport=80),        # default
        IP(src="198.18.0.1", dst="198.19.2.1") / UDP(sport=53),        # 3
        IP(src="198.18.0.1", dst="198.19.2.1") / UDP(sport=54),        # default
        IP(src="198.18.0.1", dst="198.19.2.1") / ICMP(),               # 4
        IP(src="198.18.0.1", dst="198.19.2.1") / SCTP(sport=1, dport=2),  # 8
        IP(src="198.18.0.1", dst="203.0.113.1") / SCTP(),              # default
        IP(src="198.18.0.1", dst="198.19.2.1", proto=253) / Raw(b"x" * 8),
    ]
    v6 = [
        IPv6(src="2001:2::bad", dst="2001:2:0:1::1") / TCP(sport=1500),  # 5
        IPv6(src="2001:2::1", dst="2001:2:0:1::1") / TCP(sport=1500),    # 6
        IPv6(src="2001:2::1", dst="2001:2:0:1::1") / TCP(sport=2001),    # default
        IPv6(src="2001:2::1", dst="2001:2:0:2::1") / TCP(sport=1500),    # default
        IPv6(src="2001:2::1", dst="2001:2:0:2::1") / UDP(sport=53),      # 3
        IPv6(src="2001:2::1", dst="2001:2:0:2::1") / ICMPv6EchoRequest(),  # 7
        IPv6(src="2001:2::1", dst="2001:2:0:2::1", nh=1) / ICMP(),     # rule 4
    ]
    return [ETH / p for p in v4 + v6]


@pytest.mark.parametrize("default", ["deny", "allow"])
def test_first_match_each_field_v4_v6_deny_output(tmp_path, default):
    frames = frames_in(tmp_path, mixed_packets())
    r = run_pipeline(tmp_path, pipeline({"rules": RULES, "default": default, "deny": "output"},
                                        ("allow", "deny")))
    comp = ref.compile_rules(RULES)
    want = {o: [f for f in frames if ref.decide(comp, default, f) == o]
            for o in ("allow", "deny")}
    assert len(want["allow"]) >= 9 and len(want["deny"]) >= 4
    assert frames_of(tmp_path / "allow.pcap") == want["allow"]
    assert frames_of(tmp_path / "deny.pcap") == want["deny"]
    assert fw_stats(r)["drops"] == {}
    c = own(r)
    assert (c["allowed"], c["denied"]) == (len(want["allow"]), len(want["deny"]))


def test_first_match_indexes(tmp_path):
    """lookup() gives the rule index the reference finds, packet by packet."""
    f = Filter("fw", {"rules": RULES})
    comp = ref.compile_rules(RULES)
    expect = [0, 1, 1, 2, 2, None, 3, None, 4, 8, None, None, 5, 6, None, None, 3, 7, 4]
    got = []
    for frame in (bytes(p) for p in mixed_packets()):
        fam, src, dst, proto, sport, dport = ref.fields(frame)
        got.append(f.lookup(fam, str(src), str(dst), proto, sport, dport))
        assert got[-1] == ref.first_match(comp, ref.fields(frame))
    assert got == expect


def test_denied_are_dropped_by_default(tmp_path):
    frames = frames_in(tmp_path, mixed_packets())
    r = run_pipeline(tmp_path, pipeline({"rules": RULES}))
    comp = ref.compile_rules(RULES)
    allowed = [f for f in frames if ref.decide(comp, "deny", f) == "allow"]
    assert frames_of(tmp_path / "allow.pcap") == allowed
    assert fw_stats(r)["drops"] == {"denied": len(frames) - len(allowed)}
    assert list(fw_stats(r)["out"]) == ["allow"]


def test_no_rules_default_allow_and_deny(tmp_path):
    frames = frames_in(tmp_path, mixed_packets())
    r = run_pipeline(tmp_path, pipeline({"default": "allow"}))
    assert frames_of(tmp_path / "allow.pcap") == frames
    r = run_pipeline(tmp_path, pipeline({}))
    assert fw_stats(r)["drops"] == {"denied": len(frames)}


def test_non_ip(tmp_path):
    arp = ETH / ARP(psrc="198.18.0.1", pdst="198.18.0.2")
    other = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=0x88B5) / Raw(b"z" * 50)
    ip = ETH / IP(src="198.18.0.1", dst="198.19.0.1") / UDP()
    frames = frames_in(tmp_path, [arp, ip, other])
    r = run_pipeline(tmp_path, pipeline({"default": "allow"}))
    assert frames_of(tmp_path / "allow.pcap") == [frames[1]]
    assert fw_stats(r)["drops"] == {"not-ip": 2}
    r = run_pipeline(tmp_path, pipeline({"default": "deny", "non_ip": "allow"}))
    assert frames_of(tmp_path / "allow.pcap") == [frames[0], frames[2]]
    assert fw_stats(r)["drops"] == {"denied": 1}


def test_malformed_dropped_with_parse_reason(tmp_path):
    good = bytes(ETH / IP(src="198.18.0.1", dst="198.19.0.1") / TCP())
    v6 = bytes(ETH / IPv6(src="2001:2::1", dst="2001:2::2") / UDP())
    frames = [good, good[:10], good[:14 + 19], good[:14 + 20 + 10], v6[:14 + 30], v6[:14 + 44],
              good]
    write_pcap_bytes(tmp_path / "in.pcap", [(T0 + i, f) for i, f in enumerate(frames)])
    r = run_pipeline(tmp_path, pipeline({"default": "allow"}))
    assert frames_of(tmp_path / "allow.pcap") == [good, good]
    assert fw_stats(r)["drops"] == {"malformed:eth": 1, "malformed:ipv4": 2,
                                    "malformed:ipv6": 2}


def test_later_fragments_match_only_portless_rules(tmp_path):
    rules = [{"action": "deny", "proto": "udp", "dport": 9},
             {"action": "allow", "proto": "udp", "dst": "198.19.0.0/16"}]
    first = ETH / IP(src="198.18.0.1", dst="198.19.0.1", flags="MF", id=7) / UDP(dport=9) / Raw(
        b"a" * 16)
    later = ETH / IP(src="198.18.0.1", dst="198.19.0.1", frag=3, id=7, proto=17) / Raw(b"b" * 16)
    later6 = ETH / IPv6(src="2001:2::1", dst="2001:2::2") / IPv6ExtHdrFragment(
        nh=17, offset=3, id=7) / Raw(b"c" * 16)
    frames = frames_in(tmp_path, [first, later, later6])
    r = run_pipeline(tmp_path, pipeline({"rules": rules}))
    # The first fragment has ports: rule 0 denies it. The later ones have
    # none: rule 0 (ports) cannot match, rule 1 allows the v4 one; the v6 one
    # misses rule 1's IPv4 dst and takes the default.
    assert frames_of(tmp_path / "allow.pcap") == [frames[1]]
    assert fw_stats(r)["drops"] == {"denied": 2}
    comp = ref.compile_rules(rules)
    assert [ref.decide(comp, "deny", f) for f in frames] == ["deny", "allow", "deny"]


# --- stateful ----------------------------------------------------------------------

IN_HOST, OUT_HOST = "198.18.0.10", "198.19.0.20"
OUTBOUND_ONLY = [{"action": "allow", "src": "198.18.0.0/16"}]


def syn(sport=40000, dport=80):
    return ETH / IP(src=IN_HOST, dst=OUT_HOST) / TCP(sport=sport, dport=dport, flags="S")


def synack(sport=40000, dport=80):
    return ETH / IP(src=OUT_HOST, dst=IN_HOST) / TCP(sport=dport, dport=sport, flags="SA")


def test_stateful_reply_allowed_only_after_outbound(tmp_path):
    pkts = [synack(), syn(), synack(),
            synack(sport=40001),                                         # another flow
            ETH / IP(src=OUT_HOST, dst=IN_HOST) / UDP(sport=80, dport=40000),  # other proto
            ETH / IP(src=IN_HOST, dst=OUT_HOST) / ICMP(id=5),
            ETH / IP(src=OUT_HOST, dst=IN_HOST) / ICMP(type=0, id=5),
            ETH / IPv6(src="2001:2::1", dst="2001:2:0:1::1") / UDP(sport=5, dport=6),
            ETH / IPv6(src="2001:2:0:1::1", dst="2001:2::1") / UDP(sport=6, dport=5),
            ETH / IPv6(src="2001:2:0:1::1", dst="2001:2::1") / UDP(sport=6, dport=7)]
    rules = OUTBOUND_ONLY + [{"action": "allow", "src": "2001:2::/64"}]
    frames = frames_in(tmp_path, pkts)
    r = run_pipeline(tmp_path, pipeline({"rules": rules, "stateful": True, "deny": "output"},
                                        ("allow", "deny")))
    allow = [1, 2, 5, 6, 7, 8]
    assert frames_of(tmp_path / "allow.pcap") == [frames[i] for i in allow]
    assert frames_of(tmp_path / "deny.pcap") == [frames[i] for i in (0, 3, 4, 9)]
    c = own(r)
    assert (c["created"], c["established"], c["denied"]) == (3, 3, 4)


def test_stateless_denies_replies(tmp_path):
    frames_in(tmp_path, [syn(), synack()])
    r = run_pipeline(tmp_path, pipeline({"rules": OUTBOUND_ONLY}))
    assert fw_stats(r)["drops"] == {"denied": 1}


def test_stateful_timeouts_on_packet_clock(tmp_path):
    """clock: packet (the capture's timestamps); a reply inside tcp_timeout
    of the flow's last packet passes, one after it does not."""
    pkts = [(T0, syn()), (T0 + SEC // 2, synack()),          # 0.5 s: live
            (T0 + 2 * SEC, synack()),                        # 1.5 s after the last: live
            (T0 + 5 * SEC, synack()),                        # 3 s after: expired
            (T0 + 5 * SEC, syn(sport=1)), (T0 + 5 * SEC + SEC // 10, synack(sport=1)),
            (T0 + 5 * SEC, ETH / IP(src=IN_HOST, dst=OUT_HOST) / UDP(sport=1, dport=2)),
            (T0 + 6 * SEC, ETH / IP(src=OUT_HOST, dst=IN_HOST) / UDP(sport=2, dport=1))]
    frames = frames_in(tmp_path, pkts)
    r = run_pipeline(tmp_path, pipeline({"rules": OUTBOUND_ONLY, "stateful": True,
                                         "clock": "packet", "tcp_timeout": 2,
                                         "udp_timeout": 0.5}, batch=1))
    assert frames_of(tmp_path / "allow.pcap") == [frames[i] for i in (0, 1, 2, 4, 5, 6)]
    assert fw_stats(r)["drops"] == {"denied": 2}


@pytest.mark.parametrize("timeout,created", [(0.001, 27), (60, 2)])
def test_stateful_timeouts_on_monotonic_clock(tmp_path, timeout, created):
    """Two flows, each seen every 10 ms (gen at 200 pps): with a 1 ms
    timeout (nearly) every packet finds its flow expired and makes it anew
    (gen may let its first few packets out in one batch, on one clock
    reading); with 60 s, each flow is made once."""
    r = run_pipeline(tmp_path, f"""
        ports: {{src: "gen:count=30,rate=200,sport=1-2", out: sink}}
        elements:
          fw: {{type: filter, default: allow, stateful: true, udp_timeout: {timeout}}}
        links: ["src -> fw -> out"]
        """)
    c = own(r)
    assert c["created"] + c["established"] == 30
    assert c["created"] >= created if timeout < 1 else c["created"] == created
    assert fw_stats(r)["out"] == {"allow": 30}


def test_stateful_table_full_and_evictions(tmp_path):
    # 6 flows at t0 into a table of 4: 2 dropped table-full. At t0 + 10 s all
    # have expired: 4 new flows reuse (evict) expired entries.
    pkts = [(T0, syn(sport=100 + i)) for i in range(6)]
    pkts += [(T0 + 10 * SEC, syn(sport=200 + i)) for i in range(4)]
    pkts += [(T0 + 10 * SEC, synack(sport=200 + i)) for i in range(4)]
    pkts += [(T0 + 10 * SEC, synack(sport=100))]
    frames = frames_in(tmp_path, pkts)
    r = run_pipeline(tmp_path, pipeline({"rules": OUTBOUND_ONLY, "stateful": True,
                                         "max_conns": 4, "tcp_timeout": 1,
                                         "clock": "packet"}, batch=1))
    assert frames_of(tmp_path / "allow.pcap") == frames[:4] + frames[6:14]
    assert fw_stats(r)["drops"] == {"table-full": 2, "denied": 1}
    c = own(r)
    assert (c["created"], c["table_full"], c["established"]) == (8, 2, 4)
    assert c["evictions"] == 4


def test_stateful_many_flows_table_full_counted(tmp_path):
    r = run_pipeline(tmp_path, """
        ports: {src: "gen:count=3000,sport=1000-3999", out: sink}
        elements:
          fw: {type: filter, default: allow, stateful: true, max_conns: 1000}
        links: ["src -> fw -> out"]
        """)
    c = own(r)
    assert c["created"] == 1000 and c["table_full"] == 2000
    assert r.stats["elements"]["fw"]["drops"] == {"table-full": 2000}


def test_shared_conntrack_between_two_filters(tmp_path):
    """Two filters naming one table: the reply direction's filter knows the
    flows the other one let out."""
    frames_in(tmp_path, [syn(), syn(sport=1)], name="inside.pcap")
    frames = frames_in(tmp_path, [synack(), synack(sport=2)], name="outside.pcap")
    r = run_pipeline(tmp_path, """
        ports:
          inside: pcap:inside.pcap
          outside: pcap:outside.pcap
          to_out: pcap:to_out.pcap
          to_in: pcap:to_in.pcap
        elements:
          fw_out: {type: filter, default: allow, stateful: true, conntrack: t}
          fw_in: {type: filter, default: deny, stateful: true, conntrack: t}
        links:
          - inside -> fw_out -> to_out
          - outside -> fw_in -> to_in
        """)
    assert frames_of(tmp_path / "to_in.pcap") == [frames[0]]
    assert r.stats["elements"]["fw_in"]["drops"] == {"denied": 1}


# --- policer -----------------------------------------------------------------------

def test_policer_on_packet_clock_exact(tmp_path):
    # 400 packets 2.5 ms apart (1 s), 100 pps with a burst of 10: the bucket
    # starts full (10) and gains one token every 10 ms: 10 + 99 pass.
    pkts = [(T0 + i * SEC // 400, ETH / IP(src="198.18.0.1", dst="198.19.0.1") / UDP())
            for i in range(400)]
    frames_in(tmp_path, pkts)
    r = run_pipeline(tmp_path, pipeline({"default": "allow", "rate": 100, "burst": 10,
                                         "clock": "packet"}, batch=1))
    assert len(frames_of(tmp_path / "allow.pcap")) == 109
    assert fw_stats(r)["drops"] == {"policed": 291}
    assert own(r)["policed"] == 291 and own(r)["allowed"] == 109


def test_policer_tiny_rate_drops_most_of_a_burst(tmp_path):
    r = run_pipeline(tmp_path, """
        ports: {src: "gen:count=5000", out: sink}
        elements:
          fw: {type: filter, default: allow, rate: 10, burst: 5}
        links: ["src -> fw -> out"]
        """)
    e = fw_stats(r)
    passed = e["out"]["allow"]
    assert 5 <= passed <= 50
    assert e["drops"] == {"policed": 5000 - passed}


def test_policer_per_source(tmp_path):
    r = run_pipeline(tmp_path, """
        ports: {src: "gen:count=4000,src=198.18.0.1-198.18.0.4", out: sink}
        elements:
          fw: {type: filter, default: allow, rate: 1, burst: 7, per: src}
        links: ["src -> fw -> out"]
        """)
    e = fw_stats(r)
    assert 28 <= e["out"]["allow"] <= 40      # 4 sources x a burst of 7 (+ refill)
    assert e["drops"] == {"policed": 4000 - e["out"]["allow"]}


def test_policer_source_table_full(tmp_path):
    r = run_pipeline(tmp_path, """
        ports: {src: "gen:count=200,src=198.18.0.1-198.18.0.200", out: sink}
        elements:
          fw: {type: filter, default: allow, rate: 0.001, burst: 10, per: src,
               max_sources: 10}
        links: ["src -> fw -> out"]
        """)
    assert fw_stats(r)["out"] == {"allow": 10}
    assert fw_stats(r)["drops"] == {"table-full": 190}
    assert own(r)["police_table_full"] == 190 and own(r)["policed"] == 0


def test_policer_only_sees_allowed_packets(tmp_path):
    pkts = [ETH / IP(src="198.18.0.1", dst="198.19.0.1") / UDP(dport=i % 2) for i in range(40)]
    frames_in(tmp_path, pkts)
    r = run_pipeline(tmp_path, pipeline({"rules": [{"action": "deny", "dport": 1}],
                                         "default": "allow", "rate": 0.001, "burst": 5}))
    assert fw_stats(r)["drops"] == {"denied": 20, "policed": 15}


# --- sanity ------------------------------------------------------------------------

def test_sanity_checks(tmp_path):
    good = ETH / IP(src="198.18.0.1", dst="198.19.0.1") / UDP()
    bad_csum = ETH / IP(src="198.18.0.1", dst="198.19.0.1", chksum=0x1234) / UDP()
    ttl0 = ETH / IP(src="198.18.0.1", dst="198.19.0.1", ttl=0) / UDP()
    hlim0 = ETH / IPv6(src="2001:2::1", dst="2001:2::2", hlim=0) / UDP()
    udp_len = ETH / IP(src="198.18.0.1", dst="198.19.0.1") / UDP(len=200)
    udp_short = ETH / IPv6(src="2001:2::1", dst="2001:2::2") / UDP(len=4)
    good6 = ETH / IPv6(src="2001:2::1", dst="2001:2::2") / TCP()
    frames = frames_in(tmp_path, [good, bad_csum, ttl0, hlim0, udp_len, udp_short, good6])
    r = run_pipeline(tmp_path, pipeline({"default": "allow", "sanity": True}))
    assert frames_of(tmp_path / "allow.pcap") == [frames[0], frames[6]]
    assert fw_stats(r)["drops"] == {"bad-checksum": 1, "ttl-expired": 2, "malformed:l4": 2}
    run_pipeline(tmp_path, pipeline({"default": "allow"}))
    assert frames_of(tmp_path / "allow.pcap") == frames


# --- a large ACL against the reference -----------------------------------------------

V4_LENS = (16, 24, 24, 28, 32)
V6_LENS = (32, 48, 64, 64, 128)


def v4_addr(rnd):
    return f"198.{rnd.randint(18, 19)}.{rnd.randint(0, 3)}.{rnd.randint(0, 255)}"


def v6_addr(rnd):
    return f"2001:2:{rnd.randint(0, 1):x}:{rnd.randint(0, 3):x}::{rnd.randint(0, 9):x}"


def random_rules(rnd, n):
    """Mostly specific rules (a few prefix lengths, as real ACLs have), with
    broader ones (any length, no address) in the last tenth, where a
    catch-all does not hide the rest."""
    rules = []
    for i in range(n):
        broad = i > n * 0.9
        r = {"action": rnd.choice(("allow", "deny"))}
        fam = rnd.choice((4, 4, 6, None) if broad else (4, 4, 6))
        for k in ("src", "dst"):
            if fam and rnd.random() < (0.5 if broad else 0.8):
                if fam == 4:
                    plen = rnd.randint(0, 32) if broad else rnd.choice(V4_LENS)
                    r[k] = net(v4_addr(rnd), plen)
                else:
                    plen = rnd.randint(0, 128) if broad else rnd.choice(V6_LENS)
                    r[k] = net(v6_addr(rnd), plen)
        if fam and "src" not in r and "dst" not in r:
            if not broad:
                r["dst"] = f"{v4_addr(rnd)}/32" if fam == 4 else f"{v6_addr(rnd)}/128"
            elif rnd.random() < 0.5:
                r["family"] = f"ipv{fam}"
        if rnd.random() < 0.7:
            r["proto"] = rnd.choice(("tcp", "udp", "icmp", "sctp", "icmpv6", 6, 17))
        if r.get("proto") in (None, "tcp", "udp", "sctp", 6, 17):
            for k in ("sport", "dport"):
                if rnd.random() < 0.4:
                    lo = rnd.randint(0, 100)
                    r[k] = lo if rnd.random() < 0.3 else f"{lo}-{lo + rnd.randint(0, 60)}"
        rules.append(r)
    return rules


def _addr_in(rnd, prefix):
    """A random address inside a prefix like 198.18.0.7/24."""
    import ipaddress
    net = ipaddress.ip_network(prefix, strict=False)
    return str(net.network_address + rnd.randrange(min(net.num_addresses, 1 << 20)))


def random_packets(rnd, n, rules):
    """Packets aimed at random rules' prefixes and ports (and some at none)."""
    out = []
    for _ in range(n):
        r = rnd.choice(rules)
        v6 = ":" in (r.get("src") or r.get("dst") or "") or r.get("family") == "ipv6"
        gen = v6_addr if v6 else v4_addr
        src = _addr_in(rnd, r["src"]) if r.get("src") and rnd.random() < 0.9 else gen(rnd)
        dst = _addr_in(rnd, r["dst"]) if r.get("dst") and rnd.random() < 0.9 else gen(rnd)
        ip = IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst)
        sp, dp = rnd.randint(0, 170), rnd.randint(0, 170)
        l4 = rnd.choice((TCP(sport=sp, dport=dp), UDP(sport=sp, dport=dp),
                         SCTP(sport=sp, dport=dp), ICMPv6EchoRequest() if v6 else ICMP(),
                         Raw(b"\x00" * 8)))
        if isinstance(l4, Raw):
            if v6:
                ip.nh = 253
            else:
                ip.proto = 253
        out.append(ETH / ip / l4)
    return out


def test_2000_rules_against_reference(tmp_path):
    rnd = random.Random(20261125)
    rules = random_rules(rnd, 2000)
    pkts = random_packets(rnd, 800, rules)
    comp = ref.compile_rules(rules)
    f = Filter("fw", {"rules": rules})
    frames = [bytes(p) for p in pkts]
    hits = set()
    for frame in frames:
        fam, src, dst, proto, sport, dport = fl = ref.fields(frame)
        want = ref.first_match(comp, fl)
        assert f.lookup(fam, str(src), str(dst), proto, sport, dport) == want, (frame.hex(), want)
        hits.add(want)
    assert len(hits) > 80           # the packets exercise many rules, not just the default
    write_pcap_bytes(tmp_path / "in.pcap", [(T0 + i, fr) for i, fr in enumerate(frames)])
    r = run_pipeline(tmp_path, pipeline({"rules": rules, "deny": "output"}, ("allow", "deny")))
    want = {o: [fr for fr in frames if ref.decide(comp, "deny", fr) == o] for o in ("allow",
                                                                                  "deny")}
    assert frames_of(tmp_path / "allow.pcap") == want["allow"]
    assert frames_of(tmp_path / "deny.pcap") == want["deny"]
    assert min(len(v) for v in want.values()) > 150
    assert r.stats["elements"]["fw"]["in"] == len(frames)


def test_many_prefix_lengths_against_reference():
    """Arbitrary prefix lengths: prefixes painted at every level of the
    IPv4 16-8-8 class table, nested in one another."""
    rnd = random.Random(7)
    rules = []
    for _ in range(400):
        r = {"action": rnd.choice(("allow", "deny")),
             "src": net(f"198.{rnd.randint(18, 19)}.{rnd.randint(0, 255)}.0", rnd.randint(0, 32)),
             "dst": net(f"198.18.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}",
                        rnd.randint(0, 32))}
        rules.append(r)
    comp = ref.compile_rules(rules)
    f = Filter("fw", {"rules": rules})
    for _ in range(2000):
        src = f"198.{rnd.randint(18, 19)}.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}"
        dst = f"198.18.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}"
        fl = (4, ref.ipaddress.ip_address(src), ref.ipaddress.ip_address(dst), 6, 1, 2)
        assert f.lookup(4, src, dst, 6, 1, 2) == ref.first_match(comp, fl)


def test_proto_in_rules_not_keys_against_reference():
    """Rules that share addresses but differ in proto and ports are told
    apart per rule, in rule order, after the address vectors; some packets
    are one address off (often just outside a rule's prefix)."""
    import ipaddress
    rnd = random.Random(11)
    protos = (None, "tcp", "udp", "icmp", 6, 17, 253)
    rules = []
    for i in range(600):
        fam = rnd.choice((4, 4, 6))
        a = v4_addr if fam == 4 else v6_addr
        r = {"action": rnd.choice(("allow", "deny"))}
        lens = (16, 24, 32) if fam == 4 else (48, 64, 128)
        for k in ("src", "dst"):
            if rnd.random() < (0.5 if i > 560 else 0.8):   # broad rules last
                r[k] = net(a(rnd), rnd.choice(lens))
        if "src" not in r and "dst" not in r and i <= 560:
            r["dst"] = net(a(rnd), lens[-1])
        p = rnd.choice(protos)
        if p is not None:
            r["proto"] = p
        if p in (None, "tcp", "udp", 6, 17) and rnd.random() < 0.5:
            lo = rnd.randint(0, 3)
            r["dport"] = f"{lo}-{lo + rnd.randint(0, 2)}"
        if "src" not in r and "dst" not in r and rnd.random() < 0.7:
            r["family"] = f"ipv{fam}"
        rules.append(r)
    comp = ref.compile_rules(rules)
    f = Filter("fw", {"rules": rules})
    hits = set()
    for _ in range(3000):
        r = rnd.choice(rules)
        fam = 6 if ":" in (r.get("src") or r.get("dst") or "") or r.get("family") == "ipv6" \
            else 4
        a = v4_addr if fam == 4 else v6_addr
        src = _addr_in(rnd, r["src"]) if r.get("src") and rnd.random() < 0.9 else a(rnd)
        dst = _addr_in(rnd, r["dst"]) if r.get("dst") and rnd.random() < 0.9 else a(rnd)
        if rnd.random() < 0.2:      # one bit off: a near miss of the rule's key
            dst = str(ipaddress.ip_address(dst) + 1)
        proto = rnd.choice((1, 6, 17, 253, 58))
        ports = (rnd.randint(0, 6), rnd.randint(0, 6)) if proto in (6, 17) else (None, None)
        fl = (fam, ipaddress.ip_address(src), ipaddress.ip_address(dst), proto) + ports
        want = ref.first_match(comp, fl)
        assert f.lookup(fam, src, dst, proto, *ports) == want, (fl, want)
        hits.add(want)
    assert len(hits) > 80


# Nested prefixes (each inside the one before, plus siblings), so that many
# rules of different lengths match one packet: the first of them must win,
# not the longest nor the one met first in some index.
V4_NESTED = ("198.18.0.0/15", "198.18.0.0/16", "198.18.4.0/22", "198.18.5.0/24",
             "198.18.5.128/25", "198.18.5.130/31", "198.18.5.131/32", "198.18.6.0/23",
             "198.18.5.0/26", "198.19.0.0/17", "198.19.0.7/32", "198.18.5.128/28")
V6_NESTED = ("2001:2::/48", "2001:2:0:5::/64", "2001:2:0:5:8000::/65", "2001:2:0:5::42/127",
             "2001:2:0:5::43/128", "2001:2:0:4::/63", "2001:2:0:6::/64", "2001:2::/47",
             "2001:2:0:5::/120")


def nested_rules(rnd, n):
    """Rules over V4_NESTED / V6_NESTED: src and dst each a pool prefix or
    none; proto any, tcp, udp, icmp or a number; ports as single values or
    ranges near 80; both families for rules with no address. Broader rules
    (fewer fields) grow more common down the list."""
    rules = []
    for i in range(n):
        r = {"action": rnd.choice(("allow", "deny"))}
        pool = rnd.choice((V4_NESTED, V4_NESTED, V6_NESTED))
        for k in ("src", "dst"):
            if rnd.random() < 0.9 - 0.4 * i / n:
                r[k] = rnd.choice(pool)
        if "src" not in r and "dst" not in r and rnd.random() < 0.5:
            r["family"] = "ipv6" if pool is V6_NESTED else "ipv4"
        proto = rnd.choice((None, "tcp", "udp", "udp", "icmp", 253))
        if proto is not None:
            r["proto"] = proto
        if proto in (None, "tcp", "udp"):
            for k in ("sport", "dport"):
                if rnd.random() < 0.6 - 0.4 * i / n:
                    lo = rnd.randint(78, 82)
                    r[k] = lo if rnd.random() < 0.4 else f"{lo}-{lo + rnd.randint(0, 3)}"
        rules.append(r)
    return rules


def nested_fields(rnd):
    """A packet's fields with addresses on or next to the pool's prefix edges."""
    import ipaddress
    pool = rnd.choice((V4_NESTED, V6_NESTED))
    addrs = []
    for _ in range(2):
        net = ipaddress.ip_network(rnd.choice(pool), strict=False)
        a = rnd.choice((net.network_address, net.broadcast_address,
                        net.network_address + rnd.randrange(net.num_addresses)))
        a += rnd.choice((0, 0, 0, -1, 1))
        addrs.append(a)
    proto = rnd.choice((6, 17, 1, 253, 132))
    ports = (rnd.randint(77, 86), rnd.randint(77, 86)) if proto in (6, 17, 132) else (None, None)
    return (6 if pool is V6_NESTED else 4, addrs[0], addrs[1], proto) + ports


def _most_specific(comp, fl):
    """Of the rules whose addresses match fl, one with the longest prefixes:
    where it is not the first match, the first match is not the most specific."""
    best, score = None, -1
    for i, (_a, src, dst, _p, _sp, _dp, _f) in enumerate(comp):
        if all(n is None or (n.version == fl[0] and a in n) for n, a in ((src, fl[1]),
                                                                        (dst, fl[2]))):
            s = (src.prefixlen if src else -1) + (dst.prefixlen if dst else -1)
            if s > score:
                best, score = i, s
    return best


@pytest.mark.parametrize("n, packets", [(10, 1500), (150, 1500), (4200, 150)])
def test_overlapping_rules_first_match_wins(n, packets):
    """Overlapping rules (nested prefixes, proto any vs given, port ranges,
    IPv4 and IPv6, rules that name no address): lookup() agrees with the
    reference on every packet. 150 rules span several 64-bit words of a bit
    vector; 4,200 need more than 64 words (a summary bit per two words)."""
    rnd = random.Random(n)
    rules = nested_rules(rnd, n)
    comp = ref.compile_rules(rules)
    f = Filter("fw", {"rules": rules})
    hits, broad_won = set(), 0
    for _ in range(packets):
        fl = nested_fields(rnd)
        want = ref.first_match(comp, fl)
        got = f.lookup(fl[0], str(fl[1]), str(fl[2]), fl[3], fl[4], fl[5])
        assert got == want, (fl, want, got, rules[want] if want is not None else None)
        hits.add(want)
        if want is not None and _most_specific(comp, fl) != want:
            broad_won += 1
    assert len(hits) > min(n, 120) // 4
    assert broad_won > packets // 20     # an earlier, broader rule beat a more specific one


def test_priority_across_lengths_and_fields():
    """Hand-made traps for a lookup that would prefer longer prefixes, one
    field over the other, a specific proto over any, or IPv4 over IPv6."""
    rules = [
        {"action": "deny", "dst": "198.19.0.0/16", "proto": "udp", "dport": "100-200"},  # 0
        {"action": "allow", "src": "198.18.1.1/32", "dst": "198.19.1.1/32"},           # 1
        {"action": "deny", "src": "198.18.0.0/15"},                                    # 2
        {"action": "allow", "dst": "198.19.1.1/32", "proto": "tcp"},                   # 3
        {"action": "allow", "proto": "tcp", "sport": "1000-1001"},                     # 4
        {"action": "deny", "src": "2001:2::/48", "proto": "tcp", "dport": 22},         # 5
        {"action": "allow", "src": "2001:2::1/128", "dst": "2001:2:0:1::/64"},         # 6
        {"action": "deny", "family": "ipv6"},                                          # 7
        {"action": "allow", "src": "0.0.0.0/0"},                                        # 8
    ]
    f = Filter("fw", {"rules": rules})
    cases = [
        ((4, "198.18.1.1", "198.19.1.1", 17, 150, 150), 0),    # broad dst, port range
        ((4, "198.18.1.1", "198.19.1.1", 17, 150, 201), 1),    # out of range: /32 pair
        ((4, "198.18.1.2", "198.19.1.1", 6, 1000, 80), 2),     # src /15 before dst /32
        ((4, "203.0.113.1", "198.19.1.1", 6, 1000, 80), 3),    # proto given
        ((4, "203.0.113.1", "198.19.1.2", 6, 1001, 80), 4),    # no address, sport range
        ((4, "203.0.113.1", "198.19.1.2", 6, 1002, 80), 8),    # /0: every address
        ((4, "203.0.113.1", "198.19.1.2", 1, None, None), 8),
        ((6, "2001:2::1", "2001:2:0:1::9", 6, 5, 22), 5),      # /48 with port before /128
        ((6, "2001:2::1", "2001:2:0:1::9", 6, 5, 23), 6),
        ((6, "2001:2::1", "2001:2:0:2::9", 6, 5, 23), 7),      # family rule
        ((6, "2001:2::1", "2001:2:0:1::9", 17, 5, 22), 6),
    ]
    comp = ref.compile_rules(rules)
    for (fam, src, dst, proto, sp, dp), want in cases:
        import ipaddress
        fl = (fam, ipaddress.ip_address(src), ipaddress.ip_address(dst), proto, sp, dp)
        assert ref.first_match(comp, fl) == want, fl          # the table itself is right
        assert f.lookup(fam, src, dst, proto, sp, dp) == want, fl


# --- fuzz: malformed frames ------------------------------------------------------------

def _valid_frames():
    return [bytes(p) for p in mixed_packets()]


@st.composite
def fuzz_frames(draw):
    base = _valid_frames()
    out = []
    for _ in range(draw(st.integers(1, 30))):
        kind = draw(st.integers(0, 2))
        if kind == 0:
            out.append(draw(st.binary(min_size=0, max_size=120)))
        else:
            f = bytearray(draw(st.sampled_from(base)))
            if kind == 1:
                f = f[:draw(st.integers(1, len(f)))]
            for _ in range(draw(st.integers(1, 4))):
                f[draw(st.integers(0, len(f) - 1))] = draw(st.integers(0, 255))
            out.append(bytes(f))
    return out


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(frames=fuzz_frames())
def test_fuzz_accounting_exact(tmp_path, frames):
    write_pcap_bytes(tmp_path / "in.pcap", [(T0 + i, f) for i, f in enumerate(frames)])
    r = run_pipeline(tmp_path, pipeline({"rules": RULES, "stateful": True, "sanity": True,
                                         "rate": 1e9, "deny": "output"}, ("allow", "deny")))
    e = fw_stats(r)
    assert e["in"] == len(frames)
    assert sum(e["out"].values()) + sum(e["drops"].values()) == len(frames)
    assert set(e["drops"]) <= {"malformed:eth", "malformed:vlan", "malformed:arp",
                               "malformed:ipv4", "malformed:ipv6", "malformed:l4", "not-ip",
                               "bad-checksum", "ttl-expired"}
    out = frames_of(tmp_path / "allow.pcap") + frames_of(tmp_path / "deny.pcap")
    assert sorted(out) == sorted(f for f in out if f in frames)


# --- params ------------------------------------------------------------------------

def test_param_errors_say_where(tmp_path):
    text = """\
ports: {src: "gen:count=1", dst: sink}
elements:
  fw:
    type: filter
    rules:
      - {action: allow, dst: 198.19.0.0/16}
      - {action: deny}
      - {action: allow, dst: 198.19.0.0/33}
links: ["src -> fw -> dst"]
"""
    (tmp_path / "p.yaml").write_text(text)
    r = run_cli("check", "p.yaml", cwd=tmp_path)
    assert r.code == 2, str(r)
    assert "p.yaml:8:30: element 'fw' (filter): rules[2].dst: expected an IP prefix" in r.err


@pytest.mark.parametrize("rule,path,msg", [
    ({"action": "maybe"}, (0, "action"), "expected 'allow' or 'deny'"),
    ({"dst": "198.19.0.0/16"}, (0,), "missing 'action'"),
    ({"action": "allow", "prot": "tcp"}, (0, "prot"), "unknown key 'prot'"),
    ({"action": "allow", "proto": "tcpp"}, (0, "proto"), "expected tcp, udp"),
    ({"action": "allow", "dport": "80-70"}, (0, "dport"), "a port"),
    ({"action": "allow", "proto": "icmp", "dport": 80}, (0, "dport"), "ports need proto"),
    ({"action": "allow", "src": "198.18.0.1", "dst": "2001:2::/48"}, (0, "dst"), "different"),
    ({"action": "allow", "src": "2001:2::/48", "family": "ipv4"}, (0, "family"), "differs"),
])
def test_rule_errors(rule, path, msg):
    from nmroute.errors import ParamError
    from nmroute.fastpath.elements.filter import _rules
    with pytest.raises(ParamError) as e:
        _rules([rule])
    assert e.value.path == path and msg in str(e.value)


def test_conntrack_needs_stateful():
    assert Filter.check({"conntrack": "t", "stateful": False})
    assert not Filter.check({"conntrack": "t", "stateful": True})


# --- the firewall example ---------------------------------------------------------------

def test_firewall_pipeline_runs_as_is(tmp_path):
    for f in ("firewall.yaml", "firewall-inside.pcap", "firewall-outside.pcap"):
        (tmp_path / "pipelines").mkdir(exist_ok=True)
        shutil.copy(REPO / "pipelines" / f, tmp_path / "pipelines" / f)
    r = run_pipeline(tmp_path, (REPO / "pipelines" / "firewall.yaml").read_text())
    inside = frames_of(tmp_path / "pipelines" / "firewall-inside.pcap")
    outside = frames_of(tmp_path / "pipelines" / "firewall-outside.pcap")
    to_out = frames_of(tmp_path / "firewall-to-outside.pcap")
    to_in = frames_of(tmp_path / "firewall-to-inside.pcap")
    import importlib.util
    spec = importlib.util.spec_from_file_location("fwpcap", REPO / "pipelines" / "firewall_pcap.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert to_out == [inside[i] for i in mod.INSIDE_ALLOWED]
    assert to_in == [outside[i] for i in mod.OUTSIDE_ALLOWED]
    assert r.stats["elements"]["fw_in"]["drops"] == {"denied": len(outside) - len(to_in)}
    assert r.stats["elements"]["fw_out"]["drops"] == {"denied": 2, "not-ip": 1}
