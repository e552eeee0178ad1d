// scorekit's MALA step inside your own kernel. A simulation code often has its own per-particle loop
// (here: accumulating an observable, the time average of each particle's position) and wants one sampler
// step per iteration in the same kernel rather than a separate sampler run. scorekit::MalaStep is that
// step: a small value type, callable on the device, that works on memory the caller owns. The same call
// with the same (seed, particle, iteration) is what scorekit::mala makes, so the particles end bitwise
// equal to a mala() run; this program checks that, and the time-averaged mean against the exact one.
//
//   build/default/examples/user_kernel_step
#include <scorekit/density/draw.hpp>
#include <scorekit/sample/langevin.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

// The user's density: a correlated Gaussian N(m, C) in 2-D, m = (1, -2), C = [[1, 0.8], [0.8, 1]], through
// its precision P = C^-1 = [[1, -0.8], [-0.8, 1]] / 0.36. No workspace_size(): it needs no scratch.
struct CorrelatedGaussian {
  using value_type = double;
  KOKKOS_INLINE_FUNCTION int dim() const { return 2; }
  KOKKOS_INLINE_FUNCTION double log_prob(const double* x) const {
    const double a = x[0] - 1, b = x[1] + 2;
    return -0.5 * (a * a - 1.6 * a * b + b * b) / 0.36;
  }
  KOKKOS_INLINE_FUNCTION void score(const double* x, double* out) const {
    const double a = x[0] - 1, b = x[1] + 2;
    out[0] = -(a - 0.8 * b) / 0.36;
    out[1] = -(b - 0.8 * a) / 0.36;
  }
};

using Exec = Kokkos::DefaultExecutionSpace;
using Matrix = Kokkos::View<double**, Kokkos::LayoutRight, Exec::memory_space>;

// The user's kernel: for every particle, n_iterations of (own work, then one MALA step). `sums` receives
// each particle's sum of positions after burn_in. Returns the number of accepted proposals.
std::int64_t simulate(const CorrelatedGaussian& target, const Matrix& x, const Matrix& sums, double step_size,
                      int n_iterations, int burn_in, std::uint64_t seed) {
  using Step = scorekit::MalaStep<double>;
  const int d = target.dim();
  const Step mala(step_size, d);
  // Caller-owned memory: MALA's state between steps (s(x); log p(x) is a local below) and its scratch,
  // Step::scratch_size(d, workspace) values a particle (the step's vectors first, then the density's
  // workspace, none here).
  const Matrix grad("grad", x.extent(0), d);
  const Matrix scratch("scratch", x.extent(0), Step::scratch_size(d, scorekit::workspace_size(target)));
  std::int64_t accepted = 0;
  Kokkos::parallel_reduce(
      "user_simulation", Kokkos::RangePolicy<Exec>(0, x.extent(0)),
      KOKKOS_LAMBDA(const std::int64_t i, std::int64_t& acc) {
        double* xi = &x(i, 0);
        double* g = &grad(i, 0);
        double* vectors = &scratch(i, 0);
        double* work = vectors + Step::n_vectors * d;
        double log_p = mala.init(target, xi, g, work);  // again whenever this kernel moves x itself
        for (int t = 1; t <= n_iterations; ++t) {
          if (t > burn_in)  // the user's own per-particle work
            for (int j = 0; j < d; ++j) sums(i, j) += xi[j];
          if (mala.step(target, xi, log_p, g, seed, i, t, vectors, work)) ++acc;
        }
      },
      accepted);
  return accepted;
}

int main(int argc, char* argv[]) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  const CorrelatedGaussian target;
  const std::int64_t n = 4000;
  const int n_iterations = 2000, burn_in = 500;
  const double step_size = 0.5;
  const std::uint64_t seed = 7;

  Matrix x = scorekit::make_particles<double>(Exec(), n, 2);
  scorekit::fill_normal(Exec(), x, 0.0, 3.0, /*seed=*/1);
  Matrix y("y", n, 2);  // the same start for the comparison run
  Kokkos::deep_copy(y, x);

  const Matrix sums("sums", n, 2);
  const std::int64_t accepted = simulate(target, x, sums, step_size, n_iterations, burn_in, seed);
  const auto reference = scorekit::mala(Exec(), target, y, {step_size, n_iterations, seed});

  // Each particle's time average is one independent estimate of the mean; their spread gives the SE.
  auto h_sums = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), sums);
  const double exact[2] = {1.0, -2.0};
  const int kept = n_iterations - burn_in;
  bool ok = true;
  std::printf("acceptance rate %.3f (scorekit::mala: %.3f)\n", double(accepted) / double(n * n_iterations),
              reference.acceptance_rate);
  for (int j = 0; j < 2; ++j) {
    double mean = 0, square = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      const double average = h_sums(i, j) / kept;
      mean += average;
      square += average * average;
    }
    mean /= double(n);
    const double se = std::sqrt((square / double(n) - mean * mean) / double(n - 1));
    std::printf("mean of x_%d: %.4f (exact %.1f, standard error %.4f, %.1f SE away)\n", j, mean, exact[j], se,
                std::abs(mean - exact[j]) / se);
    ok = ok && std::abs(mean - exact[j]) < 5 * se;
  }
  auto hx = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x);
  auto hy = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), y);
  const bool same = std::memcmp(hx.data(), hy.data(), hx.size() * sizeof(double)) == 0;
  std::printf("final particles bitwise equal to scorekit::mala's: %s\n", same ? "yes" : "no");
  return ok && same ? 0 : 1;
}
