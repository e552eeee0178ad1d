// A rank that fails outside a collective section ends the job instead of leaving the others waiting:
// under `mpirun -np 2`, rank 1 throws while rank 0 waits at a barrier; distributed::run prints the
// failure with the rank and aborts. The test (tests/CMakeLists.txt) expects that line, and a hang would
// run into the test's timeout.
#include <scorekit/distributed/communicator.hpp>

int main(int argc, char* argv[]) {
  scorekit::distributed::Environment mpi(argc, argv);
  scorekit::distributed::Communicator comm;
  return scorekit::distributed::run(comm, [&] {
    if (comm.rank() == 1) throw scorekit::invalid_argument("the probe's rank 1 gives up");
    comm.barrier();  // rank 0 would wait here forever without the abort
    return 0;
  });
}
