"""pcap:FILE — replay a pcap/pcapng file (rx), or capture into one (tx)."""
from nmroute.schema import Param, Str, Choice, Int

from nmroute.fastpath.drops cimport DROP_OVERSIZE, DROP_IO_ERROR
from nmroute.fastpath.pcapfile cimport PcapReader, PcapWriter
from nmroute.fastpath.ports.port cimport Port, P_RX
from nmroute.fastpath.ring cimport NmRing, Slot, ring_next, slot_buf
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

import os

from nmroute.errors import PcapFormatError
from nmroute.errors import PortError


cdef class PcapPort(Port):
    """Read frames from a pcap or pcapng file, or write them to a pcap file.

    Used as a source (first in a chain) the file is replayed `loop` times as
    fast as the pipeline takes it, with the file's timestamps kept on each
    frame. Used as a destination, frames are written with their timestamps
    (the capture time of a replayed frame, or the time of writing).
    Frames longer than a pool buffer are counted as drops (oversize). A
    truncated last record ends the replay with a warning.

    Example:
        ports: {in: "pcap:in.pcap", out: {port: "pcap:out.pcap", precision: ns}}
        links: ["in -> out"]
    """
    SCHEME = "pcap"
    SUMMARY = "replay a pcap/pcapng file, or write a pcap file"
    DIRECTIONS = ("rx", "tx")
    ARG = "file"
    PARAMS = (
        Param("file", Str(what="a file path"), "the pcap file to read or write"),
        Param("precision", Choice("us", "ns"), "timestamps written: µs or ns", "us"),
        Param("snaplen", Int(64, 65535), "bytes kept of each frame written", 65535),
        Param("loop", Int(0), "times to replay the file; 0: forever", 1),
    )

    cdef PcapReader reader
    cdef PcapWriter writer
    cdef uint64_t loops_left
    cdef uint64_t pass_frames    # frames read since the file was (re)started

    @classmethod
    def check(cls, params, rx, tx):
        errors = []
        path = params.get("file", "")
        if rx and tx:
            errors.append("a pcap file cannot be read and written in one pipeline")
        elif rx and not os.path.isfile(path):
            errors.append(f"file: no such file: {path!r}")
        elif tx and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            errors.append(f"file: directory of {path!r} does not exist")
        return errors

    @classmethod
    def files(cls, params, rx, tx):
        return [(params["file"], "read" if rx else "written")]

    def open(self, pool, uint32_t ring_size, bint rx, bint tx):
        p = self.params
        try:
            if rx:
                self.reader = PcapReader(p["file"])
                self.loops_left = p.get("loop", 1)
            if tx:
                self.writer = PcapWriter(p["file"], p.get("precision", "us") == "ns",
                                         p.get("snaplen", 65535))
        except (OSError, PcapFormatError) as e:
            raise PortError(self.name, str(e)) from None
        Port.open(self, pool, ring_size, rx, tx)

    @property
    def truncated(self):
        return self.reader is not None and self.reader.truncated

    def close(self):
        if self.writer is not None:
            self.writer.close()
        if self.reader is not None:
            self.reader.close()

    cdef int rxsync(self) noexcept nogil:
        cdef NmRing* r = self.rx
        cdef uint32_t t = r.tail, n = 0, cap, orig
        cdef uint32_t budget = r.num_slots   # records per call, oversize ones too
        cdef const uint8_t* pkt
        cdef uint64_t ts
        cdef int got
        cdef Slot* s
        if self.eof:
            return 0
        while ring_next(r, t) != r.head and budget:
            got = self.reader.next(&pkt, &cap, &orig, &ts)
            if got == 2:
                continue
            if got <= 0:
                # End of file (or a truncated record): replay or stop. A file
                # with no frames has nothing to replay.
                if got == 0 and self.loops_left != 1 and self.pass_frames:
                    if self.loops_left:
                        self.loops_left -= 1
                    self.pass_frames = 0
                    self.reader.reset()
                    continue
                self.eof = True
                break
            self.pass_frames += 1
            budget -= 1
            if cap > r.buf_size:
                self.ctr[P_RX] += 1
                self.count_drop(DROP_OVERSIZE, 1)
                continue
            s = &r.slots[t]
            memcpy(slot_buf(r, s), pkt, cap)
            s.len = cap
            s.ts = ts
            t = ring_next(r, t)
            n += 1
        r.tail = t
        return n

    cdef int txsync(self) noexcept nogil:
        cdef NmRing* r = self.tx
        cdef uint32_t i = r.hwcur, n = 0
        cdef uint64_t nbytes = 0
        cdef Slot* s
        while i != r.head:
            s = &r.slots[i]
            if self.writer.write(slot_buf(r, s), s.len, s.ts) == 0:
                n += 1
                nbytes += s.len
            else:
                self.count_drop(DROP_IO_ERROR, 1)
            i = ring_next(r, i)
        return self.tx_done(i, n, nbytes)
