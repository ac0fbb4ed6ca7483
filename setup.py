"""Build the Cython fast path: every .pyx under nmroute/fastpath is one extension."""
import os
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

# NMROUTE_DEBUG=1 compiles the invariant checks (ring bounds, buffer indexes) in.
DEBUG = os.environ.get("NMROUTE_DEBUG") == "1"
CFLAGS = ["-O2", "-Wno-unused-function", "-Wno-unreachable-code"]
if os.environ.get("NMROUTE_WERROR") == "1":
    CFLAGS.append("-Werror")

# Modules built only when their library's headers are installed; without
# them the port says why it is unavailable (nmroute/registry.py).
OPTIONAL = {"nmroute/fastpath/ports/xdp.pyx": "/usr/include/xdp/xsk.h",
            "nmroute/fastpath/ports/umem.pyx": "/usr/include/xdp/xsk.h"}


# NMROUTE_ONLY=xdp,pool: build only the modules whose path contains one of
# these words (development, while other modules are mid-edit).
ONLY = [w for w in os.environ.get("NMROUTE_ONLY", "").split(",") if w]


def wanted(p):
    if ONLY and not any(w in p.as_posix() for w in ONLY):
        return False
    need = OPTIONAL.get(p.as_posix())
    if need and not os.path.exists(need):
        print(f"setup.py: not building {p}: {need} is missing (apt install libxdp-dev "
              "libbpf-dev)")
        return False
    return True


extensions = [
    Extension(
        ".".join(p.with_suffix("").parts),
        [str(p)],
        extra_compile_args=CFLAGS,
        define_macros=[("NMROUTE_DEBUG", "1" if DEBUG else "0")],
    )
    for p in sorted(Path("nmroute/fastpath").rglob("*.pyx"))
    if wanted(p)
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    ),
)
