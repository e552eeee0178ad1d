// The fused integrate() in blocks of particles (integrate_common.hpp: step_block, drift_block,
// score_block_at_marginal, CounterRng::for_each_normal_block): on the host a model with score_block is
// stepped in blocks of its block_size(), sharing each step's time-dependent work, one score_block() call
// an evaluation and the step's normals drawn side by side. A particle's arithmetic stays that of the
// one-particle kernel, which the same model seen per particle (scorekit_test::PerParticleOnly) runs, so
// the two must give the same bits: whole runs, pieces of runs at other offsets within their blocks
// (first_particle), and the error a particle that goes non-finite raises.
#include <scorekit/core/elementary.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/density/draw.hpp>
#include <scorekit/density/gaussian_mixture.hpp>
#include <scorekit/integrate/ancestral.hpp>
#include <scorekit/integrate/ddim.hpp>
#include <scorekit/integrate/euler_maruyama.hpp>
#include <scorekit/integrate/heun.hpp>
#include <scorekit/integrate/integrate_common.hpp>
#include <scorekit/integrate/predictor_corrector.hpp>
#include <scorekit/integrate/reverse_diffusion.hpp>
#include <scorekit/schedule/linear_beta.hpp>
#include <scorekit/score/perturbed_mixture.hpp>
#include <scorekit/sde/reverse.hpp>
#include <scorekit/sde/variance_exploding.hpp>
#include <scorekit/sde/variance_preserving.hpp>

#include <catch2/catch.hpp>

#include "backends.hpp"
#include "support.hpp"

#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

using scorekit_test::Backends;

