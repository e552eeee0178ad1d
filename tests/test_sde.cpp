// The noising SDEs, the reverse SDE and probability-flow drifts, the time-score change of variables and
// the integration driver: each checked against the quantity it is defined by.
#include "backends.hpp"
#include "support.hpp"

#include <scorekit/density/draw.hpp>
#include <scorekit/integrate/euler_maruyama.hpp>
#include <scorekit/schedule/linear_beta.hpp>
#include <scorekit/score/perturbed_mixture.hpp>
#include <scorekit/sde/langevin.hpp>
#include <scorekit/sde/reverse.hpp>
#include <scorekit/sde/variance_exploding.hpp>
#include <scorekit/sde/variance_preserving.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

using scorekit::MarginalKernel;

namespace {

using HostMix = scorekit::GaussianMixture<double, Kokkos::HostSpace>;

// Two correlated, unequal components: nothing about the score is isotropic or symmetric.
template <class Mem = Kokkos::HostSpace>
scorekit::GaussianMixture<double, Mem> two_modes() {
  Eigen::VectorXd w(2);
  w << 0.3, 0.7;
  Eigen::MatrixXd mu(2, 2);
  mu << -2, 1, 3, -1;
  Eigen::MatrixXd cov0(2, 2), cov1(2, 2);
  cov0 << 1.0, 0.6, 0.6, 0.8;
  cov1 << 0.5, -0.2, -0.2, 1.5;
  return scorekit::GaussianMixture<double, Mem>::full(w, mu, {cov0, cov1});
}

// The kernel of a linear SDE dx = f x dt + g dW from a point obeys da/dt = f a and
// d(s^2)/dt = 2 f s^2 + g^2. Central differences with step h have error (h^2/6) |third derivative|;
// the test compares them at two steps, h and h/2, and requires the residual to shrink like h^2 (Richardson:
// the residual at h/2 is 1/4 of that at h up to O(h^4)), which a wrong f or g cannot do.
template <class SDE>
void check_kernel_obeys_sde(const SDE& sde, double t) {
  auto residual = [&](double h) {
    const MarginalKernel<double> lo = sde.marginal(t - h), hi = sde.marginal(t + h), mid = sde.marginal(t);
    const double f = sde.drift_coefficient(t), g = sde.diffusion(t);
    const double da = (hi.scale - lo.scale) / (2 * h) - f * mid.scale;
    const double dv = (hi.std * hi.std - lo.std * lo.std) / (2 * h) - (2 * f * mid.std * mid.std + g * g);
    return std::array<double, 2>{da, dv};
  };
  const double h = 1e-3;
  const auto r1 = residual(h), r2 = residual(h / 2);
  for (int k = 0; k < 2; ++k) {
    INFO("t = " << t << ", component " << k << ": residuals " << r1[std::size_t(k)] << " and "
                << r2[std::size_t(k)]);
    // Either both residuals are at rounding level (|r| below 1e-7 of the scale of g^2), or the halving cut
    // the residual by about 4 (between 3 and 5).
    const double scale = 1 + sde.diffusion(t) * sde.diffusion(t);
    const bool rounding =
        std::abs(r1[std::size_t(k)]) < 1e-7 * scale && std::abs(r2[std::size_t(k)]) < 1e-7 * scale;
    const double ratio = r1[std::size_t(k)] / r2[std::size_t(k)];
    REQUIRE((rounding || (ratio > 3 && ratio < 5)));
  }
}

}  // namespace

