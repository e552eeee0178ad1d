#!/usr/bin/env python3
"""The peer for bench_annealed_langevin.cpp: the same annealed Langevin workloads in PyTorch, written the
way a competent PyTorch user writes them (float64, no autograd, all particles in one tensor, the score
of the perturbed mixture vectorised over particles and components, one GEMM per step for the 64-D
mixture), timed eagerly and, where it works, under torch.compile.

Annealed Langevin (Song and Ermon 2019, Algorithm 1): for each sigma_i, T steps of
    x <- x + alpha_i / 2 * s(x, sigma_i) + sqrt(alpha_i) z,   alpha_i = eps * sigma_i^2 / sigma_L^2.
The score of sum_k w_k N(mu_k, Sigma_k) convolved with N(0, sigma^2 I) is
    s(x) = -sum_k r_k(x) P_k (x - mu_k),   P_k = (Sigma_k + sigma^2 I)^-1,
    r = softmax_k(log w_k - log det(Sigma_k + sigma^2 I) / 2 - (x - mu_k)^T P_k (x - mu_k) / 2).
Per level the P_k come from one eigendecomposition Sigma_k = Q diag(lambda) Q^T; per step,
P_k (x - mu_k) = x P_k - P_k mu_k for all k is one (N, d) x (d, K d) matrix product.

On --device cuda the particles, the per-level constants and the random numbers live on the GPU; the
constants and the starting points are computed on the CPU first (the same doubles on either device), and
the timed region starts and ends with torch.cuda.synchronize(), so it measures the GPU's work, not the
launches.

Usage: torch_annealed_langevin.py [--device cpu|cuda] [--repeats R] [--no-compile] [--json FILE]
                                  [--particles-scale F]
The last line printed is "RESULT_JSON {...}" (what benchmarks/compare.sh reads).
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

# Read before torch and numpy start OpenMP: with OMP_PROC_BIND set, the runtime pins the main thread to
# one CPU, and the affinity mask read afterwards would say 1.
CPUS = len(os.sched_getaffinity(0))

import numpy as np  # noqa: E402
import torch  # noqa: E402

DTYPE = torch.float64
# Where the timed work runs: set once by use_device() (--device), read by everything below, and by
# torch_reverse_sde.py through this module.
DEVICE = torch.device("cpu")


def use_device(name):
    """Selects the device of the timed work ("cpu" or "cuda"); exits with a message if it is unavailable."""
    global DEVICE
    if name == "cuda" and not torch.cuda.is_available():
        sys.exit(f"{os.path.basename(sys.argv[0])}: --device cuda, but torch {torch.__version__} sees no CUDA "
                 "device (a CPU-only wheel, or no GPU)")
    DEVICE = torch.device(name)
    return DEVICE


def sync():
    """Waits for the device's queued work (a no-op on the CPU): the edges of every timed region."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def device_info():
    """The device part of a script's info record."""
    if DEVICE.type == "cuda":
        return dict(device="cuda", gpu=torch.cuda.get_device_name(DEVICE), cuda=torch.version.cuda)
    return dict(device="cpu")

# ------------------------------------------------------------------------------------------------
# The 64-D mixture's parameters: the formula of w2_parameters() in mixture_workloads.hpp. Draw n
# is a splitmix64 finaliser of seed + (n + 1) * golden ratio; a uniform takes one draw, a normal two
# (Box-Muller, cosine branch).
W2_SEED = 20240917


