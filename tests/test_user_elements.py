"""Elements users write themselves, named in YAML by import path
('package.module:Class'): errors at load with file:line:col, a Cython element
built on first load and cached, Python elements called once per batch, and
the two example pipelines in pipelines/user/."""
import argparse
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import (
    BAD_CONFIG,
    REPO,
    assert_accounting,
    error_lines,
    nmroute_cmd,
    read_pcap,
    run_cli,
    run_pipeline,
    subprocess_env,
    write_pcap_bytes,
    write_yaml,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from nmroute import userelements
from nmroute.config.pipeline import load_pipeline
from nmroute.errors import ConfigError

USER = REPO / "pipelines" / "user"
T0 = 1_700_000_000_000_000_000
A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


@pytest.fixture(scope="module", autouse=True)
def build_cache(tmp_path_factory):
    """One build cache for this file: the first Cython load builds, later
    ones (same module, same source) reuse it."""
    d = tmp_path_factory.mktemp("build-cache")
    old = os.environ.get("NMROUTE_CACHE_DIR")
    os.environ["NMROUTE_CACHE_DIR"] = str(d)
    yield d
    if old is None:
        del os.environ["NMROUTE_CACHE_DIR"]
    else:
        os.environ["NMROUTE_CACHE_DIR"] = old


def write_module(directory, name: str, text: str) -> Path:
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load_errors(path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_pipeline(str(path))
    return [str(i) for i in e.value.issues]


def frames_in(tmp_path, frames, name="in.pcap"):
    """Write scapy frames as a ns pcap; returns their bytes."""
    raw = [bytes(f) for f in frames]
    write_pcap_bytes(tmp_path / name, [(T0 + i * 1000, b) for i, b in enumerate(raw)],
                     nsec=True)
    return raw


def frames_out(tmp_path, name) -> list[bytes]:
    return [b for _, b in read_pcap(tmp_path / name)]


def counter(out: str, element: str, name: str) -> int:
    """An element's own counter from the final table `nmroute run` prints."""
    rows = [ln for ln in out.splitlines() if ln.split()[:1] == [element]]
    assert len(rows) == 1, out
    for word in rows[0].split():
        if word.startswith(name + "="):
            return int(word.split("=")[1].rstrip(","))
    raise AssertionError(f"no counter {name} in {rows[0]!r}")


# --- errors at load, with file:line:col ------------------------------------------------

def one_element(tmp_path, type_text: str, extra: str = "") -> Path:
    """A pipeline whose element 'u' is on line 3, its type at column 13."""
    return write_yaml(tmp_path, f"""
        ports: {{src: "gen:count=10", out: pcap:never.pcap}}
        elements:
          u: {{type: {type_text}{extra}}}
        links: ["src -> u -> out"]
        """)


def test_module_not_found_names_the_module_and_the_search_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = one_element(tmp_path, '"nosuch_pkg.mod:Thing"')
    assert load_errors(p) == [
        f"{p}:3:13: element 'u': no module 'nosuch_pkg' (no nosuch_pkg.py, package or .pyx) "
        f"in {tmp_path} or the installed packages"]


def test_search_path_is_the_yaml_directory_then_the_current_one(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    p = one_element(tmp_path, '"nosuch_mod2:Thing"')
    assert load_errors(p) == [
        f"{p}:3:13: element 'u': no module 'nosuch_mod2' (no nosuch_mod2.py, package or .pyx) "
        f"in {tmp_path}, {work} or the installed packages"]
    # Found in the current directory when the YAML's has none.
    write_module(work, "cwd_elems.py", """
        from nmroute.fastpath.pyelement import PyElement
        class Pass(PyElement):
            def process_batch(self, batch):
                return 0
        """)
    p2 = one_element(tmp_path, '"cwd_elems:Pass"')
    assert load_pipeline(str(p2)).elements["u"].cls.TYPE == "cwd_elems:Pass"
    assert str(work) not in sys.path and str(tmp_path) not in sys.path


def test_missing_class_says_did_you_mean(tmp_path):
    write_module(tmp_path, "dym_elems.py", """
        from nmroute.fastpath.pyelement import PyElement
        class TtlGuard(PyElement):
            def process_batch(self, batch):
                return 0
        """)
    p = one_element(tmp_path, '"dym_elems:TtlGaurd"')
    assert load_errors(p) == [
        f"{p}:3:13: element 'u': module 'dym_elems' (dym_elems.py) has no 'TtlGaurd' "
        f"(did you mean 'TtlGuard'?)"]
    p = one_element(tmp_path, '"dym_elems:Other"')
    assert load_errors(p) == [
        f"{p}:3:13: element 'u': module 'dym_elems' (dym_elems.py) has no 'Other'; "
        f"its element classes: TtlGuard"]


def test_not_an_element_class(tmp_path):
    write_module(tmp_path, "nae_elems.py", """
        from nmroute.fastpath.pyelement import PyElement
        def helper():
            pass
        class Plain:
            pass
        class NoMethod(PyElement):
            pass
        """)
    where = f"{one_element(tmp_path, '0')}:3:13: element 'u': "
    tail = ("not an element class (a subclass of nmroute.fastpath.element.Element or "
            "nmroute.fastpath.pyelement.PyElement)")
    for text, msg in [
        ("nae_elems:helper", f"'nae_elems:helper' is a function, {tail}"),
        ("nae_elems:Plain", f"'nae_elems:Plain' is a class, {tail}"),
        ("nae_elems:PyElement", f"'nae_elems:PyElement' is a base class, {tail}"),
        ("nae_elems:NoMethod", "'nae_elems:NoMethod': NoMethod does not define "
                               "process_batch(self, batch)"),
        ("my.mod.Cls", "unknown element type 'my.mod.Cls'; a user's element is named by "
                       "import path 'package.module:Class'"),
        ("a:b:c", "'a:b:c' is not an import path; write 'package.module:Class', like "
                  "'myelements.ttl_guard:TtlGuard'"),
    ]:
        p = one_element(tmp_path, f'"{text}"')
        assert load_errors(p) == [where + msg], text


def test_import_error_in_the_module_gives_its_one_line_message(tmp_path):
    write_module(tmp_path, "boom_elems.py", """
        X = 1
        Y = X / 0
        """)
    write_module(tmp_path, "dep_elems.py", """
        import no_such_dependency_xyz
        """)
    write_module(tmp_path, "syn_elems.py", """
        def f(:
            pass
        """)
    where = f"{one_element(tmp_path, '0')}:3:13: element 'u': "
    for text, msg in [
        ("boom_elems:E", "importing 'boom_elems' failed: ZeroDivisionError: division by zero "
                         "(boom_elems.py:2)"),
        ("dep_elems:E", "importing 'dep_elems' failed: ModuleNotFoundError: No module named "
                        "'no_such_dependency_xyz' (dep_elems.py:1)"),
        ("syn_elems:E", "importing 'syn_elems' failed: SyntaxError: invalid syntax "
                        "(syn_elems.py, line 1) (syn_elems.py:1)"),
    ]:
        p = one_element(tmp_path, f'"{text}"')
        assert load_errors(p) == [where + msg], text


def test_build_failure_is_a_config_error_with_the_compilers_first_lines(tmp_path):
    write_module(tmp_path, "broken_elems/__init__.py", "")
    write_module(tmp_path, "broken_elems/bad.pyx", """
        from nmroute.fastpath.element cimport Element

        cdef class Bad(Element):
            cdef int process(self, Batch* b) noexcept nogil:
                return undefined_name
        """)
    p = one_element(tmp_path, '"broken_elems.bad:Bad"')
    (err,) = load_errors(p)
    assert err.startswith(f"{p}:3:13: element 'u': building bad.pyx failed: bad.pyx:4:27: "), err
    assert "'Batch' is not a type identifier" in err
    # `nmroute build-element` says the same, exit 2.
    r = build_element_cli(tmp_path / "broken_elems" / "bad.pyx")
    assert r[0] == BAD_CONFIG
    assert "building bad.pyx failed: bad.pyx:4:27: " in r[2]


def test_user_params_and_outputs_are_checked_like_built_ins(tmp_path):
    write_module(tmp_path, "prm_elems.py", """
        from nmroute.schema import Int, Param
        from nmroute.fastpath.pyelement import PyElement
        class Two(PyElement):
            OUTPUTS = ("out", "other")
            PARAMS = (Param("limit", Int(1, 10), "a limit"),)
            def process_batch(self, batch):
                return 0
        """)
    p = write_yaml(tmp_path, """
        ports: {src: "gen:count=10"}
        elements:
          u: {type: "prm_elems:Two", limt: 3}
          v: {type: "prm_elems:Two", limit: 11}
        links: ["src -> u [nope] -> v -> drop"]
        """)
    assert load_errors(p) == [
        f"{p}:3:30: element 'u' (prm_elems:Two): unknown param 'limt' (did you mean 'limit'?)",
        f"{p}:4:37: element 'v' (prm_elems:Two): limit: expected an integer from 1 to 10, "
        f"got 11",
        f"{p}:5:19: links[0]: element 'u' (prm_elems:Two) has no output 'nope'; its outputs "
        f"are: out, other",
    ]


def test_config_errors_come_before_any_port_opens(tmp_path):
    p = one_element(tmp_path, '"nosuch_pkg3:X"')
    r = run_cli("run", p, cwd=tmp_path)
    assert r.code == BAD_CONFIG
    assert error_lines(r) == [
        f"{p}:3:13: element 'u': no module 'nosuch_pkg3' (no nosuch_pkg3.py, package or "
        f".pyx) in {tmp_path} or the installed packages"]
    assert not (tmp_path / "never.pcap").exists()


# --- a Cython element, built on first load ----------------------------------------------

def build_element_cli(pyx) -> tuple[int, str, str]:
    """`nmroute build-element FILE` through userelements' own parser."""
    import contextlib
    import io
    ap = argparse.ArgumentParser(prog="nmroute")
    userelements.add_parser(ap.add_subparsers(dest="cmd"))
    args = ap.parse_args(["build-element", str(pyx)])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = args.fn(args)
    return code, out.getvalue(), err.getvalue()


def test_cython_element_is_built_on_first_load_and_cached(tmp_path, build_cache):
    # A copy of the example package: same module name and source as the
    # example pipeline's, so the test below finds this build in the cache.
    shutil.copytree(USER / "myelements", tmp_path / "myelements")
    pyx = tmp_path / "myelements" / "ttl_guard.pyx"
    name, so = userelements.build_paths(pyx)
    assert name == "myelements.ttl_guard" and so.parent.parent == build_cache
    assert not so.exists()
    p = write_yaml(tmp_path, """
        ports: {src: "gen:count=10", out: sink}
        elements: {g: {type: "myelements.ttl_guard:TtlGuard", min_ttl: 3}}
        links: ["src -> g -> out", "g [other] -> drop"]
        """)
    pipe = load_pipeline(str(p))
    assert so.exists(), "the first load builds into the cache"
    cls = pipe.elements["g"].cls
    assert cls.TYPE == "ttl-guard" and cls.__module__ == "myelements.ttl_guard"
    assert pipe.elements["g"].params == {"min_ttl": 3}
    assert not list(tmp_path.rglob("*.c")) and not list(tmp_path.rglob("*.so")), \
        "nothing is written beside the user's .pyx"
    built = so.stat().st_mtime_ns
    # A second load, in a new process, uses the build: the file is unchanged.
    t = time.monotonic()
    r = subprocess.run(nmroute_cmd("check", p), cwd=tmp_path, env=subprocess_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert so.stat().st_mtime_ns == built
    assert time.monotonic() - t < 10
    assert sorted(x.name for x in so.parent.iterdir()) == [so.name], "no work dir left"
    # build-element finds it up to date too.
    code, out, _ = build_element_cli(pyx)
    assert (code, out.strip()) == (0, str(so))
    assert so.stat().st_mtime_ns == built


def test_a_build_older_than_its_source_is_stale(tmp_path):
    pyx, pxd, so = tmp_path / "e.pyx", tmp_path / "e.pxd", tmp_path / "e.so"
    assert userelements.is_stale(so, pyx.parent / "missing.pyx")
    for f in (pyx, so):
        f.write_text("")
    os.utime(pyx, (1000, 1000))
    os.utime(so, (2000, 2000))
    assert not userelements.is_stale(so, pyx)
    pxd.write_text("")
    os.utime(pxd, (3000, 3000))
    assert userelements.is_stale(so, pyx), "a newer .pxd beside it counts"
    os.utime(pxd, (1000, 1000))
    os.utime(pyx, (3000, 3000))
    assert userelements.is_stale(so, pyx)
    # The cache key follows the content: an edited .pyx is a new build.
    pyx.write_text("# v1\n")
    k1 = userelements.build_paths(pyx, "e")[1]
    pyx.write_text("# v2\n")
    assert userelements.build_paths(pyx, "e")[1] != k1


# --- Python elements ----------------------------------------------------------------------

def udp(i, dport, payload=b""):
    return (Ether(src=A, dst=B) / IP(src="198.18.0.1", dst=f"198.19.0.{i % 200 + 1}")
            / UDP(sport=1000 + i, dport=dport) / Raw(payload))


def test_python_element_reads_and_rewrites_packets(tmp_path):
    write_module(tmp_path, "rw_elems.py", """
        from nmroute.fastpath.pyelement import PyElement
        class Rewrite(PyElement):
            '''Swaps the MACs and sets the last byte to the frame's length mod 256.'''
            def process_batch(self, batch):
                for i in range(batch.n):
                    f = batch.packet(i)
                    assert len(f) == batch.lengths[i]
                    f[0:6], f[6:12] = bytes(f[6:12]), bytes(f[0:6])
                    f[len(f) - 1] = len(f) % 256
        """)
    raw = frames_in(tmp_path, [udp(i, 9, bytes(range(i % 50 + 1))) for i in range(300)])
    r = run_pipeline(tmp_path, """
        settings: {batch: 64}
        ports: {in: pcap:in.pcap, out: {port: pcap:out.pcap, precision: ns}}
        elements: {rw: "rw_elems:Rewrite"}
        links: [in -> rw -> out]
        """)
    expect = [f[6:12] + f[0:6] + f[12:-1] + bytes([len(f) % 256]) for f in raw]
    assert frames_out(tmp_path, "out.pcap") == expect
    assert r.stats["elements"]["rw"] == {"in": 300, "out": {"out": 300}, "drops": {}}
    assert counter(r.out, "rw", "errors") == 0


def test_python_element_drops_and_chooses_outputs_per_packet(tmp_path):
    write_module(tmp_path, "steer_elems.py", """
        from nmroute.fastpath.pyelement import PyElement
        class Steer(PyElement):
            OUTPUTS = ("even", "odd")
            def process_batch(self, batch):
                outs, lengths = batch.outs, batch.lengths
                for i in range(batch.n):
                    dport = int.from_bytes(batch.packet(i)[36:38], "big")
                    if dport % 5 == 0:
                        batch.drop(i, "denied")
                    elif dport % 7 == 0:
                        outs[i] = batch.DROP          # reason: drop
                    elif dport % 11 == 0:
                        outs[i] = 9                   # no such output: bad-output
                    else:
                        outs[i] = dport % 2
        """)
    dports = list(range(1, 400))
    raw = frames_in(tmp_path, [udp(i, d) for i, d in enumerate(dports)])
    r = run_pipeline(tmp_path, """
        settings: {batch: 32}
        ports:
          in: pcap:in.pcap
          even: {port: pcap:even.pcap, precision: ns}
          odd: {port: pcap:odd.pcap, precision: ns}
        elements: {s: "steer_elems:Steer"}
        links: ["in -> s -> even", "s [odd] -> odd"]
        """)
    denied = [d for d in dports if d % 5 == 0]
    dropped = [d for d in dports if d % 5 and d % 7 == 0]
    bad = [d for d in dports if d % 5 and d % 7 and d % 11 == 0]
    kept = [(d, f) for d, f in zip(dports, raw) if d % 5 and d % 7 and d % 11]
    assert frames_out(tmp_path, "even.pcap") == [f for d, f in kept if d % 2 == 0]
    assert frames_out(tmp_path, "odd.pcap") == [f for d, f in kept if d % 2]
    assert r.stats["elements"]["s"]["drops"] == {
        "denied": len(denied), "drop": len(dropped), "bad-output": len(bad)}


def test_python_element_marks_and_in_ports_and_whole_batch_outputs(tmp_path):
    write_module(tmp_path, "mark_elems.py", """
        from nmroute.fastpath.pyelement import PyElement
        class SetMark(PyElement):
            def process_batch(self, batch):
                marks = batch.marks
                for i in range(batch.n):
                    marks[i] = batch.lengths[i] * 3 + batch.in_ports[i] * 0
        class ByMark(PyElement):
            OUTPUTS = ("small", "big")
            def process_batch(self, batch):
                if batch.n == 1:
                    return 1                      # a batch of one: all to 'big'
                outs = batch.outs
                for i in range(batch.n):
                    assert batch.marks[i] == batch.lengths[i] * 3
                    outs[i] = batch.marks[i] > 300
        """)
    raw = frames_in(tmp_path, [udp(i, 9, b"x" * (i * 7 % 120)) for i in range(129)])
    r = run_pipeline(tmp_path, """
        settings: {batch: 64}
        ports:
          in: pcap:in.pcap
          small: {port: pcap:small.pcap, precision: ns}
          big: {port: pcap:big.pcap, precision: ns}
        elements: {m: "mark_elems:SetMark", b: "mark_elems:ByMark"}
        links: ["in -> m -> b -> small", "b [big] -> big"]
        """)
    # 129 = 64 + 64 + 1: the last batch is all sent to 'big'.
    assert frames_out(tmp_path, "small.pcap") == [f for f in raw[:128] if len(f) * 3 <= 300]
    assert frames_out(tmp_path, "big.pcap") == [f for f in raw[:128] if len(f) * 3 > 300] + [
        raw[128]]
    assert counter(r.out, "b", "errors") == 0


def test_python_element_exceptions_are_counted_and_drop_their_batch(tmp_path):
    write_module(tmp_path, "err_elems.py", """
        from nmroute.fastpath.pyelement import PyElement
        class Fragile(PyElement):
            OUTPUTS = ("out", "other")
            calls = 0
            def process_batch(self, batch):
                type(self).calls += 1
                if type(self).calls % 3 == 0:
                    raise RuntimeError(f"call {type(self).calls} failed")
                if type(self).calls == 4:
                    return 5                      # not an output: an error too
                if type(self).calls == 5:
                    self.kept = batch.outs        # used after its call: released
                    return None
                if type(self).calls == 7:
                    self.kept[0] = 1
                return 1
        """)
    raw = frames_in(tmp_path, [udp(i, 9) for i in range(80)])
    r = run_pipeline(tmp_path, """
        settings: {batch: 8}
        ports:
          in: pcap:in.pcap
          out: {port: pcap:out.pcap, precision: ns}
          other: {port: pcap:other.pcap, precision: ns}
        elements: {f: "err_elems:Fragile"}
        links: ["in -> f -> out", "f [other] -> other"]
        """)
    # Calls 1..10 each get 8 packets. Failing: 3, 6, 9 (raise), 4 (returns 5), 7 (uses
    # a memoryview of call 5's batch: released).
    failed = [3, 4, 6, 7, 9]
    ok_other = [1, 2, 8, 10]
    batch = {c: raw[(c - 1) * 8:c * 8] for c in range(1, 11)}
    assert frames_out(tmp_path, "other.pcap") == [f for c in ok_other for f in batch[c]]
    assert frames_out(tmp_path, "out.pcap") == batch[5]
    assert counter(r.out, "f", "errors") == len(failed)
    assert r.stats["elements"]["f"]["drops"] == {"element-error": 8 * len(failed)}
    warnings = [ln for ln in r.err.splitlines() if "process_batch() failed" in ln]
    assert len(warnings) == 1, "logged at most once a second"
    assert "RuntimeError: call 3 failed" in warnings[0] and "err_elems.py:" in warnings[0]


def test_python_element_params_reach_configure(tmp_path):
    write_module(tmp_path, "cfg_elems.py", """
        from nmroute.schema import Int, Param
        from nmroute.fastpath.pyelement import PyElement
        class EveryNth(PyElement):
            PARAMS = (Param("nth", Int(1, 100), "keep every nth packet", 2),)
            def process_batch(self, batch):
                for i in range(batch.n):
                    if i % self.nth:
                        batch.drop(i, "sampled-out")
        """)
    raw = frames_in(tmp_path, [udp(i, 9) for i in range(40)])
    r = run_pipeline(tmp_path, """
        settings: {batch: 10}
        ports: {in: pcap:in.pcap, out: {port: pcap:out.pcap, precision: ns}}
        elements: {e: {type: "cfg_elems:EveryNth", nth: 5}}
        links: [in -> e -> out]
        """)
    assert frames_out(tmp_path, "out.pcap") == [f for i, f in enumerate(raw) if i % 10 % 5 == 0]
    assert r.stats["elements"]["e"]["drops"] == {"sampled-out": 32}


def test_an_unknown_drop_reason_is_an_error_of_the_batch(tmp_path):
    write_module(tmp_path, "why_elems.py", """
        from nmroute.fastpath.pyelement import PyElement
        class Why(PyElement):
            def process_batch(self, batch):
                batch.drop(0, "denyed")
        """)
    frames_in(tmp_path, [udp(i, 9) for i in range(5)])
    r = run_pipeline(tmp_path, """
        ports: {in: pcap:in.pcap, out: sink}
        elements: {w: "why_elems:Why"}
        links: [in -> w -> out]
        """)
    assert r.stats["elements"]["w"]["drops"] == {"element-error": 5}
    assert "unknown drop reason 'denyed' (did you mean 'denied'?)" in r.err


# --- the example pipelines in pipelines/user/ -----------------------------------------------

def quickstart_frames() -> list[bytes]:
    return [b for _, b in read_pcap(REPO / "pipelines" / "quickstart.pcap")]


def run_example(tmp_path, name):
    """Run pipelines/user/NAME as it is, from a directory that looks like the
    repository's root (so that its outputs land in tmp_path)."""
    (tmp_path / "pipelines").symlink_to(REPO / "pipelines")
    r = run_cli("run", f"pipelines/user/{name}", "--stats-json", "stats.json", cwd=tmp_path)
    assert r.code == 0, str(r)
    import json
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert_accounting(stats)
    return r, stats


def test_example_python_element_pipeline(tmp_path):
    r, stats = run_example(tmp_path, "python_element.yaml")
    frames = quickstart_frames()
    ip4 = [f for f in frames if Ether(f).haslayer(IP)]
    dns = [f for f in ip4 if Ether(f).haslayer(UDP) and Ether(f)[UDP].dport == 53]
    mac = bytes.fromhex("020000000053")
    assert frames_out(tmp_path, "user-steer-dns.pcap") == [mac + f[6:] for f in dns]
    assert frames_out(tmp_path, "user-steer-out.pcap") == [f for f in ip4 if f not in dns]
    assert stats["elements"]["steer"]["drops"] == {"not-ip": len(frames) - len(ip4)}
    assert dns and len(ip4) > len(dns)


def ttl_guard_reference(frame: bytes, min_ttl: int):
    """(output, frame) or ('drop', reason): what TtlGuard does, by scapy."""
    p = Ether(frame)
    if IP in p:
        if p[IP].ttl < min_ttl:
            return "drop", "ttl-expired"
        p[IP].ttl -= 1
        del p[IP].chksum
        return "out", bytes(p)
    if IPv6 in p:
        if p[IPv6].hlim < min_ttl:
            return "drop", "ttl-expired"
        p[IPv6].hlim -= 1
        return "out", bytes(p)
    return "other", frame


def test_example_cython_element_pipeline(tmp_path):
    r, stats = run_example(tmp_path, "cython_element.yaml")
    ref = [ttl_guard_reference(f, 2) for f in quickstart_frames()]
    assert frames_out(tmp_path, "user-ttl-out.pcap") == [f for o, f in ref if o == "out"]
    assert frames_out(tmp_path, "user-ttl-other.pcap") == [f for o, f in ref if o == "other"]
    assert counter(r.out, "guard", "decremented") == sum(o == "out" for o, _ in ref)


def test_cython_example_element_against_its_reference(tmp_path):
    """TTLs at and around min_ttl, IPv6, ARP, truncated frames."""
    frames = []
    for ttl in (0, 1, 2, 3, 64, 255):
        frames.append(Ether(src=A, dst=B) / IP(src="198.18.0.1", dst="198.19.0.1", ttl=ttl)
                      / TCP(dport=80))
        frames.append(Ether(src=A, dst=B) / IPv6(src="2001:2::1", dst="2001:2::2", hlim=ttl)
                      / UDP(dport=53))
    frames.append(Ether(src=A, dst=B) / ARP(psrc="198.18.0.1", pdst="198.18.0.2"))
    raw = frames_in(tmp_path, frames)
    truncated = [raw[0][:20], raw[1][:30], raw[0][:10]]
    write_pcap_bytes(tmp_path / "in.pcap", [(T0 + i, f) for i, f in enumerate(raw + truncated)],
                     nsec=True)
    shutil.copytree(USER / "myelements", tmp_path / "myelements")
    r = run_pipeline(tmp_path, """
        ports:
          in: pcap:in.pcap
          out: {port: pcap:out.pcap, precision: ns}
          other: {port: pcap:other.pcap, precision: ns}
        elements: {g: {type: "myelements.ttl_guard:TtlGuard", min_ttl: 3}}
        links: ["in -> g -> out", "g [other] -> other"]
        """)
    ref = [ttl_guard_reference(f, 3) for f in raw]
    assert frames_out(tmp_path, "out.pcap") == [f for o, f in ref if o == "out"]
    assert frames_out(tmp_path, "other.pcap") == [f for o, f in ref if o == "other"]
    assert r.stats["elements"]["g"]["drops"] == {
        "ttl-expired": sum(o == "drop" for o, _ in ref),
        "malformed:ipv4": 1, "malformed:ipv6": 1, "malformed:eth": 1}


def port_steer_reference(frame: bytes, dport: int, mac: bytes):
    """What PortSteer does, written again from its docstring."""
    if len(frame) < 14 or frame[12:14] != b"\x08\x00":
        return "drop", "not-ip"
    if len(frame) < 34:
        return "drop", "malformed:ipv4"
    ihl = (frame[14] & 15) * 4
    if ihl < 20 or len(frame) < 14 + ihl + 4:
        return "drop", "malformed:ipv4"
    if frame[23] == 17 and int.from_bytes(frame[14 + ihl + 2:14 + ihl + 4], "big") == dport:
        return "matched", mac + frame[6:]
    return "out", frame


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.integers(0, 3), st.binary(min_size=0, max_size=60)),
                min_size=1, max_size=40))
def test_python_example_with_random_frames(tmp_path_factory, items):
    """Random frames, and random bytes after a valid Ethernet + IPv4 (+ UDP
    to port 53) start, through the Python example: no crash, accounting
    exact, every output as a plain-Python rewrite of its rules says."""
    tmp_path = tmp_path_factory.mktemp("fuzz")
    ip_udp = bytes(Ether(src=A, dst=B) / IP(src="198.18.0.1", dst="198.19.0.1")
                   / UDP(dport=53))
    starts = [b"", ip_udp[:14], ip_udp[:34], ip_udp]
    frames = [starts[k] + b for k, b in items]
    frames = [f for f in frames if f]
    if not frames:
        return
    write_pcap_bytes(tmp_path / "in.pcap", [(T0 + i, f) for i, f in enumerate(frames)],
                     nsec=True)
    shutil.copytree(USER / "myelements", tmp_path / "myelements")
    r = run_pipeline(tmp_path, """
        ports:
          in: pcap:in.pcap
          out: {port: pcap:out.pcap, precision: ns}
          dns: {port: pcap:dns.pcap, precision: ns}
        elements: {s: {type: "myelements.pyfilter:PortSteer", dport: 53}}
        links: ["in -> s -> out", "s [matched] -> dns"]
        """)
    ref = [port_steer_reference(f, 53, bytes.fromhex("020000000099")) for f in frames]
    assert counter(r.out, "s", "errors") == 0
    assert frames_out(tmp_path, "out.pcap") == [f for o, f in ref if o == "out"]
    assert frames_out(tmp_path, "dns.pcap") == [f for o, f in ref if o == "matched"]
    drops = {}
    for o, why in ref:
        if o == "drop":
            drops[why] = drops.get(why, 0) + 1
    assert r.stats["elements"]["s"]["drops"] == drops
