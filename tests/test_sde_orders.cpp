// Orders of convergence. Euler-Maruyama on the Ornstein-Uhlenbeck process dx = -theta x dt + sigma dW
// (additive noise): strong order 1 and weak order 1, against closed forms. Euler's and Heun's methods on
// the probability-flow ODE of Gaussian data (a linear ODE with a closed-form solution), for the VE and VP
// SDEs: orders 1 and 2.
#include <scorekit/density/gaussian_mixture.hpp>
#include <scorekit/integrate/euler_maruyama.hpp>
#include <scorekit/integrate/heun.hpp>
#include <scorekit/integrate/integrate_common.hpp>
#include <scorekit/schedule/linear_beta.hpp>
#include <scorekit/score/perturbed_mixture.hpp>
#include <scorekit/sde/langevin.hpp>
#include <scorekit/sde/reverse.hpp>
#include <scorekit/sde/variance_exploding.hpp>
#include <scorekit/sde/variance_preserving.hpp>

#include <catch2/catch.hpp>

#include "backends.hpp"
#include "support.hpp"

#include <cmath>
#include <vector>

using scorekit_test::Backends;

namespace {

// Monte Carlo comparisons allow 4.5 standard errors: a false alarm per comparison below 7e-6. Seeds are
// fixed, and the estimates at different step sizes use different seeds, so they are independent.
constexpr double n_se = 4.5;
const double pi = std::acos(-1.0);

/// Least-squares slope of log(error) against log(h) and its standard error from independent estimates
/// of the errors (delta method: Var log e_k = (se_k / e_k)^2).
struct Slope {
  double slope = 0, se = 0;
};
Slope log_slope(const std::vector<double>& h, const std::vector<double>& e, const std::vector<double>& se) {
  const std::size_t n = h.size();
  double mx = 0, my = 0;
  for (std::size_t k = 0; k < n; ++k) mx += std::log(h[k]) / double(n), my += std::log(e[k]) / double(n);
  double sxx = 0, sxy = 0;
  for (std::size_t k = 0; k < n; ++k) {
    sxx += (std::log(h[k]) - mx) * (std::log(h[k]) - mx);
    sxy += (std::log(h[k]) - mx) * (std::log(e[k]) - my);
  }
  Slope out;
  out.slope = sxy / sxx;
  double var = 0;
  for (std::size_t k = 0; k < n; ++k) {
    const double w = (std::log(h[k]) - mx) / sxx;
    var += w * w * (se[k] / e[k]) * (se[k] / e[k]);
  }
  out.se = std::sqrt(var);
  return out;
}

// ---------------------------------------------------------------------------------------- OU, strong

// Over one step of length h the exact OU solution is X' = e^{-theta h} X + sigma I with
// I = int_0^h e^{-theta (h - u)} dW_u, and (dW, I) are jointly Gaussian with
//   Var dW = h,   Var I = (1 - e^{-2 theta h}) / (2 theta),   Cov(dW, I) = (1 - e^{-theta h}) / theta.
// So given the increment dW that Euler-Maruyama used, I = (Cov / h) dW + sqrt(Var I - Cov^2 / h) xi with
// an independent xi: the exact solution driven by the same Brownian path, with no reference grid.
struct OuStep {
  double h, decay, cov, var_i, cond_sd;
  OuStep(double theta, double h_) : h(h_) {
    decay = std::exp(-theta * h);
    cov = -std::expm1(-theta * h) / theta;
    var_i = -std::expm1(-2 * theta * h) / (2 * theta);
    cond_sd = std::sqrt(var_i - cov * cov / h);
  }
};

/// E|X_T^h - X_T| in closed form: the difference is Gaussian (x0 fixed), with mean
/// ((1 - theta h)^N - e^{-theta T}) x0 and variance sigma^2 sum_n Var(c_n dW_n - e_n I_n), c_n =
/// (1 - theta h)^{N-n} and e_n = e^{-theta (T - t_n)}, and E|Y| of Y ~ N(m, v) is
/// sqrt(2 v / pi) e^{-m^2 / (2 v)} + m erf(m / sqrt(2 v)).
double exact_strong_error(double theta, double sigma, double x0, double T, int N) {
  const OuStep st(theta, T / N);
  const double m = (std::pow(1 - theta * st.h, N) - std::exp(-theta * T)) * x0;
  double v = 0;
  for (int n = 1; n <= N; ++n) {
    const double c = std::pow(1 - theta * st.h, N - n), e = std::exp(-theta * st.h * (N - n));
    v += sigma * sigma * (c * c * st.h - 2 * c * e * st.cov + e * e * st.var_i);
  }
  return std::sqrt(2 * v / pi) * std::exp(-m * m / (2 * v)) + m * std::erf(m / std::sqrt(2 * v));
}

struct Estimate {
  double mean = 0, se = 0;
};

/// Runs integrate(EulerMaruyama) on the OU process over N steps of [0, T] from x0, then, per particle,
/// the exact solution driven by the same Brownian increments: Euler-Maruyama's step n draws its normal
/// from CounterRng(seed, i, n) (integrate/integrate_common.hpp), which this kernel draws again; xi comes
/// from the stream RngStream::user of the same counter. Returns the mean of |X_T^h - X_T| and its SE.
template <class Exec>
Estimate measured_strong_error(double theta, double sigma, double x0, double T, int N, int n,
                               std::uint64_t seed) {
  using Mem = typename Exec::memory_space;
  const scorekit::OrnsteinUhlenbeckSDE<double> ou(1, theta, sigma);
  auto x = scorekit::make_particles<double>(Exec(), n, 1);
  Kokkos::deep_copy(x, x0);
  scorekit::IntegrateSettings s;
  s.times = scorekit::uniform_times(0, T, N);
  s.seed = seed;
  scorekit::integrate(Exec(), ou, scorekit::EulerMaruyama{}, x, s);
  const OuStep st(theta, T / N);
  Kokkos::View<double*, Mem> err("err", n);
  Kokkos::parallel_for(
      "test::ou_exact_path", Kokkos::RangePolicy<Exec>(0, n), KOKKOS_LAMBDA(const int i) {
        double exact = x0;
        for (int k = 1; k <= N; ++k) {
          scorekit::CounterRng<double> em(seed, std::uint64_t(i), std::uint64_t(k));
          scorekit::CounterRng<double> extra(seed, std::uint64_t(i), std::uint64_t(k),
                                             scorekit::RngStream::user);
          const double dw = scorekit::math::sqrt(st.h) * em.normal();
          const double integral = st.cov / st.h * dw + st.cond_sd * extra.normal();
          exact = st.decay * exact + sigma * integral;
        }
        err(i) = scorekit::math::fabs(x(i, 0) - exact);
      });
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), err);
  double mean = 0, sq = 0;
  for (int i = 0; i < n; ++i) mean += h(i) / n;
  for (int i = 0; i < n; ++i) sq += (h(i) - mean) * (h(i) - mean);
  return {mean, std::sqrt(sq / (n - 1) / n)};
}