def _splitmix64(n, seed=W2_SEED):
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + (n + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


class FormulaStream:
    def __init__(self, seed=W2_SEED):
        self.seed = seed
        self.n = 0

    def uniform(self, count):
        idx = np.arange(self.n, self.n + count, dtype=np.uint64)
        self.n += count
        return ((_splitmix64(idx, self.seed) >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53

    def normal(self, count):
        u = self.uniform(2 * count)
        return np.sqrt(-2 * np.log(u[0::2])) * np.cos(2 * math.pi * u[1::2])


def w2_parameters(k=16, d=64):
    """Weights 0.5 + U(0,1); means 3 N(0,1); Sigma_k = A A^T / d + 0.5 I with A of N(0,1) entries."""
    rng = FormulaStream()
    weights = 0.5 + rng.uniform(k)
    means = 3 * rng.normal(k * d).reshape(k, d)
    covs = []
    for _ in range(k):
        a = rng.normal(d * d).reshape(d, d)
        covs.append(a @ a.T / d + 0.5 * np.eye(d))
    covs = np.stack(covs)
    flat = np.concatenate([weights, means.ravel(), covs.ravel()])
    checksum = float(np.sum(flat * (np.arange(flat.size) % 7 + 1)))
    return weights, means, covs, checksum


# ------------------------------------------------------------------------------------------------


def geometric_schedule(first, last, levels):
    ratio = math.log(last / first) / (levels - 1)
    s = [first * math.exp(ratio * i) for i in range(levels)]
    s[-1] = last
    return s


class IsotropicMixtureScore:
    """Components N(mu_k, v_k I): O(N K d) elementwise work per step. The parameters stay on the CPU; level()
    computes a level's constants there and returns them on DEVICE."""

    def __init__(self, weights, means, variances):
        self.logw = torch.log(torch.as_tensor(weights, dtype=DTYPE) / float(np.sum(weights)))
        self.mu = torch.as_tensor(means, dtype=DTYPE)
        self.var = torch.as_tensor(variances, dtype=DTYPE)
        self.d = self.mu.shape[1]

    def level(self, sigma):
        v = self.var + sigma * sigma
        return tuple(t.to(DEVICE) for t in (self.mu, 1.0 / v, self.logw - 0.5 * self.d * torch.log(v)))

    @staticmethod
    def score(x, mu, inv_v, c):
        diff = x.unsqueeze(1) - mu  # (N, K, d)
        logits = c - 0.5 * inv_v * diff.square().sum(-1)
        r = torch.softmax(logits, dim=1) * inv_v  # (N, K)
        return -(r.unsqueeze(-1) * diff).sum(1)


class FullMixtureScore:
    """Full covariances: per level P_k = Q_k diag(1 / (lambda_k + sigma^2)) Q_k^T, stacked as (d, K d).
    Computed on the CPU and returned on DEVICE, as IsotropicMixtureScore does."""

    def __init__(self, weights, means, covs):
        self.logw = torch.log(torch.as_tensor(weights, dtype=DTYPE) / float(np.sum(weights)))
        self.mu = torch.as_tensor(means, dtype=DTYPE)
        self.lam, self.q = torch.linalg.eigh(torch.as_tensor(covs, dtype=DTYPE))  # (K, d), (K, d, d)
        self.k, self.d = self.mu.shape

    def level(self, sigma):
        v = self.lam + sigma * sigma  # (K, d)
        p = torch.einsum("kij,kj,klj->kil", self.q, 1.0 / v, self.q)  # (K, d, d), symmetric
        p_cat = p.permute(1, 0, 2).reshape(self.d, self.k * self.d).contiguous()  # x @ p_cat = [P_k x]_k
        p_mu = torch.einsum("kij,kj->ki", p, self.mu)  # (K, d)
        c = self.logw - 0.5 * torch.log(v).sum(-1)  # (K,)
        return tuple(t.to(DEVICE) for t in (self.mu, p_cat, p_mu, c))

    @staticmethod
    def score(x, mu, p_cat, p_mu, c):
        n, d = x.shape
        y = (x @ p_cat).view(n, -1, d) - p_mu  # P_k (x - mu_k): (N, K, d)
        quad = ((x.unsqueeze(1) - mu) * y).sum(-1)  # (N, K)
        r = torch.softmax(c - 0.5 * quad, dim=1)
        return -torch.bmm(r.unsqueeze(1), y).squeeze(1)


def make_step(score_fn):
    def step(x, half_alpha, noise, *level):
        return x + half_alpha * score_fn(x, *level) + noise * torch.randn_like(x)

    return step


def annealed_langevin(step, model, x, sigmas, eps, steps_per_level):
    levels = []
    for s in sigmas:
        alpha = eps * s * s / (sigmas[-1] ** 2)
        # 0-d tensors, not Python floats: torch.compile would specialise (recompile) on each float.
        levels.append((torch.tensor(alpha / 2, dtype=DTYPE, device=DEVICE),
                       torch.tensor(math.sqrt(alpha), dtype=DTYPE, device=DEVICE), model.level(s)))
    sync()
    t0 = time.perf_counter()
    for half_alpha, noise, lv in levels:
        for _ in range(steps_per_level):
            x = step(x, half_alpha, noise, *lv)
    sync()
    return x, time.perf_counter() - t0


def workloads(scale):
    w1_model = IsotropicMixtureScore(np.array([0.2, 0.8]), np.array([[0.0, 0.0], [10.0, 10.0]]),
                                     np.array([1.0, 1.0]))
    n1 = max(1, int(10000 * scale))
    weights, means, covs, checksum = w2_parameters()
    w2_model = FullMixtureScore(weights, means, covs)
    n2 = max(1, int(4096 * scale))
    return [
        dict(name="mixture-2d", model=w1_model, n=n1, d=2, sigmas=geometric_schedule(20.0, 1.0, 10), eps=0.1,
             T=100, init=lambda g: torch.rand(n1, 2, dtype=DTYPE, generator=g) * 20 - 5,
             check=lambda x: ("near_mode_0", float(((x[:, 0] + x[:, 1]) < 10).double().mean()))),
        dict(name="mixture-64d", model=w2_model, n=n2, d=64, sigmas=geometric_schedule(20.0, 0.5, 10),
             eps=0.05, T=10, init=lambda g: 3 * torch.randn(n2, 64, dtype=DTYPE, generator=g), check=None,
             checksum=checksum),
    ]


def time_workload(w, step, repeats):
    g = torch.Generator().manual_seed(1)
    times = []
    x = None
    for r in range(repeats + 1):  # the first run is a warm-up (and, under torch.compile, compiles)
        x0 = w["init"](g).to(DEVICE)  # drawn on the CPU: the same start on every device
        torch.manual_seed(42 + r)
        x, t = annealed_langevin(step, w["model"], x0, w["sigmas"], w["eps"], w["T"])
        if r > 0:
            times.append(t)
    ps = w["n"] * len(w["sigmas"]) * w["T"]
    out = dict(best_s=min(times), median_s=statistics.median(times), particle_steps=ps,
               best_particle_steps_per_s=ps / min(times), median_particle_steps_per_s=ps / statistics.median(times),
               finite=bool(torch.isfinite(x).all()))
    if w["check"] is not None:
        name, value = w["check"](x)
        out[name] = value
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the timed work runs")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs after one warm-up run")
    ap.add_argument("--threads", type=int, default=CPUS,
                    help="torch.set_num_threads (default: the CPUs this process may use)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    ap.add_argument("--particles-scale", type=float, default=1.0)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    use_device(args.device)
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    info = dict(torch=torch.__version__, numpy=np.__version__, threads=torch.get_num_threads(),
                mkl=torch.backends.mkl.is_available(), python=sys.version.split()[0], **device_info())
    print("# torch {torch}, numpy {numpy}, {threads} threads, MKL {mkl}, Python {python}".format(**info)
          + (f", on {info['gpu']} (CUDA {info['cuda']})" if "gpu" in info else ""))
    results = dict(info=info, workloads={})
    for w in workloads(args.particles_scale):
        res = {}
        if "checksum" in w:
            res["parameter_checksum"] = w["checksum"]
        variants = [("eager", make_step(type(w["model"]).score))]
        if not args.no_compile:
            variants.append(("compiled", torch.compile(make_step(type(w["model"]).score), fullgraph=True,
                                                       dynamic=False)))
        for label, step in variants:
            try:
                res[label] = time_workload(w, step, args.repeats)
            except Exception as e:  # torch.compile may be unavailable (no compiler, offline): say so
                res[label] = dict(error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                print(f"{w['name']:12s} {label:9s} failed: {res[label]['error']}")
                continue
            r = res[label]
            extra = "".join(f" {k}={v:.4f}" for k, v in r.items() if k == "near_mode_0")
            print(f"{w['name']:12s} {label:9s} best {r['best_s']:.4f} s  median {r['median_s']:.4f} s  "
                  f"{r['best_particle_steps_per_s']:.4g} particle-steps/s (best){extra}")
        ok = [(label, res[label]) for label, _ in variants if "error" not in res[label]]
        if ok:
            label, best = max(ok, key=lambda lr: lr[1]["best_particle_steps_per_s"])
            res["peer"] = label
            res["peer_particle_steps_per_s"] = best["best_particle_steps_per_s"]
        results["workloads"][w["name"]] = res
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print("RESULT_JSON " + json.dumps(results))


if __name__ == "__main__":
    main()
