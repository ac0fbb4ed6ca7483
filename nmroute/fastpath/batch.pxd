from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from nmroute.fastpath.ring cimport Slot

cdef enum:
    BATCH_MAX = 256
    OUT_DROP = 0xFFFF        # Desc.out of a dropped packet; Desc.drop says why
    OFF_NONE = 0xFFFF        # a header offset that classify did not find


# One packet descriptor: one cache line.
ctypedef struct Desc:
    uint8_t* data        # the frame, in a pool buffer
    uint64_t ts          # timestamp in ns, 0 if none
    Slot* slot           # the rx slot the buffer came from; NULL: a spare from the pool
    uint32_t buf_idx
    uint32_t hash        # flow hash (0 until computed)
    uint16_t len
    uint16_t in_port     # index of the input port
    uint16_t l3_off      # header offsets set by classify, or OFF_NONE
    uint16_t l4_off
    uint16_t ethertype
    uint8_t l4_proto
    uint8_t pflags
    uint16_t out         # output index chosen by the element, or OUT_DROP
    uint16_t drop        # a DropReason when out == OUT_DROP
    uint32_t mark        # user metadata (set-meta / mark)
    uint32_t _pad[3]


# A batch is a view: `n` descriptors starting at `d`.
ctypedef struct Batch:
    Desc* d
    uint32_t n


cdef inline void drop_pkt(Desc* p, uint16_t reason) noexcept nogil:
    p.out = OUT_DROP
    p.drop = reason
