// Mode weights: the fraction of samples nearest (Euclidean) to each of K given modes, the standard check
// that a sampler of a multimodal law puts the right mass in each mode (mode collapse and the wrong
// relative weights of Langevin dynamics without annealing show up here; Song and Ermon, "Generative
// modeling by estimating gradients of the data distribution", NeurIPS 2019, section 3.2).
//
// Counting is exact integer arithmetic (one atomic increment per sample), so results are identical on
// every backend and thread count. Ties go to the lowest mode index.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/particle_checks.hpp>

#include <Eigen/Dense>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace scorekit {

/// Samples per mode. weights[k] = counts[k] / n_total; samples farther than the radius from every mode
/// are counted in n_outside only, so the weights sum to 1 - n_outside / n_total.
struct ModeWeights {
  std::vector<double> weights;
  std::vector<std::int64_t> counts;
  std::int64_t n_outside = 0;
  std::int64_t n_total = 0;
};

/// The binomial standard error sqrt(p (1 - p) / n) of a fraction p estimated from n independent samples.
inline double binomial_standard_error(double p, std::int64_t n) {
  if (!(p >= 0 && p <= 1))
    throw invalid_argument(detail::concat("scorekit::binomial_standard_error: p must be in [0, 1], got ", p));
  if (n < 1)
    throw invalid_argument(detail::concat("scorekit::binomial_standard_error: n must be positive, got ", n));
  return std::sqrt(p * (1 - p) / double(n));
}

/// Assigns each of the N particles in x (N x d) to its nearest mode among the rows of `means` (K x d)
/// and returns the counts and fractions. A sample whose distance to the nearest mode exceeds `radius`
/// (default: infinity, every sample is assigned) is counted as outside instead.
template <class ExecSpace, class View>
ModeWeights mode_weights(const ExecSpace& exec, const View& x, const Eigen::MatrixXd& means,
                         double radius = std::numeric_limits<double>::infinity()) {
  detail::check_particle_view<ExecSpace, View>();
  const char* where = "scorekit::mode_weights";
  const std::int64_t n = std::int64_t(x.extent(0));
  const int d = int(x.extent(1));
  const int n_modes = int(means.rows());
  if (n < 1) throw invalid_argument(detail::concat(where, ": needs at least one particle"));
  if (n_modes < 1) throw invalid_argument(detail::concat(where, ": needs at least one mode"));
  require_dimension(means.cols(), d, "the modes (columns of means)", where);
  if (!means.allFinite()) throw invalid_argument(detail::concat(where, ": the modes contain NaN or inf"));
  if (!(radius > 0))
    throw invalid_argument(detail::concat(where, ": the radius must be positive, got ", radius));

  using memory_space = typename ExecSpace::memory_space;
  Kokkos::View<double**, Kokkos::LayoutRight, memory_space> mu("scorekit::mode_weights_means", n_modes, d);
  {
    auto h = Kokkos::create_mirror_view(mu);
    for (int k = 0; k < n_modes; ++k)
      for (int j = 0; j < d; ++j) h(k, j) = means(k, j);
    Kokkos::deep_copy(exec, mu, h);
  }
  // counts(0..K-1): per mode; counts(K): outside; counts(K+1): non-finite samples.
  Kokkos::View<std::int64_t*, memory_space> counts("scorekit::mode_weights_counts", n_modes + 2);
  const double radius2 = radius * radius;  // inf stays inf
  Kokkos::parallel_for(
      "scorekit::mode_weights", Kokkos::RangePolicy<ExecSpace>(exec, 0, n),
      KOKKOS_LAMBDA(const std::int64_t i) {
        int best = 0;
        double best_r2 = 0;
        bool finite = true;
        for (int k = 0; k < n_modes; ++k) {
          double r2 = 0;
          for (int j = 0; j < d; ++j) {
            const double t = double(x(i, j)) - mu(k, j);
            r2 += t * t;
          }
          finite = finite && math::isfinite(r2);
          if (k == 0 || r2 < best_r2) {
            best = k;
            best_r2 = r2;
          }
        }
        const int slot = !finite ? n_modes + 1 : (best_r2 > radius2 ? n_modes : best);
        Kokkos::atomic_add(&counts(slot), std::int64_t(1));
      });
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), counts);
  if (h(n_modes + 1) > 0)
    throw invalid_argument(
        detail::concat(where, ": ", h(n_modes + 1), " particles have NaN or infinite coordinates"));
  ModeWeights out;
  out.n_total = n;
  out.n_outside = h(n_modes);
  for (int k = 0; k < n_modes; ++k) {
    out.counts.push_back(h(k));
    out.weights.push_back(double(h(k)) / double(n));
  }
  return out;
}

}  // namespace scorekit
