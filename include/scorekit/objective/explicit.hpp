// Explicit score matching against a known score: loss(x) = 1/2 || s_theta(x) - grad log p(x) ||^2, the
// Fisher divergence integrand. It needs the true score (any Density of density/), so it serves as
// ground truth: ISM's loss differs from it by a constant in theta (tested).
#pragma once

#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/traits.hpp>
#include <scorekit/objective/objective_common.hpp>

#include <string>

namespace scorekit {
namespace objective {

template <class Target>
class ExplicitScoreMatching {
 public:
  using value_type = typename Target::value_type;

  explicit ExplicitScoreMatching(Target target) : m_target(target) { assert_score_density<Target>(); }

  std::string name() const { return "ESM"; }
  KOKKOS_INLINE_FUNCTION int n_levels() const { return 1; }
  const Target& target() const { return m_target; }

  /// The dual block, then d values of target score per sample; the target's own workspace (a run-time
  /// size) follows as extra_workspace_size().
  template <class Net, int B>
  KOKKOS_INLINE_FUNCTION static constexpr int workspace_size() {
    return detail::DualBlockLayout<Net, B, 0>::size + B * Net::in;
  }
  KOKKOS_INLINE_FUNCTION int extra_workspace_size() const { return scorekit::workspace_size(m_target); }

  template <class Net, int B, class Real>
  KOKKOS_INLINE_FUNCTION void accumulate(const Real* params, int nb, const Real* x, const SampleKey&,
                                         Real* grad, Real* stats, Real* work) const {
    using layout = detail::DualBlockLayout<Net, B, 0>;
    constexpr int D = Net::in, W = layout::W;
    static_assert(Net::out == D, "ExplicitScoreMatching: the network must map R^d to R^d");
    Real* tape = work + layout::tape;
    Real* seed = work + layout::seed;
    Real* target = work + layout::size;
    Real* target_work = target + B * D;
    const int level[B] = {};
    detail::load_rows<D, B, 0>(nb, x, tape);
    for (int b = 0; b < nb; ++b) scorekit::score(m_target, x + b * D, target + b * D, target_work);
    Net::template forward<B, 0>(params, level, tape);
    const Real* y = Net::template output<B, 0>(tape);
    for (int b = 0; b < B; ++b) {
      Real loss = Real(0);
      for (int i = 0; i < D; ++i) {
        const Real r = b < nb ? y[i * W + b] - target[b * D + i] : Real(0);
        loss += r * r;
        seed[i * W + b] = r;
      }
      if (b < nb) {
        stats[0] += Real(0.5) * loss;
        stats[1] += Real(1);
      }
    }
    Net::template backward<B, 0>(params, level, tape, seed, grad, nullptr, work + layout::scratch);
  }

 private:
  Target m_target;
};

}  // namespace objective
}  // namespace scorekit
