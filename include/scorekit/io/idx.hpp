// IDX files (the format of MNIST and Fashion-MNIST: LeCun et al.'s "idx1-ubyte", "idx3-ubyte"), plain or
// gzipped, read through zlib (gzread reads a gzip stream and, transparently, a file that is not one).
//
// The format: a magic number of four bytes, 0, 0, the element type (0x08 unsigned byte, 0x09 signed byte,
// 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64) and the rank; then the rank's sizes as big-endian
// 32-bit integers; then the elements, big-endian, in row-major order, nothing after them.
//
// read_idx checks, before it allocates anything, the magic number (its two zero bytes, a known type, a
// rank of at least 1), that every size is positive and their product fits in memory's index type, and
// that the data the header declares can come from a file of that size (a plain file must hold exactly the
// header and the data; a gzip stream inflates at most 1032 bytes per byte, DEFLATE's limit). Then it reads
// exactly the declared data and requires the end of the file after it, so that a truncated, padded or
// corrupt file (zlib's checksum of a gzip member is verified at its end) is refused. Every refusal is an
// io_error naming the file, what was expected and what was found; nothing is returned half-read.
// scorekit-requires: SCOREKIT_HAVE_ZLIB
#pragma once

#ifndef SCOREKIT_HAVE_ZLIB
#error \
    "scorekit/io/idx.hpp needs zlib, and this build of scorekit has none: install Debian's zlib1g-dev (scripts/setup.sh does), reconfigure, and link scorekit::scorekit (which then defines SCOREKIT_HAVE_ZLIB)"
#endif

#include <scorekit/core/error.hpp>
#include <scorekit/core/file.hpp>

