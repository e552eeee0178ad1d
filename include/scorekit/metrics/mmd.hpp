// Maximum mean discrepancy between two samples with the Gaussian RBF kernel
//   k(x, y) = exp(-|x - y|^2 / (2 h^2)),
// as the unbiased U-statistic of Gretton, Borgwardt, Rasch, Schoelkopf and Smola, "A kernel two-sample
// test", JMLR 13 (2012), eq. (3):
//   MMD^2_u = 1/(N(N-1)) sum_{i!=j} k(x_i,x_j) + 1/(M(M-1)) sum_{i!=j} k(y_i,y_j) - 2/(NM) sum_{i,j}
//   k(x_i,y_j).
// It is unbiased, so it can be (slightly) negative when the two laws are equal.
//
// Judging "below the two-sample noise level". Under H0 (both samples from one law) the labels of the
// pooled sample are exchangeable. Over the N+M choose N relabelings of the pooled sample, MMD^2_u has mean
// exactly 0 and a variance that has a closed form in O(n^2) (derived in
// metrics/detail/two_sample.hpp); `null_sd` is its square root.
// Cantelli's inequality then gives, for every pooled sample and every k > 0,
//   P_H0(MMD^2_u >= k null_sd) <= 1 / (1 + k^2),
// a distribution-free test of level 1/(1+k^2) (k = 5: 3.8%); in practice the null law, a weighted sum of
// centred chi-squares (Gretton et al. 2012, Theorem 12), typically has a much lighter upper tail (with a
// single dominant term, k = 5 is about a 0.5% level). For a calibrated p-value use mmd_permutation_test,
// which shares the kernel and the bandwidth.
//
// Cost: O((N+M)^2 d) kernel evaluations in one Kokkos kernel, one row of the pooled kernel matrix per
// thread, summed sequentially; the row sums are added on the host in row order, so results are bitwise
// identical on every host backend and thread count.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/particle_checks.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/metrics/detail/two_sample.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

