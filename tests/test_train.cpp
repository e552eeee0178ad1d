// The training loop: a linear score model learns a Gaussian's precision and mean; the noise-conditional
// toy net reaches a stated Fisher divergence; runs are bitwise reproducible across thread counts, across
// a save/load and whatever the spacing of the NaN checks; bad runs are refused, naming the first bad step,
// with the state of before it.
#include "backends.hpp"
#include "support.hpp"

#include <scorekit/density/draw.hpp>
#include <scorekit/density/gaussian_mixture.hpp>
#include <scorekit/divergence/estimate_divergence.hpp>
#include <scorekit/divergence/exact_trace.hpp>
#include <scorekit/metrics/fisher_divergence.hpp>
#include <scorekit/nn/sequential.hpp>
#include <scorekit/objective/denoising.hpp>
#include <scorekit/objective/implicit.hpp>
#include <scorekit/schedule/geometric.hpp>
#include <scorekit/score/neural.hpp>
#include <scorekit/score/perturbed_mixture.hpp>
#include <scorekit/train/trainer.hpp>

#include <Eigen/Dense>
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace scorekit::nn;
namespace obj = scorekit::objective;

template <class Real, class Mem>
Kokkos::View<Real**, Kokkos::LayoutRight, Mem> gaussian_data(int n, const Eigen::Vector2d& mu,
                                                             const Eigen::Matrix2d& s, std::uint64_t seed) {
  Kokkos::View<Real**, Kokkos::LayoutRight, Mem> x("data", n, 2);
  const double l00 = std::sqrt(s(0, 0)), l10 = s(1, 0) / l00, l11 = std::sqrt(s(1, 1) - l10 * l10);
  scorekit::CounterRng<double> rng(seed, 0, 0, scorekit::RngStream::user);
  scorekit_test::fill_host(x, [&](std::size_t, std::size_t j) {
    static double z0 = 0;
    if (j == 0) {
      z0 = rng.normal();
      return mu[0] + l00 * z0;
    }
    return mu[1] + l10 * z0 + l11 * rng.normal();
  });
  return x;
}

template <class Real, class Mem>
Kokkos::View<Real**, Kokkos::LayoutRight, Mem> mixture_data(const scorekit::GaussianMixture<Real, Mem>& m,
                                                            int n, std::uint64_t seed) {
  Kokkos::View<Real**, Kokkos::LayoutRight, Mem> x("mixture data", n, m.dim());
  scorekit::draw_exact(typename Mem::execution_space(), m, x, seed);
  return x;
}

template <class Real, class Mem>
scorekit::GaussianMixture<Real, Mem> two_modes(double w0) {
  Eigen::VectorXd weights(2), variances(2);
  weights << w0, 1 - w0;
  variances << 1, 1;
  Eigen::MatrixXd means(2, 2);
  means << 0, 0, 10, 10;
  return scorekit::GaussianMixture<Real, Mem>::isotropic(weights, means, variances);
}

using ToyNC =
    Sequential<ConditionalDense<2, 32, 4>, Softplus, ConditionalDense<32, 32, 4>, Softplus, Dense<32, 2>>;

enum class Poison { none, loss, gradient };

/// A test objective: Inner's, except at training step `bad_step`, where the minibatch's first block
/// makes the loss NaN (Poison::loss), or the gradient of parameter `high` NaN from the first block and
/// that of parameter `low` (< high) infinite from the last block (Poison::gradient), so that the lowest
/// bad index comes from another chunk than the first bad one found in chunk order.
template <class Inner>
struct PoisonedObjective {
  Inner inner;
  Poison poison = Poison::none;
  std::uint32_t bad_step = 0;
  std::uint32_t last_first = 0;  ///< key.first of the minibatch's last block
  int low = 0, high = 0;
  double infinity = std::numeric_limits<double>::infinity();
  double not_a_number = std::numeric_limits<double>::quiet_NaN();

