"""Reductions on crafted activations whose answers are worked out by hand."""

import functools

import pytest
import torch

from visualizer.errors import UserError
from visualizer.trace.reductions import (
    REDUCTIONS,
    channel_l2,
    mean_abs,
    pca_rgb,
    reduce,
    single_channel,
    topk_energy,
)


def pixel(*channels):
    """One sample, one position: [1, C, 1, 1]."""
    return torch.tensor(channels, dtype=torch.float32).reshape(1, -1, 1, 1)


def test_l2_is_the_norm_over_channels():
    assert channel_l2(pixel(3, 4)).tolist() == [[[5.0]]]
    a = torch.stack([torch.full((2, 2), 1.0), torch.full((2, 2), -2.0), torch.full((2, 2), 2.0)])  # [3, 2, 2]
    torch.testing.assert_close(channel_l2(a), torch.full((2, 2), 3.0))  # unbatched in, unbatched out


def test_mean_abs_single_channel_and_float32_output():
    assert mean_abs(pixel(-3, 4)).tolist() == [[[3.5]]]
    a = pixel(-3, 4, 7).half()
    assert single_channel(a, 1).dtype == torch.float32 and single_channel(a, 0).item() == -3.0
    assert single_channel(a, -1).item() == 7.0
    with pytest.raises(UserError, match="3 channels"):
        single_channel(a, 3)


def test_topk_averages_the_loudest_channels_per_sample():
    ones = torch.ones(2, 2)
    first = torch.stack([1 * ones, 10 * ones, -5 * ones])   # energies 4, 400, 100 -> channels 1, 2
    second = torch.stack([9 * ones, 1 * ones, 2 * ones])    # energies 324, 4, 16 -> channels 0, 2
    a = torch.stack([first, second])
    out = topk_energy(a, 2)
    assert out.shape == (2, 2, 2)
    torch.testing.assert_close(out[0], torch.full((2, 2), 7.5))
    torch.testing.assert_close(out[1], torch.full((2, 2), 5.5))
    torch.testing.assert_close(topk_energy(a, 99), mean_abs(a))  # k beyond C: every channel
    with pytest.raises(UserError):
        topk_energy(a, 0)


def grid_patterns():
    """Three centred, mutually orthogonal patterns on a 4x4 grid."""
    y, x = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    u, v = x - 1.5, y - 1.5
    return u, v, u * v


def normalised(t):
    return (t - t.min()) / (t.max() - t.min())


def test_pca_rgb_recovers_axis_aligned_components_in_order_with_fixed_sign():
    u, v, w = grid_patterns()
    # variances 100*1.25 > 9*1.25 > 1*1.5625, plus an offset per channel that centring removes
    a = torch.stack([-10 * u + 7, 3 * v - 2, w + 100])[None]
    rgb = pca_rgb(a)
    assert rgb.shape == (1, 3, 4, 4) and rgb.dtype == torch.float32
    assert rgb.min() >= 0 and rgb.max() <= 1
    # The loading of component 1 is -e0, flipped to +e0, so red is the centred channel 0: -10u.
    torch.testing.assert_close(rgb[0, 0], normalised(-u), atol=1e-5, rtol=0)
    torch.testing.assert_close(rgb[0, 1], normalised(v), atol=1e-5, rtol=0)
    torch.testing.assert_close(rgb[0, 2], normalised(w), atol=1e-5, rtol=0)


def test_pca_rgb_is_deterministic_under_sign_flips_and_per_sample():
    torch.manual_seed(0)
    a = torch.randn(2, 8, 5, 5)
    out = pca_rgb(a)
    # Flipping every channel flips every score, but the sign rule flips the loadings back.
    torch.testing.assert_close(pca_rgb(-a), 1 - out, atol=1e-4, rtol=0)
    torch.testing.assert_close(pca_rgb(a[1]), out[1], atol=1e-5, rtol=0)


def test_pca_rgb_fills_missing_components_with_zero():
    u, v, _ = grid_patterns()
    rgb = pca_rgb(torch.stack([u, v]))               # 2 channels: no third component
    assert rgb.shape == (3, 4, 4) and rgb[2].abs().max() == 0
    assert pca_rgb(torch.ones(1, 4, 3, 3)).abs().max() == 0  # constant: no variance at all


def test_reduce_dispatches_by_name():
    assert set(REDUCTIONS) == {"l2", "mean_abs", "channel", "topk", "pca_rgb"}
    a = pixel(3, 4)
    assert reduce("l2", a).item() == 5.0
    assert reduce("channel", a, index=1).item() == 4.0
    assert reduce("topk", a, k=1).item() == 4.0
    assert functools.partial(single_channel, index=0)(a).item() == 3.0
    with pytest.raises(UserError, match="valid names: l2, mean_abs"):
        reduce("max", a)
    with pytest.raises(ValueError, match="expected an activation"):
        channel_l2(torch.ones(4, 4))
