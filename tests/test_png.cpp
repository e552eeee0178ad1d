// io/png.hpp: PNG writing and reading through libpng. Host code, run once. The files the tests write or
// damage are also seeds for the fuzz harness tests/fuzz/fuzz_png.cpp (SCOREKIT_FUZZ_CORPUS).
//
// The hand-made files below are built with zlib and the chunk layout of the PNG specification (W3C,
// "Portable Network Graphics (PNG) Specification", 2nd ed., 2003), independently of libpng, so that the
// reader is checked against files that another writer made.
// scorekit-requires: SCOREKIT_HAVE_PNG
#include <catch2/catch.hpp>

#include "support.hpp"

#include <scorekit/core/file.hpp>
#include <scorekit/io/png.hpp>

#include <zlib.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;
using scorekit::io::Image;
using scorekit_test::TempDir;

Bytes bytes_of(const std::string& s) { return Bytes(s.begin(), s.end()); }

Bytes slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::uint32_t be32(const std::uint8_t* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | p[3];
}

void put_be32(Bytes& out, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(std::uint8_t(v >> s));
}

Bytes random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  Bytes v(n);
  for (auto& b : v) b = std::uint8_t(gen() & 0xFFu);
  return v;
}

/// Writes bytes to a file in `dir` and adds it to the fuzz corpus; returns the path.
std::string save(const TempDir& dir, const std::string& name, const Bytes& b) {
  const std::string path = dir.file(name);
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  }
  scorekit_test::add_fuzz_seed(path);
  return path;
}

/// The message of the io_error that decoding `b` under `name` throws ("" if none).
std::string decode_error(const Bytes& b, const std::string& name = "test.png") {
  try {
    (void)scorekit::io::decode_png(b, name);
  } catch (const scorekit::io_error& e) {
    return e.what();
  }
  return "";
}

struct Chunk {
  std::string type;
  Bytes data;
};

/// Walks a PNG file's chunks independently of libpng, checking the signature, that every chunk fits in
/// the file, and every chunk's CRC.
std::vector<Chunk> png_chunks(const Bytes& f) {
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
    CHECK(scorekit::detail::crc32(type, len + 4) == be32(type + 4 + len));
    chunks.push_back({std::string(type, type + 4), Bytes(type + 4, type + 4 + len)});
    pos += 12 + len;
  }
  return chunks;
}

/// A PNG file assembled by hand: the signature, then each chunk with its length and CRC.
Bytes assemble(const std::vector<Chunk>& chunks) {
  Bytes f = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  for (const Chunk& c : chunks) {
    put_be32(f, std::uint32_t(c.data.size()));
    const std::size_t start = f.size();
    f.insert(f.end(), c.type.begin(), c.type.end());
    f.insert(f.end(), c.data.begin(), c.data.end());
    put_be32(f, scorekit::detail::crc32(f.data() + start, f.size() - start));
  }
  return f;
}

Chunk ihdr(std::uint32_t w, std::uint32_t h, int depth, int colour_type, int interlace = 0) {
  Chunk c{"IHDR", {}};
  put_be32(c.data, w);
  put_be32(c.data, h);
  c.data.insert(c.data.end(),
                {std::uint8_t(depth), std::uint8_t(colour_type), 0, 0, std::uint8_t(interlace)});
  return c;
}

/// An IDAT chunk holding the zlib stream of `raw` (scanlines, each with its filter byte).
Chunk idat(const Bytes& raw) {
  uLongf n = compressBound(uLong(raw.size()));
  Bytes z(n);
  REQUIRE(compress2(z.data(), &n, raw.data(), uLong(raw.size()), 9) == Z_OK);
  z.resize(n);
  return {"IDAT", z};
}

const Chunk iend{"IEND", {}};

/// Unfiltered scanlines ("None" filter) from rows of packed bytes.
Bytes scanlines(const std::vector<Bytes>& rows) {
  Bytes raw;
  for (const Bytes& r : rows) {
    raw.push_back(0);
    raw.insert(raw.end(), r.begin(), r.end());
  }
  return raw;
}

}  // namespace

