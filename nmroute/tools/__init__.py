"""Tools built on the fast path: netmap's bridge (and pkt-gen to come)."""
