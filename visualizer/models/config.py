"""Architecture settings of the checkpoints we load, and inference of a network's settings from its weights."""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping

import torch

from visualizer.models.networks import DhariwalUNet


def _unet_defaults() -> dict:
    """DhariwalUNet's constructor defaults for the architecture's shape: EDM's defaults, which are ImageNet-64's."""
    params = inspect.signature(DhariwalUNet.__init__).parameters
    keys = ("model_channels", "channel_mult", "channel_mult_emb", "num_blocks", "attn_resolutions", "dropout")
    return {k: list(params[k].default) if isinstance(params[k].default, tuple) else params[k].default for k in keys}


# EDMPrecond kwargs of `edm-imagenet-64x64-cond-adm.pkl` (dropout is the training value; it is
# inactive in eval mode). DMD2's ImageNet-64 generator is the same network.
IMAGENET64_KWARGS: dict = dict(img_resolution=64, img_channels=3, label_dim=1000, model_type="DhariwalUNet",
                               **_unet_defaults())

# The embedded demo's pair (visualizer/assets/demo): 32x32 coloured digits, 10 classes, 3.07 M parameters;
# attention at 16x16 (64 channels, 1 head) and 8x8 (96 channels, 1 head).
DIGITS32_KWARGS: dict = dict(img_resolution=32, img_channels=3, label_dim=10, model_type="DhariwalUNet",
                             model_channels=32, channel_mult=[1, 2, 3], channel_mult_emb=4, num_blocks=2,
                             attn_resolutions=[16, 8], dropout=0.0)


def infer_kwargs(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """EDMPrecond kwargs that reproduce the key set and shapes of an ADM state dict.

    Used for DMD2-format files, which store weights but no architecture. Key names carry the
    resolutions, block counts and attention placement; shapes carry the widths.
    """
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    try:
        conv_name = next(k for k in sd if k.startswith("model.enc.") and k.endswith("_conv.weight"))
        conv = sd[conv_name]
        model_channels, img_channels = conv.shape[0], conv.shape[1]
        emb_channels = sd["model.map_layer0.weight"].shape[0]
        label_dim = sd["model.map_label.weight"].shape[1] if "model.map_label.weight" in sd else 0
    except (StopIteration, KeyError) as e:
        raise ValueError(f"not an ADM (DhariwalUNet) state dict: {e} is missing") from None
    enc = {k.split(".")[2] for k in sd if k.startswith("model.enc.")}
    resolutions = sorted({int(m.group(1)) for n in enc if (m := re.match(r"(\d+)x\d+_", n))}, reverse=True)
    blocks = {n for n in enc if re.match(r"\d+x\d+_block\d+$", n)}
    num_blocks = len(blocks) // len(resolutions)
    channel_mult = []
    for res in resolutions:
        out = sd[f"model.enc.{res}x{res}_block0.conv1.weight"].shape[0]
        channel_mult.append(out // model_channels)
    attn = sorted(
        {int(n.split("x")[0]) for n in blocks if f"model.enc.{n}.qkv.weight" in sd}, reverse=True
    )
    # Attention requested where heads would be 0 leaves no trace; those levels carry no attention anyway.
    dropout = 0.0
    return dict(
        img_resolution=resolutions[0], img_channels=img_channels, label_dim=label_dim,
        model_type="DhariwalUNet", model_channels=model_channels, channel_mult=channel_mult,
        channel_mult_emb=emb_channels // model_channels, num_blocks=num_blocks,
        attn_resolutions=attn, dropout=dropout,
    )