TEST_CASE("PNG files round-trip exactly and have a valid chunk structure", "[io][png]") {
  TempDir dir("png");
  for (int channels : {1, 3, 4})
    for (auto size : {std::pair<int, int>{1, 1}, {17, 5}, {64, 48}}) {
      const int w = size.first, h = size.second;
      const auto pixels = random_bytes(std::size_t(w * h * channels), unsigned(100 * channels + w));
      const std::string path = dir.file("img_" + std::to_string(channels) + "_" + std::to_string(w) + ".png");
      scorekit::io::write_png(path, w, h, pixels);
      scorekit_test::add_fuzz_seed(path);
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
      const auto& header = chunks.front().data;
      REQUIRE(header.size() == 13);
      CHECK(be32(header.data()) == std::uint32_t(w));
      CHECK(be32(header.data() + 4) == std::uint32_t(h));
      CHECK(int(header[8]) == 8);
      CHECK(int(header[9]) == (channels == 1 ? 0 : channels == 3 ? 2 : 6));
      CHECK(int(header[12]) == 0);  // not interlaced
      // Only image data between IHDR and IEND, and zlib (not libpng) inflates it to one filter byte (0..4)
      // and the samples per row.
      Bytes z;
      for (std::size_t k = 1; k + 1 < chunks.size(); ++k) {
        CHECK(chunks[k].type == "IDAT");
        z.insert(z.end(), chunks[k].data.begin(), chunks[k].data.end());
      }
      const std::size_t stride = std::size_t(w * channels);
      Bytes raw(std::size_t(h) * (stride + 1));
      uLongf n = uLongf(raw.size());
      REQUIRE(uncompress(raw.data(), &n, z.data(), uLong(z.size())) == Z_OK);
      CHECK(n == raw.size());
      for (int y = 0; y < h; ++y) CHECK(int(raw[std::size_t(y) * (stride + 1)]) <= 4);
    }

  // read_png_rgb: grey is replicated, alpha dropped.
  const Bytes rgba = {10, 20, 30, 40, 50, 60, 70, 80};
  scorekit::io::write_png(dir.file("rgba.png"), 2, 1, rgba);
  CHECK(scorekit::io::read_png_rgb(dir.file("rgba.png")).pixels == Bytes{10, 20, 30, 50, 60, 70});
  scorekit::io::write_png(dir.file("grey.png"), 2, 1, Bytes{7, 9});
  CHECK(scorekit::io::read_png_rgb(dir.file("grey.png")).pixels == Bytes{7, 7, 7, 9, 9, 9});

  // A pixel count that fits no channel count is refused, and so is an empty image.
  CHECK_THROWS_AS(scorekit::io::write_png(dir.file("bad.png"), 4, 4, Bytes(20)),
                  scorekit::dimension_mismatch);
  CHECK_THROWS_AS(scorekit::io::write_png(dir.file("bad.png"), 0, 4, Bytes{}), scorekit::invalid_argument);
  CHECK_THROWS_AS(scorekit::io::encode_png(1 << 25, 1, Bytes{}), scorekit::invalid_argument);
}

TEST_CASE("the same image gives the same bytes (compression level and filters are fixed)", "[io][png]") {
  // A smooth RGB image, the kind of figure and sample grid the examples write: the encoder's filters
  // matter for it, and it compresses well below its raw size.
  const int w = 200, h = 120;
  Bytes pixels(std::size_t(w * h * 3));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        pixels[std::size_t((y * w + x) * 3 + c)] =
            std::uint8_t((x * (c + 1) + y * (3 - c)) / 3 + ((x * y) % 3));
  const Bytes first = scorekit::io::encode_png(w, h, pixels);
  CHECK(scorekit::io::encode_png(w, h, pixels) == first);
  CHECK(first.size() < pixels.size() / 4);
  Bytes other = pixels;
  other[12345] ^= 1;
  CHECK(scorekit::io::encode_png(w, h, other) != first);
  CHECK(scorekit::io::decode_png(first).pixels == pixels);
}

