"""tap: and host: ports: TAP devices in a network namespace.

    A (a0 198.18.0.1, 2001:2::1) -- veth-a [DUT: nmroute] tap t0 (198.18.0.254, 2001:2::fe)

The pipeline bridges packet:veth-a and tap:t0, so A reaches the DUT's kernel
only through nmroute.
"""
import sys
import time

import pytest

from helpers import nmroute_cmd, subprocess_env
from netns import Net

A4, A6, T4, T6 = "198.18.0.1", "2001:2::1", "198.18.0.254", "2001:2::fe"
TAP_MAC = "02:00:5e:10:00:01"


def wait_link(net, host, name, seconds=10):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if name in net.links(host):
            return True
        time.sleep(0.05)
    return False


def a_and_dut(net):
    net.hosts("a", "dut")
    net.veth("a", "a0", "dut", "veth-a")
    net.addr("a", "a0", f"{A4}/24", f"{A6}/64")


def run_yaml(net, tmp_path, text):
    yaml = tmp_path / "p.yaml"
    yaml.write_text(text)
    return net.popen("dut", *nmroute_cmd("run", yaml), env=subprocess_env())


def test_tap_created_pinged_and_removed(tmp_path):
    with Net("t") as net:
        a_and_dut(net)
        assert "t0" not in net.links("dut")
        p = run_yaml(net, tmp_path,
                     f"ports: {{w: packet:veth-a, k: {{port: 'tap:t0', mac: '{TAP_MAC}'}}}}\n"
                     "links: ['w -> k', 'k -> w']\n")
        assert wait_link(net, "dut", "t0"), p.stderr
        net.addr("dut", "t0", f"{T4}/24", f"{T6}/64")
        mac = net.run("dut", "cat", "/sys/class/net/t0/address").stdout.strip()
        assert mac == TAP_MAC
        assert net.wait_ping("a", T4)
        assert net.ping("a", T4, 50, 0.002) == (50, 50)
        assert net.ping("a", T6, 50, 0.002) == (50, 50)
        # The kernel's side starts a ping too: out through the TAP, nmroute, veth.
        assert net.ping("dut", A4, 20, 0.002) == (20, 20)
        out, err = net.stop(p)
        assert p.returncode == 0, err
        # Created by nmroute: gone once it exits.
        assert "t0" not in net.links("dut")


def test_existing_tap_is_attached_and_kept(tmp_path):
    with Net("e") as net:
        a_and_dut(net)
        net.run("dut", "ip", "tuntap", "add", "t1", "mode", "tap")
        net.addr("dut", "t1", f"{T4}/24")
        p = run_yaml(net, tmp_path, "ports: {w: packet:veth-a, k: tap:t1}\n"
                                    "links: ['w -> k', 'k -> w']\n")
        assert net.wait_ping("a", T4), p.stderr
        out, err = net.stop(p)
        assert p.returncode == 0, err
        assert "t1" in net.links("dut")          # it was not ours to remove


def test_tap_name_that_is_not_a_tap(tmp_path):
    with Net("x") as net:
        a_and_dut(net)
        p = run_yaml(net, tmp_path, "ports: {w: packet:veth-a, k: tap:veth-a}\n"
                                    "links: ['w -> k', 'k -> w']\n")
        out, err = p.communicate(timeout=20)
        assert p.returncode == 3
        assert err.strip().splitlines()[-1] == (
            "nmroute: k: TAP veth-a: an interface of that name exists and is not a TAP")
        assert net.links("dut").count("veth-a") == 1


def test_failed_open_leaves_no_tap(tmp_path):
    """The TAP opens, then a later port fails: the run stops and the TAP goes."""
    with Net("f") as net:
        net.hosts("dut")
        p = run_yaml(net, tmp_path, "ports: {k: tap:t2, w: packet:missing0}\n"
                                    "links: ['w -> k', 'k -> w']\n")
        out, err = p.communicate(timeout=20)
        assert p.returncode == 3, err
        assert "no such interface 'missing0'" in err
        assert "t2" not in net.links("dut")


def test_host_port_moves_addresses_and_answers(tmp_path):
    """packet:veth-a + host:veth-a bridged: the DUT's own kernel answers A
    through nmroute, its addresses on the TAP; they go back on exit."""
    with Net("h") as net:
        a_and_dut(net)
        net.addr("dut", "veth-a", f"{T4}/24", f"{T6}/64")
        p = run_yaml(net, tmp_path,
                     "ports:\n  wire: packet:veth-a\n"
                     "  stack: {port: 'host:veth-a', move_addresses: true}\n"
                     "links: ['wire -> stack', 'stack -> wire']\n")
        assert net.wait_ping("a", T4), p.stderr
        addrs = net.run("dut", "ip", "-br", "addr").stdout
        tap_line = next(ln for ln in addrs.splitlines() if ln.startswith("h-veth-a"))
        assert T4 in tap_line and T6 in tap_line, addrs
        assert net.ping("a", T4, 50, 0.002) == (50, 50)
        assert net.ping("a", T6, 50, 0.002) == (50, 50)
        mac = net.run("dut", "cat", "/sys/class/net/veth-a/address").stdout
        assert net.run("dut", "cat", "/sys/class/net/h-veth-a/address").stdout == mac
        out, err = net.stop(p)
        assert p.returncode == 0, err
        assert "h-veth-a" not in net.links("dut")
        addrs = net.run("dut", "ip", "-br", "addr", "show", "dev", "veth-a").stdout
        assert T4 in addrs and T6 in addrs, addrs
        assert net.run("dut", "cat", "/proc/sys/net/ipv4/conf/veth-a/arp_ignore").stdout.strip() \
            == "0"
        # Back to the kernel without nmroute.
        assert net.ping("a", T4, 3, 0.01) == (3, 3)


def test_host_unknown_interface(tmp_path):
    with Net("g") as net:
        net.hosts("dut")
        r = net.run("dut", sys.executable, "-m", "nmroute.tools.bridge",
                    "-i", "host:nope0", "-i", "tap:t3", check=False, env=subprocess_env())
        assert r.returncode == 3
        assert r.stderr.strip().splitlines()[-1] == (
            "nmroute: host:nope0: no such interface 'nope0' in this network namespace")


def test_port_names():
    from nmroute.errors import ParamError
    from nmroute.config.portname import parse_port_name
    assert parse_port_name("tap:nmr0") == ("tap", {"name": "nmr0"})
    assert parse_port_name("host:eth0") == ("host", {"iface": "eth0"})
    assert parse_port_name("packet:eth0.100") == ("packet", {"iface": "eth0.100"})
    from nmroute.fastpath.ports.tap import Tap
    with pytest.raises(ParamError):
        Tap.PARAMS[0].convert("a-name-longer-than-15")
    from nmroute.fastpath.ports.host import host_tap_name
    assert host_tap_name("eth0") == "h-eth0"
    assert len(host_tap_name("enp0s31f6abcdef")) == 15


def test_host_of_a_non_ethernet_interface():
    with Net("l") as net:
        net.hosts("dut")
        r = net.run("dut", sys.executable, "-m", "nmroute.tools.bridge", "-i", "packet:lo",
                    check=False, env=subprocess_env())
        assert r.returncode == 3
        assert r.stderr.strip().splitlines()[-1] == (
            "nmroute: host:lo: lo is not an Ethernet interface")
        assert net.links("dut") == ["lo"]
