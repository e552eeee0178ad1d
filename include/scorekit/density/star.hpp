// The star: a two-dimensional isotropic Gaussian mixture whose means trace the five-petalled rose
//   r(theta) = 1 + sin(5 theta),   mu_k = r(theta_k) (cos theta_k, sin theta_k),   theta_k = 2 pi k / c,
// k = 0, ..., c - 1 (c = 250 by default). Every component has covariance scale * I: `scale` is the
// VARIANCE (default 0.01, standard deviation 0.1). That choice makes neighbouring components overlap
// (the curve is about 21.9 long, so 250 means lie about 0.087 apart, less than one standard deviation)
// and the density is a continuous star rather than 250 separate dots; pass a smaller scale for dots.
//
// The weights are random, drawn from a seed the caller gives: Dirichlet(1, ..., 1) (uniform on the
// simplex), made as normalised Exp(1) variates E_k = -log U_k with U_k the first uniform of
// CounterRng<double>(seed, k, 0, RngStream::init). The same seed gives the same weights on every
// machine and backend.
//
// The star is built AS a GaussianMixture, so it shares the mixture's evaluation (normalised
// log-density, streaming log-sum-exp, closed-form Laplacian, exact draws and perturbations).
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/density/gaussian_mixture.hpp>

#include <cmath>
#include <cstdint>

namespace scorekit {

/// The star mixture described above (dimension 2). components >= 1; scale > 0 is each component's
/// variance.
template <class Real = double, class MemorySpace = Kokkos::DefaultExecutionSpace::memory_space>
GaussianMixture<Real, MemorySpace> star_mixture(std::uint64_t seed, int components = 250,
                                                double scale = 0.01) {
  const char* where = "star_mixture";
  if (components < 1)
    throw invalid_argument(
        detail::concat(where, ": the number of components must be at least 1, got ", components));
  require_positive(scale, "scale (the variance of each component)", where);
  const double two_pi = 2 * 3.14159265358979323846;
  Eigen::VectorXd weights(components);
  Eigen::MatrixXd means(components, 2);
  for (int k = 0; k < components; ++k) {
    CounterRng<double> rng(seed, std::uint64_t(k), 0, RngStream::init);
    weights[k] = -std::log(rng.uniform());  // Exp(1); U < 1, so E > 0
    const double theta = two_pi * k / components;
    const double r = 1 + std::sin(5 * theta);
    means(k, 0) = r * std::cos(theta);
    means(k, 1) = r * std::sin(theta);
  }
  return GaussianMixture<Real, MemorySpace>::isotropic(weights, means,
                                                       Eigen::VectorXd::Constant(components, scale));
}

}  // namespace scorekit
