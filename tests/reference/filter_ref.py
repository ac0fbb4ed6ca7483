"""A plain-Python twin of the `filter` element's ACL, used as a test oracle.

A linear first-match scan over the rules as written in YAML (dicts), with
fields read from a frame by scapy's dissectors: nothing is shared with the
Cython element (no tuple space search, no masks, no parse.pxd).
"""
from __future__ import annotations

import ipaddress

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import Ether
from scapy.layers.sctp import SCTP

PROTOS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "sctp": 132}


def _ports(value):
    if value is None:
        return None
    if isinstance(value, int):
        return (value, value)
    lo, _, hi = str(value).partition("-")
    return (int(lo), int(hi or lo))


def compile_rules(rules):
    """Rules as written -> (action, src net, dst net, proto, sport, dport, family)."""
    out = []
    for r in rules:
        src = ipaddress.ip_network(r["src"], strict=False) if r.get("src") else None
        dst = ipaddress.ip_network(r["dst"], strict=False) if r.get("dst") else None
        fam = {"ipv4": 4, "ipv6": 6}.get(r.get("family"))
        proto = r.get("proto")
        if isinstance(proto, str):
            proto = PROTOS[proto]
        out.append((r["action"], src, dst, proto, _ports(r.get("sport")),
                    _ports(r.get("dport")), fam))
    return out


def fields(frame: bytes):
    """(family, src, dst, proto, sport, dport) of an IP frame, ports None when
    the packet has none (not TCP/UDP/SCTP, or a later fragment); None for a
    frame that is not IP."""
    p = Ether(frame)
    if IP in p:
        ip = p[IP]
        fam, src, dst, proto = 4, ip.src, ip.dst, ip.proto
        later = ip.frag > 0
    elif IPv6 in p:
        ip = p[IPv6]
        fam, src, dst = 6, ip.src, ip.dst
        layer, proto, later = ip, ip.nh, False
        while True:
            nxt = layer.payload
            if isinstance(nxt, IPv6ExtHdrFragment):
                proto = nxt.nh
                if nxt.offset > 0:
                    later = True
                    break
                layer = nxt
            elif hasattr(nxt, "nh") and nxt.name.startswith("IPv6 Extension"):
                proto, layer = nxt.nh, nxt
            else:
                break
    else:
        return None
    sport = dport = None
    if not later:
        for cls in (TCP, UDP, SCTP):
            if cls in p:
                sport, dport = p[cls].sport, p[cls].dport
                break
    return fam, ipaddress.ip_address(src), ipaddress.ip_address(dst), proto, sport, dport


def matches(rule, f) -> bool:
    _action, src, dst, proto, sport, dport, fam = rule
    pfam, psrc, pdst, pproto, psport, pdport = f
    if fam is not None and fam != pfam:
        return False
    if src is not None and (src.version != pfam or psrc not in src):
        return False
    if dst is not None and (dst.version != pfam or pdst not in dst):
        return False
    if proto is not None and proto != pproto:
        return False
    if sport is not None or dport is not None:
        if psport is None:
            return False
        if sport is not None and not sport[0] <= psport <= sport[1]:
            return False
        if dport is not None and not dport[0] <= pdport <= dport[1]:
            return False
    return True


def first_match(compiled, f):
    """The index of the first rule that matches fields f, or None."""
    for i, rule in enumerate(compiled):
        if matches(rule, f):
            return i
    return None


def decide(compiled, default: str, frame: bytes, non_ip: str = "deny") -> str:
    """'allow', 'deny', or 'not-ip' (a non-IP frame with non_ip: deny)."""
    f = fields(frame)
    if f is None:
        return "allow" if non_ip == "allow" else "not-ip"
    i = first_match(compiled, f)
    return compiled[i][0] if i is not None else default
