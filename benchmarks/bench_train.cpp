// Training steps per second (float32), the same four workloads as benchmarks/torch_train.py: the seed
// paper's toy nets on 10,000 points of the 0.2/0.8 mixture. On every backend this Kokkos enables (OpenMP
// with all threads, Serial, Cuda, HIP), with the data and the weights in that backend's memory space; the
// benchmark's name is "<workload>/<backend>" (compare.sh filters on the backend).
//   ncsn_dsm_b128, ncsn_dsm_b1024  ConditionalDense(2,128,10) softplus ConditionalDense(128,128,10)
//                                  softplus Dense(128,2); NCSN objective, 10 levels 1 -> 0.01, lambda =
//                                  sigma^2; batch 128 and 1024
//   ism_exact_b128                 Dense(2,128) softplus Dense(128,128) softplus Dense(128,2); ISM with the
//                                  exact trace (2 tangents); batch 128
//   ssm_b128                       the same net; sliced score matching, one Gaussian probe; batch 128
// Each step is a whole Trainer step: minibatch, objective, backward, Adam, EMA. FLOP per step are
// counted as torch_train.py does: a dense layer 2 in out per sample and column, backward twice forward,
// so 3 f per sample for DSM, 3 (1 + d) f for ISM (d tangents), 3 * 2 f for SSM, f = forward FLOP.
// Time: the fenced wall time of Trainer::train's 50 steps per iteration (after 20 warm-up steps).
#include "benchmark_context.hpp"

#include <scorekit/density/draw.hpp>
#include <scorekit/density/gaussian_mixture.hpp>
#include <scorekit/nn/sequential.hpp>
#include <scorekit/objective/denoising.hpp>
#include <scorekit/objective/implicit.hpp>
#include <scorekit/schedule/geometric.hpp>
#include <scorekit/train/trainer.hpp>

#include <benchmark/benchmark.h>
#include <Kokkos_Core.hpp>

#include <string>

namespace {

using namespace scorekit;

using Plain =
    nn::Sequential<nn::Dense<2, 128>, nn::Softplus, nn::Dense<128, 128>, nn::Softplus, nn::Dense<128, 2>>;
using Conditional = nn::Sequential<nn::ConditionalDense<2, 128, 10>, nn::Softplus,
                                   nn::ConditionalDense<128, 128, 10>, nn::Softplus, nn::Dense<128, 2>>;
constexpr double forward_flop = 2.0 * (2 * 128 + 128 * 128 + 128 * 2);

template <class Exec>
Kokkos::View<const float**, Kokkos::LayoutRight, typename Exec::memory_space> data() {
  using Mem = typename Exec::memory_space;
  Kokkos::View<float**, Kokkos::LayoutRight, Mem> x;
  {
    Eigen::VectorXd weights(2), variances(2);
    weights << 0.2, 0.8;
    variances << 1, 1;
    Eigen::MatrixXd means(2, 2);
    means << 0, 0, 10, 10;
    const auto mixture = GaussianMixture<float, Mem>::isotropic(weights, means, variances);
    x = Kokkos::View<float**, Kokkos::LayoutRight, Mem>("data", 10000, 2);
    draw_exact(Exec(), mixture, x, 1);
  }
  return x;
}

template <class Exec, class Net, class Objective>
void run(benchmark::State& state, Objective objective, int batch, double flop_per_sample) {
  train::TrainSettings settings;
  settings.batch_size = batch;
  settings.seed = 1;
  train::Trainer<Net, Objective, Exec, float> trainer(objective, settings, 1);
  const auto x = data<Exec>();
  const Exec exec;
  trainer.train(x, 20);  // warm-up
  long steps = 0;
  double seconds = 0;
  for (auto _ : state) {
    exec.fence();
    Kokkos::Timer timer;
    const auto report = trainer.train(x, 50);
    exec.fence();
    const double t = timer.seconds();
    steps += report.steps;
    seconds += t;
    state.SetIterationTime(t);
  }
  const double rate = seconds > 0 ? double(steps) / seconds : 0.0;
  state.counters["steps_per_s"] = benchmark::Counter(rate);
  state.counters["GFLOP/s"] = benchmark::Counter(rate * flop_per_sample * batch * 1e-9);
  state.counters["FLOP_per_step"] = benchmark::Counter(flop_per_sample * batch);
  state.counters["threads"] = benchmark::Counter(double(Exec().concurrency()));
}

template <class Exec>
void ncsn_dsm(benchmark::State& state, int batch) {
  using Mem = typename Exec::memory_space;
  run<Exec, Conditional>(state,
                         objective::DenoisingScoreMatching<float, Mem>(geometric_schedule(1.0, 0.01, 10)),
                         batch, 3 * forward_flop);
}
template <class Exec>
void ism_exact(benchmark::State& state, int batch) {
  run<Exec, Plain>(state, objective::implicit_score_matching(), batch, 3 * (1 + 2) * forward_flop);
}
template <class Exec>
void ssm(benchmark::State& state, int batch) {
  run<Exec, Plain>(state, objective::sliced_score_matching(1), batch, 3 * 2 * forward_flop);
}

/// The four workloads on backend Exec, named "<workload>/<backend>".
template <class Exec>
void register_workloads(const std::string& backend) {
  const auto add = [&backend](const char* name, void (*fn)(benchmark::State&, int), int batch) {
    benchmark::RegisterBenchmark((std::string(name) + "/" + backend).c_str(),
                                 [fn, batch](benchmark::State& state) { fn(state, batch); })
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  };
  add("ncsn_dsm_b128", ncsn_dsm<Exec>, 128);
  add("ncsn_dsm_b1024", ncsn_dsm<Exec>, 1024);
  add("ism_exact_b128", ism_exact<Exec>, 128);
  add("ssm_b128", ssm<Exec>, 128);
}

}  // namespace

int main(int argc, char** argv) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  benchmark::Initialize(&argc, argv);
  scorekit_bench::add_benchmark_context();
  scorekit_bench::for_each_backend([](auto backend, const char* name) {
    register_workloads<typename decltype(backend)::execution_space>(name);
  });
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  benchmark::ClearRegisteredBenchmarks();
  return 0;
}
