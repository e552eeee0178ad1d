// The sampler steps (UlaStep, MalaStep, HmcStep, AnnealedLangevinStep) called from a user's own kernel,
// with the user's own scratch views, give bitwise the samples (and acceptance counts) of the drivers ula,
// mala, hmc and annealed_langevin for the same seed: one definition of each update, keyed by
// (seed, particle, step) wherever it is called from.
#include <scorekit/density/banana.hpp>
#include <scorekit/density/draw.hpp>
#include <scorekit/density/gaussian_mixture.hpp>
#include <scorekit/sample/annealed_langevin.hpp>
#include <scorekit/sample/hmc.hpp>
#include <scorekit/sample/langevin.hpp>
#include <scorekit/schedule/geometric.hpp>
#include <scorekit/score/perturbed_mixture.hpp>

#include <catch2/catch.hpp>

#include "backends.hpp"
#include "support.hpp"

#include <cstdint>
#include <vector>

using scorekit_test::Backends;

static_assert(scorekit::UlaStep<double>::scratch_size(3, 5) == 3 + 5, "ULA: s(x) and the workspace");
static_assert(scorekit::MalaStep<float>::scratch_size(3, 5) == 2 * 3 + 5, "MALA: y, s(y), the workspace");
static_assert(scorekit::HmcStep<double>::scratch_size(3, 0) == 3 * 3, "HMC: q, p, s(q), the workspace");
static_assert(scorekit::AnnealedLangevinStep<double>::scratch_size(2, 2) == 2 + 2, "annealed: s(x, sigma)");

