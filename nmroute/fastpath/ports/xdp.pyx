# distutils: libraries = xdp bpf
"""xdp:IFACE[@QUEUE] — one queue of an interface through AF_XDP (libxdp)."""
from nmroute.schema import Param, Str, Choice, Int

cimport cython
from libc.errno cimport (
    errno, EPERM, EACCES, EBUSY, EEXIST, EINVAL, ENETDOWN, ENODEV, ENXIO, EOPNOTSUPP)
from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memmove, strlen, memset
from posix.unistd cimport close as c_close

from nmroute.fastpath.includes.if_packet cimport (
    setsockopt, getsockopt, sendto, socklen_t, if_nametoindex, MSG_DONTWAIT, load_acquire,
    store_release)
from nmroute.fastpath.includes.xsk cimport (
    xdp_desc, xsk_ring_prod, xsk_ring_cons, xsk_socket,
    xsk_socket_config, XDP_COPY, XDP_ZEROCOPY, XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE,
    XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD, xsk_ring_prod__fill_addr, xsk_ring_cons__comp_addr,
    xsk_ring_prod__tx_desc, xsk_ring_cons__rx_desc, xsk_prod_nb_free, xsk_ring_prod__reserve,
    xsk_ring_prod__submit, xsk_ring_cons__peek, xsk_ring_cons__release,
    xsk_socket__create_shared, xsk_socket__delete, xsk_socket__fd,
    va_list, libxdp_print_level, libbpf_print_level,
    libxdp_set_print, libbpf_set_print, bpf_xdp_query_id, bpf_xdp_detach, xdp_options,
    bpf_prog_get_fd_by_id, bpf_obj_get_info_by_fd, bpf_prog_info,
    XDP_OPTIONS_ZEROCOPY)
from nmroute.fastpath.drops cimport DROP_OVERSIZE, DROP_LINK_DOWN
from nmroute.fastpath.includes.sys cimport sleep_ns
from nmroute.fastpath.pool cimport Pool, POOL_HEADROOM
from nmroute.fastpath.ports.port cimport Port, P_TX, P_TX_BYTES
from nmroute.fastpath.ports.umem cimport Umem, XdpShared
from nmroute.fastpath.ring cimport NmRing, Slot, ring_next, NS_BUF_CHANGED

import os

import structlog

from nmroute.fastpath.drops import DropReason, reason_name
from nmroute.errors import PortError

log = structlog.get_logger("nmroute")

# The drop reason frames sent to a deleted interface are counted under.
LINK_DOWN_DROP = reason_name(DropReason(DROP_LINK_DOWN))

cdef extern from "<stdio.h>" nogil:
    int vsnprintf(char* s, size_t n, const char* fmt, va_list ap)

cdef extern from * nogil:
    int __builtin_ctzll(unsigned long long x)

cdef enum:
    SOL_SOCKET = 1
    SO_BUSY_POLL = 46
    SO_PREFER_BUSY_POLL = 69
    SO_BUSY_POLL_BUDGET = 70
    SOL_XDP = 283
    XDP_STATISTICS = 7
    XDP_OPTIONS = 8
    XDP_MAX_TX_SKB_BUDGET = 9
    MAX_RING = 4096
    KICKS_PER_SYNC = 64         # a copy-mode sendto() sends 32 frames before 6.17

# The socket (XdpPort.state). Only the fast path moves it from S_UP (it owns
# the socket then); only maintain() moves it on from S_GONE (it owns the
# socket, the rings and the buffers the kernel held, then).
cdef enum:
    S_UP = 0                    # bound to the interface: rxsync/txsync use it
    S_GONE = 1                  # its interface was deleted: the fast path left it
    S_CLOSED = 2                # deleted by maintain(); re-opened when the name is back


ctypedef struct xdp_statistics:
    uint64_t rx_dropped
    uint64_t rx_invalid_descs
    uint64_t tx_invalid_descs
    uint64_t rx_ring_full
    uint64_t rx_fill_ring_empty_descs
    uint64_t tx_ring_empty_descs


# libxdp and libbpf print their warnings on stderr; keep the last one instead,
# for the one-line error when a set-up call fails.
cdef char _last_warning[512]

cdef int _keep_warning(int level, const char* fmt, va_list ap) noexcept nogil:
    if level == 0:          # LIBXDP_WARN == LIBBPF_WARN == 0
        vsnprintf(_last_warning, sizeof(_last_warning), fmt, ap)
    return 0

cdef int _xdp_print(libxdp_print_level level, const char* fmt, va_list ap) noexcept nogil:
    return _keep_warning(level, fmt, ap)

cdef int _bpf_print(libbpf_print_level level, const char* fmt, va_list ap) noexcept nogil:
    return _keep_warning(level, fmt, ap)

