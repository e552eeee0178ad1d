// The reverse-process integrators (reverse diffusion, ancestral sampling, DDIM, predictor-corrector with a
// Langevin corrector, and Euler-Maruyama on the reverse SDE and the probability-flow ODE), all with exact
// mixture scores: their one-step formulas against score_sde's and DDPM/DDIM's special forms, their
// samples against exact draws of the data law, DDIM's order against a closed-form ODE solution, and bad
// input.
#include "backends.hpp"
#include "support.hpp"

#include <scorekit/density/draw.hpp>
#include <scorekit/density/gaussian_mixture.hpp>
#include <scorekit/integrate/ancestral.hpp>
#include <scorekit/integrate/ddim.hpp>
#include <scorekit/integrate/discrete_transition.hpp>
#include <scorekit/integrate/euler_maruyama.hpp>
#include <scorekit/integrate/predictor_corrector.hpp>
#include <scorekit/integrate/reverse_diffusion.hpp>
#include <scorekit/metrics/mmd.hpp>
#include <scorekit/metrics/mode_weights.hpp>
#include <scorekit/schedule/linear_beta.hpp>
#include <scorekit/score/perturbed_mixture.hpp>
#include <scorekit/sde/langevin.hpp>
#include <scorekit/sde/reverse.hpp>
#include <scorekit/sde/variance_exploding.hpp>
#include <scorekit/sde/variance_preserving.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

using scorekit_test::Backends;

namespace {

using HostSpace = Kokkos::HostSpace;
using LinearBeta = scorekit::LinearBeta<double>;

const scorekit::VarianceExplodingSDE<double> ve_sde(0.01, 50);
const auto vp_sde = scorekit::vp_sde(LinearBeta{0.1, 20});
const auto sub_vp_sde = scorekit::sub_vp_sde(LinearBeta{0.1, 20});

// p = 0.2 N((-5,-5), I) + 0.8 N((5,5), I): modes 7.1 standard deviations from their bisector, so the
// nearest-mode fraction of exact draws is 0.2 up to 1e-12.
template <class Real, class Mem>
scorekit::GaussianMixture<Real, Mem> two_modes() {
  return scorekit_test::two_modes<Real, Mem>(1, 1);
}
using scorekit_test::two_mode_means;

// Unequal, correlated covariances: 0.3 N((-6,0), C0) + 0.7 N((6,1), C1). Along the line between the means
// the wider component has sd 1.42 and the bisector is 6.0 away (4.2 sd), so the nearest-mode fraction of
// exact draws is 0.3 within 2e-5, far below the sampling error used below.
template <class Real, class Mem>
scorekit::GaussianMixture<Real, Mem> unequal_modes() {
  Eigen::MatrixXd means(2, 2);
  means << -6, 0, 6, 1;
  Eigen::MatrixXd c0(2, 2), c1(2, 2);
  c0 << 2.0, 0.8, 0.8, 1.0;
  c1 << 0.5, -0.2, -0.2, 0.3;
  return scorekit::GaussianMixture<Real, Mem>::full(Eigen::Vector2d(0.3, 0.7), means, {c0, c1});
}
Eigen::MatrixXd unequal_mode_means() {
  Eigen::MatrixXd means(2, 2);
  means << -6, 0, 6, 1;
  return means;
}

// Max |a - b| / (1 + |b|) over two host particle arrays.
template <class A, class B>
double max_relative_difference(const A& a, const B& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.extent(0); ++i)
    for (std::size_t j = 0; j < a.extent(1); ++j)
      worst = std::max(worst, std::abs(double(a(i, j)) - double(b(i, j))) / (1 + std::abs(double(b(i, j)))));
  return worst;
}

// The standard normals step 1 of particle i draws (integrate's CounterRng(seed, i, 1)), in order.
std::vector<double> step_normals(std::uint64_t seed, std::size_t i, int d) {
  scorekit::CounterRng<double> rng(seed, i, 1);
  std::vector<double> z(static_cast<std::size_t>(d));
  for (auto& v : z) v = rng.normal();
  return z;
}

}  // namespace

