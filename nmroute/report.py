"""What `nmroute run` prints: per-interval rates, the final table, the JSON."""
from __future__ import annotations


def fmt_rate(v: float, unit: str) -> str:
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= scale:
            return f"{v / scale:7.3f} {prefix}{unit}"
    return f"{v:7.1f}  {unit}"


def rate_lines(prev, cur, dt):
    """One line per port: pps and bit/s over the last interval (like pkt-gen)."""
    lines = []
    for name, c in cur["ports"].items():
        p = prev["ports"].get(name, {"rx": 0, "tx": 0, "rx_bytes": 0, "tx_bytes": 0})
        parts = []
        for d in ("rx", "tx"):
            n, b = c[d] - p[d], c[f"{d}_bytes"] - p[f"{d}_bytes"]
            if c[d]:
                parts.append(f"{d} {fmt_rate(n / dt, 'pps')} {fmt_rate(8 * b / dt, 'bit/s')}")
        drops = sum(c["drops"].values())
        if drops:
            parts.append(f"drops {drops}")
        lines.append(f"{name:>12}: " + ("  ".join(parts) if parts else "idle"))
    return lines


def stats_json(snap):
    """Exactly the documented shape of --stats-json."""
    return {
        "ports": {n: {"rx": p["rx"], "tx": p["tx"], "drops": dict(p["drops"])}
                  for n, p in snap["ports"].items()},
        "elements": {n: {"in": e["in"], "out": dict(e["out"]), "drops": dict(e["drops"])}
                     for n, e in snap["elements"].items()},
    }


def _drops(d):
    return ", ".join(f"{k}={v}" for k, v in sorted(d.items())) or "-"


def summary(snap, elapsed, types=None):
    """The final table: ports then elements."""
    types = types or {}
    rows = [("port", "kind", "rx", "tx", "drops", "rate")]
    for n, p in snap["ports"].items():
        rate = max(p["rx"], p["tx"]) / elapsed if elapsed > 0 else 0
        rows.append((n, types.get(n, ""), str(p["rx"]), str(p["tx"]), _drops(p["drops"]),
                     fmt_rate(rate, "pps").strip()))
    out = _table(rows)
    if snap["elements"]:
        rows = [("element", "type", "in", "out", "drops", "counters")]
        for n, e in snap["elements"].items():
            outs = ", ".join(f"{k}={v}" for k, v in e["out"].items()) or "-"
            own = ", ".join(f"{k}={v}" for k, v in e.get("counters", {}).items()) or "-"
            rows.append((n, types.get(n, ""), str(e["in"]), outs, _drops(e["drops"]), own))
        out += "\n" + _table(rows)
    return out


def _table(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
