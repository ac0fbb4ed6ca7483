"""Where element types and port kinds are found.

An element type is a class (a Cython ``cdef class`` deriving from
``nmroute.fastpath.element.Element``) carrying, as class attributes:

    TYPE     str                 the name used in YAML (``counter``)
    SUMMARY  str                 one line
    OUTPUTS  tuple[str, ...]     output names; an output is also addressed by its index
    PARAMS   tuple[Param, ...]   see nmroute.schema
    FANOUT   bool                each packet goes to every output (a copy per output)
    check(params) -> list[str]   optional classmethod: cross-parameter checks
    __doc__                      sections Outputs / Params / Counters / Drops / Example

A port kind is a class deriving from ``nmroute.fastpath.ports.port.Port`` with:

    SCHEME      str              ``gen``, ``pcap``, ``sink``, ``pipe`` ...
    SUMMARY     str
    DIRECTIONS  tuple            subset of ("rx", "tx"): read from, written to
    ARG         str | None       the param that the text after ``SCHEME:`` fills
    PARAMS      tuple[Param, ...]
    check(params, rx, tx) -> list[str]   optional classmethod
"""
from __future__ import annotations

import functools
import importlib
import pkgutil

# Every module in these packages is looked at: an element or a port is added
# by adding its file (one file each), nothing else.
ELEMENT_PACKAGE = "nmroute.fastpath.elements"
PORT_PACKAGE = "nmroute.fastpath.ports"


def _modules(package):
    pkg = importlib.import_module(package)
    return [f"{package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)]


# Ports built only when their library was there at build time (setup.py's
# OPTIONAL): where one is missing, the loader says why instead of "unknown".
UNBUILT_REASONS = {
    "xdp": "not built: libxdp-dev and libbpf-dev were missing when nmroute was built "
           "(install them, then run ./bootstrap build)",
}


def _classes(modules, attr):
    found = {}
    for name in modules:
        mod = importlib.import_module(name)
        for obj in vars(mod).values():
            if (isinstance(obj, type) and isinstance(getattr(obj, attr, None), str)
                    and obj.__module__ == mod.__name__):
                found[getattr(obj, attr)] = obj
    return found


# Cached: what is installed does not change while nmroute runs.
@functools.cache
def element_types() -> dict:
    """TYPE -> element class."""
    return _classes(_modules(ELEMENT_PACKAGE), "TYPE")


@functools.cache
def port_kinds() -> dict:
    """SCHEME -> port class."""
    return _classes(_modules(PORT_PACKAGE), "SCHEME")
