// io/: PNG encoding and decoding, plots, CSV and NPY sample files. The PNG and plot tests are host code
// and run once; the sample writers take views and run once per backend.
#include <catch2/catch.hpp>

#include "backends.hpp"
#include "support.hpp"

#include <scorekit/io/plot.hpp>
#include <scorekit/io/png.hpp>
#include <scorekit/io/samples.hpp>

#include <Eigen/Dense>

#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using scorekit::io::Image;

using scorekit_test::TempDir;

std::vector<std::uint8_t> bytes_of(const std::string& s) {
  return std::vector<std::uint8_t>(s.begin(), s.end());
}

std::vector<std::uint8_t> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::uint32_t be32(const std::uint8_t* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | p[3];
}

struct Chunk {
  std::string type;
  std::vector<std::uint8_t> data;
};

/// Walks a PNG file's chunks independently of the reader, checking the signature, that every chunk
/// fits in the file, and every chunk's CRC (with the CRC-32 that the known-answer test pins down).
std::vector<Chunk> png_chunks(const std::vector<std::uint8_t>& f) {
  const std::uint8_t sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  REQUIRE(f.size() >= 8);
  REQUIRE(std::memcmp(f.data(), sig, 8) == 0);
  std::vector<Chunk> chunks;
  std::size_t pos = 8;
  while (pos < f.size()) {
    REQUIRE(pos + 12 <= f.size());
    const std::uint32_t len = be32(f.data() + pos);
    REQUIRE(pos + 12 + len <= f.size());
    const std::uint8_t* type = f.data() + pos + 4;
    CHECK(scorekit::io::detail::crc32(type, len + 4) == be32(type + 4 + len));
    chunks.push_back({std::string(type, type + 4), std::vector<std::uint8_t>(type + 4, type + 4 + len)});
    pos += 12 + len;
  }
  return chunks;
}

std::vector<std::uint8_t> random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::vector<std::uint8_t> v(n);
  for (auto& b : v) b = std::uint8_t(gen() & 0xFFu);
  return v;
}

/// The DEFLATE block type (0 stored, 1 fixed, 2 dynamic) of the first block of a zlib stream.
int first_block_type(const std::vector<std::uint8_t>& z) { return (z.at(2) >> 1) & 3; }

std::vector<std::uint8_t> inflate(const std::vector<std::uint8_t>& z, std::size_t max_out) {
  return scorekit::io::detail::Inflater(z.data(), z.size(), "test").zlib(max_out);
}

std::array<int, 3> pixel(const Image& img, int x, int y) {
  const std::size_t o =
      (std::size_t(y) * std::size_t(img.width) + std::size_t(x)) * std::size_t(img.channels);
  return {img.pixels[o], img.pixels[o + 1], img.pixels[o + 2]};
}
std::array<int, 3> rgb(scorekit::io::Rgba c) { return {c.r, c.g, c.b}; }

}  // namespace

TEST_CASE("CRC-32 and Adler-32 give the published check values", "[io][png]") {
  using scorekit::io::detail::adler32;
  using scorekit::io::detail::crc32;
  const auto digits = bytes_of("123456789"), wiki = bytes_of("Wikipedia");
  // The CRC-32 check value of "123456789" (the standard catalogue entry for CRC-32/ISO-HDLC) and the
  // Adler-32 of "Wikipedia" (the worked example of the algorithm).
  CHECK(crc32(digits.data(), digits.size()) == 0xCBF43926u);
  CHECK(adler32(wiki.data(), wiki.size()) == 0x11E60398u);
  CHECK(crc32(nullptr, 0) == 0u);
  CHECK(adler32(nullptr, 0) == 1u);
  // Running checksums over pieces equal the checksum of the whole, also across Adler's 5552-byte
  // reduction interval.
  const auto big = random_bytes(20000, 1);
  CHECK(crc32(big.data() + 7000, 13000, crc32(big.data(), 7000)) == crc32(big.data(), big.size()));
  CHECK(adler32(big.data() + 7000, 13000, adler32(big.data(), 7000)) == adler32(big.data(), big.size()));
  std::uint32_t a = 0, b = 1;  // the definition: sums mod 65521, with a starting at 1
  for (std::uint8_t x : big) {
    b = (b + x) % 65521u;
    a = (a + b) % 65521u;
  }
  CHECK(adler32(big.data(), big.size()) == ((a << 16) | b));
}

