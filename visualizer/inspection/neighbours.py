"""A point's nearest neighbours where the map was made, and how far the 2-D map can be trusted (issue 17).

A run's map is UMAP of its rows' PCA features (`pca/features.npy`); closeness on the 2-D map is only
an approximation of closeness there. `NeighbourIndex(frame, root)` answers in the PCA space itself
(`visualizer.embeddings.placement.MapSpace`, loaded once per run, on first use) and measures the
approximation:

- `neighbours(row, k)`: the row itself (distance 0) and its k nearest other rows, nearest first, with
  Euclidean distances in PCA space; what the app's gallery shows and "generate from neighbours" averages;
- `edit_source(row, rows)`: those neighbours as an edit source, 'samples:S@C,...' (each re-traced at its
  own seed and class by the edited model, at full resolution; the clicked sample's own seed and class,
  the other model's row of it included, left out; a seed and class shown by both models counted once);
- `point_agreement(row, k)`: how many of the row's k nearest points on the 2-D map are among its k
  nearest in PCA space (one sample: descriptive; a random map would share k / (N - 1) of them);
- `trust(k)`: for the run, on a random sample of at most `TRUST_SAMPLE` rows, sklearn's trustworthiness
  of the map (1: every 2-D neighbourhood holds only true neighbours) and the mean neighbour agreement,
  each with a 95% bootstrap interval over the sampled points and a null (the same measure for the map's
  positions shuffled among the rows, a random map). Computed once per (run, k) and kept.

Dash-free: the app, notebooks and tests call it the same way. Thread-safe: the page's requests share one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import pairwise_distances
from sklearn.neighbors import NearestNeighbors

from visualizer.embeddings.placement import MapSpace, search
from visualizer.errors import UserError
from visualizer.inspection.edits import samples_source

MAX_K = 32              # neighbours a page may ask for
DEFAULT_K = 8
TRUST_SAMPLE = 2000     # rows the trust figure is computed on (an n x n rank matrix: 32 MB at 2000)
BOOTSTRAP = 1000        # resamples of the sampled points for the intervals
NULL_SHUFFLES = 5       # random maps (shuffled positions) for the null


@dataclass(frozen=True)
class Neighbour:
    """One row of the run near the query, `distance` its Euclidean distance in the run's PCA space."""

    row: int
    seed: int
    class_label: int
    class_name: str
    model: str
    step: int
    distance: float
    image_path: str
    sample_id: str


@dataclass(frozen=True)
class PointAgreement:
    """How many of one row's k nearest points on the map are among its k nearest in PCA space."""

    k: int
    shared: int
    null: float             # expected fraction for a random map: k / (N - 1)

    @property
    def fraction(self) -> float:
        return self.shared / self.k


@dataclass(frozen=True)
class MapTrust:
    """The run's map against its PCA space at k neighbours, on `n` sampled rows of `rows`."""

    k: int
    n: int
    rows: int
    trustworthiness: float          # sklearn.manifold.trustworthiness on the sample
    low: float                      # 95% bootstrap interval over the sampled points
    high: float
    null: float                     # mean trustworthiness of NULL_SHUFFLES random maps (shuffled positions)
    agreement: float                # mean fraction of a point's k map neighbours among its k PCA neighbours
    agreement_low: float
    agreement_high: float
    agreement_null: float           # the same for the random maps (about k / (n - 1))

    def reading(self) -> str:
        """One line: what the numbers say about trusting closeness on the map."""
        if self.trustworthiness >= 0.9:
            verdict = "points close on the map are mostly close in PCA space too; distances between far-apart " \
                      "groups are not kept (UMAP does not keep them)"
        elif self.trustworthiness >= 0.75:
            verdict = "neighbourhoods are partly kept: check a point's neighbours in the gallery before reading " \
                      "closeness off the map"
        else:
            verdict = "the map mixes neighbourhoods: trust the gallery's PCA-space neighbours, not closeness on " \
                      "the map"
        return verdict