// ------------------------------------------------------------------------------------------ OU, weak

/// Euler-Maruyama's own moments on OU from a fixed x0: X_{n+1} = (1 - theta h) X_n + sigma sqrt(h) Z, so
/// the mean is (1 - theta h)^N x0 and the variance follows v' = (1 - theta h)^2 v + sigma^2 h from 0.
struct Moments {
  double mean, var;
};
Moments em_moments(double theta, double sigma, double x0, double T, int N) {
  const double h = T / N, r = 1 - theta * h;
  double v = 0;
  for (int n = 0; n < N; ++n) v = r * r * v + sigma * sigma * h;
  return {std::pow(r, N) * x0, v};
}
Moments exact_moments(double theta, double sigma, double x0, double T) {
  const auto k = scorekit::OrnsteinUhlenbeckSDE<double>(1, theta, sigma).marginal(T);
  return {k.scale * x0, k.std * k.std};
}

/// Sample mean and variance of X_T and of X_T^2 after integrate(EulerMaruyama), with standard errors.
struct SampleMoments {
  Estimate first, second;
  double var;
};
template <class Exec>
SampleMoments em_sample(double theta, double sigma, double x0, double T, int N, int n, std::uint64_t seed) {
  const scorekit::OrnsteinUhlenbeckSDE<double> ou(1, theta, sigma);
  auto x = scorekit::make_particles<double>(Exec(), n, 1);
  Kokkos::deep_copy(x, x0);
  scorekit::IntegrateSettings s;
  s.times = scorekit::uniform_times(0, T, N);
  s.seed = seed;
  const auto r = scorekit::integrate(Exec(), ou, scorekit::EulerMaruyama{}, x, s);
  REQUIRE(r.n_score_evaluations == std::int64_t(n) * N);
  const Eigen::VectorXd v = scorekit_test::to_eigen(x).col(0);
  const Eigen::VectorXd v2 = v.array().square();
  auto estimate = [&](const Eigen::VectorXd& a, double& var) {
    const double m = a.mean();
    var = (a.array() - m).square().sum() / (n - 1);
    return Estimate{m, std::sqrt(var / n)};
  };
  SampleMoments out;
  double unused = 0;
  out.first = estimate(v, out.var);
  out.second = estimate(v2, unused);
  return out;
}

