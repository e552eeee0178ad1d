// The seed paper's toy experiments (its appendices B-D) with scorekit's training stack:
//   1. the 2-128-128-2 softplus network trained by ISM (exact trace), SSM (one Gaussian probe) and DSM
//      (sigma^2 = 1 and 0.2) on 10,000 points of three data sets (two-mode mixtures with weights
//      0.5/0.5 and 0.2/0.8, and a banana), each measured by the Fisher divergence to the TRUE score on
//      the data and on a uniform grid over the plot window (which covers the low-density regions);
//   2. the noise-conditional network trained by the NCSN objective over 10 geometric levels 1 -> 0.01,
//      its Fisher divergence at each level against the exact perturbed score; and the same network over
//      the ladder 20 -> 1, whose largest noise is comparable to the distance between the modes;
//   3. annealed Langevin with that learned score recovering the 0.2/0.8 weights from a uniform start
//      (Song and Ermon 2019, section 3.2.2), where Langevin at the smallest level alone keeps about the
//      start's split, and where the 1 -> 0.01 ladder, whose largest noise cannot bridge the modes, fails.
// Prints tables and writes <output>/score_matching_errors.png and <output>/score_matching_samples.png.
//
//   score_matching_toy --output out [--steps N] [--ncsn-steps N] [--particles N]
#include "support/plot.hpp"

#include <scorekit/scorekit.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace {

using Exec = Kokkos::DefaultExecutionSpace;
using Mem = Exec::memory_space;
using Host = Kokkos::HostSpace;
using Points = Kokkos::View<float**, Kokkos::LayoutRight, Mem>;

using namespace scorekit::nn;
namespace obj = scorekit::objective;

/// The seed paper's toy score network, s(x) = y(x).
using Net = Sequential<Dense<2, 128>, Softplus, Dense<128, 128>, Softplus, Dense<128, 2>>;
/// Its noise-conditional form: the hidden layers are scaled by a learned embedding of the level.
using NoiseNet = Sequential<ConditionalDense<2, 128, 10>, Softplus, ConditionalDense<128, 128, 10>, Softplus,
                            Dense<128, 2>>;

struct Options {
  std::string output = "out";
  long steps = 10000;       // each single-level objective on each data set
  long ncsn_steps = 20000;  // each noise-conditional network
  int particles = 4000;     // each sampling run
};

Options parse(int argc, char* argv[]) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--output" && i + 1 < argc)
      o.output = argv[++i];
    else if (a == "--steps" && i + 1 < argc)
      o.steps = std::atol(argv[++i]);
    else if (a == "--ncsn-steps" && i + 1 < argc)
      o.ncsn_steps = std::atol(argv[++i]);
    else if (a == "--particles" && i + 1 < argc)
      o.particles = std::atoi(argv[++i]);
    else if (a == "--help") {
      std::printf(
          "usage: score_matching_toy [--output DIR] [--steps N] [--ncsn-steps N] [--particles N]\n"
          "  --steps N       training steps of each single-level objective on each data set (default 10000)\n"
          "  --ncsn-steps N  training steps of each noise-conditional network (default 20000)\n"
          "  --particles N   particles of each sampling run (default 4000)\n");
      std::exit(0);
    } else if (a.rfind("--kokkos", 0) != 0) {
      std::fprintf(stderr, "unknown argument %s (try --help)\n", a.c_str());
      std::exit(2);
    }
  }
  if (o.steps < 1 || o.ncsn_steps < 1 || o.particles < 100) {
    std::fprintf(stderr, "--steps and --ncsn-steps must be at least 1, --particles at least 100\n");
    std::exit(2);
  }
  return o;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// A data set: what the networks train on, the true score to measure them against, and the plot window.
template <class Density>
struct Dataset {
  std::string name;
  Density density;                            // in Mem, float: the reference score
  std::function<double(double, double)> pdf;  // on the host, for the figure
  scorekit_examples::Extent box;
  Points data;
};

