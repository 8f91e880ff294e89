"""Hostile EDM pickles: nothing in them runs, the refused global and the file are named, damage is only ever
a CheckpointError.

Every code-execution payload creates a canary file when unpickled normally (checked below with the
standard unpickler), so "the canary does not exist" after our reader ran means the code did not run.
"""

from __future__ import annotations

import builtins
import os
import pickle
import re
import shlex
import struct
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from hostile_corpus import legacy_storage_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nets import tiny_net

from visualizer.checkpoints import edm_pickle_writer as writer
from visualizer.checkpoints.edm_pickle import load_edm_pickle, read_edm_pickle
from visualizer.checkpoints.edm_pickle_writer import (
    LOAD_FROM_BYTES,
    REBUILD_TENSOR_V2,
    EDMLayoutPickler,
    PersistentObject,
    dump_edm_layout,
    write_edm_pickle,
)
from visualizer.errors import CheckpointError
from visualizer.models.networks import UNetBlock


class Reduce:
    """An object that pickles as func(*args): the classic payload."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args

    def __call__(self, *args):  # lets a Reduce stand as the callable of another Reduce
        raise AssertionError("never called while pickling")


def _touch(canary: Path) -> str:
    return f"touch {shlex.quote(str(canary))}"


def _py(canary: Path) -> str:
    return f"open({str(canary)!r}, 'w').close()"


def _line(text: str) -> bytes:
    return text.encode("raw_unicode_escape") + b"\n"


# Payload builders: canary path -> pickle bytes. Each runs code when loaded by the standard unpickler.
PAYLOADS = {
    "os.system": lambda c: b"cos\nsystem\n(V" + _line(_touch(c)) + b"tR.",
    "posix.system": lambda c: pickle.dumps(Reduce(os.system, _touch(c)), protocol=2),
    "builtins.eval": lambda c: pickle.dumps(Reduce(builtins.eval, _py(c)), protocol=4),
    "builtins.exec": lambda c: pickle.dumps(Reduce(builtins.exec, _py(c)), protocol=4),
    # getattr(__import__('os'), 'system')(cmd): the first global met is builtins.getattr
    "builtins.getattr": lambda c: pickle.dumps(
        Reduce(Reduce(getattr, Reduce(builtins.__import__, "os"), "system"), _touch(c)), protocol=4),
    "subprocess.Popen": lambda c: pickle.dumps(Reduce(subprocess.Popen, ["touch", str(c)]), protocol=4),
    # import_module('os') memoized and popped, then getattr(<memo>, 'system')(cmd)
    "importlib.import_module": lambda c: (b"cimportlib\nimport_module\n(Vos\ntRp0\n0cbuiltins\ngetattr\n(g0\n"
                                          b"Vsystem\ntR(V" + _line(_touch(c)) + b"tR."),
    # a torch._utils global that is not on the list: _import_dotted_name('os.system')(cmd)
    "torch._utils._import_dotted_name": lambda c: (b"ctorch._utils\n_import_dotted_name\n(Vos.system\ntR(V"
                                                   + _line(_touch(c)) + b"tR."),
    "inst:os.system": lambda c: b"(V" + _line(_touch(c)) + b"ios\nsystem\n.",
    "obj:os.system": lambda c: b"(cos\nsystem\nV" + _line(_touch(c)) + b"o.",
}


def _refused(name: str) -> str:
    return name.split(":")[-1]


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_payload_is_refused_and_does_not_run(tmp_path, name):
    canary = tmp_path / "canary"
    path = tmp_path / "evil.pkl"
    path.write_bytes(PAYLOADS[name](canary))
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: refused global '{_refused(name)}'")):
        load_edm_pickle(path)
    assert not canary.exists()


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_payload_is_live_with_the_standard_unpickler(tmp_path, name):
    """The payloads are real: pickle.loads runs them (a `touch` in the test's own folder)."""
    canary = tmp_path / "canary"
    result = pickle.loads(PAYLOADS[name](canary))
    if isinstance(result, subprocess.Popen):
        result.wait()
    assert canary.exists()


def _evil_in_network(canary: Path, tmp_path: Path) -> Path:
    class EvilState(EDMLayoutPickler):
        def module_state(self, module):
            state = super().module_state(module)
            if isinstance(module, UNetBlock):
                state["note"] = Reduce(os.system, _touch(canary))
            return state

    return dump_edm_layout({"ema": tiny_net()}, tmp_path / "nested.pkl", EvilState)


def test_reduce_nested_deep_inside_a_valid_checkpoint_is_refused(tmp_path):
    canary = tmp_path / "canary"
    path = _evil_in_network(canary, tmp_path)
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: refused global 'posix.system'")):
        load_edm_pickle(path)
    top_level = dump_edm_layout({"ema": tiny_net(), "augment_pipe": Reduce(os.system, _touch(canary))},
                                tmp_path / "top.pkl")
    with pytest.raises(CheckpointError, match="refused global 'posix.system'"):
        load_edm_pickle(top_level)
    assert not canary.exists()


def test_module_src_is_never_executed(tmp_path, monkeypatch):
    canary = tmp_path / "canary"
    monkeypatch.setattr(writer, "MODULE_SRC", _py(canary) + "\n")
    path = write_edm_pickle(tiny_net(), tmp_path / "src.pkl")
    assert _py(canary).encode() in path.read_bytes()
    load_edm_pickle(path)  # loads: the source is carried along, never run
    assert not canary.exists()


def test_code_inside_a_storage_blob_is_refused(tmp_path):
    canary = tmp_path / "canary"
    blob = pickle.dumps(Reduce(os.system, _touch(canary)), protocol=2)
    path = dump_edm_layout({"ema": PersistentObject("EDMPrecond", {"_buffers": {"x": Reduce(LOAD_FROM_BYTES, blob)}})},
                           tmp_path / "blob.pkl")
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: refused global 'posix.system' inside a tensor's")):
        load_edm_pickle(path)
    assert not canary.exists()


def _network_with_tensor(tmp_path: Path, name: str, storage_bytes: bytes, size: tuple, stride: tuple) -> Path:
    tensor = Reduce(REBUILD_TENSOR_V2, Reduce(LOAD_FROM_BYTES, storage_bytes), 0, size, stride, False, OrderedDict())
    return dump_edm_layout({"ema": PersistentObject("EDMPrecond", {"_buffers": {"x": tensor}})}, tmp_path / name)


def test_forged_sizes_are_refused_before_allocating(tmp_path):
    # A genuine 12-element storage is read fine by the same path...
    ok = _network_with_tensor(tmp_path, "ok.pkl", legacy_storage_bytes(12, struct.pack("<12f", *range(12))),
                              (3, 4), (4, 1))
    assert torch.equal(read_edm_pickle(ok)[1]["x"], torch.arange(12.0).reshape(3, 4))
    # ...a storage declaring 2**40 floats over 48 bytes is refused before torch.load sees it,
    huge_storage = _network_with_tensor(tmp_path, "storage.pkl", legacy_storage_bytes(2**40, bytes(48)), (12,), (1,))
    with pytest.raises(CheckpointError, match=r"storage.pkl: refused a storage declaring 1099511627776 x 4 bytes"):
        load_edm_pickle(huge_storage)
    # ...and so is a tensor viewing 2**40 elements of a 12-element storage, or reaching past its end.
    huge_tensor = _network_with_tensor(tmp_path, "tensor.pkl", legacy_storage_bytes(12, bytes(48)), (2**40,), (1,))
    with pytest.raises(CheckpointError, match=r"tensor.pkl: refused a tensor of 1099511627776 elements"):
        load_edm_pickle(huge_tensor)
    past_end = _network_with_tensor(tmp_path, "past.pkl", legacy_storage_bytes(12, bytes(48)), (4, 4), (4, 1))
    with pytest.raises(CheckpointError, match=r"past.pkl: refused a tensor of size \(4, 4\) that reaches past"):
        load_edm_pickle(past_end)


@pytest.mark.parametrize("opcode", [b"\x8e", b"\x8d", b"\x95"], ids=["BINBYTES8", "BINUNICODE8", "FRAME"])
def test_forged_2_62_length_fails_fast_without_allocating(tmp_path, opcode):
    path = tmp_path / "length.pkl"
    path.write_bytes(b"\x80\x04" + opcode + struct.pack("<Q", 2**62) + b"abc.")
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"length.pkl: .*declares 4611686018427387904 bytes but only 4 remain"):
        load_edm_pickle(path)
    assert time.perf_counter() - start < 5  # a MemoryError or a 4 EiB allocation would not get here


