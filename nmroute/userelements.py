"""Elements users write themselves: find them by import path, build them.

A pipeline names a user's element by import path in ``type:``::

    elements:
      guard: {type: "myelements.ttl_guard:TtlGuard", min_ttl: 2}

:func:`resolve` imports ``myelements.ttl_guard`` with two directories put in
front of ``sys.path`` for the duration of the import: first the directory of
the YAML file, then the current directory. (A module imported once stays
imported: a second pipeline naming the same module gets the same one.)

The module may be a Python module, a compiled extension, or a Cython ``.pyx``
found on that path (``myelements/ttl_guard.pyx``) with no compiled module
beside it: that one is built on first load by :func:`build` and the build is
cached. The class must derive from ``nmroute.fastpath.element.Element`` (a
Cython element) or from ``nmroute.fastpath.pyelement.PyElement`` (a Python
element); its PARAMS and OUTPUTS are then checked like a built-in's.

Builds go to ``$NMROUTE_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/nmroute/build``
(``~/.cache/nmroute/build``), one directory per hash of the module name, the
``.pyx`` (and a ``.pxd`` beside it), nmroute's own ``.pxd`` files and the
Python ABI: editing any of them makes a new build; an unchanged one is loaded
from the cache. A build is Cython + the C compiler at ``-O2``, with nmroute's
include directory (``nmroute.get_include()``) so that the ``.pyx`` can
``cimport nmroute.fastpath.element``. ``nmroute build-element FILE.pyx``
builds one ahead of time (old builds are not removed: delete the directory).
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import functools
import hashlib
import importlib
import importlib.machinery
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import traceback
from pathlib import Path

import nmroute
from nmroute.errors import BuildError, UserElementError

__all__ = ["BuildError", "UserElementError", "add_parser", "build", "cache_dir", "main",
           "resolve"]

IMPORT_PATH = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
                         r":([A-Za-z_][A-Za-z0-9_]*)")

# As setup.py builds nmroute's own fast path.
CFLAGS = ["-O2", "-Wno-unused-function", "-Wno-unreachable-code"]
DIRECTIVES = {"boundscheck": False, "wraparound": False, "cdivision": True,
              "initializedcheck": False}


# --- building a .pyx ---------------------------------------------------------------

def cache_dir() -> Path:
    if os.environ.get("NMROUTE_CACHE_DIR"):
        return Path(os.environ["NMROUTE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nmroute" / "build"


def module_name_of(pyx: Path) -> str:
    """The dotted name a .pyx has from the packages (__init__.py) around it."""
    parts = [pyx.stem]
    d = pyx.parent
    while (d / "__init__.py").exists() or (d / "__init__.pyx").exists():
        parts.append(d.name)
        d = d.parent
    return ".".join(reversed(parts))


def _nmroute_pxd_digest() -> bytes:
    h = hashlib.sha256()
    root = Path(nmroute.__file__).parent
    for p in sorted(root.rglob("*.pxd")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.digest()


def _sources(pyx: Path) -> list[Path]:
    """The .pyx and the .pxd of the same name beside it, if any."""
    pxd = pyx.with_suffix(".pxd")
    return [pyx, pxd] if pxd.exists() else [pyx]


def build_paths(pyx_path, module_name: str | None = None) -> tuple[str, Path]:
    """(module name, path of the compiled module in the cache) for a .pyx."""
    pyx = Path(pyx_path).resolve()
    name = module_name or module_name_of(pyx)
    h = hashlib.sha256()
    for part in (name, nmroute.__version__, sys.implementation.cache_tag,
                 sysconfig.get_config_var("EXT_SUFFIX") or "", " ".join(CFLAGS)):
        h.update(part.encode() + b"\0")
    for src in _sources(pyx):
        h.update(src.suffix.encode() + src.read_bytes())
    h.update(_nmroute_pxd_digest())
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    return name, cache_dir() / h.hexdigest()[:20] / (name.rsplit(".", 1)[-1] + suffix)


def is_stale(so: Path, pyx: Path) -> bool:
    """The compiled module is missing or older than its sources."""
    if not so.exists():
        return True
    built = so.stat().st_mtime
    return any(src.stat().st_mtime > built for src in _sources(pyx))


_BUILD_SCRIPT = """
import json
import sys
from Cython.Build import cythonize
from setuptools import Extension, setup
pyx, name, work, include, cflags, directives = sys.argv[1:7]
directives = json.loads(directives)
ext = Extension(name, [pyx], extra_compile_args=cflags.split())
setup(ext_modules=cythonize([ext], language_level=3, include_path=[include],
                            build_dir=work + "/c", compiler_directives=directives, quiet=True),
      script_args=["-q", "build_ext", "--build-lib", work + "/lib",
                   "--build-temp", work + "/tmp"])
