"""packet: ports, live: hosts A and B in network namespaces, joined through a
DUT namespace where `nmroute bridge -i packet:veth-a -i packet:veth-b` runs.

    A (a0 198.18.0.1, 2001:2::1) -- veth-a [DUT: nmroute] veth-b -- B (b0 198.18.0.2, 2001:2::2)

The DUT's veths have no addresses: everything A and B exchange crosses
nmroute. Skipped, with the reason, where namespaces cannot be made (not root).
"""
import hashlib
import json
import os
import shutil
import sys
import time

import pytest

from helpers import nmroute_cmd, subprocess_env
from netns import Net

A4, B4, A6, B6 = "198.18.0.1", "198.18.0.2", "2001:2::1", "2001:2::2"


def bridge_cmd(*ports, extra=()):
    args = [sys.executable, "-m", "nmroute.cli", "bridge"]
    for p in ports:
        args += ["-i", p]
    return [*args, *extra]


def make_abd(net):
    net.hosts("a", "dut", "b")
    net.veth("a", "a0", "dut", "veth-a")
    net.veth("b", "b0", "dut", "veth-b")
    net.addr("a", "a0", f"{A4}/24", f"{A6}/64")
    net.addr("b", "b0", f"{B4}/24", f"{B6}/64")


def final_counts(out):
    """{'X -> Y': (rx, tx)} from the bridge's closing lines."""
    counts = {}
    for line in out.splitlines():
        line = line.strip()
        if " -> " in line and ": rx " in line:
            name, rest = line.split(": rx ", 1)
            rx, _, tx = rest.split()[:3]
            counts[name] = (int(rx), int(tx))
    return counts


@pytest.fixture(scope="module")
def bridged():
    """A -- DUT -- B with the bridge running in the DUT, for the module."""
    with Net("p") as net:
        make_abd(net)
        p = net.popen("dut", *bridge_cmd("packet:veth-a", "packet:veth-b"), env=subprocess_env())
        if not net.wait_ping("a", B4, 10):
            net.stop(p)
            pytest.fail(f"no ping through the bridge\n{p.stderr.read() if p.stderr else ''}")
        yield net, p


def test_no_traffic_without_the_bridge():
    """The DUT's veths do not forward by themselves: what passes, nmroute passed."""
    with Net("n") as net:
        make_abd(net)
        assert net.ping("a", B4, 3, 0.05) == (3, 0)


@pytest.mark.parametrize("dst", [B4, B6], ids=["ipv4", "ipv6"])
def test_100_pings_no_loss(bridged, dst):
    net, _ = bridged
    assert net.ping("a", dst, 100, 0.002) == (100, 100)
    assert net.ping("b", A4 if dst == B4 else A6, 20, 0.002) == (20, 20)


def test_http_transfer_50mb_sha256(bridged, tmp_path):
    net, _ = bridged
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    data = os.urandom(50 * 1024 * 1024 + 12345)
    (tmp_path / "blob").write_bytes(data)
    srv = net.popen("b", sys.executable, "-m", "http.server", "8080", "--bind", B4,
                    "--directory", tmp_path)
    out = tmp_path / "got"
    r = net.run("a", "curl", "-sS", "--retry", "20", "--retry-connrefused", "--retry-delay", "0",
                "--max-time", "30", "-o", out, f"http://{B4}:8080/blob", timeout=40)
    srv.kill()
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()


def test_iperf3_tcp(bridged):
    net, _ = bridged
    if shutil.which("iperf3") is None:
        pytest.skip("iperf3 is not installed")
    srv = net.popen("b", "iperf3", "-s", "-1", "-B", B4)
    time.sleep(0.3)
    r = net.run("a", "iperf3", "-c", B4, "-t", "5", "-J", "--connect-timeout", "3000",
                check=False, timeout=30)
    srv.kill()
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    end = json.loads(r.stdout)["end"]
    got = end["sum_received"]["bytes"]
    gbits = end["sum_received"]["bits_per_second"] / 1e9
    print(f"iperf3 through nmroute bridge (packet ports): {gbits:.2f} Gbit/s")
    assert got > 10 * 1024 * 1024, end["sum_received"]


