"""Teacher vs student over many samples from an embed run's stores or a fresh trace; one sample with baselines;
the `compare` command on the shipped demo run."""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from app_files import write_pair

from visualizer.adapters import get_adapter
from visualizer.adapters.demo import DEMO_EMBEDDINGS
from visualizer.cli import main
from visualizer.errors import UserError
from visualizer.metrics.cka import debiased_cka
from visualizer.metrics.cli import embed_arguments
from visualizer.metrics.compare import centred_cosine, noise_baseline, sample_scores
from visualizer.metrics.runs import EmbedRun
from visualizer.metrics.teacher_student import (
    MissingStores,
    compare_run,
    compare_traced,
    sample_report,
    sigma_alignment_run,
)

SIGMAS = [80.0, 10.0, 1.0, 0.1]


def write_run(root: Path, n: int = 60, layers=("a", "b"), teacher_steps=(0, 1, 2, 3)) -> Path:
    """A run folder as `embed` writes it (CSV, sidecar, float16 stores), with made-up activations: the
    student's layer `a` is the teacher's `a` at step 1 plus noise, its `b` unrelated. Seeds are stored
    in reverse order to check the pairing."""
    rng = np.random.default_rng(0)
    seeds = np.arange(100, 100 + n)[::-1]
    labels = seeds % 3
    rows = []
    base = {name: rng.normal(size=(n, 12)) for name in layers}
    for key, steps in (("teacher", teacher_steps), ("student", (0,))):
        for step in steps:
            for name in layers:
                if key == "teacher":
                    x = base[name] + (0.3 if step == 1 else 2.0) * rng.normal(size=(n, 12))
                else:
                    x = base[name] + 0.3 * rng.normal(size=(n, 12)) if name == "a" else rng.normal(size=(n, 12))
                path = root / "activations" / key / name / f"step{step}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, x.astype(np.float16))
            sigma = SIGMAS[step] if key == "teacher" else 80.0
            rows += [dict(sample_id=f"{key}-{s}-{step}", seed=s, class_label=c, class_name=str(c), model=key,
                          step=step, sigma=sigma, umap_x=0.0, umap_y=0.0, image_path="x.png", row=i)
                     for i, (s, c) in enumerate(zip(seeds.tolist(), labels.tolist(), strict=True))]
    with (root / "embeddings.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    side = {"schema_version": 1, "layers": list(layers),
            "models": {"teacher": {"adapter": "edm-digits-32", "checkpoint": "t.pkl", "role": "teacher",
                                   "num_steps": len(SIGMAS), "steps": list(teacher_steps)},
                       "student": {"adapter": "dmd2-digits-32", "checkpoint": "s/", "role": "student",
                                   "num_steps": 1, "steps": [0]}},
            "activations": {"path": "activations/{model}/{layer}/step{step}.npy",
                            "layers": {name: {"shape": [3, 2, 2], "pool": "none", "features": 12} for name in layers}}}
    (root / "embeddings.json").write_text(json.dumps(side))
    return root


def test_run_pairs_seeds_and_reads_the_stores(tmp_path):
    run = EmbedRun.open(write_run(tmp_path))
    assert run.model_with_role("teacher") == "teacher" and run.steps("teacher") == [0, 1, 2, 3]
    assert run.resolve_step("teacher", "last") == 3 and run.resolve_step("teacher", -2) == 2
    t, s = run.paired(("teacher", 1), ("student", 0), seeds=range(100, 130))
    assert t.seeds.tolist() == list(range(100, 130)) and (t.seeds == s.seeds).all() and t.sigma == 10.0
    stored = np.load(tmp_path / "activations" / "teacher" / "a" / "step1.npy")
    np.testing.assert_array_equal(run.features("teacher", "a", 1, t), stored[t.rows])
    assert (t.rows == 59 - np.arange(30)).all()             # seeds were written in reverse order
    with pytest.raises(UserError, match="steps 0..3"):
        run.resolve_step("teacher", 4)


