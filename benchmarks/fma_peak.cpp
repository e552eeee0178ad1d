// The machine's fused multiply-add peak in GFLOP/s, fp64 and fp32, on one thread and on all OpenMP
// threads: the yardstick the samplers' achieved GFLOP/s is read against.
//
// Each thread runs `Chains` independent vector accumulators through acc = acc * m + c. FMA units are
// pipelined (latency 4 cycles, two units on recent Intel cores), so at least latency x units = 8
// independent chains are needed to keep them busy; 12 leaves a margin and still fits the 16 vector
// registers of AVX2 (12 accumulators + m + c). The vectors are GCC vector extensions of a fixed byte
// width, so the same source runs at 128, 256 and (where the CPU has AVX-512) 512 bits: a width wider
// than the hardware's would be split into several instructions and spill registers, so only widths the
// target supports are measured. GCC's -march=native tuning for Intel server cores prefers 256-bit vectors
// for auto-vectorised loops, which is why the 256-bit figure is printed too: it is the ceiling of code
// the compiler vectorises by itself.
//
// One FMA counts as 2 FLOP. m = 1 - 2^-20 and c are read from volatiles, so the compiler cannot fold the
// loop, and the accumulators converge to c / (1 - m) instead of overflowing; their sum is printed and
// checked, so the loop cannot be dropped.
//
//   fma_peak [seconds per measurement, default 0.2]
// Output: one header line, then "precision width_bits threads GFLOP/s" rows.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace {

volatile double g_multiplier = 1.0 - 1.0 / 1048576.0;
volatile double g_addend = 1e-6;

template <class Real, int Bytes>
struct Vec {
  typedef Real type __attribute__((vector_size(Bytes)));
  static constexpr int lanes = Bytes / int(sizeof(Real));
};

constexpr int chains = 12;

/// Runs `iterations` rounds of `chains` vector FMAs and returns the sum of all lanes (for the check).
template <class Real, int Bytes>
__attribute__((noinline)) double fma_kernel(long iterations) {
  using V = typename Vec<Real, Bytes>::type;
  constexpr int lanes = Vec<Real, Bytes>::lanes;
  V m, c, acc[chains];
  for (int l = 0; l < lanes; ++l) {
    m[l] = Real(g_multiplier);
    c[l] = Real(g_addend);
  }
  for (int k = 0; k < chains; ++k)
    for (int l = 0; l < lanes; ++l) acc[k][l] = Real(k + l);
  for (long it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int k = 0; k < chains; ++k) acc[k] = acc[k] * m + c;
  }
  double sum = 0;
  for (int k = 0; k < chains; ++k)
    for (int l = 0; l < lanes; ++l) sum += double(acc[k][l]);
  return sum;
}

/// Best GFLOP/s over several timed runs of about `seconds` each on `threads` threads.
template <class Real, int Bytes>
double measure(int threads, double seconds, double* checksum) {
  constexpr int lanes = Vec<Real, Bytes>::lanes;
  const double flop_per_iteration = 2.0 * chains * lanes;
  // Calibrate the iteration count on one thread.
  long iterations = 1 << 16;
  for (;;) {
    const double t0 = omp_get_wtime();
    *checksum += fma_kernel<Real, Bytes>(iterations);
    const double t = omp_get_wtime() - t0;
    if (t > 0.02) {
      iterations = std::max(1L, long(double(iterations) * seconds / t));
      break;
    }
    iterations *= 4;
  }
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    double sum = 0;
    const double t0 = omp_get_wtime();
#pragma omp parallel num_threads(threads) reduction(+ : sum)
    sum += fma_kernel<Real, Bytes>(iterations);
    const double t = omp_get_wtime() - t0;
    *checksum += sum;
    best = std::max(best, flop_per_iteration * double(iterations) * threads / t * 1e-9);
  }
  return best;
}

template <class Real, int Bytes>
void row(const char* precision, int threads, double seconds, double* checksum) {
  const double gflops = measure<Real, Bytes>(threads, seconds, checksum);
  std::printf("%-9s %10d %7d %10.1f\n", precision, Bytes * 8, threads, gflops);
}

template <class Real>
void rows(const char* precision, int threads, double seconds, double* checksum) {
  row<Real, 16>(precision, threads, seconds, checksum);
#if defined(__AVX__)
  row<Real, 32>(precision, threads, seconds, checksum);
#endif
#if defined(__AVX512F__)
  row<Real, 64>(precision, threads, seconds, checksum);
#endif
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 0.2;
  if (!(seconds > 0)) {
    std::fprintf(stderr, "fma_peak: the time per measurement must be > 0 seconds\n");
    return 2;
  }
  const int all = omp_get_max_threads();
  double checksum = 0;
  std::printf("%-9s %10s %7s %10s\n", "precision", "width_bits", "threads", "GFLOP/s");
  for (int threads : {1, all}) {
    rows<double>("fp64", threads, seconds, &checksum);
    rows<float>("fp32", threads, seconds, &checksum);
    if (all == 1) break;
  }
  // Every accumulator stays finite and positive (it converges to c / (1 - m) from a positive start).
  if (!std::isfinite(checksum) || !(checksum > 0)) {
    std::fprintf(stderr, "fma_peak: the accumulators went wrong (checksum %g)\n", checksum);
    return 1;
  }
  std::printf("# checksum %.6g (accumulators are used, so the loops are not dropped)\n", checksum);
  return 0;
}
