// The network-independent training tools of nn/: CRC-32 (core/file.hpp), parameter initialisation,
// Adam, the EMA of the parameters, and checkpoints. Kernels (initialisation, Adam, EMA, the view
// helpers of checkpoints) run once per backend and for float and double; the file format tests are host
// code and run once. Every tolerance is derived next to its check: floating-point ones from a running
// first-order rounding-error bound, statistical ones from the estimator's standard error.
#include "backends.hpp"
#include "support.hpp"

#include <catch2/catch.hpp>

#include <scorekit/core/file.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/metrics/statistical_tests.hpp>
#include <scorekit/nn/adam.hpp>
#include <scorekit/nn/checkpoint.hpp>
#include <scorekit/nn/ema.hpp>
#include <scorekit/nn/init.hpp>
#include <scorekit/nn/segment.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using scorekit::CounterRng;
using scorekit::RngStream;
using scorekit::nn::Adam;
using scorekit::nn::AdamSettings;
using scorekit::nn::Checkpoint;
using scorekit::nn::Ema;
using scorekit::nn::Init;
using scorekit::nn::ParameterKind;
using scorekit::nn::Segment;

using scorekit_test::TempDir;

std::vector<std::uint8_t> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void spit(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

using scorekit_test::message_of;

template <class View>
std::vector<double> host_values(const View& v) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  std::vector<double> out(h.extent(0));
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = double(h(i));
  return out;
}

template <class Real, class Mem>
Kokkos::View<Real*, Mem> device_vector(const std::vector<double>& values, const std::string& label = "v") {
  Kokkos::View<Real*, Mem> v(label, values.size());
  auto h = Kokkos::create_mirror_view(v);
  for (std::size_t i = 0; i < values.size(); ++i) h(i) = Real(values[i]);
  Kokkos::deep_copy(v, h);
  return v;
}

