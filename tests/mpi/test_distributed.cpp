// Data-parallel training and sharded sampling over MPI give the same bits as one process. Run under
// `mpirun -np R` (tests/CMakeLists.txt runs R = 1 to 4): every rank computes the one-process answer itself
// (the reference), then the distributed one, and compares them bit for bit, so each run proves the claim
// for its R. The BatchTrainer case needs Kokkos Kernels (the image networks' products); the rest does not.
#include "../support.hpp"

#include <scorekit/density/draw.hpp>
#include <scorekit/density/gaussian_mixture.hpp>
#include <scorekit/distributed/sharding.hpp>
#include <scorekit/distributed/training.hpp>
#include <scorekit/divergence/hutchinson.hpp>
#include <scorekit/integrate/ancestral.hpp>
#include <scorekit/integrate/ddim.hpp>
#include <scorekit/integrate/euler_maruyama.hpp>
#include <scorekit/integrate/heun.hpp>
#include <scorekit/integrate/predictor_corrector.hpp>
#include <scorekit/integrate/reverse_diffusion.hpp>
#include <scorekit/likelihood/log_likelihood.hpp>
#include <scorekit/metrics/moments.hpp>
#if defined(SCOREKIT_HAVE_KOKKOS_KERNELS)
#include <scorekit/nn/image/unet.hpp>
#include <scorekit/objective/batch_denoising.hpp>
#include <scorekit/train/batch_trainer.hpp>
#endif
#include <scorekit/nn/sequential.hpp>
#include <scorekit/objective/denoising.hpp>
#include <scorekit/sample/annealed_langevin.hpp>
#include <scorekit/sample/hmc.hpp>
#include <scorekit/sample/langevin.hpp>
#include <scorekit/schedule/geometric.hpp>
#include <scorekit/schedule/linear_beta.hpp>
#include <scorekit/score/batched.hpp>
#include <scorekit/score/perturbed_mixture.hpp>
#include <scorekit/sde/reverse.hpp>
#include <scorekit/sde/variance_exploding.hpp>
#include <scorekit/sde/variance_preserving.hpp>
#include <scorekit/train/trainer.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

namespace dist = scorekit::distributed;
using Exec = Kokkos::DefaultExecutionSpace;
using Mem = Exec::memory_space;

template <class Real>
scorekit::GaussianMixture<Real, Mem> two_modes() {
  Eigen::MatrixXd means(2, 2);
  means << -4, -1, 4, 2;
  return scorekit::GaussianMixture<Real, Mem>::isotropic(Eigen::Vector2d(0.3, 0.7), means,
                                                         Eigen::Vector2d(1, 0.5));
}

/// `run(x, first)` samples the rows of x as rows first.. of a larger run and returns a host n x k view of
/// per-row results. The sharded run (this rank's rows of the same initial particles, gathered) must be
/// bitwise the one-process run.
template <class Real, class Run>
void check_sharded(const dist::Communicator& comm, const std::string& name, std::int64_t n,
                   const scorekit::ParticleView<Real, Mem>& initial, const Run& run) {
  INFO(name << " on " << comm.size() << " ranks");
  scorekit::ParticleView<Real, Mem> all("all", initial.extent(0), initial.extent(1));
  Kokkos::deep_copy(all, initial);
  const auto reference = run(all, std::uint64_t(0));
  const dist::Shard part = dist::shard(comm, n);
  scorekit::ParticleView<Real, Mem> mine("mine", std::size_t(part.count), initial.extent(1));
  Kokkos::deep_copy(
      mine,
      Kokkos::subview(initial, std::make_pair(std::size_t(part.first), std::size_t(part.first + part.count)),
                      Kokkos::ALL));
  const auto local = run(mine, std::uint64_t(part.first));
  const auto gathered = dist::allgather_rows(comm, local, n);
  REQUIRE(gathered.extent(0) == reference.extent(0));
  CHECK(scorekit_test::bitwise_equal(gathered, reference));
}

template <class View>
Kokkos::View<typename View::non_const_value_type**, Kokkos::LayoutRight, Kokkos::HostSpace> rows_of(
    const View& v) {
  Kokkos::View<typename View::non_const_value_type**, Kokkos::LayoutRight, Kokkos::HostSpace> out(
      "rows", v.extent(0), unsigned(View::rank) == 2 ? v.extent(1) : 1);
  const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  if constexpr (unsigned(View::rank) == 2)
    Kokkos::deep_copy(out, h);
  else
    for (std::size_t i = 0; i < h.extent(0); ++i) out(i, 0) = h(i);
  return out;
}

