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

struct ReverseDiffusion : BlockStepper<ReverseDiffusion> {
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

  /// step() of nb particles at one time (integrate_common.hpp's step_block): the transition once, the
  /// scores through score_block_at_marginal, the normals side by side (for_each_normal_block); `g` is
  /// the block's nb d values of scratch.
  template <class System, class Real, class RngOf>
  KOKKOS_INLINE_FUNCTION void step_block(const System& system, int nb, Real* x, int x_stride, Real t,
                                         Real t_next, bool noise, Real* g, Real* work, int work_stride,
                                         RngOf&& rng_of) const {
    if constexpr (accepts<System>) {
      constexpr bool stochastic = detail::is_reverse_sde_system<System>::value;
      const int d = system.dim();
      const DiscreteTransition<Real> tr = detail::transition_and_scores(
          system, nb, static_cast<const Real*>(x), x_stride, t, t_next, g, work, work_stride);
      // x - (abar - 1) x + c G^2 s: c = 1 for the reverse SDE, 1/2 for the probability flow.
      const Real keep = Real(2) - tr.ratio;
      const Real c = stochastic ? tr.variance : Real(0.5) * tr.variance;
      if (stochastic && noise) {
        const Real G = math::sqrt(tr.variance);
        CounterRng<Real>::for_each_normal_block(nb, d, rng_of, [&](int b, int j, Real z) {
          Real& xj = x[b * x_stride + j];
          xj = keep * xj + c * g[b * d + j] + G * z;
        });
      } else {
        detail::for_each_coordinate(nb, d, x_stride, d, [&](int i, int k) { x[i] = keep * x[i] + c * g[k]; });
      }
    } else {
      (void)system, (void)nb, (void)x, (void)x_stride, (void)t, (void)t_next, (void)noise, (void)g,
          (void)work, (void)work_stride, (void)rng_of;
    }
  }
};

}  // namespace scorekit
