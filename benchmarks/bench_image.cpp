// Image-scale score networks on the batched path, the workloads of benchmarks/torch_image.py: the
// score_sde-tutorial U-Net (nn/image/unet.hpp; channels 32/64/128, GroupNorm with 4 groups, 256 Fourier
// features of log sigma, output / sigma) on 28 x 28 x 1 float images:
//   unet_train_b128   one BatchTrainer step at batch 128: minibatch, continuous-time VE DSM (sigma 0.01
//                     -> 25), forward, backward, Adam, EMA
//   unet_score_b256   one score evaluation of a batch of 256 (ImageScoreModel::score)
//   unet_vjp_b256     one vector-Jacobian product on a batch of 256 (ImageScoreModel::vjp: the score and
//                     v^T ds/dx, what Hutchinson's divergence of a likelihood needs), no parameter gradient
//   unet_vjp_with_gradient_b256
//                     the same product computing the parameter gradient too and discarding it (as vjp did
//                     before Network::backward could skip it): what skipping saves
//   refinenet_train_b128, refinenet_score_b256
//                     the same for NCSN's RefineNet reduced (nn/image/refinenet.hpp, defaults: levels
//                     32/64/64/64, one residual block per level, CIN++ of the noise level's index) on
//                     NCSN's ladder of 10 levels from 1 to 0.01 (lambda = sigma^2, the output not divided:
//                     NCSN); the score at sigma = 1
//   conv_<layer>      each convolution of the U-Net alone at batch 128: forward, weight gradient and
//                     input adjoint (im2col + the BLAS' GEMMs), the share of the fp32 FMA peak the
//                     convolutions reach
// The data are 2,048 images uniform on [0, 1) (no download; Fashion-MNIST is the example's). FLOP are
// 2 multiply-adds of the convolutions only (Network::multiply_adds): a forward once, a training step
// three times (forward, input adjoint, weight gradient), less the first layer's unneeded input adjoint.
// Time: fenced wall time per iteration, after a warm-up.
// scorekit-requires: SCOREKIT_HAVE_KOKKOS_KERNELS
#include "benchmark_context.hpp"

#include <scorekit/nn/image/conv2d.hpp>
#include <scorekit/nn/image/refinenet.hpp>
#include <scorekit/nn/image/unet.hpp>
#include <scorekit/objective/batch_denoising.hpp>
#include <scorekit/score/image_score.hpp>
#include <scorekit/sde/variance_exploding.hpp>
#include <scorekit/train/batch_trainer.hpp>

#include <benchmark/benchmark.h>
#include <Kokkos_Core.hpp>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

namespace {

using namespace scorekit;
using namespace scorekit::nn::image;

constexpr int side = 28;

template <class Exec>
BatchView<float, typename Exec::memory_space> images(int n) {
  BatchView<float, typename Exec::memory_space> x("images", std::size_t(n), std::size_t(side * side));
  auto h = Kokkos::create_mirror_view(x);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < side * side; ++j)
      h(i, j) = CounterRng<float>(7, std::uint64_t(i), std::uint32_t(j), RngStream::user).uniform();
  Kokkos::deep_copy(x, h);
  return x;
}

ImageScoreSettings image_settings() {
  ImageScoreSettings s;
  s.height = s.width = side;
  s.channels = 1;
  s.fourier_features = UNetSettings().embedding;
  s.fourier_scale = 16;
  s.sigma_min = 0.01;
  s.sigma_max = 25;
  return s;
}

/// Times `units = call()` once a benchmark iteration, fenced on both sides; returns the units a second.
template <class Exec, class F>
double timed_rate(benchmark::State& state, F&& call) {
  long units = 0;
  double seconds = 0;
  for (auto _ : state) {
    Exec().fence();
    Kokkos::Timer timer;
    units += call();
    Exec().fence();
    const double s = timer.seconds();
    seconds += s;
    state.SetIterationTime(s);
  }
  return double(units) / seconds;
}

