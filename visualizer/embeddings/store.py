"""The run folder: where each file lives, and the writes that make an interrupted run resumable.

Layout of `--out DIR`:

    run.json                                   the arguments that shape the results (checked on rerun)
    thumbs/<model>/<seed>.png                  final image of each sample, at the model's resolution
    activations/<model>/<layer>/step<k>.npy    float16 [num_seeds, features]; row i = i-th seed of the run
    shards/<model>/batch<k>.json               committed metadata of one batch of seeds (resume unit)
    metadata.csv                               all shards merged, in model, seed and step order
    pca/                                       PCA basis per layer (.npy) + basis.json, features.npy
    embeddings.csv, embeddings.json            the result (visualizer.embeddings.schema)

Commit protocol: a batch writes its thumbnails and its rows of every activation store (flushed),
and only then its shard file, atomically (temporary file + os.replace). A shard file therefore
means "this batch is complete on disk"; a crash before it leaves rows that the rerun overwrites
with the same values. Stores are created once, full size, before any batch runs, so ranks write
disjoint rows of the same file (safe on one host and on filesystems with coherent shared writes;
not on NFS shared between nodes).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap

from visualizer.errors import UserError

STORE_DTYPE = np.float16


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def metadata_csv(self) -> Path:
        return self.root / "metadata.csv"

    @property
    def embeddings_csv(self) -> Path:
        return self.root / "embeddings.csv"

    @property
    def pca_dir(self) -> Path:
        return self.root / "pca"

    def thumb(self, model: str, seed: int) -> Path:
        return self.root / self.thumb_relative(model, seed)

    @staticmethod
    def thumb_relative(model: str, seed: int) -> str:
        return f"thumbs/{model}/{seed}.png"

    def store(self, model: str, layer: str, step: int) -> Path:
        return self.root / "activations" / model / layer / f"step{step}.npy"

    def shard(self, model: str, batch: int) -> Path:
        return self.root / "shards" / model / f"batch{batch:06d}.json"


# -- run.json ---------------------------------------------------------------------------------------

def _short(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def check_run_json(folder: RunFolder, fingerprint: dict, info: dict) -> bool:
    """Writes run.json on the first run; on a rerun, refuses different arguments. Returns True when resuming."""
    path = folder.run_json
    if not path.exists():
        if folder.root.exists() and any(folder.root.iterdir()):
            raise UserError(f"{folder.root}: not empty and has no run.json; choose an empty or new --out folder")
        atomic_write_text(path, json.dumps({"fingerprint": fingerprint, **info}, indent=2, default=str))
        return False
    try:
        old = json.loads(path.read_text())["fingerprint"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UserError(f"{path}: damaged (not the JSON this command writes); remove the folder or choose another "
                        "--out") from None
    new = json.loads(json.dumps(fingerprint, default=str))
    if old != new:
        diffs = [f"{k}: {_short(old.get(k))} then, {_short(new.get(k))} now"
                 for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        raise UserError(f"{folder.root} holds a run with different arguments ({'; '.join(diffs)}); rerun with the "
                        "same arguments to resume it, or choose another --out")
    return True


# -- activation stores ------------------------------------------------------------------------------

def create_store(path: Path, rows: int, features: int) -> None:
    """A full-size float16 .npy (sparse on disk until written); an existing one must have the same shape."""
    if path.exists():
        try:
            mm = open_memmap(path, mode="r")
        except (ValueError, OSError) as e:
            raise UserError(f"{path}: damaged activation store ({e}); remove the run folder and start again") from None
        if mm.shape != (rows, features) or mm.dtype != STORE_DTYPE:
            raise UserError(f"{path}: holds {mm.dtype}{list(mm.shape)}, expected float16[{rows}, {features}]")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    mm = open_memmap(tmp, mode="w+", dtype=STORE_DTYPE, shape=(rows, features))
    mm.flush()
    del mm
    os.replace(tmp, path)


def open_store(path: Path, writable: bool = False) -> np.memmap:
    return open_memmap(path, mode="r+" if writable else "r")


def to_store_dtype(rows: np.ndarray) -> np.ndarray:
    """float32 -> float16, saturating at the float16 range instead of writing inf."""
    limit = np.finfo(STORE_DTYPE).max
    return np.clip(rows, -limit, limit).astype(STORE_DTYPE)


# -- shards -----------------------------------------------------------------------------------------

def commit_shard(path: Path, record: dict) -> None:
    atomic_write_text(path, json.dumps(record, separators=(",", ":")))


def read_shard(path: Path) -> dict | None:
    """The committed record, or None if the batch has not been committed (or its file was torn by hand)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:
        return None
