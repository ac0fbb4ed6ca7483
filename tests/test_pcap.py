"""pcap ports: replay pcap (µs, ns, either byte order) and pcapng files and
capture into pcap, frames and timestamps kept; loop, oversize frames,
truncated files, link types, missing files, snaplen."""
import json
import struct
import time
from decimal import Decimal

import pytest
from helpers import (
    BAD_CONFIG,
    NO_PORT,
    OK,
    Result,
    assert_accounting,
    error_lines,
    pcap_header,
    raw_records,
    read_pcap,
    run_pipeline,
    run_subprocess,
    write_pcap_bytes,
)
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw
from scapy.utils import PcapNgWriter, PcapWriter

T0 = 1_700_000_000_123_456_789      # ns


def sample_packets(n=12):
    """Assorted frames, each with a distinct timestamp of ns precision."""
    pkts = []
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")  # no ARP look-ups
    for i in range(n):
        kind = i % 4
        if kind == 0:
            p = eth / IP(
                src="198.18.0.1", dst="198.19.0.1") / UDP(sport=1000 + i, dport=53) / Raw(
                bytes(range(i * 7 % 200)))
        elif kind == 1:
            p = eth / IPv6(src="2001:2::1", dst="2001:2::2") / TCP(sport=i, dport=80) / Raw(
                b"x" * (i * 31))
        elif kind == 2:
            p = Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / ARP(
                hwsrc="02:00:00:00:00:01", psrc="198.18.0.1", pdst="198.18.0.2")
        else:
            p = eth / IP(src="198.18.0.3", dst="198.19.0.2") / Raw(b"\xab" * 1400)
        p.time = Decimal(T0 + i * 1_000_003_007) / 1_000_000_000
        pkts.append(p)
    return pkts


def frames_of(pkts):
    """(ts_ns, bytes) of scapy packets, as read_pcap gives them."""
    return [(int(p.time * 1_000_000_000), bytes(p)) for p in pkts]


def replay(tmp_path, infile, out_params="", in_params="", settings="", expect=OK, args=()):
    return run_pipeline(tmp_path, f"""
        {settings}
        ports:
          in: {{port: "pcap:{infile}"{in_params}}}
          out: {{port: "pcap:out.pcap"{out_params}}}
        links:
          - in -> out
        """, expect=expect, args=args)


def us(frames):
    """Timestamps cut to µs, as a µs pcap keeps them."""
    return [(t // 1000 * 1000, f) for t, f in frames]


# --- formats ------------------------------------------------------------------------

def test_pcap_us_written_by_scapy(tmp_path):
    pkts = sample_packets()
    w = PcapWriter(str(tmp_path / "in.pcap"))
    w.write(pkts)
    w.close()
    src = read_pcap(tmp_path / "in.pcap")
    assert [f for _, f in src] == [bytes(p) for p in pkts]
    r = replay(tmp_path, "in.pcap")
    assert r.stats["ports"]["in"]["rx"] == len(pkts)
    assert r.stats["ports"]["out"]["tx"] == len(pkts)
    assert read_pcap(tmp_path / "out.pcap") == src
    assert pcap_header(tmp_path / "out.pcap") == {
        "magic": 0xA1B2C3D4, "version": (2, 4), "snaplen": 65535, "linktype": 1,
        "nsec": False}


def test_pcap_ns_written_by_scapy_to_ns(tmp_path):
    pkts = sample_packets()
    w = PcapWriter(str(tmp_path / "in.pcap"), nano=True)
    w.write(pkts)
    w.close()
    assert read_pcap(tmp_path / "in.pcap") == frames_of(pkts)
    replay(tmp_path, "in.pcap", out_params=", precision: ns")
    assert pcap_header(tmp_path / "out.pcap")["nsec"]
    assert read_pcap(tmp_path / "out.pcap") == frames_of(pkts)


def test_pcap_ns_to_us_output_truncates_to_us(tmp_path):
    pkts = sample_packets()
    w = PcapWriter(str(tmp_path / "in.pcap"), nano=True)
    w.write(pkts)
    w.close()
    replay(tmp_path, "in.pcap")
    assert not pcap_header(tmp_path / "out.pcap")["nsec"]
    assert read_pcap(tmp_path / "out.pcap") == us(frames_of(pkts))


@pytest.mark.parametrize("nsec", [False, True])
@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcap_either_byte_order(tmp_path, endian, nsec):
    frames = frames_of(sample_packets())
    if not nsec:
        frames = us(frames)
    write_pcap_bytes(tmp_path / "in.pcap", frames, nsec=nsec, endian=endian)
    assert read_pcap(tmp_path / "in.pcap") == frames       # scapy reads what we wrote
    replay(tmp_path, "in.pcap", out_params=", precision: ns")
    assert read_pcap(tmp_path / "out.pcap") == frames


def test_pcapng_written_by_scapy(tmp_path):
    pkts = sample_packets()
    w = PcapNgWriter(str(tmp_path / "in.pcapng"))
    w.write(pkts)
    w.close()
    src = read_pcap(tmp_path / "in.pcapng")
    assert [f for _, f in src] == [bytes(p) for p in pkts]
    r = replay(tmp_path, "in.pcapng", out_params=", precision: ns")
    assert r.stats["ports"]["in"]["rx"] == len(pkts)
    assert read_pcap(tmp_path / "out.pcap") == src


def pcapng_bytes(frames, endian="<", tsresol=9, linktypes=(1,), iface_of=None):
    """A pcapng file by hand: one section, an IDB per link type (with
    if_tsresol), an EPB per frame. frames: (ts_ns, bytes)."""
    def block(btype, body):
        n = 12 + len(body)
        return struct.pack(endian + "II", btype, n) + body + struct.pack(endian + "I", n)

    out = [block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1))]
    for lt in linktypes:
        opts = struct.pack(endian + "HH", 9, 1) + bytes([tsresol, 0, 0, 0]) + bytes(4)
        out.append(block(1, struct.pack(endian + "HHI", lt, 0, 0) + opts))
    for i, (t, f) in enumerate(frames):
        ticks = t // 10 ** (9 - tsresol)
        pad = bytes(-len(f) % 4)
        ifc = iface_of(i) if iface_of else 0
        out.append(block(6, struct.pack(endian + "IIIII", ifc, ticks >> 32, ticks & 0xFFFFFFFF,
                                        len(f), len(f)) + f + pad))
    return b"".join(out)


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_ns_resolution_either_byte_order(tmp_path, endian):
    frames = frames_of(sample_packets())
    (tmp_path / "in.pcapng").write_bytes(pcapng_bytes(frames, endian))
    assert read_pcap(tmp_path / "in.pcapng") == frames    # scapy agrees with the file
    replay(tmp_path, "in.pcapng", out_params=", precision: ns")
    assert read_pcap(tmp_path / "out.pcap") == frames


