// Finite-difference sliced score matching (Pang, Xu, Li, Song, Ermon and Zhu, NeurIPS 2020): sliced
// score matching with the directional derivative v^T J v replaced by a central difference, so that the
// parameter gradient needs only first-order backprop (no forward mode). Per sample and probe v (M probes):
//   s+ = s(x + h v),  s- = s(x - h v),
//   loss = (1/M) sum_v [ v^T (s+ - s-) / (2 h) + norm term ],
// with the norm term 1/2 (v^T (s+ + s-) / 2)^2 (NormTerm::sliced, SSM) or 1/4 (||s+||^2 + ||s-||^2)
// (NormTerm::full, SSM-VR). Both differ from SSM's loss by O(h^2) (tested), and each probe costs two
// first-order evaluations: the 2 M points of a sample run as primal columns of one block.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/divergence/probes.hpp>
#include <scorekit/objective/implicit.hpp>
#include <scorekit/objective/objective_common.hpp>

#include <cmath>
#include <string>

namespace scorekit {
namespace objective {

template <class Probe = GaussianProbe, int Probes = 1>
class FiniteDifferenceScoreMatching {
  static_assert(Probes >= 1, "FiniteDifferenceScoreMatching: at least one probe");

 public:
  /// step: h > 0 (finite); Pang et al. use a step of order 1e-2 relative to the data scale.
  explicit FiniteDifferenceScoreMatching(double step, NormTerm norm = NormTerm::sliced)
      : m_step(step), m_norm(norm) {
    if (!(step > 0) || !std::isfinite(step))
      throw invalid_argument(scorekit::detail::concat(
          "FiniteDifferenceScoreMatching: the step must be finite and > 0, got ", step));
  }

  std::string name() const {
    return std::string(m_norm == NormTerm::full ? "FD-SSM-VR" : "FD-SSM") +
           " (h = " + std::to_string(m_step) + ", " + std::to_string(Probes) + " probe" +
           (Probes == 1 ? "" : "s") + ")";
  }
  KOKKOS_INLINE_FUNCTION int extra_workspace_size() const { return 0; }
  KOKKOS_INLINE_FUNCTION int n_levels() const { return 1; }
  KOKKOS_INLINE_FUNCTION double step() const { return m_step; }

  template <class Net, int B>
  KOKKOS_INLINE_FUNCTION static constexpr int workspace_size() {
    return detail::DualBlockLayout<Net, 2 * Probes * B, 0>::size + Probes * B * Net::in;  // + the probes
  }

  template <class Net, int B, class Real>
  KOKKOS_INLINE_FUNCTION void accumulate(const Real* params, int nb, const Real* x, const SampleKey& key,
                                         Real* grad, Real* stats, Real* work) const {
    constexpr int D = Net::in, C = 2 * Probes * B;  // columns: (probe m, sign) major, sample minor
    using layout = detail::DualBlockLayout<Net, C, 0>;
    static_assert(Net::out == D, "FiniteDifferenceScoreMatching: the network must map R^d to R^d");
    Real* tape = work + layout::tape;
    Real* seed = work + layout::seed;
    Real* v = work + layout::size;  // [Probes][B][D]
    const int level[C] = {};
    const Real h = Real(m_step), w = Real(1) / Real(Probes);
    for (int b = 0; b < B; ++b) {
      const Real* row = x + (b < nb ? b : nb - 1) * D;
      auto rng = sample_rng<Real>(key, b, TrainingStream::probe);
      for (int m = 0; m < Probes; ++m) {
        Real* vm = v + (m * B + b) * D;
        Probe::draw(rng, D, vm);
        for (int i = 0; i < D; ++i) {
          tape[i * C + (2 * m) * B + b] = row[i] + h * vm[i];
          tape[i * C + (2 * m + 1) * B + b] = row[i] - h * vm[i];
        }
      }
    }
    Net::template forward<C, 0>(params, level, tape);
    const Real* y = Net::template output<C, 0>(tape);
    for (int b = 0; b < B; ++b) {
      Real loss = Real(0);
      for (int m = 0; m < Probes; ++m) {
        const Real* vm = v + (m * B + b) * D;
        const int cp = (2 * m) * B + b, cm = (2 * m + 1) * B + b;
        Real vp = Real(0), vmn = Real(0), np = Real(0), nm = Real(0);
        for (int i = 0; i < D; ++i) {
          vp += vm[i] * y[i * C + cp];
          vmn += vm[i] * y[i * C + cm];
          np += y[i * C + cp] * y[i * C + cp];
          nm += y[i * C + cm] * y[i * C + cm];
        }
        const Real a = Real(0.5) * (vp + vmn);
        loss += w * (vp - vmn) / (Real(2) * h);
        loss += w * (m_norm == NormTerm::sliced ? Real(0.5) * a * a : Real(0.25) * (np + nm));
        for (int i = 0; i < D; ++i) {
          const Real difference = w * vm[i] / (Real(2) * h);
          Real sp = difference, sm = -difference;
          if (m_norm == NormTerm::sliced) {
            sp += w * Real(0.5) * a * vm[i];
            sm += w * Real(0.5) * a * vm[i];
          } else {
            sp += w * Real(0.5) * y[i * C + cp];
            sm += w * Real(0.5) * y[i * C + cm];
          }
          seed[i * C + cp] = b < nb ? sp : Real(0);
          seed[i * C + cm] = b < nb ? sm : Real(0);
        }
      }
      if (b < nb) {
        stats[0] += loss;
        stats[1] += Real(1);
      }
    }
    Net::template backward<C, 0>(params, level, tape, seed, grad, nullptr, work + layout::scratch);
  }

 private:
  double m_step;
  NormTerm m_norm;
};

}  // namespace objective
}  // namespace scorekit
