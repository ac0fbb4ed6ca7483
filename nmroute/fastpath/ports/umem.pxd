from nmroute.fastpath.includes.xsk cimport xsk_umem, xsk_ring_prod, xsk_ring_cons
from nmroute.fastpath.pool cimport Pool

cdef enum:
    FILL_COMP_SIZE = 8192       # every socket's fill and completion rings


cdef class Umem:
    cdef xsk_umem* umem
    cdef xsk_ring_prod fill0     # the rings xsk_umem__create makes; the first
    cdef xsk_ring_cons comp0     # socket takes them over (libxdp copies them)
    cdef readonly Pool pool
    cdef int users
    # libxdp's first socket on a UMEM is the UMEM's own fd, which it keeps
    # open until the UMEM is deleted. Once that socket's interface is gone
    # the fd is unbound for good, and the kernel refuses to bind another
    # socket sharing it (EBADF): a port re-opening then registers the pool
    # again as a new UMEM (the same memory, so buffer indexes still mean the
    # same buffers everywhere).
    cdef bint fd_taken             # a socket took the UMEM's fd
    cdef bint dead                 # ...and its interface is gone


cdef class XdpShared:
    cdef dict umems                # id(pool) -> Umem
    cdef readonly set open_ports   # the run's xdp: ports with a socket

    cdef Umem take(self, Pool pool)
    cdef void give_back(self, Umem u)
