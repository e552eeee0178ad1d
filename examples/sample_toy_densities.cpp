// The main example: sample three toy densities (the seed paper's two-mode mixture, a banana, a star of
// 250 narrow components) with ULA, MALA, HMC and annealed Langevin, all started from the same uniform
// spread; compare each against exact samples (MMD, energy distance, kernel Stein discrepancy, mode
// weights) in a table; and draw the samples over the density, and a few trajectories, as PNG figures.
//
//   scripts/run-example.sh                 # what the README's first command runs
//   sample_toy_densities --output out --particles 4000
#include "support/plot.hpp"

#include <scorekit/scorekit.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

namespace {

using Exec = Kokkos::DefaultExecutionSpace;
using Mem = Exec::memory_space;
using Host = Kokkos::HostSpace;

struct Options {
  std::string output = "out";
  int particles = 4000;
};

Options parse(int argc, char* argv[]) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--output" && i + 1 < argc)
      o.output = argv[++i];
    else if (a == "--particles" && i + 1 < argc)
      o.particles = std::atoi(argv[++i]);
    else if (a == "--help") {
      std::printf("usage: sample_toy_densities [--output DIR] [--particles N]\n");
      std::exit(0);
    } else if (a.rfind("--kokkos", 0) != 0) {
      std::fprintf(stderr, "unknown argument %s (try --help)\n", a.c_str());
      std::exit(2);
    }
  }
  if (o.particles < 100) {
    std::fprintf(stderr, "--particles must be at least 100\n");
    std::exit(2);
  }
  return o;
}

// How each sampler is run on one density.
struct Plan {
  std::string name;
  scorekit_examples::Extent box;  // plotting range, and the uniform start
  double ula_step, mala_step;     // Langevin steps
  std::int64_t langevin_steps;    // for ULA and MALA
  double hmc_step;                // HMC leapfrog step, 10 leapfrog steps an iteration
  std::int64_t hmc_iterations;
  std::vector<double> sigmas;  // annealed Langevin ladder
  double ald_step;             // eps: alpha_i / sigma_i^2 = eps / sigma_L^2 at every level
  int ald_steps_per_level;
  Eigen::MatrixXd modes;  // for mode weights (empty: not reported)
  std::vector<double> mode_truth;
};

struct Row {
  std::string density, sampler;
  double seconds = 0, acceptance = 1, mmd2 = 0, mmd_null = 0, energy = 0, energy_null = 0, ksd2 = 0;
  std::vector<double> weights;
};

template <class View>
std::vector<double> column(const View& x, int j) {
  auto h = scorekit::to_host(x);
  std::vector<double> v(h.extent(0));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = double(h(i, std::size_t(j)));
  return v;
}

