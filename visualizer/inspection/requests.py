"""What a click asks the engine for: a sample (seed, class), the layers to show and how to reduce them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Request:
    """What a click asks for; hashable, so it is (part of) the cache key."""

    seed: int
    class_label: int
    layers: tuple[str, ...]
    reduction: str = "l2"

    @classmethod
    def make(cls, seed, class_label, layers: Sequence[str], reduction: str = "l2") -> Request:
        return cls(int(seed), int(class_label), tuple(dict.fromkeys(layers)), reduction)
