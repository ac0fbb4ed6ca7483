"""A user's own Cython element, built outside the package against the
installed .pxd files, runs in a pipeline like a built-in one."""
import subprocess
import sys
import textwrap

import pytest

from nmroute import registry
from nmroute.config.pipeline import load_pipeline
from nmroute.runtime import Runtime, check_accounting

ELEMENT = textwrap.dedent('''
    from nmroute.fastpath.batch cimport Batch, drop_pkt
    from nmroute.fastpath.drops cimport DROP_DROP
    from nmroute.fastpath.element cimport Element, PER_PACKET


    cdef class EveryOther(Element):
        """Drops every second packet of a batch."""
        TYPE = "every-other"
        SUMMARY = "drop every second packet"
        OUTPUTS = ("out",)

        cdef int process(self, Batch* b) noexcept nogil:
            cdef unsigned int i
            for i in range(b.n):
                if i % 2:
                    drop_pkt(&b.d[i], DROP_DROP)
                else:
                    b.d[i].out = 0
            return PER_PACKET
''')

SETUP = textwrap.dedent('''
    import nmroute
    from Cython.Build import cythonize
    from setuptools import setup
    setup(ext_modules=cythonize("myelement.pyx", language_level=3,
                                include_path=[nmroute.get_include()]),
          script_args=["-q", "build_ext", "--inplace"])
''')


@pytest.fixture
def user_element(tmp_path, monkeypatch):
    (tmp_path / "myelement.pyx").write_text(ELEMENT)
    (tmp_path / "build_it.py").write_text(SETUP)
    r = subprocess.run([sys.executable, "build_it.py"], cwd=tmp_path, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    monkeypatch.syspath_prepend(str(tmp_path))
    import myelement
    types = dict(registry.element_types())
    types["every-other"] = myelement.EveryOther
    monkeypatch.setattr(registry, "element_types", lambda: types)
    return myelement.EveryOther


def test_user_element_cimports_the_base_and_runs(user_element, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text('ports: {src: "gen:count=1000", out: sink}\n'
                    "elements: {half: every-other}\n"
                    "links: [src -> half -> out]\n")
    rt = Runtime([load_pipeline(str(path))])
    rt.build()
    rt.run()
    snap = rt.finish()
    assert snap["ports"]["out"]["tx"] == 500
    assert snap["elements"]["half"]["drops"] == {"drop": 500}
    assert check_accounting(snap, {}).ok
