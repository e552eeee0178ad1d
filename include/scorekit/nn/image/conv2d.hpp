// A 2-D convolution over NHWC batches (tensor.hpp): c_in -> c_out channels, a k x k kernel with stride,
// padding (zeros, or circular: the image wraps around, a torus) and dilation, and an optional bias, as
// PyTorch's nn.Conv2d with padding_mode "zeros" or "circular" (cross-correlation, no kernel flip). The large
// products go through Kokkos Kernels (core/blas.hpp, the host BLAS or cuBLAS):
//   forward   Y = cols(X) W + 1 b^T             cols(X): one row per output pixel, its k k c_in patch
//   backward  dW += cols(X)^T dY,  db += dY^T 1,  dX = scatter(dY W^T)
// (either part skipped when its view is empty: an input adjoint alone builds no patch matrix)
// A pointwise convolution (k = 1, stride 1, no padding) is X W directly, with no patch matrix; a dense
// layer on features is one (pointwise_dense()). Otherwise the patch matrix is built by an own gather
// kernel (im2col) for as many images at a time as fit in max_patch_scalars, and the input adjoint is
// summed back by a gather over each input pixel's patches (col2im), not by atomics, so it is
// deterministic on every backend.
//
// Parameters: W as a (k k c_in) x c_out row-major matrix, row (ky k + kx) c_in + ci holding the weights
// from input channel ci at kernel offset (ky, kx) to every output channel, then the bias (c_out). fan_in
// = c_in k^2, fan_out = c_out k^2 (segment.hpp). PyTorch's weight (c_out, c_in, k, k) is the transpose
// with the patch index reordered.
// scorekit-requires: SCOREKIT_HAVE_KOKKOS_KERNELS
#pragma once

#include <scorekit/core/blas.hpp>
#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/parameter_tensor.hpp>
#include <scorekit/nn/image/tensor.hpp>
#include <scorekit/nn/segment.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace scorekit {
namespace nn {
namespace image {

/// What the padding reads: zeros, or the pixels on the other side of the image (periodic images, where a
/// stationary field's score is itself a circular convolution).
enum class PaddingMode { zeros, circular };

struct Conv2dOptions {
  int stride = 1;
  int padding = 0;
  PaddingMode padding_mode = PaddingMode::zeros;
  int dilation = 1;
  bool bias = true;
  /// The most scalars the patch matrix may take (the workspace is sized by it): images are processed
  /// in chunks of as many as fit (at least one).
  std::int64_t max_patch_scalars = std::int64_t(1) << 21;
  /// Name the weights as torch.nn.Linear's, (c_out, c_in), instead of Conv2d's (c_out, c_in, 1, 1), in
  /// tensors() (a 1 x 1 convolution only; pointwise_dense() sets it).
  bool linear_tensors = false;
};

class Conv2d {
 public:
  /// backward() takes an empty gradient and then skips the parameter gradient (tensor.hpp).
  static constexpr bool optional_gradient = true;

  Conv2d(int c_in, int c_out, int kernel, Conv2dOptions options = {})
      : c_in_(c_in), c_out_(c_out), k_(kernel), o_(options) {
    const std::string where = "scorekit::nn::image::Conv2d";
    if (c_in <= 0 || c_out <= 0 || kernel <= 0)
      throw invalid_argument(scorekit::detail::concat(where, ": channels (", c_in, " -> ", c_out,
                                                      ") and kernel size (", kernel, ") must be positive"));
    if (options.stride <= 0 || options.dilation <= 0 || options.padding < 0)
      throw invalid_argument(scorekit::detail::concat(where, ": stride (", options.stride, ") and dilation (",
                                                      options.dilation, ") must be positive and padding (",
                                                      options.padding, ") not negative"));
    if (options.max_patch_scalars <= 0)
      throw invalid_argument(scorekit::detail::concat(where, ": max_patch_scalars (",
                                                      options.max_patch_scalars, ") must be positive"));
    if (std::int64_t(kernel) * kernel * c_in * c_out > 2147483647 / 2)
      throw invalid_argument(scorekit::detail::concat(where, ": ", c_in, " -> ", c_out, " channels with a ",
                                                      kernel, " x ", kernel, " kernel: too many parameters"));
  }

  int c_in() const { return c_in_; }
  int c_out() const { return c_out_; }
  int kernel() const { return k_; }
  const Conv2dOptions& options() const { return o_; }

  std::string name() const {
    return scorekit::detail::concat("Conv2d(", c_in_, " -> ", c_out_, ", ", k_, " x ", k_, ", stride ",
                                    o_.stride, ", padding ", o_.padding, circular() ? " circular" : "",
                                    ", dilation ", o_.dilation, o_.bias ? "" : ", no bias", ")");
  }