libxdp_set_print(_xdp_print)
libbpf_set_print(_bpf_print)


def _take_warning():
    cdef bytes b = _last_warning[:strlen(_last_warning)]
    _last_warning[0] = 0
    return b.decode(errors="replace").strip()


cdef uint32_t _pow2(uint32_t n):
    cdef uint32_t p = 64
    while p < n:
        p <<= 1
    return p


cdef uint32_t _kernel_rx(uint32_t ring_size):
    """Entries of the kernel's rx ring, and fill buffers beyond the rx
    ring's own: at least 4096, so that a pipeline not scheduled for a few
    ms (a busy machine) does not make the kernel drop at 100 kpps."""
    return max(_pow2(ring_size), <uint32_t>4096)


def _split_iface(str arg):
    name, _, q = arg.partition("@")
    return name, int(q) if q else 0


def _n_queues(str iface):
    try:
        return sum(1 for q in os.listdir(f"/sys/class/net/{iface}/queues") if q.startswith("rx-"))
    except OSError:
        return 0


def _attached_prog(int ifindex):
    """Id of the XDP program attached to the interface (any mode), or 0."""
    cdef uint32_t pid = 0
    if bpf_xdp_query_id(ifindex, 0, &pid) != 0:
        return 0
    return pid


def _prog_name(uint32_t prog_id):
    """The name of a loaded BPF program ('' when it cannot be read)."""
    cdef bpf_prog_info info
    cdef uint32_t n = sizeof(info)
    cdef int fd = bpf_prog_get_fd_by_id(prog_id)
    if fd < 0:
        return ""
    memset(&info, 0, sizeof(info))
    err = bpf_obj_get_info_by_fd(fd, &info, &n)
    c_close(fd)
    return info.name.decode(errors="replace") if err == 0 else ""


# libxdp's own programs: the one redirecting to AF_XDP sockets, the dispatcher.
LIBXDP_PROGS = ("xsk_def_prog", "xdp_dispatcher")


