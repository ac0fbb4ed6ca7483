# C library and system calls the fast path uses that Cython's libc/posix
# declarations lack. Only what is used.
from libc.stdint cimport uint64_t

cdef extern from "<sys/mman.h>" nogil:
    int memfd_create(const char* name, unsigned int flags)
    enum: MFD_CLOEXEC

cdef extern from "<sys/prctl.h>" nogil:
    enum: PR_SET_TIMERSLACK
    int prctl(int option, ...)

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    enum: CLOCK_MONOTONIC
    enum: CLOCK_REALTIME
    int clock_gettime(int clk, timespec* ts)
    int nanosleep(const timespec* req, timespec* rem)


cdef inline uint64_t now_ns(int clk) noexcept nogil:
    cdef timespec ts
    clock_gettime(clk, &ts)
    return <uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec


cdef inline void sleep_ns(long ns) noexcept nogil:
    cdef timespec ts
    ts.tv_sec = ns // 1000000000
    ts.tv_nsec = ns % 1000000000
    nanosleep(&ts, NULL)
