// Two uses: CMake compiles it to learn whether clang++ has libFuzzer, and the test fuzz_reports_crash runs
// it on a seed that makes it abort, to check that a failing fuzz test prints the input that failed
// (tests/fuzz/run_fuzz.cmake).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size >= 4 && std::memcmp(data, "FUZZ", 4) == 0) std::abort();
  return 0;
}
