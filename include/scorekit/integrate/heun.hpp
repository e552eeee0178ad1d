// Heun's second-order method for the probability-flow ODE, EDM's sampler (Karras, Aittala, Aila and Laine
// 2022, "Elucidating the design space of diffusion-based generative models", Algorithm 1, and with churn
// Algorithm 2), for the probability-flow ODE of any noising SDE (sde/reverse.hpp: probability_flow(sde,
// model)); EDM's own setting is EdmSDE (sde/edm.hpp) over a Karras grid (schedule/karras.hpp) with 0
// appended.
//
// The step from t to t' (dx/dt = F(x, t), the PF drift):
//   d  = F(x, t),  x1 = x + (t' - t) d                        (Euler predictor)
//   x' = x + (t' - t) (d + F(x1, t')) / 2                     (trapezoidal corrector)
// two model evaluations, second order. When t' == 0 the step is Euler's, x' = x1, with one evaluation
// (EDM's rule): the PF drift at t = 0 would ask the model at noise level 0, which a trained model never saw
// and an exact model may refuse; our grids normally stop at an eps > 0, but a grid ending at 0 is handled.
//
// Churn (EDM's "stochastic sampler", Algorithm 2; off by default). Before a backward step from t, when
// churn_t_min <= t <= churn_t_max, the noise level sigma(t) = s(t) / a(t) of the marginal kernel is raised
// to sigma_hat = (1 + gamma) sigma(t) by the exact forward transition of the SDE from t to the time t_hat
// where the kernel's noise level is sigma_hat,
//   x_hat = abar x + churn_noise shat z,   abar = a(t_hat) / a(t),   shat^2 = s(t_hat)^2 - abar^2 s(t)^2
// (integrate/discrete_transition.hpp), and the Heun step then runs from t_hat to t'. With
//   gamma = min(churn / n_steps, sqrt(2) - 1),
// churn is EDM's S_churn and n_steps their N, the number of steps of the grid (times.size() - 1), so that
// EDM's published settings carry over unchanged; churn_t_min / churn_t_max are S_tmin / S_tmax in the
// system's time units (for EdmSDE, where sigma(t) = t, these are noise levels as in EDM) and churn_noise
// is S_noise. For EdmSDE, t_hat = (1 + gamma) t as in EDM (the SDE has the closed form time_of_sigma,
// valid above sigma_max too); for any other SDE t_hat is found by bisection on [t, T] (sigma(t) = s/a is
// increasing for every SDE in sde/), and when sigma_hat exceeds sigma(T) the rise stops at T, since the
// schedules are defined on [0, T] only. Churn applies to backward steps only, and not on a step run
// with noise off (the last step of a run with remove_last_noise set): that step is plain Heun.
//
// Which systems: the ProbabilityFlowODE of any noising SDE and any noise-conditional score model (a
// guided or conditioned model included). Heun ignores diffusion, so a ReverseSDE or a forward SDE would
// silently lose its noise: those are refused at compile time (use EulerMaruyama). The settings are
// checked by validate(), which evaluations() calls: the driver calls evaluations() on the host before
// every run, so fields set after construction are checked too.
#pragma once

#include <scorekit/integrate/discrete_transition.hpp>
#include <scorekit/integrate/integrate_common.hpp>
#include <scorekit/sde/reverse.hpp>

#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>

namespace scorekit {
namespace detail {

/// SDEs that know the time at which their kernel's noise level is sigma (EdmSDE: t = sigma).
template <class SDE, class = void>
struct has_time_of_sigma : std::false_type {};
template <class SDE>
struct has_time_of_sigma<SDE, std::void_t<decltype(std::declval<const SDE&>().time_of_sigma(
                                  std::declval<typename SDE::value_type>()))>> : std::true_type {};

}  // namespace detail

struct Heun {
  double churn = 0;        ///< EDM's S_churn: total churn over the grid, >= 0 (0: deterministic Heun)
  int n_steps = 0;         ///< EDM's N: the steps of the grid churn is spread over; needed when churn > 0
  double churn_t_min = 0;  ///< S_tmin: churn only at times t >= churn_t_min
  double churn_t_max = std::numeric_limits<double>::infinity();  ///< S_tmax: and t <= churn_t_max
  double churn_noise = 1;  ///< S_noise: the churn noise is multiplied by it (> 0)

  static constexpr int n_vectors = 2;

  /// Throws invalid_argument unless churn is finite and >= 0 (with n_steps >= 1 when churn > 0),
  /// 0 <= churn_t_min <= churn_t_max (the latter may be infinite), and churn_noise is finite and > 0.
  void validate() const {
    const char* who = "scorekit::Heun";
    const double inf = std::numeric_limits<double>::infinity();
    if (!(churn >= 0 && churn < inf))
      throw invalid_argument(
          detail::concat(who, ": churn (EDM's S_churn) must be finite and >= 0, got ", churn));
    if (churn > 0 && n_steps < 1)
      throw invalid_argument(detail::concat(
          who,
          ": churn > 0 needs n_steps, the number of steps of the grid (EDM's N; gamma = min(churn / "
          "n_steps, sqrt(2) - 1)), got n_steps = ",
          n_steps));
    if (!(churn_t_min >= 0 && churn_t_min < inf))
      throw invalid_argument(detail::concat(who, ": churn_t_min must be finite and >= 0, got ", churn_t_min));
    if (!(churn_t_max >= churn_t_min))
      throw invalid_argument(detail::concat(who, ": churn_t_max (", churn_t_max,
                                            ") must not be smaller than churn_t_min (", churn_t_min, ")"));
    if (!(churn_noise > 0 && churn_noise < inf))
      throw invalid_argument(
          detail::concat(who, ": churn_noise (EDM's S_noise) must be finite and > 0, got ", churn_noise));
  }

