"""netmap: and vale ports: the port-name grammar, the ABI layouts, and the
ring translation, all without the netmap module (it cannot load here).

The translation tests build a region as the kernel lays it out (netmap_if,
its ring offset table, rings of slots, buffers) in anonymous memory, bind a
port to it with `attach_region` (no ioctls), and play the kernel's part:
fill rx slots and move tail, take tx slots and move tail, between rxsync and
txsync calls.
"""
import ctypes
import errno
import mmap
import os
import shutil
import struct
import subprocess

import pytest

from helpers import BAD_CONFIG, NO_PORT, OK, REPO, error_lines, run_cli, write_yaml
from nmroute.fastpath.lib import netmap_name as nn
from nmroute.fastpath.lib.netmap_name import Conf, NetmapName
from nmroute.errors import ParamError
from nmroute.config.portname import split_port_name
from nmroute.fastpath.drops import DropReason
from nmroute.fastpath.pool import Pool
from nmroute.fastpath.ports import netmap
from nmroute.errors import PortError
from nmroute.fastpath.ports.port import N_COUNTERS, Port

P_DROPS = N_COUNTERS - 48     # rx, rx bytes, tx, tx bytes, then the reasons
OVERSIZE = P_DROPS + int(DropReason.DROP_OVERSIZE)
MALFORMED = P_DROPS + int(DropReason.DROP_MALFORMED)


# --- the port-name grammar --------------------------------------------------------

@pytest.mark.parametrize("text, kernel, mode, ring, flags, mem", [
    ("netmap:eth0", "eth0", nn.NR_REG_ALL_NIC, 0, 0, 0),
    ("netmap:eth0^", "eth0", nn.NR_REG_SW, 0, 0, 0),
    ("netmap:eth0^3", "eth0", nn.NR_REG_ONE_SW, 3, 0, 0),
    ("netmap:eth0*", "eth0", nn.NR_REG_NIC_SW, 0, 0, 0),
    ("netmap:eth0-2", "eth0", nn.NR_REG_ONE_NIC, 2, 0, 0),
    ("netmap:eth0-4094", "eth0", nn.NR_REG_ONE_NIC, 4094, 0, 0),
    ("netmap:eth0/R", "eth0", nn.NR_REG_ALL_NIC, 0, nn.NR_RX_RINGS_ONLY, 0),
    ("netmap:eth0-1/Tx", "eth0", nn.NR_REG_ONE_NIC, 1, nn.NR_TX_RINGS_ONLY | nn.NR_EXCLUSIVE, 0),
    ("netmap:eth0/trz", "eth0", nn.NR_REG_ALL_NIC, 0,
     nn.NR_MONITOR_TX | nn.NR_MONITOR_RX | nn.NR_ZCOPY_MON, 0),
    ("netmap:eth0@2", "eth0", nn.NR_REG_ALL_NIC, 0, 0, 2),
    ("netmap:eth0^@2/x", "eth0", nn.NR_REG_SW, 0, nn.NR_EXCLUSIVE, 2),
    ("netmap:eth0/R@3", "eth0", nn.NR_REG_ALL_NIC, 0, nn.NR_RX_RINGS_ONLY, 3),
    ("netmap:x{1", "x{1", nn.NR_REG_ALL_NIC, 0, 0, 0),
    ("netmap:x}1", "x}1", nn.NR_REG_ALL_NIC, 0, 0, 0),
    ("netmap:eth0{pipe_a/x", "eth0{pipe_a", nn.NR_REG_ALL_NIC, 0, nn.NR_EXCLUSIVE, 0),
    ("vale0:p1", "vale0:p1", nn.NR_REG_ALL_NIC, 0, 0, 0),
    ("vale:p1", "vale:p1", nn.NR_REG_ALL_NIC, 0, 0, 0),
    ("valeA_1:port_2-0", "valeA_1:port_2", nn.NR_REG_ONE_NIC, 0, 0, 0),
    ("vale0:p1{2", "vale0:p1{2", nn.NR_REG_ALL_NIC, 0, 0, 0),
])
def test_grammar(text, kernel, mode, ring, flags, mem):
    nm = nn.parse(text)
    assert (nm.kernel_name, nm.mode, nm.ringid, nm.flags, nm.mem_id) == (
        kernel, mode, ring, flags, mem)
    assert nm.conf == Conf()
    assert nm.text == text


