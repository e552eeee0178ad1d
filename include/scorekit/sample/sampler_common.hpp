// What every sampler shares: its result type, argument checks, per-particle workspace and trajectory
// recording. Samplers run one kernel for a whole run, each particle doing all of its steps: particles are
// independent and every random draw is keyed by (seed, particle, step, stream), so the result does not
// depend on how particles are spread over threads.
#pragma once

#include <scorekit/core/elementary.hpp>
#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/non_finite.hpp>
#include <scorekit/core/particle_checks.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/core/traits.hpp>
#include <scorekit/core/views.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

namespace scorekit {

/// What a run returns besides the samples (which overwrite the particle view it was given).
template <class Real, class MemorySpace>
struct SamplerResult {
  /// The particles after the run (the same view that was passed in).
  ParticleView<Real, MemorySpace> samples;
  /// (record, particle, coordinate): the initial state and every record_every-th step; empty when
  /// record_every == 0.
  TrajectoryView<Real, MemorySpace> trajectory;
  /// Accepted proposals / all proposals, over all particles and steps (1 for unadjusted samplers).
  double acceptance_rate = 1.0;
  /// Score (gradient) evaluations over all particles.
  std::int64_t n_score_evaluations = 0;
  /// Steps each particle took.
  std::int64_t n_steps = 0;
  /// Wall time of the run, fenced.
  double seconds = 0;
};

namespace detail {

/// Checks the particle view against the model, and that every initial particle is finite (an
/// invalid_argument naming the first that is not), and returns N. Samplers step a particle through a pointer
/// to its row, so the rows must be contiguous (LayoutRight).
template <class Model, class View>
std::int64_t check_particles(const Model& model, const View& x, const char* where) {
  check_particle_view_type<View, ParticleLayout::contiguous_rows>();
  static_assert(std::is_same<typename View::non_const_value_type, typename Model::value_type>::value,
                "scorekit: the particles' scalar type must be the model's value_type");
  if (x.extent(0) == 0) throw invalid_argument(detail::concat(where, ": no particles"));
  if (x.extent(0) >= (std::uint64_t(1) << 32))
    throw invalid_argument(detail::concat(where, ": at most 2^32 - 1 particles, got ", x.extent(0)));
  require_dimension(std::int64_t(x.extent(1)), model.dim(), "the particles", where);
  // A NaN in the input is named as such here, not as a particle that "became" NaN at step 0.
  require_finite_particles(typename View::execution_space(), x, where, "initial");
  return std::int64_t(x.extent(0));
}

inline void check_steps(std::int64_t n_steps, int record_every, const char* where) {
  if (n_steps < 0) throw invalid_argument(detail::concat(where, ": n_steps must be >= 0, got ", n_steps));
  if (n_steps >= (std::int64_t(1) << 32))
    throw invalid_argument(detail::concat(where, ": at most 2^32 - 1 steps, got ", n_steps));
  if (record_every < 0)
    throw invalid_argument(detail::concat(where, ": record_every must be >= 0, got ", record_every));
}

/// Records the state of each particle at the steps that are multiples of record_every.
template <class Real, class MemorySpace>
class Recorder {
 public:
  Recorder(std::int64_t n_steps, int record_every, std::int64_t n, int d, const char* where)
      : m_every(record_every) {
    if (record_every > 0) {
      const std::int64_t n_records = n_steps / record_every + 1;
      m_traj = TrajectoryView<Real, MemorySpace>(std::string(where) + "::trajectory", n_records, n, d);
    }
  }
  KOKKOS_INLINE_FUNCTION void operator()(std::int64_t step, std::int64_t i, const Real* x) const {
    if (m_every > 0 && step % m_every == 0) {
      const std::int64_t r = step / m_every;
      for (int j = 0; j < int(m_traj.extent(2)); ++j) m_traj(r, i, j) = x[j];
    }
  }
  TrajectoryView<Real, MemorySpace> trajectory() const { return m_traj; }

