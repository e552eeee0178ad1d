// Reading NumPy's files: NPY (format versions 1.0, 2.0 and 3.0, as numpy.save writes them) and NPZ (a
// zip archive of NPY files, as numpy.savez writes them stored and numpy.savez_compressed deflated, with
// or without zip64 records). Host code with the standard library and zlib only (no Kokkos), so that the
// parsers are fuzzed alone (tests/fuzz/fuzz_npy.cpp); io/arrays.hpp turns an array into a Kokkos view.
// Writing NPY is io/samples.hpp's write_npy.
//
// What is read is checked against the file before anything is allocated: the header length and the
// data size that the shape and dtype declare against the file's size (an NPY file must hold exactly
// that many bytes after its header), every zip offset and size against the archive's size, and a
// deflated entry's declared size against what its compressed size can inflate to. Each entry's CRC-32
// is checked. Refused with an io_error naming the file (and the entry) and the problem: another magic
// or version, a header that is not the dictionary NumPy writes, a dtype other than little- or
// big-endian bool, integers of 1 to 8 bytes or float32/float64 (complex, float16, strings, objects and
// structured dtypes are named), negative or overflowing shapes, truncated or trailing data, and for
// NPZ: a missing end record, a multi-disk, encrypted or otherwise compressed archive, an entry that is
// not an NPY file, duplicate names, and lying sizes or checksums.
//
// An array is kept in C order with little-endian values whatever the file held (Fortran order is
// transposed, big-endian values swapped), and values<T>() converts it to float or double.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/file.hpp>

