// The branch-free elementary functions (core/elementary.hpp) against long double libm: the largest error
// in ulp over dense sweeps of the whole range (subnormal results included) and at the special values,
// built with and without FMA contraction (tests/contraction/), and inside kernels on every backend: the
// same bits as on the host on the host backends, within the bound on a device (whose compiler may
// contract where the host's does not), and the same bits in a vectorised loop as in a plain call.
//
// The reference is the x87 long double (64-bit significand) libm, 11 bits more than double: its own
// error adds at most about 2^-11 ulp to a measured double error. The bound asserted is the one the
// header states, 4 ulp for every function and both types; `scorekit_tests "[.elementary-report]"`
// prints the measured maxima, for each build.
#include "backends.hpp"
#include "contraction/contraction.hpp"

#include <catch2/catch.hpp>

#include <scorekit/core/elementary.hpp>
#include <scorekit/core/kokkos.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

namespace el = scorekit::elementary;
using scorekit_test::Backends;

constexpr long double max_ulp_bound = 4;

/// |y - ref| in units of the last place of Real at ref. NaN against NaN is 0; a result that should
/// have overflowed (or not) is infinitely wrong; ulp below the normal range is the smallest subnormal.
template <class Real>
long double ulp_error(Real y, long double ref) {
  constexpr long double inf = std::numeric_limits<long double>::infinity();
  if (std::isnan(ref) || std::isnan(y)) return (std::isnan(ref) && std::isnan(y)) ? 0 : inf;
  const Real rounded = Real(ref);  // correctly rounded, overflowing to inf as IEEE arithmetic does
  if (std::isinf(rounded) || std::isinf(y)) return rounded == y ? 0 : inf;
  const long double a = std::fabs(ref);
  long double ulp = std::numeric_limits<Real>::denorm_min();
  if (a >= std::numeric_limits<Real>::min()) {
    int e = 0;
    std::frexp(a, &e);  // a = m 2^e, m in [0.5, 1)
    ulp = std::ldexp(1.0L, e - std::numeric_limits<Real>::digits);
  }
  return std::fabs(static_cast<long double>(y) - ref) / ulp;
}

// ---------------------------------------------------------------------------------------------------
// The functions under test, each with its long double reference.

template <class Real>
struct Function {
  std::string name;
  std::function<Real(Real)> f;
  std::function<long double(long double)> ref;
  std::vector<Real> points;  // the sweep
};

/// n points evenly spaced on [a, b].
template <class Real>
void add_linear(std::vector<Real>& v, long double a, long double b, int n) {
  for (int i = 0; i < n; ++i) v.push_back(Real(a + (b - a) * (long double)(i) / (long double)(n - 1)));
}

/// n magnitudes log-uniformly spaced on [lo, hi], with the given sign(s).
template <class Real>
void add_log(std::vector<Real>& v, long double lo, long double hi, int n, bool positive, bool negative) {
  const long double l0 = std::log2(lo), l1 = std::log2(hi);
  for (int i = 0; i < n; ++i) {
    const Real m = Real(std::exp2(l0 + (l1 - l0) * (long double)(i) / (long double)(n - 1)));
    if (positive) v.push_back(m);
    if (negative) v.push_back(-m);
  }
}

/// The k neighbours of x on each side (x itself included).
template <class Real>
void add_around(std::vector<Real>& v, Real x, int k) {
  Real up = x, down = x;
  v.push_back(x);
  for (int i = 0; i < k; ++i) {
    up = std::nextafter(up, std::numeric_limits<Real>::infinity());
    down = std::nextafter(down, -std::numeric_limits<Real>::infinity());
    v.push_back(up);
    v.push_back(down);
  }
}

