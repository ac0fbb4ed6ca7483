"""`nmroute bridge` (nmroute/tools/bridge.py): its model, its errors, and live
runs in namespaces: -v per-second counters, one port alone with its host side."""
import argparse
import sys
import time

import pytest

from helpers import subprocess_env
from netns import Net
from nmroute.errors import UsageError
from nmroute.tools import bridge

A4, D4 = "198.18.0.1", "198.18.0.254"


def parse(*argv):
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd")
    bridge.add_parser(sub)
    return ap.parse_args(["bridge", *argv])


def test_add_parser_defaults_and_options():
    args = parse("-i", "packet:a", "-i", "tap:b")
    assert (args.ports, args.batch, args.wait, args.every_second) == (
        ["packet:a", "tap:b"], 256, 0, False)
    assert args.fn is bridge.main
    args = parse("-i", "packet:a", "-b", "32", "-w", "2", "-v")
    assert (args.batch, args.wait, args.every_second) == (32, 2, True)
    for bad in (["-b", "0"], ["-b", "257"], ["-w", "x"]):
        with pytest.raises(SystemExit):
            parse("-i", "packet:a", *bad)


def test_model_is_two_chains():
    p = bridge.build_pipeline(["packet:veth-a", "tap:t0"], batch=64)
    assert list(p.ports) == ["packet:veth-a", "tap:t0"]
    assert all(d.rx and d.tx for d in p.ports.values())
    assert [(lk.src, lk.dst) for lk in p.links] == [
        ("packet:veth-a", "tap:t0"), ("tap:t0", "packet:veth-a")]
    assert p.elements == {} and p.settings["batch"] == 64
    assert p.ports["packet:veth-a"].params == {
        "iface": "veth-a", "qdisc_bypass": False, "fanout": 0, "promisc": True,
        "rx_timeout_ms": 1, "fix_checksums": True}


def test_one_port_is_bridged_with_its_host_side():
    assert bridge.port_pair(["packet:eth0"]) == ["packet:eth0", "host:eth0"]
    assert bridge.port_pair(["xdp:eth0@1"]) == ["xdp:eth0@1", "host:eth0"]
    assert bridge.port_pair(["netmap:eth0"]) == ["netmap:eth0", "netmap:eth0^"]
    assert bridge.port_pair(["packet:a", "packet:b"]) == ["packet:a", "packet:b"]


def test_loop_and_copy_models():
    p = bridge.build_pipeline(["packet:veth-a"], loop=True)
    assert list(p.ports) == ["packet:veth-a"]
    assert [(lk.src, lk.dst) for lk in p.links] == [("packet:veth-a", "packet:veth-a")]
    assert p.settings["zero_copy"] is True
    assert bridge.build_pipeline(["packet:a", "packet:b"], copy=True).settings[
        "zero_copy"] is False
    with pytest.raises(UsageError, match="-L loops one port back to itself"):
        bridge.build_pipeline(["packet:a", "packet:b"], loop=True)


@pytest.mark.parametrize("ports, message", [
    (["tap:t0"], "tap:t0: a single port is bridged with its host side, which only "
                 "packet:IFACE, xdp:IFACE, netmap:IFACE have; give two ports"),
    (["packet:a", "packet:b", "packet:c"], "give one or two ports with -i, got 3"),
    (["packet:a", "packet:a"], "packet:a: the two ports are the same (-L loops one port back)"),
    (["gen:count=1", "sink"], "gen:count=1: a gen port cannot be both read and written"),
    (["packet:a", "bogus:x"], "bogus:x: unknown port type 'bogus' (a port is written "
                              "SCHEME[:ARG], like 'pcap:in.pcap')"),
    (["packet:", "tap:t"], "packet:: missing required param 'iface' (write 'packet:IFACE')"),
])
def test_bad_ports(ports, message):
    with pytest.raises(UsageError) as e:
        bridge.build_pipeline(ports)
    assert str(e.value) == message


def bridge_proc(net, *argv):
    return net.popen("dut", sys.executable, "-m", "nmroute.tools.bridge", *argv,
                     env=subprocess_env())


