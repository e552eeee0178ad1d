// Score-matching objectives: each parameter gradient against finite differences of its loss; ESM and ISM
// differ by a constant in theta; SSM is unbiased for ISM; FD-SSM tends to SSM at order h^2; probes do
// not depend on how many go through the network at once.
#include "backends.hpp"

#include <scorekit/core/random.hpp>
#include <scorekit/density/gaussian_mixture.hpp>
#include <scorekit/nn/sequential.hpp>
#include <scorekit/objective/denoising.hpp>
#include <scorekit/objective/explicit.hpp>
#include <scorekit/objective/finite_difference.hpp>
#include <scorekit/objective/implicit.hpp>
#include <scorekit/testing/network_checks.hpp>

#include <Eigen/Dense>
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

namespace {

using namespace scorekit::nn;
namespace obj = scorekit::objective;

using PlainNet = Sequential<Dense<2, 12>, Softplus, Dense<12, 12>, Tanh, Dense<12, 2>>;
using CondNet =
    Sequential<ConditionalDense<2, 12, 3>, Softplus, ConditionalDense<12, 12, 3>, Softplus, Dense<12, 2>>;
using Host = Kokkos::HostSpace;

template <class Net>
std::vector<double> random_parameters(std::uint64_t seed, double scale = 1.0) {
  scorekit::CounterRng<double> rng(seed, 0, 0, scorekit::RngStream::user);
  std::vector<double> p(Net::n_params);
  for (auto& v : p) v = scale * (rng.uniform() - 0.5);
  for (const Segment& s : Net::segments())
    if (s.kind == ParameterKind::embedding)
      for (int i = 0; i < s.size; ++i) p[s.offset + i] = 0.5 + rng.uniform();
  return p;
}

std::vector<double> random_rows(int n, int d, std::uint64_t seed) {
  scorekit::CounterRng<double> rng(seed, 0, 0, scorekit::RngStream::user);
  std::vector<double> x(std::size_t(n) * d);
  for (auto& v : x) v = 1.5 * rng.normal();
  return x;
}

template <class Net, int B, class Objective>
double summed_loss(const Objective& o, const std::vector<double>& p, const double* x, int nb,
                   obj::SampleKey key) {
  std::vector<double> work(Objective::template workspace_size<Net, B>() + o.extra_workspace_size());
  std::vector<double> grad(Net::n_params, 0.0), stats(2 * o.n_levels(), 0.0);
  o.template accumulate<Net, B>(p.data(), nb, x, key, grad.data(), stats.data(), work.data());
  double sum = 0;
  for (int l = 0; l < o.n_levels(); ++l) sum += stats[2 * l];
  return sum;
}

}  // namespace

TEST_CASE("every objective's parameter gradient matches finite differences of its loss", "[objective]") {
  constexpr int B = 4;
  const auto x = random_rows(3, 2, 5);  // nb = 3 < B: the padding column must not contribute
  const obj::SampleKey key{17, 3, 40};
  const auto plain = random_parameters<PlainNet>(1);
  const auto cond = random_parameters<CondNet>(2);
  auto check = [&](const scorekit::testing::NetworkCheckResult& r) {
    INFO(r.worst);
    CHECK(r.passed);
    CHECK(r.n_checked > 0);
  };
  SECTION("ESM") {
    Eigen::MatrixXd means(2, 2);
    means << 0, 0, 2, 1;
    Eigen::VectorXd weights(2), variances(2);
    weights << 0.3, 0.7;
    variances << 1.0, 0.5;
    const auto target = scorekit::GaussianMixture<double, Host>::isotropic(weights, means, variances);
    check(scorekit::testing::check_objective<PlainNet, B>(
        obj::ExplicitScoreMatching<decltype(target)>(target), plain, x, 3, key));
  }
  SECTION("ISM, exact trace") {
    check(scorekit::testing::check_objective<PlainNet, B>(obj::implicit_score_matching(), plain, x, 3, key));
  }
  SECTION("SSM and SSM-VR, Gaussian and Rademacher probes, several passes") {
    check(scorekit::testing::check_objective<PlainNet, B>(obj::sliced_score_matching(3), plain, x, 3, key));
    check(scorekit::testing::check_objective<PlainNet, B>(obj::sliced_score_matching(3, true), plain, x, 3,
                                                          key));
    check(scorekit::testing::check_objective<PlainNet, B>(
        obj::sliced_score_matching<scorekit::RademacherProbe, 2>(3), plain, x, 3, key));
  }
  SECTION("DSM and the noise-conditional objective with each weighting and parametrisation") {
    check(scorekit::testing::check_objective<PlainNet, B>(
        obj::DenoisingScoreMatching<double, Host, obj::Unweighted>({0.5}), plain, x, 3, key));
    check(scorekit::testing::check_objective<CondNet, B>(
        obj::DenoisingScoreMatching<double, Host>({1.0, 0.3, 0.1}), cond, x, 3, key));
    check(scorekit::testing::check_objective<CondNet, B>(
        obj::DenoisingScoreMatching<double, Host, obj::InverseSigmaSquared>({1.0, 0.3, 0.1}), cond, x, 3,
        key));
    check(scorekit::testing::check_objective<PlainNet, B>(
        obj::DenoisingScoreMatching<double, Host, obj::SigmaSquared, obj::DividedBySigma>({1.0, 0.3, 0.1}),
        plain, x, 3, key));
  }
  SECTION("FD-SSM and FD-SSM-VR") {
    check(scorekit::testing::check_objective<PlainNet, B>(
        obj::FiniteDifferenceScoreMatching<scorekit::GaussianProbe, 2>(0.05), plain, x, 3, key));
    check(scorekit::testing::check_objective<PlainNet, B>(
        obj::FiniteDifferenceScoreMatching<>(0.05, obj::NormTerm::full), plain, x, 3, key));
  }
}

