# distutils: include_dirs = kernel
"""netmap:NAME and valeX:PORT — rings of the netmap kernel module, through /dev/netmap."""
from nmroute.errors import ParamError
from nmroute.schema import Param, Custom
from nmroute.fastpath.lib import netmap_name

cimport cython
from libc.errno cimport errno, EPERM, EACCES, ENOENT, ENXIO, EBUSY, EINVAL
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset, strncpy
from posix.fcntl cimport open as c_open, O_RDWR, O_CLOEXEC
from posix.mman cimport mmap, munmap, PROT_READ, PROT_WRITE, MAP_SHARED, MAP_FAILED
from posix.unistd cimport close as c_close

from nmroute.fastpath.drops cimport DROP_OVERSIZE, DROP_MALFORMED
from nmroute.fastpath.includes.netmap cimport (
    ioctl, nmr_slot, nmr_ring, nmr_if, nmr_header, nmr_register,
    NMR_API, NMR_REQ_REGISTER, NMR_NIOCCTRL, NMR_NIOCTXSYNC, NMR_NIOCRXSYNC,
    NMR_NS_MOREFRAG, NMR_REG_ALL_NIC, NMR_REG_SW, NMR_REG_NIC_SW, NMR_REG_ONE_NIC,
    NMR_REG_ONE_SW, NMR_MONITOR_TX, NMR_MONITOR_RX, NMR_ZCOPY_MON, NMR_EXCLUSIVE,
    NMR_RX_RINGS_ONLY, NMR_TX_RINGS_ONLY,
    NMR_SIZEOF_SLOT, NMR_SIZEOF_RING, NMR_SIZEOF_IF, NMR_SIZEOF_HEADER,
    NMR_SIZEOF_REGISTER, NMR_OFS_RING_HEAD, NMR_OFS_RING_TAIL, NMR_OFS_RING_SLOT,
    NMR_OFS_IF_RING_OFS, NMR_OFS_IF_HOST_TX, NMR_OFS_REG_MODE, NMR_OFS_REG_FLAGS,
    NMR_OFS_HDR_BODY)
from nmroute.fastpath.includes.sys cimport now_ns, CLOCK_REALTIME
from nmroute.fastpath.ports.port cimport Port, P_RX
from nmroute.fastpath.ring cimport NmRing, Slot, ring_next, slot_buf

import os

from nmroute.errors import PortError

DEV = "/dev/netmap"
NO_MODULE = ("netmap module not loaded (/dev/netmap missing): "
             "use xdp:IFACE or packet:IFACE instead")

# The ABI as this module was compiled (kernel/netmap.h), for the tests.
ABI = {
    "api": NMR_API,
    "sizeof_slot": NMR_SIZEOF_SLOT, "sizeof_ring": NMR_SIZEOF_RING,
    "sizeof_if": NMR_SIZEOF_IF, "sizeof_header": NMR_SIZEOF_HEADER,
    "sizeof_register": NMR_SIZEOF_REGISTER,
    "ring.head": NMR_OFS_RING_HEAD, "ring.tail": NMR_OFS_RING_TAIL,
    "ring.slot": NMR_OFS_RING_SLOT, "if.ring_ofs": NMR_OFS_IF_RING_OFS,
    "if.ni_host_tx_rings": NMR_OFS_IF_HOST_TX, "register.nr_mode": NMR_OFS_REG_MODE,
    "register.nr_flags": NMR_OFS_REG_FLAGS, "header.nr_body": NMR_OFS_HDR_BODY,
    "NIOCCTRL": NMR_NIOCCTRL, "NIOCTXSYNC": NMR_NIOCTXSYNC, "NIOCRXSYNC": NMR_NIOCRXSYNC,
    "NR_REG_ALL_NIC": NMR_REG_ALL_NIC, "NR_REG_SW": NMR_REG_SW,
    "NR_REG_NIC_SW": NMR_REG_NIC_SW, "NR_REG_ONE_NIC": NMR_REG_ONE_NIC,
    "NR_REG_ONE_SW": NMR_REG_ONE_SW, "NR_MONITOR_TX": NMR_MONITOR_TX,
    "NR_MONITOR_RX": NMR_MONITOR_RX, "NR_ZCOPY_MON": NMR_ZCOPY_MON,
    "NR_EXCLUSIVE": NMR_EXCLUSIVE, "NR_RX_RINGS_ONLY": NMR_RX_RINGS_ONLY,
    "NR_TX_RINGS_ONLY": NMR_TX_RINGS_ONLY,
}


