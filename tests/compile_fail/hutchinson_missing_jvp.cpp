// Must NOT compile: Hutchinson on a model without jvp() (an analytic divergence does not help it). The
// build is expected to fail with the one message "scorekit::Hutchinson needs a model with a member
// `KOKKOS_INLINE_FUNCTION void jvp(...)`".
#include <scorekit/divergence/hutchinson.hpp>

struct ScoreAndDivergence {
  using value_type = double;
  KOKKOS_INLINE_FUNCTION int dim() const { return 1; }
  KOKKOS_INLINE_FUNCTION void score(const double* x, double* out) const { out[0] = -x[0]; }
  KOKKOS_INLINE_FUNCTION double divergence(const double*) const { return -1; }
};

int main() {
  const double x[1] = {0.5};
  double work[3];
  scorekit::CounterRng<double> rng(1, 0, 0, scorekit::RngStream::divergence_probe);
  return int(scorekit::Hutchinson<scorekit::GaussianProbe>(4).estimate(ScoreAndDivergence{}, x, rng, work));
}
