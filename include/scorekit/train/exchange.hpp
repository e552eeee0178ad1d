// How the processes of a data-parallel training run share one step's work, as the trainers see it: an
// interface with no transport behind it here (distributed/ implements it over MPI; train/ never includes
// MPI).
//
// A step's gradient is a FIXED number of chunks (TrainSettings::gradient_chunks: a function of the
// settings only, never of the number of processes or threads). Process r of R computes the chunks
// [first_chunk(K, r, R), first_chunk(K, r + 1, R)) of the K, into its rows of the K x P gradient; the
// exchange then gives every process, per parameter, row 0 + row 1 + ... + row K-1 added in that order:
// the order Adam adds the rows in on one process (nn/adam.hpp). So the weights after any number of steps
// are the same bits for any number of processes, and the same as one process without an exchange.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace scorekit {
namespace train {

/// The first of the chunks process `rank` of `size` computes: chunks are split into contiguous runs as
/// evenly as they go (a process gets none when there are fewer chunks than processes).
inline int first_chunk(int chunks, int rank, int size) {
  return int(std::int64_t(chunks) * std::int64_t(rank) / std::int64_t(size));
}

class StepExchange {
 public:
  virtual ~StepExchange() = default;
  /// This process, and how many there are.
  virtual int rank() const = 0;
  virtual int size() const = 0;

  /// `data` holds `bounds.size() - 1` chunks, chunk c the bytes [bounds[c], bounds[c + 1]); this process
  /// has written its own chunks (first_chunk above). On return every process holds every chunk.
  virtual void share(void* data, const std::vector<std::size_t>& bounds) = 0;

  /// `rows` holds `chunks` rows of `width` values, this process's own rows written; on return `sum`
  /// (width values) holds on every process, per column, row 0 + row 1 + ... + row chunks-1 added in that
  /// order. `rows` may be overwritten.
  virtual void ordered_sum(float* rows, int chunks, std::size_t width, float* sum) = 0;
  virtual void ordered_sum(double* rows, int chunks, std::size_t width, double* sum) = 0;

  /// share() for `chunks` rows of `width` values of one type.
  template <class T>
  void share_rows(T* rows, int chunks, std::size_t width) {
    std::vector<std::size_t> bounds(std::size_t(chunks) + 1);
    for (std::size_t c = 0; c < bounds.size(); ++c) bounds[c] = c * width * sizeof(T);
    share(rows, bounds);
  }
};

/// Per column, rows[0] + rows[1] + ... + rows[chunks - 1] added in that order (rows `stride` apart):
/// what StepExchange::ordered_sum promises and Adam's sum of gradient rows computes.
template <class Real>
void ordered_row_sum(const Real* rows, int chunks, std::size_t width, std::size_t stride, Real* sum) {
  for (std::size_t j = 0; j < width; ++j) sum[j] = rows[j];
  for (int c = 1; c < chunks; ++c) {
    const Real* row = rows + std::size_t(c) * stride;
    for (std::size_t j = 0; j < width; ++j) sum[j] += row[j];
  }
}

}  // namespace train
}  // namespace scorekit