@pytest.mark.parametrize("data, message", [
    (b"\x80\x02(X\x07\x00\x00\x00storageq\x00tQ.", "refused persistent id"),
    (b"\x80\x04ccollections\nOrderedDict\n)R}b.", "refused BUILD of a OrderedDict"),
    (b"\x80\x04cnumpy\ndtype\n(VO8\nI00\nI01\ntR.", "refused numpy dtype 'O8'"),
    (b"\x80\x04cnumpy.core.multiarray\n_reconstruct\n.", "refused global 'numpy.core.multiarray._reconstruct'"),
    (b"\x80\x04ccopyreg\n_reconstructor\n.", "refused global 'copyreg._reconstructor'"),
    (b"\x80\x04ctorch_utils.persistence\n_reconstruct_persistent_obj\n(}(Vtype\nVmodule\nutR.",
     "refused a persistent object that is not of type 'class'"),
    (b"\x80\x05\x96\x10\x00\x00\x00\x00\x00\x00\x00abc.", "refused pickle protocol 5 out-of-band buffers"),
], ids=["persid", "build", "object-dtype", "ndarray", "copyreg", "persistent-module", "bytearray8"])
def test_format_abuse_is_refused(tmp_path, data, message):
    path = tmp_path / "abuse.pkl"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: {message}")):
        load_edm_pickle(path)


