// settings.first_particle: a run over rows [first, first + m) of a larger run, with first_particle =
// first, gives those rows of the larger run bit for bit (the noise is keyed by the global index). What
// sharded runs over MPI rely on (distributed/sharding.hpp; tests/mpi/ checks them under mpirun); here
// without MPI, on two uneven pieces.
#include "backends.hpp"
#include "support.hpp"

#include <scorekit/density/draw.hpp>
#include <scorekit/density/gaussian_mixture.hpp>
#include <scorekit/integrate/predictor_corrector.hpp>
#include <scorekit/integrate/reverse_diffusion.hpp>
#include <scorekit/sample/annealed_langevin.hpp>
#include <scorekit/sample/langevin.hpp>
#include <scorekit/score/batched.hpp>
#include <scorekit/score/perturbed_mixture.hpp>
#include <scorekit/sde/reverse.hpp>
#include <scorekit/sde/variance_exploding.hpp>

#include <catch2/catch.hpp>

#include <utility>

namespace {

/// Runs `run(x, first)` on the whole of `start` and on its pieces [0, cut) and [cut, n); the pieces must
/// be the whole run's rows bit for bit, and (the check can fail) a piece run without first_particle not.
template <class Exec, class Run>
void check_pieces(const char* name, const scorekit::ParticleView<double, typename Exec::memory_space>& start,
                  std::size_t cut, const Run& run) {
  using Mem = typename Exec::memory_space;
  INFO(name);
  const std::size_t n = start.extent(0);
  scorekit::ParticleView<double, Mem> whole("whole", n, 2);
  Kokkos::deep_copy(whole, start);
  run(whole, 0);
  for (const auto& piece : {std::make_pair(std::size_t(0), cut), std::make_pair(cut, n)}) {
    scorekit::ParticleView<double, Mem> part("part", piece.second - piece.first, 2);
    Kokkos::deep_copy(part, Kokkos::subview(start, piece, Kokkos::ALL));
    run(part, std::uint64_t(piece.first));
    CHECK(scorekit_test::bitwise_equal(part, Kokkos::subview(whole, piece, Kokkos::ALL)));
    if (piece.first > 0) {
      Kokkos::deep_copy(part, Kokkos::subview(start, piece, Kokkos::ALL));
      run(part, 0);
      CHECK_FALSE(scorekit_test::bitwise_equal(part, Kokkos::subview(whole, piece, Kokkos::ALL)));
    }
  }
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("a piece of a run with first_particle samples as that run does", "[sample][shard]",
                        scorekit_test::Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  Eigen::MatrixXd means(2, 2);
  means << -4, -1, 4, 2;
  const auto mix = scorekit::GaussianMixture<double, Mem>::isotropic(Eigen::Vector2d(0.3, 0.7), means,
                                                                     Eigen::Vector2d(1, 0.5));
  const scorekit::PerturbedMixtureScore<double, Mem> model(mix);
  scorekit::ParticleView<double, Mem> start("start", 37, 2);
  scorekit::draw_exact(Exec(), mix, start, 1);

  check_pieces<Exec>("MALA", start, 15, [&](const auto& x, std::uint64_t first) {
    scorekit::LangevinSettings<double> s;
    s.step_size = 0.2;
    s.n_steps = 10;
    s.seed = 2;
    s.first_particle = first;
    scorekit::mala(Exec(), mix, x, s);
  });
  check_pieces<Exec>("annealed Langevin, batched", start, 15, [&](const auto& x, std::uint64_t first) {
    scorekit::AnnealedLangevinSettings<double> s;
    s.sigmas = {2.0, 0.5};
    s.step_size = 1e-3;
    s.steps_per_level = 4;
    s.seed = 3;
    s.first_particle = first;
    scorekit::annealed_langevin(Exec(), scorekit::batched(model), x, s);
  });
  check_pieces<Exec>("predictor-corrector", start, 15, [&](const auto& x, std::uint64_t first) {
    const scorekit::VarianceExplodingSDE<double> ve(0.01, 10);
    scorekit::IntegrateSettings s;
    s.times = scorekit::uniform_times(1.0, 1e-3, 10);
    s.seed = 4;
    s.first_particle = first;
    scorekit::integrate(
        Exec(), scorekit::reverse_sde(ve, model),
        scorekit::predictor_corrector(scorekit::ReverseDiffusion{}, scorekit::LangevinCorrector{}), x, s);
  });
}
