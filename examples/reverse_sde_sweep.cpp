// Sampling by reversing an SDE: every integrator of integrate/ against the number of score evaluations
// (NFE), on two toy mixtures whose every marginal is known in closed form, with the EXACT score and with
// a TRAINED one.
//
//   densities   the 0.2/0.8 two-mode mixture N((-5,-5), I), N((5,5), I), and a ring of 8 narrow modes
//               (radius 4, standard deviation 0.3, weights proportional to 1, 2, ..., 8);
//   scores      exact: PerturbedMixtureScore (the closed-form score of every perturbed mixture);
//               trained: the toy noise-conditional network of examples/score_matching_toy, 64 wide
//               (2-64-64-2, softplus, one embedding per level), trained by denoising score matching over
//               24 geometric levels 0.1 ... 160 (lambda = sigma^2, s = y / sigma) on 10,000 samples for
//               30,000 steps, and made continuous in sigma by interpolating y = sigma s linearly in log
//               sigma between the two neighbouring levels (two network passes per score evaluation); its
//               relative Fisher divergence to the exact score is printed at a few noise levels;
//   SDEs        VE (sigma 0.01 -> 50, t from 1 to 1e-5) and VP (linear beta 0.1 -> 20, t from 1 to 1e-3),
//               the grids of score_sde; EDM (sigma_max 80, Karras grid 80 -> 0.002, rho = 7);
//   integrators Euler-Maruyama on the reverse SDE, reverse diffusion, DDPM ancestral sampling, DDIM
//               (eta 0 and 1), predictor-corrector (reverse diffusion + one Langevin step, snr 0.16),
//               Euler on the probability-flow ODE, Heun on it, EDM's Heun (with and without churn),
//               and adaptive Dormand-Prince on the probability-flow ODE at several tolerances;
//   measures    MMD^2 against as many exact samples of the data (RBF kernel, one bandwidth per density:
//               the median heuristic on exact samples; the two-sample noise level, the sd of MMD^2 under
//               relabelling, is printed with it, and so is the MMD^2 of a second exact sample) and the
//               largest error of a mode weight (the fraction of samples nearest each mode) against the
//               mixture's weights, with its binomial standard error.
// Sizes: 2,000 particles per exact-score run over grids of 10 ... 500 steps; 1,000 per trained-score run
// over 10 ... 100 steps (each trained evaluation is two passes through the network). On 2 cores the
// whole sweep takes about 2 minutes.
// Every run starts from EXACT samples of p_T (the data mixture pushed through the SDE's kernel), not from
// the prior N(0, prior_std^2 I), so that what is measured is the integrator's error (and the score's)
// and not the prior's mismatch; one extra row per SDE (exact scores) shows what the prior start adds. The
// stochastic samplers skip the noise of their last step (score_sde's noise removal).
//
// Prints markdown tables (MMD^2 and mode-weight error per integrator and step count) and writes
// <output>/reverse_sde_sweep.md (every run, one row each) and <output>/reverse_sde_sweep.png (MMD^2
// against NFE, log-log, one line per integrator).
//
//   reverse_sde_sweep --output out [--particles N] [--trained-particles N] [--train-steps N] [--no-trained]
#include "support/plot.hpp"

#include <scorekit/integrate/ancestral.hpp>
#include <scorekit/integrate/ddim.hpp>
#include <scorekit/integrate/dormand_prince.hpp>
#include <scorekit/integrate/euler_maruyama.hpp>
#include <scorekit/integrate/heun.hpp>
#include <scorekit/integrate/integrate_common.hpp>
#include <scorekit/integrate/predictor_corrector.hpp>
#include <scorekit/integrate/reverse_diffusion.hpp>
#include <scorekit/schedule/karras.hpp>
#include <scorekit/schedule/linear_beta.hpp>
#include <scorekit/scorekit.hpp>
#include <scorekit/sde/edm.hpp>
#include <scorekit/sde/reverse.hpp>
#include <scorekit/sde/variance_exploding.hpp>
#include <scorekit/sde/variance_preserving.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace {

using Exec = Kokkos::DefaultExecutionSpace;
using Mem = Exec::memory_space;

using namespace scorekit::nn;

constexpr int n_levels = 24;
constexpr double train_sigma_min = 0.1;
/// The trained network: score_matching_toy's noise-conditional net, 64 wide (a 128-wide net costs four
/// times as much per evaluation, and the sweep makes millions of them).
using NoiseNet = Sequential<ConditionalDense<2, 64, n_levels>, Softplus, ConditionalDense<64, 64, n_levels>,
                            Softplus, Dense<64, 2>>;

