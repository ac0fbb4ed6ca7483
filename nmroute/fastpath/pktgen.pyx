"""pkt-gen's per-packet loops (nmroute/tools/pktgen.py runs them).

One `Job` drives one port with one function, in C, without the GIL:

    tx / txseq   frames from a source port (a `gen:` port, or a `pcap:` file
                 replayed forever) are moved into the port's tx ring, by
                 swapping buffer indexes when both sit on one pool, else by
                 copying; txseq writes a 32-bit sequence number (from 0) at
                 the start of the UDP payload and fixes the UDP checksum.
                 With a rate, bursts are released on a schedule against
                 CLOCK_MONOTONIC (absolute, so lateness is caught up, never
                 accumulated); with a count, exactly that many are queued and
                 the ring is flushed before returning.
    rx / rxseq   frames are counted and released; rxseq reads the sequence
                 number of each IPv4/IPv6 UDP frame and counts gaps (lost),
                 frames below the expected number (late: reordered or
                 duplicated; a late frame takes one back from lost) and
                 frames without one.
    ping         bursts of frames stamped with a sequence number, the send
                 time (CLOCK_MONOTONIC ns) and a magic word; replies are
                 matched by the magic word and their round trip time goes
                 into a log-linear histogram (32 sub-buckets per power of
                 two: percentiles within 3%).
    pong         IPv4/IPv6 UDP frames are sent back with MAC addresses, IP
                 addresses and UDP ports swapped (checksums are unchanged by
                 a swap); other frames are counted as ignored.

Counters (`pkts`, `bytes`, `events`) are plain fields the Python side reads
while the job runs, for the per-interval report; `stop()` ends the run from
another thread.
"""
cimport cython
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

from nmroute.fastpath.includes.sys cimport now_ns, sleep_ns, CLOCK_MONOTONIC
from nmroute.fastpath.ports.port cimport Port
from nmroute.fastpath.ring cimport (
    NmRing, Slot, ring_next, ring_space, ring_pending, slot_buf, NS_BUF_CHANGED)

cdef extern from *:
    """
    static inline int nmr_pg_load(const int *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
    static inline void nmr_pg_store(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
    static inline int nmr_pg_clz64(unsigned long long v) { return __builtin_clzll(v); }
    """
    int load_flag "nmr_pg_load"(const int* p) noexcept nogil
    void store_flag "nmr_pg_store"(int* p, int v) noexcept nogil
    int clz64 "nmr_pg_clz64"(unsigned long long v) noexcept nogil

cpdef enum Function:
    F_TX = 0
    F_TXSEQ = 1
    F_RX = 2
    F_RXSEQ = 3
    F_PING = 4
    F_PONG = 5

cdef enum:
    SUB_BITS = 5                     # histogram: 32 sub-buckets per power of two
    SUB = 1 << SUB_BITS
    N_HIST = (64 - SUB_BITS + 1) * SUB
    PING_MAGIC = 0x6E6D7067          # "nmpg"
    PING_LEN = 16                    # seq (4) + send time (8) + magic (4)
    SEQ_LEN = 4
    IDLE_SPINS = 64                  # empty polls before the loop naps
    NAP_NS = 20000                   # a nap: 20 us
    SPIN_NS = 100000                 # pacing: spin (not sleep) the last 100 us
    FLUSH_NS = 1000000000            # tx: give up flushing after 1 s without progress

# Where the payload starts, by the frames a `gen:` port builds (UDP only).
PAYLOAD_OFFSET = {"ipv4": 42, "ipv6": 62}
PING_PAYLOAD = PING_LEN
SEQ_PAYLOAD = SEQ_LEN


cdef inline uint32_t rd32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline void wr32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 24)
    p[1] = <uint8_t>(v >> 16)
    p[2] = <uint8_t>(v >> 8)
    p[3] = <uint8_t>v


