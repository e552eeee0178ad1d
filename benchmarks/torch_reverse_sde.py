#!/usr/bin/env python3
"""The peer for bench_reverse_sde.cpp: the same reverse-SDE sampling loops in PyTorch, written the way a
competent PyTorch user writes them (float64, no autograd, all particles in one tensor, the mixture scores of
torch_annealed_langevin.py vectorised over particles and components), timed eagerly and, where it works,
under torch.compile.

SDE: VE, sigma(t) = 0.01 (50 / 0.01)^t, g(t) = sigma(t) sqrt(2 log(50 / 0.01)), the kernel p_0t = N(x_0,
s_t^2 I) with s_t^2 = sigma(t)^2 - 0.01^2; the grid t_n = 1 + (1e-5 - 1) n / N. Loops (step n from t to t'):
  pc    Langevin corrector at t, x <- x + h s(x, s_t) + sqrt(2 h) z with h = 2 snr^2 s_t^2 (snr 0.16:
        scorekit's LangevinStepRule::noise_level, the same arithmetic on both sides), then the
        reverse-diffusion predictor x <- x + (s_t^2 - s_t'^2) s(x, s_t) + sqrt(s_t^2 - s_t'^2) z;
  heun  the probability-flow ODE dx/dt = -g(t)^2 s(x, s_t) / 2 by Heun's method (Euler predictor,
        trapezoidal corrector; two score evaluations a step).
  ddim  DDIM with eta = 0 (diffusers' DDIMScheduler written for VE): x <- x + k s(x, s_t) with
        k = s_t (s_t^2 - s_t'^2) / (s_t + s_t') (= s_t (s_t - s_t'), integrate/ddim.hpp's arithmetic); one
        score evaluation a step.
Both start from N(0, (50^2 - 0.01^2) I) drawn from the deterministic FormulaStream of
torch_annealed_langevin.py (seed 7 for mixture-2d, 8 for mixture-64d), as the C++ benchmark does; the
probability-flow loops (heun, ddim) are deterministic, so their final mean (pf_mean) must equal scorekit's to rounding.
The per-level constants of the score (one level per grid time) are computed before the timed loop, as
torch_annealed_langevin.py does for its ladder and as scorekit's PerturbedMixtureScore tabulates them.

On --device cuda the loops run on the GPU (the constants and the start computed on the CPU, the same
doubles on either device), and the timed region starts and ends with torch.cuda.synchronize().

Usage: torch_reverse_sde.py [--device cpu|cuda] [--repeats R] [--no-compile] [--json FILE]
                            [--particles-scale F] [--steps-scale F]
The last line printed is "RESULT_JSON {...}" (what benchmarks/compare.sh reads).
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# torch_annealed_langevin reads the CPU affinity before torch starts OpenMP (see there).
import torch_annealed_langevin as tal  # noqa: E402  (tal.DEVICE: the device set by --device)
from torch_annealed_langevin import (CPUS, DTYPE, FormulaStream, FullMixtureScore,  # noqa: E402
                                     IsotropicMixtureScore, device_info, sync, use_device, w2_parameters)

import numpy as np  # noqa: E402
import torch  # noqa: E402

SIGMA_MIN, SIGMA_MAX, T_END, SNR = 0.01, 50.0, 1e-5, 0.16


class VarianceExplodingSDE:
    """sde/variance_exploding.hpp, operation for operation (so the grid's constants are the same doubles)."""

    def __init__(self, sigma_min, sigma_max):
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.log_ratio = math.log(sigma_max / sigma_min)
        self.g_factor = math.sqrt(2 * math.log(sigma_max / sigma_min))
        self.prior_std = math.sqrt(sigma_max * sigma_max - sigma_min * sigma_min)

    def sigma(self, t):
        return self.sigma_min * math.exp(self.log_ratio * t)

    def diffusion(self, t):
        return self.sigma(t) * self.g_factor

    def kernel_std(self, t):
        v = self.sigma_min * self.sigma_min * math.expm1(2 * self.log_ratio * t)
        return math.sqrt(v) if v > 0 else 0.0


def uniform_times(t_start, t_end, n_steps):
    """integrate/integrate_common.hpp's uniform_times."""
    t = [t_start + (t_end - t_start) * n / n_steps for n in range(n_steps + 1)]
    t[-1] = t_end
    return t


def make_pc_step(score_fn):
    def step(x, h, noise_c, var, noise_p, *level):
        x = x + h * score_fn(x, *level) + noise_c * torch.randn_like(x)
        return x + var * score_fn(x, *level) + noise_p * torch.randn_like(x)

    return step


def make_heun_step(score_fn, n_level):
    def step(x, h, half, c0, c1, *levels):
        d = c0 * score_fn(x, *levels[:n_level])
        x1 = x + h * d
        x = x + half * d
        d = c1 * score_fn(x1, *levels[n_level:])
        return x + half * d

    return step


def make_ddim_step(score_fn):
    def step(x, k, *level):
        return x + k * score_fn(x, *level)

    return step


def scalar(v):
    # 0-d tensors, not Python floats: torch.compile would specialise (recompile) on each float.
    return torch.tensor(v, dtype=DTYPE, device=tal.DEVICE)


def pc_constants(sde, model, times):
    steps = []
    for t, tn in zip(times[:-1], times[1:]):
        s, sn = sde.kernel_std(t), sde.kernel_std(tn)
        h = 2 * 1.0 * (SNR * SNR) * s * s  # alpha = 1 for VE
        var = (s - sn) * (s + sn)
        steps.append((scalar(h), scalar(math.sqrt(2 * h)), scalar(var), scalar(math.sqrt(var)), model.level(s)))
    return steps


def heun_constants(sde, model, times):
    levels = [model.level(sde.kernel_std(t)) for t in times]
    steps = []
    for n, (t, tn) in enumerate(zip(times[:-1], times[1:])):
        h = tn - t
        g0, g1 = sde.diffusion(t), sde.diffusion(tn)
        steps.append((scalar(h), scalar(0.5 * h), scalar(-0.5 * g0 * g0), scalar(-0.5 * g1 * g1),
                      levels[n] + levels[n + 1]))
    return steps


def ddim_constants(sde, model, times):
    steps = []
    for t, tn in zip(times[:-1], times[1:]):
        s, sn = sde.kernel_std(t), sde.kernel_std(tn)
        var = (s - sn) * (s + sn)
        c = math.sqrt(sn * sn)
        steps.append((scalar(s * var / (s + c)), model.level(s)))
    return steps


def run_ddim(step, x, consts):
    sync()
    t0 = time.perf_counter()
    for k, lv in consts:
        x = step(x, k, *lv)
    sync()
    return x, time.perf_counter() - t0


def run_pc(step, x, consts):
    sync()
    t0 = time.perf_counter()
    for h, noise_c, var, noise_p, lv in consts:
        x = step(x, h, noise_c, var, noise_p, *lv)
    sync()
    return x, time.perf_counter() - t0


def run_heun(step, x, consts):
    sync()
    t0 = time.perf_counter()
    for h, half, c0, c1, lv in consts:
        x = step(x, h, half, c0, c1, *lv)
    sync()
    return x, time.perf_counter() - t0


def workloads(particles_scale, steps_scale):
    w1_model = IsotropicMixtureScore(np.array([0.2, 0.8]), np.array([[0.0, 0.0], [10.0, 10.0]]),
                                     np.array([1.0, 1.0]))
    weights, means, covs, checksum = w2_parameters()
    w2_model = FullMixtureScore(weights, means, covs)
    return [
        dict(name="mixture-2d", model=w1_model, n=max(1, int(10000 * particles_scale)), d=2,
             steps=max(1, int(1000 * steps_scale)), seed=7),
        dict(name="mixture-64d", model=w2_model, n=max(1, int(4096 * particles_scale)), d=64,
             steps=max(1, int(100 * steps_scale)), seed=8, checksum=checksum),
    ]


def start(sde, w):
    x = FormulaStream(w["seed"]).normal(w["n"] * w["d"]).reshape(w["n"], w["d"]) * sde.prior_std
    return torch.as_tensor(x, dtype=DTYPE).to(tal.DEVICE)


def time_loop(sde, w, loop, step, repeats):
    times = uniform_times(1.0, T_END, w["steps"])
    consts = dict(pc=pc_constants, heun=heun_constants, ddim=ddim_constants)[loop](sde, w["model"], times)
    run = dict(pc=run_pc, heun=run_heun, ddim=run_ddim)[loop]
    evaluations = 1 if loop == "ddim" else 2
    x0 = start(sde, w)
    results = []
    x = None
    for r in range(repeats + 1):  # the first run is a warm-up (and, under torch.compile, compiles)
        torch.manual_seed(42 + r)
        x, t = run(step, x0.clone(), consts)
        if r > 0:
            results.append(t)
    ps = w["n"] * w["steps"]
    out = dict(best_s=min(results), median_s=statistics.median(results), particle_steps=ps,
               score_evaluations=evaluations * ps, best_particle_steps_per_s=ps / min(results),
               median_particle_steps_per_s=ps / statistics.median(results),
               best_score_evals_per_s=evaluations * ps / min(results), finite=bool(torch.isfinite(x).all()),
               pf_mean=float(x.mean()))
    if w["d"] == 2:
        out["near_mode_0"] = float(((x[:, 0] + x[:, 1]) < 10).double().mean())
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the timed work runs")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs after one warm-up run")
    ap.add_argument("--threads", type=int, default=CPUS,
                    help="torch.set_num_threads (default: the CPUs this process may use)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    ap.add_argument("--particles-scale", type=float, default=1.0)
    ap.add_argument("--steps-scale", type=float, default=1.0)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    use_device(args.device)
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    info = dict(torch=torch.__version__, numpy=np.__version__, threads=torch.get_num_threads(),
                mkl=torch.backends.mkl.is_available(), python=sys.version.split()[0], **device_info())
    print("# torch {torch}, numpy {numpy}, {threads} threads, MKL {mkl}, Python {python}".format(**info)
          + (f", on {info['gpu']} (CUDA {info['cuda']})" if "gpu" in info else ""))
    sde = VarianceExplodingSDE(SIGMA_MIN, SIGMA_MAX)
    results = dict(info=info, workloads={})
    for w in workloads(args.particles_scale, args.steps_scale):
        n_level = len(w["model"].level(1.0))
        score = type(w["model"]).score
        for loop in ("pc", "heun", "ddim"):
            name = f"{loop}/{w['name']}"
            res = dict(particles=w["n"], steps=w["steps"])
            if "checksum" in w:
                res["parameter_checksum"] = w["checksum"]
            make = dict(pc=lambda: make_pc_step(score), heun=lambda: make_heun_step(score, n_level),
                        ddim=lambda: make_ddim_step(score))[loop]
            variants = [("eager", make())]
            if not args.no_compile:
                variants.append(("compiled", torch.compile(make(), fullgraph=True, dynamic=False)))
            for label, step in variants:
                try:
                    res[label] = time_loop(sde, w, loop, step, args.repeats)
                except Exception as e:  # torch.compile may be unavailable (no compiler, offline): say so
                    res[label] = dict(error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                    print(f"{name:18s} {label:9s} failed: {res[label]['error']}")
                    continue
                r = res[label]
                extra = f" near_mode_0={r['near_mode_0']:.4f}" if "near_mode_0" in r else ""
                print(f"{name:18s} {label:9s} best {r['best_s']:.4f} s  median {r['median_s']:.4f} s  "
                      f"{r['best_particle_steps_per_s']:.4g} particle-steps/s (best)  "
                      f"pf_mean={r['pf_mean']:.15g}{extra}")
            ok = [(label, res[label]) for label, _ in variants if "error" not in res[label]]
            if ok:
                label, best = max(ok, key=lambda lr: lr[1]["best_particle_steps_per_s"])
                res["peer"] = label
                res["peer_particle_steps_per_s"] = best["best_particle_steps_per_s"]
            results["workloads"][name] = res
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print("RESULT_JSON " + json.dumps(results))


if __name__ == "__main__":
    main()
