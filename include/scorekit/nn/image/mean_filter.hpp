// A k x k mean filter at stride 1 as a runtime image layer (tensor.hpp): each output pixel the sum of the
// k x k window centred on it, zero-padded by k / 2 (k odd), divided by k^2, as PyTorch's
// nn.AvgPool2d(k, stride=1, padding=k // 2) with its default count_include_pad=True: the pooling of
// RefineNet's chained residual pooling as NCSN writes it (refinenet.hpp). The window is symmetric, so the
// layer is its own adjoint: backward applies it to dy. No parameters, no workspace; one work item per
// pixel, its channels a vector loop, the window in a fixed order.
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

class MeanFilter2d {
 public:
  explicit MeanFilter2d(int kernel) : k_(kernel) {
    if (kernel <= 0 || kernel % 2 == 0)
      throw invalid_argument(scorekit::detail::concat("scorekit::nn::image::MeanFilter2d: the kernel (",
                                                      kernel, ") must be odd"));
  }
  int kernel() const { return k_; }
  std::string name() const { return scorekit::detail::concat("MeanFilter2d(", k_, ")"); }
  ImageShape output_shape(const ImageShape& in) const {
    detail::require_valid_shape(in, name(), "input");
    return in;
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
    output_shape(in);
    detail::require_parameters(params, 0, where, "the parameters");
    detail::require_tensor(x, in, where, "the input");
    detail::require_tensor(y, in, where, "the output");
    filter(exec, x, in, y);
  }

  template <class Exec, class P, class X, class DY, class G, class DX, class Work>
  void backward(const Exec& exec, const P& params, const X& x, const ImageShape& in, const DY& dy,
                const G& grad, const DX& dx, const Work&) const {
    const std::string where = name() + " backward";
    output_shape(in);
    detail::require_parameters(params, 0, where, "the parameters");
    detail::require_parameters(grad, 0, where, "the gradient");
    detail::require_tensor(x, in, where, "the input");
    detail::require_tensor(dy, in, where, "the output adjoint");
    if (dx.extent(0) == 0) return;
    detail::require_tensor(dx, in, where, "the input adjoint");
    filter(exec, dy, in, dx);
  }

  /// (Public only because nvcc rejects device lambdas in private members.) dst = the filter of src.
  template <class Exec, class S, class D>
  void filter(const Exec& exec, const S& src, const ImageShape& in, const D& dst) const {
    using Real = typename D::non_const_value_type;
    const int r = k_ / 2, c = in.c, h = in.h, w = in.w;
    const Real scale = Real(1) / Real(k_ * k_);
    const auto* const sp = src.data();
    Real* const dp = dst.data();
    Kokkos::parallel_for(
        "scorekit::nn::image::MeanFilter2d::filter",
        Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, in.rows()),
        KOKKOS_LAMBDA(const std::int64_t p) {
          const int px = int(p % w), py = int((p / w) % h);
          const std::int64_t img = p / (std::int64_t(w) * h);
          Real* to = dp + p * c;
          for (int j = 0; j < c; ++j) to[j] = Real(0);
          const int y0 = py - r < 0 ? 0 : py - r, y1 = py + r >= h ? h - 1 : py + r;
          const int x0 = px - r < 0 ? 0 : px - r, x1 = px + r >= w ? w - 1 : px + r;
          for (int yy = y0; yy <= y1; ++yy)
            for (int xx = x0; xx <= x1; ++xx) {
              const auto* from = sp + ((img * h + yy) * w + xx) * c;
              for (int j = 0; j < c; ++j) to[j] += from[j];
            }
          for (int j = 0; j < c; ++j) to[j] *= scale;
        });
  }

 private:
  int k_;
};

}  // namespace image
}  // namespace nn
}  // namespace scorekit
