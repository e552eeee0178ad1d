// Statistical tests and quantiles the project's statistical tests are built on: the one-sample
// Kolmogorov-Smirnov test against any continuous CDF, normal and chi-squared quantiles (Boost.Math), and
// the binomial z-score of a count. Host code: samples are gathered on the host (host_coordinate copies one
// coordinate of a batch of particles).
//
// Kolmogorov-Smirnov p-values P(D_n >= d) (Boost 1.74, the Debian version, has no Kolmogorov-Smirnov
// distribution; it arrived in Boost 1.75):
// - exact when ceil(n d) <= 64 (a matrix of order at most 127: a few ms for any n), by Durbin's matrix
//   formula as evaluated by Marsaglia, Tsang and Wang, "Evaluating Kolmogorov's distribution", J. Stat.
//   Software 8(18) (2003), unless that p-value is below 1e-8, where 1 - CDF has lost its relative accuracy;
// - otherwise the limiting Kolmogorov law at Stephens' modified statistic (sqrt(n) + 0.12 + 0.11/sqrt(n)) d
//   (Stephens, "Use of the Kolmogorov-Smirnov, Cramer-von Mises and related statistics without extensive
//   tables", J. R. Statist. Soc. B 32 (1970), Table 1). Measured against the exact law for
//   20 <= n <= 5000 (and checked by the tests at n = 200 and 1000): absolute error <= 0.015 sqrt(100/n),
//   largest near p = 0.75 (reached by this branch only for n > 8000, where that is <= 0.0017); for
//   n >= 500 relative error <= 2% for 1e-3 <= p < 0.2 and <= 5% for 1e-8 <= p < 1e-3. For small n the
//   far tail is worse (a factor 3 at n = 20, p = 1e-8), but there this branch serves only p < 1e-8.

#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>

#include <Eigen/Dense>
#include <boost/math/distributions/chi_squared.hpp>
#include <boost/math/distributions/normal.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

namespace scorekit {

/// The result of a one-sample Kolmogorov-Smirnov test.
struct KsTestResult {
  double statistic = 0;  ///< D_n = sup_x |F_n(x) - F(x)|
  double p_value = 1;    ///< P(D_n >= statistic) under H0
  std::int64_t n = 0;    ///< sample size
};

/// The limiting Kolmogorov survival function Q(lambda) = lim P(sqrt(n) D_n > lambda)
///   = 2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 lambda^2),
/// evaluated for lambda < 1 through the equivalent theta-function series
///   1 - Q = sqrt(2 pi)/lambda sum_{k>=1} exp(-(2k-1)^2 pi^2 / (8 lambda^2)),
/// which converges fast where the alternating series does not (both to full double precision).
inline double kolmogorov_survival(double lambda) {
  if (std::isnan(lambda)) throw invalid_argument("scorekit::kolmogorov_survival: lambda is NaN");
  if (lambda <= 0) return 1;
  const double pi = 3.14159265358979323846;
  if (lambda < 1) {
    const double a = -pi * pi / (8 * lambda * lambda);
    double sum = 0;
    for (int k = 1; k < 100; ++k) {
      const double term = std::exp(a * double((2 * k - 1) * (2 * k - 1)));
      sum += term;
      if (term <= 1e-17 * sum) break;
    }
    return std::min(1.0, std::max(0.0, 1 - std::sqrt(2 * pi) / lambda * sum));
  }
  double sum = 0, sign = 1;
  for (int k = 1; k < 100; ++k) {
    const double term = std::exp(-2 * double(k) * k * lambda * lambda);
    sum += sign * term;
    sign = -sign;
    if (term <= 1e-17 * sum) break;
  }
  return std::min(1.0, std::max(0.0, 2 * sum));
}

/// The exact CDF P(D_n < d) of the two-sided Kolmogorov-Smirnov statistic for a sample of size n from a
/// continuous law (Durbin 1973; evaluation of Marsaglia, Tsang and Wang 2003): with k = ceil(n d),
/// h = k - n d and m = 2k - 1, P(D_n < d) = n!/n^n (H^n)_{kk} for an m x m matrix H. The power is taken
/// by repeated squaring with rescaling by the largest entry (whose logarithm is accumulated), so nothing
/// overflows. O(m^3 log n) work (the p-value function uses it up to m = 127).
inline double kolmogorov_smirnov_cdf_exact(double d, std::int64_t n) {
  if (n < 1)
    throw invalid_argument(
        detail::concat("scorekit::kolmogorov_smirnov_cdf_exact: n must be positive, got ", n));
  if (std::isnan(d)) throw invalid_argument("scorekit::kolmogorov_smirnov_cdf_exact: d is NaN");
  if (d <= 0.5 / double(n)) return 0;  // D_n >= 1/(2n) always
  if (d >= 1) return 1;
  const std::int64_t k = std::int64_t(std::ceil(double(n) * d));
  const double h = double(k) - double(n) * d;
  const int m = int(2 * k - 1);
  Eigen::MatrixXd H = Eigen::MatrixXd::Zero(m, m);
  std::vector<double> inv_factorial(std::size_t(m + 1), 1.0);
  for (int i = 1; i <= m; ++i) inv_factorial[std::size_t(i)] = inv_factorial[std::size_t(i - 1)] / i;
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j)
      if (i - j + 1 >= 0) H(i, j) = inv_factorial[std::size_t(i - j + 1)];
  for (int i = 0; i < m; ++i) {
    H(i, 0) = (1 - std::pow(h, i + 1)) * inv_factorial[std::size_t(i + 1)];
    H(m - 1, i) = (1 - std::pow(h, m - i)) * inv_factorial[std::size_t(m - i)];
  }
  H(m - 1, 0) =
      (1 - 2 * std::pow(h, m) + std::pow(std::max(0.0, 2 * h - 1), m)) * inv_factorial[std::size_t(m)];