TEST_CASE("The discrete transition is the exact transition of each linear SDE", "[integrate][reverse]") {
  // shat^2 = s(t)^2 - abar^2 s(t')^2 must equal int_{t'}^t (a(t)/a(u))^2 g(u)^2 du, computed here by
  // composite Simpson from the drift and diffusion alone. Simpson's error is O(h^4): the estimate
  // |S_2n - S_n| / 15 (Richardson) bounds it, and the check allows 10 times that plus rounding.
  auto check = [](const auto& sde, double t_lo, double t_hi) {
    const auto tr = scorekit::discrete_transition(sde, t_lo, t_hi);
    auto simpson = [&](int n) {
      // a(t)/a(u) = exp(int_u^t f): f integrated by its own Simpson rule inside (f is smooth).
      auto log_ratio = [&](double u) {
        const int m = 64;
        const double h = (t_hi - u) / m;
        double s = sde.drift_coefficient(u) + sde.drift_coefficient(t_hi);
        for (int k = 1; k < m; ++k) s += (k % 2 ? 4 : 2) * sde.drift_coefficient(u + k * h);
        return s * h / 3;
      };
      auto f = [&](double u) {
        const double g = sde.diffusion(u);
        return std::exp(2 * log_ratio(u)) * g * g;
      };
      const double h = (t_hi - t_lo) / n;
      double s = f(t_lo) + f(t_hi);
      for (int k = 1; k < n; ++k) s += (k % 2 ? 4 : 2) * f(t_lo + k * h);
      return s * h / 3;
    };
    const double coarse = simpson(200), fine = simpson(400);
    const double bound = 10 * std::abs(fine - coarse) / 15 + 1e-13 * std::abs(fine);
    INFO("t' = " << t_lo << ", t = " << t_hi << ": shat^2 " << tr.variance << ", quadrature " << fine);
    CHECK(std::abs(tr.variance - fine) <= bound);
    CHECK(tr.ratio == Approx(sde.marginal(t_hi).scale / sde.marginal(t_lo).scale).epsilon(1e-15));
  };
  for (auto [lo, hi] : {std::pair<double, double>{0.55, 0.6}, {0.0, 0.05}, {0.2, 0.9}}) {
    check(ve_sde, lo, hi);
    check(vp_sde, lo, hi);
    check(sub_vp_sde, lo, hi);
  }
  // The VP ratio is sqrt(1 - beta_i) with beta_i = 1 - exp(-int beta) = shat^2.
  const auto tr = scorekit::discrete_transition(vp_sde, 0.55, 0.6);
  const double beta_i =
      -std::expm1(-(LinearBeta{0.1, 20}.integral(0.6) - LinearBeta{0.1, 20}.integral(0.55)));
  CHECK(tr.variance == Approx(beta_i).epsilon(1e-13));
  CHECK(tr.ratio == Approx(std::sqrt(1 - beta_i)).epsilon(1e-14));
}

