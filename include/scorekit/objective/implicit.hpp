// Implicit score matching (Hyvarinen 2005) with any divergence estimator of divergence/:
//   loss(x) = tr(J(x)) + 1/2 ||s(x)||^2,       J = ds/dx,
// equal to the explicit loss 1/2 ||s - grad log p||^2 up to a constant in theta. With ExactTrace the
// trace is exact (ISM: d tangents, e_1 .. e_d); with Hutchinson<Probe> and M probes it is estimated by
// (1/M) sum_m v_m^T J v_m, which is sliced score matching (Song, Garg, Shi and Ermon 2019). The norm term
// is either the full 1/2 ||s||^2 (NormTerm::full: ISM, and SSM-VR, the variance-reduced form) or its
// sliced estimate (1/M) sum_m 1/2 (v_m^T s)^2 (NormTerm::sliced: SSM as first stated).
//
// The M probes go through the network TangentsPerPass at a time, as tangent columns of one dual block;
// each pass recomputes the forward pass. ExactTrace takes all d at once when TangentsPerPass is left at 0.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/divergence/exact_trace.hpp>
#include <scorekit/divergence/hutchinson.hpp>
#include <scorekit/objective/objective_common.hpp>

#include <string>
#include <type_traits>

namespace scorekit {
namespace objective {

enum class NormTerm { full, sliced };

template <class Estimator, int TangentsPerPass = 0>
class ImplicitScoreMatching {
 public:
  explicit ImplicitScoreMatching(Estimator estimator = Estimator{}, NormTerm norm = NormTerm::full)
      : m_estimator(estimator), m_norm(norm) {}

  std::string name() const {
    if (std::is_same<Estimator, ExactTrace>::value) return "ISM (exact trace)";
    return std::string(m_norm == NormTerm::full ? "SSM-VR" : "SSM") + " (" +
           std::to_string(m_estimator.n_probes(1)) + " probe" + (m_estimator.n_probes(1) == 1 ? "" : "s") +
           ")";
  }
  KOKKOS_INLINE_FUNCTION int extra_workspace_size() const { return 0; }
  KOKKOS_INLINE_FUNCTION int n_levels() const { return 1; }
  const Estimator& estimator() const { return m_estimator; }
  NormTerm norm_term() const { return m_norm; }

  /// Tangent columns per pass for a network with input dimension d.
  template <int D>
  KOKKOS_INLINE_FUNCTION static constexpr int tangents() {
    return TangentsPerPass > 0 ? TangentsPerPass : (std::is_same<Estimator, ExactTrace>::value ? D : 1);
  }

  template <class Net, int B>
  KOKKOS_INLINE_FUNCTION static constexpr int workspace_size() {
    return detail::DualBlockLayout<Net, B, tangents<Net::in>()>::size;
  }

  template <class Net, int B, class Real>
  KOKKOS_INLINE_FUNCTION void accumulate(const Real* params, int nb, const Real* x, const SampleKey& key,
                                         Real* grad, Real* stats, Real* work) const {
    constexpr int D = Net::in, K = tangents<D>();
    using layout = detail::DualBlockLayout<Net, B, K>;
    constexpr int W = layout::W;
    static_assert(Net::out == D, "ImplicitScoreMatching: the network must map R^d to R^d");
    Real* tape = work + layout::tape;
    Real* seed = work + layout::seed;
    const int level[B] = {};
    const int m_total = m_estimator.n_probes(D);
    const Real w = m_estimator.template probe_weight<Real>(D);
    Real loss[B];
    for (int b = 0; b < B; ++b) loss[b] = Real(0);
    for (int first = 0; first < m_total; first += K) {
      detail::load_rows<D, B, K>(nb, x, tape);
      for (int b = 0; b < B; ++b) {
        // Each pass restarts the sample's generator and skips the probes of earlier passes, so the
        // probes do not depend on TangentsPerPass.
        auto rng = sample_rng<Real>(key, b, TrainingStream::probe);
        Real v[D];
        for (int m = 0; m < first; ++m) m_estimator.probe(m, D, rng, v);
        for (int k = 0; k < K; ++k) {
          const int m = first + k;
          if (m < m_total) m_estimator.probe(m, D, rng, v);
          for (int i = 0; i < D; ++i) tape[i * W + (k + 1) * B + b] = m < m_total ? v[i] : Real(0);
        }
      }
      Net::template forward<B, K>(params, level, tape);
      const Real* y = Net::template output<B, K>(tape);
      for (int b = 0; b < B; ++b) {
        const bool live = b < nb;
        // Primal seed: the norm term's gradient.
        for (int i = 0; i < D; ++i) seed[i * W + b] = Real(0);
        if (m_norm == NormTerm::full && first == 0) {
          Real norm = Real(0);
          for (int i = 0; i < D; ++i) {
            norm += y[i * W + b] * y[i * W + b];
            seed[i * W + b] = y[i * W + b];
          }
          loss[b] += Real(0.5) * norm;
        }
        for (int k = 0; k < K; ++k) {
          const int c = (k + 1) * B + b;
          const bool used = first + k < m_total;
          Real vjv = Real(0), vs = Real(0);
          for (int i = 0; i < D; ++i) {
            const Real vi = tape[i * W + c];  // the probe, kept in the input block
            vjv += vi * y[i * W + c];
            vs += vi * y[i * W + b];
          }
          if (used) loss[b] += w * vjv;
          if (used && m_norm == NormTerm::sliced) {
            loss[b] += w * Real(0.5) * vs * vs;
            for (int i = 0; i < D; ++i) seed[i * W + b] += w * vs * tape[i * W + c];
          }
          for (int i = 0; i < D; ++i) seed[i * W + c] = used ? w * tape[i * W + c] : Real(0);
        }
        if (!live)
          for (int k = 0; k <= K; ++k)
            for (int i = 0; i < D; ++i) seed[i * W + k * B + b] = Real(0);
      }
      Net::template backward<B, K>(params, level, tape, seed, grad, nullptr, work + layout::scratch);
    }
    for (int b = 0; b < nb; ++b) {
      stats[0] += loss[b];
      stats[1] += Real(1);
    }
  }

 private:
  Estimator m_estimator;
  NormTerm m_norm;
};

/// ISM with the exact trace.
inline ImplicitScoreMatching<ExactTrace> implicit_score_matching() {
  return ImplicitScoreMatching<ExactTrace>();
}

/// Sliced score matching with M probes of law Probe (GaussianProbe in Song et al. 2019);
/// variance_reduced selects SSM-VR (the full norm term).
template <class Probe = GaussianProbe, int TangentsPerPass = 1>
ImplicitScoreMatching<Hutchinson<Probe>, TangentsPerPass> sliced_score_matching(
    int probes = 1, bool variance_reduced = false) {
  return ImplicitScoreMatching<Hutchinson<Probe>, TangentsPerPass>(
      Hutchinson<Probe>(probes), variance_reduced ? NormTerm::full : NormTerm::sliced);
}

}  // namespace objective
}  // namespace scorekit
