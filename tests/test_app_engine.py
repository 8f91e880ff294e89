"""The inspection engine (visualizer.inspection) on tiny real-format checkpoints: no dash, no browser."""

import threading
import time

import numpy as np
import pytest
import torch
from app_files import write_pair

from visualizer.adapters import detect_adapter, get_adapter
from visualizer.app.jobs import Cancelled
from visualizer.errors import UserError
from visualizer.inspection import (
    Inspector,
    LRUCache,
    ModelSlot,
    Request,
    hooks_left,
)
from visualizer.models.images import edm_to_uint8
from visualizer.trace.reductions import parse_reduction, reduction_spec

LAYERS = ("encoder_block_0", "encoder_bottleneck", "midblock", "dec.16x16_block1")


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    pkl, student = write_pair(tmp_path_factory.mktemp("ckpt"))
    load = lambda p: get_adapter(detect_adapter(p)).from_checkpoint(p, device="cpu")  # noqa: E731
    return load(pkl), load(student)


def _inspector(adapters, steps: int = 4, cache: LRUCache | None = None) -> Inspector:
    teacher, student = adapters
    return Inspector([ModelSlot("teacher", teacher, {"preset": "fid", "num_steps": steps}),
                      ModelSlot("student", student)], cache=cache)


def test_first_look_is_the_shared_first_input(adapters):
    teacher, student = adapters
    ins = _inspector(adapters)
    assert ins.pair == ("teacher", "student") and ins.shown() == ["teacher", "student"]
    req = Request.make(3, 2, LAYERS)
    look = ins.first_look(req)
    x, sigma, _, classes = teacher.first_input([3], 2)
    np.testing.assert_array_equal(look.views["teacher"].image, edm_to_uint8(teacher.forward(x, sigma, classes))[0])
    np.testing.assert_array_equal(look.finals["student"], student.sample(seeds=[3], class_label=2).images[0])
    assert "teacher" not in look.finals and look.views["teacher"].sigma == pytest.approx(80.0)
    shapes = teacher.layer_shapes()
    for key in ("teacher", "student"):
        maps = look.views[key].maps
        assert list(maps) == list(LAYERS)
        for name in LAYERS:
            assert maps[name].shape == shapes[name][-2:] and maps[name].dtype == np.float16
    # similarity over every module (native names), scores in range, high for a slightly perturbed copy
    assert list(look.similarity) == ins.native_layers() and len(look.similarity) == 11
    for scores in look.similarity.values():
        assert -1 <= scores["cosine"] <= 1 and 0 <= scores["cka"] <= 1 + 1e-9
    assert look.similarity["enc.16x16_conv"]["cosine"] > 0.5
    assert hooks_left(adapters) == 0


