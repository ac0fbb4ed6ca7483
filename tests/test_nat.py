"""nat: scapy-built packets from inside and outside, outputs read back per
output and compared with scapy-built expectations (checksums recomputed by
scapy), checksums also validated by tshark; port exhaustion, expiry, ICMP
echo, ICMP errors both ways (RFC 5508), TCP close and the transitory timeout
(RFC 5382); malformed and random frames (hypothesis).

Each input file is one pcap port; all files are smaller than a batch, so
the executor takes them in the order they are declared, one batch each:
inside traffic first, then the replies. `clock: packet` makes expiry follow
the files' timestamps."""
import shutil
import subprocess

from helpers import REPO, read_pcap, run_pipeline, write_pcap_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000
EXT = "198.18.255.1"
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
ETH_BACK = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")


def nat_yaml(n_inputs, **params):
    p = {"external": EXT, "ports": "20000-20999", "clock": "packet", **params}
    ports = "\n".join(f"          in{i}: pcap:in{i}.pcap" for i in range(n_inputs))
    links = "\n".join(f"          - in{i} -> nat" for i in range(1, n_inputs))
    params_text = ", ".join(f"{k}: {v!r}" if isinstance(v, str) else f"{k}: {v}"
                            for k, v in p.items())
    return f"""
        ports:
{ports}
          out: {{port: pcap:out.pcap, precision: ns}}
          back: {{port: pcap:back.pcap, precision: ns}}
        elements:
          nat: {{type: nat, {params_text}}}
        links:
          - in0 -> nat -> out
{links}
          - nat [in] -> back
        """


def run_nat(tmp_path, inputs, **params):
    """inputs: one list of (ts_ns, scapy packet or bytes) per input port."""
    for i, frames in enumerate(inputs):
        write_pcap_bytes(tmp_path / f"in{i}.pcap", [(t, bytes(f)) for t, f in frames],
                         nsec=True)
    r = run_pipeline(tmp_path, nat_yaml(len(inputs), **params))
    out = [f for _, f in read_pcap(tmp_path / "out.pcap")]
    back = [f for _, f in read_pcap(tmp_path / "back.pcap")]
    return r, out, back


def tshark_bad(path):
    """Frames tshark finds with a bad IP/TCP/UDP/ICMP checksum."""
    flt = ('ip.checksum.status == "Bad" || tcp.checksum.status == "Bad" || '
           'udp.checksum.status == "Bad" || icmp.checksum.status == "Bad"')
    r = subprocess.run(["tshark", "-r", str(path), "-o", "ip.check_checksum:TRUE",
                        "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
                        "-Y", flt], capture_output=True, text=True, check=True)
    return r.stdout.strip().splitlines()


def elem(r):
    return r.stats["elements"]["nat"]


# --- translation --------------------------------------------------------------------

def inside_traffic():
    return [
        ETH / IP(src="198.18.0.10", dst="198.19.0.1", ttl=64) / UDP(sport=5555, dport=53)
        / Raw(b"query"),
        ETH / IP(src="198.18.0.10", dst="198.19.0.2") / TCP(sport=40000, dport=80, flags="S",
                                                             seq=1000),
        ETH / IP(src="198.18.0.11", dst="198.19.0.3") / ICMP(type=8, id=77, seq=1)
        / Raw(b"ping"),
        ETH / IP(src="198.18.0.11", dst="198.19.0.1") / UDP(sport=5555, dport=53, chksum=0)
        / Raw(b"nocsum"),
    ]


def translated_out(pkt, port):
    """What NAT should send out for an inside packet: source and port (or
    echo id) replaced, checksums recomputed (a UDP checksum of 0 kept)."""
    q = pkt.copy()
    q[IP].src = EXT
    del q[IP].chksum
    if UDP in q:
        q[UDP].sport = port
        if pkt[UDP].chksum != 0:
            del q[UDP].chksum
    elif TCP in q:
        q[TCP].sport = port
        del q[TCP].chksum
    else:
        q[ICMP].id = port
        del q[ICMP].chksum
    return bytes(q)


