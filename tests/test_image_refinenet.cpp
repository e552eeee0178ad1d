// scorekit-requires: SCOREKIT_HAVE_KOKKOS_KERNELS
// NCSN's layers and network on the runtime image path: CIN++ (nn/image/instance_norm_plus.hpp) against a
// long-double loop of its definition within a rounding bound, its parameter gradient, input adjoint and
// features adjoint against finite differences (testing::check_conditioned_image_layer, which is shown to
// catch a wrong features adjoint), InstanceNorm++ and the 5 x 5 mean filter likewise; refinenet_lite()
// (parameter count from its description, shapes, and every adjoint of a tiny one on 8 x 8 and 14 x 14
// images through the graph's conditioned nodes); ImageScoreModel's level-index conditioning (the one-hot
// features bitwise, and a sigma off the ladder named).
#include "backends.hpp"
#include "image_support.hpp"

#include <scorekit/core/error.hpp>
#include <scorekit/nn/image/instance_norm_plus.hpp>
#include <scorekit/nn/image/mean_filter.hpp>
#include <scorekit/nn/image/network.hpp>
#include <scorekit/nn/image/refinenet.hpp>
#include <scorekit/nn/init.hpp>
#include <scorekit/score/image_score.hpp>
#include <scorekit/testing/image_layer_checks.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

using scorekit_test::Backends;
using namespace scorekit::nn::image;