TEST_CASE("files from another writer: palettes, transparency, 1-bit and 16-bit grey, grey+alpha, interlacing",
          "[io][png]") {
  TempDir dir("foreign");
  // A 2-bit palette of three colours, the third half transparent (tRNS): RGBA out.
  {
    const Chunk plte{"PLTE", {255, 0, 0, 0, 255, 0, 0, 0, 255}};
    const Chunk trns{"tRNS", {255, 255, 128}};
    // Pixels 0, 1, 2, 1 in one row: 2 bits each, most significant first: 00 01 10 01.
    const Bytes f = assemble({ihdr(4, 1, 2, 3), plte, trns, idat(scanlines({{0x19}})), iend});
    const Image img = scorekit::io::read_png(save(dir, "palette.png", f));
    CHECK(img.channels == 4);
    CHECK(img.pixels == Bytes{255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 128, 0, 255, 0, 255});
  }
  // A palette without transparency: RGB.
  {
    const Bytes f =
        assemble({ihdr(2, 1, 8, 3), {"PLTE", {1, 2, 3, 4, 5, 6}}, idat(scanlines({{1, 0}})), iend});
    const Image img = scorekit::io::decode_png(f);
    CHECK(img.channels == 3);
    CHECK(img.pixels == Bytes{4, 5, 6, 1, 2, 3});
  }
  // 1-bit grey: 0 and 1 become 0 and 255.
  {
    const Bytes f = assemble({ihdr(3, 2, 1, 0), idat(scanlines({{0xA0}, {0x40}})), iend});
    const Image img = scorekit::io::read_png(save(dir, "grey1.png", f));
    CHECK(img.channels == 1);
    CHECK(img.pixels == Bytes{255, 0, 255, 0, 255, 0});
  }
  // 16-bit grey, scaled to 8 bits with rounding: v -> round(v * 255 / 65535).
  {
    const Bytes f = assemble(
        {ihdr(4, 1, 16, 0), idat(scanlines({{0x00, 0x00, 0xFF, 0xFF, 0x80, 0x00, 0x01, 0x01}})), iend});
    const Image img = scorekit::io::read_png(save(dir, "grey16.png", f));
    CHECK(img.channels == 1);
    CHECK(img.pixels == Bytes{0, 255, 128, 1});
  }
  // Grey with alpha: two channels, kept.
  {
    const Bytes f = assemble({ihdr(2, 1, 8, 4), idat(scanlines({{10, 200, 20, 100}})), iend});
    const Image img = scorekit::io::decode_png(f);
    CHECK(img.channels == 2);
    CHECK(img.pixels == Bytes{10, 200, 20, 100});
    CHECK(scorekit::io::read_png_rgb(save(dir, "grey_alpha.png", f)).pixels == Bytes{10, 10, 10, 20, 20, 20});
  }
  // Adam7 interlacing of a 3 x 3 grey image: passes 1 (0,0), 4 (x=2 of row 0), 5 (row 2: x=0, 2),
  // 6 (x=1 of rows 0 and 2), 7 (rows 1: x=0..2). Pixel value = 10 * y + x.
  {
    const Bytes raw = {0, 0,            // pass 1: (0,0)
                       0, 2,            // pass 4: (2,0)
                       0, 20, 22,       // pass 5: (0,2), (2,2)
                       0, 1,  0,  21,   // pass 6: (1,0); (1,2)
                       0, 10, 11, 12};  // pass 7: row 1
    const Bytes f = assemble({ihdr(3, 3, 8, 0, 1), idat(raw), iend});
    const Image img = scorekit::io::read_png(save(dir, "adam7.png", f));
    CHECK(img.pixels == Bytes{0, 1, 2, 10, 11, 12, 20, 21, 22});
  }
  // Ancillary chunks the reader does not use (text, gamma, an unknown one) are skipped.
  {
    const Bytes f = assemble({ihdr(1, 1, 8, 0),
                              {"gAMA", {0, 0, 0xB1, 0x8F}},
                              {"tEXt", bytes_of(std::string("Comment\0hi", 10))},
                              {"quAk", {1, 2, 3}},
                              idat(scanlines({{77}})),
                              iend});
    CHECK(scorekit::io::decode_png(f).pixels == Bytes{77});
  }
}