/// Cell centres of an nx x ny grid over the box, row j (from the bottom) after row j - 1.
Points grid_points(const scorekit_examples::Extent& box, int nx, int ny) {
  Points g("grid", std::size_t(nx) * ny, 2);
  auto h = Kokkos::create_mirror_view(g);
  for (int j = 0; j < ny; ++j)
    for (int i = 0; i < nx; ++i) {
      h(std::size_t(j) * nx + i, 0) = float(box.x0 + (i + 0.5) * (box.x1 - box.x0) / nx);
      h(std::size_t(j) * nx + i, 1) = float(box.y0 + (j + 0.5) * (box.y1 - box.y0) / ny);
    }
  Kokkos::deep_copy(g, h);
  return g;
}

/// ||s_model(x) - s_reference(x)||^2 at every point (for the heatmaps; the table's numbers come from
/// scorekit::fisher_divergence on the same points).
template <class Model, class Reference>
std::vector<double> squared_errors(const Model& model, const Reference& reference, const Points& x) {
  const std::int64_t n = std::int64_t(x.extent(0));
  const int wm = scorekit::workspace_size(model), wr = scorekit::workspace_size(reference);
  Kokkos::View<float**, Kokkos::LayoutRight, Mem> scratch("scratch", n, 4 + wm + wr);
  Kokkos::View<float*, Mem> out("squared errors", n);
  Kokkos::parallel_for(
      "score_matching_toy::squared_errors", Kokkos::RangePolicy<Exec>(0, n),
      KOKKOS_LAMBDA(const std::int64_t i) {
        float* a = &scratch(i, 0);
        float* b = a + 2;
        scorekit::score(model, &x(i, 0), a, b + 2);
        scorekit::score(reference, &x(i, 0), b, b + 2 + wm);
        out(i) = (a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1]);
      });
  auto h = Kokkos::create_mirror_view_and_copy(Host(), out);
  return std::vector<double>(h.data(), h.data() + n);
}

std::vector<double> column(const Points& x, int j, std::size_t max_points = 0) {
  auto h = scorekit::to_host(x);
  std::size_t n = h.extent(0);
  if (max_points > 0) n = std::min(n, max_points);
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = double(h(i, std::size_t(j)));
  return v;
}

struct Row {
  std::string dataset, objective;
  long steps = 0;
  double seconds = 0, final_loss = 0;
  scorekit::FisherDivergence on_data, on_grid;
  // DSM: the Fisher divergence of the exact perturbed score to the clean one, what a perfect fit scores.
  bool has_floor = false;
  scorekit::FisherDivergence floor_data, floor_grid;
};

/// A noise-conditional score model held at one sigma, as a Density-like score field (so that
/// scorekit::fisher_divergence can compare it with a clean score).
template <class Model>
struct AtNoiseLevel {
  using value_type = typename Model::value_type;
  Model model;
  value_type sigma;
  KOKKOS_INLINE_FUNCTION int dim() const { return model.dim(); }
  KOKKOS_INLINE_FUNCTION int workspace_size() const {
    const int w = scorekit::workspace_size(model);
    return w > 1 ? w : 1;  // std::max is host-only under nvcc
  }
  KOKKOS_INLINE_FUNCTION void score(const value_type* x, value_type* out, value_type* work) const {
    scorekit::noise_conditional_score(model, x, sigma, out, work);
  }
};

/// The exact score of each data set perturbed by N(0, sigma^2 I): closed form for the mixtures,
/// Gauss-Hermite quadrature for the banana.
scorekit::PerturbedMixtureScore<float, Mem> perturbed_score(const scorekit::GaussianMixture<float, Mem>& m) {
  return scorekit::PerturbedMixtureScore<float, Mem>(m);
}
scorekit::PerturbedBananaScore<float, Mem> perturbed_score(const scorekit::Banana<float>& b) {
  return scorekit::PerturbedBananaScore<float, Mem>(b);
}

constexpr int grid_n = 100;  // grid_n x grid_n points over the window

