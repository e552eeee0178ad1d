#!/usr/bin/env bash
# scorekit against PyTorch, side by side, on this machine, in one run:
#   1. set-up (scripts/setup.sh: packages and Kokkos; scripts/setup-bench.sh: the PyTorch venv),
#   2. build the benchmarks (cmake --preset bench; -O3 -march=native on the benchmark targets only),
#   3. fma_peak, bench_annealed_langevin (Kokkos::OpenMP, all threads), torch_annealed_langevin.py,
#   4. a table: workload, scorekit and PyTorch particle-steps/s, their ratio, scorekit's GFLOP/s and its
#      share of the machine's fp64 FMA peak (all threads, widest vectors),
#   5. bench_train and torch_train.py (float32 training steps/s of the seed paper's toy nets) and their table
#      against the fp32 FMA peak.
# PyTorch's figure is the faster of eager and torch.compile, best of its timed runs (after a warm-up);
# scorekit's is Google Benchmark's mean over its iterations: the comparison leans towards PyTorch.
# Everything is left in build/bench/compare/ (raw JSON and text).
#
#   benchmarks/compare.sh [--particles-scale F] [--repeats R] [--only sampling|training]
#   (F < 1 for a quick check)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

scale=1
repeats=3
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --particles-scale) scale="$2"; shift 2 ;;
    --repeats) repeats="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

echo "== set-up" >&2
scripts/setup.sh >/dev/null
python="$(scripts/setup-bench.sh | tail -n 1)"

echo "== build (preset bench)" >&2
# The examples are not needed here; leaving them out keeps the build short.
cmake --preset bench -DSCOREKIT_BUILD_EXAMPLES=OFF >/dev/null
cmake --build --preset bench

out="build/bench/compare"
mkdir -p "$out"
bin="build/bench/benchmarks"

# Kokkos asks for bound threads; PyTorch runs under the same settings. One thread per core.
export OMP_PROC_BIND="${OMP_PROC_BIND:-spread}" OMP_PLACES="${OMP_PLACES:-threads}"
cat /proc/loadavg >"$out/loadavg_before.txt"

echo "== fma_peak" >&2
"$bin/fma_peak" | tee "$out/fma_peak.txt"

if [ "$only" != "training" ]; then
echo "== scorekit (Kokkos::OpenMP)" >&2
"$bin/bench_annealed_langevin" --benchmark_filter='/OpenMP' --benchmark_min_time=2 \
  --particles-scale="$scale" \
  --benchmark_out="$out/scorekit.json" --benchmark_out_format=json | tee "$out/scorekit.txt"

echo "== PyTorch" >&2
"$python" benchmarks/torch_annealed_langevin.py --particles-scale "$scale" --repeats "$repeats" \
  --json "$out/torch.json" 2>&1 | grep -v '^RESULT_JSON' | tee "$out/torch.txt"

fi
if [ "$only" != "sampling" ]; then
echo "== scorekit training (Kokkos::OpenMP)" >&2
"$bin/bench_train" --benchmark_min_time=2 --benchmark_repetitions="$repeats" \
  --benchmark_out="$out/scorekit_train.json" --benchmark_out_format=json | tee "$out/scorekit_train.txt"

echo "== PyTorch training" >&2
"$python" benchmarks/torch_train.py --repeats "$repeats" --json "$out/torch_train.json" 2>&1 \
  | grep -v '^RESULT_JSON' | tee "$out/torch_train.txt"
fi
cat /proc/loadavg >"$out/loadavg_after.txt"

[ "$only" = "training" ] || "$python" - "$out" <<'EOF'
import json, sys
out = sys.argv[1]
sk = json.load(open(f"{out}/scorekit.json"))
pt = json.load(open(f"{out}/torch.json"))
peak = {}
for line in open(f"{out}/fma_peak.txt"):
    f = line.split()
    if len(f) == 4 and f[0] in ("fp64", "fp32"):
        key = (f[0], int(f[2]))
        peak[key] = max(peak.get(key, 0.0), float(f[3]))
threads = max(t for p, t in peak if p == "fp64")
fp64_peak = peak[("fp64", threads)]
ctx = sk["context"]
print()
print(f"scorekit {ctx.get('scorekit_git_hash')}, Kokkos {ctx.get('kokkos_version')} "
      f"({ctx.get('kokkos_backends')}), {ctx.get('kokkos_openmp_threads')} OpenMP threads, {ctx.get('compiler')}, "
      f"{ctx.get('benchmark_flags')}")
info = pt["info"]
print(f"PyTorch {info['torch']}, {info['threads']} threads, MKL {info['mkl']}; fp64 FMA peak "
      f"{fp64_peak:.1f} GFLOP/s on {threads} threads")
