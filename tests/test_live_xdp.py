"""xdp: ports, live, between network namespaces (root only; skipped with the
reason elsewhere).

    A (a0 198.18.0.1, 2001:2::1) -- veth-a [DUT: nmroute, xdp:] veth-b -- B (b0 198.18.0.2)

and the shipped pipelines/xdp-router.yaml between two subnets:

    A (198.18.0.2, 2001:2::2) -- lan0 [DUT: router] lan1 -- B (198.19.0.2, 2001:2:0:1::2)

Also: the errors a user can hit (unknown interface, missing queue, busy
queue, a foreign XDP program, missing privilege) and that no XDP program is
left attached after nmroute exits.
"""
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from helpers import nmroute_cmd, subprocess_env
from netns import Net
from test_live_packet import A4, A6, B4, B6, bridge_cmd, final_counts, make_abd

xdp = pytest.importorskip("nmroute.fastpath.ports.xdp",
                          reason="the xdp: port is not built (libxdp-dev missing)")

ROOT = Path(__file__).resolve().parent.parent


def xdp_progs(net, host):
    """Interfaces of a host that have an XDP program attached."""
    out = net.run(host, "ip", "-o", "link").stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()
            if " xdp" in line or "xdpgeneric" in line or "prog/xdp" in line]


def http_sha256(net, tmp_path, server, server_addr, client, size):
    data = os.urandom(size)
    (tmp_path / "blob").write_bytes(data)
    srv = net.popen(server, sys.executable, "-m", "http.server", "8080", "--bind", server_addr,
                    "--directory", tmp_path)
    out = tmp_path / "got"
    url = f"http://[{server_addr}]:8080/blob" if ":" in server_addr else \
        f"http://{server_addr}:8080/blob"
    r = net.run(client, "curl", "-sS", "--retry", "20", "--retry-connrefused", "--retry-delay",
                "0", "--max-time", "40", "-o", out, url, timeout=50, check=False)
    srv.kill()
    assert r.returncode == 0, r.stderr
    return hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()


def iperf3_gbits(net, server, server_addr, client, seconds=5):
    srv = net.popen(server, "iperf3", "-s", "-1", "-B", server_addr)
    time.sleep(0.3)
    r = net.run(client, "iperf3", "-c", server_addr, "-t", str(seconds), "-J",
                "--connect-timeout", "3000", check=False, timeout=seconds + 25)
    srv.kill()
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    end = json.loads(r.stdout)["end"]
    assert end["sum_received"]["bytes"] > 10 * 1024 * 1024, end["sum_received"]
    return end["sum_received"]["bits_per_second"] / 1e9


# -- nmroute bridge over xdp ---------------------------------------------------

@pytest.fixture(scope="module")
def bridged():
    with Net("xb") as net:
        make_abd(net)
        p = net.popen("dut", *bridge_cmd("xdp:veth-a", "xdp:veth-b"), env=subprocess_env())
        if not net.wait_ping("a", B4, 10):
            out, err = net.stop(p)
            pytest.fail(f"no ping through the xdp bridge\n{out}\n{err}")
        yield net, p


@pytest.mark.parametrize("dst", [B4, B6], ids=["ipv4", "ipv6"])
def test_bridge_100_pings_no_loss(bridged, dst):
    net, _ = bridged
    assert net.ping("a", dst, 100, 0.002) == (100, 100)
    assert net.ping("b", A4 if dst == B4 else A6, 20, 0.002) == (20, 20)


def test_bridge_http_50mb_sha256(bridged, tmp_path):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    net, _ = bridged
    assert http_sha256(net, tmp_path, "b", B4, "a", 50 * 1024 * 1024 + 999)


def test_bridge_iperf3_tcp(bridged):
    if shutil.which("iperf3") is None:
        pytest.skip("iperf3 is not installed")
    net, _ = bridged
    print(f"iperf3 through nmroute bridge (xdp ports): {iperf3_gbits(net, 'b', B4, 'a'):.2f} "
          "Gbit/s")


