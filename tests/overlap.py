"""Two calls made to overlap: how the tests replay a race between the app's threads."""

import threading
import time
from collections.abc import Callable


def overlap(first: Callable[[], object], second: Callable[[], object], inside: Callable[[], bool]) -> None:
    """first() in one thread; second() in another once inside() says first is inside the part under test (or
    first has returned: then nothing overlapped this time). Returns when both have."""
    done = threading.Event()

    def a():
        try:
            first()
        finally:
            done.set()

    def b():
        while not inside() and not done.is_set():
            time.sleep(1e-4)
        second()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
