// Runtime image layers (nn/image/): each layer's parameter gradient and input adjoint against finite
// differences through testing::check_image_layer, on every backend; forward results against direct
// loops in long double (PyTorch's definitions: cross-correlation with zero padding, stride and dilation;
// GroupNorm with biased variance); the errors that bad shapes and arguments raise.
// scorekit-requires: SCOREKIT_HAVE_KOKKOS_KERNELS
#include "backends.hpp"

#include <scorekit/core/error.hpp>
#include <scorekit/nn/image/activation.hpp>
#include <scorekit/nn/image/conv2d.hpp>
#include <scorekit/nn/image/group_norm.hpp>
#include <scorekit/nn/image/resample.hpp>
#include <scorekit/nn/init.hpp>
#include <scorekit/testing/image_layer_checks.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

using scorekit_test::Backends;
using namespace scorekit::nn::image;

template <class Exec, class Layer>
void require_conformance(const Layer& layer, const ImageShape& in) {
  const auto r = scorekit::testing::check_image_layer(Exec(), layer, in);
  INFO(layer.name() << " on " << to_string(in) << ": " << r.n_checked << " checks, worst ratio "
                    << r.worst_ratio << " at " << r.worst);
  CHECK(r.n_checked > 0);
  CHECK(r.passed);
}

Conv2d conv(int ci, int co, int k, int stride, int pad, int dil, bool bias = true,
            std::int64_t max_patch = std::int64_t(1) << 23,
            scorekit::nn::image::PaddingMode mode = scorekit::nn::image::PaddingMode::zeros) {
  Conv2dOptions o;
  o.padding_mode = mode;
  o.stride = stride;
  o.padding = pad;
  o.dilation = dil;
  o.bias = bias;
  o.max_patch_scalars = max_patch;
  return Conv2d(ci, co, k, o);
}

/// A tensor of shape s in Exec's memory, uniform on [-1, 1), and the same values on the host.
template <class Real, class Exec>
Tensor<Real, typename Exec::memory_space> random_tensor(const ImageShape& s, std::mt19937_64& gen,
                                                        std::vector<Real>& host) {
  Tensor<Real, typename Exec::memory_space> t("t", std::size_t(s.rows()), std::size_t(s.c));
  auto h = Kokkos::create_mirror_view(t);
  std::uniform_real_distribution<Real> u(Real(-1), Real(1));
  host.resize(std::size_t(s.size()));
  for (std::int64_t e = 0; e < s.size(); ++e) host[std::size_t(e)] = h(e / s.c, e % s.c) = u(gen);
  Kokkos::deep_copy(t, h);
  return t;
}

template <class View>
std::vector<typename View::non_const_value_type> to_host(const View& v) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  std::vector<typename View::non_const_value_type> out;
  for (std::size_t i = 0; i < h.extent(0); ++i)
    for (std::size_t j = 0; j < h.extent(1); ++j) out.push_back(h(i, j));
  return out;
}

/// y = a x per channel (a: one parameter per channel), with a backward that is wrong in one chosen way,
/// to show check_image_layer catches each.
enum class Flaw { none, input_adjoint, parameter_gradient, overwrites_gradient, skips_adjoint_entries };

template <Flaw flaw>
struct ScaleLayer {
  int c;
  std::string name() const { return "ScaleLayer"; }
  ImageShape output_shape(const ImageShape& in) const { return in; }
  int n_params() const { return c; }
  std::vector<scorekit::nn::Segment> segments(int offset) const {
    return {scorekit::nn::Segment{scorekit::nn::ParameterKind::scale, offset, c, c, c}};
  }
  std::size_t workspace_size(const ImageShape&) const { return 0; }
  template <class Exec, class P, class X, class Y, class Work>
  void forward(const Exec&, const P& p, const X& x, const ImageShape& in, const Y& y, const Work&) const {
    auto hp = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), p);
    auto hx = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x);
    auto hy = Kokkos::create_mirror_view(y);
    for (std::int64_t r = 0; r < in.rows(); ++r)
      for (int j = 0; j < c; ++j) hy(r, j) = hp(j) * hx(r, j);
    Kokkos::deep_copy(y, hy);
  }
  template <class Exec, class P, class X, class DY, class G, class DX, class Work>
  void backward(const Exec&, const P& p, const X& x, const ImageShape& in, const DY& dy, const G& g,
                const DX& dx, const Work&) const {
    auto hp = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), p);
    auto hx = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x);
    auto hdy = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), dy);
    auto hg = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), g);
    for (int j = 0; j < c; ++j) {
      double sum = 0;
      for (std::int64_t r = 0; r < in.rows(); ++r) sum += hdy(r, j) * hx(r, j);
      if (flaw == Flaw::parameter_gradient && j == 1) sum *= 1.001;
      hg(j) = flaw == Flaw::overwrites_gradient ? sum : hg(j) + sum;
    }
    Kokkos::deep_copy(g, hg);
    if (dx.extent(0) == 0) return;
    auto hdx = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), dx);
    for (std::int64_t r = 0; r < in.rows(); ++r)
      for (int j = 0; j < c; ++j) {
        if (flaw == Flaw::skips_adjoint_entries && r == 3) continue;
        hdx(r, j) = hp(j) * hdy(r, j) * (flaw == Flaw::input_adjoint && r == 2 && j == 0 ? 1.001 : 1.0);
      }
    Kokkos::deep_copy(dx, hdx);
  }
};

