// Files on the host: whole-file reads, atomic writes (temporary file, then rename) and CRC-32. Shared by
// every writer and reader of the library (PNG, sample files, checkpoints) so that each reports OS errors
// the same way and none can leave half a file under the target name. Host code, standard library only.
#pragma once

#include <scorekit/core/error.hpp>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#if defined(_WIN32)
#include <process.h>
#else
#include <unistd.h>
#endif

namespace scorekit {
namespace detail {

/// CRC-32 with the reflected polynomial 0xEDB88320 (ISO 3309 / IEEE 802.3, as PNG, zlib and gzip use;
/// the check value of "123456789" is 0xCBF43926). Pass the previous result as `crc` to continue a
/// running checksum; start from 0.
inline std::uint32_t crc32(const std::uint8_t* data, std::size_t n, std::uint32_t crc = 0) {
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

/// Reads a whole file; throws io_error naming `who`, the path and the OS error.
inline std::vector<std::uint8_t> read_file(const std::string& path, const char* who) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    const int err = errno;
    throw io_error(concat(who, ": cannot open '", path, "': ", errno_text(err)));
  }
  std::vector<std::uint8_t> bytes;
  std::uint8_t buffer[65536];
  std::size_t got;
  while ((got = std::fread(buffer, 1, sizeof(buffer), f)) > 0)
    bytes.insert(bytes.end(), buffer, buffer + got);
  const bool bad = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  if (bad) throw io_error(concat(who, ": cannot read '", path, "': ", errno_text(err)));
  return bytes;
}

}  // namespace detail
}  // namespace scorekit
