// Sample-quality metrics (moments, MMD, energy distance, mode weights, kernel Stein discrepancy, ESS) and
// the statistical tests the other tests are built on. Every metric is checked against a brute-force host
// computation, and every noise level it reports is checked against what it promises; statistical
// tolerances are stated in standard errors next to each check.
#include "backends.hpp"

#include <catch2/catch.hpp>

#include <scorekit/core/random.hpp>
#include <scorekit/core/views.hpp>
#include <scorekit/density/gaussian_mixture.hpp>
#include <scorekit/metrics/effective_sample_size.hpp>
#include <scorekit/metrics/energy_distance.hpp>
#include <scorekit/metrics/mmd.hpp>
#include <scorekit/metrics/mode_weights.hpp>
#include <scorekit/metrics/moments.hpp>
#include <scorekit/metrics/statistical_tests.hpp>
#include <scorekit/metrics/stein_discrepancy.hpp>

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <vector>

namespace {

using scorekit::CounterRng;
using scorekit::RngStream;

// Host data -> particles in the memory space of Exec.
template <class Real, class Exec>
scorekit::ParticleView<Real, typename Exec::memory_space> to_particles(const Eigen::MatrixXd& a) {
  scorekit::ParticleView<Real, typename Exec::memory_space> x("x", a.rows(), a.cols());
  auto h = Kokkos::create_mirror_view(x);
  for (Eigen::Index i = 0; i < a.rows(); ++i)
    for (Eigen::Index j = 0; j < a.cols(); ++j) h(i, j) = Real(a(i, j));
  Kokkos::deep_copy(x, h);
  return x;
}

// N x d standard normals times sd plus shift, from the counter RNG (stream `init`, particle = row).
Eigen::MatrixXd normal_matrix(std::int64_t n, int d, std::uint64_t seed, double shift = 0, double sd = 1) {
  Eigen::MatrixXd a(n, d);
  for (std::int64_t i = 0; i < n; ++i) {
    CounterRng<double> rng(seed, std::uint64_t(i), 0, RngStream::init);
    for (int j = 0; j < d; ++j) a(i, j) = shift + sd * rng.normal();
  }
  return a;
}

// Exact draws from a Gaussian mixture: one generator per particle (the generic driver lives elsewhere).
template <class Real, class Exec>
scorekit::ParticleView<Real, typename Exec::memory_space> draw_mixture(
    const scorekit::GaussianMixture<Real, typename Exec::memory_space>& mix, std::int64_t n,
    std::uint64_t seed) {
  scorekit::ParticleView<Real, typename Exec::memory_space> x("draws", n, mix.dim());
  Kokkos::parallel_for(
      "test_draw", Kokkos::RangePolicy<Exec>(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        CounterRng<Real> rng(seed, std::uint64_t(i), 0, RngStream::init);
        mix.draw(rng, &x(i, 0));
      });
  Kokkos::fence();
  return x;
}

template <class View>
Eigen::MatrixXd to_eigen_host(const View& x) {
  auto h = scorekit::to_host(x);
  Eigen::MatrixXd a(h.extent(0), h.extent(1));
  for (std::size_t i = 0; i < h.extent(0); ++i)
    for (std::size_t j = 0; j < h.extent(1); ++j) a(Eigen::Index(i), Eigen::Index(j)) = double(h(i, j));
  return a;
}

double mean_of(const std::vector<double>& v) {
  return std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
}
double sd_of(const std::vector<double>& v) {
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / double(v.size() - 1));
}

// Brute force on the host: the pooled kernel matrix K (diagonal unused), and the two-sample U-statistic
// sum_{i!=j} w(s_i, s_j) K_ij for labels s (0 = first sample) -- the MMD^2_u of Gretton et al. eq. (3).
Eigen::MatrixXd pooled_kernel(const Eigen::MatrixXd& x, const Eigen::MatrixXd& y,
                              const std::function<double(double)>& of_squared_distance) {
  Eigen::MatrixXd z(x.rows() + y.rows(), x.cols());
  z << x, y;
  Eigen::MatrixXd k(z.rows(), z.rows());
  for (Eigen::Index i = 0; i < z.rows(); ++i)
    for (Eigen::Index j = 0; j < z.rows(); ++j)
      k(i, j) = of_squared_distance((z.row(i) - z.row(j)).squaredNorm());
  return k;
}
double two_sample_u(const Eigen::MatrixXd& k, const std::vector<int>& labels) {
  double n0 = 0;
  for (int s : labels) n0 += s == 0 ? 1 : 0;
  const double n1 = double(labels.size()) - n0;
  double total = 0;
  for (std::size_t i = 0; i < labels.size(); ++i)
    for (std::size_t j = 0; j < labels.size(); ++j) {
      if (i == j) continue;
      const double w = labels[i] != labels[j] ? -1 / (n0 * n1)
                       : labels[i] == 0       ? 1 / (n0 * (n0 - 1))
                                              : 1 / (n1 * (n1 - 1));
      total += w * k(Eigen::Index(i), Eigen::Index(j));
    }
  return total;
}
// Mean and variance of the U-statistic over all C(n, n0) relabelings (each equally likely).
std::pair<double, double> exhaustive_permutation_moments(const Eigen::MatrixXd& k, int n0) {
  const int n = int(k.rows());
  double s1 = 0, s2 = 0, count = 0;
  for (unsigned mask = 0; mask < (1u << n); ++mask) {
    if (__builtin_popcount(mask) != n0) continue;
    std::vector<int> labels(std::size_t(n), 1);
    for (int i = 0; i < n; ++i)
      if (mask & (1u << i)) labels[std::size_t(i)] = 0;
    const double t = two_sample_u(k, labels);
    s1 += t;
    s2 += t * t;
    count += 1;
  }
  const double mean = s1 / count;
  return {mean, s2 / count - mean * mean};
}

// Closed-form population MMD^2 between isotropic Gaussian mixtures with the RBF kernel of bandwidth h:
// for X ~ N(mu, s I_d), Y ~ N(nu, t I_d) independent, E k(X, Y) = (h^2/c)^(d/2) exp(-|mu - nu|^2 / (2c)),
// c = h^2 + s + t (a Gaussian integral).
struct IsotropicMixture {
  Eigen::VectorXd weights;  // normalised
  Eigen::MatrixXd means;    // K x d
  Eigen::VectorXd variances;
};
double expected_rbf(const IsotropicMixture& p, const IsotropicMixture& q, double h) {
  const double d = double(p.means.cols());
  double e = 0;
  for (Eigen::Index k = 0; k < p.weights.size(); ++k)
    for (Eigen::Index l = 0; l < q.weights.size(); ++l) {
      const double c = h * h + p.variances[k] + q.variances[l];
      e += p.weights[k] * q.weights[l] * std::pow(h * h / c, d / 2) *
           std::exp(-(p.means.row(k) - q.means.row(l)).squaredNorm() / (2 * c));
    }
  return e;
}
double population_mmd2(const IsotropicMixture& p, const IsotropicMixture& q, double h) {
  return expected_rbf(p, p, h) + expected_rbf(q, q, h) - 2 * expected_rbf(p, q, h);
}
template <class Exec>
scorekit::GaussianMixture<double, typename Exec::memory_space> make_mixture(const IsotropicMixture& m) {
  return scorekit::GaussianMixture<double, typename Exec::memory_space>::isotropic(m.weights, m.means,
                                                                                   m.variances);
}

