// Must NOT compile: a density without score(). The build is expected to fail with the message
// "scorekit: a Density needs a member `KOKKOS_INLINE_FUNCTION void score(...)`".
#include <scorekit/sample/langevin.hpp>

struct NoScore {
  using value_type = double;
  KOKKOS_INLINE_FUNCTION int dim() const { return 1; }
  KOKKOS_INLINE_FUNCTION double log_prob(const double* x) const { return -0.5 * x[0] * x[0]; }
};

int main() {
  scorekit::ParticleView<double, Kokkos::HostSpace> x("x", 1, 1);
  scorekit::ula(Kokkos::DefaultHostExecutionSpace(), NoScore{}, x, {0.1, 1, 1});
}
