# Invariant checks, compiled in only by a debug build (NMROUTE_DEBUG=1 at
# build time, see setup.py); otherwise the C compiler removes them.
from libc.stdio cimport fprintf, stderr
from libc.stdlib cimport abort

cdef extern from *:
    const int NMROUTE_DEBUG


cdef inline void check(bint ok, const char* what) noexcept nogil:
    if NMROUTE_DEBUG and not ok:
        fprintf(stderr, b"nmroute: invariant broken: %s\n", what)
        abort()
