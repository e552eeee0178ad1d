// Branch-free elementary functions that vectorise. Inside an `omp simd` loop GCC turns calls to libm's
// exp, log, log1p, sin and cos into one scalar call per element: without -ffast-math it has no vector
// versions of them, and scorekit cannot use -ffast-math because it must see NaN. These are written
// with arithmetic, bit manipulation and selects only, so a loop such as
//
//   SCOREKIT_SIMD for (int i = 0; i < n; ++i) y[i] = scorekit::elementary::softplus(x[i]);
//
// vectorises, and they run unchanged on a GPU (selects instead of branches, no tables). With GCC 12
// every function vectorises in such a loop at -O2 and -O3 for x86-64-v2 (SSE4.2) and up (AVX2,
// AVX-512); on the plain x86-64 baseline (SSE2) the float versions do and the double ones do not (SSE2
// has no 64-bit integer compare for the selects). They are force-inlined: at -O2 GCC would leave the
// larger ones as calls, and a call stops vectorisation.
//
// Each function is a template over Real = float or double; float uses shorter polynomials. Largest
// error in ulp, measured by tests/test_elementary.cpp against long double libm at about 400,000 points
// per function over the whole range (subnormal results included), with and without FMA contraction;
// the test asserts 4:
//
//            exp   expm1  log   log1p  sigmoid  softplus  tanh  sin   cos  (sin, cos on [-2 pi, 2 pi])
//   double   1.00  1.70   0.76  0.76   1.90     1.28      2.49  1.28  1.44
//   float    0.98  1.38   0.75  0.82   2.09     1.47      2.46  1.46  1.41
//
// Every function takes NaN to NaN (scorekit detects NaN downstream, so it must survive), handles
// +-infinity, overflows to infinity and underflows through the subnormals to 0 as libm does.
//
// The method is the classical one (Cody and Waite, "Software Manual for the Elementary Functions",
// 1980; Tang, "Table-driven implementation of the exponential function", ACM TOMS 15(2), 1989, without
// the table): reduce the argument exactly with a constant split into parts whose products with the
// reduction multiple are exact, approximate on the reduced interval with a minimax polynomial, and
// rebuild. The log kernel follows fdlibm's e_log.c formulation, log(1 + f) = f - f^2/2 + s (f^2/2 +
// R(s^2)) with s = f / (2 + f). The polynomial coefficients are our own: a weighted Remez exchange in
// 60-digit arithmetic (mpmath), relative error of the final result, coefficients then rounded to the
// target type; the error of each polynomial before rounding is noted next to it.
//
// The results do not depend on vectorisation: the arithmetic is the same operation by operation. They
// can differ in the last bit between builds that contract a * b + c into a fused multiply-add and
// builds that do not (GCC contracts C++ whenever the target has FMA, e.g. -march=native; nvcc does by
// default); every step is written so that either way stays within the bound.
#pragma once

