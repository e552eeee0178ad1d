// How a network's flat parameter vector maps onto named tensors in PyTorch's conventions, so that weights
// go to and come from files PyTorch users read and write (io/safetensors.hpp): each ParameterTensor is
// one state_dict entry (its key, its shape as PyTorch has it) and where its values lie in the flat
// vector. Where scorekit stores a tensor's axes in another order than PyTorch (a convolution's weights,
// kept (ky, kx, c_in, c_out) for the NHWC products, are (c_out, c_in, ky, kx) in PyTorch), stored_axes
// says which: the values are permuted on the way out and back. Host code, standard library only.
#pragma once

#include <scorekit/core/error.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace scorekit {

struct ParameterTensor {
  /// The state_dict key ("0.weight", "down.1.conv.bias").
  std::string name;
  /// Index of the tensor's first value in the flat parameter vector; the values are contiguous.
  std::int64_t offset = 0;
  /// The shape in PyTorch's order.
  std::vector<std::int64_t> shape;
  /// Empty when scorekit stores the values in PyTorch's (C) order. Otherwise the axes of PyTorch's
  /// shape in the order scorekit stores them, outermost first: stored_axes = {2, 3, 1, 0} for weights
  /// stored (ky, kx, c_in, c_out) whose PyTorch shape is (c_out, c_in, ky, kx).
  std::vector<int> stored_axes = {};
  /// Empty, or the PyTorch tensor seen as this shape (the same values in the same C order) for
  /// stored_axes: a (levels, 3 c) embedding whose three c-wide chunks scorekit stores as three (levels, c)
  /// blocks is view (levels, 3, c) with stored_axes {1, 0, 2}.
  std::vector<std::int64_t> view = {};

  std::int64_t size() const {
    std::int64_t n = 1;
    for (const std::int64_t s : shape) n *= s;
    return n;
  }

  /// For each value in PyTorch's C order, its position within the tensor's stored block.
  std::vector<std::int64_t> stored_positions() const {
    const std::int64_t n = size();
    std::vector<std::int64_t> out(static_cast<std::size_t>(n));
    if (stored_axes.empty()) {
      for (std::int64_t i = 0; i < n; ++i) out[std::size_t(i)] = i;
      return out;
    }
    const std::vector<std::int64_t>& axes = view.empty() ? shape : view;
    std::int64_t viewed = 1;
    for (const std::int64_t e : axes) viewed *= e;
    if (viewed != n)
      throw invalid_argument(detail::concat("scorekit::ParameterTensor '", name, "': its view holds ", viewed,
                                            " values, its shape ", n));
    const std::size_t r = axes.size();
    if (stored_axes.size() != r)
      throw invalid_argument(detail::concat("scorekit::ParameterTensor '", name, "': ", stored_axes.size(),
                                            " stored axes for a tensor of rank ", r));
    // The stride of each PyTorch axis in the stored layout.
    std::vector<std::int64_t> stride(r, 0);
    std::vector<char> seen(r, 0);
    std::int64_t s = 1;
    for (std::size_t k = r; k-- > 0;) {
      const int axis = stored_axes[k];
      if (axis < 0 || std::size_t(axis) >= r || seen[std::size_t(axis)]++)
        throw invalid_argument(
            detail::concat("scorekit::ParameterTensor '", name, "': stored_axes is not a permutation"));
      stride[std::size_t(axis)] = s;
      s *= axes[std::size_t(axis)];
    }
    std::vector<std::int64_t> index(r, 0);
    for (std::int64_t i = 0; i < n; ++i) {
      std::int64_t p = 0;
      for (std::size_t k = 0; k < r; ++k) p += index[k] * stride[k];
      out[std::size_t(i)] = p;
      for (std::size_t k = r; k-- > 0;) {
        if (++index[k] < axes[k]) break;
        index[k] = 0;
      }
    }
    return out;
  }
};

}  // namespace scorekit
