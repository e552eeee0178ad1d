// The geometric noise ladder of NCSN (Song and Ermon 2019, section 4.2): sigma_1 > ... > sigma_L with a
// constant ratio sigma_{i-1} / sigma_i.
#pragma once

#include <scorekit/core/error.hpp>

#include <cmath>
#include <vector>

namespace scorekit {

/// L levels from sigma_first down to sigma_last, geometric. L = 1 gives {sigma_first} (then
/// sigma_last must equal it).
template <class Real = double>
std::vector<Real> geometric_schedule(Real sigma_first, Real sigma_last, int n_levels) {
  const char* where = "geometric_schedule";
  require_positive(sigma_first, "sigma_first", where);
  require_positive(sigma_last, "sigma_last", where);
  if (n_levels < 1)
    throw invalid_argument(detail::concat(where, ": the number of levels must be >= 1, got ", n_levels));
  if (n_levels == 1 && sigma_first != sigma_last)
    throw invalid_argument(detail::concat(where, ": one level needs sigma_first == sigma_last"));
  if (n_levels > 1 && !(sigma_first > sigma_last))
    throw invalid_argument(detail::concat(where, ": sigma_first (", sigma_first,
                                          ") must be larger than sigma_last (", sigma_last, ")"));
  std::vector<Real> sigmas(static_cast<std::size_t>(n_levels));
  const double ratio = n_levels > 1 ? std::log(double(sigma_last) / sigma_first) / (n_levels - 1) : 0.0;
  for (int i = 0; i < n_levels; ++i) sigmas[std::size_t(i)] = Real(double(sigma_first) * std::exp(ratio * i));
  sigmas.back() = sigma_last;
  return sigmas;
}

}  // namespace scorekit