template <class Real>
std::vector<Function<Real>> functions() {
  constexpr bool is_double = std::is_same<Real, double>::value;
  const Real tiny = std::numeric_limits<Real>::denorm_min();
  const Real big = std::numeric_limits<Real>::max();
  const long double edge = is_double ? 760 : 110;  // beyond the over- and underflow thresholds
  const int n = 200000;                            // per kind of sweep, so 400,000 and more per function
  std::vector<Function<Real>> fs;

  {
    Function<Real> f{"exp", [](Real x) { return el::exp(x); }, [](long double x) { return std::exp(x); }, {}};
    add_linear(f.points, -edge, edge, n);
    add_log(f.points, tiny, edge, n / 2, true, true);
    // Where the result overflows, and where it leaves the normals and underflows to 0.
    add_around(f.points, Real(std::log((long double)big)), 64);
    add_around(f.points, Real(std::log((long double)std::numeric_limits<Real>::min())), 64);
    add_around(f.points, Real(std::log((long double)tiny)), 64);
    add_around(f.points, Real(std::log((long double)tiny / 2)), 64);
    fs.push_back(f);
  }
  {
    Function<Real> f{
        "expm1", [](Real x) { return el::expm1(x); }, [](long double x) { return std::expm1(x); }, {}};
    add_linear(f.points, -edge, edge, n);
    add_log(f.points, tiny, edge, n / 2, true, true);
    add_around(f.points, Real(std::log((long double)big)), 64);
    fs.push_back(f);
  }
  {
    Function<Real> f{"log", [](Real x) { return el::log(x); }, [](long double x) { return std::log(x); }, {}};
    add_log(f.points, tiny, big, n, true, false);
    add_linear(f.points, 0.25L, 4.0L, n / 2);  // around 1, where log(x) = x - 1 - ...
    std::vector<Real> offsets;                 // and 1 +- d for d down to 2^-100
    add_log(offsets, 0x1p-100L, 0.25L, n / 4, true, true);
    for (const Real d : offsets) f.points.push_back(Real(1) + d);
    add_around(f.points, Real(1), 256);
    fs.push_back(f);
  }
  {
    Function<Real> f{
        "log1p", [](Real x) { return el::log1p(x); }, [](long double x) { return std::log1p(x); }, {}};
    add_log(f.points, tiny, big, n, true, false);
    add_log(f.points, tiny, 1, n / 2, false, true);
    add_linear(f.points, -1, 3, n / 2);
    add_around(f.points, Real(-1), 256);
    add_around(f.points, Real(1), 64);  // where 1 + x switches from |x| <= 1 to |x| > 1
    fs.push_back(f);
  }
  {
    Function<Real> f{
        "sigmoid",
        [](Real x) { return el::sigmoid(x); },
        [](long double x) { return x < 0 ? std::exp(x) / (1 + std::exp(x)) : 1 / (1 + std::exp(-x)); },
        {}};
    add_linear(f.points, -edge, edge, n);
    add_log(f.points, tiny, big, n / 2, true, true);
    fs.push_back(f);
  }
  {
    Function<Real> f{"softplus",
                     [](Real x) { return el::softplus(x); },
                     [](long double x) { return (x > 0 ? x : 0) + std::log1p(std::exp(-std::fabs(x))); },
                     {}};
    add_linear(f.points, -edge, edge, n);
    add_log(f.points, tiny, big, n / 2, true, true);
    fs.push_back(f);
  }
  {
    Function<Real> f{
        "tanh", [](Real x) { return el::tanh(x); }, [](long double x) { return std::tanh(x); }, {}};
    add_linear(f.points, -30, 30, n);
    add_log(f.points, tiny, big, n / 2, true, true);
    fs.push_back(f);
  }
  // sin and cos on [-2 pi, 2 pi], with the neighbours of the multiples of pi/2 (the zeros).
  std::vector<Real> angles;
  const long double pi = 3.141592653589793238462643383279502884L;
  add_linear(angles, -2 * pi, 2 * pi, n);
  add_log(angles, tiny, 2 * pi, n / 2, true, true);
  for (int k = -4; k <= 4; ++k) add_around(angles, Real(k * pi / 2), 1024);
  angles.push_back(Real(2 * pi));
  fs.push_back(Function<Real>{"sin",
                              [](Real x) {
                                Real s, c;
                                el::sin_cos(x, s, c);
                                return s;
                              },
                              [](long double x) { return std::sin(x); }, angles});
  fs.push_back(Function<Real>{"cos",
                              [](Real x) {
                                Real s, c;
                                el::sin_cos(x, s, c);
                                return c;
                              },
                              [](long double x) { return std::cos(x); }, angles});
  return fs;
}

struct Worst {
  long double ulp = 0;
  long double at = 0;
  std::size_t points = 0;
};

