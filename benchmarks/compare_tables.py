#!/usr/bin/env python3
"""The tables benchmarks/compare.sh prints from its raw results:
    compare_tables.py sampling|training|reverse|image DIR [BACKEND]
BACKEND is the Kokkos backend whose scorekit rows are compared (the last part of the benchmark names before
/manual_time): OpenMP (default; PyTorch ran on the CPU) or Cuda / HIP (PyTorch ran on the GPU). On a GPU
backend there is no measured peak to compare with (fma_peak measures the CPU), so the share column is "-"."""
import json
import sys

GPU_BACKENDS = ("Cuda", "HIP")


def read_peak(out):
    """The FMA peaks fma_peak measured, {(precision, threads): GFLOP/s}, best over vector widths."""
    peak = {}
    for line in open(f"{out}/fma_peak.txt"):
        f = line.split()
        if len(f) == 4 and f[0] in ("fp64", "fp32"):
            key = (f[0], int(f[2]))
            peak[key] = max(peak.get(key, 0.0), float(f[3]))
    return peak


def cpu_peak(out, precision, backend):
    """(peak GFLOP/s, threads) of the CPU for the share column, or (None, None) on a GPU backend."""
    if backend in GPU_BACKENDS:
        return None, None
    peak = read_peak(out)
    threads = max(t for p, t in peak if p == precision)
    return peak[(precision, threads)], threads


def share(gflops, peak):
    """The share column: scorekit's GFLOP/s as a percentage of the peak, "-" without one."""
    return f"{100 * gflops / peak:10.1f}%" if peak else f"{'-':>11s}"


def scorekit_where(ctx, backend):
    """Where scorekit ran: the OpenMP threads, or the GPU that the benchmark recorded."""
    if backend in GPU_BACKENDS:
        return f"Kokkos::{backend} on {ctx.get('cuda_device', ctx.get('hip_device', 'an unnamed GPU'))}"
    return f"{ctx.get('kokkos_openmp_threads')} OpenMP threads, OpenBLAS kernels {ctx.get('openblas_core', '?')}"


def torch_where(info):
    """Where PyTorch ran: its threads and MKL, or its GPU."""
    if info.get("device", "cpu") != "cpu":
        return f"on {info.get('gpu', info['device'])} (CUDA {info.get('cuda')})"
    return f"{info['threads']} threads, MKL {info['mkl']}"


def peak_text(precision, peak, threads):
    if peak is None:
        return "no GPU peak measured (the share column is left empty)"
    return f"{precision} FMA peak {peak:.1f} GFLOP/s on {threads} threads"


def sampling(out, backend="OpenMP"):
    sk = json.load(open(f"{out}/scorekit.json"))
    pt = json.load(open(f"{out}/torch.json"))
    fp64_peak, threads = cpu_peak(out, "fp64", backend)
    ctx = sk["context"]
    print()
    print(f"scorekit {ctx.get('scorekit_git_hash')}, Kokkos {ctx.get('kokkos_version')} "
          f"({ctx.get('kokkos_backends')}), {scorekit_where(ctx, backend)}, {ctx.get('compiler')}, "
          f"{ctx.get('benchmark_flags')}")
    info = pt["info"]
    print(f"PyTorch {info['torch']}, {torch_where(info)}; {peak_text('fp64', fp64_peak, threads)}")
    loadavg = lambda f: " ".join(open(f"{out}/{f}").read().split()[:3])
    print(f"load average (1, 5, 15 min) before: {loadavg('loadavg_before.txt')}, after: {loadavg('loadavg_after.txt')}"
          " (above 0 means other work shared the machine)")
    sk_ck = float(ctx.get("mixture_64d_parameter_checksum", "nan"))
    pt_ck = pt["workloads"].get("mixture-64d", {}).get("parameter_checksum", float("nan"))
    same = abs(sk_ck - pt_ck) <= 1e-9 * abs(sk_ck)
    print(f"mixture-64d parameters: checksum scorekit {sk_ck:.12g}, PyTorch {pt_ck:.12g}: "
          + ("the same" if same else "DIFFERENT: the workloads do not match"))
    print()
    hdr = f"{'workload':20s} | {'scorekit p-steps/s':>18s} | {'PyTorch p-steps/s':>17s} | {'PyTorch variant':>15s} | " \
          f"{'ratio':>6s} | {'scorekit GFLOP/s':>16s} | {'% fp64 peak':>11s} | {'near_mode_0 sk / pt':>19s}"
    print(hdr)
    print("-" * len(hdr))
    rows = {}
    for b in sk["benchmarks"]:
        name = b["name"].split("/")
        if b.get("run_type", "iteration") != "iteration" or backend not in name:
            continue
        rows[name[1]] = b
    for w, b in rows.items():
        # "mixture-64d-batched": scorekit's batched path on the same workload, against the same peer.
        p = pt["workloads"].get(w.replace("-batched", ""), {})
        sps = b["particle_steps_per_s"]
        peer = p.get("peer_particle_steps_per_s")
        variant = p.get("peer", "-")
        ratio = f"{sps / peer:6.2f}" if peer else "     -"
        gf = b["GFLOP/s"]
        mode = "-"
        if "near_mode_0" in b:
            pm = p.get(variant, {}).get("near_mode_0")
            mode = f"{b['near_mode_0']:.3f} / " + (f"{pm:.3f}" if pm is not None else "-")
        print(f"{w:20s} | {sps:18.4g} | {peer if peer else float('nan'):17.4g} | {variant:>15s} | {ratio} | "
              f"{gf:16.2f} | {share(gf, fp64_peak)} | {mode:>19s}")
    print()
    print("ratio = scorekit / PyTorch particle-steps/s (> 1: scorekit is faster). near_mode_0: fraction of particles")
    print("nearer (0,0) than (10,10), should be about 0.2. -batched: scorekit's batch-synchronous path")
    print("(BatchedMixtureScore: one batched score call a step, one GEMM for full covariances).")


