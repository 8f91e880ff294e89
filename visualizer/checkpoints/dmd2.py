"""DMD2 generator checkpoints: a bare ADM state dict, with no settings stored beside it.

DMD2 saves `checkpoint_model_NNNNNN/pytorch_model.bin` (a zip torch.save of the generator's state
dict, written from the GPU) next to `pytorch_model_1.bin`, which holds the guidance networks and
is never the generator. The architecture is the ImageNet-64 teacher's when every key and shape
matches it (dropout 0, as DMD2 trains), else it is inferred from the weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import torch

from visualizer.checkpoints.loading import _capped, _first_line, build_network, detect_format
from visualizer.checkpoints.safetensors_io import read_safetensors
from visualizer.errors import CheckpointError
from visualizer.models import IMAGENET64_KWARGS, EDMPrecond, infer_kwargs

GENERATOR_FILES = ("pytorch_model.bin", "model.safetensors")
GUIDANCE_FILE = "pytorch_model_1.bin"


def generator_file(path: str | Path) -> Path:
    """The generator's weights file for a file or a checkpoint_model_NNNNNN/ folder."""
    path = Path(path)
    if path.name == GUIDANCE_FILE:
        raise CheckpointError(_guidance_message(path))
    if not path.is_dir():
        return path
    for name in GENERATOR_FILES:
        if (path / name).is_file():
            return path / name
    if (path / GUIDANCE_FILE).exists():
        raise CheckpointError(_guidance_message(path / GUIDANCE_FILE) + f"; {path} has no {GENERATOR_FILES[0]}")
    found = sorted(p.name for p in path.iterdir())[:10]
    raise CheckpointError(
        f"{path}: no generator weights in this folder (looked for {' or '.join(GENERATOR_FILES)}; "
        f"found {', '.join(found) or 'nothing'})"
    )


def load_dmd2_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The generator's state dict from a .bin/.pth (torch.save), .safetensors, or a DMD2 folder, on the CPU."""
    file = generator_file(path)
    fmt = detect_format(file)
    if fmt == "torch":
        try:
            obj = torch.load(file, map_location="cpu", weights_only=True)
        except MemoryError:
            raise
        except Exception as e:
            raise CheckpointError(f"{file}: not a readable torch checkpoint: {_first_line(e)}") from e
    elif fmt == "safetensors":
        _, obj = read_safetensors(file)
    else:
        raise CheckpointError(f"{file}: an EDM pickle, not a DMD2 generator state dict; load it with load_network")
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{file}: holds a {type(obj).__name__}, not a state dict")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{file}: {len(bad)} entries are not named tensors: {_capped(bad)}")
    if not obj:
        raise CheckpointError(f"{file}: the state dict is empty")
    return strip_module_prefix(obj, file)


def strip_module_prefix(state_dict: Mapping[str, torch.Tensor], source: str | Path) -> dict[str, torch.Tensor]:
    """Drop the `module.` that DistributedDataParallel puts in front of every key."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        name = key.removeprefix("module.")
        if name in out:
            raise CheckpointError(f"{source}: both {name!r} and 'module.{name}' are present")
        out[name] = value
    return out


def dmd2_kwargs(state_dict: Mapping[str, torch.Tensor], source: str | Path) -> dict:
    """ImageNet-64 settings (dropout 0) when every key and shape matches them, else inferred ones."""
    reference = _imagenet64_shapes()
    if len(state_dict) == len(reference) and all(
        k in state_dict and tuple(state_dict[k].shape) == shape for k, shape in reference.items()
    ):
        return {**IMAGENET64_KWARGS, "dropout": 0.0}
    try:
        return infer_kwargs(state_dict)
    except MemoryError:
        raise
    except Exception as e:
        raise CheckpointError(f"{source}: not an ADM (EDM/DMD2) generator state dict: {_first_line(e)}") from e


def load_dmd2_generator(path: str | Path, kwargs: Mapping | None = None) -> EDMPrecond:
    """The DMD2 generator in eval mode; `kwargs` overrides the architecture (else ImageNet-64 or inferred)."""
    file = generator_file(path)
    state_dict = load_dmd2_state_dict(file)
    kwargs = dict(kwargs) if kwargs is not None else dmd2_kwargs(state_dict, file)
    return build_network(kwargs, state_dict, file)


@lru_cache(maxsize=1)
def _imagenet64_shapes() -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        net = EDMPrecond(**IMAGENET64_KWARGS)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _guidance_message(path: Path) -> str:
    return (f"{path}: DMD2's {GUIDANCE_FILE} holds the guidance (real/fake score) networks, not the generator; "
            f"use {GENERATOR_FILES[0]} from the same folder")
