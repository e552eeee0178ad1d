// Internals shared by the two-sample U-statistics (mmd.hpp, energy_distance.hpp): argument checks, the
// pooled sample, one kernel that sums each pooled point's row of a pair kernel K(|z_i - z_j|^2), and the
// exact variance of the statistic over relabelings of the pooled sample.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/particle_checks.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace scorekit {
namespace detail {
namespace two_sample {

/// Checks x (N x d) and y (M x d) for a two-sample U-statistic: N, M >= 2, d >= 1, equal dimensions,
/// every coordinate finite.
template <class ExecSpace, class XView, class YView>
void check_two_samples(const ExecSpace& exec, const XView& x, const YView& y, const char* where) {
  check_particle_view<ExecSpace, XView>();
  check_particle_view<ExecSpace, YView>();
  if (x.extent(0) < 2 || y.extent(0) < 2)
    throw invalid_argument(concat(where, ": each sample needs at least 2 particles (a U-statistic), got ",
                                  x.extent(0), " and ", y.extent(0)));
  if (x.extent(1) < 1) throw invalid_argument(concat(where, ": the particles have dimension 0"));
  require_dimension(std::int64_t(y.extent(1)), std::int64_t(x.extent(1)), "the second sample", where);
  require_finite_particles(exec, x, where, "first sample");
  require_finite_particles(exec, y, where, "second sample");
}

/// Coordinate j of point i of the pooled sample (x first, then y), in double.
template <class XView, class YView>
struct Pooled {
  XView x;
  YView y;
  std::int64_t n_x;
  int d;
  KOKKOS_INLINE_FUNCTION double operator()(std::int64_t i, int j) const {
    return i < n_x ? double(x(i, j)) : double(y(i - n_x, j));
  }
  KOKKOS_INLINE_FUNCTION double squared_distance(std::int64_t i, std::int64_t k) const {
    double r2 = 0;
    for (int j = 0; j < d; ++j) {
      const double t = (*this)(i, j) - (*this)(k, j);
      r2 += t * t;
    }
    return r2;
  }
};

/// Per pooled point i, with K_ij from `pair(|z_i - z_j|^2, K_ij, K_ij^2)`: the sum of K_ij over the other
/// points of its own sample (column 0), over the other sample (column 1), and of K_ij^2 over all j != i
/// (column 2). Each row is summed sequentially by one thread.
template <class XView, class YView, class PairKernel, class MemorySpace>
struct RowSums {
  Pooled<XView, YView> z;
  std::int64_t n;
  PairKernel pair;
  Kokkos::View<double**, Kokkos::LayoutRight, MemorySpace> out;
  KOKKOS_INLINE_FUNCTION void operator()(const std::int64_t i) const {
    double own = 0, cross = 0, sq = 0;
    const bool in_x = i < z.n_x;
    for (std::int64_t j = 0; j < n; ++j) {
      if (j == i) continue;
      double k, k2;
      pair(z.squared_distance(i, j), k, k2);
      if ((j < z.n_x) == in_x)
        own += k;
      else
        cross += k;
      sq += k2;
    }
    out(i, 0) = own;
    out(i, 1) = cross;
    out(i, 2) = sq;
  }
};

/// Runs RowSums over the pooled sample of (validated) x and y in the kernel `label` and returns the
/// (N + M) x 3 row sums on the host.
template <class ExecSpace, class XView, class YView, class PairKernel>
auto row_sums(const ExecSpace& exec, const XView& x, const YView& y, const PairKernel& pair,
              const char* label) {
  using memory_space = typename ExecSpace::memory_space;
  const std::int64_t n_x = std::int64_t(x.extent(0)), n = n_x + std::int64_t(y.extent(0));
  Kokkos::View<double**, Kokkos::LayoutRight, memory_space> rows(std::string(label) + "_rows", n, 3);
  const Pooled<XView, YView> z{x, y, n_x, int(x.extent(1))};
  Kokkos::parallel_for(label, Kokkos::RangePolicy<ExecSpace>(exec, 0, n),
                       RowSums<XView, YView, PairKernel, memory_space>{z, n, pair, rows});
  return Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), rows);
}

/// The row sums of row_sums() added on the host in row order (so bitwise identical on every host backend
/// and thread count).
struct Totals {
  double within_x = 0;          ///< sum_{i!=j, both in x} K_ij
  double within_y = 0;          ///< sum_{i!=j, both in y} K_ij
  double cross = 0;             ///< sum_{i in x, j in y} K_ij
  double sum_sq = 0;            ///< sum_{i!=j} K_ij^2
  std::vector<double> row_sum;  ///< per pooled point i: sum_{j!=i} K_ij
};

template <class HostRows>
Totals totals(const HostRows& r, std::int64_t n_x) {
  const std::int64_t n = std::int64_t(r.extent(0));
  Totals t;
  t.row_sum.assign(std::size_t(n), 0.0);
  for (std::int64_t i = 0; i < n; ++i) {
    (i < n_x ? t.within_x : t.within_y) += r(i, 0);
    if (i < n_x) t.cross += r(i, 1);
    t.sum_sq += r(i, 2);
    t.row_sum[std::size_t(i)] = r(i, 0) + r(i, 1);
  }
  return t;
}

/// Variance of a two-sample U-statistic sum_{i!=j} w(s_i, s_j) K_ij over uniformly random relabelings
/// s of n = N + M pooled points (N labelled x), given the off-diagonal row sums R_i, their total T and
/// Q = sum_{i!=j} K_ij^2, where w(x,x) = 1/(N(N-1)), w(y,y) = 1/(M(M-1)), w(x,y) = -1/(NM). Needs n >= 4.
///
/// Derivation. For every labeling sum_{j!=i} w(s_i, s_j) = 0, so the statistic is unchanged by the
/// double centring K'_ij = K_ij - r_i - r_j; with r_i = (R_i - T/(2(n-1)))/(n-2) every off-diagonal row
/// sum of K' vanishes. Expanding the square, the variance is then
///   Q' (2 e2 - 4 e3 + 2 e4),  Q' = sum_{i!=j} K'_ij^2,
/// with e2 = E w_12^2, e3 = E w_12 w_13, e4 = E w_12 w_34 over random labels. Direct counting gives
/// e2 = S/(n(n-1)) with S = 1/(N(N-1)) + 1/(M(M-1)) + 2/(NM), e3 = -e2/(n-2), and the zero row sums of w
/// give e4 = 2 e2/((n-2)(n-3)); together Var = 2 S Q' / (n(n-3)). Q' is expanded in R_i and Q, so no
/// second pass over pairs is needed. (The test checks this against exhaustive enumeration.)
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

}  // namespace two_sample
}  // namespace detail
}  // namespace scorekit
