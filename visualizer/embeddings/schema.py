"""The embeddings CSV and its JSON sidecar: the one contract between the pipeline and the app.

`embeddings.csv`, one row per (model, sample, recorded step):

| column      | type  | meaning and range (values outside it are refused at load)                    |
| ----------- | ----- | ---------------------------------------------------------------------------- |
| sample_id   | str   | unique row key, `<model>-<seed>-<step>`; 1-256 characters                    |
| seed        | int   | per-seed generator seed, 0 <= seed < 2^32 (the reference sampler's range)    |
| class_label | int   | class index, 0 <= class_label < 100,000, below the sidecar's `classes`       |
|             |       | count and (in the app) below the loaded models' number of classes            |
| class_name  | str   | human-readable class; at most 256 characters                                 |
| model       | str   | model key (at most 64 characters); the sidecar's `models[key]`               |
| step        | int   | sampler step the activations were recorded at (0 = first), 0 <= step < 1024  |
| sigma       | float | noise level of that step, finite, 0 <= sigma <= 100,000                      |
| umap_x      | float | 2-D embedding, finite, abs(x) <= 1e9                                         |
| umap_y      | float | 2-D embedding, finite, abs(y) <= 1e9                                         |
| image_path  | str   | thumbnail, relative, inside the CSV's folder; at most 1,024 characters       |

The file itself must be UTF-8 without NUL bytes, with lines of at most 64 KiB and no quoted value
spanning lines; it is checked in one streaming pass before pandas parses it. Extra columns are kept.
The sidecar `<csv stem>.json` (optional for hand-made CSVs; without one the app notes that the
provenance is unknown) records provenance: `schema_version`, `models` {key: {adapter, checkpoint,
sha256, role, architecture {resolution, channels, num_classes}}}, `layers`, `sampler`, `reduction`,
`versions`, `created`; `visualizer.embeddings.sidecar` holds its schema (types and bounds of every field).

Extra column written by `python -m visualizer embed` (visualizer.embeddings.pipeline):

| column      | type  | meaning                                                          |
| ----------- | ----- | ---------------------------------------------------------------- |
| row         | int   | row of this sample in its activation stores: the sidecar's       |
|             |       | `activations.path` with model, layer and step filled in;         |
|             |       | 0 <= row < 2^40                                                  |

and, in its sidecar, also `steps`, `seeds`, `classes`, `activations` {path, dtype, row_column,
layers: {name: {shape, pool, features}}}, `thumbnails` and `run` {batch_size, device, world_size};
`reduction.pca.basis_dir` holds the PCA basis that `visualizer.embeddings.reduce.project_new` reads.
"""

from __future__ import annotations

import codecs
import json
import posixpath
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from visualizer.embeddings.maps import read_maps
from visualizer.embeddings.sidecar import (
    MAX_CLASSES,
    MAX_NUM_STEPS,
    SCHEMA_VERSION,
    SEED_LIMIT,
    read_json_file,
    validate_sidecar,
)
from visualizer.errors import UserError

__all__ = ["COLUMNS", "MAX_LINE_BYTES", "RANGES", "SCHEMA_VERSION", "SIDECAR_KEYS", "Embeddings", "load_embeddings",
           "read_sidecar", "sidecar_path", "validate_frame", "write_embeddings"]

COLUMNS: dict[str, str] = {
    "sample_id": "str", "seed": "int", "class_label": "int", "class_name": "str", "model": "str",
    "step": "int", "sigma": "float", "umap_x": "float", "umap_y": "float", "image_path": "str",
}
SIDECAR_KEYS = ("schema_version", "models", "layers")
MAX_LINE_BYTES = 1 << 16
# Numeric columns: inclusive low, exclusive high (the table above). `row` is checked when present.
RANGES: dict[str, tuple[float, float]] = {
    "seed": (0, SEED_LIMIT), "class_label": (0, MAX_CLASSES), "step": (0, MAX_NUM_STEPS),
    "sigma": (0.0, 1e5 + 1e-9), "umap_x": (-1e9, 1e9 + 1e-9), "umap_y": (-1e9, 1e9 + 1e-9), "row": (0, 2**40),
}
TEXT_LIMITS = {"sample_id": 256, "class_name": 256, "model": 64, "image_path": 1024}


@dataclass
class Embeddings:
    """A validated embeddings table, where it came from, and its provenance."""

    frame: pd.DataFrame
    csv_path: Path
    sidecar: dict = field(default_factory=dict)
    maps: list = field(default_factory=list)       # MapInfo: the main map, then the sidecar's `maps` (checked)

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


