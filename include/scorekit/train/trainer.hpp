// The training loop: minibatches drawn from a dataset in a view, any Objective of objective/, Adam, an
// exponential moving average of the weights, per-level loss logging with a progress line, and
// checkpoints from which a run resumes bitwise as if it had never stopped.
//
// One step is two kernels. The first splits the minibatch into a FIXED number of chunks (a function of
// the batch size and the backend only, never of the thread count); each chunk runs its blocks of B
// samples through the objective, accumulating the gradient in its own row. The second (Adam) sums the
// rows in order and updates the weights. Minibatch indices and all noise come from the counter-based
// generator keyed by (seed, sample, step), so a run is bitwise reproducible for any number of threads.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/nn/adam.hpp>
#include <scorekit/nn/checkpoint.hpp>
#include <scorekit/nn/ema.hpp>
#include <scorekit/nn/init.hpp>
#include <scorekit/objective/objective_common.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace scorekit {
namespace train {

/// A training step whose loss was NaN or infinite; the weights are those before it.
class non_finite_loss : public error {
 public:
  non_finite_loss(const std::string& what, long step) : error(what), m_step(step) {}
  long step() const noexcept { return m_step; }

 private:
  long m_step;
};

struct TrainSettings {
  int batch_size = 128;
  std::uint64_t seed = 0;          ///< minibatches and the objective's noise
  nn::AdamSettings adam{};         ///< learning rate 1e-3 by default
  double ema_rate = 0.999;         ///< NCSNv2's rate; 0 makes the average the current weights
  int log_every = 0;               ///< steps between progress lines (0: silent)
  std::ostream* log = &std::cout;  ///< where progress lines go
  int gradient_chunks = 0;         ///< 0: automatic (see Trainer::chunks())
};

/// The mean loss of each noise level over a stretch of steps (count = samples seen at that level).
struct LevelLoss {
  double mean = 0;
  double count = 0;
};

struct TrainReport {
  long steps = 0;                 ///< steps taken by this call
  double seconds = 0;             ///< wall time of this call
  double final_loss = 0;          ///< mean loss of the last step
  std::vector<LevelLoss> levels;  ///< per-level mean loss over the last logging window (or the whole call)
};

/// Samples per block on a host backend (one 512-bit vector of float, or of double, per row).
template <class Real, class ExecSpace>
constexpr int default_block() {
#if defined(KOKKOS_ENABLE_CUDA) || defined(KOKKOS_ENABLE_HIP)
  if (!std::is_same<typename ExecSpace::memory_space, Kokkos::HostSpace>::value) return 1;
#endif
  return sizeof(Real) == 4 ? 16 : 8;
}

template <class Net, class Objective, class ExecSpace = Kokkos::DefaultExecutionSpace, class Real = float,
          int Block = default_block<Real, ExecSpace>()>
class Trainer {
 public:
  using memory_space = typename ExecSpace::memory_space;
  using vector_type = Kokkos::View<Real*, memory_space>;
  using data_type = Kokkos::View<const Real**, Kokkos::LayoutRight, memory_space>;
  static constexpr int block = Block;

  /// Weights initialised by `init` from init_seed.
  Trainer(Objective objective, TrainSettings settings, std::uint64_t init_seed = 0,
          nn::Init init = nn::Init::glorot_uniform)
      : m_objective(objective),
        m_settings(settings),
        m_params("scorekit::Trainer::params", std::size_t(Net::n_params)),
        m_adam(Net::n_params, settings.adam) {
    if (settings.batch_size < 1)
      throw invalid_argument(
          detail::concat("Trainer: batch_size must be at least 1, got ", settings.batch_size));
    if (!(settings.ema_rate >= 0 && settings.ema_rate < 1))
      throw invalid_argument(detail::concat("Trainer: ema_rate must be in [0, 1), got ", settings.ema_rate));
    if (settings.log_every < 0 || settings.gradient_chunks < 0)
      throw invalid_argument("Trainer: log_every and gradient_chunks must be >= 0");
    const auto segments = Net::segments();
    nn::initialize(m_params, segments.data(), int(segments.size()), init, init_seed);
    m_ema = std::make_unique<nn::Ema<Real, ExecSpace>>(m_params, Real(settings.ema_rate));
    const int n_blocks = (settings.batch_size + Block - 1) / Block;
    m_chunks =
        settings.gradient_chunks > 0 ? std::min(settings.gradient_chunks, n_blocks) : auto_chunks(n_blocks);
    m_work_per_chunk =
        Objective::template workspace_size<Net, Block>() + objective.extra_workspace_size() + Block * Net::in;
    m_grad = Kokkos::View<Real**, Kokkos::LayoutRight, memory_space>("scorekit::Trainer::gradient", m_chunks,
                                                                     Net::n_params);
    m_stats = Kokkos::View<Real**, Kokkos::LayoutRight, memory_space>("scorekit::Trainer::stats", m_chunks,
                                                                      2 * objective.n_levels());
    m_work = Kokkos::View<Real*, memory_space>("scorekit::Trainer::work",
                                               std::size_t(m_chunks) * m_work_per_chunk);
  }