namespace scorekit {

/// The result of mmd_squared.
struct MmdResult {
  double mmd2 = 0;            ///< the unbiased estimate MMD^2_u (may be negative)
  double bandwidth = 0;       ///< the RBF bandwidth h used
  double null_sd = 0;         ///< sd of MMD^2_u over relabelings of the pooled sample (the H0 noise level)
  double standard_error = 0;  ///< approximate sd of MMD^2_u under either hypothesis (see mmd_squared)
};

/// The result of a permutation test.
struct PermutationTestResult {
  double statistic = 0;    ///< the observed statistic (MMD^2_u)
  double p_value = 1;      ///< (1 + #{permuted >= observed}) / (1 + n_permutations)
  int n_permutations = 0;  ///< relabelings drawn
  double bandwidth = 0;    ///< the RBF bandwidth h used
};

namespace detail {
namespace mmd {

/// The Gaussian RBF kernel k = exp(-r^2 / (2 h^2)) and its square, as a pair kernel of
/// two_sample::RowSums.
struct RbfPair {
  double inv_two_h2;
  KOKKOS_INLINE_FUNCTION double operator()(double r2) const { return math::exp(-r2 * inv_two_h2); }
  KOKKOS_INLINE_FUNCTION void operator()(double r2, double& k, double& k2) const {
    k = (*this)(r2);
    k2 = k * k;
  }
};

/// Fisher-Yates shuffles of the labels (0 = x, 1 = y); permutation 0 is the identity (the observed
/// split). Permutation p draws from CounterRng(seed, p, 0, RngStream::user).
template <class MemorySpace>
struct ShuffleLabels {
  Kokkos::View<std::uint8_t**, Kokkos::LayoutRight, MemorySpace> labels;
  std::int64_t n_x, n;
  std::uint64_t seed;
  KOKKOS_INLINE_FUNCTION void operator()(const std::int64_t p) const {
    for (std::int64_t i = 0; i < n; ++i) labels(p, i) = i < n_x ? 0 : 1;
    if (p == 0) return;
    CounterRng<double> rng(seed, std::uint64_t(p), 0, RngStream::user);
    for (std::int64_t i = n - 1; i > 0; --i) {
      std::int64_t j = std::int64_t(rng.uniform() * double(i + 1));
      if (j > i) j = i;
      const std::uint8_t t = labels(p, i);
      labels(p, i) = labels(p, j);
      labels(p, j) = t;
    }
  }
};

/// Row i's contribution sum_{j!=i} w(s_i, s_j) K_ij to the statistic under labeling p; K from the cache
/// when it holds the pooled kernel matrix, else recomputed (identical values either way).
template <class XView, class YView, class MemorySpace>
struct PermutedRows {
  two_sample::Pooled<XView, YView> z;
  std::int64_t n;
  RbfPair rbf;
  double w_xx, w_yy, w_xy;
  Kokkos::View<const std::uint8_t**, Kokkos::LayoutRight, MemorySpace> labels;
  Kokkos::View<const double**, Kokkos::LayoutRight, MemorySpace> kernel;  // n x n, or 0 x 0
  Kokkos::View<double**, Kokkos::LayoutRight, MemorySpace> out;
  KOKKOS_INLINE_FUNCTION void operator()(const std::int64_t pi) const {
    const std::int64_t p = pi / n, i = pi % n;
    const bool cached = kernel.extent(0) > 0;
    double same_x = 0, same_y = 0;
    for (std::int64_t j = 0; j < n; ++j) {
      if (j == i) continue;
      const double k = cached ? kernel(i, j) : rbf(z.squared_distance(i, j));
      if (labels(p, j) == 0)
        same_x += k;
      else
        same_y += k;
    }
    out(p, i) = labels(p, i) == 0 ? w_xx * same_x + w_xy * same_y : w_yy * same_y + w_xy * same_x;
  }
};

}  // namespace mmd
}  // namespace detail

/// The median heuristic bandwidth: the median of the pairwise Euclidean distances |z_i - z_j|, i < j, of
/// the pooled sample (Gretton et al. 2012, section 8). When the pooled sample has more than max_points
/// points the median is taken over a deterministic subsample of max_points points evenly spaced in the
/// pooled index (x first, then y), so both samples are represented in proportion; O(max_points^2)
/// distances are computed in a kernel and the median is found on the host.
template <class ExecSpace, class XView, class YView>
double median_heuristic_bandwidth(const ExecSpace& exec, const XView& x, const YView& y,
                                  std::int64_t max_points = 2000) {
  const char* where = "scorekit::median_heuristic_bandwidth";
  detail::check_particle_view<ExecSpace, XView>();
  detail::check_particle_view<ExecSpace, YView>();
  require_dimension(std::int64_t(y.extent(1)), std::int64_t(x.extent(1)), "the second sample", where);
  if (max_points < 2)
    throw invalid_argument(detail::concat(where, ": max_points must be at least 2, got ", max_points));
  const std::int64_t n_x = std::int64_t(x.extent(0)), n = n_x + std::int64_t(y.extent(0));
  if (n < 2) throw invalid_argument(detail::concat(where, ": needs at least 2 points in all, got ", n));
  detail::require_finite_particles(exec, x, where, "first sample");
  detail::require_finite_particles(exec, y, where, "second sample");
  const std::int64_t m = std::min(n, max_points);
  const detail::two_sample::Pooled<XView, YView> z{x, y, n_x, int(x.extent(1))};
  Kokkos::View<double*, typename ExecSpace::memory_space> dist("scorekit::mmd_median_distances",
                                                               m * (m - 1) / 2);
  Kokkos::parallel_for(
      "scorekit::mmd_median_heuristic", Kokkos::RangePolicy<ExecSpace>(exec, 0, m),
      KOKKOS_LAMBDA(const std::int64_t s) {
        const std::int64_t zs = s * n / m;  // evenly spaced pooled index
        std::int64_t offset = s * m - s * (s + 1) / 2;
        for (std::int64_t t = s + 1; t < m; ++t)
          dist(offset++) = math::sqrt(z.squared_distance(zs, t * n / m));
      });
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), dist);
  std::vector<double> v(h.data(), h.data() + h.extent(0));
  const std::size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + std::ptrdiff_t(mid), v.end());
  double median = v[mid];
  if (v.size() % 2 == 0)
    median = 0.5 * (median + *std::max_element(v.begin(), v.begin() + std::ptrdiff_t(mid)));
  if (!(median > 0) || !std::isfinite(median))
    throw invalid_argument(detail::concat(where, ": the median pairwise distance is ", median,
                                          " (more than half the pairs coincide); pass "
                                          "a bandwidth explicitly"));
  return median;
}

