// The branch-free elementary functions (core/elementary.hpp) against the standard library's, in
// values/s over a block of 4,096 values, the size of a block of network activations: exp and softplus,
// float (what networks use) and double. scorekit's versions run in a SCOREKIT_SIMD loop, which they
// let GCC vectorise; the std:: versions are one libm call per value in any loop (GCC has no vector
// versions of them without -ffast-math). One thread; no Kokkos kernel is involved.
//
//   bench_elementary [Google Benchmark flags]
#include "benchmark_context.hpp"

#include <scorekit/core/elementary.hpp>
#include <scorekit/core/random.hpp>

#include <benchmark/benchmark.h>
#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace {

namespace el = scorekit::elementary;

constexpr int block = 4096;

/// block values uniform on [-10, 10] (typical pre-activations; exp stays far from over- and underflow).
template <class Real>
std::vector<Real> inputs() {
  std::vector<Real> x(block);
  scorekit::CounterRng<double> rng(2026, 0, 0, scorekit::RngStream::init);
  for (auto& v : x) v = Real(-10 + 20 * rng.uniform());
  return x;
}

/// Runs y[i] = f(x[i]) over the block per iteration and reports values/s.
template <class Real, class Loop>
void run(benchmark::State& state, Loop loop) {
  const std::vector<Real> x = inputs<Real>();
  std::vector<Real> y(block);
  for (auto _ : state) {
    loop(x.data(), y.data(), block);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.counters["values_per_s"] =
      benchmark::Counter(double(state.iterations()) * block, benchmark::Counter::kIsRate);
}

template <class Real>
void exp_elementary(const Real* x, Real* y, int n) {
  SCOREKIT_SIMD
  for (int i = 0; i < n; ++i) y[i] = el::exp(x[i]);
}
template <class Real>
void exp_std(const Real* x, Real* y, int n) {
  for (int i = 0; i < n; ++i) y[i] = std::exp(x[i]);
}
template <class Real>
void softplus_elementary(const Real* x, Real* y, int n) {
  SCOREKIT_SIMD
  for (int i = 0; i < n; ++i) y[i] = el::softplus(x[i]);
}
template <class Real>
void softplus_std(const Real* x, Real* y, int n) {
  // The same formula as elementary::softplus, with libm.
  for (int i = 0; i < n; ++i) y[i] = std::max(x[i], Real(0)) + std::log1p(std::exp(-std::abs(x[i])));
}

template <class Real>
void register_all(const char* type) {
  const std::string t(type);
  benchmark::RegisterBenchmark(("exp/" + t + "/elementary").c_str(),
                               [](benchmark::State& s) { run<Real>(s, exp_elementary<Real>); });
  benchmark::RegisterBenchmark(("exp/" + t + "/std").c_str(),
                               [](benchmark::State& s) { run<Real>(s, exp_std<Real>); });
  benchmark::RegisterBenchmark(("softplus/" + t + "/elementary").c_str(),
                               [](benchmark::State& s) { run<Real>(s, softplus_elementary<Real>); });
  benchmark::RegisterBenchmark(("softplus/" + t + "/std").c_str(),
                               [](benchmark::State& s) { run<Real>(s, softplus_std<Real>); });
}

}  // namespace

int main(int argc, char** argv) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  scorekit_bench::add_benchmark_context();
  benchmark::AddCustomContext("block", std::to_string(block));
  register_all<float>("float");
  register_all<double>("double");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