  std::string name() const { return inner.name(); }
  KOKKOS_INLINE_FUNCTION int n_levels() const { return inner.n_levels(); }
  KOKKOS_INLINE_FUNCTION int extra_workspace_size() const { return inner.extra_workspace_size(); }
  template <class Net, int B>
  KOKKOS_INLINE_FUNCTION static constexpr int workspace_size() {
    return Inner::template workspace_size<Net, B>();
  }
  template <class Net, int B, class Real>
  KOKKOS_INLINE_FUNCTION void accumulate(const Real* params, int nb, const Real* x, const obj::SampleKey& key,
                                         Real* grad, Real* stats, Real* work) const {
    inner.template accumulate<Net, B>(params, nb, x, key, grad, stats, work);
    if (key.step != bad_step) return;
    if (poison == Poison::loss && key.first == 0) stats[0] = Real(not_a_number);
    if (poison == Poison::gradient && key.first == 0) grad[high] = Real(not_a_number);
    if (poison == Poison::gradient && key.first == last_first) grad[low] = Real(infinity);
  }
};

std::vector<char> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("ISM on a linear score model recovers a Gaussian's precision and mean", "[train]") {
  // s(x) = W x + b. For data with sample mean m and (biased) sample covariance S the ISM loss
  // tr W + 1/2 E||W x + b||^2 is minimised exactly by W = -S^-1, b = S^-1 m, so the trained W estimates
  // the precision P with the sampling error of S^-1: sd(P_ij) ~ sqrt((P_ii P_jj + P_ij^2) / N) (the
  // Wishart delta method), and -W^-1 b = m has sd sqrt(Sigma_ii / N). Adam's own wandering at lr 1e-3,
  // averaged by the EMA, is far below those (checked against the exact optimum -S^-1 at 1e-2).
  using Exec = Kokkos::DefaultHostExecutionSpace;
  using Mem = Exec::memory_space;
  using Linear = Sequential<Dense<2, 2>>;
  const Eigen::Vector2d mu(1.0, -2.0);
  Eigen::Matrix2d sigma;
  sigma << 1.0, 0.5, 0.5, 2.0;
  const Eigen::Matrix2d precision = sigma.inverse();
  constexpr int n = 4000;
  const auto data = gaussian_data<double, Mem>(n, mu, sigma, 3);

  scorekit::train::TrainSettings settings;
  settings.batch_size = 256;
  settings.seed = 5;
  settings.adam.learning_rate = 1e-2;
  settings.ema_rate = 0.99;
  scorekit::train::Trainer<Linear, decltype(obj::implicit_score_matching()), Exec, double> trainer(
      obj::implicit_score_matching(), settings, 1);
  trainer.train(data, 3000);
  auto p = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), trainer.ema_parameters());
  Eigen::Matrix2d w;
  w << p(0), p(1), p(2), p(3);
  const Eigen::Vector2d b(p(4), p(5));

  const Eigen::MatrixXd xs = scorekit_test::to_eigen(data);
  const Eigen::Vector2d m = xs.colwise().mean();
  const Eigen::MatrixXd centred = xs.rowwise() - m.transpose();
  const Eigen::Matrix2d s = (centred.transpose() * centred) / double(n);
  const Eigen::Matrix2d optimum = -s.inverse();
  INFO("trained W\n" << w << "\nexact optimum -S^-1\n" << optimum << "\n-P\n" << -precision);
  CHECK((w - optimum).cwiseAbs().maxCoeff() < 1e-2);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) {
      const double sd =
          std::sqrt((precision(i, i) * precision(j, j) + precision(i, j) * precision(i, j)) / double(n));
      CHECK(std::fabs(w(i, j) + precision(i, j)) < 4 * sd + 1e-2);
    }
  const Eigen::Vector2d mean = -w.inverse() * b;
  for (int i = 0; i < 2; ++i) CHECK(std::fabs(mean[i] - mu[i]) < 4 * std::sqrt(sigma(i, i) / n) + 1e-2);
}

