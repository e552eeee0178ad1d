// Gaussian mixtures with isotropic, diagonal or full covariances, and their Gaussian perturbations in
// closed form: if X ~ sum_k w_k N(mu_k, Sigma_k) and Z ~ N(0, I) is independent, then
//   a X + sigma Z ~ sum_k w_k N(a mu_k, a^2 Sigma_k + sigma^2 I).
// With a = 1 this is the mixture convolved with N(0, sigma^2 I) (NCSN, VE SDE); with a = alpha_t and
// sigma = sqrt(1 - alpha_t^2) it is the variance-preserving marginal (DDPM, VP SDE). Each component is
// stored through its eigendecomposition Sigma_k = Q_k diag(lambda_k) Q_k^T, so every perturbed covariance
// is Q_k diag(a^2 lambda_k + sigma^2) Q_k^T without a new factorisation.
//
// Log-densities are normalised (they include the log of the normalising constant). Scores and
// Laplacians use a streaming log-sum-exp over components (one pass, no per-component storage).
#pragma once

#include <scorekit/core/elementary.hpp>
#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>

#include <Eigen/Cholesky>
#include <Eigen/Dense>
#include <Eigen/Eigenvalues>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace scorekit {

/// The covariance structure of the components; full costs O(d^2) per component and evaluation,
/// isotropic and diagonal cost O(d).
enum class CovarianceKind { isotropic, diagonal, full };

/// A Gaussian mixture density, or the law of a X + sigma Z for it. A cheap value type: copies share
/// their views, so it is passed by value into kernels.
template <class Real = double, class MemorySpace = Kokkos::DefaultExecutionSpace::memory_space>
class GaussianMixture {
 public:
  using value_type = Real;
  using memory_space = MemorySpace;

  GaussianMixture() = default;

  /// Components N(mu_k, variance_k I). means: K x d, one row a component; weights need not sum to 1.
  static GaussianMixture isotropic(const Eigen::VectorXd& weights, const Eigen::MatrixXd& means,
                                   const Eigen::VectorXd& variances) {
    const char* where = "GaussianMixture::isotropic";
    check_weights_means(weights, means, where);
    require_dimension(variances.size(), means.rows(), "variances (one per component)", where);
    Eigen::MatrixXd lambda(means.rows(), means.cols());
    for (Eigen::Index k = 0; k < means.rows(); ++k) {
      require_positive(variances[k], "each component variance", where);
      lambda.row(k).setConstant(variances[k]);
    }
    return GaussianMixture(weights, means, lambda, {}, CovarianceKind::isotropic);
  }

  /// Components N(mu_k, diag(variances.row(k))). variances: K x d.
  static GaussianMixture diagonal(const Eigen::VectorXd& weights, const Eigen::MatrixXd& means,
                                  const Eigen::MatrixXd& variances) {
    const char* where = "GaussianMixture::diagonal";
    check_weights_means(weights, means, where);
    require_dimension(variances.rows(), means.rows(), "variances (rows, one per component)", where);
    require_dimension(variances.cols(), means.cols(), "variances (columns)", where);
    for (Eigen::Index k = 0; k < variances.rows(); ++k)
      for (Eigen::Index j = 0; j < variances.cols(); ++j)
        require_positive(variances(k, j), "each diagonal variance", where);
    return GaussianMixture(weights, means, variances, {}, CovarianceKind::diagonal);
  }

