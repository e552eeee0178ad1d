// Must NOT compile with a device compiler (nvcc, hipcc): a density whose dim() is a host function. Kernels
// call dim(), and nvcc would otherwise only warn and drop the call; scorekit's device-contract probe
// (core/traits.hpp) makes it an error there, naming device_contract_probe. Registered only in CUDA builds.
#include <scorekit/sample/langevin.hpp>

struct HostDim {
  using value_type = double;
  int dim() const { return 1; }  // not KOKKOS_INLINE_FUNCTION
  KOKKOS_INLINE_FUNCTION double log_prob(const double* x) const { return -0.5 * x[0] * x[0]; }
  KOKKOS_INLINE_FUNCTION void score(const double* x, double* out) const { out[0] = -x[0]; }
};

int main(int argc, char* argv[]) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  scorekit::ParticleView<double> x("x", 1, 1);
  scorekit::ula(Kokkos::DefaultExecutionSpace(), HostDim{}, x, {0.1, 1, 1});
}
