"""Distil the demo teacher into a one-step student with DMD2 (Yin et al. 2024) within a wall-clock budget.

Networks: real = the frozen teacher; fake score and generator both start as copies of it.
The generator maps z*80 at sigma 80 (uniform random class) to an image in one step.
Generator loss (every --gen-every iterations): distribution matching. x = G(z); sigma from the
1000-entry Karras table at an index uniform in [20, 980]; x_t = x + sigma eps;
grad = (D_fake(x_t) - D_real(x_t)) / mean|x - D_real(x_t)|; loss = 0.5 mse(x, stopgrad(x - grad)).
Fake-score loss (every iteration): EDM denoising of the detached generator samples, sigma index uniform
over the table, weight 1/sigma^2 + 1/0.5^2. Optional GAN head on the fake network's encoder output.
AdamW (0.9, 0.999, wd 0.01), grad-norm clip 10, short linear warm-up, no generator EMA, bf16 on CUDA.

Learning rate: DMD2 uses 2e-6 for a 296 M-parameter teacher trained at 1e-4 (1/50). This teacher is
100x smaller, trained at 2e-3, and the budget allows a few thousand iterations instead of 200 k, so
the default is 5e-5 for both networks. Tuning on an H200 (a 3.5-minute teacher; five 3-minute
students sharing the GPU, about 590 iterations each; on-class rate / Frechet distance, 1000
samples): lr 2e-5 0.963 / 0.26, 5e-5 0.955 / 0.21, 1e-4 0.955 / 0.15, 2e-4 0.936 / 0.19, and
5e-5 with the GAN head 0.851 / 0.59 (each iteration costs twice as much, so it saw half as many;
hence the GAN stays off). A 2.5-minute 5e-5 run alone on the GPU (2920 iterations): 0.963 / 0.07.

Writes `<out>/checkpoint_model_NNNNNN/pytorch_model.bin` (torch.save of the generator's state dict, keys
exactly as EDMPrecond.state_dict()) and `<out>/distill_log.json`.

    python tools/demo/distill_student.py --teacher data/demo/teacher.pkl --out data/demo/student \
        --minutes 3.5 --device cuda
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: visualizer/ and tools/

from tools.demo.training import (  # noqa: E402
    Budget,
    adam_kwargs,
    count_parameters,
    cuda_graphed,
    device_name,
    karras_sigmas,
    one_hot,
    set_dropout,
    setup_cuda,
    write_json,
)
from visualizer.checkpoints.loading import load_network  # noqa: E402
from visualizer.digits.dataset import NUM_CLASSES, load_split  # noqa: E402
from visualizer.models.device import pick_device  # noqa: E402
from visualizer.models.networks import EDMPrecond  # noqa: E402

SIGMA_G = 80.0  # the generator's conditioning sigma


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", type=Path, required=True, help="teacher EDM pickle (train_demo_teacher.py)")
    p.add_argument("--out", type=Path, required=True, help="folder for checkpoint_model_NNNNNN/ and the log")
    p.add_argument("--minutes", type=float, default=3.5, help="wall-clock budget from start-up to saved file")
    p.add_argument("--max-iters", type=int, default=0, help="stop after this many iterations too (0: no limit)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=5e-5, help="generator learning rate")
    p.add_argument("--lr-fake", type=float, default=None, help="fake-score learning rate (default: --lr)")
    p.add_argument("--warmup-iters", type=int, default=100)
    p.add_argument("--gen-every", type=int, default=5, help="generator update every N iterations (two time scales)")
    p.add_argument("--min-index", type=int, default=20, help="lowest sigma-table index of the DM loss")
    p.add_argument("--max-index", type=int, default=980, help="highest sigma-table index of the DM loss")
    p.add_argument("--table-size", type=int, default=1000)
    p.add_argument("--gan", action="store_true", help="add DMD2's GAN head on the fake network's encoder")
    p.add_argument("--gan-gen-weight", type=float, default=3e-3)
    p.add_argument("--gan-head-weight", type=float, default=1e-2)
    p.add_argument("--clip", type=float, default=10.0, help="gradient-norm clip of both optimisers")
    p.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=True,
                   help="replay the three networks as CUDA graphs (CUDA only, not with --gan)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="bf16",
                   help="compute dtype on CUDA (the CPU always runs float32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--save-every-minutes", type=float, default=2.0,
                   help="also write the generator this often, so a killed run leaves a usable folder "
                        "(0: only at the end)")
    return p.parse_args(argv)


class GANHead(nn.Module):
    """DMD2's discriminator head on an 8x8 feature map: 4x4/2 conv, GN, SiLU, 4x4/4 conv, GN, SiLU, 1x1 -> logit."""

    def __init__(self, channels: int):
        super().__init__()
        groups = min(32, channels // 4)
        self.net = nn.Sequential(
            nn.Conv2d(channels, channels, 4, stride=2, padding=1), nn.GroupNorm(groups, channels), nn.SiLU(),
            nn.Conv2d(channels, channels, 4, stride=4), nn.GroupNorm(groups, channels), nn.SiLU(),
            nn.Conv2d(channels, 1, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features.float()).flatten(1).mean(1)


class EncoderTap:
    """Keeps the output of the fake network's last encoder module while the context is open."""

    def __init__(self, net: EDMPrecond):
        self.module = list(net.model.enc.values())[-1]
        self.value: torch.Tensor | None = None

    def __enter__(self) -> EncoderTap:
        self.handle = self.module.register_forward_hook(lambda _m, _i, out: setattr(self, "value", out))
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def add_noise(x: torch.Tensor, sigma: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return x + sigma.reshape(-1, 1, 1, 1) * torch.randn(x.shape, generator=gen, device=x.device)


def save_student(generator: nn.Module, out: Path, iteration: int, previous: Path | None) -> Path:
    """checkpoint_model_NNNNNN/pytorch_model.bin, written under a temporary name; the previous folder is removed."""
    folder = out / f"checkpoint_model_{iteration:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).clone() for k, v in generator.state_dict().items()}
    tmp = folder / ".tmp-pytorch_model.bin"
    torch.save(state, tmp)
    tmp.replace(folder / "pytorch_model.bin")
    if previous is not None and previous != folder:
        shutil.rmtree(previous, ignore_errors=True)
    return folder


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    budget = Budget(args.minutes, reserve_seconds=5)
    device = pick_device(args.device)
    setup_cuda(device)
    torch.manual_seed(args.seed)
    lr_fake = args.lr if args.lr_fake is None else args.lr_fake

    teacher = load_network(args.teacher).float()
    real = teacher.to(device).eval().requires_grad_(False)
    fake = copy.deepcopy(real).train().requires_grad_(True)
    generator = copy.deepcopy(real).train().requires_grad_(True)
    for net in (real, fake, generator):
        set_dropout(net, 0.0)  # DMD2 trains without dropout
        net.precision = args.precision
    label_dim, shape = real.label_dim, (real.img_channels, real.img_resolution, real.img_resolution)
    if label_dim != NUM_CLASSES:
        raise SystemExit(f"{args.teacher}: expected a {NUM_CLASSES}-class teacher, found label_dim {label_dim}")

    head = tap = None
    fake_params = list(fake.parameters())
    if args.gan:
        enc_channels = list(fake.model.enc.values())[-1].out_channels
        head = GANHead(enc_channels).to(device)
        fake_params += list(head.parameters())
        tap = EncoderTap(fake)
        real_data = load_split("train", device=device)
    opt_g = torch.optim.AdamW(generator.parameters(), lr=args.lr, betas=(0.9, 0.999), weight_decay=0.01,
                              **adam_kwargs(device))
    opt_f = torch.optim.AdamW(fake_params, lr=lr_fake, betas=(0.9, 0.999), weight_decay=0.01, **adam_kwargs(device))
    # The GAN term needs gradients through the fake network's input, which the graphs do not record.
    graphs = args.cuda_graphs and device.type == "cuda" and not args.gan
    if graphs:  # after the deep copies: graphing replaces each network's forward in place
        real, fake, generator = (cuda_graphed(n, args.batch, device) for n in (real, fake, generator))
    sigma_g = torch.full((args.batch,), SIGMA_G, device=device)
    sigmas = karras_sigmas(args.table_size, device=device)
    sd = real.sigma_data
    gen = torch.Generator(device).manual_seed(args.seed)
    print(f"student from {args.teacher}: {count_parameters(generator) / 1e6:.2f} M parameters on "
          f"{device_name(device)}; batch {args.batch}, lr {args.lr}/{lr_fake}, gen every {args.gen_every}, "
          f"GAN {'on' if args.gan else 'off'}, {'CUDA graphs' if graphs else 'eager'}, budget {args.minutes} min",
          flush=True)

    def draw_inputs(b: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn((b, *shape), generator=gen, device=device)
        labels = torch.randint(label_dim, (b,), generator=gen, device=device)
        return z * SIGMA_G, one_hot(labels, label_dim)

    def gan_logits(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        idx = torch.randint(args.table_size, (x.shape[0],), generator=gen, device=device)
        with tap:
            fake(add_noise(x, sigmas[idx], gen), sigmas[idx], labels)
        return head(tap.value)

    log_rows: list[dict] = []
    sums = {k: torch.zeros((), device=device) for k in ("dm", "fake", "gan_g", "gan_d", "grad_norm_g")}
    counts = {k: 0 for k in sums}
    it, g_steps, window_start, window_iters = 0, 0, time.monotonic(), 0
    train_start = budget.elapsed()
    last_save, saved = time.monotonic(), None
    while not budget.expired() and not (args.max_iters and it >= args.max_iters):
        warm = min(1.0, (it + 1) / max(args.warmup_iters, 1))
        opt_g.param_groups[0]["lr"] = args.lr * warm
        opt_f.param_groups[0]["lr"] = lr_fake * warm
        z, labels = draw_inputs(args.batch)

        if it % args.gen_every == 0:
            # Generator step: distribution matching (+ optional non-saturating GAN term).
            x = generator(z, sigma_g, labels)
            with torch.no_grad():
                idx = torch.randint(args.min_index, args.max_index + 1, (args.batch,), generator=gen, device=device)
                x_t = add_noise(x.detach(), sigmas[idx], gen)
                d_real = real(x_t, sigmas[idx], labels)
                d_fake = fake(x_t, sigmas[idx], labels)
                w = (x.detach() - d_real).abs().mean(dim=(1, 2, 3), keepdim=True)
                grad = torch.nan_to_num((d_fake - d_real) / w)
            loss_dm = 0.5 * F.mse_loss(x, (x - grad).detach())
            loss_g = loss_dm
            if args.gan:
                loss_gan_g = F.softplus(-gan_logits(x, labels)).mean()
                loss_g = loss_g + args.gan_gen_weight * loss_gan_g
                sums["gan_g"] += loss_gan_g.detach()
                counts["gan_g"] += 1
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(generator.parameters(), args.clip)
            opt_g.step()
            g_steps += 1
            sums["dm"] += loss_dm.detach()
            sums["grad_norm_g"] += gnorm.detach()
            counts["dm"] += 1
            counts["grad_norm_g"] += 1
            x = x.detach()  # with graphs this is G's static output: used up before G runs again
        else:
            with torch.no_grad():
                x = generator(z, sigma_g, labels)

        # Fake-score step on the detached samples: EDM denoising loss over the whole table.
        idx = torch.randint(args.table_size, (args.batch,), generator=gen, device=device)
        s = sigmas[idx].reshape(-1, 1, 1, 1)
        d = fake(add_noise(x, sigmas[idx], gen), sigmas[idx], labels)
        loss_f = ((1 / s**2 + 1 / sd**2) * (d - x) ** 2).mean()
        loss_fake_total = loss_f
        if args.gan:
            real_images, real_labels = real_data.batch(args.batch, gen)
            loss_gan_d = (F.softplus(gan_logits(x, labels)).mean()
                          + F.softplus(-gan_logits(real_images, one_hot(real_labels, label_dim))).mean())
            loss_fake_total = loss_fake_total + args.gan_head_weight * loss_gan_d
            sums["gan_d"] += loss_gan_d.detach()
            counts["gan_d"] += 1
        opt_f.zero_grad(set_to_none=True)  # also drops what the generator's GAN term left on the fake network
        loss_fake_total.backward()
        torch.nn.utils.clip_grad_norm_(fake_params, args.clip)
        opt_f.step()
        sums["fake"] += loss_f.detach()
        counts["fake"] += 1

        it += 1
        window_iters += 1
        last = budget.expired() or (args.max_iters and it >= args.max_iters)
        if it % args.log_every == 0 or it == 1 or last:
            means = {k: (sums[k] / counts[k]).item() for k in sums if counts[k]}
            dt = time.monotonic() - window_start
            row = dict(iteration=it, generator_steps=g_steps, seconds=round(budget.elapsed(), 2),
                       iterations_per_second=window_iters / dt, **{f"loss_{k}": v for k, v in means.items()})
            log_rows.append(row)
            print(f"it {it:6d}  g-steps {g_steps:5d}  " + "  ".join(f"{k} {v:.3e}" for k, v in means.items())
                  + f"  {window_iters / dt:6.2f} it/s  t {budget.elapsed():6.1f}s", flush=True)
            for k in sums:
                sums[k].zero_()
                counts[k] = 0
            window_start, window_iters = time.monotonic(), 0
        if args.save_every_minutes and time.monotonic() - last_save > args.save_every_minutes * 60:
            saved = save_student(generator, args.out, it, saved)
            last_save = time.monotonic()

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_seconds = budget.elapsed() - train_start
    saved = save_student(generator, args.out, it, saved)
    log = dict(
        script="distill_demo_student", args=vars(args), lr_fake=lr_fake, network_kwargs=generator.init_kwargs,
        parameters=count_parameters(generator), device=device_name(device), iterations=it,
        generator_steps=g_steps, images_generated=it * args.batch, train_seconds=train_seconds,
        total_seconds=budget.elapsed(), iterations_per_second=it / max(train_seconds, 1e-9),
        loss_curve=log_rows, checkpoint=str(saved / "pytorch_model.bin"),
    )
    write_json(args.out / "distill_log.json", log)
    print(f"wrote {saved / 'pytorch_model.bin'}: {it} iterations ({g_steps} generator steps) in "
          f"{train_seconds:.0f} s ({log['iterations_per_second']:.2f} it/s)", flush=True)
    return log


if __name__ == "__main__":
    main()
