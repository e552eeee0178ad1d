// Dense matrix products through Kokkos Kernels: the one place scorekit calls KokkosBlas from. On host
// views of float or double whose three layouts agree (LayoutLeft or LayoutRight), KokkosBlas hands the
// product to the host BLAS it was built with (scripts/setup.sh builds Kokkos Kernels on OpenBLAS); on a
// GPU to cuBLAS or rocBLAS where Kokkos Kernels was built with them; otherwise its own kernels run.
// scorekit-requires: SCOREKIT_HAVE_KOKKOS_KERNELS
#pragma once

#ifndef SCOREKIT_HAVE_KOKKOS_KERNELS
#error \
    "scorekit/core/blas.hpp needs Kokkos Kernels, and this build of scorekit has none: run scripts/setup.sh (it builds Kokkos Kernels 3.4.01 on OpenBLAS beside its Kokkos) or set KokkosKernels_ROOT to a Kokkos Kernels built against your Kokkos, reconfigure, and link scorekit::scorekit (which then defines SCOREKIT_HAVE_KOKKOS_KERNELS)"
#endif

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>

#include <KokkosBlas3_gemm.hpp>
#if defined(KOKKOSKERNELS_ENABLE_TPL_BLAS)
#include <KokkosBlas_Host_tpl.hpp>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

