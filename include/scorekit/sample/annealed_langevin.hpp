// Annealed Langevin dynamics (Song and Ermon 2019, "Generative modeling by estimating gradients of the
// data distribution", Algorithm 1): for each noise level sigma_1 > ... > sigma_L, T steps of
//   x <- x + (alpha_i / 2) s(x, sigma_i) + sqrt(alpha_i) z,   alpha_i = eps sigma_i^2 / sigma_L^2,
// optionally followed by one denoising step x <- x + sigma_L^2 s(x, sigma_L) (Tweedie's formula; Song and
// Ermon 2020, "Improved techniques", appendix; Jolicoeur-Martineau et al. 2021).
//
// One step at one level is a device-callable value type (AnnealedLangevinStep) with caller-owned scratch,
// usable inside a user's own kernel; annealed_langevin() loops over a device table of them
// (annealed_langevin_ladder), one particle or one block of particles a work item.
#pragma once

#include <scorekit/core/batch_model.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/sample/sampler_common.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
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
  /// The global index of row 0 of the particles: particle i draws its noise as particle first_particle + i
  /// would, so a shard of a larger run (distributed/) samples bitwise as that run does.
  std::uint64_t first_particle = 0;
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

/// One annealed Langevin step at one noise level sigma_i, callable inside any kernel (the body of
/// annealed_langevin()): x' = x + (alpha_i / 2) s(x, sigma_i) + sqrt(alpha_i) z,
/// alpha_i = eps sigma_i^2 / sigma_L^2; and the final denoising step x' = x + sigma_L^2 s(x, sigma_L),
/// made by the last level's step.
///
/// Scratch, owned by the caller, per particle: `vectors`, n_vectors * dim values (s(x, sigma_i)), and
/// `work`, the model's workspace_size(model) values; one buffer of scratch_size(dim, workspace_size(model))
/// values holds both, vectors first.
/// State kept between steps: none but x (and the step count t, which keys the noise).
/// Randomness: z from CounterRng<Real>(seed, particle, t), where annealed_langevin() numbers the steps
/// t = 1 .. L T over all levels (level l, 0-based, step s, 0-based: t = l T + s + 1); the denoising step
/// draws nothing.
template <class Real = double>
class AnnealedLangevinStep {
 public:
  static constexpr int n_vectors = 1;
  /// Scratch values one particle needs: n_vectors * dim plus the model's workspace.
  static KOKKOS_INLINE_FUNCTION constexpr int scratch_size(int dim, int model_workspace) {
    return n_vectors * dim + model_workspace;
  }

  AnnealedLangevinStep() = default;
  /// The step at level sigma of a ladder whose last level is sigma_last, for the step size eps =
  /// step_size at that last level (sigma, eps > 0: not checked here). alpha is computed in double, as
  /// annealed_langevin() does, so that single-precision runs agree bitwise too.
  KOKKOS_INLINE_FUNCTION AnnealedLangevinStep(double sigma, double step_size, double sigma_last, int dim)
      : m_sigma(Real(sigma)), m_denoise(Real(sigma * sigma)), m_dim(dim) {
    const double alpha = step_size * sigma * sigma / (sigma_last * sigma_last);
    m_half_alpha = Real(alpha / 2);
    m_noise = Real(math::sqrt(alpha));
  }

  KOKKOS_INLINE_FUNCTION Real sigma() const { return m_sigma; }
  KOKKOS_INLINE_FUNCTION int dim() const { return m_dim; }

  /// One Langevin step at this level: s(x, sigma) into vectors, then update(). Nothing to return.
  template <class ScoreModel>
  KOKKOS_INLINE_FUNCTION void step(const ScoreModel& model, Real* x, std::uint64_t seed,
                                   std::int64_t particle, std::int64_t t, Real* vectors, Real* work) const {
    check_model<ScoreModel>();
    noise_conditional_score(model, static_cast<const Real*>(x), m_sigma, vectors, work);
    update(x, static_cast<const Real*>(vectors), seed, particle, t);
  }

