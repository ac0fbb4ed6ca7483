"""The tables a run's elements and ports share, owned by the run.

A table that several elements use (a neighbour table that `neighbor` fills
and `route` reads, one connection table for the two directions' filters)
or that several ports use (one AF_XDP UMEM per pool) is looked up here by
(kind, name): the first user makes it, the others get the same object. The
Runtime makes one Tables, hands it to every element and port it builds,
and closes it after them, so a table lives exactly as long as the run
(docs/design.md, "Tables"). An element built on its own (a test, a bench
case) gets a private Tables: nothing is shared between runs through a
module global.
"""
from __future__ import annotations

from typing import Any, Callable


class Tables:
    """Shared tables by (kind, name), made on first use."""

    def __init__(self) -> None:
        self._tables: dict[tuple[str, str], Any] = {}

    def get(self, kind: str, name: str, make: Callable[[], Any],
            fits: Callable[[Any], str | None] | None = None) -> Any:
        """The table `name` of `kind`, made by make() if there is none yet.

        fits(table) returns why an existing table does not fit this user
        (another size, say) or None; a misfit raises ValueError with that
        reason, so two users never silently disagree about one table."""
        key = (kind, name)
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = make()
        elif fits is not None:
            why = fits(table)
            if why:
                raise ValueError(f"{kind} table {name!r}: {why}")
        return table

    def names(self, kind: str) -> list[str]:
        """The names of the tables of one kind made so far."""
        return sorted(n for k, n in self._tables if k == kind)

    def close(self) -> None:
        """End of the run: every table with a close() is closed, and all are
        let go of (the next run starts afresh)."""
        tables, self._tables = list(self._tables.values()), {}
        for t in tables:
            close = getattr(t, "close", None)
            if close is not None:
                close()

    def __len__(self) -> int:
        return len(self._tables)