def test_bridge_mode_logged_and_program_removed_at_exit(bridged):
    """Last of the module's bridge tests: the mode obtained was logged, the
    bridge exits 0 with both directions counted, and it leaves no XDP
    program on the DUT's interfaces."""
    net, p = bridged
    assert sorted(xdp_progs(net, "dut")) == ["veth-a", "veth-b"]
    out, err = net.stop(p)
    assert p.returncode == 0, err
    assert "xdp port open" in err and "mode=native" in err and "zero_copy=False" in err, err
    counts = final_counts(out)
    assert set(counts) == {"xdp:veth-a -> xdp:veth-b", "xdp:veth-b -> xdp:veth-a"}, out
    for rx, tx in counts.values():
        assert rx >= 120 and tx == rx, out
    assert xdp_progs(net, "dut") == []


# -- the router pipeline, between two subnets -------------------------------------

@pytest.fixture(scope="module", params=["xdp", "packet"])
def routed(request, tmp_path_factory):
    """The shipped xdp-router pipeline, and the same with packet: ports."""
    yaml = ROOT / "pipelines" / "xdp-router.yaml"
    if request.param == "packet":
        text = yaml.read_text().replace("xdp:lan", "packet:lan")
        yaml = tmp_path_factory.mktemp("router") / "packet-router.yaml"
        yaml.write_text(text)
    with Net("xr") as net:
        net.hosts("a", "dut", "b")
        net.veth("a", "a0", "dut", "lan0")
        net.veth("b", "b0", "dut", "lan1")
        net.addr("a", "a0", "198.18.0.2/24", "2001:2::2/64")
        net.addr("b", "b0", "198.19.0.2/24", "2001:2:0:1::2/64")
        for h, gw4, gw6 in (("a", "198.18.0.1", "2001:2::1"), ("b", "198.19.0.1", "2001:2:0:1::1")):
            net.run(h, "ip", "route", "add", "default", "via", gw4)
            net.run(h, "ip", "-6", "route", "add", "default", "via", gw6)
        p = net.popen("dut", *nmroute_cmd("run", yaml), env=subprocess_env())
        if not net.wait_ping("a", "198.19.0.2", 10):
            out, err = net.stop(p)
            pytest.fail(f"no ping through the xdp router\n{out}\n{err}")
        yield net, p


@pytest.mark.parametrize("src,dst", [("a", "198.19.0.2"), ("b", "198.18.0.2"),
                                     ("a", "2001:2:0:1::2"), ("b", "2001:2::2")],
                         ids=["a-b-ipv4", "b-a-ipv4", "a-b-ipv6", "b-a-ipv6"])
def test_router_100_pings_no_loss(routed, src, dst):
    net, _ = routed
    net.wait_ping(src, dst, 10)     # the first IPv6 ones wait for neighbour discovery
    assert net.ping(src, dst, 100, 0.002) == (100, 100)


def test_router_answers_for_its_own_address(routed):
    net, _ = routed
    assert net.ping("a", "198.18.0.1", 5, 0.01) == (5, 0)  # not a host: no echo reply
    neigh = net.run("a", "ip", "neigh", "show", "198.18.0.1").stdout
    assert "02:00:00:00:01:0a" in neigh, neigh


def test_router_http_50mb_sha256(routed, tmp_path):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    net, _ = routed
    assert http_sha256(net, tmp_path, "b", "198.19.0.2", "a", 50 * 1024 * 1024 + 7)


def test_router_http_ipv6(routed, tmp_path):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    net, _ = routed
    assert http_sha256(net, tmp_path, "a", "2001:2::2", "b", 5 * 1024 * 1024)


def test_router_iperf3_tcp(routed):
    if shutil.which("iperf3") is None:
        pytest.skip("iperf3 is not installed")
    net, _ = routed
    print(f"iperf3 through the router: {iperf3_gbits(net, 'b', '198.19.0.2', 'a'):.2f} Gbit/s")


