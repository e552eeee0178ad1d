// What every score-matching objective shares: the Objective concept, the key that makes its noise and
// probes reproducible, and the loading of a block of data rows into a network's dual block.
//
// An Objective is a copyable value type with
//   std::string name() const;
//   int n_levels() const;                               // loss statistics are kept per level (1: one)
//   template <class Net, int B> static constexpr int workspace_size();   // values, per block
//   template <class Net, int B, class Real>
//   KOKKOS_INLINE_FUNCTION void accumulate(const Real* params, int nb, const Real* x, const SampleKey& key,
//                                          Real* grad, Real* stats, Real* work) const;
// accumulate() takes nb <= B data rows x[b * Net::in + i], adds the gradient of the SUM of their
// per-sample losses into grad[0 .. Net::n_params) and, for each sample, its loss to stats[2 l] and one
// to stats[2 l + 1], l being the sample's noise level (0 for single-level objectives). Sample b's
// randomness comes from CounterRng(key.seed, key.first + b, key.step, <stream>), so a run is bitwise
// reproducible whatever the blocking or the thread count.
#pragma once

#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/random.hpp>

#include <cstdint>

namespace scorekit {
namespace objective {

/// Identifies a minibatch's samples for the counter-based generator.
struct SampleKey {
  std::uint64_t seed = 0;
  std::uint32_t step = 0;   ///< training step
  std::uint32_t first = 0;  ///< index in the minibatch of the block's first sample
};

/// Streams of the training noise (values are part of the reproducibility contract).
enum class TrainingStream : std::uint32_t {
  perturbation = 2048,  ///< the noise level and the Gaussian perturbation of denoising objectives
  probe = 2049,         ///< the probes of implicit, sliced and finite-difference objectives
};

template <class Real>
KOKKOS_INLINE_FUNCTION CounterRng<Real> sample_rng(const SampleKey& key, int b, TrainingStream stream) {
  return CounterRng<Real>(key.seed, std::uint64_t(key.first) + std::uint64_t(b), key.step,
                          static_cast<RngStream>(static_cast<std::uint32_t>(stream)));
}

namespace detail {

/// Copies nb data rows into the primal columns of a dual block's input ([Net::in][W]); the columns of
/// missing samples (b >= nb) repeat the last row, so that they stay finite (their seeds are zero).
template <int D, int B, int K, class Real>
KOKKOS_INLINE_FUNCTION void load_rows(int nb, const Real* x, Real* input) {
  constexpr int W = B * (1 + K);
  for (int b = 0; b < B; ++b) {
    const Real* row = x + (b < nb ? b : nb - 1) * D;
    for (int i = 0; i < D; ++i) input[i * W + b] = row[i];
  }
}

/// Zeroes a block of n values.
template <class Real>
KOKKOS_INLINE_FUNCTION void zero(Real* p, int n) {
  for (int i = 0; i < n; ++i) p[i] = Real(0);
}

/// The workspace layout of one dual block: tape, backward scratch and the output adjoint.
template <class Net, int B, int K>
struct DualBlockLayout {
  static constexpr int W = B * (1 + K);
  static constexpr int tape = 0;
  static constexpr int scratch = tape + Net::template tape_size<B, K>;
  static constexpr int seed = scratch + Net::template backward_scratch_size<B, K>;
  static constexpr int size = seed + Net::out * W;
};

}  // namespace detail
}  // namespace objective
}  // namespace scorekit
