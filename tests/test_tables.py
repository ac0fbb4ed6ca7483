"""The run owns the tables its elements and ports share (fastpath/lib/tables.py):
a table is made by its first user, shared by the others, closed with the run,
and nothing of a run is left in a module's globals."""
import copy
import sys
import weakref

import pytest

from helpers import run_pipeline
from nmroute.errors import EXIT_CODES, RunError
from nmroute.fastpath import lpm
from nmroute.fastpath.lib.tables import Tables


class Closing:
    closed = 0

    def close(self):
        self.closed += 1


def test_the_first_user_makes_a_table_and_the_others_share_it():
    t = Tables()
    made = []
    a = t.get("k", "x", lambda: made.append(1) or Closing())
    assert t.get("k", "x", lambda: made.append(2) or Closing()) is a
    assert made == [1]
    assert t.get("k", "y", Closing) is not a          # another name
    assert t.get("j", "x", Closing) is not a          # another kind
    assert t.names("k") == ["x", "y"] and len(t) == 3


def test_a_user_a_table_does_not_fit_is_told_why():
    t = Tables()
    t.get("conntrack", "fw", Closing)
    with pytest.raises(ValueError, match=r"^conntrack table 'fw': made with 16, not 32$"):
        t.get("conntrack", "fw", Closing, lambda _: "made with 16, not 32")
    assert t.get("conntrack", "fw", Closing, lambda _: None) is not None


def test_close_closes_every_table_once_and_forgets_them():
    t = Tables()
    a, b = t.get("k", "a", Closing), t.get("k", "b", Closing)
    t.close()
    assert (a.closed, b.closed, len(t)) == (1, 1, 0)
    assert t.get("k", "a", Closing) is not a           # a new run starts afresh
    t.close()
    assert a.closed == 1


def test_neighbor_tables_are_shared_within_a_run_not_across_runs():
    run1, run2 = Tables(), Tables()
    t = lpm.neighbor_table(run1, "t", 16)
    assert lpm.neighbor_table(run1, "t", 16) is t
    assert lpm.neighbor_table(run2, "t", 16) is not t
    with pytest.raises(ValueError, match="made with max_neighbors 16, not 32"):
        lpm.neighbor_table(run1, "t", 32)


PIPELINE = """
ports:
  src: {port: gen, count: 2000, proto: udp, src: 198.18.0.1-198.18.0.50,
        dst: 198.19.0.1-198.19.0.9, dst_mac: "02:00:00:00:00:01"}
  out: sink
elements:
  nb: {type: neighbor, table: t, addresses: [{ip: 198.18.0.1, mac: "02:00:00:00:00:01"}]}
  r:
    type: route
    table: t
    routes_file: r.routes
    macs: {a: "02:00:00:00:00:0a"}
    neighbors: [{ip: 198.18.255.1, mac: "02:00:00:00:00:0b"}]
  fw1: {type: filter, default: allow, stateful: true, conntrack: c, max_conns: %s}
  fw2: {type: filter, default: allow, stateful: true, conntrack: c}
links:
  - src -> nb -> fw1 -> fw2 -> r -> out
  - nb [reply] -> out
"""


def _module_state():
    """Every nmroute module's mutable globals (containers), as values."""
    out = {}
    for name, mod in list(sys.modules.items()):
        if not name.startswith("nmroute") or mod is None:
            continue
        for k, v in vars(mod).items():
            if isinstance(v, (dict, list, set, bytearray, weakref.WeakValueDictionary)):
                out[name, k] = repr(copy.copy(v))
    return out


def test_a_run_leaves_nothing_in_module_globals(tmp_path):
    """No module-level registry: two runs in one process start alike, and
    the globals after a run are as before it."""
    (tmp_path / "r.routes").write_text("198.19.0.0/16 via 198.18.255.1 output a\n")
    run_pipeline(tmp_path, PIPELINE % 65536)          # imports everything a run uses
    before = _module_state()
    first = run_pipeline(tmp_path, PIPELINE % 65536).stats
    assert _module_state() == before
    second = run_pipeline(tmp_path, PIPELINE % 65536).stats
    assert first["elements"] == second["elements"]
    assert first["elements"]["r"]["out"] == {"a": 2000}


def test_filters_sharing_a_connection_table_must_agree_on_its_size(tmp_path):
    (tmp_path / "r.routes").write_text("198.19.0.0/16 via 198.18.255.1 output a\n")
    r = run_pipeline(tmp_path, PIPELINE % 1024, expect=EXIT_CODES[RunError])
    assert "conntrack table 'c': made with max_conns 1024, not 65536" in r.err, r.err
