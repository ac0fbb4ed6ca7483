"""packet:IFACE — an interface through AF_PACKET with mmap rings (netmap's emulated mode)."""
from nmroute.schema import Param, Str, Bool, Int

cimport cython
from libc.errno cimport errno, EPERM, EACCES, ENETDOWN, ENXIO, ENODEV
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset
from posix.mman cimport mmap, munmap, PROT_READ, PROT_WRITE, MAP_SHARED, MAP_FAILED
from posix.unistd cimport close as c_close

from nmroute.fastpath.csum cimport csum
from nmroute.fastpath.drops cimport DROP_OVERSIZE, DROP_LINK_DOWN
from nmroute.fastpath.includes.if_packet cimport (
    socket, setsockopt, getsockopt, bind, sendto, sockaddr, socklen_t, if_nametoindex,
    htons, AF_PACKET, SOCK_RAW, SOCK_CLOEXEC, MSG_DONTWAIT, ETH_P_ALL, SOL_PACKET,
    PACKET_ADD_MEMBERSHIP, PACKET_RX_RING, PACKET_TX_RING, PACKET_VERSION, PACKET_LOSS,
    PACKET_FANOUT, PACKET_FANOUT_HASH, PACKET_FANOUT_FLAG_DEFRAG, PACKET_QDISC_BYPASS,
    PACKET_IGNORE_OUTGOING, PACKET_MR_PROMISC, PACKET_STATISTICS, TPACKET_V3,
    TP_STATUS_KERNEL, TP_STATUS_USER, TP_STATUS_CSUMNOTREADY, TP_STATUS_VLAN_VALID,
    TP_STATUS_VLAN_TPID_VALID,
    TP_STATUS_AVAILABLE, TP_STATUS_SEND_REQUEST, TP_STATUS_WRONG_FORMAT, TPACKET3_DATA_OFF,
    sockaddr_ll, packet_mreq, tpacket_req3, tpacket3_hdr, tpacket_block_desc,
    tpacket_stats_v3, load_acquire, store_release)
from nmroute.fastpath.includes.sys cimport now_ns, CLOCK_MONOTONIC
from nmroute.fastpath.includes.tun cimport ioctl, IFF_UP, SIOCGIFFLAGS
from nmroute.fastpath.ports.port cimport Port, P_RX, P_TX, P_TX_BYTES
from nmroute.fastpath.ring cimport NmRing, Slot, ring_next, slot_buf

import os

import structlog

from nmroute.fastpath.drops import DropReason, reason_name
from nmroute.errors import PortError

log = structlog.get_logger("nmroute")

# The drop reason frames sent to a down or deleted interface are counted
# under, as stats name it.
LINK_DOWN_DROP = reason_name(DropReason(DROP_LINK_DOWN))

# What the link check uses beyond includes/if_packet.pxd and tun.pxd: the
# ifindex a socket is bound to (getsockname: -1 once its interface is
# deleted), and an interface's name and flags from its ifindex.
cdef extern from "<sys/socket.h>" nogil:
    int getsockname(int fd, sockaddr* addr, socklen_t* len)

cdef extern from "<linux/sockios.h>" nogil:
    enum: SIOCGIFNAME

cdef extern from "<net/if.h>" nogil:
    enum: IFF_RUNNING            # up and has carrier
    struct ifreq_x "ifreq":
        char ifr_name[16]
        int ifr_ifindex          # SIOCGIFNAME
        short ifr_flags          # SIOCGIFFLAGS

cdef enum:
    RX_BLOCK_SIZE = 1 << 16      # 64 KiB: a block is handed over when full or timed out
    TX_BLOCK_SIZE = 1 << 17
    MIN_BLOCKS = 4
    ETH_ALEN2 = 12               # both MAC addresses: where a VLAN tag goes back in
    VLAN_LEN = 4
    CHECK_NS = 100000000         # look at the link every 100 ms