/// A tensor of shape s in Exec's memory from `host` (row-major NHWC).
template <class Real, class Mem>
Tensor<Real, Mem> upload(const std::vector<Real>& host, std::int64_t rows, std::int64_t cols) {
  Tensor<Real, Mem> t("t", std::size_t(rows), std::size_t(cols));
  auto h = Kokkos::create_mirror_view(t);
  for (std::int64_t e = 0; e < rows * cols; ++e) h(e / cols, e % cols) = host[std::size_t(e)];
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

/// CIN++ by its definition in long double, and a bound on the error of a computation in precision u
/// (unit roundoff) that follows the layer's order of operations. Per (image i, channel k), P pixels, C
/// channels, F features, to first order in u, with A_k = mean_p |x_pk|:
///   |d mu_k|   <= (P + 1) u A_k                       (a sum of P terms, then a division)
///   |d r_k|/r_k <= (P + 8) u                          (P squares summed, sqrt, reciprocal; the shift of mu
///                                                       enters the variance at second order only)
///   |d xhat|   <= r |d mu_k| + |xhat| (P + 10) u
///   |d m|      <= (C + 1) u mean_k |mu_k| + max_k |d mu_k|
///   |d mhat_k| <= rv (|d mu_k| + |d m| + u |mu_k - m|) + |mhat_k| (C + 10) u
///   |d c_e|    <= (F + 2) u (|offset_e| + sum_j |f_j W(j, e)|)   for c = gamma, beta, alpha
///   |d z|      <= |gamma| |d xhat| + |xhat| |d gamma| + |d beta| + |alpha| |d mhat| + |mhat| |d alpha|
///                 + 4 u (|gamma xhat| + |beta| + |alpha mhat|)
template <class Real>
void cin_reference(const std::vector<Real>& x, const ImageShape& in, const std::vector<Real>& f, int F,
                   const std::vector<Real>& p, bool offset, std::vector<long double>& z,
                   std::vector<long double>& bound) {
  const int C = in.c, P = in.h * in.w;
  const long double eps = 1e-5L, u = std::numeric_limits<Real>::epsilon() / 2.0L;
  z.assign(std::size_t(in.size()), 0);
  bound.assign(std::size_t(in.size()), 0);
  for (int i = 0; i < in.n; ++i) {
    std::vector<long double> mu(static_cast<std::size_t>(C)), r(mu), A(mu), dmu(mu);
    auto X = [&](int q, int k) { return (long double)x[std::size_t((std::int64_t(i) * P + q) * C + k)]; };
    for (int k = 0; k < C; ++k) {
      long double s = 0, a = 0, v = 0;
      for (int q = 0; q < P; ++q) s += X(q, k), a += std::fabs(X(q, k));
      mu[std::size_t(k)] = s / P;
      A[std::size_t(k)] = a / P;
      for (int q = 0; q < P; ++q) v += (X(q, k) - mu[std::size_t(k)]) * (X(q, k) - mu[std::size_t(k)]);
      r[std::size_t(k)] = 1 / std::sqrt(v / P + eps);
      dmu[std::size_t(k)] = (P + 1) * u * A[std::size_t(k)];
    }
    long double m = 0, mabs = 0, v = 0, dmu_max = 0;
    for (int k = 0; k < C; ++k) m += mu[std::size_t(k)], mabs += std::fabs(mu[std::size_t(k)]);
    m /= C;
    mabs /= C;
    for (int k = 0; k < C; ++k) v += (mu[std::size_t(k)] - m) * (mu[std::size_t(k)] - m);
    for (int k = 0; k < C; ++k) dmu_max = std::max(dmu_max, dmu[std::size_t(k)]);
    const long double rv = 1 / std::sqrt(v / (C - 1) + eps);
    const long double dm = (C + 1) * u * mabs + dmu_max;
    for (int k = 0; k < C; ++k) {
      long double c[3], dc[3];
      for (int b = 0; b < 3; ++b) {
        long double s = offset ? (long double)p[std::size_t(3 * F * C + b * C + k)] : 0, a = std::fabs(s);
        for (int j = 0; j < F; ++j) {
          const long double t =
              (long double)f[std::size_t(i * F + j)] * p[std::size_t(b * F * C + j * C + k)];
          s += t;
          a += std::fabs(t);
        }
        c[b] = s;
        dc[b] = (F + 2) * u * a;
      }
      const long double mhat = (mu[std::size_t(k)] - m) * rv;
      const long double dmhat = rv * (dmu[std::size_t(k)] + dm + u * std::fabs(mu[std::size_t(k)] - m)) +
                                std::fabs(mhat) * (C + 10) * u;
      for (int q = 0; q < P; ++q) {
        const long double xhat = (X(q, k) - mu[std::size_t(k)]) * r[std::size_t(k)];
        const long double dxhat = r[std::size_t(k)] * dmu[std::size_t(k)] + std::fabs(xhat) * (P + 10) * u;
        const std::size_t e = std::size_t((std::int64_t(i) * P + q) * C + k);
        z[e] = c[0] * xhat + c[1] + c[2] * mhat;
        bound[e] = std::fabs(c[0]) * dxhat + std::fabs(xhat) * dc[0] + dc[1] + std::fabs(c[2]) * dmhat +
                   std::fabs(mhat) * dc[2] +
                   4 * u * (std::fabs(c[0] * xhat) + std::fabs(c[1]) + std::fabs(c[2] * mhat));
      }
    }
  }
}

/// Forward of CIN++ in precision Real against cin_reference: the worst error / bound.
template <class Real, class Exec>
double cin_worst_ratio(const ImageShape& in, int F, bool offset, bool one_hot, std::uint64_t seed) {
  using Mem = typename Exec::memory_space;
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> U(-1, 1);
  const int C = in.c;
  InstanceNormPlusOptions o;
  o.offset = offset;
  const ConditionalInstanceNormPlus layer(C, F, o);
  // Channels with different means and spreads, so the alpha term and the normalisation both matter.
  std::vector<Real> x(std::size_t(in.size())), f(std::size_t(in.n * F)), p(std::size_t(layer.n_params()));
  for (std::int64_t e = 0; e < in.size(); ++e) {
    const int k = int(e % C);
    x[std::size_t(e)] = Real(0.5 * k - 1 + (1 + 0.5 * k) * U(gen));
  }
  for (int i = 0; i < in.n; ++i)
    for (int j = 0; j < F; ++j) f[std::size_t(i * F + j)] = one_hot ? Real(j == i % F) : Real(U(gen));
  for (auto& v : p) v = Real(1 + U(gen));
  const auto X = upload<Real, Mem>(x, in.rows(), C);
  const auto Fe = upload<Real, Mem>(f, in.n, F);
  const auto Pm = upload<Real, Mem>(p, 1, layer.n_params());
  const Kokkos::View<const Real*, Mem> params(Pm.data(), std::size_t(layer.n_params()));
  Tensor<Real, Mem> Y("y", std::size_t(in.rows()), std::size_t(C));
  Kokkos::View<Real*, Mem> work("work", layer.workspace_size(in));
  layer.forward(Exec(), params, X, in, Fe, Y, work);
  const auto y = to_host(Y);
  std::vector<long double> z, bound;
  cin_reference(x, in, f, F, p, offset, z, bound);
  double worst = 0;
  for (std::size_t e = 0; e < z.size(); ++e)
    worst = std::max(worst, double(std::fabs(y[e] - z[e]) / bound[e]));
  return worst;
}

/// CIN++ whose backward scales the features adjoint of one entry by 1.001: check_conditioned_image_layer
/// must notice.
struct WrongFeaturesAdjoint {
  ConditionalInstanceNormPlus inner;
  std::string name() const { return "WrongFeaturesAdjoint"; }
  int feature_size() const { return inner.feature_size(); }
  ImageShape output_shape(const ImageShape& in) const { return inner.output_shape(in); }
  int n_params() const { return inner.n_params(); }
  std::vector<scorekit::nn::Segment> segments(int offset) const { return inner.segments(offset); }
  std::size_t workspace_size(const ImageShape& in) const { return inner.workspace_size(in); }
  template <class Exec, class P, class X, class Fe, class Y, class W>
  void forward(const Exec& e, const P& p, const X& x, const ImageShape& in, const Fe& f, const Y& y,
               const W& w) const {
    inner.forward(e, p, x, in, f, y, w);
  }
  template <class Exec, class P, class X, class Fe, class DY, class G, class DX, class DF, class W>
  void backward(const Exec& e, const P& p, const X& x, const ImageShape& in, const Fe& f, const DY& dy,
                const G& g, const DX& dx, const DF& df, const W& w) const {
    inner.backward(e, p, x, in, f, dy, g, dx, df, w);
    if (df.extent(0) == 0) return;
    auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), df);
    h(1, 1) *= 1.001;
    Kokkos::deep_copy(df, h);
  }
};

