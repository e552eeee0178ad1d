// scorekit::blas::gemm (Kokkos Kernels; the host BLAS on host views) against a triple loop in long
// double on random matrices: float and double, every transpose combination, LayoutRight and LayoutLeft,
// every backend, to the standard rounding-error bound of a sum of products. Shape errors throw
// before anything runs, naming both shapes.
// scorekit-requires: SCOREKIT_HAVE_KOKKOS_KERNELS
#include "backends.hpp"

#include <scorekit/core/blas.hpp>
#include <scorekit/core/error.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>

namespace {

using scorekit_test::Backends;

/// gamma_n = n u / (1 - n u), u the unit roundoff of Real (eps / 2).
template <class Real>
long double gamma_n(long double n) {
  const long double u = std::numeric_limits<Real>::epsilon() / 2.0L;
  return n * u / (1 - n * u);
}

/// An r x c view in Exec's memory space, uniform on [-1, 1) from `gen` (generated in Real, so the long
/// double reference sees exactly the values the product does), and its host mirror.
template <class Real, class Layout, class Exec>
Kokkos::View<Real**, Layout, typename Exec::memory_space> random_matrix(std::size_t r, std::size_t c,
                                                                        std::mt19937_64& gen) {
  Kokkos::View<Real**, Layout, typename Exec::memory_space> v("m", r, c);
  auto h = Kokkos::create_mirror_view(v);
  std::uniform_real_distribution<Real> u(Real(-1), Real(1));
  for (std::size_t i = 0; i < r; ++i)
    for (std::size_t j = 0; j < c; ++j) h(i, j) = u(gen);
  Kokkos::deep_copy(v, h);
  return v;
}

/// Checks C = alpha op(A) op(B) + beta C0 for op(A) m x k, op(B) k x n. The computed entry is a sum of
/// k + 1 terms (k products alpha a b, and beta c0), each with at most two multiplications, summed in
/// whatever order the BLAS picks: each term meets at most k + 2 roundings, so
///   |fl(C) - C| <= gamma_{k+2} (|alpha| |op(A)| |op(B)| + |beta| |C0|)  entrywise
/// (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., sections 3.1 and 3.5), plus the
/// same bound in long double for the reference's own rounding. beta == 0 starts C from NaN: BLAS does
/// not read C then.
template <class Real, class Layout, class Exec>
void check_gemm(const char* ta, const char* tb, std::size_t m, std::size_t n, std::size_t k, Real alpha,
                Real beta, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  const bool at = ta[0] == 'T', bt = tb[0] == 'T';
  const auto A = random_matrix<Real, Layout, Exec>(at ? k : m, at ? m : k, gen);
  const auto B = random_matrix<Real, Layout, Exec>(bt ? n : k, bt ? k : n, gen);
  const auto C = random_matrix<Real, Layout, Exec>(m, n, gen);
  if (beta == Real(0)) Kokkos::deep_copy(C, std::numeric_limits<Real>::quiet_NaN());
  const auto hA = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), A);
  const auto hB = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), B);
  const auto hC0 = Kokkos::create_mirror(Kokkos::HostSpace(), C);  // a copy (a mirror view would be C)
  Kokkos::deep_copy(hC0, C);

  scorekit::blas::gemm(Exec(), ta, tb, alpha, A, B, beta, C);
  const auto hC = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), C);

  const long double bound_factor = gamma_n<Real>(k + 2) + gamma_n<long double>(k + 2);
  int failures = 0;
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      long double sum = 0, abs_sum = 0;
      for (std::size_t l = 0; l < k; ++l) {
        const long double a = at ? hA(l, i) : hA(i, l);
        const long double b = bt ? hB(j, l) : hB(l, j);
        sum += a * b;
        abs_sum += std::fabs(a * b);
      }
      long double ref = (long double)alpha * sum;
      long double scale = std::fabs((long double)alpha) * abs_sum;
      if (beta != Real(0)) {
        ref += (long double)beta * hC0(i, j);
        scale += std::fabs((long double)beta * hC0(i, j));
      }
      const long double err = std::fabs((long double)hC(i, j) - ref);
      if (!(err <= bound_factor * scale) && failures++ < 5) {
        INFO("transA = " << ta << ", transB = " << tb << ", " << m << " x " << n << " x " << k << ", C(" << i
                         << ", " << j << ") = " << double(hC(i, j)) << ", reference " << double(ref)
                         << ", error " << double(err) << " > bound " << double(bound_factor * scale));
        CHECK(false);
      }
    }
  CHECK(failures == 0);
}

