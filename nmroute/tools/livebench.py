"""Live forwarding benchmark: real frames through real interfaces, Mpps at a sink.

    python -m nmroute.tools.livebench [--seconds N] [--repeat N] [--only NAME,...]
                                      [--iperf-seconds N] [--nice N] [--sink stack|xdp]
                                      [--json FILE] [--pktgen]

Three network namespaces joined by veth pairs, offloads off on every veth:

    gen (gen0 198.18.0.1/24) --- dut0 [DUT] dut1 --- sink0 (198.18.0.2/24) sink

The generator is an nmroute pipeline in `gen`: a `gen` port (64-byte UDP
frames, 8 flows) into `xdp:gen0`, as fast as it goes. The sink counts what
arrives at sink0 with the kernel's rx_packets counter of sink0. The frames
are addressed to a MAC nobody has, so sink0's stack drops them as soon as
it sees them ("other host"), the cheapest way found here; `--sink xdp`
addresses them to sink0 and drops them in an XDP program instead (costlier
on veth: the frame is copied once more for XDP). Paths through `dut`:

    xdp            nmroute bridge -i xdp:dut0 -i xdp:dut1
    packet         nmroute bridge -i packet:dut0 -i packet:dut1
    linux-bridge   the kernel's bridge (br0 with dut0 and dut1)
    testpmd        dpdk-testpmd, io forwarding, net_af_xdp on dut0 and dut1

plus the generator's ceiling (`generator`): the same generator with dut0
dropping every frame in XDP, counted at dut0. Each path is warmed up 1 s,
then measured N seconds; paths take turns, and the median of --repeat runs
is reported with its ratio to testpmd and to the Linux bridge. Then one TCP
stream of iperf3 from gen to sink through the Linux bridge and the two
nmroute bridges (Gbit/s, ratio to the Linux bridge).

With two CPUs or more the generator is pinned to one CPU and the DUT to
another. The kernel's receive work for a veth runs on the CPU that sent
into its peer, so dut0's receive work is the generator's CPU's and sink0's
is the DUT's (docs/benchmarks.md). Each run also reports the CPU share the
generator and the DUT process got (user + system, threads included).
`--nice -10` raises both (and their scheduler autogroups) above other work
on a busy machine.

`--pktgen` benchmarks generators instead (epilog below, docs/benchmarks.md):
gen (gen0) -- sink (sink0), one veth pair with two queues a side, each
generator counted at sink0 the same way, against netsniff-ng's trafgen and
an in-kernel XDP generator (the ceiling).

Root only. Namespaces, processes, XDP programs and hugepages it set up are
undone on exit, Ctrl-C included. `--agent IFACE [--drop]` and `--live-gen
IFACE` are internal: the counter process and the in-kernel generator it
starts inside a namespace.
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PATHS = ("xdp", "packet", "linux-bridge", "testpmd")
CEILING = "generator"
IPERF_PATHS = ("linux-bridge", "xdp", "packet")
OFFLOADS = ("gro", "gso", "tso", "tx", "rx", "sg")
GEN_ADDR, SINK_ADDR = "198.18.0.1", "198.18.0.2"
FLOWS = 8
OTHER_MAC = "02:00:00:00:0b:0e"
HUGEPAGES = 512
# --pktgen: generators on gen0, counted at sink0 (see pktgen_measure)
PKTGEN_CEILING = "ceiling"
PKTGEN_PATHS = ("pktgen-xdp", "pktgen-packet", "trafgen", "pktgen-xdp-x2", "trafgen-x2")
PKTGEN_QUEUES = 2
WARMUP = 1.0
START_TIMEOUT = 30.0

EXIT_USAGE = 2


class BenchError(Exception):
    """A benchmark step that failed; str() is one line."""


# -- the XDP drop program (loaded with the bpf() syscall: no compiler needed) ------

_NR_BPF = 321                   # x86_64
_BPF_PROG_LOAD, _BPF_PROG_TEST_RUN, _BPF_LINK_CREATE = 5, 10, 28
_BPF_PROG_TYPE_XDP, _BPF_XDP = 6, 37
_BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
_XDP_DROP, _XDP_TX = 1, 3
_LIVE_BATCH = 64                # the kernel's default (NAPI_POLL_WEIGHT); at most 256
_LIVE_REPEAT = 1 << 22          # frames per BPF_PROG_RUN call (a fraction of a second)


def _ret(action: int) -> bytes:
    """r0 = action; exit"""
    return struct.pack("<BBhi", 0xB7, 0, 0, action) + struct.pack("<BBhi", 0x95, 0, 0, 0)


_DROP_INSNS, _TX_INSNS = _ret(_XDP_DROP), _ret(_XDP_TX)


def _bpf(cmd: int, attr: bytes) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(attr, 128)
    r = libc.syscall(_NR_BPF, cmd, buf, ctypes.c_uint(128))
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


def _load_xdp(insns: bytes, name: bytes, what: str) -> int:
    """Load an XDP program from raw instructions; returns its fd."""
    if os.uname().machine != "x86_64":
        raise BenchError(f"the {what} is loaded with x86_64's bpf() syscall number; "
                         f"this is {os.uname().machine}")
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b"GPL")
    # union bpf_attr, BPF_PROG_LOAD: prog_type, insn_cnt, insns, license,
    # log_level, log_size, log_buf, kern_version, prog_flags, prog_name,
    # prog_ifindex, expected_attach_type
    attr = struct.pack("<IIQQIIQII16sII", _BPF_PROG_TYPE_XDP, len(insns) // 8,
                       ctypes.addressof(code), ctypes.addressof(lic), 0, 0, 0, 0, 0,
                       name, 0, _BPF_XDP)
    try:
        return _bpf(_BPF_PROG_LOAD, attr)
    except OSError as e:
        raise BenchError(f"cannot load the {what}: {e.strerror}") from None


def attach_xdp_drop(iface: str) -> int:
    """Attach an XDP program dropping every frame to `iface` (this process's
    namespace) through a BPF link; returns the link's fd. The program stays
    attached while the fd is open: it goes when this process exits."""
    prog = _load_xdp(_DROP_INSNS, b"livebench_drop", f"XDP drop program for {iface}")
    try:
        ifindex = socket.if_nametoindex(iface)
    except OSError:
        raise BenchError(f"{iface}: no such interface") from None
    try:
        # BPF_LINK_CREATE: prog_fd, target_ifindex, attach_type, flags
        link = _bpf(_BPF_LINK_CREATE, struct.pack("<IIII", prog, ifindex, _BPF_XDP, 0))
    except OSError as e:
        raise BenchError(f"{iface}: cannot attach the XDP drop program: {e.strerror}") from None
    os.close(prog)
    return link


def udp_frame(src_mac: str, dst_mac: str) -> bytes:
    """The benchmark's frame: 60 bytes (64 on the wire), IPv4/UDP GEN_ADDR:1024
    -> SINK_ADDR:9, zero payload, checksums filled in."""
    payload = bytes(60 - 14 - 20 - 8)
    src, dst = socket.inet_aton(GEN_ADDR), socket.inet_aton(SINK_ADDR)
    ulen = 8 + len(payload)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, ulen)
    udp = struct.pack("!HHHH", 1024, 9, ulen, 0) + payload
    udp = udp[:6] + struct.pack("!H", _csum(pseudo + udp) or 0xFFFF) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 0, 0, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", ""))
    return eth + b"\x08\x00" + ip + udp


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def live_gen(iface: str, src_mac: str, dst_mac: str, batch: int) -> int:
    """The in-kernel generator, run inside a namespace: an XDP program
    returning XDP_TX, run by BPF_PROG_RUN in "live frames" mode
    (BPF_F_TEST_XDP_LIVE_FRAMES) as if `iface` had received the frame: each
    run transmits it out of `iface`, `batch` frames per kernel loop, as
    xdp-trafficgen does. Repeats until SIGINT; prints `running` once the
    first call worked, or `error REASON`."""
    try:
        prog = _load_xdp(_TX_INSNS, b"livebench_tx", "XDP_TX program")
        ifindex = socket.if_nametoindex(iface)
    except BenchError as e:
        print(f"error {iface}: {e}", flush=True)
        return 1
    except OSError:
        print(f"error {iface}: no such interface", flush=True)
        return 1
    frame = udp_frame(src_mac, dst_mac)
    data = ctypes.create_string_buffer(frame, len(frame))
    # struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
    # egress_ifindex. The frame "arrives" on iface's queue 0; XDP_TX sends it back out.
    ctx = ctypes.create_string_buffer(struct.pack("<6I", 0, len(frame), 0, ifindex, 0, 0), 24)

    def attr(repeat: int) -> bytes:
        # BPF_PROG_TEST_RUN: prog_fd, retval, data_size_in, data_size_out, data_in,
        # data_out, repeat, duration, ctx_size_in, ctx_size_out, ctx_in, ctx_out,
        # flags, cpu, batch_size
        return struct.pack("<IIIIQQIIIIQQIII", prog, 0, len(frame), 0,
                           ctypes.addressof(data), 0, repeat, 0, 24, 0,
                           ctypes.addressof(ctx), 0, _BPF_F_TEST_XDP_LIVE_FRAMES, 0, batch)

    try:
        _bpf(_BPF_PROG_TEST_RUN, attr(batch))
    except OSError as e:
        print(f"error {iface}: BPF_PROG_RUN in live-frames mode failed: {e.strerror}",
              flush=True)
        return 1
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        # A handler, not the default: the kernel ends the run early with EINTR.
        signal.signal(sig, lambda signum, frame: stop.append(signum))
    print("running", flush=True)
    big = attr(_LIVE_REPEAT)
    while not stop:
        try:
            _bpf(_BPF_PROG_TEST_RUN, big)
        except OSError as e:
            if e.errno == errno.EINTR:
                continue
            print(f"error {iface}: BPF_PROG_RUN in live-frames mode failed: {e.strerror}",
                  flush=True)
            return 1
    return 0


def agent(iface: str, drop: bool) -> int:
    """The counter process, run inside a namespace: optionally drop every
    frame of `iface` in XDP; then for each line read on stdin print
    `MONOTONIC RX_PACKETS RX_DROPPED` of `iface`; exit at EOF."""
    try:
        link = attach_xdp_drop(iface) if drop else None
    except BenchError as e:
        print(f"error {e}", flush=True)
        return 1
    stats = Path("/sys/class/net") / iface / "statistics"
    rx, dropped = stats / "rx_packets", stats / "rx_dropped"
    print("ready", flush=True)
    for _ in sys.stdin:
        t = time.monotonic()
        print(f"{t:.6f} {rx.read_text().strip()} {dropped.read_text().strip()}", flush=True)
    if link is not None:
        os.close(link)
    return 0


# -- processes ----------------------------------------------------------------------

class Proc:
    """A process started in a namespace; its output is collected by threads."""

    def __init__(self, name: str, argv: list[str], env: dict, stdin=False):
        self.name = name
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.p = subprocess.Popen(argv, env=env, text=True, bufsize=1,
                                  stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        self.pid = self.p.pid
        self.eof = False
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.p.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT, start: int = 0) -> int:
        """Index of the first output line from `start` matching `pattern`."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.lines):
                    if rx.search(self.lines[i]):
                        return i
                    i += 1
                if self.eof:
                    self.p.wait()
                    raise BenchError(f"{self.name} exited ({self.p.returncode}) before it was "
                                     f"ready: {self.tail()}")
                left = end - time.monotonic()
                if left <= 0:
                    raise BenchError(f"{self.name} not ready after {timeout:.0f} s: "
                                     f"{self.tail()}")
                self.cond.wait(min(left, 0.2))

    def signal(self, sig: int) -> None:
        """`sig` to the process group it leads (its own session)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def tail(self, n: int = 3) -> str:
        with self.cond:
            return " | ".join(ln.strip() for ln in self.lines[-n:] if ln.strip()) or "no output"

    def text(self) -> str:
        with self.cond:
            return "\n".join(self.lines)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT to its process group (as Ctrl-C: trafgen's children too), then
        SIGKILL if it has not exited in `timeout`."""
        if self.p.poll() is None:
            self.signal(signal.SIGINT)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.p.wait()
        time.sleep(0.05)   # let the reader thread take the last lines
        return self.p.returncode