/// MMD^2_u between samples x (N x d) and y (M x d), N, M >= 2, with the Gaussian RBF kernel of bandwidth
/// h (median heuristic over the pooled sample when not given).
///
/// Also returned:
/// - null_sd: the exact standard deviation of MMD^2_u over random relabelings of the pooled sample (see
///   the file comment for how to use it as a noise level; detail::two_sample::permutation_variance derives
///   it).
/// - standard_error: sqrt(V1 + null_sd^2), where V1 = 4/N var_i(a_i) + 4/M var_j(b_j) is the first-order
///   (Hoeffding) variance estimated from the row means a_i = mean_{j!=i} k(x_i,x_j) - mean_j k(x_i,y_j)
///   and b_j likewise. Under H1 V1 dominates and MMD^2_u is asymptotically normal (Gretton et al. 2012,
///   Theorem 8); under H0 the sum overestimates, so it is conservative there.
template <class ExecSpace, class XView, class YView>
MmdResult mmd_squared(const ExecSpace& exec, const XView& x, const YView& y,
                      std::optional<double> bandwidth = std::nullopt) {
  const char* where = "scorekit::mmd_squared";
  detail::two_sample::check_two_samples(exec, x, y, where);
  const double h = bandwidth ? *bandwidth : median_heuristic_bandwidth(exec, x, y);
  require_positive(h, "the bandwidth", where);
  ScopedRegion region("scorekit::mmd");
  const std::int64_t n_x = std::int64_t(x.extent(0)), n_y = std::int64_t(y.extent(0)), n = n_x + n_y;
  const auto r =
      detail::two_sample::row_sums(exec, x, y, detail::mmd::RbfPair{1 / (2 * h * h)}, "scorekit::mmd");
  const detail::two_sample::Totals t = detail::two_sample::totals(r, n_x);

  const double N = double(n_x), M = double(n_y);
  MmdResult out;
  out.bandwidth = h;
  out.mmd2 = t.within_x / (N * (N - 1)) + t.within_y / (M * (M - 1)) - 2 * t.cross / (N * M);
  const double null_var =
      n >= 4 ? detail::two_sample::permutation_variance(t.row_sum, t.sum_sq, n_x, n_y) : 0.0;
  out.null_sd = std::sqrt(null_var);
  // First-order term from the centred row means (two-pass sample variances).
  auto row_mean_variance = [&](std::int64_t begin, std::int64_t end, double n_own, double n_other) {
    double mean = 0, var = 0;
    for (std::int64_t i = begin; i < end; ++i) mean += r(i, 0) / (n_own - 1) - r(i, 1) / n_other;
    mean /= double(end - begin);
    for (std::int64_t i = begin; i < end; ++i) {
      const double t = r(i, 0) / (n_own - 1) - r(i, 1) / n_other - mean;
      var += t * t;
    }
    return var / double(end - begin - 1);
  };
  const double v1 = 4 * row_mean_variance(0, n_x, N, M) / N + 4 * row_mean_variance(n_x, n, M, N) / M;
  out.standard_error = std::sqrt(v1 + null_var);
  return out;
}