def test_compare_run_matrix_says_where_it_came_from(tmp_path):
    run = EmbedRun.open(write_run(tmp_path))
    m = compare_run(run, teacher_step=1, resamples=20, null=20, classes="all", dtype=torch.float64)
    assert m.rows == m.cols == ["a", "b"] and m.n == 60 and sorted(m.per_class) == [0, 1, 2]
    t, s = run.paired(("teacher", 1), ("student", 0))
    expected = debiased_cka(run.features("teacher", "a", 1, t).astype(np.float64),
                            run.features("student", "a", 0, s).astype(np.float64))
    assert m.estimate[0, 0] == pytest.approx(expected, rel=1e-9) and m.estimate[0, 0] > 0.5
    assert m.lo[1, 1] < 0.2 and m.null_lo[0, 0] < 0 < m.null_hi[0, 0]
    d = m.to_dict()
    assert d["source"]["kind"] == "stores" and d["source"]["pooled"] is False
    assert d["teacher"]["step"] == 1 and d["teacher"]["sigma"] == 10.0 and d["student"]["sigma"] == 80.0
    assert [c["row"] for c in d["diagonal"]] == ["a", "b"]
    with pytest.raises(MissingStores, match="--layers c"):
        compare_run(run, ["c"])


def test_sigma_alignment_finds_the_step_the_student_layer_resembles(tmp_path):
    out = sigma_alignment_run(write_run(tmp_path), resamples=30, null=10)
    assert out.steps == [0, 1, 2, 3] and out.sigmas == SIGMAS
    ridge = {r["layer"]: r for r in out.ridge()}
    assert ridge["a"]["step"] == 1 and ridge["a"]["sigma"] == 10.0 and ridge["a"]["share"] > 0.9
    assert out.context["source"]["kind"] == "stores"
    with pytest.raises(MissingStores):
        sigma_alignment_run(write_run(tmp_path / "one", teacher_steps=(0,)))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    pkl, student = write_pair(tmp_path_factory.mktemp("pair"))
    return (get_adapter("edm-imagenet-64").from_checkpoint(pkl, device="cpu"),
            get_adapter("dmd2-imagenet-64").from_checkpoint(student, device="cpu"))


def test_compare_traced_uses_full_resolution(pair):
    teacher, student = pair
    layers = ["encoder_bottleneck", "dec.16x16_block1"]
    m = compare_traced(teacher, student, range(16), layers, resamples=10, null=5)
    shapes = {n: teacher.layer_shapes()[n][1:] for n in layers}
    src = m.context["source"]
    assert src["kind"] == "trace" and not src["pooled"]
    assert all(src["layers"][n]["features"] == math.prod(shapes[n]) for n in layers)
    assert m.context["teacher"]["sigma"] == pytest.approx(80.0) and m.estimate.shape == (2, 2)
    x = teacher.trace(range(16), [i % 10 for i in range(16)], layers[:1], forward_only=True)[(layers[0], 0)]
    y = student.trace(range(16), [i % 10 for i in range(16)], layers[:1])[(layers[0], 0)]
    assert m.estimate[0, 0] == pytest.approx(debiased_cka(x.flatten(1), y.flatten(1)), abs=2e-3)   # float16 rows


def test_one_sample_scores_come_with_their_baselines(pair):
    teacher, student = pair
    report = sample_report(teacher, student, 3, 7, ["encoder_bottleneck"], noise_draws=8)
    layer = report["layers"]["encoder_bottleneck"]
    assert report["label"] == layer["label"] == "one sample: descriptive" and report["other_seed"] == 4
    assert {"noise", "other_seed_a", "other_seed_b"} <= set(layer["baselines"])
    noise = layer["baselines"]["noise"]
    assert abs(noise["cosine_centred"]["mean"]) < 0.05 and noise["cka"]["mean"] > 0.3   # spatial CKA of noise
    assert -1 <= layer["cosine_centred"] <= 1 and 0 <= layer["cka"] <= 1


