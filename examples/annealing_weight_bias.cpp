// How well annealed Langevin recovers mixture weights, against its ladder and step: the measurement
// behind the settings of the test "Annealed Langevin recovers mixture weights where ULA and MALA do
// not" (tests/test_samplers.cpp). On 0.2 N((0,0), I) + 0.8 N((10,10), I) from a uniform start over
// [-5, 15]^2, it prints the weight of mode (0,0) for several settings, its bias and the bias in standard
// errors at this N and at the test's N = 10,000.
//
//   annealing_weight_bias [--particles N]      (default 100,000; about a minute on 2 cores)
#include <scorekit/scorekit.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char* argv[]) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  int n = 100000;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--particles") n = std::atoi(argv[i + 1]);
  if (n < 1000) {
    std::fprintf(stderr, "--particles must be at least 1000\n");
    return 2;
  }
  using Exec = Kokkos::DefaultExecutionSpace;
  using Mem = Exec::memory_space;
  Eigen::MatrixXd means(2, 2);
  means << 0, 0, 10, 10;
  const auto mixture = scorekit::GaussianMixture<double, Mem>::isotropic(Eigen::Vector2d(0.2, 0.8), means,
                                                                         Eigen::Vector2d(1, 1));
  struct Setting {
    double first, last;
    int levels, steps;
    double eps;
  };
  const Setting settings[] = {{20, 1, 10, 100, 0.1},  {20, 1, 10, 100, 0.02}, {20, 1, 10, 100, 0.3},
                              {20, 1, 10, 300, 0.3},  {20, 1, 10, 600, 0.3},  {20, 1, 30, 100, 0.3},
                              {20, 0.5, 10, 100, 0.3}};
  std::printf("N = %d particles; the test uses N = 10,000 and allows 4.5 SE\n\n", n);
  std::printf("%-14s %6s %6s %6s %10s %9s %11s %13s\n", "ladder", "L", "T", "eps", "weight", "bias",
              "bias / SE", "at N = 10^4");
  for (const Setting& c : settings) {
    auto x = scorekit::make_particles<double>(Exec(), n, 2);
    scorekit::fill_uniform(Exec(), x, -5.0, 15.0, 7);
    scorekit::AnnealedLangevinSettings<double> s;
    s.sigmas = scorekit::geometric_schedule(c.first, c.last, c.levels);
    s.step_size = c.eps;
    s.steps_per_level = c.steps;
    s.seed = 3;
    scorekit::annealed_langevin(Exec(), scorekit::PerturbedMixtureScore<double, Mem>(mixture, s.sigmas), x,
                                s);
    const double w = scorekit::mode_weights(Exec(), x, means).weights[0];
    const double se = std::sqrt(0.2 * 0.8 / n), se_test = std::sqrt(0.2 * 0.8 / 1e4);
    char ladder[32];
    std::snprintf(ladder, sizeof ladder, "%g -> %g", c.first, c.last);
    std::printf("%-14s %6d %6d %6g %10.4f %+9.4f %11.1f %13.1f\n", ladder, c.levels, c.steps, c.eps, w,
                w - 0.2, (w - 0.2) / se, (w - 0.2) / se_test);
  }
  return 0;
}
