// NCSN's score network reduced: a RefineNet (Lin et al., "RefineNet", CVPR 2017) with dilated residual
// blocks and conditional instance normalisation++, as Song and Ermon ("Generative Modeling by Estimating
// Gradients of the Data Distribution", NeurIPS 2019, appendix A.1; their CondRefineNetDilated) and
// NCSNv2 (Song and Ermon, "Improved Techniques for Training Score-Based Generative Models", NeurIPS
// 2020) build it, as a runtime Network (network.hpp) sized by RefineNetSettings. With levels c_0, c_1,
// ..., c_{L-1} (NCSN: ngf, 2 ngf, 2 ngf, 2 ngf):
//   input     3 x 3 conv (in_channels -> c_0, bias)
//   encoder   level 0 at full resolution; level 1 halved; levels l >= 2 at level 1's resolution with 3 x 3
//             convolutions dilated by 2^(l-1) (receptive field without further down-sampling).
//             `residual_blocks` residual blocks per level, each
//               h = conv2(ELU(norm(conv1(ELU(norm(x)))))) + shortcut(x)
//             (3 x 3 convs with bias, padding = dilation); the first block of level 1 down-samples as
//             NCSN's ConvMeanPool: conv1 keeps c_0 channels, conv2 maps to c_1 and is followed by a 2 x 2
//             mean pool, and the shortcut is a 1 x 1 conv and the same pool. Elsewhere the shortcut is
//             the identity when the channels agree, else a 1 x 1 conv.
//   decoder   RefineNet blocks from the deepest level up; the block at level l takes level l's output
//             and (below the deepest) the block above's, and gives c_{max(l-1, 0)} channels:
//               RCU     residual conv units on each input: `rcu_blocks` times h += conv(ELU(norm(conv(
//                       ELU(norm(h)))))) (3 x 3, no bias)
//               fusion  (multi-resolution fusion, when there are two inputs or the channels change) each
//                       input normalised, a 3 x 3 conv (bias) to the block's channels, brought up to the
//                       finer input's resolution, summed
//               CRP     chained residual pooling: h = ELU(h), then `crp_stages` times path = conv(
//                       MeanFilter5x5(norm(path))) (3 x 3, no bias), h += path
//               output  one RCU
//   output    norm, ELU, 3 x 3 conv (c_0 -> in_channels, bias)
// Every `norm` is, by `conditioning`: CIN++ fed with the network's features input (level_index: the
// one-hot of the noise level's index, F = the number of levels, NCSN; fourier: Fourier features of
// sigma, F of them, with the offset: instance_norm_plus.hpp), or the unconditional InstanceNorm++ with no
// features input (none: NCSNv2, the noise entering only by the output divided by sigma in
// ImageScoreModel).
//
// Kept from NCSN's CondRefineNetDilated: its level structure (one down-sampling, then dilation 2 and 4),
// pre-activation residual blocks with ConvMeanPool down-sampling, CIN++ before every convolution, ELU,
// the RefineNet blocks (RCUs, fusion, CRP with 5 x 5 average pooling at stride 1, an output RCU) with
// NCSN's channel counts, and the final norm, ELU and conv. Reduced or dropped: one residual block per
// level (NCSN two; `residual_blocks`), one two-stage RCU per input (NCSN two; `rcu_blocks`), one CRP stage
// (NCSN two; `crp_stages`), one output RCU in the last block (NCSN three); the fusion upsamples by the
// nearest pixel (NCSN bilinear with aligned corners); the shortcut of the first block of a dilated level
// is the identity or a 1 x 1 conv (NCSN a dilated 3 x 3 conv); no input rescaling 2 x - 1 (the data's
// business); CIN++'s initial gamma and alpha exactly one (NCSN N(1, 0.02^2)).
// Images must have even height and width when there are two levels or more (28 x 28 -> 14 x 14).
// The layers are named as the attributes of benchmarks/torch_image.py's RefineNetLite (begin, res.<l>,
// refine.<j> with j = 0 the deepest, end_norm, end; parameter_tensors()), so weights move between the two
// through io/parameters.hpp; its CondInstanceNormPP is the level-index CIN++.
// scorekit-requires: SCOREKIT_HAVE_KOKKOS_KERNELS
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/nn/activations.hpp>
#include <scorekit/nn/image/activation.hpp>
#include <scorekit/nn/image/conv2d.hpp>
#include <scorekit/nn/image/instance_norm_plus.hpp>
#include <scorekit/nn/image/mean_filter.hpp>
#include <scorekit/nn/image/network.hpp>
#include <scorekit/nn/image/resample.hpp>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

