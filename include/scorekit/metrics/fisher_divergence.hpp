// The Fisher divergence between two score fields over a set of points,
//   F = mean_i || s_model(x_i) - s_reference(x_i) ||^2,
// with its standard error, and the relative form F / mean_i ||s_reference(x_i)||^2 (0: perfect, 1: as
// far as the zero field). Evaluated at points drawn from the data law it is the score-matching loss up
// to its constant; at points on a grid it shows where a learned score is wrong (low-density regions).
// Works on Densities (score(x, out)) and on noise-conditional models at a given sigma. The per-point
// values are computed in a kernel and summed on the host in point order, so the result is bitwise the
// same on every backend and thread count.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/particle_checks.hpp>
#include <scorekit/core/traits.hpp>

#include <cmath>
#include <cstdint>

namespace scorekit {

struct FisherDivergence {
  double value = 0;           ///< mean squared difference of the scores
  double standard_error = 0;  ///< of the mean, from the per-point spread
  double reference_norm = 0;  ///< mean ||s_reference||^2
  double relative() const { return reference_norm > 0 ? value / reference_norm : 0; }
};

namespace detail {

template <class Real, class Mem>
FisherDivergence summarise_fisher(const Kokkos::View<Real**, Kokkos::LayoutRight, Mem>& per_point) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), per_point);
  const std::size_t n = h.extent(0);
  double sum = 0, sum2 = 0, ref = 0;
  for (std::size_t i = 0; i < n; ++i) {
    sum += double(h(i, 0));
    sum2 += double(h(i, 0)) * double(h(i, 0));
    ref += double(h(i, 1));
  }
  FisherDivergence f;
  f.value = sum / double(n);
  f.standard_error =
      n > 1 ? std::sqrt(std::max(0.0, sum2 / double(n) - f.value * f.value) / double(n - 1)) : 0;
  f.reference_norm = ref / double(n);
  return f;
}

// sigma < 0: plain score fields; else noise-conditional at sigma.
template <class ExecSpace, class Model, class Reference, class View>
FisherDivergence fisher_divergence_impl(const ExecSpace& exec, const Model& model, const Reference& reference,
                                        const View& x, typename Model::value_type sigma, const char* where) {
  using Real = typename Model::value_type;
  using Mem = typename View::memory_space;
  static_assert(std::is_same<Real, typename Reference::value_type>::value,
                "fisher_divergence: the model and the reference must have the same value_type");
  // Each point is handed to the models as a pointer to its row: the rows must be contiguous.
  check_particle_view<ExecSpace, View, ParticleLayout::contiguous_rows>();
  const std::int64_t n = std::int64_t(x.extent(0));
  require_dimension(std::int64_t(x.extent(1)), model.dim(), "the points' columns", where);
  require_dimension(reference.dim(), model.dim(), "the reference's dimension", where);
  if (n == 0) throw invalid_argument(detail::concat(where, ": no points"));
  const int d = model.dim(), wm = workspace_size(model), wr = workspace_size(reference);
  Kokkos::View<Real**, Kokkos::LayoutRight, Mem> scratch(
      Kokkos::view_alloc(std::string(where) + "::scratch", Kokkos::WithoutInitializing), n, 2 * d + wm + wr);
  Kokkos::View<Real**, Kokkos::LayoutRight, Mem> per_point(std::string(where) + "::per_point", n, 2);
  Kokkos::parallel_for(
      where, Kokkos::RangePolicy<ExecSpace>(exec, 0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        Real* a = &scratch(i, 0);
        Real* b = a + d;
        if (sigma < Real(0)) {
          scorekit::score(model, &x(i, 0), a, b + d);
          scorekit::score(reference, &x(i, 0), b, b + d + wm);
        } else {
          noise_conditional_score(model, &x(i, 0), sigma, a, b + d);
          noise_conditional_score(reference, &x(i, 0), sigma, b, b + d + wm);
        }
        Real diff = Real(0), norm = Real(0);
        for (int j = 0; j < d; ++j) {
          diff += (a[j] - b[j]) * (a[j] - b[j]);
          norm += b[j] * b[j];
        }
        per_point(i, 0) = diff;
        per_point(i, 1) = norm;
      });
  return summarise_fisher(per_point);
}

}  // namespace detail

/// Fisher divergence between two Densities' scores over the points x (n x d).
template <class ExecSpace, class Model, class Reference, class View>
FisherDivergence fisher_divergence(const ExecSpace& exec, const Model& model, const Reference& reference,
                                   const View& x) {
  assert_score_density<Model>();
  assert_score_density<Reference>();
  return detail::fisher_divergence_impl(exec, model, reference, x, typename Model::value_type(-1),
                                        "scorekit::fisher_divergence");
}

/// Fisher divergence between two noise-conditional score models at one sigma over the points x.
template <class ExecSpace, class Model, class Reference, class View>
FisherDivergence fisher_divergence(const ExecSpace& exec, const Model& model, const Reference& reference,
                                   const View& x, typename Model::value_type sigma) {
  assert_noise_conditional_score<Model>();
  assert_noise_conditional_score<Reference>();
  require_positive(sigma, "sigma", "scorekit::fisher_divergence");
  return detail::fisher_divergence_impl(exec, model, reference, x, sigma, "scorekit::fisher_divergence");
}

}  // namespace scorekit