/// A whole Network as a conditioned layer of (params, x, features): check_conditioned_image_layer then
/// checks its parameter gradient, input adjoint and features adjoint.
template <class Exec>
struct NetworkAsConditionedLayer {
  std::shared_ptr<Network<double, Exec>> net;
  std::string name() const { return "network"; }
  int feature_size() const { return net->feature_size(); }
  ImageShape output_shape(const ImageShape& in) const { return net->output_shape(in); }
  int n_params() const { return net->n_params(); }
  std::vector<scorekit::nn::Segment> segments(int offset) const {
    auto s = net->segments();
    for (auto& g : s) g.offset += offset;
    return s;
  }
  std::size_t workspace_size(const ImageShape&) const { return 0; }
  template <class P, class X, class Fe, class Y, class W>
  void forward(const Exec& exec, const P& p, const X& x, const ImageShape& in, const Fe& f, const Y& y,
               const W&) const {
    net->forward(exec, p, x, in, f, y);
  }
  template <class P, class X, class Fe, class DY, class G, class DX, class DF, class W>
  void backward(const Exec& exec, const P& p, const X& x, const ImageShape& in, const Fe& f, const DY& dy,
                const G& g, const DX& dx, const DF& df, const W&) const {
    const Tensor<double, typename Exec::memory_space> y("y", dy.extent(0), dy.extent(1));
    net->forward(exec, p, x, in, f, y);
    net->backward(exec, p, dy, g, dx, df);
  }
};

