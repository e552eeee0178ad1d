// Fashion-MNIST end to end on the batched path, within a time budget:
//   1. a small convolutional classifier (nn/image/classifier.hpp), trained on the training images, its
//      test accuracy reported: the feature map of the sample-quality measures below;
//   2. a score network trained by denoising score matching for --minutes, with an EMA of its weights,
//      checkpoints every --checkpoint-minutes and --resume:
//        --recipe sde     score_sde's VE SDE (sigma_max from the data) with the tutorial's U-Net and
//                         continuous-time DSM; samples by predictor-corrector (reverse diffusion +
//                         Langevin corrector), and by the probability-flow ODE with Dormand-Prince (NFE
//                         reported); inpainting of the right and of the bottom half of test images;
//                         bits/dim of test images through the probability-flow ODE (Hutchinson with a
//                         Rademacher probe, uniform dequantisation), mean and standard error;
//                         class-conditional samples by classifier guidance with a noise-conditional
//                         classifier (trained on noised images, told their level), at several scales;
//        --recipe ladder  the seed paper's question at image scale: U-Nets trained on geometric ladders of
//                         L = 1, 2, 5, 10, 20 levels (the budget split in five), each sampled by annealed
//                         Langevin with NCSN's step rule, their Frechet distances in one table;
//        --recipe ncsnv2  NCSNv2: the ladder from ncsnv2_configure (sigma_1 from the data, the ratio and
//                         step rules), RefineNet-lite with its output divided by sigma, multi-sigma DSM;
//                         samples by annealed Langevin with the final denoising step;
//   3. sample quality without downloads: the Frechet distance between the Gaussian fits of the
//      classifier's penultimate features of the samples and of the test images (not FID: other features),
//      beside the same distance for training images (the floor at that sample count), blurred test
//      images and uniform noise (for scale); the classifier's class histogram of the samples; and a
//      memorisation check (the share of samples whose nearest training image is closer than a third of
//      the second nearest, beside the same share for test images).
// Writes PNG grids (samples, inpaintings beside their originals, a trajectory strip through the noise
// levels) and results.md to --output. Options: --help.
#include <scorekit/io/fashion_mnist.hpp>
#include <scorekit/io/png.hpp>
#include <scorekit/scorekit.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace scorekit;
using Exec = Kokkos::DefaultExecutionSpace;
using Mem = Exec::memory_space;
using Rows = Kokkos::View<float**, Kokkos::LayoutRight, Mem>;
using HostRows = Kokkos::View<float**, Kokkos::LayoutRight, Kokkos::HostSpace>;
using Labels = Kokkos::View<int*, Mem>;
using Clock = std::chrono::steady_clock;
namespace img = scorekit::nn::image;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Options {
  std::string output = "out/fashion_mnist";
  std::string data_dir = io::fashion_mnist_debian_dir();
  std::string recipe = "sde";
  double minutes = 60;
  long steps = 0;  // > 0: exactly this many training steps instead of the budget (tests, reproduction)
  double checkpoint_minutes = 5;
  long classifier_steps = 4000;
  long guide_steps = 3000;  // the noise-conditional classifier of guidance (sde; 0: no guided samples)
  int guided = 10;          // guided samples per class and scale
  std::vector<double> guidance_scales = {0, 1, 4};
  int size = 28;
  int samples = 10000;
  int ode_samples = 1000;
  int likelihood = 1000;
  int pc_steps = 500;
  int batch = 128;
  int sample_batch = 500;
  double learning_rate = 2e-4;
  bool resume = false;
  bool likelihood_weighting = false;  // sde: weight the DSM loss by g(t)^2 (score_sde's, for bits/dim)
  std::uint64_t seed = 1;
};

[[noreturn]] void usage(int code) {
  std::printf(
      "usage: fashion_mnist [options]\n"
      "  --recipe sde|ncsnv2|ladder  VE SDE + U-Net (default), NCSNv2 + RefineNet-lite, or the number of\n"
      "                           noise levels L = 1, 2, 5, 10, 20 against quality (--minutes split in 5)\n"
      "  --minutes M              training budget of the score network (default 60)\n"
      "  --checkpoint-minutes M   minutes between checkpoints (default 5)\n"
      "  --steps N                train exactly N steps (in all, counting resumed ones) instead of "
      "--minutes\n"
      "  --resume                 continue from <output>/<recipe>.ckpt (and reuse classifier.ckpt)\n"
      "  --size 28|14             full images or 2 x 2 average-pooled ones (default 28)\n"
      "  --samples N              samples for the quality measures (default 10000)\n"
      "  --ode-samples N          probability-flow ODE samples (sde; default 1000)\n"
      "  --likelihood N           test images for bits/dim (sde; default 1000; 0: skip)\n"
      "  --likelihood-weighting   train with lambda(t) = g(t)^2, score_sde's likelihood weighting, in\n"
      "                           place of the marginal variance (sde)\n"
      "  --pc-steps N             predictor-corrector steps (sde; default 500)\n"
      "  --classifier-steps N     classifier training steps of 128 images (default 4000)\n"
      "  --guide-steps N          steps of the noise-conditional classifier for classifier guidance (sde;\n"
      "                           default 3000; 0: no guided samples)\n"
      "  --guided N               guided samples per class and scale (default 10)\n"
      "  --guidance-scales W,...  guidance scales w (default 0,1,4; 0 is unguided, for comparison)\n"
      "  --batch N                score-network batch (default 128)\n"
      "  --sample-batch N         images per sampling call (default 500)\n"
      "  --learning-rate R        Adam's rate for the score network (default 2e-4)\n"
      "  --seed S                 (default 1)\n"
      "  --data DIR               the four Fashion-MNIST files (default %s)\n"
      "  --output DIR             (default out/fashion_mnist)\n",
      io::fashion_mnist_debian_dir().c_str());
  std::exit(code);
}

