"""Quality, diversity and coverage of one sample set against another, in a probe's feature space.

Rows are feature vectors [N, D] of images (a probe's features: `visualizer.metrics.probe`); a
*reference* set (real images, or the teacher's samples) is compared with a *generated* one (the
student's samples). What each score can and cannot show:

- precision / recall (Kynkaanniemi et al. 2019): the share of generated rows inside the reference's
  k-NN balls, and of reference rows inside the generated set's; recall falls when the student loses
  modes, but both are swayed by a single outlier that inflates a ball;
- density / coverage (Naeem et al. 2020): density counts how many reference balls hold each generated
  row (it can exceed 1), coverage the share of reference balls that hold any; coverage is the robust
  mode-dropping score. Computed by `prdc`, the authors' package;
- Frechet distance: the Gaussian summary of both sets; biased upward at small n and dependent on n, so
  it is compared only at equal counts, with its spread over disjoint seed sets;
- within-class spread: mean distance of a class's rows to their centroid; student / teacher below 1 is
  the signature of lost diversity (a ratio of two estimates, so it carries an interval too).

Intervals come from *disjoint* splits of the rows (seed sets), never from a bootstrap: a resample that
repeats a row puts it at distance 0 from its copy, which fills k-NN balls and biases every score here.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Mapping, Sequence

import joblib
import numpy as np

from visualizer.errors import UserError

NEAREST_K = 5            # Naeem et al.'s k for density/coverage; Kynkaanniemi et al. use 3 for P/R
MAX_ROWS = 20_000        # the k-NN balls need an N x M distance matrix: 20k x 20k float32 is 1.6 GB


def _rows(x, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 2 or not len(a):
        raise UserError(f"{what}: expected a non-empty feature matrix [N, D], got shape {a.shape}")
    if len(a) > MAX_ROWS:
        raise UserError(f"{what}: {len(a)} rows; at most {MAX_ROWS} (split the set, or subsample it)")
    if not np.isfinite(a).all():
        raise UserError(f"{what}: holds NaN or infinite values")
    return a


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between two feature sets [N, D].

    With centred rows A [n, D] and B [m, D], S_a = A'A / (n-1) and S_b = B'B / (m-1), and the
    non-zero eigenvalues of S_a S_b are the squared singular values of A B' / sqrt((n-1)(m-1)); so
    tr (S_a S_b)^(1/2) is the nuclear norm of that n x m matrix, exact, with no D x D matrix. When D
    is smaller than the sets it is taken from the covariances instead, as tr sqrt(sqrt(S_a) S_b
    sqrt(S_a)) (symmetric, so eigh suffices). Probe features often have more dimensions than a seed
    set has rows, where the covariance form would cost minutes per call for the same number.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    A, B = a - mu_a, b - mu_b
    n, m = len(a) - 1, len(b) - 1
    if a.shape[1] <= min(n, m):
        s_a, s_b = A.T @ A / n, B.T @ B / m
        w, v = np.linalg.eigh(s_a)
        sqrt_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(sqrt_a @ s_b @ sqrt_a), 0, None)).sum()
    else:
        tr_sqrt = np.linalg.svd(A @ B.T, compute_uv=False).sum() / np.sqrt(n * m)
    return float(((mu_a - mu_b) ** 2).sum() + (A ** 2).sum() / n + (B ** 2).sum() / m - 2 * tr_sqrt)


_QUIET = threading.Lock()


def prdc(reference: np.ndarray, generated: np.ndarray, k: int = NEAREST_K) -> dict[str, float]:
    """Precision, recall, density and coverage of `generated` against `reference` (k-NN balls of size k)."""
    from prdc import compute_prdc  # the authors' implementation (numpy + scikit-learn)

    ref, gen = _rows(reference, "reference"), _rows(generated, "generated")
    if ref.shape[1] != gen.shape[1]:
        raise UserError(f"reference has {ref.shape[1]} features, generated {gen.shape[1]}")
    if not 1 <= k < min(len(ref), len(gen)):
        raise UserError(f"k = {k} needs more than k rows in each set ({len(ref)} and {len(gen)})")
    # prdc asks sklearn for its distance matrices with n_jobs=8: joblib's workers cost ~0.1 s a call (2.4 s the
    # first) against 3 ms for 20 x 20 rows and 0.19 s against 0.72 s for 2,000 x 2,000 (numpy's BLAS threads
    # anyway); joblib's sequential backend keeps it in this thread. Same numbers either way.
    # prdc prints its set sizes; silencing it swaps the process's stdout, so calls from threads (the app's
    # jobs) take turns: two interleaved swaps would leave stdout pointing at the later one's buffer for good.
    with _QUIET, contextlib.redirect_stdout(io.StringIO()), joblib.parallel_config(backend="sequential"):
        out = compute_prdc(ref, gen, nearest_k=int(k))
    return {name: float(v) for name, v in out.items()}


def spread(x: np.ndarray) -> float:
    """Mean Euclidean distance of the rows to their centroid."""
    x = np.asarray(x, np.float64)
    return float(np.linalg.norm(x - x.mean(0), axis=1).mean())


def disjoint_splits(n: int, splits: int, seed: int = 0) -> list[np.ndarray]:
    """`splits` disjoint index sets of equal size (n // splits), drawn once with a fixed seed."""
    if splits < 1 or n // splits < 2:
        raise UserError(f"{n} rows cannot make {splits} disjoint splits of at least 2")
    order = np.random.default_rng(seed).permutation(n)
    size = n // splits
    return [np.sort(order[i * size:(i + 1) * size]) for i in range(splits)]


def summarise(values: Sequence[float]) -> dict:
    """Mean, standard deviation, min and max of one score over disjoint splits (the values kept)."""
    v = np.asarray(values, np.float64)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else None,
            "min": float(v.min()), "max": float(v.max()), "splits": [float(x) for x in v]}


