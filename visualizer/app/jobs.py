"""Dash background callbacks run in threads of the server process, cancelled by a flag.

Dash's stock `DiskcacheManager` forks a process per job. A forked child cannot use the parent's
CUDA context and would have to load the model again for every click, so this manager keeps the
diskcache result store (and with it Dash's progress/result protocol) but runs each job in a
thread. Cancelling cannot kill a thread: it sets the job's flag, and long work polls
`current_job().check()` (the sampler callback does), which raises `Cancelled`.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import diskcache
from dash import DiskcacheManager
from dash.exceptions import PreventUpdate


class Cancelled(Exception):
    """Raised inside a job whose flag was set; the manager drops whatever the job would have returned."""


@dataclass
class JobControl:
    """What a running job sees of its own job: the cancel flag."""

    event: threading.Event = field(default_factory=threading.Event)

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
    thread: threading.Thread
    finished_at: float | None = None


class ThreadedJobManager(DiskcacheManager):
    """A `DiskcacheManager` whose jobs are threads: CUDA-safe, and the loaded models are shared.

    Only callbacks registered inside `accepting()` are taken: Dash announces every background
    function to every manager ever made in the process, and a test process builds several apps
    whose callbacks close over different models.
    """

    RETAIN_S = 600  # finished jobs nobody polled any more are forgotten after this long

    def __init__(self, cache: diskcache.Cache | None = None, join_timeout: float = 10.0):
        if cache is None:
            folder = tempfile.mkdtemp(prefix="visualizer-jobs-")
            cache = diskcache.Cache(folder)
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
        self._accepting = False
        self._jobs: dict[str, _Job] = {}
        self._jobs_lock = threading.Lock()
        self._ids = itertools.count(1)
        self.join_timeout = join_timeout
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
    def make_job_fn(self, fn, progress, key=None):
        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Cancelled:
                # Stored as "no update" rather than an error, in case a poll reads it before it is dropped.
                raise PreventUpdate from None

        return super().make_job_fn(guarded, progress, key)

    def call_job_fn(self, key, job_fn, args, context):
        job_id = str(next(self._ids))
        control = JobControl()
        progress_key = self._make_progress_key(key)

        def run():
            _local.job = control
            try:
                job_fn(key, progress_key, args, context)
            finally:
                _local.job = _NO_JOB
                if control.cancelled():
                    self._forget_outputs(key)
                with self._jobs_lock:
                    if job_id in self._jobs:
                        self._jobs[job_id].finished_at = time.monotonic()

        thread = threading.Thread(target=run, name=f"dash-job-{job_id}", daemon=True)
        with self._jobs_lock:
            self._prune()
            self._jobs[job_id] = _Job(key, control, thread)
        thread.start()
        return job_id

    def _forget_outputs(self, key: str) -> None:
        for k in (key, self._make_progress_key(key), self._make_set_props_key(key)):
            self.handle.delete(k)

    def _prune(self) -> None:
        now = time.monotonic()
        stale = [j for j, job in self._jobs.items()
                 if job.finished_at is not None and now - job.finished_at > self.RETAIN_S]
        for j in stale:
            del self._jobs[j]

    def _job(self, job) -> _Job | None:
        with self._jobs_lock:
            return self._jobs.get(str(job)) if job is not None else None

    # -- Dash's protocol ---------------------------------------------------------------------------
    def terminate_job(self, job):
        """Sets the flag and waits (briefly) for the thread to stop, so its model lock is free again."""
        found = self._job(job)
        if found is None:
            return
        if found.thread.is_alive():
            found.control.event.set()
            found.thread.join(self.join_timeout)
        with self._jobs_lock:
            self._jobs.pop(str(job), None)

    def terminate_unhealthy_job(self, job):
        found = self._job(job)
        if found is not None and not found.thread.is_alive():
            self.terminate_job(job)
            return True
        return False

    def job_running(self, job):
        found = self._job(job)
        return bool(found and found.thread.is_alive())

    def running_jobs(self) -> int:
        with self._jobs_lock:
            return sum(job.thread.is_alive() for job in self._jobs.values())
