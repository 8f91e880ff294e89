"""Placing points on a run's map, neighbours in its PCA space, and the map's trustworthiness (a real tiny run)."""

import json

import numpy as np
import pytest
from overlap import overlap
from test_embed_pipeline import BATCH, TEACHER_STEPS, ckpts, reference  # noqa: F401  (the session's tiny run)

from visualizer.embeddings.placement import MapSpace
from visualizer.embeddings.schema import load_embeddings
from visualizer.errors import UserError


@pytest.fixture()
def space(reference):  # noqa: F811
    emb = load_embeddings(reference / "embeddings.csv")
    return MapSpace.load(reference, emb.frame[["umap_x", "umap_y"]].to_numpy()), emb


def unique_rows(m, emb, n=3):
    """Rows whose features no other row shares (the fixture's teacher and student are one net, so their
    step-0 rows coincide; the teacher's last step is its own)."""
    last = emb.frame.index[(emb.frame["model"] == "teacher") & (emb.frame["step"] > 0)].tolist()
    return last[:n]


def test_a_training_row_lands_on_its_own_position(space):
    m, emb = space
    rows = unique_rows(m, emb)
    np.testing.assert_array_equal(m.place(m.features[rows]), m.xy[rows])
    idx, dist = m.neighbours(m.features[rows], k=3)
    assert idx[:, 0].tolist() == rows and (dist[:, 0] < 1e-5).all() and (np.diff(dist, axis=1) >= 0).all()


def test_new_points_land_among_their_neighbours(space):
    m, _ = space
    q = m.features[:4] + 1e-3 * np.random.default_rng(0).standard_normal(m.features[:4].shape).astype(np.float32)
    xy = m.place(q, k=5)
    idx, _ = m.neighbours(q, k=5)
    lo, hi = m.xy[idx].min(1), m.xy[idx].max(1)
    assert ((xy >= lo - 1e-5) & (xy <= hi + 1e-5)).all()


def test_a_fresh_trace_projects_where_the_run_put_it(space, ckpts):  # noqa: F811
    from visualizer.adapters import get_adapter

    m, emb = space
    teacher = get_adapter("edm-imagenet-64").from_checkpoint(ckpts[0], device="cpu")
    row = emb.frame.loc[unique_rows(m, emb)[1]]
    layers = [e["name"] for e in json.loads((m.basis_dir / "basis.json").read_text())["layers"]]
    # The run's batch of that seed (CPU kernels may differ in the last bits between batch shapes).
    start = int(row.seed) // BATCH * BATCH
    seeds = list(range(start, start + BATCH))
    t = teacher.trace(seeds, [s % 10 for s in seeds], layers, steps="last", num_steps=TEACHER_STEPS)
    k = seeds.index(int(row.seed))
    q = m.project({n: t[(n, t.steps[0])][k:k + 1] for n in layers})
    np.testing.assert_allclose(m.place(q), m.xy[[row.name]], atol=1e-4)


def test_trustworthiness_is_high_for_the_map_and_low_for_noise(space):
    m, _ = space
    good = m.trustworthiness(k=5)
    shuffled = MapSpace(m.features, np.random.default_rng(0).permutation(m.xy), m.basis_dir)
    assert 0.5 < good <= 1 and shuffled.trustworthiness(k=5) < good


def test_missing_features_are_named(tmp_path):
    with pytest.raises(UserError, match="features.npy"):
        MapSpace.load(tmp_path, np.zeros((3, 2)))


def test_searches_from_two_threads_leave_the_blas_thread_count_as_it_was(tmp_path):
    """sklearn caps BLAS at one thread around each neighbour search by setting the process's count and putting
    back the count it found. A search that starts inside another thread's finds the cap and, ending last, puts
    it back for good (seen in the app: its callbacks run in threads; later BLAS work ran on one thread, and an
    `embed` run in that process then wrote another map). Here B starts while A is inside its search and takes
    longer: the searches must not overlap."""
    from threadpoolctl import ThreadpoolController

    rng = np.random.default_rng(0)
    space = MapSpace(rng.normal(size=(20_000, 32)).astype(np.float32), rng.normal(size=(20_000, 2)).astype(np.float32),
                     tmp_path)
    space.index     # noqa: B018  (built before the threads start)
    blas = ThreadpoolController().select(user_api="blas").lib_controllers

    def counts() -> set[int]:
        return {lib.get_num_threads() for lib in blas}

    before = counts()
    if not blas or before == {1}:
        pytest.skip("BLAS runs on one thread here (or threadpoolctl finds none): a cap of one cannot be seen")
    for _ in range(5):
        overlap(lambda: space.neighbours(space.features[:2_000], 5),
                lambda: space.neighbours(space.features[:8_000], 5), inside=lambda: counts() == {1})
        assert counts() == before
