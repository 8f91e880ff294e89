"""The probe map on the demo (issue 16): what `embed --probe --probe-only` and the class-collapse engine cost.

    python benchmarks/bench_collapse.py

On a copy of the shipped demo run, on the CPU: the probe map step (digit classifier on 1,200 final images and
200 held-out digits, PCA, UMAP; numba's first compile included, as a fresh `embed` pays it), then
`visualizer.inspection.collapse.Collapse` on the shipped run: loading the probe features, the class ranking
(10 classes, student vs teacher and both vs real, over disjoint seed sets), the seed correspondence (reading
the 1,200 thumbnails), and a class gallery. Prints one line per case with the load average it ran under.
"""

import os
import shutil
import tempfile
import time
from pathlib import Path

from visualizer.adapters.demo import DEMO_EMBEDDINGS
from visualizer.embeddings.schema import load_embeddings
from visualizer.inspection.collapse import Collapse
from visualizer.inspection.maps import RunMaps
from visualizer.metrics.probe_map import add_probe_map


def timed(name: str, fn):
    start = time.perf_counter()
    out = fn()
    print(f"{name}: {time.perf_counter() - start:.2f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(DEMO_EMBEDDINGS.parent, run)
        timed("embed --probe digits --real digits --real-count 200 --probe-only",
              lambda: add_probe_map(run, "digits", real="digits", real_count=200))
    engine = Collapse(RunMaps.of(load_embeddings(DEMO_EMBEDDINGS)))
    timed("probe features loaded", engine.sets)
    timed("class ranking", engine.ranking)
    timed("seed correspondence", engine.correspondence)
    timed("one class's galleries", lambda: engine.gallery(0))


if __name__ == "__main__":
    main()