template <class Real>
Worst measure(const Function<Real>& f) {
  Worst w;
  for (const Real x : f.points) {
    const long double e = ulp_error(f.f(x), f.ref((long double)x));
    if (!(e <= w.ulp)) {  // NaN never happens here (ulp_error maps it to 0 or inf), inf does
      w.ulp = e;
      w.at = x;
    }
  }
  w.points = f.points.size();
  return w;
}

template <class Real>
bool same_bits(Real a, Real b) {
  return std::memcmp(&a, &b, sizeof(Real)) == 0;
}

}  // namespace

TEMPLATE_TEST_CASE("Elementary functions are within 4 ulp of long double libm over their whole range",
                   "[elementary]", double, float) {
  using Real = TestType;
  for (const auto& f : functions<Real>()) {
    const Worst w = measure(f);
    INFO(f.name << ": max " << double(w.ulp) << " ulp at x = " << double(w.at) << " (" << w.points
                << " points)");
    CHECK(w.points >= 300000);
    CHECK(w.ulp <= max_ulp_bound);
  }
}

TEMPLATE_TEST_CASE("Elementary functions at special values", "[elementary]", double, float) {
  using Real = TestType;
  using L = std::numeric_limits<Real>;
  const Real inf = L::infinity(), nan = L::quiet_NaN();
  auto is_nan = [](Real v) { return std::isnan(v); };
  auto is_pos_zero = [](Real v) { return v == 0 && !std::signbit(v); };
  auto is_neg_zero = [](Real v) { return v == 0 && std::signbit(v); };

  // NaN in, NaN out, everywhere: scorekit's non-finite checks rely on it.
  CHECK(is_nan(el::exp(nan)));
  CHECK(is_nan(el::expm1(nan)));
  CHECK(is_nan(el::log(nan)));
  CHECK(is_nan(el::log1p(nan)));
  CHECK(is_nan(el::sigmoid(nan)));
  CHECK(is_nan(el::softplus(nan)));
  CHECK(is_nan(el::tanh(nan)));
  CHECK(is_nan(el::exp(-nan)));
  CHECK(is_nan(el::softplus(-nan)));
  CHECK(is_nan(el::sigmoid(-nan)));
  Real s = 0, c = 0;
  el::sin_cos(nan, s, c);
  CHECK((is_nan(s) && is_nan(c)));

  // Infinities.
  CHECK(el::exp(inf) == inf);
  CHECK(is_pos_zero(el::exp(-inf)));
  CHECK(el::expm1(inf) == inf);
  CHECK(el::expm1(-inf) == Real(-1));
  CHECK(el::log(inf) == inf);
  CHECK(is_nan(el::log(-inf)));
  CHECK(el::log1p(inf) == inf);
  CHECK(is_nan(el::log1p(-inf)));
  CHECK(el::sigmoid(inf) == Real(1));
  CHECK(is_pos_zero(el::sigmoid(-inf)));
  CHECK(el::softplus(inf) == inf);
  CHECK(is_pos_zero(el::softplus(-inf)));
  CHECK(el::tanh(inf) == Real(1));
  CHECK(el::tanh(-inf) == Real(-1));
  el::sin_cos(inf, s, c);
  CHECK((is_nan(s) && is_nan(c)));
  el::sin_cos(-inf, s, c);
  CHECK((is_nan(s) && is_nan(c)));

  // Overflow to inf and underflow to 0 for finite arguments.
  CHECK(el::exp(Real(1000)) == inf);
  CHECK(el::exp(L::max()) == inf);
  CHECK(is_pos_zero(el::exp(Real(-1000))));
  CHECK(is_pos_zero(el::exp(-L::max())));
  CHECK(el::expm1(L::max()) == inf);
  CHECK(el::expm1(-L::max()) == Real(-1));
  CHECK(is_pos_zero(el::sigmoid(-L::max())));
  CHECK(el::sigmoid(L::max()) == Real(1));
  CHECK(el::softplus(L::max()) == L::max());
  CHECK(is_pos_zero(el::softplus(-L::max())));
  // Subnormal results where the exact value is subnormal.
  const Real deep = std::is_same<Real, double>::value ? Real(-740) : Real(-100);
  CHECK(el::exp(deep) > 0);
  CHECK(el::exp(deep) < L::min());
  CHECK(el::sigmoid(deep) > 0);
  CHECK(el::sigmoid(deep) < L::min());
  CHECK(el::softplus(deep) > 0);
  CHECK(el::softplus(deep) < L::min());

  // Logarithms at and outside the edge of their domain.
  CHECK(el::log(Real(0)) == -inf);
  CHECK(el::log(-Real(0)) == -inf);
  CHECK(is_nan(el::log(Real(-1))));
  CHECK(is_nan(el::log(-L::denorm_min())));
  CHECK(el::log(Real(1)) == Real(0));
  CHECK(el::log1p(Real(-1)) == -inf);
  CHECK(is_nan(el::log1p(Real(-2))));
  CHECK(is_nan(el::log1p(std::nextafter(Real(-1), Real(-2)))));
  CHECK(std::isfinite(el::log(L::denorm_min())));
  CHECK(std::isfinite(el::log(L::max())));

  // Signed zeros and tiny arguments: f(x) = x where f(x) = x + O(x^2).
  CHECK(is_pos_zero(el::expm1(Real(0))));
  CHECK(is_neg_zero(el::expm1(-Real(0))));
  CHECK(is_pos_zero(el::log1p(Real(0))));
  CHECK(is_neg_zero(el::log1p(-Real(0))));
  CHECK(is_pos_zero(el::tanh(Real(0))));
  CHECK(is_neg_zero(el::tanh(-Real(0))));
  el::sin_cos(-Real(0), s, c);
  CHECK(is_neg_zero(s));
  CHECK(c == Real(1));
  el::sin_cos(Real(0), s, c);
  CHECK(is_pos_zero(s));
  CHECK(c == Real(1));
  for (const Real x : {L::denorm_min(), -L::denorm_min(), L::min(), -L::min(), Real(1e-30), Real(-1e-30)}) {
    CHECK(el::expm1(x) == x);
    CHECK(el::log1p(x) == x);
    CHECK(el::tanh(x) == x);
    el::sin_cos(x, s, c);
    CHECK(s == x);
    CHECK(c == Real(1));
  }
  CHECK(el::exp(Real(0)) == Real(1));
  CHECK(el::exp(-Real(0)) == Real(1));
  CHECK(el::sigmoid(Real(0)) == Real(0.5));

  // sin_cos refuses arguments where its reduction would be wrong.
  const Real cap = el::sin_cos_max_argument<Real>();
  el::sin_cos(cap, s, c);
  CHECK((std::isfinite(s) && std::isfinite(c)));
  el::sin_cos(std::nextafter(cap, inf), s, c);
  CHECK((is_nan(s) && is_nan(c)));
  el::sin_cos(-std::nextafter(cap, inf), s, c);
  CHECK((is_nan(s) && is_nan(c)));
}

