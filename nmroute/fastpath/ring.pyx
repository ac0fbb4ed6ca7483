"""Rings of slots with netmap semantics; every slot owns a pool buffer."""
from libc.stdlib cimport calloc, free


cdef class Ring:
    """Owns an NmRing (see ring.pxd) and the pool buffers of its slots."""

    def __cinit__(self, Pool pool, uint32_t num_slots, bint tx):
        if num_slots < 2 or num_slots & (num_slots - 1):
            raise ValueError(f"ring size must be a power of two, got {num_slots}")
        self.pool = pool
        self.r.num_slots = num_slots
        self.r.mask = num_slots - 1
        self.r.base = pool.base
        self.r.buf_size = pool.buf_size
        self.r.slots = <Slot*>calloc(num_slots, sizeof(Slot))
        if self.r.slots == NULL:
            raise MemoryError()
        cdef uint32_t i
        for i in range(num_slots):
            self.r.slots[i].buf_idx = pool.take()
            self.taken += 1
        # tx starts with every slot free (but the one kept back); rx empty.
        self.r.tail = self.r.mask if tx else 0

    def __dealloc__(self):
        cdef uint32_t i
        if self.r.slots != NULL:
            if self.pool is not None:
                for i in range(self.taken):
                    self.pool.release(self.r.slots[i].buf_idx)
            free(self.r.slots)

    # Python views, for tests and the slow path.
    @property
    def head(self):
        return self.r.head

    @property
    def tail(self):
        return self.r.tail

    @property
    def hwcur(self):
        return self.r.hwcur

    @property
    def num_slots(self):
        return self.r.num_slots

    def space(self):
        return ring_space(&self.r)

    def pending(self):
        return ring_pending(&self.r)

    def slot(self, uint32_t i):
        """(buf_idx, len, flags, ts) of slot i."""
        if i >= self.r.num_slots:
            raise IndexError(i)
        cdef Slot* s = &self.r.slots[i]
        return (s.buf_idx, s.len, s.flags, s.ts)

    def frame(self, uint32_t i):
        """The bytes in slot i."""
        if i >= self.r.num_slots:
            raise IndexError(i)
        cdef Slot* s = &self.r.slots[i]
        return (<char*>slot_buf(&self.r, s))[:s.len]
