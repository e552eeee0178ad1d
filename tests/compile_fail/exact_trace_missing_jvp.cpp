// Must NOT compile: ExactTrace on a model with neither jvp() nor divergence(). The build is expected to
// fail with the one message "scorekit::ExactTrace needs a model with a member `KOKKOS_INLINE_FUNCTION void
// jvp(...)` ... or `... divergence(...)`".
#include <scorekit/divergence/estimate_divergence.hpp>
#include <scorekit/divergence/exact_trace.hpp>

struct ScoreOnly {
  using value_type = double;
  KOKKOS_INLINE_FUNCTION int dim() const { return 1; }
  KOKKOS_INLINE_FUNCTION void score(const double* x, double* out) const { out[0] = -x[0]; }
};

int main() {
  Kokkos::View<double**, Kokkos::LayoutRight, Kokkos::HostSpace> x("x", 1, 1);
  Kokkos::View<double*, Kokkos::HostSpace> out("out", 1);
  scorekit::estimate_divergence<Kokkos::DefaultHostExecutionSpace>(scorekit::ExactTrace{}, ScoreOnly{}, x, 1,
                                                                   out);
}
