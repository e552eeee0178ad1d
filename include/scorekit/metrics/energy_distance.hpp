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
// deviation `null_sd` (closed form, see mmd.hpp), and P_H0(statistic >= k null_sd) <= 1/(1 + k^2) by
// Cantelli's inequality.
//
// O((N+M)^2 d) work in one kernel, one pooled point per thread; row sums added on the host in order, so
// results are bitwise identical on every host backend and thread count.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

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

template <class ExecSpace, class View>
constexpr void check_particle_view() {
  static_assert(
      Kokkos::is_view<View>::value,
      "scorekit metrics: the particles must be a Kokkos::View of rank 2 (N x d, one row a particle)");
  static_assert(int(View::rank) == 2, "scorekit metrics: the particles must be a rank-2 view (N x d)");
  static_assert(Kokkos::SpaceAccessibility<ExecSpace, typename View::memory_space>::accessible,
                "scorekit metrics: the particles' memory space is not accessible from the execution space");
}

template <class ExecSpace, class View>
void require_finite(const ExecSpace& exec, const View& x, const char* where, const char* name) {
  const std::int64_t n = std::int64_t(x.extent(0));
  const int d = int(x.extent(1));
  std::int64_t first = n;
  Kokkos::parallel_reduce(
      "scorekit::metrics_check_finite", Kokkos::RangePolicy<ExecSpace>(exec, 0, n),
      KOKKOS_LAMBDA(const std::int64_t i, std::int64_t& lowest) {
        bool ok = true;
        for (int j = 0; j < d; ++j) ok = ok && math::isfinite(x(i, j));
        if (!ok && i < lowest) lowest = i;
      },
      Kokkos::Min<std::int64_t>(first));
  if (first < n)
    throw invalid_argument(
        concat(where, ": ", name, " particle ", first, " has a NaN or infinite coordinate"));
}

/// Per pooled point i (x first, then y): sums of |z_i - z_j| over the other points of its own sample,
/// over the other sample, and of |z_i - z_j|^2 over all j != i.
template <class XView, class YView, class MemorySpace>
struct DistanceRows {
  XView x;
  YView y;
  std::int64_t n_x, n;
  int d;
  Kokkos::View<double**, Kokkos::LayoutRight, MemorySpace> out;
  KOKKOS_INLINE_FUNCTION double at(std::int64_t i, int j) const {
    return i < n_x ? double(x(i, j)) : double(y(i - n_x, j));
  }
  KOKKOS_INLINE_FUNCTION void operator()(const std::int64_t i) const {
    double own = 0, cross = 0, sq = 0;
    const bool in_x = i < n_x;
    for (std::int64_t k = 0; k < n; ++k) {
      if (k == i) continue;
      double r2 = 0;
      for (int j = 0; j < d; ++j) {
        const double t = at(i, j) - at(k, j);
        r2 += t * t;
      }
      const double r = math::sqrt(r2);
      if ((k < n_x) == in_x)
        own += r;
      else
        cross += r;
      sq += r2;
    }
    out(i, 0) = own;
    out(i, 1) = cross;
    out(i, 2) = sq;
  }
};

/// The permutation variance of a two-sample U-statistic with pair kernel K; the derivation is in
/// detail::mmd::permutation_variance (metrics/mmd.hpp). Repeated here because a metrics header includes
/// only core/.
inline double permutation_variance(const std::vector<double>& row_sum, double sum_sq, std::int64_t n_x,
                                   std::int64_t n_y) {
  const double n = double(n_x + n_y), N = double(n_x), M = double(n_y);
  double total = 0;
  for (double r : row_sum) total += r;
  const double shift = total / (2 * (n - 1));
  double sum_r = 0, sum_r2 = 0, sum_rR = 0;
  for (double r_i : row_sum) {
    const double r = (r_i - shift) / (n - 2);
    sum_r += r;
    sum_r2 += r * r;
    sum_rR += r * r_i;
  }
  const double q_centred = std::max(0.0, sum_sq - 4 * sum_rR + 2 * (n - 2) * sum_r2 + 2 * sum_r * sum_r);
  const double s = 1 / (N * (N - 1)) + 1 / (M * (M - 1)) + 2 / (N * M);
  return 2 * s * q_centred / (n * (n - 3));
}

}  // namespace energy
}  // namespace detail

/// The energy distance U-statistic between x (N x d) and y (M x d), N, M >= 2.
template <class ExecSpace, class XView, class YView>
EnergyDistanceResult energy_distance(const ExecSpace& exec, const XView& x, const YView& y) {
  const char* where = "scorekit::energy_distance";
  detail::energy::check_particle_view<ExecSpace, XView>();
  detail::energy::check_particle_view<ExecSpace, YView>();
  if (x.extent(0) < 2 || y.extent(0) < 2)
    throw invalid_argument(detail::concat(where,
                                          ": each sample needs at least 2 particles (a U-statistic), got ",
                                          x.extent(0), " and ", y.extent(0)));
  if (x.extent(1) < 1) throw invalid_argument(detail::concat(where, ": the particles have dimension 0"));
  require_dimension(std::int64_t(y.extent(1)), std::int64_t(x.extent(1)), "the second sample", where);
  detail::energy::require_finite(exec, x, where, "first sample");
  detail::energy::require_finite(exec, y, where, "second sample");
  ScopedRegion region("scorekit::energy_distance");
  using memory_space = typename ExecSpace::memory_space;
  const std::int64_t n_x = std::int64_t(x.extent(0)), n_y = std::int64_t(y.extent(0)), n = n_x + n_y;
  Kokkos::View<double**, Kokkos::LayoutRight, memory_space> rows("scorekit::energy_distance_rows", n, 3);
  Kokkos::parallel_for(
      "scorekit::energy_distance", Kokkos::RangePolicy<ExecSpace>(exec, 0, n),
      detail::energy::DistanceRows<XView, YView, memory_space>{x, y, n_x, n, int(x.extent(1)), rows});
  auto r = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), rows);
  const double N = double(n_x), M = double(n_y);
  double sxx = 0, syy = 0, sxy = 0, sq = 0;
  std::vector<double> row_sum(std::size_t(n), 0.0);
  for (std::int64_t i = 0; i < n; ++i) {
    (i < n_x ? sxx : syy) += r(i, 0);
    if (i < n_x) sxy += r(i, 1);
    sq += r(i, 2);
    row_sum[std::size_t(i)] = r(i, 0) + r(i, 1);
  }
  EnergyDistanceResult out;
  out.within_x = sxx / (N * (N - 1));
  out.within_y = syy / (M * (M - 1));
  out.cross = sxy / (N * M);
  out.energy_distance = 2 * out.cross - out.within_x - out.within_y;
  out.null_sd = std::sqrt(detail::energy::permutation_variance(row_sum, sq, n_x, n_y));
  return out;
}

}  // namespace scorekit
