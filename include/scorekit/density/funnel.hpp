// Neal's funnel (R. M. Neal, "Slice sampling", Annals of Statistics 31(3), 2003, section 8): the
// hierarchical prior
//   v ~ N(0, s^2),   x_i | v ~ N(0, e^v),  i = 1, ..., d - 1   (Neal: s = 3, d = 10),
// stored as the point (v, x_1, ..., x_{d-1}). Its neck (v << 0, scale e^{v/2}) and mouth (v >> 0) differ
// in scale by orders of magnitude, which defeats any sampler with one fixed step size. With
// n = d - 1 and S = sum_i x_i^2, the normalised log-density and its derivatives are
//   log p = -v^2 / (2 s^2) - log s - (d / 2) log(2 pi) - n v / 2 - e^{-v} S / 2,
//   d/dv  = -v / s^2 - n / 2 + e^{-v} S / 2,        d/dx_i = -x_i e^{-v},
//   Laplacian = -1 / s^2 - e^{-v} S / 2 - n e^{-v}.
// Exact draws follow the hierarchy. Moments: E = 0, Var v = s^2, Var x_i = E e^v = e^{s^2 / 2}, all
// covariances zero; the x_i are heavy tailed (E x_i^4 / (E x_i^2)^2 = 3 e^{s^2}).
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>

#include <cmath>

namespace scorekit {

/// Neal's funnel in d >= 2 dimensions; coordinate 0 is the log-variance v. Holds no views: a plain value
/// type that works in every memory space.
template <class Real = double>
class Funnel {
 public:
  using value_type = Real;

  /// dim >= 2 (one log-variance and dim - 1 conditionally Gaussian coordinates); v_scale > 0 is the
  /// standard deviation s of v (Neal: 3).
  explicit Funnel(int dim, Real v_scale = Real(3)) : m_dim(dim), m_s(v_scale) {
    const char* where = "Funnel";
    if (dim < 2)
      throw invalid_argument(detail::concat(where, ": the dimension must be at least 2, got ", dim));
    require_positive(v_scale, "the scale of v (the standard deviation of the log-variance)", where);
    m_inv_s_sq = Real(1) / (v_scale * v_scale);
    m_log_norm = Real(-0.5 * dim * std::log(2 * 3.14159265358979323846) - std::log(double(v_scale)));
  }

  KOKKOS_INLINE_FUNCTION int dim() const { return m_dim; }
  KOKKOS_INLINE_FUNCTION Real v_scale() const { return m_s; }

  /// Normalised log-density.
  KOKKOS_INLINE_FUNCTION Real log_prob(const Real* x) const {
    const Real v = x[0];
    return m_log_norm - Real(0.5) * v * v * m_inv_s_sq - Real(0.5) * Real(m_dim - 1) * v -
           Real(0.5) * math::exp(-v) * sum_sq(x);
  }

  /// grad log p (see the file comment).
  KOKKOS_INLINE_FUNCTION void score(const Real* x, Real* out) const {
    const Real v = x[0];
    const Real inv_var = math::exp(-v);
    out[0] = -v * m_inv_s_sq - Real(0.5) * Real(m_dim - 1) + Real(0.5) * inv_var * sum_sq(x);
    for (int j = 1; j < m_dim; ++j) out[j] = -x[j] * inv_var;
  }

  /// Laplacian of log p (see the file comment).
  KOKKOS_INLINE_FUNCTION Real laplacian(const Real* x) const {
    const Real inv_var = math::exp(-x[0]);
    return -m_inv_s_sq - inv_var * (Real(0.5) * sum_sq(x) + Real(m_dim - 1));
  }

  /// One exact draw: v first, then each x_i given v.
  template <class Rng>
  KOKKOS_INLINE_FUNCTION void draw(Rng& rng, Real* out) const {
    const Real v = m_s * rng.normal();
    const Real sd = math::exp(Real(0.5) * v);
    out[0] = v;
    for (int j = 1; j < m_dim; ++j) out[j] = sd * rng.normal();
  }

 private:
  KOKKOS_INLINE_FUNCTION Real sum_sq(const Real* x) const {
    Real s = 0;
    for (int j = 1; j < m_dim; ++j) s += x[j] * x[j];
    return s;
  }

  int m_dim;
  Real m_s;
  Real m_inv_s_sq;
  Real m_log_norm;
};

}  // namespace scorekit