Options parse(int argc, char* argv[]) {
  Options o;
  auto value = [&](int& i) -> std::string {
    if (i + 1 >= argc) {
      std::fprintf(stderr, "fashion_mnist: %s needs a value (try --help)\n", argv[i]);
      std::exit(2);
    }
    return argv[++i];
  };
  auto number = [&](int& i) {
    const std::string flag = argv[i], v = value(i);
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    if (end == v.c_str() || *end != '\0' || !std::isfinite(x)) {
      std::fprintf(stderr, "fashion_mnist: %s takes a number, got '%s'\n", flag.c_str(), v.c_str());
      std::exit(2);
    }
    return x;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--recipe")
      o.recipe = value(i);
    else if (a == "--minutes")
      o.minutes = number(i);
    else if (a == "--checkpoint-minutes")
      o.checkpoint_minutes = number(i);
    else if (a == "--steps")
      o.steps = long(number(i));
    else if (a == "--resume")
      o.resume = true;
    else if (a == "--likelihood-weighting")
      o.likelihood_weighting = true;
    else if (a == "--size")
      o.size = int(number(i));
    else if (a == "--samples")
      o.samples = int(number(i));
    else if (a == "--ode-samples")
      o.ode_samples = int(number(i));
    else if (a == "--likelihood")
      o.likelihood = int(number(i));
    else if (a == "--pc-steps")
      o.pc_steps = int(number(i));
    else if (a == "--classifier-steps")
      o.classifier_steps = long(number(i));
    else if (a == "--guide-steps")
      o.guide_steps = long(number(i));
    else if (a == "--guided")
      o.guided = int(number(i));
    else if (a == "--guidance-scales") {
      const std::string v = value(i);
      o.guidance_scales.clear();
      std::stringstream list(v);
      for (std::string item; std::getline(list, item, ',');) {
        char* end = nullptr;
        const double w = std::strtod(item.c_str(), &end);
        if (end == item.c_str() || *end != '\0' || !(w >= 0) || !std::isfinite(w)) {
          std::fprintf(stderr,
                       "fashion_mnist: --guidance-scales takes numbers >= 0 separated by commas, got '%s'\n",
                       v.c_str());
          std::exit(2);
        }
        o.guidance_scales.push_back(w);
      }
    } else if (a == "--batch")
      o.batch = int(number(i));
    else if (a == "--sample-batch")
      o.sample_batch = int(number(i));
    else if (a == "--learning-rate")
      o.learning_rate = number(i);
    else if (a == "--seed")
      o.seed = std::uint64_t(number(i));
    else if (a == "--data")
      o.data_dir = value(i);
    else if (a == "--output")
      o.output = value(i);
    else if (a == "--help")
      usage(0);
    else if (a.rfind("--kokkos", 0) != 0) {
      std::fprintf(stderr, "fashion_mnist: unknown argument %s (try --help)\n", a.c_str());
      std::exit(2);
    }
  }
  std::string bad;
  if (o.recipe != "sde" && o.recipe != "ncsnv2" && o.recipe != "ladder")
    bad = "--recipe must be sde, ncsnv2 or ladder";
  else if (o.size != 28 && o.size != 14)
    bad = "--size must be 28 or 14";
  else if (!(o.minutes > 0))
    bad = "--minutes must be positive";
  else if (o.steps < 0)
    bad = "--steps must be >= 0";
  else if (!(o.checkpoint_minutes > 0))
    bad = "--checkpoint-minutes must be positive";
  else if (o.samples < 16 || o.ode_samples < 0 || o.likelihood < 0)
    bad = "--samples must be >= 16, --ode-samples and --likelihood >= 0";
  else if (o.pc_steps < 1 || o.classifier_steps < 0 || o.batch < 1 || o.sample_batch < 1)
    bad = "--pc-steps, --batch and --sample-batch must be >= 1, --classifier-steps >= 0";
  else if (o.guide_steps < 0 || o.guided < 1 || o.guidance_scales.empty())
    bad = "--guide-steps must be >= 0, --guided >= 1, and --guidance-scales must name at least one scale";
  else if (!(o.learning_rate > 0))
    bad = "--learning-rate must be positive";
  else if (o.likelihood_weighting && o.recipe != "sde")
    bad = "--likelihood-weighting applies to --recipe sde only";
  if (!bad.empty()) {
    std::fprintf(stderr, "fashion_mnist: %s\n", bad.c_str());
    std::exit(2);
  }
  return o;
}

/// Rows of a host view copied to the default memory space.
Rows to_device(const HostRows& h, const char* name) {
  Rows d(std::string(name), h.extent(0), h.extent(1));
  Kokkos::deep_copy(d, h);
  return d;
}

Labels labels_of(const io::LabelledImages& data, int count) {
  Labels d("labels", std::size_t(count));
  const auto h = Kokkos::create_mirror_view(d);
  for (int i = 0; i < count; ++i) h(i) = data.labels[std::size_t(i)];
  Kokkos::deep_copy(d, h);
  return d;
}

/// Images as 8-bit values: clamped to [0, 1] and rounded to k / 255, what a saved image holds.
Rows quantised(const Rows& x) {
  Rows q("quantised", x.extent(0), x.extent(1));
  Kokkos::parallel_for(
      "quantise", Kokkos::MDRangePolicy<Exec, Kokkos::Rank<2>>({0, 0}, {int(x.extent(0)), int(x.extent(1))}),
      KOKKOS_LAMBDA(const int i, const int j) {
        const float v = x(i, j) < 0.f ? 0.f : x(i, j) > 1.f ? 1.f : x(i, j);
        q(i, j) = float(int(v * 255.f + 0.5f)) / 255.f;  // v >= 0: rounds to nearest
      });
  return q;
}

/// A grid of images (rows x cols panels of side x side pixels, a 1-pixel gap), each pixel scaled by
/// `scale`, values clamped to [0, 1].
void write_grid(const std::string& path, const std::vector<std::vector<const float*>>& panels, int side,
                int scale = 2) {
  const int rows = int(panels.size()), cols = rows ? int(panels[0].size()) : 0;
  const int cell = side * scale + 1, width = cols * cell + 1, height = rows * cell + 1;
  std::vector<std::uint8_t> px(std::size_t(width) * std::size_t(height), 255);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      const float* p = panels[std::size_t(r)][std::size_t(c)];
      if (!p) continue;
      for (int y = 0; y < side * scale; ++y)
        for (int x = 0; x < side * scale; ++x) {
          const float v = std::min(1.f, std::max(0.f, p[(y / scale) * side + x / scale]));
          // Fashion-MNIST is light garments on black; drawn as it is.
          px[std::size_t(r * cell + 1 + y) * std::size_t(width) + std::size_t(c * cell + 1 + x)] =
              std::uint8_t(std::lround(v * 255));
        }
    }
  io::write_png(path, width, height, px);
}

std::vector<std::vector<const float*>> grid_of(const HostRows& h, int rows, int cols) {
  std::vector<std::vector<const float*>> g(static_cast<std::size_t>(rows),
                                           std::vector<const float*>(static_cast<std::size_t>(cols)));
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      const std::size_t i = std::size_t(r * cols + c);
      g[std::size_t(r)][std::size_t(c)] = i < h.extent(0) ? &h(i, 0) : nullptr;
    }
  return g;
}