@pytest.fixture(scope="module")
def small_pickle(tmp_path_factory) -> tuple[bytes, Path]:
    net = tiny_net(img_resolution=8, channel_mult=[1], model_channels=16, attn_resolutions=[], label_dim=2)
    folder = tmp_path_factory.mktemp("fuzz")
    return write_edm_pickle(net, folder / "valid.pkl").read_bytes(), folder


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_truncated_or_flipped_files_only_ever_raise_checkpoint_error(small_pickle, data):
    valid, folder = small_pickle
    blob = bytearray(valid)
    for _ in range(data.draw(st.integers(0, 3), label="flips")):
        position = data.draw(st.integers(0, len(blob) - 1), label="position")
        blob[position] ^= data.draw(st.integers(1, 255), label="xor")
    cut = data.draw(st.one_of(st.just(len(blob)), st.integers(0, len(blob))), label="cut")
    path = folder / "damaged.pkl"
    path.write_bytes(bytes(blob[:cut]))
    try:
        load_edm_pickle(path)  # a flip in tensor data still loads
    except CheckpointError as e:
        assert str(path) in str(e)


def test_reader_imports_nothing_new(tmp_path):
    """Loading a checkpoint that names modules must not import them (no side effects of import either)."""
    path = tmp_path / "import.pkl"
    path.write_bytes(b"\x80\x04cvisualizer_not_a_module\nthing\n.")
    (tmp_path / "visualizer_not_a_module.py").write_text(_py(tmp_path / "canary") + "\nthing = 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(CheckpointError, match="refused global 'visualizer_not_a_module.thing'"):
            load_edm_pickle(path)
    finally:
        sys.path.remove(str(tmp_path))
    assert "visualizer_not_a_module" not in sys.modules and not (tmp_path / "canary").exists()
