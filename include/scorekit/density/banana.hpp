// The banana, or twisted Gaussian, of Haario, Saksman and Tamminen ("Adaptive proposal distribution for
// random walk Metropolis", Computational Statistics 14, 1999, section 3): a Gaussian
// N(0, diag(sigma_1^2, 1, ..., 1)) in d >= 2 dimensions pushed forward through
//   phi(y) = (y_1, y_2 + b (y_1^2 - sigma_1^2), y_3, ..., y_d).
// phi is a bijection with unit Jacobian determinant (it only shears y_2 along a function of y_1), so
//   log p(x) = log N(phi^{-1}(x); 0, diag(sigma_1^2, 1, ..., 1)),
//   phi^{-1}(x) = (x_1, x_2 - b (x_1^2 - sigma_1^2), x_3, ..., x_d),
// normalised, and an exact draw is phi of a Gaussian draw. Its moments are closed form:
// E x = 0, Var x_1 = sigma_1^2, Var x_2 = 1 + 2 b^2 sigma_1^4, all covariances zero.
//
// Common choices: Haario et al. use sigma_1^2 = 100 with b = 0.03 (moderately twisted) or b = 0.1
// (strongly twisted) in d = 8; two-dimensional illustrations often take sigma_1 = 1 and b = 0.5. There is
// no default: the caller names both.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>

#include <cmath>

// Loops over coordinates 3..d: see SCOREKIT_ARRAY_BOUNDS_FALSE_POSITIVE_BEGIN.
SCOREKIT_ARRAY_BOUNDS_FALSE_POSITIVE_BEGIN

namespace scorekit {

/// The twisted Gaussian (banana) density in d >= 2 dimensions. Holds no views: a plain value type that
/// works in every memory space.
template <class Real = double>
class Banana {
 public:
  using value_type = Real;

  /// dim >= 2; curvature b finite (b = 0 is the untwisted Gaussian, b < 0 bends the other way);
  /// sigma_1 > 0 the standard deviation of the first coordinate.
  Banana(int dim, Real curvature, Real sigma_1) : m_dim(dim), m_b(curvature), m_s1(sigma_1) {
    const char* where = "Banana";
    if (dim < 2)
      throw invalid_argument(detail::concat(where, ": the dimension must be at least 2, got ", dim));
    if (!std::isfinite(double(curvature)))
      throw invalid_argument(detail::concat(where, ": the curvature b must be finite, got ", curvature));
    require_positive(sigma_1, "sigma_1 (the standard deviation of the first coordinate)", where);
    m_inv_s1_sq = Real(1) / (sigma_1 * sigma_1);
    m_log_norm = Real(-0.5 * dim * std::log(2 * 3.14159265358979323846) - std::log(double(sigma_1)));
  }

  KOKKOS_INLINE_FUNCTION int dim() const { return m_dim; }
  KOKKOS_INLINE_FUNCTION Real curvature() const { return m_b; }
  Real sigma_1() const { return m_s1; }

  /// Normalised log-density.
  KOKKOS_INLINE_FUNCTION Real log_prob(const Real* x) const {
    const Real u = untwisted_second(x);
    Real quad = x[0] * x[0] * m_inv_s1_sq + u * u;
    for (int j = 2; j < m_dim; ++j) quad += x[j] * x[j];
    return m_log_norm - Real(0.5) * quad;
  }

  /// grad log p: with u = x_2 - b (x_1^2 - sigma_1^2),
  /// d/dx_1 = -x_1 / sigma_1^2 + 2 b x_1 u, d/dx_2 = -u, d/dx_j = -x_j otherwise.
  KOKKOS_INLINE_FUNCTION void score(const Real* x, Real* out) const {
    const Real u = untwisted_second(x);
    out[0] = x[0] * (Real(2) * m_b * u - m_inv_s1_sq);
    out[1] = -u;
    for (int j = 2; j < m_dim; ++j) out[j] = -x[j];
  }

  /// Laplacian of log p: -1 / sigma_1^2 + 2 b u - 4 b^2 x_1^2 - (d - 1).
  KOKKOS_INLINE_FUNCTION Real laplacian(const Real* x) const {
    const Real u = untwisted_second(x);
    return Real(2) * m_b * u - m_inv_s1_sq - Real(4) * m_b * m_b * x[0] * x[0] - Real(m_dim - 1);
  }

  /// One exact draw: phi applied to a draw of the base Gaussian.
  template <class Rng>
  KOKKOS_INLINE_FUNCTION void draw(Rng& rng, Real* out) const {
    const Real y1 = m_s1 * rng.normal();
    out[0] = y1;
    out[1] = rng.normal() + m_b * (y1 * y1 - m_s1 * m_s1);
    for (int j = 2; j < m_dim; ++j) out[j] = rng.normal();
  }

 private:
  // The second coordinate of phi^{-1}(x).
  KOKKOS_INLINE_FUNCTION Real untwisted_second(const Real* x) const {
    return x[1] - m_b * (x[0] * x[0] - m_s1 * m_s1);
  }

  int m_dim;
  Real m_b;
  Real m_s1;
  Real m_inv_s1_sq;
  Real m_log_norm;
};

}  // namespace scorekit

SCOREKIT_ARRAY_BOUNDS_FALSE_POSITIVE_END