TEST_CASE("the inflater decodes streams made by the reference zlib", "[io][png]") {
  // zlib.compress(data, 9) from Python's zlib module (the reference implementation), recorded once:
  // a fixed-Huffman block, and a dynamic-Huffman block.
  const std::vector<std::uint8_t> fixed = {0x78, 0xda, 0x2b, 0x4e, 0xce, 0x2f, 0x4a, 0xcd, 0xce, 0x2c, 0x51,
                                           0x28, 0x46, 0x67, 0x28, 0x02, 0x00, 0x97, 0x48, 0x0a, 0x8e};
  CHECK(first_block_type(fixed) == 1);
  const auto plain = inflate(fixed, 1000);
  CHECK(std::string(plain.begin(), plain.end()) == "scorekit scorekit scorekit!");

  const std::vector<std::uint8_t> dynamic = {
      0x78, 0xda, 0xd5, 0x8e, 0xc1, 0x0d, 0xc3, 0x30, 0x0c, 0x03, 0x57, 0xe1, 0x00, 0x45, 0x77, 0xe8, 0x3f,
      0x4b, 0xa8, 0xb6, 0xe2, 0x08, 0x90, 0x25, 0xc3, 0x72, 0x92, 0x66, 0xfb, 0x3a, 0xdd, 0xa2, 0x5f, 0xe2,
      0xc8, 0xe3, 0x42, 0x56, 0xf8, 0x10, 0x43, 0xbe, 0x8c, 0xaa, 0xa4, 0x40, 0xee, 0x74, 0x06, 0x82, 0x6a,
      0x53, 0x0e, 0xac, 0xdd, 0x2b, 0x08, 0x99, 0x2d, 0x64, 0x5c, 0x68, 0xd8, 0x43, 0xac, 0xc0, 0x4d, 0x2f,
      0xc8, 0x98, 0x5c, 0xf2, 0xce, 0x0f, 0x8c, 0x8d, 0x51, 0x3a, 0x65, 0x61, 0x1b, 0xf0, 0x15, 0xea, 0x05,
      0xed, 0x89, 0x97, 0x19, 0x93, 0xde, 0x85, 0x1b, 0x30, 0x97, 0x60, 0x28, 0x1f, 0xac, 0xd8, 0x58, 0x5b,
      0xfc, 0xd2, 0xb4, 0xd1, 0xd4, 0xa7, 0xee, 0x11, 0x78, 0xf3, 0x38, 0x99, 0x0d, 0xd5, 0xf3, 0x74, 0xcf,
      0x1d, 0x42, 0x95, 0xcf, 0xd8, 0x3b, 0x3f, 0xb1, 0xfc, 0xcd, 0xd3, 0x2f, 0x9d, 0x10, 0x7b, 0x5b};
  CHECK(first_block_type(dynamic) == 2);
  const std::string sentence =
      "Langevin dynamics draws samples from a density p using only its score, the gradient of log p. "
      "Annealing the noise level helps the chain cross between modes of a mixture. ";
  const auto text = inflate(dynamic, 1000);
  CHECK(std::string(text.begin(), text.end()) == sentence + sentence);

  // Damage is detected: a flipped bit in the data breaks the code or the Adler-32; a cap on the
  // output size stops a stream that claims more.
  auto broken = dynamic;
  broken[40] ^= 0x10;
  CHECK_THROWS_AS(inflate(broken, 1000), scorekit::io_error);
  CHECK_THROWS_AS(inflate(dynamic, 100), scorekit::io_error);
}