using ToyNC = scorekit::nn::Sequential<scorekit::nn::ConditionalDense<2, 16, 4>, scorekit::nn::Softplus,
                                       scorekit::nn::ConditionalDense<16, 16, 4>, scorekit::nn::Softplus,
                                       scorekit::nn::Dense<16, 2>>;

}  // namespace

TEST_CASE("sharded samplers give the one-process samples bit for bit", "[mpi][sample]") {
  const dist::Communicator comm;
  const std::int64_t n = 53;  // not a multiple of 2, 3 or 4: unequal shards
  const auto mix = two_modes<double>();
  const scorekit::PerturbedMixtureScore<double, Mem> model(mix);
  scorekit::ParticleView<double, Mem> start("start", n, 2);
  scorekit::draw_exact(Exec(), mix, start, 5);

  SECTION("ULA, MALA and HMC") {
    scorekit::LangevinSettings<double> s;
    s.step_size = 0.05;
    s.n_steps = 30;
    s.seed = 9;
    check_sharded<double>(comm, "ULA", n, start, [&](const auto& x, std::uint64_t first) {
      auto t = s;
      t.first_particle = first;
      scorekit::ula(Exec(), mix, x, t);
      return rows_of(x);
    });
    check_sharded<double>(comm, "MALA", n, start, [&](const auto& x, std::uint64_t first) {
      auto t = s;
      t.first_particle = first;
      scorekit::mala(Exec(), mix, x, t);
      return rows_of(x);
    });
    scorekit::HmcSettings<double> h;
    h.step_size = 0.1;
    h.n_leapfrog = 5;
    h.n_steps = 10;
    h.seed = 4;
    check_sharded<double>(comm, "HMC", n, start, [&](const auto& x, std::uint64_t first) {
      auto t = h;
      t.first_particle = first;
      scorekit::hmc(Exec(), mix, x, t);
      return rows_of(x);
    });
  }

  SECTION("annealed Langevin, fused and batched") {
    scorekit::AnnealedLangevinSettings<double> s;
    s.sigmas = {5.0, 2.0, 0.7, 0.2};
    s.step_size = 2e-4;
    s.steps_per_level = 5;
    s.final_denoise = true;
    s.seed = 3;
    check_sharded<double>(comm, "annealed Langevin", n, start, [&](const auto& x, std::uint64_t first) {
      auto t = s;
      t.first_particle = first;
      scorekit::annealed_langevin(Exec(), model, x, t);
      return rows_of(x);
    });
    check_sharded<double>(comm, "annealed Langevin, batched", n, start,
                          [&](const auto& x, std::uint64_t first) {
                            auto t = s;
                            t.first_particle = first;
                            scorekit::annealed_langevin(Exec(), scorekit::batched(model), x, t);
                            return rows_of(x);
                          });
  }

  SECTION("every reverse integrator, fused and batched") {
    const scorekit::VarianceExplodingSDE<double> ve(0.01, 10);
    const auto rev = scorekit::reverse_sde(ve, model);
    const auto rev_batched = scorekit::reverse_sde(ve, scorekit::batched(model));
    const auto pf = scorekit::probability_flow(ve, model);
    scorekit::IntegrateSettings s;
    s.times = scorekit::uniform_times(1.0, 1e-3, 40);
    s.seed = 21;
    auto integrate = [&](const std::string& name, const auto& system, const auto& integrator) {
      check_sharded<double>(comm, name, n, start, [&](const auto& x, std::uint64_t first) {
        auto t = s;
        t.first_particle = first;
        scorekit::integrate(Exec(), system, integrator, x, t);
        return rows_of(x);
      });
    };
    integrate("Euler-Maruyama", rev, scorekit::EulerMaruyama{});
    integrate("Euler-Maruyama, batched", rev_batched, scorekit::EulerMaruyama{});
    integrate("reverse diffusion", rev, scorekit::ReverseDiffusion{});
    integrate("ancestral", rev, scorekit::AncestralSampling{});
    integrate("DDIM eta 0.5", rev, scorekit::Ddim{0.5});
    integrate("predictor-corrector", rev,
              scorekit::predictor_corrector(scorekit::ReverseDiffusion{}, scorekit::LangevinCorrector{}));
    integrate("predictor-corrector, batched", rev_batched,
              scorekit::predictor_corrector(scorekit::ReverseDiffusion{}, scorekit::LangevinCorrector{}));
    scorekit::Heun churned;
    churned.churn = 2;
    churned.n_steps = 40;
    integrate("Heun with churn", pf, churned);
  }

  SECTION("likelihood with Hutchinson probes, fused and batched") {
    const auto vp = scorekit::vp_sde(scorekit::LinearBeta<double>{0.1, 20});
    scorekit::LikelihoodSettings<scorekit::Hutchinson<scorekit::RademacherProbe>> s;
    s.estimator = scorekit::Hutchinson<scorekit::RademacherProbe>(2);
    s.ode.rtol = s.ode.atol = 1e-5;
    s.seed = 8;
    check_sharded<double>(comm, "log_likelihood", n, start, [&](const auto& x, std::uint64_t first) {
      auto t = s;
      t.first_particle = first;
      return rows_of(scorekit::log_likelihood(Exec(), vp, model, x, t).log_p);
    });
    check_sharded<double>(comm, "log_likelihood, batched", n, start, [&](const auto& x, std::uint64_t first) {
      auto t = s;
      t.first_particle = first;
      return rows_of(scorekit::log_likelihood(Exec(), vp, scorekit::batched(model), x, t).log_p);
    });
  }
}

