#!/usr/bin/env python3
"""The PyTorch peer for scorekit's training benchmarks: training steps/s of small score networks on 2-D
data, float32, Adam(lr=1e-3), written the way a competent PyTorch user writes them, timed eagerly and
under torch.compile (both are reported; the faster is the peer).

Data: 10,000 points drawn once from 0.2 N((0,0), I) + 0.8 N((10,10), I). Minibatches are rows of that
tensor picked by pre-generated indices (concatenated random permutations, at least 256 batches, cycled),
so the data pipeline is one gather per step. The noise (levels, z, probes) is drawn inside the step: it is
part of each estimator.

Workloads (sizes as in Song and Ermon 2019's toy experiment):
  ncsn_dsm_b128, ncsn_dsm_b1024  the noise-conditional net ConditionalDense(2,128) -> softplus ->
        ConditionalDense(128,128) -> softplus -> Dense(128,2); ConditionalDense(in,out) is an unbiased
        linear map whose output is multiplied elementwise by gamma[level] (nn.Embedding(10,out),
        uniform(0,1) init); Dense has a bias. L = 10 levels sigma_i geometric 1 -> 0.01. Per sample a
        uniform level i, z ~ N(0,I), x~ = x + sigma_i z; loss = mean 0.5 ||sigma_i s(x~,i) + z||^2
        (denoising score matching, lambda(sigma) = sigma^2). Batch 128 and 1024.
  ism_exact_b128  the plain net Dense(2,128) softplus Dense(128,128) softplus Dense(128,2) (biases);
        implicit score matching, loss = mean(tr(ds/dx) + 0.5 ||s||^2), the trace exact: by autograd (one
        create_graph backward per coordinate), or torch.func vmap(jacrev) / vmap(jacfwd).
  ssm_b128  the plain net; sliced score matching with one probe v ~ N(0,I) per sample, loss =
        mean(v^T (ds/dx) v + 0.5 (v^T s)^2); v^T ds/dx by autograd (create_graph) or torch.func.jvp.

Variants: "eager*" run as written; "compiled*" put the loss under torch.compile (AOTAutograd compiles its
backward too) and Adam's step under torch.compile (PyTorch's "compiling the optimizer" recipe).
torch.compile cannot differentiate a graph twice (create_graph through a compiled graph), so the compiled
ISM/SSM losses are the torch.func forms, whose Jacobian/JVP is traced into the forward graph. Eager Adam
is fused=True (one kernel for all parameters; the default is a Python loop per tensor on the CPU).

Timing: every variant of a workload is warmed up (which compiles), then the variants take turns: --repeats
rounds, each variant running as many steps as fit in --min-time seconds (at least) per round; steps/s is
the best and the median over its runs. Taking turns means a burst of other work on a shared machine slows
one run of every variant rather than all runs of one; each run's CPU share (process CPU time / (wall time
x threads)) is recorded, and a best run with a share well below 1 was not measured on idle CPUs.

FLOP per training step (what scorekit's benchmarks count too): a dense layer costs 2 in out per sample
forward (bias, softplus, gamma products, losses and Adam are not counted); F = 2 (2*128 + 128*128 +
128*2) = 33,792 per sample for either net. Backward = 2x forward, so a training step is 3 x the forward
cost of the loss graph:
  DSM:  the loss graph is one forward pass F                                    3 F B
  ISM:  s (F) plus one derivative pass per input coordinate (F each: a VJP by autograd / jacrev, a JVP by
        jacfwd, through the same matrices), d = 2                                3 (1 + d) F B = 9 F B
  SSM:  s (F) plus one VJP (autograd) or JVP (torch.func) with the probe (F)   3 * 2 F B = 6 F B

On --device cuda the data, the minibatch indices, the weights and Adam's state live on the GPU (the data,
the indices and the initial weights are drawn on the CPU first: the same on either device), and each timed
run starts and ends with torch.cuda.synchronize().

Usage: torch_train.py [--device cpu|cuda] [--threads N] [--min-time S] [--repeats R] [--warmup STEPS]
                      [--no-compile] [--compile-mode MODE] [--workloads a,b] [--json FILE]
Per variant a human-readable line; per workload one "TRAIN_RESULT key=value ..." line; the last line
printed is "RESULT_JSON {...}" (everything, for benchmarks/compare.sh).
"""
import argparse
import collections
import json
import math
import os
import statistics
import sys
import time
import warnings

