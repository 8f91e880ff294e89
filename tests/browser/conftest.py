"""Fixtures of the browser tests: tiny real-format checkpoints and a small embeddings table."""

import pytest
from app_files import write_pair, write_synthetic_embeddings


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    return write_pair(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="session")
def small_csv(tmp_path_factory, checkpoints):
    """60 seeds per model, sidecar naming the real checkpoints (so --embeddings alone would load them)."""
    pkl, student = checkpoints
    models = {"teacher": {"adapter": "edm-imagenet-64", "checkpoint": str(pkl), "role": "teacher"},
              "student": {"adapter": "dmd2-imagenet-64", "checkpoint": str(student), "role": "student"}}
    return write_synthetic_embeddings(tmp_path_factory.mktemp("emb"), 60, models=models)


@pytest.fixture(autouse=True)
def _no_tqdm_monitor(monkeypatch):
    """tqdm's monitor thread would be caught up in dash.testing's server shutdown and warn; the app needs none."""
    import tqdm

    monkeypatch.setattr(tqdm.tqdm, "monitor_interval", 0)
