"""Makes pipelines/firewall-inside.pcap and firewall-outside.pcap, the two
captures pipelines/firewall.yaml replays.

The traffic is a story told in rounds: in each round one frame arrives from
the inside and one from the outside. firewall.yaml runs with batches of one
packet, and nmroute polls its inputs in turn, so the frames meet the
firewall in exactly this order. INSIDE_ALLOWED / OUTSIDE_ALLOWED are the
indexes of the frames the firewall lets through (tests/test_filter.py
checks them). Run from the repository's root: python pipelines/firewall_pcap.py
"""
from scapy.all import ARP, ICMP, IP, TCP, UDP, Ether, ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.all import Raw, wrpcap

IN_MAC, OUT_MAC = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
HOST, MAIL, WEB, DNS, BLOCKED, PEER = (
    "198.18.0.10", "198.18.0.25", "198.19.0.20", "198.19.0.53", "198.19.0.66", "198.19.0.99")
HOST6, SSH6 = "2001:2::10", "2001:2:0:1::22"


def inside(ip):
    return Ether(src=IN_MAC, dst=OUT_MAC) / ip


def outside(ip):
    return Ether(src=OUT_MAC, dst=IN_MAC) / ip


# (inside frame, allowed?), (outside frame, allowed?) per round.
ROUNDS = [
    # A web connection out; a mail connection in (the inside server's port 25 is open).
    ((inside(IP(src=HOST, dst=WEB) / TCP(sport=40000, dport=80, flags="S")), True),
     (outside(IP(src=PEER, dst=MAIL) / TCP(sport=50000, dport=25, flags="S")), True)),
    # Their replies: allowed by the connection table, not by any rule.
    ((inside(IP(src=MAIL, dst=PEER) / TCP(sport=25, dport=50000, flags="SA")), True),
     (outside(IP(src=WEB, dst=HOST) / TCP(sport=80, dport=40000, flags="SA")), True)),
    # A DNS query and its answer.
    ((inside(IP(src=HOST, dst=DNS) / UDP(sport=5353, dport=53) / Raw(b"q" * 20)), True),
     (outside(IP(src=DNS, dst=HOST) / UDP(sport=53, dport=5353) / Raw(b"a" * 40)), True)),
    # A blocked destination; an unsolicited SSH attempt from outside.
    ((inside(IP(src=HOST, dst=BLOCKED) / TCP(sport=40001, dport=80, flags="S")), False),
     (outside(IP(src=PEER, dst=HOST) / TCP(sport=50001, dport=22, flags="S")), False)),
    # A port the ACL does not open; a forged "reply" for that flow.
    ((inside(IP(src=HOST, dst=WEB) / TCP(sport=40002, dport=8080, flags="S")), False),
     (outside(IP(src=WEB, dst=HOST) / TCP(sport=8080, dport=40002, flags="SA")), False)),
    # Ping out and its reply.
    ((inside(IP(src=HOST, dst=WEB) / ICMP(id=7, seq=1)), True),
     (outside(IP(src=WEB, dst=HOST) / ICMP(type=0, id=7, seq=1)), True)),
    # IPv6: SSH out and its reply; a ping from outside is not let in.
    ((inside(IPv6(src=HOST6, dst=SSH6) / TCP(sport=40003, dport=22, flags="S")), True),
     (outside(IPv6(src=SSH6, dst=HOST6) / TCP(sport=22, dport=40003, flags="SA")), True)),
    ((inside(IPv6(src=HOST6, dst=SSH6) / ICMPv6EchoRequest(id=9)), True),
     (outside(IPv6(src=SSH6, dst=HOST6) / ICMPv6EchoReply(id=9)), True)),
    # ARP is not IP: dropped (not-ip); an unsolicited UDP packet in.
    ((inside(ARP(psrc=HOST, pdst="198.18.0.1")), False),
     (outside(IP(src=PEER, dst=HOST) / UDP(sport=53, dport=5353)), False)),
    # The web connection goes on both ways.
    ((inside(IP(src=HOST, dst=WEB) / TCP(sport=40000, dport=80, flags="A")), True),
     (outside(IP(src=WEB, dst=HOST) / TCP(sport=80, dport=40000, flags="A") / Raw(b"x" * 64)),
      True)),
]

INSIDE_ALLOWED = [i for i, ((_, ok), _o) in enumerate(ROUNDS) if ok]
OUTSIDE_ALLOWED = [i for i, (_i, (_, ok)) in enumerate(ROUNDS) if ok]


def frames():
    """(inside frames, outside frames), time-stamped a millisecond apart."""
    ins, outs = [], []
    for i, ((a, _), (b, _)) in enumerate(ROUNDS):
        a.time = 1764000000 + 2 * i / 1000
        b.time = 1764000000 + (2 * i + 1) / 1000
        ins.append(a)
        outs.append(b)
    return ins, outs


if __name__ == "__main__":
    ins, outs = frames()
    wrpcap("pipelines/firewall-inside.pcap", ins)
    wrpcap("pipelines/firewall-outside.pcap", outs)