TEST_CASE("Every noising SDE's marginal kernel solves its own drift and diffusion", "[sde]") {
  const scorekit::VarianceExplodingSDE<double> ve(0.01, 50);
  const auto vp = scorekit::vp_sde(scorekit::LinearBeta<double>{0.1, 20});
  const auto sub = scorekit::sub_vp_sde(scorekit::LinearBeta<double>{0.1, 20});
  const scorekit::OrnsteinUhlenbeckSDE<double> ou(3, 0.7, 1.3);
  for (double t : {0.05, 0.3, 0.7, 0.95}) {
    check_kernel_obeys_sde(ve, t);
    check_kernel_obeys_sde(vp, t);
    check_kernel_obeys_sde(sub, t);
    check_kernel_obeys_sde(ou, t);
  }
  // Starting points: every kernel is the identity at t = 0.
  for (const auto& k : {ve.marginal(0), vp.marginal(0), sub.marginal(0), ou.marginal(0)}) {
    REQUIRE(k.scale == 1);
    REQUIRE(k.std == 0);
  }
  // The closed forms at T, from the papers' definitions.
  REQUIRE(ve.marginal(1).std == Approx(std::sqrt(50.0 * 50.0 - 0.01 * 0.01)).epsilon(1e-14));
  REQUIRE(ve.sigma(1) == Approx(50).epsilon(1e-14));
  const double B = 0.1 + 0.5 * (20 - 0.1);
  REQUIRE(vp.marginal(1).scale == Approx(std::exp(-B / 2)).epsilon(1e-14));
  REQUIRE(vp.marginal(1).std == Approx(std::sqrt(1 - std::exp(-B))).epsilon(1e-14));
  REQUIRE(sub.marginal(1).std == Approx(1 - std::exp(-B)).epsilon(1e-14));
  // VE's variance keeps its digits at small t (expm1): sigma_min^2 (r^{2t} - 1) ~ sigma_min^2 2 t log r.
  const double t = 1e-9;
  REQUIRE(ve.marginal(t).std * ve.marginal(t).std ==
          Approx(0.01 * 0.01 * 2 * t * std::log(5000.0)).epsilon(1e-8));
}

TEMPLATE_LIST_TEST_CASE("score_at_time is the exact score of the SDE's marginal", "[sde]",
                        scorekit_test::Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const HostMix host = two_modes();
  const auto mix = two_modes<Mem>();
  const scorekit::PerturbedMixtureScore<double, Mem> model(mix);
  const auto vp = scorekit::vp_sde(scorekit::LinearBeta<double>{0.1, 20});
  const scorekit::VarianceExplodingSDE<double> ve(0.01, 50);
  const int n = 64;
  scorekit::ParticleView<double, Mem> x("x", n, 2);
  scorekit_test::fill_host(
      x, [](std::size_t i, std::size_t j) { return -4.0 + 0.13 * double(i) + 0.7 * double(j); });
  const std::vector<double> times{1e-4, 0.01, 0.2, 0.5, 1.0};
  Kokkos::View<double** [2][2], Mem> got("got", times.size(), n);  // (time, particle, sde, j)
  const int ws = scorekit::time_score_workspace_size(model);
  Kokkos::View<double**, Mem> work("work", n, ws);
  Kokkos::View<double*, Mem> tv("t", times.size());
  auto tv_h = Kokkos::create_mirror_view(tv);
  for (std::size_t k = 0; k < times.size(); ++k) tv_h(k) = times[k];
  Kokkos::deep_copy(tv, tv_h);
  const int nt = int(times.size());
  Kokkos::parallel_for(
      Kokkos::RangePolicy<Exec>(0, n), KOKKOS_LAMBDA(const int i) {
        for (int k = 0; k < nt; ++k) {
          double out[2];
          scorekit::score_at_time(vp, model, 2, &x(i, 0), tv(k), out, &work(i, 0));
          got(k, i, 0, 0) = out[0];
          got(k, i, 0, 1) = out[1];
          scorekit::score_at_time(ve, model, 2, &x(i, 0), tv(k), out, &work(i, 0));
          got(k, i, 1, 0) = out[0];
          got(k, i, 1, 1) = out[1];
        }
      });
  auto got_h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), got);
  auto x_h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x);
  for (std::size_t k = 0; k < times.size(); ++k) {
    const MarginalKernel<double> kvp = vp.marginal(times[k]), kve = ve.marginal(times[k]);
    // The reference: the mixture perturbed by the kernel itself, a density whose score is evaluated directly.
    const HostMix pvp = host.perturbed(kvp.scale, kvp.std), pve = host.perturbed(1.0, kve.std);
    std::vector<double> w(std::size_t(pvp.workspace_size()));
    for (int i = 0; i < n; ++i) {
      double ref[2];
      pvp.score(&x_h(i, 0), ref, w.data());
      for (int j = 0; j < 2; ++j) REQUIRE(got_h(k, i, 0, j) == Approx(ref[j]).epsilon(1e-10).margin(1e-12));
      pve.score(&x_h(i, 0), ref, w.data());
      for (int j = 0; j < 2; ++j) REQUIRE(got_h(k, i, 1, j) == Approx(ref[j]).epsilon(1e-10).margin(1e-12));
    }
  }
}

