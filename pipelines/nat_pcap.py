"""Makes pipelines/nat-inside.pcap and pipelines/nat-outside.pcap, the
captures the NAT gateway example (pipelines/nat.yaml) replays: three inside
hosts talking UDP, TCP and ICMP echo to outside servers, and the outside's
replies to the translated packets (the NAT gives each protocol's flows the
ports 20000, 20001, ... in order), an ICMP port unreachable quoting one of
them, and one unsolicited packet that the NAT drops.
Run from the repository's root: python pipelines/nat_pcap.py"""
from scapy.all import ICMP, IP, TCP, UDP, Ether, Raw, wrpcap

GW, HOST, ISP = "02:00:00:00:00:01", "02:00:00:00:00:0a", "02:00:00:00:00:0b"
EXT = "198.18.255.1"          # the NAT's outside address (nat.yaml: external)
SERVERS = ["198.19.0.7", "198.19.0.80", "198.19.0.1"]


def inside():
    out = []
    for h in range(3):
        src = f"198.18.0.{h + 10}"
        out.append(Ether(src=HOST, dst=GW) / IP(src=src, dst=SERVERS[0])
                   / UDP(sport=5300 + h, dport=7) / Raw(b"query %d" % h))
        out.append(Ether(src=HOST, dst=GW) / IP(src=src, dst=SERVERS[1])
                   / TCP(sport=40000 + h, dport=80, flags="S", seq=h * 1000))
        out.append(Ether(src=HOST, dst=GW) / IP(src=src, dst=SERVERS[2])
                   / ICMP(type=8, id=100 + h, seq=1) / Raw(b"ping"))
    return out


def outside():
    out = []
    for h in range(3):
        port = 20000 + h
        out.append(Ether(src=ISP, dst=GW) / IP(src=SERVERS[0], dst=EXT)
                   / UDP(sport=7, dport=port) / Raw(b"answer %d" % h))
        out.append(Ether(src=ISP, dst=GW) / IP(src=SERVERS[1], dst=EXT)
                   / TCP(sport=80, dport=port, flags="SA", seq=7, ack=h * 1000 + 1))
        out.append(Ether(src=ISP, dst=GW) / IP(src=SERVERS[2], dst=EXT)
                   / ICMP(type=0, id=port, seq=1) / Raw(b"ping"))
    sent = IP(src=EXT, dst=SERVERS[0]) / UDP(sport=20002, dport=7) / Raw(b"query 2")
    out.append(Ether(src=ISP, dst=GW) / IP(src=SERVERS[0], dst=EXT)
               / ICMP(type=3, code=3) / Raw(bytes(sent)))
    out.append(Ether(src=ISP, dst=GW) / IP(src="198.19.0.66", dst=EXT)
               / TCP(sport=4444, dport=22, flags="S"))         # unsolicited: dropped
    return out


def stamped(frames, t0):
    for i, f in enumerate(frames):
        f.time = t0 + i / 1000
    return frames


if __name__ == "__main__":
    wrpcap("pipelines/nat-inside.pcap", stamped(inside(), 1764000000))
    wrpcap("pipelines/nat-outside.pcap", stamped(outside(), 1764000001))