#include <scorekit/core/kokkos.hpp>

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace scorekit {
namespace elementary {
namespace detail {

/// The bits of `from` as a `To` of the same size (std::bit_cast is C++20). memcpy is the portable way
/// to say it: GCC and Clang fold it into a register move (and vectorise it), and CUDA and HIP provide
/// memcpy in device code.
template <class To, class From>
KOKKOS_FORCEINLINE_FUNCTION To bit_cast(From from) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast needs types of the same size");
  To to;
  memcpy(static_cast<void*>(&to), static_cast<const void*>(&from), sizeof(To));
  return to;
}

/// The IEEE-754 binary layout of Real and the constants that depend only on it.
template <class Real>
struct Format;

template <>
struct Format<double> {
  using Bits = std::uint64_t;
  static constexpr int mantissa_bits = 52;
  static constexpr Bits exponent_bias = 1023;
  /// Adding 1.5 * 2^52 rounds |y| < 2^51 to an integer that then sits in the low bits of the sum.
  static constexpr double round_shift = 0x1.8p52;
  static constexpr Bits round_shift_bits = 0x4338000000000000ull;
  /// Integer-valued doubles in [0, 2^52) from their bits: bits(2^52) | k is 2^52 + k.
  static constexpr Bits two_pow_mantissa_bits = 0x4330000000000000ull;
  /// A power of two larger than every |n| of a scale 2^n below, so that n + n_offset is never negative.
  static constexpr Bits n_offset = 2048;
  static constexpr Bits sign_mask = 0x8000000000000000ull;
  static constexpr Bits sqrt_half_bits = 0x3fe6a09e667f3bcdull;  // sqrt(1/2), rounded to nearest
  static constexpr Bits infinity_bits = 0x7ff0000000000000ull;
  static constexpr Bits quiet_nan_bits = 0x7ff8000000000000ull;
  static constexpr double min_normal = 0x1p-1022;
};

template <>
struct Format<float> {
  using Bits = std::uint32_t;
  static constexpr int mantissa_bits = 23;
  static constexpr Bits exponent_bias = 127;
  static constexpr float round_shift = 0x1.8p23f;
  static constexpr Bits round_shift_bits = 0x4b400000u;
  static constexpr Bits two_pow_mantissa_bits = 0x4b000000u;
  static constexpr Bits n_offset = 256;
  static constexpr Bits sign_mask = 0x80000000u;
  static constexpr Bits sqrt_half_bits = 0x3f3504f3u;
  static constexpr Bits infinity_bits = 0x7f800000u;
  static constexpr Bits quiet_nan_bits = 0x7fc00000u;
  static constexpr float min_normal = 0x1p-126f;
};

template <class Real>
using Bits = typename Format<Real>::Bits;

template <class Real>
KOKKOS_FORCEINLINE_FUNCTION Bits<Real> bits_of(Real x) {
  return bit_cast<Bits<Real>>(x);
}

// Infinity and NaN from their bits: std::numeric_limits is host-only code under CUDA without
// --expt-relaxed-constexpr.
template <class Real>
KOKKOS_FORCEINLINE_FUNCTION Real infinity() {
  return bit_cast<Real>(Format<Real>::infinity_bits);
}
template <class Real>
KOKKOS_FORCEINLINE_FUNCTION Real quiet_nan() {
  return bit_cast<Real>(Format<Real>::quiet_nan_bits);
}

template <class Real>
KOKKOS_FORCEINLINE_FUNCTION constexpr void check_real() {
  static_assert(std::is_same<Real, double>::value || std::is_same<Real, float>::value,
                "scorekit::elementary functions are defined for float and double");
}

/// k as a Real, for 0 <= k < 2^mantissa_bits: from the bits of 2^m + k, without an integer-to-floating
/// conversion (a 64-bit one does not vectorise without AVX-512).
template <class Real>
KOKKOS_FORCEINLINE_FUNCTION Real small_integer_to_real(Bits<Real> k) {
  using F = Format<Real>;
  return bit_cast<Real>(Bits<Real>(F::two_pow_mantissa_bits | k)) -
         bit_cast<Real>(Bits<Real>(F::two_pow_mantissa_bits));
}

/// 2^(m - n_offset / 2) for the biased exponent m (normal results only).
template <class Real>
KOKKOS_FORCEINLINE_FUNCTION Real pow2_biased(Bits<Real> m) {
  using F = Format<Real>;
  return bit_cast<Real>(Bits<Real>((m + F::exponent_bias - F::n_offset / 2) << F::mantissa_bits));
}

/// c ? a : b for two values already computed. On the host it is written as a bit mask rather than a
/// ternary: for a ternary whose arms are expressions GCC at -O2 sinks the work that only one arm needs
/// into a branch and then will not speculate it back (floating-point operations may trap under the
/// default -ftrapping-math), so the loop does not vectorise; the mask form has no branch to sink into
/// and GCC still emits it as one blend instruction. GPUs select natively.
template <class Real>
KOKKOS_FORCEINLINE_FUNCTION Real select(bool c, Real a, Real b) {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__) || defined(__SYCL_DEVICE_ONLY__)
  return c ? a : b;
#else
  using B = Bits<Real>;
  const B mask = B(B(0) - B(c));
  return bit_cast<Real>(B((bit_cast<B>(a) & mask) | (bit_cast<B>(b) & B(~mask))));
#endif
}

/// |x| by clearing the sign bit (NaN stays NaN).
template <class Real>
KOKKOS_FORCEINLINE_FUNCTION Real abs(Real x) {
  return bit_cast<Real>(bits_of(x) & Bits<Real>(~Format<Real>::sign_mask));
}

/// -x when c, else x, by flipping the sign bit.
template <class Real>
KOKKOS_FORCEINLINE_FUNCTION Real negate_if(bool c, Real x) {
  return bit_cast<Real>(Bits<Real>(bits_of(x) ^ (Bits<Real>(c) << (8 * sizeof(Real) - 1))));
}

/// The magnitude of y with the sign of x.
template <class Real>
KOKKOS_FORCEINLINE_FUNCTION Real copysign(Real y, Real x) {
  constexpr Bits<Real> sign = Format<Real>::sign_mask;
  return bit_cast<Real>(Bits<Real>((bits_of(y) & Bits<Real>(~sign)) | (bits_of(x) & sign)));
}

// --------------------------------------------------------------------------------------------------
// Polynomials on the reduced intervals.

/// expm1(r) = r + r^2 q(r) on |r| <= ln(2)/2. Relative error of exp(r) = 1 + r + r^2 q(r):
/// 2^-57.9 (double, degree 9 in q), 2^-28.3 (float, degree 4).
KOKKOS_FORCEINLINE_FUNCTION double expm1_reduced(double r) {
  const double q =
      0x1.000000000000ap-1 +
      r * (0x1.55555555554fap-3 +
           r * (0x1.555555555088cp-5 +
                r * (0x1.1111111127b9dp-7 +
                     r * (0x1.6c16c184266dep-10 +
                          r * (0x1.a01a012a69051p-13 +
                               r * (0x1.a0199a16df59ep-16 +
                                    r * (0x1.71df253be4265p-19 +
                                         r * (0x1.28ad68a5108d6p-22 + r * 0x1.ad7f77fea1e41p-26))))))));
  return r + (r * r) * q;
}
KOKKOS_FORCEINLINE_FUNCTION float expm1_reduced(float r) {
  const float q = 0x1.fffffcp-2f +
                  r * (0x1.555492p-3f + r * (0x1.5558f2p-5f + r * (0x1.1239d4p-7f + r * 0x1.6a244cp-10f)));
  return r + (r * r) * q;
}

/// R(z) = 2 atanh(s) / s - 2 with z = s^2, |s| <= (sqrt(2) - 1) / (sqrt(2) + 1), as z * P(z). Error
/// relative to log(1 + f): 2^-59.5 (double, 7 coefficients), 2^-30.2 (float, 3 coefficients).
KOKKOS_FORCEINLINE_FUNCTION double log_r(double z) {
  return z * (0x1.5555555555592p-1 +
              z * (0x1.999999997fdb8p-2 +
                   z * (0x1.24924941f123ap-2 +
                        z * (0x1.c71c52095df80p-3 +
                             z * (0x1.74663ee8473afp-3 +
                                  z * (0x1.39a1babaadc3ap-3 + z * 0x1.2f056367d3ca8p-3))))));
}
KOKKOS_FORCEINLINE_FUNCTION float log_r(float z) {
  return z * (0x1.55557ap-1f + z * (0x1.995ebap-2f + z * 0x1.31e2f2p-2f));
}

/// sin(r) = r + r z S(z) and cos(r) = 1 - z/2 + z^2 C(z), z = r^2, |r| <= pi/4. Relative errors:
/// sin 2^-57.9, cos 2^-64.0 (double, 6 coefficients each); sin 2^-28.0, cos 2^-33.0 (float, 3 each).
KOKKOS_FORCEINLINE_FUNCTION double sin_s(double z) {
  return -0x1.5555555555548p-3 +
         z * (0x1.111111110f7d0p-7 +
              z * (-0x1.a01a019bfdf03p-13 +
                   z * (0x1.71de3567d4892p-19 + z * (-0x1.ae5e5a9291359p-26 + z * 0x1.5d8fd1fce18fdp-33))));
}
KOKKOS_FORCEINLINE_FUNCTION float sin_s(float z) {
  return -0x1.555546p-3f + z * (0x1.11073ap-7f + z * -0x1.9943e0p-13f);
}
KOKKOS_FORCEINLINE_FUNCTION double cos_c(double z) {
  return 0x1.555555555554bp-5 +
         z * (-0x1.6c16c16c14f91p-10 +
              z * (0x1.a01a019c844f5p-16 +
                   z * (-0x1.27e4f7eac4bc3p-22 + z * (0x1.1ee9d7b4e3d02p-29 + z * -0x1.8fa49a0850976p-37))));
}
KOKKOS_FORCEINLINE_FUNCTION float cos_c(float z) {
  return 0x1.55554ap-5f + z * (-0x1.6c0c34p-10f + z * 0x1.99eb9cp-16f);
}

// --------------------------------------------------------------------------------------------------
// Argument reductions and kernels shared by several functions.

/// ln 2 = ln2_hi + ln2_lo, with ln2_hi short enough that n ln2_hi is exact for every n used here
/// (|n| < 2^11 for double, < 2^8 for float).
template <class Real>
struct Ln2;
template <>
struct Ln2<double> {
  static constexpr double hi = 0x1.62e42fefa4000p-1, lo = -0x1.8432a1b0e2634p-43;
  static constexpr double inverse = 0x1.71547652b82fep+0;
};
template <>
struct Ln2<float> {
  static constexpr float hi = 0x1.62e4p-1f, lo = 0x1.7f7d1cp-20f, inverse = 0x1.715476p+0f;
};

/// x = n ln 2 + r with n = round(x / ln 2), |r| <= ln(2)/2: returns expm1(r) and sets m = n + n_offset.
/// Needs |x| < 2^11 (double) or 2^8 (float); NaN gives NaN.
template <class Real>
KOKKOS_FORCEINLINE_FUNCTION Real exp_reduce(Real x, Bits<Real>& m) {
  using F = Format<Real>;
  const Real shifted = x * Ln2<Real>::inverse + F::round_shift;
  m = bit_cast<Bits<Real>>(shifted) - F::round_shift_bits + F::n_offset;
  const Real n = shifted - F::round_shift;
  // x - n ln2_hi is exact (Sterbenz); what the reduction still gets wrong, through ln2_lo and its
  // product with n, is below 2^-85 (double) or 2^-36 (float), far below ulp(e^r) = 2^-53 or 2^-24.
  const Real r = (x - n * Ln2<Real>::hi) - n * Ln2<Real>::lo;
  return expm1_reduced(r);
}

/// log(1 + f) + k ln 2 + c for f in [sqrt(1/2) - 1, sqrt(2) - 1], s = f / (2 + f), an integer k and a
/// correction c far below ulp(f) (fdlibm's e_log.c arrangement: the small terms are summed first, ln2_hi
/// last).
template <class Real>
KOKKOS_FORCEINLINE_FUNCTION Real log_kernel(Real f, Real s, Real k, Real c) {
  const Real hfsq = Real(0.5) * f * f;
  const Real r = log_r(s * s);
  return k * Ln2<Real>::hi - ((hfsq - (s * (hfsq + r) + (k * Ln2<Real>::lo + c))) - f);
}

/// For a positive normal u: sets f = m - 1 and returns k, with u = 2^k m and m in [sqrt(1/2), sqrt(2)).
template <class Real>
KOKKOS_FORCEINLINE_FUNCTION Real log_reduce(Real u, Real& f) {
  using F = Format<Real>;
  using B = Bits<Real>;
  // Subtracting the bits of sqrt(1/2) makes the exponent field count from m = sqrt(1/2); n_offset / 2
  // keeps it non-negative for every u >= 0, so only unsigned arithmetic is needed.
  const B bits = bit_cast<B>(u);
  const B kb = (bits + ((F::n_offset / 2) << F::mantissa_bits) - F::sqrt_half_bits) >> F::mantissa_bits;
  f = bit_cast<Real>(B(bits - ((kb - F::n_offset / 2) << F::mantissa_bits))) - Real(1);
  return small_integer_to_real<Real>(kb) - Real(F::n_offset / 2);
}

}  // namespace detail