TEST_CASE("damaged PNG files are refused with io_error naming the file", "[io][png]") {
  TempDir dir("damaged");
  const auto pixels = random_bytes(32 * 32 * 3, 5);
  const std::string path = dir.file("ok.png");
  scorekit::io::write_png(path, 32, 32, pixels);
  const Bytes good = slurp(path);

  auto refused = [&](const Bytes& f, const std::string& name, const std::string& phrase) {
    const std::string file = save(dir, name, f);
    std::string message;
    try {
      (void)scorekit::io::read_png(file);
    } catch (const scorekit::io_error& e) {
      message = e.what();
    }
    INFO(name << ": " << message);
    CHECK_THAT(message, Catch::Contains(file));
    CHECK_THAT(message, Catch::Contains(phrase));
  };

  Bytes flipped = good;
  flipped[good.size() / 2] ^= 0x01;            // inside IDAT: its CRC no longer matches
  refused(flipped, "flipped.png", "damaged");  // (the inflater may notice before the CRC does)
  refused(Bytes(good.begin(), good.end() - 20), "truncated.png", "truncated");
  refused(Bytes(good.begin(), good.begin() + 40), "header_only.png", "truncated");
  refused(bytes_of("GIF89a, not a PNG"), "gif.png", "not a PNG file");
  refused(Bytes{}, "empty.png", "not a PNG file");

  // Made by hand: each damage the chunk CRCs cannot catch, because the CRCs are right. (The phrases
  // checked are libpng's, after "libpng:" in the message.)
  const Chunk image = idat(scanlines({{1, 2, 3}, {4, 5, 6}}));
  CHECK(scorekit::io::decode_png(assemble({ihdr(3, 2, 8, 0), image, iend})).pixels ==
        Bytes{1, 2, 3, 4, 5, 6});
  Chunk bad_adler = image;
  bad_adler.data.back() ^= 0x5A;  // zlib's Adler-32 of the image data
  refused(assemble({ihdr(3, 2, 8, 0), bad_adler, iend}), "adler.png", "data check");
  refused(assemble({ihdr(3, 3, 8, 0), image, iend}), "short_data.png", "image data");  // a row is missing
  refused(assemble({ihdr(3, 1, 8, 0), image, iend}), "long_data.png", "image data");   // a row too many
  refused(assemble({ihdr(3, 2, 8, 0), {"CRIT", {1}}, image, iend}), "critical.png", "critical chunk");
  refused(assemble({ihdr(3, 2, 8, 0), image}), "no_iend.png", "truncated");
  refused(assemble({ihdr(3, 2, 8, 5), image, iend}), "colour_type.png", "color type");  // no colour type 5
  refused(assemble({image, ihdr(3, 2, 8, 0), iend}), "no_ihdr.png", "IHDR");
  // A wrong CRC in an ancillary chunk is refused too (libpng's default would only warn).
  Bytes text = assemble({ihdr(3, 2, 8, 0), {"tEXt", bytes_of("a")}, image, iend});
  text[8 + 25 + 12] ^= 1;  // the last byte of the tEXt chunk (after the signature and IHDR): its CRC
  refused(text, "text_crc.png", "CRC");

  // A 60-byte file that declares a 2^24 x 2^24 RGBA image is refused before anything is allocated for it.
  refused(assemble({ihdr(1u << 24, 1u << 24, 8, 6), image, iend}), "huge.png", "can hold");
  // Past the limit of 2^24 pixels a side.
  refused(assemble({ihdr((1u << 24) + 1, 1, 8, 0), image, iend}), "wide.png", "limit");

  // A name with control characters is escaped in the message.
  const std::string message = decode_error(bytes_of("nope"), "a\nb");
  CHECK_THAT(message, Catch::Contains("a\\x0Ab"));
  try {
    (void)scorekit::io::read_png(dir.file("missing.png"));
    FAIL("reading a missing file did not throw");
  } catch (const scorekit::io_error& e) {
    CHECK_THAT(e.what(), Catch::Contains(dir.file("missing.png")));
  }
}

TEST_CASE("failed PNG writes throw io_error naming the path and leave no temporary file", "[io][png]") {
  TempDir dir("fail");
  const Bytes pixels(3 * 4 * 4, 200);

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

  // A successful write replaces an existing file and leaves nothing else behind.
  scorekit::io::write_png(dir.file("a.png"), 4, 4, pixels);
  const Bytes other(3 * 4 * 4, 17);
  scorekit::io::write_png(dir.file("a.png"), 4, 4, other);
  CHECK(scorekit::io::read_png(dir.file("a.png")).pixels == other);
  CHECK(dir.entries().size() == 2);
}