TEMPLATE_LIST_TEST_CASE("training is bitwise reproducible and resumes exactly from a checkpoint", "[train]",
                        scorekit_test::Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const auto data = mixture_data(two_modes<float, Mem>(0.2), 1000, 7);
  const auto sigmas = scorekit::geometric_schedule(1.0, 0.05, 4);
  using Objective = obj::DenoisingScoreMatching<float, Mem>;
  scorekit::train::TrainSettings settings;
  settings.batch_size = 100;  // a partial last block, and blocks split over chunks
  settings.seed = 11;
  using T = scorekit::train::Trainer<ToyNC, Objective, Exec, float>;
  T straight(Objective(sigmas), settings, 3);
  straight.train(data, 20);

  T first(Objective(sigmas), settings, 3);
  first.train(data, 12);
  const scorekit_test::TempDir dir("train_resume");
  const std::string path = dir.file("resume.ckpt");
  first.save(path);
  T second(Objective(sigmas), settings, 99);  // different initial weights: all must come from the file
  second.load(path);
  CHECK(second.step() == 12);
  second.train(data, 8);
  CHECK(scorekit_test::bitwise_equal(second.parameters(), straight.parameters()));
  CHECK(scorekit_test::bitwise_equal(second.ema_parameters(), straight.ema_parameters()));
}

TEST_CASE("training gives the same weights for every thread count", "[train][threads]") {
  const auto sigmas = scorekit::geometric_schedule(1.0, 0.05, 4);
  scorekit::train::TrainSettings settings;
  settings.batch_size = 200;
  settings.seed = 4;
  auto run = [&](auto exec) {
    using Exec = decltype(exec);
    using Mem = typename Exec::memory_space;
    using Objective = obj::DenoisingScoreMatching<float, Mem>;
    const auto data = mixture_data(two_modes<float, Mem>(0.2), 500, 8);
    scorekit::train::Trainer<ToyNC, Objective, Exec, float> t(Objective(sigmas), settings, 2);
    t.train(data, 15);
    auto p = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), t.parameters());
    return std::vector<float>(p.data(), p.data() + p.size());
  };
  const auto reference = run(Kokkos::Serial());
  const auto here = run(Kokkos::DefaultHostExecutionSpace());
  CHECK(reference == here);
}

