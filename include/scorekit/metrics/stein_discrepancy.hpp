// Kernel Stein discrepancy (KSD) of a sample against a density known through its score s = grad log p
// only: no normalising constant and no samples from p are needed (Liu, Lee and Jordan, "A kernelized
// Stein discrepancy for goodness-of-fit tests", ICML 2016; Chwialkowski, Strathmann and Gretton, ICML
// 2016; Gorham and Mackey, "Measuring sample quality with kernels", ICML 2017).
//
// With a kernel k(x, y) = phi(|x - y|^2) the Stein kernel is (Liu et al. 2016, Theorem 3.6)
//   u(x, y) = s(x).s(y) k + s(x).grad_y k + s(y).grad_x k + tr(grad_x grad_y k)
//           = phi s(x).s(y) - 2 phi' (s(x) - s(y)).(x - y) - 2 d phi' - 4 phi'' |x - y|^2,
// E_{x,y ~ p} u(x, y) = 0 (Stein's identity), and the U-statistic
//   KSD^2_u = 1/(N(N-1)) sum_{i!=j} u(x_i, x_j)
// is an unbiased estimate of KSD^2(q, p) >= 0, zero iff q = p for the kernels below.
//
// Kernels: the inverse multiquadric k = (c^2 + r^2)^beta, c > 0, beta in (-1, 0) (default c = 1,
// beta = -1/2), whose KSD controls weak convergence in any dimension (Gorham and Mackey 2017, Theorem 8);
// and the Gaussian RBF k = exp(-r^2 / (2 h^2)), which can fail to detect non-convergence for d >= 3
// (ibid., Theorem 6) and is offered for comparison with the literature.
//
// Noise level: when the sample is drawn from p, u is a degenerate kernel (E_y u(x, y) = 0 for every x), so
// Var(KSD^2_u) = 2 E[u(X, X')^2] / (N(N-1)) exactly (Serfling 1980, section 5.2.1, with zeta_1 = 0);
// `null_sd` is its plug-in estimate. The null law is a weighted sum of centred chi-squares (heavier upper
// tail than a normal); Chebyshev's inequality gives P(|KSD^2_u| >= k null_sd) <= 1/k^2 whatever the tail.
//
// Work: the scores are computed once (one kernel, per-particle workspace), then the O(N^2 d) pair loop
// runs one row per thread; the row sums are added on the host in row order, so results are bitwise
// identical on every host backend and thread count.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/particle_checks.hpp>
#include <scorekit/core/traits.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace scorekit {

/// The base kernel of the Stein kernel.
enum class SteinKernel { imq, rbf };

/// Settings of kernel_stein_discrepancy; the defaults are Gorham and Mackey's recommendation.
struct SteinSettings {
  SteinKernel kernel = SteinKernel::imq;
  double c = 1;          ///< IMQ: k = (c^2 + r^2)^beta, c > 0
  double beta = -0.5;    ///< IMQ exponent, in (-1, 0)
  double bandwidth = 1;  ///< RBF: k = exp(-r^2 / (2 h^2)), h > 0
};

/// The result of kernel_stein_discrepancy.
struct KsdResult {
  double ksd2 = 0;     ///< the U-statistic KSD^2_u (unbiased; may be slightly negative)
  double null_sd = 0;  ///< sd of KSD^2_u when the sample is drawn from p (plug-in estimate)
  double standard_error =
      0;  ///< sqrt(4 var_i(mean_j u(x_i, x_j)) / N + null_sd^2): approximate sd in general
};

namespace detail {
namespace stein {

/// phi(t), phi'(t), phi''(t) of k = phi(|x - y|^2) for the chosen kernel.
struct RadialKernel {
  SteinKernel kind;
  double c2, beta, inv_two_h2;
  KOKKOS_INLINE_FUNCTION void operator()(double t, double& phi, double& d1, double& d2) const {
    if (kind == SteinKernel::imq) {
      const double base = c2 + t;
      phi = beta == -0.5 ? 1 / math::sqrt(base) : math::exp(beta * math::log(base));
      d1 = beta * phi / base;
      d2 = (beta - 1) * d1 / base;
    } else {
      phi = math::exp(-t * inv_two_h2);
      d1 = -inv_two_h2 * phi;
      d2 = -inv_two_h2 * d1;
    }
  }
};

/// Per particle i: sum_{j!=i} u(x_i, x_j) and sum_{j!=i} u(x_i, x_j)^2.
template <class View, class Real, class MemorySpace>
struct SteinRows {
  View x;
  Kokkos::View<const Real**, Kokkos::LayoutRight, MemorySpace> score;
  RadialKernel kernel;
  std::int64_t n;
  int d;
  Kokkos::View<double**, Kokkos::LayoutRight, MemorySpace> out;
  KOKKOS_INLINE_FUNCTION void operator()(const std::int64_t i) const {
    double sum = 0, sum_sq = 0;
    for (std::int64_t k = 0; k < n; ++k) {
      if (k == i) continue;
      double r2 = 0, ss = 0, sd = 0;
      for (int j = 0; j < d; ++j) {
        const double diff = double(x(i, j)) - double(x(k, j));
        r2 += diff * diff;
        ss += double(score(i, j)) * double(score(k, j));
        sd += (double(score(i, j)) - double(score(k, j))) * diff;
      }
      double phi, d1, d2;
      kernel(r2, phi, d1, d2);
      const double u = phi * ss - 2 * d1 * sd - 2 * d * d1 - 4 * d2 * r2;
      sum += u;
      sum_sq += u * u;
    }
    out(i, 0) = sum;
    out(i, 1) = sum_sq;
  }
};

}  // namespace stein
}  // namespace detail