def test_router_exits_cleanly(routed):
    net, p = routed
    out, err = net.stop(p)
    assert p.returncode == 0, err
    assert xdp_progs(net, "dut") == []


# -- host side: xdp:IFACE with host:IFACE ------------------------------------------

def test_one_xdp_port_bridged_with_its_host_side():
    """`nmroute bridge -i xdp:veth-a` alone: the DUT's own kernel, behind
    host:veth-a (moving veth-a's address onto the TAP), answers A's pings
    and serves it HTTP, as netmap:eth0 with netmap:eth0^ would."""
    with Net("xh") as net:
        net.hosts("a", "dut")
        net.veth("a", "a0", "dut", "veth-a")
        net.addr("a", "a0", f"{A4}/24")
        net.addr("dut", "veth-a", f"{B4}/24")
        p = net.popen("dut", *bridge_cmd("xdp:veth-a"), env=subprocess_env())
        try:
            assert net.wait_ping("a", B4, 10)
            assert net.ping("a", B4, 50, 0.002) == (50, 50)
            srv = net.popen("dut", sys.executable, "-m", "http.server", "8080", "--bind", B4,
                            "--directory", ROOT / "pipelines")
            r = net.run("a", "curl", "-sS", "--retry", "20", "--retry-connrefused",
                        "--retry-delay", "0", "--max-time", "20",
                        f"http://{B4}:8080/xdp-router.yaml", timeout=30, check=False)
            srv.kill()
            assert r.returncode == 0, r.stderr
            assert r.stdout == (ROOT / "pipelines" / "xdp-router.yaml").read_text()
        finally:
            out, err = net.stop(p)
        assert p.returncode == 0, err
        assert "host:veth-a" in out
        assert xdp_progs(net, "dut") == []


# -- errors -------------------------------------------------------------------------

def last_line(r):
    return r.stderr.strip().splitlines()[-1]


def test_unknown_interface():
    with Net("xu") as net:
        net.hosts("dut")
        r = net.run("dut", *bridge_cmd("xdp:nope0", "xdp:lo"), check=False, env=subprocess_env())
        assert r.returncode == 3, r.stderr
        assert last_line(r) == ("nmroute: xdp:nope0: no such interface 'nope0' in this "
                                "network namespace")


def test_missing_queue():
    with Net("xq") as net:
        make_abd(net)
        r = net.run("dut", *bridge_cmd("xdp:veth-a@3", "xdp:veth-b"), check=False,
                    env=subprocess_env())
        assert r.returncode == 3, r.stderr
        assert last_line(r) == "nmroute: xdp:veth-a@3: veth-a has no queue 3 (it has 1 rx queue)"
        assert xdp_progs(net, "dut") == []


def test_busy_queue_and_nothing_left_behind():
    """A second nmroute on a queue the first one holds: a clear error, the
    first keeps forwarding, and the second leaves the first's program alone."""
    with Net("xy") as net:
        make_abd(net)
        p = net.popen("dut", *bridge_cmd("xdp:veth-a", "xdp:veth-b"), env=subprocess_env())
        try:
            assert net.wait_ping("a", B4, 10)
            r = net.run("dut", *bridge_cmd("xdp:veth-a", "packet:lo"), check=False,
                        env=subprocess_env())
            assert r.returncode == 3, r.stderr
            assert last_line(r) == ("nmroute: xdp:veth-a: queue 0 of veth-a is busy: another "
                                    "AF_XDP socket is bound to it"), r.stderr
            assert net.ping("a", B4, 20, 0.002) == (20, 20)
        finally:
            net.stop(p)
        assert xdp_progs(net, "dut") == []