TEMPLATE_LIST_TEST_CASE(
    "a NaN loss or gradient at step k is reported naming step k, with the state of k good "
    "steps, whatever the spacing of the checks",
    "[train]", scorekit_test::Backends) {
  // The device records the first bad step and skips every update after it; the host finds it at the
  // next check (every check_every steps, at a log line, at the end). Whenever that is, the error names
  // step k, and the weights, the EMA, Adam's moments and step count and step() are bitwise those of a
  // run of k good steps (compared through the checkpoint, whose bytes are a function of that state).
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  using Objective = PoisonedObjective<obj::DenoisingScoreMatching<float, Mem>>;
  using T = scorekit::train::Trainer<ToyNC, Objective, Exec, float>;
  const auto data = mixture_data(two_modes<float, Mem>(0.2), 1000, 7);
  const auto sigmas = scorekit::geometric_schedule(1.0, 0.05, 4);
  constexpr long k = 9;
  constexpr int low = 11, high = 700;
  auto objective = [&](Poison poison) {
    Objective o{obj::DenoisingScoreMatching<float, Mem>(sigmas)};
    o.poison = poison;
    o.bad_step = std::uint32_t(k);
    o.low = low;
    o.high = high;
    o.last_first = std::uint32_t((40 - 1) / T::block * T::block);
    return o;
  };
  scorekit::train::TrainSettings settings;
  settings.batch_size = 40;
  settings.seed = 11;
  const scorekit_test::TempDir dir("train_nan");
  T reference(objective(Poison::none), settings, 3);
  reference.train(data, k);
  reference.save(dir.file("reference.ckpt"));
  const std::vector<char> reference_bytes = slurp(dir.file("reference.ckpt"));

  struct Spacing {
    int check_every, log_every;
    long reported_at;  ///< the step count at the sync point that finds the failure
  };
  for (Poison poison : {Poison::loss, Poison::gradient})
    for (const Spacing spacing :
         {Spacing{1, 0, k + 1}, Spacing{4, 0, 12}, Spacing{0, 0, 30}, Spacing{0, 5, 10}, Spacing{3, 4, 12}}) {
      INFO((poison == Poison::loss ? "loss" : "gradient")
           << ", check_every " << spacing.check_every << ", log_every " << spacing.log_every);
      settings.check_every = spacing.check_every;
      settings.log_every = spacing.log_every;
      std::ostringstream log;
      settings.log = &log;
      T t(objective(poison), settings, 3);
      try {
        t.train(data, 30);
        FAIL("a NaN went unreported");
      } catch (const scorekit::train::non_finite_loss& e) {
        const std::string what = e.what();
        CHECK(e.step() == k);
        CHECK_THAT(what, Catch::Contains("the weights are those before that step"));
        if (poison == Poison::loss) {
          CHECK(e.parameter() == -1);
          CHECK_THAT(what, Catch::Contains("the loss of step 9 is") && Catch::Contains("nan"));
        } else {
          CHECK(e.parameter() == low);
          CHECK_THAT(what, Catch::Contains("the gradient of parameter 11 is inf at step 9"));
        }
      }
      CHECK(t.step() == k);
      CHECK(scorekit_test::bitwise_equal(t.parameters(), reference.parameters()));
      CHECK(scorekit_test::bitwise_equal(t.ema_parameters(), reference.ema_parameters()));
      t.save(dir.file("failed.ckpt"));
      CHECK(slurp(dir.file("failed.ckpt")) == reference_bytes);
      // Log lines are written for the windows checked before the failure was found, and no later.
      if (spacing.log_every > 0) {
        const std::string lines = log.str();
        for (long s = spacing.log_every; s <= 30; s += spacing.log_every) {
          char head[32];
          std::snprintf(head, sizeof(head), "step %8ld ", s);
          INFO("log line for step " << s << " in\n" << lines);
          CHECK((lines.find(head) != std::string::npos) == (s < spacing.reported_at));
        }
      }
      // Training goes on from the good state: the same step fails again.
      CHECK_THROWS_WITH(t.train(data, 3), Catch::Contains("step 9"));
      CHECK(t.step() == k);
      CHECK(scorekit_test::bitwise_equal(t.parameters(), reference.parameters()));
    }
}

TEMPLATE_LIST_TEST_CASE("a finite run is bitwise the same whatever the spacing of the NaN checks", "[train]",
                        scorekit_test::Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  using Objective = obj::DenoisingScoreMatching<float, Mem>;
  using T = scorekit::train::Trainer<ToyNC, Objective, Exec, float>;
  const auto data = mixture_data(two_modes<float, Mem>(0.2), 1000, 7);
  const auto sigmas = scorekit::geometric_schedule(1.0, 0.05, 4);
  const scorekit_test::TempDir dir("train_check_every");
  std::vector<std::vector<char>> checkpoints;
  std::vector<scorekit::train::TrainReport> reports;
  std::vector<std::string> logs;
  for (int check_every : {0, 1, 3}) {
    INFO("check_every " << check_every);
    scorekit::train::TrainSettings settings;
    settings.batch_size = 40;
    settings.seed = 11;
    settings.check_every = check_every;
    settings.log_every = 4;
    std::ostringstream log;
    settings.log = &log;
    T t(Objective(sigmas), settings, 3);
    reports.push_back(t.train(data, 13));
    const std::string path = dir.file("run" + std::to_string(check_every) + ".ckpt");
    t.save(path);
    checkpoints.push_back(slurp(path));
    // The log without its steps/s column (wall time).
    std::istringstream lines(log.str());
    std::string line, stripped;
    while (std::getline(lines, line))
      stripped += line.substr(0, 30) + line.substr(line.find("steps/s")) + "\n";
    logs.push_back(stripped);
  }
  for (std::size_t r = 1; r < reports.size(); ++r) {
    CHECK(checkpoints[r] == checkpoints[0]);
    CHECK(logs[r] == logs[0]);
    CHECK(reports[r].steps == 13);
    CHECK(reports[r].final_loss == reports[0].final_loss);
    REQUIRE(reports[r].levels.size() == 4);
    for (std::size_t l = 0; l < 4; ++l) {
      CHECK(reports[r].levels[l].mean == reports[0].levels[l].mean);
      CHECK(reports[r].levels[l].count == reports[0].levels[l].count);
    }
  }
  // The last window (steps 13 of a log_every of 4: one step) and the whole batch at the last step.
  double count = 0;
  for (const auto& l : reports[0].levels) count += l.count;
  CHECK(count == 40);
}