  /// Components N(mu_k, covariances[k]) with full symmetric positive definite covariances.
  static GaussianMixture full(const Eigen::VectorXd& weights, const Eigen::MatrixXd& means,
                              const std::vector<Eigen::MatrixXd>& covariances) {
    const char* where = "GaussianMixture::full";
    check_weights_means(weights, means, where);
    require_dimension(Eigen::Index(covariances.size()), means.rows(), "covariances (one per component)",
                      where);
    const Eigen::Index d = means.cols();
    Eigen::MatrixXd lambda(means.rows(), d);
    std::vector<Eigen::MatrixXd> vectors;
    for (std::size_t k = 0; k < covariances.size(); ++k) {
      const Eigen::MatrixXd& c = covariances[k];
      require_dimension(c.rows(), d, "a covariance (rows)", where);
      require_dimension(c.cols(), d, "a covariance (columns)", where);
      if (!c.allFinite())
        throw invalid_argument(detail::concat(where, ": covariance ", k, " has NaN or inf"));
      if (!c.isApprox(c.transpose(), 1e-12))
        throw invalid_argument(detail::concat(where, ": covariance ", k, " is not symmetric"));
      if (Eigen::LLT<Eigen::MatrixXd>(c).info() != Eigen::Success)
        throw invalid_argument(
            detail::concat(where, ": covariance ", k, " is not positive definite (Cholesky failed)"));
      Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(c);
      if (eig.eigenvalues().minCoeff() <= 0)
        throw invalid_argument(detail::concat(where, ": covariance ", k, " is not positive definite"));
      lambda.row(Eigen::Index(k)) = eig.eigenvalues().transpose();
      vectors.push_back(eig.eigenvectors());
    }
    return GaussianMixture(weights, means, lambda, vectors, CovarianceKind::full);
  }

  /// The law of a X + sigma Z (Z ~ N(0, I) independent of X ~ this mixture's base). a > 0, sigma >= 0.
  GaussianMixture perturbed(Real a, Real sigma) const {
    const char* where = "GaussianMixture::perturbed";
    require_positive(a, "the scale a", where);
    if (!(sigma >= Real(0)) || !math::isfinite(sigma))
      throw invalid_argument(detail::concat(where, ": sigma must be finite and >= 0, got ", sigma));
    GaussianMixture p = *this;
    p.m_a = a;
    p.m_sigma = sigma;
    p.tabulate(std::vector<Real>{a}, std::vector<Real>{sigma});
    return p;
  }

  KOKKOS_INLINE_FUNCTION int dim() const { return m_dim; }
  KOKKOS_INLINE_FUNCTION int n_components() const { return m_k; }
  KOKKOS_INLINE_FUNCTION CovarianceKind covariance_kind() const { return m_kind; }
  KOKKOS_INLINE_FUNCTION Real scale() const { return m_a; }
  KOKKOS_INLINE_FUNCTION Real noise() const { return m_sigma; }
  /// Workspace (values) one evaluation needs: 3 d for full covariances (x - a mu_k, the rotated
  /// coordinates, and the score while the Laplacian is formed), 2 d otherwise (the score while the
  /// Laplacian is formed; in score_block, a panel's particles and scores transposed).
  KOKKOS_INLINE_FUNCTION int workspace_size() const {
    return m_kind == CovarianceKind::full ? 3 * m_dim : 2 * m_dim;
  }

  /// Normalised log-density at x.
  KOKKOS_INLINE_FUNCTION Real log_prob(const Real* x, Real* work) const {
    return evaluate<false, false>(x, m_a, m_sigma, 0, nullptr, work, nullptr);
  }
  /// grad_x log p(x).
  KOKKOS_INLINE_FUNCTION void score(const Real* x, Real* out, Real* work) const {
    score_at(x, m_a, m_sigma, 0, out, work);
  }
  /// Laplacian of log p at x (the divergence of the score).
  KOKKOS_INLINE_FUNCTION Real laplacian(const Real* x, Real* work) const {
    Real lap = 0;
    Real* grad = work + (m_kind == CovarianceKind::full ? 2 * m_dim : 0);
    evaluate<true, true>(x, m_a, m_sigma, 0, grad, work, &lap);
    return lap;
  }

  /// One exact draw (needs uniform() and normal() from the generator).
  template <class Rng>
  KOKKOS_INLINE_FUNCTION void draw(Rng& rng, Real* out) const {
    const Real u = rng.uniform();
    int k = 0;
    while (k + 1 < m_k && u > m_cumulative_weight(k)) ++k;
    for (int j = 0; j < m_dim; ++j) out[j] = m_a * m_mean(k, j);
    for (int i = 0; i < m_dim; ++i) {
      const Real s = math::sqrt(m_a * m_a * m_lambda(k, i) + m_sigma * m_sigma) * rng.normal();
      if (m_kind == CovarianceKind::full)
        for (int j = 0; j < m_dim; ++j) out[j] += m_vectors_t(k, i, j) * s;
      else
        out[i] += s;
    }
  }

