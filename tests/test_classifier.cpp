// The image classifier (nn/image/classifier.hpp) and its trainer (train/classifier_trainer.hpp): its
// parameter count from the description, the cross-entropy's gradient against central differences, learning a
// task a broken gradient cannot (three classes of 8 x 8 images told apart by where a bright block sits, from
// chance to at least 95%), bitwise resume, evaluation in chunks, and the errors. scorekit-requires:
// SCOREKIT_HAVE_KOKKOS_KERNELS
#include "backends.hpp"
#include "support.hpp"

#include <scorekit/core/error.hpp>
#include <scorekit/nn/image/classifier.hpp>
#include <scorekit/train/classifier_trainer.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <typeinfo>
#include <vector>

namespace {

using scorekit_test::Backends;
using namespace scorekit::nn::image;
using scorekit::train::ClassifierTrainer;
using scorekit::train::ClassifierTrainSettings;

/// conv_classifier's parameter count written from its description (not from the code): 3 x 3
/// convolutions without bias, GroupNorm's scale and shift, the two dense layers with bias.
int classifier_parameters(const ClassifierSettings& s) {
  auto block = [](int ci, int co) { return 9 * ci * co + 2 * co; };
  int n = 0, c = s.in_channels;
  for (std::size_t i = 0; i < s.channels.size(); ++i) {
    n += block(c, s.channels[i]);
    if (i > 0) n += block(s.channels[i], s.channels[i]);
    c = s.channels[i];
  }
  return n + c * s.hidden + s.hidden + s.hidden * s.classes + s.classes;
}

template <class View>
std::vector<float> host_copy(const View& v) {
  const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  return std::vector<float>(h.data(), h.data() + h.span());
}

ClassifierSettings tiny() {
  ClassifierSettings s;
  s.channels = {4, 8};
  s.groups = 2;
  s.hidden = 8;
  s.classes = 3;
  return s;
}

/// n images of 8 x 8: class k = i % 3 has a 3 x 3 block of value 1 at row 1, column 1 + 2k... on noise.
template <class Mem>
std::pair<scorekit::BatchView<float, Mem>, Kokkos::View<int*, Mem>> blocks(int n, std::uint64_t seed) {
  scorekit::BatchView<float, Mem> x("x", std::size_t(n), 64);
  Kokkos::View<int*, Mem> y("y", std::size_t(n));
  auto hx = Kokkos::create_mirror_view(x);
  auto hy = Kokkos::create_mirror_view(y);
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> z(0.f, 0.3f);
  for (int i = 0; i < n; ++i) {
    const int k = i % 3;
    hy(i) = k;
    for (int p = 0; p < 64; ++p) hx(i, p) = z(gen);
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c) hx(i, (2 + 2 * (k == 1) + r) * 8 + 1 + 2 * k + c) += 1.f;
  }
  Kokkos::deep_copy(x, hx);
  Kokkos::deep_copy(y, hy);
  return {x, y};
}

template <class Exec>
ClassifierTrainer<float, Exec> tiny_trainer(std::uint64_t seed = 1) {
  ClassifierTrainSettings t;
  t.batch_size = 32;
  t.seed = seed;
  t.adam.learning_rate = 1e-2;
  return ClassifierTrainer<float, Exec>(tiny(), 8, 8, t, 7);
}

}  // namespace

TEST_CASE("conv_classifier: parameter count from its description", "[classifier]") {
  using Exec = Kokkos::DefaultHostExecutionSpace;
  const ClassifierSettings defaults;
  CHECK(conv_classifier<float, Exec>(defaults, 28, 28).net.n_params() == classifier_parameters(defaults));
  CHECK(classifier_parameters(defaults) == 295402);
  CHECK(conv_classifier<float, Exec>(tiny(), 8, 8).net.n_params() == classifier_parameters(tiny()));
  // 28 -> 28 -> 14 -> 7 is square; a 28 x 14 input ends 7 x 4, which the global pooling refuses.
  CHECK_THROWS_WITH((conv_classifier<float, Exec>(defaults, 28, 14)), Catch::Contains("7 x 4"));
  ClassifierSettings odd = defaults;
  odd.channels = {30};
  CHECK_THROWS_AS((conv_classifier<float, Exec>(odd, 28, 28)), scorekit::invalid_argument);
}