/// NCSN's ladder: 10 levels geometric from 1 to 0.01.
std::vector<double> ncsn_ladder() {
  std::vector<double> s(10);
  for (int l = 0; l < 10; ++l) s[std::size_t(l)] = std::pow(0.01, l / 9.0);
  return s;
}

ImageScoreSettings refinenet_image_settings() {
  ImageScoreSettings s;
  s.height = s.width = side;
  s.channels = 1;
  s.level_sigmas = ncsn_ladder();
  s.divide_by_sigma = false;
  return s;
}

/// Training steps of `net` on 2,048 images, `per_iteration` steps a timed iteration after `warm_up`.
/// FLOP: three passes of the convolutions less the first layer's input adjoint.
template <class Exec, class Draw>
void train_case(benchmark::State& state, std::shared_ptr<Network<float, Exec>> net,
                const ImageScoreSettings& image, const Draw& draw, int batch, long warm_up,
                long per_iteration, int chunks = 0) {
  const double mads = net->multiply_adds({batch, side, side, 1});
  const double first = Conv2d(1, 32, 3).multiply_adds({batch, side, side, 1});
  train::TrainSettings t;
  t.batch_size = batch;
  t.seed = 1;
  t.log = nullptr;
  t.adam.learning_rate = 1e-4;
  t.gradient_chunks = chunks;
  train::BatchTrainer<float, Exec, Draw> trainer(net, image, draw, t, 1);
  const auto x = images<Exec>(2048);
  const ConstBatchView<float, typename Exec::memory_space> data = x;
  trainer.train(data, warm_up);
  const double rate = timed_rate<Exec>(state, [&] { return long(trainer.train(data, per_iteration).steps); });
  state.counters["steps_per_s"] = benchmark::Counter(rate);
  state.counters["images_per_s"] = benchmark::Counter(rate * batch);
  state.counters["GFLOP/s"] = benchmark::Counter(rate * 2 * (3 * mads - first) * 1e-9);
  state.counters["FLOP_per_step"] = benchmark::Counter(2 * (3 * mads - first));
  state.counters["parameters"] = benchmark::Counter(net->n_params());
  state.counters["threads"] = benchmark::Counter(double(Exec().concurrency()));
}

/// Score evaluations of `net` (He-uniform weights) on a batch at sigma = 1.
template <class Exec>
void score_case(benchmark::State& state, std::shared_ptr<Network<float, Exec>> net,
                const ImageScoreSettings& image, int batch) {
  using Mem = typename Exec::memory_space;
  Kokkos::View<float*, Mem> p("params", std::size_t(net->n_params()));
  const auto segments = net->segments();
  nn::initialize(Exec(), p, segments.data(), int(segments.size()), nn::Init::he_uniform, 1);
  const ImageScoreModel<float, Exec> model(net, p, image);
  const auto x = images<Exec>(batch);
  BatchView<float, Mem> out("out", std::size_t(batch), std::size_t(side * side));
  Kokkos::View<float*, Mem> sigma("sigma", std::size_t(batch));
  Kokkos::deep_copy(sigma, 1.0f);
  const double mads = net->multiply_adds({batch, side, side, 1});
  model.score(Exec(), x, sigma, out);  // warm-up (allocates the network's buffers)
  const double rate = timed_rate<Exec>(state, [&] {
    model.score(Exec(), x, sigma, out);
    return 1L;
  });
  state.counters["evaluations_per_s"] = benchmark::Counter(rate);
  state.counters["images_per_s"] = benchmark::Counter(rate * batch);
  state.counters["GFLOP/s"] = benchmark::Counter(rate * 2 * mads * 1e-9);
  state.counters["parameters"] = benchmark::Counter(net->n_params());
  state.counters["threads"] = benchmark::Counter(double(Exec().concurrency()));
}