TEMPLATE_TEST_CASE("sin_cos keeps its absolute accuracy up to its largest argument", "[elementary]", double,
                   float) {
  using Real = TestType;
  // Absolute error against long double, in units of ulp(1) / 2 = epsilon / 2 (the spacing of Real just
  // below 1), at 100,000 points on [-cap, cap]. The 4 ulp bound holds for values near 1.
  const Real cap = el::sin_cos_max_argument<Real>();
  std::vector<Real> xs;
  add_linear(xs, -(long double)cap, (long double)cap, 100000);
  const long double unit = std::numeric_limits<Real>::epsilon() / 2;
  long double worst = 0;
  for (const Real x : xs) {
    Real s, c;
    el::sin_cos(x, s, c);
    worst = std::max(worst, std::fabs(s - std::sin((long double)x)) / unit);
    worst = std::max(worst, std::fabs(c - std::cos((long double)x)) / unit);
  }
  INFO("max absolute error " << double(worst) << " units of epsilon / 2");
  CHECK(worst <= max_ulp_bound);
}

namespace scorekit_test {

/// The nine functions at each input, in a kernel on Exec, copied to the host: row i is [9 i, 9 i + 9),
/// in the order exp, expm1, log, log1p, sigmoid, softplus, tanh, sin, cos (that of functions<Real>()).
template <class Exec, class Real>
std::vector<Real> elementary_in_kernel(std::vector<Real> inputs) {
  namespace el = scorekit::elementary;
  constexpr int m = contraction_elementary_functions;
  const int n = int(inputs.size());
  Kokkos::View<Real*, Kokkos::HostSpace> h_in(inputs.data(), std::size_t(n));
  Kokkos::View<Real*, typename Exec::memory_space> in("in", n);
  Kokkos::deep_copy(in, h_in);
  Kokkos::View<Real**, typename Exec::memory_space> out("out", n, m);
  Kokkos::parallel_for(
      "elementary", Kokkos::RangePolicy<Exec>(0, n), KOKKOS_LAMBDA(const int i) {
        const Real x = in(i);
        out(i, 0) = el::exp(x);
        out(i, 1) = el::expm1(x);
        out(i, 2) = el::log(x);
        out(i, 3) = el::log1p(x);
        out(i, 4) = el::sigmoid(x);
        out(i, 5) = el::softplus(x);
        out(i, 6) = el::tanh(x);
        Real s, c;
        el::sin_cos(x, s, c);
        out(i, 7) = s;
        out(i, 8) = c;
      });
  const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), out);
  std::vector<Real> values(std::size_t(n) * m);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < m; ++j) values[std::size_t(m * i + j)] = h(i, j);
  return values;
}

}  // namespace scorekit_test