/// Box blur (3 x 3, zero padding renormalised) applied twice: blurred images for scale.
Rows blurred(const Rows& x, int side) {
  Rows a("blur", x.extent(0), x.extent(1)), b("blur2", x.extent(0), x.extent(1));
  auto pass = [&](const Rows& in, const Rows& out) {
    Kokkos::parallel_for(
        "blur", Kokkos::RangePolicy<Exec>(0, int(x.extent(0))), KOKKOS_LAMBDA(const int i) {
          for (int y = 0; y < side; ++y)
            for (int xx = 0; xx < side; ++xx) {
              float s = 0;
              int n = 0;
              for (int dy = -1; dy <= 1; ++dy)
                for (int dx = -1; dx <= 1; ++dx) {
                  const int yy = y + dy, xs = xx + dx;
                  if (yy >= 0 && yy < side && xs >= 0 && xs < side) {
                    s += in(i, yy * side + xs);
                    ++n;
                  }
                }
              out(i, y * side + xx) = s / float(n);
            }
        });
  };
  pass(x, a);
  pass(a, b);
  return b;
}

/// Per row of x: the distances to its nearest and second-nearest row of `reference` (squared
/// distances through one GEMM per chunk: |x|^2 + |r|^2 - 2 x.r).
std::vector<std::pair<double, double>> two_nearest(const Rows& x, const Rows& reference) {
  const int n = int(x.extent(0)), m = int(reference.extent(0)), d = int(x.extent(1));
  Kokkos::View<float*, Mem> rn("reference_norms", std::size_t(m));
  Kokkos::parallel_for(
      "norms", Kokkos::RangePolicy<Exec>(0, m), KOKKOS_LAMBDA(const int j) {
        float s = 0;
        for (int k = 0; k < d; ++k) s += reference(j, k) * reference(j, k);
        rn(j) = s;
      });
  std::vector<std::pair<double, double>> out(static_cast<std::size_t>(n));
  const int chunk = 256;
  Rows dots("dots", std::size_t(chunk), std::size_t(m));
  Kokkos::View<float* [2], Mem> best("best", std::size_t(chunk));
  for (int first = 0; first < n; first += chunk) {
    const int c = std::min(chunk, n - first);
    const auto xs = Kokkos::subview(x, std::make_pair(first, first + c), Kokkos::ALL());
    const auto ds = Kokkos::subview(dots, std::make_pair(0, c), Kokkos::ALL());
    blas::gemm(Exec(), "N", "T", 1.f, xs, reference, 0.f, ds);
    Kokkos::parallel_for(
        "two_nearest", Kokkos::RangePolicy<Exec>(0, c), KOKKOS_LAMBDA(const int i) {
          float xn = 0;
          for (int k = 0; k < d; ++k) xn += xs(i, k) * xs(i, k);
          float b0 = 3.4e38f, b1 = 3.4e38f;
          for (int j = 0; j < m; ++j) {
            const float e = xn + rn(j) - 2 * ds(i, j);
            const float q = e > 0.f ? e : 0.f;
            if (q < b0) {
              b1 = b0;
              b0 = q;
            } else if (q < b1) {
              b1 = q;
            }
          }
          best(i, 0) = scorekit::math::sqrt(b0);
          best(i, 1) = scorekit::math::sqrt(b1);
        });
    const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), best);
    for (int i = 0; i < c; ++i) out[std::size_t(first + i)] = {h(i, 0), h(i, 1)};
  }
  return out;
}

double memorised_share(const std::vector<std::pair<double, double>>& nn) {
  std::size_t k = 0;
  for (const auto& p : nn) k += p.first < p.second / 3 ? 1 : 0;
  return double(k) / double(nn.size());
}

struct Quality {
  int n = 0;
  double frechet = 0;
  std::vector<int> histogram;
  double memorised = 0;
  double seconds = 0;  // sampling time
  double nfe = 0;      // score evaluations per sample
};

struct Context {
  Options o;
  int side = 28, dim = 784;
  Rows train, test;
  Labels train_labels, test_labels;
  std::unique_ptr<train::ClassifierTrainer<float, Exec>> classifier;
  GaussianFit test_fit;
  std::ostringstream results;
};

/// The class each row of logits names (its largest entry).
std::vector<int> predicted_classes(const img::Tensor<float, Mem>& logits) {
  const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), logits);
  std::vector<int> out(h.extent(0));
  for (std::size_t i = 0; i < h.extent(0); ++i) {
    int arg = 0;
    for (int j = 1; j < int(h.extent(1)); ++j)
      if (h(i, j) > h(i, arg)) arg = j;
    out[i] = arg;
  }
  return out;
}

/// The classifier's penultimate features of images already rounded to 8 bits (quantised()), and with
/// `histogram` the count of each predicted class.
Rows features_of_quantised(const Context& c, const Rows& q, std::vector<int>* histogram = nullptr) {
  img::Tensor<float, Mem> logits("logits", q.extent(0), 10),
      feats("features", q.extent(0), std::size_t(c.classifier->feature_size()));
  c.classifier->evaluate(q, logits, feats);
  if (histogram) {
    histogram->assign(10, 0);
    for (int k : predicted_classes(logits)) ++(*histogram)[std::size_t(k)];
  }
  return feats;
}

Rows features_of(const Context& c, const Rows& x, std::vector<int>* histogram = nullptr) {
  return features_of_quantised(c, quantised(x), histogram);
}

Quality measure(Context& c, const Rows& samples) {
  Quality q;
  q.n = int(samples.extent(0));
  const Rows q8 = quantised(samples);
  q.frechet = frechet_distance(gaussian_fit(features_of_quantised(c, q8, &q.histogram)), c.test_fit);
  q.memorised = memorised_share(two_nearest(q8, c.train));
  return q;
}

int classes_present(const std::vector<int>& h) {
  return int(std::count_if(h.begin(), h.end(), [](int v) { return v > 0; }));
}

/// The entropy of a class histogram as a share of log(number of classes) (1: all equally often).
double entropy_share(const std::vector<int>& h) {
  double total = 0, entropy = 0;
  for (int v : h) total += v;
  for (int v : h)
    if (v > 0) entropy -= v / total * std::log(v / total);
  return entropy / std::log(double(h.size()));
}

std::string histogram_text(const std::vector<int>& h) {
  std::string s;
  for (int k = 0; k < 10; ++k) s += (k ? " " : "") + std::to_string(h[std::size_t(k)]);
  const auto [lo, hi] = std::minmax_element(h.begin(), h.end());
  char buf[160];
  std::snprintf(buf, sizeof buf, " (classes present: %d of 10; largest/smallest %s; entropy %.3f of log 10)",
                classes_present(h), *lo > 0 ? std::to_string(double(*hi) / *lo).substr(0, 5).c_str() : "inf",
                entropy_share(h));
  return s + buf;
}

void report_row(Context& c, const std::string& name, const Quality& q) {
  char line[512];
  std::snprintf(line, sizeof line, "| %s | %d | %.2f | %.2f%% | %.0f | %.1f |\n", name.c_str(), q.n,
                q.frechet, 100 * q.memorised, q.nfe, q.seconds);
  c.results << line;
  std::printf("%s", line);
  std::fflush(stdout);
}

// ---------------------------------------------------------------------------------------------------
// The classifier.