namespace scorekit {
namespace nn {
namespace image {

/// How the noise level reaches the norms of refinenet_lite() (see the top of refinenet.hpp).
enum class RefineNetConditioning {
  level_index,  ///< CIN++ of the one-hot of the level index (NCSN): features = the number of levels
  fourier,      ///< CIN++ (with offset) of Fourier features of sigma: features = their number
  none          ///< InstanceNorm++, no features input (NCSNv2: the output divided by sigma)
};

struct RefineNetSettings {
  int in_channels = 1;
  std::vector<int> channels = {32, 64, 64, 64};  ///< per level (NCSN: ngf, 2 ngf, 2 ngf, 2 ngf), each >= 2
  int residual_blocks = 1;                       ///< per level (NCSN 2)
  int rcu_blocks = 1;                            ///< RCUs on each input of a RefineNet block (NCSN 2)
  int crp_stages = 1;                            ///< stages of chained residual pooling (NCSN 2)
  RefineNetConditioning conditioning = RefineNetConditioning::level_index;
  int features = 10;  ///< F: levels (level_index) or Fourier features (fourier); unused with none
};

template <class Real, class Exec>
Network<Real, Exec> refinenet_lite(const RefineNetSettings& s) {
  const char* where = "scorekit::nn::image::refinenet_lite";
  if (s.in_channels <= 0 || s.channels.empty() || s.residual_blocks <= 0 || s.rcu_blocks <= 0 ||
      s.crp_stages <= 0)
    throw invalid_argument(scorekit::detail::concat(
        where, ": in_channels (", s.in_channels, "), the number of levels (", s.channels.size(),
        "), residual_blocks (", s.residual_blocks, "), rcu_blocks (", s.rcu_blocks, ") and crp_stages (",
        s.crp_stages, ") must be positive"));
  for (int c : s.channels)
    if (c < 2)
      throw invalid_argument(scorekit::detail::concat(where, ": level channels ", c,
                                                      "; CIN++ and InstanceNorm++ need at least 2 channels"));
  const bool conditioned = s.conditioning != RefineNetConditioning::none;
  if (conditioned && s.features <= 0)
    throw invalid_argument(scorekit::detail::concat(where, ": features (", s.features,
                                                    ") must be positive with a conditioned norm"));

  Network<Real, Exec> net;
  const int x = net.image_input(s.in_channels);
  const int f = conditioned ? net.features_input(s.features) : -1;
  // Each parameterised layer is named as the attribute of benchmarks/torch_image.py's RefineNetLite that
  // holds it (the keys of parameter_tensors()).
  auto named = [&](int node, const std::string& name) {
    net.name_layer(node, name);
    return node;
  };
  auto norm = [&](int h, int c, const std::string& name) {
    if (!conditioned) return named(net.layer(InstanceNormPlus(c), h), name);
    InstanceNormPlusOptions o;
    o.offset = s.conditioning == RefineNetConditioning::fourier;
    return named(net.conditioned_layer(ConditionalInstanceNormPlus(c, s.features, o), h, f), name);
  };
  auto elu = [&](int h) { return net.layer(Activation<Elu>(), h); };
  auto conv = [&](int h, int ci, int co, int k, int dilation, bool bias, const std::string& name) {
    Conv2dOptions o;
    o.padding = dilation * (k / 2);
    o.dilation = dilation;
    o.bias = bias;
    return named(net.layer(Conv2d(ci, co, k, o), h), name);
  };
  auto residual = [&](int h, int ci, int co, int dilation, bool down, const std::string& name) {
    const int mid = down ? ci : co;
    int t = conv(elu(norm(h, ci, name + ".norm1")), ci, mid, 3, dilation, true, name + ".conv1");
    t = conv(elu(norm(t, mid, name + ".norm2")), mid, co, 3, dilation, true, name + ".conv2");
    int shortcut = h;
    if (down) {
      t = net.layer(AvgPool2d(2), t);
      shortcut = net.layer(AvgPool2d(2), conv(h, ci, co, 1, 1, true, name + ".shortcut"));
    } else if (ci != co) {
      shortcut = conv(h, ci, co, 1, 1, true, name + ".shortcut");
    }
    return net.sum(t, shortcut);
  };
  auto rcu = [&](int h, int c, const std::string& name) {
    for (int b = 0; b < s.rcu_blocks; ++b) {
      int t = h;
      for (int stage = 0; stage < 2; ++stage) {
        const std::string k = std::to_string(2 * b + stage);
        t = conv(elu(norm(t, c, name + ".norms." + k)), c, c, 3, 1, false, name + ".convs." + k);
      }
      h = net.sum(t, h);
    }
    return h;
  };

  // Encoder. scale[l]: the factor by which level l is smaller than the image (1 or 2).
  const int L = int(s.channels.size());
  std::vector<int> level(static_cast<std::size_t>(L)), scale(static_cast<std::size_t>(L));
  int h = conv(x, s.in_channels, s.channels[0], 3, 1, true, "begin"), c = s.channels[0];
  for (int l = 0; l < L; ++l) {
    const int co = s.channels[std::size_t(l)];
    const int dilation = l >= 2 ? 1 << (l - 1) : 1;
    for (int b = 0; b < s.residual_blocks; ++b) {
      h = residual(h, c, co, dilation, l == 1 && b == 0, "res." + std::to_string(l * s.residual_blocks + b));
      c = co;
    }
    level[std::size_t(l)] = h;
    scale[std::size_t(l)] = l == 0 ? 1 : 2;
  }

  // Decoder: RefineNet blocks from the deepest level up (refine.0 the deepest).
  int above = -1, c_above = 0, scale_above = 0;
  for (int l = L - 1; l >= 0; --l) {
    const std::string block = "refine." + std::to_string(L - 1 - l);
    const int cl = s.channels[std::size_t(l)], features = s.channels[std::size_t(std::max(l - 1, 0))];
    std::vector<std::pair<int, int>> in = {{rcu(level[std::size_t(l)], cl, block + ".adapt.0"), cl}};
    if (above >= 0) in.push_back({rcu(above, c_above, block + ".adapt.1"), c_above});
    int r;
    if (in.size() == 1 && cl == features) {
      r = in[0].first;
    } else {
      r = -1;
      for (std::size_t i = 0; i < in.size(); ++i) {
        const std::string k = std::to_string(i);
        int t = conv(norm(in[i].first, in[i].second, block + ".msf_norms." + k), in[i].second, features, 3, 1,
                     true, block + ".msf_convs." + k);
        if (i == 1 && scale_above != scale[std::size_t(l)])
          t = net.layer(Upsample2d(scale_above / scale[std::size_t(l)]), t);
        r = r < 0 ? t : net.sum(r, t);
      }
    }
    // Chained residual pooling.
    r = elu(r);
    int path = r;
    for (int stage = 0; stage < s.crp_stages; ++stage) {
      const std::string k = std::to_string(stage);
      path = conv(net.layer(MeanFilter2d(5), norm(path, features, block + ".crp_norms." + k)), features,
                  features, 3, 1, false, block + ".crp_convs." + k);
      r = net.sum(path, r);
    }
    above = rcu(r, features, block + ".out");
    c_above = features;
    scale_above = scale[std::size_t(l)];
  }
  net.set_output(conv(elu(norm(above, c_above, "end_norm")), c_above, s.in_channels, 3, 1, true, "end"));
  return net;
}

}  // namespace image
}  // namespace nn
}  // namespace scorekit