def test_kernel_name_drops_only_the_netmap_prefix():
    # The kernel refuses 'netmap:q{0' (ENXIO) and takes 'q{0'; VALE keeps its switch.
    assert nn.parse("netmap:q{0").kernel_name == "q{0"
    assert nn.parse("vale0:a").kernel_name == "vale0:a"
    assert nn.parse("netmap:q{0").pipe == "{" and nn.parse("netmap:q}0").pipe == "}"
    assert nn.parse("netmap:q").pipe is None
    assert nn.parse("vale0:a").vale and not nn.parse("netmap:a").vale


def test_directions():
    assert nn.parse("netmap:e/R").can_rx and not nn.parse("netmap:e/R").can_tx
    assert not nn.parse("netmap:e/T").can_rx and nn.parse("netmap:e/T").can_tx
    assert not nn.parse("netmap:e/t").can_tx and nn.parse("netmap:e/t").can_rx
    assert nn.parse("netmap:e").can_rx and nn.parse("netmap:e").can_tx


@pytest.mark.parametrize("text, conf", [
    ("netmap:x{1@conf=4", Conf(tx_rings=4, rx_rings=4)),
    ("netmap:x{1@conf:rings=2,slots=1024", Conf(2, 2, 0, 0, 1024, 1024)),
    ("netmap:x{1@conf:tx-rings=3,rings=1", Conf(tx_rings=3, rx_rings=1)),
    ("netmap:x{1@conf:rings=1,tx-rings=3", Conf(tx_rings=3, rx_rings=1)),
    ("vale0:p@conf:host-rings=1,rx-slots=256,tx-slots=512",
     Conf(0, 0, 1, 1, 512, 256)),
    ("netmap:x/R@conf:host-tx-rings=2,host-rx-rings=3", Conf(0, 0, 2, 3, 0, 0)),
    ("netmap:x@2@conf:rx-rings=5", Conf(rx_rings=5)),
])
def test_conf_option(text, conf):
    assert nn.parse(text).conf == conf


