// What the likelihood tests share: the ODE's error allowance, and a model that offers only its JVP.
#pragma once

#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/views.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

namespace scorekit_test {

/// A model that offers only the score and the JVP of an inner model (its analytic divergence hidden), so
/// that ExactTrace takes d forward-mode products.
template <class Model>
struct JvpOnly {
  using value_type = typename Model::value_type;
  using memory_space = typename Model::memory_space;
  Model inner;
  KOKKOS_INLINE_FUNCTION int dim() const { return inner.dim(); }
  KOKKOS_INLINE_FUNCTION int workspace_size() const { return inner.workspace_size(); }
  KOKKOS_INLINE_FUNCTION void score(const value_type* x, value_type sigma, value_type* out,
                                    value_type* work) const {
    inner.score(x, sigma, out, work);
  }
  KOKKOS_INLINE_FUNCTION void jvp(const value_type* x, value_type sigma, const value_type* v, value_type* s,
                                  value_type* jv, value_type* work) const {
    inner.jvp(x, sigma, v, s, jv, work);
  }
};

/// The ODE's error allowance for point i, as in test_dormand_prince.cpp: the local errors added up, each
/// at most sqrt(m) (atol + rtol max|y|) per component for m = d + 1 state values, over the accepted steps
/// (<= (NFE - 2) / 6 with an automatic first step). max|y| covers x, x(T) and delta.
template <class Result, class XHost>
std::vector<double> ode_allowance(const Result& r, const XHost& x, double tol) {
  const auto latent = scorekit::to_host(r.latent);
  const auto delta = scorekit::to_host(r.delta);
  const auto nfe = scorekit::to_host(r.evaluations);
  const int d = int(x.extent(1));
  std::vector<double> out(x.extent(0));
  for (std::size_t i = 0; i < out.size(); ++i) {
    double max_y = std::abs(double(delta(i)));
    for (int j = 0; j < d; ++j)
      max_y = std::max({max_y, std::abs(double(x(i, j))), std::abs(double(latent(i, j)))});
    out[i] = double(nfe(i) - 2) / 6 * std::sqrt(double(d + 1)) * (tol + tol * max_y);
  }
  return out;
}

}  // namespace scorekit_test