  // --- used by noise-conditional wrappers (score/perturbed_mixture.hpp) ----------------------------

  /// Precomputes, for each (a_l, sigma_l), the inverse variances and per-component log-normalisers, so
  /// that evaluations at a tabulated level need no log or division. Level 0 is this object's own.
  void tabulate(const std::vector<Real>& a, const std::vector<Real>& sigma) {
    const int n_levels = int(a.size());
    Kokkos::View<Real***, Kokkos::LayoutRight, MemorySpace> inv_var("scorekit::mixture_inv_var", n_levels,
                                                                    m_k, m_dim);
    Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> log_norm("scorekit::mixture_log_norm", n_levels,
                                                                    m_k);
    auto h_inv = Kokkos::create_mirror_view(inv_var);
    auto h_norm = Kokkos::create_mirror_view(log_norm);
    auto h_lambda = Kokkos::create_mirror_view(m_lambda);
    auto h_logw = Kokkos::create_mirror_view(m_log_weight);
    Kokkos::deep_copy(h_lambda, m_lambda);
    Kokkos::deep_copy(h_logw, m_log_weight);
    for (int l = 0; l < n_levels; ++l)
      for (int k = 0; k < m_k; ++k) {
        double logdet = 0;
        for (int i = 0; i < m_dim; ++i) {
          const double v = double(a[l]) * a[l] * h_lambda(k, i) + double(sigma[l]) * sigma[l];
          h_inv(l, k, i) = Real(1.0 / v);
          logdet += std::log(v);
        }
        h_norm(l, k) =
            Real(double(h_logw(k)) - 0.5 * logdet - 0.5 * m_dim * std::log(2 * 3.14159265358979323846));
      }
    Kokkos::deep_copy(inv_var, h_inv);
    Kokkos::deep_copy(log_norm, h_norm);
    m_inv_var = inv_var;
    m_log_norm = log_norm;
    // Full covariances: the precision P = Q diag(1 / v) Q^T of every level, so that an evaluation costs
    // one d x d pass (g = -P (x - a mu), quad = -(x - a mu) . g) instead of two (rotate, rotate back).
    // Only while the table stays small; past the bound the two-pass path is used.
    const double bytes = double(n_levels) * m_k * double(m_dim) * m_dim * sizeof(Real);
    if (m_kind == CovarianceKind::full && bytes <= precision_table_bytes) {
      Kokkos::View<Real****, Kokkos::LayoutRight, MemorySpace> precision("scorekit::mixture_precision",
                                                                         n_levels, m_k, m_dim, m_dim);
      auto h_p = Kokkos::create_mirror_view(precision);
      auto h_vec = Kokkos::create_mirror_view(m_vectors_t);
      Kokkos::deep_copy(h_vec, m_vectors_t);
      for (int l = 0; l < n_levels; ++l)
        for (int k = 0; k < m_k; ++k)
          for (int r = 0; r < m_dim; ++r)
            for (int c = 0; c < m_dim; ++c) {
              double sum = 0;
              for (int i = 0; i < m_dim; ++i) sum += double(h_vec(k, i, r)) * h_inv(l, k, i) * h_vec(k, i, c);
              h_p(l, k, r, c) = Real(sum);
            }
      Kokkos::deep_copy(precision, h_p);
      m_precision = precision;
    } else {
      m_precision = {};
    }
  }

  /// The largest per-level precision table (bytes) tabulate() builds for full covariances.
  static constexpr double precision_table_bytes = 256.0 * 1024 * 1024;

