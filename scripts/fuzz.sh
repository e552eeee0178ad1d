#!/usr/bin/env bash
# Runs every libFuzzer harness for longer than the tests do (they run each for 20 s).
#   scripts/fuzz.sh [seconds per harness, default 600]
# Needs clang (Debian's clang) and the build folder scripts/test.sh configured (SCOREKIT_BUILD_DIR,
# default build/ci): the harnesses are built there, the unit tests write the seed corpus, and what a
# harness finds is saved in $build/tests/fuzz_artifacts/<name>/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
build="${SCOREKIT_BUILD_DIR:-build/ci}"
if [ ! -f "$build/CMakeCache.txt" ]; then
  echo "fuzz.sh: $build is not configured; run scripts/test.sh first" >&2
  exit 2
fi
# Each harness tests/fuzz/fuzz_<name>.cpp with the Catch tag whose unit tests write its seeds.
harnesses=("idx [idx]" "checkpoint [checkpoint]" "npy [npy]" "safetensors [safetensors]")
# The PNG reader's where the build found libpng (FindPNG's cache entry).
if grep -q "^PNG_PNG_INCLUDE_DIR:PATH=/" "$build/CMakeCache.txt"; then harnesses+=("png [png]"); fi
targets=(scorekit_tests)
for h in "${harnesses[@]}"; do targets+=("scorekit_fuzz_${h%% *}"); done
cmake --build "$build" --target "${targets[@]}"
for h in "${harnesses[@]}"; do
  name="${h%% *}" tag="${h#* }"
  corpus="$build/tests/fuzz_corpus/$name"
  mkdir -p "$corpus"
  SCOREKIT_FUZZ_CORPUS="$corpus" "$build/tests/scorekit_tests" "$tag" >/dev/null
  echo "fuzz.sh: fuzz_$name for $seconds s" >&2
  mkdir -p "$build/tests/fuzz_artifacts/$name"
  "$build/tests/fuzz_$name" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$build/tests/fuzz_artifacts/$name/" "$corpus"
done
