// Counter-based random numbers: Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers:
// as easy as 1, 2, 3", SC 2011). A draw is a pure function of (seed, particle, step, stream, draw index):
// no generator state is shared between particles, and no pool has to be seeded behind the caller's back.
//
// What is bitwise reproducible, and what is only bounded:
//
// - bits() and uniform() are the same bits on every backend, for every thread count, with any compiler
//   flags short of changing the rounding mode: Philox is integer arithmetic, and uniform() converts an
//   integer below 2^53 (double) or 2^24 (float) to floating point and multiplies it by a power of two,
//   both exact (to_open_unit), so there is no rounding for a compiler to do differently.
// - normal() is Box-Muller, z = r cos(theta) and z' = r sin(theta) with r = sqrt(-2 log u1) and
//   theta = 2 pi u2, evaluated with scorekit's own elementary functions (core/elementary.hpp: the same
//   operations in the same order on the host and on a GPU, where libm and CUDA's libdevice would give
//   different bits) and sqrt, which is correctly rounded by IEEE 754 on the host and in CUDA's default
//   -prec-sqrt=true. So normals are bitwise the same across thread counts, across Serial and OpenMP,
//   and across any two builds that contract a * b + c into fused multiply-adds in the same places: two
//   builds with contraction off (-ffp-contract=off for GCC and Clang, -fmad=false for nvcc; plain
//   x86-64 code has no FMA to contract into), device code included, as long as neither uses fast-math
//   (nvcc's defaults -prec-div=true, -prec-sqrt=true and -ftz=false keep +, -, *, / and sqrt IEEE).
// - Between builds that contract differently (nvcc contracts by default, -fmad=true; GCC contracts
//   when the target has FMA, e.g. -march=native, with its default -ffp-contract=fast for GNU C++) the
//   elementary functions can differ in the last bits, and so can normals. The difference is bounded.
//   Each build is within the error its elementary functions have (the maxima of core/elementary.hpp's
//   table, measured with and without contraction): log e_log = 0.76 ulp (double), 0.75 (float); sin and
//   cos e_trig = 1.44 ulp (double), 1.46 (float) on [0, 2 pi]. u1, u2 and theta are the same bits in
//   both builds (theta is one product). With eps = 2^-53 (double) or 2^-24 (float) and r, c the exact
//   sqrt(-2 log u1) and cos(theta) (or sin(theta)), each build's
//     log:   log u1 (1 + d1), |d1| <= e_log ulp(log u1) / |log u1| <= 2 e_log eps
//     r:     sqrt(-2 log u1 (1 + d1)) (1 + d2) = r (1 + d1/2) (1 + d2), |d2| <= eps (rounded sqrt)
//     cos:   c + g, |g| <= e_trig ulp(c) <= e_trig eps (|c| < 1), and relatively |g| <= 2 e_trig eps |c|
//     z:     (r-hat c-hat) (1 + d3), |d3| <= eps (the rounded product)
//   so, to first order in eps (the higher orders are smaller by a factor of about 10 eps), each
//   build's z is within
//     (e_log + e_trig + 2) eps r            absolutely (with |c| <= 1), and within
//     (e_log + 2 e_trig + 2) eps |z|        relatively,
//   and two builds differ by at most twice that:
//     |z_A - z_B| <= 2 (e_log + e_trig + 2) eps r      = 8.40 eps r (double), 8.42 eps r (float)
//     |z_A - z_B| <= 2 (e_log + 2 e_trig + 2) ulp(z)   = 11.28 ulp (double), 11.34 ulp (float),
//   ulp taken at the smaller of |z_A|, |z_B| (ulp(x) > eps |x|). The absolute form, scaled by the radius
//   r, is the one that needs nothing but the functions' absolute accuracy. The relative form holds even
//   where cos(theta) (or sin) is near a zero, where an ulp of z is tiny, only because sin_cos keeps its
//   relative accuracy at the zeros on [-2 pi, 2 pi] (its four-part reduction, checked by
//   tests/test_elementary.cpp at the neighbours of k pi / 2); for a cosine with only absolute accuracy
//   an ulp of z would say nothing there. tests/test_random.cpp asserts both, comparing 10^6 normals
//   of each type drawn by code built for FMA with -ffp-contract=fast against the same code built with
//   -ffp-contract=off (tests/contraction/; and each against a long double reference), and a GPU's draws
//   against the host's. The e's are the functions' measured maxima, so the bound is as good as those
//   measurements.
#pragma once

#include <scorekit/core/elementary.hpp>
#include <scorekit/core/kokkos.hpp>

#include <cstdint>
#include <new>

