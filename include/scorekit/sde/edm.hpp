// The noising SDE of EDM (Karras, Aittala, Aila and Laine 2022, "Elucidating the design space of
// diffusion-based generative models", section 3 and table 1), with its choice sigma(t) = t and s(t) = 1:
//   dx = sqrt(d sigma^2(t) / dt) dW = sqrt(2 t) dW,   t in [0, sigma_max],
// so f = 0, g(t) = sqrt(2 t), and the transition from the data is p_0t = N(x_0, t^2 I): time IS the noise
// level. Its probability-flow ODE is EDM's dx/dt = -t grad log p_t(x) (their eq. 4 with sigma(t) = t), what
// the Heun sampler (integrate/heun.hpp) integrates over a Karras grid (schedule/karras.hpp). The prior is
// N(0, sigma_max^2 I) (which neglects the data's own spread, as EDM does).
//
// Unlike the VE SDE of Song et al. (sde/variance_exploding.hpp), which also has f = 0, the time here is
// not a fraction of a schedule: t_max() = sigma_max, and a sampler's grid is a ladder of noise levels.
#pragma once

#include <scorekit/sde/sde_common.hpp>

namespace scorekit {

template <class Real = double>
class EdmSDE {
 public:
  using value_type = Real;

  explicit EdmSDE(Real sigma_max) : m_max(sigma_max) {
    require_positive(sigma_max, "sigma_max", "EdmSDE");  // also refuses inf and NaN
  }

  KOKKOS_INLINE_FUNCTION Real sigma_max() const { return m_max; }
  KOKKOS_INLINE_FUNCTION Real t_max() const { return m_max; }
  KOKKOS_INLINE_FUNCTION Real prior_std() const { return m_max; }

  /// sigma(t) = t.
  KOKKOS_INLINE_FUNCTION Real sigma(Real t) const { return t; }
  /// The time at which the noise level marginal(t).sigma() equals sigma: sigma itself, for every sigma >= 0
  /// (also above sigma_max: the SDE extends past t_max, which EDM's churn uses; see integrate/heun.hpp).
  KOKKOS_INLINE_FUNCTION Real time_of_sigma(Real sigma) const { return sigma; }
  KOKKOS_INLINE_FUNCTION Real drift_coefficient(Real) const { return Real(0); }
  /// g(t) = sqrt(2 t) (t < 0 is outside the SDE and gives 0).
  KOKKOS_INLINE_FUNCTION Real diffusion(Real t) const {
    return math::sqrt(t > Real(0) ? Real(2) * t : Real(0));
  }
  /// p_0t = N(x_0, t^2 I).
  KOKKOS_INLINE_FUNCTION MarginalKernel<Real> marginal(Real t) const {
    return MarginalKernel<Real>{Real(1), t};
  }

 private:
  Real m_max;
};

}  // namespace scorekit
