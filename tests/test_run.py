"""`nmroute run` as a whole: the --stats-json shape, exit codes, signals,
--duration, --stats-interval, pipelines joined by pipes; `check`, `graph`,
`elements`; and every element's documented Example, run."""
import json
import re
import signal
import subprocess
import threading
import time

import pytest
from helpers import (
    BAD_CONFIG,
    NO_PORT,
    OK,
    Result,
    assert_accounting,
    element_types,
    error_lines,
    kill_leftovers,
    nmroute_cmd,
    raw_records,
    read_pcap,
    run_cli,
    run_pipeline,
    run_subprocess,
    subprocess_env,
    write_yaml,
)
from scapy.utils import rdpcap

from nmroute import reference, registry
from nmroute.fastpath.drops import reason_names

LOC = r"p\.yaml:\d+:\d+: "


# --- --stats-json -------------------------------------------------------------------

def test_stats_json_shape(tmp_path):
    r = run_pipeline(tmp_path, """
        ports:
          src: "gen:count=100"
          out: sink
        elements:
          c: counter
          t: tee
        links:
          - src -> c -> t -> out
          - t [copy] -> drop
        """)
    s = r.stats
    assert set(s) == {"ports", "elements"}
    assert set(s["ports"]) == {"src", "out"}
    assert set(s["elements"]) == {"c", "t", "drop"}
    for p in s["ports"].values():
        assert set(p) == {"rx", "tx", "drops"}
        assert type(p["rx"]) is int and type(p["tx"]) is int and type(p["drops"]) is dict
    for e in s["elements"].values():
        assert set(e) == {"in", "out", "drops"}
        assert type(e["in"]) is int and type(e["out"]) is dict and type(e["drops"]) is dict
        assert all(type(v) is int for v in [*e["out"].values(), *e["drops"].values()])
    assert s == {
        "ports": {"src": {"rx": 100, "tx": 0, "drops": {}},
                  "out": {"rx": 0, "tx": 100, "drops": {}}},
        "elements": {"c": {"in": 100, "out": {"out": 100}, "drops": {}},
                     "t": {"in": 100, "out": {"out": 100, "copy": 100}, "drops": {}},
                     "drop": {"in": 100, "out": {}, "drops": {"drop": 100}}},
    }


def test_stats_json_names_of_several_pipelines(tmp_path):
    r = run_pipeline(tmp_path, """
        name: one
        ports: {src: "gen:count=5", p: "pipe:x"}
        links: ["src -> p"]
        """, """
        name: two
        ports: {p: "pipe:x"}
        elements: {c: counter}
        links: ["p -> c -> sink"]
        """)
    assert set(r.stats["ports"]) == {"one/src", "one/p", "two/p", "two/sink"}
    assert set(r.stats["elements"]) == {"two/c"}


# --- exit codes ---------------------------------------------------------------------

def test_exit_0(tmp_path):
    r = run_pipeline(tmp_path, 'ports: {src: "gen:count=1"}\nlinks: ["src -> sink"]\n')
    assert r.code == OK


def test_exit_2_config_error_with_location(tmp_path):
    r = run_pipeline(tmp_path, """
        ports:
          src: "gen:count=1"
        elements:
          c: countr
          d: {type: counter, bogus: 1}
        links:
          - src -> c -> d -> sinc
        """, expect=BAD_CONFIG)
    lines = error_lines(r)
    assert lines[0] == ("p.yaml:4:6: element 'c': unknown element type 'countr' "
                        "(did you mean 'counter'?)")
    assert len(lines) >= 3          # all errors at once, each with its location
    assert all(re.match(LOC, ln) for ln in lines), lines
    assert any("bogus" in ln for ln in lines) and any("sinc" in ln for ln in lines)
    assert r.stats is None and r.out == ""


def test_exit_2_from_check_too(tmp_path):
    write_yaml(tmp_path, 'ports: {src: "gen:count=1,size=20"}\nlinks: ["src -> sink"]\n')
    r = run_cli("check", "p.yaml", cwd=tmp_path)
    assert r.code == BAD_CONFIG
    assert re.match(LOC + r"port 'src' \(gen\): size: ", error_lines(r)[0]), r.err


