"""Shared helpers for the pipeline tests: write a YAML pipeline, run
`nmroute run` (in-process or as a subprocess), read --stats-json and the
pcap files a run wrote, and check that every packet is accounted for.

Every test that runs a pipeline goes through `run_pipeline` (or calls
`assert_accounting` itself), so `rx == tx + drops` is checked on every run
by an oracle written here, independent of nmroute.runtime.check_accounting.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from scapy.config import conf
from scapy.utils import RawPcapNgReader, RawPcapReader, rdpcap

conf.verb = 0

REPO = Path(__file__).resolve().parents[1]

OK, FAILED, BAD_CONFIG, NO_PORT = 0, 1, 2, 3

# Element types whose every packet goes to every output (one copy per extra output).
FANOUT_TYPES = {"tee"}


# --- writing pipelines ------------------------------------------------------------

def write_yaml(tmp_path, text: str, name: str = "p.yaml") -> Path:
    """Write a dedented pipeline into tmp_path; returns its path."""
    path = Path(tmp_path) / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


# --- running ---------------------------------------------------------------------

@dataclass
class Result:
    code: int
    out: str
    err: str
    stats: dict | None = None
    files: list = field(default_factory=list)

    def __str__(self) -> str:  # shown by pytest when an assert on it fails
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def run_cli(*args, cwd=None) -> Result:
    """`nmroute ARGS` in this process (cli.main), stdout and stderr captured.

    cwd: directory to run in (relative paths in the YAML resolve from it)."""
    from nmroute import cli

    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main([str(a) for a in args])
            except SystemExit as e:       # argparse: usage errors, --help
                code = e.code if isinstance(e.code, int) else FAILED
    finally:
        os.chdir(old)
    return Result(code, out.getvalue(), err.getvalue())


def subprocess_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def nmroute_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "nmroute.cli", *(str(a) for a in args)]


def run_subprocess(*args, cwd=None, timeout=30) -> Result:
    """`python -m nmroute.cli ARGS` as a child process. One that does not end
    within `timeout` seconds is killed and fails the calling test."""
    import pytest

    p = subprocess.Popen(nmroute_cmd(*args), cwd=cwd, env=subprocess_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        kill_leftovers(p.pid)
        pytest.fail(f"nmroute {' '.join(map(str, args))} did not end within {timeout} s\n{err}")
    kill_leftovers(p.pid)       # one that crashed cannot remove its own
    return Result(p.returncode, out, err)


def kill_leftovers(pid: int) -> None:
    """Remove the counters file that an nmroute of ours, killed or crashed,
    left in /dev/shm."""
    path = Path(f"/dev/shm/nmroute.{pid}.stats")
    if path.exists():
        path.unlink()


def run_pipeline(tmp_path, *texts, args=(), expect=OK, check=True) -> Result:
    """Write each text as a pipeline file (a.yaml, b.yaml, ... or p.yaml for
    one), run them together in-process from tmp_path with --stats-json, and
    check the exit code (unless expect is None) and the accounting. The
    parsed JSON is `.stats`."""
    names = ["p.yaml"] if len(texts) == 1 else [f"{chr(97 + i)}.yaml" for i in range(len(texts))]
    files = [write_yaml(tmp_path, t, n) for t, n in zip(texts, names)]
    stats_path = Path(tmp_path) / "stats.json"
    if stats_path.exists():
        stats_path.unlink()
    r = run_cli("run", *[f.name for f in files], "--stats-json", stats_path, *args, cwd=tmp_path)
    r.files = files
    assert expect is None or r.code == expect, str(r)
    if stats_path.exists():
        r.stats = json.loads(stats_path.read_text())
    if expect == OK and check:
        assert r.stats is not None, str(r)
        assert_accounting(r.stats, element_types(files, tmp_path))
    return r


def error_lines(r: Result) -> list[str]:
    """The error lines a failed run printed, without the 'nmroute: ' that a
    single-line message carries."""
    lines = r.err.strip().splitlines()
    return [ln[len("nmroute: "):] if ln.startswith("nmroute: ") else ln for ln in lines]


def element_types(files, cwd) -> dict[str, str]:
    """Element name (as in --stats-json) -> type, from the pipeline files."""
    from nmroute.config.pipeline import load_pipelines

    old = os.getcwd()
    try:
        os.chdir(cwd)
        pipelines = load_pipelines([str(f) for f in files])
    finally:
        os.chdir(old)
    multi = len(pipelines) > 1
    return {(f"{p.name}/{n}" if multi else n): d.cls.TYPE
            for p in pipelines for n, d in p.elements.items()}


# --- accounting -------------------------------------------------------------------

def total_drops(stats: dict) -> int:
    return (sum(sum(p["drops"].values()) for p in stats["ports"].values())
            + sum(sum(e["drops"].values()) for e in stats["elements"].values()))


def tee_copies(stats: dict, types: dict) -> int:
    """Packets a fan-out element made: every packet once per output beyond the first."""
    n = 0
    for name, e in stats["elements"].items():
        if types.get(name) in FANOUT_TYPES:
            n += e["in"] * (len(e["out"]) - 1)
    return n


def assert_accounting(stats: dict, types: dict | None = None) -> None:
    """sum(port rx) + tee copies == sum(port tx) + all drops, and per element
    in == out + drops (in x outputs for a fan-out element)."""
    types = types or {}
    for name, e in stats["elements"].items():
        outs, drops = sum(e["out"].values()), sum(e["drops"].values())
        k = len(e["out"]) if types.get(name) in FANOUT_TYPES else 1
        assert e["in"] * k == outs + drops, f"element {name}: {e}"
    rx = sum(p["rx"] for p in stats["ports"].values())
    tx = sum(p["tx"] for p in stats["ports"].values())
    copies = tee_copies(stats, types)
    assert rx + copies == tx + total_drops(stats), (
        f"rx {rx} + copies {copies} != tx {tx} + drops {total_drops(stats)}: {stats}")


# --- pcap files -------------------------------------------------------------------

def ts_ns(t) -> int:
    """A scapy packet time (EDecimal or float) in integer nanoseconds."""
    return int(Decimal(str(t)) * 1_000_000_000)


def read_pcap(path) -> list[tuple[int, bytes]]:
    """(timestamp in ns, frame bytes) of every record, read by scapy's rdpcap."""
    return [(ts_ns(p.time), bytes(p)) for p in rdpcap(str(path))]


