"""The port-name grammar: the string that names a port in YAML.

    SCHEME                      sink
    SCHEME:ARG                  pcap:in.pcap   pipe:a2b        (the port kind has an ARG)
    SCHEME:KEY=VALUE[,...]      gen:count=1000,size=60-1500    (the port kind has no ARG)
    valeX:PORT                  vale0:p1   (netmap's VALE switch: scheme 'vale')

If the port kind declares ``ARG`` (pcap's ``file``, pipe's ``name``), all the
text after the first ``:`` is that one parameter's value, commas and ``=``
included; other parameters go in the mapping form of a port in YAML. Otherwise
the text is a comma-separated list of ``key=value``. Values stay strings here:
the loader converts them with the kind's ``Param`` specs, exactly as it does
for values given in YAML.

Failures raise :class:`ParamError`. When the problem is at a known place in the
string, the error carries ``offset`` (0-based) so the loader can point at it.
"""
from __future__ import annotations

import re

from nmroute import registry
from nmroute.errors import ParamError
from nmroute.schema import did_you_mean

_VALE = re.compile(r"vale[0-9A-Za-z_]*")


def _error(message: str, offset: int) -> ParamError:
    e = ParamError(message)
    e.offset = offset
    return e


def split_port_name(text: str) -> tuple[str, type, list[tuple[str, str, int]]]:
    """Split a port name into (scheme, port class, [(key, value, offset)])."""
    if not isinstance(text, str) or not text.strip():
        raise _error("expected a port name like 'pcap:in.pcap' or 'gen:count=1000', "
                     f"got {text!r}", 0)
    lead = len(text) - len(text.lstrip())
    s = text.strip()
    scheme, colon, rest = s.partition(":")
    vale = _VALE.fullmatch(scheme) is not None
    if vale:
        scheme = "vale"
    kinds = registry.port_kinds()
    cls = kinds.get(scheme)
    if cls is None:
        if scheme in registry.UNBUILT_REASONS:
            raise _error(f"port type '{scheme}' is {registry.UNBUILT_REASONS[scheme]}", lead)
        hint = (did_you_mean(scheme, kinds)
                or " (a port is written SCHEME[:ARG], like 'pcap:in.pcap')")
        raise _error(f"unknown port type '{scheme}'{hint}", lead)

    base = lead + len(scheme) + len(colon)  # offset of `rest` in `text`
    if vale:
        rest, base = s, lead    # a VALE name keeps its switch: 'vale0:p1' whole
    if cls.ARG is not None:
        return scheme, cls, ([(cls.ARG, rest, base)] if rest else [])

    items: list[tuple[str, str, int]] = []
    if not rest:
        return scheme, cls, items
    seen = set()
    offset = base
    for part in rest.split(","):
        key, eq, value = part.partition("=")
        at = offset + len(part) - len(part.lstrip())
        key, value = key.strip(), value.strip()
        if not eq or not key:
            raise _error(f"expected KEY=VALUE after '{scheme}:', got {part.strip()!r}", at)
        if key in seen:
            raise _error(f"'{key}' is given twice", at)
        seen.add(key)
        items.append((key, value, at))
        offset += len(part) + 1
    return scheme, cls, items


def parse_port_name(text: str) -> tuple[str, dict[str, str]]:
    """'gen:count=1000,size=60' -> ('gen', {'count': '1000', 'size': '60'})."""
    scheme, _cls, items = split_port_name(text)
    return scheme, {key: value for key, value, _ in items}


def convert_params(cls, items) -> dict:
    """A port's params from (key, string value) pairs, converted by its
    Param specs and completed with defaults, as the loader does; for tools
    that take a port name on the command line (bridge, pkt-gen). Raises
    ParamError with a one-line message."""
    spec = {p.name: p for p in cls.PARAMS}
    params = {}
    for k, value in items:
        if k not in spec:
            raise ParamError(f"unknown param '{k}'")
        try:
            params[k] = spec[k].convert(value)
        except ParamError as e:
            raise ParamError(f"{k}: {e}") from None
    for p in cls.PARAMS:
        if p.name not in params:
            if p.required:
                arg = f" (write '{cls.SCHEME}:{cls.ARG.upper()}')" if p.name == cls.ARG else ""
                raise ParamError(f"missing required param '{p.name}'{arg}")
            params[p.name] = p.default_value()
    return params
