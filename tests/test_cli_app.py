"""`python -m visualizer app` (and the `visualizer` console script): the app's own command line as a subcommand."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from visualizer.app import cli as app_cli

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "visualizer", *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=ROOT)


def test_help_lists_app_and_shows_the_apps_options():
    top = _run("--help")
    assert top.returncode == 0 and "app" in top.stdout and "start the web app" in top.stdout
    result = _run("app", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m visualizer app")
    for option in ("--embeddings", "--teacher", "--student", "--adapter", "--checkpoint_path", "--preset",
                   "--num-steps", "--device", "--precision", "--compile", "--host", "--port", "--debug"):
        assert option in result.stdout, option


def test_same_parser_as_visualization_app(monkeypatch):
    """`python -m visualizer app ARGS` parses ARGS exactly as visualization_app.py does, then runs the app's run()."""
    from visualizer.cli import main

    seen = []
    monkeypatch.setattr(app_cli, "run", lambda args: seen.append(args) or 0)
    argv = ["--teacher", "t.pkl", "--port", "9000", "--compile", "--preset", "deterministic"]
    assert main(["app", *argv]) == 0
    script = argparse.ArgumentParser()
    app_cli.configure(script)
    assert {k: v for k, v in vars(seen[0]).items() if k != "command"} == vars(script.parse_args(argv))
    assert main(["app"]) == 0 and seen[1].embeddings is None and seen[1].port == 8050   # no options: the demo


@pytest.mark.parametrize("args", [("--embeddings", "nope.csv"), ("--adapter", "edm-imagenet-64")])
def test_start_up_errors_are_one_line_and_exit_2(args, tmp_path):
    result = _run("app", *[str(tmp_path / a) if a.endswith(".csv") else a for a in args])
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert ("no such embeddings file" in lines[0]) if args[0] == "--embeddings" else ("--checkpoint_path" in lines[0])
