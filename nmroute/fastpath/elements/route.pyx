"""route: IPv4/IPv6 longest-prefix match, next-hop Ethernet rewrite."""
import array

cimport cython
import ipaddress
import os
import socket

from nmroute.errors import ParamError
from nmroute.schema import NAME_RE, Custom, Int, InputPath, Name, Param, parse_mac
from nmroute.fastpath.lpm import neigh_key, neighbor_table

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset

from nmroute.fastpath.batch cimport Batch, Desc, drop_pkt, PF_IPV4, PF_IPV6
from nmroute.fastpath.drops cimport DROP_NOT_IP, DROP_NO_ROUTE, DROP_NO_NEIGHBOR
from nmroute.fastpath.element cimport Element, PER_PACKET
from nmroute.fastpath.lpm cimport (
    Lpm4, Lpm6, Lpm4Table, Lpm6Table, NeighTable, NeighEntry, NeighborTable,
    key_eq, lpm4_lookup, lpm6_lookup, neigh_find, neigh_hash, neigh_key4)
from nmroute.fastpath.csum cimport csum, csum_add
from nmroute.fastpath.parse cimport ensure_parsed, rd32, wr16, wr32


cdef inline bint is_zero(const uint8_t* a, int n) noexcept nogil:
    cdef int i
    for i in range(n):
        if a[i]:
            return False
    return True


cdef extern from *:
    void prefetch "__builtin_prefetch"(const void*) nogil

cdef enum:
    PREFETCH = 4
    PENDING = 1024        # slots of the table of recent requests
    HOLD = 64             # batches before a next hop is asked for again


def _fail(msg, *path):
    e = ParamError(msg)
    e.path = path
    return e


def _addr(text):
    """(version, int) of an address, or None."""
    try:
        if ":" in text:
            return 6, int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except (OSError, ValueError, TypeError):
        return None


def _route(prefix, via, output):
    """One route, checked: (version, network int, length, via int or None,
    output); raises ValueError with what is wrong."""
    if not isinstance(prefix, str):
        raise ValueError(f"prefix: expected a prefix like 198.18.0.0/24, got {prefix!r}")
    a, slash, n = prefix.strip().partition("/")
    va = _addr(a)
    if va is None:
        raise ValueError(f"prefix: expected a prefix like 198.18.0.0/24, got {prefix!r}")
    bits = 32 if va[0] == 4 else 128
    plen = bits
    if slash:
        plen = int(n) if n.isdigit() else -1
        if not 0 <= plen <= bits:
            raise ValueError(f"prefix: length must be 0..{bits}, got {prefix!r}")
    if va[1] & ((1 << (bits - plen)) - 1):
        raise ValueError(f"prefix: {prefix!r} has host bits set")
    vv = None
    if via is not None:
        vv = _addr(via) if isinstance(via, str) else None
        if vv is None:
            raise ValueError(f"via: expected an address, got {via!r}")
        if vv[0] != va[0]:
            raise ValueError(f"via: {via!r} is not of the prefix's IP version")
        vv = vv[1]
    if not isinstance(output, str) or not NAME_RE.fullmatch(output):
        raise ValueError(f"output: expected an output name like 'lan', got {output!r}")
    return (va[0], va[1], plen, vv, output)


class RouteSpec(tuple):
    """(version, network int, length, via int or None, output), shown as
    the line of a routes file."""

    def __repr__(self):
        v, net, plen, via, out = self
        ip = ipaddress.ip_address if v == 4 else ipaddress.IPv6Address
        text = f"{ip(net)}/{plen}"
        if via is not None:
            text += f" via {ip(via)}"
        return f"'{text} output {out}'"


