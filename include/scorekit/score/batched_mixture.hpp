// The exact noise-conditional score of a Gaussian mixture as a BatchScoreModel (core/batch_model.hpp): the
// batched path's exact-answer fixture, and what makes it fast on many particles in high dimension. For full
// covariances C_k(sigma) = Q_k diag(a^2 lambda_k + s^2 + sigma^2) Q_k^T, the rotations of all particles
// into every component's eigenbasis do not depend on sigma, so a whole batch takes two GEMMs (through
// core/blas.hpp, i.e. the host BLAS or cuBLAS):
//   Z = X [Q_1 | ... | Q_K]                          (N x D times D x KD: z_nk = Q_k^T x_n, then - a Q_k^T
//   mu_k) per sample: quad_k, r_k = softmax_k(log w_k - (logdet_k + quad_k) / 2), G_nk = -r_k z_nk / var_k S
//   = G [Q_1 | ... | Q_K]^T                        (N x KD times KD x D)
// 4 N K D^2 flops; the per-sample pass is O(N K D) with no log or division at the tabulated noise levels
// (1 / var and log det per level and component, as PerturbedMixtureScore tabulates them; any other sigma
// is evaluated on the fly). When every sample of a batch has the same tabulated noise level (every pass of
// a fixed-grid integrator, every annealed Langevin step) the precisions P_k = C_k(sigma)^-1 of that level
// are tabulated too, and one GEMM does it: 2 N K D^2 flops,
//   Y = X [P_1 | ... | P_K],   per sample: v_k = Y_k - P_k a mu_k = P_k (x - a mu_k),
//   quad_k = (x - a mu_k) . v_k,   s = -sum_k r_k v_k.
// Finding out costs one reduction over the noise levels, read on the host. Isotropic and diagonal mixtures
// have no products to batch (their score is O(K D) a sample): they are evaluated by PerturbedMixtureScore's
// kernel, a sample a work item.
//
// Rounding: the products sum in the BLAS' order, so the score agrees with PerturbedMixtureScore's to
// rounding, not bitwise; tests/test_batched_mixture.cpp bounds the difference from a long double
// reference with a forward error bound computed per sample.
// scorekit-requires: SCOREKIT_HAVE_KOKKOS_KERNELS
#pragma once

#include <scorekit/core/batch_model.hpp>
#include <scorekit/core/blas.hpp>
#include <scorekit/score/batched.hpp>
#include <scorekit/score/perturbed_mixture.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace scorekit {

template <class Real = double, class MemorySpace = Kokkos::DefaultExecutionSpace::memory_space>
class BatchedMixtureScore {
 public:
  using value_type = Real;
  using memory_space = MemorySpace;

