// Euler-Maruyama: x' = x + f(x, t) h + g(t) sqrt(|h|) z, h = t' - t, for any DriftDiffusion system and
// either direction of time. On a ReverseSDE it is score_sde's EulerMaruyamaPredictor; on a
// ProbabilityFlowODE (g = 0) it is Euler's method. Strong order 1/2 in general, 1 for additive noise (every
// SDE in sde/), weak order 1.
#pragma once

#include <scorekit/integrate/integrate_common.hpp>

namespace scorekit {

struct EulerMaruyama : BlockStepper<EulerMaruyama> {
  static constexpr int n_vectors = 1;
  template <class System>
  static void check(const System&) {}
  int evaluations(double, double) const { return 1; }

  /// step() of nb particles at one time (integrate_common.hpp's step_block): the drifts through
  /// detail::drift_block (one score_block() call where the system and the model have one), the normals
  /// side by side; `v` is the block's nb d values of scratch.
  template <class System, class Real, class RngOf>
  KOKKOS_INLINE_FUNCTION void step_block(const System& system, int nb, Real* x, int x_stride, Real t,
                                         Real t_next, bool noise, Real* v, Real* work, int work_stride,
                                         RngOf&& rng_of) const {
    const int d = system.dim();
    const Real h = t_next - t;
    detail::drift_block(system, nb, static_cast<const Real*>(x), x_stride, t, v, d, work, work_stride);
    const Real g = system.diffusion(t);
    if (!noise || g == Real(0)) {
      detail::for_each_coordinate(nb, d, x_stride, d, [&](int i, int k) { x[i] += h * v[k]; });
    } else {
      const Real amplitude = g * math::sqrt(h < Real(0) ? -h : h);
      CounterRng<Real>::for_each_normal_block(nb, d, rng_of, [&](int b, int j, Real z) {
        x[b * x_stride + j] += h * v[b * d + j] + amplitude * z;
      });
    }
  }
};

}  // namespace scorekit
