// Inpainting: sampling the unknown coordinates x_u of x = (x_u, x_k) given observed ones x_k = y.
//
// Exact, for Gaussian-mixture priors (condition_on): if X ~ sum_k w_k N(mu_k, Sigma_k), then X_u given
// X_k = y is again a Gaussian mixture,
//   w'_k  proportional to  w_k N(y; mu_k,k, Sigma_k,kk),
//   mu'_k    = mu_k,u + Sigma_k,uk Sigma_k,kk^-1 (y - mu_k,k),
//   Sigma'_k = Sigma_k,uu - Sigma_k,uk Sigma_k,kk^-1 Sigma_k,ku          (the Schur complement),
// so sampling the exact conditional is running any reverse integrator with PerturbedMixtureScore of
// condition_on(...) in the unknown coordinates alone. That is the ground truth the approximate method
// below is measured against.
//
// Approximate, for any score model (inpainting(), Song et al. 2021, appendix I.2, score_sde's
// get_pc_inpainter): integrate the unconditional reverse process in all d coordinates and after every
// step overwrite the known ones with a(t') y + s(t') z, a draw of x_t',k given x_0,k = y. What it
// approximates: the conditional reverse SDE needs grad_{x_u} log p_t(x_u | x_0,k = y), the score of the
// noised unknowns given the clean observation. Replacement supplies grad_{x_u} log p_t(x_u, x_k) at
// x_k = a y + s z, which is grad_{x_u} log p_t(x_u | x_t,k = a y + s z): it conditions on one fresh noisy
// copy of the observation at the current noise level instead of on y itself. The two agree when x_u and
// x_k are independent under the data law (p_t then factorises, both are grad log p_t(x_u), and the
// method is exact), and their gap shrinks as t -> 0; for dependent coordinates (a correlated mixture) the
// samples are biased, by an amount that does not vanish with more steps (tests/test_guidance.cpp measures
// it). score_sde draws the noised observation at the step's start time t; here it is drawn at its end t',
// where the state now lives.
//
// The mask is a view of 0/1 values (1 = known) with d columns and one row shared by every particle or one
// row per particle; likewise the observations (an N x d or 1 x d view of which only the known entries are
// read, as score_sde's `data`). After the last step the known coordinates hold a(t_N) y + s(t_N) z, or
// exactly a(t_N) y with remove_last_noise (= y for the VE SDE, whose a is 1).
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/guidance/mixture_algebra.hpp>
#include <scorekit/guidance/replacement.hpp>

#include <Eigen/Cholesky>
#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace scorekit {
namespace detail {

/// A host copy of a rank-2 view as a double matrix.
template <class View>
Eigen::MatrixXd host_matrix(const View& v) {
  static_assert(Kokkos::is_view<View>::value && int(View::rank) == 2,
                "scorekit: expected a rank-2 Kokkos::View");
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  Eigen::MatrixXd m(h.extent(0), h.extent(1));
  for (std::size_t i = 0; i < h.extent(0); ++i)
    for (std::size_t j = 0; j < h.extent(1); ++j) m(Eigen::Index(i), Eigen::Index(j)) = double(h(i, j));
  return m;
}

/// Checks known coordinate indices against the dimension: non-empty, in range, no repeats, and not all of
/// them (something must be left to sample).
inline void check_known_indices(const std::vector<int>& known, int d, const char* where) {
  if (known.empty())
    throw invalid_argument(detail::concat(where, ": the list of known coordinates is empty"));
  std::vector<char> seen(std::size_t(std::max(d, 0)), 0);
  for (std::size_t i = 0; i < known.size(); ++i) {
    const int j = known[i];
    if (j < 0 || j >= d)
      throw invalid_argument(detail::concat(where, ": known coordinate ", j, " (entry ", i,
                                            ") is out of range for dimension ", d));
    if (seen[std::size_t(j)])
      throw invalid_argument(detail::concat(where, ": known coordinate ", j, " is listed twice"));
    seen[std::size_t(j)] = 1;
  }
  if (int(known.size()) == d)
    throw invalid_argument(
        detail::concat(where, ": every one of the ", d, " coordinates is known: nothing to sample"));
}

inline void check_finite_vector(const Eigen::VectorXd& y, const char* what, const char* where) {
  for (Eigen::Index i = 0; i < y.size(); ++i)
    if (!std::isfinite(y[i]))
      throw invalid_argument(detail::concat(where, ": ", what, " entry ", i, " is not finite (", y[i], ")"));
}

}  // namespace detail

