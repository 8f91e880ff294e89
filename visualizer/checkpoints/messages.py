"""Short error texts: the first line of an exception and lists capped at a few items.

The bottom of the checkpoints package: it imports nothing from it, so every reader can use it.
"""

from __future__ import annotations

LIST_CAP = 8


def capped(items: list[str], cap: int = LIST_CAP) -> str:
    """The first `cap` items joined by commas, then how many more there are."""
    shown = ", ".join(items[:cap])
    return shown + (f", ... and {len(items) - cap} more" if len(items) > cap else "")


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type name when empty), cut at `limit` characters."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return text if len(text) <= limit else text[:limit] + "..."
