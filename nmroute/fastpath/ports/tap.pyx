"""tap:NAME — a TAP device: frames to and from the kernel stack of this namespace."""
from nmroute.schema import Param, Str, Mac, Int

cimport cython
from libc.errno cimport errno, EPERM, EACCES, EAGAIN, EINTR
from libc.stdint cimport uint16_t, uint32_t, uint64_t
from libc.string cimport memset, strncpy
from posix.fcntl cimport open as c_open, O_RDWR, O_NONBLOCK, O_CLOEXEC
from posix.unistd cimport close as c_close, read as c_read, write as c_write

from nmroute.fastpath.drops cimport DROP_IO_ERROR
from nmroute.fastpath.includes.if_packet cimport socket, SOCK_CLOEXEC
from nmroute.fastpath.includes.tun cimport (
    ioctl, ifreq, TUNSETIFF, IFF_TAP, IFF_NO_PI, IFF_UP, SIOCGIFFLAGS, SIOCSIFFLAGS,
    SIOCSIFMTU, SIOCSIFHWADDR, ARPHRD_ETHER, AF_INET, SOCK_DGRAM)
from nmroute.fastpath.includes.sys cimport now_ns, CLOCK_REALTIME
from nmroute.fastpath.ports.port cimport Port
from nmroute.fastpath.ring cimport NmRing, Slot, ring_next, slot_buf

import os
import socket as socket_mod

from nmroute.errors import PortError

NAME_RE = r"[A-Za-z0-9_.-]{1,15}"


def tap_reason(str what, int err):
    """One line for a failed TAP set-up call, naming CAP_NET_ADMIN on EPERM."""
    if err in (EPERM, EACCES):
        return f"{what}: permission denied (needs CAP_NET_ADMIN; run as root or grant it)"
    return f"{what}: {os.strerror(err)}"


