"""Shared fixtures; the helpers themselves live in tests/nets.py (networks) and tests/app_files.py (app files)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from nets import tiny_kwargs, tiny_net

# The demo's training code lives in the checkout's tools/, beside the installed package, not in it.
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.append(ROOT)

# The model, checkpoint and pipeline tests need only torch; on a GPU machine without the web stack
# the app and browser tests are left out (CI installs everything and runs them all).
HAVE_DASH = importlib.util.find_spec("dash") is not None
collect_ignore_glob = [] if HAVE_DASH else ["browser/*", "test_app_*.py"]


def pytest_configure(config):
    """Browser tests always run Chromium headless (dash.testing's --headless), here and in CI."""
    if hasattr(config.option, "headless"):
        config.option.headless = True


@pytest.fixture(scope="session", name="tiny_kwargs")
def tiny_kwargs_fixture():
    """The `tiny_kwargs(**overrides)` factory, as a fixture."""
    return tiny_kwargs


@pytest.fixture(scope="session", name="tiny_net")
def tiny_net_fixture():
    """The `tiny_net(seed=0, **overrides)` factory, as a fixture."""
    return tiny_net