def _show(raw) -> str:
    text = repr(raw.item() if isinstance(raw, np.generic) else raw)
    return text if len(text) <= 60 else text[:60] + "..."


def validate_frame(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Checks columns, types, ranges and uniqueness; rows are numbered as in the file (header = row 1)."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise _bad(path, None, None, f"missing column(s) {', '.join(missing)} (the columns are described in "
                                     "visualizer/embeddings/schema.py)")
    if frame.empty:
        raise _bad(path, None, None, "no rows")
    out = frame.copy()
    numeric_columns = [c for c, kind in COLUMNS.items() if kind != "str"] + (["row"] if "row" in out else [])
    for col in [*COLUMNS, *(["row"] if "row" in out else [])]:
        values = out[col]
        if col not in numeric_columns:
            nulls = values.isna().to_numpy()
            if nulls.any():
                raise _bad(path, int(nulls.argmax()) + 2, col, "empty value")
            text = values.astype(str)
            too_long = (text.str.len() > TEXT_LIMITS[col]).to_numpy()
            if too_long.any():
                i = int(too_long.argmax())
                raise _bad(path, i + 2, col, f"longer than {TEXT_LIMITS[col]} characters")
            out[col] = text
            continue
        kind = "int" if col in ("row",) else COLUMNS[col]
        numeric = pd.to_numeric(values, errors="coerce").astype("float64")
        num = numeric.to_numpy()
        low, high = RANGES[col]
        finite = np.isfinite(num)
        bad = ~finite
        if kind == "int":
            bad |= finite & (num != np.floor(np.where(finite, num, 0)))
        in_range = finite & (num >= low) & (num < high)
        bad_or_out = bad | ~in_range
        if bad_or_out.any():
            i = int(bad_or_out.argmax())
            raw = values.iloc[i]
            if not finite[i]:
                raise _bad(path, i + 2, col, f"expected a finite {kind}, got {_show(raw)}")
            if bad[i]:
                raise _bad(path, i + 2, col, f"expected an integer, got {_show(raw)}")
            if col in ("seed", "class_label", "step", "row") and num[i] < 0:
                raise _bad(path, i + 2, col, f"must be >= 0, got {_show(raw)}")
            shown = {"seed": "0 <= seed < 2^32", "class_label": f"0 <= class_label < {MAX_CLASSES:,}",
                     "step": f"0 <= step < {MAX_NUM_STEPS}", "sigma": "0 <= sigma <= 100,000",
                     "umap_x": "|umap_x| <= 1e9", "umap_y": "|umap_y| <= 1e9", "row": "0 <= row < 2^40"}[col]
            raise _bad(path, i + 2, col, f"out of range ({shown}), got {_show(raw)}")
        out[col] = numeric.astype("int64") if kind == "int" else numeric
    dup = out["sample_id"].duplicated().to_numpy()
    if dup.any():
        i = int(dup.argmax())
        raise _bad(path, i + 2, "sample_id", f"duplicate sample_id {out['sample_id'].iloc[i]!r}")
    outside = ~out["image_path"].map(_inside_folder).to_numpy(dtype=bool)
    if outside.any():
        i = int(outside.argmax())
        raise _bad(path, i + 2, "image_path", f"{_show(out['image_path'].iloc[i])} is not a relative path inside "
                                              "the CSV's folder")
    return out


def _inside_folder(relative: str) -> bool:
    """A relative path that stays inside its folder (no absolute path, drive, '..' escape or backslash)."""
    if not relative or "\\" in relative or relative.startswith("/") or (len(relative) > 1 and relative[1] == ":"):
        return False
    normal = posixpath.normpath(relative)
    return normal != ".." and not normal.startswith("../") and normal != "."


def _bad_line(path: Path, line: int, problem: str) -> UserError:
    return UserError(f"{path}, line {line}: {problem}")


def check_text_file(path: Path, max_line: int = MAX_LINE_BYTES, chunk_size: int = 1 << 20,
                    progress: bool = False) -> None:
    """One streaming pass over a CSV before pandas reads it: UTF-8, no NUL byte, lines of at most `max_line`
    bytes, no quoted value spanning lines. Memory stays at one chunk, whatever the file holds. `progress`: a
    bar of the bytes checked on stderr (a 1M-row table is 100 MB)."""
    from tqdm.auto import tqdm

    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    line, length = 1, 0          # current line number and the bytes of it seen so far
    with open(path, "rb") as f, tqdm(total=path.stat().st_size, desc=f"check {path.name}", unit="B", unit_scale=True,
                                     leave=False, disable=not progress) as bar:
        while block := f.read(chunk_size):
            bar.update(len(block))
            nul = block.find(b"\x00")
            if nul >= 0:
                raise _bad_line(path, line + block.count(b"\n", 0, nul), "holds a NUL byte; not a CSV")
            try:
                decoder.decode(block)
            except UnicodeDecodeError as e:
                raise _bad_line(path, line + block.count(b"\n", 0, e.start), "not UTF-8 text; not a CSV") from None
            parts = block.split(b"\n")
            for i, part in enumerate(parts):
                length += len(part)
                if length > max_line:
                    raise _bad_line(path, line, f"longer than {max_line:,} bytes; not an embeddings CSV")
                if i < len(parts) - 1:
                    line, length = line + 1, 0
            if b'"' in block:
                _check_quotes(path, parts, line - (len(parts) - 1))
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise _bad_line(path, line, "not UTF-8 text (it ends inside a character); not a CSV") from None


def _check_quotes(path: Path, parts: list[bytes], first_line: int) -> None:
    # Chunks may split a line; a line split across chunks is counted in halves, which only matters when a
    # quote sits in it, and then both halves together still hold an even count in a valid file. Counting per
    # complete line (all but the chunk's first and last parts) is enough to find a value that spans lines.
    for i, part in enumerate(parts[1:-1], start=1):
        if part.count(b'"') % 2:
            raise _bad_line(path, first_line + i, "a quoted value spans lines (unsupported in an embeddings CSV)")


def read_sidecar(path: Path) -> dict:
    """The sidecar, parsed and checked against `visualizer.embeddings.sidecar.Sidecar` (types and bounds)."""
    return validate_sidecar(read_json_file(Path(path), "a JSON sidecar"), Path(path))


READ_CHUNK_ROWS = 200_000      # rows pandas reads at a time when progress is shown
PROGRESS_BYTES = 16 << 20      # tables this large (about 150k rows) show their loading's progress, when asked


def _read_csv(path: Path, progress: bool) -> pd.DataFrame:
    """pandas' reader with the text columns as text; with `progress`, in chunks under a bar of rows read."""
    from tqdm.auto import tqdm

    dtype = {"sample_id": str, "model": str, "class_name": str, "image_path": str}
    if not progress:
        return pd.read_csv(path, dtype=dtype)
    with pd.read_csv(path, dtype=dtype, chunksize=READ_CHUNK_ROWS) as reader, \
            tqdm(desc=f"read {path.name}", unit=" rows", unit_scale=True, leave=False) as bar:
        parts = []
        for part in reader:
            parts.append(part)
            bar.update(len(part))
    return pd.concat(parts, ignore_index=True) if parts else pd.read_csv(path, dtype=dtype)


def load_embeddings(csv_path: Path | str, progress: bool = False) -> Embeddings:
    """Reads and validates an embeddings CSV and, when present, its sidecar; raises UserError naming the problem.

    `progress`: each stage of a large table (PROGRESS_BYTES or more) says where it is on stderr (the byte check,
    the rows read, the value checks), as the app's command line asks; a 1M-row table takes about 7-11 s on the
    2-core machine. A small one loads silently, so a bad file is still one line."""
    path = Path(csv_path)
    if path.is_dir():
        inside = path / "embeddings.csv"
        hint = f"; give {inside}" if inside.is_file() else "; give the embeddings CSV inside it"
        raise UserError(f"{path}: a folder, not an embeddings CSV{hint}")
    if not path.is_file():
        raise UserError(f"{path}: no such embeddings file")
    progress = progress and path.stat().st_size >= PROGRESS_BYTES
    check_text_file(path, progress=progress)
    try:
        frame = _read_csv(path, progress)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise _bad(path, None, None, f"not a readable CSV ({str(e).strip().splitlines()[-1]})") from None
    if progress:
        print(f"checking {len(frame):,} rows of {path.name} ...", file=sys.stderr, flush=True)
    frame = validate_frame(frame, path)
    side = sidecar_path(path)
    sidecar = read_sidecar(side) if side.exists() else {}
    unknown = sorted(set(frame["model"]) - set(sidecar.get("models", frame["model"])))
    if unknown:
        raise _bad(side, None, "models", f"models {unknown} appear in {path.name} but not in the sidecar")
    num_classes = (sidecar.get("classes") or {}).get("num_classes")
    if num_classes:
        over = (frame["class_label"] >= num_classes).to_numpy()
        if over.any():
            i = int(over.argmax())
            raise _bad(path, i + 2, "class_label", f"{frame['class_label'].iloc[i]} is not below the {num_classes} "
                                                   f"classes its sidecar records")
    maps = read_maps(path.parent, sidecar, frame, side)
    return Embeddings(frame=frame, csv_path=path, sidecar=sidecar, maps=maps)


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
