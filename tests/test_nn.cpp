// The templated network: forward mode, backprop and the parameter gradient of Jacobian terms against
// finite differences; blocks against single samples; the Jacobian from forward and reverse mode in Eigen.
#include "backends.hpp"

#include <scorekit/core/random.hpp>
#include <scorekit/nn/sequential.hpp>
#include <scorekit/testing/network_checks.hpp>

#include <Eigen/Dense>
#include <catch2/catch.hpp>

#include <vector>

namespace {

using namespace scorekit::nn;

// Every layer kind and activation, odd sizes so no tile divides evenly by accident.
using MixedNet = Sequential<Dense<3, 7>, Softplus, ConditionalDense<7, 5, 4>, Tanh, Dense<5, 6>, Silu,
                            Dense<6, 9>, Elu, Dense<9, 3>>;
using ToyNet = Sequential<Dense<2, 16>, Softplus, Dense<16, 16>, Softplus, Dense<16, 2>>;

template <class Net>
std::vector<double> random_parameters(std::uint64_t seed) {
  scorekit::CounterRng<double> rng(seed, 0, 0, scorekit::RngStream::user);
  std::vector<double> p(Net::n_params);
  for (auto& v : p) v = rng.uniform() - 0.5;
  // Embeddings away from zero, as trained ones are.
  for (const Segment& s : Net::segments())
    if (s.kind == ParameterKind::embedding)
      for (int i = 0; i < s.size; ++i) p[s.offset + i] = 0.5 + rng.uniform();
  return p;
}

// The check must be able to fail: an activation whose second derivative is dropped.
struct BrokenSoftplus {
  static constexpr const char* name = "BrokenSoftplus";
  template <class Real>
  KOKKOS_INLINE_FUNCTION static Real value(Real x) {
    return Softplus::value(x);
  }
  template <class Real>
  KOKKOS_INLINE_FUNCTION static void derivatives(Real x, Real& d1, Real& d2) {
    Softplus::derivatives(x, d1, d2);
    d2 = 0;
  }
};
}  // namespace

TEST_CASE("Sequential binds activations and counts parameters", "[nn]") {
  STATIC_REQUIRE(MixedNet::in == 3);
  STATIC_REQUIRE(MixedNet::out == 3);
  STATIC_REQUIRE(MixedNet::n_params ==
                 (7 * 3 + 7) + (5 * 7 + 4 * 5) + (6 * 5 + 6) + (9 * 6 + 9) + (3 * 9 + 3));
  STATIC_REQUIRE(ToyNet::n_params == 2 * 16 + 16 + 16 * 16 + 16 + 16 * 2 + 2);
  CHECK(ToyNet::name() == "Sequential<Dense<2,16>,Softplus,Dense<16,16>,Softplus,Dense<16,2>>");
  const auto segments = MixedNet::segments();
  REQUIRE(segments.size() == 10);
  int next = 0;
  for (const Segment& s : segments) {
    CHECK(s.offset == next);
    next += s.size;
  }
  CHECK(next == MixedNet::n_params);
  CHECK(segments[2].kind == ParameterKind::weight);
  CHECK(segments[3].kind == ParameterKind::embedding);
  CHECK(segments[3].size == 4 * 5);
}

TEST_CASE("forward mode and backprop agree with finite differences", "[nn]") {
  const auto p = random_parameters<MixedNet>(7);
  auto level = [](int b) { return (3 * b + 1) % 4; };
  SECTION("one sample, no tangent") {
    const auto r = scorekit::testing::check_network<MixedNet, 1, 0, double>(p, level, 11);
    INFO(r.worst);
    CHECK(r.passed);
    CHECK(r.n_checked == MixedNet::n_params + 3);
  }
  SECTION("one sample, two tangents (the loss depends on J v)") {
    const auto r = scorekit::testing::check_network<MixedNet, 1, 2, double>(p, level, 12);
    INFO(r.worst);
    CHECK(r.passed);
  }
  SECTION("a block of five samples with three tangents") {
    const auto r = scorekit::testing::check_network<MixedNet, 5, 3, double>(p, level, 13);
    INFO(r.worst);
    CHECK(r.passed);
    CHECK(r.n_checked == 3 * 5 * 3 + MixedNet::n_params + 3 * 5 * 4);
  }
}