@cython.final
cdef class XdpPort(Port):
    """One queue of an interface through an AF_XDP socket (libxdp).

    The socket's UMEM is nmroute's buffer pool, so frames are received into
    pool buffers and sent from them: forwarding between xdp: ports (or to a
    pipe, a pcap, an element) moves buffer indexes and copies nothing in
    user space. libxdp attaches its small XDP program, which redirects the
    queue's frames to the socket; every other frame of the interface (other
    queues, when there are several) still goes to the kernel stack.

    Mode: native XDP (in the driver) is tried first, then generic (skb)
    mode; zero-copy is asked for where the driver has it, copy mode
    otherwise. The mode obtained is logged (`mode`, `zero_copy`). veth has
    native XDP in copy mode only. A frame longer than a buffer less the
    256-byte XDP headroom (1792 bytes with 2048-byte buffers) cannot be sent
    and is dropped as `oversize`; raise `buffer_size` to 4096 for jumbo frames.

    tx: frames are handed to the kernel's tx ring and sent with sendto(): in
    copy mode one call sends the whole ring where the kernel allows it
    (XDP_MAX_TX_SKB_BUDGET, Linux 6.17+), else 32 frames a call; each slot
    sent gets a spare buffer in exchange until the kernel completes it. When
    the kernel's ring is full, frames wait in the port's ring and the inputs
    feeding it are held back.

    Faults: while the interface is set down (the kernel refuses to send:
    ENETDOWN), frames sent to it are dropped (`link-down`), so the inputs
    feeding it are never held back; what the kernel's ring already held
    goes out when it is up again. A deleted interface unbinds the socket:
    the port sees it (a send failing with ENXIO, or its name on another
    ifindex or none, looked at every 100 ms) and from then on drops what is
    queued for it (`link-down`, the frames left in the kernel's tx ring
    included: they are taken back from the tx count) and reads nothing.
    The socket is deleted and the buffers the kernel held are taken back
    (a count of any missing would be logged). Once an interface of that
    name exists again the port opens a socket on it by itself (libxdp
    attaches its program there). Each event is logged once: "link down",
    "link up again", "interface gone", "interface back" (with the new
    ifindex and the mode).

    Offloads: a veth endpoint with tx checksum offload on sends TCP/UDP
    frames whose checksum is not computed yet; AF_XDP does not say which
    ones. Turn it off at the senders (`ethtool -K PEER tx off`) or use
    `packet:` (which completes such checksums). Needs CAP_NET_RAW,
    CAP_NET_ADMIN and CAP_BPF (root). An XDP program already attached to
    the interface by someone else is an error, not replaced.

    Example:
        ports:
          a: "xdp:veth0"
          b: {port: "xdp:veth1@0", mode: native}
        links: ["a -> b", "b -> a"]
    """
    SCHEME = "xdp"
    SUMMARY = "one queue of an interface through AF_XDP (libxdp): UMEM is the pool"
    DIRECTIONS = ("rx", "tx")
    ARG = "iface"
    PARAMS = (
        Param("iface", Str(r"[^/\s:@]{1,15}(@[0-9]{1,5})?", "an interface name, "
              "optionally @QUEUE"), "the interface and queue (default 0)"),
        Param("mode", Choice("auto", "native", "skb"), "XDP mode: auto tries native "
              "(driver) first, then skb (generic)", "auto"),
        Param("zero_copy", Choice("auto", "yes", "no"), "ask for zero-copy: auto falls "
              "back to copy mode where the driver lacks it", "auto"),
        Param("busy_poll", Int(0, 1000), "µs of socket busy polling "
              "(SO_PREFER_BUSY_POLL); 0: off", 0),
    )

    cdef xsk_socket* xsk
    cdef XdpShared shared          # with the run's other xdp: ports
    cdef Umem umem
    cdef int fd
    cdef xsk_ring_cons rxr
    cdef xsk_ring_prod txr
    cdef xsk_ring_prod fill
    cdef xsk_ring_cons comp
    cdef uint8_t* region           # the UMEM's start: chunk i at region + i * bs
    cdef uint32_t bs
    cdef uint32_t tx_max           # longest frame a chunk can send
    cdef uint32_t* spare           # stack of buffers for tx slots while theirs are in flight
    cdef uint32_t n_spare
    cdef uint32_t spare_cap
    cdef bint busy_poll
    cdef int ifindex
    cdef bint owns_prog            # no XDP program was attached before ours
    cdef Pool mem
    cdef bint first                # this socket took its UMEM's own fd (see Umem)
    cdef bint rx_on, tx_on
    cdef uint32_t ring_size
    cdef uint32_t rx_total         # buffers the rx side owns: rx slots and fill extras
    # Faults (see the class docstring): the socket's state, which the fast
    # path reads with load_acquire and the one who owns it moves on with
    # store_release; gone_hint: maintain() saw the name on another ifindex
    # (or on none); unbound: a sendto() said ENXIO (fast path only).
    cdef uint32_t state
    cdef uint32_t gone_hint
    cdef bint unbound
    cdef bint link_down            # a sendto() said ENETDOWN: set down (fast path only)
    # One bit per pool buffer: set while the kernel holds it (given to the
    # fill or the tx ring, not yet back through the rx or completion ring).
    # When the socket is gone those are the buffers to take back.
    cdef uint64_t* held
    cdef uint32_t held_words
    cdef uint32_t* stash           # taken back, for the next socket's fill ring
    cdef uint32_t n_stash
    cdef readonly uint32_t n_gone, n_back, n_missing, n_down, n_up
    cdef readonly uint64_t n_unread
    cdef str fail_reason           # last failed re-open, as logged
    cdef tuple logged              # the n_gone, n_back, n_down, n_up logged
    cdef readonly str ifname
    cdef readonly int queue
    cdef readonly str mode         # "native" or "skb"
    cdef readonly bint zero_copy

    def __cinit__(self, *args, **kwargs):
        self.fd = -1

    def __dealloc__(self):
        if self.xsk != NULL:
            xsk_socket__delete(self.xsk)
        free(self.spare)
        free(self.held)
        free(self.stash)

    @classmethod
    def extra_buffers(cls, params, uint32_t ring_size, bint rx, bint tx):
        # rx: as many buffers again for the fill ring, so that the kernel
        # still has room while the pipeline holds a full rx ring (else it
        # drops: rx_fill_ring_empty_descs). tx: one spare per tx ring entry.
        return (_kernel_rx(ring_size) if rx else 0) + (_pow2(ring_size) if tx else 0)

    def open(self, pool, uint32_t ring_size, bint rx, bint tx):
        cdef Pool p = pool
        cdef int ifindex
        cdef uint32_t i
        cdef bytes bname
        Port.open(self, pool, ring_size, rx, tx)
        self.shared = self.tables.get("xdp", "", XdpShared)
        self.ifname, self.queue = _split_iface(self.params["iface"])
        bname = self.ifname.encode()
        ifindex = if_nametoindex(bname)
        if ifindex == 0:
            raise PortError(self.name, f"no such interface '{self.ifname}' in this network "
                                       "namespace")
        if p.buf_size not in (2048, 4096):
            raise PortError(self.name, f"AF_XDP needs buffer_size 2048 or 4096 (a UMEM chunk "
                                       f"is a power of two up to a page), not {p.buf_size}")
        if ring_size > MAX_RING:
            raise PortError(self.name, f"ring_size {ring_size} is more than this port's "
                                       f"{MAX_RING}")
        if any(o.ifname == self.ifname and o.queue == self.queue
               for o in self.shared.open_ports):
            # Two sockets of one process on one queue would share its fill
            # and completion rings without a lock.
            raise PortError(self.name, f"queue {self.queue} of {self.ifname} is already open "
                                       "in this process: one xdp: port per queue")
        nq = _n_queues(self.ifname)
        if nq and self.queue >= nq:
            raise PortError(self.name, f"{self.ifname} has no queue {self.queue} (it has "
                                       f"{nq} rx queue{'s' if nq > 1 else ''})")
        self.bs = p.buf_size
        self.tx_max = p.buf_size - POOL_HEADROOM
        addr, _ = p.region_address()
        self.region = <uint8_t*><size_t>addr
        self.mem = p
        self.rx_on, self.tx_on, self.ring_size = rx, tx, ring_size
        self.held_words = (p.n_bufs + 63) // 64
        self.held = <uint64_t*>calloc(self.held_words, sizeof(uint64_t))
        self.stash = <uint32_t*>malloc((p.n_bufs + 1) * sizeof(uint32_t))
        if self.held == NULL or self.stash == NULL:
            raise MemoryError()
        if tx:
            self.spare_cap = _pow2(ring_size)
            self.spare = <uint32_t*>malloc(self.spare_cap * sizeof(uint32_t))
            if self.spare == NULL:
                raise MemoryError()
        reason = self._create(bname, ifindex)
        if reason is not None:
            raise PortError(self.name, reason)
        if rx:
            # Every rx slot's buffer goes to the kernel, and one more for each
            # entry of its rx ring: it receives into them, and a slot gets its
            # frame's buffer when one arrives.
            self.rx_total = self.rx.num_slots + _kernel_rx(ring_size)
            for i in range(self.rx.num_slots):
                self.stash[i] = self.rx.slots[i].buf_idx
            for i in range(self.rx.num_slots, self.rx_total):
                self.stash[i] = p.take()
            self.n_stash = self.rx_total
        if tx:
            for i in range(self.spare_cap):
                self.spare[i] = p.take()
            self.n_spare = self.spare_cap
        self._fill_from_stash()
        self.logged = (0, 0, 0, 0)
        self.state = S_UP
        self.shared.open_ports.add(self)
        log.info("xdp port open", port=self.name, iface=self.ifname, queue=self.queue,
                 mode=self.mode, zero_copy=bool(self.zero_copy))

    cdef void _fill_from_stash(self):
        """Give the stashed buffers to the (new) socket's fill ring."""
        cdef uint32_t i, idx, n, b
        if self.n_stash == 0:
            return
        n = xsk_ring_prod__reserve(&self.fill, self.n_stash, &idx)
        for i in range(n):
            b = self.stash[i]
            xsk_ring_prod__fill_addr(&self.fill, idx + i)[0] = <uint64_t>b * self.bs
            self.held[b >> 6] |= 1ULL << (b & 63)
        xsk_ring_prod__submit(&self.fill, n)
        self.n_stash = 0     # (the ring holds them all: FILL_COMP_SIZE >= rx_total)

    def _create(self, bytes bname, int ifindex):
        """Create the socket on the interface (libxdp loads its program on it
        when it has none), trying the modes allowed. None, or a one-line
        reason; a failure leaves nothing open."""
        cdef xsk_socket_config cfg
        cdef int err = 0, one = 1, usec, budget = 64
        cdef bint rx = self.rx_on, tx = self.tx_on
        cdef bint first
        cdef xdp_options opts
        cdef socklen_t optlen = sizeof(opts)
        cdef uint32_t tx_budget
        pool = self.mem
        prog_before = _attached_prog(ifindex)
        try:
            self.umem = self.shared.take(pool)
        except OSError as e:
            return self._reason("AF_XDP UMEM", e.errno)

        attempts = []
        modes = {"auto": ("native", "skb"), "native": ("native",), "skb": ("skb",)}
        for mode in modes[self.params.get("mode", "auto")]:
            zc = self.params.get("zero_copy", "auto")
            for want_zc in ((True, False) if zc == "auto" else (zc == "yes",)):
                if want_zc and mode == "skb":
                    continue
                attempts.append((mode, want_zc))
        if not attempts:
            self.shared.give_back(self.umem)
            self.umem = None
            return "zero_copy: yes needs mode native (or auto)"
        reasons = []
        for mode, want_zc in attempts:
            memset(&cfg, 0, sizeof(cfg))
            cfg.rx_size = _kernel_rx(self.ring_size)
            cfg.tx_size = _pow2(self.ring_size)
            # Without rx no program is needed: frames only go out.
            cfg.libxdp_flags = 0 if rx else XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD
            cfg.xdp_flags = XDP_FLAGS_DRV_MODE if mode == "native" else XDP_FLAGS_SKB_MODE
            cfg.bind_flags = XDP_ZEROCOPY if want_zc else XDP_COPY
            _take_warning()
            first = not self.umem.fd_taken
            # libxdp sets up a new fill and completion ring's indexes
            # assuming zeroed structs: a re-opened port's hold the old ones.
            memset(&self.rxr, 0, sizeof(self.rxr))
            memset(&self.txr, 0, sizeof(self.txr))
            memset(&self.fill, 0, sizeof(self.fill))
            memset(&self.comp, 0, sizeof(self.comp))
            err = xsk_socket__create_shared(&self.xsk, bname, self.queue, self.umem.umem,
                                            &self.rxr if rx else NULL,
                                            &self.txr if tx else NULL,
                                            &self.fill, &self.comp, &cfg)
            if err == 0:
                self.mode = mode
                self.first = first
                self.umem.fd_taken = True
                break
            self.xsk = NULL
            reasons.append((mode, want_zc, -err, _take_warning()))
            if rx and not prog_before and _attached_prog(ifindex):
                # libxdp leaves the program of a failed attempt attached.
                bpf_xdp_detach(ifindex, cfg.xdp_flags, NULL)
            if self.umem.users == 1:
                # A failed first socket unmaps the UMEM's own fill and
                # completion rings: start the next attempt on a new UMEM.
                self.shared.give_back(self.umem)
                self.umem = None
                try:
                    self.umem = self.shared.take(pool)
                except OSError as e:
                    return self._reason("AF_XDP UMEM", e.errno)
        if self.xsk == NULL:
            self.shared.give_back(self.umem)
            self.umem = None
            return self._failure(reasons, prog_before)
        self.fd = xsk_socket__fd(self.xsk)
        self.ifindex = ifindex
        self.owns_prog = rx and not prog_before
        # A socket sharing the UMEM of another one inherits its copy mode:
        # ask the kernel what this one got.
        memset(&opts, 0, sizeof(opts))
        if getsockopt(self.fd, SOL_XDP, XDP_OPTIONS, &opts, &optlen) == 0:
            self.zero_copy = bool(opts.flags & XDP_OPTIONS_ZEROCOPY)
        if tx:
            # Copy mode sends at most 32 frames per sendto() unless told
            # more (Linux >= 6.17; older kernels refuse the option: ignored).
            tx_budget = cfg.tx_size
            setsockopt(self.fd, SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &tx_budget, sizeof(uint32_t))
        if self.params.get("busy_poll"):
            usec = self.params["busy_poll"]
            if (setsockopt(self.fd, SOL_SOCKET, SO_PREFER_BUSY_POLL, &one, sizeof(int)) < 0
                    or setsockopt(self.fd, SOL_SOCKET, SO_BUSY_POLL, &usec, sizeof(int)) < 0
                    or setsockopt(self.fd, SOL_SOCKET, SO_BUSY_POLL_BUDGET, &budget,
                                  sizeof(int)) < 0):
                err = errno
                self._release()
                return self._reason("busy polling", err)
            self.busy_poll = True
        return None

    def _reason(self, str what, int err):
        if err in (EPERM, EACCES):
            return (f"{what}: permission denied (AF_XDP needs CAP_NET_RAW, CAP_NET_ADMIN "
                    "and CAP_BPF; run as root)")
        return f"{what}: {os.strerror(err)}"

    def _failure(self, reasons, prog_before):
        """One line for the last failed attempt, in the user's terms."""
        _, want_zc, err, warning = reasons[len(reasons) - 1]   # (no wraparound here)
        foreign = prog_before and _prog_name(prog_before) not in LIBXDP_PROGS
        if foreign and err in (EEXIST, EBUSY, EINVAL, EOPNOTSUPP):
            return (f"an XDP program (id {prog_before}) is already attached to {self.ifname}: "
                    f"detach it (ip link set dev {self.ifname} xdp off) or use "
                    f"packet:{self.ifname}")
        if err == EBUSY:
            return (f"queue {self.queue} of {self.ifname} is busy: another AF_XDP socket "
                    "is bound to it")
        if err == EOPNOTSUPP and want_zc:
            return f"{self.ifname}: the driver has no zero-copy AF_XDP (use zero_copy: auto)"
        if err == ENODEV:
            return f"no such interface '{self.ifname}' in this network namespace"
        tried = ", ".join(f"{m}{'/zero-copy' if z else ''}" for m, z, _, _ in reasons)
        why = self._reason("AF_XDP socket", err)
        return f"{why} (tried {tried})" + (f"; libxdp: {warning}" if warning else "")

    cdef _release(self):
        if self.xsk != NULL:
            xsk_socket__delete(self.xsk)   # detaches libxdp's program when last
            self.xsk = NULL
            self.fd = -1
            if (self.state == S_UP and self.owns_prog and _attached_prog(self.ifindex)
                    and not any(p.ifname == self.ifname and p is not self
                                for p in self.shared.open_ports)):
                # Never leave a program behind that nmroute put there.
                bpf_xdp_detach(self.ifindex, XDP_FLAGS_DRV_MODE if self.mode == "native"
                               else XDP_FLAGS_SKB_MODE, NULL)
        if self.shared is not None:
            self.shared.open_ports.discard(self)
        if self.umem is not None:
            self.shared.give_back(self.umem)
            self.umem = None

    def close(self):
        cdef int _i
        # Let the kernel send what it still holds (a busy peer said EAGAIN).
        for _i in range(100):
            if self.xsk == NULL or self.txr.producer == NULL or self.state != S_UP:
                break
            self.kick()
            if self.unbound:
                self.leave()        # gone: what its tx ring holds was not sent
                break
            if not self.tx_backlog:
                break
            sleep_ns(1000000)
        self._log_events()
        st = self.kernel_stats() if self.state == S_UP else {}
        lost = st.get("rx_dropped", 0) + st.get("rx_ring_full", 0)
        if lost:
            # Never received, so not in rx == tx + drops: the kernel's own loss.
            log.warning("the kernel dropped frames meant for this socket", port=self.name,
                        **{k: v for k, v in st.items() if v})
        self._release()

    def maintain(self):
        """Slow path (main thread, every ~100 ms): notice the interface is
        gone (its name on another ifindex, or on none) and tell the fast
        path; once the fast path has left the socket, take back the buffers
        the kernel held and delete it; once an interface of that name is
        there again, open a socket on it; log each event once."""
        cdef uint32_t st
        if self.logged is None:
            return
        cdef unsigned int now
        st = load_acquire(&self.state)
        if st == S_UP:
            now = if_nametoindex(self.ifname.encode())
            if <int>now != self.ifindex and (now != 0 or errno == ENODEV):
                store_release(&self.gone_hint, 1)
        elif st == S_GONE:
            self._take_back()
            st = S_CLOSED
        if st == S_CLOSED:
            ifindex = if_nametoindex(self.ifname.encode())
            if ifindex:
                self._reopen(ifindex)
        self._log_events()

    cdef _take_back(self):
        """The socket is gone and the fast path has left it (S_GONE): delete
        it, and take back every buffer the kernel held (the held bits: in
        the fill ring, received but not read, queued for tx or in flight;
        the kernel uses none of them once its interface is gone), spares
        first, the rest stashed for the next socket's fill ring."""
        cdef uint32_t w, k, b, n = 0, want = 0, unread = 0
        cdef uint32_t lent = self.spare_cap - self.n_spare
        cdef uint64_t bits
        # What the kernel should hold: the rx side's buffers less the ones
        # in its own rx slots now ([hwcur, tail)), and the spares lent out.
        if self.rx != NULL:
            want = self.rx_total - ((self.rx.tail - self.rx.hwcur) & self.rx.mask)
            unread = self.rxr.producer[0] - self.rxr.consumer[0]
        want += lent
        # Deleted first: the kernel is done with its buffers once it unbinds.
        if self.first:
            self.umem.dead = True
        xsk_socket__delete(self.xsk)
        self.xsk = NULL
        self.fd = -1
        self.shared.give_back(self.umem)
        self.umem = None
        for w in range(self.held_words):
            bits = self.held[w]
            while bits:
                k = <uint32_t>__builtin_ctzll(bits)
                bits &= bits - 1
                b = (w << 6) | k
                if self.n_spare < self.spare_cap:
                    self.spare[self.n_spare] = b
                    self.n_spare += 1
                elif self.n_stash < self.rx_total:    # never more than it owns
                    self.stash[self.n_stash] = b
                    self.n_stash += 1
                n += 1
            self.held[w] = 0
        if n < want:
            # Not expected (the bits follow every buffer); the port runs on
            # with fewer rather than take any from the pool.
            self.n_missing += want - n
            log.warning("buffers the kernel held were not all taken back", port=self.name,
                        iface=self.ifname, missing=want - n, expected=want)
        self.n_unread += unread
        store_release(&self.state, S_CLOSED)

    cdef _reopen(self, int ifindex):
        """A socket on the interface of that name that is back: its fill
        ring gets the buffers taken back; then the fast path may use it."""
        reason = self._create(self.ifname.encode(), ifindex)
        if reason is not None:
            if reason != self.fail_reason:
                self.fail_reason = reason
                log.warning("interface back but the port could not open on it; trying "
                            "again", port=self.name, iface=self.ifname, reason=reason)
            return
        self.fail_reason = None
        self._fill_from_stash()
        self.shared.open_ports.add(self)
        self.unbound = False
        self.link_down = False
        self.tx_backlog = False
        store_release(&self.gone_hint, 0)
        self.n_back += 1
        store_release(&self.state, S_UP)

    def _log_events(self):
        if self.logged is None:
            return
        now = (self.n_gone, self.n_back, self.n_down, self.n_up)
        if now == self.logged:
            return
        kw = {"port": self.name, "iface": self.ifname}
        if self.n_down != self.logged[2]:
            log.warning("link down: frames sent to it are dropped until it is up",
                        drop=LINK_DOWN_DROP, times=self.n_down, **kw)
        if self.n_up != self.logged[3]:
            log.info("link up again", **kw)
        if self.n_gone != self.logged[0]:
            log.warning("interface gone: frames sent to it are dropped; the port opens "
                        "again when an interface of that name appears", drop=LINK_DOWN_DROP,
                        times=self.n_gone, **kw)
        if self.n_back != self.logged[1]:
            log.info("interface back: the port opened again on it", ifindex=self.ifindex,
                     queue=self.queue, mode=self.mode, zero_copy=bool(self.zero_copy),
                     buffers_lost=self.n_missing, frames_unread=self.n_unread, **kw)
        self.logged = now

    def kernel_drops(self):
        """Frames the kernel dropped for this socket so far (no fill buffer,
        or the rx ring full)."""
        st = self.kernel_stats()
        return st.get("rx_dropped", 0) + st.get("rx_ring_full", 0)

    def kernel_stats(self):
        """The socket's XDP_STATISTICS (what the kernel dropped or refused)."""
        cdef xdp_statistics st
        cdef socklen_t n = sizeof(st)
        if self.fd < 0 or getsockopt(self.fd, SOL_XDP, XDP_STATISTICS, &st, &n) < 0:
            return {}
        return {"rx_dropped": st.rx_dropped, "rx_invalid_descs": st.rx_invalid_descs,
                "tx_invalid_descs": st.tx_invalid_descs, "rx_ring_full": st.rx_ring_full,
                "rx_fill_ring_empty_descs": st.rx_fill_ring_empty_descs,
                "tx_ring_empty_descs": st.tx_ring_empty_descs}

    cdef inline bint up(self) noexcept nogil:
        """Whether the fast path may use the socket; on the first sign that
        its interface is gone, leave it (S_GONE) for maintain()."""
        if load_acquire(&self.state) != S_UP:
            return False
        if self.unbound or load_acquire(&self.gone_hint):
            self.leave()
            return False
        return True

    cdef void leave(self) noexcept nogil:
        """Hand the socket over to maintain(): the frames in the kernel's tx
        ring it never took were counted as sent, they are dropped as
        link-down instead (what it took is the frames up to the larger of
        its consumer index and its completions: it publishes the consumer
        index lazily). After this the fast path touches no ring of it."""
        cdef uint32_t prod, done, comp, i, unsent = 0
        cdef uint64_t nbytes = 0
        if self.tx != NULL:
            prod = self.txr.cached_prod
            done = load_acquire(self.txr.consumer)
            comp = load_acquire(self.comp.producer)
            if <int32_t>(comp - done) > 0:
                done = comp
            if <int32_t>(prod - done) > 0:
                unsent = prod - done
            for i in range(unsent):
                nbytes += xsk_ring_prod__tx_desc(&self.txr, done + i).len
            self.ctr[P_TX] -= unsent
            self.ctr[P_TX_BYTES] -= nbytes
            self.count_drop(DROP_LINK_DOWN, unsent)
            self.tx_backlog = False
        self.n_gone += 1
        store_release(&self.state, S_GONE)

    cdef int rxsync(self) noexcept nogil:
        cdef NmRing* r = self.rx
        cdef uint32_t i, n, idx, t, b, off, room
        cdef const xdp_desc* d
        cdef Slot* s
        if r == NULL or not self.up():
            # Gone: the released slots keep their buffers until a new
            # socket's fill ring takes them.
            return 0
        # The slots the user released go back to the kernel as fill buffers
        # (whatever buffer a slot holds now: the executor may have swapped it).
        n = (r.head - r.hwcur) & r.mask
        if n:
            n = xsk_ring_prod__reserve(&self.fill, n, &idx)
            for i in range(n):
                b = r.slots[r.hwcur].buf_idx
                xsk_ring_prod__fill_addr(&self.fill, idx + i)[0] = <uint64_t>b * self.bs
                self.held[b >> 6] |= 1ULL << (b & 63)
                r.hwcur = ring_next(r, r.hwcur)
            xsk_ring_prod__submit(&self.fill, n)
        if self.busy_poll and sendto(self.fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0 \
                and errno == ENXIO:
            self.unbound = True
        t = r.tail
        room = (r.hwcur - 1 - t) & r.mask
        n = xsk_ring_cons__peek(&self.rxr, room, &idx)
        for i in range(n):
            d = xsk_ring_cons__rx_desc(&self.rxr, idx + i)
            b = <uint32_t>(d.addr // self.bs)
            self.held[b >> 6] &= ~(1ULL << (b & 63))
            off = <uint32_t>(d.addr - <uint64_t>b * self.bs)
            if off != POOL_HEADROOM:
                # Only an XDP program that moved the frame's start does this.
                memmove(self.region + <size_t>b * self.bs + POOL_HEADROOM,
                        self.region + d.addr, d.len)
            s = &r.slots[t]
            s.buf_idx = b
            s.len = <uint16_t>d.len
            s.flags = NS_BUF_CHANGED
            s.ts = 0
            t = ring_next(r, t)
        if n:
            xsk_ring_cons__release(&self.rxr, n)
        r.tail = t
        return n

    cdef int txsync(self) noexcept nogil:
        cdef NmRing* r = self.tx
        cdef uint32_t i, k, _j, n, m = 0, idx = 0, want, b
        cdef uint64_t nbytes = 0
        cdef xdp_desc* d
        cdef Slot* s
        if r == NULL:
            return 0
        if not self.up():
            # Gone: what is queued is dropped, so that the inputs feeding
            # this port are never held back by it.
            self.count_drop(DROP_LINK_DOWN, (r.head - r.hwcur) & r.mask)
            return self.tx_done(r.head, 0, 0)
        if self.link_down and not self.link_back():
            # Set down: the kernel refuses to send (what its ring holds goes
            # when the link is up); what is queued here is dropped, so that
            # the inputs feeding this port are not held back by it.
            self.count_drop(DROP_LINK_DOWN, (r.head - r.hwcur) & r.mask)
            self.tx_backlog = False
            return self.tx_done(r.head, 0, 0)
        # Sent frames' buffers come back as spares.
        n = xsk_ring_cons__peek(&self.comp, self.spare_cap - self.n_spare, &idx)
        for k in range(n):
            b = <uint32_t>(xsk_ring_cons__comp_addr(&self.comp, idx + k)[0] // self.bs)
            self.held[b >> 6] &= ~(1ULL << (b & 63))
            self.spare[self.n_spare] = b
            self.n_spare += 1
        if n:
            xsk_ring_cons__release(&self.comp, n)
        i = r.hwcur
        want = (r.head - i) & r.mask
        if want > self.n_spare:
            want = self.n_spare
        n = xsk_prod_nb_free(&self.txr, want)
        if want > n:
            want = n
        if want:
            xsk_ring_prod__reserve(&self.txr, want, &idx)
            for _j in range(want):
                s = &r.slots[i]
                if s.len > self.tx_max or s.len == 0:
                    self.count_drop(DROP_OVERSIZE, 1)
                else:
                    d = xsk_ring_prod__tx_desc(&self.txr, idx + m)
                    b = s.buf_idx
                    d.addr = <uint64_t>b * self.bs + POOL_HEADROOM
                    self.held[b >> 6] |= 1ULL << (b & 63)
                    d.len = s.len
                    d.options = 0
                    # The kernel owns that buffer until it completes it.
                    self.n_spare -= 1
                    s.buf_idx = self.spare[self.n_spare]
                    s.flags = NS_BUF_CHANGED
                    nbytes += d.len
                    m += 1
                i = ring_next(r, i)
            self.txr.cached_prod -= want - m     # reserved for frames dropped above
            xsk_ring_prod__submit(&self.txr, m)
        self.kick()
        self.tx_done(i, m, nbytes)
        if self.unbound:
            self.leave()    # what it just queued is dropped there
        return m

    cdef bint link_back(self) noexcept nogil:
        """Whether the link set down is up again (a sendto() no longer says
        ENETDOWN; it sends what the kernel's ring held meanwhile)."""
        if sendto(self.fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0 and errno == ENETDOWN:
            return False
        self.link_down = False
        self.n_up += 1
        return True

    cdef inline void kick(self) noexcept nogil:
        # In copy mode the frames are sent inside sendto(), up to 32 per call:
        # call again while it makes progress. No progress (EAGAIN: the device
        # is busy, ENETDOWN...) leaves them queued for the next txsync.
        cdef uint32_t before, _k
        for _k in range(<uint32_t>KICKS_PER_SYNC):
            before = self.txr.consumer[0]
            if before == self.txr.producer[0]:
                break
            if sendto(self.fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0:
                if errno == ENXIO:
                    self.unbound = True     # its interface is gone
                    break
                if errno == ENETDOWN:
                    self.link_down = True   # set down: see txsync
                    self.n_down += 1
                    break
            if self.txr.consumer[0] == before:
                break
        self.tx_backlog = self.txr.consumer[0] != self.txr.producer[0]
