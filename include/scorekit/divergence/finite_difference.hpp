// Finite-difference divergence: Hutchinson's estimator with each v^T J v replaced by a central difference
// of the score along v,
//   v^T J v ~ v^T (s(x + h v) - s(x - h v)) / (2 h),
// averaged over M random directions (Pang, Xu, Li, Song, Ermon and Zhu, "Efficient learning of
// generative models via finite-difference score matching", NeurIPS 2020, section 4: FD-SSM). Needs only
// the model's score: two evaluations per probe, no forward mode. With f(t) = v^T s(x + t v) the central
// difference is f'(0) + f'''(0) h^2 / 6 + O(h^4): second order in h (the error for fixed probes falls by
// 4 when h halves), and the estimate is unbiased for tr J only up to that O(h^2) term. Shares the
// interface described in exact_trace.hpp.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/core/traits.hpp>
#include <scorekit/divergence/model_traits.hpp>
#include <scorekit/divergence/probes.hpp>

namespace scorekit {

/// Central finite-difference divergence with M directions drawn by Probe and step h.
template <class Probe = RademacherProbe>
class FiniteDifferenceDivergence : public detail::RandomProbes<Probe, FiniteDifferenceDivergence<Probe>> {
  static_assert(is_probe_law_v<Probe>,
                "scorekit::FiniteDifferenceDivergence<Probe>: Probe needs a member `template <class Real> "
                "KOKKOS_INLINE_FUNCTION static void draw(CounterRng<Real>& rng, int dim, Real* v)`");

 public:
  static constexpr bool uses_jvp = false;
  using detail::RandomProbes<Probe, FiniteDifferenceDivergence<Probe>>::estimate;
  using detail::RandomProbes<Probe, FiniteDifferenceDivergence<Probe>>::probe;

  /// M directions and step h; throws invalid_argument when M < 1 or h is not a finite number > 0.
  FiniteDifferenceDivergence(int n_probes, double step)
      : detail::RandomProbes<Probe, FiniteDifferenceDivergence<Probe>>(
            n_probes, "scorekit::FiniteDifferenceDivergence"),
        m_step(step) {
    require_positive(step, "the step h", "scorekit::FiniteDifferenceDivergence");
  }

  /// The step h.
  KOKKOS_INLINE_FUNCTION double step() const { return m_step; }

  /// v, x +- h v, s(x + h v) and s(x - h v): 4 dim values.
  KOKKOS_INLINE_FUNCTION int workspace_size(int dim) const { return 4 * dim; }

  /// (1/M) sum_k v_k^T (s(x + h v_k) - s(x - h v_k)) / (2h) at x (dim coordinates), directions drawn from
  /// rng. `work` holds workspace_size(dim) values followed by the model's own workspace when it declares
  /// one.
  template <class Model, class Real>
  KOKKOS_INLINE_FUNCTION Real estimate(const Model& model, int dim, const Real* x, CounterRng<Real>& rng,
                                       Real* work) const {
    if constexpr (detail::model_requirements<Model, Real>::value) {
      Real* v = work;
      Real* y = work + dim;
      Real* s_plus = work + 2 * dim;
      Real* s_minus = work + 3 * dim;
      Real* model_work = work + workspace_size(dim);
      const Real h = Real(m_step);
      Real sum = 0;
      for (int k = 0; k < this->m_probes; ++k) {
        probe(k, dim, rng, v);
        for (int j = 0; j < dim; ++j) y[j] = x[j] + h * v[j];
        score(model, static_cast<const Real*>(y), s_plus, model_work);
        for (int j = 0; j < dim; ++j) y[j] = x[j] - h * v[j];
        score(model, static_cast<const Real*>(y), s_minus, model_work);
        Real dot = 0;  // differences first: s_plus and s_minus agree in their leading digits
        for (int j = 0; j < dim; ++j) dot += v[j] * (s_plus[j] - s_minus[j]);
        sum += dot;
      }
      return sum / (Real(2) * h * Real(this->m_probes));
    } else {
      return ((void)model, (void)dim, (void)x, (void)rng, (void)work, Real(0));
    }
  }

  /// The same, with dim = model.dim() (a host call: on a GPU backend the model's dim() must then be
  /// KOKKOS_INLINE_FUNCTION; otherwise pass the dimension).
 private:
  double m_step;
};

}  // namespace scorekit
