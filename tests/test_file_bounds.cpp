// Readers check what a file's header declares against the file's size before they read the rest
// (core/file.hpp InputFile), refuse what has no size (devices, directories), and escape what they
// quote from a file in their messages.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <scorekit/core/file.hpp>
#include <scorekit/nn/checkpoint.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using scorekit::nn::Checkpoint;
using scorekit_test::TempDir;

std::string load_error(const std::string& path) {
  try {
    scorekit::nn::load_checkpoint(path);
  } catch (const scorekit::io_error& e) {
    return e.what();
  }
  FAIL("load_checkpoint('" << path << "') threw no io_error");
  return "";
}

void write_bytes(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

/// A checkpoint header (magic, version 1) announcing `length` bytes of content.
std::vector<std::uint8_t> header(std::uint64_t length) {
  std::vector<std::uint8_t> h = {0x89, 'S', 'K', 'C', '\r', '\n', 0x1A, '\n', 1, 0, 0, 0};
  for (int k = 0; k < 8; ++k) h.push_back(std::uint8_t(length >> (8 * k)));
  return h;
}

/// Makes `path` a sparse file of `size` bytes starting with `head`; false where the file system
/// cannot hold such a file.
bool sparse_file(const std::string& path, const std::vector<std::uint8_t>& head, std::uintmax_t size) {
  write_bytes(path, head);
  std::error_code ec;
  fs::resize_file(path, size, ec);
  return !ec && fs::file_size(path) == size;
}

}  // namespace

TEST_CASE("files: devices and directories are refused by name, before any read", "[io][files]") {
  TempDir dir("bounds_devices");
  if (fs::exists("/dev/zero")) {
    // /dev/zero never ends: a reader that reads to the end first runs out of memory.
    CHECK_THAT(load_error("/dev/zero"),
               Catch::Contains("'/dev/zero' is not a regular file") && Catch::Contains("device"));
    CHECK_THROWS_WITH(scorekit::detail::read_file("/dev/zero", "reader"),
                      Catch::Contains("reader: '/dev/zero' is not a regular file"));
  }
  CHECK_THAT(load_error(dir.path.string()), Catch::Contains("is not a regular file (a directory)"));
}

TEST_CASE("files: a large file that is not a checkpoint costs its header, not its length", "[io][files]") {
  TempDir dir("bounds_large");
  // 64 GiB (sparse): reading it whole would need 64 GiB of memory, so only a bounded reader passes.
  const std::uintmax_t size = std::uintmax_t(1) << 36;
  const std::string zeros = dir.file("zeros.bin");
  if (!sparse_file(zeros, {}, size)) {
    WARN("this file system cannot hold a 64 GiB sparse file; the large-file checks are skipped");
    return;
  }
  CHECK_THAT(load_error(zeros), Catch::Contains("zeros.bin") && Catch::Contains("not a scorekit checkpoint"));

  // A checkpoint header announcing more content than the file holds: refused from the header alone.
  const std::string liar = dir.file("liar.ckpt");
  REQUIRE(sparse_file(liar, header(std::uint64_t(1) << 40), size));
  CHECK_THAT(load_error(liar), Catch::Contains("truncated: the header announces 1099511627776 bytes") &&
                                   Catch::Contains("but only 68719476716 bytes follow the header"));
  // The largest length a header can hold (no overflow in the comparison).
  write_bytes(liar, header(~std::uint64_t(0)));
  CHECK_THAT(load_error(liar), Catch::Contains("truncated: the header announces 18446744073709551615 bytes"));
}

TEST_CASE("files: what a message quotes from a file or a file name is escaped", "[io][files]") {
  TempDir dir("bounds_escape");
  // A NUL byte would cut the message short before the problem; a newline would split it.
  const std::string nul_name("w\0\n", 3), nul_signature("arch\0f32", 8);
  Checkpoint cp(nul_signature, 3);
  const float w[2] = {1.0f, 2.0f};
  cp.add(nul_name, w, 2);
  const std::string path = dir.file("escape.ckpt");
  scorekit::nn::save_checkpoint(path, cp);
  const Checkpoint back = scorekit::nn::load_checkpoint(path);
  REQUIRE(back.signature() == nul_signature);

  std::string msg;
  try {
    back.require_signature("arch f32");
  } catch (const scorekit::io_error& e) {
    msg = e.what();
  }
  CHECK_THAT(
      msg, Catch::Contains("'arch\\x00f32', expected 'arch f32'") && Catch::Contains("another architecture"));
  try {
    back.get<float>("v", 2);
  } catch (const scorekit::io_error& e) {
    msg = e.what();
  }
  CHECK_THAT(msg, Catch::Contains("array 'v' is missing (the checkpoint holds 'w\\x00\\x0A')"));

  // The same name in a file-level error: its value type byte (after the name) made unknown.
  std::ifstream in(path, std::ios::binary);
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  const std::string needle = nul_name;
  const auto it = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
  REQUIRE(it != bytes.end());
  const std::size_t at = std::size_t(it - bytes.begin()) + needle.size();
  REQUIRE(bytes[at] == 1);
  bytes[at] = 7;
  const std::uint32_t crc = scorekit::detail::crc32(bytes.data() + 20, bytes.size() - 24);
  for (int k = 0; k < 4; ++k) bytes[bytes.size() - 4 + std::size_t(k)] = std::uint8_t(crc >> (8 * k));
  write_bytes(path, bytes);
  CHECK_THAT(load_error(path), Catch::Contains("array 'w\\x00\\x0A' has unknown value type code 7"));

  // A file name with a newline and an escape character.
  CHECK_THAT(load_error(dir.file("no\nsuch\x1b.ckpt")),
             Catch::Contains("no\\x0Asuch\\x1B.ckpt") && Catch::Contains("cannot open"));
}

