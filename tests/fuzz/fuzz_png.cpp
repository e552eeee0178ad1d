// libFuzzer harness for the PNG reader (io/png.hpp, libpng behind it): any bytes must either decode to
// an image whose pixel count matches its size and channels, or be refused with scorekit::io_error; a
// crash, a sanitizer report, another exception (std::bad_alloc included), a message printed by libpng or
// an allocation past the limit is a finding. What decodes is encoded again and must decode to the same
// pixels (for the channel counts the writer takes).
// Built with clang++ -fsanitize=fuzzer,address,undefined by tests/CMakeLists.txt where clang and libpng
// are present; ctest runs it briefly (fuzz_png) on seeds the unit tests write (SCOREKIT_FUZZ_CORPUS),
// and scripts/fuzz.sh runs it for longer.
#include <scorekit/io/png.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::vector<std::uint8_t> bytes(data, data + size);
  scorekit::io::Image img;
  try {
    img = scorekit::io::decode_png(bytes, "fuzz input");
  } catch (const scorekit::io_error&) {
    return 0;
  }
  if (img.width <= 0 || img.height <= 0 || img.channels < 1 || img.channels > 4 ||
      img.pixels.size() != std::size_t(img.width) * std::size_t(img.height) * std::size_t(img.channels))
    std::abort();
  if (img.channels != 2 && img.pixels.size() <= (std::size_t(1) << 22)) {
    const std::vector<std::uint8_t> again = scorekit::io::encode_png(img.width, img.height, img.pixels);
    if (scorekit::io::decode_png(again).pixels != img.pixels) std::abort();
  }
  return 0;
}
