// The one matrix kernel behind every layer's forward pass, input adjoint and weight gradient, on blocks
// whose sizes are all compile-time constants:
//
//   C[r][j] (+)= sum_k A[r * a_row + k * a_col] * B[k * ldb + j],   r < Rows, k < Inner, j < Cols.
//
// Strides on A let one kernel read a weight matrix W[out][in] either way round: W x (a_row = in,
// a_col = 1) for the forward pass and W^T y (a_row = 1, a_col = in) for the input adjoint. The weight
// gradient sum_c adjoint[o][c] input[i][c] is the same kernel on the transposed input block.
//
// Register blocking: a tile of `rows_tile` rows of C by `cols_tile` columns stays in local accumulators
// over the whole k loop, so each element of B loaded from memory feeds rows_tile fused multiply-adds and
// each C element is loaded and stored once. The innermost loop runs over contiguous columns and is
// vectorised (`omp simd`); the tile sizes aim at 8-16 vector accumulators of 64 bytes.
#pragma once

#include <scorekit/core/kokkos.hpp>

namespace scorekit {
namespace nn {
namespace detail {

/// The largest divisor of n that is at most cap (at least 1).
KOKKOS_INLINE_FUNCTION constexpr int largest_divisor_at_most(int n, int cap) {
  int best = 1;
  for (int d = 1; d <= n && d <= cap; ++d)
    if (n % d == 0) best = d;
  return best;
}

template <class Real>
KOKKOS_INLINE_FUNCTION constexpr int vector_lanes() {
  return int(64 / sizeof(Real));  // one 512-bit register; narrower machines split it, which is harmless
}

/// Columns per tile: all of them when they fit two vectors, else the largest divisor up to two vectors.
template <class Real, int Cols>
KOKKOS_INLINE_FUNCTION constexpr int cols_tile() {
  return Cols <= 2 * vector_lanes<Real>() ? Cols : largest_divisor_at_most(Cols, 2 * vector_lanes<Real>());
}

/// Rows per tile: about 12 vector accumulators in all.
template <class Real, int Rows, int ColsTile>
KOKKOS_INLINE_FUNCTION constexpr int rows_tile() {
  constexpr int vectors_per_row = (ColsTile + vector_lanes<Real>() - 1) / vector_lanes<Real>();
  constexpr int want = 12 / vectors_per_row;
  return largest_divisor_at_most(Rows, want < 1 ? 1 : want);
}

template <int Rows, int Inner, int Cols, bool Accumulate, class Real>
KOKKOS_INLINE_FUNCTION void block_gemm(const Real* a, int a_row, int a_col, const Real* b, int ldb, Real* c,
                                       int ldc) {
  constexpr int ct = cols_tile<Real, Cols>();
  constexpr int rt = rows_tile<Real, Rows, ct>();
  static_assert(Cols % ct == 0 && Rows % rt == 0, "block_gemm: tiles must divide the block");
  for (int r0 = 0; r0 < Rows; r0 += rt) {
    for (int j0 = 0; j0 < Cols; j0 += ct) {
      Real acc[rt][ct];
      for (int t = 0; t < rt; ++t) {
        SCOREKIT_SIMD
        for (int j = 0; j < ct; ++j) acc[t][j] = Accumulate ? c[(r0 + t) * ldc + j0 + j] : Real(0);
      }
      for (int k = 0; k < Inner; ++k) {
        const Real* bk = b + k * ldb + j0;
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__) && !defined(__HIPCC__)
#pragma GCC unroll 16
#endif
        for (int t = 0; t < rt; ++t) {
          const Real coef = a[(r0 + t) * a_row + k * a_col];
          SCOREKIT_SIMD
          for (int j = 0; j < ct; ++j) acc[t][j] += coef * bk[j];
        }
      }
      for (int t = 0; t < rt; ++t) {
        SCOREKIT_SIMD
        for (int j = 0; j < ct; ++j) c[(r0 + t) * ldc + j0 + j] = acc[t][j];
      }
    }
  }
}

/// out[c][r] = in[r][c] for an R x C block.
template <int R, int C, class Real>
KOKKOS_INLINE_FUNCTION void transpose_block(const Real* in, Real* out) {
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) out[c * R + r] = in[r * C + c];
}

}  // namespace detail
}  // namespace nn
}  // namespace scorekit
