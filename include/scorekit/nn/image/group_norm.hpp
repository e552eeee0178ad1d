// Group normalisation (Wu and He, "Group Normalization", ECCV 2018) over NHWC batches (tensor.hpp), as
// PyTorch's nn.GroupNorm: the c channels split into `groups` groups of c / groups consecutive channels;
// each (image, group) is normalised by the mean and (biased) variance of its h w c / groups values,
//   y = (x - mean) / sqrt(var + eps) * gamma_c + beta_c,
// with a learned scale gamma (initialised to one) and shift beta (zero) per channel when affine.
// groups = c is instance normalisation, groups = 1 layer normalisation over (h, w, c).
//
// Kernels: statistics one work item per (image, group), two passes (mean, then the mean square of the
// deviations: no cancellation); the parameter gradients one work item per channel summing over the
// rows in order, so every result is the same bits for any thread count.
#pragma once

#include <scorekit/core/elementary.hpp>
#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/parameter_tensor.hpp>
#include <scorekit/nn/image/tensor.hpp>
#include <scorekit/nn/segment.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace scorekit {
namespace nn {
namespace image {

class GroupNorm {
 public:
  /// backward() takes an empty gradient and then skips the parameter gradient (tensor.hpp).
  static constexpr bool optional_gradient = true;

  GroupNorm(int groups, int channels, double eps = 1e-5, bool affine = true)
      : groups_(groups), c_(channels), eps_(eps), affine_(affine) {
    const char* where = "scorekit::nn::image::GroupNorm";
    if (groups <= 0 || channels <= 0 || channels % groups != 0)
      throw invalid_argument(scorekit::detail::concat(where, ": ", channels, " channels in ", groups,
                                                      " groups; both must be positive and the groups must "
                                                      "divide the channels"));
    if (!(eps > 0) || !std::isfinite(eps))
      throw invalid_argument(
          scorekit::detail::concat(where, ": eps (", eps, ") must be positive and finite"));
  }

  int groups() const { return groups_; }
  int channels() const { return c_; }
  double eps() const { return eps_; }

  std::string name() const {
    return scorekit::detail::concat("GroupNorm(", groups_, " groups of ", c_ / groups_, " channels, eps ",
                                    eps_, affine_ ? "" : ", no affine", ")");
  }

  ImageShape output_shape(const ImageShape& in) const {
    detail::require_valid_shape(in, name(), "input");
    if (in.c != c_)
      throw dimension_mismatch(scorekit::detail::concat(name(), ": the input has ", in.c, " channels (shape ",
                                                        to_string(in), "), the layer takes ", c_));
    return in;
  }

  int n_params() const { return affine_ ? 2 * c_ : 0; }

  std::vector<Segment> segments(int offset) const {
    if (!affine_) return {};
    return {Segment{ParameterKind::scale, offset, c_, c_, c_},
            Segment{ParameterKind::bias, offset + c_, c_, c_, c_}};
  }
  /// As torch.nn.GroupNorm(groups, c): "<prefix>weight" (gamma) and "<prefix>bias" (beta), (c) each.
  std::vector<ParameterTensor> tensors(int offset, const std::string& prefix) const {
    if (!affine_) return {};
    return {ParameterTensor{prefix + "weight", offset, {c_}, {}},
            ParameterTensor{prefix + "bias", offset + c_, {c_}, {}}};
  }

  /// Mean and inverse standard deviation per (image, group); in backward also two sums per (image,
  /// group) and the per-image partial parameter gradients (2 c per image).
  std::size_t workspace_size(const ImageShape& in) const {
    output_shape(in);
    return std::size_t(in.n) *
           (std::size_t(4) * std::size_t(groups_) + (affine_ ? std::size_t(2) * std::size_t(c_) : 0));
  }