namespace {

/// How many of the values a kernel on Exec computes are not what they should be. On a host backend
/// (the same compiler and flags as this file) they must be the host's bits. On a device, whose compiler
/// may contract a * b + c where the host's does not (nvcc does by default), the bits may differ and each
/// value must be within the header's bound of the long double reference instead: 4 ulp, for sin and cos
/// on [-2 pi, 2 pi] and 4 (epsilon / 2) absolutely up to sin_cos_max_argument (there a zero of sin or cos
/// has no relative accuracy to speak of), NaN beyond it.
template <class Exec, class Real>
int elementary_kernel_mismatches() {
  using L = std::numeric_limits<Real>;
  constexpr int m = scorekit_test::contraction_elementary_functions;
  std::vector<Real> inputs = {0,
                              -Real(0),
                              1,
                              -1,
                              Real(0.5),
                              Real(-0.5),
                              Real(3),
                              Real(-700),
                              Real(700),
                              Real(-90),
                              Real(88),
                              L::infinity(),
                              -L::infinity(),
                              L::quiet_NaN(),
                              L::denorm_min(),
                              L::min(),
                              L::max(),
                              -L::max()};
  add_linear(inputs, -800, 800, 4096);
  add_log(inputs, L::denorm_min(), L::max(), 1024, true, true);
  const std::vector<Real> d = scorekit_test::elementary_in_kernel<Exec, Real>(inputs);
  const bool host = std::is_same<typename Exec::memory_space, Kokkos::HostSpace>::value;
  std::vector<Function<Real>> fs;  // the references, in the kernel's order, needed on a device only
  if (!host) fs = functions<Real>();
  const long double two_pi = 2 * 3.141592653589793238462643383279502884L;
  const long double cap = el::sin_cos_max_argument<Real>();
  int mismatches = 0;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const Real x = inputs[i];
    Real s, c;
    el::sin_cos(x, s, c);
    const Real here[m] = {
        el::exp(x), el::expm1(x), el::log(x), el::log1p(x), el::sigmoid(x), el::softplus(x), el::tanh(x), s,
        c};
    for (int j = 0; j < m; ++j) {
      const Real y = d[m * i + std::size_t(j)];
      bool good = same_bits(y, here[j]);
      if (!host && !good) {
        const long double ax = std::fabs(static_cast<long double>(x));
        const long double ref = fs[std::size_t(j)].ref(x);
        if (j < 7 || ax <= two_pi)
          good = ulp_error(y, ref) <= max_ulp_bound;
        else if (ax <= cap)
          good = std::fabs(y - ref) <= max_ulp_bound * (L::epsilon() / 2);
        else
          good = std::isnan(y);
      }
      mismatches += good ? 0 : 1;
    }
  }
  return mismatches;
}

}  // namespace

TEMPLATE_LIST_TEST_CASE(
    "Elementary functions inside kernels: the host's bits on host backends, within the "
    "bound on a device",
    "[elementary][threads]", Backends) {
  CHECK(elementary_kernel_mismatches<TestType, double>() == 0);
  CHECK(elementary_kernel_mismatches<TestType, float>() == 0);
}

