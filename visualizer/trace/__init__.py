"""The trace core: the one way into a network's activations, for reading and for writing. torch only.

- `Tracer` (recorder.py): hooks that record and edit named blocks, one network evaluation at a time,
  on the eager path and the fast path alike;
- `Edit` (edits.py): replace, mean-ablate, zero, scale or add, by channel, region and step or sigma range;
- `select_steps`, `SigmaRange` (steps.py): which sampler steps;
- `run_traced`, `Trace` (run.py): a sampler run under a Tracer (what `adapter.trace()` returns);
- `capture` (capture.py): the context-manager front over a bare network;
- reductions.py: activation -> heatmap or RGB image.
"""

from visualizer.trace.capture import Capture, capture
from visualizer.trace.edits import Edit
from visualizer.trace.recorder import Record, Tracer, register_forward_hooks
from visualizer.trace.reductions import (
    REDUCTIONS,
    channel_l2,
    get_reduction,
    mean_abs,
    pca_rgb,
    reduce,
    single_channel,
    topk_energy,
)
from visualizer.trace.run import Trace, run_traced
from visualizer.trace.steps import SigmaRange, select_steps

__all__ = [
    "REDUCTIONS", "Capture", "Edit", "Record", "SigmaRange", "Trace", "Tracer", "capture", "channel_l2",
    "get_reduction", "mean_abs", "pca_rgb", "reduce", "register_forward_hooks", "run_traced", "select_steps",
    "single_channel", "topk_energy",
]
