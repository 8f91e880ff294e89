"""PCA + UMAP of the embedding pipeline at 100k points on this machine (performance issue, goal 4; 1M: issue 21).

Synthetic bottleneck-sized rows (3,072 float16 features, the ImageNet-64 bottleneck avg-pooled to
4x4) from 1,000 clusters on a 64-dimensional subspace, stored in a memory-mapped .npy as the
pipeline stores them, then the pipeline's own functions: randomized PCA fitted on a 20k-row
subsample, projection of every row in chunks, one UMAP fit (fixed random_state, so single-threaded).
Prints a table and writes benchmarks/out/bench_umap.json.

`--input pca` skips the activation store and the PCA: the rows are already PCA features
(`--pca-dims` columns, float32, the same 1,000 clusters), what UMAP sees in the pipeline. That is how
1,000,000 rows are measured (a 1M x 3,072 float16 store is 6 GB of disk; the PCA's cost is linear and
measured at 100k). `--progress` shows umap-learn's stage log and epoch bar on stderr, as `embed` does.

    python benchmarks/bench_umap.py [--rows 100000] [--features 3072]
    python benchmarks/bench_umap.py --rows 1000000 --input pca --progress --out benchmarks/out/bench_umap_1m.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from visualizer.embeddings.reduce import fit_layer, project_groups, run_umap


def _rss_peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=3072)
    parser.add_argument("--pca-dims", type=int, default=50)
    parser.add_argument("--backend", default="auto", choices=["auto", "umap-learn", "cuml"],
                        help="auto: RAPIDS cuML when installed with a GPU, else umap-learn")
    parser.add_argument("--input", default="store", choices=["store", "pca"],
                        help="store: float16 activations, PCA then UMAP; pca: synthetic PCA features, UMAP only")
    parser.add_argument("--progress", action="store_true", help="umap-learn's stage log and epoch bar on stderr")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/bench_umap.json"))
    args = parser.parse_args(argv)
    if args.input == "pca":
        return _umap_only(args)

    rng = np.random.default_rng(0)
    basis = rng.standard_normal((64, args.features)).astype(np.float32) / 8
    centres = rng.standard_normal((1000, 64)).astype(np.float32) * 3
    with tempfile.TemporaryDirectory() as tmp:
        store = np.lib.format.open_memmap(Path(tmp) / "store.npy", mode="w+", dtype=np.float16,
                                          shape=(args.rows, args.features))
        for lo in range(0, args.rows, 10_000):
            hi = min(lo + 10_000, args.rows)
            z = centres[rng.integers(0, 1000, hi - lo)] + rng.standard_normal((hi - lo, 64)).astype(np.float32)
            store[lo:hi] = z @ basis + 0.05 * rng.standard_normal((hi - lo, args.features)).astype(np.float32)
        store.flush()
        del store
        base = _rss_peak_gib()
        store = np.load(Path(tmp) / "store.npy", mmap_mode="r")
        groups = [(lambda rows: np.asarray(store[rows]), np.arange(args.rows))]
        times = {}
        t = time.perf_counter()
        layer = fit_layer("bottleneck", groups, args.pca_dims, 20_000, 0)
        times["PCA fit (20k-row subsample, randomized)"] = time.perf_counter() - t
        t = time.perf_counter()
        feats = project_groups(layer, groups)
        times["PCA projection of every row"] = time.perf_counter() - t
        t = time.perf_counter()
        backend = run_umap(feats, 15, 0.1, 0, args.backend, progress=args.progress)[2]
        times[f"UMAP fit, {backend} (n_neighbors 15, incl. numba compile)"] = time.perf_counter() - t
    peak = _rss_peak_gib()
    print(f"{args.rows:,} rows x {args.features} features (float16 memmap), PCA to {args.pca_dims}, "
          f"{os.cpu_count()} cpus")
    print(f"{'stage':48} {'seconds':>8}")
    for name, s in times.items():
        print(f"{name:48} {s:8.1f}")
    print(f"{'total':48} {sum(times.values()):8.1f}")
    print(f"peak resident memory {peak:.2f} GiB (before the reduction: {base:.2f} GiB)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": args.rows, "features": args.features, "seconds": times,
                                    "peak_rss_gib": peak, "backend": backend, "rss_before_gib": base,
                                    "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}}, indent=2))
    return 0


def _umap_only(args: argparse.Namespace) -> int:
    """UMAP of synthetic PCA features: 1,000 clusters in `--pca-dims` dimensions, float32."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((1000, args.pca_dims)).astype(np.float32) * 3
    feats = np.empty((args.rows, args.pca_dims), dtype=np.float32)
    for lo in range(0, args.rows, 100_000):
        hi = min(lo + 100_000, args.rows)
        feats[lo:hi] = centres[rng.integers(0, 1000, hi - lo)] + rng.standard_normal((hi - lo, args.pca_dims))
    base = _rss_peak_gib()
    t = time.perf_counter()
    xy, _, backend = run_umap(feats, 15, 0.1, 0, args.backend, progress=args.progress)
    seconds = time.perf_counter() - t
    peak = _rss_peak_gib()
    name = f"UMAP fit, {backend} (n_neighbors 15, low_memory, incl. numba compile)"
    print(f"{args.rows:,} rows x {args.pca_dims} PCA features (synthetic float32), {os.cpu_count()} cpus")
    print(f"{'stage':60} {'seconds':>8}")
    print(f"{name:60} {seconds:8.1f}")
    finite = bool(np.isfinite(xy).all())
    print(f"peak resident memory {peak:.2f} GiB (before the UMAP: {base:.2f} GiB); all coordinates finite: {finite}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": args.rows, "input": "pca", "pca_dims": args.pca_dims,
                                    "seconds": {name: seconds}, "peak_rss_gib": peak, "backend": backend,
                                    "rss_before_gib": base,
                                    "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
