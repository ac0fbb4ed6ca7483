"""`nmroute pkt-gen`: netmap's pkt-gen, with its flags, on any port nmroute opens.

    nmroute pkt-gen -i packet:veth0 -f tx -n 1000000 -l 60 -R 100000
    nmroute pkt-gen -i packet:veth1 -f rx
    nmroute pkt-gen -i packet:veth0 -f txseq -n 100000     # sequence numbers in the payload
    nmroute pkt-gen -i packet:veth1 -f rxseq -n 100000 -W  # reports loss and reordering
    nmroute pkt-gen -i packet:veth1 -f pong                # echoes UDP frames back
    nmroute pkt-gen -i packet:veth0 -f ping -n 1000        # RTT min/avg/p50/p99/max, histogram

Frames are Ethernet + IPv4/IPv6 + UDP, built by a `gen:` port (or taken
from a pcap file with -P), moved into the port's tx ring by the C loops of
nmroute/fastpath/pktgen.pyx. One line per interval (-T ms) gives pps, bit/s
and the average batch; the totals follow at the end, or as JSON with --json.
SIGINT/SIGTERM stop it and print the totals. See docs/pkt-gen.md.
"""
from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import signal
import sys
import threading
import time

from nmroute import errors
from nmroute.errors import PortError, UsageError
from nmroute.fastpath.lib.tables import Tables
from nmroute.tools import int_range

FUNCTIONS = ("tx", "rx", "ping", "pong", "txseq", "rxseq")
SENDERS = ("tx", "txseq", "ping")
DEFAULT_BURST = {"tx": 512, "rx": 512, "txseq": 512, "rxseq": 512, "ping": 1, "pong": 1}
DEFAULT_SRC = {"ipv4": "10.0.0.1", "ipv6": "2001:2::1"}       # pkt-gen's (IPv6: ours)
DEFAULT_DST = {"ipv4": "10.1.0.1", "ipv6": "2001:2:0:1::1"}
DEFAULT_PORT = 1234
DEFAULT_LEN = {"ipv4": 60, "ipv6": 78}      # IPv6: 60 does not hold the headers
HDR_LEN = {"ipv4": 42, "ipv6": 62}          # Ethernet + IP + UDP
RING_SIZE = 1024
# Schemes whose port is an interface, with a MAC and a link to wait for (-w).
_IFACE_SCHEMES = ("packet", "xdp", "netmap")
_UNIT = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgG]?)\s*")


# -- flags ----------------------------------------------------------------


def add_parser(sub) -> argparse.ArgumentParser:
    """Add `pkt-gen` to an argparse subparsers object (cli.py calls this)."""
    p = sub.add_parser("pkt-gen", help="netmap's pkt-gen: send, receive, ping/pong on a port",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                       add_help=False)
    _arguments(p)
    p.set_defaults(fn=main, error_prefix="pkt-gen: ")
    _one_line_errors(p, "nmroute pkt-gen")
    return p


