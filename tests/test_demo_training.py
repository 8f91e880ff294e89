"""The embedded demo's dataset, training scripts and evaluation: tiny CPU runs in the real file formats.

The digits and the classifier are run-time code (`visualizer.digits`); the training, distillation and
evaluation scripts live in the repository's `tools/demo/` (conftest.py puts the checkout on sys.path),
with their old names in `scripts/` as thin wrappers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tools.demo import distill_student, evaluate, train_teacher
from tools.demo.training import ARCHITECTURES, build_network, ema_update, karras_sigmas
from visualizer.digits.classifier import CLASSIFIER_FILE, DigitClassifier, load_classifier, predict
from visualizer.digits.dataset import DIGITS_FILE, load_digits, load_split, render, split_indices
from visualizer.metrics.diversity import frechet_distance
from visualizer.models.networks import EDMPrecond

ROOT = Path(__file__).resolve().parents[1]


# -- dataset ------------------------------------------------------------------------------------------

def test_digits_file_is_the_full_sklearn_set():
    images, labels = load_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8 and images.max() == 16
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert DIGITS_FILE.stat().st_size < 100_000


def test_split_is_stratified_disjoint_and_fixed():
    _, labels = load_digits()
    train, held = split_indices(labels)
    assert len(train) + len(held) == 1797 and not set(train) & set(held)
    assert all(abs((labels[held] == c).sum() - 0.2 * (labels == c).sum()) <= 0.5 for c in range(10))
    again, _ = split_indices(labels)
    np.testing.assert_array_equal(train, again)
    assert len(load_split("train")) == len(train) and len(load_split("held_out")) == len(held)


def test_rendering_is_deterministic_and_in_range():
    split = load_split("held_out")
    a, la = split.fixed(seed=5)
    b, lb = split.fixed(seed=5)
    c, _ = split.fixed(seed=6)
    assert a.shape == (len(split), 3, 32, 32) and a.dtype == torch.float32
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert torch.equal(la, lb) and not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1
    assert a.amax(dim=(1, 2, 3)).min() > 0.5  # every digit is drawn bright, over a darker background
    x1, y1 = split.batch(16, torch.Generator().manual_seed(0))
    x2, y2 = split.batch(16, torch.Generator().manual_seed(0))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_render_without_jitter_centres_the_digit():
    shapes = torch.full((1, 8, 8), 16, dtype=torch.uint8)  # a full square: a box of 26 px in the middle
    img = render(shapes, torch.Generator().manual_seed(0), jitter=False)
    assert img.shape == (1, 3, 32, 32)
    inside, corner = img[0, :, 16, 16], img[0, :, 0, 0]
    assert inside.mean() > corner.mean()


# -- training pieces ----------------------------------------------------------------------------------

def test_demo_architecture_is_small():
    with torch.device("meta"):
        net = build_network("demo")
    assert 2e6 < sum(p.numel() for p in net.parameters()) < 3.5e6  # <= 14 MB as float32


def test_karras_table_and_ema():
    s = karras_sigmas(1000)
    assert s[0].item() == pytest.approx(0.002) and s[-1].item() == pytest.approx(80.0) and bool((s.diff() > 0).all())
    net, ema = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    with torch.no_grad():
        net.weight.fill_(1.0)
        ema.weight.fill_(0.0)
    beta = ema_update(ema, net, batch=10, images_seen=200, halflife_kimg=1000)  # halflife ramps to 10 images
    assert beta == pytest.approx(0.5)
    assert torch.allclose(ema.weight, torch.full((2, 2), 0.5))


# -- the scripts, end to end on tiny settings ---------------------------------------------------------

@pytest.fixture(scope="module")
def teacher_pickle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "teacher.pkl"
    log = train_teacher.main(
        ["--out", str(out), "--arch", "tiny", "--max-iters", "3", "--batch", "8", "--device", "cpu",
         "--minutes", "2", "--log-every", "1", "--warmup-kimg", "0.016"])
    assert log["iterations"] == 3 and log["images_seen"] == 24
    return out


def test_teacher_script_writes_a_loadable_edm_pickle(teacher_pickle):
    from visualizer.checkpoints.loading import load_network

    net = load_network(teacher_pickle)
    assert isinstance(net, EDMPrecond)
    reference = EDMPrecond(**ARCHITECTURES["tiny"]).state_dict()
    assert {k: v.shape for k, v in net.state_dict().items()} == {k: v.shape for k, v in reference.items()}
    assert not all(torch.equal(net.state_dict()[k], v) for k, v in reference.items())  # it trained
    log = json.loads(teacher_pickle.with_suffix(".json").read_text())
    assert log["iterations"] == 3 and len(log["loss_curve"]) == 3 and log["iterations_per_second"] > 0
    assert not list(teacher_pickle.parent.glob(".tmp-*"))


@pytest.mark.parametrize("extra", [["--max-iters", "6"], ["--max-iters", "2", "--gan", "--gen-every", "1"]],
                         ids=["dm", "dm+gan"])
def test_distill_script_writes_a_dmd2_checkpoint(teacher_pickle, tmp_path, extra):
    from visualizer.checkpoints.loading import load_network

    out = tmp_path / "student"
    log = distill_student.main(
        ["--teacher", str(teacher_pickle), "--out", str(out), "--batch", "4", "--device", "cpu",
         "--minutes", "2", "--log-every", "1", *extra])
    folders = sorted(out.glob("checkpoint_model_*"))
    assert [f.name for f in folders] == [f"checkpoint_model_{log['iterations']:06d}"]
    state = torch.load(folders[0] / "pytorch_model.bin", map_location="cpu", weights_only=True)
    teacher = load_network(teacher_pickle)
    assert list(state) == list(teacher.state_dict())  # no prefix, same order
    assert not all(torch.equal(state[k], v) for k, v in teacher.state_dict().items())  # the generator moved
    student = load_network(folders[0])
    assert student.label_dim == 10 and student.img_resolution == 32
    assert log["generator_steps"] == 2  # iterations 0 and 5, or 0 and 1
    assert json.loads((out / "distill_log.json").read_text())["iterations"] == log["iterations"]


# -- evaluation ---------------------------------------------------------------------------------------

def test_frechet_distance_basics():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(a, a + [2.0, 0, 0]) == pytest.approx(4.0, abs=1e-6)
    assert frechet_distance(a, a * 2) == pytest.approx(3.0, rel=0.05)  # tr(S + 4S - 4S) = 3


@pytest.mark.skipif(not CLASSIFIER_FILE.exists(), reason="the shipped digit classifier is not built yet")
def test_shipped_classifier_reads_held_out_digits():
    assert CLASSIFIER_FILE.stat().st_size < 1_000_000
    clf = load_classifier()
    assert isinstance(clf, DigitClassifier)
    images, labels = load_split("held_out").fixed(seed=123)
    pred, feats = predict(clf, images)
    assert (pred == labels).float().mean() >= 0.97 and feats.shape == (len(labels), 96)


@pytest.mark.skipif(not CLASSIFIER_FILE.exists(), reason="the shipped digit classifier is not built yet")
def test_evaluate_script_writes_report_and_grids(teacher_pickle, tmp_path):
    student = tmp_path / "student"
    distill_student.main(["--teacher", str(teacher_pickle), "--out", str(student), "--batch", "2",
                          "--device", "cpu", "--max-iters", "1"])
    out = tmp_path / "eval"
    report = evaluate.main(
        ["--teacher", str(teacher_pickle), "--student", str(student), "--out", str(out), "--device", "cpu",
         "--classifier", str(CLASSIFIER_FILE), "--seeds-per-class", "2", "--splits", "2", "--teacher-steps", "2",
         "--real-repeats", "1", "--grid-columns", "1"])
    for name in ("report.json", "teacher_grid.png", "student_grid.png", "real_grid.png"):
        assert (out / name).exists()
    assert report["classifier_accuracy_held_out"] >= 0.97
    for kind in ("teacher", "student"):
        assert 0 <= report[kind]["on_class"] <= 1 and report[kind]["images"] == 20
        assert np.isfinite(report[kind]["frechet"])


# -- the documented commands ----------------------------------------------------------------------

@pytest.mark.parametrize(("wrapper", "tool"), [("scripts/train_demo_teacher.py", "tools/demo/train_teacher.py"),
                                               ("scripts/distill_demo_student.py", "tools/demo/distill_student.py"),
                                               ("scripts/evaluate_demo.py", "tools/demo/evaluate.py")])
def test_scripts_and_tools_run_from_anywhere(wrapper, tool, tmp_path):
    """`python scripts/<old name>.py` and `python tools/demo/<name>.py` show the same options, from any folder."""
    helps = []
    for path in (wrapper, tool):
        result = subprocess.run([sys.executable, str(ROOT / path), "--help"], capture_output=True, text=True,
                                cwd=tmp_path, timeout=120)
        assert result.returncode == 0, result.stderr
        helps.append(result.stdout.split("\n\n", 1)[1])  # past the usage, which names the file
    assert "--out" in helps[0] and helps[0] == helps[1]