cdef inline void add_to_udp_csum(uint8_t* f, uint32_t csum_at, uint32_t words) noexcept nogil:
    """RFC 1624: payload bytes that were zero now sum to `words` (16-bit
    words, not folded); update the UDP checksum at f + csum_at."""
    cdef uint32_t c = (<uint32_t>f[csum_at] << 8) | f[csum_at + 1]
    cdef uint32_t s = (~c & 0xFFFF) + words
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    c = ~s & 0xFFFF
    if c == 0:
        c = 0xFFFF          # UDP: a computed 0 is sent as all ones
    f[csum_at] = <uint8_t>(c >> 8)
    f[csum_at + 1] = <uint8_t>c


cdef inline uint32_t words32(uint32_t v) noexcept nogil:
    return (v >> 16) + (v & 0xFFFF)


cdef inline uint32_t udp_payload(const uint8_t* f, uint32_t n) noexcept nogil:
    """Offset of the UDP payload of an Ethernet (+ one VLAN tag) IPv4/IPv6
    frame of n bytes; 0 when it is not UDP, is a later fragment, or is
    truncated. Never reads past n."""
    cdef uint32_t l3 = 14, ihl
    cdef uint16_t et
    if n < 14:
        return 0
    et = (<uint16_t>f[12] << 8) | f[13]
    if et == 0x8100 or et == 0x88A8:
        if n < 18:
            return 0
        et = (<uint16_t>f[16] << 8) | f[17]
        l3 = 18
    if et == 0x0800:
        if n < l3 + 20 or f[l3] >> 4 != 4:
            return 0
        ihl = (f[l3] & 15) * 4
        if ihl < 20 or f[l3 + 9] != 17 or ((f[l3 + 6] & 0x1F) | f[l3 + 7]):
            return 0
        if n < l3 + ihl + 8:
            return 0
        return l3 + ihl + 8
    if et == 0x86DD:
        if n < l3 + 48 or f[l3 + 6] != 17:
            return 0
        return l3 + 48
    return 0


cdef inline void swap_bytes(uint8_t* a, uint8_t* b, uint32_t n) noexcept nogil:
    cdef uint32_t i
    cdef uint8_t t
    for i in range(n):
        t = a[i]
        a[i] = b[i]
        b[i] = t


cdef inline uint32_t hist_index(uint64_t v) noexcept nogil:
    cdef int msb
    if v < SUB:
        return <uint32_t>v
    msb = 63 - clz64(v)
    return <uint32_t>((msb - SUB_BITS + 1) * SUB + ((v >> (msb - SUB_BITS)) & (SUB - 1)))


def hist_bounds(uint32_t i):
    """[lo, hi) in ns of histogram bucket i."""
    cdef uint32_t g = i // SUB, sub = i % SUB
    if g == 0:
        return (sub, sub + 1)
    lo = (SUB + sub) << (g - 1)
    return (lo, lo + (1 << (g - 1)))


cdef inline void swap_bufs(Slot* a, Slot* b) noexcept nogil:
    """Zero-copy move between two rings on one pool: the slots trade buffers."""
    cdef uint32_t t = a.buf_idx
    a.buf_idx = b.buf_idx
    b.buf_idx = t
    a.flags |= NS_BUF_CHANGED
    b.flags |= NS_BUF_CHANGED


