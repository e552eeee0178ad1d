// Samples to files that other tools read: CSV (one row a sample, a header of column names) and NPY
// (NumPy's binary format, version 1.0: numpy.load reads it directly). Both are written atomically
// (temporary file, then rename), and both take any rank-1 or rank-2 Kokkos view, in any memory space
// and layout, or any matrix type with rows(), cols() and operator()(i, j) such as an Eigen matrix. A
// view that the host cannot read is copied to the host first (create_mirror_view_and_copy); nothing
// here runs a kernel.
//
// CSV numbers are printed with max_digits10 significant digits, so that reading them back gives the
// same floating-point values (7.2 in the C++ standard's [limits]; 17 digits for double, 9 for float).
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/file.hpp>
#include <scorekit/core/kokkos.hpp>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace scorekit {
namespace io {

namespace detail {

/// A host-readable rows x cols view of the caller's data: a Kokkos view (rank 1 is one column) or a
/// matrix type with rows(), cols() and operator()(i, j).
template <class Data, class = void>
struct Table;

template <class View>
struct Table<View, std::enable_if_t<Kokkos::is_view<View>::value>> {
  static_assert(unsigned(View::rank) == 1 || unsigned(View::rank) == 2,
                "scorekit::io: samples are written from rank-1 or rank-2 views (one row a sample)");
  using value_type = std::remove_cv_t<typename View::value_type>;
  explicit Table(const View& v) : host(Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v)) {}
  std::int64_t rows() const { return std::int64_t(host.extent(0)); }
  std::int64_t cols() const { return unsigned(View::rank) == 2 ? std::int64_t(host.extent(1)) : 1; }
  value_type operator()(std::int64_t i, std::int64_t j) const {
    return at(i, j, std::integral_constant<unsigned, unsigned(View::rank)>{});
  }

 private:
  value_type at(std::int64_t i, std::int64_t, std::integral_constant<unsigned, 1>) const { return host(i); }
  value_type at(std::int64_t i, std::int64_t j, std::integral_constant<unsigned, 2>) const {
    return host(i, j);
  }
  decltype(Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), std::declval<View>())) host;
};

template <class Matrix>
struct Table<Matrix, std::enable_if_t<!Kokkos::is_view<Matrix>::value>> {
  using value_type = std::remove_cv_t<std::remove_reference_t<decltype(std::declval<const Matrix&>()(0, 0))>>;
  explicit Table(const Matrix& m) : matrix(m) {}
  std::int64_t rows() const { return std::int64_t(matrix.rows()); }
  std::int64_t cols() const { return std::int64_t(matrix.cols()); }
  value_type operator()(std::int64_t i, std::int64_t j) const { return matrix(i, j); }
  const Matrix& matrix;
};

template <class T>
constexpr bool is_sample_type() {
  return (std::is_floating_point<T>::value && sizeof(T) <= 8) ||
         (std::is_integral<T>::value && !std::is_same<T, bool>::value);
}

/// One number as text: integers exactly, floating point with max_digits10 significant digits.
template <class T>
void append_number(std::string& out, T v) {
  char buf[48];
  int n;
  if constexpr (std::is_floating_point<T>::value)
    n = std::snprintf(buf, sizeof(buf), "%.*g", std::numeric_limits<T>::max_digits10, double(v));
  else if constexpr (std::is_signed<T>::value)
    n = std::snprintf(buf, sizeof(buf), "%lld", static_cast<long long>(v));
  else
    n = std::snprintf(buf, sizeof(buf), "%llu", static_cast<unsigned long long>(v));
  out.append(buf, std::size_t(n));
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180, sec. 2).
inline std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) {
    if (c == '"') q += '"';
    q += c;
  }
  return q + "\"";
}

/// NumPy's type string for T, little-endian ('<f8' for double, '<f4' for float, '<i8', '|u1', ...).
template <class T>
std::string npy_descr() {
  const char kind = std::is_floating_point<T>::value ? 'f' : std::is_signed<T>::value ? 'i' : 'u';
  return std::string(sizeof(T) == 1 ? "|" : "<") + kind + std::to_string(sizeof(T));
}

using scorekit::detail::AtomicFile;
using scorekit::detail::host_is_little_endian;

