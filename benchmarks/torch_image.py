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

and NCSN's RefineNet reduced, as scorekit's nn/image/refinenet.hpp (RefineNetSettings defaults: levels
32/64/64/64, one residual block per level, one RCU per input, one CRP stage, CIN++ of the noise level's
index over 10 levels), module for module:

  CIN++      per level tables (gamma, beta, alpha) (nn.Embedding(10, 3 C), the paper's formula
             gamma xhat + beta + alpha mhat, biased variance per channel, unbiased over the channel means,
             eps 1e-5), gamma = alpha = 1, beta = 0 at the start
  input      Conv2d(1, 32, 3, padding 1)
  encoder    pre-activation residual blocks (CIN++, ELU, 3 x 3 conv, CIN++, ELU, 3 x 3 conv) + shortcut:
             level 0 (28 x 28, 32), level 1 (14 x 14, 64: conv 32 -> 32, conv 32 -> 64 and 2 x 2 mean pool,
             shortcut 1 x 1 conv and pool), levels 2, 3 (14 x 14, 64, dilation 2 and 4)
  decoder    RefineNet blocks from level 3 up (channels out 64, 64, 32, 32): RCU per input (2 x (CIN++, ELU,
             3 x 3 conv without bias), + input), fusion (CIN++, 3 x 3 conv with bias, nearest upsampling,
             sum) when two inputs, chained residual pooling (ELU; CIN++, AvgPool2d(5, 1, 2), 3 x 3 conv without
             bias, + h), an output RCU
  output     CIN++, ELU, Conv2d(32, 1, 3, padding 1); not divided by sigma (NCSN)
(the parameter count is asserted against the count written from this description, and compare_tables.py
checks it against scorekit's.)

Workloads:
  unet_train_b128  one training step at batch 128: a minibatch of the 2,048 images (uniform on [0, 1)),
                   continuous-time VE DSM (t uniform on [1e-5, 1], sigma(t) marginal std of the VE SDE
                   0.01 -> 25, loss mean over the batch of 0.5 sigma^2 ||s + z / sigma||^2), backward, Adam
                   (lr 1e-4, fused), an EMA of the weights (rate 0.999, torch._foreach ops)
  unet_score_b256  one score evaluation of 256 images at sigma = 1, under torch.no_grad()
  unet_vjp_b256    one vector-Jacobian product on 256 images at sigma = 1: the score s and v^T ds/dx by
                   torch.autograd.grad with the parameters frozen (requires_grad False, so no parameter
                   gradient), what Hutchinson's divergence of a likelihood needs
  refinenet_train_b128, refinenet_score_b256
                   the same for the RefineNet, trained on NCSN's ladder (10 levels geometric from 1 to
                   0.01, a level uniform per sample, loss weight sigma^2); the score at level 0 (sigma = 1)

Variants: eager and torch.compile (the loss and the model), each in PyTorch's default memory format
(NCHW) and in channels_last (NHWC, which oneDNN often prefers on CPUs); the fastest is the peer.
FLOP: 2 x the convolutions' multiply-adds (as scorekit counts): forward once; a training step three times
less the first layer's input adjoint; a vector-Jacobian product twice (forward, input adjoint).

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


LEVELS = 10
LADDER = [0.01 ** (l / 9.0) for l in range(LEVELS)]


class CondInstanceNormPP(nn.Module):
    def __init__(self, c, levels=LEVELS):
        super().__init__()
        self.c = c
        self.embed = nn.Embedding(levels, 3 * c)
        with torch.no_grad():
            self.embed.weight.zero_()
            self.embed.weight[:, :c] = 1  # gamma
            self.embed.weight[:, 2 * c:] = 1  # alpha

    def forward(self, x, y):
        mu = x.mean(dim=(2, 3))
        m = mu.mean(dim=-1, keepdim=True)
        v = mu.var(dim=-1, keepdim=True)  # unbiased, as NCSN's torch.var
        mhat = (mu - m) / torch.sqrt(v + 1e-5)
        h = F.instance_norm(x, eps=1e-5)
        g, b, a = self.embed(y).chunk(3, dim=-1)
        return g[:, :, None, None] * h + (b + a * mhat)[:, :, None, None]


