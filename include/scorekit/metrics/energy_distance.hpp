// Energy distance between two samples (Szekely and Rizzo, "Energy statistics: a class of statistics based
// on distances", J. Stat. Planning and Inference 143 (2013), eq. (2.1)):
//   E(X, Y) = 2 E|X - Y| - E|X - X'| - E|Y - Y'|  >= 0, with equality iff X and Y have the same law,
// estimated by the U-statistic
//   2/(NM) sum_{i,j} |x_i - y_j| - 1/(N(N-1)) sum_{i!=j} |x_i - x_j| - 1/(M(M-1)) sum_{i!=j} |y_i - y_j|,
// which is unbiased (and so may be slightly negative when the laws are equal).
//
// The energy distance is MMD^2 with the distance-induced kernel k(x, y) = -|x - y| (Sejdinovic,
// Sriperumbudur, Gretton and Fukumizu, Ann. Statist. 41 (2013)), so the same permutation argument as in
// mmd.hpp applies: over random relabelings of the pooled sample the statistic has mean 0 and standard
// deviation `null_sd` (closed form, derived in metrics/detail/two_sample.hpp), and P_H0(statistic >= k
// null_sd) <= 1/(1 + k^2) by Cantelli's inequality.
//
// O((N+M)^2 d) work in one kernel, one pooled point per thread; row sums added on the host in order, so
// results are bitwise identical on every host backend and thread count.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/metrics/detail/two_sample.hpp>

#include <cmath>
#include <cstdint>

namespace scorekit {

/// The result of energy_distance.
struct EnergyDistanceResult {
  double energy_distance = 0;  ///< 2 cross - within_x - within_y (U-statistic)
  double cross = 0;            ///< mean |x_i - y_j| over all pairs
  double within_x = 0;         ///< mean |x_i - x_j| over i != j
  double within_y = 0;         ///< mean |y_i - y_j| over i != j
  double null_sd = 0;          ///< sd of the statistic over relabelings of the pooled sample (H0 noise level)
};

namespace detail {
namespace energy {

/// The distance |z_i - z_j| and its square, as a pair kernel of two_sample::RowSums (the statistic's
/// kernel is -|x - y|; the sign is applied when the row sums are combined, and the permutation variance
/// does not depend on it).
struct DistancePair {
  KOKKOS_INLINE_FUNCTION void operator()(double r2, double& k, double& k2) const {
    k = math::sqrt(r2);
    k2 = r2;
  }
};

}  // namespace energy
}  // namespace detail

/// The energy distance U-statistic between x (N x d) and y (M x d), N, M >= 2.
template <class ExecSpace, class XView, class YView>
EnergyDistanceResult energy_distance(const ExecSpace& exec, const XView& x, const YView& y) {
  const char* where = "scorekit::energy_distance";
  detail::two_sample::check_two_samples(exec, x, y, where);
  ScopedRegion region("scorekit::energy_distance");
  const std::int64_t n_x = std::int64_t(x.extent(0)), n_y = std::int64_t(y.extent(0));
  const detail::two_sample::Totals t = detail::two_sample::totals(
      detail::two_sample::row_sums(exec, x, y, detail::energy::DistancePair{}, "scorekit::energy_distance"),
      n_x);
  const double N = double(n_x), M = double(n_y);
  EnergyDistanceResult out;
  out.within_x = t.within_x / (N * (N - 1));
  out.within_y = t.within_y / (M * (M - 1));
  out.cross = t.cross / (N * M);
  out.energy_distance = 2 * out.cross - out.within_x - out.within_y;
  out.null_sd = std::sqrt(detail::two_sample::permutation_variance(t.row_sum, t.sum_sq, n_x, n_y));
  return out;
}

}  // namespace scorekit
