"""Thin wrapper: `python scripts/evaluate_demo.py ARGS` is `python tools/demo/evaluate.py ARGS`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.demo.evaluate import main  # noqa: E402

if __name__ == "__main__":
    main()
