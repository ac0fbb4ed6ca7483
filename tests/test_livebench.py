"""nmroute.tools.livebench, live: a short run through the xdp bridge and the
Linux bridge (root only; skipped with the reason elsewhere).

Checks that the table parses, that each path delivered frames to the sink,
that the sink counted exactly what the nmroute bridge says it sent, that
iperf3 got through, and that the namespaces are gone afterwards. No speed
is asserted: the figures are printed.
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
    assert rows["xdp"][5] == f"{float(rows['xdp'][2]) / float(rows['linux-bridge'][2]):.2f}"
    assert rows["linux-bridge"][5] == "1.00" and rows["xdp"][4] == "-"   # no testpmd run
    iperf = {m[1]: m for m in map(IPERF_ROW.match, p.stdout.splitlines()) if m}
    assert set(iperf) == {"linux-bridge", "xdp"}, p.stdout
    assert all(float(m[2]) > 0 for m in iperf.values()), p.stdout

    data = json.loads(out_json.read_text())
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