# The link (PacketPort.link).
cdef enum:
    LINK_UP = 0
    LINK_DOWN = 1                # not up, or no carrier: frames to it are dropped
    LINK_GONE = 2                # deleted: the socket is closed until it is back

# attach()'s stages: what failed.
cdef enum:
    ST_SOCKET = 1
    ST_VERSION
    ST_RX_RING
    ST_TX_RING
    ST_MMAP
    ST_QDISC
    ST_BIND
    ST_PROMISC
    ST_FANOUT


def errno_reason(str what, int err, str cap="CAP_NET_RAW"):
    """One line for a failed set-up call: the capability it needs when the
    kernel said EPERM/EACCES, else the errno's text."""
    if err in (EPERM, EACCES):
        return f"{what}: permission denied (needs {cap}; run as root or grant it)"
    return f"{what}: {os.strerror(err)}"


# attach()'s stages: what each set up, and what it needs when refused.
_STAGES = {
    ST_SOCKET: ("AF_PACKET socket", "CAP_NET_RAW"),
    ST_VERSION: ("TPACKET_V3", "CAP_NET_RAW"),
    ST_RX_RING: ("PACKET_RX_RING", "CAP_NET_RAW"),
    ST_TX_RING: ("PACKET_TX_RING", "CAP_NET_RAW"),
    ST_MMAP: ("mmap of the rings", "CAP_IPC_LOCK or a higher RLIMIT_MEMLOCK"),
    ST_QDISC: ("PACKET_QDISC_BYPASS", "CAP_NET_RAW"),
    ST_BIND: ("bind to {iface}", "CAP_NET_RAW"),
    ST_PROMISC: ("promiscuous mode", "CAP_NET_RAW"),
    ST_FANOUT: ("PACKET_FANOUT", "CAP_NET_RAW"),
}