def test_centred_cosine_and_noise_baseline():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(4, 3, 3, generator=g) * 10
    a, b = mean + torch.randn(4, 3, 3, generator=g), mean + torch.randn(4, 3, 3, generator=g)
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.9     # the shared mean
    assert abs(centred_cosine(a, b, mean, mean).item()) < 0.5
    assert centred_cosine(a, 2 * a - mean, mean, mean).item() == pytest.approx(1.0)
    base = noise_baseline((96, 8, 8), draws=16)
    assert 0.5 < base["cka"]["mean"] < 0.7                  # the 0.598 for 96x8x8 noise
    scores = sample_scores({"l": a}, {"l": b}, {"l": mean}, {"l": mean}, noise_draws=4)
    assert set(scores["l"]["baselines"]) == {"noise"}


# -- the command ---------------------------------------------------------------------------------------

needs_stores = pytest.mark.skipif(not (DEMO_EMBEDDINGS.parent / "activations").is_dir(),
                                  reason="the shipped demo run has no activation stores")


@needs_stores
def test_compare_command_on_the_shipped_demo(tmp_path, capsys):
    assert main(["compare", "--resamples", "20", "--null", "10", "--per-class", "0,1", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "encoder_bottleneck" in printed and "teacher step 0 (sigma 80)" in printed
    data = json.loads((tmp_path / "matrix-step0.json").read_text())
    assert data["n"] == 600 and data["rows"] == ["encoder_bottleneck"] and data["source"]["pooled"] is True
    assert data["source"]["layers"]["encoder_bottleneck"]["pool"] == "avg2" and set(data["per_class"]) == {"0", "1"}
    with (tmp_path / "matrix-step0.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["scope"] for r in rows] == ["all", "class 0", "class 1"] and rows[0]["source"] == "stores"
    assert float(rows[0]["null_lo"]) < float(rows[0]["cka"])


def test_embed_arguments_repeat_the_run_with_more_layers(tmp_path):
    from visualizer.embeddings.cli import config_from_args, configure

    run = EmbedRun.open(DEMO_EMBEDDINGS)
    argv = embed_arguments(run, ["encoder_block_0", "midblock"], ["all"], tmp_path / "derived")
    parser = argparse.ArgumentParser()
    configure(parser)
    cfg = config_from_args(parser.parse_args(argv))
    assert cfg.layers == ["encoder_block_0", "midblock"] and [str(s) for s in cfg.steps] == ["all"]
    assert cfg.seeds == list(range(600)) and cfg.preset == "demo" and cfg.batch_size == 100
    assert [Path(m.checkpoint).name for m in cfg.models] == ["teacher.pkl", "checkpoint_model_002920"]


def test_missing_stores_come_from_a_covering_run_or_are_refused(tmp_path, monkeypatch):
    from visualizer.metrics import cli

    source = EmbedRun.open(write_run(tmp_path / "source", layers=("a",), teacher_steps=(0,)))
    monkeypatch.setattr(cli, "RUNS_DIR", tmp_path / "runs")
    refused = UserError("no stores")
    with pytest.raises(UserError, match="no stores"):
        cli._derived(source, ["a", "b"], ["all"], "src", False, refused)
    write_run(tmp_path / "runs" / "src-all-steps-00000000")          # same seeds, both layers, every step
    found = cli._derived(source, ["a", "b"], ["all"], "src", False, refused)
    assert found.root == tmp_path / "runs" / "src-all-steps-00000000"
    assert cli._derived(source, ["b"], ["first", "last"], "src", False, refused).root == found.root
    m = compare_run(found, ["b"], resamples=4, null=2)
    assert m.context["source"]["run"] == str(found.root)


def test_report_tables_and_figures(tmp_path):
    import importlib.util

    from tools import compare_report  # the checkout's tools/ (conftest puts the root on sys.path)

    run = EmbedRun.open(write_run(tmp_path))
    m = compare_run(run, resamples=10, null=5, classes="all").to_dict()
    a = sigma_alignment_run(run, resamples=10, null=5).to_dict()
    text = compare_report.matrix_tables(json.loads(json.dumps(m)))
    assert "| a | " in text and "shuffled-pair null" in text and "teacher step 0 (sigma 80)" in text
    text = compare_report.alignment_tables(json.loads(json.dumps(a)))
    assert "| a | 1 (10)" in text and "**" in text
    if importlib.util.find_spec("plotly") is not None:
        assert set(compare_report.figures(m, a)) == {"compare_matrix.png", "sigma_alignment.png"}
