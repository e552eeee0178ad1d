// The exact noise-conditional score of a Gaussian mixture: s(x, sigma) = grad_x log (p * N(0, sigma^2 I))(x),
// in closed form (see density/gaussian_mixture.hpp). This is the ground truth that annealed Langevin and
// every learned noise-conditional score is checked against.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/density/gaussian_mixture.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

namespace scorekit {

/// Noise-conditional score model of a mixture perturbed by N(0, sigma^2 I). The noise levels that will
/// be asked for (a sampler's ladder) are tabulated at construction, so their evaluation needs no log or
/// division; any other sigma > 0 is evaluated on the fly. A mixture that is already perturbed,
/// a X + s Z, composes: adding sigma Z' gives a X + sqrt(s^2 + sigma^2) Z.
template <class Real = double, class MemorySpace = Kokkos::DefaultExecutionSpace::memory_space>
class PerturbedMixtureScore {
 public:
  using value_type = Real;
  using memory_space = MemorySpace;

  PerturbedMixtureScore(const GaussianMixture<Real, MemorySpace>& mixture, std::vector<Real> sigmas = {})
      : m_mixture(mixture), m_table(mixture), m_a(mixture.scale()), m_s2(mixture.noise() * mixture.noise()) {
    for (Real s : sigmas) require_positive(s, "each tabulated noise level", "PerturbedMixtureScore");
    std::sort(sigmas.begin(), sigmas.end());
    sigmas.erase(std::unique(sigmas.begin(), sigmas.end()), sigmas.end());
    m_n_levels = int(sigmas.size());
    m_sigmas = Kokkos::View<Real*, MemorySpace>("scorekit::tabulated_sigmas", sigmas.size());
    auto h = Kokkos::create_mirror_view(m_sigmas);
    for (std::size_t i = 0; i < sigmas.size(); ++i) h(i) = sigmas[i];
    Kokkos::deep_copy(m_sigmas, h);
    // Tabulate into a copy: tabulate() replaces the copy's own level 0, so m_mixture (what mixture()
    // returns) must keep the caller's constants.
    std::vector<Real> total(sigmas.size());
    for (std::size_t i = 0; i < sigmas.size(); ++i) total[i] = std::sqrt(m_s2 + sigmas[i] * sigmas[i]);
    m_table.tabulate(std::vector<Real>(sigmas.size(), m_a), total);
  }

  int dim() const { return m_mixture.dim(); }
  int workspace_size() const { return m_mixture.workspace_size(); }
  const GaussianMixture<Real, MemorySpace>& mixture() const { return m_mixture; }

  /// grad_x log p_sigma(x).
  KOKKOS_INLINE_FUNCTION void score(const Real* x, Real sigma, Real* out, Real* work) const {
    const int level = level_of(sigma);
    m_table.template evaluate<true, false>(x, m_a, level >= 0 ? Real(0) : total_noise(sigma), level, out,
                                           work, nullptr);
  }
  /// The most particles score_block() takes at once.
  static constexpr int max_block = GaussianMixture<Real, MemorySpace>::max_block;

  /// The block score_block() makes faster (see GaussianMixture::block_size).
  int block_size() const { return m_table.block_size(); }

  /// Scores of nb <= max_block particles at one sigma (see GaussianMixture::score_block).
  KOKKOS_INLINE_FUNCTION void score_block(int nb, const Real* x, int x_stride, Real sigma, Real* out,
                                          int out_stride, Real* work, int work_stride) const {
    const int level = level_of(sigma);
    m_table.score_block(nb, x, x_stride, m_a, level >= 0 ? Real(0) : total_noise(sigma), level, out,
                        out_stride, work, work_stride);
  }

  /// log p_sigma(x), normalised.
  KOKKOS_INLINE_FUNCTION Real log_prob(const Real* x, Real sigma, Real* work) const {
    const int level = level_of(sigma);
    return m_table.template evaluate<false, false>(x, m_a, level >= 0 ? Real(0) : total_noise(sigma), level,
                                                   nullptr, work, nullptr);
  }

  /// The tabulated level holding exactly sigma, or -1 (binary search over the sorted levels).
  KOKKOS_INLINE_FUNCTION int level_of(Real sigma) const {
    int lo = 0, hi = m_n_levels;
    while (lo < hi) {
      const int mid = (lo + hi) / 2;
      if (m_sigmas(mid) < sigma)
        lo = mid + 1;
      else
        hi = mid;
    }
    return (lo < m_n_levels && m_sigmas(lo) == sigma) ? lo : -1;
  }

 private:
  // sqrt(s^2 + sigma^2); only the untabulated path uses it (the table holds it already).
  KOKKOS_INLINE_FUNCTION Real total_noise(Real sigma) const { return math::sqrt(m_s2 + sigma * sigma); }

  GaussianMixture<Real, MemorySpace> m_mixture;  // as given
  GaussianMixture<Real, MemorySpace> m_table;    // shares m_mixture's parameters, tabulated at the levels
  Real m_a = 1;                                  // the given mixture's scale a
  Real m_s2 = 0;                                 // and its noise s, squared
  Kokkos::View<Real*, MemorySpace> m_sigmas;
  int m_n_levels = 0;
};

}  // namespace scorekit
