#!/usr/bin/env bash
# Builds and runs every test, from a fresh Debian bookworm machine: installs what is missing (setup.sh),
# configures with warnings as errors, builds, and runs CTest (every test on Serial and OpenMP).
#   scripts/test.sh                  Kokkos 3.4.01 from Debian's source, built by setup.sh
#   Kokkos_ROOT=/path scripts/test.sh   your own Kokkos (3.4+ or 4.x)
#   KokkosKernels_ROOT=/path            your own Kokkos Kernels (built against that Kokkos; optional)
set -euo pipefail
cd "$(dirname "$0")/.."
setup_out=$(bash scripts/setup.sh)   # two lines: the Kokkos Kernels prefix, then the Kokkos prefix
kokkos_default=$(tail -n 1 <<<"$setup_out")
kernels_default=$(tail -n 2 <<<"$setup_out" | head -n 1)
# Formatting is part of the build: every C++ file as clang-format (.clang-format) writes it.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z '*.hpp' '*.cpp' | xargs -0 clang-format --dry-run -Werror
fi
kokkos="${Kokkos_ROOT:-$kokkos_default}"
# Kokkos Kernels: yours (KokkosKernels_ROOT), else setup.sh's with setup.sh's Kokkos (it is built against
# that one); with your own Kokkos and no KokkosKernels_ROOT, CMake looks where it looks for any package.
kernels="${KokkosKernels_ROOT:-}"
if [ -z "$kernels" ] && [ "$kokkos" = "$kokkos_default" ]; then kernels="$kernels_default"; fi
build="${SCOREKIT_BUILD_DIR:-build/ci}"
cmake --preset ci -B "$build" -DKokkos_ROOT="$kokkos" -DKokkosKernels_ROOT="$kernels" >/dev/null
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" --output-on-failure -j 2
