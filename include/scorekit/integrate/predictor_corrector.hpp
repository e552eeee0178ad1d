// Predictor-corrector sampling (Song et al. 2021, "Score-based generative modeling through stochastic
// differential equations", section 4.2 and algorithms 2-3; score_sde's pc_sampler): each step first runs a
// corrector, a few Markov chain steps that leave p_t invariant, at the current time t, then a predictor
// (any Integrator: ReverseDiffusion, AncestralSampling, EulerMaruyama, Ddim) from t to t_next.
//
// The Langevin corrector (score_sde's LangevinCorrector) makes n_steps unadjusted Langevin steps at time t:
//   g = grad log p_t(x),  z ~ N(0, I),  x <- x + h g + sqrt(2 h) z,
// with score_sde's step rule h = 2 alpha (snr ||z|| / ||g||)^2, chosen so that the signal-to-noise ratio
// ||h g|| / ||sqrt(2h) z|| is snr sqrt(alpha). score_sde takes alpha = 1 - beta_i (its discrete VP / sub-VP
// alphas) and alpha = 1 for VE; generically that is abar^2 = (a(t) / a(t_next))^2 of the exact discrete
// transition (integrate/discrete_transition.hpp): 1 for VE, exp(-int_{t_next}^t beta) = 1 - beta_i for VP
// and sub-VP.
//
// score_sde averages ||g|| and ||z|| over the batch. A batch mean couples the particles (a reduction inside
// every step), which breaks the one-kernel, particle-independent design that makes a run bitwise the same
// for any thread count, so the norms are replaced, by LangevinStepRule:
// - noise_level (the default): each norm by its population value under pure noise, ||z||^2 -> E||z||^2 = d
//   and ||g||^2 -> d / s_t^2, so h = 2 alpha snr^2 s_t^2. The mean ||g||^2 that score_sde's batch
//   estimates is the Fisher information J(p_t) of p_t, and J(p_t) <= d / s_t^2 for every data law (p_t is
//   the data's law convolved with N(0, s_t^2 I), and convolution cannot raise Fisher information above
//   either factor's: Stam's inequality), with equality when the noise dominates the data's own spread, as
//   for image data near a low-dimensional set. So this h is score_sde's step in that regime and a smaller
//   one otherwise (the realised signal-to-noise ratio is then at most snr sqrt(alpha)). It is independent of
//   x, so each corrector step is plain ULA on p_t, invariant up to O(h).
// - per_particle: each particle's own ||g|| and ||z||, the literal per-particle reading of score_sde. It is
//   close to score_sde when d is large (both norms concentrate), but in low dimension it is wrong: h then
//   depends on x and on z, so the chain is no longer ULA, and near a mode (||g|| -> 0) h explodes (for a
//   Gaussian p_t in 2-D, h / s^2 > 2, an unstable step, has probability about snr^2 per step). Measured on
//   the 2-D two-mode mixture of tests/test_reverse_integrators.cpp (VE, 500 steps, 20000 particles), it moves
//   the 0.2 mode's weight to 0.35; noise_level gives 0.20.
//
// Randomness: the corrector draws its n_steps * d normals from the step's CounterRng first, and the
// predictor then continues drawing from the same generator (its draws are consumed in order). So a run is
// reproducible, but changing n_steps changes the predictor's noise too.
//
// The final step of a run with remove_last_noise drops the predictor's noise only; the corrector still
// adds its own, as score_sde's pc_sampler does (it returns the predictor's x_mean).
#pragma once

#include <scorekit/integrate/discrete_transition.hpp>
#include <scorekit/integrate/integrate_common.hpp>

#include <cmath>
#include <type_traits>
#include <utility>

