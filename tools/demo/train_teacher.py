"""Train the embedded demo's EDM teacher on coloured 32x32 digits within a wall-clock budget.

EDM recipe (Karras et al. 2022) at toy scale: sigma = exp(N(-1.2, 1.2)), loss weight
(sigma^2 + 0.5^2) / (0.5 sigma)^2, Adam with a linear warm-up, EMA with a ramped halflife, bf16
compute on CUDA through the network's precision switch. The EMA network is written as an
official-layout EDM pickle, so the demo loads it through the same loader as the real model, plus a
JSON log beside it.

    python tools/demo/train_teacher.py --out data/demo/teacher.pkl --minutes 4.5 --device cuda
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: visualizer/ and tools/

from tools.demo.training import (  # noqa: E402
    ARCHITECTURES,
    Budget,
    adam_kwargs,
    build_network,
    count_parameters,
    cuda_graphed,
    device_name,
    edm_loss,
    ema_update,
    one_hot,
    setup_cuda,
    write_json,
)
from visualizer.checkpoints.edm_pickle_writer import write_edm_pickle  # noqa: E402
from visualizer.digits.dataset import load_split  # noqa: E402
from visualizer.models.device import pick_device  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="EDM pickle to write (a JSON log goes beside it)")
    p.add_argument("--minutes", type=float, default=4.5, help="wall-clock budget from start-up to saved file")
    p.add_argument("--max-iters", type=int, default=0, help="stop after this many iterations too (0: no limit)")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup-kimg", type=float, default=200, help="linear lr warm-up over this many k images")
    p.add_argument("--ema-halflife-kimg", type=float, default=200)
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), default="demo")
    p.add_argument("--dropout", type=float, default=None, help="override the architecture's dropout")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="bf16",
                   help="compute dtype on CUDA (the CPU always runs float32)")
    p.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=True,
                   help="replay forward and backward as CUDA graphs (CUDA only; twice as fast on the H200 host)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training forward instead of CUDA graphs (compiling took over "
                        "a minute on the H200 host and gained less than the graphs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=200, help="iterations between progress lines")
    p.add_argument("--save-every-minutes", type=float, default=2.0,
                   help="also write the EMA this often, so a killed run leaves a usable file (0: only at the end)")
    return p.parse_args(argv)


def save_teacher(ema: torch.nn.Module, path: Path) -> None:
    """CPU float32 copy, written under a temporary name and renamed: never a half-written pickle."""
    net = copy.deepcopy(ema).cpu().float().eval()
    net.precision = "fp32"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".tmp-" + path.name)
    write_edm_pickle(net, tmp)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    budget = Budget(args.minutes, reserve_seconds=5)
    device = pick_device(args.device)
    setup_cuda(device)
    torch.manual_seed(args.seed)

    data = load_split("train", device=device)
    net = build_network(args.arch, args.dropout).to(device).train()
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    net.precision = args.precision  # EDMPrecond reduces precision on CUDA only
    graphs = args.cuda_graphs and device.type == "cuda" and not args.compile
    forward = torch.compile(net) if args.compile else cuda_graphed(net, args.batch, device) if graphs else net
    opt = torch.optim.Adam(net.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8, **adam_kwargs(device))
    gen = torch.Generator(device).manual_seed(args.seed)
    n_params = count_parameters(net)
    print(f"teacher {args.arch}: {n_params / 1e6:.2f} M parameters on {device_name(device)}; "
          f"batch {args.batch}, lr {args.lr}, budget {args.minutes} min, "
          f"{'torch.compile' if args.compile else 'CUDA graphs' if graphs else 'eager'}", flush=True)

    log_rows: list[dict] = []
    loss_sum = torch.zeros((), device=device)
    it, seen, window_start, window_iters = 0, 0, time.monotonic(), 0
    train_start = budget.elapsed()
    last_save = time.monotonic()
    while not budget.expired() and not (args.max_iters and it >= args.max_iters):
        images, labels = data.batch(args.batch, gen)
        loss = edm_loss(forward, images, one_hot(labels), gen, sigma_data=net.sigma_data)
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (seen + args.batch) / max(args.warmup_kimg * 1000, 1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        it += 1
        seen += args.batch
        ema_update(ema, net, args.batch, seen, args.ema_halflife_kimg)
        loss_sum += loss.detach()
        window_iters += 1
        last = budget.expired() or (args.max_iters and it >= args.max_iters)
        if it % args.log_every == 0 or it == 1 or last:
            mean_loss = (loss_sum / window_iters).item()  # synchronises, so the timing below is honest
            dt = time.monotonic() - window_start
            row = dict(iteration=it, kimg=seen / 1000, seconds=round(budget.elapsed(), 2), loss=mean_loss,
                       iterations_per_second=window_iters / dt, lr=opt.param_groups[0]["lr"])
            log_rows.append(row)
            print(f"it {it:6d}  kimg {seen / 1000:8.1f}  loss {mean_loss:.4f}  "
                  f"{window_iters / dt:7.2f} it/s  {window_iters * args.batch / dt:8.0f} img/s  "
                  f"t {budget.elapsed():6.1f}s", flush=True)
            loss_sum.zero_()
            window_start, window_iters = time.monotonic(), 0
        if args.save_every_minutes and time.monotonic() - last_save > args.save_every_minutes * 60:
            save_teacher(ema, args.out)
            last_save = time.monotonic()

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_seconds = budget.elapsed() - train_start
    save_teacher(ema, args.out)
    log = dict(
        script="train_demo_teacher", args=vars(args), network_kwargs=net.init_kwargs, parameters=n_params,
        device=device_name(device), iterations=it, images_seen=seen, train_seconds=train_seconds,
        total_seconds=budget.elapsed(), iterations_per_second=it / max(train_seconds, 1e-9),
        images_per_second=seen / max(train_seconds, 1e-9), loss_curve=log_rows,
        final_loss=log_rows[-1]["loss"] if log_rows else None, checkpoint=str(args.out),
    )
    write_json(args.out.with_suffix(".json"), log)
    print(f"wrote {args.out}: {it} iterations, {seen / 1e6:.2f} M images in {train_seconds:.0f} s "
          f"({log['iterations_per_second']:.2f} it/s)", flush=True)
    return log


if __name__ == "__main__":
    main()