def conv3(ci, co, dilation=1, bias=True):
    return nn.Conv2d(ci, co, 3, padding=dilation, dilation=dilation, bias=bias)


class ResidualBlock(nn.Module):
    def __init__(self, ci, co, dilation, down):
        super().__init__()
        mid = ci if down else co
        self.down = down
        self.norm1, self.conv1 = CondInstanceNormPP(ci), conv3(ci, mid, dilation)
        self.norm2, self.conv2 = CondInstanceNormPP(mid), conv3(mid, co, dilation)
        self.shortcut = nn.Conv2d(ci, co, 1) if down or ci != co else None

    def forward(self, x, y):
        h = self.conv1(F.elu(self.norm1(x, y)))
        h = self.conv2(F.elu(self.norm2(h, y)))
        s = x if self.shortcut is None else self.shortcut(x)
        if self.down:
            h, s = F.avg_pool2d(h, 2), F.avg_pool2d(s, 2)
        return h + s


class RCU(nn.Module):
    def __init__(self, c, blocks=1):
        super().__init__()
        self.norms = nn.ModuleList(CondInstanceNormPP(c) for _ in range(2 * blocks))
        self.convs = nn.ModuleList(conv3(c, c, bias=False) for _ in range(2 * blocks))

    def forward(self, h, y):
        for b in range(len(self.convs) // 2):
            t = h
            for s in (2 * b, 2 * b + 1):
                t = self.convs[s](F.elu(self.norms[s](t, y)))
            h = t + h
        return h


class RefineBlock(nn.Module):
    def __init__(self, ins, features, crp_stages=1):
        super().__init__()
        self.adapt = nn.ModuleList(RCU(c) for c in ins)
        self.fuse = len(ins) > 1 or ins[0] != features
        if self.fuse:
            self.msf_norms = nn.ModuleList(CondInstanceNormPP(c) for c in ins)
            self.msf_convs = nn.ModuleList(conv3(c, features) for c in ins)
        self.crp_norms = nn.ModuleList(CondInstanceNormPP(features) for _ in range(crp_stages))
        self.crp_convs = nn.ModuleList(conv3(features, features, bias=False) for _ in range(crp_stages))
        self.out = RCU(features)

    def forward(self, xs, y):
        hs = [a(x, y) for a, x in zip(self.adapt, xs)]
        if self.fuse:
            size = hs[0].shape[2:]
            h = None
            for i, t in enumerate(hs):
                t = self.msf_convs[i](self.msf_norms[i](t, y))
                if t.shape[2:] != size:
                    t = F.interpolate(t, size=size, mode="nearest")
                h = t if h is None else h + t
        else:
            h = hs[0]
        h = F.elu(h)
        path = h
        for n, c in zip(self.crp_norms, self.crp_convs):
            path = c(F.avg_pool2d(n(path, y), 5, stride=1, padding=2))
            h = path + h
        return self.out(h, y)


class RefineNetLite(nn.Module):
    def __init__(self, channels=(32, 64, 64, 64), in_channels=1):
        super().__init__()
        self.begin = conv3(in_channels, channels[0])
        self.res = nn.ModuleList()
        c = channels[0]
        for l, co in enumerate(channels):
            self.res.append(ResidualBlock(c, co, 2 ** (l - 1) if l >= 2 else 1, l == 1))
            c = co
        self.refine = nn.ModuleList()
        above = None
        for l in range(len(channels) - 1, -1, -1):
            features = channels[max(l - 1, 0)]
            self.refine.append(RefineBlock([channels[l]] + ([above] if above else []), features))
            above = features
        self.end_norm = CondInstanceNormPP(above)
        self.end = conv3(above, in_channels)

    def forward(self, x, y):
        h = self.begin(x)
        levels = []
        for r in self.res:
            h = r(h, y)
            levels.append(h)
        h = None
        for j, r in enumerate(self.refine):
            lv = levels[len(levels) - 1 - j]
            h = r([lv] if h is None else [lv, h], y)
        return self.end(F.elu(self.end_norm(h, y)))


def refinenet_parameters(channels=(32, 64, 64, 64), in_channels=1, levels=LEVELS):
    # Written from the description in nn/image/refinenet.hpp, not from the modules above.
    def conv(ci, co, k, bias):
        return k * k * ci * co + (co if bias else 0)

    def norm(c):
        return 3 * levels * c

    def rcu(c):
        return 2 * (norm(c) + conv(c, c, 3, False))

    n = conv(in_channels, channels[0], 3, True)
    c = channels[0]
    for l, co in enumerate(channels):
        down = l == 1
        mid = c if down else co
        n += norm(c) + conv(c, mid, 3, True) + norm(mid) + conv(mid, co, 3, True)
        if down or c != co:
            n += conv(c, co, 1, True)
        c = co
    above = 0
    for l in range(len(channels) - 1, -1, -1):
        cl, feat = channels[l], channels[max(l - 1, 0)]
        n += rcu(cl) + (rcu(above) if above else 0)
        if above or cl != feat:
            n += norm(cl) + conv(cl, feat, 3, True) + ((norm(above) + conv(above, feat, 3, True)) if above else 0)
        n += norm(feat) + conv(feat, feat, 3, False) + rcu(feat)
        above = feat
    return n + norm(above) + conv(above, in_channels, 3, True)


def refinenet_multiply_adds(batch, channels=(32, 64, 64, 64)):
    # The convolutions' multiply-adds of one forward, as scorekit's Network::multiply_adds.
    full, half = SIDE * SIDE, (SIDE // 2) ** 2
    mads = 9 * 1 * channels[0] * full
    c = channels[0]
    for l, co in enumerate(channels):
        px = full if l == 0 else half
        if l == 1:  # convs at full resolution, then pooled
            mads += 9 * c * c * full + 9 * c * co * full + c * co * full
        else:
            mads += 9 * c * co * px + 9 * co * co * px + (c * co * px if c != co else 0)
        c = co
    above = 0
    for l in range(len(channels) - 1, -1, -1):
        cl, feat = channels[l], channels[max(l - 1, 0)]
        px = full if l == 0 else half
        mads += 2 * 9 * cl * cl * px
        if above:
            mads += 2 * 9 * above * above * half
        if above or cl != feat:
            mads += 9 * cl * feat * px + (9 * above * feat * half if above else 0)
        mads += 9 * feat * feat * px + 2 * 9 * feat * feat * px
        above = feat
    return batch * (mads + 9 * above * 1 * full)


def conv_multiply_adds(batch):
    layers = [(1, 32, 28), (32, 64, 14), (64, 128, 7), (128, 64, 14), (128, 32, 28), (64, 1, 28)]
    return batch * sum(9 * ci * co * s * s for ci, co, s in layers), batch * 9 * 1 * 32 * 28 * 28


def ve_sigma(t, smin=0.01, smax=25.0):
    # The VE SDE's marginal standard deviation: sigma_min sqrt((smax/smin)^(2t) - 1).
    return smin * torch.sqrt(torch.expm1(2 * t * math.log(smax / smin)))


def make_train_step(model, data, compiled, channels_last, batch=128, ladder=False):
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    params = [p for p in model.parameters()]
    ema = [p.detach().clone() for p in params]
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    sigmas = torch.tensor(LADDER)

    def loss_fn(x):
        if ladder:  # NCSN: a level uniform per sample, its index the conditioning
            cond = torch.randint(0, LEVELS, (x.shape[0],))
            s = sigmas[cond]
        else:
            t = torch.rand(x.shape[0]) * (1 - 1e-5) + 1e-5
            s = ve_sigma(t)
            cond = s
        z = torch.randn_like(x)
        out = model((x + s[:, None, None, None] * z).contiguous(memory_format=fmt), cond)
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


def make_score_step(model, compiled, channels_last, batch=256, ladder=False):
    x = torch.rand(batch, 1, SIDE, SIDE)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    s = torch.zeros(batch, dtype=torch.long) if ladder else torch.ones(batch)  # level 0 is sigma = 1
    f = torch.compile(model) if compiled else model

    def step(i):
        with torch.no_grad():
            return f(x, s).sum()

    return step


def make_vjp_step(model, compiled, channels_last, batch=256):
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(batch, 1, SIDE, SIDE)
    v = torch.rand(batch, 1, SIDE, SIDE)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    s = torch.ones(batch)
    f = torch.compile(model) if compiled else model

    def step(i):
        xg = x.detach().requires_grad_(True)
        out = f(xg, s)
        (g,) = torch.autograd.grad(out, xg, v)
        return g

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
    n_params = {}
    for workload in ("unet_train_b128", "unet_score_b256", "unet_vjp_b256", "refinenet_train_b128",
                     "refinenet_score_b256"):
        net = UNet if workload.startswith("unet") else RefineNetLite
        ladder = net is RefineNetLite
        train = "_train_" in workload
        vjp = "_vjp_" in workload
        variants = {}
        for compiled in ([False] if args.no_compile else [False, True]):
            for cl in (False, True):
                name = ("compiled" if compiled else "eager") + ("_channels_last" if cl else "")
                torch.manual_seed(1)
                model = net()
                if cl:
                    model = model.to(memory_format=torch.channels_last)
                try:
                    if train:
                        d = data.contiguous(memory_format=torch.channels_last) if cl else data
                        step = make_train_step(model, d, compiled, cl, ladder=ladder)
                    elif vjp:
                        model.eval()
                        step = make_vjp_step(model, compiled, cl)
                    else:
                        model.eval()
                        step = make_score_step(model, compiled, cl, ladder=ladder)
                    t0 = time.perf_counter()
                    for i in range(3):
                        step(i)
                    variants[name] = dict(step=step, rates=[], shares=[], warmup_s=time.perf_counter() - t0)
                except Exception as e:  # a variant that cannot run is reported, not fatal
                    print(f"{workload} {name}: failed: {type(e).__name__}: {str(e).splitlines()[0]}", flush=True)
        n_params[workload] = sum(p.numel() for p in net().parameters())
        if net is RefineNetLite:
            assert n_params[workload] == refinenet_parameters(), (n_params[workload], refinenet_parameters())
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
        batch = 128 if train else 256
        if net is UNet:
            mads, first = conv_multiply_adds(batch)
        else:
            mads, first = refinenet_multiply_adds(batch), batch * 9 * 1 * 32 * SIDE * SIDE
        flop = 2 * (3 * mads - first) if train else 2 * 2 * mads if vjp else 2 * mads
        out = {}
        for name, v in variants.items():
            best = max(v["rates"])
            out[name] = dict(best_per_s=best, median_per_s=statistics.median(v["rates"]), runs_per_s=v["rates"],
                             cpu_share_min=min(v["shares"]), gflops=best * flop * 1e-9, warmup_s=v["warmup_s"])
            print(f"{workload:18s} {name:24s} {best:8.3f} /s  {best * flop * 1e-9:7.1f} GFLOP/s  "
                  f"(median {statistics.median(v['rates']):.3f}, CPU share >= {min(v['shares']):.2f})", flush=True)
        peer = max(out, key=lambda k: out[k]["best_per_s"]) if out else None
        results[workload] = dict(variants=out, peer=peer, flop=flop, parameters=n_params[workload])
    meta = dict(torch=torch.__version__, threads=args.threads, parameters=n_params["unet_train_b128"],
                mkldnn=torch.backends.mkldnn.is_available())
    blob = dict(meta=meta, results=results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(blob, f, indent=1)
    print("RESULT_JSON " + json.dumps(blob))


if __name__ == "__main__":
    sys.exit(main())
