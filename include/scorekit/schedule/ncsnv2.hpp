// NCSNv2's rules for configuring the noise ladder and the sampler step from the data (Song and Ermon 2020,
// "Improved techniques for training score-based generative models", section 3):
//   technique 1 (sec. 3.1): sigma_1 = the largest Euclidean distance between two training points;
//   technique 2 (sec. 3.1): a geometric ladder whose ratio gamma = sigma_{i-1} / sigma_i makes consecutive
//                           noise levels overlap by a set fraction (0.5 in the paper);
//   technique 4 (sec. 3.4): the step eps that brings the sampler's variance closest to sigma_i^2 after T
//                           Langevin steps per level.
// Everything here runs on the host except the pairwise-distance reduction, which is one Kokkos kernel.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/particle_checks.hpp>
#include <scorekit/schedule/geometric.hpp>

#include <boost/math/distributions/normal.hpp>
#include <boost/math/tools/minima.hpp>
#include <boost/math/tools/roots.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace scorekit {

// ---------------------------------------------------------------------------------------------------
// Technique 1: sigma_1 = max_{i,j} ||x_i - x_j||.
// ---------------------------------------------------------------------------------------------------

/// The largest Euclidean distance between two rows of `data` (N x D, any layout, any arithmetic value
/// type; accumulated in double). Exact: every pair is visited. The rows are cut into tiles of 32 and one
/// work item takes one pair of tiles (bi <= bj), so the two tiles stay in cache while their
/// 32 x 32 distances are formed (a row-against-all-rows loop would stream the whole data set once per
/// row), and four rows j share each load of x_i. Cost N^2 D / 2: 4000 x 784 took 3.1 s on two shared
/// cores (2e9 coordinate-pairs/s, OpenMP, -O2), so Fashion-MNIST's 60000 x 784 takes ~12 minutes there;
/// it is run once per data set. Throws invalid_argument for empty data, fewer than two rows or a NaN /
/// infinite entry.
template <class ExecSpace, class View>
double largest_pairwise_distance(const ExecSpace& exec, const View& data) {
  detail::check_particle_view<ExecSpace, View>();
  const char* where = "largest_pairwise_distance";
  const std::int64_t n = std::int64_t(data.extent(0));
  const std::int64_t d = std::int64_t(data.extent(1));
  if (n == 0 || d == 0)
    throw invalid_argument(detail::concat(where, ": the data is empty (", n, " rows of dimension ", d, ")"));
  if (n < 2)
    throw invalid_argument(
        detail::concat(where, ": the data needs at least two rows to have a pairwise distance, got ", n));
  const std::int64_t bad =
      detail::first_non_finite_row(exec, data, "scorekit::largest_pairwise_distance_check");
  if (bad < n)
    throw invalid_argument(detail::concat(where, ": row ", bad, " of the data has a NaN or infinite entry"));

  ScopedRegion region("scorekit::largest_pairwise_distance");
  constexpr std::int64_t tile = 32;
  const std::int64_t n_tiles = (n + tile - 1) / tile;
  double largest_squared = 0;
  Kokkos::parallel_reduce(
      "scorekit::largest_pairwise_distance", Kokkos::RangePolicy<ExecSpace>(exec, 0, n_tiles * n_tiles),
      KOKKOS_LAMBDA(const std::int64_t p, double& best) {
        const std::int64_t bi = p / n_tiles, bj = p % n_tiles;
        if (bj < bi) return;  // each unordered pair of tiles once
        const std::int64_t i_end = bi * tile + tile < n ? bi * tile + tile : n;
        const std::int64_t j_end = bj * tile + tile < n ? bj * tile + tile : n;
        for (std::int64_t i = bi * tile; i < i_end; ++i) {
          std::int64_t j = bi == bj ? i + 1 : bj * tile;
          // Four rows j at a time share each load of x_i.
          for (; j + 4 <= j_end; j += 4) {
            double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            SCOREKIT_SIMD_SUM(s0, s1, s2, s3)
            for (std::int64_t k = 0; k < d; ++k) {
              const double xi = double(data(i, k));
              const double d0 = xi - double(data(j, k)), d1 = xi - double(data(j + 1, k));
              const double d2 = xi - double(data(j + 2, k)), d3 = xi - double(data(j + 3, k));
              s0 += d0 * d0;
              s1 += d1 * d1;
              s2 += d2 * d2;
              s3 += d3 * d3;
            }
            best = best > s0 ? best : s0;
            best = best > s1 ? best : s1;
            best = best > s2 ? best : s2;
            best = best > s3 ? best : s3;
          }
          for (; j < j_end; ++j) {
            double s = 0;
            SCOREKIT_SIMD_SUM(s)
            for (std::int64_t k = 0; k < d; ++k) {
              const double diff = double(data(i, k)) - double(data(j, k));
              s += diff * diff;
            }
            if (s > best) best = s;
          }
        }
      },
      Kokkos::Max<double>(largest_squared));
  return std::sqrt(largest_squared);
}