"""

_ERROR_LINE = re.compile(r"^(?P<where>\S+?:\d+:\d+): (?P<what>.*)$")


def compiler_errors(output: str, limit: int = 3) -> str:
    """The first error lines of Cython's or the C compiler's output."""
    found = []
    for line in output.splitlines():
        m = _ERROR_LINE.match(line.strip())
        if not m or m.group("what").startswith(("warning:", "note:")):
            continue
        where = m.group("where")
        found.append(f"{os.path.basename(where.split(':')[0])}:"
                     f"{where.split(':', 1)[1]}: {m.group('what')}")
        if len(found) == limit:
            break
    if not found:
        lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
        found = lines[-limit:] or ["no output"]
    return "; ".join(found)


def compile_pyx(pyx_path, module_name: str | None = None, force: bool = False) -> Path:
    """Build the .pyx into the cache unless an up-to-date build is there;
    the path of the compiled module. Raises BuildError."""
    pyx = Path(pyx_path).resolve()
    if not pyx.exists():
        raise BuildError(f"no such file: {pyx_path}")
    name, so = build_paths(pyx, module_name)
    if not force and not is_stale(so, pyx):
        return so
    so.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="work-", dir=so.parent))
    try:
        r = subprocess.run(
            [sys.executable, "-c", _BUILD_SCRIPT, str(pyx), name, str(work),
             nmroute.get_include(), " ".join(CFLAGS), json.dumps(DIRECTIVES)],
            cwd=work, capture_output=True, text=True)
        built = list((work / "lib").rglob("*" + so.suffix)) if r.returncode == 0 else []
        if not built:
            raise BuildError(f"building {pyx.name} failed: "
                             f"{compiler_errors(r.stderr + r.stdout)}")
        os.replace(built[0], so)        # atomic: a concurrent loader sees all or none
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return so


def _load_extension(name: str, so: Path):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, so)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def build(pyx_path, module_name: str | None = None, force: bool = False):
    """Build (when missing or stale) and import a user's .pyx; the module.

    The module's name comes from the packages around the file
    (``myelements/ttl_guard.pyx`` with ``myelements/__init__.py``:
    ``myelements.ttl_guard``); its package must be importable."""
    pyx = Path(pyx_path).resolve()
    name = module_name or module_name_of(pyx)
    so = compile_pyx(pyx, name, force)
    if "." in name and name.rsplit(".", 1)[0] not in sys.modules:
        root = pyx.parents[name.count(".")]
        with _search_path([str(root)]):
            importlib.import_module(name.rsplit(".", 1)[0])
    return _load_extension(name, so)


# --- resolving an import path ------------------------------------------------------

@contextlib.contextmanager
def _search_path(dirs):
    saved = list(sys.path)
    sys.path[:0] = dirs
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path[:] = saved


def _find_pyx(module: str, dirs) -> Path | None:
    """The .pyx that `module` names, in the first directory that has it."""
    rel = Path(*module.split(".")).with_suffix(".pyx")
    for d in dirs:
        p = Path(d) / rel
        if p.is_file():
            return p
    return None


def _where(e: BaseException) -> str:
    """' (file:line)' of the innermost frame an exception passed through."""
    frames = traceback.extract_tb(e.__traceback__)
    if isinstance(e, SyntaxError) and e.filename:
        return f" ({os.path.basename(e.filename)}:{e.lineno})"
    if frames:
        return f" ({os.path.basename(frames[-1].filename)}:{frames[-1].lineno})"
    return ""


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _is_missing(e: ModuleNotFoundError, module: str) -> bool:
    """The module itself (or a package on its way) is missing, rather than
    something it imports."""
    parts = module.split(".")
    return e.name in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def _import(module: str, dirs):
    """Import `module` with `dirs` first on sys.path. A .pyx in one of `dirs`
    is built into the cache and used (a compiled module beside it is not)."""
    pyx = _find_pyx(module, dirs)
    with _search_path(dirs):
        try:
            if pyx is not None:
                return build(pyx, module)
            return importlib.import_module(module)
        except BuildError:
            raise
        except ModuleNotFoundError as e:
            if not _is_missing(e, module):
                raise UserElementError(f"importing '{module}' failed: {_one_line(e)}"
                                       f"{_where(e)}") from None
            raise UserElementError(
                f"no module '{e.name}' (no {e.name.replace('.', '/')}.py, package or .pyx) in "
                f"{', '.join(dirs)} or the installed packages") from None
        except Exception as e:  # noqa: BLE001 - whatever the user's module raises
            raise UserElementError(f"importing '{module}' failed: {_one_line(e)}"
                                   f"{_where(e)}") from None


def _bases():
    from nmroute.fastpath.element import Element
    from nmroute.fastpath.pyelement import PyElement
    return Element, PyElement


def _element_classes(module) -> list[str]:
    Element, PyElement = _bases()
    return sorted(n for n, v in vars(module).items()
                  if isinstance(v, type) and issubclass(v, Element)
                  and v not in (Element, PyElement))


def _check_shape(cls, path: str) -> None:
    from nmroute.schema import Param
    Element, PyElement = _bases()
    outs = getattr(cls, "OUTPUTS", None)
    if not isinstance(outs, tuple) or not all(isinstance(o, str) and o for o in outs):
        raise UserElementError(f"'{path}': OUTPUTS must be a tuple of output names, "
                               f"got {outs!r}")
    if len(set(outs)) != len(outs):
        raise UserElementError(f"'{path}': OUTPUTS has a name twice: {outs!r}")
    params = getattr(cls, "PARAMS", None)
    if not isinstance(params, tuple) or not all(isinstance(p, Param) for p in params):
        raise UserElementError(f"'{path}': PARAMS must be a tuple of "
                               f"nmroute.schema.Param, got {params!r}")
    if issubclass(cls, PyElement):
        if cls.process_batch is PyElement.process_batch:
            raise UserElementError(f"'{path}': {cls.__name__} does not define "
                                   f"process_batch(self, batch)")
        if tuple(cls.COUNTERS) != PyElement.COUNTERS:
            raise UserElementError(f"'{path}': a Python element keeps COUNTERS = "
                                   f"{PyElement.COUNTERS!r}, got {cls.COUNTERS!r}")


def _with_type_name(cls, path: str):
    """The class, with TYPE set to the import path when it names none."""
    if isinstance(getattr(cls, "TYPE", None), str):
        return cls
    return _named(cls, path)


# Cached so that one class named by one path is one type in every pipeline.
@functools.cache
def _named(cls, path: str):
    # A subclass rather than setattr: a Cython class's attributes are fixed.
    return type(cls.__name__, (cls,), {"TYPE": path, "__doc__": cls.__doc__,
                                       "__module__": cls.__module__,
                                       "__qualname__": cls.__qualname__})


def search_dirs(yaml_path) -> list[str]:
    """Where a pipeline's import paths are looked up first: its directory,
    then the current directory."""
    dirs = [os.path.dirname(os.path.abspath(str(yaml_path))), os.getcwd()]
    return list(dict.fromkeys(dirs))


def resolve(path: str, yaml_path) -> type:
    """The element class that an import path ``package.module:Class`` names,
    looked up from the pipeline file `yaml_path`. Raises UserElementError."""
    m = IMPORT_PATH.fullmatch(path.strip())
    if not m:
        raise UserElementError(f"'{path}' is not an import path; write "
                               f"'package.module:Class', like 'myelements.ttl_guard:TtlGuard'")
    module_name, attr = m.groups()
    module = _import(module_name, search_dirs(yaml_path))
    Element, PyElement = _bases()
    if not hasattr(module, attr):
        classes = _element_classes(module)
        close = difflib.get_close_matches(attr, classes, n=1, cutoff=0.6)
        if close:
            hint = f" (did you mean '{close[0]}'?)"
        elif classes:
            hint = f"; its element classes: {', '.join(classes[:5])}"
        else:
            hint = "; it defines no element class"
        raise UserElementError(f"module '{module_name}' ({_file(module)}) has no "
                               f"'{attr}'{hint}")
    cls = getattr(module, attr)
    if not isinstance(cls, type) or not issubclass(cls, Element) or cls in (Element, PyElement):
        if cls in (Element, PyElement):
            what = "a base class"
        elif isinstance(cls, type):
            what = "a class"
        else:
            what = f"a {type(cls).__name__}" + ("" if callable(cls) else " value")
        raise UserElementError(f"'{path}' is {what}, not an element class (a subclass of "
                               f"nmroute.fastpath.element.Element or "
                               f"nmroute.fastpath.pyelement.PyElement)")
    _check_shape(cls, path)
    return _with_type_name(cls, path)


def _file(module) -> str:
    f = getattr(module, "__file__", None)
    return os.path.basename(f) if f else "built in"


# --- `nmroute build-element` ---------------------------------------------------------

def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("build-element", help="build a Cython element (.pyx) ahead of use",
                       description="Cythonize and compile a user's element into nmroute's "
                                   "build cache (as a pipeline naming it would on first "
                                   "load), and print the compiled module's path.")
    p.add_argument("file", metavar="FILE.pyx")
    p.add_argument("--force", action="store_true", help="rebuild even when up to date")
    p.set_defaults(fn=main)
    return p


def main(args) -> int:
    from nmroute import errors
    pyx = Path(args.file)
    if pyx.suffix != ".pyx":
        return errors.fail(f"{args.file}: expected a .pyx file", errors.BAD_CONFIG)
    try:
        so = compile_pyx(pyx, force=args.force)
    except BuildError as e:
        return errors.fail(f"{args.file}: {e}", errors.BAD_CONFIG)
    print(so)
    return errors.OK
