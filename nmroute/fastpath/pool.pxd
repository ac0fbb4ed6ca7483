from libc.stdint cimport uint8_t, uint32_t

cdef enum:
    POOL_NONE = 0xFFFFFFFF   # alloc() on an empty pool
    # Buffer 0 starts this far into the mapped region, so that buffer i is
    # exactly where AF_XDP (copy mode) puts a frame's data in UMEM chunk i:
    # the region is the xdp: ports' UMEM, chunks of buf_size bytes, and the
    # kernel leaves XDP_PACKET_HEADROOM (256) in front of the data.
    POOL_HEADROOM = 256


cdef class Pool:
    """Fixed-size buffers in one memfd-backed region, addressed by index.

    Every ring slot owns one buffer; the free stack holds the spares used for
    copies (tee) and for swaps with buffers of another pool.
    """
    cdef uint8_t* base        # buffer 0
    cdef uint8_t* region      # the mapping: page-aligned, POOL_HEADROOM before base
    cdef readonly size_t size         # n_bufs * buf_size
    cdef size_t region_size   # size plus one page (the last buffer's overhang)
    cdef int fd
    cdef readonly uint32_t buf_size
    cdef readonly uint32_t n_bufs
    cdef uint32_t* free_stack
    cdef readonly uint32_t n_free

    cdef inline uint8_t* buf(self, uint32_t idx) noexcept nogil:
        return self.base + <size_t>idx * self.buf_size

    cdef inline uint32_t alloc(self) noexcept nogil:
        if self.n_free == 0:
            return POOL_NONE
        self.n_free -= 1
        return self.free_stack[self.n_free]

    cdef inline void release(self, uint32_t idx) noexcept nogil:
        self.free_stack[self.n_free] = idx
        self.n_free += 1
