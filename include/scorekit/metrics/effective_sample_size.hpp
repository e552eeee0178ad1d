// Effective sample size (ESS) of Markov chains: the number of independent draws that would estimate the
// mean with the same variance, ESS = M n / tau, with tau = 1 + 2 sum_{t>=1} rho_t the integrated
// autocorrelation time.
//
// Estimator (the one Stan uses for the ESS of the mean; Vehtari, Gelman, Simpson, Carpenter and
// Buerkner, "Rank-normalization, folding, and localization: an improved R-hat for assessing convergence
// of MCMC", Bayesian Analysis 16 (2021), section 3.2, eqs. (10)-(11), without rank normalisation or chain
// splitting):
// - per chain m of length n: mean xbar_m, variance s_m^2 (1/(n-1)) and autocovariances
//   gamma_{m,t} = 1/n sum_{i<n-t} (x_i - xbar_m)(x_{i+t} - xbar_m);
// - W = mean_m s_m^2, var+ = (n-1)/n W + B/n with B/n = var_m(xbar_m) (0 for one chain);
// - combined autocorrelations rho_t = 1 - (W - mean_m s_m^2 gamma_{m,t}/gamma_{m,0}) / var+, which uses
//   the between-chain variance, so chains stuck in different regions lower the ESS;
// - Geyer's initial monotone positive sequence (Geyer, "Practical Markov chain Monte Carlo", Statistical
//   Science 7 (1992), section 3.3): P_k = rho_{2k} + rho_{2k+1} summed while positive, each P_k replaced
//   by min(P_k, P_{k-1}); tau = -1 + 2 sum_k P_k;
// - as in Stan, tau is floored at 1/log10(M n) (ESS at most M n log10(M n)), which only matters for
//   strongly antithetic chains.
//
// Autocovariances are computed directly, one (chain, coordinate, lag) per thread with a sequential sum
// (O(n) each), for lags 0..L-1 with L doubled until every coordinate's sequence has been truncated: cost
// O(M d n L) with L a few times tau. Everything after the kernels runs on the host in a fixed order, so
// results are bitwise identical on every host backend and thread count.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/views.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace scorekit {
namespace detail {
namespace ess {

/// Geyer's initial monotone positive sequence on rho[0..rho.size()), for chains of length n. Returns
/// false when more lags are needed; else sets tau.
inline bool geyer_tau(const std::vector<double>& rho, std::int64_t n, double& tau) {
  double sum = 0, previous = std::numeric_limits<double>::infinity();
  for (std::int64_t k = 0;; ++k) {
    const std::int64_t t = 2 * k;
    if (t + 1 >= n) break;                                // no complete pair left: use what we have
    if (t + 1 >= std::int64_t(rho.size())) return false;  // need more lags
    double pair = rho[std::size_t(t)] + rho[std::size_t(t + 1)];
    if (!(pair > 0)) break;  // initial positive sequence ends
    pair = std::min(pair, previous);
    previous = pair;
    sum += pair;
  }
  tau = -1 + 2 * sum;
  return true;
}

}  // namespace ess
}  // namespace detail

