// libFuzzer harness for the NPY and NPZ readers (io/npy.hpp): any bytes, read as an NPY file and as an
// NPZ archive, must either read or be refused with scorekit::io_error; a crash, a sanitizer report,
// another exception or an allocation past the limit is a finding. What reads must hold exactly the
// bytes its dtype and shape declare. Built and run like fuzz_idx (tests/CMakeLists.txt, scripts/fuzz.sh).
#include "fuzz_file.hpp"

#include <scorekit/io/npy.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace {
void check(const scorekit::io::NpyArray& a) {
  if (a.bytes.size() != std::size_t(a.size()) * std::size_t(scorekit::io::npy_type_size(a.type)))
    std::abort();
  if (a.size() > 0) (void)a.value(std::size_t(a.size() - 1));
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = scorekit_fuzz::temporary_path("npy");
  scorekit_fuzz::write_input(path, data, size);
  try {
    check(scorekit::io::read_npy(path));
  } catch (const scorekit::io_error&) {
  }
  try {
    for (const auto& kv : scorekit::io::read_npz(path)) check(kv.second);
  } catch (const scorekit::io_error&) {
  }
  std::remove(path.c_str());
  return 0;
}