def compare_sets(reference: np.ndarray, generated: np.ndarray, *, splits: int = 5, k: int = NEAREST_K,
                 seed: int = 0) -> dict:
    """Every score of this module for `generated` against `reference` over `splits` disjoint, equal-sized
    splits of each (mean, sd, min, max: the estimate and its spread at the split's size) and on the whole
    sets ('all', at full size: the k-NN scores and the Frechet distance depend on n, so 'all' is not
    comparable with the splits). Both sets are cut to the same size first."""
    ref, gen = _rows(reference, "reference"), _rows(generated, "generated")
    n = min(len(ref), len(gen))
    ref, gen = ref[:n], gen[:n]
    parts = list(zip(disjoint_splits(n, splits, seed), disjoint_splits(n, splits, seed + 1), strict=True))
    per_split = [{**prdc(ref[i], gen[j], k), "frechet": frechet_distance(ref[i], gen[j]),
                  "spread_ratio": spread(gen[j]) / max(spread(ref[i]), 1e-12)} for i, j in parts]
    whole = {**prdc(ref, gen, k), "frechet": frechet_distance(ref, gen),
             "spread_ratio": spread(gen) / max(spread(ref), 1e-12)}
    return {"n": n, "split_size": n // splits, "k": k,
            "scores": {name: {"all": whole[name], **summarise([p[name] for p in per_split])} for name in whole},
            "interval": f"spread over {splits} disjoint splits of {n // splits} rows (no resampling with "
                        "replacement: a repeated row would sit in its own k-NN ball)"}