class NeighbourIndex:
    """Nearest neighbours in one run's PCA space and the trust figure of its map; see the module docstring."""

    def __init__(self, frame: pd.DataFrame | None, root: Path | str | None):
        self.frame = frame
        self.root = None if root is None else Path(root)
        self._space: MapSpace | None = None
        self._why: str | None = None
        self._map_index: NearestNeighbors | None = None
        self._trust: dict[int, MapTrust] = {}
        self._lock = threading.Lock()
        self._trust_lock = threading.Lock()      # held through a trust computation (about a second at 2000 rows)

    # -- the run's space, loaded once ---------------------------------------------------------------------
    def space(self) -> MapSpace:
        """The run's PCA space and its map (loaded on first use); a UserError says why there is none."""
        with self._lock:
            if self._space is None and self._why is None:
                try:
                    if self.frame is None or self.root is None:
                        raise UserError("no embeddings loaded: neighbours need a run's table and PCA features")
                    xy = self.frame[["umap_x", "umap_y"]].to_numpy(dtype=np.float32)
                    self._space = MapSpace.load(self.root, xy)
                except UserError as e:
                    self._why = str(e)
            if self._space is None:
                raise UserError(self._why)
            return self._space

    def _map_nn(self) -> NearestNeighbors:
        space = self.space()
        with self._lock:
            if self._map_index is None:
                self._map_index = NearestNeighbors().fit(space.xy)
            return self._map_index

    def check_k(self, k) -> int:
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not float(k).is_integer() or not 1 <= k <= MAX_K:
            raise UserError(f"K: a whole number from 1 to {MAX_K}")
        n = len(self.space().features)
        if k > n - 1:
            raise UserError(f"K: the run has {n} rows, so at most {n - 1} neighbours")
        return int(k)

    def check_row(self, row) -> int:
        n = len(self.space().features)
        if isinstance(row, bool) or not isinstance(row, (int, np.integer)) or not 0 <= row < n:
            raise UserError(f"row: expected a row of the run (0 to {n - 1})")
        return int(row)

    # -- one point ------------------------------------------------------------------------------------------
    def neighbours(self, row: int, k: int = DEFAULT_K) -> list[Neighbour]:
        """The row itself and its k nearest other rows in PCA space, nearest first (k + 1 in all)."""
        space = self.space()
        row, k = self.check_row(row), self.check_k(k)
        idx, dist = space.neighbours(space.features[row], k + 1)
        order = sorted(zip(dist[0].tolist(), idx[0].tolist(), strict=True), key=lambda p: (p[0], p[1] != row))
        if row not in idx[0]:                   # rows with identical features: the query goes first anyway
            order = [(0.0, row), *order[:-1]]
        return [self._neighbour(i, 0.0 if i == row else d) for d, i in order]

    def _neighbour(self, i: int, distance: float) -> Neighbour:
        r = self.frame.iloc[i]
        return Neighbour(row=int(i), seed=int(r["seed"]), class_label=int(r["class_label"]),
                         class_name=str(r["class_name"]), model=str(r["model"]), step=int(r.get("step", 0)),
                         distance=float(distance), image_path=str(r["image_path"]), sample_id=str(r["sample_id"]))

    def edit_source(self, row: int, rows) -> str:
        """'samples:S@C,...' for the neighbours `rows` of `row`: each neighbour's own seed and class, each once,
        the clicked sample's own seed and class left out (a UserError when nothing is left)."""
        row = self.check_row(row)
        rows = [self.check_row(r) for r in rows]
        if len(rows) > MAX_K + 1:
            raise UserError(f"neighbours: at most {MAX_K}")
        f = self.frame
        own = (int(f.iloc[row]["seed"]), int(f.iloc[row]["class_label"]))
        pairs = [(int(f.iloc[r]["seed"]), int(f.iloc[r]["class_label"])) for r in rows]
        pairs = [p for p in dict.fromkeys(pairs) if p != own]
        if not pairs:
            raise UserError("the neighbours are all this sample itself (both models' rows of it): raise K")
        return samples_source(pairs)

    def point_agreement(self, row: int, k: int = DEFAULT_K) -> PointAgreement:
        """How many of the row's k nearest points on the map are among its k nearest in PCA space."""
        space = self.space()
        row, k = self.check_row(row), self.check_k(k)
        near_pca = search(space.index.kneighbors, space.features[row:row + 1], k + 1, return_distance=False)[0]
        near_map = search(self._map_nn().kneighbors, space.xy[row:row + 1], k + 1, return_distance=False)[0]
        near_pca, near_map = _others(near_pca, row, k), _others(near_map, row, k)
        return PointAgreement(k, len(set(near_pca) & set(near_map)), k / (len(space.features) - 1))

    # -- the run ----------------------------------------------------------------------------------------------
    def trust(self, k: int = DEFAULT_K, seed: int = 0) -> MapTrust:
        """The map's trust figure at k neighbours (computed once per k; see the module docstring)."""
        k = self.check_k(k)
        with self._lock:
            if k in self._trust:
                return self._trust[k]
        space = self.space()
        with self._trust_lock:       # one computation at a time (an n x n rank matrix each)
            with self._lock:
                if k in self._trust:
                    return self._trust[k]
            trust = map_trust(space.features, space.xy, k, TRUST_SAMPLE, seed)
            with self._lock:
                self._trust[k] = trust
            return trust


