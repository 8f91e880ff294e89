"""The app without a browser: pure figure builders, the thumbnail route's safety, the threaded job manager."""

import os
import threading
import time

import numpy as np
import pandas as pd
import pytest
from app_files import write_synthetic_embeddings

from visualizer.app import figures
from visualizer.app.config import AppConfig, AppState
from visualizer.app.context import default_layers
from visualizer.app.jobs import Cancelled, ThreadedJobManager, current_job
from visualizer.app.server import create_app
from visualizer.app.thumbs import resolve_under, thumb_url
from visualizer.embeddings.schema import load_embeddings


def _frame(n_seeds: int = 50, classes: int = 5) -> pd.DataFrame:
    seeds = np.arange(n_seeds)
    rows = []
    for m, model in enumerate(("teacher", "student")):
        rows.append(pd.DataFrame({
            "sample_id": [f"{model}-{s}-0" for s in seeds], "seed": seeds, "class_label": seeds % classes,
            "class_name": [f"c{c}" for c in seeds % classes], "model": model, "step": 0,
            "sigma": 80.0 if m else np.geomspace(80, 0.01, n_seeds),
            "umap_x": np.arange(n_seeds) + m * 0.5, "umap_y": np.zeros(n_seeds) + m, "image_path": "t.png",
        }))
    return pd.concat(rows, ignore_index=True)


# -- figures -----------------------------------------------------------------------------------------

def test_scatter_one_legend_entry_per_class_with_names_and_row_numbers():
    frame = _frame()
    fig = figures.scatter_figure(frame, "class")
    assert [t.name for t in fig.data] == [f"{c} · c{c}" for c in range(5)]
    assert all(t.type == "scattergl" for t in fig.data)
    rows = np.concatenate([np.asarray(t.customdata) for t in fig.data])
    assert sorted(rows.tolist()) == list(range(len(frame)))
    assert fig.data[0].marker.color == figures.class_colour(0)
    assert fig.layout.clickmode == "event" and fig.data[0].hoverinfo == "none"


def test_scatter_many_classes_one_trace_per_model_colours_stay_per_class():
    frame = _frame(180, classes=90)          # more than the legend lists, fewer than the 94 colours
    fig = figures.scatter_figure(frame, "class")
    assert [t.name for t in fig.data] == ["teacher", "student"]
    colours = list(fig.data[0].marker.color)
    assert colours[3] == figures.class_colour(3) and colours[93] == figures.class_colour(3)


def test_scatter_more_classes_than_colours_greys_all_but_the_picked():
    frame = _frame(200, classes=100)         # 100 classes, 94 colours: colours would repeat
    fig = figures.scatter_figure(frame, "class")
    assert [t.name for t in fig.data] == ["teacher", "student"]
    assert {fig.data[0].marker.color, fig.data[1].marker.color} == {figures.GREY}
    assert "100 classes, 94 colours: pick classes" in fig.layout.title.text
    fig = figures.scatter_figure(frame, "class", highlight=[3, 97])
    assert [t.name for t in fig.data][-2:] == ["3 · c3", "97 · c97"]
    assert fig.data[-2].marker.color == figures.PALETTE[0] and fig.data[-1].marker.color == figures.PALETTE[1]
    rows = np.concatenate([np.asarray(t.customdata) for t in fig.data])
    assert sorted(rows.tolist()) == list(range(len(frame)))           # every point is still there, grey or not


def test_scatter_filters_links_and_sigma_colouring():
    frame = _frame()
    fig = figures.scatter_figure(frame, "model", classes=[1, 2], models=["student"])
    assert [t.name for t in fig.data] == ["student"] and len(fig.data[0].x) == 20
    assert set(frame.loc[np.asarray(fig.data[0].customdata), "class_label"]) == {1, 2}
    linked = figures.scatter_figure(frame, "model", link=True)
    assert linked.data[0].mode == "lines" and len(linked.data[0].x) == 50 * 3   # two ends + a gap per seed
    sig = figures.scatter_figure(frame, "sigma")
    assert sig.data[0].marker.showscale and sig.data[0].marker.cmin == pytest.approx(np.log10(0.01))
    assert figures.scatter_figure(frame, "class", models=[]).data == ()