template <Flaw flaw>
scorekit::testing::NetworkCheckResult check_scale_layer() {
  return scorekit::testing::check_image_layer(Kokkos::DefaultHostExecutionSpace(), ScaleLayer<flaw>{3},
                                              ImageShape{2, 2, 2, 3});
}

}  // namespace

TEST_CASE("check_image_layer catches each kind of wrong backward", "[image]") {
  const auto good = check_scale_layer<Flaw::none>();
  INFO(good.worst);
  CHECK(good.passed);
  const auto a = check_scale_layer<Flaw::input_adjoint>();
  CHECK_FALSE(a.passed);
  CHECK_THAT(a.worst, Catch::Contains("ScaleLayer input"));
  const auto b = check_scale_layer<Flaw::parameter_gradient>();
  CHECK_FALSE(b.passed);
  CHECK_THAT(b.worst, Catch::Contains("ScaleLayer parameter"));
  const auto c = check_scale_layer<Flaw::overwrites_gradient>();
  CHECK_FALSE(c.passed);
  CHECK_THAT(c.worst, Catch::Contains("backward must accumulate into the gradient"));
  const auto d = check_scale_layer<Flaw::skips_adjoint_entries>();
  CHECK_FALSE(d.passed);
  CHECK_THAT(d.worst, Catch::Contains("it must overwrite every entry"));
}

TEMPLATE_LIST_TEST_CASE("image layers: gradients and adjoints match finite differences", "[image]",
                        Backends) {
  using Exec = TestType;
  SECTION("Conv2d") {
    require_conformance<Exec>(conv(3, 4, 3, 1, 1, 1), ImageShape{2, 8, 8, 3});
    require_conformance<Exec>(conv(2, 3, 3, 2, 1, 1), ImageShape{2, 8, 7, 2});
    require_conformance<Exec>(conv(2, 3, 3, 1, 2, 2), ImageShape{1, 8, 8, 2});
    require_conformance<Exec>(conv(2, 3, 2, 2, 0, 1, false), ImageShape{2, 6, 6, 2});
    require_conformance<Exec>(pointwise_dense(5, 3), ImageShape{3, 4, 4, 5});
    require_conformance<Exec>(pointwise_dense(6, 4), ImageShape{5, 1, 1, 6});
    // Chunks of one image at a time (the patch matrix holds 64 x 27 scalars per image).
    require_conformance<Exec>(conv(3, 2, 3, 1, 1, 1, true, 64 * 27), ImageShape{3, 8, 8, 3});
    // Circular padding: the input adjoint as a circular convolution (stride 1, same size), by col2im
    // (stride 2; padding 1 with a 5-wide dilated span; a padding as wide as the image).
    constexpr auto circ = scorekit::nn::image::PaddingMode::circular;
    require_conformance<Exec>(conv(2, 3, 3, 1, 1, 1, true, 1 << 23, circ), ImageShape{2, 6, 5, 2});
    require_conformance<Exec>(conv(2, 3, 3, 2, 1, 1, true, 1 << 23, circ), ImageShape{2, 7, 6, 2});
    require_conformance<Exec>(conv(2, 2, 3, 1, 1, 2, false, 1 << 23, circ), ImageShape{2, 6, 6, 2});
    require_conformance<Exec>(conv(1, 2, 3, 1, 3, 1, true, 1 << 23, circ), ImageShape{2, 3, 4, 1});
  }
  SECTION("GroupNorm") {
    require_conformance<Exec>(GroupNorm(2, 4), ImageShape{2, 4, 4, 4});
    require_conformance<Exec>(GroupNorm(3, 3), ImageShape{2, 5, 3, 3});
    require_conformance<Exec>(GroupNorm(1, 4, 1e-5, false), ImageShape{2, 3, 3, 4});
  }
  SECTION("activations and resampling") {
    require_conformance<Exec>(Activation<scorekit::nn::Silu>(), ImageShape{2, 4, 4, 3});
    require_conformance<Exec>(Activation<scorekit::nn::Elu>(), ImageShape{2, 4, 4, 3});
    require_conformance<Exec>(AvgPool2d(2), ImageShape{2, 8, 6, 3});
    require_conformance<Exec>(Upsample2d(2), ImageShape{2, 3, 4, 3});
  }
}

