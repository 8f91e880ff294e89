"""`load_network`: any supported checkpoint as an EDMPrecond, through `open_checkpoint` and one reader.

The readers sit below this module and never import it: the shared pieces live underneath them
(`formats`: detect_format; `build`: build_network; `files`: atomic_write; `messages`: error texts;
`opener`: open_checkpoint). The names that used to be defined here are re-exported for old imports.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from visualizer.checkpoints.build import build_network, dmd2_kwargs, state_dict_problems, strip_module_prefix
from visualizer.checkpoints.dmd2 import load_dmd2_generator
from visualizer.checkpoints.edm_pickle import load_edm_pickle, read_edm_pickle
from visualizer.checkpoints.files import atomic_write
from visualizer.checkpoints.formats import FORMATS, detect_format
from visualizer.checkpoints.opener import OpenedCheckpoint, open_checkpoint
from visualizer.checkpoints.safetensors_io import (
    KWARGS_KEY,
    SOURCE_KEY,
    load_network_safetensors,
    read_metadata,
    read_safetensors_shapes,
)
from visualizer.checkpoints.torch_files import read_torch_shapes
from visualizer.errors import CheckpointError
from visualizer.models import EDMPrecond

__all__ = ["FORMATS", "atomic_write", "build_network", "detect_format", "is_teacher_format", "load_network",
           "open_checkpoint", "read_architecture", "state_dict_problems"]


def load_network(path: str | Path | OpenedCheckpoint, device: str | torch.device = "cpu") -> EDMPrecond:
    """Any supported checkpoint as an EDMPrecond in eval mode, on `device`.

    `path` is opened once (`open_checkpoint`: located, format detected, DMD2 generator file found) and
    the opened checkpoint is handed to the reader of its format; an already opened one is used as is.
    """
    checkpoint = open_checkpoint(path)
    if checkpoint.format == "edm-pickle":
        net = load_edm_pickle(checkpoint)
    elif checkpoint.format == "safetensors":
        net = load_network_safetensors(checkpoint)
    else:
        net = load_dmd2_generator(checkpoint)
    return net.to(device).eval()


def is_teacher_format(path: str | Path | OpenedCheckpoint) -> bool:
    """Whether a checkpoint is an EDM pickle (or our .safetensors conversion of one): a teacher's file."""
    checkpoint = open_checkpoint(path)
    if checkpoint.format == "edm-pickle":
        return True
    if checkpoint.weights_format == "safetensors":
        return read_metadata(checkpoint.weights_file).get(SOURCE_KEY) == "edm-pickle"
    return False


def read_architecture(path: str | Path | OpenedCheckpoint) -> dict[str, int]:
    """{resolution, channels, num_classes} of a checkpoint's network without building it or holding its weights.

    EDM pickles are read through the same safe reader with tensors on the meta device; .safetensors
    files from their metadata or their header's shapes; torch files from their `data.pkl` (checked
    as for loading). Errors are those of loading the file.
    """
    checkpoint = open_checkpoint(path)
    file = checkpoint.weights_file
    if checkpoint.format == "edm-pickle":
        kwargs = read_edm_pickle(checkpoint, meta=True)[0]
    elif checkpoint.weights_format == "safetensors":
        metadata = read_metadata(file)
        if KWARGS_KEY in metadata:
            try:
                kwargs = json.loads(metadata[KWARGS_KEY])
            except (ValueError, RecursionError) as e:
                raise CheckpointError(f"{file}: its '{KWARGS_KEY}' metadata is not valid JSON") from e
        else:
            kwargs = dmd2_kwargs(strip_module_prefix(read_safetensors_shapes(file), file), file)
    else:
        kwargs = dmd2_kwargs(strip_module_prefix(read_torch_shapes(file), file), file)
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{file}: its settings are not a mapping")
    arch = {"resolution": kwargs.get("img_resolution"), "channels": kwargs.get("img_channels"),
            "num_classes": kwargs.get("label_dim", 0)}
    bad = [k for k, v in arch.items() if not isinstance(v, int) or isinstance(v, bool) or v < 0]
    if bad:
        raise CheckpointError(f"{file}: its settings give no valid {', '.join(bad)}")
    return arch
