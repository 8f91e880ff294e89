"""Which classes does the student collapse? Per-class diversity and coverage, class galleries, seed correspondence.

Dash-free, from what a run's probe map stores (`visualizer.metrics.probe_map`: the probe features of
every model's final images, and of real images when the run has them); the scores are
`visualizer.metrics.diversity`'s, nothing is recomputed here but their use per class:

- `Collapse.ranking()`: per class, the student against the teacher (within-class spread ratio,
  coverage, recall, precision, density), and the student and the teacher against the real images;
  each score is the mean over disjoint seed sets of the class with its min and max (one set when the
  class is too small to split: then it is labelled descriptive). Ranked by the spread ratio, the most
  collapsed class first;
- `Collapse.gallery(c)`: the thumbnails of class c for teacher, student and real;
- `Collapse.correspondence()`: the student's image against the teacher's image of the same seed,
  among the seeds of its class (top-1 retrieval against chance), in pixels and in the probe's space,
  with the spread of top-1 over disjoint seed sets.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from visualizer.embeddings.maps import MapInfo, read_features
from visualizer.errors import UserError
from visualizer.inspection.maps import RunMaps
from visualizer.metrics import diversity
from visualizer.metrics.probe_map import read_images

MAX_SPLITS = 3            # disjoint seed sets per class: three keep ~20 seeds per set on the demo's 60 per class
SPLITS = 5                # disjoint seed sets for the seed correspondence over all classes
GALLERY = 24              # thumbnails per model in a class gallery
WHAT = ("Spread ratio below 1: the student's images of the class lie closer together than the teacher's in the "
        "probe's space (lost diversity); coverage and recall: the share of the teacher's (or real) images whose "
        "neighbourhood the student reaches. They describe sets in the probe's space, not what a person would judge; "
        "a range is min-max over disjoint seed sets of the class, and classes whose ranges overlap are not ranked "
        "apart.")


@dataclass(frozen=True)
class ProbeSets:
    """Probe features of one probe map, by set: 'teacher', 'student' (table rows, aligned seeds) and 'real'."""

    features: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    seeds: dict[str, np.ndarray]
    rows: dict[str, np.ndarray]          # table rows of teacher and student (real: indices into the real set)
    describe: str


def probe_map(maps: RunMaps) -> MapInfo | None:
    return next((m for m in maps.maps.values() if m.is_probe), None)


def roles(maps: RunMaps) -> tuple[str, str]:
    """(teacher key, student key) from the sidecar's roles; else the table's first two models."""
    models = maps.sidecar.get("models") or {}
    by_role = {m.get("role"): k for k, m in models.items()}
    order = list(dict.fromkeys(maps.table["model"]))
    teacher = by_role.get("teacher", order[0] if order else None)
    student = by_role.get("student", next((k for k in order if k != teacher), None))
    if teacher is None or student is None:
        raise UserError("the run needs a teacher and a student to compare")
    return teacher, student


def _scores(reference: np.ndarray, generated: np.ndarray, k: int) -> dict | None:
    """compare_sets on one class, with as many disjoint sets as its size allows (None when too small)."""
    n = min(len(reference), len(generated))
    if n < k + 2:
        return None
    splits = max(1, min(MAX_SPLITS, n // (2 * k)))
    kk = min(k, n // splits - 1)
    if kk < 1:
        return None
    out = diversity.compare_sets(reference, generated, splits=splits, k=kk)
    keep = ("spread_ratio", "coverage", "recall", "precision", "density")
    return {"n": out["n"], "splits": splits, "split_size": out["split_size"], "k": kk,
            "descriptive": splits < 2,
            **{name: {key: out["scores"][name][key] for key in ("mean", "min", "max", "all")} for name in keep}}


class Collapse:
    """The class ranking, galleries and seed correspondence of one run's probe map (cached; thread-safe)."""

    def __init__(self, maps: RunMaps, k: int = diversity.NEAREST_K):
        self.maps = maps
        self.k = k
        self._lock = threading.Lock()
        self._sets: ProbeSets | None = None
        self._ranking: dict | None = None
        self._correspondence: dict | None = None

    def why_not(self) -> str | None:
        if probe_map(self.maps) is None:
            return ("this run has no probe map: add one with `python -m visualizer embed --out RUN --probe digits|"
                    "network[:LAYER][@SIGMA] [--real PATH] --probe-only`")
        return None

    def sets(self) -> ProbeSets:
        with self._lock:
            if self._sets is None:
                self._sets = self._load()
            return self._sets

    def _load(self) -> ProbeSets:
        m = probe_map(self.maps)
        if m is None or self.maps.root is None:
            raise UserError(self.why_not() or "the run folder is unknown")
        table = self.maps.table
        features = read_features(self.maps.root, m.probe["features"], len(table))
        held = m.rows
        teacher, student = roles(self.maps)
        out: dict[str, dict] = {"features": {}, "labels": {}, "seeds": {}, "rows": {}}
        pair = {}
        for name, key in (("teacher", teacher), ("student", student)):
            part = table.iloc[held].assign(_row=held)
            pair[name] = part[part["model"] == key].drop_duplicates("seed").set_index("seed")
        common = np.intersect1d(pair["teacher"].index.to_numpy(), pair["student"].index.to_numpy())
        if not len(common):
            raise UserError("the probe map holds no seed of both teacher and student")
        for name, part in pair.items():
            part = part.loc[common]
            rows = part["_row"].to_numpy(np.int64)
            out["rows"][name] = rows
            out["features"][name] = features[rows]
            out["labels"][name] = part["class_label"].to_numpy(np.int64)
            out["seeds"][name] = common.astype(np.int64)
        if not np.array_equal(out["labels"]["teacher"], out["labels"]["student"]):
            raise UserError("teacher and student give some seeds different classes on the probe map")
        if m.real is not None:
            out["features"]["real"] = read_features(self.maps.root, m.real.features, len(m.real.labels))
            out["labels"]["real"] = m.real.labels
            out["rows"]["real"] = np.arange(len(m.real.labels))
        return ProbeSets(out["features"], out["labels"], out["seeds"], out["rows"], m.probe.get("describe", ""))

    # -- the class ranking ---------------------------------------------------------------------------
    def ranking(self) -> dict:
        """{"classes": [{class, student_vs_teacher, student_vs_real, teacher_vs_real}], "what": ..., ...},
        the most collapsed class (lowest student/teacher spread ratio) first."""
        with self._lock:
            if self._ranking is not None:
                return self._ranking
        s = self.sets()
        has_real = "real" in s.features
        rows = []
        for c in np.unique(s.labels["teacher"]):
            t, g = s.features["teacher"][s.labels["teacher"] == c], s.features["student"][s.labels["student"] == c]
            entry = {"class": int(c), "n": int(len(g)), "student_vs_teacher": _scores(t, g, self.k)}
            if has_real:
                r = s.features["real"][s.labels["real"] == c]
                entry["n_real"] = int(len(r))
                entry["student_vs_real"] = _scores(r, g, self.k)
                entry["teacher_vs_real"] = _scores(r, t, self.k)
            if entry["student_vs_teacher"] is not None:
                rows.append(entry)
        rows.sort(key=lambda e: e["student_vs_teacher"]["spread_ratio"]["mean"])
        result = {"classes": rows, "has_real": has_real, "probe": s.describe, "what": WHAT, "k": self.k}
        with self._lock:
            self._ranking = result
        return result

    # -- galleries -----------------------------------------------------------------------------------
    def gallery(self, label: int, limit: int = GALLERY) -> dict[str, list[tuple[str, str]]]:
        """{set: [(thumbnail path relative to the run folder, caption)]} of class `label`: teacher, student, real."""
        s = self.sets()
        table = self.maps.table
        out = {}
        for name in ("teacher", "student"):
            rows = s.rows[name][s.labels[name] == int(label)][:limit]
            out[name] = [(table.at[r, "image_path"], f"seed {int(table.at[r, 'seed'])}") for r in rows]
        m = probe_map(self.maps)
        if m.real is not None:
            idx = np.flatnonzero(m.real.labels == int(label))[:limit]
            out["real"] = [(m.real.thumbnail(i), f"real #{int(i)}") for i in idx]
        return out

    # -- seed correspondence -------------------------------------------------------------------------
    def correspondence(self, splits: int = SPLITS) -> dict:
        """Top-1 retrieval of the teacher's same-seed image among the seeds of the class, in pixels and in the
        probe's space: over all seeds (with chance), and its min-max over `splits` disjoint seed sets."""
        with self._lock:
            if self._correspondence is not None:
                return self._correspondence
        s = self.sets()
        root, table = self.maps.root, self.maps.table
        labels = s.labels["student"]
        pixels = {name: diversity.rmse_rows(read_images(root, table["image_path"].to_numpy()[s.rows[name]]))
                  for name in ("teacher", "student")}
        d = pixels["teacher"].shape[1]
        spaces = {"pixels": (pixels["student"] / np.sqrt(d), pixels["teacher"] / np.sqrt(d)),
                  "probe": (s.features["student"], s.features["teacher"])}
        parts = diversity.disjoint_splits(len(labels), splits) if len(labels) >= 2 * splits else []
        out = {"n": int(len(labels)), "splits": len(parts), "split_size": len(parts[0]) if parts else 0,
               "label": "top-1: the teacher's image of the same seed is the student's nearest among the teacher's "
                        "images of that class; chance = 1 / (seeds of the class)"}
        for space, (student, teacher) in spaces.items():
            whole = diversity.seed_correspondence(student, teacher, labels)
            per = [diversity.seed_correspondence(student[i], teacher[i], labels[i]) for i in parts]
            out[space] = {"top1": whole["top1"], "chance": whole["top1_chance"],
                          "same_seed": whole["same_seed_mean"], "other_seeds": whole["other_seeds_mean"],
                          "split_top1": diversity.summarise([p["top1"] for p in per]) if per else None,
                          "split_chance": float(np.mean([p["top1_chance"] for p in per])) if per else None}
        with self._lock:
            self._correspondence = out
        return out
