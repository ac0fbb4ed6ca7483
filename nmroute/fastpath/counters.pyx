"""Counters in shared memory, readable by another process (`nmroute stats`).

The file /dev/shm/nmroute.<pid>.stats starts with a header: 8 bytes of magic,
a little-endian uint32 giving the length of a JSON layout, the layout, padding
to a 4096-byte boundary, then the counters as native uint64s. The layout names
every counter block: ports (rx, rx bytes, tx, tx bytes, drops by reason) and
elements (in, drops by reason, out by output, then their own counters).
"""
import json
import mmap
import os
import struct

from libc.stdint cimport uint64_t, uintptr_t

from nmroute.fastpath.drops import reason_names
from nmroute.fastpath.drops cimport N_DROP_REASONS

MAGIC = b"NMRSTAT1"
STATS_DIR = "/dev/shm"


def stats_path(pid=None):
    return os.path.join(STATS_DIR, f"nmroute.{pid or os.getpid()}.stats")


cdef class CounterFile:
    """Allocates counter blocks, then maps them all into one shared file."""
    cdef list blocks
    cdef readonly uint64_t n
    cdef object mm
    cdef readonly str path
    cdef uintptr_t base

    def __init__(self):
        self.blocks = []
        self.n = 0
        self.mm = None

    def add(self, str kind, str name, **fields):
        """Reserve a block; returns its offset (in counters). fields: its layout."""
        size = {"port": 4 + N_DROP_REASONS}.get(kind) or (
            1 + N_DROP_REASONS + len(fields["outputs"]) + len(fields.get("own", ())))
        block = dict(kind=kind, name=name, offset=self.n, size=size, **fields)
        self.blocks.append(block)
        self.n += size
        return block["offset"]

    def create(self, path=None, meta=None):
        """Create the file; after this, ptr() gives addresses into it."""
        layout = json.dumps({"meta": meta or {}, "reasons": reason_names(),
                             "blocks": self.blocks}).encode()
        header = MAGIC + struct.pack("<I", len(layout)) + layout
        hsize = (len(header) + 4095) // 4096 * 4096
        self.path = path or stats_path()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            size = hsize + 8 * (self.n or 1)
            os.ftruncate(fd, size)
            self.mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.mm[:len(header)] = header
        cdef const unsigned char[:] view = self.mm
        self.base = <uintptr_t>&view[hsize]

    def ptr(self, uint64_t offset):
        return self.base + 8 * offset

    def remove(self):
        if self.path and os.path.exists(self.path):
            os.unlink(self.path)


def read_counters(path):
    """Parse a counters file: (layout dict, list of uint64)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != MAGIC:
        raise ValueError(f"{path}: not an nmroute counters file")
    (ln,) = struct.unpack_from("<I", data, 8)
    layout = json.loads(data[12:12 + ln])
    hsize = (12 + ln + 4095) // 4096 * 4096
    n = (len(data) - hsize) // 8
    values = struct.unpack_from(f"={n}Q", data, hsize)
    return layout, values


def snapshot(layout, values):
    """Counters in the shape of --stats-json: ports and elements by name."""
    reasons = {int(k): v for k, v in layout["reasons"].items()}
    out = {"ports": {}, "elements": {}}
    for b in layout["blocks"]:
        v = values[b["offset"]:b["offset"] + b["size"]]
        if b["kind"] == "port":
            drops = {reasons[i]: v[4 + i] for i in reasons if v[4 + i]}
            out["ports"][b["name"]] = {"rx": v[0], "tx": v[2], "drops": drops,
                                       "rx_bytes": v[1], "tx_bytes": v[3]}
        else:
            drops = {reasons[i]: v[1 + i] for i in reasons if v[1 + i]}
            o = 1 + N_DROP_REASONS
            outs = {name: v[o + k] for k, name in enumerate(b["outputs"])}
            o += len(b["outputs"])
            own = {name: v[o + k] for k, name in enumerate(b.get("own", ()))}
            out["elements"][b["name"]] = {"in": v[0], "out": outs, "drops": drops,
                                          "counters": own}
    return out