class Counter:
    """An agent process reading an interface's rx counters in its namespace."""

    def __init__(self, lab: Lab, host: str, iface: str, drop: bool):
        argv = [sys.executable, "-m", "nmroute.tools.livebench", "--agent", iface]
        if drop:
            argv.append("--drop")
        self.proc = lab.start(host, f"counter {host}:{iface}", argv, stdin=True)
        i = self.proc.wait_for(r"^(ready|error )")
        if self.proc.lines[i].startswith("error "):
            raise BenchError(self.proc.lines[i][6:])
        self.seen = i + 1

    def read(self) -> tuple[float, int, int]:
        """(monotonic time, rx_packets, rx_dropped) now."""
        self.proc.p.stdin.write("\n")
        self.proc.p.stdin.flush()
        i = self.proc.wait_for(r"^\d+\.\d+ \d+ \d+$", 10, self.seen)
        self.seen = i + 1
        t, rx, dropped = self.proc.lines[i].split()
        return float(t), int(rx), int(dropped)

    def close(self) -> None:
        if self.proc.p.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError):
                self.proc.p.stdin.close()
            try:
                self.proc.p.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.stop()


# -- the namespaces -------------------------------------------------------------------

class Lab:
    """gen -- dut -- sink, joined by veth pairs; everything it made, it undoes."""

    def __init__(self, tag: str = "") -> None:
        self.prefix = f"nmlb{os.getpid()}{tag}-"
        self.ns: dict[str, str] = {}
        self.procs: list[Proc] = []
        self.hugepages: int | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="nmroute-livebench-"))
        self.env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [root,
                                                               self.env.get("PYTHONPATH")]))
        cpus = sorted(os.sched_getaffinity(0))
        self.cpus = (cpus[0], cpus[1]) if len(cpus) >= 2 else None
        self.closed = False
        self.sink = "stack"
        self.nice = 0

    # building

    def sh(self, *argv, check=True, timeout=30) -> subprocess.CompletedProcess:
        r = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                           timeout=timeout)
        if check and r.returncode:
            raise BenchError(f"`{' '.join(map(str, argv))}` failed: "
                             f"{(r.stderr or r.stdout).strip().splitlines()[-1:]}")
        return r

    def run(self, host: str, *argv, check=True, timeout=30) -> subprocess.CompletedProcess:
        return self.sh("ip", "netns", "exec", self.ns[host], *argv, check=check,
                       timeout=timeout)

    def build(self, pktgen: bool = False) -> None:
        """gen -- dut -- sink; with `pktgen`, gen -- sink (one veth pair with
        PKTGEN_QUEUES queues a side)."""
        for h in ("gen", "sink") if pktgen else ("gen", "dut", "sink"):
            name = self.prefix + h
            self.sh("ip", "netns", "add", name)
            self.ns[h] = name
            self.run(h, "ip", "link", "set", "lo", "up")
            # No IPv6: no router solicitations or neighbour discovery at the sink.
            for conf in ("all", "default"):
                self.run(h, "sysctl", "-qw", f"net.ipv6.conf.{conf}.disable_ipv6=1",
                         check=False)
        if pktgen:
            self.veth("gen", "gen0", "sink", "sink0", PKTGEN_QUEUES)
        else:
            self.veth("gen", "gen0", "dut", "dut0")
            self.veth("dut", "dut1", "sink", "sink0")
        self.run("gen", "ip", "addr", "add", f"{GEN_ADDR}/24", "dev", "gen0")
        self.run("sink", "ip", "addr", "add", f"{SINK_ADDR}/24", "dev", "sink0")
        self.macs = {d: self.mac(h, d) for h, d in (("gen", "gen0"), ("sink", "sink0"))}

    def veth(self, h1: str, d1: str, h2: str, d2: str, queues: int = 1) -> None:
        q = ["numtxqueues", queues, "numrxqueues", queues] if queues > 1 else []
        self.run(h1, "ip", "link", "add", d1, *q, "type", "veth", "peer", "name", d2, *q,
                 "netns", self.ns[h2])
        for h, d in ((h1, d1), (h2, d2)):
            self.offloads_off(h, d)
            self.run(h, "ip", "link", "set", d, "up")

    def offloads_off(self, host: str, dev: str) -> None:
        if shutil.which("ethtool"):
            self.run(host, "ethtool", "-K", dev, *[x for o in OFFLOADS for x in (o, "off")],
                     check=False)

    def mac(self, host: str, dev: str) -> str:
        out = self.run(host, "ip", "-j", "link", "show", dev).stdout
        return json.loads(out)[0]["address"]

    def hugepages_for_dpdk(self) -> None:
        """At least HUGEPAGES 2 MB pages, the old count restored at close."""
        path = Path("/proc/sys/vm/nr_hugepages")
        now = int(path.read_text())
        if now >= HUGEPAGES:
            return
        if self.hugepages is None:
            self.hugepages = now
        path.write_text(f"{HUGEPAGES}\n")
        got = int(path.read_text())
        if got < HUGEPAGES:
            raise BenchError(f"asked the kernel for {HUGEPAGES} hugepages, got {got}")

    # running

    def start(self, host: str, name: str, argv: list[str], cpu: int | None = None,
              stdin: bool = False) -> Proc:
        pin = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
        if self.nice and not stdin:
            pin = ["nice", "-n", str(self.nice), *pin]
        p = Proc(name, ["ip", "netns", "exec", self.ns[host], *pin, *argv], self.env, stdin)
        self.procs.append(p)
        if self.nice and not stdin:
            # Each process leads its own session, hence its own scheduler
            # autogroup: its nice value counts only against that group's
            # other tasks unless the group gets it too.
            with contextlib.suppress(OSError):
                Path(f"/proc/{p.pid}/autogroup").write_text(f"{self.nice}\n")
        return p

    def nmroute(self, host: str, name: str, args: list[str], cpu: int | None) -> Proc:
        return self.start(host, name, [sys.executable, "-m", "nmroute.cli", *args], cpu)

    # teardown

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for p in self.procs:
            if p.p.poll() is None:
                p.signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.p.wait(5)
            with contextlib.suppress(OSError):
                os.unlink(f"/dev/shm/nmroute.{p.pid}.stats")
        self.procs = []
        for name in self.ns.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self.ns = {}
        if self.hugepages is not None:
            with contextlib.suppress(OSError):
                Path("/proc/sys/vm/nr_hugepages").write_text(f"{self.hugepages}\n")
            self.hugepages = None
        shutil.rmtree(self.tmp, ignore_errors=True)


