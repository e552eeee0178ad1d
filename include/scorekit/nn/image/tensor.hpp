// Runtime-shaped image tensors: a batch of n images of h x w pixels with c channels, stored NHWC as one
// LayoutRight matrix of n h w rows and c columns (row (i h + y) w + x holds the c channels of pixel (y, x)
// of image i). One layout for every layer: a 1 x 1 convolution or a dense layer is then one matrix
// product with no copy, a k x k convolution one product after gathering patches (im2col), and the
// channels of a pixel are contiguous, so per-pixel epilogues (bias, normalisation, activation) stream.
// Kernels address a tensor through its data pointer (row r, channel j at r c + j): rows must be contiguous,
// which the shape checks require.
//
// The runtime layer concept (every member host-called; the layers launch their own kernels on `exec`):
//   std::string name() const;
//   ImageShape output_shape(const ImageShape& in) const;   // throws dimension_mismatch naming the layer
//   int n_params() const;                                   // scalars of its segment of the flat view
//   std::vector<Segment> segments(int offset) const;        // for initialize() and checkpoints
//   std::size_t workspace_size(const ImageShape& in) const; // scalars of scratch, forward and backward
//   forward(exec, params, x, in, y, work) const;            // y = f(params, x)
//   backward(exec, params, x, in, dy, grad, dx, work) const;// grad += (df/dparams)^T dy; dx = (df/dx)^T dy
// params and grad are rank-1 views of exactly n_params() scalars (a layer's part of the network's flat
// view), x, y, dy and dx Tensors of the input and output shapes, work a rank-1 view of at least
// workspace_size(in) scalars. backward() accumulates into grad (so gradients of several calls sum) and
// overwrites dx; an empty dx (extent 0) skips the input adjoint. A layer with parameters that declares
//   static constexpr bool optional_gradient = true;
// also takes an empty grad and then skips the parameter gradient (a vector-Jacobian product, or a
// classifier's input gradient, needs only dx); Network gives any other layer a scratch gradient instead.
// Shapes and sizes are checked on the
// host before anything runs; a mismatch throws dimension_mismatch naming the layer, the argument and
// both shapes. testing/image_layer_checks.hpp checks a layer against finite differences.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

