"""Makes pipelines/loadbalancer.pcap, the traffic pipelines/loadbalancer.yaml
spreads: 64 client flows (TCP and UDP, IPv4 and IPv6) to a service, both
directions, a few packets each, and one fragmented datagram.
Run from the repository's root: python pipelines/loadbalancer_pcap.py"""
from scapy.all import IP, TCP, UDP, Ether, IPv6, Raw, fragment, wrpcap

CLIENT_MAC, SERVER_MAC = "02:00:00:00:00:0c", "02:00:00:00:00:05"


def frames():
    out = []
    for i in range(64):
        if i % 2:
            c, s = f"198.18.0.{i + 1}", "198.19.0.80"
            ip_cs, ip_sc = IP(src=c, dst=s), IP(src=s, dst=c)
        else:
            c, s = f"2001:2::{i + 1:x}", "2001:2:0:1::80"
            ip_cs, ip_sc = IPv6(src=c, dst=s), IPv6(src=s, dst=c)
        l4 = TCP if i % 4 < 2 else UDP
        sport, dport = 40000 + i, 80 if l4 is TCP else 53
        for k in range(3):
            out.append(Ether(src=CLIENT_MAC, dst=SERVER_MAC) / ip_cs
                       / l4(sport=sport, dport=dport) / Raw(f"request {i}.{k}".encode()))
            out.append(Ether(src=SERVER_MAC, dst=CLIENT_MAC) / ip_sc
                       / l4(sport=dport, dport=sport) / Raw(f"reply {i}.{k}".encode()))
    big = IP(src="198.18.0.200", dst="198.19.0.80") / UDP(sport=5000, dport=53) / Raw(b"q" * 3000)
    out += [Ether(src=CLIENT_MAC, dst=SERVER_MAC) / f for f in fragment(big, fragsize=1200)]
    for i, f in enumerate(out):
        f.time = 1764000000 + i / 1000
    return out


if __name__ == "__main__":
    wrpcap("pipelines/loadbalancer.pcap", frames())
