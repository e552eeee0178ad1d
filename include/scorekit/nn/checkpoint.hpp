// Checkpoints: a network's parameters, its optimiser and EMA state and anything else a training run
// needs to resume, in one versioned, checksummed binary file written atomically (a failed or
// interrupted save leaves the previous file, or none, and no temporary file).
//
// A Checkpoint (host memory) holds a signature (a string naming the architecture and the value type,
// which the caller checks on load with require_signature), a step number, string metadata, and named
// arrays of f32, f64 or u64 values. Loading refuses, with an io_error naming the file and the problem, a
// missing or unreadable file, a file that is not a checkpoint, one written by a newer format version, a
// truncated or corrupt (checksum) file, an unknown value type, duplicate names, and float arrays holding
// NaN or infinity; reading an entry refuses a missing name, another value type, or another count than
// the caller's network expects ("architecture mismatch").
//
// The file format is in nn/checkpoint_format.hpp.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/file.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/nn/checkpoint_format.hpp>

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace scorekit {
namespace nn {

class Checkpoint;
void save_checkpoint(const std::string& path, const Checkpoint& checkpoint);
Checkpoint load_checkpoint(const std::string& path);

class Checkpoint {
 public:
  /// The format version this build writes, and the newest it reads.
  static constexpr std::uint32_t format_version = checkpoint_detail::format_version;

  Checkpoint() = default;
  explicit Checkpoint(std::string signature, std::uint64_t step = 0) {
    m_content.signature = std::move(signature);
    m_content.step = step;
  }

  const std::string& signature() const { return m_content.signature; }
  void set_signature(std::string signature) { m_content.signature = std::move(signature); }
  std::uint64_t step() const { return m_content.step; }
  void set_step(std::uint64_t step) { m_content.step = step; }
  /// The file this checkpoint was loaded from ("<memory>" otherwise), for messages.
  const std::string& source() const { return m_source; }

  /// Sets (or replaces) a metadata entry. Throws invalid_argument when the key is empty.
  void set_metadata(const std::string& key, std::string value) {
    if (key.empty()) throw invalid_argument("scorekit::nn::Checkpoint::set_metadata: the key is empty");
    m_content.metadata[key] = std::move(value);
  }
  bool has_metadata(const std::string& key) const { return m_content.metadata.count(key) != 0; }
  /// The value of a metadata entry; throws io_error naming the source when there is none.
  const std::string& metadata(const std::string& key) const {
    const auto it = m_content.metadata.find(key);
    if (it == m_content.metadata.end())
      throw io_error(scorekit::detail::concat(where(), "metadata entry '", key, "' is missing"));
    return it->second;
  }
  const std::map<std::string, std::string>& all_metadata() const { return m_content.metadata; }

  /// Adds an array (copying the values). Throws invalid_argument when the name is empty or already
  /// taken, or a float value is NaN or infinite (a checkpoint that could not be loaded is not written).
  void add(const std::string& name, const float* data, std::size_t count) { add_values(name, data, count); }
  void add(const std::string& name, const double* data, std::size_t count) { add_values(name, data, count); }
  void add(const std::string& name, const std::uint64_t* data, std::size_t count) {
    add_values(name, data, count);
  }
  /// Adds the values of a rank-1 view of float, double or std::uint64_t in any memory space (copied to
  /// the host first).
  template <class View, class = std::enable_if_t<Kokkos::is_view<View>::value>>
  void add(const std::string& name, const View& view) {
    static_assert(View::rank == 1, "scorekit::nn::Checkpoint::add: the view must be rank 1");
    using T = typename View::non_const_value_type;
    auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), view);
    std::vector<T> values(h.extent(0));
    for (std::size_t i = 0; i < values.size(); ++i) values[i] = h(i);
    add_values(name, values.data(), values.size());
  }

  bool contains(const std::string& name) const { return m_index.count(name) != 0; }
  /// Names of the arrays in the order they were added (or stored).
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const Array& a : m_content.arrays) out.push_back(a.name);
    return out;
  }
  /// Value type and count of an array; throw io_error when it is missing.
  DType dtype(const std::string& name) const { return find(name).dtype; }
  std::size_t count(const std::string& name) const { return find(name).count; }

  /// The values of an array of T (float, double or std::uint64_t). Throws io_error naming the source
  /// when the array is missing, holds another value type, or holds another number of values than
  /// expected_count ("architecture mismatch").
  template <class T>
  std::vector<T> get(const std::string& name, std::size_t expected_count) const {
    constexpr DType want = dtype_of<T>();
    const Array& a = find(name);
    if (a.dtype != want)
      throw io_error(scorekit::detail::concat(where(), "array '", name, "' holds ", dtype_name(a.dtype),
                                              " values, ", dtype_name(want), " requested"));
    if (a.count != expected_count)
      throw io_error(scorekit::detail::concat(where(), "array '", name, "': architecture mismatch: ", a.count,
                                              " values stored, ", expected_count, " expected"));
    return checkpoint_detail::decode<T>(a.bytes);
  }

  /// Fills a rank-1 view (any memory space) with an array of its value type and size (see get).
  template <class View>
  void get_into(const std::string& name, const View& view) const {
    static_assert(Kokkos::is_view<View>::value && View::rank == 1,
                  "scorekit::nn::Checkpoint::get_into: the destination must be a rank-1 Kokkos view");
    using T = typename View::value_type;
    static_assert(!std::is_const<T>::value, "scorekit::nn::Checkpoint::get_into: the view is read-only");
    const std::vector<T> values = get<T>(name, view.extent(0));
    auto h = Kokkos::create_mirror_view(view);
    for (std::size_t i = 0; i < values.size(); ++i) h(i) = values[i];
    Kokkos::deep_copy(view, h);
  }

  /// Throws io_error showing both signatures unless the checkpoint's equals `expected`.
  void require_signature(const std::string& expected) const {
    if (m_content.signature != expected)
      throw io_error(scorekit::detail::concat(where(), "signature mismatch: the checkpoint holds '",
                                              scorekit::detail::printable(m_content.signature),
                                              "', expected '", expected,
                                              "' (another architecture or value type)"));
  }

 private:
  using Array = CheckpointArray;

  std::string where() const {
    return scorekit::detail::concat("scorekit::nn::Checkpoint: '", scorekit::detail::printable(m_source),
                                    "': ");
  }

  template <class T>
  void add_values(const std::string& name, const T* data, std::size_t count) {
    constexpr const char* who = "scorekit::nn::Checkpoint::add";
    if (name.empty()) throw invalid_argument(scorekit::detail::concat(who, ": the array name is empty"));
    if (contains(name))
      throw invalid_argument(scorekit::detail::concat(who, ": an array named '", name, "' is already there"));
    if (count > 0 && data == nullptr)
      throw invalid_argument(
          scorekit::detail::concat(who, ": array '", name, "' has ", count, " values but a null pointer"));
    if (!std::is_integral<T>::value)
      for (std::size_t i = 0; i < count; ++i)
        if (!std::isfinite(double(data[i])))
          throw invalid_argument(scorekit::detail::concat(who, ": array '", name, "' holds ", double(data[i]),
                                                          " at index ", i,
                                                          "; a checkpoint with NaN or infinite values would "
                                                          "be refused on load"));
    insert(Array{name, dtype_of<T>(), count, checkpoint_detail::encode(data, count)});
  }

  void insert(Array a) {
    m_index.emplace(a.name, m_content.arrays.size());
    m_content.arrays.push_back(std::move(a));
  }

  const Array& find(const std::string& name) const {
    const auto it = m_index.find(name);
    if (it == m_index.end()) {
      std::string list;
      for (std::size_t k = 0; k < m_content.arrays.size() && k < 20; ++k)
        list += (k ? ", '" : "'") + scorekit::detail::printable(m_content.arrays[k].name) + "'";
      if (m_content.arrays.size() > 20) list += ", ...";
      throw io_error(scorekit::detail::concat(where(), "array '", name, "' is missing (the checkpoint holds ",
                                              m_content.arrays.empty() ? std::string("no arrays") : list,
                                              ")"));
    }
    return m_content.arrays[it->second];
  }

  CheckpointContent m_content;
  std::string m_source = "<memory>";
  std::map<std::string, std::size_t> m_index;

  friend void save_checkpoint(const std::string& path, const Checkpoint& checkpoint);
  friend Checkpoint load_checkpoint(const std::string& path);
};

/// Writes `checkpoint` to `path` atomically (see nn/checkpoint_format.hpp). Throws invalid_argument when
/// the signature is empty, and io_error naming the path and the OS error when the file cannot be
/// written; then no file and no temporary file are left (an older file under `path` is kept).
inline void save_checkpoint(const std::string& path, const Checkpoint& checkpoint) {
  checkpoint_detail::write_checkpoint_file(path, checkpoint.m_content, "scorekit::nn::save_checkpoint");
}

/// Reads a checkpoint written by save_checkpoint (see nn/checkpoint_format.hpp for what is refused).
/// Every failure is an io_error whose message names the file and the problem.
inline Checkpoint load_checkpoint(const std::string& path) {
  Checkpoint cp;
  cp.m_content = checkpoint_detail::read_checkpoint_file(path, "scorekit::nn::load_checkpoint");
  cp.m_source = path;
  for (std::size_t k = 0; k < cp.m_content.arrays.size(); ++k)
    cp.m_index.emplace(cp.m_content.arrays[k].name, k);
  return cp;
}

}  // namespace nn
}  // namespace scorekit
