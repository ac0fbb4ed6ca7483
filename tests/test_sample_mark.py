"""sample and mark. sample: exactly which packets pass, across batches,
with and without `rest`. mark: seen downstream through `balance` with
`by: mark` (output = mark mod N), the one element that reads the mark."""
import pytest
from helpers import BAD_CONFIG, error_lines, raw_records, run_pipeline, write_pcap_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

T0 = 1_700_000_000_000_000_000


def numbered(n):
    """n distinct frames, frame i carrying i in its payload."""
    return [bytes.fromhex("020000000002020000000001" "88b5") + i.to_bytes(4, "big") + bytes(42)
            for i in range(n)]


def frames_of(path):
    return [f for f, _ in raw_records(path)]


# --- sample ---------------------------------------------------------------------------

@pytest.mark.parametrize("m, n, batch", [(1000, 10, 256), (1000, 7, 13), (999, 1000, 64),
                                         (50, 1, 8), (257, 2, 1)])
def test_sample_passes_every_nth_packet(tmp_path, m, n, batch):
    frames = numbered(m)
    write_pcap_bytes(tmp_path / "in.pcap", [(T0 + i, f) for i, f in enumerate(frames)])
    r = run_pipeline(tmp_path, f"""
        settings: {{batch: {batch}}}
        ports: {{in: pcap:in.pcap, out: pcap:out.pcap}}
        elements: {{s: {{type: sample, n: {n}}}}}
        links: [in -> s -> out]
        """)
    assert frames_of(tmp_path / "out.pcap") == frames[n - 1::n]
    s = r.stats["elements"]["s"]
    assert s["out"] == {"out": m // n}
    assert s["drops"] == ({"sampled-out": m - m // n} if m - m // n else {})


def test_sample_rest_output_gets_the_others_in_order(tmp_path):
    frames = numbered(500)
    write_pcap_bytes(tmp_path / "in.pcap", [(T0 + i, f) for i, f in enumerate(frames)])
    r = run_pipeline(tmp_path, """
        settings: {batch: 32}
        ports: {in: pcap:in.pcap, out: pcap:out.pcap, rest: pcap:rest.pcap}
        elements: {s: {type: sample, n: 3, rest: true}}
        links: [in -> s -> out, "s [rest] -> rest"]
        """)
    assert frames_of(tmp_path / "out.pcap") == frames[2::3]
    assert frames_of(tmp_path / "rest.pcap") == [f for i, f in enumerate(frames) if i % 3 != 2]
    assert r.stats["elements"]["s"] == {"in": 500, "out": {"out": 166, "rest": 334},
                                        "drops": {}}


def test_sample_counts_over_several_inputs(tmp_path):
    """Two gens merge into one sample: one in n of all the packets it sees."""
    r = run_pipeline(tmp_path, """
        ports: {a: "gen:count=1234", b: "gen:count=766", out: sink}
        elements: {s: {type: sample, n: 100}}
        links: [a -> s -> out, b -> s]
        """)
    assert r.stats["ports"]["out"]["tx"] == 20
    assert r.stats["elements"]["s"]["drops"] == {"sampled-out": 1980}


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(st.binary(min_size=1, max_size=100), min_size=1, max_size=60),
       n=st.integers(1, 9), batch=st.integers(1, 16))
def test_sample_takes_any_frame(tmp_path, frames, n, batch):
    """Runts and junk are sampled like any frame: sample reads no header."""
    write_pcap_bytes(tmp_path / "in.pcap", [(T0 + i, f) for i, f in enumerate(frames)])
    run_pipeline(tmp_path, f"""
        settings: {{batch: {batch}}}
        ports: {{in: pcap:in.pcap, out: pcap:out.pcap, rest: pcap:rest.pcap}}
        elements: {{s: {{type: sample, n: {n}, rest: true}}}}
        links: [in -> s -> out, "s [rest] -> rest"]
        """)
    assert frames_of(tmp_path / "out.pcap") == frames[n - 1::n]
    assert frames_of(tmp_path / "rest.pcap") == [f for i, f in enumerate(frames)
                                                 if i % n != n - 1]


@pytest.mark.parametrize("params, message", [
    ("n: 0", "n: expected an integer from 1"),
    ("n: 3, rest: maybe", "rest: expected true or false"),
    ("rest: true", "missing required param 'n'"),
])
def test_sample_bad_params(tmp_path, params, message):
    r = run_pipeline(tmp_path, f"""
        ports: {{src: "gen:count=1"}}
        elements: {{s: {{type: sample, {params}}}}}
        links: [src -> s -> drop]
        """, expect=BAD_CONFIG)
    assert any(message in ln for ln in error_lines(r)), r.err


def test_sample_rest_output_must_be_wired(tmp_path):
    r = run_pipeline(tmp_path, """
        ports: {src: "gen:count=1"}
        elements: {s: {type: sample, n: 2, rest: true}}
        links: [src -> s -> drop]
        """, expect=BAD_CONFIG)
    assert "rest" in r.err


# --- mark -----------------------------------------------------------------------------

def test_mark_is_seen_by_balance_by_mark(tmp_path):
    """Three sources marked 0, 6 and 2**32-1 meet in a balance by mark over
    4 outputs: each lands on its mark mod 4 (0, 2, 3), none elsewhere."""
    frames = numbered(90)
    for name, part in (("a", frames[:30]), ("b", frames[30:60]), ("c", frames[60:])):
        write_pcap_bytes(tmp_path / f"{name}.pcap", [(T0 + i, f) for i, f in enumerate(part)])
    r = run_pipeline(tmp_path, """
        ports:
          a: pcap:a.pcap
          b: pcap:b.pcap
          c: pcap:c.pcap
          o0: pcap:o0.pcap
          o1: pcap:o1.pcap
          o2: pcap:o2.pcap
          o3: pcap:o3.pcap
        elements:
          ma: {type: mark, value: 0}
          mb: {type: mark, value: 6}
          mc: {type: mark, value: 4294967295}
          lb: {type: balance, outputs: 4, by: mark}
        links:
          - a -> ma -> lb -> o0
          - b -> mb -> lb
          - c -> mc -> lb
          - lb [1] -> o1
          - lb [2] -> o2
          - lb [3] -> o3
        """)
    assert frames_of(tmp_path / "o0.pcap") == frames[:30]
    assert frames_of(tmp_path / "o1.pcap") == []
    assert frames_of(tmp_path / "o2.pcap") == frames[30:60]
    assert frames_of(tmp_path / "o3.pcap") == frames[60:]
    assert r.stats["elements"]["lb"]["out"] == {"0": 30, "1": 0, "2": 30, "3": 30}


def test_a_later_mark_overrides_an_earlier_one(tmp_path):
    r = run_pipeline(tmp_path, """
        ports: {src: "gen:count=100", o0: sink, o1: sink, o2: sink}
        elements:
          m1: {type: mark, value: 1}
          m2: {type: mark, value: 2}
          lb: {type: balance, outputs: 3, by: mark}
        links: [src -> m1 -> m2 -> lb -> o0, "lb [1] -> o1", "lb [2] -> o2"]
        """)
    assert r.stats["elements"]["lb"]["out"] == {"0": 0, "1": 0, "2": 100}


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(st.binary(min_size=1, max_size=80), min_size=1, max_size=40),
       value=st.integers(0, 2**32 - 1))
def test_mark_takes_any_frame(tmp_path, frames, value):
    write_pcap_bytes(tmp_path / "in.pcap", [(T0 + i, f) for i, f in enumerate(frames)])
    outs = "\n".join(f"  o{k}: pcap:o{k}.pcap" for k in range(5))
    r = run_pipeline(tmp_path, f"""
ports:
  in: pcap:in.pcap
{outs}
elements:
  m: {{type: mark, value: {value}}}
  lb: {{type: balance, outputs: 5, by: mark}}
links: [in -> m -> lb -> o0, "lb [1] -> o1", "lb [2] -> o2", "lb [3] -> o3", "lb [4] -> o4"]
""")
    assert frames_of(tmp_path / f"o{value % 5}.pcap") == frames
    assert r.stats["elements"]["m"] == {"in": len(frames), "out": {"out": len(frames)},
                                        "drops": {}}


@pytest.mark.parametrize("params, message", [
    ("value: -1", "value: expected an integer from 0 to 4294967295"),
    ("value: 4294967296", "value: expected an integer from 0 to 4294967295"),
    ("", "missing required param 'value'"),
])
def test_mark_bad_params(tmp_path, params, message):
    r = run_pipeline(tmp_path, f"""
        ports: {{src: "gen:count=1"}}
        elements: {{m: {{type: mark, {params}}}}}
        links: [src -> m -> drop]
        """, expect=BAD_CONFIG)
    assert any(message in ln for ln in error_lines(r)), r.err