  /// The core evaluation for the law of a X + sigma Z. `level` selects tabulated constants; level < 0
  /// computes them on the fly (d logs and divisions per component). Returns log p; writes the score to
  /// `out` when Score, and the Laplacian to *lap when Laplacian.
  template <bool Score, bool Laplacian>
  KOKKOS_INLINE_FUNCTION Real evaluate(const Real* x, Real a, Real sigma, int level, Real* out, Real* work,
                                       Real* lap) const {
    const int d = m_dim;
    const bool full = m_kind == CovarianceKind::full;
    Real* diff = work;   // x - a mu_k (full only)
    Real* z = work + d;  // Q_k^T (x - a mu_k) (full only)
    Real run_max = 0;    // largest l_k so far (set by the first component)
    Real run_sum = 0;    // sum_k exp(l_k - run_max)
    Real run_lap = 0;    // sum_k exp(l_k - run_max) (|g_k|^2 - tr P_k)
    if (Score)
      for (int j = 0; j < d; ++j) out[j] = 0;
    for (int k = 0; k < m_k; ++k) {
      Real quad = 0, grad2 = 0, trace = 0, log_norm;
      log_norm = level >= 0 ? m_log_norm(level, k) : untabulated_log_norm(k, a, sigma);
      const bool use_precision = full && level >= 0 && m_precision.extent(0) > 0;
      if (use_precision) {
        // z holds g_k = -P (x - a mu_k) here.
        for (int j = 0; j < d; ++j) diff[j] = x[j] - a * m_mean(k, j);
        for (int r = 0; r < d; ++r) {
          const Real* p = &m_precision(level, k, r, 0);
          Real pr = 0;
          SCOREKIT_SIMD_SUM(pr)
          for (int c = 0; c < d; ++c) pr += p[c] * diff[c];
          z[r] = -pr;
          quad += pr * diff[r];
          if (Laplacian) {
            grad2 += pr * pr;
            trace += m_inv_var(level, k, r);
          }
        }
      } else if (full) {
        for (int j = 0; j < d; ++j) diff[j] = x[j] - a * m_mean(k, j);
        for (int i = 0; i < d; ++i) {
          Real zi = 0;
          const Real* q = &m_vectors_t(k, i, 0);
          SCOREKIT_SIMD_SUM(zi)
          for (int j = 0; j < d; ++j) zi += q[j] * diff[j];
          const Real iv = inv_var(level, k, i, a, sigma);
          z[i] = zi * iv;  // P-scaled coordinate
          quad += zi * zi * iv;
          if (Laplacian) {
            grad2 += zi * zi * iv * iv;
            trace += iv;
          }
        }
      } else {
        SCOREKIT_SIMD_SUM(quad, grad2, trace)
        for (int j = 0; j < d; ++j) {
          const Real dj = x[j] - a * m_mean(k, j);
          const Real iv = inv_var(level, k, j, a, sigma);
          quad += dj * dj * iv;
          if (Laplacian) {
            grad2 += dj * dj * iv * iv;
            trace += iv;
          }
        }
      }
      const Real lk = log_norm - Real(0.5) * quad;
      const Real w = fold_component(k == 0, lk, run_max, run_sum, Score ? out : nullptr, d,
                                    Laplacian ? &run_lap : nullptr);
      if (Laplacian) run_lap += w * (grad2 - trace);
      if (Score) {
        if (use_precision) {
          SCOREKIT_SIMD
          for (int j = 0; j < d; ++j) out[j] += w * z[j];
        } else if (full) {
          for (int i = 0; i < d; ++i) {
            const Real wz = w * z[i];
            const Real* q = &m_vectors_t(k, i, 0);
            SCOREKIT_SIMD
            for (int j = 0; j < d; ++j) out[j] -= q[j] * wz;
          }
        } else {
          SCOREKIT_SIMD
          for (int j = 0; j < d; ++j)
            out[j] -= w * (x[j] - a * m_mean(k, j)) * inv_var(level, k, j, a, sigma);
        }
      }
    }
    const Real inv_sum = Real(1) / run_sum;
    Real s2 = 0;
    if (Score)
      for (int j = 0; j < d; ++j) {
        out[j] *= inv_sum;
        s2 += out[j] * out[j];
      }
    if (Laplacian) *lap = run_lap * inv_sum - s2;
    return run_max + math::log(run_sum);
  }

  /// The score of the law of a X + sigma Z at x (what evaluate<true, false> gives; for isotropic and
  /// diagonal covariances through score_lanes<1>, so that it is the same bits as a lane of a block).
  KOKKOS_INLINE_FUNCTION void score_at(const Real* x, Real a, Real sigma, int level, Real* out,
                                       Real* work) const {
    if (m_kind == CovarianceKind::full)
      evaluate<true, false>(x, a, sigma, level, out, work, nullptr);
    else
      score_lanes<1>(x, 0, a, sigma, level, out, 0, work);
  }