def _routes(value):
    if not isinstance(value, list):
        raise ParamError("expected a list of routes like {prefix: 198.18.0.0/24, output: a}")
    out = []
    for i, r in enumerate(value):
        if not isinstance(r, dict):
            raise _fail(f"expected a route like {{prefix: 198.18.0.0/24, output: a}}, got {r!r}",
                        i)
        for k in r:
            if k not in ("prefix", "via", "output"):
                raise _fail(f"unknown key {k!r} (expected prefix, via, output)", i, k)
        for k in ("prefix", "output"):
            if k not in r:
                raise _fail(f"missing {k!r}", i)
        try:
            out.append(RouteSpec(_route(r["prefix"], r.get("via"), r["output"])))
        except ValueError as e:
            key, _, msg = str(e).partition(": ")
            raise _fail(msg, i, key) from None
    return out


def read_routes_file(path):
    """The routes of a file: one per line, 'PREFIX [via ADDR] output NAME';
    '#' starts a comment."""
    out = []
    vias = {}         # text -> (version, int): next hops repeat
    names = set()     # output names already checked
    inet_pton, AF_INET, AF_INET6 = socket.inet_pton, socket.AF_INET, socket.AF_INET6
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if "#" in line:
                line = line.partition("#")[0]
            w = line.split()
            if not w:
                continue
            if len(w) == 3 and w[1] == "output":
                via, name = None, w[2]
            elif len(w) == 5 and w[1] == "via" and w[3] == "output":
                via, name = w[2], w[4]
            elif len(w) == 5 and w[1] == "output" and w[3] == "via":
                via, name = w[4], w[2]
            else:
                raise ParamError(f"{path}:{lineno}: expected 'PREFIX [via ADDR] output NAME', "
                                 f"got {line.strip()!r}")
            a, slash, n = w[0].partition("/")
            version = bits = net = plen = 0
            try:
                if ":" in a:
                    version, bits, net = 6, 128, inet_pton(AF_INET6, a)
                else:
                    version, bits, net = 4, 32, inet_pton(AF_INET, a)
                net = int.from_bytes(net, "big")
                plen = int(n) if slash else bits
                vv = None
                if via is not None:
                    vv = vias.get(via)
                    if vv is None:
                        vv = vias[via] = _addr(via)
                ok = (0 <= plen <= bits and not net & ((1 << (bits - plen)) - 1)
                      and (via is None or (vv is not None and vv[0] == version))
                      and (name in names or NAME_RE.fullmatch(name)))
            except (OSError, ValueError):
                ok = False
            if not ok:
                try:        # the slow path says what is wrong
                    out.append(_route(w[0], via, name))
                except ValueError as e:
                    raise ParamError(f"{path}:{lineno}: {e}") from None
                continue
            names.add(name)
            out.append((version, net, plen, vv[1] if vv is not None else None, name))
    return out


class RoutesPath(str):
    """A routes file's absolute path, carrying its routes as read when the
    pipeline was loaded: outputs() at load time and configure() at build
    time use the one reading."""

    def __new__(cls, path, routes):
        self = str.__new__(cls, path)
        self.routes = routes
        return self


class RoutesFile(InputPath):
    """An existing routes file, checked line by line; kept as an absolute
    path (a bench case's paths are relative to its folder)."""

    def describe(self):
        return "a routes file (lines 'PREFIX [via ADDR] output NAME')"

    def convert(self, value):
        path = os.path.abspath(super().convert(value))
        return RoutesPath(path, read_routes_file(path))


def _macs(value):
    if not isinstance(value, dict):
        raise ParamError("expected a mapping OUTPUT: MAC like {lan: 02:00:00:00:00:01}")
    out = {}
    for k, v in value.items():
        mac = parse_mac(v)
        if mac is None:
            raise _fail(f"expected a MAC like 02:00:00:00:00:01, got {v!r}", k)
        out[str(k)] = mac
    return out


def _neighbors(value):
    if not isinstance(value, list):
        raise ParamError("expected a list like [{ip: 198.18.0.2, mac: 02:00:00:00:00:02}]")
    out = []
    for i, n in enumerate(value):
        if not isinstance(n, dict) or set(n) != {"ip", "mac"}:
            raise _fail(f"expected {{ip: ADDR, mac: MAC}}, got {n!r}", i)
        try:
            ip = str(ipaddress.ip_address(n["ip"]))
        except ValueError:
            raise _fail(f"expected an IP address, got {n['ip']!r}", i, "ip") from None
        mac = _macs({"mac": n["mac"]})["mac"] if isinstance(n["mac"], str) else None
        if mac is None:
            raise _fail(f"expected a MAC, got {n['mac']!r}", i, "mac")
        out.append((ip, mac))
    return out


