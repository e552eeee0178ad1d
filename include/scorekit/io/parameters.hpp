// A network's parameters to and from safetensors files (io/safetensors.hpp) under the names and shapes
// PyTorch gives the same layers (core/parameter_tensor.hpp; Sequential::parameter_tensors() for the
// compile-time networks, Network::parameter_tensors() for the runtime-shaped ones), so that weights
// trained here open in PyTorch (safetensors.torch.load_file, then load_state_dict) and weights trained
// in PyTorch sample here. save_parameters refuses NaN or infinite weights; load_parameters refuses a
// missing or an extra tensor, another shape or dtype than the network's and NaN or infinite values, each
// with an io_error naming the file and the tensor, and changes nothing unless the whole file is taken.
// scorekit-requires: SCOREKIT_HAVE_NLOHMANN_JSON
#pragma once

#ifndef SCOREKIT_HAVE_NLOHMANN_JSON
#error \
    "scorekit/io/parameters.hpp needs nlohmann-json, and this build of scorekit has none: install Debian's nlohmann-json3-dev (scripts/setup.sh does), reconfigure, and link scorekit::scorekit (which then defines SCOREKIT_HAVE_NLOHMANN_JSON)"
#endif

#include <scorekit/core/error.hpp>
#include <scorekit/core/file.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/parameter_tensor.hpp>
#include <scorekit/io/safetensors.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

namespace scorekit {
namespace io {

namespace safetensors_detail {

template <class T>
constexpr const char* dtype_of() {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "scorekit::io: parameters are float or double");
  return std::is_same<T, float>::value ? "F32" : "F64";
}

/// A tensor of Real holding n values value(i), i in PyTorch's C order.
template <class Real, class Value>
SafetensorsTensor encode_tensor(std::vector<std::int64_t> shape, std::size_t n, Value value) {
  SafetensorsTensor out;
  out.dtype = dtype_of<Real>();
  out.shape = std::move(shape);
  out.bytes.resize(n * sizeof(Real));
  for (std::size_t i = 0; i < n; ++i) put_le<Real>(value(i), &out.bytes[i * sizeof(Real)]);
  return out;
}

/// The values of a tensor of Real (its dtype checked by the caller), in the file's order; an io_error
/// "<where><what> holds v at value i<suffix>" at the first that is not finite.
template <class Real>
std::vector<Real> decode_finite(const SafetensorsTensor& f, const std::string& where, const std::string& what,
                                const char* suffix) {
  std::vector<Real> v(f.bytes.size() / sizeof(Real));
  for (std::size_t i = 0; i < v.size(); ++i) {
    v[i] = get_le<Real>(&f.bytes[i * sizeof(Real)]);
    if (!std::isfinite(v[i]))
      throw io_error(scorekit::detail::concat(where, what, " holds ", v[i], " at value ", i, suffix));
  }
  return v;
}

}  // namespace safetensors_detail

/// Writes the parameters `params` (a rank-1 view of float or double, any memory space) of a network
/// that `tensors` describes (PyTorch's keys, shapes and axis orders) to a safetensors file, with
/// `metadata` (the architecture, the noise schedule: whatever a reader needs to rebuild the model) and
/// 1-d `buffers` (a model's fixed non-trainable values, as PyTorch's register_buffer keeps them).
template <class View>
void save_parameters(
    const std::string& path, const std::vector<ParameterTensor>& tensors, const View& params,
    const std::map<std::string, std::string>& metadata = {},
    const std::map<std::string, std::vector<typename View::non_const_value_type>>& buffers = {}) {
  using scorekit::detail::concat;
  using Real = typename View::non_const_value_type;
  constexpr const char* who = "scorekit::io::save_parameters";
  static_assert(Kokkos::is_view<View>::value && View::rank == 1,
                "scorekit::io::save_parameters: the parameters are a rank-1 view");
  const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), params);
  const std::int64_t n = std::int64_t(h.extent(0));
  Safetensors s;
  s.metadata = metadata;
  for (const ParameterTensor& t : tensors) {
    if (t.offset < 0 || t.size() < 0 || t.offset + t.size() > n)
      throw invalid_argument(concat(who, ": tensor '", t.name, "' covers values [", t.offset, ", ",
                                    t.offset + t.size(), "), outside the ", n, " parameters"));
    if (s.tensors.count(t.name))
      throw invalid_argument(concat(who, ": two tensors are named '", t.name, "'"));
    const std::vector<std::int64_t> at = t.stored_positions();
    SafetensorsTensor out = safetensors_detail::encode_tensor<Real>(t.shape, at.size(), [&](std::size_t i) {
      const Real v = h(std::size_t(t.offset + at[i]));
      if (!std::isfinite(v))
        throw invalid_argument(concat(who, ": tensor '", t.name, "' holds ", v, " (value ", i,
                                      "); a file with NaN or infinite weights would be refused on load"));
      return v;
    });
    s.tensors.emplace(t.name, std::move(out));
  }
  for (const auto& kv : buffers) {
    if (s.tensors.count(kv.first))
      throw invalid_argument(concat(who, ": buffer '", kv.first, "' has the name of a parameter tensor"));
    SafetensorsTensor out = safetensors_detail::encode_tensor<Real>(
        {std::int64_t(kv.second.size())}, kv.second.size(), [&](std::size_t i) { return kv.second[i]; });
    s.tensors.emplace(kv.first, std::move(out));
  }
  write_safetensors(path, s);
}