TEST_CASE("a wrong gradient fails the network check", "[nn]") {
  using Broken = Sequential<Dense<2, 8>, BrokenSoftplus, Dense<8, 2>>;
  const auto p = random_parameters<Broken>(3);
  const auto with_tangent = scorekit::testing::check_network<Broken, 2, 1, double>(p, [](int) { return 0; });
  CHECK_FALSE(with_tangent.passed);
  // Without tangents d2 is never used, so the same network passes.
  const auto plain = scorekit::testing::check_network<Broken, 2, 0, double>(p, [](int) { return 0; });
  CHECK(plain.passed);
}

TEST_CASE("a dual block gives the same values as single samples", "[nn]") {
  constexpr int B = 6, K = 2, W = B * (1 + K);
  const auto p = random_parameters<MixedNet>(5);
  scorekit::CounterRng<double> rng(9, 0, 0, scorekit::RngStream::user);
  int level[B];
  std::vector<double> block(MixedNet::tape_size<B, K>);
  for (int b = 0; b < B; ++b) level[b] = b % 4;
  for (int i = 0; i < MixedNet::in * W; ++i) block[i] = rng.normal();
  MixedNet::forward<B, K>(p.data(), level, block.data());
  std::vector<double> seed(MixedNet::out * W), grad_block(MixedNet::n_params, 0.0),
      scratch(MixedNet::backward_scratch_size<B, K>);
  for (auto& v : seed) v = rng.normal();
  std::vector<double> seed_copy = seed;
  MixedNet::backward<B, K>(p.data(), level, block.data(), seed_copy.data(), grad_block.data(), nullptr,
                           scratch.data());

  std::vector<double> grad_single(MixedNet::n_params, 0.0);
  for (int b = 0; b < B; ++b) {
    constexpr int w = 1 + K;
    std::vector<double> tape(MixedNet::tape_size<1, K>), s(MixedNet::out * w),
        scratch1(MixedNet::backward_scratch_size<1, K>);
    for (int i = 0; i < MixedNet::in; ++i)
      for (int k = 0; k <= K; ++k) tape[i * w + k] = block[i * W + k * B + b];
    MixedNet::forward<1, K>(p.data(), &level[b], tape.data());
    const double* y1 = MixedNet::output<1, K>(tape.data());
    const double* yb = MixedNet::output<B, K>(block.data());
    for (int o = 0; o < MixedNet::out; ++o)
      for (int k = 0; k <= K; ++k) {
        CHECK(y1[o * w + k] == Approx(yb[o * W + k * B + b]).epsilon(1e-13));
        s[o * w + k] = seed[o * W + k * B + b];
      }
    MixedNet::backward<1, K>(p.data(), &level[b], tape.data(), s.data(), grad_single.data(), nullptr,
                             scratch1.data());
  }
  for (int j = 0; j < MixedNet::n_params; ++j) CHECK(grad_single[j] == Approx(grad_block[j]).epsilon(1e-12));
}

TEST_CASE("the Jacobian from forward mode equals the one from reverse mode (Eigen), and its trace", "[nn]") {
  constexpr int D = 3;
  using Net = Sequential<Dense<D, 11>, Silu, ConditionalDense<11, 11, 2>, Softplus, Dense<11, D>>;
  const auto p = random_parameters<Net>(21);
  const int level[1] = {1};
  const double x[D] = {0.3, -1.2, 0.7};
  // Forward mode: D tangents e_j give the columns.
  Eigen::Matrix<double, D, D> forward_mode, reverse_mode;
  {
    constexpr int W = 1 + D;
    std::vector<double> tape(Net::tape_size<1, D>, 0.0);
    for (int i = 0; i < D; ++i) {
      tape[i * W] = x[i];
      tape[i * W + 1 + i] = 1;
    }
    Net::forward<1, D>(p.data(), level, tape.data());
    const double* y = Net::output<1, D>(tape.data());
    for (int i = 0; i < D; ++i)
      for (int j = 0; j < D; ++j) forward_mode(i, j) = y[i * W + 1 + j];
  }
  // Reverse mode: the input adjoint of output i is row i.
  for (int i = 0; i < D; ++i) {
    std::vector<double> tape(Net::tape_size<1, 0>), seed(D, 0.0), dx(D), grad(Net::n_params, 0.0),
        scratch(Net::backward_scratch_size<1, 0>);
    for (int j = 0; j < D; ++j) tape[j] = x[j];
    Net::forward<1, 0>(p.data(), level, tape.data());
    seed[i] = 1;
    Net::backward<1, 0>(p.data(), level, tape.data(), seed.data(), grad.data(), dx.data(), scratch.data());
    for (int j = 0; j < D; ++j) reverse_mode(i, j) = dx[j];
  }
  const double scale = reverse_mode.norm();
  CHECK((forward_mode - reverse_mode).norm() <= 1e-14 * scale);
  CHECK(forward_mode.trace() == Approx(reverse_mode.trace()).epsilon(1e-14));
}

