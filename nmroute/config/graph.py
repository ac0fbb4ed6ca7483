"""Show a checked pipeline: as text for `nmroute check`, or as Graphviz DOT.

Params are shown only where they differ from the default, so a line says what
the YAML chose rather than repeating the reference.
"""
from __future__ import annotations

import ipaddress

from nmroute.config.pipeline import Pipeline


def _show(value) -> str:
    """A param value, written back the way YAML would give it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes) and len(value) == 6:
        return ":".join(f"{b:02x}" for b in value)
    if isinstance(value, tuple) and len(value) == 2:
        a, b = value
        if isinstance(a, (ipaddress.IPv4Address, ipaddress.IPv6Address, int)):
            return str(a) if a == b else f"{a}-{b}"
    return str(value)


def _changed(cls, params: dict) -> str:
    defaults = {p.name: p.default_value() for p in cls.PARAMS if not p.required}
    return " ".join(f"{k}={_show(v)}" for k, v in params.items()
                    if k not in defaults or defaults[k] != v)


def _edge(p: Pipeline, link) -> str:
    el = p.elements.get(link.src)
    if el is not None and len(el.outputs) > 1:
        return f"{link.src} [{el.outputs[link.src_out]}] -> {link.dst}"
    return f"{link.src} -> {link.dst}"


def format_graph(p: Pipeline) -> str:
    """The pipeline as text: settings, ports, elements, then every link."""
    lines = [f"pipeline {p.name} ({p.path})"]
    lines.append("settings: " + " ".join(f"{k}={v}" for k, v in p.settings.items()))
    if p.ports:
        lines.append("ports:")
        w = max(len(n) for n in p.ports)
        for name, port in p.ports.items():
            direction = "/".join(d for d in ("rx", "tx") if getattr(port, d))
            extra = _changed(port.cls, port.params)
            lines.append(f"  {name:<{w}}  {port.cls.SCHEME:<6} {direction:<5} {extra}".rstrip())
    if p.elements:
        lines.append("elements:")
        w = max(len(n) for n in p.elements)
        for name, el in p.elements.items():
            extra = _changed(el.cls, el.params)
            lines.append(f"  {name:<{w}}  {el.cls.TYPE} {extra}".rstrip())
    lines.append("links:")
    lines.extend(f"  {_edge(p, link)}" for link in p.links)
    return "\n".join(lines) + "\n"


def _esc(text) -> str:
    return str(text).replace("\\", "\\\\").replace('"', '\\"')


def _q(*lines) -> str:
    """A DOT string literal; several lines are joined with DOT's line break."""
    return '"' + "\\n".join(_esc(line) for line in lines) + '"'


def to_dot(p: Pipeline) -> str:
    """Graphviz DOT: ports are boxes, elements ellipses; edges say which output."""
    out = [f"digraph {_q(p.name)} {{", "  rankdir=LR;"]
    for name, port in p.ports.items():
        direction = "/".join(d for d in ("rx", "tx") if getattr(port, d))
        out.append(f"  {_q(name)} [shape=box, label={_q(name, f'{port.spec} ({direction})')}];")
    for name, el in p.elements.items():
        out.append(f"  {_q(name)} [shape=ellipse, label={_q(name, el.cls.TYPE)}];")
    for link in p.links:
        el = p.elements.get(link.src)
        attrs = ""
        if el is not None and len(el.outputs) > 1:
            attrs = f" [label={_q(el.outputs[link.src_out])}]"
        out.append(f"  {_q(link.src)} -> {_q(link.dst)}{attrs};")
    out.append("}")
    return "\n".join(out) + "\n"
