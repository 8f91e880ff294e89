"""Teacher vs student over many samples in the page (issue 15): the engine (`inspection.comparison`) and the
feature's callbacks and figures (`app.comparison`), without a browser.

Real parts throughout: the tiny real-format pair of tests/app_files.py for fresh traces, and the shipped
demo run's pooled bottleneck store (600 seeds) for the stores source. Seeds, layers and resamples are
kept small: these check what is computed and said, not the statistics (tests/test_cka.py does).
"""

import dataclasses

import numpy as np
import plotly.graph_objects as go
import pytest
from app_files import pair_models, write_pair, write_synthetic_embeddings
from dash import no_update
from dash.exceptions import PreventUpdate

from visualizer.app import comparison, panels
from visualizer.app.config import AppConfig, demo_config, load
from visualizer.app.context import AppContext, build_context
from visualizer.app.jobs import Cancelled
from visualizer.errors import UserError
from visualizer.inspection.comparison import AlignmentQuery, Comparisons, MatrixQuery
from visualizer.metrics.cka import cka_matrix

STEPS = 3
LAYERS = ["encoder_block_0", "encoder_bottleneck", "decoder_block_6"]


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    folder = tmp_path_factory.mktemp("comparison")
    pkl, student = write_pair(folder / "ckpt")
    models = pair_models(pkl, student)
    return load(AppConfig(embeddings=write_synthetic_embeddings(folder / "emb", 12, models=models), device="cpu",
                          num_steps=STEPS))


@pytest.fixture(scope="module")
def ctx(state) -> AppContext:
    return build_context(state)


@pytest.fixture(scope="module")
def demo() -> AppContext:
    return build_context(load(demo_config()))


# -- the engine -----------------------------------------------------------------------------------------

def test_fresh_trace_matrix_says_where_its_rows_come_from_and_is_cached(ctx):
    engine = Comparisons.of(ctx.inspector, ctx.root)
    assert Comparisons.of(ctx.inspector, ctx.root) is engine          # one engine per loaded pair
    assert engine.run() is None                   # the synthetic table has no activation stores
    seen = []
    # 40 seeds and 100 resamples: at 10 seeds (halves of 5) a half-sample's debiased CKA can sit above the
    # full estimate in every draw, so the interval need not hold it (seen once in CI as lo > estimate)
    q = MatrixQuery(tuple(LAYERS), 0, "auto", tuple(range(40)), None, 100)
    m = engine.matrix(q, progress=lambda *a: seen.append(a))
    assert m.rows == m.cols == LAYERS and m.n == 40 and m.estimate.shape == (3, 3)
    src = m.context["source"]
    assert src["kind"] == "trace" and src["resolution"] == "full" and src["pooled"] is False
    assert src["seeds"] == [[0, 39]] and m.context["teacher"]["step"] == 0 and m.context["teacher"]["sigma"] == 80
    assert seen[-1][0] == seen[-1][1] and "CKA" in seen[-1][2]
    assert np.all(m.lo <= m.estimate + 1e-9) and np.all(m.estimate <= m.hi + 1e-9)
    assert np.all(m.null_lo <= m.null_hi)
    hits = ctx.inspector.cache.hits
    assert engine.matrix(q) is m and ctx.inspector.cache.hits == hits + 1          # a repeat is a lookup

    last = engine.matrix(MatrixQuery(tuple(LAYERS[:1]), STEPS - 1, "trace", tuple(range(8)), 3, 0))
    assert last.context["teacher"]["step"] == STEPS - 1 and last.context["teacher"]["sigma"] < 1
    assert last.context["class_label"] == 3


