"""neighbor: ARP requests and neighbour solicitations for the router's own
addresses answered (replies parsed by scapy, NA checksums recomputed by
scapy and checked by tshark), requests for other addresses passed on,
learning shared with `route` through a named table, malformed and random
frames with exact accounting; and the example router pipeline
(pipelines/router.yaml) run as it is, outputs checked per side."""
import shutil
import subprocess

import pytest
from helpers import REPO, read_pcap, run_pipeline, write_pcap_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr,
    IPv6)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

T0 = 1_700_000_000_000_000_000
ME4, ME6, MY_MAC = "198.18.0.1", "2001:2::1", "02:00:00:00:01:0a"
ME6B = "2001:2:0:1::1"
HOST_MAC = "02:00:00:00:0a:10"


def nb_yaml(extra_elements="", links="- in -> nb -> out\n          - nb [reply] -> reply",
            table=""):
    return f"""
        ports:
          in: pcap:in.pcap
          out: {{port: pcap:out.pcap, precision: ns}}
          reply: {{port: pcap:reply.pcap, precision: ns}}
        elements:
          nb:
            type: neighbor
            addresses:
              - {{ip: {ME4}, mac: "{MY_MAC}"}}
              - {{ip: "{ME6}", mac: "{MY_MAC}"}}
              - {{ip: "{ME6B}", mac: "02:00:00:00:01:0b"}}
            {table}
{extra_elements}
        links:
          {links}
        """


def run_nb(tmp_path, frames, text=None):
    write_pcap_bytes(tmp_path / "in.pcap", [(T0 + i, bytes(f)) for i, f in enumerate(frames)],
                     nsec=True)
    r = run_pipeline(tmp_path, text or nb_yaml())
    out = [f for _, f in read_pcap(tmp_path / "out.pcap")]
    reply = ([f for _, f in read_pcap(tmp_path / "reply.pcap")]
             if (tmp_path / "reply.pcap").exists() else [])
    return r, out, reply


def arp_request(pdst, psrc="198.18.0.10", mac=HOST_MAC):
    return Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=mac, psrc=psrc,
                                                         pdst=pdst)


def ns(target, src="2001:2::10", mac=HOST_MAC, hlim=255, slla=True):
    p = (Ether(src=mac, dst="33:33:ff:00:00:01")
         / IPv6(src=src, dst="ff02::1:ff00:1", hlim=hlim) / ICMPv6ND_NS(tgt=target))
    return p / ICMPv6NDOptSrcLLAddr(lladdr=mac) if slla else p


def recomputed_icmpv6_ok(frame: bytes) -> bool:
    """scapy recomputes the ICMPv6 checksum: the same as the frame's?"""
    p = Ether(frame)
    icmp = p[IPv6].payload
    got = icmp.cksum
    del icmp.cksum
    return Ether(bytes(p))[IPv6].payload.cksum == got


def tshark_icmpv6(path, status):
    # tshark always checks ICMPv6 checksums (it has no icmpv6.check_checksum pref).
    r = subprocess.run(["tshark", "-r", str(path),
                        "-Y", f'icmpv6.checksum.status == "{status}"'],
                       capture_output=True, text=True, check=True)
    return r.stdout.strip().splitlines()


# --- ARP ---------------------------------------------------------------------------

def test_arp_request_for_own_address_is_answered(tmp_path):
    req = arp_request(ME4)
    r, out, reply = run_nb(tmp_path, [req])
    assert out == []
    (f,) = reply
    p = Ether(f)
    assert p.dst == HOST_MAC and p.src == MY_MAC and p.type == 0x0806
    a = p[ARP]
    assert (a.op, a.hwsrc, a.psrc, a.hwdst, a.pdst) == (2, MY_MAC, ME4, HOST_MAC,
                                                         "198.18.0.10")
    assert (a.hwtype, a.ptype, a.hwlen, a.plen) == (1, 0x0800, 6, 4)
    assert len(f) == len(bytes(req))
    e = r.stats["elements"]["nb"]
    assert e["out"] == {"out": 0, "reply": 1}
    assert "arp_replies=1" in r.out