TEST_CASE("the trainer refuses bad runs and foreign checkpoints", "[train]") {
  using Exec = Kokkos::DefaultHostExecutionSpace;
  using Mem = Exec::memory_space;
  using Objective = obj::DenoisingScoreMatching<float, Mem>;
  const auto sigmas = scorekit::geometric_schedule(1.0, 0.05, 4);
  scorekit::train::TrainSettings settings;
  settings.batch_size = 32;
  using T = scorekit::train::Trainer<ToyNC, Objective, Exec, float>;
  SECTION("settings") {
    settings.batch_size = 0;
    CHECK_THROWS_WITH(T(Objective(sigmas), settings), Catch::Contains("batch_size"));
    settings.batch_size = 8;
    settings.ema_rate = 1.0;
    CHECK_THROWS_WITH(T(Objective(sigmas), settings), Catch::Contains("ema_rate"));
    settings.ema_rate = 0.5;
    settings.check_every = -1;
    CHECK_THROWS_WITH(T(Objective(sigmas), settings), Catch::Contains("check_every"));
  }
  SECTION("data of the wrong shape, and NaN in the data") {
    T t(Objective(sigmas), settings);
    Kokkos::View<float**, Kokkos::LayoutRight, Mem> three("three", 10, 3);
    CHECK_THROWS_WITH(t.train(three, 1), Catch::Contains("columns"));
    // One infinity in row 12,345 of 20,000: named before any step, not when a minibatch draws it.
    Kokkos::View<float**, Kokkos::LayoutRight, Mem> bad("bad", 20000, 2);
    Kokkos::deep_copy(Kokkos::subview(bad, 12345, 1), std::numeric_limits<float>::infinity());
    const auto before = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), t.parameters());
    CHECK_THROWS_WITH(t.train(bad, 3), Catch::Contains("scorekit::Trainer::train: row 12345 of the training "
                                                       "data (of 20000) has a NaN or infinite value"));
    CHECK(scorekit_test::bitwise_equal(before, t.parameters()));
    CHECK(t.step() == 0);
  }
  SECTION("a checkpoint of another network, objective or run") {
    const scorekit_test::TempDir dir("train_foreign");
    const std::string path = dir.file("foreign.ckpt");
    T t(Objective(sigmas), settings);
    t.save(path);
    using Other = scorekit::train::Trainer<ToyNC, Objective, Exec, float>;
    Other different_levels(Objective(scorekit::geometric_schedule(1.0, 0.05, 5)), settings);
    CHECK_THROWS_WITH(different_levels.load(path), Catch::Contains("signature"));
    auto other_settings = settings;
    other_settings.seed = 1;
    Other different_seed(Objective(sigmas), other_settings);
    CHECK_THROWS_WITH(different_seed.load(path), Catch::Contains("seed"));
  }
}