TEMPLATE_LIST_TEST_CASE("Conv2d equals the direct sum of PyTorch's definition", "[image]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  using Real = float;
  std::mt19937_64 gen(7);
  struct Case {
    Conv2d layer;
    ImageShape in;
  };
  const std::vector<Case> cases = {
      {conv(3, 5, 3, 1, 1, 1), {3, 8, 8, 3}},
      {conv(4, 2, 3, 2, 1, 1), {2, 9, 8, 4}},
      {conv(2, 3, 3, 1, 2, 2), {2, 8, 8, 2}},
      {conv(3, 4, 5, 3, 0, 1, false), {2, 14, 14, 3}},
      {pointwise_dense(6, 7), {2, 3, 3, 6}},
      {conv(3, 5, 3, 1, 1, 1, true, 100 * 27), {5, 8, 8, 3}},
      {conv(3, 4, 3, 1, 1, 1, true, 1 << 23, scorekit::nn::image::PaddingMode::circular), {2, 6, 5, 3}},
      {conv(2, 3, 3, 2, 2, 2, false, 1 << 23, scorekit::nn::image::PaddingMode::circular), {2, 7, 8, 2}}};
  for (const Case& k : cases) {
    const Conv2d& L = k.layer;
    const ImageShape in = k.in, out = L.output_shape(in);
    std::vector<Real> hx, hp, hw_unused;
    const auto x = random_tensor<Real, Exec>(in, gen, hx);
    const auto pm = random_tensor<Real, Exec>(ImageShape{1, 1, 1, L.n_params()}, gen, hp);
    const Kokkos::View<Real*, Mem> params(pm.data(), std::size_t(L.n_params()));
    Tensor<Real, Mem> y("y", std::size_t(out.rows()), std::size_t(out.c));
    Kokkos::View<Real*, Mem> work("work", L.workspace_size(in));
    L.forward(Exec(), params, x, in, y, work);
    const auto hy = to_host(y);
    const int kk = L.kernel(), s = L.options().stride, pad = L.options().padding, dil = L.options().dilation;
    const bool circular = L.circular();  // PyTorch's "circular": the index taken modulo the extent
    const long double u = std::numeric_limits<Real>::epsilon() / 2.0L;
    const int terms = L.patch_size() + 1;
    double worst = 0;
    for (int n = 0; n < in.n; ++n)
      for (int oy = 0; oy < out.h; ++oy)
        for (int ox = 0; ox < out.w; ++ox)
          for (int co = 0; co < out.c; ++co) {
            long double sum = L.options().bias ? hp[std::size_t(L.patch_size() * out.c + co)] : 0,
                        mag = std::fabs(sum);
            for (int ky = 0; ky < kk; ++ky)
              for (int kx = 0; kx < kk; ++kx)
                for (int ci = 0; ci < in.c; ++ci) {
                  int iy = oy * s - pad + ky * dil, ix = ox * s - pad + kx * dil;
                  if (circular) iy = (iy % in.h + in.h) % in.h, ix = (ix % in.w + in.w) % in.w;
                  if (iy < 0 || iy >= in.h || ix < 0 || ix >= in.w) continue;
                  const long double t =
                      (long double)hx[std::size_t(((n * in.h + iy) * in.w + ix) * in.c + ci)] *
                      hp[std::size_t(((ky * kk + kx) * in.c + ci) * out.c + co)];
                  sum += t;
                  mag += std::fabs(t);
                }
            const long double got = hy[std::size_t(((n * out.h + oy) * out.w + ox) * out.c + co)];
            const long double bound = terms * u / (1 - terms * u) * mag;
            worst = std::max(worst, double(std::fabs(got - sum) / bound));
          }
    INFO(L.name() << " on " << to_string(in) << ": worst error / bound " << worst);
    CHECK(worst <= 1);
  }
}

