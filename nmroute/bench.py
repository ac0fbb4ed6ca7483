"""`nmroute bench`: the fast path's own benchmarks, printed in Mpps.

Each case is a pipeline run in this process on one core; the figure is the
median of --repeat runs of --packets frames, divided by the CPU time of
the worker thread from the first batch to the last (set-up excluded): on
a shared machine, wall time also counts the time other tenants had the
core. Cases: gen -> sink (the null pipeline), one and
eight trivial elements (counter) added, and a pcap file replay -> sink.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile

from nmroute.config.pipeline import load_pipeline
from nmroute.runtime import Runtime


def _pipeline(dirname, name, text):
    path = os.path.join(dirname, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(text)
    return load_pipeline(path)


def _chain(n):
    elements = "".join(f"  c{i}: counter\n" for i in range(n))
    chain = " -> ".join(["src"] + [f"c{i}" for i in range(n)] + ["out"])
    return elements, chain


def cases(dirname, packets, size):
    gen = f'"gen:count={packets},size={size}"'
    out = {}
    for n in (0, 1, 8):
        elements, chain = _chain(n)
        out[f"gen -> {n} counters -> sink" if n else "gen -> sink"] = (
            f"ports:\n  src: {gen}\n  out: sink\n"
            + (f"elements:\n{elements}" if n else "")
            + f"links:\n  - {chain}\n")
    # A file of 100k frames in page cache, replayed until `packets` are read.
    frames = min(packets, 100_000)
    pcap = os.path.join(dirname, "bench.pcap")
    _run(_pipeline(dirname, "mkpcap", f'ports:\n  src: "gen:count={frames},size={size},'
                   f'sport=1000-2000"\n  out: "pcap:{pcap}"\nlinks:\n  - src -> out\n'))
    loops = max(1, packets // frames)
    out["pcap -> sink"] = (f"ports:\n  src: {{port: 'pcap:{pcap}', loop: {loops}}}\n"
                           f"  out: sink\nlinks:\n  - src -> out\n")
    return out


CASES_DIR = os.path.join(os.path.dirname(__file__), "benchcases")


def extra_cases():
    """name -> path of the pipelines in nmroute/benchcases (see its README)."""
    out = {}
    for fname in sorted(os.listdir(CASES_DIR)):
        if fname.endswith(".yaml"):
            path = os.path.join(CASES_DIR, fname)
            with open(path) as f:
                first = f.readline().strip()
            out[first.lstrip("# ").strip() or fname[:-5]] = path
    return out


def _load_case(path, packets):
    """A bench case with its source's count set; paths relative to its folder."""
    cwd = os.getcwd()
    os.chdir(os.path.dirname(path))
    try:
        p = load_pipeline(path)
    finally:
        os.chdir(cwd)
    p.ports["src"].params["count"] = packets
    return p


def _run(pipeline):
    rt = Runtime([pipeline], counters_path=None)
    rt.build()
    try:
        rt.run()
    finally:
        snap = rt.finish()
    return snap, rt.cpu_seconds


def measure(packets=50_000_000, repeat=3, size=60, report=print, only=None):
    """Median Mpps per case. The cases take turns (A B C D, A B C D, ...) so
    that a noisy neighbour slows them alike rather than one case."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="nmroute-bench-") as d:
        texts = cases(d, packets, size)
        if only is not None:
            texts = {"gen -> sink": texts["gen -> sink"]}
        pipelines = {name: _pipeline(d, f"case{i}", text)
                     for i, (name, text) in enumerate(texts.items())}
        for name, path in extra_cases().items():
            if only is None or only in name:
                pipelines[name] = _load_case(path, packets)
        rates = {name: [] for name in pipelines}
        forwarded = {}
        for _ in range(repeat):
            for name, p in pipelines.items():
                snap, seconds = _run(p)
                rx = snap["ports"]["src"]["rx"]
                rates[name].append(rx / seconds / 1e6)
                forwarded[name] = snap["ports"]["out"]["tx"] / rx if rx else 0.0
    for name, runs in rates.items():
        mpps = statistics.median(runs)
        results[name] = {"mpps": mpps, "ns_per_packet": 1e3 / mpps, "runs": runs,
                         "forwarded": forwarded[name]}
        # A case that drops most of its traffic early measures less than it says.
        note = "" if forwarded[name] > 0.99 else f"  ({forwarded[name]:.0%} reached out)"
        report(f"{name:<28} {mpps:8.2f} Mpps  {1e3 / mpps:6.2f} ns/packet{note}")
    base = results["gen -> sink"]["ns_per_packet"]
    if "gen -> 1 counters -> sink" not in results:
        return results
    for n in (1, 8):
        per = (results[f"gen -> {n} counters -> sink"]["ns_per_packet"] - base) / n
        results[f"per element ({n})"] = {"ns": per}
        report(f"{'cost of one element (' + str(n) + ')':<28} {per:8.2f} ns/packet")
    return results


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release()}


def main(args) -> int:
    m = machine()
    print(f"nmroute bench: {args.packets} frames of {args.size} bytes, median of {args.repeat}, "
          f"one core of {m['cpu']} ({m['cores']} cores)")
    res = measure(args.packets, args.repeat, args.size, only=args.case)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": m, "packets": args.packets, "size": args.size,
                       "results": res}, f, indent=2)
    return 0
