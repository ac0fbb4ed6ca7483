"""host:IFACE — the kernel stack's side of an interface: a TAP carrying its MAC."""
from nmroute.schema import Param, Str, Bool

import json
import socket
import subprocess

import structlog

from nmroute.errors import PortError
from nmroute.fastpath.ports.tap import NAME_RE, TapBase

log = structlog.get_logger("nmroute")


def host_tap_name(iface):
    """The TAP a host port makes for IFACE when no name is given: h-IFACE (15 chars at most)."""
    return ("h-" + iface)[:15]


# While the addresses are on the TAP, the kernel must not also answer what
# comes in on IFACE itself (it would: Linux accepts packets for any local
# address on any interface). These keep it off IFACE: strict reverse-path
# filtering (the way back to a sender is now the TAP), no ARP replies, no
# IPv6. AF_PACKET sockets on IFACE see its frames all the same.
_DETACH = (("ipv4/conf/{iface}/rp_filter", "1"),
           ("ipv4/conf/{iface}/arp_ignore", "8"),
           ("ipv6/conf/{iface}/disable_ipv6", "1"))


def _ip(*args):
    try:
        r = subprocess.run(["ip", *args], capture_output=True, text=True)
    except FileNotFoundError:
        return 1, "iproute2's `ip` not found"
    return r.returncode, (r.stderr or r.stdout).strip()


def _link(iface):
    """IFACE as `ip -j link` shows it (netlink: right in any namespace), or None."""
    try:
        r = subprocess.run(["ip", "-j", "link", "show", "dev", iface], capture_output=True,
                           text=True)
    except FileNotFoundError:
        raise PortError(f"host:{iface}", "iproute2's `ip` not found") from None
    if r.returncode != 0:
        return None
    links = json.loads(r.stdout or "[]")
    return links[0] if links else None


def _ifindex(iface):
    """IFACE's ifindex in this network namespace, 0 when there is none."""
    try:
        return socket.if_nametoindex(iface)
    except OSError:
        return 0


def _addresses(iface):
    """[(cidr, family)] of IFACE's global addresses (not link-local ones)."""
    r = subprocess.run(["ip", "-j", "addr", "show", "dev", iface], capture_output=True, text=True)
    if r.returncode != 0:
        return []
    out = []
    for link in json.loads(r.stdout or "[]"):
        for a in link.get("addr_info", []):
            if a.get("scope") == "global" and a.get("family") in ("inet", "inet6"):
                out.append((f"{a['local']}/{a['prefixlen']}", a["family"]))
    return out