def test_arp_in_a_vlan_is_answered_in_it(tmp_path):
    req = (Ether(src=HOST_MAC, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=7)
           / ARP(op=1, hwsrc=HOST_MAC, psrc="198.18.0.10", pdst=ME4))
    r, out, reply = run_nb(tmp_path, [req])
    (f,) = reply
    p = Ether(f)
    assert p[Dot1Q].vlan == 7 and p[ARP].op == 2 and p[ARP].psrc == ME4


def test_requests_for_other_addresses_and_replies_pass_unchanged(tmp_path):
    frames = [bytes(arp_request("198.18.0.2")),
              bytes(Ether(src=HOST_MAC, dst=MY_MAC) / ARP(op=2, hwsrc=HOST_MAC,
                                                           psrc="198.18.0.10", pdst=ME4)),
              bytes(ns("2001:2::2")),
              bytes(ns(ME6, hlim=64)),                      # not valid NDP: passed on
              bytes(Ether(src=HOST_MAC, dst=MY_MAC) / IP(dst=ME4) / UDP()),
              bytes(Ether(src=HOST_MAC, dst=MY_MAC) / IPv6(dst=ME6) / ICMPv6EchoRequest()),
              bytes(Ether(src=HOST_MAC, dst=MY_MAC) / ARP(ptype=0x86DD, pdst=ME4))]
    r, out, reply = run_nb(tmp_path, frames)
    assert reply == []
    assert out == frames


# --- NDP -----------------------------------------------------------------------------

@pytest.mark.parametrize("target", [ME6, ME6B])
def test_solicitation_for_own_address_gets_an_advertisement(tmp_path, target):
    r, out, reply = run_nb(tmp_path, [ns(target)])
    assert out == []
    (f,) = reply
    p = Ether(f)
    mac = MY_MAC if target == ME6 else "02:00:00:00:01:0b"
    assert p.dst == HOST_MAC and p.src == mac
    assert (p[IPv6].src, p[IPv6].dst, p[IPv6].hlim, p[IPv6].nh, p[IPv6].plen) == (
        target, "2001:2::10", 255, 58, 32)
    na = p[ICMPv6ND_NA]
    assert (na.type, na.code, na.R, na.S, na.O, na.tgt) == (136, 0, 1, 1, 1, target)
    assert p[ICMPv6NDOptDstLLAddr].lladdr == mac
    assert recomputed_icmpv6_ok(f)
    assert len(f) == 14 + 40 + 32


def test_dad_solicitation_is_answered_to_all_nodes(tmp_path):
    r, out, reply = run_nb(tmp_path, [ns(ME6, src="::", slla=False)])
    (f,) = reply
    p = Ether(f)
    assert p.dst == "33:33:00:00:00:01" and p[IPv6].dst == "ff02::1"
    assert p[ICMPv6ND_NA].S == 0 and p[ICMPv6ND_NA].R == 1
    assert recomputed_icmpv6_ok(f)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_finds_the_advertisements_checksums_good(tmp_path):
    frames = [ns(ME6), ns(ME6B, src="2001:2::11"), ns(ME6, src="::", slla=False)]
    r, out, reply = run_nb(tmp_path, frames)
    assert len(reply) == 3
    assert len(tshark_icmpv6(tmp_path / "reply.pcap", "Good")) == 3
    assert tshark_icmpv6(tmp_path / "reply.pcap", "Bad") == []


def test_bad_ndp_is_dropped_with_its_reason(tmp_path):
    bad_sum = bytearray(bytes(ns(ME6)))
    bad_sum[14 + 40 + 2] ^= 0x55
    zero_opt = (Ether(src=HOST_MAC, dst=MY_MAC) / IPv6(src="2001:2::10", dst=ME6, hlim=255)
                / ICMPv6ND_NS(tgt=ME6) / Raw(b"\x01\x00" + b"\0" * 6))   # option length 0
    short = bytes(Ether(src=HOST_MAC, dst=MY_MAC)
                  / IPv6(src="2001:2::10", dst=ME6, hlim=255, nh=58)
                  / Raw(bytes([135, 0, 0, 0]) + b"\0" * 8))   # 12 bytes: too short an NS
    r, out, reply = run_nb(tmp_path, [bytes(bad_sum), bytes(zero_opt), short])
    assert out == [] and reply == []
    assert r.stats["elements"]["nb"]["drops"] == {"bad-checksum": 1, "malformed:l4": 2}


