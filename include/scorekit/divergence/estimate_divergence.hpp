// The divergence of a model at every particle of a batch, with any estimator (ExactTrace, Hutchinson,
// FiniteDifferenceDivergence, or a user type with the same members). Particle i draws its probes from
// CounterRng<Real>(seed, i, 0, RngStream::divergence_probe), so the result depends only on the inputs:
// bitwise the same for every thread count, and the probes of different particles are independent.
//
// Scratch: one row per concurrently running thread (a Kokkos UniqueToken), not per particle, so a large
// batch of high-dimensional points needs no more memory than the execution space has threads.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/particle_checks.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/core/traits.hpp>
#include <scorekit/divergence/model_traits.hpp>

#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

namespace scorekit {
namespace detail {
template <class E, class = void>
struct is_divergence_estimator : std::false_type {};
template <class E>
struct is_divergence_estimator<E, std::void_t<decltype(int(std::declval<const E&>().n_probes(int()))),
                                              decltype(int(std::declval<const E&>().workspace_size(int()))),
                                              decltype(bool(E::uses_jvp))>> : std::true_type {};

/// What estimate_divergence needs of its views, each test valid whatever the types are.
template <class ExecSpace, class XView, class OutView, class Real, bool = Kokkos::is_view<XView>::value,
          bool = Kokkos::is_view<OutView>::value>
struct divergence_batch_views {
  // x is not a view (check_particle_view has said so): nothing else to complain about
  static constexpr bool x_is_view = false;
  static constexpr bool x_real = true, out_rank1 = true, out_real = true, out_accessible = true;
  static constexpr bool value = false;
};
template <class ExecSpace, class XView, class OutView, class Real>
struct divergence_batch_views<ExecSpace, XView, OutView, Real, true, true> {
  static constexpr bool x_is_view = true;
  static constexpr bool x_real = std::is_same<typename XView::non_const_value_type, Real>::value;
  static constexpr bool out_rank1 = int(OutView::rank) == 1;
  static constexpr bool out_real = std::is_same<typename OutView::value_type, Real>::value;
  static constexpr bool out_accessible =
      Kokkos::SpaceAccessibility<ExecSpace, typename OutView::memory_space>::accessible;
  static constexpr bool value = x_real && out_rank1 && out_real && out_accessible;
};
template <class ExecSpace, class XView, class OutView, class Real>
struct divergence_batch_views<ExecSpace, XView, OutView, Real, true, false> {
  static constexpr bool x_is_view = true;
  static constexpr bool x_real = std::is_same<typename XView::non_const_value_type, Real>::value;
  static constexpr bool out_rank1 = false, out_real = true, out_accessible = true;
  static constexpr bool value = false;
};

}  // namespace detail

/// True when E has the members a divergence estimator shares (see divergence/exact_trace.hpp).
template <class E>
constexpr bool is_divergence_estimator_v = detail::is_divergence_estimator<E>::value;

/// Values of scratch one estimate() call needs: the estimator's workspace_size(dim) followed by the
/// model's own workspace_size() (0 when it declares none).
template <class Estimator, class Model>
int divergence_workspace_size(const Estimator& estimator, const Model& model) {
  return estimator.workspace_size(model.dim()) + workspace_size(model);
}

/// out(i) = the estimator's divergence of the model at particle x(i, :), for each of the n rows of x
/// (n x d, any layout, d = model.dim()); out has n entries. The model and estimator are copied into the
/// kernel. Throws dimension_mismatch when x has d != model.dim() columns or out does not have n entries,
/// and invalid_argument naming the lowest particle whose coordinates are NaN or infinite, or whose
/// estimate is (an overflow in the model).
template <class ExecSpace, class Estimator, class Model, class XView, class OutView>
void estimate_divergence(const ExecSpace& exec, const Estimator& estimator, const Model& model,
                         const XView& x, std::uint64_t seed, const OutView& out) {
  static_assert(is_divergence_estimator_v<Estimator>,
                "scorekit::estimate_divergence: the estimator needs members `int n_probes(int dim) const`, "
                "`int workspace_size(int dim) const` and `static constexpr bool uses_jvp` (see "
                "divergence/exact_trace.hpp)");
  detail::check_particle_view<ExecSpace, XView>();
  using Real = typename divergence_model_traits<Model>::value_type;
  using views = detail::divergence_batch_views<ExecSpace, XView, OutView, Real>;
  constexpr bool model_ok = detail::model_requirements<Model, Real>::value;
  static_assert(!(model_ok && views::x_is_view) || views::x_real,
                "scorekit::estimate_divergence: the particles' scalar type must be the model's value_type");
  static_assert(!model_ok || views::out_rank1,
                "scorekit::estimate_divergence: out must be a rank-1 Kokkos::View (one value a particle)");
  static_assert(!(model_ok && views::out_rank1) || views::out_real,
                "scorekit::estimate_divergence: out must hold non-const values of the model's value_type");
  static_assert(
      !(model_ok && views::out_rank1) || views::out_accessible,
      "scorekit::estimate_divergence: out's memory space is not accessible from the execution space");
  if constexpr (is_divergence_estimator_v<Estimator> && model_ok && views::value) {
    const char* where = "scorekit::estimate_divergence";
    const std::int64_t n = std::int64_t(x.extent(0));
    const int d = model.dim();
    require_dimension(std::int64_t(x.extent(1)), d, "each particle", where);
    if (std::int64_t(out.extent(0)) != n)
      throw dimension_mismatch(detail::concat(where, ": out has ", out.extent(0), " entries, expected ", n,
                                              " (one per particle)"));
    if (n == 0) return;

    ScopedRegion region(where);
    using memory_space = typename ExecSpace::memory_space;
    // A row of scratch: a contiguous copy of x_i, the estimator's workspace, the model's workspace.
    const int width = d + divergence_workspace_size(estimator, model);
    Kokkos::Experimental::UniqueToken<ExecSpace> token(exec);
    const bool per_particle = n <= std::int64_t(token.size());
    const std::int64_t rows = per_particle ? n : std::int64_t(token.size());
    Kokkos::View<Real**, Kokkos::LayoutRight, memory_space> scratch(
        Kokkos::view_alloc(Kokkos::WithoutInitializing, "scorekit::divergence_scratch"), rows, width);
    const Real nan = std::numeric_limits<Real>::quiet_NaN();

    // The lowest problem as 2 i + kind (kind 0: a non-finite coordinate, 1: a non-finite estimate).
    std::int64_t first_bad = 2 * n;
    Kokkos::parallel_reduce(
        "scorekit::estimate_divergence", Kokkos::RangePolicy<ExecSpace>(exec, 0, n),
        KOKKOS_LAMBDA(const std::int64_t i, std::int64_t& lowest) {
          const std::int64_t row = per_particle ? i : std::int64_t(token.acquire());
          Real* xi = &scratch(row, 0);
          bool finite = true;
          for (int j = 0; j < d; ++j) {
            xi[j] = x(i, j);
            finite = finite && math::isfinite(xi[j]);
          }
          if (finite) {
            CounterRng<Real> rng(seed, std::uint64_t(i), 0, RngStream::divergence_probe);
            const Real value = estimator.estimate(model, d, static_cast<const Real*>(xi), rng, xi + d);
            out(i) = value;
            if (!math::isfinite(value) && 2 * i + 1 < lowest) lowest = 2 * i + 1;
          } else {
            out(i) = nan;
            if (2 * i < lowest) lowest = 2 * i;
          }
          if (!per_particle) token.release(typename ExecSpace::size_type(row));
        },
        Kokkos::Min<std::int64_t>(first_bad));
    if (first_bad < 2 * n) {
      const std::int64_t i = first_bad / 2;
      if (first_bad % 2 == 0)
        throw invalid_argument(detail::concat(where, ": particle ", i, " has a NaN or infinite coordinate"));
      throw invalid_argument(detail::concat(where, ": the divergence estimate at particle ", i,
                                            " is NaN or infinite (check the model's score and jvp for "
                                            "overflow)"));
    }
  }
}

/// The same on a default-constructed instance of ExecSpace: estimate_divergence<ExecSpace>(estimator,
/// model, x, seed, out).
template <class ExecSpace, class Estimator, class Model, class XView, class OutView>
void estimate_divergence(const Estimator& estimator, const Model& model, const XView& x, std::uint64_t seed,
                         const OutView& out) {
  estimate_divergence(ExecSpace(), estimator, model, x, seed, out);
}

}  // namespace scorekit