def reverse(out, backend="OpenMP"):
    """bench_reverse_sde against torch_reverse_sde.py: VE predictor-corrector, probability-flow Heun, DDIM."""
    sk = json.load(open(f"{out}/scorekit_reverse.json"))
    pt = json.load(open(f"{out}/torch_reverse.json"))
    fp64_peak, threads = cpu_peak(out, "fp64", backend)
    ctx = sk["context"]
    info = pt["info"]
    print()
    print(f"Reverse-SDE sampling (VE 0.01 -> 50, float64): scorekit {ctx.get('scorekit_git_hash')}, "
          f"{scorekit_where(ctx, backend)}; PyTorch {info['torch']}, {torch_where(info)}; "
          f"{peak_text('fp64', fp64_peak, threads)}")
    sk_ck = float(ctx.get("mixture_64d_parameter_checksum", "nan"))
    pt_ck = next((w["parameter_checksum"] for w in pt["workloads"].values() if "parameter_checksum" in w),
                 float("nan"))
    same = abs(sk_ck - pt_ck) <= 1e-9 * abs(sk_ck)
    print(f"mixture-64d parameters: checksum scorekit {sk_ck:.12g}, PyTorch {pt_ck:.12g}: "
          + ("the same" if same else "DIFFERENT: the workloads do not match"))
    print()
    hdr = f"{'loop / workload':26s} | {'scorekit p-steps/s':>18s} | {'PyTorch p-steps/s':>17s} | " \
          f"{'PyTorch variant':>15s} | {'ratio':>6s} | {'scorekit GFLOP/s':>16s} | {'% fp64 peak':>11s} | check"
    print(hdr)
    print("-" * (len(hdr) + 40))
    for b in sk["benchmarks"]:
        name = b["name"].split("/")
        if b.get("run_type", "iteration") != "iteration" or backend not in name:
            continue
        # The batched loops ("pc-batched") run the same workload as the fused ones: the same PyTorch peer.
        key = f"{name[1]}/{name[2]}"
        p = pt["workloads"].get(f"{name[1].replace('-batched', '')}/{name[2]}", {})
        sps = b["particle_steps_per_s"]
        peer = p.get("peer_particle_steps_per_s")
        variant = p.get("peer", "-")
        ratio = f"{sps / peer:6.2f}" if peer else "     -"
        gf = b["GFLOP/s"]
        r = p.get(variant, {})
        if name[1].startswith("heun") or name[1].startswith("ddim"):
            # Deterministic: the two final means must agree to rounding.
            a, c = b["pf_mean"], r.get("pf_mean", float("nan"))
            rel = abs(a - c) / max(abs(a), 1e-300)
            check = f"pf_mean {a:.12g} / {c:.12g} (rel. diff. {rel:.1e})"
        elif "near_mode_0" in b:
            peer_mode = f"{r['near_mode_0']:.3f}" if "near_mode_0" in r else "-"
            check = f"near_mode_0 {b['near_mode_0']:.3f} / {peer_mode}"
        else:
            check = f"mean {b['pf_mean']:.4f} / " + (f"{r['pf_mean']:.4f}" if "pf_mean" in r else "-")
        if b.get("tabulated_fraction", 1) != 1:
            check += f"; only {100 * b['tabulated_fraction']:.0f}% of the levels tabulated"
        print(f"{key:26s} | {sps:18.4g} | {peer if peer else float('nan'):17.4g} | {variant:>15s} | {ratio} | "
              f"{gf:16.2f} | {share(gf, fp64_peak)} | {check}")
    print()
    print("ratio = scorekit / PyTorch particle-steps/s (> 1: scorekit is faster); pc and heun make 2 score")
    print("evaluations a step, ddim 1. GFLOP/s counts the score evaluations only. check: scorekit / PyTorch; pf_mean")
    print("is the mean final coordinate of the deterministic probability-flow runs (heun, ddim) from the same start")
    print("(equal to rounding when both compute the same thing); near_mode_0 (pc, 2-D) is the fraction nearer (0,0), about 0.2, with other noise.")
    print("-batched: scorekit's batch-synchronous path (BatchedMixtureScore: one batched score call an evaluation,")
    print("GEMMs through Kokkos Kernels for full covariances) on the same workload, against the same PyTorch figure.")


