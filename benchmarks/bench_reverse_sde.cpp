// Sampling by reversing the VE SDE with the exact score of a Gaussian mixture: throughput of two loops of
// score_sde's samplers and of DDIM, on every backend this Kokkos enables (OpenMP with all threads, Serial,
// Cuda, HIP; the backend is the last part of the benchmark's name), with the mixture and the particles in
// that backend's memory space. benchmarks/torch_reverse_sde.py runs the same loops in PyTorch (--device
// cpu|cuda), and benchmarks/compare.sh (--only reverse, --device cpu|cuda) puts the two side by side.
//
// SDE: VE, sigma 0.01 -> 50 (sde/variance_exploding.hpp), the uniform grid t = 1 -> 1e-5 of score_sde with
// N steps. Loops:
//   pc   predictor-corrector: per step one Langevin corrector step at t (snr 0.16; LangevinStepRule::
//        noise_level, h = 2 snr^2 s_t^2, so that it is the same arithmetic in both implementations: the
//        per-batch norms of score_sde would couple the particles, see integrate/predictor_corrector.hpp),
//        then the reverse-diffusion predictor from t to t' (integrate/reverse_diffusion.hpp):
//        2 score evaluations and 2 d normals per step.
//   heun the probability-flow ODE dx/dt = -g(t)^2 s(x, t) / 2 by Heun's method (integrate/heun.hpp, no
//        churn): 2 score evaluations per step, no noise. Deterministic, so the two implementations must agree
//        to rounding: both report the mean of the final coordinates (pf_mean), which compare.sh prints side
//        by side.
//   ddim DDIM with eta = 0 (integrate/ddim.hpp) on the same grid: x' = x + s_t (s_t - s_t') s(x, t) for VE,
//        1 score evaluation per step, no noise; deterministic, checked by pf_mean as heun.
// Workloads (float64; the mixtures and particle counts of bench_annealed_langevin):
//   mixture-2d   weights 0.2 / 0.8, means (0,0) and (10,10), identity covariances; 10,000 particles;
//                N = 1000 steps.
//   mixture-64d  the 16-component 64-D mixture with full covariances of w2_parameters()
//   (mixture_workloads.hpp);
//                4,096 particles; N = 100 steps.
// The particles start from N(0, prior_std^2 I) drawn from the deterministic FormulaStream (seed 7 for the
// 2-D workload, 8 for the 64-D one), which the Python script draws identically, so both start from the same
// points. The score model tabulates the N + 1 noise levels of the grid (PerturbedMixtureScore's table; the
// Python script precomputes the same per-level constants outside its timed loop); tabulated_fraction
// reports which fraction of the grid's levels the kernels found in the table (1: all of them).
//
// Counters: particle_steps_per_s (particles x grid steps / s), score_evals_per_s, GFLOP/s of the score
// evaluations alone (counted as in bench_annealed_langevin.cpp, without its update), pf_mean / near_mode_0
// checks. Time is the sampler's own fenced wall time (SamplerResult::seconds, through UseManualTime), so
// resetting the particles between iterations is not counted.
//
//   bench_reverse_sde [Google Benchmark flags] [--particles-scale=F] [--steps-scale=F]
// --particles-scale multiplies the particle counts, --steps-scale the step counts (e.g. 0.01 for a check).
#include "benchmark_context.hpp"
#include "mixture_workloads.hpp"

#include <scorekit/density/gaussian_mixture.hpp>
#include <scorekit/integrate/ddim.hpp>
#include <scorekit/integrate/heun.hpp>
#include <scorekit/integrate/integrate_common.hpp>
#include <scorekit/integrate/predictor_corrector.hpp>
#include <scorekit/integrate/reverse_diffusion.hpp>
#include <scorekit/score/perturbed_mixture.hpp>
#ifdef SCOREKIT_HAVE_KOKKOS_KERNELS
#include <scorekit/score/batched_mixture.hpp>
#endif
#include <scorekit/sde/reverse.hpp>
#include <scorekit/sde/variance_exploding.hpp>

#include <benchmark/benchmark.h>
#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Sde = scorekit::VarianceExplodingSDE<double>;

/// FLOP of one score evaluation at a tabulated level (bench_annealed_langevin.cpp's counts less the
/// Langevin update's 4 d): isotropic K (10 d + 4) + 3 d + 1, full K (2 d^2 + 6 d + 4) + d + 1.
double flop_score_diagonal(int k, int d) { return k * (10.0 * d + 4) + 3.0 * d + 1; }
double flop_score_full(int k, int d) { return k * (2.0 * d * d + 6.0 * d + 4) + 1.0 * d + 1; }

struct Workload {
  std::string name;
  scorekit_bench::MixtureSpec mixture;  ///< built in each backend's memory space by run_workload
  std::int64_t n_particles;
  int dim;
  int steps;
  std::uint64_t init_seed;
  double flop_per_score;
};

