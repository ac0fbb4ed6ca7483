"""gen: synthetic Ethernet + IPv4/IPv6 + UDP/TCP traffic, as netmap's pkt-gen makes."""
import ipaddress

cimport cython
import struct

from nmroute.schema import (
    Param, Int, Float, Choice, Range, AddrRange, Mac)

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy

from nmroute.fastpath.includes.sys cimport now_ns, CLOCK_MONOTONIC, CLOCK_REALTIME
from nmroute.fastpath.ports.port cimport Port
from nmroute.fastpath.ring cimport NmRing, Slot, ring_next, slot_buf

from nmroute.errors import PortError

cdef extern from *:
    uint16_t bswap16 "__builtin_bswap16"(uint16_t) nogil
    uint32_t bswap32 "__builtin_bswap32"(uint32_t) nogil
    uint64_t bswap64 "__builtin_bswap64"(uint64_t) nogil

cdef enum:
    ETH_LEN = 14
    MAX_HDR = 14 + 40 + 20

DEFAULTS = {"ipv4": ("198.18.0.1", "198.19.0.1"), "ipv6": ("2001:2::1", "2001:2:0:1::1")}
HDR = {("ipv4", "udp"): 42, ("ipv4", "tcp"): 54, ("ipv6", "udp"): 62, ("ipv6", "tcp"): 74}


cdef inline uint32_t sum16(const uint8_t* p, uint32_t n) noexcept nogil:
    """Ones'-complement partial sum of n (even) bytes, not yet folded."""
    cdef uint32_t s = 0, i
    for i in range(0, n, 2):
        s += (<uint32_t>p[i] << 8) | p[i + 1]
    return s


cdef inline uint32_t words64(uint64_t x) noexcept nogil:
    """Sum of the four 16-bit words of x (its big-endian halves alike)."""
    return <uint32_t>((x >> 48) + ((x >> 32) & 0xFFFF) + ((x >> 16) & 0xFFFF) + (x & 0xFFFF))


cdef inline uint16_t fold(uint32_t s) noexcept nogil:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return <uint16_t>s


cdef extern from *:
    """
    /* (a * b) >> 64: a random 64-bit a scaled to [0, b) without a division. */
    static inline uint64_t nmr_mulhi64(uint64_t a, uint64_t b) {
        return (uint64_t)(((unsigned __int128)a * b) >> 64);
    }
    """
    uint64_t nmr_mulhi64(uint64_t a, uint64_t b) nogil


cdef enum:
    SMALL_FRAME = 64      # a pool buffer is at least 256 bytes


cdef struct AddrIter:
    uint64_t hi       # address as a 128-bit number (IPv4: in lo)
    uint64_t lo
    uint64_t n        # addresses in the range
    uint64_t i


