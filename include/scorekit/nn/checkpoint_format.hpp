// The checkpoint file format: bytes to and from a CheckpointContent (signature, step, metadata, named
// arrays). Host code with the standard library only (no Kokkos), so that the parser is fuzzed alone
// (tests/fuzz/fuzz_checkpoint.cpp); nn/checkpoint.hpp builds the Checkpoint class on it.
//
// Reading checks the 20-byte header against the file's size before it reads the rest: a file that is
// not a checkpoint costs 20 bytes, and nothing larger than the file is allocated. Text read from a file
// (names, keys, signatures) goes into error messages escaped (core/file.hpp printable()).
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

/// One named array as stored: value type, count and the little-endian bytes.
struct CheckpointArray {
  std::string name;
  DType dtype;
  std::size_t count;
  std::vector<std::uint8_t> bytes;
};

/// Everything a checkpoint file holds.
struct CheckpointContent {
  std::string signature;
  std::uint64_t step = 0;
  std::map<std::string, std::string> metadata;
  std::vector<CheckpointArray> arrays;
};

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

/// The format version this build writes, and the newest it reads.
constexpr std::uint32_t format_version = 1;

/// Writes `c` to `path` atomically (see core/file.hpp AtomicFile); `who` prefixes every error.
inline void write_checkpoint_file(const std::string& path, const CheckpointContent& c, const char* who) {
  if (c.signature.empty())
    throw invalid_argument(scorekit::detail::concat(
        who, ": '", path, "': the checkpoint has no signature (name the architecture and value type)"));
  std::vector<std::uint8_t> content;
  std::size_t total = 64 + c.signature.size();
  for (const auto& a : c.arrays) total += 16 + a.name.size() + a.bytes.size();
  content.reserve(total);
  put_u64(content, c.step);
  put_string(content, c.signature);
  put_u32(content, std::uint32_t(c.metadata.size()));
  for (const auto& kv : c.metadata) {
    put_string(content, kv.first);
    put_string(content, kv.second);
  }
  put_u32(content, std::uint32_t(c.arrays.size()));
  for (const auto& a : c.arrays) {
    put_string(content, a.name);
    content.push_back(std::uint8_t(a.dtype));
    put_u64(content, a.count);
    content.insert(content.end(), a.bytes.begin(), a.bytes.end());
  }
  std::vector<std::uint8_t> header(magic, magic + 8);
  put_u32(header, format_version);
  put_u64(header, content.size());
  std::vector<std::uint8_t> trailer;
  put_u32(trailer, scorekit::detail::crc32(content.data(), content.size()));

  scorekit::detail::AtomicFile file(path, who);
  file.write(header.data(), header.size());
  file.write(content.data(), content.size());
  file.write(trailer.data(), trailer.size());
  file.commit();
}

