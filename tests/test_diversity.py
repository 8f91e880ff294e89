"""Sample-set scores and the common probe (issue 16): constructed sets with known answers."""

import sys

import numpy as np
import pytest
import torch
from nets import tiny_net
from overlap import overlap

from visualizer.adapters.edm import EDMAdapter
from visualizer.errors import UserError
from visualizer.metrics import diversity
from visualizer.metrics.probe import NetworkProbe, as_float_images, digit_probe


def _blobs(n: int, d: int = 8, seed: int = 0, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32) + shift


def test_identical_sets_score_one_and_disjoint_sets_zero():
    x = _blobs(200)
    same = diversity.prdc(x, x.copy())
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = diversity.prdc(x, _blobs(200, seed=1, shift=100.0))
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_a_collapsed_set_keeps_precision_and_loses_recall_coverage_and_spread():
    ref = _blobs(400)
    collapsed = 0.2 * _blobs(400, seed=2)              # inside the reference's bulk, a fifth of its spread
    s = diversity.compare_sets(ref, collapsed, splits=4)["scores"]
    assert s["precision"]["all"] > 0.9
    assert s["recall"]["all"] < 0.2 and s["coverage"]["all"] < 0.5
    assert s["spread_ratio"]["all"] == pytest.approx(0.2, rel=0.1)
    assert len(s["coverage"]["splits"]) == 4 and s["coverage"]["min"] <= s["coverage"]["mean"] <= s["coverage"]["max"]


def test_splits_are_disjoint_and_equal():
    parts = diversity.disjoint_splits(103, 5, seed=3)
    flat = np.concatenate(parts)
    assert {len(p) for p in parts} == {20} and len(set(flat.tolist())) == 100
    with pytest.raises(UserError):
        diversity.disjoint_splits(5, 4)


def test_seed_correspondence_pools_all_seeds_when_classes_hold_one():
    """With one seed per class the class pool would make rank 1 certain: all seeds are the pool instead."""
    g = np.random.default_rng(0)
    teacher = g.normal(size=(20, 8))
    student = teacher + g.normal(size=(20, 8)) * 0.01          # each student row nearest its own seed
    one_each = diversity.seed_correspondence(student, teacher, list(range(20)))
    assert one_each["pool"] == "all seeds" and one_each["top1"] == 1.0
    assert one_each["top1_chance"] == pytest.approx(0.05)
    shuffled = diversity.seed_correspondence(student[::-1], teacher, list(range(20)))
    assert shuffled["top1"] < 0.2 and np.isfinite(shuffled["other_seeds_mean"])
    paired = diversity.seed_correspondence(student, teacher, [i // 2 for i in range(20)])
    assert paired["pool"] == "class" and paired["top1_chance"] == pytest.approx(0.5)


def test_frechet_distance_is_the_same_from_covariances_and_from_the_rows():
    """The two exact forms agree: more dimensions than rows (the rows' Gram form) against the covariance form."""
    g = np.random.default_rng(3)
    a, b = g.normal(size=(40, 30)), g.normal(size=(50, 30)) * 1.5 + 0.2
    wide = np.hstack([a, np.zeros((40, 30))]), np.hstack([b, np.zeros((50, 30))])   # 60 features > 39 rows
    assert diversity.frechet_distance(*wide) == pytest.approx(diversity.frechet_distance(a, b), rel=1e-9)
    assert diversity.frechet_distance(wide[0], wide[0]) == pytest.approx(0, abs=1e-9)


def test_frechet_distance_of_a_shift_is_its_squared_length():
    a = _blobs(500, 3)
    assert diversity.frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert diversity.frechet_distance(a, a + [2.0, 0, 0]) == pytest.approx(4.0, abs=1e-6)


def test_per_class_ranks_the_collapsed_class_first():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 60)
    ref = rng.normal(size=(180, 4)) + labels[:, None] * 10
    gen = ref + rng.normal(size=ref.shape) * 0.1
    gen[labels == 1] = 10 + 0.1 * rng.normal(size=(60, 4))        # class 1 collapses onto a point
    ranked = diversity.per_class(ref, labels, gen, labels)
    assert list(ranked)[0] == 1 and ranked[1]["spread_ratio"] < 0.15 and ranked[1]["coverage"] < 0.5
    assert ranked[0]["coverage"] > 0.9


def test_seed_correspondence_finds_the_same_seed_and_states_chance():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 25)
    teacher = rng.normal(size=(100, 16))
    close = diversity.seed_correspondence(teacher + 0.05 * rng.normal(size=teacher.shape), teacher, labels)
    assert close["top1"] == 1.0 and close["top1_chance"] == pytest.approx(1 / 25)
    assert close["same_seed_mean"] < close["other_seeds_mean"]
    unrelated = diversity.seed_correspondence(rng.normal(size=teacher.shape), teacher, labels)
    assert unrelated["top1"] < 0.2
    with pytest.raises(UserError):
        diversity.seed_correspondence(teacher[:10], teacher, labels)