  /// Scores of NB particles of the law of a X + sigma Z for isotropic and diagonal covariances: particle
  /// b at x + b x_stride, its score to out + b out_stride. The one definition of a one-particle score
  /// (NB = 1, score_at, no workspace) and of a panel of a block (NB = panel, score_block): every lane runs
  /// the same operations in the same order, so a particle's score is the same bits in a panel or alone.
  /// Written for vectorisation across the lanes: a panel is transposed into 2 d NB values of `work`
  /// (x, then the score, coordinate-major: one vector of NB lanes a coordinate), the streaming
  /// log-sum-exp selects instead of branching (one exponential a component: of lk - max when lk is not a
  /// new maximum, else of the rescale), and its exponential is elementary::exp, which vectorises where
  /// libm's exp does not.
  template <int NB>
  KOKKOS_INLINE_FUNCTION void score_lanes(const Real* x, int x_stride, Real a, Real sigma, int level,
                                          Real* out, int out_stride, Real* work) const {
    const int d = m_dim;
    // Coordinate j of lane b at xp[j NB + b], its score at op[j NB + b]: for one lane, x and out.
    const Real* xp = x;
    Real* op = out;
    if (NB > 1) {
      Real* xt = work;
      for (int b = 0; b < NB; ++b)
        for (int j = 0; j < d; ++j) xt[j * NB + b] = x[b * x_stride + j];
      xp = xt;
      op = work + d * NB;
    }
    // (All set by component 0 before use; zeroed for the compiler, which cannot see that m_k >= 1.)
    Real run_max[NB] = {}, run_sum[NB] = {}, quad[NB] = {}, e[NB] = {}, new_max[NB] = {};
    for (int k = 0; k < m_k; ++k) {
      for (int b = 0; b < NB; ++b) quad[b] = 0;
      for (int j = 0; j < d; ++j) {
        const Real mc = a * m_mean(k, j), iv = inv_var(level, k, j, a, sigma);
        const Real* xj = xp + j * NB;
        SCOREKIT_SIMD
        for (int b = 0; b < NB; ++b) {
          const Real dj = xj[b] - mc;
          quad[b] += dj * dj * iv;
        }
      }
      const Real log_norm = level >= 0 ? m_log_norm(level, k) : untabulated_log_norm(k, a, sigma);
      if (k == 0) {
        SCOREKIT_SIMD
        for (int b = 0; b < NB; ++b) {
          run_max[b] = log_norm - Real(0.5) * quad[b];
          run_sum[b] = 1;
        }
      } else {
        SCOREKIT_SIMD
        for (int b = 0; b < NB; ++b) {
          const Real lk = log_norm - Real(0.5) * quad[b];
          const bool bigger = lk > run_max[b];
          // e: the rescale of what was summed when lk is the new maximum, else the component's weight.
          e[b] = elementary::exp(bigger ? run_max[b] - lk : lk - run_max[b]);
          new_max[b] = bigger ? Real(1) : Real(0);
          // Each sum here and below has one product, so that a build that contracts a * b + c into a
          // fused multiply-add contracts it in a panel as in one particle (a sum of two products, such as
          // s * rescale + w * g, may be contracted around either, and GCC did so differently).
          run_sum[b] = bigger ? run_sum[b] * e[b] + Real(1) : run_sum[b] + e[b];
          run_max[b] = bigger ? lk : run_max[b];
        }
      }
      for (int j = 0; j < d; ++j) {  // the first component writes the score, the others fold into it
        const Real mc = a * m_mean(k, j), iv = inv_var(level, k, j, a, sigma);
        const Real* xj = xp + j * NB;
        Real* oj = op + j * NB;
        if (k == 0) {
          SCOREKIT_SIMD
          for (int b = 0; b < NB; ++b) oj[b] = -((xj[b] - mc) * iv);
        } else {
          SCOREKIT_SIMD
          for (int b = 0; b < NB; ++b) {
            const Real g = (xj[b] - mc) * iv;  // minus the component's score
            oj[b] = new_max[b] > Real(0) ? oj[b] * e[b] - g : oj[b] - e[b] * g;
          }
        }
      }
    }
    SCOREKIT_SIMD
    for (int b = 0; b < NB; ++b) run_sum[b] = Real(1) / run_sum[b];
    for (int j = 0; j < d; ++j) {
      Real* oj = op + j * NB;
      SCOREKIT_SIMD
      for (int b = 0; b < NB; ++b) oj[b] *= run_sum[b];
    }
    if (NB > 1)
      for (int b = 0; b < NB; ++b)
        for (int j = 0; j < d; ++j) out[b * out_stride + j] = op[j * NB + b];
  }

