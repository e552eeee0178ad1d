// The IDX reader (io/idx.hpp) on files the test writes, plain and gzipped: every element type read back
// with its values (big-endian in the file), and every malformed file refused with an io_error that names
// it and the problem; the pairing checks of read_labelled_images; the pixel scalings and the 2 x 2 pooling
// of images_to_rows; and Fashion-MNIST itself, from Debian's dataset-fashion-mnist (installed by
// scripts/setup.sh): the sizes and the ten balanced classes its authors publish.
// scorekit-requires: SCOREKIT_HAVE_ZLIB
#include <scorekit/io/fashion_mnist.hpp>
#include <scorekit/io/idx.hpp>

#include <zlib.h>
#include <catch2/catch.hpp>

#include "support.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace {

using Bytes = std::vector<unsigned char>;

/// An IDX header: 00 00 type rank, then the sizes big-endian.
Bytes idx_header(unsigned char type, const std::vector<std::uint32_t>& dims) {
  Bytes b = {0, 0, type, static_cast<unsigned char>(dims.size())};
  for (const std::uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>(d >> s));
  return b;
}

template <class T>
void append_big_endian(Bytes& b, T value) {
  unsigned char raw[sizeof(T)];
  std::memcpy(raw, &value, sizeof(T));
  const std::uint16_t one = 1;
  unsigned char first;
  std::memcpy(&first, &one, 1);
  for (std::size_t i = 0; i < sizeof(T); ++i) b.push_back(first == 1 ? raw[sizeof(T) - 1 - i] : raw[i]);
}

Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

/// Every file these tests write is also a seed of the fuzz harness's corpus (tests/fuzz/fuzz_idx.cpp)
/// when SCOREKIT_FUZZ_CORPUS names a folder (ctest's fuzz_idx_seeds, scripts/fuzz.sh).
void add_seed(const std::string& path) {
  const char* corpus = std::getenv("SCOREKIT_FUZZ_CORPUS");
  if (!corpus) return;
  std::filesystem::create_directories(corpus);
  // Named by content (size and CRC-32), so that reruns add nothing new.
  const Bytes b = read_file(path);
  const unsigned long crc = crc32(0L, b.data(), unsigned(b.size()));
  const std::string name = "seed_" + std::to_string(b.size()) + "_" + std::to_string(crc);
  std::filesystem::copy_file(path, std::filesystem::path(corpus) / name,
                             std::filesystem::copy_options::overwrite_existing);
}

void write_plain(const std::string& path, const Bytes& b) {
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  }
  add_seed(path);
}

void write_gzip(const std::string& path, const Bytes& b) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  if (!b.empty()) REQUIRE(gzwrite(f, b.data(), unsigned(b.size())) == int(b.size()));
  REQUIRE(gzclose(f) == Z_OK);
  add_seed(path);
}

/// read_idx(path) throws an io_error whose message names the file and contains `phrase`.
void require_refused(const std::string& path, const std::string& phrase) {
  INFO(path << ": expected a refusal mentioning '" << phrase << "'");
  try {
    scorekit::io::read_idx(path);
    FAIL("read_idx accepted the file");
  } catch (const scorekit::io_error& e) {
    const std::string m = e.what();
    INFO("message: " << m);
    CHECK(m.find(path) != std::string::npos);
    CHECK(m.find(phrase) != std::string::npos);
  }
}

/// A labelled-image pair of n images of h x w, pixel (i, q) = (7 i + q) % 256, label i % 10.
void write_pair(const scorekit_test::TempDir& dir, const std::string& stem, std::uint32_t n, std::uint32_t h,
                std::uint32_t w, std::uint32_t n_labels, unsigned char label_offset = 0) {
  Bytes images = idx_header(0x08, {n, h, w});
  for (std::uint32_t i = 0; i < n; ++i)
    for (std::uint32_t q = 0; q < h * w; ++q) images.push_back(static_cast<unsigned char>((7 * i + q) % 256));
  Bytes labels = idx_header(0x08, {n_labels});
  for (std::uint32_t i = 0; i < n_labels; ++i)
    labels.push_back(static_cast<unsigned char>(i % 10 + label_offset));
  write_gzip(dir.file(stem + "-images.gz"), images);
  write_gzip(dir.file(stem + "-labels.gz"), labels);
}

}  // namespace

