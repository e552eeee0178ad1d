// DDIM (Song, Meng and Ermon 2021, "Denoising diffusion implicit models", eq. 12), written for any linear
// noising SDE through its marginals p_0t = N(a_t x_0, s_t^2 I). With the score s(x) = grad log p_t(x) at
// the current time t and t' < t the next one:
//   eps_hat   = -s_t s(x)                          (the predicted noise: x = a_t x_0 + s_t eps)
//   x0_hat    = (x - s_t eps_hat) / a_t = (x + s_t^2 s(x)) / a_t     (Tweedie)
//   sigma_eta = eta sqrt(shat^2 s_t'^2 / s_t^2)     (eta times the std of ancestral sampling's posterior)
//   x'        = a_t' x0_hat + sqrt(s_t'^2 - sigma_eta^2) eps_hat + sigma_eta z.
// eta = 1 has the mean and the variance of the ancestral step exactly (integrate/ancestral.hpp), so it is
// ancestral sampling in law (and, drawing z the same way, step for step). eta = 0 is deterministic: in
// y = x / a and sigma = s / a it reads y' = y + (sigma' - sigma) eps_hat(y), Euler's method in sigma for the
// probability-flow ODE dy/dsigma = eps(y, sigma), i.e. the exponential-integrator view of DDIM (Zhang and
// Chen 2023, "Fast sampling of diffusion models with exponential integrator"; Karras et al. 2022 make the
// same observation for their sigma-parametrised ODE). It is first order in the step.
//
// The step is computed as x' = x / abar + k s(x) + sigma_eta z with abar = a_t / a_t',
// c = sqrt(s_t'^2 - sigma_eta^2) and
//   k = s_t (s_t / abar - c) = s_t (shat^2 + abar^2 sigma_eta^2) / (abar (s_t + abar c))
// (the second form has no cancellation for small steps).
//
// The system supplies only the SDE and the score model, so DDIM runs on a ReverseSDE or a ProbabilityFlowODE
// alike; the noise is set by eta alone. One score evaluation a step; with eta > 0, d normals from the step's
// CounterRng. Steps must go backwards in time. eta must lie in [0, 1]: the constructor checks it, and so does
// evaluations(), which the driver calls on the host before every run, so a field set after construction is
// checked too.
#pragma once

#include <scorekit/integrate/discrete_transition.hpp>
#include <scorekit/integrate/integrate_common.hpp>

namespace scorekit {

struct Ddim : BlockStepper<Ddim> {
  double eta = 0;

  Ddim() = default;
  explicit Ddim(double eta_) : eta(eta_) { validate(); }

  /// Throws invalid_argument unless eta lies in [0, 1].
  void validate() const { detail::require_in_range(eta, 0.0, 1.0, "eta", "scorekit::Ddim"); }

  static constexpr int n_vectors = 1;

  template <class System>
  static constexpr bool accepts = is_score_system_v<System>;

  template <class System>
  static void check(const System&) {
    static_assert(
        accepts<System>,
        "scorekit::Ddim needs a system built from a noising SDE and a score model, with members sde() "
        "and model() (a ReverseSDE or ProbabilityFlowODE, sde/reverse.hpp)");
  }

  int evaluations(double t, double t_next) const {
    validate();
    detail::require_backward_step(t, t_next, "scorekit::Ddim");
    return 1;
  }

  /// step() of nb particles at one time (integrate_common.hpp's step_block): the coefficients once, the
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
      const Real s = tr.to.std, s_next = tr.from.std;
      const Real sigma_eta = Real(eta) * math::sqrt(tr.variance) * (s_next / s);
      const Real c2 = s_next * s_next - sigma_eta * sigma_eta;
      const Real c = math::sqrt(c2 > Real(0) ? c2 : Real(0));
      const Real inv_ratio = Real(1) / tr.ratio;
      const Real k =
          s * (tr.variance + tr.ratio * tr.ratio * sigma_eta * sigma_eta) / (tr.ratio * (s + tr.ratio * c));
      if (noise && sigma_eta > Real(0)) {
        CounterRng<Real>::for_each_normal_block(nb, d, rng_of, [&](int b, int j, Real z) {
          Real& xj = x[b * x_stride + j];
          xj = inv_ratio * xj + k * g[b * d + j] + sigma_eta * z;
        });
      } else {
        detail::for_each_coordinate(nb, d, x_stride, d,
                                    [&](int i, int m) { x[i] = inv_ratio * x[i] + k * g[m]; });
      }
    } else {
      (void)system, (void)nb, (void)x, (void)x_stride, (void)t, (void)t_next, (void)noise, (void)g,
          (void)work, (void)work_stride, (void)rng_of;
    }
  }
};

}  // namespace scorekit
