"""EDM's preconditioned ADM network (EDMPrecond around DhariwalUNet), written from the published facts.

Module and parameter names follow the official checkpoints exactly, so that the EDM ImageNet-64
teacher and the DMD2 student load with ``strict=True``. Layers cast their weights to the
activation dtype on the fly (as the official code does) so one float32 state dict serves
float32, float16 and bfloat16 compute.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class Linear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        bound = 1 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), b)


class Conv2d(nn.Module):
    """3x3/1x1 convolution with optional 2x resampling before it; kernel 0 means resample only."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, up: bool = False, down: bool = False):
        super().__init__()
        assert not (up and down)
        self.in_channels, self.out_channels, self.up, self.down = in_channels, out_channels, up, down
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel, kernel)) if kernel else None
        self.bias = nn.Parameter(torch.empty(out_channels)) if kernel else None
        if kernel:
            bound = 1 / math.sqrt(in_channels * kernel * kernel)
            nn.init.uniform_(self.weight, -bound, bound)
            nn.init.uniform_(self.bias, -bound, bound)
        # The 2x2 box filter is part of the official state dict, so it is a persistent buffer.
        self.register_buffer("resample_filter", torch.full((1, 1, 2, 2), 0.25) if (up or down) else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if self.up:  # nearest-neighbour x2: transposed conv with the filter times 4 (all ones)
            x = F.conv_transpose2d(x, (self.resample_filter * 4).to(x.dtype).tile(c, 1, 1, 1), groups=c, stride=2)
        if self.down:  # 2x2 average pool
            x = F.conv2d(x, self.resample_filter.to(x.dtype).tile(c, 1, 1, 1), groups=c, stride=2)
        if self.weight is not None:
            x = F.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype), padding=self.weight.shape[-1] // 2)
        return x


