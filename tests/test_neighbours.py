"""Nearest neighbours where the map was made, "generate from neighbours", and the map's trust figure (issue 17),
on the shipped demo run (its real PCA space and map; the digits teacher and student for the edits): the engine
(`visualizer.inspection.neighbours`) and the page's callbacks (`visualizer.app.neighbours`) without a browser."""

import dataclasses

import numpy as np
import pytest
from sklearn.manifold import trustworthiness

from visualizer.app import edits, neighbours, panels, scatter
from visualizer.app.config import AppConfig, demo_config, load
from visualizer.app.context import build_context
from visualizer.app.ids import ID
from visualizer.embeddings.schema import load_embeddings
from visualizer.errors import UserError
from visualizer.inspection import Request
from visualizer.inspection.edits import EditSpec, samples_of, samples_source
from visualizer.inspection.neighbours import MAX_K, NeighbourIndex, map_trust
from visualizer.trace import Edit

LAYER = "encoder_bottleneck"


@pytest.fixture(scope="module")
def state():
    return load(dataclasses.replace(demo_config(), device="cpu"))


@pytest.fixture(scope="module")
def ctx(state):
    return build_context(state)


@pytest.fixture(scope="module")
def index(ctx):
    return ctx.neighbours


def _row(ctx, model="student", seed=5):
    f = ctx.frame
    return int(f.index[(f["model"] == model) & (f["seed"] == seed)][0])


# -- the engine -------------------------------------------------------------------------------------------

def test_a_rows_neighbours_start_with_itself_at_distance_zero_nearest_first(index, ctx):
    space = index.space()
    for row in (0, _row(ctx), len(ctx.frame) - 1):
        found = index.neighbours(row, 8)
        assert len(found) == 9 and found[0].row == row and found[0].distance == 0.0
        d = [n.distance for n in found]
        assert d == sorted(d) and len({n.row for n in found}) == 9
        # distances are Euclidean in the run's PCA space, not on the 2-D map
        far = found[-1]
        assert far.distance == pytest.approx(float(np.linalg.norm(space.features[far.row] - space.features[row])),
                                             rel=1e-5)
        assert (far.seed, far.model) == (int(ctx.frame.iloc[far.row]["seed"]), ctx.frame.iloc[far.row]["model"])
    brute = np.linalg.norm(space.features - space.features[7], axis=1)
    assert {n.row for n in index.neighbours(7, 5)} == set(np.argsort(brute, kind="stable")[:6].tolist())


@pytest.mark.parametrize("k", [0, MAX_K + 1, 2.5, True, None, "8", -3])
def test_k_is_bounded(index, k):
    with pytest.raises(UserError, match="K: a whole number from 1 to 32"):
        index.neighbours(0, k)


@pytest.mark.parametrize("row", [-1, 1200, 10**9, "3", None, True, 2.0])
def test_rows_are_checked(index, row):
    with pytest.raises(UserError, match="row: expected a row of the run"):
        index.neighbours(row, 4)


def test_a_run_without_pca_features_says_what_is_missing(tmp_path):
    from app_files import write_synthetic_embeddings

    emb = load_embeddings(write_synthetic_embeddings(tmp_path, 12))
    idx = NeighbourIndex(emb.frame.reset_index(drop=True), emb.root)
    for _ in range(2):                         # the reason is kept, not looked up again
        with pytest.raises(UserError, match="features.npy"):
            idx.neighbours(0, 3)
    with pytest.raises(UserError, match="no embeddings loaded"):
        NeighbourIndex(None, None).neighbours(0, 3)


def test_the_trust_figure_is_sklearns_trustworthiness_with_interval_and_null(index):
    space = index.space()
    t = index.trust(8)
    assert index.trust(8) is t                              # once per run and K
    assert t.n == t.rows == len(space.features)
    assert t.trustworthiness == pytest.approx(trustworthiness(space.features, space.xy, n_neighbors=8), abs=1e-12)
    assert t.low <= t.trustworthiness <= t.high and t.high - t.low < 0.05
    assert 0.4 < t.null < 0.6 < t.trustworthiness           # a random map scores about 0.5
    assert t.agreement_low <= t.agreement <= t.agreement_high
    assert t.agreement_null == pytest.approx(8 / (t.n - 1), rel=0.5) and t.agreement > 5 * t.agreement_null
    # the first two PCA coordinates as a map keep more neighbourhoods than a shuffled map
    same = map_trust(space.features[:300], space.features[:300, :2], 5)
    shuffled = map_trust(space.features[:300], np.random.default_rng(1).permutation(space.xy[:300]), 5)
    assert shuffled.trustworthiness < same.trustworthiness and shuffled.trustworthiness < 0.65


