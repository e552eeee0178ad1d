// Bits per dimension of discrete data (8-bit images) under a continuous density model, with uniform
// dequantization (Theis, van den Oord and Bethge, "A note on the evaluation of generative models", ICLR
// 2016, section 3.1; Ho et al., "Flow++", ICML 2019, section 3.1).
//
// The derivation, every constant accounted for. Data x in {0, ..., K-1}^D (K = levels, 256 for 8 bits).
// Dequantize with u ~ U[0, 1)^D to y = (x + u) / K in [0, 1)^D, and map y affinely to the model's range,
//   z = lo + (hi - lo) y       ([0, 1]: lo = 0, hi = 1; [-1, 1]: lo = -1, hi = 1),
// where the model has a density p(z). The density of y is p_Y(y) = p(z) (hi - lo)^D, and the model's
// probability of the discrete x is the mass of its cell,
//   P(x) = int_{cell of x} p_Y(y) dy = K^-D int_{[0,1)^D} p_Y((x + u) / K) du.
// Jensen's inequality (log is concave) gives the variational bound
//   log P(x) >= E_u[log p_Y((x + u) / K)] - D log K = E_u[log p(z)] + D log(hi - lo) - D log K,
// with equality when p_Y is constant on each cell. In bits per dimension (-log2 P(x) / D), the bound is
//   bpd <= -E_u[log p(z)] / (D ln 2) + log2 K - log2(hi - lo),
// and bits_per_dimension returns the right-hand side for one log p(z) (a one-sample estimate of the
// expectation; average over data points and dequantization draws).
//
// score_sde (likelihood.py) computes bpd = -(prior_logp + delta_logp) / ln 2 / D + offset with
// offset = 7 - inverse_scaler(-1), on data dequantized exactly as here, y = (x + u) / 256
// (datasets.py, uniform_dequantization). For data in [0, 1] inverse_scaler is the identity and the offset
// is 8 = log2 256 - log2 1; for centred data z = 2 y - 1 in [-1, 1], inverse_scaler(-1) = 0 and the offset
// is 7 = log2 256 - log2 2: the same two terms, log2 K from the cell width and -log2(hi - lo) from the
// Jacobian of the map to the model's range.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/random.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace scorekit {

/// Uniform dequantization of integer data with `levels` values into the model's range [lo, hi]:
/// z = lo + (hi - lo) (x + u) / levels, u ~ U[0, 1).
struct UniformDequantization {
  int levels = 256;
  double lo = 0;
  double hi = 1;

  /// |dz/dy| per dimension: the Jacobian factor of the map from [0, 1) to the model's range.
  KOKKOS_INLINE_FUNCTION double data_scale() const { return hi - lo; }

  void check(const char* where) const {
    if (levels < 2) throw invalid_argument(detail::concat(where, ": levels must be >= 2, got ", levels));
    if (!std::isfinite(lo) || !std::isfinite(hi) || !(hi > lo))
      throw invalid_argument(
          detail::concat(where, ": the model range needs finite lo < hi, got [", lo, ", ", hi, "]"));
  }
};

/// The dequantization bound in bits per dimension from log p(z) (natural log) of one dequantized,
/// rescaled D-dimensional point:
///   bpd = -log_p / (D ln 2) + log2(levels) - log2(data_scale)
/// (derived in the file comment; data_scale = hi - lo of the map [0, 1) -> the model's range).
inline double bits_per_dimension(double log_p, std::int64_t dim, double levels = 256, double data_scale = 1) {
  const char* where = "scorekit::bits_per_dimension";
  if (dim < 1) throw invalid_argument(detail::concat(where, ": the dimension must be >= 1, got ", dim));
  if (!(levels >= 2) || !std::isfinite(levels))
    throw invalid_argument(detail::concat(where, ": levels must be finite and >= 2, got ", levels));
  require_positive(data_scale, "data_scale", where);
  if (std::isnan(log_p)) throw invalid_argument(detail::concat(where, ": log p is NaN"));
  const double ln2 = std::log(2.0);
  return -log_p / (double(dim) * ln2) + std::log2(levels) - std::log2(data_scale);
}

/// The same with the levels and the range of a UniformDequantization.
inline double bits_per_dimension(double log_p, std::int64_t dim, const UniformDequantization& q) {
  q.check("scorekit::bits_per_dimension");
  return bits_per_dimension(log_p, dim, double(q.levels), q.data_scale());
}

/// The mean of bits_per_dimension over N values (data points, each with its own dequantization draw)
/// and its standard error sd / sqrt(N) (0 when N = 1).
struct BitsPerDimension {
  double mean = 0;
  double standard_error = 0;
  std::int64_t n = 0;
};