class GroupNorm(nn.Module):
    def __init__(self, num_channels: int, eps: float = 1e-5):
        super().__init__()
        self.num_groups, self.eps = min(32, num_channels // 4), eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


class PositionalEmbedding(nn.Module):
    """cos/sin features of c_noise at frequencies (1/10000)^(k/(C/2)), cosines first; no parameters."""

    def __init__(self, num_channels: int, max_positions: int = 10000):
        super().__init__()
        self.num_channels, self.max_positions = num_channels, max_positions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        freqs = (1 / self.max_positions) ** (torch.arange(half, dtype=torch.float32, device=x.device) / half)
        x = x.float().outer(freqs)
        return torch.cat([x.cos(), x.sin()], dim=1)


BlockRunner = Callable[[str, nn.Module, tuple[torch.Tensor, ...]], torch.Tensor]


def _call(name: str, block: nn.Module, args: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return block(*args)


def _zero_(module: nn.Module) -> nn.Module:
    """Residual branches start as the identity, which keeps fresh networks (the demo's) trainable."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class UNetBlock(nn.Module):
    """ADM residual block: adaptive GroupNorm scale/shift from the embedding, optional self-attention."""

    def __init__(
        self,
        in_channels: int,                # channels of the block input (after any skip concatenation)
        out_channels: int,               # channels of the block output
        emb_channels: int,               # width of the noise/label embedding
        up: bool = False,                # nearest x2 upsampling before conv0
        down: bool = False,              # 2x2 average pooling before conv0
        attention: bool = False,         # self-attention after the residual (if out_channels >= 64)
        channels_per_head: int = 64,     # heads = out_channels // channels_per_head
        dropout: float = 0.0,            # dropout before conv1
        eps: float = 1e-5,               # GroupNorm epsilon
    ):
        super().__init__()
        self.in_channels, self.out_channels, self.dropout = in_channels, out_channels, dropout
        self.num_heads = out_channels // channels_per_head if attention else 0
        self.norm0 = GroupNorm(in_channels, eps)
        self.conv0 = Conv2d(in_channels, out_channels, 3, up=up, down=down)
        self.affine = Linear(emb_channels, out_channels * 2)
        self.norm1 = GroupNorm(out_channels, eps)
        self.conv1 = _zero_(Conv2d(out_channels, out_channels, 3))
        self.skip = None
        if in_channels != out_channels or up or down:
            self.skip = Conv2d(in_channels, out_channels, 1 if in_channels != out_channels else 0, up=up, down=down)
        if self.num_heads:
            self.norm2 = GroupNorm(out_channels, eps)
            self.qkv = Conv2d(out_channels, out_channels * 3, 1)
            self.proj = _zero_(Conv2d(out_channels, out_channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        orig = x
        x = self.conv0(F.silu(self.norm0(x)))
        scale, shift = self.affine(emb)[:, :, None, None].to(x.dtype).chunk(2, dim=1)
        x = F.silu(torch.addcmul(shift, self.norm1(x), scale + 1))
        x = self.conv1(F.dropout(x, p=self.dropout, training=self.training))
        x = x + (self.skip(orig) if self.skip is not None else orig)
        if self.num_heads:
            n, c, h, w = x.shape
            heads = self.num_heads
            qkv = self.qkv(self.norm2(x)).reshape(n, heads, c // heads, 3, h * w)
            q, k, v = qkv.permute(3, 0, 1, 4, 2).contiguous().unbind(0)   # fused kernels need channels last
            # softmax(q^T k / sqrt(c/heads)) over keys, then v w^T. Given [batch, heads, tokens, channels],
            # SDPA picks a fused kernel (flash attention in fp16/bf16); 3-D input would fall back to
            # explicit float32 matrices, the largest cost of a batch-256 forward.
            a = F.scaled_dot_product_attention(q, k, v)
            x = self.proj(a.transpose(2, 3).reshape(n, c, h, w)) + x
        return x


class DhariwalUNet(nn.Module):
    """ADM U-Net (Dhariwal & Nichol 2021) as configured in EDM; encoder/decoder keyed '<res>x<res>_<kind>'."""

    def __init__(
        self,
        img_resolution: int,                       # input/output resolution
        in_channels: int,                          # image channels in
        out_channels: int,                         # image channels out
        label_dim: int = 0,                        # classes; 0 = unconditional
        augment_dim: int = 0,                      # augmentation labels (0 in every checkpoint we load)
        model_channels: int = 192,                 # base width
        channel_mult: list[int] = (1, 2, 3, 4),    # width multiplier per resolution level
        channel_mult_emb: int = 4,                 # embedding width = model_channels * this
        num_blocks: int = 3,                       # residual blocks per level
        attn_resolutions: list[int] = (32, 16, 8), # resolutions with self-attention
        dropout: float = 0.10,                     # dropout inside residual blocks
        label_dropout: float = 0.0,                # class-drop probability while training
    ):
        super().__init__()
        if augment_dim:
            raise ValueError("augment_dim > 0 is not supported (no EDM ImageNet or DMD2 checkpoint uses it)")
        self.img_resolution, self.label_dim, self.label_dropout = img_resolution, label_dim, label_dropout
        emb_channels = model_channels * channel_mult_emb
        block = dict(emb_channels=emb_channels, dropout=dropout)

        self.map_noise = PositionalEmbedding(model_channels)
        self.map_layer0 = Linear(model_channels, emb_channels)
        self.map_layer1 = Linear(emb_channels, emb_channels)
        self.map_label = Linear(label_dim, emb_channels, bias=False) if label_dim else None

        self.enc = nn.ModuleDict()
        cout = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                cout = model_channels * mult
                self.enc[f"{res}x{res}_conv"] = Conv2d(in_channels, cout, 3)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **block)
            for i in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_block{i}"] = UNetBlock(cin, cout, attention=res in attn_resolutions, **block)
        skips = [m.out_channels for m in self.enc.values()]

        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **block)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **block)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **block)
            for i in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                self.dec[f"{res}x{res}_block{i}"] = UNetBlock(cin, cout, attention=res in attn_resolutions, **block)
        self.out_norm = GroupNorm(cout)
        self.out_conv = _zero_(Conv2d(cout, out_channels, 3))

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
        """F(x): the embedding, the encoder and decoder with their skips, then out_conv(silu(out_norm(.)))."""
        return self.head(self.trunk(x, self.embedding(noise_labels, class_labels)))

    def embedding(self, noise_labels: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
        emb = self.map_noise(noise_labels)
        emb = self.map_layer1(F.silu(self.map_layer0(emb)))
        if self.map_label is not None:
            labels = class_labels
            if self.training and self.label_dropout:
                keep = torch.rand(labels.shape[0], 1, device=labels.device) >= self.label_dropout
                labels = labels * keep.to(labels.dtype)
            emb = emb + self.map_label(labels)
        return F.silu(emb)

    def trunk(self, x: torch.Tensor, emb: torch.Tensor, run: BlockRunner | None = None) -> torch.Tensor:
        """Encoder then decoder; every encoder output is a skip, concatenated where a block's width asks.

        `run(name, block, args)` calls each block; the default is the module call (hooks included).
        A fast path passes its own to call the blocks hook-free and keep or edit their outputs.
        """
        run = run or _call
        skips = []
        for name, block in self.enc.items():
            x = run(f"enc.{name}", block, (x,) if isinstance(block, Conv2d) else (x, emb))
            skips.append(x)
        for name, block in self.dec.items():
            if x.shape[1] != block.in_channels:
                x = torch.cat([x, skips.pop()], dim=1)
            x = run(f"dec.{name}", block, (x, emb))
        return x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_conv(F.silu(self.out_norm(x)))

    def block_names(self) -> list[str]:
        """Native names of the blocks `trunk` runs (the hookable layers), in the order they run."""
        return [f"enc.{k}" for k in self.enc] + [f"dec.{k}" for k in self.dec]


class EDMPrecond(nn.Module):
    """D(x, sigma) = c_skip x + c_out F(c_in x, ln(sigma)/4, labels), Karras et al. 2022, Table 1."""

    def __init__(
        self,
        img_resolution: int,               # image resolution
        img_channels: int,                 # image channels
        label_dim: int = 0,                # classes; 0 = unconditional
        use_fp16: bool = False,            # run the U-Net body in float16 on CUDA (official EDM setting)
        sigma_min: float = 0.0,            # lowest supported noise level
        sigma_max: float = float("inf"),   # highest supported noise level
        sigma_data: float = 0.5,           # expected standard deviation of the data
        model_type: str = "DhariwalUNet",  # only the ADM U-Net is implemented
        **model_kwargs,                    # passed on to DhariwalUNet
    ):
        super().__init__()
        if model_type != "DhariwalUNet":
            raise ValueError(f"model_type {model_type!r} is not supported; only 'DhariwalUNet' (ADM) is")
        self.img_resolution, self.img_channels, self.label_dim = img_resolution, img_channels, label_dim
        self.sigma_min, self.sigma_max, self.sigma_data = float(sigma_min), float(sigma_max), float(sigma_data)
        self.precision = "fp16" if use_fp16 else "fp32"
        self.init_kwargs = dict(
            img_resolution=img_resolution, img_channels=img_channels, label_dim=label_dim,
            sigma_min=self.sigma_min, sigma_max=self.sigma_max, sigma_data=self.sigma_data, **model_kwargs,
        )
        self.model = DhariwalUNet(img_resolution, img_channels, img_channels, label_dim=label_dim, **model_kwargs)
        # An optional runner for the U-Net body (acceleration.FastBody: compiled, CUDA graphs); None is eager.
        self.body: Callable[..., torch.Tensor] | None = None

    @property
    def use_fp16(self) -> bool:
        return self.precision == "fp16"

    def compute_dtype(self, device: torch.device) -> torch.dtype:
        """Reduced precision only where it is fast and supported: CUDA. CPU and MPS stay float32."""
        return PRECISIONS[self.precision] if device.type == "cuda" else torch.float32

    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor | float, class_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = x.to(torch.float32)
        sigma = _sigma_on(sigma, x.device).reshape(-1, 1, 1, 1)
        labels = None
        if self.label_dim:
            labels = (
                torch.zeros(1, self.label_dim, device=x.device)
                if class_labels is None
                else class_labels.to(torch.float32).reshape(-1, self.label_dim)
            )
        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1 / (sd**2 + sigma**2).sqrt()
        c_noise = sigma.log() / 4
        body = self.model if self.body is None else self.body
        F_x = body((c_in * x).to(self.compute_dtype(x.device)), c_noise.flatten(), labels)
        return c_skip * x + c_out * F_x.to(torch.float32)

    def cast_body_weights(self, device: torch.device) -> None:
        """Stores the U-Net's convolution and GroupNorm weights in the compute dtype once, instead of
        casting them at every call (which costs a kernel and a weight-sized copy per layer per call).

        The embedding path (Linear layers) stays float32 as the official code computes it, so the
        result is the same as casting on the fly. A no-op in float32.
        """
        dtype = self.compute_dtype(device)
        for m in self.model.modules():
            if isinstance(m, (Conv2d, GroupNorm)):
                m.to(dtype)


def _sigma_on(sigma: torch.Tensor | float, device: torch.device) -> torch.Tensor:
    """sigma as float32 on `device`; a number or a one-element host tensor is filled in on the device
    rather than copied, because a copy from pageable host memory waits for the GPU to drain."""
    if isinstance(sigma, torch.Tensor) and sigma.device == device:
        return sigma.to(torch.float32)
    host = torch.as_tensor(sigma, dtype=torch.float32)
    if host.numel() == 1 and device.type != "cpu":
        return torch.full(host.shape, float(host), dtype=torch.float32, device=device)
    return host.to(device)
