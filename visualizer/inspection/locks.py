"""A model's lock, where what a page is waiting for goes first: `ModelLock`.

Hooks are put on a model's modules for the whole of a request (a first look, or a teacher's whole
run), so one request holds the model at a time. A plain lock lets whoever the scheduler wakes
first go next; this one lets urgent requests (`with lock:`, a first look, what a click waits for)
go before background ones (`with lock.background():`, the teacher runs of the job queue): when the
lock is released, a waiting background request goes only if no urgent one is waiting. An urgent
request therefore never waits for queued runs; a run in progress sees `urgent_waiting` at its next
network evaluation and lets go (`Inspector._trajectory` restarts it afterwards, a bounded number of
times), so an urgent request waits about one network evaluation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class ModelLock:
    """A non-reentrant lock with two priorities; `with lock:` is urgent, `with lock.background():` is not."""

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._held = False
        self._urgent = 0        # urgent requests waiting

    def acquire(self, blocking: bool = True, timeout: float = -1, *, urgent: bool = True) -> bool:
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        with self._cond:
            if urgent:
                self._urgent += 1
            try:
                while self._held or (not urgent and self._urgent):
                    if not blocking:
                        return False
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._cond.wait(left)
                self._held = True
                return True
            finally:
                if urgent:
                    self._urgent -= 1
                    if not self._urgent:
                        self._cond.notify_all()

    def release(self) -> None:
        with self._cond:
            if not self._held:
                raise RuntimeError("release of an unheld ModelLock")
            self._held = False
            self._cond.notify_all()

    def locked(self) -> bool:
        return self._held

    @property
    def urgent_waiting(self) -> int:
        """Urgent requests waiting for the lock now (for tests and benchmarks)."""
        return self._urgent

    def __enter__(self) -> ModelLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    @contextmanager
    def background(self) -> Iterator[None]:
        """Hold the lock as a background request: after every urgent request waiting now or later."""
        self.acquire(urgent=False)
        try:
            yield
        finally:
            self.release()
