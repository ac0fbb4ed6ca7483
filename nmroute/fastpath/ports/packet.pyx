"""packet:IFACE — an interface through AF_PACKET with mmap rings (netmap's emulated mode)."""
from nmroute.config.params import Param, Str, Bool, Int

cimport cython
from libc.errno cimport errno, EPERM, EACCES
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset
from posix.mman cimport mmap, munmap, PROT_READ, PROT_WRITE, MAP_SHARED, MAP_FAILED
from posix.unistd cimport close as c_close

from nmroute.fastpath.csum cimport csum
from nmroute.fastpath.drops cimport DROP_OVERSIZE
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
from nmroute.fastpath.ports.port cimport Port, P_RX
from nmroute.fastpath.ring cimport NmRing, Slot, ring_next, slot_buf

import os

import structlog

from nmroute.fastpath.ports.port import PortError

log = structlog.get_logger("nmroute")

cdef enum:
    RX_BLOCK_SIZE = 1 << 16      # 64 KiB: a block is handed over when full or timed out
    TX_BLOCK_SIZE = 1 << 17
    MIN_BLOCKS = 4
    ETH_ALEN2 = 12               # both MAC addresses: where a VLAN tag goes back in
    VLAN_LEN = 4


def errno_reason(str what, int err, str cap="CAP_NET_RAW"):
    """One line for a failed set-up call: the capability it needs when the
    kernel said EPERM/EACCES, else the errno's text."""
    if err in (EPERM, EACCES):
        return f"{what}: permission denied (needs {cap}; run as root or grant it)"
    return f"{what}: {os.strerror(err)}"


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
    cdef readonly int ifindex
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

    def __cinit__(self, *args, **kwargs):
        self.fd = -1

    def __dealloc__(self):
        self._release()

    def open(self, pool, uint32_t ring_size, bint rx, bint tx):
        cdef bytes iface = self.params["iface"].encode()
        cdef int fd, one = 1, version = TPACKET_V3, fan
        cdef tpacket_req3 rreq, treq
        cdef sockaddr_ll sll
        cdef packet_mreq mreq
        cdef size_t rx_len = 0, tx_len = 0
        cdef uint32_t per_block, i
        cdef void* m
        Port.open(self, pool, ring_size, rx, tx)
        self.fix_csum = self.params.get("fix_checksums", True)
        self.ifindex = if_nametoindex(iface)
        if self.ifindex == 0:
            raise PortError(self.name, f"no such interface '{self.params['iface']}'"
                                       f" in this network namespace")
        fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0)
        if fd < 0:
            raise PortError(self.name, errno_reason("AF_PACKET socket", errno))
        self.fd = fd
        try:
            if setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(int)) < 0:
                raise PortError(self.name, errno_reason("TPACKET_V3", errno))
            # A frame the kernel rejects (too long for the MTU) is skipped,
            # not left blocking the tx ring.
            setsockopt(fd, SOL_PACKET, PACKET_LOSS, &one, sizeof(int))
            memset(&rreq, 0, sizeof(rreq))
            memset(&treq, 0, sizeof(treq))
            if rx:
                rreq.tp_block_size = RX_BLOCK_SIZE
                rreq.tp_frame_size = _frame_size(pool.buf_size)
                rreq.tp_block_nr = max(<uint32_t>MIN_BLOCKS,
                                       ring_size * rreq.tp_frame_size // RX_BLOCK_SIZE)
                rreq.tp_frame_nr = RX_BLOCK_SIZE // rreq.tp_frame_size * rreq.tp_block_nr
                rreq.tp_retire_blk_tov = self.params.get("rx_timeout_ms", 1)
                if setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &rreq, sizeof(rreq)) < 0:
                    raise PortError(self.name, errno_reason("PACKET_RX_RING", errno))
                rx_len = <size_t>rreq.tp_block_size * rreq.tp_block_nr
                self.rx_nblocks = rreq.tp_block_nr
            if tx:
                treq.tp_frame_size = _frame_size(pool.buf_size)
                treq.tp_block_size = TX_BLOCK_SIZE
                per_block = TX_BLOCK_SIZE // treq.tp_frame_size
                treq.tp_block_nr = max(<uint32_t>MIN_BLOCKS,
                                       (ring_size + per_block - 1) // per_block)
                treq.tp_frame_nr = per_block * treq.tp_block_nr
                if setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &treq, sizeof(treq)) < 0:
                    raise PortError(self.name, errno_reason("PACKET_TX_RING", errno))
                tx_len = <size_t>treq.tp_block_size * treq.tp_block_nr
            m = mmap(NULL, rx_len + tx_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
            if m == MAP_FAILED:
                raise PortError(self.name, errno_reason("mmap of the rings", errno,
                                                        "CAP_IPC_LOCK or a higher RLIMIT_MEMLOCK"))
            self.map = <uint8_t*>m
            self.map_len = rx_len + tx_len
            if tx:
                self.tx_nframes = treq.tp_frame_nr
                self.tx_max = treq.tp_frame_size - TPACKET3_DATA_OFF
                if self.tx_max > pool.buf_size:
                    self.tx_max = pool.buf_size
                self.tx_frames = <uint8_t**>calloc(self.tx_nframes, sizeof(uint8_t*))
                if self.tx_frames == NULL:
                    raise MemoryError()
                for i in range(self.tx_nframes):
                    self.tx_frames[i] = (self.map + rx_len
                                         + <size_t>(i // per_block) * TX_BLOCK_SIZE
                                         + <size_t>(i % per_block) * treq.tp_frame_size)
                if self.params.get("qdisc_bypass"):
                    if setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(int)) < 0:
                        raise PortError(self.name, errno_reason("PACKET_QDISC_BYPASS", errno))
            setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(int))
            memset(&sll, 0, sizeof(sll))
            sll.sll_family = AF_PACKET
            sll.sll_ifindex = self.ifindex
            sll.sll_protocol = htons(ETH_P_ALL) if rx else 0   # 0: receive nothing
            if bind(fd, <sockaddr*>&sll, sizeof(sll)) < 0:
                raise PortError(self.name, errno_reason(f"bind to {self.params['iface']}",
                                                        errno))
            if rx and self.params.get("promisc", True):
                memset(&mreq, 0, sizeof(mreq))
                mreq.mr_ifindex = self.ifindex
                mreq.mr_type = PACKET_MR_PROMISC
                if setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, sizeof(mreq)) < 0:
                    raise PortError(self.name, errno_reason("promiscuous mode", errno))
            if rx and self.params.get("fanout"):
                fan = (self.params["fanout"]
                       | ((PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) << 16))
                if setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &fan, sizeof(int)) < 0:
                    raise PortError(self.name, errno_reason("PACKET_FANOUT", errno))
        except BaseException:
            self._release()
            raise
        if not _is_up(self.params["iface"]):
            log.warning("interface is down: nothing will be received or sent until it is up",
                        port=self.name, iface=self.params["iface"])

    cdef _release(self):
        if self.map != NULL:
            munmap(self.map, self.map_len)
            self.map = NULL
        if self.fd >= 0:
            c_close(self.fd)       # leaves the fanout group, drops promiscuous mode
            self.fd = -1
        free(self.tx_frames)
        self.tx_frames = NULL

    def close(self):
        packets, drops = self.kernel_stats()
        if drops:
            # Never received, so not in rx == tx + drops: the kernel's own loss.
            log.warning("the kernel dropped frames: the rx ring was full", port=self.name,
                        dropped=drops, received=packets)
        self._release()

    def kernel_stats(self):
        """(packets, drops) the kernel counted on the rx ring since the last call."""
        cdef tpacket_stats_v3 st
        cdef socklen_t n = sizeof(st)
        if self.fd < 0 or getsockopt(self.fd, SOL_PACKET, PACKET_STATISTICS, &st, &n) < 0:
            return (0, 0)
        return (st.tp_packets, st.tp_drops)

    cdef inline void kick(self) noexcept nogil:
        # Any failure (EAGAIN/ENOBUFS: the device is busy; ENETDOWN: it is
        # down) leaves the frames queued in the kernel's ring: kick again on
        # the next rxsync/txsync.
        self.kick_pending = sendto(self.fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0

    cdef int rxsync(self) noexcept nogil:
        cdef NmRing* r = self.rx
        cdef uint32_t t, n = 0, len_, status, snap
        cdef tpacket_block_desc* bd
        cdef tpacket3_hdr* h
        cdef uint8_t* dst
        cdef uint8_t* src
        cdef Slot* s
        if self.kick_pending:
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
        if r == NULL or self.map == NULL:
            return 0
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
            self.kick()
        return self.tx_done(i, n, nbytes)


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


def _is_up(iface):
    try:
        with open(f"/sys/class/net/{iface}/flags") as f:
            return int(f.read(), 16) & 1
    except OSError:
        return True
