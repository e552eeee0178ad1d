// Score models backed by a network of nn/ and a parameter view (e.g. a Trainer's EMA weights):
//   NeuralScore            s(x) = y(x): a Density-like model (score, jvp) for divergence/ and ULA;
//   NoiseConditionalScore  s(x, sigma) = y(x, level(sigma)): the NCSN network with an embedding per level,
//                          for annealed Langevin; sigma must be one of the training levels (the nearest in
//                          log sigma is used);
//   SigmaScaledScore       s(x, sigma) = y(x) / sigma: NCSNv2's form, any sigma.
// Each evaluates one sample with the network's single-sample pass and offers score_block(), which runs
// a full block of max_block samples through the blocked kernels (weights read once per block).
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/nn/sequential.hpp>

#include <cmath>
#include <vector>

namespace scorekit {

namespace detail {

template <class Net, class Real, int B>
KOKKOS_INLINE_FUNCTION void network_block(const Real* params, const int* level, int nb, const Real* x,
                                          int x_stride, Real scale, Real* out, int out_stride, Real* tape) {
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < Net::in; ++i) tape[i * B + b] = x[(b < nb ? b : nb - 1) * x_stride + i];
  Net::template forward<B, 0>(params, level, tape);
  const Real* y = Net::template output<B, 0>(tape);
  for (int b = 0; b < nb; ++b)
    for (int i = 0; i < Net::out; ++i) out[b * out_stride + i] = scale * y[i * B + b];
}

/// Samples score_block() runs through the network at once (one 512-bit vector of float per row).
constexpr int score_block_samples = 16;

}  // namespace detail

/// s(x) = y(x) for an unconditional network mapping R^d to R^d (level 0 is passed to its layers).
template <class Net, class Real, class MemorySpace = Kokkos::DefaultExecutionSpace::memory_space>
class NeuralScore {
  static_assert(Net::in == Net::out, "NeuralScore: the network must map R^d to R^d");

 public:
  using value_type = Real;
  using network = Net;

  explicit NeuralScore(Kokkos::View<const Real*, MemorySpace> params) : m_params(params) {
    require_dimension(std::int64_t(params.extent(0)), Net::n_params, "the parameter view", "NeuralScore");
  }

  KOKKOS_INLINE_FUNCTION int dim() const { return Net::in; }
  /// One sample with one tangent.
  KOKKOS_INLINE_FUNCTION int workspace_size() const { return Net::template tape_size<1, 1>; }

  KOKKOS_INLINE_FUNCTION void score(const Real* x, Real* out, Real* work) const {
    const int level[1] = {0};
    detail::network_block<Net, Real, 1>(m_params.data(), level, 1, x, 0, Real(1), out, 0, work);
  }

  /// s = s(x) and jv = (ds/dx) v in one forward-mode pass.
  KOKKOS_INLINE_FUNCTION void jvp(const Real* x, const Real* v, Real* s, Real* jv, Real* work) const {
    const int level[1] = {0};
    for (int i = 0; i < Net::in; ++i) {
      work[2 * i] = x[i];
      work[2 * i + 1] = v[i];
    }
    Net::template forward<1, 1>(m_params.data(), level, work);
    const Real* y = Net::template output<1, 1>(work);
    for (int i = 0; i < Net::out; ++i) {
      s[i] = y[2 * i];
      jv[i] = y[2 * i + 1];
    }
  }

  const Kokkos::View<const Real*, MemorySpace>& parameters() const { return m_params; }

 private:
  Kokkos::View<const Real*, MemorySpace> m_params;
};

/// Shared by the two noise-conditional forms: parameters, blocking and workspace.
template <class Net, class Real, class MemorySpace, class Derived>
class NetworkScoreBase {
  static_assert(Net::in == Net::out, "a score network must map R^d to R^d");

 public:
  using value_type = Real;
  using network = Net;
  static constexpr int max_block = detail::score_block_samples;

  explicit NetworkScoreBase(Kokkos::View<const Real*, MemorySpace> params, const char* who)
      : m_params(params) {
    require_dimension(std::int64_t(params.extent(0)), Net::n_params, "the parameter view", who);
  }

  KOKKOS_INLINE_FUNCTION int dim() const { return Net::in; }
  /// Per sample: the single-sample tape; a full block uses the workspace of all its samples, which
  /// covers its tape (rows * B values).
  KOKKOS_INLINE_FUNCTION int workspace_size() const { return Net::template tape_size<1, 0>; }
  /// A CPU evaluates max_block samples per work item (weights read once per block); a GPU one per thread.
  KOKKOS_INLINE_FUNCTION int block_size() const { return runs_on_host_v<MemorySpace> ? max_block : 1; }

