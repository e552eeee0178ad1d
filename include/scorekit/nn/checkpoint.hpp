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
// File format, version 1 (all integers little-endian; floats IEEE 754 binary32/binary64, stored as
// their bit patterns in little-endian order):
//   fixed header, 20 bytes:
//     0   8  magic 0x89 'S' 'K' 'C' '\r' '\n' 0x1A '\n' (the PNG idea: the high byte and the line
//            endings reveal transfers in 7-bit or text mode)
//     8   4  u32 format version
//     12  8  u64 content length L
//   content, L bytes:
//     u64 step
//     str signature                      (str = u32 byte count, then the bytes, no terminator)
//     u32 number of metadata entries, then per entry (sorted by key): str key, str value
//     u32 number of arrays, then per array: str name, u8 value type (1 f32, 2 f64, 3 u64),
//         u64 count, count values
//   trailer: u32 CRC-32 (IEEE 802.3, core/file.hpp) of the content.
// A reader of version k reads every version <= k and refuses newer ones by name: a later version may
// change anything after the version field.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/file.hpp>
#include <scorekit/core/kokkos.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace scorekit {
namespace nn {

/// Value type of a checkpoint array; the numbers are part of the file format.
enum class DType : std::uint8_t { f32 = 1, f64 = 2, u64 = 3 };

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "f32";
    case DType::f64:
      return "f64";
    case DType::u64:
      return "u64";
  }
  return "unknown";
}

/// The DType of float, double and std::uint64_t (other types do not compile).
template <class T>
constexpr DType dtype_of() {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value ||
                    std::is_same<T, std::uint64_t>::value,
                "scorekit::nn::Checkpoint: arrays hold float, double or std::uint64_t values");
  return std::is_same<T, float>::value    ? DType::f32
         : std::is_same<T, double>::value ? DType::f64
                                          : DType::u64;
}

namespace checkpoint_detail {

constexpr std::uint8_t magic[8] = {0x89, 'S', 'K', 'C', '\r', '\n', 0x1A, '\n'};
constexpr std::size_t header_size = 20;
constexpr std::size_t trailer_size = 4;

inline std::size_t dtype_size(DType t) { return t == DType::f32 ? 4 : 8; }

using scorekit::detail::host_is_little_endian;

inline void put_u32(std::vector<std::uint8_t>& out, std::uint32_t x) {
  for (int k = 0; k < 4; ++k) out.push_back(std::uint8_t(x >> (8 * k)));
}
inline void put_u64(std::vector<std::uint8_t>& out, std::uint64_t x) {
  for (int k = 0; k < 8; ++k) out.push_back(std::uint8_t(x >> (8 * k)));
}
inline void put_string(std::vector<std::uint8_t>& out, const std::string& s) {
  put_u32(out, std::uint32_t(s.size()));
  out.insert(out.end(), s.begin(), s.end());
}
inline std::uint32_t get_u32(const std::uint8_t* p) {
  std::uint32_t x = 0;
  for (int k = 0; k < 4; ++k) x |= std::uint32_t(p[k]) << (8 * k);
  return x;
}
inline std::uint64_t get_u64(const std::uint8_t* p) {
  std::uint64_t x = 0;
  for (int k = 0; k < 8; ++k) x |= std::uint64_t(p[k]) << (8 * k);
  return x;
}

/// Values -> their little-endian bytes.
template <class T>
std::vector<std::uint8_t> encode(const T* data, std::size_t count) {
  std::vector<std::uint8_t> bytes(count * sizeof(T));
  if (count == 0) return bytes;
  if (host_is_little_endian()) {
    std::memcpy(bytes.data(), data, bytes.size());
  } else {
    for (std::size_t i = 0; i < count; ++i) {
      std::uint8_t raw[sizeof(T)];
      std::memcpy(raw, data + i, sizeof(T));
      for (std::size_t k = 0; k < sizeof(T); ++k) bytes[i * sizeof(T) + k] = raw[sizeof(T) - 1 - k];
    }
  }
  return bytes;
}

/// Little-endian bytes -> values.
template <class T>
std::vector<T> decode(const std::vector<std::uint8_t>& bytes) {
  const std::size_t count = bytes.size() / sizeof(T);
  std::vector<T> values(count);
  if (count == 0) return values;
  if (host_is_little_endian()) {
    std::memcpy(values.data(), bytes.data(), count * sizeof(T));
  } else {
    for (std::size_t i = 0; i < count; ++i) {
      std::uint8_t raw[sizeof(T)];
      for (std::size_t k = 0; k < sizeof(T); ++k) raw[k] = bytes[i * sizeof(T) + sizeof(T) - 1 - k];
      std::memcpy(&values[i], raw, sizeof(T));
    }
  }
  return values;
}

/// Index of the first NaN or infinity among the values of a float array, or -1.
inline std::int64_t first_non_finite(DType dtype, const std::vector<std::uint8_t>& bytes, double& value) {
  if (dtype == DType::f32) {
    const std::vector<float> v = decode<float>(bytes);
    for (std::size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i])) return value = v[i], std::int64_t(i);
  } else if (dtype == DType::f64) {
    const std::vector<double> v = decode<double>(bytes);
    for (std::size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i])) return value = v[i], std::int64_t(i);
  }
  return -1;
}

}  // namespace checkpoint_detail