#ifdef SCOREKIT_HAVE_ZLIB
#include <zlib.h>
#endif

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace scorekit {
namespace io {

/// The element types an NPY file may hold here (NumPy's dtype kinds b, i, u, f).
enum class NpyType { boolean, int8, uint8, int16, uint16, int32, uint32, int64, uint64, float32, float64 };

inline const char* npy_type_name(NpyType t) {
  constexpr const char* names[] = {"bool",   "int8",  "uint8",  "int16",   "uint16", "int32",
                                   "uint32", "int64", "uint64", "float32", "float64"};
  return names[int(t)];
}

inline int npy_type_size(NpyType t) {
  constexpr int sizes[] = {1, 1, 1, 2, 2, 4, 4, 8, 8, 4, 8};
  return sizes[int(t)];
}

/// One array: its element type, its shape and its values in C order, little-endian.
struct NpyArray {
  NpyType type = NpyType::float64;
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> bytes;

  /// The number of elements (1 for a 0-d array).
  std::int64_t size() const {
    std::int64_t n = 1;
    for (const std::int64_t s : shape) n *= s;
    return n;
  }
  /// The values converted to T (float or double), in C order.
  template <class T>
  std::vector<T> values() const {
    static_assert(std::is_floating_point<T>::value, "scorekit::io::NpyArray::values: T is float or double");
    const std::size_t n = std::size_t(size());
    std::vector<T> out(n);
    for (std::size_t i = 0; i < n; ++i) out[i] = T(value(i));
    return out;
  }
  /// Element i (in C order) as a double.
  double value(std::size_t i) const {
    const std::uint8_t* p = bytes.data() + i * std::size_t(npy_type_size(type));
    std::uint64_t u = 0;
    for (int k = npy_type_size(type) - 1; k >= 0; --k) u = (u << 8) | p[k];
    switch (type) {
      case NpyType::boolean:
        return u != 0 ? 1.0 : 0.0;
      case NpyType::int8:
        return double(std::int8_t(std::uint8_t(u)));
      case NpyType::int16:
        return double(std::int16_t(std::uint16_t(u)));
      case NpyType::int32:
        return double(std::int32_t(std::uint32_t(u)));
      case NpyType::int64:
        return double(std::int64_t(u));
      case NpyType::float32: {
        const std::uint32_t b = std::uint32_t(u);
        float f;
        std::memcpy(&f, &b, 4);
        return double(f);
      }
      case NpyType::float64: {
        double d;
        std::memcpy(&d, &u, 8);
        return d;
      }
      default:
        return double(u);  // the unsigned types
    }
  }
};

namespace npy_detail {

constexpr std::uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
/// NumPy refuses headers longer than this by default (numpy.lib.format, max_header_size).
constexpr std::uint64_t max_header = 1u << 20;

inline std::uint64_t le(const std::uint8_t* p, int n) {
  std::uint64_t x = 0;
  for (int k = n - 1; k >= 0; --k) x = (x << 8) | p[k];
  return x;
}

/// The dictionary of an NPY header: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }.
struct Header {
  NpyType type = NpyType::float64;
  bool swap = false, fortran = false;
  std::vector<std::int64_t> shape;
};

/// Parses the header text strictly (the literal syntax NumPy writes: quoted keys, a quoted dtype
/// string, True/False, a tuple of non-negative integers); `fail` builds the error.
template <class Fail>
Header parse_header(const std::string& text, Fail fail) {
  std::size_t pos = 0;
  auto skip = [&] {
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\t')) ++pos;
  };
  auto expect = [&](char c, const char* what) {
    skip();
    if (pos >= text.size() || text[pos] != c)
      throw fail(scorekit::detail::concat("the header is not the dictionary NumPy writes (expected '", c,
                                          "' ", what, " at character ", pos, ")"));
    ++pos;
  };
  auto quoted = [&](const char* what) {
    skip();
    if (pos >= text.size() || (text[pos] != '\'' && text[pos] != '"'))
      throw fail(scorekit::detail::concat("the header is not the dictionary NumPy writes (expected a quoted ",
                                          what, " at character ", pos, ")"));
    const char q = text[pos++];
    const std::size_t end = text.find(q, pos);
    if (end == std::string::npos) throw fail("the header is not the dictionary NumPy writes (an open quote)");
    std::string s = text.substr(pos, end - pos);
    pos = end + 1;
    return s;
  };
  Header h;
  bool has_descr = false, has_order = false, has_shape = false;
  expect('{', "to open the dictionary");
  for (;;) {
    skip();
    if (pos < text.size() && text[pos] == '}') break;
    const std::string key = quoted("key");
    expect(':', "after a key");
    if (key == "descr" && !has_descr) {
      has_descr = true;
      const std::string d = quoted("dtype");
      struct Known {
        const char* code;
        NpyType type;
      };
      constexpr Known known[] = {{"b1", NpyType::boolean}, {"i1", NpyType::int8},   {"u1", NpyType::uint8},
                                 {"i2", NpyType::int16},   {"u2", NpyType::uint16}, {"i4", NpyType::int32},
                                 {"u4", NpyType::uint32},  {"i8", NpyType::int64},  {"u8", NpyType::uint64},
                                 {"f4", NpyType::float32}, {"f8", NpyType::float64}};
      bool found = false;
      if (d.size() == 3 && (d[0] == '<' || d[0] == '>' || d[0] == '|' || d[0] == '='))
        for (const Known& k : known)
          if (d.compare(1, 2, k.code) == 0) {
            found = true;
            h.type = k.type;
            h.swap = d[0] == '>' && npy_type_size(k.type) > 1;
          }
      if (!found)
        throw fail(scorekit::detail::concat(
            "dtype '", scorekit::detail::printable(d),
            "' is not one scorekit reads (bool, int8 to int64, uint8 to uint64, float32, float64; convert "
            "with numpy.ndarray.astype first)"));
    } else if (key == "fortran_order" && !has_order) {
      has_order = true;
      skip();
      if (text.compare(pos, 4, "True") == 0) {
        h.fortran = true;
        pos += 4;
      } else if (text.compare(pos, 5, "False") == 0) {
        pos += 5;
      } else {
        throw fail("the header's fortran_order is neither True nor False");
      }
    } else if (key == "shape" && !has_shape) {
      has_shape = true;
      expect('(', "to open the shape");
      for (;;) {
        skip();
        if (pos < text.size() && text[pos] == ')') break;
        if (pos >= text.size() || text[pos] < '0' || text[pos] > '9')
          throw fail(
              scorekit::detail::concat("the header's shape is not a tuple of non-negative integers (at "
                                       "character ",
                                       pos, ")"));
        std::int64_t v = 0;
        while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
          if (v > (std::numeric_limits<std::int64_t>::max() - 9) / 10)
            throw fail("the header's shape holds a number too large for any file");
          v = v * 10 + (text[pos++] - '0');
        }
        h.shape.push_back(v);
        if (h.shape.size() > 32) throw fail("the header's shape has more than 32 dimensions");
        skip();
        if (pos < text.size() && text[pos] == ',') ++pos;
      }
      ++pos;
    } else {
      throw fail(scorekit::detail::concat("the header has ",
                                          (key == "descr" || key == "fortran_order" || key == "shape")
                                              ? "a repeated key '"
                                              : "an unknown key '",
                                          scorekit::detail::printable(key), "'"));
    }
    skip();
    if (pos < text.size() && text[pos] == ',') ++pos;
  }
  ++pos;
  while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\n' || text[pos] == '\0')) ++pos;
  if (pos != text.size()) throw fail("the header has text after its dictionary");
  if (!has_descr || !has_order || !has_shape)
    throw fail(scorekit::detail::concat("the header lacks the key '",
                                        !has_descr   ? "descr"
                                        : !has_order ? "fortran_order"
                                                     : "shape",
                                        "'"));
  return h;
}

/// Reads one NPY file of `size` bytes through read(offset, destination, count); `fail` builds errors.
template <class Read, class Fail>
NpyArray read_npy_from(std::uint64_t size, Read read, Fail fail) {
  std::uint8_t prefix[12];
  const std::size_t head = size < 12 ? std::size_t(size) : 12;
  read(0, prefix, head);
  const std::size_t probe = head < 6 ? head : 6;
  if (std::memcmp(prefix, magic, probe) != 0 || size < 10)
    throw fail(size < 10 && std::memcmp(prefix, magic, probe) == 0
                   ? scorekit::detail::concat("truncated: ", size, " bytes, less than an NPY header")
                   : std::string("not an NPY file (it does not start with \\x93NUMPY)"));
  const int major = prefix[6];
  if (major < 1 || major > 3)
    throw fail(scorekit::detail::concat("NPY format version ", major, ".", int(prefix[7]),
                                        " (scorekit reads 1.0, 2.0 and 3.0)"));
  const std::uint64_t prefix_size = major == 1 ? 10 : 12;
  if (size < prefix_size) throw fail(scorekit::detail::concat("truncated: ", size, " bytes"));
  const std::uint64_t header_size = le(prefix + 8, major == 1 ? 2 : 4);
  if (header_size > size - prefix_size)
    throw fail(scorekit::detail::concat("truncated: the header announces ", header_size, " bytes, but only ",
                                        size - prefix_size, " follow"));
  if (header_size > max_header)
    throw fail(scorekit::detail::concat("the header announces ", header_size, " bytes, more than the ",
                                        max_header, " an NPY header may have"));
  std::string text(std::size_t(header_size), '\0');
  read(prefix_size, &text[0], text.size());
  const Header h = parse_header(text, fail);
  NpyArray a;
  a.type = h.type;
  a.shape = h.shape;
  const std::uint64_t item = std::uint64_t(npy_type_size(h.type));
  // NumPy's own limit: the nonzero dimensions times the item size fit a signed 64-bit integer, zeros
  // or not (so that NpyArray::size() cannot overflow either).
  std::uint64_t data = 0;
  if (!scorekit::detail::array_bytes(h.shape, item, std::uint64_t(std::numeric_limits<std::int64_t>::max()),
                                     data))
    throw fail("the shape declares more bytes than any array holds (past 2^63 - 1, NumPy's limit too)");
  const std::uint64_t available = size - prefix_size - header_size;
  if (data != available)
    throw fail(scorekit::detail::concat(
        data > available ? "truncated" : "trailing data", ": dtype ", npy_type_name(h.type), " and shape (",
        [&] {
          std::string s;
          for (std::size_t k = 0; k < h.shape.size(); ++k) s += (k ? ", " : "") + std::to_string(h.shape[k]);
          return s;
        }(),
        ") need ", data, " bytes of data, the file holds ", available));
  std::vector<std::uint8_t> raw(static_cast<std::size_t>(data));
  read(prefix_size + header_size, raw.data(), raw.size());
  const std::size_t w = std::size_t(item);
  if (h.swap)
    for (std::size_t i = 0; i < raw.size(); i += w)
      for (std::size_t k = 0; k < w / 2; ++k) std::swap(raw[i + k], raw[i + w - 1 - k]);
  const std::uint64_t count = data / item;
  if (h.fortran && h.shape.size() > 1 && count > 0) {
    // Element (i_0, ..., i_{r-1}) is at sum i_k * prod_{j<k} n_j in Fortran order: walk the C order.
    a.bytes.resize(raw.size());
    const std::size_t r = h.shape.size();
    std::vector<std::int64_t> index(r, 0), stride(r, 1);
    for (std::size_t k = 1; k < r; ++k) stride[k] = stride[k - 1] * h.shape[k - 1];
    for (std::uint64_t c = 0; c < count; ++c) {
      std::int64_t f = 0;
      for (std::size_t k = 0; k < r; ++k) f += index[k] * stride[k];
      std::memcpy(&a.bytes[std::size_t(c) * w], &raw[std::size_t(f) * w], w);
      for (std::size_t k = r; k-- > 0;) {
        if (++index[k] < h.shape[k]) break;
        index[k] = 0;
      }
    }
  } else {
    a.bytes = std::move(raw);
  }
  return a;
}

}  // namespace npy_detail

/// Reads an NPY file (see the top of this file for what is refused).
inline NpyArray read_npy(const std::string& path) {
  constexpr const char* who = "scorekit::io::read_npy";
  scorekit::detail::InputFile file(path, who);
  const std::string where = scorekit::detail::concat(who, ": '", scorekit::detail::printable(path), "': ");
  return npy_detail::read_npy_from(
      file.size(), [&](std::uint64_t at, void* out, std::size_t n) { file.read(at, out, n); },
      [&](const std::string& what) { return io_error(where + what); });
}

/// Parses NPY bytes held in memory (an NPZ entry); `source` names them in errors.
inline NpyArray parse_npy(const std::uint8_t* bytes, std::size_t size, const std::string& source) {
  return npy_detail::read_npy_from(
      size,
      [&](std::uint64_t at, void* out, std::size_t n) {
        if (n > 0) std::memcpy(out, bytes + at, n);
      },
      [&](const std::string& what) { return io_error(source + ": " + what); });
}

#ifdef SCOREKIT_HAVE_ZLIB

namespace npy_detail {

/// What a deflate stream can inflate to at most per compressed byte (RFC 1951's longest match per
/// shortest code; zlib's own bound).
constexpr std::uint64_t max_inflate_ratio = 1032;

inline std::vector<std::uint8_t> inflate_raw(const std::vector<std::uint8_t>& in, std::uint64_t out_size,
                                             const std::string& where) {
  std::vector<std::uint8_t> out(static_cast<std::size_t>(out_size));
  z_stream z{};
  if (inflateInit2(&z, -15) != Z_OK) throw io_error(where + "zlib could not start inflating");
  // In pieces of at most 1 GiB: zlib counts what it is handed in 32-bit unsigned integers.
  constexpr std::size_t piece = std::size_t(1) << 30;
  std::size_t in_done = 0, out_done = 0;
  int rc = Z_OK;
  while (rc == Z_OK) {
    const std::size_t in_now = in.size() - in_done < piece ? in.size() - in_done : piece;
    const std::size_t out_now = out.size() - out_done < piece ? out.size() - out_done : piece;
    z.next_in = const_cast<Bytef*>(in.data() + in_done);
    z.avail_in = uInt(in_now);
    z.next_out = out.data() + out_done;
    z.avail_out = uInt(out_now);
    rc = inflate(&z, Z_NO_FLUSH);
    in_done += in_now - z.avail_in;
    out_done += out_now - z.avail_out;
    if (rc == Z_OK && in_now == z.avail_in && out_now == z.avail_out) rc = Z_BUF_ERROR;  // no progress
  }
  inflateEnd(&z);
  if (rc != Z_STREAM_END || out_done != out.size() || in_done != in.size())
    throw io_error(scorekit::detail::concat(where, "corrupt: the deflate data ",
                                            rc == Z_STREAM_END ? "inflated to " : "broke off after ",
                                            out_done, " of the ", out.size(), " bytes declared"));
  return out;
}

}  // namespace npy_detail

/// Reads an NPZ archive: one array per entry, keyed by the entry's name without ".npy" (as numpy.load
/// names them). See the top of this file for what is refused.
inline std::map<std::string, NpyArray> read_npz(const std::string& path) {
  using npy_detail::le;
  using scorekit::detail::concat;
  using scorekit::detail::printable;
  constexpr const char* who = "scorekit::io::read_npz";
  scorekit::detail::InputFile file(path, who);
  const std::string where = concat(who, ": '", printable(path), "': ");
  auto fail = [&](const std::string& what) { return io_error(where + what); };
  const std::uint64_t size = file.size();
  if (size < 22) throw fail(concat("not a zip archive (", size, " bytes, less than a zip end record)"));
  if (size > 0xFFFFFFFFFFFFull) throw fail("larger than 256 TiB");
  // The end of central directory record: the last 22 bytes, or up to 65,535 bytes of comment earlier.
  const std::uint64_t tail_size = size < 22 + 65535 ? size : 22 + 65535;
  const std::vector<std::uint8_t> tail = file.read(size - tail_size, std::size_t(tail_size));
  std::int64_t eocd = -1;
  for (std::int64_t k = std::int64_t(tail_size) - 22; k >= 0; --k)
    if (le(&tail[std::size_t(k)], 4) == 0x06054b50u &&
        std::uint64_t(k) + 22 + le(&tail[std::size_t(k) + 20], 2) == tail_size) {
      eocd = k;
      break;
    }
  if (eocd < 0) throw fail("not a zip archive (no end of central directory record)");
  const std::uint8_t* e = &tail[std::size_t(eocd)];
  if (le(e + 4, 2) != 0 || le(e + 6, 2) != 0)
    throw fail("a multi-disk zip archive (not what numpy.savez writes)");
  std::uint64_t entries = le(e + 10, 2), cd_size = le(e + 12, 4), cd_offset = le(e + 16, 4);
  const std::uint64_t eocd_at = size - tail_size + std::uint64_t(eocd);
  // zip64 (numpy.savez past 4 GiB or 65,535 entries): a locator right before the end record points at
  // the zip64 end record, whose counts and offsets replace the saturated 16- and 32-bit ones.
  std::uint8_t loc[20] = {};
  if (eocd_at >= 20) file.read(eocd_at - 20, loc, 20);
  if (le(loc, 4) == 0x07064b50u) {
    if (le(loc + 4, 4) != 0 || le(loc + 16, 4) != 1)
      throw fail("a multi-disk zip archive (not what numpy.savez writes)");
    const std::uint64_t rec = le(loc + 8, 8);
    if (rec > eocd_at - 20 || eocd_at - 20 - rec < 56)
      throw fail("corrupt: the zip64 end record lies outside the archive");
    std::uint8_t r64[56];
    file.read(rec, r64, 56);
    if (le(r64, 4) != 0x06064b50u) throw fail("corrupt: no zip64 end record where its locator points");
    entries = le(r64 + 32, 8);
    cd_size = le(r64 + 40, 8);
    cd_offset = le(r64 + 48, 8);
  } else if (entries == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_offset == 0xFFFFFFFFu) {
    throw fail("corrupt: saturated sizes in the end record, but no zip64 locator");
  }
  if (cd_offset > eocd_at || cd_size > eocd_at - cd_offset)
    throw fail(concat("corrupt: the central directory (", cd_size, " bytes at ", cd_offset,
                      ") lies outside the archive"));
  if (entries > cd_size / 46)
    throw fail(concat("corrupt: ", entries, " entries cannot fit a ", cd_size, "-byte central directory"));
  const std::vector<std::uint8_t> cd = file.read(cd_offset, std::size_t(cd_size));
  std::map<std::string, NpyArray> out;
  std::size_t pos = 0;
  for (std::uint64_t k = 0; k < entries; ++k) {
    if (cd.size() - pos < 46 || le(&cd[pos], 4) != 0x02014b50u)
      throw fail(concat("corrupt: central directory entry ", k, " is not where the directory says"));
    const std::uint8_t* c = &cd[pos];
    const std::uint64_t flags = le(c + 8, 2), method = le(c + 10, 2), crc = le(c + 16, 4);
    std::uint64_t csize = le(c + 20, 4), usize = le(c + 24, 4), local = le(c + 42, 4);
    const std::size_t nlen = std::size_t(le(c + 28, 2)), xlen = std::size_t(le(c + 30, 2)),
                      clen = std::size_t(le(c + 32, 2));
    if (cd.size() - pos - 46 < nlen + xlen + clen)
      throw fail(concat("corrupt: central directory entry ", k, " runs past the directory"));
    const std::string name(reinterpret_cast<const char*>(c + 46), nlen);
    const std::string at = concat("entry '", printable(name), "': ");
    // The zip64 extra field holds, in this order, the sizes and offset whose 32-bit fields are saturated.
    for (std::size_t x = 0; x + 4 <= xlen;) {
      const std::uint8_t* f = c + 46 + nlen + x;
      const std::size_t id = std::size_t(le(f, 2)), len = std::size_t(le(f + 2, 2));
      if (x + 4 + len > xlen) throw fail(at + "corrupt: an extra field runs past its entry");
      if (id == 1) {
        std::size_t q = 4;
        for (std::uint64_t* v : {&usize, &csize, &local})
          if (*v == 0xFFFFFFFFu) {
            if (q + 8 > 4 + len) throw fail(at + "corrupt: a zip64 extra field too short for its sizes");
            *v = le(f + q, 8);
            q += 8;
          }
      }
      x += 4 + len;
    }
    pos += 46 + nlen + xlen + clen;
    if (flags & 1u) throw fail(at + "encrypted (numpy.savez does not encrypt)");
    if (method != 0 && method != 8)
      throw fail(concat(at, "compression method ", method, " (scorekit reads stored and deflated entries)"));
    if (nlen < 5 || name.compare(nlen - 4, 4, ".npy") != 0)
      throw fail(at + "not an NPY file (an NPZ archive holds only <name>.npy entries)");
    const std::string key = name.substr(0, nlen - 4);
    if (out.count(key)) throw fail(concat("corrupt: two entries named '", printable(name), "'"));
    // The local header: 30 bytes, its own name and extra field, then the data.
    if (local > cd_offset || cd_offset - local < 30)
      throw fail(at + "corrupt: its local header lies outside the archive");
    std::uint8_t lh[30];
    file.read(local, lh, 30);
    if (le(lh, 4) != 0x04034b50u) throw fail(at + "corrupt: no local header where the directory says");
    const std::uint64_t data_at = local + 30 + le(lh + 26, 2) + le(lh + 28, 2);
    if (data_at > cd_offset || csize > cd_offset - data_at)
      throw fail(concat(at, "corrupt: ", csize, " bytes of data at offset ", data_at,
                        " run past the entries' part of the archive"));
    if (method == 0 && usize != csize)
      throw fail(concat(at, "corrupt: stored, but its sizes differ (", csize, " and ", usize, ")"));
    if (method == 8 && usize > csize * npy_detail::max_inflate_ratio)
      throw fail(
          concat(at, "corrupt: ", csize, " deflated bytes cannot inflate to the ", usize, " declared"));
    std::vector<std::uint8_t> bytes = file.read(data_at, std::size_t(csize));
    if (method == 8) bytes = npy_detail::inflate_raw(bytes, usize, where + at);
    if (scorekit::detail::crc32(bytes.data(), bytes.size()) != crc)
      throw fail(at + "corrupt: its CRC-32 does not match (the archive was damaged)");
    out.emplace(key, parse_npy(bytes.data(), bytes.size(), where + at.substr(0, at.size() - 2)));
  }
  if (pos != cd.size())
    throw fail(concat("corrupt: ", cd.size() - pos, " unexpected bytes in the central directory"));
  return out;
}

#endif  // SCOREKIT_HAVE_ZLIB

}  // namespace io
}  // namespace scorekit
