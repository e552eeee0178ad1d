// The image score network on the batched path: the U-Net builder (shape, parameter count, gradients
// against finite differences), ImageScoreModel's errors, batched denoising score matching against its
// closed-form floor at an exact score (multi-sigma ladder, continuous-time VE and VP with likelihood
// weighting), and BatchTrainer: bitwise resume from a checkpoint, a NaN-free step reported, bad data
// named.
// scorekit-requires: SCOREKIT_HAVE_KOKKOS_KERNELS
#include "backends.hpp"
#include "image_support.hpp"
#include "support.hpp"

#include <scorekit/core/error.hpp>
#include <scorekit/density/gaussian_mixture.hpp>
#include <scorekit/integrate/predictor_corrector.hpp>
#include <scorekit/integrate/reverse_diffusion.hpp>
#include <scorekit/nn/image/unet.hpp>
#include <scorekit/objective/batch_denoising.hpp>
#include <scorekit/schedule/linear_beta.hpp>
#include <scorekit/score/batched.hpp>
#include <scorekit/score/image_score.hpp>
#include <scorekit/score/perturbed_mixture.hpp>
#include <scorekit/sde/reverse.hpp>
#include <scorekit/sde/variance_exploding.hpp>
#include <scorekit/sde/variance_preserving.hpp>
#include <scorekit/testing/image_layer_checks.hpp>
#include <scorekit/train/batch_trainer.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

using scorekit_test::Backends;
using namespace scorekit::nn::image;

UNetSettings tiny_unet() {
  UNetSettings s;
  s.in_channels = 1;
  s.channels = {4, 8};
  s.groups = 2;
  s.embedding = 4;
  return s;
}

/// The 4 x 4 x 1 images of the tiny U-Net, noise levels in [0.1, 10], 4 Fourier features.
scorekit::ImageScoreSettings tiny_image() {
  scorekit::ImageScoreSettings s;
  s.height = s.width = 4;
  s.channels = 1;
  s.sigma_min = 0.1;
  s.sigma_max = 10;
  s.fourier_features = 4;
  return s;
}

