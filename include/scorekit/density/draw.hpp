// Batch initialisation of particles: exact draws from any density that has a `draw(rng, out)` member,
// and uniform or Gaussian fills (the usual starting points of Langevin samplers). Particle i uses the
// generator CounterRng<Real>(seed, i, 0, RngStream::init), so the result depends only on the seed and
// never on the backend or the thread count.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/particle_checks.hpp>
#include <scorekit/core/random.hpp>

#include <cstdint>
#include <type_traits>
#include <utility>

namespace scorekit {
namespace draw_detail {

template <class D, class = void>
struct has_exact_draw : std::false_type {};
template <class D>
struct has_exact_draw<
    D, std::void_t<decltype(std::declval<const D&>().draw(std::declval<CounterRng<typename D::value_type>&>(),
                                                          std::declval<typename D::value_type*>()))>>
    : std::true_type {};

template <class T, class = void>
struct has_memory_space : std::false_type {};
template <class T>
struct has_memory_space<T, std::void_t<typename T::memory_space>> : std::true_type {};

// True when the views inside T (if any) can be read by ExecSpace.
template <class ExecSpace, class T>
constexpr bool accessible_from() {
  if constexpr (has_memory_space<T>::value)
    return Kokkos::SpaceAccessibility<ExecSpace, typename T::memory_space>::accessible;
  else
    return true;
}

// The shared particle-view checks (rows are written through a pointer, so contiguous rows), plus what
// writing random draws needs of the scalar type.
template <class ExecSpace, class View>
constexpr void assert_particle_view() {
  detail::check_particle_view<ExecSpace, View, detail::ParticleLayout::contiguous_rows>();
  if constexpr (Kokkos::is_view<View>::value) {
    static_assert(!std::is_const<typename View::value_type>::value,
                  "scorekit: the particles are written, so the view must not be const");
    static_assert(std::is_floating_point<typename View::value_type>::value,
                  "scorekit: the particles must hold float or double");
  }
}

}  // namespace draw_detail

/// Fills each row of x (N x density.dim()) with an independent exact draw from `density`.
template <class ExecSpace, class Density, class View>
void draw_exact(const ExecSpace& exec, const Density& density, const View& x, std::uint64_t seed) {
  draw_detail::assert_particle_view<ExecSpace, View>();
  using Real = typename View::value_type;
  static_assert(std::is_same<typename Density::value_type, Real>::value,
                "scorekit::draw_exact: the density's value_type differs from the particles' scalar type");
  static_assert(draw_detail::has_exact_draw<Density>::value,
                "scorekit::draw_exact: the density needs a member `template <class Rng> "
                "KOKKOS_INLINE_FUNCTION void draw(Rng& rng, value_type* out) const`");
  static_assert(draw_detail::accessible_from<ExecSpace, Density>(),
                "scorekit::draw_exact: the density's views live in a memory space the execution space "
                "cannot access (build the density in ExecSpace::memory_space)");
  require_dimension(std::int64_t(x.extent(1)), density.dim(), "the particle view (columns)", "draw_exact");
  const View xs = x;
  const Density d = density;
  Kokkos::parallel_for(
      "scorekit::draw_exact",
      Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::int64_t>>(exec, 0, std::int64_t(x.extent(0))),
      KOKKOS_LAMBDA(const std::int64_t i) {
        CounterRng<Real> rng(seed, std::uint64_t(i), 0, RngStream::init);
        d.draw(rng, &xs(i, 0));
      });
}

/// Fills every coordinate of x independently and uniformly in [lo, hi] (lo < hi, both finite).
template <class ExecSpace, class View>
void fill_uniform(const ExecSpace& exec, const View& x, typename View::value_type lo,
                  typename View::value_type hi, std::uint64_t seed) {
  draw_detail::assert_particle_view<ExecSpace, View>();
  using Real = typename View::value_type;
  if (!math::isfinite(lo) || !math::isfinite(hi) || !(lo < hi))
    throw invalid_argument(
        detail::concat("fill_uniform: needs finite lo < hi, got lo = ", lo, ", hi = ", hi));
  const View xs = x;
  const int dim = int(x.extent(1));
  Kokkos::parallel_for(
      "scorekit::fill_uniform",
      Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::int64_t>>(exec, 0, std::int64_t(x.extent(0))),
      KOKKOS_LAMBDA(const std::int64_t i) {
        CounterRng<Real> rng(seed, std::uint64_t(i), 0, RngStream::init);
        for (int j = 0; j < dim; ++j) xs(i, j) = lo + (hi - lo) * rng.uniform();
      });
}

/// Fills every coordinate of x independently from N(mean, stddev^2) (stddev > 0, mean finite).
template <class ExecSpace, class View>
void fill_normal(const ExecSpace& exec, const View& x, typename View::value_type mean,
                 typename View::value_type stddev, std::uint64_t seed) {
  draw_detail::assert_particle_view<ExecSpace, View>();
  using Real = typename View::value_type;
  if (!math::isfinite(mean))
    throw invalid_argument(detail::concat("fill_normal: the mean must be finite, got ", mean));
  require_positive(stddev, "the standard deviation", "fill_normal");
  const View xs = x;
  const int dim = int(x.extent(1));
  Kokkos::parallel_for(
      "scorekit::fill_normal",
      Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::int64_t>>(exec, 0, std::int64_t(x.extent(0))),
      KOKKOS_LAMBDA(const std::int64_t i) {
        CounterRng<Real> rng(seed, std::uint64_t(i), 0, RngStream::init);
        for (int j = 0; j < dim; ++j) xs(i, j) = mean + stddev * rng.normal();
      });
}

}  // namespace scorekit
