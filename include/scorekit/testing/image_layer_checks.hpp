// Conformance checks for a runtime image layer (nn/image/tensor.hpp states the concept), on any execution
// space: the layer's own parameter gradient and input adjoint against central finite differences of the
// loss L(params, x) = <c, layer(params, x)> for a random coefficient tensor c (so the exact gradient is
// what backward() returns for dy = c), with the Richardson-derived tolerance of
// testing/network_checks.hpp; and the contract's promises: backward() accumulates into the gradient,
// overwrites every entry of the input adjoint, gives the same gradient with the adjoint skipped, and (for a
// layer that declares optional_gradient) the same adjoints, bit for bit, with the gradient skipped.
// check_conditioned_image_layer does the same for a conditioned layer (one that also reads per-sample
// features, network.hpp's conditioned_layer(): CIN++), and checks its features adjoint as the input's.
// Runs in double. Users run it on their own layers.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/nn/image/tensor.hpp>
#include <scorekit/nn/segment.hpp>
#include <scorekit/testing/network_checks.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace scorekit {
namespace testing {

struct ImageLayerCheckOptions {
  std::uint64_t seed = 1;
  /// At most this many parameter entries and this many input entries are checked one by one (evenly
  /// spaced), besides random directions in each.
  int max_entries = 200;
  int random_directions = 3;
  double h = -1;  ///< finite-difference step; cbrt(eps) when not positive
  double roundoff_ulps = 64;
};

namespace detail {

/// The check of both functions below: `forward(P, X, Fe, Y)` and `backward(P, X, Fe, C, G, DX, DF)` call
/// the layer (Fe n x F features, DF their adjoint; F = 0 for a plain layer, which ignores both).
template <class Exec, class Layer, class Forward, class Backward>
NetworkCheckResult check_layer(const Exec& exec, const Layer& layer, const nn::image::ImageShape& in, int F,
                               const ImageLayerCheckOptions& options, const Forward& forward,
                               const Backward& backward) {
  using Mem = typename Exec::memory_space;
  using Real = double;
  using nn::image::ImageShape;
  const ImageShape out = layer.output_shape(in);
  const int np = layer.n_params();
  const ImageShape fshape{in.n, 1, 1, F};
  const double eps = std::numeric_limits<Real>::epsilon();
  const double h = options.h > 0 ? options.h : std::cbrt(eps);
  const double u = options.roundoff_ulps * eps;

  CounterRng<Real> rng(options.seed, 0, 0, RngStream::user);
  std::vector<Real> p(std::size_t(np), 0.0);
  for (const nn::Segment& g : layer.segments(0))
    for (int i = g.offset; i < g.offset + g.size; ++i) {
      switch (g.kind) {
        case nn::ParameterKind::weight:
          p[std::size_t(i)] = rng.normal() / std::sqrt(double(g.fan_in));
          break;
        case nn::ParameterKind::bias:
          p[std::size_t(i)] = 0.5 * rng.normal();
          break;
        case nn::ParameterKind::scale:
          p[std::size_t(i)] = 1 + 0.25 * rng.normal();
          break;
        case nn::ParameterKind::embedding:
          p[std::size_t(i)] = rng.uniform();
          break;
      }
    }
  std::vector<Real> x(std::size_t(in.size())), c(std::size_t(out.size())), fv(std::size_t(fshape.size()));
  for (auto& v : x) v = rng.normal();
  for (auto& v : c) v = rng.normal();
  for (auto& v : fv) v = rng.normal();

  Kokkos::View<Real*, Mem> P("check_image_layer::params", std::size_t(np)),
      G("check_image_layer::grad", std::size_t(np));
  nn::image::Tensor<Real, Mem> X("check_image_layer::x", std::size_t(in.rows()), std::size_t(in.c));
  nn::image::Tensor<Real, Mem> Y("check_image_layer::y", std::size_t(out.rows()), std::size_t(out.c));
  nn::image::Tensor<Real, Mem> C("check_image_layer::c", std::size_t(out.rows()), std::size_t(out.c));
  nn::image::Tensor<Real, Mem> DX("check_image_layer::dx", std::size_t(in.rows()), std::size_t(in.c));
  nn::image::Tensor<Real, Mem> FE("check_image_layer::features", std::size_t(F > 0 ? in.n : 0),
                                  std::size_t(F));
  nn::image::Tensor<Real, Mem> DF("check_image_layer::dfeatures", std::size_t(F > 0 ? in.n : 0),
                                  std::size_t(F));
  Kokkos::View<Real*, Mem> W("check_image_layer::work", std::max<std::size_t>(1, layer.workspace_size(in)));
  const auto hP = Kokkos::create_mirror_view(P);
  const auto hG = Kokkos::create_mirror_view(G);
  const auto hX = Kokkos::create_mirror_view(X);
  const auto hY = Kokkos::create_mirror_view(Y);
  const auto hDX = Kokkos::create_mirror_view(DX);
  const auto hFE = Kokkos::create_mirror_view(FE);
  const auto hDF = Kokkos::create_mirror_view(DF);
  auto upload = [&](const std::vector<Real>& pv, const std::vector<Real>& xv, const std::vector<Real>& f) {
    for (int i = 0; i < np; ++i) hP(i) = pv[std::size_t(i)];
    for (std::int64_t e = 0; e < in.size(); ++e) hX(e / in.c, e % in.c) = xv[std::size_t(e)];
    for (std::int64_t e = 0; e < fshape.size(); ++e) hFE(e / F, e % F) = f[std::size_t(e)];
    Kokkos::deep_copy(P, hP);
    Kokkos::deep_copy(X, hX);
    Kokkos::deep_copy(FE, hFE);
  };
  {
    const auto hC = Kokkos::create_mirror_view(C);
    for (std::int64_t e = 0; e < out.size(); ++e) hC(e / out.c, e % out.c) = c[std::size_t(e)];
    Kokkos::deep_copy(C, hC);
  }
  auto loss = [&](const std::vector<Real>& pv, const std::vector<Real>& xv, const std::vector<Real>& f) {
    upload(pv, xv, f);
    forward(P, X, FE, Y, W);
    exec.fence();
    Kokkos::deep_copy(hY, Y);
    double sum = 0;
    for (std::int64_t e = 0; e < out.size(); ++e) sum += c[std::size_t(e)] * hY(e / out.c, e % out.c);
    return sum;
  };

  NetworkCheckResult result;
  auto fail = [&](const std::string& what) {
    result.passed = false;
    result.worst_ratio = std::numeric_limits<double>::infinity();
    result.worst = what;
  };

  // The analytic gradient, with the adjoint prefilled by NaN: every entry must be overwritten.
  upload(p, x, fv);
  Kokkos::deep_copy(G, Real(0));
  Kokkos::deep_copy(DX, math::quiet_nan<Real>());
  Kokkos::deep_copy(DF, math::quiet_nan<Real>());
  backward(P, X, FE, C, G, DX, DF, W);
  exec.fence();
  Kokkos::deep_copy(hG, G);
  Kokkos::deep_copy(hDX, DX);
  Kokkos::deep_copy(hDF, DF);
  std::vector<Real> g(static_cast<std::size_t>(np)), dx(static_cast<std::size_t>(in.size())),
      df(std::size_t(fshape.size()));
  for (int i = 0; i < np; ++i) g[std::size_t(i)] = hG(i);
  for (std::int64_t e = 0; e < fshape.size(); ++e) {
    df[std::size_t(e)] = hDF(e / F, e % F);
    if (!std::isfinite(df[std::size_t(e)])) {
      fail(scorekit::detail::concat(layer.name(), ": backward left features adjoint entry ", e,
                                    " not finite (", df[std::size_t(e)], "); it must overwrite every entry"));
      return result;
    }
  }
  for (std::int64_t e = 0; e < in.size(); ++e) {
    dx[std::size_t(e)] = hDX(e / in.c, e % in.c);
    if (!std::isfinite(dx[std::size_t(e)])) {
      fail(scorekit::detail::concat(layer.name(), ": backward left input adjoint entry ", e, " not finite (",
                                    dx[std::size_t(e)], "); it must overwrite every entry"));
      return result;
    }
  }
  // Accumulation, and the same gradient with the adjoint skipped (into a gradient holding g already).
  double gmax = 0;
  for (double v : g) gmax = std::max(gmax, std::fabs(v));
  backward(P, X, FE, C, G, nn::image::Tensor<Real, Mem>(), nn::image::Tensor<Real, Mem>(), W);
  exec.fence();
  Kokkos::deep_copy(hG, G);
  for (int i = 0; i < np; ++i) {
    const double twice = hG(i), expected = 2 * g[std::size_t(i)];
    ++result.n_checked;
    if (!(std::fabs(twice - expected) <= u * (std::fabs(expected) + gmax)))
      fail(scorekit::detail::concat(
          layer.name(), ": a second backward (input adjoint skipped) made gradient entry ", i, " ", twice,
          ", expected twice the first, ", expected, ": backward must accumulate into the gradient"));
  }
  if (!result.passed) return result;
  if constexpr (nn::image::detail::has_optional_gradient<Layer>::value) {
    // The parameter gradient skipped (an empty gradient view): the same adjoints, bit for bit.
    Kokkos::deep_copy(DX, math::quiet_nan<Real>());
    Kokkos::deep_copy(DF, math::quiet_nan<Real>());
    backward(P, X, FE, C, Kokkos::View<Real*, Mem>(), DX, DF, W);
    exec.fence();
    Kokkos::deep_copy(hDX, DX);
    Kokkos::deep_copy(hDF, DF);
    for (std::int64_t e = 0; e < in.size() + fshape.size(); ++e) {
      const bool input = e < in.size();
      const std::int64_t k = input ? e : e - in.size();
      const double got = input ? hDX(k / in.c, k % in.c) : hDF(k / F, k % F);
      const double want = input ? dx[std::size_t(k)] : df[std::size_t(k)];
      ++result.n_checked;
      if (!(got == want)) {
        fail(scorekit::detail::concat(layer.name(),
                                      ": backward with the gradient skipped (optional_gradient) "
                                      "made ",
                                      input ? "input" : "features", " adjoint entry ", k, " ", got,
                                      ", with the gradient ", want, ": the adjoints must not depend on it"));
        return result;
      }
    }
  }

  // which: 0 parameters, 1 input, 2 features.
  const char* const what[] = {" parameter", " input", " features"};
  auto check_entries = [&](std::vector<Real>& v, const std::vector<Real>& analytic, int which) {
    const int n = int(v.size());
    if (n == 0) return;
    const int stride = std::max(1, (n + options.max_entries - 1) / options.max_entries);
    for (int i = 0; i < n; i += stride) {
      const double v0 = v[std::size_t(i)];
      auto f = [&](double t) {
        v[std::size_t(i)] = v0 + t;
        const double l = which == 0 ? loss(v, x, fv) : which == 1 ? loss(p, v, fv) : loss(p, x, v);
        v[std::size_t(i)] = v0;
        return l;
      };
      richardson_compare(f, analytic[std::size_t(i)], h, u,
                         scorekit::detail::concat(layer.name(), what[which], " ", i), result);
    }
    for (int d = 0; d < options.random_directions; ++d) {
      std::vector<Real> dir(v.size());
      double dot = 0;
      for (std::size_t i = 0; i < v.size(); ++i) {
        dir[i] = rng.normal();
        dot += dir[i] * analytic[i];
      }
      const std::vector<Real> v0 = v;
      auto f = [&](double t) {
        for (std::size_t i = 0; i < v.size(); ++i) v[i] = v0[i] + t * dir[i];
        const double l = which == 0 ? loss(v, x, fv) : which == 1 ? loss(p, v, fv) : loss(p, x, v);
        v = v0;
        return l;
      };
      richardson_compare(f, dot, h, u, scorekit::detail::concat(layer.name(), what[which], " direction ", d),
                         result);
    }
  };
  check_entries(p, g, 0);
  check_entries(x, dx, 1);
  check_entries(fv, df, 2);
  return result;
}

}  // namespace detail

/// Checks `layer` on a batch of shape `in`: parameters drawn per segment (weights N(0, 1 / fan_in), biases
/// N(0, 1/4), scales 1 + N(0, 1/16), embeddings U(0, 1)), inputs and coefficients standard normal.
template <class Exec, class Layer>
NetworkCheckResult check_image_layer(const Exec& exec, const Layer& layer, const nn::image::ImageShape& in,
                                     const ImageLayerCheckOptions& options = {}) {
  return detail::check_layer(
      exec, layer, in, 0, options,
      [&](const auto& P, const auto& X, const auto&, const auto& Y, const auto& W) {
        layer.forward(exec, P, X, in, Y, W);
      },
      [&](const auto& P, const auto& X, const auto&, const auto& C, const auto& G, const auto& DX,
          const auto&, const auto& W) { layer.backward(exec, P, X, in, C, G, DX, W); });
}

/// check_image_layer for a conditioned layer (network.hpp's conditioned_layer(); a member feature_size()
/// and the features in forward and backward): also the features adjoint against finite differences, with
/// features standard normal (n x feature_size()), and that backward overwrites every entry of it.
template <class Exec, class Layer>
NetworkCheckResult check_conditioned_image_layer(const Exec& exec, const Layer& layer,
                                                 const nn::image::ImageShape& in,
                                                 const ImageLayerCheckOptions& options = {}) {
  return detail::check_layer(
      exec, layer, in, layer.feature_size(), options,
      [&](const auto& P, const auto& X, const auto& Fe, const auto& Y, const auto& W) {
        layer.forward(exec, P, X, in, Fe, Y, W);
      },
      [&](const auto& P, const auto& X, const auto& Fe, const auto& C, const auto& G, const auto& DX,
          const auto& DF, const auto& W) { layer.backward(exec, P, X, in, Fe, C, G, DX, DF, W); });
}

}  // namespace testing
}  // namespace scorekit