TEST_CASE("the compressor's stored, fixed and dynamic blocks all round-trip", "[io][png]") {
  using scorekit::io::detail::zlib_compress;
  // Incompressible bytes go into stored blocks, a short repetitive string into a fixed-code block,
  // and a long smooth signal (small residuals, a skewed histogram) into dynamic blocks.
  const auto noise = random_bytes(100000, 2);
  const auto short_text = bytes_of("abcabcabcabcabcabcabcabc");
  std::vector<std::uint8_t> smooth(200000);
  for (std::size_t i = 0; i < smooth.size(); ++i)
    smooth[i] = std::uint8_t(128 + 100 * std::sin(0.001 * double(i)) + double((i * 7919) % 5));
  const std::vector<std::uint8_t> empty;
  struct Case {
    const std::vector<std::uint8_t>* data;
    int type;
  };
  for (const Case& c : {Case{&noise, 0}, Case{&short_text, 1}, Case{&smooth, 2}, Case{&empty, 1}}) {
    const auto z = zlib_compress(*c.data);
    CHECK(first_block_type(z) == c.type);
    CHECK(inflate(z, c.data->size()) == *c.data);
    // (CMF * 256 + FLG) is a multiple of 31 (RFC 1950, sec. 2.2).
    CHECK((z[0] * 256 + z[1]) % 31 == 0);
  }
  // Noise costs at most the stored format's overhead: 5 bytes per block (a block holds at most 32768
  // LZ77 tokens, so at most 32768 bytes of noise), the 2-byte header and the 4-byte Adler-32. The
  // smooth signal compresses several-fold.
  CHECK(zlib_compress(noise).size() <= noise.size() + 5 * ((noise.size() + 32767) / 32768) + 6);
  CHECK(zlib_compress(smooth).size() < smooth.size() / 3);
}

TEST_CASE("PNG files round-trip exactly and have a valid chunk structure", "[io][png]") {
  TempDir dir("png");
  for (int channels : {1, 3, 4})
    for (auto size : {std::pair<int, int>{1, 1}, {17, 5}, {64, 48}}) {
      const int w = size.first, h = size.second;
      const auto pixels = random_bytes(std::size_t(w * h * channels), unsigned(100 * channels + w));
      const std::string path = dir.file("img_" + std::to_string(channels) + "_" + std::to_string(w) + ".png");
      scorekit::io::write_png(path, w, h, pixels);
      const Image img = scorekit::io::read_png(path);
      CHECK(img.width == w);
      CHECK(img.height == h);
      CHECK(img.channels == channels);
      CHECK(img.pixels == pixels);

      const auto chunks = png_chunks(slurp(path));
      REQUIRE(chunks.size() >= 3);
      CHECK(chunks.front().type == "IHDR");
      CHECK(chunks.back().type == "IEND");
      CHECK(chunks.back().data.empty());
      const auto& ihdr = chunks.front().data;
      REQUIRE(ihdr.size() == 13);
      CHECK(be32(ihdr.data()) == std::uint32_t(w));
      CHECK(be32(ihdr.data() + 4) == std::uint32_t(h));
      CHECK(int(ihdr[8]) == 8);
      CHECK(int(ihdr[9]) == (channels == 1 ? 0 : channels == 3 ? 2 : 6));
      for (std::size_t k = 1; k + 1 < chunks.size(); ++k) CHECK(chunks[k].type == "IDAT");
    }

  // read_png_rgb: grey is replicated, alpha dropped.
  const std::vector<std::uint8_t> rgba = {10, 20, 30, 40, 50, 60, 70, 80};
  scorekit::io::write_png(dir.file("rgba.png"), 2, 1, rgba);
  CHECK(scorekit::io::read_png_rgb(dir.file("rgba.png")).pixels ==
        std::vector<std::uint8_t>{10, 20, 30, 50, 60, 70});
  scorekit::io::write_png(dir.file("grey.png"), 2, 1, std::vector<std::uint8_t>{7, 9});
  CHECK(scorekit::io::read_png_rgb(dir.file("grey.png")).pixels ==
        std::vector<std::uint8_t>{7, 7, 7, 9, 9, 9});

  // A pixel count that fits no channel count is refused.
  CHECK_THROWS_AS(scorekit::io::write_png(dir.file("bad.png"), 4, 4, std::vector<std::uint8_t>(20)),
                  scorekit::dimension_mismatch);
  CHECK_THROWS_AS(scorekit::io::write_png(dir.file("bad.png"), 0, 4, std::vector<std::uint8_t>{}),
                  scorekit::invalid_argument);
}

