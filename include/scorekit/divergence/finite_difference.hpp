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
class FiniteDifferenceDivergence {
  static_assert(is_probe_law_v<Probe>,
                "scorekit::FiniteDifferenceDivergence<Probe>: Probe needs a member `template <class Real> "
                "KOKKOS_INLINE_FUNCTION static void draw(CounterRng<Real>& rng, int dim, Real* v)`");

 public:
  using probe_type = Probe;
  static constexpr bool uses_jvp = false;

  /// M directions and step h; throws invalid_argument when M < 1 or h is not a finite number > 0.
  FiniteDifferenceDivergence(int n_probes, double step) : m_probes(n_probes), m_step(step) {
    const char* where = "scorekit::FiniteDifferenceDivergence";
    if (n_probes < 1)
      throw invalid_argument(
          detail::concat(where, ": the number of probes must be at least 1, got ", n_probes));
    require_positive(step, "the step h", where);
  }

  /// M, whatever the dimension.
  int n_probes(int dim) const { return ((void)dim, m_probes); }
  int n_probes() const { return m_probes; }
  /// The step h.
  double step() const { return m_step; }

  /// v, x +- h v, s(x + h v) and s(x - h v): 4 dim values.
  int workspace_size(int dim) const { return 4 * dim; }

  /// The next direction from rng (k is not used: see Hutchinson::probe).
  template <class Real>
  KOKKOS_INLINE_FUNCTION void probe(int k, int dim, CounterRng<Real>& rng, Real* v) const {
    (void)k;
    Probe::draw(rng, dim, v);
  }

  /// 1 / M.
  template <class Real = double>
  KOKKOS_INLINE_FUNCTION Real probe_weight(int dim) const {
    return ((void)dim, Real(1) / Real(m_probes));
  }

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
      for (int k = 0; k < m_probes; ++k) {
        probe(k, dim, rng, v);
        for (int j = 0; j < dim; ++j) y[j] = x[j] + h * v[j];
        score(model, static_cast<const Real*>(y), s_plus, model_work);
        for (int j = 0; j < dim; ++j) y[j] = x[j] - h * v[j];
        score(model, static_cast<const Real*>(y), s_minus, model_work);
        Real dot = 0;  // differences first: s_plus and s_minus agree in their leading digits
        for (int j = 0; j < dim; ++j) dot += v[j] * (s_plus[j] - s_minus[j]);
        sum += dot;
      }
      return sum / (Real(2) * h * Real(m_probes));
    } else {
      return ((void)model, (void)dim, (void)x, (void)rng, (void)work, Real(0));
    }
  }

  /// The same, with dim = model.dim() (a host call: on a GPU backend the model's dim() must then be
  /// KOKKOS_INLINE_FUNCTION; otherwise pass the dimension).
  template <class Model, class Real>
  KOKKOS_INLINE_FUNCTION Real estimate(const Model& model, const Real* x, CounterRng<Real>& rng,
                                       Real* work) const {
    if constexpr (detail::model_requirements<Model, Real>::value)
      return estimate(model, model.dim(), x, rng, work);
    else
      return ((void)model, (void)x, (void)rng, (void)work, Real(0));
  }

 private:
  int m_probes;
  double m_step;
};

}  // namespace scorekit