# -- the paths through the DUT ----------------------------------------------------------

def dst_mac(lab: Lab) -> str:
    """sink0's MAC when XDP takes the frames there; a MAC nobody has when the
    stack does (dropped as "other host" as soon as it is received)."""
    return lab.macs["sink0"] if lab.sink == "xdp" else OTHER_MAC


def gen_yaml(lab: Lab) -> Path:
    path = lab.tmp / "gen.yaml"
    dst = dst_mac(lab)
    path.write_text(
        "name: livebench-gen\n"
        "ports:\n"
        f"  src: {{port: gen, size: 60, src: {GEN_ADDR}, dst: {SINK_ADDR},\n"
        f"        sport: 1024-{1024 + FLOWS - 1}, dport: 9,\n"
        f"        src_mac: \"{lab.macs['gen0']}\", dst_mac: \"{dst}\"}}\n"
        "  out: xdp:gen0\n"
        "links: [\"src -> out\"]\n")
    return path


class Path_:
    """Set up and tear down one path through the DUT namespace."""

    def __init__(self, lab: Lab, name: str):
        self.lab, self.name = lab, name
        self.proc: Proc | None = None

    def up(self) -> None:
        lab, dut_cpu = self.lab, self.lab.cpus[1] if self.lab.cpus else None
        if self.name in ("xdp", "packet"):
            s = self.name
            self.proc = lab.nmroute("dut", f"nmroute bridge ({s})",
                                    ["bridge", "-i", f"{s}:dut0", "-i", f"{s}:dut1"], dut_cpu)
            self.proc.wait_for(r"^bridging ")
        elif self.name == "linux-bridge":
            for knob in ("iptables", "ip6tables", "arptables"):
                lab.run("dut", "sysctl", "-qw", f"net.bridge.bridge-nf-call-{knob}=0",
                        check=False)
            lab.run("dut", "ip", "link", "add", "br0", "type", "bridge", "stp_state", "0")
            for d in ("dut0", "dut1"):
                lab.run("dut", "ip", "link", "set", d, "master", "br0")
            lab.run("dut", "ip", "link", "set", "br0", "up")
            # The generator's destination is known behind dut1: forwarded, not flooded.
            lab.run("dut", "bridge", "fdb", "add", dst_mac(lab), "dev", "dut1", "master",
                    "static")
            wait_forwarding(lab)
        elif self.name == "testpmd":
            lab.hugepages_for_dpdk()
            lcores = f"{lab.cpus[0]},{lab.cpus[1]}" if lab.cpus else "0"
            argv = ["dpdk-testpmd", "-l", lcores, "--no-pci", "--in-memory",
                    "--file-prefix", lab.prefix.rstrip("-"),
                    "--vdev", "net_af_xdp0,iface=dut0,start_queue=0,queue_count=1",
                    "--vdev", "net_af_xdp1,iface=dut1,start_queue=0,queue_count=1",
                    "--", "--forward-mode=io", "--nb-cores=1", "--rxq=1", "--txq=1",
                    "--stats-period", "1"]
            self.proc = lab.start("dut", "dpdk-testpmd", argv)
            self.proc.wait_for(r"start packet forwarding|Port statistics")
        elif self.name == CEILING:
            pass
        else:
            raise BenchError(f"unknown path '{self.name}'")

    def down(self) -> dict:
        """Tear down; what the DUT says it forwarded, where it says so."""
        out: dict = {}
        if self.proc is not None:
            code = self.proc.stop()
            text = self.proc.text()
            if self.name in ("xdp", "packet"):
                m = re.search(rf"^\s+{self.name}:dut0 -> {self.name}:dut1: rx (\d+) tx (\d+)",
                              text, re.M)
                if m:
                    out = {"dut_rx": int(m[1]), "dut_tx": int(m[2])}
                # The xdp: port logs at exit what the kernel dropped before its
                # socket (rx ring full, no fill buffer): received at dut0, never read.
                for line in text.splitlines():
                    if "the kernel dropped frames" in line and f"port={self.name}:dut0" in line:
                        out["dut_kernel_drops"] = {
                            k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)
                            if re.search("drop|full|empty", k)}
                if code:
                    out["dut_error"] = f"exit {code}: {self.proc.tail()}"
            else:
                out = testpmd_counts(text)
            self.proc = None
        if self.name == "linux-bridge":
            self.lab.run("dut", "ip", "link", "del", "br0", check=False)
        return out