  template <class Exec, class P, class X, class Y, class Work>
  void forward(const Exec& exec, const P& params, const X& x, const ImageShape& in, const Y& y,
               const Work& work) const {
    using Real = typename Y::non_const_value_type;
    const std::string where = name() + " forward";
    check(params, x, in, work, where);
    detail::require_tensor(y, in, where, "the output");
    ScopedRegion region("scorekit::nn::image::GroupNorm::forward");
    statistics(exec, x, in, work);
    const int c = c_, cg = c_ / groups_, G = groups_;
    const std::int64_t hw = std::int64_t(in.h) * in.w;
    const bool affine = affine_;
    const Real* p = params.data();
    const Real* mean = work.data();
    const Real* rstd = work.data() + std::int64_t(in.n) * G;
    const auto* const xp = x.data();
    Real* const yp = y.data();
    // One work item per pixel; its channels group by group.
    Kokkos::parallel_for(
        "scorekit::nn::image::GroupNorm::normalise",
        Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, in.rows()),
        KOKKOS_LAMBDA(const std::int64_t row) {
          const std::int64_t ng0 = (row / hw) * G;
          const auto* xr = xp + row * c;
          Real* yr = yp + row * c;
          for (int g = 0; g < G; ++g) {
            const Real m = mean[ng0 + g], r = rstd[ng0 + g];
            for (int j = g * cg; j < (g + 1) * cg; ++j) {
              const Real xhat = (xr[j] - m) * r;
              yr[j] = affine ? xhat * p[j] + p[c + j] : xhat;
            }
          }
        });
  }

