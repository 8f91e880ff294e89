"""Debiased CKA over samples: known answers, the U-statistic written out, exact resamples, a centred null."""

import itertools
import math

import numpy as np
import pytest
import torch
from overlap import overlap

from visualizer.errors import UserError
from visualizer.metrics.cka import (
    Resampling,
    biased_cka,
    cka_matrix,
    debiased_cka,
    hsic_unbiased,
    sigma_alignment,
)

F64 = torch.float64       # exact comparisons; the default float32 Gram matrices agree to about 1e-5


def rng(seed=0):
    return np.random.default_rng(seed)


def related(n=120, p=20, q=15, noise=1.0, seed=0):
    r = rng(seed)
    x = r.normal(size=(n, p))
    return x, x @ r.normal(size=(p, q)) + noise * r.normal(size=(n, q))


def hsic_by_definition(k, l):
    """Song et al.'s U-statistic as defined: the mean of h over every 4-tuple of distinct samples."""
    n = k.shape[0]
    total = 0.0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q]
    return total / math.perm(n, 4)


def test_the_closed_form_is_the_u_statistic():
    x, y = related(n=8, p=3, q=2, seed=1)
    k, l = x @ x.T, y @ y.T
    assert hsic_unbiased(torch.tensor(k), torch.tensor(l)).item() == pytest.approx(hsic_by_definition(k, l), rel=1e-10)


def test_matrix_equals_the_direct_formula_on_small_cases():
    x, y = related(n=37, p=12, q=9, seed=2)
    z = rng(3).normal(size=(37, 30))
    m = cka_matrix({"x": x, "z": z}, {"y": y, "x": x}, resamples=10, null=5, blocks=10, dtype=F64)
    expected = [[debiased_cka(x, y), 1.0], [debiased_cka(z, y), debiased_cka(z, x)]]
    np.testing.assert_allclose(m.estimate, expected, rtol=1e-9, atol=1e-12)


def test_every_resample_and_null_draw_is_the_exact_score_of_its_samples():
    x, y = related(n=41, p=6, q=5, seed=4)          # 41 samples in 10 blocks: uneven block sizes
    rs = Resampling.draw(41, resamples=6, null=4, blocks=10, seed=7)
    m = cka_matrix({"x": x}, {"y": y}, resampling=rs, dtype=F64)
    for b in range(6):
        idx = rs.subset(b)
        assert len(idx) in (20, 21) and len(set(idx.tolist())) == len(idx)   # a half, no copies
        assert m.resampled[b, 0, 0] == pytest.approx(debiased_cka(x[idx], y[idx]), rel=1e-5)
    xo, yo = x[rs.order], y[rs.order]
    for j, shift in enumerate(rs.shifts):                           # sample k against sample k + shift
        assert m.null[j, 0, 0] == pytest.approx(debiased_cka(xo, np.roll(yo, -shift, axis=0)), rel=1e-6, abs=1e-9)


def test_rotated_rescaled_copy_scores_one():
    x = rng(5).normal(size=(60, 16))
    q, _ = np.linalg.qr(rng(6).normal(size=(16, 16)))
    m = cka_matrix({"x": x}, {"rotated": 3.7 * x @ q}, resamples=20, null=10, dtype=F64)
    assert m.estimate[0, 0] == pytest.approx(1.0, abs=1e-12)
    assert m.lo[0, 0] == pytest.approx(1.0, abs=1e-9) and m.hi[0, 0] == pytest.approx(1.0, abs=1e-9)
    assert m.null_hi[0, 0] < 0.2 and m.p_null[0, 0] == pytest.approx(1 / 11)


def test_independent_data_scores_zero_within_its_interval_where_biased_cka_does_not():
    r = rng(8)
    x, y = r.normal(size=(200, 300)), r.normal(size=(200, 250))       # more features than samples
    m = cka_matrix({"x": x}, {"y": y}, resamples=100, null=50)
    assert m.lo[0, 0] <= 0 <= m.hi[0, 0]
    assert abs(m.estimate[0, 0]) < 0.02 and m.hi[0, 0] - m.lo[0, 0] < 0.05
    assert biased_cka(x, y) > 0.4                                      # what the biased estimator makes of noise


def test_shuffled_null_is_centred_on_zero():
    x, y = related(n=80, noise=0.5, seed=9)
    m = cka_matrix({"x": x}, {"y": y}, resamples=0, null=200)
    draws = m.null[:, 0, 0]
    assert len(draws) == 79                                       # every shift of 80 samples but 0
    assert abs(draws.mean()) < 3 * draws.std() / math.sqrt(len(draws))
    assert m.estimate[0, 0] > 0.5 > m.null_hi[0, 0] and m.p_null[0, 0] == pytest.approx(1 / 80)
    many = [cka_matrix({"x": x}, {"y": y}, resamples=0, null=20, seed=s).null_mean[0, 0] for s in range(10)]
    assert abs(np.mean(many)) < 3 * np.std(many) / math.sqrt(10) + 1e-3   # over random orders too