def test_exit_3_port_cannot_open(tmp_path):
    (tmp_path / "adir").mkdir()
    r = run_pipeline(tmp_path, """
        ports:
          src: "gen:count=1"
          out: pcap:adir
        links:
          - src -> out
        """, expect=NO_PORT)
    assert error_lines(r) == ["out: cannot write adir: Is a directory"]
    assert "Traceback" not in r.err


def test_usage_error_is_exit_2(tmp_path):
    r = run_cli("run", cwd=tmp_path)
    assert r.code == BAD_CONFIG and "usage: nmroute run" in r.err


# --- signals, duration, intervals -----------------------------------------------------

def wait_for(stream, needle, timeout):
    """Read lines of `stream` (in a thread) until one holds `needle`."""
    seen, found = [], threading.Event()

    def reader():
        for line in stream:
            seen.append(line)
            if needle in line:
                found.set()
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    found.wait(timeout)
    return found.is_set(), seen, t


def test_sigint_mid_run_leaves_a_complete_pcap(tmp_path):
    write_yaml(tmp_path, """
        ports:
          src: "gen:count=0,rate=10000,size=60-300"
          out: pcap:out.pcap
        links:
          - src -> out
        """)
    p = subprocess.Popen(nmroute_cmd("run", "p.yaml", "--stats-json", "stats.json"),
                         cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        ok, err, reader = wait_for(p.stderr, "running", 20)
        assert ok, "".join(err)
        time.sleep(1.0)
        p.send_signal(signal.SIGINT)
        out = p.stdout.read()
        code = p.wait(timeout=15)
        reader.join(5)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
            kill_leftovers(p.pid)
    r = Result(code, out, "".join(err))
    assert code == OK, str(r)
    assert "stopping" in r.err and "SIGINT" in r.err
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert_accounting(stats)
    tx = stats["ports"]["out"]["tx"]
    assert 1000 < tx < 100_000
    pkts = rdpcap(str(tmp_path / "out.pcap"))
    assert len(pkts) == tx
    assert all(60 <= len(p) <= 300 for p in pkts)
    size = (tmp_path / "out.pcap").stat().st_size
    assert size == 24 + sum(16 + len(p) for p in pkts)      # no partial record at the end


def test_duration_stops_an_endless_gen(tmp_path):
    t0 = time.monotonic()
    r = run_pipeline(tmp_path, 'ports: {src: "gen:count=0"}\nlinks: ["src -> sink"]\n',
                     args=["--duration", "0.3"])
    elapsed = time.monotonic() - t0
    assert 0.3 <= elapsed < 10
    assert r.stats["ports"]["src"]["rx"] > 1000
    assert re.search(r"stopped_by='?duration", r.err), r.err


def test_stats_interval_prints_rates(tmp_path):
    r = run_pipeline(tmp_path, """
        ports:
          src: "gen:count=0,rate=20000,size=100"
          out: sink
        links:
          - src -> out
        """, args=["--duration", "0.75", "--stats-interval", "0.2"])
    rate = re.compile(r"^\s*(\S+): (rx|tx)\s+([\d.]+) (k|M|G)?pps\s+([\d.]+) (k|M|G)?bit/s$")
    lines = [ln for ln in r.out.splitlines() if rate.match(ln)]
    by_port = {}
    for ln in lines:
        m = rate.match(ln)
        by_port.setdefault(m.group(1), []).append(m)
    assert set(by_port) == {"src", "out"}
    assert 3 <= len(by_port["src"]) <= 4          # every 0.2 s for 0.75 s
    assert {m.group(2) for m in by_port["src"]} == {"rx"}
    assert {m.group(2) for m in by_port["out"]} == {"tx"}
    scale = {None: 1, "k": 1e3, "M": 1e6, "G": 1e9}
    for m in by_port["src"][1:]:     # the first interval includes start-up
        pps = float(m.group(3)) * scale[m.group(4)]
        bps = float(m.group(5)) * scale[m.group(6)]
        assert 5_000 < pps < 40_000
        assert bps == pytest.approx(pps * 800, rel=0.01)      # 100-byte frames


# --- pipes --------------------------------------------------------------------------

def test_two_pipelines_joined_by_a_pipe_lose_nothing(tmp_path):
    r = run_pipeline(tmp_path, """
        ports:
          src: "gen:count=100000"
          p: "pipe:x"
        links:
          - src -> p
        """, """
        ports:
          p: "pipe:x"
          out: sink
        elements:
          c: counter
        links:
          - p -> c -> out
        """)
    s = r.stats
    assert s["ports"]["a/src"] == {"rx": 100000, "tx": 0, "drops": {}}
    assert s["ports"]["a/p"] == {"rx": 0, "tx": 100000, "drops": {}}
    assert s["ports"]["b/p"] == {"rx": 100000, "tx": 0, "drops": {}}
    assert s["ports"]["b/out"] == {"rx": 0, "tx": 100000, "drops": {}}
    assert s["elements"]["b/c"] == {"in": 100000, "out": {"out": 100000}, "drops": {}}


def test_pipe_with_small_rings_keeps_frames_and_order(tmp_path):
    """Back-pressure through a pipe (64-slot rings, 256-frame batches): the
    frames that arrive are the frames sent, in order, byte for byte."""
    settings = "settings: {ring_size: 64, batch: 256}"
    run_pipeline(tmp_path, f"""
        {settings}
        ports:
          src: "gen:count=5000,size=60-400,sport=1-5000"
          p: "pipe:x"
        elements:
          tap: {{type: pcap-tap, file: sent.pcap, precision: ns}}
        links:
          - src -> tap -> p
        """, f"""
        {settings}
        ports:
          p: "pipe:x"
          out: {{port: pcap:got.pcap, precision: ns}}
        links:
          - p -> out
        """)
    sent = read_pcap(tmp_path / "sent.pcap")
    assert len(sent) == 5000
    assert read_pcap(tmp_path / "got.pcap") == sent


def test_pipe_chain_of_three_pipelines(tmp_path):
    r = run_pipeline(tmp_path, """
        ports: {src: "gen:count=3000", p: "pipe:ab"}
        links: ["src -> p"]
        """, """
        ports: {i: "pipe:ab", o: "pipe:bc"}
        elements: {t: tee}
        links: ["i -> t -> o", "t [copy] -> drop"]
        """, """
        ports: {p: "pipe:bc"}
        links: ["p -> sink"]
        """)
    assert r.stats["ports"]["c/sink"]["tx"] == 3000
    assert r.stats["elements"]["b/drop"]["drops"] == {"drop": 3000}


def test_pipe_without_its_other_end_is_an_error(tmp_path):
    r = run_pipeline(tmp_path, """
        ports:
          src: "gen:count=10"
          p: "pipe:x"
        links:
          - src -> p
        """, expect=BAD_CONFIG)
    assert error_lines(r) == [
        "p.yaml:3:3: port 'p' (pipe): pipe 'x' is written here but no other pipeline reads it"]


def test_pipe_read_by_two_pipelines_is_an_error(tmp_path):
    r = run_pipeline(tmp_path, 'ports: {s: "gen:count=1", p: "pipe:x"}\nlinks: ["s -> p"]\n',
                     'ports: {p: "pipe:x"}\nlinks: ["p -> sink"]\n',
                     'ports: {p: "pipe:x"}\nlinks: ["p -> sink"]\n', expect=BAD_CONFIG)
    assert error_lines(r) == ["c.yaml:1:9: port 'p' (pipe): pipe 'x' is already read by "
                              "pipeline 'b' at b.yaml:1:9"]


# --- files shared between ports and elements ---------------------------------------

def test_pcap_file_read_and_written_by_two_pipelines_is_a_config_error(tmp_path):
    run_pipeline(tmp_path, 'ports: {s: "gen:count=50", o: "pcap:in.pcap"}\n'
                           'links: ["s -> o"]\n')
    before = (tmp_path / "in.pcap").read_bytes()
    write_yaml(tmp_path, 'ports: {i: "pcap:in.pcap"}\nlinks: ["i -> sink"]\n', "a.yaml")
    write_yaml(tmp_path, 'ports: {s: "gen:count=5", o: "pcap:in.pcap"}\n'
                         'links: ["s -> o"]\n', "b.yaml")
    r = run_subprocess("run", "a.yaml", "b.yaml", cwd=tmp_path)
    assert (tmp_path / "in.pcap").read_bytes() == before, "the input file was overwritten"
    assert r.code == BAD_CONFIG, str(r)


def test_pcap_tap_onto_the_input_file_is_a_config_error(tmp_path):
    run_pipeline(tmp_path, 'ports: {s: "gen:count=50", o: "pcap:in.pcap"}\n'
                           'links: ["s -> o"]\n')
    before = (tmp_path / "in.pcap").read_bytes()
    r = run_pipeline(tmp_path, """
        ports:
          in: pcap:in.pcap
        elements:
          tap: {type: pcap-tap, file: in.pcap}
        links:
          - in -> tap -> sink
        """, expect=None, check=False)
    assert (tmp_path / "in.pcap").read_bytes() == before, "the input file was overwritten"
    assert r.code == BAD_CONFIG, str(r)


def test_buffer_size_not_a_multiple_of_64(tmp_path):
    write_yaml(tmp_path, 'settings: {buffer_size: 1000}\nports: {src: "gen:count=10"}\n'
                         'links: ["src -> sink"]\n')
    r = run_subprocess("run", "p.yaml", cwd=tmp_path)
    assert "Traceback" not in r.err, str(r)
    assert r.code in (OK, BAD_CONFIG), str(r)
    if r.code == BAD_CONFIG:
        assert re.match(r"p\.yaml:1:\d+: settings\.buffer_size: ", error_lines(r)[0]), str(r)


# --- check, graph, elements -----------------------------------------------------------

GRAPH = """
    ports:
      src: "gen:count=10"
      out: pcap:out.pcap
    elements:
      c: counter
      t: tee
    links:
      - src -> c -> t -> out
      - t [copy] -> drop
    """


def test_check_prints_the_graph(tmp_path):
    write_yaml(tmp_path, GRAPH)
    r = run_cli("check", "p.yaml", cwd=tmp_path)
    assert r.code == OK, str(r)
    lines = r.out.splitlines()
    assert lines[0] == "pipeline p (p.yaml)"
    assert lines[1] == "settings: batch=256 buffer_size=2048 ring_size=1024 zero_copy=True"
    links = lines[lines.index("links:") + 1:]
    assert [ln.strip() for ln in links if ln.strip()] == [
        "src -> c", "c -> t", "t [out] -> out", "t [copy] -> drop"]
    assert re.search(r"^\s+src\s+gen\s+rx\s+count=10$", r.out, re.M), r.out
    assert re.search(r"^\s+out\s+pcap\s+tx\s+file=out.pcap$", r.out, re.M), r.out
    assert not (tmp_path / "out.pcap").exists()       # check opens nothing


def test_graph_prints_dot(tmp_path):
    write_yaml(tmp_path, GRAPH)
    r = run_cli("graph", "p.yaml", cwd=tmp_path)
    assert r.code == OK, str(r)
    dot = r.out.strip()
    assert dot.startswith('digraph "p" {') and dot.endswith("}")
    edges = re.findall(r'^\s*"([^"]+)" -> "([^"]+)"', dot, re.M)
    assert edges == [("src", "c"), ("c", "t"), ("t", "out"), ("t", "drop")]
    assert re.search(r'"src" \[shape=box', dot) and re.search(r'"c" \[shape=ellipse', dot)
    assert not (tmp_path / "out.pcap").exists()


def test_elements_lists_every_element_and_port():
    r = run_cli("elements")
    assert r.code == OK
    for name, cls in [*registry.element_types().items(), *registry.port_kinds().items()]:
        assert re.search(rf"^  {re.escape(name)}\s+{re.escape(cls.SUMMARY)}$", r.out, re.M), name


def test_elements_counter_shows_its_reference():
    r = run_cli("elements", "counter")
    assert r.code == OK
    assert r.out.startswith("counter — count packets and bytes; pass them on")
    for section in ("Outputs:", "Params:", "Counters:", "Drops:", "Example:"):
        assert re.search(rf"^{section}$", r.out, re.M), section
    assert "    out: every packet" in r.out
    assert "    packets, bytes" in r.out


def test_elements_of_a_port_kind():
    r = run_cli("elements", "gen")
    assert r.code == OK
    assert r.out.startswith("gen — ")
    assert "count (" in r.out and "rate (" in r.out


def test_elements_unknown_type():
    r = run_cli("elements", "countr")
    assert r.code == BAD_CONFIG
    assert error_lines(r) == ["no element or port type 'countr' (did you mean 'counter'?)"]


ELEMENTS = sorted(registry.element_types())


@pytest.mark.parametrize("type_name", ELEMENTS)
def test_element_docstring_has_every_section(type_name):
    cls = registry.element_types()[type_name]
    s = reference.sections(cls)
    for name in ("Outputs", "Counters", "Drops", "Example"):
        assert s.get(name, "").strip(), f"{type_name}: section {name} missing or empty"
    for out in cls.OUTPUTS:
        assert re.search(rf"^{re.escape(out)}:", s["Outputs"], re.M), (type_name, out)
    for counter in getattr(cls, "COUNTERS", ()):
        assert re.search(rf"\b{re.escape(counter)}\b", s["Counters"]), (type_name, counter)
    reasons = set(reason_names().values())
    for line in s["Drops"].splitlines():
        m = re.match(r"([\w-]+(?::[\w-]+)?):\s", line)
        if m:
            assert m.group(1) in reasons, (type_name, line)


@pytest.mark.parametrize("type_name", ELEMENTS)
def test_element_example_runs(tmp_path, type_name):
    cls = registry.element_types()[type_name]
    text = reference.example(cls)
    assert text
    # Files the example names (under /tmp or relative) go into this test's directory.
    text = re.sub(r"(?<![\w.-])/tmp/([\w.-]+)", r"\1", text)
    r = run_pipeline(tmp_path, text)
    s = r.stats
    assert sum(p["rx"] for p in s["ports"].values()) > 0
    types = element_types(r.files, tmp_path)
    assert any(e["in"] > 0 for n, e in s["elements"].items() if types[n] == type_name), s
    for f in re.findall(r"[\w.-]+\.pcap\b", text):      # files it wrote hold frames
        assert len(raw_records(tmp_path / f)) > 0, f



@pytest.mark.parametrize("zero_copy", [True, False])
def test_zero_copy_setting_swaps_or_copies(tmp_path, zero_copy):
    """zero_copy: true moves frames into the sink's ring by swapping buffer
    indexes (the sink's slots end up holding the generator's buffers);
    false copies them (every slot keeps the buffer it had)."""
    from nmroute.config.pipeline import load_pipeline
    from nmroute.runtime import Runtime
    path = tmp_path / "p.yaml"
    path.write_text(f"settings: {{zero_copy: {str(zero_copy).lower()}, ring_size: 64}}\n"
                    'ports: {src: "gen:count=200", out: sink}\n'
                    "links: [src -> out]\n")
    rt = Runtime([load_pipeline(str(path))])
    rt.build()
    ring = rt.ports["out"].tx_ring
    before = {ring.slot(i)[0] for i in range(ring.num_slots)}
    rt.run()
    snap = rt.finish()
    after = {ring.slot(i)[0] for i in range(ring.num_slots)}
    assert snap["ports"]["out"]["tx"] == 200
    if zero_copy:
        assert after != before
    else:
        assert after == before
