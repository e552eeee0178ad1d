// What a benchmark number was measured with, recorded in Google Benchmark's context (printed with every
// run and stored in its JSON output): the Kokkos release and its enabled backends, the OpenMP thread
// count, the GPU (CUDA, HIP), the compiler and flags, and the git commit of the source. A number without
// these cannot be compared with another one. Also which kernels OpenBLAS runs, where it is the host BLAS:
// they decide the speed of every product (see openblas_core). Also for_each_backend, which the benchmarks
// register their workloads with: once per backend this Kokkos enables.
#pragma once

#include <benchmark/benchmark.h>
#include <Kokkos_Core.hpp>

#include <cstdlib>
#include <string>

// Set by benchmarks/CMakeLists.txt at configure time.
#ifndef SCOREKIT_GIT_HASH
#define SCOREKIT_GIT_HASH "unknown"
#endif
#ifndef SCOREKIT_BENCH_FLAGS
#define SCOREKIT_BENCH_FLAGS "unknown"
#endif
#ifndef SCOREKIT_BUILD_TYPE
#define SCOREKIT_BUILD_TYPE "unknown"
#endif

// OpenBLAS's own report of the kernel set its run-time CPU detection chose (DYNAMIC_ARCH builds, as
// Debian's). Declared weak: null where the program is not linked with OpenBLAS.
#if defined(__GNUC__)
extern "C" char* openblas_get_corename(void) __attribute__((weak));
#endif

namespace scorekit_bench {

/// The kernel set OpenBLAS chose ("Haswell", "SkylakeX", "Cooperlake", ...), or "(not OpenBLAS)". It
/// follows the CPU unless OPENBLAS_CORETYPE names one (recorded beside it): on this project's AVX-512
/// development machine OpenBLAS 0.3.21 picks "Cooperlake" itself, and its sgemm runs 1.6x slower under an
/// inherited OPENBLAS_CORETYPE=Haswell (its AVX2 kernels).
inline std::string openblas_core() {
#if defined(__GNUC__)
  if (openblas_get_corename != nullptr) return openblas_get_corename();
#endif
  return "(not OpenBLAS)";
}

/// "3.4.1" from KOKKOS_VERSION (major * 10000 + minor * 100 + patch).
inline std::string kokkos_version() {
  return std::to_string(KOKKOS_VERSION / 10000) + "." + std::to_string(KOKKOS_VERSION / 100 % 100) + "." +
         std::to_string(KOKKOS_VERSION % 100);
}

/// The Kokkos backends compiled in, e.g. "Serial,OpenMP".
inline std::string kokkos_backends() {
  std::string s;
  auto add = [&s](const char* name) { s += (s.empty() ? "" : ",") + std::string(name); };
#ifdef KOKKOS_ENABLE_SERIAL
  add("Serial");
#endif
#ifdef KOKKOS_ENABLE_OPENMP
  add("OpenMP");
#endif
#ifdef KOKKOS_ENABLE_THREADS
  add("Threads");
#endif
#ifdef KOKKOS_ENABLE_HPX
  add("HPX");
#endif
#ifdef KOKKOS_ENABLE_CUDA
  add("Cuda");
#endif
#ifdef KOKKOS_ENABLE_HIP
  add("HIP");
#endif
#ifdef KOKKOS_ENABLE_SYCL
  add("SYCL");
#endif
  (void)add;
  return s;
}

/// A backend's execution space as a value, for the generic callbacks of for_each_backend.
template <class Exec>
struct Backend {
  using execution_space = Exec;
};

/// Calls f(Backend<Exec>{}, "Name") for every backend this Kokkos enables: OpenMP, Serial, Cuda, HIP (the
/// names that go into the benchmark names, which compare.sh filters on). Registration only: the kernels
/// live in named function templates (nvcc accepts no device lambda inside a generic lambda).
template <class F>
void for_each_backend(F&& f) {
#ifdef KOKKOS_ENABLE_OPENMP
  f(Backend<Kokkos::OpenMP>{}, "OpenMP");
#endif
#ifdef KOKKOS_ENABLE_SERIAL
  f(Backend<Kokkos::Serial>{}, "Serial");
#endif
#ifdef KOKKOS_ENABLE_CUDA
  f(Backend<Kokkos::Cuda>{}, "Cuda");
#endif
#if defined(KOKKOS_ENABLE_HIP) && KOKKOS_VERSION >= 40000
  f(Backend<Kokkos::HIP>{}, "HIP");
#endif
  (void)f;
}

inline std::string compiler() {
#if defined(__clang__)
  return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("gcc ") + __VERSION__;
#else
  return "unknown";
#endif
}

inline std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string(fallback);
}

/// Records the configuration; call after Kokkos is initialised (the thread count is Kokkos's own).
inline void add_benchmark_context() {
  benchmark::AddCustomContext("scorekit_git_hash", SCOREKIT_GIT_HASH);
  benchmark::AddCustomContext("kokkos_version", kokkos_version());
  benchmark::AddCustomContext("kokkos_backends", kokkos_backends());
#ifdef KOKKOS_ENABLE_OPENMP
  benchmark::AddCustomContext("kokkos_openmp_threads", std::to_string(Kokkos::OpenMP().concurrency()));
#endif
  // The device Kokkos runs on (the CUDA/HIP runtime's own query; Kokkos has already selected the device).
#ifdef KOKKOS_ENABLE_CUDA
  {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, Kokkos::Cuda().cuda_device()) == cudaSuccess)
      benchmark::AddCustomContext(
          "cuda_device",
          std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ")");
  }
#endif
#if defined(KOKKOS_ENABLE_HIP) && KOKKOS_VERSION >= 40000
  {
    hipDeviceProp_t prop;
    if (hipGetDeviceProperties(&prop, Kokkos::HIP().hip_device()) == hipSuccess)
      benchmark::AddCustomContext("hip_device", std::string(prop.name) + " (" + prop.gcnArchName + ")");
  }
#endif
  benchmark::AddCustomContext("OMP_NUM_THREADS", env_or("OMP_NUM_THREADS", "(unset)"));
  benchmark::AddCustomContext("OMP_PROC_BIND", env_or("OMP_PROC_BIND", "(unset)"));
  benchmark::AddCustomContext("openblas_core", openblas_core());
  benchmark::AddCustomContext("OPENBLAS_CORETYPE", env_or("OPENBLAS_CORETYPE", "(unset)"));
  benchmark::AddCustomContext("compiler", compiler());
  benchmark::AddCustomContext("build_type", SCOREKIT_BUILD_TYPE);
  benchmark::AddCustomContext("benchmark_flags", SCOREKIT_BENCH_FLAGS);
}

}  // namespace scorekit_bench