  KOKKOS_INLINE_FUNCTION void score(const Real* x, Real sigma, Real* out, Real* work) const {
    int level[1];
    Real scale;
    self().level_and_scale(sigma, level[0], scale);
    detail::network_block<Net, Real, 1>(m_params.data(), level, 1, x, 0, scale, out, 0, work);
  }

  /// nb <= max_block samples at one sigma; work holds nb * work_stride values.
  KOKKOS_INLINE_FUNCTION void score_block(int nb, const Real* x, int x_stride, Real sigma, Real* out,
                                          int out_stride, Real* work, int work_stride) const {
    int level[max_block];
    Real scale;
    self().level_and_scale(sigma, level[0], scale);
    if (nb == max_block) {
      for (int b = 1; b < max_block; ++b) level[b] = level[0];
      detail::network_block<Net, Real, max_block>(m_params.data(), level, nb, x, x_stride, scale, out,
                                                  out_stride, work);
    } else {
      for (int b = 0; b < nb; ++b)
        detail::network_block<Net, Real, 1>(m_params.data(), level, 1, x + b * x_stride, 0, scale,
                                            out + b * out_stride, 0, work + b * work_stride);
    }
  }

  const Kokkos::View<const Real*, MemorySpace>& parameters() const { return m_params; }

 private:
  KOKKOS_INLINE_FUNCTION const Derived& self() const { return static_cast<const Derived&>(*this); }
  Kokkos::View<const Real*, MemorySpace> m_params;
};

/// The NCSN network: level(sigma) is the index of the training level nearest to sigma in log sigma.
template <class Net, class Real, class MemorySpace = Kokkos::DefaultExecutionSpace::memory_space>
class NoiseConditionalScore
    : public NetworkScoreBase<Net, Real, MemorySpace, NoiseConditionalScore<Net, Real, MemorySpace>> {
  using base = NetworkScoreBase<Net, Real, MemorySpace, NoiseConditionalScore<Net, Real, MemorySpace>>;

 public:
  /// sigmas: the training levels, in the order of the network's embedding rows.
  NoiseConditionalScore(Kokkos::View<const Real*, MemorySpace> params, const std::vector<double>& sigmas)
      : base(params, "NoiseConditionalScore"), m_n(int(sigmas.size())) {
    if (sigmas.empty()) throw invalid_argument("NoiseConditionalScore: no noise levels");
    m_log_sigmas =
        Kokkos::View<Real*, MemorySpace>("scorekit::NoiseConditionalScore::log_sigmas", sigmas.size());
    auto h = Kokkos::create_mirror_view(m_log_sigmas);
    for (std::size_t i = 0; i < sigmas.size(); ++i) {
      require_positive(sigmas[i], "each noise level", "NoiseConditionalScore");
      h(i) = Real(std::log(sigmas[i]));
    }
    Kokkos::deep_copy(m_log_sigmas, h);
  }

  KOKKOS_INLINE_FUNCTION void level_and_scale(Real sigma, int& level, Real& scale) const {
    const Real ls = math::log(sigma);
    level = 0;
    Real best = math::fabs(m_log_sigmas(0) - ls);
    for (int l = 1; l < m_n; ++l) {
      const Real d = math::fabs(m_log_sigmas(l) - ls);
      if (d < best) {
        best = d;
        level = l;
      }
    }
    scale = Real(1);
  }

 private:
  Kokkos::View<Real*, MemorySpace> m_log_sigmas;
  int m_n;
};

/// NCSNv2: s(x, sigma) = y(x) / sigma.
template <class Net, class Real, class MemorySpace = Kokkos::DefaultExecutionSpace::memory_space>
class SigmaScaledScore
    : public NetworkScoreBase<Net, Real, MemorySpace, SigmaScaledScore<Net, Real, MemorySpace>> {
  using base = NetworkScoreBase<Net, Real, MemorySpace, SigmaScaledScore<Net, Real, MemorySpace>>;

 public:
  explicit SigmaScaledScore(Kokkos::View<const Real*, MemorySpace> params)
      : base(params, "SigmaScaledScore") {}

  KOKKOS_INLINE_FUNCTION void level_and_scale(Real sigma, int& level, Real& scale) const {
    level = 0;
    scale = Real(1) / sigma;
  }
};

}  // namespace scorekit