/// The coordinates 0..d-1 not in `known`, in increasing order: the coordinates of condition_on's result.
inline std::vector<int> unknown_indices(int d, const std::vector<int>& known) {
  detail::check_known_indices(known, d, "scorekit::unknown_indices");
  std::vector<char> is_known(std::size_t(d), 0);
  for (int j : known) is_known[std::size_t(j)] = 1;
  std::vector<int> u;
  for (int j = 0; j < d; ++j)
    if (!is_known[std::size_t(j)]) u.push_back(j);
  return u;
}

/// The law of the unknown coordinates (in increasing order, see unknown_indices) given that coordinates
/// known[i] equal y[i]: a Gaussian mixture (see the file comment). Components whose conditional weight
/// underflows double are dropped. Isotropic and diagonal priors give isotropic and diagonal results (the
/// coordinates are independent within a component, so only the weights change).
inline MixtureParameters condition_on(const MixtureParameters& prior, const std::vector<int>& known,
                                      const Eigen::VectorXd& y) {
  const char* where = "scorekit::condition_on";
  detail::check_parameters(prior, where);
  const int d = prior.dim();
  detail::check_known_indices(known, d, where);
  require_dimension(y.size(), Eigen::Index(known.size()),
                    "the observation y (one value per known coordinate)", where);
  detail::check_finite_vector(y, "the observation y", where);
  const std::vector<int> unknown = unknown_indices(d, known);
  const int nk = int(known.size()), nu = int(unknown.size()), n_comp = prior.n_components();
  const double log_2pi = std::log(2 * 3.14159265358979323846);

  std::vector<double> log_w(static_cast<std::size_t>(n_comp));
  std::vector<Eigen::VectorXd> means;
  std::vector<Eigen::MatrixXd> covs;
  for (int c = 0; c < n_comp; ++c) {
    const Eigen::MatrixXd& s = prior.covariances[std::size_t(c)];
    Eigen::MatrixXd s_kk(nk, nk), s_uk(nu, nk), s_uu(nu, nu);
    Eigen::VectorXd r(nk), mu_u(nu);
    for (int i = 0; i < nk; ++i) {
      r[i] = y[i] - prior.means(c, known[std::size_t(i)]);
      for (int j = 0; j < nk; ++j) s_kk(i, j) = s(known[std::size_t(i)], known[std::size_t(j)]);
    }
    for (int i = 0; i < nu; ++i) {
      mu_u[i] = prior.means(c, unknown[std::size_t(i)]);
      for (int j = 0; j < nk; ++j) s_uk(i, j) = s(unknown[std::size_t(i)], known[std::size_t(j)]);
      for (int j = 0; j < nu; ++j) s_uu(i, j) = s(unknown[std::size_t(i)], unknown[std::size_t(j)]);
    }
    const Eigen::LLT<Eigen::MatrixXd> llt(s_kk);
    if (llt.info() != Eigen::Success)
      throw invalid_argument(detail::concat(where, ": the known block of component ", c,
                                            "'s covariance is not positive definite"));
    const Eigen::VectorXd alpha = llt.solve(r);  // Sigma_kk^-1 (y - mu_k)
    const Eigen::MatrixXd l = llt.matrixL();
    const double log_det = 2 * l.diagonal().array().log().sum();
    log_w[std::size_t(c)] = std::log(prior.weights[c]) - 0.5 * (r.dot(alpha) + log_det + nk * log_2pi);
    means.push_back(mu_u + s_uk * alpha);
    // Sigma_uu - Sigma_uk Sigma_kk^-1 Sigma_ku = Sigma_uu - B^T B with B = L^-1 Sigma_ku (symmetric by form).
    const Eigen::MatrixXd b = l.triangularView<Eigen::Lower>().solve(s_uk.transpose());
    covs.push_back(detail::symmetrised(s_uu - b.transpose() * b));
  }
  const double top = *std::max_element(log_w.begin(), log_w.end());
  MixtureParameters out;
  out.kind = prior.kind;
  std::vector<int> kept;
  std::vector<double> w;
  for (int c = 0; c < n_comp; ++c) {
    const double wc = std::exp(log_w[std::size_t(c)] - top);
    if (wc > 0) {
      kept.push_back(c);
      w.push_back(wc);
    }
  }
  out.weights.resize(Eigen::Index(kept.size()));
  out.means.resize(Eigen::Index(kept.size()), nu);
  double total = 0;
  for (double v : w) total += v;
  for (std::size_t i = 0; i < kept.size(); ++i) {
    out.weights[Eigen::Index(i)] = w[i] / total;
    out.means.row(Eigen::Index(i)) = means[std::size_t(kept[i])].transpose();
    Eigen::MatrixXd c = covs[std::size_t(kept[i])];
    if (Eigen::LLT<Eigen::MatrixXd>(c).info() != Eigen::Success)
      throw invalid_argument(
          detail::concat(where, ": the conditional covariance of component ", kept[i],
                         " is numerically singular (the unknown coordinates are determined "
                         "by the known ones up to rounding)"));
    out.covariances.push_back(c);
  }
  return out;
}