  /// Streaming log-sum-exp: folds component k's log-term lk into (run_max, run_sum) and returns the weight
  /// exp(lk - run_max) of its contributions. When lk is the new maximum, what was accumulated so far
  /// (run_sum, out[0..d) when out is not null, *run_lap when not null) is rescaled first.
  KOKKOS_INLINE_FUNCTION static Real fold_component(bool first, Real lk, Real& run_max, Real& run_sum,
                                                    Real* out, int d, Real* run_lap) {
    if (first) {
      run_max = lk;
      run_sum += 1;
      return Real(1);
    }
    if (lk > run_max) {
      const Real rescale = math::exp(run_max - lk);
      run_sum *= rescale;
      if (run_lap) *run_lap *= rescale;
      if (out)
        for (int j = 0; j < d; ++j) out[j] *= rescale;
      run_max = lk;
      run_sum += 1;
      return Real(1);
    }
    const Real w = math::exp(lk - run_max);
    run_sum += w;
    return w;
  }

  /// The most particles score_block takes at once, and the panel it evaluates them in: a block is
  /// evaluated a panel of `panel` particles at a time (vectorised across them), a tail particle by
  /// particle. A block of several panels shares the caller's per-block work (the noise level's table
  /// lookup; in integrate(), the SDE's coefficients at the step's time).
  static constexpr int max_block = 32;
  static constexpr int panel = 8;

  /// The block score_block() makes faster: on a CPU, max_block for isotropic and diagonal covariances
  /// (score_lanes vectorises across a panel) and for full ones when the per-level precision table exists,
  /// otherwise 1 (the particles would be evaluated one by one anyway); on a GPU always 1 (one particle
  /// per thread).
  KOKKOS_INLINE_FUNCTION int block_size() const {
    if (!runs_on_host_v<MemorySpace>) return 1;
    return m_kind != CovarianceKind::full || m_precision.extent(0) > 0 ? max_block : 1;
  }

  /// Scores of nb <= max_block particles of the law of a X + sigma Z at once: particle b at
  /// x + b x_stride, its score to out + b out_stride; the block owns the workspace span
  /// [work, work + nb work_stride), work_stride >= workspace_size(). The block goes a panel of `panel`
  /// particles at a time, then the tail particle by particle. Isotropic and diagonal covariances take
  /// score_lanes (a panel vectorised across its particles, the same bits as one particle alone). For
  /// full covariances at a tabulated level, a panel is transposed into a d x panel matrix so that each
  /// entry of the precision table multiplies one vector of `panel` particles (vertical FMAs, no
  /// horizontal sums, every table row read once for the panel); otherwise the particles are evaluated
  /// one by one.
  KOKKOS_INLINE_FUNCTION void score_block(int nb, const Real* x, int x_stride, Real a, Real sigma, int level,
                                          Real* out, int out_stride, Real* work, int work_stride) const {
    constexpr int B = panel;
    const bool full = m_kind == CovarianceKind::full;
    const bool panels = !full || (level >= 0 && m_precision.extent(0) > 0);
    int b0 = 0;
    for (; panels && b0 + B <= nb; b0 += B) {
      if (full)
        score_precision_panel(x + b0 * x_stride, x_stride, a, level, out + b0 * out_stride, out_stride,
                              work + b0 * work_stride);
      else
        score_lanes<B>(x + b0 * x_stride, x_stride, a, sigma, level, out + b0 * out_stride, out_stride,
                       work + b0 * work_stride);
    }
    for (int b = b0; b < nb; ++b)
      score_at(x + b * x_stride, a, sigma, level, out + b * out_stride, work + b * work_stride);
  }

