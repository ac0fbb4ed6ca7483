"""Makes pipelines/router-a.pcap and pipelines/router-b.pcap, the captures
the router example (pipelines/router.yaml) replays, one per side:

  side a: 198.18.0.0/24 and 2001:2::/64       (the router is .1 and ::1)
  side b: 198.19.0.0/24 and 2001:2:0:1::/64   (the router is .1 and ::1)

Each side's hosts first ask for the router (an ARP request, a neighbour
solicitation with the host's link-layer address): the router answers and
learns them. Then they send UDP, TCP and ICMP to the other side: to hosts
the router learned (side a's, learned before side b's capture is read) or
knows statically (198.19.0.20 and 2001:2:0:1::20); one packet goes to a
host nobody knows (the router turns it into an ARP request for that host),
one to an address with no route (no-route), and one ARP request asks for
another host (not answered, and dropped by route as not-ip).
Run from the repository's root: python pipelines/router_pcap.py"""
from scapy.all import (
    ARP, ICMP, IP, TCP, UDP, Ether, ICMPv6EchoRequest, ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr,
    IPv6, Raw, wrpcap)

ROUTER_A, ROUTER_B = "02:00:00:00:01:0a", "02:00:00:00:01:0b"   # router.yaml: macs
HOST_A, HOST_B = "02:00:00:00:0a:10", "02:00:00:00:0b:30"


def solicit(mac, src, target):
    return (Ether(src=mac, dst="33:33:ff:00:00:01") / IPv6(src=src, dst="ff02::1:ff00:1",
                                                          hlim=255)
            / ICMPv6ND_NS(tgt=target) / ICMPv6NDOptSrcLLAddr(lladdr=mac))


def side_a():
    e = Ether(src=HOST_A, dst=ROUTER_A)
    return [
        Ether(src=HOST_A, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=HOST_A, psrc="198.18.0.10",
                                                         pdst="198.18.0.1"),
        solicit(HOST_A, "2001:2::10", "2001:2::1"),
        e / IP(src="198.18.0.10", dst="198.19.0.20") / UDP(sport=5000, dport=7)
        / Raw(b"query"),
        e / IP(src="198.18.0.10", dst="198.19.0.20") / TCP(sport=40000, dport=80, flags="S"),
        e / IPv6(src="2001:2::10", dst="2001:2:0:1::20") / ICMPv6EchoRequest(id=1, seq=1),
        e / IP(src="198.18.0.10", dst="198.19.0.99") / ICMP(id=7, seq=1),   # unknown host
        e / IP(src="198.18.0.10", dst="203.0.113.5") / UDP(sport=1, dport=2),  # no route
    ]


def side_b():
    e = Ether(src=HOST_B, dst=ROUTER_B)
    return [
        Ether(src=HOST_B, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=HOST_B, psrc="198.19.0.30",
                                                         pdst="198.19.0.1"),
        solicit(HOST_B, "2001:2:0:1::30", "2001:2:0:1::1"),
        Ether(src=HOST_B, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=HOST_B, psrc="198.19.0.30",
                                                         pdst="198.19.0.31"),  # not us
        e / IP(src="198.19.0.30", dst="198.18.0.10") / UDP(sport=7, dport=5000)
        / Raw(b"answer"),
        e / IPv6(src="2001:2:0:1::30", dst="2001:2::10") / ICMPv6EchoRequest(id=2, seq=1),
        e / IP(src="198.19.0.20", dst="198.18.0.10") / TCP(sport=80, dport=40000,
                                                           flags="SA"),
    ]


def stamped(frames, t0):
    for i, f in enumerate(frames):
        f.time = t0 + i / 1000
    return frames


if __name__ == "__main__":
    wrpcap("pipelines/router-a.pcap", stamped(side_a(), 1764000000))
    wrpcap("pipelines/router-b.pcap", stamped(side_b(), 1764000001))
