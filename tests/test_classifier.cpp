// The image classifier (nn/image/classifier.hpp) and its trainer (train/classifier_trainer.hpp): its
// parameter count from the description, the cross-entropy's gradient against central differences, learning a
// task a broken gradient cannot (three classes of 8 x 8 images told apart by where a bright block sits, from
// chance to at least 95%), bitwise resume, evaluation in chunks, and the errors. The noise-conditional
// classifier of classifier guidance (score/image_classifier.hpp): grad_x log p_sigma(y | x) against
// central differences, learning the task on noised images, and guidance with it moving samples of a
// broad prior into the class each sample asks for. scorekit-requires: SCOREKIT_HAVE_KOKKOS_KERNELS
#include "backends.hpp"
#include "support.hpp"

#include <scorekit/core/error.hpp>
#include <scorekit/density/draw.hpp>
#include <scorekit/guidance/classifier_guidance.hpp>
#include <scorekit/integrate/euler_maruyama.hpp>
#include <scorekit/nn/image/classifier.hpp>
#include <scorekit/score/batched.hpp>
#include <scorekit/score/image_classifier.hpp>
#include <scorekit/score/perturbed_mixture.hpp>
#include <scorekit/sde/reverse.hpp>
#include <scorekit/sde/variance_exploding.hpp>
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
/// convolutions without bias, GroupNorm's scale and shift, the two dense layers with bias; with an
/// embedding of F features, Dense(F -> F) and a Dense(F -> channels) per block, with bias.
int classifier_parameters(const ClassifierSettings& s) {
  const int f = s.embedding;
  auto block = [f](int ci, int co) { return 9 * ci * co + 2 * co + (f > 0 ? f * co + co : 0); };
  int n = f > 0 ? f * f + f : 0, c = s.in_channels;
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
  ClassifierSettings conditional = tiny();
  conditional.embedding = 6;
  const auto built = conv_classifier<float, Exec>(conditional, 8, 8);
  CHECK(built.net.n_params() == classifier_parameters(conditional));
  CHECK(built.net.feature_size() == 6);
  conditional.embedding = 5;
  CHECK_THROWS_WITH((conv_classifier<float, Exec>(conditional, 8, 8)), Catch::Contains("must be even"));
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
                    Catch::Contains("label of sample 13 is 3") && Catch::Contains("0..2"));
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

namespace {

ClassifierSettings tiny_conditional() {
  ClassifierSettings s = tiny();
  s.embedding = 8;
  s.fourier_seed = 3;
  return s;
}

template <class Exec>
ClassifierTrainer<float, Exec> conditional_trainer(double noise_min = 0.02, double noise_max = 2) {
  ClassifierTrainSettings t;
  t.batch_size = 32;
  t.seed = 5;
  t.adam.learning_rate = 1e-2;
  t.noise_min = noise_min;
  t.noise_max = noise_max;
  return ClassifierTrainer<float, Exec>(tiny_conditional(), 8, 8, t, 11);
}

}  // namespace

