// Likelihoods through the probability-flow ODE (likelihood/log_likelihood.hpp): against the exact
// log-density of perturbed Gaussian mixtures, Hutchinson's estimate unbiased around the exact trace with
// its probe fixed over the solve, the SDE prior's mismatch bounded analytically; the exact noise-conditional
// divergence and JVP of PerturbedMixtureScore (every covariance kind); bits per dimension and dequantization;
// bad input.
#include <scorekit/density/draw.hpp>
#include <scorekit/density/gaussian_mixture.hpp>
#include <scorekit/divergence/finite_difference.hpp>
#include <scorekit/divergence/hutchinson.hpp>
#include <scorekit/likelihood/bits_per_dimension.hpp>
#include <scorekit/likelihood/log_likelihood.hpp>
#include <scorekit/schedule/linear_beta.hpp>
#include <scorekit/score/perturbed_mixture.hpp>
#include <scorekit/sde/variance_exploding.hpp>
#include <scorekit/sde/variance_preserving.hpp>

#include <catch2/catch.hpp>

#include "backends.hpp"
#include "likelihood_support.hpp"
#include "support.hpp"

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

using scorekit_test::Backends;
using scorekit_test::JvpOnly;
using scorekit_test::ode_allowance;

namespace {

/// The 2-D mixture 0.2 N((-5,-5), I) + 0.8 N((5,5), I).
template <class Real, class Mem>
scorekit::GaussianMixture<Real, Mem> mixture_2d() {
  return scorekit_test::two_modes<Real, Mem>(1, 1);
}

/// A 5-D mixture of three components with diagonal covariances.
const Eigen::Vector3d weights_5d(0.3, 0.5, 0.2);
Eigen::MatrixXd means_5d() {
  Eigen::MatrixXd m(3, 5);
  m << 2, 0, 0, 1, -1, -2, 1, 0, 0, 0, 0, -2, 2, 1, 1;
  return m;
}
Eigen::MatrixXd variances_5d() {
  Eigen::MatrixXd v(3, 5);
  v << 0.5, 1, 0.3, 0.8, 1.2, 1, 1, 1, 1, 1, 0.2, 0.4, 0.6, 0.8, 1.0;
  return v;
}
template <class Mem>
scorekit::GaussianMixture<double, Mem> mixture_5d() {
  return scorekit::GaussianMixture<double, Mem>::diagonal(weights_5d, means_5d(), variances_5d());
}

/// A 3-D mixture of two components with full (correlated) covariances.
template <class Mem>
scorekit::GaussianMixture<double, Mem> mixture_full_3d() {
  Eigen::Matrix3d c0, c1;
  c0 << 1.0, 0.6, 0.2, 0.6, 0.8, -0.3, 0.2, -0.3, 0.7;
  c1 << 0.5, -0.2, 0.1, -0.2, 1.5, 0.4, 0.1, 0.4, 0.9;
  Eigen::MatrixXd mu(2, 3);
  mu << -1, 0, 0.5, 2, 1, -1;
  return scorekit::GaussianMixture<double, Mem>::full(Eigen::Vector2d(0.4, 0.6), mu, {c0, c1});
}

/// An inner model's score with a JVP that is NaN in its first component: a broken model for the
/// non-finite check of log_likelihood.
template <class Model>
struct NanJvp {
  using value_type = typename Model::value_type;
  Model inner;
  value_type nan = std::numeric_limits<value_type>::quiet_NaN();
  KOKKOS_INLINE_FUNCTION int dim() const { return inner.dim(); }
  KOKKOS_INLINE_FUNCTION int workspace_size() const { return inner.workspace_size(); }
  KOKKOS_INLINE_FUNCTION void score(const value_type* x, value_type sigma, value_type* out,
                                    value_type* work) const {
    inner.score(x, sigma, out, work);
  }
  KOKKOS_INLINE_FUNCTION void jvp(const value_type* x, value_type sigma, const value_type* v, value_type* s,
                                  value_type* jv, value_type* work) const {
    inner.jvp(x, sigma, v, s, jv, work);
    jv[0] = nan;
  }
};

/// |log p_T(z) - log N(z; 0, s^2 I)| <= max_k |log r_k(z)| for the VE marginal p_T = sum_k w_k N(mu_k,
/// diag(lambda_k) + s^2 I) (min_k r_k <= sum_k w_k r_k <= max_k r_k), where per coordinate
///   log r_kj = -1/2 log(1 + l / s^2) + (l z^2 + 2 s^2 z mu - s^2 mu^2) / (2 s^2 (s^2 + l))
/// (the difference of the two Gaussian log-densities, l = lambda_kj, mu = mu_kj), bounded in absolute value
/// term by term with |z mu| <= |z| |mu|.
double ve_prior_mismatch_bound(const Eigen::MatrixXd& means, const Eigen::MatrixXd& lambda, double s,
                               const double* z) {
  const double s2 = s * s;
  double worst = 0;
  for (Eigen::Index k = 0; k < means.rows(); ++k) {
    double b = 0;
    for (Eigen::Index j = 0; j < means.cols(); ++j) {
      const double l = lambda(k, j), mu = means(k, j), zj = std::abs(z[j]);
      b += 0.5 * std::log1p(l / s2) +
           (l * zj * zj + 2 * s2 * zj * std::abs(mu) + s2 * mu * mu) / (2 * s2 * (s2 + l));
    }
    worst = std::max(worst, b);
  }
  return worst;
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("PerturbedMixtureScore: exact divergence and JVP against finite differences",
                        "[likelihood][perturbed_mixture]", Backends) {
  // Central differences of the score, D(h) v = (s(x + h v) - s(x - h v)) / (2 h), have error c h^2 + O(h^4):
  // Richardson's estimate of the error of D(h) is (4/3) |D(h) - D(h/2)|; the check allows twice that
  // plus 1e-9 for rounding (eps / h with h = 1e-3, on values of order 1). The trace of the d JVPs along the
  // unit vectors equals the analytic divergence up to rounding alone (both are exact formulas, O(K d^2)
  // flops on values of order 1: errors ~ K d^2 eps ~ 1e-14), checked to 1e-12 (1 + |div|).
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  (void)Exec();
  auto check = [](const auto& model, const std::vector<double>& x, double sigma, bool with_jvp) {
    const int d = model.dim();
    const std::size_t nd = std::size_t(d);
    std::vector<double> work(std::size_t(model.workspace_size()) + 1), s(nd), jv(nd), sp(nd), sm(nd), y(nd),
        v(nd);
    auto fd = [&](const std::vector<double>& dir, double h, int comp) {
      for (int j = 0; j < d; ++j) y[std::size_t(j)] = x[std::size_t(j)] + h * dir[std::size_t(j)];
      model.score(y.data(), sigma, sp.data(), work.data());
      for (int j = 0; j < d; ++j) y[std::size_t(j)] = x[std::size_t(j)] - h * dir[std::size_t(j)];
      model.score(y.data(), sigma, sm.data(), work.data());
      return (sp[std::size_t(comp)] - sm[std::size_t(comp)]) / (2 * h);
    };
    const double h = 1e-3;
    // Divergence: the trace of the finite-difference Jacobian.
    double tr_h = 0, tr_h2 = 0;
    for (int i = 0; i < d; ++i) {
      std::vector<double> e(std::size_t(d), 0.0);
      e[std::size_t(i)] = 1;
      tr_h += fd(e, h, i);
      tr_h2 += fd(e, h / 2, i);
    }
    const double div = model.divergence(x.data(), sigma, work.data());
    INFO("sigma " << sigma << ": divergence " << div << ", FD " << tr_h << " / " << tr_h2);
    CHECK(std::abs(div - tr_h2) <= 2 * (4.0 / 3) * std::abs(tr_h - tr_h2) / 4 + 1e-9 * d);
    CHECK(std::abs(div - tr_h) <= 2 * (4.0 / 3) * std::abs(tr_h - tr_h2) + 1e-9 * d);
    if (!with_jvp) return;
    for (int j = 0; j < d; ++j) v[std::size_t(j)] = 0.3 + 0.7 * std::sin(1.0 + j);
    model.jvp(x.data(), sigma, v.data(), s.data(), jv.data(), work.data());
    std::vector<double> s_ref(nd);
    model.score(x.data(), sigma, s_ref.data(), work.data());
    for (int j = 0; j < d; ++j) {
      CHECK(s[std::size_t(j)] == Approx(s_ref[std::size_t(j)]).epsilon(1e-13).margin(1e-13));
      const double a = fd(v, h, j), b = fd(v, h / 2, j);
      INFO("component " << j << ": jvp " << jv[std::size_t(j)] << ", FD " << a << " / " << b);
      CHECK(std::abs(jv[std::size_t(j)] - a) <= 2 * (4.0 / 3) * std::abs(a - b) + 1e-9);
    }
    double tr_jvp = 0;
    for (int i = 0; i < d; ++i) {
      std::vector<double> e(nd, 0.0);
      e[std::size_t(i)] = 1;
      model.jvp(x.data(), sigma, e.data(), s.data(), jv.data(), work.data());
      tr_jvp += jv[std::size_t(i)];
    }
    INFO("trace of the JVPs " << tr_jvp << ", divergence " << div);
    CHECK(std::abs(tr_jvp - div) <= 1e-12 * (1 + std::abs(div)));
  };
  SECTION("isotropic 2-D, tabulated and untabulated sigma, between the modes and on one") {
    scorekit::PerturbedMixtureScore<double, Mem> model(mixture_2d<double, Mem>(), {0.5, 2.0});
    for (double sigma : {0.5, 0.7, 2.0})
      for (const auto& x : {std::vector<double>{0.3, -0.4}, std::vector<double>{4.0, 5.5}})
        check(model, x, sigma, true);
  }
  SECTION("diagonal 5-D, a perturbed (a X + s Z) base") {
    auto base = mixture_5d<Mem>().perturbed(0.8, 0.3);
    scorekit::PerturbedMixtureScore<double, Mem> model(base);
    for (double sigma : {0.1, 1.5}) check(model, {0.5, -1.0, 0.2, 1.1, -0.3}, sigma, true);
  }
  SECTION("full covariances 2-D, tabulated (precision table) and untabulated sigma") {
    Eigen::Matrix2d c0, c1;
    c0 << 1.0, 0.6, 0.6, 0.8;
    c1 << 0.5, -0.2, -0.2, 1.5;
    Eigen::MatrixXd mu(2, 2);
    mu << -1, 0, 2, 1;
    auto mix = scorekit::GaussianMixture<double, Mem>::full(Eigen::Vector2d(0.4, 0.6), mu, {c0, c1});
    scorekit::PerturbedMixtureScore<double, Mem> model(mix, {0.3});
    for (double sigma : {0.3, 1.0})
      for (const auto& x : {std::vector<double>{0.4, 0.2}, std::vector<double>{2.0, 1.2}})
        check(model, x, sigma, true);
  }
  SECTION("full covariances 3-D, a perturbed (a X + s Z) base, tabulated and untabulated sigma") {
    scorekit::PerturbedMixtureScore<double, Mem> model(mixture_full_3d<Mem>().perturbed(0.8, 0.3), {0.2});
    for (double sigma : {0.2, 0.7})
      for (const auto& x : {std::vector<double>{0.5, 0.3, -0.2}, std::vector<double>{-0.9, 0.1, 0.6}})
        check(model, x, sigma, true);
  }
}

TEMPLATE_LIST_TEST_CASE("The ODE log-likelihood with the exact trace matches the exact log p_eps",
                        "[likelihood]", Backends) {
  // With the exact p_T as the prior the only error is the ODE's: per point, within ode_allowance (the
  // sum of the local error bounds, see above), and it falls >= 10x from tol = 1e-5 to 1e-7 (error ~ tol).
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  auto check = [](const auto& sde, const auto& data, const char* name, std::uint64_t seed) {
    scorekit::PerturbedMixtureScore<double, Mem> score(data);
    const double eps = 1e-5;
    const auto ke = sde.marginal(eps), kT = sde.marginal(sde.t_max());
    const auto p_eps = data.perturbed(ke.scale, ke.std), p_T = data.perturbed(kT.scale, kT.std);
    const int n = 60, d = data.dim();
    auto x = scorekit::make_particles<double>(Exec(), n, d);
    scorekit::draw_exact(Exec(), p_eps, x, seed);
    const auto hx = scorekit::to_host(x);
    std::vector<double> work(std::size_t(p_eps.workspace_size()));
    std::vector<double> worst;
    for (double tol : {1e-5, 1e-7}) {
      scorekit::LikelihoodSettings<> s;
      s.t_eps = eps;
      s.ode.rtol = s.ode.atol = tol;
      const auto r = scorekit::log_likelihood(Exec(), sde, score, x, s, p_T);
      const auto lp = scorekit::to_host(r.log_p);
      const auto prior = scorekit::to_host(r.prior_log_p);
      const auto delta = scorekit::to_host(r.delta);
      const auto allowances = ode_allowance(r, hx, tol);
      double max_err = 0;
      for (int i = 0; i < n; ++i) {
        const double exact = p_eps.log_prob(&hx(i, 0), work.data());
        const double allowance = allowances[std::size_t(i)];
        INFO(name << ", tol " << tol << ", point " << i << ": ODE " << lp(i) << ", exact " << exact
                  << ", allowance " << allowance);
        REQUIRE(std::abs(lp(i) - exact) <= allowance);
        REQUIRE(lp(i) == prior(i) + delta(i));
        max_err = std::max(max_err, std::abs(lp(i) - exact));
      }
      worst.push_back(max_err);
      CHECK(r.n_function_evaluations == 2 * n + 6 * (r.accepted_steps + r.rejected_steps));
    }
    INFO(name << ": worst errors " << worst[0] << " -> " << worst[1]);
    CHECK(worst[1] < worst[0] / 10);
  };
  const auto vp = scorekit::vp_sde(scorekit::LinearBeta<double>{0.1, 20});
  const scorekit::VarianceExplodingSDE<double> ve(0.01, 50);
  check(ve, mixture_2d<double, Mem>(), "VE 2-D", 1);
  check(vp, mixture_2d<double, Mem>(), "VP 2-D", 2);
  check(scorekit::sub_vp_sde(scorekit::LinearBeta<double>{0.1, 20}), mixture_2d<double, Mem>(), "sub-VP 2-D",
        3);
  check(ve, mixture_5d<Mem>(), "VE 5-D", 4);
  check(vp, mixture_5d<Mem>(), "VP 5-D", 5);

  SECTION("ExactTrace through d JVPs agrees with the analytic divergence (diagonal and full)") {
    auto same = [&](const auto& data, const char* name) {
      scorekit::PerturbedMixtureScore<double, Mem> score(data);
      JvpOnly<scorekit::PerturbedMixtureScore<double, Mem>> jvp_only{score};
      const int d = data.dim();
      auto x = scorekit::make_particles<double>(Exec(), 20, d);
      scorekit::draw_exact(Exec(), data, x, 9);
      scorekit::LikelihoodSettings<> s;
      s.ode.rtol = s.ode.atol = 1e-7;
      const auto a = scorekit::log_likelihood(Exec(), vp, score, x, s);
      const auto b = scorekit::log_likelihood(Exec(), vp, jvp_only, x, s);
      const auto la = scorekit::to_host(a.log_p), lb = scorekit::to_host(b.log_p);
      const auto hx = scorekit::to_host(x);
      const auto allowances = ode_allowance(a, hx, 1e-7);
      for (int i = 0; i < 20; ++i) {
        INFO(name << ", point " << i << ": analytic " << la(i) << ", through JVPs " << lb(i));
        CHECK(std::abs(la(i) - lb(i)) <= 2 * allowances[std::size_t(i)]);
      }
    };
    same(mixture_5d<Mem>(), "diagonal 5-D");
    same(mixture_full_3d<Mem>(), "full 3-D");
  }
}

TEMPLATE_LIST_TEST_CASE("The SDE prior's mismatch is bounded analytically (VE)", "[likelihood]", Backends) {
  // The prior does not enter the ODE: with N(0, prior_std^2 I) instead of the exact p_T the latent and delta
  // are bitwise the same, and log p differs by exactly log N(x_T) - log p_T(x_T), which for VE (p_T is the
  // data convolved with N(0, prior_std^2 I), prior_std^2 = sigma_max^2 - sigma_min^2) is bounded by
  // ve_prior_mismatch_bound.
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const auto data = mixture_2d<double, Mem>();
  scorekit::PerturbedMixtureScore<double, Mem> score(data);
  const scorekit::VarianceExplodingSDE<double> sde(0.01, 50);
  const auto ke = sde.marginal(1e-5), kT = sde.marginal(1.0);
  REQUIRE(kT.std == Approx(sde.prior_std()).epsilon(1e-15));
  const auto p_T = data.perturbed(kT.scale, kT.std);
  const int n = 100;
  auto x = scorekit::make_particles<double>(Exec(), n, 2);
  scorekit::draw_exact(Exec(), data.perturbed(ke.scale, ke.std), x, 17);
  const auto exact_prior =
      scorekit::log_likelihood(Exec(), sde, score, x, scorekit::LikelihoodSettings<>{}, p_T);
  const auto sde_prior = scorekit::log_likelihood(Exec(), sde, score, x);
  CHECK(scorekit_test::bitwise_equal(exact_prior.latent, sde_prior.latent));
  CHECK(scorekit_test::bitwise_equal(exact_prior.delta, sde_prior.delta));
  const auto z = scorekit::to_host(sde_prior.latent);
  const auto la = scorekit::to_host(exact_prior.log_p), lb = scorekit::to_host(sde_prior.log_p);
  Eigen::MatrixXd means(2, 2);
  means << -5, -5, 5, 5;
  const Eigen::MatrixXd lambda = Eigen::MatrixXd::Ones(2, 2);
  std::vector<double> work(2);
  double worst = 0;
  for (int i = 0; i < n; ++i) {
    const double s = sde.prior_std();
    const double log_gauss = -0.5 * (z(i, 0) * z(i, 0) + z(i, 1) * z(i, 1)) / (s * s) -
                             std::log(2 * scorekit::math::pi<double>() * s * s);
    const double mismatch = log_gauss - p_T.log_prob(&z(i, 0), work.data());
    INFO("point " << i << ": difference " << lb(i) - la(i) << ", mismatch " << mismatch);
    CHECK(lb(i) - la(i) == Approx(mismatch).margin(1e-12));
    CHECK(std::abs(mismatch) <= ve_prior_mismatch_bound(means, lambda, s, &z(i, 0)));
    worst = std::max(worst, std::abs(mismatch));
  }
  // For these points (|x_T| up to ~3 prior_std) the mismatch is well below a nat.
  CHECK(worst < 1.0);
}

TEMPLATE_LIST_TEST_CASE("Hutchinson's estimate is unbiased around the exact trace, its probe fixed per point",
                        "[likelihood][hutchinson]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  SECTION("mean over independent probes within 4 standard errors of the ExactTrace result") {
    // One data point replicated R times: particle i draws its probe from (seed, i), so the replicates are R
    // independent estimates. The mean is compared with the ExactTrace solve; the ODE errors of the runs
    // differ by at most the two allowances (tol = 1e-6), added to 4 SE (a false alarm rate of 6e-5 per check
    // by the CLT).
    auto check = [](const auto& sde, const auto& data, const char* name, auto estimator, int reps) {
      scorekit::PerturbedMixtureScore<double, Mem> score(data);
      const auto ke = sde.marginal(1e-5);
      const int d = data.dim();
      auto point = scorekit::make_particles<double>(Exec(), 1, d);
      scorekit::draw_exact(Exec(), data.perturbed(ke.scale, ke.std), point, 31);
      const auto hp = scorekit::to_host(point);
      auto x = scorekit::make_particles<double>(Exec(), reps, d);
      scorekit_test::fill_host(x, [&](std::size_t, std::size_t j) { return hp(0, j); });
      scorekit::LikelihoodSettings<> exact_settings;
      exact_settings.ode.rtol = exact_settings.ode.atol = 1e-6;
      const auto exact = scorekit::log_likelihood(Exec(), sde, score, point, exact_settings);
      scorekit::LikelihoodSettings<decltype(estimator)> s;
      s.ode = exact_settings.ode;
      s.estimator = estimator;
      s.seed = 77;
      const auto r = scorekit::log_likelihood(Exec(), sde, score, x, s);
      const auto lp = scorekit::to_host(r.log_p);
      const auto hx = scorekit::to_host(x);
      const auto allowances = ode_allowance(r, hx, 1e-6);
      double mean = 0, ss = 0, allowance = 0;
      for (int i = 0; i < reps; ++i) {
        mean += lp(i);
        allowance = std::max(allowance, allowances[std::size_t(i)]);
      }
      mean /= reps;
      for (int i = 0; i < reps; ++i) ss += (lp(i) - mean) * (lp(i) - mean);
      const double se = std::sqrt(ss / (reps - 1) / reps);
      const double reference = scorekit::to_host(exact.log_p)(0);
      allowance += ode_allowance(exact, hp, 1e-6)[0];
      INFO(name << ": Hutchinson mean " << mean << " (SE " << se << ", sd " << se * std::sqrt(double(reps))
                << "), ExactTrace " << reference << ", ODE allowance " << allowance);
      CHECK(std::abs(mean - reference) <= 4 * se + allowance);
      CHECK(se > 0);
    };
    const scorekit::VarianceExplodingSDE<double> ve(0.01, 50);
    const auto vp = scorekit::vp_sde(scorekit::LinearBeta<double>{0.1, 20});
    using Gauss = scorekit::Hutchinson<scorekit::GaussianProbe>;
    using Rademacher = scorekit::Hutchinson<scorekit::RademacherProbe>;
    check(ve, mixture_2d<double, Mem>(), "VE 2-D Gaussian", Gauss(1), 2000);
    check(ve, mixture_2d<double, Mem>(), "VE 2-D Rademacher", Rademacher(1), 1000);
    check(vp, mixture_2d<double, Mem>(), "VP 2-D Gaussian", Gauss(1), 1000);
    check(vp, mixture_2d<double, Mem>(), "VP 2-D Rademacher", Rademacher(1), 1000);
    check(ve, mixture_5d<Mem>(), "VE 5-D Rademacher", Rademacher(1), 500);
    check(vp, mixture_5d<Mem>(), "VP 5-D Gaussian", Gauss(1), 500);
    check(vp, mixture_full_3d<Mem>(), "VP 3-D full Rademacher", Rademacher(1), 500);
  }
  SECTION("the probe is the one of CounterRng(seed, i, 0, divergence_probe), the same all along the solve") {
    // Gaussian data N(mu, s0^2 I): the Jacobian of the drift is c(t) I, so with a fixed probe v the estimate
    // of the divergence is |v|^2 / d times the exact one at every time, and delta_Hutchinson = |v|^2 / d
    // delta_exact exactly (up to each solve's ODE error). A probe redrawn along the solve would break this.
    Eigen::MatrixXd mu(1, 3);
    mu << 1, -2, 0.5;
    auto data = scorekit::GaussianMixture<double, Mem>::isotropic(Eigen::VectorXd::Ones(1), mu,
                                                                  Eigen::VectorXd::Constant(1, 0.25));
    scorekit::PerturbedMixtureScore<double, Mem> score(data);
    const auto vp = scorekit::vp_sde(scorekit::LinearBeta<double>{0.1, 20});
    const int n = 40;
    auto x = scorekit::make_particles<double>(Exec(), n, 3);
    scorekit::draw_exact(Exec(), data, x, 2);
    const auto hx = scorekit::to_host(x);
    const double tol = 1e-9;
    scorekit::LikelihoodSettings<> es;
    es.ode.rtol = es.ode.atol = tol;
    const auto exact = scorekit::log_likelihood(Exec(), vp, score, x, es);
    scorekit::LikelihoodSettings<scorekit::Hutchinson<scorekit::GaussianProbe>> hs;
    hs.ode = es.ode;
    hs.seed = 123;
    const auto hutch = scorekit::log_likelihood(Exec(), vp, score, x, hs);
    const auto de = scorekit::to_host(exact.delta), dh = scorekit::to_host(hutch.delta);
    const auto allow_h = ode_allowance(hutch, hx, tol), allow_e = ode_allowance(exact, hx, tol);
    for (int i = 0; i < n; ++i) {
      scorekit::CounterRng<double> rng(123, std::uint64_t(i), 0, scorekit::RngStream::divergence_probe);
      double v[3];
      scorekit::GaussianProbe::draw(rng, 3, v);
      const double ratio = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]) / 3;
      const double allowance = allow_h[std::size_t(i)] + ratio * allow_e[std::size_t(i)];
      INFO("point " << i << ": delta " << dh(i) << ", |v|^2/d delta_exact " << ratio * de(i));
      CHECK(std::abs(dh(i) - ratio * de(i)) <= allowance);
    }
    // The same seed gives bitwise the same result; another seed other probes.
    CHECK(
        scorekit_test::bitwise_equal(hutch.log_p, scorekit::log_likelihood(Exec(), vp, score, x, hs).log_p));
    hs.seed = 124;
    CHECK(
        !scorekit_test::bitwise_equal(hutch.log_p, scorekit::log_likelihood(Exec(), vp, score, x, hs).log_p));
  }
}

