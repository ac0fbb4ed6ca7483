"""counter, tee, drop and pcap-tap: packets in, packets out per output.

Inputs are pcap files of scapy-built frames (or gen traffic); every output
goes to its own pcap file, read back and compared frame by frame."""
import re

from helpers import read_pcap, run_pipeline, write_pcap_bytes
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

T0 = 1_700_000_000_000_000_000


def input_frames(n=300):
    """(ts_ns, frame) of n scapy-built frames of varied sizes and protocols."""
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    frames = []
    for i in range(n):
        if i % 3 == 0:
            p = eth / IP(src="198.18.0.1", dst=f"198.19.0.{i % 250 + 1}") / UDP(
                sport=i, dport=9) / Raw(bytes([i % 256]) * (i % 97))
        elif i % 3 == 1:
            p = eth / IPv6(src="2001:2::1", dst="2001:2::2") / TCP(sport=i, dport=80) / Raw(
                b"t" * (i % 1400))
        else:
            p = eth / IP(src="198.18.0.2", dst="198.19.0.2", proto=253) / Raw(b"\x00" * 3)
        frames.append((T0 + i * 1_000_001, bytes(p)))
    return frames


def with_input(tmp_path, n=300):
    frames = input_frames(n)
    write_pcap_bytes(tmp_path / "in.pcap", frames, nsec=True)
    return frames


def summary_row(out: str, name: str) -> str:
    """The row of element `name` in the final table."""
    rows = [ln for ln in out.splitlines() if ln.split()[:1] == [name]]
    assert len(rows) == 1, out
    return rows[0]


# --- counter ------------------------------------------------------------------------

def test_counter_counts_packets_and_bytes(tmp_path):
    frames = with_input(tmp_path)
    r = run_pipeline(tmp_path, """
        ports:
          in: pcap:in.pcap
          out: {port: pcap:out.pcap, precision: ns}
        elements:
          c: counter
        links:
          - in -> c -> out
        """)
    n, nbytes = len(frames), sum(len(f) for _, f in frames)
    assert r.stats["elements"]["c"] == {"in": n, "out": {"out": n}, "drops": {}}
    assert summary_row(r.out, "c").endswith(f"packets={n}, bytes={nbytes}")
    assert read_pcap(tmp_path / "out.pcap") == frames


def test_counters_in_a_chain_see_the_same_traffic(tmp_path):
    r = run_pipeline(tmp_path, """
        ports:
          src: "gen:count=777,size=60-900"
          out: pcap:out.pcap
        elements:
          c1: counter
          c2: counter
        links:
          - src -> c1 -> c2 -> out
        """)
    nbytes = sum(len(f) for _, f in read_pcap(tmp_path / "out.pcap"))
    for name in ("c1", "c2"):
        assert r.stats["elements"][name] == {"in": 777, "out": {"out": 777}, "drops": {}}
        assert summary_row(r.out, name).endswith(f"packets=777, bytes={nbytes}")


# --- tee ----------------------------------------------------------------------------

def test_tee_sends_identical_frames_to_both_outputs(tmp_path):
    frames = with_input(tmp_path)
    r = run_pipeline(tmp_path, """
        ports:
          in: pcap:in.pcap
          a: {port: pcap:a.pcap, precision: ns}
          b: {port: pcap:b.pcap, precision: ns}
        elements:
          t: tee
        links:
          - in -> t -> a
          - t [copy] -> b
        """)
    n = len(frames)
    assert r.stats["elements"]["t"] == {"in": n, "out": {"out": n, "copy": n}, "drops": {}}
    assert r.stats["ports"]["a"]["tx"] == r.stats["ports"]["b"]["tx"] == n
    assert read_pcap(tmp_path / "a.pcap") == frames
    assert read_pcap(tmp_path / "b.pcap") == frames


def test_tees_in_a_row(tmp_path):
    """Copies of copies: three outputs of two tees, each the full input."""
    frames = with_input(tmp_path, 100)
    r = run_pipeline(tmp_path, """
        ports:
          in: pcap:in.pcap
          a: {port: pcap:a.pcap, precision: ns}
          b: {port: pcap:b.pcap, precision: ns}
          c: {port: pcap:c.pcap, precision: ns}
        elements:
          t1: tee
          t2: tee
          n: counter
        links:
          - in -> t1 -> a
          - t1 [copy] -> t2 -> n -> b
          - t2 [1] -> c
        """)
    for name in ("a", "b", "c"):
        assert read_pcap(tmp_path / f"{name}.pcap") == frames
    assert r.stats["elements"]["n"]["in"] == 100


def test_tee_copy_to_drop(tmp_path):
    frames = with_input(tmp_path, 50)
    r = run_pipeline(tmp_path, """
        ports:
          in: pcap:in.pcap
          a: {port: pcap:a.pcap, precision: ns}
        elements:
          t: tee
        links:
          - in -> t -> a
          - t [copy] -> drop
        """)
    assert read_pcap(tmp_path / "a.pcap") == frames
    assert r.stats["elements"]["drop"] == {"in": 50, "out": {}, "drops": {"drop": 50}}