// ------------------------------------------------------------------------------ PF ODE of Gaussian data

// For data N(mu, v I) the marginal at t is N(a mu, S^2 I), S^2 = a^2 v + s^2, and the probability-flow
// ODE dx/dt = f x + g^2 (x - a mu) / (2 S^2) is linear. Since d(a mu)/dt = f a mu and dS/dt / S =
// f + g^2 / (2 S^2), its solution is x_t - a_t mu = (S_t / S_T) (x_T - a_T mu).
template <class SDE>
double exact_pf(const SDE& sde, double mu, double v, double x_T, double T, double t) {
  const auto kT = sde.marginal(T), kt = sde.marginal(t);
  const double ST = std::sqrt(kT.scale * kT.scale * v + kT.std * kT.std);
  const double St = std::sqrt(kt.scale * kt.scale * v + kt.std * kt.std);
  return kt.scale * mu + St / ST * (x_T - kT.scale * mu);
}

/// The largest error over a few starting points of `integrator` on the PF ODE from T to eps in N steps.
template <class Exec, class SDE, class Integrator>
double pf_error(const SDE& sde, const Integrator& integrator, int N) {
  using Mem = typename Exec::memory_space;
  const Eigen::Vector2d mu(1.0, -2.0);
  const double v = 0.25, T = 1, eps = 1e-3;
  const auto data = scorekit::GaussianMixture<double, Mem>::isotropic(
      Eigen::VectorXd::Ones(1), mu.transpose(), Eigen::VectorXd::Constant(1, v));
  const auto system = scorekit::probability_flow(sde, scorekit::PerturbedMixtureScore<double, Mem>(data));
  const int n = 9;
  const double spread = 3 * sde.marginal(T).std;  // +-3 sd of the prior
  auto start = [&](std::size_t i, std::size_t j) {
    return spread * (double(i) - 4) / 4 * (j == 0 ? 1.0 : -0.5);
  };
  auto x = scorekit::make_particles<double>(Exec(), n, 2);
  scorekit_test::fill_host(x, start);
  scorekit::IntegrateSettings s;
  s.times = scorekit::uniform_times(T, eps, N);
  scorekit::integrate(Exec(), system, integrator, x, s);
  auto h = scorekit::to_host(x);
  double worst = 0;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < 2; ++j)
      worst = std::max(worst, std::abs(h(i, j) - exact_pf(sde, mu[j], v, start(i, j), T, eps)));
  return worst;
}

/// Errors at N, 2N, 4N, ... steps and the ratios of consecutive ones.
template <class Exec, class SDE, class Integrator>
std::vector<double> pf_ratios(const SDE& sde, const Integrator& integrator, int N, int doublings) {
  std::vector<double> e;
  for (int k = 0; k <= doublings; ++k) e.push_back(pf_error<Exec>(sde, integrator, N << k));
  std::vector<double> r;
  for (int k = 0; k < doublings; ++k) r.push_back(e[std::size_t(k)] / e[std::size_t(k) + 1]);
  INFO("errors " << Catch::Detail::stringify(e) << ", ratios " << Catch::Detail::stringify(r));
  CHECK(e.back() > 1e-9);  // far above rounding (x is O(10)), so the ratios measure truncation error
  return r;
}

