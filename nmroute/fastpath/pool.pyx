"""The buffer pool: one contiguous region, fixed-size buffers, by index."""
from libc.errno cimport errno
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from posix.mman cimport mmap, munmap, PROT_READ, PROT_WRITE, MAP_SHARED, MAP_FAILED
from posix.unistd cimport close, ftruncate

from libc.stdint cimport uint32_t

from nmroute.fastpath.includes.sys cimport memfd_create, MFD_CLOEXEC

import os


cdef class Pool:
    def __cinit__(self, uint32_t n_bufs, uint32_t buf_size=2048):
        if n_bufs == 0 or buf_size < 64 or buf_size % 64:
            raise ValueError("a pool needs buffers, each a multiple of 64 bytes")
        self.fd = -1
        self.buf_size = buf_size
        self.n_bufs = n_bufs
        self.size = <size_t>n_bufs * buf_size
        self.region_size = self.size + 4096
        # memfd, so that another process can map the same buffers.
        self.fd = memfd_create(b"nmroute-pool", MFD_CLOEXEC)
        if self.fd < 0 or ftruncate(self.fd, self.region_size) != 0:
            raise OSError(errno, f"cannot create a {self.size}-byte buffer pool: "
                          f"{os.strerror(errno)}")
        cdef void* p = mmap(NULL, self.region_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                            self.fd, 0)
        if p == MAP_FAILED:
            raise MemoryError(f"cannot map a {self.size}-byte buffer pool")
        self.region = <uint8_t*>p
        self.base = self.region + POOL_HEADROOM
        self.free_stack = <uint32_t*>malloc(n_bufs * sizeof(uint32_t))
        if self.free_stack == NULL:
            raise MemoryError()
        cdef uint32_t i
        # Pushed in reverse so that alloc() hands out 0, 1, 2... in order.
        for i in range(n_bufs):
            self.free_stack[i] = n_bufs - 1 - i
        self.n_free = n_bufs

    def __dealloc__(self):
        if self.region != NULL:
            munmap(self.region, self.region_size)
        if self.fd >= 0:
            close(self.fd)
        free(self.free_stack)

    def region_address(self):
        """(address, bytes) of the mapped region whose chunk i (buf_size
        bytes from address + i * buf_size) holds buffer i at offset
        POOL_HEADROOM: what an AF_XDP UMEM is registered with."""
        return <size_t>self.region, self.size

    def take(self):
        """A free buffer index (Python side, for setting up rings)."""
        cdef uint32_t idx = self.alloc()
        if idx == POOL_NONE:
            raise MemoryError(f"buffer pool exhausted ({self.n_bufs} buffers)")
        return idx

    def give(self, uint32_t idx):
        if idx >= self.n_bufs or self.n_free >= self.n_bufs:
            raise ValueError(f"bad buffer index {idx}")
        self.release(idx)

    def read(self, uint32_t idx, uint32_t length):
        """A copy of the first `length` bytes of buffer `idx` (tests, slow path)."""
        if idx >= self.n_bufs or length > self.buf_size:
            raise IndexError(idx)
        return (<char*>self.buf(idx))[:length]

    def write(self, uint32_t idx, const unsigned char[:] data):
        """Copy `data` into buffer `idx` (tests, slow path)."""
        if idx >= self.n_bufs or <uint32_t>data.shape[0] > self.buf_size:
            raise IndexError(idx)
        if data.shape[0]:
            memcpy(self.buf(idx), &data[0], data.shape[0])