def _others(idx: np.ndarray, row: int, k: int) -> list[int]:
    return [int(i) for i in idx if i != row][:k]


def map_trust(features: np.ndarray, xy: np.ndarray, k: int, sample: int = TRUST_SAMPLE, seed: int = 0) -> MapTrust:
    """Trustworthiness and neighbour agreement of `xy` against `features` on at most `sample` random rows,
    with bootstrap intervals over the sampled points and a random-map null."""
    total = len(features)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(total, size=min(total, sample), replace=False))
    X, Y = np.asarray(features[rows], dtype=np.float64), np.asarray(xy[rows], dtype=np.float64)
    n = len(rows)
    if not k < n / 2:
        raise UserError(f"the trust figure at K = {k} needs more than {2 * k} rows, the run has {n}")
    rank = _rank_matrix(X)
    near_x = np.argsort(rank, axis=1)[:, :k]           # each point's k nearest in PCA space (itself excluded)

    def per_point(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        near_y = search(NearestNeighbors(n_neighbors=k).fit(positions).kneighbors, return_distance=False)
        return _trust_terms(rank, near_y, k), _agreement(near_x, near_y)

    t_i, a_i = per_point(Y)
    nulls = [per_point(Y[rng.permutation(n)]) for _ in range(NULL_SHUFFLES)]
    boot = rng.integers(0, n, size=(BOOTSTRAP, n))
    t_low, t_high = np.percentile(t_i[boot].mean(1), [2.5, 97.5])
    a_low, a_high = np.percentile(a_i[boot].mean(1), [2.5, 97.5])
    return MapTrust(k=k, n=n, rows=total, trustworthiness=float(t_i.mean()), low=float(t_low), high=float(t_high),
                    null=float(np.mean([t.mean() for t, _ in nulls])), agreement=float(a_i.mean()),
                    agreement_low=float(a_low), agreement_high=float(a_high),
                    agreement_null=float(np.mean([a.mean() for _, a in nulls])))


def _rank_matrix(X: np.ndarray) -> np.ndarray:
    """rank[i, j]: j's rank among i's neighbours in X (1 the nearest; i itself ranks last), as sklearn's
    trustworthiness builds it."""
    d = pairwise_distances(X)
    np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1)
    n = len(X)
    rank = np.empty((n, n), dtype=np.int32)
    rank[np.arange(n)[:, None], order] = np.arange(1, n + 1, dtype=np.int32)
    return rank


def _trust_terms(rank: np.ndarray, near_y: np.ndarray, k: int) -> np.ndarray:
    """Each point's term of sklearn's trustworthiness (their mean is the trustworthiness): 1 minus the
    normalised sum, over its k map neighbours that are not among its k PCA neighbours, of how far beyond
    k they rank in PCA space."""
    n = len(rank)
    excess = rank[np.arange(n)[:, None], near_y].astype(np.int64) - k
    penalty = np.where(excess > 0, excess, 0).sum(1)
    return 1.0 - penalty * (2.0 / (k * (2.0 * n - 3.0 * k - 1.0)))


def _agreement(near_x: np.ndarray, near_y: np.ndarray) -> np.ndarray:
    """Per point: the fraction of its k map neighbours that are among its k PCA neighbours."""
    k = near_x.shape[1]
    return np.array([len(set(a) & set(b)) / k for a, b in zip(near_x.tolist(), near_y.tolist(), strict=True)])
