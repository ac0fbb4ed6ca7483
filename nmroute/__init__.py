"""nmroute: a software router and middlebox framework on netmap's model."""

__version__ = "0.1.0"


def get_include() -> str:
    """The directory to give Cython (include_path) so that a user's element
    can `cimport nmroute.fastpath.element` (as numpy.get_include())."""
    import os
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
