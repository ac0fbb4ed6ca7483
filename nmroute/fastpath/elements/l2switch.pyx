"""l2switch: a learning Ethernet switch (VALE's learning bridge)."""
cimport cython
from libc.stdint cimport int16_t, int32_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free

from nmroute.errors import ParamError
from nmroute.schema import NAME_RE, Choice, Custom, Float, Int, Param

from nmroute.fastpath.batch cimport Batch, Desc, drop_pkt
from nmroute.fastpath.drops cimport DROP_DROP, DROP_MALFORMED_ETH, DROP_SAME_PORT
from nmroute.fastpath.element cimport Element, PER_PACKET
from nmroute.fastpath.includes.sys cimport now_ns, CLOCK_MONOTONIC


MAX_PORTS = 256
MAX_PORT_ID = 4095

cdef enum:
    ETH_HLEN = 14
    SWEEP = 64               # table slots the ageing sweep looks at per batch
    C_LEARNED = 0
    C_AGED = 1
    C_FLOODED = 2
    C_TABLE_FULL = 3
    C_MOVED = 4

cdef uint64_t USED = 1ULL << 48     # Entry.key: the MAC | USED; 0 is a free slot


ctypedef struct Entry:
    uint64_t key
    uint64_t seen            # clock (ns) when the MAC last sent
    uint32_t port            # the switch port it was seen on


cdef inline uint64_t mac48(const uint8_t* m) noexcept nogil:
    return ((<uint64_t>m[0] << 40) | (<uint64_t>m[1] << 32) | (<uint64_t>m[2] << 24)
            | (<uint64_t>m[3] << 16) | (<uint64_t>m[4] << 8) | m[5])


cdef inline uint32_t home(uint64_t key, uint32_t mask) noexcept nogil:
    key ^= key >> 33
    key *= 0xFF51AFD7ED558CCDULL
    key ^= key >> 33
    return <uint32_t>key & mask


def _port_names(value):
    if not isinstance(value, list) or not 2 <= len(value) <= MAX_PORTS:
        raise ParamError(f"expected a list of 2 to {MAX_PORTS} switch port names, got {value!r}")
    out = []
    for v in value:
        if not isinstance(v, str) or not NAME_RE.fullmatch(v):
            raise ParamError(f"expected port names like p0 (letters, digits, _ and -), got {v!r}")
        if v in out:
            raise ParamError(f"port name {v!r} given twice")
        out.append(v)
    return tuple(out)


