"""DMD2 generator checkpoints: a bare ADM state dict, with no settings stored beside it.

DMD2 saves `checkpoint_model_NNNNNN/pytorch_model.bin` (a zip torch.save of the generator's state
dict, written from the GPU) next to `pytorch_model_1.bin`, which holds the guidance networks and
is never the generator (`formats.generator_file` picks the right file). The architecture is the
ImageNet-64 teacher's when every key and shape matches it (dropout 0, as DMD2 trains), else it is
inferred from the weights (`build.dmd2_kwargs`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from visualizer.checkpoints.build import build_network, dmd2_kwargs, strip_module_prefix
from visualizer.checkpoints.formats import GENERATOR_FILES, GUIDANCE_FILE, generator_file
from visualizer.checkpoints.messages import capped
from visualizer.checkpoints.opener import OpenedCheckpoint, open_checkpoint
from visualizer.checkpoints.safetensors_io import read_safetensors
from visualizer.checkpoints.torch_files import load_torch_file
from visualizer.errors import CheckpointError
from visualizer.models import EDMPrecond

# Re-exported: these lived here before the shared pieces moved below the readers.
__all__ = ["GENERATOR_FILES", "GUIDANCE_FILE", "dmd2_kwargs", "generator_file", "load_dmd2_generator",
           "load_dmd2_state_dict", "strip_module_prefix"]


def load_dmd2_state_dict(path: str | Path | OpenedCheckpoint) -> dict[str, torch.Tensor]:
    """The generator's state dict from a .bin/.pth (torch.save), .safetensors, or a DMD2 folder, on the CPU."""
    checkpoint = _opened(path)
    file = checkpoint.weights_file
    if checkpoint.weights_format == "torch":
        obj = load_torch_file(file)   # structure, sizes and tensor views checked before torch.load
    elif checkpoint.weights_format == "safetensors":
        _, obj = read_safetensors(file)
    else:
        raise CheckpointError(f"{file}: an EDM pickle, not a DMD2 generator state dict; load it with load_network")
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{file}: holds a {type(obj).__name__}, not a state dict")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{file}: {len(bad)} entries are not named tensors: {capped(bad)}")
    if not obj:
        raise CheckpointError(f"{file}: the state dict is empty")
    return strip_module_prefix(obj, file)


def load_dmd2_generator(path: str | Path | OpenedCheckpoint, kwargs: Mapping | None = None) -> EDMPrecond:
    """The DMD2 generator in eval mode; `kwargs` overrides the architecture (else ImageNet-64 or inferred)."""
    checkpoint = _opened(path)
    file = checkpoint.weights_file
    state_dict = load_dmd2_state_dict(checkpoint)
    kwargs = dict(kwargs) if kwargs is not None else dmd2_kwargs(state_dict, file)
    return build_network(kwargs, state_dict, file)


def _opened(path: str | Path | OpenedCheckpoint) -> OpenedCheckpoint:
    """An opened checkpoint as it is; a path by the DMD2 rule first (a guidance file is refused by name)."""
    if isinstance(path, OpenedCheckpoint):
        return path
    return open_checkpoint(generator_file(path))