namespace scorekit {

/// A Corrector has n_vectors, accepts<System>, check(system), a host evaluations(t, t_next) (score calls one
/// step makes) and KOKKOS_INLINE_FUNCTION correct(system, x, t, t_next, vectors, work, rng). The corrector
/// that does nothing:
struct NoCorrector {
  static constexpr int n_vectors = 0;
  template <class System>
  static constexpr bool accepts = true;
  template <class System>
  static void check(const System&) {}
  int evaluations(double, double) const { return 0; }
  template <class System, class Real>
  KOKKOS_INLINE_FUNCTION void correct(const System&, Real*, Real, Real, Real*, Real*,
                                      CounterRng<Real>&) const {}
  template <class System, class Real, class RngOf>
  KOKKOS_INLINE_FUNCTION void correct_block(const System&, int, Real*, int, Real, Real, Real*, Real*, int,
                                            RngOf&&) const {}
};

/// How the Langevin corrector replaces score_sde's batch-mean norms (see the file comment).
enum class LangevinStepRule {
  noise_level,   ///< h = 2 alpha snr^2 s_t^2: the norms' values under pure noise; sound in any dimension
  per_particle,  ///< h = 2 alpha (snr ||z|| / ||g||)^2 with the particle's own norms; high dimension only
};

/// score_sde's Langevin corrector: n_steps Langevin steps at the target signal-to-noise ratio snr.
struct LangevinCorrector {
  double snr = 0.16;
  int n_steps = 1;
  LangevinStepRule rule = LangevinStepRule::noise_level;

  LangevinCorrector() = default;
  explicit LangevinCorrector(double snr_, int n_steps_ = 1,
                             LangevinStepRule rule_ = LangevinStepRule::noise_level)
      : snr(snr_), n_steps(n_steps_), rule(rule_) {
    validate();
  }

  /// Throws invalid_argument unless snr > 0 (finite) and n_steps >= 0.
  void validate() const {
    const char* who = "scorekit::LangevinCorrector";
    if (!(snr > 0) || !std::isfinite(snr))
      throw invalid_argument(detail::concat(who, ": snr must be positive and finite, got ", snr));
    if (n_steps < 0) throw invalid_argument(detail::concat(who, ": n_steps must be >= 0, got ", n_steps));
  }

  static constexpr int n_vectors = 2;

  template <class System>
  static constexpr bool accepts = is_score_system_v<System>;

  template <class System>
  static void check(const System&) {
    static_assert(
        accepts<System>,
        "scorekit::LangevinCorrector needs a system built from a noising SDE and a score model, with "
        "members sde() and model() (a ReverseSDE or ProbabilityFlowODE, sde/reverse.hpp)");
  }

  int evaluations(double t, double t_next) const {
    validate();
    detail::require_backward_step(t, t_next, "scorekit::LangevinCorrector");
    return n_steps;
  }

  template <class System, class Real>
  KOKKOS_INLINE_FUNCTION void correct(const System& system, Real* x, Real t, Real t_next, Real* v, Real* work,
                                      CounterRng<Real>& rng) const {
    correct_block(system, 1, x, system.dim(), t, t_next, v, work, 0,
                  [&rng](int) -> CounterRng<Real>& { return rng; });
  }

  /// correct() of nb particles at one time: particle b at x + b x_stride, its workspace at
  /// work + b work_stride, its generator rng_of(b) (a CounterRng<Real>&); `v` is the block's 2 nb d
  /// values of scratch (one span). With the noise_level rule the step size is computed once, the scores
  /// come from one score_block() call where the model has one (score_block_at_marginal) and the normals
  /// are drawn side by side (CounterRng::for_each_normal_block); the per_particle rule runs particle by
  /// particle. Each particle gets correct()'s bits when the model's score_block gives it score()'s.
  template <class System, class Real, class RngOf>
  KOKKOS_INLINE_FUNCTION void correct_block(const System& system, int nb, Real* x, int x_stride, Real t,
                                            Real t_next, Real* v, Real* work, int work_stride,
                                            RngOf&& rng_of) const {
    if constexpr (accepts<System>) {
      const int d = system.dim();
      const DiscreteTransition<Real> tr = discrete_transition(system.sde(), t_next, t);
      const Real alpha = tr.ratio * tr.ratio;
      const Real snr2 = Real(snr) * Real(snr);
      if (rule == LangevinStepRule::noise_level) {
        Real* g = v;  // nb x d
        const Real h = Real(2) * alpha * snr2 * tr.to.std * tr.to.std;
        const Real noise = math::sqrt(Real(2) * h);
        for (int k = 0; k < n_steps; ++k) {
          score_block_at_marginal(system.model(), nb, d, static_cast<const Real*>(x), x_stride, tr.to, g, d,
                                  work, work_stride);
          CounterRng<Real>::for_each_normal_block(nb, d, rng_of, [&](int b, int j, Real z) {
            x[b * x_stride + j] += h * g[b * d + j] + noise * z;
          });
        }
        return;
      }
      for (int b = 0; b < nb; ++b) {
        Real* xb = x + b * x_stride;
        Real* g = v + 2 * b * d;
        Real* z = g + d;
        Real* wb = work + b * work_stride;
        auto&& rng = rng_of(b);
        for (int k = 0; k < n_steps; ++k) {
          score_at_marginal(system.model(), d, static_cast<const Real*>(xb), tr.to, g, wb);
          Real g2 = 0, z2 = 0;
          rng.fill_normal(z, d);
          for (int j = 0; j < d; ++j) {
            g2 += g[j] * g[j];
            z2 += z[j] * z[j];
          }
          if (!(g2 > Real(0))) continue;  // at a stationary point of p_t the step is undefined: skip it
          const Real h = Real(2) * alpha * snr2 * z2 / g2;
          const Real noise = math::sqrt(Real(2) * h);
          for (int j = 0; j < d; ++j) xb[j] += h * g[j] + noise * z[j];
        }
      }
    } else {
      (void)system, (void)nb, (void)x, (void)x_stride, (void)t, (void)t_next, (void)v, (void)work,
          (void)work_stride, (void)rng_of;
    }
  }
};

/// A corrector at time t, then the predictor from t to t_next, every step.
template <class Predictor, class Corrector>
struct PredictorCorrector {
  Predictor predictor;
  Corrector corrector;

