"""Pieces shared by the demo's training scripts: architectures, the EDM loss, the EMA, the sigma table, budgets,
and the training of the digit classifier that judges the samples (`visualizer.digits.classifier`).

Written from the EDM and DMD2 papers' recipes (see the project's facts file, section 7); torch only.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from visualizer.digits.classifier import CLASSIFIER_FILE, DigitClassifier
from visualizer.digits.dataset import IMG_RESOLUTION, NUM_CLASSES, DigitsSplit
from visualizer.models.config import DIGITS32_KWARGS
from visualizer.models.networks import EDMPrecond, UNetBlock

# "demo": the shipped pair's architecture (visualizer.models.config.DIGITS32_KWARGS, 12.3 MB as float32); a
# batch-1 forward takes about 18 ms wall / 38 ms CPU time on 2 CPU cores, so an 18-step Heun teacher (35
# evaluations) renders in well under 3 s and the one-step student in well under 300 ms. "tiny", the same
# shape made smaller, exists for smoke tests of the training code only.
ARCHITECTURES: dict[str, dict] = {
    "demo": DIGITS32_KWARGS,
    "tiny": dict(DIGITS32_KWARGS, model_channels=16, channel_mult=[1, 2], channel_mult_emb=2, num_blocks=1,
                 attn_resolutions=[]),
}
assert (DIGITS32_KWARGS["img_resolution"], DIGITS32_KWARGS["label_dim"]) == (IMG_RESOLUTION, NUM_CLASSES)

P_MEAN, P_STD = -1.2, 1.2  # EDM's log-normal training distribution of sigma


def one_hot(labels: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    return F.one_hot(labels, num_classes).to(torch.float32)


def edm_loss(net: torch.nn.Module, images: torch.Tensor, onehot: torch.Tensor, generator: torch.Generator,
             sigma_data: float = 0.5) -> torch.Tensor:
    """Mean over pixels and batch of lambda(sigma) (D(y + sigma eps, sigma) - y)^2, sigma = exp(N(-1.2, 1.2))."""
    b = images.shape[0]
    rnd = torch.randn(b, generator=generator, device=images.device)
    sigma = (rnd * P_STD + P_MEAN).exp().reshape(-1, 1, 1, 1)
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    noise = torch.randn(images.shape, generator=generator, device=images.device) * sigma
    denoised = net(images + noise, sigma.flatten(), onehot)
    return (weight * (denoised - images) ** 2).mean()


@torch.no_grad()
def ema_update(ema: torch.nn.Module, net: torch.nn.Module, batch: int, images_seen: int, halflife_kimg: float) -> float:
    """EDM's EMA: halflife in images, ramped as min(halflife, 5% of images seen); returns beta."""
    halflife_nimg = min(halflife_kimg * 1000, images_seen * 0.05)
    beta = 0.5 ** (batch / max(halflife_nimg, 1e-8))
    ema_params = [p for p in ema.parameters()]
    net_params = [p.detach() for p in net.parameters()]
    torch._foreach_lerp_(ema_params, net_params, 1 - beta)
    return beta


def karras_sigmas(n: int = 1000, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                  device: str | torch.device = "cpu") -> torch.Tensor:
    """Ascending Karras sigmas, index 0 = sigma_min (DMD2's table); float32."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    sigmas = (sigma_min ** (1 / rho) + ramp * (sigma_max ** (1 / rho) - sigma_min ** (1 / rho))) ** rho
    return sigmas.to(device=device, dtype=torch.float32)


def cuda_graphed(net: EDMPrecond, batch: int, device: torch.device) -> EDMPrecond:
    """`net` with its forward (and backward) replayed as CUDA graphs for inputs of exactly this batch size.

    Why: these networks are tiny, so eager training is bound by the CPU launching ~3000 kernels a
    step (measured on an H200 host: about 85 ms per step at batch 64 and 91 ms at 512). The graphs
    remove most of that cost: the teacher then trains at 48 ms per step at batch 512 (10.6 k
    images/s). Calls must pass (x [B, C, H, W], sigma [B], one-hot labels [B, L]) as tensors,
    positionally. Outputs live in the graph's static memory: use each one before the next call of
    the same network. Graph after any deepcopy of `net` (the forward method is replaced in place).
    """
    # The graphs' warm-up runs on a side stream, so the first real backward meets AccumulateGrad nodes made
    # there and warns once about a stream mismatch; the optimiser step is not captured, so it is harmless.
    quiet = getattr(torch.autograd.graph, "set_warn_on_accumulate_grad_stream_mismatch", None)
    if quiet is not None:
        quiet(False)
    shape = (batch, net.img_channels, net.img_resolution, net.img_resolution)
    sample = (torch.randn(shape, device=device), torch.ones(batch, device=device),
              torch.zeros(batch, net.label_dim, device=device))
    return torch.cuda.make_graphed_callables(net, sample, num_warmup_iters=3)


def adam_kwargs(device: torch.device) -> dict:
    """The fused (single-kernel) Adam/AdamW step on CUDA: fewer launches in a launch-bound loop."""
    return dict(fused=True) if device.type == "cuda" else {}


def set_dropout(net: torch.nn.Module, p: float) -> None:
    for m in net.modules():
        if isinstance(m, UNetBlock):
            m.dropout = p


def count_parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def build_network(arch: str, dropout: float | None = None) -> EDMPrecond:
    kwargs = dict(ARCHITECTURES[arch])
    if dropout is not None:
        kwargs["dropout"] = dropout
    return EDMPrecond(**kwargs)


def setup_cuda(device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({torch.get_num_threads()} threads)"


class Budget:
    """Wall-clock budget counted from construction (so start-up and compilation count too)."""

    def __init__(self, minutes: float, reserve_seconds: float = 0.0):
        self.start = time.monotonic()
        self.deadline = self.start + max(minutes * 60 - reserve_seconds, 0.0)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline


def write_json(path: str | Path, data: dict) -> None:
    """Strict JSON (infinities as strings), written under a temporary name and renamed."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_plain(data), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return _plain(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


# -- the digit classifier ----------------------------------------------------------------------------

def train_classifier(train: DigitsSplit, steps: int = 1500, batch: int = 256, lr: float = 3e-3, seed: int = 0,
                     device: str | torch.device = "cpu", log_every: int = 250) -> DigitClassifier:
    """Adam with a cosine decay on freshly rendered batches (random colours and poses every step)."""
    torch.manual_seed(seed)
    net = DigitClassifier().to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator(device).manual_seed(seed)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        images, labels = train.batch(batch, g)
        loss = F.cross_entropy(net(images), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"classifier step {step:5d}  loss {loss.item():.4f}", flush=True)
    return net.eval()


def save_classifier(net: DigitClassifier, path: str | Path = CLASSIFIER_FILE) -> None:
    """State dict only (torch.save), written to a temporary name and renamed, so no half-written file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, tmp)
    tmp.replace(path)
