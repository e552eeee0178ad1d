// nn/image/network.hpp: a graph of runtime layers with skip connections (sum, concat) and per-sample
// features added to every pixel. Its parameter gradient, input adjoint and features adjoint against
// finite differences (through testing::check_image_layer, and directly for the features), a node whose
// value feeds several consumers, and the errors of a malformed graph or batch.
// scorekit-requires: SCOREKIT_HAVE_KOKKOS_KERNELS
#include "backends.hpp"
#include "image_support.hpp"

#include <scorekit/core/error.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/nn/image/activation.hpp>
#include <scorekit/nn/image/conv2d.hpp>
#include <scorekit/nn/image/group_norm.hpp>
#include <scorekit/nn/image/network.hpp>
#include <scorekit/nn/image/resample.hpp>
#include <scorekit/nn/init.hpp>
#include <scorekit/testing/image_layer_checks.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace {

using scorekit_test::Backends;
using scorekit_test::random_features;
using namespace scorekit::nn::image;

Conv2d padded_conv(int ci, int co) {
  Conv2dOptions o;
  o.padding = 1;
  return Conv2d(ci, co, 3, o);
}

/// A user's layer with parameters that does not declare optional_gradient: y = x a_c per channel c. Its
/// backward() refuses an empty gradient, so a network must give it one.
struct ChannelScale {
  int c = 0;
  std::string name() const { return "ChannelScale"; }
  ImageShape output_shape(const ImageShape& in) const { return in; }
  int n_params() const { return c; }
  std::vector<scorekit::nn::Segment> segments(int offset) const {
    return {{scorekit::nn::ParameterKind::scale, offset, c, 1, 1}};
  }
  std::size_t workspace_size(const ImageShape&) const { return 0; }
  template <class Exec, class P, class X, class Y, class W>
  void forward(const Exec& exec, const P& p, const X& x, const ImageShape& in, const Y& y, const W&) const {
    const int k = c;
    Kokkos::parallel_for(
        "ChannelScale::forward", Kokkos::RangePolicy<Exec>(exec, 0, int(in.size())),
        KOKKOS_LAMBDA(const int e) { y(e / k, e % k) = x(e / k, e % k) * p(e % k); });
  }
  template <class Exec, class P, class X, class DY, class G, class DX, class W>
  void backward(const Exec& exec, const P& p, const X& x, const ImageShape& in, const DY& dy, const G& g,
                const DX& dx, const W&) const {
    scorekit::nn::image::detail::require_parameters(g, c, "ChannelScale backward", "the gradient");
    const int k = c, rows = int(in.rows());
    Kokkos::parallel_for(
        "ChannelScale::gradient", Kokkos::RangePolicy<Exec>(exec, 0, k), KOKKOS_LAMBDA(const int j) {
          for (int r = 0; r < rows; ++r) g(j) += x(r, j) * dy(r, j);
        });
    if (dx.extent(0) == 0) return;
    Kokkos::parallel_for(
        "ChannelScale::adjoint", Kokkos::RangePolicy<Exec>(exec, 0, int(in.size())),
        KOKKOS_LAMBDA(const int e) { dx(e / k, e % k) = dy(e / k, e % k) * p(e % k); });
  }
};

/// A small U-shaped graph: conv, features added, GroupNorm, SiLU, down, conv, up, concat with the
/// full-resolution branch, a pointwise conv, and the input added back; `twice` also sums a node with
/// itself (one value, two consumers); `scaled` ends in a ChannelScale.
template <class Exec>
Network<double, Exec> small_graph(bool twice, bool scaled = false) {
  Network<double, Exec> net;
  const int x = net.image_input(2);
  const int f = net.features_input(3);
  int h = net.layer(padded_conv(2, 4), x);
  h = net.add_features(h, net.layer(pointwise_dense(3, 4), f));
  const int skip = net.layer(Activation<scorekit::nn::Silu>(), net.layer(GroupNorm(2, 4), h));
  int d = net.layer(padded_conv(4, 4), net.layer(AvgPool2d(2), skip));
  if (twice) d = net.sum(d, d);
  d = net.layer(Upsample2d(2), d);
  h = net.layer(pointwise_dense(8, 2), net.concat(skip, d));
  const int y = net.sum(h, x);
  net.set_output(scaled ? net.layer(ChannelScale{2}, y) : y);
  return net;
}

