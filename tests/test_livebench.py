"""nmroute.tools.livebench, live: a short run through the xdp bridge and the
Linux bridge, and a short --pktgen run (pkt-gen on xdp: against trafgen)
(root only; skipped with the reason elsewhere).

Checks that the tables parse, that each path delivered frames to the sink,
that the sink counted exactly what the nmroute bridge says it sent (and never
more than a generator says it sent), that iperf3 got through, and that the
namespaces are gone afterwards. No speed is asserted: the figures are printed.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from helpers import subprocess_env

MODULE = [sys.executable, "-m", "nmroute.tools.livebench"]

ROW = re.compile(r"^(generator|xdp|packet|linux-bridge|testpmd)\s+(\d+\.\d{3})\s+(\d+\.\d{3})\s+"
                 r"(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d+\.\d{3}(?: \d+\.\d{3})*)$")
IPERF_ROW = re.compile(r"^(linux-bridge|xdp|packet)\s+(\d+\.\d{2})\s+(\S+)\s+\S+$")


def _skip_reason():
    if sys.platform != "linux":
        return "livebench needs Linux network namespaces"
    if os.geteuid() != 0:
        return "livebench needs root (network namespaces, XDP, AF_XDP)"
    if shutil.which("ip") is None:
        return "livebench needs iproute2's `ip`"
    try:
        import nmroute.fastpath.ports.xdp  # noqa: F401
    except ImportError:
        return "the xdp: port is not built (libxdp-dev missing)"
    return None


def test_short_run_delivers_through_each_path(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    out_json = tmp_path / "lb.json"
    p = subprocess.Popen([*MODULE, "--seconds", "1", "--repeat", "1", "--only", "xdp,linux-bridge",
                          "--iperf-seconds", "1", "--json", out_json],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=subprocess_env())
    try:
        p.stdout, p.stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)      # livebench tears its namespaces down
            p.communicate(timeout=30)
    print(p.stdout)
    assert p.returncode == 0, p.stdout + p.stderr

    rows = {m[1]: m for m in map(ROW.match, p.stdout.splitlines()) if m}
    assert set(rows) == {"generator", "xdp", "linux-bridge"}, p.stdout
    data = json.loads(out_json.read_text())
    # Ratios come from the unrounded medians (the JSON's), not the printed Mpps.
    med = {k: v["mpps"] for k, v in data["results"].items()}
    assert rows["xdp"][5] == f"{med['xdp'] / med['linux-bridge']:.2f}"
    assert rows["linux-bridge"][5] == "1.00" and rows["xdp"][4] == "-"   # no testpmd run
    iperf = {m[1]: m for m in map(IPERF_ROW.match, p.stdout.splitlines()) if m}
    assert set(iperf) == {"linux-bridge", "xdp"}, p.stdout
    assert all(float(m[2]) > 0 for m in iperf.values()), p.stdout

    runs = {r["path"]: r for r in data["runs"]}
    assert set(runs) == {"generator", "xdp", "linux-bridge"}
    for name, r in runs.items():
        assert r["frames"] > 0, (name, r)           # delivered in the measured second
        assert f"{r['mpps']:.3f}" == rows[name][2]
    # The sink counted what the DUT sent, no more, no less.
    assert runs["xdp"]["run_frames"] == runs["xdp"]["dut_tx"] > 0, runs["xdp"]
    assert not [n for n in data["notes"] if "dropped" not in n], data["notes"]

    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"nmlb{p.pid}-" not in ns, ns


def test_not_root_one_line_exit_2():
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv (util-linux) is needed to drop root for this test")
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *MODULE]
    else:
        cmd = MODULE
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=subprocess_env(),
                       cwd="/")
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stdout == "" and len(p.stderr.splitlines()) == 1, p.stderr
    assert "needs root" in p.stderr


PKTGEN_ROW = re.compile(r"^(ceiling|pktgen-xdp|trafgen)\s+(\d+\.\d{3})\s+(\S+)\s+(\S+)\s+(\S+)\s+"
                        r"(\d+\.\d{3})$")
UNAVAILABLE = re.compile(r"^(ceiling|trafgen)\s+(unavailable|skipped)\s+(\S.*)$")


def test_pktgen_mode_short_run(tmp_path):
    """--pktgen: pkt-gen on xdp:gen0 (and trafgen, when installed) counted at
    sink0, plus the in-kernel ceiling or the reason it is unavailable."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    out_json = tmp_path / "pg.json"
    p = subprocess.Popen([*MODULE, "--pktgen", "--seconds", "1", "--repeat", "1",
                          "--only", "pktgen-xdp,trafgen", "--json", out_json],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=subprocess_env())
    try:
        p.stdout, p.stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)      # livebench tears its namespaces down
            p.communicate(timeout=30)
    print(p.stdout)
    assert p.returncode == 0, p.stdout + p.stderr

    lines = p.stdout.splitlines()
    rows = {m[1]: m for m in map(PKTGEN_ROW.match, lines) if m}
    gone = {m[1]: m[3] for m in map(UNAVAILABLE.match, lines) if m}
    expected = {"ceiling", "pktgen-xdp", "trafgen"}
    assert set(rows) | set(gone) == expected and not set(rows) & set(gone), p.stdout
    assert "pktgen-xdp" in rows, p.stdout
    if shutil.which("trafgen"):
        assert "trafgen" in rows, p.stdout
    else:
        assert "not installed" in gone["trafgen"], p.stdout
    data = json.loads(out_json.read_text())
    # Ratios come from the unrounded medians (the JSON's), not the printed Mpps.
    by = {k: v["mpps"] for k, v in data["results"].items()}
    assert set(by) == set(rows)
    for name, m in rows.items():
        assert m[3] == (f"{by[name] / by['trafgen']:.2f}" if "trafgen" in by else "-"), m[0]
        assert m[4] == (f"{by[name] / by['ceiling']:.2f}" if "ceiling" in by else "-"), m[0]

    runs = {r["path"]: r for r in data["runs"]}
    assert set(runs) == set(rows)
    for name, r in runs.items():
        assert r["frames"] > 0, (name, r)           # arrived at sink0 in the measured second
        assert f"{r['mpps']:.3f}" == rows[name][2]
        if r.get("gen_sent") is not None:           # the sink never counts more than was sent
            assert 0 < r["run_frames"] <= r["gen_sent"], (name, r)
    assert runs["pktgen-xdp"]["gen_sent"] is not None, runs["pktgen-xdp"]
    assert not [n for n in data["notes"] if "the generator failed" in n], data["notes"]

    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"nmlb{p.pid}-" not in ns, ns
