// Counter-based random numbers: Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers:
// as easy as 1, 2, 3", SC 2011). A draw is a pure function of (seed, particle, step, stream, draw index),
// so a run is bitwise identical on every backend and for every thread count: no generator state is shared
// between particles, and no pool has to be seeded behind the caller's back.
#pragma once

#include <scorekit/core/kokkos.hpp>

#include <cstdint>

namespace scorekit {

/// Four 32-bit words: a Philox counter or output block.
struct Philox4x32Block {
  std::uint32_t v[4];
};

/// The Philox4x32 bijection with 10 rounds, keyed by two 32-bit words.
KOKKOS_INLINE_FUNCTION Philox4x32Block philox4x32_10(Philox4x32Block ctr, std::uint32_t k0,
                                                     std::uint32_t k1) {
  constexpr std::uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;  // round multipliers (paper, Table 2)
  constexpr std::uint32_t w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;  // Weyl key increments
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += w0;
      k1 += w1;
    }
    const std::uint64_t p0 = std::uint64_t(m0) * ctr.v[0];
    const std::uint64_t p1 = std::uint64_t(m1) * ctr.v[2];
    const std::uint32_t hi0 = std::uint32_t(p0 >> 32), lo0 = std::uint32_t(p0);
    const std::uint32_t hi1 = std::uint32_t(p1 >> 32), lo1 = std::uint32_t(p1);
    ctr = Philox4x32Block{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
  }
  return ctr;
}

/// Streams a sampler keeps apart, so that e.g. MALA's proposal noise and its accept test never share a
/// counter. Values are part of the reproducibility contract: never renumber them.
enum class RngStream : std::uint32_t {
  init = 0,
  proposal = 1,
  accept = 2,
  momentum = 3,
  divergence_probe = 4,  // the probes of a divergence estimator (divergence/estimate_divergence.hpp)
  user = 1024,           // first stream free for user code
};

/// A generator for one (seed, particle, step, stream): cheap to construct inside a kernel, consumed in
/// order. Counter layout: v[0] = draw index, v[1] = step, v[2] = particle, v[3] = stream; key = seed.
/// Particles and steps are 32-bit: a run may have up to 2^32 of each.
template <class Real>
class CounterRng {
 public:
  KOKKOS_INLINE_FUNCTION CounterRng(std::uint64_t seed, std::uint64_t particle, std::uint64_t step,
                                    RngStream stream = RngStream::proposal)
      : m_k0(std::uint32_t(seed)),
        m_k1(std::uint32_t(seed >> 32)),
        m_step(std::uint32_t(step)),
        m_particle(std::uint32_t(particle)),
        m_stream(std::uint32_t(stream)) {}

  /// The particle this generator was keyed with (drivers key particle i's generators with i).
  KOKKOS_INLINE_FUNCTION std::uint64_t particle() const { return m_particle; }

  /// The next block of 32 random bits times four.
  KOKKOS_INLINE_FUNCTION Philox4x32Block bits() {
    return philox4x32_10(Philox4x32Block{{m_draw++, m_step, m_particle, m_stream}}, m_k0, m_k1);
  }

  /// Uniform on the open interval (0, 1): never 0, so log(u) is finite; never 1.
  KOKKOS_INLINE_FUNCTION Real uniform() {
    const Philox4x32Block b = bits();
    return to_open_unit(b.v[0], b.v[1]);
  }

  /// A standard normal variate (Box-Muller on two uniforms from one block; the second value of the
  /// pair is kept for the next call).
  KOKKOS_INLINE_FUNCTION Real normal() {
    if (m_cached) {
      m_cached = false;
      return m_cache;
    }
    const Philox4x32Block b = bits();
    const Real u1 = to_open_unit(b.v[0], b.v[1]);
    const Real u2 = to_open_unit(b.v[2], b.v[3]);
    const Real r = math::sqrt(Real(-2) * math::log(u1));
    const Real theta = Real(2) * math::pi<Real>() * u2;
    m_cache = r * math::sin(theta);
    m_cached = true;
    return r * math::cos(theta);
  }

  /// Fills out[0..n) with standard normal variates.
  KOKKOS_INLINE_FUNCTION void fill_normal(Real* out, int n) {
    for (int i = 0; i < n; ++i) out[i] = normal();
  }

 private:
  // 53 random bits for double, 24 for float, centred in their cell so that 0 and 1 are excluded.
  KOKKOS_INLINE_FUNCTION static Real to_open_unit(std::uint32_t a, std::uint32_t b) {
    if constexpr (sizeof(Real) >= 8) {
      const std::uint64_t u = ((std::uint64_t(a) << 32) | b) >> 11;
      return (Real(u) + Real(0.5)) * Real(1.1102230246251565404236316680908203125e-16);  // 2^-53
    } else {
      (void)b;
      return (Real(a >> 8) + Real(0.5)) * Real(5.9604644775390625e-8);  // 2^-24
    }
  }

  std::uint32_t m_k0, m_k1, m_step, m_particle, m_stream;
  std::uint32_t m_draw = 0;
  Real m_cache = Real(0);
  bool m_cached = false;
};

}  // namespace scorekit
