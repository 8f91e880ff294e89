"""The quality and diversity pipeline (issue 16) on random-weight ImageNet-64 nets in the official formats.

Writes a teacher as an EDM pickle (the official layout) and a student as a DMD2 checkpoint folder
(`pytorch_model.bin`; the teacher's weights nudged), makes an `embed` run of a few seeds (the run
folder that `diversity` reads its models and provenance from), then runs, as a user would,

    python -m visualizer diversity RUN --seeds 0-(N-1) --preset deterministic --num-steps 32 --probe network

and reports its stages (sampling both sets, then probing and scoring) with the extrapolation to
10,000 samples: sampling and probing grow linearly with the samples, and the k-NN scores are
computed per disjoint seed set, so at a fixed set size they grow linearly too (at 10,000 samples in
5 sets of 2,000, each set's k-NN work is 100x that of a 200-row set: stated beside the figure, not
extrapolated).

    python benchmarks/bench_diversity.py                  # on a GPU: 1,000 samples
    python benchmarks/bench_diversity.py --tiny           # checks the script on the CPU (tiny nets, 40 samples)

Prints a table and writes benchmarks/out/diversity.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT), str(ROOT / "tests")]

from bench_performance import randomize_zero_init  # noqa: E402
from nets import TINY_KWARGS  # noqa: E402

from visualizer.checkpoints.edm_pickle_writer import write_edm_pickle  # noqa: E402
from visualizer.models import IMAGENET64_KWARGS, EDMPrecond  # noqa: E402


def write_pair(folder: Path, tiny: bool) -> tuple[Path, Path]:
    """(teacher .pkl, student checkpoint folder): random weights, the student 1% of each tensor's scale apart."""
    torch.manual_seed(0)
    teacher = randomize_zero_init(EDMPrecond(**(TINY_KWARGS if tiny else dict(IMAGENET64_KWARGS, dropout=0.0))))
    student = copy.deepcopy(teacher)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.01 * p.std().nan_to_num())
    pkl = write_edm_pickle(teacher, folder / "teacher.pkl")
    student_dir = folder / "student" / "checkpoint_model_000000"
    student_dir.mkdir(parents=True)
    torch.save(student.state_dict(), student_dir / "pytorch_model.bin")
    return pkl, student_dir


def command(*args: str) -> float:
    """Runs `python -m visualizer ARGS` as a user would; seconds taken (its output passes through)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "visualizer", *args], check=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny nets, 40 samples: checks that the script runs")
    p.add_argument("--samples", type=int, default=None, help="samples per model (default 1,000; --tiny 40)")
    p.add_argument("--device", default=None)
    p.add_argument("--other-preset", default="auto", help="passed to diversity (none: skip the teacher's second "
                   "sampler, whose sampling costs as much as the first)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "diversity.json")
    args = p.parse_args()
    n = args.samples or (40 if args.tiny else 1000)
    device = ["--device", args.device] if args.device else []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        pkl, student = write_pair(folder, args.tiny)
        written = time.perf_counter() - start
        run = folder / "run"
        embed_s = command("embed", "--teacher", str(pkl), "--student", str(student), "--num-samples", "32",
                          "--preset", "deterministic", "--num-steps", "32" if not args.tiny else "4",
                          "--pca-dims", "8", "--out", str(run), "--no-progress", *device)
        out = folder / "diversity"
        splits = "5"
        total = command("diversity", str(run), "--seeds", f"0-{n - 1}", "--preset", "deterministic",
                        "--num-steps", "32" if not args.tiny else "4", "--probe", "network", "--splits", splits,
                        "--other-preset", args.other_preset, "--out", str(out), *device)
        report = json.loads((out / "diversity.json").read_text())
    seconds = report["seconds"]
    per_sample = (seconds["sampling"] + seconds["scoring"]) / n
    result = {
        "machine": platform.node(), "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "samples": n, "splits": int(splits), "other_preset": args.other_preset,
        "writing_checkpoints_s": round(written, 1),
        "embed_run_s": round(embed_s, 1), "diversity_wall_s": round(total, 1), "stages_s": seconds,
        "extrapolated_10000_s": round(10_000 * per_sample, 0),
        "teacher_sampler": report["teacher_sampler"], "probe": report["probe"],
    }
    print(f"{'stage':<40}{'seconds':>10}")
    for name, value in [("write the two checkpoints", written), ("embed run (32 seeds, its models)", embed_s),
                        ("diversity: sampling teacher + student", seconds["sampling"]),
                        ("diversity: probe + scores + correspondence", seconds["scoring"]),
                        ("diversity: whole command (load included)", total),
                        ("extrapolated to 10,000 samples (sampling + scoring)", result["extrapolated_10000_s"])]:
        print(f"{name:<52}{value:>10.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
