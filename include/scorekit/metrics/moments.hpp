// Sample mean and unbiased sample covariance of a batch of particles, accumulated in double precision
// whatever the particle type.
//
// Reproducibility: the sums are split into blocks of rows whose size depends only on (N, d); each block
// is summed sequentially by one thread, and the block partial sums are added on the host in block order.
// The result is therefore bitwise identical on every host backend and for every thread count (a GPU may
// differ at round-off only where its compiler contracts a*b+c into a fused multiply-add).
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/particle_checks.hpp>

#include <Eigen/Dense>

#include <algorithm>
#include <cstdint>
#include <string>

namespace scorekit {
namespace detail {
namespace moments {

// Rows per block for a partial sum with `entries` accumulators per block: blocks of 512 rows, fewer
// (longer) blocks when the partial sums would exceed 2^24 values (128 MiB). Depends only on (n,
// entries), never on the backend, so the summation order is fixed.
inline std::int64_t rows_per_block(std::int64_t n, std::int64_t entries) {
  const std::int64_t budget = std::int64_t(1) << 24;
  std::int64_t blocks = (n + 511) / 512;
  blocks = std::max<std::int64_t>(1, std::min(blocks, budget / std::max<std::int64_t>(1, entries)));
  return (n + blocks - 1) / blocks;
}

}  // namespace moments
}  // namespace detail

/// The sample mean (1/N) sum_i x_i of N x d particles, as a host vector of length d.
template <class ExecSpace, class View>
Eigen::VectorXd sample_mean(const ExecSpace& exec, const View& x) {
  detail::check_particle_view<ExecSpace, View>();
  const char* where = "scorekit::sample_mean";
  const std::int64_t n = std::int64_t(x.extent(0));
  const int d = int(x.extent(1));
  if (n < 1 || d < 1)
    throw invalid_argument(
        detail::concat(where, ": needs at least one particle of dimension >= 1, got ", n, " x ", d));
  detail::require_finite_particles(exec, x, where);
  const std::int64_t rows = detail::moments::rows_per_block(n, d);
  const std::int64_t blocks = (n + rows - 1) / rows;
  Kokkos::View<double**, Kokkos::LayoutRight, typename ExecSpace::memory_space> partial(
      "scorekit::sample_mean_partial", blocks, d);
  Kokkos::parallel_for(
      "scorekit::sample_mean", Kokkos::RangePolicy<ExecSpace>(exec, 0, blocks * d),
      KOKKOS_LAMBDA(const std::int64_t bj) {
        const std::int64_t b = bj / d;
        const int j = int(bj % d);
        const std::int64_t end = (b + 1) * rows < n ? (b + 1) * rows : n;
        double s = 0;
        for (std::int64_t i = b * rows; i < end; ++i) s += double(x(i, j));
        partial(b, j) = s;
      });
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), partial);
  Eigen::VectorXd mean = Eigen::VectorXd::Zero(d);
  for (std::int64_t b = 0; b < blocks; ++b)
    for (int j = 0; j < d; ++j) mean[j] += h(b, j);
  return mean / double(n);
}

/// The unbiased sample covariance 1/(N-1) sum_i (x_i - xbar)(x_i - xbar)^T (two passes: the mean
/// first, then centred products, which avoids the cancellation of the one-pass formula).
template <class ExecSpace, class View>
Eigen::MatrixXd sample_covariance(const ExecSpace& exec, const View& x) {
  detail::check_particle_view<ExecSpace, View>();
  const char* where = "scorekit::sample_covariance";
  const std::int64_t n = std::int64_t(x.extent(0));
  const int d = int(x.extent(1));
  if (n < 2 || d < 1)
    throw invalid_argument(detail::concat(
        where, ": needs at least two particles of dimension >= 1 (unbiased, 1/(N-1)), got ", n, " x ", d));
  const Eigen::VectorXd mean_h = sample_mean(exec, x);
  using memory_space = typename ExecSpace::memory_space;
  Kokkos::View<double*, memory_space> mean("scorekit::sample_covariance_mean", d);
  {
    auto m = Kokkos::create_mirror_view(mean);
    for (int j = 0; j < d; ++j) m(j) = mean_h[j];
    Kokkos::deep_copy(exec, mean, m);
  }
  const std::int64_t dd = std::int64_t(d) * d;
  const std::int64_t rows = detail::moments::rows_per_block(n, dd);
  const std::int64_t blocks = (n + rows - 1) / rows;
  Kokkos::View<double***, Kokkos::LayoutRight, memory_space> partial("scorekit::sample_covariance_partial",
                                                                     blocks, d, d);
  Kokkos::parallel_for(
      "scorekit::sample_covariance", Kokkos::RangePolicy<ExecSpace>(exec, 0, blocks * dd),
      KOKKOS_LAMBDA(const std::int64_t bjk) {
        const std::int64_t b = bjk / dd;
        const int j = int((bjk % dd) / d);
        const int k = int(bjk % d);
        if (k < j) return;  // symmetric: the lower triangle is copied on the host
        const std::int64_t end = (b + 1) * rows < n ? (b + 1) * rows : n;
        double s = 0;
        for (std::int64_t i = b * rows; i < end; ++i)
          s += (double(x(i, j)) - mean(j)) * (double(x(i, k)) - mean(k));
        partial(b, j, k) = s;
      });
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), partial);
  Eigen::MatrixXd cov = Eigen::MatrixXd::Zero(d, d);
  for (std::int64_t b = 0; b < blocks; ++b)
    for (int j = 0; j < d; ++j)
      for (int k = j; k < d; ++k) cov(j, k) += h(b, j, k);
  for (int j = 0; j < d; ++j)
    for (int k = j; k < d; ++k) {
      cov(j, k) /= double(n - 1);
      cov(k, j) = cov(j, k);
    }
  return cov;
}

}  // namespace scorekit