def replies_to_inside_traffic():
    """The outside's replies to inside_traffic(), as sent to the NAT."""
    return [
        ETH_BACK / IP(src="198.19.0.1", dst=EXT) / UDP(sport=53, dport=20000) / Raw(b"answer"),
        ETH_BACK / IP(src="198.19.0.2", dst=EXT) / TCP(sport=80, dport=20000, flags="SA",
                                                      ack=1001),
        ETH_BACK / IP(src="198.19.0.3", dst=EXT) / ICMP(type=0, id=20000, seq=1) / Raw(b"ping"),
        ETH_BACK / IP(src="198.19.0.1", dst=EXT) / UDP(sport=53, dport=20001, chksum=0)
        / Raw(b"x"),
    ]


def translated_back(rep, orig):
    """What NAT should send in for a reply `rep` to the inside packet `orig`:
    destination and port (or echo id) replaced, checksums recomputed (a UDP
    checksum of 0 kept)."""
    q = rep.copy()
    q[IP].dst = orig[IP].src
    del q[IP].chksum
    if UDP in q:
        q[UDP].dport = orig[UDP].sport
        if rep[UDP].chksum != 0:
            del q[UDP].chksum
    elif TCP in q:
        q[TCP].dport = orig[TCP].sport
        del q[TCP].chksum
    else:
        q[ICMP].id = orig[ICMP].id
        del q[ICMP].chksum
    return bytes(q)


def test_outbound_translation_and_replies(tmp_path):
    inside = inside_traffic()
    replies = replies_to_inside_traffic() + [
        # unknown inbound: wrong remote port, unused external port, a protocol, a request
        ETH_BACK / IP(src="198.19.0.1", dst=EXT) / UDP(sport=54, dport=20000),
        ETH_BACK / IP(src="198.19.0.1", dst=EXT) / UDP(sport=53, dport=20500),
        ETH_BACK / IP(src="198.19.0.9", dst=EXT) / TCP(sport=80, dport=20000),
        ETH_BACK / IP(src="198.19.0.3", dst=EXT) / ICMP(type=8, id=20000),
        ETH_BACK / IP(src="198.19.0.3", dst=EXT, proto=47) / Raw(b"\x00" * 8),
    ]
    r, out, back = run_nat(tmp_path, [[(T0, p) for p in inside], [(T0 + S, p) for p in replies]])
    # UDP and TCP and ICMP have a port pool each; the second UDP flow gets the next port.
    assert out == [translated_out(inside[0], 20000), translated_out(inside[1], 20000),
                   translated_out(inside[2], 20000), translated_out(inside[3], 20001)]
    assert back == [translated_back(rep, orig) for rep, orig in zip(replies[:4], inside)]
    assert Ether(back[3])[UDP].chksum == 0          # 0 stays 0
    assert elem(r)["drops"] == {"nat-no-mapping": 5}
    assert elem(r)["out"] == {"out": 4, "in": 4}
    assert tshark_bad(tmp_path / "out.pcap") == []
    assert tshark_bad(tmp_path / "back.pcap") == []


def test_counters_reported(tmp_path):
    inside = inside_traffic()
    r, out, _ = run_nat(tmp_path, [[(T0, p) for p in inside + inside],
                                  [(T0, ETH_BACK / IP(src="198.19.0.7", dst=EXT) / UDP())]])
    assert len(out) == 8
    row = [ln for ln in r.out.splitlines() if ln.split()[:1] == ["nat"]]
    assert row and row[0].endswith(
        "flows=4, allocations=4, expirations=0, port_exhaustion=0, unknown_inbound=1, "
        "tcp_transitory=0, tcp_reused=0"), r.out


def test_not_ipv4_and_fragments_dropped(tmp_path):
    frames = [
        ETH / IPv6(src="2001:2::1", dst="2001:2::2") / UDP(),
        ETH / ARP(psrc="198.18.0.1", pdst="198.18.0.2"),
        ETH / IP(src="198.18.0.10", dst="198.19.0.1", flags="MF", frag=0) / UDP() / Raw(b"a" * 8),
        ETH / IP(src="198.18.0.10", dst="198.19.0.1", frag=3, proto=17) / Raw(b"a" * 8),
        ETH / IP(src="198.18.0.10", dst="198.19.0.1", proto=47) / Raw(b"gre"),
        ETH / IP(src="198.18.0.10", dst="198.19.0.1") / ICMP(type=0, id=5),
        ETH / IP(src="198.18.0.10", dst="198.19.0.1", ihl=6) / b"\x00\x00",   # bad IHL
        ETH / IP(src="198.18.0.10", dst="198.19.0.1", proto=6) / Raw(b"\x00" * 10),  # short TCP
    ]
    r, out, back = run_nat(tmp_path, [[(T0, p) for p in frames]])
    assert out == [] and back == []
    assert elem(r)["drops"] == {"not-ip": 2, "fragment": 2, "nat-no-mapping": 2,
                                "malformed:ipv4": 1, "malformed:l4": 1}