// ----------------------------------------------------------------------------------------------------
// Public functions.

/// e^x. Overflows to +inf above log(max), underflows through the subnormals to +0.
template <class Real>
KOKKOS_FORCEINLINE_FUNCTION Real exp(Real x) {
  detail::check_real<Real>();
  using detail::select;
  // Beyond these bounds the result is inf or 0 anyway; the selects leave NaN alone.
  constexpr Real lo = std::is_same<Real, double>::value ? Real(-750) : Real(-104);
  constexpr Real hi = std::is_same<Real, double>::value ? Real(710) : Real(89);
  const Real xc = select(x < lo, lo, select(x > hi, hi, x));
  detail::Bits<Real> m;
  const Real p = detail::exp_reduce(xc, m);
  // 2^n as 2^n1 2^n2 with n1 = floor(n / 2): both factors are normal for every n in range, so a result
  // that overflows or is subnormal is rounded once, in the last multiplication.
  const detail::Bits<Real> m1 = m >> 1, m2 = m - m1;
  return ((Real(1) + p) * detail::pow2_biased<Real>(m1)) * detail::pow2_biased<Real>(m2);
}

/// e^x - 1, accurate near 0 (expm1(x) = x for tiny x, expm1(-0) = -0). -inf gives -1.
template <class Real>
KOKKOS_FORCEINLINE_FUNCTION Real expm1(Real x) {
  detail::check_real<Real>();
  using detail::select;
  // Below lo the result rounds to -1; above hi it overflows.
  constexpr Real lo = std::is_same<Real, double>::value ? Real(-60) : Real(-20);
  constexpr Real hi = std::is_same<Real, double>::value ? Real(710) : Real(89);
  // Below tiny, x + x^2/2 rounds to x.
  constexpr Real tiny = std::is_same<Real, double>::value ? Real(0x1p-54) : Real(0x1p-25);
  const Real xc = select(x < lo, lo, select(x > hi, hi, x));
  detail::Bits<Real> m;
  const Real p = detail::exp_reduce(xc, m);
  // e^x - 1 = 2 (2^(n-1) p + (2^(n-1) - 1/2)): the factor 2 is outside so that 2^(n-1) stays normal
  // for n = max exponent + 1; scaling by powers of two is exact, so this rounds as 2^n p + (2^n - 1).
  const Real s = detail::pow2_biased<Real>(m - 1 - detail::Format<Real>::n_offset / 2);
  const Real y = Real(2) * (s * p + (s - Real(0.5)));
  return select(detail::abs(x) < tiny, x, y);
}

