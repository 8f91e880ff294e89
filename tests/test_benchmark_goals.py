"""The goals table (benchmarks/goals.py) over what the real benchmark scripts write, and its profile of missed goals."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import goals  # noqa: E402
from profile_body import kernel_kinds  # noqa: E402


@pytest.fixture(scope="module")
def perf(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("perf") / "performance.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_performance.py"), "--tiny", "--device", "cpu",
                    "--clicks", "1", "--repeats", "1", "--out", str(out)], check=True, capture_output=True, cwd=ROOT)
    return json.loads(out.read_text())


def _by_id(table):
    return {r[0]: r for r in table}


def test_every_gpu_goal_has_its_target_ratios_and_status(perf):
    assert perf["complete"] is True
    rows = _by_id(goals.rows(perf, None, None, None))
    assert {"1", "2a", "2b", "2c", "3a", "3b"} <= rows.keys()
    assert rows["1"][2] == "<= 1 s" and "faster than 21.5 s" in rows["1"][4] and "scaled from 2 steps" in rows["1"][5]
    assert rows["2a"][2] == ">= 2,200 img/s" and "543 (fp32)" in rows["2a"][4] and "img/s" in rows["2a"][5]
    assert rows["2b"][2] == "<= 0.25 s/img" and "0.735" in rows["2b"][4]
    assert rows["3b"][3].startswith("not measured")          # no causal file: the command that measures it
    # The tiny CPU network is far from the H200's goals; the edited click's ratio is measured, not assumed.
    assert rows["1"][-1] == rows["2a"][-1] == "**missed**"
    assert rows["3a"][-1] == ("met" if perf["cases"][2]["ratio"] <= 1.5 else "**missed**")


def test_a_goal_met_or_missed_follows_the_measurement(perf):
    perf = copy.deepcopy(perf)
    fast = [c for c in perf["cases"] if c["case"].startswith("teacher click (") and c["path"] != "eager fp32"][0]
    fast["seconds_256"] = 0.99
    causal = {"device": "NVIDIA H200", "gpu": {"edited_student_click_s": 0.0063, "timing": "cuda events",
                                               "sweep_s": 12.0, "sweep_layers": 37, "sweep_seeds": 64}}
    rows = _by_id(goals.rows(perf, None, None, causal))
    assert rows["1"][-1] == "met" and rows["3b"][-1] == "met" and rows["3b"][3].startswith("6.3 ms")
    assert rows["c"][-1] == "**missed**" and rows["c"][3] == "12.0 s"
    causal["gpu"].update(sweep_s=3.2, first_sweep_s=41.0)
    rows = _by_id(goals.rows(perf, None, None, causal))
    assert rows["c"][-1] == "met" and rows["c"][3] == "3.2 s (the first at this batch size, compiling: 41.0 s)"


def test_medians_come_with_the_range_of_their_runs(perf):
    assert "range" not in goals.rows(perf, None, None, None)[0][3]       # one click: no range to show
    perf = copy.deepcopy(perf)
    for case in perf["cases"]:
        if case["case"].startswith("teacher click (") and case["path"] != "eager fp32":
            case["all_s"] = [2 * case["nfe"] / 511, case["nfe"] / 511, 3 * case["nfe"] / 511]    # 2, 1, 3 s at 256
        elif case["case"].startswith("dmd2 batch") and case.get("record") and "all_s" in case:
            case["all_s"] = [case["batch"] / 1000, case["batch"] / 2000]                         # 1,000, 2,000 img/s
    rows = _by_id(goals.rows(perf, None, None, None))
    assert ", range 1.00-3.00 of 3;" in rows["1"][3]
    assert rows["2a"][3].endswith("img/s, range 1,000-2,000 of 2")


def test_missed_goals_come_with_where_the_time_goes(perf):
    table = goals.rows(perf, None, None, None)
    assert all("not profiled" in line for line in goals.where_time_goes(table, None))
    profile = {"profiles": [{"mode": "full", "precision": "bf16", "nfe": 15, "gpu_per_nfe_ms": 3.6,
                             "wall_per_nfe_ms": 3.7, "gpu_kinds_s": {"convolution": 0.03, "reductions": 0.01}}],
               "body": [{"config": "full:bf16:1", "seconds": 0.004, "images_per_s": 250.0,
                         "gpu_kinds_per_forward_s": {"convolution": 0.003}},
                        {"config": "full:bf16:256", "seconds": 0.17, "images_per_s": 1500.0,
                         "gpu_kinds_per_forward_s": {"convolution": 0.1, "fused by the compiler (Triton)": 0.07}}]}
    text = "\n".join(goals.where_time_goes(table, profile))
    assert "3.60 ms of 3.70 ms wall per evaluation" in text and "convolution: 2.00 ms per evaluation (75%)" in text
    assert "batch 256 (full:bf16:256)" in text and "fused by the compiler (Triton): 70.00 ms per forward (41%)" in text


def test_kernel_kinds_sorts_gpu_time_by_kind():
    events = [SimpleNamespace(key=k, self_device_time_total=us) for k, us in [
        ("triton_poi_fused_convolution_silu_0", 10), ("sm90_xmma_fprop_implicit_gemm_bf16f32", 20),
        ("void flash_fwd_kernel<>", 5), ("ampere_bf16_s16816gemm_128x64", 3), ("Memcpy DtoD (Device -> Device)", 2),
        ("void at::native::reduce_kernel<512, 1>", 1), ("aten::convolution", 99), ("cudaGraphLaunch", 0)]]
    kinds = kernel_kinds(events)
    assert list(kinds) == ["convolution", "fused by the compiler (Triton)", "attention", "matrix product (gemm)",
                           "layout changes and copies", "reductions"]
    assert kinds["convolution"] == pytest.approx(20e-6) and "other" not in kinds
