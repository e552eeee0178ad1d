// The cosine schedule of Nichol and Dhariwal 2021 ("Improved denoising diffusion probabilistic models",
// eq. 17): alpha_bar(t) = f(t) / f(0), f(t) = cos^2(((t + s) / (1 + s)) pi / 2), s = 0.008, t in [0, 1].
//
// Continuous policy (same members as LinearBeta, so a VP SDE can be templated on either):
//   integral(t) = -log alpha_bar(t) = 2 (log cos theta(0) - log cos theta(t)),  theta(t) = (t+s)/(1+s) pi/2,
//   beta(t) = d/dt integral(t) = pi / (1 + s) tan(theta(t)).
// beta diverges at t = 1 (like 2 / (1 - t)), alpha_bar(1) = 0 and integral(1) = infinity, so a VP SDE
// taken literally to t = 1 has an infinite drift. The discrete schedule of the paper clips each beta at
// 0.999 for the same reason. The continuous policy clips beta(t) at beta_max (default 1000, per unit time)
// and keeps integral = int_0^t beta exact for the clipped beta:
//   beta(t) = beta_max and integral(t) = integral(t_c) + beta_max (t - t_c) for t >= t_c,
//   where beta(t_c) = beta_max: t_c = (1 + s) (2 / pi) atan(z) - s, z = beta_max (1 + s) / pi, and
//   integral(t_c) = log(1 + z^2) + 2 log cos theta(0) (cos(atan z) = 1 / sqrt(1 + z^2)).
// Why 1000: the clip then acts only on t > t_c = 0.99800, where alpha_bar(t_c) = 9.7e-6 already; it leaves
// alpha_bar(1) = 1.3e-6, so the prior N(0, I) at t = 1 is wrong by a KL of only ~1e-6 |x_0|^2 / 2 per unit
// signal, while the drift beta / 2 stays bounded by 500: an explicit step of the usual 1 / 1000 has
// beta dt <= 1 (stable for Euler-Maruyama on dx = -beta x / 2 dt, which needs beta dt < 4), which is the
// continuous counterpart of the paper's beta_N <= 0.999 (a step of 1 / 1000 at beta = 1000 removes
// 1 - e^{-1} = 63% of the signal's variance). The domain stays [0, 1], as for LinearBeta, so a VP SDE
// needs no notion of an end time per schedule.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>

#include <cmath>
#include <limits>
#include <vector>

namespace scorekit {

template <class Real = double>
struct CosineBeta {
  using value_type = Real;
  Real s = Real(0.008);        ///< offset that keeps beta(0) away from 0 (the paper's 0.008)
  Real beta_max = Real(1000);  ///< the clip: the largest beta(t) on [0, 1] (see the header comment)

  KOKKOS_INLINE_FUNCTION Real theta(Real t) const {
    return (t + s) / (Real(1) + s) * (math::pi<Real>() / Real(2));
  }
  /// t_c, where the unclipped beta reaches beta_max.
  KOKKOS_INLINE_FUNCTION Real t_clip() const {
    const Real z = beta_max * (Real(1) + s) / math::pi<Real>();
    return (Real(1) + s) * (Real(2) / math::pi<Real>()) * math::atan2(z, Real(1)) - s;
  }
  KOKKOS_INLINE_FUNCTION Real beta(Real t) const {
    if (t >= t_clip()) return beta_max;
    const Real th = theta(t);
    return math::pi<Real>() / (Real(1) + s) * (math::sin(th) / math::cos(th));
  }
  /// int_0^t beta = -log alpha_bar(t); 0 exactly at t = 0.
  KOKKOS_INLINE_FUNCTION Real integral(Real t) const {
    const Real log_cos_0 = math::log(math::cos(theta(Real(0))));
    const Real tc = t_clip();
    if (t <= tc) return Real(2) * (log_cos_0 - math::log(math::cos(theta(t))));
    const Real z = beta_max * (Real(1) + s) / math::pi<Real>();
    return math::log1p(z * z) + Real(2) * log_cos_0 + beta_max * (t - tc);
  }
  KOKKOS_INLINE_FUNCTION Real alpha_bar(Real t) const { return math::exp(-integral(t)); }

  /// Throws invalid_argument unless s >= 0 is finite and beta_max is finite and above beta(0).
  void check(const char* where = "CosineBeta") const {
    if (!(s >= Real(0)) || !(s < std::numeric_limits<Real>::infinity()))
      throw invalid_argument(detail::concat(where, ": the offset s must be finite and >= 0, got ", s));
    require_positive(beta_max, "beta_max", where);
    const double th0 = double(s) / (1 + double(s)) * (math::pi<double>() / 2);
    const double beta_0 = math::pi<double>() / (1 + double(s)) * std::tan(th0);
    if (!(double(beta_max) > beta_0))
      throw invalid_argument(
          detail::concat(where, ": beta_max (", beta_max, ") must exceed the schedule's beta(0) = ", beta_0));
  }
};

/// A checked CosineBeta.
template <class Real = double>
CosineBeta<Real> make_cosine_beta(Real s = Real(0.008), Real beta_max = Real(1000)) {
  CosineBeta<Real> schedule{s, beta_max};
  schedule.check("make_cosine_beta");
  return schedule;
}

/// The paper's discrete betas: beta_n = min(1 - alpha_bar(n / N) / alpha_bar((n - 1) / N), max_beta),
/// n = 1 ... N, with alpha_bar(t) = f(t) / f(0) as above (Nichol and Dhariwal 2021, section 3.2).
/// Requires N >= 1, finite s >= 0 and 0 < max_beta < 1.
inline std::vector<double> cosine_betas(int N, double s = 0.008, double max_beta = 0.999) {
  const char* where = "cosine_betas";
  if (N < 1) throw invalid_argument(detail::concat(where, ": the number of steps N must be >= 1, got ", N));
  if (!(s >= 0) || !(s < std::numeric_limits<double>::infinity()))
    throw invalid_argument(detail::concat(where, ": the offset s must be finite and >= 0, got ", s));
  if (!(max_beta > 0 && max_beta < 1))
    throw invalid_argument(detail::concat(where, ": max_beta must lie in (0, 1), got ", max_beta));
  auto f = [s](double t) {
    const double c = std::cos((t + s) / (1 + s) * (math::pi<double>() / 2));
    return c * c;
  };
  std::vector<double> betas(static_cast<std::size_t>(N));
  double previous = f(0);
  for (int n = 1; n <= N; ++n) {
    const double current = f(double(n) / N);
    const double beta = 1 - current / previous;
    betas[std::size_t(n - 1)] = beta < max_beta ? beta : max_beta;
    previous = current;
  }
  return betas;
}

}  // namespace scorekit