 private:
  int m_every;
  TrajectoryView<Real, MemorySpace> m_traj;
};

/// An n x width scratch view (width at least 1, so that every particle has a valid row address).
template <class Real, class MemorySpace>
Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> make_scratch(std::int64_t n, int width,
                                                                    const char* where, const char* what) {
  return Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace>(
      Kokkos::view_alloc(std::string(where) + what, Kokkos::WithoutInitializing), n, width > 0 ? width : 1);
}

/// What a run holds on the device besides the particles: per-particle scratch (the model's workspace,
/// and apart from it `extra_vectors` vectors of length d), the trajectory recorder and the non-finite
/// flag. The model workspaces of consecutive particles are contiguous, so a block of particles hands
/// the model one region (see score_block in core/traits.hpp). Copied by value into the run's kernel.
template <class Real, class MemorySpace>
struct RunState {
  std::int64_t n = 0;
  int d = 0;
  int model_ws = 0;
  Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> work;
  Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> vectors;
  Recorder<Real, MemorySpace> record;
  NonFiniteFlag<MemorySpace> bad;

  /// Particle i's model workspace, and its sampler vector k.
  KOKKOS_INLINE_FUNCTION Real* workspace(std::int64_t i) const { return &work(i, 0); }
  KOKKOS_INLINE_FUNCTION Real* vector(std::int64_t i, int k) const { return &vectors(i, 0) + k * d; }

  /// Records particle i after step t and checks it: false (and the flag set) when x is not finite.
  KOKKOS_INLINE_FUNCTION bool after_step(std::int64_t i, std::int64_t t, const Real* x) const {
    record(t, i, x);
    if (NonFiniteFlag<MemorySpace>::all_finite(x, d)) return true;
    bad.record(i, t);
    return false;
  }
};

/// The particles one work item of a blocked kernel steps (integrate_blocks, annealed_langevin_blocks):
/// rows first .. first + size - 1 of the run, block `index` of blocks of `block`, and which of them are
/// still finite. Made inside the kernel; the constructor records and checks the starting points (step 0).
template <int MaxBlock>
struct ParticleBlock {
  std::int64_t first;
  int size;
  bool alive[MaxBlock];

  template <class Run, class View>
  KOKKOS_INLINE_FUNCTION ParticleBlock(std::int64_t index, int block, const Run& run, const View& x)
      : first(index * block), size(int(run.n - index * block < block ? run.n - index * block : block)) {
    for (int b = 0; b < size; ++b) alive[b] = run.after_step(first + b, 0, &x(first + b, 0));
  }

  /// Records and checks step t of the particles still finite (one that went non-finite keeps being
  /// stepped, unread, until the block ends); true while any of them is finite.
  template <class Run, class View>
  KOKKOS_INLINE_FUNCTION bool after_step(const Run& run, std::int64_t t, const View& x) {
    bool any = false;
    for (int b = 0; b < size; ++b)
      if (alive[b]) {
        alive[b] = run.after_step(first + b, t, &x(first + b, 0));
        any = any || alive[b];
      }
    return any;
  }

