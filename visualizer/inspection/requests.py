"""What a click asks the engine for: a sample (seed, class), the layers to show, how to reduce them, and edits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from visualizer.inspection.edits import EditSpec


@dataclass(frozen=True)
class Request:
    """What a click asks for; hashable, so it is (part of) the cache key."""

    seed: int
    class_label: int
    layers: tuple[str, ...]
    reduction: str = "l2"
    edits: tuple[EditSpec, ...] = ()

    @classmethod
    def make(cls, seed, class_label, layers: Sequence[str], reduction: str = "l2",
             edits: Sequence[EditSpec] = ()) -> Request:
        return cls(int(seed), int(class_label), tuple(dict.fromkeys(layers)), reduction, tuple(edits))

    def unedited(self) -> Request:
        return Request(self.seed, self.class_label, self.layers, self.reduction)

    def edits_for(self, model: str) -> list[EditSpec]:
        return [e for e in self.edits if e.model == model]