TEST_CASE("damaged PNG files are refused with io_error", "[io][png]") {
  TempDir dir("damaged");
  const auto pixels = random_bytes(32 * 32 * 3, 5);
  const std::string path = dir.file("ok.png");
  scorekit::io::write_png(path, 32, 32, pixels);
  const auto good = slurp(path);

  auto flipped = good;
  flipped[good.size() / 2] ^= 0x01;  // inside IDAT: its CRC no longer matches
  CHECK_THROWS_AS(scorekit::io::decode_png(flipped), scorekit::io_error);
  const std::vector<std::uint8_t> truncated(good.begin(), good.begin() + std::ptrdiff_t(good.size() - 20));
  CHECK_THROWS_AS(scorekit::io::decode_png(truncated), scorekit::io_error);
  CHECK_THROWS_AS(scorekit::io::decode_png(bytes_of("GIF89a, not a PNG")), scorekit::io_error);
  try {
    scorekit::io::read_png(dir.file("missing.png"));
    FAIL("reading a missing file did not throw");
  } catch (const scorekit::io_error& e) {
    CHECK_THAT(e.what(), Catch::Contains(dir.file("missing.png")));
  }
}

TEST_CASE("failed writes throw io_error naming the path and leave no temporary file", "[io][png]") {
  TempDir dir("fail");
  const std::vector<std::uint8_t> pixels(3 * 4 * 4, 200);

  // A directory that does not exist: nothing can be created at all.
  const std::string nowhere = dir.file("no/such/dir/x.png");
  try {
    scorekit::io::write_png(nowhere, 4, 4, pixels);
    FAIL("writing into a missing directory did not throw");
  } catch (const scorekit::io_error& e) {
    CHECK_THAT(e.what(), Catch::Contains(nowhere));
    CHECK_THAT(e.what(), Catch::Contains(std::strerror(ENOENT)));
  }

  // The target is a directory: the temporary file is written, the rename fails, and the temporary
  // file must be gone afterwards.
  fs::create_directories(dir.path / "target.png");
  CHECK_THROWS_AS(scorekit::io::write_png(dir.file("target.png"), 4, 4, pixels), scorekit::io_error);
  CHECK(dir.entries() == std::vector<std::string>{"target.png"});

  // Same for the sample writers.
  Eigen::MatrixXd m = Eigen::MatrixXd::Ones(3, 2);
  CHECK_THROWS_AS(scorekit::io::write_csv(dir.file("target.png"), m), scorekit::io_error);
  CHECK_THROWS_AS(scorekit::io::write_npy(dir.file("target.png"), m), scorekit::io_error);
  CHECK_THROWS_AS(scorekit::io::write_npy(dir.file("no/such/x.npy"), m), scorekit::io_error);
  CHECK(dir.entries() == std::vector<std::string>{"target.png"});

  // A successful write replaces an existing file and leaves nothing else behind.
  scorekit::io::write_png(dir.file("a.png"), 4, 4, pixels);
  const std::vector<std::uint8_t> other(3 * 4 * 4, 17);
  scorekit::io::write_png(dir.file("a.png"), 4, 4, other);
  CHECK(scorekit::io::read_png(dir.file("a.png")).pixels == other);
  CHECK(dir.entries().size() == 2);
}

TEST_CASE("colour maps have their end points and are monotone in lightness", "[io][plot]") {
  using scorekit::io::Colormap;
  using scorekit::io::colormap;
  CHECK(rgb(colormap(Colormap::viridis, 0.0)) == std::array<int, 3>{68, 1, 84});
  CHECK(rgb(colormap(Colormap::viridis, 1.0)) == std::array<int, 3>{253, 231, 37});
  CHECK(rgb(colormap(Colormap::viridis, -3.0)) == rgb(colormap(Colormap::viridis, 0.0)));  // clamped
  CHECK(rgb(colormap(Colormap::grey, 0.0)) == std::array<int, 3>{0, 0, 0});
  CHECK(rgb(colormap(Colormap::grey, 1.0)) == std::array<int, 3>{255, 255, 255});
  CHECK(colormap(Colormap::viridis, std::nan("")).a == 0);
  // viridis is sequential: its luma (Rec. 601 weights) increases with t.
  auto luma = [](scorekit::io::Rgba c) { return 0.299 * c.r + 0.587 * c.g + 0.114 * c.b; };
  for (int k = 0; k < 100; ++k)
    CHECK(luma(colormap(Colormap::viridis, (k + 1) / 100.0)) > luma(colormap(Colormap::viridis, k / 100.0)));
  // The diverging map is lightest in the middle.
  CHECK(luma(colormap(Colormap::diverging, 0.5)) > luma(colormap(Colormap::diverging, 0.4)));
  CHECK(luma(colormap(Colormap::diverging, 0.5)) > luma(colormap(Colormap::diverging, 0.6)));
}

