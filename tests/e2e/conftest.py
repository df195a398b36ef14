"""Fixtures for end-to-end tests in network namespaces (DESIGN section 7)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))

import netns  # noqa: E402


@pytest.fixture(scope="session")
def tandem_bin():
    path = os.environ.get("TANDEM_BIN")
    if not path:
        pytest.skip("TANDEM_BIN is not set (ctest sets it)")
    return os.path.abspath(path)


@pytest.fixture
def topo():
    why = netns.available()
    if why:
        pytest.skip(why)
    t = netns.Topology()
    try:
        yield t
    finally:
        t.destroy()
