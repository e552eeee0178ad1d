// What the file-reading harnesses share: the fuzzer's bytes as a file the reader opens, under a name of
// this process's own in TMPDIR (or /tmp), so that parallel fuzzing jobs do not overwrite each other.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace scorekit_fuzz {

/// "<TMPDIR>/scorekit_fuzz_<tag>_<pid><suffix>".
inline std::string temporary_path(const char* tag, const char* suffix = "") {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/scorekit_fuzz_" + tag + "_" + std::to_string(::getpid()) +
         suffix;
}

/// Writes the bytes to `path` (aborts, a finding, when it cannot).
inline void write_input(const std::string& path, const std::uint8_t* data, std::size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
}

}  // namespace scorekit_fuzz