def test_pcapng_frames_of_non_ethernet_interfaces_are_skipped(tmp_path):
    frames = frames_of(sample_packets(8))
    (tmp_path / "in.pcapng").write_bytes(
        pcapng_bytes(frames, tsresol=6, linktypes=(1, 101), iface_of=lambda i: i % 2))
    r = replay(tmp_path, "in.pcapng")
    assert read_pcap(tmp_path / "out.pcap") == us(frames[0::2])
    assert r.stats["ports"]["in"]["rx"] == 4


# --- precision, snaplen ---------------------------------------------------------------

def test_snaplen_cuts_frames_but_keeps_their_length(tmp_path):
    pkts = sample_packets()
    w = PcapWriter(str(tmp_path / "in.pcap"), nano=True)
    w.write(pkts)
    w.close()
    replay(tmp_path, "in.pcap", out_params=", snaplen: 64")
    assert pcap_header(tmp_path / "out.pcap")["snaplen"] == 64
    recs = raw_records(tmp_path / "out.pcap")
    assert [bytes(d) for d, _ in recs] == [bytes(p)[:64] for p in pkts]
    assert [m.wirelen for _, m in recs] == [len(p) for p in pkts]


# --- loop ---------------------------------------------------------------------------

@pytest.mark.parametrize("loop", [1, 2, 5])
def test_loop_replays_n_times(tmp_path, loop):
    frames = frames_of(sample_packets(7))
    write_pcap_bytes(tmp_path / "in.pcap", frames, nsec=True)
    r = replay(tmp_path, "in.pcap", in_params=f", loop: {loop}", out_params=", precision: ns")
    assert read_pcap(tmp_path / "out.pcap") == frames * loop
    assert r.stats["ports"]["in"]["rx"] == 7 * loop


def test_loop_of_a_pcapng_rereads_its_interfaces(tmp_path):
    frames = frames_of(sample_packets(5))
    (tmp_path / "in.pcapng").write_bytes(pcapng_bytes(frames))
    replay(tmp_path, "in.pcapng", in_params=", loop: 3", out_params=", precision: ns")
    assert read_pcap(tmp_path / "out.pcap") == frames * 3


def test_loop_forever_with_duration(tmp_path):
    write_pcap_bytes(tmp_path / "in.pcap", us(frames_of(sample_packets(3))))
    r = run_pipeline(tmp_path, """
        ports:
          in: {port: "pcap:in.pcap", loop: 0}
        links:
          - in -> sink
        """, args=["--duration", "0.2"])
    assert r.stats["ports"]["in"]["rx"] > 3
    assert r.stats["ports"]["sink"]["tx"] + sum(
        r.stats["ports"]["sink"]["drops"].values()) == r.stats["ports"]["in"]["rx"]


def run_bounded(tmp_path, text, *args) -> Result:
    """A run as a subprocess, so that a hang fails this test instead of the suite."""
    (tmp_path / "p.yaml").write_text(text)
    r = run_subprocess("run", "p.yaml", "--stats-json", "stats.json", *args, cwd=tmp_path,
                       timeout=15)
    if (tmp_path / "stats.json").exists():
        r.stats = json.loads((tmp_path / "stats.json").read_text())
    return r