def wait_forwarding(lab: Lab, timeout: float = 10.0) -> None:
    """Until both bridge ports are in the forwarding state."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = lab.run("dut", "bridge", "-j", "link", "show", check=False).stdout or "[]"
        states = [p.get("state") for p in json.loads(out)]
        if len(states) == 2 and all(s == "forwarding" for s in states):
            return
        time.sleep(0.1)
    raise BenchError("linux bridge: ports not forwarding after 10 s")


def testpmd_counts(text: str) -> dict:
    """What testpmd says it forwarded dut0 -> dut1 (its final forward statistics)."""
    out = {}
    for port, key, field in ((0, "dut_rx", "RX-packets"), (1, "dut_tx", "TX-packets"),
                             (1, "dut_tx_dropped", "TX-dropped")):
        blocks = re.findall(rf"Forward statistics for port {port}\s*-+(.*?)-{{10,}}", text, re.S)
        m = re.search(rf"{field}:\s*(\d+)", blocks[-1]) if blocks else None
        if m:
            out[key] = int(m[1])
    return out


def measure(lab: Lab, name: str, seconds: float) -> dict:
    """One run of one path: offered Mpps at dut0 and forwarded Mpps at sink0."""
    path = Path_(lab, name)
    gen = None
    ceiling = name == CEILING
    offered = Counter(lab, "dut", "dut0", drop=ceiling)
    sink = None if ceiling else Counter(lab, "sink", "sink0", drop=lab.sink == "xdp")
    try:
        path.up()
        before = (sink or offered).read()
        gen_cpu = lab.cpus[0] if lab.cpus else None
        gen = lab.nmroute("gen", "generator", ["run", str(gen_yaml(lab))], gen_cpu)
        gen.wait_for(r"\brunning\b")
        time.sleep(WARMUP)
        procs = {"gen": gen, "dut": path.proc}
        c0 = {k: cpu_seconds(p) for k, p in procs.items()}
        o0, s0 = offered.read(), (sink or offered).read()
        time.sleep(seconds)
        o1, s1 = offered.read(), (sink or offered).read()
        c1 = {k: cpu_seconds(p) for k, p in procs.items()}
        gen.stop()
        time.sleep(0.2)        # frames still in the rings reach the sink
        after = (sink or offered).read()
    finally:
        if gen is not None:
            gen.stop()
        dut = path.down()
        offered.close()
        if sink is not None:
            sink.close()
    r = {"path": name, "seconds": s1[0] - s0[0],
         "frames": s1[1] - s0[1], "mpps": (s1[1] - s0[1]) / (s1[0] - s0[0]) / 1e6,
         "offered_mpps": (o1[1] - o0[1]) / (o1[0] - o0[0]) / 1e6,
         "sink_rx_dropped": s1[2] - s0[2], "run_frames": after[1] - before[1], **dut}
    for k in procs:
        if c0[k] is not None and c1[k] is not None:
            r[f"{k}_cpu"] = (c1[k] - c0[k]) / (s1[0] - s0[0])
    return r


def cpu_seconds(proc: Proc | None, tree: bool = False) -> float | None:
    """User + system CPU seconds of a process (all its threads) so far; with
    `tree`, of its running descendants too (trafgen forks one per CPU). The
    kernel's receive work that runs inside its syscalls counts as its own."""
    if proc is None:
        return None
    total, todo, first = 0.0, [proc.pid], True
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            kids = []
            if tree:
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as f:
                        kids += [int(x) for x in f.read().split()]
        except OSError:
            if first:
                return None
            continue            # a child that just exited
        first = False
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        todo += kids
    return total