/// Vector-Jacobian products of `net` (He-uniform weights) on a batch at sigma = 1, with a random
/// direction; `with_gradient`: the network's backward also computes the (discarded) parameter gradient.
template <class Exec>
void vjp_case(benchmark::State& state, std::shared_ptr<Network<float, Exec>> net,
              const ImageScoreSettings& image, int batch, bool with_gradient) {
  using Mem = typename Exec::memory_space;
  Kokkos::View<float*, Mem> p("params", std::size_t(net->n_params())), g;
  if (with_gradient) g = Kokkos::View<float*, Mem>("gradient", std::size_t(net->n_params()));
  const auto segments = net->segments();
  nn::initialize(Exec(), p, segments.data(), int(segments.size()), nn::Init::he_uniform, 1);
  const ImageScoreModel<float, Exec> model(net, p, image);
  const auto x = images<Exec>(batch);
  const auto v = images<Exec>(batch);
  const std::size_t d = std::size_t(side * side);
  BatchView<float, Mem> s("s", std::size_t(batch), d), out("out", std::size_t(batch), d);
  Kokkos::View<float*, Mem> sigma("sigma", std::size_t(batch));
  Kokkos::deep_copy(sigma, 1.0f);
  const Tensor<float, Mem> dy(v.data(), std::size_t(batch) * d, 1), dx(out.data(), std::size_t(batch) * d, 1);
  auto call = [&] {
    if (with_gradient) {
      model.score(Exec(), x, sigma, s);  // the forward pass backward() needs
      net->backward(Exec(), p, dy, g, dx);
    } else {
      model.vjp(Exec(), x, sigma, v, s, out);
    }
  };
  const double mads = net->multiply_adds({batch, side, side, 1});
  call();  // warm-up (allocates the network's buffers)
  const double rate = timed_rate<Exec>(state, [&] {
    call();
    return 1L;
  });
  state.counters["evaluations_per_s"] = benchmark::Counter(rate);
  state.counters["GFLOP/s"] = benchmark::Counter(rate * 2 * (with_gradient ? 3 : 2) * mads * 1e-9);
  state.counters["FLOP_per_step"] = benchmark::Counter(2 * (with_gradient ? 3 : 2) * mads);
  state.counters["parameters"] = benchmark::Counter(net->n_params());
  state.counters["threads"] = benchmark::Counter(double(Exec().concurrency()));
}

template <class Exec>
void refinenet_train(benchmark::State& state, int batch) {
  using Draw = objective::SigmaLadder<float, typename Exec::memory_space>;
  train_case<Exec>(state,
                   std::make_shared<Network<float, Exec>>(refinenet_lite<float, Exec>(RefineNetSettings())),
                   refinenet_image_settings(), Draw(ncsn_ladder(), 2), batch, 1, 1);
}

template <class Exec>
void refinenet_score(benchmark::State& state, int batch) {
  score_case<Exec>(state,
                   std::make_shared<Network<float, Exec>>(refinenet_lite<float, Exec>(RefineNetSettings())),
                   refinenet_image_settings(), batch);
}

/// A training step of the U-Net, summed from `chunks` micro-batches (0: the whole batch at once).
template <class Exec>
void unet_train(benchmark::State& state, int batch, int chunks = 0) {
  using Draw = objective::ContinuousTime<VarianceExplodingSDE<float>>;
  train_case<Exec>(state, std::make_shared<Network<float, Exec>>(unet<float, Exec>(UNetSettings())),
                   image_settings(), Draw(VarianceExplodingSDE<float>(0.01f, 25.f)), batch, 2, 3, chunks);
}

template <class Exec>
void unet_score(benchmark::State& state, int batch) {
  score_case<Exec>(state, std::make_shared<Network<float, Exec>>(unet<float, Exec>(UNetSettings())),
                   image_settings(), batch);
}

template <class Exec>
void unet_vjp(benchmark::State& state, int batch, bool with_gradient) {
  vjp_case<Exec>(state, std::make_shared<Network<float, Exec>>(unet<float, Exec>(UNetSettings())),
                 image_settings(), batch, with_gradient);
}

