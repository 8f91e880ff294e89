"""Dash background callbacks run in threads of the server process, cancelled by a flag, and bounded.

Dash's stock `DiskcacheManager` forks a process per job. A forked child cannot use the parent's
CUDA context and would have to load the model again for every click, so this manager keeps the
diskcache result store (and with it Dash's progress/result protocol) but runs each job in a
thread. Cancelling cannot kill a thread: it sets the job's flag, and long work polls
`current_job().check()` (the sampler callback does), which raises `Cancelled`.

Bounds, so that a flood of requests cannot pile up work (a job here is a teacher run):

- one job per browser session: a new job cancels the session's previous one. A session is a page
  load (Dash's `endId`, which the page sends with every callback request), else the client address;
- at most `max_running` jobs run at once (the others wait in a first-in first-out queue, still
  cancellable) and at most `max_queued` wait: a job beyond that is not started, and `notify` tells
  its page the server is busy;
- every job gets its own result key, so two identical requests never share (or delete) one result.

First looks are ordinary callbacks, never jobs: they never wait in this queue (and the models' locks
let them go before waiting runs: `visualizer.inspection.locks`).
"""

from __future__ import annotations

import atexit
import functools
import itertools
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import diskcache
from dash import DiskcacheManager
from dash.exceptions import PreventUpdate
from flask import has_request_context, request

from visualizer.errors import UserError


class Cancelled(Exception):
    """Raised inside a job whose flag was set; the manager drops whatever the job would have returned."""


@dataclass
class JobControl:
    """What a running job sees of its own job: the cancel flag (and, for a job refused at once, why)."""

    event: threading.Event = field(default_factory=threading.Event)
    refusal: str | None = None

    def cancelled(self) -> bool:
        return self.event.is_set()

    def check(self) -> None:
        if self.event.is_set():
            raise Cancelled()


_local = threading.local()
_NO_JOB = JobControl()


def current_job() -> JobControl:
    """The control of the job running in this thread; outside a job, one that is never cancelled."""
    return getattr(_local, "job", _NO_JOB)


@dataclass
class _Job:
    key: str
    control: JobControl
    thread: threading.Thread | None
    session: str | None = None
    running: bool = False              # holds a slot (else: waiting in the queue)
    finished_at: float | None = None

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


@dataclass
class JobStats:
    """What the manager did, for tests and benchmarks."""

    started: int = 0
    refused: int = 0
    superseded: int = 0
    peak_running: int = 0


