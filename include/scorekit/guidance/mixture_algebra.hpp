// Host-side algebra on Gaussian mixtures, the closed forms every exact guidance result is built from:
// the parameters of a GaussianMixture (its perturbation folded in) as Eigen objects, a mixture built back
// from them, and the law of a linear map of a mixture,
//   T X ~ sum_k w_k N(T mu_k, T Sigma_k T^T)        (T of full row rank, so each image is non-degenerate).
// Conditioning on coordinates (guidance/inpainting.hpp) and on a noisy linear observation
// (guidance/inverse_problem.hpp) are written on top of these.
//
// Reading the covariances back. GaussianMixture stores each component as Q_k diag(lambda_k) Q_k^T and
// exposes Q_k (eigenvectors()); the perturbed component a^2 Sigma_k + sigma^2 I is
// Q_k diag(a^2 lambda_k + sigma^2) Q_k^T, the form its sampler and density use.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/density/gaussian_mixture.hpp>

#include <Eigen/Cholesky>
#include <Eigen/Dense>

#include <cmath>
#include <vector>

namespace scorekit {

/// A Gaussian mixture as host parameters in double: sum_k weights[k] N(means.row(k), covariances[k]).
/// `kind` records the structure the covariances have (isotropic and diagonal ones are diagonal
/// matrices), so that a mixture built back keeps the cheap evaluation.
struct MixtureParameters {
  Eigen::VectorXd weights;                   ///< K, normalised
  Eigen::MatrixXd means;                     ///< K x d
  std::vector<Eigen::MatrixXd> covariances;  ///< K matrices d x d, symmetric positive definite
  CovarianceKind kind = CovarianceKind::full;

  int dim() const { return int(means.cols()); }
  int n_components() const { return int(means.rows()); }
};

namespace detail {

inline Eigen::MatrixXd symmetrised(const Eigen::MatrixXd& m) { return 0.5 * (m + m.transpose()); }

/// Checks parameters before a mixture is built from them.
inline void check_parameters(const MixtureParameters& p, const char* where) {
  const Eigen::Index k = p.means.rows(), d = p.means.cols();
  if (k == 0 || d == 0)
    throw invalid_argument(
        detail::concat(where, ": the mixture needs at least one component of dimension >= 1"));
  require_dimension(p.weights.size(), k, "the weights (one per component)", where);
  require_dimension(Eigen::Index(p.covariances.size()), k, "the covariances (one per component)", where);
  for (Eigen::Index c = 0; c < k; ++c) {
    require_dimension(p.covariances[std::size_t(c)].rows(), d, "a covariance (rows)", where);
    require_dimension(p.covariances[std::size_t(c)].cols(), d, "a covariance (columns)", where);
  }
}

}  // namespace detail

/// The parameters of the law `mixture` describes, perturbation included: component k is
/// N(a mu_k, a^2 Sigma_k + sigma^2 I) for mixture.perturbed(a, sigma).
template <class Real, class MemorySpace>
MixtureParameters mixture_parameters(const GaussianMixture<Real, MemorySpace>& mixture) {
  const char* where = "scorekit::mixture_parameters";
  const int n_k = mixture.n_components(), d = mixture.dim();
  if (n_k < 1 || d < 1) throw invalid_argument(detail::concat(where, ": the mixture is empty"));
  const double a = double(mixture.scale()), sigma = double(mixture.noise());
  auto h_mean = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), mixture.means());
  auto h_logw = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), mixture.log_weights());
  auto h_lambda = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), mixture.eigenvalues());

  MixtureParameters p;
  p.kind = mixture.covariance_kind();
  p.weights.resize(n_k);
  p.means.resize(n_k, d);
  for (int k = 0; k < n_k; ++k) {
    p.weights[k] = std::exp(double(h_logw(k)));
    for (int j = 0; j < d; ++j) p.means(k, j) = double(Real(mixture.scale() * h_mean(k, j)));
  }
  p.weights /= p.weights.sum();

  if (p.kind != CovarianceKind::full) {
    for (int k = 0; k < n_k; ++k) {
      Eigen::VectorXd v(d);
      for (int j = 0; j < d; ++j) v[j] = a * a * double(h_lambda(k, j)) + sigma * sigma;
      p.covariances.push_back(v.asDiagonal());
    }
    return p;
  }

  // Full covariances from the eigendecomposition: row (k, i, .) of eigenvectors() is the unit
  // eigenvector with eigenvalue lambda(k, i).
  auto h_q = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), mixture.eigenvectors());
  for (int k = 0; k < n_k; ++k) {
    Eigen::MatrixXd q(d, d);  // columns: eigenvectors
    Eigen::VectorXd v(d);
    for (int i = 0; i < d; ++i) {
      v[i] = a * a * double(h_lambda(k, i)) + sigma * sigma;
      for (int j = 0; j < d; ++j) q(j, i) = double(h_q(k, i, j));
    }
    p.covariances.push_back(detail::symmetrised(q * v.asDiagonal() * q.transpose()));
  }
  return p;
}

