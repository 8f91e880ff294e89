"""Samplers as plain functions: the EDM Heun sampler (Karras et al. 2022, Algorithm 2) and DMD2's generator.

`D` is any callable ``D(x, sigma, class_labels) -> denoised`` (an `EDMPrecond`, or an analytic
denoiser in tests). The noise schedule is a separate function, and every denoiser evaluation is
reported to an optional `callback(info)` right after it runs, so progress bars, previews and
activation capture live outside the samplers. `info` holds:

    step        index i of the sampler step (0-based)
    stage       'euler' (first evaluation of a step), 'heun' (the 2nd-order correction) or 'generator' (DMD2)
    sigma       float, the noise level this evaluation saw (t_hat for 'euler', t_{i+1} for 'heun')
    sigma_next  float, the level the step moves to (t_{i+1}; 0 after the last)
    x           the denoiser's input at `sigma`
    denoised    the denoiser's output
    num_steps   N, the number of sampler steps

All noise comes from per-image generators (see `seeding`), so a batch of seeds gives the same
images as each seed alone, as far as the denoiser itself is batch-invariant (CPU and GPU
convolution kernels chosen by batch shape can differ in the last bits).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from visualizer.models.device import sampler_dtype
from visualizer.models.seeding import randn_like_per_seed

__all__ = [
    "SIGMA_MAX", "Evaluation", "GeneratorSettings", "HeunSettings", "dmd2_few_step", "dmd2_generate",
    "edm_sampler", "edm_sigmas", "evaluations",
]

# The highest noise level of EDM's schedule: the teacher's first input and the DMD2 generator's only one.
SIGMA_MAX = 80.0

Denoiser = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]
Callback = Callable[[dict], None]


def edm_sigmas(num_steps: int, sigma_min: float = 0.002, sigma_max: float = SIGMA_MAX, rho: float = 7.0,
               device: str | torch.device | None = None) -> torch.Tensor:
    """Karras et al. (2022) eq. 5, t_0 = sigma_max ... t_{N-1} = sigma_min, then t_N = 0: N+1 values.

    Computed in float64 as the reference sampler does (float32 on MPS, which has no float64), in the
    formula's own order of operations. N = 1 is [sigma_max, 0] (the formula would divide by N - 1 = 0).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    device = torch.device("cpu" if device is None else device)
    i = torch.arange(num_steps, dtype=torch.float64)
    if num_steps == 1:
        t = torch.tensor([float(sigma_max)], dtype=torch.float64)
    else:
        t = (sigma_max ** (1 / rho) + i / (num_steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([t, t.new_zeros(1)]).to(device=device, dtype=sampler_dtype(device))


@dataclasses.dataclass(frozen=True)
class HeunSettings:
    """Algorithm 2's knobs; the defaults are the deterministic sampler (no churn) with EDM's schedule."""

    num_steps: int = 256           # N; NFE = 2N - 1
    sigma_min: float = 0.002       # t_{N-1}
    sigma_max: float = SIGMA_MAX   # t_0
    rho: float = 7.0               # schedule curvature (eq. 5)
    S_churn: float = 0.0           # total churn; gamma_i = min(S_churn / N, sqrt(2) - 1) inside [S_min, S_max]
    S_min: float = 0.0             # churn only where S_min <= t_i <= S_max
    S_max: float = float("inf")
    S_noise: float = 1.0           # churn noise scale (slightly > 1 offsets detail loss)

    def __post_init__(self):
        if int(self.num_steps) != self.num_steps or self.num_steps < 1:
            raise ValueError(f"num_steps must be a positive integer, got {self.num_steps}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min} and {self.sigma_max}")
        if self.S_churn < 0 or self.S_noise < 0:
            raise ValueError("S_churn and S_noise must be non-negative")

    @property
    def nfe(self) -> int:
        return 2 * self.num_steps - 1

    @property
    def stochastic(self) -> bool:
        return self.S_churn > 0

    def times(self) -> tuple[list[float], list[float]]:
        """(t_0..t_N, t_hat_0..t_hat_{N-1}) as float64 Python floats: where each step starts and, after
        churn, where its first evaluation happens (t_hat_i = t_i + gamma_i t_i)."""
        N = self.num_steps
        t_steps = edm_sigmas(N, self.sigma_min, self.sigma_max, self.rho, device="cpu").tolist()
        gammas = [min(self.S_churn / N, math.sqrt(2) - 1) if self.S_min <= t <= self.S_max else 0.0
                  for t in t_steps[:-1]]
        return t_steps, [t + g * t for t, g in zip(t_steps, gammas, strict=False)]


@dataclasses.dataclass(frozen=True)
class GeneratorSettings:
    """DMD2's generator: one step at sigma_max, or our few-step variant re-noising along a Karras schedule."""

    num_steps: int = 1
    sigma_max: float = SIGMA_MAX

    def __post_init__(self):
        if int(self.num_steps) != self.num_steps or self.num_steps < 1:
            raise ValueError(f"num_steps must be a positive integer, got {self.num_steps}")

    @property
    def nfe(self) -> int:
        return self.num_steps

    def levels(self) -> list[float]:
        """The K noise levels the generator runs at, as float32 values (what the network sees)."""
        return edm_sigmas(self.num_steps, sigma_max=self.sigma_max)[:-1].float().tolist()


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One network call of a sampler run: its sampler step, its stage and the sigma it sees."""

    step: int
    stage: str      # 'euler', 'heun' or 'generator'
    sigma: float


def evaluations(settings: HeunSettings | GeneratorSettings) -> list[Evaluation]:
    """Every network evaluation the sampler makes with `settings`, in order, known before it runs.

    Tracing needs this to tell, inside a network call, which step and stage it belongs to, so that
    edits restricted to steps or sigmas apply to the right calls.
    """
    if isinstance(settings, GeneratorSettings):
        return [Evaluation(k, "generator", s) for k, s in enumerate(settings.levels())]
    t_steps, t_hats = settings.times()
    out = []
    for i, t_hat in enumerate(t_hats):
        out.append(Evaluation(i, "euler", t_hat))
        if i < settings.num_steps - 1:
            out.append(Evaluation(i, "heun", t_steps[i + 1]))
    return out


def _denoise(net: Denoiser, x: torch.Tensor, sigma: float, class_labels: torch.Tensor | None) -> torch.Tensor:
    """D(x, sigma) as a tensor of x's dtype; EDMPrecond computes in float32 and casts back here.

    sigma goes in as a host scalar tensor: EDMPrecond fills it in on the device, and hooks read it
    without waiting for the GPU, so a run on CUDA never stalls between network evaluations.
    """
    return net(x, torch.tensor(sigma, dtype=x.dtype), class_labels).to(x.dtype)


@torch.no_grad()
def edm_sampler(
    net: Denoiser,
    latents: torch.Tensor,
    class_labels: torch.Tensor | None = None,
    *,
    generators: Sequence[torch.Generator],
    settings: HeunSettings,
    callback: Callback | None = None,
    disable_progress: bool = True,
) -> torch.Tensor:
    """EDM's stochastic Heun sampler, Algorithm 2 of Karras et al. 2022; returns x_N (float64, float32 on MPS).

    `latents` are the per-seed float32 draws [B, C, H, W]; `class_labels` one-hot [B, label_dim] or
    None; `generators` the same per-image generators the latents came from, positioned after the
    class draw. The churn noise is drawn at every step, also where gamma_i = 0, because the
    reference does so and its images depend on the exact position of each stream.
    """
    s = settings
    N = s.num_steps
    dtype = sampler_dtype(latents.device)
    t_steps, t_hats = s.times()   # Python floats are float64
    x = latents.to(dtype) * t_steps[0]

    for i in tqdm(range(N), disable=disable_progress, desc="EDM Heun", unit="step"):
        t_cur, t_next, t_hat = t_steps[i], t_steps[i + 1], t_hats[i]

        # Churn: raise the noise level to t_hat = t_i + gamma_i t_i by adding fresh noise.
        eps = randn_like_per_seed(generators, x, dtype=dtype)
        x_hat = x + math.sqrt(t_hat**2 - t_cur**2) * s.S_noise * eps

        # Euler step from t_hat to t_{i+1}.
        denoised = _denoise(net, x_hat, t_hat, class_labels)
        if callback is not None:
            callback(dict(step=i, stage="euler", sigma=t_hat, sigma_next=t_next, x=x_hat, denoised=denoised,
                          num_steps=N))
        d_cur = (x_hat - denoised) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur

        # Heun's 2nd-order correction, except on the last step (t_N = 0).
        if i < N - 1:
            denoised = _denoise(net, x_next, t_next, class_labels)
            if callback is not None:
                callback(dict(step=i, stage="heun", sigma=t_next, sigma_next=t_next, x=x_next, denoised=denoised,
                              num_steps=N))
            d_prime = (x_next - denoised) / t_next
            x_next = x_hat + (t_next - t_hat) * (d_cur + d_prime) / 2
        x = x_next
    return x


def _sigma_list(sigmas: torch.Tensor | Sequence[float]) -> list[float]:
    values = [float(v) for v in (sigmas.tolist() if isinstance(sigmas, torch.Tensor) else sigmas)]
    while values and values[-1] == 0:  # an edm_sigmas schedule ends with t_N = 0; a generator is never called at 0
        values.pop()
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"DMD2 needs one or more positive sigmas, got {values}")
    return values


@torch.no_grad()
def dmd2_few_step(
    net: Denoiser,
    latents: torch.Tensor,
    class_labels: torch.Tensor | None,
    *,
    sigmas: torch.Tensor | Sequence[float],
    generators: Sequence[torch.Generator] | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """DMD2's generator run at K noise levels: x0 = G(z s_0, s_0), then x0 = G(x0 + s_k eps, s_k) for k >= 1.

    Our definition (DMD2's ImageNet model is one-step only and no reference exists for this
    variant): the prediction is re-noised to each next level with float32 noise from each image's
    generator, continuing the seed's stream after its latent and class draws. A trailing 0 in
    `sigmas` (as `edm_sigmas` ends) is ignored. One sigma is the one-step generator; returns float32.
    """
    levels = _sigma_list(sigmas)
    if len(levels) > 1 and generators is None:
        raise ValueError("dmd2_few_step needs the per-seed generators to re-noise between steps")
    K = len(levels)

    def step(k: int, x: torch.Tensor) -> torch.Tensor:
        x0 = net(x, torch.tensor(levels[k], dtype=torch.float32), class_labels).to(torch.float32)
        if callback is not None:
            callback(dict(step=k, stage="generator", sigma=levels[k], sigma_next=levels[k + 1] if k + 1 < K else 0.0,
                          x=x, denoised=x0, num_steps=K))
        return x0

    x0 = step(0, latents.to(torch.float32) * levels[0])
    for k in range(1, K):
        x0 = step(k, x0 + levels[k] * randn_like_per_seed(generators, x0, dtype=torch.float32))
    return x0


def dmd2_generate(
    net: Denoiser,
    latents: torch.Tensor,
    class_labels: torch.Tensor | None,
    *,
    sigma: float = SIGMA_MAX,
    callback: Callback | None = None,
) -> torch.Tensor:
    """DMD2's one-step image G(z * 80, 80, one_hot(label)), about [-1, 1] (float32).

    With the teacher's per-seed latents, G's input is exactly the EDM sampler's first denoiser
    input for the same seed (no churn at t_0 = 80 > S_max), so their activations compare one to one.
    """
    return dmd2_few_step(net, latents, class_labels, sigmas=[sigma], callback=callback)