@cython.final
cdef class Gen(Port):
    """Synthetic traffic: Ethernet frames carrying IPv4 or IPv6, UDP or TCP,
    with zero payload and correct checksums.

    Addresses and ports walk their ranges like an odometer: source port
    fastest, then source address, destination port, destination address;
    with `random`, source and/or destination addresses are drawn at random
    in their ranges instead.
    A size range gives uniformly random sizes. `count` frames are made (0:
    until stopped), at most `rate` per second (0: as fast as taken).
    Sizes are frame lengths without the 4-byte FCS (60 is a 64-byte frame).

    Example:
        ports:
          src: {port: gen, count: 1000, size: 60-1500, proto: tcp,
                dst: 198.19.0.0/24, dport: 80}
    """
    SCHEME = "gen"
    SUMMARY = "synthetic Ethernet/IPv4/IPv6 UDP or TCP traffic"
    DIRECTIONS = ("rx",)
    ARG = None
    PARAMS = (
        Param("count", Int(0), "frames to make; 0: until stopped", 0),
        Param("size", Range(42, 9216, "a frame length"),
              "frame length without FCS, or a random range like 60-1500", "60"),
        Param("rate", Float(0), "frames per second; 0: as fast as possible", 0),
        Param("proto", Choice("udp", "tcp"), "transport protocol", "udp"),
        Param("family", Choice("ipv4", "ipv6"), "IP version; default: from src/dst", None),
        Param("src", AddrRange(), "source address, prefix or range", None),
        Param("dst", AddrRange(), "destination address, prefix or range", None),
        Param("sport", Range(0, 65535, "a port"), "source port or range", "1234"),
        Param("dport", Range(0, 65535, "a port"), "destination port or range", "1234"),
        Param("src_mac", Mac(), "source MAC", "02:00:00:00:00:01"),
        Param("dst_mac", Mac(), "destination MAC", "02:00:00:00:00:02"),
        Param("random", Choice("none", "src", "dst", "both"),
              "addresses drawn at random in their ranges instead of walked "
              "(pkt-gen's -z / -Z)", "none"),
    )

    cdef uint8_t* tmpl       # the frame at its largest, payload zero
    cdef uint32_t ip_sum     # IPv4 header sum without length and addresses
    cdef uint32_t l4_sum     # L4 header sum without ports/length, + protocol
    cdef uint32_t hdr_len
    cdef bint v6
    cdef bint tcp
    cdef uint32_t size_lo
    cdef uint32_t size_span
    cdef uint32_t rnd
    cdef uint64_t rnd64
    cdef bint rand_src
    cdef bint rand_dst
    cdef uint64_t count
    cdef readonly uint64_t made
    cdef AddrIter src
    cdef AddrIter dst
    cdef AddrIter sport
    cdef AddrIter dport
    cdef double rate
    cdef double tokens
    cdef uint64_t last_ns

    @classmethod
    def resolve(cls, params):
        """Fill in the family and addresses; returns (family, src, dst) or raises
        ValueError with a message."""
        fams = {r[0].version for r in (params.get("src"), params.get("dst")) if r}
        family = params.get("family")
        if len(fams) > 1:
            raise ValueError("src and dst are of different IP versions")
        if family is None:
            family = "ipv6" if fams == {6} else "ipv4"
        want = 6 if family == "ipv6" else 4
        if fams and fams != {want}:
            raise ValueError(f"family {family} but addresses are IPv{fams.pop()}")
        src = params.get("src") or (ipaddress.ip_address(DEFAULTS[family][0]),) * 2
        dst = params.get("dst") or (ipaddress.ip_address(DEFAULTS[family][1]),) * 2
        return family, src, dst

    @classmethod
    def check(cls, params, rx, tx):
        try:
            family, _, _ = cls.resolve(params)
        except ValueError as e:
            return [str(e)]
        need = HDR[family, params.get("proto", "udp")]
        lo = params.get("size", (60, 60))[0]
        if lo < need:
            return [f"size: {lo} is too small for {family}/{params.get('proto', 'udp')}: "
                    f"the headers take {need} bytes"]
        return []

    def open(self, pool, uint32_t ring_size, bint rx, bint tx):
        p = self.params
        problems = self.check(p, rx, tx)
        if problems:
            raise PortError(self.name, problems[0])
        family, src, dst = self.resolve(p)
        size = p.get("size", (60, 60))
        if size[1] > pool.buf_size:
            raise PortError(self.name, f"size {size[1]} exceeds the buffer size {pool.buf_size}")
        self.v6 = family == "ipv6"
        self.tcp = p.get("proto", "udp") == "tcp"
        self.size_lo = size[0]
        self.size_span = size[1] - size[0] + 1
        self.rnd = 0x9E3779B9
        self.rnd64 = 0x9E3779B97F4A7C15
        self.rand_src = p.get("random", "none") in ("src", "both")
        self.rand_dst = p.get("random", "none") in ("dst", "both")
        self.count = p.get("count", 0)
        self.rate = p.get("rate", 0)
        self._range(&self.src, src)
        self._range(&self.dst, dst)
        sport, dport = p.get("sport", (1234, 1234)), p.get("dport", (1234, 1234))
        self.sport.lo, self.sport.n = sport[0], sport[1] - sport[0] + 1
        self.dport.lo, self.dport.n = dport[0], dport[1] - dport[0] + 1
        self._template(p["src_mac"], p["dst_mac"], size[1])
        Port.open(self, pool, ring_size, rx, tx)

    cdef _range(self, AddrIter* it, r):
        a, b = int(r[0]), int(r[1])
        it.hi = a >> 64
        it.lo = a & 0xFFFFFFFFFFFFFFFF
        it.n = min(b - a + 1, 1 << 63)
        it.i = 0

    def __dealloc__(self):
        free(self.tmpl)

    def _template(self, bytes src_mac, bytes dst_mac, uint32_t max_size):
        """The headers with every varying field zero; filled per frame."""
        proto = 6 if self.tcp else 17
        if self.v6:
            eth = dst_mac + src_mac + b"\x86\xdd"
            ip = struct.pack("!IHBB16s16s", 6 << 28, 0, proto, 64, bytes(16), bytes(16))
        else:
            eth = dst_mac + src_mac + b"\x08\x00"
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0x4000, 64, proto, 0,
                             bytes(4), bytes(4))
        if self.tcp:
            l4 = struct.pack("!HHIIBBHHH", 0, 0, 1, 0, 5 << 4, 0x10, 65535, 0, 0)
        else:
            l4 = struct.pack("!HHHH", 0, 0, 0, 0)
        t = eth + ip + l4
        self.hdr_len = len(t)
        # At least 64 bytes: small frames are copied as one fixed-size block.
        self.tmpl = <uint8_t*>calloc(max(max_size, len(t), SMALL_FRAME), 1)
        if self.tmpl == NULL:
            raise MemoryError()
        for i, c in enumerate(t):
            self.tmpl[i] = c
        self.ip_sum = 0 if self.v6 else sum16(self.tmpl + ETH_LEN, 20)
        self.l4_sum = sum16(self.tmpl + len(eth) + len(ip), len(l4)) + proto

    cdef inline uint64_t _random(self) noexcept nogil:
        """xorshift64: cheap, and uniform enough to spread addresses."""
        self.rnd64 ^= self.rnd64 << 13
        self.rnd64 ^= self.rnd64 >> 7
        self.rnd64 ^= self.rnd64 << 17
        return self.rnd64

    cdef inline uint64_t _next(self, AddrIter* it) noexcept nogil:
        """it's current offset; returns 1 when the range wrapped."""
        it.i += 1
        if it.i == it.n:
            it.i = 0
            return 1
        return 0

    cdef inline void fill(self, uint8_t* f, uint32_t size) noexcept nogil:
        """Write one frame: the template, then the varying fields, with the
        checksums summed from the numbers rather than read back (the
        template's constant words are summed once, in _template)."""
        cdef uint32_t l3 = ETH_LEN, l4, l4len, a, s
        cdef uint64_t lo, hi
        cdef uint16_t v, sport, dport
        if size <= SMALL_FRAME:
            memcpy(f, self.tmpl, SMALL_FRAME)   # constant size: inlined, no call
        else:
            memcpy(f, self.tmpl, size)
        if self.rand_src:
            self.src.i = nmr_mulhi64(self._random(), self.src.n)
        if self.rand_dst:
            self.dst.i = nmr_mulhi64(self._random(), self.dst.n)
        if self.v6:
            l4 = l3 + 40
            l4len = size - l4
            v = bswap16(<uint16_t>l4len)
            memcpy(f + l3 + 4, &v, 2)
            lo = self.src.lo + self.src.i
            hi = self.src.hi + (lo < self.src.lo)
            s = words64(hi) + words64(lo)
            hi = bswap64(hi)
            lo = bswap64(lo)
            memcpy(f + l3 + 8, &hi, 8)
            memcpy(f + l3 + 16, &lo, 8)
            lo = self.dst.lo + self.dst.i
            hi = self.dst.hi + (lo < self.dst.lo)
            s += words64(hi) + words64(lo)
            hi = bswap64(hi)
            lo = bswap64(lo)
            memcpy(f + l3 + 24, &hi, 8)
            memcpy(f + l3 + 32, &lo, 8)
        else:
            l4 = l3 + 20
            l4len = size - l4
            v = bswap16(<uint16_t>(size - l3))
            memcpy(f + l3 + 2, &v, 2)
            a = <uint32_t>(self.src.lo + self.src.i)
            s = (a >> 16) + (a & 0xFFFF)
            a = bswap32(a)
            memcpy(f + l3 + 12, &a, 4)
            a = <uint32_t>(self.dst.lo + self.dst.i)
            s += (a >> 16) + (a & 0xFFFF)
            a = bswap32(a)
            memcpy(f + l3 + 16, &a, 4)
            v = bswap16(~fold(self.ip_sum + s + size - l3))
            memcpy(f + l3 + 10, &v, 2)
        sport = <uint16_t>(self.sport.lo + self.sport.i)
        dport = <uint16_t>(self.dport.lo + self.dport.i)
        v = bswap16(sport)
        memcpy(f + l4, &v, 2)
        v = bswap16(dport)
        memcpy(f + l4 + 2, &v, 2)
        # Pseudo-header (addresses, protocol, length) + the L4 header; the
        # payload is zeros and adds nothing.
        s += self.l4_sum + l4len + sport + dport
        if self.tcp:
            v = bswap16(~fold(s))
            memcpy(f + l4 + 16, &v, 2)
        else:
            s += l4len     # UDP carries its length in its header too
            v = bswap16(<uint16_t>l4len)
            memcpy(f + l4 + 4, &v, 2)
            v = ~fold(s)
            v = bswap16(v if v else 0xFFFF)
            memcpy(f + l4 + 6, &v, 2)
        # Odometer: source port, source address, destination port, destination.
        if self._next(&self.sport):
            if self._next(&self.src):
                if self._next(&self.dport):
                    self._next(&self.dst)

    cdef int rxsync(self) noexcept nogil:
        cdef NmRing* r = self.rx
        cdef uint32_t t = r.tail, n = 0, size, room
        cdef uint64_t ts = now_ns(CLOCK_REALTIME), now
        cdef Slot* s
        if self.eof:
            return 0
        room = (r.head - t - 1) & r.mask
        if self.count and self.count - self.made < room:
            room = <uint32_t>(self.count - self.made)
        if self.rate > 0:
            now = now_ns(CLOCK_MONOTONIC)
            if self.last_ns == 0:
                self.last_ns = now
                self.tokens = 1
            self.tokens += (now - self.last_ns) * self.rate / 1e9
            self.last_ns = now
            if self.tokens > r.num_slots:
                self.tokens = r.num_slots     # no burst beyond one ring
            if room > <uint32_t>self.tokens:
                room = <uint32_t>self.tokens
            self.tokens -= room
        while n < room:
            s = &r.slots[t]
            size = self.size_lo
            if self.size_span > 1:
                self.rnd ^= self.rnd << 13
                self.rnd ^= self.rnd >> 17
                self.rnd ^= self.rnd << 5
                size += self.rnd % self.size_span
            self.fill(slot_buf(r, s), size)
            s.len = size
            s.ts = ts
            t = ring_next(r, t)
            n += 1
        r.tail = t
        self.made += n
        if self.count and self.made >= self.count:
            self.eof = True
        return n