// Runs the four samplers on one density; appends table rows and one figure row.
template <class Density, class HostDensity, class NoiseScore>
void run_density(const Plan& plan, const Density& density, const HostDensity& host_density,
                 const NoiseScore& noise_score, int n, std::vector<Row>& rows, scorekit_examples::Figure& fig,
                 int fig_row) {
  const int d = density.dim();
  auto exact = scorekit::make_particles<double>(Exec(), n, d);
  scorekit::draw_exact(Exec(), density, exact, 2026);
  auto start = [&] {
    auto x = scorekit::make_particles<double>(Exec(), n, d);
    auto h = Kokkos::create_mirror_view(x);
    for (int i = 0; i < n; ++i) {  // uniform over the plotting box, keyed by (seed, particle)
      scorekit::CounterRng<double> rng(7, std::uint64_t(i), 0, scorekit::RngStream::init);
      h(i, 0) = plan.box.x0 + (plan.box.x1 - plan.box.x0) * rng.uniform();
      h(i, 1) = plan.box.y0 + (plan.box.y1 - plan.box.y0) * rng.uniform();
    }
    Kokkos::deep_copy(x, h);
    return x;
  };
  auto log_density = [&](double x, double y) {
    std::vector<double> p = {x, y}, work(std::size_t(scorekit::workspace_size(host_density)) + 1);
    return std::exp(scorekit::log_prob(host_density, p.data(), work.data()));
  };

  auto measure = [&](const std::string& sampler, const auto& x, double seconds, double acceptance) {
    Row r;
    r.density = plan.name;
    r.sampler = sampler;
    r.seconds = seconds;
    r.acceptance = acceptance;
    const auto mmd = scorekit::mmd_squared(Exec(), x, exact);
    r.mmd2 = mmd.mmd2;
    r.mmd_null = mmd.null_sd;
    const auto ed = scorekit::energy_distance(Exec(), x, exact);
    r.energy = ed.energy_distance;
    r.energy_null = ed.null_sd;
    r.ksd2 = scorekit::kernel_stein_discrepancy(Exec(), x, density).ksd2;
    if (plan.modes.rows() > 0) r.weights = scorekit::mode_weights(Exec(), x, plan.modes).weights;
    rows.push_back(r);
    const int col = int(rows.size() - 1) % 5;
    char title[160];
    std::snprintf(title, sizeof title, "%s: %s", plan.name.c_str(), sampler.c_str());
    fig.panel(fig_row, col)
        .xlim(plan.box.x0, plan.box.x1)
        .ylim(plan.box.y0, plan.box.y1)
        .title(title)
        .heatmap(log_density, scorekit_examples::HeatmapStyle(scorekit_examples::Colormap::viridis))
        .scatter(column(x, 0), column(x, 1),
                 scorekit_examples::with_alpha(scorekit_examples::colors::white, 0.45), 1.3);
  };

  measure("exact", exact, 0, 1);
  {
    auto x = start();
    auto r = scorekit::ula(Exec(), density, x, {plan.ula_step, plan.langevin_steps, 1});
    measure("ULA", x, r.seconds, 1);
  }
  {
    auto x = start();
    auto r = scorekit::mala(Exec(), density, x, {plan.mala_step, plan.langevin_steps, 1});
    measure("MALA", x, r.seconds, r.acceptance_rate);
  }
  {
    auto x = start();
    scorekit::HmcSettings<double> s;
    s.step_size = plan.hmc_step;
    s.n_leapfrog = 10;
    s.n_steps = plan.hmc_iterations;
    s.seed = 1;
    auto r = scorekit::hmc(Exec(), density, x, s);
    measure("HMC", x, r.seconds, r.acceptance_rate);
  }
  {
    auto x = start();
    scorekit::AnnealedLangevinSettings<double> s;
    s.sigmas = plan.sigmas;
    s.step_size = plan.ald_step;
    s.steps_per_level = plan.ald_steps_per_level;
    s.final_denoise = true;
    s.seed = 1;
    auto r = scorekit::annealed_langevin(Exec(), noise_score, x, s);
    measure("annealed Langevin", x, r.seconds, 1);
  }
}