def median_run(runs: list[dict]) -> dict:
    m = sorted(runs, key=lambda r: r["mpps"])[(len(runs) - 1) // 2]
    return {"path": m["path"], "mpps": statistics.median(r["mpps"] for r in runs),
            "offered_mpps": _median(runs, "offered_mpps"),
            "runs": [round(r["mpps"], 4) for r in runs], "frames": m["frames"],
            "gen_cpu": _median(runs, "gen_cpu"), "dut_cpu": _median(runs, "dut_cpu")}


def _median(runs: list[dict], key: str) -> float | None:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


# -- iperf3 -----------------------------------------------------------------------------

def iperf(lab: Lab, name: str, seconds: float) -> dict:
    path = Path_(lab, name)
    srv = None
    try:
        path.up()
        srv = lab.start("sink", "iperf3 server",
                        ["iperf3", "-s", "-1", "--forceflush", "-B", SINK_ADDR])
        srv.wait_for(r"Server listening")
        r = None
        for _ in range(3):      # the first SYN can wait for ARP through the DUT
            r = lab.run("gen", "iperf3", "-c", SINK_ADDR, "-t", f"{seconds:g}", "-J",
                        "--connect-timeout", "3000", check=False, timeout=seconds + 30)
            if r.returncode == 0:
                break
            time.sleep(0.5)
        if r.returncode:
            try:
                err = json.loads(r.stdout).get("error", "")
            except ValueError:
                err = (r.stderr or r.stdout).strip()[-200:]
            raise BenchError(f"iperf3 through {name} failed: {err}")
        end = json.loads(r.stdout)["end"]
        return {"path": name, "gbits": end["sum_received"]["bits_per_second"] / 1e9,
                "retransmits": end.get("sum_sent", {}).get("retransmits")}
    finally:
        if srv is not None:
            srv.stop(3)
        path.down()


# -- --pktgen: generators against each other ----------------------------------------------

PKTGEN_HELP = """\
--pktgen: generators on gen0, counted at sink0 (one veth pair, two queues a side):
    ceiling        in-kernel: an XDP_TX program run by BPF_PROG_RUN in live-frames mode
                   (what xdp-trafficgen does); sink0 drops in XDP (needed: XDP frames
                   sent into a veth are dropped unless its peer runs XDP)
    pktgen-xdp     nmroute pkt-gen -i xdp:gen0 -f tx -l 60
    pktgen-packet  nmroute pkt-gen -i packet:gen0 -f tx -l 60
    trafgen        netsniff-ng trafgen -o gen0 --cpus 1 (AF_PACKET, qdisc bypass)
    pktgen-xdp-x2  two pkt-gen processes, xdp:gen0@0 and xdp:gen0@1, one per CPU
    trafgen-x2     trafgen --cpus 2
"""


def trafgen_cfg(lab: Lab) -> Path:
    """The frame of udp_frame(), in trafgen's language (it fills the checksums)."""
    path = lab.tmp / "trafgen.cfg"
    path.write_text(f"{{ eth(da={dst_mac(lab)}, sa={lab.macs['gen0']}), "
                    f"ipv4(sa={GEN_ADDR}, da={SINK_ADDR}, ttl=64), udp(sp=1024, dp=9), "
                    f"fill(0, {60 - 14 - 20 - 8}) }}\n")
    return path


def pktgen_argv(lab: Lab, port: str) -> list[str]:
    return ["pkt-gen", "-i", port, "-f", "tx", "-l", "60", "-s", f"{GEN_ADDR}:1024",
            "-d", f"{SINK_ADDR}:9", "-S", lab.macs["gen0"], "-D", dst_mac(lab), "-w", "0"]


def start_generators(lab: Lab, name: str, procs: list[Proc]) -> None:
    """Start the generator(s) of one --pktgen path into `procs` (so that the
    caller stops those started even when a later one fails); return once
    they send."""
    cpus = lab.cpus or (None, None)
    if name == PKTGEN_CEILING:
        p = lab.start("gen", "live-frames generator",
                      [sys.executable, "-m", "nmroute.tools.livebench", "--live-gen", "gen0",
                       "--src-mac", lab.macs["gen0"], "--dst-mac", dst_mac(lab)], cpus[0])
        procs.append(p)
        i = p.wait_for(r"^(running|error )")
        if p.lines[i].startswith("error "):
            raise BenchError(p.lines[i][6:])
    elif name in ("pktgen-xdp", "pktgen-packet"):
        kind = name.split("-")[1]
        procs.append(lab.nmroute("gen", f"pkt-gen ({kind})", pktgen_argv(lab, f"{kind}:gen0"),
                                 cpus[0]))
    elif name == "pktgen-xdp-x2":
        for q in range(2):
            procs.append(lab.nmroute("gen", f"pkt-gen (xdp@{q})",
                                     pktgen_argv(lab, f"xdp:gen0@{q}"), cpus[q]))
    elif name in ("trafgen", "trafgen-x2"):
        n = 2 if name == "trafgen-x2" else 1
        # trafgen forks one process per CPU and pins process i to CPU i itself.
        # --no-sock-mem: leave the machine's socket memory sysctls alone.
        procs.append(lab.start("gen", name, ["trafgen", "-o", "gen0", "-i", str(trafgen_cfg(lab)),
                                             "--cpus", str(n), "--no-sock-mem",
                                             "--notouch-irq"]))
    else:
        raise BenchError(f"unknown path '{name}'")
    for p in procs:
        if p.name.startswith("pkt-gen"):
            p.wait_for(r"^Sending on ")
        elif p.name.startswith("trafgen"):
            p.wait_for(r"Running!")


def generator_sent(procs: list[Proc]) -> int | None:
    """Frames the generators say they sent (pkt-gen's and trafgen's totals)."""
    total, seen = 0, False
    for p in procs:
        for m in re.finditer(r"^Sent (\d+) packets|^\s*(\d+) packets outgoing", p.text(), re.M):
            total += int(m[1] or m[2])
            seen = True
    return total if seen else None


def pktgen_measure(lab: Lab, name: str, seconds: float) -> dict:
    """One run of one generator: Mpps counted at sink0."""
    for h, d in (("gen", "gen0"), ("sink", "sink0")):
        lab.offloads_off(h, d)     # attaching XDP to one side changes the other's
    sink = Counter(lab, "sink", "sink0", drop=name == PKTGEN_CEILING or lab.sink == "xdp")
    procs: list[Proc] = []
    try:
        before = sink.read()
        start_generators(lab, name, procs)
        time.sleep(WARMUP)
        c0 = [cpu_seconds(p, tree=True) for p in procs]
        s0 = sink.read()
        time.sleep(seconds)
        s1 = sink.read()
        c1 = [cpu_seconds(p, tree=True) for p in procs]
        codes = [p.stop() for p in procs]
        time.sleep(0.2)        # frames still in the rings reach the sink
        after = sink.read()
    finally:
        for p in procs:
            p.stop()
        sink.close()
    dt = s1[0] - s0[0]
    r = {"path": name, "seconds": dt, "frames": s1[1] - s0[1], "mpps": (s1[1] - s0[1]) / dt / 1e6,
         "sink_rx_dropped": s1[2] - s0[2], "run_frames": after[1] - before[1],
         "gen_sent": generator_sent(procs)}
    if None not in c0 and None not in c1:
        r["gen_cpu"] = (sum(c1) - sum(c0)) / dt
    bad = [f"{p.name} exit {c}: {p.tail()}" for p, c in zip(procs, codes)
           if c not in (0, -signal.SIGINT, 130)]
    if bad:
        r["gen_error"] = "; ".join(bad)
    return r


def pktgen_missing(paths: list[str], cpus) -> dict:
    """Why the paths that cannot run here cannot."""
    skipped = {}
    try:
        import nmroute.fastpath.ports.xdp  # noqa: F401
    except ImportError:
        for n in ("pktgen-xdp", "pktgen-xdp-x2"):
            skipped[n] = "the xdp: port is not built (libxdp-dev missing at build time)"
    if shutil.which("trafgen") is None:
        for n in ("trafgen", "trafgen-x2"):
            skipped[n] = "netsniff-ng's trafgen not installed (Debian: apt install netsniff-ng)"
    if cpus is None:
        for n in ("pktgen-xdp-x2", "trafgen-x2"):
            skipped.setdefault(n, "needs two CPUs")
    return {p: s for p, s in skipped.items() if p in paths}


def xdp_trafficgen_probe(lab: Lab) -> str | None:
    """Why xdp-trafficgen cannot be the ceiling here (None: it could be)."""
    if shutil.which("xdp-trafficgen") is None:
        return "xdp-trafficgen not installed (Debian: xdp-tools)"
    r = lab.run("gen", "xdp-trafficgen", "udp", "gen0", "-n", "1", check=False, timeout=20)
    if r.returncode == 0:
        return None
    lines = [ln.strip() for ln in (r.stderr + r.stdout).splitlines() if ln.strip()]
    btf = [ln for ln in lines if "BTF" in ln]
    return f"exit {r.returncode}: " + " / ".join((btf[:1] + lines[-1:]) or ["no output"])


def pktgen_table(results: dict, skipped: dict) -> str:
    by = {k: v["mpps"] for k, v in results.items()}
    ceiling = by.get(PKTGEN_CEILING)
    lines = [f"{'path':<14} {'Mpps':>8} {'/trafgen':>9} {'/ceiling':>9} {'gen-cpu':>8}  runs"]
    for name in (PKTGEN_CEILING, *PKTGEN_PATHS):
        if name in results:
            r = results[name]
            base = by.get("trafgen-x2" if name.endswith("-x2") else "trafgen")
            runs = " ".join(f"{x:.3f}" for x in r["runs"])
            lines.append(f"{name:<14} {r['mpps']:8.3f} {ratio(r['mpps'], base):>9} "
                         f"{ratio(r['mpps'], ceiling):>9} {_pct(r['gen_cpu']):>8}  {runs}")
        elif name in skipped:
            word = "unavailable" if name == PKTGEN_CEILING else "skipped"
            lines.append(f"{name:<14} {word:>8}  {skipped[name]}")
    return "\n".join(lines)


def pktgen_checks(runs: list[dict]) -> list[str]:
    notes = []
    for r in runs:
        run = f"{r['path']} (run {r.get('repeat', 0) + 1})"
        if "gen_error" in r:
            notes.append(f"{run}: the generator failed: {r['gen_error']}")
        if r.get("gen_sent") is not None and r["run_frames"] != r["gen_sent"]:
            notes.append(f"{run}: the sink counted {r['run_frames']} frames over the run, "
                         f"the generator says it sent {r['gen_sent']}")
        if r["sink_rx_dropped"]:
            notes.append(f"{run}: sink0 dropped {r['sink_rx_dropped']} frames it did not count")
    return notes


def take_turns(names, args, skipped: dict, all_runs: list, measure_one, line) -> dict:
    """args.repeat rounds in which every path not skipped runs once (so a
    slow spell on the machine touches them all), each run printed with
    line(name, run); a path whose run fails is skipped from then on.
    Returns {path: its median run}."""
    for rep in range(args.repeat):
        for name in names:
            if name in skipped:
                continue
            try:
                r = measure_one(name)
            except BenchError as e:
                skipped[name] = f"failed: {e}"
                print(f"  {name}: {skipped[name]}", flush=True)
                continue
            r["repeat"] = rep
            all_runs.append(r)
            print(f"  run {rep + 1}/{args.repeat} {line(name, r)}", flush=True)
    results = {}
    for name in names:
        runs = [r for r in all_runs if r["path"] == name]
        if runs and name not in skipped:
            results[name] = median_run(runs)
    return results


def run_pktgen(args) -> int:
    lab = Lab()
    lab.sink, lab.nice = args.sink, args.nice
    atexit.register(lab.close)
    old = signal.signal(signal.SIGTERM, _interrupt)
    all_runs: list[dict] = []
    results: dict = {}
    skipped = pktgen_missing(args.paths, lab.cpus)
    paths = [p for p in args.paths if p not in skipped]
    try:
        lab.build(pktgen=True)
        why = xdp_trafficgen_probe(lab)
        ceiling = ("xdp-trafficgen fails here, so BPF_PROG_RUN live frames from livebench "
                   f"({why})" if why else "BPF_PROG_RUN live frames from livebench")
        cpu = (f"generators on CPU {lab.cpus[0]} (x2: CPUs {lab.cpus[0]},{lab.cpus[1]})"
               if lab.cpus else "one CPU: nothing pinned")
        print(f"livebench --pktgen: 64-byte frames gen0 -> sink0, {args.seconds:g} s x "
              f"{args.repeat} per path after {WARMUP:g} s warm-up; {cpu}; ceiling: {ceiling}",
              flush=True)
        results = take_turns(
            (PKTGEN_CEILING, *paths), args, skipped, all_runs,
            lambda name: pktgen_measure(lab, name, args.seconds),
            lambda name, r: f"{name:<14} {r['mpps']:7.3f} Mpps at the sink; "
                            f"CPU gen {_pct(r.get('gen_cpu'))}")
    except KeyboardInterrupt:
        print("livebench: interrupted", file=sys.stderr)
        return 130
    except BenchError as e:
        print(f"livebench: {e}", file=sys.stderr)
        return 1
    finally:
        lab.close()
        signal.signal(signal.SIGTERM, old)
    print()
    print(pktgen_table(results, skipped))
    notes = pktgen_checks(all_runs)
    if why:
        notes.append(f"xdp-trafficgen: {why}")
    for n in notes:
        print(f"note: {n}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"mode": "pktgen", "seconds": args.seconds, "repeat": args.repeat,
             "cpus": lab.cpus, "results": results, "skipped": skipped, "runs": all_runs,
             "notes": notes}, indent=2) + "\n")
    return 0