# --- learning, shared with route -----------------------------------------------------

ROUTE = """
          r:
            type: route
            table: t1
            routes:
              - {prefix: 198.18.0.0/24, output: lan}
              - {prefix: "2001:2::/64", output: lan}
            macs: {lan: "02:00:00:00:01:0a"}
"""


def test_learned_neighbours_are_used_by_route(tmp_path):
    frames = [arp_request(ME4, psrc="198.18.0.10", mac="02:00:00:00:0a:10"),
              ns(ME6, src="2001:2::20", mac="02:00:00:00:0a:20"),
              Ether(src="02:00:00:00:0a:30", dst=MY_MAC)
              / IPv6(src="2001:2::30", dst="ff02::1", hlim=255)
              / ICMPv6ND_NA(tgt="2001:2::30", R=0, S=0, O=1)
              / ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:0a:30"),
              arp_request("198.18.0.99", psrc="198.18.0.40", mac="02:00:00:00:0a:40")]
    data = [Ether(src="02:00:00:00:00:99", dst=MY_MAC) / IP(src="198.19.0.1", dst=d) / UDP()
            for d in ("198.18.0.10", "198.18.0.40")]
    data += [Ether(src="02:00:00:00:00:99", dst=MY_MAC) / IPv6(src="2001:2:1::1", dst=d)
             / UDP() for d in ("2001:2::20", "2001:2::30")]
    text = nb_yaml(ROUTE, "- in -> nb -> r -> out\n          - nb [reply] -> reply",
                   table="table: t1")
    r, out, reply = run_nb(tmp_path, frames + data, text)
    assert len(reply) == 2
    # Learned: .10 (asked for us), 2001:2::20 (NS), 2001:2::30 (NA); not .40
    # (its request was for someone else).
    assert [Ether(f).dst for f in out] == ["02:00:00:00:0a:10", "02:00:00:00:0a:20",
                                           "02:00:00:00:0a:30"]
    assert "learned=3" in r.out
    assert r.stats["elements"]["r"]["drops"] == {"not-ip": 1, "no-route": 1, "no-neighbor": 1}


def test_without_a_table_nothing_is_learned(tmp_path):
    text = nb_yaml(ROUTE.replace("table: t1", "table: t2"),
                   "- in -> nb -> r -> out\n          - nb [reply] -> reply",
                   table="table: t1")
    frames = [arp_request(ME4), Ether(src="02:00:00:00:00:99", dst=MY_MAC)
              / IP(src="198.19.0.1", dst="198.18.0.10") / UDP()]
    r, out, reply = run_nb(tmp_path, frames, text)
    assert len(reply) == 1 and out == []
    assert r.stats["elements"]["r"]["drops"] == {"no-neighbor": 1}


# --- malformed and random frames ----------------------------------------------------

VALID = [bytes(arp_request(ME4)), bytes(ns(ME6)), bytes(ns(ME6B, src="::", slla=False)),
         bytes(Ether(src=HOST_MAC, dst=MY_MAC) / IP(dst=ME4) / UDP())]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.one_of(
    st.binary(min_size=1, max_size=100),
    st.sampled_from(VALID).flatmap(lambda f: st.integers(1, len(f)).map(lambda n: f[:n])),
    st.sampled_from(VALID).flatmap(
        lambda f: st.tuples(st.integers(12, len(f) - 1), st.integers(0, 255)).map(
            lambda t: f[:t[0]] + bytes([t[1]]) + f[t[0] + 1:]))), min_size=1, max_size=40))