RefineNetSettings tiny(RefineNetConditioning conditioning) {
  RefineNetSettings s;
  s.in_channels = 1;
  s.channels = {3, 4, 4};
  s.conditioning = conditioning;
  s.features = 3;
  return s;
}

/// The parameter count of refinenet_lite(), written from its description at the top of refinenet.hpp.
std::int64_t refinenet_parameters(const RefineNetSettings& s) {
  const int F = s.features;
  auto conv = [](std::int64_t ci, std::int64_t co, int k, bool bias) {
    return k * k * ci * co + (bias ? co : 0);
  };
  auto norm = [&](std::int64_t c) {
    switch (s.conditioning) {
      case RefineNetConditioning::level_index:
        return 3 * F * c;
      case RefineNetConditioning::fourier:
        return 3 * F * c + 3 * c;
      case RefineNetConditioning::none:
        break;
    }
    return 3 * c;
  };
  auto rcu = [&](std::int64_t c) { return s.rcu_blocks * 2 * (norm(c) + conv(c, c, 3, false)); };
  const auto& ch = s.channels;
  const int L = int(ch.size());
  std::int64_t n = conv(s.in_channels, ch[0], 3, true);
  int c = ch[0];
  for (int l = 0; l < L; ++l)
    for (int b = 0; b < s.residual_blocks; ++b) {
      const bool down = l == 1 && b == 0;
      const int co = ch[std::size_t(l)], mid = down ? c : co;
      n += norm(c) + conv(c, mid, 3, true) + norm(mid) + conv(mid, co, 3, true);
      if (down || c != co) n += conv(c, co, 1, true);
      c = co;
    }
  int c_above = 0;
  for (int l = L - 1; l >= 0; --l) {
    const int cl = ch[std::size_t(l)], feat = ch[std::size_t(std::max(l - 1, 0))];
    n += rcu(cl);
    if (l < L - 1) n += rcu(c_above);
    if (l < L - 1 || cl != feat) {
      n += norm(cl) + conv(cl, feat, 3, true);
      if (l < L - 1) n += norm(c_above) + conv(c_above, feat, 3, true);
    }
    n += s.crp_stages * (norm(feat) + conv(feat, feat, 3, false)) + rcu(feat);
    c_above = feat;
  }
  return n + norm(c_above) + conv(c_above, s.in_channels, 3, true);
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("CIN++ equals its definition (long double) within a rounding bound",
                        "[image][refinenet]", Backends) {
  using Exec = TestType;
  // One-hot features (NCSN's tables), continuous features with the offset, the unconditional form.
  const ImageShape a{3, 5, 4, 6}, b{2, 8, 8, 3};
  const double r1 = cin_worst_ratio<double, Exec>(a, 3, false, true, 1);
  const double r2 = cin_worst_ratio<double, Exec>(a, 4, true, false, 2);
  const double r3 = cin_worst_ratio<float, Exec>(b, 2, false, false, 3);
  const double r4 = cin_worst_ratio<float, Exec>(b, 0, true, false, 4);
  INFO("worst error / bound: " << r1 << ", " << r2 << ", " << r3 << ", " << r4);
  CHECK(r1 <= 1);
  CHECK(r2 <= 1);
  CHECK(r3 <= 1);
  CHECK(r4 <= 1);
}

TEMPLATE_LIST_TEST_CASE("CIN++, InstanceNorm++ and the mean filter: adjoints match finite differences",
                        "[image][refinenet]", Backends) {
  using Exec = TestType;
  auto require = [](const scorekit::testing::NetworkCheckResult& r, const std::string& what) {
    INFO(what << ": " << r.n_checked << " checks, worst ratio " << r.worst_ratio << " at " << r.worst);
    CHECK(r.n_checked > 0);
    CHECK(r.passed);
  };
  InstanceNormPlusOptions with_offset;
  with_offset.offset = true;
  require(scorekit::testing::check_conditioned_image_layer(Exec(), ConditionalInstanceNormPlus(3, 2),
                                                           ImageShape{3, 4, 5, 3}),
          "CIN++");
  require(scorekit::testing::check_conditioned_image_layer(
              Exec(), ConditionalInstanceNormPlus(4, 3, with_offset), ImageShape{2, 3, 3, 4}),
          "CIN++ with offset");
  require(scorekit::testing::check_image_layer(Exec(), InstanceNormPlus(5), ImageShape{2, 4, 3, 5}),
          "InstanceNorm++");
  require(scorekit::testing::check_image_layer(Exec(), MeanFilter2d(5), ImageShape{2, 6, 4, 3}),
          "mean filter 5");
  require(scorekit::testing::check_image_layer(Exec(), MeanFilter2d(3), ImageShape{1, 3, 5, 2}),
          "mean filter 3");
}

TEST_CASE("check_conditioned_image_layer catches a wrong features adjoint", "[image][refinenet]") {
  const auto r = scorekit::testing::check_conditioned_image_layer(
      Kokkos::DefaultHostExecutionSpace(), WrongFeaturesAdjoint{ConditionalInstanceNormPlus(3, 2)},
      ImageShape{2, 3, 3, 3});
  CHECK_FALSE(r.passed);
  CHECK_THAT(r.worst, Catch::Contains("WrongFeaturesAdjoint features"));
}

TEST_CASE("CIN++ and refinenet_lite: bad arguments are named errors", "[image][refinenet]") {
  using Catch::Contains;
  using Exec = Kokkos::DefaultHostExecutionSpace;
  CHECK_THROWS_WITH(ConditionalInstanceNormPlus(1, 3), Contains("needs at least 2"));
  CHECK_THROWS_WITH(ConditionalInstanceNormPlus(4, 0), Contains("none with the offset"));
  CHECK_THROWS_WITH(MeanFilter2d(4), Contains("must be odd"));
  const ConditionalInstanceNormPlus cin(4, 3);
  CHECK_THROWS_WITH(cin.output_shape({2, 4, 4, 3}), Contains("the input has 3 channels"));
  Kokkos::View<double*, Kokkos::HostSpace> p("p", std::size_t(cin.n_params())),
      w("w", cin.workspace_size({2, 4, 4, 4}));
  Tensor<double, Kokkos::HostSpace> x("x", 32, 4), y("y", 32, 4), f("f", 2, 2);
  CHECK_THROWS_WITH(cin.forward(Exec(), p, x, {2, 4, 4, 4}, f, y, w),
                    Contains("the features is 2 x 2 but the shape 2 x 1 x 1 x 3 needs 2 x 3"));
  // A conditioned node whose features do not fit, named by the network.
  Network<double, Exec> net;
  const int in = net.image_input(4);
  const int fe = net.features_input(2);
  CHECK_THROWS_WITH(net.conditioned_layer(cin, in, in),
                    Contains("cannot be both the image and the features"));
  net.set_output(net.conditioned_layer(cin, in, fe));
  CHECK_THROWS_WITH(
      net.output_shape({2, 4, 4, 4}),
      Contains("(conditioned)): its features (node 1) are 2 x 1 x 1 x 2 but the layer takes 2 x 1 x 1 x 3"));
  RefineNetSettings bad;
  bad.channels = {32, 1};
  CHECK_THROWS_WITH((refinenet_lite<float, Exec>(bad)), Contains("level channels 1"));
  bad = RefineNetSettings();
  bad.features = 0;
  CHECK_THROWS_WITH((refinenet_lite<float, Exec>(bad)), Contains("features (0) must be positive"));
  CHECK_THROWS_WITH((refinenet_lite<float, Exec>(RefineNetSettings()).output_shape({1, 7, 7, 1})),
                    Contains("AvgPool2d(2): the input is 7 x 7 pixels"));
}

TEST_CASE("refinenet_lite: parameter count from its description, shapes", "[image][refinenet]") {
  using Exec = Kokkos::DefaultHostExecutionSpace;
  RefineNetSettings ncsn;  // the benchmark's network: 28 x 28, ngf 32, 10 levels
  const auto net = refinenet_lite<float, Exec>(ncsn);
  CHECK(net.n_params() == refinenet_parameters(ncsn));
  CHECK(net.feature_size() == 10);
  CHECK(net.output_shape({2, 28, 28, 1}) == ImageShape{2, 28, 28, 1});
  RefineNetSettings deep = tiny(RefineNetConditioning::fourier);
  deep.channels = {4, 6, 6, 8};
  deep.residual_blocks = 2;
  deep.rcu_blocks = 2;
  deep.crp_stages = 2;
  deep.in_channels = 3;
  const auto d = refinenet_lite<double, Exec>(deep);
  CHECK(d.n_params() == refinenet_parameters(deep));
  CHECK(d.output_shape({1, 14, 14, 3}) == ImageShape{1, 14, 14, 3});
  const auto none = refinenet_lite<double, Exec>(tiny(RefineNetConditioning::none));
  CHECK_FALSE(none.has_features());
  CHECK(none.n_params() == refinenet_parameters(tiny(RefineNetConditioning::none)));
}

TEMPLATE_LIST_TEST_CASE("refinenet_lite: every adjoint matches finite differences (8 x 8, 14 x 14)",
                        "[image][refinenet]", Backends) {
  using Exec = TestType;
  scorekit::testing::ImageLayerCheckOptions o;
  o.max_entries = 40;
  o.random_directions = 2;
  struct Case {
    RefineNetConditioning conditioning;
    ImageShape in;
  };
  for (const Case& k : {Case{RefineNetConditioning::level_index, {2, 8, 8, 1}},
                        Case{RefineNetConditioning::fourier, {1, 14, 14, 1}}}) {
    NetworkAsConditionedLayer<Exec> layer{
        std::make_shared<Network<double, Exec>>(refinenet_lite<double, Exec>(tiny(k.conditioning)))};
    const auto r = scorekit::testing::check_conditioned_image_layer(Exec(), layer, k.in, o);
    INFO(to_string(k.in) << ": " << r.n_checked << " checks, worst ratio " << r.worst_ratio << " at "
                         << r.worst);
    CHECK(r.passed);
  }
  scorekit_test::NetworkAsLayer<Exec> plain{
      std::make_shared<Network<double, Exec>>(
          refinenet_lite<double, Exec>(tiny(RefineNetConditioning::none))),
      Tensor<double, typename Exec::memory_space>()};
  const auto r = scorekit::testing::check_image_layer(Exec(), plain, ImageShape{2, 8, 8, 1}, o);
  INFO("unconditioned: " << r.n_checked << " checks, worst ratio " << r.worst_ratio << " at " << r.worst);
  CHECK(r.passed);
}

TEMPLATE_LIST_TEST_CASE("ImageScoreModel with the level index: the one-hot features, bitwise",
                        "[image][refinenet]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  auto net = std::make_shared<Network<float, Exec>>(
      refinenet_lite<float, Exec>(tiny(RefineNetConditioning::level_index)));
  Kokkos::View<float*, Mem> p("p", std::size_t(net->n_params()));
  const auto segments = net->segments();
  scorekit::nn::initialize(Exec(), p, segments.data(), int(segments.size()), scorekit::nn::Init::he_uniform,
                           3);
  scorekit::ImageScoreSettings s;
  s.height = s.width = 8;
  s.channels = 1;
  s.level_sigmas = {1.0, 0.5, 0.1};
  s.divide_by_sigma = false;  // NCSN
  const scorekit::ImageScoreModel<float, Exec> model(net, p, s);
  CHECK(model.settings().sigma_min == 0.1);
  CHECK(model.settings().sigma_max == 1.0);
  std::vector<float> xh(3 * 64);
  std::mt19937_64 gen(5);
  std::normal_distribution<float> z;
  for (auto& v : xh) v = z(gen);
  const auto x = upload<float, Mem>(xh, 3, 64);
  // Level 1 (0.5 within a relative 5e-6), 0 and 2.
  Kokkos::View<float*, Mem> sigma("sigma", 3);
  auto hs = Kokkos::create_mirror_view(sigma);
  hs(0) = float(0.5 * (1 + 5e-6));
  hs(1) = 1.0f;
  hs(2) = 0.1f;
  Kokkos::deep_copy(sigma, hs);
  scorekit::BatchView<float, Mem> out("out", 3, 64);
  model.score(Exec(), x, sigma, out);
  const std::vector<float> one_hot = {0, 1, 0, 1, 0, 0, 0, 0, 1};
  const auto f = upload<float, Mem>(one_hot, 3, 3);
  Tensor<float, Mem> y("y", 3 * 64, 1);
  net->forward(Exec(), p, Tensor<float, Mem>(x.data(), 3 * 64, 1), {3, 8, 8, 1}, f, y);
  const auto a = to_host(out), b = to_host(y);
  CHECK(a == b);
  // NCSNv2 with the level index: the same network output divided by sigma.
  auto v2 = s;
  v2.divide_by_sigma = true;
  scorekit::ImageScoreModel<float, Exec>(net, p, v2).score(Exec(), x, sigma, out);
  const auto c = to_host(out);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 64; ++j) CHECK(c[std::size_t(i * 64 + j)] == b[std::size_t(i * 64 + j)] / hs(i));
}

