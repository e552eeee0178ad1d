// libFuzzer harness for the safetensors reader (io/safetensors.hpp): any bytes must either read or be
// refused with scorekit::io_error; a crash, a sanitizer report, another exception or an allocation past
// the limit is a finding. What reads must hold, per tensor, the bytes its dtype and shape declare, and
// write back to a file that reads as the same content. Built and run like fuzz_idx (tests/CMakeLists.txt).
#include "fuzz_file.hpp"

#include <scorekit/io/safetensors.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = scorekit_fuzz::temporary_path("safetensors", ".in"),
                           copy = scorekit_fuzz::temporary_path("safetensors", ".out");
  scorekit_fuzz::write_input(path, data, size);
  try {
    const scorekit::io::Safetensors s = scorekit::io::read_safetensors(path);
    scorekit::io::write_safetensors(copy, s);
    const scorekit::io::Safetensors t = scorekit::io::read_safetensors(copy);
    if (t.metadata != s.metadata || t.tensors.size() != s.tensors.size()) std::abort();
    for (const auto& kv : s.tensors) {
      const auto& u = t.tensors.at(kv.first);
      if (u.dtype != kv.second.dtype || u.shape != kv.second.shape || u.bytes != kv.second.bytes)
        std::abort();
    }
    std::remove(copy.c_str());
  } catch (const scorekit::io_error&) {
  }
  std::remove(path.c_str());
  return 0;
}
