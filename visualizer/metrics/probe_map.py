"""A probe map of an embed run (`embed --probe`): every model's final images, and real images, in one probe's space.

The run's own maps embed activations at a sampler step; a probe map embeds what the models *made*.
Each (model, seed) of the run is represented by its final image (the run's thumbnail, the full-size
sample), put through one frozen probe (`visualizer.metrics.probe`: the demo's digit classifier, or
the teacher network at a chosen sigma), with real images (`--real`) through the same probe. Then PCA
(the pipeline's `fit_layer`, plain arrays) and one UMAP (the pipeline's `run_umap`) of all of them
together, so teacher, student and real share one frame.

Written into the run folder (no pickle anywhere):

- `probe/features.npy`: float16 [table rows, D], the probe features; NaN on rows the map does not hold
  (a seed's other steps: one row per model and seed, its last recorded step, carries the image);
- `probe/pca/`: the PCA basis (`embeddings.reduce.save_basis`), what placing a new image needs;
- `maps/probe.npy`: float32 [table rows, 2], NaN where not held, like every per-layer map;
- with real images: `probe/real_features.npy` (float16 [R, D]), `probe/real_labels.npy` (int64 [R]),
  `maps/probe.real.npy` (float32 [R, 2]) and a thumbnail each, `thumbs/real/<i>.png`;
- the sidecar's `maps` list gains (or replaces) the entry `probe` (`embeddings.sidecar.MapEntry` with its
  `probe` and `real` fields), checked against the schema before it is written.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from visualizer.embeddings.maps import MAPS_DIR, read_features
from visualizer.embeddings.placement import MapSpace
from visualizer.embeddings.reduce import fit_layer, load_basis, run_umap, save_basis
from visualizer.embeddings.schema import load_embeddings, sidecar_path
from visualizer.embeddings.sidecar import read_json_file, validate_sidecar
from visualizer.embeddings.store import atomic_write_text
from visualizer.errors import UserError
from visualizer.metrics import sample_sets

PROBE_ID = "probe"
PROBE_DIR = "probe"
REAL_THUMBS = "thumbs/real/{index}.png"
DEMO_ADAPTERS = ("edm-digits-32", "dmd2-digits-32")


def image_rows(frame) -> np.ndarray:
    """Table rows that carry a final image on the probe map: per (model, seed), its last recorded step."""
    order = frame.sort_values("step", kind="stable")
    return np.sort(order.drop_duplicates(["model", "seed"], keep="last").index.to_numpy())


def read_images(root: Path, paths) -> np.ndarray:
    """The thumbnails at `paths` (relative to `root`) as uint8 [N, H, W, 3]; all must have one size."""
    from PIL import Image

    out = []
    for rel in paths:
        path = root / rel
        try:
            with Image.open(path) as im:
                out.append(np.asarray(im.convert("RGB")))
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: the probe map needs the run's thumbnails ({e})") from None
    if len({a.shape for a in out}) != 1:
        raise UserError(f"{root}: thumbnails differ in size; the probe needs one image size")
    return np.stack(out)


def is_demo_run(sidecar: dict) -> bool:
    return all(m.get("adapter") in DEMO_ADAPTERS for m in sidecar.get("models", {}).values())


def choose_real(real: str | None, resolution: int, count: int | None, seed: int) -> sample_sets.SampleSet | None:
    """The real set: None, `digits` (the demo's held-out digits), or an .npz / class-folder tree (`load_real`),
    cut to `count` images drawn at random (seeded) when it holds more."""
    if real is None:
        return None
    if real == "digits":
        return sample_sets.held_out_digits(count)
    s = sample_sets.load_real(real, resolution=resolution)
    if count is not None and len(s) > count:
        keep = np.sort(np.random.default_rng(seed).choice(len(s), size=count, replace=False))
        s = s.subset(keep)
    return s


def make_probe(spec: str, run_root: Path, sidecar: dict, device: str | None):
    """The probe `spec` names (`probe.parse_probe`); a network probe loads the run's teacher."""
    from visualizer.metrics.probe import digit_probe, parse_probe
    from visualizer.metrics.runs import EmbedRun

    demo = is_demo_run(sidecar)
    if spec == "digits" or (spec == "auto" and demo):
        return digit_probe(device or "cpu")
    run = EmbedRun.open(run_root)
    teacher = run.open_adapter(run.model_with_role("teacher"), device)
    return parse_probe(spec, teacher, demo)


def add_probe_map(run: str | Path, probe: str = "auto", *, real: str | None = None, real_count: int | None = None,
                  device: str | None = None, pca_dims: int = 50, n_neighbors: int = 15, min_dist: float = 0.1,
                  random_state: int = 0, umap_backend: str = "auto", progress: bool = False) -> dict:
    """Adds (or replaces) the probe map of the embed run in `run` (a folder or its embeddings.csv); returns its
    sidecar entry with a `seconds` field beside it. See the module docstring for what is written."""
    start = time.perf_counter()
    path = Path(run)
    csv_path = path / "embeddings.csv" if path.is_dir() else path
    emb = load_embeddings(csv_path)
    root, frame = emb.root, emb.frame.reset_index(drop=True)
    side = sidecar_path(csv_path)
    if not side.is_file():
        raise UserError(f"{side}: missing; a probe map is listed in the sidecar `embed` writes")
    sidecar = read_json_file(side, "a JSON sidecar")
    rows = image_rows(frame)
    images = read_images(root, frame["image_path"].to_numpy()[rows])
    labels = frame["class_label"].to_numpy(np.int64)[rows]
    real_set = choose_real(real, images.shape[1], real_count, random_state)
    if real_set is not None:
        if real_set.images.shape[1:] != images.shape[1:]:
            raise UserError(f"real images are {list(real_set.images.shape[1:])}, the run's {list(images.shape[1:])}")
        classes = (sidecar.get("classes") or {}).get("num_classes")
        if classes and int(real_set.labels.max()) >= classes:
            raise UserError(f"real images: class {int(real_set.labels.max())} is not below the run's {classes} classes")
    extractor = make_probe(probe, root, sidecar, device)
    generated = extractor(images, labels.tolist())
    real_features = extractor(real_set.images, real_set.labels.tolist()) if real_set is not None else None
    probed = time.perf_counter() - start

    both = generated if real_features is None else np.concatenate([generated, real_features])
    basis = fit_layer(PROBE_ID, [(lambda r: both[np.asarray(r)], np.arange(len(both)))], pca_dims, 20_000,
                      random_state)
    xy_all, used, backend = run_umap(basis.project(both), n_neighbors, min_dist, random_state, umap_backend,
                                     progress=progress)
    xy_all = xy_all.astype(np.float32)

    (root / PROBE_DIR).mkdir(exist_ok=True)
    (root / MAPS_DIR).mkdir(exist_ok=True)
    full = np.full((len(frame), generated.shape[1]), np.nan, np.float16)
    full[rows] = generated.astype(np.float16)
    _save(root / PROBE_DIR / "features.npy", full)
    save_basis([basis], {PROBE_ID: {"pool": "none", "shape": [int(generated.shape[1])]}}, root / PROBE_DIR / "pca",
               {"random_state": random_state, "fit_rows": int(len(both)), "probe": extractor.describe()})
    xy = np.full((len(frame), 2), np.nan, np.float32)
    xy[rows] = xy_all[:len(rows)]
    _save(root / MAPS_DIR / f"{PROBE_ID}.npy", xy)
    models = ", ".join(dict.fromkeys(frame["model"].to_numpy()[rows]))
    entry = {
        "id": PROBE_ID, "name": f"probe: {_short(probe, extractor)} (final images)", "layers": [], "steps": None,
        "rows": int(len(rows)), "file": f"{MAPS_DIR}/{PROBE_ID}.npy",
        "about": f"UMAP of the final images through one probe ({extractor.describe()}; PCA to "
                 f"{basis.components.shape[0]} dims): {models}"
                 + (f", and {len(real_set):,} real images ({real_set.source})" if real_set is not None else ""),
        "probe": {"spec": probe, "describe": extractor.describe(), "features": f"{PROBE_DIR}/features.npy",
                  "dims": int(generated.shape[1])},
    }
    if real_set is not None:
        _save(root / PROBE_DIR / "real_features.npy", real_features.astype(np.float16))
        _save(root / PROBE_DIR / "real_labels.npy", real_set.labels.astype(np.int64))
        _save(root / MAPS_DIR / f"{PROBE_ID}.real.npy", xy_all[len(rows):])
        _save_thumbnails(root, real_set.images)
        entry["real"] = {"file": f"{MAPS_DIR}/{PROBE_ID}.real.npy", "labels": f"{PROBE_DIR}/real_labels.npy",
                         "features": f"{PROBE_DIR}/real_features.npy", "thumbnails": REAL_THUMBS,
                         "count": int(len(real_set)), "source": real_set.source[:4000]}
    updated = {**sidecar, "maps": [e for e in sidecar.get("maps") or [] if e.get("id") != PROBE_ID] + [entry]}
    validate_sidecar(updated, side)
    atomic_write_text(side, json.dumps(updated, indent=2))
    return {**entry, "umap": {"n_neighbors": used, "backend": backend},
            "seconds": {"probe": round(probed, 2), "total": round(time.perf_counter() - start, 2)}}


def _short(spec: str, extractor) -> str:
    layer = getattr(extractor, "layer", None)
    if layer is None:
        return "digit classifier" if "digit" in extractor.describe() else extractor.describe()[:60]
    return f"teacher {layer} @ σ {extractor.sigma:g}"


def _save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    np.save(tmp, array, allow_pickle=False)
    os.replace(tmp, path)


def _save_thumbnails(root: Path, images: np.ndarray) -> None:
    from PIL import Image

    folder = root / Path(REAL_THUMBS).parent
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        target = root / REAL_THUMBS.format(index=i)
        tmp = target.with_name(f".{target.name}.tmp")
        Image.fromarray(image).save(tmp, format="PNG", optimize=True)
        os.replace(tmp, target)


def probe_space(run: str | Path) -> tuple[MapSpace, dict]:
    """The probe map's placement space (`embeddings.placement.MapSpace`): its rows' probe features (the run's
    final images, then the real images) projected with the saved basis, and their positions; plus the map's
    sidecar entry. Arrays only, as stored: no probe runs, no refit."""
    path = Path(run)
    emb = load_embeddings(path / "embeddings.csv" if path.is_dir() else path)
    m = next((m for m in emb.maps if m.is_probe), None)
    if m is None:
        raise UserError(f"{emb.csv_path}: no probe map (make one with `embed --probe ... --probe-only`)")
    basis = load_basis(emb.root / PROBE_DIR / "pca")[0][0]
    features, xy = read_features(emb.root, m.probe["features"], len(emb.frame))[m.rows], m.xy[m.rows]
    if m.real is not None:
        features = np.concatenate([features, read_features(emb.root, m.real.features, len(m.real.labels))])
        xy = np.concatenate([xy, m.real.xy])
    entry = next(e for e in emb.sidecar["maps"] if e["id"] == m.id)
    return MapSpace(basis.project(features), xy, emb.root / PROBE_DIR / "pca"), entry


def place_images(run: str | Path, images: np.ndarray, labels, *, device: str | None = None, k: int = 15) -> np.ndarray:
    """Positions [N, 2] on the run's probe map for new images (uint8 [N, H, W, C]): through the map's own probe,
    rounded to float16 as the stored features are, projected with the saved basis, and placed from the nearest
    rows as umap-learn's transform initialises them (`MapSpace.place`; no refit). An image the map holds lands
    on its own point."""
    space, entry = probe_space(run)
    path = Path(run)
    root = path if path.is_dir() else path.parent
    extractor = make_probe(entry["probe"]["spec"], root, read_json_file(root / "embeddings.json", "a JSON sidecar"),
                           device)
    feats = extractor(np.asarray(images), list(labels)).astype(np.float16).astype(np.float32)
    return space.place(load_basis(space.basis_dir)[0][0].project(feats), k)
