// log_likelihood on the batched path (core/batch_model.hpp): the replayed Dormand-Prince solve of the
// augmented ODE, every evaluation one batched call (a score, or a Jacobian-vector or vector-Jacobian
// product). batched(model) of a per-particle model evaluates the same functions on the same points, so
// on host backends both paths must give the same bits for every estimator; an ImageScoreModel (a
// network, products by its backward pass) must match the closed-form likelihood of its linear flow.
// scorekit-requires: SCOREKIT_HAVE_KOKKOS_KERNELS
#include "backends.hpp"
#include "likelihood_support.hpp"
#include "support.hpp"

#include <scorekit/density/draw.hpp>
#include <scorekit/density/gaussian_mixture.hpp>
#include <scorekit/divergence/finite_difference.hpp>
#include <scorekit/divergence/hutchinson.hpp>
#include <scorekit/likelihood/log_likelihood.hpp>
#include <scorekit/nn/image/conv2d.hpp>
#include <scorekit/nn/image/network.hpp>
#include <scorekit/schedule/linear_beta.hpp>
#include <scorekit/score/batched.hpp>
#include <scorekit/score/image_score.hpp>
#include <scorekit/score/perturbed_mixture.hpp>
#include <scorekit/sde/variance_exploding.hpp>
#include <scorekit/sde/variance_preserving.hpp>

#include <catch2/catch.hpp>
#include <unsupported/Eigen/MatrixFunctions>

#include <cmath>
#include <limits>
#include <memory>
#include <random>

using scorekit_test::Backends;
using scorekit_test::JvpOnly;
using scorekit_test::ode_allowance;

namespace {

template <class Mem>
scorekit::GaussianMixture<double, Mem> full_3d() {
  Eigen::Matrix3d c0, c1;
  c0 << 1.0, 0.6, 0.2, 0.6, 0.8, -0.3, 0.2, -0.3, 0.7;
  c1 << 0.5, -0.1, 0.0, -0.1, 0.9, 0.4, 0.0, 0.4, 1.2;
  Eigen::MatrixXd means(2, 3);
  means << -2, 1, 0, 2, -1, 1;
  return scorekit::GaussianMixture<double, Mem>::full(Eigen::Vector2d(0.4, 0.6), means, {c0, c1});
}

/// Same bits on host backends; on devices (nvcc contracts each inlined copy on its own) the same to the
/// ODE's tolerance, which bounds how far two rounding-different solves drift apart.
template <class Exec, class A, class B>
void check_same(const A& fused, const B& batch, double tol) {
  const auto a = scorekit::to_host(fused);
  const auto b = scorekit::to_host(batch);
  if constexpr (scorekit_test::host_backend_v<Exec>) {
    CHECK(scorekit_test::bitwise_equal(a, b));
    (void)tol;
  } else {
    double worst = 0;
    for (std::size_t k = 0; k < a.size(); ++k)
      worst = std::max(
          worst, std::abs(double(a.data()[k]) - double(b.data()[k])) / (1 + std::abs(double(b.data()[k]))));
    CHECK(worst <= 100 * tol);
  }
}

template <class Exec, class Model, class Estimator>
void compare_paths(const Model& model, const scorekit::LikelihoodSettings<Estimator>& s, const char* name) {
  using Mem = typename Exec::memory_space;
  INFO(name);
  const auto vp = scorekit::vp_sde(scorekit::LinearBeta<double>{0.1, 20});
  const auto data = full_3d<Mem>();
  auto x = scorekit::make_particles<double>(Exec(), 24, 3);
  scorekit::draw_exact(Exec(), data, x, 17);
  const auto fused = scorekit::log_likelihood(Exec(), vp, model, x, s);
  const auto batch = scorekit::log_likelihood(Exec(), vp, scorekit::batched(model), x, s);
  check_same<Exec>(fused.log_p, batch.log_p, s.ode.rtol);
  check_same<Exec>(fused.delta, batch.delta, s.ode.rtol);
  check_same<Exec>(fused.latent, batch.latent, s.ode.rtol);
  if constexpr (scorekit_test::host_backend_v<Exec>) {
    CHECK(scorekit_test::bitwise_equal(scorekit::to_host(fused.evaluations),
                                       scorekit::to_host(batch.evaluations)));
    CHECK(fused.n_function_evaluations == batch.n_function_evaluations);
    CHECK(fused.accepted_steps == batch.accepted_steps);
    CHECK(fused.rejected_steps == batch.rejected_steps);
  }
  CHECK(batch.n_function_evaluations > 0);
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("Batched and fused log-likelihoods give the same values, for every estimator",
                        "[batched][likelihood]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const scorekit::PerturbedMixtureScore<double, Mem> score(full_3d<Mem>());
  const JvpOnly<scorekit::PerturbedMixtureScore<double, Mem>> jvp_only{score};
  scorekit::LikelihoodSettings<> exact;
  exact.ode.rtol = exact.ode.atol = 1e-6;
  // ExactTrace through d JVPs: 1 + d batched calls a right-hand side (a score, then d products).
  compare_paths<Exec>(jvp_only, exact, "ExactTrace through JVPs");
  // Hutchinson: the probes are keyed by the point, the same on both paths.
  scorekit::LikelihoodSettings<scorekit::Hutchinson<scorekit::RademacherProbe>> hutchinson;
  hutchinson.estimator = scorekit::Hutchinson<scorekit::RademacherProbe>(2);
  hutchinson.ode.rtol = hutchinson.ode.atol = 1e-6;
  hutchinson.seed = 3;
  compare_paths<Exec>(jvp_only, hutchinson, "Hutchinson, 2 Rademacher probes");
  // Finite differences: score calls only.
  using FD = scorekit::FiniteDifferenceDivergence<scorekit::GaussianProbe>;
  compare_paths<Exec>(score, scorekit::LikelihoodSettings<FD>{1e-5, exact.ode, FD(1, 1e-4), 5},
                      "finite-difference divergence");
}

namespace {

/// The 16 x 16 matrix A of a 3 x 3 convolution with zero padding 1 on 4 x 4 single-channel images: (A
/// x)_(r, c) = sum_(a, b) w(a, b) x(r + a - 1, c + b - 1), the weights as Conv2d stores them (k k c_in
/// rows by c_out columns, row (a k + b)).
Eigen::MatrixXd conv_matrix(const std::vector<double>& w) {
  Eigen::MatrixXd a = Eigen::MatrixXd::Zero(16, 16);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c)
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) {
          const int rr = r + i - 1, cc = c + j - 1;
          if (rr >= 0 && rr < 4 && cc >= 0 && cc < 4) a(4 * r + c, 4 * rr + cc) += w[std::size_t(3 * i + j)];
        }
  return a;
}

}  // namespace