/// Trains the network on one data set with one objective; appends the table row; returns the squared
/// error of the EMA weights' score on the grid.
/// dsm_sigma > 0: the objective is DSM at that sigma, and the row gets its floor.
template <class Objective, class Density>
std::vector<double> train_and_measure(const Dataset<Density>& set, const std::string& label,
                                      Objective objective, long steps, std::uint64_t seed, const Points& grid,
                                      std::vector<Row>& rows, double dsm_sigma = 0) {
  scorekit::train::TrainSettings settings;  // batch 128, Adam lr 1e-3, EMA 0.999
  settings.seed = seed;
  settings.log_every = int(std::max(1L, steps / 10));  // the reported loss: mean over the last 10% of steps
  settings.log = nullptr;
  scorekit::train::Trainer<Net, Objective, Exec, float> trainer(objective, settings, seed + 1000);
  const auto report = trainer.train(set.data, steps);
  const scorekit::NeuralScore<Net, float, Mem> model(trainer.ema_parameters());
  Row r;
  r.dataset = set.name;
  r.objective = label;
  r.steps = report.steps;
  r.seconds = report.seconds;
  r.final_loss = report.levels.at(0).mean;
  r.on_data = scorekit::fisher_divergence(Exec(), model, set.density, set.data);
  r.on_grid = scorekit::fisher_divergence(Exec(), model, set.density, grid);
  if (dsm_sigma > 0) {
    using Exact = decltype(perturbed_score(set.density));
    const AtNoiseLevel<Exact> exact{perturbed_score(set.density), float(dsm_sigma)};
    r.has_floor = true;
    r.floor_data = scorekit::fisher_divergence(Exec(), exact, set.density, set.data);
    r.floor_grid = scorekit::fisher_divergence(Exec(), exact, set.density, grid);
  }
  rows.push_back(r);
  std::printf("  %-18s %-12s %6ld steps %6.1f s  Fisher on data %.3g, on the grid %.3g\n", set.name.c_str(),
              label.c_str(), r.steps, r.seconds, r.on_data.value, r.on_grid.value);
  std::fflush(stdout);
  return squared_errors(model, set.density, grid);
}

void print_table(const std::vector<Row>& rows) {
  std::printf("\n%-16s %-11s %6s %6s %8s %20s %7s %20s %7s %19s\n", "dataset", "objective", "steps", "time s",
              "loss", "Fisher data (SE)", "rel", "Fisher grid (SE)", "rel", "DSM floor data grid");
  for (const Row& r : rows) {
    char floor[40] = "";
    if (r.has_floor)
      std::snprintf(floor, sizeof floor, "%8.3g %8.3g", r.floor_data.value, r.floor_grid.value);
    std::printf("%-16s %-11s %6ld %6.1f %8.4g %9.3g (%8.2g) %7.4f %9.3g (%8.2g) %7.4f %19s\n",
                r.dataset.c_str(), r.objective.c_str(), r.steps, r.seconds, r.final_loss, r.on_data.value,
                r.on_data.standard_error, r.on_data.relative(), r.on_grid.value, r.on_grid.standard_error,
                r.on_grid.relative(), floor);
  }
  std::printf(
      "\nFisher = mean ||s_theta(x) - grad log p(x)||^2 against the TRUE (clean) score, on the 10,000\n"
      "training points and on a %d x %d grid over the plot window; rel = Fisher / mean ||grad log p||^2\n"
      "(the zero field scores 1). loss = the objective's mean over the last 10%% of steps. DSM learns the\n"
      "score of the data perturbed by N(0, sigma^2 I), not of the clean data, so, as in the paper, its\n"
      "Fisher divergence to the clean score includes that bias: 'DSM floor' is the Fisher divergence of\n"
      "the EXACT perturbed score (on the data, then on the grid), what a perfect DSM fit would score.\n",
      grid_n, grid_n);
}

Eigen::MatrixXd two_means() {
  Eigen::MatrixXd means(2, 2);
  means << 0, 0, 10, 10;
  return means;
}

