// Annealed Langevin dynamics (Song and Ermon 2019, Algorithm 1) with the exact score of a perturbed
// Gaussian mixture: throughput in particle-steps/s and achieved GFLOP/s, on every backend this Kokkos
// enables (OpenMP with all threads, Serial, Cuda, HIP; the backend is the last part of the benchmark's
// name), with the mixture and the particles in that backend's memory space.
// benchmarks/torch_annealed_langevin.py runs the same workloads in PyTorch (--device cpu|cuda), and
// benchmarks/compare.sh (--device cpu|cuda) puts the two side by side.
//
// Workloads (float64; the same in the PyTorch script):
//   mixture-2d   weights 0.2 / 0.8, means (0,0) and (10,10), identity covariances; 10,000 particles
//                uniform on [-5,15]^2; sigma 20 -> 1 geometric over L = 10 levels, T = 100, eps = 0.1.
//   mixture-64d  16 components in 64-D with full covariances, parameters from the deterministic formula in
//                w2_parameters() (the Python script implements the same formula; both print a checksum of
//                the parameters, which compare.sh checks); 4,096 particles from N(0, 9 I); sigma 20 -> 0.5,
//                L = 10, T = 10, eps = 0.05.
// Each workload runs on both paths: fused (annealed_langevin's kernel with PerturbedMixtureScore) and, where
// Kokkos Kernels is available, batched ("<workload>-batched": BatchedMixtureScore, one batched score call a
// step; for full covariances one GEMM with the level's precisions).
//
// Time is the sampler's own fenced wall time (SamplerResult::seconds, reported through UseManualTime), so
// resetting the particles between iterations is not counted; building the mixture in the backend's memory
// space is set-up, not timed either.
//
//   bench_annealed_langevin [Google Benchmark flags] [--particles-scale=F]
// --particles-scale multiplies the particle counts (e.g. 0.01 for a quick run under callgrind).
#include "benchmark_context.hpp"
#include "mixture_workloads.hpp"

#include <scorekit/core/random.hpp>
#include <scorekit/density/gaussian_mixture.hpp>
#include <scorekit/sample/annealed_langevin.hpp>
#include <scorekit/schedule/geometric.hpp>
#include <scorekit/score/perturbed_mixture.hpp>
#ifdef SCOREKIT_HAVE_KOKKOS_KERNELS
#include <scorekit/score/batched_mixture.hpp>
#endif

#include <benchmark/benchmark.h>
#include <Kokkos_Core.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace {

// ---------------------------------------------------------------------------------------------------
// FLOP counts per score evaluation plus one Langevin update, counted from the loops of
// GaussianMixture::evaluate<Score = true, Laplacian = false> at a tabulated level (density/
// gaussian_mixture.hpp) and annealed_langevin's update. An FMA counts as 2 FLOP; a lookup of a tabulated
// constant counts 0. Not counted: one exp per component after the first (log-sum-exp), and the random
// numbers (Philox4x32-10 and Box-Muller: a log, sqrt, sin and cos per two coordinates), which are not
// floating-point multiply-adds; for the 2-D workload they are most of the work, so its GFLOP/s says
// little.

/// Isotropic or diagonal covariances, per component:
///   quad:  d x (x_j - a mu_j [2], dj*dj*iv [2], += [1])                   5 d
///   l_k = log_norm - quad / 2, the log-sum-exp subtraction and sum       4
///   score: d x (out_j -= w (x_j - a mu_j) iv: 2 + 1 + 1 + 1)             5 d
/// then 1 / sum [1], out *= 1/sum [d], |out|^2 [2 d], and the update
/// x += (alpha/2) s + sqrt(alpha) z [4 d]:  K (10 d + 4) + 7 d + 1.
double flop_diagonal(int k, int d) { return k * (10.0 * d + 4) + 7.0 * d + 1; }

