// Linear inverse problems: sampling x given y = A x + sigma_y n, n ~ N(0, I_m), A an m x d matrix.
//
// Exact, for Gaussian-mixture priors (posterior_mixture): the posterior is a Gaussian mixture whose
// components are the Kalman updates of the prior's and whose weights are reweighted by the evidence,
//   w'_k  proportional to  w_k N(y; A mu_k, S_k),        S_k = A Sigma_k A^T + sigma_y^2 I,
//   K_k = Sigma_k A^T S_k^-1,   mu'_k = mu_k + K_k (y - A mu_k),
//   Sigma'_k = (I - K_k A) Sigma_k (I - K_k A)^T + sigma_y^2 K_k K_k^T      (Joseph's form of
//              Sigma_k - K_k S_k K_k^T: symmetric and positive definite in floating point too).
// sigma_y must be > 0: an exact constraint (sigma_y = 0) makes the posterior degenerate in d dimensions;
// for constraints on coordinates use condition_on (guidance/inpainting.hpp), which drops them. Inpainting
// is the limit A = a selection, sigma_y -> 0, with an error O(sigma_y^2) (tests/test_guidance.cpp).
//
// Approximate, for any score model (ObservedSubspaceReplacement): replacement (guidance/replacement.hpp)
// in the singular basis of A, the generalisation of inpainting to a linear observation. For sigma_y = 0 it
// is the data-consistency step of Song et al. 2022 ("Solving inverse problems in medical imaging with
// score-based generative models") with lambda = 1; the matching of noise levels for sigma_y > 0 follows the
// spectral view of Kawar et al. 2022 ("Denoising diffusion restoration models"). With
// A = U S V^T (rank r, singular values s_i), the coordinates v_i = V_i . x, i < r, are observed through
// yhat_i = (S^-1 U^T y)_i = v_i + (sigma_y / s_i) n_i: each is the data coordinate seen at noise level
// sigma_i = sigma_y / s_i. The forward process sees v_i at level s(t)/a(t). So:
// - while s(t)/a(t) >= sigma_i, the noised observation a(t) yhat_i + sqrt(s(t)^2 - a(t)^2 sigma_i^2) z has
//   the law of v_i at time t given the data (the forward process is Markov: more noise on top of the
//   observation's), and v_i is replaced by it after every step;
// - once s(t)/a(t) < sigma_i the observation is noisier than the state and v_i is left to the score:
//   the reverse process started from v_i = a(t*) yhat_i at the crossing time t* (s/a = sigma_i) draws
//   v_i given yhat_i.
// Insert the crossing times into the grid (observation_times) so that the last replacement happens at
// t* exactly; otherwise it happens at the last grid time above t*, whose extra noise loses information
// (an O(step) error). What it approximates: as inpainting, it uses the joint score at a noised copy of the
// observation in place of the score given the observation; it is exact when, under the data law, the
// observed coordinates v_0..v_{r-1} are independent of the unobserved ones and (for sigma_y > 0 with
// unequal sigma_i) of each other. With sigma_y = 0 every observed coordinate is replaced to the end
// (an exact constraint, least-squares when y is not in the range of A); with A a selection of
// coordinates it is inpainting.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/guidance/inpainting.hpp>
#include <scorekit/guidance/mixture_algebra.hpp>
#include <scorekit/guidance/replacement.hpp>

#include <Eigen/Cholesky>
#include <Eigen/Dense>
#include <Eigen/SVD>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace scorekit {
namespace detail {

inline void check_linear_observation(const Eigen::MatrixXd& a, int d, const char* where) {
  if (a.rows() < 1) throw invalid_argument(detail::concat(where, ": the observation matrix A has no rows"));
  require_dimension(a.cols(), d, "the observation matrix A (columns)", where);
  if (!a.allFinite())
    throw invalid_argument(detail::concat(where, ": the observation matrix A has NaN or inf"));
}

}  // namespace detail