def training(out, backend="OpenMP"):
    sk = json.load(open(f"{out}/scorekit_train.json"))
    pt = json.load(open(f"{out}/torch_train.json"))
    fp32_peak, threads = cpu_peak(out, "fp32", backend)
    info = pt["info"]
    print()
    print(f"Training, float32: scorekit {scorekit_where(sk['context'], backend)}; PyTorch {info['torch']}, "
          f"{torch_where(info) if info.get('device', 'cpu') != 'cpu' else str(info['threads']) + ' threads'}; "
          f"{peak_text('fp32', fp32_peak, threads)}")
    hdr = f"{'workload':15s} | {'scorekit steps/s':>16s} | {'PyTorch steps/s':>15s} | {'PyTorch variant':>22s} | " \
          f"{'ratio':>6s} | {'scorekit GFLOP/s':>16s} | {'% fp32 peak':>11s}"
    print(hdr)
    print("-" * len(hdr))
    runs = {}
    for b in sk["benchmarks"]:
        name = b["name"].split("/")  # workload/backend/manual_time
        if b.get("run_type", "iteration") != "iteration" or backend not in name:
            continue
        runs.setdefault(name[0], []).append(b)
    for w, bs in runs.items():
        best = max(bs, key=lambda b: b["steps_per_s"])  # best of the repetitions, as for PyTorch
        p = pt["workloads"].get(w, {})
        peer = p.get("peer_steps_per_s")
        ratio = f"{best['steps_per_s'] / peer:6.2f}" if peer else "     -"
        gf = best["GFLOP/s"]
        print(f"{w:15s} | {best['steps_per_s']:16.1f} | {peer if peer else float('nan'):15.1f} | {p.get('peer', '-'):>22s} | "
              f"{ratio} | {gf:16.2f} | {share(gf, fp32_peak)}")
    print()
    print("ratio = scorekit / PyTorch training steps/s, both the best of their timed runs (> 1: scorekit is faster);")
    print("GFLOP/s counts the dense layers only (see bench_train.cpp and torch_train.py).")


