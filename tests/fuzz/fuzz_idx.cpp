// libFuzzer harness for the IDX reader (io/idx.hpp): any bytes, as a plain file and as a file that zlib
// reads as gzip when they start like one, must either read or be refused with scorekit::io_error; a
// crash, a sanitizer report, another exception or an allocation past the limit is a finding.
// Built with clang++ -fsanitize=fuzzer,address,undefined by tests/CMakeLists.txt where clang is present;
// ctest runs it briefly (fuzz_idx) on seeds the unit tests write (SCOREKIT_FUZZ_CORPUS), and
// scripts/fuzz.sh runs it for longer.
#include "fuzz_file.hpp"

#include <scorekit/io/idx.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = scorekit_fuzz::temporary_path("idx");
  scorekit_fuzz::write_input(path, data, size);
  try {
    const scorekit::io::IdxArray a = scorekit::io::read_idx(path);
    // What was read is what the header declares.
    if (a.bytes.size() != std::size_t(a.size()) * std::size_t(scorekit::io::idx_type_size(a.type)))
      std::abort();
    if (a.size() > 0) (void)a.value(a.size() - 1);
  } catch (const scorekit::io_error&) {
  }
  std::remove(path.c_str());
  return 0;
}
