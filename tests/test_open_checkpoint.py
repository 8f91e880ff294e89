"""open_checkpoint: one resolve, one format detection and at most one sha256 per opened checkpoint.

Real tiny checkpoints in every supported format; the counts come from wrappers around the real
detect_format / file_sha256 / resolve_checkpoint, installed wherever a module of the package holds them.
"""

from __future__ import annotations

import ast
import hashlib
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from nets import tiny_net
from safetensors.torch import save_file

import visualizer.checkpoints as checkpoints
from visualizer.checkpoints import download, files, formats
from visualizer.checkpoints.convert import convert
from visualizer.checkpoints.dmd2 import load_dmd2_generator, load_dmd2_state_dict
from visualizer.checkpoints.edm_pickle import load_edm_pickle, read_edm_pickle
from visualizer.checkpoints.edm_pickle_writer import write_edm_pickle
from visualizer.checkpoints.loading import load_network
from visualizer.checkpoints.opener import OpenedCheckpoint, open_checkpoint
from visualizer.checkpoints.safetensors_io import load_network_safetensors, save_network_safetensors
from visualizer.embeddings import provenance
from visualizer.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "visualizer" / "checkpoints"
SEED = 5


@pytest.fixture(scope="module")
def files_by_format(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("opened")
    net = tiny_net(seed=SEED)
    state = net.state_dict()
    folder = root / "checkpoint_model_000002"
    folder.mkdir()
    torch.save(state, folder / "pytorch_model.bin")
    torch.save({"guidance_model.fake_unet.weight": torch.zeros(2)}, folder / "pytorch_model_1.bin")
    st_folder = root / "checkpoint_model_000003"
    st_folder.mkdir()
    save_file({k: v.contiguous() for k, v in state.items()}, str(st_folder / "model.safetensors"))
    return {
        "edm-pickle": write_edm_pickle(net, root / "teacher.pkl"),
        "safetensors": save_network_safetensors(net, root / "converted.safetensors", source_format="edm-pickle"),
        "torch": folder / "pytorch_model.bin",
        "dmd2-folder": folder,
        "dmd2-folder-safetensors": st_folder,
    }


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _same_weights(net: torch.nn.Module) -> bool:
    reference = tiny_net(seed=SEED).state_dict()
    loaded = net.state_dict()
    return loaded.keys() == reference.keys() and all(torch.equal(v, loaded[k]) for k, v in reference.items())


def _count(monkeypatch, func) -> list:
    """Wrap the real `func` in every loaded visualizer module that holds it; the list gets one entry per call."""
    calls: list = []

    def counting(*args, **kwargs):
        calls.append(args)
        return func(*args, **kwargs)

    for name, module in list(sys.modules.items()):
        if name.startswith("visualizer") and getattr(module, func.__name__, None) is func:
            monkeypatch.setattr(module, func.__name__, counting)
    return calls


@pytest.fixture
def counts(monkeypatch) -> dict[str, list]:
    return {"detect": _count(monkeypatch, formats.detect_format), "hash": _count(monkeypatch, files.file_sha256),
            "resolve": _count(monkeypatch, download.resolve_checkpoint)}


# -- what an opened checkpoint says -------------------------------------------------------------------

def test_open_names_the_format_the_weights_file_and_its_size(files_by_format):
    for fmt in ("edm-pickle", "safetensors", "torch"):
        path = files_by_format[fmt]
        opened = open_checkpoint(path)
        assert (opened.path, opened.format, opened.weights_file, opened.weights_format) == (path, fmt, path, fmt)
        assert opened.size == path.stat().st_size and opened.url is None
    folder = files_by_format["dmd2-folder"]
    opened = open_checkpoint(str(folder))
    assert opened.path == folder and opened.format == "dmd2-folder"
    assert opened.weights_file == folder / "pytorch_model.bin" and opened.weights_format == "torch"
    assert opened.size == (folder / "pytorch_model.bin").stat().st_size
    inner = open_checkpoint(files_by_format["dmd2-folder-safetensors"])
    assert inner.weights_file.name == "model.safetensors" and inner.weights_format == "safetensors"


def test_sha256_is_the_weights_files_and_is_computed_once(files_by_format, counts):
    folder = files_by_format["dmd2-folder"]
    opened = open_checkpoint(folder)
    assert counts["hash"] == []  # opening does not hash
    assert opened.sha256 == _digest(folder / "pytorch_model.bin") == opened.sha256
    assert len(counts["hash"]) == 1
    assert provenance.sha256(folder) == opened.sha256  # provenance reads it from open_checkpoint


def test_sha256_asked_from_many_threads_is_computed_once(files_by_format, counts):
    opened = open_checkpoint(files_by_format["edm-pickle"])
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(opened.sha256)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [_digest(files_by_format["edm-pickle"])] * 6 and len(counts["hash"]) == 1


def test_opened_checkpoints_are_frozen_and_reopening_returns_them(files_by_format):
    opened = open_checkpoint(files_by_format["torch"])
    assert open_checkpoint(opened) is opened
    with pytest.raises(AttributeError):
        opened.format = "edm-pickle"  # type: ignore[misc]
    assert opened == open_checkpoint(files_by_format["torch"])  # equal whether or not the hash is known yet


# -- one load: one detection, no hash unless asked ----------------------------------------------------

@pytest.mark.parametrize("fmt", ["edm-pickle", "safetensors", "torch", "dmd2-folder", "dmd2-folder-safetensors"])
def test_one_load_detects_once_and_hashes_only_on_request(files_by_format, counts, fmt):
    net = load_network(files_by_format[fmt])
    assert _same_weights(net) and not net.training
    assert len(counts["detect"]) == 1 and counts["hash"] == [] and counts["resolve"] == []
    opened = open_checkpoint(files_by_format[fmt])
    load_network(opened)
    assert opened.sha256 == _digest(opened.weights_file)
    opened.sha256  # noqa: B018 - asked again: no second hash
    assert len(counts["detect"]) == 2 and len(counts["hash"]) == 1


def test_every_loader_takes_the_opened_checkpoint(files_by_format, counts):
    pickle = open_checkpoint(files_by_format["edm-pickle"])
    converted = open_checkpoint(files_by_format["safetensors"])
    folder = open_checkpoint(files_by_format["dmd2-folder"])
    bare = open_checkpoint(files_by_format["torch"])
    opened_detections = len(counts["detect"])
    assert _same_weights(load_edm_pickle(pickle))
    kwargs, state_dict, class_name = read_edm_pickle(pickle)
    assert class_name == "EDMPrecond" and len(state_dict) == len(tiny_net().state_dict())
    assert _same_weights(load_network_safetensors(converted))
    assert _same_weights(load_dmd2_generator(folder)) and _same_weights(load_dmd2_generator(bare))
    assert load_dmd2_state_dict(folder).keys() == tiny_net().state_dict().keys()
    for opened in (pickle, converted, folder, bare):
        assert _same_weights(load_network(opened, device="cpu"))
    assert len(counts["detect"]) == opened_detections  # nothing re-detected what was opened


def test_dmd2_loaders_still_take_paths_and_detect_once(files_by_format, counts):
    assert _same_weights(load_dmd2_generator(files_by_format["dmd2-folder"]))
    assert len(counts["detect"]) == 1


def test_convert_detects_once(files_by_format, counts, tmp_path):
    out = convert(files_by_format["dmd2-folder"], tmp_path / "student.safetensors")
    assert len(counts["detect"]) == 1 and _same_weights(load_network(out))


# -- errors keep their meaning ------------------------------------------------------------------------

def test_open_errors_name_the_file(files_by_format, tmp_path):
    with pytest.raises(CheckpointError, match=r"gone\.pkl: no such file"):
        open_checkpoint(tmp_path / "gone.pkl")
    with pytest.raises(CheckpointError, match=r"gone\.pkl: no such file"):
        load_network(tmp_path / "gone.pkl")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.safetensors: empty file"):
        open_checkpoint(tmp_path / "empty.safetensors")
    guidance = files_by_format["dmd2-folder"] / "pytorch_model_1.bin"
    with pytest.raises(CheckpointError, match=r"pytorch_model_1\.bin: DMD2's pytorch_model_1\.bin holds the guidance"):
        open_checkpoint(guidance)
    empty = tmp_path / "checkpoint_model_000009"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing here")
    with pytest.raises(CheckpointError, match=r"no generator weights in this folder .*found notes\.txt"):
        open_checkpoint(empty)
    pickle_inside = tmp_path / "checkpoint_model_000010"
    pickle_inside.mkdir()
    (pickle_inside / "pytorch_model.bin").write_bytes(files_by_format["edm-pickle"].read_bytes())
    with pytest.raises(CheckpointError, match=r"an EDM pickle, not a DMD2 generator state dict"):
        load_network(pickle_inside)


def test_a_pickle_is_read_whatever_its_name(files_by_format, tmp_path):
    renamed = tmp_path / "teacher.bin"
    renamed.write_bytes(files_by_format["edm-pickle"].read_bytes())
    opened = open_checkpoint(renamed)
    assert opened.format == "edm-pickle" and _same_weights(load_network(opened))


# -- URLs: downloaded once, and a verified download is not hashed again -------------------------------

class _Files(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        body = self.server.files.get(self.path)  # type: ignore[attr-defined]
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def served(files_by_format, tmp_path, monkeypatch):
    monkeypatch.setenv("VISUALIZER_CACHE", str(tmp_path / "cache"))
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    srv.daemon_threads = True
    srv.files = {"/teacher.pkl": files_by_format["edm-pickle"].read_bytes()}
    srv.requests = []
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}/teacher.pkl"
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def test_a_url_is_downloaded_once_into_the_cache(served, counts, tmp_path, capsys):
    srv, url = served
    opened = open_checkpoint(url)
    assert opened.url == url and opened.path == tmp_path / "cache" / "teacher.pkl"
    assert opened.format == "edm-pickle" and len(counts["resolve"]) == 1 and len(counts["detect"]) == 1
    assert _same_weights(load_network(opened)) and srv.requests == ["/teacher.pkl"]
    assert _same_weights(load_network(url)) and srv.requests == ["/teacher.pkl"]  # the cached file, no request


def test_a_verified_official_download_keeps_its_hash(served, counts, monkeypatch):
    srv, url = served
    digest = hashlib.sha256(srv.files["/teacher.pkl"]).hexdigest()
    official = download.KnownCheckpoint("edm-test", "a test file", "teacher.pkl", url=url, sha256=digest.upper())
    monkeypatch.setitem(download.KNOWN_CHECKPOINTS, official.name, official)
    opened = open_checkpoint(url)
    assert len(counts["hash"]) == 1  # the download's own check
    assert opened.sha256 == digest and len(counts["hash"]) == 1  # not hashed a second time


# -- the package's shape ------------------------------------------------------------------------------

def _package_imports() -> tuple[dict[str, set[str]], list[str]]:
    """Each module's imports of sibling modules (at any depth), and the imports made inside functions or classes."""
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    graph: dict[str, set[str]] = {}
    nested: list[str] = []
    for name in sorted(modules):
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        graph[name] = set()
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    base = "visualizer.checkpoints" + (f".{base}" if base else "")
                targets = [base, *(f"{base}.{a.name}" for a in node.names)]
            parent = parents.get(node)
            while parent is not None and not isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                parent = parents.get(parent)
            if parent is not None:
                nested.extend(targets[:1])
            for target in targets:
                if target.startswith("visualizer.checkpoints."):
                    sibling = target.split(".")[2]
                    if sibling in modules and sibling != name:
                        graph[name].add(sibling)
    return graph, nested


def test_the_package_has_no_import_cycle_and_imports_at_module_top():
    graph, nested = _package_imports()
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        if name not in done:
            for sibling in sorted(graph[name]):
                visit(sibling, (*path, name))
            done.add(name)

    for name in graph:
        visit(name, ())
    assert nested == ["huggingface_hub"]  # optional, and only for Hub downloads
    for reader in ("edm_pickle", "safetensors_io", "dmd2"):
        assert "loading" not in graph[reader]
    assert {"edm_pickle", "safetensors_io", "dmd2", "opener"} <= graph["loading"]
    assert graph["safe_unpickler"] == set()  # the security boundary depends on nothing of ours


def test_public_names_and_a_torch_free_opener():
    for name in checkpoints.__all__:
        assert getattr(checkpoints, name) is not None
    assert checkpoints.open_checkpoint is open_checkpoint and checkpoints.OpenedCheckpoint is OpenedCheckpoint
    code = ("import sys; from visualizer.checkpoints import open_checkpoint, download; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
