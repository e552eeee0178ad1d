// Hutchinson's stochastic trace estimator (Hutchinson, "A stochastic estimator of the trace of the
// influence matrix for Laplacian smoothing splines", Commun. Stat. Simul. Comput. 19(2), 1990):
//   tr J ~ (1/M) sum_{k<M} v_k^T J v_k,   E[v] = 0, E[v v^T] = I,
// one Jacobian-vector product per probe. Unbiased for any M >= 1, with variance Var(v^T J v) / M (see
// probes.hpp for its value under each probe law), so the error falls as 1/sqrt(M). With Gaussian probes
// this is the projection of sliced score matching (Song, Garg, Shi and Ermon, UAI 2019) and the
// trace estimate of FFJORD (Grathwohl et al., ICLR 2019). Shares the interface described in
// exact_trace.hpp.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/divergence/model_traits.hpp>
#include <scorekit/divergence/probes.hpp>

namespace scorekit {

/// Hutchinson's estimator with M probes drawn by the probe law Probe (GaussianProbe, RademacherProbe,
/// or any type with the same static draw()).
template <class Probe = RademacherProbe>
class Hutchinson : public detail::RandomProbes<Probe, Hutchinson<Probe>> {
  static_assert(is_probe_law_v<Probe>,
                "scorekit::Hutchinson<Probe>: Probe needs a member `template <class Real> "
                "KOKKOS_INLINE_FUNCTION static void draw(CounterRng<Real>& rng, int dim, Real* v)`");

 public:
  static constexpr bool uses_jvp = true;
  using detail::RandomProbes<Probe, Hutchinson<Probe>>::estimate;
  using detail::RandomProbes<Probe, Hutchinson<Probe>>::probe;

  /// M probes per estimate; throws invalid_argument when M < 1.
  explicit Hutchinson(int n_probes = 1)
      : detail::RandomProbes<Probe, Hutchinson<Probe>>(n_probes, "scorekit::Hutchinson") {}

  /// v, s(x) and J v: 3 dim values.
  KOKKOS_INLINE_FUNCTION int workspace_size(int dim) const { return 3 * dim; }

  /// (1/M) sum_k v_k^T J v_k at x (dim coordinates), probes drawn from rng. `work` holds
  /// workspace_size(dim) values followed by the model's own workspace when it declares one.
  template <class Model, class Real>
  KOKKOS_INLINE_FUNCTION Real estimate(const Model& model, int dim, const Real* x, CounterRng<Real>& rng,
                                       Real* work) const {
    using tr = divergence_model_traits<Model>;
    constexpr bool model_ok = detail::model_requirements<Model, Real>::value;
    static_assert(!model_ok || tr::has_jvp,
                  "scorekit::Hutchinson needs a model with a member `KOKKOS_INLINE_FUNCTION void jvp(const "
                  "value_type* x, const value_type* v, value_type* s, value_type* jv) const` (s = s(x), "
                  "jv = (ds/dx) v; with a trailing `value_type* work` when it declares workspace_size())");
    if constexpr (model_ok && tr::has_jvp) {
      Real* v = work;
      Real* s = work + dim;
      Real* jv = work + 2 * dim;
      Real* model_work = work + workspace_size(dim);
      Real sum = 0;
      for (int k = 0; k < this->m_probes; ++k) {
        probe(k, dim, rng, v);
        jacobian_vector_product(model, x, static_cast<const Real*>(v), s, jv, model_work);
        Real vjv = 0;  // in index order (no SIMD reordering), so a point's estimate is the same in any caller
        for (int j = 0; j < dim; ++j) vjv += v[j] * jv[j];
        sum += vjv;
      }
      return sum / Real(this->m_probes);
    } else {
      return ((void)model, (void)dim, (void)x, (void)rng, (void)work, Real(0));
    }
  }
};

}  // namespace scorekit
