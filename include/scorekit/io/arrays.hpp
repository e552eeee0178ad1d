// NumPy arrays (io/npy.hpp) as Kokkos views: a data set or a batch of particles prepared in Python
// loads without conversion. An array of shape (n, d1, d2, ...) becomes an n x (d1 d2 ...) view, one
// row a sample (images of shape (n, h, w, c) become the rows the image networks take, h w c each, in
// that order); a 1-d array becomes n x 1. Values are converted to Real; a finite value that Real cannot
// hold (a float64 above float's range) is refused, never turned into infinity.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/views.hpp>
#include <scorekit/io/npy.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

namespace scorekit {
namespace io {

/// `a` as an n x d view in memory space Mem (see the top of this file). `expected_columns` >= 0 checks
/// d (a dimension_mismatch naming both); `name` names the array in errors.
template <class Real, class Mem = Kokkos::HostSpace>
ParticleView<Real, Mem> to_rows(const NpyArray& a, const std::string& name,
                                std::int64_t expected_columns = -1) {
  static_assert(std::is_floating_point<Real>::value, "scorekit::io::to_rows: Real is float or double");
  const std::string where = "scorekit::io::to_rows: array '" + scorekit::detail::printable(name) + "'";
  if (a.shape.empty()) throw invalid_argument(where + " is 0-dimensional (one value), not rows of samples");
  const std::int64_t n = a.shape[0];
  std::int64_t d = 1;
  for (std::size_t k = 1; k < a.shape.size(); ++k) d *= a.shape[k];
  if (expected_columns >= 0 && d != expected_columns)
    throw dimension_mismatch(scorekit::detail::concat(where, " has ", d, " values per row (shape's trailing ",
                                                      "dimensions), expected ", expected_columns));
  ParticleView<Real, Mem> out(
      Kokkos::view_alloc(std::string("scorekit::io::") + name, Kokkos::WithoutInitializing), std::size_t(n),
      std::size_t(d));
  auto h = Kokkos::create_mirror_view(out);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < d; ++j) {
      const double v = a.value(std::size_t(i * d + j));
      const Real r = Real(v);
      if (std::isfinite(v) && !std::isfinite(r))
        throw invalid_argument(scorekit::detail::concat(where, ": value ", v, " at row ", i, ", column ", j,
                                                        " does not fit the value type"));
      h(i, j) = r;
    }
  Kokkos::deep_copy(out, h);
  return out;
}

/// Reads an NPY file into an n x d view (read_npy, then to_rows).
template <class Real, class Mem = Kokkos::HostSpace>
ParticleView<Real, Mem> read_npy_rows(const std::string& path, std::int64_t expected_columns = -1) {
  return to_rows<Real, Mem>(read_npy(path), path, expected_columns);
}

}  // namespace io
}  // namespace scorekit