class Checkpoint;
void save_checkpoint(const std::string& path, const Checkpoint& checkpoint);
Checkpoint load_checkpoint(const std::string& path);

class Checkpoint {
 public:
  /// The format version this build writes, and the newest it reads.
  static constexpr std::uint32_t format_version = 1;

  Checkpoint() = default;
  explicit Checkpoint(std::string signature, std::uint64_t step = 0)
      : m_signature(std::move(signature)), m_step(step) {}

  const std::string& signature() const { return m_signature; }
  void set_signature(std::string signature) { m_signature = std::move(signature); }
  std::uint64_t step() const { return m_step; }
  void set_step(std::uint64_t step) { m_step = step; }
  /// The file this checkpoint was loaded from ("<memory>" otherwise), for messages.
  const std::string& source() const { return m_source; }

  /// Sets (or replaces) a metadata entry. Throws invalid_argument when the key is empty.
  void set_metadata(const std::string& key, std::string value) {
    if (key.empty()) throw invalid_argument("scorekit::nn::Checkpoint::set_metadata: the key is empty");
    m_metadata[key] = std::move(value);
  }
  bool has_metadata(const std::string& key) const { return m_metadata.count(key) != 0; }
  /// The value of a metadata entry; throws io_error naming the source when there is none.
  const std::string& metadata(const std::string& key) const {
    const auto it = m_metadata.find(key);
    if (it == m_metadata.end())
      throw io_error(scorekit::detail::concat(where(), "metadata entry '", key, "' is missing"));
    return it->second;
  }
  const std::map<std::string, std::string>& all_metadata() const { return m_metadata; }

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
    for (const Array& a : m_arrays) out.push_back(a.name);
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
    if (m_signature != expected)
      throw io_error(scorekit::detail::concat(where(), "signature mismatch: the checkpoint holds '",
                                              m_signature, "', expected '", expected,
                                              "' (another architecture or value type)"));
  }

 private:
  struct Array {
    std::string name;
    DType dtype;
    std::size_t count;
    std::vector<std::uint8_t> bytes;  // little-endian, as in the file
  };

  std::string where() const {
    return scorekit::detail::concat("scorekit::nn::Checkpoint: '", m_source, "': ");
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
    m_index.emplace(a.name, m_arrays.size());
    m_arrays.push_back(std::move(a));
  }

  const Array& find(const std::string& name) const {
    const auto it = m_index.find(name);
    if (it == m_index.end()) {
      std::string list;
      for (std::size_t k = 0; k < m_arrays.size() && k < 20; ++k)
        list += (k ? ", '" : "'") + m_arrays[k].name + "'";
      if (m_arrays.size() > 20) list += ", ...";
      throw io_error(scorekit::detail::concat(where(), "array '", name, "' is missing (the checkpoint holds ",
                                              m_arrays.empty() ? std::string("no arrays") : list, ")"));
    }
    return m_arrays[it->second];
  }

  std::string m_signature;
  std::uint64_t m_step = 0;
  std::string m_source = "<memory>";
  std::map<std::string, std::string> m_metadata;
  std::vector<Array> m_arrays;
  std::map<std::string, std::size_t> m_index;

  friend void save_checkpoint(const std::string& path, const Checkpoint& checkpoint);
  friend Checkpoint load_checkpoint(const std::string& path);
};

