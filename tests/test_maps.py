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