/// Natural logarithm. log(+-0) = -inf, log(x < 0) = NaN, log(+inf) = +inf. Subnormal x are scaled into
/// the normal range first, so they are as accurate as the rest.
template <class Real>
KOKKOS_FORCEINLINE_FUNCTION Real log(Real x) {
  detail::check_real<Real>();
  using detail::select;
  constexpr bool is_double = std::is_same<Real, double>::value;
  const Real inf = detail::infinity<Real>();
  const Real nan = detail::quiet_nan<Real>();
  // Subnormals are scaled into the normal range first.
  constexpr Real scale = is_double ? Real(0x1p54) : Real(0x1p25);
  constexpr Real scale_log2 = is_double ? Real(54) : Real(25);
  const bool subnormal = x < detail::Format<Real>::min_normal;
  const Real u = select(subnormal, x * scale, x);
  Real f;
  const Real k = detail::log_reduce(u, f) - select(subnormal, scale_log2, Real(0));
  const Real y = detail::log_kernel(f, f / (Real(2) + f), k, Real(0));
  const Real special = select(x == Real(0), -inf, select(x == inf, inf, nan));
  return select((x > Real(0)) & (x < inf), y, special);
}

/// log(1 + x), accurate near 0 (log1p(-0) = -0). log1p(-1) = -inf, log1p(x < -1) = NaN.
template <class Real>
KOKKOS_FORCEINLINE_FUNCTION Real log1p(Real x) {
  detail::check_real<Real>();
  using detail::select;
  const Real inf = detail::infinity<Real>();
  const Real nan = detail::quiet_nan<Real>();
  const Real u = Real(1) + x;
  // The rounding error of 1 + x, exactly (Fast2Sum, ordered by magnitude); log(u + e) = log(u) + e/u.
  const Real e = select(detail::abs(x) < Real(1), x - (u - Real(1)), Real(1) - (u - x));
  const Real c = e / u;
  Real f;
  const Real k = detail::log_reduce(u, f);
  const Real y = detail::log_kernel(f, f / (Real(2) + f), k, c);
  const Real special = select(u == Real(0), -inf, select(u == inf, inf, nan));
  return select(x == Real(0), x, select((u > Real(0)) & (u < inf), y, special));
}