/// The NPY 1.0 header (NumPy Enhancement Proposal 1): magic "\x93NUMPY", version 1.0, a little-endian
/// uint16 length, then a Python dict literal padded with spaces and a newline so that the data start
/// at a multiple of 64 bytes.
inline std::string npy_header(const std::string& descr, std::int64_t rows, std::int64_t cols, bool one_d) {
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + std::to_string(rows) +
                     (one_d ? std::string(",") : ", " + std::to_string(cols)) + "), }";
  const std::size_t unpadded = 10 + dict.size() + 1;
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict += '\n';
  std::string h("\x93NUMPY\x01\x00", 8);
  h += char(dict.size() & 0xFFu);
  h += char((dict.size() >> 8) & 0xFFu);
  return h + dict;
}

template <class Data>
constexpr bool is_one_dimensional() {
  if constexpr (Kokkos::is_view<Data>::value)
    return unsigned(Data::rank) == 1;
  else
    return false;
}

}  // namespace detail

/// Writes samples as CSV: one line per row, columns separated by commas, preceded by a line of column
/// names when `header` is not empty (then it must name every column). `data`: a rank-2 Kokkos view (a
/// rank-1 view is one column) in any memory space, or a matrix with rows(), cols(), operator()(i, j).
/// Atomic; throws io_error naming the path when the file cannot be written.
template <class Data>
void write_csv(const std::string& path, const Data& data, const std::vector<std::string>& header = {}) {
  const char* where = "scorekit::io::write_csv";
  const detail::Table<Data> table(data);
  using T = typename detail::Table<Data>::value_type;
  static_assert(detail::is_sample_type<T>(), "scorekit::io::write_csv: the elements must be numbers");
  if (!header.empty())
    require_dimension(std::int64_t(header.size()), table.cols(), "header (one name per column)", where);
  detail::AtomicFile file(path, where);
  std::string buf;
  if (!header.empty()) {
    for (std::size_t j = 0; j < header.size(); ++j) {
      if (j > 0) buf += ',';
      buf += detail::csv_field(header[j]);
    }
    buf += '\n';
  }
  for (std::int64_t i = 0; i < table.rows(); ++i) {
    for (std::int64_t j = 0; j < table.cols(); ++j) {
      if (j > 0) buf += ',';
      detail::append_number<T>(buf, table(i, j));
    }
    buf += '\n';
    if (buf.size() > (1u << 20)) {
      file.write(buf);
      buf.clear();
    }
  }
  file.write(buf);
  file.commit();
}

/// Writes samples as a NumPy .npy file (format 1.0, little-endian, C order): a rank-2 view or matrix
/// gives shape (rows, cols), a rank-1 view shape (n,). Element types: float ('<f4'), double ('<f8')
/// and integers. Atomic; throws io_error naming the path when the file cannot be written.
template <class Data>
void write_npy(const std::string& path, const Data& data) {
  const char* where = "scorekit::io::write_npy";
  const detail::Table<Data> table(data);
  using T = typename detail::Table<Data>::value_type;
  static_assert(detail::is_sample_type<T>(), "scorekit::io::write_npy: the elements must be numbers");
  detail::AtomicFile file(path, where);
  file.write(detail::npy_header(detail::npy_descr<T>(), table.rows(), table.cols(),
                                detail::is_one_dimensional<Data>()));
  const bool swap = !detail::host_is_little_endian();
  std::vector<unsigned char> buf;
  buf.reserve(std::size_t(1) << 20);
  for (std::int64_t i = 0; i < table.rows(); ++i) {
    for (std::int64_t j = 0; j < table.cols(); ++j) {
      const T v = table(i, j);
      unsigned char b[sizeof(T)];
      std::memcpy(b, &v, sizeof(T));
      if (swap)
        for (std::size_t k = 0; k < sizeof(T) / 2; ++k) std::swap(b[k], b[sizeof(T) - 1 - k]);
      buf.insert(buf.end(), b, b + sizeof(T));
    }
    if (buf.size() > (1u << 20)) {
      file.write(buf.data(), buf.size());
      buf.clear();
    }
  }
  file.write(buf.data(), buf.size());
  file.commit();
}

}  // namespace io
}  // namespace scorekit
