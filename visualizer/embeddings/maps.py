"""Per-layer and per-step maps (`embed --maps per-layer`): one UMAP per recorded layer and step, beside the main one.

The main map (`umap_x`, `umap_y` in embeddings.csv) embeds every recorded layer at once: each
layer's PCA scores, scaled to equal weight, concatenated (`visualizer.embeddings.reduce`). A map of
one layer at one step answers another question: how that layer alone arranges the samples at that
noise level. Each is made from the same PCA basis (no refit: the columns of that layer in
`pca/features.npy`) for the rows recorded at that step (at step 0 every model; at a later teacher
step only the teacher), with the run's UMAP settings.

Storage: `maps/<id>.npy`, float32 [rows of embeddings.csv, 2] in the CSV's row order, NaN for the
rows the map does not hold, and one entry per map in the sidecar's `maps` list (`MapEntry` in
`visualizer.embeddings.sidecar`): id, name, layers, steps, rows, file, what it embeds. A run
without the field (made before it existed, or without `--maps per-layer`) has the main map only.
`read_maps` checks every listed file on load: inside the run folder, a plain float32 .npy (no
pickle) of the table's length, finite exactly on as many rows as listed, NaN on the rest.

A probe map (`embed --probe`, made by `visualizer.metrics.probe_map`) is one more entry, with no layers
and a `probe` field (what it embeds: final images through one probe); its real images (`real`: positions,
classes, thumbnails) are checked here too and come back as `MapInfo.real`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from visualizer.errors import UserError

MAPS_DIR = "maps"
MAP_MODES = ("main", "per-layer")
MAIN = "main"          # the id of the main map (the CSV's own coordinates) wherever maps are listed


@dataclass(frozen=True)
class RealSet:
    """Real images on a probe map: their positions, classes and thumbnails (relative to the run folder)."""

    xy: np.ndarray             # float32 [count, 2]
    labels: np.ndarray         # int64 [count]
    thumbnails: str            # e.g. "thumbs/real/{index}.png"
    features: str              # the probe features file, float16 [count, dims]
    source: str

    def thumbnail(self, index: int) -> str:
        return self.thumbnails.format(index=int(index))


@dataclass(frozen=True)
class MapInfo:
    """One map a run holds: what it embeds, and its coordinates (NaN for rows it does not hold)."""

    id: str
    name: str
    about: str                 # one line: what the map embeds
    layers: tuple[str, ...]
    steps: tuple[int, ...] | None    # None: every recorded step
    xy: np.ndarray             # float32 [table rows, 2]
    probe: dict | None = None  # a probe map (`embed --probe`): the sidecar's `probe` entry (spec, features file)
    real: RealSet | None = None

    @property
    def is_probe(self) -> bool:
        return self.probe is not None

    @property
    def rows(self) -> np.ndarray:
        """Row numbers of the table this map holds."""
        return np.flatnonzero(np.isfinite(self.xy[:, 0]))


def map_id(layer: str, step: int) -> str:
    """`<layer>.step<k>`, with anything but letters, digits, '_' and '.' made '_' (it names a file)."""
    return f"{re.sub(r'[^A-Za-z0-9_.]', '_', layer).lstrip('.') or 'layer'}.step{int(step)}"


def main_map(frame: pd.DataFrame, layers: Sequence[str]) -> MapInfo:
    xy = frame[["umap_x", "umap_y"]].to_numpy(np.float32)
    what = "all recorded layers" if len(layers) != 1 else f"layer {layers[0]}"
    return MapInfo(MAIN, "main: " + (", ".join(layers) if len(layers) <= 3 else f"{len(layers)} layers"),
                   f"UMAP of {what} (PCA per layer, equal weight, concatenated), every model and recorded step",
                   tuple(layers), None, xy)


def column_blocks(components: Mapping[str, int]) -> dict[str, slice]:
    """Each layer's columns in pca/features.npy, from the basis's component counts in the run's layer order."""
    out, start = {}, 0
    for name, count in components.items():
        out[name] = slice(start, start + int(count))
        start += int(count)
    return out


def make_maps(frame: pd.DataFrame, features: np.ndarray, components: Mapping[str, int],
              umap: Callable[[np.ndarray], np.ndarray], min_rows: int = 4) -> tuple[list[dict], list[np.ndarray]]:
    """(sidecar entries, coordinates) of one map per layer and step; `umap(features) -> xy` fits one map.

    A map that would repeat the main one (one layer, one step) is not made, nor one with fewer than
    `min_rows` rows.
    """
    blocks = column_blocks(components)
    steps = sorted(int(s) for s in frame["step"].unique())
    if len(blocks) == 1 and len(steps) == 1:
        return [], []
    entries, coords = [], []
    step_of = frame["step"].to_numpy()
    for layer, cols in blocks.items():
        for step in steps:
            rows = np.flatnonzero(step_of == step)
            if len(rows) < min_rows:
                continue
            xy = np.full((len(frame), 2), np.nan, dtype=np.float32)
            xy[rows] = np.asarray(umap(np.ascontiguousarray(features[rows][:, cols])), dtype=np.float32)
            ident = map_id(layer, step)
            models = sorted(set(frame["model"].to_numpy()[rows]))
            entries.append({
                "id": ident, "name": f"{layer} · step {step + 1}", "layers": [layer], "steps": [step],
                "rows": int(len(rows)), "file": f"{MAPS_DIR}/{ident}.npy",
                "about": f"UMAP of layer {layer} alone at step {step + 1} ({', '.join(models)}; "
                         f"{len(rows):,} rows), from the run's PCA basis",
            })
            coords.append(xy)
    return entries, coords