// ---------------------------------------------------------------------------------------------------
// Technique 2: the ratio gamma of the geometric ladder.
// ---------------------------------------------------------------------------------------------------
//
// Why the condition reads Phi(sqrt(2D)(gamma - 1) + 3 gamma) - Phi(sqrt(2D)(gamma - 1) - 3 gamma):
// perturb a point with N(0, sigma^2 I_D). Its distance r from the clean point is sigma ||z||, and
// ||z||^2 ~ chi^2_D (mean D, variance 2D), so by the delta method ||z|| ~ N(sqrt(D), 1/2) for large D:
// r ~ N(sqrt(D) sigma, sigma^2 / 2), a thin shell. Level i-1 puts nearly all its mass in its 3-standard-
// deviation shell [sqrt(D) sigma_{i-1} -+ 3 sigma_{i-1} / sqrt(2)]. The paper asks that level i put a
// fixed fraction (the overlap, 0.5) of its mass in that shell, so that the samples handed from level i-1
// to level i already sit where level i has mass. With r_i ~ N(sqrt(D) sigma_i, sigma_i^2 / 2) the mass is
//   Phi((sqrt(D) sigma_{i-1} + 3 sigma_{i-1}/sqrt(2) - sqrt(D) sigma_i) / (sigma_i / sqrt(2)))
//     - Phi((sqrt(D) sigma_{i-1} - 3 sigma_{i-1}/sqrt(2) - sqrt(D) sigma_i) / (sigma_i / sqrt(2)))
//   = Phi(sqrt(2D)(gamma - 1) + 3 gamma) - Phi(sqrt(2D)(gamma - 1) - 3 gamma).
// The same expression follows from the difference x_i - x_j of two perturbed copies, whose norm is
// ~ N(sqrt(2D) sigma, sigma^2). Phi is the standard normal CDF; erf is NOT a drop-in for it
// (Phi(x) = (1 + erf(x / sqrt(2))) / 2): "erf(u) - erf(l) = overlap" measures twice the mass of a
// sqrt(2)-times narrower shell, and for D = 3072 its root is gamma = 1.0461, not the paper's 1.040.
//
// Shape of h(gamma) = Phi(u) - Phi(l), u = (a + 3) gamma - a, l = (a - 3) gamma - a, a = sqrt(2D), on
// gamma >= 1: h(1) = Phi(3) - Phi(-3) = 0.99730 for every D; h'(1) = 6 phi(3) > 0, so h first rises a
// little, then (for a > 3, i.e. D >= 5) falls to 0 as l -> infinity. The meaningful root is the one on
// the falling side (a larger ratio means less overlap). For D <= 4 (a < 3) the shell of level i-1 widens
// faster than it moves away, h rises to 1 and no ratio gives less overlap: refused.
namespace detail {

/// h(gamma) for a = sqrt(2D), each term from the side of the normal where it is not a difference of two
/// numbers near 1 (so h keeps its relative precision when both limits are in one tail).
inline double ncsnv2_overlap(double gamma, double a) {
  const boost::math::normal_distribution<double> normal;
  const double u = (a + 3) * gamma - a, l = (a - 3) * gamma - a;
  if (l >= 0)
    return boost::math::cdf(boost::math::complement(normal, l)) -
           boost::math::cdf(boost::math::complement(normal, u));
  if (u <= 0) return boost::math::cdf(normal, u) - boost::math::cdf(normal, l);
  return (1 - boost::math::cdf(normal, l)) - boost::math::cdf(boost::math::complement(normal, u));
}

}  // namespace detail