class Host(TapBase):
    """The kernel's side of IFACE, as netmap's host rings (`netmap:eth0^`) are:
    a TAP device with IFACE's MAC and MTU. What nmroute sends to it the kernel
    receives as if it came in on IFACE's wire, and what the kernel sends
    through it (with IFACE's addresses on it) nmroute reads, to send out on
    `packet:IFACE` for instance. `nmroute bridge -i packet:eth0` bridges the
    two, so the kernel sees what it saw before, through nmroute.

    For the kernel to use the TAP instead of IFACE, IFACE's addresses must be
    on the TAP and the kernel must stop taking frames from IFACE itself.
    `move_addresses: true` does both while the port is open: it moves IFACE's
    global IPv4/IPv6 addresses onto the TAP, and sets IFACE's rp_filter=1,
    arp_ignore=8 and disable_ipv6=1 (Linux otherwise answers for any local
    address on any interface, so replies would come twice; AF_PACKET sockets
    still see IFACE's frames). On close the settings and addresses go back.
    Routes other than the addresses' own are not moved; with
    net.ipv4.conf.all.rp_filter=2 the kernel may still answer on IFACE.
    By hand, for eth0 with 198.18.0.3/24:

        ip tuntap add h-eth0 mode tap
        ip link set h-eth0 address $(cat /sys/class/net/eth0/address) up
        ip addr del 198.18.0.3/24 dev eth0; ip addr add 198.18.0.3/24 dev h-eth0
        sysctl net.ipv4.conf.eth0.rp_filter=1 net.ipv4.conf.eth0.arp_ignore=8 \\
               net.ipv6.conf.eth0.disable_ipv6=1
        nmroute bridge -i packet:eth0       # bridges packet:eth0 and host:eth0

    (the TAP is attached to, and stays) and back: the settings as they were,
    the address back on eth0, `ip link del h-eth0`. Needs CAP_NET_ADMIN.

    Faults: when IFACE is deleted the TAP stays (with the addresses moved
    onto it); when an interface of that name is back, the TAP takes its MAC
    and MTU and, with move_addresses, the kernel is kept off it again; each
    event is logged once. A TAP the port made goes when nmroute exits,
    however it exits; stopped by SIGINT/SIGTERM it also puts the addresses
    and settings back (killed outright, it cannot: they went with the TAP).
    A failed open undoes what it did.

    Example:
        ports:
          wire: packet:eth0
          stack: {port: "host:eth0", move_addresses: true}
        links: ["wire -> stack", "stack -> wire"]
    """
    SCHEME = "host"
    SUMMARY = "the kernel stack's side of an interface (a TAP with its MAC)"
    DIRECTIONS = ("rx", "tx")
    ARG = "iface"
    PARAMS = (
        Param("iface", Str(r"[^/\s:]{1,15}", "an interface name"), "the interface"),
        Param("name", Str(NAME_RE, "an interface name (at most 15 letters, digits, _ . -)"),
              "the TAP's name; default: h-IFACE", None),
        Param("move_addresses", Bool(), "move IFACE's addresses onto the TAP and keep the "
              "kernel off IFACE while open", False),
    )

    def open(self, pool, ring_size, rx, tx):
        iface = self.params["iface"]
        link = _link(iface)
        if link is None:
            raise PortError(self.name, f"no such interface '{iface}' in this network namespace")
        if link.get("link_type") != "ether" or not link.get("address"):
            raise PortError(self.name, f"{iface} is not an Ethernet interface")
        mac = bytes.fromhex(link["address"].replace(":", ""))
        mtu = int(link.get("mtu") or 0)
        self.ifindex = int(link.get("ifindex") or _ifindex(iface))
        self.n_gone = self.n_back = 0
        self.failed = None
        self.moved = []
        self.sysctls = []
        TapBase.open(self, pool, ring_size, rx, tx)
        self.open_tap(self.params.get("name") or host_tap_name(iface), mac, mtu)
        if self.params.get("move_addresses"):
            try:
                self._take_over(iface)
            except BaseException:
                self._give_back(iface)
                TapBase.close(self)
                raise

    def _take_over(self, iface):
        addresses = _addresses(iface)
        for cidr, family in addresses:
            code, err = _ip("addr", "del", cidr, "dev", iface)
            if code != 0:
                raise PortError(self.name, f"remove {cidr} from {iface}: {err}")
            self.moved.append((cidr, family))
            extra = ["nodad"] if family == "inet6" else []
            code, err = _ip("addr", "add", cidr, "dev", self.ifname, *extra)
            if code != 0:
                raise PortError(self.name, f"add {cidr} to {self.ifname}: {err}")
        self._detach(iface, self.sysctls)
        log.info("host port: addresses moved", iface=iface, tap=self.ifname,
                 addresses=[c for c, _ in self.moved])

    def _detach(self, iface, done):
        """Keep the kernel off IFACE (_DETACH); appends (path, old value) to done."""
        for key, value in _DETACH:
            path = f"/proc/sys/net/{key.format(iface=iface)}"
            try:
                with open(path) as f:
                    old = f.read().strip()
                with open(path, "w") as f:
                    f.write(value)
            except FileNotFoundError:
                continue            # no IPv6 in this kernel: nothing to keep off
            except OSError as e:
                raise PortError(self.name, f"{path}: {e.strerror}") from None
            done.append((path, old))

    def maintain(self):
        """Slow path (called every ~100 ms by the runtime, and by close()):
        follow IFACE. When it is deleted the TAP stays (the kernel keeps its
        addresses and routes on it); when an interface of that name is back,
        the TAP takes its MAC and MTU again and, with move_addresses, the
        kernel is kept off it again. Each change is logged once."""
        iface = self.params["iface"]
        index = _ifindex(iface)
        if index == self.ifindex:
            return
        kw = {"port": self.name, "iface": iface, "tap": self.ifname}
        if self.ifindex != 0:
            # Gone (or already replaced by a new one: a new ifindex).
            self.ifindex = 0
            self.n_gone += 1
            log.warning("interface gone: the TAP stays, and follows the interface when an "
                        "interface of that name is back", times=self.n_gone, **kw)
        if index == 0:
            return
        try:
            link = _link(iface)
            if link is None:
                return              # gone again meanwhile: next time
            self.set_link(bytes.fromhex(link["address"].replace(":", "")),
                          int(link.get("mtu") or 0))
            if self.sysctls:
                self._detach(iface, [])
        except (PortError, KeyError, ValueError) as e:
            if str(e) != self.failed:
                self.failed = str(e)
                log.warning("interface back but the TAP cannot follow it; trying again",
                            reason=str(e), **kw)
            return
        self.failed = None
        self.ifindex = index
        self.n_back += 1
        log.info("interface back: the TAP follows it", ifindex=index, mac=link["address"],
                 **kw)

    def _give_back(self, iface):
        for path, old in reversed(self.sysctls):
            try:
                with open(path, "w") as f:
                    f.write(old)
            except OSError as e:
                log.warning("could not restore a setting", path=path, error=e.strerror)
        self.sysctls = []
        for cidr, family in self.moved:
            _ip("addr", "del", cidr, "dev", self.ifname)
            extra = ["nodad"] if family == "inet6" else []
            code, err = _ip("addr", "add", cidr, "dev", iface, *extra)
            if code != 0:
                log.warning("could not put an address back", iface=iface, address=cidr,
                            error=err)
        self.moved = []

    def close(self):
        if getattr(self, "moved", None) is not None:
            self.maintain()
            self._give_back(self.params["iface"])
        TapBase.close(self)
