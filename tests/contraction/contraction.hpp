// The same code built twice, with and without FMA contraction (tests/CMakeLists.txt compiles
// contraction/variant.cpp once with -ffp-contract=off into namespace contraction_off and, where the
// compiler has the target("fma") attribute, once with -ffp-contract=fast and its entry points built for
// FMA into contraction_on, and then defines SCOREKIT_TEST_CONTRACTION_ON for the tests). GCC contracts
// a * b + c into a fused multiply-add whenever the target has FMA, and nvcc does in device code by
// default, so these two stand for two builds that round differently: tests/test_random.cpp bounds how far
// their normals are apart, tests/test_elementary.cpp checks the elementary functions' ulp bound in both,
// tests/test_densities.cpp that a mixture's score_block gives each particle score()'s bits in both.
// contraction_on's code runs only where cpu_runs_contraction_on() says so.
#pragma once

#include <scorekit/density/gaussian_mixture.hpp>

#include <cstdint>

namespace scorekit_test {

using HostMixture = scorekit::GaussianMixture<double, Kokkos::HostSpace>;

namespace contraction_off {
/// out[2 i] and out[2 i + 1] are the first two normal() of CounterRng<Real>(seed, i, step), i < pairs.
void draw_normal_pairs(std::uint64_t seed, std::uint64_t step, std::int64_t pairs, double* out);
void draw_normal_pairs(std::uint64_t seed, std::uint64_t step, std::int64_t pairs, float* out);
/// out[9 i + j] for x[i], j in order: exp, expm1, log, log1p, sigmoid, softplus, tanh, sin, cos.
void evaluate_elementary(const double* x, std::int64_t n, double* out);
void evaluate_elementary(const float* x, std::int64_t n, float* out);
/// The scores of n particles (rows of x, n x d) of the law of a X + sigma Z for m at (a, sigma, level),
/// twice: by score_block in blocks of max_block (to block, n x d) and by score_at one at a time (to
/// single). `work` holds max_block workspace_size() values.
void mixture_scores(const HostMixture& m, const double* x, int n, double a, double sigma, int level,
                    double* block, double* single, double* work);
}  // namespace contraction_off

#ifdef SCOREKIT_TEST_CONTRACTION_ON
namespace contraction_on {
void draw_normal_pairs(std::uint64_t seed, std::uint64_t step, std::int64_t pairs, double* out);
void draw_normal_pairs(std::uint64_t seed, std::uint64_t step, std::int64_t pairs, float* out);
void evaluate_elementary(const double* x, std::int64_t n, double* out);
void evaluate_elementary(const float* x, std::int64_t n, float* out);
void mixture_scores(const HostMixture& m, const double* x, int n, double a, double sigma, int level,
                    double* block, double* single, double* work);
}  // namespace contraction_on

/// Whether this CPU runs contraction_on's code (built for FMA, which implies AVX).
inline bool cpu_runs_contraction_on() {
  return __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx");
}
#endif

/// The number of functions evaluate_elementary evaluates per point.
constexpr int contraction_elementary_functions = 9;

}  // namespace scorekit_test
