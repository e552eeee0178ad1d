// Annealed Langevin dynamics (Song and Ermon 2019, "Generative modeling by estimating gradients of the
// data distribution", Algorithm 1): for each noise level sigma_1 > ... > sigma_L, T steps of
//   x <- x + (alpha_i / 2) s(x, sigma_i) + sqrt(alpha_i) z,   alpha_i = eps sigma_i^2 / sigma_L^2,
// optionally followed by one denoising step x <- x + sigma_L^2 s(x, sigma_L) (Tweedie's formula; Song and
// Ermon 2020, "Improved techniques", appendix; Jolicoeur-Martineau et al. 2021).
#pragma once

#include <scorekit/core/random.hpp>
#include <scorekit/sample/sampler_common.hpp>

#include <algorithm>
#include <vector>

namespace scorekit {

template <class Real = double>
struct AnnealedLangevinSettings {
  std::vector<Real> sigmas;  ///< the noise ladder, strictly decreasing, all > 0
  Real step_size = Real(0);  ///< eps > 0: the step at the last level is eps
  int steps_per_level = 0;   ///< T >= 1
  bool final_denoise = false;
  std::uint64_t seed = 0;
  int record_every = 0;  ///< record every k steps, counted over all levels (0: none)
};

/// Checks a noise ladder: non-empty, positive, finite and strictly decreasing.
template <class Real>
void check_noise_ladder(const std::vector<Real>& sigmas, const char* where) {
  if (sigmas.empty()) throw invalid_argument(detail::concat(where, ": the noise ladder is empty"));
  for (std::size_t i = 0; i < sigmas.size(); ++i) {
    if (!(sigmas[i] > Real(0)) || !(sigmas[i] < std::numeric_limits<Real>::infinity()))
      throw invalid_argument(
          detail::concat(where, ": noise level ", i, " must be positive and finite, got ", sigmas[i]));
    if (i > 0 && !(sigmas[i] < sigmas[i - 1]))
      throw invalid_argument(detail::concat(where,
                                            ": the noise ladder must be strictly decreasing, but level ", i,
                                            " (", sigmas[i], ") >= level ", i - 1, " (", sigmas[i - 1], ")"));
  }
}

namespace detail {

/// Per level of an annealed Langevin run: sigma_i, alpha_i / 2 and sqrt(alpha_i).
template <class Real, class Mem>
using LevelTable = Kokkos::View<Real* [3], Mem>;

/// Annealed Langevin one particle a work item (any noise-conditional score model).
template <class ExecSpace, class ScoreModel, class View, class Run, class Levels>
void annealed_langevin_particles(const ExecSpace& exec, const ScoreModel& model, const View& x,
                                 const Run& run, const Levels& level, int n_levels, int steps, bool denoise,
                                 typename ScoreModel::value_type denoise_factor, std::uint64_t seed) {
  using Real = typename ScoreModel::value_type;
  Kokkos::parallel_for(
      "scorekit::annealed_langevin", Kokkos::RangePolicy<ExecSpace>(exec, 0, run.n),
      KOKKOS_LAMBDA(const std::int64_t i) {
        Real* xi = &x(i, 0);
        Real* w = run.workspace(i);
        Real* g = run.vector(i, 0);
        if (!run.after_step(i, 0, xi)) return;
        std::int64_t t = 0;
        for (int l = 0; l < n_levels; ++l) {
          const Real sigma = level(l, 0), half_alpha = level(l, 1), noise = level(l, 2);
          for (int s = 0; s < steps; ++s) {
            ++t;
            CounterRng<Real> rng(seed, std::uint64_t(i), std::uint64_t(t));
            noise_conditional_score(model, static_cast<const Real*>(xi), sigma, g, w);
            for (int j = 0; j < run.d; ++j) xi[j] += half_alpha * g[j] + noise * rng.normal();
            if (!run.after_step(i, t, xi)) return;
          }
        }
        if (denoise) {
          ++t;
          noise_conditional_score(model, static_cast<const Real*>(xi), level(n_levels - 1, 0), g, w);
          for (int j = 0; j < run.d; ++j) xi[j] += denoise_factor * g[j];
          run.after_step(i, t, xi);
        }
      });
}

/// Annealed Langevin in blocks of `block` consecutive particles a work item, for models whose
/// score_block() shares its reads of the model's parameters between the particles of a block. Each
/// particle keeps its own random stream, so the samples are those of the one-particle kernel up to the
/// rounding of the score.
template <class ExecSpace, class ScoreModel, class View, class Run, class Levels>
void annealed_langevin_blocks(const ExecSpace& exec, const ScoreModel& model, const View& x, const Run& run,
                              const Levels& level, int n_levels, int steps, bool denoise,
                              typename ScoreModel::value_type denoise_factor, std::uint64_t seed, int block) {
  using Real = typename ScoreModel::value_type;
  constexpr int max_block = ScoreModel::max_block;
  const std::int64_t n_blocks = (run.n + block - 1) / block;
  const int x_stride = int(x.stride(0)), w_stride = int(run.work.stride(0)),
            v_stride = int(run.vectors.stride(0));
  Kokkos::parallel_for(
      "scorekit::annealed_langevin_blocks", Kokkos::RangePolicy<ExecSpace>(exec, 0, n_blocks),
      KOKKOS_LAMBDA(const std::int64_t blk) {
        const std::int64_t i0 = blk * block;
        const int nb = int(run.n - i0 < block ? run.n - i0 : block);
        bool alive[max_block];
        for (int b = 0; b < nb; ++b) alive[b] = run.after_step(i0 + b, 0, &x(i0 + b, 0));
        std::int64_t t = 0;
        // One step of every particle of the block: Langevin (drift_only == 0) or the denoising step.
        auto advance = [&](Real sigma, Real half_alpha, Real noise, Real drift_only) {
          ++t;
          model.score_block(nb, &x(i0, 0), x_stride, sigma, run.vector(i0, 0), v_stride, run.workspace(i0),
                            w_stride);
          for (int b = 0; b < nb; ++b) {
            if (!alive[b]) continue;
            Real* xi = &x(i0 + b, 0);
            const Real* g = run.vector(i0 + b, 0);
            if (drift_only > 0) {
              for (int j = 0; j < run.d; ++j) xi[j] += drift_only * g[j];
            } else {
              CounterRng<Real> rng(seed, std::uint64_t(i0 + b), std::uint64_t(t));
              for (int j = 0; j < run.d; ++j) xi[j] += half_alpha * g[j] + noise * rng.normal();
            }
            alive[b] = run.after_step(i0 + b, t, xi);
          }
        };
        for (int l = 0; l < n_levels; ++l)
          for (int s = 0; s < steps; ++s) advance(level(l, 0), level(l, 1), level(l, 2), Real(0));
        if (denoise) advance(level(n_levels - 1, 0), Real(0), Real(0), denoise_factor);
      });
}

}  // namespace detail

/// Runs annealed Langevin dynamics with a noise-conditional score model on every particle of x
/// (overwritten). Steps are numbered 1..L*T over all levels (L*T + 1 is the denoising step), which is
/// what the random stream and trajectory records are keyed by.
template <class ExecSpace, class ScoreModel, class View>
SamplerResult<typename ScoreModel::value_type, typename View::memory_space> annealed_langevin(
    const ExecSpace& exec, const ScoreModel& model, const View& x,
    const AnnealedLangevinSettings<typename ScoreModel::value_type>& settings) {
  assert_noise_conditional_score<ScoreModel>();
  using Real = typename ScoreModel::value_type;
  using Mem = typename View::memory_space;
  const char* where = "scorekit::annealed_langevin";
  check_noise_ladder(settings.sigmas, where);
  require_positive(settings.step_size, "step_size", where);
  if (settings.steps_per_level < 1)
    throw invalid_argument(
        detail::concat(where, ": steps_per_level must be >= 1, got ", settings.steps_per_level));
  const int n_levels = int(settings.sigmas.size());
  const int steps = settings.steps_per_level;
  const bool denoise = settings.final_denoise;
  const std::int64_t total_steps = std::int64_t(n_levels) * steps + (denoise ? 1 : 0);
  // per particle: model workspace, s(x)
  const auto run = detail::start_run(model, x, total_steps, settings.record_every, 1, where);

  detail::LevelTable<Real, Mem> level("scorekit::annealed_langevin::levels", n_levels);
  auto h_level = Kokkos::create_mirror_view(level);
  const double sigma_last = settings.sigmas.back();
  for (int l = 0; l < n_levels; ++l) {
    const double s = settings.sigmas[std::size_t(l)];
    const double alpha = double(settings.step_size) * s * s / (sigma_last * sigma_last);
    h_level(l, 0) = Real(s);
    h_level(l, 1) = Real(alpha / 2);
    h_level(l, 2) = Real(std::sqrt(alpha));
  }
  Kokkos::deep_copy(level, h_level);
  const Real denoise_factor = Real(sigma_last * sigma_last);

  ScopedRegion region(where);
  Kokkos::Timer timer;
  int block = 1;
  if constexpr (policy_traits<ScoreModel>::has_score_block)
    block = std::min(model.block_size(), int(ScoreModel::max_block));
  if (block > 1) {
    if constexpr (policy_traits<ScoreModel>::has_score_block)
      detail::annealed_langevin_blocks(exec, model, x, run, level, n_levels, steps, denoise, denoise_factor,
                                       settings.seed, block);
  } else {
    detail::annealed_langevin_particles(exec, model, x, run, level, n_levels, steps, denoise, denoise_factor,
                                        settings.seed);
  }
  return detail::finish_run(exec, run, x, timer, where, total_steps, total_steps);
}

}  // namespace scorekit
