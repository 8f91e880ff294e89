"""Where a result came from: checkpoint digests and package versions, for run.json and the sidecar."""

from __future__ import annotations

from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from visualizer.checkpoints.dmd2 import generator_file
from visualizer.checkpoints.opener import open_checkpoint

PACKAGES = ("torch", "numpy", "umap-learn", "scikit-learn", "visualizer")


def weights_file(path: Path) -> Path:
    """The file whose digest identifies a checkpoint: the file itself, or a DMD2 folder's pytorch_model.bin."""
    return generator_file(path)


def sha256(path: Path, chunk: int = 1 << 24) -> str:
    return open_checkpoint(path).sha256  # the checkpoints package's one hash of the weights file


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
