"""The maps a run holds, and a teacher trajectory placed on any of them: Dash-free, cached.

`RunMaps(embeddings)` lists the run's maps (`visualizer.embeddings.maps`: the main one, then any per-layer
and per-step maps) and answers, for one of them:

- `frame(map_id)`: the table with that map's coordinates (rows the map does not hold dropped, row
  numbers kept), for drawing;
- `place(map_id, trajectory)`: where each step of a trajectory lands. A trajectory records the run's
  layers at every step, pooled as the run pooled them (`Inspector.map_pools`); each step is projected
  into the run's PCA space (`embeddings.reduce.project_new`, the saved basis, no refit), restricted
  to the map's layer columns, and placed from its nearest rows of that map in that space
  (`embeddings.placement.MapSpace.place`: umap-learn's transform initialisation, no UMAP refit).

The placement is an approximation and says how far to trust each step: its distance to its nearest
map row beside the map's own typical nearest-neighbour distance (`far`: beyond the 95th percentile of
the rows' distances to their nearest other row); a step within a thousandth of that of a row is
that row (float rounding of another batch shape) and lands on it. A main map made from the first step only has no
rows near the teacher's late steps: those land by their nearest rows, flagged far, not by where a
refit would put them.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from visualizer.embeddings.maps import MAIN, MapInfo, column_blocks, main_map
from visualizer.embeddings.placement import MapSpace
from visualizer.embeddings.reduce import project_new
from visualizer.errors import UserError
from visualizer.inspection.results import Trajectory

FAR_QUANTILE = 0.95
SAME_ROW = 1e-3           # a step this close to a row (times the map's typical spacing) is that row
REFERENCE_ROWS = 2000      # rows whose nearest-neighbour distances give a map's typical spacing


@dataclass(frozen=True)
class Placed:
    """A trajectory on one map: positions, nearest-row distances and which steps lie beyond the map's data."""

    map_id: str
    xy: np.ndarray            # float32 [steps, 2]
    distance: np.ndarray      # float32 [steps]: to the nearest map row, in the map's PCA space
    typical: float            # the map rows' 95th percentile distance to their nearest other row
    nearest: np.ndarray       # int [steps]: table row of each step's nearest map row

    @property
    def far(self) -> np.ndarray:
        return self.distance > self.typical