namespace {

/// The largest error of function j of functions<Real>() (f) as the given build of
/// tests/contraction/variant.cpp computes it.
template <class Real>
Worst measure_build(const Function<Real>& f, int j, void (*evaluate)(const Real*, std::int64_t, Real*)) {
  constexpr int m = scorekit_test::contraction_elementary_functions;
  std::vector<Real> out(f.points.size() * m);
  evaluate(f.points.data(), std::int64_t(f.points.size()), out.data());
  Worst w;
  for (std::size_t i = 0; i < f.points.size(); ++i) {
    const long double e = ulp_error(out[m * i + std::size_t(j)], f.ref((long double)f.points[i]));
    if (!(e <= w.ulp)) {
      w.ulp = e;
      w.at = f.points[i];
    }
  }
  w.points = f.points.size();
  return w;
}

template <class Real>
using EvaluateElementary = void (*)(const Real*, std::int64_t, Real*);

/// The builds of tests/contraction/variant.cpp this binary has and this CPU runs, with their names.
template <class Real>
std::vector<std::pair<const char*, EvaluateElementary<Real>>> contraction_builds() {
  std::vector<std::pair<const char*, EvaluateElementary<Real>>> builds = {
      {"without contraction", &scorekit_test::contraction_off::evaluate_elementary}};
#ifdef SCOREKIT_TEST_CONTRACTION_ON
  if (scorekit_test::cpu_runs_contraction_on())
    builds.push_back({"with contraction", &scorekit_test::contraction_on::evaluate_elementary});
#endif
  return builds;
}

}  // namespace

TEMPLATE_TEST_CASE("Elementary functions are within 4 ulp built with and without FMA contraction",
                   "[elementary][contraction]", double, float) {
  using Real = TestType;
  const auto fs = functions<Real>();
  const auto builds = contraction_builds<Real>();
#ifdef SCOREKIT_TEST_CONTRACTION_ON
  if (builds.size() < 2) WARN("this CPU has no FMA: the contracted build is not run");
#else
  WARN(
      "built without the contracted variant (the compiler has no target(\"fma\")): only the uncontracted "
      "build is checked");
#endif
  for (const auto& build : builds)
    for (std::size_t j = 0; j < fs.size(); ++j) {
      const Worst w = measure_build(fs[j], int(j), build.second);
      INFO(build.first << ", " << fs[j].name << ": max " << double(w.ulp) << " ulp at x = " << double(w.at));
      CHECK(w.ulp <= max_ulp_bound);
    }
}

TEMPLATE_TEST_CASE("A SCOREKIT_SIMD loop gives the same bits as one call at a time", "[elementary]", double,
                   float) {
  using Real = TestType;
  std::vector<Real> x;
  add_linear(x, -100, 100, 1000);
  add_log(x, std::numeric_limits<Real>::denorm_min(), std::numeric_limits<Real>::max(), 500, true, true);
  x.push_back(std::numeric_limits<Real>::quiet_NaN());
  x.push_back(std::numeric_limits<Real>::infinity());
  const int n = int(x.size());
  std::vector<Real> exp_v(x.size()), softplus_v(x.size()), sigmoid_v(x.size()), tanh_v(x.size()),
      log_v(x.size()), sin_v(x.size()), cos_v(x.size());
  const Real* xp = x.data();
  Real *e = exp_v.data(), *sp = softplus_v.data(), *sg = sigmoid_v.data(), *th = tanh_v.data(),
       *lg = log_v.data(), *sn = sin_v.data(), *cs = cos_v.data();
  SCOREKIT_SIMD
  for (int i = 0; i < n; ++i) {
    e[i] = el::exp(xp[i]);
    sp[i] = el::softplus(xp[i]);
    sg[i] = el::sigmoid(xp[i]);
    th[i] = el::tanh(xp[i]);
    lg[i] = el::log(xp[i] < 0 ? -xp[i] : xp[i]);
    el::sin_cos(xp[i] * Real(0.0625), sn[i], cs[i]);
  }
  int mismatches = 0;
  for (int i = 0; i < n; ++i) {
    const Real v = x[std::size_t(i)];
    Real s, c;
    el::sin_cos(v * Real(0.0625), s, c);
    mismatches += same_bits(exp_v[std::size_t(i)], el::exp(v)) ? 0 : 1;
    mismatches += same_bits(softplus_v[std::size_t(i)], el::softplus(v)) ? 0 : 1;
    mismatches += same_bits(sigmoid_v[std::size_t(i)], el::sigmoid(v)) ? 0 : 1;
    mismatches += same_bits(tanh_v[std::size_t(i)], el::tanh(v)) ? 0 : 1;
    mismatches += same_bits(log_v[std::size_t(i)], el::log(v < 0 ? -v : v)) ? 0 : 1;
    mismatches += same_bits(sin_v[std::size_t(i)], s) ? 0 : 1;
    mismatches += same_bits(cos_v[std::size_t(i)], c) ? 0 : 1;
  }
  CHECK(mismatches == 0);
}

