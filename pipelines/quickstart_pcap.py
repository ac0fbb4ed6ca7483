"""Makes pipelines/quickstart.pcap, the capture the quickstart replays:
a small mix of ARP, ICMP, TCP, UDP and IPv6 on benchmarking addresses.
Run from the repository's root: python pipelines/quickstart_pcap.py"""
from scapy.all import ARP, ICMP, IP, TCP, UDP, Ether, ICMPv6EchoRequest, IPv6, Raw, wrpcap

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def frames():
    out = [Ether(src=A, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="198.18.0.1", pdst="198.18.0.2")]
    for i in range(8):
        out.append(Ether(src=A, dst=B) / IP(src="198.18.0.1", dst="198.19.0.2")
                   / ICMP(seq=i) / Raw(b"nmroute" * 4))
        out.append(Ether(src=A, dst=B) / IP(src="198.18.0.1", dst="198.19.0.3")
                   / TCP(sport=40000 + i, dport=80, flags="S"))
        out.append(Ether(src=A, dst=B) / IP(src="198.18.0.1", dst="198.19.0.4")
                   / UDP(sport=5353, dport=53) / Raw(bytes(i * 16)))
        out.append(Ether(src=A, dst=B) / IPv6(src="2001:2::1", dst="2001:2:0:1::1")
                   / ICMPv6EchoRequest(seq=i))
    for i, f in enumerate(out):
        f.time = 1764000000 + i / 1000
    return out


if __name__ == "__main__":
    wrpcap("pipelines/quickstart.pcap", frames())
