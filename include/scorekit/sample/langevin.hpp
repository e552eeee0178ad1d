// Langevin samplers for a Density: the unadjusted Langevin algorithm (ULA) and the Metropolis-adjusted
// Langevin algorithm (MALA; Roberts and Tweedie 1996). Both use the step convention of Song and Ermon
// (2019, eq. 4):  x' = x + (eps / 2) grad log p(x) + sqrt(eps) z,  z ~ N(0, I).
#pragma once

#include <scorekit/core/random.hpp>
#include <scorekit/sample/sampler_common.hpp>

namespace scorekit {

/// Settings of ULA and MALA.
template <class Real = double>
struct LangevinSettings {
  Real step_size = Real(0);  ///< eps > 0
  std::int64_t n_steps = 0;  ///< steps per particle
  std::uint64_t seed = 0;    ///< the run's randomness is a function of (seed, particle, step)
  int record_every = 0;      ///< record a trajectory every k steps (0: none)
};

/// Unadjusted Langevin: `n_steps` steps of x' = x + (eps/2) s(x) + sqrt(eps) z on every particle of x
/// (overwritten). Needs only the score. Biased for any eps > 0 (the bias vanishes as eps -> 0).
template <class ExecSpace, class Density, class View>
SamplerResult<typename Density::value_type, typename View::memory_space> ula(
    const ExecSpace& exec, const Density& density, const View& x,
    const LangevinSettings<typename Density::value_type>& settings) {
  assert_score_density<Density>();
  using Real = typename Density::value_type;
  const char* where = "scorekit::ula";
  require_positive(settings.step_size, "step_size", where);
  // per particle: model workspace, s(x)
  const auto run = detail::start_run(density, x, settings.n_steps, settings.record_every, 1, where);
  const Real half_eps = settings.step_size / 2, noise = math::sqrt(settings.step_size);
  const std::int64_t n_steps = settings.n_steps;
  const std::uint64_t seed = settings.seed;

  ScopedRegion region(where);
  Kokkos::Timer timer;
  Kokkos::parallel_for(
      "scorekit::ula", Kokkos::RangePolicy<ExecSpace>(exec, 0, run.n), KOKKOS_LAMBDA(const std::int64_t i) {
        Real* xi = &x(i, 0);
        Real* w = run.workspace(i);
        Real* g = run.vector(i, 0);
        if (!run.after_step(i, 0, xi)) return;
        for (std::int64_t t = 1; t <= n_steps; ++t) {
          CounterRng<Real> rng(seed, std::uint64_t(i), std::uint64_t(t));
          score(density, static_cast<const Real*>(xi), g, w);
          for (int j = 0; j < run.d; ++j) xi[j] += half_eps * g[j] + noise * rng.normal();
          if (!run.after_step(i, t, xi)) return;
        }
      });
  return detail::finish_run(exec, run, x, timer, where, n_steps, n_steps);
}

/// Metropolis-adjusted Langevin: the ULA move as a proposal y, accepted with probability
/// min(1, p(y) q(x | y) / (p(x) q(y | x))), q(y | x) = N(y; x + (eps/2) s(x), eps I). Exact in the limit
/// of many steps for any eps; the acceptance rate is reported (about 0.574 is optimal in high dimension,
/// Roberts and Rosenthal 1998).
template <class ExecSpace, class Density, class View>
SamplerResult<typename Density::value_type, typename View::memory_space> mala(
    const ExecSpace& exec, const Density& density, const View& x,
    const LangevinSettings<typename Density::value_type>& settings) {
  assert_density<Density>();
  using Real = typename Density::value_type;
  const char* where = "scorekit::mala";
  require_positive(settings.step_size, "step_size", where);
  // per particle: model workspace, s(x), proposal y, s(y)
  const auto run = detail::start_run(density, x, settings.n_steps, settings.record_every, 3, where);
  const Real eps = settings.step_size, half_eps = eps / 2, noise = math::sqrt(eps);
  const Real inv_2eps = Real(1) / (2 * eps);  // q(y | x) = N(x + (eps/2) s(x), eps I)
  const std::int64_t n_steps = settings.n_steps;
  const std::uint64_t seed = settings.seed;

  ScopedRegion region(where);
  Kokkos::Timer timer;
  std::int64_t accepted = 0;
  Kokkos::parallel_reduce(
      "scorekit::mala", Kokkos::RangePolicy<ExecSpace>(exec, 0, run.n),
      KOKKOS_LAMBDA(const std::int64_t i, std::int64_t& acc) {
        const int d = run.d;
        Real* xi = &x(i, 0);
        Real* w = run.workspace(i);
        Real* gx = run.vector(i, 0);
        Real* y = run.vector(i, 1);
        Real* gy = run.vector(i, 2);
        if (!run.after_step(i, 0, xi)) return;
        Real lpx = log_prob(density, static_cast<const Real*>(xi), w);
        score(density, static_cast<const Real*>(xi), gx, w);
        for (std::int64_t t = 1; t <= n_steps; ++t) {
          CounterRng<Real> rng(seed, std::uint64_t(i), std::uint64_t(t));
          for (int j = 0; j < d; ++j) y[j] = xi[j] + half_eps * gx[j] + noise * rng.normal();
          const Real lpy = log_prob(density, static_cast<const Real*>(y), w);
          score(density, static_cast<const Real*>(y), gy, w);
          // log q(x | y) - log q(y | x), with the forward residual equal to sqrt(eps) z.
          Real fwd = 0, bwd = 0;
          for (int j = 0; j < d; ++j) {
            const Real rf = y[j] - xi[j] - half_eps * gx[j];
            const Real rb = xi[j] - y[j] - half_eps * gy[j];
            fwd += rf * rf;
            bwd += rb * rb;
          }
          if (detail::metropolis_accept(seed, i, t, lpy - lpx + (fwd - bwd) * inv_2eps)) {
            for (int j = 0; j < d; ++j) {
              xi[j] = y[j];
              gx[j] = gy[j];
            }
            lpx = lpy;
            ++acc;
          }
          if (!run.after_step(i, t, xi)) return;
        }
      },
      accepted);
  return detail::finish_run(exec, run, x, timer, where, n_steps, n_steps + 1, accepted);
}

}  // namespace scorekit
