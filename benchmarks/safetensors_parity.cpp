// The C++ half of the PyTorch parity check (benchmarks/safetensors_parity.py drives it): weights go
// between scorekit and PyTorch through safetensors files (io/parameters.hpp) under the keys of
// torch.nn.Sequential and of torch_image.py's UNet, and both evaluate the same inputs.
//
//   safetensors_parity export <dir>   writes <dir>/mlp.safetensors, <dir>/unet.safetensors and
//                                     <dir>/refinenet.safetensors (weights
//                                     drawn here, every tensor perturbed so none is all zeros or ones)
//                                     and scorekit's outputs on <dir>/mlp_x.npy and <dir>/unet_x.npy,
//                                     <dir>/unet_sigma.npy (and refinenet_*) to <dir>/<net>_scorekit.npy
//   safetensors_parity import <dir>   loads <dir>/<net>_torch.safetensors
//                                     (written by PyTorch), writes the outputs on the same inputs to
//                                     <dir>/<net>_from_torch.npy, and samples
//                                     the PyTorch-trained MLP score with ULA into <dir>/mlp_samples.npy
//
// Everything in double precision: the check is of the layouts, so the differences are double rounding.
// scorekit-requires: SCOREKIT_HAVE_NLOHMANN_JSON
#include <scorekit/core/views.hpp>
#include <scorekit/density/draw.hpp>
#include <scorekit/io/arrays.hpp>
#include <scorekit/io/parameters.hpp>
#include <scorekit/io/samples.hpp>
#include <scorekit/nn/image/refinenet.hpp>
#include <scorekit/nn/image/unet.hpp>
#include <scorekit/nn/init.hpp>
#include <scorekit/nn/sequential.hpp>
#include <scorekit/sample/langevin.hpp>
#include <scorekit/schedule/geometric.hpp>
#include <scorekit/score/image_score.hpp>
#include <scorekit/score/neural.hpp>

#include <cmath>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

