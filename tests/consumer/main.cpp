// A user's program built against the installed scorekit package (find_package(scorekit)).
#include <scorekit/scorekit.hpp>

#include <cmath>
#include <cstdio>

// The user's own density: a standard normal in 2-D, as a plain struct.
struct StandardNormal {
  using value_type = double;
  KOKKOS_INLINE_FUNCTION int dim() const { return 2; }
  KOKKOS_INLINE_FUNCTION double log_prob(const double* x) const { return -0.5 * (x[0] * x[0] + x[1] * x[1]); }
  KOKKOS_INLINE_FUNCTION void score(const double* x, double* out) const {
    out[0] = -x[0];
    out[1] = -x[1];
  }
};

int main(int argc, char* argv[]) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  auto x = scorekit::make_particles<double>(Kokkos::DefaultExecutionSpace(), 2000, 2);
  scorekit::fill_normal(Kokkos::DefaultExecutionSpace(), x, 0.0, 3.0, 1);
  auto r = scorekit::mala(Kokkos::DefaultExecutionSpace(), StandardNormal{}, x, {0.8, 200, 7});
  const Eigen::VectorXd mean = scorekit::sample_mean(Kokkos::DefaultExecutionSpace(), x);
  std::printf("consumer: MALA acceptance %.3f, mean (%.3f, %.3f)\n", r.acceptance_rate, mean[0], mean[1]);
  // 2000 draws of N(0, 1): the mean is within 5 standard errors (0.11) of 0.
  return (std::abs(mean[0]) < 5 / std::sqrt(2000.0) && std::abs(mean[1]) < 5 / std::sqrt(2000.0)) ? 0 : 1;
}
