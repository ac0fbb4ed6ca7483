"""Build the fast path from checked pipelines, run it, report its counters.

Several pipelines run together share one buffer pool and one executor (one
worker thread); their pipes are joined here. Counters live in shared memory
(see fastpath/counters.pyx) so `nmroute stats` can read a running process.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import structlog

from nmroute.errors import RunError
from nmroute.fastpath.batch import MAX as BATCH_MAX
from nmroute.fastpath.counters import CounterFile, snapshot, read_counters
from nmroute.fastpath.drops import N_REASONS
from nmroute.fastpath.executor import Executor
from nmroute.fastpath.lib.tables import Tables
from nmroute.fastpath.pool import Pool
from nmroute.fastpath.ports.pipe import Pipe

log = structlog.get_logger("nmroute")


# How often the main thread runs the ports' maintain() (seconds).
MAINTAIN_EVERY = 0.1


@dataclass
class Accounting:
    """rx == tx + drops over the whole graph, and in == out + drops per element."""
    ok: bool
    entered: int
    left: int
    problems: list = field(default_factory=list)


def _settings(pipelines):
    first = pipelines[0].settings
    for p in pipelines[1:]:
        for key in ("buffer_size", "batch"):
            if p.settings[key] != first[key]:
                raise RunError(f"{p.path}: settings.{key} is {p.settings[key]} but "
                               f"{pipelines[0].path} has {first[key]}; pipelines run "
                               "together share one pool and one batch size")
    return first


class Runtime:
    def __init__(self, pipelines, counters_path=None):
        self.pipelines = pipelines
        self.settings = _settings(pipelines)
        self.multi = len(pipelines) > 1
        self.ports = {}       # full name -> Port
        self.elements = {}    # full name -> Element
        self.counters = CounterFile()
        # The tables elements and ports share (neighbours, conntrack, UMEMs):
        # made as they are built, closed after them (docs/design.md, "Tables").
        self.tables = Tables()
        self.counters_path = counters_path
        self.executor = None
        self.opened = []
        self.stopped_by = None

    def full(self, p, name):
        return f"{p.name}/{name}" if self.multi else name

    # -- set-up -----------------------------------------------------------

    def build(self):
        """Create elements, pool, ports, counters and the executor. On a
        failure, what was opened is closed again and RunError/PortError raised."""
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self):
        s = self.settings
        ring_size = max(p.settings["ring_size"] for p in self.pipelines)
        decls = []
        for p in self.pipelines:
            for d in p.elements.values():
                decls.append((p, d))
        # Elements first: their set-up (files, tables) fails before any port opens.
        for p, d in decls:
            cls = d.cls
            try:
                self.elements[self.full(p, d.name)] = cls(self.full(p, d.name), dict(d.params),
                                                          self.tables)
            except (OSError, ValueError, TypeError) as e:
                raise RunError(f"{d.loc}: {d.what}: {e}") from None
        n_rings = sum(int(d.rx) + int(d.tx) for p in self.pipelines for d in p.ports.values())
        fan_copies = sum(len(d.outputs) - 1 for _, d in decls if d.cls.FANOUT)
        n_bufs = n_rings * ring_size + (fan_copies + 1) * BATCH_MAX
        n_bufs += sum(d.cls.extra_buffers(d.params, p.settings["ring_size"], d.rx, d.tx)
                      for p in self.pipelines for d in p.ports.values())
        self.pool = Pool(n_bufs, s["buffer_size"])
        for p in self.pipelines:
            for d in p.ports.values():
                name = self.full(p, d.name)
                port = d.cls(name, dict(d.params), self.tables)
                port.port_id = len(self.ports)
                port.open(self.pool, p.settings["ring_size"], d.rx, d.tx)
                self.opened.append(port)
                self.ports[name] = port
                log.debug("port opened", port=name, spec=d.spec, rx=d.rx, tx=d.tx)
        self._join_pipes()
        for p in self.pipelines:
            ids = {d.name: self.ports[self.full(p, d.name)].port_id
                   for d in p.ports.values() if d.rx}
            for d in p.elements.values():
                self.elements[self.full(p, d.name)].bind_ports(ids)
        self._wire()

    def _join_pipes(self):
        ends = {}
        for p in self.pipelines:
            for d in p.ports.values():
                if d.cls is Pipe:
                    side = "rx" if d.rx else "tx"
                    ends.setdefault(d.params["name"], {})[side] = self.ports[self.full(p, d.name)]
        for name, e in ends.items():
            if set(e) != {"rx", "tx"}:
                raise RunError(f"pipe '{name}' has no {'reader' if 'tx' in e else 'writer'} "
                               "among the pipelines run")
            e["tx"].connect(e["rx"])

    def _wire(self):
        nodes, index = [], {}
        cf = self.counters
        for p in self.pipelines:
            for d in p.elements.values():
                name = self.full(p, d.name)
                index[name] = len(nodes)
                nodes.append({"obj": self.elements[name], "kind": "element",
                              "outs": [None] * len(d.outputs), "decl": d,
                              "ctr": cf.add("element", name, type=d.cls.TYPE,
                                            outputs=list(d.outputs),
                                            own=list(d.cls.COUNTERS))})
            for d in p.ports.values():
                if d.tx:
                    name = self.full(p, d.name)
                    index[name] = len(nodes)
                    nodes.append({"obj": self.ports[name], "kind": "port",
                                  "copy": not p.settings.get("zero_copy", True)})
        port_ctr = {name: cf.add("port", name, scheme=type(port).SCHEME)
                    for name, port in self.ports.items()}
        inputs = []
        for p in self.pipelines:
            for lk in p.links:
                src, dst = self.full(p, lk.src), self.full(p, lk.dst)
                if lk.src in p.ports:
                    port = self.ports[src]
                    inputs.append({"port": port, "first": index[dst],
                                   "external": not isinstance(port, Pipe)})
                else:
                    nodes[index[src]]["outs"][lk.src_out] = index[dst]
        for n in nodes:
            if None in n.get("outs", []):
                raise RunError(f"{n['decl'].what}: an output is not connected")
        for inp in inputs:
            inp["reach"] = sorted(_paths_to_ports(nodes, inp["first"]).items())
        cf.create(self.counters_path, meta={"pipelines": [p.path for p in self.pipelines]})
        for n in nodes:
            if n["kind"] == "element":
                n["ctr"] = cf.ptr(n["ctr"])
                own = 1 + N_REASONS + len(n["outs"])
                n["obj"].bind_counters(n["ctr"] + 8 * own)
        for name, port in self.ports.items():
            port.bind_counters(cf.ptr(port_ctr[name]))
        self.nodes = nodes
        self.executor = Executor(self.pool, self.settings["batch"])
        self.executor.build(nodes, inputs)

    # -- running ----------------------------------------------------------

    def run(self, duration=None, stats_interval=None, on_stats=None):
        """Run until the inputs are exhausted, `duration` passes or stop() is
        called (by a signal handler). on_stats(snapshot, seconds) is called
        every stats_interval seconds from this (the main) thread."""
        def work():
            # The worker's own CPU time: what the benchmark divides by, since
            # wall time on a shared machine counts other tenants' time too.
            c0 = time.thread_time()
            self.executor.run()
            self.cpu_seconds = time.thread_time() - c0

        worker = threading.Thread(target=work, name="nmroute-worker")
        t0 = time.monotonic()
        worker.start()
        next_stats = t0 + stats_interval if stats_interval else None
        next_maintain = t0 + MAINTAIN_EVERY
        while worker.is_alive():
            now = time.monotonic()
            wake = [t for t in (next_stats, next_maintain, t0 + duration if duration else None)
                    if t]
            worker.join(timeout=max(0.0, min(wake) - now))
            now = time.monotonic()
            if now >= next_maintain:
                self.maintain()
                next_maintain = now + MAINTAIN_EVERY
            if duration and now - t0 >= duration and not self.executor.stop:
                self.stop("duration")
            if next_stats and now >= next_stats and on_stats:
                on_stats(self.snapshot(), now - t0)
                next_stats += stats_interval
        self.elapsed = time.monotonic() - t0
        return self.elapsed

    def maintain(self):
        """Each port's slow-path upkeep (link events, an interface that came
        back); one failing port is logged and does not stop the run."""
        for port in self.opened:
            try:
                port.maintain()
            except Exception as e:   # noqa: BLE001 — logged, the run goes on
                log.warning("port maintenance failed", port=port.name, error=str(e))

    def stop(self, why="signal"):
        """Ask the worker to stop taking input; it drains rings and returns."""
        if self.executor is not None and not self.executor.stop:
            self.stopped_by = why
            self.executor.stop = True

    def snapshot(self):
        layout, values = read_counters(self.counters.path)
        return snapshot(layout, values)

    def close(self):
        """Count what is still queued as shutdown drops, close files, remove
        the counters file."""
        if self.executor is not None:
            from nmroute.fastpath.drops import DropReason
            shutdown = int(DropReason.DROP_SHUTDOWN)
            for name, n in self.executor.pending().items():
                if n:
                    self.ports[name].add_drops(shutdown, n)
            # A pipe's writer counted these as sent; its reader never took them.
            for port in self.ports.values():
                if isinstance(port, Pipe) and port.rx_ring is not None and port.rx_ring.space():
                    port.add_drops(shutdown, port.rx_ring.space(), True)
        for port in self.opened:
            try:
                port.close()
            except Exception as e:  # noqa: BLE001 - one failing port must not keep the rest open
                log.warning("closing a port failed", port=port.name, error=str(e))
        for el in self.elements.values():
            el.close()
        self.tables.close()
        self.opened = []

    def finish(self):
        """close(), then the final counters; the counters file is removed."""
        self.close()
        snap = self.snapshot() if self.counters.path else None
        self.counters.remove()
        return snap


def _paths_to_ports(nodes, start):
    """tx port node -> number of paths from `start` (room a packet may need)."""
    counts = {}

    def walk(i):
        n = nodes[i]
        if n["kind"] == "port":
            counts[i] = counts.get(i, 0) + 1
            return
        for o in n["outs"]:
            walk(o)
    walk(start)
    return counts


def check_accounting(snap, nodes_fanout):
    """Every packet that entered was sent or dropped with a reason.

    nodes_fanout: element name -> number of outputs, for fan-out elements
    (each of their packets leaves once per output)."""
    problems = []
    entered = sum(p["rx"] for p in snap["ports"].values())
    left = sum(p["tx"] + sum(p["drops"].values()) for p in snap["ports"].values())
    for name, e in snap["elements"].items():
        drops = sum(e["drops"].values())
        left += drops
        outs = sum(e["out"].values())
        k = nodes_fanout.get(name)
        if k:
            entered += e["in"] * (k - 1)
            if outs + drops != e["in"] * k:
                problems.append(f"element {name}: in {e['in']} x {k} outputs != "
                                f"out {outs} + drops {drops}")
        elif outs + drops != e["in"]:
            problems.append(f"element {name}: in {e['in']} != out {outs} + drops {drops}")
    if entered != left:
        problems.append(f"rx {entered} != tx + drops {left}")
    return Accounting(not problems, entered, left, problems)
