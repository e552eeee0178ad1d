// Conditional instance normalisation++ (CIN++; Song and Ermon, "Generative Modeling by Estimating
// Gradients of the Data Distribution", NeurIPS 2019, appendix A.1) over NHWC batches (tensor.hpp). For
// image i and channel k, over its P = h w pixels,
//   mu_k = mean_p x_pk,   s_k = sqrt(var_p(x_pk) + eps)                (biased variance: nn.InstanceNorm2d)
//   m = mean_k mu_k,      v = sqrt(sum_k (mu_k - m)^2 / (C - 1) + eps) (unbiased: NCSN's torch.var)
//   z_pk = gamma_k (x_pk - mu_k) / s_k + beta_k + alpha_k (mu_k - m) / v
// with eps = 1e-5 in both standard deviations, as NCSN's ConditionalInstanceNorm2dPlus; the alpha term
// gives back the channel means that instance normalisation removes (the colour shifts of NCSN's samples).
// This is the paper's formula; NCSN's code computes gamma (xhat + alpha mhat) + beta, i.e. its alpha is
// the paper's alpha / gamma: the same family of functions, a different parametrisation. C >= 2 channels
// (v has C - 1 in its denominator).
//
// The conditioning reaches every sample through a features input f (n x F; nn/image/network.hpp's
// conditioned_layer()): (gamma, beta, alpha)_i = f_i W (+ an unconditioned offset when options.offset),
// W an F x 3C matrix. With f the one-hot of the noise level's index (ImageScoreModel's level-index mode)
// row l of W is level l's (gamma, beta, alpha): exactly NCSN's per-level tables (its nn.Embedding).
// With Fourier features of sigma it is a continuous conditioning (FiLM-like); use the offset there.
// Initialisation (nn/init.hpp through the segment kinds): without the offset, W's gamma and alpha columns
// are `scale` (one) and its beta columns `bias` (zero), so with one-hot features every level starts at
// gamma = alpha = 1, beta = 0 (NCSN draws gamma and alpha from N(1, 0.02^2); no jitter here). With the
// offset, the offsets are (one, zero, one) and all of W starts at zero (`bias`), so the same start holds
// for any features and the conditioning is learned from there. F = 0 with the offset is the unconditional
// InstanceNorm++ (NCSNv2's InstanceNorm2dPlus): InstanceNormPlus below.
//
// Parameters: W_gamma, W_beta, W_alpha, each F x C row-major (row j: feature j's weights to the C
// channels), then, with the offset, gamma0, beta0, alpha0 (C each).
// Kernels (all reductions in a fixed order, no atomics, so the same bits for any thread count):
// moments one work item per (image, channel), two passes over the pixels; the per-image statistics and
// the coefficients one work item per image or per (image, coefficient); the elementwise passes one per
// pixel, the channels a vector loop; the parameter gradient one work item per parameter, summing the
// images in order. Backward recomputes the statistics (nothing is kept between calls).
#pragma once

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

struct InstanceNormPlusOptions {
  double eps = 1e-5;  ///< added to both variances (NCSN's value)
  /// An unconditioned (gamma0, beta0, alpha0) added to f W, initialised (1, 0, 1), with W starting at zero:
  /// for continuous features. Without it (default) W alone, its gamma and alpha columns starting at one:
  /// for one-hot features (NCSN's tables).
  bool offset = false;
};

/// CIN++ (see the top of this file): a conditioned layer, whose forward and backward also take the
/// per-sample features f (n x feature_size()) and whose backward also gives their adjoint.
class ConditionalInstanceNormPlus {
 public:
  /// backward() takes an empty gradient and then skips the parameter gradient (tensor.hpp).
  static constexpr bool optional_gradient = true;

  ConditionalInstanceNormPlus(int channels, int features, InstanceNormPlusOptions options = {})
      : c_(channels), f_(features), o_(options) {
    const char* where = "scorekit::nn::image::ConditionalInstanceNormPlus";
    if (channels < 2)
      throw invalid_argument(scorekit::detail::concat(
          where, ": ", channels,
          " channels; CIN++ needs at least 2 (the spread of the channel means has C - 1 "
          "in its denominator)"));
    if (features < 0 || (features == 0 && !options.offset))
      throw invalid_argument(scorekit::detail::concat(
          where, ": ", features, " features; give at least one, or none with the offset (InstanceNorm++)"));
    if (!(options.eps > 0) || !std::isfinite(options.eps))
      throw invalid_argument(
          scorekit::detail::concat(where, ": eps (", options.eps, ") must be positive and finite"));
    if ((std::int64_t(features) + 1) * 3 * channels > 2147483647 / 2)
      throw invalid_argument(scorekit::detail::concat(where, ": ", features, " features x ", channels,
                                                      " channels: too many parameters"));
  }