  bool circular() const { return o_.padding_mode == PaddingMode::circular; }

  /// Whether the convolution is X W with no patch matrix.
  bool pointwise() const { return k_ == 1 && o_.stride == 1 && o_.padding == 0; }

  ImageShape output_shape(const ImageShape& in) const {
    const std::string where = name();
    detail::require_valid_shape(in, where, "input");
    if (in.c != c_in_)
      throw dimension_mismatch(scorekit::detail::concat(where, ": the input has ", in.c, " channels (shape ",
                                                        to_string(in), "), the layer takes ", c_in_));
    const int span = o_.dilation * (k_ - 1) + 1;
    if (circular() && (o_.padding > in.h || o_.padding > in.w))
      throw dimension_mismatch(scorekit::detail::concat(where, ": circular padding ", o_.padding,
                                                        " is wider than the input, ", in.h, " x ", in.w,
                                                        " pixels (it may wrap around at most once)"));
    if (in.h + 2 * o_.padding < span || in.w + 2 * o_.padding < span)
      throw dimension_mismatch(scorekit::detail::concat(
          where, ": the input is ", in.h, " x ", in.w, " pixels, padded ", in.h + 2 * o_.padding, " x ",
          in.w + 2 * o_.padding, ", smaller than the kernel's span ", span));
    return {in.n, (in.h + 2 * o_.padding - span) / o_.stride + 1,
            (in.w + 2 * o_.padding - span) / o_.stride + 1, c_out_};
  }

  int patch_size() const { return k_ * k_ * c_in_; }
  /// Multiply-adds of one forward on a batch of shape `in` (the products; the bias adds not counted):
  /// (k k c_in) c_out per output pixel. The input adjoint and the weight gradient take as many each.
  double multiply_adds(const ImageShape& in) const {
    const ImageShape out = output_shape(in);
    return double(out.rows()) * double(patch_size()) * double(c_out_);
  }
  int n_params() const { return patch_size() * c_out_ + (o_.bias ? c_out_ : 0); }

  std::vector<Segment> segments(int offset) const {
    std::vector<Segment> s;
    const int fan_in = patch_size(), fan_out = k_ * k_ * c_out_;
    s.push_back(Segment{ParameterKind::weight, offset, patch_size() * c_out_, fan_in, fan_out});
    if (o_.bias)
      s.push_back(Segment{ParameterKind::bias, offset + patch_size() * c_out_, c_out_, fan_in, fan_out});
    return s;
  }
  /// As torch.nn.Conv2d(c_in, c_out, k): "<prefix>weight" (c_out, c_in, k, k), stored here (ky, kx, c_in,
  /// c_out), and "<prefix>bias" (c_out); as torch.nn.Linear(c_in, c_out) with linear_tensors.
  std::vector<ParameterTensor> tensors(int offset, const std::string& prefix) const {
    std::vector<ParameterTensor> t;
    if (o_.linear_tensors && k_ == 1)
      t.push_back(ParameterTensor{prefix + "weight", offset, {c_out_, c_in_}, {1, 0}});
    else
      t.push_back(ParameterTensor{prefix + "weight", offset, {c_out_, c_in_, k_, k_}, {2, 3, 1, 0}});
    if (o_.bias) t.push_back(ParameterTensor{prefix + "bias", offset + patch_size() * c_out_, {c_out_}, {}});
    return t;
  }

  /// Images per chunk of the patch matrix.
  int chunk(const ImageShape& in) const {
    const ImageShape out = output_shape(in);
    if (pointwise()) return in.n;
    const std::int64_t per_image = std::int64_t(out.h) * out.w * patch_size();
    return int(std::max<std::int64_t>(1, std::min<std::int64_t>(in.n, o_.max_patch_scalars / per_image)));
  }

  /// Forward: the patch matrix of one chunk. Backward: that and its adjoint, plus a column of ones for
  /// the bias gradient.
  std::size_t workspace_size(const ImageShape& in) const {
    const ImageShape out = output_shape(in);
    const std::int64_t rows = std::int64_t(chunk(in)) * out.h * out.w;
    if (!adjoint_is_convolution()) return std::size_t((pointwise() ? 0 : 2 * rows * patch_size()) + rows);
    // The weight gradient's patches and ones; then, reusing the space, the flipped weights and the
    // adjoint convolution's own workspace.
    const std::size_t weight_phase = std::size_t(rows * patch_size() + rows);
    const std::size_t adjoint_phase =
        std::size_t(patch_size()) * std::size_t(c_out_) + adjoint_convolution().forward_workspace_size(out);
    return std::max(weight_phase, adjoint_phase);
  }

