#!/usr/bin/env bash
# scorekit against PyTorch, side by side, on this machine, in one run:
#   1. set-up (scripts/setup.sh: packages and Kokkos; scripts/setup-bench.sh: the PyTorch venv),
#   2. build the benchmarks (cmake --preset bench; -O3 -march=native on the benchmark targets only),
#   3. fma_peak, bench_annealed_langevin (Kokkos::OpenMP, all threads), torch_annealed_langevin.py,
#   4. a table: workload, scorekit and PyTorch particle-steps/s, their ratio, scorekit's GFLOP/s and its
#      share of the machine's fp64 FMA peak (all threads, widest vectors),
#   5. bench_train and torch_train.py (float32 training steps/s of the seed paper's toy nets) and their table
#      against the fp32 FMA peak,
#   6. bench_reverse_sde and torch_reverse_sde.py (VE predictor-corrector, probability-flow Heun and DDIM,
#      float64) and their table, with a check that both compute the same probability-flow samples,
#   7. bench_image and torch_image.py (the score_sde-tutorial U-Net and NCSN's RefineNet reduced on 28 x 28
#      float32 images: a training step at batch 128, a score evaluation of 256, each U-Net convolution
#      alone) and their table against the fp32 FMA peak, checking both sides run networks of the same
#      parameter count and FLOP.
# PyTorch's figure is the faster of eager and torch.compile, best of its timed runs (after a warm-up);
# scorekit's is Google Benchmark's mean over its iterations: the comparison leans towards PyTorch.
# Everything is left in build/bench/compare/ (raw JSON and text).
#
# --device cuda compares on the GPU instead: it builds the benchmarks with the CUDA-enabled Kokkos at
# $Kokkos_ROOT (its nvcc_wrapper as the compiler, in build/bench-cuda/), runs the Kokkos::Cuda benchmarks
# (the ".../Cuda" names) against the PyTorch scripts with --device cuda (a CUDA build of PyTorch; the
# default PyPI wheel on Linux is one), and prints the same tables without the peak share (fma_peak measures
# the CPU; no GPU peak is measured). Results go to build/bench-cuda/compare/.
#
#   benchmarks/compare.sh [--particles-scale F] [--repeats R] [--only sampling|training|reverse|image]
#                         [--device cpu|cuda]
#   (F < 1 for a quick check)
#   Kokkos_ROOT=/path/to/kokkos-cuda benchmarks/compare.sh --device cuda
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

scale=1
repeats=3
only=""
device=cpu
while [ $# -gt 0 ]; do
  case "$1" in
    --particles-scale) scale="$2"; shift 2 ;;
    --repeats) repeats="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --device) device="$2"; shift 2 ;;
    *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$only" in
  ""|sampling|training|reverse|image) ;;
  *) echo "compare.sh: --only takes sampling, training, reverse or image, got $only" >&2; exit 2 ;;
esac
# Whether a section runs: all of them without --only, else the one named.
run_section() { [ -z "$only" ] || [ "$only" = "$1" ]; }
# The Kokkos backend whose benchmarks are compared: the last part of their names, before /manual_time.
case "$device" in
  cpu) backend=OpenMP ;;
  cuda)
    backend=Cuda
    kokkos="${Kokkos_ROOT:-}"
    common="$(ls "$kokkos"/lib*/cmake/Kokkos/KokkosConfigCommon.cmake 2>/dev/null | head -n 1 || true)"
    if [ -z "$kokkos" ] || [ -z "$common" ] || ! grep -q "set(Kokkos_DEVICES.*CUDA" "$common"; then
      echo "compare.sh: --device cuda needs Kokkos_ROOT set to the install prefix of a CUDA-enabled Kokkos" >&2
      exit 2
    fi
    if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q "^GPU"; then
      echo "compare.sh: --device cuda, but nvidia-smi lists no GPU on this machine" >&2
      exit 2
    fi
    ;;
  *) echo "compare.sh: --device takes cpu or cuda, got $device" >&2; exit 2 ;;
esac

echo "== set-up" >&2
scripts/setup.sh >/dev/null
python="$(scripts/setup-bench.sh | tail -n 1)"
if [ "$device" = cuda ] && ! "$python" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "compare.sh: --device cuda, but the PyTorch in $python sees no CUDA device (a CPU-only wheel?)" >&2
  exit 2
fi

# The examples are not needed here; leaving them out keeps the build short.
if [ "$device" = cpu ]; then
  echo "== build (preset bench)" >&2
  cmake --preset bench -DSCOREKIT_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build --preset bench
  build="build/bench"
else
  # The bench preset's flags and build type, against the CUDA Kokkos, in a folder of its own.
  build="build/bench-cuda"
  echo "== build (preset bench, $Kokkos_ROOT, in $build)" >&2
  cmake --preset bench -B "$build" -DSCOREKIT_BUILD_EXAMPLES=OFF -DKokkos_ROOT="$Kokkos_ROOT" \
    -DCMAKE_CXX_COMPILER="$Kokkos_ROOT/bin/nvcc_wrapper" >/dev/null
  cmake --build "$build" --target bench_annealed_langevin bench_train bench_reverse_sde
