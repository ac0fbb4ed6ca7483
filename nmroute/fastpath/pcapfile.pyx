"""pcap and pcapng files: the writer and reader that the pcap port and the
pcap-tap element share. Formats: pcap (tcpdump's savefile: magic a1b2c3d4
with µs or a1b23c4d with ns timestamps, in either byte order) and pcapng
(section header, interface description, enhanced and simple packet blocks).
Only Ethernet (link type 1) is read."""
import mmap
import os

from nmroute.errors import PcapFormatError

from libc.errno cimport errno
from libc.stdio cimport fopen, fclose, fwrite, fflush, setvbuf, _IOFBF
from libc.stdint cimport uint16_t
from libc.string cimport memcpy

from nmroute.fastpath.includes.sys cimport now_ns, CLOCK_REALTIME

cdef extern from *:
    uint32_t bswap32 "__builtin_bswap32"(uint32_t) nogil
    uint16_t bswap16 "__builtin_bswap16"(uint16_t) nogil

cdef enum:
    LINKTYPE_ETHERNET = 1
    PCAP_MAGIC_US = 0xa1b2c3d4
    PCAP_MAGIC_NS = 0xa1b23c4d
    NG_SHB = 0x0A0D0D0A
    NG_IDB = 1
    NG_SPB = 3
    NG_EPB = 6
    NG_BOM = 0x1A2B3C4D
    WRITE_BUF = 1 << 20