// The user kernels. Each lives in a named free function template (nvcc cannot compile an extended lambda
// in a Catch2 test body), owns its scratch (one buffer a particle: the step's vectors, then the model's
// workspace) and numbers the steps 1, 2, ... as the drivers do.
namespace scorekit_test {
namespace user_kernels {

template <class Real, class Mem>
using Matrix = Kokkos::View<Real**, Kokkos::LayoutRight, Mem>;

template <class Exec, class Density, class View>
void ula(const Density& density, const View& x, typename Density::value_type eps, std::int64_t n_steps,
         std::uint64_t seed) {
  using Real = typename Density::value_type;
  using Step = scorekit::UlaStep<Real>;
  const int d = density.dim();
  const Step step(eps, d);
  Matrix<Real, typename Exec::memory_space> scratch("user_ula::scratch", x.extent(0),
                                                    Step::scratch_size(d, scorekit::workspace_size(density)));
  Kokkos::parallel_for(
      "user_ula", Kokkos::RangePolicy<Exec>(0, x.extent(0)), KOKKOS_LAMBDA(const std::int64_t i) {
        Real* vectors = &scratch(i, 0);
        Real* work = vectors + Step::n_vectors * d;
        for (std::int64_t t = 1; t <= n_steps; ++t) step.step(density, &x(i, 0), seed, i, t, vectors, work);
      });
  Kokkos::fence();
}

// MALA and HMC keep log p(x) and s(x) between steps: grad is a caller-owned view, log_p a local.
template <class Exec, class Step, class Density, class View>
std::int64_t metropolis(const Step& step, const Density& density, const View& x, std::int64_t n_steps,
                        std::uint64_t seed) {
  using Real = typename Density::value_type;
  using Mem = typename Exec::memory_space;
  const int d = density.dim();
  Matrix<Real, Mem> grad("user_metropolis::grad", x.extent(0), d);
  Matrix<Real, Mem> scratch("user_metropolis::scratch", x.extent(0),
                            Step::scratch_size(d, scorekit::workspace_size(density)));
  std::int64_t accepted = 0;
  Kokkos::parallel_reduce(
      "user_metropolis", Kokkos::RangePolicy<Exec>(0, x.extent(0)),
      KOKKOS_LAMBDA(const std::int64_t i, std::int64_t& acc) {
        Real* xi = &x(i, 0);
        Real* g = &grad(i, 0);
        Real* vectors = &scratch(i, 0);
        Real* work = vectors + Step::n_vectors * d;
        Real log_p = step.init(density, xi, g, work);
        for (std::int64_t t = 1; t <= n_steps; ++t)
          if (step.step(density, xi, log_p, g, seed, i, t, vectors, work)) ++acc;
      },
      accepted);
  return accepted;
}

// Annealed Langevin one particle a work item: the ladder's steps, then the last level's denoising step.
template <class Exec, class Model, class View, class Ladder>
void annealed(const Model& model, const View& x, const Ladder& ladder, int steps_per_level, bool denoise,
              std::uint64_t seed) {
  using Real = typename Model::value_type;
  using Step = scorekit::AnnealedLangevinStep<Real>;
  const int d = model.dim(), n_levels = int(ladder.extent(0));
  Matrix<Real, typename Exec::memory_space> scratch("user_annealed::scratch", x.extent(0),
                                                    Step::scratch_size(d, scorekit::workspace_size(model)));
  Kokkos::parallel_for(
      "user_annealed", Kokkos::RangePolicy<Exec>(0, x.extent(0)), KOKKOS_LAMBDA(const std::int64_t i) {
        Real* xi = &x(i, 0);
        Real* vectors = &scratch(i, 0);
        Real* work = vectors + Step::n_vectors * d;
        std::int64_t t = 0;
        for (int l = 0; l < n_levels; ++l)
          for (int s = 0; s < steps_per_level; ++s) ladder(l).step(model, xi, seed, i, ++t, vectors, work);
        if (denoise) ladder(n_levels - 1).denoise(model, xi, vectors, work);
      });
  Kokkos::fence();
}

// Annealed Langevin in blocks of `block` particles through the model's score_block and the steps' update
// (what annealed_langevin does for a model that blocks). score_block wants the workspaces of a block as
// one region, so the vectors and the workspaces are two views here.
template <class Exec, class Model, class View, class Ladder>
void annealed_blocks(const Model& model, const View& x, const Ladder& ladder, int steps_per_level,
                     bool denoise, std::uint64_t seed, int block) {
  using Real = typename Model::value_type;
  using Mem = typename Exec::memory_space;
  const int d = model.dim(), n_levels = int(ladder.extent(0));
  const std::int64_t n = std::int64_t(x.extent(0)), n_blocks = (n + block - 1) / block;
  Matrix<Real, Mem> g("user_blocks::scores", n, d);
  Matrix<Real, Mem> work("user_blocks::work", n, scorekit::workspace_size(model));
  const int x_stride = int(x.stride(0)), g_stride = int(g.stride(0)), w_stride = int(work.stride(0));
  Kokkos::parallel_for(
      "user_annealed_blocks", Kokkos::RangePolicy<Exec>(0, n_blocks), KOKKOS_LAMBDA(const std::int64_t blk) {
        const std::int64_t i0 = blk * block;
        const int nb = int(n - i0 < block ? n - i0 : block);
        std::int64_t t = 0;
        for (int l = 0; l <= n_levels; ++l) {
          const bool denoising = l == n_levels;
          if (denoising && !denoise) break;
          const scorekit::AnnealedLangevinStep<Real> step = ladder(denoising ? n_levels - 1 : l);
          for (int s = 0; s < (denoising ? 1 : steps_per_level); ++s) {
            ++t;
            model.score_block(nb, &x(i0, 0), x_stride, step.sigma(), &g(i0, 0), g_stride, &work(i0, 0),
                              w_stride);
            for (int b = 0; b < nb; ++b) {
              if (denoising)
                step.denoise_update(&x(i0 + b, 0), &g(i0 + b, 0));
              else
                step.update(&x(i0 + b, 0), &g(i0 + b, 0), seed, i0 + b, t);
            }
          }
        }
      });
  Kokkos::fence();
}

}  // namespace user_kernels

// The particles both runs start from: a copy of the same uniform draw over [-3, 7]^d.
template <class Exec, class Real>
std::pair<scorekit::ParticleView<Real, typename Exec::memory_space>,
          scorekit::ParticleView<Real, typename Exec::memory_space>>
twin_starts(std::int64_t n, int d) {
  auto a = scorekit::make_particles<Real>(Exec(), n, d);
  scorekit::fill_uniform(Exec(), a, Real(-3), Real(7), 5);
  auto b = scorekit::make_particles<Real>(Exec(), n, d);
  Kokkos::deep_copy(b, a);
  return {a, b};
}

template <class Real, class Mem>
scorekit::GaussianMixture<Real, Mem> two_modes() {
  Eigen::MatrixXd means(2, 2);
  means << 0, 0, 4, 4;
  return scorekit::GaussianMixture<Real, Mem>::isotropic(Eigen::Vector2d(0.3, 0.7), means,
                                                         Eigen::Vector2d(1, 0.5));
}

template <class Exec, class Real>
void compare_langevin() {
  using Mem = typename Exec::memory_space;
  const auto mixture = two_modes<Real, Mem>();
  const std::int64_t n = 301, n_steps = 150;
  const std::uint64_t seed = 42;
  {
    INFO("ULA");
    auto [x, y] = twin_starts<Exec, Real>(n, 2);
    scorekit::ula(Exec(), mixture, x, {Real(0.05), n_steps, seed});
    user_kernels::ula<Exec>(mixture, y, Real(0.05), n_steps, seed);
    REQUIRE(bitwise_equal(x, y));
  }
  {
    INFO("MALA");
    auto [x, y] = twin_starts<Exec, Real>(n, 2);
    const auto r = scorekit::mala(Exec(), mixture, x, {Real(0.5), n_steps, seed});
    const std::int64_t accepted =
        user_kernels::metropolis<Exec>(scorekit::MalaStep<Real>(Real(0.5), 2), mixture, y, n_steps, seed);
    REQUIRE(bitwise_equal(x, y));
    REQUIRE(r.acceptance_rate == double(accepted) / (double(n) * double(n_steps)));
    REQUIRE(r.acceptance_rate < 1.0);  // the test compares accept/reject decisions, not only moves
  }
  {
    INFO("MALA on a density without workspace (the banana)");
    const scorekit::Banana<Real> banana(2, Real(0.5), Real(2));
    auto [x, y] = twin_starts<Exec, Real>(n, 2);
    const auto r = scorekit::mala(Exec(), banana, x, {Real(0.8), n_steps, seed});
    const std::int64_t accepted =
        user_kernels::metropolis<Exec>(scorekit::MalaStep<Real>(Real(0.8), 2), banana, y, n_steps, seed);
    REQUIRE(bitwise_equal(x, y));
    REQUIRE(r.acceptance_rate == double(accepted) / (double(n) * double(n_steps)));
  }
  {
    INFO("HMC");
    auto [x, y] = twin_starts<Exec, Real>(n, 2);
    scorekit::HmcSettings<Real> s;
    s.step_size = Real(0.3);
    s.n_leapfrog = 5;
    s.n_steps = 40;
    s.seed = seed;
    const auto r = scorekit::hmc(Exec(), mixture, x, s);
    const std::int64_t accepted = user_kernels::metropolis<Exec>(
        scorekit::HmcStep<Real>(s.step_size, s.n_leapfrog, 2), mixture, y, s.n_steps, seed);
    REQUIRE(bitwise_equal(x, y));
    REQUIRE(r.acceptance_rate == double(accepted) / (double(n) * double(s.n_steps)));
    REQUIRE(r.acceptance_rate < 1.0);
  }
}

template <class Real>
scorekit::AnnealedLangevinSettings<Real> annealed_settings(bool denoise) {
  scorekit::AnnealedLangevinSettings<Real> s;
  for (double sigma : scorekit::geometric_schedule(5.0, 0.1, 5)) s.sigmas.push_back(Real(sigma));
  s.step_size = Real(0.05);
  s.steps_per_level = 30;
  s.final_denoise = denoise;
  s.seed = 7;
  return s;
}

template <class Exec, class Real>
void compare_annealed() {
  using Mem = typename Exec::memory_space;
  const auto mixture = two_modes<Real, Mem>();
  for (const bool denoise : {false, true}) {
    INFO("annealed Langevin, the user's kernel one particle a work item, final denoising " << denoise);
    const auto s = annealed_settings<Real>(denoise);
    const scorekit::PerturbedMixtureScore<Real, Mem> score(mixture, s.sigmas);
    // The driver runs blocks of particles on the host (an isotropic mixture's score_block is its score()
    // lane by lane), one particle a work item on a GPU: either way the per-particle kernel's bits.
    REQUIRE(score.block_size() == (scorekit_test::host_backend_v<Exec> ? score.max_block : 1));
    auto [x, y] = twin_starts<Exec, Real>(257, 2);
    scorekit::annealed_langevin(Exec(), score, x, s);
    const auto ladder = scorekit::annealed_langevin_ladder<Mem>(s.sigmas, s.step_size, 2);
    user_kernels::annealed<Exec>(score, y, ladder, s.steps_per_level, denoise, s.seed);
    REQUIRE(bitwise_equal(x, y));
  }
}

template <class Exec, class Real>
void compare_annealed_blocks() {
  using Mem = typename Exec::memory_space;
  const auto mixture = scorekit_test::full_covariance_mixture<Real, Mem>();
  for (const bool denoise : {false, true}) {
    INFO("annealed Langevin in blocks (score_block), final denoising " << denoise);
    const auto s = annealed_settings<Real>(denoise);
    const scorekit::PerturbedMixtureScore<Real, Mem> score(mixture, s.sigmas);
    // Blocks on the host (8); one particle a thread on a GPU, where the driver does not block either.
    const int block = score.block_size();
    if (Kokkos::SpaceAccessibility<Kokkos::HostSpace, Mem>::accessible) REQUIRE(block > 1);
    auto [x, y] = twin_starts<Exec, Real>(203, 3);  // 203 = 25 blocks of 8 and a tail of 3
    scorekit::annealed_langevin(Exec(), score, x, s);
    const auto ladder = scorekit::annealed_langevin_ladder<Mem>(s.sigmas, s.step_size, 3);
    if (block > 1)
      user_kernels::annealed_blocks<Exec>(score, y, ladder, s.steps_per_level, denoise, s.seed, block);
    else
      user_kernels::annealed<Exec>(score, y, ladder, s.steps_per_level, denoise, s.seed);
    REQUIRE(bitwise_equal(x, y));
  }
}

}  // namespace scorekit_test

TEMPLATE_LIST_TEST_CASE("ULA, MALA and HMC steps in a user kernel give the drivers' samples bitwise",
                        "[samplers][steps]", Backends) {
  SECTION("double") { scorekit_test::compare_langevin<TestType, double>(); }
  SECTION("float") { scorekit_test::compare_langevin<TestType, float>(); }
}

TEMPLATE_LIST_TEST_CASE("Annealed Langevin steps in a user kernel give the driver's samples bitwise",
                        "[samplers][steps][annealed]", Backends) {
  SECTION("double") { scorekit_test::compare_annealed<TestType, double>(); }
  SECTION("float") { scorekit_test::compare_annealed<TestType, float>(); }
  SECTION("blocks of particles") { scorekit_test::compare_annealed_blocks<TestType, double>(); }
}
