"""`python -m visualizer <command>` (or the `visualizer` console script): each command lives in the module
that does the work.

A command module exposes `configure(parser)` and `run(args) -> int`; it is imported only when
chosen, so `convert` never pays for dash or umap. `app` is the same command line as
`python visualizer/visualization_app.py` (both use `visualizer.app.cli`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from visualizer.errors import UserError

COMMANDS = {
    "convert": ("visualizer.checkpoints.convert", "convert an official EDM pickle to safetensors, once"),
    "download": ("visualizer.checkpoints.download", "fetch the official EDM and DMD2 ImageNet-64 checkpoints"),
    "embed": ("visualizer.embeddings.cli", "generate samples, record activations, write the UMAP embeddings"),
    "app": ("visualizer.app.cli", "start the web app (no options: the embedded demo)"),
    "compare": ("visualizer.metrics.cli", "teacher vs student over many samples: debiased CKA with intervals and "
                                          "nulls, sigma alignment (JSON and CSV)"),
    "diversity": ("visualizer.metrics.diversity_cli", "quality, diversity and coverage of teacher and student in a "
                                                      "probe's space, per class, with seed correspondence"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m visualizer",
        description="Look inside distilled diffusion models: convert, download, embed, app, compare, diversity.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            importlib.import_module(module).configure(p)
    args = parser.parse_args(argv)
    try:
        return importlib.import_module(COMMANDS[args.command][0]).run(args) or 0
    except (UserError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