TEST_CASE("a figure draws data where the axes say, and its PNG reads back exactly", "[io][plot]") {
  using namespace scorekit::io;
  TempDir dir("plot");
  Figure fig(1, 2, 120);
  fig.title("annealed Langevin, mixture");
  // Panel 0: a heatmap of f = x (linear in x), a red dot at the origin, a blue line at y = 0.5.
  fig.panel(0, 0)
      .xlim(-1, 1)
      .ylim(-1, 1)
      .title("x")
      .heatmap([](double x, double) { return x; })
      .scatter({0.0}, {0.0}, colors::red, 3.0)
      .line({-1.0, 1.0}, {0.5, 0.5}, Rgba{0, 0, 255, 255}, 3.0);
  // Panel 1: a 2 x 2 grid heatmap; cell (i, j) at the i-th column from the left, j-th row from the bottom.
  fig.panel(0, 1).xlim(0, 2).ylim(0, 2).heatmap({1.0, 2.0, 3.0, 4.0}, 2, 2, HeatmapStyle(Colormap::grey));
  const Image img = fig.render();
  CHECK(img.width == fig.width());
  CHECK(img.height == fig.height());

  auto at = [&](int col, double x, double y) {
    const auto p = fig.to_pixel(0, col, x, y);
    return pixel(img, int(std::floor(p.first)), int(std::floor(p.second)));
  };
  CHECK(at(0, 0.0, 0.0) == rgb(colors::red));
  CHECK(at(0, 0.4, 0.5) == std::array<int, 3>{0, 0, 255});
  // The heatmap's colour range is the range of f over the pixel centres: the leftmost column has the
  // lowest colour, the rightmost the highest, and away from the dot and line f increases with x.
  CHECK(at(0, -0.999, -0.5) == rgb(colormap(Colormap::viridis, 0.0)));
  CHECK(at(0, 0.999, -0.5) == rgb(colormap(Colormap::viridis, 1.0)));
  CHECK(at(0, -0.5, -0.5)[1] < at(0, 0.5, -0.5)[1]);  // viridis' green channel increases
  // Grid heatmap: values 1..4 over [1, 4] on the grey map: 1 black, 4 white, 2 and 3 in between.
  CHECK(at(1, 0.5, 0.5) == std::array<int, 3>{0, 0, 0});
  CHECK(at(1, 1.5, 1.5) == std::array<int, 3>{255, 255, 255});
  CHECK(at(1, 1.5, 0.5) == rgb(colormap(Colormap::grey, 1.0 / 3.0)));
  CHECK(at(1, 0.5, 1.5) == rgb(colormap(Colormap::grey, 2.0 / 3.0)));
  // The titles put dark pixels into the band above the panels; the corners stay white.
  int dark = 0;
  for (int y = 0; y < int(fig.to_pixel(0, 0, 0, 1).second) - 2; ++y)
    for (int x = 0; x < img.width; ++x) dark += pixel(img, x, y)[0] < 100;
  CHECK(dark > 100);
  CHECK(pixel(img, 0, 0) == std::array<int, 3>{255, 255, 255});
  CHECK(pixel(img, img.width - 1, img.height - 1) == std::array<int, 3>{255, 255, 255});

  fig.save(dir.file("fig.png"));
  const Image back = read_png_rgb(dir.file("fig.png"));
  CHECK(back.width == img.width);
  CHECK(back.height == img.height);
  CHECK(back.pixels == img.pixels);
  CHECK(png_chunks(slurp(dir.file("fig.png"))).back().type == "IEND");
}