  int channels() const { return c_; }
  /// F, the features each sample brings (0: unconditional).
  int feature_size() const { return f_; }
  const InstanceNormPlusOptions& options() const { return o_; }

  std::string name() const {
    if (f_ == 0) return scorekit::detail::concat("InstanceNorm++(", c_, " channels)");
    return scorekit::detail::concat("CIN++(", c_, " channels, ", f_, " features",
                                    o_.offset ? " + offset" : "", ")");
  }

  ImageShape output_shape(const ImageShape& in) const {
    detail::require_valid_shape(in, name(), "input");
    if (in.c != c_)
      throw dimension_mismatch(scorekit::detail::concat(name(), ": the input has ", in.c, " channels (shape ",
                                                        to_string(in), "), the layer takes ", c_));
    return in;
  }

  int n_params() const { return 3 * f_ * c_ + (o_.offset ? 3 * c_ : 0); }

  std::vector<Segment> segments(int offset) const {
    std::vector<Segment> s;
    const int block = f_ * c_;
    if (f_ > 0) {
      // With the offset W starts at zero; without it gamma and alpha start at one (see the top).
      const ParameterKind ga = o_.offset ? ParameterKind::bias : ParameterKind::scale;
      s.push_back(Segment{ga, offset, block, f_, c_});
      s.push_back(Segment{ParameterKind::bias, offset + block, block, f_, c_});
      s.push_back(Segment{ga, offset + 2 * block, block, f_, c_});
    }
    if (o_.offset) {
      const int at = offset + 3 * block;
      s.push_back(Segment{ParameterKind::scale, at, c_, c_, c_});
      s.push_back(Segment{ParameterKind::bias, at + c_, c_, c_, c_});
      s.push_back(Segment{ParameterKind::scale, at + 2 * c_, c_, c_, c_});
    }
    return s;
  }

  /// As benchmarks/torch_image.py's CondInstanceNormPP: "<prefix>embed.weight" (F, 3 C), row j feature
  /// j's (gamma, beta, alpha) (an nn.Embedding over the levels with one-hot features), stored here as the
  /// three F x C blocks; with the offset also "<prefix>gamma", "<prefix>beta" and "<prefix>alpha" (C each:
  /// NCSNv2's InstanceNorm2dPlus names them so).
  std::vector<ParameterTensor> tensors(int offset, const std::string& prefix) const {
    std::vector<ParameterTensor> t;
    if (f_ > 0)
      t.push_back(ParameterTensor{prefix + "embed.weight", offset, {f_, 3 * c_}, {1, 0, 2}, {f_, 3, c_}});
    if (o_.offset) {
      const int at = offset + 3 * f_ * c_;
      t.push_back(ParameterTensor{prefix + "gamma", at, {c_}});
      t.push_back(ParameterTensor{prefix + "beta", at + c_, {c_}});
      t.push_back(ParameterTensor{prefix + "alpha", at + 2 * c_, {c_}});
    }
    return t;
  }

  /// Per image: mean, 1 / s, (gamma, beta, alpha), the normalised channel means, the (gamma / s, beta +
  /// alpha mhat) of the elementwise pass, the three coefficient adjoints, the adjoint of the means, and
  /// 1 / v: 12 C + 1 scalars.
  std::size_t workspace_size(const ImageShape& in) const {
    output_shape(in);
    return std::size_t(in.n) * (std::size_t(12) * std::size_t(c_) + 1);
  }

  template <class Exec, class P, class X, class Fe, class Y, class Work>
  void forward(const Exec& exec, const P& params, const X& x, const ImageShape& in, const Fe& features,
               const Y& y, const Work& work) const {
    const std::string where = name() + " forward";
    check(params, x, in, features, work, where);
    detail::require_tensor(y, in, where, "the output");
    ScopedRegion region("scorekit::nn::image::ConditionalInstanceNormPlus::forward");
    statistics(exec, params, x, in, features, work);
    normalise(exec, x, in, y, work);
  }