  /// Trains for n_steps minibatches of `data` (n x d, d = Net::in). Throws when a step's loss is not
  /// finite (naming the step; the weights stay those before it) and on a data view of the wrong shape.
  TrainReport train(const data_type& data, long n_steps) {
    constexpr const char* where = "scorekit::Trainer::train";
    require_dimension(std::int64_t(data.extent(1)), Net::in, "the data's columns", where);
    if (data.extent(0) == 0) throw invalid_argument(detail::concat(where, ": the dataset is empty"));
    if (n_steps < 0) throw invalid_argument(detail::concat(where, ": n_steps must be >= 0, got ", n_steps));
    ScopedRegion region(where);
    const int levels = m_objective.n_levels();
    std::vector<double> window_sum(levels, 0.0), window_count(levels, 0.0);
    TrainReport report;
    const auto start = std::chrono::steady_clock::now();
    auto window_start = start;
    long window_steps = 0;
    for (long s = 0; s < n_steps; ++s) {
      const double loss = one_step(data, window_sum, window_count);
      report.final_loss = loss;
      ++report.steps;
      ++window_steps;
      const bool last = s + 1 == n_steps;
      if ((m_settings.log_every > 0 && m_step % m_settings.log_every == 0) || last) {
        report.levels.assign(levels, LevelLoss{});
        for (int l = 0; l < levels; ++l)
          report.levels[l] =
              LevelLoss{window_count[l] > 0 ? window_sum[l] / window_count[l] : 0.0, window_count[l]};
        const auto now = std::chrono::steady_clock::now();
        if (m_settings.log_every > 0 && m_settings.log)
          log_line(report.levels, window_steps / std::chrono::duration<double>(now - window_start).count());
        if (!last) {
          std::fill(window_sum.begin(), window_sum.end(), 0.0);
          std::fill(window_count.begin(), window_count.end(), 0.0);
          window_start = now;
          window_steps = 0;
        }
      }
    }
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return report;
  }

  const vector_type& parameters() const { return m_params; }
  /// The exponential moving average of the weights (NCSNv2 samples with these).
  Kokkos::View<const Real*, memory_space> ema_parameters() const { return m_ema->shadow(); }
  long step() const { return m_step; }
  int chunks() const { return m_chunks; }
  const Objective& objective() const { return m_objective; }
  const TrainSettings& settings() const { return m_settings; }

  /// What a checkpoint must match: the network, the objective, the value type and the block.
  std::string signature() const {
    return Net::name() + " | " + m_objective.name() + " | " + (sizeof(Real) == 4 ? "float" : "double");
  }

  /// Writes weights, EMA, Adam state and step atomically (nn/checkpoint.hpp).
  void save(const std::string& path) const {
    nn::Checkpoint cp;
    cp.set_signature(signature());
    cp.set_step(std::uint64_t(m_step));
    cp.set_metadata("seed", std::to_string(m_settings.seed));
    cp.set_metadata("batch_size", std::to_string(m_settings.batch_size));
    cp.set_metadata("gradient_chunks", std::to_string(m_chunks));
    cp.add("params", m_params);
    cp.add("ema", m_ema->shadow());
    cp.add("adam_m", m_adam.moment1());
    cp.add("adam_v", m_adam.moment2());
    const std::uint64_t adam_steps = std::uint64_t(m_adam.steps());
    cp.add("adam_steps", &adam_steps, 1);
    nn::save_checkpoint(path, cp);
  }

  /// Restores a checkpoint written by save() with the same signature; training then continues exactly
  /// as the saved run would have (same seed, batch size and chunking required, and checked).
  void load(const std::string& path) {
    const nn::Checkpoint cp = nn::load_checkpoint(path);
    cp.require_signature(signature());
    for (const auto& kv : {std::make_pair(std::string("seed"), std::to_string(m_settings.seed)),
                           std::make_pair(std::string("batch_size"), std::to_string(m_settings.batch_size)),
                           std::make_pair(std::string("gradient_chunks"), std::to_string(m_chunks))})
      if (cp.metadata(kv.first) != kv.second)
        throw invalid_argument(detail::concat("Trainer::load: '", path, "' was written with ", kv.first,
                                              " = ", cp.metadata(kv.first), ", this trainer has ", kv.second,
                                              "; resuming would not continue the same run"));
    vector_type params("params", Net::n_params), ema("ema", Net::n_params), m("m", Net::n_params),
        v("v", Net::n_params);
    cp.get_into("params", params);
    cp.get_into("ema", ema);
    cp.get_into("adam_m", m);
    cp.get_into("adam_v", v);
    const auto adam_steps = cp.template get<std::uint64_t>("adam_steps", 1);
    Kokkos::deep_copy(m_params, params);
    m_ema->set_shadow(ema);
    m_adam.set_state(std::int64_t(adam_steps[0]), m, v);
    m_step = long(cp.step());
  }

