"""balance: spreads packets over N outputs by a flow hash (ECMP, netmap's lb)."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcmp

from nmroute.errors import ParamError
from nmroute.schema import Bool, Choice, Custom, Int, Param

from nmroute.fastpath.batch cimport (
    Batch, Desc, drop_pkt, OFF_NONE, PF_IPV4, PF_IPV6, PF_FRAG, PF_L4)
from nmroute.fastpath.element cimport Element, PER_PACKET
from nmroute.fastpath.parse cimport (
    ensure_parsed, rd32, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP)

MAX_OUTPUTS = 1024


cdef inline uint32_t rotl(uint32_t x, int r) noexcept nogil:
    return (x << r) | (x >> (32 - r))


cdef inline uint32_t mix(uint32_t h, uint32_t k) noexcept nogil:
    """One murmur3_32 round: word k into state h."""
    k *= 0xCC9E2D51U
    k = rotl(k, 15)
    k *= 0x1B873593U
    h ^= k
    h = rotl(h, 13)
    return h * 5 + 0xE6546B64U


cdef inline uint32_t fmix(uint32_t h) noexcept nogil:
    h ^= h >> 16
    h *= 0x85EBCA6BU
    h ^= h >> 13
    h *= 0xC2B2AE35U
    h ^= h >> 16
    return h


cdef inline uint32_t mix_addr(uint32_t h, const uint8_t* a, uint32_t n) noexcept nogil:
    """n bytes (4 or 16) of an address, as big-endian words."""
    cdef uint32_t i = 0
    while i < n:
        h = mix(h, rd32(a + i))
        i += 4
    return h


cdef inline uint32_t flow_hash(Desc* p, uint32_t seed, bint symmetric) noexcept nogil:
    """The hash of p's flow: the 5-tuple of TCP/UDP/SCTP, the 3-tuple
    (addresses, protocol) of other IP packets and of every fragment, the
    MAC pair of anything else. Symmetric: the endpoints sorted first."""
    cdef const uint8_t* d = p.data
    cdef const uint8_t* a
    cdef const uint8_t* b
    cdef const uint8_t* t
    cdef uint32_t alen, h = seed, pa = 0, pb = 0, x
    cdef int c
    if p.pflags & (PF_IPV4 | PF_IPV6):
        if p.pflags & PF_IPV4:
            a = d + p.l3_off + 12
            alen = 4
        else:
            a = d + p.l3_off + 8
            alen = 16
        b = a + alen
        if (p.pflags & PF_L4 and not p.pflags & PF_FRAG and p.l4_off != OFF_NONE
                and (p.l4_proto == IPPROTO_TCP or p.l4_proto == IPPROTO_UDP
                     or p.l4_proto == IPPROTO_SCTP)):
            pa = (<uint32_t>d[p.l4_off] << 8) | d[p.l4_off + 1]
            pb = (<uint32_t>d[p.l4_off + 2] << 8) | d[p.l4_off + 3]
        if symmetric:
            c = memcmp(a, b, alen)
            if c > 0 or (c == 0 and pa > pb):
                t = a
                a = b
                b = t
                x = pa
                pa = pb
                pb = x
        h = mix_addr(h, a, alen)
        h = mix_addr(h, b, alen)
        h = mix(h, (pa << 16) | pb)
        h = mix(h, p.l4_proto)
        return fmix(h ^ (2 * alen + 5))
    # Not IP: the MAC pair (destination, source).
    a = d
    b = d + 6
    if symmetric and memcmp(a, b, 6) > 0:
        t = a
        a = b
        b = t
    h = mix(h, rd32(a))
    h = mix(h, (<uint32_t>a[4] << 24) | (<uint32_t>a[5] << 16)
            | (<uint32_t>b[0] << 8) | b[1])
    h = mix(h, rd32(b + 2))
    return fmix(h ^ 12)


def _names(value):
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_OUTPUTS:
        raise ParamError(f"expected a list of 1 to {MAX_OUTPUTS} output names, got {value!r}")
    out = []
    for v in value:
        if not isinstance(v, (str, int)) or isinstance(v, bool) or not str(v):
            raise ParamError(f"expected output names (strings), got {v!r}")
        if str(v) in out:
            raise ParamError(f"output name {str(v)!r} given twice")
        out.append(str(v))
    return tuple(out)


cdef class Balance(Element):
    """Spreads packets over N outputs by a hash of their flow, so that every
    packet of a flow takes the same output (ECMP; netmap's `lb`). The flow
    is the 5-tuple (addresses, protocol, ports) of TCP, UDP and SCTP; the
    3-tuple (addresses, protocol) of other IP packets and of every IP
    fragment, first or not, so that the fragments of a datagram stay
    together; the MAC pair of non-IP frames (ARP included). VLAN tags are
    not part of the flow. With `symmetric: true` the two endpoints are
    sorted before hashing, so both directions of a flow take the same
    output. The hash (murmur3 rounds over the tuple's 32-bit words, seeded
    with `seed`) is stored in the packet's `hash`; the output is
    (hash * N) >> 32. With `by: mark` the output is the packet's mark
    modulo N instead (see `mark`), and nothing is parsed.

    Outputs:
        0: the flows whose hash falls in the first N-th (or `names[0]`)
        1: the second N-th, and so on up to N-1 (or the other `names`)
    Params:
        outputs: N, the number of outputs, named "0".."N-1"
        names: the outputs' names instead (give `outputs` or `names`)
        symmetric: both directions of a flow take the same output
        seed: mixed into the hash (use different seeds in stacked balancers)
        by: "flow" (the hash) or "mark" (mark modulo N)
    Counters:
        (none: the executor counts each output)
    Drops:
        malformed:eth, malformed:vlan, malformed:arp, malformed:ipv4, malformed:ipv6,
        malformed:l4: headers that lie about their lengths (by: flow only)
    Example:
        ports:
          src: {port: gen, count: 1000, src: 198.18.0.1-198.18.0.200, sport: 1000-1010}
          a: sink
          b: sink
        elements: {lb: {type: balance, outputs: 2, symmetric: true}}
        links: ["src -> lb -> a", "lb [1] -> b"]
    """
    TYPE = "balance"
    SUMMARY = "spread flows over N outputs by a 5-tuple hash (ECMP)"
    OUTPUTS = ("0", "1")
    PARAMS = (
        Param("outputs", Int(1, MAX_OUTPUTS), "number of outputs, named 0..N-1", None),
        Param("names", Custom("a list of output names", _names), "output names", None),
        Param("symmetric", Bool(), "both directions of a flow take the same output", False),
        Param("seed", Int(0, 0xFFFFFFFF), "hash seed", 0),
        Param("by", Choice("flow", "mark"), "what picks the output", "flow"),
    )

    cdef uint32_t n
    cdef uint32_t seed
    cdef bint symmetric
    cdef bint by_mark

    @classmethod
    def check(cls, params):
        if (params.get("outputs") is None) == (params.get("names") is None):
            return ["give either `outputs: N` or `names: [...]`"]
        return []

    @classmethod
    def outputs(cls, params):
        if params.get("names"):
            return tuple(params["names"])
        if params.get("outputs"):
            return tuple(str(i) for i in range(params["outputs"]))
        return cls.OUTPUTS

    def configure(self, outputs=None, names=None, symmetric=False, seed=0, by="flow"):
        self.n = len(self.output_names)
        self.seed = seed
        self.symmetric = symmetric
        self.by_mark = by == "mark"

    cdef int process(self, Batch* b) noexcept nogil:
        cdef uint32_t i, n = self.n, seed = self.seed
        cdef bint sym = self.symmetric
        cdef int r
        cdef Desc* p
        if self.by_mark:
            for i in range(b.n):
                b.d[i].out = <uint16_t>(b.d[i].mark % n)
            return PER_PACKET
        for i in range(b.n):
            p = &b.d[i]
            r = ensure_parsed(p)
            if r:
                drop_pkt(p, <uint16_t>r)
                continue
            p.hash = flow_hash(p, seed, sym)
            p.out = <uint16_t>((<uint64_t>p.hash * n) >> 32)
        return PER_PACKET
