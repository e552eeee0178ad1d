// Reading NPY and NPZ files (io/npy.hpp, io/arrays.hpp): round trips through the library's own NPY
// writer, the files NumPy itself writes (tests/fixtures/make_numpy_fixtures.py, run by ctest's
// numpy_fixtures), and every kind of damaged or foreign file refused by name.
#include "backends.hpp"
#include "support.hpp"

#include <catch2/catch.hpp>

#include <scorekit/density/draw.hpp>
#include <scorekit/io/arrays.hpp>
#include <scorekit/io/npy.hpp>
#include <scorekit/io/samples.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace {

using Bytes = std::vector<std::uint8_t>;
using scorekit::io::NpyArray;
using scorekit::io::NpyType;
using scorekit_test::Backends;
using scorekit_test::TempDir;

void put(Bytes& b, std::uint64_t x, int n) {
  for (int k = 0; k < n; ++k) b.push_back(std::uint8_t(x >> (8 * k)));
}

void write_bytes(const std::string& path, const Bytes& b) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  }
  scorekit_test::add_fuzz_seed(path);
}

/// An NPY file of format version `major`.0 with the given header dictionary and data bytes (the
/// header padded with spaces and a newline to a multiple of 64, as NumPy pads it).
Bytes npy_file(const std::string& dict, const Bytes& data, int major = 1) {
  Bytes b = {0x93, 'N', 'U', 'M', 'P', 'Y', std::uint8_t(major), 0};
  const std::size_t prefix = major == 1 ? 10 : 12;
  std::string text = dict;
  while ((prefix + text.size() + 1) % 64 != 0) text += ' ';
  text += '\n';
  put(b, text.size(), major == 1 ? 2 : 4);
  b.insert(b.end(), text.begin(), text.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

Bytes f4_data(int n) {
  Bytes d;
  for (int i = 0; i < n; ++i) {
    const float v = 0.5f * float(i) - 1.0f;
    std::uint32_t u;
    std::memcpy(&u, &v, 4);
    put(d, u, 4);
  }
  return d;
}

/// A stored (uncompressed) zip archive of the given entries, as numpy.savez writes one.
struct ZipEntry {
  std::string name;
  Bytes data;
  std::uint16_t method = 0;
  std::uint16_t flags = 0;
  std::int64_t crc = -1;  ///< the CRC-32 to record (-1: the right one)
};
Bytes zip_file(const std::vector<ZipEntry>& entries) {
  Bytes b, cd;
  for (const ZipEntry& e : entries) {
    const std::uint64_t offset = b.size();
    const std::uint32_t crc =
        e.crc >= 0 ? std::uint32_t(e.crc) : scorekit::detail::crc32(e.data.data(), e.data.size());
    put(b, 0x04034b50u, 4);
    put(b, 20, 2);
    put(b, e.flags, 2);
    put(b, e.method, 2);
    put(b, 0, 4);
    put(b, crc, 4);
    put(b, e.data.size(), 4);
    put(b, e.data.size(), 4);
    put(b, e.name.size(), 2);
    put(b, 0, 2);
    b.insert(b.end(), e.name.begin(), e.name.end());
    b.insert(b.end(), e.data.begin(), e.data.end());
    put(cd, 0x02014b50u, 4);
    put(cd, 20, 2);
    put(cd, 20, 2);
    put(cd, e.flags, 2);
    put(cd, e.method, 2);
    put(cd, 0, 4);
    put(cd, crc, 4);
    put(cd, e.data.size(), 4);
    put(cd, e.data.size(), 4);
    put(cd, e.name.size(), 2);
    put(cd, 0, 2);
    put(cd, 0, 2);
    put(cd, 0, 2);
    put(cd, 0, 2);
    put(cd, 0, 4);
    put(cd, offset, 4);
    cd.insert(cd.end(), e.name.begin(), e.name.end());
  }
  const std::uint64_t cd_offset = b.size();
  b.insert(b.end(), cd.begin(), cd.end());
  put(b, 0x06054b50u, 4);
  put(b, 0, 4);
  put(b, entries.size(), 2);
  put(b, entries.size(), 2);
  put(b, cd.size(), 4);
  put(b, cd_offset, 4);
  put(b, 0, 2);
  return b;
}

template <class F>
std::string io_error_of(F f) {
  return scorekit_test::message_of<scorekit::io_error>(f);
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("npy: what write_npy writes, read_npy reads back bitwise", "[io][npy]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  TempDir dir("npy_roundtrip");
  auto x = scorekit::make_particles<double>(Exec(), 37, 3);
  scorekit::fill_normal(Exec(), x, 0.0, 1e3, 11);
  const std::string path = dir.file("x.npy");
  scorekit::io::write_npy(path, x);
  scorekit_test::add_fuzz_seed(path);
  const NpyArray a = scorekit::io::read_npy(path);
  CHECK(a.type == NpyType::float64);
  CHECK(a.shape == std::vector<std::int64_t>{37, 3});
  const auto back = scorekit::io::read_npy_rows<double, Mem>(path, 3);
  CHECK(scorekit_test::bitwise_equal(scorekit::to_host(x), back));

  Kokkos::View<float*, Mem> v("v", 5);
  Kokkos::deep_copy(v, 0.1f);
  scorekit::io::write_npy(dir.file("v.npy"), v);
  const NpyArray b = scorekit::io::read_npy(dir.file("v.npy"));
  CHECK(b.type == NpyType::float32);
  CHECK(b.shape == std::vector<std::int64_t>{5});
  CHECK(b.values<float>() == std::vector<float>(5, 0.1f));
  // Rows of the wrong width are named.
  CHECK_THROWS_AS(scorekit::io::read_npy_rows<double>(path, 4), scorekit::dimension_mismatch);
  CHECK_THROWS_WITH(scorekit::io::read_npy_rows<double>(path, 4),
                    Catch::Contains("has 3 values per row") && Catch::Contains("expected 4"));
}

TEST_CASE("npy: versions 1.0 and 2.0, every integer width, both byte orders and Fortran order", "[io][npy]") {
  TempDir dir("npy_kinds");
  const std::string path = dir.file("a.npy");
  write_bytes(path, npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f4_data(6), 2));
  NpyArray a = scorekit::io::read_npy(path);
  CHECK(a.values<double>() == std::vector<double>{-1.0, -0.5, 0.0, 0.5, 1.0, 1.5});
  // Fortran order: element (i, j) is stored at j * 2 + i; read back in C order.
  write_bytes(path, npy_file("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", f4_data(6)));
  a = scorekit::io::read_npy(path);
  CHECK(a.values<double>() == std::vector<double>{-1.0, 0.0, 1.0, -0.5, 0.5, 1.5});
  // Big-endian 16-bit integers, and bytes of every signedness.
  write_bytes(path, npy_file("{'descr': '>i2', 'fortran_order': False, 'shape': (3,), }",
                             Bytes{0xFF, 0xFE, 0x00, 0x07, 0x80, 0x00}));
  CHECK(scorekit::io::read_npy(path).values<double>() == std::vector<double>{-2.0, 7.0, -32768.0});
  write_bytes(path, npy_file("{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }", Bytes{0xFF, 3}));
  CHECK(scorekit::io::read_npy(path).values<float>() == std::vector<float>{255.0f, 3.0f});
  write_bytes(path, npy_file("{'descr': '|i1', 'fortran_order': False, 'shape': (2,), }", Bytes{0xFF, 3}));
  CHECK(scorekit::io::read_npy(path).values<float>() == std::vector<float>{-1.0f, 3.0f});
  // A 0-d array holds one value; an empty one none.
  write_bytes(path, npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", f4_data(1)));
  CHECK(scorekit::io::read_npy(path).size() == 1);
  CHECK_THROWS_WITH(scorekit::io::to_rows<float>(scorekit::io::read_npy(path), "scalar"),
                    Catch::Contains("'scalar' is 0-dimensional"));
  write_bytes(path, npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (0, 4), }", {}));
  CHECK(scorekit::io::read_npy_rows<double>(path, 4).extent(0) == 0);
  // A float64 beyond float's range is refused for float rows, not made infinite.
  Bytes big;
  put(big, 0x7FE0000000000000ull, 8);  // 2^1023
  write_bytes(path, npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1), }", big));
  CHECK_THROWS_WITH(scorekit::io::read_npy_rows<float>(path), Catch::Contains("does not fit the value type"));
  CHECK(scorekit::io::read_npy_rows<double>(path)(0, 0) == std::ldexp(1.0, 1023));
}

TEST_CASE("npy: damaged and foreign files are refused with the file and the problem", "[io][npy]") {
  TempDir dir("npy_bad");
  const std::string path = dir.file("bad.npy");
  auto error = [&](const Bytes& b) {
    write_bytes(path, b);
    return io_error_of([&] { scorekit::io::read_npy(path); });
  };
  auto with = [&](const std::string& dict, const Bytes& data) { return error(npy_file(dict, data)); };
  const std::string ok_dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  CHECK_THAT(error({'P', 'K', 3, 4}), Catch::Contains("bad.npy") && Catch::Contains("not an NPY file"));
  CHECK_THAT(error({0x93, 'N', 'U'}), Catch::Contains("truncated"));
  Bytes v9 = npy_file(ok_dict, f4_data(6));
  v9[6] = 9;
  CHECK_THAT(error(v9), Catch::Contains("NPY format version 9.0"));
  Bytes liar = npy_file(ok_dict, f4_data(6));
  liar[8] = 0xFF;
  liar[9] = 0x7F;
  CHECK_THAT(error(liar), Catch::Contains("truncated: the header announces 32767 bytes"));
  CHECK_THAT(with(ok_dict, f4_data(5)),
             Catch::Contains("truncated: dtype float32 and shape (2, 3) need 24 bytes"));
  CHECK_THAT(with(ok_dict, f4_data(7)), Catch::Contains("trailing data"));
  CHECK_THAT(with("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", Bytes(16)),
             Catch::Contains("dtype '<c8' is not one scorekit reads"));
  CHECK_THAT(with("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", Bytes(16)),
             Catch::Contains("dtype '|O'"));
  CHECK_THAT(with("{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }", Bytes(4)),
             Catch::Contains("dtype '<f2'"));
  CHECK_THAT(with("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", Bytes(8)),
             Catch::Contains("expected a quoted dtype"));
  CHECK_THAT(with("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }", Bytes(8)),
             Catch::Contains("fortran_order is neither True nor False"));
  CHECK_THAT(with("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", Bytes(8)),
             Catch::Contains("shape is not a tuple of non-negative integers"));
  CHECK_THAT(with("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4), }", {}),
             Catch::Contains("more bytes than any array holds"));
  // Empty, but its other dimensions multiply past 2^63 - 1 (fuzz_npy's finding: NpyArray::size()
  // overflowed); NumPy refuses such a shape too.
  CHECK_THAT(with("{'descr': '|u1', 'fortran_order': False, 'shape': (4294967296, 2147483649, 0), }", {}),
             Catch::Contains("more bytes than any array holds"));
  CHECK_THAT(with("{'descr': '|u1', 'fortran_order': False, 'shape': (0, 4294967296, 2147483649), }", {}),
             Catch::Contains("more bytes than any array holds"));
  CHECK_THAT(with("{'descr': '<f4', 'fortran_order': False, }", {}),
             Catch::Contains("lacks the key 'shape'"));
  CHECK_THAT(with("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}", Bytes(8)),
             Catch::Contains("unknown key 'extra'"));
  CHECK_THAT(with("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", Bytes(8)),
             Catch::Contains("repeated key 'descr'"));
  using namespace std::string_literals;
  CHECK_THAT(with("{'descr': '<f4\0\n', 'fortran_order': False, 'shape': (2,), }"s, Bytes(8)),
             Catch::Contains("dtype '<f4\\x00\\x0A' is not one scorekit reads"));
  CHECK_THAT(io_error_of([&] { scorekit::io::read_npy(dir.file("missing.npy")); }),
             Catch::Contains("missing.npy") && Catch::Contains("cannot open"));
}

TEST_CASE("npz: stored archives read; damaged or foreign ones are refused by entry", "[io][npy][npz]") {
  TempDir dir("npz");
  const std::string path = dir.file("a.npz");
  const Bytes x = npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f4_data(6));
  const Bytes y = npy_file("{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }", Bytes{1, 2});
  write_bytes(path, zip_file({{"x.npy", x}, {"y.npy", y}}));
  const auto arrays = scorekit::io::read_npz(path);
  REQUIRE(arrays.size() == 2);
  CHECK(arrays.at("x").values<double>() == std::vector<double>{-1.0, -0.5, 0.0, 0.5, 1.0, 1.5});
  CHECK(arrays.at("y").values<double>() == std::vector<double>{1.0, 2.0});

  auto error = [&](const Bytes& b) {
    write_bytes(path, b);
    return io_error_of([&] { scorekit::io::read_npz(path); });
  };
  CHECK_THAT(error(x), Catch::Contains("a.npz") && Catch::Contains("not a zip archive"));
  Bytes cut = zip_file({{"x.npy", x}});
  cut.resize(cut.size() - 5);
  CHECK_THAT(error(cut), Catch::Contains("no end of central directory record"));
  CHECK_THAT(error(zip_file({{"x.npy", x, 0, 0, 12345}})),
             Catch::Contains("entry 'x.npy': corrupt: its CRC-32 does not match"));
  CHECK_THAT(error(zip_file({{"x.npy", x, 12}})), Catch::Contains("entry 'x.npy': compression method 12"));
  CHECK_THAT(error(zip_file({{"x.npy", x, 0, 1}})), Catch::Contains("encrypted"));
  CHECK_THAT(error(zip_file({{"x.txt", x}})), Catch::Contains("entry 'x.txt': not an NPY file"));
  CHECK_THAT(error(zip_file({{"x.npy", x}, {"x.npy", y}})), Catch::Contains("two entries named 'x.npy'"));
  CHECK_THAT(error(zip_file({{std::string("x\n\0.txt", 7), y}})),
             Catch::Contains("entry 'x\\x0A\\x00.txt': not an NPY file"));
  // An entry whose NPY content is damaged is named with the archive.
  Bytes bad_x = x;
  bad_x.pop_back();
  CHECK_THAT(error(zip_file({{"x.npy", bad_x}})),
             Catch::Contains("a.npz': entry 'x.npy': truncated: dtype float32"));
  // Sizes that lie: the central directory's compressed size past the data.
  Bytes lying = zip_file({{"x.npy", x}});
  const std::size_t cd = lying.size() - 22 - (46 + 5);
  lying[cd + 20] = 0xFF;
  lying[cd + 24] = 0xFF;
  CHECK_THAT(error(lying), Catch::Contains("entry 'x.npy': corrupt:") && Catch::Contains("run past"));
}

// Hidden: run by ctest's numpy_fixtures after tests/fixtures/make_numpy_fixtures.py wrote the files
// into SCOREKIT_NUMPY_FIXTURES with NumPy itself.
TEST_CASE("npy: the files NumPy writes read as NumPy wrote them", "[.numpy]") {
  const char* env = std::getenv("SCOREKIT_NUMPY_FIXTURES");
  REQUIRE(env != nullptr);
  const std::string dir = env;
  auto grid = [](std::size_t n, double scale = 0.25, double offset = -1.0) {
    std::vector<double> v(n);
    for (std::size_t k = 0; k < n; ++k) v[k] = offset + scale * double(k);
    return v;
  };
  using scorekit::io::read_npy;
  NpyArray a = read_npy(dir + "/f4_2d.npy");
  CHECK(a.type == NpyType::float32);
  CHECK(a.shape == std::vector<std::int64_t>{3, 4});
  CHECK(a.values<double>() == grid(12));
  a = read_npy(dir + "/f8_fortran.npy");  // numpy.asfortranarray: stored column-major
  CHECK(a.shape == std::vector<std::int64_t>{3, 4, 2});
  CHECK(a.values<double>() == grid(24));
  CHECK(read_npy(dir + "/f8_v2.npy").values<double>() == grid(6));
  a = read_npy(dir + "/i2_big_endian.npy");
  CHECK(a.type == NpyType::int16);
  CHECK(a.values<double>() == grid(10, 1.0, -5.0));
  a = read_npy(dir + "/u1_images.npy");
  const auto images = scorekit::io::to_rows<float>(a, "images", 18);
  REQUIRE(images.extent(0) == 2);
  for (std::size_t k = 0; k < 36; ++k) CHECK(images(k / 18, k % 18) == float(k * 7 % 256));
  a = read_npy(dir + "/b1_1d.npy");
  CHECK(a.type == NpyType::boolean);
  CHECK(a.values<double>() == std::vector<double>{1, 0, 0, 1, 0, 0, 1});
  a = read_npy(dir + "/i8_1d.npy");
  for (std::size_t k = 0; k < 7; ++k) CHECK(a.value(k) == double((std::int64_t(k) - 3) * 1000000007));
  CHECK_THAT(io_error_of([&] { read_npy(dir + "/c8_complex.npy"); }), Catch::Contains("dtype '<c8'"));

  const auto stored = scorekit::io::read_npz(dir + "/stored.npz");
  CHECK(stored.at("x").values<double>() == grid(8));
  CHECK(stored.at("labels").values<double>() == grid(4, 1.0, 0.0));
  const auto deflated = scorekit::io::read_npz(dir + "/deflated.npz");
  CHECK(deflated.at("x").values<double>() == grid(300));
  CHECK(deflated.at("y").values<double>() == grid(5, 2.0, 3.0));
  CHECK(scorekit::io::read_npz(dir + "/zip64.npz").at("x").values<double>() == grid(8));
  for (const char* f : {"stored.npz", "deflated.npz", "zip64.npz", "f8_fortran.npy", "i2_big_endian.npy"})
    scorekit_test::add_fuzz_seed(dir + "/" + f);
}
