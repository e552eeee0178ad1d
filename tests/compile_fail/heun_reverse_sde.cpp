// Must NOT compile: Heun on a ReverseSDE (it ignores diffusion, so the noise would be dropped). The build
// is expected to fail with the message "scorekit::Heun integrates a probability-flow ODE".
#include <scorekit/integrate/heun.hpp>
#include <scorekit/score/perturbed_mixture.hpp>
#include <scorekit/sde/edm.hpp>

int main() {
  using Mem = Kokkos::HostSpace;
  const auto data = scorekit::GaussianMixture<double, Mem>::isotropic(
      Eigen::VectorXd::Ones(1), Eigen::MatrixXd::Zero(1, 1), Eigen::VectorXd::Ones(1));
  const auto system =
      scorekit::reverse_sde(scorekit::EdmSDE<double>(80), scorekit::PerturbedMixtureScore<double, Mem>(data));
  scorekit::ParticleView<double, Mem> x("x", 1, 1);
  scorekit::IntegrateSettings s;
  s.times = {80, 0};
  scorekit::integrate(Kokkos::DefaultHostExecutionSpace(), system, scorekit::Heun{}, x, s);
}
