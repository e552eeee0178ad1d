#!/usr/bin/env python3
"""The PyTorch peer for scorekit's image benchmarks (bench_image): the score_sde-tutorial U-Net on 28 x 28
x 1 float32 images, the same architecture as scorekit's nn/image/unet.hpp, layer for layer:

  embedding  e = SiLU(Linear(256, 256)(Gaussian Fourier features of log sigma))   (256 features, scale 16)
  encoder    Conv2d(1, 32, 3, padding 1, no bias), + Linear(256, 32)(e), GroupNorm(4, 32), SiLU
             Conv2d(32, 64, 3, stride 2, padding 1, no bias), + Linear(256, 64)(e), GroupNorm(4, 64), SiLU
             Conv2d(64, 128, 3, stride 2, padding 1, no bias), + Linear(256, 128)(e), GroupNorm(4, 128), SiLU
  decoder    Upsample(2, nearest), Conv2d(128, 64, 3, padding 1, no bias), + Linear(e), GroupNorm, SiLU, cat h2
             Upsample(2, nearest), Conv2d(128, 32, 3, padding 1, no bias), + Linear(e), GroupNorm, SiLU, cat h1
  output     Conv2d(64, 1, 3, padding 1), divided by sigma
(352,289 parameters, as scorekit's.)

Workloads:
  unet_train_b128  one training step at batch 128: a minibatch of the 2,048 images (uniform on [0, 1)),
                   continuous-time VE DSM (t uniform on [1e-5, 1], sigma(t) marginal std of the VE SDE
                   0.01 -> 25, loss mean over the batch of 0.5 sigma^2 ||s + z / sigma||^2), backward, Adam
                   (lr 1e-4, fused), an EMA of the weights (rate 0.999, torch._foreach ops)
  unet_score_b256  one score evaluation of 256 images at sigma = 1, under torch.no_grad()

Variants: eager and torch.compile (the loss and the model), each in PyTorch's default memory format
(NCHW) and in channels_last (NHWC, which oneDNN often prefers on CPUs); the fastest is the peer.
FLOP: 2 x the convolutions' multiply-adds (as scorekit counts): forward once; a training step three times
less the first layer's input adjoint.

Timing as torch_train.py: warm-up (compiles), then the variants take turns, --repeats rounds of at least
--min-time seconds each; the best rate is reported, with each run's CPU share.
Usage: torch_image.py [--threads N] [--min-time S] [--repeats R] [--no-compile] [--json FILE]
Last line printed: "RESULT_JSON {...}".
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SIDE = 28
EMBED = 256


class GaussianFourier(nn.Module):
    def __init__(self, n, scale):
        super().__init__()
        self.register_buffer("w", torch.randn(n // 2) * scale)

    def forward(self, log_sigma):
        p = log_sigma[:, None] * self.w[None, :] * 2 * math.pi
        return torch.cat([torch.sin(p), torch.cos(p)], dim=-1)


class Block(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.dense = nn.Linear(EMBED, c_out)
        self.norm = nn.GroupNorm(4, c_out)

    def forward(self, x, e):
        h = self.conv(x) + self.dense(e)[:, :, None, None]
        return F.silu(self.norm(h))


class UNet(nn.Module):
    def __init__(self, channels=(32, 64, 128)):
        super().__init__()
        self.fourier = GaussianFourier(EMBED, 16.0)
        self.embed = nn.Linear(EMBED, EMBED)
        self.enc = nn.ModuleList()
        c = 1
        for i, co in enumerate(channels):
            self.enc.append(Block(c, co, 1 if i == 0 else 2))
            c = co
        self.dec = nn.ModuleList()
        for i in range(len(channels) - 1, 0, -1):
            self.dec.append(Block(c, channels[i - 1], 1))
            c = 2 * channels[i - 1]
        self.out = nn.Conv2d(c, 1, 3, padding=1)

    def forward(self, x, sigma):
        e = F.silu(self.embed(self.fourier(torch.log(sigma))))
        skips = []
        h = x
        for b in self.enc:
            h = b(h, e)
            skips.append(h)
        for j, b in enumerate(self.dec):
            h = b(F.interpolate(h, scale_factor=2, mode="nearest"), e)
            h = torch.cat([h, skips[-2 - j]], dim=1)
        return self.out(h) / sigma[:, None, None, None]


def conv_multiply_adds(batch):
    layers = [(1, 32, 28), (32, 64, 14), (64, 128, 7), (128, 64, 14), (128, 32, 28), (64, 1, 28)]
    return batch * sum(9 * ci * co * s * s for ci, co, s in layers), batch * 9 * 1 * 32 * 28 * 28


def ve_sigma(t, smin=0.01, smax=25.0):
    # The VE SDE's marginal standard deviation: sigma_min sqrt((smax/smin)^(2t) - 1).
    return smin * torch.sqrt(torch.expm1(2 * t * math.log(smax / smin)))


def make_train_step(model, data, compiled, channels_last, batch=128):
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    params = [p for p in model.parameters()]
    ema = [p.detach().clone() for p in params]
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def loss_fn(x):
        t = torch.rand(x.shape[0]) * (1 - 1e-5) + 1e-5
        s = ve_sigma(t)
        z = torch.randn_like(x)
        out = model((x + s[:, None, None, None] * z).contiguous(memory_format=fmt), s)
        r = out + z / s[:, None, None, None]
        return (0.5 * s ** 2 * (r ** 2).sum(dim=(1, 2, 3))).mean()

    loss_c = torch.compile(loss_fn) if compiled else loss_fn
    n = data.shape[0]

    def step(i):
        idx = torch.randint(0, n, (batch,))
        loss = loss_c(data[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            torch._foreach_mul_(ema, 0.999)
            torch._foreach_add_(ema, [p.detach() for p in params], alpha=0.001)
        return loss.detach()

    return step


def make_score_step(model, compiled, channels_last, batch=256):
    x = torch.rand(batch, 1, SIDE, SIDE)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    s = torch.ones(batch)
    f = torch.compile(model) if compiled else model

    def step(i):
        with torch.no_grad():
            return f(x, s).sum()

    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = torch.rand(2048, 1, SIDE, SIDE)
    results = {}
    for workload in ("unet_train_b128", "unet_score_b256"):
        variants = {}
        for compiled in ([False] if args.no_compile else [False, True]):
            for cl in (False, True):
                name = ("compiled" if compiled else "eager") + ("_channels_last" if cl else "")
                torch.manual_seed(1)
                model = UNet()
                if cl:
                    model = model.to(memory_format=torch.channels_last)
                try:
                    if workload.startswith("unet_train"):
                        d = data.contiguous(memory_format=torch.channels_last) if cl else data
                        step = make_train_step(model, d, compiled, cl)
                    else:
                        model.eval()
                        step = make_score_step(model, compiled, cl)
                    t0 = time.perf_counter()
                    for i in range(3):
                        step(i)
                    variants[name] = dict(step=step, rates=[], shares=[], warmup_s=time.perf_counter() - t0)
                except Exception as e:  # a variant that cannot run is reported, not fatal
                    print(f"{workload} {name}: failed: {type(e).__name__}: {str(e).splitlines()[0]}", flush=True)
        if workload == "unet_train_b128":
            n_params = sum(p.numel() for p in UNet().parameters())
        for r in range(args.repeats):
            for name, v in variants.items():
                n = 0
                c0, t0 = time.process_time(), time.perf_counter()
                while True:
                    v["step"](n)
                    n += 1
                    t = time.perf_counter() - t0
                    if t >= args.min_time:
                        break
                v["rates"].append(n / t)
                v["shares"].append((time.process_time() - c0) / (t * args.threads))
        mads, first = conv_multiply_adds(128 if workload.startswith("unet_train") else 256)
        flop = 2 * (3 * mads - first) if workload.startswith("unet_train") else 2 * mads
        out = {}
        for name, v in variants.items():
            best = max(v["rates"])
            out[name] = dict(best_per_s=best, median_per_s=statistics.median(v["rates"]), runs_per_s=v["rates"],
                             cpu_share_min=min(v["shares"]), gflops=best * flop * 1e-9, warmup_s=v["warmup_s"])
            print(f"{workload:18s} {name:24s} {best:8.3f} /s  {best * flop * 1e-9:7.1f} GFLOP/s  "
                  f"(median {statistics.median(v['rates']):.3f}, CPU share >= {min(v['shares']):.2f})", flush=True)
        peer = max(out, key=lambda k: out[k]["best_per_s"]) if out else None
        results[workload] = dict(variants=out, peer=peer, flop=flop)
    meta = dict(torch=torch.__version__, threads=args.threads, parameters=n_params,
                mkldnn=torch.backends.mkldnn.is_available())
    blob = dict(meta=meta, results=results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(blob, f, indent=1)
    print("RESULT_JSON " + json.dumps(blob))


if __name__ == "__main__":
    sys.exit(main())