// Summation-order round-off bound for a sum of n terms of absolute sum `abs_sum`: n eps abs_sum
// (Higham, "Accuracy and stability of numerical algorithms", eq. (4.4)), with a factor 4 for the few
// extra roundings in each term.
double order_tolerance(double n, double abs_sum) {
  return 4 * n * std::numeric_limits<double>::epsilon() * abs_sum;
}

}  // namespace

// ------------------------------------------------------------------------------------------- moments

TEMPLATE_LIST_TEST_CASE("sample_mean and sample_covariance match Eigen", "[metrics][moments]",
                        scorekit_test::Backends) {
  using Exec = TestType;
  // A large common offset makes a one-pass covariance lose every digit; the two-pass one must not.
  Eigen::MatrixXd a = normal_matrix(1500, 3, 11);
  a.col(1) = 0.5 * a.col(0) + a.col(1);
  a.array() += 1000.0;
  const Eigen::RowVectorXd mean_ref = a.colwise().mean();
  const Eigen::MatrixXd centred = a.rowwise() - mean_ref;
  const Eigen::MatrixXd cov_ref = centred.transpose() * centred / double(a.rows() - 1);

  auto x = to_particles<double, Exec>(a);
  const Eigen::VectorXd mean = scorekit::sample_mean(Exec(), x);
  const Eigen::MatrixXd cov = scorekit::sample_covariance(Exec(), x);
  // Different summation orders: |error| <= 4 N eps sum|terms| / N for the mean; for the covariance the
  // mean's own error (~ N eps 1000 / N) enters squared-away to first order (centred terms sum to ~0),
  // leaving the order bound on sum |c_i c_j| / (N - 1).
  const double n = double(a.rows());
  for (int j = 0; j < 3; ++j) {
    CHECK(std::abs(mean[j] - mean_ref[j]) <= order_tolerance(n, a.col(j).cwiseAbs().sum()) / n);
    for (int k = 0; k < 3; ++k) {
      const double abs_sum = (centred.col(j).cwiseAbs().array() * centred.col(k).cwiseAbs().array()).sum();
      const double mean_error = order_tolerance(n, a.cwiseAbs().maxCoeff() * n) / n;
      CHECK(std::abs(cov(j, k) - cov_ref(j, k)) <=
            order_tolerance(n, abs_sum) / (n - 1) + 4 * mean_error * centred.cwiseAbs().maxCoeff());
    }
  }
  CHECK(cov(0, 1) == cov(1, 0));

  // float particles: accumulated in double, so the result is the double answer for the float values.
  auto xf = to_particles<float, Exec>(a);
  const Eigen::MatrixXd af = to_eigen_host(xf);
  const Eigen::RowVectorXd mean_f = af.colwise().mean();
  const Eigen::VectorXd mean_ff = scorekit::sample_mean(Exec(), xf);
  for (int j = 0; j < 3; ++j)
    CHECK(std::abs(mean_ff[j] - mean_f[j]) <= order_tolerance(n, af.col(j).cwiseAbs().sum()) / n);

  // Known data: rows (1, 2), (3, 6), (5, 10): mean (3, 6), covariance [[4, 8], [8, 16]].
  Eigen::MatrixXd small(3, 2);
  small << 1, 2, 3, 6, 5, 10;
  auto s = to_particles<double, Exec>(small);
  CHECK(scorekit::sample_mean(Exec(), s).isApprox(Eigen::Vector2d(3, 6), 1e-15));
  Eigen::Matrix2d expected;
  expected << 4, 8, 8, 16;
  CHECK(scorekit::sample_covariance(Exec(), s).isApprox(expected, 1e-15));

  // Bad input.
  auto one = to_particles<double, Exec>(Eigen::MatrixXd::Ones(1, 2));
  CHECK_THROWS_AS(scorekit::sample_covariance(Exec(), one), scorekit::invalid_argument);
  Eigen::MatrixXd with_nan = small;
  with_nan(1, 1) = std::numeric_limits<double>::quiet_NaN();
  auto bad = to_particles<double, Exec>(with_nan);
  CHECK_THROWS_WITH(scorekit::sample_mean(Exec(), bad), Catch::Contains("particle 1"));
}

// ----------------------------------------------------------------------------------------------- MMD

TEMPLATE_LIST_TEST_CASE("mmd_squared equals a brute-force host computation", "[metrics][mmd]",
                        scorekit_test::Backends) {
  using Exec = TestType;
  const Eigen::MatrixXd a = normal_matrix(40, 2, 21), b = normal_matrix(30, 2, 22, 0.5, 1.3);
  auto x = to_particles<double, Exec>(a);
  auto y = to_particles<double, Exec>(b);

  // Median heuristic: the median of all pooled pairwise distances, computed the same way (a sequential
  // sum over coordinates), so the selected value is bitwise the same.
  std::vector<double> dist;
  Eigen::MatrixXd z(70, 2);
  z << a, b;
  for (int i = 0; i < 70; ++i)
    for (int j = i + 1; j < 70; ++j) {
      double r2 = 0;
      for (int c = 0; c < 2; ++c) r2 += (z(i, c) - z(j, c)) * (z(i, c) - z(j, c));
      dist.push_back(std::sqrt(r2));
    }
  std::sort(dist.begin(), dist.end());
  REQUIRE(dist.size() == 2415);  // odd: the median is the middle distance
  const double median_ref = dist[1207];
  CHECK(scorekit::median_heuristic_bandwidth(Exec(), x, y) == median_ref);

  // Deterministic subsample: every 70/7-th pooled point.
  {
    std::vector<double> sub;
    for (int s = 0; s < 7; ++s)
      for (int t = s + 1; t < 7; ++t) sub.push_back((z.row(s * 70 / 7) - z.row(t * 70 / 7)).norm());
    std::sort(sub.begin(), sub.end());  // 21 distances: the 11th
    CHECK(scorekit::median_heuristic_bandwidth(Exec(), x, y, 7) == Approx(sub[10]).epsilon(1e-15));
  }

  for (double h : {0.7, median_ref}) {
    const auto k = pooled_kernel(a, b, [h](double r2) { return std::exp(-r2 / (2 * h * h)); });
    std::vector<int> labels(70, 1);
    std::fill(labels.begin(), labels.begin() + 40, 0);
    const double ref = two_sample_u(k, labels);
    const auto r = scorekit::mmd_squared(Exec(), x, y, h);
    // |terms| sum to at most 3 (each block of weights sums to 1 in absolute value, kernel <= 1).
    CHECK(std::abs(r.mmd2 - ref) <= order_tolerance(70 * 70, 3.0));
    CHECK(r.bandwidth == h);
  }
  CHECK(scorekit::mmd_squared(Exec(), x, y).bandwidth == median_ref);

  // float particles are read into double before any arithmetic: bitwise the result for double particles
  // holding the same (float-rounded) values.
  auto xf = to_particles<float, Exec>(a);
  auto yf = to_particles<float, Exec>(b);
  auto xd = to_particles<double, Exec>(to_eigen_host(xf));
  auto yd = to_particles<double, Exec>(to_eigen_host(yf));
  CHECK(scorekit::mmd_squared(Exec(), xf, yf).mmd2 == scorekit::mmd_squared(Exec(), xd, yd).mmd2);

  // Bad input.
  CHECK_THROWS_AS(scorekit::mmd_squared(Exec(), x, y, -1.0), scorekit::invalid_argument);
  auto y3 = to_particles<double, Exec>(normal_matrix(10, 3, 1));
  CHECK_THROWS_AS(scorekit::mmd_squared(Exec(), x, y3), scorekit::dimension_mismatch);
  auto single = to_particles<double, Exec>(normal_matrix(1, 2, 1));
  CHECK_THROWS_AS(scorekit::mmd_squared(Exec(), x, single), scorekit::invalid_argument);
  Eigen::MatrixXd with_inf = b;
  with_inf(7, 0) = std::numeric_limits<double>::infinity();
  auto bad = to_particles<double, Exec>(with_inf);
  CHECK_THROWS_WITH(scorekit::mmd_squared(Exec(), x, bad, 1.0), Catch::Contains("second sample particle 7"));
  auto same = to_particles<double, Exec>(Eigen::MatrixXd::Zero(5, 2));
  CHECK_THROWS_WITH(scorekit::mmd_squared(Exec(), same, same), Catch::Contains("median pairwise distance"));
}

