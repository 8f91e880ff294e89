"""Schedules, the EDM Heun sampler, DMD2's generator and the uint8 conversions, against the facts of both papers."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from nets import TINY_KWARGS

from visualizer.adapters.edm import PRESETS
from visualizer.models import EDMPrecond
from visualizer.models.images import dmd2_to_uint8, edm_to_uint8, to_pil
from visualizer.models.sampling import HeunSettings, dmd2_few_step, dmd2_generate, edm_sampler, edm_sigmas
from visualizer.models.seeding import draw_latents_and_classes, make_generators, one_hot

SD = 0.5  # sigma_data


def _perturbed(net: EDMPrecond, seed: int = 0) -> EDMPrecond:
    """Random weights everywhere (fresh residual branches start at zero), so every layer shapes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return net.eval()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tensors this small gain nothing from threads, and on a busy 2-core machine OpenMP spin-waits cost seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def net() -> EDMPrecond:
    return _perturbed(EDMPrecond(**TINY_KWARGS))


def _draw(seeds, label_dim=10, shape=(3, 16, 16), classes=None):
    gens = make_generators(seeds, "cpu")
    latents, idx = draw_latents_and_classes(gens, shape, label_dim, classes)
    return gens, latents, one_hot(idx, label_dim) if label_dim else None


def zero_data(x, sigma, labels=None):
    """Denoiser of data concentrated at 0."""
    return torch.zeros_like(x)


def gaussian_data(x, sigma, labels=None):
    """Exact denoiser of N(0, SD^2) data: E[y | y + sigma n = x] = x SD^2 / (sigma^2 + SD^2)."""
    return x * SD**2 / (sigma**2 + SD**2)


def _settings(name: str, **kw) -> HeunSettings:
    return dataclasses.replace(PRESETS[name], **kw)


# -- schedule and presets -----------------------------------------------------------------------

def test_edm_schedule():
    t = edm_sigmas(18)
    assert t.dtype == torch.float64 and t.shape == (19,)
    assert t[0].item() == pytest.approx(80, rel=1e-12) and t[17].item() == pytest.approx(0.002, rel=1e-12)
    assert t[-1].item() == 0 and bool((t[1:] < t[:-1]).all())
    rho = 7
    mid = (80 ** (1 / rho) + 9 / 17 * (0.002 ** (1 / rho) - 80 ** (1 / rho))) ** rho
    assert t[9].item() == pytest.approx(mid, rel=1e-14)
    assert edm_sigmas(1).tolist() == [80.0, 0.0]
    assert edm_sigmas(3, sigma_max=10.0)[0].item() == pytest.approx(10.0)
    with pytest.raises(ValueError):
        edm_sigmas(0)


def test_presets():
    fid, det = PRESETS["fid"], PRESETS["deterministic"]
    assert (fid.num_steps, fid.S_churn, fid.S_min, fid.S_max, fid.S_noise) == (256, 40, 0.05, 50, 1.003)
    assert (fid.sigma_min, fid.sigma_max, fid.rho, fid.nfe) == (0.002, 80, 7, 511)
    assert det.S_churn == 0 and det.S_noise == 1 and not det.stochastic and det.num_steps == 256
    assert dataclasses.replace(det, num_steps=40).nfe == 79
    with pytest.raises(dataclasses.FrozenInstanceError):
        fid.num_steps = 3
    with pytest.raises(ValueError):
        HeunSettings(num_steps=0)


# -- the EDM sampler: bookkeeping -----------------------------------------------------------------

def test_heun_makes_2N_minus_1_evaluations_reported_through_the_callback():
    gens, latents, _ = _draw([0], shape=(1, 2, 2))
    calls = []
    edm_sampler(gaussian_data, latents, None, generators=gens, settings=_settings("deterministic", num_steps=5),
                callback=calls.append)
    t = edm_sigmas(5).tolist()
    assert len(calls) == 2 * 5 - 1
    assert [c["stage"] for c in calls] == ["euler", "heun"] * 4 + ["euler"]
    assert [c["step"] for c in calls] == [0, 0, 1, 1, 2, 2, 3, 3, 4]
    assert [c["sigma"] for c in calls] == [t[0], t[1], t[1], t[2], t[2], t[3], t[3], t[4], t[4]]
    assert calls[-1]["sigma_next"] == 0 and all(c["num_steps"] == 5 for c in calls)
    assert all(c["x"].dtype == c["denoised"].dtype == torch.float64 for c in calls)


def test_churn_raises_sigma_only_inside_its_window():
    gens, latents, _ = _draw([0], shape=(1, 2, 2))
    settings = _settings("fid", num_steps=16)
    calls = []
    edm_sampler(gaussian_data, latents, None, generators=gens, settings=settings, callback=calls.append)
    t = edm_sigmas(16).tolist()
    gamma = min(40 / 16, math.sqrt(2) - 1)
    euler = [c["sigma"] for c in calls if c["stage"] == "euler"]
    expected = [ti + gamma * ti if 0.05 <= ti <= 50 else ti for ti in t[:-1]]
    assert euler == expected and euler[0] == 80 and euler[-1] == t[-2]
    assert any(e != ti for e, ti in zip(euler, t, strict=False))