TEST_CASE("files: checkpoint metadata keys are stored sorted and once; a file that breaks this is refused",
          "[io][files][checkpoint]") {
  TempDir dir("bounds_order");
  Checkpoint cp("sig", 1);
  cp.set_metadata("key_a", "1");
  cp.set_metadata("key_b", "2");
  const std::string path = dir.file("order.ckpt");
  scorekit::nn::save_checkpoint(path, cp);
  std::ifstream in(path, std::ios::binary);
  const std::vector<std::uint8_t> good((std::istreambuf_iterator<char>(in)),
                                       std::istreambuf_iterator<char>());
  in.close();
  auto with_key = [&](char last) {
    std::vector<std::uint8_t> b = good;
    const std::string needle = "key_a";
    const auto it = std::search(b.begin(), b.end(), needle.begin(), needle.end());
    REQUIRE(it != b.end());
    *(it + 4) = std::uint8_t(last);
    const std::uint32_t crc = scorekit::detail::crc32(b.data() + 20, b.size() - 24);
    for (int k = 0; k < 4; ++k) b[b.size() - 4 + std::size_t(k)] = std::uint8_t(crc >> (8 * k));
    write_bytes(path, b);
    scorekit_test::add_fuzz_seed(path);
    return load_error(path);
  };
  CHECK_THAT(with_key('c'), Catch::Contains("corrupt: metadata key 'key_b' is out of order"));
  CHECK_THAT(with_key('b'), Catch::Contains("corrupt: metadata key 'key_b' appears twice"));
}

TEST_CASE("files: an array's bytes are bounded as NumPy bounds them, zeros or not", "[io][files][npy]") {
  using scorekit::detail::array_bytes;
  const std::uint64_t limit = std::uint64_t(1) << 62;
  std::uint64_t bytes = 7;
  CHECK(array_bytes(std::vector<std::int64_t>{3, 5}, 4, limit, bytes));
  CHECK(bytes == 60);
  CHECK(array_bytes(std::vector<std::int64_t>{}, 8, limit, bytes));  // a scalar
  CHECK(bytes == 8);
  CHECK(array_bytes(std::vector<std::int64_t>{3, 0, 5}, 4, limit, bytes));
  CHECK(bytes == 0);
  // Exactly at the limit passes; one element more does not, with or without a zero.
  CHECK(array_bytes(std::vector<std::uint64_t>{std::uint64_t(1) << 30, std::uint64_t(1) << 30}, 4, limit,
                    bytes));
  CHECK(bytes == limit);
  bytes = 7;
  CHECK_FALSE(array_bytes(std::vector<std::uint64_t>{(std::uint64_t(1) << 60) + 1, 4}, 1, limit, bytes));
  CHECK_FALSE(array_bytes(std::vector<std::uint64_t>{std::uint64_t(1) << 61, 0, 2}, 2, limit, bytes));
  CHECK(bytes == 7);  // left alone when refused
  // The item size counts: 2^61 one-byte elements pass, 2^61 eight-byte ones do not.
  CHECK(array_bytes(std::vector<std::uint64_t>{std::uint64_t(1) << 61}, 1, limit, bytes));
  CHECK_FALSE(array_bytes(std::vector<std::uint64_t>{std::uint64_t(1) << 61}, 8, limit, bytes));
  // Sizes whose product wraps 2^64 to a small number are refused, not wrapped.
  CHECK_FALSE(array_bytes(std::vector<std::uint64_t>{std::uint64_t(1) << 32, std::uint64_t(1) << 32, 0}, 1,
                          ~std::uint64_t(0), bytes));
}