TEMPLATE_LIST_TEST_CASE("MMD and energy distance null_sd is the exact permutation standard deviation",
                        "[metrics][mmd][energy]", scorekit_test::Backends) {
  using Exec = TestType;
  // Exhaustive enumeration of every relabeling of small pooled samples (C(8,4) = 70, C(9,3) = 84,
  // C(10,2) = 45), which proves the closed form of detail::two_sample::permutation_variance; the permutation
  // mean of an unbiased two-sample U-statistic is exactly 0.
  for (auto sizes : {std::pair<int, int>{4, 4}, {3, 6}, {8, 2}}) {
    const Eigen::MatrixXd a = normal_matrix(sizes.first, 3, 31), b = normal_matrix(sizes.second, 3, 32, 0.4);
    auto x = to_particles<double, Exec>(a);
    auto y = to_particles<double, Exec>(b);
    const double h = 1.1;
    const auto rbf = pooled_kernel(a, b, [h](double r2) { return std::exp(-r2 / (2 * h * h)); });
    const auto mmd_moments = exhaustive_permutation_moments(rbf, sizes.first);
    CHECK(std::abs(mmd_moments.first) < 1e-14);
    CHECK(scorekit::mmd_squared(Exec(), x, y, h).null_sd ==
          Approx(std::sqrt(mmd_moments.second)).epsilon(1e-10));

    const auto dist = pooled_kernel(a, b, [](double r2) { return std::sqrt(r2); });
    const auto energy_moments = exhaustive_permutation_moments(dist, sizes.first);
    CHECK(std::abs(energy_moments.first) < 1e-13);
    CHECK(scorekit::energy_distance(Exec(), x, y).null_sd ==
          Approx(std::sqrt(energy_moments.second)).epsilon(1e-10));
  }
}

TEMPLATE_LIST_TEST_CASE("MMD separates equal and different laws", "[metrics][mmd]", scorekit_test::Backends) {
  using Exec = TestType;
  Eigen::MatrixXd means(2, 2);
  means << -2, 0, 2, 1;
  const IsotropicMixture p{Eigen::Vector2d(0.3, 0.7), means, Eigen::Vector2d(0.5, 1.0)};
  IsotropicMixture q = p;
  q.means(1, 0) += 2;  // the heavier component moved by two standard deviations

  // Same law: exact draws from p with two seeds.
  auto x = draw_mixture<double, Exec>(make_mixture<Exec>(p), 300, 1);
  auto y = draw_mixture<double, Exec>(make_mixture<Exec>(p), 250, 2);
  const auto same = scorekit::mmd_squared(Exec(), x, y);
  // Cantelli: under H0, P(mmd2 >= 5 null_sd) <= 1/26 for any law; the seed is fixed.
  CHECK(same.mmd2 < 5 * same.null_sd);
  const auto same_test = scorekit::mmd_permutation_test(Exec(), x, y, 199, 7);
  CHECK(same_test.p_value > 0.01);  // uniform under H0: fails for 1% of seeds, and the seed is fixed
  CHECK(std::abs(same_test.statistic - same.mmd2) <= order_tolerance(550.0 * 550, 3.0));
  CHECK(same_test.bandwidth == same.bandwidth);

  // Different law: detected beyond the H0 noise level. The design has the power for it: the closed-form
  // population MMD^2 exceeds 5 null_sd by more than 5 standard errors of the estimate.
  auto w = draw_mixture<double, Exec>(make_mixture<Exec>(q), 250, 3);
  const auto diff = scorekit::mmd_squared(Exec(), x, w);
  const double truth = population_mmd2(p, q, diff.bandwidth);
  INFO("population " << truth << ", estimate " << diff.mmd2 << ", se " << diff.standard_error << ", null sd "
                     << diff.null_sd);
  REQUIRE(truth - 5 * diff.null_sd > 5 * diff.standard_error);
  CHECK(diff.mmd2 > 5 * diff.null_sd);
  const auto diff_test = scorekit::mmd_permutation_test(Exec(), x, w, 199, 7);
  CHECK(diff_test.p_value == Approx(1.0 / 200));  // no relabeling reaches the observed value

  // Caching the pooled kernel matrix (N + M <= 4096) or recomputing it gives bitwise the same test, and
  // the test is a pure function of (inputs, seed).
  const double h = same_test.bandwidth;
  const auto cached = scorekit::detail::mmd::permutation_test(Exec(), x, y, 49, 11, h, true);
  const auto recomputed = scorekit::detail::mmd::permutation_test(Exec(), x, y, 49, 11, h, false);
  CHECK(recomputed.statistic == cached.statistic);
  CHECK(recomputed.p_value == cached.p_value);
  CHECK(scorekit::mmd_permutation_test(Exec(), x, y, 49, 11).p_value == cached.p_value);
  CHECK_THROWS_AS(scorekit::mmd_permutation_test(Exec(), x, y, 0, 7), scorekit::invalid_argument);
}

