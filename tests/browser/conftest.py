"""Fixtures of the browser tests: tiny real-format checkpoints and a small embeddings table."""

import pytest
from app_files import pair_models, write_pair, write_synthetic_embeddings


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    return write_pair(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="session")
def small_csv(tmp_path_factory, checkpoints):
    """60 seeds per model, sidecar naming the real checkpoints (so --embeddings alone would load them)."""
    pkl, student = checkpoints
    models = pair_models(pkl, student)
    return write_synthetic_embeddings(tmp_path_factory.mktemp("emb"), 60, models=models)


@pytest.fixture(scope="session", autouse=True)
def screenshot_folder(tmp_path_factory):
    """Screenshots go to a temporary folder, never over the tracked docs/screenshots/ (set
    $VISUALIZER_SCREENSHOTS to keep them somewhere; scripts/refresh_screenshots.py refreshes the README's)."""
    import os
    from pathlib import Path

    import app_helpers

    chosen = os.environ.get(app_helpers.SCREENSHOTS_ENV)
    app_helpers.SCREENSHOTS = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    print(f"[screenshots] {app_helpers.SCREENSHOTS}")
    return app_helpers.SCREENSHOTS


@pytest.fixture(autouse=True)
def _no_tqdm_monitor(monkeypatch):
    """tqdm's monitor thread would be caught up in dash.testing's server shutdown and warn; the app needs none."""
    import tqdm

    monkeypatch.setattr(tqdm.tqdm, "monitor_interval", 0)
