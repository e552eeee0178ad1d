// How a network describes the parts of its one flat parameter vector to the training tools that do not
// know its architecture (initialisation, checkpoints): each Segment is a contiguous range of the flat
// view holding one layer's weights, biases or embedding table.
#pragma once

#include <scorekit/core/error.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace scorekit {
namespace nn {

/// What a range of parameters is; initialisation treats each kind differently (see init.hpp): weights by
/// their fans, biases zero, embeddings uniform on [0, 1), scales (a normalisation's gamma) one.
enum class ParameterKind { weight, bias, embedding, scale };

/// A contiguous range [offset, offset + size) of a network's flat parameter view. fan_in and fan_out
/// are those of the layer the range belongs to, in the sense of Glorot and Bengio (2010) and He et al.
/// (2015): for a dense layer with n_in inputs and n_out outputs, fan_in = n_in and fan_out = n_out; for a
/// k x k convolution, fan_in = c_in k^2 and fan_out = c_out k^2 (PyTorch's convention); for an embedding
/// of n_classes rows of n_features, fan_in = n_classes and fan_out = n_features. Fans are used to scale
/// weights and must be positive for every kind.
struct Segment {
  ParameterKind kind;
  int offset;
  int size;
  int fan_in;
  int fan_out;
};

/// Name of a kind, for messages.
inline const char* parameter_kind_name(ParameterKind kind) {
  switch (kind) {
    case ParameterKind::weight:
      return "weight";
    case ParameterKind::bias:
      return "bias";
    case ParameterKind::embedding:
      return "embedding";
    case ParameterKind::scale:
      return "scale";
  }
  return "unknown";
}

/// Throws invalid_argument (prefixed by `where`) unless every segment has a known kind, a positive size
/// and positive fans, lies inside [0, n_params), and no two segments overlap. Gaps are allowed.
inline void validate_segments(const Segment* segments, int n, std::int64_t n_params, const char* where) {
  if (n < 0)
    throw invalid_argument(scorekit::detail::concat(where, ": the number of segments is negative (", n, ")"));
  if (n > 0 && segments == nullptr)
    throw invalid_argument(
        scorekit::detail::concat(where, ": ", n, " segments announced but the pointer is null"));
  for (int s = 0; s < n; ++s) {
    const Segment& g = segments[s];
    const auto kind = static_cast<int>(g.kind);
    if (kind < 0 || kind > static_cast<int>(ParameterKind::scale))
      throw invalid_argument(
          scorekit::detail::concat(where, ": segment ", s, " has an unknown kind (", kind, ")"));
    const char* name = parameter_kind_name(g.kind);
    if (g.size <= 0)
      throw invalid_argument(scorekit::detail::concat(where, ": segment ", s, " (", name, ") has size ",
                                                      g.size, "; it must be positive"));
    if (g.offset < 0 || std::int64_t(g.offset) + std::int64_t(g.size) > n_params)
      throw invalid_argument(
          scorekit::detail::concat(where, ": segment ", s, " (", name, ") covers parameters [", g.offset,
                                   ", ", std::int64_t(g.offset) + std::int64_t(g.size), "), outside the ",
                                   n_params, " parameters of the view"));
    if (g.fan_in <= 0 || g.fan_out <= 0)
      throw invalid_argument(scorekit::detail::concat(where, ": segment ", s, " (", name, ") has fan_in ",
                                                      g.fan_in, " and fan_out ", g.fan_out,
                                                      "; both must be positive"));
  }
  std::vector<int> order(static_cast<std::size_t>(n));
  for (int s = 0; s < n; ++s) order[std::size_t(s)] = s;
  std::sort(order.begin(), order.end(), [&](int a, int b) {
    return segments[a].offset < segments[b].offset || (segments[a].offset == segments[b].offset && a < b);
  });
  for (std::size_t k = 1; k < order.size(); ++k) {
    const Segment& a = segments[order[k - 1]];
    const Segment& b = segments[order[k]];
    if (std::int64_t(a.offset) + a.size > b.offset)
      throw invalid_argument(scorekit::detail::concat(
          where, ": segments ", order[k - 1], " [", a.offset, ", ", std::int64_t(a.offset) + a.size, ") and ",
          order[k], " [", b.offset, ", ", std::int64_t(b.offset) + b.size, ") overlap"));
  }
}

}  // namespace nn
}  // namespace scorekit