Workload mixture_2d(double particles_scale, double steps_scale) {
  Workload w;
  w.name = "mixture-2d";
  w.mixture = scorekit_bench::mixture_2d_spec();
  w.dim = 2;
  w.n_particles = std::max<std::int64_t>(1, std::int64_t(10000 * particles_scale));
  w.steps = std::max(1, int(1000 * steps_scale));
  w.init_seed = 7;
  w.flop_per_score = flop_score_diagonal(2, 2);
  return w;
}

Workload mixture_64d(double particles_scale, double steps_scale, double* checksum) {
  const int k = 16, d = 64;
  Workload w;
  w.name = "mixture-64d";
  w.mixture = scorekit_bench::mixture_64d_spec(checksum);
  w.dim = d;
  w.n_particles = std::max<std::int64_t>(1, std::int64_t(4096 * particles_scale));
  w.steps = std::max(1, int(100 * steps_scale));
  w.init_seed = 8;
  w.flop_per_score = flop_score_full(k, d);
  return w;
}

const Sde& ve_sde() {
  static const Sde sde(0.01, 50.0);
  return sde;
}

/// The grid's noise levels, s(t_n) for n = 0..N, as the kernels compute them.
std::vector<double> grid_sigmas(const std::vector<double>& times) {
  std::vector<double> s;
  for (double t : times) s.push_back(ve_sde().marginal(t).std);
  return s;
}

/// The fraction of the grid's levels that the model finds in its table when asked from a kernel of Exec.
template <class Exec, class Model>
double tabulated_fraction(const Model& model, const std::vector<double>& times) {
  using Mem = typename Exec::memory_space;
  Kokkos::View<double*, Mem> t("times", times.size());
  auto h = Kokkos::create_mirror_view(t);
  for (std::size_t i = 0; i < times.size(); ++i) h(i) = times[i];
  Kokkos::deep_copy(t, h);
  const Sde sde = ve_sde();
  int found = 0;
  Kokkos::parallel_reduce(
      "bench_reverse_sde::tabulated", Kokkos::RangePolicy<Exec>(0, std::int64_t(times.size())),
      KOKKOS_LAMBDA(const std::int64_t i, int& sum) {
        sum += model.level_of(sde.marginal(t(i)).std) >= 0 ? 1 : 0;
      },
      found);
  return double(found) / double(times.size());
}

/// The start: N(0, prior_std^2 I) from FormulaStream(seed), particle after particle (torch_reverse_sde.py
/// draws the same numbers).
void fill_start(double* x, std::int64_t n, int d, std::uint64_t seed) {
  scorekit_bench::FormulaStream rng{seed, 0};
  const double s = ve_sde().prior_std();
  for (std::int64_t i = 0; i < n * d; ++i) x[i] = s * rng.normal();
}

/// The loops, on the fused path (one particle a work item, the whole run in one kernel) or the batched one
/// (BatchedMixtureScore, score/batched_mixture.hpp: per evaluation one batched score call, GEMMs for full
/// covariances; built when Kokkos Kernels is available).
enum class Loop { pc, heun, ddim, pc_batched, heun_batched, ddim_batched };

const char* loop_name(Loop loop) {
  switch (loop) {
    case Loop::pc:
      return "pc";
    case Loop::heun:
      return "heun";
    case Loop::ddim:
      return "ddim";
    case Loop::pc_batched:
      return "pc-batched";
    case Loop::heun_batched:
      return "heun-batched";
    case Loop::ddim_batched:
      return "ddim-batched";
  }
  return "?";
}

/// What the timed runs add up.
struct Totals {
  double seconds = 0, evaluations = 0, particle_steps = 0;
};

/// The timed loop: per iteration, reset the particles (not timed) and integrate (the run's own fenced
/// time). A named function template rather than a generic lambda, as nvcc wants around device code.
template <class Exec, class System, class Integrator, class View>
Totals iterate(benchmark::State& state, const Exec& exec, const System& system, const Integrator& integrator,
               const View& x, const View& x0, const scorekit::IntegrateSettings& settings, std::int64_t n) {
  Totals totals;
  for (auto _ : state) {
    Kokkos::deep_copy(exec, x, x0);
    exec.fence();
    const auto result = scorekit::integrate(exec, system, integrator, x, settings);
    state.SetIterationTime(result.seconds);
    totals.seconds += result.seconds;
    totals.evaluations += double(result.n_score_evaluations);
    totals.particle_steps += double(n) * double(result.n_steps);
  }
  return totals;
}

