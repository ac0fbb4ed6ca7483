"""Parameter specs: how an element or a port declares what it accepts.

Each element and port class carries ``PARAMS``, a tuple of :class:`Param`. The
loader converts every YAML value with ``Param.convert`` before anything is built;
a bad value raises :class:`ParamError` whose message says what was expected.
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Any, Callable


class ParamError(ValueError):
    """A value does not fit its spec; the message says what was expected."""


_MISSING = object()


@dataclass(frozen=True)
class Param:
    name: str
    kind: Kind
    doc: str
    default: Any = _MISSING

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    def convert(self, value: Any) -> Any:
        return self.kind.convert(value)

    def default_value(self) -> Any:
        """The default, converted like a given value (None stays None)."""
        if self.required or self.default is None:
            return None if self.default is _MISSING else self.default
        return self.kind.convert(self.default)

    def describe(self) -> str:
        if self.required:
            d = "required"
        elif self.default is None:
            d = "optional"
        else:
            d = f"default {self.default!r}"
        return f"{self.name} ({self.kind.describe()}; {d}): {self.doc}"


class Kind:
    def describe(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def convert(self, value: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def fail(self, value: Any) -> ParamError:
        return ParamError(f"expected {self.describe()}, got {value!r}")


def _parse_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        s = value.strip().replace("_", "")
        mult = 1
        for suffix, m in (("k", 10**3), ("M", 10**6), ("G", 10**9)):
            if s.endswith(suffix):
                s, mult = s[:-1], m
                break
        try:
            return int(s, 0) * mult
        except ValueError:
            try:
                f = float(s) * mult
            except ValueError:
                return None
            return int(f) if f.is_integer() else None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


class Int(Kind):
    """An integer in [lo, hi]; strings like '10M' or '1_000' are accepted."""

    def __init__(self, lo: int | None = None, hi: int | None = None):
        self.lo, self.hi = lo, hi

    def describe(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"an integer from {self.lo} to {self.hi}"
        if self.lo is not None:
            return f"an integer >= {self.lo}"
        return "an integer"

    def convert(self, value: Any) -> int:
        v = _parse_int(value)
        if v is None or (self.lo is not None and v < self.lo) or (
            self.hi is not None and v > self.hi
        ):
            raise self.fail(value)
        return v


class Float(Kind):
    def __init__(self, lo: float | None = None, hi: float | None = None):
        self.lo, self.hi = lo, hi

    def describe(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"a number from {self.lo} to {self.hi}"
        if self.lo is not None:
            return f"a number >= {self.lo}"
        return "a number"

    def convert(self, value: Any) -> float:
        if isinstance(value, bool):
            raise self.fail(value)
        try:
            v = float(value)
        except (TypeError, ValueError):
            iv = _parse_int(value)
            if iv is None:
                raise self.fail(value) from None
            v = float(iv)
        if (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi):
            raise self.fail(value)
        return v


class Bool(Kind):
    def describe(self) -> str:
        return "true or false"

    def convert(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "off", "0"):
            return False
        raise self.fail(value)


class Str(Kind):
    def __init__(self, pattern: str | None = None, what: str = "a string"):
        self.pattern = re.compile(pattern) if pattern else None
        self.what = what

    def describe(self) -> str:
        return self.what

    def convert(self, value: Any) -> str:
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise self.fail(value)
        s = str(value)
        if not s or (self.pattern and not self.pattern.fullmatch(s)):
            raise self.fail(value)
        return s


class Choice(Kind):
    def __init__(self, *values: str):
        self.values = values

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)

    def convert(self, value: Any) -> str:
        s = str(value).lower() if not isinstance(value, bool) else None
        if s not in self.values:
            raise self.fail(value)
        return s


class OutputPath(Kind):
    """A file to write; its directory must exist."""

    def describe(self) -> str:
        return "a file path in an existing directory"

    def convert(self, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(value)
        d = os.path.dirname(os.path.abspath(value))
        if not os.path.isdir(d):
            raise ParamError(f"directory {d} does not exist (for {value!r})")
        return value


class InputPath(Kind):
    """A file to read; it must exist."""

    def describe(self) -> str:
        return "an existing file"

    def convert(self, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(value)
        if not os.path.isfile(value):
            raise ParamError(f"no such file: {value!r}")
        return value


class Range(Kind):
    """An integer or 'LO-HI' integer range within [lo, hi]; converts to (lo, hi)."""

    def __init__(self, lo: int, hi: int, what: str = "an integer"):
        self.lo, self.hi, self.what = lo, hi, what

    def describe(self) -> str:
        return f"{self.what} or a range like {self.lo}-{self.hi}, within {self.lo}..{self.hi}"

    def convert(self, value: Any) -> tuple[int, int]:
        if isinstance(value, str) and "-" in value.strip().lstrip("-"):
            a, _, b = value.partition("-")
            lo, hi = _parse_int(a), _parse_int(b)
        else:
            lo = hi = _parse_int(value)
        if lo is None or hi is None or not (self.lo <= lo <= hi <= self.hi):
            raise self.fail(value)
        return (lo, hi)


class AddrRange(Kind):
    """An IP address, a prefix (198.18.0.0/24) or a range (198.18.0.1-198.18.0.9).

    Converts to (first, last) as ``ipaddress`` objects of one family.
    """

    def describe(self) -> str:
        return "an IP address, prefix or range like 198.18.0.1-198.18.0.9"

    def convert(self, value: Any) -> tuple:
        if not isinstance(value, str):
            raise self.fail(value)
        s = value.strip()
        try:
            if "/" in s:
                net = ipaddress.ip_network(s, strict=False)
                if net.num_addresses > 2:
                    return (net.network_address + 1, net.broadcast_address - 1)
                return (net.network_address, net.broadcast_address)
            if "-" in s:
                a, b = (ipaddress.ip_address(x.strip()) for x in s.split("-", 1))
            else:
                a = b = ipaddress.ip_address(s)
        except ValueError:
            raise self.fail(value) from None
        if a.version != b.version or int(a) > int(b):
            raise self.fail(value)
        return (a, b)


class Mac(Kind):
    _re = re.compile(r"[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}")

    def describe(self) -> str:
        return "a MAC address like 02:00:00:00:00:01"

    def convert(self, value: Any) -> bytes:
        if not isinstance(value, str) or not self._re.fullmatch(value):
            raise self.fail(value)
        return bytes(int(x, 16) for x in re.split("[:-]", value))


class Custom(Kind):
    """Any check written as a function that raises ParamError."""

    def __init__(self, what: str, fn: Callable[[Any], Any]):
        self.what, self.fn = what, fn

    def describe(self) -> str:
        return self.what

    def convert(self, value: Any) -> Any:
        return self.fn(value)
