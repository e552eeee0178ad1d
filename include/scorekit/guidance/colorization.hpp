// Colorization (Song et al. 2021, appendix I.3; score_sde's get_pc_colorizer): inpainting in a colour space
// where the grey-scale image is one channel. An orthonormal 3 x 3 matrix M maps each pixel's (r, g, b) to
// (c_0, c_1, c_2) = M (r, g, b); its first row is (1, 1, 1)/sqrt(3), so c_0 = sqrt(3) * mean(r, g, b) is the
// grey level (scaled), and the other two rows complete it to an orthonormal basis. The decoupling matrix
// below is score_sde's (its M is stored by columns, ours by rows: ours is its transpose):
//   row 0 = ( 1,  1,  1) / sqrt(3)      grey
//   row 1 = (-2,  1,  1) / sqrt(6)      orthogonal to row 0: -2 + 1 + 1 = 0
//   row 2 = ( 0,  1, -1) / sqrt(2)      orthogonal to both: 0 + 1 - 1 = 0 and 0 + 1 - 1 = 0
// each of unit length (3/3, 6/6, 2/2). Because M is orthonormal, the inverse is M^T, the transformed
// image of a noised image is the noised transformed image (isotropic noise stays isotropic), and a prior's
// score in the transformed space is M s(M^T c): replacing c_0 after each step is exactly inpainting
// (guidance/inpainting.hpp) of the transformed prior with the grey channel known, and inherits its
// approximation (exact when the grey channel is independent of the two colour channels under the data law).
// The replacement of c_0 by a target value, mapped back, is x_p += m_0 (target - m_0 . x_p) with m_0 the
// first row, one pass per pixel.
//
// Images are flattened rows of d = 3 P values, P pixels, in one of two layouts (ChannelLayout):
//   interleaved  (H, W, 3): pixel p's channel c at 3 p + c (what io/png.hpp reads and writes);
//   planar       (3, H, W): channel c of pixel p at c P + p (PyTorch's layout).
// The observation is an RGB image (score_sde passes the grey image replicated in three channels); only its
// grey channel c_0 = m_0 . (r, g, b) is used, so a colour image may be passed to colorize its grey version.
//
// Exact colorization of a Gaussian-mixture prior: transform the prior with color_transform_matrix() and
// linear_transform() (guidance/mixture_algebra.hpp), then condition_on() the grey-channel indices
// (grey_channel_indices()).
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/particle_checks.hpp>
#include <scorekit/guidance/inpainting.hpp>
#include <scorekit/guidance/replacement.hpp>

#include <Eigen/Dense>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace scorekit {

/// Where channel c of pixel p sits in a flattened image of P pixels.
enum class ChannelLayout {
  interleaved,  ///< (H, W, 3): 3 p + c
  planar,       ///< (3, H, W): c P + p
};

/// An orthonormal colour transform c = M (r, g, b) per pixel; channel 0 is the one guidance keeps known.
template <class Real = double>
class ColorTransform {
 public:
  using value_type = Real;

  /// score_sde's decoupling matrix (see the file comment).
  static ColorTransform decoupling() {
    const double a = 1 / std::sqrt(3.0), b = 1 / std::sqrt(6.0), c = 1 / std::sqrt(2.0);
    Eigen::Matrix3d m;
    m << a, a, a, -2 * b, b, b, 0, c, -c;
    return ColorTransform(m);
  }