namespace {

// 0.2 N((-5,-5), I) + 0.8 N((5,5), 0.5 I), isotropic; and a diagonal mixture on the same means.
template <class Real, class Mem>
scorekit::GaussianMixture<Real, Mem> two_modes() {
  return scorekit_test::two_modes<Real, Mem>(1.0, 0.5);
}
template <class Mem>
scorekit::GaussianMixture<double, Mem> diagonal_modes() {
  Eigen::MatrixXd variances(2, 2);
  variances << 1.0, 0.4, 0.7, 1.3;
  return scorekit::GaussianMixture<double, Mem>::diagonal(Eigen::Vector2d(0.2, 0.8),
                                                          scorekit_test::two_mode_means(), variances);
}

/// `integrator` through integrate() on `system(model)` (whose score_block makes the host run blocks)
/// and on `system(model seen per particle)`: the same bits, whole and in two pieces whose rows sit at
/// other offsets within their blocks (first_particle 13). 203 particles: 6 blocks of 32 and a tail of 11
/// (a panel of 8 and 3 alone).
template <class Exec, class Real, class Model, class MakeSystem, class Integrator>
void require_blocks_match_particles(const char* name, const Model& model, const MakeSystem& system,
                                    const Integrator& integrator, bool remove_last_noise = false) {
  using Mem = typename Exec::memory_space;
  INFO(name);
  const auto blocked = system(model);
  const auto single = system(scorekit_test::PerParticleOnly<Model>{model});
  // Blocks on the host, of the model's max_block; one particle a work item on a GPU.
  const bool host = scorekit_test::host_backend_v<Exec>;
  CHECK(scorekit::detail::integrate_block_size<Integrator>(blocked) == (host ? Model::max_block : 1));
  CHECK(scorekit::detail::integrate_block_size<Integrator>(single) == 1);
  const int n = 203;
  auto start = scorekit::make_particles<Real>(Exec(), n, 2);
  scorekit::draw_exact(Exec(), two_modes<Real, Mem>().perturbed(Real(1), Real(3)), start, 31);
  scorekit::IntegrateSettings s;
  s.times = scorekit::uniform_times(1.0, 1e-3, 40);
  s.seed = 32;
  s.remove_last_noise = remove_last_noise;
  auto run = [&](const auto& sys, std::size_t begin, std::size_t end) {
    auto x = scorekit::make_particles<Real>(Exec(), std::int64_t(end - begin), 2);
    Kokkos::deep_copy(x, Kokkos::subview(start, std::make_pair(begin, end), Kokkos::ALL));
    auto settings = s;
    settings.first_particle = begin;
    scorekit::integrate(Exec(), sys, integrator, x, settings);
    return x;
  };
  const std::size_t all = std::size_t(n), cut = 13;
  const auto whole = run(blocked, 0, all);
  CHECK(scorekit_test::bitwise_equal(whole, run(single, 0, all)));
  CHECK(scorekit_test::bitwise_equal(
      run(blocked, 0, cut), Kokkos::subview(whole, std::make_pair(std::size_t(0), cut), Kokkos::ALL)));
  CHECK(scorekit_test::bitwise_equal(run(blocked, cut, all),
                                     Kokkos::subview(whole, std::make_pair(cut, all), Kokkos::ALL)));
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("Heun in blocks gives every particle the one-particle kernel's bits", "[heun][block]",
                        Backends) {
  // VE scores a block at once (tabulated levels or not), VP (a(t) != 1) particle by particle inside the
  // block; churn draws each particle's own noise. Isotropic and diagonal mixtures: a panel is score()
  // lane by lane.
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const scorekit::VarianceExplodingSDE<double> ve(0.01, 20);
  const auto vp = scorekit::vp_sde(scorekit::LinearBeta<double>{0.1, 20});
  std::vector<double> sigmas;
  for (double t : scorekit::uniform_times(1.0, 1e-3, 40)) sigmas.push_back(ve.marginal(t).std);
  const scorekit::PerturbedMixtureScore<double, Mem> iso(two_modes<double, Mem>(), sigmas),
      diag(diagonal_modes<Mem>());
  const auto flow_ve = [&](const auto& m) { return scorekit::probability_flow(ve, m); };
  const auto flow_vp = [&](const auto& m) { return scorekit::probability_flow(vp, m); };
  scorekit::Heun churned;
  churned.churn = 2;
  churned.n_steps = 40;
  for (const scorekit::Heun& heun : {scorekit::Heun{}, churned}) {
    INFO((heun.churn > 0 ? "with churn" : "without churn"));
    require_blocks_match_particles<Exec, double>("isotropic, VE, tabulated levels", iso, flow_ve, heun);
    require_blocks_match_particles<Exec, double>("diagonal, VE", diag, flow_ve, heun);
    require_blocks_match_particles<Exec, double>("diagonal, VP", diag, flow_vp, heun);
  }
  const scorekit::VarianceExplodingSDE<float> ve_float(0.01f, 20);
  const scorekit::PerturbedMixtureScore<float, Mem> iso_float(two_modes<float, Mem>());
  require_blocks_match_particles<Exec, float>(
      "isotropic, VE, float", iso_float,
      [&](const auto& m) { return scorekit::probability_flow(ve_float, m); }, churned);
}

TEMPLATE_LIST_TEST_CASE("Every other fixed-grid integrator in blocks gives the one-particle bits",
                        "[pc][block]", Backends) {
  // Reverse diffusion, predictor-corrector, Euler-Maruyama, ancestral sampling and DDIM, each with noise
  // and without (the probability flow's g = 0, the last step's noise removed, DDIM's eta = 0), on VE (one
  // score_block() call a step) and VP (the model asked per particle at x / a(t)). The corrector's and the
  // predictor's normals are drawn side by side for a block and continue one generator a particle from the
  // corrector to the predictor; the per_particle step rule runs particle by particle inside the blocks.
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const scorekit::VarianceExplodingSDE<double> ve(0.01, 20);
  const auto vp = scorekit::vp_sde(scorekit::LinearBeta<double>{0.1, 20});
  const scorekit::PerturbedMixtureScore<double, Mem> iso(two_modes<double, Mem>()),
      diag(diagonal_modes<Mem>());
  const auto rev_ve = [&](const auto& m) { return scorekit::reverse_sde(ve, m); };
  const auto rev_vp = [&](const auto& m) { return scorekit::reverse_sde(vp, m); };
  const auto flow_ve = [&](const auto& m) { return scorekit::probability_flow(ve, m); };
  const auto flow_vp = [&](const auto& m) { return scorekit::probability_flow(vp, m); };
  const scorekit::ReverseDiffusion rd;
  const auto pc = scorekit::predictor_corrector(rd, scorekit::LangevinCorrector(0.16, 2));
  require_blocks_match_particles<Exec, double>("reverse diffusion, VE", iso, rev_ve, rd);
  require_blocks_match_particles<Exec, double>("reverse diffusion, VE, noise removed", iso, rev_ve, rd, true);
  require_blocks_match_particles<Exec, double>("reverse diffusion, probability flow", diag, flow_ve, rd);
  require_blocks_match_particles<Exec, double>("predictor-corrector, VE", iso, rev_ve, pc);
  require_blocks_match_particles<Exec, double>("predictor-corrector, VP", diag, rev_vp, pc);
  require_blocks_match_particles<Exec, double>(
      "predictor-corrector, per_particle rule", diag, rev_ve,
      scorekit::predictor_corrector(
          rd, scorekit::LangevinCorrector(0.16, 1, scorekit::LangevinStepRule::per_particle)));
  require_blocks_match_particles<Exec, double>(
      "Euler-Maruyama predictor", iso, rev_ve,
      scorekit::predictor_corrector(scorekit::EulerMaruyama{}, scorekit::LangevinCorrector{}));
  require_blocks_match_particles<Exec, double>(
      "ancestral predictor", iso, rev_vp,
      scorekit::predictor_corrector(scorekit::AncestralSampling{}, scorekit::LangevinCorrector{}));
  const scorekit::EulerMaruyama em;
  require_blocks_match_particles<Exec, double>("Euler-Maruyama, VE", iso, rev_ve, em);
  require_blocks_match_particles<Exec, double>("Euler-Maruyama, VP, noise removed", diag, rev_vp, em, true);
  require_blocks_match_particles<Exec, double>("Euler-Maruyama, probability flow", diag, flow_ve, em);
  const scorekit::AncestralSampling ancestral;
  require_blocks_match_particles<Exec, double>("ancestral, VE", iso, rev_ve, ancestral);
  require_blocks_match_particles<Exec, double>("ancestral, VP", diag, rev_vp, ancestral);
  require_blocks_match_particles<Exec, double>("ancestral, VE, noise removed", diag, rev_ve, ancestral, true);
  require_blocks_match_particles<Exec, double>("DDIM eta 0, VE", iso, flow_ve, scorekit::Ddim(0));
  require_blocks_match_particles<Exec, double>("DDIM eta 0.5, VP", diag, rev_vp, scorekit::Ddim(0.5));
  require_blocks_match_particles<Exec, double>("DDIM eta 1, VE", iso, rev_ve, scorekit::Ddim(1));
  require_blocks_match_particles<Exec, double>("DDIM eta 0, VP", diag, flow_vp, scorekit::Ddim(0));
  const scorekit::VarianceExplodingSDE<float> ve_float(0.01f, 20);
  const scorekit::PerturbedMixtureScore<float, Mem> iso_float(two_modes<float, Mem>());
  require_blocks_match_particles<Exec, float>(
      "ancestral, VE, float", iso_float, [&](const auto& m) { return scorekit::reverse_sde(ve_float, m); },
      ancestral);
}

TEMPLATE_LIST_TEST_CASE("A particle that goes non-finite inside a block is named as on the one-particle path",
                        "[heun][pc][block][errors]", Backends) {
  // Particle 37 (in the second block, not its first) starts at 1e200: its score overflows to NaN at the
  // first step, so both paths must name particle 37 at step 1.
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const scorekit::VarianceExplodingSDE<double> ve(0.01, 20);
  const scorekit::PerturbedMixtureScore<double, Mem> model(two_modes<double, Mem>());
  scorekit::IntegrateSettings s;
  s.times = scorekit::uniform_times(1.0, 1e-3, 5);
  auto run = [&](const auto& system, const auto& integrator) {
    auto x = scorekit::make_particles<double>(Exec(), 100, 2);
    scorekit_test::fill_host(x,
                             [](std::size_t i, std::size_t j) { return i == 37 ? 1e200 : double(j) - 0.5; });
    try {
      scorekit::integrate(Exec(), system, integrator, x, s);
    } catch (const scorekit::non_finite_error& e) {
      return std::make_pair(e.particle(), e.step());
    }
    return std::make_pair(std::int64_t(-1), std::int64_t(-1));
  };
  const scorekit_test::PerParticleOnly<decltype(model)> single{model};
  const auto expected = std::make_pair(std::int64_t(37), std::int64_t(1));
  CHECK(run(scorekit::probability_flow(ve, model), scorekit::Heun{}) == expected);
  CHECK(run(scorekit::probability_flow(ve, single), scorekit::Heun{}) == expected);
  const auto pc = scorekit::predictor_corrector(scorekit::ReverseDiffusion{}, scorekit::LangevinCorrector{});
  CHECK(run(scorekit::reverse_sde(ve, model), pc) == expected);
  CHECK(run(scorekit::reverse_sde(ve, single), pc) == expected);
}

TEMPLATE_LIST_TEST_CASE(
    "for_each_normal_block gives each generator the values and state of its own "
    "for_each_normal",
    "[random][block]", Backends) {
  // In a kernel on every backend (one case a work item), through the driver's BlockRngs: blocks of fresh
  // generators are drawn side by side on the host, a block with a cached value anywhere, of more than
  // 32, or on a GPU particle by particle. Either way: the same values as each generator's
  // for_each_normal, each (particle, j) exactly once, and the same generators after (their next normal()
  // agrees).
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  constexpr int max_nb = 33, max_n = 9;
  const int nbs[] = {1, 2, 7, 32, 33}, ns[] = {1, 2, 5, 9}, cacheds[] = {-1, 0, 3};
  const int cases = 5 * 4 * 3;
  Kokkos::View<int*, Mem> wrong("wrong", std::size_t(cases));
  Kokkos::parallel_for(
      "for_each_normal_block", Kokkos::RangePolicy<Exec>(0, cases), KOKKOS_LAMBDA(const int c) {
        const int nb = nbs[c / 12], n = ns[(c / 3) % 4], cached = cacheds[c % 3];
        if (cached >= nb) {
          wrong(c) = 0;
          return;
        }
        scorekit::detail::BlockRngs<double, max_nb> a(11, 100, 5), b(11, 100, 5);
        if (cached >= 0) {
          a(cached).normal();
          b(cached).normal();
        }
        double got[max_nb * max_n], want[max_nb * max_n];
        int calls[max_nb * max_n];
        for (int k = 0; k < nb * n; ++k) calls[k] = 0;
        scorekit::CounterRng<double>::for_each_normal_block(nb, n, a, [&](int i, int j, double z) {
          got[i * n + j] = z;
          ++calls[i * n + j];
        });
        for (int i = 0; i < nb; ++i) b(i).for_each_normal(n, [&](int j, double z) { want[i * n + j] = z; });
        int count = 0;
        for (int k = 0; k < nb * n; ++k)
          count += (scorekit::elementary::detail::bit_cast<std::uint64_t>(got[k]) !=
                    scorekit::elementary::detail::bit_cast<std::uint64_t>(want[k])) +
                   (calls[k] != 1);
        for (int i = 0; i < nb; ++i) count += a(i).normal() != b(i).normal();
        wrong(c) = count;
      });
  const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), wrong);
  for (int c = 0; c < cases; ++c) {
    INFO(nbs[c / 12] << " generators, " << ns[(c / 3) % 4] << " normals each, cached " << cacheds[c % 3]);
    CHECK(h(c) == 0);
  }
}
