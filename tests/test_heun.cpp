// Heun's method (EDM's sampler) on probability-flow ODEs: the step against a closed form, the churn's
// added noise against its exact law, sampling a 2-D Gaussian mixture with exact scores (mode weights and
// MMD to exact samples), grids that end at t = 0, the EDM SDE, and bad input.
#include <scorekit/density/draw.hpp>
#include <scorekit/density/gaussian_mixture.hpp>
#include <scorekit/integrate/euler_maruyama.hpp>
#include <scorekit/integrate/heun.hpp>
#include <scorekit/integrate/integrate_common.hpp>
#include <scorekit/metrics/mmd.hpp>
#include <scorekit/metrics/mode_weights.hpp>
#include <scorekit/schedule/karras.hpp>
#include <scorekit/schedule/linear_beta.hpp>
#include <scorekit/score/perturbed_mixture.hpp>
#include <scorekit/sde/edm.hpp>
#include <scorekit/sde/reverse.hpp>
#include <scorekit/sde/variance_exploding.hpp>
#include <scorekit/sde/variance_preserving.hpp>

#include <catch2/catch.hpp>

#include "backends.hpp"
#include "support.hpp"

#include <cmath>
#include <limits>

using scorekit_test::Backends;

namespace {

// Mean and variance checks allow 4.5 standard errors (a false alarm per comparison below 7e-6); mode
// weights 4 binomial standard errors (6e-5); MMD^2 must stay below 5 null standard deviations, a
// distribution-free test of level 1/26 by Cantelli's inequality and far smaller in practice (see
// metrics/mmd.hpp). Every seed is fixed.
constexpr double n_se = 4.5;

// --------------------------------------------------------------------------- the 2-D mixture to sample

// 0.2 N((-5,-5), I) + 0.8 N((5,5), 0.5 I).
using scorekit_test::two_mode_means;
template <class Real, class Mem>
scorekit::GaussianMixture<Real, Mem> two_modes() {
  return scorekit_test::two_modes<Real, Mem>(1.0, 0.5);
}

/// n particles drawn exactly from the SDE's marginal at time t (the law the reverse process starts from).
template <class Exec, class Real, class Mem, class SDE>
scorekit::ParticleView<Real, Mem> exact_marginal(const scorekit::GaussianMixture<Real, Mem>& data,
                                                 const SDE& sde, double t, int n, std::uint64_t seed) {
  auto x = scorekit::make_particles<Real>(Exec(), n, data.dim());
  const auto k = sde.marginal(Real(t));
  scorekit::draw_exact(Exec(), data.perturbed(k.scale, k.std), x, seed);
  return x;
}

/// The samples x reproduce `target` (the data mixture, perturbed by the grid's final kernel when it stops
/// at t > 0): the weight of mode (-5,-5) within 4 binomial standard errors of 0.2, and MMD^2 between the
/// first m samples and m exact draws below 5 null standard deviations, both with the median-heuristic
/// bandwidth (about the distance between the modes: sees the weights) and with h = 0.5 (sees the shape of
/// each mode).
template <class Exec, class View, class Mixture>
void require_reproduces(const View& x, const Mixture& target, std::uint64_t seed) {
  using Real = typename View::non_const_value_type;
  const std::int64_t n = std::int64_t(x.extent(0));
  const auto w = scorekit::mode_weights(Exec(), x, two_mode_means());
  const double se = scorekit::binomial_standard_error(0.2, n);
  INFO("weight of mode (-5,-5): " << w.weights[0] << ", exact 0.2, SE " << se);
  CHECK(std::abs(w.weights[0] - 0.2) < 4 * se);

  const int m = 2000;
  auto head = scorekit::make_particles<Real>(Exec(), m, 2);
  Kokkos::deep_copy(head, Kokkos::subview(x, Kokkos::make_pair(0, m), Kokkos::ALL()));
  auto exact = scorekit::make_particles<Real>(Exec(), m, 2);
  scorekit::draw_exact(Exec(), target, exact, seed);
  for (const double h : {0.0, 0.5}) {
    const auto r =
        h > 0 ? scorekit::mmd_squared(Exec(), head, exact, h) : scorekit::mmd_squared(Exec(), head, exact);
    INFO("MMD^2 " << r.mmd2 << " with bandwidth " << r.bandwidth << ", null sd " << r.null_sd);
    CHECK(r.mmd2 < 5 * r.null_sd);
  }
}

/// A noise-conditional model that returns NaN at sigma <= 0, as a trained model with a 1/sigma inside
/// would; otherwise the exact mixture score. A run that evaluates it at t = 0 fails (non-finite particles).
template <class Real, class Mem>
struct RefusesZeroNoise {
  using value_type = Real;
  scorekit::PerturbedMixtureScore<Real, Mem> inner;
  KOKKOS_INLINE_FUNCTION int dim() const { return inner.dim(); }
  KOKKOS_INLINE_FUNCTION int workspace_size() const { return inner.workspace_size(); }
  KOKKOS_INLINE_FUNCTION void score(const Real* x, Real sigma, Real* out, Real* work) const {
    if (!(sigma > Real(0))) {
      for (int j = 0; j < inner.dim(); ++j) out[j] = scorekit::math::quiet_nan<Real>();
      return;
    }
    inner.score(x, sigma, out, work);
  }
};

// ------------------------------------------------------------------- one step on Gaussian data, on the host

// For data N(mu, v) in one dimension the marginal at t is N(a mu, a^2 v + s^2), so the PF drift is affine:
//   F(x, t) = f x + g^2 (x - a mu) / (2 (a^2 v + s^2)),
// and so is a Heun step. These host formulas are what the kernel must reproduce.
template <class SDE>
double pf_drift(const SDE& sde, double mu, double v, double x, double t) {
  const auto k = sde.marginal(t);
  const double g = sde.diffusion(t);
  return sde.drift_coefficient(t) * x +
         g * g * (x - k.scale * mu) / (2 * (k.scale * k.scale * v + k.std * k.std));
}
template <class SDE>
double heun_host(const SDE& sde, double mu, double v, double x, double t, double t_next) {
  const double h = t_next - t, d = pf_drift(sde, mu, v, x, t), x1 = x + h * d;
  if (t_next == 0) return x1;
  return x + 0.5 * h * (d + pf_drift(sde, mu, v, x1, t_next));
}

/// 1-D Gaussian data N(mu, v) as a one-component mixture.
template <class Mem>
scorekit::GaussianMixture<double, Mem> gaussian_1d(double mu, double v) {
  return scorekit::GaussianMixture<double, Mem>::isotropic(
      Eigen::VectorXd::Ones(1), Eigen::MatrixXd::Constant(1, 1, mu), Eigen::VectorXd::Constant(1, v));
}

/// Mean and unbiased variance of a 1-D particle view.
template <class View>
std::pair<double, double> mean_variance(const View& x) {
  const Eigen::MatrixXd h = scorekit_test::to_eigen(x);
  const double m = h.col(0).mean();
  return {m, (h.col(0).array() - m).square().sum() / double(h.rows() - 1)};
}

/// Runs one step from t to t_next with `heun` on n particles drawn exactly from p_t and checks the mean
/// and variance of the result against the churned law: x_hat = abar x + churn_noise shat z with
/// (abar, shat) from t to t_hat_expected, then the (affine) Heun step from t_hat_expected.
template <class Exec, class SDE>
void require_churned_step(const SDE& sde, const scorekit::Heun& heun, double t, double t_next,
                          double t_hat_expected, std::uint64_t seed) {
  using Mem = typename Exec::memory_space;
  const double mu = 0.7, v = 0.3;
  const auto data = gaussian_1d<Mem>(mu, v);
  const int n = 100000;
  auto x = exact_marginal<Exec>(data, sde, t, n, seed);
  const auto system = scorekit::probability_flow(sde, scorekit::PerturbedMixtureScore<double, Mem>(data));
  scorekit::IntegrateSettings s;
  s.times = std::vector<double>{t, t_next};
  s.seed = seed + 1;
  scorekit::integrate(Exec(), system, heun, x, s);

  const auto k = sde.marginal(t), kh = sde.marginal(t_hat_expected);
  const double abar = kh.scale / k.scale, shat2 = kh.std * kh.std - abar * abar * k.std * k.std;
  const double mean_hat = abar * k.scale * mu,
               var_hat = abar * abar * (k.scale * k.scale * v + k.std * k.std) +
                         heun.churn_noise * heun.churn_noise * shat2;
  const double b = heun_host(sde, mu, v, 0.0, t_hat_expected, t_next);
  const double a = heun_host(sde, mu, v, 1.0, t_hat_expected, t_next) - b;
  const double mean = a * mean_hat + b, var = a * a * var_hat;
  const auto [m, s2] = mean_variance(x);
  INFO("t " << t << " -> t_hat " << t_hat_expected << " -> " << t_next << ": mean " << m << " (expected "
            << mean << "), variance " << s2 << " (expected " << var << "; without churn "
            << a * a * (k.scale * k.scale * v + k.std * k.std) << ")");
  CHECK(std::abs(m - mean) < n_se * std::sqrt(var / n));
  CHECK(std::abs(s2 - var) < n_se * var * std::sqrt(2.0 / (n - 1)));  // the result is exactly Gaussian
}

/// A linear beta schedule with its closed-form inverse of sigma(t) = s(t) / a(t) = sqrt(e^B - 1).
double vp_time_of_sigma(const scorekit::LinearBeta<double>& beta, double sigma) {
  const double b = std::log1p(sigma * sigma), c = beta.beta_max - beta.beta_min;
  return (-beta.beta_min + std::sqrt(beta.beta_min * beta.beta_min + 2 * c * b)) / c;
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("A Heun step is the trapezoidal rule, and Euler's onto t = 0", "[heun]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const double mu = 0.7, v = 0.3;
  const auto data = gaussian_1d<Mem>(mu, v);
  const scorekit::PerturbedMixtureScore<double, Mem> model(data);
  auto run = [&](const auto& sde, double t, double t_next) {
    const int n = 5;
    auto x = scorekit::make_particles<double>(Exec(), n, 1);
    scorekit_test::fill_host(x, [](std::size_t i, std::size_t) { return -2.0 + 1.1 * double(i); });
    scorekit::IntegrateSettings s;
    s.times = std::vector<double>{t, t_next};
    const auto r =
        scorekit::integrate(Exec(), scorekit::probability_flow(sde, model), scorekit::Heun{}, x, s);
    CHECK(r.n_score_evaluations == n * (t_next == 0 ? 1 : 2));
    auto h = scorekit::to_host(x);
    for (int i = 0; i < n; ++i) {
      const double expected = heun_host(sde, mu, v, -2.0 + 1.1 * i, t, t_next);
      INFO("t " << t << " -> " << t_next << ", particle " << i);
      // A handful of roundings of O(1) numbers: 1e-13 relative is far above them and far below the
      // difference between the Heun and Euler steps (O(h^2 F') ~ 1e-3 here).
      CHECK(h(i, 0) == Approx(expected).epsilon(1e-13).margin(1e-13));
    }
  };
  const scorekit::EdmSDE<double> edm(80);
  run(edm, 2.0, 1.5);
  run(edm, 0.3, 0.0);  // the final Euler step
  run(edm, 1.5, 2.0);  // forwards (the likelihood direction)
  const scorekit::VarianceExplodingSDE<double> ve(0.01, 50);
  run(ve, 0.6, 0.55);
  run(ve, 0.05, 0.0);
  const auto vp = scorekit::vp_sde(scorekit::LinearBeta<double>{});
  run(vp, 0.6, 0.55);
  run(vp, 0.05, 0.0);
}

TEMPLATE_LIST_TEST_CASE("Churn raises the noise level by the exact forward transition", "[heun][churn]",
                        Backends) {
  using Exec = TestType;
  SECTION("EdmSDE: t_hat = (1 + gamma) t, gamma capped at sqrt(2) - 1, S_noise scales the noise") {
    const scorekit::EdmSDE<double> edm(80);
    scorekit::Heun heun{40, 18, 0.05, 50, 1.5};  // 40 / 18 > sqrt(2) - 1
    REQUIRE(heun.gamma() == Approx(std::sqrt(2.0) - 1));
    require_churned_step<Exec>(edm, heun, 2.0, 1.6, 2.0 * std::sqrt(2.0), 10);
    heun = scorekit::Heun{1, 10};  // gamma = 0.1, uncapped
    REQUIRE(heun.gamma() == Approx(0.1));
    require_churned_step<Exec>(edm, heun, 2.0, 0.0, 2.2, 20);  // churn, then the final Euler step
  }
  SECTION("VP: t_hat by bisection, with a(t_hat) / a(t) < 1") {
    const scorekit::LinearBeta<double> beta{};
    const auto vp = scorekit::vp_sde(beta);
    const scorekit::Heun heun{2, 10};  // gamma = 0.2
    const double t = 0.3, t_hat = vp_time_of_sigma(beta, 1.2 * vp.marginal(t).sigma());
    REQUIRE(t_hat > t);
    require_churned_step<Exec>(vp, heun, t, 0.25, t_hat, 30);
  }
  SECTION("VE: the rise stops at T when (1 + gamma) sigma(t) > sigma(T)") {
    const scorekit::VarianceExplodingSDE<double> ve(0.01, 50);
    const scorekit::Heun heun{40, 18};
    REQUIRE(ve.marginal(1.0).sigma() < (1 + heun.gamma()) * ve.marginal(0.98).sigma());
    require_churned_step<Exec>(ve, heun, 0.98, 0.95, 1.0, 40);
  }
}

TEMPLATE_LIST_TEST_CASE("Churn is off outside [churn_t_min, churn_t_max], forwards, and without noise",
                        "[heun][churn]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const auto data = two_modes<double, Mem>();
  const scorekit::EdmSDE<double> edm(80);
  const auto system = scorekit::probability_flow(edm, scorekit::PerturbedMixtureScore<double, Mem>(data));
  auto run = [&](const scorekit::Heun& heun, std::vector<double> times, bool remove_last_noise) {
    auto x = exact_marginal<Exec>(data, edm, times.front(), 200, 5);
    scorekit::IntegrateSettings s;
    s.times = times;
    s.seed = 6;
    s.remove_last_noise = remove_last_noise;
    scorekit::integrate(Exec(), system, heun, x, s);
    return x;
  };
  const std::vector<double> down = {3.0, 2.0, 1.0}, up = {1.0, 2.0, 3.0};
  const auto plain = run(scorekit::Heun{}, down, false);
  const auto plain_up = run(scorekit::Heun{}, up, false);
  CHECK(scorekit_test::bitwise_equal(run(scorekit::Heun{40, 2, 3.5, 50}, down, false), plain));  // t < t_min
  CHECK(scorekit_test::bitwise_equal(run(scorekit::Heun{40, 2, 0, 0.5}, down, false), plain));   // t > t_max
  CHECK(scorekit_test::bitwise_equal(run(scorekit::Heun{40, 2}, up, false), plain_up));
  // remove_last_noise turns the churn of the last step off: one step, so no churn at all.
  CHECK(scorekit_test::bitwise_equal(run(scorekit::Heun{40, 1}, {3.0, 2.0}, true),
                                     run(scorekit::Heun{}, {3.0, 2.0}, false)));
  CHECK(!scorekit_test::bitwise_equal(run(scorekit::Heun{40, 2}, down, false), plain));  // and it does churn
}

TEMPLATE_LIST_TEST_CASE("Heun on the probability-flow ODE reproduces a 2-D mixture", "[heun][mixture]",
                        Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const auto data = two_modes<double, Mem>();
  const scorekit::PerturbedMixtureScore<double, Mem> model(data);
  const int n = 20000;
  auto sample = [&](const auto& sde, const std::vector<double>& times, const scorekit::Heun& heun,
                    std::uint64_t seed) {
    auto x = exact_marginal<Exec>(data, sde, times.front(), n, seed);
    scorekit::IntegrateSettings s;
    s.times = times;
    s.seed = seed + 1;
    const auto r = scorekit::integrate(Exec(), scorekit::probability_flow(sde, model), heun, x, s);
    const std::int64_t steps = std::int64_t(times.size()) - 1;
    CHECK(r.n_score_evaluations == n * (2 * steps - (times.back() == 0 ? 1 : 0)));
    const auto k = sde.marginal(times.back());
    require_reproduces<Exec>(x, data.perturbed(k.scale, k.std), seed + 2);
    return x;
  };
  SECTION("VE, to t = 1e-3") {
    sample(scorekit::VarianceExplodingSDE<double>(0.01, 50), scorekit::uniform_times(1, 1e-3, 50), {}, 100);
  }
  SECTION("VP, to t = 1e-3") {
    sample(scorekit::vp_sde(scorekit::LinearBeta<double>{}), scorekit::uniform_times(1, 1e-3, 50), {}, 200);
  }
  SECTION("VE, to t = 0 (a final Euler step, never evaluated at noise level 0)") {
    const scorekit::VarianceExplodingSDE<double> ve(0.01, 50);
    const auto times = scorekit::uniform_times(1, 0, 50);
    sample(ve, times, {}, 300);
    // The same run with a model that returns NaN at sigma = 0 succeeds: the model is never asked there.
    const RefusesZeroNoise<double, Mem> refusing{model};
    auto x = exact_marginal<Exec>(data, ve, 1.0, 100, 7);
    scorekit::IntegrateSettings s;
    s.times = times;
    CHECK_NOTHROW(
        scorekit::integrate(Exec(), scorekit::probability_flow(ve, refusing), scorekit::Heun{}, x, s));
  }
  SECTION("EDM (Algorithm 1): EdmSDE over a Karras grid ending at 0") {
    std::vector<double> times = scorekit::karras_sigmas(64, 0.002, 80, 7);
    times.push_back(0);
    sample(scorekit::EdmSDE<double>(80), times, {}, 400);
  }
  SECTION("EDM (Algorithm 2): with churn") {
    // S_churn = 10 over 64 steps (gamma = 0.156) in [0.05, 50]. Churn is exact, but the extra distance
    // each Heun step then covers adds discretisation error: measured with 4e5 particles, the variance of
    // the heavy mode is 13% too large at 25 steps, 4% at 50, 2.2% at 64 and 1% at 100 (without churn:
    // 4%, 0.9%, 0.5%, 0.2%). At 64 steps MMD^2 (h = 0.5) between 4000 samples and 4000 exact draws was
    // 0.7 null sd, so the bias is far below the 5 null sd bound at 2000.
    std::vector<double> times = scorekit::karras_sigmas(64, 0.002, 80, 7);
    times.push_back(0);
    const scorekit::Heun heun{10, 64, 0.05, 50, 1};
    sample(scorekit::EdmSDE<double>(80), times, heun, 500);
  }
}

TEMPLATE_LIST_TEST_CASE("The mixture check sees a first-order method's error at the same step count",
                        "[heun][mixture]", Backends) {
  // The power of the checks above: Euler's method (EulerMaruyama on the PF ODE) over the VE grid of 50
  // steps puts 0.152 of the mass in mode (-5,-5) (measured with 4e5 particles), 17 binomial SE from 0.2
  // at n = 20000, where Heun is off by 0.001 (0.4 SE).
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const auto data = two_modes<double, Mem>();
  const scorekit::VarianceExplodingSDE<double> ve(0.01, 50);
  const int n = 20000;
  auto x = exact_marginal<Exec>(data, ve, 1.0, n, 700);
  scorekit::IntegrateSettings s;
  s.times = scorekit::uniform_times(1, 1e-3, 50);
  scorekit::integrate(Exec(),
                      scorekit::probability_flow(ve, scorekit::PerturbedMixtureScore<double, Mem>(data)),
                      scorekit::EulerMaruyama{}, x, s);
  const double w = scorekit::mode_weights(Exec(), x, two_mode_means()).weights[0];
  INFO("Euler's weight of mode (-5,-5): " << w);
  CHECK(std::abs(w - 0.2) > 8 * scorekit::binomial_standard_error(0.2, n));
}

TEMPLATE_LIST_TEST_CASE("Heun with churn works in single precision", "[heun][float]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const auto data = two_modes<float, Mem>();
  const scorekit::EdmSDE<float> edm(80);
  std::vector<double> times = scorekit::karras_sigmas(64, 0.002, 80, 7);
  times.push_back(0);
  auto x = exact_marginal<Exec>(data, edm, 80, 20000, 600);
  scorekit::IntegrateSettings s;
  s.times = times;
  s.seed = 601;
  scorekit::integrate(Exec(),
                      scorekit::probability_flow(edm, scorekit::PerturbedMixtureScore<float, Mem>(data)),
                      scorekit::Heun{10, 64, 0.05, 50, 1}, x, s);
  require_reproduces<Exec>(x, data, 602);
}

TEMPLATE_LIST_TEST_CASE("EdmSDE is the sigma(t) = t noising SDE", "[heun][sde][edm]", Backends) {
  const scorekit::EdmSDE<double> edm(80);
  CHECK(edm.t_max() == 80);
  CHECK(edm.prior_std() == 80);
  CHECK(scorekit::is_noising_sde_v<scorekit::EdmSDE<double>>);
  for (const double t : {0.0, 0.002, 1.0, 80.0}) {
    CHECK(edm.drift_coefficient(t) == 0);
    CHECK(edm.marginal(t).scale == 1);
    CHECK(edm.marginal(t).std == t);
    CHECK(edm.time_of_sigma(edm.marginal(t).sigma()) == t);
    // g^2 = d s^2 / dt = 2 t: the variance the SDE adds is what the marginal says.
    CHECK(edm.diffusion(t) * edm.diffusion(t) == Approx(2 * t).margin(1e-300));
  }
  (void)TestType();
}

TEMPLATE_LIST_TEST_CASE("Heun and EdmSDE refuse bad input", "[heun][errors]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  for (const double bad : {0.0, -1.0, inf, nan})
    CHECK_THROWS_WITH(scorekit::EdmSDE<double>(bad),
                      Catch::Contains("EdmSDE") && Catch::Contains("sigma_max"));

  const auto data = two_modes<double, Mem>();
  const scorekit::EdmSDE<double> edm(80);
  const auto system = scorekit::probability_flow(edm, scorekit::PerturbedMixtureScore<double, Mem>(data));
  auto x = exact_marginal<Exec>(data, edm, 80, 10, 1);
  scorekit::IntegrateSettings s;
  s.times = std::vector<double>{80, 40, 0};
  auto refused = [&](const scorekit::Heun& heun, const char* what) {
    CHECK_THROWS_WITH(scorekit::integrate(Exec(), system, heun, x, s),
                      Catch::Contains("scorekit::Heun") && Catch::Contains(what));
  };
  refused(scorekit::Heun{-1, 2}, "churn");
  refused(scorekit::Heun{nan, 2}, "churn");
  refused(scorekit::Heun{inf, 2}, "churn");
  refused(scorekit::Heun{1, 0}, "n_steps");
  refused(scorekit::Heun{1, 2, -1}, "churn_t_min");
  refused(scorekit::Heun{1, 2, 5, 4}, "churn_t_max");
  refused(scorekit::Heun{1, 2, 0, nan}, "churn_t_max");
  refused(scorekit::Heun{1, 2, 0, inf, 0}, "churn_noise");
  refused(scorekit::Heun{1, 2, 0, inf, -1}, "churn_noise");
  refused(scorekit::Heun{1, 2, 0, inf, nan}, "churn_noise");
  CHECK_NOTHROW(scorekit::Heun{0, 0, 0, inf, 1}.validate());  // churn off needs no n_steps
  // A grid outside the EDM SDE's [0, sigma_max] is refused by the driver.
  s.times = std::vector<double>{100, 40, 0};
  CHECK_THROWS_AS(scorekit::integrate(Exec(), system, scorekit::Heun{}, x, s), scorekit::invalid_argument);
  // Heun on a ReverseSDE does not compile (it would drop the noise): see
  // tests/compile_fail/heun_reverse_sde.cpp.
  CHECK(scorekit::Heun::accepts<std::decay_t<decltype(system)>>);
  CHECK(!scorekit::Heun::accepts<std::decay_t<decltype(scorekit::reverse_sde(edm, system.model()))>>);
}