namespace scorekit::blas {

namespace detail {

/// Whether a BLAS transpose argument ("N", "T" or "C"; only its first character counts, either case)
/// transposes. For real matrices "C" (conjugate transpose) is "T".
inline bool transposes(const char* trans, const char* name) {
  if (trans != nullptr) {
    switch (trans[0]) {
      case 'N':
      case 'n':
        return false;
      case 'T':
      case 't':
      case 'C':
      case 'c':
        return true;
      default:
        break;
    }
  }
  throw invalid_argument(
      scorekit::detail::concat("scorekit::blas::gemm: ", name, " must be \"N\", \"T\" or \"C\", got ",
                               trans ? "\"" + std::string(trans) + "\"" : "a null pointer"));
}

template <class View>
std::string shape(const View& v) {
  return scorekit::detail::concat(v.extent(0), " x ", v.extent(1));
}

/// The host BLAS takes sizes and leading dimensions as int.
template <class View>
void require_int_sized(const View& v, const char* name) {
  for (int r = 0; r < 2; ++r)
    if (v.extent(r) > std::size_t(INT_MAX) || v.stride(r) > std::size_t(INT_MAX))
      throw invalid_argument(scorekit::detail::concat("scorekit::blas::gemm: ", name, " is ", shape(v),
                                                      " with strides ", v.stride(0), " and ", v.stride(1),
                                                      ": BLAS sizes and strides must fit in an int"));
}

/// Whether the memory two views span (padding included) overlaps.
template <class V, class W>
bool overlap(const V& a, const W& b) {
  if (a.span() == 0 || b.span() == 0) return false;
  const auto a0 = reinterpret_cast<std::uintptr_t>(a.data());
  const auto b0 = reinterpret_cast<std::uintptr_t>(b.data());
  const auto a1 = a0 + a.span() * sizeof(typename V::value_type);
  const auto b1 = b0 + b.span() * sizeof(typename W::value_type);
  return a0 < b1 && b0 < a1;
}

/// A matrix as the host BLAS sees it: its first element and its two strides (in elements).
template <class T>
struct Strided {
  T* p;
  std::int64_t s0, s1;
  std::int64_t rows, cols;
};

/// For op(X) (X^T when `transpose`) as a column-major BLAS argument: the transpose character and the
/// leading dimension; false when X is neither column- nor row-major with a leading dimension the BLAS
/// accepts.
template <class T>
bool blas_argument(const Strided<T>& x, bool transpose, char& trans, std::int64_t& ld) {
  if (x.s0 == 1 && x.s1 >= std::max<std::int64_t>(1, x.rows)) {  // column-major
    trans = transpose ? 'T' : 'N';
    ld = x.s1;
    return true;
  }
  if (x.s1 == 1 && x.s0 >= std::max<std::int64_t>(1, x.cols)) {  // row-major: column-major X^T
    trans = transpose ? 'N' : 'T';
    ld = x.s0;
    return true;
  }
  return false;
}

/// Keeps the host BLAS on one thread while alive (for an OpenMP build of the BLAS, which runs
/// omp_get_max_threads() threads outside a parallel region): the calling thread's OpenMP thread count
/// set to one, and restored.
struct SingleThreadedBlas {
#if defined(_OPENMP)
  int saved = omp_get_max_threads();
  SingleThreadedBlas() { omp_set_num_threads(1); }
  ~SingleThreadedBlas() { omp_set_num_threads(saved); }
#endif
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;
#if !defined(_OPENMP)
  SingleThreadedBlas() = default;
#endif
};

/// The tile of C one host BLAS call computes: a shape-only rule (never the thread count), up to 512
/// rows, fewer for short products so that at least about 16 tiles share the work, and all the columns
/// up to 512.
inline std::int64_t tile_rows(std::int64_t m) {
  const std::int64_t t = ((m + 15) / 16 + 31) / 32 * 32;
  return std::min<std::int64_t>(512, std::max<std::int64_t>(32, t));
}
inline std::int64_t tile_cols(std::int64_t n) { return n <= 512 ? n : 256; }

#if defined(KOKKOSKERNELS_ENABLE_TPL_BLAS)
/// The host path of gemm: C cut into fixed tiles (tile_rows x tile_cols, from the shape alone), each
/// one single-threaded call of the host BLAS through Kokkos Kernels' HostBlas, the tiles spread over
/// `exec`'s threads. Every entry of C is then summed by the same call whatever the thread count (a
/// threaded BLAS partitions C by its thread count, and its edge kernels round differently), so the
/// product is the same bits on Serial and OpenMP with any number of threads. Returns false (nothing
/// done) for a matrix the BLAS cannot take as it is stored.
template <class Exec, class T>
bool host_tiled_gemm(const Exec& exec, bool ta, bool tb, T alpha, const Strided<const T>& A,
                     const Strided<const T>& B, T beta, const Strided<T>& C, std::int64_t m, std::int64_t n,
                     std::int64_t k) {
  const bool c_col = C.s0 == 1 && C.s1 >= std::max<std::int64_t>(1, m);
  const bool c_row = !c_col && C.s1 == 1 && C.s0 >= std::max<std::int64_t>(1, n);
  char ca = 'N', cb = 'N';
  std::int64_t lda = 0, ldb = 0;
  if (!(c_col || c_row) || !blas_argument(A, ta, ca, lda) || !blas_argument(B, tb, cb, ldb)) return false;
  // Column-major C = op(A) op(B); row-major C is column-major C^T = op(B)^T op(A)^T.
  const char cbt = cb == 'N' ? 'T' : 'N', cat = ca == 'N' ? 'T' : 'N';
  const std::int64_t tm = tile_rows(m), tn = tile_cols(n);
  const std::int64_t rows = (m + tm - 1) / tm, cols = (n + tn - 1) / tn;
  const SingleThreadedBlas one_thread;
  Kokkos::parallel_for("scorekit::blas::gemm(host tiles)",
                       Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, rows * cols),
                       [=](const std::int64_t tile) {
                         const std::int64_t i0 = (tile / cols) * tm, j0 = (tile % cols) * tn;
                         const int mi = int(std::min(tm, m - i0)), nj = int(std::min(tn, n - j0));
                         // op(A) rows i0.., op(B) columns j0.., C at (i0, j0).
                         const T* a = A.p + i0 * (ta ? A.s1 : A.s0);
                         const T* b = B.p + j0 * (tb ? B.s0 : B.s1);
                         T* c = C.p + i0 * C.s0 + j0 * C.s1;
                         if (c_col)
                           KokkosBlas::Impl::HostBlas<T>::gemm(ca, cb, mi, nj, int(k), alpha, a, int(lda), b,
                                                               int(ldb), beta, c, int(C.s1));
                         else
                           KokkosBlas::Impl::HostBlas<T>::gemm(cbt, cat, nj, mi, int(k), alpha, b, int(ldb),
                                                               a, int(lda), beta, c, int(C.s0));
                       });
  exec.fence();
  return true;
}
#endif

}  // namespace detail

