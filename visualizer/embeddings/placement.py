"""New points on an existing map, nearest neighbours where the map was made, and how far to trust the map.

A run's map is UMAP of its rows' concatenated PCA features (`pca/features.npy`, rows in the CSV's
order). Everything here works in that PCA space, never on the 2-D map:

- `MapSpace.neighbours(q, k)`: the k nearest training rows of new PCA features (or of a row);
- `MapSpace.place(q, k)`: a 2-D position for new features without refitting UMAP, as umap-learn's
  `transform` starts them: the weighted mean of the k nearest rows' map positions, with weights
  exp(-(d - d_min) / sigma) (sigma the mean distance to those neighbours); a query equal to a
  training row lands on it. An approximation (transform would go on to optimise), and said so;
- `MapSpace.trustworthiness(k)`: sklearn's trustworthiness of the map against the PCA space on a
  subsample: 1 when every 2-D neighbourhood holds only true neighbours, about 0.5 for a random map.

Every neighbour search goes through `search` (see `SEARCHES`): one at a time in the process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from sklearn.manifold import trustworthiness
from sklearn.neighbors import NearestNeighbors

from visualizer.embeddings.reduce import project_new
from visualizer.errors import UserError

# sklearn caps BLAS at one thread around a neighbour search (threadpoolctl) by setting the process's count and
# putting back the count it found. A search that starts inside another thread's finds the cap and, if it ends
# last, puts it back for good: the app's callbacks (threads) left BLAS on one thread for the rest of the process,
# which slowed later work and made an `embed` run in that process write another map (its PCA summed in another
# order). So searches run one at a time.
SEARCHES = threading.Lock()
T = TypeVar("T")


def search(fn: Callable[..., T], *args, **kwargs) -> T:
    """fn(*args, **kwargs), a sklearn call that searches neighbours, holding `SEARCHES`."""
    with SEARCHES:
        return fn(*args, **kwargs)


PLACEMENT = "weighted mean of the k nearest training rows' map positions in PCA space (no UMAP refit)"


@dataclass
class MapSpace:
    features: np.ndarray        # float32 [N, d]: PCA features of the map's rows, in the CSV's row order
    xy: np.ndarray              # float32 [N, 2]: their map positions
    basis_dir: Path
    _index: NearestNeighbors | None = field(default=None, repr=False)

    @classmethod
    def load(cls, run: Path | str, xy: np.ndarray) -> MapSpace:
        """The PCA space of the run folder `run` (or of the folder holding its embeddings.csv) and its map."""
        root = Path(run)
        root = root.parent if root.suffix == ".csv" else root
        path = root / "pca" / "features.npy"
        if not path.is_file():
            raise UserError(f"{path}: missing; placement and neighbours need the run's PCA features "
                            "(made by `python -m visualizer embed`)")
        features = np.load(path, allow_pickle=False, mmap_mode="r")
        xy = np.asarray(xy, dtype=np.float32)
        if features.ndim != 2 or len(features) != len(xy):
            raise UserError(f"{path}: {features.shape[0] if features.ndim else 0} rows for a map of {len(xy)} points")
        return cls(np.asarray(features, dtype=np.float32), xy, root / "pca")

    @property
    def index(self) -> NearestNeighbors:
        if self._index is None:
            self._index = NearestNeighbors().fit(self.features)
        return self._index

    def project(self, activations: dict) -> np.ndarray:
        """Layer outputs (raw or pooled, as `project_new` takes them) into this map's PCA space."""
        return project_new(activations, self.basis_dir)

    def neighbours(self, query: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(indices [M, k], Euclidean distances [M, k]) of the nearest training rows, nearest first."""
        q = np.atleast_2d(np.asarray(query, dtype=np.float32))
        if q.shape[1] != self.features.shape[1]:
            raise UserError(f"neighbours: queries have {q.shape[1]} features, the map's space {self.features.shape[1]}")
        k = max(1, min(int(k), len(self.features)))
        _, idx = search(self.index.kneighbors, q, n_neighbors=k)
        # Distances again, directly: the index's (|a|^2 + |b|^2 - 2ab in float32) leaves ~1e-3 where a query
        # equals a row, which would keep a training row from landing on its own position.
        dist = np.linalg.norm(self.features[idx] - q[:, None, :], axis=2)
        order = np.argsort(dist, axis=1, kind="stable")
        return np.take_along_axis(idx, order, 1), np.take_along_axis(dist, order, 1)

    def place(self, query: np.ndarray, k: int = 15) -> np.ndarray:
        """Map positions [M, 2] for new PCA features (see the module docstring)."""
        idx, dist = self.neighbours(query, k)
        sigma = np.maximum(dist.mean(1, keepdims=True), 1e-12)
        w = np.exp(-(dist - dist[:, :1]) / sigma)
        out = (w[..., None] * self.xy[idx]).sum(1) / w.sum(1, keepdims=True)
        exact = dist[:, 0] <= 1e-5 * np.maximum(1.0, np.abs(self.features).max())   # float32 rounding of one row
        out[exact] = self.xy[idx[exact, 0]]
        return out.astype(np.float32)

    def trustworthiness(self, k: int = 10, sample: int = 2000, seed: int = 0) -> float:
        """Trustworthiness of the 2-D map at k neighbours, on a random subsample of at most `sample` rows."""
        n = len(self.features)
        if n <= k + 1:
            raise UserError(f"trustworthiness needs more than {k + 1} rows, the map has {n}")
        rows = np.random.default_rng(seed).choice(n, size=min(n, sample), replace=False)
        return float(search(trustworthiness, self.features[rows], self.xy[rows],
                            n_neighbors=min(k, len(rows) // 2 - 1)))
