from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from nmroute.fastpath.pool cimport Pool

cdef enum:
    NS_BUF_CHANGED = 0x0001   # buf_idx was swapped: a backend must re-read it


# netmap's struct netmap_slot; `ts` sits where netmap keeps `ptr` and carries
# the frame's timestamp in ns (0: none), so a pcap written out keeps it.
ctypedef struct Slot:
    uint32_t buf_idx
    uint16_t len
    uint16_t flags
    uint64_t ts


# A ring of slots with netmap's head/cur/tail, as a C struct so that nogil
# code holds plain pointers to it.
#
# The user owns [head, tail): on an rx ring the frames received, on a tx ring
# the free slots. The backend owns [tail, head) and moves tail in rxsync or
# txsync; hwcur is the backend's own position (on tx, the next slot to send).
# One slot is always kept back, so head == tail means "nothing for the user".
ctypedef struct NmRing:
    Slot* slots
    uint32_t num_slots
    uint32_t mask
    uint32_t head
    uint32_t cur
    uint32_t tail
    uint32_t hwcur
    uint8_t* base        # the pool's region, for buffer addresses
    uint32_t buf_size


cdef inline uint32_t ring_next(NmRing* r, uint32_t i) noexcept nogil:
    return (i + 1) & r.mask


cdef inline uint32_t ring_space(NmRing* r) noexcept nogil:
    """rx: frames ready for the user; tx: free slots."""
    return (r.tail - r.head) & r.mask


cdef inline uint32_t ring_pending(NmRing* r) noexcept nogil:
    """tx: slots the user filled that the backend has not sent yet."""
    return (r.head - r.hwcur) & r.mask


cdef inline uint8_t* slot_buf(NmRing* r, Slot* s) noexcept nogil:
    return r.base + <size_t>s.buf_idx * r.buf_size


cdef class Ring:
    cdef NmRing r
    cdef uint32_t taken       # slots that hold a pool buffer (all, once built)
    cdef readonly Pool pool
