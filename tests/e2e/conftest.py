import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mesh import Pair  # noqa: E402


def pytest_configure(config):
    if os.geteuid() != 0:
        pytest.exit("the e2e tests need root (network namespaces and iptables): run them with sudo", 2)


@pytest.fixture(scope="module")
def pair():
    """Two meshed hosts with the default rules and settings, IPv4."""
    p = Pair()
    yield p
    p.close()


@pytest.fixture
def fresh_pair(request):
    """Two meshed hosts made for one test; meshd flags come from the test's
    `meshd_flags` marker."""
    marker = request.node.get_closest_marker("meshd_flags")
    p = Pair(meshd_flags=marker.args if marker else ())
    yield p
    p.close()
