// io/samples.hpp: CSV and NPY sample files. The writers take views and run once per backend. (PNG has
// its own file, test_png.cpp; the examples' figures are tested in test_plot.cpp.)
#include <catch2/catch.hpp>

#include "backends.hpp"
#include "support.hpp"

#include <scorekit/io/samples.hpp>

#include <Eigen/Dense>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using scorekit_test::TempDir;

std::vector<std::uint8_t> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("failed sample writes throw io_error naming the path and leave no temporary file",
          "[io][samples]") {
  TempDir dir("fail");
  Eigen::MatrixXd m = Eigen::MatrixXd::Ones(3, 2);
  const std::string nowhere = dir.file("no/such/x.npy");
  try {
    scorekit::io::write_npy(nowhere, m);
    FAIL("writing into a missing directory did not throw");
  } catch (const scorekit::io_error& e) {
    CHECK_THAT(e.what(), Catch::Contains(nowhere));
    CHECK_THAT(e.what(), Catch::Contains(std::strerror(ENOENT)));
  }
  // The target is a directory: the temporary file is written, the rename fails, and the temporary
  // file must be gone afterwards.
  fs::create_directories(dir.path / "target.csv");
  CHECK_THROWS_AS(scorekit::io::write_csv(dir.file("target.csv"), m), scorekit::io_error);
  CHECK_THROWS_AS(scorekit::io::write_npy(dir.file("target.csv"), m), scorekit::io_error);
  CHECK(dir.entries() == std::vector<std::string>{"target.csv"});
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