def test_interval_covers_the_population_value_about_as_often_as_it_says():
    w = rng(10).normal(size=(5, 5))

    def draw(n, seed):
        x = rng(seed).normal(size=(n, 5))
        return x, x @ w + 2.0 * rng(seed + 1).normal(size=(n, 5))

    truth = biased_cka(*draw(20000, 1))            # the population value, near enough (bias ~ 1/n)
    hits = []
    for s in range(40):
        x, y = draw(100, 100 + 2 * s)
        m = cka_matrix({"x": x}, {"y": y}, resamples=100, null=0, seed=s)
        hits.append(m.lo[0, 0] <= truth <= m.hi[0, 0])
    assert np.mean(hits) >= 0.8                    # 95% nominal; 40 draws leave room


def test_per_class_matrices_and_their_labels():
    x, y = related(n=90, seed=11)
    labels = np.arange(90) % 3
    m = cka_matrix({"x": x}, {"y": y}, labels=labels, classes="all", resamples=10, null=5, dtype=F64)
    assert sorted(m.per_class) == [0, 1, 2]
    for c, sub in m.per_class.items():
        assert sub.n == 30 and sub.estimate[0, 0] == pytest.approx(debiased_cka(x[labels == c], y[labels == c]))
    d = m.to_dict()
    assert set(d["per_class"]) == {"0", "1", "2"} and d["diagonal"] == []
    with pytest.raises(UserError, match="class label"):
        cka_matrix({"x": x}, {"y": y}, classes="all")


def test_memory_budget_chunks_the_rows_without_changing_the_result():
    x, y = related(n=50, seed=12)
    sets = {f"r{i}": x + i * rng(i).normal(size=x.shape) for i in range(4)}
    whole = cka_matrix(sets, {"y": y}, resamples=8, null=4, dtype=F64)
    chunked = cka_matrix(sets, {"y": y}, resamples=8, null=4, dtype=F64, max_bytes=3 * 50 * 50 * 8)
    np.testing.assert_allclose(chunked.estimate, whole.estimate, rtol=1e-12)
    np.testing.assert_allclose(chunked.resampled, whole.resampled, rtol=1e-6)


def test_float32_grams_the_default_agree_with_float64():
    x, y = related(n=64, p=40, q=30, seed=13)
    a = cka_matrix({"x": x}, {"y": y}, resamples=8, null=4, dtype=F64)
    b = cka_matrix({"x": x}, {"y": y}, resamples=8, null=4)
    assert b.method["dtype"] == "float32"
    for key in ("estimate", "lo", "hi", "null_lo", "null_hi"):
        np.testing.assert_allclose(getattr(b, key), getattr(a, key), atol=1e-5)


def test_constant_layer_is_nan_and_too_few_samples_refused():
    x, _ = related(n=20, seed=14)
    m = cka_matrix({"x": x}, {"flat": np.ones((20, 3))}, resamples=4, null=2)
    assert math.isnan(m.estimate[0, 0]) and m.cell(0, 0)["cka"] is None
    with pytest.raises(UserError, match="at least 8"):
        cka_matrix({"x": x[:6]}, {"y": x[:6]})
    with pytest.raises(UserError, match="same samples"):
        cka_matrix({"x": x}, {"y": x[:10]})


def test_sigma_alignment_finds_the_step_each_layer_resembles():
    r = rng(15)
    n, steps = 100, [0, 1, 2, 3]
    base = {name: r.normal(size=(n, 10)) for name in ("a", "b")}
    peak = {"a": 1, "b": 3}
    teacher = {(name, k): base[name] + (0.2 if k == peak[name] else 3.0) * r.normal(size=(n, 10))
               for name in base for k in steps}
    sigmas = {0: 80.0, 1: 20.0, 2: 2.0, 3: 0.1}
    out = sigma_alignment(teacher, base, sigmas, resamples=40, null=10)
    assert out.ridge_step == [1, 3] and out.ridge_sigma == [20.0, 0.1]
    assert out.estimate.shape == (2, 4) and (out.lo <= out.estimate + 1e-12).all()
    ridge = out.ridge()
    assert ridge[0]["sigma_lo"] == ridge[0]["sigma_hi"] == 20.0 and ridge[0]["share"] == 1.0
    assert out.to_dict()["ridge"][1]["step"] == 3


def test_runs_in_two_threads_leave_the_tf32_switch_as_they_found_it():
    """A run turns TF32 off (a process-wide switch) and puts back what it found. B starts while A is inside and
    takes longer: were they to overlap, B would find "off" and, ending last, leave it off (the app's matrix and
    alignment jobs are threads)."""
    rng = np.random.default_rng(0)
    small = {"x": rng.normal(size=(64, 16))}
    big = {"x": rng.normal(size=(256, 64))}
    switch = torch.backends.cuda.matmul
    found = switch.allow_tf32
    switch.allow_tf32 = True
    try:
        for _ in range(3):
            overlap(lambda: cka_matrix(small, small, resamples=200, null=20, blocks=16),
                    lambda: cka_matrix(big, big, resamples=400, null=40, blocks=16),
                    inside=lambda: not switch.allow_tf32)
            assert switch.allow_tf32 is True
    finally:
        switch.allow_tf32 = found