/// gamma = sigma_{i-1} / sigma_i for data of dimension D such that consecutive noise levels overlap by
/// `overlap` (technique 2; 0.5 in the paper). For D = 3072 (CIFAR-10) this is 1.03980.
inline double ncsnv2_ratio(int D, double overlap = 0.5) {
  const char* where = "ncsnv2_ratio";
  if (D < 1) throw invalid_argument(detail::concat(where, ": the data dimension D must be >= 1, got ", D));
  if (!(overlap > 0 && overlap < 1))
    throw invalid_argument(
        detail::concat(where, ": the overlap must lie strictly between 0 and 1, got ", overlap));
  const double a = std::sqrt(2.0 * D);
  const double h_at_1 = detail::ncsnv2_overlap(1.0, a);
  if (a <= 3)
    throw invalid_argument(detail::concat(
        where, ": no ratio gives overlap ", overlap, " in dimension D = ", D,
        ": for D <= 4 the overlap rises with the ratio from ", h_at_1, " towards 1 (it needs D >= 5)"));
  auto residual = [&](double gamma) { return detail::ncsnv2_overlap(gamma, a) - overlap; };

  // Upper end of the bracket: the root lies near a / (a - 3) (where l = 0 and h ~ 1/2), so step
  // gamma - 1 up from 1/a by doubling until h < overlap; h -> 0 as gamma grows, so this ends.
  double step = 1 / a, hi = 1 + step;
  for (int k = 0; residual(hi) >= 0; ++k) {
    if (k > 200)
      throw invalid_argument(detail::concat(where, ": no ratio gives overlap ", overlap,
                                            " in dimension D = ", D, " (the overlap never falls below it)"));
    step *= 2;
    hi = 1 + step;
  }
  // Lower end: the peak of h on [1, hi] (h is unimodal there), so that h(lo) > overlap > h(hi) brackets
  // the crossing on the falling side, the only one for overlap < h(1).
  const int bits = std::numeric_limits<double>::digits / 2;
  const auto peak = boost::math::tools::brent_find_minima(
      [&](double gamma) { return -detail::ncsnv2_overlap(gamma, a); }, 1.0, hi, bits);
  const double lo = -peak.second > h_at_1 ? peak.first : 1.0;
  const double h_max = std::max(-peak.second, h_at_1);
  if (!(h_max > overlap))
    throw invalid_argument(detail::concat(where, ": no ratio gives overlap ", overlap, " in dimension D = ",
                                          D, ": the largest overlap any ratio reaches is ", h_max));
  std::uintmax_t iterations = 200;
  const auto root = boost::math::tools::toms748_solve(
      residual, lo, hi, residual(lo), residual(hi),
      boost::math::tools::eps_tolerance<double>(std::numeric_limits<double>::digits - 2), iterations);
  return 0.5 * (root.first + root.second);
}

// ---------------------------------------------------------------------------------------------------
// Technique 4: the step eps of annealed Langevin dynamics.
// ---------------------------------------------------------------------------------------------------
//
// Derivation (paper, Proposition 3). Take one data point at 0, so level i's perturbed density is
// N(0, sigma_i^2 I) with score -x / sigma_i^2. NCSNv2's sampler (its Algorithm 1 and reference code,
// `x + step_size * grad + sqrt(2 step_size) z`) takes per coordinate
//   x_t = x_{t-1} + alpha s(x_{t-1}) + sqrt(2 alpha) z_t = c x_{t-1} + sqrt(2 alpha) z_t,
//   c = 1 - alpha / sigma_i^2 = 1 - eps / sigma_L^2        (alpha = alpha_i = eps sigma_i^2 / sigma_L^2),
// so the variance obeys s_t^2 = c^2 s_{t-1}^2 + 2 alpha, whose fixed point is s_*^2 = 2 alpha / (1 - c^2),
// and s_T^2 = c^{2T} (s_0^2 - s_*^2) + s_*^2. The level starts from level i-1's variance,
// s_0^2 = sigma_{i-1}^2 = gamma^2 sigma_i^2; dividing by sigma_i^2,
//   s_T^2 / sigma_i^2 = c^{2T} (gamma^2 - 2 eps / (sigma_L^2 (1 - c^2))) + 2 eps / (sigma_L^2 (1 - c^2)),
// which is the paper's formula exactly (sigma_L^2 - sigma_L^2 (1 - eps/sigma_L^2)^2 = sigma_L^2 (1 - c^2)).
// With x = eps / sigma_L^2 the fixed point simplifies to 2 eps / (sigma_L^2 x (2 - x)) = 2 / (2 - x),
// which is how it is evaluated here (no cancellation for small eps).
//
// The factor of 2: with NCSN's convention (Song and Ermon 2019, Algorithm 1, and scorekit's
// annealed_langevin), x_t = x_{t-1} + (alpha/2) s + sqrt(alpha) z, the contraction is
// (1 - alpha / (2 sigma_i^2)) and the added variance alpha, which gives the same formula with eps replaced
// by eps / 2. So this function returns the paper's eps (for the `alpha s + sqrt(2 alpha) z` sampler; the
// paper's CIFAR-10 value 6.2e-6 is in that convention), and the step_size to give scorekit's
// AnnealedLangevinSettings for the same dynamics is 2 eps.
//
// s_T^2 / sigma_i^2 is a weighted mean of gamma^2 > 1 and 2 / (2 - x) > 1, so for gamma > 1 it never
// reaches 1: the rule takes the eps that brings it closest, a minimum of a smooth function of log eps.