TEST_CASE("The reverse SDE and the probability-flow ODE have the drifts of Song et al. (2021)", "[sde]") {
  const HostMix mix = two_modes();
  const scorekit::PerturbedMixtureScore<double, Kokkos::HostSpace> model(mix);
  const auto vp = scorekit::vp_sde(scorekit::LinearBeta<double>{0.1, 20});
  const auto rev = scorekit::reverse_sde(vp, model);
  const auto flow = scorekit::probability_flow(vp, model);
  REQUIRE(rev.dim() == 2);
  REQUIRE(rev.workspace_size() == model.workspace_size() + 2);
  std::vector<double> work(std::size_t(rev.workspace_size()));
  const double x[2] = {0.4, -1.1};
  for (double t : {0.01, 0.5, 1.0}) {
    double s[2], fr[2], ff[2];
    scorekit::score_at_time(vp, model, 2, x, t, s, work.data());
    rev.drift(x, t, fr, work.data());
    flow.drift(x, t, ff, work.data());
    const double f = vp.drift_coefficient(t), g = vp.diffusion(t);
    REQUIRE(f == Approx(-0.5 * (0.1 + t * 19.9)));
    REQUIRE(g == Approx(std::sqrt(0.1 + t * 19.9)));
    for (int j = 0; j < 2; ++j) {
      REQUIRE(fr[j] == Approx(f * x[j] - g * g * s[j]).epsilon(1e-14));
      REQUIRE(ff[j] == Approx(f * x[j] - 0.5 * g * g * s[j]).epsilon(1e-14));
    }
    REQUIRE(rev.diffusion(t) == g);
    REQUIRE(flow.diffusion(t) == 0);
  }
}

TEST_CASE("Bad SDE parameters are refused with the parameter named", "[sde][errors]") {
  using scorekit::invalid_argument;
  using VE = scorekit::VarianceExplodingSDE<double>;
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(VE(0, 50), Catch::Contains("sigma_min"));
  CHECK_THROWS_WITH(VE(-1, 50), Catch::Contains("sigma_min"));
  CHECK_THROWS_WITH(VE(nan, 50), Catch::Contains("sigma_min"));
  CHECK_THROWS_WITH(VE(0.01, inf), Catch::Contains("sigma_max"));
  CHECK_THROWS_WITH(VE(1, 1), Catch::Contains("must be larger than sigma_min"));
  CHECK_THROWS_WITH(VE(2, 1), Catch::Contains("must be larger than sigma_min"));
  CHECK_THROWS_WITH(scorekit::vp_sde(scorekit::LinearBeta<double>{-1, 20}), Catch::Contains("beta(t)"));
  CHECK_THROWS_WITH(scorekit::vp_sde(scorekit::LinearBeta<double>{0, 0}), Catch::Contains("adds no noise"));
  CHECK_THROWS_WITH(scorekit::sub_vp_sde(scorekit::LinearBeta<double>{0.1, nan}), Catch::Contains("beta"));
  CHECK_THROWS_WITH(scorekit::OrnsteinUhlenbeckSDE<double>(0, 1, 1), Catch::Contains("dimension"));
  CHECK_THROWS_WITH(scorekit::OrnsteinUhlenbeckSDE<double>(2, 0, 1), Catch::Contains("theta"));
  CHECK_THROWS_WITH(scorekit::OrnsteinUhlenbeckSDE<double>(2, 1, -1), Catch::Contains("sigma"));
  CHECK_THROWS_WITH(scorekit::OrnsteinUhlenbeckSDE<double>(2, inf, 1), Catch::Contains("theta"));
  // A VP schedule with beta_min = 0 is a valid SDE (no noise at t = 0 only).
  CHECK_NOTHROW(scorekit::vp_sde(scorekit::LinearBeta<double>{0, 20}));
}

