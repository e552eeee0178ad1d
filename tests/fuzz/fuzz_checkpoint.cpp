// libFuzzer harness for the checkpoint reader (nn/checkpoint_format.hpp): any bytes must either read or
// be refused with scorekit::io_error; a crash, a sanitizer report, another exception or an allocation
// past the limit is a finding. What reads must write back to the same bytes (the format has one
// encoding per content). Built and run like fuzz_idx (tests/CMakeLists.txt, scripts/fuzz.sh).
#include "fuzz_file.hpp"

#include <scorekit/nn/checkpoint_format.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = scorekit_fuzz::temporary_path("checkpoint", ".in"),
                           copy = scorekit_fuzz::temporary_path("checkpoint", ".out");
  scorekit_fuzz::write_input(path, data, size);
  namespace cd = scorekit::nn::checkpoint_detail;
  try {
    const scorekit::nn::CheckpointContent c = cd::read_checkpoint_file(path, "fuzz");
    if (!c.signature.empty()) {
      cd::write_checkpoint_file(copy, c, "fuzz");
      const std::vector<std::uint8_t> again = scorekit::detail::read_file(copy, "fuzz");
      if (again.size() != size || (size > 0 && std::memcmp(again.data(), data, size) != 0)) std::abort();
      std::remove(copy.c_str());
    }
  } catch (const scorekit::io_error&) {
  }
  std::remove(path.c_str());
  return 0;
}