def test_churn_noise_is_drawn_every_step_even_without_churn():
    gens, latents, _ = _draw([4, 5], shape=(1, 3, 3))
    edm_sampler(gaussian_data, latents, None, generators=gens, settings=_settings("deterministic", num_steps=6))
    for seed, g in zip([4, 5], gens, strict=True):
        ref = torch.Generator().manual_seed(seed)
        torch.randn((1, 3, 3), generator=ref)
        torch.randint(10, size=[], generator=ref)
        for _ in range(6):
            torch.randn((1, 3, 3), generator=ref, dtype=torch.float64)
        assert torch.equal(g.get_state(), ref.get_state())


# -- the EDM sampler: the mathematics ------------------------------------------------------------

def test_heun_on_data_at_zero_lands_at_zero():
    gens, latents, _ = _draw(range(4), shape=(1, 4, 4))
    x = edm_sampler(zero_data, latents, None, generators=gens, settings=_settings("deterministic", num_steps=18))
    assert x.dtype == torch.float64 and x.abs().max().item() < 1e-6


def test_deterministic_heun_follows_the_gaussian_ode_at_second_order():
    """For N(0, SD^2) data the probability-flow ODE gives x(0) = x(80) SD / sqrt(80^2 + SD^2): std SD.

    Heun is a 2nd-order method, so four times the steps cut the error about sixteenfold.
    """
    gens, latents, _ = _draw(range(64), shape=(3, 8, 8))
    exact = latents.double() * 80 * SD / math.sqrt(80**2 + SD**2)
    errors = {}
    for n in (32, 128):
        x = edm_sampler(gaussian_data, latents, None, generators=make_generators(range(64)),
                        settings=_settings("deterministic", num_steps=n))
        errors[n] = ((x - exact).abs() / exact.abs()).max().item()
    assert errors[128] < 2e-3 and errors[32] / errors[128] > 10
    assert x.std().item() == pytest.approx(SD, rel=0.03)


def test_stochastic_heun_keeps_the_gaussian_std():
    gens, latents, _ = _draw(range(64), shape=(3, 8, 8))
    x = edm_sampler(gaussian_data, latents, None, generators=gens, settings=PRESETS["fid"])
    assert x.std().item() == pytest.approx(SD, rel=0.05)


# -- the EDM sampler with a network ----------------------------------------------------------------

def test_deterministic_preset_repeats_exactly(net):
    settings = _settings("deterministic", num_steps=3)
    runs = []
    for _ in range(2):
        gens, latents, labels = _draw([1, 2])
        runs.append(edm_sampler(net, latents, labels, generators=gens, settings=settings))
    assert torch.equal(runs[0], runs[1]) and torch.isfinite(runs[0]).all()


def per_image(x, sigma, labels=None):
    """A nonlinear denoiser that, like a network, sees each image alone; unlike a CPU network it is batch-invariant."""
    return torch.tanh(x / (sigma + 1)) * 0.9 + x * 0.01 / (1 + sigma)


def test_batch_of_seeds_equals_each_seed_alone_edm():
    settings = HeunSettings(num_steps=6, S_churn=40)  # churn at every step: the noise must be per seed too
    gens, latents, _ = _draw([3, 11, 12])
    both = edm_sampler(per_image, latents, None, generators=gens, settings=settings)
    for row, seed in enumerate([3, 11, 12]):
        gens, latents, _ = _draw([seed])
        assert torch.equal(both[row:row + 1], edm_sampler(per_image, latents, None, generators=gens, settings=settings))


def test_batch_of_seeds_matches_each_seed_alone_with_a_network(net):
    """The sampler is per seed; the network's CPU kernels are not exactly batch-invariant (last-bit differences)."""
    settings = HeunSettings(num_steps=3, S_churn=40)
    gens, latents, labels = _draw([3, 11])
    both = edm_sampler(net, latents, labels, generators=gens, settings=settings)
    gens, latents, labels = _draw([11])
    alone = edm_sampler(net, latents, labels, generators=gens, settings=settings)
    torch.testing.assert_close(both[1:], alone, rtol=1e-3, atol=1e-3)  # a stream mix-up differs by O(1)


def test_fid_preset_finishes():
    small = _perturbed(EDMPrecond(img_resolution=8, img_channels=3, label_dim=10, model_channels=16,
                                  channel_mult=[1], num_blocks=1, attn_resolutions=[], dropout=0.0))
    gens, latents, labels = _draw([0], shape=(3, 8, 8))
    calls = []
    x = edm_sampler(small, latents, labels, generators=gens, settings=PRESETS["fid"],
                    callback=lambda d: calls.append(d["stage"]))
    assert len(calls) == 511 and x.shape == (1, 3, 8, 8) and torch.isfinite(x).all()


# -- DMD2 -----------------------------------------------------------------------------------------