# One kernel ring bound to the port, with what the per-packet code needs.
ctypedef struct KRing:
    nmr_ring* ring
    uint8_t* bufs          # buffer 0 of the ring
    uint32_t num_slots     # not always a power of two
    uint32_t buf_size
    uint64_t n_bufs        # buffer indexes below this lie inside the region


cdef inline uint32_t knext(KRing* k, uint32_t i) noexcept nogil:
    i += 1
    return 0 if i == k.num_slots else i


def _reason(str what, int err):
    if err in (EPERM, EACCES):
        return (f"{what}: permission denied (run as root, or give this user "
                f"read-write access to {DEV})")
    return f"{what}: {os.strerror(err)}"


cdef class NetmapBase(Port):
    """The /dev/netmap machinery shared by `netmap:` and `vale` ports (see those)."""
    cdef int fd
    cdef uint8_t* mem
    cdef size_t memsize
    cdef bint own_map           # mem is our mmap of /dev/netmap
    cdef nmr_if* nifp
    cdef KRing* krx
    cdef KRing* ktx
    cdef uint32_t n_krx
    cdef uint32_t n_ktx
    cdef uint32_t rx_at         # the kernel rx ring read first next time
    cdef uint32_t tx_at         # the kernel tx ring filled first
    cdef bint in_frag           # dropping the rest of a multi-slot frame
    cdef uint32_t released      # kernel rx slots the last rx_copy gave back
    cdef readonly uint16_t mem_id
    cdef readonly uint64_t syncs   # sync ioctls issued (for tests and stats)

    def __cinit__(self, *args, **kwargs):
        self.fd = -1

    def __dealloc__(self):
        self._release()

    def spec(self):
        """The full netmap port name ('netmap:eth0^', 'vale0:p1')."""
        raise NotImplementedError

    def parsed(self):
        return netmap_name.parse(self.spec())

    def open(self, pool, uint32_t ring_size, bint rx, bint tx):
        """Stages, each undone on failure: open /dev/netmap, register the
        port (NETMAP_REQ_REGISTER), map the region, find the bound rings."""
        cdef nmr_header hdr
        cdef nmr_register reg
        cdef void* m
        cdef int fd
        Port.open(self, pool, ring_size, rx, tx)
        try:
            nm = self.parsed()
        except ParamError as e:
            raise PortError(self.name, str(e)) from None
        if not os.path.exists(DEV):
            raise PortError(self.name, NO_MODULE)
        fd = c_open(DEV.encode(), O_RDWR | O_CLOEXEC)
        if fd < 0:
            raise PortError(self.name, _reason(DEV, errno))
        self.fd = fd
        try:
            fill_request(&hdr, &reg, nm)
            if ioctl(fd, NMR_NIOCCTRL, &hdr) < 0:
                raise PortError(self.name, _register_reason(nm, errno, hdr.nr_version))
            m = mmap(NULL, reg.nr_memsize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
            if m == MAP_FAILED:
                raise PortError(self.name, _reason(
                    f"mmap of the netmap region ({reg.nr_memsize} bytes)", errno))
            self.mem = <uint8_t*>m
            self.memsize = reg.nr_memsize
            self.own_map = True
            self.mem_id = reg.nr_mem_id
            self.bind(reg.nr_offset, rx, tx)
        except BaseException:
            self._release()
            raise

    def attach_region(self, uintptr_t addr, size_t size, uint64_t nifp_offset,
                      bint rx, bint tx, int fd=-1):
        """Bind to a region laid out as netmap lays it out, already mapped
        at `addr` (not by this port), without registering. For tests, which
        play the kernel's part on it. fd: a descriptor the port then owns
        and issues its sync ioctls on (-1: none)."""
        self._release()
        self.fd = fd
        self.mem = <uint8_t*>addr
        self.memsize = size
        self.own_map = False
        self.bind(nifp_offset, rx, tx)

    cdef bind(self, uint64_t nifp_offset, bint rx, bint tx):
        """Find the rings this descriptor bound: their offsets in the
        netmap_if are non-zero. Counts come from the netmap_if itself (the
        register reply says 0 host tx rings for VALE ports and pipes, while
        the offset table still has a slot for one)."""
        cdef nmr_if* nifp
        cdef uint64_t n_tx, n_rx, i
        if nifp_offset + NMR_SIZEOF_IF > self.memsize:
            raise PortError(self.name, "netmap_if lies outside the netmap region")
        nifp = <nmr_if*>(self.mem + nifp_offset)
        n_tx = <uint64_t>nifp.ni_tx_rings + nifp.ni_host_tx_rings
        n_rx = <uint64_t>nifp.ni_rx_rings + nifp.ni_host_rx_rings
        if nifp_offset + NMR_SIZEOF_IF + (n_tx + n_rx) * sizeof(ssize_t) > self.memsize:
            raise PortError(self.name, "netmap_if ring table lies outside the netmap region")
        self.nifp = nifp
        tx_ofs = [nifp.ring_ofs[i] for i in range(n_tx) if nifp.ring_ofs[i] != 0]
        rx_ofs = [nifp.ring_ofs[n_tx + i] for i in range(n_rx) if nifp.ring_ofs[n_tx + i] != 0]
        if rx:
            if not rx_ofs:
                raise PortError(self.name, "netmap bound no rx ring to this port")
            self.krx = self._rings(rx_ofs, nifp_offset)
            self.n_krx = len(rx_ofs)
        if tx:
            if not tx_ofs:
                raise PortError(self.name, "netmap bound no tx ring to this port")
            self.ktx = self._rings(tx_ofs, nifp_offset)
            self.n_ktx = len(tx_ofs)

    cdef KRing* _rings(self, list offsets, uint64_t nifp_offset) except NULL:
        cdef KRing* ks = <KRing*>calloc(len(offsets), sizeof(KRing))
        cdef KRing* k
        cdef nmr_ring* ring
        cdef int64_t at, end, bufs_at
        if ks == NULL:
            raise MemoryError()
        try:
            for j, ofs in enumerate(offsets):
                at = <int64_t>nifp_offset + <int64_t>ofs
                if at < 0 or at + <int64_t>NMR_SIZEOF_RING > <int64_t>self.memsize:
                    raise PortError(self.name, f"netmap ring {j} lies outside the region")
                ring = <nmr_ring*>(self.mem + at)
                end = at + <int64_t>NMR_SIZEOF_RING + <int64_t>ring.num_slots * NMR_SIZEOF_SLOT
                bufs_at = at + ring.buf_ofs
                if (ring.num_slots < 2 or end > <int64_t>self.memsize or ring.nr_buf_size == 0
                        or bufs_at < 0 or bufs_at > <int64_t>self.memsize
                        or ring.head >= ring.num_slots or ring.tail >= ring.num_slots):
                    raise PortError(self.name, f"netmap ring {j} is not a valid ring")
                k = &ks[j]
                k.ring = ring
                k.bufs = self.mem + bufs_at
                k.num_slots = ring.num_slots
                k.buf_size = ring.nr_buf_size
                k.n_bufs = (<uint64_t>self.memsize - <uint64_t>bufs_at) // ring.nr_buf_size
        except BaseException:
            free(ks)
            raise
        return ks

    cdef _release(self):
        if self.fd >= 0 and self.n_ktx:
            ioctl(self.fd, NMR_NIOCTXSYNC, NULL)   # send what is still queued
        free(self.krx)
        free(self.ktx)
        self.krx = self.ktx = NULL
        self.n_krx = self.n_ktx = 0
        self.nifp = NULL
        if self.own_map and self.mem != NULL:
            munmap(self.mem, self.memsize)
        self.mem = NULL
        self.own_map = False
        if self.fd >= 0:
            c_close(self.fd)
            self.fd = -1

    def close(self):
        self._release()

    def kernel_rings(self):
        """(rx, tx): how many kernel rings this port reads and writes."""
        return (self.n_krx, self.n_ktx)

    # -- the fast path ------------------------------------------------------

    cdef inline void sync(self, unsigned long req) noexcept nogil:
        # Non-blocking; an error (the interface went away) leaves the rings
        # as they are, and the next sync tries again.
        if self.fd >= 0:
            ioctl(self.fd, req, NULL)
            self.syncs += 1

    cdef int rxsync(self) noexcept nogil:
        cdef NmRing* r = self.rx
        cdef uint32_t n
        if r == NULL or self.n_krx == 0:
            return 0
        self.sync(NMR_NIOCRXSYNC)
        n = self.rx_copy(r)
        if self.released:
            # Hand the slots just read back at once: a VALE switch drops
            # what a receiver has not released, it never waits.
            self.sync(NMR_NIOCRXSYNC)
        return n

    cdef uint32_t rx_copy(self, NmRing* r) noexcept nogil:
        """Copy the frames of the kernel's rx rings (from head to tail) into
        r, release them (head = cur = where we stopped). Returns how many
        frames r got; `released` counts the kernel slots given back."""
        cdef uint32_t t = r.tail, n = 0, h, kt, j, len_, first = self.rx_at
        cdef uint64_t ts = 0
        cdef bint full = False
        cdef KRing* k
        cdef nmr_slot* ks
        cdef Slot* s
        self.released = 0
        for j in range(self.n_krx):
            k = &self.krx[(first + j) % self.n_krx]
            h = k.ring.head
            kt = k.ring.tail
            if kt >= k.num_slots or h >= k.num_slots:
                continue           # not a ring state the kernel leaves: skip it
            while h != kt:
                if ring_next(r, t) == r.head:
                    full = True
                    break
                ks = &k.ring.slot[h]
                len_ = ks.len
                if ks.flags & NMR_NS_MOREFRAG or self.in_frag:
                    # A frame spread over several slots: longer than a buffer.
                    self.in_frag = (ks.flags & NMR_NS_MOREFRAG) != 0
                    if not self.in_frag:
                        self.ctr[P_RX] += 1
                        self.count_drop(DROP_OVERSIZE, 1)
                elif ks.buf_idx >= k.n_bufs or len_ > k.buf_size:
                    self.ctr[P_RX] += 1
                    self.count_drop(DROP_MALFORMED, 1)
                elif len_ > r.buf_size:
                    self.ctr[P_RX] += 1
                    self.count_drop(DROP_OVERSIZE, 1)
                else:
                    s = &r.slots[t]
                    memcpy(slot_buf(r, s), k.bufs + <size_t>ks.buf_idx * k.buf_size, len_)
                    if ts == 0:
                        ts = now_ns(CLOCK_REALTIME)
                    s.len = <uint16_t>len_
                    s.ts = ts
                    t = ring_next(r, t)
                    n += 1
                h = knext(k, h)
                self.released += 1
            k.ring.head = h
            k.ring.cur = h
            if full:
                # Start from this ring next time: its frames are the oldest.
                self.rx_at = (first + j) % self.n_krx
                break
        if not full:
            self.rx_at = (first + 1) % self.n_krx
        r.tail = t
        return n

    cdef int txsync(self) noexcept nogil:
        cdef NmRing* r = self.tx
        cdef uint32_t i, n = 0, before
        cdef uint64_t nbytes = 0
        cdef int attempt
        if r == NULL or self.n_ktx == 0:
            return 0
        i = r.hwcur
        for attempt in range(2):
            before = i
            i = self.tx_copy(r, i, &n, &nbytes)
            if self.fd < 0 or (i == before and attempt == 1):
                break
            if i != before or i != r.head:
                # Send what was queued; the kernel moves tail over what its
                # NIC took, which makes room for what still waits.
                self.sync(NMR_NIOCTXSYNC)
            if i == r.head:
                break
        return self.tx_done(i, n, nbytes)

    cdef uint32_t tx_copy(self, NmRing* r, uint32_t i, uint32_t* sent,
                          uint64_t* nbytes) noexcept nogil:
        """Copy r's frames from i on into the kernel's free tx slots (from
        head to tail), ring after ring; head = cur = past the last one.
        Returns the first of r's slots not taken."""
        cdef uint32_t h, kt, _j, n = self.n_ktx
        cdef KRing* k
        cdef nmr_slot* ks
        cdef Slot* s
        for _j in range(n):
            k = &self.ktx[self.tx_at]
            h = k.ring.head
            kt = k.ring.tail
            if kt >= k.num_slots or h >= k.num_slots:
                self.tx_at = (self.tx_at + 1) % n
                continue
            while i != r.head and h != kt:
                s = &r.slots[i]
                ks = &k.ring.slot[h]
                if s.len > k.buf_size:
                    self.count_drop(DROP_OVERSIZE, 1)
                elif ks.buf_idx >= k.n_bufs:
                    self.count_drop(DROP_MALFORMED, 1)
                    h = knext(k, h)    # a slot the kernel gave with no buffer: skip it
                else:
                    memcpy(k.bufs + <size_t>ks.buf_idx * k.buf_size, slot_buf(r, s), s.len)
                    ks.len = s.len
                    ks.flags = 0
                    h = knext(k, h)
                    sent[0] += 1
                    nbytes[0] += s.len
                i = ring_next(r, i)
            k.ring.head = h
            k.ring.cur = h
            if i == r.head:
                break
            self.tx_at = (self.tx_at + 1) % n    # this one is full: on to the next
        return i


cdef void fill_request(nmr_header* hdr, nmr_register* reg, nm) except *:
    """nmreq_header + nmreq_register for NETMAP_REQ_REGISTER of `nm`."""
    cdef bytes name = nm.kernel_name.encode()
    memset(hdr, 0, sizeof(nmr_header))
    memset(reg, 0, sizeof(nmr_register))
    hdr.nr_version = NMR_API
    hdr.nr_reqtype = NMR_REQ_REGISTER
    strncpy(hdr.nr_name, name, 63)
    hdr.nr_body = <uint64_t><uintptr_t>reg
    reg.nr_mode = nm.mode
    reg.nr_ringid = nm.ringid
    reg.nr_flags = nm.flags
    reg.nr_mem_id = nm.mem_id
    reg.nr_tx_rings = nm.conf.tx_rings
    reg.nr_rx_rings = nm.conf.rx_rings
    reg.nr_host_tx_rings = nm.conf.host_tx_rings
    reg.nr_host_rx_rings = nm.conf.host_rx_rings
    reg.nr_tx_slots = nm.conf.tx_slots
    reg.nr_rx_slots = nm.conf.rx_slots


def request_bytes(str spec):
    """(nmreq_header, nmreq_register) as the bytes this port would give
    NIOCCTRL for `spec`, with nr_body zeroed (it is an address): for tests."""
    cdef nmr_header hdr
    cdef nmr_register reg
    fill_request(&hdr, &reg, netmap_name.parse(spec))
    hdr.nr_body = 0
    return ((<char*>&hdr)[:sizeof(nmr_header)], (<char*>&reg)[:sizeof(nmr_register)])


def _register_reason(nm, int err, int version):
    what = f"register '{nm.kernel_name}' with netmap"
    if version != NMR_API:
        return (f"{what}: the netmap module speaks API {version}, nmroute speaks "
                f"{NMR_API}: use a matching netmap")
    if err in (ENXIO, ENOENT):
        if nm.pipe or nm.vale:
            return f"{what}: {os.strerror(err)} (netmap refused the name)"
        return (f"{what}: no such interface in this network namespace, or its "
                f"driver is not netmap-capable")
    if err == EBUSY:
        return f"{what}: its rings are busy (another process holds them exclusively)"
    if err == EINVAL:
        return f"{what}: netmap rejected the request ({nm.describe()}): {os.strerror(err)}"
    return _reason(what, err)


def _check_dirs(nm, rx, tx):
    out = []
    if rx and not nm.can_rx:
        out.append(f"'{nm.text}' binds only tx rings (/T): it cannot be read from")
    if tx and not nm.can_tx:
        out.append(f"'{nm.text}' binds no tx ring (/R or a monitor): it cannot be written to")
    return out


def _netmap_arg(value):
    if not isinstance(value, str) or not value:
        raise ParamError(f"expected a netmap port name like eth0, eth0^ or x{{1, got {value!r}")
    netmap_name.parse("netmap:" + value)
    return value


def _vale_arg(value):
    if not isinstance(value, str) or not netmap_name._VALE.match(value):
        raise ParamError(f"expected a VALE port name like vale0:p1, got {value!r}")
    netmap_name.parse(value)
    return value


@cython.final
cdef class NetmapPort(NetmapBase):
    """A NIC, its host rings or a netmap pipe, through the netmap kernel
    module. The name after `netmap:` is netmap's own (libnetmap's
    nmport_open grammar): `eth0` every NIC ring pair, `eth0^` the host
    rings (the kernel stack's side: what it sends out of eth0 arrives here,
    what is written here it receives), `eth0^1` host ring pair 1, `eth0*`
    NIC and host rings, `eth0-2` NIC ring pair 2, `x{1` / `x}1` the master /
    slave end of pipe 1 of `x`; then `/R` or `/T` (rx or tx rings only),
    `/x` (exclusive), `@N` (memory region N), `@conf:rings=2,slots=1024`
    (sizes of a pipe the open creates). See nmroute.fastpath.lib.netmap_name.

    rx: each rxsync issues NIOCRXSYNC, copies the frames between head and
    tail of every bound rx ring into the port's ring, gives the slots back
    (head = cur) and syncs again at once so the kernel can refill them.
    tx: frames are copied into the free slots of the bound tx rings (one
    ring after another as each fills) and sent with NIOCTXSYNC; when every
    kernel ring is full they wait in the port's ring and the inputs feeding
    it are held back. Neither direction blocks: the executor polls.

    Copies: the netmap region is the kernel's memory, not nmroute's pool,
    so each frame is copied once on its way in and once on its way out.
    Zero-copy between two netmap ports (swapping buffer indexes) needs the
    pool to be the netmap region (or the region to be the pool, with
    netmap's extmem option); that is a follow-up.

    A frame longer than a pool buffer, or spread over several slots
    (NS_MOREFRAG), is dropped as oversize; a slot whose buffer index lies
    outside the region as malformed. Needs the netmap module (/dev/netmap,
    read-write); without it the port says so in one line and suggests
    `xdp:IFACE` or `packet:IFACE`. Turn offloads off on the interface
    (`ethtool -K IFACE gro off gso off tso off`), as netmap requires.

    Example:
        ports:
          wire: "netmap:eth1"
          stack: "netmap:eth1^"
        links: ["wire -> stack", "stack -> wire"]
    """
    SCHEME = "netmap"
    SUMMARY = "a NIC, its host rings or a pipe through the netmap module (/dev/netmap)"
    DIRECTIONS = ("rx", "tx")
    ARG = "name"
    PARAMS = (
        Param("name", Custom("a netmap port name like eth0, eth0^, eth0-1 or x{1",
                             _netmap_arg),
              "netmap's name of the port, without 'netmap:'"),
    )

    @classmethod
    def check(cls, params, rx, tx):
        try:
            nm = netmap_name.parse("netmap:" + params["name"])
        except (ParamError, KeyError, TypeError):
            return []          # already reported by the param's own check
        return _check_dirs(nm, rx, tx)

    def spec(self):
        return "netmap:" + self.params["name"]


@cython.final
cdef class ValePort(NetmapBase):
    """A port of a VALE software switch in the netmap module: `vale0:p1` is
    port p1 of switch vale0, both made when first opened (and gone when the
    last user closes them). Frames written here go to the switch, which
    forwards them by destination MAC to its other ports; frames the switch
    sends this port are read here. `vale0:p1{1` / `}1` are pipes of the
    port; the mode suffixes and @conf of `netmap:` apply (see netmap).

    rx and tx work as for `netmap:` (a copy each way). VALE never makes a
    sender wait: a frame for a port whose rx ring is full is lost inside
    the switch, where nmroute cannot count it (netmap users know this as
    "lossy VALE"). nmroute gives rx slots back within the same rxsync to
    keep that low; a pipeline that falls behind its VALE input still loses
    frames there. Needs the netmap module.

    Example:
        ports:
          sw: "vale0:nmr"
          out: "pcap:/tmp/from-vale.pcap"
        links: ["sw -> out"]
    """
    SCHEME = "vale"
    SUMMARY = "a port of a VALE switch of the netmap module (vale0:p1)"
    DIRECTIONS = ("rx", "tx")
    ARG = "name"
    PARAMS = (
        Param("name", Custom("a VALE port name like vale0:p1", _vale_arg),
              "the whole name, switch included"),
    )

    @classmethod
    def check(cls, params, rx, tx):
        try:
            nm = netmap_name.parse(params["name"])
        except (ParamError, KeyError, TypeError):
            return []
        return _check_dirs(nm, rx, tx)

    def spec(self):
        return self.params["name"]


# -- the user's side of a port's rings, as the executor plays it: for tests.

def take_frames(NetmapBase port, int most=-1):
    """Take the frames in the port's rx ring (head to tail) and release
    their slots; returns them as bytes."""
    cdef NmRing* r = port.rx
    out = []
    while r.head != r.tail and most != 0:
        out.append((<char*>slot_buf(r, &r.slots[r.head]))[:r.slots[r.head].len])
        r.head = ring_next(r, r.head)
        r.cur = r.head
        most -= 1
    return out


def put_frames(NetmapBase port, frames):
    """Queue frames in the port's tx ring (at head, while there are free
    slots); returns how many were queued."""
    cdef NmRing* r = port.tx
    cdef bytes f
    cdef int n = 0
    for f in frames:
        if r.head == r.tail or <uint32_t>len(f) > r.buf_size:
            break
        memcpy(slot_buf(r, &r.slots[r.head]), <char*>f, len(f))
        r.slots[r.head].len = len(f)
        r.head = ring_next(r, r.head)
        r.cur = r.head
        n += 1
    return n