  /// The move alone, given g = s(x, sigma) (dim values) evaluated by the caller, e.g. for a block of
  /// particles at once with a model's score_block().
  KOKKOS_INLINE_FUNCTION void update(Real* x, const Real* g, std::uint64_t seed, std::int64_t particle,
                                     std::int64_t t) const {
    update_block<1>(1, x, m_dim, g, m_dim, seed, particle, t);
  }

  /// update() of nb <= N particles at once: particle b at x + b x_stride, its score at g + b g_stride,
  /// its noise that of particle first + b. The normals are drawn for the block side by side
  /// (CounterRng::for_each_normal_block); each particle gets update()'s bits.
  template <int N>
  KOKKOS_INLINE_FUNCTION void update_block(int nb, Real* x, int x_stride, const Real* g, int g_stride,
                                           std::uint64_t seed, std::int64_t first, std::int64_t t) const {
    detail::BlockRngs<Real, N> rngs(seed, std::uint64_t(first), std::uint64_t(t));
    CounterRng<Real>::for_each_normal_block(nb, m_dim, rngs, [&](int b, int j, Real z) {
      x[b * x_stride + j] += m_half_alpha * g[b * g_stride + j] + m_noise * z;
    });
  }

  /// The final denoising step at this level (call it on the last level's step): x' = x + sigma^2 s(x,
  /// sigma), Tweedie's formula. Same scratch as step().
  template <class ScoreModel>
  KOKKOS_INLINE_FUNCTION void denoise(const ScoreModel& model, Real* x, Real* vectors, Real* work) const {
    check_model<ScoreModel>();
    noise_conditional_score(model, static_cast<const Real*>(x), m_sigma, vectors, work);
    denoise_update(x, static_cast<const Real*>(vectors));
  }

  /// The denoising move alone, given g = s(x, sigma).
  KOKKOS_INLINE_FUNCTION void denoise_update(Real* x, const Real* g) const {
    for (int j = 0; j < m_dim; ++j) x[j] += m_denoise * g[j];
  }

 private:
  template <class ScoreModel>
  static KOKKOS_INLINE_FUNCTION constexpr void check_model() {
    static_assert(
        is_noise_conditional_score_v<ScoreModel> &&
            std::is_same<typename ScoreModel::value_type, Real>::value,
        "scorekit::AnnealedLangevinStep<Real> needs a noise-conditional score model with value_type "
        "Real (core/traits.hpp)");
  }

  Real m_sigma = Real(0), m_denoise = Real(0), m_half_alpha = Real(0), m_noise = Real(0);
  int m_dim = 0;
};

/// The steps of a whole ladder in memory space Mem, level l at index l: what a kernel that runs annealed
/// Langevin itself reads (annealed_langevin() does). Checks the ladder (check_noise_ladder) and eps > 0.
template <class MemorySpace, class Real>
Kokkos::View<AnnealedLangevinStep<Real>*, MemorySpace> annealed_langevin_ladder(
    const std::vector<Real>& sigmas, Real step_size, int dim) {
  const char* where = "scorekit::annealed_langevin_ladder";
  check_noise_ladder(sigmas, where);
  require_positive(step_size, "step_size", where);
  Kokkos::View<AnnealedLangevinStep<Real>*, MemorySpace> ladder(std::string(where), sigmas.size());
  auto h_ladder = Kokkos::create_mirror_view(ladder);
  const double sigma_last = sigmas.back();
  for (std::size_t l = 0; l < sigmas.size(); ++l)
    h_ladder(l) = AnnealedLangevinStep<Real>(sigmas[l], step_size, sigma_last, dim);
  Kokkos::deep_copy(ladder, h_ladder);
  return ladder;
}