def test_the_trust_figure_is_bounded_to_a_sample(index):
    space = index.space()
    t = map_trust(space.features, space.xy, 4, sample=500, seed=3)
    assert (t.n, t.rows) == (500, len(space.features))
    with pytest.raises(UserError, match="needs more than"):
        map_trust(space.features[:10], space.xy[:10], 8)


def test_the_points_own_agreement_counts_shared_neighbours(index):
    space = index.space()
    row, k = 42, 6
    pca = [i for i in np.argsort(np.linalg.norm(space.features - space.features[row], axis=1)) if i != row][:k]
    on_map = [i for i in np.argsort(np.linalg.norm(space.xy - space.xy[row], axis=1)) if i != row][:k]
    p = index.point_agreement(row, k)
    assert p.shared == len(set(pca) & set(on_map)) and p.fraction == p.shared / k
    assert p.null == pytest.approx(k / (len(space.features) - 1))


def test_neighbours_become_samples_at_their_own_seed_and_class_without_the_clicked_one(index, ctx):
    f = ctx.frame
    query = _row(ctx, "student", 5)
    twin = _row(ctx, "teacher", 5)                      # the same sample, the other model's row
    other = _row(ctx, "teacher", 14)
    source = index.edit_source(query, [twin, other, _row(ctx, "student", 14), _row(ctx, "student", 23)])
    assert source == f"samples:14@{f.iloc[other]['class_label']},23@{f.iloc[_row(ctx, 'student', 23)]['class_label']}"
    with pytest.raises(UserError, match="all this sample itself"):
        index.edit_source(query, [twin])
    with pytest.raises(UserError, match="row: expected"):
        index.edit_source(query, [10**6])


def test_the_samples_source_is_checked():
    assert samples_of("samples:3@1,9@0") == [(3, 1), (9, 0)] and samples_of("seeds:1,2") == []
    assert samples_source([(3, 1), (3, 1), (9, 0)]) == "samples:3@1,9@0"
    assert EditSpec("student", LAYER, "mean", source="samples:3@1").source == "samples:3@1"
    for bad in ("samples:", "samples:3", "samples:3@", "samples:3@1,", "samples:a@1", "samples:3@1;rm"):
        with pytest.raises(UserError, match="is not 'other'"):
            EditSpec("student", LAYER, "replace", source=bad)
    with pytest.raises(UserError, match="at most 64"):
        samples_source([(s, 0) for s in range(65)])
    with pytest.raises(UserError, match="no samples"):
        samples_source([])


def test_a_samples_edit_equals_the_manual_mean_at_each_samples_own_class(ctx):
    ins = ctx.inspector
    slot = ins.slots["student"]
    pairs = [(11, 3), (40, 7), (58, 0)]
    t = slot.adapter.trace([s for s, _ in pairs], [c for _, c in pairs], [LAYER], steps="all",
                           settings=slot.settings(), to_cpu=False)
    mean = t[(LAYER, 0)].mean(0, keepdim=True)
    manual = slot.adapter.trace([100], 5, [LAYER], settings=slot.settings(), edits=[Edit.replace(LAYER, mean)])
    spec = EditSpec("student", LAYER, "replace", source=samples_source(pairs))
    look = ins.first_look(Request.make(100, 5, [LAYER], edits=[spec]), models=["student"])
    np.testing.assert_array_equal(look.finals["student"], manual.images[0])
    # not the same as those seeds at the clicked class, nor as no edit
    same_class = ins.first_look(Request.make(100, 5, [LAYER], edits=[
        EditSpec("student", LAYER, "replace", source="seeds:11,40,58")]), models=["student"])
    assert not np.array_equal(same_class.finals["student"], look.finals["student"])
    assert not np.array_equal(look.originals["student"].image, look.views["student"].image)
    with pytest.raises(UserError, match="class 10 is out of range"):
        ins.first_look(Request.make(100, 5, [LAYER], edits=[
            EditSpec("student", LAYER, "replace", source="samples:1@10")]))


# -- the page, without a browser ------------------------------------------------------------------------

def _click(ctx, row):
    return scatter.choose(ctx, ID.scatter, {"points": [{"customdata": row}]}, None, None, None)[0]