TEMPLATE_LIST_TEST_CASE(
    "FiniteDifferenceDivergence plugs in: Hutchinson's probes with differences of the drift", "[likelihood]",
    Backends) {
  // Same seed, same probe law: particle i's probe is the same for Hutchinson<RademacherProbe> and
  // FiniteDifferenceDivergence<RademacherProbe>, whose estimate differs from v^T J v by c h^2 + O(h^4). So
  // per point |delta_FD(h) - delta_H| <= 2 (4/3) |delta_FD(h) - delta_FD(h/2)| (Richardson, as above) plus
  // the ODE allowances of the two solves.
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  using FD = scorekit::FiniteDifferenceDivergence<scorekit::RademacherProbe>;
  scorekit::PerturbedMixtureScore<double, Mem> score(mixture_5d<Mem>());
  const auto vp = scorekit::vp_sde(scorekit::LinearBeta<double>{0.1, 20});
  const int n = 10;
  auto x = scorekit::make_particles<double>(Exec(), n, 5);
  scorekit::draw_exact(Exec(), mixture_5d<Mem>(), x, 12);
  const auto hx = scorekit::to_host(x);
  const double tol = 1e-9;
  scorekit::DormandPrinceSettings ode;
  ode.rtol = ode.atol = tol;
  const scorekit::LikelihoodSettings<scorekit::Hutchinson<scorekit::RademacherProbe>> hs{
      1e-5, ode, scorekit::Hutchinson<scorekit::RademacherProbe>(1), 41};
  const auto h = scorekit::log_likelihood(Exec(), vp, score, x, hs);
  const auto f1 = scorekit::log_likelihood(Exec(), vp, score, x,
                                           scorekit::LikelihoodSettings<FD>{1e-5, ode, FD(1, 2e-2), 41});
  const auto f2 = scorekit::log_likelihood(Exec(), vp, score, x,
                                           scorekit::LikelihoodSettings<FD>{1e-5, ode, FD(1, 1e-2), 41});
  const auto dh = scorekit::to_host(h.delta), d1 = scorekit::to_host(f1.delta),
             d2 = scorekit::to_host(f2.delta);
  const auto ah = ode_allowance(h, hx, tol), a1 = ode_allowance(f1, hx, tol), a2 = ode_allowance(f2, hx, tol);
  for (int i = 0; i < n; ++i) {
    INFO("point " << i << ": Hutchinson " << dh(i) << ", FD(h) " << d1(i) << ", FD(h/2) " << d2(i));
    CHECK(std::abs(d1(i) - dh(i)) <= 2 * (4.0 / 3) * std::abs(d1(i) - d2(i)) +
                                         2 * (ah[std::size_t(i)] + a1[std::size_t(i)] + a2[std::size_t(i)]));
    CHECK(d1(i) != dh(i));
  }
}

