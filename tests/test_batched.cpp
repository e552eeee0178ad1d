// The batch-synchronous path (core/batch_model.hpp) against the fused per-particle kernels. batched(model)
// evaluates a per-particle model with the same function on the same points, so wherever the compiler does
// not contract differently in the two contexts (host builds without FMA) the two paths must give the same
// bits: every sample, every recorded state, the evaluation counts. That proves the replay of each step
// (integrate/batch_replay.hpp) asks the model exactly what the fused step asks, in the same order, with the
// same noise.
#include "backends.hpp"
#include "support.hpp"

#include <scorekit/density/draw.hpp>
#include <scorekit/density/gaussian_mixture.hpp>
#include <scorekit/guidance/inpainting.hpp>
#include <scorekit/integrate/ancestral.hpp>
#include <scorekit/integrate/ddim.hpp>
#include <scorekit/integrate/dormand_prince.hpp>
#include <scorekit/integrate/euler_maruyama.hpp>
#include <scorekit/integrate/heun.hpp>
#include <scorekit/integrate/predictor_corrector.hpp>
#include <scorekit/integrate/reverse_diffusion.hpp>
#include <scorekit/sample/annealed_langevin.hpp>
#include <scorekit/schedule/karras.hpp>
#include <scorekit/schedule/linear_beta.hpp>
#include <scorekit/score/batched.hpp>
#include <scorekit/score/perturbed_mixture.hpp>
#include <scorekit/sde/edm.hpp>
#include <scorekit/sde/reverse.hpp>
#include <scorekit/sde/variance_exploding.hpp>
#include <scorekit/sde/variance_preserving.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

using scorekit_test::Backends;