TEST_CASE("metrics and counters of a sharded run are those of one process", "[mpi][sample]") {
  const dist::Communicator comm;
  const std::int64_t n = 301;
  const auto mix = two_modes<double>();
  scorekit::ParticleView<double, Mem> all("all", n, 2);
  scorekit::draw_exact(Exec(), mix, all, 6);
  scorekit::LangevinSettings<double> s;
  s.step_size = 0.3;
  s.n_steps = 20;
  s.seed = 2;
  scorekit::ParticleView<double, Mem> copy("copy", n, 2);
  Kokkos::deep_copy(copy, all);
  const auto whole = scorekit::mala(Exec(), mix, copy, s);
  const auto part = dist::shard(comm, n);
  scorekit::ParticleView<double, Mem> mine("mine", std::size_t(part.count), 2);
  Kokkos::deep_copy(
      mine,
      Kokkos::subview(all, std::make_pair(std::size_t(part.first), std::size_t(part.first + part.count)),
                      Kokkos::ALL));
  s.first_particle = std::uint64_t(part.first);
  const auto combined = dist::combine(comm, scorekit::mala(Exec(), mix, mine, s));
  CHECK(combined.n_score_evaluations == whole.n_score_evaluations);
  // Accepted counts are integers: the combined rate is the one-process rate up to the rounding of the
  // per-rank rates (a few ulps).
  CHECK(combined.acceptance_rate == Approx(whole.acceptance_rate).epsilon(1e-12));
  const auto gathered = dist::allgather_rows(comm, mine, n);
  const auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), copy);
  const Kokkos::DefaultHostExecutionSpace on_host;
  CHECK(scorekit::sample_mean(on_host, gathered) == scorekit::sample_mean(on_host, host));
  CHECK(scorekit::sample_covariance(on_host, gathered) == scorekit::sample_covariance(on_host, host));

  // Written per rank with the global index; rank 0 reads every rank's files back.
  const std::string stem = "mpi_shards_" + std::to_string(comm.size());
  dist::write_shard_npy(comm, stem, mine, part);
  comm.barrier();
  if (comm.rank() == 0)
    for (int r = 0; r < comm.size(); ++r) {
      std::ifstream f(stem + ".rank" + std::to_string(r) + ".index.npy", std::ios::binary);
      CHECK(f.good());
    }
}

TEST_CASE("data-parallel training gives the one-process weights bit for bit", "[mpi][train]") {
  const dist::Communicator comm;
  const auto sigmas = scorekit::geometric_schedule(1.0, 0.05, 4);
  using Objective = scorekit::objective::DenoisingScoreMatching<float, Mem>;
  using T = scorekit::train::Trainer<ToyNC, Objective, Exec, float>;
  Kokkos::View<float**, Kokkos::LayoutRight, Mem> data("data", 500, 2);
  scorekit::draw_exact(Exec(), two_modes<float>(), data, 8);
  scorekit::train::TrainSettings settings;
  settings.batch_size = 100;  // blocks of 16: a partial last block
  settings.gradient_chunks = 12;
  settings.seed = 4;
  settings.log = nullptr;

  T alone(Objective(sigmas), settings, 2);
  alone.train(data, 6);
  const std::string path = "mpi_trainer_" + std::to_string(comm.size()) + ".ckpt";
  if (comm.rank() == 0) alone.save(path);  // a one-process checkpoint, resumed on every rank count below
  alone.train(data, 6);

  T shared(Objective(sigmas), settings, 2);
  dist::data_parallel(comm, shared, data);
  shared.train(data, 12);
  CHECK(scorekit_test::bitwise_equal(shared.parameters(), alone.parameters()));
  CHECK(scorekit_test::bitwise_equal(shared.ema_parameters(), alone.ema_parameters()));

  comm.barrier();
  T resumed(Objective(sigmas), settings, 77);
  dist::load(comm, resumed, path);
  dist::data_parallel(comm, resumed, data);
  resumed.train(data, 6);
  CHECK(scorekit_test::bitwise_equal(resumed.parameters(), alone.parameters()));
  const std::string path2 = "mpi_trainer_saved_" + std::to_string(comm.size()) + ".ckpt";
  dist::save(comm, resumed, path2);
  T reread(Objective(sigmas), settings, 5);
  dist::load(comm, reread, path2);
  CHECK(scorekit_test::bitwise_equal(reread.parameters(), alone.parameters()));
}

