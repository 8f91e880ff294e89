"""A hostile-input corpus, made here in the real formats, and the sandbox that runs it (issue 13).

`build_corpus(root, run=...)` writes the files (hostile checkpoints, malformed embeddings and sidecars,
corrupted copies of a finished `embed` run, mismatched models) and returns the cases: what to open,
how, and what must happen (refused with one line naming the file or field, or loaded, with a note).
`run_corpus(cases, ...)` runs them in a worker process that forks once per case, each child under a
memory limit (RLIMIT_AS) and a timeout, so a crash or a hang is a row in the table, not a dead test
runner; `summarize` and `format_table` turn the results into the reliability table
(benchmarks/reliability.py prints it; tests/test_hostile_inputs.py requires every case to pass).

A plain module beside conftest.py (like nets.py), importable by the tests and, with tests/ on
sys.path, by the benchmark; run as a script it is the worker: `python tests/hostile_corpus.py
--worker cases.json results/ --jobs 2 --timeout 60 --memory-mib 2048`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from collections import OrderedDict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

CLASSES = {
    1: "deep nesting and opcode bombs",
    2: "memory amplification",
    3: "safetensors detection",
    4: "start-up: malformed sidecars",
    5: "bad values",
    6: "corrupted run folders",
    7: "mismatched models",
    8: "messages",
}
ADAPTERS = ("edm-imagenet-64", "dmd2-imagenet-64")


def case(cid: str, cls: int, kind: str, expect: str, fragment: str = "", **args) -> dict:
    """One case. kind: checkpoint (args: path, adapters), detect (path, adapter), embeddings (csv),
    startup (argv of the app), embed (argv of `python -m visualizer`, folder). expect: refuse or accept.
    fragment: text the one-line refusal must contain (refuse), or a note / start-up line (accept)."""
    return {"id": cid, "cls": cls, "kind": kind, "expect": expect, "fragment": fragment, **args}


# -- pickles by hand ------------------------------------------------------------------------------------

class Reduce:
    """An object that pickles as func(*args)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def deep_tuple_key(depth: int = 500_000) -> bytes:
    """A dict whose key is a tuple nested `depth` deep: hashing it recursed in C until SIGSEGV."""
    return b"\x80\x02}" + b")" + b"\x85" * depth + b"K\x01s."


def lists_nested_by_append(depth: int) -> bytes:
    """`depth` empty lists in the memo, then each appended into the one before: nesting made by mutation,
    which a count at construction time would miss."""
    ops = [b"\x80\x02"]
    for i in range(depth):
        ops.append(b"]r" + struct.pack("<I", i) + b"0")          # EMPTY_LIST, LONG_BINPUT i, POP
    for i in range(depth - 1):
        ops.append(b"j" + struct.pack("<I", i) + b"j" + struct.pack("<I", i + 1) + b"a0")   # GET i, GET i+1, APPEND
    ops.append(b"j" + struct.pack("<I", 0) + b".")
    return b"".join(ops)


def legacy_storage_bytes(numel: int, data: bytes) -> bytes:
    """A legacy torch.save of one float storage that declares `numel` elements and carries `data`."""
    import torch

    marker = object()

    class Storage(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel, None) if obj is marker else None

    buf = io.BytesIO()
    for value in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(value, buf, protocol=2)
    Storage(buf, protocol=2).dump(marker)
    pickle.dump(["0"], buf, protocol=2)
    return buf.getvalue() + struct.pack("<q", numel) + data


def torch_pickle(entries: dict, legacy: bool = False) -> bytes:
    """A torch.save-style pickle: {key: (storage key, numel, offset, size, stride)} as _rebuild_tensor_v2 calls."""
    import torch

    class Stub:
        def __init__(self, key, numel):
            self.key, self.numel = key, numel

    class TorchPickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Stub):
                pid = ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
                return (*pid, None) if legacy else pid
            return None

    stubs: dict = {}
    top = OrderedDict()
    for name, (key, numel, offset, size, stride) in entries.items():
        stub = stubs.setdefault(key, Stub(key, numel))
        top[name] = Reduce(torch._utils._rebuild_tensor_v2, stub, offset, size, stride, False, OrderedDict())
    buf = io.BytesIO()
    TorchPickler(buf, protocol=2).dump(top)
    return buf.getvalue()