template <class Exec>
void run_workload(benchmark::State& state, const Workload& w, Loop loop) {
  using Mem = typename Exec::memory_space;
  const Exec exec;
  scorekit::ParticleView<double, Mem> x("x", w.n_particles, w.dim);
  scorekit::ParticleView<double, Mem> x0("x0", w.n_particles, w.dim);
  auto h_x0 = Kokkos::create_mirror_view(x0);
  fill_start(h_x0.data(), w.n_particles, w.dim, w.init_seed);
  Kokkos::deep_copy(x0, h_x0);
  scorekit::IntegrateSettings settings;
  settings.times = scorekit::uniform_times(1.0, 1e-5, w.steps);
  settings.seed = 42;
  const auto mixture = scorekit_bench::build_mixture<double, Mem>(w.mixture);
  const scorekit::PerturbedMixtureScore<double, Mem> model(mixture, grid_sigmas(settings.times));
  const double tabulated = tabulated_fraction<Exec>(model, settings.times);

  const auto pc =
      scorekit::predictor_corrector(scorekit::ReverseDiffusion{}, scorekit::LangevinCorrector(0.16, 1));
  Totals totals;
  if (loop == Loop::pc)
    totals = iterate(state, exec, scorekit::reverse_sde(ve_sde(), model), pc, x, x0, settings, w.n_particles);
  else if (loop == Loop::heun)
    totals = iterate(state, exec, scorekit::probability_flow(ve_sde(), model), scorekit::Heun{}, x, x0,
                     settings, w.n_particles);
  else if (loop == Loop::ddim)
    totals = iterate(state, exec, scorekit::probability_flow(ve_sde(), model), scorekit::Ddim(0), x, x0,
                     settings, w.n_particles);
#ifdef SCOREKIT_HAVE_KOKKOS_KERNELS
  const scorekit::BatchedMixtureScore<double, Mem> batch(mixture, grid_sigmas(settings.times));
  if (loop == Loop::pc_batched)
    totals = iterate(state, exec, scorekit::reverse_sde(ve_sde(), batch), pc, x, x0, settings, w.n_particles);
  else if (loop == Loop::heun_batched)
    totals = iterate(state, exec, scorekit::probability_flow(ve_sde(), batch), scorekit::Heun{}, x, x0,
                     settings, w.n_particles);
  else if (loop == Loop::ddim_batched)
    totals = iterate(state, exec, scorekit::probability_flow(ve_sde(), batch), scorekit::Ddim(0), x, x0,
                     settings, w.n_particles);
#endif
  const double seconds = totals.seconds, evaluations = totals.evaluations,
               particle_steps = totals.particle_steps;

  state.counters["particle_steps_per_s"] = benchmark::Counter(particle_steps / seconds);
  state.counters["score_evals_per_s"] = benchmark::Counter(evaluations / seconds);
  state.counters["GFLOP/s"] = benchmark::Counter(evaluations / seconds * w.flop_per_score * 1e-9);
  state.counters["FLOP_per_score"] = benchmark::Counter(w.flop_per_score);
  state.counters["threads"] = benchmark::Counter(double(exec.concurrency()));
  state.counters["particles"] = benchmark::Counter(double(w.n_particles));
  state.counters["steps"] = benchmark::Counter(double(w.steps));
  state.counters["tabulated_fraction"] = benchmark::Counter(tabulated);
  auto h_x = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x);
  double sum = 0;
  std::int64_t near = 0;
  for (std::int64_t i = 0; i < w.n_particles; ++i) {
    for (int j = 0; j < w.dim; ++j) sum += h_x(i, j);
    if (w.dim == 2) near += (h_x(i, 0) + h_x(i, 1) < 10) ? 1 : 0;
  }
  state.counters["pf_mean"] = benchmark::Counter(sum / double(w.n_particles * w.dim));
  if (w.dim == 2) state.counters["near_mode_0"] = benchmark::Counter(double(near) / double(w.n_particles));
}

template <class Exec>
void register_workload(const std::string& backend, const Workload& w) {
#ifdef SCOREKIT_HAVE_KOKKOS_KERNELS
  const auto loops = {Loop::pc,         Loop::heun,         Loop::ddim,
                      Loop::pc_batched, Loop::heun_batched, Loop::ddim_batched};
#else
  const auto loops = {Loop::pc, Loop::heun, Loop::ddim};
#endif
  for (Loop loop : loops)
    benchmark::RegisterBenchmark(
        (std::string("reverse_sde/") + loop_name(loop) + "/" + w.name + "/" + backend).c_str(),
        [w, loop](benchmark::State& state) { run_workload<Exec>(state, w, loop); })
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
}

bool parse_scale(const char* arg, const char* flag, double& value) {
  const std::size_t n = std::strlen(flag);
  if (std::strncmp(arg, flag, n) != 0) return false;
  value = std::atof(arg + n);
  if (!(value > 0)) {
    std::fprintf(stderr, "bench_reverse_sde: %s must be > 0\n", flag);
    std::exit(2);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  benchmark::Initialize(&argc, argv);
  double particles_scale = 1.0, steps_scale = 1.0;
  for (int i = 1; i < argc; ++i) {
    if (!parse_scale(argv[i], "--particles-scale=", particles_scale) &&
        !parse_scale(argv[i], "--steps-scale=", steps_scale)) {
      std::fprintf(stderr, "bench_reverse_sde: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  {
    double checksum = 0;
    const std::vector<Workload> workloads = {mixture_2d(particles_scale, steps_scale),
                                             mixture_64d(particles_scale, steps_scale, &checksum)};
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