namespace scorekit {
namespace nn {
namespace image {

/// The shape of a batch of images: n images, h x w pixels, c channels.
struct ImageShape {
  int n = 0, h = 0, w = 0, c = 0;
  /// Rows of the NHWC matrix: n h w.
  std::int64_t rows() const { return std::int64_t(n) * h * w; }
  /// Scalars in the batch: n h w c.
  std::int64_t size() const { return rows() * c; }
  /// Scalars in one image: h w c.
  std::int64_t per_sample() const { return std::int64_t(h) * w * c; }
  friend bool operator==(const ImageShape& a, const ImageShape& b) {
    return a.n == b.n && a.h == b.h && a.w == b.w && a.c == b.c;
  }
  friend bool operator!=(const ImageShape& a, const ImageShape& b) { return !(a == b); }
};

/// "n x h x w x c", for messages.
inline std::string to_string(const ImageShape& s) {
  return scorekit::detail::concat(s.n, " x ", s.h, " x ", s.w, " x ", s.c);
}

/// A batch of images in memory space Mem (NHWC, see the top of this file).
template <class Real, class Mem>
using Tensor = Kokkos::View<Real**, Kokkos::LayoutRight, Mem>;

template <class Real, class Mem>
using ConstTensor = Kokkos::View<const Real**, Kokkos::LayoutRight, Mem>;

namespace detail {

/// Throws dimension_mismatch unless every extent is positive (an empty batch is an error, not a no-op)
/// and the batch fits the int indexing of the kernels and the BLAS.
inline void require_valid_shape(const ImageShape& s, const std::string& where, const char* what) {
  if (s.n <= 0 || s.h <= 0 || s.w <= 0 || s.c <= 0)
    throw dimension_mismatch(scorekit::detail::concat(where, ": the ", what, " shape is ", to_string(s),
                                                      "; every extent (batch, height, width, channels) must "
                                                      "be positive"));
  if (s.size() > std::int64_t(2147483647))
    throw dimension_mismatch(scorekit::detail::concat(where, ": the ", what, " shape ", to_string(s), " has ",
                                                      s.size(), " scalars, more than an int indexes"));
}

/// Throws dimension_mismatch unless the tensor t is the NHWC matrix of shape s.
template <class View>
void require_tensor(const View& t, const ImageShape& s, const std::string& where, const char* what) {
  if (std::int64_t(t.extent(0)) != s.rows() || std::int64_t(t.extent(1)) != s.c)
    throw dimension_mismatch(scorekit::detail::concat(where, ": ", what, " is ", t.extent(0), " x ",
                                                      t.extent(1), " but the shape ", to_string(s), " needs ",
                                                      s.rows(), " x ", s.c, " (n h w rows, c columns)"));
}

/// Throws dimension_mismatch unless the rank-1 view holds exactly n scalars, contiguously.
template <class View>
void require_parameters(const View& p, int n, const std::string& where, const char* what) {
  if (std::int64_t(p.extent(0)) != n)
    throw dimension_mismatch(scorekit::detail::concat(where, ": ", what, ": ", p.extent(0),
                                                      " scalars given, the layer has ", n, " parameters"));
  if (n > 0 && !p.span_is_contiguous())
    throw invalid_argument(scorekit::detail::concat(where, ": ", what, " must be contiguous"));
}

/// Layers that declare optional_gradient = true: their backward() takes an empty gradient.
template <class L, class = void>
struct has_optional_gradient : std::false_type {};
template <class L>
struct has_optional_gradient<L, std::enable_if_t<L::optional_gradient>> : std::true_type {};

/// The gradient argument of an optional_gradient layer's backward(): empty (the parameter gradient is
/// skipped; returns false) or exactly n scalars, as require_parameters checks (returns true).
template <class View>
bool require_optional_gradient(const View& g, int n, const std::string& where) {
  if (g.extent(0) == 0 && n > 0) return false;
  require_parameters(g, n, where, "the gradient");
  return n > 0;
}

/// Throws dimension_mismatch unless the workspace holds at least `need` scalars.
template <class View>
void require_workspace(const View& w, std::size_t need, const std::string& where) {
  if (w.extent(0) < need)
    throw dimension_mismatch(scorekit::detail::concat(where, ": the workspace holds ", w.extent(0),
                                                      " scalars, this call needs ", need));
}

/// Rows [r0, r1) of an NHWC matrix, as an unmanaged LayoutRight view (what the BLAS takes directly).
template <class View>
Kokkos::View<typename View::value_type**, Kokkos::LayoutRight, typename View::memory_space,
             Kokkos::MemoryTraits<Kokkos::Unmanaged>>
row_block(const View& t, std::int64_t r0, std::int64_t r1) {
  using Result = Kokkos::View<typename View::value_type**, Kokkos::LayoutRight, typename View::memory_space,
                              Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  return Result(t.data() + r0 * std::int64_t(t.extent(1)), std::size_t(r1 - r0), t.extent(1));
}

/// A rows x cols LayoutRight matrix over memory at p (unmanaged).
template <class Real, class Mem>
Kokkos::View<Real**, Kokkos::LayoutRight, Mem, Kokkos::MemoryTraits<Kokkos::Unmanaged>> matrix(
    Real* p, std::int64_t rows, std::int64_t cols) {
  return Kokkos::View<Real**, Kokkos::LayoutRight, Mem, Kokkos::MemoryTraits<Kokkos::Unmanaged>>(
      p, std::size_t(rows), std::size_t(cols));
}

}  // namespace detail
}  // namespace image
}  // namespace nn
}  // namespace scorekit