def test_bad_config_refused(tmp_path):
    from helpers import BAD_CONFIG
    for params, msg in [("external: 2001:2::1", "the NAT is IPv4 only"),
                        ("external: 198.18.0.0/16", "at most 64 addresses, got 65534"),
                        ("external: 198.18.0.1, ports: 70000", "expected a port"),
                        ("ports: 1-2", "external")]:
        r = run_pipeline(tmp_path, f"""
            ports: {{src: "gen:count=1"}}
            elements: {{nat: {{type: nat, {params}}}}}
            links: ["src -> nat -> sink", "nat [in] -> drop"]
            """, expect=BAD_CONFIG)
        assert msg in r.err, (params, r.err)


def test_external_range_pairs_each_host_with_one_address(tmp_path):
    frames = [udp_from(i % 20, 1000 + i) for i in range(100)]
    r, out, _ = run_nat(tmp_path, [[(T0, p) for p in frames]],
                        external="198.18.255.1-198.18.255.4")
    seen = {}
    for p, f in zip(frames, out):
        seen.setdefault(p[IP].src, set()).add(Ether(f)[IP].src)
    assert all(len(v) == 1 for v in seen.values())
    assert set().union(*seen.values()) <= {f"198.18.255.{i}" for i in range(1, 5)}
    assert len(set().union(*seen.values())) > 1
    assert len({(Ether(f)[IP].src, Ether(f)[UDP].sport) for f in out}) == 100


# --- ports, table, expiry -----------------------------------------------------------

def udp_from(i, sport=1000, dst="198.19.0.1"):
    return ETH / IP(src=f"198.18.{i // 250}.{i % 250 + 1}", dst=dst) / UDP(sport=sport, dport=7)


def test_port_exhaustion(tmp_path):
    frames = [udp_from(i) for i in range(3)] + [udp_from(0)]
    r, out, _ = run_nat(tmp_path, [[(T0, p) for p in frames]], ports="20000-20001")
    assert [Ether(f)[UDP].sport for f in out] == [20000, 20001, 20000]
    assert elem(r)["drops"] == {"nat-no-port": 1}
    assert "port_exhaustion=1" in r.out


def test_table_full(tmp_path):
    frames = [udp_from(i) for i in range(3)]
    r, out, _ = run_nat(tmp_path, [[(T0, p) for p in frames]], max_flows=2)
    assert len(out) == 2
    assert elem(r)["drops"] == {"table-full": 1}


