"""Networks and samplers: torch only, no app, dataframe or UMAP code below this line."""

from visualizer.models.config import DIGITS32_KWARGS, IMAGENET64_KWARGS, infer_kwargs
from visualizer.models.networks import DhariwalUNet, EDMPrecond, UNetBlock

__all__ = ["DIGITS32_KWARGS", "IMAGENET64_KWARGS", "DhariwalUNet", "EDMPrecond", "UNetBlock", "infer_kwargs"]

from visualizer.models.images import dmd2_to_uint8, edm_to_uint8, to_pil  # noqa: E402
from visualizer.models.sampling import (  # noqa: E402
    HeunSettings,
    dmd2_few_step,
    dmd2_generate,
    edm_sampler,
    edm_sigmas,
)
from visualizer.models.seeding import (  # noqa: E402
    draw_latents_and_classes,
    make_generators,
    one_hot,
    randn_like_per_seed,
)

__all__ += [
    "HeunSettings", "dmd2_few_step", "dmd2_generate", "dmd2_to_uint8", "draw_latents_and_classes",
    "edm_sampler", "edm_sigmas", "edm_to_uint8", "make_generators", "one_hot", "randn_like_per_seed", "to_pil",
]