def test_random_and_truncated_frames(tmp_path, frames):
    r, out, reply = run_nb(tmp_path, frames)
    e = r.stats["elements"]["nb"]
    assert e["in"] == len(frames)
    assert e["out"]["out"] == len(out) and e["out"]["reply"] == len(reply)
    assert len(out) + len(reply) + sum(e["drops"].values()) == len(frames)
    assert set(e["drops"]) <= {"bad-checksum"} | {
        f"malformed:{k}" for k in ("eth", "vlan", "arp", "ipv4", "ipv6", "l4")}
    for f in reply:                  # every answer is a well-formed one
        p = Ether(f)
        if ARP in p:
            assert p[ARP].op == 2 and p[ARP].psrc == ME4
        else:
            assert ICMPv6ND_NA in p and recomputed_icmpv6_ok(f)


# --- the example pipeline -----------------------------------------------------------

def test_router_pipeline_runs_as_is(tmp_path):
    work = tmp_path / "repo"
    (work / "pipelines").mkdir(parents=True)
    for f in (REPO / "pipelines").glob("router*"):
        shutil.copy(f, work / "pipelines" / f.name)
    text = (REPO / "pipelines" / "router.yaml").read_text()
    r = run_pipeline(work, text)
    s = r.stats["elements"]
    assert s["r"]["drops"] == {"no-route": 1, "not-ip": 1}
    assert "requests=1" in r.out
    a = [Ether(f) for _, f in read_pcap(work / "router-a-out.pcap")]
    b = [Ether(f) for _, f in read_pcap(work / "router-b-out.pcap")]
    # Side a gets the router's answers to its hosts, and side b's traffic to them.
    assert [p[ARP].op for p in a if ARP in p] == [2]
    assert [p[ICMPv6ND_NA].tgt for p in a if ICMPv6ND_NA in p] == ["2001:2::1"]
    data_a = [p for p in a if ARP not in p and ICMPv6ND_NA not in p]
    assert len(data_a) == 3
    for p in data_a:
        assert p.src == "02:00:00:00:01:0a" and p.dst == "02:00:00:00:0a:10"
        assert (p.getlayer(IP) or p.getlayer(IPv6)).dst in ("198.18.0.10", "2001:2::10")
    # Side b: side a's traffic to the static host .20, the answers to .30,
    # and a request for .99, which nobody knew.
    assert [(p[ARP].op, p[ARP].pdst) for p in b if ARP in p] == [(1, "198.19.0.99"),
                                                                (2, "198.19.0.30")]
    assert [p[ARP].psrc for p in b if ARP in p] == ["198.19.0.1"] * 2
    assert [p[ICMPv6ND_NA].tgt for p in b if ICMPv6ND_NA in p] == ["2001:2:0:1::1"]
    data_b = [p for p in b if ARP not in p and ICMPv6ND_NA not in p]
    assert len(data_b) == 3
    for p in data_b:
        assert p.src == "02:00:00:00:01:0b" and p.dst == "02:00:00:00:0b:20"
    for f in (work / "router-a-out.pcap", work / "router-b-out.pcap"):
        assert all(recomputed_icmpv6_ok(bytes(p)) for p in (a if "-a-" in f.name else b)
                   if ICMPv6ND_NA in p)
        if shutil.which("tshark"):
            assert len(tshark_icmpv6(f, "Good")) == 2          # the NA and an echo request
            assert tshark_icmpv6(f, "Bad") == []


def test_a_shared_table_lives_for_one_run(tmp_path):
    """The second run of the same pipeline starts with an empty table: what
    the first one learned is gone (each run has its own tables)."""
    text = nb_yaml(ROUTE, "- in -> nb -> r -> out\n          - nb [reply] -> reply",
                   table="table: t1")
    data = Ether(src="02:00:00:00:00:99", dst=MY_MAC) / IP(dst="198.18.0.10") / UDP()
    r, out, _ = run_nb(tmp_path, [arp_request(ME4), data], text)
    assert len(out) == 1
    r, out, _ = run_nb(tmp_path, [data], text)
    assert out == [] and r.stats["elements"]["r"]["drops"] == {"no-neighbor": 1}