def test_student_input_is_the_teachers_first_input(net):
    """No churn at t_0 = 80 (> S_max = 50), so the teacher's first D call is exactly the student's G call."""
    teacher, student = [], []
    gens, latents, labels = _draw([3, 11], classes=[2, 7])
    edm_sampler(net, latents, labels, generators=gens, settings=_settings("fid", num_steps=2),
                callback=teacher.append)
    gens, latents, labels = _draw([3, 11], classes=[2, 7])
    out = dmd2_generate(net, latents, labels, callback=student.append)
    (first, *_), (only,) = teacher, student
    assert first["sigma"] == only["sigma"] == 80.0 and only["num_steps"] == 1 and only["stage"] == "generator"
    assert torch.equal(first["x"].float(), only["x"]) and torch.equal(only["x"], latents * 80)
    assert torch.equal(first["denoised"].float(), out) and out.dtype == torch.float32


def test_batch_of_seeds_equals_each_seed_alone_dmd2(net):
    sigmas = edm_sigmas(3)  # [80, t_1, 0.002, 0]: three generator calls; the trailing 0 is ignored
    gens, latents, labels = _draw([5, 9])
    one = dmd2_generate(per_image, latents, labels)
    few = dmd2_few_step(per_image, latents, labels, sigmas=sigmas, generators=gens)
    for row, seed in enumerate([5, 9]):
        gens, latents, labels = _draw([seed])
        assert torch.equal(one[row:row + 1], dmd2_generate(per_image, latents, labels))
        assert torch.equal(few[row:row + 1], dmd2_few_step(per_image, latents, labels, sigmas=sigmas, generators=gens))
    gens, latents, labels = _draw([5, 9])
    net_few = dmd2_few_step(net, latents, labels, sigmas=sigmas, generators=gens)
    gens, latents, labels = _draw([9])
    torch.testing.assert_close(net_few[1:], dmd2_few_step(net, latents, labels, sigmas=sigmas, generators=gens),
                               rtol=1e-3, atol=1e-3)


def test_few_step_renoises_the_estimate_from_each_seeds_stream():
    calls = []

    def G(x, sigma, labels):
        return torch.tanh(x / sigma) + 0.1

    gens, latents, _ = _draw([6, 7], shape=(2, 2, 2))
    out = dmd2_few_step(G, latents, None, sigmas=[80.0, 4.0, 0.5, 0.0], generators=gens, callback=calls.append)
    assert [c["sigma"] for c in calls] == [80.0, 4.0, 0.5] and [c["sigma_next"] for c in calls] == [4.0, 0.5, 0.0]
    assert torch.equal(calls[0]["x"], latents * 80) and torch.equal(out, calls[-1]["denoised"])
    for row, seed in enumerate([6, 7]):
        ref = torch.Generator().manual_seed(seed)
        torch.randn((2, 2, 2), generator=ref)
        torch.randint(10, size=[], generator=ref)
        for k in (1, 2):
            eps = torch.randn((2, 2, 2), generator=ref)
            expected = calls[k - 1]["denoised"][row] + calls[k]["sigma"] * eps
            assert torch.equal(calls[k]["x"][row], expected)
        assert torch.equal(gens[row].get_state(), ref.get_state())
    assert torch.equal(dmd2_few_step(G, latents, None, sigmas=[80.0]), dmd2_generate(G, latents, None))
    with pytest.raises(ValueError, match="generators"):
        dmd2_few_step(G, latents, None, sigmas=[80.0, 1.0])
    with pytest.raises(ValueError, match="positive sigmas"):
        dmd2_few_step(G, latents, None, sigmas=[0.0])


# -- images ---------------------------------------------------------------------------------------

def test_edm_and_dmd2_quantise_their_own_way():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0, (100.9 - 128) / 127.5], dtype=torch.float64).reshape(1, 1, 2, 3)
    assert edm_to_uint8(x).ravel().tolist() == [0, 0, 128, 255, 255, 100]  # -1 -> 0.5 -> 0; truncation
    assert dmd2_to_uint8(x).ravel().tolist() == [0, 0, 127, 255, 255, 100]  # 0 -> 127.5 -> 127
    rgb = torch.zeros(2, 3, 4, 5)
    rgb[:, 0] = 1
    out = edm_to_uint8(rgb)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == (2, 4, 5, 3)
    assert (out[..., 0] == 255).all() and (out[..., 1] == 128).all()
    assert dmd2_to_uint8(rgb.numpy()).shape == (2, 4, 5, 3)
    with pytest.raises(ValueError):
        edm_to_uint8(torch.zeros(3, 4, 4))


def test_to_pil():
    images = to_pil(edm_to_uint8(torch.zeros(2, 3, 4, 5)))
    assert len(images) == 2 and images[0].mode == "RGB" and images[0].size == (5, 4)
    assert images[0].getpixel((0, 0)) == (128, 128, 128)
    grey = to_pil(dmd2_to_uint8(torch.ones(1, 1, 4, 4)))
    assert grey[0].mode == "L" and grey[0].getpixel((1, 1)) == 255
    with pytest.raises(ValueError):
        to_pil(np.zeros((1, 4, 4, 3), dtype=np.float32))