cdef class PcapWriter:
    def __cinit__(self, str path, bint nsec=False, uint32_t snaplen=65535):
        self.path = path
        self.nsec = nsec
        self.snaplen = snaplen
        self.f = fopen(os.fsencode(path), b"wb")
        if self.f == NULL:
            # Not OSError(errno, msg): its str() would start with "[Errno N]".
            code = errno
            err = OSError(f"cannot write {path}: {os.strerror(code)}")
            err.errno = code
            raise err
        setvbuf(self.f, NULL, _IOFBF, WRITE_BUF)
        cdef uint32_t hdr[6]
        hdr[0] = PCAP_MAGIC_NS if nsec else PCAP_MAGIC_US
        hdr[1] = 2 | (4 << 16)     # version 2.4, as two little-endian u16
        hdr[2] = 0                 # thiszone
        hdr[3] = 0                 # sigfigs
        hdr[4] = snaplen
        hdr[5] = LINKTYPE_ETHERNET
        if fwrite(hdr, 4, 6, self.f) != 6:
            raise OSError(f"cannot write {path}")

    cdef int write(self, const uint8_t* data, uint32_t length, uint64_t ts_ns) noexcept nogil:
        """One record; ts_ns 0 means "now". Returns -1 on a write error."""
        cdef uint32_t rec[4]
        cdef uint32_t cap = length if length < self.snaplen else self.snaplen
        if self.f == NULL:
            return -1
        if ts_ns == 0:
            ts_ns = now_ns(CLOCK_REALTIME)
        rec[0] = <uint32_t>(ts_ns // 1000000000ULL)
        rec[1] = <uint32_t>(ts_ns % 1000000000ULL)
        if not self.nsec:
            rec[1] //= 1000
        rec[2] = cap
        rec[3] = length
        if fwrite(rec, 4, 4, self.f) != 4 or fwrite(data, 1, cap, self.f) != cap:
            self.errors += 1
            return -1
        self.written += 1
        return 0

    def write_frame(self, bytes frame, uint64_t ts_ns=0):
        """Python side (tests, slow path)."""
        return self.write(<const uint8_t*><char*>frame, len(frame), ts_ns)

    def close(self):
        if self.f != NULL:
            if fflush(self.f) != 0:
                self.errors += 1
            fclose(self.f)
            self.f = NULL

    def __dealloc__(self):
        if self.f != NULL:
            fclose(self.f)


cdef inline uint32_t rd32(const uint8_t* p, bint swapped) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return bswap32(v) if swapped else v


cdef inline uint16_t rd16(const uint8_t* p, bint swapped) noexcept nogil:
    cdef uint16_t v
    memcpy(&v, p, 2)
    return bswap16(v) if swapped else v


cdef class PcapReader:
    def __cinit__(self, str path):
        self.path = path
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 24:
                raise PcapFormatError(f"{path}: not a pcap file (only {size} bytes)")
            self.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        cdef const unsigned char[:] view = self.mm
        self.data = &view[0]
        self.size = size
        cdef uint32_t magic = rd32(self.data, False)
        self.linktype = -1
        if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            self.swapped = False
        elif bswap32(magic) in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            self.swapped = True
            magic = bswap32(magic)
        elif magic == NG_SHB:
            self.ng = True
        else:
            raise PcapFormatError(f"{path}: not a pcap or pcapng file (magic {magic:#010x})")
        if self.ng:
            self.start = 0
            self._scan_first_interface()
        else:
            self.nsec = magic == PCAP_MAGIC_NS
            self.linktype = rd32(self.data + 20, self.swapped) & 0xFFFF
            self.start = 24
        if self.linktype != LINKTYPE_ETHERNET:
            raise PcapFormatError(
                f"{path}: link type {self.linktype} is not Ethernet (1); only Ethernet is read")
        self.pos = self.start

    def _scan_first_interface(self):
        """Read blocks up to the first interface description: its link type."""
        cdef const uint8_t* pkt
        cdef uint32_t cap, orig
        cdef uint64_t ts
        self.pos = 0
        while self.n_ifaces == 0:
            if self.next(&pkt, &cap, &orig, &ts) != 2:
                raise PcapFormatError(f"{self.path}: pcapng file without an interface")
        self.linktype = self.if_linktype[0]

    def rewind(self):
        self.reset()

    cdef void reset(self) noexcept nogil:
        """Back to the first frame (pcapng: re-read the section's interfaces)."""
        self.pos = self.start
        if self.ng:
            self.n_ifaces = 0

    cdef int _ng_block(self, const uint8_t** pkt, uint32_t* caplen, uint32_t* origlen,
                       uint64_t* ts_ns) noexcept nogil:
        """One pcapng block: 1 a packet, 2 an interface, 3 skipped, 0 end, -1 bad."""
        cdef const uint8_t* b = self.data + self.pos
        cdef size_t left = self.size - self.pos
        cdef uint32_t btype, blen, ifc, cap, olen, code, vlen
        cdef uint64_t t
        cdef size_t o
        cdef uint8_t res
        if left == 0:
            return 0
        if left < 12:
            return -1
        btype = rd32(b, self.swapped)
        if btype == NG_SHB:
            if rd32(b + 8, False) == NG_BOM:
                self.swapped = False
            elif rd32(b + 8, True) == NG_BOM:
                self.swapped = True
            else:
                return -1
            self.n_ifaces = 0
        blen = rd32(b + 4, self.swapped)
        if blen < 12 or blen % 4 or blen > left:
            return -1
        self.pos += blen
        if btype == NG_IDB:
            if blen < 20 or self.n_ifaces >= MAX_IFACES:
                return 3
            ifc = self.n_ifaces
            self.n_ifaces += 1
            self.if_linktype[ifc] = rd16(b + 8, self.swapped)
            self.if_units[ifc] = 1000      # default resolution: µs
            self.if_shift[ifc] = 0
            o = 16
            while o + 4 <= blen - 4:
                code = rd16(b + o, self.swapped)
                vlen = rd16(b + o + 2, self.swapped)
                if code == 0 or o + 4 + vlen > blen - 4:
                    break
                if code == 9 and vlen >= 1:          # if_tsresol
                    res = b[o + 4]
                    if res & 0x80:
                        self.if_units[ifc] = 0
                        self.if_shift[ifc] = res & 0x7F
                    else:
                        self.if_units[ifc] = 1
                        while res < 9:
                            self.if_units[ifc] *= 10
                            res += 1
                        if res > 9:
                            self.if_units[ifc] = 0   # finer than ns: keep ns
                            self.if_shift[ifc] = -(res - 9)
                o += 4 + ((vlen + 3) & ~3u)
            return 2
        if btype == NG_EPB:
            if blen < 32:
                return -1
            ifc = rd32(b + 8, self.swapped)
            cap = rd32(b + 20, self.swapped)
            olen = rd32(b + 24, self.swapped)
            if cap > blen - 32 or ifc >= <uint32_t>self.n_ifaces:
                return -1
            if self.if_linktype[ifc] != LINKTYPE_ETHERNET:
                return 3
            t = (<uint64_t>rd32(b + 12, self.swapped) << 32) | rd32(b + 16, self.swapped)
            if self.if_units[ifc]:
                t *= self.if_units[ifc]
            elif self.if_shift[ifc] > 0:
                t = (t >> self.if_shift[ifc]) * 1000000000ULL + (
                    ((t & ((1ULL << self.if_shift[ifc]) - 1)) * 1000000000ULL)
                    >> self.if_shift[ifc])
            else:
                vlen = -self.if_shift[ifc]
                while vlen:
                    t //= 10
                    vlen -= 1
            pkt[0] = b + 28
            caplen[0] = cap
            origlen[0] = olen
            ts_ns[0] = t
            return 1
        if btype == NG_SPB:
            if blen < 16 or self.n_ifaces == 0:
                return -1
            olen = rd32(b + 8, self.swapped)
            cap = olen if olen <= blen - 16 else blen - 16
            pkt[0] = b + 12
            caplen[0] = cap
            origlen[0] = olen
            ts_ns[0] = 0
            return 1
        return 3

    cdef int next(self, const uint8_t** pkt, uint32_t* caplen, uint32_t* origlen,
                  uint64_t* ts_ns) noexcept nogil:
        """The next frame: 1, or 0 at the end, or -1 on a truncated or bad
        record (`truncated` set; reading stops there). pcapng: returns 2 for
        an interface block, which callers skip."""
        cdef const uint8_t* r
        cdef uint32_t cap, frac
        cdef int got
        if self.ng:
            while True:
                got = self._ng_block(pkt, caplen, origlen, ts_ns)
                if got == 3:
                    continue
                if got == -1:
                    self.truncated = True
                    self.pos = self.size
                return got
        if self.pos == self.size:
            return 0
        if self.size - self.pos < 16:
            self.truncated = True
            self.pos = self.size
            return -1
        r = self.data + self.pos
        cap = rd32(r + 8, self.swapped)
        if cap > self.size - self.pos - 16:
            self.truncated = True
            self.pos = self.size
            return -1
        frac = rd32(r + 4, self.swapped)
        ts_ns[0] = <uint64_t>rd32(r, self.swapped) * 1000000000ULL + (
            frac if self.nsec else <uint64_t>frac * 1000)
        pkt[0] = r + 16
        caplen[0] = cap
        origlen[0] = rd32(r + 12, self.swapped)
        self.pos += 16 + cap
        return 1

    def frames(self):
        """All frames as (ts_ns, bytes) (tests, slow path)."""
        cdef const uint8_t* pkt
        cdef uint32_t cap, orig
        cdef uint64_t ts
        cdef int got
        out = []
        self.rewind()
        while True:
            got = self.next(&pkt, &cap, &orig, &ts)
            if got == 1:
                out.append((ts, (<const char*>pkt)[:cap]))
            elif got != 2:
                break
        self.rewind()
        return out

    def close(self):
        self.data = NULL
        if self.mm is not None:
            self.mm.close()
            self.mm = None