  KOKKOS_INLINE_FUNCTION bool any_alive() const {
    bool any = false;
    for (int b = 0; b < size; ++b) any = any || alive[b];
    return any;
  }
};

/// How many blocks of `block` particles cover n.
inline std::int64_t block_count(std::int64_t n, int block) { return (n + block - 1) / block; }

/// Checks the particles and the step count and allocates what a run needs.
template <class Model, class View>
RunState<typename Model::value_type, typename View::memory_space> start_run(const Model& model, const View& x,
                                                                            std::int64_t n_steps,
                                                                            int record_every,
                                                                            int extra_vectors,
                                                                            const char* where) {
  using Real = typename Model::value_type;
  using Mem = typename View::memory_space;
  const std::int64_t n = check_particles(model, x, where);
  check_steps(n_steps, record_every, where);
  const int d = model.dim();
  const int model_ws = workspace_size(model);
  return RunState<Real, Mem>{n,
                             d,
                             model_ws,
                             make_scratch<Real, Mem>(n, model_ws, where, "::workspace"),
                             make_scratch<Real, Mem>(n, extra_vectors * d, where, "::vectors"),
                             Recorder<Real, Mem>(n_steps, record_every, n, d, where),
                             NonFiniteFlag<Mem>(n)};
}

/// Fences, throws if any particle went non-finite, and fills the result.
template <class ExecSpace, class Real, class Mem, class View>
SamplerResult<Real, Mem> finish_run(const ExecSpace& exec, const RunState<Real, Mem>& run, const View& x,
                                    const Kokkos::Timer& timer, const char* where, std::int64_t n_steps,
                                    std::int64_t evaluations_per_particle, std::int64_t accepted = -1) {
  exec.fence();
  SamplerResult<Real, Mem> result;
  result.seconds = timer.seconds();
  run.bad.throw_if_set(where);
  result.samples = x;
  result.trajectory = run.record.trajectory();
  if (accepted >= 0)
    result.acceptance_rate = n_steps > 0 ? double(accepted) / (double(run.n) * double(n_steps)) : 1.0;
  result.n_score_evaluations = run.n * evaluations_per_particle;
  result.n_steps = n_steps;
  return result;
}

/// The Metropolis-Hastings test for particle i at step t: accept with probability min(1, exp(log_alpha)).
/// False for a NaN log_alpha, so a proposal that diverged is rejected.
template <class Real>
KOKKOS_INLINE_FUNCTION bool metropolis_accept(std::uint64_t seed, std::int64_t i, std::int64_t t,
                                              Real log_alpha) {
  CounterRng<Real> coin(seed, std::uint64_t(i), std::uint64_t(t), RngStream::accept);
  // The library's own log, not libm's or CUDA's: the same operations on every backend, so host and device
  // take the same decision (to within the contraction bound of core/random.hpp, only at a tie).
  return elementary::log(coin.uniform()) < log_alpha;
}

/// log p(x), returned, and s(x) into grad: the state MALA and HMC keep between steps.
template <class Density, class Real>
KOKKOS_INLINE_FUNCTION Real log_prob_and_score(const Density& density, const Real* x, Real* grad,
                                               Real* work) {
  const Real lp = log_prob(density, x, work);
  score(density, x, grad, work);
  return lp;
}

/// The kernel MALA and HMC share: each particle sets its state (log p(x) in a register, s(x) in sampler
/// vector 0) once, then takes n_steps Metropolis steps (a MalaStep or HmcStep, whose own vectors follow),
/// recording and checking after each. Returns the accepted proposals over all particles and steps.
template <class ExecSpace, class Step, class Density, class View, class Real, class Mem>
std::int64_t run_metropolis(const ExecSpace& exec, const char* label, const Step& step,
                            const Density& density, const View& x, const RunState<Real, Mem>& run,
                            std::int64_t n_steps, std::uint64_t seed, std::int64_t first = 0) {
  std::int64_t accepted = 0;
  Kokkos::parallel_reduce(
      label, Kokkos::RangePolicy<ExecSpace>(exec, 0, run.n),
      KOKKOS_LAMBDA(const std::int64_t i, std::int64_t& acc) {
        Real* xi = &x(i, 0);
        Real* w = run.workspace(i);
        Real* gx = run.vector(i, 0);
        if (!run.after_step(i, 0, xi)) return;
        Real lpx = step.init(density, xi, gx, w);
        for (std::int64_t t = 1; t <= n_steps; ++t) {
          if (step.step(density, xi, lpx, gx, seed, first + i, t, run.vector(i, 1), w)) ++acc;
          if (!run.after_step(i, t, xi)) return;
        }
      },
      accepted);
  return accepted;
}

}  // namespace detail
}  // namespace scorekit