def per_class(reference: np.ndarray, ref_labels: Sequence[int], generated: np.ndarray, gen_labels: Sequence[int],
              *, k: int = NEAREST_K, min_rows: int = 10) -> dict[int, dict]:
    """Per class present in both sets: coverage, recall, density, precision and the within-class spread
    ratio (generated / reference), ranked by spread ratio, lowest (most collapsed) first. Classes with
    fewer than `min_rows` rows in either set are left out (k-NN balls need neighbours)."""
    ref, gen = _rows(reference, "reference"), _rows(generated, "generated")
    rl, gl = np.asarray(ref_labels).reshape(-1), np.asarray(gen_labels).reshape(-1)
    if len(rl) != len(ref) or len(gl) != len(gen):
        raise UserError("one class label per row is needed in both sets")
    out = {}
    for c in sorted(set(rl.tolist()) & set(gl.tolist())):
        r, g = ref[rl == c], gen[gl == c]
        n = min(len(r), len(g))
        if n < max(min_rows, k + 2):
            continue
        r, g = r[:n], g[:n]
        out[int(c)] = {"n": n, **prdc(r, g, min(k, n - 1)), "spread_ratio": spread(g) / max(spread(r), 1e-12)}
    return dict(sorted(out.items(), key=lambda kv: kv[1]["spread_ratio"]))


def seed_correspondence(student: np.ndarray, teacher: np.ndarray, labels: Sequence[int]) -> dict:
    """Does the student's output for seed s resemble the teacher's for the same seed? Row i of both sets
    is one seed. Per seed: the distance to the teacher's same-seed output, its rank among the teacher's
    outputs for the seeds of its pool (rank 1 = the same seed is nearest), and the mean distance to the
    pool's other seeds. The pool is the seeds of the same class when every class holds two or more,
    else all seeds (one seed per class, as 1,000 seeds of 1,000 classes give, would make rank 1 certain).
    Overall: the top-1 rate against the 1 / (pool size) that chance gives."""
    from scipy.spatial.distance import cdist

    s, t = np.asarray(student, np.float64), np.asarray(teacher, np.float64)
    lab = np.asarray(labels).reshape(-1)
    if s.shape != t.shape or s.ndim != 2 or len(lab) != len(s):
        raise UserError(f"student {s.shape}, teacher {t.shape} and {len(lab)} labels must match row for row")
    if len(s) < 2:
        raise UserError("seed correspondence needs at least two seeds")
    classes, counts = np.unique(lab, return_counts=True)
    by_class = bool(counts.min() >= 2)
    pools = [np.flatnonzero(lab == c) for c in classes] if by_class else [np.arange(len(s))]
    same = np.linalg.norm(s - t, axis=1)
    ranks, others, chance = np.zeros(len(s), int), np.zeros(len(s)), np.zeros(len(s))
    for idx in pools:
        d = cdist(s[idx], t[idx])                                         # [i, j]: student i vs teacher j
        ranks[idx] = (d < d.diagonal()[:, None]).sum(1) + 1
        others[idx] = (d.sum(1) - d.diagonal()) / (len(idx) - 1)
        chance[idx] = 1.0 / len(idx)
    return {"same_seed": same.tolist(), "rank": ranks.tolist(), "other_seeds": others.tolist(),
            "pool": "class" if by_class else "all seeds",
            "top1": float((ranks == 1).mean()), "top1_chance": float(chance.mean()),
            "same_seed_mean": float(same.mean()), "other_seeds_mean": float(others.mean()),
            "label": "per seed: descriptive; top-1 against chance over all seeds"}


def rmse_rows(images: np.ndarray) -> np.ndarray:
    """Images [N, ...] (uint8 or float in [-1, 1]) as float rows in [-1, 1], for pixel-space distances
    (RMSE = distance / sqrt(D))."""
    x = np.asarray(images)
    x = x.astype(np.float64) / 127.5 - 1 if x.dtype == np.uint8 else x.astype(np.float64)
    return x.reshape(len(x), -1)


def report(sets: Mapping[str, np.ndarray], labels: Mapping[str, Sequence[int]], *, reference: str,
           splits: int = 5, k: int = NEAREST_K) -> dict:
    """`compare_sets` and `per_class` of every set in `sets` against the one named `reference`."""
    if reference not in sets:
        raise UserError(f"reference set {reference!r} is not among {sorted(sets)}")
    return {name: {"overall": compare_sets(sets[reference], x, splits=splits, k=k),
                   "per_class": per_class(sets[reference], labels[reference], x, labels[name], k=k)}
            for name, x in sets.items() if name != reference}
