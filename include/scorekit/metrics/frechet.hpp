// The Frechet distance between two Gaussians, and the Gaussian fit of a set of feature vectors: the
// measure behind FID (Heusel et al. 2017), here for any features the user picks (FID is this distance
// in one particular Inception network's pool3 features; with other features it is not FID, and its
// values are not comparable with published FIDs).
//
//   d^2(N(mu_1, S_1), N(mu_2, S_2)) = |mu_1 - mu_2|^2 + tr S_1 + tr S_2 - 2 tr (S_1^1/2 S_2 S_1^1/2)^1/2,
//
// the squared 2-Wasserstein distance between the two Gaussians. The trace term is computed from the
// eigenvalues of the symmetric positive semi-definite S_1^1/2 S_2 S_1^1/2 (two symmetric
// eigendecompositions, Eigen's SelfAdjointEigenSolver), not from a general matrix square root of S_1 S_2
// as pytorch-fid does (scipy's sqrtm, whose result can pick up an imaginary part that is then dropped):
// the symmetric form is real by construction. Eigenvalues that rounding makes slightly negative are
// clamped to zero.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>

#include <Eigen/Dense>

#include <cmath>
#include <cstdint>
#include <string>

namespace scorekit {

/// The mean and the unbiased covariance (divided by n - 1) of n feature vectors.
struct GaussianFit {
  Eigen::VectorXd mean;
  Eigen::MatrixXd covariance;
  std::int64_t n = 0;
};

/// The Gaussian fit of the rows of a rank-2 view (n x k, any memory space and layout), accumulated in
/// double with the mean subtracted first. Throws invalid_argument for fewer than two rows, no columns,
/// or a NaN or infinite entry (naming its row).
template <class View>
GaussianFit gaussian_fit(const View& features) {
  static_assert(Kokkos::is_view<View>::value && int(View::rank) == 2,
                "scorekit::gaussian_fit: the features must be a rank-2 Kokkos::View (n x k)");
  const char* where = "scorekit::gaussian_fit";
  const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), features);
  const std::int64_t n = std::int64_t(h.extent(0)), k = std::int64_t(h.extent(1));
  if (n < 2 || k < 1)
    throw invalid_argument(scorekit::detail::concat(
        where, ": need at least two rows and one column of features, got ", n, " x ", k));
  Eigen::MatrixXd x(n, k);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < k; ++j) {
      const double v = double(h(i, j));
      if (!std::isfinite(v))
        throw invalid_argument(
            scorekit::detail::concat(where, ": row ", i, " holds a NaN or infinite value (column ", j, ")"));
      x(i, j) = v;
    }
  GaussianFit fit;
  fit.n = n;
  fit.mean = x.colwise().mean().transpose();
  x.rowwise() -= fit.mean.transpose();
  fit.covariance = (x.transpose() * x) / double(n - 1);
  return fit;
}

namespace detail {

/// The symmetric square root of a symmetric positive semi-definite matrix (negative eigenvalues from
/// rounding clamped to 0).
inline Eigen::MatrixXd symmetric_sqrt(const Eigen::MatrixXd& s) {
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(0.5 * (s + s.transpose()));
  if (eig.info() != Eigen::Success)
    throw error("scorekit::frechet_distance: the eigendecomposition of a covariance failed");
  const Eigen::VectorXd root = eig.eigenvalues().cwiseMax(0.0).cwiseSqrt();
  return eig.eigenvectors() * root.asDiagonal() * eig.eigenvectors().transpose();
}

}  // namespace detail

/// The squared Frechet (2-Wasserstein) distance between N(mu_1, S_1) and N(mu_2, S_2) (top of file).
/// Throws dimension_mismatch when the two differ in dimension.
inline double frechet_distance(const Eigen::VectorXd& mu1, const Eigen::MatrixXd& s1,
                               const Eigen::VectorXd& mu2, const Eigen::MatrixXd& s2) {
  const char* where = "scorekit::frechet_distance";
  const Eigen::Index k = mu1.size();
  if (s1.rows() != k || s1.cols() != k || mu2.size() != k || s2.rows() != k || s2.cols() != k)
    throw dimension_mismatch(scorekit::detail::concat(
        where, ": the means have ", mu1.size(), " and ", mu2.size(), " entries, the covariances are ",
        s1.rows(), " x ", s1.cols(), " and ", s2.rows(), " x ", s2.cols()));
  const Eigen::MatrixXd r1 = detail::symmetric_sqrt(s1);
  const Eigen::MatrixXd m = r1 * s2 * r1;
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(0.5 * (m + m.transpose()), Eigen::EigenvaluesOnly);
  if (eig.info() != Eigen::Success)
    throw error(scorekit::detail::concat(where, ": the eigendecomposition failed"));
  const double cross = eig.eigenvalues().cwiseMax(0.0).cwiseSqrt().sum();
  const double d = (mu1 - mu2).squaredNorm() + s1.trace() + s2.trace() - 2 * cross;
  return d > 0 ? d : 0.0;  // rounding can take an exact 0 slightly negative
}

/// The squared Frechet distance between two Gaussian fits.
inline double frechet_distance(const GaussianFit& a, const GaussianFit& b) {
  return frechet_distance(a.mean, a.covariance, b.mean, b.covariance);
}

}  // namespace scorekit