  /// What forward() alone needs: one chunk's patch matrix.
  std::size_t forward_workspace_size(const ImageShape& in) const {
    const ImageShape out = output_shape(in);
    return pointwise() ? 0 : std::size_t(std::int64_t(chunk(in)) * out.h * out.w * patch_size());
  }

  /// Whether the input adjoint is itself a convolution (stride 1, padding at most the kernel's reach; with
  /// circular padding, the output as large as the input): of the output adjoint with the kernel flipped
  /// and its channels swapped, padding d (k - 1) - p of the same mode.
  /// backward() then computes it that way, a product with c_out k^2 columns of patches instead of one with
  /// c_in k^2 columns scattered back (less memory traffic wherever c_out < c_in, as in a decoder).
  bool adjoint_is_convolution() const {
    if (pointwise() || o_.stride != 1) return false;
    return circular() ? 2 * o_.padding == o_.dilation * (k_ - 1) : o_.padding <= o_.dilation * (k_ - 1);
  }
  Conv2d adjoint_convolution() const {
    Conv2dOptions o = o_;
    o.padding = o_.dilation * (k_ - 1) - o_.padding;
    o.bias = false;
    return Conv2d(c_out_, c_in_, k_, o);
  }

  template <class Exec, class P, class X, class Y, class Work>
  void forward(const Exec& exec, const P& params, const X& x, const ImageShape& in, const Y& y,
               const Work& work) const {
    using Real = typename Y::non_const_value_type;
    using Mem = typename Y::memory_space;
    const std::string where = name() + " forward";
    const ImageShape out = output_shape(in);
    detail::require_parameters(params, n_params(), where, "the parameters");
    detail::require_tensor(x, in, where, "the input");
    detail::require_tensor(y, out, where, "the output");
    detail::require_workspace(work, forward_workspace_size(in), where);
    ScopedRegion region("scorekit::nn::image::Conv2d::forward");

    const auto W = detail::matrix<const Real, Mem>(params.data(), patch_size(), c_out_);
    Real beta = 0;
    if (o_.bias) {
      fill_bias(exec, params.data() + std::int64_t(patch_size()) * c_out_, y);
      beta = 1;
    }
    if (pointwise()) {
      blas::gemm(exec, "N", "N", Real(1), detail::row_block(x, 0, in.rows()), W, beta,
                 detail::row_block(y, 0, out.rows()));
      return;
    }
    const int per = chunk(in);
    const std::int64_t pix = std::int64_t(out.h) * out.w;
    for (int s0 = 0; s0 < in.n; s0 += per) {
      const int s1 = std::min(in.n, s0 + per);
      const auto cols = detail::matrix<Real, Mem>(work.data(), (s1 - s0) * pix, patch_size());
      im2col(exec, x, in, out, s0, s1, cols);
      blas::gemm(exec, "N", "N", Real(1), cols, W, beta, detail::row_block(y, s0 * pix, s1 * pix));
    }
  }