def test_a_click_lists_the_neighbours_with_distances_and_the_trust_figure(ctx):
    row = _row(ctx)
    cards, store, status, trust = neighbours.gallery(ctx, _click(ctx, row), 6)
    assert len(cards) == 7 and cards[0].to_plotly_json()["props"]["data-row"] == str(row)
    assert store == {"query": row, "rows": [int(c.to_plotly_json()["props"]["data-row"]) for c in cards[1:]]}
    assert "6 nearest" in status and "PCA space" in status
    first, second = cards[0], cards[1]
    assert first.children[-1].children == "this point" and second.children[-1].children.startswith("d ")
    assert first.children[0].src.startswith("/thumbs/")
    text = " ".join(str(line.children) for line in trust)
    assert "trustworthiness 0.9" in text and "random map 0.5" in text and "one sample: descriptive" in text
    assert "Reading:" in text
    # a typed seed and class (no row) is looked up on the map; one the map lacks is said so
    typed = scatter.choose(ctx, ID.generate, None, 1, 5, 5)[0]
    assert neighbours.gallery(ctx, typed, 6)[1]["query"] in (row, _row(ctx, "teacher"))
    assert "not a point of this map" in neighbours.gallery(ctx, scatter.choose(ctx, ID.generate, None, 1, 999999, 1)[0],
                                                           6)[2]
    # K out of bounds: the status says so and nothing is listed
    cards, store, status, _ = neighbours.gallery(ctx, _click(ctx, row), 99)
    assert cards == [] and store is None and "K: a whole number" in status.children
    assert neighbours.gallery(ctx, None, 6)[0] == []


def test_a_neighbours_card_opens_it_like_a_click_on_the_scatter(ctx):
    row = _row(ctx, "teacher", 23)
    clicked, seed, label = neighbours.open_neighbour(ctx, {"row": row, "at": 1.0})
    expected = _click(ctx, row)
    assert {k: v for k, v in clicked.items() if k != "clicked_at"} == \
        {k: v for k, v in expected.items() if k != "clicked_at"}
    assert (seed, label) == (expected["seed"], expected["class_label"])
    from dash.exceptions import PreventUpdate
    for pick in (None, {"row": 10**6, "at": 1.0}):
        with pytest.raises(PreventUpdate):
            neighbours.open_neighbour(ctx, pick)


def test_generate_from_neighbours_adds_an_edit_and_the_edited_panel_shows_it(ctx):
    row = _row(ctx)
    clicked = _click(ctx, row)
    store = neighbours.gallery(ctx, clicked, 4)[1]
    first = panels.first_look(ctx, clicked, [LAYER], "l2", None)[0]
    made, message = neighbours.generate(ctx, 1, store, "student", ctx.inspector.aliases()[LAYER], [])
    spec = EditSpec.from_dict(made[0])
    assert (spec.model, spec.layer, spec.op) == ("student", LAYER, "replace")       # native name stored canonically
    assert spec.source == ctx.neighbours.edit_source(row, store["rows"]) and "from the mean over" in message
    images, changes, items, status = edits.edited(ctx, made, first)
    assert [t.name for t in images.data] == ["student (sample) original", "student (sample) edited",
                                             "student (sample) difference"]
    assert "1 edit applied" in status and "from the mean over" in items[0].children
    # the edit form's "values from: neighbours" makes the same edit
    form = dict(model="student", layer=LAYER, op="replace", channels=None, painted=None, sigma_low=None,
                sigma_high=None, factor=1, source="neighbours", source_seed=None, class_a=None, class_b=None,
                selection=[])
    assert edits.edit_list(ctx, ID.edit_apply, 1, 0, 0, [], *form.values(), store)[0] == made
    assert "click a point of the map" in edits.edit_list(ctx, ID.edit_apply, 1, 0, 0, [], *form.values(), None)[1]
    # refused: no neighbours yet, too many edits, no layer
    assert "click a point" in neighbours.generate(ctx, 1, None, "student", LAYER, [])[1]
    assert "at most 8 edits" in neighbours.generate(ctx, 1, store, "student", LAYER, made * 8)[1]
    assert "pick a model and a layer" in neighbours.generate(ctx, 1, store, "nobody", LAYER, [])[1]


def test_a_browse_only_context_has_no_neighbours_callbacks(tmp_path):
    from app_files import write_synthetic_embeddings

    csv = write_synthetic_embeddings(tmp_path, 12)
    c = build_context(load(AppConfig(embeddings=csv)))
    clicked = _click(c, 3)
    cards, store, status, _ = neighbours.gallery(c, clicked, 4)
    assert cards == [] and store is None and "features.npy" in status.children
