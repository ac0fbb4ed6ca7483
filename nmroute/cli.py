"""nmroute's command line: run, check, graph, elements, stats, bench."""
from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import sys

import structlog

from nmroute import errors, logs

log = structlog.get_logger("nmroute")


def _load(paths):
    from nmroute.config.pipeline import load_pipelines
    return load_pipelines(paths)


def cmd_run(args) -> int:
    from nmroute import report
    from nmroute.runtime import Runtime, check_accounting

    pipelines = _load(args.files)
    rt = Runtime(pipelines)
    rt.build()

    def on_signal(signum, frame):
        log.info("stopping", signal=signal.Signals(signum).name)
        rt.stop(signal.Signals(signum).name)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    prev = {"snap": rt.snapshot(), "t": 0.0}

    def on_stats(snap, t):
        for line in report.rate_lines(prev["snap"], snap, t - prev["t"]):
            print(line, flush=True)
        prev["snap"], prev["t"] = snap, t

    names = [f"{p.name} ({p.path})" for p in pipelines]
    log.info("running", pipelines=names, counters=rt.counters.path)
    try:
        elapsed = rt.run(args.duration, args.stats_interval, on_stats)
    finally:
        snap = rt.finish()
        for s, h in old.items():
            signal.signal(s, h)
    for name, port in rt.ports.items():
        if getattr(port, "truncated", False):
            log.warning("pcap file ends in a truncated record; replay stopped there",
                        port=name, file=port.params.get("file"))
    types = {n: type(p).SCHEME for n, p in rt.ports.items()}
    types.update({n: type(e).TYPE for n, e in rt.elements.items()})
    print(report.summary(snap, elapsed, types))
    fanout = {n: len(e.output_names) for n, e in rt.elements.items() if type(e).FANOUT}
    acc = check_accounting(snap, fanout)
    if args.stats_json:
        with open(args.stats_json, "w") as f:
            json.dump(report.stats_json(snap), f, indent=2)
            f.write("\n")
    if not acc.ok:
        log.error("accounting failed: packets unaccounted for", problems=acc.problems)
        return errors.FAILED
    log.info("done", seconds=round(elapsed, 3), packets_in=acc.entered,
             accounting="rx == tx + drops", stopped_by=rt.stopped_by or "inputs exhausted")
    return errors.OK


def _print_each(args, render) -> int:
    for p in _load(args.files):
        print(render(p))
    return errors.OK


def cmd_check(args) -> int:
    from nmroute.config.graph import format_graph
    return _print_each(args, format_graph)


def cmd_graph(args) -> int:
    from nmroute.config.graph import to_dot
    return _print_each(args, to_dot)


def cmd_elements(args) -> int:
    from nmroute import reference, registry
    from nmroute.schema import did_you_mean
    if not args.type:
        print(reference.listing())
        return errors.OK
    el, ports = registry.element_types(), registry.port_kinds()
    if args.type in el:
        print(reference.element_doc(el[args.type]))
    elif args.type in ports:
        print(reference.port_doc(ports[args.type]))
    else:
        raise errors.UsageError(f"no element or port type '{args.type}'"
                                f"{did_you_mean(args.type, list(el) + list(ports))}")
    return errors.OK


def cmd_stats(args) -> int:
    from nmroute import report
    from nmroute.fastpath.counters import STATS_DIR, read_counters, snapshot, stats_path
    if args.pid:
        paths = [stats_path(args.pid)]
    else:
        paths = sorted(glob.glob(os.path.join(STATS_DIR, "nmroute.*.stats")))
    live = [p for p in paths if os.path.exists(p) and _alive(p)]
    if not live:
        raise errors.NotRunning("no running nmroute found" +
                                (f" with pid {args.pid}" if args.pid else ""))
    for path in live:
        layout, values = read_counters(path)
        snap = snapshot(layout, values)
        if args.json:
            print(json.dumps(report.stats_json(snap)))
        else:
            print(f"{path} ({', '.join(layout['meta'].get('pipelines', []))})")
            print(report.summary(snap, 0))
    return errors.OK


def _alive(path):
    pid = int(os.path.basename(path).split(".")[1])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def cmd_bench(args) -> int:
    from nmroute.bench import main as bench_main
    return bench_main(args)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="nmroute", description=__doc__)
    ap.add_argument("--log-json", action="store_true", help="log as JSON lines")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run pipelines until their inputs end or a signal")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="pipeline YAML; several run together, joined by their pipes")
    p.add_argument("--duration", type=_positive, metavar="S", help="stop after S seconds")
    p.add_argument("--stats-interval", type=_positive, metavar="S",
                   help="print each port's rates every S seconds")
    p.add_argument("--stats-json", metavar="FILE", help="write the final counters as JSON")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("check", help="validate pipelines and print their graphs")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(fn=cmd_check)

    p = sub.add_parser("graph", help="print pipelines as Graphviz DOT")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(fn=cmd_graph)

    p = sub.add_parser("elements", help="the element and port reference")
    p.add_argument("type", nargs="?", metavar="TYPE")
    p.set_defaults(fn=cmd_elements)

    p = sub.add_parser("stats", help="counters of running nmroute processes")
    p.add_argument("--pid", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_stats)

    p = sub.add_parser("bench", help="fast-path benchmarks; prints Mpps")
    p.add_argument("--packets", type=int, default=50_000_000, metavar="N")
    p.add_argument("--repeat", type=int, default=3, metavar="R", help="median of R runs")
    p.add_argument("--size", type=int, default=60, help="frame size without FCS")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--case", metavar="TEXT",
                   help="besides the null pipeline, only the extra cases whose name has TEXT")
    p.set_defaults(fn=cmd_bench)

    from nmroute import userelements
    from nmroute.tools import bridge, pktgen
    bridge.add_parser(sub)
    pktgen.add_parser(sub)
    userelements.add_parser(sub)
    return ap


def _positive(s):
    v = float(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {s}")
    return v


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logs.setup(json=args.log_json, verbose=args.verbose)
    try:
        return errors.run(args.fn, args)
    except KeyboardInterrupt:
        return errors.fail("interrupted", errors.FAILED)
    except BrokenPipeError:
        return errors.OK


if __name__ == "__main__":
    sys.exit(main())