/// Full covariances at a tabulated level: the per-level precision P_k = (Sigma_k + sigma^2 I)^-1 is
/// tabulated, and annealed Langevin evaluates blocks of 8 particles (GaussianMixture::score_block), per
/// component and particle:
///   diff = x - a mu_k                                                     2 d
///   g = -P diff: d^2 multiply-adds                                        2 d^2
///   quad += g_r diff_r                                                    2 d
///   l_k and the log-sum-exp                                               4
///   out += w g                                                            2 d
/// then 1 + d for the normalisation, and 4 d for the update:
///   K (2 d^2 + 6 d + 4) + 5 d + 1   (d = 64, K = 16: 137,601 FLOP).
double flop_full(int k, int d) { return k * (2.0 * d * d + 6.0 * d + 4) + 5.0 * d + 1; }

// The mixtures' parameters: mixture_workloads.hpp (the 64-D one from w2_parameters(), whose formula the
// Python script implements too). Each backend builds its own GaussianMixture from them.
using scorekit_bench::MixtureSpec;

// ---------------------------------------------------------------------------------------------------

struct Workload {
  std::string name;
  MixtureSpec mixture;
  std::int64_t n_particles;
  int dim;
  std::vector<double> sigmas;
  double step_size;
  int steps_per_level;
  double flop_per_particle_step;
  /// Fills the initial particles (host, LayoutRight) from a CounterRng stream.
  std::function<void(double* x, std::int64_t n, int d)> init;
  /// Optional check of the result; its value is reported as a counter named check_name.
  std::string check_name;
  std::function<double(const double* x, std::int64_t n, int d)> check;
};

Workload mixture_2d(double scale) {
  Workload w;
  w.name = "mixture-2d";
  w.mixture = scorekit_bench::mixture_2d_spec();
  w.dim = 2;
  w.n_particles = std::max<std::int64_t>(1, std::int64_t(10000 * scale));
  w.sigmas = scorekit::geometric_schedule(20.0, 1.0, 10);
  w.step_size = 0.1;
  w.steps_per_level = 100;
  w.flop_per_particle_step = flop_diagonal(2, 2);
  w.init = [](double* x, std::int64_t n, int d) {
    for (std::int64_t i = 0; i < n; ++i) {
      scorekit::CounterRng<double> rng(1, std::uint64_t(i), 0, scorekit::RngStream::init);
      for (int j = 0; j < d; ++j) x[i * d + j] = -5 + 20 * rng.uniform();
    }
  };
  // The fraction of particles closer to (0,0) than to (10,10): the weight of that mode, 0.2.
  w.check_name = "near_mode_0";
  w.check = [](const double* x, std::int64_t n, int) {
    std::int64_t near = 0;
    for (std::int64_t i = 0; i < n; ++i) near += (x[2 * i] + x[2 * i + 1] < 10) ? 1 : 0;
    return double(near) / double(n);
  };
  return w;
}

Workload mixture_64d(double scale, double* checksum) {
  const int k = 16, d = 64;
  Workload w;
  w.name = "mixture-64d";
  w.mixture = scorekit_bench::mixture_64d_spec(checksum);
  w.dim = d;
  w.n_particles = std::max<std::int64_t>(1, std::int64_t(4096 * scale));
  w.sigmas = scorekit::geometric_schedule(20.0, 0.5, 10);
  w.step_size = 0.05;
  w.steps_per_level = 10;
  w.flop_per_particle_step = flop_full(k, d);
  w.init = [](double* x, std::int64_t n, int dim) {
    for (std::int64_t i = 0; i < n; ++i) {
      scorekit::CounterRng<double> rng(2, std::uint64_t(i), 0, scorekit::RngStream::init);
      for (int j = 0; j < dim; ++j) x[i * dim + j] = 3 * rng.normal();
    }
  };
  return w;
}

/// The timed loop, over either path: a named function template, as nvcc wants around device code.
template <class Exec, class Model, class View>
double iterate(benchmark::State& state, const Exec& exec, const Model& model, const View& x, const View& x0,
               const scorekit::AnnealedLangevinSettings<double>& settings, double& particle_steps) {
  double seconds = 0;
  for (auto _ : state) {
    Kokkos::deep_copy(exec, x, x0);
    exec.fence();
    const auto result = scorekit::annealed_langevin(exec, model, x, settings);
    state.SetIterationTime(result.seconds);
    seconds += result.seconds;
    particle_steps += double(result.n_score_evaluations);
  }
  return seconds;
}