TEMPLATE_LIST_TEST_CASE("MMD is unbiased for the closed-form population value", "[metrics][mmd]",
                        scorekit_test::Backends) {
  using Exec = TestType;
  Eigen::MatrixXd means(2, 2);
  means << -1, 0, 1, 0.5;
  const IsotropicMixture p{Eigen::Vector2d(0.5, 0.5), means, Eigen::Vector2d(0.7, 0.4)};
  IsotropicMixture q = p;
  q.means(0, 1) -= 0.8;
  const double h = 0.9, truth = population_mmd2(p, q, h);
  // R independent replicates: the mean within 5 standard errors (their sd / sqrt(R)) of the truth.
  const int replicates = 100;
  const auto mix_p = make_mixture<Exec>(p);
  const auto mix_q = make_mixture<Exec>(q);
  std::vector<double> est, se2;
  for (int r = 0; r < replicates; ++r) {
    auto x = draw_mixture<double, Exec>(mix_p, 120, 100 + std::uint64_t(r));
    auto y = draw_mixture<double, Exec>(mix_q, 80, 300 + std::uint64_t(r));
    const auto m = scorekit::mmd_squared(Exec(), x, y, h);
    est.push_back(m.mmd2);
    se2.push_back(m.standard_error * m.standard_error);
  }
  INFO("truth " << truth << ", mean " << mean_of(est) << ", sd " << sd_of(est) << ", rms se "
                << std::sqrt(mean_of(se2)));
  CHECK(std::abs(mean_of(est) - truth) < 5 * sd_of(est) / std::sqrt(double(replicates)));
  // standard_error is documented as conservative (here about 1.2 times the true sd): the replicate sd may
  // not exceed the rms standard_error by more than 5 standard errors of a sample sd (1/sqrt(2(R-1))).
  CHECK(sd_of(est) < std::sqrt(mean_of(se2)) * (1 + 5 / std::sqrt(2.0 * (replicates - 1))));
}

TEMPLATE_LIST_TEST_CASE("MMD null_sd is calibrated: E[mmd2^2] = E[null_sd^2] under H0", "[metrics][mmd]",
                        scorekit_test::Backends) {
  using Exec = TestType;
  // Under H0 the labels are exchangeable, so Var(mmd2) = E[Var_perm] + Var(E_perm) = E[null_sd^2] + 0
  // exactly (the median bandwidth is a function of the pooled set, hence permutation invariant). Over
  // R independent replicates, mean(mmd2^2 - null_sd^2) must be within 5 standard errors of 0.
  const int replicates = 120;
  std::vector<double> gap;
  for (int r = 0; r < replicates; ++r) {
    auto x = to_particles<double, Exec>(normal_matrix(60, 2, 1000 + std::uint64_t(r)));
    auto y = to_particles<double, Exec>(normal_matrix(40, 2, 5000 + std::uint64_t(r)));
    const auto m = scorekit::mmd_squared(Exec(), x, y);
    gap.push_back(m.mmd2 * m.mmd2 - m.null_sd * m.null_sd);
  }
  CHECK(std::abs(mean_of(gap)) < 5 * sd_of(gap) / std::sqrt(double(replicates)));
}

// ------------------------------------------------------------------------------------- energy distance

TEMPLATE_LIST_TEST_CASE("energy_distance equals a brute-force host computation", "[metrics][energy]",
                        scorekit_test::Backends) {
  using Exec = TestType;
  const Eigen::MatrixXd a = normal_matrix(35, 3, 41), b = normal_matrix(45, 3, 42, 0.2);
  auto x = to_particles<double, Exec>(a);
  auto y = to_particles<double, Exec>(b);
  double xx = 0, yy = 0, xy = 0;
  for (int i = 0; i < 35; ++i)
    for (int j = 0; j < 35; ++j) xx += i == j ? 0 : (a.row(i) - a.row(j)).norm();
  for (int i = 0; i < 45; ++i)
    for (int j = 0; j < 45; ++j) yy += i == j ? 0 : (b.row(i) - b.row(j)).norm();
  for (int i = 0; i < 35; ++i)
    for (int j = 0; j < 45; ++j) xy += (a.row(i) - b.row(j)).norm();
  xx /= 35.0 * 34;
  yy /= 45.0 * 44;
  xy /= 35.0 * 45;
  const auto r = scorekit::energy_distance(Exec(), x, y);
  const double tol = order_tolerance(80 * 80, 2 * xy + xx + yy);
  CHECK(std::abs(r.within_x - xx) <= tol);
  CHECK(std::abs(r.within_y - yy) <= tol);
  CHECK(std::abs(r.cross - xy) <= tol);
  CHECK(std::abs(r.energy_distance - (2 * xy - xx - yy)) <= tol);
  // It is MMD^2_u with the kernel -|x - y|.
  const auto dist = pooled_kernel(a, b, [](double r2) { return -std::sqrt(r2); });
  std::vector<int> labels(80, 1);
  std::fill(labels.begin(), labels.begin() + 35, 0);
  CHECK(std::abs(r.energy_distance - two_sample_u(dist, labels)) <= tol);

  // float particles: bitwise the double result for the same float-rounded values (read into double first).
  auto xf = to_particles<float, Exec>(a);
  auto yf = to_particles<float, Exec>(b);
  CHECK(scorekit::energy_distance(Exec(), xf, yf).energy_distance ==
        scorekit::energy_distance(Exec(), to_particles<double, Exec>(to_eigen_host(xf)),
                                  to_particles<double, Exec>(to_eigen_host(yf)))
            .energy_distance);

  // Same law vs shifted law (500 + 400 draws, shift 0.5 in every coordinate).
  auto u = to_particles<double, Exec>(normal_matrix(500, 3, 43));
  auto v = to_particles<double, Exec>(normal_matrix(400, 3, 44));
  auto s = to_particles<double, Exec>(normal_matrix(400, 3, 45, 0.5));
  const auto same = scorekit::energy_distance(Exec(), u, v);
  const auto shifted = scorekit::energy_distance(Exec(), u, s);
  CHECK(same.energy_distance < 5 * same.null_sd);  // Cantelli: level 1/26 under H0, fixed seed
  CHECK(shifted.energy_distance > 10 * shifted.null_sd);
  CHECK(shifted.energy_distance > 0);

  CHECK_THROWS_AS(scorekit::energy_distance(Exec(), x, to_particles<double, Exec>(normal_matrix(5, 2, 1))),
                  scorekit::dimension_mismatch);
}

// ----------------------------------------------------------------------------------------- mode weights

TEMPLATE_LIST_TEST_CASE("mode_weights counts the nearest mode", "[metrics][modes]", scorekit_test::Backends) {
  using Exec = TestType;
  Eigen::MatrixXd modes(3, 2);
  modes << 0, 0, 10, 0, 0, 10;
  // 10, 20 and 30 points within 1 of modes 0, 1, 2; 5 points far from every mode; one tie.
  std::vector<Eigen::RowVector2d> rows;
  for (int k = 0; k < 3; ++k)
    for (int i = 0; i < 10 * (k + 1); ++i)
      rows.push_back(modes.row(k) + Eigen::RowVector2d(0.5 * std::cos(i), 0.5 * std::sin(i)));
  for (int i = 0; i < 5; ++i) rows.push_back(Eigen::RowVector2d(-50 - i, -50));
  rows.push_back(Eigen::RowVector2d(5, 0));  // equidistant from modes 0 and 1: goes to mode 0
  Eigen::MatrixXd a(rows.size(), 2);
  for (std::size_t i = 0; i < rows.size(); ++i) a.row(Eigen::Index(i)) = rows[i];
  auto x = to_particles<float, Exec>(a);

  const auto all = scorekit::mode_weights(Exec(), x, modes);
  CHECK(all.n_total == 66);
  CHECK(all.n_outside == 0);
  CHECK(all.counts == std::vector<std::int64_t>{16, 20, 30});  // the 5 far points are nearest to mode 0
  CHECK(all.weights[2] == Approx(30.0 / 66));

  const auto near = scorekit::mode_weights(Exec(), x, modes, 6.0);
  CHECK(near.counts == std::vector<std::int64_t>{11, 20, 30});
  CHECK(near.n_outside == 5);
  CHECK(near.weights[0] + near.weights[1] + near.weights[2] == Approx(1 - 5.0 / 66));

  CHECK_THROWS_AS(scorekit::mode_weights(Exec(), x, Eigen::MatrixXd::Zero(2, 3)),
                  scorekit::dimension_mismatch);
  CHECK(scorekit::binomial_standard_error(0.25, 300) == Approx(0.025));
}