TEMPLATE_LIST_TEST_CASE("log_likelihood in single precision", "[likelihood]", Backends) {
  // float with tol = 1e-4: within the float run's own ODE allowance plus float rounding of the result
  // (|log p| <= 10, 1e-5) of the double-precision ExactTrace value.
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  scorekit::PerturbedMixtureScore<float, Mem> score_f(mixture_2d<float, Mem>());
  scorekit::PerturbedMixtureScore<double, Mem> score_d(mixture_2d<double, Mem>());
  const auto vp_f = scorekit::vp_sde(scorekit::LinearBeta<float>{0.1f, 20.0f});
  const auto vp_d = scorekit::vp_sde(scorekit::LinearBeta<double>{0.1, 20});
  auto xd = scorekit::make_particles<double>(Exec(), 20, 2);
  scorekit::draw_exact(Exec(), mixture_2d<double, Mem>(), xd, 4);
  auto xf = scorekit::make_particles<float>(Exec(), 20, 2);
  const auto hd = scorekit::to_host(xd);
  scorekit_test::fill_host(xf, [&](std::size_t i, std::size_t j) { return float(hd(i, j)); });
  scorekit::LikelihoodSettings<> s;
  s.ode.rtol = s.ode.atol = 1e-4;
  const auto rf = scorekit::log_likelihood(Exec(), vp_f, score_f, xf, s);
  s.ode.rtol = s.ode.atol = 1e-9;
  const auto rd = scorekit::log_likelihood(Exec(), vp_d, score_d, xd, s);
  const auto lf = scorekit::to_host(rf.log_p);
  const auto ld = scorekit::to_host(rd.log_p);
  const auto hf = scorekit::to_host(xf);
  const auto allowances = ode_allowance(rf, hf, 1e-4);
  for (int i = 0; i < 20; ++i) CHECK(std::abs(double(lf(i)) - ld(i)) <= allowances[std::size_t(i)] + 1e-5);
}

