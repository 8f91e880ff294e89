"""The probe map (`embed --probe`, visualizer.metrics.probe_map) and the class-collapse engine
(visualizer.inspection.collapse): a real tiny embed run probed with its teacher network and real images from
an .npz, the shipped demo's probe map (digit classifier, held-out digits), and the engine's scores on
constructed sets with known answers. No download anywhere."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from test_embed_pipeline import NUM_SEEDS, TEACHER_STEPS, ckpts, reference  # noqa: F401

from visualizer.adapters.demo import DEMO_EMBEDDINGS
from visualizer.cli import main
from visualizer.embeddings.maps import MAIN
from visualizer.embeddings.schema import load_embeddings
from visualizer.errors import UserError
from visualizer.inspection.collapse import Collapse, _scores
from visualizer.inspection.maps import RunMaps
from visualizer.metrics.probe_map import PROBE_ID, image_rows

REAL = 30
_RUN: dict = {}


@pytest.fixture()
def probed(reference, tmp_path_factory):  # noqa: F811
    """The reference run, copied, with a probe map of its teacher network at sigma 0.5 and 30 real images."""
    if "run" not in _RUN:
        out = tmp_path_factory.mktemp("probed") / "run"
        shutil.copytree(reference, out)
        size = np.asarray(Image.open(next((out / "thumbs" / "teacher").iterdir()))).shape
        rng = np.random.default_rng(0)
        np.savez(out.parent / "real.npz", images=rng.integers(0, 256, (REAL, *size), dtype=np.uint8),
                 labels=np.arange(REAL) % 4)
        assert main(["embed", "--out", str(out), "--probe", "network:encoder_bottleneck@0.5", "--real",
                     str(out.parent / "real.npz"), "--probe-only", "--device", "cpu", "--no-progress"]) == 0
        _RUN["run"] = out
    return _RUN["run"]


def test_embed_probe_adds_a_map_of_final_images_and_real_images(probed, reference):  # noqa: F811
    assert (probed / "embeddings.csv").read_text() == (reference / "embeddings.csv").read_text()   # main map kept
    emb = load_embeddings(probed / "embeddings.csv")
    assert [m.id for m in emb.maps] == [MAIN, PROBE_ID]
    m = emb.maps[1]
    frame = emb.frame
    # one point per model and seed: the teacher's last recorded step (its final image), the student's only step
    assert len(m.rows) == 2 * NUM_SEEDS
    held = frame.iloc[m.rows]
    assert set(held.loc[held["model"] == "teacher", "step"]) == {TEACHER_STEPS - 1}
    assert set(held.loc[held["model"] == "student", "step"]) == {0}
    np.testing.assert_array_equal(m.rows, image_rows(frame))
    assert m.is_probe and m.layers == () and "encoder_bottleneck" in m.about and "30 real images" in m.about
    feats = np.load(probed / m.probe["features"])
    assert feats.dtype == np.float16 and feats.shape == (len(frame), m.probe["dims"])
    assert np.isfinite(feats[m.rows]).all() and np.isnan(np.delete(feats, m.rows, axis=0)).all()
    assert m.real.xy.shape == (REAL, 2) and list(m.real.labels) == list(np.arange(REAL) % 4)
    assert (probed / m.real.thumbnail(REAL - 1)).is_file()
    # the probe's PCA basis is plain arrays, no pickle
    assert (probed / "probe" / "pca" / "basis.json").is_file()
    assert not list(probed.rglob("*.pkl"))


def test_a_trajectory_is_not_placed_on_the_probe_map(probed):
    maps = RunMaps.of(load_embeddings(probed / "embeddings.csv"))
    with pytest.raises(UserError, match="probe map embeds final images"):
        maps.place(PROBE_ID, None)


def _edit(run, tmp_path, change):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    path = out / "embeddings.json"
    data = json.loads(path.read_text())
    change(data["maps"][0])
    path.write_text(json.dumps(data))
    return out / "embeddings.csv"


@pytest.mark.parametrize("change, message", [
    (lambda m: m["real"].update(count=REAL + 1), r"expected finite float32 \[31, 2\]"),
    (lambda m: m["real"].update(file="../../x.npy"), r"maps\.0\.real\.file"),
    (lambda m: m["real"].update(thumbnails="thumbs/real/x.png"), r"maps\.0\.real\.thumbnails"),
    (lambda m: m["probe"].update(features="/etc/passwd.npy"), r"maps\.0\.probe\.features"),
    (lambda m: m.pop("probe"), r"maps\.0"),
    (lambda m: m["probe"].update(dims=0), r"maps\.0\.probe\.dims"),
])
def test_probe_map_fields_are_checked_on_load(probed, tmp_path, change, message):
    with pytest.raises(UserError, match=message):
        load_embeddings(_edit(probed, tmp_path, change))


@pytest.mark.parametrize("argv", [["--real", "x.npz"], ["--probe-only"], ["--real-count", "3"],
                                  ["--probe", "network:nope@0.5", "--probe-only"],
                                  ["--probe", "nonsense", "--probe-only"]])
def test_embed_probe_options_are_refused_with_a_reason(probed, argv, capsys):
    assert main(["embed", "--out", str(probed), *argv, "--no-progress", "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip()


# -- the engine -------------------------------------------------------------------------------------------

def test_scores_on_constructed_sets_have_known_answers():
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(60, 8))
    same = _scores(teacher, teacher.copy(), 5)
    assert same["splits"] == 3 and not same["descriptive"]
    # the whole sets: identical; the disjoint sets of 20 draw other rows of each, so they scatter around 1
    assert same["spread_ratio"]["all"] == pytest.approx(1.0) and same["coverage"]["all"] == 1.0
    assert same["spread_ratio"]["min"] < 1.0 < same["spread_ratio"]["max"] and same["coverage"]["mean"] > 0.7
    collapsed = _scores(teacher, teacher.mean(0) + 0.1 * (teacher - teacher.mean(0)), 5)
    assert collapsed["spread_ratio"]["all"] == pytest.approx(0.1)
    assert 0.08 < collapsed["spread_ratio"]["min"] <= collapsed["spread_ratio"]["max"] < 0.12
    # shrunk to its centre, the student stays inside the teacher's k-NN balls (precision 1, and in 8-d those balls
    # reach the centre: coverage stays 1) but its own tiny balls hold few teacher rows: recall is what falls
    assert collapsed["precision"]["all"] == 1.0 and collapsed["recall"]["all"] < 0.3
    small = _scores(teacher[:12], teacher[:12], 5)           # one set only: descriptive
    assert small["splits"] == 1 and small["descriptive"]
    assert _scores(teacher[:5], teacher[:5], 5) is None       # too few rows for k-NN balls of 5


def test_the_demo_ships_a_probe_map_and_its_classes_rank():
    emb = load_embeddings(DEMO_EMBEDDINGS)
    m = next(m for m in emb.maps if m.is_probe)
    assert m.real is not None and len(m.real.labels) == 200 and "digit classifier" in m.about
    engine = Collapse(RunMaps.of(emb))
    ranking = engine.ranking()
    ratios = [r["student_vs_teacher"]["spread_ratio"]["mean"] for r in ranking["classes"]]
    assert sorted(r["class"] for r in ranking["classes"]) == list(range(10)) and ratios == sorted(ratios)
    for r in ranking["classes"]:
        for key in ("student_vs_teacher", "student_vs_real", "teacher_vs_real"):
            for name in ("spread_ratio", "coverage", "recall"):
                s = r[key][name]
                assert s["min"] <= s["mean"] <= s["max"]
    assert ranking["has_real"] and "not what a person would judge" in ranking["what"]
    gallery = engine.gallery(ranking["classes"][0]["class"])
    assert set(gallery) == {"teacher", "student", "real"} and all(gallery.values())
    root = DEMO_EMBEDDINGS.parent
    assert all((root / path).is_file() for items in gallery.values() for path, _ in items)
    corr = engine.correspondence()
    assert corr["n"] == 600 and corr["pixels"]["top1"] > 10 * corr["pixels"]["chance"]
    lo, hi = corr["probe"]["split_top1"]["min"], corr["probe"]["split_top1"]["max"]
    assert lo <= corr["probe"]["split_top1"]["mean"] <= hi and corr["splits"] == 5


def test_images_the_probe_map_holds_are_placed_on_their_own_points():
    """Placement from the stored arrays (features, the probe's PCA basis, positions): the demo's final images and
    real images, put through the map's probe again, land exactly where the map put them; a new image lands
    among its class's points."""
    from visualizer.metrics.probe_map import place_images, read_images

    emb = load_embeddings(DEMO_EMBEDDINGS)
    m = next(m for m in emb.maps if m.is_probe)
    rows = m.rows[[0, 5, 700]]
    images = read_images(emb.root, emb.frame["image_path"].to_numpy()[rows])
    labels = emb.frame["class_label"].to_numpy()[rows]
    np.testing.assert_array_equal(place_images(DEMO_EMBEDDINGS, images, labels), m.xy[rows])
    real = np.stack([np.asarray(Image.open(emb.root / m.real.thumbnail(i)).convert("RGB")) for i in (0, 7)])
    np.testing.assert_array_equal(place_images(DEMO_EMBEDDINGS, real, m.real.labels[[0, 7]]), m.real.xy[[0, 7]])
    moved = np.roll(images[:1], 1, axis=2)                         # shifted by a pixel: a new image of that digit
    xy = place_images(DEMO_EMBEDDINGS, moved, labels[:1])[0]
    same = m.xy[m.rows][emb.frame["class_label"].to_numpy()[m.rows] == labels[0]]
    others = m.xy[m.rows][emb.frame["class_label"].to_numpy()[m.rows] != labels[0]]
    assert np.linalg.norm(same - xy, axis=1).min() < np.linalg.norm(others - xy, axis=1).min()


def test_embed_with_probe_in_one_command(reference, ckpts, tmp_path):  # noqa: F811
    """`embed ... --probe auto` on the reference run's arguments: the run resumes (nothing sampled again) and adds
    the probe map, here the teacher network's bottleneck at sigma 0.5 (auto: not the demo), without real images."""
    from test_embed_pipeline import embed_args

    out = tmp_path / "run"
    shutil.copytree(reference, out)
    assert main(embed_args(ckpts, out, **{"--probe": "auto"})) == 0
    emb = load_embeddings(out / "embeddings.csv")
    m = next(m for m in emb.maps if m.is_probe)
    assert m.real is None and m.probe["spec"] == "auto" and "encoder_bottleneck" in m.probe["describe"]
    assert "sigma 0.5" in m.probe["describe"] and len(m.rows) == 2 * NUM_SEEDS
