"""The element and port reference, generated from the classes themselves:
summary and docstring sections from the class, the params table from PARAMS."""
from __future__ import annotations

import inspect
import re

from nmroute import registry

SECTIONS = ("Outputs", "Counters", "Drops", "Example")


def sections(cls) -> dict[str, str]:
    """The docstring split at lines like 'Outputs:' (4-space indented)."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    parts = re.split(r"^(\w[\w ]*):\s*$", doc, flags=re.M)
    out = {"": parts[0].strip()}
    for i in range(1, len(parts) - 1, 2):
        out[parts[i]] = inspect.cleandoc(parts[i + 1])
    return out


def example(cls) -> str:
    return sections(cls).get("Example", "")


def params_table(cls) -> str:
    if not cls.PARAMS:
        return "    (none)"
    return "\n".join("    " + p.describe() for p in cls.PARAMS)


def element_doc(cls) -> str:
    s = sections(cls)
    lines = [f"{cls.TYPE} — {cls.SUMMARY}", "", s[""], ""]
    if cls.FANOUT:
        lines += ["Every packet goes to every output.", ""]
    lines += ["Outputs:", _indent(s.get("Outputs", "(none)")), "", "Params:", params_table(cls)]
    for name in SECTIONS[1:]:
        lines += ["", f"{name}:", _indent(s.get(name, "(missing)"))]
    return "\n".join(lines)


def port_doc(cls) -> str:
    s = sections(cls)
    dirs = " and ".join({"rx": "read from", "tx": "written to"}[d] for d in cls.DIRECTIONS)
    arg = f"{cls.SCHEME}:{cls.ARG.upper()}" if cls.ARG else cls.SCHEME
    lines = [f"{arg} — {cls.SUMMARY} (port; {dirs})", "", s[""], "", "Params:",
             params_table(cls)]
    if s.get("Example"):
        lines += ["", "Example:", _indent(s["Example"])]
    return "\n".join(lines)


def listing() -> str:
    lines = ["Elements:"]
    for name, cls in sorted(registry.element_types().items()):
        lines.append(f"  {name:<12} {cls.SUMMARY}")
    lines += ["", "Ports:"]
    for name, cls in sorted(registry.port_kinds().items()):
        lines.append(f"  {name:<12} {cls.SUMMARY}")
    lines += ["", "`nmroute elements TYPE` shows one in full."]
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("    " + ln if ln else "" for ln in text.splitlines())
