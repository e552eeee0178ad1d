// The noise ladder of EDM (Karras et al. 2022, "Elucidating the design space of diffusion-based generative
// models", eq. 5): sigma_i = (sigma_max^{1/rho} + i / (N - 1) (sigma_min^{1/rho} - sigma_max^{1/rho}))^rho,
// i = 0 ... N - 1, evenly spaced in sigma^{1/rho}. rho = 7 (the paper's choice) crowds the steps at the
// low-noise end; rho = 1 is linear in sigma, and rho -> infinity tends to the geometric ladder. EDM
// appends sigma_N = 0 for its final step; that is the sampler's business and not part of this ladder.
#pragma once

#include <scorekit/core/error.hpp>

#include <cmath>
#include <vector>

namespace scorekit {

/// N levels from sigma_max down to sigma_min (both exact at the ends), strictly decreasing for N > 1.
/// N = 1 gives {sigma_max} and needs sigma_min == sigma_max. Requires finite positive sigmas and rho.
inline std::vector<double> karras_sigmas(int N, double sigma_min, double sigma_max, double rho = 7) {
  const char* where = "karras_sigmas";
  if (N < 1) throw invalid_argument(detail::concat(where, ": the number of levels N must be >= 1, got ", N));
  require_positive(sigma_min, "sigma_min", where);
  require_positive(sigma_max, "sigma_max", where);
  require_positive(rho, "rho", where);
  if (N == 1 && sigma_min != sigma_max)
    throw invalid_argument(detail::concat(where, ": one level needs sigma_min == sigma_max, got ", sigma_min,
                                          " and ", sigma_max));
  if (N > 1 && !(sigma_min < sigma_max))
    throw invalid_argument(detail::concat(where, ": sigma_min (", sigma_min,
                                          ") must be smaller than sigma_max (", sigma_max, ")"));
  std::vector<double> sigmas(static_cast<std::size_t>(N));
  const double top = std::pow(sigma_max, 1 / rho), bottom = std::pow(sigma_min, 1 / rho);
  for (int i = 0; i < N; ++i)
    sigmas[std::size_t(i)] =
        N == 1 ? sigma_max : std::pow(top + double(i) / double(N - 1) * (bottom - top), rho);
  sigmas.front() = sigma_max;
  sigmas.back() = sigma_min;
  return sigmas;
}

}  // namespace scorekit
