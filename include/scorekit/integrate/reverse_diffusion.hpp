// Reverse diffusion (Song et al. 2021, "Score-based generative modeling through stochastic differential
// equations", eq. 46 and score_sde's ReverseDiffusionPredictor): discretise the forward SDE exactly on the
// grid and run that discrete chain backwards with the score.
//
// The forward transition from t' to t (t' < t) is x_t = abar x_t' + shat z, exact for every linear SDE
// (integrate/discrete_transition.hpp derives abar = a(t)/a(t') and shat^2 = s(t)^2 - abar^2 s(t')^2 from the
// marginals). Written as x_t = x_t' + f_disc(x_t') + G z with f_disc(x) = (abar - 1) x and G = shat, the
// reverse of that discrete SDE (Song et al. 2021, appendix E) is
//   x_t' = x_t - f_disc(x_t) + G^2 grad log p_t(x_t) + G z,
// and on a ProbabilityFlowODE system, as in score_sde, x_t' = x_t - f_disc(x_t) + G^2 grad log p_t(x_t) / 2
// with no noise. Special forms (checked in tests/test_reverse_integrators.cpp):
//   VE:  x' = x + (sigma_i^2 - sigma_{i-1}^2) s(x) + sqrt(sigma_i^2 - sigma_{i-1}^2) z;
//   VP:  x' = (2 - sqrt(1 - beta_i)) x + beta_i s(x) + sqrt(beta_i) z, beta_i = 1 - exp(-int_{t'}^t beta).
// score_sde's VP takes beta_i = beta(t) / N (first-order equal), and for sub-VP, which has no discretisation
// of its own there, falls back to Euler-Maruyama; here every SDE gets its exact transition.
//
// One score evaluation a step; noise draws: d normals from the step's CounterRng. Steps must go backwards
// in time (checked on the host).
#pragma once

#include <scorekit/integrate/discrete_transition.hpp>
#include <scorekit/integrate/integrate_common.hpp>

namespace scorekit {

struct ReverseDiffusion {
  static constexpr int n_vectors = 1;

  /// The systems reverse diffusion steps: a ReverseSDE or a ProbabilityFlowODE (sde/reverse.hpp).
  template <class System>
  static constexpr bool accepts =
      detail::is_reverse_sde_system<System>::value || detail::is_probability_flow_system<System>::value;

  template <class System>
  static void check(const System&) {
    static_assert(
        accepts<System>,
        "scorekit::ReverseDiffusion needs a ReverseSDE or ProbabilityFlowODE system (sde/reverse.hpp): "
        "it steps the exact discrete transition of the system's noising SDE, through system.sde() "
        "and system.model()");
  }

  int evaluations(double t, double t_next) const {
    detail::require_backward_step(t, t_next, "scorekit::ReverseDiffusion");
    return 1;
  }

  template <class System, class Real>
  KOKKOS_INLINE_FUNCTION void step(const System& system, Real* x, Real t, Real t_next, bool noise, Real* g,
                                   Real* work, CounterRng<Real>& rng) const {
    if constexpr (accepts<System>) {
      constexpr bool stochastic = detail::is_reverse_sde_system<System>::value;
      const int d = system.dim();
      const DiscreteTransition<Real> tr = discrete_transition(system.sde(), t_next, t);
      score_at_marginal(system.model(), d, static_cast<const Real*>(x), tr.to, g, work);
      // x - (abar - 1) x + c G^2 s: c = 1 for the reverse SDE, 1/2 for the probability flow.
      const Real keep = Real(2) - tr.ratio;
      const Real c = stochastic ? tr.variance : Real(0.5) * tr.variance;
      if (stochastic && noise) {
        const Real G = math::sqrt(tr.variance);
        rng.for_each_normal(d, [&](int j, Real z) { x[j] = keep * x[j] + c * g[j] + G * z; });
      } else {
        for (int j = 0; j < d; ++j) x[j] = keep * x[j] + c * g[j];
      }
    } else {
      (void)system, (void)x, (void)t, (void)t_next, (void)noise, (void)g, (void)work, (void)rng;
    }
  }
};

}  // namespace scorekit
