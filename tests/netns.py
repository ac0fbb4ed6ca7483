"""Network namespaces for live tests: hosts joined by veth pairs, always torn down.

    with Net() as net:                       # skips the test when it cannot run
        net.hosts("a", "dut", "b")
        net.veth("a", "a0", "dut", "veth-a")
        net.addr("a", "a0", "198.18.0.1/24", "2001:2::1/64")
        net.run("a", "ip", "link")
        p = net.popen("dut", *nmroute_cmd(...))   # killed at teardown if still running

Namespaces get names unique to this process (`nmr<pid>-a`); interface names
live inside them, so tests never touch the root namespace's interfaces.
Addresses are on the benchmarking ranges 198.18.0.0/15 and 2001:2::/48
(docs/design.md). Offloads are turned off on every veth as the measurements in
docs/design.md ("Facts measured") were made (so TCP checksums are filled in by the
sender and no frame exceeds the MTU).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

OFFLOADS = ("gro", "gso", "tso", "tx", "rx", "sg")

# A ping made of Python (iputils may not be installed): N echo requests at
# an interval, printed: "sent received". Raw ICMP sockets need CAP_NET_RAW.
_PING = r"""
import os, select, socket, struct, sys, time
addr, count, interval, size = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
v6 = ":" in addr
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW,
                  socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
ident = os.getpid() & 0xFFFF
def csum(b):
    if len(b) % 2: b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16: t = (t & 0xFFFF) + (t >> 16)
    return ~t & 0xFFFF
got = set()
def drain(until):
    while True:
        left = until - time.monotonic()
        if left <= 0: return
        if not select.select([s], [], [], left)[0]: return
        data = s.recv(65535)
        icmp = data if v6 else data[(data[0] & 15) * 4:]
        if len(icmp) >= 8 and icmp[0] == (129 if v6 else 0):
            i, q = struct.unpack("!HH", icmp[4:8])
            if i == ident: got.add(q)
for q in range(count):
    body = struct.pack("!HH", ident, q) + bytes(size)
    hdr = struct.pack("!BBH", 128 if v6 else 8, 0, 0)
    pkt = hdr + body if v6 else struct.pack("!BBH", 8, 0, csum(hdr + body)) + body
    s.sendto(pkt, (addr, 0))
    drain(time.monotonic() + interval)
drain(time.monotonic() + 0.5)
print(count, len(got))
"""


def skip_reason() -> str | None:
    """Why live tests cannot run here, or None."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "live tests need root (CAP_NET_ADMIN, CAP_NET_RAW) to create network namespaces"
    if shutil.which("ip") is None:
        return "live tests need iproute2's `ip`"
    return None


class Net:
    def __init__(self, tag: str = ""):
        self.prefix = f"nmr{os.getpid()}{tag}-"
        self.names: dict[str, str] = {}
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Net:
        reason = skip_reason()
        if reason:
            pytest.skip(reason)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def ns(self, host: str) -> str:
        return self.names[host]

    # -- building

    def hosts(self, *hosts: str) -> None:
        for h in hosts:
            name = self.prefix + h
            r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
            if r.returncode != 0:
                self.close()
                pytest.skip(f"cannot create a network namespace: {r.stderr.strip()}")
            self.names[h] = name
            self.run(h, "ip", "link", "set", "lo", "up")

    def veth(self, h1: str, dev1: str, h2: str, dev2: str, mtu: int = 1500) -> None:
        """A veth pair dev1 (in h1) <-> dev2 (in h2), up, offloads off."""
        self.run(h1, "ip", "link", "add", dev1, "mtu", str(mtu), "type", "veth",
                 "peer", "name", dev2, "netns", self.ns(h2))
        for h, d in ((h1, dev1), (h2, dev2)):
            self.offloads_off(h, d)
            self.run(h, "ip", "link", "set", d, "up")

    def offloads_off(self, host: str, dev: str) -> None:
        if shutil.which("ethtool"):
            self.run(host, "ethtool", "-K", dev, *[x for o in OFFLOADS for x in (o, "off")],
                     check=False)

    def addr(self, host: str, dev: str, *cidrs: str) -> None:
        for c in cidrs:
            extra = ["nodad"] if ":" in c else []
            self.run(host, "ip", "addr", "add", c, "dev", dev, *extra)

    # -- running

    def cmd(self, host: str, *args) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host), *(str(a) for a in args)]

    def run(self, host: str, *args, check=True, timeout=30, **kw) -> subprocess.CompletedProcess:
        r = subprocess.run(self.cmd(host, *args), capture_output=True, text=True,
                           timeout=timeout, **kw)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, args))} in {host}: exit {r.returncode}\n"
                                 f"{r.stdout}{r.stderr}")
        return r

    def popen(self, host: str, *args, **kw) -> subprocess.Popen:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        p = subprocess.Popen(self.cmd(host, *args), **kw)
        self.procs.append(p)
        return p

    def ping(self, host: str, addr: str, count: int = 1, interval: float = 0.01,
             size: int = 56) -> tuple[int, int]:
        """(sent, received) echo requests from `host` to `addr`."""
        r = self.run(host, sys.executable, "-c", _PING, addr, count, interval, size,
                     timeout=count * interval + 10)
        sent, got = r.stdout.split()
        return int(sent), int(got)

    def wait_ping(self, host: str, addr: str, seconds: float = 10) -> bool:
        """True once one echo gets a reply; False after `seconds`."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.ping(host, addr, 1, 0.2)[1]:
                return True
        return False

    def links(self, host: str) -> list[str]:
        out = self.run(host, "ip", "-o", "link", "show").stdout
        return [ln.split(":")[1].strip().split("@")[0] for ln in out.splitlines()]

    # -- teardown

    def stop(self, p: subprocess.Popen, timeout: float = 10) -> tuple[str, str]:
        """SIGINT, as a user's Ctrl-C; then its output. Killed if it hangs."""
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            raise AssertionError(f"did not stop within {timeout} s on SIGINT\n{err}") from None
        return out, err

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
                p.communicate(timeout=5)
            stats = f"/dev/shm/nmroute.{p.pid}.stats"
            if os.path.exists(stats):
                os.unlink(stats)
        self.procs = []
        for name in self.names.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self.names = {}
