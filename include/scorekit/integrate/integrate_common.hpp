// The driver every fixed-grid integrator shares. A run integrates a DriftDiffusion system (sde/langevin.hpp:
// a forward SDE such as Ornstein-Uhlenbeck, or a ReverseSDE / ProbabilityFlowODE from sde/reverse.hpp)
// over a time grid t_0, t_1, ..., t_N, forwards (increasing) or backwards (decreasing: sampling), every
// particle in one kernel doing all its steps. Step n (n = 1..N) goes from t_{n-1} to t_n and draws its
// noise from CounterRng(seed, particle, n), so a run is bitwise the same for any thread count.
//
// An Integrator is a small value type with
//   static constexpr int n_vectors;   // length-d scratch vectors it needs per particle
//   template <class System> void check(const System&) const;    // host: refuse systems it cannot step
//                                                                // (static_assert) and bad settings
//   int evaluations(double t, double t_next) const;              // host: model calls one step makes
//   template <class System, class Real>
//   KOKKOS_INLINE_FUNCTION void step(const System& system, Real* x, Real t, Real t_next, bool noise,
//                                    Real* vectors, Real* work, CounterRng<Real>& rng) const;
// `noise` is false only on the final step of a run with remove_last_noise set: the step then returns its
// mean, as score_sde's samplers do (their noise_removal); `work` is the system's workspace.
// `rng.particle()` is the index of the particle being stepped (the row of x in the particle view).
//
// Optionally, to step a block of particles at one time (every integrator of integrate/ but Dormand-Prince):
//   template <class System, class Real, class RngOf>
//   KOKKOS_INLINE_FUNCTION void step_block(const System& system, int nb, Real* x, int x_stride, Real t,
//                                          Real t_next, bool noise, Real* vectors, Real* work,
//                                          int work_stride, RngOf&& rng_of) const;
// where `vectors` is the block's n_vectors nb d values (one span) and rng_of(b) particle b's generator.
// When the system has drift_block (sde/reverse.hpp) and block_size() > 1, integrate() runs such an
// integrator in blocks of block_size() consecutive particles a work item (integrate_blocks below); step()
// should then be step_block() of one particle, so that both are one definition: deriving from
// BlockStepper<Integrator> gives that step() (or call detail::step_as_block from it, as the aggregate Heun
// does).
#pragma once

#include <scorekit/core/batch_model.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/integrate/batch_replay.hpp>
#include <scorekit/sample/sampler_common.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

