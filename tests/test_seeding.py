"""Per-seed streams: each image's latent, class and noise come from its own generator, in the reference order."""

import pytest
import torch

from visualizer.models.seeding import draw_latents_and_classes, make_generators, one_hot, randn_like_per_seed

SHAPE = (3, 4, 4)


def _reference_draws(seed: int, label_dim: int = 10):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(SHAPE, generator=g)
    c = torch.randint(label_dim, size=[], generator=g)
    return g, z, c


def test_generators_are_seeded_modulo_2_32_on_the_device():
    a, b, c = make_generators([5, 5 + 2**32, -1], "cpu")
    assert a.initial_seed() == b.initial_seed() == 5 and c.initial_seed() == 2**32 - 1
    assert a.device == torch.device("cpu")
    assert make_generators([], None) == []


def test_latent_then_class_per_generator():
    latents, classes = draw_latents_and_classes(make_generators([3, 11]), SHAPE, 10)
    assert latents.dtype == torch.float32 and latents.shape == (2, *SHAPE)
    assert classes.dtype == torch.int64 and classes.shape == (2,)
    for row, seed in enumerate([3, 11]):
        _, z, c = _reference_draws(seed)
        assert torch.equal(latents[row], z) and classes[row] == c


def test_forced_class_still_consumes_the_class_draw():
    free_gens, forced_gens = make_generators([7, 8]), make_generators([7, 8])
    free_z, _ = draw_latents_and_classes(free_gens, SHAPE, 10)
    forced_z, forced_c = draw_latents_and_classes(forced_gens, SHAPE, 10, class_labels=[4, 9])
    assert torch.equal(free_z, forced_z) and forced_c.tolist() == [4, 9]
    for free, forced in zip(free_gens, forced_gens, strict=True):
        assert torch.equal(free.get_state(), forced.get_state())
    _, one = draw_latents_and_classes(make_generators([1, 2, 3]), SHAPE, 10, class_labels=6)
    assert one.tolist() == [6, 6, 6]


def test_bad_forced_classes_are_refused():
    with pytest.raises(ValueError, match="one per seed"):
        draw_latents_and_classes(make_generators([1, 2, 3]), SHAPE, 10, class_labels=[1, 2])
    with pytest.raises(ValueError, match="outside"):
        draw_latents_and_classes(make_generators([1]), SHAPE, 10, class_labels=10)


def test_unconditional_draws_no_class():
    gens = make_generators([2])
    latents, classes = draw_latents_and_classes(gens, SHAPE, 0)
    g = torch.Generator().manual_seed(2)
    assert torch.equal(latents[0], torch.randn(SHAPE, generator=g)) and classes.tolist() == [0]
    assert torch.equal(gens[0].get_state(), g.get_state())


def test_noise_per_seed_in_the_requested_dtype():
    gens = make_generators([3, 11])
    draw_latents_and_classes(gens, SHAPE, 10)
    eps = randn_like_per_seed(gens, torch.zeros(2, *SHAPE))
    assert eps.dtype == torch.float64 and eps.shape == (2, *SHAPE)
    g, _, _ = _reference_draws(11)
    assert torch.equal(eps[1], torch.randn(SHAPE, generator=g, dtype=torch.float64))
    assert randn_like_per_seed(gens, eps, dtype=torch.float32).dtype == torch.float32
    with pytest.raises(ValueError, match="generators for a batch"):
        randn_like_per_seed(gens, torch.zeros(3, *SHAPE))


def test_one_hot():
    y = one_hot(torch.tensor([2, 0]), 4, "cpu")
    assert y.dtype == torch.float32 and y.tolist() == [[0, 0, 1, 0], [1, 0, 0, 0]]
    assert one_hot([3], 5).shape == (1, 5)