TEMPLATE_LIST_TEST_CASE("mode_weights of exact mixture draws match the mixture weights", "[metrics][modes]",
                        scorekit_test::Backends) {
  using Exec = TestType;
  using Mix = scorekit::GaussianMixture<double, typename Exec::memory_space>;
  Eigen::MatrixXd means(3, 2);
  means << 0, 0, 20, 0, 0, 20;  // 20 sd apart: a draw lands nearest to another mode with prob < 1e-20
  const Eigen::Vector3d weights(0.2, 0.3, 0.5);
  auto x = draw_mixture<double, Exec>(Mix::isotropic(weights, means, Eigen::Vector3d::Ones()), 4000, 5);
  const auto w = scorekit::mode_weights(Exec(), x, means);
  for (int k = 0; k < 3; ++k) {
    // Binomial(4000, w_k) counts: 5 standard errors.
    CHECK(std::abs(w.weights[std::size_t(k)] - weights[k]) <
          5 * scorekit::binomial_standard_error(weights[k], 4000));
    CHECK(std::abs(scorekit::binomial_z(w.counts[std::size_t(k)], 4000, weights[k])) < 5);
  }
}

// ------------------------------------------------------------------------------------------------- KSD

namespace {
// Brute-force Stein kernel for an isotropic Gaussian N(mu, s2 I) (score -(x - mu)/s2 written out here,
// independently of the density code), with the kernel derivatives taken by central finite differences of
// k itself, independently of the closed forms in the header. Step 1e-4: truncation O(h^2 k'''') ~ 1e-8,
// rounding O(eps / h^2) ~ 1e-8.
double brute_force_ksd2(const Eigen::MatrixXd& x, const Eigen::VectorXd& mu, double s2,
                        const std::function<double(const Eigen::VectorXd&, const Eigen::VectorXd&)>& k,
                        double& abs_sum) {
  const Eigen::Index n = x.rows(), d = x.cols();
  const double h = 1e-4;
  double total = 0;
  abs_sum = 0;
  for (Eigen::Index i = 0; i < n; ++i)
    for (Eigen::Index j = 0; j < n; ++j) {
      if (i == j) continue;
      const Eigen::VectorXd a = x.row(i).transpose(), b = x.row(j).transpose();
      const Eigen::VectorXd sa = -(a - mu) / s2, sb = -(b - mu) / s2;
      double u = sa.dot(sb) * k(a, b);
      for (Eigen::Index c = 0; c < d; ++c) {
        Eigen::VectorXd e = Eigen::VectorXd::Zero(d);
        e[c] = h;
        const double dk_da = (k(a + e, b) - k(a - e, b)) / (2 * h);
        const double dk_db = (k(a, b + e) - k(a, b - e)) / (2 * h);
        const double d2k =
            (k(a + e, b + e) - k(a + e, b - e) - k(a - e, b + e) + k(a - e, b - e)) / (4 * h * h);
        u += sa[c] * dk_db + sb[c] * dk_da + d2k;
      }
      total += u;
      abs_sum += std::abs(u);
    }
  return total / (double(n) * double(n - 1));
}
}  // namespace

TEMPLATE_LIST_TEST_CASE("kernel_stein_discrepancy equals a brute-force host computation", "[metrics][ksd]",
                        scorekit_test::Backends) {
  using Exec = TestType;
  using Mix = scorekit::GaussianMixture<double, typename Exec::memory_space>;
  const Eigen::Vector2d mu(0.5, -1);
  const double s2 = 1.7;
  const Mix p = Mix::isotropic(Eigen::VectorXd::Ones(1), mu.transpose(), Eigen::VectorXd::Constant(1, s2));
  const Eigen::MatrixXd a = normal_matrix(30, 2, 51, 0.3, 1.5);
  auto x = to_particles<double, Exec>(a);

  struct Case {
    scorekit::SteinSettings settings;
    std::function<double(const Eigen::VectorXd&, const Eigen::VectorXd&)> k;
  };
  std::vector<Case> cases;
  cases.push_back({scorekit::SteinSettings{}, [](const Eigen::VectorXd& u, const Eigen::VectorXd& v) {
                     return 1 / std::sqrt(1 + (u - v).squaredNorm());
                   }});
  scorekit::SteinSettings imq2;
  imq2.c = 0.7;
  imq2.beta = -0.3;
  cases.push_back({imq2, [](const Eigen::VectorXd& u, const Eigen::VectorXd& v) {
                     return std::pow(0.49 + (u - v).squaredNorm(), -0.3);
                   }});
  scorekit::SteinSettings rbf;
  rbf.kernel = scorekit::SteinKernel::rbf;
  rbf.bandwidth = 0.8;
  cases.push_back({rbf, [](const Eigen::VectorXd& u, const Eigen::VectorXd& v) {
                     return std::exp(-(u - v).squaredNorm() / (2 * 0.64));
                   }});
  for (const auto& c : cases) {
    double abs_sum = 0;
    const double ref = brute_force_ksd2(a, mu, s2, c.k, abs_sum);
    const auto r = scorekit::kernel_stein_discrepancy(Exec(), x, p, c.settings);
    // Finite-difference error ~1e-8 per term (see brute_force_ksd2), relative to the absolute sum.
    CHECK(std::abs(r.ksd2 - ref) <= 1e-6 * abs_sum / (30.0 * 29));
  }

  // Bad input.
  scorekit::SteinSettings bad_beta;
  bad_beta.beta = -1;
  CHECK_THROWS_AS(scorekit::kernel_stein_discrepancy(Exec(), x, p, bad_beta), scorekit::invalid_argument);
  auto x3 = to_particles<double, Exec>(normal_matrix(10, 3, 1));
  CHECK_THROWS_AS(scorekit::kernel_stein_discrepancy(Exec(), x3, p), scorekit::dimension_mismatch);
  Eigen::MatrixXd with_nan = a;
  with_nan(3, 1) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(scorekit::kernel_stein_discrepancy(Exec(), to_particles<double, Exec>(with_nan), p),
                    Catch::Contains("particle 3"));
}