TEST_CASE("the padding of a partial block does not change the loss or the gradient", "[objective]") {
  const auto x = random_rows(3, 2, 8);
  const auto p = random_parameters<PlainNet>(4);
  const obj::SampleKey key{1, 0, 0};
  const auto o = obj::sliced_score_matching(2);
  // One block of four with three live rows, against three blocks of one.
  const double whole = summed_loss<PlainNet, 4>(o, p, x.data(), 3, key);
  double parts = 0;
  for (int b = 0; b < 3; ++b)
    parts += summed_loss<PlainNet, 1>(o, p, x.data() + 2 * b, 1, obj::SampleKey{1, 0, std::uint32_t(b)});
  CHECK(whole == Approx(parts).epsilon(1e-13));
}

TEST_CASE("the probes of SSM do not depend on how many pass through the network at once", "[objective]") {
  const auto x = random_rows(4, 2, 9);
  const auto p = random_parameters<PlainNet>(6);
  const obj::SampleKey key{3, 7, 0};
  const double one = summed_loss<PlainNet, 4>(obj::sliced_score_matching<scorekit::GaussianProbe, 1>(4), p,
                                              x.data(), 4, key);
  const double two = summed_loss<PlainNet, 4>(obj::sliced_score_matching<scorekit::GaussianProbe, 2>(4), p,
                                              x.data(), 4, key);
  const double three = summed_loss<PlainNet, 4>(obj::sliced_score_matching<scorekit::GaussianProbe, 3>(4), p,
                                                x.data(), 4, key);
  CHECK(two == Approx(one).epsilon(1e-13));
  CHECK(three == Approx(one).epsilon(1e-13));
}