TEST_CASE("read_idx reads every IDX element type, plain and gzipped, in host byte order", "[io][idx]") {
  using scorekit::io::IdxType;
  const scorekit_test::TempDir dir("idx_types");
  Bytes u8 = idx_header(0x08, {2, 3});
  for (int i = 0; i < 6; ++i) u8.push_back(static_cast<unsigned char>(250 + i));  // 250..255
  Bytes i8 = idx_header(0x09, {3});
  for (const int v : {-128, -1, 127}) i8.push_back(static_cast<unsigned char>(static_cast<signed char>(v)));
  Bytes i16 = idx_header(0x0B, {2});
  append_big_endian<std::int16_t>(i16, -2);
  append_big_endian<std::int16_t>(i16, 30000);
  Bytes i32 = idx_header(0x0C, {1, 2});
  append_big_endian<std::int32_t>(i32, 123456789);
  append_big_endian<std::int32_t>(i32, -7);
  Bytes f32 = idx_header(0x0D, {2});
  append_big_endian<float>(f32, 1.5f);
  append_big_endian<float>(f32, -0.1f);
  Bytes f64 = idx_header(0x0E, {1, 1, 2});
  append_big_endian<double>(f64, -2.25);
  append_big_endian<double>(f64, 1e300);
  struct Case {
    const char* name;
    Bytes bytes;
    IdxType type;
    std::vector<std::int64_t> dims;
    std::vector<double> values;
  };
  const std::vector<Case> cases = {
      {"u8", u8, IdxType::u8, {2, 3}, {250, 251, 252, 253, 254, 255}},
      {"i8", i8, IdxType::i8, {3}, {-128, -1, 127}},
      {"i16", i16, IdxType::i16, {2}, {-2, 30000}},
      {"i32", i32, IdxType::i32, {1, 2}, {123456789, -7}},
      {"f32", f32, IdxType::f32, {2}, {1.5, double(-0.1f)}},
      {"f64", f64, IdxType::f64, {1, 1, 2}, {-2.25, 1e300}},
  };
  for (const Case& c : cases)
    for (const bool gz : {false, true}) {
      const std::string path = dir.file(std::string(c.name) + (gz ? ".gz" : ".idx"));
      gz ? write_gzip(path, c.bytes) : write_plain(path, c.bytes);
      INFO(path);
      const scorekit::io::IdxArray a = scorekit::io::read_idx(path);
      CHECK(a.type == c.type);
      CHECK(a.dims == c.dims);
      REQUIRE(a.size() == std::int64_t(c.values.size()));
      for (std::size_t i = 0; i < c.values.size(); ++i) CHECK(a.value(std::int64_t(i)) == c.values[i]);
    }
}

