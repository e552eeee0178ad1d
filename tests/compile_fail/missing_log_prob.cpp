// Must NOT compile: MALA needs log_prob(), which this density lacks.
#include <scorekit/sample/langevin.hpp>

struct NoLogProb {
  using value_type = double;
  KOKKOS_INLINE_FUNCTION int dim() const { return 1; }
  KOKKOS_INLINE_FUNCTION void score(const double* x, double* out) const { out[0] = -x[0]; }
};

int main() {
  scorekit::ParticleView<double, Kokkos::HostSpace> x("x", 1, 1);
  scorekit::mala(Kokkos::DefaultHostExecutionSpace(), NoLogProb{}, x, {0.1, 1, 1});
}