def test_verbose_prints_each_direction_every_second():
    with Net("v") as net:
        net.hosts("a", "dut", "b")
        net.veth("a", "a0", "dut", "veth-a")
        net.veth("b", "b0", "dut", "veth-b")
        net.addr("a", "a0", f"{A4}/24")
        net.addr("b", "b0", "198.18.0.2/24")
        p = bridge_proc(net, "-i", "packet:veth-a", "-i", "packet:veth-b", "-v", "-b", "8")
        assert net.wait_ping("a", "198.18.0.2")
        time.sleep(1.2)
        out, err = net.stop(p)
        assert p.returncode == 0, err
        lines = out.splitlines()
        assert lines[0] == "bridging packet:veth-a <-> packet:veth-b"
        per_second = [ln for ln in lines if "Mpps" in ln]
        assert len(per_second) >= 2 and len(per_second) % 2 == 0, out
        assert per_second[0].startswith("packet:veth-a -> packet:veth-b: rx ")
        assert per_second[1].startswith("packet:veth-b -> packet:veth-a: rx ")
        assert "after " in out and out.rstrip().splitlines()[-1].startswith(
            "  packet:veth-b -> packet:veth-a: rx ")


def test_one_port_with_host_side_set_up_by_hand():
    """The set-up host.pyx documents, done by hand: the TAP exists with
    eth0's MAC and address; `nmroute bridge -i packet:veth-a` alone
    bridges veth-a with it, and the DUT's kernel answers A through nmroute."""
    with Net("o") as net:
        net.hosts("a", "dut")
        net.veth("a", "a0", "dut", "veth-a")
        net.addr("a", "a0", f"{A4}/24")
        mac = net.run("dut", "cat", "/sys/class/net/veth-a/address").stdout.strip()
        net.run("dut", "ip", "tuntap", "add", "h-veth-a", "mode", "tap")
        net.run("dut", "ip", "link", "set", "h-veth-a", "address", mac, "up")
        net.addr("dut", "h-veth-a", f"{D4}/24")
        for key, v in (("rp_filter", "1"), ("arp_ignore", "8")):
            net.run("dut", "sysctl", "-qw", f"net.ipv4.conf.veth-a.{key}={v}")
        # Without nmroute the kernel does not answer on veth-a any more.
        assert net.ping("a", D4, 2, 0.05) == (2, 0)
        p = bridge_proc(net, "-i", "packet:veth-a")
        assert net.wait_ping("a", D4), p.stderr
        assert net.ping("a", D4, 30, 0.002) == (30, 30)
        out, err = net.stop(p)
        assert p.returncode == 0, err
        assert out.startswith("bridging packet:veth-a <-> host:veth-a")
        assert "h-veth-a" in net.links("dut")     # attached to, not created: it stays


_LOOP_ECHO = r"""
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88B5))
s.bind((sys.argv[1], 0))
s.settimeout(0.2)
frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x0a" + b"\x88\xb5" + b"nmroute-loop" + bytes(40)
back, end = 0, time.monotonic() + 10
sent = 0
while time.monotonic() < end and back < 20:
    if sent < 20:
        s.send(frame)
        sent += 1
    try:
        data, addr = s.recvfrom(2048)
    except socket.timeout:
        continue
    if addr[2] != socket.PACKET_OUTGOING and data[14:26] == b"nmroute-loop":
        back += 1
print(sent, back)
"""


@pytest.mark.parametrize("copy", [False, True], ids=["zero-copy", "copy"])
def test_loop_sends_a_port_traffic_back_out_of_it(copy):
    """bridge -L -i packet:veth-a: what A sends comes back to A (and with
    -c, copied rather than swapped: the same frames)."""
    with Net("l") as net:
        net.hosts("a", "dut")
        net.veth("a", "a0", "dut", "veth-a")
        p = bridge_proc(net, "-L", "-i", "packet:veth-a", *(["-c"] if copy else []))
        try:
            assert p.stdout.readline().strip() == "looping packet:veth-a back to itself"
            r = net.run("a", sys.executable, "-c", _LOOP_ECHO, "a0", timeout=30)
        finally:
            out, err = net.stop(p)
        assert r.stdout.split() == ["20", "20"], r.stdout + r.stderr
        assert p.returncode == 0, err
        assert f"zero_copy={not copy}" in err, err
        assert "packet:veth-a -> packet:veth-a: rx " in out, out