TEMPLATE_LIST_TEST_CASE("One reverse step equals score_sde's VE and VP forms", "[integrate][reverse]",
                        Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const auto mix = two_modes<double, Mem>();
  const scorekit::PerturbedMixtureScore<double, Mem> model(mix);
  const auto host_mix = two_modes<double, HostSpace>();
  const scorekit::PerturbedMixtureScore<double, HostSpace> host_model(host_mix);
  const int n = 16, d = 2;
  const std::uint64_t seed = 21;
  auto start = [&] {
    scorekit::ParticleView<double, Mem> x("x", n, d);
    scorekit_test::fill_host(
        x, [](std::size_t i, std::size_t j) { return 4 * std::sin(1.3 * double(i) + 0.7 * double(j)); });
    return x;
  };
  // One step t -> t_next with the given integrator; noise off returns the step's mean.
  auto one_step = [&](const auto& system, const auto& integrator, double t, double t_next, bool noise) {
    auto x = start();
    scorekit::IntegrateSettings s;
    s.times = std::vector<double>{t, t_next};
    s.seed = seed;
    s.remove_last_noise = !noise;
    scorekit::integrate(Exec(), system, integrator, x, s);
    return scorekit::to_host(x);
  };
  auto x0 = scorekit::to_host(start());
  // The exact score of p_t at every start point, on the host.
  auto scores = [&](const auto& sde, double t) {
    std::vector<std::array<double, 2>> g(n);
    std::vector<double> work(std::size_t(scorekit::time_score_workspace_size(host_model)));
    for (int i = 0; i < n; ++i)
      scorekit::score_at_time(sde, host_model, d, &x0(i, 0), t, g[std::size_t(i)].data(), work.data());
    return g;
  };
  // Rounding only: a dozen operations on O(10) values; 1e-12 relative is ~5000 ulp.
  const double tol = 1e-12;
  // expected(i, j, g, z) for every particle.
  auto expect = [&](const auto& got, auto formula, const std::vector<std::array<double, 2>>& g, bool noise) {
    Kokkos::View<double**, HostSpace> want("want", n, d);
    for (int i = 0; i < n; ++i) {
      const auto z = step_normals(seed, std::size_t(i), d);
      for (int j = 0; j < d; ++j)
        want(i, j) = formula(x0(i, j), g[std::size_t(i)][std::size_t(j)], noise ? z[std::size_t(j)] : 0.0);
    }
    return max_relative_difference(got, want);
  };

  const std::vector<std::pair<double, double>> grid_steps = {{0.6, 0.55}, {0.05, 0.0}, {1.0, 0.9}};
  SECTION("VE") {
    for (auto [t, t_next] : grid_steps) {
      INFO("step " << t << " -> " << t_next);
      const auto rev = scorekit::reverse_sde(ve_sde, model);
      const auto pf = scorekit::probability_flow(ve_sde, model);
      const auto g = scores(ve_sde, t);
      // score_sde's sigma_i, sigma_{i-1}: the kernel stds at t and t_next.
      const double si = ve_sde.marginal(t).std, sp = ve_sde.marginal(t_next).std;
      const double dv = si * si - sp * sp;
      for (bool noise : {false, true}) {
        INFO("noise " << noise);
        // ReverseDiffusionPredictor: x + (sigma_i^2 - sigma_{i-1}^2) s + sqrt(sigma_i^2 - sigma_{i-1}^2) z.
        CHECK(expect(
                  one_step(rev, scorekit::ReverseDiffusion{}, t, t_next, noise),
                  [&](double x, double s, double z) { return x + dv * s + std::sqrt(dv) * z; }, g,
                  noise) < tol);
        // AncestralSamplingPredictor: x + (sigma_i^2 - sigma_{i-1}^2) s,
        // std sqrt(sigma_{i-1}^2 (sigma_i^2 - sigma_{i-1}^2) / sigma_i^2).
        const double std_anc = std::sqrt(sp * sp * dv / (si * si));
        auto ancestral = [&](double x, double s, double z) { return x + dv * s + std_anc * z; };
        CHECK(expect(one_step(rev, scorekit::AncestralSampling{}, t, t_next, noise), ancestral, g, noise) <
              tol);
        // DDIM with eta = 1 is the ancestral step (same mean, same std, same draws).
        CHECK(expect(one_step(rev, scorekit::Ddim{1.0}, t, t_next, noise), ancestral, g, noise) < tol);
      }
      // Probability flow: x + (sigma_i^2 - sigma_{i-1}^2) s / 2, no noise.
      CHECK(expect(
                one_step(pf, scorekit::ReverseDiffusion{}, t, t_next, true),
                [&](double x, double s, double) { return x + 0.5 * dv * s; }, g, false) < tol);
      // DDIM eta = 0: Euler in sigma for dx/dsigma = -sigma s, x + sigma_i (sigma_i - sigma_{i-1}) s; the
      // same on either system.
      auto euler_sigma = [&](double x, double s, double) { return x + si * (si - sp) * s; };
      CHECK(expect(one_step(rev, scorekit::Ddim{}, t, t_next, true), euler_sigma, g, false) < tol);
      CHECK(expect(one_step(pf, scorekit::Ddim{}, t, t_next, true), euler_sigma, g, false) < tol);
    }
  }
  SECTION("VP") {
    for (auto [t, t_next] : grid_steps) {
      INFO("step " << t << " -> " << t_next);
      const auto rev = scorekit::reverse_sde(vp_sde, model);
      const auto pf = scorekit::probability_flow(vp_sde, model);
      const auto g = scores(vp_sde, t);
      // DDPM in terms of alphabar = exp(-int_0^t beta): beta_i = 1 - alphabar_i / alphabar_{i-1}.
      const LinearBeta beta{0.1, 20};
      const double abar_i = std::exp(-beta.integral(t)), abar_p = std::exp(-beta.integral(t_next));
      const double beta_i = 1 - abar_i / abar_p;
      for (bool noise : {false, true}) {
        INFO("noise " << noise);
        // ReverseDiffusionPredictor for VP: f = (sqrt(1 - beta_i) - 1) x, G = sqrt(beta_i).
        CHECK(expect(
                  one_step(rev, scorekit::ReverseDiffusion{}, t, t_next, noise),
                  [&](double x, double s, double z) {
                    return x - (std::sqrt(1 - beta_i) - 1) * x + beta_i * s + std::sqrt(beta_i) * z;
                  },
                  g, noise) < tol);
        // DDPM (Ho et al. eq. 11 with eps = -sqrt(1 - alphabar_i) s): (x + beta_i s) / sqrt(alpha_i), and the
        // posterior variance beta_tilde_i = beta_i (1 - alphabar_{i-1}) / (1 - alphabar_i).
        const double beta_tilde = beta_i * (1 - abar_p) / (1 - abar_i);
        auto ddpm = [&](double x, double s, double z) {
          return (x + beta_i * s) / std::sqrt(1 - beta_i) + std::sqrt(beta_tilde) * z;
        };
        CHECK(expect(one_step(rev, scorekit::AncestralSampling{}, t, t_next, noise), ddpm, g, noise) < tol);
        // The same as the posterior q(x_t' | x_t, x0_hat) written out with Tweedie's x0_hat.
        const double a_t = std::sqrt(abar_i), a_p = std::sqrt(abar_p), s2 = 1 - abar_i, sp2 = 1 - abar_p;
        auto posterior = [&](double x, double s, double z) {
          const double x0_hat = (x + s2 * s) / a_t;
          return a_p * beta_i / s2 * x0_hat + std::sqrt(1 - beta_i) * sp2 / s2 * x +
                 std::sqrt(beta_i * sp2 / s2) * z;
        };
        CHECK(expect(one_step(rev, scorekit::AncestralSampling{}, t, t_next, noise), posterior, g, noise) <
              tol);
        CHECK(expect(one_step(rev, scorekit::Ddim{1.0}, t, t_next, noise), ddpm, g, noise) < tol);
        // DDIM's eq. 12 with eta = 0.5: sigma = eta sqrt((1 - abar') / (1 - abar)) sqrt(1 - abar / abar').
        const double eta = 0.5;
        const double sigma = eta * std::sqrt((1 - abar_p) / (1 - abar_i)) * std::sqrt(1 - abar_i / abar_p);
        CHECK(expect(
                  one_step(rev, scorekit::Ddim{eta}, t, t_next, noise),
                  [&](double x, double s, double z) {
                    const double e = -std::sqrt(1 - abar_i) * s;
                    return std::sqrt(abar_p) * (x - std::sqrt(1 - abar_i) * e) / std::sqrt(abar_i) +
                           std::sqrt(1 - abar_p - sigma * sigma) * e + sigma * z;
                  },
                  g, noise) < tol);
      }
      // Probability flow: x - f + G^2 s / 2, no noise.
      CHECK(expect(
                one_step(pf, scorekit::ReverseDiffusion{}, t, t_next, true),
                [&](double x, double s, double) {
                  return x - (std::sqrt(1 - beta_i) - 1) * x + 0.5 * beta_i * s;
                },
                g, false) < tol);
    }
  }
  SECTION("sub-VP: DDIM with eta = 1 is the ancestral step") {
    for (auto [t, t_next] : grid_steps) {
      INFO("step " << t << " -> " << t_next);
      const auto rev = scorekit::reverse_sde(sub_vp_sde, model);
      for (bool noise : {false, true}) {
        INFO("noise " << noise);
        const auto a = one_step(rev, scorekit::AncestralSampling{}, t, t_next, noise);
        const auto b = one_step(rev, scorekit::Ddim{1.0}, t, t_next, noise);
        CHECK(max_relative_difference(a, b) < tol);
      }
    }
  }
}

