"""`nmroute stats` reads the counters of a running nmroute from shared memory."""
import json
import os
import signal
import subprocess
import sys
import time

NMROUTE = [sys.executable, "-m", "nmroute.cli"]


def test_stats_reads_a_running_process(tmp_path):
    pipeline = tmp_path / "endless.yaml"
    pipeline.write_text('ports: {src: "gen:rate=100000", out: sink}\n'
                        "elements: {c: counter}\nlinks: [src -> c -> out]\n")
    proc = subprocess.Popen([*NMROUTE, "run", str(pipeline)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        path = f"/dev/shm/nmroute.{proc.pid}.stats"
        deadline = time.monotonic() + 20
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.exists(path), "the counters file never appeared"
        time.sleep(0.3)
        first = json.loads(subprocess.run([*NMROUTE, "stats", "--pid", str(proc.pid), "--json"],
                                          capture_output=True, text=True, check=True).stdout)
        time.sleep(0.3)
        r = subprocess.run([*NMROUTE, "stats", "--pid", str(proc.pid), "--json"],
                           capture_output=True, text=True, check=True)
        second = json.loads(r.stdout)
        table = subprocess.run([*NMROUTE, "stats", "--pid", str(proc.pid)],
                               capture_output=True, text=True, check=True).stdout
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert 0 < first["ports"]["src"]["rx"] < second["ports"]["src"]["rx"]
    assert second["elements"]["c"]["in"] > 0
    assert set(second["ports"]) == {"src", "out"}
    assert "counter" in table and "packets=" in table
    # Gone with the process.
    assert not os.path.exists(path)


def test_stats_without_a_running_process():
    r = subprocess.run([*NMROUTE, "stats", "--pid", "999999"], capture_output=True, text=True)
    assert r.returncode == 1
    assert "no running nmroute found with pid 999999" in r.stderr


def test_bench_prints_mpps_for_every_case():
    r = subprocess.run([*NMROUTE, "bench", "--packets", "200000", "--repeat", "1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for case in ("gen -> sink", "gen -> 1 counters -> sink", "gen -> 8 counters -> sink",
                 "pcap -> sink"):
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith(case + " "))
        assert float(line.split()[-4]) > 0 and line.split()[-3] == "Mpps", line
    assert "cost of one element (8)" in r.stdout
    # Every case, the extra ones in nmroute/benchcases included, must carry its
    # traffic to its sink: a case that drops it all early measures too little
    # (the router case once sent everything to the filter's deny output).
    assert "reached out" not in r.stdout, r.stdout
    assert "router:" in r.stdout
