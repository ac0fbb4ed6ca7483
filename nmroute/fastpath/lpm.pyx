"""Route lookup tables (see lpm.pxd): building them, in C, from arrays of
prefixes that the `route` element parsed; a Python lookup for tests; and
the neighbour table that `route` and `neighbor` share by name."""
import ipaddress

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, realloc


cdef int lpm4_fill(Lpm4* t, const uint32_t* addrs, const uint8_t* plens, const uint32_t* nhs,
                   Py_ssize_t n, uint32_t* order) noexcept nogil:
    """Insert n routes, shortest prefixes first (a counting sort by length
    into order), so that each longer prefix overwrites what it covers.
    Returns -1 when the second level cannot grow."""
    cdef uint32_t start[34]
    cdef Py_ssize_t i, k
    cdef uint32_t a, v, first, cnt, j, e, g, L
    cdef uint32_t* grp
    for L in range(34):
        start[L] = 0
    for i in range(n):
        start[plens[i] + 1] += 1
    for L in range(1, 34):
        start[L] += start[L - 1]
    for i in range(n):
        order[start[plens[i]]] = <uint32_t>i
        start[plens[i]] += 1
    for k in range(n):
        i = order[k]
        L = plens[i]
        a = addrs[i] & (<uint32_t>0xFFFFFFFF << (32 - L) if L else 0)
        v = nhs[i] + 1
        if L <= 24:
            first = a >> 8
            cnt = <uint32_t>1 << (24 - L)
            for j in range(first, first + cnt):
                t.tbl24[j] = v       # nothing longer is in yet
            continue
        e = t.tbl24[a >> 8]
        if not (e & LPM4_EXT):
            if t.n_tbl8 == t.cap_tbl8:
                g = t.cap_tbl8 * 2 if t.cap_tbl8 else 64
                grp = <uint32_t*>realloc(t.tbl8, <size_t>g * 256 * sizeof(uint32_t))
                if grp == NULL:
                    return -1
                t.tbl8 = grp
                t.cap_tbl8 = g
            g = t.n_tbl8
            t.n_tbl8 += 1
            for j in range(256):            # the group starts as the /24 was
                t.tbl8[(g << 8) | j] = e
            e = LPM4_EXT | g
            t.tbl24[a >> 8] = e
        grp = t.tbl8 + ((e & ~LPM4_EXT) << 8)
        first = a & 0xFF
        cnt = <uint32_t>1 << (32 - L)
        for j in range(first, first + cnt):
            grp[j] = v
    return 0