/// batched: the batch-synchronous path with BatchedMixtureScore (score/batched_mixture.hpp), else the
/// fused kernel with PerturbedMixtureScore.
template <class Exec>
void run_workload(benchmark::State& state, const Workload& w, bool batched) {
  using Mem = typename Exec::memory_space;
  const Exec exec;
  scorekit::ParticleView<double, Mem> x("x", w.n_particles, w.dim);
  scorekit::ParticleView<double, Mem> x0("x0", w.n_particles, w.dim);
  auto h_x0 = Kokkos::create_mirror_view(x0);
  w.init(h_x0.data(), w.n_particles, w.dim);
  Kokkos::deep_copy(x0, h_x0);
  const auto mixture = scorekit_bench::build_mixture<double, Mem>(w.mixture);
  const scorekit::PerturbedMixtureScore<double, Mem> model(mixture, w.sigmas);
  scorekit::AnnealedLangevinSettings<double> settings;
  settings.sigmas = w.sigmas;
  settings.step_size = w.step_size;
  settings.steps_per_level = w.steps_per_level;
  settings.seed = 42;

  double particle_steps = 0, seconds = 0;
  if (!batched) seconds = iterate(state, exec, model, x, x0, settings, particle_steps);
#ifdef SCOREKIT_HAVE_KOKKOS_KERNELS
  if (batched)
    seconds = iterate(state, exec, scorekit::BatchedMixtureScore<double, Mem>(mixture, w.sigmas), x, x0,
                      settings, particle_steps);
#endif
  const double rate = particle_steps / seconds;
  state.counters["particle_steps_per_s"] = benchmark::Counter(rate);
  state.counters["GFLOP/s"] = benchmark::Counter(rate * w.flop_per_particle_step * 1e-9);
  state.counters["FLOP_per_particle_step"] = benchmark::Counter(w.flop_per_particle_step);
  state.counters["threads"] = benchmark::Counter(double(exec.concurrency()));
  state.counters["particles"] = benchmark::Counter(double(w.n_particles));
  if (w.check) {
    auto h_x = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x);
    state.counters[w.check_name] = benchmark::Counter(w.check(h_x.data(), w.n_particles, w.dim));
  }
}

template <class Exec>
void register_workload(const std::string& backend, const Workload& w) {
#ifdef SCOREKIT_HAVE_KOKKOS_KERNELS
  const auto paths = {false, true};
#else
  const auto paths = {false};
#endif
  for (bool batched : paths)
    benchmark::RegisterBenchmark(
        ("annealed_langevin/" + w.name + (batched ? "-batched/" : "/") + backend).c_str(),
        [w, batched](benchmark::State& state) { run_workload<Exec>(state, w, batched); })
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  benchmark::Initialize(&argc, argv);
  double scale = 1.0;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--particles-scale=", 18) == 0) {
      scale = std::atof(argv[i] + 18);
      if (!(scale > 0)) {
        std::fprintf(stderr, "bench_annealed_langevin: --particles-scale must be > 0\n");
        return 2;
      }
    } else {
      std::fprintf(stderr, "bench_annealed_langevin: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  {
    double checksum = 0;
    const std::vector<Workload> workloads = {mixture_2d(scale), mixture_64d(scale, &checksum)};
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", checksum);
    benchmark::AddCustomContext("mixture_64d_parameter_checksum", buf);
    scorekit_bench::add_benchmark_context();
    for (const auto& w : workloads)
      scorekit_bench::for_each_backend([&w](auto backend, const char* name) {
        register_workload<typename decltype(backend)::execution_space>(name, w);
      });
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    benchmark::ClearRegisteredBenchmarks();  // the registered lambdas hold Kokkos views
  }
  return 0;
}
