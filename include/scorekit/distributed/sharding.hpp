// Sharded sampling over MPI: a run of N particles split across the ranks by global index. Rank r holds
// the contiguous rows shard(comm, N) and passes shard.first as the sampler's settings.first_particle, so
// every noise draw is keyed by the particle's global index and the samples are the same bits as one
// process sampling all N (every sampler and integrator, the likelihood and guidance take first_particle).
//
//   const auto part = distributed::shard(comm, n);             // this rank's rows
//   settings.first_particle = part.first;
//   scorekit::integrate(exec, system, integrator, x_local, settings);
//   auto all = distributed::allgather_rows(comm, x_local, n);  // every particle, in global order
//
// Metrics are computed on the gathered particles (allgather_rows), so they are the numbers one process
// computes from the same particles; the sampler's counters are summed by combine().
// scorekit-requires: SCOREKIT_HAVE_MPI
#pragma once

#include <scorekit/core/kokkos.hpp>
#include <scorekit/distributed/communicator.hpp>
#include <scorekit/io/samples.hpp>
#include <scorekit/sample/sampler_common.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace scorekit {
namespace distributed {

/// The rows [first, first + count) of a run of n that a rank holds.
struct Shard {
  std::int64_t first = 0;
  std::int64_t count = 0;
};

/// Rank `rank` of `size`'s contiguous share of n rows (shares differ by at most one row).
inline Shard shard(std::int64_t n, int rank, int size) {
  if (n < 0) throw invalid_argument(scorekit::detail::concat("scorekit::distributed::shard: n is ", n));
  const std::int64_t a = n * rank / size, b = n * (rank + 1) / size;
  return Shard{a, b - a};
}
inline Shard shard(const Communicator& comm, std::int64_t n) { return shard(n, comm.rank(), comm.size()); }

/// Every rank's rows of a run of n (each rank passes its shard(comm, n), any memory space, n_i x d),
/// gathered on every rank into one host view in global order. Throws rank_failed when a rank's rows are
/// not its shard or the columns differ.
template <class View>
Kokkos::View<typename View::non_const_value_type**, Kokkos::LayoutRight, Kokkos::HostSpace> allgather_rows(
    const Communicator& comm, const View& local, std::int64_t n) {
  using T = typename View::non_const_value_type;
  const Shard mine = shard(comm, n);
  const std::int64_t d = std::int64_t(local.extent(1));
  std::string problem;
  if (std::int64_t(local.extent(0)) != mine.count)
    problem = scorekit::detail::concat("this rank holds ", local.extent(0), " rows, its shard of ", n, " is ",
                                       mine.count);
  agree(comm, problem.empty(), problem, "allgather_rows");
  require_same(comm, std::to_string(d) + " columns", "the particles' columns");
  Kokkos::View<T**, Kokkos::LayoutRight, Kokkos::HostSpace> all("scorekit::distributed::allgather_rows",
                                                                std::size_t(n), std::size_t(d));
  const auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), local);
  for (std::int64_t i = 0; i < mine.count; ++i)
    for (std::int64_t j = 0; j < d; ++j) all(std::size_t(mine.first + i), std::size_t(j)) = host(i, j);
  std::vector<int> counts(static_cast<std::size_t>(comm.size())),
      displs(static_cast<std::size_t>(comm.size()));
  for (int r = 0; r < comm.size(); ++r) {
    const Shard s = shard(n, r, comm.size());
    displs[std::size_t(r)] = detail::count(std::size_t(s.first * d) * sizeof(T), "the gathered particles");
    counts[std::size_t(r)] = detail::count(std::size_t(s.count * d) * sizeof(T), "a rank's particles");
  }
  detail::check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, all.data(), counts.data(), displs.data(),
                               MPI_BYTE, comm.comm()),
                "MPI_Allgatherv");
  return all;
}

/// A sharded run's result as one process would report it: acceptance rate over all particles, score
/// evaluations summed, the slowest rank's time; the samples stay the rank's own.
template <class Real, class Mem>
SamplerResult<Real, Mem> combine(const Communicator& comm, SamplerResult<Real, Mem> result) {
  struct Part {
    double accepted, particles, seconds;
    std::int64_t evaluations;
  };
  const double particles = double(result.samples.extent(0));
  const Part mine{result.acceptance_rate * particles, particles, result.seconds, result.n_score_evaluations};
  const auto all = comm.allgather(mine);
  double accepted = 0, total = 0, seconds = 0;
  std::int64_t evaluations = 0;
  for (const Part& p : all) {
    accepted += p.accepted;
    total += p.particles;
    seconds = p.seconds > seconds ? p.seconds : seconds;
    evaluations += p.evaluations;
  }
  result.acceptance_rate = total > 0 ? accepted / total : 1.0;
  result.n_score_evaluations = evaluations;
  result.seconds = seconds;
  return result;
}

/// Writes this rank's rows to `<stem>.rank<r>.npy` and their global indices (int64) to
/// `<stem>.rank<r>.index.npy`, each atomically; numpy.concatenate of the ranks' files in rank order is the
/// whole run. A rank that cannot write makes every rank throw rank_failed naming it.
template <class View>
void write_shard_npy(const Communicator& comm, const std::string& stem, const View& local,
                     const Shard& part) {
  collective(comm, "writing the sample shards", [&] {
    if (std::int64_t(local.extent(0)) != part.count)
      throw invalid_argument(scorekit::detail::concat("write_shard_npy: ", local.extent(0),
                                                      " rows, the shard has ", part.count));
    Kokkos::View<std::int64_t*, Kokkos::HostSpace> index("scorekit::distributed::index",
                                                         std::size_t(part.count));
    for (std::int64_t i = 0; i < part.count; ++i) index(std::size_t(i)) = part.first + i;
    const std::string base = stem + ".rank" + std::to_string(comm.rank());
    io::write_npy(base + ".npy", local);
    io::write_npy(base + ".index.npy", index);
  });
}

}  // namespace distributed
}  // namespace scorekit
