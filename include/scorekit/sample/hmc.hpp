// Hamiltonian Monte Carlo (Duane et al. 1987; Neal 2011, "MCMC using Hamiltonian dynamics") with an
// identity mass matrix: each iteration draws a momentum p ~ N(0, I), takes n_leapfrog leapfrog steps of
// size eps, and accepts with probability min(1, exp(H_0 - H_1)), H = -log p(x) + |p|^2 / 2.
#pragma once

#include <scorekit/core/random.hpp>
#include <scorekit/sample/sampler_common.hpp>

namespace scorekit {

template <class Real = double>
struct HmcSettings {
  Real step_size = Real(0);  ///< leapfrog step eps > 0
  int n_leapfrog = 10;       ///< leapfrog steps per iteration (>= 1)
  std::int64_t n_steps = 0;  ///< iterations per particle
  std::uint64_t seed = 0;
  int record_every = 0;  ///< record a trajectory every k iterations (0: none)
};

/// Runs `n_steps` HMC iterations on every particle of x (overwritten).
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
  // per particle: model workspace, s(x), proposal q, momentum p, s(q)
  const auto run = detail::start_run(density, x, settings.n_steps, settings.record_every, 4, where);
  const Real eps = settings.step_size, half_eps = eps / 2;
  const int n_leapfrog = settings.n_leapfrog;
  const std::int64_t n_steps = settings.n_steps;
  const std::uint64_t seed = settings.seed;

  ScopedRegion region(where);
  Kokkos::Timer timer;
  std::int64_t accepted = 0;
  Kokkos::parallel_reduce(
      "scorekit::hmc", Kokkos::RangePolicy<ExecSpace>(exec, 0, run.n),
      KOKKOS_LAMBDA(const std::int64_t i, std::int64_t& acc) {
        const int d = run.d;
        Real* xi = &x(i, 0);
        Real* w = run.workspace(i);
        Real* gx = run.vector(i, 0);
        Real* q = run.vector(i, 1);
        Real* p = run.vector(i, 2);
        Real* gq = run.vector(i, 3);
        if (!run.after_step(i, 0, xi)) return;
        Real lpx = log_prob(density, static_cast<const Real*>(xi), w);
        score(density, static_cast<const Real*>(xi), gx, w);
        for (std::int64_t t = 1; t <= n_steps; ++t) {
          CounterRng<Real> rng(seed, std::uint64_t(i), std::uint64_t(t), RngStream::momentum);
          Real kinetic0 = 0;
          for (int j = 0; j < d; ++j) {
            p[j] = rng.normal();
            kinetic0 += p[j] * p[j];
            q[j] = xi[j];
            gq[j] = gx[j];
          }
          for (int l = 0; l < n_leapfrog; ++l) {
            for (int j = 0; j < d; ++j) {
              p[j] += half_eps * gq[j];
              q[j] += eps * p[j];
            }
            score(density, static_cast<const Real*>(q), gq, w);
            for (int j = 0; j < d; ++j) p[j] += half_eps * gq[j];
          }
          Real kinetic1 = 0;
          for (int j = 0; j < d; ++j) kinetic1 += p[j] * p[j];
          const Real lpq = log_prob(density, static_cast<const Real*>(q), w);
          if (detail::metropolis_accept(seed, i, t,
                                        (lpq - Real(0.5) * kinetic1) - (lpx - Real(0.5) * kinetic0))) {
            for (int j = 0; j < d; ++j) {
              xi[j] = q[j];
              gx[j] = gq[j];
            }
            lpx = lpq;
            ++acc;
          }
          if (!run.after_step(i, t, xi)) return;
        }
      },
      accepted);
  return detail::finish_run(exec, run, x, timer, where, n_steps, 1 + n_steps * n_leapfrog, accepted);
}

}  // namespace scorekit