TEMPLATE_LIST_TEST_CASE("log_likelihood refuses bad input", "[likelihood]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  using Catch::Contains;
  scorekit::PerturbedMixtureScore<double, Mem> score(mixture_2d<double, Mem>());
  const scorekit::VarianceExplodingSDE<double> sde(0.01, 50);
  auto x = scorekit::make_particles<double>(Exec(), 4, 2);
  Kokkos::deep_copy(x, 0.5);
  scorekit::LikelihoodSettings<> s;
  for (double t : {0.0, -1e-3, 1.0, 2.0, std::numeric_limits<double>::quiet_NaN()}) {
    s.t_eps = t;
    CHECK_THROWS_WITH(scorekit::log_likelihood(Exec(), sde, score, x, s), Contains("t_eps"));
  }
  s.t_eps = 1e-5;
  s.ode.rtol = 0;
  CHECK_THROWS_WITH(scorekit::log_likelihood(Exec(), sde, score, x, s), Contains("rtol"));
  s.ode.rtol = 1e-5;
  auto x3 = scorekit::make_particles<double>(Exec(), 4, 3);
  CHECK_THROWS_AS(scorekit::log_likelihood(Exec(), sde, score, x3, s), scorekit::dimension_mismatch);
  CHECK_THROWS_AS(
      scorekit::log_likelihood(Exec(), sde, score, x, s, scorekit::IsotropicGaussianPrior<double>{3, 1.0}),
      scorekit::dimension_mismatch);
  scorekit_test::fill_host(x, [](std::size_t i, std::size_t j) {
    return i == 2 && j == 1 ? std::numeric_limits<double>::quiet_NaN() : 0.5;
  });
  CHECK_THROWS_WITH(scorekit::log_likelihood(Exec(), sde, score, x, s), Contains("particle 2"));
  // Too few steps allowed: named.
  Kokkos::deep_copy(x, 0.5);
  s.ode.max_steps = 3;
  CHECK_THROWS_WITH(scorekit::log_likelihood(Exec(), sde, score, x, s), Contains("max_steps = 3"));
  // Hutchinson on a model whose JVP is NaN: the non-finite state is caught and named.
  NanJvp<scorekit::PerturbedMixtureScore<double, Mem>> broken{score};
  scorekit::LikelihoodSettings<scorekit::Hutchinson<>> hs;
  CHECK_THROWS_AS(scorekit::log_likelihood(Exec(), sde, broken, x, hs), scorekit::non_finite_error);
}

