// Noise schedules: NCSNv2's configuration rules (largest pairwise distance, ratio, step size), the linear
// and cosine beta schedules (continuous policies and discrete betas) and the Karras/EDM ladder.
// Reference values come from independent computations in the test (brute-force loops, the paper's
// formula written out, the variance recursion, quadrature with an a-priori error bound); every
// tolerance says where it comes from.
#include "backends.hpp"

#include <catch2/catch.hpp>

#include <scorekit/core/random.hpp>
#include <scorekit/core/views.hpp>
#include <scorekit/schedule/cosine.hpp>
#include <scorekit/schedule/geometric.hpp>
#include <scorekit/schedule/karras.hpp>
#include <scorekit/schedule/linear_beta.hpp>
#include <scorekit/schedule/ncsnv2.hpp>

#include <boost/math/distributions/normal.hpp>
#include <boost/math/tools/roots.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iomanip>
#include <limits>
#include <vector>

namespace {

using Catch::Matchers::Contains;
constexpr double u64 = std::numeric_limits<double>::epsilon();

// N x D data, standard normal times a per-column scale, in a view of the given layout and value type.
template <class Real, class Layout, class Exec>
Kokkos::View<Real**, Layout, typename Exec::memory_space> normal_data(std::int64_t n, int d,
                                                                      std::uint64_t seed) {
  Kokkos::View<Real**, Layout, typename Exec::memory_space> x("data", n, d);
  auto h = Kokkos::create_mirror_view(x);
  for (std::int64_t i = 0; i < n; ++i) {
    scorekit::CounterRng<double> rng(seed, std::uint64_t(i), 0, scorekit::RngStream::init);
    for (int j = 0; j < d; ++j) h(i, j) = Real((1 + j) * rng.normal());
  }
  Kokkos::deep_copy(x, h);
  return x;
}

// max_{i<j} ||x_i - x_j|| by the plain double loop.
template <class View>
double brute_force_largest_distance(const View& x) {
  auto h = scorekit::to_host(x);
  double best = 0;
  for (std::size_t i = 0; i < h.extent(0); ++i)
    for (std::size_t j = i + 1; j < h.extent(0); ++j) {
      double s = 0;
      for (std::size_t k = 0; k < h.extent(1); ++k) {
        const double diff = double(h(i, k)) - double(h(j, k));
        s += diff * diff;
      }
      best = std::max(best, s);
    }
  return std::sqrt(best);
}

// The overlap condition of technique 2 written as in the paper, with Boost's standard normal CDF.
double paper_overlap(double gamma, int D) {
  const boost::math::normal_distribution<double> normal;
  const double a = std::sqrt(2.0 * D);
  return boost::math::cdf(normal, a * (gamma - 1) + 3 * gamma) -
         boost::math::cdf(normal, a * (gamma - 1) - 3 * gamma);
}

// Proposition 3 written exactly as printed in the paper (no simplification).
double paper_variance_ratio(double eps, double gamma, double sigma_last, int T) {
  const double l2 = sigma_last * sigma_last;
  const double c = 1 - eps / l2;
  const double stationary = 2 * eps / (l2 - l2 * c * c);
  return std::pow(c, 2 * T) * (gamma * gamma - stationary) + stationary;
}

// Composite Simpson's rule with n (even) intervals on [a, b].
template <class F>
double simpson(F f, double a, double b, int n) {
  const double h = (b - a) / n;
  double sum = f(a) + f(b);
  for (int i = 1; i < n; ++i) sum += (i % 2 ? 4 : 2) * f(a + i * h);
  return sum * h / 3;
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// Technique 1
// ------------------------------------------------------------------------------------------------

TEMPLATE_LIST_TEST_CASE("largest_pairwise_distance equals a brute-force host loop", "[schedule][ncsnv2]",
                        scorekit_test::Backends) {
  using Exec = TestType;
  // The kernel sums the D squared differences in another order (SIMD lanes): the standard bound for
  // recursive summation of D positive terms gives a relative error <= D u on the squared distance, so
  // <= D u / 2 + u on the distance; the check allows D u.
  // Row counts straddle the tile size (32): 2, 31, 32, 33, 150 (a partial last tile).
  for (const std::int64_t n : {2, 31, 32, 33, 150}) {
    for (const int d : {1, 7}) {
      CAPTURE(n, d);
      const auto right = normal_data<double, Kokkos::LayoutRight, Exec>(n, d, 11);
      const double expected = brute_force_largest_distance(right);
      const double tol = d * u64 * expected;
      CHECK(std::fabs(scorekit::largest_pairwise_distance(Exec(), right) - expected) <= tol);
      const auto left = normal_data<double, Kokkos::LayoutLeft, Exec>(n, d, 11);
      CHECK(std::fabs(scorekit::largest_pairwise_distance(Exec(), left) - expected) <= tol);
      // float data is widened to double before subtracting, so the answer is that of the float values.
      const auto single = normal_data<float, Kokkos::LayoutRight, Exec>(n, d, 11);
      const double expected_single = brute_force_largest_distance(single);
      CHECK(std::fabs(scorekit::largest_pairwise_distance(Exec(), single) - expected_single) <=
            d * u64 * expected_single);
    }
  }
  // A planted far pair, in turn at every kind of place the tiling could miss: same tile, neighbouring
  // tiles across a tile edge, first against last (partial) tile, the last two rows.
  const std::int64_t planted[][2] = {{0, 1}, {31, 32}, {64, 65}, {33, 96}, {0, 99}, {98, 99}, {40, 40 + 3}};
  for (const auto& pair : planted) {
    CAPTURE(pair[0], pair[1]);
    auto x = normal_data<double, Kokkos::LayoutRight, Exec>(100, 3, 5);
    auto h = Kokkos::create_mirror_view(x);
    Kokkos::deep_copy(h, x);
    h(pair[0], 2) = -1000;
    h(pair[1], 2) = 1000;
    Kokkos::deep_copy(x, h);
    const double expected = brute_force_largest_distance(x);
    CHECK(expected > 1999);
    CHECK(std::fabs(scorekit::largest_pairwise_distance(Exec(), x) - expected) <= 3 * u64 * expected);
  }
}

TEMPLATE_LIST_TEST_CASE("largest_pairwise_distance refuses empty, single-row and non-finite data",
                        "[schedule][ncsnv2]", scorekit_test::Backends) {
  using Exec = TestType;
  using View = Kokkos::View<double**, Kokkos::LayoutRight, typename Exec::memory_space>;
  CHECK_THROWS_WITH(scorekit::largest_pairwise_distance(Exec(), View("e", 0, 3)),
                    Contains("largest_pairwise_distance: the data is empty"));
  CHECK_THROWS_WITH(scorekit::largest_pairwise_distance(Exec(), View("e", 4, 0)),
                    Contains("largest_pairwise_distance: the data is empty"));
  CHECK_THROWS_WITH(scorekit::largest_pairwise_distance(Exec(), View("one", 1, 3)),
                    Contains("needs at least two rows"));
  for (const double bad : {std::nan(""), std::numeric_limits<double>::infinity()}) {
    auto x = normal_data<double, Kokkos::LayoutRight, Exec>(10, 3, 1);
    auto h = Kokkos::create_mirror_view(x);
    Kokkos::deep_copy(h, x);
    h(3, 1) = bad;
    h(7, 0) = bad;
    Kokkos::deep_copy(x, h);
    CHECK_THROWS_AS(scorekit::largest_pairwise_distance(Exec(), x), scorekit::invalid_argument);
    CHECK_THROWS_WITH(scorekit::largest_pairwise_distance(Exec(), x),
                      Contains("row 3 of the data has a NaN or infinite entry"));
  }
}

// ------------------------------------------------------------------------------------------------
// Technique 2
// ------------------------------------------------------------------------------------------------

TEST_CASE("ncsnv2_ratio: CIFAR-10's 1.040, and every root solves the paper's equation",
          "[schedule][ncsnv2]") {
  const double gamma = scorekit::ncsnv2_ratio(3072);
  INFO("gamma(D = 3072, overlap 0.5) = " << std::setprecision(17) << gamma);
  CHECK(std::fabs(gamma - 1.040) <= 5e-4);
  CHECK(std::fabs(paper_overlap(gamma, 3072) - 0.5) <= 1e-10);
  // Near the root h falls with slope ~ (sqrt(2D) - 3) phi(0) ~ 30, so a root found to double precision leaves
  // a residual ~ 1e-14; 1e-10 has room for Boost's CDF and still fails for an error in gamma of 3e-12.
  for (const int D : {5, 6, 10, 100, 784, 3072, 12288, 196608}) {
    for (const double overlap : {0.01, 0.2, 0.5, 0.9, 0.99}) {
      CAPTURE(D, overlap);
      const double g = scorekit::ncsnv2_ratio(D, overlap);
      CHECK(g > 1);
      CHECK(std::fabs(paper_overlap(g, D) - overlap) <= 1e-10);
      // The root is on the falling side: a slightly larger ratio overlaps less.
      CHECK(paper_overlap(g * (1 + 1e-6), D) < overlap);
    }
  }
  // More dimensions, thinner shells, a ratio closer to 1.
  CHECK(scorekit::ncsnv2_ratio(784) > scorekit::ncsnv2_ratio(3072));
  CHECK(scorekit::ncsnv2_ratio(3072) > scorekit::ncsnv2_ratio(12288));
  // Overlaps above h(1) = Phi(3) - Phi(-3) but below the small peak just past gamma = 1: the root on the
  // falling side of the peak.
  const double h1 = paper_overlap(1.0, 3072);
  const double g_high = scorekit::ncsnv2_ratio(3072, h1 + 1e-6);
  CHECK(g_high > 1);
  CHECK(std::fabs(paper_overlap(g_high, 3072) - (h1 + 1e-6)) <= 1e-10);
}

TEST_CASE("ncsnv2_ratio: the condition needs Phi; literal erf gives a different ratio",
          "[schedule][ncsnv2]") {
  // One starting note writes the condition with erf in place of Phi. That is a different equation, not a
  // different notation: erf(x) = 2 Phi(sqrt(2) x) - 1, so erf(u) - erf(l) is twice the normal mass of
  // [sqrt(2) l, sqrt(2) u]. For D = 3072 it does have a root (erf(u) - erf(l) falls from 2 erf(3) = 2 at
  // gamma = 1 to 0), but at gamma = 1.0461, outside the 5e-4 tolerance around the paper's 1.040, and at
  // the Phi root its residual is ~0.5. (The note's claim that the erf version has no root is wrong too: it
  // has one, in the wrong place.) Writing Phi through erf correctly, (1 + erf(x / sqrt 2)) / 2, gives the Phi
  // root back.
  const int D = 3072;
  const double a = std::sqrt(2.0 * D);
  auto erf_literal = [&](double g) {
    return std::erf(a * (g - 1) + 3 * g) - std::erf(a * (g - 1) - 3 * g) - 0.5;
  };
  auto erf_scaled = [&](double g) {
    return 0.5 * (std::erf((a * (g - 1) + 3 * g) / std::sqrt(2.0)) -
                  std::erf((a * (g - 1) - 3 * g) / std::sqrt(2.0))) -
           0.5;
  };
  // Bracket [1, 1.2] for both: at 1 each is positive (2 erf(3) - 0.5 and Phi(3) - Phi(-3) - 0.5), at 1.2
  // the lower limit a * 0.2 - 3.6 = 12.1 makes both ~ -0.5.
  REQUIRE(erf_literal(1.0) > 0);
  REQUIRE(erf_literal(1.2) < 0);
  std::uintmax_t iterations = 200;
  const auto tol = boost::math::tools::eps_tolerance<double>(50);
  const auto literal = boost::math::tools::toms748_solve(erf_literal, 1.0, 1.2, tol, iterations);
  const double literal_root = 0.5 * (literal.first + literal.second);
  INFO("root of the erf-literal condition: " << std::setprecision(17) << literal_root);
  CHECK(std::fabs(literal_root - 1.0461) <= 1e-4);
  CHECK(std::fabs(literal_root - 1.040) > 5e-4);  // fails the paper's acceptance value
  const double gamma = scorekit::ncsnv2_ratio(D);
  CHECK(std::fabs(erf_literal(gamma)) > 0.4);  // the true ratio is no solution of the erf version
  iterations = 200;
  const auto scaled = boost::math::tools::toms748_solve(erf_scaled, 1.0, 1.2, tol, iterations);
  CHECK(std::fabs(0.5 * (scaled.first + scaled.second) - gamma) <= 1e-12);
}

TEST_CASE("ncsnv2_ratio refuses bad dimensions and overlaps with no root", "[schedule][ncsnv2]") {
  CHECK_THROWS_WITH(scorekit::ncsnv2_ratio(0),
                    Contains("ncsnv2_ratio: the data dimension D must be >= 1, got 0"));
  CHECK_THROWS_WITH(scorekit::ncsnv2_ratio(-3), Contains("D must be >= 1, got -3"));
  for (const double overlap : {0.0, 1.0, -0.5, 1.5, std::nan("")})
    CHECK_THROWS_WITH(scorekit::ncsnv2_ratio(3072, overlap),
                      Contains("the overlap must lie strictly between 0 and 1"));
  // D <= 4: the overlap only grows with the ratio.
  for (const int D : {1, 2, 4})
    CHECK_THROWS_WITH(scorekit::ncsnv2_ratio(D), Contains("no ratio gives overlap"));
  // An overlap above the largest one reachable (just above Phi(3) - Phi(-3) = 0.9973).
  CHECK_THROWS_WITH(scorekit::ncsnv2_ratio(3072, 0.999),
                    Contains("the largest overlap any ratio reaches is"));
  CHECK_THROWS_AS(scorekit::ncsnv2_ratio(3072, 0.999), scorekit::invalid_argument);
}

// ------------------------------------------------------------------------------------------------
// Technique 4
// ------------------------------------------------------------------------------------------------

TEST_CASE("ncsnv2_variance_ratio is Proposition 3 and the variance recursion it comes from",
          "[schedule][ncsnv2]") {
  const double sigma_last = 0.01, gamma = 1.0375591319992028;
  for (const int T : {1, 5, 100}) {
    for (const double x : {1e-3, 0.0618, 0.5, 0.99}) {
      const double eps = x * sigma_last * sigma_last;
      CAPTURE(T, x);
      const double f = scorekit::ncsnv2_variance_ratio(eps, gamma, sigma_last, T);
      // The printed formula forms 1 - (1 - x)^2 by subtraction, losing log10(1 / x) digits: for x >= 1e-3
      // the two agree to 1e-12.
      CHECK(std::fabs(f - paper_variance_ratio(eps, gamma, sigma_last, T)) <= 1e-12 * f);
      // The recursion s_t^2 = c^2 s_{t-1}^2 + 2 alpha (NCSNv2's x + alpha s + sqrt(2 alpha) z on N(0,
      // sigma_i^2)) from s_0^2 = sigma_{i-1}^2, at an arbitrary level sigma_i: T steps, each adding a
      // rounding of ~u, so a relative 1e-12 is generous.
      const double sigma_i = 0.37;
      const double alpha = eps * sigma_i * sigma_i / (sigma_last * sigma_last);
      double var = gamma * gamma * sigma_i * sigma_i;
      double c = 1 - alpha / (sigma_i * sigma_i);
      for (int t = 0; t < T; ++t) var = c * c * var + 2 * alpha;
      CHECK(std::fabs(var / (sigma_i * sigma_i) - f) <= 1e-12 * f);
      // NCSN's convention (x + alpha/2 s + sqrt(alpha) z, scorekit's annealed_langevin) with step 2 eps
      // is the same dynamics.
      const double alpha2 = 2 * alpha;
      var = gamma * gamma * sigma_i * sigma_i;
      c = 1 - alpha2 / (2 * sigma_i * sigma_i);
      for (int t = 0; t < T; ++t) var = c * c * var + alpha2;
      CHECK(std::fabs(var / (sigma_i * sigma_i) - f) <= 1e-12 * f);
    }
  }
  CHECK_THROWS_WITH(scorekit::ncsnv2_variance_ratio(0, gamma, sigma_last, 5),
                    Contains("ncsnv2_variance_ratio: eps must lie in (0, sigma_last^2)"));
  CHECK_THROWS_WITH(scorekit::ncsnv2_variance_ratio(1e-4, gamma, sigma_last, 5), Contains("eps must lie in"));
  CHECK_THROWS_WITH(scorekit::ncsnv2_variance_ratio(1e-6, gamma, sigma_last, 0),
                    Contains("T (steps per level)"));
  CHECK_THROWS_WITH(scorekit::ncsnv2_variance_ratio(1e-6, gamma, -1.0, 5),
                    Contains("sigma_last must be positive"));
}

TEST_CASE("ncsnv2_step_size: CIFAR-10's 6.2e-6 is the minimiser", "[schedule][ncsnv2]") {
  const auto sigmas = scorekit::geometric_schedule(50.0, 0.01, 232);
  const int T = 5;
  const double eps = scorekit::ncsnv2_step_size(sigmas, T);
  const double gamma = std::exp(std::log(50.0 / 0.01) / 231);
  const double f = scorekit::ncsnv2_variance_ratio(eps, gamma, 0.01, T);
  INFO("eps = " << std::setprecision(17) << eps << ", s_T^2 / sigma_i^2 there = " << f);
  CHECK(std::fabs(eps / 6.2e-6 - 1) <= 0.02);
  // A minimum, not just a small value: 1% either side is worse. (|f - 1| grows by ~1.7e-6 there, far above
  // the ~1e-15 rounding of f.)
  CHECK(std::fabs(scorekit::ncsnv2_variance_ratio(eps * 0.99, gamma, 0.01, T) - 1) > std::fabs(f - 1));
  CHECK(std::fabs(scorekit::ncsnv2_variance_ratio(eps * 1.01, gamma, 0.01, T) - 1) > std::fabs(f - 1));
  // f does not reach 1 (it is a weighted mean of gamma^2 and 2 / (2 - x), both > 1).
  CHECK(f > 1);
  CHECK(std::fabs(f - 1.0555) <= 1e-3);
  // Other T: still a minimum of |f - 1|.
  for (const int t : {1, 3, 20, 200}) {
    CAPTURE(t);
    const double e = scorekit::ncsnv2_step_size(sigmas, t);
    const double ft = scorekit::ncsnv2_variance_ratio(e, gamma, 0.01, t);
    CHECK(std::fabs(scorekit::ncsnv2_variance_ratio(e * 0.99, gamma, 0.01, t) - 1) > std::fabs(ft - 1));
    CHECK(std::fabs(scorekit::ncsnv2_variance_ratio(e * 1.01, gamma, 0.01, t) - 1) > std::fabs(ft - 1));
  }
}

TEST_CASE("ncsnv2_step_size refuses bad ladders and T", "[schedule][ncsnv2]") {
  using V = std::vector<double>;
  CHECK_THROWS_WITH(scorekit::ncsnv2_step_size(V{}, 5),
                    Contains("ncsnv2_step_size: the noise ladder is empty"));
  CHECK_THROWS_WITH(scorekit::ncsnv2_step_size(V{1.0}, 5), Contains("needs at least two levels"));
  CHECK_THROWS_WITH(scorekit::ncsnv2_step_size(V{4, 2, 1.5}, 5), Contains("is not geometric"));
  CHECK_THROWS_WITH(scorekit::ncsnv2_step_size(V{1, 2, 4}, 5), Contains("must be strictly decreasing"));
  CHECK_THROWS_WITH(scorekit::ncsnv2_step_size(V{4, 2, 2}, 5), Contains("must be strictly decreasing"));
  CHECK_THROWS_WITH(scorekit::ncsnv2_step_size(V{4, -2, 1}, 5), Contains("noise level 1 must be positive"));
  CHECK_THROWS_WITH(scorekit::ncsnv2_step_size(V{4, std::nan(""), 1}, 5),
                    Contains("noise level 1 must be positive"));
  // A ratio off by 1e-5 relative is refused; the geometric_schedule ladder passes.
  V almost = scorekit::geometric_schedule(10.0, 0.1, 10);
  almost[4] *= 1 + 1e-5;
  CHECK_THROWS_WITH(scorekit::ncsnv2_step_size(almost, 5), Contains("by more than a relative 1e-6"));
  CHECK_THROWS_WITH(scorekit::ncsnv2_step_size(scorekit::geometric_schedule(10.0, 0.1, 10), 0),
                    Contains("T (steps per level) must be >= 1, got 0"));
  CHECK_NOTHROW(scorekit::ncsnv2_step_size(scorekit::geometric_schedule(10.0, 0.1, 10), 1));
}

TEMPLATE_LIST_TEST_CASE("ncsnv2_configure combines techniques 1, 2 and 4", "[schedule][ncsnv2]",
                        scorekit_test::Backends) {
  using Exec = TestType;
  const int d = 64, T = 4;
  const auto data = normal_data<double, Kokkos::LayoutRight, Exec>(200, d, 3);
  const double sigma_last = 0.05;
  const auto c = scorekit::ncsnv2_configure(Exec(), data, sigma_last, T);
  const double sigma_first = scorekit::largest_pairwise_distance(Exec(), data);
  const double gamma = scorekit::ncsnv2_ratio(d);
  CHECK(c.sigma_first == sigma_first);
  CHECK(c.sigma_last == sigma_last);
  CHECK(c.steps_per_level == T);
  // L is the smallest count whose ladder at ratio gamma reaches sigma_last.
  CHECK(sigma_first * std::pow(gamma, -(c.n_levels - 1)) <= sigma_last);
  CHECK(sigma_first * std::pow(gamma, -(c.n_levels - 2)) > sigma_last);
  CHECK(c.ratio <= gamma);
  CHECK(c.sigmas == scorekit::geometric_schedule(sigma_first, sigma_last, c.n_levels));
  CHECK(std::fabs(c.ratio - c.sigmas[0] / c.sigmas[1]) <= 1e-12 * c.ratio);
  CHECK(c.step_size == scorekit::ncsnv2_step_size(c.sigmas, T));
  CHECK(c.annealed_langevin_step_size() == 2 * c.step_size);
  // A different overlap moves gamma and so L.
  const auto wide = scorekit::ncsnv2_configure(Exec(), data, sigma_last, T, 0.9);
  CHECK(wide.n_levels > c.n_levels);

  CHECK_THROWS_WITH(scorekit::ncsnv2_configure(Exec(), data, 2 * sigma_first, T),
                    Contains("must be smaller than the largest pairwise distance"));
  CHECK_THROWS_WITH(scorekit::ncsnv2_configure(Exec(), data, 0.0, T),
                    Contains("sigma_last must be positive"));
  CHECK_THROWS_WITH(scorekit::ncsnv2_configure(Exec(), data, sigma_last, 0),
                    Contains("steps_per_level must be >= 1, got 0"));
  CHECK_THROWS_WITH(scorekit::ncsnv2_configure(Exec(), data, sigma_last, T, 1.0),
                    Contains("the overlap must lie strictly between 0 and 1"));
}

// ------------------------------------------------------------------------------------------------
// Linear and cosine beta
// ------------------------------------------------------------------------------------------------

namespace {

// Every policy member on a grid of t inside one kernel, against the same members called on the host.
// Same operations on the same CPU, so the results agree to rounding; 4 ulp allows for the compiler
// inlining or contracting differently in the kernel.
template <class Exec, class Policy>
void check_policy_in_kernel(const Policy& policy) {
  using Real = typename Policy::value_type;
  const int n = 257;
  Kokkos::View<Real* [3], typename Exec::memory_space> out("out", n);
  Kokkos::parallel_for(
      "test_beta_policy", Kokkos::RangePolicy<Exec>(0, n), KOKKOS_LAMBDA(const int i) {
        const Real t = Real(i) / Real(n - 1);
        out(i, 0) = policy.beta(t);
        out(i, 1) = policy.integral(t);
        out(i, 2) = policy.alpha_bar(t);
      });
  auto h = scorekit::to_host(out);
  const Real ulp = std::numeric_limits<Real>::epsilon();
  for (int i = 0; i < n; ++i) {
    const Real t = Real(i) / Real(n - 1);
    CAPTURE(i);
    CHECK(std::fabs(h(i, 0) - policy.beta(t)) <= 4 * ulp * std::fabs(policy.beta(t)));
    CHECK(std::fabs(h(i, 1) - policy.integral(t)) <= 4 * ulp * std::fabs(policy.integral(t)));
    CHECK(std::fabs(h(i, 2) - policy.alpha_bar(t)) <= 4 * ulp * std::fabs(policy.alpha_bar(t)));
  }
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("LinearBeta and CosineBeta evaluate the same in a kernel as on the host",
                        "[schedule][beta]", scorekit_test::Backends) {
  using Exec = TestType;
  check_policy_in_kernel<Exec>(scorekit::LinearBeta<double>{});
  check_policy_in_kernel<Exec>(scorekit::LinearBeta<float>{});
  check_policy_in_kernel<Exec>(scorekit::make_linear_beta(0.0, 5.0));
  check_policy_in_kernel<Exec>(scorekit::CosineBeta<double>{});
  check_policy_in_kernel<Exec>(scorekit::CosineBeta<float>{});
  check_policy_in_kernel<Exec>(scorekit::make_cosine_beta(0.0, 50.0));
}

TEST_CASE("LinearBeta: integral is the integral of beta", "[schedule][beta]") {
  const scorekit::LinearBeta<double> vp{};
  CHECK(vp.beta(0) == 0.1);
  CHECK(vp.beta(1) == 20);
  CHECK(vp.integral(0) == 0);
  CHECK(vp.alpha_bar(0) == 1);
  // Simpson's rule is exact for polynomials of degree <= 3, so only rounding separates it from the
  // closed form: ~n u |I| for n terms, 1e-12 |I| with n = 1000.
  for (const double t : {0.1, 0.5, 0.9, 1.0}) {
    CAPTURE(t);
    const double quad = simpson([&](double s) { return vp.beta(s); }, 0, t, 1000);
    CHECK(std::fabs(vp.integral(t) - quad) <= 1e-12 * quad);
  }
  // score_sde's closed form: alpha_bar(1) = exp(-(0.1 + 19.9 / 2)). exp turns an absolute error of ~u |x|
  // in its argument x = 10.05 into a relative one of the same size: allow 16 u (> 10.05 u + u).
  CHECK(std::fabs(vp.alpha_bar(1) / std::exp(-10.05) - 1) <= 16 * u64);
  CHECK(scorekit::make_linear_beta(3.0, 3.0).beta(0.7) == 3.0);  // equal ends allowed

  CHECK_THROWS_WITH(scorekit::make_linear_beta(-0.1, 20.0),
                    Contains("make_linear_beta: beta_min must be finite and >= 0"));
  CHECK_THROWS_WITH(scorekit::make_linear_beta(std::nan(""), 20.0), Contains("beta_min must be finite"));
  CHECK_THROWS_WITH(scorekit::make_linear_beta(30.0, 20.0),
                    Contains("beta_min (30) must not exceed beta_max (20)"));
  CHECK_THROWS_WITH(scorekit::make_linear_beta(0.0, 0.0), Contains("beta_max must be positive and finite"));
  CHECK_THROWS_WITH(scorekit::make_linear_beta(0.1, std::numeric_limits<double>::infinity()),
                    Contains("beta_max must be positive and finite"));
  CHECK_THROWS_AS(scorekit::make_linear_beta(0.1f, std::nanf("")), scorekit::invalid_argument);
}

TEST_CASE("ddpm_betas and alpha_bars", "[schedule][beta]") {
  const auto betas = scorekit::ddpm_betas(1000);
  REQUIRE(betas.size() == 1000);
  CHECK(betas.front() == 1e-4);
  CHECK(betas.back() == 0.02);
  // Evenly spaced: each difference is (0.02 - 1e-4) / 999 up to the rounding of two values ~0.02.
  for (std::size_t i = 1; i < betas.size(); ++i)
    CHECK(std::fabs((betas[i] - betas[i - 1]) - (0.02 - 1e-4) / 999) <= 4 * u64 * 0.02);
  CHECK(scorekit::ddpm_betas(1, 0.01, 0.01) == std::vector<double>{0.01});
  CHECK(scorekit::ddpm_betas(2, 0.01, 0.03) == std::vector<double>{0.01, 0.03});

  const auto abar = scorekit::alpha_bars(betas);
  REQUIRE(abar.size() == betas.size());
  // Against the direct product for each n (same order of multiplications: equal), and against
  // exp(sum log(1 - beta)) (n terms of relative rounding ~u each: 1e-12 covers n = 1000).
  for (std::size_t n = 0; n < betas.size(); n += 37) {
    double product = 1, log_sum = 0;
    for (std::size_t k = 0; k <= n; ++k) {
      product *= 1 - betas[k];
      log_sum += std::log1p(-betas[k]);
    }
    CAPTURE(n);
    CHECK(abar[n] == product);
    CHECK(std::fabs(abar[n] / std::exp(log_sum) - 1) <= 1e-12);
  }
  // DDPM's alpha_bar_T ~ 4e-5 (Ho et al. 2020: the prior is nearly N(0, I)).
  CHECK(abar.back() > 3e-5);
  CHECK(abar.back() < 5e-5);

  CHECK_THROWS_WITH(scorekit::ddpm_betas(0),
                    Contains("ddpm_betas: the number of steps N must be >= 1, got 0"));
  CHECK_THROWS_WITH(scorekit::ddpm_betas(10, 0.0, 0.02), Contains("beta_1 must lie in (0, 1)"));
  CHECK_THROWS_WITH(scorekit::ddpm_betas(10, 1e-4, 1.0), Contains("beta_N must lie in (0, 1)"));
  CHECK_THROWS_WITH(scorekit::ddpm_betas(10, 1e-4, std::nan("")), Contains("beta_N must lie in (0, 1)"));
  CHECK_THROWS_WITH(scorekit::ddpm_betas(10, 0.03, 0.02),
                    Contains("beta_1 (0.029999999999999999) must not exceed"));
  CHECK_THROWS_WITH(scorekit::ddpm_betas(1, 0.01, 0.02), Contains("one step needs beta_1 == beta_N"));
  CHECK_THROWS_WITH(scorekit::alpha_bars({}), Contains("alpha_bars: the beta schedule is empty"));
  CHECK_THROWS_WITH(scorekit::alpha_bars({0.1, 1.0}), Contains("beta 1 must lie in [0, 1), got 1"));
  CHECK_THROWS_WITH(scorekit::alpha_bars({-0.1}), Contains("beta 0 must lie in [0, 1)"));
  CHECK_THROWS_WITH(scorekit::alpha_bars({0.1, std::nan("")}), Contains("beta 1 must lie in [0, 1)"));
}

TEST_CASE("CosineBeta: alpha_bar(0) = 1, integral of beta, the clip", "[schedule][beta]") {
  const scorekit::CosineBeta<double> cosine{};
  CHECK(cosine.integral(0) == 0);
  CHECK(cosine.alpha_bar(0) == 1);
  CHECK(scorekit::CosineBeta<float>{}.alpha_bar(0) == 1.0f);
  CHECK(scorekit::make_cosine_beta(0.0, 50.0).alpha_bar(0) == 1);

  // Unclipped region: integral = -log(f(t) / f(0)) in closed form.
  const double s = 0.008;
  auto f = [&](double t) {
    const double c = std::cos((t + s) / (1 + s) * scorekit::math::pi<double>() / 2);
    return c * c;
  };
  for (const double t : {0.1, 0.5, 0.9, 0.99})
    CHECK(std::fabs(cosine.alpha_bar(t) / (f(t) / f(0)) - 1) <= 1e-13);

  // Quadrature of beta against integral on [0, b], b below the clip. Composite Simpson's error is at most
  // (b / 180) h^4 max |beta''''| on [0, b]. With beta = k tan(theta), theta = c (t + s), k = pi / (1 + s),
  // c = pi / (2 (1 + s)): beta'''' = k c^4 T'''' where T'''' = 8 T (1 + T^2)(2 + 3 T^2), T = tan(theta),
  // increasing in theta, so the maximum is at b. Plus rounding, ~n u |I|.
  const double k = scorekit::math::pi<double>() / (1 + s), c = scorekit::math::pi<double>() / (2 * (1 + s));
  for (const double b : {0.25, 0.5, 0.9, 0.99}) {
    const int n = 20000;
    const double h = b / n, T = std::tan(c * (b + s));
    const double d4 = k * std::pow(c, 4) * 8 * T * (1 + T * T) * (2 + 3 * T * T);
    const double quad = simpson([&](double t) { return cosine.beta(t); }, 0, b, n);
    const double bound = b / 180 * std::pow(h, 4) * d4 + n * u64 * quad;
    CAPTURE(b, bound);
    CHECK(std::fabs(cosine.integral(b) - quad) <= bound);
  }

  // The clip: t_c where the unclipped beta reaches beta_max, beta = beta_max beyond, and integral grows
  // at exactly that rate there (continuous at t_c).
  const double tc = cosine.t_clip();
  INFO("t_c = " << std::setprecision(10) << tc << ", alpha_bar(t_c) = " << cosine.alpha_bar(tc)
                << ", alpha_bar(1) = " << cosine.alpha_bar(1));
  CHECK(std::fabs(k * std::tan(c * (tc + s)) - 1000) <= 1e-9 * 1000);
  CHECK(tc > 0.997);
  CHECK(tc < 0.999);
  CHECK(cosine.beta(tc) == 1000);
  CHECK(cosine.beta(1) == 1000);
  CHECK(cosine.beta(tc - 1e-4) < 1000);
  // Continuity at t_c: the two branches meet (left branch evaluated just below t_c, slope <= beta_max).
  const double below = tc * (1 - 4 * u64);
  CHECK(std::fabs(cosine.integral(tc) - cosine.integral(below)) <= 1000 * (tc - below) + 1e-12);
  const double above = std::min(1.0, tc + 1e-3);
  CHECK(std::fabs((cosine.integral(above) - cosine.integral(tc)) - 1000 * (above - tc)) <= 1e-12);
  CHECK(std::isfinite(cosine.integral(1)));
  CHECK(cosine.alpha_bar(1) > 1e-6);
  CHECK(cosine.alpha_bar(1) < 2e-6);

  CHECK_THROWS_WITH(scorekit::make_cosine_beta(-0.1, 1000.0),
                    Contains("make_cosine_beta: the offset s must be finite"));
  CHECK_THROWS_WITH(scorekit::make_cosine_beta(0.008, 0.0), Contains("beta_max must be positive and finite"));
  CHECK_THROWS_WITH(scorekit::make_cosine_beta(0.008, std::numeric_limits<double>::infinity()),
                    Contains("beta_max must be positive and finite"));
  CHECK_THROWS_WITH(scorekit::make_cosine_beta(0.008, 0.01), Contains("must exceed the schedule's beta(0)"));
}

TEST_CASE("cosine_betas: the paper's discrete schedule matches the continuous alpha_bar",
          "[schedule][beta]") {
  const int N = 1000;
  const auto betas = scorekit::cosine_betas(N);
  REQUIRE(betas.size() == std::size_t(N));
  CHECK(betas.back() == 0.999);  // alpha_bar(1) = 0: the last beta is 1 before the clip
  for (double b : betas) {
    CHECK(b > 0);
    CHECK(b <= 0.999);
  }
  // Before the clip, prod (1 - beta_k) telescopes to alpha_bar(n / N) (relative rounding ~n u).
  const auto abar = scorekit::alpha_bars(betas);
  const scorekit::CosineBeta<double> cosine{};
  for (int n = 1; n < N - 2; n += 41) {
    CAPTURE(n);
    CHECK(std::fabs(abar[std::size_t(n - 1)] / cosine.alpha_bar(double(n) / N) - 1) <= 1e-12);
  }
  // The clip only bites at the very end.
  CHECK(std::count(betas.begin(), betas.end(), 0.999) == 1);

  CHECK_THROWS_WITH(scorekit::cosine_betas(0),
                    Contains("cosine_betas: the number of steps N must be >= 1, got 0"));
  CHECK_THROWS_WITH(scorekit::cosine_betas(10, -0.1), Contains("the offset s must be finite and >= 0"));
  CHECK_THROWS_WITH(scorekit::cosine_betas(10, std::nan("")),
                    Contains("the offset s must be finite and >= 0"));
  for (const double m : {0.0, 1.0, 1.5, -0.2})
    CHECK_THROWS_WITH(scorekit::cosine_betas(10, 0.008, m), Contains("max_beta must lie in (0, 1)"));
}

// ------------------------------------------------------------------------------------------------
// Karras / EDM
// ------------------------------------------------------------------------------------------------

TEST_CASE("karras_sigmas: ends, monotone, rho = 1 linear, large rho nearly geometric", "[schedule][karras]") {
  const auto sigmas = scorekit::karras_sigmas(18, 0.002, 80.0);
  REQUIRE(sigmas.size() == 18);
  CHECK(sigmas.front() == 80.0);
  CHECK(sigmas.back() == 0.002);
  for (std::size_t i = 1; i < sigmas.size(); ++i) CHECK(sigmas[i] < sigmas[i - 1]);
  // Evenly spaced in sigma^{1/7}.
  for (std::size_t i = 1; i + 1 < sigmas.size(); ++i) {
    const double step = std::pow(sigmas[i], 1 / 7.0) - std::pow(sigmas[i - 1], 1 / 7.0);
    CHECK(std::fabs(step - (std::pow(0.002, 1 / 7.0) - std::pow(80.0, 1 / 7.0)) / 17) <= 1e-13);
  }
  // rho = 1: linear in sigma, up to the rounding of pow(x, 1) (exact) and the sum (~u sigma_max).
  const auto linear = scorekit::karras_sigmas(11, 1.0, 6.0, 1.0);
  for (int i = 0; i < 11; ++i) CHECK(std::fabs(linear[std::size_t(i)] - (6.0 - 0.5 * i)) <= 4 * u64 * 6);
  // rho -> infinity: (a + x (b - a))^rho with a = sigma_max^{1/rho} -> the geometric ladder, with a
  // relative gap O(log(ratio)^2 / rho): at rho = 1e4 and ratio 100, ~1e-4.
  const auto near_geometric = scorekit::karras_sigmas(6, 0.1, 10.0, 1e4);
  const auto geometric = scorekit::geometric_schedule(10.0, 0.1, 6);
  for (int i = 0; i < 6; ++i)
    CHECK(std::fabs(near_geometric[std::size_t(i)] / geometric[std::size_t(i)] - 1) <= 1e-3);
  CHECK(scorekit::karras_sigmas(1, 3.0, 3.0) == std::vector<double>{3.0});

  CHECK_THROWS_WITH(scorekit::karras_sigmas(0, 0.002, 80.0),
                    Contains("karras_sigmas: the number of levels N must be >= 1, got 0"));
  CHECK_THROWS_WITH(scorekit::karras_sigmas(10, 0.0, 80.0),
                    Contains("sigma_min must be positive and finite"));
  CHECK_THROWS_WITH(scorekit::karras_sigmas(10, std::nan(""), 80.0),
                    Contains("sigma_min must be positive and finite"));
  CHECK_THROWS_WITH(scorekit::karras_sigmas(10, 0.002, -1.0),
                    Contains("sigma_max must be positive and finite"));
  CHECK_THROWS_WITH(scorekit::karras_sigmas(10, 80.0, 0.002),
                    Contains("sigma_min (80) must be smaller than sigma_max"));
  CHECK_THROWS_WITH(scorekit::karras_sigmas(10, 5.0, 5.0), Contains("must be smaller than sigma_max"));
  CHECK_THROWS_WITH(scorekit::karras_sigmas(10, 0.002, 80.0, 0.0),
                    Contains("rho must be positive and finite"));
  CHECK_THROWS_WITH(scorekit::karras_sigmas(10, 0.002, 80.0, -7.0),
                    Contains("rho must be positive and finite"));
  CHECK_THROWS_WITH(scorekit::karras_sigmas(1, 0.002, 80.0),
                    Contains("one level needs sigma_min == sigma_max"));
}
