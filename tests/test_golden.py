"""Eager float32 outputs are bit-identical to main before the trace refactor (tests/golden/record.py made them).

Samplers with every evaluation's activations, captures with a reduction, embedding batches and the
app engine's first look and trajectory, on tiny networks on the CPU, compared by sha256 of their bytes.
"""

import json
import sys
from pathlib import Path

import pytest
import torch

GOLDEN = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN))

from golden_runs import golden_runs  # noqa: E402
from record import digest, outputs  # noqa: E402


@pytest.fixture(scope="module")
def recorded():
    # CPU kernels differ in the last bits between instruction sets (oneDNN picks AVX2 or AVX-512 code): the
    # fingerprints of a machine's capability were recorded from the same pre-refactor commit on such a machine.
    capability = torch.backends.cpu.get_cpu_capability()
    path = GOLDEN / f"golden-{capability}.json"
    data = json.loads((path if path.exists() else GOLDEN / "golden.json").read_text())
    built = data.pop("_torch")
    data.pop("_cpu", None)
    if built != torch.__version__:
        pytest.skip(f"recorded with torch {built}, this is {torch.__version__}: CPU kernels differ in the last bits")
    return data


@pytest.fixture(scope="module")
def now():
    return {k: digest(v) for k, v in outputs(golden_runs).items()}


def test_same_outputs_as_before(recorded, now):
    assert set(now) == set(recorded)
    differ = {k: (recorded[k]["sum"], now[k]["sum"]) for k in recorded if recorded[k] != now[k]}
    assert not differ, f"outputs changed (recorded sum, sum now): {differ}"