TEST_CASE("ImageClassifierModel: grad_x log p_sigma(y | x) against central differences",
          "[classifier][guidance]") {
  using Exec = Kokkos::DefaultHostExecutionSpace;
  using Mem = Exec::memory_space;
  auto built = conv_classifier<double, Exec>(tiny_conditional(), 8, 8);
  auto net = std::make_shared<Network<double, Exec>>(std::move(built.net));
  Kokkos::View<double*, Mem> params("params", std::size_t(net->n_params()));
  for (std::size_t i = 0; i < params.extent(0); ++i) params(i) = 0.3 * std::cos(1.7 * double(i) + 0.2);
  scorekit::ImageClassifierSettings s;
  s.height = s.width = 8;
  s.channels = 1;
  s.classes = 3;
  s.sigma_min = 0.05;
  s.sigma_max = 2;
  s.fourier_features = 8;
  s.fourier_seed = 3;
  const scorekit::ImageClassifierModel<double, Exec> model(net, params, s);
  const int n = 3;
  scorekit::BatchView<double, Mem> x("x", n, 64), g("g", n, 64);
  Kokkos::View<double*, Mem> sigma("sigma", n), log_p("log_p", n), lp("lp", n);
  Kokkos::View<int*, Mem> y("y", n);
  std::mt19937_64 gen(4);
  std::normal_distribution<double> z(0, 1);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < 64; ++j) x(i, j) = z(gen);
    sigma(i) = i == 0 ? 0.05 : i == 1 ? 0.4 : 2.0;
    y(i) = (i + 1) % 3;
  }
  const Kokkos::View<const int*, Mem> labels = y;
  model.grad_log_likelihood(Exec(), x, sigma, labels, g, log_p);
  // log p from the logits as well: log softmax at the label.
  scorekit::BatchView<double, Mem> logits("logits", n, 3);
  model.logits(Exec(), x, sigma, logits);
  for (int i = 0; i < n; ++i) {
    const double m = std::max({logits(i, 0), logits(i, 1), logits(i, 2)});
    const double lse =
        m + std::log(std::exp(logits(i, 0) - m) + std::exp(logits(i, 1) - m) + std::exp(logits(i, 2) - m));
    CHECK(log_p(i) == Approx(logits(i, y(i)) - lse).epsilon(1e-12));
  }
  // Central differences of log p in 12 pixels of each sample: error (h^2 / 6) |f'''| + eps |f| / h.
  const double h = 1e-5;
  scorekit::BatchView<double, Mem> scratch("scratch", n, 64);
  for (int j : {0, 5, 9, 18, 27, 28, 35, 36, 44, 50, 61, 63}) {
    scorekit::BatchView<double, Mem> xp("xp", n, 64), xm("xm", n, 64);
    Kokkos::deep_copy(xp, x);
    Kokkos::deep_copy(xm, x);
    for (int i = 0; i < n; ++i) {
      xp(i, j) += h;
      xm(i, j) -= h;
    }
    model.grad_log_likelihood(Exec(), xp, sigma, labels, scratch, lp);
    const std::vector<double> up(lp.data(), lp.data() + n);
    model.grad_log_likelihood(Exec(), xm, sigma, labels, scratch, lp);
    for (int i = 0; i < n; ++i) {
      INFO("sample " << i << " (sigma " << sigma(i) << ", label " << y(i) << "), pixel " << j);
      const double fd = (up[std::size_t(i)] - lp(i)) / (2 * h);
      CHECK(std::abs(fd - g(i, j)) < 1e-6 * (1 + std::abs(g(i, j))));
    }
  }
  // The noise level reaches the logits: the same images at another level give other logits.
  scorekit::BatchView<double, Mem> other("other", n, 3);
  Kokkos::View<double*, Mem> sigma2("sigma2", n);
  Kokkos::deep_copy(sigma2, 1.0);
  model.logits(Exec(), x, sigma2, other);
  CHECK(std::abs(other(0, 0) - logits(0, 0)) > 1e-6);

  // Bad input, each named.
  Kokkos::View<int*, Mem> bad("bad", n), two("two", 2);
  Kokkos::deep_copy(bad, y);
  bad(2) = 3;
  CHECK_THROWS_WITH(model.grad_log_likelihood(Exec(), x, sigma, Kokkos::View<const int*, Mem>(bad), g),
                    Catch::Contains("label of sample 2 is 3"));
  CHECK_THROWS_WITH(model.grad_log_likelihood(Exec(), x, sigma, Kokkos::View<const int*, Mem>(two), g),
                    Catch::Contains("3 samples but 2 labels"));
  sigma(1) = 5;
  CHECK_THROWS_WITH(
      model.grad_log_likelihood(Exec(), x, sigma, labels, g),
      Catch::Contains("sample 1 has noise level 5, outside the range the network was trained on"));
  sigma(1) = 0.4;
  x(2, 7) = std::nan("");
  CHECK_THROWS_WITH(model.logits(Exec(), x, sigma, logits),
                    Catch::Contains("sample 2 of the batch has a NaN"));
  scorekit::ImageClassifierSettings no_features = s;
  no_features.fourier_features = 0;
  CHECK_THROWS_AS((scorekit::ImageClassifierModel<double, Exec>(net, params, no_features)),
                  scorekit::dimension_mismatch);
  scorekit::ImageClassifierSettings four = s;
  four.classes = 4;
  CHECK_THROWS_WITH((scorekit::ImageClassifierModel<double, Exec>(net, params, four)),
                    Catch::Contains("a classifier of 4 classes"));
}

