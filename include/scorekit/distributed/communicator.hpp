// The MPI side of scorekit, and the only folder that includes <mpi.h> (built with SCOREKIT_ENABLE_MPI;
// the rest of the library never includes MPI). Every process ("rank") runs Kokkos on its own threads or
// device; MPI is called from the host thread only, with host memory (MPI_THREAD_FUNNELED).
//
// Errors: an MPI call that fails throws distributed::mpi_error naming the call (the communicators
// scorekit makes return errors instead of aborting). A failure on one rank inside a collective() section
// becomes, on every rank, a rank_failed naming the rank and its message, so no rank is left waiting for
// a partner that gave up. A rank that fails outside such a section ends the job: run() catches what
// escapes, prints it with the rank and calls MPI_Abort, which stops the other ranks (no hang).
// scorekit-requires: SCOREKIT_HAVE_MPI
#pragma once

#include <scorekit/core/error.hpp>

#include <mpi.h>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <utility>
#include <vector>

namespace scorekit {
namespace distributed {

/// An MPI call failed; what() names the call and MPI's message.
class mpi_error : public error {
 public:
  explicit mpi_error(const std::string& what) : error(what) {}
};

/// Another rank (or this one) failed inside a collective() section; what() names the lowest such rank
/// and its message, the same text on every rank.
class rank_failed : public error {
 public:
  rank_failed(const std::string& what, int rank) : error(what), m_rank(rank) {}
  int rank() const noexcept { return m_rank; }

 private:
  int m_rank;
};

namespace detail {
inline void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(rc, text, &length) != MPI_SUCCESS) length = 0;
  throw mpi_error(scorekit::detail::concat("scorekit::distributed: ", call,
                                           " failed: ", std::string(text, std::size_t(length))));
}

/// MPI counts are int: a message of more elements is refused by name rather than truncated.
inline int count(std::size_t n, const char* what) {
  if (n > std::size_t(2147483647))
    throw invalid_argument(scorekit::detail::concat("scorekit::distributed: ", what, " of ", n,
                                                    " bytes exceeds MPI's int count; use fewer per rank"));
  return int(n);
}

/// FNV-1a, 64 bits: the fingerprint of settings compared across ranks (not a cryptographic hash).
inline std::uint64_t fnv1a(const void* data, std::size_t n, std::uint64_t h = 1469598103934665603ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}
}  // namespace detail

/// Initialises MPI (funneled: only the thread that made it calls MPI) and finalises it when it goes;
/// make it before Kokkos' ScopeGuard, so that Kokkos finalises first.
class Environment {
 public:
  Environment(int& argc, char**& argv) {
    int provided = 0;
    detail::check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    if (provided < MPI_THREAD_FUNNELED) {
      MPI_Finalize();
      throw mpi_error("scorekit::distributed: the MPI library does not provide MPI_THREAD_FUNNELED");
    }
  }
  ~Environment() { MPI_Finalize(); }
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;
};

/// A duplicate of an MPI communicator (MPI_COMM_WORLD by default) whose errors return to scorekit, which
/// throws them; the duplicate keeps scorekit's messages apart from the caller's.
class Communicator {
 public:
  explicit Communicator(MPI_Comm parent = MPI_COMM_WORLD) {
    detail::check(MPI_Comm_dup(parent, &m_comm), "MPI_Comm_dup");
    detail::check(MPI_Comm_set_errhandler(m_comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    detail::check(MPI_Comm_rank(m_comm, &m_rank), "MPI_Comm_rank");
    detail::check(MPI_Comm_size(m_comm, &m_size), "MPI_Comm_size");
  }
  ~Communicator() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&m_comm);
  }
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  MPI_Comm comm() const { return m_comm; }
  int rank() const { return m_rank; }
  int size() const { return m_size; }

  void barrier() const { detail::check(MPI_Barrier(m_comm), "MPI_Barrier"); }

  /// Every rank's `value`, in rank order.
  template <class T>
  std::vector<T> allgather(const T& value) const {
    std::vector<T> all(static_cast<std::size_t>(m_size));
    detail::check(
        MPI_Allgather(&value, int(sizeof(T)), MPI_BYTE, all.data(), int(sizeof(T)), MPI_BYTE, m_comm),
        "MPI_Allgather");
    return all;
  }

  /// `text` of rank `root`, on every rank.
  std::string broadcast(std::string text, int root) const {
    std::uint64_t n = text.size();
    detail::check(MPI_Bcast(&n, 1, MPI_UINT64_T, root, m_comm), "MPI_Bcast");
    text.resize(std::size_t(n));
    if (n > 0)
      detail::check(MPI_Bcast(&text[0], detail::count(std::size_t(n), "a broadcast"), MPI_CHAR, root, m_comm),
                    "MPI_Bcast");
    return text;
  }

 private:
  MPI_Comm m_comm = MPI_COMM_NULL;
  int m_rank = 0, m_size = 1;
};

/// Throws rank_failed on every rank when `ok` is false on any: it names the lowest such rank and its
/// `message`. Every rank must call it.
inline void agree(const Communicator& comm, bool ok, const std::string& message, const char* what) {
  const auto all = comm.allgather(std::uint8_t(ok));
  for (int r = 0; r < comm.size(); ++r)
    if (!all[std::size_t(r)])
      throw rank_failed(scorekit::detail::concat("scorekit::distributed: ", what, " failed on rank ", r,
                                                 " of ", comm.size(), ": ", comm.broadcast(message, r)),
                        r);
}

/// Runs `fn` on every rank; when it throws on any rank, every rank throws rank_failed naming the lowest
/// failed rank and its message (`what` says what the section was). Every rank must enter the section.
template <class F>
void collective(const Communicator& comm, const char* what, F&& fn) {
  std::string message;
  bool ok = true;
  try {
    fn();
  } catch (const std::exception& e) {
    ok = false;
    message = e.what();
  }
  agree(comm, ok, message, what);
}

/// Throws rank_failed on every rank unless `description` (the settings a run must share, as text) is
/// the same on all: compared by a 64-bit fingerprint, the message names the ranks that differ from rank 0.
inline void require_same(const Communicator& comm, const std::string& description, const std::string& what) {
  const std::uint64_t mine = detail::fnv1a(description.data(), description.size());
  const auto all = comm.allgather(mine);
  std::string differ;
  for (int r = 1; r < comm.size(); ++r)
    if (all[std::size_t(r)] != all[0]) differ += (differ.empty() ? "" : ", ") + std::to_string(r);
  if (!differ.empty())
    throw rank_failed(
        scorekit::detail::concat("scorekit::distributed: ", what, " differ between rank 0 and rank(s) ",
                                 differ, " (rank 0 has: ", comm.broadcast(description, 0),
                                 "); every rank must be started with the same settings and data"),
        -1);
}

/// The body of an MPI program: runs `fn`, and when it throws prints "rank r of n: what" to stderr and
/// aborts the job (MPI_Abort stops every rank: no rank is left waiting). Returns fn's status otherwise.
template <class F>
int run(const Communicator& comm, F&& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "scorekit: rank %d of %d failed: %s\n", comm.rank(), comm.size(), e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  }
}

}  // namespace distributed
}  // namespace scorekit