cdef void lpm6_fill(Lpm6* t, const uint64_t* his, const uint64_t* los, const uint8_t* plens,
                    const uint32_t* nhs, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint64_t mh, ml
    cdef uint32_t L, s
    cdef Lpm6Entry* e
    for i in range(n):
        L = plens[i]
        mh = his[i]
        ml = los[i]
        if L == 0:
            mh = 0
            ml = 0
        elif L <= 64:
            mh &= <uint64_t>0xFFFFFFFFFFFFFFFF << (64 - L)
            ml = 0
        else:
            ml &= <uint64_t>0xFFFFFFFFFFFFFFFF << (128 - L)
        s = mix6(mh, ml, L) & t.mask
        while True:
            e = &t.e[s]
            if e.nh1 == 0 or (e.hi == mh and e.lo == ml and e.plen == L):
                break
            s = (s + 1) & t.mask
        e.hi = mh
        e.lo = ml
        e.plen = L
        e.nh1 = nhs[i] + 1


cdef class Lpm4Table:
    """IPv4 DIR-24-8. build() takes parallel arrays: addresses (array 'I'),
    prefix lengths (bytes) and next-hop indexes (array 'I'). A later entry
    for the same prefix wins. Build once: a second build() adds routes."""

    def __cinit__(self):
        self.t.tbl24 = <uint32_t*>calloc(1 << 24, sizeof(uint32_t))
        if self.t.tbl24 == NULL:
            raise MemoryError("no memory for an IPv4 route table (64 MiB)")

    def __dealloc__(self):
        free(self.t.tbl24)
        free(self.t.tbl8)

    def build(self, const uint32_t[:] addrs, const uint8_t[:] plens, const uint32_t[:] nhs):
        cdef Py_ssize_t n = addrs.shape[0], i
        cdef uint32_t* order
        cdef int rc
        if plens.shape[0] != n or nhs.shape[0] != n:
            raise ValueError("build: arrays of different lengths")
        for i in range(n):
            if plens[i] > 32 or nhs[i] >= LPM4_EXT - 1:
                raise ValueError(f"build: bad route {i}")
        if n == 0:
            return
        order = <uint32_t*>calloc(<uint32_t>n, sizeof(uint32_t))
        if order == NULL:
            raise MemoryError()
        with nogil:
            rc = lpm4_fill(&self.t, &addrs[0], &plens[0], &nhs[0], n, order)
        free(order)
        if rc:
            raise MemoryError("no memory for the IPv4 route table's second level")

    def lookup(self, addr):
        """The next-hop index for an address (int or text), or None."""
        cdef uint32_t v = lpm4_lookup(&self.t, int(ipaddress.IPv4Address(addr)))
        return v - 1 if v else None

    @property
    def groups(self):
        """Second-level groups in use."""
        return self.t.n_tbl8


cdef class Lpm6Table:
    """IPv6: per-length hash probes, longest first. build() takes parallel
    arrays: high and low 64 bits of the prefixes (array 'Q'), lengths
    (bytes) and next-hop indexes (array 'I'). A later entry for the same
    prefix wins. Build once: a second build() replaces the table."""

    def __dealloc__(self):
        free(self.t.e)

    def build(self, const uint64_t[:] his, const uint64_t[:] los, const uint8_t[:] plens,
              const uint32_t[:] nhs):
        cdef Py_ssize_t n = his.shape[0], i
        cdef uint32_t slots = 16
        cdef bint seen[129]
        if los.shape[0] != n or plens.shape[0] != n or nhs.shape[0] != n:
            raise ValueError("build: arrays of different lengths")
        for i in range(129):
            seen[i] = False
        for i in range(n):
            if plens[i] > 128 or nhs[i] >= 0xFFFFFFFF:
                raise ValueError(f"build: bad route {i}")
            seen[plens[i]] = True
        while slots < 2 * n:
            slots *= 2
        free(self.t.e)
        self.t.e = <Lpm6Entry*>calloc(slots, sizeof(Lpm6Entry))
        if self.t.e == NULL:
            raise MemoryError("no memory for an IPv6 route table")
        self.t.mask = slots - 1
        if n:
            with nogil:
                lpm6_fill(&self.t, &his[0], &los[0], &plens[0], &nhs[0], n)
        self.t.n_lens = 0
        for i in range(128, -1, -1):
            if seen[i]:
                self.t.lens[self.t.n_lens] = <uint8_t>i
                self.t.n_lens += 1

    def lookup(self, addr):
        """The next-hop index for an address (int or text), or None."""
        cdef bytes b = ipaddress.IPv6Address(addr).packed
        cdef uint32_t v
        if self.t.e == NULL:
            return None
        v = lpm6_lookup(&self.t, <const uint8_t*><char*>b)
        return v - 1 if v else None

    @property
    def lengths(self):
        """The prefix lengths probed, longest first."""
        return [self.t.lens[i] for i in range(self.t.n_lens)]


def neigh_key(ip) -> bytes:
    """The table's 16-byte key of an address (IPv4 as ::ffff:a.b.c.d)."""
    a = ipaddress.ip_address(ip)
    return a.packed if a.version == 6 else b"\0" * 10 + b"\xff\xff" + a.packed


cdef class NeighborTable:
    """IP -> MAC, static entries and learned ones. Open addressing, never
    more than half full; entries are never removed (no ageing), so a
    pointer to one stays valid while the table lives."""

    def __cinit__(self, str name="", uint32_t max_entries=4096):
        cdef uint32_t slots = 16
        while slots < 2 * max_entries:
            slots *= 2
        self.t.e = <NeighEntry*>calloc(slots, sizeof(NeighEntry))
        if self.t.e == NULL:
            raise MemoryError("no memory for a neighbour table")
        self.t.mask = slots - 1
        self.t.max = max_entries
        self.name = name

    def __dealloc__(self):
        free(self.t.e)

    def add_static(self, ip, bytes mac):
        """Add or overwrite ip's entry as static (never changed by learning)."""
        cdef bytes key = neigh_key(ip)
        cdef const uint8_t* k = <const uint8_t*><char*>key
        cdef NeighEntry* e
        cdef int i
        if len(mac) != 6:
            raise ValueError("a MAC is 6 bytes")
        if neigh_learn(&self.t, k, <const uint8_t*><char*>mac, True) < 0:
            raise ValueError(f"neighbour table full ({self.t.max} entries)")
        e = neigh_find(&self.t, k)
        for i in range(6):
            e.mac[i] = mac[i]
        e.state = NEIGH_STATIC

    def get(self, ip):
        """(mac bytes, 'static' or 'learned') of ip, or None."""
        cdef bytes key = neigh_key(ip)
        cdef NeighEntry* e = neigh_find(&self.t, <const uint8_t*><char*>key)
        if e == NULL:
            return None
        return (bytes(e.mac[:6]), "static" if e.state == NEIGH_STATIC else "learned")

    def __len__(self):
        return self.t.n


def neighbor_table(tables, str name, uint32_t max_entries):
    """The run's neighbour table called name (lib/tables.py), made on first
    use; every element naming it must agree on its size."""
    return tables.get(
        "neighbor", name, lambda: NeighborTable(name, max_entries),
        lambda t: None if (<NeighborTable>t).t.max == max_entries else
        f"made with max_neighbors {(<NeighborTable>t).t.max}, not {max_entries}")