TEST_CASE("a full-size figure with a density, 2000 dots and a line compresses to a few hundred KB",
          "[io][plot]") {
  using namespace scorekit::io;
  TempDir dir("size");
  std::mt19937 gen(11);
  std::normal_distribution<double> normal;
  std::vector<double> xs, ys;
  for (int i = 0; i < 2000; ++i) {
    xs.push_back((i % 2 ? 1.5 : -1.5) + 0.6 * normal(gen));
    ys.push_back((i % 2 ? 1.0 : -1.0) + 0.6 * normal(gen));
  }
  auto density = [](double x, double y) {
    return std::exp(-((x - 1.5) * (x - 1.5) + (y - 1) * (y - 1)) / 0.72) +
           std::exp(-((x + 1.5) * (x + 1.5) + (y + 1) * (y + 1)) / 0.72);
  };
  HeatmapStyle style;
  style.colorbar = true;
  Figure fig(1, 1, 780, 620);
  fig.title("two-mode mixture");
  fig.panel(0, 0)
      .xlim(-4, 4)
      .ylim(-4, 4)
      .heatmap(density, style)
      .scatter(xs, ys, with_alpha(colors::white, 0.5), 1.6);
  fig.panel(0, 0).line({-3, -1, 0, 2}, {3, 1, 2, -1}, colors::orange, 2.0);
  fig.save(dir.file("big.png"));
  const auto size = fs::file_size(dir.file("big.png"));
  INFO("figure " << fig.width() << " x " << fig.height() << ", " << size << " bytes");
  CHECK(fig.width() >= 900);
  CHECK(fig.height() >= 700);
  CHECK(size < 400u * 1024u);
  CHECK(read_png_rgb(dir.file("big.png")).pixels == fig.render().pixels);
}

TEST_CASE("a function heatmap is evaluated once per pixel however often the figure is used", "[io][plot]") {
  using namespace scorekit::io;
  long calls = 0;
  HeatmapStyle style;
  style.colorbar = true;  // the colour bar's ticks need the values already for the layout
  Figure fig(1, 1, 50, 40);
  fig.panel(0, 0).xlim(0, 1).ylim(0, 1).heatmap(
      [&calls](double x, double y) {
        ++calls;
        return x + y;
      },
      style);
  (void)fig.width();
  (void)fig.to_pixel(0, 0, 0.5, 0.5);
  const Image first = fig.render();
  fig.save(TempDir("cache").file("f.png"));
  CHECK(calls == 50 * 40);
  // A new data range invalidates the cached values.
  fig.panel(0, 0).xlim(0, 2);
  const Image second = fig.render();
  CHECK(calls == 2 * 50 * 40);
  CHECK(first.pixels != second.pixels);
}

TEST_CASE("plot arguments are checked", "[io][plot]") {
  using namespace scorekit::io;
  Figure fig(2, 2, 64);
  CHECK_THROWS_AS(fig.panel(2, 0), scorekit::invalid_argument);
  CHECK_THROWS_AS(fig.panel(0, 0).xlim(1, 0), scorekit::invalid_argument);
  CHECK_THROWS_AS(fig.panel(0, 0).ylim(0, std::nan("")), scorekit::invalid_argument);
  CHECK_THROWS_AS(fig.panel(0, 0).scatter({1, 2}, {1}), scorekit::dimension_mismatch);
  CHECK_THROWS_AS(fig.panel(0, 0).line({1, 2}, {1, 2}, colors::red, 0.0), scorekit::invalid_argument);
  CHECK_THROWS_AS(fig.panel(0, 0).heatmap(std::vector<double>(5), 2, 3), scorekit::dimension_mismatch);
  HeatmapStyle log_style;
  log_style.scale = Scale::log;
  log_style.vmin = -1;
  CHECK_THROWS_AS(fig.panel(0, 0).heatmap([](double, double) { return 1.0; }, log_style),
                  scorekit::invalid_argument);
  CHECK_THROWS_AS(Figure(0, 1), scorekit::invalid_argument);
  // Empty panels and an all-NaN heatmap still render.
  fig.panel(1, 1).heatmap([](double, double) { return std::nan(""); });
  CHECK(fig.render().pixels.size() == std::size_t(fig.width()) * std::size_t(fig.height()) * 3);
}

