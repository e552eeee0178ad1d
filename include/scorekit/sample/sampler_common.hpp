// What every sampler shares: its result type, argument checks, per-particle workspace and trajectory
// recording. Samplers run one kernel for a whole run, each particle doing all of its steps: particles are
// independent and every random draw is keyed by (seed, particle, step, stream), so the result does not
// depend on how particles are spread over threads.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/non_finite.hpp>
#include <scorekit/core/particle_checks.hpp>
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

/// Checks the particle view against the model and returns N. Samplers step a particle through a pointer
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

/// Per-particle scratch: the model's workspace followed by `extra` vectors of length d.
template <class Real, class MemorySpace>
Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> make_workspace(std::int64_t n, int model_ws,
                                                                      int extra_vectors, int d,
                                                                      const char* where) {
  return Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace>(
      Kokkos::view_alloc(std::string(where) + "::workspace", Kokkos::WithoutInitializing), n,
      model_ws + extra_vectors * d);
}

}  // namespace detail
}  // namespace scorekit
