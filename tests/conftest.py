"""Shared fixtures; the helpers themselves live in tests/nets.py."""

from __future__ import annotations

import pytest
from nets import tiny_kwargs, tiny_net


@pytest.fixture(scope="session", name="tiny_kwargs")
def tiny_kwargs_fixture():
    """The `tiny_kwargs(**overrides)` factory, as a fixture."""
    return tiny_kwargs


@pytest.fixture(scope="session", name="tiny_net")
def tiny_net_fixture():
    """The `tiny_net(seed=0, **overrides)` factory, as a fixture."""
    return tiny_net
