// The exact noise-conditional score of a Gaussian mixture: s(x, sigma) = grad_x log (p * N(0, sigma^2 I))(x),
// in closed form (see density/gaussian_mixture.hpp). This is the ground truth that annealed Langevin and
// every learned noise-conditional score is checked against.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/density/gaussian_mixture.hpp>

#include <algorithm>
#include <functional>
#include <vector>

namespace scorekit {

/// Noise-conditional score model of a mixture perturbed by N(0, sigma^2 I). The noise levels that will
/// be asked for (a sampler's ladder) are tabulated at construction, so their evaluation needs no log or
/// division; any other sigma > 0 is evaluated on the fly.
template <class Real = double, class MemorySpace = Kokkos::DefaultExecutionSpace::memory_space>
class PerturbedMixtureScore {
 public:
  using value_type = Real;
  using memory_space = MemorySpace;

  PerturbedMixtureScore(const GaussianMixture<Real, MemorySpace>& mixture, std::vector<Real> sigmas = {})
      : m_mixture(mixture) {
    for (Real s : sigmas) require_positive(s, "each tabulated noise level", "PerturbedMixtureScore");
    std::sort(sigmas.begin(), sigmas.end());
    sigmas.erase(std::unique(sigmas.begin(), sigmas.end()), sigmas.end());
    m_n_levels = int(sigmas.size());
    m_sigmas = Kokkos::View<Real*, MemorySpace>("scorekit::tabulated_sigmas", sigmas.size());
    auto h = Kokkos::create_mirror_view(m_sigmas);
    for (std::size_t i = 0; i < sigmas.size(); ++i) h(i) = sigmas[i];
    Kokkos::deep_copy(m_sigmas, h);
    m_mixture.tabulate(std::vector<Real>(sigmas.size(), Real(1)), sigmas);
  }

  int dim() const { return m_mixture.dim(); }
  int workspace_size() const { return m_mixture.workspace_size(); }
  const GaussianMixture<Real, MemorySpace>& mixture() const { return m_mixture; }

  /// grad_x log p_sigma(x).
  KOKKOS_INLINE_FUNCTION void score(const Real* x, Real sigma, Real* out, Real* work) const {
    m_mixture.template evaluate<true, false>(x, Real(1), sigma, level_of(sigma), out, work, nullptr);
  }
  /// log p_sigma(x), normalised.
  KOKKOS_INLINE_FUNCTION Real log_prob(const Real* x, Real sigma, Real* work) const {
    return m_mixture.template evaluate<false, false>(x, Real(1), sigma, level_of(sigma), nullptr, work,
                                                     nullptr);
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
  GaussianMixture<Real, MemorySpace> m_mixture;
  Kokkos::View<Real*, MemorySpace> m_sigmas;
  int m_n_levels = 0;
};

}  // namespace scorekit