TEMPLATE_LIST_TEST_CASE("kernel_stein_discrepancy is near 0 for exact draws and large for shifted ones",
                        "[metrics][ksd]", scorekit_test::Backends) {
  using Exec = TestType;
  using Mix = scorekit::GaussianMixture<double, typename Exec::memory_space>;
  Eigen::MatrixXd means(2, 2);
  means << -1.5, 0, 1.5, 0.5;
  const Mix p = Mix::isotropic(Eigen::Vector2d(0.4, 0.6), means, Eigen::Vector2d(0.6, 0.8));
  auto exact = draw_mixture<double, Exec>(p, 600, 61);
  const auto r = scorekit::kernel_stein_discrepancy(Exec(), exact, p);
  // Chebyshev on the degenerate U-statistic: P(|ksd2| >= 5 null_sd) <= 1/25; the seed is fixed.
  CHECK(std::abs(r.ksd2) < 5 * r.null_sd);

  // Both components moved by one unit: detected beyond the H0 noise level (5 null_sd of exact draws) with
  // a margin of 5 standard errors of the estimate.
  Eigen::MatrixXd moved = means;
  moved.col(0).array() += 1.0;
  auto shifted = draw_mixture<double, Exec>(
      Mix::isotropic(Eigen::Vector2d(0.4, 0.6), moved, Eigen::Vector2d(0.6, 0.8)), 600, 62);
  const auto s = scorekit::kernel_stein_discrepancy(Exec(), shifted, p);
  INFO("shifted " << s.ksd2 << " se " << s.standard_error << "; exact " << r.ksd2 << " null sd "
                  << r.null_sd);
  CHECK(s.ksd2 > 5 * r.null_sd + 5 * s.standard_error);

  // float particles with a float density: the same statistic up to float round-off in the scores and
  // positions (relative 1e-6 per term; 1e-4 of the absolute scale leaves a wide margin).
  using MixF = scorekit::GaussianMixture<float, typename Exec::memory_space>;
  const MixF pf = MixF::isotropic(Eigen::Vector2d(0.4, 0.6), means, Eigen::Vector2d(0.6, 0.8));
  auto shifted_f = to_particles<float, Exec>(to_eigen_host(shifted));
  const auto sf = scorekit::kernel_stein_discrepancy(Exec(), shifted_f, pf);
  CHECK(std::abs(sf.ksd2 - s.ksd2) < 1e-4 * std::abs(s.ksd2));
}

TEMPLATE_LIST_TEST_CASE("KSD null_sd is calibrated: E[ksd2^2] = E[null_sd^2] for exact draws",
                        "[metrics][ksd]", scorekit_test::Backends) {
  using Exec = TestType;
  // For draws from p the Stein kernel is degenerate, Var(ksd2) = 2 E[u^2] / (N(N-1)) and E[ksd2] = 0, so
  // E[ksd2^2] = E[null_sd^2] exactly (null_sd^2 is unbiased for it). 5 standard errors over R replicates.
  using Mix = scorekit::GaussianMixture<double, typename Exec::memory_space>;
  const Mix p =
      Mix::isotropic(Eigen::VectorXd::Ones(1), Eigen::RowVector2d(1, -1), Eigen::VectorXd::Constant(1, 2.0));
  const int replicates = 150;
  std::vector<double> gap;
  for (int r = 0; r < replicates; ++r) {
    auto x = draw_mixture<double, Exec>(p, 80, 7000 + std::uint64_t(r));
    const auto k = scorekit::kernel_stein_discrepancy(Exec(), x, p);
    gap.push_back(k.ksd2 * k.ksd2 - k.null_sd * k.null_sd);
  }
  CHECK(std::abs(mean_of(gap)) < 5 * sd_of(gap) / std::sqrt(double(replicates)));
}

// ------------------------------------------------------------------------------------------------- ESS

TEMPLATE_LIST_TEST_CASE("effective_sample_size of AR(1) chains matches (1 - phi)/(1 + phi)", "[metrics][ess]",
                        scorekit_test::Backends) {
  using Exec = TestType;
  // x_t = phi x_{t-1} + sqrt(1 - phi^2) e_t from the stationary law: rho_t = phi^t, so
  // tau = (1 + phi)/(1 - phi). Coordinates: phi = 0.5 (tau 3), -0.3 (antithetic, tau 0.54), 0 (iid).
  const int n = 2000, chains = 32;
  const double phi[3] = {0.5, -0.3, 0.0};
  scorekit::TrajectoryView<double, typename Exec::memory_space> t("chains", n, chains, 3);
  auto h = Kokkos::create_mirror_view(t);
  for (int m = 0; m < chains; ++m) {
    CounterRng<double> rng(99, std::uint64_t(m), 0, RngStream::init);
    for (int j = 0; j < 3; ++j) {
      h(0, m, j) = rng.normal();
      for (int i = 1; i < n; ++i)
        h(i, m, j) = phi[j] * h(i - 1, m, j) + std::sqrt(1 - phi[j] * phi[j]) * rng.normal();
    }
  }
  Kokkos::deep_copy(t, h);
  const std::vector<double> multi = scorekit::effective_sample_size_per_coordinate(Exec(), t);
  REQUIRE(multi.size() == 3);
  for (int j = 0; j < 3; ++j) {
    const double truth = (1 - phi[j]) / (1 + phi[j]);
    // Independent single-chain estimates give the estimator's own spread.
    std::vector<double> single;
    for (int m = 0; m < chains; ++m) {
      std::vector<double> c(n);
      for (int i = 0; i < n; ++i) c[std::size_t(i)] = h(i, m, j);
      single.push_back(scorekit::effective_sample_size(c) / n);
    }
    const double se = sd_of(single) / std::sqrt(double(chains));
    INFO("phi " << phi[j] << ": single-chain mean " << mean_of(single) << " sd " << sd_of(single)
                << ", multi " << multi[std::size_t(j)] / (n * chains) << ", truth " << truth);
    // The mean of 32 independent estimates: 5 standard errors (the estimator's O(tau/n) bias, ~0.3% of
    // the truth here, is far inside).
    CHECK(std::abs(mean_of(single) - truth) < 5 * se);
    // Pooling 32 chains averages their autocorrelations: its spread is that of the mean above.
    CHECK(std::abs(multi[std::size_t(j)] / (n * chains) - truth) < 5 * se);
  }

  // float chains are read into double before any arithmetic: bitwise the result for the rounded values.
  scorekit::TrajectoryView<float, typename Exec::memory_space> tf("chains_f", n, chains, 3);
  auto hf = Kokkos::create_mirror_view(tf);
  for (int i = 0; i < n; ++i)
    for (int m = 0; m < chains; ++m)
      for (int j = 0; j < 3; ++j) {
        hf(i, m, j) = float(h(i, m, j));
        h(i, m, j) = double(hf(i, m, j));
      }
  Kokkos::deep_copy(tf, hf);
  Kokkos::deep_copy(t, h);
  CHECK(scorekit::effective_sample_size_per_coordinate(Exec(), tf) ==
        scorekit::effective_sample_size_per_coordinate(Exec(), t));

  // A single chain through a rank-1 view and through std::vector: the same number, bitwise.
  Kokkos::View<double*, typename Exec::memory_space> one("one", n);
  auto one_h = Kokkos::create_mirror_view(one);
  std::vector<double> one_v(n);
  for (int i = 0; i < n; ++i) one_v[std::size_t(i)] = one_h(i) = h(i, 3, 0);
  Kokkos::deep_copy(one, one_h);
  CHECK(scorekit::effective_sample_size(Exec(), one) == scorekit::effective_sample_size(one_v));

  // Chains stuck at different levels: the between-chain variance must collapse the ESS.
  for (int m = 0; m < chains; ++m)
    for (int i = 0; i < n; ++i) h(i, m, 2) += 0.5 * m;
  Kokkos::deep_copy(t, h);
  CHECK(scorekit::effective_sample_size_per_coordinate(Exec(), t)[2] < 0.01 * multi[2]);

  // Bad input.
  CHECK_THROWS_AS(scorekit::effective_sample_size(std::vector<double>{1, 2, 3}), scorekit::invalid_argument);
  CHECK_THROWS_WITH(scorekit::effective_sample_size(std::vector<double>(10, 1.0)),
                    Catch::Contains("constant"));
  one_v[5] = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(scorekit::effective_sample_size(one_v), Catch::Contains("NaN"));
}

