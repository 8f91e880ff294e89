"""`load_network`: any supported checkpoint as an EDMPrecond, through `open_checkpoint` and one reader.

The readers sit below this module and never import it: the shared pieces live underneath them
(`formats`: detect_format; `build`: build_network; `files`: atomic_write; `messages`: error texts;
`opener`: open_checkpoint). The names that used to be defined here are re-exported for old imports.
"""

from __future__ import annotations

from pathlib import Path

import torch

from visualizer.checkpoints.build import build_network, state_dict_problems
from visualizer.checkpoints.dmd2 import load_dmd2_generator
from visualizer.checkpoints.edm_pickle import load_edm_pickle
from visualizer.checkpoints.files import atomic_write
from visualizer.checkpoints.formats import FORMATS, detect_format
from visualizer.checkpoints.opener import OpenedCheckpoint, open_checkpoint
from visualizer.checkpoints.safetensors_io import load_network_safetensors
from visualizer.models import EDMPrecond

__all__ = ["FORMATS", "atomic_write", "build_network", "detect_format", "load_network", "open_checkpoint",
           "state_dict_problems"]


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