def test_foreign_xdp_program_is_refused_and_kept():
    """An XDP program someone else attached (here: one loaded by ip from
    libxdp's own object files) is not replaced: a one-line error names it."""
    obj = "/usr/lib/x86_64-linux-gnu/bpf/xdpfilt_alw_all.o"
    if not os.path.exists(obj):
        pytest.skip(f"{obj} (libxdp1) is not installed")
    with Net("xf") as net:
        make_abd(net)
        r = net.run("dut", "ip", "link", "set", "dev", "veth-a", "xdpdrv", "obj", obj,
                    "sec", "xdp", check=False)
        if r.returncode != 0:
            pytest.skip(f"ip cannot load an XDP object here: {r.stderr.strip()}")
        before = net.run("dut", "ip", "-o", "link", "show", "veth-a").stdout
        r = net.run("dut", *bridge_cmd("xdp:veth-a", "xdp:veth-b"), check=False,
                    env=subprocess_env())
        assert r.returncode == 3, r.stderr
        line = last_line(r)
        assert line.startswith("nmroute: xdp:veth-a: an XDP program (id "), r.stderr
        assert line.endswith("is already attached to veth-a: detach it (ip link set dev "
                             "veth-a xdp off) or use packet:veth-a"), r.stderr
        after = net.run("dut", "ip", "-o", "link", "show", "veth-a").stdout
        assert before == after
        assert xdp_progs(net, "dut") == ["veth-a"]


def test_missing_privilege_names_the_capabilities():
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    with Net("xc") as net:
        make_abd(net)
        r = net.run("dut", "setpriv", "--bounding-set=-all", "--inh-caps=-all",
                    *bridge_cmd("xdp:veth-a", "xdp:veth-b"), check=False, env=subprocess_env())
        if "Operation not permitted" in r.stderr and "nmroute" not in r.stderr:
            pytest.skip(f"setpriv cannot drop capabilities here: {r.stderr.strip()}")
        assert r.returncode == 3, r.stderr
        assert "permission denied (AF_XDP needs CAP_NET_RAW, CAP_NET_ADMIN and CAP_BPF; " \
               "run as root)" in last_line(r), r.stderr


def test_check_reports_bad_names_before_opening():
    r = subprocess_run_check("ports: {a: 'xdp:veth a', b: sink}\nlinks: ['a -> b']\n")
    assert r.returncode == 2 and "an interface name, optionally @QUEUE" in r.stderr, r.stderr


def subprocess_run_check(text):
    import subprocess
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    try:
        return subprocess.run(nmroute_cmd("check", f.name), capture_output=True, text=True,
                              env=subprocess_env(), timeout=30)
    finally:
        os.unlink(f.name)



def test_link_down_then_up_again():
    """veth-b down for a while: frames for it are dropped by the kernel (not
    stuck in the port's rings), A->B is lost meanwhile, and once it is up
    again traffic flows both ways."""
    with Net("xd") as net:
        make_abd(net)
        p = net.popen("dut", *bridge_cmd("xdp:veth-a", "xdp:veth-b"), env=subprocess_env())
        try:
            assert net.wait_ping("a", B4, 10)
            net.run("dut", "ip", "link", "set", "veth-b", "down")
            assert net.ping("a", B4, 20, 0.01)[1] == 0
            net.run("dut", "ip", "link", "set", "veth-b", "up")
            assert net.wait_ping("a", B4, 10)
            assert net.ping("a", B4, 50, 0.002) == (50, 50)
        finally:
            out, err = net.stop(p)
        assert p.returncode == 0, err
        assert xdp_progs(net, "dut") == []


# -- faults: an interface deleted and made again -------------------------------------

TEE3 = ("ports: {a: xdp:veth-a, b: xdp:veth-b, c: xdp:veth-c}\n"
        "elements: {t: tee}\n"
        "links: ['a -> t -> b', 't [copy] -> c', 'b -> a', 'c -> a']\n")