  // result = H^n, as (matrix, log of its scale).
  Eigen::MatrixXd result = Eigen::MatrixXd::Identity(m, m), base = H;
  double log_result = 0, log_base = 0;
  auto rescale = [](Eigen::MatrixXd& a, double& log_scale) {
    const double top = a.cwiseAbs().maxCoeff();
    if (top > 0) {
      a /= top;
      log_scale += std::log(top);
    }
  };
  for (std::int64_t e = n;;) {
    if (e & 1) {
      result = (result * base).eval();
      log_result += log_base;
      rescale(result, log_result);
    }
    e >>= 1;
    if (e == 0) break;
    base = (base * base).eval();
    log_base *= 2;
    rescale(base, log_base);
  }
  const double entry = result(k - 1, k - 1);
  if (!(entry > 0)) return 0;
  const double log_p =
      std::log(entry) + log_result + std::lgamma(double(n) + 1) - double(n) * std::log(double(n));
  return std::min(1.0, std::exp(log_p));
}

/// The p-value P(D_n >= d) of the two-sided one-sample Kolmogorov-Smirnov statistic (see the file comment
/// for where it is exact and where it uses Stephens' approximation).
inline double kolmogorov_smirnov_p_value(double d, std::int64_t n) {
  if (n < 1)
    throw invalid_argument(
        detail::concat("scorekit::kolmogorov_smirnov_p_value: n must be positive, got ", n));
  if (std::isnan(d)) throw invalid_argument("scorekit::kolmogorov_smirnov_p_value: d is NaN");
  if (d <= 0.5 / double(n)) return 1;
  if (d >= 1) return 0;
  if (std::ceil(double(n) * d) <= 64) {
    const double p = 1 - kolmogorov_smirnov_cdf_exact(d, n);
    if (p >= 1e-8) return std::min(1.0, p);
  }
  const double rn = std::sqrt(double(n));
  return kolmogorov_survival((rn + 0.12 + 0.11 / rn) * d);
}