  /// grad += (dz/dparams)^T dy; dx (when not empty) = (dz/dx)^T dy; dfeatures (when not empty) =
  /// (dz/df)^T dy, overwritten as dx is.
  template <class Exec, class P, class X, class Fe, class DY, class Gr, class DX, class DF, class Work>
  void backward(const Exec& exec, const P& params, const X& x, const ImageShape& in, const Fe& features,
                const DY& dy, const Gr& grad, const DX& dx, const DF& dfeatures, const Work& work) const {
    const std::string where = name() + " backward";
    check(params, x, in, features, work, where);
    const bool want_grad = detail::require_optional_gradient(grad, n_params(), where);
    detail::require_tensor(dy, in, where, "the output adjoint");
    const bool want_dx = dx.extent(0) != 0, want_df = dfeatures.extent(0) != 0;
    if (want_dx) detail::require_tensor(dx, in, where, "the input adjoint");
    if (want_df) {
      if (f_ == 0)
        throw invalid_argument(where + ": a features adjoint was given but the layer takes no features");
      detail::require_tensor(dfeatures, ImageShape{in.n, 1, 1, f_}, where, "the features adjoint");
    }
    ScopedRegion region("scorekit::nn::image::ConditionalInstanceNormPlus::backward");
    statistics(exec, params, x, in, features, work);
    coefficient_adjoints(exec, x, in, dy, work);
    if (want_grad) parameter_gradient(exec, in, features, grad, work);
    if (want_df) features_adjoint(exec, params, in, dfeatures, work);
    if (want_dx) input_adjoint(exec, x, in, dy, dx, work);
  }

  // The kernels below are public only because nvcc rejects device lambdas in private members. Workspace
  // layout (n images, C channels): mean [0, nC), rstd [nC, 2nC), coef [2nC, 5nC) (per image gamma, beta,
  // alpha), mhat [5nC, 6nC), scale [6nC, 7nC), shift [7nC, 8nC), d [8nC, 11nC) (per image the adjoints
  // of gamma, beta, alpha), dmu [11nC, 12nC), rv [12nC, 12nC + n).

