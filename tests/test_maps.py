"""Per-layer and per-step maps (`embed --maps per-layer`): written beside the main map, listed in the sidecar,
checked on read; old runs open with the main map alone (a real tiny run, resumed with the option)."""

import json
import shutil

import numpy as np
import pytest
from test_embed_pipeline import LAYERS, NUM_SEEDS, TEACHER_STEPS, ckpts, embed_args, reference  # noqa: F401

from visualizer.cli import main
from visualizer.embeddings.maps import MAIN, map_id
from visualizer.embeddings.schema import load_embeddings
from visualizer.errors import UserError

_RUN: dict = {}


@pytest.fixture()
def mapped(reference, ckpts, tmp_path_factory):  # noqa: F811
    """The reference run, copied and rerun with --maps per-layer: it resumes and adds the maps."""
    if "run" not in _RUN:
        out = tmp_path_factory.mktemp("mapped") / "run"
        shutil.copytree(reference, out)
        assert main(embed_args(ckpts, out, **{"--maps": "per-layer"})) == 0
        _RUN["run"] = out
    return _RUN["run"]


def copy_of(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def test_per_layer_maps_are_written_listed_and_read(mapped, reference):  # noqa: F811
    # The main map is untouched: the same table, bit for bit.
    assert (mapped / "embeddings.csv").read_text() == (reference / "embeddings.csv").read_text()
    emb = load_embeddings(mapped / "embeddings.csv")
    side = emb.sidecar
    steps = [0, TEACHER_STEPS - 1]
    assert [m["id"] for m in side["maps"]] == [map_id(layer, s) for layer in LAYERS for s in steps]
    assert [m.id for m in emb.maps] == [MAIN] + [map_id(layer, s) for layer in LAYERS for s in steps]
    main_map = emb.maps[0]
    np.testing.assert_array_equal(main_map.xy, emb.frame[["umap_x", "umap_y"]].to_numpy(np.float32))
    frame = emb.frame
    for m in emb.maps[1:]:
        assert (mapped / "maps" / f"{m.id}.npy").is_file()
        (step,) = m.steps
        expected = np.flatnonzero((frame["step"] == step).to_numpy())
        np.testing.assert_array_equal(m.rows, expected)
        assert len(m.layers) == 1 and m.layers[0] in m.about and f"step {step + 1}" in m.name
        # at step 0 both models (teacher and student share the first input), at the last step the teacher alone
        assert set(frame["model"].iloc[m.rows]) == ({"teacher", "student"} if step == 0 else {"teacher"})
    assert len(emb.maps[1].rows) == 2 * NUM_SEEDS and len(emb.maps[2].rows) == NUM_SEEDS
    # Each layer's map is its own: not the main map's coordinates.
    assert not np.allclose(emb.maps[1].xy[emb.maps[1].rows], main_map.xy[emb.maps[1].rows])


def test_an_old_run_opens_with_the_main_map_alone(reference):  # noqa: F811
    emb = load_embeddings(reference / "embeddings.csv")
    assert "maps" not in emb.sidecar and [m.id for m in emb.maps] == [MAIN]


def _edit_sidecar(run, change):
    path = run / "embeddings.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("change, message", [
    (lambda d: d["maps"][0].update(rows=-1), r"field 'maps\.0\.rows'"),
    (lambda d: d["maps"][0].update(file="../../etc/passwd"), r"maps\.0\.file"),
    (lambda d: d["maps"][0].update(id="a/b"), r"field 'maps\.0\.id'"),
    (lambda d: d["maps"][0].update(rows=3), r"holds 48 rows, the sidecar says 3"),
    (lambda d: d["maps"][1].update(id=d["maps"][0]["id"]), r"listed twice"),
    (lambda d: d["maps"][0].update(layers=["nope"]), r"maps\.0\.layers"),
    (lambda d: d.update(maps="everything"), r"field 'maps'"),
])
def test_bad_map_entries_are_named(mapped, tmp_path, change, message):
    run = copy_of(mapped, tmp_path)
    _edit_sidecar(run, change)
    with pytest.raises(UserError, match=message):
        load_embeddings(run / "embeddings.csv")


def test_bad_map_files_are_named(mapped, tmp_path):
    run = copy_of(mapped, tmp_path)
    first = json.loads((run / "embeddings.json").read_text())["maps"][0]["file"]
    path = run / first
    xy = np.load(path)
    np.save(path, xy[:-1])
    with pytest.raises(UserError, match=r"expected float32 \[72, 2\]"):
        load_embeddings(run / "embeddings.csv")
    bad = xy.copy()
    bad[np.flatnonzero(np.isfinite(bad[:, 0]))[0], 1] = np.nan    # half a point
    np.save(path, bad)
    with pytest.raises(UserError, match="NaN on both axes"):
        load_embeddings(run / "embeddings.csv")
    path.unlink()
    with pytest.raises(UserError, match="missing"):
        load_embeddings(run / "embeddings.csv")


# -- a trajectory on the maps (visualizer.inspection.maps) -------------------------------------------

