"""Names for the inside of an EDMPrecond: the public interface of its activations.

Two naming schemes point at the same modules:

- native names, `enc.<key>` and `dec.<key>`, the keys of the U-Net's ModuleDicts
  (`enc.16x16_block1` is `model.enc.16x16_block1`), so a name says where and at what resolution;
- the 37 names users of the earlier visualizer know (facts, section 6): `encoder_block_0..14`,
  `encoder_bottleneck`, `midblock`, `decoder_block_1..20` (there is no `decoder_block_0`).

The legacy names are defined by position, so every net of the family has them, not only the
ImageNet-64 one: `encoder_block_i` is the i-th encoder module except the last,
`encoder_bottleneck` the last encoder module, `midblock` the first decoder module (`<res>_in0`)
and `decoder_block_j` the j-th decoder module after it. For the ImageNet-64 layout that gives
exactly the earlier tool's 37 names; a test net with 4 encoder and 7 decoder modules exposes
`encoder_block_0..2`, `encoder_bottleneck`, `midblock` and `decoder_block_1..6`.

Shapes come from arithmetic on the module attributes (`out_channels`) and the key (`<res>x<res>_`),
never from a forward pass, so they cost nothing even for the 296M-parameter network.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from torch import nn

from visualizer.errors import UserError
from visualizer.models.networks import EDMPrecond

_RESOLUTION = re.compile(r"(\d+)x(\d+)_")
BOTTLENECK = "encoder_bottleneck"   # the default layer everywhere: the last encoder module, the most compressed


def native_names(net: EDMPrecond) -> dict[str, str]:
    """`enc.<key>` / `dec.<key>` -> module path, encoder then decoder, in the order they run."""
    return {name: f"model.{name}" for name in net.model.block_names()}


def legacy_names(net: EDMPrecond) -> dict[str, str]:
    """The earlier tool's names -> module path, in network order (see the module docstring)."""
    enc, dec = list(net.model.enc), list(net.model.dec)
    table = {f"encoder_block_{i}": f"model.enc.{key}" for i, key in enumerate(enc[:-1])}
    if enc:
        table["encoder_bottleneck"] = f"model.enc.{enc[-1]}"
    if dec:
        table["midblock"] = f"model.dec.{dec[0]}"
    table.update({f"decoder_block_{j}": f"model.dec.{key}" for j, key in enumerate(dec[1:], start=1)})
    return table


def LEGACY_NAMES(net: EDMPrecond) -> list[str]:
    """The legacy names of `net` in network order (37 for ImageNet-64): the display list of the earlier tool."""
    return list(legacy_names(net))


def layer_table(net: EDMPrecond) -> dict[str, str]:
    """Every hookable name -> module path relative to the EDMPrecond; the order is the display order.

    Native names come first (encoder, decoder), then the legacy names, each in network order.
    """
    return {**native_names(net), **legacy_names(net)}


def _unknown(bad: list[str], table: dict[str, str]) -> UserError:
    return UserError(f"unknown layer name(s) {', '.join(map(repr, bad))}; valid names: {', '.join(table)}")


def resolve_layers(net: EDMPrecond, names: str | Iterable[str]) -> dict[str, nn.Module]:
    """Name -> module for the names asked for, in the order asked; unknown names are a UserError."""
    names = [names] if isinstance(names, str) else list(names)
    table = layer_table(net)
    bad = [n for n in names if n not in table]
    if bad:
        raise _unknown(bad, table)
    return {n: net.get_submodule(table[n]) for n in names}


def layer_shapes(net: EDMPrecond, batch: int = 1) -> dict[str, tuple[int, int, int, int]]:
    """Name -> output shape (batch, C, H, W) of every hookable layer, without running the network.

    The U-Net only runs at `img_resolution`, so the key's `<res>x<res>` is the spatial size and the
    module's `out_channels` the width; this needs no weights (meta-device nets work too).
    """
    shapes = {}
    for name, path in layer_table(net).items():
        key = path.rsplit(".", 1)[1]
        h, w = map(int, _RESOLUTION.match(key).groups())
        shapes[name] = (batch, net.get_submodule(path).out_channels, h, w)
    return shapes