void print_table(const std::vector<Row>& rows) {
  std::printf("\n%-8s %-18s %8s %7s %11s %11s %10s %10s %10s  %s\n", "density", "sampler", "time s", "accept",
              "MMD^2", "(null sd)", "energy", "(null sd)", "KSD^2", "mode weights");
  for (const Row& r : rows) {
    std::string w;
    for (double v : r.weights) {
      char b[16];
      std::snprintf(b, sizeof b, "%s%.3f", w.empty() ? "" : " / ", v);
      w += b;
    }
    std::printf("%-8s %-18s %8.3f %7.3f %11.2e %11.2e %10.2e %10.2e %10.2e  %s\n", r.density.c_str(),
                r.sampler.c_str(), r.seconds, r.acceptance, r.mmd2, r.mmd_null, r.energy, r.energy_null,
                r.ksd2, w.c_str());
  }
  std::printf(
      "\nMMD^2 and energy distance are against %s exact samples; a value within about 2 null sd of 0 is\n"
      "indistinguishable from exact sampling at this sample size. KSD^2 uses the score only (0 for exact\n"
      "samples up to its own noise).\n",
      "as many");
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
  const int n = opt.particles;
  std::printf("scorekit example: %d particles a run on %s (%d threads)\n", n, Exec::name(),
              Exec().concurrency());

  std::vector<Row> rows;
  scorekit_examples::Figure fig(3, 5, 260);
  fig.title("Samples over the density: exact, ULA, MALA, HMC and annealed Langevin from a uniform start");

  // Annealed Langevin: each ladder keeps eps / sigma_L^2 (the step relative to the noise variance, the
  // same at every level) at 0.2 or 0.3; near 1 and above the dynamics are unstable.

  // 1. Song and Ermon's two-mode mixture: 0.2 N((0,0), I) + 0.8 N((10,10), I).
  Eigen::MatrixXd means(2, 2);
  means << 0, 0, 10, 10;
  auto mixture = scorekit::GaussianMixture<double, Mem>::isotropic(Eigen::Vector2d(0.2, 0.8), means,
                                                                   Eigen::Vector2d(1, 1));
  auto host_mixture = scorekit::GaussianMixture<double, Host>::isotropic(Eigen::Vector2d(0.2, 0.8), means,
                                                                         Eigen::Vector2d(1, 1));
  // HMC: 10 leapfrog steps of 0.15, a trajectory of about a quarter period of the unit-variance modes
  // (a half period, 0.3 x 10, maps x to about -x and barely mixes: HMC's resonance).
  Plan mix_plan{"mixture", {-5, 15, -5, 15},
                0.1,       0.5,
                1000,      0.15,
                100,       scorekit::geometric_schedule(20.0, 0.1, 20),
                0.003,     200,
                means,     {0.2, 0.8}};
  run_density(mix_plan, mixture, host_mixture,
              scorekit::PerturbedMixtureScore<double, Mem>(mixture, mix_plan.sigmas), n, rows, fig, 0);

  // 2. A banana: y ~ N(0, diag(4, 1)) bent by x2 = y2 + 0.5 (y1^2 - 4).
  const scorekit::Banana<double> banana(2, 0.5, 2.0);
  // MALA with a larger step (0.3) strands the particles that start in the far tails, where the score
  // grows like x1^3 and every proposal is rejected.
  Plan banana_plan{"banana", {-7, 7, -5, 13},
                   0.05,     0.05,
                   1000,     0.2,
                   100,      scorekit::geometric_schedule(10.0, 0.1, 10),
                   0.002,    100,
                   {},       {}};
  run_density(banana_plan, banana, banana, scorekit::PerturbedBananaScore<double, Mem>(banana), n, rows, fig,
              1);

  // 3. The star: 250 narrow components (variance 0.01) on r = 1 + sin(5 theta), random weights.
  auto star = scorekit::star_mixture<double, Mem>(3);
  auto host_star = scorekit::star_mixture<double, Host>(3);
  Plan star_plan{"star", {-2.2, 2.2, -2.2, 2.2},
                 0.002,  0.005,
                 1000,   0.02,
                 100,    scorekit::geometric_schedule(2.0, 0.05, 10),
                 0.0005, 100,
                 {},     {}};
  run_density(star_plan, star, host_star,
              scorekit::PerturbedMixtureScore<double, Mem>(star, star_plan.sigmas), n, rows, fig, 2);

  print_table(rows);

  const std::string samples_png = opt.output + "/samples.png";
  fig.save(samples_png);
  std::printf("wrote %s\n", samples_png.c_str());

  // Trajectories on the mixture: plain Langevin stays in the mode it starts near; annealed Langevin
  // moves particles between modes while the noise is large.
  const int n_paths = 6;
  scorekit_examples::Figure paths(1, 2, 420);
  paths.title("Trajectories on the two-mode mixture (6 particles)");
  auto draw_paths = [&](int col, const char* title, const auto& traj) {
    auto h = scorekit::to_host(traj);
    auto& panel = paths.panel(0, col).xlim(-5, 15).ylim(-5, 15).title(title).heatmap([&](double x, double y) {
      double p[2] = {x, y}, work[2];
      return std::exp(host_mixture.log_prob(p, work));
    });
    for (int i = 0; i < n_paths; ++i) {
      std::vector<double> xs, ys;
      for (std::size_t t = 0; t < h.extent(0); ++t) {
        xs.push_back(h(t, std::size_t(i), 0));
        ys.push_back(h(t, std::size_t(i), 1));
      }
      panel.line(xs, ys, scorekit_examples::with_alpha(scorekit_examples::colors::orange, 0.6), 1.0);
      panel.scatter({xs.back()}, {ys.back()}, scorekit_examples::colors::crimson, 3.0);
    }
  };
  {
    auto x = scorekit::make_particles<double>(Exec(), n_paths, 2);
    scorekit::fill_uniform(Exec(), x, -5.0, 15.0, 3);
    auto r = scorekit::ula(Exec(), mixture, x, {0.1, 1000, 1, 10});
    draw_paths(0, "ULA, 1000 steps", r.trajectory);
    auto y = scorekit::make_particles<double>(Exec(), n_paths, 2);
    scorekit::fill_uniform(Exec(), y, -5.0, 15.0, 3);
    scorekit::AnnealedLangevinSettings<double> s;
    s.sigmas = mix_plan.sigmas;
    s.step_size = mix_plan.ald_step;
    s.steps_per_level = 50;
    s.seed = 1;
    s.record_every = 10;
    auto a = scorekit::annealed_langevin(
        Exec(), scorekit::PerturbedMixtureScore<double, Mem>(mixture, s.sigmas), y, s);
    draw_paths(1, "annealed Langevin, 20 levels x 50 steps", a.trajectory);
  }
  const std::string paths_png = opt.output + "/trajectories.png";
  paths.save(paths_png);
  std::printf("wrote %s\n", paths_png.c_str());
  return 0;
}