TEMPLATE_LIST_TEST_CASE("Every reverse integrator reproduces the data mixture", "[integrate][reverse]",
                        Backends) {
  // From exact draws of p_T, each run integrates to t_end = 1e-3 over 600 uniform steps and is compared
  // with exact draws of p_{t_end} (so the only error is the integrator's):
  // - the weight of the first mode within 4 binomial standard errors (n = 4000: SE = 0.0063 for weight 0.2);
  // - MMD^2_u of 2000 samples against 2000 exact draws below 5 null_sd (metrics/mmd.hpp: Cantelli level
  //   1/26 for any law, about 0.5% in practice).
  // Discretisation bias. The weight error of these first-order integrators falls like C / steps; measured
  // with 2e5 particles (SE 9e-4) at 50, 100, 200 and 600 steps, the largest |C| is 3.3 (reverse diffusion
  // on the VP / sub-VP probability-flow ODE: bias 0.0167 at 200 steps, 0.005 at 600), then EM on the VE
  // probability flow (2.4) and reverse diffusion on VE (1.6); the rest are below 1. At 600 steps every bias
  // is at most 0.9 SE here (most below 0.4 SE), so a 4 SE bound still fails by chance with probability
  // below 2e-3 per check, and a factor-2 error in any coefficient (a bias of order 0.1) fails it.
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const int n = 4000, n_mmd = 2000, steps = 600;
  const double t_end = 1e-3;

  auto recover = [&](const std::string& name, const auto& mix, const Eigen::MatrixXd& means, double weight0,
                     const auto& sde, const auto& system, const auto& integrator, std::uint64_t seed) {
    using Real = typename std::decay_t<decltype(mix)>::value_type;
    INFO(name);
    const auto kT = sde.marginal(sde.t_max()), ke = sde.marginal(Real(t_end));
    scorekit::ParticleView<Real, Mem> x("x", n, 2);
    scorekit::draw_exact(Exec(), mix.perturbed(kT.scale, kT.std), x, seed);
    scorekit::IntegrateSettings s;
    s.times = scorekit::uniform_times(double(sde.t_max()), t_end, steps);
    s.seed = seed + 1;
    const auto r = scorekit::integrate(Exec(), system, integrator, x, s);
    CHECK(r.n_steps == steps);
    const double w = scorekit::mode_weights(Exec(), x, means).weights[0];
    const double se = scorekit::binomial_standard_error(weight0, n);
    scorekit::ParticleView<Real, Mem> y("y", n_mmd, 2);
    scorekit::draw_exact(Exec(), mix.perturbed(ke.scale, ke.std), y, seed + 2);
    const auto sub = Kokkos::subview(x, std::make_pair(0, n_mmd), Kokkos::ALL());
    const auto mmd = scorekit::mmd_squared(Exec(), sub, y);
    INFO("weight " << w << " (exact " << weight0 << ", SE " << se << "), MMD^2 " << mmd.mmd2 << ", null sd "
                   << mmd.null_sd << ", " << r.seconds << " s");
    CHECK(std::abs(w - weight0) < 4 * se);
    CHECK(mmd.mmd2 < 5 * mmd.null_sd);
  };

  const auto mix = two_modes<double, Mem>();
  const scorekit::PerturbedMixtureScore<double, Mem> model(mix);
  const auto means = two_mode_means();
  auto every_integrator = [&](const std::string& tag, const auto& sde, std::uint64_t seed) {
    const auto rev = scorekit::reverse_sde(sde, model);
    const auto pf = scorekit::probability_flow(sde, model);
    recover(tag + " Euler-Maruyama, reverse SDE", mix, means, 0.2, sde, rev, scorekit::EulerMaruyama{}, seed);
    recover(tag + " Euler, probability flow", mix, means, 0.2, sde, pf, scorekit::EulerMaruyama{}, seed + 10);
    recover(tag + " reverse diffusion", mix, means, 0.2, sde, rev, scorekit::ReverseDiffusion{}, seed + 20);
    recover(tag + " reverse diffusion, probability flow", mix, means, 0.2, sde, pf,
            scorekit::ReverseDiffusion{}, seed + 30);
    recover(tag + " ancestral", mix, means, 0.2, sde, rev, scorekit::AncestralSampling{}, seed + 40);
    recover(tag + " DDIM eta 0", mix, means, 0.2, sde, rev, scorekit::Ddim{}, seed + 50);
    recover(tag + " DDIM eta 0.5", mix, means, 0.2, sde, rev, scorekit::Ddim{0.5}, seed + 60);
    recover(tag + " PC reverse diffusion + Langevin", mix, means, 0.2, sde, rev,
            scorekit::predictor_corrector(scorekit::ReverseDiffusion{}, scorekit::LangevinCorrector{}),
            seed + 70);
  };
  SECTION("VE") { every_integrator("VE", ve_sde, 100); }
  SECTION("VP") { every_integrator("VP", vp_sde, 200); }
  SECTION("sub-VP") { every_integrator("sub-VP", sub_vp_sde, 300); }
  SECTION("unequal covariances (VP)") {
    const auto mix2 = unequal_modes<double, Mem>();
    const scorekit::PerturbedMixtureScore<double, Mem> model2(mix2);
    const auto rev = scorekit::reverse_sde(vp_sde, model2);
    const auto means2 = unequal_mode_means();
    recover("unequal, ancestral", mix2, means2, 0.3, vp_sde, rev, scorekit::AncestralSampling{}, 400);
    recover("unequal, DDIM eta 0", mix2, means2, 0.3, vp_sde, rev, scorekit::Ddim{}, 410);
    recover("unequal, PC Euler-Maruyama + Langevin", mix2, means2, 0.3, vp_sde, rev,
            scorekit::predictor_corrector(scorekit::EulerMaruyama{}, scorekit::LangevinCorrector{}), 420);
  }
  SECTION("float: PC reverse diffusion + Langevin on VP") {
    const auto mixf = two_modes<float, Mem>();
    const scorekit::PerturbedMixtureScore<float, Mem> modelf(mixf);
    const auto vpf = scorekit::vp_sde(scorekit::LinearBeta<float>{0.1f, 20.0f});
    recover("float PC", mixf, means, 0.2, vpf, scorekit::reverse_sde(vpf, modelf),
            scorekit::predictor_corrector(scorekit::ReverseDiffusion{}, scorekit::LangevinCorrector{}), 500);
  }
}

