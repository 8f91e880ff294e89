"""Issue 13: hostile checkpoints, malformed runs, corrupted run folders and mismatched models are refused
with one line naming the file or field (exit status 2 at start-up, a UserError from the API), never crash,
never pass silently.

The corpus (tests/hostile_corpus.py: 80 files and cases in eight classes, made here in the real
formats) runs in a forked child per case, under a memory limit and a timeout, so a crash is a failed
assertion with the case named, not a dead test runner. benchmarks/reliability.py prints the same table.
"""

from __future__ import annotations

import json
import pickle
import shutil
import struct

import pytest
import torch
from hostile_corpus import (
    build_corpus,
    case,
    deep_tuple_key,
    failures,
    format_table,
    judge,
    lists_nested_by_append,
    pad_safetensors_header,
    run_corpus,
    summarize,
)
from nets import tiny_net
from test_embed_pipeline import assert_same_run, ckpts, embed_args, reference  # noqa: F401

from visualizer.checkpoints.formats import detect_format
from visualizer.checkpoints.loading import load_network
from visualizer.checkpoints.safe_unpickler import scan_pickle, view_problem
from visualizer.cli import main
from visualizer.embeddings.schema import load_embeddings
from visualizer.embeddings.store import CHECKSUM_KEY, ROWS_KEY
from visualizer.errors import CheckpointError


@pytest.mark.slow
def test_the_hostile_corpus_is_refused_cleanly(tmp_path, ckpts, reference):  # noqa: F811
    cases = build_corpus(tmp_path / "corpus", run=reference, embed_argv=lambda out: embed_args(ckpts, out))
    assert len(cases) >= 40 and {c["cls"] for c in cases} == set(range(1, 9))
    results = run_corpus(cases, tmp_path / "work", jobs=2, timeout=60, memory_mib=2048)
    print(format_table(summarize(cases, results)))
    assert failures(cases, results) == []


def test_the_sandbox_survives_what_the_stock_unpickler_does_with_the_same_file(tmp_path):
    """Control: the stock C unpickler dies (SIGSEGV) on the deep key; the sandbox reports a crash and goes on."""
    (tmp_path / "deep.pkl").write_bytes(deep_tuple_key())
    cases = [case("stock-pickle-loads", 1, "control", "refuse", path=str(tmp_path / "deep.pkl"), loader="pickle.loads"),
             case("ours", 1, "checkpoint", "refuse", "deep.pkl", path=str(tmp_path / "deep.pkl"),
                  adapters=["edm-imagenet-64"])]
    results = run_corpus(cases, tmp_path / "work", jobs=2, timeout=60)
    assert [judge(c, r) for c, r in zip(cases, results, strict=True)] == ["crash", "refused cleanly"], results


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_the_scan_passes_ordinary_pickles_and_ends_where_they_end(protocol):
    shared = [1, 2]
    objects = [None, True, 2**70, -3, 1.5, "text", b"bytes", (1, (2, (3,))), {"a": [shared, shared]}, {1, 2},
               frozenset({3}), list(range(1000)), {"deep": [[[[[]]]]]}]
    for obj in objects:
        data = pickle.dumps(obj, protocol=protocol)
        assert scan_pickle(data + b"trailing", "x") == len(data)


def test_the_scan_measures_nesting_made_by_mutation():
    with pytest.raises(CheckpointError, match="x: refused pickle: containers nested more than 100 deep"):
        scan_pickle(lists_nested_by_append(101), "x")
    assert scan_pickle(lists_nested_by_append(99), "x") > 0


def test_views_must_hold_each_element_once():
    assert view_problem((3, 4), (4, 1), 0, 12) is None
    assert view_problem((4, 3), (1, 4), 0, 12) is None            # transposed
    assert view_problem((0, 5), (0, 0), 0, 0) is None              # empty
    assert "overlap" in view_problem((1000,), (0,), 0, 1)          # stride 0
    assert "overlap" in view_problem((10, 10), (1, 1), 0, 100)     # overlapping
    assert "past" in view_problem((4, 4), (4, 1), 0, 12)


def test_a_safetensors_file_whose_length_ends_in_0x80_is_recognised(tmp_path):
    """About 1 file in 32 has 0x80 (the pickle PROTO opcode) as the low byte of its header length."""
    from safetensors.torch import save_file

    net = tiny_net()
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    pad_safetensors_header(path)
    assert path.read_bytes()[0] == 0x80 and detect_format(path) == "safetensors"
    loaded = load_network(path)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in net.state_dict().items())
    other = tmp_path / "weights.bin"                               # content wins over the name
    shutil.copy(path, other)
    assert detect_format(other) == "safetensors"


def test_shards_record_their_checksums_and_the_sidecar_the_architecture(reference):  # noqa: F811
    record = json.loads(next((reference / "shards" / "teacher").glob("*.json")).read_text())
    assert len(record[CHECKSUM_KEY]) == 64 and all(len(v) == 64 for v in record[ROWS_KEY].values())
    models = load_embeddings(reference / "embeddings.csv").sidecar["models"]
    assert models["teacher"]["architecture"] == {"resolution": 16, "channels": 3, "num_classes": 10}


@pytest.mark.slow
def test_shards_written_before_checksums_resume_with_a_note(ckpts, reference, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "old"
    shutil.copytree(reference, out)
    for shard in (out / "shards").rglob("*.json"):
        record = json.loads(shard.read_text())
        shard.write_text(json.dumps({k: v for k, v in record.items() if k not in (CHECKSUM_KEY, ROWS_KEY)}))
    assert main(embed_args(ckpts, out)) == 0
    assert "were written before shards carried checksums" in capsys.readouterr().err
    assert_same_run(out, reference)


def test_a_legacy_torch_file_with_a_forged_storage_header_is_refused_before_allocating(tmp_path):
    """The declared element count is checked against the bytes left in the file, before torch.load reads it."""
    net_state = {"model.w": torch.arange(12.0)}
    path = tmp_path / "legacy.pth"
    torch.save(net_state, path, _use_new_zipfile_serialization=False)
    data = bytearray(path.read_bytes())
    at = len(data) - 12 * 4 - 8                                    # the last storage's 8-byte element count
    assert struct.unpack_from("<q", data, at)[0] == 12
    struct.pack_into("<q", data, at, 1 << 40)
    path.write_bytes(bytes(data))
    forged = r"legacy.pth: not a readable torch checkpoint: storage '\d+' declares 1099511627776 elements"
    with pytest.raises(CheckpointError, match=forged):
        load_network(path)
