// A score network in the shape of the score_sde tutorial's U-Net (Song et al., "Score-Based Generative
// Modeling through Stochastic Differential Equations", ICLR 2021, and its tutorial notebook), built as a
// runtime Network (network.hpp) sized by a few parameters:
//   embedding  e = SiLU(Dense(F -> F)(Fourier features of the noise level))   (the features input, F)
//   encoder    level i: 3 x 3 conv (stride 1 at level 0, else 2; padding 1; no bias), + Dense(e) per
//              channel, GroupNorm, SiLU; channels c_0, c_1, ... (e.g. 32, 64, 128)
//   decoder    from the deepest level up: nearest upsampling by 2, 3 x 3 conv to c_{i-1}, + Dense(e),
//              GroupNorm, SiLU, then the encoder's level i-1 concatenated (2 c_{i-1} channels)
//   output     3 x 3 conv to the input's channels (with bias)
// The tutorial upsamples with transposed convolutions; here an upsampling followed by a convolution
// (the same receptive field, no checkerboard artefacts, Odena et al. 2016). The score model divides
// the output by sigma, as the tutorial divides by the marginal standard deviation. With L levels the
// height and width must be multiples of 2^(L-1) (28 x 28 with 3 levels: 28, 14, 7); otherwise a skip
// connection does not fit and output_shape() names the concatenation.
// scorekit-requires: SCOREKIT_HAVE_KOKKOS_KERNELS
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/nn/activations.hpp>
#include <scorekit/nn/image/activation.hpp>
#include <scorekit/nn/image/conv2d.hpp>
#include <scorekit/nn/image/group_norm.hpp>
#include <scorekit/nn/image/network.hpp>
#include <scorekit/nn/image/resample.hpp>

#include <string>
#include <vector>

namespace scorekit {
namespace nn {
namespace image {

struct UNetSettings {
  int in_channels = 1;
  std::vector<int> channels = {32, 64, 128};  ///< per level, at least one
  int groups = 4;                             ///< GroupNorm groups (must divide every level's channels)
  int embedding = 256;                        ///< F: the features input (the Fourier features, even)
};

template <class Real, class Exec>
Network<Real, Exec> unet(const UNetSettings& s) {
  const char* where = "scorekit::nn::image::unet";
  if (s.in_channels <= 0 || s.channels.empty() || s.embedding <= 0 || s.groups <= 0)
    throw invalid_argument(scorekit::detail::concat(
        where, ": in_channels (", s.in_channels, "), the number of levels (", s.channels.size(),
        "), groups (", s.groups, ") and embedding (", s.embedding, ") must be positive"));
  for (int c : s.channels)
    if (c <= 0 || c % s.groups != 0)
      throw invalid_argument(scorekit::detail::concat(
          where, ": level channels ", c, " must be a positive multiple of ", s.groups, " groups"));
  Network<Real, Exec> net;
  const int x = net.image_input(s.in_channels);
  const int f = net.features_input(s.embedding);
  const int e = net.layer(Activation<Silu>(), net.layer(pointwise_dense(s.embedding, s.embedding), f));
  // conv, + Dense(e), GroupNorm, SiLU
  auto block = [&](int from, int c_in, int c_out, int stride) {
    Conv2dOptions o;
    o.stride = stride;
    o.padding = 1;
    o.bias = false;
    int h = net.layer(Conv2d(c_in, c_out, 3, o), from);
    h = net.add_features(h, net.layer(pointwise_dense(s.embedding, c_out), e));
    h = net.layer(GroupNorm(s.groups, c_out), h);
    return net.layer(Activation<Silu>(), h);
  };
  const int L = int(s.channels.size());
  std::vector<int> skip(static_cast<std::size_t>(L));
  int h = x, c = s.in_channels;
  for (int i = 0; i < L; ++i) {
    h = block(h, c, s.channels[std::size_t(i)], i == 0 ? 1 : 2);
    c = s.channels[std::size_t(i)];
    skip[std::size_t(i)] = h;
  }
  for (int i = L - 1; i >= 1; --i) {
    const int up = net.layer(Upsample2d(2), h);
    const int u = block(up, c, s.channels[std::size_t(i - 1)], 1);
    h = net.concat(u, skip[std::size_t(i - 1)]);
    c = 2 * s.channels[std::size_t(i - 1)];
  }
  Conv2dOptions o;
  o.padding = 1;
  net.set_output(net.layer(Conv2d(c, s.in_channels, 3, o), h));
  return net;
}

}  // namespace image
}  // namespace nn
}  // namespace scorekit