@cython.final
cdef class PacketPort(Port):
    """An interface read and written through an AF_PACKET socket with
    TPACKET_V3 rx and tx rings mapped into the process.

    rx: frames are copied once from the kernel's rx ring into the pool (the
    kernel's ring is not the pool). The kernel hands over a block of frames
    when it is full or after `rx_timeout_ms`, which bounds the added latency
    at low rates. A VLAN tag the driver stripped is put back in the frame.
    tx: frames are copied into the kernel's tx ring and sent with one
    sendto() per batch; when that ring is full they wait in the port's ring
    and the inputs feeding it are held back. Frames the socket itself sends
    are not read back (PACKET_IGNORE_OUTGOING).

    The kernel stack still sees the interface's traffic (AF_PACKET taps it,
    it does not steal it): give the interface no addresses, or pair it with
    `host:IFACE` to put the stack behind nmroute. Turn offloads off on the
    interface (`ethtool -K IFACE gro off gso off tso off`) so frames are no
    longer than the MTU; longer ones are dropped as oversize. Needs
    CAP_NET_RAW.

    Faults: the port looks at the link every 100 ms (and at once when a send
    fails with ENETDOWN/ENXIO). While it is down (set down, or its carrier
    lost) or deleted, frames sent to it are dropped (link-down), the ones
    already in the kernel's tx ring included, so the inputs feeding it are
    never held back; it reads nothing. It is back by itself when the link is
    up again; a deleted interface's socket is closed and opened again, on the
    new ifindex, once an interface of that name exists. Each event is logged
    once (a warning naming the port and the interface).

    Example:
        ports:
          wan: {port: "packet:eth0", qdisc_bypass: true}
          lan: packet:eth1
        links: ["wan -> lan", "lan -> wan"]
    """
    SCHEME = "packet"
    SUMMARY = "an interface through AF_PACKET mmap rings (TPACKET_V3)"
    DIRECTIONS = ("rx", "tx")
    ARG = "iface"
    PARAMS = (
        Param("iface", Str(r"[^/\s:]{1,15}", "an interface name"), "the interface"),
        Param("qdisc_bypass", Bool(), "send straight to the driver, past the qdisc "
              "(and past tcpdump on this interface): faster", False),
        Param("fanout", Int(0, 65535), "PACKET_FANOUT group id shared by the sockets "
              "that split this interface's traffic by flow hash; 0: none", 0),
        Param("promisc", Bool(), "put the interface in promiscuous mode while open", True),
        Param("rx_timeout_ms", Int(1, 1000), "ms before a partly filled rx block is "
              "handed over", 1),
        Param("fix_checksums", Bool(), "complete the TCP/UDP checksum of frames the kernel "
              "marks as not yet computed (sent on this machine with checksum offload)", True),
    )

    cdef int fd
    cdef uint8_t* map
    cdef size_t map_len
    cdef size_t rx_len
    cdef readonly int ifindex
    cdef char c_iface[16]
    cdef tpacket_req3 rreq         # ring geometry, kept to open again on a new ifindex
    cdef tpacket_req3 treq
    cdef bint promisc
    cdef bint qdisc_bypass
    cdef int fanout_arg
    cdef int err                   # errno of the stage attach() says failed
    # rx ring (V3 blocks)
    cdef uint32_t rx_nblocks
    cdef uint32_t rx_blk           # block being read
    cdef uint32_t rx_left          # packets left in it (0: not started)
    cdef uint32_t rx_off           # offset of the next packet in it
    # tx ring (fixed frames)
    cdef uint8_t** tx_frames
    cdef uint32_t tx_nframes
    cdef uint32_t tx_next          # next frame to fill, in kernel order
    cdef uint32_t tx_max           # largest frame a tx slot holds
    cdef bint kick_pending         # frames in the kernel ring not yet kicked out
    cdef bint fix_csum
    # the link, as the fast path last saw it (see check_link)
    cdef readonly int link
    cdef short flags               # the interface's flags when last looked at
    cdef bint carrier_seen         # it had a carrier once since open()
    cdef uint64_t next_check       # CLOCK_MONOTONIC ns of the next look at it
    cdef readonly uint32_t n_down, n_up, n_gone, n_back, n_fail
    cdef int fail_stage            # last failed re-open: stage and errno
    cdef int fail_err
    cdef tuple logged              # the n_* maintain() has logged

    def __cinit__(self, *args, **kwargs):
        self.fd = -1

    def __dealloc__(self):
        self._release()

    def open(self, pool, uint32_t ring_size, bint rx, bint tx):
        cdef bytes iface = self.params["iface"].encode()
        cdef uint32_t per_block
        cdef unsigned int ifindex
        cdef int stage
        Port.open(self, pool, ring_size, rx, tx)
        self.fix_csum = self.params.get("fix_checksums", True)
        self.promisc = rx and self.params.get("promisc", True)
        self.qdisc_bypass = tx and self.params.get("qdisc_bypass", False)
        self.fanout_arg = 0
        if rx and self.params.get("fanout"):
            self.fanout_arg = (self.params["fanout"]
                               | ((PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) << 16))
        memset(self.c_iface, 0, sizeof(self.c_iface))
        memcpy(self.c_iface, <char*>iface, min(len(iface), 15))
        memset(&self.rreq, 0, sizeof(self.rreq))
        memset(&self.treq, 0, sizeof(self.treq))
        self.rx_len = 0
        self.map_len = 0
        if rx:
            self.rreq.tp_block_size = RX_BLOCK_SIZE
            self.rreq.tp_frame_size = _frame_size(pool.buf_size)
            self.rreq.tp_block_nr = max(<uint32_t>MIN_BLOCKS,
                                        ring_size * self.rreq.tp_frame_size // RX_BLOCK_SIZE)
            self.rreq.tp_frame_nr = (RX_BLOCK_SIZE // self.rreq.tp_frame_size
                                     * self.rreq.tp_block_nr)
            self.rreq.tp_retire_blk_tov = self.params.get("rx_timeout_ms", 1)
            self.rx_len = <size_t>self.rreq.tp_block_size * self.rreq.tp_block_nr
            self.rx_nblocks = self.rreq.tp_block_nr
        self.map_len = self.rx_len
        if tx:
            self.treq.tp_frame_size = _frame_size(pool.buf_size)
            self.treq.tp_block_size = TX_BLOCK_SIZE
            per_block = TX_BLOCK_SIZE // self.treq.tp_frame_size
            self.treq.tp_block_nr = max(<uint32_t>MIN_BLOCKS,
                                        (ring_size + per_block - 1) // per_block)
            self.treq.tp_frame_nr = per_block * self.treq.tp_block_nr
            self.map_len += <size_t>self.treq.tp_block_size * self.treq.tp_block_nr
            self.tx_nframes = self.treq.tp_frame_nr
            self.tx_max = self.treq.tp_frame_size - TPACKET3_DATA_OFF
            if self.tx_max > pool.buf_size:
                self.tx_max = pool.buf_size
            self.tx_frames = <uint8_t**>calloc(self.tx_nframes, sizeof(uint8_t*))
            if self.tx_frames == NULL:
                raise MemoryError()
        ifindex = if_nametoindex(iface)
        if ifindex == 0:
            raise PortError(self.name, f"no such interface '{self.params['iface']}'"
                                       f" in this network namespace")
        stage = self.attach(ifindex)
        if stage:
            raise PortError(self.name, self.stage_reason(stage, self.err))
        self.logged = (0, 0, 0, 0, 0)
        self.link = self.probe()
        self.next_check = now_ns(CLOCK_MONOTONIC) + CHECK_NS
        if self.link != LINK_UP:
            log.warning("link down: frames sent to it are dropped until it is up",
                        drop=LINK_DOWN_DROP, port=self.name, iface=self.params["iface"])

    def stage_reason(self, int stage, int err):
        """One line for a failed attach() stage."""
        what, cap = _STAGES[stage]
        return errno_reason(what.format(iface=self.params["iface"]), err, cap)

    cdef int attach(self, int ifindex) noexcept nogil:
        """Open the socket on `ifindex`, set up, map and bind its rings.
        Returns 0, or the stage that failed (ST_*) with its errno in
        self.err; a failure leaves nothing open."""
        cdef int stage = self.attach_stages(ifindex)
        if stage:
            self.err = errno
            self.detach()
        return stage

    cdef int attach_stages(self, int ifindex) noexcept nogil:
        cdef int fd, one = 1, version = TPACKET_V3
        cdef uint32_t per_block, i
        cdef sockaddr_ll sll
        cdef packet_mreq mreq
        cdef void* m
        fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0)
        if fd < 0:
            return ST_SOCKET
        self.fd = fd
        if setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(int)) < 0:
            return ST_VERSION
        # A frame the kernel rejects (too long for the MTU) is skipped, not
        # left blocking the tx ring.
        setsockopt(fd, SOL_PACKET, PACKET_LOSS, &one, sizeof(int))
        if self.rx != NULL and setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &self.rreq,
                                          sizeof(tpacket_req3)) < 0:
            return ST_RX_RING
        if self.tx != NULL and setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &self.treq,
                                          sizeof(tpacket_req3)) < 0:
            return ST_TX_RING
        m = mmap(NULL, self.map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        if m == MAP_FAILED:
            return ST_MMAP
        self.map = <uint8_t*>m
        if self.tx != NULL:
            per_block = self.treq.tp_block_size // self.treq.tp_frame_size
            for i in range(self.tx_nframes):
                self.tx_frames[i] = (self.map + self.rx_len
                                     + <size_t>(i // per_block) * self.treq.tp_block_size
                                     + <size_t>(i % per_block) * self.treq.tp_frame_size)
        if self.qdisc_bypass and setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one,
                                            sizeof(int)) < 0:
            return ST_QDISC
        setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(int))
        memset(&sll, 0, sizeof(sll))
        sll.sll_family = AF_PACKET
        sll.sll_ifindex = ifindex
        sll.sll_protocol = htons(ETH_P_ALL) if self.rx != NULL else 0   # 0: receive nothing
        if bind(fd, <sockaddr*>&sll, sizeof(sll)) < 0:
            return ST_BIND
        if self.promisc:
            memset(&mreq, 0, sizeof(mreq))
            mreq.mr_ifindex = ifindex
            mreq.mr_type = PACKET_MR_PROMISC
            if setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, sizeof(mreq)) < 0:
                return ST_PROMISC
        if self.fanout_arg and setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &self.fanout_arg,
                                          sizeof(int)) < 0:
            return ST_FANOUT
        self.ifindex = ifindex
        self.rx_blk = 0
        self.rx_left = 0
        self.rx_off = 0
        self.tx_next = 0
        self.kick_pending = False
        self.tx_backlog = False
        return 0

    cdef void detach(self) noexcept nogil:
        """Unmap the rings and close the socket (which leaves the fanout
        group and drops promiscuous mode)."""
        if self.map != NULL:
            munmap(self.map, self.map_len)
            self.map = NULL
        if self.fd >= 0:
            c_close(self.fd)
            self.fd = -1

    cdef _release(self):
        self.detach()
        free(self.tx_frames)
        self.tx_frames = NULL

    def close(self):
        self.maintain()
        packets, drops = self.kernel_stats()
        if drops:
            # Never received, so not in rx == tx + drops: the kernel's own loss.
            log.warning("the kernel dropped frames: the rx ring was full", port=self.name,
                        dropped=drops, received=packets)
        self._release()

    def maintain(self):
        """Slow path: log, once each, what the fast path saw happen to the
        link since the last call (called every ~100 ms by the runtime, and
        by close())."""
        if self.logged is None:
            return
        now = (self.n_down, self.n_up, self.n_gone, self.n_back, self.n_fail)
        if now == self.logged:
            return
        down, up, gone, back, fail = (a - b for a, b in zip(now, self.logged))
        kw = {"port": self.name, "iface": self.params["iface"]}
        if down:
            log.warning("link down: frames sent to it are dropped until it is up",
                        drop=LINK_DOWN_DROP, times=self.n_down, **kw)
        if gone:
            log.warning("interface gone: frames sent to it are dropped; the port opens "
                        "again when an interface of that name appears", drop=LINK_DOWN_DROP,
                        times=self.n_gone, **kw)
        if fail:
            log.warning("interface back but the port could not open on it; trying again",
                        reason=self.stage_reason(self.fail_stage, self.fail_err), **kw)
        if back:
            log.info("interface back: the port opened again on it", ifindex=self.ifindex,
                     up=self.link == LINK_UP, **kw)
        if up:
            log.info("link up again", **kw)
        self.logged = now

    def kernel_stats(self):
        """(packets, drops) the kernel counted on the rx ring since the last call."""
        cdef tpacket_stats_v3 st
        cdef socklen_t n = sizeof(st)
        if self.fd < 0 or getsockopt(self.fd, SOL_PACKET, PACKET_STATISTICS, &st, &n) < 0:
            return (0, 0)
        return (st.tp_packets, st.tp_drops)

    def kernel_drops(self):
        """The rx ring's drops since the last read (the kernel resets them)."""
        return self.kernel_stats()[1]

    cdef int probe(self) noexcept nogil:
        """The link as the kernel has it now: LINK_GONE when the socket lost
        its interface (deleted; a new one of that name has a new ifindex),
        LINK_DOWN when it is not up, or lost its carrier."""
        cdef sockaddr_ll sll
        cdef socklen_t n = sizeof(sll)
        cdef ifreq_x ifr
        if self.fd < 0:
            return LINK_GONE
        if getsockname(self.fd, <sockaddr*>&sll, &n) == 0 and sll.sll_ifindex != self.ifindex:
            return LINK_GONE
        memset(&ifr, 0, sizeof(ifr))
        ifr.ifr_ifindex = self.ifindex
        if (ioctl(self.fd, SIOCGIFNAME, &ifr) < 0
                or ioctl(self.fd, SIOCGIFFLAGS, &ifr) < 0):
            return LINK_GONE if errno == ENODEV else self.link
        self.flags = ifr.ifr_flags
        if not ifr.ifr_flags & IFF_UP:
            return LINK_DOWN
        if ifr.ifr_flags & IFF_RUNNING:
            self.carrier_seen = True
        elif self.carrier_seen:
            return LINK_DOWN        # lost its carrier (not before it had one:
        return LINK_UP              # the kernel sets it a while after the link is up)

    cdef void check_link(self, uint64_t now) noexcept nogil:
        """Look at the link (every CHECK_NS while rxsync/txsync run, and at
        once when a kick fails with ENETDOWN/ENXIO) and follow it: on the way
        down the frames still in the kernel's tx ring are taken back and
        dropped; a deleted interface's socket is closed, and opened again on
        the new ifindex once an interface of that name exists. Events are
        counted in n_*; maintain() logs them."""
        cdef int state
        cdef unsigned int ifindex
        cdef int stage
        self.next_check = now + CHECK_NS
        state = self.probe()
        if state != LINK_UP and self.link == LINK_UP:
            self.reclaim_tx()
        if state == LINK_GONE and self.fd >= 0:
            self.detach()
            self.n_gone += 1
        if self.fd < 0:
            ifindex = if_nametoindex(self.c_iface)
            if ifindex != 0:
                stage = self.attach(ifindex)
                if stage == 0:
                    self.n_back += 1
                    self.fail_stage = 0
                    state = self.probe()
                elif stage != self.fail_stage or self.err != self.fail_err:
                    self.fail_stage = stage
                    self.fail_err = self.err
                    self.n_fail += 1
        if state == LINK_DOWN and self.link == LINK_UP:
            self.n_down += 1
        elif state == LINK_UP and self.link == LINK_DOWN:
            self.n_up += 1
        self.link = state

    cdef void reclaim_tx(self) noexcept nogil:
        """Take back the frames queued in the kernel's tx ring that it has not
        taken (TP_STATUS_SEND_REQUEST: the link went down under them): they
        were counted as sent, they are dropped as link-down instead. They are
        the frames just before tx_next; the kernel resumes at the oldest, so
        tx_next moves back to it. Only this thread sends, so the kernel is
        not reading them meanwhile."""
        cdef uint32_t i = self.tx_next, j, k = 0
        cdef uint64_t nbytes = 0
        cdef tpacket3_hdr* h
        if self.tx == NULL or self.map == NULL:
            return
        while k < self.tx_nframes:
            j = (i if i else self.tx_nframes) - 1
            h = <tpacket3_hdr*>self.tx_frames[j]
            if load_acquire(&h.tp_status) != TP_STATUS_SEND_REQUEST:
                break
            nbytes += h.tp_len
            store_release(&h.tp_status, TP_STATUS_AVAILABLE)
            i = j
            k += 1
        self.tx_next = i
        self.kick_pending = False
        self.tx_backlog = False
        self.ctr[P_TX] -= k
        self.ctr[P_TX_BYTES] -= nbytes
        self.count_drop(DROP_LINK_DOWN, k)

    cdef inline int kick(self) noexcept nogil:
        # Any failure (EAGAIN/ENOBUFS: the device is busy; ENETDOWN: it is
        # down) leaves the frames queued in the kernel's ring: kick again on
        # the next rxsync/txsync. Returns sendto's result (errno set).
        cdef int rc = sendto(self.fd, NULL, 0, MSG_DONTWAIT, NULL, 0)
        self.kick_pending = rc < 0
        self.tx_backlog = self.kick_pending     # so the executor calls txsync again
        return rc

    cdef int rxsync(self) noexcept nogil:
        cdef NmRing* r = self.rx
        cdef uint32_t t, n = 0, len_, status, snap
        cdef tpacket_block_desc* bd
        cdef tpacket3_hdr* h
        cdef uint8_t* dst
        cdef uint8_t* src
        cdef Slot* s
        cdef uint64_t now = now_ns(CLOCK_MONOTONIC)
        if now >= self.next_check:
            self.check_link(now)
        if self.kick_pending and self.link == LINK_UP:
            self.kick()
        if r == NULL or self.map == NULL:
            return 0
        t = r.tail
        while ring_next(r, t) != r.head:
            bd = <tpacket_block_desc*>(self.map + <size_t>self.rx_blk * RX_BLOCK_SIZE)
            if self.rx_left == 0:
                if not (load_acquire(&bd.hdr.bh1.block_status) & TP_STATUS_USER):
                    break
                self.rx_left = bd.hdr.bh1.num_pkts
                self.rx_off = bd.hdr.bh1.offset_to_first_pkt
                if self.rx_left == 0:
                    self.release_block(bd)
                    continue
            h = <tpacket3_hdr*>(<uint8_t*>bd + self.rx_off)
            status = h.tp_status
            snap = h.tp_snaplen
            len_ = snap + (VLAN_LEN if status & TP_STATUS_VLAN_VALID else 0)
            if len_ > r.buf_size or snap < h.tp_len or snap < ETH_ALEN2:
                # Longer than a buffer (or than the kernel kept): not a whole frame.
                self.ctr[P_RX] += 1
                self.count_drop(DROP_OVERSIZE, 1)
            else:
                s = &r.slots[t]
                dst = slot_buf(r, s)
                src = <uint8_t*>h + h.tp_mac
                if status & TP_STATUS_VLAN_VALID:
                    memcpy(dst, src, ETH_ALEN2)
                    _put_vlan(dst + ETH_ALEN2, h.hv1.tp_vlan_tci,
                              h.hv1.tp_vlan_tpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100)
                    memcpy(dst + ETH_ALEN2 + VLAN_LEN, src + ETH_ALEN2, snap - ETH_ALEN2)
                else:
                    memcpy(dst, src, snap)
                if status & TP_STATUS_CSUMNOTREADY and self.fix_csum:
                    complete_l4_csum(dst, len_)
                s.len = <uint16_t>len_
                s.ts = <uint64_t>h.tp_sec * 1000000000ULL + h.tp_nsec
                t = ring_next(r, t)
                n += 1
            self.rx_off += h.tp_next_offset
            self.rx_left -= 1
            if self.rx_left == 0:
                self.release_block(bd)
        r.tail = t
        return n

    cdef inline void release_block(self, tpacket_block_desc* bd) noexcept nogil:
        store_release(&bd.hdr.bh1.block_status, TP_STATUS_KERNEL)
        self.rx_left = 0
        self.rx_blk += 1
        if self.rx_blk == self.rx_nblocks:
            self.rx_blk = 0

    cdef int txsync(self) noexcept nogil:
        cdef NmRing* r = self.tx
        cdef uint32_t i, n = 0, st
        cdef uint64_t nbytes = 0
        cdef tpacket3_hdr* h
        cdef Slot* s
        cdef uint64_t now
        cdef bint lost = False
        if r == NULL:
            return 0
        now = now_ns(CLOCK_MONOTONIC)
        if now >= self.next_check:
            self.check_link(now)
        if self.link != LINK_UP:
            # Down or gone: what is queued is dropped, so the inputs feeding
            # this port are never held back by it.
            self.count_drop(DROP_LINK_DOWN, (r.head - r.hwcur) & r.mask)
            return self.tx_done(r.head, 0, 0)
        i = r.hwcur
        while i != r.head:
            h = <tpacket3_hdr*>self.tx_frames[self.tx_next]
            st = load_acquire(&h.tp_status)
            if st != TP_STATUS_AVAILABLE:
                if st & TP_STATUS_WRONG_FORMAT:
                    # Only without PACKET_LOSS; counted where it was queued.
                    store_release(&h.tp_status, TP_STATUS_AVAILABLE)
                    continue
                if st & TP_STATUS_SEND_REQUEST:
                    self.kick_pending = True    # queued but never taken: kick again
                break              # the kernel's ring is full: the rest waits
            s = &r.slots[i]
            if s.len > self.tx_max:
                self.count_drop(DROP_OVERSIZE, 1)
            else:
                memcpy(<uint8_t*>h + TPACKET3_DATA_OFF, slot_buf(r, s), s.len)
                h.tp_len = s.len
                h.tp_snaplen = s.len
                h.tp_next_offset = 0
                store_release(&h.tp_status, TP_STATUS_SEND_REQUEST)
                self.tx_next += 1
                if self.tx_next == self.tx_nframes:
                    self.tx_next = 0
                n += 1
                nbytes += s.len
            i = ring_next(r, i)
        if n or self.kick_pending:
            lost = self.kick() < 0 and (errno == ENETDOWN or errno == ENXIO)
        self.tx_done(i, n, nbytes)
        if lost:
            self.check_link(now)   # down or gone: what it holds is dropped
        return n


