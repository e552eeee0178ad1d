// Test support for runtime image networks: a Network as a layer of (params, x) with fixed features, so
// that testing::check_image_layer checks its parameter gradient and input adjoint.
#pragma once

#include <scorekit/core/random.hpp>
#include <scorekit/nn/image/network.hpp>
#include <scorekit/nn/segment.hpp>

#include <memory>
#include <string>
#include <vector>

namespace scorekit_test {

template <class Exec>
struct NetworkAsLayer {
  /// Network::backward takes an empty gradient: check_image_layer then checks that the network's
  /// adjoints do not depend on it.
  static constexpr bool optional_gradient = true;
  std::shared_ptr<scorekit::nn::image::Network<double, Exec>> net;
  scorekit::nn::image::Tensor<double, typename Exec::memory_space> features;
  std::string name() const { return "network"; }
  scorekit::nn::image::ImageShape output_shape(const scorekit::nn::image::ImageShape& in) const {
    return net->output_shape(in);
  }
  int n_params() const { return net->n_params(); }
  std::vector<scorekit::nn::Segment> segments(int offset) const {
    auto s = net->segments();
    for (auto& g : s) g.offset += offset;
    return s;
  }
  std::size_t workspace_size(const scorekit::nn::image::ImageShape&) const { return 0; }
  template <class P, class X, class Y, class W>
  void forward(const Exec& exec, const P& p, const X& x, const scorekit::nn::image::ImageShape& in,
               const Y& y, const W&) const {
    net->forward(exec, p, x, in, features, y);
  }
  template <class P, class X, class DY, class G, class DX, class W>
  void backward(const Exec& exec, const P& p, const X& x, const scorekit::nn::image::ImageShape& in,
                const DY& dy, const G& g, const DX& dx, const W&) const {
    const scorekit::nn::image::Tensor<double, typename Exec::memory_space> y("y", dy.extent(0), dy.extent(1));
    net->forward(exec, p, x, in, features, y);
    net->backward(exec, p, dy, g, dx);
  }
};

/// An n x f tensor of standard normals from `seed`.
template <class Exec>
scorekit::nn::image::Tensor<double, typename Exec::memory_space> random_features(int n, int f,
                                                                                 std::uint64_t seed) {
  scorekit::nn::image::Tensor<double, typename Exec::memory_space> t("features", std::size_t(n),
                                                                     std::size_t(f));
  auto h = Kokkos::create_mirror_view(t);
  scorekit::CounterRng<double> rng(seed, 0, 0, scorekit::RngStream::user);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < f; ++j) h(i, j) = rng.normal();
  Kokkos::deep_copy(t, h);
  return t;
}

}  // namespace scorekit_test
