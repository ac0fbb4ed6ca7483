"""A plain-Python longest-prefix match: the oracle that the route element's
tables (nmroute/fastpath/lpm.pyx) are checked against. One dict per prefix
length, searched longest first; a later route for the same prefix wins."""
from __future__ import annotations

import ipaddress


class LpmRef:
    def __init__(self, version: int):
        self.bits = 32 if version == 4 else 128
        self.by_len: dict[int, dict[int, object]] = {}

    def add(self, prefix: str, value) -> None:
        net = ipaddress.ip_network(prefix)
        self.by_len.setdefault(net.prefixlen, {})[int(net.network_address)] = value

    def lookup(self, addr):
        a = int(ipaddress.ip_address(addr))
        for plen in sorted(self.by_len, reverse=True):
            key = a >> (self.bits - plen) << (self.bits - plen) if plen else 0
            if key in self.by_len[plen]:
                return self.by_len[plen][key]
        return None