/// One convolution of the U-Net at batch 128: forward, weight gradient and input adjoint.
template <class Exec>
void conv(benchmark::State& state, Conv2d layer, ImageShape in) {
  using Mem = typename Exec::memory_space;
  const ImageShape out = layer.output_shape(in);
  Kokkos::View<float*, Mem> p("p", std::size_t(layer.n_params())), g("g", std::size_t(layer.n_params()));
  Kokkos::deep_copy(p, 0.01f);
  Tensor<float, Mem> x("x", std::size_t(in.rows()), std::size_t(in.c)),
      y("y", std::size_t(out.rows()), std::size_t(out.c)),
      dx("dx", std::size_t(in.rows()), std::size_t(in.c));
  Kokkos::deep_copy(x, 0.5f);
  Kokkos::View<float*, Mem> work("work", layer.workspace_size(in));
  const Exec exec;
  const double rate = timed_rate<Exec>(state, [&] {
    layer.forward(exec, p, x, in, y, work);
    layer.backward(exec, p, x, in, y, g, dx, work);
    return 1L;
  });
  state.counters["GFLOP/s"] = benchmark::Counter(rate * 2 * 3 * layer.multiply_adds(in) * 1e-9);
  state.counters["threads"] = benchmark::Counter(double(Exec().concurrency()));
}

Conv2d conv3(int ci, int co, int stride, bool bias) {
  Conv2dOptions o;
  o.stride = stride;
  o.padding = 1;
  o.bias = bias;
  return Conv2d(ci, co, 3, o);
}

template <class Exec>
void register_workloads(const std::string& backend) {
  benchmark::RegisterBenchmark(("unet_train_b128/" + backend).c_str(),
                               [](benchmark::State& s) { unet_train<Exec>(s, 128); })
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  // The same step in micro-batches (what a data-parallel run shares out): 3 of 42-43 images, 4 of 32.
  for (int chunks : {3, 4})
    benchmark::RegisterBenchmark(("unet_train_b128_chunks" + std::to_string(chunks) + "/" + backend).c_str(),
                                 [chunks](benchmark::State& s) { unet_train<Exec>(s, 128, chunks); })
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark(("unet_score_b256/" + backend).c_str(),
                               [](benchmark::State& s) { unet_score<Exec>(s, 256); })
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  for (const bool with_gradient : {false, true})
    benchmark::RegisterBenchmark(
        (std::string(with_gradient ? "unet_vjp_with_gradient_b256/" : "unet_vjp_b256/") + backend).c_str(),
        [with_gradient](benchmark::State& s) { unet_vjp<Exec>(s, 256, with_gradient); })
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark(("refinenet_train_b128/" + backend).c_str(),
                               [](benchmark::State& s) { refinenet_train<Exec>(s, 128); })
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark(("refinenet_score_b256/" + backend).c_str(),
                               [](benchmark::State& s) { refinenet_score<Exec>(s, 256); })
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  struct Layer {
    const char* name;
    Conv2d layer;
    ImageShape in;
  };
  const std::vector<Layer> layers = {{"conv_enc0_1x32_28", conv3(1, 32, 1, false), {128, 28, 28, 1}},
                                     {"conv_enc1_32x64_s2", conv3(32, 64, 2, false), {128, 28, 28, 32}},
                                     {"conv_enc2_64x128_s2", conv3(64, 128, 2, false), {128, 14, 14, 64}},
                                     {"conv_dec1_128x64_14", conv3(128, 64, 1, false), {128, 14, 14, 128}},
                                     {"conv_dec0_128x32_28", conv3(128, 32, 1, false), {128, 28, 28, 128}},
                                     {"conv_out_64x1_28", conv3(64, 1, 1, true), {128, 28, 28, 64}}};
  for (const Layer& l : layers) {
    const Conv2d layer = l.layer;
    const ImageShape in = l.in;
    benchmark::RegisterBenchmark((std::string(l.name) + "/" + backend).c_str(),
                                 [layer, in](benchmark::State& s) { conv<Exec>(s, layer, in); })
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  benchmark::Initialize(&argc, argv);
  scorekit_bench::add_benchmark_context();
  scorekit_bench::for_each_backend([](auto backend, const char* name) {
    register_workloads<typename decltype(backend)::execution_space>(name);
  });
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  benchmark::ClearRegisteredBenchmarks();
  return 0;
}