cdef class TapBase(Port):
    """The TAP machinery shared by `tap:` and `host:` (see those)."""
    cdef int fd
    cdef readonly bint created     # the device did not exist: it goes when closed
    cdef readonly str ifname
    cdef uint32_t max_frame

    def __cinit__(self, *args, **kwargs):
        self.fd = -1

    def __dealloc__(self):
        if self.fd >= 0:
            c_close(self.fd)

    def open_tap(self, str ifname, bytes mac=None, int mtu=0):
        """Attach to TAP `ifname` (creating it when missing), set its MAC and
        MTU when given, bring it up. Undoes its own work on failure."""
        cdef ifreq ifr
        cdef bytes bname = ifname.encode()
        cdef int fd, s = -1
        self.ifname = ifname
        self.created = not _exists(ifname)
        fd = c_open(b"/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC)
        if fd < 0:
            raise PortError(self.name, tap_reason("/dev/net/tun", errno))
        memset(&ifr, 0, sizeof(ifr))
        strncpy(ifr.ifr_name, bname, 15)
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI
        if ioctl(fd, TUNSETIFF, &ifr) < 0:
            e = errno
            c_close(fd)
            why = tap_reason(f"TAP {ifname}", e)
            if e == 22:     # EINVAL: a device of that name that is not a TAP
                why = f"TAP {ifname}: an interface of that name exists and is not a TAP"
            raise PortError(self.name, why)
        self.fd = fd
        try:
            self.set_link(mac, mtu)
            s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)
            if s < 0:
                raise PortError(self.name, tap_reason("control socket", errno))
            memset(&ifr, 0, sizeof(ifr))
            strncpy(ifr.ifr_name, bname, 15)
            if ioctl(s, SIOCGIFFLAGS, &ifr) < 0:
                raise PortError(self.name, tap_reason(f"flags of {ifname}", errno))
            ifr.ifr_flags |= IFF_UP
            if ioctl(s, SIOCSIFFLAGS, &ifr) < 0:
                raise PortError(self.name, tap_reason(f"bring {ifname} up", errno))
        except BaseException:
            c_close(self.fd)       # a TAP we created goes with its fd
            self.fd = -1
            raise
        finally:
            if s >= 0:
                c_close(s)

    def set_link(self, bytes mac=None, int mtu=0):
        """Set the TAP's MAC and MTU (each when given); PortError if refused."""
        cdef ifreq ifr
        cdef bytes bname = self.ifname.encode()
        cdef int s, i
        if mac is None and not mtu:
            return
        s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)
        if s < 0:
            raise PortError(self.name, tap_reason("control socket", errno))
        try:
            if mac is not None:
                memset(&ifr, 0, sizeof(ifr))
                strncpy(ifr.ifr_name, bname, 15)
                ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER
                for i in range(6):
                    ifr.ifr_hwaddr.sa_data[i] = <char>mac[i]
                if ioctl(s, SIOCSIFHWADDR, &ifr) < 0:
                    raise PortError(self.name, tap_reason(f"set MAC of {self.ifname}", errno))
            if mtu:
                memset(&ifr, 0, sizeof(ifr))
                strncpy(ifr.ifr_name, bname, 15)
                ifr.ifr_mtu = mtu
                if ioctl(s, SIOCSIFMTU, &ifr) < 0:
                    raise PortError(self.name, tap_reason(f"set MTU of {self.ifname}", errno))
        finally:
            c_close(s)

    def close(self):
        if self.fd >= 0:
            c_close(self.fd)
            self.fd = -1

    cdef int rxsync(self) noexcept nogil:
        cdef NmRing* r = self.rx
        cdef uint32_t t = r.tail, n = 0
        cdef ssize_t got
        cdef uint64_t ts = 0
        cdef Slot* s
        if self.fd < 0:
            return 0
        while ring_next(r, t) != r.head:
            s = &r.slots[t]
            got = c_read(self.fd, slot_buf(r, s), r.buf_size)
            if got <= 0:
                break             # EAGAIN: nothing more for now
            if ts == 0:
                ts = now_ns(CLOCK_REALTIME)
            s.len = <uint16_t>got
            s.ts = ts
            t = ring_next(r, t)
            n += 1
        r.tail = t
        return n

    cdef int txsync(self) noexcept nogil:
        cdef NmRing* r = self.tx
        cdef uint32_t i = r.hwcur, n = 0
        cdef uint64_t nbytes = 0
        cdef ssize_t put
        cdef Slot* s
        if self.fd < 0:
            return 0
        while i != r.head:
            s = &r.slots[i]
            put = c_write(self.fd, slot_buf(r, s), s.len)
            if put < 0 and (errno == EAGAIN or errno == EINTR):
                break             # the rest waits; the inputs are held back
            if put < 0:
                self.count_drop(DROP_IO_ERROR, 1)   # not a frame the kernel takes
            else:
                n += 1
                nbytes += s.len
            i = ring_next(r, i)
        return self.tx_done(i, n, nbytes)


def _exists(str ifname):
    """Whether this network namespace has an interface `ifname` (asked of the
    kernel, not of /sys, which may show another namespace's)."""
    try:
        socket_mod.if_nametoindex(ifname)
    except OSError:
        return False
    return True


@cython.final
cdef class Tap(TapBase):
    """A TAP device: what nmroute sends on it the kernel receives as if from
    a wire, and what the kernel sends through it nmroute reads.

    The device is created if missing (and then removed when nmroute closes
    it), or attached to when it exists (made with `ip tuntap add NAME mode
    tap`; then it stays). It is brought up; give it addresses with `ip addr`.
    A frame the kernel will not take (longer than the TAP's MTU plus its
    Ethernet header) is dropped as io-error. Needs CAP_NET_ADMIN.

    Example:
        ports:
          k: {port: "tap:nmr0", mac: "02:00:00:00:00:01", mtu: 1500}
          wire: packet:eth1
        links: ["k -> wire", "wire -> k"]
    """
    SCHEME = "tap"
    SUMMARY = "a TAP device (created if missing, removed on close if created)"
    DIRECTIONS = ("rx", "tx")
    ARG = "name"
    PARAMS = (
        Param("name", Str(NAME_RE, "an interface name (at most 15 letters, digits, _ . -)"),
              "the TAP device"),
        Param("mac", Mac(), "its MAC address; default: the kernel's random one", None),
        Param("mtu", Int(0, 65535 - 64), "its MTU; 0: leave it", 0),
    )

    def open(self, pool, uint32_t ring_size, bint rx, bint tx):
        Port.open(self, pool, ring_size, rx, tx)
        self.open_tap(self.params["name"], self.params.get("mac"), self.params.get("mtu") or 0)