  static constexpr int n_vectors =
      Predictor::n_vectors > Corrector::n_vectors ? Predictor::n_vectors : Corrector::n_vectors;

  template <class System>
  static void check(const System& system) {
    Predictor::check(system);
    Corrector::check(system);
  }

  int evaluations(double t, double t_next) const {
    return corrector.evaluations(t, t_next) + predictor.evaluations(t, t_next);
  }

  template <class System, class Real>
  KOKKOS_INLINE_FUNCTION void step(const System& system, Real* x, Real t, Real t_next, bool noise, Real* v,
                                   Real* work, CounterRng<Real>& rng) const {
    corrector.correct(system, x, t, t_next, v, work, rng);
    predictor.step(system, x, t, t_next, noise, v, work, rng);
  }

  /// step() of nb particles at one time (integrate_common.hpp's step_block): the corrector's and the
  /// predictor's block versions where both have one (each particle's generator carries from the one to
  /// the other, as in step()), else step() particle by particle.
  template <class System, class Real, class RngOf>
  KOKKOS_INLINE_FUNCTION void step_block(const System& system, int nb, Real* x, int x_stride, Real t,
                                         Real t_next, bool noise, Real* v, Real* work, int work_stride,
                                         RngOf&& rng_of) const {
    if constexpr (blocks<System, Real, RngOf>) {
      corrector.correct_block(system, nb, x, x_stride, t, t_next, v, work, work_stride, rng_of);
      predictor.step_block(system, nb, x, x_stride, t, t_next, noise, v, work, work_stride, rng_of);
    } else {
      const int d = system.dim();
      for (int b = 0; b < nb; ++b)
        step(system, x + b * x_stride, t, t_next, noise, v + b * n_vectors * d, work + b * work_stride,
             rng_of(b));
    }
  }

 private:
  template <class C, class System, class Real, class RngOf, class = void>
  struct corrector_blocks : std::false_type {};
  template <class C, class System, class Real, class RngOf>
  struct corrector_blocks<
      C, System, Real, RngOf,
      std::void_t<decltype(std::declval<const C&>().correct_block(
          std::declval<const System&>(), int(), std::declval<Real*>(), int(), Real(), Real(),
          std::declval<Real*>(), std::declval<Real*>(), int(), std::declval<RngOf>()))>> : std::true_type {};
  template <class System, class Real, class RngOf>
  static constexpr bool blocks = detail::has_step_block<Predictor, System, RngOf>::value&&
      corrector_blocks<Corrector, System, Real, RngOf>::value;
};

template <class Predictor, class Corrector>
PredictorCorrector<Predictor, Corrector> predictor_corrector(const Predictor& predictor,
                                                             const Corrector& corrector) {
  return PredictorCorrector<Predictor, Corrector>{predictor, corrector};
}

}  // namespace scorekit