  template <class Exec, class P, class X, class DY, class G, class DX, class Work>
  void backward(const Exec& exec, const P& params, const X& x, const ImageShape& in, const DY& dy,
                const G& grad, const DX& dx, const Work& work) const {
    using Real = typename G::non_const_value_type;
    using Mem = typename G::memory_space;
    const std::string where = name() + " backward";
    const ImageShape out = output_shape(in);
    detail::require_parameters(params, n_params(), where, "the parameters");
    const bool want_grad = detail::require_optional_gradient(grad, n_params(), where);
    detail::require_tensor(x, in, where, "the input");
    detail::require_tensor(dy, out, where, "the output adjoint");
    const bool want_dx = dx.extent(0) != 0;
    if (want_dx) detail::require_tensor(dx, in, where, "the input adjoint");
    detail::require_workspace(work, workspace_size(in), where);
    ScopedRegion region("scorekit::nn::image::Conv2d::backward");

    const auto W = detail::matrix<const Real, Mem>(params.data(), patch_size(), c_out_);
    // (Empty when the gradient is skipped: no offset is applied to its null pointer.)
    const auto dW = detail::matrix<Real, Mem>(grad.data(), want_grad ? patch_size() : 0, c_out_);
    const auto db = detail::matrix<Real, Mem>(
        want_grad ? grad.data() + std::int64_t(patch_size()) * c_out_ : nullptr, want_grad ? 1 : 0, c_out_);
    const int per = chunk(in);
    const std::int64_t pix = std::int64_t(out.h) * out.w;
    const std::int64_t patch = pointwise() ? 0 : per * pix * std::int64_t(patch_size());
    const bool adjoint_conv = adjoint_is_convolution();
    Real* const ones_at = work.data() + (adjoint_conv ? 1 : 2) * patch;
    // Without the parameter gradient, only a scattered input adjoint needs the chunks (no patch matrix).
    const bool chunks = want_grad || (want_dx && !adjoint_conv);
    if (o_.bias && want_grad)
      Kokkos::deep_copy(
          exec,
          Kokkos::View<Real*, Mem, Kokkos::MemoryTraits<Kokkos::Unmanaged>>(ones_at, std::size_t(per * pix)),
          Real(1));
    for (int s0 = 0; chunks && s0 < in.n; s0 += per) {
      const int s1 = std::min(in.n, s0 + per);
      const std::int64_t rows = (s1 - s0) * pix;
      const auto dy_rows = detail::row_block(dy, s0 * pix, s1 * pix);
      if (o_.bias && want_grad)
        blas::gemm(exec, "T", "N", Real(1), detail::matrix<const Real, Mem>(ones_at, rows, 1), dy_rows,
                   Real(1), db);
      if (pointwise()) {
        if (want_grad)
          blas::gemm(exec, "T", "N", Real(1), detail::row_block(x, s0 * pix, s1 * pix), dy_rows, Real(1), dW);
        if (want_dx)
          blas::gemm(exec, "N", "T", Real(1), dy_rows, W, Real(0), detail::row_block(dx, s0 * pix, s1 * pix));
        continue;
      }
      if (want_grad) {
        const auto cols = detail::matrix<Real, Mem>(work.data(), rows, patch_size());
        im2col(exec, x, in, out, s0, s1, cols);
        blas::gemm(exec, "T", "N", Real(1), cols, dy_rows, Real(1), dW);
      }
      if (!want_dx || adjoint_conv) continue;
      const auto dcols = detail::matrix<Real, Mem>(work.data() + patch, rows, patch_size());
      blas::gemm(exec, "N", "T", Real(1), dy_rows, W, Real(0), dcols);
      col2im(exec, dcols, in, out, s0, s1, dx);
    }
    if (want_dx && adjoint_conv) {
      // The flipped kernel: row (ky' k + kx') c_out + co, column ci holds W's row ((k-1-ky') k + k-1-kx')
      // c_in + ci, column co.
      const int k = k_, ci_n = c_in_, co_n = c_out_;
      const std::int64_t n_w = std::int64_t(patch_size()) * c_out_;
      Real* const flipped = work.data();
      const Real* const w = params.data();
      Kokkos::parallel_for(
          "scorekit::nn::image::Conv2d::flip_kernel",
          Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, n_w),
          KOKKOS_LAMBDA(const std::int64_t e) {
            const int ci = int(e % ci_n);
            const std::int64_t r = e / ci_n;
            const int co = int(r % co_n), q = int(r / co_n);
            const int q_from = (k - 1 - q / k) * k + (k - 1 - q % k);
            flipped[e] = w[(std::int64_t(q_from) * ci_n + ci) * co_n + co];
          });
      const Conv2d adjoint = adjoint_convolution();
      const Kokkos::View<const Real*, Mem, Kokkos::MemoryTraits<Kokkos::Unmanaged>> wf(flipped,
                                                                                       std::size_t(n_w));
      const Kokkos::View<Real*, Mem, Kokkos::MemoryTraits<Kokkos::Unmanaged>> rest(
          work.data() + n_w, work.extent(0) - std::size_t(n_w));
      adjoint.forward(exec, wf, dy, out, dx, rest);
    }
  }

  /// y(row, :) = b for every row.
  template <class Exec, class Real, class Y>
  static void fill_bias(const Exec& exec, const Real* b, const Y& y) {
    const std::int64_t c = std::int64_t(y.extent(1));
    const Y y_ = y;
    Kokkos::parallel_for(
        "scorekit::nn::image::Conv2d::bias",
        Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, std::int64_t(y.extent(0)) * c),
        KOKKOS_LAMBDA(const std::int64_t e) { y_(e / c, e % c) = b[e % c]; });
  }