/// C = alpha op(A) op(B) + beta C, with op(X) = X for "N" and X^T for "T" (or "C"), on the execution
/// space `exec`; BLAS semantics: with beta == 0 the values in C are not read (NaN in C does not
/// propagate), and with an empty inner dimension (op(A) m x 0) C is only scaled by beta (which KokkosBlas
/// 3.4 skips; done here).
///
/// A, B and C are rank-2 views of one value type in one memory space that `exec` can access; C must
/// not overlap A or B. Shapes are checked on the host first: a mismatch throws dimension_mismatch (an
/// invalid_argument) naming both shapes, e.g. "scorekit::blas::gemm: A is 3 x 4 but B is 5 x 2 ...",
/// and a bad transpose argument, an overlap or a size beyond int (the BLAS' index type) throws
/// invalid_argument, all before anything runs.
///
/// Ordering. KokkosBlas::gemm takes no execution space instance in Kokkos Kernels 3.4
/// (gemm(transA, transB, alpha, A, B, beta, C); it runs on the default instance of the views' execution
/// space). Here the views are retyped on `Exec`, so the product runs on `Exec`'s default instance, and
/// this function fences: `exec` before (work already queued on it that writes A, B or C is complete),
/// `Exec`'s default instance after. On return the product is complete and visible, on every backend.
/// On host backends both fences cost nothing and the host BLAS' call blocks anyway.
///
/// Threads. On host views of float or double (with a Kokkos Kernels built on a host BLAS) C is cut into
/// tiles fixed by the shape, each one single-threaded call of the host BLAS, the tiles spread over
/// `exec`'s threads (detail::host_tiled_gemm): the same bits on Serial and OpenMP, with any number of
/// threads, for a given BLAS. (Not bitwise the same as another BLAS.) Elsewhere KokkosBlas::gemm runs
/// (cuBLAS, rocBLAS, or Kokkos Kernels' own kernels).
template <class Exec, class AView, class BView, class CView>
void gemm(const Exec& exec, const char* transA, const char* transB, typename CView::const_value_type& alpha,
          const AView& A, const BView& B, typename CView::const_value_type& beta, const CView& C) {
  static_assert(Kokkos::is_execution_space<Exec>::value,
                "scorekit::blas::gemm: the first argument must be a Kokkos execution space instance");
  static_assert(
      Kokkos::is_view<AView>::value && Kokkos::is_view<BView>::value && Kokkos::is_view<CView>::value,
      "scorekit::blas::gemm: A, B and C must be Kokkos::Views");
  static_assert(int(AView::rank) == 2 && int(BView::rank) == 2 && int(CView::rank) == 2,
                "scorekit::blas::gemm: A, B and C must be rank-2 views (matrices)");
  using value_type = typename CView::non_const_value_type;
  static_assert(std::is_same<typename CView::value_type, value_type>::value,
                "scorekit::blas::gemm: C is written, so it cannot be a view of const");
  static_assert(std::is_same<typename AView::non_const_value_type, value_type>::value &&
                    std::is_same<typename BView::non_const_value_type, value_type>::value,
                "scorekit::blas::gemm: A, B and C must hold the same value type");
  using memory_space = typename CView::memory_space;
  static_assert(std::is_same<typename AView::memory_space, memory_space>::value &&
                    std::is_same<typename BView::memory_space, memory_space>::value,
                "scorekit::blas::gemm: A, B and C must be in the same memory space");
  static_assert(Kokkos::SpaceAccessibility<Exec, memory_space>::accessible,
                "scorekit::blas::gemm: the views' memory space is not accessible from the execution space");

  const bool ta = detail::transposes(transA, "transA");
  const bool tb = detail::transposes(transB, "transB");
  const std::size_t m = ta ? A.extent(1) : A.extent(0), k = ta ? A.extent(0) : A.extent(1);
  const std::size_t kb = tb ? B.extent(1) : B.extent(0), n = tb ? B.extent(0) : B.extent(1);
  if (k != kb)
    throw dimension_mismatch(scorekit::detail::concat(
        "scorekit::blas::gemm: A is ", detail::shape(A), " but B is ", detail::shape(B), " (transA = ",
        transA[0], ", transB = ", transB[0], ": op(A) has ", k, " columns, op(B) has ", kb, " rows)"));
  if (C.extent(0) != m || C.extent(1) != n)
    throw dimension_mismatch(
        scorekit::detail::concat("scorekit::blas::gemm: C is ", detail::shape(C), " but op(A) op(B) is ", m,
                                 " x ", n, " (A is ", detail::shape(A), ", B is ", detail::shape(B),
                                 ", transA = ", transA[0], ", transB = ", transB[0], ")"));
  detail::require_int_sized(A, "A");
  detail::require_int_sized(B, "B");
  detail::require_int_sized(C, "C");
  if (detail::overlap(C, A) || detail::overlap(C, B))
    throw invalid_argument(scorekit::detail::concat("scorekit::blas::gemm: C overlaps ",
                                                    detail::overlap(C, A) ? "A" : "B",
                                                    " in memory; the product needs C apart from its inputs"));
  if (m == 0 || n == 0) return;

  // The same memory retyped on Exec: KokkosBlas dispatches on the views' execution space.
  using device = Kokkos::Device<Exec, memory_space>;
  using unmanaged = Kokkos::MemoryTraits<Kokkos::Unmanaged>;
  const Kokkos::View<const value_type**, typename AView::array_layout, device, unmanaged> a = A;
  const Kokkos::View<const value_type**, typename BView::array_layout, device, unmanaged> b = B;
  const Kokkos::View<value_type**, typename CView::array_layout, device, unmanaged> c = C;
  exec.fence();
  if (k == 0) {
    const value_type beta_ = beta;
    const std::int64_t cols = std::int64_t(n);
    Kokkos::parallel_for(
        "scorekit::blas::gemm(k = 0)",
        Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, std::int64_t(m) * cols),
        KOKKOS_LAMBDA(const std::int64_t e) {
          value_type& x = c(e / cols, e % cols);
          x = beta_ == value_type(0) ? value_type(0) : beta_ * x;
        });
    exec.fence();
    return;
  }