TEST_CASE("ImageScoreModel with the level index: a sigma off the ladder and bad ladders are named errors",
          "[image][refinenet]") {
  using Exec = Kokkos::DefaultHostExecutionSpace;
  using Mem = Exec::memory_space;
  using Catch::Contains;
  auto net = std::make_shared<Network<double, Exec>>(
      refinenet_lite<double, Exec>(tiny(RefineNetConditioning::level_index)));
  Kokkos::View<double*, Mem> p("p", std::size_t(net->n_params()));
  scorekit::ImageScoreSettings s;
  s.height = s.width = 8;
  s.channels = 1;
  s.level_sigmas = {1.0, 0.5, 0.125};
  const scorekit::ImageScoreModel<double, Exec> model(net, p, s);
  scorekit::BatchView<double, Mem> x("x", 3, 64), out("out", 3, 64);
  Kokkos::View<double*, Mem> sigma("sigma", 3);
  sigma(0) = 1;
  sigma(1) = 0.375;
  sigma(2) = 0.125 * (1 + 2e-5);
  CHECK_THROWS_WITH(
      model.score(Exec(), x, sigma, out),
      Contains(
          "sample 1 has noise level 0.375, which is not a level of the ladder (3 levels in [0.125, 1])"));
  sigma(1) = 0.5;
  CHECK_THROWS_WITH(model.score(Exec(), x, sigma, out), Contains("sample 2 has noise level 0.125"));
  sigma(2) = 0.125;
  model.score(Exec(), x, sigma, out);

  auto bad = s;
  bad.fourier_features = 4;
  CHECK_THROWS_WITH((scorekit::ImageScoreModel<double, Exec>(net, p, bad)),
                    Contains("both level_sigmas (3 levels) and fourier_features (4)"));
  bad = s;
  bad.level_sigmas = {1.0, 0.5, 0.1, 0.05};
  CHECK_THROWS_WITH((scorekit::ImageScoreModel<double, Exec>(net, p, bad)),
                    Contains("the one-hot of 4 levels, but the network's features input takes 3"));
  bad.level_sigmas = {1.0, 0.5, 0.5 * (1 + 1e-5)};
  CHECK_THROWS_WITH((scorekit::ImageScoreModel<double, Exec>(net, p, bad)),
                    Contains("within a relative 2e-5 of each other"));
  bad.level_sigmas = {1.0, -0.5, 0.1};
  CHECK_THROWS_WITH((scorekit::ImageScoreModel<double, Exec>(net, p, bad)), Contains("the level -0.5"));
}