class ThreadedJobManager(DiskcacheManager):
    """A `DiskcacheManager` whose jobs are threads: CUDA-safe, the loaded models are shared, the work bounded.

    Only callbacks registered inside `accepting()` are taken: Dash announces every background
    function to every manager ever made in the process, and a test process builds several apps
    whose callbacks close over different models.
    """

    RETAIN_S = 600  # finished jobs nobody polled any more are forgotten after this long

    def __init__(self, cache: diskcache.Cache | None = None, join_timeout: float = 10.0, *,
                 max_running: int = 1, max_queued: int = 4, notify: Callable[[str], None] | None = None):
        if cache is None:
            folder = tempfile.mkdtemp(prefix="visualizer-jobs-")
            cache = diskcache.Cache(folder)
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
        if max_running < 1 or max_queued < 0:
            raise ValueError("max_running must be at least 1 and max_queued at least 0")
        self._accepting = False
        self._jobs: dict[str, _Job] = {}
        self._jobs_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._slots = threading.Condition()          # guards _queue and _running_count
        self._queue: deque[str] = deque()             # admitted jobs waiting for a slot, first come first served
        self._running_count = 0
        self._by_session: dict[str, str] = {}
        self.join_timeout = join_timeout
        self.max_running, self.max_queued = max_running, max_queued
        self.notify = notify          # (message) -> None, called inside a job: tells its page (busy, refused)
        self.stats = JobStats()
        super().__init__(cache)

    # -- registration -----------------------------------------------------------------------------
    @contextmanager
    def accepting(self):
        self._accepting = True
        try:
            yield self
        finally:
            self._accepting = False

    def register(self, key, fn, progress):
        if self._accepting:
            super().register(key, fn, progress)

    # -- running ---------------------------------------------------------------------------------
    def build_cache_key(self, fn, args, cache_args_to_ignore, triggered):
        """Dash's key of the request, made unique per job: identical requests of two pages (or a flood of one)
        never read, overwrite or delete each other's results."""
        return f"{super().build_cache_key(fn, args, cache_args_to_ignore, triggered)}-{next(self._ids)}"

    def make_job_fn(self, fn, progress, key=None):
        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            control = current_job()
            try:
                if control.refusal is not None:
                    self._tell(control.refusal)
                    raise PreventUpdate
                return fn(*args, **kwargs)
            except Cancelled:
                # Stored as "no update" rather than an error, in case a poll reads it before it is dropped.
                raise PreventUpdate from None
            except UserError as e:       # a request the models refuse: said in the page, not an error
                self._tell(f"error: {e}")
                raise PreventUpdate from None

        return super().make_job_fn(guarded, progress, key)

    def _tell(self, message: str) -> None:
        if self.notify is not None:
            self.notify(message)

    def call_job_fn(self, key, job_fn, args, context):
        job_id = str(next(self._ids))
        control = JobControl()
        progress_key = self._make_progress_key(key)
        session = _session()
        with self._jobs_lock:
            self._prune()
            if session is not None and (old := self._jobs.get(self._by_session.get(session, ""))) is not None \
                    and old.alive() and not old.control.cancelled():
                old.control.event.set()            # this session's earlier run: superseded
                self.stats.superseded += 1
            active = [j for j in self._jobs.values() if j.alive() and not j.control.cancelled()]
            waiting = sum(not j.running for j in active)
            if len(active) >= self.max_running + self.max_queued:
                control.refusal = (f"the server is busy ({len(active) - waiting} teacher run(s) running, {waiting} "
                                   "waiting, its limit): this click's full teacher run was not started. Its first "
                                   "look is complete; click again in a moment.")
                self.stats.refused += 1
            else:
                self.stats.started += 1
        if control.refusal is not None:
            # Answered at once, in this request's thread: no thread, no slot, no queue.
            _local.job = control
            try:
                job_fn(key, progress_key, args, context)
            finally:
                _local.job = _NO_JOB
            return job_id

        def run():
            _local.job = control
            try:
                if not self._acquire_slot(job_id, control):
                    self._forget_outputs(key)
                    return
                try:
                    job_fn(key, progress_key, args, context)
                finally:
                    if control.cancelled():
                        self._forget_outputs(key)
                    with self._jobs_lock:
                        if job_id in self._jobs:
                            self._jobs[job_id].running = False
                    self._release_slot()
            finally:
                _local.job = _NO_JOB
                with self._jobs_lock:
                    if job_id in self._jobs:
                        self._jobs[job_id].finished_at = time.monotonic()

        thread = threading.Thread(target=run, name=f"dash-job-{job_id}", daemon=True)
        with self._jobs_lock:
            self._jobs[job_id] = _Job(key, control, thread, session)
            if session is not None:
                self._by_session[session] = job_id
        with self._slots:
            self._queue.append(job_id)
        thread.start()
        return job_id

    def _acquire_slot(self, job_id: str, control: JobControl) -> bool:
        """Waits in the queue for a slot; False if the job was cancelled meanwhile (it never ran)."""
        with self._slots:
            try:
                while not (self._queue and self._queue[0] == job_id and self._running_count < self.max_running):
                    if control.cancelled():
                        return False
                    self._slots.wait(0.05)
                if control.cancelled():
                    return False
                self._running_count += 1
            finally:
                if job_id in self._queue:
                    self._queue.remove(job_id)
                self._slots.notify_all()
        with self._jobs_lock:
            self._jobs[job_id].running = True
            self.stats.peak_running = max(self.stats.peak_running, sum(j.running for j in self._jobs.values()))
        return True

    def _release_slot(self) -> None:
        with self._slots:
            self._running_count -= 1
            self._slots.notify_all()

    def _forget_outputs(self, key: str) -> None:
        for k in (key, self._make_progress_key(key), self._make_set_props_key(key)):
            self.handle.delete(k)

    def _prune(self) -> None:
        now = time.monotonic()
        stale = [j for j, job in self._jobs.items()
                 if job.finished_at is not None and now - job.finished_at > self.RETAIN_S]
        for j in stale:
            del self._jobs[j]
        for session, j in list(self._by_session.items()):
            if j not in self._jobs:
                del self._by_session[session]

    def _job(self, job) -> _Job | None:
        with self._jobs_lock:
            return self._jobs.get(str(job)) if job is not None else None

    # -- Dash's protocol ---------------------------------------------------------------------------
    def terminate_job(self, job):
        """Sets the flag and waits (briefly) for the thread to stop, so its model lock is free again."""
        found = self._job(job)
        if found is None:
            return
        if found.alive():
            found.control.event.set()
            found.thread.join(self.join_timeout)
        with self._jobs_lock:
            self._jobs.pop(str(job), None)

    def terminate_unhealthy_job(self, job):
        found = self._job(job)
        if found is not None and not found.alive():
            self.terminate_job(job)
            return True
        return False

    def job_running(self, job):
        found = self._job(job)
        return bool(found and found.alive())

    def running_jobs(self) -> int:
        """Jobs whose threads are alive: running, or waiting in the queue."""
        with self._jobs_lock:
            return sum(job.alive() for job in self._jobs.values())

    def counts(self) -> dict[str, int]:
        """{'running': holding a slot, 'queued': waiting for one (not cancelled)} right now."""
        with self._jobs_lock:
            alive = [j for j in self._jobs.values() if j.alive()]
            return {"running": sum(j.running for j in alive),
                    "queued": sum(not j.running and not j.control.cancelled() for j in alive)}


def _session() -> str | None:
    """The browser session of the current request: its page load (Dash's endId), else its address."""
    if not has_request_context():
        return None
    return request.args.get("endId") or request.remote_addr or None