template <class Real, class Space>
scorekit::GaussianMixture<Real, Space> two_modes(double w0) {
  return scorekit::GaussianMixture<Real, Space>::isotropic(Eigen::Vector2d(w0, 1 - w0), two_means(),
                                                           Eigen::Vector2d(1, 1));
}

template <class Density>
Dataset<Density> make_dataset(const std::string& name, const Density& density,
                              std::function<double(double, double)> pdf, scorekit_examples::Extent box,
                              std::uint64_t seed) {
  Dataset<Density> set{name, density, std::move(pdf), box, Points("data", 10000, 2)};
  scorekit::draw_exact(Exec(), density, set.data, seed);
  return set;
}

/// Trains the noise-conditional network by the NCSN objective (lambda = sigma^2) over `sigmas`.
struct NoiseConditionalRun {
  std::vector<double> sigmas;
  Kokkos::View<const float*, Mem> params;
  long steps = 0;
  double seconds = 0, loss = 0;
};

NoiseConditionalRun train_noise_conditional(const Points& data, const std::vector<double>& sigmas, long steps,
                                            std::uint64_t seed) {
  using Objective = obj::DenoisingScoreMatching<float, Mem>;  // SigmaSquared, LevelConditioned
  scorekit::train::TrainSettings settings;
  settings.seed = seed;
  settings.log_every = int(std::max(1L, steps / 10));
  settings.log = nullptr;
  scorekit::train::Trainer<NoiseNet, Objective, Exec, float> trainer(Objective(sigmas), settings,
                                                                     seed + 1000);
  const auto report = trainer.train(data, steps);
  double sum = 0, count = 0;
  for (const auto& l : report.levels) {
    sum += l.mean * l.count;
    count += l.count;
  }
  NoiseConditionalRun run{sigmas, trainer.ema_parameters(), report.steps, report.seconds, sum / count};
  return run;
}

/// Fisher divergence of a noise-conditional model at each of its levels against the exact perturbed
/// score, on fresh points of each perturbed law.
void print_levels(const char* what, const NoiseConditionalRun& run,
                  const scorekit::GaussianMixture<float, Mem>& mixture, const Points& grid) {
  const scorekit::NoiseConditionalScore<NoiseNet, float, Mem> model(run.params, run.sigmas);
  const scorekit::PerturbedMixtureScore<float, Mem> exact(
      mixture, std::vector<float>(run.sigmas.begin(), run.sigmas.end()));
  std::printf("\nNoise-conditional network, %s: %ld steps in %.1f s, loss %.4g (last 10%% of steps)\n", what,
              run.steps, run.seconds, run.loss);
  std::printf("%10s %12s %10s %10s %14s %10s %10s\n", "sigma", "Fisher", "(SE)", "relative", "on the grid",
              "(SE)", "relative");
  for (std::size_t l = 0; l < run.sigmas.size(); ++l) {
    const float sigma = float(run.sigmas[l]);
    Points x("perturbed points", 4000, 2);
    scorekit::draw_exact(Exec(), mixture.perturbed(1.0f, sigma), x, 500 + l);
    const auto f = scorekit::fisher_divergence(Exec(), model, exact, x, sigma);
    const auto g = scorekit::fisher_divergence(Exec(), model, exact, grid, sigma);
    std::printf("%10.4g %12.4g %10.2g %10.4f %14.4g %10.2g %10.4f\n", run.sigmas[l], f.value,
                f.standard_error, f.relative(), g.value, g.standard_error, g.relative());
  }
}

}  // namespace

int run(const Options& opt);

