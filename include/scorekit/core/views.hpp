// Batches of particles: one row a particle, contiguous (LayoutRight), in a memory space named in the type.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>

#include <cstdint>
#include <string>

namespace scorekit {

/// N particles of dimension d, particle i at row i.
template <class Real, class MemorySpace = Kokkos::DefaultExecutionSpace::memory_space>
using ParticleView = Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace>;

/// Recorded trajectories: (recorded step, particle, coordinate).
template <class Real, class MemorySpace = Kokkos::DefaultExecutionSpace::memory_space>
using TrajectoryView = Kokkos::View<Real***, Kokkos::LayoutRight, MemorySpace>;

/// Allocates N x d particles in the memory space of ExecSpace.
template <class Real, class ExecSpace>
ParticleView<Real, typename ExecSpace::memory_space> make_particles(
    const ExecSpace&, std::int64_t n, int dim, const std::string& label = "scorekit::particles") {
  if (n <= 0) throw invalid_argument(detail::concat("make_particles: n must be positive, got ", n));
  if (dim <= 0) throw invalid_argument(detail::concat("make_particles: dim must be positive, got ", dim));
  return ParticleView<Real, typename ExecSpace::memory_space>(label, n, dim);
}

/// A host copy of any view (a deep copy even when the view already lives on the host).
template <class View>
auto to_host(const View& v) {
  auto h = Kokkos::create_mirror(v);
  Kokkos::deep_copy(h, v);
  return h;
}

}  // namespace scorekit
