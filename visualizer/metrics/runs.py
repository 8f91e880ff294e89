"""An `embed` run read for comparisons: which models, layers and steps it recorded, and their pooled rows.

Reads the sidecar (`embeddings.json`) and the CSV's columns with the standard library only (no
pandas), and the float16 activation stores through `visualizer.embeddings.store`. Rows of two models
are paired by seed: row i of the teacher's matrix and row i of the student's are the same seed and
class, so their activations at the shared first input compare one to one.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visualizer.embeddings.store import RunFolder, open_store
from visualizer.errors import UserError

NEEDED = ("seed", "class_label", "model", "step", "sigma", "row")


@dataclass
class Rows:
    """The samples of one (model, step), in seed order."""

    seeds: np.ndarray          # int64 [n]
    labels: np.ndarray         # int64 [n]
    rows: np.ndarray           # int64 [n], rows in the activation stores
    sigma: float


@dataclass
class EmbedRun:
    root: Path
    csv_path: Path
    sidecar: dict
    table: dict[tuple[str, int], Rows]       # (model, step) -> its samples

    @classmethod
    def open(cls, path: str | Path) -> EmbedRun:
        """A run folder, or its embeddings.csv; the sidecar must say where the activation stores are."""
        path = Path(path)
        csv_path = path / "embeddings.csv" if path.is_dir() else path
        if not csv_path.is_file():
            raise UserError(f"{path}: no embeddings.csv there; give an `embed` run folder or its CSV")
        side = csv_path.with_suffix(".json")
        try:
            sidecar = json.loads(side.read_text())
        except FileNotFoundError:
            raise UserError(f"{side}: missing; comparisons need the sidecar `embed` writes beside the CSV") from None
        except json.JSONDecodeError as e:
            raise UserError(f"{side}: not valid JSON (line {e.lineno}: {e.msg})") from None
        if not isinstance(sidecar, dict) or not isinstance(sidecar.get("activations"), dict) \
                or not isinstance(sidecar.get("models"), dict):
            raise UserError(f"{side}: no 'activations' or 'models' section; this CSV was not written by `embed`, "
                            "so there are no activation stores to compare")
        return cls(csv_path.parent, csv_path, sidecar, _read_table(csv_path))

    # -- what it holds -----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.root.name

    @property
    def models(self) -> dict[str, dict]:
        return self.sidecar["models"]

    @property
    def layers(self) -> list[str]:
        return list(self.sidecar.get("layers", []))

    def layer_info(self, layer: str) -> dict:
        return self.sidecar["activations"].get("layers", {}).get(layer, {})

    def model_with_role(self, role: str) -> str:
        keys = [k for k, m in self.models.items() if m.get("role") == role]
        if len(keys) != 1:
            raise UserError(f"{self.csv_path.with_suffix('.json')}: {len(keys)} model(s) with role {role!r} "
                            f"({', '.join(self.models)}); name them (--teacher-model/--student-model)")
        return keys[0]

    def steps(self, model: str) -> list[int]:
        return sorted(step for (m, step) in self.table if m == model)

    def num_steps(self, model: str) -> int:
        return int(self.models[model].get("num_steps") or (max(self.steps(model)) + 1))

    def sigma(self, model: str, step: int) -> float:
        return self.table[(model, step)].sigma

    def resolve_step(self, model: str, step: str | int) -> int:
        """'first', 'last' or an index (negative from the end) of the model's sampler steps."""
        count = self.num_steps(model)
        if step == "first":
            k = 0
        elif step == "last":
            k = count - 1
        else:
            try:
                k = int(step)
            except ValueError:
                raise UserError(f"step {step!r}: expected first, last or an index") from None
            k = k + count if k < 0 else k
        if not 0 <= k < count:
            raise UserError(f"step {step}: {model} has steps 0..{count - 1}")
        return k

    def has(self, model: str, layer: str, step: int) -> bool:
        return (model, step) in self.table and self.store(model, layer, step).is_file()

    def store(self, model: str, layer: str, step: int) -> Path:
        pattern = self.sidecar["activations"].get("path", "activations/{model}/{layer}/step{step}.npy")
        if pattern == "activations/{model}/{layer}/step{step}.npy":
            return RunFolder(self.root).store(model, layer, step)
        return self.root / pattern.format(model=model, layer=layer, step=step)

    # -- its models ------------------------------------------------------------------------------------
    def checkpoint(self, model: str) -> str:
        """The model's checkpoint as the sidecar names it: a URL or absolute path as is, else from the run folder."""
        path = str(self.models[model]["checkpoint"])
        if "://" in path or Path(path).is_absolute():
            return path
        return str((self.root / path).resolve())

    def open_adapter(self, model: str, device: str | None = None):
        """The run's model `model`, loaded through its adapter (the safe checkpoint opener)."""
        from visualizer.adapters import get_adapter

        return get_adapter(self.models[model]["adapter"]).from_checkpoint(self.checkpoint(model), device=device)

    def sampler_settings(self, model: str, adapter):
        """The sampler settings the run used for `model` (its preset and step count), as `adapter` builds them."""
        sampler = self.sidecar.get("sampler", {}).get(model, {})
        return adapter.sampler_settings(sampler.get("preset"), sampler.get("num_steps"))

    # -- rows --------------------------------------------------------------------------------------------
    def paired(self, a: tuple[str, int], b: tuple[str, int], seeds=None) -> tuple[Rows, Rows]:
        """The samples two (model, step)s share, as two aligned Rows (same seeds, same order); `seeds` narrows."""
        ra, rb = self._rows(*a), self._rows(*b)
        common = np.intersect1d(ra.seeds, rb.seeds)
        if seeds is not None:
            common = np.intersect1d(common, np.asarray(list(seeds), dtype=np.int64))
        if len(common) == 0:
            raise UserError(f"{self.csv_path}: {a[0]} step {a[1]} and {b[0]} step {b[1]} share no seeds")
        pa, pb = (_subset(r, common) for r in (ra, rb))
        if not np.array_equal(pa.labels, pb.labels):
            bad = int(common[np.flatnonzero(pa.labels != pb.labels)[0]])
            raise UserError(f"{self.csv_path}: seed {bad} has class {pa.labels[pa.seeds == bad][0]} for {a[0]} and "
                            f"{pb.labels[pb.seeds == bad][0]} for {b[0]}; pairs need the same class")
        return pa, pb

    def features(self, model: str, layer: str, step: int, rows: Rows) -> np.ndarray:
        """float16 [n, features]: the pooled activations of those samples (read into memory)."""
        path = self.store(model, layer, step)
        if not path.is_file():
            raise UserError(f"{path}: no activation store for {model} / {layer} / step {step}")
        store = open_store(path)
        if rows.rows.max(initial=-1) >= store.shape[0]:
            raise UserError(f"{path}: holds {store.shape[0]} rows; the CSV points at row {int(rows.rows.max())}")
        order = np.argsort(rows.rows, kind="stable")          # read in file order, then put back
        out = np.empty((len(rows.rows), store.shape[1]), dtype=store.dtype)
        out[order] = store[rows.rows[order]]
        return out

    def _rows(self, model: str, step: int) -> Rows:
        if (model, step) not in self.table:
            have = ", ".join(f"{m} step {s}" for m, s in sorted(self.table))
            raise UserError(f"{self.csv_path}: no rows for {model} at step {step} (the run holds {have})")
        return self.table[(model, step)]


