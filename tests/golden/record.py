"""Records eager float32 outputs of small nets (samplers, captures, embed batches, the app engine).

Run once on the code before a refactor (`python tests/golden/record.py`); tests/test_golden.py then
checks that the refactored code reproduces them bit for bit. The file is small (tens of KB).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

# One file per CPU instruction set besides the first (golden.json); record each from the same pre-refactor commit.
OUT = Path(__file__).with_name(sys.argv[1] if len(sys.argv) > 1 else "golden.json")
LAYERS = ["encoder_block_0", "encoder_bottleneck", "midblock", "dec.16x16_block1"]


def pair():
    from nets import tiny_net

    from visualizer.adapters import get_adapter

    teacher = get_adapter("edm-imagenet-64")(tiny_net(0), device="cpu")
    student = get_adapter("dmd2-imagenet-64")(tiny_net(1), device="cpu")
    return teacher, student


def digest(t: torch.Tensor) -> dict:
    """Bit-exact fingerprint of a tensor: its bytes' sha256, with shape, dtype and sum to read a mismatch by."""
    t = t.detach().contiguous().cpu()
    return {"sha256": hashlib.sha256(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"").hexdigest(),
            "shape": list(t.shape), "dtype": str(t.dtype), "sum": float(t.double().sum())}


def outputs(run) -> dict:
    """run(teacher, student, layers) -> dict of tensors; the recorder and the test call the same runner."""
    teacher, student = pair()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)     # kernels chosen by thread count can differ in the last bits
    try:
        return run(teacher, student, LAYERS)
    finally:
        torch.set_num_threads(threads)   # later tests in the same process run as before


if __name__ == "__main__":
    from golden_runs import golden_runs

    recorded = {k: digest(v) for k, v in outputs(golden_runs).items()}
    recorded["_torch"] = torch.__version__    # CPU kernels (and so the last bits) change with the torch build
    recorded["_cpu"] = torch.backends.cpu.get_cpu_capability()    # ... and with the instruction set
    OUT.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
