// Must NOT compile: a density without `using value_type = ...;`.
#include <scorekit/sample/hmc.hpp>

struct NoValueType {
  KOKKOS_INLINE_FUNCTION int dim() const { return 1; }
  KOKKOS_INLINE_FUNCTION double log_prob(const double* x) const { return -0.5 * x[0] * x[0]; }
  KOKKOS_INLINE_FUNCTION void score(const double* x, double* out) const { out[0] = -x[0]; }
};

int main() { scorekit::assert_density<NoValueType>(); }