def test_the_engine_refuses_what_it_cannot_do(ctx, monkeypatch):
    engine = Comparisons.of(ctx.inspector, ctx.root)
    from visualizer.inspection import comparison as engine_module

    monkeypatch.setattr(engine_module, "MAX_TRACE_BYTES", 1 << 20)      # memory bounds, said before any trace
    with pytest.raises(UserError, match="full-resolution layers take"):
        engine.matrix(MatrixQuery(tuple(LAYERS), 0, "trace", tuple(range(500))))
    monkeypatch.setattr(engine_module, "MAX_ALIGNMENT_BYTES", 1 << 10)
    with pytest.raises(UserError, match="teacher steps take"):
        engine.alignment(AlignmentQuery(tuple(LAYERS), "trace", tuple(range(64))))
    monkeypatch.undo()
    with pytest.raises(UserError, match="no pooled stores"):
        engine.matrix(MatrixQuery(tuple(LAYERS), 0, "stores"))
    with pytest.raises(UserError, match="8 to 1024 seeds"):
        engine.matrix(MatrixQuery(tuple(LAYERS), 0, "trace", tuple(range(4))))
    with pytest.raises(UserError, match="teacher step 4"):
        engine.matrix(MatrixQuery(tuple(LAYERS), STEPS))
    with pytest.raises(UserError, match="unknown layer"):
        engine.matrix(MatrixQuery(("nope",)))
    with pytest.raises(UserError, match="8 to 64 seeds"):
        engine.alignment(AlignmentQuery(tuple(LAYERS), "trace", tuple(range(65))))
    with pytest.raises(UserError, match="all-step stores|every teacher step"):
        engine.alignment(AlignmentQuery(tuple(LAYERS), "stores"))


def test_a_cancelled_trace_stops_and_caches_nothing(ctx):
    engine = Comparisons.of(ctx.inspector, ctx.root)
    calls = []

    def stop():
        calls.append(1)
        if len(calls) > 1:
            raise Cancelled()

    q = MatrixQuery(tuple(LAYERS), 0, "trace", tuple(range(40, 80)), None, 5)
    with pytest.raises(Cancelled):
        engine.matrix(q, should_stop=stop)
    misses = ctx.inspector.cache.misses
    engine.matrix(q)                          # computed now: the cancelled one left nothing behind
    assert ctx.inspector.cache.misses == misses + 1


def test_sigma_alignment_from_a_fresh_trace(ctx):
    engine = Comparisons.of(ctx.inspector, ctx.root)
    a = engine.alignment(AlignmentQuery(tuple(LAYERS), "auto", tuple(range(10)), 20))
    assert a.layers == LAYERS and a.steps == list(range(STEPS)) and a.estimate.shape == (3, STEPS)
    assert a.sigmas[0] == 80 and a.context["source"]["kind"] == "trace" and a.n == 10
    ridge = a.ridge()
    assert [r["layer"] for r in ridge] == LAYERS and all(r["step"] in a.steps for r in ridge)
    pools = {n: p["pool"] for n, p in a.context["source"]["layers"].items()}
    assert set(pools) == set(LAYERS)           # pooled as embed --pool auto records them


def test_the_demo_run_feeds_the_matrix_from_its_pooled_store(demo):
    engine = Comparisons.of(demo.inspector, demo.root)
    assert engine.stores_hold(["encoder_bottleneck"], 0) and not engine.stores_hold(["encoder_block_0"], 0)
    assert not engine.stores_hold(["encoder_bottleneck"], 5)          # the run recorded only the first step
    m = engine.matrix(MatrixQuery(("encoder_bottleneck",), 0, "auto", resamples=50))
    src = m.context["source"]
    assert src["kind"] == "stores" and src["pooled"] and m.n == 600
    assert src["layers"]["encoder_bottleneck"]["pool"] == "avg2"
    cell = m.diagonal()[0]
    assert cell["null_hi"] < cell["lo"]        # far above what shuffled pairs score
    one = engine.matrix(MatrixQuery(("encoder_bottleneck",), 0, "stores", class_label=7, resamples=20))
    assert one.n == 60 and one.context["class_label"] == 7
    assert engine.alignment_run(["encoder_bottleneck"]) is None or engine.alignment_run(
        ["encoder_bottleneck"]).root != engine.run().root          # only a derived all-steps run could serve