def test_loop_forever_over_a_file_without_frames_ends(tmp_path):
    """Nothing to replay: the port is at its end, it does not spin forever."""
    write_pcap_bytes(tmp_path / "empty.pcap", [])
    t0 = time.monotonic()
    r = run_bounded(tmp_path, 'ports: {in: {port: "pcap:empty.pcap", loop: 0}}\n'
                              'links: ["in -> sink"]\n')
    assert r.code == OK, str(r)
    assert time.monotonic() - t0 < 10
    assert r.stats["ports"]["in"] == {"rx": 0, "tx": 0, "drops": {}}
    assert_accounting(r.stats)


def test_loop_forever_over_oversize_frames_stops_on_duration(tmp_path):
    """Every frame dropped as oversize, replayed forever: --duration still stops it."""
    write_pcap_bytes(tmp_path / "big.pcap", [(T0, bytes(300))])
    r = run_bounded(tmp_path, 'settings: {buffer_size: 256}\n'
                              'ports: {in: {port: "pcap:big.pcap", loop: 0}}\n'
                              'links: ["in -> sink"]\n', "--duration", "0.3")
    assert r.code == OK, str(r)
    d = r.stats["ports"]["in"]
    assert d["rx"] > 1 and d["drops"] == {"oversize": d["rx"]}
    assert_accounting(r.stats)


# --- oversize, truncated, bad files ---------------------------------------------------

def test_oversize_frame_is_counted_as_a_drop(tmp_path):
    sizes = [100, 300, 256, 257, 60, 2000]
    frames = [(T0 + i * 1000, bytes([i]) * n) for i, n in enumerate(sizes)]
    write_pcap_bytes(tmp_path / "in.pcap", frames, nsec=True)
    r = replay(tmp_path, "in.pcap", settings="settings: {buffer_size: 256}",
               out_params=", precision: ns")
    kept = [fr for fr in frames if len(fr[1]) <= 256]
    assert read_pcap(tmp_path / "out.pcap") == kept
    assert r.stats["ports"]["in"] == {"rx": 6, "tx": 0, "drops": {"oversize": 3}}
    assert r.stats["ports"]["out"] == {"rx": 0, "tx": 3, "drops": {}}


@pytest.mark.parametrize("cut", [1, 10, 16, 20])
def test_truncated_last_record(tmp_path, cut):
    """`cut` bytes missing from the end: inside the last frame or its header."""
    frames = frames_of(sample_packets(5))
    write_pcap_bytes(tmp_path / "in.pcap", frames, nsec=True)
    data = (tmp_path / "in.pcap").read_bytes()
    (tmp_path / "in.pcap").write_bytes(data[:-cut])
    r = replay(tmp_path, "in.pcap", out_params=", precision: ns")
    assert read_pcap(tmp_path / "out.pcap") == frames[:4]
    assert r.stats["ports"]["in"]["rx"] == 4
    warnings = [ln for ln in r.err.splitlines() if "truncated" in ln]
    assert len(warnings) == 1 and "warn" in warnings[0].lower(), r.err


def test_truncated_pcapng(tmp_path):
    frames = frames_of(sample_packets(5))
    (tmp_path / "in.pcapng").write_bytes(pcapng_bytes(frames)[:-9])
    r = replay(tmp_path, "in.pcapng", out_params=", precision: ns")
    assert read_pcap(tmp_path / "out.pcap") == frames[:4]
    assert any("truncated" in ln for ln in r.err.splitlines()), r.err


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_non_ethernet_link_type_is_a_one_line_error(tmp_path, fmt):
    frames = [(T0, bytes(IP(src="198.18.0.1", dst="198.19.0.1") / UDP()))]
    if fmt == "pcap":
        write_pcap_bytes(tmp_path / "in.pcap", frames, linktype=101)
    else:
        (tmp_path / "in.pcap").write_bytes(pcapng_bytes(frames, linktypes=(101,)))
    r = replay(tmp_path, "in.pcap", expect=NO_PORT)
    assert error_lines(r) == ["in: in.pcap: link type 101 is not Ethernet (1); "
                              "only Ethernet is read"]


def test_not_a_pcap_file_is_a_one_line_error(tmp_path):
    (tmp_path / "in.pcap").write_bytes(b"this is not a capture file at all\n")
    r = replay(tmp_path, "in.pcap", expect=NO_PORT)
    assert error_lines(r) == ["in: in.pcap: not a pcap or pcapng file (magic 0x73696874)"]


def test_missing_input_file_is_a_config_error(tmp_path):
    r = replay(tmp_path, "nope.pcap", expect=BAD_CONFIG)
    assert error_lines(r) == ["p.yaml:2:7: port 'in' (pcap): file: no such file: 'nope.pcap'"]
    assert not (tmp_path / "out.pcap").exists()      # nothing was opened


def test_output_directory_missing_is_a_config_error(tmp_path):
    write_pcap_bytes(tmp_path / "in.pcap", [])
    r = run_pipeline(tmp_path, """
        ports:
          in: pcap:in.pcap
          out: pcap:no/such/dir/out.pcap
        links:
          - in -> out
        """, expect=BAD_CONFIG)
    assert len(error_lines(r)) == 1
    assert error_lines(r)[0].startswith("p.yaml:3:8: port 'out' (pcap): file: ")