namespace scorekit_test {
/// One block of B samples with K tangents through forward and backward inside a kernel, gradient in row
/// blk. A named functor: GCC 12, as nvcc's host compiler, crashes on a local array sized by a template
/// constant inside a device lambda.
template <class Net, int B, int K, class Mem>
struct NetworkPasses {
  static constexpr int W = B * (1 + K);
  static constexpr int tape_size = Net::template tape_size<B, K>;
  static constexpr int scratch_size = Net::template backward_scratch_size<B, K>;
  Kokkos::View<double*, Mem> params;
  Kokkos::View<double**, Kokkos::LayoutRight, Mem> grads;

  KOKKOS_INLINE_FUNCTION void operator()(const int blk) const {
    double tape[tape_size];
    double scratch[scratch_size];
    double seed[Net::out * W];
    int level[B] = {};
    scorekit::CounterRng<double> rng(4, std::uint64_t(blk), 0, scorekit::RngStream::user);
    for (int i = 0; i < Net::in * W; ++i) tape[i] = rng.normal();
    Net::template forward<B, K>(params.data(), level, tape);
    for (int i = 0; i < Net::out * W; ++i) seed[i] = rng.normal();
    Net::template backward<B, K>(params.data(), level, tape, seed, &grads(blk, 0), nullptr, scratch);
  }
};
}  // namespace scorekit_test

TEMPLATE_LIST_TEST_CASE("network passes run inside kernels and match the host", "[nn]",
                        scorekit_test::Backends) {
  using Exec = TestType;
  using Net = ToyNet;
  constexpr int B = 4, K = 1, W = B * (1 + K);
  const auto p = random_parameters<Net>(2);
  Kokkos::View<double*, typename Exec::memory_space> params("params", Net::n_params);
  Kokkos::View<double**, Kokkos::LayoutRight, typename Exec::memory_space> grads("grads", 8, Net::n_params);
  {
    auto h = Kokkos::create_mirror_view(params);
    for (int j = 0; j < Net::n_params; ++j) h(j) = p[j];
    Kokkos::deep_copy(params, h);
  }
  // Eight blocks, each with its own inputs, gradient in its own row.
  Kokkos::parallel_for("test_nn_kernel", Kokkos::RangePolicy<Exec>(0, 8),
                       scorekit_test::NetworkPasses<Net, B, K, typename Exec::memory_space>{params, grads});
  auto g = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), grads);
  for (int blk = 0; blk < 8; ++blk) {
    std::vector<double> tape(Net::tape_size<B, K>), scratch(Net::backward_scratch_size<B, K>),
        seed(Net::out * W), grad(Net::n_params, 0.0);
    int level[B] = {0, 0, 0, 0};
    scorekit::CounterRng<double> rng(4, std::uint64_t(blk), 0, scorekit::RngStream::user);
    for (int i = 0; i < Net::in * W; ++i) tape[i] = rng.normal();
    Net::forward<B, K>(p.data(), level, tape.data());
    for (auto& v : seed) v = rng.normal();
    Net::backward<B, K>(p.data(), level, tape.data(), seed.data(), grad.data(), nullptr, scratch.data());
    for (int j = 0; j < Net::n_params; ++j) REQUIRE(g(blk, j) == grad[j]);
  }
}