  /// Every workspace entry up to shift (mean, rstd, coef, mhat, scale, shift) and rv.
  template <class Exec, class P, class X, class Fe, class Work>
  void statistics(const Exec& exec, const P& params, const X& x, const ImageShape& in, const Fe& features,
                  const Work& work) const {
    using Real = typename Work::non_const_value_type;
    const int C = c_, F = f_, n = in.n;
    const bool offset = o_.offset;
    const std::int64_t hw = std::int64_t(in.h) * in.w, nC = std::int64_t(n) * C;
    const Real eps = Real(o_.eps), inv_p = Real(1) / Real(hw);
    Real* const ws = work.data();
    const auto* const xp = x.data();
    const auto* const pp = params.data();
    const auto* const fp = F > 0 ? features.data() : nullptr;
    // The moments of every (image, channel): two passes (mean, then the mean square deviation).
    Kokkos::parallel_for(
        "scorekit::nn::image::ConditionalInstanceNormPlus::moments",
        Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, nC),
        KOKKOS_LAMBDA(const std::int64_t ik) {
          const std::int64_t img = ik / C;
          const int k = int(ik % C);
          const auto* col = xp + img * hw * C + k;
          Real s = 0;
          for (std::int64_t q = 0; q < hw; ++q) s += col[q * C];
          const Real mu = s * inv_p;
          Real v = 0;
          for (std::int64_t q = 0; q < hw; ++q) {
            const Real d = col[q * C] - mu;
            v += d * d;
          }
          ws[ik] = mu;
          ws[nC + ik] = Real(1) / math::sqrt(v * inv_p + eps);
        });
    // (gamma, beta, alpha) of every image: coefficient e = b C + k is offset_e + sum_j f_ij W_b(j, k).
    const std::int64_t block = std::int64_t(F) * C;
    Kokkos::parallel_for(
        "scorekit::nn::image::ConditionalInstanceNormPlus::coefficients",
        Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, 3 * nC),
        KOKKOS_LAMBDA(const std::int64_t ie) {
          const std::int64_t img = ie / (3 * C);
          const int e = int(ie % (3 * C)), b = e / C, k = e % C;
          Real s = offset ? Real(pp[3 * block + e]) : Real(0);
          const auto* w = pp + b * block + k;
          const auto* f = fp + img * F;
          for (int j = 0; j < F; ++j) s += f[j] * w[std::int64_t(j) * C];
          ws[2 * nC + ie] = s;
        });
    // Per image: the spread of its channel means, their normalised values and the elementwise pass's
    // per-channel factors.
    Kokkos::parallel_for(
        "scorekit::nn::image::ConditionalInstanceNormPlus::channel_means",
        Kokkos::RangePolicy<Exec>(exec, 0, n), KOKKOS_LAMBDA(const int img) {
          const Real* mu = ws + std::int64_t(img) * C;
          const Real* rstd = ws + nC + std::int64_t(img) * C;
          const Real* coef = ws + 2 * nC + std::int64_t(img) * 3 * C;
          Real* mhat = ws + 5 * nC + std::int64_t(img) * C;
          Real* scale = ws + 6 * nC + std::int64_t(img) * C;
          Real* shift = ws + 7 * nC + std::int64_t(img) * C;
          Real m = 0;
          for (int k = 0; k < C; ++k) m += mu[k];
          m /= Real(C);
          Real v = 0;
          for (int k = 0; k < C; ++k) v += (mu[k] - m) * (mu[k] - m);
          const Real rv = Real(1) / math::sqrt(v / Real(C - 1) + eps);
          ws[12 * nC + img] = rv;
          for (int k = 0; k < C; ++k) {
            mhat[k] = (mu[k] - m) * rv;
            scale[k] = coef[k] * rstd[k];
            shift[k] = coef[C + k] + coef[2 * C + k] * mhat[k];
          }
        });
  }

  /// z = (x - mu) gamma / s + (beta + alpha mhat): one work item per pixel.
  template <class Exec, class X, class Y, class Work>
  void normalise(const Exec& exec, const X& x, const ImageShape& in, const Y& y, const Work& work) const {
    using Real = typename Y::non_const_value_type;
    const int C = c_;
    const std::int64_t hw = std::int64_t(in.h) * in.w, nC = std::int64_t(in.n) * C;
    const Real* const ws = work.data();
    const auto* const xp = x.data();
    Real* const yp = y.data();
    Kokkos::parallel_for(
        "scorekit::nn::image::ConditionalInstanceNormPlus::normalise",
        Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, in.rows()),
        KOKKOS_LAMBDA(const std::int64_t row) {
          const std::int64_t at = (row / hw) * C;
          const Real* mu = ws + at;
          const Real* scale = ws + 6 * nC + at;
          const Real* shift = ws + 7 * nC + at;
          const auto* xr = xp + row * C;
          Real* yr = yp + row * C;
          for (int k = 0; k < C; ++k) yr[k] = (xr[k] - mu[k]) * scale[k] + shift[k];
        });
  }

  /// d = the adjoints of (gamma, beta, alpha) per image, and dmu, the adjoint of the channel means through
  /// the alpha term (the instance-normalisation part is in input_adjoint).
  template <class Exec, class X, class DY, class Work>
  void coefficient_adjoints(const Exec& exec, const X& x, const ImageShape& in, const DY& dy,
                            const Work& work) const {
    using Real = typename Work::non_const_value_type;
    const int C = c_, n = in.n;
    const std::int64_t hw = std::int64_t(in.h) * in.w, nC = std::int64_t(n) * C;
    Real* const ws = work.data();
    const auto* const xp = x.data();
    const auto* const dyp = dy.data();
    // dgamma_k = sum_p dz_pk xhat_pk, dbeta_k = sum_p dz_pk, dalpha_k = dbeta_k mhat_k.
    Kokkos::parallel_for(
        "scorekit::nn::image::ConditionalInstanceNormPlus::pixel_sums",
        Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, nC),
        KOKKOS_LAMBDA(const std::int64_t ik) {
          const std::int64_t img = ik / C;
          const int k = int(ik % C);
          const auto* xc = xp + img * hw * C + k;
          const auto* dc = dyp + img * hw * C + k;
          const Real mu = ws[ik], r = ws[nC + ik];
          Real a = 0, b = 0;
          for (std::int64_t q = 0; q < hw; ++q) {
            const Real d = dc[q * C];
            a += d * ((xc[q * C] - mu) * r);
            b += d;
          }
          Real* d = ws + 8 * nC + img * 3 * C;
          d[k] = a;
          d[C + k] = b;
          d[2 * C + k] = b * ws[5 * nC + ik];
        });
    // Through mhat_k = (mu_k - m) / v, with u_k = alpha_k dbeta_k its adjoint:
    //   dmu_j = (u_j - mean_k u_k) / v - mhat_j / (v (C - 1)) sum_k u_k mhat_k.
    Kokkos::parallel_for(
        "scorekit::nn::image::ConditionalInstanceNormPlus::mean_adjoint",
        Kokkos::RangePolicy<Exec>(exec, 0, n), KOKKOS_LAMBDA(const int img) {
          const Real* alpha = ws + 2 * nC + std::int64_t(img) * 3 * C + 2 * C;
          const Real* db = ws + 8 * nC + std::int64_t(img) * 3 * C + C;
          const Real* mhat = ws + 5 * nC + std::int64_t(img) * C;
          Real* dmu = ws + 11 * nC + std::int64_t(img) * C;
          const Real rv = ws[12 * nC + img];
          Real ubar = 0, s = 0;
          for (int k = 0; k < C; ++k) {
            const Real u = alpha[k] * db[k];
            ubar += u;
            s += u * mhat[k];
          }
          ubar /= Real(C);
          s /= Real(C - 1);
          for (int k = 0; k < C; ++k) dmu[k] = rv * (alpha[k] * db[k] - ubar - mhat[k] * s);
        });
  }

  /// grad(W_b(j, k)) += sum_i f_ij d_i(b C + k); grad(offset_e) += sum_i d_ie. One work item per parameter.
  template <class Exec, class Fe, class Gr, class Work>
  void parameter_gradient(const Exec& exec, const ImageShape& in, const Fe& features, const Gr& grad,
                          const Work& work) const {
    using Real = typename Work::non_const_value_type;
    const int C = c_, F = f_, n = in.n;
    const std::int64_t nC = std::int64_t(n) * C, block = std::int64_t(F) * C;
    const Real* const d = work.data() + 8 * nC;
    const auto* const fp = F > 0 ? features.data() : nullptr;
    Real* const g = grad.data();
    Kokkos::parallel_for(
        "scorekit::nn::image::ConditionalInstanceNormPlus::parameter_gradient",
        Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, std::int64_t(n_params())),
        KOKKOS_LAMBDA(const std::int64_t e) {
          Real s = 0;
          if (e < 3 * block) {
            const int b = int(e / block), j = int((e / C) % F), k = int(e % C);
            for (int img = 0; img < n; ++img)
              s += fp[std::int64_t(img) * F + j] * d[std::int64_t(img) * 3 * C + b * C + k];
          } else {
            const std::int64_t at = e - 3 * block;
            for (int img = 0; img < n; ++img) s += d[std::int64_t(img) * 3 * C + at];
          }
          g[e] += s;
        });
  }

  /// dfeatures_ij = sum_b sum_k W_b(j, k) d_i(b C + k). One work item per (image, feature).
  template <class Exec, class P, class DF, class Work>
  void features_adjoint(const Exec& exec, const P& params, const ImageShape& in, const DF& dfeatures,
                        const Work& work) const {
    using Real = typename DF::non_const_value_type;
    const int C = c_, F = f_;
    const std::int64_t nC = std::int64_t(in.n) * C, block = std::int64_t(F) * C;
    const Real* const d = work.data() + 8 * nC;
    const auto* const pp = params.data();
    Real* const out = dfeatures.data();
    Kokkos::parallel_for(
        "scorekit::nn::image::ConditionalInstanceNormPlus::features_adjoint",
        Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, std::int64_t(in.n) * F),
        KOKKOS_LAMBDA(const std::int64_t ij) {
          const std::int64_t img = ij / F;
          const int j = int(ij % F);
          Real s = 0;
          for (int b = 0; b < 3; ++b) {
            const auto* w = pp + b * block + std::int64_t(j) * C;
            const Real* di = d + img * 3 * C + b * C;
            for (int k = 0; k < C; ++k) s += w[k] * di[k];
          }
          out[ij] = s;
        });
  }

  /// dx_pk = gamma_k / s_k (dz_pk - dbeta_k / P - xhat_pk dgamma_k / P) + dmu_k / P: one work item per pixel.
  template <class Exec, class X, class DY, class DX, class Work>
  void input_adjoint(const Exec& exec, const X& x, const ImageShape& in, const DY& dy, const DX& dx,
                     const Work& work) const {
    using Real = typename DX::non_const_value_type;
    const int C = c_;
    const std::int64_t hw = std::int64_t(in.h) * in.w, nC = std::int64_t(in.n) * C;
    const Real inv_p = Real(1) / Real(hw);
    const Real* const ws = work.data();
    const auto* const xp = x.data();
    const auto* const dyp = dy.data();
    Real* const dxp = dx.data();
    Kokkos::parallel_for(
        "scorekit::nn::image::ConditionalInstanceNormPlus::input_adjoint",
        Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, in.rows()),
        KOKKOS_LAMBDA(const std::int64_t row) {
          const std::int64_t img = row / hw, at = img * C;
          const Real* mu = ws + at;
          const Real* rstd = ws + nC + at;
          const Real* scale = ws + 6 * nC + at;
          const Real* d = ws + 8 * nC + img * 3 * C;
          const Real* dmu = ws + 11 * nC + at;
          const auto* xr = xp + row * C;
          const auto* dr = dyp + row * C;
          Real* out = dxp + row * C;
          for (int k = 0; k < C; ++k) {
            const Real xhat = (xr[k] - mu[k]) * rstd[k];
            out[k] = scale[k] * (dr[k] - (d[C + k] + xhat * d[k]) * inv_p) + dmu[k] * inv_p;
          }
        });
  }

 private:
  template <class P, class X, class Fe, class Work>
  void check(const P& params, const X& x, const ImageShape& in, const Fe& features, const Work& work,
             const std::string& where) const {
    output_shape(in);
    detail::require_parameters(params, n_params(), where, "the parameters");
    detail::require_tensor(x, in, where, "the input");
    if (f_ > 0) detail::require_tensor(features, ImageShape{in.n, 1, 1, f_}, where, "the features");
    detail::require_workspace(work, workspace_size(in), where);
  }

  int c_, f_;
  InstanceNormPlusOptions o_;
};

