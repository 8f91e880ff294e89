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
with the same values.

Integrity: each shard records the sha256 of the store rows it wrote (`store_rows`, one digest per
store, of the float16 bytes of its rows) and its own sha256 (`checksum`, over the rest of the record
in canonical JSON). `read_shard` verifies the record, `verify_rows` the rows; the pipeline does both
for committed batches when a run resumes and for every batch before the reduction, so a shard or a
store edited or damaged on disk stops the run with its file named, instead of moving the map.
Shards written before checksums existed have neither field: they are used as they are, and the run
says how many it could not verify. Stores are created once, full size, before any batch runs, so ranks write
disjoint rows of the same file (safe on one host and on filesystems with coherent shared writes;
not on NFS shared between nodes).
"""

from __future__ import annotations

import hashlib
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
        old = json.loads(path.read_bytes().decode("utf-8"))["fingerprint"]
        if not isinstance(old, dict):
            raise TypeError
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, KeyError, TypeError, OSError):
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

CHECKSUM_KEY = "checksum"
ROWS_KEY = "store_rows"
MAX_SHARD_BYTES = 256 << 20


def _record_digest(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != CHECKSUM_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def rows_digest(store: np.ndarray, start: int, stop: int) -> str:
    """sha256 of rows [start, stop) of an activation store, as the float16 bytes on disk."""
    return hashlib.sha256(np.ascontiguousarray(store[start:stop]).tobytes()).hexdigest()


def store_key(layer: str, step: int) -> str:
    return f"{layer}/step{step}"


def commit_shard(path: Path, record: dict) -> None:
    """Write a shard with its own checksum (and whatever `store_rows` digests the record carries), atomically."""
    body = {k: v for k, v in record.items() if k != CHECKSUM_KEY}
    atomic_write_text(path, json.dumps({**body, CHECKSUM_KEY: _record_digest(body)}, separators=(",", ":")))


def _damaged(path: Path, problem: str) -> UserError:
    return UserError(f"{path}: damaged shard ({problem}); delete it and rerun the same command to recompute that batch")


def read_shard(path: Path) -> dict | None:
    """The committed record, its checksum verified; None if the batch has not been committed.

    A file that is not UTF-8 JSON, not a record, or whose checksum does not match its content is a
    UserError naming it. A record without a checksum (written before checksums existed) is returned as
    is: `is_verified(record)` tells them apart.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SHARD_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _damaged(path, f"cannot be read: {e.strerror or e}") from None
    if len(raw) > MAX_SHARD_BYTES:
        raise _damaged(path, f"larger than {MAX_SHARD_BYTES >> 20} MiB")
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise _damaged(path, "not UTF-8 text") from None
    except (json.JSONDecodeError, RecursionError):
        raise _damaged(path, "not the JSON this command writes") from None
    if not isinstance(record, dict) or not isinstance(record.get("rows"), list) or "seeds" not in record:
        raise _damaged(path, "not a shard record")
    if CHECKSUM_KEY in record and record[CHECKSUM_KEY] != _record_digest(record):
        raise _damaged(path, "its content does not match its checksum: it was edited or corrupted")
    return record


def is_verified(record: dict) -> bool:
    """Whether a shard carries checksums (of itself and of its store rows)."""
    return CHECKSUM_KEY in record


def verify_rows(record: dict, shard: Path, stores: dict[str, tuple[Path, np.ndarray]], start: int, stop: int) -> None:
    """The store rows [start, stop) a shard committed still have the digests it recorded.

    `stores` maps `store_key(layer, step)` to (path, opened store). A store the shard recorded that the
    run does not have, or rows that changed, is a UserError naming the store, the rows and the shard.
    """
    recorded = record.get(ROWS_KEY)
    if recorded is None:
        return
    if not isinstance(recorded, dict) or set(recorded) != set(stores):
        raise _damaged(shard, f"it records rows of {sorted(recorded) if isinstance(recorded, dict) else '?'}, "
                              f"the run has {sorted(stores)}")
    for key, (path, store) in stores.items():
        if rows_digest(store, start, stop) != recorded[key]:
            raise UserError(f"{path}: rows {start}-{stop - 1} do not match the checksum that {shard} recorded when "
                            "they were written (edited or corrupted); delete that shard file and rerun the same "
                            "command to recompute them")
