// Langevin samplers for a Density: the unadjusted Langevin algorithm (ULA) and the Metropolis-adjusted
// Langevin algorithm (MALA; Roberts and Tweedie 1996). Both use the step convention of Song and Ermon
// (2019, eq. 4):  x' = x + (eps / 2) grad log p(x) + sqrt(eps) z,  z ~ N(0, I).
//
// One step of each is a device-callable value type (UlaStep, MalaStep) with caller-owned scratch, usable
// inside a user's own kernel; the drivers ula() and mala() are loops over those steps, so a user kernel
// that makes the same calls with the same (seed, particle, step) gets bitwise the drivers' samples.
#pragma once

#include <scorekit/core/random.hpp>
#include <scorekit/sample/sampler_common.hpp>

#include <cstdint>
#include <type_traits>

namespace scorekit {

/// One ULA step, x' = x + (eps/2) s(x) + sqrt(eps) z, callable inside any kernel (the body of ula()).
///
/// Scratch, owned by the caller, per particle: `vectors`, n_vectors * dim values (s(x)), and `work`, the
/// density's workspace_size(density) values (none for a density without workspace_size()). One buffer
/// of scratch_size(dim, workspace_size(density)) values holds both, vectors first:
/// `vectors = buffer, work = buffer + UlaStep::n_vectors * dim`.
/// State kept between steps: none but x.
/// Randomness: z is drawn from CounterRng<Real>(seed, particle, t), as ula() draws step t (1, 2, ...) of
/// particle `particle`.
template <class Real = double>
class UlaStep {
 public:
  static constexpr int n_vectors = 1;
  /// Scratch values one particle needs: n_vectors * dim plus the model's workspace.
  static KOKKOS_INLINE_FUNCTION constexpr int scratch_size(int dim, int model_workspace) {
    return n_vectors * dim + model_workspace;
  }

  UlaStep() = default;
  /// step_size eps > 0 (not checked here: device code cannot throw; ula() checks it), dim = the density's.
  KOKKOS_INLINE_FUNCTION UlaStep(Real step_size, int dim)
      : m_half_eps(step_size / 2), m_noise(math::sqrt(step_size)), m_dim(dim) {}

  KOKKOS_INLINE_FUNCTION int dim() const { return m_dim; }

  /// Moves x (dim values) by one step. Always accepted, so nothing is returned.
  template <class Density>
  KOKKOS_INLINE_FUNCTION void step(const Density& density, Real* x, std::uint64_t seed, std::int64_t particle,
                                   std::int64_t t, Real* vectors, Real* work) const {
    static_assert(
        is_score_density_v<Density> && std::is_same<typename Density::value_type, Real>::value,
        "scorekit::UlaStep<Real> needs a Density with value_type Real and a score (core/traits.hpp)");
    Real* g = vectors;
    CounterRng<Real> rng(seed, std::uint64_t(particle), std::uint64_t(t));
    score(density, static_cast<const Real*>(x), g, work);
    rng.for_each_normal(m_dim, [&](int j, Real z) { x[j] += m_half_eps * g[j] + m_noise * z; });
  }

 private:
  Real m_half_eps = Real(0), m_noise = Real(0);
  int m_dim = 0;
};

/// One MALA step, callable inside any kernel (the body of mala()): the ULA move from x as a proposal y,
/// accepted with probability min(1, p(y) q(x | y) / (p(x) q(y | x))), q(y | x) = N(x + (eps/2) s(x), eps I).
///
/// Scratch, owned by the caller, per particle: `vectors`, n_vectors * dim values (the proposal y and
/// s(y)), and `work`, the density's workspace_size(density) values; one buffer of
/// scratch_size(dim, workspace_size(density)) values holds both, vectors first.
/// State kept between steps: log_p = log p(x) and grad = s(x) (dim values, caller-owned) at the current
/// x, so that a rejected proposal costs no re-evaluation. Set them with `log_p = init(density, x, grad,
/// work)` before the first step, and again whenever the caller changes x itself; step() keeps them current.
/// Randomness: y's noise from CounterRng<Real>(seed, particle, t), the coin from
/// detail::metropolis_accept(seed, particle, t, .) (stream RngStream::accept), as mala() draws step t.
template <class Real = double>
class MalaStep {
 public:
  static constexpr int n_vectors = 2;
  /// Scratch values one particle needs: n_vectors * dim plus the model's workspace.
  static KOKKOS_INLINE_FUNCTION constexpr int scratch_size(int dim, int model_workspace) {
    return n_vectors * dim + model_workspace;
  }

  MalaStep() = default;
  /// step_size eps > 0 (not checked here; mala() checks it), dim = the density's.
  KOKKOS_INLINE_FUNCTION MalaStep(Real step_size, int dim)
      : m_half_eps(step_size / 2),
        m_noise(math::sqrt(step_size)),
        m_inv_2eps(Real(1) / (2 * step_size)),
        m_dim(dim) {}

  KOKKOS_INLINE_FUNCTION int dim() const { return m_dim; }

  /// The state at x: returns log p(x) and writes s(x) into grad (dim values).
  template <class Density>
  KOKKOS_INLINE_FUNCTION Real init(const Density& density, const Real* x, Real* grad, Real* work) const {
    return detail::log_prob_and_score(density, x, grad, work);
  }