def test_bridge_exits_cleanly_with_counts(bridged):
    """Last in the module: SIGINT stops the bridge with exit 0, accounting
    checked by it, and counters that saw the traffic above both ways."""
    net, p = bridged
    out, err = net.stop(p)
    assert p.returncode == 0, err
    counts = final_counts(out)
    assert set(counts) == {"packet:veth-a -> packet:veth-b", "packet:veth-b -> packet:veth-a"}, out
    for rx, tx in counts.values():
        assert rx >= 120 and tx >= 120 and tx <= rx, out


def test_pipeline_yaml_with_packet_ports(tmp_path):
    """`nmroute run` with packet ports (one in a fanout group, one bypassing
    the qdisc) and a counter each way."""
    with Net("y") as net:
        make_abd(net)
        yaml = tmp_path / "p.yaml"
        yaml.write_text(
            "ports: {a: {port: packet:veth-a, fanout: 7},"
            " b: {port: packet:veth-b, qdisc_bypass: true}}\n"
            "elements: {ab: counter, ba: counter}\n"
            "links: ['a -> ab -> b', 'b -> ba -> a']\n")
        stats = tmp_path / "stats.json"
        p = net.popen("dut", *nmroute_cmd("run", yaml, "--stats-json", stats),
                      env=subprocess_env())
        assert net.wait_ping("a", B4, 10)
        assert net.ping("a", B4, 20, 0.002) == (20, 20)
        out, err = net.stop(p)
        assert p.returncode == 0, err
        s = json.loads(stats.read_text())
        ports = s["ports"]
        assert ports["a"]["rx"] == s["elements"]["ab"]["in"] == ports["b"]["tx"] >= 21
        assert ports["b"]["rx"] == s["elements"]["ba"]["in"] == ports["a"]["tx"] >= 21
        assert sum(ports["a"]["drops"].values()) == sum(ports["b"]["drops"].values()) == 0


def test_unknown_interface():
    with Net("u") as net:
        net.hosts("dut")
        r = net.run("dut", *bridge_cmd("packet:nope0", "packet:lo"), check=False,
                    env=subprocess_env())
        assert r.returncode == 3, r.stderr
        assert r.stderr.strip().splitlines()[-1] == (
            "nmroute: packet:nope0: no such interface 'nope0' in this network namespace")


def test_missing_privilege_names_cap_net_raw():
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    with Net("c") as net:
        net.hosts("dut")
        r = net.run("dut", "setpriv", "--bounding-set=-all", "--inh-caps=-all",
                    *bridge_cmd("packet:lo", "packet:lo2"), check=False, env=subprocess_env())
        if "Operation not permitted" in r.stderr and "nmroute" not in r.stderr:
            pytest.skip(f"setpriv cannot drop capabilities here: {r.stderr.strip()}")
        assert r.returncode == 3, r.stderr
        assert r.stderr.strip().splitlines()[-1] == (
            "nmroute: packet:lo: AF_PACKET socket: permission denied "
            "(needs CAP_NET_RAW; run as root or grant it)")


def test_privilege_messages():
    from nmroute.fastpath.ports.packet import errno_reason
    from nmroute.fastpath.ports.tap import tap_reason
    assert errno_reason("AF_PACKET socket", 1) == (
        "AF_PACKET socket: permission denied (needs CAP_NET_RAW; run as root or grant it)")
    assert "No such device" in errno_reason("bind to x", 19)
    assert tap_reason("TAP t0", 1) == (
        "TAP t0: permission denied (needs CAP_NET_ADMIN; run as root or grant it)")