/// condition_on for a GaussianMixture (perturbation included), as a GaussianMixture of the unknown
/// coordinates in the same memory space.
template <class Real, class MemorySpace>
GaussianMixture<Real, MemorySpace> condition_on(const GaussianMixture<Real, MemorySpace>& prior,
                                                const std::vector<int>& known, const Eigen::VectorXd& y) {
  return make_mixture<Real, MemorySpace>(condition_on(mixture_parameters(prior), known, y));
}

/// The replacement of masked coordinates (see the file comment and guidance/replacement.hpp).
template <class Real = double, class MemorySpace = Kokkos::DefaultExecutionSpace::memory_space>
class MaskReplacement {
 public:
  using value_type = Real;
  using memory_space = MemorySpace;
  using mask_view = Kokkos::View<unsigned char**, Kokkos::LayoutRight, MemorySpace>;
  using observation_view = Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace>;

  /// mask: rows x d (any arithmetic type, entries 0 or 1, 1 = known); observations: rows x d, read where
  /// the mask is 1. Each has 1 row (shared) or N rows (row i for particle i).
  template <class MaskView, class ObservationView>
  MaskReplacement(const MaskView& mask, const ObservationView& observations) {
    const char* where = "scorekit::MaskReplacement";
    const Eigen::MatrixXd m = detail::host_matrix(mask);
    const Eigen::MatrixXd y = detail::host_matrix(observations);
    detail::check_rows(m.rows(), "the mask", where);
    detail::check_rows(y.rows(), "the observations", where);
    if (m.cols() < 1) throw invalid_argument(detail::concat(where, ": the mask has no columns"));
    require_dimension(y.cols(), m.cols(), "the observations (columns)", where);
    if (m.rows() != 1 && y.rows() != 1 && m.rows() != y.rows())
      throw dimension_mismatch(detail::concat(where, ": the mask has ", m.rows(),
                                              " rows and the observations ", y.rows(),
                                              "; each must have 1 row or one per particle"));
    m_dim = int(m.cols());
    m_mask = mask_view("scorekit::MaskReplacement::mask", m.rows(), m.cols());
    m_y = observation_view("scorekit::MaskReplacement::observations", y.rows(), y.cols());
    auto h_mask = Kokkos::create_mirror_view(m_mask);
    auto h_y = Kokkos::create_mirror_view(m_y);
    for (Eigen::Index i = 0; i < m.rows(); ++i) {
      int n_known = 0;
      for (Eigen::Index j = 0; j < m.cols(); ++j) {
        if (!(m(i, j) == 0 || m(i, j) == 1))
          throw invalid_argument(detail::concat(where, ": mask entry (", i, ", ", j, ") is ", m(i, j),
                                                "; entries must be 0 (unknown) or 1 (known)"));
        h_mask(i, j) = m(i, j) == 1 ? 1 : 0;
        n_known += h_mask(i, j);
      }
      if (n_known == 0)
        throw invalid_argument(detail::concat(where, ": mask row ", i, " marks no coordinate known"));
      if (n_known == m_dim)
        throw invalid_argument(
            detail::concat(where, ": mask row ", i, " marks every coordinate known: nothing to sample"));
    }
    for (Eigen::Index i = 0; i < y.rows(); ++i)
      for (Eigen::Index j = 0; j < y.cols(); ++j) {
        // The mask rows that apply to observation row i: its own, the shared one, or (for a shared
        // observation under per-particle masks) all of them.
        const bool known = m.rows() == y.rows() ? m(i, j) == 1 : (m.col(j).array() == 1).any();
        if (known && !std::isfinite(y(i, j)))
          throw invalid_argument(detail::concat(where, ": observation (", i, ", ", j,
                                                ") at a known coordinate is ", y(i, j), ", not finite"));
        h_y(i, j) = std::isfinite(y(i, j)) ? Real(y(i, j)) : Real(0);
      }
    Kokkos::deep_copy(m_mask, h_mask);
    Kokkos::deep_copy(m_y, h_y);
    m_mask_rows = m.rows();
    m_y_rows = y.rows();
    m_rows = std::max<std::int64_t>(m.rows(), y.rows());
  }

