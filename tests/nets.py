"""Small networks in the real architecture, for checkpoints built in the real formats.

A plain module (not conftest.py) so tests can import it by a name no other folder shares.
"""

from __future__ import annotations

import torch

from visualizer.models import TINY_KWARGS, EDMPrecond


def tiny_kwargs(**overrides) -> dict:
    """EDMPrecond kwargs of a 16x16, 10-class ADM with one attention level (8x8); ~0.8 M parameters."""
    kwargs = {**TINY_KWARGS, "channel_mult": list(TINY_KWARGS["channel_mult"]),
              "attn_resolutions": list(TINY_KWARGS["attn_resolutions"])}
    kwargs.update(overrides)
    return kwargs


def tiny_net(seed: int = 0, **overrides) -> EDMPrecond:
    """A tiny network in eval mode whose every weight (the zero-initialised ones too) is random; same seed, same net."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = EDMPrecond(**tiny_kwargs(**overrides))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return net.eval()