def _addresses(value):
    if not isinstance(value, dict):
        raise ParamError("expected a mapping OUTPUT: [ADDR, ...] like {lan: [198.18.0.1]}")
    out = {}
    for k, v in value.items():
        v = v if isinstance(v, list) else [v]
        have = {}
        for i, a in enumerate(v):
            try:
                ip = ipaddress.ip_address(a)
            except ValueError:
                raise _fail(f"expected an IP address, got {a!r}", k, i) from None
            if ip.version in have:
                raise _fail(f"one address per IP version, got {have[ip.version]} and {ip}",
                            k, i)
            have[ip.version] = ip
        out[str(k)] = [str(have[x]) for x in (4, 6) if x in have]
    return out


ctypedef struct OwnAddr:
    uint8_t ip4[4]
    uint8_t ip6[16]
    uint8_t has4
    uint8_t has6


ctypedef struct Pending:
    uint8_t key[16]
    uint64_t at           # the batch a request for key was made in, + 1


ctypedef struct NextHop:
    NeighEntry* ne        # the next hop's neighbour entry once found (via routes)
    uint8_t key[16]       # the next hop's neighbour key (via routes)
    uint8_t src_mac[6]    # the output's MAC
    uint16_t out
    uint8_t has_via


@cython.final
cdef class Route(Element):
    """Longest-prefix match on the destination address, IPv4 and IPv6, and
    the Ethernet rewrite for the next hop: the source MAC becomes the
    output's (`macs`), the destination MAC the next hop's, from the
    neighbour table. A route with `via` goes to that next hop; one without
    is directly connected: the packet's own destination is the neighbour.
    TTL / hop limit are left alone (see rewrite's ttl_dec).

    IPv4 uses a DIR-24-8 table (a 2^24-entry first level, 64 MiB of virtual
    memory made only when there are IPv4 routes, and 256-entry second-level
    groups for prefixes longer than /24): two memory reads per lookup, built
    in C (100,000 routes in well under a second). IPv6 uses one hash table
    keyed by (prefix, length), probed once per length present, longest
    first. The same prefix listed twice: the later one wins (`routes_file`
    comes after `routes`).

    The neighbour table (IP -> MAC) is this element's: its static
    `neighbors`, plus what a `neighbor` element learns from ARP and
    NDP when both name the same `table` (a name is shared by all the
    pipelines of one run). Entries do not age.

    A packet whose next hop has no entry is dropped (no-neighbor), unless
    the output has an own address of its IP version (`addresses`): then
    the packet's buffer is turned into an ARP request (broadcast) or a
    neighbour solicitation (to the solicited-node group, with a source
    link-layer option) for the next hop, from that address and the
    output's MAC, and sent to the output; the data packet itself is lost,
    as a kernel drops what waits on an incomplete entry. At most one
    request per next hop per 64 batches (a small table of recent
    requests): the packets in between are dropped (no-neighbor). A
    `neighbor` element on the same table learns the answer. Packets to the
    router's
    own addresses, broadcast and multicast destinations get no special
    treatment: they are routed like any other (put `neighbor`, and a
    classify for local delivery, in front).

    Outputs:
        OUTPUT: one output per distinct `output` name of the routes, in the
            order they first appear
    Counters:
        requests: unresolved packets turned into ARP requests or
        neighbour solicitations
    Drops:
        no-route: no prefix matches the destination
        no-neighbor: the next hop's MAC is not in the neighbour table (and
            no request is made for it now)
        not-ip: neither IPv4 nor IPv6 (ARP and the like)
        malformed:eth: and the other malformed:* reasons of the header parser
    Example:
        ports:
          src: "gen:count=100,dst=198.18.255.250-198.19.0.9"
          a: sink
          b: sink
        elements:
          r:
            type: route
            routes:
              - {prefix: 198.19.0.0/24, output: a}
              - {prefix: 0.0.0.0/0, via: 198.18.0.1, output: b}
            macs: {a: "02:00:00:00:01:01", b: "02:00:00:00:01:02"}
            neighbors:
              - {ip: 198.18.0.1, mac: "02:00:00:00:02:01"}
              - {ip: 198.19.0.5, mac: "02:00:00:00:02:05"}
        links: ["src -> r -> a", "r [b] -> b"]
    """
    TYPE = "route"
    SUMMARY = "longest-prefix match (IPv4, IPv6), next-hop MAC rewrite"
    OUTPUTS = ("OUTPUT",)
    PARAMS = (
        Param("routes", Custom("a list of routes like {prefix: 198.18.0.0/24, via: 198.18.0.1, "
                               "output: a}", _routes), "routes (via: optional)", None),
        Param("routes_file", RoutesFile(),
              "a file of routes, one a line: 'PREFIX [via ADDR] output NAME'", None),
        Param("macs", Custom("a mapping OUTPUT: MAC", _macs),
              "each output's own MAC (the new Ethernet source)"),
        Param("neighbors", Custom("a list like [{ip: 198.18.0.2, mac: 02:00:00:00:00:02}]",
                                  _neighbors), "static neighbour entries", None),
        Param("table", Name("a table name"),
              "share the neighbour table with `neighbor` elements naming it", None),
        Param("max_neighbors", Int(1, 1 << 22), "neighbour table size", 4096),
        Param("addresses", Custom("a mapping OUTPUT: [ADDR, ...]", _addresses),
              "the router's own address (IPv4 and/or IPv6) on each output: an unresolved "
              "packet to that output becomes an ARP request or neighbour solicitation "
              "from it", None),
    )
    COUNTERS = ("requests",)

    cdef Lpm4Table l4
    cdef Lpm6Table l6
    cdef NeighborTable nt
    cdef Lpm4* t4
    cdef Lpm6* t6
    cdef NeighTable* ntp
    cdef NextHop* nhs
    cdef uint32_t n_nhs
    cdef OwnAddr* own           # per output: the requests' sender
    cdef Pending* pend
    cdef uint64_t batches
    cdef uint8_t (*out_mac)[6]

    @staticmethod
    def all_routes(params):
        routes = list(params.get("routes") or ())
        path = params.get("routes_file")
        if path:
            # A path given directly (not through the loader) is read here.
            routes += path.routes if isinstance(path, RoutesPath) else read_routes_file(path)
        return routes

    @classmethod
    def outputs(cls, params):
        seen = {}
        for r in cls.all_routes(params):
            seen.setdefault(r[4], None)
        return tuple(seen)

    @classmethod
    def check(cls, params):
        outs = cls.outputs(params)
        if not outs:
            return ["no routes: give routes or routes_file"]
        macs = params.get("macs") or {}
        msgs = [f"macs: no MAC for output {o!r}" for o in outs if o not in macs]
        msgs += [f"macs: {m!r} is not an output of any route (outputs: {', '.join(outs)})"
                 for m in macs if m not in outs]
        msgs += [f"addresses: {a!r} is not an output of any route (outputs: {', '.join(outs)})"
                 for a in params.get("addresses") or {} if a not in outs]
        return msgs

    def configure(self, routes=None, routes_file=None, macs=None, neighbors=None, table=None,
                  max_neighbors=4096, addresses=None):
        params = {"routes": routes, "routes_file": routes_file}
        routes = self.all_routes(params)
        outs = {o: i for i, o in enumerate(self.outputs(params))}
        msgs = self.check({**params, "macs": macs, "addresses": addresses})
        if msgs:
            raise ValueError("; ".join(msgs))
        nh_index = {}
        fam = {4: (array.array("I"), bytearray(), array.array("I")),
               6: (array.array("Q"), array.array("Q"), bytearray(), array.array("I"))}
        for version, net, plen, via, out in routes:
            k = (out, version, via)
            nh = nh_index.get(k)
            if nh is None:
                nh = nh_index[k] = len(nh_index)
            if version == 4:
                a, p, n = fam[4]
                a.append(net)
            else:
                a, lo, p, n = fam[6]
                a.append(net >> 64)
                lo.append(net & 0xFFFFFFFFFFFFFFFF)
            p.append(plen)
            n.append(nh)
        self.nhs = <NextHop*>calloc(len(nh_index) or 1, sizeof(NextHop))
        if self.nhs == NULL:
            raise MemoryError()
        self.n_nhs = len(nh_index)
        cdef NextHop* h
        cdef bytes key, b
        for (out, version, via), i in nh_index.items():
            h = &self.nhs[i]
            h.out = outs[out]
            memcpy(h.src_mac, <char*>macs[out], 6)
            if via is not None:
                addr = ipaddress.ip_address(via) if version == 6 else ipaddress.IPv4Address(via)
                key = neigh_key(addr)
                memcpy(h.key, <char*>key, 16)
                h.has_via = 1
        if len(fam[4][0]):
            self.l4 = Lpm4Table()
            self.l4.build(fam[4][0], bytes(fam[4][1]), fam[4][2])
            self.t4 = &self.l4.t
        self.l6 = Lpm6Table()
        self.l6.build(fam[6][0], fam[6][1], bytes(fam[6][2]), fam[6][3])
        self.t6 = &self.l6.t
        self.own = <OwnAddr*>calloc(len(outs) or 1, sizeof(OwnAddr))
        self.out_mac = <uint8_t (*)[6]>calloc(len(outs) or 1, 6)
        self.pend = <Pending*>calloc(PENDING, sizeof(Pending))
        if self.own == NULL or self.out_mac == NULL or self.pend == NULL:
            raise MemoryError()
        for out, i in outs.items():
            memcpy(self.out_mac[i], <char*>macs[out], 6)
            for a in (addresses or {}).get(out, ()):
                b = ipaddress.ip_address(a).packed
                if len(b) == 4:
                    memcpy(self.own[i].ip4, <char*>b, 4)
                    self.own[i].has4 = 1
                else:
                    memcpy(self.own[i].ip6, <char*>b, 16)
                    self.own[i].has6 = 1
        self.nt = (neighbor_table(self.tables, table, max_neighbors) if table
                   else NeighborTable("", max_neighbors))
        for ip, mac in neighbors or ():
            self.nt.add_static(ip, mac)
        self.ntp = &self.nt.t

    def __dealloc__(self):
        free(self.nhs)
        free(self.own)
        free(self.out_mac)
        free(self.pend)

    def lookup(self, addr):
        """The output name that addr routes to, or None (for tests)."""
        a = ipaddress.ip_address(addr)
        t = self.l4 if a.version == 4 else self.l6
        i = t.lookup(a) if t is not None else None
        if i is None:
            return None
        return self.output_names[self.nhs[i].out]

    @property
    def neighbors(self):
        return self.nt

    cdef int route_one(self, Desc* p) noexcept nogil:
        """The output of p, or -1 after dropping it."""
        cdef int r = ensure_parsed(p)
        cdef uint32_t v
        cdef const uint8_t* dst
        cdef uint8_t key[16]
        cdef NextHop* nh
        cdef NeighEntry* e
        if r:
            drop_pkt(p, <uint16_t>r)
            return -1
        if p.pflags & PF_IPV4:
            dst = p.data + p.l3_off + 16
            v = lpm4_lookup(self.t4, rd32(dst)) if self.t4 != NULL else 0
        elif p.pflags & PF_IPV6:
            dst = p.data + p.l3_off + 24
            v = lpm6_lookup(self.t6, dst)
        else:
            drop_pkt(p, DROP_NOT_IP)
            return -1
        if v == 0:
            drop_pkt(p, DROP_NO_ROUTE)
            return -1
        nh = &self.nhs[v - 1]
        e = nh.ne
        if e == NULL:
            if nh.has_via:
                e = neigh_find(self.ntp, nh.key)
                nh.ne = e                 # entries never move: keep it
            elif p.pflags & PF_IPV4:
                neigh_key4(key, dst)
                e = neigh_find(self.ntp, key)
            else:
                e = neigh_find(self.ntp, dst)
            if e == NULL:
                if nh.has_via:
                    memcpy(key, nh.key, 16)
                elif p.pflags & PF_IPV6:
                    memcpy(key, dst, 16)
                if self.solicit(p, key, nh.out):
                    p.out = nh.out
                    return nh.out
                drop_pkt(p, DROP_NO_NEIGHBOR)
                return -1
        memcpy(p.data, e.mac, 6)
        memcpy(p.data + 6, nh.src_mac, 6)
        p.out = nh.out
        return nh.out

    cdef bint solicit(self, Desc* p, const uint8_t* key, uint16_t out) noexcept nogil:
        """Turn p into an ARP request or a neighbour solicitation for key
        (16 bytes, IPv4 as ::ffff:a.b.c.d) from out's own address, unless
        out has none of that family or key was asked for lately."""
        cdef bint v4 = key[10] == 0xFF and key[11] == 0xFF and is_zero(key, 10)
        cdef Pending* q = &self.pend[neigh_hash(key) & (PENDING - 1)]
        cdef uint8_t* d = p.data
        cdef uint8_t* ip
        cdef uint8_t* icmp
        cdef const uint8_t* mac = self.out_mac[out]
        if not (self.own[out].has4 if v4 else self.own[out].has6):
            return False
        if q.at and self.batches + 1 - q.at < HOLD and key_eq(q.key, key):
            return False
        memcpy(q.key, key, 16)
        q.at = self.batches + 1
        memcpy(d + 6, mac, 6)
        if v4:
            memset(d, 0xFF, 6)
            wr16(d + 12, 0x0806)
            wr32(d + 14, 0x00010800)          # Ethernet, IPv4
            wr32(d + 18, 0x06040001)          # lengths 6 and 4, request
            memcpy(d + 22, mac, 6)
            memcpy(d + 28, self.own[out].ip4, 4)
            memset(d + 32, 0, 6)
            memcpy(d + 38, key + 12, 4)
            memset(d + 42, 0, 18)             # padding to 60 bytes
            p.len = 60
        else:
            d[0] = 0x33
            d[1] = 0x33
            d[2] = 0xFF
            memcpy(d + 3, key + 13, 3)
            wr16(d + 12, 0x86DD)
            ip = d + 14
            wr32(ip, 0x60000000)
            wr16(ip + 4, 32)
            ip[6] = 58
            ip[7] = 255
            memcpy(ip + 8, self.own[out].ip6, 16)
            memcpy(ip + 24, b"\xff\x02\0\0\0\0\0\0\0\0\0\x01\xff", 13)
            memcpy(ip + 37, key + 13, 3)      # solicited-node multicast
            icmp = ip + 40
            wr32(icmp, 0x87000000)            # type 135, code 0, checksum 0
            wr32(icmp + 4, 0)
            memcpy(icmp + 8, key, 16)
            icmp[24] = 1                      # source link-layer address option
            icmp[25] = 1
            memcpy(icmp + 26, mac, 6)
            wr16(icmp + 2, csum(icmp, 32, csum_add(ip + 8, 32, 32 + 58)))
            p.len = 86
        p.pflags = 0                          # a new packet: parse it again
        self.stats[0] += 1
        return True

    cdef int process(self, Batch* b) noexcept nogil:
        cdef uint32_t i
        self.batches += 1
        for i in range(b.n):
            if i + PREFETCH < b.n:          # the headers are the first touch: fetch ahead
                prefetch(b.d[i + PREFETCH].data)
            self.route_one(&b.d[i])
        return PER_PACKET
