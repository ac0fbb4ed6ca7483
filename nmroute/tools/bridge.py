"""`nmroute bridge`: netmap's bridge.c on any two ports.

    nmroute bridge -i xdp:veth-a -i xdp:veth-b           two ports, both ways
    nmroute bridge -i xdp:eth0                            eth0 and its host side (host:eth0)
    nmroute bridge -i netmap:eth0                         eth0 and its host rings (eth0^)
    nmroute bridge -L -i packet:veth-a                    veth-a's traffic sent back out of it
    nmroute bridge -c -i xdp:a -i xdp:b                   copy frames (zero-copy off)

Everything read on one port is sent on the other, both ways, unchanged, as
fast as the ports take it. Both ports sit on the process's one buffer pool,
so a frame moves from one ring to the other by swapping buffer indexes (the
copies left are those a backend makes between the kernel's ring and the
pool); -c copies every frame instead, as bridge.c's -c does.

It is a pipeline like any other, built in memory: two ports and the chains
`a -> b` and `b -> a`, run by nmroute.runtime.Runtime. Counters per
direction are printed at exit, and every second with -v. SIGINT/SIGTERM stop
it; frames still queued then are counted as shutdown drops.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time

import structlog

from nmroute import errors
from nmroute.errors import UsageError
from nmroute.tools import int_range

log = structlog.get_logger("nmroute")

# A port alone is bridged with its host side (netmap: `-i netmap:eth0` alone
# means eth0 and eth0^). These schemes name an interface that has one.
_HAS_HOST = ("packet", "xdp", "netmap")


def add_parser(sub) -> argparse.ArgumentParser:
    """Add `bridge` to an argparse subparsers object (cli.py calls this)."""
    p = sub.add_parser("bridge", help="forward everything between two ports, both ways "
                                      "(netmap's bridge)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _arguments(p)
    p.set_defaults(fn=main)
    return p


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", dest="ports", action="append", metavar="PORT", required=True,
                   help="a port (give -i twice; once: the port and its host side)")
    p.add_argument("-b", dest="batch", type=int_range(1, 256), default=256, metavar="BATCH",
                   help="frames moved per batch, 1..256 (default 256)")
    p.add_argument("-w", dest="wait", type=int_range(0, 3600), default=0, metavar="WAIT",
                   help="seconds to wait for the links after opening (default 0)")
    p.add_argument("-L", dest="loop", action="store_true",
                   help="with one port: send what it receives back out of it (loopback), "
                        "instead of bridging it with its host side")
    p.add_argument("-c", dest="copy", action="store_true",
                   help="copy every frame instead of swapping buffer indexes (zero-copy off)")
    p.add_argument("-v", dest="every_second", action="store_true",
                   help="print the counters of each direction every second")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")


def port_pair(names: list[str], loop: bool = False) -> list[str]:
    """The two port names bridged: as given, one port and its host side, or
    (loop) one port twice."""
    from nmroute.config.portname import parse_port_name
    from nmroute.errors import ParamError
    if len(names) == 2:
        if loop and names[0] != names[1]:
            raise UsageError("-L loops one port back to itself: give one port")
        return list(names)
    if len(names) != 1:
        raise UsageError(f"give one or two ports with -i, got {len(names)}")
    if loop:
        return [names[0], names[0]]
    try:
        scheme, params = parse_port_name(names[0])
    except ParamError as e:
        raise UsageError(f"{names[0]}: {e}") from None
    if scheme not in _HAS_HOST:
        raise UsageError(f"{names[0]}: a single port is bridged with its host side, which "
                          f"only {', '.join(s + ':IFACE' for s in _HAS_HOST)} have; give two ports")
    iface = next(iter(params.values()), "")
    if scheme == "netmap":
        # netmap's own host rings, as bridge.c does.
        return [names[0], f"netmap:{iface.rstrip('^*')}^"]
    return [names[0], f"host:{iface.partition('@')[0]}"]   # xdp:IFACE@QUEUE


def _port_decl(key: str, text: str):
    """A PortDecl for `text`, params converted and checked as the loader does."""
    from nmroute.errors import ParamError
    from nmroute.config.pipeline import PortDecl
    from nmroute.config.portname import convert_params, split_port_name
    try:
        scheme, cls, items = split_port_name(text)
    except ParamError as e:
        raise UsageError(f"{text}: {e}") from None
    try:
        params = convert_params(cls, [(k, v) for k, v, _at in items])
    except ParamError as e:
        raise UsageError(f"{text}: {e}") from None
    if not {"rx", "tx"} <= set(cls.DIRECTIONS):
        raise UsageError(f"{text}: a {scheme} port cannot be both read and written")
    problems = cls.check(params, True, True) if hasattr(cls, "check") else []
    if problems:
        raise UsageError(f"{text}: {problems[0]}")
    return PortDecl(key, text, cls, params, rx=True, tx=True)


def build_pipeline(names: list[str], batch: int = 256, loop: bool = False,
                   copy: bool = False):
    """The bridge as a pipeline model: ports a and b, chains a -> b and b ->
    a; with loop, one port and the chain a -> a."""
    from nmroute.config.pipeline import SETTINGS, Link, Pipeline
    a, b = port_pair(names, loop)
    if a == b and not loop:
        raise UsageError(f"{a}: the two ports are the same (-L loops one port back)")
    settings = {p.name: p.default_value() for p in SETTINGS}
    settings["batch"] = batch
    settings["zero_copy"] = not copy
    # Ports are named by their port names, so errors and counters say which.
    if loop:
        return Pipeline("bridge", "<bridge>", settings, {a: _port_decl(a, a)}, {},
                        [Link(a, 0, a)])
    ports = {a: _port_decl(a, a), b: _port_decl(b, b)}
    links = [Link(a, 0, b), Link(b, 0, a)]
    return Pipeline("bridge", "<bridge>", settings, ports, {}, links)


def direction_lines(snap, prev, dt, a, b) -> list[str]:
    """One line per direction: frames and bytes moved, rate over dt, drops."""
    lines = []
    for src, dst in ((a, b), (b, a)) if a != b else ((a, a),):
        s, d = snap["ports"][src], snap["ports"][dst]
        p = prev["ports"][dst] if prev else {"tx": 0, "tx_bytes": 0}
        rate = ""
        if dt:
            rate = (f"  {(d['tx'] - p['tx']) / dt / 1e6:8.3f} Mpps"
                    f"  {8 * (d['tx_bytes'] - p['tx_bytes']) / dt / 1e9:7.3f} Gbit/s")
        drops = {**{f"{src}:{k}": v for k, v in s["drops"].items() if v and k != "tx-full"},
                 **{f"{dst}:{k}": v for k, v in d["drops"].items() if v}}
        drop_text = ", ".join(f"{k}={v}" for k, v in drops.items()) or "0"
        lines.append(f"{src} -> {dst}: rx {s['rx']} tx {d['tx']} "
                     f"({d['tx_bytes']} bytes){rate}  drops {drop_text}")
    return lines


def main(args) -> int:
    from nmroute.runtime import Runtime, check_accounting

    pipeline = build_pipeline(args.ports, args.batch, args.loop, args.copy)
    a, b = (list(pipeline.ports) * 2)[:2]      # a loop has one port: a == b
    rt = Runtime([pipeline])
    rt.build()

    def on_signal(signum, frame):
        rt.stop(signal.Signals(signum).name)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    prev = {"snap": None, "t": 0.0}

    def on_stats(snap, t):
        for line in direction_lines(snap, prev["snap"], t - prev["t"], a, b):
            print(line, flush=True)
        prev["snap"], prev["t"] = snap, t

    try:
        if args.wait:
            log.info("waiting for the links", seconds=args.wait)
            time.sleep(args.wait)
        log.info("bridging", a=a, b=b, batch=args.batch,
                 zero_copy=not args.copy and all(p.tx_ring.pool is rt.pool
                                                 for p in rt.ports.values()))
        print(f"looping {a} back to itself" if a == b else f"bridging {a} <-> {b}",
              flush=True)
        elapsed = rt.run(args.duration, 1.0 if args.every_second else None, on_stats)
    finally:
        snap = rt.finish()
        for s, h in old.items():
            signal.signal(s, h)
    print(f"after {elapsed:.1f} s:")
    for line in direction_lines(snap, None, 0, a, b):
        print(f"  {line}")
    acc = check_accounting(snap, {})
    if not acc.ok:
        log.error("accounting failed: packets unaccounted for", problems=acc.problems)
        return errors.FAILED
    return errors.OK


def _standalone(argv=None) -> int:
    """`python -m nmroute.tools.bridge ...`: the subcommand without cli.py."""
    from nmroute import logs
    ap = argparse.ArgumentParser(prog="nmroute bridge", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    _arguments(ap)
    args = ap.parse_args(argv)
    logs.setup(json=False, verbose=False)
    return errors.run(main, args)


if __name__ == "__main__":
    sys.exit(_standalone())