/// Trains `t` to `steps` steps in rounds of 500, with a checkpoint at `path` after each (and, with
/// --resume, from it first).
void train_to(const Context& c, train::ClassifierTrainer<float, Exec>& t, long steps, const std::string& path,
              const char* name) {
  const auto start = Clock::now();
  if (c.o.resume && std::filesystem::exists(path)) {
    t.load(path);
    std::printf("%s: loaded %s (step %ld)\n", name, path.c_str(), t.step());
  }
  while (t.step() < steps) {
    const long n = std::min(500L, steps - t.step());
    const auto r = t.train(c.train, c.train_labels, n);
    std::printf("%s: step %ld, loss %.4f, train accuracy %.3f, %.0f s\n", name, t.step(), r.loss, r.accuracy,
                seconds_since(start));
    std::fflush(stdout);
    t.save(path);
  }
}

void train_classifier(Context& c) {
  train::ClassifierTrainSettings t;
  t.batch_size = 128;
  t.seed = c.o.seed;
  t.adam.learning_rate = 1e-3;
  c.classifier = std::make_unique<train::ClassifierTrainer<float, Exec>>(img::ClassifierSettings{}, c.side,
                                                                         c.side, t, c.o.seed);
  const auto start = Clock::now();
  train_to(c, *c.classifier, c.o.classifier_steps, c.o.output + "/classifier.ckpt", "classifier");
  const auto acc = c.classifier->accuracy(c.test, c.test_labels);
  std::printf("classifier: %d parameters, test accuracy %.4f (cross-entropy %.4f) after %ld steps, %.0f s\n",
              c.classifier->network().n_params(), acc.accuracy, acc.loss, c.classifier->step(),
              seconds_since(start));
  c.results << "Classifier (nn/image/classifier.hpp, " << c.classifier->network().n_params()
            << " parameters, " << c.classifier->step() << " steps of 128): test accuracy " << acc.accuracy
            << " on " << c.test.extent(0) << " test images.\n\n";
}

// ---------------------------------------------------------------------------------------------------
// Training within the budget.

/// The tutorial's U-Net for the images' side (two stride-2 levels need a side divisible by 4, 28; 14 x 14
/// takes two levels) and its score settings (Fourier features of log sigma, output / sigma).
std::pair<std::shared_ptr<img::Network<float, Exec>>, ImageScoreSettings> unet_score_net(const Context& c) {
  img::UNetSettings u;
  u.channels = c.side == 28 ? std::vector<int>{32, 64, 128} : std::vector<int>{32, 64};
  ImageScoreSettings image;
  image.height = image.width = c.side;
  image.channels = 1;
  image.fourier_features = u.embedding;
  return {std::make_shared<img::Network<float, Exec>>(img::unet<float, Exec>(u)), image};
}

train::TrainSettings score_train_settings(const Context& c) {
  train::TrainSettings t;
  t.batch_size = c.o.batch;
  t.seed = c.o.seed;
  t.adam.learning_rate = c.o.learning_rate;
  t.ema_rate = 0.999;
  return t;
}

template <class Trainer>
void train_within_budget(Context& c, Trainer& trainer, const std::string& path, double minutes) {
  if (c.o.resume && std::filesystem::exists(path)) {
    trainer.load(path);  // refuses a checkpoint of another network or run, naming both
    std::printf("score network: resumed %s at step %ld\n", path.c_str(), trainer.step());
  }
  const auto start = Clock::now();
  if (c.o.steps > 0) {  // a fixed number of steps: the same weights on every run
    while (trainer.step() < c.o.steps) {
      const train::TrainReport r = trainer.train(c.train, std::min(100L, c.o.steps - trainer.step()));
      std::printf("score network: step %ld, loss %.4g, %.1f s\n", trainer.step(), r.final_loss,
                  seconds_since(start));
    }
    trainer.save(path);
    return;
  }
  const double budget = minutes * 60;
  // One step first: it tells the rate, and whether the budget holds a single step.
  trainer.train(c.train, 1);
  const double first = seconds_since(start);
  if (first > budget)
    throw invalid_argument(scorekit::detail::concat("--minutes ", minutes,
                                                    " is too small: one training step took ", first, " s (",
                                                    first / 60, " minutes) on this machine"));
  auto last_checkpoint = Clock::now();
  double rate = 1 / first;
  while (true) {
    const double left = budget - seconds_since(start);
    const double to_checkpoint = c.o.checkpoint_minutes * 60 - seconds_since(last_checkpoint);
    if (left <= 0) break;
    // At least one step a round: a network slower than a step a second must not stop at a checkpoint.
    const long steps =
        std::max(1L, long(std::min(left, std::max(1.0, std::min(to_checkpoint, 60.0))) * rate));
    const auto t0 = Clock::now();
    const train::TrainReport r = trainer.train(c.train, steps);
    rate = double(steps) / seconds_since(t0);
    const double elapsed = seconds_since(start);
    std::printf("score network: step %ld, loss %.4g, %.2f steps/s, %.1f of %.1f minutes, ETA %.1f minutes\n",
                trainer.step(), r.final_loss, rate, elapsed / 60, minutes,
                std::max(0.0, budget - elapsed) / 60);
    std::fflush(stdout);
    if (seconds_since(last_checkpoint) >= c.o.checkpoint_minutes * 60) {
      trainer.save(path);
      last_checkpoint = Clock::now();
    }
  }
  trainer.save(path);
  std::printf("score network: %ld steps in %.1f minutes; checkpoint %s\n", trainer.step(),
              seconds_since(start) / 60, path.c_str());
}

/// A progress line between chunks of a long loop (10,000 samples or 1,000 likelihoods take an hour or
/// more on 2 cores): `done` of `n` after the seconds since `start`, and the ETA at that rate.
void print_progress(const char* what, int done, int n, Clock::time_point start) {
  const double elapsed = seconds_since(start);
  std::printf("%s: %d of %d, %.0f s, ETA %.1f minutes\n", what, done, n, elapsed,
              elapsed / done * (n - done) / 60);
  std::fflush(stdout);
}

/// Runs `sampler(x, seed)` on chunks of at most sample_batch rows of an n x D view.
template <class Sampler>
Rows sample_in_chunks(const Context& c, int n, Sampler sampler, double& seconds, double& evaluations) {
  Rows x("samples", std::size_t(n), std::size_t(c.dim));
  const auto start = Clock::now();
  evaluations = 0;
  for (int first = 0, k = 0; first < n; first += c.o.sample_batch, ++k) {
    const int m = std::min(c.o.sample_batch, n - first);
    Rows xs("chunk", std::size_t(m), std::size_t(c.dim));
    evaluations += sampler(xs, c.o.seed * 1000003 + std::uint64_t(k));
    Kokkos::deep_copy(Kokkos::subview(x, std::make_pair(first, first + m), Kokkos::ALL()), xs);
    if (first + m < n) print_progress("sampling", first + m, n, start);
  }
  seconds = seconds_since(start);
  evaluations /= n;
  return x;
}