cdef void complete_l4_csum(uint8_t* f, uint32_t n) noexcept nogil:
    """Finish the TCP/UDP checksum of a frame sent with checksum offload
    (CHECKSUM_PARTIAL): its checksum field holds the pseudo-header sum, so
    the checksum of the L4 segment as it is gives the final value (what the
    kernel's skb_checksum_help does). Frames it cannot read are left alone."""
    cdef uint32_t off = 12, l3, l4, end, at
    cdef uint16_t et, c
    cdef uint8_t proto
    if n < 14:
        return
    et = (f[12] << 8) | f[13]
    while (et == 0x8100 or et == 0x88A8) and off + 6 <= n:
        off += 4
        et = (f[off] << 8) | f[off + 1]
    l3 = off + 2
    if et == 0x0800:
        if l3 + 20 > n or (f[l3] >> 4) != 4 or (f[l3] & 15) < 5:
            return
        if ((f[l3 + 6] & 0x3F) | f[l3 + 7]) != 0:
            return              # a fragment: no whole L4 segment here
        proto = f[l3 + 9]
        l4 = l3 + (f[l3] & 15) * 4
        end = l3 + ((f[l3 + 2] << 8) | f[l3 + 3])
    elif et == 0x86DD:
        if l3 + 40 > n:
            return
        proto = f[l3 + 6]
        l4 = l3 + 40
        end = l4 + ((f[l3 + 4] << 8) | f[l3 + 5])
    else:
        return
    if end > n or l4 > end:
        return
    if proto == 6:
        at = l4 + 16
    elif proto == 17:
        at = l4 + 6
    else:
        return
    if at + 2 > end:
        return
    c = csum(f + l4, end - l4, 0)
    if c == 0 and proto == 17:
        c = 0xFFFF
    f[at] = c >> 8
    f[at + 1] = c & 0xFF


cdef inline void _put_vlan(uint8_t* p, uint32_t tci, uint16_t tpid) noexcept nogil:
    p[0] = tpid >> 8
    p[1] = tpid & 0xFF
    p[2] = (tci >> 8) & 0xFF
    p[3] = tci & 0xFF


cdef uint32_t _frame_size(uint32_t buf_size):
    """Bytes per ring frame: the tpacket header, room for a pool buffer, 16-aligned."""
    return (TPACKET3_DATA_OFF + 32 + buf_size + 15) & ~15u
