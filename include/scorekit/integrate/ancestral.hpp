// Ancestral sampling (Ho, Jain and Abbeel 2020, "Denoising diffusion probabilistic models", eqs. 6-7 and
// algorithm 2; score_sde's AncestralSamplingPredictor), written for any linear noising SDE through its
// marginals.
//
// With the exact forward transition x_t = abar x_t' + shat z from t' to t (t' < t;
// integrate/discrete_transition.hpp), the posterior of the earlier state given the later one and the data
// is Gaussian (Ho et al. eq. 7):
//   q(x_t' | x_t, x_0) = N( (a_t' shat^2 / s_t^2) x_0 + (abar s_t'^2 / s_t^2) x_t,  (shat^2 s_t'^2 / s_t^2) I
//   ).
// The sampler replaces x_0 by Tweedie's estimate x0_hat = (x_t + s_t^2 grad log p_t(x_t)) / a_t. Since
// s_t^2 = abar^2 s_t'^2 + shat^2 and a_t' / a_t = 1 / abar, the mean collapses to
//   mean = (x_t + shat^2 grad log p_t(x_t)) / abar,
// which is what the step computes (no division by s_t^2, no cancellation). Special forms (checked in
// tests/test_reverse_integrators.cpp):
//   VE (abar = 1, shat^2 = sigma_i^2 - sigma_{i-1}^2):
//       mean = x + (sigma_i^2 - sigma_{i-1}^2) s(x),  std = sqrt(sigma_{i-1}^2 (sigma_i^2 - sigma_{i-1}^2) /
//       sigma_i^2),
//     score_sde's VE ancestral step, with sigma_i the kernel std s(t);
//   VP (abar = sqrt(1 - beta_i), shat^2 = beta_i):
//       mean = (x + beta_i s(x)) / sqrt(1 - beta_i),  variance = beta_tilde_i = beta_i (1 - alphabar_{i-1}) /
//       (1 - alphabar_i),
//     DDPM's mean with its posterior variance beta_tilde. score_sde's VP predictor (and one of Ho et al.'s
//     two choices) takes the variance beta_i instead; beta_tilde is the exact posterior, consistent with VE,
//     and the eta = 1 end of DDIM.
//
// One score evaluation a step; d normals from the step's CounterRng. Needs a ReverseSDE system (the
// sampler is stochastic by construction; DDIM with eta = 0 is its deterministic counterpart). Steps must go
// backwards in time (checked on the host).
#pragma once

#include <scorekit/integrate/discrete_transition.hpp>
#include <scorekit/integrate/integrate_common.hpp>

namespace scorekit {

struct AncestralSampling : BlockStepper<AncestralSampling> {
  static constexpr int n_vectors = 1;

  template <class System>
  static constexpr bool accepts = detail::is_reverse_sde_system<System>::value;

  template <class System>
  static void check(const System&) {
    static_assert(
        accepts<System>,
        "scorekit::AncestralSampling needs a ReverseSDE system (sde/reverse.hpp): it samples the exact "
        "posterior of the system's noising SDE, through system.sde() and system.model()");
  }

  int evaluations(double t, double t_next) const {
    detail::require_backward_step(t, t_next, "scorekit::AncestralSampling");
    return 1;
  }

  /// step() of nb particles at one time (integrate_common.hpp's step_block): the transition once, the
  /// scores through score_block_at_marginal, the normals side by side; `g` is the block's nb d values of
  /// scratch.
  template <class System, class Real, class RngOf>
  KOKKOS_INLINE_FUNCTION void step_block(const System& system, int nb, Real* x, int x_stride, Real t,
                                         Real t_next, bool noise, Real* g, Real* work, int work_stride,
                                         RngOf&& rng_of) const {
    if constexpr (accepts<System>) {
      const int d = system.dim();
      const DiscreteTransition<Real> tr = detail::transition_and_scores(
          system, nb, static_cast<const Real*>(x), x_stride, t, t_next, g, work, work_stride);
      const Real inv_ratio = Real(1) / tr.ratio;
      const Real c = tr.variance * inv_ratio;
      if (noise) {
        // sqrt(shat^2 s_t'^2 / s_t^2); s_t > 0 since t > t_next >= 0.
        const Real std = math::sqrt(tr.variance) * (tr.from.std / tr.to.std);
        CounterRng<Real>::for_each_normal_block(nb, d, rng_of, [&](int b, int j, Real z) {
          Real& xj = x[b * x_stride + j];
          xj = inv_ratio * xj + c * g[b * d + j] + std * z;
        });
      } else {
        detail::for_each_coordinate(nb, d, x_stride, d,
                                    [&](int i, int k) { x[i] = inv_ratio * x[i] + c * g[k]; });
      }
    } else {
      (void)system, (void)nb, (void)x, (void)x_stride, (void)t, (void)t_next, (void)noise, (void)g,
          (void)work, (void)work_stride, (void)rng_of;
    }
  }
};

}  // namespace scorekit