#include <zlib.h>

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace scorekit {
namespace io {

/// The element types of IDX (the third byte of the magic number).
enum class IdxType : std::uint8_t { u8 = 0x08, i8 = 0x09, i16 = 0x0B, i32 = 0x0C, f32 = 0x0D, f64 = 0x0E };

namespace detail {
/// Each IDX type once: its byte, its size and its name.
struct IdxTypeInfo {
  std::uint8_t byte;
  int size;
  const char* name;
};
inline const IdxTypeInfo* idx_type_info(unsigned byte) {
  static const IdxTypeInfo table[] = {{0x08, 1, "unsigned byte"}, {0x09, 1, "signed byte"},
                                      {0x0B, 2, "int16"},         {0x0C, 4, "int32"},
                                      {0x0D, 4, "float32"},       {0x0E, 8, "float64"}};
  for (const IdxTypeInfo& t : table)
    if (t.byte == byte) return &t;
  return nullptr;
}
}  // namespace detail

/// Bytes per element of an IDX type.
inline int idx_type_size(IdxType t) { return detail::idx_type_info(unsigned(t))->size; }

/// "unsigned byte (0x08)", for messages.
inline std::string idx_type_name(IdxType t) {
  char hex[8];
  std::snprintf(hex, sizeof hex, "0x%02X", unsigned(t));
  return std::string(detail::idx_type_info(unsigned(t))->name) + " (" + hex + ")";
}

/// An IDX array as read: its element type, its sizes (outermost first) and its elements in row-major
/// order, converted to this machine's byte order.
struct IdxArray {
  IdxType type = IdxType::u8;
  std::vector<std::int64_t> dims;
  std::vector<unsigned char> bytes;  ///< size() * idx_type_size(type) bytes, host byte order

  /// The number of elements (the product of the sizes).
  std::int64_t size() const {
    std::int64_t n = 1;
    for (const std::int64_t d : dims) n *= d;
    return n;
  }
  int rank() const { return int(dims.size()); }

  /// Element i (row-major) as a double, whatever the stored type (exact for all but wide int32 in float).
  double value(std::int64_t i) const {
    const unsigned char* p = bytes.data() + i * idx_type_size(type);
    switch (type) {
      case IdxType::u8:
        return double(*p);
      case IdxType::i8:
        return double(static_cast<signed char>(*p));
      case IdxType::i16:
        return load<std::int16_t>(p);
      case IdxType::i32:
        return load<std::int32_t>(p);
      case IdxType::f32:
        return load<float>(p);
      case IdxType::f64:
        return load<double>(p);
    }
    return 0;
  }

 private:
  template <class T>
  static double load(const unsigned char* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return double(v);
  }
};

namespace detail {

using scorekit::detail::host_is_little_endian;
using scorekit::detail::printable;

/// An open gzFile, closed when it goes.
struct GzCloser {
  void operator()(gzFile_s* f) const {
    if (f) gzclose(f);
  }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

/// Reads up to n bytes; returns the count read (less only at the end of the file). A zlib error (corrupt
/// gzip data, a wrong checksum) throws, naming the file.
inline std::size_t gz_read(gzFile f, unsigned char* out, std::size_t n, const std::string& where) {
  std::size_t done = 0;
  while (done < n) {
    const unsigned chunk = unsigned(std::min<std::size_t>(n - done, std::size_t(1) << 30));
    const int got = gzread(f, out + done, chunk);
    int code = Z_OK;
    const char* message = gzerror(f, &code);
    if (got < 0 || (code != Z_OK && code != Z_BUF_ERROR))
      throw io_error(scorekit::detail::concat(
          where, ": the gzip data is corrupt (zlib: ", message ? message : "unknown error", ")"));
    if (code == Z_BUF_ERROR)  // the gzip stream ends in the middle (a truncated .gz)
      throw io_error(scorekit::detail::concat(where, ": the gzip stream is cut short (zlib: ",
                                              message ? message : "unexpected end of file", ")"));
    if (got == 0) break;
    done += std::size_t(got);
  }
  return done;
}

}  // namespace detail

/// Reads an IDX file, gzipped or not (see the top of this file for what is checked). Throws io_error
/// naming `path` and the problem.
inline IdxArray read_idx(const std::string& path) {
  const std::string where = "scorekit::io::read_idx: " + detail::printable(path);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw io_error(scorekit::detail::concat(where, ": cannot open it (", std::strerror(errno), ")"));
  if (!S_ISREG(st.st_mode)) throw io_error(where + ": not a regular file");
  const std::int64_t file_size = std::int64_t(st.st_size);

  detail::GzFile file(gzopen(path.c_str(), "rb"));
  if (!file) throw io_error(scorekit::detail::concat(where, ": cannot open it (", std::strerror(errno), ")"));
  gzFile f = file.get();
  gzbuffer(f, 1 << 17);

  unsigned char magic[4];
  const std::size_t got_magic = detail::gz_read(f, magic, 4, where);
  const bool plain = gzdirect(f) != 0;
  if (got_magic < 4)
    throw io_error(scorekit::detail::concat(where, ": ", got_magic,
                                            " bytes, too short for an IDX file (a 4-byte magic number)"));
  const unsigned type_byte = magic[2], rank = magic[3];
  const bool known_type = detail::idx_type_info(type_byte) != nullptr;
  if (magic[0] != 0 || magic[1] != 0 || !known_type || rank == 0) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "%02X %02X %02X %02X", magic[0], magic[1], magic[2], magic[3]);
    throw io_error(scorekit::detail::concat(
        where, ": not an IDX file: its magic number is ", hex,
        ", an IDX file's is 00 00, a type (08, 09, 0B, 0C, 0D or 0E) and a rank of at least 1"));
  }
  IdxArray a;
  a.type = IdxType(type_byte);
  std::vector<unsigned char> header(std::size_t(rank) * 4);
  const std::size_t got_dims = detail::gz_read(f, header.data(), header.size(), where);
  if (got_dims < header.size())
    throw io_error(scorekit::detail::concat(where, ": the header declares rank ", rank, " (", header.size(),
                                            " bytes of sizes) but the file ends after ", got_dims,
                                            " of them"));
  const int esize = idx_type_size(a.type);
  std::int64_t count = 1;
  for (unsigned r = 0; r < rank; ++r) {
    const unsigned char* b = header.data() + 4 * r;
    const std::int64_t d = (std::int64_t(b[0]) << 24) | (std::int64_t(b[1]) << 16) |
                           (std::int64_t(b[2]) << 8) | std::int64_t(b[3]);
    if (d == 0)
      throw io_error(scorekit::detail::concat(where, ": size ", r, " of ", rank, " is 0 (an empty array)"));
    if (count > (std::int64_t(1) << 46) / d)
      throw io_error(scorekit::detail::concat(where, ": the sizes multiply past 2^46 elements (size ", r,
                                              " is ", d, ")"));
    count *= d;
    a.dims.push_back(d);
  }
  const std::int64_t header_bytes = 4 + 4 * std::int64_t(rank);
  const std::int64_t data_bytes = count * esize;
  std::string shape;
  for (std::size_t r = 0; r < a.dims.size(); ++r) shape += (r ? " x " : "") + std::to_string(a.dims[r]);
  if (plain && header_bytes + data_bytes != file_size)
    throw io_error(scorekit::detail::concat(
        where, ": the header declares ", shape, " elements of ", idx_type_name(a.type), ", ", data_bytes,
        " bytes of data, but the file holds ", file_size - header_bytes, " after its ", header_bytes,
        "-byte header (", file_size - header_bytes < data_bytes ? "truncated" : "trailing data", ")"));
  if (!plain && data_bytes > 1032 * file_size)
    throw io_error(scorekit::detail::concat(
        where, ": the header declares ", shape, " elements of ", idx_type_name(a.type), ", ", data_bytes,
        " bytes, more than a gzip file of ", file_size, " bytes can inflate to (1032 per byte at most)"));
  a.bytes.resize(std::size_t(data_bytes));
  const std::size_t got = detail::gz_read(f, a.bytes.data(), a.bytes.size(), where);
  if (std::int64_t(got) < data_bytes)
    throw io_error(scorekit::detail::concat(where, ": the header declares ", shape, " elements of ",
                                            idx_type_name(a.type), " (", data_bytes,
                                            " bytes) but the data ends after ", got, " bytes (truncated)"));
  unsigned char extra;
  if (detail::gz_read(f, &extra, 1, where) != 0)
    throw io_error(scorekit::detail::concat(where, ": data continues past the ", data_bytes,
                                            " bytes its header declares (", shape, " elements of ",
                                            idx_type_name(a.type), ")"));
  // Big-endian to host order.
  if (esize > 1 && detail::host_is_little_endian())
    for (std::int64_t i = 0; i < count; ++i) {
      unsigned char* p = a.bytes.data() + i * esize;
      for (int lo = 0, hi = esize - 1; lo < hi; ++lo, --hi) std::swap(p[lo], p[hi]);
    }
  return a;
}

}  // namespace io
}  // namespace scorekit
