"""Refresh the screenshots the README shows (docs/screenshots/*.png) from the browser tests, on purpose.

The browser tests write their screenshots to a temporary folder (tests/browser/conftest.py), never over
the tracked files. This runs them with $VISUALIZER_SCREENSHOTS pointing at a fresh folder, then copies
into docs/screenshots/ exactly the files that README.md links to, and says which it could not find.

    python scripts/refresh_screenshots.py                 # every browser test
    python scripts/refresh_screenshots.py -k demo         # extra arguments go to pytest
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "screenshots"


def shown_in_readme(readme: Path = REPO / "README.md") -> list[str]:
    """File names under docs/screenshots/ that the README links to, in order, once each."""
    return list(dict.fromkeys(re.findall(r"docs/screenshots/([\w.-]+\.png)", readme.read_text())))


def main(argv: list[str]) -> int:
    wanted = shown_in_readme()
    with tempfile.TemporaryDirectory(prefix="screenshots-") as folder:
        env = {**os.environ, "VISUALIZER_SCREENSHOTS": folder}
        code = subprocess.call([sys.executable, "-m", "pytest", "-q", "tests/browser", *argv], cwd=REPO, env=env)
        made = {p.name for p in Path(folder).glob("*.png")}
        DOCS.mkdir(parents=True, exist_ok=True)
        for name in wanted:
            if name in made:
                shutil.copyfile(Path(folder) / name, DOCS / name)
                print(f"refreshed docs/screenshots/{name}")
        missing = [n for n in wanted if n not in made]
    for name in missing:
        print(f"not made by these tests: docs/screenshots/{name}", file=sys.stderr)
    return code or (1 if missing else 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
