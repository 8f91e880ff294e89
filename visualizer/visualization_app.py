"""The visualizer web app: `python visualizer/visualization_app.py --help` (no arguments: the demo).

A thin command line over `visualizer.app.cli`. Run as a script, Python puts this file's folder
(the `visualizer` package itself) first on sys.path, where its modules (`cli`, `models`,
`embeddings`, ...) would shadow real top-level packages; that entry is removed before anything is
imported.
"""

from __future__ import annotations

import os
import sys


def _drop_own_folder() -> None:
    here = os.path.dirname(os.path.realpath(__file__))
    if sys.path and os.path.realpath(sys.path[0] or os.curdir) == here:
        del sys.path[0]
    import importlib.util

    if importlib.util.find_spec("visualizer") is None:  # not installed: use the checkout it sits in
        sys.path.insert(0, os.path.dirname(here))


def main(argv: list[str] | None = None) -> int:
    from visualizer.app.cli import main as app_main

    return app_main(argv)


if __name__ == "__main__":
    _drop_own_folder()
    sys.exit(main())
