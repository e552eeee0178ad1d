// Euler-Maruyama: x' = x + f(x, t) h + g(t) sqrt(|h|) z, h = t' - t, for any DriftDiffusion system and
// either direction of time. On a ReverseSDE it is score_sde's EulerMaruyamaPredictor; on a
// ProbabilityFlowODE (g = 0) it is Euler's method. Strong order 1/2 in general, 1 for additive noise (every
// SDE in sde/), weak order 1.
#pragma once

#include <scorekit/integrate/integrate_common.hpp>

namespace scorekit {

struct EulerMaruyama {
  static constexpr int n_vectors = 1;
  template <class System>
  static void check(const System&) {}
  int evaluations(double, double) const { return 1; }

  template <class System, class Real>
  KOKKOS_INLINE_FUNCTION void step(const System& system, Real* x, Real t, Real t_next, bool noise, Real* v,
                                   Real* work, CounterRng<Real>& rng) const {
    const int d = system.dim();
    const Real h = t_next - t;
    system.drift(static_cast<const Real*>(x), t, v, work);
    const Real g = system.diffusion(t);
    if (!noise || g == Real(0)) {
      for (int j = 0; j < d; ++j) x[j] += h * v[j];
    } else {
      const Real noise = g * math::sqrt(h < Real(0) ? -h : h);
      rng.for_each_normal(d, [&](int j, Real z) { x[j] += h * v[j] + noise * z; });
    }
  }
};

}  // namespace scorekit