namespace scorekit {

namespace detail {

/// step() of an integrator whose one definition is its step_block(): that block of one particle, with
/// the particle's generator.
template <class Integrator, class System, class Real>
KOKKOS_INLINE_FUNCTION void step_as_block(const Integrator& integrator, const System& system, Real* x, Real t,
                                          Real t_next, bool noise, Real* vectors, Real* work,
                                          CounterRng<Real>& rng) {
  integrator.step_block(system, 1, x, system.dim(), t, t_next, noise, vectors, work, 0,
                        [&rng](int) -> CounterRng<Real>& { return rng; });
}

}  // namespace detail

/// The base of an integrator whose step() is its step_block() of one particle (Euler-Maruyama, reverse
/// diffusion, ancestral sampling, DDIM), so that the two are one definition.
template <class Integrator>
struct BlockStepper {
  template <class System, class Real>
  KOKKOS_INLINE_FUNCTION void step(const System& system, Real* x, Real t, Real t_next, bool noise,
                                   Real* vectors, Real* work, CounterRng<Real>& rng) const {
    detail::step_as_block(static_cast<const Integrator&>(*this), system, x, t, t_next, noise, vectors, work,
                          rng);
  }
};

/// A fixed-grid run: the times (t_0 first, monotone), the seed, and trajectory recording.
struct IntegrateSettings {
  std::vector<double> times;
  std::uint64_t seed = 0;
  int record_every = 0;  ///< record the state every k steps (0: none)
  /// The last step adds no noise (score_sde's noise_removal, on by default there). Off here, so that a
  /// run is the integrator's own discretisation unless asked.
  bool remove_last_noise = false;
  /// The global index of row 0 of the particles: particle i draws its noise as particle first_particle + i
  /// would, so a shard of a larger run (distributed/) samples bitwise as that run does.
  std::uint64_t first_particle = 0;
};

/// n_steps + 1 equally spaced times from t_start to t_end (either direction); score_sde's grid is
/// uniform_times(1, 1e-3 or 1e-5, N).
inline std::vector<double> uniform_times(double t_start, double t_end, int n_steps) {
  const char* where = "uniform_times";
  if (n_steps < 1) throw invalid_argument(detail::concat(where, ": n_steps must be >= 1, got ", n_steps));
  if (!std::isfinite(t_start) || !std::isfinite(t_end) || t_start == t_end)
    throw invalid_argument(
        detail::concat(where, ": the ends must be finite and different, got ", t_start, " and ", t_end));
  std::vector<double> t(std::size_t(n_steps) + 1);
  for (int n = 0; n <= n_steps; ++n) t[std::size_t(n)] = t_start + (t_end - t_start) * n / n_steps;
  t.back() = t_end;
  return t;
}

namespace detail {

/// Checks a time grid: at least two times, finite, strictly monotone, and inside [t_lo, t_hi].
inline void check_time_grid(const std::vector<double>& t, double t_lo, double t_hi, const char* where) {
  if (t.size() < 2)
    throw invalid_argument(detail::concat(where, ": the time grid needs at least 2 times, got ", t.size()));
  const bool down = t[1] < t[0];
  for (std::size_t n = 0; n < t.size(); ++n) {
    if (!std::isfinite(t[n]) || t[n] < t_lo || t[n] > t_hi)
      throw invalid_argument(
          detail::concat(where, ": time ", n, " (", t[n], ") lies outside [", t_lo, ", ", t_hi, "]"));
    if (n > 0 && (down ? !(t[n] < t[n - 1]) : !(t[n] > t[n - 1])))
      throw invalid_argument(detail::concat(where, ": the time grid must be strictly monotone, but times ",
                                            n - 1, " and ", n, " are ", t[n - 1], " and ", t[n]));
  }
}

template <class T, class = void>
struct has_sde_member : std::false_type {};
template <class T>
struct has_sde_member<T, std::void_t<decltype(std::declval<const T&>().sde().t_max())>> : std::true_type {};

/// The time range a system lives on: [0, T] for a system built from a noising SDE, else [0, inf).
template <class System>
double system_t_max(const System& system) {
  if constexpr (has_sde_member<System>::value)
    return double(system.sde().t_max());
  else
    return ((void)system, std::numeric_limits<double>::max());
}

/// Systems that step a block of particles at one time (sde/reverse.hpp: drift_block, block_size and
/// max_block).
template <class System, class = void>
struct has_drift_block : std::false_type {};
template <class System>
struct has_drift_block<
    System,
    std::void_t<decltype(std::declval<const System&>().drift_block(
                    int(), std::declval<const typename System::value_type*>(), int(),
                    std::declval<typename System::value_type>(), std::declval<typename System::value_type*>(),
                    int(), std::declval<typename System::value_type*>(), int())),
                decltype(int(System::max_block)), decltype(int(std::declval<const System&>().block_size()))>>
    : std::true_type {};

/// The drifts of nb particles at time t (particle b at x + b x_stride, to out + b out_stride, its
/// workspace at work + b work_stride): the system's drift_block() where it has one, else drift() per
/// particle.
template <class System, class Real>
KOKKOS_INLINE_FUNCTION void drift_block(const System& system, int nb, const Real* x, int x_stride, Real t,
                                        Real* out, int out_stride, Real* work, int work_stride) {
  if constexpr (has_drift_block<System>::value)
    system.drift_block(nb, x, x_stride, t, out, out_stride, work, work_stride);
  else
    for (int b = 0; b < nb; ++b)
      system.drift(x + b * x_stride, t, out + b * out_stride, work + b * work_stride);
}

/// Integrators (and predictors) that step a block of particles at once with generators from RngOf
/// (step_block: Euler-Maruyama, ReverseDiffusion, AncestralSampling, Ddim, Heun, PredictorCorrector).
template <class Integrator, class System, class RngOf = BlockRngs<typename System::value_type, 1>&,
          class = void>
struct has_step_block : std::false_type {};
template <class Integrator, class System, class RngOf>
struct has_step_block<
    Integrator, System, RngOf,
    std::void_t<decltype(std::declval<const Integrator&>().step_block(
        std::declval<const System&>(), int(), std::declval<typename System::value_type*>(), int(),
        std::declval<typename System::value_type>(), std::declval<typename System::value_type>(), bool(),
        std::declval<typename System::value_type*>(), std::declval<typename System::value_type*>(), int(),
        std::declval<RngOf>()))>> : std::true_type {};

/// The block integrate() steps: the system's block_size() (at most its max_block) when both the
/// integrator and the system step blocks, else 1.
template <class Integrator, class System>
int integrate_block_size(const System& system) {
  if constexpr (has_step_block<Integrator, System>::value && has_drift_block<System>::value) {
    const int b = system.block_size();
    return b < System::max_block ? b : int(System::max_block);
  } else {
    return ((void)system, 1);
  }
}

/// The fused kernel in blocks of `block` consecutive particles a work item, for an integrator and a
/// system that step blocks (step_block, drift_block): per step one step_block() call, so a block shares
/// the step's time-dependent work and one score_block() call a drift. Each particle keeps its own
/// generator; a particle that goes non-finite is reported as in the one-particle kernel (its lane keeps
/// being stepped, unread, until the block ends).
template <class ExecSpace, class System, class Integrator, class View, class Run, class Times>
void integrate_blocks(const ExecSpace& exec, const System& system, const Integrator& integrator,
                      const View& x, const Run& run, const Times& times, const IntegrateSettings& settings,
                      int block) {
  using Real = typename System::value_type;
  constexpr int max_block = System::max_block;
  const int n_steps = int(times.extent(0)) - 1;
  const int x_stride = int(x.stride(0)), w_stride = int(run.work.stride(0));
  const std::uint64_t seed = settings.seed, first = settings.first_particle;
  const bool remove_last_noise = settings.remove_last_noise;
  // The vectors of consecutive particles are one span (LayoutRight rows of Integrator::n_vectors d): a
  // block's n_vectors nb d values of scratch start at its first particle's.
  Kokkos::parallel_for(
      "scorekit::integrate_blocks", Kokkos::RangePolicy<ExecSpace>(exec, 0, block_count(run.n, block)),
      KOKKOS_LAMBDA(const std::int64_t index) {
        ParticleBlock<max_block> blk(index, block, run, x);
        const std::int64_t i0 = blk.first;
        bool any = blk.any_alive();
        for (int n = 1; n <= n_steps && any; ++n) {
          BlockRngs<Real, max_block> rngs(seed, first + std::uint64_t(i0), std::uint64_t(n));
          integrator.step_block(system, blk.size, &x(i0, 0), x_stride, times(n - 1), times(n),
                                !(remove_last_noise && n == n_steps), run.vector(i0, 0), run.workspace(i0),
                                w_stride, rngs);
          any = blk.after_step(run, n, x);
        }
      });
}

/// True when T is a system around a batch model (and not a per-particle one: a model that is both kinds
/// keeps the fused path unless wrapped by batched(), score/batched.hpp).
template <class T, class = void>
struct has_batch_model : std::false_type {};
template <class T>
struct has_batch_model<T, std::void_t<decltype(std::declval<const T&>().model())>>
    : std::bool_constant<is_batch_only_v<std::decay_t<decltype(std::declval<const T&>().model())>>> {};

/// integrate() for a system around a batch model: batch-synchronous, each step's evaluations replayed
/// through ReplayModel (integrate/batch_replay.hpp), one batched score call each.
template <class ExecSpace, class System, class Integrator, class View>
SamplerResult<typename System::value_type, typename View::memory_space> integrate_batched(
    const ExecSpace& exec, const System& system, const Integrator& integrator, const View& x,
    const IntegrateSettings& settings) {
  using Real = typename System::value_type;
  using Mem = typename View::memory_space;
  using Replay = ReplayModel<Real, Mem>;
  const char* where = "scorekit::integrate";
  const auto& model = system.model();
  const int d = model.dim();
  // The system each particle is stepped as: the same SDE around its view of the batch. Kernels capture
  // this, not `system`, so the batch model itself (host-side state, large buffers) never enters one.
  const auto prototype = system.with_model(Replay(nullptr, 0, 0, d));
  using Stepped = std::decay_t<decltype(prototype)>;
  integrator.check(prototype);
  detail::check_time_grid(settings.times, 0.0, detail::system_t_max(system), where);
  const int n_steps = int(settings.times.size()) - 1;
  const auto run =
      detail::start_run(prototype, x, n_steps, settings.record_every, Integrator::n_vectors, where);
  const std::int64_t n = run.n;

  Kokkos::View<Real*, Mem> times("scorekit::integrate::times", settings.times.size());
  auto h_times = Kokkos::create_mirror_view(times);
  std::vector<int> calls(settings.times.size(), 0);
  std::int64_t evaluations = 0;
  int max_calls = 0;
  for (std::size_t k = 0; k < settings.times.size(); ++k) {
    h_times(k) = Real(settings.times[k]);
    if (k == 0) continue;
    calls[k] = integrator.evaluations(settings.times[k - 1], settings.times[k]);
    evaluations += calls[k];
    max_calls = calls[k] > max_calls ? calls[k] : max_calls;
  }
  Kokkos::deep_copy(times, h_times);
  const ReplayBuffers<Real, Mem> buffers(max_calls, n, d, where);
  // Each evaluation's answers, as the N x D batches the model writes (views of the buffers' slabs).
  std::vector<BatchView<Real, Mem>> answers;
  for (int k = 0; k < max_calls; ++k)
    answers.emplace_back(buffers.answers.data() + std::size_t(k) * std::size_t(n) * std::size_t(d), n, d);
  const BatchView<Real, Mem> copy(
      Kokkos::view_alloc(std::string(where) + "::copy", Kokkos::WithoutInitializing), n, d);
  Kokkos::View<std::uint8_t*, Mem> stopped("scorekit::integrate::stopped", std::size_t(n));

  ScopedRegion region(where);
  Kokkos::Timer timer;
  const std::uint64_t seed = settings.seed, first = settings.first_particle;
  using Policy = Kokkos::RangePolicy<ExecSpace>;
  Kokkos::parallel_for(
      "scorekit::integrate::start", Policy(exec, 0, n),
      KOKKOS_LAMBDA(const std::int64_t i) { stopped(i) = !run.after_step(i, 0, &x(i, 0)); });
  // A non-finite initial state ends the run here (the fused kernel reports it at the end, naming the same
  // particle and step 0): its row would otherwise reach the batch model as a query.
  exec.fence();
  run.bad.throw_if_set(where);
  for (int step = 1; step <= n_steps; ++step) {
    const bool noise = !(settings.remove_last_noise && step == n_steps);
    const int n_calls = calls[std::size_t(step)];
    // One pass per evaluation of the step, then the real step (pass == n_calls).
    for (int pass = 0; pass <= n_calls; ++pass) {
      const bool last = pass == n_calls;
      Kokkos::parallel_for(
          "scorekit::integrate::pass", Policy(exec, 0, n), KOKKOS_LAMBDA(const std::int64_t i) {
            if (stopped(i)) return;
            Real* xi = last ? &x(i, 0) : &copy(i, 0);
            if (!last)
              for (int j = 0; j < d; ++j) xi[j] = x(i, j);
            const Stepped stepped = prototype.with_model(Replay(&buffers, i, pass, d));
            CounterRng<Real> rng(seed, first + std::uint64_t(i), std::uint64_t(step));
            integrator.step(stepped, xi, times(step - 1), times(step), noise, run.vector(i, 0),
                            run.workspace(i), rng);
            if (!last) return;
            if (stepped.model().calls() != n_calls) buffers.miscounted() = 1;
            buffers.clear_poisoned(i);
            if (!run.after_step(i, step, xi)) stopped(i) = 1;
          });
      if (!last)
        model.score(exec, ConstBatchView<Real, Mem>(buffers.query),
                    NoiseLevels<Real, Mem>(buffers.query_sigma), answers[std::size_t(pass)]);
    }
  }
  int miscounted = 0;
  exec.fence();
  Kokkos::deep_copy(miscounted, buffers.miscounted);
  if (miscounted)
    throw std::logic_error(detail::concat(where,
                                          ": the integrator's evaluations() does not match the model "
                                          "calls its step makes; the batched path needs them equal"));
  return detail::finish_run(exec, run, x, timer, where, n_steps, evaluations);
}

}  // namespace detail

/// Integrates `system` with `integrator` over settings.times for every particle of x (overwritten). A
/// system around a batch model (core/batch_model.hpp) runs batch-synchronously: per model evaluation one
/// batched score call, with the same steps and the same noise as the fused kernel.
template <class ExecSpace, class System, class Integrator, class View>
SamplerResult<typename System::value_type, typename View::memory_space> integrate(
    const ExecSpace& exec, const System& system, const Integrator& integrator, const View& x,
    const IntegrateSettings& settings) {
  if constexpr (detail::has_batch_model<System>::value) {
    return detail::integrate_batched(exec, system, integrator, x, settings);
  } else {
    using Real = typename System::value_type;
    using Mem = typename View::memory_space;
    const char* where = "scorekit::integrate";
    integrator.check(system);
    detail::check_time_grid(settings.times, 0.0, detail::system_t_max(system), where);
    const int n_steps = int(settings.times.size()) - 1;
    const auto run =
        detail::start_run(system, x, n_steps, settings.record_every, Integrator::n_vectors, where);

    Kokkos::View<Real*, Mem> times("scorekit::integrate::times", settings.times.size());
    auto h_times = Kokkos::create_mirror_view(times);
    std::int64_t evaluations = 0;
    for (std::size_t n = 0; n < settings.times.size(); ++n) {
      h_times(n) = Real(settings.times[n]);
      if (n > 0) evaluations += integrator.evaluations(settings.times[n - 1], settings.times[n]);
    }
    Kokkos::deep_copy(times, h_times);

    ScopedRegion region(where);
    Kokkos::Timer timer;
    const int block = detail::integrate_block_size<Integrator>(system);
    if (block > 1) {
      if constexpr (detail::has_step_block<Integrator, System>::value &&
                    detail::has_drift_block<System>::value)
        detail::integrate_blocks(exec, system, integrator, x, run, times, settings, block);
      return detail::finish_run(exec, run, x, timer, where, n_steps, evaluations);
    }
    const std::uint64_t seed = settings.seed, first = settings.first_particle;
    const bool remove_last_noise = settings.remove_last_noise;
    Kokkos::parallel_for(
        "scorekit::integrate", Kokkos::RangePolicy<ExecSpace>(exec, 0, run.n),
        KOKKOS_LAMBDA(const std::int64_t i) {
          Real* xi = &x(i, 0);
          Real* v = run.vector(i, 0);
          Real* w = run.workspace(i);
          if (!run.after_step(i, 0, xi)) return;
          for (int n = 1; n <= n_steps; ++n) {
            CounterRng<Real> rng(seed, first + std::uint64_t(i), std::uint64_t(n));
            integrator.step(system, xi, times(n - 1), times(n), !(remove_last_noise && n == n_steps), v, w,
                            rng);
            if (!run.after_step(i, n, xi)) return;
          }
        });
    return detail::finish_run(exec, run, x, timer, where, n_steps, evaluations);
  }
}

}  // namespace scorekit