TEST_CASE("cross-entropy: the logits' adjoint against central differences", "[classifier]") {
  using Mem = Kokkos::HostSpace;
  const int n = 5, k = 4;
  Kokkos::View<double**, Kokkos::LayoutRight, Mem> z("z", n, k), dz("dz", n, k), none;
  Kokkos::View<int*, Mem> y("y", n);
  std::mt19937_64 gen(9);
  std::normal_distribution<double> g(0, 3);
  for (int i = 0; i < n; ++i) {
    y(i) = i % k;
    for (int j = 0; j < k; ++j) z(i, j) = g(gen);
  }
  auto loss = [&]() {
    double total = 0;
    int correct = 0;
    scorekit::train::detail::CrossEntropy<double, Mem> f{z, y, none, 1.0};
    for (int i = 0; i < n; ++i) f(i, total, correct);
    return total;
  };
  double total = 0;
  int correct = 0;
  const scorekit::train::detail::CrossEntropy<double, Mem> f{z, y, dz, 0.5};
  for (int i = 0; i < n; ++i) f(i, total, correct);
  CHECK(total == Approx(loss()).epsilon(1e-15));
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < k; ++j) {
      const double keep = z(i, j), h = 1e-5;
      z(i, j) = keep + h;
      const double up = loss();
      z(i, j) = keep - h;
      const double down = loss();
      z(i, j) = keep;
      CHECK(dz(i, j) == Approx(0.5 * (up - down) / (2 * h)).epsilon(1e-6).margin(1e-9));
    }
  int argmax_right = 0;
  for (int i = 0; i < n; ++i) {
    int arg = 0;
    for (int j = 1; j < k; ++j)
      if (z(i, j) > z(i, arg)) arg = j;
    argmax_right += arg == y(i);
  }
  CHECK(correct == argmax_right);
}

TEMPLATE_LIST_TEST_CASE("ClassifierTrainer: learns a task, resumes bitwise, evaluates in chunks",
                        "[classifier]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const auto train = blocks<Mem>(300, 1);
  const auto test = blocks<Mem>(150, 2);
  auto a = tiny_trainer<Exec>();
  const auto before = a.accuracy(test.first, test.second);
  CHECK(before.loss > 0.5);  // ln 3 = 1.10 at chance; He-initialised weights are about there
  a.train(train.first, train.second, 150);
  const auto after = a.accuracy(test.first, test.second);
  INFO("test accuracy " << before.accuracy << " -> " << after.accuracy << ", loss " << before.loss << " -> "
                        << after.loss);
  CHECK(after.accuracy >= 0.95);
  CHECK(after.loss < 0.3);

  // Resume: 6 steps, or 3, a checkpoint, a new trainer that loads it, and 3 more: the same weights.
  auto whole = tiny_trainer<Exec>();
  whole.train(train.first, train.second, 6);
  const std::string path =
      "classifier_resume_" + std::to_string(std::hash<std::string>()(typeid(Exec).name())) + ".ckpt";
  auto first = tiny_trainer<Exec>();
  first.train(train.first, train.second, 3);
  first.save(path);
  auto second = tiny_trainer<Exec>();
  second.load(path);
  CHECK(second.step() == 3);
  second.train(train.first, train.second, 3);
  CHECK(host_copy(second.parameters()) == host_copy(whole.parameters()));
  CHECK(host_copy(tiny_trainer<Exec>().parameters()) != host_copy(whole.parameters()));
  // A checkpoint of another architecture is refused, naming both.
  ClassifierTrainSettings t;
  ClassifierSettings wider = tiny();
  wider.hidden = 16;
  ClassifierTrainer<float, Exec> other(wider, 8, 8, t);
  CHECK_THROWS_WITH(other.load(path), Catch::Contains("signature mismatch"));
  std::remove(path.c_str());

  // Evaluation in chunks of 7 and of 256: the same logits and features to float rounding.
  Tensor<float, Mem> l1("l1", 150, 3), l2("l2", 150, 3), f1("f1", 150, 8), f2("f2", 150, 8);
  a.evaluate(test.first, l1, f1, 256);
  a.evaluate(test.first, l2, f2, 7);
  const auto h1 = host_copy(l1), h2 = host_copy(l2), g1 = host_copy(f1), g2 = host_copy(f2);
  for (std::size_t i = 0; i < h1.size(); ++i) CHECK(h1[i] == Approx(h2[i]).epsilon(1e-5).margin(1e-5));
  for (std::size_t i = 0; i < g1.size(); ++i) CHECK(g1[i] == Approx(g2[i]).epsilon(1e-5).margin(1e-5));
}

TEMPLATE_LIST_TEST_CASE("ClassifierTrainer: bad labels and shapes are named", "[classifier]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  auto data = blocks<Mem>(20, 3);
  auto a = tiny_trainer<Exec>();
  auto hy = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), data.second);
  hy(13) = 3;
  Kokkos::deep_copy(data.second, hy);
  CHECK_THROWS_WITH(a.train(data.first, data.second, 1),
                    Catch::Contains("image 13") && Catch::Contains("0..2"));
  Kokkos::deep_copy(hy, 0);
  Kokkos::deep_copy(data.second, hy);
  auto hx = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), data.first);
  hx(17, 5) = std::nanf("");
  Kokkos::deep_copy(data.first, hx);
  CHECK_THROWS_WITH(a.train(data.first, data.second, 1),
                    Catch::Contains("image 17 of the training data (of 20) has a NaN or infinite value"));
  const Kokkos::View<int*, Mem> short_labels("y", 19);
  CHECK_THROWS_AS(a.train(data.first, short_labels, 1), scorekit::dimension_mismatch);
  const scorekit::BatchView<float, Mem> wrong("x", 20, 63);
  CHECK_THROWS_AS(a.accuracy(wrong, data.second), scorekit::dimension_mismatch);
  CHECK(a.step() == 0);
}
