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
// The layers are named as the attributes of benchmarks/torch_image.py's UNet (parameter_tensors(): embed,
// enc.<i>.conv / .dense / .norm, dec.<j>.conv / .dense / .norm with j = 0 the deepest, out), so weights
// move between the two through io/parameters.hpp; the PyTorch module's buffer fourier.w is the score
// model's frequencies (score/image_score.hpp).
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
  const int embed = net.layer(pointwise_dense(s.embedding, s.embedding), f);
  net.name_layer(embed, "embed");
  const int e = net.layer(Activation<Silu>(), embed);
  // conv, + Dense(e), GroupNorm, SiLU
  auto block = [&](int from, int c_in, int c_out, int stride, const std::string& name) {
    Conv2dOptions o;
    o.stride = stride;
    o.padding = 1;
    o.bias = false;
    int h = net.layer(Conv2d(c_in, c_out, 3, o), from);
    net.name_layer(h, name + ".conv");
    const int dense = net.layer(pointwise_dense(s.embedding, c_out), e);
    net.name_layer(dense, name + ".dense");
    h = net.layer(GroupNorm(s.groups, c_out), net.add_features(h, dense));
    net.name_layer(h, name + ".norm");
    return net.layer(Activation<Silu>(), h);
  };
  const int L = int(s.channels.size());
  std::vector<int> skip(static_cast<std::size_t>(L));
  int h = x, c = s.in_channels;
  for (int i = 0; i < L; ++i) {
    h = block(h, c, s.channels[std::size_t(i)], i == 0 ? 1 : 2, "enc." + std::to_string(i));
    c = s.channels[std::size_t(i)];
    skip[std::size_t(i)] = h;
  }
  for (int i = L - 1; i >= 1; --i) {
    const int up = net.layer(Upsample2d(2), h);
    const int u = block(up, c, s.channels[std::size_t(i - 1)], 1, "dec." + std::to_string(L - 1 - i));
    h = net.concat(u, skip[std::size_t(i - 1)]);
    c = 2 * s.channels[std::size_t(i - 1)];
  }
  Conv2dOptions o;
  o.padding = 1;
  const int out = net.layer(Conv2d(c, s.in_channels, 3, o), h);
  net.name_layer(out, "out");
  net.set_output(out);
  return net;
}

}  // namespace image
}  // namespace nn
}  // namespace scorekit
