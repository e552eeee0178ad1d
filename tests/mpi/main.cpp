// Catch2 main of the MPI tests: MPI first (distributed::Environment), then Kokkos, then the session; run
// under mpirun, every rank runs every case, and every rank
// reports its own failures and counts them in its exit status (mpirun fails when any rank does).
#define CATCH_CONFIG_RUNNER
#include <scorekit/distributed/communicator.hpp>

#include <Kokkos_Core.hpp>
#include <catch2/catch.hpp>

int main(int argc, char* argv[]) {
  scorekit::distributed::Environment mpi(argc, argv);
  int status = 0;
  {
    Kokkos::ScopeGuard kokkos(argc, argv);
    status = Catch::Session().run(argc, argv);
  }
  return status;
}