class RunMaps:
    """The maps of one embed run (`embeddings.maps` MapInfo list), their frames, and trajectory placement."""

    def __init__(self, frame: pd.DataFrame, maps: list[MapInfo], root: Path | None, sidecar: dict | None = None):
        self.table = frame
        self.maps = {m.id: m for m in maps or [main_map(frame, list((sidecar or {}).get("layers") or []))]}
        self.root = root
        self.sidecar = sidecar or {}
        self._frames: dict[str, pd.DataFrame] = {}
        self._spaces: dict[str, tuple[MapSpace, slice, float]] = {}
        self._placed: dict[tuple, Placed] = {}
        self._lock = threading.Lock()
        self._features: np.ndarray | None = None

    @classmethod
    def of(cls, embeddings) -> RunMaps:
        """From a loaded `embeddings.schema.Embeddings` (its frame, maps and folder)."""
        frame = embeddings.frame.reset_index(drop=True)
        return cls(frame, list(embeddings.maps), embeddings.root, embeddings.sidecar)

    # -- what the page lists -------------------------------------------------------------------------
    def ids(self) -> list[str]:
        return list(self.maps)

    def get(self, map_id: str | None) -> MapInfo:
        return self.maps.get(map_id or MAIN) or self.maps[MAIN]

    def frame(self, map_id: str | None) -> pd.DataFrame:
        """The table with this map's coordinates in umap_x/umap_y; rows it does not hold are dropped."""
        m = self.get(map_id)
        if m.id == MAIN:
            return self.table
        with self._lock:
            if m.id not in self._frames:
                rows = m.rows
                part = self.table.iloc[rows].copy()
                part["umap_x"], part["umap_y"] = m.xy[rows, 0], m.xy[rows, 1]
                self._frames[m.id] = part
            return self._frames[m.id]

    # -- placement -----------------------------------------------------------------------------------
    @property
    def basis_dir(self) -> Path | None:
        return None if self.root is None else self.root / "pca"

    def pools(self) -> dict[str, str]:
        """{layer: pooling} the run's PCA space was made from (pca/basis.json, written with the sidecar)."""
        entries = self._basis_entries()
        return {e["name"]: e["pool"] for e in entries} if entries else {}

    def _basis_entries(self) -> list[dict] | None:
        path = None if self.basis_dir is None else self.basis_dir / "basis.json"
        if path is None or not path.is_file() or not (self.basis_dir / "features.npy").is_file():
            return None
        try:
            entries = json.loads(path.read_text())["layers"]
            return [{"name": str(e["name"]), "pool": str(e["pool"]), "components": int(e["components"])}
                    for e in entries]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def why_not(self) -> str | None:
        """None when trajectories can be placed; else why not, in words."""
        if self._basis_entries() is None:
            return "the run has no PCA basis (pca/basis.json, pca/features.npy): trajectories cannot be placed"
        return None

    def _space(self, map_id: str) -> tuple[MapSpace, slice, float]:
        with self._lock:
            if map_id not in self._spaces:
                entries = self._basis_entries()
                if entries is None:
                    raise UserError(self.why_not())
                if self._features is None:
                    self._features = np.load(self.basis_dir / "features.npy", allow_pickle=False, mmap_mode="r")
                    if len(self._features) != len(self.table):
                        raise UserError(f"{self.basis_dir / 'features.npy'}: {len(self._features)} rows for a table "
                                        f"of {len(self.table)}")
                m = self.get(map_id)
                blocks = column_blocks({e["name"]: e["components"] for e in entries})
                cols = slice(0, sum(e["components"] for e in entries)) if m.id == MAIN else blocks[m.layers[0]]
                rows = m.rows
                features = np.asarray(self._features[rows][:, cols], dtype=np.float32)
                space = MapSpace(features, m.xy[rows], self.basis_dir)
                self._spaces[map_id] = (space, cols, self._typical(space))
            return self._spaces[map_id]

    @staticmethod
    def _typical(space: MapSpace) -> float:
        n = len(space.features)
        if n < 2:
            return float("inf")
        pick = np.random.default_rng(0).choice(n, size=min(n, REFERENCE_ROWS), replace=False)
        _, dist = space.neighbours(space.features[pick], k=2)
        return float(np.quantile(dist[:, 1], FAR_QUANTILE))

    def place(self, map_id: str, trajectory: Trajectory, key: tuple = ()) -> Placed:
        """Each step of `trajectory` on map `map_id` (cached under `key`, the trajectory's own cache key)."""
        m = self.get(map_id)
        if m.is_probe:
            raise UserError("the probe map embeds final images through the probe, not the run's layers: the "
                            "teacher's steps are placed on the main and per-layer maps")
        cache_key = (m.id, key) if key else None
        if cache_key is not None and cache_key in self._placed:
            return self._placed[cache_key]
        space, cols, typical = self._space(m.id)
        pools = self.pools()
        missing = [n for n in pools if n not in trajectory.pooled]
        if missing:
            raise UserError(f"the trajectory did not record the run's layer(s) {missing}")
        query = project_new({n: trajectory.pooled[n] for n in pools}, self.basis_dir)[:, cols]
        xy = space.place(query)
        idx, dist = space.neighbours(query, k=1)
        # A step that is a map row up to float rounding (another batch shape gives other last bits) lands on
        # it, as a training row does in MapSpace.place.
        same = dist[:, 0] <= SAME_ROW * typical
        xy[same] = space.xy[idx[same, 0]]
        placed = Placed(m.id, xy, dist[:, 0].astype(np.float32), typical, m.rows[idx[:, 0]])
        if cache_key is not None:
            with self._lock:
                if len(self._placed) > 256:
                    self._placed.clear()
                self._placed[cache_key] = placed
        return placed
