#!/usr/bin/env bash
# Builds and runs the main example, from a fresh Debian bookworm machine: installs what is missing
# (setup.sh), builds the examples, and runs examples/sample_toy_densities, which prints a table of sample-quality
# metrics and writes PNG figures to out/.
set -euo pipefail
cd "$(dirname "$0")/.."
kokkos_default=$(bash scripts/setup.sh | tail -n 1)
kokkos="${Kokkos_ROOT:-$kokkos_default}"
build="${SCOREKIT_BUILD_DIR:-build/default}"
cmake --preset default -B "$build" -DKokkos_ROOT="$kokkos" -DSCOREKIT_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j "$(nproc)"   # the examples (tests are off here)
mkdir -p out
OMP_PROC_BIND=false "$build/examples/sample_toy_densities" --output out "$@"