namespace detail {

/// Annealed Langevin one particle a work item (any noise-conditional score model).
template <class ExecSpace, class ScoreModel, class View, class Run, class Ladder>
void annealed_langevin_particles(const ExecSpace& exec, const ScoreModel& model, const View& x,
                                 const Run& run, const Ladder& level, int steps, bool denoise,
                                 std::uint64_t seed, std::int64_t first) {
  using Real = typename ScoreModel::value_type;
  const int n_levels = int(level.extent(0));
  Kokkos::parallel_for(
      "scorekit::annealed_langevin", Kokkos::RangePolicy<ExecSpace>(exec, 0, run.n),
      KOKKOS_LAMBDA(const std::int64_t i) {
        Real* xi = &x(i, 0);
        Real* w = run.workspace(i);
        Real* g = run.vector(i, 0);
        if (!run.after_step(i, 0, xi)) return;
        std::int64_t t = 0;
        for (int l = 0; l < n_levels; ++l) {
          const AnnealedLangevinStep<Real> level_step = level(l);
          for (int s = 0; s < steps; ++s) {
            ++t;
            level_step.step(model, xi, seed, first + i, t, g, w);
            if (!run.after_step(i, t, xi)) return;
          }
        }
        if (denoise) {
          ++t;
          level(n_levels - 1).denoise(model, xi, g, w);
          run.after_step(i, t, xi);
        }
      });
}

/// Annealed Langevin in blocks of `block` consecutive particles a work item, for models whose
/// score_block() shares its reads of the model's parameters between the particles of a block. Each
/// particle keeps its own random stream, so the samples are those of the one-particle kernel up to the
/// rounding of the score.
template <class ExecSpace, class ScoreModel, class View, class Run, class Ladder>
void annealed_langevin_blocks(const ExecSpace& exec, const ScoreModel& model, const View& x, const Run& run,
                              const Ladder& level, int steps, bool denoise, std::uint64_t seed,
                              std::int64_t first, int block) {
  using Real = typename ScoreModel::value_type;
  constexpr int max_block = ScoreModel::max_block;
  const int n_levels = int(level.extent(0));
  const int x_stride = int(x.stride(0)), w_stride = int(run.work.stride(0)),
            v_stride = int(run.vectors.stride(0));
  Kokkos::parallel_for(
      "scorekit::annealed_langevin_blocks",
      Kokkos::RangePolicy<ExecSpace>(exec, 0, block_count(run.n, block)),
      KOKKOS_LAMBDA(const std::int64_t index) {
        ParticleBlock<max_block> blk(index, block, run, x);
        const std::int64_t i0 = blk.first;
        const int nb = blk.size;
        std::int64_t t = 0;
        // One step of every particle of the block: Langevin at `step`'s level, or the denoising step.
        // (A particle that went non-finite keeps being moved, unread, until the block ends.)
        auto advance = [&](const AnnealedLangevinStep<Real>& step, bool denoising) {
          ++t;
          model.score_block(nb, &x(i0, 0), x_stride, step.sigma(), run.vector(i0, 0), v_stride,
                            run.workspace(i0), w_stride);
          if (denoising)
            for (int b = 0; b < nb; ++b) step.denoise_update(&x(i0 + b, 0), run.vector(i0 + b, 0));
          else
            step.template update_block<max_block>(nb, &x(i0, 0), x_stride, run.vector(i0, 0), v_stride, seed,
                                                  first + i0, t);
          blk.after_step(run, t, x);
        };
        for (int l = 0; l < n_levels; ++l) {
          const AnnealedLangevinStep<Real> level_step = level(l);
          for (int s = 0; s < steps; ++s) advance(level_step, false);
        }
        if (denoise) advance(level(n_levels - 1), true);
      });
}

/// Annealed Langevin batch-synchronously, for batch models (core/batch_model.hpp): per step one batched
/// score call over all particles at the level's sigma, then the same update() as the kernels above with
/// the same noise. A particle that goes non-finite is recorded (the run then throws, as the kernels do)
/// and its row is set to zeros, so the batch model is never handed a non-finite sample.
template <class ExecSpace, class BatchModel, class View, class Run, class Ladder>
void annealed_langevin_batched(const ExecSpace& exec, const BatchModel& model, const View& x, const Run& run,
                               const Ladder& level,
                               const std::vector<typename BatchModel::value_type>& sigmas, int steps,
                               bool denoise, std::uint64_t seed, std::int64_t first) {
  using Real = typename BatchModel::value_type;
  using Mem = typename View::memory_space;
  using Policy = Kokkos::RangePolicy<ExecSpace>;
  const char* where = "scorekit::annealed_langevin";
  const std::int64_t n = run.n;
  const int d = run.d;
  const BatchView<Real, Mem> g = run.vectors;  // n x d: AnnealedLangevinStep::n_vectors is 1
  const Kokkos::View<Real*, Mem> sigma(std::string(where) + "::sigma", std::size_t(n));
  const Kokkos::View<std::uint8_t*, Mem> stopped(std::string(where) + "::stopped", std::size_t(n));
  Kokkos::parallel_for(
      "scorekit::annealed_langevin::start", Policy(exec, 0, n),
      KOKKOS_LAMBDA(const std::int64_t i) { stopped(i) = !run.after_step(i, 0, &x(i, 0)); });
  exec.fence();
  run.bad.throw_if_set(where);  // a non-finite start would reach the model
  // Steps t = 1 .. L T (level l = (t - 1) / T), then t = L T + 1, the denoising step at the last level.
  // (A loop rather than a helper lambda: nvcc takes no device lambda inside another lambda.)
  const int n_levels = int(sigmas.size());
  const std::int64_t n_total = std::int64_t(n_levels) * steps + (denoise ? 1 : 0);
  for (std::int64_t t = 1; t <= n_total; ++t) {
    const bool denoising = t > std::int64_t(n_levels) * steps;
    const int l = denoising ? n_levels - 1 : int((t - 1) / steps);
    if (t == 1 || (!denoising && (t - 1) % steps == 0))
      Kokkos::deep_copy(exec, sigma, Real(sigmas[std::size_t(l)]));
    model.score(exec, ConstBatchView<Real, Mem>(x), NoiseLevels<Real, Mem>(sigma), g);
    Kokkos::parallel_for(
        "scorekit::annealed_langevin::update", Policy(exec, 0, n), KOKKOS_LAMBDA(const std::int64_t i) {
          if (stopped(i)) return;
          Real* xi = &x(i, 0);
          const AnnealedLangevinStep<Real> s = level(l);
          if (denoising)
            s.denoise_update(xi, &g(i, 0));
          else
            s.update(xi, &g(i, 0), seed, first + i, t);
          if (!run.after_step(i, t, xi)) {
            stopped(i) = 1;
            for (int j = 0; j < d; ++j) xi[j] = Real(0);
          }
        });
  }
}

}  // namespace detail

