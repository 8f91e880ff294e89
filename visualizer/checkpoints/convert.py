"""`python -m visualizer convert in.pkl out.safetensors`: read a checkpoint once, the slow careful way.

The EDM pickle is read by the allow-list unpickler (no code runs); the result is a .safetensors
file with the settings in its metadata, which later loads as a plain memory map.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from visualizer.checkpoints.loading import load_network
from visualizer.checkpoints.opener import open_checkpoint
from visualizer.checkpoints.safetensors_io import save_network_safetensors
from visualizer.errors import UserError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path,
                        help="official EDM .pkl (or a DMD2 .bin/.pth, .safetensors or checkpoint_model_NNNNNN folder)")
    parser.add_argument("output", type=Path, help="the .safetensors file to write")
    parser.add_argument("--force", action="store_true", help="overwrite the output if it exists")


def convert(source: str | Path, target: str | Path, *, force: bool = False) -> Path:
    """Write `source`'s network to `target` (.safetensors); refuses to overwrite unless `force`."""
    target = Path(target)
    if target.suffix != ".safetensors":
        raise UserError(f"{target}: the output name must end in .safetensors")
    if target.exists() and not force:
        raise UserError(f"{target}: already exists; pass --force to overwrite it")
    if not target.parent.is_dir():
        raise UserError(f"{target.parent}: no such folder")
    checkpoint = open_checkpoint(source)
    return save_network_safetensors(load_network(checkpoint), target, source_format=checkpoint.format)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    target = convert(args.input, args.output, force=args.force)
    print(f"wrote {target} ({target.stat().st_size / 2**20:.1f} MiB) from {args.input} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0
