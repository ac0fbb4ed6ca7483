"""Fixtures shared by the pipeline tests (helpers.py holds the functions)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # `import helpers` from any test file


@pytest.fixture(autouse=True)
def _structlog_defaults():
    """structlog back to its defaults after each test: an in-process
    `nmroute run` points it at a captured stream that is then gone."""
    yield
    import structlog
    structlog.reset_defaults()

