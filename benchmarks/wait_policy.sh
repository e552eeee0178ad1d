#!/usr/bin/env bash
# What OpenMP's wait policy does to training on a machine shared with other work: training steps/s of the
# fused Trainer (bench_train's ncsn_dsm_b128: the toy NCSN's DSM steps, batch 128) with 1 and 2 OpenMP
# threads, on an otherwise idle machine and beside 1, 2, ... busy processes (shell loops, one core's worth
# of other work each), under libgomp's default wait policy and OMP_WAIT_POLICY=passive and active.
#   benchmarks/wait_policy.sh [bench_train executable, default build/bench/benchmarks/bench_train]
# Run it on an otherwise idle machine: it makes the busy process itself.
set -euo pipefail
exe="${1:-build/bench/benchmarks/bench_train}"
steps() {  # threads, policy (or "default"): steps/s
  local env=(OMP_PROC_BIND=false OMP_NUM_THREADS="$1")
  [ "$2" != default ] && env+=(OMP_WAIT_POLICY="$2")
  env -u OPENBLAS_CORETYPE -u OMP_WAIT_POLICY "${env[@]}" "$exe" --benchmark_filter='ncsn_dsm_b128/OpenMP' \
    --benchmark_min_time=2 2>/dev/null | sed -n 's/.*steps_per_s=\([0-9.]*k\?\).*/\1/p'
}
row() {
  printf '| %s | %s | %s | %s | %s |\n' "$1" "$(steps 1 default)" "$(steps 2 default)" "$(steps 2 passive)" \
    "$(steps 2 active)"
}
echo "| machine | 1 thread | 2 threads (libgomp default) | 2 threads, OMP_WAIT_POLICY=passive | 2 threads, active |"
echo "| --- | --- | --- | --- | --- |"
row "idle ($(nproc) cores)"
busy=()
trap 'kill "${busy[@]}" 2>/dev/null' EXIT
for k in $(seq 1 "$(nproc)"); do
  ( while :; do :; done ) &
  busy+=($!)
  row "$k of $(nproc) cores busy with other work"
done
