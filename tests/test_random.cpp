// The counter-based generator: Philox4x32-10 against the known-answer vectors of its authors
// (Random123's kat_vectors), exact open uniforms, the distributions of its uniforms and normals,
// independence across (particle, step, stream), the bound random.hpp states on how far normals of builds
// that contract a * b + c differently are apart (a build with FMA contraction against one without, and
// each against a long double reference), and the draws inside kernels on every backend against the
// host's: bitwise on the host backends, uniforms bitwise and normals within that bound on a GPU.
#include <scorekit/core/random.hpp>
#include <scorekit/metrics/statistical_tests.hpp>

#include <catch2/catch.hpp>

#include "backends.hpp"
#include "contraction/contraction.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

using scorekit_test::Backends;

TEST_CASE("Philox4x32-10 reproduces the published known-answer vectors", "[random]") {
  const auto check = [](scorekit::Philox4x32Block ctr, std::uint32_t k0, std::uint32_t k1,
                        std::array<std::uint32_t, 4> expected) {
    const auto out = scorekit::philox4x32_10(ctr, k0, k1);
    for (int i = 0; i < 4; ++i) REQUIRE(out.v[i] == expected[std::size_t(i)]);
  };
  check({{0, 0, 0, 0}}, 0, 0, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  check({{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu, 0xffffffffu,
        {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  check({{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u, 0x299f31d0u,
        {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEMPLATE_TEST_CASE("Uniforms lie in (0, 1) and normals are standard normal", "[random]", double, float) {
  using Real = TestType;
  // 200,000 draws spread over particles and steps. Each Kolmogorov-Smirnov test is at level 1e-4, and
  // moments are within 4.5 standard errors: SE(mean) = 1 / sqrt(n), SE(variance) = sqrt(2 / (n - 1)).
  const int particles = 1000, steps = 100;
  std::vector<double> u, z;
  for (int i = 0; i < particles; ++i)
    for (int t = 0; t < steps; ++t) {
      scorekit::CounterRng<Real> rng(2026, std::uint64_t(i), std::uint64_t(t));
      const Real a = rng.uniform();
      REQUIRE(a > Real(0));
      REQUIRE(a < Real(1));
      u.push_back(double(a));
      z.push_back(double(rng.normal()));
      z.push_back(double(rng.normal()));
    }
  const auto ks_u = scorekit::ks_test(u, [](double x) { return x < 0 ? 0.0 : (x > 1 ? 1.0 : x); });
  INFO("uniform KS p-value " << ks_u.p_value);
  REQUIRE(ks_u.p_value > 1e-4);
  const auto ks_z = scorekit::ks_test_normal(z, 0, 1);
  INFO("normal KS p-value " << ks_z.p_value);
  REQUIRE(ks_z.p_value > 1e-4);
  const double n = double(z.size());
  double mean = 0, var = 0;
  for (double v : z) mean += v;
  mean /= n;
  for (double v : z) var += (v - mean) * (v - mean);
  var /= n - 1;
  REQUIRE(std::abs(mean) < 4.5 / std::sqrt(n));
  REQUIRE(std::abs(var - 1) < 4.5 * std::sqrt(2 / (n - 1)));
}

TEST_CASE("Streams of different particles, steps and streams are uncorrelated", "[random]") {
  // The sample correlation of n independent pairs has SE 1 / sqrt(n); require |r| < 4.5 / sqrt(n).
  const int n = 50000;
  auto corr = [&](auto first, auto second) {
    double sxy = 0, sxx = 0, syy = 0;
    for (int i = 0; i < n; ++i) {
      const double x = first(i), y = second(i);
      sxy += x * y;
      sxx += x * x;
      syy += y * y;
    }
    return sxy / std::sqrt(sxx * syy);
  };
  using R = scorekit::CounterRng<double>;
  const double bound = 4.5 / std::sqrt(double(n));
  // neighbouring particles, neighbouring steps, the two streams of one (particle, step), two seeds
  REQUIRE(std::abs(corr([](int i) { return R(1, std::uint64_t(i), 5).normal(); },
                        [](int i) { return R(1, std::uint64_t(i) + 1, 5).normal(); })) < bound);
  REQUIRE(std::abs(corr([](int i) { return R(1, 7, std::uint64_t(i)).normal(); },
                        [](int i) { return R(1, 7, std::uint64_t(i) + 1).normal(); })) < bound);
  REQUIRE(
      std::abs(corr([](int i) { return R(1, std::uint64_t(i), 3, scorekit::RngStream::proposal).normal(); },
                    [](int i) { return R(1, std::uint64_t(i), 3, scorekit::RngStream::accept).normal(); })) <
      bound);
  REQUIRE(std::abs(corr([](int i) { return R(1, std::uint64_t(i), 3).normal(); },
                        [](int i) { return R(2, std::uint64_t(i), 3).normal(); })) < bound);
  // Successive normals of one generator: the Box-Muller pair and the next block.
  REQUIRE(std::abs(corr(
              [](int i) {
                R r(9, std::uint64_t(i), 0);
                return r.normal();
              },
              [](int i) {
                R r(9, std::uint64_t(i), 0);
                r.normal();
                return r.normal();
              })) < bound);
}

TEMPLATE_TEST_CASE("Uniforms are exact odd multiples of 2^-53 (float: 2^-24), strictly inside (0, 1)",
                   "[random]", double, float) {
  using Real = TestType;
  using R = scorekit::CounterRng<Real>;
  constexpr int bits = std::numeric_limits<Real>::digits;  // 53 or 24
  const long double unit = std::ldexp(1.0L, -bits);
  // The extremes: all bits 0 and all bits 1 (the old (u + 1/2) 2^-53 rounded to 1 there).
  CHECK(static_cast<long double>(R::to_open_unit(0, 0)) == unit);
  CHECK(static_cast<long double>(R::to_open_unit(0xffffffffu, 0xffffffffu)) == 1 - unit);
  CHECK(R::to_open_unit(0xffffffffu, 0xffffffffu) < Real(1));
  // Every value is exactly (top bits | 1) 2^-bits: nothing was rounded.
  int inexact = 0;
  for (int i = 0; i < 100000; ++i) {
    const scorekit::Philox4x32Block b = R(5, std::uint64_t(i), 0).bits();
    const std::uint64_t k = bits == 53 ? ((((std::uint64_t(b.v[0]) << 32) | b.v[1]) >> 11) | 1u)
                                       : std::uint64_t((b.v[0] >> 8) | 1u);
    inexact += static_cast<long double>(R::to_open_unit(b.v[0], b.v[1])) ==
                       std::ldexp(static_cast<long double>(k), -bits)
                   ? 0
                   : 1;
  }
  CHECK(inexact == 0);
}

namespace scorekit_test {

/// The bound core/random.hpp states on the normals of two builds that contract a * b + c differently,
/// recomputed from the same error analysis and the same inputs: the largest errors of core/elementary.hpp
/// (its table, measured with and without contraction), e_log for log and e_trig for the larger of sin
/// and cos on [0, 2 pi].
template <class Real>
struct NormalBound {
  static constexpr bool is_double = std::is_same<Real, double>::value;
  static constexpr long double e_log = is_double ? 0.76L : 0.75L;
  static constexpr long double e_trig = is_double ? 1.44L : 1.46L;
  static constexpr long double eps = is_double ? 0x1p-53L : 0x1p-24L;
  /// One build against the exact value: absolutely in units of eps r, relatively in ulp of z.
  static constexpr long double one_absolute = e_log + e_trig + 2;
  static constexpr long double one_ulp = e_log + 2 * e_trig + 2;
  /// Two builds against each other: twice that (8.40 and 11.28 for double, 8.42 and 11.34 for float).
  static constexpr long double two_absolute = 2 * one_absolute;
  static constexpr long double two_ulp = 2 * one_ulp;
  /// The bounds are first order in eps; the products of the relative errors add less than 16 eps of it.
  static constexpr long double higher_order = 1 + 16 * eps;
  /// What the long double reference may add, in units of eps (r) or ulp: a few roundings at 2^-64.
  static constexpr long double reference = 8 * std::numeric_limits<long double>::epsilon() / eps;
};

/// The exact radius r = sqrt(-2 log u1) and cos and sin of theta = 2 pi u2 (rounded as normal() rounds
/// it) for the normals normal() makes from the block b.
template <class Real>
std::array<long double, 3> exact_box_muller(scorekit::Philox4x32Block b) {
  using R = scorekit::CounterRng<Real>;
  const Real u1 = R::to_open_unit(b.v[0], b.v[1]);
  const Real u2 = R::to_open_unit(b.v[2], b.v[3]);
  const Real theta = Real(2) * scorekit::math::pi<Real>() * u2;  // one product, as in normal()
  const long double r = std::sqrt(-2 * std::log(static_cast<long double>(u1)));
  return {r, std::cos(static_cast<long double>(theta)), std::sin(static_cast<long double>(theta))};
}

/// One unit in the last place of Real at |x| (x normal in Real).
template <class Real>
long double ulp_of(long double x) {
  int e = 0;
  std::frexp(std::fabs(x), &e);
  return std::ldexp(1.0L, e - std::numeric_limits<Real>::digits);
}

template <class Real>
bool same_bits(Real a, Real b) {
  return std::memcmp(&a, &b, sizeof(Real)) == 0;
}

/// The largest differences between two sets of normals: in ulp (at the smaller magnitude of the two;
/// infinite for different signs or a non-finite value), absolutely, and absolutely in units of eps r.
struct Spread {
  long double ulp = 0, absolute = 0, per_eps_r = 0;
  long long differing = 0, count = 0;

  template <class Real>
  void add(Real a, Real b, long double r) {
    ++count;
    if (same_bits(a, b)) return;
    ++differing;
    long double u = std::numeric_limits<long double>::infinity();
    if (std::isfinite(a) && std::isfinite(b) && a != 0 && b != 0 && std::signbit(a) == std::signbit(b))
      u = std::fabs(static_cast<long double>(a) - b) / ulp_of<Real>(std::min(std::fabs(a), std::fabs(b)));
    record(u, std::fabs(static_cast<long double>(a) - b), r, NormalBound<Real>::eps);
  }
  /// a against its exact value z (ulp taken at z).
  template <class Real>
  void add_exact(Real a, long double z, long double r) {
    ++count;
    const long double d = std::fabs(static_cast<long double>(a) - z);
    differing += d != 0 ? 1 : 0;
    record(d / ulp_of<Real>(z), d, r, NormalBound<Real>::eps);
  }
  void record(long double u, long double d, long double r, long double eps) {
    if (!(u <= ulp)) ulp = u;  // NaN propagates
    if (!(d <= absolute)) absolute = d;
    if (!(d / (eps * r) <= per_eps_r)) per_eps_r = d / (eps * r);
  }
};

/// 10^6 normals (5 10^5 Box-Muller pairs) drawn by the build without contraction, by the one with it
/// (where there is one and this CPU runs it), and in this file's own build, each against the others and
/// against the exact values.
template <class Real>
struct ContractionMeasurement {
  bool have_on = false;
  Spread off_exact, on_exact, on_off, here_off;
};

template <class Real>
ContractionMeasurement<Real> measure_contraction() {
  const std::int64_t pairs = 500000;
  const std::uint64_t seed = 20261123, step = 3;
  ContractionMeasurement<Real> m;
  std::vector<Real> off(std::size_t(2 * pairs)), on;
  contraction_off::draw_normal_pairs(seed, step, pairs, off.data());
#ifdef SCOREKIT_TEST_CONTRACTION_ON
  if (cpu_runs_contraction_on()) {
    m.have_on = true;
    on.resize(off.size());
    contraction_on::draw_normal_pairs(seed, step, pairs, on.data());
  }
#endif
  for (std::int64_t i = 0; i < pairs; ++i) {
    scorekit::CounterRng<Real> rng(seed, std::uint64_t(i), step);
    const auto e = exact_box_muller<Real>(scorekit::CounterRng<Real>(seed, std::uint64_t(i), step).bits());
    const std::size_t k = std::size_t(2 * i);
    const Real here0 = rng.normal(), here1 = rng.normal();
    m.here_off.add(here0, off[k], e[0]);
    m.here_off.add(here1, off[k + 1], e[0]);
    m.off_exact.add_exact(off[k], e[0] * e[1], e[0]);
    m.off_exact.add_exact(off[k + 1], e[0] * e[2], e[0]);
    if (m.have_on) {
      m.on_exact.add_exact(on[k], e[0] * e[1], e[0]);
      m.on_exact.add_exact(on[k + 1], e[0] * e[2], e[0]);
      m.on_off.add(on[k], off[k], e[0]);
      m.on_off.add(on[k + 1], off[k + 1], e[0]);
    }
  }
  return m;
}

}  // namespace scorekit_test

TEMPLATE_TEST_CASE("Normals of builds with and without FMA contraction are within random.hpp's bound",
                   "[random][contraction]", double, float) {
  using Real = TestType;
  using B = scorekit_test::NormalBound<Real>;
  const auto m = scorekit_test::measure_contraction<Real>();
  // Each build against the exact values: the premise of the bound (elementary functions within their
  // table's errors under either rounding, on exactly the arguments Box-Muller gives them).
  INFO("without contraction vs exact: " << double(m.off_exact.per_eps_r) << " eps r, "
                                        << double(m.off_exact.ulp) << " ulp");
  CHECK(m.off_exact.per_eps_r <= B::one_absolute * B::higher_order + B::reference);
  CHECK(m.off_exact.ulp <= B::one_ulp * B::higher_order + B::reference);
#if defined(__x86_64__) && !defined(__FMA__)
  // Plain x86-64 code has no FMA to contract into: this file's build rounds as the uncontracted one.
  CHECK(m.here_off.differing == 0);
#endif
#ifdef SCOREKIT_TEST_CONTRACTION_ON
  if (!m.have_on) {
    WARN("this CPU has no FMA: the contracted build is not run");
    return;
  }
  INFO("with contraction vs exact: " << double(m.on_exact.per_eps_r) << " eps r, " << double(m.on_exact.ulp)
                                     << " ulp");
  CHECK(m.on_exact.per_eps_r <= B::one_absolute * B::higher_order + B::reference);
  CHECK(m.on_exact.ulp <= B::one_ulp * B::higher_order + B::reference);
  // The two builds against each other: the bound random.hpp states.
  INFO("with vs without contraction: " << m.on_off.differing << " of " << m.on_off.count << " differ, by "
                                       << double(m.on_off.per_eps_r) << " eps r, " << double(m.on_off.ulp)
                                       << " ulp, " << double(m.on_off.absolute) << " absolutely");
  CHECK(m.on_off.per_eps_r <= B::two_absolute * B::higher_order);
  CHECK(m.on_off.ulp <= B::two_ulp * B::higher_order);
  // Otherwise the two builds are one and the comparison proves nothing.
  CHECK(m.on_off.differing > 0);
#else
  WARN(
      "built without the contracted variant (the compiler has no target(\"fma\")): only the "
      "uncontracted build is checked");
#endif
}

TEST_CASE("Measured differences of normals with and without FMA contraction", "[.random-report]") {
  auto report = [](const char* type, auto m, auto bound) {
    using B = decltype(bound);
    auto line = [&](const char* what, const scorekit_test::Spread& s, long double abs_bound,
                    long double ulp_bound) {
      std::printf(
          "%-6s %-32s %7lld of %7lld differ  max %.3Lf eps r (bound %.2Lf)  %.3Lf ulp (bound %.2Lf)  "
          "%.3Le absolute\n",
          type, what, s.differing, s.count, s.per_eps_r, abs_bound, s.ulp, ulp_bound, s.absolute);
    };
    line("without contraction vs exact", m.off_exact, B::one_absolute, B::one_ulp);
    if (m.have_on) {
      line("with contraction vs exact", m.on_exact, B::one_absolute, B::one_ulp);
      line("with vs without contraction", m.on_off, B::two_absolute, B::two_ulp);
    }
    line("this build vs without", m.here_off, 0, 0);
  };
  report("double", scorekit_test::measure_contraction<double>(), scorekit_test::NormalBound<double>{});
  report("float", scorekit_test::measure_contraction<float>(), scorekit_test::NormalBound<float>{});
}

namespace scorekit_test {

/// For i < n, CounterRng<Real>(seed, i, 12)'s normal, normal, uniform, normal, normal drawn in a kernel on
/// Exec: row i of the result is [5 i, 5 i + 5).
template <class Exec, class Real>
std::vector<Real> draws_in_kernel(std::uint64_t seed, int n) {
  Kokkos::View<Real* [5], typename Exec::memory_space> v("draws", n);
  Kokkos::parallel_for(
      "draw", Kokkos::RangePolicy<Exec>(0, n), KOKKOS_LAMBDA(const int i) {
        scorekit::CounterRng<Real> rng(seed, std::uint64_t(i), 12);
        v(i, 0) = rng.normal();
        v(i, 1) = rng.normal();
        v(i, 2) = rng.uniform();
        v(i, 3) = rng.normal();
        v(i, 4) = rng.normal();
      });
  const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  std::vector<Real> out(std::size_t(n) * 5);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < 5; ++j) out[std::size_t(5 * i + j)] = h(i, j);
  return out;
}

/// The kernel's draws against the same draws on the host: uniforms bitwise everywhere; normals bitwise
/// on the host backends (the same compiler and flags as this loop) and within random.hpp's bound on a
/// device, whose compiler may contract a * b + c differently (nvcc does by default).
template <class Exec, class Real>
void check_kernel_draws() {
  using B = NormalBound<Real>;
  const int n = 100003;
  const std::uint64_t seed = 77;
  const std::vector<Real> d = draws_in_kernel<Exec, Real>(seed, n);
  Spread normals;
  int uniform_mismatches = 0;
  for (int i = 0; i < n; ++i) {
    scorekit::CounterRng<Real> rng(seed, std::uint64_t(i), 12), blocks(seed, std::uint64_t(i), 12);
    const Real* row = d.data() + 5 * i;
    const auto first = exact_box_muller<Real>(blocks.bits());
    blocks.bits();  // the uniform's
    const auto second = exact_box_muller<Real>(blocks.bits());
    normals.add(row[0], rng.normal(), first[0]);
    normals.add(row[1], rng.normal(), first[0]);
    uniform_mismatches += same_bits(row[2], rng.uniform()) ? 0 : 1;
    normals.add(row[3], rng.normal(), second[0]);
    normals.add(row[4], rng.normal(), second[0]);
  }
  INFO((std::is_same<Real, double>::value ? "double" : "float")
       << ": " << normals.differing << " of " << normals.count << " normals differ, by at most "
       << double(normals.per_eps_r) << " eps r, " << double(normals.ulp) << " ulp");
  CHECK(uniform_mismatches == 0);
  if (std::is_same<typename Exec::memory_space, Kokkos::HostSpace>::value) {  // a host backend
    CHECK(normals.differing == 0);
  } else {
    CHECK(normals.per_eps_r <= B::two_absolute * B::higher_order);
    CHECK(normals.ulp <= B::two_ulp * B::higher_order);
  }
}

/// fill_normal and for_each_normal against n calls of normal(), in a kernel on Exec: the same bits, and
/// the same state after (the next normal() agrees), for n = 0..70 (odd and even, past for_each_normal's
/// blocks of 32) with and without a cached sine at the start.
template <class Exec, class Real>
void check_block_draws() {
  using Mem = typename Exec::memory_space;
  const int cases = 2 * 71;  // (n, a normal drawn before or not)
  Kokkos::View<int*, Mem> wrong("wrong", std::size_t(cases));
  Kokkos::parallel_for(
      "check_block_draws", Kokkos::RangePolicy<Exec>(0, cases), KOKKOS_LAMBDA(const int c) {
        const int n = c / 2;
        Real a[71], b[71], e[71];
        scorekit::CounterRng<Real> ra(11, std::uint64_t(c), 5), rb(11, std::uint64_t(c), 5),
            re(11, std::uint64_t(c), 5);
        if (c % 2) {
          ra.normal();
          rb.normal();
          re.normal();
        }
        for (int j = 0; j < n; ++j) a[j] = ra.normal();
        rb.fill_normal(b, n);
        re.for_each_normal(n, [&](int j, Real z) { e[j] = z; });
        a[n] = ra.normal();
        b[n] = rb.normal();
        e[n] = re.normal();
        using Bits = std::conditional_t<sizeof(Real) == 8, std::uint64_t, std::uint32_t>;
        int count = 0;
        for (int j = 0; j <= n; ++j) {
          const Bits bits_a = scorekit::elementary::detail::bit_cast<Bits>(a[j]);
          const Bits bits_b = scorekit::elementary::detail::bit_cast<Bits>(b[j]);
          const Bits bits_e = scorekit::elementary::detail::bit_cast<Bits>(e[j]);
          count += (bits_a != bits_b) + (bits_a != bits_e);
        }
        wrong(c) = count;
      });
  const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), wrong);
  for (int c = 0; c < cases; ++c) {
    INFO("n = " << c / 2 << (c % 2 ? ", one normal drawn before" : ", fresh generator"));
    CHECK(h(c) == 0);
  }
}

}  // namespace scorekit_test

TEMPLATE_LIST_TEST_CASE(
    "fill_normal and for_each_normal draw the same bits as normal() one at a time, and leave the same state",
    "[random][threads]", Backends) {
  scorekit_test::check_block_draws<TestType, double>();
  scorekit_test::check_block_draws<TestType, float>();
}

TEMPLATE_LIST_TEST_CASE(
    "Draws inside a kernel equal the host's: uniforms bitwise, normals bitwise on the host "
    "backends and within random.hpp's bound on a device",
    "[random][threads]", Backends) {
  scorekit_test::check_kernel_draws<TestType, double>();
  scorekit_test::check_kernel_draws<TestType, float>();
}