TEMPLATE_LIST_TEST_CASE("DDIM with eta = 0 is deterministic and first order", "[integrate][reverse]",
                        Backends) {
  // Gaussian data N(m, C): the probability-flow ODE is linear and solvable. In y = x / a and sigma = s / a
  // it is dy/dsigma = sigma (C + sigma^2)^{-1} (y - m), so along each eigenvector of C (eigenvalue l)
  // y - m scales by sqrt((l + sigma^2) / (l + sigma_T^2)):
  //   x_t = a_t [m + Q diag(sqrt((l + sigma_t^2) / (l + sigma_T^2))) Q^T (x_T / a_T - m)].
  // DDIM (eta = 0) is Euler's method in sigma, so its global error has the expansion e(h) = C h + D h^2 +
  // O(h^3) (Hairer, Norsett and Wanner, section II.8), and the ratio of RMS errors at N and 2N steps is
  //   r = 2 (1 + delta) / (1 + delta / 2) = 2 + delta - delta^2 / 2 + ...,  delta = D h / C,
  // so r - 2 shrinks like h: by a factor 1/2 (1 + O(delta)) with each doubling of N. The test requires
  // r in (1.8, 2.2) for N = 20, 40, 80 against 2N (observed order log2 r within 0.14 of 1: order 1/2 gives r
  // = 1.41, order 3/2 gives 2.83, order 2 gives 4) and |r_{k+1} - 2| <= 0.6 |r_k - 2| (the factor 1/2 with
  // room for the O(delta) correction, |delta| ~ |r - 2| <= 0.05 here, times a constant up to 4).
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  Eigen::Matrix2d cov;
  cov << 1.5, 0.6, 0.6, 0.5;
  const Eigen::Vector2d mean(1, -2);
  const auto data = scorekit::gaussian<double, Mem>(mean, cov);
  const scorekit::PerturbedMixtureScore<double, Mem> model(data);
  const Eigen::SelfAdjointEigenSolver<Eigen::Matrix2d> eig(cov);
  const int n = 200;
  const double t_end = 1e-3;

  auto check_order = [&](const std::string& tag, const auto& sde) {
    INFO(tag);
    const auto kT = sde.marginal(sde.t_max()), ke = sde.marginal(t_end);
    scorekit::ParticleView<double, Mem> x_T("x_T", n, 2);
    scorekit::draw_exact(Exec(), data.perturbed(kT.scale, kT.std), x_T, 3);
    const double sT = kT.sigma(), se = ke.sigma();
    Eigen::Vector2d factor;
    for (int q = 0; q < 2; ++q)
      factor[q] = std::sqrt((eig.eigenvalues()[q] + se * se) / (eig.eigenvalues()[q] + sT * sT));
    const Eigen::Matrix2d flow = eig.eigenvectors() * factor.asDiagonal() * eig.eigenvectors().transpose();
    const Eigen::MatrixXd start = scorekit_test::to_eigen(x_T);
    const auto system = scorekit::probability_flow(sde, model);
    auto error = [&](int steps, std::uint64_t seed) {
      scorekit::ParticleView<double, Mem> x("x", n, 2);
      Kokkos::deep_copy(x, x_T);
      scorekit::IntegrateSettings s;
      s.times = scorekit::uniform_times(sde.t_max(), t_end, steps);
      s.seed = seed;
      scorekit::integrate(Exec(), system, scorekit::Ddim{}, x, s);
      const Eigen::MatrixXd got = scorekit_test::to_eigen(x);
      double e2 = 0;
      for (int i = 0; i < n; ++i) {
        const Eigen::Vector2d exact = ke.scale * (mean + flow * (start.row(i).transpose() / kT.scale - mean));
        e2 += (got.row(i).transpose() - exact).squaredNorm();
      }
      return std::sqrt(e2 / n);
    };
    std::vector<double> r;
    double previous = error(20, 1);
    for (int steps : {40, 80, 160}) {
      const double e = error(steps, 1);
      r.push_back(previous / e);
      previous = e;
    }
    INFO("ratios " << r[0] << ", " << r[1] << ", " << r[2]);
    for (double ratio : r) CHECK((ratio > 1.8 && ratio < 2.2));
    for (std::size_t k = 0; k + 1 < r.size(); ++k) CHECK(std::abs(r[k + 1] - 2) <= 0.6 * std::abs(r[k] - 2));
  };
  check_order("VE", ve_sde);
  check_order("VP", vp_sde);
  check_order("sub-VP", sub_vp_sde);

  // Deterministic: the seed does not matter, and the reverse-SDE and probability-flow systems agree.
  auto run = [&](const auto& system, std::uint64_t seed) {
    scorekit::ParticleView<double, Mem> x("x", n, 2);
    scorekit::draw_exact(Exec(), data.perturbed(1.0, ve_sde.marginal(1.0).std), x, 9);
    scorekit::IntegrateSettings s;
    s.times = scorekit::uniform_times(1.0, t_end, 50);
    s.seed = seed;
    scorekit::integrate(Exec(), system, scorekit::Ddim{}, x, s);
    return x;
  };
  const auto a = run(scorekit::reverse_sde(ve_sde, model), 1);
  CHECK(scorekit_test::bitwise_equal(a, run(scorekit::reverse_sde(ve_sde, model), 2)));
  CHECK(scorekit_test::bitwise_equal(a, run(scorekit::probability_flow(ve_sde, model), 3)));
}