TEST_CASE("Measured maxima of the elementary functions", "[.elementary-report]") {
  auto report = [](const char* type, auto fs) {
    for (const auto& f : fs) {
      const Worst w = measure(f);
      std::printf("%-7s %-9s max %.3f ulp at x = %.9Lg (%zu points)\n", type, f.name.c_str(), double(w.ulp),
                  w.at, w.points);
    }
  };
  report("double", functions<double>());
  report("float", functions<float>());
  auto report_builds = [](const char* type, auto fs, auto builds) {
    for (const auto& build : builds)
      for (std::size_t j = 0; j < fs.size(); ++j) {
        const Worst w = measure_build(fs[j], int(j), build.second);
        std::printf("%-7s %-9s max %.3f ulp at x = %.9Lg (%s)\n", type, fs[j].name.c_str(), double(w.ulp),
                    w.at, build.first);
      }
  };
  report_builds("double", functions<double>(), contraction_builds<double>());
  report_builds("float", functions<float>(), contraction_builds<float>());
}

namespace {

/// detail::sum_in_lanes<8>'s documented order written out on the host: term i into partial sum i mod 8,
/// then the partial sums added pairwise (l + 4, l + 2, l + 1).
double lanes_reference(const std::vector<double>& terms) {
  double part[8] = {};
  for (std::size_t i = 0; i < terms.size(); ++i) part[i % 8] += terms[i];
  for (int w = 4; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) part[l] += part[l + w];
  return part[0];
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("sum_in_lanes adds in its documented order on every backend", "[elementary][sum]",
                        Backends) {
  // Terms of mixed magnitude, so that another order of the sum gives other bits; lengths 0..40 cover a
  // tail alone, whole groups of 8 and groups with a tail.
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const int max_n = 40;
  std::vector<double> terms(static_cast<std::size_t>(max_n));
  for (int i = 0; i < max_n; ++i)
    terms[std::size_t(i)] = (i % 3 == 0 ? 1e16 : 1.0) * (i % 2 ? -1.0 : 1.0) + i / 7.0;
  Kokkos::View<double*, Kokkos::HostSpace> h_terms(terms.data(), terms.size());
  Kokkos::View<double*, Mem> d_terms("terms", terms.size());
  Kokkos::deep_copy(d_terms, h_terms);
  Kokkos::View<double*, Mem> sums("sums", std::size_t(max_n) + 1);
  Kokkos::parallel_for(
      "sum_in_lanes", Kokkos::RangePolicy<Exec>(0, max_n + 1), KOKKOS_LAMBDA(const int n) {
        sums(n) = scorekit::detail::sum_in_lanes<8, double>(n, [&](int i) { return d_terms(i); });
      });
  const auto h_sums = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), sums);
  int differs_from_sequential = 0;
  for (int n = 0; n <= max_n; ++n) {
    const std::vector<double> head(terms.begin(), terms.begin() + n);
    INFO("n = " << n);
    const double expected = lanes_reference(head);
    CHECK(std::memcmp(&h_sums(n), &expected, sizeof(double)) == 0);
    double sequential = 0;
    for (double t : head) sequential += t;
    differs_from_sequential += sequential != h_sums(n);
  }
  // The terms do tell the orders apart (else the check above would prove nothing about the order).
  CHECK(differs_from_sequential > 0);
}
