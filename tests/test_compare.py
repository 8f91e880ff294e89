"""Similarity of two activations: cosine and linear CKA with known answers, and all layers of two captures at once."""

import math

import pytest
import torch
from nets import tiny_kwargs

from visualizer.errors import UserError
from visualizer.metrics.compare import compare_all, cosine_similarity, difference_map, linear_cka
from visualizer.models import EDMPrecond
from visualizer.trace.capture import capture


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def rotate_channels(a, q):
    return torch.einsum("dc,bchw->bdhw", q, a)


def reference_cka(a, b):
    """The formula as written, one sample [C, H, W], in float64."""
    x = a.flatten(1).T.double()
    y = b.flatten(1).T.double()
    x, y = x - x.mean(0), y - y.mean(0)
    return (torch.linalg.norm(y.T @ x) ** 2 / (torch.linalg.norm(x.T @ x) * torch.linalg.norm(y.T @ y))).item()


def test_cosine_of_scaled_and_negated_copies():
    a = randn(3, 4, 5, 5)
    cos = cosine_similarity(a, 2 * a)
    assert cos.shape == (3,) and cos.dtype == torch.float64
    torch.testing.assert_close(cos, torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(cosine_similarity(a, -a), -torch.ones(3, dtype=torch.float64))
    assert cosine_similarity(a[0], a[0]).shape == ()   # unbatched in, unbatched out
    e0, e1 = torch.zeros(1, 2, 1, 1), torch.zeros(1, 2, 1, 1)
    e0[0, 0], e1[0, 1] = 1, 1
    assert cosine_similarity(e0, e1).item() == 0.0
    with pytest.raises(UserError, match="one shape"):
        cosine_similarity(a, a[:, :2])


def test_cka_of_a_representation_with_itself_is_one():
    a = randn(2, 6, 8, 8)
    torch.testing.assert_close(linear_cka(a, a), torch.ones(2, dtype=torch.float64))


def test_cka_ignores_orthogonal_transforms_and_scale_of_the_channels():
    a = randn(2, 6, 8, 8)
    q, _ = torch.linalg.qr(randn(6, 6, seed=1))
    torch.testing.assert_close(linear_cka(a, rotate_channels(a, q)), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(linear_cka(a, 3.7 * a), torch.ones(2, dtype=torch.float64))
    b = randn(2, 4, 8, 8, seed=2)
    torch.testing.assert_close(linear_cka(rotate_channels(a, q) * 0.1, b), linear_cka(a, b))


def test_cka_of_independent_features_is_small_and_works_across_widths():
    a, b = randn(2, 8, 32, 32, seed=3), randn(2, 5, 32, 32, seed=4)
    cka = linear_cka(a, b)
    assert cka.shape == (2,) and (cka < 0.05).all() and (cka >= 0).all()
    assert linear_cka(a, b)[1].item() == pytest.approx(reference_cka(a[1], b[1]), rel=1e-9)


def test_cka_gram_route_for_few_positions_matches_the_formula():
    a, b = randn(1, 40, 3, 3, seed=5), randn(1, 24, 3, 3, seed=6)     # 9 positions < 40 channels
    assert linear_cka(a, b).item() == pytest.approx(reference_cka(a[0], b[0]), rel=1e-9)
    assert linear_cka(a[0], a[0]).item() == pytest.approx(1.0, rel=1e-12)
    assert math.isnan(linear_cka(torch.ones(1, 2, 3, 3), a[:, :2]).item())  # constant: undefined
    with pytest.raises(UserError, match="spatial size"):
        linear_cka(a, randn(1, 24, 4, 4))


def test_difference_map_is_the_reduction_of_the_difference():
    a = torch.zeros(1, 2, 1, 2)
    b = torch.tensor([[[[3.0, 0.0]], [[4.0, -1.0]]]])              # position 0: (3, 4); position 1: (0, -1)
    assert difference_map(a, b).tolist() == [[[5.0, 1.0]]]
    assert difference_map(b, b).abs().max() == 0
    assert difference_map(a, b, "channel", index=1).tolist() == [[[-4.0, 1.0]]]


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return EDMPrecond(**tiny_kwargs()).eval()


def test_compare_all_scores_every_common_layer(net):
    labels = torch.eye(10)[:2]
    x, y = randn(2, 3, 16, 16, seed=7), randn(2, 3, 16, 16, seed=8)   # sigma 1: the input matters
    with torch.no_grad():
        with capture(net, ["midblock", "enc.16x16_block0", "decoder_block_6"]) as a:
            net(x, 1.0, labels)
        with capture(net, ["enc.16x16_block0", "midblock"]) as same:
            net(x, 1.0, labels)
        with capture(net, ["midblock"]) as other:
            net(y, 1.0, labels)
    scores = compare_all(a, same)
    assert list(scores) == ["midblock", "enc.16x16_block0"]        # capture_a's order, common layers only
    for s in scores.values():
        assert s["cosine"] == pytest.approx(1.0) and s["cka"] == pytest.approx(1.0)
    differ = compare_all(a, other)["midblock"]
    assert differ["cosine"] < 0.9 and differ["cka"] < 0.9
    plain = compare_all({"midblock": a.tensor("midblock")}, {"midblock": other.tensor("midblock")})
    assert plain == {"midblock": differ}
    with torch.no_grad(), capture(net, ["midblock"], reduce="l2") as reduced:
        net(x, 1.0, labels)
    with pytest.raises(UserError, match="keep='full'"):
        compare_all(a, reduced)