/// The logistic sigmoid 1 / (1 + e^-x), without overflow for any x; subnormal for x below about -708
/// (double) or -87 (float), as the exact value is.
template <class Real>
KOKKOS_FORCEINLINE_FUNCTION Real sigmoid(Real x) {
  detail::check_real<Real>();
  const Real t = elementary::exp(-detail::abs(x));  // e^-|x| in [0, 1]
  return detail::select(x < Real(0), t, Real(1)) / (Real(1) + t);
}

/// softplus(x) = log(1 + e^x), as max(x, 0) + log1p(e^-|x|): no overflow, and e^x (subnormal
/// included) for very negative x.
template <class Real>
KOKKOS_FORCEINLINE_FUNCTION Real softplus(Real x) {
  detail::check_real<Real>();
  using detail::select;
  const Real t = elementary::exp(-detail::abs(x));  // e^-|x| in [0, 1]
  // log1p(t) for t in [0, 1] (or NaN): u = 1 + t is in [1, 2], so the reduction is one select.
  const Real u = Real(1) + t;
  const Real c = (t - (u - Real(1))) / u;  // the rounding error of 1 + t, relative to u
  constexpr Real sqrt2 = Real(1.41421356237309504880);
  const bool upper = u >= sqrt2;
  const Real f = select(upper, Real(0.5) * u, u) - Real(1);
  const Real y = detail::log_kernel(f, f / (Real(2) + f), select(upper, Real(1), Real(0)), c);
  return select(x > Real(0), x, Real(0)) + y;
}