  /// The mixture perturbed by N(0, sigma^2 I), with the noise levels `sigmas` tabulated (as
  /// PerturbedMixtureScore).
  BatchedMixtureScore(const GaussianMixture<Real, MemorySpace>& mixture, std::vector<Real> sigmas = {})
      : m_single(mixture, sigmas),
        m_dim(mixture.dim()),
        m_k(mixture.n_components()),
        m_full(mixture.covariance_kind() == CovarianceKind::full),
        m_a(mixture.scale()),
        m_s2(mixture.noise() * mixture.noise()),
        m_lambda(mixture.eigenvalues()),
        m_log_weights(mixture.log_weights()) {
    // Sorted and unique, as m_single's table: level l here is level l there (single().level_of).
    std::sort(sigmas.begin(), sigmas.end());
    sigmas.erase(std::unique(sigmas.begin(), sigmas.end()), sigmas.end());
    if (!m_full) return;
    const int d = m_dim, k = m_k;
    // The stacked eigenbases, (k, i) x j = Q_k(j, i): the GEMMs' right-hand side.
    const auto vectors = mixture.eigenvectors();
    m_bases = Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace>(
        Kokkos::view_alloc(std::string("scorekit::BatchedMixtureScore::bases"), Kokkos::WithoutInitializing),
        std::size_t(k) * std::size_t(d), std::size_t(d));
    Kokkos::deep_copy(m_bases, Kokkos::View<const Real**, Kokkos::LayoutRight, MemorySpace>(
                                   vectors.data(), std::size_t(k) * std::size_t(d), std::size_t(d)));
    // a Q_k^T mu_k, and per tabulated level 1 / var and log det, computed on the host in double.
    auto h_vectors = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), vectors);
    auto h_means = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), mixture.means());
    auto h_lambda = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), m_lambda);
    m_shift =
        Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace>("scorekit::BatchedMixtureScore::shift", k, d);
    auto h_shift = Kokkos::create_mirror_view(m_shift);
    for (int c = 0; c < k; ++c)
      for (int i = 0; i < d; ++i) {
        double sum = 0;
        for (int j = 0; j < d; ++j) sum += double(h_vectors(c, i, j)) * double(h_means(c, j));
        h_shift(c, i) = Real(double(m_a) * sum);
      }
    Kokkos::deep_copy(m_shift, h_shift);
    const std::size_t n_levels = sigmas.size();
    m_inv_var = Kokkos::View<Real***, Kokkos::LayoutRight, MemorySpace>(
        "scorekit::BatchedMixtureScore::inv_var", n_levels, k, d);
    m_logdet = Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace>("scorekit::BatchedMixtureScore::logdet",
                                                                      n_levels, k);
    auto h_inv_var = Kokkos::create_mirror_view(m_inv_var);
    auto h_logdet = Kokkos::create_mirror_view(m_logdet);
    for (std::size_t l = 0; l < n_levels; ++l) {
      const double noise2 = double(m_s2) + double(sigmas[l]) * double(sigmas[l]);
      for (int c = 0; c < k; ++c) {
        double logdet = 0;
        for (int i = 0; i < d; ++i) {
          const double var = double(m_a) * double(m_a) * double(h_lambda(c, i)) + noise2;
          h_inv_var(l, c, i) = Real(1 / var);
          logdet += std::log(var);
        }
        h_logdet(l, c) = Real(logdet);
      }
    }
    Kokkos::deep_copy(m_inv_var, h_inv_var);
    Kokkos::deep_copy(m_logdet, h_logdet);
    // Per level the precisions P_k = Q_k diag(1 / var) Q_k^T and P_k a mu_k, in double on the host; only
    // while they fit in max_precision_bytes (else every batch takes the two-GEMM path).
    if (double(n_levels) * k * d * d * sizeof(Real) > double(max_precision_bytes)) return;
    m_levels = sigmas;
    m_precisions = Kokkos::View<Real***, Kokkos::LayoutRight, MemorySpace>(
        Kokkos::view_alloc(std::string("scorekit::BatchedMixtureScore::precisions"),
                           Kokkos::WithoutInitializing),
        n_levels, std::size_t(k) * std::size_t(d), d);
    m_precision_means = Kokkos::View<Real***, Kokkos::LayoutRight, MemorySpace>(
        "scorekit::BatchedMixtureScore::precision_means", n_levels, k, d);
    m_scaled_means =
        Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace>("scorekit::BatchedMixtureScore::a_mu", k, d);
    auto h_prec = Kokkos::create_mirror_view(m_precisions);
    auto h_pmu = Kokkos::create_mirror_view(m_precision_means);
    auto h_amu = Kokkos::create_mirror_view(m_scaled_means);
    for (int c = 0; c < k; ++c)
      for (int j = 0; j < d; ++j) h_amu(c, j) = Real(double(m_a) * double(h_means(c, j)));
    std::vector<double> p(std::size_t(d) * std::size_t(d));
    for (std::size_t l = 0; l < n_levels; ++l) {
      const double noise2 = double(m_s2) + double(sigmas[l]) * double(sigmas[l]);
      for (int c = 0; c < k; ++c) {
        std::fill(p.begin(), p.end(), 0.0);
        for (int e = 0; e < d; ++e) {  // eigenpair e: row (c, e) of the stored eigenvectors
          const double iv = 1 / (double(m_a) * double(m_a) * double(h_lambda(c, e)) + noise2);
          for (int i = 0; i < d; ++i) {
            const double qi = double(h_vectors(c, e, i)) * iv;
            for (int j = 0; j < d; ++j) p[std::size_t(i * d + j)] += qi * double(h_vectors(c, e, j));
          }
        }
        for (int i = 0; i < d; ++i) {
          double pm = 0;
          for (int j = 0; j < d; ++j) {
            h_prec(l, std::size_t(c * d + i), j) = Real(p[std::size_t(i * d + j)]);
            pm += p[std::size_t(i * d + j)] * double(m_a) * double(h_means(c, j));
          }
          h_pmu(l, c, i) = Real(pm);
        }
      }
    }
    Kokkos::deep_copy(m_precisions, h_prec);
    Kokkos::deep_copy(m_precision_means, h_pmu);
    Kokkos::deep_copy(m_scaled_means, h_amu);
  }

  /// The most memory the per-level precision tables may take (levels x K x D^2 values).
  static constexpr std::size_t max_precision_bytes = std::size_t(256) << 20;

  KOKKOS_INLINE_FUNCTION int dim() const { return m_dim; }
  /// The per-particle model with the same mixture and table (what the fused path takes).
  const PerturbedMixtureScore<Real, MemorySpace>& single() const { return m_single; }

  /// out(n, :) = grad log p_sigma(n)(x(n, :)) for every sample n.
  template <class ExecSpace>
  void score(const ExecSpace& exec, const ConstBatchView<Real, MemorySpace>& x,
             const NoiseLevels<Real, MemorySpace>& sigma, const BatchView<Real, MemorySpace>& out) const {
    detail::check_batch_shapes(x, sigma, out, m_dim, "scorekit::BatchedMixtureScore::score");
    const std::int64_t n = std::int64_t(x.extent(0));
    if (!m_full) {
      Batched<PerturbedMixtureScore<Real, MemorySpace>, MemorySpace>(m_single).score(exec, x, sigma, out);
      return;
    }
    const int d = m_dim, k = m_k;
    const int level = uniform_level(exec, sigma);
    if (std::int64_t(m_z.extent(0)) < n)
      m_z = Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace>(
          Kokkos::view_alloc(std::string("scorekit::BatchedMixtureScore::z"), Kokkos::WithoutInitializing), n,
          std::size_t(k) * std::size_t(d));
    const Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> z(m_z.data(), n,
                                                                   std::size_t(k) * std::size_t(d));
    if (level >= 0) {
      precision_score(exec, x, level, out, z);
      return;
    }
    blas::gemm(exec, "N", "T", Real(1), x, m_bases, Real(0), z);
    const auto shift = m_shift;
    const auto inv_var = m_inv_var;
    const auto logdet = m_logdet;
    const auto lambda = m_lambda;
    const auto log_weights = m_log_weights;
    const auto single = m_single;
    const Real a2 = m_a * m_a, s2 = m_s2;
    Kokkos::parallel_for(
        "scorekit::BatchedMixtureScore::weights", Kokkos::RangePolicy<ExecSpace>(exec, 0, n),
        KOKKOS_LAMBDA(const std::int64_t s) {
          const Real sig = sigma(s);
          // The same sorted levels as single's table, so its level index is ours.
          const int level = single.level_of(sig);
          const Real noise2 = s2 + sig * sig;
          Real run_max = 0, run_sum = 0;
          Real* row = &z(s, 0);
          // In place: z_k -> g_k = -(z_k - a Q_k^T mu_k) / var_k, weighted by exp(l_k - running max) as
          // the streaming log-sum-exp goes; then all divided by the sum, so row = (r_k g_k)_k.
          for (int c = 0; c < k; ++c) {
            Real quad = 0, ld = 0;
            Real* g = row + c * d;
            for (int i = 0; i < d; ++i) {
              const Real zi = g[i] - shift(c, i);
              Real iv;
              if (level >= 0) {
                iv = inv_var(level, c, i);
              } else {
                const Real var = a2 * lambda(c, i) + noise2;
                iv = Real(1) / var;
                ld += math::log(var);
              }
              quad += zi * zi * iv;
              g[i] = -zi * iv;
            }
            if (level >= 0) ld = logdet(level, c);
            const Real lk = log_weights(c) - Real(0.5) * (ld + quad);
            // Streaming log-sum-exp: the components seen so far are rescaled when the maximum moves.
            if (c == 0) {
              run_max = lk;
              run_sum = 1;
            } else if (lk > run_max) {
              const Real rescale = math::exp(run_max - lk);
              run_sum = run_sum * rescale + Real(1);
              for (int j = 0; j < c * d; ++j) row[j] *= rescale;
              run_max = lk;
            } else {
              const Real w = math::exp(lk - run_max);
              run_sum += w;
              for (int i = 0; i < d; ++i) g[i] *= w;
            }
          }
          const Real inv_sum = Real(1) / run_sum;
          for (int j = 0; j < k * d; ++j) row[j] *= inv_sum;
        });
    blas::gemm(exec, "N", "N", Real(1), z, m_bases, Real(0), out);
  }

  /// The tabulated level every sample of the batch is at, or -1 (mixed or untabulated levels).
  template <class ExecSpace>
  int uniform_level(const ExecSpace& exec, const NoiseLevels<Real, MemorySpace>& sigma) const {
    if (m_levels.empty()) return -1;
    using MinMax = Kokkos::MinMax<Real, Kokkos::HostSpace>;
    typename MinMax::value_type range;
    Kokkos::parallel_reduce(
        "scorekit::BatchedMixtureScore::levels", Kokkos::RangePolicy<ExecSpace>(exec, 0, sigma.extent(0)),
        KOKKOS_LAMBDA(const std::int64_t s, typename MinMax::value_type& r) {
          r.min_val = sigma(s) < r.min_val ? sigma(s) : r.min_val;
          r.max_val = sigma(s) > r.max_val ? sigma(s) : r.max_val;
        },
        MinMax(range));
    exec.fence();
    const Real lo = range.min_val;
    if (!(lo == range.max_val)) return -1;
    const auto it = std::lower_bound(m_levels.begin(), m_levels.end(), lo);
    return (it != m_levels.end() && *it == lo) ? int(it - m_levels.begin()) : -1;
  }

  // Public only because nvcc rejects device lambdas in private members.
  // The one-GEMM score at tabulated level `level` for every sample (see the top of the file); y is N x KD
  // scratch.
  template <class ExecSpace>
  void precision_score(const ExecSpace& exec, const ConstBatchView<Real, MemorySpace>& x, int level,
                       const BatchView<Real, MemorySpace>& out,
                       const Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace>& y) const {
    const int d = m_dim, k = m_k;
    const std::size_t kd = std::size_t(k) * std::size_t(d);
    const Kokkos::View<const Real**, Kokkos::LayoutRight, MemorySpace> precisions(
        m_precisions.data() + std::size_t(level) * kd * std::size_t(d), kd, std::size_t(d));
    blas::gemm(exec, "N", "T", Real(1), x, precisions, Real(0), y);  // P_k symmetric: (X P_k) = X P_k^T
    const auto pmu = Kokkos::subview(m_precision_means, level, Kokkos::ALL(), Kokkos::ALL());
    const auto amu = m_scaled_means;
    const auto logdet = Kokkos::subview(m_logdet, level, Kokkos::ALL());
    const auto log_weights = m_log_weights;
    Kokkos::parallel_for(
        "scorekit::BatchedMixtureScore::precision_weights",
        Kokkos::RangePolicy<ExecSpace>(exec, 0, x.extent(0)), KOKKOS_LAMBDA(const std::int64_t s) {
          Real* o = &out(s, 0);
          Real run_max = 0, run_sum = 0;
          for (int c = 0; c < k; ++c) {
            const Real* yc = &y(s, 0) + c * d;
            // (x - a mu_c) . P_c (x - a mu_c), in 8 partial sums so that it vectorises.
            const Real quad = detail::sum_in_lanes<8, Real>(
                d, [&](int i) { return (x(s, i) - amu(c, i)) * (yc[i] - pmu(c, i)); });
            const Real lk = log_weights(c) - Real(0.5) * (logdet(c) + quad);
            // Streaming log-sum-exp over the components, accumulating -sum_k w_k v_k into o.
            Real w = 1;
            if (c == 0) {
              run_max = lk;
              run_sum = 1;
              for (int i = 0; i < d; ++i) o[i] = Real(0);
            } else if (lk > run_max) {
              const Real rescale = math::exp(run_max - lk);
              run_sum = run_sum * rescale + Real(1);
              for (int i = 0; i < d; ++i) o[i] *= rescale;
              run_max = lk;
            } else {
              w = math::exp(lk - run_max);
              run_sum += w;
            }
            for (int i = 0; i < d; ++i) o[i] -= w * (yc[i] - pmu(c, i));
          }
          const Real inv_sum = Real(1) / run_sum;
          for (int i = 0; i < d; ++i) o[i] *= inv_sum;
        });
  }

 private:
  PerturbedMixtureScore<Real, MemorySpace> m_single;
  int m_dim, m_k;
  bool m_full;
  Real m_a, m_s2;
  Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> m_lambda;  // K x d
  Kokkos::View<Real*, MemorySpace> m_log_weights;
  Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> m_bases;             // (k, i) x j = Q_k(j, i)
  Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> m_shift;             // K x d: a Q_k^T mu_k
  Kokkos::View<Real***, Kokkos::LayoutRight, MemorySpace> m_inv_var;          // (level, k, i)
  Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> m_logdet;            // (level, k)
  std::vector<Real> m_levels;                                                 // the tabulated levels, sorted
  Kokkos::View<Real***, Kokkos::LayoutRight, MemorySpace> m_precisions;       // (level, (k, i), j): P_k(i, j)
  Kokkos::View<Real***, Kokkos::LayoutRight, MemorySpace> m_precision_means;  // (level, k, i): P_k a mu_k
  Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> m_scaled_means;      // (k, i): a mu_k
  // N x KD scratch (Z, then G in place), grown to the largest batch. Not safe for calls from two host
  // threads at once.
  mutable Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> m_z;
};

}  // namespace scorekit