def test_comparison_grid_shares_a_scale_per_layer_and_has_a_difference_row():
    rng = np.random.default_rng(0)
    layers = [f"l{i}" for i in range(8)]
    a = figures.Panel("teacher · s", np.zeros((16, 16, 3), np.uint8), {n: rng.random((8, 8)) for n in layers})
    b = figures.Panel("student · s", np.full((16, 16, 3), 9, np.uint8), {n: rng.random((8, 8)) + 1 for n in layers})
    fig = figures.comparison_figure([a, b], layers, columns=6)
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len([t for t in fig.data if t.type == "image"]) == 2
    assert len(heat) == 1 + 3 * len(layers)               # |A-B| pixels + (teacher, student, difference) per layer
    first = heat[1:4]
    lo = min(a.maps["l0"].min(), b.maps["l0"].min())
    assert first[0].zmin == first[1].zmin == pytest.approx(lo) and first[0].zmax == first[1].zmax
    assert first[2].zmid == 0 and first[2].zmin == -first[2].zmax
    np.testing.assert_allclose(np.asarray(first[2].z), a.maps["l0"] - b.maps["l0"], rtol=1e-6)
    assert len(fig._grid_ref) == 1 + 2 * 3                # images row + two bands of 3 rows


def test_single_model_grid_and_similarity_and_gallery():
    p = figures.Panel("teacher · s", np.zeros((8, 8, 3), np.uint8), {"x": np.ones((4, 4)), "y": np.ones((3, 4, 4))})
    fig = figures.comparison_figure([p], ["x", "y", "missing"])   # y is an RGB reduction (pca_rgb)
    assert [t.type for t in fig.data] == ["image", "heatmap", "image"]
    sim = figures.similarity_figure({"a": {"cosine": 0.5, "cka": 0.9}, "b": {"cosine": float("nan"), "cka": 0.1}})
    assert [t.name for t in sim.data] == ["cosine", "CKA"] and sim.data[0].y == (0.5, None)
    cards = figures.gallery([{"url": "/thumbs/a.png", "caption": "c"}] * 5, limit=3)
    assert len(cards) == 4 and "2 more" in cards[-1].children


def test_default_layers_spread_over_the_network():
    legacy = [f"encoder_block_{i}" for i in range(15)] + ["encoder_bottleneck", "midblock"] + \
        [f"decoder_block_{i}" for i in range(1, 21)]
    picked = default_layers(legacy, [])
    assert len(picked) == 8 and picked[0] == "encoder_block_0" and picked[-1] == "decoder_block_20"
    assert "encoder_bottleneck" in picked and picked == [n for n in legacy if n in picked]
    assert default_layers([], ["enc.a", "dec.b"]) == ["enc.a", "dec.b"]


# -- the thumbnail route -----------------------------------------------------------------------------

@pytest.fixture
def served(tmp_path):
    csv = write_synthetic_embeddings(tmp_path / "emb", 20, thumbnails=3)
    outside = tmp_path / "secret.png"
    outside.write_bytes((tmp_path / "emb" / "thumbs" / "0.png").read_bytes())
    os.symlink(outside, tmp_path / "emb" / "thumbs" / "link-out.png")
    os.symlink(tmp_path / "emb" / "thumbs" / "1.png", tmp_path / "emb" / "thumbs" / "link-in.png")
    (tmp_path / "emb" / "notes.txt").write_text("not an image")
    state = AppState(AppConfig(embeddings=csv), load_embeddings(csv), [])
    app = create_app(state)
    return app.server.test_client(), tmp_path


