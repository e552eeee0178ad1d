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
      : m_mixture(mixture),
        m_table(mixture),
        m_a(mixture.scale()),
        m_s2(mixture.noise() * mixture.noise()),
        m_dim(mixture.dim()),
        m_n_components(mixture.n_components()),
        m_full(mixture.covariance_kind() == CovarianceKind::full),
        m_means(mixture.means()),
        m_lambda(mixture.eigenvalues()),
        m_vectors(mixture.eigenvectors()),
        m_log_weights(mixture.log_weights()) {
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

  KOKKOS_INLINE_FUNCTION int dim() const { return m_mixture.dim(); }
  KOKKOS_INLINE_FUNCTION int workspace_size() const { return m_mixture.workspace_size(); }
  const GaussianMixture<Real, MemorySpace>& mixture() const { return m_mixture; }

  /// grad_x log p_sigma(x).
  KOKKOS_INLINE_FUNCTION void score(const Real* x, Real sigma, Real* out, Real* work) const {
    const int level = level_of(sigma);
    m_table.score_at(x, m_a, level >= 0 ? Real(0) : total_noise(sigma), level, out, work);
  }
  /// The most particles score_block() takes at once.
  static constexpr int max_block = GaussianMixture<Real, MemorySpace>::max_block;

  /// The block score_block() makes faster (see GaussianMixture::block_size).
  KOKKOS_INLINE_FUNCTION int block_size() const { return m_table.block_size(); }

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

  /// The Laplacian of log p_sigma at x: the exact divergence of score(x, sigma), what ExactTrace uses
  /// (through likelihood/flow_divergence.hpp) instead of d Jacobian-vector products. Any covariance kind.
  KOKKOS_INLINE_FUNCTION Real divergence(const Real* x, Real sigma, Real* work) const {
    const int level = level_of(sigma);
    Real lap = 0;
    Real* grad = work + (m_full ? 2 * m_dim : 0);  // as GaussianMixture::laplacian: after its 2 d of scratch
    m_table.template evaluate<true, true>(x, m_a, level >= 0 ? Real(0) : total_noise(sigma), level, grad,
                                          work, &lap);
    return lap;
  }

  /// s = grad log p_sigma(x) and jv = (d s / dx) v = H v, H the Hessian of log p_sigma: one exact
  /// forward-mode product, what Hutchinson's estimator needs. With r_k the posterior weights of the
  /// components at x, g_k = -P_k (x - a mu_k) their scores and P_k their precisions,
  ///   s = sum_k r_k g_k,   H v = sum_k r_k (g_k (g_k . v) - P_k v) - s (s . v),
  /// accumulated in one streaming log-sum-exp pass (the components' constants on the fly, at any sigma).
  /// Any covariance kind. For full covariances P_k = Q_k diag(1 / (a^2 lambda_k + s^2 + sigma^2)) Q_k^T is
  /// applied through the eigenvectors: x - a mu_k and v are rotated into Q_k's coordinates, scaled there,
  /// and g_k and P_k v rotated back (4 d^2 per component, the 3 d of workspace_size()).
  KOKKOS_INLINE_FUNCTION void jvp(const Real* x, Real sigma, const Real* v, Real* s, Real* jv,
                                  Real* work) const {
    const int d = m_dim;
    const Real a = m_a, noise2 = m_s2 + sigma * sigma;
    Real* diff = work;        // full only: x - a mu_k
    Real* g = work + d;       // full only: Q_k^T g_k
    Real* pv = work + 2 * d;  // full only: Q_k^T P_k v
    Real run_max = 0, run_sum = 0;
    for (int j = 0; j < d; ++j) s[j] = jv[j] = Real(0);
    for (int k = 0; k < m_n_components; ++k) {
      Real quad = 0, logdet = 0, gv = 0;
      if (m_full) {
        for (int j = 0; j < d; ++j) diff[j] = x[j] - a * m_means(k, j);
        for (int i = 0; i < d; ++i) {
          const Real* q = &m_vectors(k, i, 0);
          Real zi = 0, ui = 0;
          SCOREKIT_SIMD_SUM(zi, ui)
          for (int j = 0; j < d; ++j) {
            zi += q[j] * diff[j];
            ui += q[j] * v[j];
          }
          const Real var = a * a * m_lambda(k, i) + noise2;
          const Real iv = Real(1) / var;
          g[i] = -zi * iv;
          pv[i] = ui * iv;
          quad += zi * zi * iv;
          gv += g[i] * ui;
          logdet += math::log(var);
        }
      } else {
        for (int j = 0; j < d; ++j) {
          const Real var = a * a * m_lambda(k, j) + noise2;
          const Real diff_j = x[j] - a * m_means(k, j);
          quad += diff_j * diff_j / var;
          gv -= diff_j * v[j] / var;
          logdet += math::log(var);
        }
      }
      // log w_k + log N(x; a mu_k, C_k) up to the constant -d/2 log(2 pi), which cancels in r_k.
      const Real lk = m_log_weights(k) - Real(0.5) * (logdet + quad);
      Real w = 1;
      if (k == 0) {
        run_max = lk;
        run_sum = 1;
      } else if (lk > run_max) {
        const Real rescale = math::exp(run_max - lk);
        run_sum = run_sum * rescale + Real(1);
        for (int j = 0; j < d; ++j) {
          s[j] *= rescale;
          jv[j] *= rescale;
        }
        run_max = lk;
      } else {
        w = math::exp(lk - run_max);
        run_sum += w;
      }
      if (m_full) {
        // Back to x's coordinates: s += Q (w g), jv += Q (w (g (g . v) - P v)).
        for (int i = 0; i < d; ++i) {
          const Real cs = w * g[i], cj = w * (g[i] * gv - pv[i]);
          const Real* q = &m_vectors(k, i, 0);
          SCOREKIT_SIMD
          for (int j = 0; j < d; ++j) {
            s[j] += q[j] * cs;
            jv[j] += q[j] * cj;
          }
        }
      } else {
        for (int j = 0; j < d; ++j) {
          const Real iv = Real(1) / (a * a * m_lambda(k, j) + noise2);
          const Real gj = -(x[j] - a * m_means(k, j)) * iv;
          s[j] += w * gj;
          jv[j] += w * (gj * gv - iv * v[j]);
        }
      }
    }
    const Real inv_sum = Real(1) / run_sum;
    Real sv = 0;
    for (int j = 0; j < d; ++j) {
      s[j] *= inv_sum;
      sv += s[j] * v[j];
    }
    for (int j = 0; j < d; ++j) jv[j] = jv[j] * inv_sum - s[j] * sv;
  }

  /// The tabulated level holding exactly sigma, or -1: a binary search over the sorted levels written
  /// with selects rather than branches (each branch of a search is as likely taken as not). On the 2-D
  /// Heun benchmark, searched once a block, the change did not move the throughput beyond its spread.
  KOKKOS_INLINE_FUNCTION int level_of(Real sigma) const {
    if (m_n_levels == 0) return -1;
    // Invariant: every level below `lo` is < sigma, and the first level >= sigma (if any) lies in
    // [lo, lo + n).
    int lo = 0, n = m_n_levels;
    while (n > 1) {
      const int half = n / 2;
      lo = m_sigmas(lo + half - 1) < sigma ? lo + half : lo;
      n -= half;
    }
    lo = m_sigmas(lo) < sigma ? lo + 1 : lo;
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
  // For divergence() and jvp(), readable inside kernels.
  int m_dim = 0;
  int m_n_components = 0;
  bool m_full = false;
  Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> m_means;     // K x d
  Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> m_lambda;    // K x d, the base eigenvalues
  Kokkos::View<Real***, Kokkos::LayoutRight, MemorySpace> m_vectors;  // (k, i, j) = Q_k(j, i), full only
  Kokkos::View<Real*, MemorySpace> m_log_weights;                     // normalised
};

}  // namespace scorekit