/// The one-sample Kolmogorov-Smirnov test of `samples` against a continuous CDF. Throws invalid_argument
/// for an empty sample, a NaN sample, or a CDF value outside [0, 1].
inline KsTestResult ks_test(std::vector<double> samples, const std::function<double(double)>& cdf) {
  const char* where = "scorekit::ks_test";
  if (samples.empty()) throw invalid_argument(detail::concat(where, ": the sample is empty"));
  for (std::size_t i = 0; i < samples.size(); ++i)
    if (std::isnan(samples[i])) throw invalid_argument(detail::concat(where, ": sample ", i, " is NaN"));
  std::sort(samples.begin(), samples.end());
  const double n = double(samples.size());
  double d = 0;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const double f = cdf(samples[i]);
    if (!(f >= 0 && f <= 1))
      throw invalid_argument(
          detail::concat(where, ": the CDF at ", samples[i], " is ", f, ", not in [0, 1]"));
    d = std::max({d, double(i + 1) / n - f, f - double(i) / n});
  }
  KsTestResult out;
  out.statistic = d;
  out.n = std::int64_t(samples.size());
  out.p_value = kolmogorov_smirnov_p_value(d, out.n);
  return out;
}

/// The one-sample Kolmogorov-Smirnov test of `samples` against N(mean, sd^2).
inline KsTestResult ks_test_normal(std::vector<double> samples, double mean, double sd) {
  require_positive(sd, "the standard deviation", "scorekit::ks_test_normal");
  if (!std::isfinite(mean)) throw invalid_argument("scorekit::ks_test_normal: the mean must be finite");
  const double scale = 1 / (sd * std::sqrt(2.0));
  return ks_test(std::move(samples), [=](double x) { return 0.5 * std::erfc(-(x - mean) * scale); });
}

/// The p-quantile of N(mean, sd^2), 0 < p < 1.
inline double normal_quantile(double p, double mean = 0, double sd = 1) {
  if (!(p > 0 && p < 1))
    throw invalid_argument(detail::concat("scorekit::normal_quantile: p must be in (0, 1), got ", p));
  require_positive(sd, "the standard deviation", "scorekit::normal_quantile");
  return boost::math::quantile(boost::math::normal_distribution<double>(mean, sd), p);
}

/// The p-quantile of the chi-squared law with `dof` > 0 degrees of freedom, 0 < p < 1.
inline double chi_squared_quantile(double p, double dof) {
  if (!(p > 0 && p < 1))
    throw invalid_argument(detail::concat("scorekit::chi_squared_quantile: p must be in (0, 1), got ", p));
  require_positive(dof, "the degrees of freedom", "scorekit::chi_squared_quantile");
  return boost::math::quantile(boost::math::chi_squared_distribution<double>(dof), p);
}

/// The z-score (count - n p) / sqrt(n p (1 - p)) of a Binomial(n, p) count, 0 < p < 1: e.g. how many
/// standard errors a mode's sample count is from its weight.
inline double binomial_z(std::int64_t count, std::int64_t n, double p) {
  const char* where = "scorekit::binomial_z";
  if (n < 1) throw invalid_argument(detail::concat(where, ": n must be positive, got ", n));
  if (count < 0 || count > n)
    throw invalid_argument(
        detail::concat(where, ": the count must be in [0, n] = [0, ", n, "], got ", count));
  if (!(p > 0 && p < 1)) throw invalid_argument(detail::concat(where, ": p must be in (0, 1), got ", p));
  return (double(count) - double(n) * p) / std::sqrt(double(n) * p * (1 - p));
}

/// Coordinate j of every particle of x (N x d, any memory space), copied to a host vector in double.
template <class View>
std::vector<double> host_coordinate(const View& x, int j) {
  static_assert(Kokkos::is_view<View>::value && int(View::rank) == 2,
                "scorekit::host_coordinate: x must be a rank-2 Kokkos::View (N x d)");
  if (j < 0 || j >= int(x.extent(1)))
    throw invalid_argument(detail::concat("scorekit::host_coordinate: coordinate ", j,
                                          " out of range for dimension ", x.extent(1)));
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x);
  std::vector<double> out(h.extent(0));
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = double(h(i, j));
  return out;
}

}  // namespace scorekit