  /// The churn factor of a step whose time lies in [churn_t_min, churn_t_max]: min(churn / n_steps,
  /// sqrt(2) - 1), or 0 without churn.
  KOKKOS_INLINE_FUNCTION double gamma() const {
    if (!(churn > 0)) return 0;
    const double g = churn / double(n_steps), cap = 0.41421356237309504880;  // sqrt(2) - 1
    return g < cap ? g : cap;
  }

  template <class System>
  static constexpr bool accepts = detail::is_probability_flow_system<System>::value;

  template <class System>
  static void check(const System&) {
    static_assert(accepts<System>,
                  "scorekit::Heun integrates a probability-flow ODE (sde/reverse.hpp: probability_flow(sde, "
                  "model)); it ignores diffusion, so for a ReverseSDE or another stochastic system use "
                  "EulerMaruyama");
  }

  /// Two model evaluations a step, one for the final Euler step to t' = 0.
  int evaluations(double, double t_next) const {
    validate();
    return t_next == 0 ? 1 : 2;
  }

  template <class System, class Real>
  KOKKOS_INLINE_FUNCTION void step(const System& system, Real* x, Real t, Real t_next, bool noise, Real* v,
                                   Real* work, CounterRng<Real>& rng) const {
    detail::step_as_block(*this, system, x, t, t_next, noise, v, work, rng);
  }

  /// step() of nb particles at one time (at most the system's max_block; integrate() steps blocks of the
  /// system's block_size()): particle b at x + b x_stride, its workspace at work + b work_stride, its
  /// generator rng_of(b) (a CounterRng<Real>&, or one by value). `v` is the block's n_vectors nb d values
  /// of scratch, one contiguous span (the drifts, particle b's at v + b d, then the Euler predictions at
  /// v + nb d + b d), so that with contiguous particles every update is one flat loop. The churn time and
  /// the drifts' time-dependent coefficients are computed once for the block, the drifts through
  /// detail::drift_block (one score_block() call where the model has one). A particle takes the bits
  /// step() gives it when the model's score_block() gives each particle its score()'s.
  template <class System, class Real, class RngOf>
  KOKKOS_INLINE_FUNCTION void step_block(const System& system, int nb, Real* x, int x_stride, Real t,
                                         Real t_next, bool noise, Real* v, Real* work, int work_stride,
                                         RngOf&& rng_of) const {
    if constexpr (accepts<System>) {
      const int d = system.dim();
      const Real t_hat = noise && t_next < t ? churn_time(system.sde(), t) : t;
      if (t_hat > t)
        for (int b = 0; b < nb; ++b) churn_up(system.sde(), d, x + b * x_stride, t, t_hat, rng_of(b));
      const Real h = t_next - t_hat;
      detail::drift_block(system, nb, static_cast<const Real*>(x), x_stride, t_hat, v, d, work, work_stride);
      if (t_next == Real(0)) {
        detail::for_each_coordinate(nb, d, x_stride, d, [&](int i, int k) { x[i] += h * v[k]; });
        return;
      }
      const Real half = Real(0.5) * h;
      Real* x1 = v + nb * d;
      detail::for_each_coordinate(nb, d, x_stride, d, [&](int i, int k) {
        x1[k] = x[i] + h * v[k];
        x[i] += half * v[k];
      });
      detail::drift_block(system, nb, static_cast<const Real*>(x1), d, t_next, v, d, work, work_stride);
      detail::for_each_coordinate(nb, d, x_stride, d, [&](int i, int k) { x[i] += half * v[k]; });
    } else {
      (void)system, (void)nb, (void)x, (void)x_stride, (void)t, (void)t_next, (void)noise, (void)v,
          (void)work, (void)work_stride, (void)rng_of;
    }
  }

  /// The time t_hat a step from t churns up to (see the file comment): t itself when no churn applies.
  /// It depends on t alone, so a block of particles shares it.
  template <class SDE, class Real>
  KOKKOS_INLINE_FUNCTION Real churn_time(const SDE& sde, Real t) const {
    const double g = gamma();
    if (!(g > 0) || !(double(t) >= churn_t_min && double(t) <= churn_t_max)) return t;
    const Real target = (Real(1) + Real(g)) * sde.marginal(t).sigma();
    Real t_hat = t;
    if constexpr (detail::has_time_of_sigma<SDE>::value) {
      t_hat = sde.time_of_sigma(target);
    } else {
      // sigma(.) is increasing: keep sigma(lo) < target <= sigma(hi) and halve [lo, hi] down to rounding.
      Real lo = t, hi = Real(sde.t_max());
      if (!(sde.marginal(hi).sigma() > target)) {
        t_hat = hi;
      } else {
        for (int k = 0; k < 200; ++k) {
          const Real mid = Real(0.5) * (lo + hi);
          if (!(mid > lo && mid < hi)) break;
          if (sde.marginal(mid).sigma() < target)
            lo = mid;
          else
            hi = mid;
        }
        t_hat = hi;
      }
    }
    return t_hat > t ? t_hat : t;
  }

  /// Raises x from time t to t_hat > t by the SDE's exact forward transition, with the churn noise.
  template <class SDE, class Real, class Rng>
  KOKKOS_INLINE_FUNCTION void churn_up(const SDE& sde, int d, Real* x, Real t, Real t_hat, Rng&& rng) const {
    const DiscreteTransition<Real> tr = discrete_transition(sde, t, t_hat);
    const Real s = Real(churn_noise) * math::sqrt(tr.variance);
    rng.for_each_normal(d, [&](int j, Real z) { x[j] = tr.ratio * x[j] + s * z; });
  }
};

}  // namespace scorekit
