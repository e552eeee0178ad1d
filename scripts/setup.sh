#!/usr/bin/env bash
# Installs everything scorekit needs on a fresh Debian bookworm machine, and builds Kokkos 3.4.01
# (Serial + OpenMP) and Kokkos Kernels 3.4.01 (BLAS on OpenBLAS) from Debian's own trilinos source package
# into a cache folder outside the checkout. Idempotent: a second run takes seconds.
#
#   scripts/setup.sh            installs packages, Kokkos and Kokkos Kernels; prints two lines on stdout:
#                               the Kokkos Kernels prefix, then the Kokkos prefix last (`tail -n 1` reads
#                               Kokkos', `tail -n 2 | head -n 1` Kokkos Kernels')
#   SCOREKIT_CACHE=/some/dir    where both are built and installed (default: ~/.cache/scorekit)
set -euo pipefail

cache="${SCOREKIT_CACHE:-$HOME/.cache/scorekit}"
kokkos_prefix="$cache/kokkos-3.4.01"
kernels_prefix="$cache/kokkos-kernels-3.4.01"
# OpenBLAS is the host BLAS behind Kokkos Kernels' dense products. Debian ships it built three ways
# (pthread, openmp, serial); scorekit takes the OpenMP build: scorekit's host backend is Kokkos::OpenMP,
# and the OpenMP build shares libgomp's thread pool and OMP_NUM_THREADS with it (OpenBLAS' own pthread
# pool would oversubscribe the cores beside Kokkos' spinning OpenMP threads, and the OpenBLAS docs ask
# for the OpenMP build in OpenMP programs). libopenblas-dev alone would pull the pthread build, and
# Debian's alternatives may still point libopenblas.so.0 at it, so Kokkos Kernels links the OpenMP
# build by its full path below (CMake then puts its folder in the RUNPATH of the binaries it builds).
# OpenMPI (libopenmpi-dev, openmpi-bin) is for distributed/ and its tests under mpirun (SCOREKIT_ENABLE_MPI,
# on in the ci preset); nothing else needs it.
packages=(build-essential cmake ninja-build git dpkg-dev xz-utils
          libeigen3-dev libboost-math-dev catch2 libbenchmark-dev clang-format
          libopenblas-dev libopenblas-openmp-dev libopenblas0-openmp
          zlib1g-dev libpng-dev dataset-fashion-mnist
          nlohmann-json3-dev python3-numpy libopenmpi-dev openmpi-bin)

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

src="$cache/src"
if [ ! -f "$kokkos_prefix/.scorekit-stamp" ] || [ ! -f "$kernels_prefix/.scorekit-stamp" ]; then
  if ! ls "$src"/trilinos_*.orig.tar.* >/dev/null 2>&1; then
    # apt-get source needs a deb-src entry, which a fresh machine lacks.
    if ! grep -rqs "^Types:.*deb-src\|^deb-src" /etc/apt/sources.list /etc/apt/sources.list.d/; then
      echo "setup: adding a deb-src entry for bookworm" >&2
      printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' |
        sudo_ tee /etc/apt/sources.list.d/scorekit-deb-src.sources >/dev/null
      need_update=1
    fi
  fi
fi

if [ "${#missing[@]}" -gt 0 ] || [ -n "${need_update:-}" ]; then
  sudo_ apt-get update -qq
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's trilinos source tarball (both Kokkos and Kokkos Kernels come from it); prints its path.
trilinos_tarball() {
  mkdir -p "$src"
  if ! ls "$src"/trilinos_*.orig.tar.* >/dev/null 2>&1; then
    echo "setup: downloading Debian's trilinos source package" >&2
    (cd "$src" && apt-get source --download-only trilinos >/dev/null)
  fi
  ls "$src"/trilinos_*.orig.tar.* | head -n 1
}