#if defined(SCOREKIT_HAVE_KOKKOS_KERNELS)
TEST_CASE("data-parallel BatchTrainer gives the one-process weights bit for bit", "[mpi][train][image]") {
  const dist::Communicator comm;
  using Draw = scorekit::objective::SigmaLadder<float, Mem>;
  scorekit::nn::image::UNetSettings u;
  u.channels = {8, 16};
  u.groups = 4;
  u.embedding = 8;
  scorekit::ImageScoreSettings image;
  image.height = image.width = 8;
  image.channels = 1;
  image.fourier_features = 8;
  scorekit::train::TrainSettings t;
  t.batch_size = 24;
  t.gradient_chunks = 12;
  t.seed = 3;
  t.log = nullptr;
  scorekit::BatchView<float, Mem> data("data", 40, 64);
  {
    auto h = Kokkos::create_mirror_view(data);
    std::mt19937_64 gen(1);
    std::normal_distribution<float> z;
    for (std::size_t i = 0; i < h.span(); ++i) h.data()[i] = z(gen);
    Kokkos::deep_copy(data, h);
  }
  auto make = [&] {
    auto net = std::make_shared<scorekit::nn::image::Network<float, Exec>>(
        scorekit::nn::image::unet<float, Exec>(u));
    return std::make_unique<scorekit::train::BatchTrainer<float, Exec, Draw>>(net, image,
                                                                              Draw({0.1, 0.5, 2.0}), t, 1);
  };
  auto alone = make();
  alone->train(scorekit::ConstBatchView<float, Mem>(data), 3);
  auto shared = make();
  dist::data_parallel(comm, *shared, scorekit::ConstBatchView<float, Mem>(data));
  const auto report = shared->train(scorekit::ConstBatchView<float, Mem>(data), 3);
  CHECK(scorekit_test::bitwise_equal(shared->parameters(), alone->parameters()));
  CHECK(scorekit_test::bitwise_equal(shared->ema_parameters(), alone->ema_parameters()));
  CHECK(std::isfinite(report.final_loss));
}
#endif

TEST_CASE("distributed runs refuse what would make ranks disagree, on every rank", "[mpi][errors]") {
  const dist::Communicator comm;
  const auto sigmas = scorekit::geometric_schedule(1.0, 0.05, 4);
  using Objective = scorekit::objective::DenoisingScoreMatching<float, Mem>;
  using T = scorekit::train::Trainer<ToyNC, Objective, Exec, float>;
  Kokkos::View<float**, Kokkos::LayoutRight, Mem> data("data", 200, 2);
  scorekit::draw_exact(Exec(), two_modes<float>(), data, 8);
  scorekit::train::TrainSettings settings;
  settings.batch_size = 64;
  settings.gradient_chunks = 4;
  settings.log = nullptr;

  SECTION("a missing checkpoint is named on every rank") {
    T t(Objective(sigmas), settings, 2);
    CHECK_THROWS_WITH(dist::load(comm, t, "no_such_checkpoint.ckpt"),
                      Catch::Contains("loading the checkpoint failed on rank 0") &&
                          Catch::Contains("no_such_checkpoint.ckpt"));
  }
  SECTION("settings that differ between ranks") {
    if (comm.size() == 1) return;
    auto s = settings;
    s.seed = comm.rank() == comm.size() - 1 ? 99 : 0;
    T t(Objective(sigmas), s, 2);
    CHECK_THROWS_WITH(
        dist::data_parallel(comm, t, data),
        Catch::Contains("differ between rank 0 and rank(s) " + std::to_string(comm.size() - 1)));
  }
  SECTION("fewer gradient chunks than ranks") {
    auto s = settings;
    s.gradient_chunks = 1;
    T t(Objective(sigmas), s, 2);
    if (comm.size() > 1)
      CHECK_THROWS_WITH(dist::data_parallel(comm, t, data), Catch::Contains("fewer than the"));
    else
      CHECK_NOTHROW(dist::data_parallel(comm, t, data));
  }
  SECTION("a rank whose rows are not its shard") {
    scorekit::ParticleView<double, Mem> x("x", comm.rank() == 0 ? 5 : 1, 2);
    if (comm.size() == 1) return;
    CHECK_THROWS_WITH(dist::allgather_rows(comm, x, 10), Catch::Contains("its shard of 10"));
  }
}
