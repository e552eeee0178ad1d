// Detects NaN or infinity inside a run without a separate pass: each particle checks its own state
// after each step and records (step, particle) with one atomic min, so the report names the earliest
// step and, within it, the lowest particle index.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>

#include <cstdint>
#include <limits>
#include <string>

namespace scorekit {

template <class MemorySpace>
class NonFiniteFlag {
 public:
  NonFiniteFlag(std::int64_t n_particles) : m_n(n_particles), m_first("scorekit::non_finite_flag") {
    Kokkos::deep_copy(m_first, none);
  }

  /// True when every value of x[0..n) is finite.
  template <class Real>
  KOKKOS_INLINE_FUNCTION static bool all_finite(const Real* x, int n) {
    bool ok = true;
    for (int j = 0; j < n; ++j) ok = ok && math::isfinite(x[j]);
    return ok;
  }

  /// Records that `particle` went non-finite at `step` (callable inside kernels).
  KOKKOS_INLINE_FUNCTION void record(std::int64_t particle, std::int64_t step) const {
    const std::uint64_t key = std::uint64_t(step) * std::uint64_t(m_n) + std::uint64_t(particle);
    Kokkos::atomic_fetch_min(&m_first(), key);
  }

  /// Throws non_finite_error naming the first recorded particle and step, if any.
  void throw_if_set(const std::string& where) const {
    std::uint64_t key = 0;
    Kokkos::deep_copy(key, m_first);
    if (key != none)
      throw non_finite_error(where, std::int64_t(key % std::uint64_t(m_n)),
                             std::int64_t(key / std::uint64_t(m_n)));
  }

 private:
  static constexpr std::uint64_t none = std::numeric_limits<std::uint64_t>::max();
  std::int64_t m_n;
  Kokkos::View<std::uint64_t, MemorySpace> m_first;
};

}  // namespace scorekit
