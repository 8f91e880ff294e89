"""Command-line options the app and the embed pipeline share: how fast the models run on CUDA.

No torch import here, so `--help` stays instant; tests check the names against the model code's.
"""

from __future__ import annotations

import argparse

PRECISIONS = ("fp32", "fp16", "bf16")        # models.networks.PRECISIONS
COMPILE_MODES = ("off", "graphs", "full")    # models.acceleration.COMPILE_MODES


def add_speed_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--precision", choices=PRECISIONS,
                       help="U-Net compute precision on CUDA (default: each checkpoint's own; CPU/MPS stay fp32)")
    group.add_argument("--compile", nargs="?", const="full", default="off", choices=COMPILE_MODES,
                       help="fast path on CUDA: 'full' (the default of a bare --compile) is torch.compile plus "
                            "CUDA graphs, 'graphs' CUDA graphs only (no compile wait); CPU/MPS run eagerly")
