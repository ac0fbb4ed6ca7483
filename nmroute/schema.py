"""Parameter specs: how an element or a port declares what it accepts.

Each element and port class carries ``PARAMS``, a tuple of :class:`Param`. The
loader converts every YAML value with ``Param.convert`` before anything is built;
a bad value raises :class:`~nmroute.errors.ParamError` whose message says what
was expected and whose ``path`` says where inside the value.

The kinds every element shares live here once (Prefix, Proto, PortRange,
Name, PowerOfTwo, ...), so that one value means the same, and fails the same
way, wherever it is written. This module sits below the fast path: it imports
only ``nmroute.errors``.
"""
from __future__ import annotations

import difflib
import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

from nmroute.errors import ParamError

_MISSING = object()


def closest(word: str, options) -> str | None:
    """The option `word` is a near miss of, if any."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: str, options) -> str:
    """' (did you mean 'x'?)' for a near miss, else ''. Never lists every option."""
    close = closest(word, options)
    return f" (did you mean '{close}'?)" if close else ""


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


def parse_int(value: Any) -> int | None:
    """An int from an int, an integral float, or text like '0x10', '1_000', '10k', '1.5M';
    None when the value is none of these."""
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
        v = parse_int(value)
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
            iv = parse_int(value)
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
            lo, hi = parse_int(a), parse_int(b)
        else:
            lo = hi = parse_int(value)
        if lo is None or hi is None or not (self.lo <= lo <= hi <= self.hi):
            raise self.fail(value)
        return (lo, hi)


def PortRange() -> Range:
    """A port or a range of ports like 1024-65535."""
    return Range(0, 65535, "a port")


def each(items: list, convert: Callable[[int, Any], Any]) -> list:
    """[convert(i, item)] over a list. A ParamError names every bad item, not
    only the first: its `issues` hold one error per bad item, each located
    by the path convert gave it (starting with the index i)."""
    out, bad = [], []
    for i, item in enumerate(items):
        try:
            out.append(convert(i, item))
        except ParamError as e:
            bad.extend(e.issues)
    if bad:
        raise ParamError.group(bad)
    return out


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


MAC_RE = re.compile(r"[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}")


def parse_mac(value: Any) -> bytes | None:
    """6 bytes from '02:00:00:00:00:01' (or with '-'); None if it is not a MAC."""
    if not isinstance(value, str) or not MAC_RE.fullmatch(value):
        return None
    return bytes(int(x, 16) for x in re.split("[:-]", value))


class Mac(Kind):
    def describe(self) -> str:
        return "a MAC address like 02:00:00:00:00:01"

    def convert(self, value: Any) -> bytes:
        mac = parse_mac(value)
        if mac is None:
            raise self.fail(value)
        return mac


# A name: of an element, an output, a port, a table. Letters, digits, '_',
# '.' and '-', not starting with a digit, '.' or '-'.
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


class Name(Kind):
    def __init__(self, what: str = "a name"):
        self.what = what

    def describe(self) -> str:
        return f"{self.what} like 'web' (letters, digits, '_', '.', '-')"

    def convert(self, value: Any) -> str:
        if not isinstance(value, str) or not NAME_RE.fullmatch(value):
            raise self.fail(value)
        return value


class PowerOfTwo(Kind):
    """An integer power of two in [lo, hi]."""

    def __init__(self, lo: int, hi: int):
        self.lo, self.hi = lo, hi

    def describe(self) -> str:
        return f"a power of two from {self.lo} to {self.hi}"

    def convert(self, value: Any) -> int:
        v = parse_int(value)
        if v is None or not self.lo <= v <= self.hi or v & (v - 1):
            raise self.fail(value)
        return v


class Prefix(Kind):
    """An IP prefix like 198.18.0.0/15 or 2001:2::/48 (a bare address is a
    host prefix). Host bits set are an error, with the prefix meant as a
    "did you mean": one strictness for every element. Converts to an
    ``ipaddress`` network. `family` 4 or 6 admits only that version."""

    def __init__(self, family: int | None = None):
        self.family = family

    def describe(self) -> str:
        return {4: "an IPv4 prefix like 198.18.0.0/15",
                6: "an IPv6 prefix like 2001:2::/48"}.get(
            self.family, "an IP prefix like 198.18.0.0/15 or 2001:2::/48")

    def convert(self, value: Any):
        if not isinstance(value, str):
            raise self.fail(value)
        try:
            net = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise self.fail(value) from None
        if self.family and net.version != self.family:
            raise self.fail(value)
        if int(net.network_address) != int(ipaddress.ip_interface(value.strip()).ip):
            raise ParamError(f"{value!r} has host bits set (did you mean '{net}'?)")
        return net


PROTOS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "icmp6": 58, "sctp": 132}
PORT_PROTOS = (6, 17, 132)     # protocols with ports


class Proto(Kind):
    """An IP protocol: tcp, udp, icmp, icmpv6 (icmp6), sctp or a number 0..255."""

    def describe(self) -> str:
        return "tcp, udp, icmp, icmpv6, sctp or a number 0..255"

    def convert(self, value: Any) -> int:
        if isinstance(value, str) and value.strip().lower() in PROTOS:
            return PROTOS[value.strip().lower()]
        n = parse_int(value)
        if n is None or not 0 <= n <= 255:
            hint = did_you_mean(value.strip().lower(), PROTOS) if isinstance(value, str) else ""
            raise ParamError(f"expected {self.describe()}, got {value!r}{hint}")
        return n


class Custom(Kind):
    """Any check written as a function that raises ParamError."""

    def __init__(self, what: str, fn: Callable[[Any], Any]):
        self.what, self.fn = what, fn

    def describe(self) -> str:
        return self.what

    def convert(self, value: Any) -> Any:
        return self.fn(value)