TEMPLATE_LIST_TEST_CASE("integrate refuses bad grids and particles", "[integrate][errors]",
                        scorekit_test::Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const auto mix = scorekit::GaussianMixture<double, Mem>::isotropic(
      Eigen::VectorXd::Ones(1), Eigen::MatrixXd::Zero(1, 2), Eigen::VectorXd::Ones(1));
  const scorekit::PerturbedMixtureScore<double, Mem> model(mix);
  const scorekit::VarianceExplodingSDE<double> ve(0.01, 10);
  const auto rev = scorekit::reverse_sde(ve, model);
  scorekit::ParticleView<double, Mem> x("x", 4, 2);
  scorekit::IntegrateSettings s;
  const auto run = [&](std::vector<double> times) {
    s.times = std::move(times);
    return scorekit::integrate(Exec(), rev, scorekit::EulerMaruyama{}, x, s);
  };
  CHECK_THROWS_WITH(run({}), Catch::Contains("at least 2 times"));
  CHECK_THROWS_WITH(run({1.0}), Catch::Contains("at least 2 times"));
  CHECK_THROWS_WITH(run({1.5, 0.5}), Catch::Contains("outside [0, 1]"));
  CHECK_THROWS_WITH(run({1.0, -0.1}), Catch::Contains("outside [0, 1]"));
  CHECK_THROWS_WITH(run({1.0, 0.5, 0.5}), Catch::Contains("strictly monotone"));
  CHECK_THROWS_WITH(run({1.0, 0.5, 0.7}), Catch::Contains("strictly monotone"));
  CHECK_THROWS_WITH(run({1.0, std::numeric_limits<double>::quiet_NaN()}), Catch::Contains("outside"));
  CHECK_THROWS_WITH(scorekit::uniform_times(1, 0, 0), Catch::Contains("n_steps"));
  CHECK_THROWS_WITH(scorekit::uniform_times(1, 1, 10), Catch::Contains("different"));
  scorekit::ParticleView<double, Mem> wrong("wrong", 4, 3);
  s.times = scorekit::uniform_times(1, 0.01, 10);
  CHECK_THROWS_WITH(scorekit::integrate(Exec(), rev, scorekit::EulerMaruyama{}, wrong, s),
                    Catch::Contains("dimension"));
  // A particle that turns non-finite stops the run with an error naming it (NaN start here).
  scorekit_test::fill_host(
      x, [](std::size_t i, std::size_t) { return i == 2 ? std::numeric_limits<double>::quiet_NaN() : 0.0; });
  CHECK_THROWS_WITH(scorekit::integrate(Exec(), rev, scorekit::EulerMaruyama{}, x, s),
                    Catch::Contains("particle 2"));
}

TEMPLATE_LIST_TEST_CASE("A reverse-SDE run is bitwise the same for any thread count", "[integrate][threads]",
                        scorekit_test::Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  Eigen::VectorXd w(2);
  w << 0.2, 0.8;
  Eigen::MatrixXd mu(2, 2);
  mu << -5, -5, 5, 5;
  const auto mix = scorekit::GaussianMixture<double, Mem>::isotropic(w, mu, Eigen::VectorXd::Ones(2));
  const scorekit::PerturbedMixtureScore<double, Mem> model(mix);
  const scorekit::VarianceExplodingSDE<double> ve(0.01, 50);
  const std::int64_t n = 3000;
  scorekit::ParticleView<double, Mem> x("x", n, 2);
  scorekit::draw_exact(Exec(), mix.perturbed(1.0, ve.marginal(1.0).std), x, 5);
  scorekit::IntegrateSettings s;
  s.times = scorekit::uniform_times(1.0, 1e-3, 200);
  s.seed = 11;
  s.record_every = 50;
  const auto r =
      scorekit::integrate(Exec(), scorekit::reverse_sde(ve, model), scorekit::EulerMaruyama{}, x, s);
  REQUIRE(r.n_steps == 200);
  REQUIRE(r.n_score_evaluations == n * 200);
  REQUIRE(r.trajectory.extent(0) == 5);
  // The checksum of the final particles is what a run with 1 thread gives: compare against a Serial run
  // of the same kernel (bitwise), which does not depend on OMP_NUM_THREADS.
  scorekit::ParticleView<double, Kokkos::HostSpace> y("y", n, 2);
  scorekit::draw_exact(
      Kokkos::Serial(),
      scorekit::GaussianMixture<double, Kokkos::HostSpace>::isotropic(w, mu, Eigen::VectorXd::Ones(2))
          .perturbed(1.0, ve.marginal(1.0).std),
      y, 5);
  const auto host_mix =
      scorekit::GaussianMixture<double, Kokkos::HostSpace>::isotropic(w, mu, Eigen::VectorXd::Ones(2));
  const scorekit::PerturbedMixtureScore<double, Kokkos::HostSpace> host_model(host_mix);
  scorekit::integrate(Kokkos::Serial(), scorekit::reverse_sde(ve, host_model), scorekit::EulerMaruyama{}, y,
                      s);
  auto x_h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x);
  for (std::int64_t i = 0; i < n; ++i)
    for (int j = 0; j < 2; ++j) REQUIRE(x_h(i, j) == y(i, j));
}