/// Reads a safetensors file into the parameters `params` of a network that `tensors` describes, and
/// returns the file's metadata. Every tensor of the network must be in the file with its shape and the
/// parameters' dtype, and nothing else may be but the 1-d buffers named by the keys of `buffers` (a
/// model's fixed non-trainable values, such as the U-Net's Fourier frequencies "fourier.w"), which are
/// read into it (an entry that is not empty gives the length expected); values that are not finite are
/// refused. The parameters and buffers are changed only when the whole file is accepted.
template <class View>
std::map<std::string, std::string> load_parameters(
    const std::string& path, const std::vector<ParameterTensor>& tensors, const View& params,
    std::map<std::string, std::vector<typename View::non_const_value_type>>* buffers = nullptr) {
  using scorekit::detail::concat;
  using scorekit::detail::printable;
  using Real = typename View::non_const_value_type;
  static_assert(
      Kokkos::is_view<View>::value && View::rank == 1 && !std::is_const<typename View::value_type>::value,
      "scorekit::io::load_parameters: the parameters are a writable rank-1 view");
  const Safetensors s = read_safetensors(path);
  const std::string where = concat("scorekit::io::load_parameters: '", printable(path), "': ");
  auto shape_text = [](const std::vector<std::int64_t>& shape) {
    std::string out = "(";
    for (std::size_t k = 0; k < shape.size(); ++k) out += (k ? ", " : "") + std::to_string(shape[k]);
    return out + ")";
  };
  // A copy: the caller's parameters change only when the whole file is accepted.
  Kokkos::View<Real*, Kokkos::HostSpace> h("scorekit::io::load_parameters", params.extent(0));
  Kokkos::deep_copy(h, params);
  const std::int64_t n = std::int64_t(h.extent(0));
  const std::string want = safetensors_detail::dtype_of<Real>();
  std::set<std::string> expected;
  for (const ParameterTensor& t : tensors) expected.insert(t.name);
  if (buffers)
    for (const auto& kv : *buffers) expected.insert(kv.first);
  for (const auto& kv : s.tensors)
    if (!expected.count(kv.first))
      throw io_error(concat(where, "tensor '", printable(kv.first),
                            "' is not a tensor of this network (another architecture?)"));
  for (const ParameterTensor& t : tensors) {
    const auto it = s.tensors.find(t.name);
    if (it == s.tensors.end())
      throw io_error(concat(where, "tensor '", t.name, "' is missing (the file holds ", s.tensors.size(),
                            " tensors; another architecture?)"));
    const SafetensorsTensor& f = it->second;
    if (f.shape != t.shape)
      throw io_error(concat(where, "tensor '", t.name, "' has shape ", shape_text(f.shape),
                            ", this network's is ", shape_text(t.shape), " (architecture mismatch)"));
    if (f.dtype != want)
      throw io_error(
          concat(where, "tensor '", t.name, "' holds ", printable(f.dtype), ", this network takes ", want,
                 " (convert the file, e.g. with tensor.to(torch.float", want == "F32" ? "32" : "64", "))"));
    if (t.offset < 0 || t.offset + t.size() > n)
      throw invalid_argument(concat(where, "tensor '", t.name, "' lies outside the ", n, " parameters"));
    const std::vector<std::int64_t> at = t.stored_positions();
    const std::vector<Real> v = safetensors_detail::decode_finite<Real>(f, where, "tensor '" + t.name + "'",
                                                                        "; refusing NaN or infinite weights");
    for (std::size_t i = 0; i < at.size(); ++i) h(std::size_t(t.offset + at[i])) = v[i];
  }
  std::map<std::string, std::vector<Real>> read_buffers;
  if (buffers)
    for (const auto& kv : *buffers) {
      const auto it = s.tensors.find(kv.first);
      if (it == s.tensors.end()) throw io_error(concat(where, "buffer '", kv.first, "' is missing"));
      const SafetensorsTensor& f = it->second;
      if (f.shape.size() != 1 || f.dtype != want)
        throw io_error(concat(where, "buffer '", kv.first, "' is not a 1-d ", want, " tensor"));
      if (!kv.second.empty() && std::size_t(f.shape[0]) != kv.second.size())
        throw io_error(concat(where, "buffer '", kv.first, "' has ", f.shape[0], " values, this model's has ",
                              kv.second.size(), " (architecture mismatch)"));
      std::vector<Real> v =
          safetensors_detail::decode_finite<Real>(f, where, "buffer '" + kv.first + "'", "");
      read_buffers[kv.first] = std::move(v);
    }
  Kokkos::deep_copy(params, h);
  if (buffers)
    for (auto& kv : read_buffers) (*buffers)[kv.first] = std::move(kv.second);
  return s.metadata;
}

}  // namespace io
}  // namespace scorekit