  /// cols(m, r) for the output pixels m of images [s0, s1): the input at the pixel patch offset r reads.
  /// One work item per output pixel: it locates the pixel once (the divisions) and copies, kernel offset
  /// by kernel offset, the c_in contiguous channels of one input pixel (or zeros), so the copy
  /// vectorises for wide inputs and a single-channel input pays no division per scalar.
  template <class Exec, class X, class Cols>
  void im2col(const Exec& exec, const X& x, const ImageShape& in, const ImageShape& out, int s0, int s1,
              const Cols& cols) const {
    using Real = typename Cols::non_const_value_type;
    const int k = k_, ci_n = c_in_, stride = o_.stride, pad = o_.padding, dil = o_.dilation;
    const int h = in.h, w = in.w, ho = out.h, wo = out.w;
    const bool wrap = circular();
    const std::int64_t ld = std::int64_t(cols.extent(1));
    const auto* const xp = x.data();
    Real* const cp = cols.data();
    Kokkos::parallel_for(
        "scorekit::nn::image::Conv2d::im2col",
        Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, std::int64_t(s1 - s0) * ho * wo),
        KOKKOS_LAMBDA(const std::int64_t m) {
          const std::int64_t plane = std::int64_t(ho) * wo;
          const std::int64_t img = s0 + m / plane;
          const int pix = int(m % plane), ox = pix % wo, oy = pix / wo;
          Real* dst = cp + m * ld;
          for (int ky = 0; ky < k; ++ky) {
            int iy = oy * stride - pad + ky * dil;
            if (wrap) iy = iy < 0 ? iy + h : iy >= h ? iy - h : iy;  // -pad <= iy < h + pad, pad <= h
            const bool row_in = iy >= 0 && iy < h;
            for (int kx = 0; kx < k; ++kx, dst += ci_n) {
              int ix = ox * stride - pad + kx * dil;
              if (wrap) ix = ix < 0 ? ix + w : ix >= w ? ix - w : ix;
              if (row_in && ix >= 0 && ix < w) {
                const auto* src = xp + ((img * h + iy) * w + ix) * ci_n;
                for (int c = 0; c < ci_n; ++c) dst[c] = src[c];
              } else {
                for (int c = 0; c < ci_n; ++c) dst[c] = Real(0);
              }
            }
          }
        });
  }

  /// dx for images [s0, s1): each input pixel sums the patch adjoints that read it. One work item per
  /// input pixel, the c_in channels a vector loop, the kernel offsets in a fixed order.
  template <class Exec, class Cols, class DX>
  void col2im(const Exec& exec, const Cols& dcols, const ImageShape& in, const ImageShape& out, int s0,
              int s1, const DX& dx) const {
    using Real = typename DX::non_const_value_type;
    const int k = k_, ci_n = c_in_, stride = o_.stride, pad = o_.padding, dil = o_.dilation;
    const int h = in.h, w = in.w, ho = out.h, wo = out.w;
    const int wraps = circular() ? 1 : 0;  // circular: the pixel is also read as iy -+ h, ix -+ w
    const std::int64_t ld = std::int64_t(dcols.extent(1));
    const auto* const dp = dcols.data();
    Real* const xp = dx.data();
    Kokkos::parallel_for(
        "scorekit::nn::image::Conv2d::col2im",
        Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, std::int64_t(s1 - s0) * h * w),
        KOKKOS_LAMBDA(const std::int64_t p) {
          const int ix = int(p % w), iy = int((p / w) % h);
          const std::int64_t local = p / (std::int64_t(w) * h);
          Real* dst = xp + ((s0 + local) * h * w + std::int64_t(iy) * w + ix) * ci_n;
          for (int c = 0; c < ci_n; ++c) dst[c] = Real(0);
          for (int ky = 0; ky < k; ++ky)
            for (int my = -wraps; my <= wraps; ++my) {
              const int ty = iy + my * h + pad - ky * dil;
              if (ty < 0 || ty % stride != 0 || ty / stride >= ho) continue;
              for (int kx = 0; kx < k; ++kx)
                for (int mx = -wraps; mx <= wraps; ++mx) {
                  const int tx = ix + mx * w + pad - kx * dil;
                  if (tx < 0 || tx % stride != 0 || tx / stride >= wo) continue;
                  const auto* src = dp + ((local * ho + ty / stride) * wo + tx / stride) * ld +
                                    std::int64_t(ky * k + kx) * ci_n;
                  for (int c = 0; c < ci_n; ++c) dst[c] += src[c];
                }
            }
        });
  }

 private:
  int c_in_, c_out_, k_;
  Conv2dOptions o_;
};

/// A dense layer on the channels of every pixel (on features: images of 1 x 1 pixels): a pointwise
/// convolution.
inline Conv2d pointwise_dense(int in, int out, bool bias = true) {
  Conv2dOptions o;
  o.bias = bias;
  o.linear_tensors = true;
  return Conv2d(in, out, 1, o);
}

}  // namespace image
}  // namespace nn
}  // namespace scorekit
