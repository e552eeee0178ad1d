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
  int record_every = 0;      ///< record a trajectory every k iterations (0: none)
};

/// Runs `n_steps` HMC iterations on every particle of x (overwritten).
template <class ExecSpace, class Density, class View>
SamplerResult<typename Density::value_type, typename View::memory_space> hmc(
    const ExecSpace& exec, const Density& density, const View& x,
    const HmcSettings<typename Density::value_type>& settings) {
  assert_density<Density>();
  using Real = typename Density::value_type;
  using Mem = typename View::memory_space;
  const char* where = "scorekit::hmc";
  const std::int64_t n = detail::check_particles(density, x, where);
  require_positive(settings.step_size, "step_size", where);
  if (settings.n_leapfrog < 1)
    throw invalid_argument(detail::concat(where, ": n_leapfrog must be >= 1, got ", settings.n_leapfrog));
  detail::check_steps(settings.n_steps, settings.record_every, where);
  const int d = density.dim();
  const int model_ws = workspace_size(density);
  // per particle: model workspace, s(x), proposal q, momentum p, s(q)
  auto work = detail::make_workspace<Real, Mem>(n, model_ws, 4, d, where);
  detail::Recorder<Real, Mem> record(settings.n_steps, settings.record_every, n, d, where);
  NonFiniteFlag<Mem> bad(n);
  const Real eps = settings.step_size, half_eps = eps / 2;
  const int n_leapfrog = settings.n_leapfrog;
  const std::int64_t n_steps = settings.n_steps;
  const std::uint64_t seed = settings.seed;

  ScopedRegion region(where);
  Kokkos::Timer timer;
  std::int64_t accepted = 0;
  Kokkos::parallel_reduce(
      "scorekit::hmc", Kokkos::RangePolicy<ExecSpace>(exec, 0, n),
      KOKKOS_LAMBDA(const std::int64_t i, std::int64_t& acc) {
        Real* xi = &x(i, 0);
        Real* w = &work(i, 0);
        Real* gx = w + model_ws;
        Real* q = gx + d;
        Real* p = q + d;
        Real* gq = p + d;
        record(0, i, xi);
        if (!NonFiniteFlag<Mem>::all_finite(xi, d)) {
          bad.record(i, 0);
          return;
        }
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
          const Real log_alpha = (lpq - Real(0.5) * kinetic1) - (lpx - Real(0.5) * kinetic0);
          CounterRng<Real> coin(seed, std::uint64_t(i), std::uint64_t(t), RngStream::accept);
          if (math::log(coin.uniform()) < log_alpha) {  // false for NaN: a diverged trajectory is rejected
            for (int j = 0; j < d; ++j) {
              xi[j] = q[j];
              gx[j] = gq[j];
            }
            lpx = lpq;
            ++acc;
          }
          record(t, i, xi);
          if (!math::isfinite(lpx) || !NonFiniteFlag<Mem>::all_finite(xi, d)) {
            bad.record(i, t);
            return;
          }
        }
      },
      accepted);
  exec.fence();
  SamplerResult<Real, Mem> result;
  result.seconds = timer.seconds();
  bad.throw_if_set(where);
  result.samples = x;
  result.trajectory = record.trajectory();
  result.acceptance_rate = n_steps > 0 ? double(accepted) / (double(n) * double(n_steps)) : 1.0;
  result.n_score_evaluations = n * (1 + n_steps * n_leapfrog);
  result.n_steps = n_steps;
  return result;
}

}  // namespace scorekit
