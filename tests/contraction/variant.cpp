// One of the two builds of this code that tests/contraction/contraction.hpp describes: the namespace
// comes from SCOREKIT_TEST_CONTRACTION_NAMESPACE (contraction_off or contraction_on), the rounding from
// the flags tests/CMakeLists.txt gives this file: -ffp-contract=off, or -ffp-contract=fast with
// SCOREKIT_TEST_CONTRACTION_TARGET_FMA, which builds the entry points below for a CPU with FMA
// (target("fma"), the function-level -mfma). The attribute rather than -mfma on the whole file: the
// Kokkos headers make this file emit inline functions of their own (weak symbols), and a copy built
// with -mfma, which implies AVX, could be the one the linker keeps for the whole test binary, which
// must run on CPUs without FMA too.
//
// Every entry point is flattened (everything it calls is inlined into it, and so compiled with its
// flags and target): CounterRng::normal() and philox4x32_10 are inline functions, and an out-of-line
// copy would be one symbol for the linker to pick from either build, so that both namespaces could end
// up running the same code.
#include "contraction.hpp"

#include <scorekit/core/elementary.hpp>
#include <scorekit/core/random.hpp>

#ifndef SCOREKIT_TEST_CONTRACTION_NAMESPACE
#error "define SCOREKIT_TEST_CONTRACTION_NAMESPACE to contraction_off or contraction_on"
#endif

#if SCOREKIT_TEST_CONTRACTION_TARGET_FMA
#define SCOREKIT_TEST_ENTRY __attribute__((target("fma"), flatten))
#else
#define SCOREKIT_TEST_ENTRY __attribute__((flatten))
#endif

namespace scorekit_test {
namespace SCOREKIT_TEST_CONTRACTION_NAMESPACE {

namespace {
template <class Real>
SCOREKIT_TEST_ENTRY void draw_pairs(std::uint64_t seed, std::uint64_t step, std::int64_t pairs, Real* out) {
  for (std::int64_t i = 0; i < pairs; ++i) {
    scorekit::CounterRng<Real> rng(seed, std::uint64_t(i), step);
    out[2 * i] = rng.normal();
    out[2 * i + 1] = rng.normal();
  }
}

template <class Real>
SCOREKIT_TEST_ENTRY void evaluate(const Real* x, std::int64_t n, Real* out) {
  namespace el = scorekit::elementary;
  for (std::int64_t i = 0; i < n; ++i) {
    Real* o = out + contraction_elementary_functions * i;
    o[0] = el::exp(x[i]);
    o[1] = el::expm1(x[i]);
    o[2] = el::log(x[i]);
    o[3] = el::log1p(x[i]);
    o[4] = el::sigmoid(x[i]);
    o[5] = el::softplus(x[i]);
    o[6] = el::tanh(x[i]);
    el::sin_cos(x[i], o[7], o[8]);
  }
}
}  // namespace

SCOREKIT_TEST_ENTRY void draw_normal_pairs(std::uint64_t seed, std::uint64_t step, std::int64_t pairs,
                                           double* out) {
  draw_pairs(seed, step, pairs, out);
}
SCOREKIT_TEST_ENTRY void draw_normal_pairs(std::uint64_t seed, std::uint64_t step, std::int64_t pairs,
                                           float* out) {
  draw_pairs(seed, step, pairs, out);
}
SCOREKIT_TEST_ENTRY void evaluate_elementary(const double* x, std::int64_t n, double* out) {
  evaluate(x, n, out);
}
SCOREKIT_TEST_ENTRY void evaluate_elementary(const float* x, std::int64_t n, float* out) {
  evaluate(x, n, out);
}

SCOREKIT_TEST_ENTRY void mixture_scores(const HostMixture& m, const double* x, int n, double a, double sigma,
                                        int level, double* block, double* single, double* work) {
  const int d = m.dim(), ws = m.workspace_size(), B = HostMixture::max_block;
  for (int i0 = 0; i0 < n; i0 += B) {
    const int nb = n - i0 < B ? n - i0 : B;
    m.score_block(nb, x + i0 * d, d, a, sigma, level, block + i0 * d, d, work, ws);
  }
  for (int i = 0; i < n; ++i) m.score_at(x + i * d, a, sigma, level, single + i * d, work);
}

}  // namespace SCOREKIT_TEST_CONTRACTION_NAMESPACE
}  // namespace scorekit_test