if [ ! -f "$kokkos_prefix/.scorekit-stamp" ]; then
  tarball=$(trilinos_tarball)
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
  # A Kokkos built anew gets a Kokkos Kernels built anew against it.
  rm -f "$kernels_prefix/.scorekit-stamp"
fi

# Kokkos Kernels 3.4.01, the release matched to that Kokkos, standalone from the same tarball, with its
# BLAS TPL on (KokkosBlas::gemm on host views goes to OpenBLAS) and LAPACK off (nothing of scorekit's
# needs it). No explicit instantiations (ETI): on host views of float or double with one layout,
# KokkosBlas::gemm goes to OpenBLAS through a header-only wrapper that ETI does not touch (ETI builds
# Kokkos Kernels' own kernels), so ETI would only save compile time where those run (mixed layouts, GPU
# builds without cuBLAS). Measured on 2 cores: about 10 s without ETI; the minimal ETI (float and double,
# LayoutLeft and LayoutRight, Serial and OpenMP: 261 files) about 17 minutes (extrapolated from 20 of
# them: 12 spread over the kernels, 3.7 s each, and the 8 gemm ones, 8 s each).
if [ ! -f "$kernels_prefix/.scorekit-stamp" ]; then
  tarball=$(trilinos_tarball)
  rm -rf "$src/kernels-tree" "$src/kernels-build" "$kernels_prefix" && mkdir -p "$src/kernels-tree"
  echo "setup: extracting packages/kokkos-kernels from $(basename "$tarball")" >&2
  tar -xf "$tarball" -C "$src/kernels-tree" --strip-components=1 --wildcards '*/packages/kokkos-kernels/*'
  kernels_src="$src/kernels-tree/packages/kokkos-kernels"
  if ! grep -q "SET(KokkosKernels_VERSION_MINOR 4)" "$kernels_src/CMakeLists.txt"; then
    echo "setup: $(basename "$tarball") does not hold Kokkos Kernels 3.4 (expected with Kokkos 3.4.01)" >&2
    exit 1
  fi
  openblas_dir="/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/openblas-openmp"
  if [ ! -f "$openblas_dir/libopenblas.so" ]; then
    echo "setup: $openblas_dir/libopenblas.so not found (is libopenblas-openmp-dev installed?)" >&2
    exit 1
  fi
  echo "setup: building Kokkos Kernels (BLAS on OpenBLAS) into $kernels_prefix" >&2
  # F77_BLAS_MANGLE given here (OpenBLAS' Fortran symbols are dgemm_ and so on), else Kokkos Kernels
  # enables CMake's Fortran language to find it out, which needs a Fortran compiler.
  cmake -S "$kernels_src" -B "$src/kernels-build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$kernels_prefix" -DCMAKE_CXX_STANDARD=17 \
    -DKokkos_ROOT="$kokkos_prefix" -DBUILD_SHARED_LIBS=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
    -DKokkosKernels_ENABLE_TESTS=OFF -DKokkosKernels_ENABLE_EXAMPLES=OFF \
    -DKokkosKernels_ENABLE_TPL_BLAS=ON -DKokkosKernels_ENABLE_TPL_LAPACK=OFF \
    -DBLAS_LIBRARIES=openblas -DBLAS_LIBRARY_DIRS="$openblas_dir" -DF77_BLAS_MANGLE='(name,NAME) name ## _' \
    -DKokkosKernels_ADD_DEFAULT_ETI=OFF \
    >"$src/kernels-configure.log" 2>&1 ||
    { tail -n 40 "$src/kernels-configure.log" >&2; exit 1; }
  cmake --build "$src/kernels-build" --target install -j "$(nproc)" >"$src/kernels-build.log" 2>&1 ||
    { tail -n 40 "$src/kernels-build.log" >&2; exit 1; }
  rm -rf "$src/kernels-build" "$src/kernels-tree"
  touch "$kernels_prefix/.scorekit-stamp"
fi

echo "$kernels_prefix"
echo "$kokkos_prefix"
