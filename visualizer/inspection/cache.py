"""A thread-safe LRU cache bounded in bytes, computing each missing key once however many threads ask."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

DEFAULT_CACHE_BYTES = 1 << 30


class LRUCache:
    """Least recently used entries go first once the total exceeds `max_bytes`; thread-safe.

    `get_or_compute` runs `compute` once per key even when many threads ask at the same time;
    the others wait for it (and compute themselves if it failed or was cancelled).
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.max_bytes = max_bytes
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._inflight: dict[Any, threading.Event] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(n for _, n in self._items.values())

    def get(self, key) -> Any | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
        return None

    def put(self, key, value, nbytes: int) -> None:
        with self._lock:
            self._items[key] = (value, nbytes)
            self._items.move_to_end(key)
            total = sum(n for _, n in self._items.values())
            while total > self.max_bytes and len(self._items) > 1:
                _, (_, n) = self._items.popitem(last=False)
                total -= n

    def get_or_compute(self, key, compute: Callable[[], Any], size: Callable[[Any], int]) -> Any:
        while True:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    self.hits += 1
                    return self._items[key][0]
                waiting = self._inflight.get(key)
                if waiting is None:
                    done = self._inflight[key] = threading.Event()
                    self.misses += 1
                    break
            waiting.wait()
        try:
            value = compute()
            self.put(key, value, size(value))
            return value
        finally:
            with self._lock:
                self._inflight.pop(key, None)
            done.set()