/// s_T^2 / sigma_i^2 of Proposition 3: the variance after T steps at one level relative to the level's
/// own, for ladder ratio gamma, last level sigma_last and step eps in (0, sigma_last^2) (paper's
/// convention, see above).
inline double ncsnv2_variance_ratio(double eps, double gamma, double sigma_last, int T) {
  const char* where = "ncsnv2_variance_ratio";
  require_positive(sigma_last, "sigma_last", where);
  require_positive(gamma, "the ladder ratio gamma", where);
  if (T < 1) throw invalid_argument(detail::concat(where, ": T (steps per level) must be >= 1, got ", T));
  const double x = eps / (sigma_last * sigma_last);
  if (!(x > 0 && x < 1))
    throw invalid_argument(detail::concat(where, ": eps must lie in (0, sigma_last^2) = (0, ",
                                          sigma_last * sigma_last, "), got ", eps));
  const double contraction = std::exp(2.0 * T * std::log1p(-x));  // c^{2T}
  const double stationary = 2 / (2 - x);
  return contraction * (gamma * gamma - stationary) + stationary;
}

/// Throws unless `sigmas` is a geometric ladder: at least two levels, positive, finite, strictly
/// decreasing, every ratio sigma_{i-1} / sigma_i within a relative 1e-6 of the mean ratio. Returns the
/// mean ratio (sigma_1 / sigma_L)^{1 / (L - 1)}.
inline double check_geometric_ladder(const std::vector<double>& sigmas, const char* where) {
  if (sigmas.empty()) throw invalid_argument(detail::concat(where, ": the noise ladder is empty"));
  if (sigmas.size() < 2)
    throw invalid_argument(detail::concat(
        where,
        ": the noise ladder needs at least two levels (the ratio gamma = sigma_{i-1} / sigma_i), got 1"));
  for (std::size_t i = 0; i < sigmas.size(); ++i) {
    if (!(sigmas[i] > 0) || !(sigmas[i] < std::numeric_limits<double>::infinity()))
      throw invalid_argument(
          detail::concat(where, ": noise level ", i, " must be positive and finite, got ", sigmas[i]));
    if (i > 0 && !(sigmas[i] < sigmas[i - 1]))
      throw invalid_argument(detail::concat(where,
                                            ": the noise ladder must be strictly decreasing, but level ", i,
                                            " (", sigmas[i], ") >= level ", i - 1, " (", sigmas[i - 1], ")"));
  }
  const double gamma = std::exp(std::log(sigmas.front() / sigmas.back()) / double(sigmas.size() - 1));
  for (std::size_t i = 1; i < sigmas.size(); ++i) {
    const double ratio = sigmas[i - 1] / sigmas[i];
    if (!(std::fabs(ratio / gamma - 1) <= 1e-6))
      throw invalid_argument(detail::concat(where, ": the noise ladder is not geometric: sigma_", i - 1,
                                            " / sigma_", i, " = ", ratio, " differs from the mean ratio ",
                                            gamma, " by more than a relative 1e-6"));
  }
  return gamma;
}

