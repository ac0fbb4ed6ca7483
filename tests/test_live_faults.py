"""Faults on packet: and host: ports, live, in network namespaces: an
interface going down and up, deleted and made again (a new ifindex) while
nmroute runs, a missing capability, a TAP left behind.

    A (a0 198.18.0.1) -- veth-a [DUT: nmroute] veth-b -- B (b0 198.18.0.2)
                                               veth-c -- C (c0 198.18.0.3)

Each event is logged once (a warning naming the port), frames sent to a
port whose link is down are dropped with a reason and counted, the rest of
the pipeline keeps forwarding, and the port comes back by itself.
Skipped, with the reason, where namespaces cannot be made (not root).
"""
import json
import shutil
import signal
import sys
import time

import pytest

from helpers import assert_accounting, nmroute_cmd, subprocess_env
from netns import Net

A4, B4, C4 = "198.18.0.1", "198.18.0.2", "198.18.0.3"

# N frames as fast as one socket sends them, broadcast, from IFACE (an
# ethertype of the local-experimental range: no host answers them).
_BLAST = r"""
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x0a" + b"\x88\xb5" + b"nmroute-blast" + bytes(60)
sent = 0
for _ in range(int(sys.argv[2])):
    try:
        s.send(frame)
        sent += 1
    except BlockingIOError:
        pass
print(sent)
"""


def make_net(net, *hosts):
    net.hosts("dut", *hosts)
    for h, addr in (("a", A4), ("b", B4), ("c", C4)):
        if h in hosts:
            net.veth(h, f"{h}0", "dut", f"veth-{h}")
            net.addr(h, f"{h}0", f"{addr}/24")


def start(net, tmp_path, text):
    yaml = tmp_path / "p.yaml"
    yaml.write_text(text)
    stats = tmp_path / "stats.json"
    p = net.popen("dut", *nmroute_cmd("run", yaml, "--stats-json", stats), env=subprocess_env())
    return p, stats


def finish(net, p, stats, types=None):
    out, err = net.stop(p)
    assert p.returncode == 0, err
    s = json.loads(stats.read_text())
    assert_accounting(s, types)
    return s, err


def log_lines(err, text):
    return [ln for ln in err.splitlines() if text in ln]


def link_down_drop():
    from nmroute.fastpath.ports.packet import LINK_DOWN_DROP
    return LINK_DOWN_DROP


# The interface-backed ports whose link faults these tests drive (xdp: where built).
try:
    import nmroute.fastpath.ports.xdp  # noqa: F401
    KINDS = ["packet", "xdp"]
except ImportError:
    KINDS = ["packet"]


@pytest.mark.parametrize("kind", KINDS)
def test_link_down_does_not_hold_back_the_rest(tmp_path, kind):
    """A's traffic goes to B and (a copy) to C. With B's link down, far more
    frames than B's rings hold are sent: they are dropped at B with a reason
    (not queued, which would hold A's input back and starve C), C keeps
    answering, and B answers again once its link is up. Logged once each;
    an xdp: port leaves no XDP program behind."""
    with Net("fd") as net:
        make_net(net, "a", "b", "c")
        p, stats = start(net, tmp_path,
                         f"ports: {{a: {kind}:veth-a, b: {kind}:veth-b, c: {kind}:veth-c}}\n"
                         "elements: {t: tee}\n"
                         "links: ['a -> t -> b', 't [copy] -> c', 'b -> a', 'c -> a']\n")
        try:
            assert net.wait_ping("a", B4, 10) and net.wait_ping("a", C4, 10)
            net.run("dut", "ip", "link", "set", "veth-b", "down")
            sent = int(net.run("a", sys.executable, "-c", _BLAST, "a0", 6000).stdout)
            assert sent > 4000
            assert net.ping("a", C4, 20, 0.005) == (20, 20)
            assert net.ping("a", B4, 3, 0.05)[1] == 0
            net.run("dut", "ip", "link", "set", "veth-b", "up")
            assert net.wait_ping("a", B4, 10)
            assert net.ping("a", B4, 20, 0.005) == (20, 20)
        finally:
            s, err = finish(net, p, stats, {"t": "tee"})
        assert "prog/xdp" not in net.run("dut", "ip", "link").stdout
    b = s["ports"]["b"]
    # The blast alone is more than B's two rings (1024 + ~1037 frames) hold.
    assert b["drops"].get(link_down_drop(), 0) > 2100, b
    assert s["ports"]["c"]["tx"] > 4000, s["ports"]["c"]
    down = log_lines(err, "link down")
    assert len(down) == 1 and "port=b" in down[0], err
    assert len(log_lines(err, "link up again")) == 1, err
    lines = err.splitlines()
    assert lines.index(down[0]) < lines.index(log_lines(err, "stopping")[0]), err