/// The posterior of X ~ prior given y = A X + sigma_y n (see the file comment); sigma_y > 0. The result
/// has full covariances. Components whose posterior weight underflows double are dropped.
inline MixtureParameters posterior_mixture(const MixtureParameters& prior, const Eigen::MatrixXd& a,
                                           const Eigen::VectorXd& y, double sigma_y) {
  const char* where = "scorekit::posterior_mixture";
  detail::check_parameters(prior, where);
  const int d = prior.dim(), m = int(a.rows()), n_comp = prior.n_components();
  detail::check_linear_observation(a, d, where);
  require_dimension(y.size(), m, "the observation y", where);
  detail::check_finite_vector(y, "the observation y", where);
  if (!(sigma_y > 0) || !std::isfinite(sigma_y))
    throw invalid_argument(detail::concat(where, ": sigma_y must be positive and finite, got ", sigma_y,
                                          " (for exact constraints on coordinates use condition_on)"));
  const double log_2pi = std::log(2 * 3.14159265358979323846);
  const Eigen::MatrixXd id = Eigen::MatrixXd::Identity(d, d);
  std::vector<double> log_w;
  std::vector<Eigen::VectorXd> means;
  std::vector<Eigen::MatrixXd> covs;
  for (int c = 0; c < n_comp; ++c) {
    const Eigen::MatrixXd& s = prior.covariances[std::size_t(c)];
    const Eigen::VectorXd mu = prior.means.row(c).transpose();
    const Eigen::MatrixXd as = a * s;  // A Sigma
    const Eigen::MatrixXd sy =
        detail::symmetrised(as * a.transpose()) + sigma_y * sigma_y * Eigen::MatrixXd::Identity(m, m);
    const Eigen::LLT<Eigen::MatrixXd> llt(sy);
    if (llt.info() != Eigen::Success)
      throw invalid_argument(detail::concat(where, ": A Sigma A^T + sigma_y^2 I of component ", c,
                                            " is not positive definite (rounding: sigma_y too small)"));
    const Eigen::VectorXd r = y - a * mu;
    const Eigen::VectorXd alpha = llt.solve(r);
    const Eigen::MatrixXd l = llt.matrixL();
    const double log_det = 2 * l.diagonal().array().log().sum();
    log_w.push_back(std::log(prior.weights[c]) - 0.5 * (r.dot(alpha) + log_det + m * log_2pi));
    const Eigen::MatrixXd gain = llt.solve(as).transpose();  // K = Sigma A^T S^-1 (d x m)
    means.push_back(mu + gain * r);
    const Eigen::MatrixXd ika = id - gain * a;
    covs.push_back(
        detail::symmetrised(ika * s * ika.transpose() + sigma_y * sigma_y * gain * gain.transpose()));
  }
  const double top = *std::max_element(log_w.begin(), log_w.end());
  MixtureParameters out;
  out.kind = CovarianceKind::full;
  std::vector<int> kept;
  std::vector<double> w;
  for (int c = 0; c < n_comp; ++c) {
    const double wc = std::exp(log_w[std::size_t(c)] - top);
    if (wc > 0) {
      kept.push_back(c);
      w.push_back(wc);
    }
  }
  double total = 0;
  for (double v : w) total += v;
  out.weights.resize(Eigen::Index(kept.size()));
  out.means.resize(Eigen::Index(kept.size()), d);
  for (std::size_t i = 0; i < kept.size(); ++i) {
    out.weights[Eigen::Index(i)] = w[i] / total;
    out.means.row(Eigen::Index(i)) = means[std::size_t(kept[i])].transpose();
    if (Eigen::LLT<Eigen::MatrixXd>(covs[std::size_t(kept[i])]).info() != Eigen::Success)
      throw invalid_argument(
          detail::concat(where, ": the posterior covariance of component ", kept[i],
                         " is numerically singular (sigma_y = ", sigma_y,
                         " is too small next to the prior's spread; for exact constraints on "
                         "coordinates use condition_on)"));
    out.covariances.push_back(covs[std::size_t(kept[i])]);
  }
  return out;
}

/// posterior_mixture for a GaussianMixture (perturbation included), as a GaussianMixture.
template <class Real, class MemorySpace>
GaussianMixture<Real, MemorySpace> posterior_mixture(const GaussianMixture<Real, MemorySpace>& prior,
                                                     const Eigen::MatrixXd& a, const Eigen::VectorXd& y,
                                                     double sigma_y) {
  return make_mixture<Real, MemorySpace>(posterior_mixture(mixture_parameters(prior), a, y, sigma_y));
}