@pytest.mark.parametrize("gone", ["b", "a"], ids=["tx-side", "umem-first-socket"])
def test_interface_deleted_and_made_again(tmp_path, gone):
    """A's traffic goes to B and (a copy) to C, all three xdp: ports on one
    UMEM. veth-GONE is deleted while nmroute runs: far more frames than its
    rings hold are sent to it, they are dropped as link-down (the pipeline
    does not stall: C keeps receiving); then it is made again under the same
    name (a new ifindex) and the port opens on it by itself: pings A -> B
    pass again. veth-a is the socket that took the UMEM's own fd (opened
    first), which libxdp keeps until the UMEM goes: that port re-opens on a
    new registration of the same pool. Each event is logged once, the run
    exits 0 with rx == tx + drops, and no XDP program is left."""
    from test_live_faults import _BLAST, C4, finish, log_lines, make_net, start
    with Net("xg") as net:
        make_net(net, "a", "b", "c")
        p, stats = start(net, tmp_path, TEE3)
        try:
            assert net.wait_ping("a", B4, 10) and net.wait_ping("a", C4, 10)
            old = int(net.run("dut", "cat", f"/sys/class/net/veth-{gone}/ifindex").stdout)
            net.run("dut", "ip", "link", "del", f"veth-{gone}")
            if gone == "b":
                sent = int(net.run("a", sys.executable, "-c", _BLAST, "a0", 6000).stdout)
                assert sent > 4000
                assert net.ping("a", C4, 20, 0.005) == (20, 20)
            else:
                sent = int(net.run("b", sys.executable, "-c", _BLAST, "b0", 6000).stdout)
                assert sent > 4000
            net.veth(gone, f"{gone}0", "dut", f"veth-{gone}")
            net.addr(gone, f"{gone}0", f"{A4 if gone == 'a' else B4}/24")
            for h in ("a", "b", "c"):
                net.run(h, "ip", "neigh", "flush", "dev", f"{h}0")   # a new MAC
            new = int(net.run("dut", "cat", f"/sys/class/net/veth-{gone}/ifindex").stdout)
            assert new != old
            assert net.wait_ping("a", B4, 10)
            assert net.ping("a", B4, 50, 0.002) == (50, 50)
            assert net.ping("a", C4, 20, 0.002) == (20, 20)
            assert sorted(xdp_progs(net, "dut")) == ["veth-a", "veth-b", "veth-c"]
        finally:
            s, err = finish(net, p, stats, {"t": "tee"})
        assert xdp_progs(net, "dut") == []
    port = s["ports"][gone]
    # The blast alone is more than the port's tx ring and the kernel's hold.
    assert port["drops"].get(xdp.LINK_DOWN_DROP, 0) > 2100, port
    if gone == "b":
        assert s["ports"]["c"]["tx"] > 4000, s["ports"]["c"]
    gone_lines = log_lines(err, "interface gone")
    back = log_lines(err, "interface back")
    assert len(gone_lines) == 1 and f"port={gone}" in gone_lines[0], err
    assert len(back) == 1 and f"ifindex={new}" in back[0] and "mode=native" in back[0], err
    assert "buffers_lost=0" in back[0], err


def test_one_port_per_queue_in_a_process(tmp_path):
    """Two ports of one pipeline on the same queue are refused at open (they
    would share a fill ring without a lock); different queues are fine."""
    with Net("x2") as net:
        net.hosts("dut")
        net.run("dut", "ip", "link", "add", "q0", "numtxqueues", "2", "numrxqueues", "2",
                "type", "veth", "peer", "name", "q1")
        yaml = tmp_path / "twice.yaml"
        yaml.write_text("ports: {a: 'xdp:q0', b: 'xdp:q0@0'}\nlinks: ['a -> b']\n")
        r = net.run("dut", *nmroute_cmd("run", yaml, "--duration", "0.2"), check=False,
                    env=subprocess_env())
        assert r.returncode == 3, r.stderr
        assert last_line(r) == ("nmroute: b: queue 0 of q0 is already open in this process: "
                                "one xdp: port per queue"), r.stderr
        yaml.write_text("ports: {a: 'xdp:q0@0', b: 'xdp:q0@1'}\nlinks: ['a -> b']\n")
        r = net.run("dut", *nmroute_cmd("run", yaml, "--duration", "0.2"), check=False,
                    env=subprocess_env())
        assert r.returncode == 0, r.stderr
        assert xdp_progs(net, "dut") == []
