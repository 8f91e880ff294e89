"""Tiny random teacher/student pairs and synthetic embeddings for the app tests (`from app_files import write_pair`).

A plain module beside conftest.py, like nets.py (tests/ is on sys.path under pytest), so its name
cannot collide with another conftest's.

Everything is written in the real formats (an EDM pickle for the teacher, a DMD2 checkpoint folder
for the student, the embeddings CSV + sidecar from the real pipeline) into a temporary folder that
is removed at exit, so the app runs exactly the code paths it runs on the real files. The student
is the teacher with a small perturbation, so their activations are alike but not equal.
"""

from __future__ import annotations

from pathlib import Path

import torch
from nets import TINY_KWARGS

from visualizer.models.networks import EDMPrecond


def random_net(seed: int, scale: float = 0.05, base: EDMPrecond | None = None) -> EDMPrecond:
    """A tiny net with every parameter nudged (output convs start at zero, which would make D(x) = c_skip x)."""
    net = EDMPrecond(**TINY_KWARGS)
    if base is not None:
        net.load_state_dict(base.state_dict())
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return net.eval()


def write_pair(folder: Path, teacher_seed: int = 0, student_seed: int = 1) -> tuple[Path, Path]:
    """(teacher .pkl, student checkpoint folder) in the official formats."""
    from visualizer.checkpoints.edm_pickle_writer import write_edm_pickle

    folder.mkdir(parents=True, exist_ok=True)
    teacher = random_net(teacher_seed)
    student = random_net(student_seed, scale=0.02, base=teacher)
    pkl = folder / "teacher.pkl"
    write_edm_pickle(teacher, pkl)
    student_dir = folder / "student" / "checkpoint_model_000000"
    student_dir.mkdir(parents=True, exist_ok=True)
    torch.save(student.state_dict(), student_dir / "pytorch_model.bin")
    return pkl, student_dir


def pair_models(teacher: Path, student: Path) -> dict[str, dict]:
    """The sidecar's models for a teacher pickle and a student checkpoint (`write_pair`'s files): a run that can
    regenerate its samples."""
    return {"teacher": {"adapter": "edm-imagenet-64", "checkpoint": str(teacher), "role": "teacher"},
            "student": {"adapter": "dmd2-imagenet-64", "checkpoint": str(student), "role": "student"}}


def write_synthetic_embeddings(folder: Path, num_seeds: int, models: dict[str, dict] | None = None,
                               num_classes: int = 10, class_names: list[str] | None = None, thumbnails: int = 40,
                               seed: int = 0) -> Path:
    """An embeddings table with made-up coordinates, written through the schema writer; returns the CSV path.

    Each class is a blob, each model a shifted copy, so colours, filters and seed links have something
    to show. At most `thumbnails` PNG files are written and rows share them, so 100k points stay cheap.
    `models` is the sidecar's {key: {adapter, checkpoint, role}}; by default a teacher and a student
    without checkpoints (browse only).
    """
    import numpy as np
    import pandas as pd
    from PIL import Image

    from visualizer.embeddings.schema import write_embeddings

    models = models or {"teacher": {"adapter": "edm-imagenet-64", "role": "teacher"},
                        "student": {"adapter": "dmd2-imagenet-64", "role": "student"}}
    names = class_names or [f"class {c}" for c in range(num_classes)]
    rng = np.random.default_rng(seed)
    thumbs = folder / "thumbs"
    thumbs.mkdir(parents=True, exist_ok=True)
    for t in range(thumbnails):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        tile = np.zeros((16, 16, 3), np.uint8) + np.array(colour, np.uint8)
        tile[4:12, 4:12] = 255 - tile[4:12, 4:12]
        Image.fromarray(tile).save(thumbs / f"{t}.png")
    seeds = np.arange(num_seeds)
    labels = seeds % num_classes
    centres = rng.normal(0, 6, size=(num_classes, 2))
    frames = []
    for m, key in enumerate(models):
        xy = centres[labels] + rng.normal(0, 1, size=(num_seeds, 2)) + np.array([m * 1.5, 0])
        frames.append(pd.DataFrame({
            "sample_id": [f"{key}-{s}-0" for s in seeds], "seed": seeds, "class_label": labels,
            "class_name": [names[c] for c in labels], "model": key, "step": 0, "sigma": 80.0,
            "umap_x": xy[:, 0], "umap_y": xy[:, 1], "image_path": [f"thumbs/{s % thumbnails}.png" for s in seeds],
        }))
    frame = pd.concat(frames, ignore_index=True)
    return write_embeddings(frame, folder / "embeddings.csv", {"models": models, "layers": ["encoder_bottleneck"]})