/// Ratios of a method of order p: error = C h^p (1 + D h + O(h^2)), so the ratio when h halves is
/// 2^p (1 + D h / 2 + O(h^2)): its distance to 2^p must shrink about twofold per halving (asserted: by at
/// least 1.5), and be within 5% of 2^p at the finest pair (1.9 to 2.1 for p = 1, 3.8 to 4.2 for p = 2).
void require_order(const std::vector<double>& r, int p) {
  const double target = std::pow(2.0, p);
  INFO("order " << p << ": ratios " << Catch::Detail::stringify(r));
  for (std::size_t k = 1; k < r.size(); ++k)
    CHECK(std::abs(r[k] - target) < std::abs(r[k - 1] - target) / 1.5);
  CHECK(std::abs(r.back() - target) < 0.05 * target);
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("Euler-Maruyama has strong order 1 on the Ornstein-Uhlenbeck process",
                        "[orders][strong]", Backends) {
  using Exec = TestType;
  const double theta = 1, sigma = 1, x0 = 1, T = 1;
  const int n = 40000;
  std::vector<double> hs, measured, se, exact;
  for (const int N : {16, 32, 64, 128}) {
    const Estimate e = measured_strong_error<Exec>(theta, sigma, x0, T, N, n, 1000 + std::uint64_t(N));
    const double truth = exact_strong_error(theta, sigma, x0, T, N);
    INFO(N << " steps: E|X^h - X| = " << e.mean << " +- " << e.se << ", exact " << truth);
    // The measured error is the closed form's: this checks the paths, not just their rate.
    CHECK(std::abs(e.mean - truth) < n_se * e.se);
    hs.push_back(T / N);
    measured.push_back(e.mean);
    se.push_back(e.se);
    exact.push_back(truth);
  }
  // The exact errors' slope is 1 + O(h): 1.009 on these step sizes (1.019 on 8 ... 64 steps).
  const Slope truth = log_slope(hs, exact, std::vector<double>(exact.size(), 0.0));
  const Slope fit = log_slope(hs, measured, se);
  INFO("fitted slope " << fit.slope << " +- " << fit.se << ", exact errors' slope " << truth.slope);
  CHECK(std::abs(truth.slope - 1) < 0.02);
  CHECK(std::abs(fit.slope - 1) < std::abs(truth.slope - 1) + n_se * fit.se);
  // Power: the bound is far tighter than the gap to strong order 1/2 (the order of multiplicative noise).
  CHECK(std::abs(truth.slope - 1) + n_se * fit.se < 0.1);
}

TEMPLATE_LIST_TEST_CASE("Euler-Maruyama has weak order 1 on the Ornstein-Uhlenbeck process", "[orders][weak]",
                        Backends) {
  using Exec = TestType;
  const double theta = 1, sigma = 1, T = 1;
  SECTION("the sample moments are the discrete scheme's (the implementation)") {
    const double x0 = 2;
    const int n = 100000;
    for (const int N : {4, 32}) {
      const Moments m = em_moments(theta, sigma, x0, T, N);
      const SampleMoments s = em_sample<Exec>(theta, sigma, x0, T, N, n, 2000 + std::uint64_t(N));
      INFO(N << " steps: mean " << s.first.mean << " (scheme " << m.mean << "), variance " << s.var
             << " (scheme " << m.var << ")");
      CHECK(std::abs(s.first.mean - m.mean) < n_se * s.first.se);
      CHECK(std::abs(s.var - m.var) < n_se * m.var * std::sqrt(2.0 / (n - 1)));  // X_T is exactly Gaussian
      CHECK(std::abs(s.second.mean - (m.var + m.mean * m.mean)) < n_se * s.second.se);
    }
  }
  SECTION("the scheme's moment errors are O(h) (deterministic)") {
    // Both errors are C h + D h^2 + ..., so the ratio at h and h/2 is 2 + (D / C) h + O(h^2): within 5% of 2
    // at these steps (1/100 ... 1/400), and closer at each halving.
    const double x0 = 2;
    const Moments e = exact_moments(theta, sigma, x0, T);
    std::vector<double> mean_err, var_err;
    for (const int N : {100, 200, 400}) {
      const Moments m = em_moments(theta, sigma, x0, T, N);
      mean_err.push_back(m.mean - e.mean);
      var_err.push_back(m.var - e.var);
    }
    const double rm1 = mean_err[0] / mean_err[1], rm2 = mean_err[1] / mean_err[2];
    const double rv1 = var_err[0] / var_err[1], rv2 = var_err[1] / var_err[2];
    INFO("mean error ratios " << rm1 << ", " << rm2 << "; variance error ratios " << rv1 << ", " << rv2);
    CHECK(std::abs(rm2 - 2) < std::abs(rm1 - 2));
    CHECK(std::abs(rv2 - 2) < std::abs(rv1 - 2));
    CHECK(std::abs(rm1 - 2) < 0.1);
    CHECK(std::abs(rv1 - 2) < 0.1);
  }
  SECTION("the weak error measured by Monte Carlo halves with the step") {
    // x0 = 8 and 8 or 16 steps: the biases of E[X] (-0.19 and -0.094) and E[X^2] are over 40 SE at
    // n = 1e5, so the measured ratio has a relative SE of about 2.5%. The scheme's own ratio is
    // 2 + O(h) (2.06 for E[X]); the measured one must match it within 4.5 SE of the ratio, and so lie
    // within that of 2 plus the scheme's O(h) departure.
    const double x0 = 8;
    const int n = 100000;
    const Moments e = exact_moments(theta, sigma, x0, T);
    const SampleMoments coarse = em_sample<Exec>(theta, sigma, x0, T, 8, n, 3008);
    const SampleMoments fine = em_sample<Exec>(theta, sigma, x0, T, 16, n, 3016);
    const Moments mc = em_moments(theta, sigma, x0, T, 8), mf = em_moments(theta, sigma, x0, T, 16);
    auto check_ratio = [&](const Estimate& a, const Estimate& b, double exact, double scheme_a,
                           double scheme_b, const char* what) {
      const double ea = a.mean - exact, eb = b.mean - exact;
      const double r = ea / eb, r_scheme = (scheme_a - exact) / (scheme_b - exact);
      const double se_r = std::abs(r) * std::sqrt((a.se / ea) * (a.se / ea) + (b.se / eb) * (b.se / eb));
      INFO(what << ": weak errors " << ea << " +- " << a.se << " and " << eb << " +- " << b.se << ", ratio "
                << r << " +- " << se_r << " (scheme " << r_scheme << ")");
      REQUIRE(std::abs(eb) > 10 * b.se);  // the bias dominates
      CHECK(std::abs(r - r_scheme) < n_se * se_r);
      CHECK(std::abs(r - 2) < std::abs(r_scheme - 2) + n_se * se_r);
      CHECK(std::abs(r_scheme - 2) < 0.15);
    };
    check_ratio(coarse.first, fine.first, e.mean, mc.mean, mf.mean, "E[X]");
    check_ratio(coarse.second, fine.second, e.var + e.mean * e.mean, mc.var + mc.mean * mc.mean,
                mf.var + mf.mean * mf.mean, "E[X^2]");
  }
}

TEMPLATE_LIST_TEST_CASE("Euler and Heun on the probability-flow ODE of Gaussian data have orders 1 and 2",
                        "[orders][ode]", Backends) {
  using Exec = TestType;
  SECTION("VE") {
    const scorekit::VarianceExplodingSDE<double> ve(0.01, 50);
    require_order(pf_ratios<Exec>(ve, scorekit::EulerMaruyama{}, 64, 3), 1);
    require_order(pf_ratios<Exec>(ve, scorekit::Heun{}, 64, 3), 2);
  }
  SECTION("VP") {
    const auto vp = scorekit::vp_sde(scorekit::LinearBeta<double>{});
    require_order(pf_ratios<Exec>(vp, scorekit::EulerMaruyama{}, 64, 3), 1);
    require_order(pf_ratios<Exec>(vp, scorekit::Heun{}, 64, 3), 2);
  }
}