def test_interface_deleted_and_made_again(tmp_path):
    """veth-b is deleted while nmroute runs, then made again under the same
    name (a new ifindex): packet:veth-b opens again on it by itself, and
    traffic A <-> B flows as before. A -> C is never interrupted."""
    with Net("fr") as net:
        make_net(net, "a", "b", "c")
        p, stats = start(net, tmp_path,
                         "ports: {a: packet:veth-a, b: packet:veth-b, c: packet:veth-c}\n"
                         "elements: {t: tee}\n"
                         "links: ['a -> t -> b', 't [copy] -> c', 'b -> a', 'c -> a']\n")
        assert net.wait_ping("a", B4, 10)
        old = int(net.run("dut", "cat", "/sys/class/net/veth-b/ifindex").stdout)
        net.run("dut", "ip", "link", "del", "veth-b")
        assert net.ping("a", C4, 10, 0.005) == (10, 10)
        assert net.ping("a", B4, 3, 0.05)[1] == 0
        net.veth("b", "b0", "dut", "veth-b")
        net.addr("b", "b0", f"{B4}/24")
        net.run("a", "ip", "neigh", "flush", "dev", "a0")   # B has a new MAC
        new = int(net.run("dut", "cat", "/sys/class/net/veth-b/ifindex").stdout)
        assert new != old
        assert net.wait_ping("a", B4, 10)
        assert net.ping("a", B4, 20, 0.005) == (20, 20)
        assert net.ping("a", C4, 10, 0.005) == (10, 10)
        s, err = finish(net, p, stats, {"t": "tee"})
    assert s["ports"]["b"]["drops"].get(link_down_drop(), 0) >= 3, s["ports"]["b"]
    gone, back = log_lines(err, "interface gone"), log_lines(err, "interface back")
    assert len(gone) == 1 and "port=b" in gone[0], err
    assert len(back) == 1 and f"ifindex={new}" in back[0], err


def wait_for(pred, seconds=10):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_no_tap_left_when_killed(tmp_path, sig):
    """host:veth-a's TAP (h-veth-a) goes when nmroute is stopped by SIGTERM
    (it closes its ports, addresses and settings back on veth-a) and even
    when it is killed outright (a TAP nmroute made goes with its last fd)."""
    with Net("k") as net:
        make_net(net, "a")
        net.addr("dut", "veth-a", "198.18.0.254/24")
        p, stats = start(net, tmp_path,
                         "ports: {w: packet:veth-a, k: {port: host:veth-a, "
                         "move_addresses: true}}\nlinks: ['w -> k', 'k -> w']\n")
        assert wait_for(lambda: "h-veth-a" in net.links("dut")), p.stderr.read()
        assert net.wait_ping("a", "198.18.0.254", 10)
        p.send_signal(sig)
        out, err = p.communicate(timeout=10)
        assert p.returncode == (0 if sig == signal.SIGTERM else -signal.SIGKILL), err
        assert wait_for(lambda: "h-veth-a" not in net.links("dut"), 5)
        if sig == signal.SIGTERM:
            addrs = net.run("dut", "ip", "-o", "-4", "addr", "show", "dev", "veth-a").stdout
            assert "198.18.0.254/24" in addrs
            assert json.loads(stats.read_text())["ports"]["k"]["rx"] > 0


@pytest.mark.parametrize("port", ["host:veth-a", "tap:t9"])
def test_missing_privilege_names_cap_net_admin(port):
    """Without CAP_NET_ADMIN a TAP cannot be made: one line naming it, no TAP."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    with Net("c") as net:
        make_net(net, "a")
        r = net.run("dut", "setpriv", "--bounding-set=-all", "--inh-caps=-all",
                    *nmroute_cmd("bridge", "-i", port, "-i", "packet:veth-a"),
                    check=False, env=subprocess_env())
        if "Operation not permitted" in r.stderr and "nmroute" not in r.stderr:
            pytest.skip(f"setpriv cannot drop capabilities here: {r.stderr.strip()}")
        assert r.returncode == 3, r.stderr
        name = "h-veth-a" if port.startswith("host") else "t9"
        assert r.stderr.strip().splitlines()[-1] == (
            f"nmroute: {port}: TAP {name}: permission denied "
            "(needs CAP_NET_ADMIN; run as root or grant it)")
        assert name not in net.links("dut")


def test_host_fails_half_way_leaves_no_tap():
    """host: makes its TAP, then cannot move veth-a's address onto it: the
    one-line error, the TAP gone, veth-a's address back on it."""
    with Net("h") as net:
        make_net(net, "a")
        net.addr("dut", "veth-a", "198.18.0.254/24")
        r = net.run("dut", sys.executable, "-c", _HALF_WAY, check=False,
                    env=subprocess_env())
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.strip() == "host:veth-a: add 198.18.0.254/24 to h-veth-a: refused", r.stdout
        assert "h-veth-a" not in net.links("dut")
        addrs = net.run("dut", "ip", "-o", "-4", "addr", "show", "dev", "veth-a").stdout
        assert "198.18.0.254/24" in addrs


