"""The linters are part of the tests: ruff on Python, cython-lint on Cython."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(name):
    exe = Path(sys.executable).with_name(name)
    return str(exe) if exe.exists() else shutil.which(name)


@pytest.mark.parametrize("cmd", [
    ["ruff", "check", "nmroute", "tests", "pipelines"],
    ["cython-lint", "nmroute/fastpath"],
])
def test_lint(cmd):
    exe = _tool(cmd[0])
    assert exe, f"{cmd[0]} is not installed (it is in the test extra of pyproject.toml)"
    # cython-lint runs pycodestyle by name: the venv's bin must be on PATH.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    r = subprocess.run([exe, *cmd[1:]], cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