void write_samples_grid(const Context& c, const Rows& x, const std::string& name) {
  const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x);
  write_grid(c.o.output + "/" + name, grid_of(h, 8, 8), c.side, c.side == 14 ? 4 : 2);
}

// ---------------------------------------------------------------------------------------------------
// Score SDE (VE) with the U-Net.

/// Class-conditional samples by classifier guidance (guidance/classifier_guidance.hpp): a noise-conditional
/// classifier trained on the training images noised at the levels the sampler visits, and told the level;
/// then --guided samples of each class at each guidance scale, by the predictor-corrector sampler with
/// s(x, sigma) + w grad_x log p_sigma(y | x). The quality classifier (trained on clean images, never used
/// for guidance) says which class each sample shows.
template <class Model, class Integrator>
void run_guided(Context& c, const VarianceExplodingSDE<float>& sde, const Model& model,
                const Integrator& pc) {
  const double t_end = 1e-3;  // the sampler's last time, as for the unguided samples
  train::ClassifierTrainSettings t;
  t.batch_size = 128;
  t.seed = c.o.seed + 11;
  t.adam.learning_rate = 1e-3;
  t.noise_min = sde.marginal(float(t_end)).std;  // the lowest level the sampler asks about
  t.noise_max = sde.marginal(sde.t_max()).std;
  img::ClassifierSettings g;
  g.embedding = 128;
  g.fourier_seed = c.o.seed + 12;
  train::ClassifierTrainer<float, Exec> guide(g, c.side, c.side, t, c.o.seed + 13);
  const auto start = Clock::now();
  train_to(c, guide, c.o.guide_steps, c.o.output + "/guide_classifier.ckpt", "guidance classifier");
  // Its accuracy on noised test images at a few levels (the first 2,000 test images).
  const auto test =
      Kokkos::subview(c.test, std::make_pair(0, std::min(2000, int(c.test.extent(0)))), Kokkos::ALL());
  const auto test_labels = Kokkos::subview(c.test_labels, std::make_pair(0, int(test.extent(0))));
  std::ostringstream levels;
  for (double sigma : {t.noise_min, 0.1, 0.5, 2.0, 10.0, t.noise_max})
    if (sigma >= t.noise_min && sigma <= t.noise_max) {
      const auto r = guide.accuracy(test, test_labels, sigma, c.o.seed + 14);
      char item[80];
      std::snprintf(item, sizeof item, "%s%.3f at sigma %.3g", levels.tellp() > 0 ? ", " : "", r.accuracy,
                    sigma);
      levels << item;
    }
  char line[700];
  std::snprintf(
      line, sizeof line,
      "\nClassifier guidance: a noise-conditional classifier (%d parameters, 128 Fourier features of log "
      "sigma, trained %ld steps of 128 on levels %.4g to %.4g, %.0f s). Test accuracy on %d noised test "
      "images: %s.\n\n",
      guide.network().n_params(), guide.step(), t.noise_min, t.noise_max, seconds_since(start),
      int(test.extent(0)), levels.str().c_str());
  c.results << line;
  std::printf("%s", line);

  const int per = c.o.guided, n = 10 * per;
  Labels asked("asked", std::size_t(n));
  const auto asked_h = Kokkos::create_mirror_view(asked);
  for (int i = 0; i < n; ++i) asked_h(i) = i / per;
  Kokkos::deep_copy(asked, asked_h);
  const auto classifier = guide.guide();
  c.results << "| guidance scale w | samples | named as asked (quality classifier) | seconds |\n| --- | --- "
               "| --- | --- |\n";
  for (std::size_t k = 0; k < c.o.guidance_scales.size(); ++k) {
    const double w = c.o.guidance_scales[k];
    const auto t0 = Clock::now();
    Rows x("guided", std::size_t(n), std::size_t(c.dim));
    fill_normal(Exec(), x, 0.0f, float(sde.prior_std()), c.o.seed + 200 + k);
    IntegrateSettings s;
    s.times = uniform_times(sde.t_max(), t_end, c.o.pc_steps);
    s.seed = c.o.seed + 300 + k;
    s.remove_last_noise = true;
    integrate(Exec(), reverse_sde(sde, classifier_guided(model, classifier, asked, float(w))), pc, x, s);
    const double seconds = seconds_since(t0);
    img::Tensor<float, Mem> logits("logits", std::size_t(n), 10);
    c.classifier->evaluate(quantised(x), logits);
    const std::vector<int> named = predicted_classes(logits);
    int right = 0;
    for (int i = 0; i < n; ++i) right += named[std::size_t(i)] == i / per ? 1 : 0;
    std::snprintf(line, sizeof line, "| %g | %d | %d (%.1f%%) | %.0f |\n", w, n, right, 100.0 * right / n,
                  seconds);
    c.results << line;
    std::printf("%s", line);
    std::fflush(stdout);
    // A row per class, at most 10 samples a row.
    const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x);
    std::vector<std::vector<const float*>> grid(10);
    for (int cls = 0; cls < 10; ++cls)
      for (int j = 0; j < std::min(per, 10); ++j) grid[std::size_t(cls)].push_back(&h(cls * per + j, 0));
    char name[64];
    std::snprintf(name, sizeof name, "/sde_guided_w%g.png", w);
    write_grid(c.o.output + name, grid, c.side, c.side == 14 ? 4 : 2);
  }
  c.results
      << "\nRows of the guided grids are the classes asked for, T-shirt/top to ankle boot; at w = 0 the rows "
         "are unguided samples, so about 10% are named as asked by chance.\n\n";
}