# Read before torch starts OpenMP (with OMP_PROC_BIND set the runtime pins the main thread to one CPU).
CPUS = len(os.sched_getaffinity(0))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# torch.compile's internals print deprecation notices about themselves; they say nothing about the numbers.
warnings.filterwarnings("ignore", category=FutureWarning)

DTYPE = torch.float32
N_DATA = 10000
DIM = 2
HIDDEN = 128
LEVELS = 10
LR = 1e-3
# Where the timed work runs (--device); everything below reads it.
DEVICE = torch.device("cpu")


def sync():
    """Waits for the device's queued work (a no-op on the CPU): the edges of every timed run."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def dense_flop_per_sample():
    """Forward FLOP of 2 -> 128 -> 128 -> 2 per sample: 2 in out per dense layer."""
    return 2 * (DIM * HIDDEN + HIDDEN * HIDDEN + HIDDEN * DIM)


def make_data(seed=0):
    g = torch.Generator().manual_seed(seed)
    far = torch.rand(N_DATA, generator=g) < 0.8
    x = torch.randn(N_DATA, DIM, generator=g, dtype=DTYPE)
    return (x + 10.0 * far.to(DTYPE).unsqueeze(1)).to(DEVICE)


def make_batches(batch, seed=1, min_batches=256):
    """(nb, batch) int64 indices: concatenated random permutations of the data, cut into batches."""
    g = torch.Generator().manual_seed(seed)
    nb = max(min_batches, math.ceil(N_DATA / batch))
    perms = [torch.randperm(N_DATA, generator=g) for _ in range(math.ceil(nb * batch / N_DATA))]
    return torch.cat(perms)[: nb * batch].view(nb, batch).contiguous().to(DEVICE)


def geometric_sigmas(first=1.0, last=0.01, levels=LEVELS):
    ratio = math.log(last / first) / (levels - 1)
    s = [first * math.exp(ratio * i) for i in range(levels)]
    s[-1] = last
    return torch.tensor(s, dtype=DTYPE, device=DEVICE)


# ------------------------------------------------------------------------------------------------
# Networks


class ConditionalDense(nn.Module):
    """Unbiased linear map whose output is scaled elementwise by a learned gamma[level]."""

    def __init__(self, n_in, n_out, levels):
        super().__init__()
        self.lin = nn.Linear(n_in, n_out, bias=False)
        self.embed = nn.Embedding(levels, n_out)
        self.embed.weight.data.uniform_()

    def forward(self, x, level):
        return self.lin(x) * self.embed(level)


class NoiseConditionalNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = ConditionalDense(DIM, HIDDEN, LEVELS)
        self.l2 = ConditionalDense(HIDDEN, HIDDEN, LEVELS)
        self.l3 = nn.Linear(HIDDEN, DIM)

    def forward(self, x, level):
        h = F.softplus(self.l1(x, level))
        h = F.softplus(self.l2(h, level))
        return self.l3(h)


def plain_net():
    return nn.Sequential(nn.Linear(DIM, HIDDEN), nn.Softplus(), nn.Linear(HIDDEN, HIDDEN), nn.Softplus(),
                         nn.Linear(HIDDEN, DIM))


# ------------------------------------------------------------------------------------------------
# Losses: each takes (model, x) and draws its own noise.


def dsm_loss(sigmas):
    def loss(model, x):
        level = torch.randint(0, LEVELS, (x.shape[0],), device=x.device)
        sigma = sigmas[level].unsqueeze(1)
        z = torch.randn_like(x)
        s = model(x + sigma * z, level)
        return 0.5 * (sigma * s + z).square().sum(1).mean()

    return loss


def ism_loss_autograd(model, x):
    x = x.detach().requires_grad_(True)
    s = model(x)
    trace = 0
    for k in range(x.shape[1]):  # row k of ds/dx for every sample at once: samples are independent
        trace = trace + torch.autograd.grad(s[:, k].sum(), x, create_graph=True)[0][:, k]
    return (trace + 0.5 * s.square().sum(1)).mean()


def ism_loss_func(jac):
    def loss(model, x):
        def f(u):
            s = model(u)
            return s, s

        j, s = torch.func.vmap(jac(f, has_aux=True))(x)  # (B, d, d), (B, d)
        trace = torch.diagonal(j, dim1=-2, dim2=-1).sum(-1)
        return (trace + 0.5 * s.square().sum(1)).mean()

    return loss


def ssm_loss_autograd(model, x):
    x = x.detach().requires_grad_(True)
    v = torch.randn_like(x)
    s = model(x)
    vs = (v * s).sum(1)
    vj = torch.autograd.grad(vs.sum(), x, create_graph=True)[0]  # v^T ds/dx per sample
    return ((vj * v).sum(1) + 0.5 * vs.square()).mean()


def ssm_loss_jvp(model, x):
    v = torch.randn_like(x)
    s, jv = torch.func.jvp(model, (x,), (v,))  # ds/dx v per sample (the net acts row by row)
    return ((jv * v).sum(1) + 0.5 * (v * s).sum(1).square()).mean()


# ------------------------------------------------------------------------------------------------


def workloads(names):
    f = dense_flop_per_sample()
    sigmas = geometric_sigmas()
    dsm = dsm_loss(sigmas)
    all_workloads = [
        dict(name="ncsn_dsm_b128", batch=128, net=NoiseConditionalNet, flop_per_sample=3 * f,
             variants=[("eager", dsm, False), ("compiled", dsm, True)]),
        dict(name="ncsn_dsm_b1024", batch=1024, net=NoiseConditionalNet, flop_per_sample=3 * f,
             variants=[("eager", dsm, False), ("compiled", dsm, True)]),
        dict(name="ism_exact_b128", batch=128, net=plain_net, flop_per_sample=3 * (1 + DIM) * f,
             variants=[("eager_autograd", ism_loss_autograd, False),
                       ("eager_vmap_jacrev", ism_loss_func(torch.func.jacrev), False),
                       ("eager_vmap_jacfwd", ism_loss_func(torch.func.jacfwd), False),
                       ("compiled_vmap_jacrev", ism_loss_func(torch.func.jacrev), True),
                       ("compiled_vmap_jacfwd", ism_loss_func(torch.func.jacfwd), True)]),
        dict(name="ssm_b128", batch=128, net=plain_net, flop_per_sample=3 * 2 * f,
             variants=[("eager_autograd", ssm_loss_autograd, False), ("eager_jvp", ssm_loss_jvp, False),
                       ("compiled_jvp", ssm_loss_jvp, True)]),
    ]
    if names:
        unknown = set(names) - {w["name"] for w in all_workloads}
        if unknown:
            sys.exit(f"torch_train.py: unknown workload(s) {', '.join(sorted(unknown))}")
        all_workloads = [w for w in all_workloads if w["name"] in names]
    return all_workloads


def make_step(w, loss_fn, compiled, data, mode=None):
    torch.manual_seed(0)  # every variant starts from the same weights
    model = w["net"]().to(DEVICE)  # initialised on the CPU: the same weights on every device
    if compiled:
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        # The gather goes inside the compiled region too.
        loss_c = torch.compile(lambda idx: loss_fn(model, data[idx]), fullgraph=True, dynamic=False,
                               mode=mode)

        @torch.compile(fullgraph=False, mode=mode)
        def opt_step():
            opt.step()

        def step(idx):
            loss = loss_c(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt_step()
            return loss.detach()
    else:
        opt = torch.optim.Adam(model.parameters(), lr=LR, fused=True)

        def step(idx):
            loss = loss_fn(model, data[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.detach()

    return step


class VariantTimer:
    """One variant's training loop: warm-up once, then timed runs of at least min_time seconds each."""

    def __init__(self, step, batches, threads):
        self.step, self.batches, self.threads = step, batches, threads
        self.j = 0
        self.rates, self.cpu_shares = [], []
        self.last = collections.deque(maxlen=100)

    def _next(self):
        loss = self.step(self.batches[self.j % self.batches.shape[0]])
        self.j += 1
        return loss

    def warm_up(self, steps):
        first = []
        t0 = time.perf_counter()
        # The first calls compile; at least 20 steps, so loss_first20 always means the same thing.
        while self.j < max(steps, 20) or time.perf_counter() - t0 < 0.5:
            loss = self._next()
            if len(first) < 20:
                first.append(float(loss))
        self.warmup_steps, self.warmup_s = self.j, time.perf_counter() - t0
        self.loss_first20 = statistics.fmean(first)

    def run(self, min_time):
        n = 0
        sync()
        c0 = time.process_time()
        t0 = time.perf_counter()
        while True:
            self.last.append(self._next())
            n += 1
            t = time.perf_counter() - t0
            if t >= min_time:
                break
        sync()  # on a GPU the queued steps finish here; they count
        t = time.perf_counter() - t0
        self.rates.append(n / t)
        # CPU time of this process over (wall time x threads): well below 1 means other processes took
        # the CPUs for part of the run (spinning OpenMP workers keep it near 1 on an idle machine).
        self.cpu_shares.append((time.process_time() - c0) / (t * self.threads))

    def result(self):
        last = torch.stack(list(self.last))
        best = max(range(len(self.rates)), key=lambda i: self.rates[i])
        return dict(best_steps_per_s=self.rates[best], median_steps_per_s=statistics.median(self.rates),
                    runs_steps_per_s=self.rates, cpu_share_best_run=self.cpu_shares[best],
                    cpu_share_min=min(self.cpu_shares), timed_steps=self.j - self.warmup_steps,
                    warmup_steps=self.warmup_steps, warmup_s=self.warmup_s, loss_first20=self.loss_first20,
                    loss_last100=float(last.mean()), finite=bool(torch.isfinite(last).all()))


