#!/usr/bin/env bash
# Strong scaling over MPI ranks on this machine: builds benchmarks/scaling.cpp (preset bench, with MPI) and
# runs it as 1 rank x 1 thread, 1 rank x 2 threads and 2 ranks x 1 thread, on loopback; prints a Markdown
# table with the parallel efficiency of 2 ranks (throughput / twice the 1 x 1 throughput) beside that of
# 2 threads. The checksum column shows the three runs computed the same bits.
#   benchmarks/scaling.sh [workload]     train-mlp, train-unet or sample-pc (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."
setup_out=$(bash scripts/setup.sh)
kokkos=$(tail -n 1 <<<"$setup_out")
kernels=$(tail -n 2 <<<"$setup_out" | head -n 1)
build=build/bench
cmake --preset bench -B "$build" -DKokkos_ROOT="$kokkos" -DKokkosKernels_ROOT="$kernels" \
  -DSCOREKIT_ENABLE_MPI=ON >/dev/null
cmake --build "$build" --target scaling >/dev/null
# Root may run mpirun; containers forbid the single-copy mechanism's ptrace; ranks may outnumber cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMP_PROC_BIND=false
# OpenBLAS' core type detection: a value left in the environment from another machine slows it down.
unset OPENBLAS_CORETYPE
run() { OMP_NUM_THREADS=$2 mpirun -np "$1" --bind-to none "$build/benchmarks/scaling" "${@:3}"; }
out=$(mktemp)
{ run 1 1 "$@"; run 1 2 "$@"; run 2 1 "$@"; } | tee "$out" >&2
python3 - "$out" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
by = {}
for name, ranks, threads, sec, rate, unit, sums in rows:
    by.setdefault(name, {})[(int(ranks), int(threads))] = (float(rate), unit, sums)
print("| workload | unit | 1 rank x 1 thread | 1 rank x 2 threads | 2 ranks x 1 thread | efficiency, 2 threads | efficiency, 2 ranks | same bits |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for name, r in by.items():
    one, unit, s1 = r[(1, 1)]
    thr, _, s2 = r[(1, 2)]
    rk, _, s3 = r[(2, 1)]
    same = "yes" if s1 == s2 == s3 else "NO"
    print(f"| {name} | {unit} | {one:.4g} | {thr:.4g} | {rk:.4g} | {thr / (2 * one):.0%} | {rk / (2 * one):.0%} | {same} |")
PY
rm -f "$out"