namespace {

/// Parses an NPY 1.0 file written for a little-endian machine: returns the header dict text and the
/// data bytes, after checking the magic, version, header length and 64-byte alignment.
std::pair<std::string, std::vector<std::uint8_t>> parse_npy(const std::vector<std::uint8_t>& f) {
  REQUIRE(f.size() >= 10);
  CHECK(std::memcmp(f.data(), "\x93NUMPY", 6) == 0);
  CHECK(int(f[6]) == 1);
  CHECK(int(f[7]) == 0);
  const std::size_t hlen = f[8] | (std::size_t(f[9]) << 8);
  REQUIRE(10 + hlen <= f.size());
  CHECK((10 + hlen) % 64 == 0);
  const std::string header(f.begin() + 10, f.begin() + 10 + std::ptrdiff_t(hlen));
  CHECK(header.back() == '\n');
  return {header, std::vector<std::uint8_t>(f.begin() + 10 + std::ptrdiff_t(hlen), f.end())};
}

template <class T>
T little_endian_value(const std::uint8_t* p) {
  std::uint8_t b[sizeof(T)];
  for (std::size_t k = 0; k < sizeof(T); ++k) b[k] = p[k];
  if (!scorekit::io::detail::host_is_little_endian())
    for (std::size_t k = 0; k < sizeof(T) / 2; ++k) std::swap(b[k], b[sizeof(T) - 1 - k]);
  T v;
  std::memcpy(&v, b, sizeof(T));
  return v;
}

/// Values that stress printing: thirds, tiny and huge magnitudes, negative zero, a subnormal.
template <class Real>
Real tricky_value(int i, int j) {
  const Real specials[] = {Real(1) / Real(3),
                           Real(-0.1),
                           Real(1e-30),
                           Real(-2.5e30),
                           Real(-0.0),
                           std::numeric_limits<Real>::denorm_min(),
                           std::numeric_limits<Real>::max(),
                           Real(42)};
  if (i < 8 && j == 0) return specials[i];
  return Real(std::sin(1.0 + 7.3 * i + 1.1 * j) * std::pow(10.0, (i * 3 + j) % 9 - 4));
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("NPY files have a valid header and round-trip views of any layout", "[io][samples]",
                        scorekit_test::Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  TempDir dir("npy");
  const int n = 37, d = 3;

  // double, LayoutRight (the particle layout).
  Kokkos::View<double**, Kokkos::LayoutRight, Mem> x("x", n, d);
  auto hx = Kokkos::create_mirror_view(x);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < d; ++j) hx(i, j) = tricky_value<double>(i, j);
  Kokkos::deep_copy(x, hx);
  scorekit::io::write_npy(dir.file("x.npy"), x);
  {
    const auto parsed = parse_npy(slurp(dir.file("x.npy")));
    CHECK_THAT(parsed.first,
               Catch::StartsWith("{'descr': '<f8', 'fortran_order': False, 'shape': (37, 3), }"));
    REQUIRE(parsed.second.size() == std::size_t(n * d) * 8);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < d; ++j) {
        const double v = little_endian_value<double>(parsed.second.data() + 8 * (i * d + j));
        CHECK(std::memcmp(&v, &hx(i, j), 8) == 0);  // bit for bit, -0.0 included
      }
  }