struct Options {
  std::string output = "out";
  int particles = 2000;
  int trained_particles = 1000;
  long train_steps = 30000;
  bool trained = true;
};

Options parse(int argc, char* argv[]) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--output" && i + 1 < argc)
      o.output = argv[++i];
    else if (a == "--particles" && i + 1 < argc)
      o.particles = std::atoi(argv[++i]);
    else if (a == "--trained-particles" && i + 1 < argc)
      o.trained_particles = std::atoi(argv[++i]);
    else if (a == "--train-steps" && i + 1 < argc)
      o.train_steps = std::atol(argv[++i]);
    else if (a == "--no-trained")
      o.trained = false;
    else if (a == "--help") {
      std::printf(
          "usage: reverse_sde_sweep [--output DIR] [--particles N] [--trained-particles N] [--train-steps "
          "N]\n"
          "                         [--no-trained]\n"
          "  --particles N          particles of every exact-score run, and exact samples to compare with\n"
          "                         (default 2000)\n"
          "  --trained-particles N  the same for the trained score's runs (default 1000)\n"
          "  --train-steps N        training steps of each noise-conditional network (default 30000)\n"
          "  --no-trained           the exact scores only\n");
      std::exit(0);
    } else if (a.rfind("--kokkos", 0) != 0) {
      std::fprintf(stderr, "unknown argument %s (try --help)\n", a.c_str());
      std::exit(2);
    }
  }
  if (o.particles < 100 || o.trained_particles < 100 || o.train_steps < 1) {
    std::fprintf(stderr,
                 "--particles and --trained-particles must be at least 100, --train-steps at least 1\n");
    std::exit(2);
  }
  return o;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// --- the data --------------------------------------------------------------------------------------------

struct MixtureSpec {
  std::string name;
  Eigen::VectorXd weights;  // normalised
  Eigen::MatrixXd means;
  double variance;
};

MixtureSpec two_modes() {
  Eigen::MatrixXd means(2, 2);
  means << -5, -5, 5, 5;
  return {"mixture 0.2/0.8", Eigen::Vector2d(0.2, 0.8), means, 1.0};
}

/// 8 modes on the circle of radius 4, standard deviation 0.3 (neighbours 3.06 apart: 5 sd to the
/// midpoint, so nearest-mode counting misassigns a fraction ~1e-6), weights k / 36.
MixtureSpec ring() {
  const int k = 8;
  Eigen::VectorXd w(k);
  Eigen::MatrixXd means(k, 2);
  for (int i = 0; i < k; ++i) {
    const double theta = 2 * 3.14159265358979323846 * i / k;
    means(i, 0) = 4 * std::cos(theta);
    means(i, 1) = 4 * std::sin(theta);
    w[i] = (i + 1) / 36.0;
  }
  return {"ring of 8", w, means, 0.09};
}

template <class Real>
scorekit::GaussianMixture<Real, Mem> make_mixture(const MixtureSpec& m) {
  return scorekit::GaussianMixture<Real, Mem>::isotropic(
      m.weights, m.means, Eigen::VectorXd::Constant(m.means.rows(), m.variance));
}

// --- the trained score -----------------------------------------------------------------------------------

/// The noise-conditional network made continuous in sigma. It is trained with the parametrisation
/// s = y(x, level) / sigma (NCSNv2's, with NCSN's level embeddings), so y = sigma s, the quantity the
/// objective fits on the same scale at every level. Between two neighbouring levels sigma_l < sigma <
/// sigma_{l+1}, y is interpolated linearly in log sigma. Below the lowest level the lowest level's score
/// y_0 / sigma_0 stands in (the data's score is what p_sigma's tends to); above the highest, y_L sigma_L /
/// sigma^2 (the 1 / sigma^2 decay of a broad Gaussian's score), which the grids below never need.
struct InterpolatedLevels {
  using value_type = float;
  scorekit::NoiseConditionalScore<NoiseNet, float, Mem> net;  // y(x, level)
  Kokkos::View<const float*, Mem> sigmas;                     // ascending, geometric
  float log_lo, inv_log_ratio;
  int n;

  KOKKOS_INLINE_FUNCTION int dim() const { return 2; }
  KOKKOS_INLINE_FUNCTION int workspace_size() const { return scorekit::workspace_size(net) + 2; }