/// Reads a checkpoint file (see the top of this file for what is refused); every failure is an
/// io_error naming `who`, the file and the problem.
inline CheckpointContent read_checkpoint_file(const std::string& path, const char* who) {
  scorekit::detail::InputFile file(path, who);
  const std::string where = scorekit::detail::concat(who, ": '", scorekit::detail::printable(path), "': ");
  auto fail = [&](const std::string& what) { return io_error(where + what); };

  // The header first: the magic, the version and the declared length against the file's size.
  const std::uint64_t size = file.size();
  std::uint8_t header[header_size];
  const std::size_t head = size < header_size ? std::size_t(size) : header_size;
  file.read(0, header, head);
  const std::size_t probe = head < 8 ? head : 8;
  if (probe > 0 && std::memcmp(header, magic, probe) != 0)
    throw fail("not a scorekit checkpoint (the file does not start with the checkpoint magic bytes)");
  if (size < header_size)
    throw fail(scorekit::detail::concat("truncated: the file has ", size, " bytes, less than the ",
                                        header_size, "-byte header"));
  const std::uint32_t version = get_u32(header + 8);
  if (version > format_version)
    throw fail(scorekit::detail::concat("written in checkpoint format version ", version,
                                        ", but this build of scorekit reads versions up to ", format_version,
                                        " (use a newer scorekit)"));
  if (version == 0) throw fail("corrupt: format version 0 does not exist");
  const std::uint64_t length = get_u64(header + 12);
  const std::uint64_t available = size - header_size;
  if (length > available || available - length < trailer_size)
    throw fail(scorekit::detail::concat("truncated: the header announces ", length,
                                        " bytes of content and a ", trailer_size, "-byte checksum, but only ",
                                        available, " bytes follow the header"));
  if (available - length > trailer_size)
    throw fail(scorekit::detail::concat("corrupt: ", available - length - trailer_size,
                                        " unexpected bytes after the checksum"));
  // Only now the content, whose length the file's size bounds.
  const std::vector<std::uint8_t> bytes = file.read(header_size, std::size_t(length + trailer_size));
  const std::uint8_t* content = bytes.data();
  const std::uint32_t stored = get_u32(content + length);
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
                                          header_size + pos, ")"));
  };
  auto u8 = [&](const char* what) {
    need(1, what);
    return content[pos++];
  };
  auto u32 = [&](const char* what) {
    need(4, what);
    const std::uint32_t x = get_u32(content + pos);
    pos += 4;
    return x;
  };
  auto u64 = [&](const char* what) {
    need(8, what);
    const std::uint64_t x = get_u64(content + pos);
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

  using scorekit::detail::printable;
  CheckpointContent cp;
  cp.step = u64("the step");
  cp.signature = str("the signature");
  const std::uint32_t n_metadata = u32("the metadata count");
  for (std::uint32_t k = 0; k < n_metadata; ++k) {
    std::string key = str("a metadata key");
    std::string value = str("a metadata value");
    if (!cp.metadata.empty() && !(cp.metadata.rbegin()->first < key))
      throw fail(
          scorekit::detail::concat("corrupt: metadata key '", printable(key), "' ",
                                   cp.metadata.rbegin()->first == key ? "appears twice" : "is out of order",
                                   " (a writer stores the keys sorted, each once)"));
    cp.metadata.emplace_hint(cp.metadata.end(), std::move(key), std::move(value));
  }
  const std::uint32_t n_arrays = u32("the array count");
  std::map<std::string, bool> seen;
  for (std::uint32_t k = 0; k < n_arrays; ++k) {
    std::string name = str("an array name");
    const std::uint8_t code = u8("an array's value type");
    if (code < 1 || code > 3)
      throw fail(scorekit::detail::concat("array '", printable(name), "' has unknown value type code ",
                                          int(code), " (known: 1 f32, 2 f64, 3 u64)"));
    const DType dtype = DType(code);
    const std::uint64_t count = u64("an array's count");
    const std::size_t width = dtype_size(dtype);
    if (count > (length - pos) / width)
      throw fail(scorekit::detail::concat("corrupt: array '", printable(name), "' announces ", count, " ",
                                          dtype_name(dtype), " values, more than the content holds"));
    std::vector<std::uint8_t> values(content + pos, content + pos + count * width);
    pos += std::size_t(count * width);
    if (!seen.emplace(name, true).second)
      throw fail(scorekit::detail::concat("corrupt: array '", printable(name), "' appears twice"));
    double bad = 0;
    const std::int64_t at = first_non_finite(dtype, values, bad);
    if (at >= 0)
      throw fail(scorekit::detail::concat("array '", printable(name), "' holds ", bad, " at index ", at,
                                          "; refusing to load a checkpoint with NaN or infinite values"));
    cp.arrays.push_back(CheckpointArray{std::move(name), dtype, std::size_t(count), std::move(values)});
  }
  if (pos != length)
    throw fail(scorekit::detail::concat("corrupt: ", length - pos, " unexpected bytes after the last array"));
  return cp;
}

}  // namespace checkpoint_detail
}  // namespace nn
}  // namespace scorekit