/// Hyperbolic tangent, accurate near 0 (tanh(x) = x for tiny x, tanh(-0) = -0), +-1 at +-inf.
template <class Real>
KOKKOS_FORCEINLINE_FUNCTION Real tanh(Real x) {
  detail::check_real<Real>();
  // tanh|x| = -t / (2 + t) with t = expm1(-2|x|) in [-1, 0]: no overflow, no cancellation.
  const Real t = elementary::expm1(Real(-2) * detail::abs(x));
  return detail::copysign(-t / (Real(2) + t), x);
}

/// Largest |x| sin_cos accepts; beyond it (and for +-inf or NaN) both results are NaN.
template <class Real>
KOKKOS_FORCEINLINE_FUNCTION constexpr Real sin_cos_max_argument() {
  // n = round(2x / pi) must make n * pio2_1 exact: 20 bits (double) or 12 (float).
  return std::is_same<Real, double>::value ? Real(0x1p20) : Real(0x1p12);
}

/// s = sin(x) and c = cos(x). Within the stated accuracy on [-2 pi, 2 pi] (Box-Muller needs [0, 2 pi]);
/// up to sin_cos_max_argument() the absolute error stays within a few ulp of 1 (the reduction is not
/// exact enough for relative accuracy at the zeros there); beyond it, and for +-inf and NaN, both are
/// NaN rather than a silently wrong value.
template <class Real>
KOKKOS_FORCEINLINE_FUNCTION void sin_cos(Real x, Real& s, Real& c) {
  detail::check_real<Real>();
  using detail::select;
  using F = detail::Format<Real>;
  using B = detail::Bits<Real>;
  constexpr bool is_double = std::is_same<Real, double>::value;
  // pi/2 in four parts, the first three short enough (33 bits for double, 12 for float) that their
  // products with n are exact for |n| < 2^20 or 2^12. Near a zero of sin or cos in [-2 pi, 2 pi],
  // where x is within a few ulp of n pi/2, the first three subtractions are then exact (Sterbenz) and only
  // the last one rounds, so r keeps its full relative accuracy however much cancels.
  constexpr Real p1 = is_double ? Real(0x1.921fb54400000p+0) : Real(0x1.922p+0f);
  constexpr Real p2 = is_double ? Real(0x1.0b4611a600000p-34) : Real(-0x1.2aep-18f);
  constexpr Real p3 = is_double ? Real(0x1.3198a2e000000p-69) : Real(-0x1.deap-31f);
  constexpr Real p4 = is_double ? Real(0x1.b839a252049c1p-104) : Real(0x1.184698p-44f);
  constexpr Real two_over_pi = is_double ? Real(0x1.45f306dc9c883p-1) : Real(0x1.45f306p-1f);
  const Real shifted = x * two_over_pi + F::round_shift;
  const B q = detail::bit_cast<B>(shifted);  // n mod 4 in the low bits: those of round_shift are 0
  const Real n = shifted - F::round_shift;
  const Real r = (((x - n * p1) - n * p2) - n * p3) - n * p4;
  const Real z = r * r;
  const Real sr = r + (r * z) * detail::sin_s(z);
  const Real hz = Real(0.5) * z;
  const Real w = Real(1) - hz;
  // 1 - hz rounded, plus its rounding error exactly (fdlibm's k_cos.c).
  const Real cr = w + (((Real(1) - w) - hz) + (z * z) * detail::cos_c(z));
  // Quadrant n mod 4: swap sin and cos on odd n; negate sin for n = 2, 3 and cos for n = 1, 2.
  const bool swap = (q & 1u) != 0;
  const Real s1 = detail::negate_if((q & 2u) != 0, select(swap, cr, sr));
  const Real c1 = detail::negate_if(((q + 1u) & 2u) != 0, select(swap, sr, cr));
  constexpr Real cap = sin_cos_max_argument<Real>();
  const Real nan = detail::quiet_nan<Real>();
  const bool in_domain = detail::abs(x) <= cap;
  // sin(-0) = -0: r + r z S(z) would give +0.
  s = select(in_domain, select(x == Real(0), x, s1), nan);
  c = select(in_domain, c1, nan);
}

}  // namespace elementary
}  // namespace scorekit
