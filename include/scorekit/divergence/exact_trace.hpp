// The exact divergence tr(ds/dx): the model's analytic `divergence` (or a Density's `laplacian`) when it
// has one, else d forward-mode passes, tr J = sum_i e_i^T J e_i = sum_i (jvp(x, e_i))_i. Deterministic;
// costs d Jacobian-vector products, which is what the probability-flow ODE likelihood (Song et al.,
// "Score-based generative modeling through stochastic differential equations", ICLR 2021, appendix D.2)
// and implicit score matching (Hyvarinen 2005, Theorem 1) need when d is small.
//
// The interface every divergence estimator shares (this one, Hutchinson, FiniteDifferenceDivergence);
// everything but the constant is called inside kernels, so every member is KOKKOS_INLINE_FUNCTION:
//   static constexpr bool uses_jvp;       // estimate() evaluates the model in forward mode
//   int n_probes(int dim) const;          // probe vectors per estimate
//   int workspace_size(int dim) const;    // caller-owned scratch, in value_type units
//   Real estimate(model, x, rng, work);   // one point; work: workspace_size(dim) values, then the
//   Real estimate(model, dim, x, rng, work);  // model's own workspace_size() when it declares one
//   void probe(k, dim, rng, v);           // probe k, the same vectors estimate() uses, so that a training
//   Real probe_weight(dim);               //   objective can push them through a network's forward mode:
//                                         //   estimate = probe_weight * sum_k v_k^T J v_k
#pragma once

#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/divergence/model_traits.hpp>

namespace scorekit {

/// tr(ds/dx) exactly: the model's analytic divergence when it has one, else d JVPs with e_1 .. e_d.
struct ExactTrace {
  /// The probes are meant for forward mode (a model with an analytic divergence needs none).
  static constexpr bool uses_jvp = true;

  /// d probe vectors, e_0 .. e_{d-1}.
  KOKKOS_INLINE_FUNCTION int n_probes(int dim) const { return dim; }

  /// v, s(x) and J v: 3 dim values (unused when the model has an analytic divergence).
  KOKKOS_INLINE_FUNCTION int workspace_size(int dim) const { return 3 * dim; }

  /// Probe k: the unit vector e_k (rng is not used).
  template <class Real>
  KOKKOS_INLINE_FUNCTION void probe(int k, int dim, CounterRng<Real>& rng, Real* v) const {
    (void)rng;
    for (int j = 0; j < dim; ++j) v[j] = Real(0);
    v[k] = Real(1);
  }

  /// Each probe counts once: tr J = sum_k e_k^T J e_k.
  template <class Real = double>
  KOKKOS_INLINE_FUNCTION Real probe_weight(int dim) const {
    return ((void)dim, Real(1));
  }

  /// tr(ds/dx) at x (dim coordinates). `work` holds workspace_size(dim) values followed by the model's
  /// own workspace when it declares one. rng is not used: the result is exact.
  template <class Model, class Real>
  KOKKOS_INLINE_FUNCTION Real estimate(const Model& model, int dim, const Real* x, CounterRng<Real>& rng,
                                       Real* work) const {
    using tr = divergence_model_traits<Model>;
    constexpr bool model_ok = detail::model_requirements<Model, Real>::value;
    static_assert(!model_ok || tr::has_jvp || tr::has_analytic_divergence,
                  "scorekit::ExactTrace needs a model with a member `KOKKOS_INLINE_FUNCTION void jvp(const "
                  "value_type* x, const value_type* v, value_type* s, value_type* jv) const` (s = s(x), "
                  "jv = (ds/dx) v) or `KOKKOS_INLINE_FUNCTION value_type divergence(const value_type* x) "
                  "const` (each with a trailing `value_type* work` when it declares workspace_size())");
    (void)rng;
    Real* model_work = work + workspace_size(dim);
    if constexpr (model_ok && tr::has_analytic_divergence) {
      return analytic_divergence(model, x, model_work);
    } else if constexpr (model_ok && tr::has_jvp) {
      Real* v = work;
      Real* s = work + dim;
      Real* jv = work + 2 * dim;
      for (int j = 0; j < dim; ++j) v[j] = Real(0);
      Real trace = 0;
      for (int i = 0; i < dim; ++i) {
        v[i] = Real(1);
        jacobian_vector_product(model, x, static_cast<const Real*>(v), s, jv, model_work);
        trace += jv[i];
        v[i] = Real(0);
      }
      return trace;
    } else {
      return ((void)model, (void)x, (void)model_work, Real(0));
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
};

}  // namespace scorekit