  /// Any orthonormal M (rows: output channels): |M M^T - I| <= tolerance entrywise, else refused.
  explicit ColorTransform(const Eigen::Matrix3d& m, double tolerance = 1e-12) {
    const char* where = "scorekit::ColorTransform";
    if (!m.allFinite()) throw invalid_argument(detail::concat(where, ": the matrix has NaN or inf"));
    if (!(tolerance >= 0)) throw invalid_argument(detail::concat(where, ": the tolerance must be >= 0"));
    const double err = (m * m.transpose() - Eigen::Matrix3d::Identity()).cwiseAbs().maxCoeff();
    if (!(err <= tolerance))
      throw invalid_argument(detail::concat(where, ": the matrix is not orthonormal: max |M M^T - I| = ", err,
                                            " > tolerance ", tolerance));
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) {
        m_m[i][j] = Real(m(i, j));
        m_double[i][j] = m(i, j);
      }
  }

  /// The matrix, in double as given.
  Eigen::Matrix3d matrix() const {
    Eigen::Matrix3d m;
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) m(i, j) = m_double[i][j];
    return m;
  }
  KOKKOS_INLINE_FUNCTION Real operator()(int i, int j) const { return m_m[i][j]; }

  /// c = M rgb for one pixel (in and out may alias).
  KOKKOS_INLINE_FUNCTION void forward(const Real* rgb, Real* c) const {
    const Real r = rgb[0], g = rgb[1], b = rgb[2];
    for (int i = 0; i < 3; ++i) c[i] = m_m[i][0] * r + m_m[i][1] * g + m_m[i][2] * b;
  }
  /// rgb = M^T c for one pixel (in and out may alias).
  KOKKOS_INLINE_FUNCTION void inverse(const Real* c, Real* rgb) const {
    const Real c0 = c[0], c1 = c[1], c2 = c[2];
    for (int j = 0; j < 3; ++j) rgb[j] = m_m[0][j] * c0 + m_m[1][j] * c1 + m_m[2][j] * c2;
  }

  /// Index of channel c of pixel p in an image of n_pixels pixels.
  KOKKOS_INLINE_FUNCTION static int index(int p, int c, int n_pixels, ChannelLayout layout) {
    return layout == ChannelLayout::interleaved ? 3 * p + c : c * n_pixels + p;
  }

  /// The whole image x (3 n_pixels values) mapped in place: forward (M) or inverse (M^T).
  KOKKOS_INLINE_FUNCTION void apply(Real* x, int n_pixels, ChannelLayout layout, bool inverse_map) const {
    for (int p = 0; p < n_pixels; ++p) {
      Real v[3];
      for (int c = 0; c < 3; ++c) v[c] = x[index(p, c, n_pixels, layout)];
      if (inverse_map)
        inverse(v, v);
      else
        forward(v, v);
      for (int c = 0; c < 3; ++c) x[index(p, c, n_pixels, layout)] = v[c];
    }
  }

 private:
  Real m_m[3][3] = {};
  double m_double[3][3] = {};  // as given (plain arrays: the type is copied into kernels)
};

namespace detail {
inline int color_pixels(std::int64_t d, const char* where) {
  if (d < 3 || d % 3 != 0)
    throw dimension_mismatch(
        detail::concat(where, ": an RGB image has 3 values per pixel, but the dimension is ", d));
  return int(d / 3);
}
}  // namespace detail

/// Maps every image (row) of x, N x 3P, in place: c = M rgb per pixel (inverse: rgb = M^T c).
template <class ExecSpace, class Real, class View>
void apply_color_transform(const ExecSpace& exec, const ColorTransform<Real>& transform, ChannelLayout layout,
                           const View& x, bool inverse = false) {
  // Each image is transformed through a pointer to its row: the rows must be contiguous.
  detail::check_particle_view<ExecSpace, View, detail::ParticleLayout::contiguous_rows>();
  static_assert(std::is_same<typename View::non_const_value_type, Real>::value,
                "scorekit::apply_color_transform: the view's scalar type must be the transform's");
  const int n_pixels = detail::color_pixels(std::int64_t(x.extent(1)), "scorekit::apply_color_transform");
  const ColorTransform<Real> t = transform;
  const View xs = x;
  Kokkos::parallel_for(
      "scorekit::apply_color_transform", Kokkos::RangePolicy<ExecSpace>(exec, 0, std::int64_t(x.extent(0))),
      KOKKOS_LAMBDA(const std::int64_t i) { t.apply(&xs(i, 0), n_pixels, layout, inverse); });
}

/// The d x d matrix (d = 3 n_pixels) that applies M to every pixel of a flattened image: for
/// linear_transform() of a prior into the transformed space.
template <class Real>
Eigen::MatrixXd color_transform_matrix(const ColorTransform<Real>& transform, int n_pixels,
                                       ChannelLayout layout) {
  if (n_pixels < 1)
    throw invalid_argument(
        detail::concat("scorekit::color_transform_matrix: n_pixels must be >= 1, got ", n_pixels));
  const int d = 3 * n_pixels;
  Eigen::MatrixXd t = Eigen::MatrixXd::Zero(d, d);
  for (int p = 0; p < n_pixels; ++p)
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j)
        t(ColorTransform<Real>::index(p, i, n_pixels, layout),
          ColorTransform<Real>::index(p, j, n_pixels, layout)) = transform.matrix()(i, j);
  return t;
}