/// The parameter count of unet(), written from its description (not from the code).
int unet_parameters(const UNetSettings& s) {
  const int F = s.embedding;
  int n = F * F + F;  // the embedding's dense layer
  auto block = [&](int ci, int co) { return 9 * ci * co + (F * co + co) + 2 * co; };
  int c = s.in_channels;
  for (int co : s.channels) {
    n += block(c, co);
    c = co;
  }
  for (std::size_t i = s.channels.size() - 1; i >= 1; --i) {
    n += block(c, s.channels[i - 1]);
    c = 2 * s.channels[i - 1];
  }
  return n + 9 * c * s.in_channels + s.in_channels;
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("unet: shapes, parameter count, gradients against finite differences", "[image]",
                        Backends) {
  using Exec = TestType;
  auto net = std::make_shared<Network<double, Exec>>(unet<double, Exec>(tiny_unet()));
  CHECK(net->n_params() == unet_parameters(tiny_unet()));
  UNetSettings big;
  const auto big_net = unet<float, Exec>(big);
  CHECK(big_net.n_params() == unet_parameters(big));
  CHECK(big_net.output_shape({2, 28, 28, 1}) == ImageShape{2, 28, 28, 1});
  // 10 x 10 goes down to 5 x 5 and 3 x 3, and back up to 6 x 6: the skip connection does not fit.
  CHECK_THROWS_WITH(big_net.output_shape({2, 10, 10, 1}),
                    Catch::Contains("(concat): concatenates 2 x 6 x 6 x 64 and 2 x 5 x 5 x 64"));
  scorekit_test::NetworkAsLayer<Exec> layer{net, scorekit_test::random_features<Exec>(2, 4, 3)};
  scorekit::testing::ImageLayerCheckOptions o;
  o.max_entries = 120;
  const auto r = scorekit::testing::check_image_layer(Exec(), layer, ImageShape{2, 4, 4, 1}, o);
  INFO(r.n_checked << " checks, worst ratio " << r.worst_ratio << " at " << r.worst);
  CHECK(r.passed);
}

TEST_CASE("ImageScoreModel: bad networks, batches and noise levels are named errors", "[image]") {
  using Exec = Kokkos::DefaultHostExecutionSpace;
  using Mem = Exec::memory_space;
  using Catch::Contains;
  auto net = std::make_shared<Network<double, Exec>>(unet<double, Exec>(tiny_unet()));
  Kokkos::View<double*, Mem> p("p", std::size_t(net->n_params()));
  const scorekit::ImageScoreSettings s = tiny_image();
  const scorekit::ImageScoreModel<double, Exec> model(net, p, s);
  CHECK(model.dim() == 16);
  auto bad = s;
  bad.fourier_features = 6;
  CHECK_THROWS_WITH((scorekit::ImageScoreModel<double, Exec>(net, p, bad)),
                    Contains("the network's features input takes 4"));
  bad = s;
  bad.channels = 2;
  CHECK_THROWS_WITH((scorekit::ImageScoreModel<double, Exec>(net, p, bad)),
                    Contains("the input has 2 channels"));
  bad = s;
  bad.sigma_min = 0;
  CHECK_THROWS_WITH((scorekit::ImageScoreModel<double, Exec>(net, p, bad)),
                    Contains("0 < sigma_min <= sigma_max"));
  CHECK_THROWS_WITH((scorekit::ImageScoreModel<double, Exec>(net, Kokkos::View<double*, Mem>("q", 3), s)),
                    Contains("3 parameters given"));

  scorekit::BatchView<double, Mem> x("x", 3, 16), out("out", 3, 16), wrong("w", 3, 15);
  Kokkos::View<double*, Mem> sigma("sigma", 3);
  Kokkos::deep_copy(sigma, 1.0);
  model.score(Exec(), x, sigma, out);
  sigma(1) = 10.5;
  CHECK_THROWS_WITH(model.score(Exec(), x, sigma, out),
                    Contains("sample 1 has noise level 10.5, outside the range the network was trained on"));
  sigma(1) = 1;
  x(2, 5) = std::nan("");
  CHECK_THROWS_WITH(model.score(Exec(), x, sigma, out),
                    Contains("sample 2 of the batch has a NaN or infinite entry"));
  CHECK_THROWS_WITH(model.score(Exec(), x, sigma, wrong),
                    Contains("the output is 3 x 15 but the batch is 3 x 16"));
}

namespace {

/// Data from N(0, diag(lambda)) (D = 16: 4 x 4 x 1 images), the exact noise-conditional score of it as a
/// batch model, and the DSM floor at that score: for one sample with noise level sigma and weight w,
///   E loss = w / 2 (D / sigma^2 - sum_i 1 / (lambda_i + sigma^2)),
/// averaged over the draw of sigma (a sum over the ladder, or Simpson's rule over t).
template <class Exec>
struct GaussianFixture {
  using Mem = typename Exec::memory_space;
  static constexpr int D = 16;
  std::vector<double> lambda;
  scorekit::BatchView<double, Mem> data;
  int n_data;
  GaussianFixture(int n) : data("data", std::size_t(n), D), n_data(n) {
    for (int i = 0; i < D; ++i) lambda.push_back(0.25 + 0.2 * i);
    auto h = Kokkos::create_mirror_view(data);
    std::mt19937_64 gen(17);
    std::normal_distribution<double> z;
    for (int r = 0; r < n; ++r)
      for (int i = 0; i < D; ++i) h(r, i) = std::sqrt(lambda[std::size_t(i)]) * z(gen);
    Kokkos::deep_copy(data, h);
  }
  auto model() const {
    Eigen::MatrixXd mu = Eigen::MatrixXd::Zero(1, D), var(1, D);
    for (int i = 0; i < D; ++i) var(0, i) = lambda[std::size_t(i)];
    const auto mixture = scorekit::GaussianMixture<double, Mem>::diagonal(Eigen::VectorXd::Ones(1), mu, var);
    return scorekit::batched(scorekit::PerturbedMixtureScore<double, Mem>(mixture));
  }
  double expected_loss(double sigma, double weight) const {
    double trace = 0;
    for (double l : lambda) trace += 1 / (l + sigma * sigma);
    return weight / 2 * (D / (sigma * sigma) - trace);
  }
  /// Simpson's rule over t in [eps, T] of expected_loss at the draw's sigma and weight.
  template <class Draw>
  double continuous_floor(const Draw& draw) const {
    const int m = 20000;
    double sum = 0;
    for (int k = 0; k <= m; ++k) {
      const double u = double(k) / m;
      const auto r = draw(u);
      const double f = expected_loss(r.sigma, r.weight);
      sum += (k == 0 || k == m ? 1 : k % 2 == 1 ? 4 : 2) * f;
    }
    return sum / (3.0 * m);
  }
  /// The mean of `losses` must be within 4.5 standard errors of `floor` (the standard error inflated by
  /// sqrt(1 + B / n_data) for rows drawn twice from the finite dataset).
  void require_floor(const std::vector<double>& losses, double floor, const std::string& what) const {
    double mean = 0, sq = 0;
    for (double l : losses) mean += l;
    mean /= double(losses.size());
    for (double l : losses) sq += (l - mean) * (l - mean);
    const double se = std::sqrt(sq / double(losses.size() - 1) / double(losses.size())) *
                      std::sqrt(1 + double(losses.size()) / n_data);
    INFO(what << ": mean loss " << mean << ", floor " << floor << ", standard error " << se
              << ", z = " << (mean - floor) / se);
    CHECK(std::fabs(mean - floor) <= 4.5 * se);
  }
};

}  // namespace

TEMPLATE_LIST_TEST_CASE("batched DSM at the exact score equals its closed-form floor", "[image]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const GaussianFixture<Exec> fx(100000);
  const auto model = fx.model();
  const int batch = 8000;
  SECTION("multi-sigma ladder, lambda = sigma^2") {
    const std::vector<double> sigmas = {0.05, 0.2, 1, 5};
    const scorekit::objective::SigmaLadder<double, Mem> draw(sigmas);
    const auto losses = scorekit::objective::evaluate_denoising(
        Exec(), model, draw, scorekit::ConstBatchView<double, Mem>(fx.data), 3, 0, batch);
    double floor = 0;
    for (double s : sigmas) floor += fx.expected_loss(s, s * s) / double(sigmas.size());
    fx.require_floor(losses, floor, "ladder");
  }
  SECTION("continuous-time VE, lambda = s(t)^2") {
    const scorekit::VarianceExplodingSDE<double> sde(0.01, 20);
    const scorekit::objective::ContinuousTime<scorekit::VarianceExplodingSDE<double>> draw(sde, 1e-5);
    const auto losses = scorekit::objective::evaluate_denoising(
        Exec(), model, draw, scorekit::ConstBatchView<double, Mem>(fx.data), 4, 7, batch);
    fx.require_floor(losses, fx.continuous_floor(draw), "VE");
  }
  SECTION("continuous-time VP, likelihood weighting") {
    const scorekit::VariancePreservingSDE<double, scorekit::LinearBeta<double>> sde(
        scorekit::LinearBeta<double>{});
    const scorekit::objective::ContinuousTime<decltype(sde)> draw(sde, 1e-3, true);
    const auto losses = scorekit::objective::evaluate_denoising(
        Exec(), model, draw, scorekit::ConstBatchView<double, Mem>(fx.data), 5, 2, batch);
    fx.require_floor(losses, fx.continuous_floor(draw), "VP, likelihood weighting");
  }
}

namespace {

template <class Exec>
auto tiny_trainer(std::uint64_t seed, int chunks = 0, double adam_epsilon = 1e-8) {
  using Draw = scorekit::objective::SigmaLadder<float, typename Exec::memory_space>;
  auto net = std::make_shared<Network<float, Exec>>(unet<float, Exec>(tiny_unet()));
  scorekit::ImageScoreSettings image;
  image.height = image.width = 4;
  image.channels = 1;
  image.fourier_features = 4;
  scorekit::train::TrainSettings t;
  t.batch_size = 8;
  t.seed = seed;
  t.ema_rate = 0.9;
  t.log = nullptr;
  t.gradient_chunks = chunks;
  t.adam.epsilon = adam_epsilon;
  return std::make_unique<scorekit::train::BatchTrainer<float, Exec, Draw>>(net, image, Draw({0.1, 0.5, 2.0}),
                                                                            t, 11);
}

template <class View>
std::vector<float> host_copy(const View& v) {
  const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  return std::vector<float>(h.data(), h.data() + h.extent(0));
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("BatchTrainer: resuming from a checkpoint continues the run bitwise", "[image]",
                        Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  scorekit::BatchView<float, Mem> data("data", 40, 16);
  {
    auto h = Kokkos::create_mirror_view(data);
    std::mt19937_64 gen(5);
    std::normal_distribution<float> z;
    for (int r = 0; r < 40; ++r)
      for (int i = 0; i < 16; ++i) h(r, i) = z(gen);
    Kokkos::deep_copy(data, h);
  }
  const scorekit::ConstBatchView<float, Mem> cdata = data;
  auto whole = tiny_trainer<Exec>(3);
  const auto first = whole->train(cdata, 6);
  CHECK(first.steps == 6);
  CHECK(std::isfinite(first.final_loss));
  CHECK(first.levels.size() == 3);

  const std::string path =
      "batch_trainer_resume_" + std::to_string(std::hash<std::string>()(typeid(Exec).name())) + ".ckpt";
  auto a = tiny_trainer<Exec>(3);
  a->train(cdata, 3);
  a->save(path);
  auto b = tiny_trainer<Exec>(3);
  b->load(path);
  CHECK(b->step() == 3);
  b->train(cdata, 3);
  std::remove(path.c_str());
  CHECK(host_copy(b->parameters()) == host_copy(whole->parameters()));
  CHECK(host_copy(b->ema_parameters()) == host_copy(whole->ema_parameters()));
  // And the weights moved: the run is not a no-op.
  CHECK(host_copy(tiny_trainer<Exec>(3)->parameters()) != host_copy(whole->parameters()));

  auto other_seed = tiny_trainer<Exec>(4);
  a->save(path);
  CHECK_THROWS_WITH(other_seed->load(path), Catch::Contains("seed = 3, this trainer has 4"));
  std::remove(path.c_str());
}

TEST_CASE("a network's buffers serve batches of any size: the bits of a fresh network", "[image]") {
  // Network::prepare() grows its buffers and keeps them for smaller batches (as the micro-batches of a
  // training step alternate 42 and 43 samples); a batch after a larger one must give what a network that
  // never saw the larger one gives, forward and backward.
  using Exec = Kokkos::DefaultHostExecutionSpace;
  using Mem = Exec::memory_space;
  auto run = [](scorekit::ImageScoreModel<float, Exec>& model, int n) {
    scorekit::BatchView<float, Mem> x("x", std::size_t(n), 16), out("out", std::size_t(n), 16);
    Kokkos::View<float*, Mem> sigma("sigma", std::size_t(n)), grad("grad", model.network().n_params());
    for (int i = 0; i < n; ++i) {
      sigma(i) = 0.2f + 0.1f * float(i);
      for (int j = 0; j < 16; ++j) x(i, j) = std::sin(float(3 * i + j));
    }
    model.score(Exec(), scorekit::ConstBatchView<float, Mem>(x), sigma, out);
    scorekit::BatchView<float, Mem> dout("dout", std::size_t(n), 16);
    Kokkos::deep_copy(dout, out);
    model.backward(Exec(), dout, grad);
    std::vector<float> all(out.data(), out.data() + out.span());
    all.insert(all.end(), grad.data(), grad.data() + grad.span());
    return all;
  };
  auto make = [] {
    auto net = std::make_shared<Network<float, Exec>>(unet<float, Exec>(tiny_unet()));
    Kokkos::View<float*, Mem> p("p", std::size_t(net->n_params()));
    for (std::size_t i = 0; i < p.extent(0); ++i) p(i) = 0.05f * std::cos(float(i));
    return scorekit::ImageScoreModel<float, Exec>(net, p, tiny_image());
  };
  auto reused = make();
  const auto large = run(reused, 7);
  const auto small_after = run(reused, 3);
  const auto large_again = run(reused, 7);
  auto fresh = make();
  CHECK(run(fresh, 3) == small_after);
  CHECK(large_again == large);
}

TEST_CASE("BatchTrainer: a step summed from micro-batches is the step of the whole minibatch", "[image]") {
  // gradient_chunks = 3 splits the minibatch of 8 into micro-batches of 2, 3 and 3 (the split a
  // data-parallel run shares out, distributed/), each a forward and backward with the loss averaged over
  // all 8. With Adam's epsilon at 1e3, far above sqrt(v), a step is lr / epsilon times the gradient, so a
  // gradient scaled wrongly (a micro-batch averaged over its own size) moves the weights differently; at
  // epsilon 1e-8 Adam would hide any uniform scale. Weights after 4 steps: their changes agree to float
  // rounding (a relative 1e-4 of the largest change; a wrong scale gives errors of order 1).
  using Exec = Kokkos::DefaultHostExecutionSpace;
  using Mem = Exec::memory_space;
  scorekit::BatchView<float, Mem> data("data", 40, 16);
  std::mt19937_64 gen(5);
  std::normal_distribution<float> z;
  for (std::size_t i = 0; i < data.span(); ++i) data.data()[i] = z(gen);
  const scorekit::ConstBatchView<float, Mem> cdata = data;
  auto whole = tiny_trainer<Exec>(3, 0, 1e3), split = tiny_trainer<Exec>(3, 3, 1e3);
  CHECK(whole->chunks() == 1);
  CHECK(split->chunks() == 3);
  const auto start = host_copy(whole->parameters());
  whole->train(cdata, 4);
  const auto report = split->train(cdata, 4);
  const auto a = host_copy(whole->parameters()), b = host_copy(split->parameters());
  double largest = 0, worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    largest = std::max(largest, std::abs(double(a[i]) - double(start[i])));
    worst = std::max(worst, std::abs(double(a[i]) - double(b[i])));
  }
  INFO("largest change " << largest << ", largest difference " << worst);
  CHECK(largest > 0);
  CHECK(worst <= 1e-4 * largest);
  CHECK(std::isfinite(report.final_loss));
  // A checkpoint records the chunks; resuming with others would not continue the same run.
  const std::string path = "batch_trainer_chunks.ckpt";
  split->save(path);
  CHECK_THROWS_WITH(whole->load(path), Catch::Contains("gradient_chunks = 3, this trainer has 1"));
  std::remove(path.c_str());
}

TEST_CASE("BatchTrainer: a NaN loss and NaN data are reported, the weights kept", "[image]") {
  using Exec = Kokkos::DefaultHostExecutionSpace;
  using Mem = Exec::memory_space;
  scorekit::BatchView<float, Mem> data("data", 10, 16);
  auto t = tiny_trainer<Exec>(1);
  const float nan = std::nanf("");
  // A NaN weight makes the first step's loss NaN.
  Kokkos::deep_copy(Kokkos::subview(t->parameters(), 20), nan);
  const auto before = host_copy(t->parameters());
  try {
    t->train(data, 3);
    FAIL("no exception");
  } catch (const scorekit::train::non_finite_loss& e) {
    CHECK(e.step() == 0);
    CHECK(e.parameter() == -1);
    CHECK_THAT(e.what(), Catch::Contains("the loss of step 0 is") && Catch::Contains("nan"));
  }
  CHECK(t->step() == 0);
  const auto after = host_copy(t->parameters());
  for (std::size_t i = 0; i < before.size(); ++i)
    CHECK((after[i] == before[i] || (i == 20 && std::isnan(after[i]))));

  auto u = tiny_trainer<Exec>(1);
  // NaN data is named by its row before any step (not when a minibatch happens to draw it).
  Kokkos::deep_copy(Kokkos::subview(data, 7, 3), nan);
  CHECK_THROWS_WITH(u->train(data, 1),
                    Catch::Contains("image 7 of the training data (of 10) has a NaN or infinite value"));
  CHECK(u->step() == 0);
  CHECK_THROWS_WITH(u->train(scorekit::BatchView<float, Mem>("d", 10, 15), 1),
                    Catch::Contains("the data's columns"));
}

namespace {

/// s(x, sigma) = w x on the fused path: what a network of one bias-free 1 x 1 convolution with weight w
/// computes (no Fourier features, no division by sigma), exactly (a product with one term).
struct LinearScore {
  using value_type = double;
  using memory_space = Kokkos::HostSpace;
  double w;
  int d;
  KOKKOS_INLINE_FUNCTION int dim() const { return d; }
  KOKKOS_INLINE_FUNCTION void score(const double* x, double, double* out) const {
    for (int j = 0; j < d; ++j) out[j] = w * x[j];
  }
};

}  // namespace

TEST_CASE("ImageScoreModel drives the batched integrators: the fused run of the same score, bitwise",
          "[image]") {
  using Exec = Kokkos::DefaultHostExecutionSpace;
  using Mem = Exec::memory_space;
  const double w = -0.05;
  auto net = std::make_shared<Network<double, Exec>>();
  net->set_output(net->layer(pointwise_dense(1, 1, false), net->image_input(1)));
  Kokkos::View<double*, Mem> p("p", 1);
  p(0) = w;
  scorekit::ImageScoreSettings s;
  s.height = s.width = 4;
  s.channels = 1;
  s.sigma_min = 1e-4;
  s.sigma_max = 25;
  s.divide_by_sigma = false;
  const scorekit::ImageScoreModel<double, Exec> image_model(net, p, s);
  const LinearScore fused_model{w, 16};
  const scorekit::VarianceExplodingSDE<double> ve(0.01, 20);
  auto run = [&](const auto& model) {
    scorekit::ParticleView<double, Mem> x("x", 12, 16);
    std::mt19937_64 gen(3);
    std::normal_distribution<double> z(0, 20);
    for (int i = 0; i < 12; ++i)
      for (int j = 0; j < 16; ++j) x(i, j) = z(gen);
    scorekit::IntegrateSettings settings;
    settings.times = scorekit::uniform_times(1.0, 1e-3, 10);
    settings.seed = 5;
    const auto pc =
        scorekit::predictor_corrector(scorekit::ReverseDiffusion{}, scorekit::LangevinCorrector(0.16, 1));
    const auto r = scorekit::integrate(Exec(), scorekit::reverse_sde(ve, model), pc, x, settings);
    return std::make_pair(x, r.n_score_evaluations);
  };
  const auto fused = run(fused_model), batch = run(image_model);
  const auto& b = batch.first;
  CHECK(scorekit_test::bitwise_equal(fused.first, b));
  CHECK(fused.second == batch.second);
  double moved = 0;
  for (int j = 0; j < 16; ++j) moved += std::fabs(b(0, j));
  CHECK(moved > 0);
}