/// Writes `checkpoint` to `path` atomically (see the top of this file). Throws invalid_argument when
/// the signature is empty, and io_error naming the path and the OS error when the file cannot be
/// written; then no file and no temporary file are left (an older file under `path` is kept).
inline void save_checkpoint(const std::string& path, const Checkpoint& checkpoint) {
  namespace cd = checkpoint_detail;
  constexpr const char* who = "scorekit::nn::save_checkpoint";
  if (checkpoint.m_signature.empty())
    throw invalid_argument(scorekit::detail::concat(
        who, ": '", path, "': the checkpoint has no signature (name the architecture and value type)"));
  std::vector<std::uint8_t> content;
  std::size_t total = 64 + checkpoint.m_signature.size();
  for (const auto& a : checkpoint.m_arrays) total += 16 + a.name.size() + a.bytes.size();
  content.reserve(total);
  cd::put_u64(content, checkpoint.m_step);
  cd::put_string(content, checkpoint.m_signature);
  cd::put_u32(content, std::uint32_t(checkpoint.m_metadata.size()));
  for (const auto& kv : checkpoint.m_metadata) {
    cd::put_string(content, kv.first);
    cd::put_string(content, kv.second);
  }
  cd::put_u32(content, std::uint32_t(checkpoint.m_arrays.size()));
  for (const auto& a : checkpoint.m_arrays) {
    cd::put_string(content, a.name);
    content.push_back(std::uint8_t(a.dtype));
    cd::put_u64(content, a.count);
    content.insert(content.end(), a.bytes.begin(), a.bytes.end());
  }
  std::vector<std::uint8_t> header(cd::magic, cd::magic + 8);
  cd::put_u32(header, Checkpoint::format_version);
  cd::put_u64(header, content.size());
  std::vector<std::uint8_t> trailer;
  cd::put_u32(trailer, scorekit::detail::crc32(content.data(), content.size()));

  scorekit::detail::AtomicFile file(path, who);
  file.write(header.data(), header.size());
  file.write(content.data(), content.size());
  file.write(trailer.data(), trailer.size());
  file.commit();
}