/// small_graph with its problem on a 2 x 4 x 4 x 2 batch: Glorot parameters (seed 4), input (5),
/// features (6) and an output cotangent (7), and a zero gradient of the parameters' size.
template <class Exec>
struct GraphProblem {
  using Mem = typename Exec::memory_space;
  Network<double, Exec> net;
  ImageShape in{2, 4, 4, 2};
  ImageShape out = net.output_shape(in);
  Kokkos::View<double*, Mem> p{"p", std::size_t(net.n_params())}, g{"g", std::size_t(net.n_params())};
  Tensor<double, Mem> x = random_features<Exec>(int(in.rows()), in.c, 5);
  Tensor<double, Mem> f = random_features<Exec>(2, 3, 6);
  Tensor<double, Mem> c = random_features<Exec>(int(out.rows()), out.c, 7);

  explicit GraphProblem(Network<double, Exec> graph) : net(std::move(graph)) {
    const auto segs = net.segments();
    scorekit::nn::initialize(Exec(), p, segs.data(), int(segs.size()), scorekit::nn::Init::glorot_normal, 4);
  }
};

}  // namespace

TEMPLATE_LIST_TEST_CASE("image network: gradients and adjoints match finite differences", "[image]",
                        Backends) {
  using Exec = TestType;
  for (const bool twice : {false, true}) {
    scorekit_test::NetworkAsLayer<Exec> layer{
        std::make_shared<Network<double, Exec>>(small_graph<Exec>(twice)), random_features<Exec>(2, 3, 9)};
    const ImageShape in{2, 4, 6, 2};
    CHECK(layer.net->output_shape(in) == in);
    const auto r = scorekit::testing::check_image_layer(Exec(), layer, in);
    INFO((twice ? "with a node summed with itself: " : "")
         << r.n_checked << " checks, worst ratio " << r.worst_ratio << " at " << r.worst << "\n"
         << layer.net->summary());
    CHECK(r.passed);
  }
}

TEMPLATE_LIST_TEST_CASE("image network: the features adjoint matches finite differences", "[image]",
                        Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  GraphProblem<Exec> prob(small_graph<Exec>(false));
  auto& net = prob.net;
  const auto &in = prob.in, &out = prob.out;
  const auto &p = prob.p, &g = prob.g;  // one deduced type a declaration
  const auto &x = prob.x, &f = prob.f, &c = prob.c;
  Tensor<double, Mem> y("y", std::size_t(out.rows()), std::size_t(out.c)), df("df", 2, 3);
  net.forward(Exec(), p, x, in, f, y);
  net.backward(Exec(), p, c, g, Tensor<double, Mem>(), df);
  const auto hdf = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), df);
  // A copy, not a mirror: on a host backend a mirror is the same memory as f.
  Kokkos::View<double**, Kokkos::HostSpace> hf("hf", 2, 3);
  Kokkos::deep_copy(hf, f);
  const auto hc = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), c);
  scorekit::testing::NetworkCheckResult result;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) {
      auto loss = [&](double t) {
        auto hf2 = Kokkos::create_mirror_view(f);
        Kokkos::deep_copy(hf2, hf);
        hf2(i, j) += t;
        Kokkos::deep_copy(f, hf2);
        net.forward(Exec(), p, x, in, f, y);
        const auto hy = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), y);
        double s = 0;
        for (std::size_t r = 0; r < hy.extent(0); ++r)
          for (std::size_t k = 0; k < hy.extent(1); ++k) s += hc(r, k) * hy(r, k);
        return s;
      };
      scorekit::testing::detail::richardson_compare(loss, hdf(i, j), std::cbrt(2.2e-16), 64 * 2.2e-16,
                                                    "features " + std::to_string(i) + "," + std::to_string(j),
                                                    result);
    }
  INFO(result.worst);
  CHECK(result.n_checked == 6);
  CHECK(result.passed);
}