TEST_CASE("The Langevin corrector's step follows score_sde's rule", "[integrate][reverse]") {
  // One corrector call on the host, against the formula written out: alpha = 1 for VE and 1 - beta_i for
  // VP (beta_i = 1 - exp(-int_{t_next}^t beta)), h = 2 alpha snr^2 s_t^2 (noise_level) or
  // 2 alpha (snr ||z|| / ||g||)^2 (per_particle), x += h g + sqrt(2 h) z, n_steps times, drawing z in order.
  const auto host_mix = two_modes<double, HostSpace>();
  const scorekit::PerturbedMixtureScore<double, HostSpace> model(host_mix);
  const int d = 2;
  const double t = 0.5, t_next = 0.49, snr = 0.2;
  auto check = [&](const auto& sde, double alpha, scorekit::LangevinStepRule rule) {
    const auto system = scorekit::reverse_sde(sde, model);
    const double s_t = sde.marginal(t).std;
    std::vector<double> work(std::size_t(system.workspace_size())), v(2 * d);
    double x[2] = {0.7, -1.9}, y[2] = {0.7, -1.9};
    scorekit::CounterRng<double> rng(5, 3, 7), rng_ref(5, 3, 7);
    const scorekit::LangevinCorrector corrector(snr, 3, rule);
    corrector.correct(system, x, t, t_next, v.data(), work.data(), rng);
    for (int k = 0; k < 3; ++k) {
      double g[2], z[2];
      scorekit::score_at_time(sde, model, d, y, t, g, work.data());
      z[0] = rng_ref.normal();
      z[1] = rng_ref.normal();
      const double h =
          rule == scorekit::LangevinStepRule::noise_level
              ? 2 * alpha * snr * snr * s_t * s_t
              : 2 * alpha * snr * snr * (z[0] * z[0] + z[1] * z[1]) / (g[0] * g[0] + g[1] * g[1]);
      for (int j = 0; j < d; ++j) y[j] += h * g[j] + std::sqrt(2 * h) * z[j];
    }
    for (int j = 0; j < d; ++j) CHECK(x[j] == Approx(y[j]).epsilon(1e-13));
    // The generator was consumed by exactly the 6 normals.
    CHECK(rng.normal() == rng_ref.normal());
  };
  const LinearBeta beta{0.1, 20};
  const double alpha_vp = std::exp(-(beta.integral(t) - beta.integral(t_next)));
  for (auto rule : {scorekit::LangevinStepRule::noise_level, scorekit::LangevinStepRule::per_particle}) {
    check(ve_sde, 1.0, rule);
    check(vp_sde, alpha_vp, rule);
    check(sub_vp_sde, alpha_vp, rule);
  }
}