fi

out="$build/compare"
mkdir -p "$out"
bin="$build/benchmarks"

# Kokkos asks for bound threads; PyTorch runs under the same settings. One thread per core.
export OMP_PROC_BIND="${OMP_PROC_BIND:-spread}" OMP_PLACES="${OMP_PLACES:-threads}"
# OPENBLAS_CORETYPE overrides OpenBLAS's choice of kernels by the CPU (an environment can carry one
# without the user knowing: this project's development machines set "Haswell", AVX2 kernels on an AVX-512
# CPU, 1.6x slower in sgemm). The benchmarks measure the host BLAS as it runs by itself, so it is unset
# here unless SCOREKIT_BENCH_KEEP_OPENBLAS_CORETYPE=1; the kernels it ran are recorded in every table.
if [ -n "${OPENBLAS_CORETYPE:-}" ] && [ "${SCOREKIT_BENCH_KEEP_OPENBLAS_CORETYPE:-0}" != 1 ]; then
  echo "compare.sh: OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE is set in the environment; unsetting it, so that OpenBLAS" \
    "chooses its kernels by the CPU (SCOREKIT_BENCH_KEEP_OPENBLAS_CORETYPE=1 keeps it)" >&2
  unset OPENBLAS_CORETYPE
fi
cat /proc/loadavg >"$out/loadavg_before.txt"

# The CPU's FMA peak, which the CPU tables are read against (a GPU run has no measured peak).
if [ "$device" = cpu ]; then
echo "== fma_peak" >&2
"$bin/fma_peak" | tee "$out/fma_peak.txt"
fi

if run_section sampling; then
echo "== scorekit (Kokkos::$backend)" >&2
"$bin/bench_annealed_langevin" --benchmark_filter="/$backend" --benchmark_min_time=2 \
  --particles-scale="$scale" \
  --benchmark_out="$out/scorekit.json" --benchmark_out_format=json | tee "$out/scorekit.txt"

echo "== PyTorch ($device)" >&2
"$python" benchmarks/torch_annealed_langevin.py --device "$device" --particles-scale "$scale" \
  --repeats "$repeats" --json "$out/torch.json" 2>&1 | grep -v '^RESULT_JSON' | tee "$out/torch.txt"

fi
if run_section training; then
echo "== scorekit training (Kokkos::$backend)" >&2
"$bin/bench_train" --benchmark_filter="/$backend" --benchmark_min_time=2 --benchmark_repetitions="$repeats" \
  --benchmark_out="$out/scorekit_train.json" --benchmark_out_format=json | tee "$out/scorekit_train.txt"

echo "== PyTorch training ($device)" >&2
"$python" benchmarks/torch_train.py --device "$device" --repeats "$repeats" --json "$out/torch_train.json" 2>&1 \
  | grep -v '^RESULT_JSON' | tee "$out/torch_train.txt"
fi
if run_section reverse; then
echo "== scorekit reverse-SDE sampling (Kokkos::$backend)" >&2
"$bin/bench_reverse_sde" --benchmark_filter="/$backend" --benchmark_min_time=2 \
  --particles-scale="$scale" \
  --benchmark_out="$out/scorekit_reverse.json" --benchmark_out_format=json | tee "$out/scorekit_reverse.txt"

echo "== PyTorch reverse-SDE sampling ($device)" >&2
"$python" benchmarks/torch_reverse_sde.py --device "$device" --particles-scale "$scale" --repeats "$repeats" \
  --json "$out/torch_reverse.json" 2>&1 | grep -v '^RESULT_JSON' | tee "$out/torch_reverse.txt"
fi
if run_section image && [ -x "$bin/bench_image" ]; then
echo "== scorekit image networks (Kokkos::$backend)" >&2
"$bin/bench_image" --benchmark_filter="/$backend" --benchmark_min_time=3 \
  --benchmark_out="$out/scorekit_image.json" --benchmark_out_format=json | tee "$out/scorekit_image.txt"

echo "== PyTorch image networks ($device)" >&2
"$python" benchmarks/torch_image.py --repeats "$repeats" --json "$out/torch_image.json" 2>&1 \
  | grep -v '^RESULT_JSON' | tee "$out/torch_image.txt"
fi
cat /proc/loadavg >"$out/loadavg_after.txt"

if run_section sampling; then "$python" benchmarks/compare_tables.py sampling "$out" "$backend"; fi
if run_section training; then "$python" benchmarks/compare_tables.py training "$out" "$backend"; fi
if run_section reverse; then "$python" benchmarks/compare_tables.py reverse "$out" "$backend"; fi
if run_section image && [ -f "$out/scorekit_image.json" ]; then "$python" benchmarks/compare_tables.py image "$out" "$backend"; fi
