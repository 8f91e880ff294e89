"""Small networks in the real architecture, for checkpoints built in the real formats.

A plain module (not conftest.py) so tests can import it by a name no other folder shares.
"""

from __future__ import annotations

import torch

from visualizer.models import EDMPrecond

# A network of the family small enough for tests and the benchmarks' `--tiny` checks: 16x16, 10 classes,
# one attention level (8x8), about 0.8 M parameters, a forward in milliseconds on a CPU.
TINY_KWARGS: dict = dict(
    img_resolution=16, img_channels=3, label_dim=10, model_type="DhariwalUNet", model_channels=32,
    channel_mult=[1, 2], channel_mult_emb=4, num_blocks=1, attn_resolutions=[8], dropout=0.0,
)


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
