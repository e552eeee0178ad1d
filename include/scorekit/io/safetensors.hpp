// safetensors files (the format of Hugging Face's safetensors library, which PyTorch users read with
// safetensors.torch.load_file and write with save_file): an 8-byte little-endian header length N, N
// bytes of JSON mapping each tensor's name to its dtype, shape and [begin, end) byte range in the data
// that follows, and an optional "__metadata__" map of strings; the data is little-endian and C-ordered.
// The JSON is parsed by nlohmann-json (Debian's nlohmann-json3-dev).
//
// read_safetensors/write_safetensors move whole files (any dtype the format names); io/parameters.hpp
// moves a network's parameters through them. Host code with the standard library and nlohmann-json
// only (no Kokkos), so that the parser is fuzzed alone (tests/fuzz/fuzz_safetensors.cpp).
//
// Refused with an io_error naming the file (and the tensor) and the problem, before anything beyond the
// file's size is allocated: a header length larger than the file (or than the format's 100 MB limit),
// JSON that does not parse or is not the format's (a tensor without dtype, shape or data_offsets, a
// negative or fractional number, an unknown dtype, a metadata value that is not a string, a key given
// twice), a byte range that does not match its dtype and shape, lies outside the data, overlaps another
// or leaves a hole (the format's data is covered exactly). Writing is atomic
// (core/file.hpp), with the tensors in name order and the header padded with spaces to 8 bytes (the
// reference writer's alignment), so the same content gives the same bytes.
// scorekit-requires: SCOREKIT_HAVE_NLOHMANN_JSON
#pragma once

#ifndef SCOREKIT_HAVE_NLOHMANN_JSON
#error \
    "scorekit/io/safetensors.hpp needs nlohmann-json, and this build of scorekit has none: install Debian's nlohmann-json3-dev (scripts/setup.sh does), reconfigure, and link scorekit::scorekit (which then defines SCOREKIT_HAVE_NLOHMANN_JSON)"
#endif

#include <scorekit/core/error.hpp>
#include <scorekit/core/file.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace scorekit {
namespace io {

/// One tensor of a safetensors file: dtype name as the format writes it ("F32", "BF16", ...), shape,
/// and its little-endian C-ordered bytes.
struct SafetensorsTensor {
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> bytes;
};

/// A whole safetensors file.
struct Safetensors {
  std::map<std::string, std::string> metadata;
  std::map<std::string, SafetensorsTensor> tensors;
};

namespace safetensors_detail {

/// The size of one element of each dtype the format names; 0 for a name it does not.
inline int dtype_size(const std::string& d) {
  static const std::map<std::string, int> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"I64", 8},     {"U64", 8}, {"F64", 8}};
  const auto it = sizes.find(d);
  return it == sizes.end() ? 0 : it->second;
}

/// A value (an integer, float or double) to and from its little-endian bytes.
template <class T>
void put_le(T v, std::uint8_t* out) {
  std::uint8_t raw[sizeof(T)];
  std::memcpy(raw, &v, sizeof(T));
  for (std::size_t k = 0; k < sizeof(T); ++k)
    out[k] = raw[scorekit::detail::host_is_little_endian() ? k : sizeof(T) - 1 - k];
}
template <class T>
T get_le(const std::uint8_t* in) {
  std::uint8_t raw[sizeof(T)];
  for (std::size_t k = 0; k < sizeof(T); ++k)
    raw[k] = in[scorekit::detail::host_is_little_endian() ? k : sizeof(T) - 1 - k];
  T v;
  std::memcpy(&v, raw, sizeof(T));
  return v;
}

/// The reference implementation refuses headers above 100 MB.
constexpr std::uint64_t max_header = 100000000;

}  // namespace safetensors_detail

