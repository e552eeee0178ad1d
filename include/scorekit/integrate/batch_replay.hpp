// How the batch-synchronous drivers reuse the per-particle step definitions (one definition of each step
// on either path). A step that makes K model evaluations is run K + 1 times per particle, each time from
// the same state and with the same CounterRng, around a ReplayModel that stands in for the batch model:
//   pass k < K (on a copy of the particle): evaluations 0..k-1 are answered from the batched results of
//     the earlier passes, evaluation k records its point and noise level into the query batch (and
//     answers zeros, as do any later ones, whose results are discarded);
//   then one batched score call evaluates every particle's query k;
//   pass K (on the particle itself): every evaluation is answered from the batch: the real step.
// Because each pass repeats the same operations on the same inputs, the query of pass k is exactly the
// point the fused step would evaluate at, so with the same model values both paths give the same bits.
// A query that is not finite is recorded as zeros (at its sigma) and its answer is NaN (what the model
// would have given the fused step), so the batch model never sees non-finite input from a diverged step.
#pragma once

#include <scorekit/core/elementary.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/non_finite.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace scorekit {
namespace detail {

/// What the passes of one step share, on the device: the query batch and the answers of earlier passes.
template <class Real, class MemorySpace>
struct ReplayBuffers {
  Kokkos::View<Real***, Kokkos::LayoutRight, MemorySpace> answers;  // (k, particle, j)
  Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> query;     // (particle, j)
  Kokkos::View<Real*, MemorySpace> query_sigma;                     // (particle)
  Kokkos::View<std::uint32_t*, MemorySpace> poisoned;               // bit k: query k was not finite
  Kokkos::View<int, MemorySpace> miscounted;                        // a step made other than K calls

  ReplayBuffers() = default;
  ReplayBuffers(int max_evaluations, std::int64_t n, int d, const char* where)
      : answers(Kokkos::view_alloc(std::string(where) + "::answers", Kokkos::WithoutInitializing),
                max_evaluations > 0 ? max_evaluations : 1, n, d),
        query(std::string(where) + "::query", n, d),
        query_sigma(std::string(where) + "::query_sigma", n),
        poisoned(std::string(where) + "::poisoned", n),
        miscounted(std::string(where) + "::miscounted") {
    Kokkos::deep_copy(query_sigma, Real(1));
  }
};

/// The model a pass hands the step: a noise-conditional score model whose answers come from the batch.
template <class Real, class MemorySpace>
class ReplayModel {
 public:
  using value_type = Real;
  using memory_space = MemorySpace;

  KOKKOS_INLINE_FUNCTION ReplayModel(const ReplayBuffers<Real, MemorySpace>* buffers, std::int64_t particle,
                                     int target, int dim)
      : m_b(buffers), m_i(particle), m_target(target), m_dim(dim) {}

  KOKKOS_INLINE_FUNCTION int dim() const { return m_dim; }
  /// The evaluations made so far in this pass.
  KOKKOS_INLINE_FUNCTION int calls() const { return m_calls; }

  KOKKOS_INLINE_FUNCTION void score(const Real* x, Real sigma, Real* out) const {
    const int e = m_calls++;
    if (e < m_target) {
      if (m_b->poisoned(m_i) & (std::uint32_t(1) << e)) {
        for (int j = 0; j < m_dim; ++j) out[j] = math::quiet_nan<Real>();
      } else {
        for (int j = 0; j < m_dim; ++j) out[j] = m_b->answers(e, m_i, j);
      }
      return;
    }
    if (e == m_target) {
      const bool finite = NonFiniteFlag<MemorySpace>::all_finite(x, m_dim) && math::isfinite(sigma);
      for (int j = 0; j < m_dim; ++j) m_b->query(m_i, j) = finite ? x[j] : Real(0);
      if (math::isfinite(sigma)) m_b->query_sigma(m_i) = sigma;
      if (!finite) m_b->poisoned(m_i) |= std::uint32_t(1) << e;
    }
    for (int j = 0; j < m_dim; ++j) out[j] = Real(0);
  }

 private:
  const ReplayBuffers<Real, MemorySpace>* m_b;
  std::int64_t m_i;
  int m_target;
  int m_dim;
  mutable int m_calls = 0;
};

}  // namespace detail
}  // namespace scorekit
