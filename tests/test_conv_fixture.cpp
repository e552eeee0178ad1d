// The exact-answer fixture of the convolutional path: stationary Gaussian images on a torus. For a
// periodic 8 x 8 field whose perturbed precision at noise level sigma is the circulant
//   Q = a I - b (the four nearest-neighbour shifts),   (C + sigma^2 I)^{-1} = Q,  C = Q^{-1} - sigma^2 I,
// the exact score of the perturbed data, -Q x~, is a 3 x 3 circular convolution. So BatchTrainer's
// denoising score matching with a network of one bias-free 3 x 3 convolution with circular padding
// must reach it: the trained model's DSM loss on fresh data equals the closed-form floor, attained only
// by the exact score, within its standard error. (The loss exceeds the floor by sigma^2 / 2 times the
// Fisher divergence to the exact score, so this bounds the divergence by the Monte Carlo resolution.)
// scorekit-requires: SCOREKIT_HAVE_KOKKOS_KERNELS
#include "backends.hpp"
#include "support.hpp"

#include <scorekit/nn/image/conv2d.hpp>
#include <scorekit/nn/image/network.hpp>
#include <scorekit/objective/batch_denoising.hpp>
#include <scorekit/score/image_score.hpp>
#include <scorekit/train/batch_trainer.hpp>

#include <catch2/catch.hpp>

#include <Eigen/Dense>
#include <cmath>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

namespace {

constexpr int side = 8, D = side * side;
constexpr double a = 2, b = 0.3, sigma = 0.5;

/// The D x D matrix of the 3 x 3 circular cross-correlation with weights w (row ky 3 + kx, as Conv2d
/// stores one input and one output channel): (A x)(r, c) = sum w(ky, kx) x(r + ky - 1, c + kx - 1), the
/// indices modulo 8.
Eigen::MatrixXd circular_matrix(const std::vector<double>& w) {
  Eigen::MatrixXd m = Eigen::MatrixXd::Zero(D, D);
  for (int r = 0; r < side; ++r)
    for (int c = 0; c < side; ++c)
      for (int ky = 0; ky < 3; ++ky)
        for (int kx = 0; kx < 3; ++kx)
          m(r * side + c, ((r + ky - 1 + side) % side) * side + (c + kx - 1 + side) % side) +=
              w[std::size_t(ky * 3 + kx)];
  return m;
}

/// The exact score's kernel, -Q: -a at the centre, b at the four neighbours.
std::vector<double> exact_kernel() { return {0, b, 0, b, -a, b, 0, b, 0}; }

/// n images of the field, drawn exactly (x = L z with L L^T = C).
template <class Mem>
scorekit::BatchView<double, Mem> draw_field(int n, std::uint64_t seed) {
  const Eigen::MatrixXd q = -circular_matrix(exact_kernel());
  const Eigen::MatrixXd c = q.inverse() - sigma * sigma * Eigen::MatrixXd::Identity(D, D);
  const Eigen::MatrixXd l = Eigen::LLT<Eigen::MatrixXd>(c).matrixL();
  scorekit::BatchView<double, Mem> data("field", std::size_t(n), D);
  auto h = Kokkos::create_mirror_view(data);
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> z;
  Eigen::VectorXd v(D);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < D; ++j) v(j) = z(gen);
    const Eigen::VectorXd x = l * v;
    for (int j = 0; j < D; ++j) h(i, j) = x(j);
  }
  Kokkos::deep_copy(data, h);
  return data;
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("DSM with one circular convolution reaches the exact score of a stationary field",
                        "[image][fixture]", scorekit_test::Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  using Draw = scorekit::objective::SigmaLadder<double, Mem>;
  using namespace scorekit::nn::image;
  // Q's eigenvalues a - 2 b (cos u + cos v) lie in [1.8, 3.2] < 1 / sigma^2 = 4, so C is positive.
  const auto train_data = draw_field<Mem>(20000, 1);
  const auto test_data = draw_field<Mem>(50000, 2);
  auto net = std::make_shared<Network<double, Exec>>();
  Conv2dOptions o;
  o.padding = 1;
  o.padding_mode = PaddingMode::circular;
  o.bias = false;
  net->set_output(net->layer(Conv2d(1, 1, 3, o), net->image_input(1)));
  scorekit::ImageScoreSettings image;
  image.height = image.width = side;
  image.channels = 1;
  image.divide_by_sigma = false;
  scorekit::train::TrainSettings t;
  t.batch_size = 256;
  t.seed = 3;
  t.adam.learning_rate = 1e-2;
  t.ema_rate = 0.99;
  t.log = nullptr;
  const Draw draw({sigma});
  scorekit::train::BatchTrainer<double, Exec, Draw> trainer(net, image, draw, t, 5);

  // The floor: (sigma^2 / 2) E || -Q x~ + z / sigma ||^2 = (sigma^2 / 2) (D / sigma^2 - tr Q).
  const double floor = sigma * sigma / 2 * (D / (sigma * sigma) - D * a);
  const int m = 50000;
  auto loss_z = [&](const std::string& what) {
    auto model = trainer.model();
    model.set_parameters(trainer.ema_parameters());
    const auto losses = scorekit::objective::evaluate_denoising(
        Exec(), model, draw, scorekit::ConstBatchView<double, Mem>(test_data), 9, 0, m);
    double mean = 0, sq = 0;
    for (double l : losses) mean += l;
    mean /= m;
    for (double l : losses) sq += (l - mean) * (l - mean);
    // Rows drawn with replacement from a finite test set: the variance inflated by 1 + m / n_test.
    const double se = std::sqrt(sq / (m - 1) / m) * std::sqrt(1 + double(m) / 50000);
    const auto w = scorekit::to_host(trainer.ema_parameters());
    const Eigen::MatrixXd delta =
        circular_matrix(std::vector<double>(w.data(), w.data() + 9)) - circular_matrix(exact_kernel());
    const Eigen::MatrixXd q = -circular_matrix(exact_kernel());
    const double fisher = (delta * q.inverse() * delta.transpose()).trace();
    std::ostringstream msg;
    msg << what << ": mean loss " << mean << ", floor " << floor << ", standard error " << se
        << ", z = " << (mean - floor) / se << "; exact Fisher divergence " << fisher
        << " (E||s||^2 = " << D * a << "); kernel " << w(0) << " " << w(1) << " " << w(2) << " / " << w(3)
        << " " << w(4) << " " << w(5) << " / " << w(6) << " " << w(7) << " " << w(8);
    return std::make_tuple((mean - floor) / se, fisher, msg.str());
  };
  // Before training the loss is far above the floor: the check below can fail.
  const auto before = loss_z("initial weights");
  INFO(std::get<2>(before));
  CHECK(std::get<0>(before) > 100);
  const auto report = trainer.train(scorekit::ConstBatchView<double, Mem>(train_data), 1000);
  CHECK(report.steps == 1000);
  const auto after = loss_z("after 1000 steps");
  INFO(std::get<2>(after));
  CHECK(std::fabs(std::get<0>(after)) <= 4.5);
}
