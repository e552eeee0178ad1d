// The Frechet distance between Gaussians (metrics/frechet.hpp) against closed forms that do not go
// through its eigendecompositions: commuting (diagonal) covariances, where the trace term is
// sum sqrt(a_i b_i); and 2 x 2 covariances that do not commute, where tr sqrt(M) of a 2 x 2 positive
// semi-definite M is sqrt(tr M + 2 sqrt(det M)) with tr M = tr(S_1 S_2), det M = det S_1 det S_2.
// Then its symmetry and its invariance under a rotation of both Gaussians, the Gaussian fit against
// direct sums, and the errors.
#include "support.hpp"

#include <scorekit/core/error.hpp>
#include <scorekit/metrics/frechet.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>

namespace {

Eigen::MatrixXd random_spd(int k, std::mt19937_64& gen) {
  std::normal_distribution<double> z;
  Eigen::MatrixXd a(k, 2 * k);
  for (int i = 0; i < k; ++i)
    for (int j = 0; j < 2 * k; ++j) a(i, j) = z(gen);
  return a * a.transpose() / (2 * k) + 0.05 * Eigen::MatrixXd::Identity(k, k);
}

}  // namespace

TEST_CASE("frechet_distance: commuting covariances", "[metrics][frechet]") {
  Eigen::VectorXd mu1(4), mu2(4), a(4), b(4);
  mu1 << 0.5, -1, 2, 0;
  mu2 << 0, 1, 2.5, -3;
  a << 1, 4, 0.25, 9;
  b << 2, 1, 0.5, 16;
  double expected = (mu1 - mu2).squaredNorm();
  for (int i = 0; i < 4; ++i) expected += std::pow(std::sqrt(a(i)) - std::sqrt(b(i)), 2);
  const double d =
      scorekit::frechet_distance(mu1, a.asDiagonal().toDenseMatrix(), mu2, b.asDiagonal().toDenseMatrix());
  CHECK(d == Approx(expected).epsilon(1e-12));
  // A Gaussian against itself: 0 (rounding may not leave a negative).
  CHECK(scorekit::frechet_distance(mu1, a.asDiagonal().toDenseMatrix(), mu1, a.asDiagonal().toDenseMatrix()) <
        1e-12);
}

TEST_CASE("frechet_distance: 2 x 2 covariances that do not commute", "[metrics][frechet]") {
  std::mt19937_64 gen(3);
  for (int trial = 0; trial < 20; ++trial) {
    const Eigen::MatrixXd s1 = random_spd(2, gen), s2 = random_spd(2, gen);
    REQUIRE((s1 * s2 - s2 * s1).norm() > 1e-3);  // the case the closed form of commuting ones misses
    Eigen::VectorXd mu1 = Eigen::VectorXd::Random(2), mu2 = Eigen::VectorXd::Random(2);
    const double tr_root = std::sqrt((s1 * s2).trace() + 2 * std::sqrt(s1.determinant() * s2.determinant()));
    const double expected = (mu1 - mu2).squaredNorm() + s1.trace() + s2.trace() - 2 * tr_root;
    const double d = scorekit::frechet_distance(mu1, s1, mu2, s2);
    CHECK(d == Approx(expected).epsilon(1e-10).margin(1e-12));
  }
}

TEST_CASE("frechet_distance: symmetric, and invariant under a rotation of both", "[metrics][frechet]") {
  std::mt19937_64 gen(5);
  const int k = 6;
  const Eigen::MatrixXd s1 = random_spd(k, gen), s2 = random_spd(k, gen);
  const Eigen::VectorXd mu1 = Eigen::VectorXd::Random(k), mu2 = Eigen::VectorXd::Random(k);
  const double d = scorekit::frechet_distance(mu1, s1, mu2, s2);
  CHECK(d > 0.1);
  CHECK(scorekit::frechet_distance(mu2, s2, mu1, s1) == Approx(d).epsilon(1e-10));
  const Eigen::HouseholderQR<Eigen::MatrixXd> qr(random_spd(k, gen));
  const Eigen::MatrixXd q = qr.householderQ();
  CHECK(scorekit::frechet_distance(q * mu1, q * s1 * q.transpose(), q * mu2, q * s2 * q.transpose()) ==
        Approx(d).epsilon(1e-10));
  // Shifting both means by the same vector changes nothing; shifting one by v adds |v|^2.
  const Eigen::VectorXd v = Eigen::VectorXd::Constant(k, 0.5);
  CHECK(scorekit::frechet_distance(mu1 + v, s1, mu2 + v, s2) == Approx(d).epsilon(1e-10));
  CHECK(scorekit::frechet_distance(mu1, s1, mu1 + v, s1) == Approx(v.squaredNorm()).epsilon(1e-9));
}

TEST_CASE("gaussian_fit: mean and unbiased covariance; bad features named", "[metrics][frechet]") {
  Kokkos::View<float**, Kokkos::LayoutRight, Kokkos::HostSpace> f("f", 5, 3);
  std::mt19937_64 gen(7);
  std::normal_distribution<float> z;
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 3; ++j) f(i, j) = z(gen) + float(j);
  const scorekit::GaussianFit fit = scorekit::gaussian_fit(f);
  CHECK(fit.n == 5);
  for (int j = 0; j < 3; ++j) {
    double m = 0;
    for (int i = 0; i < 5; ++i) m += f(i, j);
    m /= 5;
    CHECK(fit.mean(j) == Approx(m).epsilon(1e-12));
    for (int l = 0; l < 3; ++l) {
      double ml = 0, c = 0;
      for (int i = 0; i < 5; ++i) ml += f(i, l);
      ml /= 5;
      for (int i = 0; i < 5; ++i) c += (f(i, j) - m) * (f(i, l) - ml);
      CHECK(fit.covariance(j, l) == Approx(c / 4).epsilon(1e-10).margin(1e-14));
    }
  }
  f(3, 1) = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(scorekit::gaussian_fit(f), Catch::Contains("row 3") && Catch::Contains("column 1"));
  Kokkos::View<float**, Kokkos::LayoutRight, Kokkos::HostSpace> one("one", 1, 3);
  CHECK_THROWS_AS(scorekit::gaussian_fit(one), scorekit::invalid_argument);
  CHECK_THROWS_AS(scorekit::frechet_distance(Eigen::VectorXd::Zero(2), Eigen::MatrixXd::Identity(2, 2),
                                             Eigen::VectorXd::Zero(3), Eigen::MatrixXd::Identity(3, 3)),
                  scorekit::dimension_mismatch);
}
