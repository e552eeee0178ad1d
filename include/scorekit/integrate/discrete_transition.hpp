// The exact one-step transition of a linear noising SDE between two grid times, the building block of the
// discrete reverse samplers (reverse diffusion, DDPM ancestral sampling, DDIM, the Langevin corrector's
// step size), and the traits those samplers use to recognise a system built from a noising SDE.
//
// Derivation. A noising SDE dx = f(t) x dt + g(t) dW (sde/sde_common.hpp) is linear, so for t' < t
//   x_t = (a(t)/a(t')) x_t' + int_{t'}^t (a(t)/a(u)) g(u) dW_u,     a(t) = exp(int_0^t f),
// a Gaussian transition x_t = abar x_t' + shat z with
//   abar = a(t) / a(t'),   shat^2 = int_{t'}^t (a(t)/a(u))^2 g(u)^2 du.
// The kernel from the data is the same formula from 0: s(t)^2 = int_0^t (a(t)/a(u))^2 g(u)^2 du, and
// splitting that integral at t' gives s(t)^2 = abar^2 s(t')^2 + shat^2. So, from the marginals alone,
//   shat^2 = s(t)^2 - abar^2 s(t')^2,
// exact (not a discretisation) for every linear SDE. Special cases:
//   VE:     a = 1, s(t)^2 = sigma(t)^2 - sigma_min^2  ->  abar = 1, shat^2 = sigma(t)^2 - sigma(t')^2
//           (score_sde's sigma_i^2 - sigma_{i-1}^2);
//   VP:     a = e^{-B/2}, s^2 = 1 - e^{-B}  ->  abar = sqrt(1 - beta_i), shat^2 = beta_i with
//           beta_i = 1 - exp(-int_{t'}^t beta) (DDPM's beta_i; score_sde's discretisation takes
//           beta_i = beta(t) / N, the same to first order in the step);
//   sub-VP: a = e^{-B/2}, s = 1 - e^{-B}  ->  abar = sqrt(1 - beta_i) as VP, shat^2 = s(t)^2 - abar^2 s(t')^2
//           (score_sde has no special discretisation for sub-VP: it falls back to Euler-Maruyama there).
// Rounding: shat^2 is a difference of two O(s^2) numbers, so its relative error is about
// eps * s(t)^2 / shat^2 ~ eps / (relative step); in float with 10^4 steps that is ~1e-3 of a small
// quantity. It is clamped at 0.
#pragma once

#include <scorekit/sde/reverse.hpp>
#include <scorekit/sde/sde_common.hpp>

#include <type_traits>
#include <utility>

namespace scorekit {

/// The forward transition x_t = ratio x_t' + sqrt(variance) z of a linear noising SDE from t' (`from`, the
/// earlier time) to t (`to`), with the two marginal kernels it was computed from.
template <class Real>
struct DiscreteTransition {
  MarginalKernel<Real> from;  ///< p_0t' (a(t'), s(t'))
  MarginalKernel<Real> to;    ///< p_0t (a(t), s(t))
  Real ratio = 1;             ///< abar = a(t) / a(t')
  Real variance = 0;          ///< shat^2 = s(t)^2 - abar^2 s(t')^2, clamped at 0
};

/// The transition from t_earlier to t_later (t_earlier < t_later) of a noising SDE, from its marginals.
template <class SDE, class Real>
KOKKOS_INLINE_FUNCTION DiscreteTransition<Real> discrete_transition(const SDE& sde, Real t_earlier,
                                                                    Real t_later) {
  DiscreteTransition<Real> tr;
  tr.from = sde.marginal(t_earlier);
  tr.to = sde.marginal(t_later);
  tr.ratio = tr.to.scale / tr.from.scale;
  const Real carried = tr.ratio * tr.from.std;
  const Real v = (tr.to.std - carried) * (tr.to.std + carried);
  tr.variance = v > Real(0) ? v : Real(0);
  return tr;
}

namespace detail {

/// A system built from a noising SDE and a noise-conditional score model: members sde() and model().
template <class T, class = void>
struct is_score_system : std::false_type {};
template <class T>
struct is_score_system<
    T, std::void_t<decltype(std::declval<const T&>().sde()), decltype(std::declval<const T&>().model())>>
    : std::integral_constant<
          bool, is_noising_sde_v<std::decay_t<decltype(std::declval<const T&>().sde())>> &&
                    is_noise_conditional_score_v<std::decay_t<decltype(std::declval<const T&>().model())>>> {
};

template <class T>
struct is_reverse_sde_system : std::false_type {};
template <class SDE, class Model>
struct is_reverse_sde_system<ReverseSDE<SDE, Model>> : std::true_type {};

template <class T>
struct is_probability_flow_system : std::false_type {};
template <class SDE, class Model>
struct is_probability_flow_system<ProbabilityFlowODE<SDE, Model>> : std::true_type {};

/// What the discrete reverse samplers (reverse diffusion, ancestral sampling, DDIM) start a step with: the
/// transition from t_next to t of the system's SDE, and the scores at t of nb particles (particle b at
/// x + b x_stride, its score to g + b d, its workspace at work + b work_stride) through
/// score_block_at_marginal.
template <class System, class Real>
KOKKOS_INLINE_FUNCTION DiscreteTransition<Real> transition_and_scores(const System& system, int nb,
                                                                      const Real* x, int x_stride, Real t,
                                                                      Real t_next, Real* g, Real* work,
                                                                      int work_stride) {
  const DiscreteTransition<Real> tr = discrete_transition(system.sde(), t_next, t);
  score_block_at_marginal(system.model(), nb, system.dim(), x, x_stride, tr.to, g, system.dim(), work,
                          work_stride);
  return tr;
}

/// Host check that a discrete reverse sampler steps backwards in time (t_next < t).
inline void require_backward_step(double t, double t_next, const char* who) {
  if (!(t_next < t))
    throw invalid_argument(detail::concat(who,
                                          ": steps backwards in time (a decreasing grid, t_next < t), got ",
                                          "a step from ", t, " to ", t_next));
}

/// Host check of an integrator parameter: finite and within [lo, hi].
inline void require_in_range(double value, double lo, double hi, const char* what, const char* who) {
  if (!(value >= lo && value <= hi))
    throw invalid_argument(detail::concat(who, ": ", what, " must lie in [", lo, ", ", hi, "], got ", value));
}

}  // namespace detail

/// True when System has sde() (a noising SDE) and model() (a noise-conditional score model), as
/// ReverseSDE and ProbabilityFlowODE do.
template <class System>
constexpr bool is_score_system_v = detail::is_score_system<System>::value;

}  // namespace scorekit