  KOKKOS_INLINE_FUNCTION int dim() const { return m_dim; }
  std::int64_t rows() const { return m_rows; }
  mask_view mask() const { return m_mask; }
  observation_view observations() const { return m_y; }

  /// Overwrites the known coordinates of x with a(t) y + s(t) z (a(t) y when !noise).
  template <class SDE>
  KOKKOS_INLINE_FUNCTION void replace(const SDE& sde, Real* x, Real t, bool noise,
                                      CounterRng<Real>& rng) const {
    const std::int64_t row = detail::observation_row(m_rows, rng);
    if (row < 0) {
      detail::set_nan(x, m_dim, m_nan);
      return;
    }
    const std::int64_t mr = m_mask_rows == 1 ? 0 : row, yr = m_y_rows == 1 ? 0 : row;
    const MarginalKernel<Real> k = sde.marginal(t);
    for (int j = 0; j < m_dim; ++j)
      if (m_mask(mr, j)) x[j] = detail::noised_observation(k, m_y(yr, j), noise, rng);
  }

 private:
  int m_dim = 0;
  std::int64_t m_mask_rows = 1, m_y_rows = 1, m_rows = 1;
  mask_view m_mask;
  observation_view m_y;
  Real m_nan = std::numeric_limits<Real>::quiet_NaN();
};

/// Inpainting by replacement with device views (see MaskReplacement): `inner` is any Integrator.
template <class Inner, class MaskView, class ObservationView>
ReplacementIntegrator<Inner, MaskReplacement<typename ObservationView::non_const_value_type,
                                             typename ObservationView::memory_space>>
inpainting(const Inner& inner, const MaskView& mask, const ObservationView& observations) {
  using R =
      MaskReplacement<typename ObservationView::non_const_value_type, typename ObservationView::memory_space>;
  return ReplacementIntegrator<Inner, R>(inner, R(mask, observations));
}

/// Inpainting by replacement with one observation shared by every particle: coordinates known[i] of the
/// d-dimensional state are y[i].
template <class Real = double, class MemorySpace = Kokkos::DefaultExecutionSpace::memory_space, class Inner>
ReplacementIntegrator<Inner, MaskReplacement<Real, MemorySpace>> inpainting(const Inner& inner, int d,
                                                                            const std::vector<int>& known,
                                                                            const Eigen::VectorXd& y) {
  const char* where = "scorekit::inpainting";
  if (d < 1) throw invalid_argument(detail::concat(where, ": the dimension must be >= 1, got ", d));
  detail::check_known_indices(known, d, where);
  require_dimension(y.size(), Eigen::Index(known.size()),
                    "the observation y (one value per known coordinate)", where);
  detail::check_finite_vector(y, "the observation y", where);
  Kokkos::View<double**, Kokkos::LayoutRight, Kokkos::HostSpace> mask("scorekit::inpainting::mask", 1, d),
      obs("scorekit::inpainting::observation", 1, d);
  for (std::size_t i = 0; i < known.size(); ++i) {
    mask(0, known[i]) = 1;
    obs(0, known[i]) = y[Eigen::Index(i)];
  }
  using R = MaskReplacement<Real, MemorySpace>;
  return ReplacementIntegrator<Inner, R>(inner, R(mask, obs));
}

}  // namespace scorekit