/// Reads a safetensors file (see the top of this file for what is refused).
inline Safetensors read_safetensors(const std::string& path) {
  namespace sd = safetensors_detail;
  using scorekit::detail::concat;
  using scorekit::detail::printable;
  constexpr const char* who = "scorekit::io::read_safetensors";
  scorekit::detail::InputFile file(path, who);
  const std::string where = concat(who, ": '", printable(path), "': ");
  auto fail = [&](const std::string& what) { return io_error(where + what); };
  const std::uint64_t size = file.size();
  if (size < 8) throw fail(concat("truncated: ", size, " bytes, less than the 8-byte header length"));
  std::uint8_t n8[8];
  file.read(0, n8, 8);
  const std::uint64_t n = sd::get_le<std::uint64_t>(n8);
  if (n > size - 8)
    throw fail(concat("the header length is ", n, " bytes, but the file holds only ", size - 8, " after it",
                      n > sd::max_header ? " (not a safetensors file?)" : ""));
  if (n > sd::max_header)
    throw fail(concat("the header length is ", n, " bytes, above the format's limit of ", sd::max_header));
  std::string text(std::size_t(n), '\0');
  file.read(8, &text[0], text.size());

  // Parse, refusing a key given twice at any level (nlohmann keeps the last one silently).
  std::vector<std::set<std::string>> keys;  // one set per object being parsed
  nlohmann::json header;
  try {
    header =
        nlohmann::json::parse(text, [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
          using E = nlohmann::json::parse_event_t;
          if (event == E::object_start) {
            keys.emplace_back();
          } else if (event == E::object_end) {
            if (!keys.empty()) keys.pop_back();
          } else if (event == E::key && !keys.empty()) {
            const std::string k = parsed.get<std::string>();
            if (!keys.back().insert(k).second)
              throw fail(concat("the header gives the key '", printable(k), "' twice"));
          }
          return true;
        });
  } catch (const nlohmann::json::exception& e) {
    throw fail(concat("the header is not JSON (", printable(e.what()), ")"));
  }
  if (!header.is_object()) throw fail("the header is not a JSON object");

  Safetensors out;
  struct Range {
    std::uint64_t begin, end;
    std::string name;
  };
  std::vector<Range> ranges;
  const std::uint64_t data_size = size - 8 - n;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw fail("__metadata__ is not an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          throw fail(concat("__metadata__ entry '", printable(m.key()), "' is not a string"));
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string at = concat("tensor '", printable(name), "': ");
    if (!v.is_object() || v.size() != 3 || !v.contains("dtype") || !v.contains("shape") ||
        !v.contains("data_offsets"))
      throw fail(at + "not an object of exactly dtype, shape and data_offsets");
    const nlohmann::json &dt = v["dtype"], &sh = v["shape"], &off = v["data_offsets"];
    if (!dt.is_string()) throw fail(at + "its dtype is not a string");
    SafetensorsTensor t;
    t.dtype = dt.get<std::string>();
    const int item = sd::dtype_size(t.dtype);
    if (item == 0) throw fail(concat(at, "unknown dtype '", printable(t.dtype), "'"));
    if (!sh.is_array()) throw fail(at + "its shape is not an array");
    // The nonzero sizes times the item size reach at most 2^62 whether or not a zero empties the tensor,
    // so that every size and every product of sizes fits a signed 64-bit integer.
    std::vector<std::uint64_t> sizes;
    for (const auto& s : sh) {
      if (!s.is_number_unsigned())
        throw fail(at + "its shape holds something other than a non-negative integer");
      sizes.push_back(s.get<std::uint64_t>());
    }
    std::uint64_t bytes = 0;
    if (!scorekit::detail::array_bytes(sizes, std::uint64_t(item), std::uint64_t(1) << 62, bytes))
      throw fail(at + "its shape is too large for any file");
    t.shape.assign(sizes.begin(), sizes.end());
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw fail(at + "its data_offsets are not two non-negative integers");
    const std::uint64_t begin = off[0].get<std::uint64_t>(), end = off[1].get<std::uint64_t>();
    if (begin > end || end > data_size)
      throw fail(concat(at, "its data_offsets [", begin, ", ", end, ") lie outside the ", data_size,
                        " bytes of data"));
    if (end - begin != bytes)
      throw fail(concat(at, "its data_offsets hold ", end - begin, " bytes, but ", t.dtype,
                        " of this shape needs ", bytes));
    ranges.push_back({begin, end, name});
    out.tensors.emplace(name, std::move(t));
  }
  // The data is covered exactly, in order of the ranges: no overlap, no hole.
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin < b.begin || (a.begin == b.begin && a.end < b.end);
  });
  std::uint64_t covered = 0;
  for (const Range& r : ranges) {
    if (r.begin != covered)
      throw fail(
          concat("tensor '", printable(r.name), "' starts at byte ", r.begin, " of the data, ",
                 r.begin < covered ? "inside the tensor before it (overlap)" : "after a hole; expected ",
                 r.begin < covered ? "" : std::to_string(covered)));
    covered = r.end;
  }
  if (covered != data_size)
    throw fail(concat("the tensors cover ", covered, " of the ", data_size, " bytes of data"));
  for (const Range& r : ranges)
    out.tensors[r.name].bytes = file.read(8 + n + r.begin, std::size_t(r.end - r.begin));
  return out;
}

/// Writes a safetensors file atomically (see the top of this file); throws invalid_argument when a
/// tensor's bytes do not match its dtype and shape.
inline void write_safetensors(const std::string& path, const Safetensors& s) {
  namespace sd = safetensors_detail;
  using scorekit::detail::concat;
  constexpr const char* who = "scorekit::io::write_safetensors";
  nlohmann::json header = nlohmann::json::object();
  if (!s.metadata.empty()) header["__metadata__"] = s.metadata;
  std::uint64_t offset = 0;
  for (const auto& kv : s.tensors) {
    const SafetensorsTensor& t = kv.second;
    const int item = sd::dtype_size(t.dtype);
    if (item == 0)
      throw invalid_argument(concat(who, ": tensor '", kv.first, "': unknown dtype '", t.dtype, "'"));
    std::uint64_t count = 1;
    for (const std::int64_t e : t.shape) {
      if (e < 0) throw invalid_argument(concat(who, ": tensor '", kv.first, "' has a negative dimension"));
      count *= std::uint64_t(e);
    }
    if (t.bytes.size() != count * std::uint64_t(item))
      throw invalid_argument(concat(who, ": tensor '", kv.first, "' has ", t.bytes.size(), " bytes; ",
                                    t.dtype, " of its shape needs ", count * std::uint64_t(item)));
    header[kv.first] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::uint8_t n8[8];
  sd::put_le<std::uint64_t>(text.size(), n8);
  scorekit::detail::AtomicFile file(path, who);
  file.write(n8, 8);
  file.write(text);
  for (const auto& kv : s.tensors) file.write(kv.second.bytes.data(), kv.second.bytes.size());
  file.commit();
}

}  // namespace io
}  // namespace scorekit