TEST_CASE("Bits per dimension: the dequantization bound, exactly", "[likelihood][bpd]") {
  using Catch::Contains;
  SECTION("a uniform model gives exactly 8 bits per dimension on [0, 1] and on [-1, 1]") {
    // Uniform on [0, 1]^D: log p = 0; on [-1, 1]^D: log p = -D ln 2.
    for (std::int64_t D : {1, 3, 3072}) {
      CHECK(scorekit::bits_per_dimension(0.0, D) == 8.0);
      CHECK(scorekit::bits_per_dimension(-double(D) * std::log(2.0), D,
                                         scorekit::UniformDequantization{256, -1, 1}) ==
            Approx(8.0).epsilon(1e-15));
    }
    // score_sde's offsets: 8 for [0, 1] data, 7 for centred data (log p = 0 isolates the offset).
    CHECK(scorekit::bits_per_dimension(0.0, 10, 256, 1) == 8.0);
    CHECK(scorekit::bits_per_dimension(0.0, 10, 256, 2) == 7.0);
  }
  SECTION("a model constant on each cell: the bound is exact, -log2 P(x)") {
    // p_Y = K P(x) on the cell of x (density K P on a cell of width 1/K), so log p(z) = log(K P / (hi - lo)).
    for (double P : {0.5, 0.01, 1.0 / 256}) {
      CHECK(scorekit::bits_per_dimension(std::log(256 * P), 1) == Approx(-std::log2(P)).epsilon(1e-14));
      CHECK(scorekit::bits_per_dimension(std::log(256 * P / 2), 1,
                                         scorekit::UniformDequantization{256, -1, 1}) ==
            Approx(-std::log2(P)).epsilon(1e-14));
    }
  }
  SECTION("bad arguments") {
    CHECK_THROWS_WITH(scorekit::bits_per_dimension(0.0, 0), Contains("dimension"));
    CHECK_THROWS_WITH(scorekit::bits_per_dimension(0.0, 1, 1.0), Contains("levels"));
    CHECK_THROWS_WITH(scorekit::bits_per_dimension(0.0, 1, 256, 0.0), Contains("data_scale"));
    CHECK_THROWS_WITH(scorekit::bits_per_dimension(std::nan(""), 1), Contains("NaN"));
    CHECK_THROWS_WITH(scorekit::bits_per_dimension(0.0, 1, scorekit::UniformDequantization{256, 1, -1}),
                      Contains("lo < hi"));
  }
}

