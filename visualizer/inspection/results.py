"""What the engine answers: one model at one step (StepView), the first look at the shared input, a trajectory.

Plain data with their sizes in bytes, which is what the cache bounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class StepView:
    """One model at one step: the denoised estimate as an image and one map per layer ([H, W] or RGB [3, H, W])."""

    step: int
    sigma: float
    image: np.ndarray
    maps: dict[str, np.ndarray]

    @property
    def nbytes(self) -> int:
        return self.image.nbytes + sum(m.nbytes for m in self.maps.values())


@dataclass
class FirstLook:
    views: dict[str, StepView]                         # model key -> its first network evaluation
    finals: dict[str, np.ndarray]                      # model key -> final image, for models that ran to the end
    similarity: dict[str, dict[str, float]] | None     # layer -> {'cosine', 'cka'}, for exactly two models
    pair: tuple[str, str] | None                       # the two models the similarity compares
    seconds: float
    originals: dict[str, StepView] = field(default_factory=dict)        # edited models: their unedited view
    original_finals: dict[str, np.ndarray] = field(default_factory=dict)  # ... and unedited final image
    changes: dict[str, dict[str, float]] = field(default_factory=dict)  # edited model -> layer -> relative change

    @property
    def nbytes(self) -> int:
        views = [*self.views.values(), *self.originals.values()]
        finals = [*self.finals.values(), *self.original_finals.values()]
        return sum(v.nbytes for v in views) + sum(f.nbytes for f in finals) + 4096


@dataclass
class Trajectory:
    model: str
    steps: list[StepView]                              # first evaluation of every sampler step
    final: np.ndarray
    num_steps: int
    seconds: float
    pooled: dict[str, np.ndarray] = field(default_factory=dict)   # layer -> float32 [steps, features], as embed pools

    @property
    def sigmas(self) -> list[float]:
        return [s.sigma for s in self.steps]

    @property
    def nbytes(self) -> int:
        return self.final.nbytes + sum(s.nbytes for s in self.steps) + sum(r.nbytes for r in self.pooled.values())
