"""Stored activations -> PCA per layer -> concatenated -> UMAP, fitted once on every model's rows together.

Choices, and why:
- PCA is fitted with `sklearn.decomposition.PCA(svd_solver='randomized')` on a subsample of at most
  `fit_rows` rows (all rows when there are fewer), drawn with the run's random state across all
  models and steps and read from the memmaps row group by row group; every row is then projected
  in chunks. The top 50 directions of ~20k rows match those of all rows closely, randomized SVD
  on that subsample takes seconds, and memory stays at fit_rows x features. IncrementalPCA would
  read everything, but runs a full SVD per chunk and gives up the randomized solver.
- Several layers: one PCA per layer, each layer's scores divided by the square root of its total
  explained variance, then concatenated. Every layer thus carries the same weight in UMAP's
  Euclidean distances, however many features or how much variance it has. With one layer the
  scaling changes nothing that UMAP sees.
- UMAP (umap-learn, fixed random_state, hence single-threaded and reproducible) runs once on all
  models' rows, so teacher and student points share one 2-D frame. RAPIDS cuML's GPU UMAP is used
  instead when it is installed and a GPU is visible (or when asked for): much faster at 100k+
  rows, but a different implementation, so the sidecar records which one made the map.
- The basis is saved as plain .npy arrays (components, mean, explained variance) and basis.json,
  never a pickle; `project_new` places new activations into the same PCA space.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from visualizer.embeddings.pooling import pool_rows
from visualizer.embeddings.store import atomic_write_text, to_store_dtype
from visualizer.errors import UserError

CHUNK_ROWS = 4096
MIN_ROWS = 4            # UMAP's spectral initialisation needs more points than its 2 dimensions + 1
BASIS_FILES = ("components", "mean", "explained_variance", "explained_variance_ratio")


@dataclass(frozen=True)
class LayerBasis:
    name: str
    mean: np.ndarray                  # float32 [features]
    components: np.ndarray            # float32 [k, features]
    explained_variance: np.ndarray    # float64 [k]
    explained_variance_ratio: np.ndarray
    scale: float                      # scores are divided by this (sqrt of total explained variance)

    def project(self, rows: np.ndarray) -> np.ndarray:
        """The one projection both the pipeline and `project_new` use: ((x - mean) @ components.T) / scale."""
        x = np.asarray(rows, dtype=np.float32)
        return ((x - self.mean) @ self.components.T / np.float32(self.scale)).astype(np.float32)


# Rows of one layer are addressed as (store, row) pairs; `read` returns float32 [len(rows), features].
RowReader = Callable[[Sequence[int]], np.ndarray]


def fit_layer(name: str, groups: Sequence[tuple[RowReader, np.ndarray]], dims: int, fit_rows: int,
              random_state: int) -> LayerBasis:
    """groups: (reader, row indices) per store, in the table's order."""
    from sklearn.decomposition import PCA

    sizes = np.array([len(rows) for _, rows in groups])
    total = int(sizes.sum())
    take = min(total, fit_rows)
    chosen = np.sort(np.random.default_rng(random_state).choice(total, size=take, replace=False))
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    parts = []
    for (read, rows), lo, hi in zip(groups, offsets[:-1], offsets[1:], strict=True):
        local = chosen[(chosen >= lo) & (chosen < hi)] - lo
        if len(local):
            parts.append(read(rows[local]))
    x = np.concatenate(parts).astype(np.float32)
    k = min(dims, x.shape[0], x.shape[1])
    pca = PCA(n_components=k, svd_solver="randomized", random_state=random_state).fit(x)
    variance = pca.explained_variance_.astype(np.float64)
    scale = float(np.sqrt(variance.sum())) or 1.0
    return LayerBasis(name, pca.mean_.astype(np.float32), pca.components_.astype(np.float32), variance,
                      pca.explained_variance_ratio_.astype(np.float64), scale)


def project_groups(basis: LayerBasis, groups: Sequence[tuple[RowReader, np.ndarray]],
                   progress: bool = False) -> np.ndarray:
    out = []
    chunks = [(read, rows[i:i + CHUNK_ROWS]) for read, rows in groups for i in range(0, len(rows), CHUNK_ROWS)]
    for read, rows in tqdm(chunks, desc=f"PCA {basis.name}", unit="chunk", disable=not progress, leave=False):
        out.append(basis.project(read(rows)))
    return np.concatenate(out)


UMAP_BACKENDS = ("auto", "umap-learn", "cuml")


def umap_backend(requested: str = "auto") -> str:
    """'cuml' when asked, or for 'auto' when RAPIDS cuML imports and a GPU is visible; else 'umap-learn'."""
    if requested not in UMAP_BACKENDS:
        raise UserError(f"unknown UMAP backend {requested!r}; choose from {', '.join(UMAP_BACKENDS)}")
    if requested == "umap-learn":
        return requested
    available = importlib.util.find_spec("cuml") is not None and torch.cuda.is_available()
    if requested == "cuml" and not available:
        raise UserError("UMAP backend 'cuml' needs RAPIDS cuML installed and a visible GPU")
    return "cuml" if available else "umap-learn"