  KOKKOS_INLINE_FUNCTION void score(const float* x, float sigma, float* out, float* work) const {
    const float u = (scorekit::math::log(sigma) - log_lo) * inv_log_ratio;
    if (!(u > 0.0f) || u >= float(n - 1)) {
      const int l = u > 0.0f ? n - 1 : 0;
      net.score(x, sigmas(l), out, work);
      const float c = u > 0.0f ? sigmas(l) / (sigma * sigma) : 1.0f / sigmas(l);
      out[0] *= c;
      out[1] *= c;
      return;
    }
    const int l = int(u);
    const float w = u - float(l);
    float* other = work + scorekit::workspace_size(net);
    net.score(x, sigmas(l), out, work);
    net.score(x, sigmas(l + 1), other, work);
    const float c0 = (1.0f - w) / sigma, c1 = w / sigma;
    out[0] = c0 * out[0] + c1 * other[0];
    out[1] = c0 * out[1] + c1 * other[1];
  }
};

/// The relative Fisher divergence E ||s_model - s_exact||^2 / E ||s_exact||^2 of the trained score on
/// fresh samples of the data perturbed at a few noise levels.
void print_score_error(const scorekit::GaussianMixture<float, Mem>& mixture,
                       const InterpolatedLevels& model) {
  const scorekit::PerturbedMixtureScore<float, Mem> exact(mixture);
  std::printf("    relative Fisher divergence to the exact score:");
  for (float sigma : {0.01f, 0.1f, 0.5f, 1.0f, 5.0f, 20.0f}) {
    Kokkos::View<float**, Kokkos::LayoutRight, Mem> x("perturbed samples", 2000, 2);
    scorekit::draw_exact(Exec(), mixture.perturbed(1.0f, sigma), x, 500);
    std::printf(" %.3f at sigma %g%s", scorekit::fisher_divergence(Exec(), model, exact, x, sigma).relative(),
                double(sigma), sigma < 20.0f ? "," : "\n");
  }
}

struct TrainedScore {
  InterpolatedLevels model;
  double seconds = 0, loss = 0;
};

TrainedScore train_score(const scorekit::GaussianMixture<float, Mem>& mixture, long steps,
                         std::uint64_t seed) {
  std::vector<double> sigmas(n_levels);
  const double lo = train_sigma_min, hi = 160;
  for (int l = 0; l < n_levels; ++l)
    sigmas[std::size_t(l)] = lo * std::pow(hi / lo, double(l) / (n_levels - 1));
  Kokkos::View<float**, Kokkos::LayoutRight, Mem> data("data", 10000, 2);
  scorekit::draw_exact(Exec(), mixture, data, seed);
  using Objective = scorekit::objective::DenoisingScoreMatching<float, Mem, scorekit::objective::SigmaSquared,
                                                                scorekit::objective::DividedBySigma>;
  scorekit::train::TrainSettings settings;  // batch 128, EMA 0.999
  settings.seed = seed + 1;
  // Adam at 3e-3, three times the default: at 1e-3 the ring's narrow modes need twice the steps for the
  // same accuracy (measured: a relative Fisher divergence of about 0.06 at small sigma after 30,000 steps
  // at 3e-3 and after 60,000 at 1e-3).
  settings.adam.learning_rate = 3e-3;
  settings.log_every = int(std::max(1L, steps / 10));
  settings.log = nullptr;
  scorekit::train::Trainer<NoiseNet, Objective, Exec, float> trainer(Objective(sigmas), settings, seed + 2);
  const auto report = trainer.train(data, steps);
  double sum = 0, count = 0;
  for (const auto& l : report.levels) {
    sum += l.mean * l.count;
    count += l.count;
  }
  Kokkos::View<float*, Mem> s("sigmas", sigmas.size());
  auto h = Kokkos::create_mirror_view(s);
  for (std::size_t l = 0; l < sigmas.size(); ++l) h(l) = float(sigmas[l]);
  Kokkos::deep_copy(s, h);
  TrainedScore out{
      InterpolatedLevels{
          scorekit::NoiseConditionalScore<NoiseNet, float, Mem>(trainer.ema_parameters(), sigmas), s,
          float(std::log(lo)), float((n_levels - 1) / std::log(hi / lo)), n_levels},
      report.seconds, sum / count};
  return out;
}