def test_bad_sets_are_refused_with_what_is_wrong():
    with pytest.raises(UserError, match="NaN"):
        diversity.prdc(np.full((10, 2), np.nan), _blobs(10, 2))
    with pytest.raises(UserError, match="features"):
        diversity.prdc(_blobs(20, 2), _blobs(20, 3))
    with pytest.raises(UserError, match="k = 30"):
        diversity.prdc(_blobs(20, 2), _blobs(20, 2), k=30)


def test_network_probe_noises_with_seeded_eps_and_reads_one_layer():
    adapter = EDMAdapter(tiny_net(), device="cpu")
    images = np.random.default_rng(0).integers(0, 256, size=(5, 16, 16, 3), dtype=np.uint8)
    labels = [0, 1, 2, 3, 4]
    probe = NetworkProbe(adapter, "enc.8x8_block0", sigma=0.5, pool="mean")
    a, b = probe(images, labels), NetworkProbe(adapter, "enc.8x8_block0", sigma=0.5, pool="mean", batch=2)(images,
                                                                                                            labels)
    assert a.shape == (5, adapter.layer_shapes()["enc.8x8_block0"][1])
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)          # batching does not change a row's noise
    other = NetworkProbe(adapter, "enc.8x8_block0", sigma=0.5, pool="mean", seed=7)(images, labels)
    assert not np.allclose(a, other)
    # sigma 0: no noise, the network's own forward on the clean image
    clean = NetworkProbe(adapter, "enc.8x8_block0", sigma=0.0, pool="mean")(images, labels)
    with torch.no_grad():
        from visualizer.trace.capture import capture
        with capture(adapter.net, ["enc.8x8_block0"]) as cap:
            adapter.forward(as_float_images(images), 0.0, labels)
    np.testing.assert_allclose(clean, cap.tensor("enc.8x8_block0", 0).mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(UserError):
        NetworkProbe(adapter, "no_such_layer")
    with pytest.raises(UserError):
        NetworkProbe(adapter, "enc.8x8_block0", sigma=float("nan"))


def test_digit_probe_gives_the_classifiers_features():
    probe = digit_probe()
    images = np.random.default_rng(0).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    assert probe(images).shape == (3, 96)


# -- sample sets from disk and the command ---------------------------------------------------------------

def test_real_images_from_an_npz_and_a_class_folder_tree(tmp_path):
    from PIL import Image

    from visualizer.metrics.sample_sets import load_real

    images = np.random.default_rng(0).integers(0, 256, size=(6, 16, 16, 3), dtype=np.uint8)
    labels = np.array([0, 0, 1, 1, 2, 2])
    np.savez(tmp_path / "real.npz", images=images, labels=labels)
    s = load_real(tmp_path / "real.npz", resolution=16)
    assert np.array_equal(s.images, images) and s.labels.tolist() == labels.tolist()
    for i, (im, c) in enumerate(zip(images, labels, strict=True)):
        (tmp_path / "tree" / str(c)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(tmp_path / "tree" / str(c) / f"{i}.png")
    t = load_real(tmp_path / "tree", resolution=16)
    assert np.array_equal(t.images, images) and t.labels.tolist() == labels.tolist()
    with pytest.raises(UserError, match="32x32"):
        load_real(tmp_path / "real.npz", resolution=32)


def test_hostile_npz_files_are_refused_before_their_data_is_read(tmp_path):
    from visualizer.metrics.sample_sets import load_real

    np.savez(tmp_path / "objects.npz", images=np.array([{"a": 1}], dtype=object), labels=np.array([0]))
    with pytest.raises(UserError, match="objects.npz: not a readable .npz without pickles"):
        load_real(tmp_path / "objects.npz")
    big = np.lib.format.open_memmap(tmp_path / "images.npy", mode="w+", dtype=np.uint8, shape=(60_000, 1, 1, 3))
    del big
    import zipfile
    with zipfile.ZipFile(tmp_path / "many.npz", "w") as z:
        z.write(tmp_path / "images.npy", "images.npy")
        np.save(tmp_path / "labels.npy", np.zeros(60_000, np.int64))
        z.write(tmp_path / "labels.npy", "labels.npy")
    with pytest.raises(UserError, match="many.npz: images has 60000 rows"):
        load_real(tmp_path / "many.npz")
    np.savez(tmp_path / "nolabels.npz", images=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(UserError, match="needs arrays 'images' and 'labels'"):
        load_real(tmp_path / "nolabels.npz")
    (tmp_path / "tree" / "cat").mkdir(parents=True)
    with pytest.raises(UserError, match="named by class index"):
        load_real(tmp_path / "tree")


def test_the_diversity_command_on_the_demo_pair(tmp_path, capsys):
    """A short teacher run (4 steps) on 60 seeds against held-out digits: every section written and printed."""
    import json

    from visualizer.cli import main

    assert main(["diversity", "--seeds", "0-59", "--num-steps", "4", "--splits", "2", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "reference: real (the demo's held-out digits" in printed and "seed correspondence (pixel_rmse)" in printed
    report = json.loads((tmp_path / "diversity.json").read_text())
    assert set(report["scores"]) == {"teacher", "student"} and set(report["student_vs_teacher"]) == {"student"}
    cov = report["scores"]["student"]["overall"]["scores"]["coverage"]
    assert len(cov["splits"]) == 2 and 0 <= cov["min"] <= cov["max"] <= 1
    assert report["correspondence"]["pixel_rmse"]["top1_chance"] == pytest.approx(1 / 6)
    # the demo teacher's sampler is deterministic: the student is also matched against its stochastic (churn) run
    other = report["correspondence_other"]
    assert other["teacher_sampler"]["preset"] == "fid" and other["teacher_sampler"]["S_churn"] > 0
    assert other["seeds"] == report["correspondence"]["seeds"] and "seed correspondence (pixel_rmse, teacher fid)" \
        in printed
    assert (tmp_path / "per-class.csv").read_text().startswith("set,class,n,precision")


def test_prdc_from_two_threads_leaves_stdout_as_it_found_it():
    """prdc's printing is silenced by swapping the process's stdout. B starts while A is inside and takes longer:
    were they to overlap, B would keep A's buffer and put it back last, and the process would print into it
    for good (the app's jobs are threads)."""
    rng = np.random.default_rng(0)
    small, big = rng.normal(size=(300, 8)), rng.normal(size=(1500, 8))
    real = sys.stdout
    for _ in range(3):
        overlap(lambda: diversity.prdc(small, small + 0.1, 5), lambda: diversity.prdc(big, big + 0.1, 5),
                inside=lambda: sys.stdout is not real)
        assert sys.stdout is real