/// Runs annealed Langevin dynamics with a noise-conditional score model on every particle of x
/// (overwritten); with a batch model (core/batch_model.hpp) it runs batch-synchronously. Steps are
/// numbered 1..L*T over all levels (L*T + 1 is the denoising step), which is what the random stream and
/// trajectory records are keyed by.
template <class ExecSpace, class ScoreModel, class View>
SamplerResult<typename ScoreModel::value_type, typename View::memory_space> annealed_langevin(
    const ExecSpace& exec, const ScoreModel& model, const View& x,
    const AnnealedLangevinSettings<typename ScoreModel::value_type>& settings) {
  if constexpr (!is_batch_only_v<ScoreModel>) assert_noise_conditional_score<ScoreModel>();
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
  const auto run = detail::start_run(model, x, total_steps, settings.record_every,
                                     AnnealedLangevinStep<Real>::n_vectors, where);
  const auto level = annealed_langevin_ladder<Mem>(settings.sigmas, settings.step_size, run.d);

  ScopedRegion region(where);
  Kokkos::Timer timer;
  const std::int64_t first = std::int64_t(settings.first_particle);
  if constexpr (is_batch_only_v<ScoreModel>) {
    detail::annealed_langevin_batched(exec, model, x, run, level, settings.sigmas, steps, denoise,
                                      settings.seed, first);
  } else {
    int block = 1;
    if constexpr (policy_traits<ScoreModel>::has_score_block)
      block = std::min(model.block_size(), int(ScoreModel::max_block));
    if (block > 1) {
      if constexpr (policy_traits<ScoreModel>::has_score_block)
        detail::annealed_langevin_blocks(exec, model, x, run, level, steps, denoise, settings.seed, first,
                                         block);
    } else {
      detail::annealed_langevin_particles(exec, model, x, run, level, steps, denoise, settings.seed, first);
    }
  }
  return detail::finish_run(exec, run, x, timer, where, total_steps, total_steps);
}

}  // namespace scorekit
