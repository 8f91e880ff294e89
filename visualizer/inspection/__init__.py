"""The inspection engine behind a click, usable without Dash (a notebook, a benchmark, the app).

- inspector.py: `Inspector` (first look at the shared input, the teacher's trajectory, streamed as
  `PartialTrajectory` while it runs) and `ModelSlot`;
- requests.py: `Request`; results.py: `StepView`, `FirstLook`, `Trajectory`; cache.py: `LRUCache`.
"""

from visualizer.inspection.cache import LRUCache
from visualizer.inspection.inspector import Inspector, ModelSlot, PartialTrajectory, hooks_left
from visualizer.inspection.requests import Request
from visualizer.inspection.results import FirstLook, StepView, Trajectory

__all__ = ["FirstLook", "Inspector", "LRUCache", "ModelSlot", "PartialTrajectory", "Request", "StepView", "Trajectory",
           "hooks_left"]
