// An elementwise activation (nn/activations.hpp: Silu, Elu, Softplus, Tanh) as a runtime image layer
// (tensor.hpp): y = F(x) on every scalar, dx = F'(x) dy. No parameters, no workspace.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/nn/activations.hpp>
#include <scorekit/nn/image/tensor.hpp>
#include <scorekit/nn/segment.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace scorekit {
namespace nn {
namespace image {

template <class F>
class Activation {
 public:
  std::string name() const { return scorekit::detail::concat("Activation(", F::name, ")"); }
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
    const auto* const xp = x.data();
    auto* const yp = y.data();
    Kokkos::parallel_for(
        "scorekit::nn::image::Activation::forward",
        Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, in.size()),
        KOKKOS_LAMBDA(const std::int64_t e) { yp[e] = F::value(xp[e]); });
  }

  template <class Exec, class P, class X, class DY, class G, class DX, class Work>
  void backward(const Exec& exec, const P& params, const X& x, const ImageShape& in, const DY& dy,
                const G& grad, const DX& dx, const Work&) const {
    using Real = typename DX::non_const_value_type;
    const std::string where = name() + " backward";
    output_shape(in);
    detail::require_parameters(params, 0, where, "the parameters");
    detail::require_parameters(grad, 0, where, "the gradient");
    detail::require_tensor(x, in, where, "the input");
    detail::require_tensor(dy, in, where, "the output adjoint");
    if (dx.extent(0) == 0) return;
    detail::require_tensor(dx, in, where, "the input adjoint");
    const auto* const xp = x.data();
    const auto* const dyp = dy.data();
    Real* const dxp = dx.data();
    Kokkos::parallel_for(
        "scorekit::nn::image::Activation::backward",
        Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, in.size()),
        KOKKOS_LAMBDA(const std::int64_t e) {
          Real d1, d2;
          F::derivatives(Real(xp[e]), d1, d2);
          dxp[e] = d1 * dyp[e];
        });
  }
};

}  // namespace image
}  // namespace nn
}  // namespace scorekit
