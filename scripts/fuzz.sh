#!/usr/bin/env bash
# Runs the libFuzzer harnesses for longer than the tests do (they run each for 20 s).
#   scripts/fuzz.sh [seconds per harness, default 600]
# Needs clang (Debian's clang) and the build folder scripts/test.sh configured (SCOREKIT_BUILD_DIR,
# default build/ci): the harnesses are built there, and the unit tests write the seed corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
build="${SCOREKIT_BUILD_DIR:-build/ci}"
if [ ! -f "$build/CMakeCache.txt" ]; then
  echo "fuzz.sh: $build is not configured; run scripts/test.sh first" >&2
  exit 2
fi
cmake --build "$build" --target scorekit_tests scorekit_fuzz_idx
corpus="$build/tests/fuzz_corpus/idx"
mkdir -p "$corpus"
SCOREKIT_FUZZ_CORPUS="$corpus" "$build/tests/scorekit_tests" "[idx]" >/dev/null
"$build/tests/fuzz_idx" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 "$corpus"
