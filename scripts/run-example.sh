#!/usr/bin/env bash
# Builds and runs the main example, from a fresh Debian bookworm machine: installs what is missing
# (setup.sh), builds the examples, and runs examples/sample_toy_densities, which prints a table of sample-quality
# metrics and writes PNG figures to out/.
set -euo pipefail
cd "$(dirname "$0")/.."
setup_out=$(bash scripts/setup.sh)   # two lines: the Kokkos Kernels prefix, then the Kokkos prefix
kokkos_default=$(tail -n 1 <<<"$setup_out")
kernels_default=$(tail -n 2 <<<"$setup_out" | head -n 1)
kokkos="${Kokkos_ROOT:-$kokkos_default}"
# Kokkos Kernels: yours (KokkosKernels_ROOT), else setup.sh's with setup.sh's Kokkos (it is built against
# that one); with your own Kokkos and no KokkosKernels_ROOT, CMake looks where it looks for any package.
kernels="${KokkosKernels_ROOT:-}"
if [ -z "$kernels" ] && [ "$kokkos" = "$kokkos_default" ]; then kernels="$kernels_default"; fi
build="${SCOREKIT_BUILD_DIR:-build/default}"
cmake --preset default -B "$build" -DKokkos_ROOT="$kokkos" -DKokkosKernels_ROOT="$kernels" -DSCOREKIT_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j "$(nproc)"   # the examples (tests are off here)
mkdir -p out
OMP_PROC_BIND=false "$build/examples/sample_toy_densities" --output out "$@"