@pytest.mark.parametrize("text, message, offset", [
    ("eth0", "expected 'netmap:NAME' or 'valeX:NAME'", 0),
    ("netmap:", "the port name is empty", 7),
    ("netmap:^", "the port name is empty", 7),
    ("netmap:eth0.100", "'eth0.100' is not a netmap port name (letters, digits and '_' only; "
                        "'.' is not allowed)", 11),
    ("vale0:p.1", "'p.1' is not a netmap port name (letters, digits and '_' only; "
                  "'.' is not allowed)", 7),
    ("netmap:x{", "expected a pipe name after '{'", 9),
    ("netmap:x{a{b", "'a{b' is not a pipe name (letters, digits and '_' only; "
                     "'{' is not allowed)", 10),
    ("netmap:eth0-", "expected a ring number after '-'", 12),
    ("netmap:eth0-x", "expected a ring number after '-'", 12),
    ("netmap:eth0-4095", "ring 4095 is out of range (0 to 4094)", 12),
    ("netmap:eth0^5000", "ring 5000 is out of range (0 to 4094)", 12),
    ("netmap:eth0^*", "unexpected '*' (after the ring selection only /FLAGS and @OPTIONS "
                      "may follow)", 12),
    ("netmap:eth0-1-2", "unexpected '-' (after the ring selection only /FLAGS and @OPTIONS "
                        "may follow)", 13),
    ("netmap:eth0/", "expected flags after '/' (x, R, T, t, r, z)", 12),
    ("netmap:eth0/q", "unknown flag 'q' (flags are x exclusive, R rx only, T tx only, "
                      "t/r/z monitor)", 12),
    ("netmap:eth0/RT", "flags R (rx only) and T (tx only) exclude each other", 11),
    ("netmap:eth0/R^", "unknown flag '^' (flags are x exclusive, R rx only, T tx only, "
                       "t/r/z monitor)", 13),
    ("netmap:eth0@0", "memory region 0 does not exist (use 1 or more)", 12),
    ("netmap:eth0@1@2", "the memory region (@N) is given twice", 13),
    ("netmap:eth0@", "empty option after '@'", 12),
    ("netmap:eth0@cnf:rings=1", "unknown option '@cnf' (did you mean 'conf'?)", 11),
    ("netmap:eth0@share=eth1", "netmap's option '@share' is not supported by nmroute", 11),
    ("netmap:eth0@extmem:file=/x", "netmap's option '@extmem' is not supported by nmroute", 11),
    ("netmap:x{1@conf", "expected '@conf=N' or '@conf:KEY=N,...'", 15),
    ("netmap:x{1@conf:rigns=2", "unknown @conf key 'rigns' (did you mean 'rings'?)", 16),
    ("netmap:x{1@conf:rings", "expected KEY=N in @conf, got 'rings'", 16),
    ("netmap:x{1@conf:rings=two", "@conf rings: expected a number, got 'two'", 22),
    ("netmap:x{1@conf:slots=1,slots=2", "@conf key 'slots' is given twice", 24),
    ("netmap:x{1@conf=1@conf=2", "option '@conf' is given twice", 17),
    ("netmap:" + "a" * 64, "the name is longer than 63 bytes", 7),
])
def test_grammar_errors(text, message, offset):
    with pytest.raises(ParamError) as e:
        nn.parse(text)
    assert str(e.value) == f"netmap port name {text!r}: {message}"
    assert e.value.offset == offset


def test_describe():
    assert nn.parse("netmap:eth0-3").describe() == "eth0: NIC ring 3"
    assert nn.parse("vale0:p").describe() == "vale0:p: all NIC rings"


# --- the ABI ------------------------------------------------------------------------

def _ioc(direction, nr, size):
    return (direction << 30) | (size << 16) | (ord("i") << 8) | nr


def test_abi_layout_as_built():
    a = netmap.ABI
    assert a["api"] == 14
    assert (a["sizeof_slot"], a["sizeof_ring"], a["sizeof_if"]) == (16, 256, 56)
    assert (a["sizeof_header"], a["sizeof_register"]) == (88, 56)
    assert (a["ring.head"], a["ring.tail"], a["ring.slot"]) == (20, 28, 256)
    assert (a["if.ring_ofs"], a["if.ni_host_tx_rings"]) == (56, 36)
    assert (a["register.nr_mode"], a["register.nr_flags"], a["header.nr_body"]) == (36, 48, 80)
    assert a["NIOCCTRL"] == _ioc(3, 151, 88)          # _IOWR('i', 151, nmreq_header)
    assert a["NIOCTXSYNC"] == _ioc(0, 148, 0)
    assert a["NIOCRXSYNC"] == _ioc(0, 149, 0)