TEST_CASE("image network: malformed graphs and batches are named errors", "[image]") {
  using Exec = Kokkos::DefaultHostExecutionSpace;
  using Catch::Contains;
  Network<double, Exec> net;
  CHECK_THROWS_WITH(net.layer(padded_conv(1, 2), 0), Contains("add the image_input() first"));
  const int x = net.image_input(1);
  CHECK_THROWS_WITH(net.image_input(1), Contains("must be the first node"));
  CHECK_THROWS_WITH(net.layer(padded_conv(1, 2), 5), Contains("node 5 does not exist"));
  CHECK_THROWS_WITH(net.output_shape({1, 4, 4, 1}), Contains("set_output() first"));
  const int a = net.layer(padded_conv(1, 2), x);
  const int b = net.layer(AvgPool2d(2), a);
  net.set_output(net.sum(a, b));
  CHECK_THROWS_WITH(net.output_shape({1, 4, 4, 1}),
                    Contains("node 3 (sum): adds 1 x 4 x 4 x 2 and 1 x 2 x 2 x 2"));
  CHECK_THROWS_WITH(net.output_shape({1, 4, 4, 3}),
                    Contains("the input has 3 channels") && Contains("takes 1"));
  CHECK_THROWS_WITH(net.output_shape({0, 4, 4, 1}), Contains("every extent"));

  Network<double, Exec> ok;
  ok.set_output(ok.layer(padded_conv(1, 2), ok.image_input(1)));
  Network<double, Exec> bad;
  bad.set_output(bad.layer(padded_conv(2, 2), bad.image_input(1)));
  CHECK_THROWS_WITH(bad.output_shape({1, 3, 3, 1}),
                    Contains("node 1 (Conv2d(2 -> 2") && Contains("the input has 1 channels"));
  Kokkos::View<double*, Kokkos::HostSpace> p("p", std::size_t(ok.n_params())),
      g("g", std::size_t(ok.n_params()));
  Tensor<double, Kokkos::HostSpace> in("x", 9, 1), y("y", 9, 2);
  CHECK_THROWS_WITH(ok.backward(Exec(), p, y, g), Contains("call forward() on the batch first"));
  ok.forward(Exec(), p, in, {1, 3, 3, 1}, Tensor<double, Kokkos::HostSpace>(), y);
  CHECK_THROWS_WITH(ok.backward(Exec(), p, y, g, Tensor<double, Kokkos::HostSpace>(),
                                Tensor<double, Kokkos::HostSpace>("f", 1, 1)),
                    Contains("has no features input"));
}

TEMPLATE_LIST_TEST_CASE("image network: without a gradient, the same adjoints; other layers get a scratch",
                        "[image]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  // small_graph's layers all skip their gradient; a user's layer that cannot is given a discarded one.
  GraphProblem<Exec> prob(small_graph<Exec>(true, true));
  auto& net = prob.net;
  const auto &in = prob.in, &out = prob.out;
  const auto &p = prob.p, &g = prob.g;  // one deduced type a declaration
  const auto &x = prob.x, &f = prob.f, &c = prob.c;
  Tensor<double, Mem> y("y", std::size_t(out.rows()), std::size_t(out.c));
  Tensor<double, Mem> dx1("dx1", std::size_t(in.rows()), std::size_t(in.c)),
      dx2("dx2", dx1.extent(0), dx1.extent(1));
  Tensor<double, Mem> df1("df1", 2, 3), df2("df2", 2, 3);
  net.forward(Exec(), p, x, in, f, y);
  net.backward(Exec(), p, c, g, dx1, df1);
  net.backward(Exec(), p, c, Kokkos::View<double*, Mem>(), dx2, df2);
  const auto h1 = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), dx1);
  const auto h2 = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), dx2);
  const auto hf1 = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), df1);
  const auto hf2 = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), df2);
  int differ = 0;
  double largest = 0;
  for (std::size_t r = 0; r < h1.extent(0); ++r)
    for (std::size_t k = 0; k < h1.extent(1); ++k) {
      differ += h1(r, k) != h2(r, k);
      largest = std::max(largest, std::fabs(h1(r, k)));
    }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) differ += hf1(i, j) != hf2(i, j);
  CHECK(largest > 0);
  CHECK(differ == 0);
  // The gradient the first call wrote is untouched by the second.
  const auto hg = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), g);
  Kokkos::View<double*, Mem> g2("g2", std::size_t(net.n_params()));
  net.backward(Exec(), p, c, g2);
  const auto hg2 = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), g2);
  int moved = 0;
  for (int i = 0; i < net.n_params(); ++i) moved += hg(i) != hg2(i);
  CHECK(moved == 0);
  // A gradient of the wrong size is still an error.
  CHECK_THROWS_WITH(net.backward(Exec(), p, c, Kokkos::View<double*, Mem>("short", 3)),
                    Catch::Contains("the gradient") && Catch::Contains("3 scalars given"));
}