std::string fmt(const char* f, double v) {
  char b[48];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// --- one run, and the table ------------------------------------------------------------------------------

struct Row {
  std::string density, score, sde, integrator;
  int steps = 0;        // grid steps (0 for the adaptive solver)
  std::string setting;  // the grid or the tolerance
  double nfe = 0;       // score evaluations per particle
  double mmd2 = 0, null_sd = 0, weight_error = 0, weight_se = 0, seconds = 0;
  bool failed = false;
};

/// What every run of one (density, score) compares against.
template <class Real>
struct Target {
  MixtureSpec spec;
  scorekit::GaussianMixture<Real, Mem> mixture;
  scorekit::ParticleView<Real, Mem> exact;  // samples of the data
  std::string score;
  double bandwidth = 0;  // of the MMD's kernel: one for all runs, so that their MMD^2 compare
};

/// n exact samples of the data, and the MMD bandwidth: the median distance within them and a second
/// independent exact sample (the median heuristic, computed once).
template <class Real>
Target<Real> make_target(const MixtureSpec& spec, const std::string& score, int n) {
  Target<Real> t{spec, make_mixture<Real>(spec), scorekit::make_particles<Real>(Exec(), n, 2), score, 0};
  scorekit::draw_exact(Exec(), t.mixture, t.exact, 77);
  auto other = scorekit::make_particles<Real>(Exec(), n, 2);
  scorekit::draw_exact(Exec(), t.mixture, other, 78);
  t.bandwidth = scorekit::median_heuristic_bandwidth(Exec(), t.exact, other);
  return t;
}

template <class Real>
void measure(const Target<Real>& target, const scorekit::ParticleView<Real, Mem>& x, Row& r) {
  const auto mmd = scorekit::mmd_squared(Exec(), x, target.exact, target.bandwidth);
  r.mmd2 = mmd.mmd2;
  r.null_sd = mmd.null_sd;
  const auto w = scorekit::mode_weights(Exec(), x, target.spec.means);
  int worst = 0;
  for (int k = 0; k < target.spec.weights.size(); ++k)
    if (std::abs(w.weights[std::size_t(k)] - target.spec.weights[k]) >
        std::abs(w.weights[std::size_t(worst)] - target.spec.weights[worst]))
      worst = k;
  r.weight_error = std::abs(w.weights[std::size_t(worst)] - target.spec.weights[worst]);
  r.weight_se = scorekit::binomial_standard_error(target.spec.weights[worst], std::int64_t(x.extent(0)));
}

/// n exact samples of the SDE's marginal at time t (the data mixture through the kernel p_0t).
template <class Real, class SDE>
scorekit::ParticleView<Real, Mem> start_at(const Target<Real>& target, const SDE& sde, double t, int n,
                                           std::uint64_t seed) {
  auto x = scorekit::make_particles<Real>(Exec(), n, 2);
  const auto k = sde.marginal(Real(t));
  scorekit::draw_exact(Exec(), target.mixture.perturbed(k.scale, k.std), x, seed);
  return x;
}

/// Runs `run(x)` (which integrates x in place and returns score evaluations per particle) from exact
/// samples of p_{t_start}; records the row.
template <class Real, class SDE, class Run>
void one_run(const Target<Real>& target, const std::string& sde_name, const SDE& sde, double t_start,
             const std::string& integrator, int steps, const std::string& setting, int n, std::uint64_t seed,
             Run&& run, std::vector<Row>& rows) {
  Row r;
  r.density = target.spec.name;
  r.score = target.score;
  r.sde = sde_name;
  r.integrator = integrator;
  r.steps = steps;
  r.setting = setting;
  auto x = start_at(target, sde, t_start, n, seed);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    r.nfe = run(x);
    r.seconds = seconds_since(t0);
    measure(target, x, r);
  } catch (const std::exception& e) {
    r.seconds = seconds_since(t0);
    r.failed = true;
    std::printf("  %s / %s / %s / %s %s: failed: %s\n", r.density.c_str(), r.score.c_str(), sde_name.c_str(),
                integrator.c_str(), setting.c_str(), e.what());
  }
  rows.push_back(r);
}

/// A fixed-grid run of integrate().
template <class Real, class System, class Integrator>
double run_grid(const System& system, const Integrator& integrator, const std::vector<double>& times,
                const scorekit::ParticleView<Real, Mem>& x, std::uint64_t seed) {
  scorekit::IntegrateSettings s;
  s.times = times;
  s.seed = seed;
  s.remove_last_noise = true;
  const auto result = scorekit::integrate(Exec(), system, integrator, x, s);
  return double(result.n_score_evaluations) / double(x.extent(0));
}

// --- the sweep over one SDE ------------------------------------------------------------------------------

