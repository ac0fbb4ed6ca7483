# distutils: libraries = xdp bpf
"""What the xdp: ports of one run share: one AF_XDP UMEM per pool, and
the set of open ports (one socket per queue; the last port on an interface
detaches the program). A run's Tables holds one XdpShared (kind "xdp")."""
from libc.stdint cimport uint64_t
from libc.string cimport memset

from nmroute.fastpath.includes.xsk cimport (
    xsk_umem_config, xsk_umem__create, xsk_umem__delete)
from nmroute.fastpath.pool cimport Pool

import os


cdef class Umem:
    """A pool's region registered as an AF_XDP UMEM: chunk i is buffer i (at
    offset POOL_HEADROOM, where copy mode puts the frame). One per pool,
    shared by every xdp: port on it, so that forwarding between them swaps
    buffer indexes."""

    def __cinit__(self, Pool pool):
        cdef xsk_umem_config cfg
        cdef size_t addr
        cdef int err
        self.pool = pool
        addr, size = pool.region_address()
        memset(&cfg, 0, sizeof(cfg))
        cfg.fill_size = FILL_COMP_SIZE
        cfg.comp_size = FILL_COMP_SIZE
        cfg.frame_size = pool.buf_size
        cfg.frame_headroom = 0
        err = xsk_umem__create(&self.umem, <void*>addr, <uint64_t>size,
                               &self.fill0, &self.comp0, &cfg)
        if err:
            self.umem = NULL
            raise OSError(-err, os.strerror(-err))

    def __dealloc__(self):
        if self.umem != NULL:
            xsk_umem__delete(self.umem)


cdef class XdpShared:
    def __cinit__(self):
        self.umems = {}
        self.open_ports = set()

    cdef Umem take(self, Pool pool):
        """The pool's UMEM (a new one if it has none, or its old one's
        interface is gone), with one more user."""
        cdef Umem u = self.umems.get(id(pool))
        if u is None or u.dead:
            u = Umem(pool)
            self.umems[id(pool)] = u
        u.users += 1
        return u

    cdef void give_back(self, Umem u):
        """One user less; the last one deletes the UMEM."""
        u.users -= 1
        if u.users == 0 and self.umems.get(id(u.pool)) is u:
            del self.umems[id(u.pool)]