# -- report -----------------------------------------------------------------------------

def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def _pct(x: float | None) -> str:
    return f"{100 * x:.0f}%" if x is not None else "-"


def table(results: dict, skipped: dict, iperfs: dict) -> str:
    by = {k: v["mpps"] for k, v in results.items()}
    lines = [f"{'path':<14} {'Mpps':>8} {'offered':>8} {'/testpmd':>9} {'/linux-br':>9} "
             f"{'gen-cpu':>8} {'dut-cpu':>8}  runs"]
    for name in (CEILING, *PATHS):
        if name in results:
            r = results[name]
            runs = " ".join(f"{x:.3f}" for x in r["runs"])
            lines.append(f"{name:<14} {r['mpps']:8.3f} {r['offered_mpps']:8.3f} "
                         f"{ratio(r['mpps'], by.get('testpmd')):>9} "
                         f"{ratio(r['mpps'], by.get('linux-bridge')):>9} "
                         f"{_pct(r['gen_cpu']):>8} {_pct(r['dut_cpu']):>8}  {runs}")
        elif name in skipped:
            lines.append(f"{name:<14} {'skipped':>8}  {skipped[name]}")
    if iperfs:
        lines.append("")
        lines.append(f"{'iperf3 path':<14} {'Gbit/s':>8} {'/linux-br':>9}  retransmits")
        base = iperfs.get("linux-bridge", {}).get("gbits")
        for name in IPERF_PATHS:
            if name in iperfs:
                r = iperfs[name]
                if "error" in r:
                    lines.append(f"{name:<14} {'failed':>8}  {r['error']}")
                    continue
                lines.append(f"{name:<14} {r['gbits']:8.2f} {ratio(r['gbits'], base):>9}  "
                             f"{r['retransmits']}")
    return "\n".join(lines)