struct SweepPlan {
  std::vector<int> steps;          // grid sizes of the fixed-step integrators
  std::vector<double> tolerances;  // rtol = atol of Dormand-Prince
  int particles = 2000;
  bool prior_row = false;  // one Euler-Maruyama run from the prior at the finest grid
};

/// All fixed-grid integrators and Dormand-Prince on a VE or VP SDE (times from t_max to t_end).
template <class Real, class SDE, class Model>
void sweep_sde(const Target<Real>& target, const std::string& sde_name, const SDE& sde, double t_end,
               const Model& model, const SweepPlan& plan, std::vector<Row>& rows) {
  const double t_max = double(sde.t_max());
  const auto rsde = scorekit::reverse_sde(sde, model);
  const auto flow = scorekit::probability_flow(sde, model);
  const int n = plan.particles;
  std::uint64_t seed = 1000;
  for (int steps : plan.steps) {
    const auto times = scorekit::uniform_times(t_max, t_end, steps);
    const std::string grid = std::to_string(steps) + " steps";
    auto grid_run = [&](const std::string& name, const auto& system, const auto& integrator) {
      ++seed;
      one_run(
          target, sde_name, sde, t_max, name, steps, grid, n, seed,
          [&](const scorekit::ParticleView<Real, Mem>& x) {
            return run_grid<Real>(system, integrator, times, x, seed + 7);
          },
          rows);
    };
    grid_run("Euler-Maruyama (SDE)", rsde, scorekit::EulerMaruyama{});
    grid_run("reverse diffusion", rsde, scorekit::ReverseDiffusion{});
    grid_run("ancestral", rsde, scorekit::AncestralSampling{});
    grid_run("DDIM eta 0", flow, scorekit::Ddim(0.0));
    grid_run("DDIM eta 1", rsde, scorekit::Ddim(1.0));
    grid_run(
        "PC (RD + Langevin)", rsde,
        scorekit::predictor_corrector(scorekit::ReverseDiffusion{}, scorekit::LangevinCorrector(0.16, 1)));
    grid_run("Euler (PF ODE)", flow, scorekit::EulerMaruyama{});
    grid_run("Heun (PF ODE)", flow, scorekit::Heun{});
  }
  if (plan.prior_row) {
    // The same sampler from N(0, prior_std^2 I) instead of p_T: what the prior's mismatch adds.
    const int steps = plan.steps.back();
    const auto times = scorekit::uniform_times(t_max, t_end, steps);
    Row r;
    r.density = target.spec.name;
    r.score = target.score;
    r.sde = sde_name;
    r.integrator = "Euler-Maruyama (SDE), prior start";
    r.steps = steps;
    r.setting = std::to_string(steps) + " steps";
    auto x = scorekit::make_particles<Real>(Exec(), n, 2);
    scorekit::fill_normal(Exec(), x, Real(0), Real(sde.prior_std()), 99);
    const auto t0 = std::chrono::steady_clock::now();
    r.nfe = run_grid<Real>(rsde, scorekit::EulerMaruyama{}, times, x, 98);
    r.seconds = seconds_since(t0);
    measure(target, x, r);
    rows.push_back(r);
  }
  for (double tol : plan.tolerances) {
    ++seed;
    one_run(
        target, sde_name, sde, t_max, "Dormand-Prince (PF ODE)", 0, "tol " + fmt("%.0e", tol), n, seed,
        [&](const scorekit::ParticleView<Real, Mem>& x) {
          scorekit::DormandPrinceSettings s;
          s.rtol = s.atol = tol;
          return scorekit::solve_ode(Exec(), flow, x, t_max, t_end, s).mean_evaluations;
        },
        rows);
  }
}

/// EDM's Heun sampler, deterministic and with churn (Karras et al. 2022, Algorithms 1 and 2), on EdmSDE
/// over the Karras grid sigma_max = 80 -> sigma_min = 0.002 (rho = 7) with 0 appended: N steps, 2 N - 1
/// evaluations. Churn: EDM's ImageNet setting S_churn = 40, S_tmin = 0.05, S_tmax = 50, with S_noise = 1
/// (their 1.003 compensates for image networks' bias, which an exact score does not have).
template <class Real, class Model>
void sweep_edm(const Target<Real>& target, const Model& model, const SweepPlan& plan,
               std::vector<Row>& rows) {
  const scorekit::EdmSDE<Real> edm(Real(80));
  const auto flow = scorekit::probability_flow(edm, model);
  std::uint64_t seed = 5000;
  for (int steps : plan.steps) {
    std::vector<double> times = scorekit::karras_sigmas(steps, 0.002, 80, 7);
    times.push_back(0);
    const std::string grid = std::to_string(steps) + " steps";
    for (int churn = 0; churn < 2; ++churn) {
      scorekit::Heun heun;
      if (churn) {
        heun.churn = 40;
        heun.n_steps = steps;
        heun.churn_t_min = 0.05;
        heun.churn_t_max = 50;
      }
      ++seed;
      one_run(
          target, "EDM", edm, 80, churn ? "Heun, churn 40" : "Heun", steps, grid, plan.particles, seed,
          [&](const scorekit::ParticleView<Real, Mem>& x) {
            return run_grid<Real>(flow, heun, times, x, seed + 7);
          },
          rows);
    }
  }
}