def run_umap(features: np.ndarray, n_neighbors: int, min_dist: float, random_state: int,
             backend: str = "auto", progress: bool = False) -> tuple[np.ndarray, int, str]:
    """2-D UMAP of all rows: (xy, n_neighbors as used, capped below the row count; the backend that ran).

    `progress`: umap-learn's own stage log (nearest neighbours, fuzzy graph, spectral start, each
    epoch as a tqdm bar) goes to stderr, so a 1M-row fit that takes most of an hour shows where it is;
    cuML logs its stages at its verbose level. `low_memory=True` (umap-learn's default, said here so it
    stays): the neighbour search trades speed for a bounded graph, what keeps 1M rows under 8 GB.
    """
    backend = umap_backend(backend)
    n = features.shape[0]
    if n < MIN_ROWS:
        raise UserError(f"UMAP needs at least {MIN_ROWS} rows to embed, the run has {n}; add seeds or models")
    used = min(n_neighbors, n - 1)
    if backend == "cuml":
        from cuml.manifold import UMAP

        reducer = UMAP(n_components=2, n_neighbors=used, min_dist=min_dist, random_state=random_state,
                       metric="euclidean", output_type="numpy", verbose=5 if progress else False)
        xy = reducer.fit_transform(np.ascontiguousarray(features, dtype=np.float32))
        return np.asarray(xy, dtype=np.float64), used, backend
    import umap

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value .* overridden.*")
        reducer = umap.UMAP(n_components=2, n_neighbors=used, min_dist=min_dist, random_state=random_state,
                            metric="euclidean", low_memory=True, verbose=progress,
                            tqdm_kwds={"desc": "UMAP epochs", "unit": "epoch", "leave": False})
        xy = reducer.fit_transform(features)
    return np.asarray(xy, dtype=np.float64), used, backend


# -- the saved basis --------------------------------------------------------------------------------

def save_basis(bases: Sequence[LayerBasis], layers: Mapping[str, dict], basis_dir: Path, extra: dict) -> None:
    """`<basis_dir>/<layer>/{components,mean,explained_variance,explained_variance_ratio}.npy` + basis.json."""
    entries = []
    for b in bases:
        d = basis_dir / b.name
        d.mkdir(parents=True, exist_ok=True)
        for key in BASIS_FILES:
            np.save(d / f"{key}.npy", getattr(b, key), allow_pickle=False)
        entries.append({"name": b.name, "dir": b.name, "components": int(b.components.shape[0]),
                        "scale": b.scale, **layers[b.name]})
    atomic_write_text(basis_dir / "basis.json", json.dumps({"layers": entries, **extra}, indent=2))


def load_basis(basis_dir: Path | str) -> tuple[list[LayerBasis], list[dict]]:
    basis_dir = Path(basis_dir)
    meta_path = basis_dir / "basis.json"
    if not meta_path.is_file():
        raise UserError(f"{basis_dir}: no basis.json; expected the pca/ folder of an embed run")
    entries = json.loads(meta_path.read_text())["layers"]
    bases = []
    for e in entries:
        arrays = {key: np.load(basis_dir / e["dir"] / f"{key}.npy", allow_pickle=False) for key in BASIS_FILES}
        bases.append(LayerBasis(e["name"], scale=float(e["scale"]), **arrays))
    return bases, entries


def project_new(activations: Mapping[str, np.ndarray | torch.Tensor], basis_dir: Path | str) -> np.ndarray:
    """New samples into a run's PCA space: float32 [N, sum of components], columns in the run's layer order.

    `activations` maps each layer of the basis to either the stored form ([N, features], pooled
    and flattened) or the raw layer output ([N, C, H, W], e.g. from a forward hook), which is
    pooled as the run pooled it.
    """
    bases, entries = load_basis(basis_dir)
    missing = [e["name"] for e in entries if e["name"] not in activations]
    if missing:
        raise UserError(f"project_new: no activations for layer(s) {missing}; the basis in {basis_dir} needs "
                        f"{[e['name'] for e in entries]}")
    out = []
    for basis, e in zip(bases, entries, strict=True):
        x = activations[e["name"]]
        if isinstance(x, torch.Tensor):
            x = pool_rows(x, e["pool"]).cpu().numpy() if x.ndim > 2 else x.detach().float().cpu().numpy()
        else:
            x = np.asarray(x)
            if x.ndim > 2:
                x = pool_rows(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), e["pool"]).numpy()
        if x.ndim != 2 or x.shape[1] != basis.mean.shape[0]:
            raise UserError(f"project_new: layer {e['name']!r} needs [N, {basis.mean.shape[0]}] pooled rows or "
                            f"[N, {', '.join(map(str, e['shape']))}] raw outputs, got {list(x.shape)}")
        # Stored rows are float16; round the same way, so a stored sample lands where the run put it.
        out.append(basis.project(to_store_dtype(x)))
    return np.concatenate(out, axis=1)