TEMPLATE_LIST_TEST_CASE("GroupNorm equals its definition", "[image]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  using Real = double;
  std::mt19937_64 gen(11);
  const GroupNorm L(2, 6);
  const ImageShape in{3, 5, 4, 6};
  std::vector<Real> hx, hp;
  const auto x = random_tensor<Real, Exec>(in, gen, hx);
  const auto pm = random_tensor<Real, Exec>(ImageShape{1, 1, 1, L.n_params()}, gen, hp);
  const Kokkos::View<Real*, Mem> params(pm.data(), std::size_t(L.n_params()));
  Tensor<Real, Mem> y("y", std::size_t(in.rows()), std::size_t(in.c));
  Kokkos::View<Real*, Mem> work("work", L.workspace_size(in));
  L.forward(Exec(), params, x, in, y, work);
  const auto hy = to_host(y);
  const int hw = in.h * in.w, cg = 3;
  double worst = 0;
  for (int n = 0; n < in.n; ++n)
    for (int g = 0; g < 2; ++g) {
      long double mean = 0, var = 0;
      for (int q = 0; q < hw; ++q)
        for (int j = 0; j < cg; ++j) mean += hx[std::size_t((n * hw + q) * 6 + g * cg + j)];
      mean /= hw * cg;
      for (int q = 0; q < hw; ++q)
        for (int j = 0; j < cg; ++j) {
          const long double d = hx[std::size_t((n * hw + q) * 6 + g * cg + j)] - mean;
          var += d * d;
        }
      var /= hw * cg;
      for (int q = 0; q < hw; ++q)
        for (int j = 0; j < cg; ++j) {
          const int ch = g * cg + j;
          const long double expected =
              (hx[std::size_t((n * hw + q) * 6 + ch)] - mean) / std::sqrt(var + 1e-5L) * hp[std::size_t(ch)] +
              hp[std::size_t(6 + ch)];
          worst = std::max(worst, double(std::fabs(hy[std::size_t((n * hw + q) * 6 + ch)] - expected)));
        }
    }
  // Each output is a few dozen roundings of values of order one (the sums over the 60 values of a
  // group dominate): well under 1e-13.
  INFO("worst absolute error " << worst);
  CHECK(worst < 256 * 60 * std::numeric_limits<Real>::epsilon());
}

TEMPLATE_LIST_TEST_CASE("resampling layers equal their definitions", "[image]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  std::mt19937_64 gen(3);
  const ImageShape in{2, 4, 6, 3};
  std::vector<double> hx;
  const auto x = random_tensor<double, Exec>(in, gen, hx);
  const Kokkos::View<double*, Mem> none("none", 0);
  const AvgPool2d pool(2);
  const Upsample2d up(2);
  const ImageShape pooled = pool.output_shape(in), upsampled = up.output_shape(in);
  CHECK(pooled == ImageShape{2, 2, 3, 3});
  CHECK(upsampled == ImageShape{2, 8, 12, 3});
  Tensor<double, Mem> yp("yp", std::size_t(pooled.rows()), 3), yu("yu", std::size_t(upsampled.rows()), 3);
  pool.forward(Exec(), none, x, in, yp, none);
  up.forward(Exec(), none, x, in, yu, none);
  const auto hp = to_host(yp), hu = to_host(yu);
  auto at = [&](int n, int y, int xx, int c) { return hx[std::size_t(((n * 4 + y) * 6 + xx) * 3 + c)]; };
  for (int n = 0; n < 2; ++n)
    for (int c = 0; c < 3; ++c) {
      for (int y = 0; y < 2; ++y)
        for (int xx = 0; xx < 3; ++xx) {
          const double mean = (at(n, 2 * y, 2 * xx, c) + at(n, 2 * y, 2 * xx + 1, c) +
                               at(n, 2 * y + 1, 2 * xx, c) + at(n, 2 * y + 1, 2 * xx + 1, c)) /
                              4;
          CHECK(std::fabs(hp[std::size_t(((n * 2 + y) * 3 + xx) * 3 + c)] - mean) <= 4 * 1.2e-16);
        }
      for (int y = 0; y < 8; ++y)
        for (int xx = 0; xx < 12; ++xx)
          CHECK(hu[std::size_t(((n * 8 + y) * 12 + xx) * 3 + c)] == at(n, y / 2, xx / 2, c));
    }
}