namespace {

template <class Real, class Mem>
scorekit::GaussianMixture<Real, Mem> two_modes() {
  Eigen::MatrixXd means(2, 2);
  means << -4, -1, 4, 2;
  return scorekit::GaussianMixture<Real, Mem>::isotropic(Eigen::Vector2d(0.3, 0.7), means,
                                                         Eigen::Vector2d(1, 0.5));
}

/// Same bits on host backends (no contraction on plain x86-64, and none elsewhere that differs between
/// the two call sites); on devices, where nvcc contracts each inlined copy on its own, the same to
/// rounding: a few ulp a step, grown at most by the flow over the run.
template <class Exec, class A, class B>
void check_same_run(const A& fused, const B& batch, int steps) {
  if constexpr (scorekit_test::host_backend_v<Exec>) {
    CHECK(scorekit_test::bitwise_equal(fused, batch));
    (void)steps;
  } else {
    auto a = scorekit::to_host(fused);
    auto b = scorekit::to_host(batch);
    using Real = typename decltype(a)::non_const_value_type;
    double worst = 0;
    for (std::size_t k = 0; k < a.size(); ++k)
      worst = std::max(
          worst, std::abs(double(a.data()[k]) - double(b.data()[k])) / (1 + std::abs(double(b.data()[k]))));
    CHECK(worst <= 64.0 * steps * double(std::numeric_limits<Real>::epsilon()));
  }
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("Batched and fused integrators give the same samples", "[batched][integrate]",
                        Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const auto mix = two_modes<double, Mem>();
  const scorekit::PerturbedMixtureScore<double, Mem> model(mix);
  const auto batch = scorekit::batched(model);
  static_assert(scorekit::is_batch_only_v<decltype(batch)>, "batched() makes a batch-only model");
  const scorekit::VarianceExplodingSDE<double> ve(0.01, 20);
  const auto vp = scorekit::vp_sde(scorekit::LinearBeta<double>{0.1, 20});
  const scorekit::EdmSDE<double> edm(80);
  const int n = 96, steps = 12;

  // make(m) builds the system around model m: the fused run gets the mixture score, the batched run
  // batched(mixture score).
  auto compare = [&](const std::string& name, const auto& sde, const auto& make, const auto& integrator,
                     std::vector<double> times, bool remove_last_noise) {
    INFO(name);
    auto run = [&](const auto& system) {
      scorekit::ParticleView<double, Mem> x("x", n, 2);
      const auto k = sde.marginal(times.front());
      scorekit::draw_exact(Exec(), mix.perturbed(k.scale, k.std), x, 11);
      scorekit::IntegrateSettings s;
      s.times = times;
      s.seed = 12;
      s.record_every = 5;
      s.remove_last_noise = remove_last_noise;
      const auto r = scorekit::integrate(Exec(), system, integrator, x, s);
      return std::make_pair(r, x);
    };
    const auto fused = run(make(model));
    const auto bat = run(make(batch));
    check_same_run<Exec>(fused.second, bat.second, steps);
    check_same_run<Exec>(fused.first.trajectory, bat.first.trajectory, steps);
    CHECK(fused.first.n_score_evaluations == bat.first.n_score_evaluations);
    CHECK(fused.first.n_steps == bat.first.n_steps);
  };
  auto reverse = [](const auto& sde) {
    return [&sde](const auto& m) { return scorekit::reverse_sde(sde, m); };
  };
  auto flow = [](const auto& sde) {
    return [&sde](const auto& m) { return scorekit::probability_flow(sde, m); };
  };
  const auto down = scorekit::uniform_times(1.0, 1e-3, steps);
  compare("Euler-Maruyama, VE reverse SDE", ve, reverse(ve), scorekit::EulerMaruyama{}, down, false);
  compare("Euler-Maruyama, VP probability flow", vp, flow(vp), scorekit::EulerMaruyama{}, down, false);
  compare("reverse diffusion, VP, last noise removed", vp, reverse(vp), scorekit::ReverseDiffusion{}, down,
          true);
  compare("reverse diffusion, VE probability flow", ve, flow(ve), scorekit::ReverseDiffusion{}, down, false);
  compare("ancestral, VE", ve, reverse(ve), scorekit::AncestralSampling{}, down, false);
  compare("DDIM eta = 0, VP", vp, reverse(vp), scorekit::Ddim{}, down, false);
  compare("DDIM eta = 1, VE", ve, reverse(ve), scorekit::Ddim(1.0), down, false);
  // Three evaluations a step, each at the point the previous answers lead to.
  compare("predictor-corrector, 2 corrector steps, VE", ve, reverse(ve),
          scorekit::predictor_corrector(scorekit::ReverseDiffusion{}, scorekit::LangevinCorrector(0.16, 2)),
          down, false);
  const auto karras = scorekit::karras_sigmas(steps, 0.02, 80);
  std::vector<double> edm_times(karras.begin(), karras.end());
  edm_times.push_back(0.0);  // the last step, to t = 0, is Euler's: one evaluation instead of two
  compare("Heun, EDM", edm, flow(edm), scorekit::Heun{}, edm_times, false);
  compare("Heun with churn, EDM", edm, flow(edm), scorekit::Heun{30, steps}, edm_times, true);
}

TEMPLATE_LIST_TEST_CASE("Batched and fused inpainting give the same samples", "[batched][guidance]",
                        Backends) {
  // Guidance by replacement wraps the integrator, so the batched path runs it through the same replay:
  // the same samples, trajectories and evaluation counts as the fused kernel, the known coordinate
  // replaced by the same noised observation.
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const auto mix = two_modes<double, Mem>();
  const scorekit::PerturbedMixtureScore<double, Mem> model(mix);
  const auto batch = scorekit::batched(model);
  const scorekit::VarianceExplodingSDE<double> ve(0.01, 20);
  const int n = 64, steps = 10;
  const auto pc =
      scorekit::predictor_corrector(scorekit::ReverseDiffusion{}, scorekit::LangevinCorrector(0.16, 1));
  const auto guided = scorekit::inpainting<double, Mem>(pc, 2, {1}, Eigen::VectorXd::Constant(1, 1.5));
  auto run = [&](const auto& system) {
    scorekit::ParticleView<double, Mem> x("x", n, 2);
    scorekit::fill_normal(Exec(), x, 0.0, 20.0, 21);
    scorekit::IntegrateSettings s;
    s.times = scorekit::uniform_times(1.0, 1e-3, steps);
    s.seed = 22;
    s.record_every = 3;
    s.remove_last_noise = true;
    const auto r = scorekit::integrate_guided(Exec(), system, guided, x, s);
    return std::make_pair(r, x);
  };
  const auto fused = run(scorekit::reverse_sde(ve, model));
  const auto bat = run(scorekit::reverse_sde(ve, batch));
  check_same_run<Exec>(fused.second, bat.second, steps);
  check_same_run<Exec>(fused.first.trajectory, bat.first.trajectory, steps);
  CHECK(fused.first.n_score_evaluations == bat.first.n_score_evaluations);
  // The known coordinate holds the observation after the last step (VE: a(t) = 1, no noise left).
  const auto h = scorekit::to_host(bat.second);
  for (int i = 0; i < n; ++i) CHECK(h(i, 1) == 1.5);
}

TEMPLATE_LIST_TEST_CASE("Batched and fused Dormand-Prince give the same solves", "[batched][ode]", Backends) {
  // Every particle keeps its own step sequence on both paths: the same final states, the same evaluations,
  // accepted and rejected steps per particle, with Hairer's first step and with a given one.
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const auto mix = two_modes<double, Mem>();
  const scorekit::PerturbedMixtureScore<double, Mem> model(mix);
  const auto vp = scorekit::vp_sde(scorekit::LinearBeta<double>{0.1, 20});
  auto run = [&](const auto& m, const scorekit::DormandPrinceSettings& settings) {
    scorekit::ParticleView<double, Mem> x("x", 50, 2);
    const auto k = vp.marginal(1.0);
    scorekit::draw_exact(Exec(), mix.perturbed(k.scale, k.std), x, 31);
    const auto r = scorekit::solve_ode(Exec(), scorekit::probability_flow(vp, m), x, 1.0, 1e-3, settings);
    return std::make_pair(r, x);
  };
  for (double first_step : {0.0, 0.05}) {
    INFO("first_step " << first_step);
    scorekit::DormandPrinceSettings settings;
    settings.rtol = settings.atol = 1e-6;
    settings.first_step = first_step;
    const auto fused = run(model, settings);
    const auto bat = run(scorekit::batched(model), settings);
    check_same_run<Exec>(fused.second, bat.second, 100);
    CHECK(scorekit_test::bitwise_equal(fused.first.evaluations, bat.first.evaluations));
    CHECK(fused.first.n_function_evaluations == bat.first.n_function_evaluations);
    CHECK(fused.first.accepted_steps == bat.first.accepted_steps);
    CHECK(fused.first.rejected_steps == bat.first.rejected_steps);
    CHECK(fused.first.rejected_steps > 0);  // the comparison covers rejections too
  }
  // A solve that runs out of steps fails the same way on both paths.
  scorekit::DormandPrinceSettings few;
  few.max_steps = 3;
  auto message = [&](const auto& m) {
    try {
      run(m, few);
    } catch (const scorekit::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string fused = message(model);
  CHECK_THAT(fused, Catch::Contains("max_steps = 3"));
  CHECK(message(scorekit::batched(model)) == fused);
}

TEMPLATE_LIST_TEST_CASE("Batched and fused annealed Langevin give the same samples", "[batched][annealed]",
                        Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const auto mix = two_modes<float, Mem>();
  const scorekit_test::PerParticleOnly<scorekit::PerturbedMixtureScore<float, Mem>> model{
      scorekit::PerturbedMixtureScore<float, Mem>(mix)};
  scorekit::AnnealedLangevinSettings<float> s;
  s.sigmas = {5.0f, 2.0f, 0.7f, 0.2f};
  s.step_size = 2e-4f;
  s.steps_per_level = 6;
  s.final_denoise = true;
  s.seed = 3;
  s.record_every = 4;
  auto run = [&](const auto& m) {
    scorekit::ParticleView<float, Mem> x("x", 77, 2);
    scorekit::draw_exact(Exec(), mix.perturbed(1.0f, 5.0f), x, 2);
    const auto r = scorekit::annealed_langevin(Exec(), m, x, s);
    return std::make_pair(r, x);
  };
  const auto fused = run(model);
  const auto bat = run(scorekit::batched(model));
  check_same_run<Exec>(fused.second, bat.second, 25);
  check_same_run<Exec>(fused.first.trajectory, bat.first.trajectory, 25);
  CHECK(fused.first.n_score_evaluations == bat.first.n_score_evaluations);
}

namespace {

/// A noise-conditional model whose score is infinite for particles with x_0 > threshold: a run must stop
/// with the same non_finite_error on either path.
struct BlowsUp {
  using value_type = double;
  using memory_space = Kokkos::HostSpace;
  double threshold;
  double infinity = std::numeric_limits<double>::infinity();
  KOKKOS_INLINE_FUNCTION int dim() const { return 2; }
  KOKKOS_INLINE_FUNCTION void score(const double* x, double sigma, double* out) const {
    for (int j = 0; j < 2; ++j) out[j] = x[0] > threshold ? infinity : -x[j] / (1 + sigma * sigma);
  }
};

/// A corrector whose evaluations() claims one call a step but whose step makes none.
struct MiscountedCorrector {
  static constexpr int n_vectors = 1;
  template <class System>
  static void check(const System&) {}
  int evaluations(double, double) const { return 1; }
  template <class System, class Real>
  KOKKOS_INLINE_FUNCTION void step(const System&, Real*, Real, Real, bool, Real*, Real*,
                                   scorekit::CounterRng<Real>&) const {}
};

}  // namespace

TEST_CASE("The batched paths refuse bad input with the fused paths' errors", "[batched][errors]") {
  using Exec = Kokkos::DefaultHostExecutionSpace;
  const scorekit::VarianceExplodingSDE<double> ve(0.01, 20);
  const BlowsUp model{1.25};
  auto particles = [] {
    scorekit::ParticleView<double, Kokkos::HostSpace> x("x", 20, 2);
    for (int i = 0; i < 20; ++i) x(i, 0) = x(i, 1) = 0.1 * i;  // particles 13..19 blow up at step 1
    return x;
  };
  scorekit::IntegrateSettings s;
  s.times = scorekit::uniform_times(1.0, 0.5, 8);
  s.seed = 1;
  auto message = [&](const auto& system) {
    auto x = particles();
    try {
      scorekit::integrate(Exec(), system, scorekit::EulerMaruyama{}, x, s);
    } catch (const scorekit::non_finite_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string fused = message(scorekit::reverse_sde(ve, model));
  CHECK_THAT(fused, Catch::Contains("particle 13 became NaN or infinite at step 1"));
  CHECK(message(scorekit::reverse_sde(ve, scorekit::batched(model))) == fused);

  SECTION("Shapes") {
    const auto batch = scorekit::batched(model);
    scorekit::BatchView<double, Kokkos::HostSpace> x("x", 4, 2), out("out", 4, 2), wide("wide", 4, 3),
        empty("empty", 0, 2);
    Kokkos::View<double*, Kokkos::HostSpace> sigma("sigma", 4), three("three", 3), none("none", 0);
    CHECK_THROWS_WITH(batch.score(Exec(), wide, sigma, out),
                      Catch::Contains("4 x 3") && Catch::Contains("dimension is 2"));
    CHECK_THROWS_WITH(batch.score(Exec(), x, three, out), Catch::Contains("4 samples but 3 noise levels"));
    CHECK_THROWS_WITH(batch.score(Exec(), x, sigma, wide), Catch::Contains("the output is 4 x 3"));
    CHECK_THROWS_WITH(batch.score(Exec(), empty, none, empty), Catch::Contains("empty"));
  }
  SECTION("A non-finite start") {
    auto x = particles();
    x(7, 1) = std::numeric_limits<double>::quiet_NaN();
    CHECK_THROWS_WITH(scorekit::integrate(Exec(), scorekit::reverse_sde(ve, scorekit::batched(model)),
                                          scorekit::EulerMaruyama{}, x, s),
                      Catch::Contains("initial particle 7 has a NaN or infinite coordinate"));
  }
  SECTION("A step whose evaluations() is wrong") {
    auto x = particles();
    CHECK_THROWS_AS(scorekit::integrate(Exec(), scorekit::reverse_sde(ve, scorekit::batched(model)),
                                        MiscountedCorrector{}, x, s),
                    std::logic_error);
  }
}