def write_maps(root: Path, entries: Sequence[dict], coords: Sequence[np.ndarray]) -> None:
    """Each map's coordinates to `<root>/maps/<id>.npy`, written to a temporary name first, then renamed."""
    for entry, xy in zip(entries, coords, strict=True):
        path = root / entry["file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
        np.save(tmp, np.asarray(xy, dtype=np.float32), allow_pickle=False)
        os.replace(tmp, path)


def read_maps(root: Path, sidecar: Mapping, frame: pd.DataFrame, sidecar_file: Path | None = None) -> list[MapInfo]:
    """The main map, then every map the sidecar lists, each file checked (see the module docstring)."""
    where = sidecar_file or root / "embeddings.json"
    layers = list(sidecar.get("layers") or [])
    out = [main_map(frame, layers)]
    seen = {MAIN}
    for i, entry in enumerate(sidecar.get("maps") or []):
        def field(name: str, i: int = i) -> str:
            return f"{where}, field 'maps.{i}.{name}'"
        if entry["id"] in seen:
            raise UserError(f"{field('id')}: {entry['id']!r} is listed twice")
        seen.add(entry["id"])
        path = _inside(root, entry["file"], field("file"))
        xy = _load_array(path, f"map {entry['id']!r}")
        if xy.dtype != np.float32 or xy.shape != (len(frame), 2):
            raise UserError(f"{path}: expected float32 [{len(frame)}, 2] (one row per table row), got {xy.dtype} "
                            f"{list(xy.shape)}")
        xy = np.array(xy)
        finite = np.isfinite(xy)
        if (finite[:, 0] != finite[:, 1]).any() or (~finite & ~np.isnan(xy)).any():
            raise UserError(f"{path}: coordinates must be finite, or NaN on both axes for rows the map does not hold")
        if int(finite[:, 0].sum()) != entry["rows"]:
            raise UserError(f"{path}: holds {int(finite[:, 0].sum())} rows, the sidecar says {entry['rows']}")
        unknown = [n for n in entry["layers"] if n not in layers]   # a probe map names none
        if unknown:
            raise UserError(f"{field('layers')}: {unknown} are not among the run's layers {layers}")
        real = _read_real(root, entry["real"], lambda n, f=field: f(f"real.{n}")) if entry.get("real") else None
        if entry.get("probe"):
            _inside(root, entry["probe"]["features"], field("probe.features"))
        out.append(MapInfo(entry["id"], entry["name"], entry.get("about") or entry["name"], tuple(entry["layers"]),
                           tuple(entry["steps"]) if entry.get("steps") is not None else None, xy,
                           entry.get("probe"), real))
    return out


def _read_real(root: Path, entry: Mapping, field: Callable[[str], str]) -> RealSet:
    """A probe map's real points: positions float32 [count, 2], finite; classes integer [count], >= 0."""
    path = _inside(root, entry["file"], field("file"))
    lpath = _inside(root, entry["labels"], field("labels"))
    _inside(root, entry["features"], field("features"))
    count = int(entry["count"])
    try:
        xy = np.load(path, allow_pickle=False)
        labels = np.load(lpath, allow_pickle=False)
    except FileNotFoundError as e:
        raise UserError(f"{e.filename}: missing; the sidecar lists it in {field('file')}") from None
    except (ValueError, OSError) as e:
        raise UserError(f"{field('file')}: not a plain .npy array ({e})") from None
    if xy.dtype != np.float32 or xy.shape != (count, 2) or not np.isfinite(xy).all():
        raise UserError(f"{path}: expected finite float32 [{count}, 2], got {xy.dtype} {list(xy.shape)}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (count,) or (labels < 0).any():
        raise UserError(f"{lpath}: expected {count} class indices >= 0, got {labels.dtype} {list(labels.shape)}")
    return RealSet(np.array(xy), labels.astype(np.int64), entry["thumbnails"], entry["features"],
                   entry.get("source") or "real images")


def _load_array(path: Path, listed_as: str) -> np.ndarray:
    """A plain .npy array the sidecar lists (memory-mapped, never unpickled); errors name the file."""
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r")
    except FileNotFoundError:
        raise UserError(f"{path}: missing; the sidecar lists it as {listed_as}") from None
    except (ValueError, OSError) as e:
        raise UserError(f"{path}: not a plain .npy array ({e})") from None


def read_features(root: Path, relative: str, rows: int) -> np.ndarray:
    """A probe features file (float16 [rows, dims], no pickle) inside the run folder, as float32."""
    path = _inside(root, relative, "probe features")
    x = _load_array(path, "probe features")
    if x.ndim != 2 or len(x) != rows or x.dtype not in (np.float16, np.float32):
        raise UserError(f"{path}: expected float16 [{rows}, dims], got {x.dtype} {list(x.shape)}")
    return np.asarray(x, dtype=np.float32)


def _inside(root: Path, relative: str, field: str) -> Path:
    normal = Path(relative)
    if normal.is_absolute() or ".." in normal.parts or not relative.endswith(".npy"):
        raise UserError(f"{field}: {relative!r} must be a relative .npy path inside the run folder")
    return root / normal