template <class Real>
double unit_roundoff() {
  return std::numeric_limits<Real>::epsilon() / 2;
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// CRC-32

TEST_CASE("crc32: IEEE 802.3 check values, incremental use, and zlib's and the byte-wise table's agree",
          "[nn][checkpoint]") {
  using scorekit::detail::crc32;
  using scorekit::detail::crc32_bytewise;
  const std::string digits = "123456789";
  const auto* d = reinterpret_cast<const std::uint8_t*>(digits.data());
  CHECK(crc32(d, digits.size()) == 0xCBF43926u);  // the catalogued check value of CRC-32/ISO-HDLC
  CHECK(crc32_bytewise(d, digits.size()) == 0xCBF43926u);
  const std::string fox = "The quick brown fox jumps over the lazy dog";
  CHECK(crc32(reinterpret_cast<const std::uint8_t*>(fox.data()), fox.size()) == 0x414FA339u);
  CHECK(crc32(nullptr, 0) == 0u);
  CHECK(crc32_bytewise(nullptr, 0) == 0u);
  CHECK(crc32(d + 4, 5, crc32(d, 4)) == 0xCBF43926u);
  CHECK(crc32_bytewise(d + 4, 5, crc32_bytewise(d, 4)) == 0xCBF43926u);
  // crc32 is zlib's where the build has zlib, else the table: the two agree on any bytes.
  std::vector<std::uint8_t> bytes(100003);
  std::uint32_t state = 12345;
  for (auto& b : bytes) b = std::uint8_t((state = state * 1664525u + 1013904223u) >> 24);
  CHECK(crc32(bytes.data(), bytes.size()) == crc32_bytewise(bytes.data(), bytes.size()));
  CHECK(crc32(bytes.data() + 77, 5000, 0xDEADBEEFu) == crc32_bytewise(bytes.data() + 77, 5000, 0xDEADBEEFu));
}

// ------------------------------------------------------------------------------------------------
// Segments and initialisation

namespace {

/// A 400 x 300 dense layer, its bias, a gap of 5 untouched parameters, then a 10 x 400 embedding.
std::vector<Segment> test_segments() {
  return {Segment{ParameterKind::weight, 0, 120000, 300, 400},
          Segment{ParameterKind::bias, 120000, 400, 300, 400},
          Segment{ParameterKind::embedding, 120405, 4000, 10, 400}};
}
constexpr int test_n_params = 124405;

template <class Real, class Exec>
void check_initialisation() {
  using Mem = typename Exec::memory_space;
  const std::vector<Segment> segs = test_segments();
  const std::uint64_t seed = 20260101;
  for (Init init : {Init::glorot_uniform, Init::glorot_normal, Init::he_uniform, Init::he_normal}) {
    INFO("init " << scorekit::nn::init_name(init) << ", " << sizeof(Real) * 8 << "-bit");
    Kokkos::View<Real*, Mem> p("p", test_n_params);
    Kokkos::deep_copy(p, Real(7));
    scorekit::nn::initialize(Exec(), p, segs.data(), int(segs.size()), init, seed);
    const std::vector<double> h = host_values(p);

    const bool uniform = init == Init::glorot_uniform || init == Init::he_uniform;
    const bool glorot = init == Init::glorot_uniform || init == Init::glorot_normal;
    const double var = glorot ? 2.0 / (300 + 400) : 2.0 / 300;  // both papers fix the variance
    const double a = std::sqrt(3 * var);                        // half-width of the uniform variant
    const std::vector<double> w(h.begin(), h.begin() + 120000);
    const double n = double(w.size());
    double mean = 0;
    for (double x : w) mean += x;
    mean /= n;
    double s2 = 0;
    for (double x : w) s2 += (x - mean) * (x - mean);
    s2 /= n - 1;
    // Standard errors: sd/sqrt(n) for the mean; sqrt((mu4 - sigma^4)/n) for the sample variance, with
    // mu4 = a^4/5 for U(-a, a) and 3 sigma^4 for a normal. Five standard errors: a false alarm has
    // probability below 1e-6 per check.
    const double mu4 = uniform ? a * a * a * a / 5 : 3 * var * var;
    CHECK(std::abs(mean) <= 5 * std::sqrt(var / n));
    CHECK(std::abs(s2 - var) <= 5 * std::sqrt((mu4 - var * var) / n));
    // The shape: a Kolmogorov-Smirnov test against the intended law, at level 1e-4.
    const scorekit::KsTestResult ks =
        uniform
            ? scorekit::ks_test(w, [a](double x) { return std::min(1.0, std::max(0.0, (x + a) / (2 * a))); })
            : scorekit::ks_test_normal(w, 0, std::sqrt(var));
    CHECK(ks.p_value > 1e-4);
    if (uniform) {
      double largest = 0;
      for (double x : w) largest = std::max(largest, std::abs(x));
      CHECK(largest < a);
    }
    // Values are CounterRng(seed, index, 0, init) draws: compare a few with the host generator (2 ulps
    // allow a fused multiply-add on other backends).
    for (int i : {0, 1, 777, 119999}) {
      CounterRng<Real> rng(seed, std::uint64_t(i), 0, RngStream::init);
      const double expect = uniform ? double(Real(a) * (Real(2) * rng.uniform() - Real(1)))
                                    : double(Real(std::sqrt(var)) * rng.normal());
      CHECK(std::abs(h[std::size_t(i)] - expect) <=
            2 * std::numeric_limits<Real>::epsilon() * std::abs(expect));
    }

    for (int i = 120000; i < 120400; ++i) CHECK(h[std::size_t(i)] == 0.0);  // biases
    for (int i = 120400; i < 120405; ++i) CHECK(h[std::size_t(i)] == 7.0);  // the gap is untouched
    double emb_mean = 0;
    bool in_unit = true;
    for (int i = 120405; i < test_n_params; ++i) {
      in_unit = in_unit && h[std::size_t(i)] >= 0 && h[std::size_t(i)] < 1;
      emb_mean += h[std::size_t(i)];
    }
    CHECK(in_unit);
    emb_mean /= 4000;
    CHECK(std::abs(emb_mean - 0.5) <= 5 * std::sqrt(1.0 / 12 / 4000));  // U(0,1): variance 1/12

    // The same seed gives the same values, listed segments in any order; another seed other values.
    Kokkos::View<Real*, Mem> q("q", test_n_params);
    Kokkos::deep_copy(q, Real(7));
    std::vector<Segment> reversed(segs.rbegin(), segs.rend());
    scorekit::nn::initialize(Exec(), q, reversed.data(), int(reversed.size()), init, seed);
    CHECK(host_values(q) == h);
    scorekit::nn::initialize(q, segs.data(), int(segs.size()), init, seed + 1);
    const std::vector<double> other = host_values(q);
    int same = 0;
    for (int i = 0; i < 120000; ++i) same += other[std::size_t(i)] == h[std::size_t(i)];
    CHECK(same < 10);
  }
}

}  // namespace

TEMPLATE_LIST_TEST_CASE(
    "initialize: weight mean, variance and law by fans; zero biases; embeddings in [0, 1)", "[nn][init]",
    scorekit_test::Backends) {
  check_initialisation<double, TestType>();
  check_initialisation<float, TestType>();
}

TEST_CASE("initialize: bad segments are refused by name", "[nn][init]") {
  Kokkos::View<double*, Kokkos::HostSpace> p("p", 100);
  auto error = [&](std::vector<Segment> s, Init init = Init::glorot_uniform) {
    return message_of<scorekit::invalid_argument>(
        [&] { scorekit::nn::initialize(p, s.data(), int(s.size()), init, 1); });
  };
  CHECK_THAT(error({{ParameterKind::weight, 90, 20, 4, 5}}), Catch::Contains("outside the 100 parameters"));
  CHECK_THAT(error({{ParameterKind::weight, -1, 20, 4, 5}}), Catch::Contains("outside"));
  CHECK_THAT(error({{ParameterKind::weight, 0, 20, 4, 5}, {ParameterKind::bias, 19, 5, 4, 5}}),
             Catch::Contains("segments 0 [0, 20) and 1 [19, 24) overlap"));
  CHECK_THAT(error({{ParameterKind::bias, 50, 5, 4, 5}, {ParameterKind::weight, 30, 21, 4, 5}}),
             Catch::Contains("overlap"));
  CHECK_THAT(error({{ParameterKind::weight, 0, 20, 0, 5}}), Catch::Contains("fan_in 0"));
  CHECK_THAT(error({{ParameterKind::weight, 0, 0, 4, 5}}), Catch::Contains("size 0"));
  CHECK_THAT(error({{ParameterKind(9), 0, 10, 4, 5}}), Catch::Contains("unknown kind"));
  CHECK_THAT(error({{ParameterKind::weight, 0, 20, 4, 5}}, Init(17)),
             Catch::Contains("unknown initialisation"));
  // Adjacent segments are fine.
  std::vector<Segment> ok{{ParameterKind::weight, 0, 20, 4, 5}, {ParameterKind::bias, 20, 5, 4, 5}};
  CHECK_NOTHROW(scorekit::nn::initialize(p, ok.data(), 2, Init::he_normal, 1));
}

// ------------------------------------------------------------------------------------------------
// Adam

namespace {

/// Gradient chunk c of parameter i at step t: a normal draw times a per-parameter magnitude spanning
/// 1e-3 .. 1e3, rounded to Real (both the kernel and the reference see the rounded values).
template <class Real>
Real chunk_value(int t, int c, int i) {
  CounterRng<double> rng(99, std::uint64_t(i), std::uint64_t(t), RngStream(1024 + c));
  const double magnitude = std::pow(10.0, -3.0 + 6.0 * double(i % 13) / 12.0);
  return Real(magnitude * rng.normal());
}

template <class Real, class Mem>
Kokkos::View<Real**, Kokkos::LayoutRight, Mem> make_chunks(int t, int n_chunks, int n) {
  Kokkos::View<Real**, Kokkos::LayoutRight, Mem> c("chunks", n_chunks, n);
  auto h = Kokkos::create_mirror_view(c);
  for (int k = 0; k < n_chunks; ++k)
    for (int i = 0; i < n; ++i) h(k, i) = chunk_value<Real>(t, k, i);
  Kokkos::deep_copy(c, h);
  return c;
}

template <class Real, class Exec>
void check_adam_against_reference() {
  using Mem = typename Exec::memory_space;
  using L = long double;
  const int n = 64, n_chunks = 3, n_steps = 50;
  const Real scale = Real(0.25);
  AdamSettings s;
  s.learning_rate = 3e-3;
  Adam<Real, Exec> adam(n, s);
  std::vector<double> p0(n);
  for (int i = 0; i < n; ++i) p0[std::size_t(i)] = std::sin(double(i)) * 2;
  auto p = device_vector<Real, Mem>(p0, "params");

  // The reference: Algorithm 1 of Kingma and Ba as printed, in long double, from the same (rounded)
  // gradient chunks. Alongside, a first-order bound on the difference, propagated through every
  // operation of the kernel: each rounding contributes u times the magnitude of its result (u = the
  // unit roundoff of Real plus that of the reference), and earlier errors propagate through m, v and
  // p with their exact derivatives. The gradients do not depend on p, so the errors add up over the
  // steps without feedback. The checks allow twice the bound, for the second-order terms.
  const double u = unit_roundoff<Real>() + std::numeric_limits<L>::epsilon() / 2;
  const double b1 = s.beta1, b2 = s.beta2, lr = s.learning_rate, eps = s.epsilon;
  std::vector<L> rp(p0.begin(), p0.end()), rm(n, 0), rv(n, 0);
  std::vector<double> dp(n, 0), dm(n, 0), dv(n, 0);
  for (int t = 1; t <= n_steps; ++t) {
    auto chunks = make_chunks<Real, Mem>(t, n_chunks, n);
    adam.step(p, chunks, scale);
    const L bc1 = 1 - std::pow(L(b1), L(t)), bc2 = 1 - std::pow(L(b2), L(t));
    const double k = 1 / std::sqrt(double(bc2)), step_size = lr / double(bc1);
    for (int i = 0; i < n; ++i) {
      const std::size_t j = std::size_t(i);
      L sum = 0, abs_sum = 0;
      for (int c = 0; c < n_chunks; ++c) {
        sum += L(chunk_value<Real>(t, c, i));
        abs_sum += std::abs(L(chunk_value<Real>(t, c, i)));
      }
      const L g = sum * L(scale);
      const L m_old = rm[j], v_old = rv[j];
      rm[j] = L(b1) * m_old + (1 - L(b1)) * g;
      rv[j] = L(b2) * v_old + (1 - L(b2)) * g * g;
      const L mhat = rm[j] / bc1, vhat = rv[j] / bc2;
      rp[j] -= L(lr) * mhat / (std::sqrt(vhat) + L(eps));

      const double ag = double(std::abs(g)), m = double(std::abs(rm[j])), v = double(rv[j]);
      const double dg = double(scale) * (n_chunks - 1) * u * double(abs_sum) + u * ag;
      dm[j] = b1 * dm[j] + (1 - b1) * dg + 2 * u * (b1 * double(std::abs(m_old)) + (1 - b1) * ag) + u * m;
      dv[j] = b2 * dv[j] + (1 - b2) * 2 * ag * dg + 2 * u * b2 * double(v_old) + 3 * u * (1 - b2) * ag * ag +
              u * v;
      const double sv = std::sqrt(v), D = sv * k + eps;
      const double dD = k * (dv[j] / (2 * sv) + u * sv) + 2 * u * k * sv + u * eps + u * D;
      const double q = m / D, dq = dm[j] / D + m * dD / (D * D) + u * q;
      dp[j] += step_size * dq + 2 * u * step_size * q + u * double(std::abs(rp[j]));
    }
  }
  REQUIRE(adam.steps() == n_steps);
  const std::vector<double> hp = host_values(p), hm = host_values(adam.moment1()),
                            hv = host_values(adam.moment2());
  double worst = 0;  // the largest error in units of its bound, reported on failure
  for (int i = 0; i < n; ++i) {
    const std::size_t j = std::size_t(i);
    INFO("parameter " << i);
    CHECK(std::abs(hp[j] - double(rp[j])) <= 2 * dp[j]);
    CHECK(std::abs(hm[j] - double(rm[j])) <= 2 * dm[j]);
    CHECK(std::abs(hv[j] - double(rv[j])) <= 2 * dv[j]);
    worst = std::max(worst, std::abs(hp[j] - double(rp[j])) / dp[j]);
  }
  INFO("largest parameter error / bound: " << worst);
  // The test has teeth: each step moves a parameter by about the learning rate, and twice the bound
  // (mostly the rounding of p itself, u |p| per step, in float) stays below 2% of one step, so a formula
  // wrong by more than that in any one step is caught.
  for (int i = 0; i < n; ++i) CHECK(2 * dp[std::size_t(i)] < 0.02 * lr);
  // The last gradient is the last summed, scaled chunk row.
  const std::vector<double> g = host_values(adam.last_gradient());
  Real expect = chunk_value<Real>(n_steps, 0, 5);
  for (int c = 1; c < n_chunks; ++c) expect += chunk_value<Real>(n_steps, c, 5);
  CHECK(g[5] == double(expect * scale));
}

template <class Real, class Exec>
void check_adam_first_step() {
  using Mem = typename Exec::memory_space;
  AdamSettings s;
  s.learning_rate = 0.01;
  const int n = 9;
  // |g| >> eps, |g| ~ eps and g = 0: the first step is lr g / (|g| + eps), since m-hat = g and
  // sqrt(v-hat) = |g| exactly in exact arithmetic.
  const std::vector<double> g{1.0, -3.5, 1e3, -1e-3, 2.5e-7, 1e-8, -1e-8, 3e-9, 0.0};
  const std::vector<double> p0{0.5, -0.25, 1.0, 2.0, -1.0, 0.0, 0.125, 3.0, -2.0};
  Adam<Real, Exec> adam(n, s);
  auto p = device_vector<Real, Mem>(p0);
  auto gv = device_vector<Real, Mem>(g);
  adam.step(p, gv);
  const std::vector<double> hp = host_values(p);
  const double u = unit_roundoff<Real>();
  for (int i = 0; i < n; ++i) {
    const std::size_t j = std::size_t(i);
    const long double gi = Real(g[j]);
    const long double update = 0.01L * gi / (std::abs(gi) + 1e-8L);
    const long double expect = Real(p0[j]) - update;
    INFO("g = " << g[j]);
    // The kernel's update passes through at most 16 roundings (constants, m, v, sqrt, the scaled
    // denominator, the division, the step size), each relative u; then one more for p.
    CHECK(std::abs(hp[j] - double(expect)) <=
          16 * u * double(std::abs(update)) + u * std::abs(double(expect)));
  }
}

template <class Real, class Exec>
void check_adam_minimises_quadratic() {
  using Mem = typename Exec::memory_space;
  // f(p) = 1/2 sum a_i (p_i - c_i)^2 with curvatures a_i from 1e-2 to 1e2: Adam's steps are invariant
  // to a diagonal rescaling of the gradient (up to epsilon), so every coordinate converges alike.
  const int n = 16;
  std::vector<double> a(n), c(n);
  for (int i = 0; i < n; ++i) {
    a[std::size_t(i)] = std::pow(10.0, -2.0 + 4.0 * i / (n - 1));
    c[std::size_t(i)] = 2 * std::cos(3.0 * i);
  }
  AdamSettings s;
  s.learning_rate = 0.01;
  Adam<Real, Exec> adam(n, s);
  Kokkos::View<Real*, Mem> p("p", n);
  Kokkos::View<Real*, Mem> g("g", n);
  auto av = device_vector<Real, Mem>(a), cv = device_vector<Real, Mem>(c);
  for (int t = 0; t < 2000; ++t) {
    Kokkos::parallel_for(
        Kokkos::RangePolicy<Exec>(0, n), KOKKOS_LAMBDA(const int i) { g(i) = av(i) * (p(i) - cv(i)); });
    adam.step(p, g);
  }
  // Each Adam step moves a coordinate by about the learning rate (at most lr (1 - beta1) /
  // sqrt(1 - beta2) ~ 3.2 lr), so 2000 steps can cover the distance of at most 2 to the minimiser;
  // once there, the momentum's oscillation decays. Claim: every coordinate ends within one step size.
  const std::vector<double> hp = host_values(p);
  for (int i = 0; i < n; ++i) {
    INFO("coordinate " << i << " with curvature " << a[std::size_t(i)]);
    CHECK(std::abs(hp[std::size_t(i)] - c[std::size_t(i)]) < s.learning_rate);
  }
}

template <class Real, class Exec>
void check_adam_chunks_and_refusal() {
  using Mem = typename Exec::memory_space;
  const int n = 40, n_chunks = 5;
  const Real scale = Real(1.0 / 3.0);
  // Five chunks, or their sum pre-added on the host in the same order as one chunk: the kernel adds
  // the rows in row order, so both give bitwise the same steps.
  Adam<Real, Exec> a(n, AdamSettings{}), b(n, AdamSettings{});
  std::vector<double> p0(n, 0.5);
  auto pa = device_vector<Real, Mem>(p0), pb = device_vector<Real, Mem>(p0);
  for (int t = 1; t <= 3; ++t) {
    auto chunks = make_chunks<Real, Mem>(t, n_chunks, n);
    Kokkos::View<Real**, Kokkos::LayoutRight, Mem> one("one", 1, n);
    auto h = Kokkos::create_mirror_view(one);
    for (int i = 0; i < n; ++i) {
      Real sum = chunk_value<Real>(t, 0, i);
      for (int c = 1; c < n_chunks; ++c) sum += chunk_value<Real>(t, c, i);
      h(0, i) = sum;
    }
    Kokkos::deep_copy(one, h);
    a.step(pa, chunks, scale);
    b.step(pb, one, scale);
  }
  CHECK(host_values(pa) == host_values(pb));
  CHECK(host_values(a.moment1()) == host_values(b.moment1()));
  CHECK(host_values(a.moment2()) == host_values(b.moment2()));

  // A NaN (parameter 7) and an infinity (parameter 11) in the gradient: refused, naming the lowest
  // index and the step, with parameters, moments and step count unchanged.
  const std::vector<double> p_before = host_values(pa), m_before = host_values(a.moment1()),
                            v_before = host_values(a.moment2());
  auto bad = make_chunks<Real, Mem>(4, n_chunks, n);
  auto hb = Kokkos::create_mirror_view(bad);
  Kokkos::deep_copy(hb, bad);
  hb(1, 11) = std::numeric_limits<Real>::infinity();
  hb(3, 7) = std::numeric_limits<Real>::quiet_NaN();
  Kokkos::deep_copy(bad, hb);
  try {
    a.step(pa, bad, scale);
    FAIL("a NaN gradient was accepted");
  } catch (const scorekit::nn::non_finite_gradient& e) {
    CHECK(e.parameter() == 7);
    CHECK(e.step() == 4);
    CHECK_THAT(std::string(e.what()), Catch::Contains("parameter 7") && Catch::Contains("step 4"));
  }
  CHECK(a.steps() == 3);
  CHECK(host_values(pa) == p_before);
  CHECK(host_values(a.moment1()) == m_before);
  CHECK(host_values(a.moment2()) == v_before);
  // An overflowing sum of finite chunks is refused too.
  Kokkos::deep_copy(hb, Real(0));
  hb(0, 2) = hb(1, 2) = std::numeric_limits<Real>::max();
  Kokkos::deep_copy(bad, hb);
  CHECK_THROWS_AS(a.step(pa, bad, Real(1)), scorekit::invalid_argument);
  CHECK(host_values(pa) == p_before);
  // The state is still good: the next step is taken.
  a.step(pa, make_chunks<Real, Mem>(4, n_chunks, n), scale);
  CHECK(a.steps() == 4);

  // set_state resumes: a fresh optimiser given a's state steps exactly as a does.
  Adam<Real, Exec> c(n, AdamSettings{});
  c.set_state(a.steps(), a.moment1(), a.moment2());
  Kokkos::View<Real*, Mem> pc("pc", n);
  Kokkos::deep_copy(pc, pa);
  auto next = make_chunks<Real, Mem>(5, n_chunks, n);
  a.step(pa, next, scale);
  c.step(pc, next, scale);
  CHECK(c.steps() == 5);
  CHECK(host_values(pa) == host_values(pc));
}

template <class Mem>
std::int64_t flag_value(const Kokkos::View<std::int64_t, Mem>& flag) {
  std::int64_t value = 0;
  Kokkos::deep_copy(value, flag);
  return value;
}

template <class Real, class Exec>
void check_adam_step_unless() {
  using Mem = typename Exec::memory_space;
  using A = Adam<Real, Exec>;
  // 600 parameters: three tiles of 256 on a CPU, so that bad entries sit in different tiles.
  const int n = 600, n_chunks = 3;
  const Real scale = Real(0.5);
  A eager(n, AdamSettings{}), lazy(n, AdamSettings{});
  std::vector<double> p0(n);
  for (int i = 0; i < n; ++i) p0[std::size_t(i)] = std::cos(double(i));
  auto pe = device_vector<Real, Mem>(p0), pl = device_vector<Real, Mem>(p0);
  typename A::failure_type flag("flag");
  Kokkos::deep_copy(flag, A::no_failure);
  // Finite gradients: the same update as step(), bitwise (one definition of the update).
  for (int t = 1; t <= 3; ++t) {
    auto chunks = make_chunks<Real, Mem>(t, n_chunks, n);
    eager.step(pe, chunks, scale);
    lazy.step_unless(flag, 1000 * t, pl, chunks, scale);
  }
  CHECK(flag_value(flag) == A::no_failure);
  CHECK(lazy.steps() == 3);
  CHECK(host_values(pl) == host_values(pe));
  CHECK(host_values(lazy.moment1()) == host_values(eager.moment1()));
  CHECK(host_values(lazy.moment2()) == host_values(eager.moment2()));

  // A NaN (parameter 517, third tile) and an infinity (parameter 300, second tile): the flag records
  // the key plus the lowest bad index, and the update is skipped on the device.
  const std::vector<double> p_before = host_values(pl), m_before = host_values(lazy.moment1()),
                            v_before = host_values(lazy.moment2());
  auto bad = make_chunks<Real, Mem>(4, n_chunks, n);
  auto hb = Kokkos::create_mirror_view(bad);
  Kokkos::deep_copy(hb, bad);
  hb(2, 517) = std::numeric_limits<Real>::quiet_NaN();
  hb(0, 300) = std::numeric_limits<Real>::infinity();
  Kokkos::deep_copy(bad, hb);
  lazy.step_unless(flag, 4000, pl, bad, scale);
  CHECK(flag_value(flag) == 4000 + 300);
  CHECK(lazy.steps() == 4);  // counted: the host does not know
  CHECK(host_values(pl) == p_before);
  CHECK(host_values(lazy.moment1()) == m_before);
  CHECK(host_values(lazy.moment2()) == v_before);
  CHECK(std::isinf(host_values(lazy.last_gradient())[300]));
  // Later steps are skipped while the flag is set, and a later (larger) key does not replace it.
  auto good = make_chunks<Real, Mem>(5, n_chunks, n);
  lazy.step_unless(flag, 5000, pl, good, scale);
  lazy.step_unless(flag, 6000, pl, bad, scale);
  CHECK(flag_value(flag) == 4300);
  CHECK(lazy.steps() == 6);
  CHECK(host_values(pl) == p_before);
  CHECK(host_values(lazy.moment1()) == m_before);
  // An earlier failure (a smaller key, e.g. a loss check before the step) is kept.
  Kokkos::deep_copy(flag, std::int64_t(10));
  lazy.step_unless(flag, 7000, pl, bad, scale);
  CHECK(flag_value(flag) == 10);
  // The caller found the failure: the count goes back, and the run continues as the eager one does.
  CHECK_THROWS_AS(lazy.rewind(8), scorekit::invalid_argument);
  CHECK_THROWS_AS(lazy.rewind(-1), scorekit::invalid_argument);
  lazy.rewind(3);
  CHECK(lazy.steps() == 3);
  Kokkos::deep_copy(flag, A::no_failure);
  lazy.step_unless(flag, 8000, pl, good, scale);
  eager.step(pe, good, scale);
  CHECK(flag_value(flag) == A::no_failure);
  CHECK(lazy.steps() == 4);
  CHECK(host_values(pl) == host_values(pe));
  CHECK(host_values(lazy.moment1()) == host_values(eager.moment1()));
  CHECK(host_values(lazy.moment2()) == host_values(eager.moment2()));
  // Keys that could overflow or look like "no failure" are refused.
  CHECK_THROWS_AS(lazy.step_unless(flag, -1, pl, good, scale), scorekit::invalid_argument);
  CHECK_THROWS_AS(lazy.step_unless(flag, A::no_failure - n + 1, pl, good, scale), scorekit::invalid_argument);
  CHECK(lazy.steps() == 4);
}

}  // namespace

TEMPLATE_LIST_TEST_CASE(
    "Adam: step_unless updates as step does, records the lowest bad index in a device "
    "flag and skips every update once it is set",
    "[nn][adam]", scorekit_test::Backends) {
  check_adam_step_unless<double, TestType>();
  check_adam_step_unless<float, TestType>();
}

TEMPLATE_LIST_TEST_CASE("Adam: 50 steps agree with Kingma and Ba's algorithm within a rounding-error bound",
                        "[nn][adam]", scorekit_test::Backends) {
  check_adam_against_reference<double, TestType>();
  check_adam_against_reference<float, TestType>();
}

TEMPLATE_LIST_TEST_CASE("Adam: the first step is lr g / (|g| + eps)", "[nn][adam]", scorekit_test::Backends) {
  check_adam_first_step<double, TestType>();
  check_adam_first_step<float, TestType>();
}

TEMPLATE_LIST_TEST_CASE("Adam: minimises an ill-conditioned quadratic", "[nn][adam]",
                        scorekit_test::Backends) {
  check_adam_minimises_quadratic<double, TestType>();
  check_adam_minimises_quadratic<float, TestType>();
}

TEMPLATE_LIST_TEST_CASE("Adam: chunks add in row order; non-finite gradients are refused and change nothing",
                        "[nn][adam]", scorekit_test::Backends) {
  check_adam_chunks_and_refusal<double, TestType>();
  check_adam_chunks_and_refusal<float, TestType>();
}

TEST_CASE("Adam: settings and sizes are validated", "[nn][adam]") {
  using A = Adam<double, Kokkos::DefaultHostExecutionSpace>;
  auto error = [](AdamSettings s) { return message_of<scorekit::invalid_argument>([&] { A(4, s); }); };
  AdamSettings s;
  s.learning_rate = 0;
  CHECK_THAT(error(s), Catch::Contains("learning_rate"));
  s = AdamSettings{};
  s.learning_rate = std::nan("");
  CHECK_THAT(error(s), Catch::Contains("learning_rate"));
  s = AdamSettings{};
  s.beta1 = 1;
  CHECK_THAT(error(s), Catch::Contains("beta1 must be in [0, 1)"));
  s = AdamSettings{};
  s.beta2 = -0.1;
  CHECK_THAT(error(s), Catch::Contains("beta2"));
  s = AdamSettings{};
  s.epsilon = 0;
  CHECK_THAT(error(s), Catch::Contains("epsilon"));
  CHECK_THROWS_AS(A(0, AdamSettings{}), scorekit::invalid_argument);
  A adam(4, AdamSettings{});
  Kokkos::View<double*, Kokkos::HostSpace> p("p", 5), g("g", 4);
  CHECK_THROWS_AS(adam.step(p, g), scorekit::dimension_mismatch);
  Kokkos::View<double*, Kokkos::HostSpace> p4("p", 4), v("v", 4);
  Kokkos::deep_copy(v, -1.0);
  CHECK_THROWS_WITH(adam.set_state(3, p4, v), Catch::Contains("v finite and >= 0"));
  CHECK_THROWS_AS(adam.set_state(-1, p4, p4), scorekit::invalid_argument);
  CHECK(adam.steps() == 0);
}

// ------------------------------------------------------------------------------------------------
// EMA

namespace {

template <class Real, class Exec>
void check_ema() {
  using Mem = typename Exec::memory_space;
  const int n = 32, k = 300;
  const Real rate = Real(0.99);
  auto params_at = [](int t, int i) { return Real(std::sin(0.1 * t + i) * (1 + i)); };
  std::vector<double> p0(n);
  for (int i = 0; i < n; ++i) p0[std::size_t(i)] = params_at(0, i);
  auto p = device_vector<Real, Mem>(p0);
  Ema<Real, Exec> ema(p, rate);
  CHECK(host_values(ema.shadow()) == p0);
  for (int t = 1; t <= k; ++t) {
    std::vector<double> pt(n);
    for (int i = 0; i < n; ++i) pt[std::size_t(i)] = params_at(t, i);
    Kokkos::deep_copy(p, device_vector<Real, Mem>(pt));
    ema.update(p);
  }
  // Closed form: shadow_k = r^k p_0 + (1 - r) sum_{t=1..k} r^(k-t) p_t (r the Real value of the rate).
  // Each update rounds twice per product (constant and product) and once for the sum; earlier errors
  // shrink by r per update, so the error is at most the sum of u (2 r |s| + 3 (1 - r) |p_t| + |s'|)
  // times r^(k-t); the check allows twice that.
  const double r = double(rate), u = unit_roundoff<Real>();
  const std::vector<double> s = host_values(ema.shadow());
  for (int i = 0; i < n; ++i) {
    long double exact = std::pow((long double)r, k) * (long double)params_at(0, i);
    double bound = 0, shadow = double(params_at(0, i));
    for (int t = 1; t <= k; ++t) {
      exact += (1 - (long double)r) * std::pow((long double)r, k - t) * (long double)params_at(t, i);
      const double next = r * shadow + (1 - r) * double(params_at(t, i));
      bound = r * bound + u * (2 * r * std::abs(shadow) + 3 * (1 - r) * std::abs(double(params_at(t, i))) +
                               std::abs(next));
      shadow = next;
    }
    INFO("parameter " << i);
    CHECK(std::abs(s[std::size_t(i)] - double(exact)) <=
          2 * bound + 4 * std::numeric_limits<double>::epsilon() * std::abs(double(exact)));
  }
  // Rate 0 follows the parameters exactly.
  Ema<Real, Exec> follow(p, Real(0));
  Kokkos::deep_copy(p, Real(3));
  follow.update(p);
  CHECK(host_values(follow.shadow()) == std::vector<double>(n, 3.0));
  // Resuming: set_shadow, then the same update.
  Ema<Real, Exec> resumed(p, rate);
  resumed.set_shadow(ema.shadow());
  ema.update(p);
  resumed.update(p);
  CHECK(host_values(resumed.shadow()) == host_values(ema.shadow()));
  // update_unless: the same update while the device flag is clear, none once it holds a failure.
  Kokkos::View<std::int64_t, Mem> flag("flag");
  Kokkos::deep_copy(flag, INT64_MAX);
  Kokkos::deep_copy(p, device_vector<Real, Mem>(std::vector<double>(n, -2.0)));
  ema.update(p);
  resumed.update_unless(flag, p);
  CHECK(host_values(resumed.shadow()) == host_values(ema.shadow()));
  Kokkos::deep_copy(flag, std::int64_t(42));
  resumed.update_unless(flag, p);
  CHECK(host_values(resumed.shadow()) == host_values(ema.shadow()));
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("Ema: the shadow after k updates matches the closed form", "[nn][ema]",
                        scorekit_test::Backends) {
  check_ema<double, TestType>();
  check_ema<float, TestType>();
}

TEST_CASE("Ema: the rate and sizes are validated", "[nn][ema]") {
  using E = Ema<double, Kokkos::DefaultHostExecutionSpace>;
  Kokkos::View<double*, Kokkos::HostSpace> p("p", 4), q("q", 5);
  CHECK_THROWS_WITH(E(p, 1.0), Catch::Contains("rate must be in [0, 1)"));
  CHECK_THROWS_AS(E(p, -0.5), scorekit::invalid_argument);
  CHECK_THROWS_AS(E(p, std::nan("")), scorekit::invalid_argument);
  E ema(p, 0.999);
  CHECK_THROWS_AS(ema.update(q), scorekit::dimension_mismatch);
  CHECK_THROWS_AS(ema.set_shadow(q), scorekit::dimension_mismatch);
  Kokkos::View<double*, Kokkos::HostSpace> nan("nan", 4);
  Kokkos::deep_copy(nan, std::nan(""));
  CHECK_THROWS_AS(ema.set_shadow(nan), scorekit::invalid_argument);
}

// ------------------------------------------------------------------------------------------------
// Checkpoints

namespace {

const float marker_f32 = 1234.5678f;  // a value to find in the file when crafting damaged ones

Checkpoint sample_checkpoint() {
  Checkpoint cp("mlp[2-128-128-2] f32", (std::uint64_t(1) << 40) + 3);
  const std::vector<float> f{0.0f,
                             -0.0f,
                             1.5f,
                             std::numeric_limits<float>::denorm_min(),
                             std::numeric_limits<float>::max(),
                             std::numeric_limits<float>::lowest(),
                             std::numeric_limits<float>::epsilon(),
                             marker_f32,
                             -3.25e-20f,
                             7.0f};
  const std::vector<double> d{std::acos(-1.0), -0.0, std::numeric_limits<double>::denorm_min(),
                              std::numeric_limits<double>::max(), 1e-300};
  const std::vector<std::uint64_t> u{0, 1, std::numeric_limits<std::uint64_t>::max(), 0x0123456789ABCDEFull};
  cp.add("params", f.data(), f.size());
  cp.add("adam.m", d.data(), d.size());
  cp.add("rng.counters", u.data(), u.size());
  cp.add("empty", static_cast<const double*>(nullptr), 0);
  cp.set_metadata("schedule", "geometric sigma_1=1 sigma_L=0.01 L=10");
  cp.set_metadata("empty value", "");
  cp.set_metadata("binary", std::string("a\0b\n\xff", 5));
  return cp;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

/// Recomputes the CRC of a file's content after the test changed a byte of it (so that the loader's
/// later checks are reached): the content is everything between the 20-byte header and the 4-byte CRC.
void fix_crc(std::vector<std::uint8_t>& f) {
  const std::uint32_t crc = scorekit::detail::crc32(f.data() + 20, f.size() - 24);
  for (int k = 0; k < 4; ++k) f[f.size() - 4 + std::size_t(k)] = std::uint8_t(crc >> (8 * k));
}

std::size_t find_bytes(const std::vector<std::uint8_t>& f, const void* what, std::size_t n) {
  const auto* w = static_cast<const std::uint8_t*>(what);
  const auto it = std::search(f.begin(), f.end(), w, w + n);
  REQUIRE(it != f.end());
  return std::size_t(it - f.begin());
}

std::string load_error(const std::string& path) {
  scorekit_test::add_fuzz_seed(path);
  return message_of<scorekit::io_error>([&] { scorekit::nn::load_checkpoint(path); });
}

}  // namespace

TEST_CASE("checkpoint: a round trip keeps every value bitwise, the step, the signature and the metadata",
          "[nn][checkpoint]") {
  TempDir dir("roundtrip");
  const std::string path = dir.file("a.ckpt");
  const Checkpoint cp = sample_checkpoint();
  scorekit::nn::save_checkpoint(path, cp);
  CHECK(dir.entries() == std::vector<std::string>{"a.ckpt"});
  scorekit_test::add_fuzz_seed(path);
  const Checkpoint back = scorekit::nn::load_checkpoint(path);
  CHECK(back.source() == path);
  CHECK(back.signature() == cp.signature());
  CHECK(back.step() == cp.step());
  CHECK(back.all_metadata() == cp.all_metadata());
  CHECK(back.metadata("binary") == std::string("a\0b\n\xff", 5));
  CHECK(back.names() == cp.names());
  CHECK(same_bits(back.get<float>("params", 10), cp.get<float>("params", 10)));
  CHECK(same_bits(back.get<double>("adam.m", 5), cp.get<double>("adam.m", 5)));
  CHECK(back.get<std::uint64_t>("rng.counters", 4) == cp.get<std::uint64_t>("rng.counters", 4));
  CHECK(back.get<double>("empty", 0).empty());
  CHECK(back.dtype("params") == scorekit::nn::DType::f32);
  CHECK(back.count("adam.m") == 5);
  CHECK_NOTHROW(back.require_signature("mlp[2-128-128-2] f32"));
  // Saving again over the file replaces it atomically; the bytes are a pure function of the content.
  scorekit::nn::save_checkpoint(path, back);
  const std::vector<std::uint8_t> first = slurp(path);
  scorekit::nn::save_checkpoint(dir.file("b.ckpt"), cp);
  CHECK(slurp(dir.file("b.ckpt")) == first);
}

TEMPLATE_LIST_TEST_CASE("checkpoint: views of any memory space go in and come back", "[nn][checkpoint]",
                        scorekit_test::Backends) {
  using Mem = typename TestType::memory_space;
  std::vector<double> values(1000);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = std::sin(double(i)) * 1e3;
  auto pf = device_vector<float, Mem>(values);
  auto pd = device_vector<double, Mem>(values);
  Checkpoint cp("net f64");
  cp.add("pf", pf);
  cp.add("pd", Kokkos::View<const double*, Mem>(pd));
  TempDir dir("views");
  scorekit::nn::save_checkpoint(dir.file("v.ckpt"), cp);
  const Checkpoint back = scorekit::nn::load_checkpoint(dir.file("v.ckpt"));
  Kokkos::View<float*, Mem> qf("qf", 1000);
  Kokkos::View<double*, Mem> qd("qd", 1000);
  back.get_into("pf", qf);
  back.get_into("pd", qd);
  CHECK(host_values(qf) == host_values(pf));
  CHECK(host_values(qd) == values);
  Kokkos::View<double*, Mem> wrong("wrong", 999);
  CHECK_THROWS_WITH(back.get_into("pd", wrong),
                    Catch::Contains("architecture mismatch: 1000 values stored, 999 expected"));
}

TEST_CASE("checkpoint: every kind of damage and mismatch is refused with a message naming file and problem",
          "[nn][checkpoint]") {
  TempDir dir("damage");
  const std::string good = dir.file("good.ckpt");
  scorekit::nn::save_checkpoint(good, sample_checkpoint());
  const std::vector<std::uint8_t> bytes = slurp(good);
  const std::string bad = dir.file("bad.ckpt");
  auto with = [&](std::vector<std::uint8_t> b) {
    spit(bad, b);
    return load_error(bad);
  };

  SECTION("missing file") {
    const std::string msg = load_error(dir.file("nothing.ckpt"));
    CHECK_THAT(msg, Catch::Contains("nothing.ckpt") && Catch::Contains("cannot open"));
  }
  SECTION("a flipped byte in the middle") {
    std::vector<std::uint8_t> b = bytes;
    b[b.size() / 2] ^= 0x10;
    CHECK_THAT(with(b),
               Catch::Contains("bad.ckpt") && Catch::Contains("corrupt") && Catch::Contains("CRC-32"));
  }
  SECTION("truncated") {
    std::vector<std::uint8_t> b(bytes.begin(), bytes.end() - 10);
    CHECK_THAT(with(b), Catch::Contains("bad.ckpt") && Catch::Contains("truncated"));
    CHECK_THAT(with(std::vector<std::uint8_t>(bytes.begin(), bytes.begin() + 12)),
               Catch::Contains("truncated"));
    CHECK_THAT(with({}), Catch::Contains("truncated"));
  }
  SECTION("trailing bytes") {
    std::vector<std::uint8_t> b = bytes;
    b.push_back(0);
    CHECK_THAT(with(b), Catch::Contains("corrupt: 1 unexpected bytes after the checksum"));
  }
  SECTION("not a checkpoint") {
    std::vector<std::uint8_t> b = bytes;
    b[1] = 'P';
    CHECK_THAT(with(b), Catch::Contains("bad.ckpt") && Catch::Contains("not a scorekit checkpoint"));
    CHECK_THAT(with({'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'}),
               Catch::Contains("not a scorekit checkpoint"));
  }
  SECTION("a newer format version") {
    std::vector<std::uint8_t> b = bytes;
    b[8] = 2;
    CHECK_THAT(with(b), Catch::Contains("bad.ckpt") && Catch::Contains("format version 2") &&
                            Catch::Contains("reads versions up to 1"));
  }
  SECTION("an unknown value type") {
    std::vector<std::uint8_t> b = bytes;
    // The dtype byte of "params" follows its name: u32 length 6, "params".
    const std::size_t at = find_bytes(b, "params", 6) + 6;
    REQUIRE(b[at] == 1);
    b[at] = 9;
    fix_crc(b);
    CHECK_THAT(with(b), Catch::Contains("array 'params' has unknown value type code 9"));
  }
  SECTION("duplicate names") {
    Checkpoint cp("sig");
    const double x[2] = {1, 2};
    cp.add("ab", x, 2);
    CHECK_THROWS_WITH(cp.add("ab", x, 1), Catch::Contains("an array named 'ab' is already there"));
    cp.add("ac", x, 2);
    scorekit::nn::save_checkpoint(bad, cp);
    std::vector<std::uint8_t> b = slurp(bad);
    b[find_bytes(b, "ac", 2) + 1] = 'b';
    fix_crc(b);
    CHECK_THAT(with(b), Catch::Contains("corrupt: array 'ab' appears twice"));
  }
  SECTION("NaN weights") {
    std::vector<std::uint8_t> b = bytes;
    const std::size_t at = find_bytes(b, &marker_f32, 4);  // index 7 of "params"
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(&b[at], &nan, 4);
    fix_crc(b);
    CHECK_THAT(with(b), Catch::Contains("bad.ckpt") &&
                            Catch::Contains("array 'params' holds nan at index 7") &&
                            Catch::Contains("refusing to load"));
    // ... and such a checkpoint is not even written.
    Checkpoint cp("sig");
    const double inf[3] = {0, 1, std::numeric_limits<double>::infinity()};
    CHECK_THROWS_WITH(cp.add("w", inf, 3), Catch::Contains("array 'w' holds inf at index 2"));
  }
  SECTION("what the caller expects: names, value types, counts and the signature") {
    const Checkpoint cp = scorekit::nn::load_checkpoint(good);
    auto error = [](auto f) { return message_of<scorekit::io_error>(f); };
    CHECK_THAT(error([&] { cp.get<float>("params", 12); }),
               Catch::Contains("good.ckpt") &&
                   Catch::Contains("architecture mismatch: 10 values stored, 12 expected"));
    CHECK_THAT(error([&] { cp.get<double>("params", 10); }),
               Catch::Contains("array 'params' holds f32 values, f64 requested"));
    CHECK_THAT(error([&] { cp.get<float>("nope", 1); }),
               Catch::Contains("array 'nope' is missing") && Catch::Contains("'params'"));
    CHECK_THAT(error([&] { cp.require_signature("mlp[2-64-2] f64"); }),
               Catch::Contains("good.ckpt") && Catch::Contains("'mlp[2-128-128-2] f32'") &&
                   Catch::Contains("'mlp[2-64-2] f64'"));
    CHECK_THAT(error([&] { cp.metadata("nope"); }), Catch::Contains("metadata entry 'nope' is missing"));
  }
  // No section leaves a temporary file behind.
  for (const std::string& e : dir.entries()) CHECK(e.find(".tmp-") == std::string::npos);
}

TEST_CASE("checkpoint: a failed save leaves no file and no temporary file", "[nn][checkpoint]") {
  TempDir dir("failed_save");
  const Checkpoint cp = sample_checkpoint();
  // A missing directory: nothing can be created.
  const std::string missing = dir.file("no/such/dir/x.ckpt");
  CHECK_THAT(message_of<scorekit::io_error>([&] { scorekit::nn::save_checkpoint(missing, cp); }),
             Catch::Contains("x.ckpt") && Catch::Contains("cannot open"));
  CHECK(dir.entries().empty());
  // The target is a directory: the temporary file is written, the rename fails, and it is removed.
  fs::create_directories(dir.path / "taken.ckpt" / "inside");
  CHECK_THAT(
      message_of<scorekit::io_error>([&] { scorekit::nn::save_checkpoint(dir.file("taken.ckpt"), cp); }),
      Catch::Contains("taken.ckpt") && Catch::Contains("cannot rename"));
  CHECK(dir.entries() == std::vector<std::string>{"taken.ckpt"});
  // A checkpoint without a signature is refused before anything is written; an older file is kept.
  const std::string path = dir.file("keep.ckpt");
  scorekit::nn::save_checkpoint(path, cp);
  const std::vector<std::uint8_t> before = slurp(path);
  CHECK_THROWS_WITH(scorekit::nn::save_checkpoint(path, Checkpoint()), Catch::Contains("no signature"));
  CHECK(slurp(path) == before);
  std::vector<std::string> entries = dir.entries();
  std::sort(entries.begin(), entries.end());
  CHECK(entries == std::vector<std::string>{"keep.ckpt", "taken.ckpt"});
}
