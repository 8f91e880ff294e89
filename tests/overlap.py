"""Two calls made to overlap: how the tests replay a race between the app's threads."""

import threading
import time
from collections.abc import Callable


def overlap(first: Callable[[], object], second: Callable[[], object], inside: Callable[[], bool]) -> None:
    """first() in one thread; second() in another once inside() says first is inside the part under test (or
    first has returned: then nothing overlapped this time). Returns when both have; re-raises what either
    raised, so a call that failed cannot pass for one that left the process as it found it."""
    done = threading.Event()
    raised: list[BaseException] = []

    def a():
        try:
            first()
        except BaseException as e:
            raised.append(e)
        finally:
            done.set()

    def b():
        try:
            while not inside() and not done.is_set():
                time.sleep(1e-4)
            second()
        except BaseException as e:
            raised.append(e)

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if raised:
        raise raised[0]