// ---------------------------------------------------------------------------------- statistical tests

TEST_CASE("Kolmogorov distribution: asymptotic critical values and exact small-n values", "[metrics][ks]") {
  // Quantiles of the limiting Kolmogorov law (Smirnov 1948 tables; recomputed to 30 digits with mpmath):
  // Q(lambda) = 0.10, 0.05, 0.01. dQ/dlambda ~ 0.4 there, so 1e-9 in lambda is 4e-10 in Q.
  CHECK(scorekit::kolmogorov_survival(1.22384787021708237) == Approx(0.10).epsilon(1e-8));
  CHECK(scorekit::kolmogorov_survival(1.35809863932255059) == Approx(0.05).epsilon(1e-8));
  CHECK(scorekit::kolmogorov_survival(1.62762361151895034) == Approx(0.01).epsilon(1e-8));
  // Both series agree across the switch at lambda = 1 (mpmath values of the series).
  CHECK(scorekit::kolmogorov_survival(0.8) == Approx(0.544142411574198077).epsilon(1e-13));
  CHECK(scorekit::kolmogorov_survival(1.0) == Approx(0.269999671677354521).epsilon(1e-13));
  CHECK(scorekit::kolmogorov_survival(0.3) == Approx(0.999990694198665433).epsilon(1e-13));
  CHECK(scorekit::kolmogorov_survival(0.0) == 1);

  // n = 1: D_1 = max(U, 1 - U), so P(D_1 < d) = 2d - 1 on [1/2, 1].
  for (double d : {0.5, 0.55, 0.7, 0.93})
    CHECK(scorekit::kolmogorov_smirnov_cdf_exact(d, 1) == Approx(2 * d - 1).margin(1e-14));
  // Marsaglia, Tsang and Wang (2003), section 2: K(10, 0.274) = 0.6284796154565043.
  CHECK(scorekit::kolmogorov_smirnov_cdf_exact(0.274, 10) == Approx(0.6284796154565043).epsilon(1e-12));
  // Support: D_n >= 1/(2n).
  CHECK(scorekit::kolmogorov_smirnov_cdf_exact(0.049, 10) == 0);
  CHECK(scorekit::kolmogorov_smirnov_p_value(0.049, 10) == 1);
  CHECK(scorekit::kolmogorov_smirnov_p_value(1.0, 10) == 0);

  // Stephens' approximation against the exact law, the accuracy the header documents: absolute error
  // <= 0.015 sqrt(100/n) (checked in the body, lambda <= 2, at n = 200 and 1000); at n >= 500 relative
  // error <= 2% for 1e-3 <= p < 0.2 and <= 5% below (checked at n = 500 down to lambda = 3, p = 3e-8).
  for (int n : {200, 500, 1000}) {
    const double rn = std::sqrt(double(n));
    for (double lambda = 0.4; lambda < 3.05; lambda += 0.15) {
      if (n != 500 && lambda > 2) break;
      const double d = lambda / rn;
      const double exact = 1 - scorekit::kolmogorov_smirnov_cdf_exact(d, n);
      const double stephens = scorekit::kolmogorov_survival((rn + 0.12 + 0.11 / rn) * d);
      INFO("n " << n << ", d " << d << ": exact " << exact << ", Stephens " << stephens);
      CHECK(std::abs(exact - stephens) <= 0.015 * std::sqrt(100.0 / n));
      if (n >= 500 && exact < 0.2) CHECK(std::abs(exact - stephens) <= (exact >= 1e-3 ? 0.02 : 0.05) * exact);
      if (std::ceil(n * d) <= 64 && exact >= 1e-8)
        CHECK(scorekit::kolmogorov_smirnov_p_value(d, n) == Approx(exact).epsilon(1e-12));
    }
  }
  // Beyond ceil(n d) = 64 the p-value is Stephens'.
  CHECK(scorekit::kolmogorov_smirnov_p_value(0.1, 1000) ==
        scorekit::kolmogorov_survival((std::sqrt(1000.0) + 0.12 + 0.11 / std::sqrt(1000.0)) * 0.1));
  CHECK_THROWS_AS(scorekit::kolmogorov_smirnov_p_value(0.1, 0), scorekit::invalid_argument);
}

TEST_CASE("Kolmogorov-Smirnov exact law agrees with simulation at n = 5", "[metrics][ks]") {
  // 200000 samples of D_5 from uniforms; P(D_5 >= d) within 5 binomial standard errors.
  const int replicates = 200000, n = 5;
  const double thresholds[3] = {0.3, 0.45, 0.6};
  int exceed[3] = {0, 0, 0};
  for (int r = 0; r < replicates; ++r) {
    CounterRng<double> rng(123, std::uint64_t(r), 0, RngStream::init);
    double u[n];
    for (double& v : u) v = rng.uniform();
    std::sort(u, u + n);
    double d = 0;
    for (int i = 0; i < n; ++i) d = std::max({d, double(i + 1) / n - u[i], u[i] - double(i) / n});
    for (int k = 0; k < 3; ++k) exceed[k] += d >= thresholds[k] ? 1 : 0;
  }
  for (int k = 0; k < 3; ++k) {
    const double p = scorekit::kolmogorov_smirnov_p_value(thresholds[k], n);
    const double freq = double(exceed[k]) / replicates;
    INFO("d " << thresholds[k] << ": exact p " << p << ", simulated " << freq);
    CHECK(std::abs(freq - p) < 5 * std::sqrt(p * (1 - p) / replicates));
  }
}