/// Reads a checkpoint written by save_checkpoint (see the top of this file for what is refused). Every
/// failure is an io_error whose message names the file and the problem.
inline Checkpoint load_checkpoint(const std::string& path) {
  namespace cd = checkpoint_detail;
  constexpr const char* who = "scorekit::nn::load_checkpoint";
  const std::vector<std::uint8_t> bytes = scorekit::detail::read_file(path, who);
  const std::string where = scorekit::detail::concat(who, ": '", path, "': ");
  auto fail = [&](const std::string& what) { return io_error(where + what); };

  const std::size_t size = bytes.size();
  const std::size_t probe = size < 8 ? size : 8;
  if (probe > 0 && std::memcmp(bytes.data(), cd::magic, probe) != 0)
    throw fail("not a scorekit checkpoint (the file does not start with the checkpoint magic bytes)");
  if (size < cd::header_size)
    throw fail(scorekit::detail::concat("truncated: the file has ", size, " bytes, less than the ",
                                        cd::header_size, "-byte header"));
  const std::uint32_t version = cd::get_u32(bytes.data() + 8);
  if (version > Checkpoint::format_version)
    throw fail(scorekit::detail::concat("written in checkpoint format version ", version,
                                        ", but this build of scorekit reads versions up to ",
                                        Checkpoint::format_version, " (use a newer scorekit)"));
  if (version == 0) throw fail("corrupt: format version 0 does not exist");
  const std::uint64_t length = cd::get_u64(bytes.data() + 12);
  const std::size_t available = size - cd::header_size;
  if (length > available || available - length < cd::trailer_size)
    throw fail(scorekit::detail::concat("truncated: the header announces ", length,
                                        " bytes of content and a ", cd::trailer_size,
                                        "-byte checksum, but only ", available, " bytes follow the header"));
  if (available - length > cd::trailer_size)
    throw fail(scorekit::detail::concat("corrupt: ", available - length - cd::trailer_size,
                                        " unexpected bytes after the checksum"));
  const std::uint8_t* content = bytes.data() + cd::header_size;
  const std::uint32_t stored = cd::get_u32(content + length);
  const std::uint32_t computed = scorekit::detail::crc32(content, std::size_t(length));
  if (stored != computed)
    throw fail(scorekit::detail::concat("corrupt: the CRC-32 of the content is 0x", std::hex, computed,
                                        ", the file records 0x", stored, std::dec,
                                        " (the file was damaged after it was written)"));

  // The checksum matched, so what follows is what a writer wrote; every read is still bounds-checked.
  std::size_t pos = 0;
  auto need = [&](std::uint64_t n, const char* what) {
    if (n > length - pos)
      throw fail(scorekit::detail::concat("corrupt: the content ends inside ", what, " (at byte ",
                                          cd::header_size + pos, ")"));
  };
  auto u8 = [&](const char* what) {
    need(1, what);
    return content[pos++];
  };
  auto u32 = [&](const char* what) {
    need(4, what);
    const std::uint32_t x = cd::get_u32(content + pos);
    pos += 4;
    return x;
  };
  auto u64 = [&](const char* what) {
    need(8, what);
    const std::uint64_t x = cd::get_u64(content + pos);
    pos += 8;
    return x;
  };
  auto str = [&](const char* what) {
    const std::uint32_t n = u32(what);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(content + pos), n);
    pos += n;
    return s;
  };

  Checkpoint cp;
  cp.m_source = path;
  cp.m_step = u64("the step");
  cp.m_signature = str("the signature");
  const std::uint32_t n_metadata = u32("the metadata count");
  for (std::uint32_t k = 0; k < n_metadata; ++k) {
    std::string key = str("a metadata key");
    std::string value = str("a metadata value");
    if (!cp.m_metadata.emplace(key, std::move(value)).second)
      throw fail(scorekit::detail::concat("corrupt: metadata key '", key, "' appears twice"));
  }
  const std::uint32_t n_arrays = u32("the array count");
  for (std::uint32_t k = 0; k < n_arrays; ++k) {
    std::string name = str("an array name");
    const std::uint8_t code = u8("an array's value type");
    if (code < 1 || code > 3)
      throw fail(scorekit::detail::concat("array '", name, "' has unknown value type code ", int(code),
                                          " (known: 1 f32, 2 f64, 3 u64)"));
    const DType dtype = DType(code);
    const std::uint64_t count = u64("an array's count");
    const std::size_t width = cd::dtype_size(dtype);
    if (count > (length - pos) / width)
      throw fail(scorekit::detail::concat("corrupt: array '", name, "' announces ", count, " ",
                                          dtype_name(dtype), " values, more than the content holds"));
    std::vector<std::uint8_t> values(content + pos, content + pos + count * width);
    pos += std::size_t(count * width);
    if (cp.contains(name)) throw fail(scorekit::detail::concat("corrupt: array '", name, "' appears twice"));
    double bad = 0;
    const std::int64_t at = cd::first_non_finite(dtype, values, bad);
    if (at >= 0)
      throw fail(scorekit::detail::concat("array '", name, "' holds ", bad, " at index ", at,
                                          "; refusing to load a checkpoint with NaN or infinite values"));
    cp.insert(Checkpoint::Array{std::move(name), dtype, std::size_t(count), std::move(values)});
  }
  if (pos != length)
    throw fail(scorekit::detail::concat("corrupt: ", length - pos, " unexpected bytes after the last array"));
  return cp;
}

}  // namespace nn
}  // namespace scorekit
