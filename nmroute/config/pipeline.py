"""Load a pipeline from YAML, check all of it, and report every problem at once.

The format::

    name: quickstart            # optional; default: the file's stem
    settings:                   # optional; each key has a default
      batch: 256                # packets per batch, 1..256
      buffer_size: 2048         # bytes per buffer, 256..65535
      ring_size: 1024           # slots per ring, a power of two 64..16384
    ports:
      src: "gen:count=1000,size=60"                 # string form: a port name
      trace: pcap:in.pcap
      out: {port: "pcap:out.pcap", precision: ns}   # mapping form: `port` + params
    elements:
      c1: counter                                   # string form: a type, no params
      t: tee
      tap: {type: pcap-tap, file: tap.pcap}         # mapping form: `type` + params
    links:                      # a list of chains
      - src -> c1 -> t
      - t [copy] -> tap -> sink
      - trace -> drop

Port names follow the grammar in :mod:`nmroute.config.portname`. Names of
ports and elements match ``[A-Za-z_][A-Za-z0-9_.-]*``; one name is either a
port or an element, never both.

A chain is ``NAME [OUT] -> NAME [OUT] -> ... -> NAME``:

- The first name is a port, read from (rx), or an element. Names in the middle
  are elements. The last is an element, a port written to (tx), or ``drop``.
- ``[OUT]`` right after a name picks that element's output, by name
  (``[copy]``) or by index (``[1]``); without it the element's output 0 is
  meant. Elements have a single input, so there is no input selector: Click's
  ``a -> [1] b`` is an error.
- Each output (and each rx port) is wired exactly once. An output that should
  discard its packets is wired to ``drop`` explicitly; one left unconnected is
  an error.
- Fan-in is allowed: several outputs may lead into one element or one tx port;
  their packets merge in the order the batches arrive.
- The element graph has no cycles.

Two names are built in and used without being declared: ``sink`` (a port of
scheme ``sink`` that counts and discards what is written to it) and ``drop``
(an element of type ``drop``, one shared by every chain). ``drop`` cannot be
declared; a port or element declared as ``sink`` replaces the built-in one.

File paths in params are taken as given, relative to the current directory
(as tcpdump and Click's FromDump do), not to the YAML file.

Every error is reported as ``FILE:LINE:COL: element 'fw' (filter): rules[2].dst:
expected ...``; :class:`ConfigError` carries all of them. A ``Pipeline`` is
returned only when there are none.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nmroute import registry
from nmroute.errors import ParamError
from nmroute.schema import NAME_RE, Bool, Custom, Int, Param, closest, did_you_mean
from nmroute.config.portname import split_port_name
from nmroute.errors import ConfigError
from nmroute.config.yamlloc import ConfigIssue, Loc, YList, YMap, load_yaml

__all__ = [
    "SETTINGS",
    "ConfigError",
    "ConfigIssue",
    "ElementDecl",
    "Link",
    "Loc",
    "Pipeline",
    "PortDecl",
    "load_pipeline",
    "load_pipelines",
]


def _ring_size(value: Any) -> int:
    what = "a power of two from 64 to 16384"
    try:
        n = Int(64, 16384).convert(value)
    except ParamError:
        raise ParamError(f"expected {what}, got {value!r}") from None
    if n & (n - 1):
        raise ParamError(f"expected {what}, got {value!r}")
    return n


def _buffer_size(value: Any) -> int:
    what = "a multiple of 64 from 256 to 65472"
    try:
        n = Int(256, 65472).convert(value)
    except ParamError:
        raise ParamError(f"expected {what}, got {value!r}") from None
    if n % 64:
        raise ParamError(f"expected {what}, got {value!r}")
    return n


SETTINGS = (
    Param("batch", Int(1, 256), "packets handed to an element at a time", 256),
    Param("buffer_size", Custom("a multiple of 64 from 256 to 65472", _buffer_size),
          "bytes per packet buffer", 2048),
    Param("ring_size", Custom("a power of two from 64 to 16384", _ring_size),
          "slots per ring", 1024),
    Param("zero_copy", Bool(), "forward into a port's tx ring by swapping buffer indexes; "
          "false: copy every frame (netmap bridge's -c)", True),
)

TOP_KEYS = ("name", "settings", "ports", "elements", "links")
SINK = "sink"
DROP = "drop"

# Port kinds that may not be both read and written in one pipeline, and why.
_ONE_WAY = {
    "pcap": "a pcap file is either replayed or captured: declare one port for each",
    "pipe": "a pipe joins two pipelines; its other end belongs in another pipeline",
}


@dataclass
class PortDecl:
    name: str
    spec: str                 # the port name as written: 'pcap:in.pcap'
    cls: type
    params: dict
    rx: bool = False          # read from in some chain
    tx: bool = False          # written to in some chain
    loc: Loc | None = None

    @property
    def what(self) -> str:
        return f"port '{self.name}' ({self.cls.SCHEME})" if self.cls else f"port '{self.name}'"


@dataclass
class ElementDecl:
    name: str
    cls: type
    params: dict
    loc: Loc | None = None

    @property
    def what(self) -> str:
        return f"element '{self.name}' ({self.cls.TYPE})" if self.cls else f"element '{self.name}'"

    @property
    def outputs(self) -> tuple:
        """Output names: the class's OUTPUTS, or what its params make them
        (an element with per-rule outputs defines outputs(params))."""
        outputs = getattr(self.cls, "outputs", None)
        if outputs is None or self.params is None:
            return tuple(self.cls.OUTPUTS)
        return tuple(outputs(self.params))


@dataclass
class Link:
    src: str                  # a port (read from) or an element
    src_out: int              # output index of src; 0 for a port
    dst: str                  # an element or a port (written to)
    loc: Loc | None = None


@dataclass
class Pipeline:
    name: str
    path: str
    settings: dict
    ports: dict[str, PortDecl]
    elements: dict[str, ElementDecl]
    links: list[Link]
    loc: Loc | None = None    # where the name is given (file:1:1 when it is the stem)

    def downstream(self, name: str) -> list[tuple[int, str]]:
        """(output index, destination) for each link leaving `name`, by output."""
        return sorted((lk.src_out, lk.dst) for lk in self.links if lk.src == name)

    def upstream(self, name: str) -> list[tuple[str, int]]:
        """(source, output index) for each link entering `name`."""
        return [(lk.src, lk.src_out) for lk in self.links if lk.dst == name]

    def output_name(self, name: str, out: int) -> str:
        """The name of output `out` of element `name` ('out' for a port)."""
        if name in self.elements:
            return self.elements[name].outputs[out]
        return "out"

    def rx_ports(self) -> list[PortDecl]:
        return [p for p in self.ports.values() if p.rx]

    def tx_ports(self) -> list[PortDecl]:
        return [p for p in self.ports.values() if p.tx]


def _outputs_from_params(cls) -> bool:
    """Does the class derive its outputs from its params (outputs() of its own)?"""
    return any("outputs" in vars(c) for c in cls.__mro__
               if c.__module__ != "nmroute.fastpath.element")


# --- chains -------------------------------------------------------------------

_NAME_TOKEN = re.compile(r"[A-Za-z_](?:[A-Za-z0-9_.]|-(?!>))*")  # '-' but not '->'


class _ChainError(Exception):
    def __init__(self, message: str, at: int):
        super().__init__(message)
        self.message, self.at = message, at


@dataclass
class _Item:
    name: str
    at: int                   # offset of the name in the chain's text
    out: str | None = None    # output selector text, without brackets
    out_at: int = 0


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, offset) with kind 'name', '[' (an output selector) or '->'."""
    tokens, i = [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
        elif text.startswith("->", i):
            tokens.append(("->", "->", i))
            i += 2
        elif text[i] == "[":
            j = text.find("]", i)
            if j < 0:
                raise _ChainError("'[' has no closing ']'", i)
            tokens.append(("[", text[i + 1:j].strip(), i))
            i = j + 1
        else:
            m = _NAME_TOKEN.match(text, i)
            if not m:
                raise _ChainError(f"unexpected {text[i]!r}; a chain is NAME [OUT] -> NAME ...", i)
            tokens.append(("name", m.group(), i))
            i = m.end()
    return tokens


def _input_selector_message(tokens: list, n: int) -> str:
    sel = tokens[n][1]
    names = [t for kind, t, _ in tokens[n + 1:] if kind == "name"]
    b = names[0] if names else "b"
    c = names[1] if len(names) > 1 else "c"
    return f"elements have one input; write '{b} [{sel}] -> {c}' to pick {b}'s output {sel}"


def _parse_chain(text: str) -> list[_Item]:
    tokens = _tokenize(text)
    if not tokens:
        raise _ChainError("empty chain; write one like 'src -> sink'", 0)
    items: list[_Item] = []
    want_name = True
    for n, (kind, tok, at) in enumerate(tokens):
        if kind == "name":
            if not want_name:
                raise _ChainError(f"expected '->' between '{items[-1].name}' and '{tok}'", at)
            items.append(_Item(tok, at))
            want_name = False
        elif kind == "[":
            if want_name:
                raise _ChainError(_input_selector_message(tokens, n), at)
            if items[-1].out is not None:
                raise _ChainError(f"'{items[-1].name}' already has an output selector", at)
            if not tok:
                raise _ChainError("empty output selector '[]'", at)
            items[-1].out, items[-1].out_at = tok, at
        else:
            if want_name:
                raise _ChainError("expected a name before '->'", at)
            want_name = True
    if want_name:
        raise _ChainError("expected a name after '->'", tokens[-1][2])
    if len(items) < 2:
        raise _ChainError("a chain needs at least two names joined by '->', like 'src -> sink'",
                          items[0].at)
    last = items[-1]
    if last.out is not None:
        raise _ChainError(f"output selector '[{last.out}]' leads nowhere: nothing follows "
                          f"'{last.name}'", last.out_at)
    return items


# --- loading one file -----------------------------------------------------------

def _got(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _path_text(path) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in path)


def _nested_loc(value: Any, loc: Loc, path) -> Loc:
    """The location of value[path[0]][path[1]]..., as deep as the YAML goes."""
    for step in path:
        if isinstance(value, YMap) and step in value:
            loc, value = value.value_loc(step), value[step]
        elif isinstance(value, YList) and isinstance(step, int) and 0 <= step < len(value):
            loc, value = value.item_loc(step), value[step]
        else:
            break
    return loc


@dataclass
class _Raw:
    """A param as written: its value and where its key and value are."""
    value: Any
    key_loc: Loc
    value_loc: Loc


class _FileLoader:
    def __init__(self, path):
        self.path = str(path)
        self.issues: list[ConfigIssue] = []
        self.ports: dict[str, PortDecl] = {}
        self.elements: dict[str, ElementDecl] = {}
        self.value_locs: dict[str, Loc] = {}      # where each declaration's value is
        self.params_ok: set[str] = set()          # declarations whose params all converted
        self.links: list[Link] = []
        self.link_chain: list[int] = []           # index in `links:` of each Link
        self.wired: dict[tuple[str, int], Link] = {}
        self.port_uses: dict[str, dict[str, Loc]] = {}
        self.mentioned: set[str] = set()          # names that appear in a resolved hop
        self.fed: set[str] = set()                # names some hop leads into
        self.outs_used: set[tuple[str, int]] = set()
        # Set when a chain could not be read in full: then "unused" and
        # "unconnected" would be guesses, so those checks are skipped.
        self.incomplete = False

    def issue(self, loc: Loc, message: str) -> None:
        self.issues.append(ConfigIssue(loc, message))

    def load(self) -> Pipeline:
        data, issues = load_yaml(self.path)
        self.issues.extend(issues)
        if data is None and not issues:
            self.issue(Loc(self.path, 1, 1),
                       "empty file; a pipeline needs at least 'links' (and usually 'ports')")
        elif data is not None and not isinstance(data, YMap):
            self.issue(Loc(self.path, 1, 1),
                       f"expected a mapping with ports, elements and links, got {_got(data)}")
        if self.issues or not isinstance(data, YMap):
            raise ConfigError(self.issues)

        for key in data:
            if key not in TOP_KEYS:
                self.issue(data.key_loc(key), f"unknown key '{key}'{did_you_mean(key, TOP_KEYS)}")
        name, name_loc = self._name(data)
        settings = self._settings(data)
        self._section(data, "ports", "NAME: PORT", self._port)
        self._section(data, "elements", "NAME: TYPE", self._element)
        self._links(data)
        if self.issues:
            raise ConfigError(self.issues)
        return Pipeline(name, self.path, settings, self.ports, self.elements, self.links, name_loc)

    # -- name and settings

    def _name(self, data: YMap) -> tuple[str, Loc]:
        if "name" not in data:
            return Path(self.path).stem, Loc(self.path, 1, 1)
        name, loc = data["name"], data.value_loc("name")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            self.issue(loc, f"name: expected a name of letters, digits, '_', '.' and '-', "
                            f"got {_got(name)}")
        return str(name), loc

    def _settings(self, data: YMap) -> dict:
        given = data.get("settings")
        if given is None:
            given = {}
        elif not isinstance(given, YMap):
            self.issue(data.value_loc("settings"),
                       f"settings: expected a mapping like {{batch: 256}}, got {_got(given)}")
            given = {}
        spec = {p.name: p for p in SETTINGS}
        out = {}
        for key, value in given.items():
            p = spec.get(key)
            if p is None:
                self.issue(given.key_loc(key),
                           f"settings: unknown setting '{key}'{did_you_mean(key, spec)}")
                continue
            try:
                out[key] = p.convert(value)
            except ParamError as e:
                self.issue(given.value_loc(key), f"settings.{key}: {e}")
        for p in SETTINGS:
            if p.name not in out:
                out[p.name] = p.default_value()
        return out

    # -- declarations

    def _section(self, data: YMap, key: str, shape: str, declare) -> None:
        section = data.get(key)
        if section is None:
            return
        if not isinstance(section, YMap):
            self.issue(data.value_loc(key),
                       f"{key}: expected a mapping of {shape}, got {_got(section)}")
            return
        kind = key[:-1]  # 'port' / 'element'
        for name, value in section.items():
            loc = section.key_loc(name)
            if name == DROP:
                self.issue(loc, f"'drop' is the built-in discard element; "
                                f"give this {kind} another name")
                continue
            if not NAME_RE.fullmatch(name):
                self.issue(loc, f"{kind} name '{name}' is not valid: use letters, digits, "
                                f"'_', '.' and '-', starting with a letter or '_'")
                continue
            if name in self.ports:
                self.issue(loc, f"'{name}' is declared both as a port (at {self.ports[name].loc}) "
                                f"and as an element")
                continue
            self.value_locs[name] = section.value_loc(name)
            declare(name, value, section)

    def _convert(self, what: str, cls: type, raw: dict[str, _Raw], missing_loc: Loc,
                 arg_hint: str = "") -> dict | None:
        """Convert params as written into the class's; None if any is wrong."""
        spec = {p.name: p for p in cls.PARAMS}
        out, ok = {}, True
        misspelt = set()  # params an unknown key is a near miss of: not also "missing"
        for key, r in raw.items():
            p = spec.get(key)
            if p is None:
                hint = did_you_mean(key, spec) if spec else "; it takes no params"
                if spec:
                    misspelt.add(closest(key, spec))
                self.issue(r.key_loc, f"{what}: unknown param '{key}'{hint}")
                ok = False
                continue
            try:
                out[key] = p.convert(r.value)
            except ParamError as group:
                # A kind that checks nested values says where, as e.path;
                # a list reports each of its bad items.
                for e in group.issues:
                    loc = _nested_loc(r.value, r.value_loc, e.path)
                    self.issue(loc, f"{what}: {key}{_path_text(e.path)}: {e}")
                ok = False
        for p in cls.PARAMS:
            if p.name in raw:
                continue
            if p.required and p.name not in misspelt:
                hint = arg_hint if p.name == getattr(cls, "ARG", None) else ""
                self.issue(missing_loc, f"{what}: missing required param '{p.name}'{hint}")
                ok = False
            elif not p.required:
                out[p.name] = p.default_value()
            else:
                ok = False
        return out if ok else None

    def _port(self, name: str, value: Any, section: YMap) -> None:
        loc = section.value_loc(name)
        if isinstance(value, str):
            spec, spec_map, spec_key, extra = value, section, name, {}
        elif isinstance(value, YMap):
            if "port" not in value:
                self.issue(loc, f"port '{name}': missing 'port', the port name "
                                f"(like {{port: 'pcap:out.pcap', precision: ns}})")
                self.ports[name] = PortDecl(name, "", None, {}, loc=section.key_loc(name))
                return
            spec, spec_map, spec_key = value["port"], value, "port"
            extra = {k: _Raw(v, value.key_loc(k), value.value_loc(k))
                     for k, v in value.items() if k != "port"}
        else:
            self.issue(loc, f"port '{name}': expected a port name like 'pcap:in.pcap' "
                            f"or a mapping with 'port', got {_got(value)}")
            self.ports[name] = PortDecl(name, "", None, {}, loc=section.key_loc(name))
            return

        decl = PortDecl(name, str(spec), None, {}, loc=section.key_loc(name))
        self.ports[name] = decl
        try:
            scheme, cls, items = split_port_name(spec)
        except ParamError as e:
            self.issue(spec_map.value_loc(spec_key, getattr(e, "offset", None)),
                       f"port '{name}': {e}")
            return
        decl.cls = cls
        raw = {}
        for key, text, at in items:
            at_loc = spec_map.value_loc(spec_key, at)
            raw[key] = _Raw(text, at_loc, at_loc)
        for key, r in extra.items():
            if key in raw:
                self.issue(r.key_loc, f"{decl.what}: param '{key}' is given both in the port "
                                      f"name ({raw[key].key_loc}) and as a key")
                return
            raw[key] = r
        arg_hint = f" (write '{scheme}:{cls.ARG.upper()}')" if cls.ARG else ""
        params = self._convert(decl.what, cls, raw, loc, arg_hint)
        if params is not None:
            decl.params = params
            self.params_ok.add(name)

    def _element(self, name: str, value: Any, section: YMap) -> None:
        loc = section.value_loc(name)
        decl = ElementDecl(name, None, {}, loc=section.key_loc(name))
        self.elements[name] = decl
        if isinstance(value, str):
            type_name, type_loc, raw = value, loc, {}
        elif isinstance(value, YMap):
            if "type" not in value:
                self.issue(loc, f"element '{name}': missing 'type' (like {{type: counter}})")
                return
            type_name, type_loc = value["type"], value.value_loc("type")
            raw = {k: _Raw(v, value.key_loc(k), value.value_loc(k))
                   for k, v in value.items() if k != "type"}
        else:
            self.issue(loc, f"element '{name}': expected a type like 'counter' or a mapping "
                            f"with 'type', got {_got(value)}")
            return
        cls = self._element_type(name, type_name, type_loc)
        if cls is None:
            return
        decl.cls = cls
        params = self._convert(decl.what, cls, raw, loc)
        if params is None:
            return
        decl.params = params
        self.params_ok.add(name)
        for msg in cls.check(params) if hasattr(cls, "check") else ():
            self.issue(loc, f"{decl.what}: {msg}")

    def _element_type(self, name: str, type_name: Any, type_loc: Loc):
        """The class `type:` names: a built-in TYPE, or a user's element by
        import path 'package.module:Class' (see nmroute.userelements), which
        is imported (and a .pyx built) here, before any port opens."""
        if isinstance(type_name, str) and ":" in type_name:
            from nmroute.userelements import UserElementError, resolve
            try:
                return resolve(type_name, self.path)
            except UserElementError as e:
                self.issue(type_loc, f"element '{name}': {e}")
                return None
        types = registry.element_types()
        cls = types.get(type_name) if isinstance(type_name, str) else None
        if cls is None:
            hint = did_you_mean(str(type_name), types)
            if not hint and isinstance(type_name, str) and "." in type_name:
                hint = "; a user's element is named by import path 'package.module:Class'"
            self.issue(type_loc, f"element '{name}': unknown element type {type_name!r}{hint}")
        return cls

    def _builtin(self, name: str, loc: Loc):
        """The implicit `sink` port or `drop` element, made on first use."""
        if name == SINK:
            cls = registry.port_kinds().get(SINK)
            decl = PortDecl(SINK, SINK, cls, {}, loc=loc)
            if cls is not None:
                self.ports[SINK] = decl
        else:
            cls = registry.element_types().get(DROP)
            decl = ElementDecl(DROP, cls, {}, loc=loc)
            if cls is not None:
                self.elements[DROP] = decl
        if cls is None:
            self.issue(loc, f"built-in '{name}' is not available in this build")
            return None
        decl.params = self._convert(decl.what, cls, {}, loc) or {}
        self.params_ok.add(name)
        self.value_locs[name] = loc
        return decl

    # -- links

    def _links(self, data: YMap) -> None:
        links = data.get("links")
        where = data.key_loc("links") if "links" in data else Loc(self.path, 1, 1)
        if links is not None and not isinstance(links, YList):
            self.issue(data.value_loc("links"), f"links: expected a list of chains like "
                                                f"'- src -> sink', got {_got(links)}")
            return
        if not links:
            self.issue(where, "links: no chains; a pipeline needs at least one, like 'src -> sink'")
            return
        for i, text in enumerate(links):
            if isinstance(text, str):
                self._chain(i, text, links)
            else:
                self.issue(links.item_loc(i), f"links[{i}]: expected a chain like "
                                              f"'src -> c1 -> sink', got {_got(text)}")
                self.incomplete = True
        self._check_ports()
        self._check_pipes_and_files()
        self._check_cycles()
        self._check_port_refs()
        if not self.incomplete:
            self._check_completeness()

    def _chain(self, i: int, text: str, links: YList) -> None:
        def at(offset: int) -> Loc:
            return links.item_loc(i, offset)

        try:
            items = _parse_chain(text)
        except _ChainError as e:
            self.issue(at(e.at), f"links[{i}]: {e.message}")
            self.incomplete = True
            return
        decls = [self._resolve(i, item, at(item.at)) for item in items]
        last = len(items) - 1
        for k, (item, d) in enumerate(zip(items, decls)):
            if isinstance(d, PortDecl) and 0 < k < last:
                self.issue(at(item.at), f"links[{i}]: {d.what} is in the middle of a chain; "
                                        f"a port can only start (read) or end (write) one")
                decls[k] = None
            elif isinstance(d, PortDecl) and item.out is not None:
                self.issue(at(item.out_at),
                           f"links[{i}]: {d.what} has a single output; remove '[{item.out}]'")
        for k in range(last):
            a, b = items[k], items[k + 1]
            src, dst = decls[k], decls[k + 1]
            out = self._output(i, a, src, at) if src is not None else None
            if src is None or dst is None or out is None:
                self.incomplete = True
                continue
            src_loc = at(a.out_at if a.out is not None and isinstance(src, ElementDecl) else a.at)
            self._wire(i, src, out, dst, src_loc, at(a.at), at(b.at))

    def _resolve(self, i: int, item: _Item, loc: Loc):
        name = item.name
        if name in self.ports:
            return self.ports[name]
        if name in self.elements:
            return self.elements[name]
        if name in (SINK, DROP):
            return self._builtin(name, loc)
        known = [*self.ports, *self.elements, SINK, DROP]
        self.issue(loc, f"links[{i}]: unknown name '{name}'{did_you_mean(name, known)}")
        self.incomplete = True
        return None

    def _output(self, i: int, item: _Item, decl, at) -> int | None:
        """The output index `item` picks of `decl`, or None (reported)."""
        if isinstance(decl, PortDecl):
            return 0
        if decl.cls is None:
            return None
        if decl.name not in self.params_ok and _outputs_from_params(decl.cls):
            # Its outputs come from params that did not convert (reported
            # already): naming one of them is no second error.
            self.incomplete = True
            return None
        outs = decl.outputs
        if not outs:
            self.issue(at(item.at), f"links[{i}]: {decl.what} has no outputs; "
                                    f"it can only end a chain")
            return None
        sel = item.out
        if sel is None:
            return 0
        if sel in outs:
            return outs.index(sel)
        if sel.isdigit() and int(sel) < len(outs):
            return int(sel)
        self.issue(at(item.out_at), f"links[{i}]: {decl.what} has no output '{sel}'; "
                                    f"its outputs are: {', '.join(outs)}")
        return None

    def _wire(self, i: int, src, out: int, dst, src_loc: Loc, src_name_loc: Loc,
              dst_loc: Loc) -> None:
        self.mentioned.update((src.name, dst.name))
        self.fed.add(dst.name)
        self.outs_used.add((src.name, out))
        ok = True
        if isinstance(src, PortDecl):
            ok = self._use_port(i, src, "rx", src_name_loc)
        if isinstance(dst, PortDecl):
            ok = self._use_port(i, dst, "tx", dst_loc) and ok
        if not ok:
            return
        prev = self.wired.get((src.name, out))
        if prev is not None:
            if isinstance(src, PortDecl):
                what = src.what
            else:
                what = f"output '{src.outputs[out]}' of {src.what}"
            self.issue(src_loc, f"links[{i}]: {what} is already wired to '{prev.dst}' at "
                                f"{prev.loc}; use a tee to send packets to both")
            return
        link = Link(src.name, out, dst.name, src_loc)
        self.wired[(src.name, out)] = link
        self.links.append(link)
        self.link_chain.append(i)

    def _use_port(self, i: int, port: PortDecl, direction: str, loc: Loc) -> bool:
        if port.cls is None:
            return False
        dirs = tuple(port.cls.DIRECTIONS)
        if direction not in dirs:
            can = "read from" if "rx" in dirs else "written to"
            self.issue(loc, f"links[{i}]: {port.what} can only be {can}")
            return False
        uses = self.port_uses.setdefault(port.name, {})
        if direction in uses:
            return True
        uses[direction] = loc
        setattr(port, direction, True)
        reason = _ONE_WAY.get(port.cls.SCHEME)
        if len(uses) == 2 and reason:
            self.issue(loc, f"links[{i}]: {port.what} is both read and written; {reason}")
        return True

    # -- whole-graph checks

    def _check_ports(self) -> None:
        for name, port in self.ports.items():
            if port.cls is None or name not in self.params_ok or not (port.rx or port.tx):
                continue
            if port.rx and port.tx and port.cls.SCHEME in _ONE_WAY:
                continue  # already reported where the second direction is used
            check = getattr(port.cls, "check", None)
            for msg in check(port.params, port.rx, port.tx) if check else ():
                self.issue(self.value_locs[name], f"{port.what}: {msg}")

    def _check_pipes_and_files(self) -> None:
        """Two ports of one pipeline on one pipe, or on a pcap file being written."""
        seen: dict[tuple[str, str], PortDecl] = {}
        for name, port in self.ports.items():
            if port.cls is None or name not in self.params_ok:
                continue
            scheme = port.cls.SCHEME
            if scheme not in ("pipe", "pcap") or not port.cls.ARG:
                continue
            key = (scheme, str(port.params.get(port.cls.ARG)))
            first = seen.setdefault(key, port)
            if first is port:
                continue
            if scheme == "pipe":
                self.issue(port.loc, f"{port.what}: pipe '{key[1]}' is also used by port "
                                     f"'{first.name}' at {first.loc}; a pipe joins two "
                                     f"pipelines, one end in each")
            elif port.tx or first.tx:
                self.issue(port.loc, f"{port.what}: file '{key[1]}' is also used by port "
                                     f"'{first.name}' at {first.loc}; a file being written "
                                     f"can have only one port")

    def _check_cycles(self) -> None:
        succ: dict[str, list[tuple[str, int]]] = {}
        for n, link in enumerate(self.links):
            if link.src in self.elements and link.dst in self.elements:
                succ.setdefault(link.src, []).append((link.dst, n))
        state: dict[str, str] = {}
        stack: list[str] = []
        reported: set[frozenset] = set()

        def visit(u: str) -> None:
            state[u] = "open"
            stack.append(u)
            for v, n in succ.get(u, ()):
                if state.get(v) == "open":  # a link back into the current path
                    cycle = stack[stack.index(v):] + [v]
                    if frozenset(cycle) not in reported:
                        reported.add(frozenset(cycle))
                        i = self.link_chain[n]
                        self.issue(self.links[n].loc, f"links[{i}]: these links form a cycle: "
                                                      f"{' -> '.join(cycle)}")
                elif v not in state:
                    visit(v)
            stack.pop()
            state[u] = "done"

        for name in self.elements:
            if name not in state:
                visit(name)

    def _check_port_refs(self) -> None:
        """Input port names an element's params refer to (classify's in_port):
        each must be a port this pipeline reads from."""
        rx = sorted(n for n, p in self.ports.items() if p.rx)
        for name, el in self.elements.items():
            refs = getattr(el.cls, "port_refs", None)
            if el.cls is None or refs is None or name not in self.params_ok:
                continue
            for where, port in refs(el.params):
                if port not in rx:
                    self.issue(self.value_locs.get(name, el.loc),
                               f"{el.what}: {where}: '{port}' is not a port this pipeline "
                               f"reads from{did_you_mean(port, rx)}")

    def _check_completeness(self) -> None:
        for name, port in self.ports.items():
            if port.cls is not None and name not in self.mentioned:
                self.issue(port.loc, f"{port.what} is declared but not used in links")
        for name, el in self.elements.items():
            if el.cls is None:
                continue
            if name not in self.mentioned:
                self.issue(el.loc, f"{el.what} is declared but not used in links")
                continue
            if name not in self.fed:
                self.issue(el.loc, f"{el.what} receives no packets: no link leads into it")
            for k, out in enumerate(el.outputs):
                if (name, k) not in self.outs_used:
                    self.issue(el.loc, f"output '{out}' of {el.what} is not connected; "
                                       f"wire it to 'drop' to discard")


def load_pipeline(path) -> Pipeline:
    """Parse and check one pipeline file; raise ConfigError with every problem."""
    return _FileLoader(path).load()


def _pipe_name(port: PortDecl) -> str | None:
    if port.cls is not None and port.cls.SCHEME == "pipe" and port.cls.ARG:
        return str(port.params.get(port.cls.ARG))
    return None


def load_pipelines(paths) -> list[Pipeline]:
    """Load several pipelines that run together, and check what joins them.

    Every file is loaded and all their errors are collected. When all of them
    load, two things are checked across files: pipeline names are unique, and
    each pipe is written by exactly one pipeline and read by exactly one other.
    """
    pipelines, issues = [], []
    for path in paths:
        try:
            pipelines.append(load_pipeline(path))
        except ConfigError as e:
            issues.extend(e.issues)
    if issues:
        raise ConfigError(issues)

    by_name: dict[str, Pipeline] = {}
    for p in pipelines:
        first = by_name.setdefault(p.name, p)
        if first is not p:
            issues.append(ConfigIssue(p.loc, f"pipeline name '{p.name}' is already used by "
                                             f"{first.loc}"))

    ends: dict[str, dict[str, list[tuple[Pipeline, PortDecl]]]] = {}
    for p in pipelines:
        for port in p.ports.values():
            pipe = _pipe_name(port)
            if pipe is None:
                continue
            for direction in ("rx", "tx"):
                if getattr(port, direction):
                    ends.setdefault(pipe, {"rx": [], "tx": []})[direction].append((p, port))
    done = {"rx": "read", "tx": "written"}
    does = {"rx": "reads", "tx": "writes"}
    for pipe, by_dir in ends.items():
        for direction, other in (("rx", "tx"), ("tx", "rx")):
            mine = by_dir[direction]
            if mine and not by_dir[other]:
                for _, port in mine:
                    issues.append(ConfigIssue(port.loc, f"{port.what}: pipe '{pipe}' is "
                                                        f"{done[direction]} here but no other "
                                                        f"pipeline {does[other]} it"))
            for _, port in mine[1:]:
                fp, fport = mine[0]
                issues.append(ConfigIssue(port.loc, f"{port.what}: pipe '{pipe}' is already "
                                                    f"{done[direction]} by pipeline '{fp.name}' "
                                                    f"at {fport.loc}"))
    issues.extend(_check_files(pipelines))
    if issues:
        raise ConfigError(issues)
    return pipelines


def _check_files(pipelines) -> list[ConfigIssue]:
    """A file written by one port or element is used by nothing else in the
    run: a writer truncates what a reader has mapped, two writers interleave."""
    uses = []
    for p in pipelines:
        for port in p.ports.values():
            files = getattr(port.cls, "files", None)
            for path, mode in files(port.params, port.rx, port.tx) if files else ():
                uses.append((os.path.realpath(path), mode, port))
        for el in p.elements.values():
            files = getattr(el.cls, "files", None)
            for path, mode in files(el.params) if files else ():
                uses.append((os.path.realpath(path), mode, el))
    issues, first = [], {}
    for path, mode, decl in uses:
        prev = first.setdefault(path, (mode, decl))
        if prev[1] is decl or (mode == "read" and prev[0] == "read"):
            continue
        if mode == "written" or prev[0] == "written":
            issues.append(ConfigIssue(decl.loc, f"{decl.what}: file '{path}' is {mode} here "
                                                f"and {prev[0]} by {prev[1].what} at "
                                                f"{prev[1].loc}; a file written in a run is "
                                                "used by nothing else in it"))
    return issues