@cython.final
cdef class Job:
    """One function on one port; run() blocks (without the GIL) until done."""
    cdef Port port
    cdef Port src
    cdef NmRing* rx
    cdef NmRing* tx
    cdef bint swap_src          # source and tx ring share a pool
    cdef bint swap_pong         # the port's rx and tx rings share a pool
    cdef readonly int func
    cdef uint32_t burst
    cdef uint64_t count
    cdef uint64_t period_ns     # rate: one burst per period (0: no pacing)
    cdef uint32_t pay_off       # UDP payload offset in the frames sent (0: do not stamp)
    cdef uint32_t csum_off
    cdef uint64_t idle_ns       # rx: stop after this much silence once started (0: never)
    cdef uint64_t reply_ns      # ping: how long to wait for a burst's replies
    cdef int stop_flag
    # counters, read by the reporter while running
    cdef readonly uint64_t pkts
    cdef readonly uint64_t bytes
    cdef readonly uint64_t events
    cdef readonly uint64_t t_start
    cdef readonly uint64_t t_end
    cdef readonly uint64_t t_first      # rx: first / last batch seen, monotonic ns
    cdef readonly uint64_t t_last
    cdef readonly uint64_t ts_first     # rx: slot timestamps of the first / last frame
    cdef readonly uint64_t ts_last
    cdef readonly uint64_t unsent       # tx: left in the ring when the flush gave up
    cdef readonly bint source_ended
    # sequences
    cdef uint32_t seq_next
    cdef readonly uint64_t seq_expected
    cdef readonly uint64_t lost
    cdef readonly uint64_t late
    cdef readonly uint64_t no_seq
    # ping / pong
    cdef readonly uint64_t replies
    cdef readonly uint64_t stray
    cdef readonly uint64_t rtt_min
    cdef readonly uint64_t rtt_max
    cdef readonly uint64_t rtt_sum
    cdef readonly uint64_t ignored
    cdef readonly uint64_t no_room
    cdef uint64_t hist[N_HIST]

    def __init__(self, int func, Port port, Port src=None, *, uint32_t burst=512,
                 uint64_t count=0, double rate=0, str family="ipv4", bint stamp=True,
                 double idle=0, double reply_timeout=1.0):
        if burst == 0:
            raise ValueError("burst must be at least 1")
        self.func = func
        self.port = port
        self.src = src
        self.burst = burst
        self.count = count
        self.rtt_min = <uint64_t>-1
        sending = func in (F_TX, F_TXSEQ, F_PING)
        if func in (F_TX, F_TXSEQ, F_PING, F_PONG):
            if port.tx_ring is None:
                raise ValueError(f"{port.name}: not opened for tx")
            self.tx = &port.tx_ring.r
        if func in (F_RX, F_RXSEQ, F_PING, F_PONG):
            if port.rx_ring is None:
                raise ValueError(f"{port.name}: not opened for rx")
            self.rx = &port.rx_ring.r
        if sending:
            if src is None or src.rx_ring is None:
                raise ValueError("a sending function needs a source port opened for rx")
            self.swap_src = src.rx_ring.pool is port.tx_ring.pool
        if func == F_PONG:
            self.swap_pong = port.rx_ring.pool is port.tx_ring.pool
        if rate > 0:
            self.period_ns = <uint64_t>(1e9 * burst / rate + 0.5)
            if self.period_ns == 0:
                self.period_ns = 1
        if stamp and func in (F_TXSEQ, F_PING):
            self.pay_off = PAYLOAD_OFFSET[family]
            self.csum_off = self.pay_off - 2
        self.idle_ns = <uint64_t>(idle * 1e9)
        self.reply_ns = <uint64_t>(reply_timeout * 1e9)

    def stop(self):
        """Ask run() to return (from any thread)."""
        store_flag(&self.stop_flag, 1)

    def run(self):
        with nogil:
            self.t_start = now_ns(CLOCK_MONOTONIC)
            if self.func == F_TX or self.func == F_TXSEQ:
                self.run_tx()
            elif self.func == F_RX or self.func == F_RXSEQ:
                self.run_rx()
            elif self.func == F_PING:
                self.run_ping()
            else:
                self.run_pong()
            self.t_end = now_ns(CLOCK_MONOTONIC)

    def histogram(self):
        """[(lo_ns, hi_ns, count)] of the non-empty RTT buckets."""
        return [(*hist_bounds(i), self.hist[i]) for i in range(N_HIST) if self.hist[i]]

    # -- helpers --------------------------------------------------------

    cdef inline bint stopped(self) noexcept nogil:
        return load_flag(&self.stop_flag) != 0

    cdef void wait_until(self, uint64_t t) noexcept nogil:
        """Sleep, then spin, until CLOCK_MONOTONIC reaches t (or a stop)."""
        cdef uint64_t now = now_ns(CLOCK_MONOTONIC)
        while now < t and not self.stopped():
            if t - now > 2 * SPIN_NS:
                sleep_ns(<long>(t - now - SPIN_NS))
            now = now_ns(CLOCK_MONOTONIC)

    cdef inline void nap(self, uint32_t* empty) noexcept nogil:
        """An empty poll: spin a few times, then sleep briefly."""
        empty[0] += 1
        if empty[0] > IDLE_SPINS:
            sleep_ns(NAP_NS)

    cdef uint32_t take_frames(self, uint32_t want) noexcept nogil:
        """Move up to `want` frames from the source's rx ring into the tx
        ring (both must have them: the caller synced). Returns how many."""
        cdef NmRing* s = self.src.rx
        cdef NmRing* t = self.tx
        cdef uint32_t n = ring_space(s), room = ring_space(t), _i
        cdef uint32_t sh = s.head, th = t.head
        cdef Slot* a
        cdef Slot* d
        cdef uint8_t* f
        if n > room:
            n = room
        if n > want:
            n = want
        for _i in range(n):
            a = &s.slots[sh]
            d = &t.slots[th]
            if self.swap_src:
                swap_bufs(a, d)
            else:
                memcpy(slot_buf(t, d), slot_buf(s, a), a.len)
            d.len = a.len
            d.ts = a.ts
            if self.pay_off:
                f = slot_buf(t, d)
                if self.func == F_TXSEQ:
                    wr32(f + self.pay_off, self.seq_next)
                    add_to_udp_csum(f, self.csum_off, words32(self.seq_next))
                else:
                    self.stamp_ping(f)
                self.seq_next += 1
            self.bytes += d.len
            sh = ring_next(s, sh)
            th = ring_next(t, th)
        s.head = sh
        s.cur = sh
        t.head = th
        t.cur = th
        return n

    cdef inline void stamp_ping(self, uint8_t* f) noexcept nogil:
        cdef uint64_t now = now_ns(CLOCK_MONOTONIC)
        cdef uint32_t hi = <uint32_t>(now >> 32), lo = <uint32_t>now
        cdef uint8_t* p = f + self.pay_off
        wr32(p, self.seq_next)
        wr32(p + 4, hi)
        wr32(p + 8, lo)
        wr32(p + 12, PING_MAGIC)
        add_to_udp_csum(f, self.csum_off, words32(self.seq_next) + words32(hi) + words32(lo)
                        + words32(PING_MAGIC))

    cdef uint32_t fill(self, uint32_t want) noexcept nogil:
        """Queue up to `want` frames, syncing the source and the port as
        needed; returns how many (0: no room, or the source has ended)."""
        if ring_space(self.tx) == 0:
            self.port.txsync()
        if ring_space(self.src.rx) < want and not self.src.eof:
            self.src.rxsync()
        if ring_space(self.src.rx) == 0 and self.src.eof:
            self.source_ended = True
        return self.take_frames(want)

    cdef void flush(self) noexcept nogil:
        """Send what is queued; give up after FLUSH_NS without progress."""
        cdef uint64_t since = now_ns(CLOCK_MONOTONIC)
        cdef uint32_t pending
        self.port.txsync()
        while ring_pending(self.tx):
            pending = ring_pending(self.tx)
            self.port.txsync()
            if ring_pending(self.tx) < pending:
                since = now_ns(CLOCK_MONOTONIC)
            elif now_ns(CLOCK_MONOTONIC) - since > FLUSH_NS:
                break
            else:
                sleep_ns(NAP_NS)
        self.unsent = ring_pending(self.tx)

    # -- the functions ----------------------------------------------------

    cdef uint64_t next_burst(self, uint64_t* next_t) noexcept nogil:
        """The size of the next burst (the count's rest caps it), once its
        time has come when a rate is set."""
        cdef uint64_t want = self.burst
        if self.count and self.count - self.pkts < want:
            want = self.count - self.pkts
        if self.period_ns:
            self.wait_until(next_t[0])
            next_t[0] += self.period_ns
        return want

    cdef void send(self, uint64_t want, bint sync_each) noexcept nogil:
        """Put `want` frames from the source on the port (fewer when
        stopped or the source ended); sync_each: txsync after each fill."""
        cdef uint32_t n, todo = <uint32_t>want, empty = 0
        while todo and not self.stopped():
            n = self.fill(todo)
            if n == 0:
                if self.source_ended:
                    break
                self.nap(&empty)
                continue
            empty = 0
            todo -= n
            self.pkts += n
            if sync_each:
                self.events += 1
                self.port.txsync()

    cdef void run_tx(self) noexcept nogil:
        cdef uint64_t next_t = self.t_start
        while not self.stopped() and not self.source_ended:
            if self.count and self.pkts >= self.count:
                break
            self.send(self.next_burst(&next_t), True)
        self.flush()

    cdef void run_rx(self) noexcept nogil:
        cdef NmRing* r = self.rx
        cdef uint32_t n, _i, h, off, empty = 0
        cdef uint32_t seq, delta
        cdef uint64_t now
        cdef bint check = self.func == F_RXSEQ
        cdef Slot* s
        cdef uint8_t* f
        while not self.stopped():
            if self.count and self.pkts >= self.count:
                break
            if check and self.count and self.seq_expected >= self.count:
                break
            self.port.rxsync()
            n = ring_space(r)
            if n == 0:
                if self.port.eof:
                    break
                if self.idle_ns and self.pkts:
                    now = now_ns(CLOCK_MONOTONIC)
                    if now - self.t_last > self.idle_ns:
                        break
                self.nap(&empty)
                continue
            empty = 0
            if n > self.burst:
                n = self.burst
            if self.count and not check and self.count - self.pkts < n:
                n = <uint32_t>(self.count - self.pkts)
            h = r.head
            if self.pkts == 0:
                self.ts_first = r.slots[h].ts
                self.t_first = now_ns(CLOCK_MONOTONIC)
            for _i in range(n):
                s = &r.slots[h]
                self.bytes += s.len
                if check:
                    f = slot_buf(r, s)
                    off = udp_payload(f, s.len)
                    if off == 0 or s.len < off + SEQ_LEN:
                        self.no_seq += 1
                    else:
                        seq = rd32(f + off)
                        delta = seq - <uint32_t>self.seq_expected
                        if delta == 0:
                            self.seq_expected += 1
                        elif delta <= 0x7FFFFFFF:
                            self.lost += delta
                            self.seq_expected += <uint64_t>delta + 1
                        else:
                            self.late += 1
                            if self.lost:
                                self.lost -= 1
                self.ts_last = s.ts
                h = ring_next(r, h)
            r.head = h
            r.cur = h
            self.pkts += n
            self.events += 1
            self.t_last = now_ns(CLOCK_MONOTONIC)
        if check and self.count and self.seq_expected < self.count:
            # The tail of a stream of known length never came.
            self.lost += self.count - self.seq_expected

    cdef void run_ping(self) noexcept nogil:
        cdef uint64_t next_t = self.t_start, deadline, want
        cdef uint64_t got_before
        cdef uint32_t empty
        while not self.stopped() and not self.source_ended:
            if self.count and self.pkts >= self.count:
                break
            want = self.next_burst(&next_t)
            self.send(want, False)
            self.port.txsync()
            self.events += 1
            got_before = self.replies
            deadline = now_ns(CLOCK_MONOTONIC) + self.reply_ns
            empty = 0
            while self.replies - got_before < want and not self.stopped():
                if self.take_replies() == 0:
                    if ring_pending(self.tx):
                        self.port.txsync()
                    if now_ns(CLOCK_MONOTONIC) > deadline:
                        break
                    self.nap(&empty)
                else:
                    empty = 0
        self.flush()
        # Replies still on their way to the last burst.
        deadline = now_ns(CLOCK_MONOTONIC) + self.reply_ns
        while self.replies < self.pkts and not self.stopped():
            if self.take_replies() == 0:
                if now_ns(CLOCK_MONOTONIC) > deadline:
                    break
                sleep_ns(NAP_NS)

    cdef uint32_t take_replies(self) noexcept nogil:
        """Read the rx ring: each ping reply's RTT into the histogram."""
        cdef NmRing* r = self.rx
        cdef uint32_t n, _i, h, off
        cdef uint64_t now, sent, rtt
        cdef Slot* s
        cdef uint8_t* f
        self.port.rxsync()
        n = ring_space(r)
        if n == 0:
            return 0
        now = now_ns(CLOCK_MONOTONIC)
        h = r.head
        for _i in range(n):
            s = &r.slots[h]
            f = slot_buf(r, s)
            off = udp_payload(f, s.len)
            if off == 0 or s.len < off + PING_LEN or rd32(f + off + 12) != PING_MAGIC:
                self.stray += 1
            else:
                sent = (<uint64_t>rd32(f + off + 4) << 32) | rd32(f + off + 8)
                rtt = now - sent if now > sent else 0
                self.replies += 1
                self.rtt_sum += rtt
                if rtt < self.rtt_min:
                    self.rtt_min = rtt
                if rtt > self.rtt_max:
                    self.rtt_max = rtt
                self.hist[hist_index(rtt)] += 1
            h = ring_next(r, h)
        r.head = h
        r.cur = h
        return n

    cdef void run_pong(self) noexcept nogil:
        cdef NmRing* r = self.rx
        cdef NmRing* t = self.tx
        cdef uint32_t n, _i, h, th, off, room, empty = 0, sent
        cdef Slot* s
        cdef Slot* d
        cdef uint8_t* f
        while not self.stopped():
            if self.count and self.pkts >= self.count:
                break
            self.port.rxsync()
            n = ring_space(r)
            if n == 0:
                if ring_pending(t):
                    self.port.txsync()
                if self.port.eof:
                    break
                self.nap(&empty)
                continue
            empty = 0
            if ring_space(t) < n:
                self.port.txsync()
            room = ring_space(t)
            h = r.head
            th = t.head
            sent = 0
            for _i in range(n):
                s = &r.slots[h]
                f = slot_buf(r, s)
                off = udp_payload(f, s.len)
                if off == 0:
                    self.ignored += 1
                elif sent >= room:
                    self.no_room += 1
                else:
                    d = &t.slots[th]
                    if self.swap_pong:
                        swap_bufs(s, d)
                    else:
                        memcpy(slot_buf(t, d), f, s.len)
                    d.len = s.len
                    d.ts = s.ts
                    f = slot_buf(t, d)
                    swap_bytes(f, f + 6, 6)
                    swap_ips(f, off)
                    swap_bytes(f + off - 8, f + off - 6, 2)     # UDP ports
                    self.bytes += d.len
                    th = ring_next(t, th)
                    sent += 1
                h = ring_next(r, h)
            r.head = h
            r.cur = h
            t.head = th
            t.cur = th
            self.pkts += sent
            if sent:
                self.events += 1
                self.port.txsync()
        self.flush()


cdef inline void swap_ips(uint8_t* f, uint32_t off) noexcept nogil:
    """Swap the source and destination addresses of the IPv4/IPv6 header
    of a frame whose UDP payload is at `off` (udp_payload() said so)."""
    cdef uint32_t l3 = 14
    cdef uint16_t et = (<uint16_t>f[12] << 8) | f[13]
    if et == 0x8100 or et == 0x88A8:
        l3 = 18
        et = (<uint16_t>f[16] << 8) | f[17]
    if et == 0x0800:
        swap_bytes(f + l3 + 12, f + l3 + 16, 4)
    else:
        swap_bytes(f + l3 + 8, f + l3 + 24, 16)
