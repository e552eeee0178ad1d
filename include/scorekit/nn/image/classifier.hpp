// An image classifier on the runtime-shaped networks (trained by train/classifier_trainer.hpp): what
// classifier guidance needs (grad_x log p(y | x)) and what a sample-quality measure without downloads
// needs (a feature map trained on the data, and its predicted classes).
//
// conv_classifier(settings, h, w) builds, per level, a 3 x 3 convolution (stride 1 at the first level, 2
// after), GroupNorm and SiLU, and from the second level on a second 3 x 3 convolution block at stride 1;
// then the mean over the remaining pixels (AvgPool2d over the whole map, so it must be square), a dense
// layer to `hidden` features and SiLU (the penultimate features, which ClassifierTrainer::evaluate returns),
// and a dense layer to the logits. With the defaults (32/64/128 channels, 128 features) it has 295,402
// parameters.
// With embedding = F > 0 the classifier is noise-conditional, as classifier guidance needs (Song et al.
// 2021, appendix I.1; Dhariwal and Nichol 2021 use a U-Net encoder with its time embedding): a features
// input of F values (the Fourier features of log sigma, score/noise_features.hpp, with fourier_scale and
// fourier_seed), e = SiLU(Dense(F -> F)) of it, and in every block Dense(e -> channels) added to the
// convolution's output before GroupNorm, as in the U-Net (unet.hpp). score/image_classifier.hpp evaluates
// it on noised images. scorekit-requires: SCOREKIT_HAVE_KOKKOS_KERNELS
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/nn/image/activation.hpp>
#include <scorekit/nn/image/conv2d.hpp>
#include <scorekit/nn/image/group_norm.hpp>
#include <scorekit/nn/image/network.hpp>
#include <scorekit/nn/image/resample.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace scorekit {
namespace nn {
namespace image {

struct ClassifierSettings {
  int in_channels = 1;
  std::vector<int> channels = {32, 64, 128};  ///< per level, each a multiple of groups
  int groups = 4;                             ///< GroupNorm groups
  int hidden = 128;                           ///< the penultimate features
  int classes = 10;
  int embedding = 0;  ///< F: Fourier features of log sigma (even; 0: not noise-conditional)
  double fourier_scale = 16;
  std::uint64_t fourier_seed = 0;
};

/// A classifier network and the id of its penultimate node (features).
template <class Real, class Exec>
struct ClassifierNetwork {
  Network<Real, Exec> net;
  int features_node = -1;
};

/// Builds the classifier described at the top of this file for h x w images.
template <class Real, class Exec>
ClassifierNetwork<Real, Exec> conv_classifier(const ClassifierSettings& s, int height, int width) {
  const char* where = "scorekit::nn::image::conv_classifier";
  if (s.in_channels <= 0 || s.channels.empty() || s.groups <= 0 || s.hidden <= 0 || s.classes < 2 ||
      height <= 0 || width <= 0)
    throw invalid_argument(scorekit::detail::concat(
        where, ": in_channels (", s.in_channels, "), the number of levels (", s.channels.size(),
        "), groups (", s.groups, "), hidden (", s.hidden, "), height (", height, ") and width (", width,
        ") must be positive and classes (", s.classes, ") at least 2"));
  if (s.embedding < 0 || s.embedding % 2 != 0)
    throw invalid_argument(
        scorekit::detail::concat(where, ": embedding (", s.embedding,
                                 ", the Fourier features of log sigma) must be even and not negative"));
  for (int c : s.channels)
    if (c <= 0 || c % s.groups != 0)
      throw invalid_argument(scorekit::detail::concat(
          where, ": level channels ", c, " must be a positive multiple of ", s.groups, " groups"));
  ClassifierNetwork<Real, Exec> out;
  Network<Real, Exec>& net = out.net;
  int h = net.image_input(s.in_channels), c = s.in_channels, side_h = height, side_w = width;
  int e = -1;  // the noise embedding
  if (s.embedding > 0)
    e = net.layer(Activation<Silu>(),
                  net.layer(pointwise_dense(s.embedding, s.embedding), net.features_input(s.embedding)));
  auto block = [&](int from, int c_in, int c_out, int stride) {
    Conv2dOptions o;
    o.stride = stride;
    o.padding = 1;
    o.bias = false;
    int conv = net.layer(Conv2d(c_in, c_out, 3, o), from);
    if (e >= 0) conv = net.add_features(conv, net.layer(pointwise_dense(s.embedding, c_out), e));
    return net.layer(Activation<Silu>(), net.layer(GroupNorm(s.groups, c_out), conv));
  };
  for (std::size_t i = 0; i < s.channels.size(); ++i) {
    const int stride = i == 0 ? 1 : 2;
    h = block(h, c, s.channels[i], stride);
    if (i > 0) h = block(h, s.channels[i], s.channels[i], 1);
    c = s.channels[i];
    side_h = (side_h - 1) / stride + 1;  // 3 x 3, padding 1
    side_w = (side_w - 1) / stride + 1;
  }
  if (side_h != side_w)
    throw invalid_argument(scorekit::detail::concat(where, ": the last level's map is ", side_h, " x ",
                                                    side_w, "; the global mean pooling needs it square"));
  h = net.layer(AvgPool2d(side_h), h);
  out.features_node = net.layer(Activation<Silu>(), net.layer(pointwise_dense(c, s.hidden), h));
  net.set_output(net.layer(pointwise_dense(s.hidden, s.classes), out.features_node));
  return out;
}

}  // namespace image
}  // namespace nn
}  // namespace scorekit