loadavg = lambda f: " ".join(open(f"{out}/{f}").read().split()[:3])
print(f"load average (1, 5, 15 min) before: {loadavg('loadavg_before.txt')}, after: {loadavg('loadavg_after.txt')}"
      " (above 0 means other work shared the machine)")
sk_ck = float(ctx.get("mixture_64d_parameter_checksum", "nan"))
pt_ck = pt["workloads"].get("mixture-64d", {}).get("parameter_checksum", float("nan"))
same = abs(sk_ck - pt_ck) <= 1e-9 * abs(sk_ck)
print(f"mixture-64d parameters: checksum scorekit {sk_ck:.12g}, PyTorch {pt_ck:.12g}: "
      + ("the same" if same else "DIFFERENT: the workloads do not match"))
print()
hdr = f"{'workload':12s} | {'scorekit p-steps/s':>18s} | {'PyTorch p-steps/s':>17s} | {'PyTorch variant':>15s} | " \
      f"{'ratio':>6s} | {'scorekit GFLOP/s':>16s} | {'% fp64 peak':>11s} | {'near_mode_0 sk / pt':>19s}"
print(hdr)
print("-" * len(hdr))
rows = {}
for b in sk["benchmarks"]:
    name = b["name"].split("/")
    if b.get("run_type", "iteration") != "iteration" or "OpenMP" not in name:
        continue
    rows[name[1]] = b
for w, b in rows.items():
    p = pt["workloads"].get(w, {})
    sps = b["particle_steps_per_s"]
    peer = p.get("peer_particle_steps_per_s")
    variant = p.get("peer", "-")
    ratio = f"{sps / peer:6.2f}" if peer else "     -"
    gf = b["GFLOP/s"]
    mode = "-"
    if "near_mode_0" in b:
        pm = p.get(variant, {}).get("near_mode_0")
        mode = f"{b['near_mode_0']:.3f} / " + (f"{pm:.3f}" if pm is not None else "-")
    print(f"{w:12s} | {sps:18.4g} | {peer if peer else float('nan'):17.4g} | {variant:>15s} | {ratio} | "
          f"{gf:16.2f} | {100 * gf / fp64_peak:10.1f}% | {mode:>19s}")
print()
print("ratio = scorekit / PyTorch particle-steps/s (> 1: scorekit is faster). near_mode_0: fraction of particles")
print("nearer (0,0) than (10,10), should be about 0.2.")
EOF

[ "$only" = "sampling" ] || "$python" - "$out" <<'EOF'
import json, sys
out = sys.argv[1]
sk = json.load(open(f"{out}/scorekit_train.json"))
pt = json.load(open(f"{out}/torch_train.json"))
peak = {}
for line in open(f"{out}/fma_peak.txt"):
    f = line.split()
    if len(f) == 4 and f[0] in ("fp64", "fp32"):
        key = (f[0], int(f[2]))
        peak[key] = max(peak.get(key, 0.0), float(f[3]))
threads = max(t for p, t in peak if p == "fp32")
fp32_peak = peak[("fp32", threads)]
info = pt["info"]
print()
print(f"Training, float32: PyTorch {info['torch']}, {info['threads']} threads; fp32 FMA peak {fp32_peak:.1f} GFLOP/s "
      f"on {threads} threads")
hdr = f"{'workload':15s} | {'scorekit steps/s':>16s} | {'PyTorch steps/s':>15s} | {'PyTorch variant':>22s} | " \
      f"{'ratio':>6s} | {'scorekit GFLOP/s':>16s} | {'% fp32 peak':>11s}"
print(hdr)
print("-" * len(hdr))
runs = {}
for b in sk["benchmarks"]:
    if b.get("run_type", "iteration") != "iteration":
        continue
    runs.setdefault(b["name"].split("/")[0], []).append(b)
for w, bs in runs.items():
    best = max(bs, key=lambda b: b["steps_per_s"])  # best of the repetitions, as for PyTorch
    p = pt["workloads"].get(w, {})
    peer = p.get("peer_steps_per_s")
    ratio = f"{best['steps_per_s'] / peer:6.2f}" if peer else "     -"
    gf = best["GFLOP/s"]
    print(f"{w:15s} | {best['steps_per_s']:16.1f} | {peer if peer else float('nan'):15.1f} | {p.get('peer', '-'):>22s} | "
          f"{ratio} | {gf:16.2f} | {100 * gf / fp32_peak:10.1f}%")
print()
print("ratio = scorekit / PyTorch training steps/s, both the best of their timed runs (> 1: scorekit is faster);")
print("GFLOP/s counts the dense layers only (see bench_train.cpp and torch_train.py).")
EOF