/// One (density, score) pair: VE, VP and EDM.
template <class Real, class Model>
void sweep(const Target<Real>& target, const Model& model, const SweepPlan& plan, std::vector<Row>& rows) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::size_t first = rows.size();
  // Two independent exact samples: the MMD^2 of exact sampling itself.
  {
    Row r;
    r.density = target.spec.name;
    r.score = target.score;
    r.integrator = "exact samples";
    r.setting = "-";
    auto x = scorekit::make_particles<Real>(Exec(), plan.particles, 2);
    scorekit::draw_exact(Exec(), target.mixture, x, 79);
    measure(target, x, r);
    for (const char* sde : {"VE", "VP", "EDM"}) {
      r.sde = sde;
      rows.push_back(r);
    }
  }
  const scorekit::VarianceExplodingSDE<Real> ve(Real(0.01), Real(50));
  const auto vp = scorekit::vp_sde(scorekit::LinearBeta<Real>{Real(0.1), Real(20)});
  sweep_sde(target, "VE", ve, 1e-5, model, plan, rows);
  sweep_sde(target, "VP", vp, 1e-3, model, plan, rows);
  sweep_edm(target, model, plan, rows);
  std::printf("  %s, %s score: %zu runs in %.1f s\n", target.spec.name.c_str(), target.score.c_str(),
              rows.size() - first - 3, seconds_since(t0));
  std::fflush(stdout);
}

// --- output ----------------------------------------------------------------------------------------------

/// Markdown tables per (density, score, SDE): MMD^2 and the largest mode-weight error of each fixed-grid
/// integrator (rows) on each grid (columns), then Dormand-Prince by tolerance, then the reference values.
void print_tables(const std::vector<Row>& rows) {
  std::vector<std::string> groups;
  auto group_of = [](const Row& r) { return r.density + " | " + r.score + " | " + r.sde; };
  for (const Row& r : rows)
    if (std::find(groups.begin(), groups.end(), group_of(r)) == groups.end()) groups.push_back(group_of(r));
  auto value = [](const Row* r, int table) {
    if (!r) return std::string();
    if (r->failed) return std::string("failed");
    return table == 0 ? fmt("%.2e", r->mmd2) : fmt("%.4f", r->weight_error);
  };
  for (const std::string& g : groups) {
    std::vector<std::string> integrators, grids;
    std::map<std::pair<std::string, std::string>, const Row*> cell;
    std::vector<const Row*> adaptive;
    const Row* exact = nullptr;
    double null_sd = 0;
    int n_null = 0;
    for (const Row& r : rows) {
      if (group_of(r) != g) continue;
      if (r.integrator == "exact samples") {
        exact = &r;
        continue;
      }
      if (!r.failed) {
        null_sd += r.null_sd;
        ++n_null;
      }
      if (r.steps == 0) {
        adaptive.push_back(&r);
        continue;
      }
      if (std::find(integrators.begin(), integrators.end(), r.integrator) == integrators.end())
        integrators.push_back(r.integrator);
      if (std::find(grids.begin(), grids.end(), r.setting) == grids.end()) grids.push_back(r.setting);
      cell[{r.integrator, r.setting}] = &r;
    }
    for (int table = 0; table < 2; ++table) {
      std::printf("\n%s: %s (NFE per particle in brackets)\n\n| integrator |", g.c_str(),
                  table == 0 ? "MMD^2" : "largest mode-weight error");
      for (const auto& s : grids) std::printf(" %s |", s.c_str());
      std::printf("\n|---|");
      for (std::size_t i = 0; i < grids.size(); ++i) std::printf("---|");
      std::printf("\n");
      for (const auto& name : integrators) {
        std::printf("| %s |", name.c_str());
        for (const auto& s : grids) {
          auto it = cell.find({name, s});
          const Row* r = it == cell.end() ? nullptr : it->second;
          std::printf(" %s |", r ? (value(r, table) + " (" + fmt("%g", r->nfe) + ")").c_str() : "");
        }
        std::printf("\n");
      }
    }
    if (!adaptive.empty()) {
      std::printf(
          "\n| %s | NFE per particle (mean) | MMD^2 | largest mode-weight error |\n|---|---|---|---|\n",
          adaptive.front()->integrator.c_str());
      for (const Row* r : adaptive)
        std::printf("| %s | %.1f | %s | %s |\n", r->setting.c_str(), r->nfe, value(r, 0).c_str(),
                    value(r, 1).c_str());
    }
    if (n_null > 0)
      std::printf("\nnoise level (sd of MMD^2 under H0, mean over the runs): %.1e", null_sd / n_null);
    if (exact)
      std::printf(
          "; exact samples against the exact reference: MMD^2 %.2e, largest mode-weight error %.4f (SE %.4f)",
          exact->mmd2, exact->weight_error, exact->weight_se);
    std::printf("\n");
  }
}

