// Checks shared by every routine that takes a batch of particles: at compile time, that the argument is
// a rank-2 view (one particle per row) that the execution space can read, with contiguous rows where the
// routine needs them; at run time, that no particle has a NaN or infinite coordinate.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>

#include <cstdint>
#include <type_traits>

namespace scorekit {
namespace detail {

/// What a routine needs of the layout of a particle view.
enum class ParticleLayout {
  any,             ///< element access x(i, j) only (metrics): any Kokkos layout
  contiguous_rows  ///< a particle is used through a pointer to its row (samplers, draws): LayoutRight
};

/// The compile-time checks that need no execution space: a Kokkos::View of rank 2, LayoutRight when
/// `layout` asks for contiguous rows. Each failure is one static_assert naming the problem (the later
/// checks are skipped when the type is not a view, so no cascade of unrelated errors follows).
template <class View, ParticleLayout layout = ParticleLayout::any>
constexpr void check_particle_view_type() {
  static_assert(Kokkos::is_view<View>::value,
                "scorekit: the particles must be a Kokkos::View of rank 2 (N x d, one row a particle)");
  if constexpr (Kokkos::is_view<View>::value) {
    static_assert(int(View::rank) == 2,
                  "scorekit: the particles must be a rank-2 view (N x d, one row a particle)");
    static_assert(layout == ParticleLayout::any ||
                      std::is_same<typename View::array_layout, Kokkos::LayoutRight>::value,
                  "scorekit: the particles must be LayoutRight (use scorekit::ParticleView), so that a "
                  "particle is a contiguous row");
  }
}

/// check_particle_view_type, and that ExecSpace can access the view's memory space.
template <class ExecSpace, class View, ParticleLayout layout = ParticleLayout::any>
constexpr void check_particle_view() {
  check_particle_view_type<View, layout>();
  if constexpr (Kokkos::is_view<View>::value)
    static_assert(Kokkos::SpaceAccessibility<ExecSpace, typename View::memory_space>::accessible,
                  "scorekit: the particles' memory space is not accessible from the execution space");
}

/// The lowest row of the rank-2 view x holding a NaN or infinite value, or x.extent(0) when every value
/// is finite. One kernel (a min-reduction), so the answer does not depend on the backend.
template <class ExecSpace, class View>
std::int64_t first_non_finite_row(const ExecSpace& exec, const View& x,
                                  const char* label = "scorekit::check_finite") {
  const std::int64_t n = std::int64_t(x.extent(0));
  const int d = int(x.extent(1));
  std::int64_t first = n;
  Kokkos::parallel_reduce(
      label, Kokkos::RangePolicy<ExecSpace>(exec, 0, n),
      KOKKOS_LAMBDA(const std::int64_t i, std::int64_t& lowest) {
        bool ok = true;
        for (int j = 0; j < d; ++j) ok = ok && math::isfinite(x(i, j));
        if (!ok && i < lowest) lowest = i;
      },
      Kokkos::Min<std::int64_t>(first));
  return first;
}

/// Throws invalid_argument "<where>: [<sample> ]particle i has a NaN or infinite coordinate" naming the
/// first such particle of x; `sample` names which input it is when a routine takes several (or null).
template <class ExecSpace, class View>
void require_finite_particles(const ExecSpace& exec, const View& x, const char* where,
                              const char* sample = nullptr) {
  const std::int64_t first = first_non_finite_row(exec, x);
  if (first < std::int64_t(x.extent(0))) {
    if (sample)
      throw invalid_argument(
          concat(where, ": ", sample, " particle ", first, " has a NaN or infinite coordinate"));
    throw invalid_argument(concat(where, ": particle ", first, " has a NaN or infinite coordinate"));
  }
}

}  // namespace detail
}  // namespace scorekit
