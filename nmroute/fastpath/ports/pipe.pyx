"""pipe:NAME — a link between two pipelines in one process (netmap's pipes)."""
from nmroute.schema import Param, Str

from libc.stdint cimport uint32_t, uint64_t

from nmroute.fastpath.ports.port cimport Port
from nmroute.fastpath.ring cimport NmRing, Slot, ring_next, NS_BUF_CHANGED


cdef class Pipe(Port):
    """One end of a pipe: written to in one pipeline, read from in another.

    Frames move from the writer's tx ring into the reader's rx ring by
    swapping buffer indexes, as netmap pipes do. When the reader's ring is
    full the writer's frames wait in its tx ring, and the writer's inputs are
    held back: a pipe loses nothing.

    Example:
        # a.yaml                          # b.yaml
        ports: {src: "gen:count=10",      ports: {p: "pipe:ab", out: sink}
                p: "pipe:ab"}             links: ["p -> out"]
        links: ["src -> p"]
        # nmroute run a.yaml b.yaml
    """
    SCHEME = "pipe"
    SUMMARY = "a link between two pipelines run together"
    DIRECTIONS = ("rx", "tx")
    ARG = "name"
    PARAMS = (
        Param("name", Str(r"[A-Za-z0-9_.-]+", "a pipe name (letters, digits, _ . -)"),
              "the pipe's name; the two ends use the same name"),
    )

    cdef Pipe peer

    def connect(self, Pipe reader):
        """Join this (writing) end to the reading end."""
        if self.tx == NULL or reader.rx == NULL:
            raise ValueError(f"pipe {self.name}: connect the writer to the reader")
        self.peer = reader

    cdef int txsync(self) noexcept nogil:
        cdef NmRing* r = self.tx
        cdef NmRing* q
        cdef uint32_t i = r.hwcur, t, n = 0, b
        cdef uint64_t nbytes = 0
        cdef Slot* s
        cdef Slot* d
        if self.peer is None:
            return 0
        q = self.peer.rx
        t = q.tail
        while i != r.head and ring_next(q, t) != q.head:
            s = &r.slots[i]
            d = &q.slots[t]
            b = d.buf_idx
            d.buf_idx = s.buf_idx
            s.buf_idx = b
            d.len = s.len
            d.ts = s.ts
            d.flags |= NS_BUF_CHANGED
            s.flags |= NS_BUF_CHANGED
            nbytes += s.len
            n += 1
            i = ring_next(r, i)
            t = ring_next(q, t)
        q.tail = t
        return self.tx_done(i, n, nbytes)