#if defined(KOKKOSKERNELS_ENABLE_TPL_BLAS)
  if constexpr ((std::is_same<value_type, float>::value || std::is_same<value_type, double>::value) &&
                std::is_same<typename Exec::memory_space, Kokkos::HostSpace>::value) {
    using T = value_type;
    const detail::Strided<const T> sa{A.data(), std::int64_t(A.stride(0)), std::int64_t(A.stride(1)),
                                      std::int64_t(A.extent(0)), std::int64_t(A.extent(1))};
    const detail::Strided<const T> sb{B.data(), std::int64_t(B.stride(0)), std::int64_t(B.stride(1)),
                                      std::int64_t(B.extent(0)), std::int64_t(B.extent(1))};
    const detail::Strided<T> sc{C.data(), std::int64_t(C.stride(0)), std::int64_t(C.stride(1)),
                                std::int64_t(C.extent(0)), std::int64_t(C.extent(1))};
    if (detail::host_tiled_gemm(exec, ta, tb, T(alpha), sa, sb, T(beta), sc, std::int64_t(m), std::int64_t(n),
                                std::int64_t(k)))
      return;
  }
#endif
  KokkosBlas::gemm(transA, transB, alpha, a, b, beta, c);
  Exec().fence();
}

}  // namespace scorekit::blas
