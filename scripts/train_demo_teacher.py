"""Thin wrapper: `python scripts/train_demo_teacher.py ARGS` is `python tools/demo/train_teacher.py ARGS`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.demo.train_teacher import main  # noqa: E402

if __name__ == "__main__":
    main()