void run_sde(Context& c) {
  const auto start_config = Clock::now();
  // score_sde's technique 1 for VE: sigma_max from the largest pairwise distance, over the first
  // 10,000 training images (all 60,000 would take minutes and move it by little).
  const auto subset = Kokkos::subview(c.train, std::make_pair(0, 10000), Kokkos::ALL());
  const double sigma_max = largest_pairwise_distance(Exec(), subset);
  const VarianceExplodingSDE<float> sde(0.01f, float(sigma_max));
  std::printf(
      "VE SDE: sigma_min 0.01, sigma_max %.3f (largest pairwise distance of 10,000 training images, "
      "%.1f s)\n",
      sigma_max, seconds_since(start_config));
  const auto [net, image] = unet_score_net(c);
  using Draw = objective::ContinuousTime<VarianceExplodingSDE<float>>;
  // The weighting is part of the trainer's signature: a checkpoint trained with the other is refused.
  train::BatchTrainer<float, Exec, Draw> trainer(net, image, Draw(sde, 1e-5, c.o.likelihood_weighting),
                                                 score_train_settings(c), c.o.seed);
  std::printf("score network: U-Net %d parameters, %s\n", net->n_params(), trainer.signature().c_str());
  train_within_budget(c, trainer, c.o.output + "/sde.ckpt", c.o.minutes);
  auto model = trainer.model();
  model.set_parameters(trainer.ema_parameters());
  c.results << "Score network: U-Net (" << net->n_params() << " parameters), VE SDE sigma 0.01 -> "
            << sigma_max << ", continuous-time DSM"
            << (c.o.likelihood_weighting ? " (likelihood weighting, g(t)^2)" : "") << ", " << trainer.step()
            << " steps of " << c.o.batch << " images, Adam " << c.o.learning_rate << ", EMA 0.999.\n\n";

  const auto pc = predictor_corrector(ReverseDiffusion{}, LangevinCorrector(0.16));
  auto pc_sampler = [&](const Rows& xs, std::uint64_t seed) {
    fill_normal(Exec(), xs, 0.0f, float(sde.prior_std()), seed);
    IntegrateSettings s;
    s.times = uniform_times(sde.t_max(), 1e-3, c.o.pc_steps);
    s.seed = seed + 1;
    s.remove_last_noise = true;
    return double(integrate(Exec(), reverse_sde(sde, model), pc, xs, s).n_score_evaluations);
  };
  c.results
      << "| samples | n | Frechet distance (classifier features) | memorised | NFE per sample | seconds |\n"
         "| --- | --- | --- | --- | --- | --- |\n";
  Quality q;
  std::string histogram;
  const Rows x = sample_in_chunks(c, c.o.samples, pc_sampler, q.seconds, q.nfe);
  {
    Quality m = measure(c, x);
    m.seconds = q.seconds;
    m.nfe = q.nfe;
    write_samples_grid(c, x, "sde_pc_samples.png");
    report_row(c, "predictor-corrector (" + std::to_string(c.o.pc_steps) + " steps, snr 0.16)", m);
    histogram = histogram_text(m.histogram);
  }
  if (c.o.ode_samples > 0) {
    Quality m;
    double seconds = 0, nfe = 0;
    auto ode_sampler = [&](const Rows& xs, std::uint64_t seed) {
      fill_normal(Exec(), xs, 0.0f, float(sde.prior_std()), seed);
      return double(solve_ode(Exec(), probability_flow(sde, model), xs, sde.t_max(), 1e-3, {1e-5, 1e-5})
                        .n_function_evaluations);
    };
    const Rows xo = sample_in_chunks(c, c.o.ode_samples, ode_sampler, seconds, nfe);
    m = measure(c, xo);
    m.seconds = seconds;
    m.nfe = nfe;
    write_samples_grid(c, xo, "sde_ode_samples.png");
    report_row(c, "probability-flow ODE (Dormand-Prince, rtol = atol = 1e-5)", m);
  }
  c.results << "\nClass histogram of the predictor-corrector samples: " << histogram << "\n";

  // A trajectory strip: 8 samples through the noise levels (11 snapshots).
  {
    Rows xs("trajectory", 8, std::size_t(c.dim));
    fill_normal(Exec(), xs, 0.0f, float(sde.prior_std()), c.o.seed + 77);
    IntegrateSettings s;
    s.times = uniform_times(sde.t_max(), 1e-3, c.o.pc_steps);
    s.seed = c.o.seed + 78;
    s.remove_last_noise = true;
    s.record_every = std::max(1, c.o.pc_steps / 10);
    const auto r = integrate(Exec(), reverse_sde(sde, model), pc, xs, s);
    const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), r.trajectory);
    const int records = int(h.extent(0));
    std::vector<std::vector<const float*>> g(8, std::vector<const float*>(std::size_t(records)));
    for (int p = 0; p < 8; ++p)
      for (int k = 0; k < records; ++k) g[std::size_t(p)][std::size_t(k)] = &h(k, p, 0);
    write_grid(c.o.output + "/sde_trajectory.png", g, c.side, c.side == 14 ? 4 : 2);
  }

  // Inpainting: the right half and the bottom half of 8 test images (the first of 8 classes), 3 draws each.
  {
    const int shown = 8, draws = 3, n = shown * draws;
    std::vector<int> pick;
    const auto labels = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), c.test_labels);
    for (int cls = 0; cls < 10 && int(pick.size()) < shown; cls += 1)
      for (int i = 0; i < int(labels.extent(0)); ++i)
        if (labels(i) == cls) {
          pick.push_back(i);
          break;
        }
    const auto test_h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), c.test);
    HostRows obs("observations", std::size_t(n), std::size_t(c.dim));
    for (int k = 0; k < n; ++k)
      for (int j = 0; j < c.dim; ++j) obs(k, j) = test_h(pick[std::size_t(k / draws)], j);
    std::vector<HostRows> results;
    std::vector<HostRows> masked;
    std::vector<double> mse;
    std::vector<int> correct;
    for (int half = 0; half < 2; ++half) {  // 0: right half unknown; 1: bottom half unknown
      Kokkos::View<unsigned char**, Kokkos::LayoutRight, Kokkos::HostSpace> mask("mask", 1,
                                                                                 std::size_t(c.dim));
      for (int y = 0; y < c.side; ++y)
        for (int xx = 0; xx < c.side; ++xx) mask(0, y * c.side + xx) = (half == 0 ? xx : y) < c.side / 2;
      const auto r = MaskReplacement<float, Mem>(mask, obs);
      Rows xs("inpainting", std::size_t(n), std::size_t(c.dim));
      fill_normal(Exec(), xs, 0.0f, float(sde.prior_std()), c.o.seed + 90 + std::uint64_t(half));
      IntegrateSettings s;
      s.times = uniform_times(sde.t_max(), 1e-3, c.o.pc_steps);
      s.seed = c.o.seed + 92 + std::uint64_t(half);
      s.remove_last_noise = true;
      integrate_guided(Exec(), reverse_sde(sde, model), replacement_integrator(pc, r), xs, s);
      results.push_back(Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), xs));
      HostRows mk("masked", std::size_t(shown), std::size_t(c.dim));
      for (int k = 0; k < shown; ++k)
        for (int j = 0; j < c.dim; ++j) mk(k, j) = mask(0, j) ? test_h(pick[std::size_t(k)], j) : 0.5f;
      masked.push_back(mk);
      // The error of the unknown half against the original, and whether the classifier still names the
      // original's class.
      double e = 0;
      const HostRows& rh = results.back();
      for (int k = 0; k < n; ++k)
        for (int j = 0; j < c.dim; ++j)
          if (!mask(0, j)) {
            const double dv =
                std::min(1.f, std::max(0.f, rh(k, j))) - test_h(pick[std::size_t(k / draws)], j);
            e += dv * dv;
          }
      mse.push_back(e / (double(n) * c.dim / 2));
      img::Tensor<float, Mem> logits("logits", std::size_t(n), 10);
      c.classifier->evaluate(quantised(xs), logits);
      const std::vector<int> named = predicted_classes(logits);
      int ok = 0;
      for (int k = 0; k < n; ++k) ok += named[std::size_t(k)] == labels(pick[std::size_t(k / draws)]) ? 1 : 0;
      correct.push_back(ok);
    }
    std::vector<std::vector<const float*>> g(static_cast<std::size_t>(shown));
    for (int k = 0; k < shown; ++k) {
      g[std::size_t(k)].push_back(&test_h(pick[std::size_t(k)], 0));
      for (int half = 0; half < 2; ++half) {
        g[std::size_t(k)].push_back(&masked[std::size_t(half)](k, 0));
        for (int dd = 0; dd < draws; ++dd)
          g[std::size_t(k)].push_back(&results[std::size_t(half)](k * draws + dd, 0));
      }
    }
    write_grid(c.o.output + "/sde_inpainting.png", g, c.side, c.side == 14 ? 4 : 2);
    char line[400];
    std::snprintf(
        line, sizeof line,
        "\nInpainting (replacement, %d predictor-corrector steps; 8 test images x 3 draws): mean squared "
        "error of the unknown half %.4f (right) and %.4f (bottom); the classifier names the original's "
        "class for %d and %d of %d.\n\n",
        c.o.pc_steps, mse[0], mse[1], correct[0], correct[1], n);
    c.results << line;
    std::printf("%s", line);
  }

  if (c.o.guide_steps > 0) run_guided(c, sde, model, pc);

  // Bits per dimension of test images (dequantised), through the probability-flow ODE.
  if (c.o.likelihood > 0) {
    const io::LabelledImages test = io::load_fashion_mnist(io::FashionMnistSplit::test, c.o.data_dir);
    const int n = std::min(c.o.likelihood, test.n);
    const Rows x =
        to_device(io::images_to_rows<float>(test, io::PixelScaling{true, c.o.seed, 0}, c.side == 14, 0, n),
                  "dequantised");
    Kokkos::View<double*, Mem> log_p("log_p", std::size_t(n));
    const auto start = Clock::now();
    double nfe = 0;
    for (int first = 0; first < n; first += c.o.sample_batch) {
      const int m = std::min(c.o.sample_batch, n - first);
      Rows xs("chunk", std::size_t(m), std::size_t(c.dim));
      Kokkos::deep_copy(xs, Kokkos::subview(x, std::make_pair(first, first + m), Kokkos::ALL()));
      LikelihoodSettings<Hutchinson<RademacherProbe>> ls;
      ls.t_eps = 1e-5;
      ls.ode = {1e-5, 1e-5};
      ls.estimator = Hutchinson<RademacherProbe>(1);
      ls.seed = c.o.seed + std::uint64_t(first);
      const auto r = log_likelihood(Exec(), sde, model, xs, ls);
      nfe += double(r.n_function_evaluations);
      const auto lp = r.log_p;
      Kokkos::parallel_for(
          "copy", Kokkos::RangePolicy<Exec>(0, m),
          KOKKOS_LAMBDA(const int i) { log_p(first + i) = double(lp(i)); });
      if (first + m < n) print_progress("likelihood", first + m, n, start);
    }
    const BitsPerDimension b = mean_bits_per_dimension(log_p, c.dim);
    char line[400];
    std::snprintf(
        line, sizeof line,
        "Bits/dim of %d dequantised test images%s: %.4f +- %.4f (standard error; probability-flow ODE, "
        "Dormand-Prince rtol = atol = 1e-5, Hutchinson with one Rademacher probe, t_eps 1e-5; %.0f "
        "evaluations per image, %.0f s).\n\n",
        n, c.side == 14 ? " (pooled to 14 x 14 after dequantisation)" : "", b.mean, b.standard_error, nfe / n,
        seconds_since(start));
    c.results << line;
    std::printf("%s", line);
  }
}