/// Mean bits per dimension over a rank-1 view of log p values (any memory space).
template <class View>
BitsPerDimension mean_bits_per_dimension(const View& log_p, std::int64_t dim,
                                         const UniformDequantization& q = {}) {
  static_assert(Kokkos::is_view<View>::value && int(View::rank) == 1,
                "scorekit::mean_bits_per_dimension: log_p must be a rank-1 Kokkos::View");
  const char* where = "scorekit::mean_bits_per_dimension";
  q.check(where);
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), log_p);
  const std::int64_t n = std::int64_t(h.extent(0));
  if (n < 1) throw invalid_argument(detail::concat(where, ": no values"));
  BitsPerDimension out;
  out.n = n;
  for (std::int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(double(h(i))))
      throw invalid_argument(detail::concat(where, ": log p of point ", i, " is NaN or infinite"));
    out.mean += bits_per_dimension(double(h(i)), dim, q);
  }
  out.mean /= double(n);
  if (n > 1) {
    double ss = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      const double r = bits_per_dimension(double(h(i)), dim, q) - out.mean;
      ss += r * r;
    }
    out.standard_error = std::sqrt(ss / double(n - 1) / double(n));
  }
  return out;
}

/// out(i, j) = lo + (hi - lo) (x(i, j) + u_ij) / levels with u_ij ~ U(0, 1) from
/// CounterRng(seed, i, 0, RngStream::init), drawn in j order: one draw per data point and coordinate,
/// independent of the backend and thread count. x: N x D integer values in {0, ..., levels - 1} (any
/// arithmetic type: uint8 images, or integers stored as floating point); out: N x D floating point, any
/// layout. Use a seed different from the one the data were drawn with (draw_exact also uses the init
/// stream). Throws dimension_mismatch when the shapes differ and invalid_argument naming the first entry
/// that is not an integer in range.
template <class ExecSpace, class XView, class OutView>
void dequantize(const ExecSpace& exec, const XView& x, const OutView& out, std::uint64_t seed,
                const UniformDequantization& q = {}) {
  static_assert(Kokkos::is_view<XView>::value && int(XView::rank) == 2,
                "scorekit::dequantize: x must be a rank-2 Kokkos::View (N x D)");
  static_assert(Kokkos::is_view<OutView>::value && int(OutView::rank) == 2,
                "scorekit::dequantize: out must be a rank-2 Kokkos::View (N x D)");
  using Real = typename OutView::value_type;
  static_assert(std::is_floating_point<Real>::value && !std::is_const<Real>::value,
                "scorekit::dequantize: out must hold non-const float or double");
  static_assert(std::is_arithmetic<typename XView::non_const_value_type>::value,
                "scorekit::dequantize: x must hold integers (or integer values in a floating-point type)");
  static_assert(Kokkos::SpaceAccessibility<ExecSpace, typename XView::memory_space>::accessible &&
                    Kokkos::SpaceAccessibility<ExecSpace, typename OutView::memory_space>::accessible,
                "scorekit::dequantize: the views must be accessible from the execution space");
  const char* where = "scorekit::dequantize";
  q.check(where);
  require_dimension(std::int64_t(out.extent(0)), std::int64_t(x.extent(0)), "out (rows)", where);
  require_dimension(std::int64_t(out.extent(1)), std::int64_t(x.extent(1)), "out (columns)", where);
  const std::int64_t n = std::int64_t(x.extent(0));
  const int dim = int(x.extent(1));
  const double lo = q.lo, width = (q.hi - q.lo) / double(q.levels), top = double(q.levels - 1);
  const std::int64_t none = std::numeric_limits<std::int64_t>::max();
  std::int64_t first_bad = none;  // i * dim + j of the first entry not in {0, ..., levels - 1}
  Kokkos::parallel_reduce(
      "scorekit::dequantize", Kokkos::RangePolicy<ExecSpace>(exec, 0, n),
      KOKKOS_LAMBDA(const std::int64_t i, std::int64_t& lowest) {
        CounterRng<Real> rng(seed, std::uint64_t(i), 0, RngStream::init);
        for (int j = 0; j < dim; ++j) {
          const double v = double(x(i, j));
          const double u = double(rng.uniform());
          if (!(v >= 0 && v <= top && v == double(std::int64_t(v)))) {
            if (i * dim + j < lowest) lowest = i * dim + j;
            out(i, j) = Real(0);
          } else {
            out(i, j) = Real(lo + width * (v + u));
          }
        }
      },
      Kokkos::Min<std::int64_t>(first_bad));
  if (first_bad != none) {
    const std::int64_t i = first_bad / dim, j = first_bad % dim;
    auto entry = Kokkos::subview(x, i, j);
    typename XView::non_const_value_type value{};
    Kokkos::deep_copy(value, entry);
    throw invalid_argument(detail::concat(where, ": x(", i, ", ", j, ") = ", double(value),
                                          " is not an integer in {0, ..., ", q.levels - 1, "}"));
  }
}

}  // namespace scorekit