  template <class Exec, class P, class X, class DY, class Gr, class DX, class Work>
  void backward(const Exec& exec, const P& params, const X& x, const ImageShape& in, const DY& dy,
                const Gr& grad, const DX& dx, const Work& work) const {
    using Real = typename Gr::non_const_value_type;
    const std::string where = name() + " backward";
    check(params, x, in, work, where);
    const bool want_grad = detail::require_optional_gradient(grad, n_params(), where);
    detail::require_tensor(dy, in, where, "the output adjoint");
    const bool want_dx = dx.extent(0) != 0;
    if (want_dx) detail::require_tensor(dx, in, where, "the input adjoint");
    ScopedRegion region("scorekit::nn::image::GroupNorm::backward");
    statistics(exec, x, in, work);
    const int c = c_, cg = c_ / groups_, G = groups_, n = in.n;
    const std::int64_t hw = std::int64_t(in.h) * in.w;
    const bool affine = affine_;  // (want_grad implies affine: n_params() > 0)
    const Real* p = params.data();
    const std::int64_t ngroups = std::int64_t(n) * G;
    const Real* mean = work.data();
    const Real* rstd = work.data() + ngroups;
    Real* sum_g = work.data() + 2 * ngroups;    // sum of dy gamma over the group
    Real* sum_gx = work.data() + 3 * ngroups;   // sum of dy gamma xhat over the group
    Real* partial = work.data() + 4 * ngroups;  // per image: sum dy xhat (c), sum dy (c)
    const auto* const xp = x.data();
    const auto* const dyp = dy.data();
    // Per (image, group): the two sums of the input adjoint, and (when wanted) the image's partial
    // parameter gradient of the group's channels; the pixels in order, the channels a vector loop.
    Kokkos::parallel_for(
        "scorekit::nn::image::GroupNorm::group_sums",
        Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, ngroups),
        KOKKOS_LAMBDA(const std::int64_t ng) {
          const std::int64_t img = ng / G;
          const int c0 = int(ng % G) * cg;
          const Real m = mean[ng], r = rstd[ng];
          Real* pg = partial + img * 2 * c;
          if (want_grad)
            for (int j = c0; j < c0 + cg; ++j) pg[j] = pg[c + j] = Real(0);
          Real a = 0, b = 0;
          for (std::int64_t q = 0; q < hw; ++q) {
            const auto* xr = xp + (img * hw + q) * c;
            const auto* dr = dyp + (img * hw + q) * c;
            for (int j = c0; j < c0 + cg; ++j) {
              const Real xhat = (xr[j] - m) * r;
              const Real d = dr[j] * (affine ? p[j] : Real(1));
              a += d;
              b += d * xhat;
              if (want_grad) {
                pg[j] += dr[j] * xhat;
                pg[c + j] += dr[j];
              }
            }
          }
          sum_g[ng] = a;
          sum_gx[ng] = b;
        });
    if (want_grad) {
      Real* g = grad.data();
      Kokkos::parallel_for(
          "scorekit::nn::image::GroupNorm::parameter_gradient", Kokkos::RangePolicy<Exec>(exec, 0, 2 * c),
          KOKKOS_LAMBDA(const int k) {
            Real sum = 0;
            for (int img = 0; img < n; ++img) sum += partial[std::int64_t(img) * 2 * c + k];
            g[k] += sum;
          });
    }
    if (!want_dx) return;
    const Real inv_m = Real(1) / Real(hw * cg);
    Real* const dxp = dx.data();
    Kokkos::parallel_for(
        "scorekit::nn::image::GroupNorm::input_adjoint",
        Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, in.rows()),
        KOKKOS_LAMBDA(const std::int64_t row) {
          const std::int64_t ng0 = (row / hw) * G;
          const auto* xr = xp + row * c;
          const auto* dr = dyp + row * c;
          Real* out = dxp + row * c;
          for (int g = 0; g < G; ++g) {
            const Real m = mean[ng0 + g], r = rstd[ng0 + g];
            const Real mg = inv_m * sum_g[ng0 + g], mgx = inv_m * sum_gx[ng0 + g];
            for (int j = g * cg; j < (g + 1) * cg; ++j) {
              const Real xhat = (xr[j] - m) * r;
              const Real d = dr[j] * (affine ? p[j] : Real(1));
              out[j] = r * (d - mg - xhat * mgx);
            }
          }
        });
  }

  /// Mean and 1 / sqrt(var + eps) of every (image, group) into work[0, n G) and work[n G, 2 n G).
  template <class Exec, class X, class Work>
  void statistics(const Exec& exec, const X& x, const ImageShape& in, const Work& work) const {
    using Real = typename Work::non_const_value_type;
    const int c = c_, cg = c_ / groups_, G = groups_;
    const std::int64_t hw = std::int64_t(in.h) * in.w, ngroups = std::int64_t(in.n) * G;
    const Real eps = Real(eps_), inv_m = Real(1) / Real(hw * cg);
    Real* mean = work.data();
    Real* rstd = work.data() + ngroups;
    const auto* const xp = x.data();
    Kokkos::parallel_for(
        "scorekit::nn::image::GroupNorm::statistics",
        Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, ngroups),
        KOKKOS_LAMBDA(const std::int64_t ng) {
          const std::int64_t img = ng / G;
          const int c0 = int(ng % G) * cg;
          Real s = 0;
          for (std::int64_t q = 0; q < hw; ++q) {
            const auto* xr = xp + (img * hw + q) * c + c0;
            for (int j = 0; j < cg; ++j) s += xr[j];
          }
          const Real mu = s * inv_m;
          Real v = 0;
          for (std::int64_t q = 0; q < hw; ++q) {
            const auto* xr = xp + (img * hw + q) * c + c0;
            for (int j = 0; j < cg; ++j) {
              const Real d = xr[j] - mu;
              v += d * d;
            }
          }
          mean[ng] = mu;
          rstd[ng] = Real(1) / math::sqrt(v * inv_m + eps);
        });
  }

 private:
  template <class P, class X, class Work>
  void check(const P& params, const X& x, const ImageShape& in, const Work& work,
             const std::string& where) const {
    output_shape(in);
    detail::require_parameters(params, n_params(), where, "the parameters");
    detail::require_tensor(x, in, where, "the input");
    detail::require_workspace(work, workspace_size(in), where);
  }

  int groups_, c_;
  double eps_;
  bool affine_;
};

}  // namespace image
}  // namespace nn
}  // namespace scorekit
