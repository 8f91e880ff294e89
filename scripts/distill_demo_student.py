"""Thin wrapper: `python scripts/distill_demo_student.py ARGS` is `python tools/demo/distill_student.py ARGS`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.demo.distill_student import main  # noqa: E402

if __name__ == "__main__":
    main()