TEMPLATE_LIST_TEST_CASE(
    "ClassifierTrainer: a noise-conditional classifier learns, resumes, and guides sampling",
    "[classifier][guidance]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const auto train = blocks<Mem>(300, 1);
  const auto test = blocks<Mem>(150, 2);
  auto a = conditional_trainer<Exec>();
  CHECK(a.noise_conditional());
  a.train(train.first, train.second, 300);
  const auto clean = a.accuracy(test.first, test.second, 0.02, 9);
  INFO("test accuracy at sigma 0.02: " << clean.accuracy << " (loss " << clean.loss << ")");
  CHECK(clean.accuracy >= 0.95);

  // Resume: 6 steps, or 3, a checkpoint and 3 more: the same weights. Checkpoints of the classifier
  // without the embedding, or trained on other levels, are refused.
  auto whole = conditional_trainer<Exec>();
  whole.train(train.first, train.second, 6);
  const std::string path =
      "classifier_conditional_" + std::to_string(std::hash<std::string>()(typeid(Exec).name())) + ".ckpt";
  auto first = conditional_trainer<Exec>();
  first.train(train.first, train.second, 3);
  first.save(path);
  auto second = conditional_trainer<Exec>();
  second.load(path);
  second.train(train.first, train.second, 3);
  CHECK(host_copy(second.parameters()) == host_copy(whole.parameters()));
  CHECK_THROWS_WITH(tiny_trainer<Exec>().load(path), Catch::Contains("signature mismatch"));
  CHECK_THROWS_WITH(conditional_trainer<Exec>(0.02, 3).load(path), Catch::Contains("signature mismatch"));
  std::remove(path.c_str());

  // Guidance: a broad prior N(0, I) over the 8 x 8 images, sampled by the reverse VE SDE (sigma 0.01 to 2)
  // from t = 1 to 0.2, where the noise added since t = 0 has std 0.027, inside the classifier's levels,
  // with the classifier's gradient at w = 4, sample i asking for class i % 3. The classifier then names
  // the asked class for (nearly) every sample; unguided samples are named as asked at about chance.
  const int n = 60;
  const scorekit::VarianceExplodingSDE<float> ve(0.01f, 2.0f);
  const auto prior = scorekit::batched(scorekit::PerturbedMixtureScore<float, Mem>(
      scorekit::gaussian<float, Mem>(Eigen::VectorXd::Zero(64), Eigen::MatrixXd::Identity(64, 64))));
  Kokkos::View<int*, Mem> asked("asked", n);
  Kokkos::parallel_for(
      "labels", Kokkos::RangePolicy<Exec>(0, n), KOKKOS_LAMBDA(const int i) { asked(i) = i % 3; });
  const Kokkos::View<const int*, Mem> labels = asked;
  auto sample = [&](float w) {
    scorekit::BatchView<float, Mem> x("x", n, 64);
    scorekit::fill_normal(Exec(), x, 0.0f, std::sqrt(1 + ve.prior_std() * ve.prior_std()), 21);  // p_1
    scorekit::IntegrateSettings s;
    s.times = scorekit::uniform_times(1, 0.2, 100);
    s.seed = 22;
    s.remove_last_noise = true;
    scorekit::integrate(Exec(),
                        scorekit::reverse_sde(ve, scorekit::classifier_guided(prior, a.guide(), labels, w)),
                        scorekit::EulerMaruyama{}, x, s);
    return x;
  };
  const auto guided = sample(4.0f);
  CHECK(host_copy(guided) == host_copy(sample(4.0f)));
  const auto named = a.accuracy(guided, labels, 0.02, 9);
  const auto unguided = a.accuracy(sample(0.0f), labels, 0.02, 9);
  INFO("share named as asked: guided " << named.accuracy << ", unguided " << unguided.accuracy);
  CHECK(named.accuracy >= 0.9);
  CHECK(unguided.accuracy < 0.6);

  // Errors: guide() of a classifier that is not noise-conditional; the levels missing; an evaluation
  // outside them.
  CHECK_THROWS_WITH(tiny_trainer<Exec>().guide(), Catch::Contains("not noise-conditional"));
  ClassifierTrainSettings t;
  CHECK_THROWS_WITH((ClassifierTrainer<float, Exec>(tiny_conditional(), 8, 8, t)),
                    Catch::Contains("0 < noise_min <= noise_max"));
  t.noise_min = 0.1;
  CHECK_THROWS_WITH((ClassifierTrainer<float, Exec>(tiny(), 8, 8, t)), Catch::Contains("has no embedding"));
  Tensor<float, Mem> logits("logits", 150, 3);
  CHECK_THROWS_WITH(a.evaluate(test.first, logits),
                    Catch::Contains("noise level 0 is outside the range the classifier was trained on"));
}
