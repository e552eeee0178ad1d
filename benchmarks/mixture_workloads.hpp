// What the sampling benchmarks share with their PyTorch peers (torch_annealed_langevin.py,
// torch_reverse_sde.py): a pseudo-random stream simple enough to write identically in Python, and the
// 64-D mixture's parameters drawn from it; the mixtures as host-side parameters that each backend builds in
// its own memory space (build_mixture<Real, Mem>).
//
// Draw n of a stream is a splitmix64 finaliser of seed + (n + 1) * golden ratio (Steele, Lea and Flood,
// "Fast splittable pseudorandom number generators", OOPSLA 2014); a uniform takes one draw, a normal two
// (Box-Muller, cosine branch only).
#pragma once

#include <scorekit/density/gaussian_mixture.hpp>

#include <Eigen/Dense>

#include <cmath>
#include <cstdint>
#include <vector>

namespace scorekit_bench {

/// The seed of the 64-D mixture's parameters.
constexpr std::uint64_t w2_seed = 20240917;

inline std::uint64_t splitmix64(std::uint64_t seed, std::uint64_t n) {
  std::uint64_t z = seed + (n + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

constexpr double two_pi = 6.283185307179586;  // the double nearest 2 pi, as Python's 2 * math.pi

struct FormulaStream {
  std::uint64_t seed = w2_seed;
  std::uint64_t n = 0;
  double uniform() { return (double(splitmix64(seed, n++) >> 11) + 0.5) * 0x1p-53; }
  double normal() {
    const double u1 = uniform(), u2 = uniform();
    return std::sqrt(-2 * std::log(u1)) * std::cos(two_pi * u2);
  }
};

struct MixtureParameters {
  Eigen::VectorXd weights;
  Eigen::MatrixXd means;
  std::vector<Eigen::MatrixXd> covariances;
  double checksum = 0;
};

/// K weights 0.5 + U(0,1); K x d means 3 N(0,1) (row by row); then per component a d x d matrix A of
/// N(0,1) entries (row-major) and Sigma_k = A A^T / d + 0.5 I. The checksum is
/// sum_i v_i ((i mod 7) + 1) over [weights, means row-major, each Sigma_k row-major].
inline MixtureParameters w2_parameters(int k, int d) {
  MixtureParameters p;
  FormulaStream rng;
  p.weights.resize(k);
  for (int c = 0; c < k; ++c) p.weights[c] = 0.5 + rng.uniform();
  p.means.resize(k, d);
  for (int c = 0; c < k; ++c)
    for (int j = 0; j < d; ++j) p.means(c, j) = 3 * rng.normal();
  for (int c = 0; c < k; ++c) {
    Eigen::MatrixXd a(d, d);
    for (int i = 0; i < d; ++i)
      for (int j = 0; j < d; ++j) a(i, j) = rng.normal();
    Eigen::MatrixXd sigma = a * a.transpose() / double(d);
    sigma.diagonal().array() += 0.5;
    p.covariances.push_back(sigma);
  }
  std::uint64_t i = 0;
  auto add = [&](double v) { p.checksum += v * double(i++ % 7 + 1); };
  for (int c = 0; c < k; ++c) add(p.weights[c]);
  for (int c = 0; c < k; ++c)
    for (int j = 0; j < d; ++j) add(p.means(c, j));
  for (const auto& s : p.covariances)
    for (int r = 0; r < d; ++r)
      for (int j = 0; j < d; ++j) add(s(r, j));
  return p;
}

/// A Gaussian mixture's parameters, kept on the host: every benchmarked backend builds its own
/// GaussianMixture from them in its memory space (HostSpace, CudaSpace, ...).
struct MixtureSpec {
  Eigen::VectorXd weights;
  Eigen::MatrixXd means;
  Eigen::VectorXd variances;                 ///< isotropic components (used when covariances is empty)
  std::vector<Eigen::MatrixXd> covariances;  ///< full components
};

/// The mixture in memory space Mem (set-up on the host; not timed by the benchmarks).
template <class Real, class Mem>
scorekit::GaussianMixture<Real, Mem> build_mixture(const MixtureSpec& s) {
  using Mixture = scorekit::GaussianMixture<Real, Mem>;
  return s.covariances.empty() ? Mixture::isotropic(s.weights, s.means, s.variances)
                               : Mixture::full(s.weights, s.means, s.covariances);
}

/// The 2-D mixture: weights 0.2 / 0.8, means (0,0) and (10,10), identity covariances.
inline MixtureSpec mixture_2d_spec() {
  MixtureSpec s;
  s.weights.resize(2);
  s.weights << 0.2, 0.8;
  s.means.resize(2, 2);
  s.means << 0, 0, 10, 10;
  s.variances = Eigen::VectorXd::Ones(2);
  return s;
}

/// The 64-D mixture of 16 full-covariance components of w2_parameters(); *checksum gets its checksum.
inline MixtureSpec mixture_64d_spec(double* checksum) {
  const MixtureParameters p = w2_parameters(16, 64);
  *checksum = p.checksum;
  MixtureSpec s;
  s.weights = p.weights;
  s.means = p.means;
  s.covariances = p.covariances;
  return s;
}

}  // namespace scorekit_bench
