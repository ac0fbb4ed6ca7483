# Internet checksums (RFC 1071) and their incremental update (RFC 1624).
# Values are as read from the wire: big-endian words as host integers (see
# parse.rd16/rd32), and the checksum field likewise.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t


cdef inline uint16_t csum_fold(uint64_t s) noexcept nogil:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return <uint16_t>s


cdef inline uint64_t csum_add(const uint8_t* p, uint32_t n, uint64_t s) noexcept nogil:
    """Add n bytes (an odd last byte padded with zero) to a running sum."""
    cdef uint32_t i
    for i in range(0, n & ~1u, 2):
        s += (<uint32_t>p[i] << 8) | p[i + 1]
    if n & 1:
        s += <uint32_t>p[n - 1] << 8
    return s


cdef inline uint16_t csum(const uint8_t* p, uint32_t n, uint64_t s) noexcept nogil:
    """The checksum of n bytes plus a starting sum (a pseudo-header's)."""
    return ~csum_fold(csum_add(p, n, s)) & 0xFFFF


cdef inline uint16_t csum_update16(uint16_t hc, uint16_t old, uint16_t new) noexcept nogil:
    """RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')."""
    cdef uint32_t s = (~hc & 0xFFFF) + (~old & 0xFFFF) + new
    return ~csum_fold(s) & 0xFFFF


cdef inline uint16_t csum_update32(uint16_t hc, uint32_t old, uint32_t new) noexcept nogil:
    return csum_update16(csum_update16(hc, old >> 16, new >> 16), old & 0xFFFF, new & 0xFFFF)