def pcap_header(path) -> dict:
    """The global header of a classic pcap file, read by hand."""
    data = Path(path).read_bytes()[:24]
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    magic, vmaj, vmin, _zone, _sig, snaplen, linktype = struct.unpack(endian + "IHHiIII", data)
    return {"magic": magic, "version": (vmaj, vmin), "snaplen": snaplen,
            "linktype": linktype, "nsec": magic == 0xA1B23C4D}


def raw_records(path) -> list[tuple[bytes, object]]:
    """(bytes, scapy metadata) for each record, pcap or pcapng, without dissecting."""
    head = Path(path).read_bytes()[:4]
    cls = RawPcapNgReader if head == b"\x0a\x0d\x0d\x0a" else RawPcapReader
    with cls(str(path)) as r:
        return list(r)


def write_pcap_bytes(path, frames, *, nsec=False, endian="<", linktype=1, snaplen=65535):
    """A classic pcap file written by hand: frames are (ts_ns, bytes)."""
    magic = 0xA1B23C4D if nsec else 0xA1B2C3D4
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for t, frame in frames:
        frac = t % 1_000_000_000 if nsec else (t % 1_000_000_000) // 1000
        out.append(struct.pack(endian + "IIII", t // 1_000_000_000, frac, len(frame),
                               len(frame)))
        out.append(frame)
    Path(path).write_bytes(b"".join(out))
