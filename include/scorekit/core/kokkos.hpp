// Kokkos version shims: the only place that knows which Kokkos release is in use.
// Supported: Kokkos 3.4 (Debian's, built by scripts/setup.sh) through 4.x.
#pragma once

#include <Kokkos_Core.hpp>

#include <string>
#include <type_traits>

#ifndef KOKKOS_VERSION
#error "scorekit: Kokkos_Core.hpp did not define KOKKOS_VERSION; Kokkos 3.4 or newer is required"
#endif
#if KOKKOS_VERSION < 30400
#error "scorekit: Kokkos 3.4 or newer is required"
#endif

// Vectorisation hints for the innermost loops of device-callable code. GCC vectorises a floating-point
// sum only when told that reordering it is allowed, and a store through a pointer only when told the
// pointers do not alias; `omp simd` says both for one loop. Without OpenMP the hints are empty (an
// unknown pragma would be a warning).
#if defined(_OPENMP) && !defined(__CUDA_ARCH__) && !defined(__HIP_DEVICE_COMPILE__)
#define SCOREKIT_SIMD _Pragma("omp simd")
#define SCOREKIT_SIMD_SUM(...) _Pragma(SCOREKIT_STRINGIFY(omp simd reduction(+ : __VA_ARGS__)))
#else
#define SCOREKIT_SIMD
#define SCOREKIT_SIMD_SUM(...)
#endif
#define SCOREKIT_STRINGIFY(x) #x

// Keeps a device-callable function out of line. GCC inlines score_block's full-covariance panel into the
// sampler kernels and then keeps its accumulators in memory: compiled out of line the same code made
// annealed Langevin on the 64-D benchmark mixture 1.6x faster (bench_annealed_langevin, 2 threads). nvcc
// and hipcc read the same GNU attribute (CUDA's __noinline__ is defined as it).
#define SCOREKIT_NOINLINE __attribute__((noinline))

namespace scorekit {
namespace detail {

/// sum_{i < n} term(i) in Lanes interleaved partial sums (term i into sum i mod Lanes), added pairwise at
/// the end: a reduction the compiler vectorises, where one running sum is a chain of dependent adds it
/// may not reorder. The order of the sum is fixed by n alone (the same bits on every backend that
/// rounds each operation alike).
template <int Lanes, class Real, class F>
KOKKOS_FORCEINLINE_FUNCTION Real sum_in_lanes(int n, F&& term) {
  static_assert(Lanes > 0 && (Lanes & (Lanes - 1)) == 0, "scorekit: sum_in_lanes needs a power of 2");
  Real part[Lanes];
  for (int l = 0; l < Lanes; ++l) part[l] = Real(0);
  int i = 0;
  for (; i + Lanes <= n; i += Lanes)
    for (int l = 0; l < Lanes; ++l) part[l] += term(i + l);
  for (int l = 0; i < n; ++i, ++l) part[l] += term(i);
  for (int w = Lanes / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) part[l] += part[l + w];
  return part[0];
}

/// Calls f(i, k) for coordinate j of particles b = 0..nb-1 of two particle arrays, i = b stride_a + j into
/// the first and k = b stride_b + j into the second. When both are contiguous (strides d) this is one
/// flat loop of nb d iterations, which vectorises where a loop over d = 2 coordinates would not. f must
/// treat each coordinate apart (no order between iterations).
template <class F>
KOKKOS_FORCEINLINE_FUNCTION void for_each_coordinate(int nb, int d, int stride_a, int stride_b, F&& f) {
  if (stride_a == d && stride_b == d) {
    const int n = nb * d;
    SCOREKIT_SIMD
    for (int e = 0; e < n; ++e) f(e, e);
  } else {
    for (int b = 0; b < nb; ++b)
      for (int j = 0; j < d; ++j) f(b * stride_a + j, b * stride_b + j);
  }
}

}  // namespace detail
}  // namespace scorekit

// GCC 12 warns (-Warray-bounds, a false positive) when a point stored in a short array, e.g. a 2-D point
// in a `double[2]`, reaches a loop over coordinates that runs only when dim() is larger: it cannot see
// the run-time bound. Densities with such loops wrap themselves in these.
#if defined(__GNUC__) && !defined(__clang__)
#define SCOREKIT_ARRAY_BOUNDS_FALSE_POSITIVE_BEGIN \
  _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Warray-bounds\"")
#define SCOREKIT_ARRAY_BOUNDS_FALSE_POSITIVE_END _Pragma("GCC diagnostic pop")
#else
#define SCOREKIT_ARRAY_BOUNDS_FALSE_POSITIVE_BEGIN
#define SCOREKIT_ARRAY_BOUNDS_FALSE_POSITIVE_END
#endif

namespace scorekit {

/// Whether kernels over data in memory space Mem run on CPU cores (true) or on a GPU (false). It picks
/// the blocking: on a CPU a block of 8-16 particles shares each parameter read and fills the vector
/// lanes; on a GPU every particle (and every parameter, in Adam and the EMA) is its own thread, and the
/// lanes are other threads.
template <class Mem>
constexpr bool runs_on_host_v = std::is_same<Mem, Kokkos::HostSpace>::value;

namespace math {
// Kokkos 3.7 moved the mathematical functions from Kokkos::Experimental into Kokkos.
#if KOKKOS_VERSION >= 30700
using Kokkos::atan2;
using Kokkos::cos;
using Kokkos::exp;
using Kokkos::expm1;
using Kokkos::fabs;
using Kokkos::isfinite;
using Kokkos::log;
using Kokkos::log1p;
using Kokkos::sin;
using Kokkos::sqrt;
#else
using Kokkos::Experimental::atan2;
using Kokkos::Experimental::cos;
using Kokkos::Experimental::exp;
using Kokkos::Experimental::expm1;
using Kokkos::Experimental::fabs;
using Kokkos::Experimental::isfinite;
using Kokkos::Experimental::log;
using Kokkos::Experimental::log1p;
using Kokkos::Experimental::sin;
using Kokkos::Experimental::sqrt;
#endif

/// A quiet NaN, callable in device code (std::numeric_limits is host-only under nvcc, and Kokkos 3.4 has
/// no public quiet_NaN trait). GCC, Clang, nvcc and hipcc all provide the builtins, host and device.
template <class Real>
KOKKOS_INLINE_FUNCTION constexpr Real quiet_nan() {
  static_assert(std::is_same<Real, float>::value || std::is_same<Real, double>::value,
                "scorekit::math::quiet_nan: float or double");
  if constexpr (std::is_same<Real, float>::value)
    return __builtin_nanf("");
  else
    return __builtin_nan("");
}

template <class Real>
KOKKOS_INLINE_FUNCTION constexpr Real pi() {
  return Real(3.14159265358979323846264338327950288);
}
}  // namespace math

/// A named profiling region for the lifetime of the object (Kokkos::Profiling::ScopedRegion
/// exists only from Kokkos 3.7 on).
class ScopedRegion {
 public:
  explicit ScopedRegion(const std::string& name) { Kokkos::Profiling::pushRegion(name); }
  ~ScopedRegion() { Kokkos::Profiling::popRegion(); }
  ScopedRegion(const ScopedRegion&) = delete;
  ScopedRegion& operator=(const ScopedRegion&) = delete;
};

}  // namespace scorekit