TEST_CASE("read_idx refuses malformed files with an io_error naming the file and the problem", "[io][idx]") {
  const scorekit_test::TempDir dir("idx_bad");
  const Bytes good = [] {
    Bytes b = idx_header(0x08, {4, 5});
    for (int i = 0; i < 20; ++i) b.push_back(static_cast<unsigned char>(i));
    return b;
  }();
  auto plain = [&](const std::string& name, const Bytes& b) {
    write_plain(dir.file(name), b);
    return dir.file(name);
  };
  auto gzip = [&](const std::string& name, const Bytes& b) {
    write_gzip(dir.file(name), b);
    return dir.file(name);
  };
  SECTION("missing, or not a regular file") {
    require_refused(dir.file("absent.gz"), "cannot open it");
    require_refused(dir.path.string(), "not a regular file");
  }
  SECTION("the magic number") {
    require_refused(plain("short", {0, 0, 8}), "too short for an IDX file");
    Bytes b = good;
    b[0] = 1;
    require_refused(plain("nonzero", b), "not an IDX file: its magic number is 01 00 08 02");
    b = good;
    b[2] = 0x07;
    require_refused(gzip("type.gz", b), "not an IDX file");
    b = good;
    b[3] = 0;
    require_refused(plain("rank0", b), "not an IDX file");
  }
  SECTION("the sizes") {
    require_refused(plain("dims_cut", Bytes(good.begin(), good.begin() + 9)),
                    "declares rank 2 (8 bytes of sizes) but the file ends after 5");
    Bytes b = idx_header(0x08, {4, 0});
    require_refused(plain("zero", b), "size 1 of 2 is 0");
    b = idx_header(0x0E, {0xFFFFFFFFu, 0xFFFFFFFFu});
    require_refused(plain("overflow", b), "multiply past 2^46");
  }
  SECTION("the length, plain") {
    require_refused(plain("truncated", Bytes(good.begin(), good.end() - 1)), "(truncated)");
    Bytes b = good;
    b.push_back(0);
    require_refused(plain("trailing", b), "(trailing data)");
  }
  SECTION("the length, gzipped") {
    require_refused(gzip("truncated.gz", Bytes(good.begin(), good.end() - 3)),
                    "the data ends after 17 bytes (truncated)");
    Bytes b = good;
    b.push_back(0);
    require_refused(gzip("trailing.gz", b), "data continues past the 20 bytes");
    // 2^40 bytes declared by a file of a few dozen: refused before anything is allocated.
    require_refused(gzip("huge.gz", idx_header(0x08, {1u << 20, 1u << 20})), "can inflate to");
  }
  SECTION("a corrupt or cut gzip stream") {
    Bytes big = idx_header(0x08, {64, 64});
    for (int i = 0; i < 64 * 64; ++i) big.push_back(static_cast<unsigned char>((i * 37) ^ (i >> 3)));
    const std::string whole = gzip("whole.gz", big);
    const Bytes z = read_file(whole);
    REQUIRE(z.size() > 40);
    // The compressed stream cut in the middle.
    require_refused(plain("cut.gz", Bytes(z.begin(), z.begin() + std::ptrdiff_t(z.size() / 2))), "cut short");
    // The CRC-32 of the trailer changed: the data inflates, the check at its end fails.
    Bytes crc = z;
    crc[crc.size() - 8] ^= 0xFF;
    require_refused(plain("crc.gz", crc), "corrupt");
  }
  // The well-formed file itself is read, plain and gzipped.
  CHECK(scorekit::io::read_idx(plain("good", good)).size() == 20);
  CHECK(scorekit::io::read_idx(gzip("good.gz", good)).size() == 20);
}

TEST_CASE("A NUL byte or other control character in a file name is escaped in the message", "[io][idx]") {
  try {
    scorekit::io::read_idx(std::string("no\x01such\nfile", 13));
    FAIL("read_idx accepted a missing file");
  } catch (const scorekit::io_error& e) {
    const std::string m = e.what();
    CHECK(m.find("no\\x01such\\x0Afile") != std::string::npos);
    CHECK(m.find("cannot open it") != std::string::npos);
  }
}

TEST_CASE("read_labelled_images checks images and labels against each other", "[io][idx]") {
  const scorekit_test::TempDir dir("idx_pairs");
  write_pair(dir, "ok", 12, 4, 6, 12);
  const scorekit::io::LabelledImages d =
      scorekit::io::read_labelled_images(dir.file("ok-images.gz"), dir.file("ok-labels.gz"));
  CHECK(d.n == 12);
  CHECK(d.h == 4);
  CHECK(d.w == 6);
  CHECK(d.pixels[std::size_t(5 * 24 + 3)] == (7 * 5 + 3) % 256);
  CHECK(d.labels[11] == 1);

  auto refused = [&](const std::string& images, const std::string& labels, const std::string& phrase) {
    INFO(phrase);
    try {
      scorekit::io::read_labelled_images(images, labels);
      FAIL("accepted");
    } catch (const scorekit::io_error& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find(phrase) != std::string::npos);
    }
  };
  write_pair(dir, "count", 12, 4, 6, 11);
  refused(dir.file("count-images.gz"), dir.file("count-labels.gz"),
          dir.file("count-images.gz") + " holds 12 images but " + dir.file("count-labels.gz") +
              " holds 11 labels");
  // The two files swapped: labels where images belong.
  refused(dir.file("ok-labels.gz"), dir.file("ok-images.gz"),
          "holds a rank-1 array of unsigned byte (0x08), not images");
  write_pair(dir, "range", 12, 4, 6, 12, 1);  // labels 1..10
  refused(dir.file("range-images.gz"), dir.file("range-labels.gz"),
          "label 9 is 10, but there are 10 classes");
}