TEST_CASE("ImageScoreModel's log-likelihood through its vector-Jacobian product matches the closed form",
          "[batched][likelihood][image]") {
  // A network of one bias-free 3 x 3 convolution, its output divided by sigma: s_sigma(x) = A x / sigma.
  // Under the VE SDE (a = 1, g^2 = d sigma^2 / dt) the probability-flow ODE is linear,
  //   dx/dt = -g^2 s / 2 = -sigma'(t) A x,   so  x(T) = exp(-(sigma_T - sigma_eps) A) x(eps),
  //   delta(T) = int div f~ dt = -(sigma_T - sigma_eps) tr A,
  // and log p_eps(x) = log N(x(T); 0, sigma_T^2 I) + delta(T) exactly. A is not symmetric, so the
  // product the batched path uses (A^T v / sigma, from the backward pass) differs from the JVP in all but
  // the entries the trace estimators read.
  using Exec = Kokkos::DefaultHostExecutionSpace;
  using Mem = Exec::memory_space;
  std::mt19937_64 gen(11);
  std::normal_distribution<double> z(0, 1);
  std::vector<double> w(9);
  for (auto& v : w) v = 0.08 * z(gen);
  auto net = std::make_shared<scorekit::nn::image::Network<double, Exec>>();
  scorekit::nn::image::Conv2dOptions o;
  o.padding = 1;
  o.bias = false;
  net->set_output(net->layer(scorekit::nn::image::Conv2d(1, 1, 3, o), net->image_input(1)));
  Kokkos::View<double*, Mem> p("p", 9);
  for (int k = 0; k < 9; ++k) p(k) = w[std::size_t(k)];
  scorekit::ImageScoreSettings s;
  s.height = s.width = 4;
  s.channels = 1;
  s.sigma_min = 1e-4;  // the VE marginal's std at t_eps = 1e-5 is 1.1e-4
  s.sigma_max = 5;
  const scorekit::ImageScoreModel<double, Exec> model(net, p, s);
  const scorekit::VarianceExplodingSDE<double> ve(0.01, 5);
  const Eigen::MatrixXd a = conv_matrix(w);

  const int n = 6;
  scorekit::ParticleView<double, Mem> x("x", n, 16);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < 16; ++j) x(i, j) = 2 * z(gen);
  const double eps = 1e-5, tol = 1e-8;
  const double span = ve.marginal(ve.t_max()).std - ve.marginal(eps).std;
  const double sigma_T = ve.prior_std();
  const Eigen::MatrixXd flow = (-span * a).exp();
  auto exact = [&](int i) {
    Eigen::VectorXd xi(16);
    for (int j = 0; j < 16; ++j) xi(j) = x(i, j);
    const Eigen::VectorXd xt = flow * xi;
    return -0.5 * (xt.squaredNorm() / (sigma_T * sigma_T) + 16 * std::log(2 * M_PI * sigma_T * sigma_T)) -
           span * a.trace();
  };

  SECTION("ExactTrace: 16 products a right-hand side") {
    scorekit::LikelihoodSettings<> ls;
    ls.t_eps = eps;
    ls.ode.rtol = ls.ode.atol = tol;
    const auto r = scorekit::log_likelihood(Exec(), ve, model, x, ls);
    const auto allowances = ode_allowance(r, x, tol);
    for (int i = 0; i < n; ++i) {
      INFO("point " << i << ": ODE " << r.log_p(i) << ", exact " << exact(i) << ", allowance "
                    << allowances[std::size_t(i)]);
      CHECK(std::abs(r.log_p(i) - exact(i)) <= allowances[std::size_t(i)]);
      CHECK(r.log_p(i) == r.prior_log_p(i) + r.delta(i));
    }
  }
  SECTION("Hutchinson: each point's delta is v^T A v times the same factor as the exact trace's") {
    // With one fixed probe per point, div f~ = -sigma' v^T A v, so delta(T) = -span v^T A v: the ratio to
    // -span tr A is v^T A v / tr A, and the latent is the exact one.
    scorekit::LikelihoodSettings<scorekit::Hutchinson<scorekit::GaussianProbe>> ls;
    ls.t_eps = eps;
    ls.ode.rtol = ls.ode.atol = tol;
    ls.seed = 21;
    const auto r = scorekit::log_likelihood(Exec(), ve, model, x, ls);
    const auto allowances = ode_allowance(r, x, tol);
    for (int i = 0; i < n; ++i) {
      std::vector<double> v(16);
      scorekit::CounterRng<double> rng(21, std::uint64_t(i), 0, scorekit::RngStream::divergence_probe);
      scorekit::GaussianProbe::draw(rng, 16, v.data());
      Eigen::Map<const Eigen::VectorXd> vv(v.data(), 16);
      const double expected = -span * vv.dot(a * vv);
      INFO("point " << i << ": delta " << r.delta(i) << ", exact " << expected);
      CHECK(std::abs(r.delta(i) - expected) <= allowances[std::size_t(i)]);
    }
  }
}