/// The indices of channel 0 (the grey channel) of every pixel: the known coordinates of colorization.
inline std::vector<int> grey_channel_indices(int n_pixels, ChannelLayout layout) {
  if (n_pixels < 1)
    throw invalid_argument(
        detail::concat("scorekit::grey_channel_indices: n_pixels must be >= 1, got ", n_pixels));
  std::vector<int> k;
  for (int p = 0; p < n_pixels; ++p) k.push_back(ColorTransform<double>::index(p, 0, n_pixels, layout));
  return k;
}

/// The replacement of the grey channel (see the file comment and guidance/replacement.hpp).
template <class Real = double, class MemorySpace = Kokkos::DefaultExecutionSpace::memory_space>
class GreyChannelReplacement {
 public:
  using value_type = Real;
  using memory_space = MemorySpace;

  /// observations: rows x 3P RGB images (1 row shared, or N: row i for particle i); their grey channel
  /// is what is kept.
  template <class ObservationView>
  GreyChannelReplacement(const ColorTransform<Real>& transform, ChannelLayout layout,
                         const ObservationView& observations)
      : m_t(transform), m_layout(layout) {
    const char* where = "scorekit::GreyChannelReplacement";
    const Eigen::MatrixXd y = detail::host_matrix(observations);
    detail::check_rows(y.rows(), "the observations", where);
    m_pixels = detail::color_pixels(y.cols(), where);
    m_grey = Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace>("scorekit::GreyChannelReplacement::grey",
                                                                    y.rows(), m_pixels);
    auto h = Kokkos::create_mirror_view(m_grey);
    const Eigen::Matrix3d m = transform.matrix();
    for (Eigen::Index i = 0; i < y.rows(); ++i)
      for (int p = 0; p < m_pixels; ++p) {
        double g = 0;
        for (int c = 0; c < 3; ++c) {
          const double v = y(i, ColorTransform<Real>::index(p, c, m_pixels, layout));
          if (!std::isfinite(v))
            throw invalid_argument(detail::concat(where, ": observation ", i, " has a non-finite value (", v,
                                                  ") at pixel ", p, ", channel ", c));
          g += m(0, c) * v;
        }
        h(i, p) = Real(g);
      }
    Kokkos::deep_copy(m_grey, h);
    m_rows = std::int64_t(y.rows());
  }

  KOKKOS_INLINE_FUNCTION int dim() const { return 3 * m_pixels; }
  std::int64_t rows() const { return m_rows; }
  /// The grey channel c_0 of every observation: rows x P.
  Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> grey() const { return m_grey; }

  /// Sets c_0 of every pixel to a(t) c_0(y) + s(t) z (a(t) c_0(y) when !noise), keeping c_1 and c_2.
  template <class SDE>
  KOKKOS_INLINE_FUNCTION void replace(const SDE& sde, Real* x, Real t, bool noise,
                                      CounterRng<Real>& rng) const {
    const std::int64_t row = detail::observation_row(m_rows, rng);
    if (row < 0) {
      detail::set_nan(x, 3 * m_pixels, m_nan);
      return;
    }
    const MarginalKernel<Real> k = sde.marginal(t);
    for (int p = 0; p < m_pixels; ++p) {
      int idx[3];
      Real g = 0;
      for (int c = 0; c < 3; ++c) {
        idx[c] = ColorTransform<Real>::index(p, c, m_pixels, m_layout);
        g += m_t(0, c) * x[idx[c]];
      }
      const Real delta = detail::noised_observation(k, m_grey(row, p), noise, rng) - g;
      for (int c = 0; c < 3; ++c) x[idx[c]] += m_t(0, c) * delta;
    }
  }

 private:
  ColorTransform<Real> m_t;
  ChannelLayout m_layout;
  int m_pixels = 0;
  Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> m_grey;
  std::int64_t m_rows = 1;
  Real m_nan = std::numeric_limits<Real>::quiet_NaN();
};

/// Colorization by replacement: `inner` is any Integrator; see GreyChannelReplacement.
template <class Inner, class Real, class ObservationView>
ReplacementIntegrator<Inner, GreyChannelReplacement<Real, typename ObservationView::memory_space>>
colorization(const Inner& inner, const ColorTransform<Real>& transform, ChannelLayout layout,
             const ObservationView& observations) {
  using R = GreyChannelReplacement<Real, typename ObservationView::memory_space>;
  return ReplacementIntegrator<Inner, R>(inner, R(transform, layout, observations));
}

}  // namespace scorekit
