"""The fast path's nouns from Python: pool, ring, descriptor, drop reasons."""
import subprocess
import sys

import pytest
from helpers import subprocess_env

from nmroute.fastpath.batch import DESC_SIZE, MAX
from nmroute.fastpath.drops import N_REASONS, DropReason, reason_names
from nmroute.fastpath.pool import Pool
from nmroute.fastpath.ring import Ring


# --- pool ---------------------------------------------------------------------------

def test_pool_hands_out_buffers_in_order_and_takes_them_back():
    pool = Pool(8, 256)
    assert (pool.n_bufs, pool.buf_size, pool.n_free) == (8, 256, 8)
    got = [pool.take() for _ in range(8)]
    assert got == list(range(8))
    assert pool.n_free == 0
    with pytest.raises(MemoryError):
        pool.take()
    pool.give(5)
    pool.give(2)
    assert pool.n_free == 2
    assert pool.take() == 2          # last given, first taken (a stack)
    assert pool.take() == 5
    assert pool.n_free == 0


def test_pool_rejects_bad_indexes_and_sizes():
    pool = Pool(4, 128)
    with pytest.raises(ValueError):
        pool.give(4)                 # out of range
    with pytest.raises(ValueError):
        pool.give(0)                 # the pool is full: nothing was taken
    for bad in [(0, 2048), (4, 100), (4, 32)]:
        with pytest.raises(ValueError):
            Pool(*bad)


def test_pool_buffers_are_separate():
    pool = Pool(4, 128)
    for i in range(4):
        pool.write(i, bytes([i + 1]) * 128)
    for i in range(4):
        assert pool.read(i, 128) == bytes([i + 1]) * 128
    with pytest.raises(IndexError):
        pool.read(4, 1)
    with pytest.raises(IndexError):
        pool.write(0, bytes(129))


# --- ring ---------------------------------------------------------------------------

@pytest.mark.parametrize("size", [2, 64, 1024])
def test_rx_ring_starts_empty(size):
    pool = Pool(size + 1, 2048)
    ring = Ring(pool, size, False)
    assert ring.num_slots == size
    assert (ring.head, ring.tail, ring.hwcur) == (0, 0, 0)
    assert ring.space() == 0         # no frames for the user
    assert ring.pending() == 0
    assert pool.n_free == 1          # every slot owns a buffer
    assert sorted(ring.slot(i)[0] for i in range(size)) == list(range(size))
    assert all(ring.slot(i)[1:] == (0, 0, 0) for i in range(size))


@pytest.mark.parametrize("size", [2, 64, 1024])
def test_tx_ring_starts_with_every_slot_but_one_free(size):
    pool = Pool(size, 2048)
    ring = Ring(pool, size, True)
    assert (ring.head, ring.tail, ring.hwcur) == (0, size - 1, 0)
    assert ring.space() == size - 1  # one slot is always kept back
    assert ring.pending() == 0
    assert pool.n_free == 0


def test_ring_gives_its_buffers_back():
    pool = Pool(64, 2048)
    ring = Ring(pool, 64, True)
    assert pool.n_free == 0
    del ring
    assert pool.n_free == 64


def test_ring_sizes():
    pool = Pool(64, 2048)
    for bad in (0, 1, 3, 48):
        with pytest.raises(ValueError):
            Ring(pool, bad, False)
    assert pool.n_free == 64


def test_a_ring_the_pool_cannot_fill_gives_back_only_what_it_took():
    # In a child process: the bug writes past the end of a malloc'd array.
    code = (
        "import gc\n"
        "from nmroute.fastpath.pool import Pool\n"
        "from nmroute.fastpath.ring import Ring\n"
        "pool = Pool(64, 2048)\n"
        "try:\n"
        "    Ring(pool, 128, False)\n"
        "except MemoryError:\n"
        "    pass\n"
        "gc.collect()\n"
        "print(pool.n_free, len({pool.take() for _ in range(pool.n_free)}))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], env=subprocess_env(),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["64", "64"]


def test_ring_slot_and_frame_bounds():
    pool = Pool(8, 256)
    ring = Ring(pool, 8, False)
    with pytest.raises(IndexError):
        ring.slot(8)
    with pytest.raises(IndexError):
        ring.frame(8)
    assert ring.frame(0) == b""


# --- batch and drops ----------------------------------------------------------------

def test_desc_is_one_cache_line():
    assert DESC_SIZE == 64
    assert MAX == 256


def test_drop_reason_names_are_unique_and_named_after_the_table():
    names = reason_names()
    assert len(set(names.values())) == len(names)
    assert all(0 <= i < N_REASONS for i in names)
    for member in DropReason:
        name = member.name[len("DROP_"):].lower().replace("_", "-")
        if name.startswith("malformed-"):
            name = "malformed:" + name[len("malformed-"):]
        assert names[int(member)] == name
    assert names[int(DropReason.DROP_MALFORMED_IPV4)] == "malformed:ipv4"
    for name in ("drop", "oversize", "no-buffer", "tx-full", "shutdown", "io-error"):
        assert name in names.values()
    assert all(n and n == n.strip() and " " not in n for n in names.values())