// ---------------------------------------------------------------------------------------------------
// NCSNv2 with RefineNet-lite.

void run_ncsnv2(Context& c) {
  const auto subset = Kokkos::subview(c.train, std::make_pair(0, 10000), Kokkos::ALL());
  const NoiseConfiguration cfg = ncsnv2_configure(Exec(), subset, 0.01, 5);
  std::printf("NCSNv2: sigma_1 %.3f (10,000 training images), ratio %.4f, L = %d levels, eps %.3g, T = 5\n",
              cfg.sigma_first, cfg.ratio, cfg.n_levels, cfg.step_size);
  img::RefineNetSettings r;
  r.conditioning = img::RefineNetConditioning::none;
  auto net = std::make_shared<img::Network<float, Exec>>(img::refinenet_lite<float, Exec>(r));
  ImageScoreSettings image;
  image.height = image.width = c.side;
  image.channels = 1;
  image.divide_by_sigma = true;
  using Draw = objective::SigmaLadder<float, Mem>;
  train::BatchTrainer<float, Exec, Draw> trainer(net, image, Draw(cfg.sigmas, 2), score_train_settings(c),
                                                 c.o.seed);
  std::printf("score network: RefineNet-lite %d parameters, %s\n", net->n_params(),
              trainer.signature().c_str());
  train_within_budget(c, trainer, c.o.output + "/ncsnv2.ckpt", c.o.minutes);
  auto model = trainer.model();
  model.set_parameters(trainer.ema_parameters());
  c.results << "Score network: RefineNet-lite (" << net->n_params()
            << " parameters, output / sigma), NCSNv2 ladder " << cfg.sigma_first << " -> 0.01 in "
            << cfg.n_levels << " levels, DSM, " << trainer.step() << " steps of " << c.o.batch
            << " images, Adam " << c.o.learning_rate << ", EMA 0.999.\n\n";
  AnnealedLangevinSettings<float> a;
  for (double s : cfg.sigmas) a.sigmas.push_back(float(s));
  a.step_size = float(cfg.annealed_langevin_step_size());
  a.steps_per_level = cfg.steps_per_level;
  a.final_denoise = true;
  auto sampler = [&](const Rows& xs, std::uint64_t seed) {
    fill_uniform(Exec(), xs, 0.0f, 1.0f, seed);
    a.seed = seed + 1;
    return double(annealed_langevin(Exec(), model, xs, a).n_score_evaluations);
  };
  c.results
      << "| samples | n | Frechet distance (classifier features) | memorised | NFE per sample | seconds |\n"
         "| --- | --- | --- | --- | --- | --- |\n";
  double seconds = 0, nfe = 0;
  const Rows x = sample_in_chunks(c, c.o.samples, sampler, seconds, nfe);
  Quality m = measure(c, x);
  m.seconds = seconds;
  m.nfe = nfe;
  write_samples_grid(c, x, "ncsnv2_samples.png");
  report_row(c, "annealed Langevin (T = 5, final denoising)", m);
  c.results << "\nClass histogram of the samples: " << histogram_text(m.histogram) << "\n\n";
}