template <class Real, class Layout, class Exec>
void check_all_transposes() {
  std::uint64_t seed = 20261202;
  for (const char* ta : {"N", "T"})
    for (const char* tb : {"N", "T"}) {
      // Odd sizes (no block divides them); a longer inner dimension; beta = 0 over NaN; k = 1.
      check_gemm<Real, Layout, Exec>(ta, tb, 37, 23, 61, Real(1.5), Real(-0.5), seed++);
      check_gemm<Real, Layout, Exec>(ta, tb, 64, 48, 517, Real(-0.75), Real(2), seed++);
      check_gemm<Real, Layout, Exec>(ta, tb, 19, 29, 40, Real(1), Real(0), seed++);
      check_gemm<Real, Layout, Exec>(ta, tb, 5, 3, 1, Real(2), Real(1), seed++);
    }
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("gemm matches a long double triple loop to gamma_{k+2} for every transpose", "[blas]",
                        Backends) {
  using Exec = TestType;
  SECTION("double, LayoutRight") { check_all_transposes<double, Kokkos::LayoutRight, Exec>(); }
  SECTION("float, LayoutRight") { check_all_transposes<float, Kokkos::LayoutRight, Exec>(); }
  SECTION("double, LayoutLeft") { check_all_transposes<double, Kokkos::LayoutLeft, Exec>(); }
  SECTION("float, LayoutLeft") { check_all_transposes<float, Kokkos::LayoutLeft, Exec>(); }
}

TEMPLATE_LIST_TEST_CASE("gemm with an empty inner dimension scales C by beta, and zeroes it for beta = 0",
                        "[blas]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  Kokkos::View<double**, Kokkos::LayoutRight, Mem> A("A", 3, 0), B("B", 0, 2), C("C", 3, 2);
  Kokkos::deep_copy(C, 4.0);
  scorekit::blas::gemm(Exec(), "N", "N", 1.0, A, B, 0.5, C);
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), C);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j) CHECK(h(i, j) == 2.0);
  Kokkos::deep_copy(C, std::numeric_limits<double>::quiet_NaN());
  scorekit::blas::gemm(Exec(), "N", "N", 1.0, A, B, 0.0, C);
  Kokkos::deep_copy(h, C);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j) CHECK(h(i, j) == 0.0);
}

TEST_CASE("gemm refuses mismatched shapes, bad transposes and overlapping output, naming them", "[blas]") {
  using Exec = Kokkos::DefaultHostExecutionSpace;
  using View = Kokkos::View<double**, Kokkos::LayoutRight, Kokkos::HostSpace>;
  View A("A", 3, 4), B("B", 5, 2), C("C", 3, 2);
  Kokkos::deep_copy(C, 7.0);
  using Catch::Contains;
  REQUIRE_THROWS_AS(scorekit::blas::gemm(Exec(), "N", "N", 1.0, A, B, 0.0, C), scorekit::invalid_argument);
  REQUIRE_THROWS_WITH(scorekit::blas::gemm(Exec(), "N", "N", 1.0, A, B, 0.0, C),
                      Contains("scorekit::blas::gemm: A is 3 x 4 but B is 5 x 2"));
  // B^T is 2 x 5: still not 4 rows.
  REQUIRE_THROWS_WITH(scorekit::blas::gemm(Exec(), "N", "T", 1.0, A, B, 0.0, C),
                      Contains("A is 3 x 4 but B is 5 x 2 (transA = N, transB = T"));
  View B2("B2", 4, 2), C2("C2", 3, 3);
  REQUIRE_THROWS_AS(scorekit::blas::gemm(Exec(), "N", "N", 1.0, A, B2, 0.0, C2), scorekit::invalid_argument);
  REQUIRE_THROWS_WITH(scorekit::blas::gemm(Exec(), "N", "N", 1.0, A, B2, 0.0, C2),
                      Contains("C is 3 x 3 but op(A) op(B) is 3 x 2"));
  REQUIRE_THROWS_WITH(scorekit::blas::gemm(Exec(), "X", "N", 1.0, A, B2, 0.0, C),
                      Contains("transA must be \"N\", \"T\" or \"C\", got \"X\""));
  // C aliasing its input.
  View S("S", 4, 4);
  REQUIRE_THROWS_WITH(scorekit::blas::gemm(Exec(), "N", "N", 1.0, S, S, 0.0, S), Contains("C overlaps A"));
  // Nothing ran: C kept its values.
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), C);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j) CHECK(h(i, j) == 7.0);
}
