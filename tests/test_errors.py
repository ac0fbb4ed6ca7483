"""One exception tree, one table of exit codes: the same failure gives the
same code in every command."""
import inspect

import pytest
from helpers import run_cli

from nmroute import errors


def test_every_failure_class_has_its_code_in_the_table():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass)
               if issubclass(c, errors.NmrouteError)]
    assert len(classes) >= 10
    for cls in classes:
        assert cls in errors.EXIT_CODES, f"{cls.__name__} has no exit code"
        assert errors.EXIT_CODES[cls] in (errors.FAILED, errors.BAD_CONFIG, errors.NO_PORT)


def test_the_most_specific_class_wins():
    assert errors.exit_code(errors.ParamError("x")) == errors.BAD_CONFIG
    assert errors.exit_code(errors.BpfError("x")) == errors.BAD_CONFIG
    assert errors.exit_code(errors.PortError("p", "why")) == errors.NO_PORT
    assert errors.exit_code(errors.RunError("x")) == errors.NO_PORT
    assert errors.exit_code(errors.NotRunning("x")) == errors.FAILED
    assert errors.exit_code(ValueError("x")) == errors.FAILED


def test_a_param_error_group_keeps_each_problem_at_its_place():
    a = errors.ParamError("bad a", (0, "dst"))
    b = errors.ParamError("bad b", (2,))
    g = errors.ParamError.group([a, b]).within("rules")
    assert [e.path for e in g.issues] == [("rules", 0, "dst"), ("rules", 2)]
    assert str(g) == "bad a; bad b"
    assert errors.ParamError.group([a]) is a


@pytest.fixture
def not_a_pcap(tmp_path):
    path = tmp_path / "junk.pcap"
    path.write_bytes(b"this is not a capture file at all")
    return path


def test_a_port_that_cannot_open_is_exit_3_in_run_and_pkt_gen(tmp_path, not_a_pcap):
    """pkt-gen exited 2 where run and bridge exit 3: one table now."""
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(f"ports:\n  i: pcap:{not_a_pcap}\nlinks:\n  - i -> sink\n")
    run = run_cli("run", str(pipeline))
    pg = run_cli("pkt-gen", "-i", f"pcap:{not_a_pcap}", "-f", "rx")
    for r in (run, pg):
        assert r.code == errors.NO_PORT, r.err
        assert "not a pcap or pcapng file" in r.err
        assert len(r.err.strip().splitlines()) == 1, r.err
    assert pg.err.startswith("nmroute: pkt-gen: ")


def test_bad_configuration_is_exit_2_in_run_check_and_bridge(tmp_path):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text("ports:\n  i: gen:count=1\nelements:\n  f: {type: filter, rules: "
                        "[{action: allow, dst: 198.18.0.7/24}]}\nlinks:\n  - i -> f -> sink\n")
    for argv in (("run", str(pipeline)), ("check", str(pipeline))):
        r = run_cli(*argv)
        assert r.code == errors.BAD_CONFIG, r.err
        assert "has host bits set (did you mean '198.18.0.0/24'?)" in r.err
    r = run_cli("bridge", "-i", "gen:count=1", "-i", "sink", "-i", "sink")
    assert r.code == errors.BAD_CONFIG
    r = run_cli("elements", "filterr")
    assert r.code == errors.BAD_CONFIG and "did you mean 'filter'" in r.err
