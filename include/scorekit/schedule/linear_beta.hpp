// The linear beta schedule of a variance-preserving diffusion: continuous, beta(t) = beta_min +
// t (beta_max - beta_min) on t in [0, 1] (Song et al. 2021, "Score-based generative modeling through
// stochastic differential equations", eq. 11, defaults 0.1 and 20), and discrete, DDPM's
// beta_1 ... beta_N = linspace(1e-4, 0.02, N) (Ho et al. 2020, section 4) with alpha_bar_n =
// prod_{k <= n} (1 - beta_k).
//
// A continuous beta policy (LinearBeta, CosineBeta) is a value type copied into kernels with
//   KOKKOS_INLINE_FUNCTION Real beta(Real t) const;       // beta(t), t in [0, 1]
//   KOKKOS_INLINE_FUNCTION Real integral(Real t) const;   // int_0^t beta(s) ds = -log alpha_bar(t)
//   KOKKOS_INLINE_FUNCTION Real alpha_bar(Real t) const;  // exp(-integral(t))
// so that a VP SDE (drift -beta(t) x / 2, diffusion sqrt(beta(t)), marginal mean sqrt(alpha_bar(t)) x_0,
// variance 1 - alpha_bar(t)) can be templated on either. For both, beta_max is the largest beta(t) on
// [0, 1].
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>

#include <cmath>
#include <limits>
#include <vector>

namespace scorekit {

template <class Real = double>
struct LinearBeta {
  using value_type = Real;
  Real beta_min = Real(0.1);
  Real beta_max = Real(20);

  KOKKOS_INLINE_FUNCTION Real beta(Real t) const { return beta_min + t * (beta_max - beta_min); }
  /// int_0^t beta = beta_min t + (beta_max - beta_min) t^2 / 2.
  KOKKOS_INLINE_FUNCTION Real integral(Real t) const {
    return t * (beta_min + Real(0.5) * t * (beta_max - beta_min));
  }
  KOKKOS_INLINE_FUNCTION Real alpha_bar(Real t) const { return math::exp(-integral(t)); }

  /// Throws invalid_argument unless 0 <= beta_min <= beta_max, beta_max > 0, both finite.
  void check(const char* where = "LinearBeta") const {
    if (!(beta_min >= Real(0)) || !(beta_min < std::numeric_limits<Real>::infinity()))
      throw invalid_argument(detail::concat(where, ": beta_min must be finite and >= 0, got ", beta_min));
    require_positive(beta_max, "beta_max", where);
    if (!(beta_min <= beta_max))
      throw invalid_argument(
          detail::concat(where, ": beta_min (", beta_min, ") must not exceed beta_max (", beta_max, ")"));
  }
};

/// A checked LinearBeta (equal ends allowed: a constant beta).
template <class Real = double>
LinearBeta<Real> make_linear_beta(Real beta_min = Real(0.1), Real beta_max = Real(20)) {
  LinearBeta<Real> schedule{beta_min, beta_max};
  schedule.check("make_linear_beta");
  return schedule;
}

/// DDPM's discrete betas: N values from beta_1 to beta_N, evenly spaced (the ends exact). N = 1 gives
/// {beta_1} and needs beta_1 == beta_N. Requires 0 < beta_1 <= beta_N < 1.
inline std::vector<double> ddpm_betas(int N, double beta_1 = 1e-4, double beta_N = 0.02) {
  const char* where = "ddpm_betas";
  if (N < 1) throw invalid_argument(detail::concat(where, ": the number of steps N must be >= 1, got ", N));
  if (!(beta_1 > 0 && beta_1 < 1))
    throw invalid_argument(detail::concat(where, ": beta_1 must lie in (0, 1), got ", beta_1));
  if (!(beta_N > 0 && beta_N < 1))
    throw invalid_argument(detail::concat(where, ": beta_N must lie in (0, 1), got ", beta_N));
  if (!(beta_1 <= beta_N))
    throw invalid_argument(
        detail::concat(where, ": beta_1 (", beta_1, ") must not exceed beta_N (", beta_N, ")"));
  if (N == 1 && beta_1 != beta_N)
    throw invalid_argument(
        detail::concat(where, ": one step needs beta_1 == beta_N, got ", beta_1, " and ", beta_N));
  std::vector<double> betas(static_cast<std::size_t>(N));
  for (int i = 0; i < N; ++i)
    betas[std::size_t(i)] = N == 1 ? beta_1 : beta_1 + (beta_N - beta_1) * (double(i) / double(N - 1));
  betas.back() = beta_N;
  return betas;
}

/// alpha_bar_n = prod_{k <= n} (1 - beta_k), n = 1 ... N (running products, in order). Every beta must be
/// finite and in [0, 1).
inline std::vector<double> alpha_bars(const std::vector<double>& betas) {
  const char* where = "alpha_bars";
  if (betas.empty()) throw invalid_argument(detail::concat(where, ": the beta schedule is empty"));
  std::vector<double> out(betas.size());
  double product = 1;
  for (std::size_t i = 0; i < betas.size(); ++i) {
    if (!(betas[i] >= 0 && betas[i] < 1))
      throw invalid_argument(detail::concat(where, ": beta ", i, " must lie in [0, 1), got ", betas[i]));
    product *= 1 - betas[i];
    out[i] = product;
  }
  return out;
}

}  // namespace scorekit
