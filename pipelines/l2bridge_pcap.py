"""Makes the captures pipelines/l2bridge.yaml replays, one per switch port:
l2bridge-a.pcap (hosts A1, A2 on one segment), l2bridge-b.pcap (B1),
l2bridge-c.pcap (C1). Each host says hello by broadcast ARP, then talks
unicast to the others; A1 and A2 also talk to each other, which the
bridge keeps on their own segment (same-port drops).
Run from the repository's root: python pipelines/l2bridge_pcap.py"""
from scapy.all import ARP, IP, UDP, Ether, Raw, wrpcap

HOSTS = {  # name: (segment, MAC, IPv4)
    "A1": ("a", "02:00:00:00:0a:01", "198.18.1.1"),
    "A2": ("a", "02:00:00:00:0a:02", "198.18.1.2"),
    "B1": ("b", "02:00:00:00:0b:01", "198.18.1.11"),
    "C1": ("c", "02:00:00:00:0c:01", "198.18.1.21"),
}
TALKS = [("A1", "B1"), ("A1", "C1"), ("A2", "B1"), ("A1", "A2"), ("B1", "C1"), ("C1", "A2")]


def frames():
    """{segment: [frames]}"""
    out = {"a": [], "b": [], "c": []}
    t = 1764000000.0
    for seg, mac, ip in HOSTS.values():
        out[seg].append(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff")
                        / ARP(hwsrc=mac, psrc=ip, pdst="198.18.1.254"))
    for rnd in range(4):
        for a, b in TALKS:
            for src, dst in ((a, b), (b, a)):
                seg, smac, sip = HOSTS[src]
                _, dmac, dip = HOSTS[dst]
                out[seg].append(Ether(src=smac, dst=dmac) / IP(src=sip, dst=dip)
                                / UDP(sport=40000 + rnd, dport=7) / Raw(f"{src}>{dst}".encode()))
    for seg in out.values():
        for i, f in enumerate(seg):
            f.time = t + i / 1000
    return out


if __name__ == "__main__":
    for seg, fs in frames().items():
        wrpcap(f"pipelines/l2bridge-{seg}.pcap", fs)