def test_sample_report_reference_means_once_per_model(ctx):
    engine = Comparisons.of(ctx.inspector, ctx.root)
    first = engine.sample_report(3, 3)
    assert first["label"] == "one sample: descriptive" and first["other_seed"] == 4
    assert list(first["layers"]) == ctx.inspector.native_layers()
    misses = ctx.inspector.cache.misses
    engine.sample_report(5, 3)
    assert ctx.inspector.cache.misses == misses + 1        # the report only: the means came from the cache
    layer = first["layers"]["enc.8x8_block0"] if "enc.8x8_block0" in first["layers"] else \
        next(iter(first["layers"].values()))
    assert {"noise", "other_seed_a", "other_seed_b"} <= set(layer["baselines"])


# -- figures --------------------------------------------------------------------------------------------

def _matrix():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))
    return cka_matrix({"a": x, "b": rng.normal(size=(40, 5))}, {"a": x @ rng.normal(size=(6, 6)), "c": x[:, :3]},
                      resamples=20, null=39)


def test_matrix_and_diagonal_figures_carry_intervals_and_the_null():
    m = _matrix()
    fig = comparison.matrix_figure(m, {"a": "A"}, "title")
    heat = fig.data[0]
    assert heat.type == "heatmap" and list(heat.y) == ["A", "b"] and list(heat.x) == ["A", "c"]
    assert "interval" in heat.hovertemplate and "null" in heat.hovertemplate
    assert np.asarray(heat.customdata).shape == (2, 2, 5)
    diag = comparison.diagonal_figure(m, {"a": "A"})
    names = [t.name for t in diag.data]
    assert "shuffled-pair null (95% of shuffles)" in names and "95% interval (half-sample resamples)" in names
    assert [t.fill for t in diag.data].count("tonexty") == 2 and list(diag.data[-1].x) == ["A"]
    for empty in (comparison.matrix_figure(None), comparison.diagonal_figure(None), comparison.alignment_figure(None)):
        assert isinstance(empty, go.Figure) and not empty.data


def test_seed_ranges_are_bounded():
    assert comparison.parse_seed_ranges("0-9, 20-21", 64) == tuple(range(10)) + (20, 21)
    for bad, why in (("0-3", "at least 8"), ("0-99", "at most 64"), ("a-b", "not a seed"), ("9-0", "not a range"),
                     ("0-4294967296", "not a range")):
        with pytest.raises(UserError, match=why):
            comparison.parse_seed_ranges(bad, 64)


# -- callbacks ------------------------------------------------------------------------------------------

def test_matrix_job_draws_the_matrix_and_says_what_it_compared(ctx):
    progress = []
    fig, diag, status = comparison.matrix_job(ctx, progress.append, 1, LAYERS, 0, "auto", "10-19", "all", 20, "native")
    assert fig.data[0].type == "heatmap" and "fresh trace, full resolution" in fig.layout.title.text
    aliases = ctx.inspector.aliases()
    assert list(fig.data[0].y) == [aliases[n] for n in LAYERS]          # the page's naming
    assert "teacher step 1 (σ 80)" in status and "10 samples" in status and "fresh trace of seeds 10-19" in status
    assert progress[0] == (None, "1", "starting ...") and progress[-1][0] == progress[-1][1]
    assert len(diag.data) == 5

    _, _, status = comparison.matrix_job(ctx, progress.append, 1, LAYERS[:1], STEPS - 1, "trace", "0-7", 2, 0,
                                         "legacy")
    assert f"teacher step {STEPS}" in status and "class 2" in status


def test_matrix_job_refusals_are_said_in_its_status(ctx):
    for args, why in (((LAYERS, 0, "auto", "0-3", "all", 20), "at least 8"),
                      (([], 0, "auto", "0-9", "all", 20), "pick at least one layer"),
                      ((LAYERS, 0, "stores", "0-9", "all", 20), "no pooled stores"),
                      ((LAYERS, 0, "auto", "0-9", "all", 5000), "resamples")):
        out = comparison.matrix_job(ctx, lambda _: None, 1, *args)
        assert out[:2] == (no_update, no_update) and why in out[2].children
    with pytest.raises(PreventUpdate):
        comparison.matrix_job(ctx, lambda _: None, None, LAYERS, 0, "auto", "0-9", "all", 20)