TEST_CASE("ESM and ISM differ by a constant in theta on Gaussian data", "[objective]") {
  // Data N(mu, Sigma) with score -P (x - mu), P = Sigma^-1. Per sample, by integration by parts,
  //   E[ESM] - E[ISM] = 1/2 E||grad log p||^2 = 1/2 tr(P),
  // whatever theta. The per-sample differences are i.i.d., so their mean is within a few standard errors
  // of 1/2 tr(P) (4 SE: a false failure has probability 6e-5), for two very different parameter vectors.
  Eigen::VectorXd mu(2);
  mu << 0.5, -1.0;
  Eigen::MatrixXd sigma(2, 2);
  sigma << 1.0, 0.4, 0.4, 0.7;
  const auto target = scorekit::gaussian<double, Host>(mu, sigma);
  const double half_trace_precision = 0.5 * (sigma(0, 0) + sigma(1, 1)) / sigma.determinant();
  const obj::ExplicitScoreMatching<decltype(target)> esm(target);
  const auto ism = obj::implicit_score_matching();
  constexpr int n = 4000;
  // Cholesky factor of the 2 x 2 covariance, by hand.
  const double l00 = std::sqrt(sigma(0, 0)), l10 = sigma(1, 0) / l00,
               l11 = std::sqrt(sigma(1, 1) - l10 * l10);
  scorekit::CounterRng<double> rng(77, 0, 0, scorekit::RngStream::user);
  std::vector<double> x(2 * n);
  for (int i = 0; i < n; ++i) {
    const double z0 = rng.normal(), z1 = rng.normal();
    x[2 * i] = mu[0] + l00 * z0;
    x[2 * i + 1] = mu[1] + l10 * z0 + l11 * z1;
  }
  std::vector<double> means;
  for (std::uint64_t s : {11u, 12u}) {
    const auto p = random_parameters<PlainNet>(s, s == 11 ? 1.0 : 3.0);
    double sum = 0, sum2 = 0;
    for (int i = 0; i < n; ++i) {
      const obj::SampleKey key{1, 0, std::uint32_t(i)};
      const double d = summed_loss<PlainNet, 1>(esm, p, &x[2 * i], 1, key) -
                       summed_loss<PlainNet, 1>(ism, p, &x[2 * i], 1, key);
      sum += d;
      sum2 += d * d;
    }
    const double mean = sum / n, se = std::sqrt((sum2 / n - mean * mean) / (n - 1));
    INFO("parameters " << s << ": mean ESM - ISM " << mean << " +- " << se << ", expected "
                       << half_trace_precision);
    CHECK(std::fabs(mean - half_trace_precision) < 4 * se);
    means.push_back(mean);
  }
}

TEST_CASE("SSM is unbiased for ISM, and FD-SSM tends to SSM at order h^2", "[objective]") {
  const auto x = random_rows(1, 2, 21);
  const auto p = random_parameters<PlainNet>(8);
  const double ism =
      summed_loss<PlainNet, 1>(obj::implicit_score_matching(), p, x.data(), 1, obj::SampleKey{});
  // Mean of the one-probe SSM loss over independent probes: unbiased for ISM, within 4 SE.
  constexpr int reps = 20000;
  double sum = 0, sum2 = 0;
  for (int r = 0; r < reps; ++r) {
    const double l = summed_loss<PlainNet, 1>(obj::sliced_score_matching(1), p, x.data(), 1,
                                              obj::SampleKey{5, std::uint32_t(r), 0});
    sum += l;
    sum2 += l * l;
  }
  const double mean = sum / reps, se = std::sqrt((sum2 / reps - mean * mean) / (reps - 1));
  INFO("SSM mean " << mean << " +- " << se << ", ISM " << ism);
  CHECK(std::fabs(mean - ism) < 4 * se);

  // With the same probe, FD-SSM's loss minus SSM's is c h^2 + O(h^4): halving h divides it by 4. The
  // ratio's distance from 4 is O(h^2) relative; at h = 0.02 the bound 4 +- 0.1 leaves room for it.
  const obj::SampleKey key{9, 1, 0};
  const double ssm = summed_loss<PlainNet, 1>(obj::sliced_score_matching(1), p, x.data(), 1, key);
  const double e1 =
      summed_loss<PlainNet, 1>(obj::FiniteDifferenceScoreMatching<>(0.02), p, x.data(), 1, key) - ssm;
  const double e2 =
      summed_loss<PlainNet, 1>(obj::FiniteDifferenceScoreMatching<>(0.01), p, x.data(), 1, key) - ssm;
  INFO("FD-SSM errors " << e1 << " and " << e2);
  CHECK(std::fabs(e1) > 1e-9);  // a real O(h^2) term, not rounding
  CHECK(e1 / e2 == Approx(4).margin(0.1));
}

TEST_CASE("objectives refuse bad settings", "[objective]") {
  CHECK_THROWS_WITH((obj::DenoisingScoreMatching<double, Host>({})), Catch::Contains("empty"));
  CHECK_THROWS_WITH((obj::DenoisingScoreMatching<double, Host>({1.0, -0.1})), Catch::Contains("sigma[1]"));
  CHECK_THROWS_WITH((obj::DenoisingScoreMatching<double, Host>({1.0, std::nan("")})),
                    Catch::Contains("finite"));
  CHECK_THROWS_WITH(obj::FiniteDifferenceScoreMatching<>(0.0), Catch::Contains("step"));
  CHECK_THROWS_WITH(obj::sliced_score_matching(0), Catch::Contains("probes"));
}
