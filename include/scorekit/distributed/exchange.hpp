// train::StepExchange over MPI: how the ranks of a data-parallel run share a step's chunks.
//
// ordered_sum is a reduce-scatter whose order of addition does not depend on the number of ranks: the
// P columns are split into R contiguous slices; an all-to-all gives rank q slice q of every chunk's row
// (from the rank that computed it, so the rows arrive in chunk order); rank q adds them in chunk order;
// an all-gather puts the summed slices together on every rank. Per step a rank receives about
// (K/R + 1) P (R - 1)/R values for K chunks of P on R ranks: with one chunk per rank that is
// 2 P (R - 1)/R, what a ring all-reduce moves (README, "Beyond one machine").
// scorekit-requires: SCOREKIT_HAVE_MPI
#pragma once

#include <scorekit/distributed/communicator.hpp>
#include <scorekit/train/exchange.hpp>

#include <cstring>
#include <vector>

namespace scorekit {
namespace distributed {

namespace detail {
template <class Real>
MPI_Datatype mpi_type();
template <>
inline MPI_Datatype mpi_type<float>() {
  return MPI_FLOAT;
}
template <>
inline MPI_Datatype mpi_type<double>() {
  return MPI_DOUBLE;
}
}  // namespace detail

class MpiExchange final : public train::StepExchange {
 public:
  /// Works on its own duplicate of `comm`'s communicator (it may outlive `comm`).
  explicit MpiExchange(const Communicator& comm) : m_comm(comm.comm()) {}

  int rank() const override { return m_comm.rank(); }
  int size() const override { return m_comm.size(); }

  void share(void* data, const std::vector<std::size_t>& bounds) override {
    const int chunks = int(bounds.size()) - 1, R = size();
    std::vector<int> counts(static_cast<std::size_t>(R)), displs(static_cast<std::size_t>(R));
    for (int r = 0; r < R; ++r) {
      const std::size_t b0 = bounds[std::size_t(train::first_chunk(chunks, r, R))];
      const std::size_t b1 = bounds[std::size_t(train::first_chunk(chunks, r + 1, R))];
      displs[std::size_t(r)] = detail::count(b0, "a shared buffer");
      counts[std::size_t(r)] = detail::count(b1 - b0, "a rank's chunks");
    }
    detail::check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, counts.data(), displs.data(),
                                 MPI_BYTE, m_comm.comm()),
                  "MPI_Allgatherv");
  }

  void ordered_sum(float* rows, int chunks, std::size_t width, float* sum) override {
    sum_impl(rows, chunks, width, sum);
  }
  void ordered_sum(double* rows, int chunks, std::size_t width, double* sum) override {
    sum_impl(rows, chunks, width, sum);
  }

 private:
  template <class Real>
  void sum_impl(const Real* rows, int chunks, std::size_t width, Real* sum) {
    const int R = size(), me = rank();
    auto slice = [&](int q) { return width * std::size_t(q) / std::size_t(R); };
    const int c0 = train::first_chunk(chunks, me, R), c1 = train::first_chunk(chunks, me + 1, R);
    // Send: for each rank q, slice q of each of my rows, row after row.
    m_send.resize(std::size_t(c1 - c0) * width * sizeof(Real));
    std::vector<int> send_counts(static_cast<std::size_t>(R)), send_displs(static_cast<std::size_t>(R)),
        recv_counts(static_cast<std::size_t>(R)), recv_displs(static_cast<std::size_t>(R));
    Real* out = reinterpret_cast<Real*>(m_send.data());
    std::size_t at = 0;
    for (int q = 0; q < R; ++q) {
      const std::size_t w = slice(q + 1) - slice(q);
      send_displs[std::size_t(q)] = detail::count(at, "a gradient exchange");
      for (int c = c0; c < c1; ++c) {
        std::memcpy(out + at, rows + std::size_t(c) * width + slice(q), w * sizeof(Real));
        at += w;
      }
      send_counts[std::size_t(q)] = detail::count(at - std::size_t(send_displs[std::size_t(q)]), "a slice");
    }
    // Receive: my slice of every chunk's row, from the rank that computed it (rank order is chunk order).
    const std::size_t mine = slice(me + 1) - slice(me);
    m_recv.resize(std::size_t(chunks) * mine * sizeof(Real));
    for (int s = 0; s < R; ++s) {
      const int s0 = train::first_chunk(chunks, s, R), s1 = train::first_chunk(chunks, s + 1, R);
      recv_displs[std::size_t(s)] = detail::count(std::size_t(s0) * mine, "a gradient exchange");
      recv_counts[std::size_t(s)] = detail::count(std::size_t(s1 - s0) * mine, "a slice");
    }
    Real* in = reinterpret_cast<Real*>(m_recv.data());
    detail::check(
        MPI_Alltoallv(out, send_counts.data(), send_displs.data(), detail::mpi_type<Real>(), in,
                      recv_counts.data(), recv_displs.data(), detail::mpi_type<Real>(), m_comm.comm()),
        "MPI_Alltoallv");
    // My slice of the sum, added in chunk order, straight into its place in `sum`; then every slice.
    train::ordered_row_sum(in, chunks, mine, mine, sum + slice(me));
    std::vector<int> counts(static_cast<std::size_t>(R)), displs(static_cast<std::size_t>(R));
    for (int q = 0; q < R; ++q) {
      displs[std::size_t(q)] = detail::count(slice(q), "a gradient");
      counts[std::size_t(q)] = detail::count(slice(q + 1) - slice(q), "a slice");
    }
    detail::check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, sum, counts.data(), displs.data(),
                                 detail::mpi_type<Real>(), m_comm.comm()),
                  "MPI_Allgatherv");
  }

  Communicator m_comm;
  std::vector<unsigned char> m_send, m_recv;  // kept between steps: no allocation per step
};

}  // namespace distributed
}  // namespace scorekit
