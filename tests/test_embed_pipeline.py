"""`embed` end to end on tiny real-format checkpoints: CSV contract, thumbnails, shared first step, PCA basis.

The run here is also the reference that test_embed_resume and test_embed_distributed compare against
(computed once per session; UMAP's numba compilation dominates the cost, so runs stay in-process).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from nets import tiny_net
from PIL import Image

from visualizer.checkpoints.edm_pickle_writer import write_edm_pickle
from visualizer.cli import main
from visualizer.embeddings.cli import config_from_args, configure
from visualizer.embeddings.pooling import resolve_pool
from visualizer.embeddings.reduce import project_new, umap_backend
from visualizer.embeddings.schema import COLUMNS, load_embeddings
from visualizer.embeddings.spec import parse_classes, parse_model, parse_pool, parse_seeds, parse_steps, resolve_steps
from visualizer.errors import UserError

LAYERS = ("encoder_bottleneck", "dec.16x16_block1")   # 64x8x8 (kept whole) and 32x16x16 (auto -> avg2)
NUM_SEEDS, BATCH, TEACHER_STEPS = 24, 8, 3
_CACHE: dict[str, object] = {}


def _checkpoints(root: Path) -> tuple[Path, Path]:
    """The same weights as an EDM pickle (teacher) and a DMD2 checkpoint folder (student)."""
    net = tiny_net()
    write_edm_pickle(net, root / "teacher.pkl")
    folder = root / "checkpoint_model_000100"
    folder.mkdir()
    torch.save(net.state_dict(), folder / "pytorch_model.bin")
    return root / "teacher.pkl", folder


def embed_args(ckpts: tuple[Path, Path], out: Path, **overrides: str) -> list[str]:
    options = {"--teacher": str(ckpts[0]), "--student": str(ckpts[1]), "--seeds": f"0-{NUM_SEEDS - 1}",
               "--batch-size": str(BATCH), "--num-steps": str(TEACHER_STEPS), "--steps": "first,last",
               "--layers": ",".join(LAYERS), "--device": "cpu", "--out": str(out), **overrides}
    return ["embed", *(x for kv in options.items() for x in kv), "--no-progress"]


@pytest.fixture(scope="session")
def ckpts(tmp_path_factory) -> tuple[Path, Path]:
    if "ckpts" not in _CACHE:
        _CACHE["ckpts"] = _checkpoints(tmp_path_factory.mktemp("ckpt"))
    return _CACHE["ckpts"]


@pytest.fixture(scope="session")
def reference(tmp_path_factory, ckpts) -> Path:
    """One uninterrupted single-process run; the other embed tests must reproduce it exactly."""
    if "reference" not in _CACHE:
        out = tmp_path_factory.mktemp("reference") / "run"
        assert main(embed_args(ckpts, out)) == 0
        _CACHE["reference"] = out
    return _CACHE["reference"]


def assert_same_run(a: Path, b: Path) -> None:
    """Identical CSV text and identical activation stores, bit for bit."""
    assert (a / "embeddings.csv").read_text() == (b / "embeddings.csv").read_text()
    stores = sorted(p.relative_to(a) for p in (a / "activations").rglob("*.npy"))
    assert stores and stores == sorted(p.relative_to(b) for p in (b / "activations").rglob("*.npy"))
    for rel in stores:
        np.testing.assert_array_equal(np.load(a / rel), np.load(b / rel), err_msg=str(rel))


@pytest.mark.slow
def test_end_to_end(reference, ckpts):
    emb = load_embeddings(reference / "embeddings.csv")
    f = emb.frame
    assert list(f.columns) == [*COLUMNS, "row"]
    teacher0 = f[(f.model == "teacher") & (f.step == 0)]
    teacher_last = f[(f.model == "teacher") & (f.step == TEACHER_STEPS - 1)]
    student = f[f.model == "student"]
    assert len(f) == 3 * NUM_SEEDS and set(student.step) == {0}
    # The student's only step and the teacher's first step: same seeds, same classes, sigma 80.
    assert teacher0.seed.tolist() == student.seed.tolist() == list(range(NUM_SEEDS))
    assert teacher0.class_label.tolist() == student.class_label.tolist() == [i % 10 for i in range(NUM_SEEDS)]
    assert (teacher0.sigma == 80.0).all() and (student.sigma == 80.0).all() and (teacher_last.sigma < 80).all()
    for rel in f.image_path:
        assert Image.open(reference / rel).size == (16, 16)
    assert len(list((reference / "thumbs").rglob("*.png"))) == 2 * NUM_SEEDS

    # Same weights and the same first input: the stored activations are equal, bit for bit.
    for layer in LAYERS:
        t = np.load(reference / f"activations/teacher/{layer}/step0.npy")
        s = np.load(reference / f"activations/student/{layer}/step0.npy")
        last = np.load(reference / f"activations/teacher/{layer}/step{TEACHER_STEPS - 1}.npy")
        assert t.dtype == np.float16 and t.shape[0] == NUM_SEEDS
        np.testing.assert_array_equal(t, s)
        assert not np.array_equal(t, last)
    assert t.shape[1] == 32 * 8 * 8   # dec.16x16_block1: 32x16x16 avg-pooled by 2

    side = emb.sidecar
    assert side["models"]["teacher"]["adapter"] == "edm-imagenet-64"
    assert side["models"]["student"]["adapter"] == "dmd2-imagenet-64"
    assert side["models"]["teacher"]["sha256"] == hashlib.sha256(ckpts[0].read_bytes()).hexdigest()
    assert side["models"]["student"]["sha256"] == hashlib.sha256(
        (ckpts[1] / "pytorch_model.bin").read_bytes()).hexdigest()
    assert side["models"]["teacher"]["role"] == "teacher" and side["models"]["student"]["role"] == "student"
    assert side["layers"] == list(LAYERS) and side["steps"]["by_model"] == {"teacher": [0, 2], "student": [0]}
    assert {"torch", "numpy", "umap-learn", "scikit-learn"} <= set(side["versions"]) and side["created"]
    assert side["reduction"]["pca"]["components"] == {layer: 50 for layer in LAYERS}
    assert side["reduction"]["umap"]["backend"] == umap_backend("auto")
    assert not [p for p in reference.rglob("*") if p.name.endswith(".tmp")]


def test_project_new_places_stored_and_fresh_samples(reference, ckpts):
    basis = reference / "pca"
    features = np.load(basis / "features.npy")
    rows = {layer: np.load(reference / f"activations/student/{layer}/step0.npy") for layer in LAYERS}
    frame = load_embeddings(reference / "embeddings.csv").frame
    student_rows = frame.index[frame.model == "student"].to_numpy()
    np.testing.assert_allclose(project_new(rows, basis), features[student_rows], rtol=1e-4, atol=1e-4)

    # Raw layer outputs of a fresh forward pass (first input of seeds 0 and 1) are pooled as the run did.
    from visualizer.adapters.dmd2 import DMD2Adapter

    adapter = DMD2Adapter.from_checkpoint(ckpts[1], device="cpu")
    raw: dict[str, torch.Tensor] = {}
    handles = [h for layer in LAYERS
               for h in adapter.register_activation_hooks([layer], lambda m, i, o, n=layer: raw.setdefault(n, o))]
    try:
        x, sigma, labels, _ = adapter.first_input([0, 1], [0, 1])
        adapter.forward(x, sigma, labels)
    finally:
        for h in handles:
            h.remove()
    np.testing.assert_allclose(project_new(raw, basis), features[student_rows[:2]], rtol=1e-2, atol=1e-2)
    with pytest.raises(UserError, match="no activations for layer"):
        project_new({LAYERS[0]: rows[LAYERS[0]]}, basis)
    assert json.loads((basis / "basis.json").read_text())["layers"][1]["pool"] == "avg2"


def test_drawn_classes_match_across_models(ckpts, tmp_path):
    """--model syntax, the generator's own class draw (the same for both models), few rows, fixed pooling."""
    out = tmp_path / "drawn"
    args = ["embed", "--model", f"t=edm-imagenet-64:{ckpts[0]}", "--model", f"s=dmd2-imagenet-64:{ckpts[1]}",
            "--seeds", "100-105", "--batch-size", "4", "--num-steps", "2", "--classes", "drawn",
            "--pool", "mean", "--device", "cpu", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    emb = load_embeddings(out / "embeddings.csv")
    f = emb.frame
    t, s = f[f.model == "t"], f[f.model == "s"]
    assert t.class_label.tolist() == s.class_label.tolist() and len(set(t.class_label)) > 1
    assert emb.sidecar["reduction"]["umap"]["n_neighbors"] == 11   # capped below the 12 rows
    assert np.load(out / "activations/t/encoder_bottleneck/step0.npy").shape == (6, 64)


def test_unknown_layer_is_one_line_listing_valid_names(ckpts, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(embed_args(ckpts, out, **{"--layers": "encoder_bottleneck,enc.99x99_block0"})) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "unknown layer(s) enc.99x99_block0" in err and "valid names:" in err and "enc.16x16_conv" in err
    assert not out.exists()


@pytest.mark.parametrize(("seeds", "message"), [
    ("5-2", "range '5-2' ends before it starts"),
    ("0-x", "'0-x' is not a seed or a range"),
    ("-3", "is not a seed or a range"),
    ("1,2,1", "seed 1 appears more than once"),
])
def test_bad_seed_ranges(ckpts, tmp_path, capsys, seeds, message):
    assert main(embed_args(ckpts, tmp_path / "run", **{"--seeds": seeds})) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --seeds") and message in err and err.count("\n") == 1


def test_compile_switch_reaches_the_run_and_its_sidecar(ckpts, tmp_path):
    args = embed_args(ckpts, tmp_path / "run", **{"--seeds": "0-1", "--num-steps": "2", "--steps": "first"})
    parser = argparse.ArgumentParser()
    configure(parser)
    assert config_from_args(parser.parse_args([*args[1:], "--compile"])).compile == "full"
    with pytest.warns(UserWarning, match="compile 'graphs' needs CUDA"):
        assert main([*args, "--compile", "graphs", "--precision", "bf16"]) == 0
    run = load_embeddings(tmp_path / "run" / "embeddings.csv").sidecar["run"]
    assert run["compile"] == "graphs" and run["precision"] == "bf16"


@pytest.mark.skipif(importlib.util.find_spec("cuml") is not None, reason="RAPIDS cuML is installed here")
def test_umap_backend_choice_without_cuml():
    assert umap_backend("auto") == umap_backend("umap-learn") == "umap-learn"
    with pytest.raises(UserError, match="'cuml' needs RAPIDS cuML installed and a visible GPU"):
        umap_backend("cuml")
    with pytest.raises(UserError, match="unknown UMAP backend 'gpu'"):
        umap_backend("gpu")


@pytest.mark.skipif(importlib.util.find_spec("cuml") is not None, reason="RAPIDS cuML is installed here")
def test_a_missing_cuml_fails_before_any_sampling(ckpts, tmp_path, capsys):
    assert main([*embed_args(ckpts, tmp_path / "run"), "--umap-backend", "cuml"]) == 2
    assert "needs RAPIDS cuML" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_input_parsing():
    assert parse_seeds("0-3,10,12-13") == [0, 1, 2, 3, 10, 12, 13]
    assert parse_model("t=edm-imagenet-64:https://x/y.pkl").checkpoint == "https://x/y.pkl"
    with pytest.raises(UserError, match="KEY=ADAPTER:CHECKPOINT"):
        parse_model("teacher.pkl")
    with pytest.raises(UserError, match="model key 'a-b'"):
        parse_model("a-b=edm-imagenet-64:x.pkl")
    assert parse_classes("balanced").labels(5, 3).tolist() == [0, 1, 2, 0, 1]
    assert parse_classes("3,7").labels(5, 10).tolist() == [3, 7, 3, 7, 3]
    assert parse_classes("drawn").labels(5, 10) is None
    with pytest.raises(UserError, match="out of range"):
        parse_classes("12").labels(2, 10)
    assert resolve_steps(parse_steps("first,last,1"), 256, "t") == [0, 1, 255]
    assert resolve_steps(parse_steps("first,last"), 1, "s") == [0]
    assert resolve_steps(parse_steps("all"), 4, "t") == [0, 1, 2, 3]
    assert resolve_steps(parse_steps("all"), 1, "s") == [0]
    with pytest.raises(UserError, match="step 300 does not exist"):
        resolve_steps(parse_steps("300"), 256, "t")
    assert parse_pool("avg1") == "none"
    with pytest.raises(UserError, match="avgK"):
        parse_pool("avg3")
    # auto: flatten small layers, else the smallest power-of-two window down to <= 4096 features.
    assert resolve_pool("auto", (64, 8, 8), "x") == "none"
    assert resolve_pool("auto", (768, 8, 8), "x") == "avg4"
    assert resolve_pool("auto", (192, 64, 64), "x") == "avg16"
    assert resolve_pool("auto", (8192, 2, 2), "x") == "mean"