  /// Proposes, tests and, when accepted, moves x and updates log_p and grad. Returns whether the proposal
  /// was accepted.
  template <class Density>
  KOKKOS_INLINE_FUNCTION bool step(const Density& density, Real* x, Real& log_p, Real* grad,
                                   std::uint64_t seed, std::int64_t particle, std::int64_t t, Real* vectors,
                                   Real* work) const {
    static_assert(is_density_v<Density> && std::is_same<typename Density::value_type, Real>::value,
                  "scorekit::MalaStep<Real> needs a Density with value_type Real, log_prob and score "
                  "(core/traits.hpp)");
    const int d = m_dim;
    Real* y = vectors;
    Real* gy = vectors + d;
    CounterRng<Real> rng(seed, std::uint64_t(particle), std::uint64_t(t));
    rng.for_each_normal(d, [&](int j, Real z) { y[j] = x[j] + m_half_eps * grad[j] + m_noise * z; });
    const Real lpy = log_prob(density, static_cast<const Real*>(y), work);
    score(density, static_cast<const Real*>(y), gy, work);
    // log q(x | y) - log q(y | x), with the forward residual equal to sqrt(eps) z.
    Real fwd = 0, bwd = 0;
    for (int j = 0; j < d; ++j) {
      const Real rf = y[j] - x[j] - m_half_eps * grad[j];
      const Real rb = x[j] - y[j] - m_half_eps * gy[j];
      fwd += rf * rf;
      bwd += rb * rb;
    }
    if (!detail::metropolis_accept(seed, particle, t, lpy - log_p + (fwd - bwd) * m_inv_2eps)) return false;
    for (int j = 0; j < d; ++j) {
      x[j] = y[j];
      grad[j] = gy[j];
    }
    log_p = lpy;
    return true;
  }

 private:
  Real m_half_eps = Real(0), m_noise = Real(0), m_inv_2eps = Real(0);
  int m_dim = 0;
};

/// Settings of ULA and MALA.
template <class Real = double>
struct LangevinSettings {
  Real step_size = Real(0);  ///< eps > 0
  std::int64_t n_steps = 0;  ///< steps per particle
  std::uint64_t seed = 0;    ///< the run's randomness is a function of (seed, particle, step)
  int record_every = 0;      ///< record a trajectory every k steps (0: none)
  /// The global index of row 0 of the particles: particle i draws its noise as particle first_particle + i
  /// would, so a shard of a larger run (distributed/) samples bitwise as that run does.
  std::uint64_t first_particle = 0;
};

/// Unadjusted Langevin: `n_steps` steps of x' = x + (eps/2) s(x) + sqrt(eps) z on every particle of x
/// (overwritten). Needs only the score. Biased for any eps > 0 (the bias vanishes as eps -> 0). Particle
/// i's step t is UlaStep::step(density, x_i, seed, i, t, ...).
template <class ExecSpace, class Density, class View>
SamplerResult<typename Density::value_type, typename View::memory_space> ula(
    const ExecSpace& exec, const Density& density, const View& x,
    const LangevinSettings<typename Density::value_type>& settings) {
  assert_score_density<Density>();
  using Real = typename Density::value_type;
  const char* where = "scorekit::ula";
  require_positive(settings.step_size, "step_size", where);
  const auto run =
      detail::start_run(density, x, settings.n_steps, settings.record_every, UlaStep<Real>::n_vectors, where);
  const UlaStep<Real> ula_step(settings.step_size, run.d);
  const std::int64_t n_steps = settings.n_steps;
  const std::uint64_t seed = settings.seed;
  const std::int64_t first = std::int64_t(settings.first_particle);

  ScopedRegion region(where);
  Kokkos::Timer timer;
  Kokkos::parallel_for(
      "scorekit::ula", Kokkos::RangePolicy<ExecSpace>(exec, 0, run.n), KOKKOS_LAMBDA(const std::int64_t i) {
        Real* xi = &x(i, 0);
        if (!run.after_step(i, 0, xi)) return;
        for (std::int64_t t = 1; t <= n_steps; ++t) {
          ula_step.step(density, xi, seed, first + i, t, run.vector(i, 0), run.workspace(i));
          if (!run.after_step(i, t, xi)) return;
        }
      });
  return detail::finish_run(exec, run, x, timer, where, n_steps, n_steps);
}

/// Metropolis-adjusted Langevin: the ULA move as a proposal y, accepted with probability
/// min(1, p(y) q(x | y) / (p(x) q(y | x))), q(y | x) = N(y; x + (eps/2) s(x), eps I). Exact in the limit
/// of many steps for any eps; the acceptance rate is reported (about 0.574 is optimal in high dimension,
/// Roberts and Rosenthal 1998). Particle i's step t is MalaStep::step(density, x_i, ..., seed, i, t, ...).
template <class ExecSpace, class Density, class View>
SamplerResult<typename Density::value_type, typename View::memory_space> mala(
    const ExecSpace& exec, const Density& density, const View& x,
    const LangevinSettings<typename Density::value_type>& settings) {
  assert_density<Density>();
  using Real = typename Density::value_type;
  const char* where = "scorekit::mala";
  require_positive(settings.step_size, "step_size", where);
  // per particle: model workspace, s(x) (the state), then the step's vectors
  const auto run = detail::start_run(density, x, settings.n_steps, settings.record_every,
                                     1 + MalaStep<Real>::n_vectors, where);
  const MalaStep<Real> mala_step(settings.step_size, run.d);
  const std::int64_t n_steps = settings.n_steps;
  const std::uint64_t seed = settings.seed;
  const std::int64_t first = std::int64_t(settings.first_particle);

  ScopedRegion region(where);
  Kokkos::Timer timer;
  const std::int64_t accepted =
      detail::run_metropolis(exec, where, mala_step, density, x, run, n_steps, seed, first);
  return detail::finish_run(exec, run, x, timer, where, n_steps, n_steps + 1, accepted);
}

}  // namespace scorekit