namespace detail {
namespace mmd {

/// The permutation test on validated input; `cache_kernel` stores the pooled kernel matrix (n^2 values)
/// instead of recomputing it per permutation. Both paths give bitwise the same result.
template <class ExecSpace, class XView, class YView>
PermutationTestResult permutation_test(const ExecSpace& exec, const XView& x, const YView& y,
                                       int n_permutations, std::uint64_t seed, double h, bool cache_kernel) {
  ScopedRegion region("scorekit::mmd_permutation_test");
  using memory_space = typename ExecSpace::memory_space;
  const std::int64_t n_x = std::int64_t(x.extent(0)), n_y = std::int64_t(y.extent(0)), n = n_x + n_y;
  const std::int64_t n_perm = std::int64_t(n_permutations) + 1;  // row 0: the observed labels
  const two_sample::Pooled<XView, YView> z{x, y, n_x, int(x.extent(1))};
  const RbfPair rbf{1 / (2 * h * h)};

  const std::int64_t cached = cache_kernel ? n : 0;
  Kokkos::View<double**, Kokkos::LayoutRight, memory_space> kernel("scorekit::mmd_kernel_matrix", cached,
                                                                   cached);
  if (cache_kernel)
    Kokkos::parallel_for(
        "scorekit::mmd_kernel_matrix", Kokkos::RangePolicy<ExecSpace>(exec, 0, n),
        KOKKOS_LAMBDA(const std::int64_t i) {
          for (std::int64_t j = 0; j < n; ++j) kernel(i, j) = rbf(z.squared_distance(i, j));
        });
  Kokkos::View<std::uint8_t**, Kokkos::LayoutRight, memory_space> labels("scorekit::mmd_labels", n_perm, n);
  Kokkos::parallel_for("scorekit::mmd_permutations", Kokkos::RangePolicy<ExecSpace>(exec, 0, n_perm),
                       ShuffleLabels<memory_space>{labels, n_x, n, seed});
  Kokkos::View<double**, Kokkos::LayoutRight, memory_space> contrib("scorekit::mmd_permuted_rows", n_perm, n);
  const double N = double(n_x), M = double(n_y);
  Kokkos::parallel_for(
      "scorekit::mmd_permutation_test", Kokkos::RangePolicy<ExecSpace>(exec, 0, n_perm * n),
      PermutedRows<XView, YView, memory_space>{z, n, rbf, 1 / (N * (N - 1)), 1 / (M * (M - 1)), -1 / (N * M),
                                               labels, kernel, contrib});
  auto c = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), contrib);
  std::vector<double> stat(std::size_t(n_perm), 0.0);
  for (std::int64_t p = 0; p < n_perm; ++p)
    for (std::int64_t i = 0; i < n; ++i) stat[std::size_t(p)] += c(p, i);
  std::int64_t at_least = 0;
  for (std::int64_t p = 1; p < n_perm; ++p) at_least += stat[std::size_t(p)] >= stat[0] ? 1 : 0;
  PermutationTestResult out;
  out.statistic = stat[0];
  out.p_value = double(1 + at_least) / double(n_perm);
  out.n_permutations = n_permutations;
  out.bandwidth = h;
  return out;
}

}  // namespace mmd
}  // namespace detail

/// A permutation two-sample test with statistic MMD^2_u (Gretton et al. 2012, section 5): the observed
/// statistic against n_permutations uniformly random relabelings of the pooled sample, drawn by Fisher-Yates
/// from CounterRng(seed, permutation, 0, RngStream::user), so the result depends only on the inputs and
/// the seed. The p-value (1 + #{permuted >= observed}) / (1 + n_permutations) is exactly valid under H0
/// (Phipson and Smyth, "Permutation p-values should never be zero", 2010). Compare it with your level
/// alpha (the smallest attainable p-value is 1/(1 + n_permutations)).
///
/// Cost: O(n_permutations (N+M)^2) after one O((N+M)^2 d) pass; the pooled kernel matrix is cached when
/// N + M <= 4096 (at most 128 MiB), else recomputed per permutation.
template <class ExecSpace, class XView, class YView>
PermutationTestResult mmd_permutation_test(const ExecSpace& exec, const XView& x, const YView& y,
                                           int n_permutations, std::uint64_t seed,
                                           std::optional<double> bandwidth = std::nullopt) {
  const char* where = "scorekit::mmd_permutation_test";
  detail::two_sample::check_two_samples(exec, x, y, where);
  if (n_permutations < 1)
    throw invalid_argument(
        detail::concat(where, ": n_permutations must be at least 1, got ", n_permutations));
  const double h = bandwidth ? *bandwidth : median_heuristic_bandwidth(exec, x, y);
  require_positive(h, "the bandwidth", where);
  return detail::mmd::permutation_test(exec, x, y, n_permutations, seed, h,
                                       x.extent(0) + y.extent(0) <= 4096);
}

}  // namespace scorekit
