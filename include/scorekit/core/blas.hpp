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
/// Threads. On host views the product goes to the host BLAS, which uses its own threads whatever
/// `Exec` is (Kokkos::Serial included): setup.sh's OpenBLAS is the OpenMP build, which runs
/// OMP_NUM_THREADS threads and only one when called from inside an OpenMP parallel region. It is not
/// bitwise the same as a product summed in another order (another BLAS, another thread count).
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
  KokkosBlas::gemm(transA, transB, alpha, a, b, beta, c);
  Exec().fence();
}

}  // namespace scorekit::blas