TEST_CASE("images_to_rows scales, dequantises and pools", "[io][idx]") {
  const scorekit_test::TempDir dir("idx_rows");
  write_pair(dir, "d", 5, 4, 6, 5);
  const scorekit::io::LabelledImages d =
      scorekit::io::read_labelled_images(dir.file("d-images.gz"), dir.file("d-labels.gz"));
  const auto pixel = [&](int i, int q) { return double(d.pixels[std::size_t(i * 24 + q)]); };

  const auto scaled = scorekit::io::images_to_rows<double>(d);
  REQUIRE(scaled.extent(0) == 5);
  REQUIRE(scaled.extent(1) == 24);
  for (int i = 0; i < 5; ++i)
    for (int q = 0; q < 24; ++q) CHECK(scaled(i, q) == pixel(i, q) / 255.0);

  scorekit::io::PixelScaling deq;
  deq.dequantise = true;
  deq.seed = 3;
  const auto a = scorekit::io::images_to_rows<double>(d, deq, false, 1, 3);  // images 1, 2, 3
  const auto b = scorekit::io::images_to_rows<double>(d, deq, false, 2, 1);  // image 2 alone
  deq.epoch = 1;
  const auto c = scorekit::io::images_to_rows<double>(d, deq, false, 1, 3);
  int same_as_next_epoch = 0;
  for (int i = 0; i < 3; ++i)
    for (int q = 0; q < 24; ++q) {
      CHECK(a(i, q) > pixel(i + 1, q) / 256.0);  // (p + u) / 256 with u in (0, 1)
      CHECK(a(i, q) < (pixel(i + 1, q) + 1) / 256.0);
      same_as_next_epoch += a(i, q) == c(i, q);
    }
  // The noise is keyed by the image's index, not its place in the call; a new epoch draws new noise.
  for (int q = 0; q < 24; ++q) CHECK(a(1, q) == b(0, q));
  CHECK(same_as_next_epoch == 0);

  const auto pooled = scorekit::io::images_to_rows<double>(d, {}, true);
  REQUIRE(pooled.extent(1) == 6);  // 2 x 3
  for (int i = 0; i < 5; ++i)
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 3; ++x) {
        const double mean = (pixel(i, (2 * y) * 6 + 2 * x) + pixel(i, (2 * y) * 6 + 2 * x + 1) +
                             pixel(i, (2 * y + 1) * 6 + 2 * x) + pixel(i, (2 * y + 1) * 6 + 2 * x + 1)) /
                            255.0 / 4.0;
        CHECK(pooled(i, y * 3 + x) == Approx(mean).epsilon(1e-15));
      }
  CHECK_THROWS_AS(scorekit::io::images_to_rows<double>(d, {}, false, 3, 3), scorekit::invalid_argument);
}

TEST_CASE(
    "Fashion-MNIST from Debian's dataset-fashion-mnist: 60,000 + 10,000 images of 28 x 28, ten "
    "balanced classes",
    "[io][idx][fashion-mnist]") {
  try {
    scorekit::io::load_fashion_mnist(scorekit::io::FashionMnistSplit::train, "/nonexistent/folder");
    FAIL("a missing folder was accepted");
  } catch (const scorekit::io_error& e) {
    CHECK(std::string(e.what()).find("dataset-fashion-mnist") != std::string::npos);
  }
  for (const auto split : {scorekit::io::FashionMnistSplit::train, scorekit::io::FashionMnistSplit::test}) {
    const bool train = split == scorekit::io::FashionMnistSplit::train;
    const scorekit::io::LabelledImages d = scorekit::io::load_fashion_mnist(split);
    CHECK(d.n == (train ? 60000 : 10000));
    CHECK(d.h == 28);
    CHECK(d.w == 28);
    std::vector<int> per_class(10, 0);
    for (const std::uint8_t l : d.labels) ++per_class[l];
    for (int k = 0; k < 10; ++k) CHECK(per_class[std::size_t(k)] == (train ? 6000 : 1000));
    // Pixels use the whole byte range: 0 (background) and 255 both occur.
    int zeros = 0, full = 0;
    for (const std::uint8_t p : d.pixels) {
      zeros += p == 0;
      full += p == 255;
    }
    CHECK(zeros > 0);
    CHECK(full > 0);
  }
  CHECK(std::string(scorekit::io::fashion_mnist_class_name(9)) == "Ankle boot");
  CHECK_THROWS_AS(scorekit::io::fashion_mnist_class_name(10), scorekit::invalid_argument);
}