/// The unconditional InstanceNorm++ (NCSNv2's InstanceNorm2dPlus): CIN++ with no features and learned
/// per-channel (gamma, beta, alpha), initialised (1, 0, 1). An ordinary runtime layer (tensor.hpp).
class InstanceNormPlus {
 public:
  /// backward() takes an empty gradient and then skips the parameter gradient (tensor.hpp).
  static constexpr bool optional_gradient = true;

  explicit InstanceNormPlus(int channels, double eps = 1e-5) : impl_(channels, 0, options(eps)) {}

  int channels() const { return impl_.channels(); }
  std::string name() const { return impl_.name(); }
  ImageShape output_shape(const ImageShape& in) const { return impl_.output_shape(in); }
  int n_params() const { return impl_.n_params(); }
  std::vector<Segment> segments(int offset) const { return impl_.segments(offset); }
  std::vector<ParameterTensor> tensors(int offset, const std::string& prefix) const {
    return impl_.tensors(offset, prefix);
  }
  std::size_t workspace_size(const ImageShape& in) const { return impl_.workspace_size(in); }

  template <class Exec, class P, class X, class Y, class Work>
  void forward(const Exec& exec, const P& params, const X& x, const ImageShape& in, const Y& y,
               const Work& work) const {
    impl_.forward(exec, params, x, in, none<Y>(), y, work);
  }
  template <class Exec, class P, class X, class DY, class Gr, class DX, class Work>
  void backward(const Exec& exec, const P& params, const X& x, const ImageShape& in, const DY& dy,
                const Gr& grad, const DX& dx, const Work& work) const {
    impl_.backward(exec, params, x, in, none<DX>(), dy, grad, dx, none<DX>(), work);
  }

 private:
  static InstanceNormPlusOptions options(double eps) {
    InstanceNormPlusOptions o;
    o.eps = eps;
    o.offset = true;
    return o;
  }
  template <class V>
  static Tensor<typename V::non_const_value_type, typename V::memory_space> none() {
    return {};
  }
  ConditionalInstanceNormPlus impl_;
};

}  // namespace image
}  // namespace nn
}  // namespace scorekit