  /// score_block()'s panel for full covariances at a tabulated level with a precision table: `panel`
  /// particles, the workspace of `panel` particles (2 d panel values, within panel workspace_size()).
  /// Out of line (SCOREKIT_NOINLINE, core/kokkos.hpp): inlined into a sampler's kernel it ran 1.6x slower.
  SCOREKIT_NOINLINE KOKKOS_INLINE_FUNCTION void score_precision_panel(const Real* x, int x_stride, Real a,
                                                                      int level, Real* out, int out_stride,
                                                                      Real* work) const {
    constexpr int B = panel;
    const int d = m_dim;
    Real* diff = work;       // d x B: diff[c B + b] = x_b[c] - a mu_k[c]
    Real* g = work + B * d;  // d x B: g_k = -P (x_b - a mu_k)
    Real run_max[B] = {}, run_sum[B] = {}, quad[B];
    for (int b = 0; b < B; ++b)
      for (int j = 0; j < d; ++j) out[b * out_stride + j] = 0;
    for (int k = 0; k < m_k; ++k) {
      for (int c = 0; c < d; ++c) {
        const Real mc = a * m_mean(k, c);
        for (int b = 0; b < B; ++b) diff[c * B + b] = x[b * x_stride + c] - mc;
      }
      for (int b = 0; b < B; ++b) quad[b] = 0;
      for (int r = 0; r < d; ++r) {
        const Real* p = &m_precision(level, k, r, 0);
        Real acc[B] = {};
        for (int c = 0; c < d; ++c) {
          const Real pc = p[c];
          SCOREKIT_SIMD
          for (int b = 0; b < B; ++b) acc[b] += pc * diff[c * B + b];
        }
        SCOREKIT_SIMD
        for (int b = 0; b < B; ++b) {
          g[r * B + b] = -acc[b];
          quad[b] += acc[b] * diff[r * B + b];
        }
      }
      for (int b = 0; b < B; ++b) {
        Real* ob = out + b * out_stride;
        const Real w = fold_component(k == 0, m_log_norm(level, k) - Real(0.5) * quad[b], run_max[b],
                                      run_sum[b], ob, d, nullptr);
        for (int j = 0; j < d; ++j) ob[j] += w * g[j * B + b];
      }
    }
    for (int b = 0; b < B; ++b) {
      const Real inv_sum = Real(1) / run_sum[b];
      for (int j = 0; j < d; ++j) out[b * out_stride + j] *= inv_sum;
    }
  }

  /// Means (K x d), log-weights (normalised), eigenvalues (K x d) on the device.
  auto means() const { return m_mean; }
  auto log_weights() const { return m_log_weight; }
  auto eigenvalues() const { return m_lambda; }
  /// The eigenvectors of full covariances on the device, K x d x d (LayoutRight), stored transposed:
  /// (k, i, j) = Q_k(j, i), so row (k, i, .) is the unit eigenvector of Sigma_k = Q_k diag(lambda_k) Q_k^T
  /// with eigenvalue eigenvalues()(k, i), contiguous in j. An empty view unless covariance_kind() is full.
  auto eigenvectors() const { return m_vectors_t; }

