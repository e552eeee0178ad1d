// Must NOT compile: reverse diffusion on a system that is not built from a noising SDE (an
// Ornstein-Uhlenbeck process has no sde() and model()). The build is expected to fail with the message
// "scorekit::ReverseDiffusion needs a ReverseSDE or ProbabilityFlowODE system".
#include <scorekit/integrate/reverse_diffusion.hpp>
#include <scorekit/sde/langevin.hpp>

int main() {
  scorekit::ParticleView<double, Kokkos::HostSpace> x("x", 1, 1);
  scorekit::IntegrateSettings s;
  s.times = {1.0, 0.5};
  scorekit::integrate(Kokkos::DefaultHostExecutionSpace(),
                      scorekit::OrnsteinUhlenbeckSDE<double>(1, 1.0, 1.0), scorekit::ReverseDiffusion{}, x,
                      s);
}
