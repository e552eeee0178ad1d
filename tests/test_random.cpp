// The counter-based generator: Philox4x32-10 against the known-answer vectors of its authors
// (Random123's kat_vectors), the distributions of its uniforms and normals, independence across
// (particle, step, stream), and identical draws inside kernels on every backend.
#include <scorekit/core/random.hpp>
#include <scorekit/metrics/statistical_tests.hpp>

#include <catch2/catch.hpp>

#include "backends.hpp"

#include <array>
#include <cmath>
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

TEMPLATE_LIST_TEST_CASE("Draws inside a kernel equal the host's, bit for bit", "[random][threads]",
                        Backends) {
  using Exec = TestType;
  const int n = 4099;
  Kokkos::View<double* [3], typename Exec::memory_space> v("draws", n);
  Kokkos::parallel_for(
      "draw", Kokkos::RangePolicy<Exec>(0, n), KOKKOS_LAMBDA(const int i) {
        scorekit::CounterRng<double> rng(77, std::uint64_t(i), 12);
        v(i, 0) = rng.normal();
        v(i, 1) = rng.normal();
        v(i, 2) = rng.uniform();
      });
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  for (int i = 0; i < n; ++i) {
    scorekit::CounterRng<double> rng(77, std::uint64_t(i), 12);
    REQUIRE(h(i, 0) == rng.normal());
    REQUIRE(h(i, 1) == rng.normal());
    REQUIRE(h(i, 2) == rng.uniform());
  }
}
