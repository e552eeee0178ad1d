// The variance-exploding SDE (Song et al. 2021, "Score-based generative modeling through stochastic
// differential equations", eq. 9 and appendix C): the continuous limit of NCSN's geometric ladder,
//   dx = sqrt(d sigma^2(t) / dt) dW,   sigma(t) = sigma_min (sigma_max / sigma_min)^t,   t in [0, 1],
// so f = 0 and g(t) = sigma(t) sqrt(2 log(sigma_max / sigma_min)).
//
// The exact transition from the data is p_0t = N(x_0, (sigma(t)^2 - sigma_min^2) I): the variance that
// dW has added since t = 0. (score_sde's code uses sigma(t)^2, which is the marginal of data that already
// carries N(0, sigma_min^2) noise; the two differ by sigma_min^2 in variance.) The prior is
// N(0, (sigma_max^2 - sigma_min^2) I).
#pragma once

#include <scorekit/sde/sde_common.hpp>

namespace scorekit {

template <class Real = double>
class VarianceExplodingSDE {
 public:
  using value_type = Real;

  VarianceExplodingSDE(Real sigma_min, Real sigma_max) : m_min(sigma_min), m_max(sigma_max) {
    const char* where = "VarianceExplodingSDE";
    require_positive(sigma_min, "sigma_min", where);
    require_positive(sigma_max, "sigma_max", where);
    detail::require_finite(sigma_max, "sigma_max", where);
    if (!(sigma_max > sigma_min))
      throw invalid_argument(detail::concat(where, ": sigma_max (", sigma_max,
                                            ") must be larger than sigma_min (", sigma_min, ")"));
    m_log_ratio = Real(std::log(double(sigma_max) / double(sigma_min)));
    m_g_factor = Real(std::sqrt(2 * std::log(double(sigma_max) / double(sigma_min))));
  }

  KOKKOS_INLINE_FUNCTION Real sigma_min() const { return m_min; }
  KOKKOS_INLINE_FUNCTION Real sigma_max() const { return m_max; }
  KOKKOS_INLINE_FUNCTION Real t_max() const { return Real(1); }
  KOKKOS_INLINE_FUNCTION Real prior_std() const {
    return Real(std::sqrt(double(m_max) * m_max - double(m_min) * m_min));
  }

  /// sigma(t) = sigma_min (sigma_max / sigma_min)^t.
  KOKKOS_INLINE_FUNCTION Real sigma(Real t) const { return m_min * math::exp(m_log_ratio * t); }
  KOKKOS_INLINE_FUNCTION Real drift_coefficient(Real) const { return Real(0); }
  KOKKOS_INLINE_FUNCTION Real diffusion(Real t) const { return sigma(t) * m_g_factor; }
  KOKKOS_INLINE_FUNCTION MarginalKernel<Real> marginal(Real t) const {
    // s^2 - sigma_min^2 = sigma_min^2 (e^{2 t log r} - 1), through expm1 so small t keeps its digits.
    const Real v = m_min * m_min * math::expm1(Real(2) * m_log_ratio * t);
    return MarginalKernel<Real>{Real(1), math::sqrt(v > Real(0) ? v : Real(0))};
  }

 private:
  Real m_min, m_max;
  Real m_log_ratio = 0;
  Real m_g_factor = 0;
};

}  // namespace scorekit