def torch_zip(path: Path, data_pkl: bytes, storages: dict[str, bytes], deflate: bool = False) -> Path:
    """A torch zip checkpoint with the given data.pkl and storage members."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        for key, data in storages.items():
            z.writestr(f"archive/data/{key}", data,
                       compress_type=zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED)
        z.writestr("archive/version", "3\n")
    return path


def legacy_torch(path: Path, main: bytes, keys: list[str], storages: list[tuple[int, bytes]]) -> Path:
    """A legacy (pre-1.6) torch.save file: magic, protocol, sys_info, `main`, keys, then (numel header, bytes)."""
    buf = io.BytesIO()
    for value in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True,
                                                 "type_sizes": {"short": 2, "int": 4, "long": 8}}):
        pickle.dump(value, buf, protocol=2)
    buf.write(main)
    pickle.dump(keys, buf, protocol=2)
    for numel, data in storages:
        buf.write(struct.pack("<q", numel) + data)
    path.write_bytes(buf.getvalue())
    return path


def pad_safetensors_header(path: Path, low_byte: int = 0x80) -> Path:
    """Pad a .safetensors header with spaces (still valid JSON) until its 8-byte length ends in `low_byte`."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    k = (low_byte - n) % 256
    path.write_bytes((n + k).to_bytes(8, "little") + raw[8:8 + n] + b" " * k + raw[8 + n:])
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the corpus -----------------------------------------------------------------------------------------

