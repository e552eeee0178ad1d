// Overdamped Langevin diffusion towards a density pi, dx = grad log pi(x) dt + sqrt(2) dW, whose
// stationary law is pi (the continuous process behind ULA and MALA), and its Gaussian case, the
// Ornstein-Uhlenbeck process dx = -theta x dt + sigma dW, which has the closed-form marginal kernel
//   p_0t = N(e^{-theta t} x_0, sigma^2 (1 - e^{-2 theta t}) / (2 theta) I)
// (overdamped Langevin towards N(0, v I) is theta = 1/v, sigma = sqrt(2)). Both are DriftDiffusion
// systems: what Euler-Maruyama integrates (see integrate/euler_maruyama.hpp):
//   using value_type; KOKKOS_INLINE_FUNCTION int dim() const; optional KOKKOS_INLINE_FUNCTION int
//   workspace_size() const;
//   KOKKOS_INLINE_FUNCTION void drift(const value_type* x, value_type t, value_type* out,
//                                     value_type* work) const;
//   KOKKOS_INLINE_FUNCTION value_type diffusion(value_type t) const;
#pragma once

#include <scorekit/sde/sde_common.hpp>

namespace scorekit {

/// dx = grad log pi(x) dt + sqrt(2) dW for any Density pi with a score.
template <class Density>
class OverdampedLangevinSDE {
 public:
  using value_type = typename Density::value_type;

  explicit OverdampedLangevinSDE(const Density& density) : m_density(density) {
    assert_score_density<Density>();
  }
  KOKKOS_INLINE_FUNCTION int dim() const { return m_density.dim(); }
  KOKKOS_INLINE_FUNCTION int workspace_size() const { return scorekit::workspace_size(m_density); }
  const Density& density() const { return m_density; }

  KOKKOS_INLINE_FUNCTION void drift(const value_type* x, value_type, value_type* out,
                                    value_type* work) const {
    score(m_density, x, out, work);
  }
  KOKKOS_INLINE_FUNCTION value_type diffusion(value_type) const { return math::sqrt(value_type(2)); }

 private:
  Density m_density;
};

/// dx = -theta x dt + sigma dW in d dimensions, with its exact marginal kernel.
template <class Real = double>
class OrnsteinUhlenbeckSDE {
 public:
  using value_type = Real;

  OrnsteinUhlenbeckSDE(int dim, Real theta, Real sigma) : m_dim(dim), m_theta(theta), m_sigma(sigma) {
    const char* where = "OrnsteinUhlenbeckSDE";
    if (dim < 1) throw invalid_argument(detail::concat(where, ": the dimension must be >= 1, got ", dim));
    require_positive(theta, "theta", where);
    require_positive(sigma, "sigma", where);
    detail::require_finite(theta, "theta", where);
    detail::require_finite(sigma, "sigma", where);
  }

  KOKKOS_INLINE_FUNCTION int dim() const { return m_dim; }
  KOKKOS_INLINE_FUNCTION Real theta() const { return m_theta; }
  KOKKOS_INLINE_FUNCTION Real sigma() const { return m_sigma; }

  KOKKOS_INLINE_FUNCTION void drift(const Real* x, Real, Real* out, Real*) const {
    for (int j = 0; j < m_dim; ++j) out[j] = -m_theta * x[j];
  }
  KOKKOS_INLINE_FUNCTION Real drift_coefficient(Real) const { return -m_theta; }
  KOKKOS_INLINE_FUNCTION Real diffusion(Real) const { return m_sigma; }
  /// The law of x_t given x_0 (mean scale and standard deviation).
  KOKKOS_INLINE_FUNCTION MarginalKernel<Real> marginal(Real t) const {
    const Real v = -m_sigma * m_sigma * math::expm1(Real(-2) * m_theta * t) / (Real(2) * m_theta);
    return MarginalKernel<Real>{math::exp(-m_theta * t), math::sqrt(v)};
  }

 private:
  int m_dim;
  Real m_theta, m_sigma;
};

}  // namespace scorekit