TEMPLATE_LIST_TEST_CASE("Predictor-corrector composes its parts", "[integrate][reverse]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const auto mix = two_modes<double, Mem>();
  const scorekit::PerturbedMixtureScore<double, Mem> model(mix);
  const auto rev = scorekit::reverse_sde(ve_sde, model);
  const int n = 500, steps = 40;
  auto run = [&](const auto& integrator) {
    scorekit::ParticleView<double, Mem> x("x", n, 2);
    scorekit::draw_exact(Exec(), mix.perturbed(1.0, ve_sde.marginal(1.0).std), x, 4);
    scorekit::IntegrateSettings s;
    s.times = scorekit::uniform_times(1.0, 1e-3, steps);
    s.seed = 6;
    const auto r = scorekit::integrate(Exec(), rev, integrator, x, s);
    return std::make_pair(x, r.n_score_evaluations);
  };
  const auto plain = run(scorekit::ReverseDiffusion{});
  CHECK(plain.second == std::int64_t(n) * steps);
  // No corrector, or a Langevin corrector with 0 steps, leaves the predictor's run bitwise unchanged.
  const auto none = run(scorekit::predictor_corrector(scorekit::ReverseDiffusion{}, scorekit::NoCorrector{}));
  CHECK(scorekit_test::bitwise_equal(plain.first, none.first));
  CHECK(none.second == plain.second);
  const auto zero =
      run(scorekit::predictor_corrector(scorekit::ReverseDiffusion{}, scorekit::LangevinCorrector(0.16, 0)));
  CHECK(scorekit_test::bitwise_equal(plain.first, zero.first));
  // Each corrector step costs one score evaluation.
  const auto two =
      run(scorekit::predictor_corrector(scorekit::ReverseDiffusion{}, scorekit::LangevinCorrector(0.16, 2)));
  CHECK(two.second == std::int64_t(n) * steps * 3);
  CHECK(!scorekit_test::bitwise_equal(plain.first, two.first));
}

TEMPLATE_LIST_TEST_CASE("Reverse integrators are bitwise the same for any thread count",
                        "[integrate][reverse][threads]", Backends) {
  // Against a Serial run of the same kernel, which does not depend on OMP_NUM_THREADS.
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const int n = 1000;
  auto run = [&](auto exec, auto mix, const auto& integrator) {
    using M = typename decltype(exec)::memory_space;
    const scorekit::PerturbedMixtureScore<double, M> model(mix);
    scorekit::ParticleView<double, M> x("x", n, 2);
    scorekit::draw_exact(exec, mix.perturbed(vp_sde.marginal(1.0).scale, vp_sde.marginal(1.0).std), x, 8);
    scorekit::IntegrateSettings s;
    s.times = scorekit::uniform_times(1.0, 1e-3, 100);
    s.seed = 12;
    scorekit::integrate(exec, scorekit::reverse_sde(vp_sde, model), integrator, x, s);
    return scorekit::to_host(x);
  };
  auto compare = [&](const auto& integrator) {
    const auto a = run(Exec(), two_modes<double, Mem>(), integrator);
    const auto b = run(Kokkos::Serial(), two_modes<double, HostSpace>(), integrator);
    CHECK(scorekit_test::bitwise_equal(a, b));
  };
  compare(scorekit::predictor_corrector(scorekit::AncestralSampling{}, scorekit::LangevinCorrector(0.16, 2)));
  compare(scorekit::Ddim{0.5});
  compare(scorekit::ReverseDiffusion{});
}

