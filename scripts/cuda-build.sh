#!/usr/bin/env bash
# Builds scorekit against a CUDA-enabled Kokkos 4.x, as a user with such a Kokkos would: every public
# header on its own, the whole test binary, every example and every benchmark. On a machine with a GPU it
# then runs the tests (every test case on Kokkos::Cuda as well as on the host backends); without one it
# compiles only. Either way it ends with a report: what was built, how long it took, what ran.
#
#   Kokkos_ROOT=/path/to/kokkos-cuda scripts/cuda-build.sh [target ...]
#
#   Kokkos_ROOT          the install prefix of a Kokkos built with -DKokkos_ENABLE_CUDA=ON (and the
#                        architecture of your GPU, e.g. -DKokkos_ARCH_HOPPER90=ON); required. It is
#                        built outside this repository, like any user's Kokkos.
#   KokkosKernels_ROOT   (optional) a Kokkos Kernels built against that Kokkos (cuBLAS as its TPL): the
#                        batched path's dense products (core/blas.hpp, nn/image/, BatchedMixtureScore)
#                        and their tests and benchmarks are built only with it
#   SCOREKIT_ENABLE_MPI  ON: also configure distributed/ (an MPI found through nvcc_wrapper) and build
#                        its headers and the MPI test binaries
#   SCOREKIT_BUILD_DIR   the build folder (default build/cuda)
#   SCOREKIT_JOBS        parallel compile jobs (default: nproc; nvcc needs about 2-3 GB per job)
#   targets              build only these (e.g. scorekit_headers_self_contained, scorekit_tests);
#                        default: all of the above
#
# Device code that calls a host function is an error here (-Werror=cross-execution-space-call, set by
# CMakeLists.txt for CUDA builds): nvcc 13 otherwise only warns and drops the call, leaving a kernel that
# compiles and silently does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

kokkos="${Kokkos_ROOT:?set Kokkos_ROOT to the install prefix of a CUDA-enabled Kokkos}"
common="$(ls "$kokkos"/lib*/cmake/Kokkos/KokkosConfigCommon.cmake 2>/dev/null | head -n 1 || true)"
if [ -z "$common" ]; then
  echo "cuda-build: no Kokkos CMake package under $kokkos (expected lib*/cmake/Kokkos)" >&2
  exit 2
fi
if ! grep -q "set(Kokkos_DEVICES.*CUDA" "$common"; then
  echo "cuda-build: the Kokkos at $kokkos does not enable CUDA ($(grep -o 'set(Kokkos_DEVICES[^)]*)' "$common"))" >&2
  exit 2
fi
wrapper="$kokkos/bin/nvcc_wrapper"
[ -x "$wrapper" ] || { echo "cuda-build: $wrapper not found (Kokkos installs it with CUDA)" >&2; exit 2; }

build="${SCOREKIT_BUILD_DIR:-build/cuda}"
jobs="${SCOREKIT_JOBS:-$(nproc)}"
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(scorekit_headers_self_contained scorekit_tests
           sample_toy_densities custom_density annealing_weight_bias score_matching_toy reverse_sde_sweep
           user_kernel_step)
  benchmarks=(bench_annealed_langevin bench_elementary bench_train bench_reverse_sde)
  if [ -n "${KokkosKernels_ROOT:-}" ]; then benchmarks+=(bench_image); fi
  if [ "${SCOREKIT_ENABLE_MPI:-OFF}" = ON ]; then targets+=(scorekit_mpi_tests scorekit_mpi_abort_probe); fi
  # The image example needs Kokkos Kernels, zlib and libpng; it is built when the configuration has it.
  optional=(fashion_mnist)
fi

gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "^GPU"; then gpu=1; fi

bench_flag=OFF
if [ -n "${benchmarks+x}" ] && [ -f /usr/include/benchmark/benchmark.h ]; then bench_flag=ON; fi

log="$build/cuda-build.log"
mkdir -p "$build"
start=$(date +%s)
echo "cuda-build: configuring $build against $kokkos" >&2
kernels_flag=()
if [ -n "${KokkosKernels_ROOT:-}" ]; then kernels_flag=(-DKokkosKernels_ROOT="$KokkosKernels_ROOT"); fi
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKokkos_ROOT="$kokkos" "${kernels_flag[@]}" \
  -DCMAKE_CXX_COMPILER="$wrapper" -DSCOREKIT_WARNINGS_AS_ERRORS=ON \
  -DSCOREKIT_BUILD_TESTS=ON -DSCOREKIT_BUILD_EXAMPLES=ON -DSCOREKIT_BUILD_BENCHMARKS="$bench_flag" \
  -DSCOREKIT_ENABLE_MPI="${SCOREKIT_ENABLE_MPI:-OFF}" >"$log" 2>&1 ||
  { tail -n 40 "$log" >&2; exit 1; }
for t in "${optional[@]+"${optional[@]}"}"; do
  if ninja -C "$build" -t targets all 2>/dev/null | grep -q "^$t:"; then targets+=("$t"); fi
done
if [ "$bench_flag" = ON ]; then targets+=("${benchmarks[@]}"); fi

echo "cuda-build: building ${targets[*]} with $jobs jobs (log: $log)" >&2
status=0
cmake --build "$build" -j "$jobs" --target "${targets[@]}" -- -k 0 >>"$log" 2>&1 || status=$?
built=$(($(date +%s) - start))

report="$build/cuda-report.txt"
{
  echo "scorekit CUDA build, $(date -u +%Y-%m-%d)"
  echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo -dirty)"
  echo "kokkos:  $kokkos ($(grep -o 'set(Kokkos_DEVICES[^)]*)' "$common"))"
  echo "nvcc:    $(nvcc --version 2>/dev/null | tail -n 1)"
  echo "targets: ${targets[*]}"
  if [ "$status" -eq 0 ]; then
    echo "build:   OK in ${built} s"
  else
    echo "build:   FAILED after ${built} s; errors:"
    grep -E "error|FAILED" "$log" | head -n 60
  fi
} >"$report"

if [ "$status" -eq 0 ]; then
  # What needs only the compiler: the builds that must fail with a named message (under nvcc too,
  # including the device-contract probe), the layering check.
  cstart=$(date +%s)
  cstatus=0
  ctest --test-dir "$build" --output-on-failure -R "compile_fail|layering" >>"$log" 2>&1 || cstatus=$?
  echo "compile checks: $(grep -E 'tests passed|tests failed' "$log" | tail -n 1) in $(($(date +%s) - cstart)) s" >>"$report"
  [ "$cstatus" -eq 0 ] || status=$cstatus
  if [ "$gpu" -eq 1 ]; then
    echo "cuda-build: a GPU is present ($(nvidia-smi -L | head -n 1)); running the tests" >&2
    tstart=$(date +%s)
    tstatus=0
    ctest --test-dir "$build" --output-on-failure -E "installed_consumer|compile_fail|layering" >>"$log" 2>&1 ||
      tstatus=$?
    {
      echo "gpu:     $(nvidia-smi -L | head -n 1)"
      echo "tests:   $(grep -E 'tests passed|tests failed' "$log" | tail -n 1) in $(($(date +%s) - tstart)) s"
    } >>"$report"
    [ "$tstatus" -eq 0 ] || status=$tstatus
  else
    echo "gpu:     none on this machine: compile only; the tests are built and ready to run" >>"$report"
  fi
fi
cat "$report"
exit "$status"