  // float, LayoutLeft: the file is still in C order.
  Kokkos::View<float**, Kokkos::LayoutLeft, Mem> y("y", n, d);
  auto hy = Kokkos::create_mirror_view(y);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < d; ++j) hy(i, j) = tricky_value<float>(i, j);
  Kokkos::deep_copy(y, hy);
  scorekit::io::write_npy(dir.file("y.npy"), y);
  {
    const auto parsed = parse_npy(slurp(dir.file("y.npy")));
    CHECK_THAT(parsed.first,
               Catch::StartsWith("{'descr': '<f4', 'fortran_order': False, 'shape': (37, 3), }"));
    REQUIRE(parsed.second.size() == std::size_t(n * d) * 4);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < d; ++j)
        CHECK(little_endian_value<float>(parsed.second.data() + 4 * (i * d + j)) == hy(i, j));
  }

  // A rank-1 view of integers has shape (n,).
  Kokkos::View<std::int32_t*, Mem> labels("labels", n);
  auto hl = Kokkos::create_mirror_view(labels);
  for (int i = 0; i < n; ++i) hl(i) = i * i - 100;
  Kokkos::deep_copy(labels, hl);
  scorekit::io::write_npy(dir.file("labels.npy"), labels);
  {
    const auto parsed = parse_npy(slurp(dir.file("labels.npy")));
    CHECK_THAT(parsed.first, Catch::StartsWith("{'descr': '<i4', 'fortran_order': False, 'shape': (37,), }"));
    REQUIRE(parsed.second.size() == std::size_t(n) * 4);
    for (int i = 0; i < n; ++i)
      CHECK(little_endian_value<std::int32_t>(parsed.second.data() + 4 * i) == hl(i));
  }

  // An Eigen matrix writes the same bytes as the view holding the same values.
  Eigen::MatrixXd m(n, d);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < d; ++j) m(i, j) = hx(i, j);
  scorekit::io::write_npy(dir.file("m.npy"), m);
  CHECK(slurp(dir.file("m.npy")) == slurp(dir.file("x.npy")));
  CHECK(dir.entries().size() == 4);  // no temporary files left
}

TEMPLATE_LIST_TEST_CASE("CSV files round-trip to the last bit with a header", "[io][samples]",
                        scorekit_test::Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  TempDir dir("csv");
  const int n = 25, d = 3;
  Kokkos::View<double**, Kokkos::LayoutRight, Mem> x("x", n, d);
  Kokkos::View<float**, Kokkos::LayoutRight, Mem> y("y", n, d);
  auto hx = Kokkos::create_mirror_view(x);
  auto hy = Kokkos::create_mirror_view(y);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < d; ++j) {
      hx(i, j) = tricky_value<double>(i, j);
      hy(i, j) = tricky_value<float>(i, j);
    }
  Kokkos::deep_copy(x, hx);
  Kokkos::deep_copy(y, hy);
  scorekit::io::write_csv(dir.file("x.csv"), x, {"x1", "x2", "a,b \"c\""});
  scorekit::io::write_csv(dir.file("y.csv"), y);

  auto lines_of = [](const std::string& path) {
    std::ifstream in(path);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  };
  auto fields_of = [](const std::string& line) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string cell; std::getline(ss, cell, ',');) f.push_back(cell);
    return f;
  };
  const auto lx = lines_of(dir.file("x.csv"));
  REQUIRE(lx.size() == std::size_t(n + 1));
  CHECK(lx[0] == "x1,x2,\"a,b \"\"c\"\"\"");  // RFC 4180 quoting
  for (int i = 0; i < n; ++i) {
    const auto f = fields_of(lx[std::size_t(i + 1)]);
    REQUIRE(f.size() == std::size_t(d));
    for (int j = 0; j < d; ++j) {
      const double v = std::strtod(f[std::size_t(j)].c_str(), nullptr);
      CHECK(std::memcmp(&v, &hx(i, j), sizeof(double)) == 0);  // max_digits10 digits: the same double
    }
  }
  const auto ly = lines_of(dir.file("y.csv"));
  REQUIRE(ly.size() == std::size_t(n));  // no header
  for (int i = 0; i < n; ++i) {
    const auto f = fields_of(ly[std::size_t(i)]);
    REQUIRE(f.size() == std::size_t(d));
    for (int j = 0; j < d; ++j) CHECK(std::strtof(f[std::size_t(j)].c_str(), nullptr) == hy(i, j));
  }
  // A header that does not name every column is refused before anything is written.
  CHECK_THROWS_AS(scorekit::io::write_csv(dir.file("z.csv"), x, {"only one"}), scorekit::dimension_mismatch);
  CHECK(dir.entries().size() == 2);
}