TEST_CASE("image layers: bad shapes and arguments are named errors", "[image]") {
  using Mem = Kokkos::HostSpace;
  using Catch::Contains;
  using scorekit::dimension_mismatch;
  using scorekit::invalid_argument;
  const Conv2d c = conv(3, 4, 3, 1, 1, 1);
  CHECK_THROWS_AS(c.output_shape({2, 8, 8, 2}), dimension_mismatch);
  CHECK_THROWS_WITH(c.output_shape({2, 8, 8, 2}), Contains("the input has 2 channels"));
  CHECK_THROWS_WITH(c.output_shape({0, 8, 8, 3}), Contains("every extent") && Contains("0 x 8 x 8 x 3"));
  CHECK_THROWS_WITH(conv(3, 4, 5, 1, 0, 1).output_shape({1, 4, 4, 3}),
                    Contains("smaller than the kernel's span 5"));
  CHECK_THROWS_AS(Conv2d(0, 4, 3), invalid_argument);
  CHECK_THROWS_WITH(conv(3, 4, 3, 0, 1, 1), Contains("stride (0)"));
  CHECK_THROWS_WITH(conv(1, 1, 3, 1, 5, 1, true, 1 << 23, scorekit::nn::image::PaddingMode::circular)
                        .output_shape({1, 4, 6, 1}),
                    Contains("circular padding 5 is wider than the input, 4 x 6"));
  CHECK_THROWS_WITH(GroupNorm(4, 6), Contains("the groups must divide the channels"));
  CHECK_THROWS_WITH(GroupNorm(2, 6, 0.0), Contains("eps (0)"));
  CHECK_THROWS_WITH(AvgPool2d(2).output_shape({1, 5, 4, 1}), Contains("multiples of 2"));
  CHECK_THROWS_WITH(Upsample2d(0), Contains("factor (0)"));

  const ImageShape in{2, 8, 8, 3};
  Tensor<double, Mem> x("x", 128, 3), y("y", 128, 4), wrong("wrong", 127, 4);
  Kokkos::View<double*, Mem> p("p", std::size_t(c.n_params())), w("w", c.workspace_size(in));
  Kokkos::View<double*, Mem> short_p("p", std::size_t(c.n_params() - 1)),
      short_w("w", c.workspace_size(in) - 1);
  CHECK_THROWS_WITH(c.forward(Kokkos::DefaultHostExecutionSpace(), p, x, in, wrong, w),
                    Contains("the output is 127 x 4") && Contains("needs 128 x 4"));
  CHECK_THROWS_WITH(c.forward(Kokkos::DefaultHostExecutionSpace(), short_p, x, in, y, w),
                    Contains("the parameters: 111 scalars given, the layer has 112 parameters"));
  Kokkos::View<double*, Mem> short_fw("w", c.forward_workspace_size(in) - 1);
  CHECK_THROWS_WITH(c.forward(Kokkos::DefaultHostExecutionSpace(), p, x, in, y, short_fw),
                    Contains("the workspace holds"));
  CHECK_THROWS_WITH(c.backward(Kokkos::DefaultHostExecutionSpace(), p, x, in, y, p, x, short_w),
                    Contains("the workspace holds"));
  CHECK_THROWS_WITH(c.backward(Kokkos::DefaultHostExecutionSpace(), p, x, in, y, short_p, x, w),
                    Contains("the gradient: 111 scalars given"));
  CHECK_THROWS_WITH(c.backward(Kokkos::DefaultHostExecutionSpace(), p, x, in, y, p, y, w),
                    Contains("the input adjoint is 128 x 4"));
}

TEST_CASE("initialize gives a normalisation's scales one and its shifts zero", "[image]") {
  const GroupNorm norm(2, 4);
  const auto segments = norm.segments(3);
  REQUIRE(segments.size() == 2);
  CHECK(segments[0].kind == scorekit::nn::ParameterKind::scale);
  Kokkos::View<double*, Kokkos::HostSpace> p("p", 11);
  Kokkos::deep_copy(p, 7.0);
  scorekit::nn::initialize(p, segments.data(), int(segments.size()), scorekit::nn::Init::he_normal, 5);
  for (int i = 0; i < 11; ++i) CHECK(p(i) == (i < 3 ? 7.0 : i < 7 ? 1.0 : 0.0));
  CHECK(std::string(scorekit::nn::parameter_kind_name(scorekit::nn::ParameterKind::scale)) == "scale");
}
