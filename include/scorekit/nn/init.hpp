// Initial values of a network's flat parameter view, segment by segment (segment.hpp):
// - weights by the layer's fans: Glorot and Bengio, "Understanding the difficulty of training deep
//   feedforward neural networks", AISTATS 2010, eq. 16 (uniform on [-a, a], a = sqrt(6/(fan_in +
//   fan_out)); the normal variant has the same variance 2/(fan_in + fan_out)), or He, Zhang, Ren and Sun,
//   "Delving deep into rectifiers", ICCV 2015, eq. 10 (variance 2/fan_in, for ReLU-like activations;
//   the uniform variant has a = sqrt(6/fan_in)). Normal variants are plain (not truncated) normals, as
//   PyTorch's xavier_normal_ and kaiming_normal_;
// - biases zero;
// - scales (a normalisation's gamma) one, as PyTorch's GroupNorm and InstanceNorm;
// - embeddings uniform on [0, 1), as the ConditionalLinear layer of Song and Ermon's toy NCSN
//   (`embed.weight.data.uniform_()`), which scales features by a per-noise-level factor.
//
// Every value is a pure function of (seed, parameter index): CounterRng(seed, index, step 0,
// RngStream::init), so the result is the same on every backend and for every thread count, and does not
// depend on the order in which the segments are listed. Parameters outside every segment are left as
// they are.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/nn/segment.hpp>

#include <cmath>
#include <cstdint>

namespace scorekit {
namespace nn {

/// How weights are drawn (biases and embeddings do not depend on it).
enum class Init { glorot_uniform, glorot_normal, he_uniform, he_normal };

/// Name of an initialisation, for messages and logs.
inline const char* init_name(Init init) {
  switch (init) {
    case Init::glorot_uniform:
      return "glorot_uniform";
    case Init::glorot_normal:
      return "glorot_normal";
    case Init::he_uniform:
      return "he_uniform";
    case Init::he_normal:
      return "he_normal";
  }
  return "unknown";
}

namespace detail {
/// What one segment's kernel draws: value = scale * (2u - 1), scale * z, 0, u or 1.
enum class Draw { symmetric_uniform, normal, zero, unit_uniform, one };
}  // namespace detail

/// Fills the segments of `params` (see the top of this file), running on `exec`. Throws
/// invalid_argument when a segment lies outside the view, two overlap, a fan is not positive, or `init`
/// is not one of the enumerators.
template <class ExecSpace, class Real, class Mem>
void initialize(const ExecSpace& exec, const Kokkos::View<Real*, Mem>& params, const Segment* segments, int n,
                Init init, std::uint64_t seed) {
  constexpr const char* where = "scorekit::nn::initialize";
  static_assert(
      Kokkos::SpaceAccessibility<ExecSpace, typename Kokkos::View<Real*, Mem>::memory_space>::accessible,
      "scorekit::nn::initialize: the execution space cannot access the parameters' memory space");
  const int init_code = static_cast<int>(init);
  if (init_code < 0 || init_code > static_cast<int>(Init::he_normal))
    throw invalid_argument(scorekit::detail::concat(where, ": unknown initialisation (", init_code, ")"));
  validate_segments(segments, n, std::int64_t(params.extent(0)), where);
  ScopedRegion region(where);
  for (int s = 0; s < n; ++s) {
    const Segment g = segments[s];
    detail::Draw draw = detail::Draw::zero;
    double scale = 0;
    if (g.kind == ParameterKind::weight) {
      const double fan_in = g.fan_in, fan_sum = double(g.fan_in) + double(g.fan_out);
      switch (init) {
        case Init::glorot_uniform:
          draw = detail::Draw::symmetric_uniform;
          scale = std::sqrt(6.0 / fan_sum);
          break;
        case Init::glorot_normal:
          draw = detail::Draw::normal;
          scale = std::sqrt(2.0 / fan_sum);
          break;
        case Init::he_uniform:
          draw = detail::Draw::symmetric_uniform;
          scale = std::sqrt(6.0 / fan_in);
          break;
        case Init::he_normal:
          draw = detail::Draw::normal;
          scale = std::sqrt(2.0 / fan_in);
          break;
      }
    } else if (g.kind == ParameterKind::embedding) {
      draw = detail::Draw::unit_uniform;
    } else if (g.kind == ParameterKind::scale) {
      draw = detail::Draw::one;
    }
    const Real a = Real(scale);
    const int offset = g.offset;
    const Kokkos::View<Real*, Mem> p = params;
    Kokkos::parallel_for(
        "scorekit::nn::initialize", Kokkos::RangePolicy<ExecSpace>(exec, 0, g.size),
        KOKKOS_LAMBDA(const int j) {
          const int i = offset + j;
          CounterRng<Real> rng(seed, std::uint64_t(i), 0, RngStream::init);
          Real value = Real(0);
          if (draw == detail::Draw::symmetric_uniform)
            value = a * (Real(2) * rng.uniform() - Real(1));
          else if (draw == detail::Draw::normal)
            value = a * rng.normal();
          else if (draw == detail::Draw::unit_uniform)
            value = rng.uniform();
          else if (draw == detail::Draw::one)
            value = Real(1);
          p(i) = value;
        });
  }
  exec.fence();
}

/// initialize() on the default execution space of the parameters' memory space.
template <class Real, class Mem>
void initialize(const Kokkos::View<Real*, Mem>& params, const Segment* segments, int n, Init init,
                std::uint64_t seed) {
  initialize(typename Kokkos::View<Real*, Mem>::execution_space(), params, segments, n, init, seed);
}

}  // namespace nn
}  // namespace scorekit