def _stored(run, model, layer, step, row):
    return np.load(run / f"activations/{model}/{layer}/step{step}.npy")[row].astype(np.float32)


def test_stored_rows_land_on_their_own_positions(mapped):
    """A 'trajectory' made of the run's own stored rows (a teacher seed at its two recorded steps) lands on
    those rows' positions, on the main map and on each per-layer map that holds them."""
    from visualizer.inspection.maps import RunMaps
    from visualizer.inspection.results import Trajectory

    emb = load_embeddings(mapped / "embeddings.csv")
    maps = RunMaps.of(emb)
    f = maps.table
    seed, last = 5, TEACHER_STEPS - 1
    own = {s: int(f.index[(f.model == "teacher") & (f.seed == seed) & (f.step == s)][0]) for s in (0, last)}
    twin = int(f.index[(f.model == "student") & (f.seed == seed)][0])     # same net: same first-step row
    pooled = {layer: np.stack([_stored(mapped, "teacher", layer, s, f.loc[own[s], "row"]) for s in (0, last)])
              for layer in LAYERS}
    traj = Trajectory("teacher", [], np.zeros((1, 1, 1), np.uint8), 2, 0.0, pooled)
    assert maps.pools() == {layer: e["pool"] for layer, e in emb.sidecar["activations"]["layers"].items()}

    placed = maps.place(MAIN, traj)
    main_xy = maps.get(MAIN).xy
    assert placed.nearest[1] == own[last] and placed.nearest[0] in (own[0], twin)
    np.testing.assert_array_equal(placed.xy[1], main_xy[own[last]])
    assert any(np.array_equal(placed.xy[0], main_xy[r]) for r in (own[0], twin))   # two equal rows: either
    assert (placed.distance < 1e-5).all() and not placed.far.any()
    for layer in LAYERS:
        m = maps.get(map_id(layer, last))
        p = maps.place(m.id, traj)
        assert p.nearest[1] == own[last]
        np.testing.assert_array_equal(p.xy[1], m.xy[own[last]])
        assert len(maps.frame(m.id)) == NUM_SEEDS and np.isfinite(maps.frame(m.id)[["umap_x", "umap_y"]]).all().all()


def test_a_teacher_trajectory_records_the_run_layers_and_is_placed(mapped, ckpts):  # noqa: F811
    """The engine's trajectory records the run's layers at every step, pooled as the run pooled them; its
    steps land next to the run's rows of that seed (the run used other batch shapes: last bits differ)."""
    from visualizer.adapters import get_adapter
    from visualizer.inspection import Inspector
    from visualizer.inspection.inspector import ModelSlot
    from visualizer.inspection.maps import RunMaps

    emb = load_embeddings(mapped / "embeddings.csv")
    maps = RunMaps.of(emb)
    teacher = get_adapter("edm-imagenet-64").from_checkpoint(ckpts[0], device="cpu")
    inspector = Inspector(ModelSlot("teacher", teacher, {"num_steps": TEACHER_STEPS}))
    inspector.map_pools = maps.pools()
    seed = 3
    traj = inspector.trajectory("teacher", seed, seed % 10, ["encoder_bottleneck"], "l2")
    assert set(traj.pooled) == set(LAYERS)
    assert all(r.shape[0] == TEACHER_STEPS and r.dtype == np.float32 for r in traj.pooled.values())
    f = maps.table
    own_last = int(f.index[(f.model == "teacher") & (f.seed == seed) & (f.step == TEACHER_STEPS - 1)][0])
    for m in (MAIN, map_id(LAYERS[0], TEACHER_STEPS - 1)):
        placed = maps.place(m, traj, key=inspector.trajectory_key("teacher", inspector.request(seed, seed % 10,
                                                                                           ["encoder_bottleneck"])))
        assert placed.xy.shape == (TEACHER_STEPS, 2) and np.isfinite(placed.xy).all()
        assert placed.nearest[-1] == own_last and placed.distance[-1] < 1e-2 * max(placed.typical, 1e-3)
    placed = maps.place(MAIN, traj)
    assert f.loc[placed.nearest[0], "seed"] == seed and f.loc[placed.nearest[0], "step"] == 0
    # the heatmaps the panels show are unchanged by the extra recording
    plain = Inspector(ModelSlot("teacher", teacher, {"num_steps": TEACHER_STEPS}))
    other = plain.trajectory("teacher", seed, seed % 10, ["encoder_bottleneck"], "l2")
    assert not other.pooled
    for a, b in zip(traj.steps, other.steps, strict=True):
        np.testing.assert_array_equal(a.maps["encoder_bottleneck"], b.maps["encoder_bottleneck"])


def test_a_run_without_a_basis_says_why(tmp_path):
    from app_files import write_synthetic_embeddings

    from visualizer.inspection.maps import RunMaps

    emb = load_embeddings(write_synthetic_embeddings(tmp_path, 12))
    maps = RunMaps.of(emb)
    assert maps.ids() == [MAIN] and "no PCA basis" in maps.why_not() and maps.pools() == {}
