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
  Real step_size = Real(0);   ///< eps > 0
  std::int64_t n_steps = 0;   ///< steps per particle
  std::uint64_t seed = 0;     ///< the run's randomness is a function of (seed, particle, step)
  int record_every = 0;       ///< record a trajectory every k steps (0: none)
};

/// Unadjusted Langevin: `n_steps` steps of x' = x + (eps/2) s(x) + sqrt(eps) z on every particle of x
/// (overwritten). Needs only the score. Biased for any eps > 0 (the bias vanishes as eps -> 0).
template <class ExecSpace, class Density, class View>
SamplerResult<typename Density::value_type, typename View::memory_space> ula(
    const ExecSpace& exec, const Density& density, const View& x,
    const LangevinSettings<typename Density::value_type>& settings) {
  assert_score_density<Density>();
  using Real = typename Density::value_type;
  using Mem = typename View::memory_space;
  const char* where = "scorekit::ula";
  const std::int64_t n = detail::check_particles(density, x, where);
  require_positive(settings.step_size, "step_size", where);
  detail::check_steps(settings.n_steps, settings.record_every, where);
  const int d = density.dim();
  const int model_ws = workspace_size(density);
  auto work = detail::make_workspace<Real, Mem>(n, model_ws, 1, d, where);
  detail::Recorder<Real, Mem> record(settings.n_steps, settings.record_every, n, d, where);
  NonFiniteFlag<Mem> bad(n);
  const Real eps = settings.step_size, half_eps = eps / 2, noise = math::sqrt(eps);
  const std::int64_t n_steps = settings.n_steps;
  const std::uint64_t seed = settings.seed;

  ScopedRegion region(where);
  Kokkos::Timer timer;
  Kokkos::parallel_for(
      "scorekit::ula", Kokkos::RangePolicy<ExecSpace>(exec, 0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        Real* xi = &x(i, 0);
        Real* w = &work(i, 0);
        Real* g = w + model_ws;
        record(0, i, xi);
        if (!NonFiniteFlag<Mem>::all_finite(xi, d)) {
          bad.record(i, 0);
          return;
        }
        for (std::int64_t t = 1; t <= n_steps; ++t) {
          CounterRng<Real> rng(seed, std::uint64_t(i), std::uint64_t(t));
          score(density, static_cast<const Real*>(xi), g, w);
          for (int j = 0; j < d; ++j) xi[j] += half_eps * g[j] + noise * rng.normal();
          record(t, i, xi);
          if (!NonFiniteFlag<Mem>::all_finite(xi, d)) {
            bad.record(i, t);
            return;
          }
        }
      });
  exec.fence();
  SamplerResult<Real, Mem> result;
  result.seconds = timer.seconds();
  bad.throw_if_set(where);
  result.samples = x;
  result.trajectory = record.trajectory();
  result.n_score_evaluations = n * n_steps;
  result.n_steps = n_steps;
  return result;
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
  using Mem = typename View::memory_space;
  const char* where = "scorekit::mala";
  const std::int64_t n = detail::check_particles(density, x, where);
  require_positive(settings.step_size, "step_size", where);
  detail::check_steps(settings.n_steps, settings.record_every, where);
  const int d = density.dim();
  const int model_ws = workspace_size(density);
  // per particle: model workspace, s(x), proposal y, s(y)
  auto work = detail::make_workspace<Real, Mem>(n, model_ws, 3, d, where);
  detail::Recorder<Real, Mem> record(settings.n_steps, settings.record_every, n, d, where);
  NonFiniteFlag<Mem> bad(n);
  const Real eps = settings.step_size, half_eps = eps / 2, noise = math::sqrt(eps);
  const Real inv_2eps = Real(1) / (2 * eps);  // q(y | x) = N(x + (eps/2) s(x), eps I)
  const std::int64_t n_steps = settings.n_steps;
  const std::uint64_t seed = settings.seed;

  ScopedRegion region(where);
  Kokkos::Timer timer;
  std::int64_t accepted = 0;
  Kokkos::parallel_reduce(
      "scorekit::mala", Kokkos::RangePolicy<ExecSpace>(exec, 0, n),
      KOKKOS_LAMBDA(const std::int64_t i, std::int64_t& acc) {
        Real* xi = &x(i, 0);
        Real* w = &work(i, 0);
        Real* gx = w + model_ws;
        Real* y = gx + d;
        Real* gy = y + d;
        record(0, i, xi);
        if (!NonFiniteFlag<Mem>::all_finite(xi, d)) {
          bad.record(i, 0);
          return;
        }
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
          const Real log_alpha = lpy - lpx + (fwd - bwd) * inv_2eps;
          CounterRng<Real> coin(seed, std::uint64_t(i), std::uint64_t(t), RngStream::accept);
          if (math::log(coin.uniform()) < log_alpha) {  // false for NaN: a NaN proposal is rejected
            for (int j = 0; j < d; ++j) {
              xi[j] = y[j];
              gx[j] = gy[j];
            }
            lpx = lpy;
            ++acc;
          }
          record(t, i, xi);
          if (!math::isfinite(lpx) || !NonFiniteFlag<Mem>::all_finite(gx, d)) {
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
  result.n_score_evaluations = n * (n_steps + 1);
  result.n_steps = n_steps;
  return result;
}

}  // namespace scorekit