namespace {

using Exec = Kokkos::DefaultHostExecutionSpace;
using Mem = Exec::memory_space;
using Mlp =
    scorekit::nn::Sequential<scorekit::nn::Dense<2, 64>, scorekit::nn::Softplus, scorekit::nn::Dense<64, 64>,
                             scorekit::nn::Softplus, scorekit::nn::Dense<64, 2>>;
/// The seed paper's toy NCSN, named as torch_train.py's NoiseConditionalNet (l1, l2, l3).
using Ncsn = scorekit::nn::Sequential<scorekit::nn::ConditionalDense<2, 128, 10>, scorekit::nn::Softplus,
                                      scorekit::nn::ConditionalDense<128, 128, 10>, scorekit::nn::Softplus,
                                      scorekit::nn::Dense<128, 2>>;
const std::vector<std::string> ncsn_names = {"l1", "", "l2", "", "l3"};
constexpr int side = 8, embedding = 256;  // torch_image.py's EMBED

scorekit::nn::image::UNetSettings unet_settings() {
  scorekit::nn::image::UNetSettings u;
  u.channels = {8, 16};
  u.groups = 4;  // torch_image.py's GroupNorm(4, c)
  u.embedding = embedding;
  return u;
}

scorekit::ImageScoreSettings image_settings() {
  scorekit::ImageScoreSettings s;
  s.height = s.width = side;
  s.channels = 1;
  s.sigma_min = 0.01;
  s.sigma_max = 50;
  s.fourier_features = embedding;
  s.fourier_scale = 16;  // torch_image.py's GaussianFourier(EMBED, 16.0)
  return s;
}

scorekit::nn::image::RefineNetSettings refinenet_settings() {
  scorekit::nn::image::RefineNetSettings r;
  r.channels = {8, 16, 16, 16};
  r.features = 10;  // torch_image.py's LEVELS, one-hot
  return r;
}

/// NCSN's form: CIN++ of the level's one-hot, no division by sigma; the ladder from <dir>.
scorekit::ImageScoreSettings ladder_settings(const std::string& dir) {
  const auto ladder = scorekit::io::read_npy(dir + "/refinenet_ladder.npy").values<double>();
  scorekit::ImageScoreSettings s;
  s.height = s.width = side;
  s.channels = 1;
  s.level_sigmas = ladder;
  s.divide_by_sigma = false;
  return s;
}

/// Drawn weights, then each value moved by 0.05 sin(k): biases and GroupNorm's ones and zeros too.
Kokkos::View<double*, Mem> drawn(int n, const std::vector<scorekit::nn::Segment>& segments,
                                 std::uint64_t seed) {
  Kokkos::View<double*, Mem> p("p", std::size_t(n));
  scorekit::nn::initialize(p, segments.data(), int(segments.size()), scorekit::nn::Init::glorot_uniform,
                           seed);
  for (int k = 0; k < n; ++k) p(std::size_t(k)) += 0.05 * std::sin(double(k));
  return p;
}

void mlp_outputs(const Kokkos::View<double*, Mem>& p, const std::string& in, const std::string& out) {
  const auto x = scorekit::io::read_npy_rows<double, Mem>(in, 2);
  const scorekit::NeuralScore<Mlp, double, Mem> model(p);
  scorekit::ParticleView<double, Mem> y("y", x.extent(0), 2);
  std::vector<double> work(std::size_t(model.workspace_size()));
  for (std::size_t i = 0; i < x.extent(0); ++i) model.score(&x(i, 0), &y(i, 0), work.data());
  scorekit::io::write_npy(out, y);
}

/// The network's output at level i % 10 for row i of <dir>/mlp_x.npy (NoiseConditionalScore at the
/// level's sigma, which picks that level's embedding).
void ncsn_outputs(const Kokkos::View<double*, Mem>& p, const std::string& dir, const std::string& out) {
  const auto x = scorekit::io::read_npy_rows<double, Mem>(dir + "/mlp_x.npy", 2);
  const auto sigmas = scorekit::geometric_schedule(1.0, 0.01, 10);
  const scorekit::NoiseConditionalScore<Ncsn, double, Mem> model(p, sigmas);
  scorekit::ParticleView<double, Mem> y("y", x.extent(0), 2);
  std::vector<double> work(std::size_t(model.workspace_size()));
  for (std::size_t i = 0; i < x.extent(0); ++i) model.score(&x(i, 0), sigmas[i % 10], &y(i, 0), work.data());
  scorekit::io::write_npy(out, y);
}

void image_outputs(const scorekit::ImageScoreModel<double, Exec>& model, const std::string& dir,
                   const std::string& name, const std::string& out) {
  const auto x = scorekit::io::read_npy_rows<double, Mem>(dir + "/" + name + "_x.npy", side * side);
  const auto sigma = scorekit::io::read_npy_rows<double, Mem>(dir + "/" + name + "_sigma.npy", 1);
  Kokkos::View<double*, Mem> s("sigma", x.extent(0));
  for (std::size_t i = 0; i < x.extent(0); ++i) s(i) = sigma(i, 0);
  scorekit::BatchView<double, Mem> y("y", x.extent(0), x.extent(1));
  model.score(Exec(), x, s, y);
  scorekit::io::write_npy(out, y);
}

int run(const std::string& mode, const std::string& dir) {
  auto net = std::make_shared<scorekit::nn::image::Network<double, Exec>>(
      scorekit::nn::image::unet<double, Exec>(unet_settings()));
  const auto unet_tensors = net->parameter_tensors();
  auto refine = std::make_shared<scorekit::nn::image::Network<double, Exec>>(
      scorekit::nn::image::refinenet_lite<double, Exec>(refinenet_settings()));
  const auto refine_tensors = refine->parameter_tensors();
  if (mode == "export") {
    const auto p = drawn(Mlp::n_params, Mlp::segments(), 1);
    scorekit::io::save_parameters(dir + "/mlp.safetensors", Mlp::parameter_tensors(), p,
                                  {{"architecture", Mlp::name()}});
    mlp_outputs(p, dir + "/mlp_x.npy", dir + "/mlp_scorekit.npy");
    const auto n = drawn(Ncsn::n_params, Ncsn::segments(), 4);
    scorekit::io::save_parameters(dir + "/ncsn.safetensors", Ncsn::parameter_tensors(ncsn_names), n,
                                  {{"architecture", Ncsn::name()}});
    ncsn_outputs(n, dir, dir + "/ncsn_scorekit.npy");

    const auto q = drawn(net->n_params(), net->segments(), 2);
    const scorekit::ImageScoreModel<double, Exec> model(net, q, image_settings());
    scorekit::io::save_parameters(dir + "/unet.safetensors", unet_tensors, q,
                                  {{"architecture", "unet(8, 16)"}}, {{"fourier.w", model.frequencies()}});
    image_outputs(model, dir, "unet", dir + "/unet_scorekit.npy");

    const auto r = drawn(refine->n_params(), refine->segments(), 3);
    const scorekit::ImageScoreModel<double, Exec> ncsn(refine, r, ladder_settings(dir));
    scorekit::io::save_parameters(dir + "/refinenet.safetensors", refine_tensors, r,
                                  {{"architecture", "refinenet_lite(8, 16, 16, 16), 10 levels"}});
    image_outputs(ncsn, dir, "refinenet", dir + "/refinenet_scorekit.npy");
    return 0;
  }
  if (mode == "import") {
    Kokkos::View<double*, Mem> p("p", Mlp::n_params);
    scorekit::io::load_parameters(dir + "/mlp_torch.safetensors", Mlp::parameter_tensors(), p);
    mlp_outputs(p, dir + "/mlp_x.npy", dir + "/mlp_from_torch.npy");
    Kokkos::View<double*, Mem> n("n", Ncsn::n_params);
    scorekit::io::load_parameters(dir + "/ncsn_torch.safetensors", Ncsn::parameter_tensors(ncsn_names), n);
    ncsn_outputs(n, dir, dir + "/ncsn_from_torch.npy");
    // Sample the PyTorch-trained score with ULA from N(0, I).
    auto x = scorekit::make_particles<double>(Exec(), 4000, 2);
    scorekit::fill_normal(Exec(), x, 0.0, 1.0, 7);
    const scorekit::NeuralScore<Mlp, double, Mem> score(p);
    scorekit::ula(Exec(), score, x, {1e-2, 2000, 11});
    scorekit::io::write_npy(dir + "/mlp_samples.npy", x);

    Kokkos::View<double*, Mem> q("q", std::size_t(net->n_params()));
    std::map<std::string, std::vector<double>> buffers = {{"fourier.w", {}}};
    scorekit::io::load_parameters(dir + "/unet_torch.safetensors", unet_tensors, q, &buffers);
    scorekit::ImageScoreModel<double, Exec> model(net, q, image_settings());
    model.set_frequencies(buffers.at("fourier.w"));
    image_outputs(model, dir, "unet", dir + "/unet_from_torch.npy");

    Kokkos::View<double*, Mem> r("r", std::size_t(refine->n_params()));
    scorekit::io::load_parameters(dir + "/refinenet_torch.safetensors", refine_tensors, r);
    const scorekit::ImageScoreModel<double, Exec> ncsn(refine, r, ladder_settings(dir));
    image_outputs(ncsn, dir, "refinenet", dir + "/refinenet_from_torch.npy");
    return 0;
  }
  std::fprintf(stderr, "usage: safetensors_parity export|import <dir>\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  if (argc != 3) {
    std::fprintf(stderr, "usage: safetensors_parity export|import <dir>\n");
    return 2;
  }
  try {
    return run(argv[1], argv[2]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "safetensors_parity: %s\n", e.what());
    return 1;
  }
}