def test_trajectory_records_every_step_and_starts_where_the_first_look_is(adapters):
    teacher, _ = adapters
    ins = _inspector(adapters, steps=5)
    req = Request.make(7, 4, LAYERS, reduction_spec("topk", 4))
    seen = []
    traj = ins.trajectory("teacher", req, progress=lambda done, total: seen.append((done, total)))
    assert traj.num_steps == 5 and len(traj.steps) == 5 and seen[-1] == (5, 5) and len(seen) == 5
    assert traj.sigmas[0] == pytest.approx(80.0) and traj.sigmas == sorted(traj.sigmas, reverse=True)
    look = ins.first_look(req)
    for name in LAYERS:
        np.testing.assert_allclose(traj.steps[0].maps[name].astype(np.float32),
                                   look.views["teacher"].maps[name].astype(np.float32), rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(traj.steps[0].image, look.views["teacher"].image)
    np.testing.assert_array_equal(
        traj.final, teacher.sample(seeds=[7], class_label=4, preset="fid", num_steps=5).images[0])
    assert ins.cached_trajectory("teacher", req) is traj
    assert hooks_left(adapters) == 0


def test_repeated_requests_come_from_the_cache(adapters):
    ins = _inspector(adapters)
    req = Request.make(1, 1, LAYERS[:2])
    first = ins.first_look(req)
    start = time.perf_counter()
    again = ins.first_look(Request.make(1, 1, list(LAYERS[:2]), "l2"))
    assert again is first and ins.cache.hits == 1 and time.perf_counter() - start < 0.05
    assert ins.first_look(Request.make(1, 1, LAYERS[:2], "mean_abs")) is not first   # reduction is in the key


def test_cancel_stops_the_sampler_releases_the_lock_and_hooks(adapters):
    ins = _inspector(adapters, steps=200)
    calls = []

    def stop_after_three():
        calls.append(1)
        if len(calls) > 3:
            raise Cancelled()

    with pytest.raises(Cancelled):
        ins.trajectory("teacher", Request.make(0, 0, LAYERS), should_stop=stop_after_three)
    assert len(calls) == 4 and hooks_left(adapters) == 0
    assert ins.slots["teacher"].lock.acquire(blocking=False)
    ins.slots["teacher"].lock.release()
    assert ins.cached_trajectory("teacher", Request.make(0, 0, LAYERS)) is None


def test_twenty_concurrent_requests_all_answer_and_leave_no_hook(adapters):
    ins = _inspector(adapters, steps=3)
    requests = [Request.make(i % 7, i % 10, LAYERS[: 1 + i % 4], ("l2", "mean_abs")[i % 2]) for i in range(20)]
    answers: dict[int, tuple] = {}
    errors = []
    barrier = threading.Barrier(20)

    def ask(i):
        try:
            barrier.wait()
            answers[i] = ins.regenerate(requests[i])
        except Exception as e:  # noqa: BLE001 - collected and reported below
            errors.append(e)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(answers) == 20
    assert hooks_left(adapters) == 0
    # the same request answered alone (fresh cache) gives the same maps: no request saw another's activations
    alone = _inspector(adapters, steps=3)
    for i in (0, 7, 13):
        first, trajs = answers[i]
        ref_first, ref_trajs = alone.regenerate(requests[i])
        for key in ("teacher", "student"):
            for name in requests[i].layers:
                np.testing.assert_array_equal(first.views[key].maps[name], ref_first.views[key].maps[name])
        for a, b in zip(trajs["teacher"].steps, ref_trajs["teacher"].steps, strict=True):
            np.testing.assert_array_equal(a.image, b.image)


def test_cache_is_bounded_in_bytes_and_computes_once():
    cache = LRUCache(max_bytes=100)
    for k in range(5):
        cache.put(k, k, 40)
    assert len(cache) == 2 and cache.get(0) is None and cache.get(4) == 4
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.1)
        return "v"

    threads = [threading.Thread(target=cache.get_or_compute, args=("x", slow, lambda v: 1)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and cache.get("x") == "v"


def test_bad_requests_are_user_errors(adapters):
    ins = _inspector(adapters)
    with pytest.raises(UserError, match="unknown layer"):
        ins.first_look(Request.make(0, 0, ["nope"]))
    with pytest.raises(UserError, match="out of range"):
        ins.first_look(Request.make(0, 10, LAYERS[:1]))
    with pytest.raises(UserError, match="unknown reduction"):
        reduction_spec("median")
    assert parse_reduction("channel:2")(torch.arange(24.0).reshape(1, 4, 2, 3)).tolist() == [[[12, 13, 14],
                                                                                             [15, 16, 17]]]
    assert hooks_left(adapters) == 0


def test_a_notebook_drives_the_engine_with_adapters(adapters):
    """Inspector(teacher, student) with plain arguments: the same answers as the app's Requests."""
    teacher, student = adapters
    ins = Inspector(teacher, student)
    look = ins.first_look(3, 2, ["midblock"])
    assert ins.pair == ("teacher", "student") and set(look.views) == {"teacher", "student"}
    ref = _inspector(adapters).first_look(Request.make(3, 2, ["midblock"]))
    np.testing.assert_array_equal(look.views["student"].maps["midblock"], ref.views["student"].maps["midblock"])
    traj = ins.trajectory("teacher", 3, 2, ["midblock"])
    assert traj.num_steps == teacher.sampler_settings().num_steps and len(traj.steps) == traj.num_steps
    assert list(ins.first_look(3, 2).views["teacher"].maps) == ins.native_layers()
    with pytest.raises(UserError, match="share the key"):
        Inspector(teacher, teacher)


def test_a_run_streams_its_steps_and_a_first_look_can_leave_a_model_out(adapters):
    ins = _inspector(adapters, steps=4)
    req = Request.make(2, 1, LAYERS, "pca_rgb")
    seen = []
    traj = ins.trajectory("teacher", req, progress=lambda done, _: seen.append(
        ins.partial_trajectory("teacher", req).view(done - 1)))
    assert [v.sigma for v in seen] == traj.sigmas                     # every step, readable as soon as it is done
    for streamed, final in zip(seen, traj.steps, strict=True):
        np.testing.assert_array_equal(streamed.image, final.image)
        for name in LAYERS:
            np.testing.assert_array_equal(streamed.maps[name], final.maps[name])
    assert ins.partial_trajectory("teacher", req) is None             # the finished run is in the cache instead
    look = ins.first_look(req, models=["student"])                    # a page that hides the teacher
    assert list(look.views) == ["student"] and look.similarity is None and look.pair is None
    with pytest.raises(UserError, match="no model 'nobody'"):
        ins.first_look(req, models=["nobody"])
    aliases = ins.aliases()                                            # legacy <-> native, both ways
    assert aliases["midblock"] == "dec.8x8_in0" and all(aliases[aliases[k]] == k for k in aliases)
    assert hooks_left(adapters) == 0
