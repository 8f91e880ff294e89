"""Teacher runs under a flood of requests (issue 14): the structure, not the clock.

The real app through Flask's test client; the teacher's runs are held at a gate (inside the model's
lock, where a long run spends its time) so the test decides when they move. Checked: never more
running jobs than the limit and never more waiting than the queue, the rest answered "busy" at
once; a session's new run cancels its old one; a first look is served while runs are queued, before
any of them, the run in progress giving way at its next network evaluation.
"""

import threading
import time

import pytest
from app_files import pair_models, write_pair, write_synthetic_embeddings
from dash_requests import answer, body_for, notice, poll, post

from visualizer.app.config import AppConfig, load
from visualizer.app.server import create_app
from visualizer.inspection import Request
from visualizer.inspection.locks import ModelLock

STEPS = 3
RUN = "trajectory-done.data"          # the teacher's background callback


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jobs")
    pkl, student = write_pair(folder / "ckpt")
    models = pair_models(pkl, student)
    return load(AppConfig(embeddings=write_synthetic_embeddings(folder / "emb", 20, models=models), device="cpu",
                          num_steps=STEPS))


@pytest.fixture()
def app(state):
    return create_app(state)            # its own job manager and result cache


@pytest.fixture()
def gate(app):
    """Teacher runs wait at this gate after their first network evaluation, holding the teacher's lock (a run
    in progress); `log` records who traced, in order."""
    slot = app.visualizer.inspector.slots["teacher"]
    opened, log = threading.Event(), []
    app.gate_reached = reached = threading.Event()      # a run holds the teacher's lock at the gate
    original = slot.adapter.trace

    def trace(seeds, *args, **kw):
        sampler = kw.get("callback")                   # a whole run (a first look has no sampler callback)
        log.append(("run" if sampler else "first", int(seeds[0])))
        if sampler is not None:
            def held(info):
                reached.set()
                assert opened.wait(60), "the gate never opened"
                return sampler(info)
            kw["callback"] = held
        return original(seeds, *args, **kw)

    slot.adapter.trace = trace
    yield opened, log
    opened.set()
    del slot.adapter.trace


def _first(app, seed: int) -> dict:
    return {"seed": seed, "class_label": seed % 10, "layers": app.visualizer.default_layers[:2], "reduction": "l2"}


def _start_run(client, app, seed: int, session: str) -> dict:
    body = body_for(RUN, app.callback_map[RUN], {"first-ready.data": _first(app, seed)})
    r = post(client, body, session)
    assert r.status_code == 200, r.data[:300]
    return r.get_json()


def _until(condition, what: str, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_flood_of_teacher_runs_is_bounded_and_the_rest_is_told_busy(app, gate):
    opened, log = gate
    manager = app.visualizer.jobs
    client = app.server.test_client()
    limit = manager.max_running + manager.max_queued
    handles = [_start_run(client, app, seed, f"tab-{seed}") for seed in range(20)]   # 20 pages, one click each
    _until(lambda: manager.counts() == {"running": manager.max_running, "queued": manager.max_queued},
           "the queue to fill")
    assert (manager.stats.started, manager.stats.refused) == (limit, 20 - limit)
    assert manager.running_jobs() == limit                     # no thread for a refused run
    body = body_for(RUN, app.callback_map[RUN], {"first-ready.data": _first(app, 19)})
    status, data = poll(client, body, handles[19], "tab-19")
    assert status == 200 and "the server is busy" in notice(data) and data["response"] == {}
    opened.set()
    _until(lambda: manager.running_jobs() == 0, "the queue to drain")
    assert manager.stats.peak_running == manager.max_running
    runs = [seed for kind, seed in log if kind == "run"]
    assert runs == list(range(limit))                          # the admitted ones, in order; no refused one ran
    for seed in range(limit):
        req = Request.make(seed, seed % 10, app.visualizer.default_layers[:2], "l2")
        assert app.visualizer.inspector.cached_trajectory("teacher", req) is not None


def test_a_sessions_new_run_cancels_its_old_one(app, gate):
    opened, log = gate
    manager = app.visualizer.jobs
    client = app.server.test_client()
    for seed in (100, 101, 102):                                # three clicks in one page, faster than the runs
        _start_run(client, app, seed, "one-tab")
        if seed == 100:
            _until(lambda: log, "the first run to start")
    assert manager.stats.superseded == 2 and manager.counts() == {"running": 1, "queued": 1}
    opened.set()
    _until(lambda: manager.running_jobs() == 0, "the runs to end")
    assert [seed for kind, seed in log if kind == "run"] == [100, 102]      # 101 was cancelled before it started
    cached = {seed: app.visualizer.inspector.cached_trajectory(
        "teacher", Request.make(seed, seed % 10, app.visualizer.default_layers[:2], "l2")) for seed in (100, 101, 102)}
    assert cached[100] is None and cached[101] is None and cached[102] is not None


def test_a_first_look_is_served_while_teacher_runs_are_queued(app, gate):
    opened, log = gate
    manager = app.visualizer.jobs
    client = app.server.test_client()
    for seed in range(5):
        _start_run(client, app, seed, f"tab-{seed}")
    _until(lambda: manager.counts() == {"running": 1, "queued": 4}, "one run and four waiting")
    assert app.gate_reached.wait(60), "the run in progress never reached the gate"   # it holds the lock now
    key = next(k for k in app.callback_map if k.startswith("..first-ready.data"))
    look = body_for(key, app.callback_map[key], {
        "clicked.data": {"seed": 77, "class_label": 7, "sample_id": None, "model": None},
        "layer-pick.value": app.visualizer.default_layers[:2], "reduction.value": "l2"}, changed="clicked.data")
    got = {}

    def view():
        got["status"], got["data"] = answer(client, look, "viewer")

    viewer = threading.Thread(target=view)
    viewer.start()
    lock = app.visualizer.inspector.slots["teacher"].lock
    _until(lambda: lock.urgent_waiting == 1, "the first look to wait for the teacher's lock")
    opened.set()                                     # the run in progress gives way at its next evaluation
    viewer.join(60)
    assert got["status"] == 200 and got["data"]["response"]["first-ready"]["data"]["seed"] == 77
    _until(lambda: manager.running_jobs() == 0, "the queue to drain")
    # the first look before the rest of the run in progress (which then starts again) and before the queue
    assert log[:4] == [("run", 0), ("first", 77), ("run", 0), ("run", 1)]
    req = Request.make(0, 0, app.visualizer.default_layers[:2], "l2")
    assert app.visualizer.inspector.cached_trajectory("teacher", req).num_steps == STEPS


def test_model_lock_lets_urgent_requests_go_before_background_ones():
    lock, order = ModelLock(), []
    lock.acquire()
    background = threading.Thread(target=lambda: (lock.acquire(urgent=False), order.append("run"), lock.release()))
    background.start()
    time.sleep(0.05)
    urgent = threading.Thread(target=lambda: (lock.acquire(), order.append("look"), lock.release()))
    urgent.start()
    _until(lambda: lock.urgent_waiting == 1, "the urgent request to wait")
    lock.release()
    urgent.join(10)
    background.join(10)
    assert order == ["look", "run"]
    assert lock.acquire(timeout=0.01) and not lock.acquire(blocking=False) and not lock.acquire(timeout=0.01)
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()