/// ESS per coordinate of M chains of n recorded steps stored as a trajectory view (recorded step, chain,
/// coordinate), n >= 4: the multi-chain estimator of the file comment. Returns d values, each in
/// (0, M n log10(M n)].
template <class ExecSpace, class Trajectory>
std::vector<double> effective_sample_size_per_coordinate(const ExecSpace& exec, const Trajectory& chains) {
  static_assert(Kokkos::is_view<Trajectory>::value && int(Trajectory::rank) == 3,
                "scorekit::effective_sample_size_per_coordinate: the chains must be a rank-3 Kokkos::View "
                "(recorded step, chain, coordinate), e.g. scorekit::TrajectoryView");
  static_assert(Kokkos::SpaceAccessibility<ExecSpace, typename Trajectory::memory_space>::accessible,
                "scorekit metrics: the chains' memory space is not accessible from the execution space");
  const char* where = "scorekit::effective_sample_size";
  const std::int64_t n = std::int64_t(chains.extent(0));
  const int n_chains = int(chains.extent(1));
  const int d = int(chains.extent(2));
  if (n < 4) throw invalid_argument(detail::concat(where, ": needs chains of at least 4 steps, got ", n));
  if (n_chains < 1 || d < 1)
    throw invalid_argument(detail::concat(where, ": needs at least one chain of dimension >= 1, got ",
                                          n_chains, " chains of dimension ", d));
  ScopedRegion region("scorekit::effective_sample_size");
  using memory_space = typename ExecSpace::memory_space;
  const std::int64_t md = std::int64_t(n_chains) * d;

  // Means and variances per (chain, coordinate); a non-finite value makes its mean non-finite.
  Kokkos::View<double**, Kokkos::LayoutRight, memory_space> moments("scorekit::ess_moments", md, 2);
  Kokkos::parallel_for(
      "scorekit::ess_moments", Kokkos::RangePolicy<ExecSpace>(exec, 0, md),
      KOKKOS_LAMBDA(const std::int64_t mj) {
        const int m = int(mj / d), j = int(mj % d);
        double s = 0;
        for (std::int64_t i = 0; i < n; ++i) s += double(chains(i, m, j));
        const double mean = s / double(n);
        double v = 0;
        for (std::int64_t i = 0; i < n; ++i)
          v += (double(chains(i, m, j)) - mean) * (double(chains(i, m, j)) - mean);
        moments(mj, 0) = mean;
        moments(mj, 1) = v / double(n - 1);
      });
  auto mom = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), moments);
  for (std::int64_t mj = 0; mj < md; ++mj)
    if (!std::isfinite(mom(mj, 0)) || !std::isfinite(mom(mj, 1)))
      throw invalid_argument(
          detail::concat(where, ": chain ", mj / d, " has a NaN or infinite value in coordinate ", mj % d));

  std::vector<double> w(std::size_t(d), 0.0), var_plus(std::size_t(d), 0.0);
  for (int j = 0; j < d; ++j) {
    double mean_of_means = 0;
    for (int m = 0; m < n_chains; ++m) {
      w[std::size_t(j)] += mom(m * d + j, 1);
      mean_of_means += mom(m * d + j, 0);
    }
    w[std::size_t(j)] /= n_chains;
    mean_of_means /= n_chains;
    double b_over_n = 0;
    if (n_chains > 1) {
      for (int m = 0; m < n_chains; ++m)
        b_over_n += (mom(m * d + j, 0) - mean_of_means) * (mom(m * d + j, 0) - mean_of_means);
      b_over_n /= n_chains - 1;
    }
    var_plus[std::size_t(j)] = double(n - 1) / double(n) * w[std::size_t(j)] + b_over_n;
    if (!(var_plus[std::size_t(j)] > 0))
      throw invalid_argument(detail::concat(
          where, ": coordinate ", j, " is constant in every chain; its effective sample size is undefined"));
  }

  std::vector<std::vector<double>> rho(static_cast<std::size_t>(d));
  std::vector<double> tau(std::size_t(d), 0.0);
  std::vector<bool> done(std::size_t(d), false);
  Kokkos::View<double*, memory_space> dev_means("scorekit::ess_means", md);
  {
    auto h = Kokkos::create_mirror_view(dev_means);
    for (std::int64_t mj = 0; mj < md; ++mj) h(mj) = mom(mj, 0);
    Kokkos::deep_copy(exec, dev_means, h);
  }
  std::int64_t lag_begin = 0, lag_end = std::min<std::int64_t>(n, 64);
  for (;;) {
    const std::int64_t nb = lag_end - lag_begin;
    Kokkos::View<double***, Kokkos::LayoutRight, memory_space> acov("scorekit::ess_autocovariance", n_chains,
                                                                    d, nb);
    Kokkos::parallel_for(
        "scorekit::ess_autocovariance", Kokkos::RangePolicy<ExecSpace>(exec, 0, md * nb),
        KOKKOS_LAMBDA(const std::int64_t idx) {
          const std::int64_t mj = idx / nb;
          const int m = int(mj / d), j = int(mj % d);
          const std::int64_t t = lag_begin + idx % nb;
          const double mean = dev_means(mj);
          double s = 0;
          for (std::int64_t i = 0; i + t < n; ++i)
            s += (double(chains(i, m, j)) - mean) * (double(chains(i + t, m, j)) - mean);
          acov(m, j, idx % nb) = s / double(n);
        });
    auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), acov);
    bool all_done = true;
    for (int j = 0; j < d; ++j) {
      if (done[std::size_t(j)]) continue;
      for (std::int64_t tt = 0; tt < nb; ++tt) {
        // s_m^2 gamma_{m,t} / gamma_{m,0} = n/(n-1) gamma_{m,t} (also for a constant chain, where both are
        // 0).
        double within = 0;
        for (int m = 0; m < n_chains; ++m) within += double(n) / double(n - 1) * h(m, j, tt);
        within /= n_chains;
        rho[std::size_t(j)].push_back(1 - (w[std::size_t(j)] - within) / var_plus[std::size_t(j)]);
      }
      double t_j = 0;
      if (detail::ess::geyer_tau(rho[std::size_t(j)], n, t_j)) {
        done[std::size_t(j)] = true;
        tau[std::size_t(j)] = t_j;
      } else {
        all_done = false;
      }
    }
    if (all_done) break;
    lag_begin = lag_end;
    lag_end = std::min<std::int64_t>(n, 2 * lag_end);
  }
  const double total = double(n) * n_chains;
  std::vector<double> ess(static_cast<std::size_t>(d));
  for (int j = 0; j < d; ++j) {
    const double floor_tau = total > 10 ? 1 / std::log10(total) : 1.0;
    ess[std::size_t(j)] = total / std::max(tau[std::size_t(j)], floor_tau);
  }
  return ess;
}

/// ESS of one scalar chain held in a rank-1 view (any layout), n >= 4.
template <class ExecSpace, class Chain>
double effective_sample_size(const ExecSpace& exec, const Chain& chain) {
  static_assert(Kokkos::is_view<Chain>::value && int(Chain::rank) == 1,
                "scorekit::effective_sample_size: a single chain must be a rank-1 Kokkos::View");
  static_assert(Kokkos::SpaceAccessibility<ExecSpace, typename Chain::memory_space>::accessible,
                "scorekit metrics: the chain's memory space is not accessible from the execution space");
  using Real = typename Chain::non_const_value_type;
  TrajectoryView<Real, typename ExecSpace::memory_space> t("scorekit::ess_chain", chain.extent(0), 1, 1);
  Kokkos::parallel_for(
      "scorekit::ess_copy_chain", Kokkos::RangePolicy<ExecSpace>(exec, 0, std::int64_t(chain.extent(0))),
      KOKKOS_LAMBDA(const std::int64_t i) { t(i, 0, 0) = chain(i); });
  return effective_sample_size_per_coordinate(exec, t)[0];
}

/// ESS of one scalar chain on the host, n >= 4 (same estimator and the same numbers as the view overloads).
inline double effective_sample_size(const std::vector<double>& chain) {
  Kokkos::View<const double***, Kokkos::LayoutRight, Kokkos::HostSpace,
               Kokkos::MemoryTraits<Kokkos::Unmanaged>>
      t(chain.data(), chain.size(), 1, 1);
  return effective_sample_size_per_coordinate(Kokkos::DefaultHostExecutionSpace(), t)[0];
}

}  // namespace scorekit
