from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdio cimport FILE

cdef enum:
    MAX_IFACES = 16     # pcapng interfaces whose timestamp units we track


cdef class PcapWriter:
    """Writes a classic pcap file (microsecond or nanosecond timestamps)."""
    cdef FILE* f
    cdef readonly str path
    cdef readonly bint nsec
    cdef readonly uint32_t snaplen
    cdef readonly uint64_t written
    cdef readonly uint64_t errors

    cdef int write(self, const uint8_t* data, uint32_t length, uint64_t ts_ns) noexcept nogil


cdef class PcapReader:
    """Reads pcap (µs or ns, either byte order) and pcapng from a mapped file."""
    cdef const uint8_t* data
    cdef size_t size
    cdef size_t pos
    cdef size_t start
    cdef object mm
    cdef readonly str path
    cdef readonly bint ng
    cdef bint swapped
    cdef bint nsec
    cdef readonly int linktype
    cdef readonly bint truncated
    cdef int n_ifaces
    cdef int if_linktype[MAX_IFACES]
    cdef uint64_t if_units[MAX_IFACES]   # ns per tick when >= 1...
    cdef int if_shift[MAX_IFACES]        # ...or ticks are 2^-shift s (binary resolution)

    cdef void reset(self) noexcept nogil
    cdef int _ng_block(self, const uint8_t** pkt, uint32_t* caplen, uint32_t* origlen,
                       uint64_t* ts_ns) noexcept nogil
    cdef int next(self, const uint8_t** pkt, uint32_t* caplen, uint32_t* origlen,
                  uint64_t* ts_ns) noexcept nogil