/// A GaussianMixture with these parameters (isotropic or diagonal when `kind` says so: then only the
/// diagonals of the covariances are read).
template <class Real = double, class MemorySpace = Kokkos::DefaultExecutionSpace::memory_space>
GaussianMixture<Real, MemorySpace> make_mixture(const MixtureParameters& p) {
  detail::check_parameters(p, "scorekit::make_mixture");
  const int n_k = p.n_components(), d = p.dim();
  using Mixture = GaussianMixture<Real, MemorySpace>;
  if (p.kind == CovarianceKind::isotropic) {
    Eigen::VectorXd v(n_k);
    for (int k = 0; k < n_k; ++k) v[k] = p.covariances[std::size_t(k)](0, 0);
    return Mixture::isotropic(p.weights, p.means, v);
  }
  if (p.kind == CovarianceKind::diagonal) {
    Eigen::MatrixXd v(n_k, d);
    for (int k = 0; k < n_k; ++k) v.row(k) = p.covariances[std::size_t(k)].diagonal().transpose();
    return Mixture::diagonal(p.weights, p.means, v);
  }
  std::vector<Eigen::MatrixXd> c;
  for (const auto& m : p.covariances) c.push_back(detail::symmetrised(m));
  return Mixture::full(p.weights, p.means, c);
}

/// The law of T X + shift for X ~ p: components N(T mu_k + shift, T Sigma_k T^T). T is m x d with
/// m <= d and full row rank (else an image covariance is singular, refused). The result has full
/// covariances.
inline MixtureParameters linear_transform(const MixtureParameters& p, const Eigen::MatrixXd& t,
                                          const Eigen::VectorXd& shift = Eigen::VectorXd()) {
  const char* where = "scorekit::linear_transform";
  detail::check_parameters(p, where);
  require_dimension(t.cols(), p.dim(), "the map T (columns)", where);
  if (t.rows() < 1) throw invalid_argument(detail::concat(where, ": the map T has no rows"));
  if (!t.allFinite()) throw invalid_argument(detail::concat(where, ": the map T has NaN or inf"));
  if (shift.size() != 0) {
    require_dimension(shift.size(), t.rows(), "the shift", where);
    if (!shift.allFinite()) throw invalid_argument(detail::concat(where, ": the shift has NaN or inf"));
  }
  MixtureParameters out;
  out.kind = CovarianceKind::full;
  out.weights = p.weights;
  out.means = p.means * t.transpose();
  if (shift.size() != 0) out.means.rowwise() += shift.transpose();
  for (int k = 0; k < p.n_components(); ++k) {
    Eigen::MatrixXd c = detail::symmetrised(t * p.covariances[std::size_t(k)] * t.transpose());
    if (Eigen::LLT<Eigen::MatrixXd>(c).info() != Eigen::Success)
      throw invalid_argument(detail::concat(where, ": the image of component ", k,
                                            " is degenerate (T must have full row rank)"));
    out.covariances.push_back(c);
  }
  return out;
}

/// The law of T X + shift as a GaussianMixture (see the MixtureParameters overload).
template <class Real, class MemorySpace>
GaussianMixture<Real, MemorySpace> linear_transform(const GaussianMixture<Real, MemorySpace>& mixture,
                                                    const Eigen::MatrixXd& t,
                                                    const Eigen::VectorXd& shift = Eigen::VectorXd()) {
  return make_mixture<Real, MemorySpace>(linear_transform(mixture_parameters(mixture), t, shift));
}

}  // namespace scorekit
