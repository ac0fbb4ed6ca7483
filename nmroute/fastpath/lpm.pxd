# Route lookup tables: IPv4 and IPv6 longest-prefix match, and the
# neighbour (IP -> MAC) table that `route` reads and `neighbor` may fill.
# Built once at configure() time (lpm.pyx); looked up per packet with the
# inline functions below, which touch no Python object.
#
# IPv4 (DIR-24-8, as DPDK's rte_lpm): tbl24 has one uint32 entry per /24.
# An entry is 0 (no route), a next-hop index + 1, or LPM4_EXT | g: the /24
# holds longer prefixes and its 256 addresses are looked up in the second
# level, group g of tbl8 (256 entries each, same encoding without EXT).
# Two memory reads at most per lookup.
#
# IPv6: one open-addressing hash table keyed by (prefix, length), probed
# once per prefix length that the table holds, longest first. The cost is
# one probe per distinct length (routing tables use few: /64, /48, /128...).
from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef enum:
    LPM4_EXT = 0x80000000
    NEIGH_FREE = 0
    NEIGH_LEARNED = 1
    NEIGH_STATIC = 2


ctypedef struct Lpm4:
    uint32_t* tbl24          # 1 << 24 entries
    uint32_t* tbl8           # n_tbl8 groups of 256 entries
    uint32_t n_tbl8
    uint32_t cap_tbl8


ctypedef struct Lpm6Entry:
    uint64_t hi
    uint64_t lo
    uint32_t nh1             # next-hop index + 1; 0: a free slot
    uint32_t plen


ctypedef struct Lpm6:
    Lpm6Entry* e
    uint32_t mask            # slots - 1 (a power of two)
    uint32_t n_lens
    uint8_t lens[129]        # the prefix lengths present, longest first


ctypedef struct NeighEntry:
    uint8_t ip[16]           # IPv6, or IPv4 as ::ffff:a.b.c.d
    uint8_t mac[6]
    uint8_t state            # NEIGH_FREE / LEARNED / STATIC
    uint8_t _pad


ctypedef struct NeighTable:
    NeighEntry* e
    uint32_t mask            # slots - 1 (a power of two)
    uint32_t n               # entries in use
    uint32_t max             # at most this many (the table stays <= 1/2 full)


cdef inline uint64_t rd64(const uint8_t* p) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(8):
        v = (v << 8) | p[i]
    return v


cdef inline uint32_t lpm4_lookup(const Lpm4* t, uint32_t a) noexcept nogil:
    """0 when no prefix matches a, else the next-hop index + 1."""
    cdef uint32_t e = t.tbl24[a >> 8]
    if e & LPM4_EXT:
        e = t.tbl8[((e & ~LPM4_EXT) << 8) | (a & 0xFF)]
    return e


cdef inline uint32_t mix6(uint64_t hi, uint64_t lo, uint32_t plen) noexcept nogil:
    cdef uint64_t h = hi * <uint64_t>0x9E3779B97F4A7C15 ^ lo * <uint64_t>0xC2B2AE3D27D4EB4F
    h ^= (<uint64_t>plen + 1) * <uint64_t>0x165667B19E3779F9
    h ^= h >> 29
    h *= <uint64_t>0xBF58476D1CE4E5B9
    return <uint32_t>(h >> 32)


cdef inline uint32_t lpm6_lookup(const Lpm6* t, const uint8_t* addr) noexcept nogil:
    """0 when no prefix matches the 16 bytes at addr, else next-hop index + 1."""
    cdef uint64_t hi = rd64(addr), lo = rd64(addr + 8), mh, ml
    cdef uint32_t i, plen, s
    cdef const Lpm6Entry* e
    for i in range(t.n_lens):
        plen = t.lens[i]
        if plen == 0:
            mh = 0
            ml = 0
        elif plen <= 64:
            mh = hi & (<uint64_t>0xFFFFFFFFFFFFFFFF << (64 - plen))
            ml = 0
        else:
            mh = hi
            ml = lo & (<uint64_t>0xFFFFFFFFFFFFFFFF << (128 - plen))
        s = mix6(mh, ml, plen) & t.mask
        while True:
            e = &t.e[s]
            if e.nh1 == 0:
                break
            if e.hi == mh and e.lo == ml and e.plen == plen:
                return e.nh1
            s = (s + 1) & t.mask
    return 0


cdef inline void neigh_key4(uint8_t* key, const uint8_t* ip4) noexcept nogil:
    """The 16-byte key of an IPv4 address: ::ffff:a.b.c.d."""
    cdef int i
    for i in range(10):
        key[i] = 0
    key[10] = 0xFF
    key[11] = 0xFF
    for i in range(4):
        key[12 + i] = ip4[i]


cdef inline uint32_t neigh_hash(const uint8_t* key) noexcept nogil:
    return mix6(rd64(key), rd64(key + 8), 0)


cdef inline bint key_eq(const uint8_t* a, const uint8_t* b) noexcept nogil:
    cdef int i
    for i in range(16):
        if a[i] != b[i]:
            return False
    return True


cdef inline NeighEntry* neigh_find(NeighTable* t, const uint8_t* key) noexcept nogil:
    """The entry of key (16 bytes), or NULL. Entries never move: a pointer
    stays valid as long as the table, and a learned MAC updates in place."""
    cdef uint32_t s = neigh_hash(key) & t.mask
    cdef NeighEntry* e
    while True:
        e = &t.e[s]
        if e.state == NEIGH_FREE:
            return NULL
        if key_eq(e.ip, key):
            return e
        s = (s + 1) & t.mask


cdef inline int neigh_learn(NeighTable* t, const uint8_t* key, const uint8_t* mac,
                            bint create) noexcept nogil:
    """Set key's MAC unless the entry is static. A missing entry is added
    only when create. Returns 1 when added, 0 when updated or left alone,
    -1 when the table is full."""
    cdef uint32_t s = neigh_hash(key) & t.mask
    cdef NeighEntry* e
    cdef int i
    while True:
        e = &t.e[s]
        if e.state == NEIGH_FREE:
            break
        if key_eq(e.ip, key):
            if e.state == NEIGH_LEARNED:
                for i in range(6):
                    e.mac[i] = mac[i]
            return 0
        s = (s + 1) & t.mask
    if not create:
        return 0
    if t.n >= t.max:
        return -1
    for i in range(16):
        e.ip[i] = key[i]
    for i in range(6):
        e.mac[i] = mac[i]
    e.state = NEIGH_LEARNED
    t.n += 1
    return 1


cdef class Lpm4Table:
    cdef Lpm4 t


cdef class Lpm6Table:
    cdef Lpm6 t


cdef class NeighborTable:
    cdef NeighTable t
    cdef readonly str name
