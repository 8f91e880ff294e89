"""How `embed` scales over GPUs of one host: wall time per stage, images per second, efficiency.

Writes random-weight ImageNet-64 nets in the official formats (an EDM pickle through our writer, a
DMD2 `checkpoint_model_000000/pytorch_model.bin`), then runs, for each GPU count asked,

    torchrun --nproc_per_node N -m visualizer embed --teacher T --student S --seeds 0-(n-1)
        --preset deterministic --num-steps 32 --steps first,last --precision bf16 --compile

in a fresh folder, and reads the run's per-model extraction time and the PCA+UMAP time from its
summary. Efficiency at N GPUs = (time at 1 GPU) / (N x time at N GPUs), per stage. Checks that every
run's CSV has the same (seed, class, model, step) rows as the first one.

    python benchmarks/bench_embed_scaling.py --gpus 1 2 4 8 --seeds 10000     # a host with 8 GPUs
    python benchmarks/bench_embed_scaling.py --gpus 1 --seeds 1000            # the 1-GPU baseline
    python benchmarks/bench_embed_scaling.py --tiny --gpus 1 --seeds 64 --device cpu   # checks the script

Prints a table and writes benchmarks/out/embed_scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from visualizer.checkpoints.edm_pickle_writer import write_edm_pickle  # noqa: E402
from visualizer.models import IMAGENET64_KWARGS, EDMPrecond  # noqa: E402

LINE = re.compile(r"^(\w+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.na]+)$")


def write_checkpoints(folder: Path, tiny: bool) -> tuple[Path, Path]:
    from nets import TINY_KWARGS

    kwargs = dict(TINY_KWARGS) if tiny else dict(IMAGENET64_KWARGS, dropout=0.0)
    torch.manual_seed(0)
    teacher = EDMPrecond(**kwargs)
    with torch.no_grad():       # the zero-initialised output convs would make D(x) = c_skip x
        for p in teacher.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    student = EDMPrecond(**kwargs)
    student.load_state_dict(teacher.state_dict())
    folder.mkdir(parents=True, exist_ok=True)
    pkl = write_edm_pickle(teacher, folder / "teacher.pkl")
    sdir = folder / "student" / "checkpoint_model_000000"
    sdir.mkdir(parents=True, exist_ok=True)
    torch.save(student.state_dict(), sdir / "pytorch_model.bin")
    return pkl, sdir


def run(n: int, args, pkl: Path, sdir: Path, out: Path) -> dict:
    cmd = ["-m", "visualizer", "embed", "--teacher", str(pkl), "--student", str(sdir), "--seeds",
           f"0-{args.seeds - 1}", "--preset", "deterministic", "--num-steps", str(args.num_steps),
           "--steps", "first,last", "--batch-size", str(args.batch_size), "--out", str(out), "--no-progress"]
    if args.device != "cpu":
        cmd += ["--precision", "bf16", "--compile"]
    else:
        cmd += ["--device", "cpu"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"] \
        if n > 1 else [sys.executable]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    done = subprocess.run([*launcher, *cmd], capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"embed on {n} process(es) failed:\n{done.stderr[-3000:]}")
    stages = {"wall": wall}
    for line in done.stdout.splitlines():
        m = LINE.match(line.strip())
        if m and m.group(1) != "total":
            stages[f"extract_{m.group(1)}"] = float(m.group(5))
        r = re.search(r"PCA\+UMAP ([\d.]+) s", line)
        if r:
            stages["reduce"] = float(r.group(1))
    import pandas as pd

    rows = pd.read_csv(out / "embeddings.csv")[["seed", "class_label", "model", "step"]]
    return {"gpus": n, "seconds": stages, "rows": rows.sort_values(list(rows.columns)).to_numpy().tolist(),
            "images_per_s": 2 * args.seeds / sum(v for k, v in stages.items() if k.startswith("extract_"))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpus", type=int, nargs="+", default=[1])
    p.add_argument("--seeds", type=int, default=10_000)
    p.add_argument("--num-steps", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="small nets: checks the script")
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "out" / "embed_scaling")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "embed_scaling.json")
    args = p.parse_args(argv)
    pkl, sdir = write_checkpoints(args.work / "ckpt", args.tiny)
    results = [run(n, args, pkl, sdir, args.work / f"run-{n}gpu-{int(time.time())}") for n in args.gpus]
    base = results[0]
    print(f"{'gpus':>5} {'wall s':>8} " + " ".join(f"{k:>16}" for k in base["seconds"] if k != "wall")
          + f" {'img/s':>8} {'efficiency':>10} {'same rows':>9}")
    for r in results:
        eff = {k: base["seconds"][k] / (r["gpus"] / base["gpus"] * v) for k, v in r["seconds"].items() if v > 0}
        print(f"{r['gpus']:>5} {r['seconds']['wall']:>8.1f} " + " ".join(
            f"{v:>9.1f} ({eff.get(k, float('nan')):.0%})" for k, v in r["seconds"].items() if k != "wall")
            + f" {r['images_per_s']:>8.1f} {eff['wall']:>10.0%} {str(r['rows'] == base['rows']):>9}")
    info = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "torch": torch.__version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(["python", "benchmarks/bench_embed_scaling.py", *(argv or sys.argv[1:])]),
            "results": [{k: v for k, v in r.items() if k != "rows"} for r in results]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(info, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