/// The U-statistic KSD^2 of the particles x (N x d, N >= 2) against `density` (any Density whose
/// value_type is the particles' scalar type; only its score is used). The density is copied into the
/// kernels. Throws invalid_argument when a particle or a score is NaN or infinite.
template <class ExecSpace, class View, class Density>
KsdResult kernel_stein_discrepancy(const ExecSpace& exec, const View& x, const Density& density,
                                   const SteinSettings& settings = SteinSettings()) {
  detail::check_particle_view<ExecSpace, View>();
  assert_score_density<Density>();
  using Real = typename View::non_const_value_type;
  static_assert(
      std::is_same<typename policy_traits<Density>::value_type, Real>::value,
      "scorekit::kernel_stein_discrepancy: the density's value_type must be the particles' scalar type");
  const char* where = "scorekit::kernel_stein_discrepancy";
  const std::int64_t n = std::int64_t(x.extent(0));
  const int d = int(x.extent(1));
  if (n < 2)
    throw invalid_argument(detail::concat(where, ": needs at least 2 particles (a U-statistic), got ", n));
  require_dimension(d, density.dim(), "the particles", where);
  detail::stein::RadialKernel kernel{settings.kernel, settings.c * settings.c, settings.beta, 0};
  if (settings.kernel == SteinKernel::imq) {
    require_positive(settings.c, "the IMQ constant c", where);
    if (!(settings.beta > -1 && settings.beta < 0))
      throw invalid_argument(
          detail::concat(where, ": the IMQ exponent beta must be in (-1, 0), got ", settings.beta));
  } else {
    require_positive(settings.bandwidth, "the RBF bandwidth", where);
    kernel.inv_two_h2 = 1 / (2 * settings.bandwidth * settings.bandwidth);
  }
  ScopedRegion region("scorekit::kernel_stein_discrepancy");
  using memory_space = typename ExecSpace::memory_space;

  // Scores, once. Each particle owns a row of scratch: a copy of x_i (any layout in, contiguous out)
  // followed by the density's workspace.
  const int ws = workspace_size(density);
  Kokkos::View<Real**, Kokkos::LayoutRight, memory_space> score("scorekit::ksd_scores", n, d);
  Kokkos::View<Real**, Kokkos::LayoutRight, memory_space> scratch("scorekit::ksd_scratch", n,
                                                                  d + std::max(ws, 1));
  std::int64_t bad_x = n;
  Kokkos::parallel_reduce(
      "scorekit::ksd_scores", Kokkos::RangePolicy<ExecSpace>(exec, 0, n),
      KOKKOS_LAMBDA(const std::int64_t i, std::int64_t& lowest) {
        Real* xi = &scratch(i, 0);
        bool ok = true;
        for (int j = 0; j < d; ++j) {
          xi[j] = x(i, j);
          ok = ok && math::isfinite(xi[j]);
        }
        if (!ok) {
          if (i < lowest) lowest = i;
          return;
        }
        scorekit::score(density, static_cast<const Real*>(xi), &score(i, 0), xi + d);
      },
      Kokkos::Min<std::int64_t>(bad_x));
  if (bad_x < n)
    throw invalid_argument(detail::concat(where, ": particle ", bad_x, " has a NaN or infinite coordinate"));
  const std::int64_t bad_score = detail::first_non_finite_row(exec, score, "scorekit::ksd_check_scores");
  if (bad_score < n)
    throw invalid_argument(
        detail::concat(where, ": the density's score is NaN or infinite at particle ", bad_score));

  Kokkos::View<double**, Kokkos::LayoutRight, memory_space> rows("scorekit::ksd_rows", n, 2);
  Kokkos::parallel_for("scorekit::kernel_stein_discrepancy", Kokkos::RangePolicy<ExecSpace>(exec, 0, n),
                       detail::stein::SteinRows<View, Real, memory_space>{x, score, kernel, n, d, rows});
  auto r = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), rows);
  const double N = double(n);
  double sum = 0, sum_sq = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    sum += r(i, 0);
    sum_sq += r(i, 1);
  }
  KsdResult out;
  out.ksd2 = sum / (N * (N - 1));
  const double null_var = 2 * (sum_sq / (N * (N - 1))) / (N * (N - 1));
  out.null_sd = std::sqrt(null_var);
  double mean = 0, var = 0;
  for (std::int64_t i = 0; i < n; ++i) mean += r(i, 0) / (N - 1);
  mean /= N;
  for (std::int64_t i = 0; i < n; ++i) var += (r(i, 0) / (N - 1) - mean) * (r(i, 0) / (N - 1) - mean);
  var /= N - 1;
  out.standard_error = std::sqrt(4 * var / N + null_var);
  return out;
}

}  // namespace scorekit
