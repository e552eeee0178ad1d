// Adaptive Dormand-Prince 5(4) (integrate/dormand_prince.hpp): step-for-step agreement with scipy's
// solve_ivp(method='RK45'), the global error against exact solutions (a scalar ODE and the probability-flow
// ODE of Gaussian data under VE, VP and sub-VP), the exact count of function evaluations, sampling a
// mixture from exact p_T draws, determinism, and bad input.
#include <scorekit/density/draw.hpp>
#include <scorekit/density/gaussian_mixture.hpp>
#include <scorekit/integrate/dormand_prince.hpp>
#include <scorekit/metrics/mmd.hpp>
#include <scorekit/metrics/mode_weights.hpp>
#include <scorekit/schedule/linear_beta.hpp>
#include <scorekit/score/perturbed_mixture.hpp>
#include <scorekit/sde/reverse.hpp>
#include <scorekit/sde/variance_exploding.hpp>
#include <scorekit/sde/variance_preserving.hpp>

#include <catch2/catch.hpp>

#include "backends.hpp"
#include "support.hpp"

#include <cmath>
#include <limits>
#include <vector>

using scorekit_test::Backends;

namespace {

/// dy/dt = y cos t: y(t) = y(t0) exp(sin t - sin t0).
template <class Real = double>
struct CosineOde {
  using value_type = Real;
  KOKKOS_INLINE_FUNCTION int dim() const { return 1; }
  KOKKOS_INLINE_FUNCTION int workspace_size() const { return 0; }
  KOKKOS_INLINE_FUNCTION void drift(const Real* x, Real t, Real* out, Real*) const {
    out[0] = x[0] * scorekit::math::cos(t);
  }
  KOKKOS_INLINE_FUNCTION Real diffusion(Real) const { return Real(0); }
};

/// Lotka-Volterra: x' = 1.5 x - x y, y' = -3 y + x y.
struct LotkaVolterra {
  using value_type = double;
  KOKKOS_INLINE_FUNCTION int dim() const { return 2; }
  KOKKOS_INLINE_FUNCTION int workspace_size() const { return 0; }
  KOKKOS_INLINE_FUNCTION void drift(const double* x, double, double* out, double*) const {
    out[0] = 1.5 * x[0] - x[0] * x[1];
    out[1] = -3 * x[1] + x[0] * x[1];
  }
  KOKKOS_INLINE_FUNCTION double diffusion(double) const { return 0; }
};

/// y' = y^2: y = 1 / (1/y0 - t), singular at t = 1/y0.
struct Blowup {
  using value_type = double;
  KOKKOS_INLINE_FUNCTION int dim() const { return 1; }
  KOKKOS_INLINE_FUNCTION int workspace_size() const { return 0; }
  KOKKOS_INLINE_FUNCTION void drift(const double* x, double, double* out, double*) const {
    out[0] = x[0] * x[0];
  }
  KOKKOS_INLINE_FUNCTION double diffusion(double) const { return 0; }
};

/// y' = -y, but NaN from t = 0.5 on for particles with y0 < 0 (a model that overflows there).
struct NanAfterHalf {
  using value_type = double;
  KOKKOS_INLINE_FUNCTION int dim() const { return 1; }
  KOKKOS_INLINE_FUNCTION int workspace_size() const { return 0; }
  KOKKOS_INLINE_FUNCTION void drift(const double* x, double t, double* out, double*) const {
    out[0] = (t >= 0.5 && x[0] < 0) ? scorekit::math::quiet_nan<double>() : -x[0];
  }
  KOKKOS_INLINE_FUNCTION double diffusion(double) const { return 0; }
};

/// A noise-conditional model that counts its score calls (one atomic increment each).
template <class Model, class Mem>
struct CountingModel {
  using value_type = typename Model::value_type;
  Model inner;
  Kokkos::View<std::int64_t, Mem> count;
  KOKKOS_INLINE_FUNCTION int dim() const { return inner.dim(); }
  KOKKOS_INLINE_FUNCTION int workspace_size() const { return inner.workspace_size(); }
  KOKKOS_INLINE_FUNCTION void score(const value_type* x, value_type sigma, value_type* out,
                                    value_type* work) const {
    Kokkos::atomic_increment(&count());
    inner.score(x, sigma, out, work);
  }
};

template <class Exec, class View>
void set_rows(const View& x, const std::vector<std::vector<double>>& rows) {
  scorekit_test::fill_host(x, [&](std::size_t i, std::size_t j) { return rows[i][j]; });
}

/// The data N(mu, s0^2 I) in 2-D, and the exact probability-flow solution from (t0, x0) to t1: the flow
/// keeps the standardised coordinate, x(t) = m(t) + sqrt(v(t) / v(t0)) (x0 - m(t0)) with
/// m = a(t) mu, v = a(t)^2 s0^2 + s(t)^2 (d/dt (x - m) = (f + g^2 / (2 v)) (x - m) = (d/dt sqrt v / sqrt v)
/// (x - m)).
const Eigen::Vector2d gaussian_mean(1.0, -2.0);
constexpr double gaussian_sd = 0.5;

template <class SDE>
double exact_flow(const SDE& sde, double x0, int j, double t0, double t1) {
  const auto k0 = sde.marginal(t0), k1 = sde.marginal(t1);
  const double v0 = k0.scale * k0.scale * gaussian_sd * gaussian_sd + k0.std * k0.std;
  const double v1 = k1.scale * k1.scale * gaussian_sd * gaussian_sd + k1.std * k1.std;
  return k1.scale * gaussian_mean[j] + std::sqrt(v1 / v0) * (x0 - k0.scale * gaussian_mean[j]);
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("solve_ode reproduces scipy's RK45 step for step", "[dormand_prince]", Backends) {
  // Reference values: scipy 1.17.1, solve_ivp(f, (t0, t1), y0, method='RK45', rtol=tol, atol=tol[,
  // first_step]); nfev and len(t) - 1 (accepted steps). The same algorithm and arithmetic up to the
  // order of a few sums: the evaluation counts must agree exactly, the states to rounding accumulated
  // over the steps (<= 400 steps of ~1e-16 relative each: 1e-12 allowed).
  using Exec = TestType;
  SECTION("y' = y cos t, two particles with their own step sequences, forwards") {
    auto x = scorekit::make_particles<double>(Exec(), 2, 1);
    set_rows<Exec>(x, {{1.0}, {2.5}});
    scorekit::DormandPrinceSettings s;
    s.rtol = s.atol = 1e-6;
    const auto r = scorekit::solve_ode(Exec(), CosineOde<>{}, x, 0.0, 10.0, s);
    auto nfe = scorekit::to_host(r.evaluations);
    CHECK(nfe(0) == 248);
    CHECK(nfe(1) == 260);
    CHECK(r.n_function_evaluations == 248 + 260);
    CHECK(r.max_evaluations == 260);
    CHECK(r.mean_evaluations == 254.0);
    CHECK(r.accepted_steps == 32 + 34);
    auto h = scorekit::to_host(x);
    CHECK(h(0, 0) == Approx(0.5804107787136004).epsilon(1e-12));
    CHECK(h(1, 0) == Approx(1.4510259756941892).epsilon(1e-12));
    // Each particle: 1 evaluation at t0, 1 for the automatic first step, 6 per attempted step.
    CHECK(r.n_function_evaluations == 2 * 2 + 6 * (r.accepted_steps + r.rejected_steps));
  }
  SECTION("backwards in time") {
    auto x = scorekit::make_particles<double>(Exec(), 1, 1);
    Kokkos::deep_copy(x, std::exp(std::sin(10.0)));
    scorekit::DormandPrinceSettings s;
    s.rtol = s.atol = 1e-6;
    const auto r = scorekit::solve_ode(Exec(), CosineOde<>{}, x, 10.0, 0.0, s);
    CHECK(r.n_function_evaluations == 254);
    CHECK(r.accepted_steps == 33);
    CHECK(scorekit::to_host(x)(0, 0) == Approx(1.0000022523955072).epsilon(1e-12));
  }
  SECTION("a given first step saves the starting-step evaluation") {
    auto x = scorekit::make_particles<double>(Exec(), 1, 1);
    Kokkos::deep_copy(x, 1.0);
    scorekit::DormandPrinceSettings s;
    s.rtol = s.atol = 1e-6;
    s.first_step = 0.05;
    const auto r = scorekit::solve_ode(Exec(), CosineOde<>{}, x, 0.0, 10.0, s);
    CHECK(r.n_function_evaluations == 241);
    CHECK(r.accepted_steps == 32);
    CHECK(r.n_function_evaluations == 1 + 6 * (r.accepted_steps + r.rejected_steps));
    CHECK(scorekit::to_host(x)(0, 0) == Approx(0.5804106433265752).epsilon(1e-12));
  }
  SECTION("Lotka-Volterra: the RMS error norm over two components") {
    for (const auto& ref : {std::make_tuple(1e-6, 1184, 168, 0.7137671198864187, 0.07540679987978917),
                            std::make_tuple(1e-8, 2558, 406, 0.7137515225617405, 0.07540778536723686)}) {
      auto x = scorekit::make_particles<double>(Exec(), 1, 2);
      set_rows<Exec>(x, {{10.0, 5.0}});
      scorekit::DormandPrinceSettings s;
      s.rtol = s.atol = std::get<0>(ref);
      const auto r = scorekit::solve_ode(Exec(), LotkaVolterra{}, x, 0.0, 15.0, s);
      INFO("tol " << std::get<0>(ref));
      CHECK(r.n_function_evaluations == std::get<1>(ref));
      CHECK(r.accepted_steps == std::get<2>(ref));
      auto h = scorekit::to_host(x);
      CHECK(h(0, 0) == Approx(std::get<3>(ref)).epsilon(1e-11));
      CHECK(h(0, 1) == Approx(std::get<4>(ref)).epsilon(1e-11));
    }
  }
}

TEMPLATE_LIST_TEST_CASE("The global error follows the tolerance", "[dormand_prince]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  SECTION("y' = y cos t on [0, 10]") {
    // The controller keeps the estimated local error of each step below tol * (1 + |y|); with h ~ tol^(1/5)
    // the propagated 5th-order solution has global error ~ tol and the cost grows as tol^(-1/5) (2.5x per
    // two decades). Bounds: |error| <= (accepted steps) * (1 + max|y| = 1 + e) * tol * e^2 (local errors
    // added up, each amplified at most by the flow's factor exp(sin t1 - sin t) <= e^2); error falls >= 10x
    // per two decades (it is ~100x in the asymptotic regime); NFE grows by 1.5x - 4x per two decades.
    std::vector<double> err, nfe;
    for (double tol : {1e-4, 1e-6, 1e-8}) {
      auto x = scorekit::make_particles<double>(Exec(), 1, 1);
      Kokkos::deep_copy(x, 1.0);
      scorekit::DormandPrinceSettings s;
      s.rtol = s.atol = tol;
      const auto r = scorekit::solve_ode(Exec(), CosineOde<>{}, x, 0.0, 10.0, s);
      err.push_back(std::abs(scorekit::to_host(x)(0, 0) - std::exp(std::sin(10.0))));
      nfe.push_back(double(r.n_function_evaluations));
      INFO("tol " << tol << ": error " << err.back() << ", NFE " << nfe.back());
      CHECK(err.back() <= double(r.accepted_steps) * (1 + std::exp(1.0)) * tol * std::exp(2.0));
    }
    for (int k = 0; k < 2; ++k) {
      INFO("step " << k << ": errors " << err[k] << " -> " << err[k + 1] << ", NFE " << nfe[k] << " -> "
                   << nfe[k + 1]);
      CHECK(err[k + 1] < err[k] / 10);
      CHECK(nfe[k + 1] > 1.5 * nfe[k]);
      CHECK(nfe[k + 1] < 4 * nfe[k]);
    }
  }
  SECTION("the probability-flow ODE of Gaussian data, from T to eps, under VE, VP and sub-VP") {
    // Backwards the flow contracts every deviation (|x - m| ~ sqrt(v(t)), v decreasing), so the global
    // error of particle i is at most the sum of its local errors: per accepted step and coordinate at most
    // sqrt(d) (atol + rtol max|x|) (an RMS norm <= 1 bounds each component by sqrt(d) times its scale),
    // with accepted <= (NFE_i - 2) / 6. In the asymptotic regime (tol <= 1e-6) the estimate bounds the
    // local error; the error falls >= 10x per two decades and the cost grows (as above).
    Eigen::MatrixXd mu(1, 2);
    mu.row(0) = gaussian_mean.transpose();
    auto data = scorekit::GaussianMixture<double, Mem>::isotropic(
        Eigen::VectorXd::Ones(1), mu, Eigen::VectorXd::Constant(1, gaussian_sd * gaussian_sd));
    scorekit::PerturbedMixtureScore<double, Mem> score(data);
    auto check_sde = [&](const auto& sde, const char* name) {
      const double T = 1, eps = 1e-5;
      const auto kT = sde.marginal(T);
      const int n = 100;
      auto x0 = scorekit::make_particles<double>(Exec(), n, 2);
      scorekit::draw_exact(Exec(), data.perturbed(kT.scale, kT.std), x0, 11);
      const auto h0 = scorekit::to_host(x0);
      std::vector<double> worst;
      std::vector<double> mean_nfe;
      for (double tol : {1e-6, 1e-8}) {
        auto x = scorekit::make_particles<double>(Exec(), n, 2);
        Kokkos::deep_copy(x, x0);
        scorekit::DormandPrinceSettings s;
        s.rtol = s.atol = tol;
        const auto r = scorekit::solve_ode(Exec(), scorekit::probability_flow(sde, score), x, T, eps, s);
        const auto h = scorekit::to_host(x);
        const auto nfe = scorekit::to_host(r.evaluations);
        double max_err = 0;
        for (int i = 0; i < n; ++i) {
          double max_x = 0, err = 0;
          for (int j = 0; j < 2; ++j) {
            const double exact = exact_flow(sde, h0(i, j), j, T, eps);
            max_x = std::max({max_x, std::abs(h0(i, j)), std::abs(exact)});
            err = std::max(err, std::abs(h(i, j) - exact));
          }
          const double bound = double(nfe(i) - 2) / 6 * std::sqrt(2.0) * (tol + tol * max_x);
          INFO(name << ", tol " << tol << ", particle " << i << ": error " << err << ", bound " << bound);
          REQUIRE(err <= bound);
          max_err = std::max(max_err, err);
        }
        worst.push_back(max_err);
        mean_nfe.push_back(r.mean_evaluations);
        CHECK(r.n_function_evaluations == 2 * n + 6 * (r.accepted_steps + r.rejected_steps));
      }
      INFO(name << ": worst errors " << worst[0] << " -> " << worst[1] << ", mean NFE " << mean_nfe[0]
                << " -> " << mean_nfe[1]);
      CHECK(worst[1] < worst[0] / 10);
      CHECK(mean_nfe[1] > 1.5 * mean_nfe[0]);
      CHECK(mean_nfe[1] < 4 * mean_nfe[0]);
    };
    check_sde(scorekit::VarianceExplodingSDE<double>(0.01, 50), "VE");
    check_sde(scorekit::vp_sde(scorekit::LinearBeta<double>{0.1, 20}), "VP");
    check_sde(scorekit::sub_vp_sde(scorekit::LinearBeta<double>{0.1, 20}), "sub-VP");
  }
  SECTION("float") {
    // Single precision with tol = 1e-4 (well above its epsilon 1.2e-7): the same bound as for double.
    auto x = scorekit::make_particles<float>(Exec(), 1, 1);
    Kokkos::deep_copy(x, 1.0f);
    scorekit::DormandPrinceSettings s;
    s.rtol = s.atol = 1e-4;
    const auto r = scorekit::solve_ode(Exec(), CosineOde<float>{}, x, 0.0, 10.0, s);
    const double err = std::abs(double(scorekit::to_host(x)(0, 0)) - std::exp(std::sin(10.0)));
    CHECK(err <= double(r.accepted_steps) * (1 + std::exp(1.0)) * 1e-4 * std::exp(2.0));
  }
}

TEMPLATE_LIST_TEST_CASE("The evaluation count is exact: 1 + 1 + 6 per attempted step, per particle",
                        "[dormand_prince]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  Eigen::MatrixXd means(2, 2);
  means << -5, -5, 5, 5;
  auto data = scorekit::GaussianMixture<double, Mem>::isotropic(Eigen::Vector2d(0.2, 0.8), means,
                                                                Eigen::Vector2d(1, 1));
  CountingModel<scorekit::PerturbedMixtureScore<double, Mem>, Mem> counting{
      scorekit::PerturbedMixtureScore<double, Mem>(data), Kokkos::View<std::int64_t, Mem>("count")};
  scorekit::VarianceExplodingSDE<double> sde(0.01, 50);
  const auto kT = sde.marginal(1.0);
  auto x = scorekit::make_particles<double>(Exec(), 64, 2);
  scorekit::draw_exact(Exec(), data.perturbed(kT.scale, kT.std), x, 3);
  for (double first_step : {0.0, 0.01}) {
    Kokkos::deep_copy(counting.count, 0);
    auto y = scorekit::make_particles<double>(Exec(), 64, 2);
    Kokkos::deep_copy(y, x);
    scorekit::DormandPrinceSettings s;
    s.first_step = first_step;
    const auto r = scorekit::solve_ode(Exec(), scorekit::probability_flow(sde, counting), y, 1.0, 1e-5, s);
    std::int64_t counted = 0;
    Kokkos::deep_copy(counted, counting.count);
    INFO("first_step " << first_step);
    CHECK(counted == r.n_function_evaluations);
    const std::int64_t per_particle = first_step > 0 ? 1 : 2;
    CHECK(r.n_function_evaluations == 64 * per_particle + 6 * (r.accepted_steps + r.rejected_steps));
    std::int64_t sum = 0;
    const auto nfe = scorekit::to_host(r.evaluations);
    for (int i = 0; i < 64; ++i) sum += nfe(i);
    CHECK(sum == r.n_function_evaluations);
  }
}

TEMPLATE_LIST_TEST_CASE("The probability-flow ODE from exact p_T draws reproduces a mixture",
                        "[dormand_prince]", Backends) {
  // The 0.2 / 0.8 mixture at (-5,-5), (5,5), unit variances. With the exact score the flow maps p_T to
  // p_eps exactly, so the only errors are the ODE's (~tol) and sampling noise: the weight of mode 0 must be
  // within 4 binomial standard errors of 0.2, and MMD^2 to exact draws from p_eps below 5 null standard
  // deviations (Cantelli: a false alarm has probability <= 1/26 for any law; typically far less).
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  Eigen::MatrixXd means(2, 2);
  means << -5, -5, 5, 5;
  auto data = scorekit::GaussianMixture<double, Mem>::isotropic(Eigen::Vector2d(0.2, 0.8), means,
                                                                Eigen::Vector2d(1, 1));
  scorekit::PerturbedMixtureScore<double, Mem> score(data);
  const int n = 2000;
  auto check_sde = [&](const auto& sde, const char* name, std::uint64_t seed) {
    const double eps = 1e-5;
    const auto kT = sde.marginal(1.0), ke = sde.marginal(eps);
    auto x = scorekit::make_particles<double>(Exec(), n, 2);
    scorekit::draw_exact(Exec(), data.perturbed(kT.scale, kT.std), x, seed);
    const auto r = scorekit::solve_ode(Exec(), scorekit::probability_flow(sde, score), x, 1.0, eps);
    auto exact = scorekit::make_particles<double>(Exec(), n, 2);
    scorekit::draw_exact(Exec(), data.perturbed(ke.scale, ke.std), exact, seed + 1000);
    const auto w = scorekit::mode_weights(Exec(), x, means);
    const double se = scorekit::binomial_standard_error(0.2, n);
    const auto mmd = scorekit::mmd_squared(Exec(), x, exact);
    INFO(name << ": weight " << w.weights[0] << " (SE " << se << "), MMD^2 " << mmd.mmd2 << " (null sd "
              << mmd.null_sd << "), mean NFE " << r.mean_evaluations);
    CHECK(std::abs(w.weights[0] - 0.2) < 4 * se);
    CHECK(mmd.mmd2 < 5 * mmd.null_sd);
  };
  check_sde(scorekit::VarianceExplodingSDE<double>(0.01, 50), "VE", 21);
  check_sde(scorekit::vp_sde(scorekit::LinearBeta<double>{0.1, 20}), "VP", 22);
}

#if defined(KOKKOS_ENABLE_SERIAL) && defined(KOKKOS_ENABLE_OPENMP)
TEST_CASE("solve_ode gives bitwise the same result on Serial and OpenMP", "[dormand_prince]") {
  using Mem = Kokkos::HostSpace;
  Eigen::MatrixXd means(2, 2);
  means << -5, -5, 5, 5;
  auto data = scorekit::GaussianMixture<double, Mem>::isotropic(Eigen::Vector2d(0.2, 0.8), means,
                                                                Eigen::Vector2d(1, 1));
  scorekit::PerturbedMixtureScore<double, Mem> score(data);
  scorekit::VarianceExplodingSDE<double> sde(0.01, 50);
  const auto kT = sde.marginal(1.0);
  auto a = scorekit::make_particles<double>(Kokkos::Serial(), 300, 2);
  scorekit::draw_exact(Kokkos::Serial(), data.perturbed(kT.scale, kT.std), a, 5);
  auto b = scorekit::make_particles<double>(Kokkos::OpenMP(), 300, 2);
  Kokkos::deep_copy(b, a);
  const auto ra = scorekit::solve_ode(Kokkos::Serial(), scorekit::probability_flow(sde, score), a, 1.0, 1e-3);
  const auto rb = scorekit::solve_ode(Kokkos::OpenMP(), scorekit::probability_flow(sde, score), b, 1.0, 1e-3);
  CHECK(scorekit_test::bitwise_equal(a, b));
  CHECK(scorekit_test::bitwise_equal(ra.evaluations, rb.evaluations));
  CHECK(ra.rejected_steps == rb.rejected_steps);
}
#endif

TEMPLATE_LIST_TEST_CASE("solve_ode refuses bad settings, noisy systems and failed solves", "[dormand_prince]",
                        Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  auto x = scorekit::make_particles<double>(Exec(), 3, 1);
  Kokkos::deep_copy(x, 1.0);
  const CosineOde<> ode;
  auto settings = [](double rtol, double atol, double first, std::int64_t max_steps) {
    scorekit::DormandPrinceSettings s;
    s.rtol = rtol;
    s.atol = atol;
    s.first_step = first;
    s.max_steps = max_steps;
    return s;
  };
  using Catch::Contains;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(scorekit::solve_ode(Exec(), ode, x, 0.0, 1.0, settings(0, 1e-5, 0, 10)),
                    Contains("rtol"));
  CHECK_THROWS_WITH(scorekit::solve_ode(Exec(), ode, x, 0.0, 1.0, settings(1e-5, -1, 0, 10)),
                    Contains("atol"));
  CHECK_THROWS_WITH(scorekit::solve_ode(Exec(), ode, x, 0.0, 1.0, settings(nan, 1e-5, 0, 10)),
                    Contains("rtol"));
  CHECK_THROWS_WITH(scorekit::solve_ode(Exec(), ode, x, 0.0, 1.0, settings(1e-5, 1e-5, -0.1, 10)),
                    Contains("first_step"));
  CHECK_THROWS_WITH(scorekit::solve_ode(Exec(), ode, x, 0.0, 1.0, settings(1e-5, 1e-5, 0, 0)),
                    Contains("max_steps"));
  CHECK_THROWS_WITH(scorekit::solve_ode(Exec(), ode, x, 1.0, 1.0), Contains("equal"));
  CHECK_THROWS_WITH(scorekit::solve_ode(Exec(), ode, x, 0.0, nan), Contains("finite"));
  CHECK_THROWS_WITH(scorekit::solve_ode(Exec(), ode, x, -1.0, 1.0), Contains("outside"));

  Eigen::MatrixXd means(1, 1);
  means << 0;
  auto data = scorekit::GaussianMixture<double, Mem>::isotropic(Eigen::VectorXd::Ones(1), means,
                                                                Eigen::VectorXd::Ones(1));
  scorekit::PerturbedMixtureScore<double, Mem> score(data);
  scorekit::VarianceExplodingSDE<double> sde(0.01, 50);
  // Outside the SDE's [0, T], and the reverse SDE (noise) refused.
  CHECK_THROWS_WITH(scorekit::solve_ode(Exec(), scorekit::probability_flow(sde, score), x, 1.5, 0.1),
                    Contains("outside [0, 1]"));
  CHECK_THROWS_WITH(scorekit::solve_ode(Exec(), scorekit::reverse_sde(sde, score), x, 1.0, 0.1),
                    Contains("diffusion"));
  // Wrong dimension; a NaN initial state named.
  auto x2 = scorekit::make_particles<double>(Exec(), 3, 2);
  CHECK_THROWS_AS(scorekit::solve_ode(Exec(), ode, x2, 0.0, 1.0), scorekit::dimension_mismatch);
  scorekit_test::fill_host(x, [&](std::size_t i, std::size_t) { return i == 1 ? nan : 1.0; });
  CHECK_THROWS_WITH(scorekit::solve_ode(Exec(), ode, x, 0.0, 1.0), Contains("particle 1"));

  // max_steps used up: how many particles, which first, where it stopped.
  Kokkos::deep_copy(x, 1.0);
  CHECK_THROWS_WITH(scorekit::solve_ode(Exec(), ode, x, 0.0, 10.0, settings(1e-6, 1e-6, 0, 5)),
                    Contains("3 of 3 particles used up max_steps = 5") && Contains("particle 0"));
  // A singular solution (y' = y^2 from y0 = 1 blows up at t = 1): the step shrinks to nothing.
  auto one = scorekit::make_particles<double>(Exec(), 1, 1);
  Kokkos::deep_copy(one, 1.0);
  CHECK_THROWS_AS(scorekit::solve_ode(Exec(), Blowup{}, one, 0.0, 2.0), scorekit::error);
  // A state that turns NaN: non_finite_error naming the particle.
  scorekit_test::fill_host(x, [](std::size_t i, std::size_t) { return i == 2 ? -1.0 : 1.0; });
  try {
    scorekit::solve_ode(Exec(), NanAfterHalf{}, x, 0.0, 1.0);
    FAIL("no exception");
  } catch (const scorekit::non_finite_error& e) {
    CHECK(e.particle() == 2);
  }
}
