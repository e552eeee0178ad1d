// Builds against the installed scorekit::distributed (MPI found by the package config).
#include <scorekit/distributed/sharding.hpp>

#include <cstdio>

int main(int argc, char* argv[]) {
  scorekit::distributed::Environment mpi(argc, argv);
  Kokkos::ScopeGuard kokkos(argc, argv);
  const scorekit::distributed::Communicator comm;
  const auto part = scorekit::distributed::shard(comm, 10);
  std::printf("rank %d of %d: rows %lld..%lld\n", comm.rank(), comm.size(), (long long)part.first,
              (long long)(part.first + part.count));
  return 0;
}