int main(int argc, char* argv[]) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  const Options opt = parse(argc, argv);
  try {
    return run(opt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

int run(const Options& opt) {
  const auto t_start = std::chrono::steady_clock::now();
  std::filesystem::create_directories(opt.output);
  std::printf("scorekit example: score matching on toy data, %s (%d threads)\n", Exec::name(),
              Exec().concurrency());

  // --- the data -------------------------------------------------------------------------------------
  const scorekit_examples::Extent mixture_box{-5, 15, -5, 15}, banana_box{-7, 7, -5, 13};
  auto host_pdf = [](const auto& host_mixture) {
    return [host_mixture](double x, double y) {
      double p[2] = {x, y}, work[2];
      return std::exp(host_mixture.log_prob(p, work));
    };
  };
  const auto mix_even = make_dataset("mixture 0.5/0.5", two_modes<float, Mem>(0.5),
                                     host_pdf(two_modes<double, Host>(0.5)), mixture_box, 11);
  const auto mix_skew = make_dataset("mixture 0.2/0.8", two_modes<float, Mem>(0.2),
                                     host_pdf(two_modes<double, Host>(0.2)), mixture_box, 12);
  // The banana of the 2-D illustrations: y ~ N(0, diag(sigma_1^2, 1)) bent by x2 = y2 + b (y1^2 - sigma_1^2)
  // with b = 0.5 and sigma_1 = 2 (the banana of sample_toy_densities).
  const double b = 0.5, sigma_1 = 2.0;
  const scorekit::Banana<double> host_banana(2, b, sigma_1);
  const auto banana = make_dataset(
      "banana", scorekit::Banana<float>(2, float(b), float(sigma_1)),
      [host_banana](double x, double y) {
        const double p[2] = {x, y};
        return std::exp(host_banana.log_prob(p));
      },
      banana_box, 13);

  // --- single-level objectives ----------------------------------------------------------------------
  std::printf(
      "\nTraining the 2-128-128-2 softplus network (%ld steps each, batch 128, Adam 1e-3, EMA 0.999)\n",
      opt.steps);
  const char* objectives[4] = {"ISM", "SSM", "DSM s^2=1", "DSM s^2=0.2"};
  std::vector<Row> rows;
  scorekit_examples::Figure errors(3, 5, 260);
  errors.title("Data, and |grad log p - s_theta|^2 of the learned score (log colour scale, per row)");
  int row = 0;
  auto one_dataset = [&](const auto& set) {
    const Points grid = grid_points(set.box, grid_n, grid_n);
    std::vector<std::vector<double>> fields;
    const std::uint64_t seed = 100 * std::uint64_t(row + 1);
    fields.push_back(
        train_and_measure(set, objectives[0], obj::implicit_score_matching(), opt.steps, seed, grid, rows));
    fields.push_back(train_and_measure(set, objectives[1], obj::sliced_score_matching(1), opt.steps, seed + 1,
                                       grid, rows));
    using Dsm = obj::DenoisingScoreMatching<float, Mem, obj::Unweighted>;
    fields.push_back(train_and_measure(set, objectives[2], Dsm({1.0}), opt.steps, seed + 2, grid, rows, 1.0));
    fields.push_back(train_and_measure(set, objectives[3], Dsm({std::sqrt(0.2)}), opt.steps, seed + 3, grid,
                                       rows, std::sqrt(0.2)));

    errors.panel(row, 0)
        .xlim(set.box.x0, set.box.x1)
        .ylim(set.box.y0, set.box.y1)
        .title(set.name + ": data")
        .heatmap(set.pdf, scorekit_examples::HeatmapStyle(scorekit_examples::Colormap::viridis))
        .scatter(column(set.data, 0, 3000), column(set.data, 1, 3000),
                 scorekit_examples::with_alpha(scorekit_examples::colors::white, 0.5), 1.2);
    // One colour range per data set, so its four objectives compare.
    double vmax = 0;
    for (const auto& f : fields)
      for (double v : f) vmax = std::max(vmax, v);
    scorekit_examples::HeatmapStyle style(scorekit_examples::Colormap::viridis,
                                          scorekit_examples::Scale::log);
    style.vmax = vmax;
    style.vmin = vmax * 1e-6;
    for (int k = 0; k < 4; ++k) {
      style.colorbar = k == 3;
      style.label = k == 3 ? "squared error" : "";
      errors.panel(row, k + 1)
          .xlim(set.box.x0, set.box.x1)
          .ylim(set.box.y0, set.box.y1)
          .title(set.name + ": " + objectives[k])
          .heatmap(fields[std::size_t(k)], grid_n, grid_n, style);
    }
    ++row;
  };
  one_dataset(mix_even);
  one_dataset(mix_skew);
  one_dataset(banana);
  print_table(rows);
  const std::string errors_png = opt.output + "/score_matching_errors.png";
  errors.save(errors_png);
  std::printf("wrote %s\n", errors_png.c_str());

  // --- noise-conditional networks -------------------------------------------------------------------
  const auto& mixture = mix_skew.density;
  const auto ncsn_sigmas = scorekit::geometric_schedule(1.0, 0.01, 10);
  std::printf("\nTraining the noise-conditional network (NCSN objective, lambda = sigma^2, %ld steps)\n",
              opt.ncsn_steps);
  const auto ncsn = train_noise_conditional(mix_skew.data, ncsn_sigmas, opt.ncsn_steps, 7);
  const Points mixture_grid = grid_points(mixture_box, grid_n, grid_n);
  print_levels("levels 1 -> 0.01", ncsn, mixture, mixture_grid);
  // Annealed Langevin moves particles between the modes (10 apart in each coordinate) only at levels
  // where sigma is comparable to that distance, which 1 -> 0.01 never reaches: a second network learns
  // the ladder of Song and Ermon's toy experiment, 20 -> 1.
  std::printf("\nTraining the same network over the ladder 20 -> 1 (%ld steps)\n", opt.ncsn_steps);
  const auto wide_sigmas = scorekit::geometric_schedule(20.0, 1.0, 10);
  const auto wide = train_noise_conditional(mix_skew.data, wide_sigmas, opt.ncsn_steps, 8);
  print_levels("levels 20 -> 1", wide, mixture, mixture_grid);
  std::printf(
      "Fisher against the exact perturbed score, on 4,000 fresh points of each perturbed law and on the\n"
      "%d x %d grid over [-5, 15]^2 (which includes the valley between the modes).\n",
      grid_n, grid_n);

  // --- sampling -------------------------------------------------------------------------------------
  const int n = opt.particles;
  auto start = [&] {
    auto x = scorekit::make_particles<float>(Exec(), n, 2);
    scorekit::fill_uniform(Exec(), x, -5.0f, 15.0f, 99);
    return x;
  };
  struct SampleRow {
    std::string sampler, label;  // the table's name, the figure's
    double seconds, weight, se;
    Points x;
  };
  std::vector<SampleRow> samples;
  // An empty x: the run diverged (a network trained too briefly can blow up at the large levels,
  // where alpha_i = eps sigma_i^2 / sigma_L^2 reaches 120).
  auto measure = [&](const std::string& name, const std::string& label, const Points& x, double seconds) {
    const double w =
        x.extent(0) > 0 ? scorekit::mode_weights(Exec(), x, two_means()).weights[0] : std::nan("");
    samples.push_back(
        {name, label, seconds, w, x.extent(0) > 0 ? scorekit::binomial_standard_error(w, n) : w, x});
  };
  auto ald = [&](const auto& model, const std::vector<double>& sigmas, float eps, int steps) {
    auto x = start();
    scorekit::AnnealedLangevinSettings<float> s;
    s.sigmas.assign(sigmas.begin(), sigmas.end());
    s.step_size = eps;
    s.steps_per_level = steps;
    s.seed = 5;
    try {
      const auto r = scorekit::annealed_langevin(Exec(), model, x, s);
      return std::make_pair(x, r.seconds);
    } catch (const scorekit::non_finite_error& e) {
      std::printf("  diverged: %s\n", e.what());
      return std::make_pair(Points(), 0.0);
    }
  };
  // Annealed Langevin: 10 levels x T = 100 steps, eps = 0.3 for the 20 -> 1 ladder (alpha_i = eps
  // sigma_i^2 / sigma_L^2; examples/annealing_weight_bias measures a bias of about 0.01 in the weight with
  // the exact score) and eps = 2e-5 for the 1 -> 0.01 ladder (alpha_1 = 0.2, NCSN's image setting).
  // Plain Langevin: the paper's toy setting, 1000 steps of eps = 0.1, at sigma = 1 alone. No final
  // denoising step: the 20 -> 1 runs sample the data perturbed by N(0, I), modes of variance 2.
  const int T = 100;
  const auto exact_wide = scorekit::PerturbedMixtureScore<float, Mem>(
      mixture, std::vector<float>(wide_sigmas.begin(), wide_sigmas.end()));
  const scorekit::NoiseConditionalScore<NoiseNet, float, Mem> wide_model(wide.params, wide_sigmas);
  const scorekit::NoiseConditionalScore<NoiseNet, float, Mem> ncsn_model(ncsn.params, ncsn_sigmas);
  {
    auto [x, t] = ald(exact_wide, wide_sigmas, 0.3f, T);
    measure("annealed 20 -> 1, exact score", "annealed, exact", x, t);
  }
  {
    auto [x, t] = ald(wide_model, wide_sigmas, 0.3f, T);
    measure("annealed 20 -> 1, learned", "annealed, learned", x, t);
  }
  {
    auto [x, t] = ald(exact_wide, {wide_sigmas.back()}, 0.1f, 10 * T);
    measure("Langevin at sigma 1, exact score", "Langevin s=1, exact", x, t);
  }
  {
    auto [x, t] = ald(wide_model, {wide_sigmas.back()}, 0.1f, 10 * T);
    measure("Langevin at sigma 1, learned", "Langevin s=1, learned", x, t);
  }
  {
    auto [x, t] = ald(ncsn_model, ncsn_sigmas, 2e-5f, T);
    measure("annealed 1 -> 0.01, learned", "annealed 1->0.01, learned", x, t);
  }
  std::printf("\nSampling the 0.2/0.8 mixture from a uniform start over [-5, 15]^2 (%d particles)\n", n);
  std::printf("%-34s %8s %12s %8s %10s\n", "sampler", "time s", "weight (0,0)", "(SE)", "bias / SE");
  for (const auto& s : samples)
    std::printf("%-34s %8.2f %12.4f %8.4f %10.1f\n", s.sampler.c_str(), s.seconds, s.weight, s.se,
                (s.weight - 0.2) / s.se);
  std::printf(
      "weight (0,0): the fraction of particles nearest to (0,0) (scorekit::mode_weights), exact 0.2; SE =\n"
      "sqrt(w (1 - w) / N). The uniform start puts half of them nearer to (0,0).\n"
      "The 20 -> 1 runs end at sigma = 1: their samples are of the data perturbed by N(0, I).\n");

  scorekit_examples::Figure fig(2, 3, 320);
  fig.title("The 0.2/0.8 mixture: data, and samples from a uniform start (weight of mode (0,0))");
  fig.panel(0, 0)
      .xlim(-5, 15)
      .ylim(-5, 15)
      .title("data")
      .heatmap(mix_skew.pdf)
      .scatter(column(mix_skew.data, 0, std::size_t(n)), column(mix_skew.data, 1, std::size_t(n)),
               scorekit_examples::with_alpha(scorekit_examples::colors::white, 0.5), 1.2);
  for (std::size_t k = 0; k < samples.size(); ++k) {
    char title[96];
    std::snprintf(title, sizeof title, "%s: %.3f", samples[k].label.c_str(), samples[k].weight);
    auto& panel = fig.panel(int(k + 1) / 3, int(k + 1) % 3).xlim(-5, 15).ylim(-5, 15).title(title);
    panel.heatmap(mix_skew.pdf);
    if (samples[k].x.extent(0) > 0)
      panel.scatter(column(samples[k].x, 0), column(samples[k].x, 1),
                    scorekit_examples::with_alpha(scorekit_examples::colors::white, 0.5), 1.2);
  }
  const std::string samples_png = opt.output + "/score_matching_samples.png";
  fig.save(samples_png);
  std::printf("wrote %s\n", samples_png.c_str());
  std::printf("total %.1f s\n", seconds_since(t_start));
  return 0;
}