 private:
  static int auto_chunks(int n_blocks) {
    // Host: a few chunks per core is enough and keeps the per-chunk gradient rows in cache; device:
    // one chunk per block, for parallelism.
    if (std::is_same<memory_space, Kokkos::HostSpace>::value) return std::min(n_blocks, 16);
    return n_blocks;
  }

  double one_step(const data_type& data, std::vector<double>& window_sum, std::vector<double>& window_count) {
    const int batch = m_settings.batch_size, chunks = m_chunks, levels = m_objective.n_levels();
    const int n_blocks = (batch + Block - 1) / Block;
    const std::int64_t n_data = std::int64_t(data.extent(0));
    const std::uint64_t seed = m_settings.seed;
    const auto step = std::uint32_t(m_step);
    const Objective objective = m_objective;
    const auto grad = m_grad;
    const auto stats = m_stats;
    const auto work = m_work;
    const auto params = m_params;
    const int work_per_chunk = m_work_per_chunk;
    Kokkos::parallel_for(
        "scorekit::Trainer::gradient", Kokkos::RangePolicy<ExecSpace>(0, chunks), KOKKOS_LAMBDA(const int c) {
          Real* g = &grad(c, 0);
          Real* st = &stats(c, 0);
          for (int j = 0; j < Net::n_params; ++j) g[j] = Real(0);
          for (int j = 0; j < 2 * levels; ++j) st[j] = Real(0);
          Real* w = work.data() + std::size_t(c) * work_per_chunk;
          Real* x = w + (work_per_chunk - Block * Net::in);
          const int first_block = int(std::int64_t(c) * n_blocks / chunks);
          const int last_block = int(std::int64_t(c + 1) * n_blocks / chunks);
          for (int blk = first_block; blk < last_block; ++blk) {
            const int first = blk * Block;
            const int nb = batch - first < Block ? batch - first : Block;
            for (int b = 0; b < nb; ++b) {
              // Sampling with replacement: the index of minibatch slot (first + b) at this step.
              CounterRng<Real> rng(seed, std::uint64_t(first + b), step, RngStream::init);
              const Philox4x32Block bits = rng.bits();
              const std::uint64_t r = (std::uint64_t(bits.v[0]) << 32) | bits.v[1];
              const std::int64_t index = std::int64_t(r % std::uint64_t(n_data));
              for (int i = 0; i < Net::in; ++i) x[b * Net::in + i] = data(index, i);
            }
            objective::SampleKey key{seed, step, std::uint32_t(first)};
            objective.template accumulate<Net, Block>(params.data(), nb, x, key, g, st, w);
          }
        });
    auto host_stats = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), m_stats);
    double total = 0, count = 0;
    std::vector<double> level_sum(levels, 0.0), level_count(levels, 0.0);
    for (int c = 0; c < chunks; ++c)
      for (int l = 0; l < levels; ++l) {
        level_sum[l] += double(host_stats(c, 2 * l));
        level_count[l] += double(host_stats(c, 2 * l + 1));
      }
    for (int l = 0; l < levels; ++l) {
      total += level_sum[l];
      count += level_count[l];
    }
    const double loss = total / count;
    if (!std::isfinite(loss))
      throw non_finite_loss(
          detail::concat("scorekit::Trainer: the loss of step ", m_step, " is ", loss,
                         "; the weights are those before that step (lower the learning rate, or "
                         "check the data for NaN/inf)"),
          m_step);
    m_adam.step(m_params, m_grad, Real(1) / Real(batch));
    m_ema->update(m_params);
    ++m_step;
    for (int l = 0; l < levels; ++l) {
      window_sum[l] += level_sum[l];
      window_count[l] += level_count[l];
    }
    return loss;
  }

  void log_line(const std::vector<LevelLoss>& levels, double steps_per_second) const {
    double sum = 0, count = 0;
    for (const auto& l : levels) {
      sum += l.mean * l.count;
      count += l.count;
    }
    char head[160];
    std::snprintf(head, sizeof(head), "step %8ld  loss %10.5g  %9.1f steps/s", m_step, sum / count,
                  steps_per_second);
    std::string line(head);
    if (levels.size() > 1) {
      line += "  per level:";
      for (const auto& l : levels) {
        char item[32];
        std::snprintf(item, sizeof(item), " %.3g", l.mean);
        line += item;
      }
    }
    *m_settings.log << line << '\n' << std::flush;
  }

  Objective m_objective;
  TrainSettings m_settings;
  vector_type m_params;
  nn::Adam<Real, ExecSpace> m_adam;
  std::unique_ptr<nn::Ema<Real, ExecSpace>> m_ema;
  Kokkos::View<Real**, Kokkos::LayoutRight, memory_space> m_grad, m_stats;
  Kokkos::View<Real*, memory_space> m_work;
  int m_chunks = 1, m_work_per_chunk = 0;
  long m_step = 0;
};

}  // namespace train
}  // namespace scorekit