def _port_ids(value):
    if not isinstance(value, list) or not value:
        raise ParamError(f"expected a list of input port indexes, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_PORT_ID:
            raise ParamError(f"expected input port indexes 0..{MAX_PORT_ID}, got {v!r}")
        if v in out:
            raise ParamError(f"input port index {v} given twice")
        out.append(v)
    return tuple(out)


@cython.final
cdef class L2Switch(Element):
    """A learning Ethernet switch, as VALE's learning bridge: it learns
    which switch port each source MAC address is on, sends a unicast frame
    to the port its destination was learned on, floods the others, and
    never sends a frame back out the port it came in on.

    Which port a frame came in on: an element has one input, so the switch
    reads the frame's input port index (the nmroute port it entered from,
    numbered in the order ports are declared in the YAML `ports:` section,
    across the pipelines run together). `port_ids[i]` is the index of the
    input port of switch port `ports[i]`; by default 0, 1, ... : declare the
    switch's input ports first, in the order of `ports`. A frame from any
    other input port is dropped (reason drop).

    Flooding: an element sends a packet to one output, so for each switch
    port P there is an output `flood.P` that carries the frames to flood
    that came in on P (broadcast, multicast, unknown unicast). Wire it to
    every other port's transmit side: with two ports straight to the other
    port, with more through a chain of tees (see pipelines/l2bridge.yaml).

    Learning: source MACs that are unicast, in a bounded table of `size`
    entries; an entry not refreshed for `ageing` seconds is removed, by a
    sweep of part of the table at each batch and when it is looked up. A
    MAC that shows up on another port moves there. The clock is read once
    per batch: the monotonic clock, or with `clock: packet` the latest
    packet timestamp seen (replaying a capture ages as the capture did;
    frames without a timestamp do not move that clock).

    VLAN tags are not looked at: all frames share one learning domain.

    Outputs:
        PORT: frames for switch port PORT (one output per name in `ports`)
        flood.PORT: frames to flood that came in on PORT
    Params:
        ports: the switch ports' names, 2 or more
        port_ids: input port index of each switch port (default 0, 1, ...)
        size: most MAC addresses learned at a time
        ageing: seconds a learned MAC stays without sending; 0: forever
        clock: "monotonic" or "packet" (packet timestamps)
    Counters:
        learned: MACs entered in the table (also one re-learned after ageing)
        aged: entries removed after `ageing` seconds
        flooded: frames sent to a flood output
        table-full: frames whose source could not be learned: table full
        moved: learned MACs seen again on another port
    Drops:
        same-port: destination learned on the port the frame came in on
        malformed:eth: shorter than an Ethernet header
        drop: came in on an input port that is no switch port (see port_ids)
    Example:
        ports:
          a_in: {port: gen, count: 100, src_mac: "02:00:00:00:00:0a", dst_mac: "02:00:00:00:00:0b"}
          b_in: {port: gen, count: 100, src_mac: "02:00:00:00:00:0b", dst_mac: "02:00:00:00:00:0a"}
          a_out: sink
          b_out: sink
        elements: {sw: {type: l2switch, ports: [a, b]}}
        links:
          - a_in -> sw -> a_out
          - b_in -> sw
          - sw [b] -> b_out
          - sw [flood.a] -> b_out
          - sw [flood.b] -> a_out
    """
    TYPE = "l2switch"
    SUMMARY = "learning Ethernet switch: learn source MACs, forward or flood"
    OUTPUTS = ("PORT", "flood.PORT")
    PARAMS = (
        Param("ports", Custom("a list of switch port names", _port_names),
              "switch port names"),
        Param("port_ids", Custom("a list of input port indexes", _port_ids),
              "input port index of each switch port", None),
        Param("size", Int(1, 1 << 22), "most MAC addresses learned", 4096),
        Param("ageing", Float(0, 1e6), "seconds before an idle MAC is forgotten", 300),
        Param("clock", Choice("monotonic", "packet"), "the clock ageing uses", "monotonic"),
    )
    COUNTERS = ("learned", "aged", "flooded", "table-full", "moved")

    cdef Entry* table
    cdef uint32_t mask          # table slots - 1 (a power of two, >= 2 * size)
    cdef uint32_t live          # entries in use
    cdef uint32_t size
    cdef uint32_t cursor        # next slot the sweep looks at
    cdef uint32_t n_ports
    cdef int16_t* in_map        # input port index -> switch port, -1: none
    cdef uint32_t in_map_len
    cdef uint64_t ageing_ns     # 0: never
    cdef uint64_t now
    cdef bint packet_clock

    @classmethod
    def check(cls, params):
        ports, ids = params.get("ports"), params.get("port_ids")
        if ports and ids is not None and len(ids) != len(ports):
            return [f"port_ids has {len(ids)} entries but ports has {len(ports)}: "
                    "give one input port index per switch port"]
        return []

    @classmethod
    def outputs(cls, params):
        ports = params.get("ports")
        if not ports:
            return cls.OUTPUTS
        return tuple(ports) + tuple(f"flood.{p}" for p in ports)

    def configure(self, ports, port_ids=None, size=4096, ageing=300, clock="monotonic"):
        cdef uint32_t slots = 2
        msgs = self.check({"ports": ports, "port_ids": port_ids})
        if msgs:
            raise ValueError(msgs[0])
        ids = list(port_ids) if port_ids is not None else list(range(len(ports)))
        self.n_ports = len(ports)
        self.size = size
        while slots < 2 * size:
            slots *= 2
        self.mask = slots - 1
        self.table = <Entry*>calloc(slots, sizeof(Entry))
        self.in_map_len = max(ids) + 1
        self.in_map = <int16_t*>calloc(self.in_map_len, sizeof(int16_t))
        if self.table == NULL or self.in_map == NULL:
            raise MemoryError()
        for i in range(self.in_map_len):
            self.in_map[i] = -1
        for sw_port, pid in enumerate(ids):
            self.in_map[pid] = sw_port
        self.ageing_ns = <uint64_t>(ageing * 1e9)
        self.packet_clock = clock == "packet"

    def __dealloc__(self):
        free(self.table)
        free(self.in_map)

    # -- the table ------------------------------------------------------------

    cdef inline bint expired(self, Entry* e) noexcept nogil:
        return self.ageing_ns != 0 and self.now > e.seen and self.now - e.seen > self.ageing_ns

    cdef void remove(self, uint32_t i) noexcept nogil:
        """Free slot i, shifting back the entries of its probe run (linear
        probing needs no tombstones then)."""
        cdef uint32_t j = i, k, mask = self.mask
        cdef Entry* t = self.table
        while True:
            j = (j + 1) & mask
            if t[j].key == 0:
                break
            k = home(t[j].key, mask)
            # t[j] stays if its home lies cyclically in (i, j].
            if (i <= j and i < k <= j) or (i > j and (i < k or k <= j)):
                continue
            t[i] = t[j]
            i = j
        t[i].key = 0
        self.live -= 1

    cdef int32_t lookup(self, uint64_t key) noexcept nogil:
        """The slot holding key (an expired entry is removed), or -1."""
        cdef uint32_t i = home(key, self.mask)
        cdef Entry* t = self.table
        while t[i].key != 0:
            if t[i].key == key:
                if self.expired(&t[i]):
                    self.remove(i)
                    self.stats[C_AGED] += 1
                    return -1
                return <int32_t>i
            i = (i + 1) & self.mask
        return -1

    cdef void learn(self, uint64_t key, uint32_t port) noexcept nogil:
        cdef int32_t s = self.lookup(key)
        cdef uint32_t i
        cdef Entry* t = self.table
        if s >= 0:
            if t[s].port != port:
                t[s].port = port
                self.stats[C_MOVED] += 1
            t[s].seen = self.now
            return
        if self.live >= self.size:
            self.stats[C_TABLE_FULL] += 1
            return
        i = home(key, self.mask)
        while t[i].key != 0:
            i = (i + 1) & self.mask
        t[i].key = key
        t[i].port = port
        t[i].seen = self.now
        self.live += 1
        self.stats[C_LEARNED] += 1

    cdef void sweep(self) noexcept nogil:
        """Remove expired entries among the next SWEEP slots (the whole
        table when it is that small).

        A removal may shift a later entry back into slot i: the slot is
        then looked at again, and that second look does not count as one
        of the SWEEP slots (else each such shift would leave the last slot
        of the stretch unseen, and a small table would not be swept whole).
        A shift moves an entry into slot i or a later one, never before i,
        so no entry of the stretch is skipped; each extra look follows a
        removal, so the loop ends."""
        cdef uint32_t n = SWEEP, i = self.cursor
        cdef Entry* t = self.table
        if n > self.mask + 1:
            n = self.mask + 1
        while n:
            if t[i].key != 0 and self.expired(&t[i]):
                self.remove(i)          # may shift another entry into slot i
                self.stats[C_AGED] += 1
                if t[i].key != 0:
                    continue            # look at slot i again
            n -= 1
            i = (i + 1) & self.mask
        self.cursor = i

    # -- the fast path ------------------------------------------------------------

    cdef inline void forward(self, Desc* p) noexcept nogil:
        cdef const uint8_t* d = p.data
        cdef int32_t s
        cdef int16_t inp
        if p.len < ETH_HLEN:
            drop_pkt(p, DROP_MALFORMED_ETH)
            return
        if p.in_port >= self.in_map_len or self.in_map[p.in_port] < 0:
            drop_pkt(p, DROP_DROP)
            return
        inp = self.in_map[p.in_port]
        if not d[6] & 1:                      # a group address is no station
            self.learn(mac48(d + 6) | USED, <uint32_t>inp)
        if not d[0] & 1:
            s = self.lookup(mac48(d) | USED)
            if s >= 0:
                if self.table[s].port == <uint32_t>inp:
                    drop_pkt(p, DROP_SAME_PORT)
                else:
                    p.out = <uint16_t>self.table[s].port
                return
        p.out = <uint16_t>(self.n_ports + inp)
        self.stats[C_FLOODED] += 1

    cdef int process(self, Batch* b) noexcept nogil:
        cdef uint32_t i
        cdef uint64_t t
        if b.n == 0:
            return PER_PACKET
        if self.packet_clock:
            t = b.d[b.n - 1].ts
        else:
            t = now_ns(CLOCK_MONOTONIC)
        if t > self.now:
            self.now = t
        if self.ageing_ns:
            self.sweep()
        for i in range(b.n):
            self.forward(&b.d[i])
        return PER_PACKET