TEST_CASE("ks_test accepts the true law, rejects a shifted one, and its p-values are uniform",
          "[metrics][ks]") {
  const auto uniform_cdf = [](double x) { return std::min(1.0, std::max(0.0, x)); };
  std::vector<double> u(1000);
  for (std::size_t i = 0; i < u.size(); ++i) u[i] = CounterRng<double>(5, i, 0, RngStream::init).uniform();
  const auto accept = scorekit::ks_test(u, uniform_cdf);
  CHECK(accept.n == 1000);
  CHECK(accept.p_value > 0.01);  // uniform under H0: fails for 1% of seeds, and the seed is fixed

  const Eigen::MatrixXd z = normal_matrix(1000, 1, 6);
  std::vector<double> normals(z.data(), z.data() + z.size());
  CHECK(scorekit::ks_test_normal(normals, 0, 1).p_value > 0.01);
  // Wrong laws at n = 1000. p < 1e-6 needs sqrt(n) D > 2.69, and sqrt(n) D has sd <= 0.5 about its
  // mean: a 0.5 shift gives sqrt(n) D ~ 6.2 and a doubled sd ~ 5.0, both 5 sd or more beyond.
  CHECK(scorekit::ks_test_normal(normals, 0.5, 1).p_value < 1e-6);
  CHECK(scorekit::ks_test_normal(normals, 0, 2.0).p_value < 1e-6);

  // Calibration: 400 tests of n = 40 uniforms (exact p-values) are Uniform(0,1): the fraction below 0.1
  // within 5 binomial standard errors of 0.1, and the mean within 5 standard errors (sd 1/sqrt(12)) of 1/2.
  const int tests = 400;
  std::vector<double> p;
  for (int t = 0; t < tests; ++t) {
    std::vector<double> s(40);
    for (std::size_t i = 0; i < s.size(); ++i)
      s[i] = CounterRng<double>(77, i, std::uint64_t(t), RngStream::init).uniform();
    p.push_back(scorekit::ks_test(s, uniform_cdf).p_value);
  }
  const double below = double(std::count_if(p.begin(), p.end(), [](double v) { return v < 0.1; })) / tests;
  CHECK(std::abs(below - 0.1) < 5 * std::sqrt(0.1 * 0.9 / tests));
  CHECK(std::abs(mean_of(p) - 0.5) < 5 / std::sqrt(12.0 * tests));

  CHECK_THROWS_AS(scorekit::ks_test({}, uniform_cdf), scorekit::invalid_argument);
  CHECK_THROWS_AS(scorekit::ks_test({0.5, std::nan("")}, uniform_cdf), scorekit::invalid_argument);
  CHECK_THROWS_AS(scorekit::ks_test({0.5}, [](double) { return 1.5; }), scorekit::invalid_argument);
  CHECK_THROWS_AS(scorekit::ks_test_normal({0.5}, 0, 0), scorekit::invalid_argument);
}

TEST_CASE("normal and chi-squared quantiles, binomial z", "[metrics][quantiles]") {
  CHECK(scorekit::normal_quantile(0.975) == Approx(1.959963984540054).epsilon(1e-14));
  CHECK(scorekit::normal_quantile(0.5, 3, 2) == Approx(3).epsilon(1e-15));
  CHECK(scorekit::normal_quantile(0.025, 1, 2) == Approx(1 - 2 * 1.959963984540054).epsilon(1e-14));
  // chi^2_2 is exponential with mean 2: quantile -2 log(1 - p).
  for (double p : {0.05, 0.5, 0.95, 0.999})
    CHECK(scorekit::chi_squared_quantile(p, 2) == Approx(-2 * std::log(1 - p)).epsilon(1e-13));
  // chi^2_1 is the square of a standard normal.
  for (double p : {0.1, 0.68, 0.95})
    CHECK(scorekit::chi_squared_quantile(p, 1) ==
          Approx(std::pow(scorekit::normal_quantile(0.5 + p / 2), 2)).epsilon(1e-12));
  CHECK(scorekit::chi_squared_quantile(0.95, 1) == Approx(3.841458820694124).epsilon(1e-13));
  CHECK(scorekit::binomial_z(60, 100, 0.5) == Approx(2.0));
  CHECK(scorekit::binomial_z(20, 100, 0.2) == 0);
  CHECK_THROWS_AS(scorekit::normal_quantile(1.0), scorekit::invalid_argument);
  CHECK_THROWS_AS(scorekit::chi_squared_quantile(0.5, 0), scorekit::invalid_argument);
  CHECK_THROWS_AS(scorekit::binomial_z(101, 100, 0.5), scorekit::invalid_argument);
  CHECK_THROWS_AS(scorekit::binomial_standard_error(1.5, 10), scorekit::invalid_argument);
}

// --------------------------------------------------------------------------------------- determinism

#if defined(KOKKOS_ENABLE_SERIAL) && defined(KOKKOS_ENABLE_OPENMP)
TEST_CASE("metrics are bitwise identical on Serial and OpenMP for any thread count", "[metrics][threads]") {
  // Every metric sums rows sequentially inside a thread and adds row or block partial sums on the host in
  // order, so no result depends on the backend or the thread count.
  using Mix = scorekit::GaussianMixture<double, Kokkos::HostSpace>;
  const Eigen::MatrixXd a = normal_matrix(700, 2, 81), b = normal_matrix(500, 2, 82, 0.1);
  const auto x = to_particles<double, Kokkos::Serial>(a);
  const auto y = to_particles<double, Kokkos::Serial>(b);
  const Mix p = Mix::isotropic(Eigen::VectorXd::Ones(1), Eigen::RowVector2d(0, 0), Eigen::VectorXd::Ones(1));
  scorekit::TrajectoryView<double, Kokkos::HostSpace> t("t", 300, 4, 2);
  for (int i = 0; i < 300; ++i)
    for (int m = 0; m < 4; ++m)
      for (int j = 0; j < 2; ++j) t(i, m, j) = a(i + 300 * (m % 2), j) + (i > 0 ? 0.5 * t(i - 1, m, j) : 0);

  Kokkos::Serial serial;
  Kokkos::OpenMP openmp;
  CHECK(scorekit::sample_mean(serial, x) == scorekit::sample_mean(openmp, x));
  CHECK(scorekit::sample_covariance(serial, x) == scorekit::sample_covariance(openmp, x));
  const auto m1 = scorekit::mmd_squared(serial, x, y), m2 = scorekit::mmd_squared(openmp, x, y);
  CHECK(m1.mmd2 == m2.mmd2);
  CHECK(m1.null_sd == m2.null_sd);
  CHECK(m1.standard_error == m2.standard_error);
  CHECK(scorekit::mmd_permutation_test(serial, x, y, 50, 3).p_value ==
        scorekit::mmd_permutation_test(openmp, x, y, 50, 3).p_value);
  const auto e1 = scorekit::energy_distance(serial, x, y), e2 = scorekit::energy_distance(openmp, x, y);
  CHECK(e1.energy_distance == e2.energy_distance);
  CHECK(e1.null_sd == e2.null_sd);
  const auto k1 = scorekit::kernel_stein_discrepancy(serial, x, p),
             k2 = scorekit::kernel_stein_discrepancy(openmp, x, p);
  CHECK(k1.ksd2 == k2.ksd2);
  CHECK(k1.null_sd == k2.null_sd);
  CHECK(scorekit::effective_sample_size_per_coordinate(serial, t) ==
        scorekit::effective_sample_size_per_coordinate(openmp, t));
  Eigen::MatrixXd modes(2, 2);
  modes << 0, 0, 1, 1;
  CHECK(scorekit::mode_weights(serial, x, modes).counts == scorekit::mode_weights(openmp, x, modes).counts);
}
#endif
