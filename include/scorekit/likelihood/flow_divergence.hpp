// The probability-flow drift at a fixed time as a model that the divergence estimators of divergence/
// accept, so that ExactTrace, Hutchinson<Probe> or FiniteDifferenceDivergence give div_x f~(x, t) for
//   f~(x, t) = f(t) x - g(t)^2 grad log p_t(x) / 2,
//   div f~  = d f(t) - g(t)^2 div grad log p_t(x) / 2
// (Song et al. 2021, "Score-based generative modeling through stochastic differential equations", eq. 13
// and appendix D.2). The score at time t comes from a noise-conditional model through the change of
// variables of sde/sde_common.hpp, grad log p_t(x) = s_sigma(x / a) / a with sigma = s(t) / a(t), so its
// derivatives follow by the chain rule:
//   (d/dx)[s_sigma(x / a) / a] v = J_sigma(x / a) v / a^2,   div_x [s_sigma(x / a) / a] = (div s_sigma)(x /
//   a) / a^2.
//
// Beyond score(x, sigma, out[, work]), a noise-conditional model may offer
//   KOKKOS_INLINE_FUNCTION void jvp(const value_type* x, value_type sigma, const value_type* v,
//                                   value_type* s, value_type* jv[, value_type* work]) const;
//       // s = s_sigma(x), jv = (d s_sigma / dx)(x) v: needed by Hutchinson, and by ExactTrace without:
//   KOKKOS_INLINE_FUNCTION value_type divergence(const value_type* x, value_type sigma[, value_type* work])
//   const;
//       // the exact trace of d s_sigma / dx (PerturbedMixtureScore: the Laplacian of log p_sigma)
// (with `work` exactly when the model declares workspace_size()). ProbabilityFlowAtTime has the matching
// jvp / divergence members only when the model has them, so each estimator's own detection picks the
// exact path when there is one.
#pragma once

#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/traits.hpp>
#include <scorekit/divergence/model_traits.hpp>
#include <scorekit/sde/sde_common.hpp>

#include <type_traits>
#include <utility>

namespace scorekit {
namespace detail {

// divergence(x, sigma) / divergence(x, sigma, work)
template <class T, class = void>
struct has_nc_divergence_2 : std::false_type {};
template <class T>
struct has_nc_divergence_2<T, std::void_t<decltype(real_t<T>(std::declval<const T&>().divergence(
                                  std::declval<cptr<T>>(), std::declval<real_t<T>>())))>> : std::true_type {};
template <class T, class = void>
struct has_nc_divergence_3 : std::false_type {};
template <class T>
struct has_nc_divergence_3<T,
                           std::void_t<decltype(real_t<T>(std::declval<const T&>().divergence(
                               std::declval<cptr<T>>(), std::declval<real_t<T>>(), std::declval<ptr<T>>())))>>
    : std::true_type {};

}  // namespace detail

/// True when a noise-conditional model has divergence(x, sigma[, work]).
template <class T>
constexpr bool has_noise_conditional_divergence_v =
    policy_traits<T>::has_workspace ? detail::has_nc_divergence_3<T>::value
                                    : detail::has_nc_divergence_2<T>::value;

/// The model's exact noise-conditional divergence.
template <class Model, class Real>
KOKKOS_INLINE_FUNCTION Real noise_conditional_divergence(const Model& model, const Real* x, Real sigma,
                                                         Real* work) {
  if constexpr (policy_traits<Model>::has_workspace && detail::has_nc_divergence_3<Model>::value)
    return model.divergence(x, sigma, work);
  else if constexpr (!policy_traits<Model>::has_workspace && detail::has_nc_divergence_2<Model>::value)
    return ((void)work, model.divergence(x, sigma));
  else
    return ((void)model, (void)x, (void)sigma, (void)work, Real(0));
}

/// f~(., t) of the probability-flow ODE of `sde` with score model `model`, frozen at time t > 0, as a
/// model for divergence/ estimators: score(x, out, work) = f~(x, t), and, when the model has them,
/// jvp(x, v, s, jv, work) = (f~, (d f~/dx) v) and divergence(x, work) = div f~. Holds references: build
/// it where it is used (inside a kernel, per evaluation; it costs one sde.marginal(t)).
/// workspace_size() = the model's + dim.
template <class SDE, class Model>
class ProbabilityFlowAtTime {
 public:
  using value_type = typename Model::value_type;
  using Real = value_type;

  KOKKOS_INLINE_FUNCTION ProbabilityFlowAtTime(const SDE& sde, const Model& model, int dim, Real t)
      : m_model(model), m_dim(dim), m_kernel(sde.marginal(t)) {
    const Real g = sde.diffusion(t);
    m_f = sde.drift_coefficient(t);
    m_c = Real(-0.5) * g * g;
  }

  KOKKOS_INLINE_FUNCTION int dim() const { return m_dim; }
  /// The model's workspace and d values for x / a(t) (a host call).
  KOKKOS_INLINE_FUNCTION int workspace_size() const { return ::scorekit::workspace_size(m_model) + m_dim; }

  /// f~(x, t) = f x - g^2 s_t(x) / 2.
  KOKKOS_INLINE_FUNCTION void score(const Real* x, Real* out, Real* work) const {
    score_at_marginal(m_model, m_dim, x, m_kernel, out, work);
    for (int j = 0; j < m_dim; ++j) out[j] = m_f * x[j] + m_c * out[j];
  }

  /// s = f~(x, t) and jv = (d f~ / dx) v = f v - g^2 J_sigma(x / a) v / (2 a^2).
  template <class M = Model, std::enable_if_t<has_noise_conditional_jvp_v<M>, int> = 0>
  KOKKOS_INLINE_FUNCTION void jvp(const Real* x, const Real* v, Real* s, Real* jv, Real* work) const {
    const Real a = m_kernel.scale, sigma = m_kernel.sigma();
    const Real* y = scaled(x, work);
    noise_conditional_jvp(m_model, y, sigma, v, s, jv, work + m_dim);
    const Real inv = Real(1) / a;
    const Real cs = m_c * inv, cj = m_c * inv * inv;
    for (int j = 0; j < m_dim; ++j) {
      s[j] = m_f * x[j] + cs * s[j];
      jv[j] = m_f * v[j] + cj * jv[j];
    }
  }

  /// div f~(x, t) = d f - g^2 (div s_sigma)(x / a) / (2 a^2).
  template <class M = Model, std::enable_if_t<has_noise_conditional_divergence_v<M>, int> = 0>
  KOKKOS_INLINE_FUNCTION Real divergence(const Real* x, Real* work) const {
    const Real a = m_kernel.scale;
    const Real* y = scaled(x, work);
    const Real div = noise_conditional_divergence(m_model, y, m_kernel.sigma(), work + m_dim);
    return Real(m_dim) * m_f + m_c * div / (a * a);
  }

  KOKKOS_INLINE_FUNCTION const MarginalKernel<Real>& kernel() const { return m_kernel; }

 private:
  // x / a in work[0, d), or x itself when a = 1.
  KOKKOS_INLINE_FUNCTION const Real* scaled(const Real* x, Real* work) const {
    if (m_kernel.scale == Real(1)) return x;
    const Real inv = Real(1) / m_kernel.scale;
    for (int j = 0; j < m_dim; ++j) work[j] = x[j] * inv;
    return work;
  }

  const Model& m_model;
  int m_dim;
  MarginalKernel<Real> m_kernel;
  Real m_f = 0, m_c = 0;
};

}  // namespace scorekit