// ---------------------------------------------------------------------------------------------------
// The seed paper's question at image scale: the number of noise levels L against sample quality.

void run_ladder(Context& c) {
  const auto subset = Kokkos::subview(c.train, std::make_pair(0, 10000), Kokkos::ALL());
  const double sigma_first = largest_pairwise_distance(Exec(), subset);
  const double minutes_each = c.o.minutes / 5;
  std::printf("noise levels: sigma_1 %.3f -> sigma_L 0.01, L = 1, 2, 5, 10, 20, %.1f training minutes each\n",
              sigma_first, minutes_each);
  c.results << "Each L: the U-Net (Fourier features of log sigma, output / sigma) trained by DSM on the "
               "geometric ladder sigma_1 = "
            << sigma_first << " -> 0.01 in L levels (L = 1: 0.01 alone) for " << minutes_each
            << " minutes; annealed Langevin from uniform noise with NCSN's rule (T = 100 steps a level, step "
               "2e-5 sigma_i^2 / sigma_L^2) and the final denoising step.\n\n"
               "| L | training steps | Frechet distance | classes present | histogram entropy / log 10 | NFE "
               "per sample |\n| --- | --- | --- | --- | --- | --- |\n";
  for (int levels : {1, 2, 5, 10, 20}) {
    std::vector<double> sigmas =
        levels == 1 ? std::vector<double>{0.01} : geometric_schedule(sigma_first, 0.01, levels);
    const auto [net, image] = unet_score_net(c);
    using Draw = objective::SigmaLadder<float, Mem>;
    train::BatchTrainer<float, Exec, Draw> trainer(net, image, Draw(sigmas, 2), score_train_settings(c),
                                                   c.o.seed);
    train_within_budget(c, trainer, c.o.output + "/ladder_L" + std::to_string(levels) + ".ckpt",
                        minutes_each);
    auto model = trainer.model();
    model.set_parameters(trainer.ema_parameters());
    AnnealedLangevinSettings<float> a;
    for (double s : sigmas) a.sigmas.push_back(float(s));
    a.step_size = 2e-5f;
    a.steps_per_level = 100;
    a.final_denoise = true;
    auto sampler = [&](const Rows& xs, std::uint64_t seed) {
      fill_uniform(Exec(), xs, 0.0f, 1.0f, seed);
      a.seed = seed + 1;
      return double(annealed_langevin(Exec(), model, xs, a).n_score_evaluations);
    };
    double seconds = 0, nfe = 0;
    const Rows x = sample_in_chunks(c, c.o.samples, sampler, seconds, nfe);
    std::vector<int> hist;
    const double fd = frechet_distance(gaussian_fit(features_of(c, x, &hist)), c.test_fit);
    write_samples_grid(c, x, "ladder_L" + std::to_string(levels) + ".png");
    char line[300];
    std::snprintf(line, sizeof line, "| %d | %ld | %.2f | %d | %.3f | %.0f |\n", levels, trainer.step(), fd,
                  classes_present(hist), entropy_share(hist), nfe);
    c.results << line;
    std::printf("%s", line);
    std::fflush(stdout);
  }
  c.results << "\n";
}

void run(Context& c) {
  std::filesystem::create_directories(c.o.output);
  const auto start = Clock::now();
  const bool pool = c.o.size == 14;
  c.side = c.o.size;
  c.dim = c.side * c.side;
  const io::LabelledImages train = io::load_fashion_mnist(io::FashionMnistSplit::train, c.o.data_dir);
  const io::LabelledImages test = io::load_fashion_mnist(io::FashionMnistSplit::test, c.o.data_dir);
  c.train = to_device(io::images_to_rows<float>(train, {}, pool), "train");
  c.test = to_device(io::images_to_rows<float>(test, {}, pool), "test");
  c.train_labels = labels_of(train, train.n);
  c.test_labels = labels_of(test, test.n);
  std::printf("Fashion-MNIST: %d training and %d test images, %d x %d (%.1f s)\n", train.n, test.n, c.side,
              c.side, seconds_since(start));
  c.results << "# Fashion-MNIST, recipe " << c.o.recipe << ", " << c.side << " x " << c.side << ", seed "
            << c.o.seed << "\n\n";
  train_classifier(c);
  c.test_fit = gaussian_fit(features_of(c, c.test));

  if (c.o.recipe == "sde")
    run_sde(c);
  else if (c.o.recipe == "ncsnv2")
    run_ncsnv2(c);
  else
    run_ladder(c);

  // The scale of the Frechet distance: training images (the floor at the same count), blurred test
  // images, uniform noise.
  const int n = std::min(c.o.samples, int(c.train.extent(0)));
  const auto train_n = Kokkos::subview(c.train, std::make_pair(0, n), Kokkos::ALL());
  Rows train_copy("train_copy", std::size_t(n), std::size_t(c.dim));
  Kokkos::deep_copy(train_copy, train_n);
  Rows noise("noise", std::size_t(n), std::size_t(c.dim));
  fill_uniform(Exec(), noise, 0.0f, 1.0f, c.o.seed + 5);
  const Rows blur = blurred(c.test, c.side);
  const double fd_train = frechet_distance(gaussian_fit(features_of(c, train_copy)), c.test_fit);
  const double fd_blur = frechet_distance(gaussian_fit(features_of(c, blur)), c.test_fit);
  const double fd_noise = frechet_distance(gaussian_fit(features_of(c, noise)), c.test_fit);
  const double test_memorised = memorised_share(two_nearest(c.test, c.train));
  char line[600];
  std::snprintf(
      line, sizeof line,
      "For scale, the Frechet distance to the test images' features from %d training images (the floor): "
      "%.2f; from the test images blurred (3 x 3 box, twice): %.2f; from uniform noise: %.2f. Test images "
      "whose nearest training image is closer than a third of the second nearest: %.2f%%.\n\nTotal time "
      "%.1f minutes.\n",
      n, fd_train, fd_blur, fd_noise, 100 * test_memorised, seconds_since(start) / 60);
  c.results << line;
  std::printf("%s", line);
  const std::string text = c.results.str();
  scorekit::detail::AtomicFile file(c.o.output + "/results.md", "fashion_mnist");
  file.write(text.data(), text.size());
  file.commit();
  std::printf("wrote %s/results.md and the PNG grids\n", c.o.output.c_str());
}

}  // namespace

int main(int argc, char* argv[]) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress lines appear as they are written, also in a file
  const Options o = parse(argc, argv);
  Kokkos::ScopeGuard guard(argc, argv);
  try {
    Context c;
    c.o = o;
    run(c);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fashion_mnist: %s\n", e.what());
    return 1;
  }
  return 0;
}