def _one_line_errors(p: argparse.ArgumentParser, prog: str) -> None:
    """argparse prints usage and the error; pkt-gen's users get one line (and
    exit code 2, as pkt-gen's usage exits)."""
    def error(message):
        print(f"{prog}: {message} (see {prog} -h)", file=sys.stderr)
        raise SystemExit(errors.BAD_CONFIG)
    p.error = error


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-h", "--help", action="help", help="show this help and exit")
    p.add_argument("-i", dest="port", metavar="PORT", required=True,
                   help="the port: packet:IFACE, xdp:IFACE, netmap:IFACE, tap:NAME, "
                        "pcap:FILE, ...")
    p.add_argument("-f", dest="function", choices=FUNCTIONS, default="rx", metavar="FUNCTION",
                   help="tx, rx, ping, pong, txseq or rxseq (default rx)")
    p.add_argument("-n", dest="count", type=_count, default=0, metavar="COUNT",
                   help="packets to send or receive, ping transactions; 0: until stopped")
    p.add_argument("-l", dest="lengths", type=int_range(14, 65535, 0), action="append",
                   metavar="LEN", help="frame length without FCS (default 60; IPv6 78); "
                                       "given twice: random lengths between the two")
    p.add_argument("-b", dest="burst", type=int_range(1, 8192, 0), metavar="BURST",
                   help="frames per batch (default 512; ping/pong 1)")
    p.add_argument("-R", dest="rate", type=_rate, default=0, metavar="RATE",
                   help="packets per second (100000, 100k, 1.5M); default: as fast as possible")
    p.add_argument("-s", dest="src", metavar="ADDR[:PORT][-ADDR[:PORT]]",
                   help="source address and UDP port, or ranges (default 10.0.0.1:1234)")
    p.add_argument("-d", dest="dst", metavar="ADDR[:PORT][-ADDR[:PORT]]",
                   help="destination address and UDP port, or ranges (default 10.1.0.1:1234)")
    p.add_argument("-S", dest="src_mac", metavar="MAC",
                   help="source MAC (default: the interface's, else 00:00:00:00:00:00)")
    p.add_argument("-D", dest="dst_mac", metavar="MAC",
                   help="destination MAC (default ff:ff:ff:ff:ff:ff)")
    p.add_argument("-z", dest="random_src", action="store_true",
                   help="random source addresses in the -s range")
    p.add_argument("-Z", dest="random_dst", action="store_true",
                   help="random destination addresses in the -d range")
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", dest="family", action="store_const", const="ipv4",
                     help="IPv4 (the default)")
    fam.add_argument("-6", dest="family", action="store_const", const="ipv6", help="IPv6")
    p.add_argument("-w", dest="wait", type=int_range(0, 3600, 0), metavar="SECONDS",
                   help="seconds to wait for the link after opening (default 2 on "
                        "interfaces, 0 otherwise)")
    p.add_argument("-T", dest="report_ms", type=int_range(10, 3_600_000, 0), default=1000,
                   metavar="MS", help="milliseconds between reports (default 1000)")
    p.add_argument("-P", dest="pcap", metavar="FILE",
                   help="send the frames of this pcap file (in a loop) instead of building them")
    p.add_argument("-p", dest="threads", type=int_range(1, 64, 0), default=1, metavar="THREADS",
                   help="threads, each with its own opening of the port (default 1)")
    p.add_argument("-W", dest="exit_on_idle", action="store_true",
                   help="rx, rxseq, pong: stop after 1 s without traffic, once it started")
    p.add_argument("--duration", type=_seconds, metavar="S", help="stop after S seconds")
    p.add_argument("--json", action="store_true",
                   help="print the intervals and the totals as JSON lines")


def _count(text):
    try:
        v = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a count >= 0, got {v}")
    return v


def _rate(text):
    m = _UNIT.fullmatch(text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected packets per second like 100000 or 100k, "
                                         f"got {text!r}")
    v = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2).lower()]
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a rate above 0, got {text!r}")
    return v