def test_alignment_job_marks_the_ridge(ctx):
    fig, status = comparison.alignment_job(ctx, lambda _: None, 1, LAYERS, "auto", "0-9", 20, "legacy")
    heat, ridge = fig.data
    assert heat.type == "heatmap" and list(heat.y) == LAYERS and len(heat.x) == STEPS
    assert heat.x[0] == "1 (σ 80)" and ridge.mode == "markers" and len(ridge.y) == len(LAYERS)
    assert set(ridge.x) <= set(heat.x) and "peak" in ridge.hovertemplate
    assert "10 samples, 3 teacher steps" in status and "fresh trace" in status
    out = comparison.alignment_job(ctx, lambda _: None, 1, LAYERS, "stores", "0-9", 20, "legacy")
    assert out[0] is no_update and "error" in out[1].children


def test_the_per_sample_chart_has_its_baselines_and_says_descriptive(ctx):
    first, _, placeholder, _ = panels.first_look(ctx, {"seed": 3, "class_label": 3}, ["encoder_block_0"], "l2", None)
    assert "computing" in placeholder.layout.annotations[0].text      # the panels do not wait for the chart
    sim = panels.relabel_similarity(ctx, None, first)
    assert "one sample: descriptive" in sim.layout.title.text
    names = {t.name for t in sim.data}
    assert {"teacher vs student, same seed", "baseline: noise of the layer's shape (95% of 32 draws)",
            "baseline: teacher vs itself, another seed of the class",
            "baseline: student vs itself, another seed of the class"} <= names
    assert [a.text for a in sim.layout.annotations][:2] == [t for _, t in panels.REPORT_TRACES]
    assert len(sim.layout.shapes) == 1                        # the layer in the panels, shaded across both


def test_the_page_has_the_box_and_registers_its_jobs(state):
    from visualizer.app.server import create_app

    app = create_app(state)
    outputs = " ".join(app.callback_map)
    assert "cmp-matrix.figure" in outputs and "align-graph.figure" in outputs
    assert set(app.visualizer.comparison_jobs) == {"matrix", "align"}


def test_pooled_stores_feed_the_matrix_at_any_recorded_step_and_the_alignment(tmp_path, state):
    """An embed run's stores (written as `embed` writes them, test_compare_models.write_run) at every teacher
    step: the matrix at step 2 and the sigma alignment come from them; a run holding only the first step finds
    an all-steps run made from it under data/runs (here `runs_dir`)."""
    from test_compare_models import SIGMAS, write_run

    from visualizer.inspection import Inspector

    four = load(dataclasses.replace(state.config, num_steps=len(SIGMAS)))
    inspector = Inspector(four.slots)
    layers = ("encoder_bottleneck", "midblock")       # made-up rows: the student's first resembles step 1
    full = write_run(tmp_path / "runs" / "base-all-steps-1", layers=layers)
    engine = Comparisons(inspector, full, runs_dir=tmp_path / "runs")
    assert engine.stores_hold(layers, 2) and engine.alignment_run(layers).root == full
    m = engine.matrix(MatrixQuery(layers, 2, "auto", resamples=20))
    assert m.context["source"]["kind"] == "stores" and m.context["teacher"]["step"] == 2 and m.n == 60
    a = engine.alignment(AlignmentQuery(layers, "auto", resamples=20))
    assert a.context["source"]["kind"] == "stores" and a.steps == [0, 1, 2, 3]
    assert a.ridge()[0]["step"] == 1

    base = write_run(tmp_path / "base", layers=layers, teacher_steps=(0,))
    engine = Comparisons(inspector, base, runs_dir=tmp_path / "runs")
    assert not engine.stores_hold(layers, 2) and engine.alignment_run(layers).root == full
    assert engine.alignment(AlignmentQuery(layers, "stores", resamples=20)).context["source"]["run"] == str(full)