TEST_CASE("The batched log-likelihood refuses a model it cannot differentiate, naming what is missing",
          "[batched][likelihood][errors]") {
  using Exec = Kokkos::DefaultHostExecutionSpace;
  using Mem = Exec::memory_space;
  // batched() of a model with no JVP has no products: only score-only estimators run (checked at compile
  // time, see log_likelihood's static_asserts); bad data is named as on the fused path.
  const scorekit::PerturbedMixtureScore<double, Mem> score(full_3d<Mem>());
  const auto model = scorekit::batched(score);
  STATIC_REQUIRE(scorekit::has_batch_jvp_v<decltype(model)>);
  STATIC_REQUIRE(!scorekit::has_batch_vjp_v<decltype(model)>);
  scorekit::ParticleView<double, Mem> x("x", 3, 3);
  x(1, 2) = std::numeric_limits<double>::quiet_NaN();
  const auto vp = scorekit::vp_sde(scorekit::LinearBeta<double>{0.1, 20});
  CHECK_THROWS_WITH(scorekit::log_likelihood(Exec(), vp, model, x), Catch::Contains("particle 1"));
  CHECK_THROWS_WITH(
      scorekit::log_likelihood(Exec(), vp, model, scorekit::ParticleView<double, Mem>("y", 3, 2)),
      Catch::Contains("each data point"));
}