def test_tee_into_one_port_twice(tmp_path):
    """Fan-in after a tee: every frame reaches the port twice."""
    frames = with_input(tmp_path, 40)
    r = run_pipeline(tmp_path, """
        ports:
          in: pcap:in.pcap
          out: {port: pcap:out.pcap, precision: ns}
        elements:
          t: tee
        links:
          - in -> t -> out
          - t [copy] -> out
        """)
    got = read_pcap(tmp_path / "out.pcap")
    assert sorted(got) == sorted(frames * 2)
    assert r.stats["ports"]["out"]["tx"] == 80


# --- drop ---------------------------------------------------------------------------

def test_drop_drops_everything_with_reason_drop(tmp_path):
    r = run_pipeline(tmp_path, """
        ports:
          src: "gen:count=300"
        links:
          - src -> drop
        """)
    assert r.stats["ports"]["src"] == {"rx": 300, "tx": 0, "drops": {}}
    assert r.stats["elements"]["drop"] == {"in": 300, "out": {}, "drops": {"drop": 300}}


def test_declared_drop_element_is_refused(tmp_path):
    r = run_pipeline(tmp_path, """
        ports:
          src: "gen:count=3"
        elements:
          drop: drop
        links:
          - src -> drop
        """, expect=2)
    assert "'drop' is the built-in discard element" in r.err


def test_output_wired_to_drop_explicitly(tmp_path):
    frames = with_input(tmp_path, 30)
    r = run_pipeline(tmp_path, """
        ports:
          in: pcap:in.pcap
        elements:
          c: counter
        links:
          - in -> c [out] -> drop
        """)
    assert r.stats["elements"]["c"] == {"in": 30, "out": {"out": 30}, "drops": {}}
    assert r.stats["elements"]["drop"] == {"in": 30, "out": {}, "drops": {"drop": 30}}
    assert r.stats["ports"]["in"]["rx"] == len(frames)


def test_drop_shared_by_several_chains(tmp_path):
    r = run_pipeline(tmp_path, """
        ports:
          s1: "gen:count=10"
          s2: "gen:count=20"
        elements:
          t: tee
        links:
          - s1 -> drop
          - s2 -> t -> drop
          - t [copy] -> drop
        """)
    assert r.stats["elements"]["drop"] == {"in": 50, "out": {}, "drops": {"drop": 50}}


# --- pcap-tap -----------------------------------------------------------------------

def test_pcap_tap_writes_what_passes_and_passes_it_on(tmp_path):
    frames = with_input(tmp_path)
    r = run_pipeline(tmp_path, """
        ports:
          in: pcap:in.pcap
          out: {port: pcap:out.pcap, precision: ns}
        elements:
          tap: {type: pcap-tap, file: tap.pcap, precision: ns}
          c: counter
        links:
          - in -> tap -> c -> out
        """)
    n = len(frames)
    assert read_pcap(tmp_path / "tap.pcap") == frames
    assert read_pcap(tmp_path / "out.pcap") == frames
    assert r.stats["elements"]["tap"] == {"in": n, "out": {"out": n}, "drops": {}}
    assert summary_row(r.out, "tap").endswith(f"written={n}, errors=0")


def test_pcap_tap_sees_only_its_branch(tmp_path):
    """A tap after a tee's copy output, with gen traffic: the tap file holds
    exactly the frames the other branch wrote, with µs timestamps."""
    r = run_pipeline(tmp_path, """
        ports:
          src: "gen:count=600,size=60-200,sport=1-600"
          out: {port: pcap:out.pcap, precision: ns}
        elements:
          t: tee
          tap: {type: pcap-tap, file: tap.pcap}
        links:
          - src -> t -> out
          - t [copy] -> tap -> drop
        """)
    out = read_pcap(tmp_path / "out.pcap")
    tap = read_pcap(tmp_path / "tap.pcap")
    assert len(out) == len(tap) == 600
    assert [f for _, f in tap] == [f for _, f in out]
    assert [t for t, _ in tap] == [t // 1000 * 1000 for t, _ in out]
    assert [Ether(f)[UDP].sport for _, f in tap] == list(range(1, 601))
    assert r.stats["elements"]["drop"]["drops"] == {"drop": 600}


def test_pcap_tap_snaplen(tmp_path):
    frames = with_input(tmp_path, 60)
    run_pipeline(tmp_path, """
        ports:
          in: pcap:in.pcap
        elements:
          tap: {type: pcap-tap, file: tap.pcap, snaplen: 64, precision: ns}
        links:
          - in -> tap -> sink
        """)
    assert read_pcap(tmp_path / "tap.pcap") == [(t, f[:64]) for t, f in frames]


def test_pcap_tap_in_a_missing_directory_is_a_config_error(tmp_path):
    r = run_pipeline(tmp_path, """
        ports:
          src: "gen:count=1"
        elements:
          tap: {type: pcap-tap, file: no/such/dir/tap.pcap}
        links:
          - src -> tap -> sink
        """, expect=2)
    assert re.match(r"(nmroute: )?p\.yaml:4:\d+: element 'tap' \(pcap-tap\): file: ", r.err), r.err