TEMPLATE_LIST_TEST_CASE("Reverse integrators refuse bad input", "[integrate][reverse][errors]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const auto mix = two_modes<double, Mem>();
  const scorekit::PerturbedMixtureScore<double, Mem> model(mix);
  const auto rev = scorekit::reverse_sde(ve_sde, model);
  scorekit::ParticleView<double, Mem> x("x", 8, 2);
  scorekit::IntegrateSettings s;
  s.times = scorekit::uniform_times(1.0, 1e-3, 10);
  auto run = [&](const auto& integrator) { return scorekit::integrate(Exec(), rev, integrator, x, s); };

  // eta outside [0, 1]: refused at construction, and by the run when the field was set afterwards.
  CHECK_THROWS_WITH(scorekit::Ddim(1.5), Catch::Contains("eta"));
  CHECK_THROWS_WITH(scorekit::Ddim(-0.1), Catch::Contains("eta"));
  CHECK_THROWS_WITH(scorekit::Ddim(std::numeric_limits<double>::quiet_NaN()), Catch::Contains("eta"));
  scorekit::Ddim ddim;
  ddim.eta = 2;
  CHECK_THROWS_WITH(run(ddim), Catch::Contains("eta"));
  // snr <= 0 and negative corrector steps, at construction and in a run.
  CHECK_THROWS_WITH(scorekit::LangevinCorrector(0.0), Catch::Contains("snr"));
  CHECK_THROWS_WITH(scorekit::LangevinCorrector(-0.1), Catch::Contains("snr"));
  CHECK_THROWS_WITH(scorekit::LangevinCorrector(0.16, -1), Catch::Contains("n_steps"));
  scorekit::LangevinCorrector corrector;
  corrector.snr = 0;
  CHECK_THROWS_WITH(run(scorekit::predictor_corrector(scorekit::ReverseDiffusion{}, corrector)),
                    Catch::Contains("snr"));
  corrector.snr = 0.16;
  corrector.n_steps = -2;
  CHECK_THROWS_WITH(run(scorekit::predictor_corrector(scorekit::EulerMaruyama{}, corrector)),
                    Catch::Contains("n_steps"));
  // Grids: non-monotone, out of [0, T], and forwards (these samplers only step backwards).
  s.times = std::vector<double>{1.0, 0.5, 0.7};
  CHECK_THROWS_WITH(run(scorekit::ReverseDiffusion{}), Catch::Contains("strictly monotone"));
  s.times = std::vector<double>{1.2, 0.5};
  CHECK_THROWS_WITH(run(scorekit::AncestralSampling{}), Catch::Contains("outside [0, 1]"));
  s.times = std::vector<double>{0.5, -0.1};
  CHECK_THROWS_WITH(run(scorekit::Ddim{}), Catch::Contains("outside [0, 1]"));
  s.times = std::vector<double>{0.1, 0.5};
  CHECK_THROWS_WITH(run(scorekit::ReverseDiffusion{}), Catch::Contains("backwards"));
  CHECK_THROWS_WITH(run(scorekit::AncestralSampling{}), Catch::Contains("backwards"));
  CHECK_THROWS_WITH(run(scorekit::Ddim{}), Catch::Contains("backwards"));
  CHECK_THROWS_WITH(
      run(scorekit::predictor_corrector(scorekit::EulerMaruyama{}, scorekit::LangevinCorrector{})),
      Catch::Contains("backwards"));

  // Systems: the discrete samplers need a system built from a noising SDE (a static_assert otherwise,
  // tested by tests/compile_fail/reverse_diffusion_without_sde.cpp); ancestral needs the reverse SDE.
  using OU = scorekit::OrnsteinUhlenbeckSDE<double>;
  using Rev = std::decay_t<decltype(rev)>;
  using Flow = std::decay_t<decltype(scorekit::probability_flow(ve_sde, model))>;
  STATIC_REQUIRE(!scorekit::ReverseDiffusion::accepts<OU>);
  STATIC_REQUIRE(!scorekit::AncestralSampling::accepts<OU>);
  STATIC_REQUIRE(!scorekit::Ddim::accepts<OU>);
  STATIC_REQUIRE(!scorekit::LangevinCorrector::accepts<OU>);
  STATIC_REQUIRE(scorekit::ReverseDiffusion::accepts<Rev>);
  STATIC_REQUIRE(scorekit::ReverseDiffusion::accepts<Flow>);
  STATIC_REQUIRE(scorekit::AncestralSampling::accepts<Rev>);
  STATIC_REQUIRE(!scorekit::AncestralSampling::accepts<Flow>);
  STATIC_REQUIRE(scorekit::Ddim::accepts<Flow>);
  STATIC_REQUIRE(scorekit::LangevinCorrector::accepts<Flow>);
}
