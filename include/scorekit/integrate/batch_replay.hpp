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
/// A step whose evaluations include Jacobian-vector products (the likelihood's divergence estimates) also
/// records each query's direction and keeps the products' answers; `kinds` then says which of the
/// evaluations of one right-hand side are products (see ReplayModel::jvp).
template <class Real, class MemorySpace>
struct ReplayBuffers {
  Kokkos::View<Real***, Kokkos::LayoutRight, MemorySpace> answers;          // (k, particle, j)
  Kokkos::View<Real***, Kokkos::LayoutRight, MemorySpace> answers_jv;       // (k, particle, j), with products
  Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> query;             // (particle, j)
  Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> query_v;           // (particle, j), with products
  Kokkos::View<Real*, MemorySpace> query_sigma;                             // (particle)
  Kokkos::View<std::uint8_t**, Kokkos::LayoutRight, MemorySpace> poisoned;  // (particle, k): not finite
  Kokkos::View<int, MemorySpace> miscounted;                                // a step made other than K calls
  Kokkos::View<int*, MemorySpace> kinds;  // evaluation e of a right-hand side: 0 a score, 1 a product
  Kokkos::View<int, MemorySpace> probed;  // the evaluations the probe's right-hand side made

  ReplayBuffers() = default;
  ReplayBuffers(int max_evaluations, std::int64_t n, int d, const char* where, bool products = false)
      : answers(Kokkos::view_alloc(std::string(where) + "::answers", Kokkos::WithoutInitializing),
                max_evaluations > 0 ? max_evaluations : 1, n, d),
        query(std::string(where) + "::query", n, d),
        query_sigma(std::string(where) + "::query_sigma", n),
        poisoned(std::string(where) + "::poisoned", n, max_evaluations > 0 ? max_evaluations : 1),
        miscounted(std::string(where) + "::miscounted"),
        probed(std::string(where) + "::probed") {
    Kokkos::deep_copy(query_sigma, Real(1));
    if (products) {
      answers_jv = Kokkos::View<Real***, Kokkos::LayoutRight, MemorySpace>(
          Kokkos::view_alloc(std::string(where) + "::answers_jv", Kokkos::WithoutInitializing),
          max_evaluations > 0 ? max_evaluations : 1, n, d);
      query_v =
          Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace>(std::string(where) + "::query_v", n, d);
    }
  }

  /// Forgets particle i's non-finite queries (after its real step).
  KOKKOS_INLINE_FUNCTION void clear_poisoned(std::int64_t i) const {
    for (std::size_t k = 0; k < poisoned.extent(1); ++k) poisoned(i, k) = 0;
  }
};

/// The model a pass hands the step: a noise-conditional score model whose answers come from the batch.
/// `target` is the evaluation this pass records; the probe (target -1, with `kinds` sized for it) records
/// no query but the kind of every evaluation, and counts them into `probed`.
template <class Real, class MemorySpace>
class ReplayModel {
 public:
  using value_type = Real;
  using memory_space = MemorySpace;
  static constexpr int probe = -1;

  KOKKOS_INLINE_FUNCTION ReplayModel(const ReplayBuffers<Real, MemorySpace>* buffers, std::int64_t particle,
                                     int target, int dim)
      : m_b(buffers), m_i(particle), m_target(target), m_dim(dim) {}

  KOKKOS_INLINE_FUNCTION int dim() const { return m_dim; }
  /// The evaluations made so far in this pass.
  KOKKOS_INLINE_FUNCTION int calls() const { return m_calls; }

  KOKKOS_INLINE_FUNCTION void score(const Real* x, Real sigma, Real* out) const {
    const int e = next(0);
    if (e < m_target) {
      answer(m_b->answers, e, out);
      return;
    }
    if (e == m_target) record(x, sigma, nullptr, e);
    for (int j = 0; j < m_dim; ++j) out[j] = Real(0);
  }

  /// s = the score and jv = the batch model's product with v (its jvp, J v, or its vjp, J^T v: the same
  /// to every trace estimator, see core/batch_model.hpp).
  KOKKOS_INLINE_FUNCTION void jvp(const Real* x, Real sigma, const Real* v, Real* s, Real* jv) const {
    const int e = next(1);
    if (e < m_target) {
      answer(m_b->answers, e, s);
      answer(m_b->answers_jv, e, jv);
      return;
    }
    if (e == m_target) record(x, sigma, v, e);
    for (int j = 0; j < m_dim; ++j) s[j] = jv[j] = Real(0);
  }

 private:
  // The index of this evaluation; the probe notes its kind, a recording pass checks it.
  KOKKOS_INLINE_FUNCTION int next(int kind) const {
    const int e = m_calls++;
    const int period = int(m_b->kinds.extent(0));
    if (m_target == probe) {
      if (e < period) m_b->kinds(e) = kind;
      m_b->probed() = e + 1;
    } else if (period > 0 && e == m_target && m_b->kinds(e % period) != kind) {
      m_b->miscounted() = 1;
    }
    return e;
  }

  KOKKOS_INLINE_FUNCTION void answer(const Kokkos::View<Real***, Kokkos::LayoutRight, MemorySpace>& from,
                                     int e, Real* out) const {
    if (m_b->poisoned(m_i, e)) {
      for (int j = 0; j < m_dim; ++j) out[j] = math::quiet_nan<Real>();
    } else {
      for (int j = 0; j < m_dim; ++j) out[j] = from(e, m_i, j);
    }
  }

  KOKKOS_INLINE_FUNCTION void record(const Real* x, Real sigma, const Real* v, int e) const {
    bool finite = NonFiniteFlag<MemorySpace>::all_finite(x, m_dim) && math::isfinite(sigma);
    if (v) finite = finite && NonFiniteFlag<MemorySpace>::all_finite(v, m_dim);
    for (int j = 0; j < m_dim; ++j) m_b->query(m_i, j) = finite ? x[j] : Real(0);
    if (v)
      for (int j = 0; j < m_dim; ++j) m_b->query_v(m_i, j) = finite ? v[j] : Real(0);
    if (math::isfinite(sigma)) m_b->query_sigma(m_i) = sigma;
    if (!finite) m_b->poisoned(m_i, e) = 1;
  }

  const ReplayBuffers<Real, MemorySpace>* m_b;
  std::int64_t m_i;
  int m_target;
  int m_dim;
  mutable int m_calls = 0;
};

}  // namespace detail
}  // namespace scorekit