namespace scorekit {

/// Four 32-bit words: a Philox counter or output block.
struct Philox4x32Block {
  std::uint32_t v[4];
};

/// The Philox4x32 bijection with 10 rounds, keyed by two 32-bit words.
KOKKOS_FORCEINLINE_FUNCTION Philox4x32Block philox4x32_10(Philox4x32Block ctr, std::uint32_t k0,
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

  /// Uniform on the open interval (0, 1): never 0, so log(u) is finite; never 1. The same bits on every
  /// backend (see the top of this file).
  KOKKOS_INLINE_FUNCTION Real uniform() {
    const Philox4x32Block b = bits();
    return to_open_unit(b.v[0], b.v[1]);
  }

  /// A standard normal variate (Box-Muller on two uniforms from one block; the second value of the
  /// pair, r sin(theta), is kept for the next call). Bitwise the same wherever a * b + c is contracted in
  /// the same places, within the bound at the top of this file between builds that contract differently.
  KOKKOS_INLINE_FUNCTION Real normal() {
    if (m_cached) {
      m_cached = false;
      return m_cache;
    }
    const Philox4x32Block b = bits();
    Real c, s;
    box_muller(b.v[0], b.v[1], b.v[2], b.v[3], c, s);
    m_cache = s;
    m_cached = true;
    return c;
  }

  /// Fills out[0..n) with the next n standard normal variates: the same values, and the same state
  /// after, as n calls of normal(). Whole pairs are drawn by a loop over blocks that the host compiler
  /// vectorises (Philox and Box-Muller side by side in vector lanes; at -O3 with AVX-512 about 5x
  /// faster a value than normal() one at a time, measured at n = 128).
  KOKKOS_INLINE_FUNCTION void fill_normal(Real* out, int n) {
    int j = 0;
    if (n > 0 && m_cached) {
      out[j++] = m_cache;
      m_cached = false;
    }
    const int pairs = (n - j) / 2;
    const std::uint32_t first = m_draw, step = m_step, particle = m_particle, stream = m_stream;
    const std::uint32_t k0 = m_k0, k1 = m_k1;
    Real* const o = out + j;
    SCOREKIT_SIMD
    for (int p = 0; p < pairs; ++p) {
      const Philox4x32Block b =
          philox4x32_10(Philox4x32Block{{first + std::uint32_t(p), step, particle, stream}}, k0, k1);
      box_muller(b.v[0], b.v[1], b.v[2], b.v[3], o[2 * p], o[2 * p + 1]);
    }
    m_draw = first + std::uint32_t(pairs);
    j += 2 * pairs;
    if (j < n) out[j] = normal();
  }

  /// Calls f(j, z_j) for j = 0, 1, ..., n - 1 in order, z_j the next n standard normal variates (the same
  /// values, and the same state after, as n calls of normal()): the form of a step's loop
  /// `x[j] = ... + c * rng.normal()` in which the draws vectorise. On the host they are drawn by
  /// fill_normal in blocks of 32 (a 64-D step's normals 5x faster at -O3 with AVX-512); a GPU thread has no
  /// vector lanes to fill, so there it calls normal() value by value.
  template <class F>
  KOKKOS_INLINE_FUNCTION void for_each_normal(int n, F&& f) {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
    for (int j = 0; j < n; ++j) f(j, normal());
#else
    constexpr int block = 32;
    Real z[block];
    for (int j0 = 0; j0 < n; j0 += block) {
      const int m = n - j0 < block ? n - j0 : block;
      fill_normal(z, m);
      for (int j = 0; j < m; ++j) f(j0 + j, z[j]);
    }
#endif
  }

  /// Calls f(b, j, z) for particles b = 0..nb-1 and j = 0..n-1, z the next n standard normal variates of
  /// rng_of(b) (a CounterRng<Real>&): the same values, and the same generators after, as
  /// rng_of(b).for_each_normal(n, ...) particle by particle. On the host, when no generator holds a
  /// cached value and nb <= 32, a pair is drawn for every particle side by side in vector lanes (one
  /// Philox block and one Box-Muller a lane: a 2-D particle's one pair would fill one lane alone);
  /// otherwise, and on a GPU, particle by particle. f must treat each (b, j) apart.
  template <class RngOf, class F>
  KOKKOS_INLINE_FUNCTION static void for_each_normal_block(int nb, int n, RngOf&& rng_of, F&& f) {
#if !defined(__CUDA_ARCH__) && !defined(__HIP_DEVICE_COMPILE__)
    constexpr int lanes = 32;
    CounterRng* gen[lanes];
    bool side_by_side = nb > 1 && nb <= lanes;
    for (int b = 0; side_by_side && b < nb; ++b) {
      gen[b] = &rng_of(b);
      side_by_side = !gen[b]->m_cached;
    }
    if (side_by_side) {
      std::uint32_t draw[lanes] = {}, step[lanes] = {}, particle[lanes] = {}, stream[lanes] = {},
                    k0[lanes] = {}, k1[lanes] = {};
      for (int b = 0; b < nb; ++b) {
        const CounterRng& g = *gen[b];
        draw[b] = g.m_draw, step[b] = g.m_step, particle[b] = g.m_particle, stream[b] = g.m_stream;
        k0[b] = g.m_k0, k1[b] = g.m_k1;
      }
      const int pairs = n / 2;
      Real c[lanes], s[lanes];
      for (int p = 0; p < pairs; ++p) {
        SCOREKIT_SIMD
        for (int b = 0; b < nb; ++b) {
          const Philox4x32Block blk = philox4x32_10(
              Philox4x32Block{{draw[b] + std::uint32_t(p), step[b], particle[b], stream[b]}}, k0[b], k1[b]);
          box_muller(blk.v[0], blk.v[1], blk.v[2], blk.v[3], c[b], s[b]);
        }
        for (int b = 0; b < nb; ++b) {
          f(b, 2 * p, c[b]);
          f(b, 2 * p + 1, s[b]);
        }
      }
      for (int b = 0; b < nb; ++b) {
        CounterRng& g = *gen[b];
        g.m_draw = draw[b] + std::uint32_t(pairs);
        if (2 * pairs < n) f(b, n - 1, g.normal());
      }
      return;
    }
#endif
    for (int b = 0; b < nb; ++b) rng_of(b).for_each_normal(n, [&](int j, Real z) { f(b, j, z); });
  }

  /// The map from 64 random bits (a, b) to the open interval (0, 1) that uniform() and normal() use:
  /// the top 52 bits of a:b (double) or 23 bits of a (float) pick a cell of width 2^-52 or 2^-23, and the
  /// value is the cell's midpoint, (2k + 1) 2^-53 or (2k + 1) 2^-24. Setting the lowest of 53 (24) bits
  /// gives the odd integer 2k + 1 < 2^53 (2^24), which converts exactly, and the product with a power of
  /// two is exact too: no rounding, so the same bits on every backend and under any contraction, and the
  /// values run from 2^-53 to 1 - 2^-53 (2^-24 to 1 - 2^-24), never 0 or 1. (The midpoint of a cell of
  /// 2^-53, (u + 1/2) 2^-53, is not representable for u >= 2^52: the sum rounded, to 1 at u = 2^53 - 1.)
  KOKKOS_INLINE_FUNCTION static Real to_open_unit(std::uint32_t a, std::uint32_t b) {
    if constexpr (sizeof(Real) >= 8) {
      const std::uint64_t odd = (((std::uint64_t(a) << 32) | b) >> 11) | 1u;
      return Real(std::int64_t(odd)) * Real(1.1102230246251565404236316680908203125e-16);  // 2^-53
    } else {
      (void)b;
      return Real(std::int32_t((a >> 8) | 1u)) * Real(5.9604644775390625e-8);  // 2^-24
    }
  }

 private:
  /// The pair of normals one block gives: c = r cos(theta), s = r sin(theta) (normal() returns c first).
  KOKKOS_FORCEINLINE_FUNCTION static void box_muller(std::uint32_t b0, std::uint32_t b1, std::uint32_t b2,
                                                     std::uint32_t b3, Real& c, Real& s) {
    const Real u1 = to_open_unit(b0, b1);
    const Real u2 = to_open_unit(b2, b3);
    // elementary:: rather than math:: (libm on the host, libdevice on a GPU: different bits). sqrt is
    // correctly rounded on both (IEEE 754; nvcc's default -prec-sqrt=true), so math::sqrt stays.
    const Real r = math::sqrt(Real(-2) * elementary::log(u1));
    // theta is in (0, 2 pi] (up to rounding), where sin_cos is accurate.
    const Real theta = Real(2) * math::pi<Real>() * u2;
    Real sn, cs;
    elementary::sin_cos(theta, sn, cs);
    c = r * cs;
    s = r * sn;
  }

  std::uint32_t m_k0, m_k1, m_step, m_particle, m_stream;
  std::uint32_t m_draw = 0;
  Real m_cache = Real(0);
  bool m_cached = false;
};

namespace detail {

/// The generators of a block of particles at one step, particle first + b's CounterRng(seed, ., step),
/// kept for the whole step (integrate/: a predictor continues from where the corrector's draws left its
/// generator). Each is made when first asked for: a step that draws nothing (Heun without churn) makes
/// none. What for_each_normal_block takes as rng_of.
template <class Real, int N>
class BlockRngs {
 public:
  KOKKOS_INLINE_FUNCTION BlockRngs(std::uint64_t seed, std::uint64_t first, std::uint64_t step)
      : m_seed(seed), m_first(first), m_step(step) {
    for (int b = 0; b < N; ++b) m_made[b] = false;
  }
  KOKKOS_INLINE_FUNCTION CounterRng<Real>& operator()(int b) {
    if (!m_made[b]) {
      new (&m_slot[b].rng) CounterRng<Real>(m_seed, m_first + std::uint64_t(b), m_step);
      m_made[b] = true;
    }
    return m_slot[b].rng;
  }

 private:
  union Slot {  // storage for a generator, made by operator()
    KOKKOS_INLINE_FUNCTION Slot() {}
    CounterRng<Real> rng;
  };
  std::uint64_t m_seed, m_first, m_step;
  bool m_made[N];
  Slot m_slot[N];
};

}  // namespace detail

}  // namespace scorekit