def build_corpus(root: Path, run: Path | None = None, embed_argv=None) -> list[dict]:
    """Write every hostile file under `root` and return the cases.

    `run`: a finished `embed` run folder and `embed_argv(out)` the arguments that made it (for the
    corrupted-run cases, each on its own copy); without them class 6 is left out.
    """
    import torch
    from app_files import write_pair, write_synthetic_embeddings
    from nets import tiny_net

    from visualizer.adapters.demo import DEMO_EMBEDDINGS, DEMO_STUDENT, DEMO_TEACHER
    from visualizer.checkpoints.edm_pickle_writer import (
        LOAD_FROM_BYTES,
        REBUILD_TENSOR_V2,
        PersistentObject,
        dump_edm_layout,
        write_edm_pickle,
    )
    from visualizer.checkpoints.safetensors_io import KWARGS_KEY, save_network_safetensors
    from visualizer.models import IMAGENET64_KWARGS, EDMPrecond

    root.mkdir(parents=True, exist_ok=True)
    cases: list[dict] = []
    add = cases.append

    def ckpt(cid, cls, path, expect="refuse", fragment=None):
        add(case(cid, cls, "checkpoint", expect, path.name if fragment is None else fragment, path=str(path),
                 adapters=list(ADAPTERS)))

    # 1. nesting and opcode bombs, in every pickle the package reads
    deep = deep_tuple_key()
    (root / "deep_key.pkl").write_bytes(deep)
    ckpt("deep-key-edm-pickle", 1, root / "deep_key.pkl")
    torch_zip(root / "deep_key.bin", deep, {})
    ckpt("deep-key-dmd2-bin", 1, root / "deep_key.bin")
    folder = root / "deep_folder" / "checkpoint_model_000001"
    folder.mkdir(parents=True)
    torch_zip(folder / "pytorch_model.bin", deep, {})
    ckpt("deep-key-dmd2-folder", 1, folder, fragment="pytorch_model.bin")
    legacy_torch(root / "deep_key_legacy.pth", deep, [], [])
    ckpt("deep-key-legacy-pth", 1, root / "deep_key_legacy.pth")
    blob = deep_tuple_key(100_000)
    dump_edm_layout({"ema": PersistentObject("EDMPrecond", {"_buffers": {"x": Reduce(LOAD_FROM_BYTES, blob)}})},
                    root / "deep_in_storage_blob.pkl")
    ckpt("deep-key-inside-storage-blob", 1, root / "deep_in_storage_blob.pkl")
    (root / "deep_lists.pkl").write_bytes(lists_nested_by_append(5_000))
    ckpt("deep-lists-by-append", 1, root / "deep_lists.pkl")
    (root / "deep_marks.pkl").write_bytes(b"\x80\x02" + b"(" * 100_000 + b"N" + b"t" * 100_000 + b".")
    ckpt("deep-marks", 1, root / "deep_marks.pkl")
    (root / "memo_bomb.pkl").write_bytes(b"\x80\x04N" + b"\x94" * 300_000 + b".")
    ckpt("memo-bomb", 1, root / "memo_bomb.pkl")
    (root / "opcode_bomb.pkl").write_bytes(b"\x80\x02" + b"N0" * 550_001 + b"N.")
    ckpt("opcode-bomb", 1, root / "opcode_bomb.pkl")
    (root / "huge_int.pkl").write_bytes(b"\x80\x02\x8b" + struct.pack("<i", 1 << 20) + bytes(1 << 20) + b".")
    ckpt("huge-integer", 1, root / "huge_int.pkl")
    (root / "long_line.pkl").write_bytes(b"\x80\x02S'" + b"a" * 200_000 + b"'\n.")
    ckpt("long-text-line", 1, root / "long_line.pkl")

    # 2. memory amplification: views of a tiny storage, compressed members, forged storage sizes
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in EDMPrecond(**IMAGENET64_KWARGS).state_dict().items()}
    one = torch.zeros(1, dtype=torch.float16)
    torch.save({k: one.expand(s) for k, s in shapes.items()}, root / "stride0_imagenet.bin")
    ckpt("stride0-imagenet-bin", 2, root / "stride0_imagenet.bin")
    small = torch.zeros(4096)
    torch.save({k: small.as_strided(s[:2], (1,) * len(s[:2])) for k, s in shapes.items() if len(s) >= 2},
               root / "overlapping.bin")
    ckpt("overlapping-views-bin", 2, root / "overlapping.bin")
    torch.save({k: one.expand(s) for k, s in shapes.items()}, root / "stride0_legacy.pth",
               _use_new_zipfile_serialization=False)
    ckpt("stride0-imagenet-legacy-pth", 2, root / "stride0_legacy.pth")
    storage = Reduce(LOAD_FROM_BYTES, legacy_storage_bytes(1, bytes(4)))
    views = {f"x{i}": Reduce(REBUILD_TENSOR_V2, storage, 0, (1024,), (0,), False, OrderedDict()) for i in range(600)}
    dump_edm_layout({"ema": PersistentObject("EDMPrecond", {"_buffers": views})}, root / "stride0_edm.pkl")
    ckpt("stride0-edm-pickle", 2, root / "stride0_edm.pkl")
    shared = Reduce(LOAD_FROM_BYTES, legacy_storage_bytes(4096, bytes(4 * 4096)))
    views = {f"x{i}": Reduce(REBUILD_TENSOR_V2, shared, 0, (4096,), (1,), False, OrderedDict()) for i in range(3000)}
    dump_edm_layout({"ema": PersistentObject("EDMPrecond", {"_buffers": views})}, root / "shared_storage.pkl")
    ckpt("one-storage-many-views-edm-pickle", 2, root / "shared_storage.pkl")
    data_pkl = torch_pickle({"model.w": ("0", 1 << 24, 0, (1 << 24,), (1,))})
    torch_zip(root / "zip_bomb.bin", data_pkl, {"0": bytes(4 << 24)}, deflate=True)
    ckpt("deflated-zip-bomb", 2, root / "zip_bomb.bin")
    main = torch_pickle({"model.w": ("0", 1 << 30, 0, (1 << 30,), (1,))}, legacy=True)
    legacy_torch(root / "forged_legacy.pth", main, ["0"], [(1 << 30, bytes(48))])
    ckpt("forged-legacy-storage-size", 2, root / "forged_legacy.pth")
    torch_zip(root / "past_storage.bin", torch_pickle({"model.w": ("0", 4, 0, (1000,), (1,))}), {"0": bytes(16)})
    ckpt("view-past-its-storage-bin", 2, root / "past_storage.bin")
    huge = Reduce(REBUILD_TENSOR_V2, Reduce(LOAD_FROM_BYTES, legacy_storage_bytes(1 << 40, bytes(48))), 0,
                  (12,), (1,), False, OrderedDict())
    dump_edm_layout({"ema": PersistentObject("EDMPrecond", {"_buffers": {"x": huge}})}, root / "forged_edm.pkl")
    ckpt("forged-storage-size-edm-pickle", 2, root / "forged_edm.pkl")

    # 3. safetensors recognised by their header (an 8-byte length whose low byte may be 0x80)
    net = tiny_net()
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(root / "plain_0x80.safetensors"))
    pad_safetensors_header(root / "plain_0x80.safetensors")
    ckpt("safetensors-length-0x80", 3, root / "plain_0x80.safetensors", expect="accept", fragment="")
    save_network_safetensors(net, root / "converted_0x80.safetensors", source_format="edm-pickle")
    pad_safetensors_header(root / "converted_0x80.safetensors")
    ckpt("convert-output-length-0x80", 3, root / "converted_0x80.safetensors", expect="accept", fragment="")
    add(case("convert-output-0x80-detected-as-teacher", 3, "detect", "accept", "edm-imagenet-64",
             path=str(root / "converted_0x80.safetensors")))
    header = b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    (root / "deep_header.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    ckpt("safetensors-header-nested-200k", 3, root / "deep_header.safetensors")
    bad = b'{"a": nope}   '
    (root / "bad_header.safetensors").write_bytes(struct.pack("<Q", len(bad)) + bad + bytes(16))
    ckpt("safetensors-header-not-json", 3, root / "bad_header.safetensors")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(root / "deep_meta.safetensors"),
              metadata={KWARGS_KEY: "[" * 100_000 + "]" * 100_000})
    ckpt("safetensors-metadata-nested-100k", 3, root / "deep_meta.safetensors")
    overlap = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                          "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    overlap += b" " * (-len(overlap) % 8)
    (root / "overlap.safetensors").write_bytes(struct.pack("<Q", len(overlap)) + overlap + bytes(8))
    ckpt("safetensors-overlapping-offsets", 3, root / "overlap.safetensors")

    # A tiny teacher/student pair in the real formats, and embeddings that record exactly them.
    pkl, student = write_pair(root / "pair")
    arch = {"resolution": 16, "channels": 3, "num_classes": 10}
    recorded = {"teacher": {"adapter": "edm-imagenet-64", "role": "teacher", "checkpoint": str(pkl),
                            "sha256": sha256(pkl), "architecture": arch},
                "student": {"adapter": "dmd2-imagenet-64", "role": "student", "checkpoint": str(student),
                            "sha256": sha256(student / "pytorch_model.bin"), "architecture": arch}}
    made = write_synthetic_embeddings(root / "made_by_pair", 12, models=recorded, thumbnails=4)
    base = write_synthetic_embeddings(root / "browse", 12, thumbnails=4)
    sidecar = json.loads(base.with_suffix(".json").read_text())

    def variant(name: str, csv_text: str | bytes | None = None, side=None, side_raw: bytes | None = None) -> Path:
        folder = root / name
        shutil.copytree(base.parent, folder)
        csv = folder / base.name
        if csv_text is not None:
            csv.write_bytes(csv_text if isinstance(csv_text, bytes) else csv_text.encode())
        if side is not None:
            csv.with_suffix(".json").write_text(json.dumps(side))
        if side_raw is not None:
            csv.with_suffix(".json").write_bytes(side_raw)
        return csv

    def startup(cid, cls, argv, expect="refuse", fragment=""):
        add(case(cid, cls, "startup", expect, fragment, argv=[str(a) for a in argv]))

    # 4. start-up with a malformed sidecar: one line, exit 2
    csv = variant("sidecar_latin1", side_raw=json.dumps(sidecar).replace('"layers"', '"l\u00e4yers"')
                  .encode("latin-1"))
    startup("sidecar-not-utf8", 4, ["--embeddings", csv], fragment="not UTF-8")
    csv = variant("sidecar_dir")
    csv.with_suffix(".json").unlink()
    csv.with_suffix(".json").mkdir()
    startup("sidecar-is-a-folder", 4, ["--embeddings", csv], fragment="a folder")
    csv = variant("sidecar_deep", side_raw=b'{"schema_version": 1, "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}")
    startup("sidecar-nested-200k", 4, ["--embeddings", csv], fragment="nested")
    models = {k: {**v, "checkpoint": 123} for k, v in sidecar["models"].items()}
    startup("sidecar-checkpoint-123", 4, ["--embeddings", variant("side_ckpt", side={**sidecar, "models": models})],
            fragment="models.teacher.checkpoint")
    startup("sidecar-sampler-list", 4, ["--embeddings", variant("side_sampler", side={**sidecar, "sampler": ["x"]})],
            fragment="'sampler'")
    startup("sidecar-models-string", 4, ["--embeddings", variant("side_models", side={**sidecar, "models": "x"})],
            fragment="'models'")
    startup("sidecar-version-string", 4,
            ["--embeddings", variant("side_version", side={**sidecar, "schema_version": "1"})],
            fragment="schema_version")
    models = {k: {**v, "architecture": {"resolution": -5, "channels": 3, "num_classes": 10}}
              for k, v in sidecar["models"].items()}
    startup("sidecar-negative-resolution", 4,
            ["--embeddings", variant("side_arch", side={**sidecar, "models": models})], fragment="resolution")
    models = {k: {**v, "sha256": "zz"} for k, v in sidecar["models"].items()}
    startup("sidecar-sha256-not-hex", 4, ["--embeddings", variant("side_sha", side={**sidecar, "models": models})],
            fragment="sha256")
    csv = variant("side_big", side_raw=json.dumps({**sidecar, "pad": "x" * (17 << 20)}).encode())
    startup("sidecar-17-mib", 4, ["--embeddings", csv], fragment="larger than")
    (root / "notes.txt").write_text("not a checkpoint\n")
    models = {**sidecar["models"], "teacher": {**sidecar["models"]["teacher"], "checkpoint": str(root / "notes.txt")}}
    startup("sidecar-checkpoint-not-a-checkpoint", 4,
            ["--embeddings", variant("side_notes", side={**sidecar, "models": models})], fragment="notes.txt")

    # 5. values outside their documented range, refused at load
    lines = base.read_text().splitlines()
    header_cols = lines[0].split(",")

    def row1(column: str, value: str) -> str:
        cells = lines[1].split(",")
        cells[header_cols.index(column)] = value
        return "\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n"

    def values(cid, column, value, fragment):
        startup(cid, 5, ["--embeddings", variant(f"v_{cid}", row1(column, value))], fragment=fragment)

    values("seed-1e30", "seed", "1e30", "column 'seed'")
    values("seed-99999999999999999999999", "seed", "99999999999999999999999", "column 'seed'")
    values("seed-negative", "seed", "-1", "column 'seed'")
    values("seed-2-to-the-32", "seed", str(2**32), "column 'seed'")
    values("class-label-1e12", "class_label", "1000000000000", "column 'class_label'")
    values("step-1e9", "step", "1000000000", "column 'step'")
    values("sigma-infinite", "sigma", "inf", "column 'sigma'")
    values("umap-nan", "umap_x", "nan", "column 'umap_x'")
    values("nul-byte", "class_name", "a\x00b", "NUL")
    values("image-path-outside", "image_path", "../../etc/passwd", "column 'image_path'")
    values("image-path-absolute", "image_path", "/etc/passwd", "column 'image_path'")
    values("sample-id-1000-chars", "sample_id", "x" * 1000, "column 'sample_id'")
    values("quoted-value-spans-lines", "class_name", '"a\nb"', "spans lines")
    values("line-8-mib", "class_name", "x" * (8 << 20), "longer than 65,536 bytes")
    startup("csv-not-utf8", 5, ["--embeddings", variant("v_latin1", row1("class_name", "caf\xe9").encode("latin-1"))],
            fragment="not UTF-8")
    startup("sidecar-num-steps-1e9", 5,
            ["--embeddings", variant("v_steps", side={**sidecar, "sampler": {"teacher": {"num_steps": 1e9}}})],
            fragment="num_steps")
    startup("sidecar-num-steps-10-to-the-9", 5,
            ["--embeddings", variant("v_steps_int", side={**sidecar, "sampler": {"teacher": {"num_steps": 10**9}}})],
            fragment="num_steps")
    startup("cli-num-steps-10-to-the-9", 5, ["--teacher", pkl, "--num-steps", "1000000000", "--device", "cpu"],
            fragment="--num-steps")
    startup("class-beyond-the-models-classes", 5,
            ["--embeddings", variant("v_class", row1("class_label", "57")), "--teacher", pkl, "--student", student,
             "--device", "cpu"], fragment="beyond the 10 classes")

    # 6. corrupted copies of a finished embed run: refused before anything is reduced, the file named
    if run is not None and embed_argv is not None:
        from visualizer.embeddings.store import commit_shard

        def corrupt(cid, edit, fragment):
            out = root / f"run_{cid}"
            shutil.copytree(run, out)
            edit(out)
            add(case(cid, 6, "embed", "refuse", fragment, argv=embed_argv(out), folder=str(out)))

        def relabel(out):
            shard = out / "shards" / "teacher" / "batch000001.json"
            record = json.loads(shard.read_text())
            for r in record["rows"]:
                r["class_label"], r["class_name"] = (r["class_label"] + 1) % 10, "relabelled"
            shard.write_text(json.dumps(record))

        def zero_rows(out):
            from numpy.lib.format import open_memmap

            store = open_memmap(next((out / "activations" / "student").rglob("step0.npy")), mode="r+")
            store[2:7] = 0
            store.flush()

        def one_value(out):
            from numpy.lib.format import open_memmap

            store = open_memmap(next((out / "activations" / "teacher").rglob("step*.npy")), mode="r+")
            store[0, 0] += 1
            store.flush()

        def random_shard(out):
            (out / "shards" / "student" / "batch000000.json").write_bytes(os.urandom(4096))

        def torn_shard(out):
            shard = out / "shards" / "teacher" / "batch000002.json"
            shard.write_bytes(shard.read_bytes()[:100])

        def foreign_seeds(out):
            shard = out / "shards" / "teacher" / "batch000000.json"
            record = json.loads(shard.read_text())
            record["seeds"] = [s + 1000 for s in record["seeds"]]
            commit_shard(shard, record)   # a consistent record with a valid checksum, of other seeds

        def random_run_json(out):
            (out / "run.json").write_bytes(b"\xff\xfe" + os.urandom(256))

        def random_store(out):
            store = next((out / "activations" / "teacher").rglob("step0.npy"))
            store.write_bytes(os.urandom(store.stat().st_size))

        corrupt("shard-labels-rewritten", relabel, "batch000001.json")
        corrupt("store-rows-zeroed", zero_rows, "step0.npy")
        corrupt("store-one-value-changed", one_value, ".npy")
        corrupt("shard-of-random-bytes", random_shard, "batch000000.json")
        corrupt("shard-torn", torn_shard, "batch000002.json")
        corrupt("shard-of-other-seeds", foreign_seeds, "batch000000.json")
        corrupt("run-json-random-bytes", random_run_json, "run.json")
        corrupt("store-random-bytes", random_store, "step0.npy")

    # 7. mismatched models: an adapter's fixed facts, the checkpoint that made the embeddings, roles
    big = tiny_net(label_dim=1000)
    write_edm_pickle(big, root / "classes1000.pkl")
    startup("digits-run-with-another-teacher", 7,
            ["--adapter", "edm-imagenet-64", "--checkpoint_path", root / "classes1000.pkl", "--embeddings",
             DEMO_EMBEDDINGS, "--device", "cpu"], fragment="is not the checkpoint that made")
    startup("digits-run-with-another-teacher-allowed", 7,
            ["--adapter", "edm-imagenet-64", "--checkpoint_path", root / "classes1000.pkl", "--embeddings",
             DEMO_EMBEDDINGS, "--device", "cpu", "--allow-mismatch"], expect="accept", fragment="mismatch allowed")
    startup("digits-adapter-on-1000-class-net", 7,
            ["--adapter", "edm-digits-32", "--checkpoint_path", root / "classes1000.pkl", "--device", "cpu"],
            fragment="1000-class network, but adapter 'edm-digits-32' is for a 32x32, 3-channel, 10-class")
    startup("digits-student-adapter-on-16x16-net", 7,
            ["--adapter", "dmd2-digits-32", "--checkpoint_path", student, "--device", "cpu"],
            fragment="adapter 'dmd2-digits-32' is for")
    startup("student-adapter-on-the-runs-teacher", 7,
            ["--adapter", "dmd2-imagenet-64", "--checkpoint_path", pkl, "--embeddings", made, "--device", "cpu"],
            fragment="it made the 'teacher' points there")
    startup("student-adapter-on-an-edm-pickle", 7,
            ["--adapter", "dmd2-imagenet-64", "--checkpoint_path", pkl, "--device", "cpu"], expect="accept",
            fragment="EDM (teacher) checkpoint run by the student adapter")
    write_edm_pickle(tiny_net(seed=3), root / "other_teacher.pkl")
    startup("another-teacher-than-the-runs", 7,
            ["--teacher", root / "other_teacher.pkl", "--student", student, "--embeddings", made, "--device", "cpu"],
            fragment="is not the checkpoint that made the 'teacher' points")
    startup("the-runs-own-models", 7, ["--embeddings", made, "--device", "cpu"], expect="accept",
            fragment="a 16x16, 3-channel, 10-class network")
    csv = root / "no_sidecar" / "embeddings.csv"
    shutil.copytree(base.parent, csv.parent)
    csv.with_suffix(".json").unlink()
    startup("csv-without-sidecar", 7, ["--embeddings", csv], expect="accept", fragment="provenance is unknown")
    add(case("digits-sized-teacher-detected", 7, "detect", "accept", "edm-digits-32", path=str(DEMO_TEACHER)))
    add(case("digits-sized-student-detected", 7, "detect", "accept", "dmd2-digits-32", path=str(DEMO_STUDENT)))
    add(case("tiny-teacher-detected-as-imagenet-adapter", 7, "detect", "accept", "edm-imagenet-64", path=str(pkl)))

    # 8. messages
    (root / "text.pkl").write_text("these are not the weights you are looking for\n")
    ckpt("text-named-pkl", 8, root / "text.pkl", fragment="named like an EDM pickle")
    missing = "\n".join(",".join(c for i, c in enumerate(line.split(",")) if header_cols[i] not in ("umap_x", "umap_y"))
                        for line in lines) + "\n"
    startup("missing-columns-listed-once", 8, ["--embeddings", variant("m_cols", missing)],
            fragment="missing column(s) umap_x, umap_y")
    startup("embeddings-folder", 8, ["--embeddings", base.parent], fragment="a folder, not an embeddings CSV")
    (root / "empty_folder").mkdir()
    startup("folder-to-the-edm-adapter", 8,
            ["--adapter", "edm-imagenet-64", "--checkpoint_path", root / "empty_folder", "--device", "cpu"],
            fragment="a folder, not a checkpoint file")
    startup("missing-embeddings", 8, ["--embeddings", root / "nope.csv"], fragment="no such embeddings file")
    return cases


# -- the sandbox ----------------------------------------------------------------------------------------

def run_corpus(cases: list[dict], workdir: Path, jobs: int = 2, timeout: float = 60, memory_mib: int = 2048,
               worker_timeout: float = 600) -> list[dict]:
    """Run every case in a worker process (one fork per case); returns one result per case, in order."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec, out = workdir / "cases.json", workdir / "results"
    spec.write_text(json.dumps(cases))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(spec), str(out),
                           "--jobs", str(jobs), "--timeout", str(timeout), "--memory-mib", str(memory_mib)],
                          capture_output=True, text=True, timeout=worker_timeout, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"the corpus worker failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return [json.loads((out / f"{i}.json").read_text()) for i in range(len(cases))]


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _vm_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1])
    return 0


class _Started(Exception):
    """Raised in place of serving: the app loaded and would now start."""

    def __init__(self, state):
        super().__init__("started")
        self.state = state


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line(text: str) -> tuple[str, bool]:
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else ""), len(lines) == 1


def _run_case(c: dict) -> dict:
    """In the forked child: open what the case names, the way a user would, and report what happened."""
    import warnings

    from visualizer.errors import UserError

    warnings.simplefilter("ignore")
    kind = c["kind"]
    if kind == "checkpoint":
        from visualizer.adapters import get_adapter

        outcomes = []
        for name in c["adapters"]:
            try:
                get_adapter(name).from_checkpoint(c["path"], device="cpu")
                outcomes.append(("accepted", "", name))
            except UserError as e:
                outcomes.append(("refused", str(e), name))
            except BaseException as e:  # noqa: BLE001 - the point is to see anything else
                return {"outcome": "error", "message": f"{name}: {type(e).__name__}: {e}"[:2000]}
        kinds = {o[0] for o in outcomes}
        if kinds == {"refused"}:
            messages = [o[1] for o in outcomes]
            return {"outcome": "refused", "message": messages[0], "messages": messages}
        if kinds == {"accepted"}:
            return {"outcome": "accepted", "message": ""}
        return {"outcome": "mixed", "message": "; ".join(f"{o[2]}: {o[0]} {o[1]}" for o in outcomes)}
    if kind == "control":   # what the stock loaders do with the same file (the sandbox must survive it)
        if c["loader"] == "pickle.loads":
            pickle.loads(Path(c["path"]).read_bytes())
        else:
            import torch

            obj = torch.load(c["path"], map_location="cpu", weights_only=True)
            if isinstance(obj, dict):   # what building a network from it does: a real copy of each tensor
                copies = [v.clone(memory_format=torch.contiguous_format) for v in obj.values()
                          if isinstance(v, torch.Tensor)]
                del copies
        return {"outcome": "accepted", "message": ""}
    if kind == "detect":
        from visualizer.adapters import detect_adapter

        try:
            return {"outcome": "accepted", "message": detect_adapter(c["path"]), "notes": [detect_adapter(c["path"])]}
        except UserError as e:
            return {"outcome": "refused", "message": str(e)}
    if kind == "startup":
        import visualizer.app.server as server
        from visualizer.app import cli

        def started(state, *args, **kwargs):
            raise _Started(state)

        server.create_app = started
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                status = cli.main(c["argv"])
        except _Started as s:
            return {"outcome": "accepted", "message": "", "notes": s.state.startup_lines()}
        except BaseException as e:  # noqa: BLE001
            return {"outcome": "error", "message": f"{type(e).__name__}: {e}"[:2000]}
        line, single = _one_line(err.getvalue())
        if status == 2 and single and line.startswith("error: "):
            return {"outcome": "refused", "message": line.removeprefix("error: "), "status": status}
        return {"outcome": "error", "message": f"exit {status}: {err.getvalue()[-2000:]}", "status": status}
    if kind == "embed":
        from visualizer.cli import main

        folder = Path(c["folder"])
        before = _snapshot(folder)
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                status = main(c["argv"])
        except BaseException as e:  # noqa: BLE001
            return {"outcome": "error", "message": f"{type(e).__name__}: {e}"[:2000]}
        changed = sorted(set(before.items()) ^ set(_snapshot(folder).items()))
        line, single = _one_line(err.getvalue())
        if status == 2 and single and line.startswith("error: "):
            return {"outcome": "refused", "message": line.removeprefix("error: "), "status": status,
                    "changed": [c[0] for c in changed][:10]}
        if status == 0:
            return {"outcome": "accepted", "message": err.getvalue()[-500:], "changed": [c[0] for c in changed][:10]}
        return {"outcome": "error", "message": f"exit {status}: {err.getvalue()[-2000:]}", "status": status}
    return {"outcome": "error", "message": f"unknown kind {kind}"}


def _child(c: dict, result: Path, memory_kib: int) -> None:
    import resource

    result.with_suffix(".rss").write_text(str(_rss_kib()))   # where this child started, for its peak above it
    limit = (_vm_kib() + memory_kib) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    start = time.perf_counter()
    try:
        report = _run_case(c)
    except BaseException as e:  # noqa: BLE001
        report = {"outcome": "error", "message": f"{type(e).__name__}: {e}"[:2000]}
    report["seconds"] = time.perf_counter() - start
    result.write_text(json.dumps(report, default=str))


def worker(spec: Path, out: Path, jobs: int, timeout: float, memory_mib: int) -> None:
    """Fork one child per case (at most `jobs` at once), each under RLIMIT_AS and a timeout."""
    import signal

    # Everything a case may need is imported once here, before any fork (and no torch op runs here).
    import torch  # noqa: F401

    import visualizer.app.cli  # noqa: F401
    import visualizer.app.config  # noqa: F401
    import visualizer.app.server  # noqa: F401
    import visualizer.checkpoints.loading  # noqa: F401
    import visualizer.cli  # noqa: F401
    import visualizer.embeddings.pipeline  # noqa: F401
    import visualizer.embeddings.schema  # noqa: F401

    cases = json.loads(spec.read_text())
    out.mkdir(parents=True, exist_ok=True)
    baseline = _rss_kib()
    todo = list(range(len(cases)))
    running: dict[int, tuple[int, float]] = {}
    while todo or running:
        while todo and len(running) < jobs:
            i = todo.pop(0)
            tmp = out / f".{i}.child.json"
            tmp.unlink(missing_ok=True)
            pid = os.fork()
            if pid == 0:
                try:
                    _child(cases[i], tmp, memory_mib * 1024)
                finally:
                    os._exit(0)
            running[pid] = (i, time.monotonic())
        time.sleep(0.005)
        for pid, (i, started) in list(running.items()):
            done, status, usage = os.wait4(pid, os.WNOHANG)
            hung = False
            if done == 0:
                if time.monotonic() - started < timeout:
                    continue
                os.kill(pid, signal.SIGKILL)
                done, status, usage = os.wait4(pid, 0)
                hung = True
            del running[pid]
            tmp = out / f".{i}.child.json"
            if hung:
                report = {"outcome": "hang", "message": f"no answer in {timeout:.0f} s"}
            elif os.WIFSIGNALED(status):
                report = {"outcome": "crash", "message": f"killed by signal {os.WTERMSIG(status)}"}
            elif tmp.exists():
                report = json.loads(tmp.read_text())
            else:
                report = {"outcome": "crash", "message": f"exited {os.WEXITSTATUS(status)} without a report"}
            start_file = tmp.with_suffix(".rss")
            start = int(start_file.read_text()) if start_file.exists() else baseline
            start_file.unlink(missing_ok=True)
            report["peak_rss_mib"] = max(0.0, (usage.ru_maxrss - start) / 1024)
            report["rss_kib"] = [baseline, start, usage.ru_maxrss]
            report["seconds"] = report.get("seconds", time.monotonic() - started)
            (out / f"{i}.json").write_text(json.dumps(report, default=str))
            tmp.unlink(missing_ok=True)


# -- judging and the table ------------------------------------------------------------------------------

def judge(c: dict, r: dict) -> str:
    """'refused cleanly', 'loaded as expected', 'crash', 'hang', 'wrongly accepted' or 'wrong' (a wrong refusal,
    an unclear message, a folder left changed)."""
    outcome, message = r["outcome"], r.get("message", "")
    if outcome in ("crash", "hang"):
        return outcome
    if outcome == "error":
        return "crash"
    if r.get("changed"):
        return "wrong"
    if c["expect"] == "refuse":
        if outcome == "accepted":
            return "wrongly accepted"
        if outcome != "refused":
            return "wrong"
        messages = r.get("messages", [message])
        clean = all("\n" not in m and c["fragment"] in m and len(m) < 1000 for m in messages)
        if clean and c["id"] == "missing-columns-listed-once":
            clean = message.count("umap_x") == 1
        return "refused cleanly" if clean else "wrong"
    if outcome != "accepted":
        return "wrong"
    if c["kind"] == "detect":
        return "loaded as expected" if r.get("message") == c["fragment"] else "wrong"
    notes = r.get("notes") or []
    return "loaded as expected" if not c["fragment"] or any(c["fragment"] in n for n in notes) else "wrong"


COLUMNS = ("refused cleanly", "loaded as expected", "crash", "hang", "wrongly accepted", "wrong")


def summarize(cases: list[dict], results: list[dict]) -> list[dict]:
    rows = []
    for cls, name in CLASSES.items():
        mine = [(c, r) for c, r in zip(cases, results, strict=True) if c["cls"] == cls]
        if not mine:
            continue
        verdicts = [judge(c, r) for c, r in mine]
        rows.append({"class": f"{cls}. {name}", "cases": len(mine), **{k: verdicts.count(k) for k in COLUMNS},
                     "peak_mib": max(r.get("peak_rss_mib", 0.0) for _, r in mine),
                     "seconds": max(r.get("seconds", 0.0) for _, r in mine)})
    return rows


def format_table(rows: list[dict]) -> str:
    head = ("| class | cases | refused cleanly | loaded as expected | crashes | hangs | values wrongly accepted | "
            "other failures | peak memory (MiB above the worker) | slowest case (s) |")
    lines = [head, "| --- | " + " | ".join(["---:"] * 9) + " |"]
    total = {k: 0 for k in ("cases", *COLUMNS)}
    for r in rows:
        lines.append(f"| {r['class']} | {r['cases']} | {r['refused cleanly']} | {r['loaded as expected']} | "
                     f"{r['crash']} | {r['hang']} | {r['wrongly accepted']} | {r['wrong']} | {r['peak_mib']:.0f} | "
                     f"{r['seconds']:.2f} |")
        for k in total:
            total[k] += r[k]
    peak = max((r["peak_mib"] for r in rows), default=0)
    slowest = max((r["seconds"] for r in rows), default=0)
    lines.append(f"| all | {total['cases']} | {total['refused cleanly']} | {total['loaded as expected']} | "
                 f"{total['crash']} | {total['hang']} | {total['wrongly accepted']} | {total['wrong']} | "
                 f"{peak:.0f} | {slowest:.2f} |")
    return "\n".join(lines)


def failures(cases: list[dict], results: list[dict]) -> list[str]:
    out = []
    for c, r in zip(cases, results, strict=True):
        verdict = judge(c, r)
        if verdict not in ("refused cleanly", "loaded as expected"):
            out.append(f"{c['id']} ({c['kind']}, expected {c['expect']} with {c['fragment']!r}): {verdict}: "
                       f"{r.get('message', '')[:500]} {r.get('notes', '')}")
    return out


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=2, type=Path, metavar=("CASES", "OUT"), required=True)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--memory-mib", type=int, default=2048)
    a = parser.parse_args()
    worker(a.worker[0], a.worker[1], a.jobs, a.timeout, a.memory_mib)