TEMPLATE_LIST_TEST_CASE("Dequantization and the Gaussian bits-per-dimension bound", "[likelihood][bpd]",
                        Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  using Catch::Contains;
  const int n = 4000, D = 3;
  Kokkos::View<std::uint8_t**, Kokkos::LayoutRight, Mem> pixels("pixels", n, D);
  const int values[D] = {0, 100, 255};
  scorekit_test::fill_host(pixels, [&](std::size_t, std::size_t j) { return values[j]; });
  const scorekit::UniformDequantization q{256, -1, 1};
  Kokkos::View<double**, Kokkos::LayoutRight, Mem> z("z", n, D);
  scorekit::dequantize(Exec(), pixels, z, 8, q);
  const auto hz = scorekit::to_host(z);
  const double w = 2.0 / 256;
  SECTION("each value lies in its cell, and the draws are reproducible") {
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < D; ++j) {
        REQUIRE(hz(i, j) > -1 + w * values[j]);
        REQUIRE(hz(i, j) < -1 + w * (values[j] + 1));
      }
    Kokkos::View<double**, Kokkos::LayoutRight, Mem> again("again", n, D);
    scorekit::dequantize(Exec(), pixels, again, 8, q);
    CHECK(scorekit_test::bitwise_equal(z, again));
  }
  SECTION("a Gaussian model: the Monte Carlo bound matches its closed form and lies above -log2 P") {
    // Model p(z) = prod_j N(z_j; m, s^2). Over the cell of x (centre c, width w) E_u[(z - m)^2] = (c - m)^2
    // + w^2 / 12, so E_u log p = sum_j [-1/2 log(2 pi s^2) - ((c_j - m)^2 + w^2/12) / (2 s^2)]; the mean of
    // bits_per_dimension over the n draws must be within 4 SE of the bound from it, and the bound (Jensen)
    // above the exact -log2 P(x) / D, P(x) = prod_j [Phi((c_j + w/2 - m)/s) - Phi((c_j - w/2 - m)/s)].
    const double m = -0.1, s = 0.6;
    Kokkos::View<double*, Mem> log_p("log_p", n);
    auto h_lp = Kokkos::create_mirror_view(log_p);
    for (int i = 0; i < n; ++i) {
      double lp = 0;
      for (int j = 0; j < D; ++j)
        lp += -0.5 * std::log(2 * scorekit::math::pi<double>() * s * s) -
              (hz(i, j) - m) * (hz(i, j) - m) / (2 * s * s);
      h_lp(i) = lp;
    }
    Kokkos::deep_copy(log_p, h_lp);
    const auto bpd = scorekit::mean_bits_per_dimension(log_p, D, q);
    double expected_log_p = 0, log_P = 0;
    auto Phi = [](double t) { return 0.5 * std::erfc(-t / std::sqrt(2.0)); };
    for (int j = 0; j < D; ++j) {
      const double c = -1 + w * (values[j] + 0.5);
      expected_log_p += -0.5 * std::log(2 * scorekit::math::pi<double>() * s * s) -
                        ((c - m) * (c - m) + w * w / 12) / (2 * s * s);
      log_P += std::log(Phi((c + w / 2 - m) / s) - Phi((c - w / 2 - m) / s));
    }
    const double bound = scorekit::bits_per_dimension(expected_log_p, D, q);
    INFO("mean bpd " << bpd.mean << " (SE " << bpd.standard_error << "), closed form " << bound
                     << ", -log2 P / D " << -log_P / (D * std::log(2.0)));
    CHECK(bpd.n == n);
    CHECK(std::abs(bpd.mean - bound) <= 4 * bpd.standard_error);
    CHECK(bound >= -log_P / (D * std::log(2.0)));
    // The cells are narrow against s: the bound is tight to ~w^2 / s^2.
    CHECK(bound - (-log_P / (D * std::log(2.0))) < 1e-3);
  }
  SECTION("bad input") {
    Kokkos::View<double**, Kokkos::LayoutRight, Mem> bad("bad", 2, 2);
    Kokkos::View<double**, Kokkos::LayoutRight, Mem> out("out", 2, 2);
    for (double v : {256.0, -1.0, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
      scorekit_test::fill_host(bad, [&](std::size_t i, std::size_t j) { return i == 1 && j == 0 ? v : 3.0; });
      CHECK_THROWS_WITH(scorekit::dequantize(Exec(), bad, out, 1, q), Contains("x(1, 0)"));
    }
    Kokkos::View<double**, Kokkos::LayoutRight, Mem> wrong("wrong", 2, 3);
    CHECK_THROWS_AS(scorekit::dequantize(Exec(), bad, wrong, 1, q), scorekit::dimension_mismatch);
    CHECK_THROWS_WITH(scorekit::dequantize(Exec(), pixels, z, 1, scorekit::UniformDequantization{1, 0, 1}),
                      Contains("levels"));
  }
}
