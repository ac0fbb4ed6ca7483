"""YAML that remembers where each value came from, and the config error types.

``load_yaml(path)`` returns plain Python data in which every mapping is a
:class:`YMap` and every list a :class:`YList`: a ``dict`` / ``list`` that also
knows the ``file:line:col`` of itself, of each key and of each value. Scalars
stay plain Python values, so they can go straight to ``Param.convert``; their
location is asked of the container that holds them.

Two deliberate departures from PyYAML's defaults:

- Mapping keys are always the key's text. ``on:`` or ``1:`` as an element
  name stays the string ``'on'`` / ``'1'`` instead of becoming ``True`` / ``1``.
- A key repeated in one mapping is an error (PyYAML keeps the last silently).

Lines and columns are 1-based, as editors show them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml


@dataclass(frozen=True, order=True)
class Loc:
    """A place in a config file; sorts by file, then line, then column."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class ConfigIssue:
    loc: Loc
    message: str

    def __str__(self) -> str:
        return f"{self.loc}: {self.message}"


def node_loc(file: str, node: yaml.Node, offset: int | None = None) -> Loc:
    """Where `node` starts; with `offset`, where character `offset` of its text is.

    Offsets are exact for a scalar written on one line (quoted or not, as long
    as a quoted one has no escapes before the offset); for a scalar folded over
    several lines the node's start is the best we can say.
    """
    mark = node.start_mark
    col = mark.column + 1
    one_line = isinstance(node, yaml.ScalarNode) and node.end_mark.line == mark.line
    if offset is not None and one_line:
        col += offset + (1 if node.style in ("'", '"') else 0)
    return Loc(file, mark.line + 1, col)


class YMap(dict):
    """A YAML mapping with the location of itself, its keys and its values."""

    def __init__(self, file: str, node: yaml.MappingNode):
        super().__init__()
        self.file = file
        self.node = node
        self.key_nodes: dict[str, yaml.Node] = {}
        self.value_nodes: dict[str, yaml.Node] = {}

    @property
    def loc(self) -> Loc:
        return node_loc(self.file, self.node)

    def key_loc(self, key: str) -> Loc:
        return node_loc(self.file, self.key_nodes[key])

    def value_loc(self, key: str, offset: int | None = None) -> Loc:
        return node_loc(self.file, self.value_nodes[key], offset)


class YList(list):
    """A YAML sequence with the location of itself and of each item."""

    def __init__(self, file: str, node: yaml.SequenceNode):
        super().__init__()
        self.file = file
        self.node = node

    @property
    def loc(self) -> Loc:
        return node_loc(self.file, self.node)

    def item_loc(self, index: int, offset: int | None = None) -> Loc:
        return node_loc(self.file, self.node.value[index], offset)


class _Loader(yaml.SafeLoader):
    def __init__(self, stream: str, file: str):
        super().__init__(stream)
        self.file = file
        self.issues: list[ConfigIssue] = []


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> YMap:
    loader.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
    m = YMap(loader.file, node)
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            loader.issues.append(ConfigIssue(
                node_loc(loader.file, key_node), "a key must be a plain name, not a list or mapping"
            ))
            continue
        key = key_node.value
        if key in m.key_nodes:
            first = node_loc(loader.file, m.key_nodes[key])
            loader.issues.append(ConfigIssue(
                node_loc(loader.file, key_node), f"duplicate key '{key}' (first at {first})"
            ))
            continue
        m.key_nodes[key] = key_node
        m.value_nodes[key] = value_node
        m[key] = loader.construct_object(value_node, deep=True)
    return m


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> YList:
    s = YList(loader.file, node)
    s.extend(loader.construct_object(child, deep=True) for child in node.value)
    return s


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def _yaml_error_issue(file: str, text: str, e: yaml.YAMLError) -> ConfigIssue:
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        loc = Loc(file, mark.line + 1, mark.column + 1) if mark else Loc(file, 1, 1)
        msg = f"invalid YAML: {e.problem or e.context}"
        if e.context and e.problem and e.context_mark:
            cm = e.context_mark
            msg += f" ({e.context} at {cm.line + 1}:{cm.column + 1})"
        return ConfigIssue(loc, msg)
    if isinstance(e, yaml.reader.ReaderError):
        before = text[: e.position]
        line = before.count("\n") + 1
        col = e.position - (before.rfind("\n") + 1) + 1
        return ConfigIssue(Loc(file, line, col),
                           f"invalid YAML: character {e.character!r} is not allowed")
    return ConfigIssue(Loc(file, 1, 1), f"invalid YAML: {e}")


def load_yaml(path) -> tuple[Any, list[ConfigIssue]]:
    """Parse one YAML document. Returns (data, issues); data is None if unreadable."""
    file = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        return None, [ConfigIssue(Loc(file, 1, 1), f"cannot read: {e.strerror or e}")]
    except UnicodeDecodeError as e:
        return None, [ConfigIssue(Loc(file, 1, 1), f"cannot read: not UTF-8 text ({e.reason})")]
    try:
        loader = _Loader(text, file)  # checks for unprintable characters already
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        return None, [_yaml_error_issue(file, text, e)]
    return data, loader.issues