def _subset(r: Rows, seeds: np.ndarray) -> Rows:
    where = np.searchsorted(r.seeds, seeds)
    return Rows(r.seeds[where], r.labels[where], r.rows[where], r.sigma)


def _read_table(path: Path) -> dict[tuple[str, int], Rows]:
    groups: dict[tuple[str, int], list[tuple[int, int, int, float]]] = {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in NEEDED if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: missing column(s) {', '.join(missing)}; comparisons read the rows `embed` "
                            "writes (seed, class_label, model, step, sigma, row)")
        for line, rec in enumerate(reader, start=2):
            try:
                key = (rec["model"], int(rec["step"]))
                groups.setdefault(key, []).append((int(rec["seed"]), int(rec["class_label"]), int(rec["row"]),
                                                   float(rec["sigma"])))
            except (TypeError, ValueError):
                raise UserError(f"{path}, row {line}: expected integer seed, class_label, step and row and a "
                                "float sigma") from None
    table = {}
    for key, items in groups.items():
        items.sort()
        seeds = np.array([i[0] for i in items], dtype=np.int64)
        if len(np.unique(seeds)) != len(seeds):
            raise UserError(f"{path}: {key[0]} has a seed twice at step {key[1]}")
        table[key] = Rows(seeds, np.array([i[1] for i in items], dtype=np.int64),
                          np.array([i[2] for i in items], dtype=np.int64), items[0][3])
    if not table:
        raise UserError(f"{path}: no rows")
    return table