def test_expiry_and_refresh(tmp_path):
    """A (refreshed at 0.8 s) outlives a 1 s timeout at 1.5 s; B does not."""
    a, b = udp_from(0, 1111), udp_from(1, 2222)
    reply = lambda port, dst_port=7: (ETH_BACK / IP(src="198.19.0.1", dst=EXT)   # noqa: E731
                                      / UDP(sport=dst_port, dport=port))
    r, out, back = run_nat(
        tmp_path,
        [[(T0, a), (T0, b)], [(T0 + 8 * S // 10, reply(20000))],
         [(T0 + 15 * S // 10, reply(20000)), (T0 + 15 * S // 10, reply(20001))]],
        udp_timeout=1)
    assert len(out) == 2
    assert [Ether(f)[UDP].dport for f in back] == [1111, 1111]
    assert elem(r)["drops"] == {"nat-no-mapping": 1}
    assert "expirations=1" in r.out and "flows=1," in r.out


def test_expired_port_is_reused(tmp_path):
    r, out, _ = run_nat(tmp_path, [[(T0, udp_from(0))], [(T0 + 5 * S, udp_from(1))]],
                        ports="20000-20000", udp_timeout=2)
    assert [Ether(f)[UDP].sport for f in out] == [20000, 20000]
    assert "expirations=1" in r.out


def test_many_flows_expire_and_are_replaced(tmp_path):
    """200 flows, then 200 others after the first expired (every table entry
    deleted and reinserted), then a reply to each of the new ones."""
    old = [udp_from(i, 3000 + i) for i in range(200)]
    new = [udp_from(i, 4000 + i, dst="198.19.0.2") for i in range(200)]
    r, out, back = run_nat(tmp_path, [
        [(T0, p) for p in old], [(T0 + 10 * S, p) for p in new], []], udp_timeout=1,
        max_flows=256)
    assert len(out) == 400
    ports = {Ether(f)[IP].src + ":" + str(Ether(f)[UDP].sport): Ether(f)[UDP].sport
             for f in out[200:]}
    assert len(set(ports.values())) == 200
    # Replies, in a second run with the same traffic plus the replies.
    tmp2 = tmp_path / "2"
    tmp2.mkdir()
    mapping = {}
    for p, f in zip(new, out[200:]):
        mapping[Ether(f)[UDP].sport] = (p[IP].src, p[UDP].sport)
    replies = [ETH_BACK / IP(src="198.19.0.2", dst=EXT) / UDP(sport=7, dport=port)
               for port in sorted(mapping)]
    r2, out2, back2 = run_nat(tmp2, [
        [(T0, p) for p in old], [(T0 + 10 * S, p) for p in new],
        [(T0 + 10 * S, p) for p in replies]], udp_timeout=1, max_flows=256)
    assert out2 == out
    got = [(Ether(f)[IP].dst, Ether(f)[UDP].dport) for f in back2]
    assert got == [mapping[port] for port in sorted(mapping)]
    assert "expirations=200" in r2.out


def test_partial_expiry_keeps_surviving_flows_findable(tmp_path):
    """A crowded table (60 flows in 128 buckets): the even flows expire, the
    odd ones were refreshed. Deleting the even ones from the middle of probe
    runs must leave every odd one findable: it keeps its port."""
    flows = [udp_from(i, 7000 + i) for i in range(60)]
    odd = flows[1::2]
    r, out, _ = run_nat(tmp_path, [
        [(T0, p) for p in flows], [(T0 + 6 * S // 10, p) for p in odd],
        [(T0 + 15 * S // 10, p) for p in odd + flows[0::2]]], udp_timeout=1, max_flows=64)
    port = [Ether(f)[UDP].sport for f in out]
    first, again, last = port[:60], port[60:90], port[90:]
    assert first == list(range(20000, 20060))
    assert again == first[1::2]
    assert last[:30] == first[1::2]                         # found, not reallocated
    assert last[30:] == list(range(20060, 20090))           # new ports for expired flows
    assert "expirations=30" in r.out and "flows=60," in r.out


# --- ICMP errors (RFC 5508) ---------------------------------------------------------

def quote_error(inner_sent, typ, code, keep=None, src="198.19.99.1"):
    """An ICMP error from `src` to the NAT quoting `inner_sent` (bytes of the
    IP packet the NAT sent), cut to `keep` bytes."""
    inner = inner_sent[:keep] if keep else inner_sent
    return ETH_BACK / IP(src=src, dst=EXT) / ICMP(type=typ, code=code) / Raw(inner)


def test_icmp_errors_quoting_translated_packets(tmp_path):
    inside = inside_traffic()[:3]
    sent = [Ether(translated_out(p, 20000))[IP] for p in inside]
    errors = [
        quote_error(bytes(sent[0]), 3, 3),              # port unreachable, whole UDP packet
        quote_error(bytes(sent[1]), 11, 0, keep=28),    # time exceeded, 8 bytes of TCP
        quote_error(bytes(sent[1]), 3, 1, keep=40),     # whole TCP header quoted
        quote_error(bytes(sent[2]), 3, 1),              # host unreachable for an echo
        # quoting a flow that does not exist, and a cut-short quote
        quote_error(bytes(Ether(translated_out(inside[0], 20007))[IP]), 3, 3),
        quote_error(bytes(sent[0]), 3, 3, keep=24),
    ]
    r, out, back = run_nat(tmp_path, [[(T0, p) for p in inside], [(T0, p) for p in errors]])
    assert len(out) == 3
    exp = []
    for orig, keep, (typ, code) in [(inside[0], None, (3, 3)), (inside[1], 28, (11, 0)),
                                    (inside[1], 40, (3, 1)), (inside[2], None, (3, 1))]:
        inner = bytes(orig[IP])
        inner = inner[:keep] if keep else inner
        exp.append(bytes(ETH_BACK / IP(src="198.19.99.1", dst=orig[IP].src)
                         / ICMP(type=typ, code=code) / Raw(inner)))
    assert back == exp
    # The quoted headers read back as the inside host's own, checksums right.
    q = Ether(back[0])
    assert q[IPerror].src == "198.18.0.10" and q[UDPerror].sport == 5555
    assert Ether(back[2])[TCPerror].sport == 40000
    assert elem(r)["drops"] == {"nat-no-mapping": 1, "malformed": 1}
    assert tshark_bad(tmp_path / "back.pcap") == []


def inside_error(received, typ, code, keep=None, src=None, dst=None):
    """An ICMP error from inside (from the host the quoted packet reached,
    or from `src`, a router) quoting `received`, the frame NAT sent in, cut
    to `keep` bytes of its IP packet."""
    inner = Ether(received)[IP]
    data = bytes(inner)[:keep] if keep else bytes(inner)
    return (ETH / IP(src=src or inner.dst, dst=dst or inner.src) / ICMP(type=typ, code=code)
            / Raw(data))


def test_icmp_errors_from_inside_quoting_packets_let_in(tmp_path):
    """RFC 5508 section 4.2: an inside host's (or router's) error about a
    packet that came in through a flow leaves with the quoted destination
    translated back to the external address and port, as the remote sent
    it, and the outer source the external address."""
    inside = inside_traffic()
    replies = replies_to_inside_traffic()
    received = [translated_back(rep, orig) for rep, orig in zip(replies, inside)]
    cases = [  # (quoted reply, type, code, keep, sender)
        (0, 3, 3, None, None),              # port unreachable, whole UDP datagram
        (1, 11, 0, 28, "198.18.0.254"),     # a router's time exceeded, 8 bytes of TCP
        (1, 12, 0, 40, None),               # parameter problem, whole TCP header
        (2, 3, 1, None, "198.18.0.254"),    # host unreachable for an echo reply
        (3, 3, 3, None, None),              # a UDP datagram without checksum
    ]
    errors = [inside_error(received[i], typ, code, keep, src)
              for i, typ, code, keep, src in cases]
    stray = ETH / IP(src="198.19.0.1", dst="198.18.0.10") / UDP(sport=54, dport=5555)
    echo_req = ETH / IP(src="198.19.0.3", dst="198.18.0.11") / ICMP(type=8, id=77)
    errors += [
        inside_error(bytes(stray), 3, 3),                # no flow has that remote port
        inside_error(bytes(echo_req), 3, 1),             # quotes a request: no flow
        inside_error(received[0], 3, 3, keep=24),        # cut short
        ETH / IP(src="198.18.0.10", dst="198.19.0.1") / ICMP(type=5, code=1)
        / Raw(bytes(Ether(received[0])[IP])),            # a redirect: not translated
        ETH / IPv6(src="2001:2::10", dst="2001:2:0:1::1") / Raw(
            bytes.fromhex("01040000") + b"\x00" * 4 + b"\x60" + b"\x00" * 47),  # ICMPv6
    ]
    errors[-1][IPv6].nh = 58
    r, out, back = run_nat(tmp_path, [[(T0, p) for p in inside], [(T0, p) for p in replies],
                                      [(T0, p) for p in errors]])
    assert back == received
    assert out[:4] == [translated_out(inside[0], 20000), translated_out(inside[1], 20000),
                       translated_out(inside[2], 20000), translated_out(inside[3], 20001)]
    exp = []
    for i, typ, code, keep, _ in cases:
        sent = bytes(Ether(bytes(replies[i]))[IP])       # the reply as the remote sent it
        exp.append(bytes(ETH / IP(src=EXT, dst=replies[i][IP].src)
                         / ICMP(type=typ, code=code) / Raw(sent[:keep] if keep else sent)))
    assert out[4:] == exp
    # The quoted headers read back as what the remote sent, checksums right.
    q = Ether(out[4])
    assert q[IP].src == EXT and q[IPerror].dst == EXT and q[UDPerror].dport == 20000
    assert Ether(out[5])[IP].src == EXT and Ether(out[5])[TCPerror].dport == 20000
    assert Ether(out[8])[UDPerror].chksum == 0                  # 0 stays 0
    assert elem(r)["drops"] == {"nat-no-mapping": 3, "malformed": 1, "not-ip": 1}
    assert "unknown_inbound=0" in r.out and "flows=4," in r.out
    assert tshark_bad(tmp_path / "out.pcap") == []


def test_icmp_error_from_inside_refreshes_no_flow(tmp_path):
    """A flow whose only traffic after 0.8 s is an inside host's error about
    it expires at 1 s as if idle, and the next error about it is dropped."""
    out_pkt = inside_traffic()[0]
    reply = replies_to_inside_traffic()[0]
    err = inside_error(translated_back(reply, out_pkt), 3, 3)
    r, out, back = run_nat(tmp_path, [[(T0, out_pkt)], [(T0 + S // 2, reply)],
                                      [(T0 + 8 * S // 10, err)], [(T0 + 16 * S // 10, err)]],
                           udp_timeout=1)
    assert len(out) == 2 and len(back) == 1
    assert elem(r)["drops"] == {"nat-no-mapping": 1}
    assert "expirations=1" in r.out


# --- TCP close (RFC 5382) -----------------------------------------------------------

def tcp_out(sport, flags, dport=80):
    return ETH / IP(src="198.18.0.10", dst="198.19.0.2") / TCP(sport=sport, dport=dport,
                                                               flags=flags)


def tcp_in(port, flags, sport=80):
    return ETH_BACK / IP(src="198.19.0.2", dst=EXT) / TCP(sport=sport, dport=port, flags=flags)


def test_tcp_close_moves_flow_to_transitory_timeout(tmp_path):
    """Five connections (ports 20000-20004): A closes with a FIN each way, B
    with one FIN only, C is reset from outside, D from inside, E closes
    with a FIN each way but is refreshed later. With a 2 s transitory and
    100 s established timeout, at 4 s A, C and D are gone (idle 3 s), B
    lives on the established timeout and E (idle 1.5 s) on the transitory."""
    a, b, c, d, e = 20000, 20001, 20002, 20003, 20004
    syns = [tcp_out(40001 + i, "S") for i in range(5)]
    closes = [tcp_out(40001, "FA"), tcp_in(a, "FA"), tcp_out(40002, "FA"), tcp_in(c, "R"),
              tcp_out(40004, "RA"), tcp_in(e, "FA"), tcp_out(40005, "FA")]
    acks = [tcp_in(p, "A") for p in (a, b, c, d, e)]
    r, out, back = run_nat(tmp_path, [
        [(T0, p) for p in syns], [(T0 + S, p) for p in closes],
        [(T0 + 25 * S // 10, tcp_out(40005, "A"))], [(T0 + 4 * S, p) for p in acks]],
        tcp_timeout=100, tcp_transitory_timeout=2)
    assert [Ether(f)[TCP].sport for f in out] == [a, b, c, d, e, a, b, d, e, e]
    assert [Ether(f)[TCP].dport for f in back] == [40001, 40003, 40005, 40002, 40005]
    assert [str(Ether(f)[TCP].flags) for f in back] == ["FA", "R", "FA", "A", "A"]
    assert elem(r)["drops"] == {"nat-no-mapping": 3}
    assert "flows=2, allocations=5, expirations=3," in r.out
    assert "tcp_transitory=4, tcp_reused=0" in r.out
    assert tshark_bad(tmp_path / "out.pcap") == []
    assert tshark_bad(tmp_path / "back.pcap") == []


def test_syn_reopens_a_closing_flow(tmp_path):
    """F and G are reset at 1 s; F's inside host opens the same 5-tuple
    again at 2 s: it keeps its port and the established timeout, and its
    SYN-ACK at 10 s gets in. G expired on the 2 s transitory timeout."""
    r, out, back = run_nat(tmp_path, [
        [(T0, tcp_out(40010, "S")), (T0, tcp_out(40011, "S"))],
        [(T0 + S, tcp_in(20000, "R")), (T0 + S, tcp_in(20001, "R"))],
        [(T0 + 2 * S, tcp_out(40010, "S"))],
        [(T0 + 10 * S, tcp_in(20000, "SA")), (T0 + 10 * S, tcp_in(20001, "SA"))]],
        tcp_timeout=100, tcp_transitory_timeout=2)
    assert [Ether(f)[TCP].sport for f in out] == [20000, 20001, 20000]
    assert [Ether(f)[TCP].dport for f in back] == [40010, 40011, 40010]
    assert elem(r)["drops"] == {"nat-no-mapping": 1}
    assert "tcp_transitory=2, tcp_reused=1" in r.out and "expirations=1," in r.out


def test_transitory_timeout_defaults_to_240s(tmp_path):
    """Defaults: a flow closed at 1 s still answers at 200 s (idle 199 s);
    another closed at 1 s is gone at 242 s (idle 241 s), while an open one,
    idle as long, is not (established: 7440 s)."""
    r, out, back = run_nat(tmp_path, [
        [(T0, tcp_out(40001 + i, "S")) for i in range(3)],
        [(T0 + S, tcp_in(20000, "R")), (T0 + S, tcp_in(20001, "R"))],
        [(T0 + 200 * S, tcp_in(20000, "A"))],
        [(T0 + 242 * S, tcp_in(20001, "A")), (T0 + 242 * S, tcp_in(20002, "A"))]])
    assert [Ether(f)[TCP].dport for f in back] == [40001, 40002, 40001, 40003]
    assert elem(r)["drops"] == {"nat-no-mapping": 1}
    assert "expirations=1," in r.out


# --- fuzz ---------------------------------------------------------------------------

def mutated(data, seed):
    rnd = __import__("random").Random(seed)
    b = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        b[rnd.randrange(len(b))] = rnd.randrange(256)
    return bytes(b[:rnd.randint(0, len(b))]) if rnd.random() < 0.3 else bytes(b)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(st.binary(min_size=0, max_size=120), max_size=40),
       seeds=st.lists(st.integers(0, 2**32), min_size=1, max_size=40))
def test_fuzz_random_and_mutated_frames(tmp_path, frames, seeds):
    inside = inside_traffic()
    reply = replies_to_inside_traffic()[0]
    base = [bytes(p) for p in inside] + [
        bytes(quote_error(bytes(Ether(translated_out(inside[0], 20000))[IP]), 3, 3)),
        bytes(inside_error(translated_back(reply, inside[0]), 3, 3)),
        bytes(inside_error(translated_back(reply, inside[0]), 11, 0, keep=28)),
        bytes(ETH_BACK / IP(src="198.19.0.1", dst=EXT) / UDP(sport=53, dport=20000)),
        bytes(tcp_in(20000, "R")), bytes(tcp_out(40000, "FA")), bytes(tcp_out(40000, "S"))]
    fz = [bytes(f) for f in frames] + [mutated(base[s % len(base)], s) for s in seeds]
    fz = [f for f in fz if f]
    shutil.rmtree(tmp_path / "f", ignore_errors=True)
    d = tmp_path / "f"
    d.mkdir()
    r, out, back = run_nat(d, [[(T0, p) for p in base[:4]], [(T0, f) for f in fz]],
                           ports="20000-20002")
    e = elem(r)
    assert e["in"] == 4 + len(fz)
    assert len(out) == e["out"].get("out", 0) and len(back) == e["out"].get("in", 0)


# --- the example pipeline -----------------------------------------------------------

def test_example_gateway_pipeline_runs(tmp_path):
    text = (REPO / "pipelines" / "nat.yaml").read_text()
    work = tmp_path / "repo"
    (work / "pipelines").mkdir(parents=True)
    for f in (REPO / "pipelines").glob("nat*"):
        shutil.copy(f, work / "pipelines" / f.name)
    r = run_pipeline(work, text)
    e = r.stats["elements"]["nat"]
    assert e == {"in": 20, "out": {"out": 9, "in": 10}, "drops": {"nat-no-mapping": 1}}
    inside = read_pcap(work / "nat-to-inside.pcap")
    outside = read_pcap(work / "nat-to-outside.pcap")
    assert all(Ether(f)[IP].src == EXT for _, f in outside)
    assert all(Ether(f)[IP].dst.startswith("198.18.0.") for _, f in inside)
    assert tshark_bad(work / "nat-to-inside.pcap") == []
    assert tshark_bad(work / "nat-to-outside.pcap") == []
