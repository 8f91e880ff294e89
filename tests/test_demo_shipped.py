"""The shipped demo pair is real: class-conditional samples of both models are on-class per the digit classifier."""

import numpy as np
import pytest
import torch

from visualizer.adapters import get_adapter
from visualizer.adapters.demo import DEMO_EMBEDDINGS, DEMO_STUDENT, DEMO_TEACHER, DIGIT_NAMES
from visualizer.digits.classifier import load_classifier, predict
from visualizer.embeddings.schema import load_embeddings

SEEDS = list(range(1000, 1040))           # not the seeds the training report scored
CLASSES = [s % 10 for s in SEEDS]


@pytest.fixture(scope="module")
def classify():
    return load_classifier()


def _on_class(classify, images: np.ndarray) -> float:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    predicted = predict(classify, x)[0].numpy()
    return float((predicted == np.array(CLASSES)).mean())


def test_shipped_files_fit_the_size_budget():
    folder = DEMO_TEACHER.parent
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    # 30 MiB for the pair, its embeddings, stores and thumbnails; +1 MiB since issue 16 for the probe map (0.53 MB:
    # probe features, the real digits' thumbnails and positions)
    assert total <= 31 * 2**20, f"demo assets are {total / 2**20:.1f} MiB"


def test_teacher_and_student_are_on_class(classify):
    teacher = get_adapter("edm-digits-32").from_checkpoint(DEMO_TEACHER, device="cpu")
    student = get_adapter("dmd2-digits-32").from_checkpoint(DEMO_STUDENT, device="cpu")
    assert teacher.class_names == student.class_names == DIGIT_NAMES
    t = teacher.sample(seeds=SEEDS, class_label=CLASSES)       # default preset: demo, deterministic 18 steps
    s = student.sample(seeds=SEEDS, class_label=CLASSES)
    assert t.images.shape == s.images.shape == (40, 32, 32, 3)
    assert _on_class(classify, t.images) >= 0.95
    assert _on_class(classify, s.images) >= 0.90


def test_demo_embeddings_load_and_point_at_the_shipped_files():
    emb = load_embeddings(DEMO_EMBEDDINGS)
    assert set(emb.frame["model"]) == {"teacher", "student"} and len(emb.frame) == 1200
    for info in emb.models.values():
        assert (emb.root / info["checkpoint"]).exists()
    assert all((emb.root / p).is_file() for p in emb.frame["image_path"][::97])