void write_markdown(const std::vector<Row>& rows, const std::string& path) {
  std::ofstream f(path);
  if (!f) throw scorekit::io_error("reverse_sde_sweep: cannot write " + path);
  f << "| density | score | SDE | integrator | grid | NFE | MMD^2 | null sd | max weight error | SE | time s "
       "|\n"
       "|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const Row& r : rows) {
    f << "| " << r.density << " | " << r.score << " | " << r.sde << " | " << r.integrator << " | "
      << r.setting << " | " << r.nfe << " | ";
    if (r.failed)
      f << "failed | | | | ";
    else
      f << fmt("%.3e", r.mmd2) << " | " << fmt("%.1e", r.null_sd) << " | " << fmt("%.4f", r.weight_error)
        << " | " << fmt("%.4f", r.weight_se) << " | ";
    f << fmt("%.3f", r.seconds) << " |\n";
  }
}

/// One panel per (density, score, SDE): log10 MMD^2 against log10 NFE, a line per integrator. MMD^2 below
/// half the noise level (or negative: the estimator is unbiased) is drawn at half the noise level. The
/// x range extends to the right so that the legend (upper right) sits beside the converged ends.
void plot(const std::vector<Row>& rows, const std::string& path) {
  std::vector<std::string> groups;
  for (const Row& r : rows) {
    const std::string g = r.density + ", " + r.score + ", " + r.sde;
    if (std::find(groups.begin(), groups.end(), g) == groups.end()) groups.push_back(g);
  }
  const int cols = 3, n_rows = int(groups.size() + cols - 1) / cols;
  scorekit_examples::Figure fig(n_rows, cols, 600, 400);
  fig.title("MMD^2 to exact samples against score evaluations per particle (log10 both; grey: noise level)");
  const scorekit_examples::Rgba palette[] = {{31, 119, 180, 255},  {255, 127, 14, 255},  {44, 160, 44, 255},
                                             {214, 39, 40, 255},   {148, 103, 189, 255}, {140, 86, 75, 255},
                                             {227, 119, 194, 255}, {127, 127, 127, 255}, {188, 189, 34, 255},
                                             {23, 190, 207, 255},  {0, 0, 0, 255},       {120, 70, 170, 255}};
  // One colour per integrator across all panels.
  std::vector<std::string> all_integrators;
  for (const Row& r : rows)
    if (r.nfe > 0 &&
        std::find(all_integrators.begin(), all_integrators.end(), r.integrator) == all_integrators.end())
      all_integrators.push_back(r.integrator);
  auto colour = [&](const std::string& name) {
    const std::size_t k = std::size_t(std::find(all_integrators.begin(), all_integrators.end(), name) -
                                      all_integrators.begin());
    return palette[k % (sizeof palette / sizeof palette[0])];
  };
  for (std::size_t gi = 0; gi < groups.size(); ++gi) {
    auto& panel = fig.panel(int(gi) / cols, int(gi) % cols);
    panel.title(groups[gi]).xlabel("log10 NFE").ylabel("log10 MMD^2");
    std::vector<std::string> integrators;
    double noise = 0, lo_x = 1e300, hi_x = -1e300;
    int n_noise = 0;
    for (const Row& r : rows)
      if (r.density + ", " + r.score + ", " + r.sde == groups[gi] && !r.failed && r.nfe > 0) {
        if (std::find(integrators.begin(), integrators.end(), r.integrator) == integrators.end())
          integrators.push_back(r.integrator);
        noise += r.null_sd;
        ++n_noise;
        lo_x = std::min(lo_x, std::log10(r.nfe));
        hi_x = std::max(hi_x, std::log10(r.nfe));
      }
    if (n_noise == 0) continue;
    noise /= n_noise;
    double hi_y = std::log10(noise);
    for (const Row& r : rows)
      if (r.density + ", " + r.score + ", " + r.sde == groups[gi] && !r.failed && r.nfe > 0)
        hi_y = std::max(hi_y, std::log10(std::max(r.mmd2, 0.5 * noise)));
    const double lo_y = std::log10(0.5 * noise);
    panel.xlim(lo_x - 0.05, hi_x + 0.05 + 0.8 * (hi_x - lo_x))
        .ylim(lo_y - 0.05 * (hi_y - lo_y) - 0.05, hi_y + 0.05 * (hi_y - lo_y) + 0.05);
    panel.line({lo_x, hi_x}, {std::log10(noise), std::log10(noise)}, scorekit_examples::colors::light_grey,
               3.0);
    for (std::size_t k = 0; k < integrators.size(); ++k) {
      std::vector<std::pair<double, double>> pts;
      for (const Row& r : rows)
        if (r.density + ", " + r.score + ", " + r.sde == groups[gi] && !r.failed && r.nfe > 0 &&
            r.integrator == integrators[k])
          pts.push_back({std::log10(r.nfe), std::log10(std::max(r.mmd2, 0.5 * noise))});
      std::sort(pts.begin(), pts.end());
      std::vector<double> xs, ys;
      for (const auto& p : pts) {
        xs.push_back(p.first);
        ys.push_back(p.second);
      }
      const auto c = colour(integrators[k]);
      panel.line(xs, ys, c, 1.8, integrators[k]);
      panel.scatter(xs, ys, c, 2.5);
    }
  }
  fig.save(path);
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
  const int n = opt.particles;
  std::printf("scorekit example: reverse-SDE integrators against NFE, %d particles a run, %s (%d threads)\n",
              n, Exec::name(), Exec().concurrency());

  std::vector<Row> rows;
  const SweepPlan exact_plan{{10, 20, 50, 100, 200, 500}, {1e-1, 1e-2, 1e-3, 1e-4, 1e-5}, n, true};
  for (const MixtureSpec& spec : {two_modes(), ring()}) {
    const auto target = make_target<double>(spec, "exact", n);
    sweep(target, scorekit::PerturbedMixtureScore<double, Mem>(target.mixture), exact_plan, rows);
  }

  if (opt.trained) {
    // Each trained-score evaluation is two passes through the network: fewer particles and grids.
    const SweepPlan trained_plan{{10, 20, 50, 100}, {1e-2, 1e-3, 1e-4}, opt.trained_particles, false};
    for (const MixtureSpec& spec : {two_modes(), ring()}) {
      const auto target = make_target<float>(spec, "trained", opt.trained_particles);
      const TrainedScore trained = train_score(target.mixture, opt.train_steps, 31);
      std::printf("  %s: trained the network, %ld steps in %.1f s, loss %.4g (last 10%% of steps)\n",
                  spec.name.c_str(), opt.train_steps, trained.seconds, trained.loss);
      print_score_error(target.mixture, trained.model);
      sweep(target, trained.model, trained_plan, rows);
    }
  }

  print_tables(rows);
  std::printf(
      "\nMMD^2: unbiased (so it can be negative), RBF kernel with one bandwidth per density (the median\n"
      "heuristic on exact samples), against as many exact samples of the data as the run has particles (%d,\n"
      "or %d for the trained score); values within about 2 noise levels of 0 cannot be told from exact\n"
      "sampling at this size. Mode-weight error: max over the modes of |fraction of samples nearest the\n"
      "mode - its weight|; SE is the binomial standard error of that mode's fraction, and a maximum over 8\n"
      "modes is typically about 2 SE for exact samples. NFE: score evaluations per particle (each\n"
      "trained-score evaluation is two network passes). Runs start from exact samples of p_T.\n",
      n, opt.trained_particles);
  const std::string md = opt.output + "/reverse_sde_sweep.md";
  write_markdown(rows, md);
  const std::string png = opt.output + "/reverse_sde_sweep.png";
  plot(rows, png);
  std::printf("wrote %s and %s\ntotal %.1f s\n", md.c_str(), png.c_str(), seconds_since(t_start));
  return 0;
}