def checks(runs: list[dict]) -> list[str]:
    """What the sink counted against what the DUT says it sent, per run; and
    where the DUT says frames were lost."""
    notes = []
    for r in runs:
        run = f"{r['path']} (run {r.get('repeat', 0) + 1})"
        if "dut_error" in r:
            notes.append(f"{run}: the DUT failed: {r['dut_error']}")
        if r.get("dut_tx") and r["run_frames"] != r["dut_tx"]:
            notes.append(f"{run}: the sink counted {r['run_frames']} frames over the run, "
                         f"the DUT says it sent {r['dut_tx']}")
        if r["sink_rx_dropped"]:
            notes.append(f"{run}: sink0 dropped {r['sink_rx_dropped']} frames it did not "
                         "count")
        kernel = r.get("dut_kernel_drops") or {}
        if sum(kernel.values()):
            why = ", ".join(f"{k}={v}" for k, v in kernel.items())
            notes.append(f"{run}: the kernel dropped {sum(kernel.values())} frames before the "
                         f"DUT's dut0 socket ({why})")
        if r.get("dut_tx_dropped"):
            notes.append(f"{run}: testpmd dropped {r['dut_tx_dropped']} frames at dut1 (tx full)")
    return notes


# -- main ---------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m nmroute.tools.livebench", description=__doc__,
                                 epilog=PKTGEN_HELP,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, metavar="N",
                    help="measured seconds per run, after 1 s of warm-up (default 5)")
    ap.add_argument("--repeat", type=int, default=3, metavar="N",
                    help="runs per path; the median is reported (default 3)")
    ap.add_argument("--only", metavar="NAME,...",
                    help=f"paths to run, of {', '.join((CEILING, *PATHS))}; with --pktgen, of "
                         f"{', '.join(PKTGEN_PATHS)} (default all; the generator's ceiling is "
                         "always measured)")
    ap.add_argument("--pktgen", action="store_true",
                    help="benchmark generators instead of forwarders: gen0 -> sink0 (below)")
    ap.add_argument("--iperf-seconds", type=float, default=5.0, metavar="N",
                    help="length of each iperf3 run; 0: no iperf3 (default 5)")
    ap.add_argument("--sink", choices=("stack", "xdp"), default="stack",
                    help="how sink0 takes the frames it counts: its stack drops them as "
                         "addressed to another host (default), or an XDP program drops them")
    ap.add_argument("--nice", type=int, default=0, metavar="N",
                    help="run the generator and the DUT at this nice level (-20..19), "
                         "e.g. -10 on a machine busy with other work (default 0)")
    ap.add_argument("--json", metavar="FILE", help="write every run's figures as JSON")
    ap.add_argument("--agent", metavar="IFACE", help=argparse.SUPPRESS)
    ap.add_argument("--drop", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--live-gen", metavar="IFACE", help=argparse.SUPPRESS)
    ap.add_argument("--src-mac", default="02:00:00:00:0a:01", help=argparse.SUPPRESS)
    ap.add_argument("--dst-mac", default=OTHER_MAC, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.repeat < 1 or args.iperf_seconds < 0:
        ap.error("--seconds must be > 0, --repeat >= 1, --iperf-seconds >= 0")
    if not -20 <= args.nice <= 19:
        ap.error(f"--nice: expected -20..19, got {args.nice}")
    ceiling, known = (PKTGEN_CEILING, PKTGEN_PATHS) if args.pktgen else (CEILING, PATHS)
    names = [n.strip() for n in (args.only or ",".join(known)).split(",") if n.strip()]
    bad = [n for n in names if n not in (ceiling, *known)]
    if bad:
        mode = " with --pktgen" if args.pktgen else ""
        ap.error(f"--only: unknown path '{bad[0]}'{mode} (paths: {', '.join((ceiling, *known))})")
    args.paths = [p for p in known if p in names]
    return args


def missing_tools(paths: list[str], iperf_seconds: float) -> tuple[list[str], dict]:
    """Paths that can run here, and why the others cannot."""
    skipped = {}
    try:
        import nmroute.fastpath.ports.xdp  # noqa: F401
    except ImportError:
        skipped["xdp"] = "the xdp: port is not built (libxdp-dev missing at build time)"
    if shutil.which("dpdk-testpmd") is None:
        skipped["testpmd"] = "dpdk-testpmd not installed (Debian: apt install dpdk)"
    if shutil.which("bridge") is None:
        skipped["linux-bridge"] = "iproute2's `bridge` not installed"
    return [p for p in paths if p not in skipped], {p: s for p, s in skipped.items()
                                                   if p in paths}


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run(args) -> int:
    paths, skipped = missing_tools(args.paths, args.iperf_seconds)
    if "xdp" in skipped:
        print(f"livebench: cannot run: the generator needs the xdp: port: {skipped['xdp']}",
              file=sys.stderr)
        return 1
    lab = Lab()
    lab.sink, lab.nice = args.sink, args.nice
    atexit.register(lab.close)
    old = signal.signal(signal.SIGTERM, _interrupt)
    all_runs: list[dict] = []
    results, iperfs = {}, {}
    try:
        lab.build()
        cpu = (f"generator on CPU {lab.cpus[0]}, DUT on CPU {lab.cpus[1]}" if lab.cpus
               else "one CPU: nothing pinned")
        print(f"livebench: 64-byte frames, {FLOWS} flows, {args.seconds:g} s x {args.repeat} "
              f"per path after {WARMUP:g} s warm-up; {cpu}", flush=True)
        results = take_turns(
            (CEILING, *paths), args, skipped, all_runs,
            lambda name: measure(lab, name, args.seconds),
            lambda name, r: f"{name:<13} {r['mpps']:7.3f} Mpps at the sink, "
                            f"{r['offered_mpps']:7.3f} offered; CPU gen "
                            f"{_pct(r.get('gen_cpu'))} DUT {_pct(r.get('dut_cpu'))}")
        if args.iperf_seconds and shutil.which("iperf3"):
            for name in IPERF_PATHS:
                if name in paths and name not in skipped:
                    try:
                        iperfs[name] = iperf(lab, name, args.iperf_seconds)
                    except BenchError as e:
                        iperfs[name] = {"path": name, "error": str(e)}
        elif args.iperf_seconds:
            print("livebench: iperf3 not installed: no TCP figures", flush=True)
    except KeyboardInterrupt:
        print("livebench: interrupted", file=sys.stderr)
        return 130
    except BenchError as e:
        print(f"livebench: {e}", file=sys.stderr)
        return 1
    finally:
        lab.close()
        signal.signal(signal.SIGTERM, old)
    print()
    print(table(results, skipped, iperfs))
    notes = checks(all_runs)
    for n in notes:
        print(f"note: {n}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"seconds": args.seconds, "repeat": args.repeat, "cpus": lab.cpus,
             "results": results, "skipped": skipped, "runs": all_runs,
             "iperf3": iperfs, "notes": notes}, indent=2) + "\n")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.agent:
        return agent(args.agent, args.drop)
    if args.live_gen:
        return live_gen(args.live_gen, args.src_mac, args.dst_mac, _LIVE_BATCH)
    if os.geteuid() != 0:
        print("livebench: needs root (creates network namespaces, attaches XDP programs, "
              "opens AF_XDP sockets); run it as root", file=sys.stderr)
        return EXIT_USAGE
    return run_pktgen(args) if args.pktgen else run(args)


if __name__ == "__main__":
    sys.exit(main())
