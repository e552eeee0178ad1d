#!/usr/bin/env bash
# Installs everything scorekit needs on a fresh Debian bookworm machine, and builds Kokkos 3.4.01
# (Serial + OpenMP) from Debian's own trilinos source package into a cache folder outside the checkout.
# Idempotent: a second run takes seconds.
#
#   scripts/setup.sh            installs packages and Kokkos; prints the Kokkos prefix last
#   SCOREKIT_CACHE=/some/dir    where Kokkos is built and installed (default: ~/.cache/scorekit)
set -euo pipefail

cache="${SCOREKIT_CACHE:-$HOME/.cache/scorekit}"
kokkos_prefix="$cache/kokkos-3.4.01"
packages=(build-essential cmake ninja-build git dpkg-dev xz-utils
          libeigen3-dev libboost-math-dev catch2 libbenchmark-dev clang-format)

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ! -f "$kokkos_prefix/.scorekit-stamp" ]; then
  # apt-get source needs a deb-src entry, which a fresh machine lacks.
  if ! grep -rqs "^Types:.*deb-src\|^deb-src" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "setup: adding a deb-src entry for bookworm" >&2
    printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' |
      sudo_ tee /etc/apt/sources.list.d/scorekit-deb-src.sources >/dev/null
    need_update=1
  fi
fi

if [ "${#missing[@]}" -gt 0 ] || [ -n "${need_update:-}" ]; then
  sudo_ apt-get update -qq
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -f "$kokkos_prefix/.scorekit-stamp" ]; then
  src="$cache/src"
  mkdir -p "$src"
  if ! ls "$src"/trilinos_*.orig.tar.* >/dev/null 2>&1; then
    echo "setup: downloading Debian's trilinos source package" >&2
    (cd "$src" && apt-get source --download-only trilinos >/dev/null)
  fi
  tarball=$(ls "$src"/trilinos_*.orig.tar.* | head -n 1)
  rm -rf "$src/kokkos-tree" && mkdir -p "$src/kokkos-tree"
  echo "setup: extracting packages/kokkos from $(basename "$tarball")" >&2
  tar -xf "$tarball" -C "$src/kokkos-tree" --strip-components=1 --wildcards '*/packages/kokkos/*'
  kokkos_src="$src/kokkos-tree/packages/kokkos"
  grep -q "Kokkos_VERSION_MAJOR 3" "$kokkos_src/CMakeLists.txt" || true
  echo "setup: building Kokkos (Serial + OpenMP) into $kokkos_prefix" >&2
  cmake -S "$kokkos_src" -B "$src/kokkos-build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$kokkos_prefix" \
    -DCMAKE_CXX_STANDARD=17 -DKokkos_ENABLE_SERIAL=ON -DKokkos_ENABLE_OPENMP=ON \
    -DKokkos_ENABLE_TESTS=OFF -DKokkos_ENABLE_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF \
    -DCMAKE_POSITION_INDEPENDENT_CODE=ON >"$src/kokkos-configure.log" 2>&1 ||
    { tail -n 40 "$src/kokkos-configure.log" >&2; exit 1; }
  cmake --build "$src/kokkos-build" --target install -j "$(nproc)" >"$src/kokkos-build.log" 2>&1 ||
    { tail -n 40 "$src/kokkos-build.log" >&2; exit 1; }
  rm -rf "$src/kokkos-build" "$src/kokkos-tree"
  touch "$kokkos_prefix/.scorekit-stamp"
fi

echo "$kokkos_prefix"
