"""Start-up of `visualizer/visualization_app.py` as users run it: errors are one line, exit 2, no traceback."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from app_files import write_pair, write_synthetic_embeddings

SCRIPT = Path(__file__).resolve().parents[1] / "visualizer" / "visualization_app.py"


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=SCRIPT.parents[1])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    pkl, student = write_pair(root / "ckpt")
    csv = write_synthetic_embeddings(root / "emb", 10)
    bad_csv = root / "bad.csv"
    bad_csv.write_text(csv.read_text().replace(",80.0,", ",eighty,", 1))
    wrong = root / "wrong.bin"
    torch.save({"model.enc.99x99_conv.weight": torch.zeros(1)}, wrong)
    garbage = root / "garbage.pkl"
    garbage.write_bytes(b"\x80\x04 not really a pickle")
    return {"pkl": pkl, "student": student, "csv": csv, "bad_csv": bad_csv, "wrong": wrong, "garbage": garbage,
            "root": root}


def _one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_missing_embeddings_file(files):
    _one_line_error(_run("--embeddings", str(files["root"] / "nope.csv")), "nope.csv", "no such embeddings file")


def test_malformed_csv_names_file_row_and_column(files):
    _one_line_error(_run("--embeddings", str(files["bad_csv"])), "bad.csv", "row 2", "sigma")


def test_checkpoint_that_does_not_fit_its_adapter(files):
    _one_line_error(_run("--adapter", "dmd2-imagenet-64", "--checkpoint_path", str(files["wrong"])), "wrong.bin")
    _one_line_error(_run("--teacher", str(files["garbage"])), "garbage.pkl")
    _one_line_error(_run("--teacher", str(files["root"] / "missing.pkl")), "missing.pkl")


def test_unknown_adapter_lists_the_known_ones(files):
    _one_line_error(_run("--adapter", "sd-xl", "--checkpoint_path", str(files["pkl"])),
                    "unknown adapter 'sd-xl'", "edm-imagenet-64")


def test_inconsistent_options(files):
    _one_line_error(_run("--adapter", "edm-imagenet-64"), "--checkpoint_path")
    _one_line_error(_run("--teacher", str(files["pkl"]), "--num-steps", "0"), "--num-steps")
    _one_line_error(_run("--teacher", str(files["pkl"]), "--preset", "fast"), "--preset 'fast'", "fid")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_starts_serves_the_page_and_thumbnails(files):
    """Run as a script (its own folder off sys.path), with the teacher/student options users type."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--embeddings", str(files["csv"]), "--teacher", str(files["pkl"]),
         "--student", str(files["student"]), "--num-steps", "3", "--device", "cpu", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=SCRIPT.parent)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/thumbs/thumbs/0.png", timeout=2) as r:
                    assert r.status == 200 and r.read()[:4] == b"\x89PNG"
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.3)
        else:
            pytest.fail("the app did not start")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_dash-layout", timeout=5) as r:
            layout = r.read().decode()
        assert "teacher: edm-imagenet-64 (teacher, 3 steps, preset fid)" in layout
        assert "student: dmd2-imagenet-64 (student, 1 step)" in layout
    finally:
        proc.terminate()
        proc.wait(10)


def test_no_arguments_means_the_demo(monkeypatch):
    """The wiring: no option that chooses data runs demo_config(); --device and sampler options still apply."""
    from visualizer.app import cli, config

    calls = []
    monkeypatch.setattr(config, "demo_config", lambda: calls.append(1) or config.AppConfig(title="demo"))
    parser = __import__("argparse").ArgumentParser()
    cli.configure(parser)
    cfg = cli.config_from_args(parser.parse_args(["--device", "cpu", "--num-steps", "7"]))
    assert calls == [1] and cfg.title == "demo" and cfg.device == "cpu" and cfg.num_steps == 7
    assert cfg.compile == "off"
    cfg = cli.config_from_args(parser.parse_args(["--adapter", "dmd2-imagenet-64", "--checkpoint_path", "x.bin"]))
    assert calls == [1] and [(m.key, m.adapter) for m in cfg.models] == [("student", "dmd2-imagenet-64")]
    assert cli.config_from_args(parser.parse_args(["--compile"])).compile == "full"
    assert cli.config_from_args(parser.parse_args(["--compile", "graphs", "--precision", "bf16"])).compile == "graphs"


def test_compile_on_the_cpu_falls_back_to_eager_with_a_warning():
    import dataclasses

    from visualizer.app.config import demo_config, load

    with pytest.warns(UserWarning, match="compile 'graphs' needs CUDA"):
        state = load(dataclasses.replace(demo_config(), device="cpu", compile="graphs"))
    assert [s.adapter.compile for s in state.slots] == ["off", "off"]


def test_demo_opens_the_shipped_pair():
    """No arguments: the shipped digits teacher (EDM pickle) and student (DMD2 folder) with their embeddings."""
    from visualizer.app.config import demo_config, load
    from visualizer.app.server import create_app

    state = load(demo_config())
    assert [s.key for s in state.slots] == ["teacher", "student"]
    assert [s.adapter.name for s in state.slots] == ["edm-digits-32", "dmd2-digits-32"]
    assert state.slots[0].sample_kwargs == {"preset": "demo", "num_steps": 18}
    frame = state.embeddings.frame
    assert set(frame["model"]) == {"teacher", "student"} and (state.embeddings.root / frame["image_path"][0]).is_file()
    assert set(frame["class_name"]) == {f"digit {i}" for i in range(10)}
    client = create_app(state).server.test_client()
    assert client.get("/thumbs/" + frame["image_path"][0]).status_code == 200
