// Changes of resolution as runtime image layers (tensor.hpp), no parameters, no workspace:
// - AvgPool2d(f): the mean of each f x f block (stride f; the height and width must be multiples of f),
//   as PyTorch's nn.AvgPool2d(f);
// - Upsample2d(f): nearest-neighbour upsampling by f, as nn.Upsample(scale_factor=f, mode="nearest"); its
//   adjoint sums each f x f block.
// Both are gathers: one work item per output (forward) or input (backward) scalar.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/nn/image/tensor.hpp>
#include <scorekit/nn/segment.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace scorekit {
namespace nn {
namespace image {
namespace detail {

/// Shared by the two resampling layers: forward is down (block mean) or up (copy); each is the other's
/// adjoint up to the factor 1 / f^2.
template <bool Down>
class Resample {
 public:
  explicit Resample(int factor) : f_(factor) {
    if (factor <= 0)
      throw invalid_argument(
          scorekit::detail::concat(name(), ": the factor (", factor, ") must be positive"));
  }
  int factor() const { return f_; }
  std::string name() const { return scorekit::detail::concat(Down ? "AvgPool2d(" : "Upsample2d(", f_, ")"); }
  ImageShape output_shape(const ImageShape& in) const {
    require_valid_shape(in, name(), "input");
    if (!Down) return {in.n, in.h * f_, in.w * f_, in.c};
    if (in.h % f_ != 0 || in.w % f_ != 0)
      throw dimension_mismatch(scorekit::detail::concat(name(), ": the input is ", in.h, " x ", in.w,
                                                        " pixels; both must be multiples of ", f_));
    return {in.n, in.h / f_, in.w / f_, in.c};
  }
  int n_params() const { return 0; }
  std::vector<Segment> segments(int) const { return {}; }
  std::size_t workspace_size(const ImageShape& in) const {
    output_shape(in);
    return 0;
  }

  template <class Exec, class P, class X, class Y, class Work>
  void forward(const Exec& exec, const P& params, const X& x, const ImageShape& in, const Y& y,
               const Work&) const {
    const std::string where = name() + " forward";
    const ImageShape out = output_shape(in);
    require_parameters(params, 0, where, "the parameters");
    require_tensor(x, in, where, "the input");
    require_tensor(y, out, where, "the output");
    // Down: y = mean of the block (adjoint-free gather). Up: y = the covering input pixel.
    gather<Exec, !Down>(exec, x, Down ? in : out, Down ? out : in, y);
  }

  template <class Exec, class P, class X, class DY, class G, class DX, class Work>
  void backward(const Exec& exec, const P& params, const X& x, const ImageShape& in, const DY& dy,
                const G& grad, const DX& dx, const Work&) const {
    const std::string where = name() + " backward";
    const ImageShape out = output_shape(in);
    require_parameters(params, 0, where, "the parameters");
    require_parameters(grad, 0, where, "the gradient");
    require_tensor(x, in, where, "the input");
    require_tensor(dy, out, where, "the output adjoint");
    if (dx.extent(0) == 0) return;
    require_tensor(dx, in, where, "the input adjoint");
    // The adjoint of a block mean copies dy / f^2 to the block; of a copy, sums the block.
    gather<Exec, Down>(exec, dy, Down ? in : out, Down ? out : in, dx, Down);
  }

  /// (Public only because nvcc rejects device lambdas in private members.) Between a fine and a coarse grid
  /// (fine = coarse f): Copy writes the coarse pixel into each fine one (scaled by 1 / f^2 when `scaled`);
  /// otherwise each coarse pixel gets the (mean when not `sum`) of its fine block. `src` and `dst` are the
  /// fine and coarse tensors in the direction of the copy.
  template <class Exec, bool Copy, class S, class D>
  void gather(const Exec& exec, const S& src, const ImageShape& fine, const ImageShape& coarse, const D& dst,
              bool scaled = false) const {
    using Real = typename D::non_const_value_type;
    const int f = f_, c = fine.c;
    const int fh = fine.h, fw = fine.w, ch = coarse.h, cw = coarse.w;
    const auto* const sp = src.data();
    Real* const dp = dst.data();
    if constexpr (Copy) {
      // One work item per fine pixel: its c channels from the covering coarse pixel.
      const Real s = scaled ? Real(1) / Real(f * f) : Real(1);
      Kokkos::parallel_for(
          "scorekit::nn::image::Resample::copy",
          Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, fine.rows()),
          KOKKOS_LAMBDA(const std::int64_t p) {
            const int x = int(p % fw), y = int((p / fw) % fh);
            const std::int64_t img = p / (std::int64_t(fw) * fh);
            const auto* from = sp + ((img * ch + y / f) * cw + x / f) * c;
            Real* to = dp + p * c;
            for (int j = 0; j < c; ++j) to[j] = s * from[j];
          });
    } else {
      // One work item per coarse pixel: the (mean of the) f x f fine pixels of its block, channel by
      // channel as a vector loop, the block in a fixed order.
      const Real s = Down ? Real(1) / Real(f * f) : Real(1);
      Kokkos::parallel_for(
          "scorekit::nn::image::Resample::block_sum",
          Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, coarse.rows()),
          KOKKOS_LAMBDA(const std::int64_t p) {
            const int x = int(p % cw), y = int((p / cw) % ch);
            const std::int64_t img = p / (std::int64_t(cw) * ch);
            Real* to = dp + p * c;
            for (int j = 0; j < c; ++j) to[j] = Real(0);
            for (int dy = 0; dy < f; ++dy)
              for (int dx = 0; dx < f; ++dx) {
                const auto* from = sp + ((img * fh + y * f + dy) * fw + x * f + dx) * c;
                for (int j = 0; j < c; ++j) to[j] += from[j];
              }
            for (int j = 0; j < c; ++j) to[j] *= s;
          });
    }
  }

 private:
  int f_;
};

}  // namespace detail

/// Mean of each f x f block (see the top of this file).
class AvgPool2d : public detail::Resample<true> {
 public:
  using detail::Resample<true>::Resample;
};

/// Nearest-neighbour upsampling by f (see the top of this file).
class Upsample2d : public detail::Resample<false> {
 public:
  using detail::Resample<false>::Resample;
};

}  // namespace image
}  // namespace nn
}  // namespace scorekit
