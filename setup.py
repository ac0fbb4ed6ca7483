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

extensions = [
    Extension(
        ".".join(p.with_suffix("").parts),
        [str(p)],
        extra_compile_args=CFLAGS,
        define_macros=[("NMROUTE_DEBUG", "1" if DEBUG else "0")],
    )
    for p in sorted(Path("nmroute/fastpath").rglob("*.pyx"))
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
