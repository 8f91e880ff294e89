"""Start the web app: `python visualizer/visualization_app.py [options]` (no options: the embedded demo).

The same options work as `python -m visualizer app [options]` (or `visualizer app` once installed).

Examples:

    python visualizer/visualization_app.py --embeddings runs/bottleneck/embeddings.csv
    python visualizer/visualization_app.py --embeddings runs/e.csv \\
        --teacher edm-imagenet-64x64-cond-adm.pkl --student checkpoint_model_548000/
    python visualizer/visualization_app.py --adapter edm-imagenet-64 --checkpoint_path edm.pkl
    python visualizer/visualization_app.py --embeddings runs/e.csv --preset deterministic --num-steps 40

With --embeddings alone the models recorded in its sidecar are loaded. Start-up problems (a missing
file, a malformed CSV, a checkpoint its adapter cannot read, an unknown adapter) print one line
and exit with status 2.

Sharing: the default --host 127.0.0.1 serves this computer only. Any other address (--host 0.0.0.0)
needs an access token, as Jupyter does: a random one is printed in the start-up address unless
--token or $VISUALIZER_TOKEN gives one; every page, thumbnail and callback asks for it, and the page
then shows no absolute paths.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from visualizer.cli_args import add_speed_arguments
from visualizer.errors import UserError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n", 2)[2]
    g = parser.add_argument_group("what to show")
    g.add_argument("--embeddings", type=Path, metavar="CSV", help="embeddings table (python -m visualizer embed)")
    g.add_argument("--teacher", metavar="PATH", help="teacher checkpoint (adapter detected from the file)")
    g.add_argument("--student", metavar="PATH", help="student checkpoint (adapter detected from the file)")
    g.add_argument("--adapter", metavar="NAME", help="one model by adapter name, with --checkpoint_path")
    g.add_argument("--checkpoint_path", "--checkpoint-path", dest="checkpoint_path", metavar="PATH",
                   help="checkpoint of the --adapter model")
    g = parser.add_argument_group("teacher sampler (default: what the embeddings were made with, else the "
                                  "adapter's own)")
    g.add_argument("--preset", metavar="NAME",
                   help="teacher sampler preset (default: the embeddings' run, else the teacher adapter's own; "
                        "an unknown name lists the valid ones)")
    g.add_argument("--num-steps", type=int, metavar="N", help="number of sampler steps")
    g.add_argument("--allow-mismatch", action="store_true",
                   help="load checkpoints that did not make the embeddings (another sha256, role or architecture), "
                        "with a warning in the page, instead of refusing them")
    g = parser.add_argument_group("server")
    g.add_argument("--device", metavar="DEVICE", help="cuda, cuda:1, cpu, mps (default: the best available)")
    add_speed_arguments(g)
    g.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this computer only; any other needs a token)")
    g.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    g.add_argument("--debug", action="store_true",
                   help="Dash debug mode (dev tools, error pop-ups); only on 127.0.0.1 without a token")
    g.add_argument("--token", metavar="TOKEN",
                   help="access token every request must bring (default: $VISUALIZER_TOKEN; a random one for a "
                        "--host other than 127.0.0.1)")


def config_from_args(args: argparse.Namespace):
    """The AppConfig the options ask for; no options that choose data means the demo."""
    from visualizer.app.config import AppConfig, ModelSource, demo_config

    chooses = [args.embeddings, args.teacher, args.student, args.adapter, args.checkpoint_path]
    if not any(v is not None for v in chooses):
        demo = demo_config()
        return AppConfig(**{**demo.__dict__, "device": args.device or demo.device, "precision": args.precision,
                            "compile": args.compile,
                            "preset": args.preset or demo.preset, "num_steps": args.num_steps or demo.num_steps})
    if (args.adapter is None) != (args.checkpoint_path is None):
        raise UserError("--adapter and --checkpoint_path go together (one model: its adapter name and its file)")
    if args.adapter and (args.teacher or args.student):
        raise UserError("give either --adapter/--checkpoint_path (one model) or --teacher/--student, not both")
    models = []
    if args.adapter:
        models.append(ModelSource(_key_for(args.adapter, args.embeddings), args.checkpoint_path, args.adapter))
    models += [ModelSource(key, path) for key, path in (("teacher", args.teacher), ("student", args.student)) if path]
    return AppConfig(embeddings=args.embeddings, models=tuple(models), device=args.device, preset=args.preset,
                     allow_mismatch=getattr(args, "allow_mismatch", False),
                     num_steps=args.num_steps, precision=args.precision, compile=args.compile)


def _key_for(adapter: str, embeddings: Path | None) -> str:
    """The sidecar's key for this adapter when there is one (so labels match the scatter), else its role."""
    from visualizer.adapters import get_adapter
    from visualizer.embeddings.schema import read_sidecar, sidecar_path

    cls = get_adapter(adapter)
    if embeddings is not None and sidecar_path(embeddings).is_file():
        for key, info in read_sidecar(sidecar_path(embeddings)).get("models", {}).items():
            if info.get("adapter") == adapter:
                return key
    return cls.role


def run(args: argparse.Namespace) -> int:
    from visualizer.app.access import access_token, start_url
    from visualizer.app.config import load
    from visualizer.app.context import EXACT_LIMIT
    from visualizer.app.server import create_app

    token = access_token(args.host, getattr(args, "token", None))
    if token and args.debug:
        raise UserError("--debug shows tracebacks and a code console to whoever opens the page: use it only on "
                        "127.0.0.1 without --token")
    config = dataclasses.replace(config_from_args(args), progress=True)
    state = load(config)
    for line in state.startup_lines():
        print(f"visualizer: {line}", flush=True)
    points = 0 if state.embeddings is None else len(state.embeddings.frame)
    if points > EXACT_LIMIT:
        print(f"visualizer: {points:,} points: the scatter shows an overview image above {EXACT_LIMIT:,} points in "
              "view; compiling its aggregation (datashader, about 10 s) ...", flush=True)
    app = create_app(state, token=token)
    for slot in state.slots:
        if slot.adapter.compile != "off":
            print(f"visualizer: compiling {slot.key} for {slot.adapter.device} (--compile {slot.adapter.compile}; "
                  "the first time takes about a minute) ...", flush=True)
            print(f"visualizer: {slot.key} ready in {app.visualizer.inspector.warm_up(slot.key):.1f} s", flush=True)
    print(f"visualizer: {points:,} points, {len(state.slots)} model(s); open {start_url(args.host, args.port, token)}",
          flush=True)
    if token:
        print("visualizer: every request needs this access token (the address above brings it); share it only with "
              "those who may use this server and its GPU", flush=True)
    app.run(host=args.host, port=args.port, debug=args.debug, use_reloader=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="visualization_app.py", description=__doc__.splitlines()[0])
    configure(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