def image(out, backend="OpenMP"):
    sk = json.load(open(f"{out}/scorekit_image.json"))
    pt = json.load(open(f"{out}/torch_image.json"))
    fp32_peak, threads = cpu_peak(out, "fp32", backend)
    meta = pt["meta"]
    print()
    print(f"Image networks (U-Net, RefineNet-lite; 28 x 28, float32): scorekit {scorekit_where(sk['context'], backend)}; PyTorch "
          f"{meta['torch']}, {meta['threads']} threads (oneDNN {meta['mkldnn']}); {peak_text('fp32', fp32_peak, threads)}")
    hdr = f"{'workload':20s} | {'scorekit /s':>11s} | {'PyTorch /s':>10s} | {'PyTorch variant':>22s} | {'ratio':>6s} | " \
          f"{'scorekit GFLOP/s':>16s} | {'% fp32 peak':>11s}"
    print(hdr)
    print("-" * len(hdr))
    rate_key = {"unet_train_b128": "steps_per_s", "unet_score_b256": "evaluations_per_s",
                "unet_vjp_b256": "evaluations_per_s", "refinenet_train_b128": "steps_per_s",
                "refinenet_score_b256": "evaluations_per_s"}
    mismatches, notes = [], []
    conv_flop, conv_s = 0.0, 0.0
    for b in sk["benchmarks"]:
        name = b["name"].split("/")
        if b.get("run_type", "iteration") != "iteration" or backend not in name:
            continue
        w = name[0]
        gf = b["GFLOP/s"]
        if w in rate_key:
            r = pt["results"].get(w, {})
            peer = r.get("peer")
            peer_rate = r["variants"][peer]["best_per_s"] if peer else None
            mine = b[rate_key[w]]
            # The same network on both sides: the parameter counts (where both report one) and the FLOP.
            if "parameters" in b and "parameters" in r and int(round(b["parameters"])) != r["parameters"]:
                mismatches.append(f"{w}: scorekit has {int(round(b['parameters']))} parameters, PyTorch {r['parameters']}")
            if "FLOP_per_step" in b and "flop" in r and abs(b["FLOP_per_step"] - r["flop"]) > 1e-4 * r["flop"]:
                notes.append(f"{w}: scorekit counts {b['FLOP_per_step']:.6g} FLOP a step, PyTorch {r['flop']:.6g} "
                             f"(scorekit's count includes the dense layers on the features, which are 1 x 1 convolutions)")
            ratio = f"{mine / peer_rate:6.2f}" if peer_rate else "     -"
            print(f"{w:20s} | {mine:11.3f} | {peer_rate if peer_rate else float('nan'):10.3f} | {peer or '-':>22s} | "
                  f"{ratio} | {gf:16.1f} | {share(gf, fp32_peak)}")
        elif not w.startswith("conv_"):  # a scorekit-only variant (no peer row), e.g. unet_vjp_with_gradient
            mine = b.get("evaluations_per_s", b.get("steps_per_s", float("nan")))
            print(f"{w:20s} | {mine:11.3f} | {'':>10s} | {'':>22s} | {'':>6s} | {gf:16.1f} | {share(gf, fp32_peak)}")
        else:  # one convolution alone: forward, weight gradient, input adjoint
            seconds = b["real_time"] * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
            conv_flop += gf * 1e9 * seconds
            conv_s += seconds
            print(f"{w:20s} | {1000.0 / b['real_time'] if b['time_unit'] == 'ms' else float('nan'):11.2f} | "
                  f"{'':>10s} | {'':>22s} | {'':>6s} | {gf:16.1f} | {share(gf, fp32_peak)}")
    if conv_s > 0:
        # The six convolutions are each of the U-Net's once: together, the convolutions of one training step
        # (at the batch of the conv_* rows), at their FLOP-weighted rate.
        gf = conv_flop / conv_s / 1e9
        print(f"{'conv_* together':20s} | {1.0 / conv_s:11.2f} | {'':>10s} | {'':>22s} | {'':>6s} | {gf:16.1f} | "
              f"{share(gf, fp32_peak)}")
    print()
    print("ratio = scorekit / PyTorch (steps or evaluations per second; > 1: scorekit is faster), PyTorch the fastest")
    print("of eager and torch.compile, NCHW and channels_last; conv_* rows: one convolution of the U-Net at batch 128")
    print("(forward, weight gradient, input adjoint) per second. GFLOP/s count the convolutions only (bench_image.cpp).")
    for m in notes:
        print("note: " + m)
    for m in mismatches:
        print("MISMATCH: " + m)
    if mismatches:
        sys.exit("compare_tables.py image: the two sides do not run the same network")


if __name__ == "__main__":
    {"sampling": sampling, "training": training, "reverse": reverse, "image": image}[sys.argv[1]](
        sys.argv[2], *(sys.argv[3:4] or ["OpenMP"]))
