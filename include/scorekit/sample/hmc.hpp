// Hamiltonian Monte Carlo (Duane et al. 1987; Neal 2011, "MCMC using Hamiltonian dynamics") with an
// identity mass matrix: each iteration draws a momentum p ~ N(0, I), takes n_leapfrog leapfrog steps of
// size eps, and accepts with probability min(1, exp(H_0 - H_1)), H = -log p(x) + |p|^2 / 2.
//
// One iteration is a device-callable value type (HmcStep) with caller-owned scratch, usable inside a
// user's own kernel; the driver hmc() is a loop over it.
#pragma once

#include <scorekit/core/random.hpp>
#include <scorekit/sample/sampler_common.hpp>

#include <cstdint>
#include <type_traits>

namespace scorekit {

/// One HMC iteration, callable inside any kernel (the body of hmc()): a momentum p ~ N(0, I), n_leapfrog
/// leapfrog steps of size eps from (x, p) to (q, p'), and q accepted with probability
/// min(1, exp(H(x, p) - H(q, p'))), H = -log p + |p|^2 / 2.
///
/// Scratch, owned by the caller, per particle: `vectors`, n_vectors * dim values (the position q, the
/// momentum p and s(q)), and `work`, the density's workspace_size(density) values; one buffer of
/// scratch_size(dim, workspace_size(density)) values holds both, vectors first.
/// State kept between iterations: log_p = log p(x) and grad = s(x) (dim values, caller-owned) at the
/// current x. Set them with `log_p = init(density, x, grad, work)` before the first iteration, and again
/// whenever the caller changes x itself; step() keeps them current.
/// Randomness: p from CounterRng<Real>(seed, particle, t, RngStream::momentum), the coin from
/// detail::metropolis_accept(seed, particle, t, .), as hmc() draws iteration t (1, 2, ...).
template <class Real = double>
class HmcStep {
 public:
  static constexpr int n_vectors = 3;
  /// Scratch values one particle needs: n_vectors * dim plus the model's workspace.
  static KOKKOS_INLINE_FUNCTION constexpr int scratch_size(int dim, int model_workspace) {
    return n_vectors * dim + model_workspace;
  }

  HmcStep() = default;
  /// step_size eps > 0 and n_leapfrog >= 1 (not checked here; hmc() checks them), dim = the density's.
  KOKKOS_INLINE_FUNCTION HmcStep(Real step_size, int n_leapfrog, int dim)
      : m_eps(step_size), m_half_eps(step_size / 2), m_n_leapfrog(n_leapfrog), m_dim(dim) {}

  KOKKOS_INLINE_FUNCTION int dim() const { return m_dim; }
  KOKKOS_INLINE_FUNCTION int n_leapfrog() const { return m_n_leapfrog; }

  /// The state at x: returns log p(x) and writes s(x) into grad (dim values).
  template <class Density>
  KOKKOS_INLINE_FUNCTION Real init(const Density& density, const Real* x, Real* grad, Real* work) const {
    return detail::log_prob_and_score(density, x, grad, work);
  }

  /// One iteration: when the proposal is accepted, moves x and updates log_p and grad. Returns whether it
  /// was accepted. Makes n_leapfrog score and one log_prob evaluations.
  template <class Density>
  KOKKOS_INLINE_FUNCTION bool step(const Density& density, Real* x, Real& log_p, Real* grad,
                                   std::uint64_t seed, std::int64_t particle, std::int64_t t, Real* vectors,
                                   Real* work) const {
    static_assert(is_density_v<Density> && std::is_same<typename Density::value_type, Real>::value,
                  "scorekit::HmcStep<Real> needs a Density with value_type Real, log_prob and score "
                  "(core/traits.hpp)");
    const int d = m_dim;
    Real* q = vectors;
    Real* p = vectors + d;
    Real* gq = vectors + 2 * d;
    CounterRng<Real> rng(seed, std::uint64_t(particle), std::uint64_t(t), RngStream::momentum);
    Real kinetic0 = 0;
    rng.fill_normal(p, d);
    for (int j = 0; j < d; ++j) {
      kinetic0 += p[j] * p[j];
      q[j] = x[j];
      gq[j] = grad[j];
    }
    for (int l = 0; l < m_n_leapfrog; ++l) {
      for (int j = 0; j < d; ++j) {
        p[j] += m_half_eps * gq[j];
        q[j] += m_eps * p[j];
      }
      score(density, static_cast<const Real*>(q), gq, work);
      for (int j = 0; j < d; ++j) p[j] += m_half_eps * gq[j];
    }
    Real kinetic1 = 0;
    for (int j = 0; j < d; ++j) kinetic1 += p[j] * p[j];
    const Real lpq = log_prob(density, static_cast<const Real*>(q), work);
    if (!detail::metropolis_accept(seed, particle, t,
                                   (lpq - Real(0.5) * kinetic1) - (log_p - Real(0.5) * kinetic0)))
      return false;
    for (int j = 0; j < d; ++j) {
      x[j] = q[j];
      grad[j] = gq[j];
    }
    log_p = lpq;
    return true;
  }

 private:
  Real m_eps = Real(0), m_half_eps = Real(0);
  int m_n_leapfrog = 1;
  int m_dim = 0;
};

template <class Real = double>
struct HmcSettings {
  Real step_size = Real(0);  ///< leapfrog step eps > 0
  int n_leapfrog = 10;       ///< leapfrog steps per iteration (>= 1)
  std::int64_t n_steps = 0;  ///< iterations per particle
  std::uint64_t seed = 0;
  int record_every = 0;  ///< record a trajectory every k iterations (0: none)
  /// The global index of row 0 of the particles: particle i draws its noise as particle first_particle + i
  /// would, so a shard of a larger run (distributed/) samples bitwise as that run does.
  std::uint64_t first_particle = 0;
};

/// Runs `n_steps` HMC iterations on every particle of x (overwritten). Particle i's iteration t is
/// HmcStep::step(density, x_i, ..., seed, i, t, ...).
template <class ExecSpace, class Density, class View>
SamplerResult<typename Density::value_type, typename View::memory_space> hmc(
    const ExecSpace& exec, const Density& density, const View& x,
    const HmcSettings<typename Density::value_type>& settings) {
  assert_density<Density>();
  using Real = typename Density::value_type;
  const char* where = "scorekit::hmc";
  require_positive(settings.step_size, "step_size", where);
  if (settings.n_leapfrog < 1)
    throw invalid_argument(detail::concat(where, ": n_leapfrog must be >= 1, got ", settings.n_leapfrog));
  // per particle: model workspace, s(x) (the state), then the step's vectors
  const auto run = detail::start_run(density, x, settings.n_steps, settings.record_every,
                                     1 + HmcStep<Real>::n_vectors, where);
  const HmcStep<Real> hmc_step(settings.step_size, settings.n_leapfrog, run.d);
  const std::int64_t n_steps = settings.n_steps;
  const std::uint64_t seed = settings.seed;

  ScopedRegion region(where);
  Kokkos::Timer timer;
  const std::int64_t accepted = detail::run_metropolis(exec, where, hmc_step, density, x, run, n_steps, seed,
                                                       std::int64_t(settings.first_particle));
  return detail::finish_run(exec, run, x, timer, where, n_steps, 1 + n_steps * settings.n_leapfrog, accepted);
}

}  // namespace scorekit