/// Replacement of the observed singular coordinates of A (see the file comment and
/// guidance/replacement.hpp).
template <class Real = double, class MemorySpace = Kokkos::DefaultExecutionSpace::memory_space>
class ObservedSubspaceReplacement {
 public:
  using value_type = Real;
  using memory_space = MemorySpace;

  /// a: m x d; observations: rows x m (1 row shared, or N: row i for particle i); sigma_y >= 0.
  /// Singular values below max(m, d) eps s_max count as zero.
  ObservedSubspaceReplacement(const Eigen::MatrixXd& a, const Eigen::MatrixXd& observations, double sigma_y) {
    const char* where = "scorekit::ObservedSubspaceReplacement";
    if (a.cols() < 1)
      throw invalid_argument(detail::concat(where, ": the observation matrix A has no columns"));
    detail::check_linear_observation(a, int(a.cols()), where);
    detail::check_rows(observations.rows(), "the observations", where);
    require_dimension(observations.cols(), a.rows(), "the observations (columns, one per row of A)", where);
    for (Eigen::Index i = 0; i < observations.rows(); ++i)
      detail::check_finite_vector(observations.row(i).transpose(), "the observation", where);
    if (!(sigma_y >= 0) || !std::isfinite(sigma_y))
      throw invalid_argument(detail::concat(where, ": sigma_y must be finite and >= 0, got ", sigma_y));
    m_dim = int(a.cols());
    const Eigen::JacobiSVD<Eigen::MatrixXd> svd(a, Eigen::ComputeThinU | Eigen::ComputeThinV);
    const Eigen::VectorXd s = svd.singularValues();
    const double tol = double(std::max(a.rows(), a.cols())) * std::numeric_limits<double>::epsilon() * s[0];
    int r = 0;
    while (r < s.size() && s[r] > tol) ++r;
    if (r == 0) throw invalid_argument(detail::concat(where, ": the observation matrix A is zero"));
    if (r == m_dim && sigma_y == 0)
      throw invalid_argument(detail::concat(where, ": A has rank d = ", m_dim,
                                            " and sigma_y = 0: x is determined, nothing to sample"));
    m_rank = r;
    m_basis = Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace>(
        "scorekit::ObservedSubspaceReplacement::basis", r, m_dim);
    m_yhat = Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace>(
        "scorekit::ObservedSubspaceReplacement::yhat", observations.rows(), r);
    m_level = Kokkos::View<Real*, MemorySpace>("scorekit::ObservedSubspaceReplacement::levels", r);
    auto hb = Kokkos::create_mirror_view(m_basis);
    auto hy = Kokkos::create_mirror_view(m_yhat);
    auto hl = Kokkos::create_mirror_view(m_level);
    m_levels =
        Kokkos::View<double*, Kokkos::HostSpace>("scorekit::ObservedSubspaceReplacement::levels_host", r);
    for (int i = 0; i < r; ++i) {
      for (int j = 0; j < m_dim; ++j) hb(i, j) = Real(svd.matrixV()(j, i));
      m_levels(i) = sigma_y / s[i];
      hl(i) = Real(m_levels(i));
      for (Eigen::Index row = 0; row < observations.rows(); ++row)
        hy(row, i) = Real(svd.matrixU().col(i).dot(observations.row(row).transpose()) / s[i]);
    }
    Kokkos::deep_copy(m_basis, hb);
    Kokkos::deep_copy(m_yhat, hy);
    Kokkos::deep_copy(m_level, hl);
    m_rows = std::int64_t(observations.rows());
  }

  KOKKOS_INLINE_FUNCTION int dim() const { return m_dim; }
  std::int64_t rows() const { return m_rows; }
  /// The rank r of A (observed coordinates).
  KOKKOS_INLINE_FUNCTION int rank() const { return m_rank; }
  /// The noise levels sigma_i = sigma_y / s_i at which each observed coordinate is seen.
  std::vector<double> noise_levels() const {
    return std::vector<double>(m_levels.data(), m_levels.data() + m_rank);
  }
  /// The orthonormal observed directions V_i (rows: r x d) and yhat (rows x r).
  Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> basis() const { return m_basis; }
  Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> yhat() const { return m_yhat; }

