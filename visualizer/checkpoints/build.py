"""Turning (settings, weights) into a network without a copy, and the settings of a bare state dict.

Every format ends in `build_network`: the network is built on the meta device (no memory, no
random init), compared key by key with the weights, and then takes the loaded tensors as its own
(`assign=True`), so loading never holds two copies of a 1.2 GB network.

A state dict saved without settings (a DMD2 generator, as .bin or as a .safetensors file without our
metadata) gets them from `dmd2_kwargs`: ImageNet-64 when every key and shape matches it, else
inferred from the weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import torch

from visualizer.checkpoints.messages import capped, first_line
from visualizer.errors import CheckpointError
from visualizer.models import IMAGENET64_KWARGS, EDMPrecond, infer_kwargs


def build_network(kwargs: Mapping, state_dict: Mapping[str, torch.Tensor], source: str | Path) -> EDMPrecond:
    """EDMPrecond(**kwargs) holding exactly `state_dict` (its tensors, not copies), in eval mode.

    Raises CheckpointError naming `source` when the settings cannot build a network or when the
    weights do not fit it (missing, unexpected, mis-shaped or non-float entries, listed).
    """
    kwargs = dict(kwargs)
    _check_plausible(kwargs, len(state_dict), source)
    try:
        with torch.device("meta"):
            net = EDMPrecond(**kwargs)
    except MemoryError:
        raise
    except Exception as e:
        raise CheckpointError(f"{source}: cannot build the network from its settings {_summary(kwargs)}: {e}") from e
    problems = state_dict_problems(net.state_dict(), state_dict)
    if problems:
        raise CheckpointError(
            f"{source}: the weights do not fit the network {_summary(kwargs)}: " + "; ".join(problems)
        )
    try:
        net.load_state_dict(state_dict, strict=True, assign=True)
    except MemoryError:
        raise
    except Exception as e:
        raise CheckpointError(f"{source}: the weights do not load: {first_line(e)}") from e
    # Non-persistent buffers are not in any file; a network that had some would be left on meta.
    left = [name for name, t in [*net.named_parameters(), *net.named_buffers()] if t.is_meta and name not in state_dict]
    if left:
        raise CheckpointError(f"{source}: no weights for {capped(left)}")
    return net.eval()


def state_dict_problems(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]) -> list[str]:
    """Human-readable differences between the network's state dict and a file's; empty when they fit."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    misshaped = [
        f"{k} {tuple(found[k].shape)} in the file vs {tuple(v.shape)} in the network"
        for k, v in expected.items() if k in found and tuple(found[k].shape) != tuple(v.shape)
    ]
    not_float = [f"{k} ({found[k].dtype})" for k in expected if k in found and not found[k].is_floating_point()]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped),
                         ("not floating point", not_float)):
        if items:
            problems.append(f"{len(items)} {label}: {capped(items)}")
    return problems


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
        raise CheckpointError(f"{source}: not an ADM (EDM/DMD2) generator state dict: {first_line(e)}") from e


@lru_cache(maxsize=1)
def _imagenet64_shapes() -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        net = EDMPrecond(**IMAGENET64_KWARGS)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _check_plausible(kwargs: dict, entries: int, source: str | Path) -> None:
    """Refuse settings that would take long to build before comparing them with the weights."""
    mult, blocks = kwargs.get("channel_mult", (1, 2, 3, 4)), kwargs.get("num_blocks", 3)
    if not isinstance(mult, (list, tuple)) or not isinstance(blocks, int) or isinstance(blocks, bool) or blocks < 0:
        raise CheckpointError(f"{source}: malformed settings channel_mult={mult!r} num_blocks={blocks!r}")
    if len(mult) * (blocks + 1) > entries:
        raise CheckpointError(
            f"{source}: its settings ask for {len(mult)} levels of {blocks} blocks, "
            f"more than its {entries} weight entries could describe"
        )


def _summary(kwargs: Mapping) -> str:
    keys = ("img_resolution", "label_dim", "model_channels", "channel_mult", "num_blocks", "attn_resolutions")
    return "(" + ", ".join(f"{k}={kwargs[k]!r}" for k in keys if k in kwargs) + ")"