def error_text(e):
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the timed work runs")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--min-time", type=float, default=2.0, help="seconds per timed run (at least)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per variant after the warm-up")
    ap.add_argument("--warmup", type=int, default=50, help="warm-up steps (at least 20 and 0.5 s)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    ap.add_argument("--compile-mode", default=None,
                    help="torch.compile mode (default: its default; e.g. max-autotune-no-cudagraphs)")
    ap.add_argument("--workloads", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if not (args.min_time > 0 and args.repeats >= 1 and args.threads >= 1):
        sys.exit("torch_train.py: --min-time must be > 0, --repeats and --threads >= 1")
    global DEVICE
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(f"torch_train.py: --device cuda, but torch {torch.__version__} sees no CUDA device (a CPU-only "
                 "wheel, or no GPU)")
    DEVICE = torch.device(args.device)

    torch.set_num_threads(args.threads)
    info = dict(torch=torch.__version__, threads=torch.get_num_threads(), cpus=CPUS,
                mkl=torch.backends.mkl.is_available(), python=sys.version.split()[0],
                dtype=str(DTYPE).replace("torch.", ""), optimizer=f"Adam(lr={LR})", device=args.device)
    if DEVICE.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(DEVICE), cuda=torch.version.cuda)
    print("# torch {torch}, {threads} threads ({cpus} CPUs usable), MKL {mkl}, Python {python}, {dtype}, "
          "{optimizer}".format(**info) + (f", on {info['gpu']} (CUDA {info['cuda']})" if "gpu" in info else ""))
    data = make_data()
    info["loadavg_before"] = loadavg()
    results = dict(info=info, workloads={})
    for w in workloads([n for n in args.workloads.split(",") if n]):
        batches = make_batches(w["batch"])
        flop = w["flop_per_sample"] * w["batch"]
        res = dict(batch=w["batch"], flop_per_step=flop, variants={})
        timers = {}
        for label, loss_fn, compiled in w["variants"]:
            if compiled and args.no_compile:
                continue
            try:
                timers[label] = VariantTimer(make_step(w, loss_fn, compiled, data, args.compile_mode), batches,
                                             args.threads)
                timers[label].warm_up(args.warmup)
            except Exception as e:  # torch.compile may be unavailable (no compiler) or refuse: say so
                timers.pop(label, None)
                res["variants"][label] = dict(error=error_text(e))
                print(f"{w['name']:15s} {label:21s} failed: {res['variants'][label]['error']}", flush=True)
        # Interleaved: a burst of other work on a shared machine then slows one run of every variant, not
        # all runs of one.
        for _ in range(args.repeats):
            for label, timer in list(timers.items()):
                try:
                    timer.run(args.min_time)
                except Exception as e:
                    del timers[label]
                    res["variants"][label] = dict(error=error_text(e))
                    print(f"{w['name']:15s} {label:21s} failed: {res['variants'][label]['error']}", flush=True)
        for label, timer in timers.items():
            r = timer.result()
            r["gflops"] = r["best_steps_per_s"] * flop * 1e-9
            res["variants"][label] = r
            print(f"{w['name']:15s} {label:21s} best {r['best_steps_per_s']:8.1f} steps/s  median "
                  f"{r['median_steps_per_s']:8.1f}  {r['gflops']:6.2f} GFLOP/s  CPU share {r['cpu_share_best_run']:.2f}"
                  f"  loss {r['loss_first20']:.4g} -> {r['loss_last100']:.4g}  (warm-up {r['warmup_s']:.1f} s)",
                  flush=True)
        line = dict(workload=w["name"], batch=w["batch"], flop_per_step=flop)
        for kind in ("eager", "compiled"):
            ok = [(k, v) for k, v in res["variants"].items() if k.startswith(kind) and "error" not in v]
            if ok:
                k, v = max(ok, key=lambda kv: kv[1]["best_steps_per_s"])
                res[kind] = k
                res[f"{kind}_steps_per_s"] = v["best_steps_per_s"]
                line[f"{kind}_variant"] = k
                line[f"{kind}_steps_per_s"] = f"{v['best_steps_per_s']:.1f}"
        ok = [(k, v) for k, v in res["variants"].items() if "error" not in v]
        if ok:
            k, v = max(ok, key=lambda kv: kv[1]["best_steps_per_s"])
            res["peer"] = k
            res["peer_steps_per_s"] = v["best_steps_per_s"]
            res["peer_gflops"] = v["gflops"]
            line.update(faster="compiled" if k.startswith("compiled") else "eager", peer=k,
                        peer_steps_per_s=f"{v['best_steps_per_s']:.1f}", peer_gflops=f"{v['gflops']:.3f}")
        line.update(torch=info["torch"], threads=info["threads"], device=info["device"])
        print("TRAIN_RESULT " + " ".join(f"{k}={v}" for k, v in line.items()), flush=True)
        results["workloads"][w["name"]] = res
    info["loadavg_after"] = loadavg()
    print(f"# load average (1, 5, 15 min) before {info['loadavg_before']}, after {info['loadavg_after']} (above 0: "
          "other work shared the machine)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print("RESULT_JSON " + json.dumps(results))


if __name__ == "__main__":
    main()
