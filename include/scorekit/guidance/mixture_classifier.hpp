// The exact noise-conditional classifier of a Gaussian mixture's component label: for
// X ~ sum_j w_j N(mu_j, Sigma_j) and its noised version X + sigma Z,
//   p_sigma(y = k | x) = w_k N(x; mu_k, Sigma_k + sigma^2 I) / sum_j w_j N(x; mu_j, Sigma_j + sigma^2 I),
//   grad_x log p_sigma(k | x) = s_k(x, sigma) - s(x, sigma),
// the perturbed score of component k minus that of the mixture. With ClassifierGuidedScore at w = 1 on
// PerturbedMixtureScore of the same mixture the guided score is exactly s_k, so reverse sampling draws
// component k: the ground truth for classifier guidance.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/guidance/mixture_algebra.hpp>
#include <scorekit/score/perturbed_mixture.hpp>

#include <algorithm>
#include <vector>

namespace scorekit {

/// p_sigma(y = k | x) for the components of a Gaussian mixture (perturbation included).
template <class Real = double, class MemorySpace = Kokkos::DefaultExecutionSpace::memory_space>
class MixtureComponentClassifier {
 public:
  using value_type = Real;
  using memory_space = MemorySpace;

  /// The classifier of component `component`; `sigmas`: noise levels to tabulate (as PerturbedMixtureScore).
  MixtureComponentClassifier(const GaussianMixture<Real, MemorySpace>& mixture, int component,
                             const std::vector<Real>& sigmas = {})
      : m_all(mixture, sigmas),
        m_one(component_of(mixture, component), sigmas),
        m_dim(mixture.dim()),
        m_component(component) {}

  KOKKOS_INLINE_FUNCTION int dim() const { return m_dim; }
  KOKKOS_INLINE_FUNCTION int component() const { return m_component; }
  KOKKOS_INLINE_FUNCTION int workspace_size() const {
    const int a = m_all.workspace_size(), b = m_one.workspace_size();
    return m_dim + (a > b ? a : b);
  }

  /// grad_x log p_sigma(k | x) = s_k(x, sigma) - s(x, sigma).
  KOKKOS_INLINE_FUNCTION void grad_log_likelihood(const Real* x, Real sigma, Real* out, Real* work) const {
    m_one.score(x, sigma, out, work + m_dim);
    m_all.score(x, sigma, work, work + m_dim);
    for (int j = 0; j < m_dim; ++j) out[j] -= work[j];
  }
  /// log p_sigma(k | x).
  KOKKOS_INLINE_FUNCTION Real log_likelihood(const Real* x, Real sigma, Real* work) const {
    return m_log_weight + m_one.log_prob(x, sigma, work) - m_all.log_prob(x, sigma, work);
  }

 private:
  static GaussianMixture<Real, MemorySpace> component_of(const GaussianMixture<Real, MemorySpace>& mixture,
                                                         int k) {
    const char* where = "scorekit::MixtureComponentClassifier";
    if (k < 0 || k >= mixture.n_components())
      throw invalid_argument(detail::concat(where, ": component ", k, " is out of range for a mixture of ",
                                            mixture.n_components(), " components"));
    const MixtureParameters p = mixture_parameters(mixture);
    MixtureParameters one;
    one.kind = p.kind;
    one.weights = Eigen::VectorXd::Ones(1);
    one.means = p.means.row(k);
    one.covariances.push_back(p.covariances[std::size_t(k)]);
    return make_mixture<Real, MemorySpace>(one);
  }
  static Real log_weight_of(const GaussianMixture<Real, MemorySpace>& mixture, int k) {
    auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), mixture.log_weights());
    return h(k);
  }

  PerturbedMixtureScore<Real, MemorySpace> m_all;
  PerturbedMixtureScore<Real, MemorySpace> m_one;
  int m_dim;
  int m_component;
  Real m_log_weight = log_weight_of(m_all.mixture(), m_component);
};

}  // namespace scorekit