/// Technique 4: the eps minimising |s_T^2 / sigma_i^2 - 1| over (0, sigma_L^2) for a geometric ladder and
/// T steps per level (paper's convention: alpha_i = eps sigma_i^2 / sigma_L^2 in
/// x + alpha_i s + sqrt(2 alpha_i) z; scorekit's annealed_langevin wants 2 eps). For the paper's CIFAR-10
/// ladder (50 -> 0.01, 232 levels) and T = 5 this is 6.184e-6.
inline double ncsnv2_step_size(const std::vector<double>& sigmas, int T) {
  const char* where = "ncsnv2_step_size";
  const double gamma = check_geometric_ladder(sigmas, where);
  if (T < 1) throw invalid_argument(detail::concat(where, ": T (steps per level) must be >= 1, got ", T));
  const double sigma_last = sigmas.back();
  // Search over u = log(eps / sigma_L^2) in [log 1e-15, 0): a coarse grid finds the basin (f is smooth,
  // and the grid guards against a second local minimum), then Brent's method polishes it.
  auto distance = [&](double u) {
    const double x = std::exp(u);
    if (!(x < 1)) return std::numeric_limits<double>::infinity();
    return std::fabs(ncsnv2_variance_ratio(x * sigma_last * sigma_last, gamma, sigma_last, T) - 1);
  };
  const int n_grid = 600;
  const double u_lo = std::log(1e-15), u_hi = std::log1p(-1e-12);
  auto grid = [&](int k) { return u_lo + (u_hi - u_lo) * k / n_grid; };
  int best = 0;
  double best_value = distance(grid(0));
  for (int k = 1; k <= n_grid; ++k) {
    const double v = distance(grid(k));
    if (v < best_value) best_value = v, best = k;
  }
  const auto minimum = boost::math::tools::brent_find_minima(distance, grid(std::max(best - 1, 0)),
                                                             grid(std::min(best + 1, n_grid)),
                                                             std::numeric_limits<double>::digits / 2);
  return std::exp(minimum.first) * sigma_last * sigma_last;
}

// ---------------------------------------------------------------------------------------------------
// All three together.
// ---------------------------------------------------------------------------------------------------

/// A noise ladder and sampler step configured from data by NCSNv2's techniques 1, 2 and 4.
struct NoiseConfiguration {
  double sigma_first = 0;      ///< technique 1: the largest pairwise distance of the data
  double sigma_last = 0;       ///< as asked
  double ratio = 0;            ///< sigma_{i-1} / sigma_i of the ladder (<= technique 2's gamma: L rounds up)
  int n_levels = 0;            ///< L
  std::vector<double> sigmas;  ///< geometric, sigma_first -> sigma_last, L levels
  double step_size = 0;        ///< technique 4's eps, in the paper's convention (see ncsnv2_step_size)
  int steps_per_level = 0;     ///< T

  /// The step to give scorekit's annealed_langevin (whose update is x + (alpha/2) s + sqrt(alpha) z) for
  /// the same dynamics as NCSNv2's x + alpha s + sqrt(2 alpha) z with step_size: twice it.
  double annealed_langevin_step_size() const { return 2 * step_size; }
};

/// sigma_first from the data (technique 1), the ratio for its dimension (technique 2, with `overlap`),
/// L = the smallest number of levels with sigma_first gamma^{-(L-1)} <= sigma_last, the geometric ladder
/// sigma_first -> sigma_last with L levels, and the step for T = steps_per_level (technique 4).
template <class ExecSpace, class View>
NoiseConfiguration ncsnv2_configure(const ExecSpace& exec, const View& data, double sigma_last,
                                    int steps_per_level, double overlap = 0.5) {
  const char* where = "ncsnv2_configure";
  require_positive(sigma_last, "sigma_last", where);
  if (steps_per_level < 1)
    throw invalid_argument(detail::concat(where, ": steps_per_level must be >= 1, got ", steps_per_level));
  NoiseConfiguration c;
  c.sigma_first = largest_pairwise_distance(exec, data);
  if (!(sigma_last < c.sigma_first))
    throw invalid_argument(detail::concat(
        where, ": sigma_last (", sigma_last,
        ") must be smaller than the largest pairwise distance of the data (", c.sigma_first, ")"));
  const int dim = int(data.extent(1));
  const double gamma = ncsnv2_ratio(dim, overlap);
  // L - 1 = ceil(log(sigma_first / sigma_last) / log gamma), then corrected by one either way against
  // rounding so that L is the smallest count that reaches sigma_last.
  const double steps = std::ceil(std::log(c.sigma_first / sigma_last) / std::log(gamma));
  if (!(steps < double(std::numeric_limits<int>::max() - 2)))
    throw invalid_argument(detail::concat(where, ": the ladder would need ", steps, " levels"));
  auto reaches = [&](int levels) {
    return c.sigma_first * std::pow(gamma, -double(levels - 1)) <= sigma_last;
  };
  int levels = std::max(2, int(steps) + 1);
  while (!reaches(levels)) ++levels;
  while (levels > 2 && reaches(levels - 1)) --levels;
  c.sigma_last = sigma_last;
  c.n_levels = levels;
  c.sigmas = geometric_schedule(c.sigma_first, sigma_last, levels);
  c.ratio = std::exp(std::log(c.sigma_first / sigma_last) / double(levels - 1));
  c.steps_per_level = steps_per_level;
  c.step_size = ncsnv2_step_size(c.sigmas, steps_per_level);
  return c;
}

}  // namespace scorekit