  /// True when the state at a kernel k is at least as noisy as an observation at level `level`.
  KOKKOS_INLINE_FUNCTION static bool replaces(const MarginalKernel<Real>& k, Real level) {
    return k.std >= k.scale * level;
  }

  template <class SDE>
  KOKKOS_INLINE_FUNCTION void replace(const SDE& sde, Real* x, Real t, bool noise,
                                      CounterRng<Real>& rng) const {
    const std::int64_t row = detail::observation_row(m_rows, rng);
    if (row < 0) {
      detail::set_nan(x, m_dim, m_nan);
      return;
    }
    const MarginalKernel<Real> k = sde.marginal(t);
    for (int i = 0; i < m_rank; ++i) {
      const Real level = m_level(i);
      if (!replaces(k, level)) continue;
      const Real* b = &m_basis(i, 0);
      Real v = 0;
      for (int j = 0; j < m_dim; ++j) v += b[j] * x[j];
      Real target = k.scale * m_yhat(row, i);
      if (noise) {
        const Real al = k.scale * level, var = k.std * k.std - al * al;
        target += math::sqrt(var > Real(0) ? var : Real(0)) * rng.normal();
      }
      const Real delta = target - v;
      for (int j = 0; j < m_dim; ++j) x[j] += b[j] * delta;
    }
  }

 private:
  int m_dim = 0;
  int m_rank = 0;
  Kokkos::View<double*, Kokkos::HostSpace>
      m_levels;  // host copy of the levels in double (never read in kernels)
  Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> m_basis;
  Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> m_yhat;
  Kokkos::View<Real*, MemorySpace> m_level;
  std::int64_t m_rows = 1;
  Real m_nan = std::numeric_limits<Real>::quiet_NaN();
};

/// The linear-inverse-problem replacement (see ObservedSubspaceReplacement) with one observation y shared
/// by every particle; `inner` is any Integrator.
template <class Real = double, class MemorySpace = Kokkos::DefaultExecutionSpace::memory_space, class Inner>
ReplacementIntegrator<Inner, ObservedSubspaceReplacement<Real, MemorySpace>> observed_subspace_replacement(
    const Inner& inner, const Eigen::MatrixXd& a, const Eigen::VectorXd& y, double sigma_y) {
  using R = ObservedSubspaceReplacement<Real, MemorySpace>;
  return ReplacementIntegrator<Inner, R>(inner, R(a, Eigen::MatrixXd(y.transpose()), sigma_y));
}

/// `times` (a decreasing grid from t_0 to t_N) with the crossing times t* of each observed coordinate
/// inserted: the times where s(t)/a(t) first reaches sigma_i, found by bisection in the SDE's precision so
/// that the replacement's own test holds at t* (s/a must increase with t, as for VE, VP and sub-VP).
/// Crossings outside (t_N, t_0) or on a grid time are skipped.
template <class SDE, class Real, class MemorySpace>
std::vector<double> observation_times(const SDE& sde, const std::vector<double>& times,
                                      const ObservedSubspaceReplacement<Real, MemorySpace>& replacement) {
  const char* where = "scorekit::observation_times";
  detail::check_time_grid(times, 0.0, double(sde.t_max()), where);
  if (!(times.back() < times.front()))
    throw invalid_argument(detail::concat(where, ": the grid must decrease (a reverse-time run)"));
  std::vector<double> out = times;
  for (double level_d : replacement.noise_levels()) {
    const Real level = Real(level_d);
    auto holds = [&](double t) {
      return ObservedSubspaceReplacement<Real, MemorySpace>::replaces(sde.marginal(Real(t)), level);
    };
    double lo = times.back(), hi = times.front();  // want: holds(hi), !holds(lo)
    if (level_d == 0 || holds(lo) || !holds(hi)) continue;
    for (int it = 0; it < 200 && Real(lo) != Real(hi); ++it) {
      const double mid = 0.5 * (lo + hi);
      if (Real(mid) == Real(lo) || Real(mid) == Real(hi)) break;
      (holds(mid) ? hi : lo) = mid;
    }
    const double t_star = double(Real(hi));
    if (std::find(out.begin(), out.end(), t_star) == out.end()) out.push_back(t_star);
  }
  std::sort(out.begin(), out.end(), [](double x, double y) { return x > y; });
  return out;
}

}  // namespace scorekit
