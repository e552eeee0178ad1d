// Files on the host: whole-file reads, atomic writes (temporary file, then rename) and CRC-32. Shared by
// every writer and reader of the library (PNG, sample files, checkpoints) so that each reports OS errors
// the same way and none can leave half a file under the target name. Host code: the standard library,
// and zlib's crc32 where the build has zlib (SCOREKIT_HAVE_ZLIB).
#pragma once

#include <scorekit/core/error.hpp>

#ifdef SCOREKIT_HAVE_ZLIB
#include <zlib.h>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>
#include <string>
#include <utility>
#include <vector>

#if defined(_WIN32)
#include <process.h>
#else
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace scorekit {
namespace detail {

/// CRC-32 computed byte by byte from a 256-entry table: what crc32 below computes where the build has no
/// zlib. Kept beside zlib's so that the tests check it (against zlib and the check value) in every build.
inline std::uint32_t crc32_bytewise(const std::uint8_t* data, std::size_t n, std::uint32_t crc = 0) {
  static const std::array<std::uint32_t, 256> table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (std::size_t i = 0; i < n; ++i) crc = table[(crc ^ data[i]) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

/// CRC-32 with the reflected polynomial 0xEDB88320 (ISO 3309 / IEEE 802.3, as PNG, zlib and gzip use;
/// the check value of "123456789" is 0xCBF43926). Pass the previous result as `crc` to continue a
/// running checksum; start from 0.
///
/// With zlib (SCOREKIT_HAVE_ZLIB) this is zlib's crc32, several times faster than a byte-wise table. zlib
/// is optional for scorekit and core/ must not require it (checkpoints use this checksum in every build),
/// so a build without zlib falls back on crc32_bytewise above: the same values, more slowly.
inline std::uint32_t crc32(const std::uint8_t* data, std::size_t n, std::uint32_t crc = 0) {
#ifdef SCOREKIT_HAVE_ZLIB
  // zlib takes the length as a uInt: longer buffers go in pieces.
  uLong c = crc;
  while (n > 0) {
    const uInt piece = uInt(std::min<std::size_t>(n, std::size_t(1) << 30));
    c = ::crc32(c, data, piece);
    data += piece;
    n -= piece;
  }
  return std::uint32_t(c);
#else
  return crc32_bytewise(data, n, crc);
#endif
}

/// The text of an errno value.
inline std::string errno_text(int err) { return std::strerror(err); }

/// Whether this machine stores integers least significant byte first (the file formats here fix their
/// byte order; readers and writers swap on the other kind).
inline bool host_is_little_endian() {
  const std::uint16_t one = 1;
  unsigned char first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

/// Text that came from a file or a file name, as it goes into an error message: printable ASCII kept,
/// every other byte (a NUL would cut the message short, a newline or escape sequence would garble it) as
/// \xNN, and the backslash itself as \x5C.
inline std::string printable(const std::string& s) {
  std::string out;
  for (const unsigned char c : s) {
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += char(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", unsigned(c));
      out += buf;
    }
  }
  return out;
}

/// This process's id (to name temporary files apart from another process's).
inline long process_id() {
#if defined(_WIN32)
  return long(_getpid());
#else
  return long(::getpid());
#endif
}

/// A file written under a temporary name ("<path>.tmp-<pid>-<k>") and renamed to `path` by commit(),
/// so that readers never see half a file and a crash or an error leaves the old file (or none). The
/// counter k keeps two threads of one process writing the same path apart. Unless commit() succeeded,
/// the destructor closes and removes the temporary file. `who` prefixes every error message.
class AtomicFile {
 public:
  AtomicFile(std::string path, std::string who) : m_path(std::move(path)), m_who(std::move(who)) {
    static std::atomic<unsigned> counter{0};
    m_tmp = m_path + ".tmp-" + std::to_string(process_id()) + "-" + std::to_string(counter++);
    m_file = std::fopen(m_tmp.c_str(), "wb");
    if (!m_file) {
      const int err = errno;
      throw io_error(concat(m_who, ": cannot open '", m_path, "' for writing (temporary file '", m_tmp,
                            "'): ", errno_text(err)));
    }
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile() {
    if (m_file) std::fclose(m_file);
    if (!m_committed) std::remove(m_tmp.c_str());
  }

  void write(const void* data, std::size_t n) {
    if (n == 0) return;
    if (std::fwrite(data, 1, n, m_file) != n) fail("cannot write");
  }
  void write(const std::string& s) { write(s.data(), s.size()); }

  /// Flushes, closes and renames the temporary file onto the target path.
  void commit() {
    if (std::fflush(m_file) != 0) fail("cannot write");
#if !defined(_WIN32)
    // Data on disk before the rename, so that a power loss cannot leave an empty file under the name.
    if (::fsync(::fileno(m_file)) != 0 && errno != EINVAL) fail("cannot flush");
#endif
    std::FILE* f = m_file;
    m_file = nullptr;
    if (std::fclose(f) != 0) fail("cannot close");
    if (std::rename(m_tmp.c_str(), m_path.c_str()) != 0) fail("cannot rename the temporary file onto");
    m_committed = true;
  }

  const std::string& temporary_path() const { return m_tmp; }

 private:
  [[noreturn]] void fail(const char* what) {
    const int err = errno;
    throw io_error(concat(m_who, ": ", what, " '", m_path, "': ", errno_text(err)));
  }

  std::string m_path, m_who, m_tmp;
  std::FILE* m_file = nullptr;
  bool m_committed = false;
};

/// A regular file opened for reading whose size is known before anything is read, so that a reader
/// checks a header against the size and then reads only what the header declares: a file that is not a
/// scorekit file costs a few bytes, not its whole length, and no allocation exceeds the file's size.
/// Devices, pipes and directories are refused (/dev/zero has no end to read up to). `who` prefixes
/// every error message, which names the file.
class InputFile {
 public:
  InputFile(std::string path, std::string who) : m_path(std::move(path)), m_who(std::move(who)) {
    m_file = std::fopen(m_path.c_str(), "rb");
    if (!m_file) {
      const int err = errno;
      throw io_error(concat(m_who, ": cannot open '", printable(m_path), "': ", errno_text(err)));
    }
#if !defined(_WIN32)
    struct ::stat st;
    if (::fstat(::fileno(m_file), &st) != 0) {
      const int err = errno;
      std::fclose(m_file);
      throw io_error(concat(m_who, ": cannot read '", printable(m_path), "': ", errno_text(err)));
    }
    if (!S_ISREG(st.st_mode)) {
      std::fclose(m_file);
      throw io_error(concat(m_who, ": '", printable(m_path), "' is not a regular file (",
                            S_ISDIR(st.st_mode) ? "a directory" : "a device, pipe or socket",
                            "); scorekit reads files whose size it can check first"));
    }
    m_size = std::uint64_t(st.st_size);
#else
    const bool sized = std::fseek(m_file, 0, SEEK_END) == 0;
    const long end = sized ? std::ftell(m_file) : -1L;
    if (end < 0 || std::fseek(m_file, 0, SEEK_SET) != 0) {
      std::fclose(m_file);
      throw io_error(concat(m_who, ": cannot find the size of '", printable(m_path), "'"));
    }
    m_size = std::uint64_t(end);
#endif
  }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  ~InputFile() { std::fclose(m_file); }

  std::uint64_t size() const { return m_size; }
  const std::string& path() const { return m_path; }

  /// Reads n bytes from `offset` into `out`; throws io_error when the file holds fewer (it changed
  /// since it was opened) or the OS reports an error.
  void read(std::uint64_t offset, void* out, std::size_t n) {
    if (n == 0) return;
    if (offset > m_size || n > m_size - offset)
      throw io_error(concat(m_who, ": '", printable(m_path), "': ", n, " bytes at offset ", offset,
                            " lie past the end of the ", m_size, "-byte file"));
    if (offset != m_position && std::fseek(m_file, long(offset), SEEK_SET) != 0) fail("cannot seek in");
    const std::size_t got = std::fread(out, 1, n, m_file);
    m_position = offset + got;
    if (got != n) {
      if (std::ferror(m_file)) fail("cannot read");
      throw io_error(concat(m_who, ": '", printable(m_path), "' ended after ", m_position,
                            " bytes; it was shorter than when it was opened"));
    }
  }

  /// Reads n bytes from `offset` into a new vector (see read); a size the memory cannot hold is an
  /// io_error naming it, not std::bad_alloc.
  std::vector<std::uint8_t> read(std::uint64_t offset, std::size_t n) {
    std::vector<std::uint8_t> bytes;
    try {
      bytes.resize(n);
    } catch (const std::bad_alloc&) {
      throw io_error(concat(m_who, ": '", printable(m_path), "': cannot hold ", n, " bytes in memory"));
    }
    read(offset, bytes.data(), n);
    return bytes;
  }

 private:
  [[noreturn]] void fail(const char* what) {
    const int err = errno;
    throw io_error(concat(m_who, ": ", what, " '", printable(m_path), "': ", errno_text(err)));
  }

  std::string m_path, m_who;
  std::FILE* m_file = nullptr;
  std::uint64_t m_size = 0, m_position = 0;
};

/// Reads a whole regular file (bounded by its size, see InputFile); throws io_error naming `who`, the
/// path and the problem.
inline std::vector<std::uint8_t> read_file(const std::string& path, const char* who) {
  InputFile file(path, who);
  if (file.size() > std::uint64_t(std::numeric_limits<std::size_t>::max()))
    throw io_error(concat(who, ": '", printable(path), "' is too large to read (", file.size(), " bytes)"));
  return file.read(0, std::size_t(file.size()));
}

/// The bytes an array of `item`-byte elements of this shape (non-negative sizes) holds, with the shape
/// bounded as NumPy bounds it: the nonzero sizes times the item size must not pass `limit`, zeros or not,
/// so that every product of sizes a reader forms afterwards fits an int64_t even when a zero empties the
/// array. Returns false where the shape passes the limit (`bytes` is then left alone).
template <class Sizes>
bool array_bytes(const Sizes& shape, std::uint64_t item, std::uint64_t limit, std::uint64_t& bytes) {
  std::uint64_t nonzero = item;
  bool empty = false;
  for (const auto s : shape) {
    const std::uint64_t e = std::uint64_t(s);
    if (e == 0) {
      empty = true;
      continue;
    }
    if (nonzero > limit / e) return false;
    nonzero *= e;
  }
  if (nonzero > limit) return false;
  bytes = empty ? 0 : nonzero;
  return true;
}

}  // namespace detail
}  // namespace scorekit
