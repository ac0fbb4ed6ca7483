"""The port base class. See port.pxd for the rxsync/txsync contract."""
from libc.stdint cimport uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free

from nmroute.fastpath.lib.tables import Tables

from nmroute.fastpath.drops cimport N_DROP_REASONS
from nmroute.fastpath.ring cimport Ring

N_COUNTERS = P_DROPS + N_DROP_REASONS


cdef class Port:
    SCHEME = None
    SUMMARY = ""
    DIRECTIONS = ("rx", "tx")
    ARG = None
    PARAMS = ()

    def __cinit__(self, *args, **kwargs):
        self._own_ctr = <uint64_t*>calloc(N_COUNTERS, sizeof(uint64_t))
        self.ctr = self._own_ctr

    def __dealloc__(self):
        free(self._own_ctr)

    def __init__(self, str name, dict params=None, tables=None):
        self.name = name
        self.params = dict(params or {})
        self.tables = tables if tables is not None else Tables()

    @classmethod
    def check(cls, params, rx, tx):
        """Cross-parameter checks: a list of messages, empty when fine."""
        return []

    @classmethod
    def files(cls, params, rx, tx):
        """[(path, 'read' or 'written')]: the files this port uses, so that
        the loader can refuse one file written by one port and read or
        written by another."""
        return []

    @classmethod
    def extra_buffers(cls, params, uint32_t ring_size, bint rx, bint tx):
        """Pool buffers the port takes at open() beyond one per ring slot."""
        return 0

    def open(self, pool, uint32_t ring_size, bint rx, bint tx):
        """Create the rings the port is used with; a backend extends this and
        raises PortError(name, reason) when it cannot open."""
        if rx:
            self.rx_ring = Ring(pool, ring_size, False)
            self.rx = &self.rx_ring.r
        if tx:
            self.tx_ring = Ring(pool, ring_size, True)
            self.tx = &self.tx_ring.r

    def close(self):
        """Undo open(): flush files. Rings stay for the final counts."""

    def kernel_drops(self):
        """Frames the kernel dropped for this port before it saw them (its
        receive ring was full): not received, so not in rx == tx + drops.
        0 where the backend has no such count."""
        return 0

    def maintain(self):
        """Slow path, called about every 100 ms from the main thread while
        the pipeline runs (and at close by some backends): log link events,
        follow an interface that came back. It runs beside the executor's
        thread, so it must not change anything rxsync/txsync use."""

    def bind_counters(self, uintptr_t addr):
        """Point the counters at shared memory (a block of N_COUNTERS)."""
        cdef uint64_t* p = <uint64_t*>addr
        cdef int i
        for i in range(N_COUNTERS):
            p[i] = self.ctr[i]
        self.ctr = p

    def add_drops(self, int reason, uint64_t n, bint received=False):
        """Count n drops (slow path: frames left in a ring at shutdown);
        received: they were also taken in by this port, count them as rx."""
        self.count_drop(reason, n)
        if received:
            self.ctr[P_RX] += n

    def counters(self):
        return [self.ctr[i] for i in range(N_COUNTERS)]

    def do_rxsync(self):
        return self.rxsync()

    def do_txsync(self):
        return self.txsync()

    cdef int rxsync(self) noexcept nogil:
        return 0

    cdef int txsync(self) noexcept nogil:
        return 0
