// Denoising score matching (Vincent 2011) over a ladder of noise levels (Song and Ermon 2019). Per sample:
// a level i uniform on 0 .. L-1, z ~ N(0, I), x~ = x + sigma_i z, and the loss
//   lambda(sigma_i) / 2 * || s_theta(x~, sigma_i) + z / sigma_i ||^2,
// whose minimiser is the score of the data perturbed by N(0, sigma_i^2 I). With one level and
// lambda = 1 it is plain DSM. The weighting lambda and the way the network's output y becomes a score
// are policies:
//   lambda: SigmaSquared (NCSN: every level's loss has the same scale), InverseSigmaSquared, Unweighted;
//   score:  LevelConditioned (s = y(x, level), the noise-conditional net of NCSN: the level index is fed
//           to its conditional layers) or DividedBySigma (NCSNv2: s = y(x) / sigma, an unconditional net).
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/objective/objective_common.hpp>

#include <string>
#include <vector>

namespace scorekit {
namespace objective {

struct SigmaSquared {
  static constexpr const char* name = "sigma^2";
  template <class Real>
  KOKKOS_INLINE_FUNCTION static Real weight(Real sigma) {
    return sigma * sigma;
  }
};
struct InverseSigmaSquared {
  static constexpr const char* name = "1/sigma^2";
  template <class Real>
  KOKKOS_INLINE_FUNCTION static Real weight(Real sigma) {
    return Real(1) / (sigma * sigma);
  }
};
struct Unweighted {
  static constexpr const char* name = "1";
  template <class Real>
  KOKKOS_INLINE_FUNCTION static Real weight(Real) {
    return Real(1);
  }
};

/// s = y(x, level): the level index reaches the network's conditional layers.
struct LevelConditioned {
  static constexpr const char* name = "level-conditioned";
  template <class Real>
  KOKKOS_INLINE_FUNCTION static Real output_scale(Real) {
    return Real(1);
  }
};
/// s = y(x) / sigma (NCSNv2's parametrisation of an unconditional network).
struct DividedBySigma {
  static constexpr const char* name = "divided-by-sigma";
  template <class Real>
  KOKKOS_INLINE_FUNCTION static Real output_scale(Real sigma) {
    return Real(1) / sigma;
  }
};

template <class Real, class MemorySpace, class Weighting = SigmaSquared,
          class Parametrisation = LevelConditioned>
class DenoisingScoreMatching {
 public:
  using value_type = Real;

  /// sigmas: the noise levels (any order, each finite and > 0).
  explicit DenoisingScoreMatching(const std::vector<double>& sigmas) : m_n(int(sigmas.size())) {
    if (sigmas.empty()) throw invalid_argument("DenoisingScoreMatching: the noise ladder is empty");
    m_sigmas = Kokkos::View<Real*, MemorySpace>("scorekit::DenoisingScoreMatching::sigmas", sigmas.size());
    auto h = Kokkos::create_mirror_view(m_sigmas);
    for (std::size_t i = 0; i < sigmas.size(); ++i) {
      if (!(sigmas[i] > 0) || !(sigmas[i] < 1e300))
        throw invalid_argument(scorekit::detail::concat("DenoisingScoreMatching: sigma[", i,
                                                        "] = ", sigmas[i],
                                                        "; every noise level must be finite and > 0"));
      h(i) = Real(sigmas[i]);
    }
    Kokkos::deep_copy(m_sigmas, h);
  }

  std::string name() const {
    return m_n == 1 ? std::string("DSM")
                    : "NCSN denoising (" + std::to_string(m_n) + " levels, lambda = " + Weighting::name +
                          ", " + Parametrisation::name + ")";
  }
  KOKKOS_INLINE_FUNCTION int extra_workspace_size() const { return 0; }
  KOKKOS_INLINE_FUNCTION int n_levels() const { return m_n; }
  const Kokkos::View<Real*, MemorySpace>& sigmas() const { return m_sigmas; }

  template <class Net, int B>
  KOKKOS_INLINE_FUNCTION static constexpr int workspace_size() {
    return detail::DualBlockLayout<Net, B, 0>::size + B * Net::in;  // + the noise z
  }

  template <class Net, int B>
  KOKKOS_INLINE_FUNCTION void accumulate(const Real* params, int nb, const Real* x, const SampleKey& key,
                                         Real* grad, Real* stats, Real* work) const {
    using layout = detail::DualBlockLayout<Net, B, 0>;
    constexpr int D = Net::in, W = layout::W;
    static_assert(Net::out == D, "DenoisingScoreMatching: the network must map R^d to R^d");
    Real* tape = work + layout::tape;
    Real* seed = work + layout::seed;
    Real* z = work + layout::size;
    int level[B];
    detail::load_rows<D, B, 0>(nb, x, tape);
    for (int b = 0; b < B; ++b) {
      auto rng = sample_rng<Real>(key, b, TrainingStream::perturbation);
      const int l = int(rng.uniform() * Real(m_n));
      level[b] = l < m_n ? l : m_n - 1;
      const Real sigma = m_sigmas(level[b]);
      for (int i = 0; i < D; ++i) {
        z[b * D + i] = rng.normal();
        tape[i * W + b] += sigma * z[b * D + i];
      }
    }
    Net::template forward<B, 0>(params, level, tape);
    const Real* y = Net::template output<B, 0>(tape);
    for (int b = 0; b < B; ++b) {
      const Real sigma = m_sigmas(level[b]);
      const Real scale = Parametrisation::output_scale(sigma), lambda = Weighting::weight(sigma);
      Real loss = Real(0);
      for (int i = 0; i < D; ++i) {
        const Real r = scale * y[i * W + b] + z[b * D + i] / sigma;  // s + z / sigma
        loss += r * r;
        seed[i * W + b] = b < nb ? lambda * r * scale : Real(0);
      }
      if (b < nb) {
        stats[2 * level[b]] += Real(0.5) * lambda * loss;
        stats[2 * level[b] + 1] += Real(1);
      }
    }
    Net::template backward<B, 0>(params, level, tape, seed, grad, nullptr, work + layout::scratch);
  }

 private:
  Kokkos::View<Real*, MemorySpace> m_sigmas;
  int m_n;
};

}  // namespace objective
}  // namespace scorekit
