"""Which sampler steps a trace records or an edit touches: 'first', 'last', 'all', indices or a sigma range.

A *sampler step* i is one iteration of the sampler; its first network evaluation sees sigma_i
(t_hat_i for EDM's Heun sampler, the i-th level for DMD2's generator). Recording happens at that
first evaluation; an edit applies to every evaluation of the steps it names (Heun's correction too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from visualizer.errors import UserError


@dataclass(frozen=True)
class SigmaRange:
    """The steps whose sigma lies in [low, high] (both ends included)."""

    low: float = 0.0
    high: float = float("inf")

    def __post_init__(self):
        if not self.low <= self.high:
            raise UserError(f"sigma range [{self.low}, {self.high}] is empty: low must not exceed high")

    def __contains__(self, sigma: float) -> bool:
        return self.low <= sigma <= self.high


Steps = str | int | SigmaRange | Sequence["str | int"]


def select_steps(steps: Steps, sigmas: Sequence[float]) -> list[int]:
    """Sorted step indices that `steps` names among steps with these first-evaluation sigmas.

    Negative indices count from the last step; an index outside the run is a UserError that says
    how many steps there are.
    """
    n = len(sigmas)
    if isinstance(steps, SigmaRange):
        return [i for i, s in enumerate(sigmas) if s in steps]
    tokens = [steps] if isinstance(steps, (str, int)) else list(steps)
    out: set[int] = set()
    for t in tokens:
        if t == "all":
            out.update(range(n))
        elif t in ("first", "last"):
            out.add(0 if t == "first" else n - 1)
        elif isinstance(t, int) and not isinstance(t, bool) and -n <= t < n:
            out.add(t % n)
        else:
            raise UserError(f"steps: {t!r} is not 'first', 'last', 'all' or a step index of this run "
                            f"({n} step(s): 0..{n - 1})")
    return sorted(out)
