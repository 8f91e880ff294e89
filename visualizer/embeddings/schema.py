"""The embeddings CSV and its JSON sidecar: the one contract between the pipeline and the app.

`embeddings.csv`, one row per (model, sample, recorded step):

| column      | type  | meaning                                                          |
| ----------- | ----- | ---------------------------------------------------------------- |
| sample_id   | str   | unique row key, `<model>-<seed>-<step>`                          |
| seed        | int   | per-seed generator seed (>= 0); regenerates the sample exactly  |
| class_label | int   | class index (>= 0)                                               |
| class_name  | str   | human-readable class                                             |
| model       | str   | model key; the sidecar's `models[key]` says adapter + checkpoint |
| step        | int   | sampler step the activations were recorded at (0 = first)       |
| sigma       | float | noise level of that step                                         |
| umap_x      | float | 2-D embedding, finite                                            |
| umap_y      | float | 2-D embedding, finite                                            |
| image_path  | str   | thumbnail, relative to the CSV's folder                          |

Extra columns are kept. The sidecar `<csv stem>.json` (optional for hand-made CSVs) records
provenance: `schema_version`, `models` {key: {adapter, checkpoint, sha256, role}}, `layers`,
`sampler`, `reduction`, `versions`, `created`.

Extra column written by `python -m visualizer embed` (visualizer.embeddings.pipeline):

| column      | type  | meaning                                                          |
| ----------- | ----- | ---------------------------------------------------------------- |
| row         | int   | row of this sample in its activation stores: the sidecar's       |
|             |       | `activations.path` with model, layer and step filled in          |

and, in its sidecar, also `steps`, `seeds`, `classes`, `activations` {path, dtype, row_column,
layers: {name: {shape, pool, features}}}, `thumbnails` and `run` {batch_size, device, world_size};
`reduction.pca.basis_dir` holds the PCA basis that `visualizer.embeddings.reduce.project_new` reads.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from visualizer.errors import UserError

SCHEMA_VERSION = 1
COLUMNS: dict[str, str] = {
    "sample_id": "str", "seed": "int", "class_label": "int", "class_name": "str", "model": "str",
    "step": "int", "sigma": "float", "umap_x": "float", "umap_y": "float", "image_path": "str",
}
SIDECAR_KEYS = ("schema_version", "models", "layers")


@dataclass
class Embeddings:
    """A validated embeddings table, where it came from, and its provenance."""

    frame: pd.DataFrame
    csv_path: Path
    sidecar: dict = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.csv_path.parent

    @property
    def models(self) -> dict[str, dict]:
        return self.sidecar.get("models", {})


def sidecar_path(csv_path: Path | str) -> Path:
    return Path(csv_path).with_suffix(".json")


def _bad(path: Path, row: int | None, column: str | None, problem: str) -> UserError:
    where = f"{path}" + (f", row {row}" if row is not None else "") + (f", column '{column}'" if column else "")
    return UserError(f"{where}: {problem}")


def validate_frame(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Checks columns, types and uniqueness; rows are numbered as in the file (header = row 1)."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise _bad(path, None, None, f"missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
    if frame.empty:
        raise _bad(path, None, None, "no rows")
    out = frame.copy()
    for col, kind in COLUMNS.items():
        values = out[col]
        if kind == "str":
            nulls = values.isna()
            if nulls.any():
                raise _bad(path, int(nulls.to_numpy().argmax()) + 2, col, "empty value")
            out[col] = values.astype(str)
            continue
        numeric = pd.to_numeric(values, errors="coerce")
        for i, (raw, num) in enumerate(zip(values, numeric, strict=True)):
            if num is None or not math.isfinite(num):
                raise _bad(path, i + 2, col, f"expected a finite {kind}, got {raw!r}")
            if kind == "int" and num != int(num):
                raise _bad(path, i + 2, col, f"expected an integer, got {raw!r}")
            if col in ("seed", "class_label", "step") and num < 0:
                raise _bad(path, i + 2, col, f"must be >= 0, got {raw!r}")
        out[col] = numeric.astype("int64" if kind == "int" else "float64")
    dup = out["sample_id"].duplicated()
    if dup.any():
        i = int(dup.to_numpy().argmax())
        raise _bad(path, i + 2, "sample_id", f"duplicate sample_id {out['sample_id'].iloc[i]!r}")
    return out


def read_sidecar(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise _bad(path, None, None, f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(data, dict):
        raise _bad(path, None, None, "expected a JSON object at the top level")
    missing = [k for k in SIDECAR_KEYS if k not in data]
    if missing:
        raise _bad(path, None, None, f"missing key(s) {', '.join(missing)}")
    if data["schema_version"] != SCHEMA_VERSION:
        raise _bad(path, None, "schema_version", f"unsupported version {data['schema_version']!r}")
    if not isinstance(data["models"], dict) or not all(
        isinstance(m, dict) and "adapter" in m for m in data["models"].values()
    ):
        raise _bad(path, None, "models", "expected {key: {adapter, checkpoint, ...}}")
    return data


def load_embeddings(csv_path: Path | str) -> Embeddings:
    """Reads and validates an embeddings CSV and, when present, its sidecar; raises UserError naming the problem."""
    path = Path(csv_path)
    if not path.is_file():
        raise UserError(f"{path}: no such embeddings file")
    try:
        frame = pd.read_csv(path, dtype={"sample_id": str, "model": str, "class_name": str, "image_path": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise _bad(path, None, None, f"not a readable CSV ({str(e).strip().splitlines()[-1]})") from None
    frame = validate_frame(frame, path)
    side = sidecar_path(path)
    sidecar = read_sidecar(side) if side.exists() else {}
    unknown = sorted(set(frame["model"]) - set(sidecar.get("models", frame["model"])))
    if unknown:
        raise _bad(side, None, "models", f"models {unknown} appear in {path.name} but not in the sidecar")
    return Embeddings(frame=frame, csv_path=path, sidecar=sidecar)


def write_embeddings(frame: pd.DataFrame, csv_path: Path | str, sidecar: dict) -> Path:
    """Writes CSV and sidecar atomically (temp file, then rename), so readers never see a torn file."""
    path = Path(csv_path)
    validate_frame(frame, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    side = sidecar_path(path)
    payload = {"schema_version": SCHEMA_VERSION, **sidecar}
    for target, write in ((side, lambda p: p.write_text(json.dumps(payload, indent=2, default=str))),
                          (path, lambda p: frame.to_csv(p, index=False))):
        tmp = target.with_name(target.name + ".tmp")
        write(tmp)
        tmp.replace(target)
    return path
