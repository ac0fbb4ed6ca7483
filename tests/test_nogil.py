"""`cython -a` on every fast-path module: a line that touches Python (a
non-zero score, "yellow") inside a nogil function is a bug on the per-packet
path."""
import html
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted((ROOT / "nmroute" / "fastpath").rglob("*.pyx"))
LINE = re.compile(r'<pre class="cython line score-(\d+)"[^>]*>(.*?)</pre>', re.S)
DEF = re.compile(r"\s*(cdef|cpdef|def)\s.*\(|\s*(cdef\s+)?class\s")


def yellow_nogil_lines(html_text):
    bad, in_nogil = [], False
    for score, code in LINE.findall(html_text):
        text = html.unescape(re.sub(r"<[^>]+>", "", code))
        body = re.sub(r"^\W?\d+: ?", "", text)
        if DEF.match(body) or (body[:1].strip() and not body.startswith("#")):
            # A def starts a function; any other top-level line ends one.
            in_nogil = bool(DEF.match(body)) and "nogil" in body
        if in_nogil and int(score) > 0:
            bad.append(body.strip())
    return bad


@pytest.mark.parametrize("pyx", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_python_in_nogil_functions(pyx, tmp_path):
    out = tmp_path / (pyx.stem + ".c")
    r = subprocess.run(
        [sys.executable, "-m", "cython", "-3", "-a", "-I", str(ROOT),
         "-X", "boundscheck=False", "-X", "wraparound=False", "-X", "cdivision=True",
         "-X", "initializedcheck=False", str(pyx), "-o", str(out)],
        cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    page = out.with_suffix(".html").read_text()
    assert LINE.search(page), "cython -a output changed shape: this test reads nothing"
    assert yellow_nogil_lines(page) == []


def test_the_check_sees_yellow_lines(tmp_path):
    """The parser flags a Python call inside a nogil function."""
    pyx = tmp_path / "bad.pyx"
    pyx.write_text("cdef int f(int x) noexcept nogil:\n    with gil:\n        print(x)\n"
                   "    return x\n")
    subprocess.run([sys.executable, "-m", "cython", "-3", "-a", str(pyx)], check=True,
                   capture_output=True)
    assert yellow_nogil_lines((tmp_path / "bad.html").read_text())