# Opens host:veth-a with move_addresses in this process, with the TAP's
# `ip addr add` made to fail (iproute2 replaced, on PATH, by a script that
# refuses `addr add ... dev h-veth-a`): prints the PortError.
_HALF_WAY = r"""
import os, stat, sys, tempfile
d = tempfile.mkdtemp()
real = [p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip") if os.path.exists(p)][0]
with open(os.path.join(d, "ip"), "w") as f:
    f.write('#!/bin/sh\ncase "$*" in *"addr add"*h-veth-a*) echo "refused" >&2; exit 2;; esac\n'
            f'exec {real} "$@"\n')
os.chmod(os.path.join(d, "ip"), stat.S_IRWXU)
os.environ["PATH"] = d + os.pathsep + os.environ["PATH"]
from nmroute.fastpath.pool import Pool
from nmroute.fastpath.ports.host import Host
from nmroute.errors import PortError
port = Host("host:veth-a", {"iface": "veth-a", "move_addresses": True})
try:
    port.open(Pool(256, 2048), 64, True, True)
except PortError as e:
    print(e)
else:
    sys.exit("opened")
"""


# Opens host:veth-a (move_addresses) in this process; deletes veth-a, makes
# it again with another MAC; calls maintain() as the runtime does between
# each step and prints what it sees: the TAP's MAC, veth-a's arp_ignore.
_FOLLOW = r"""
import subprocess, sys, time
from nmroute.fastpath.pool import Pool
from nmroute.fastpath.ports.host import Host
def ip(*a): subprocess.run(["ip", *a], check=True)
def mac(dev): return open(f"/sys/class/net/{dev}/address").read().strip()
def arp_ignore(): return open("/proc/sys/net/ipv4/conf/veth-a/arp_ignore").read().strip()
port = Host("host:veth-a", {"iface": "veth-a", "move_addresses": True})
port.open(Pool(256, 2048), 64, True, True)
print("open", mac("h-veth-a") == mac("veth-a"), arp_ignore())
ip("link", "del", "veth-a")
port.maintain(); port.maintain()
print("gone", "h-veth-a" in subprocess.run(["ip", "-o", "link"], capture_output=True,
                                           text=True).stdout)
ip("link", "add", "veth-a", "address", "02:00:5e:10:00:42", "type", "veth", "peer", "name", "x0")
port.maintain(); port.maintain()
print("back", mac("h-veth-a"), arp_ignore())
port.close()
print("closed", arp_ignore())
"""


def test_host_follows_its_interface_deleted_and_made_again():
    """host:veth-a while veth-a is deleted and made again (another MAC): the
    TAP stays, takes the new MAC, the kernel is kept off the new veth-a
    again; each event logged once; on close its settings go back."""
    with Net("o") as net:
        make_net(net, "a")
        net.addr("dut", "veth-a", "198.18.0.254/24")
        r = net.run("dut", sys.executable, "-c", _FOLLOW, env=subprocess_env())
    lines = [ln for ln in r.stdout.splitlines() if "[" not in ln]   # not the log's
    assert lines[:2] == ["open True 8", "gone True"], r.stdout + r.stderr
    assert lines[2] == "back 02:00:5e:10:00:42 8", r.stdout + r.stderr
    assert lines[3] in ("closed 0", "closed 1", "closed 2"), r.stdout
    assert len(log_lines(r.stderr + r.stdout, "interface gone")) == 1, r.stdout + r.stderr
    assert len(log_lines(r.stderr + r.stdout, "interface back")) == 1, r.stdout + r.stderr


def test_host_follows_its_interface_while_running(tmp_path):
    """packet:veth-a + host:veth-a (move_addresses) running while veth-a is
    deleted and made again: both ports follow it by themselves (the new
    veth-a is kept off again, the TAP takes its MAC), A reaches the DUT's
    kernel again, each port logs each event once."""
    with Net("l") as net:
        make_net(net, "a")
        net.addr("dut", "veth-a", "198.18.0.254/24")
        p, stats = start(net, tmp_path,
                         "ports: {w: packet:veth-a, k: {port: host:veth-a, "
                         "move_addresses: true}}\nlinks: ['w -> k', 'k -> w']\n")
        assert net.wait_ping("a", "198.18.0.254", 10)
        net.run("dut", "ip", "link", "del", "veth-a")
        net.veth("a", "a0", "dut", "veth-a")
        net.addr("a", "a0", f"{A4}/24")

        def followed():
            r = net.run("dut", "cat", "/proc/sys/net/ipv4/conf/veth-a/arp_ignore",
                        "/sys/class/net/veth-a/address", "/sys/class/net/h-veth-a/address")
            ignore, mac, tap_mac = r.stdout.split()
            return ignore == "8" and mac == tap_mac
        assert wait_for(followed, 10)
        assert net.wait_ping("a", "198.18.0.254", 10)
        s, err = finish(net, p, stats)
    for port in ("w", "k"):
        for event in ("interface gone", "interface back"):
            lines = [ln for ln in log_lines(err, event) if f"port={port} " in ln + " "]
            assert len(lines) == 1, (port, event, err)