def test_thumbnails_are_served_with_cache_headers(served):
    client, _ = served
    r = client.get(thumb_url("thumbs/0.png"))
    assert r.status_code == 200 and r.mimetype == "image/png" and r.data[:4] == b"\x89PNG"
    assert "max-age=86400" in r.headers["Cache-Control"] and r.headers.get("ETag")
    again = client.get(thumb_url("thumbs/0.png"), headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304
    assert client.get("/thumbs/thumbs/link-in.png").status_code == 200   # a link that stays inside is fine


@pytest.mark.parametrize("url", [
    "/thumbs/../secret.png", "/thumbs/thumbs/../../secret.png", "/thumbs/..%2Fsecret.png",
    "/thumbs/thumbs%2F..%2F..%2Fsecret.png", "/thumbs/%2E%2E/secret.png", "/thumbs/%252E%252E/secret.png",
    "/thumbs//etc/passwd", "/thumbs/%2Fetc%2Fpasswd", "/thumbs/thumbs/link-out.png", "/thumbs/notes.txt",
    "/thumbs/embeddings.csv", "/thumbs/thumbs/missing.png", "/thumbs/thumbs\\0.png", "/thumbs/thumbs/./0.png",
])
def test_thumbnail_route_refuses_anything_outside_the_folder(served, url):
    client, tmp_path = served
    r = client.get(url, follow_redirects=True)
    assert r.status_code == 404, (url, r.status_code)
    assert resolve_under(tmp_path / "emb", str(tmp_path / "secret.png")) is None


def test_app_without_models_is_browse_only(served):
    client, _ = served
    assert client.get("/").status_code == 200
    layout = client.get("/_dash-layout").get_json()
    assert "scatter" in str(layout) and "teacher-progress" in str(layout)


# -- the job manager ----------------------------------------------------------------------------------

def _wait(predicate, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_threaded_manager_runs_reports_progress_and_cancels():
    manager = ThreadedJobManager()
    gate = threading.Event()
    seen = {}

    def work(set_progress, n):
        seen["thread"] = threading.current_thread().name
        for i in range(n):
            set_progress((i, n))
            gate.wait(0.01)
            current_job().check()
        return {"done": n}

    with manager.accepting():
        manager.register("k-work", work, True)
    manager.register("k-ignored", work, True)            # outside accepting(): another app's callback
    assert "k-work" in manager.func_registry and "k-ignored" not in manager.func_registry

    job = manager.call_job_fn("key1", manager.func_registry["k-work"], [3], {})
    assert _wait(lambda: manager.result_ready("key1"))
    assert manager.get_result("key1", job) == {"done": 3} and seen["thread"].startswith("dash-job-")
    assert not manager.job_running(job)

    job = manager.call_job_fn("key2", manager.func_registry["k-work"], [10_000], {})
    assert _wait(lambda: manager.get_progress("key2") is not None)
    assert manager.job_running(job)
    manager.terminate_job(job)
    assert not manager.job_running(job) and manager.running_jobs() == 0
    assert manager.get_result("key2", None) is manager.UNDEFINED      # a cancelled job leaves no result


def test_current_job_outside_a_job_never_cancels():
    current_job().check()
    with pytest.raises(Cancelled):
        job = ThreadedJobManager()
        control = None

        def grab(*_):
            nonlocal control
            control = current_job()
            return 1

        with job.accepting():
            job.register("g", grab, False)
        job.call_job_fn("kg", job.func_registry["g"], [], {})
        assert _wait(lambda: control is not None)
        control.event.set()
        control.check()


def test_models_come_from_the_sidecar_when_not_given(tmp_path):
    """--embeddings alone: the sidecar's models load, checkpoints relative to the CSV's folder too."""
    from app_files import write_pair

    from visualizer.app.config import load

    pkl, student = write_pair(tmp_path / "emb" / "ckpt")
    models = {"t": {"adapter": "edm-imagenet-64", "checkpoint": "ckpt/teacher.pkl", "role": "teacher"},
              "s": {"adapter": "dmd2-imagenet-64", "checkpoint": str(student), "role": "student"}}
    csv = write_synthetic_embeddings(tmp_path / "emb", 8, models=models)
    state = load(AppConfig(embeddings=csv, device="cpu", num_steps=5))
    assert [(s.key, s.adapter.name, s.sample_kwargs.get("num_steps")) for s in state.slots] == [
        ("t", "edm-imagenet-64", 5), ("s", "dmd2-imagenet-64", None)]
    assert state.slots[0].adapter.checkpoint == str(pkl)


def test_row_numbers_from_the_browser_are_checked(tmp_path):
    csv = write_synthetic_embeddings(tmp_path, 5, thumbnails=2)
    ctx = create_app(AppState(AppConfig(embeddings=csv), load_embeddings(csv), [])).visualizer
    assert ctx.row(3)["sample_id"] == "teacher-3-0" and ctx.row(9)["model"] == "student"
    for bad in (10, -1, "3", 2.0, True, None, [1]):
        assert ctx.row(bad) is None
    assert ctx.valid_rows([4, 4, 99, "x", 0, -2]) == [0, 4]
