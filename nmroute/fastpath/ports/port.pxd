from libc.stdint cimport uint16_t, uint32_t, uint64_t

from nmroute.fastpath.ring cimport Ring, NmRing

# Port counter slots (shared memory): rx, rx bytes, tx, tx bytes, then one
# slot per drop reason.
cdef enum:
    P_RX = 0
    P_RX_BYTES = 1
    P_TX = 2
    P_TX_BYTES = 3
    P_DROPS = 4


cdef class Port:
    """A port: an rx ring the backend fills, a tx ring it drains.

    A backend implements rxsync()/txsync() as the netmap module does for its
    rings. rxsync: take back the slots the user released (before head) and
    fill new ones from tail on. txsync: send [hwcur, head) and move tail on
    over what was sent. Both return what they moved. `eof`: the rx side will
    bring nothing more.
    """
    cdef readonly str name
    cdef readonly dict params
    cdef readonly object tables    # the run's shared tables (lib/tables.py)
    cdef readonly Ring rx_ring
    cdef readonly Ring tx_ring
    cdef NmRing* rx        # NULL when the port is not read from
    cdef NmRing* tx        # NULL when the port is not written to
    cdef public uint16_t port_id
    cdef public bint eof
    # Frames handed to the kernel that it has not taken yet (it was busy):
    # the executor calls txsync again even when the ring has nothing pending.
    cdef bint tx_backlog
    cdef uint64_t* ctr
    cdef uint64_t* _own_ctr

    cdef int rxsync(self) noexcept nogil
    cdef int txsync(self) noexcept nogil

    cdef inline void count_drop(self, int reason, uint64_t n) noexcept nogil:
        self.ctr[P_DROPS + reason] += n

    cdef inline int tx_done(self, uint32_t upto, uint32_t n, uint64_t nbytes) noexcept nogil:
        """txsync's end: the slots before `upto` go back to the user, and the
        n frames (nbytes bytes) sent among them are counted. Returns n."""
        self.tx.hwcur = upto
        self.tx.tail = (upto - 1) & self.tx.mask
        self.ctr[P_TX] += n
        self.ctr[P_TX_BYTES] += nbytes
        return n