 private:
  GaussianMixture(const Eigen::VectorXd& weights, const Eigen::MatrixXd& means, const Eigen::MatrixXd& lambda,
                  const std::vector<Eigen::MatrixXd>& vectors, CovarianceKind kind)
      : m_kind(kind), m_k(int(means.rows())), m_dim(int(means.cols())) {
    m_mean = decltype(m_mean)("scorekit::mixture_mean", m_k, m_dim);
    m_lambda = decltype(m_lambda)("scorekit::mixture_lambda", m_k, m_dim);
    m_log_weight = decltype(m_log_weight)("scorekit::mixture_log_weight", m_k);
    m_cumulative_weight = decltype(m_cumulative_weight)("scorekit::mixture_cumulative_weight", m_k);
    auto h_mean = Kokkos::create_mirror_view(m_mean);
    auto h_lambda = Kokkos::create_mirror_view(m_lambda);
    auto h_logw = Kokkos::create_mirror_view(m_log_weight);
    auto h_cum = Kokkos::create_mirror_view(m_cumulative_weight);
    const double total = weights.sum();
    double cum = 0;
    for (int k = 0; k < m_k; ++k) {
      h_logw(k) = Real(std::log(weights[k] / total));
      cum += weights[k] / total;
      h_cum(k) = Real(k + 1 == m_k ? 1.0 : cum);
      for (int j = 0; j < m_dim; ++j) {
        h_mean(k, j) = Real(means(k, j));
        h_lambda(k, j) = Real(lambda(k, j));
      }
    }
    Kokkos::deep_copy(m_mean, h_mean);
    Kokkos::deep_copy(m_lambda, h_lambda);
    Kokkos::deep_copy(m_log_weight, h_logw);
    Kokkos::deep_copy(m_cumulative_weight, h_cum);
    if (kind == CovarianceKind::full) {
      m_vectors_t = decltype(m_vectors_t)("scorekit::mixture_eigenvectors", m_k, m_dim, m_dim);
      auto h_vec = Kokkos::create_mirror_view(m_vectors_t);
      for (int k = 0; k < m_k; ++k)
        for (int i = 0; i < m_dim; ++i)
          for (int j = 0; j < m_dim; ++j) h_vec(k, i, j) = Real(vectors[std::size_t(k)](j, i));
      Kokkos::deep_copy(m_vectors_t, h_vec);
    }
    tabulate(std::vector<Real>{Real(1)}, std::vector<Real>{Real(0)});
  }

  static void check_weights_means(const Eigen::VectorXd& weights, const Eigen::MatrixXd& means,
                                  const char* where) {
    if (means.rows() == 0 || means.cols() == 0)
      throw invalid_argument(detail::concat(where, ": needs at least one component of dimension >= 1"));
    require_dimension(weights.size(), means.rows(), "weights (one per component)", where);
    for (Eigen::Index k = 0; k < weights.size(); ++k)
      require_positive(weights[k], "each mixture weight", where);
    if (!means.allFinite()) throw invalid_argument(detail::concat(where, ": means contain NaN or inf"));
  }

  /// log w_k + log N(. ; a mu_k, C_k)'s normaliser at an untabulated (a, sigma): d logs.
  KOKKOS_INLINE_FUNCTION Real untabulated_log_norm(int k, Real a, Real sigma) const {
    Real log_norm = m_log_weight(k) - Real(0.5) * Real(m_dim) * math::log(2 * math::pi<Real>());
    for (int i = 0; i < m_dim; ++i) log_norm -= Real(0.5) * math::log(a * a * m_lambda(k, i) + sigma * sigma);
    return log_norm;
  }

  KOKKOS_INLINE_FUNCTION Real inv_var(int level, int k, int i, Real a, Real sigma) const {
    return level >= 0 ? m_inv_var(level, k, i) : Real(1) / (a * a * m_lambda(k, i) + sigma * sigma);
  }

  CovarianceKind m_kind = CovarianceKind::isotropic;
  int m_k = 0;
  int m_dim = 0;
  Real m_a = 1;
  Real m_sigma = 0;
  Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> m_mean;
  Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> m_lambda;
  Kokkos::View<Real***, Kokkos::LayoutRight, MemorySpace> m_vectors_t;  // (k, i, j) = Q_k(j, i)
  Kokkos::View<Real*, MemorySpace> m_log_weight;
  Kokkos::View<Real*, MemorySpace> m_cumulative_weight;
  Kokkos::View<Real***, Kokkos::LayoutRight, MemorySpace> m_inv_var;     // (level, k, i)
  Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> m_log_norm;     // (level, k)
  Kokkos::View<Real****, Kokkos::LayoutRight, MemorySpace> m_precision;  // (level, k, r, c), full only
};

/// A Gaussian N(mean, covariance) with full covariance: a one-component mixture (the covariance is
/// checked positive definite by Cholesky and factored by a symmetric eigendecomposition).
template <class Real = double, class MemorySpace = Kokkos::DefaultExecutionSpace::memory_space>
GaussianMixture<Real, MemorySpace> gaussian(const Eigen::VectorXd& mean, const Eigen::MatrixXd& covariance) {
  return GaussianMixture<Real, MemorySpace>::full(Eigen::VectorXd::Ones(1), mean.transpose(),
                                                  std::vector<Eigen::MatrixXd>{covariance});
}

}  // namespace scorekit
