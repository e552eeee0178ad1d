#!/usr/bin/env bash
# Installs the benchmark peers: a Python virtual environment with PyTorch, NumPy and safetensors from PyPI (the wheels
# users install; Debian's python3-torch links the slow reference BLAS). Benchmark tools only: nothing in
# the library or its tests needs them. Idempotent: a second run takes a second.
#
#   scripts/setup-bench.sh      creates the venv if needed; prints the venv's python last
#   SCOREKIT_CACHE=/some/dir    where the venv lives (default: ~/.cache/scorekit; the venv is <cache>/venv)
set -euo pipefail

cache="${SCOREKIT_CACHE:-$HOME/.cache/scorekit}"
venv="$cache/venv"
python="$venv/bin/python"
mkdir -p "$cache"

have_peers() { [ -x "$python" ] && "$python" -c "import torch, numpy, safetensors" >/dev/null 2>&1; }

# One installer at a time: a second pip into the same venv while the first is running corrupts it.
exec 9>"$cache/venv.lock"
flock 9

if ! have_peers; then
  if [ ! -x "$python" ]; then
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c "import ensurepip" >/dev/null 2>&1; then
      echo "setup-bench: installing python3-venv" >&2
      sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
      sudo_ apt-get update -qq
      sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    fi
    echo "setup-bench: creating $venv" >&2
    python3 -m venv "$venv"
  fi
  echo "setup-bench: installing torch, numpy and safetensors from PyPI into $venv (a few GB; minutes)" >&2
  "$python" -m pip install --quiet --upgrade pip >&2
  "$python" -m pip install --quiet torch numpy safetensors >&2
  have_peers || { echo "setup-bench: torch, numpy or safetensors still does not import from $python" >&2; exit 1; }
fi

echo "$python"