def _seconds(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return v


# -- what to build --------------------------------------------------------


def parse_endpoint(text: str, family: str | None):
    """pkt-gen's `addr[:port][-addr[:port]]` (IPv6 in brackets when it has a
    port: [2001:2::1]:1234). A prefix (198.18.0.0/24) is taken too.
    Returns (family, (first, last) addresses, (first, last) ports)."""
    def one(part):
        part = part.strip()
        port = None
        if part.startswith("["):
            addr, _, rest = part[1:].partition("]")
            if rest:
                if not rest.startswith(":"):
                    raise UsageError(f"'{text}': expected [IPV6]:PORT")
                port = rest[1:]
        elif part.count(":") == 1:
            addr, port = part.split(":")
        else:
            addr = part
        try:
            if "/" in addr:
                net = ipaddress.ip_network(addr, strict=False)
                lo, hi = net.network_address, net.broadcast_address
                if net.num_addresses > 2:
                    lo, hi = lo + 1, hi - 1
            else:
                lo = hi = ipaddress.ip_address(addr)
        except ValueError:
            raise UsageError(f"'{text}': '{addr}' is not an IP address") from None
        if port is not None:
            try:
                port = int(port)
            except ValueError:
                raise UsageError(f"'{text}': port '{port}' is not a number") from None
            if not 0 <= port <= 65535:
                raise UsageError(f"'{text}': port {port} is not within 0..65535")
        return lo, hi, port

    parts = _split_range(text)
    a_lo, a_hi, p_lo = one(parts[0])
    if len(parts) == 2:
        b_lo, b_hi, p_hi = one(parts[1])
        if a_lo.version != b_lo.version:
            raise UsageError(f"'{text}': the two ends are of different IP versions")
        first, last = min(a_lo, b_lo), max(a_hi, b_hi)
    else:
        first, last, p_hi = a_lo, a_hi, None
    fam = f"ipv{first.version}"
    if family and fam != family:
        raise UsageError(f"'{text}' is {fam.replace('ipv', 'IPv')} but "
                         f"{'-6' if family == 'ipv6' else '-4'} was given")
    p_lo = DEFAULT_PORT if p_lo is None else p_lo
    p_hi = p_lo if p_hi is None else p_hi
    return fam, (first, last), (min(p_lo, p_hi), max(p_lo, p_hi))


def _split_range(text: str) -> list[str]:
    """'a:1-b:2' -> ['a:1', 'b:2']; a '-' inside brackets does not split."""
    depth, cut = 0, None
    for i, c in enumerate(text):
        depth += c == "["
        depth -= c == "]"
        if c == "-" and depth == 0:
            if cut is not None:
                raise UsageError(f"'{text}': expected ADDR[:PORT][-ADDR[:PORT]]")
            cut = i
    if not text.strip():
        raise UsageError("an empty address")
    return [text] if cut is None else [text[:cut], text[cut + 1:]]


def _mac(text: str, flag: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{1,2}(:[0-9a-fA-F]{1,2}){5}", text or ""):
        raise UsageError(f"{flag} {text}: expected a MAC like 02:00:00:00:00:01")
    return ":".join(f"{int(x, 16):02x}" for x in text.split(":"))


def _convert(cls, text: str, items: dict) -> dict:
    """Port params from strings, converted and completed as the loader does."""
    from nmroute.errors import ParamError
    from nmroute.config.portname import convert_params
    try:
        return convert_params(cls, list(items.items()))
    except ParamError as e:
        raise UsageError(f"{text}: {e}") from None


def port_spec(text: str, function: str, allow_pipe: bool = False):
    """(class, params, rx, tx) for the port named `text`, checked for `function`."""
    from nmroute.errors import ParamError
    from nmroute.config.portname import split_port_name
    try:
        scheme, cls, items = split_port_name(text)
    except ParamError as e:
        raise UsageError(f"{text}: {e}") from None
    params = _convert(cls, text, {k: v for k, v, _ in items})
    rx = function in ("rx", "rxseq", "ping", "pong")
    tx = function in ("tx", "txseq", "ping", "pong")
    need = [d for d, want in (("rx", rx), ("tx", tx)) if want]
    missing = [d for d in need if d not in cls.DIRECTIONS]
    if missing:
        can = " and ".join({"rx": "read", "tx": "written"}[d] for d in cls.DIRECTIONS)
        raise UsageError(f"{text}: -f {function} needs a port that is "
                         f"{' and '.join({'rx': 'read', 'tx': 'written'}[d] for d in need)}; "
                         f"a {scheme} port is only {can}")
    if scheme == "pipe" and not allow_pipe:
        raise UsageError(f"{text}: a pipe joins two pipelines in one process and pkt-gen "
                         "opens one end; drive both ends from Python with "
                         "nmroute.tools.pktgen.prepare (see docs/pkt-gen.md)")
    problems = cls.check(params, rx, tx) if hasattr(cls, "check") else []
    if problems:
        raise UsageError(f"{text}: {problems[0]}")
    return cls, params, rx, tx


def iface_mac(params: dict) -> str | None:
    """The MAC of the interface a port is on, if it names one."""
    iface = (params.get("iface") or "").partition("@")[0]     # xdp:IFACE@QUEUE
    if not iface:
        return None
    try:
        with open(f"/sys/class/net/{iface}/address") as f:
            mac = f.read().strip()
    except OSError:
        return None
    return mac if re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", mac) else None


def iface_mtu(params: dict) -> int | None:
    """The MTU of the interface a port is on, if it names one."""
    iface = (params.get("iface") or "").partition("@")[0]     # xdp:IFACE@QUEUE
    if not iface:
        return None
    try:
        with open(f"/sys/class/net/{iface}/mtu") as f:
            return int(f.read())
    except (OSError, ValueError, TypeError):
        return None


def plan(args, allow_pipe: bool = False) -> dict:
    """Everything the run needs, from the flags; raises UsageError. Opens nothing."""
    fn = args.function
    cls, params, rx, tx = port_spec(args.port, fn, allow_pipe)
    family = args.family
    src = dst = None
    if args.src:
        family, src, sport = parse_endpoint(args.src, family)
    if args.dst:
        fam2, dst, dport = parse_endpoint(args.dst, family)
        if family and fam2 != family:
            raise UsageError(f"-s {args.src} and -d {args.dst} are of different IP versions")
        family = fam2
    family = family or "ipv4"
    if not args.src:
        family, src, sport = parse_endpoint(DEFAULT_SRC[family], family)
    if not args.dst:
        _, dst, dport = parse_endpoint(DEFAULT_DST[family], family)
    lengths = args.lengths or [DEFAULT_LEN[family]]
    if len(lengths) > 2:
        raise UsageError("-l is given at most twice (a length, or a random range)")
    lo, hi = min(lengths), max(lengths)
    burst = args.burst or DEFAULT_BURST[fn]
    if args.rate and fn in ("rx", "rxseq", "pong"):
        raise UsageError(f"-R: -f {fn} receives; the rate is the sender's")
    if args.threads > 1 and fn not in ("tx", "rx"):
        raise UsageError(f"-p {args.threads}: -f {fn} works with one thread, as in pkt-gen")
    if args.threads > 1 and cls.SCHEME in ("pcap", "tap"):
        raise UsageError(f"-p {args.threads}: a {cls.SCHEME} port is opened once; "
                         "give it one thread")
    if args.pcap and fn != "tx":
        raise UsageError(f"-P: frames from a file are sent with -f tx only (-f {fn} "
                         "writes into the frames it builds)")
    if args.pcap and not os.path.isfile(args.pcap):
        raise UsageError(f"-P {args.pcap}: no such file")
    need = {"txseq": 4, "ping": 16}.get(fn, 0)
    if fn in SENDERS and not args.pcap and lo < HDR_LEN[family] + need:
        what = {"txseq": " and a 4-byte sequence number",
                "ping": " and a 16-byte ping stamp"}.get(fn, "")
        raise UsageError(f"-l {lo}: too short for {family.replace('ipv', 'IPv')}/UDP"
                         f"{what}: at least {HDR_LEN[family] + need} bytes")
    mtu = iface_mtu(params)
    if fn in SENDERS and not args.pcap and mtu and hi > mtu + 14:
        raise UsageError(f"-l {hi}: longer than {args.port}'s MTU {mtu} allows "
                         f"({mtu + 14} with the Ethernet header)")
    src_mac = _mac(args.src_mac, "-S") if args.src_mac else (
        iface_mac(params) or "00:00:00:00:00:00")
    dst_mac = _mac(args.dst_mac, "-D") if args.dst_mac else "ff:ff:ff:ff:ff:ff"
    random = {(False, False): "none", (True, False): "src", (False, True): "dst",
              (True, True): "both"}[args.random_src, args.random_dst]
    gen = {"size": f"{lo}-{hi}", "family": family, "proto": "udp",
           "src": f"{src[0]}-{src[1]}", "dst": f"{dst[0]}-{dst[1]}",
           "sport": f"{sport[0]}-{sport[1]}", "dport": f"{dport[0]}-{dport[1]}",
           "src_mac": src_mac, "dst_mac": dst_mac, "random": random}
    scheme = cls.SCHEME
    # The link wait is for senders: a receiver counts from the start.
    wait = args.wait if args.wait is not None else (2 if scheme in _IFACE_SCHEMES else 0)
    if fn not in SENDERS:
        wait = 0
    return {"function": fn, "port": args.port, "cls": cls, "params": params, "rx": rx,
            "tx": tx, "family": family, "burst": burst, "count": args.count,
            "rate": args.rate, "threads": args.threads, "gen": gen, "pcap": args.pcap,
            "wait": wait, "src": src, "dst": dst, "sport": sport, "dport": dport,
            "lengths": (lo, hi), "idle": 1.0 if args.exit_on_idle else 0.0}


# -- opening and running ----------------------------------------------------


def open_port(text: str, cls, params: dict, rx: bool, tx: bool, pool, tables=None,
              ring_size=RING_SIZE):
    """Open a port by its class and params; raises PortError. Ports on one
    pool that share tables (xdp: ports, one UMEM) get the same `tables`."""
    port = cls(text, dict(params), tables)
    port.open(pool, ring_size, rx, tx)
    return port


def _source(pl: dict, pool, index: int):
    """The port the frames come from: a gen: port, or the -P pcap file in a loop."""
    from nmroute import registry
    kinds = registry.port_kinds()
    if pl["pcap"]:
        cls = kinds["pcap"]
        params = _convert(cls, f"pcap:{pl['pcap']}", {"file": pl["pcap"], "loop": "0"})
        return open_port(f"-P {pl['pcap']}", cls, params, True, False, pool)
    cls = kinds["gen"]
    params = _convert(cls, "gen", pl["gen"])
    problems = cls.check(params, True, False)
    if problems:
        raise UsageError(problems[0])
    return open_port(f"gen#{index}", cls, params, True, False, pool)


def _thread_port(pl: dict, params: dict, i: int):
    """Thread i's port: the same port, except that an xdp: port takes queue
    Q+i (an AF_XDP queue is one socket's; pkt-gen's -p with netmap takes a
    ring per thread the same way)."""
    if pl["cls"].SCHEME != "xdp" or i == 0:
        return pl["port"], params
    iface, _, q = params["iface"].partition("@")
    queue = int(q or 0) + i
    return f"xdp:{iface}@{queue}", {**params, "iface": f"{iface}@{queue}"}


class Run:
    """Ports opened, jobs made: one per thread. close() undoes it all."""

    def __init__(self, pl: dict, pool=None, ports=None):
        self.pl = pl
        self.pool = pool
        self.given = list(ports or [])   # opened by the caller, closed by the caller
        self.ports = []
        self.sources = []
        self.jobs = []
        self.tables = Tables()     # shared by the threads' ports (one UMEM)

    def open(self):
        from nmroute.fastpath.pktgen import Function, Job
        from nmroute.fastpath.pool import Pool
        pl = self.pl
        n = pl["threads"]
        rings = n * (int(pl["rx"]) + int(pl["tx"]) + int(pl["function"] in SENDERS))
        params = dict(pl["params"])
        extra = getattr(pl["cls"], "extra_buffers", None)
        per_port = extra(params, RING_SIZE, pl["rx"], pl["tx"]) if extra else 0
        if self.pool is None:
            self.pool = Pool(rings * RING_SIZE + n * per_port + 64)
        if self.given and len(self.given) != n:
            raise UsageError(f"{len(self.given)} ports given for {n} threads")
        if n > 1 and pl["rx"] and "fanout" in params and not params["fanout"]:
            # Several sockets on one interface share its traffic, not copy it.
            params["fanout"] = os.getpid() & 0xFFFF or 1
        func = Function[f"F_{pl['function'].upper()}"]
        count, rate = pl["count"], pl["rate"]
        try:
            for i in range(n):
                if self.given:
                    port = self.given[i]
                else:
                    name, p_i = _thread_port(pl, params, i)
                    port = open_port(name, pl["cls"], p_i, pl["rx"], pl["tx"], self.pool,
                                     self.tables)
                    self.ports.append(port)
                src = None
                if pl["function"] in SENDERS:
                    src = _source(pl, self.pool, i)
                    self.sources.append(src)
                share = count // n + (1 if i < count % n else 0) if count else 0
                self.jobs.append(Job(func, port, src, burst=_burst(pl["burst"], rate / n),
                                     count=share, rate=rate / n, family=pl["family"],
                                     stamp=not pl["pcap"], idle=pl.get("idle", 0)))
        except BaseException:
            self.close()
            raise

    def close(self):
        for p in self.ports + self.sources:
            # One failing port must not keep the rest open.
            with contextlib.suppress(Exception):
                p.close()
        self.ports, self.sources = [], []
        self.tables.close()


def _burst(burst: int, rate: float) -> int:
    """pkt-gen's rule: with a rate, at most rate/300 frames per burst (a
    burst about every 3 ms), at least one."""
    if rate:
        return max(1, min(burst, int(rate / 300)))
    return burst


def parser(prog: str = "nmroute pkt-gen") -> argparse.ArgumentParser:
    """pkt-gen's flags as a parser of its own (one-line errors, exit code 2)."""
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, add_help=False,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    _arguments(ap)
    _one_line_errors(ap, prog)
    return ap


def prepare(argv: list[str], pool=None, ports=None) -> Run:
    """A Run from pkt-gen's flags, opened: its jobs go to run_jobs(), then
    totals(). `ports` (opened by the caller on `pool`, one per thread) are
    used instead of opening -i, which then only names them: this is how two
    functions are joined by a pipe in one process. Raises UsageError/PortError.

        w, r = (open_port("pipe:p", Pipe, {"name": "p"}, rx, tx, pool) for ...)
        w.connect(r)
        tx = prepare(["-i", "pipe:p", "-f", "txseq", "-n", "1000"], pool, [w])
        rx = prepare(["-i", "pipe:p", "-f", "rxseq", "-n", "1000"], pool, [r])
        run_jobs(tx.jobs + rx.jobs)
    """
    pl = plan(parser().parse_args(argv), allow_pipe=ports is not None)
    run = Run(pl, pool, ports)
    run.open()
    return run


def run_jobs(jobs, report_s=None, on_report=None, duration=None, stop_event=None, ports=()):
    """Run jobs, one thread each, until they end, `duration` passes or
    stop_event is set; on_report(jobs, seconds) every report_s seconds, and
    the ports' slow-path maintain() (link events) every 0.1 s.
    Returns the elapsed seconds."""
    upkeep = [p.maintain for p in ports if hasattr(p, "maintain")]
    threads = [threading.Thread(target=j.run, name=f"pkt-gen-{i}") for i, j in enumerate(jobs)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    next_report = t0 + report_s if report_s else None
    stop_at = t0 + duration if duration else None
    stopped = False
    while any(t.is_alive() for t in threads):
        now = time.monotonic()
        wake = [x for x in (next_report, stop_at) if x] + [now + 0.1]
        time.sleep(max(0.0, min(wake) - now))
        now = time.monotonic()
        if not stopped and ((stop_at and now >= stop_at) or (stop_event and stop_event.is_set())):
            for j in jobs:
                j.stop()
            stopped = True
        if next_report and now >= next_report and on_report:
            on_report(jobs, now - t0)
            next_report += report_s
        for m in upkeep:
            m()
    for t in threads:
        t.join()
    return time.monotonic() - t0


# -- reports ----------------------------------------------------------------


def norm(x: float) -> str:
    """pkt-gen's normalised numbers: '14.880 M'."""
    for unit in ("", "K", "M", "G", "T"):
        if abs(x) < 1000 or unit == "T":
            return f"{x:.3f} {unit}"
        x /= 1000
    return f"{x:.3f} T"


class Reporter:
    def __init__(self, pl, as_json):
        self.pl, self.as_json = pl, as_json
        self.prev = (0, 0, 0, 0.0)

    def __call__(self, jobs, t):
        pk = sum(j.pkts for j in jobs)
        by = sum(j.bytes for j in jobs)
        ev = sum(j.events for j in jobs)
        p_pk, p_by, p_ev, p_t = self.prev
        self.prev = (pk, by, ev, t)
        dt = t - p_t
        if dt <= 0:
            return
        d_pk, d_by, d_ev = pk - p_pk, by - p_by, ev - p_ev
        pps, bps = d_pk / dt, 8 * d_by / dt
        batch = d_pk / d_ev if d_ev else 0.0
        if self.as_json:
            print(json.dumps({"type": "interval", "t": round(t, 6), "packets": d_pk,
                              "bytes": d_by, "pps": round(pps, 1), "bps": round(bps, 1),
                              "avg_batch": round(batch, 2)}), flush=True)
        else:
            print(f"{norm(pps)}pps ({norm(d_pk)}pkts {norm(bps)}bps in {int(dt * 1e6)} usec) "
                  f"{batch:.2f} avg_batch", flush=True)


def totals(pl: dict, run: Run, elapsed: float) -> dict:
    """The final figures of a run, as a dict (the JSON output)."""
    jobs = run.jobs
    fn = pl["function"]
    if fn in ("rx", "rxseq") and all(j.t_last > j.t_first for j in jobs):
        # A receiver's time runs from its first frame to its last, as in pkt-gen.
        secs = max(j.t_last for j in jobs) - min(j.t_first for j in jobs)
    else:
        secs = max(j.t_end - j.t_start for j in jobs)
    secs = max(secs / 1e9, 1e-9)
    pk = sum(j.pkts for j in jobs)
    by = sum(j.bytes for j in jobs)
    ev = sum(j.events for j in jobs)
    port_ctr = [p.counters() for p in run.ports + run.given]
    out = {"type": "total", "function": fn, "port": pl["port"], "threads": len(jobs),
           "packets": pk, "bytes": by, "events": ev, "seconds": round(secs, 6),
           "pps": round(pk / secs, 1), "bps": round(8 * by / secs, 1),
           "raw_bps": round((8 * by + 24 * 8 * pk) / secs, 1),
           "avg_batch": round(pk / ev, 2) if ev else 0.0,
           "port_tx": sum(c[2] for c in port_ctr),
           "port_drops": sum(sum(c[4:]) for c in port_ctr)}
    if fn in ("tx", "txseq"):
        out["sent"] = out["port_tx"]
        out["unsent"] = sum(j.unsent for j in jobs)
        out["rate_asked"] = pl["rate"]
    if fn in ("rx", "rxseq"):
        j = jobs[0]
        if len(jobs) == 1 and pk > 1 and j.ts_last > j.ts_first:
            # The rate the frames arrived at, by the port's own timestamps.
            out["arrival_pps"] = round((pk - 1) / ((j.ts_last - j.ts_first) / 1e9), 1)
    if fn in ("rx", "rxseq", "ping", "pong"):
        kernel = [p.kernel_drops() for p in run.ports + run.given]
        if kernel:
            # Frames the kernel dropped before the port saw them (its ring was full).
            out["kernel_drops"] = sum(kernel)
    if fn == "rxseq":
        j = jobs[0]
        out["seq"] = {"expected_next": j.seq_expected, "lost": j.lost, "late": j.late,
                      "without_seq": j.no_seq}
    if fn == "ping":
        out["ping"] = ping_stats(jobs[0])
    if fn == "pong":
        j = jobs[0]
        out["pong"] = {"replied": pk, "ignored": j.ignored, "no_room": j.no_room}
    return out


def ping_stats(job) -> dict:
    hist = job.histogram()
    n = job.replies
    st = {"sent": job.pkts, "replies": n, "lost": max(0, job.pkts - n), "stray": job.stray}
    if not n:
        return st

    def pct(q):
        rank, seen = q * n, 0
        for lo, hi, c in hist:
            seen += c
            if seen >= rank:
                return min(max((lo + hi) / 2, job.rtt_min), job.rtt_max)
        return job.rtt_max

    us = 1e3
    st["rtt_us"] = {"min": round(job.rtt_min / us, 3), "avg": round(job.rtt_sum / n / us, 3),
                    "p50": round(pct(0.5) / us, 3), "p99": round(pct(0.99) / us, 3),
                    "max": round(job.rtt_max / us, 3)}
    # Powers of two of µs, as pkt-gen prints its buckets.
    pow2 = {}
    for lo, _hi, c in hist:
        k = max(0, int(lo / us)).bit_length()
        pow2[k] = pow2.get(k, 0) + c
    st["histogram_us"] = [[(1 << k) >> 1, 1 << k, c] for k, c in sorted(pow2.items())]
    return st


def summary_lines(t: dict) -> list[str]:
    fn = t["function"]
    pk, secs = t["packets"], t["seconds"]
    verb = {"tx": "Sent", "txseq": "Sent", "rx": "Received", "rxseq": "Received",
            "ping": "Sent", "pong": "Replied to"}[fn]
    lines = []
    if pk == 0:
        lines.append(f"{verb} nothing.")
    else:
        lines.append(f"{verb} {pk} packets {t['bytes']} bytes {t['events']} events "
                     f"{t['bytes'] // pk} bytes each in {secs:.2f} seconds.")
        lines.append(f"Speed: {norm(t['pps'])}pps Bandwidth: {norm(t['bps'])}bps "
                     f"(raw {norm(t['raw_bps'])}bps). Average batch: {t['avg_batch']:.2f} pkts")
    if t.get("unsent"):
        lines.append(f"{t['unsent']} frames were still queued when the port stopped taking them")
    if "arrival_pps" in t:
        lines.append(f"Arrival rate by the port's timestamps: {norm(t['arrival_pps'])}pps")
    if "seq" in t:
        s = t["seq"]
        lines.append(f"Sequence: {s['expected_next']} expected, {s['lost']} lost, "
                     f"{s['late']} late (reordered or duplicated), "
                     f"{s['without_seq']} without a sequence number")
    if "ping" in t:
        p = t["ping"]
        if p.get("rtt_us"):
            r = p["rtt_us"]
            lines.append(f"RTT over {p['replies']} replies ({p['sent']} sent, {p['lost']} lost): "
                         f"min {r['min']:.1f} avg {r['avg']:.1f} p50 {r['p50']:.1f} "
                         f"p99 {r['p99']:.1f} max {r['max']:.1f} us")
            top = max(c for _, _, c in p["histogram_us"])
            for lo, hi, c in p["histogram_us"]:
                bar = "#" * max(1, round(40 * c / top))
                lines.append(f"  {lo:>8} - {hi:<8} us {c:>10}  {bar}")
        else:
            lines.append(f"No reply to {p['sent']} pings")
        if p["stray"]:
            lines.append(f"{p['stray']} received frames were not ping replies")
    if "pong" in t:
        p = t["pong"]
        lines.append(f"{p['ignored']} frames ignored (not IPv4/IPv6 UDP), "
                     f"{p['no_room']} not answered (tx ring full)")
    if t["port_drops"]:
        lines.append(f"The port dropped {t['port_drops']} frames")
    if t.get("kernel_drops"):
        lines.append(f"The kernel dropped {t['kernel_drops']} frames before the port saw "
                     "them (its receive ring was full)")
    return lines


def main(args) -> int:
    pl = plan(args)
    run = Run(pl)
    try:
        run.open()
    except (OSError, MemoryError) as e:
        raise PortError(pl["port"], str(e)) from None
    out = sys.stdout
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if not args.json:
            verb = {"tx": "Sending on", "txseq": "Sending on", "rx": "Receiving from",
                    "rxseq": "Receiving from"}.get(pl["function"], "Working on")
            print(f"{verb} {pl['port']}: {pl['threads']} threads, -f {pl['function']}, "
                  f"burst {_burst(pl['burst'], pl['rate'] / pl['threads'])}",
                  file=out, flush=True)
            if pl["function"] in SENDERS and not pl["pcap"]:
                g = pl["gen"]
                print(f"{_ends(pl['src'], pl['sport'])} -> {_ends(pl['dst'], pl['dport'])} "
                      f"({g['src_mac']} -> {g['dst_mac']})", file=out, flush=True)
        if pl["wait"]:
            stop.wait(pl["wait"])
        elapsed = 0.0
        if not stop.is_set():
            elapsed = run_jobs(run.jobs, args.report_ms / 1000, Reporter(pl, args.json),
                               args.duration, stop, run.ports)
        t = totals(pl, run, elapsed)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        run.close()
    if args.json:
        print(json.dumps(t), flush=True)
    else:
        for line in summary_lines(t):
            print(line, flush=True)
    return errors.OK


def _ends(addrs, ports) -> str:
    def one(a, p):
        return f"[{a}]:{p}" if a.version == 6 else f"{a}:{p}"
    a, b = addrs
    if a == b and ports[0] == ports[1]:
        return one(a, ports[0])
    return f"{one(a, ports[0])}-{one(b, ports[1])}"


def _standalone(argv=None) -> int:
    """`python -m nmroute.tools.pktgen ...`: the subcommand without cli.py."""
    from nmroute import logs
    args = parser().parse_args(argv)
    logs.setup(json=False, verbose=False)
    args.error_prefix = "pkt-gen: "
    return errors.run(main, args)


if __name__ == "__main__":
    sys.exit(_standalone())