TEST_CASE("the noise-conditional toy net reaches a small Fisher divergence at every level", "[train]") {
  // Trained by the NCSN objective (lambda = sigma^2) on 10,000 points of the 0.2/0.8 mixture, the net is
  // compared with the exact perturbed score at each of its levels on fresh points of the perturbed law.
  // Stated bound: relative Fisher divergence E||s - s*||^2 / E||s*||^2 below 0.2 at every level, i.e.
  // the net explains 80% of the score's mean square (the zero field scores 1). The smallest level is
  // the hardest: DSM's target z / sigma has variance 1 / sigma^2 against a score of size ~1 (measured
  // 0.008, 0.007, 0.038 and 0.125 from sigma = 1 down to 0.05).
  using Exec = Kokkos::DefaultHostExecutionSpace;
  using Mem = Exec::memory_space;
  using Objective = obj::DenoisingScoreMatching<float, Mem>;
  const auto sigmas = scorekit::geometric_schedule(1.0, 0.05, 4);
  const auto mixture = two_modes<float, Mem>(0.2);
  const auto data = mixture_data(mixture, 10000, 21);
  scorekit::train::TrainSettings settings;
  settings.batch_size = 256;
  settings.seed = 1;
  settings.adam.learning_rate = 3e-3;
  settings.ema_rate = 0.995;
  scorekit::train::Trainer<ToyNC, Objective, Exec, float> trainer(Objective(sigmas), settings, 2);
  trainer.train(data, 6000);
  const scorekit::NoiseConditionalScore<ToyNC, float, Mem> model(trainer.ema_parameters(), sigmas);
  const scorekit::PerturbedMixtureScore<float, Mem> exact(mixture,
                                                          std::vector<float>(sigmas.begin(), sigmas.end()));
  for (std::size_t l = 0; l < sigmas.size(); ++l) {
    const auto points = mixture_data(mixture.perturbed(1.0f, float(sigmas[l])), 4000, 100 + l);
    const auto f = scorekit::fisher_divergence(Exec(), model, exact, points, float(sigmas[l]));
    INFO("sigma " << sigmas[l] << ": Fisher " << f.value << " +- " << f.standard_error << ", relative "
                  << f.relative());
    CHECK(f.relative() < 0.2);
  }
}

TEMPLATE_LIST_TEST_CASE("NeuralScore's score and jvp are the network's, and divergence estimators run on it",
                        "[train][score]", scorekit_test::Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  using Net = Sequential<Dense<2, 16>, Softplus, Dense<16, 2>>;
  Kokkos::View<double*, Mem> params("params", Net::n_params);
  const auto segments = Net::segments();
  scorekit::nn::initialize(params, segments.data(), int(segments.size()), scorekit::nn::Init::glorot_normal,
                           3);
  const scorekit::NeuralScore<Net, double, Mem> model(params);
  auto p = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), params);
  // Reference: the dual block of one sample with the two unit tangents gives s and the Jacobian.
  const double x[2] = {0.4, -1.3};
  std::vector<double> tape(Net::tape_size<1, 2>, 0.0);
  const int level[1] = {0};
  for (int i = 0; i < 2; ++i) {
    tape[i * 3] = x[i];
    tape[i * 3 + 1 + i] = 1;
  }
  Net::forward<1, 2>(p.data(), level, tape.data());
  const double* y = Net::output<1, 2>(tape.data());
  const double trace = y[0 * 3 + 1] + y[1 * 3 + 2];

  std::vector<double> work(model.workspace_size()), s(2), s2(2), jv(2);
  const double v[2] = {0.7, 0.2};
  if (std::is_same<Mem, Kokkos::HostSpace>::value) {
    model.score(x, s.data(), work.data());
    model.jvp(x, v, s2.data(), jv.data(), work.data());
    for (int i = 0; i < 2; ++i) {
      CHECK(s[i] == y[i * 3]);
      CHECK(s2[i] == y[i * 3]);
      CHECK(jv[i] == Approx(v[0] * y[i * 3 + 1] + v[1] * y[i * 3 + 2]).epsilon(1e-14));
    }
  }
  Kokkos::View<double**, Kokkos::LayoutRight, Mem> points("points", 3, 2);
  Kokkos::View<double*, Mem> div("div", 3);
  scorekit_test::fill_host(points, [&](std::size_t, std::size_t j) { return x[j]; });
  scorekit::estimate_divergence(Exec(), scorekit::ExactTrace(), model, points, 1, div);
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), div);
  for (int i = 0; i < 3; ++i) CHECK(h(i) == Approx(trace).epsilon(1e-14));
}
