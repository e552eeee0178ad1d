// Strong scaling over MPI ranks on one machine (benchmarks/scaling.sh runs it as 1 rank x 1 thread, 1 rank
// x 2 threads and 2 ranks x 1 thread). Each workload is timed from a barrier to a barrier, so a line is
// the slowest rank's time; rank 0 prints one line per workload:
//   <workload> <ranks> <threads> <seconds> <units per second> <unit>
// The workloads (fixed sizes, so more ranks share the same work):
//   train-mlp    Trainer, the toy NCSN net (2-128-128-2, 10 levels), DSM, batch 1024, 16 gradient chunks
//   train-unet   BatchTrainer, a U-Net (16/32 channels) on 14 x 14 images, batch 128, 8 micro-batches
//   sample-pc    predictor-corrector (reverse diffusion + Langevin) on the 64-D mixture, 16384 particles
// and for each the weights or samples of every run are checked against a checksum printed beside it, so
// the configurations are seen to compute the same bits.
// scorekit-requires: SCOREKIT_HAVE_MPI
#include "mixture_workloads.hpp"

#include <scorekit/density/draw.hpp>
#include <scorekit/distributed/sharding.hpp>
#include <scorekit/distributed/training.hpp>
#include <scorekit/integrate/predictor_corrector.hpp>
#include <scorekit/integrate/reverse_diffusion.hpp>
#include <scorekit/nn/image/unet.hpp>
#include <scorekit/nn/sequential.hpp>
#include <scorekit/objective/batch_denoising.hpp>
#include <scorekit/objective/denoising.hpp>
#include <scorekit/schedule/geometric.hpp>
#include <scorekit/score/perturbed_mixture.hpp>
#include <scorekit/sde/reverse.hpp>
#include <scorekit/sde/variance_exploding.hpp>
#include <scorekit/train/batch_trainer.hpp>
#include <scorekit/train/trainer.hpp>

#include <Kokkos_Core.hpp>

#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>

namespace {

namespace dist = scorekit::distributed;
using Exec = Kokkos::DefaultExecutionSpace;
using Mem = Exec::memory_space;
using Conditional =
    scorekit::nn::Sequential<scorekit::nn::ConditionalDense<2, 128, 10>, scorekit::nn::Softplus,
                             scorekit::nn::ConditionalDense<128, 128, 10>, scorekit::nn::Softplus,
                             scorekit::nn::Dense<128, 2>>;

template <class View>
unsigned long long checksum(const View& v) {
  const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  return dist::detail::fnv1a(h.data(), h.span() * sizeof(typename View::value_type));
}

/// Times `work` (which runs `units` units) between two barriers and prints the line.
template <class F>
void timed(const dist::Communicator& comm, const char* name, double units, const char* unit, F&& work) {
  comm.barrier();
  Kokkos::Timer timer;
  const unsigned long long sum = work();
  Kokkos::fence();
  comm.barrier();
  const double seconds = timer.seconds();
  if (comm.rank() == 0)
    std::printf("%s %d %d %.4f %.6g %s %016llx\n", name, comm.size(), Exec::concurrency(), seconds,
                units / seconds, unit, sum);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char* argv[]) {
  dist::Environment mpi(argc, argv);
  Kokkos::ScopeGuard kokkos(argc, argv);
  const dist::Communicator comm;
  return dist::run(comm, [&] {
    const std::string only = argc > 1 ? argv[1] : "";
    if (only.empty() || only == "train-mlp") {
      using Objective = scorekit::objective::DenoisingScoreMatching<float, Mem>;
      Kokkos::View<float**, Kokkos::LayoutRight, Mem> data("data", 10000, 2);
      scorekit::draw_exact(
          Exec(), scorekit_bench::build_mixture<float, Mem>(scorekit_bench::mixture_2d_spec()), data, 1);
      scorekit::train::TrainSettings s;
      s.batch_size = 1024;
      s.gradient_chunks = 16;
      s.log = nullptr;
      scorekit::train::Trainer<Conditional, Objective, Exec, float> t(
          Objective(scorekit::geometric_schedule(1.0, 0.01, 10)), s, 1);
      dist::data_parallel(comm, t, data);
      t.train(data, 5);  // warm-up
      const int steps = 500;
      timed(comm, "train-mlp", steps, "steps/s", [&] {
        t.train(data, steps);
        return checksum(t.parameters());
      });
    }
    if (only.empty() || only == "train-unet") {
      using Draw = scorekit::objective::SigmaLadder<float, Mem>;
      scorekit::nn::image::UNetSettings u;
      u.channels = {16, 32};
      u.groups = 4;
      u.embedding = 32;
      scorekit::ImageScoreSettings image;
      image.height = image.width = 14;
      image.channels = 1;
      image.fourier_features = 32;
      scorekit::train::TrainSettings s;
      s.batch_size = 128;
      s.gradient_chunks = 8;
      s.log = nullptr;
      scorekit::BatchView<float, Mem> data("data", 1000, 196);
      {
        auto h = Kokkos::create_mirror_view(data);
        std::mt19937_64 gen(1);
        std::uniform_real_distribution<float> uniform(0, 1);
        for (std::size_t i = 0; i < h.span(); ++i) h.data()[i] = uniform(gen);
        Kokkos::deep_copy(data, h);
      }
      auto net = std::make_shared<scorekit::nn::image::Network<float, Exec>>(
          scorekit::nn::image::unet<float, Exec>(u));
      scorekit::train::BatchTrainer<float, Exec, Draw> t(net, image, Draw({0.01, 0.1, 1.0}), s, 1);
      const scorekit::ConstBatchView<float, Mem> cdata = data;
      dist::data_parallel(comm, t, cdata);
      t.train(cdata, 1);  // warm-up
      const int steps = 40;
      timed(comm, "train-unet", steps, "steps/s", [&] {
        t.train(cdata, steps);
        return checksum(t.parameters());
      });
    }
    if (only.empty() || only == "sample-pc") {
      double mixture_checksum = 0;
      const auto mix =
          scorekit_bench::build_mixture<double, Mem>(scorekit_bench::mixture_64d_spec(&mixture_checksum));
      const scorekit::PerturbedMixtureScore<double, Mem> model(mix);
      const scorekit::VarianceExplodingSDE<double> ve(0.01, 50);
      const std::int64_t n = 16384;
      const int steps = 20;
      const auto part = dist::shard(comm, n);
      scorekit::ParticleView<double, Mem> all("all", n, 64);
      const auto k = ve.marginal(ve.t_max());
      scorekit::draw_exact(Exec(), mix.perturbed(k.scale, k.std), all, 2);
      scorekit::ParticleView<double, Mem> x("x", std::size_t(part.count), 64);
      Kokkos::deep_copy(
          x,
          Kokkos::subview(all, std::make_pair(std::size_t(part.first), std::size_t(part.first + part.count)),
                          Kokkos::ALL));
      scorekit::IntegrateSettings s;
      s.times = scorekit::uniform_times(1.0, 1e-3, steps);
      s.seed = 3;
      s.first_particle = std::uint64_t(part.first);
      const auto system = scorekit::reverse_sde(ve, model);
      const auto pc =
          scorekit::predictor_corrector(scorekit::ReverseDiffusion{}, scorekit::LangevinCorrector(0.16, 1));
      timed(comm, "sample-pc", double(n) * steps, "particle-steps/s", [&] {
        scorekit::integrate(Exec(), system, pc, x, s);
        return checksum(dist::allgather_rows(comm, x, n));
      });
    }
    return 0;
  });
}