@pytest.mark.parametrize("fix", [True, False], ids=["fixed", "not-fixed"])
def test_tcp_from_senders_with_checksum_offload(tmp_path, fix):
    """With tx-checksum offload on at A and B (veth: CHECKSUM_PARTIAL frames
    whose TCP checksum nobody computed), TCP works through the ports only
    because they complete the checksum; with fix_checksums off it cannot
    connect (the receiver drops every segment), so the test tells the two apart."""
    if shutil.which("curl") is None or shutil.which("ethtool") is None:
        pytest.skip("needs curl and ethtool")
    with Net("k") as net:
        make_abd(net)
        for h, d in (("a", "a0"), ("b", "b0")):
            net.run(h, "ethtool", "-K", d, "tx", "on")
        yaml = tmp_path / "p.yaml"
        yaml.write_text(f"ports: {{a: {{port: packet:veth-a, fix_checksums: {str(fix).lower()}}},"
                        f" b: {{port: packet:veth-b, fix_checksums: {str(fix).lower()}}}}}\n"
                        "links: ['a -> b', 'b -> a']\n")
        p = net.popen("dut", *nmroute_cmd("run", yaml), env=subprocess_env())
        data = os.urandom(2 * 1024 * 1024)
        (tmp_path / "blob").write_bytes(data)
        srv = net.popen("b", sys.executable, "-m", "http.server", "8080", "--bind", B4,
                        "--directory", tmp_path)
        assert net.wait_ping("a", B4, 10)
        time.sleep(0.3)
        out = tmp_path / "got"
        r = net.run("a", "curl", "-sS", "--connect-timeout", "1", "--max-time", "10",
                    "-o", out, f"http://{B4}:8080/blob", check=False, timeout=20)
        srv.kill()
        net.stop(p)
        if fix:
            assert r.returncode == 0, r.stderr
            assert out.read_bytes() == data
        else:
            assert r.returncode != 0


_VLAN_RECV = r"""
import socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
s.setsockopt(263, 8, 1)                      # SOL_PACKET, PACKET_AUXDATA
s.settimeout(8)
print("ready", flush=True)
while True:
    data, anc, _, _ = s.recvmsg(4096, 256)
    if data[12:14] == b"\x88\xb5" and b"nmroute-vlan" in data:
        for level, kind, aux in anc:
            if level == 263 and kind == 8:   # struct tpacket_auxdata
                status, _, _, _, _, tci, tpid = struct.unpack("IIIHHHH", aux[:20])
                print(status & 16 != 0, tci, hex(tpid), data[14:].hex(), flush=True)
                sys.exit(0)
"""

_VLAN_SEND = r"""
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
frame = (b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x0a" + b"\x81\x00\x00\x64"
         + b"\x88\xb5" + b"nmroute-vlan" + bytes(40))
for _ in range(50):
    s.send(frame)
    time.sleep(0.1)
"""


def test_vlan_tagged_frames_keep_their_tag():
    """A tagged frame (VLAN 100) crosses the bridge tagged. The DUT's kernel
    moves the tag out of the frame before AF_PACKET sees it (TP_STATUS_VLAN_VALID);
    the port puts it back. B's kernel strips it again: B reads it from auxdata."""
    with Net("v") as net:
        make_abd(net)
        p = net.popen("dut", *bridge_cmd("packet:veth-a", "packet:veth-b"), env=subprocess_env())
        assert net.wait_ping("a", B4, 10)
        rx = net.popen("b", sys.executable, "-c", _VLAN_RECV, "b0")
        assert rx.stdout.readline().strip() == "ready"
        tx = net.popen("a", sys.executable, "-c", _VLAN_SEND, "a0")
        out, err = rx.communicate(timeout=10)
        tx.kill()
        net.stop(p)
        valid, tci, tpid, payload = out.split()
        assert (valid, tci, tpid) == ("True", "100", "0x8100"), out + err
        assert bytes.fromhex(payload) == b"nmroute-vlan" + bytes(40)


def test_cli_wires_bridge():
    from helpers import run_cli
    r = run_cli("bridge", "--help")
    assert r.code == 0 and "-i PORT" in r.out, str(r)


def test_link_down_then_up_again():
    """Frames queued while veth-b is down (sendto: ENETDOWN) do not wedge
    the tx ring: once it is up again, traffic flows."""
    with Net("d") as net:
        make_abd(net)
        p = net.popen("dut", *bridge_cmd("packet:veth-a", "packet:veth-b"), env=subprocess_env())
        assert net.wait_ping("a", B4, 10)
        net.run("dut", "ip", "link", "set", "veth-b", "down")
        assert net.ping("a", B4, 5, 0.01)[1] == 0
        net.run("dut", "ip", "link", "set", "veth-b", "up")
        assert net.wait_ping("a", B4, 10)
        assert net.ping("a", B4, 20, 0.002) == (20, 20)
        out, err = net.stop(p)
        assert p.returncode == 0, err