def test_python_constants_match_the_header():
    for name in ("NR_REG_ALL_NIC", "NR_REG_SW", "NR_REG_NIC_SW", "NR_REG_ONE_NIC",
                 "NR_REG_ONE_SW", "NR_MONITOR_TX", "NR_MONITOR_RX", "NR_ZCOPY_MON",
                 "NR_EXCLUSIVE", "NR_RX_RINGS_ONLY", "NR_TX_RINGS_ONLY"):
        assert getattr(nn, name) == netmap.ABI[name], name


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_header_static_asserts_compile(tmp_path):
    src = tmp_path / "t.c"
    src.write_text('#include "netmap.h"\nint main(void) { return 0; }\n')
    r = subprocess.run(["cc", "-std=c11", "-Wall", "-Werror", "-I", str(REPO / "kernel"),
                        "-c", str(src), "-o", str(tmp_path / "t.o")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_register_request_bytes():
    hdr, reg = netmap.request_bytes("netmap:eth0-2/Rx@3@conf:rings=2,rx-slots=512")
    version, reqtype, reserved = struct.unpack_from("<HHI", hdr, 0)
    assert (version, reqtype, reserved) == (14, 1, 0)
    assert hdr[8:72].rstrip(b"\0") == b"eth0"
    assert struct.unpack_from("<QQ", hdr, 72) == (0, 0)
    (offset, memsize, tx_slots, rx_slots, tx_rings, rx_rings, htx, hrx, mem_id, ringid,
     mode, extra, flags) = struct.unpack("<QQIIHHHHHHIIxxxxQ", reg)
    assert (offset, memsize, extra) == (0, 0, 0)
    assert (tx_rings, rx_rings, htx, hrx, tx_slots, rx_slots) == (2, 2, 0, 0, 0, 512)
    assert (mem_id, ringid, mode) == (3, 2, nn.NR_REG_ONE_NIC)
    assert flags == nn.NR_RX_RINGS_ONLY | nn.NR_EXCLUSIVE
    hdr, _ = netmap.request_bytes("vale0:p1")
    assert hdr[8:72].rstrip(b"\0") == b"vale0:p1"


# --- a region laid out as the kernel lays it out ------------------------------------

SLOT = struct.Struct("<IHHQ")     # buf_idx, len, flags, ptr
NS_MOREFRAG = 0x20


class Region:
    """A netmap region: netmap_if at IF_AT, its ring offset table, rings at
    page boundaries, then the buffers. `bound` lists, per kind, which
    rings this descriptor bound (the others get offset 0)."""
    IF_AT = 512

    def __init__(self, tx=1, rx=1, host_tx=1, host_rx=1, slots=8, buf_size=2048,
                 bound_tx=None, bound_rx=None):
        self.counts = (tx, host_tx, rx, host_rx)
        n_tx, n_rx = tx + host_tx, rx + host_rx
        bound_tx = range(tx) if bound_tx is None else bound_tx
        bound_rx = range(rx) if bound_rx is None else bound_rx
        ring_bytes = (256 + 16 * slots + 4095) // 4096 * 4096
        self.rings_at = 4096
        self.bufs_at = self.rings_at + (n_tx + n_rx) * ring_bytes
        self.buf_size = buf_size
        n_bufs = (n_tx + n_rx) * slots
        self.size = self.bufs_at + n_bufs * buf_size
        self.mm = mmap.mmap(-1, self.size)
        self.addr = ctypes.addressof(ctypes.c_char.from_buffer(self.mm))
        m = self.mm
        m[self.IF_AT:self.IF_AT + 4] = b"nmr0"
        struct.pack_into("<IIIIIII", m, self.IF_AT + 16, 14, 0, tx, rx, 0, host_tx, host_rx)
        self.ring = {}     # (kind, i) -> offset of the ring in the region
        for k in range(n_tx + n_rx):
            at = self.rings_at + k * ring_bytes
            is_rx = k >= n_tx
            i = k - n_tx if is_rx else k
            bound = i in (bound_rx if is_rx else bound_tx)
            struct.pack_into("<q", m, self.IF_AT + 56 + 8 * k, at - self.IF_AT if bound else 0)
            # buf_ofs, num_slots, nr_buf_size, ringid, dir, head, cur, tail
            tail = 0 if is_rx else slots - 1
            struct.pack_into("<qIIHHIII", m, at, self.bufs_at - at, slots, buf_size, i,
                             int(is_rx), 0, 0, tail)
            for s in range(slots):
                SLOT.pack_into(m, at + 256 + 16 * s, k * slots + s, 0, 0, 0)
            self.ring[("rx" if is_rx else "tx", i)] = at
        self.hwcur = {}

    def close(self):
        self.mm.close()

    # ring fields
    def get(self, kind, i):
        """(head, cur, tail) of a ring."""
        return struct.unpack_from("<III", self.mm, self.ring[(kind, i)] + 20)

    def set_tail(self, kind, i, tail):
        struct.pack_into("<I", self.mm, self.ring[(kind, i)] + 28, tail)

    def slot(self, kind, i, s):
        return SLOT.unpack_from(self.mm, self.ring[(kind, i)] + 256 + 16 * s)

    def set_slot(self, kind, i, s, buf_idx=None, length=0, flags=0):
        old = self.slot(kind, i, s)
        SLOT.pack_into(self.mm, self.ring[(kind, i)] + 256 + 16 * s,
                       old[0] if buf_idx is None else buf_idx, length, flags, 0)

    def buf(self, idx):
        return self.bufs_at + idx * self.buf_size

    def slots(self, kind, i):
        return struct.unpack_from("<I", self.mm, self.ring[(kind, i)] + 8)[0]

    # the kernel's part
    def deliver(self, i, frames, flags=None):
        """rxsync, kernel side: frames into rx ring i from tail on."""
        head, _cur, tail = self.get("rx", i)
        n = self.slots("rx", i)
        for k, f in enumerate(frames):
            assert (tail + 1) % n != head, "fake kernel rx ring full"
            idx = self.slot("rx", i, tail)[0]
            self.mm[self.buf(idx):self.buf(idx) + len(f)] = f
            self.set_slot("rx", i, tail, length=len(f), flags=(flags or {}).get(k, 0))
            tail = (tail + 1) % n
        self.set_tail("rx", i, tail)

    def transmit(self, i):
        """txsync, kernel side: the frames in [hwcur, head) leave; tail
        moves to head - 1. Returns them."""
        head, _cur, _tail = self.get("tx", i)
        n = self.slots("tx", i)
        cur = self.hwcur.get(i, 0)
        out = []
        while cur != head:
            idx, length, _f, _p = self.slot("tx", i, cur)
            out.append(bytes(self.mm[self.buf(idx):self.buf(idx) + length]))
            cur = (cur + 1) % n
        self.hwcur[i] = cur
        self.set_tail("tx", i, (head - 1) % n)
        return out


def frames(n, size=60, tag=0):
    return [bytes([tag, k]) + bytes(range(size - 2)) for k in range(n)]


@pytest.fixture
def pool():
    return Pool(256, 2048)


def port_on(region, pool, rx=True, tx=True, ring_size=16, cls=netmap.NetmapPort,
            name="nmr0"):
    p = cls("p", {"name": name})
    Port.open(p, pool, ring_size, rx, tx)      # the rings; no /dev/netmap
    p.attach_region(region.addr, region.size, Region.IF_AT, rx, tx)
    return p


@pytest.fixture
def region():
    regions = []

    def make(**kw):
        r = Region(**kw)
        regions.append(r)
        return r
    yield make
    for r in regions:
        r.close()


def test_rx_copies_frames_and_gives_the_slots_back(region, pool):
    r = region()
    p = port_on(r, pool)
    sent = frames(3)
    r.deliver(0, sent)
    assert p.do_rxsync() == 3
    head, cur, tail = r.get("rx", 0)
    assert head == cur == tail == 3           # all released at once
    assert netmap.take_frames(p) == sent
    assert p.do_rxsync() == 0
    assert p.counters()[:4] == [0, 0, 0, 0]   # rx is counted by the executor


def test_rx_ring_index_counts_host_tx_rings_from_netmap_if(region, pool):
    # A VALE port or a pipe: one ring pair, and a host tx ring in the table
    # (ni_host_tx_rings = 1) that the descriptor did not bind.
    r = region(tx=1, rx=1, host_tx=1, host_rx=1)
    p = port_on(r, pool)
    assert p.kernel_rings() == (1, 1)
    r.deliver(0, frames(2, tag=7))
    assert p.do_rxsync() == 2
    assert netmap.take_frames(p) == frames(2, tag=7)


def test_rx_wraps_around_the_kernel_ring(region, pool):
    r = region(slots=8)
    p = port_on(r, pool)
    got = []
    for batch in range(5):                    # 5 x 5 frames through 8 slots
        r.deliver(0, frames(5, tag=batch))
        assert p.do_rxsync() == 5
        got += netmap.take_frames(p)
    assert got == [f for b in range(5) for f in frames(5, tag=b)]
    assert r.get("rx", 0) == (25 % 8, 25 % 8, 25 % 8)


def test_rx_stops_when_the_port_ring_is_full(region, pool):
    r = region(slots=32)
    p = port_on(r, pool, ring_size=8)         # 7 usable slots
    sent = frames(20)
    r.deliver(0, sent)
    assert p.do_rxsync() == 7
    assert r.get("rx", 0) == (7, 7, 20)       # the rest stays in the kernel ring
    got = netmap.take_frames(p)
    while len(got) < 20:
        assert p.do_rxsync() > 0
        got += netmap.take_frames(p)
    assert got == sent


def test_rx_reads_every_bound_ring(region, pool):
    # netmap:eth0*: two NIC rx rings and the host rx ring.
    r = region(tx=2, rx=2, host_tx=1, host_rx=1, bound_tx=(0, 1, 2), bound_rx=(0, 1, 2))
    p = port_on(r, pool)
    assert p.kernel_rings() == (3, 3)
    for i in range(3):
        r.deliver(i, frames(2, tag=i))
    assert p.do_rxsync() == 6
    assert sorted(netmap.take_frames(p)) == sorted(f for i in range(3) for f in frames(2, tag=i))


def test_rx_takes_turns_between_rings_when_full(region, pool):
    r = region(tx=2, rx=2, host_tx=0, host_rx=0, slots=16)
    p = port_on(r, pool, ring_size=4)         # 3 usable slots
    r.deliver(0, frames(6, tag=0))
    r.deliver(1, frames(6, tag=1))
    got = []
    for _ in range(8):
        p.do_rxsync()
        got += netmap.take_frames(p)
    assert sorted(got) == sorted(frames(6, tag=0) + frames(6, tag=1))
    # Within each ring, order is kept.
    assert [f for f in got if f[0] == 0] == frames(6, tag=0)


def test_rx_drops_what_it_cannot_take(region, pool):
    r = region(slots=16, buf_size=4096)
    p = port_on(r, pool)
    big = bytes(3000)                          # longer than a 2048-byte pool buffer
    r.deliver(0, [frames(1)[0], big, b"a" * 100, b"b" * 60, frames(1, tag=9)[0]],
              flags={2: NS_MOREFRAG})          # 2 and 3: one frame over two slots
    head, _c, tail = r.get("rx", 0)
    assert p.do_rxsync() == 2
    assert netmap.take_frames(p) == [frames(1)[0], frames(1, tag=9)[0]]
    c = p.counters()
    assert c[0] == 2 and c[OVERSIZE] == 2      # counted as received, dropped oversize
    # A slot whose buffer index lies outside the region: malformed.
    r.deliver(0, [b"x" * 60])
    r.set_slot("rx", 0, 5, buf_idx=10**6, length=60)
    assert p.do_rxsync() == 0
    assert p.counters()[MALFORMED] == 1
    assert r.get("rx", 0)[0] == 6


def test_tx_copies_frames_into_kernel_slots(region, pool):
    r = region(slots=8)
    p = port_on(r, pool)
    sent = frames(3, size=100)
    assert netmap.put_frames(p, sent) == 3
    assert p.do_txsync() == 3
    assert r.get("tx", 0)[:2] == (3, 3)       # head = cur = after the last frame
    assert r.transmit(0) == sent
    c = p.counters()
    assert (c[2], c[3]) == (3, 300)


def test_tx_waits_when_the_kernel_ring_is_full(region, pool):
    r = region(slots=8)                        # 7 free slots
    p = port_on(r, pool, ring_size=32)
    sent = frames(12)
    assert netmap.put_frames(p, sent) == 12
    assert p.do_txsync() == 7
    assert p.tx_ring.pending() == 5            # the rest waits in the port's ring
    out = r.transmit(0)
    assert p.do_txsync() == 5
    out += r.transmit(0)
    assert out == sent
    assert p.tx_ring.pending() == 0


def test_tx_fills_one_kernel_ring_after_another(region, pool):
    r = region(tx=2, rx=1, host_tx=0, host_rx=0, slots=4)   # 3 free slots each
    p = port_on(r, pool)
    sent = frames(6)
    netmap.put_frames(p, sent)
    assert p.do_txsync() == 6
    assert r.transmit(0) + r.transmit(1) == sent


def test_tx_wraps_around_the_kernel_ring(region, pool):
    r = region(slots=8)
    p = port_on(r, pool)
    out = []
    for b in range(6):
        netmap.put_frames(p, frames(5, tag=b))
        assert p.do_txsync() == 5
        out += r.transmit(0)
    assert out == [f for b in range(6) for f in frames(5, tag=b)]


def test_tx_drops_frames_longer_than_a_kernel_buffer(region, pool):
    r = region(slots=8, buf_size=256)
    p = port_on(r, pool)
    netmap.put_frames(p, [b"a" * 100, b"b" * 300, b"c" * 256])
    assert p.do_txsync() == 2
    assert r.transmit(0) == [b"a" * 100, b"c" * 256]
    assert p.counters()[OVERSIZE] == 1


def test_region_that_is_not_netmaps(region, pool):
    r = region()
    p = netmap.NetmapPort("p", {"name": "nmr0"})
    with pytest.raises(PortError) as e:
        p.attach_region(r.addr, 590, Region.IF_AT, True, True)
    assert str(e.value) == "p: netmap_if ring table lies outside the netmap region"
    struct.pack_into("<q", r.mm, Region.IF_AT + 56, r.size)     # tx ring 0 past the end
    with pytest.raises(PortError) as e:
        p.attach_region(r.addr, r.size, Region.IF_AT, False, True)
    assert str(e.value) == "p: netmap ring 0 lies outside the region"


def test_rings_the_descriptor_did_not_bind(region, pool):
    r = region(bound_tx=())                    # as /R binds: no tx ring
    p = netmap.NetmapPort("p", {"name": "nmr0/R"})
    with pytest.raises(PortError) as e:
        p.attach_region(r.addr, r.size, Region.IF_AT, True, True)
    assert str(e.value) == "p: netmap bound no tx ring to this port"
    p.attach_region(r.addr, r.size, Region.IF_AT, True, False)
    assert p.kernel_rings() == (1, 0)


def test_sync_ioctls_per_call(region, pool):
    # On a descriptor where the netmap ioctls fail harmlessly (/dev/null):
    # no syscall when idle, rx syncs again at once after giving slots back.
    r = region(slots=8)
    p = port_on(r, pool)
    p.attach_region(r.addr, r.size, Region.IF_AT, True, True, os.open("/dev/null", os.O_RDWR))
    assert p.do_rxsync() == 0 and p.syncs == 1
    assert p.do_txsync() == 0 and p.syncs == 1
    r.deliver(0, frames(2))
    assert p.do_rxsync() == 2 and p.syncs == 3
    netmap.put_frames(p, frames(2))
    assert p.do_txsync() == 2 and p.syncs == 4
    p.close()
    assert p.kernel_rings() == (0, 0)
    assert p.do_rxsync() == 0 and p.do_txsync() == 0


@pytest.mark.parametrize("spec, err, version, message", [
    ("netmap:eth9", errno.ENXIO, 14, "register 'eth9' with netmap: no such interface in "
     "this network namespace, or its driver is not netmap-capable"),
    ("netmap:q{0", errno.ENXIO, 14, "register 'q{0' with netmap: No such device or address "
     "(netmap refused the name)"),
    ("netmap:eth0/x", errno.EBUSY, 14, "register 'eth0' with netmap: its rings are busy "
     "(another process holds them exclusively)"),
    ("netmap:eth0-7", errno.EINVAL, 14, "register 'eth0' with netmap: netmap rejected the "
     "request (eth0: NIC ring 7): Invalid argument"),
    ("netmap:eth0", errno.EINVAL, 15, "register 'eth0' with netmap: the netmap module "
     "speaks API 15, nmroute speaks 14: use a matching netmap"),
    ("vale0:p", errno.EACCES, 14, "register 'vale0:p' with netmap: permission denied (run "
     "as root, or give this user read-write access to /dev/netmap)"),
])
def test_register_failures_say_why(spec, err, version, message):
    assert netmap._register_reason(nn.parse(spec), err, version) == message


# --- opening, and the configuration -------------------------------------------------

@pytest.mark.skipif(os.path.exists("/dev/netmap"), reason="the netmap module is loaded here")
def test_open_without_the_module_says_so_in_one_line(pool):
    for cls, name in ((netmap.NetmapPort, "eth0"), (netmap.ValePort, "vale0:p1")):
        p = cls("p", {"name": name})
        with pytest.raises(PortError) as e:
            p.open(pool, 16, True, True)
        assert str(e.value) == ("p: netmap module not loaded (/dev/netmap missing): "
                                "use xdp:IFACE or packet:IFACE instead")


@pytest.mark.skipif(os.path.exists("/dev/netmap"), reason="the netmap module is loaded here")
def test_run_without_the_module(tmp_path):
    write_yaml(tmp_path, """\
        ports:
          w: "netmap:nmr0"
        links: [w -> sink]
        """)
    r = run_cli("run", "p.yaml", cwd=tmp_path)
    assert r.code == NO_PORT, str(r)
    assert error_lines(r) == ["w: netmap module not loaded (/dev/netmap missing): "
                              "use xdp:IFACE or packet:IFACE instead"]


def test_check_a_pipeline_with_netmap_ports(tmp_path):
    p = write_yaml(tmp_path, """\
        ports:
          wire: "netmap:eth1"
          stack: "netmap:eth1^"
          mon: "netmap:eth2/R"
          pipe: "netmap:x{1@conf:rings=1,slots=256"
        links: ["wire -> stack", "stack -> wire", "mon -> pipe"]
        """)
    r = run_cli("check", p)
    assert r.code == OK, str(r)


def test_check_reports_a_bad_netmap_name(tmp_path):
    p = write_yaml(tmp_path, """\
        ports:
          wire: "netmap:eth1-x"
        links: [wire -> sink]
        """)
    r = run_cli("check", p)
    assert r.code == BAD_CONFIG
    (line,) = error_lines(r)
    assert line.endswith("port 'wire' (netmap): name: netmap port name 'netmap:eth1-x': "
                         "expected a ring number after '-'"), line


def test_check_refuses_writing_an_rx_only_port(tmp_path):
    p = write_yaml(tmp_path, """\
        ports:
          src: "gen:count=1"
          mon: "netmap:eth2/R"
        links: ["src -> mon"]
        """)
    r = run_cli("check", p)
    assert r.code == BAD_CONFIG
    assert any("'netmap:eth2/R' binds no tx ring (/R or a monitor): it cannot be written to"
               in ln for ln in error_lines(r)), str(r)


def test_netmap_name_through_the_loader():
    scheme, cls, items = split_port_name("netmap:eth0^")
    assert (scheme, cls, items) == ("netmap", netmap.NetmapPort, [("name", "eth0^", 7)])


def test_vale_name_through_the_loader(tmp_path):
    scheme, cls, items = split_port_name("vale0:p1")
    assert (scheme, cls, items) == ("vale", netmap.ValePort, [("name", "vale0:p1", 0)])


def test_elements_shows_the_netmap_reference():
    r = run_cli("elements", "netmap")
    assert r.code == OK
    assert r.out.startswith("netmap:NAME — a NIC, its host rings or a pipe")
    assert "Example:" in r.out
    assert NetmapName("netmap:a", "a").describe() == "a: all NIC rings"
