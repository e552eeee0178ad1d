// The variance-preserving SDE (Song et al. 2021, eq. 11; the continuous limit of DDPM) and the sub-VP SDE
// (eq. 12), both driven by a beta schedule (schedule/linear_beta.hpp, schedule/cosine.hpp: any type with
// beta(t) and integral(t) = int_0^t beta):
//   VP:     dx = -beta(t)/2 x dt + sqrt(beta(t)) dW,
//           p_0t = N(e^{-B/2} x_0, (1 - e^{-B}) I),           B = int_0^t beta,
//   sub-VP: dx = -beta(t)/2 x dt + sqrt(beta(t) (1 - e^{-2B})) dW,
//           p_0t = N(e^{-B/2} x_0, (1 - e^{-B})^2 I).
// Both have prior N(0, I); at t = T the kernel's mean keeps a fraction e^{-B(T)/2} of x_0 (6.6e-3 for the
// linear schedule 0.1 -> 20), which is the mismatch every VP sampler starts from.
#pragma once

#include <scorekit/sde/sde_common.hpp>

namespace scorekit {
namespace detail {

template <class T, class = void>
struct has_t_max : std::false_type {};
template <class T>
struct has_t_max<T, std::void_t<decltype(double(std::declval<const T&>().t_max()))>> : std::true_type {};

template <class Beta>
double beta_t_max(const Beta& beta) {
  if constexpr (has_t_max<Beta>::value)
    return double(beta.t_max());
  else
    return ((void)beta, 1.0);
}

/// Checks a beta schedule on [0, T] (sampled at 65 points): beta(t) finite and >= 0, and some noise added
/// by T (int_0^T beta > 0).
template <class Real, class Beta>
void check_beta_schedule(const Beta& beta, double t_max, const char* where) {
  if (!(t_max > 0) || !(t_max < std::numeric_limits<double>::infinity()))
    throw invalid_argument(
        detail::concat(where, ": the schedule's t_max must be positive and finite, got ", t_max));
  for (int k = 0; k <= 64; ++k) {
    const Real t = Real(t_max * k / 64);
    const double b = double(beta.beta(t)), integral = double(beta.integral(t));
    if (!(b >= 0) || !(b < std::numeric_limits<double>::infinity()))
      throw invalid_argument(
          detail::concat(where, ": beta(t) must be finite and >= 0 on [0, T], but beta(", t, ") = ", b));
    if (!(integral >= 0) || !(integral < std::numeric_limits<double>::infinity()))
      throw invalid_argument(detail::concat(
          where, ": int_0^t beta must be finite and >= 0 on [0, T], but at t = ", t, " it is ", integral));
  }
  if (!(double(beta.integral(Real(t_max))) > 0))
    throw invalid_argument(detail::concat(where, ": the schedule adds no noise by T (int_0^T beta = 0)"));
}

}  // namespace detail

/// The variance-preserving SDE with beta schedule Beta.
template <class Real, class Beta>
class VariancePreservingSDE {
 public:
  using value_type = Real;
  using schedule_type = Beta;

  explicit VariancePreservingSDE(const Beta& beta) : m_beta(beta), m_t_max(Real(detail::beta_t_max(beta))) {
    detail::check_beta_schedule<Real>(beta, double(m_t_max), "VariancePreservingSDE");
  }

  const Beta& schedule() const { return m_beta; }
  KOKKOS_INLINE_FUNCTION Real t_max() const { return m_t_max; }
  KOKKOS_INLINE_FUNCTION Real prior_std() const { return Real(1); }

  KOKKOS_INLINE_FUNCTION Real beta(Real t) const { return m_beta.beta(t); }
  KOKKOS_INLINE_FUNCTION Real drift_coefficient(Real t) const { return Real(-0.5) * m_beta.beta(t); }
  KOKKOS_INLINE_FUNCTION Real diffusion(Real t) const { return math::sqrt(m_beta.beta(t)); }
  KOKKOS_INLINE_FUNCTION MarginalKernel<Real> marginal(Real t) const {
    const Real b = m_beta.integral(t);
    return MarginalKernel<Real>{math::exp(Real(-0.5) * b), math::sqrt(-math::expm1(-b))};
  }

 private:
  Beta m_beta;
  Real m_t_max;
};

/// The sub-VP SDE with beta schedule Beta.
template <class Real, class Beta>
class SubVariancePreservingSDE {
 public:
  using value_type = Real;
  using schedule_type = Beta;

  explicit SubVariancePreservingSDE(const Beta& beta)
      : m_beta(beta), m_t_max(Real(detail::beta_t_max(beta))) {
    detail::check_beta_schedule<Real>(beta, double(m_t_max), "SubVariancePreservingSDE");
  }

  const Beta& schedule() const { return m_beta; }
  KOKKOS_INLINE_FUNCTION Real t_max() const { return m_t_max; }
  KOKKOS_INLINE_FUNCTION Real prior_std() const { return Real(1); }

  KOKKOS_INLINE_FUNCTION Real beta(Real t) const { return m_beta.beta(t); }
  KOKKOS_INLINE_FUNCTION Real drift_coefficient(Real t) const { return Real(-0.5) * m_beta.beta(t); }
  KOKKOS_INLINE_FUNCTION Real diffusion(Real t) const {
    return math::sqrt(m_beta.beta(t) * -math::expm1(Real(-2) * m_beta.integral(t)));
  }
  KOKKOS_INLINE_FUNCTION MarginalKernel<Real> marginal(Real t) const {
    const Real b = m_beta.integral(t);
    return MarginalKernel<Real>{math::exp(Real(-0.5) * b), -math::expm1(-b)};
  }

 private:
  Beta m_beta;
  Real m_t_max;
};

/// Deduction helpers: vp_sde(LinearBeta<double>{}) and sub_vp_sde(...).
template <class Beta>
using beta_real_t = std::decay_t<decltype(std::declval<const Beta&>().beta(0.0))>;

template <class Beta>
VariancePreservingSDE<beta_real_t<Beta>, Beta> vp_sde(const Beta& beta) {
  return VariancePreservingSDE<beta_real_t<Beta>, Beta>(beta);
}
template <class Beta>
SubVariancePreservingSDE<beta_real_t<Beta>, Beta> sub_vp_sde(const Beta& beta) {
  return SubVariancePreservingSDE<beta_real_t<Beta>, Beta>(beta);
}

}  // namespace scorekit
