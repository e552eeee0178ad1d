// The training loop: minibatches drawn from a dataset in a view, any Objective of objective/, Adam, an
// exponential moving average of the weights, per-level loss logging with a progress line, and
// checkpoints from which a run resumes bitwise as if it had never stopped.
//
// One step is a handful of kernels, launched without waiting for the device. The first splits the
// minibatch into a FIXED number of chunks (a function of the batch size and the backend only, never of
// the thread count); each chunk runs its blocks of B samples through the objective, accumulating the
// gradient and the per-level loss statistics in its own row. The second (one work item) adds the loss
// statistics in a fixed order into accumulators of the logging window and checks the loss. Then Adam
// sums the gradient rows in order, checks them and updates the weights, and the EMA follows. Minibatch
// indices and all noise come from the counter-based generator keyed by (seed, sample, step), so a run
// is bitwise reproducible for any number of threads.
//
// A NaN or infinite loss or gradient is recorded in a flag on the device (the first bad step only);
// every later kernel of the run reads it and does nothing, so the weights, Adam's moments and the EMA
// stay those from before the first bad step. The host reads the flag (and the loss accumulators) only
// at sync points: a log line, every TrainSettings::check_every steps, the end of train() and save().
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/particle_checks.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/nn/adam.hpp>
#include <scorekit/nn/checkpoint.hpp>
#include <scorekit/nn/ema.hpp>
#include <scorekit/nn/init.hpp>
#include <scorekit/objective/objective_common.hpp>
#include <scorekit/train/exchange.hpp>

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

/// A training step whose loss or gradient was NaN or infinite; the weights are those before it.
class non_finite_loss : public error {
 public:
  non_finite_loss(const std::string& what, long step, std::int64_t parameter = -1)
      : error(what), m_step(step), m_parameter(parameter) {}
  /// The first bad step (0-based: the number of good steps before it).
  long step() const noexcept { return m_step; }
  /// -1 when the loss was not finite; else (the loss was finite) the lowest index of the flat
  /// parameter view whose gradient entry was NaN or infinite.
  std::int64_t parameter() const noexcept { return m_parameter; }

 private:
  long m_step;
  std::int64_t m_parameter;
};

struct TrainSettings {
  int batch_size = 128;
  std::uint64_t seed = 0;          ///< minibatches and the objective's noise
  nn::AdamSettings adam{};         ///< learning rate 1e-3 by default
  double ema_rate = 0.999;         ///< NCSNv2's rate; 0 makes the average the current weights
  int log_every = 0;               ///< steps between progress lines (0: silent)
  std::ostream* log = &std::cout;  ///< where progress lines go
  /// The chunks a step's gradient is split into and summed from in a fixed order (0: automatic, see
  /// Trainer::chunks(); BatchTrainer: 0 is one chunk, the whole minibatch). A data-parallel run
  /// (distributed/) splits the chunks among its processes, so it needs at least one per process to use
  /// them all; the weights are the same bits for any number of processes with the same chunks.
  int gradient_chunks = 0;
  /// Steps between checks for a NaN or infinite loss or gradient, besides those at every log line and
  /// at the end of train() (0: only there). A check waits for the device; a NaN is found at most this
  /// many steps late, which only wastes device work (the steps after it change nothing).
  int check_every = 0;
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

namespace detail {

/// Checks the training data once, before any step: a NaN or infinity in row r would otherwise surface
/// only when a minibatch draws it (many steps later, as a non-finite loss that cannot name the row).
/// Throws invalid_argument naming the first such row; `row` says what a row is ("row", "image").
template <class ExecSpace, class View>
void require_finite_data(const ExecSpace& exec, const View& data, const char* where, const char* row) {
  const std::int64_t first =
      scorekit::detail::first_non_finite_row(exec, data, "scorekit::train::check_data");
  if (first < std::int64_t(data.extent(0)))
    throw invalid_argument(scorekit::detail::concat(where, ": ", row, " ", first,
                                                    " of the training data (of ", data.extent(0),
                                                    ") has a NaN or infinite value; clean the data first"));
}

/// The gradient kernel of one training step: chunk c runs its blocks of Block samples through the
/// objective and accumulates the gradient and the per-level loss statistics in row c. A named functor
/// rather than a lambda inside the Trainer: nvcc accepts no device lambda in a private member.
template <class Net, class Objective, class Real, int Block, class Mem>
struct GradientChunks {
  Objective objective;
  Kokkos::View<Real**, Kokkos::LayoutRight, Mem> grad, stats;
  Kokkos::View<Real*, Mem> work;
  Kokkos::View<Real*, Mem> params;
  Kokkos::View<const Real**, Kokkos::LayoutRight, Mem> data;
  int work_per_chunk, chunks, n_blocks, batch, levels;
  std::int64_t n_data;
  std::uint64_t seed;
  std::uint32_t step;
  Kokkos::View<const std::int64_t, Mem> failure;  ///< once a step failed, the rows are left as they are

  KOKKOS_INLINE_FUNCTION void operator()(const int c) const {
    if (failure() != INT64_MAX) return;
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
  }
};

/// The loss bookkeeping of one training step, one work item, so that the order of addition is fixed:
/// per level, the chunks' loss sums and sample counts added in chunk order (in double); the step's loss
/// = the level sums added in level order / the level counts added in level order; the level sums and
/// counts added to the logging window's accumulators. window(0) is the last step's loss, window(1 + 2 l)
/// and window(2 + 2 l) level l's loss sum and sample count. A NaN or infinite loss records `key` in the
/// failure flag; once the flag is set (by this or an earlier step) the kernel does nothing.
template <class Real, class Mem>
struct LossWindow {
  Kokkos::View<const Real**, Kokkos::LayoutRight, Mem> stats;
  Kokkos::View<double*, Mem> window;
  Kokkos::View<std::int64_t, Mem> failure;
  int chunks, levels;
  std::int64_t key;

  KOKKOS_INLINE_FUNCTION void operator()(const int) const {
    if (failure() != INT64_MAX) return;
    double total = 0, count = 0;
    for (int l = 0; l < levels; ++l) {
      double level_sum = 0, level_count = 0;
      for (int c = 0; c < chunks; ++c) {
        level_sum += double(stats(c, 2 * l));
        level_count += double(stats(c, 2 * l + 1));
      }
      total += level_sum;
      count += level_count;
      window(1 + 2 * l) += level_sum;
      window(2 + 2 * l) += level_count;
    }
    const double loss = total / count;
    window(0) = loss;
    if (!math::isfinite(loss)) failure() = key;
  }
};

/// The failure flag's keys, shared by Trainer and BatchTrainer: the flag holds the smallest key recorded,
/// step << 32 for a loss and step << 32 | 2^31 + the parameter index for a gradient (Adam adds the index),
/// so the first bad step wins, at one step the loss before the gradient, and for the gradient the lowest
/// bad index.
struct FailureKeys {
  static constexpr std::int64_t none = INT64_MAX;
  static constexpr long max_steps = 2147483647L;  // 2^31 - 1: the step fills 31 bits of a key
  static std::int64_t loss(long step) { return std::int64_t(step) << 32; }
  static std::int64_t gradient(long step) { return (std::int64_t(step) << 32) | (std::int64_t(1) << 31); }
};

/// Reads a trainer's failure flag; when a step failed, sets `step`, Adam's step count (the device skipped
/// every update from the failed step on) and the flag back, and returns the exception that names it (its
/// message starts with `who`). window(0) holds the failed step's loss.
template <class Real, class ExecSpace, class Mem>
std::unique_ptr<non_finite_loss> take_failure(const char* who, const Kokkos::View<std::int64_t, Mem>& flag,
                                              nn::Adam<Real, ExecSpace>& adam,
                                              const Kokkos::View<double*, Mem>& window, long& step) {
  std::int64_t key = FailureKeys::none;
  Kokkos::deep_copy(key, flag);
  if (key == FailureKeys::none) return nullptr;
  const long bad_step = long(key >> 32);
  const bool gradient = ((key >> 31) & 1) != 0;
  const std::int64_t parameter = gradient ? (key & ((std::int64_t(1) << 31) - 1)) : -1;
  std::string what;
  if (gradient) {
    // The gradient stayed that of the failed step (the gradient kernels skip once the flag is set), so
    // Adam's last summed gradient is that step's.
    Real value = 0;
    Kokkos::deep_copy(value, Kokkos::subview(adam.last_gradient(), std::size_t(parameter)));
    what = scorekit::detail::concat("the gradient of parameter ", parameter, " is ", value, " at step ",
                                    bad_step);
  } else {
    double loss = 0;
    Kokkos::deep_copy(loss, Kokkos::subview(window, 0));
    what = scorekit::detail::concat("the loss of step ", bad_step, " is ", loss);
  }
  adam.rewind(adam.steps() - (step - bad_step));
  step = bad_step;
  Kokkos::deep_copy(flag, FailureKeys::none);
  return std::make_unique<non_finite_loss>(
      scorekit::detail::concat(
          who, ": ", what,
          "; the weights are those before that step (lower the learning rate, or check the data "
          "for NaN/inf)"),
      bad_step, parameter);
}

/// One progress line: step, mean loss over the window, steps/s (`digits` decimals), the estimated time
/// left when eta_seconds >= 0, and the per-level means when there are several levels.
inline void log_progress(std::ostream& out, long step, const std::vector<LevelLoss>& levels,
                         double steps_per_second, int digits, double eta_seconds = -1) {
  double sum = 0, count = 0;
  for (const auto& l : levels) {
    sum += l.mean * l.count;
    count += l.count;
  }
  char head[200];
  std::snprintf(head, sizeof(head), "step %8ld  loss %10.5g  %9.*f steps/s", step, sum / count, digits,
                steps_per_second);
  std::string line(head);
  if (eta_seconds >= 0) {
    char eta[40];
    std::snprintf(eta, sizeof(eta), "  ETA %8.0f s", eta_seconds);
    line += eta;
  }
  if (levels.size() > 1) {
    line += "  per level:";
    for (const auto& l : levels) {
      char item[32];
      std::snprintf(item, sizeof(item), " %.3g", l.mean);
      line += item;
    }
  }
  out << line << '\n' << std::flush;
}

/// The optimiser state both trainers checkpoint: weights, their EMA, Adam's moments and step count.
template <class Real, class ExecSpace, class Mem>
void add_training_state(nn::Checkpoint& cp, const Kokkos::View<Real*, Mem>& params,
                        const nn::Ema<Real, ExecSpace>& ema, const nn::Adam<Real, ExecSpace>& adam) {
  cp.add("params", params);
  cp.add("ema", ema.shadow());
  cp.add("adam_m", adam.moment1());
  cp.add("adam_v", adam.moment2());
  const std::uint64_t adam_steps = std::uint64_t(adam.steps());
  cp.add("adam_steps", &adam_steps, 1);
}

/// Restores what add_training_state wrote (each array checked against the sizes here by get_into).
template <class Real, class ExecSpace, class Mem>
void restore_training_state(const nn::Checkpoint& cp, const Kokkos::View<Real*, Mem>& params,
                            nn::Ema<Real, ExecSpace>& ema, nn::Adam<Real, ExecSpace>& adam) {
  const std::size_t n = params.extent(0);
  Kokkos::View<Real*, Mem> p("params", n), e("ema", n), m("m", n), v("v", n);
  cp.get_into("params", p);
  cp.get_into("ema", e);
  cp.get_into("adam_m", m);
  cp.get_into("adam_v", v);
  const auto adam_steps = cp.template get<std::uint64_t>("adam_steps", 1);
  Kokkos::deep_copy(params, p);
  ema.set_shadow(e);
  adam.set_state(std::int64_t(adam_steps[0]), m, v);
}

/// The gradient half of a data-parallel step, for both trainers: this process's gradient rows (of the
/// chunks x P rows) go to the exchange through host buffers kept between steps (MPI takes host memory;
/// on a host backend the buffers are the rows themselves, and nothing is copied), and the chunk-ordered
/// sum comes back as the single row Adam then takes.
template <class Exec, class Real>
class StagedGradient {
 public:
  using rows_type = Kokkos::View<Real**, Kokkos::LayoutRight, typename Exec::memory_space>;

  StagedGradient(const rows_type& rows, const std::string& label)
      : m_host_rows(Kokkos::create_mirror_view(rows)),
        m_sum(label + "::gradient_sum", 1, rows.extent(1)),
        m_host_sum(Kokkos::create_mirror_view(m_sum)) {}

  /// Waits for `rows` (this process's chunks written) and returns the 1 x P chunk-ordered sum over all
  /// processes.
  const rows_type& sum(StepExchange& exchange, const rows_type& rows) {
    Exec().fence();
    const int chunks = int(rows.extent(0));
    const int c0 = first_chunk(chunks, exchange.rank(), exchange.size());
    const int c1 = first_chunk(chunks, exchange.rank() + 1, exchange.size());
    if (c1 > c0) {  // only this process's rows: the others come from the exchange
      const auto own = std::make_pair(std::size_t(c0), std::size_t(c1));
      Kokkos::deep_copy(Kokkos::subview(m_host_rows, own, Kokkos::ALL),
                        Kokkos::subview(rows, own, Kokkos::ALL));
    }
    exchange.ordered_sum(m_host_rows.data(), chunks, rows.extent(1), m_host_sum.data());
    Kokkos::deep_copy(m_sum, m_host_sum);
    return m_sum;
  }

 private:
  typename rows_type::HostMirror m_host_rows;
  rows_type m_sum;
  typename rows_type::HostMirror m_host_sum;
};

}  // namespace detail

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
          scorekit::detail::concat("Trainer: batch_size must be at least 1, got ", settings.batch_size));
    if (!(settings.ema_rate >= 0 && settings.ema_rate < 1))
      throw invalid_argument(
          scorekit::detail::concat("Trainer: ema_rate must be in [0, 1), got ", settings.ema_rate));
    if (settings.log_every < 0 || settings.gradient_chunks < 0 || settings.check_every < 0)
      throw invalid_argument("Trainer: log_every, gradient_chunks and check_every must be >= 0");
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
    m_window = Kokkos::View<double*, memory_space>("scorekit::Trainer::loss_window",
                                                   std::size_t(1 + 2 * objective.n_levels()));
    m_failure = failure_type("scorekit::Trainer::failure");
    Kokkos::deep_copy(m_failure, no_failure);
  }

  /// Trains for n_steps minibatches of `data` (n x d, d = Net::in). Throws non_finite_loss when a
  /// step's loss or gradient is not finite (naming the first such step; the weights, the EMA, Adam's
  /// state and step() are then those before it), found at the next sync point (a log line, every
  /// check_every steps, the end), and invalid_argument on a data view of the wrong shape or data holding
  /// a NaN or infinity (naming the first such row, checked before the first step).
  TrainReport train(const data_type& data, long n_steps) {
    constexpr const char* where = "scorekit::Trainer::train";
    require_dimension(std::int64_t(data.extent(1)), Net::in, "the data's columns", where);
    if (data.extent(0) == 0)
      throw invalid_argument(scorekit::detail::concat(where, ": the dataset is empty"));
    if (n_steps < 0)
      throw invalid_argument(scorekit::detail::concat(where, ": n_steps must be >= 0, got ", n_steps));
    detail::require_finite_data(ExecSpace(), data, where, "row");
    if (n_steps > 0 && n_steps > max_steps - m_step)
      throw invalid_argument(scorekit::detail::concat(
          where, ": ", m_step, " + ", n_steps, " steps exceed the limit of ", max_steps, " steps of a run"));
    ScopedRegion region(where);
    const int levels = m_objective.n_levels();
    TrainReport report;
    const auto start = std::chrono::steady_clock::now();
    auto window_start = start;
    long window_steps = 0;
    Kokkos::deep_copy(ExecSpace(), m_window, 0.0);
    try {
      for (long s = 0; s < n_steps; ++s) {
        one_step(data);
        ++report.steps;
        ++window_steps;
        const bool last = s + 1 == n_steps;
        const bool log = m_settings.log_every > 0 && m_step % m_settings.log_every == 0;
        if (log || last) {
          // A sync point: the flag, then the loss accumulators (in double, added in the order above).
          check();
          const auto window = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), m_window);
          report.final_loss = window(0);
          report.levels.assign(levels, LevelLoss{});
          for (int l = 0; l < levels; ++l) {
            const double sum = window(1 + 2 * l), count = window(2 + 2 * l);
            report.levels[l] = LevelLoss{count > 0 ? sum / count : 0.0, count};
          }
          const auto now = std::chrono::steady_clock::now();
          if (m_settings.log_every > 0 && m_settings.log)
            log_line(report.levels, window_steps / std::chrono::duration<double>(now - window_start).count());
          if (!last) {
            Kokkos::deep_copy(ExecSpace(), m_window, 0.0);
            window_start = now;
            window_steps = 0;
          }
        } else if (m_settings.check_every > 0 && m_step % m_settings.check_every == 0) {
          check();
        }
      }
    } catch (...) {
      // Whatever went wrong, leave no unchecked step behind: a failure found now rewinds the state
      // silently (the exception in flight is reported).
      take_failure();
      throw;
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

  /// Makes this trainer one process of a data-parallel run (train/exchange.hpp; distributed/ makes the
  /// exchange and checks first that every process has the same settings and data): each step computes
  /// this process's chunks of the gradient and the exchange sums all of them in chunk order. Null: this
  /// process alone (the default).
  void set_exchange(std::shared_ptr<StepExchange> exchange) {
    m_exchange = std::move(exchange);
    if (m_exchange && !m_staged)
      m_staged = std::make_unique<detail::StagedGradient<ExecSpace, Real>>(m_grad, "scorekit::Trainer");
  }
  const std::shared_ptr<StepExchange>& exchange() const { return m_exchange; }
  const TrainSettings& settings() const { return m_settings; }

  /// What a checkpoint must match: the network, the objective, the value type and the block.
  std::string signature() const {
    return Net::name() + " | " + m_objective.name() + " | " + (sizeof(Real) == 4 ? "float" : "double");
  }

  /// Writes weights, EMA, Adam state and step atomically (nn/checkpoint.hpp). A sync point: train()
  /// never returns with an unchecked step, so the flag is clear here; were it not, save() would refuse
  /// (scorekit::error) rather than write a state the next check would rewind.
  void save(const std::string& path) const {
    std::int64_t failure = no_failure;
    Kokkos::deep_copy(failure, m_failure);
    if (failure != no_failure)
      throw error(scorekit::detail::concat("scorekit::Trainer::save: step ", failure >> 32,
                                           " failed and was not yet reported; nothing was written to '", path,
                                           "'"));
    nn::Checkpoint cp;
    cp.set_signature(signature());
    cp.set_step(std::uint64_t(m_step));
    cp.set_metadata("seed", std::to_string(m_settings.seed));
    cp.set_metadata("batch_size", std::to_string(m_settings.batch_size));
    cp.set_metadata("gradient_chunks", std::to_string(m_chunks));
    detail::add_training_state(cp, m_params, *m_ema, m_adam);
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
        throw invalid_argument(scorekit::detail::concat(
            "Trainer::load: '", path, "' was written with ", kv.first, " = ", cp.metadata(kv.first),
            ", this trainer has ", kv.second, "; resuming would not continue the same run"));
    detail::restore_training_state(cp, m_params, *m_ema, m_adam);
    m_step = long(cp.step());
  }

 private:
  static int auto_chunks(int n_blocks) {
    // Host: a few chunks per core is enough and keeps the per-chunk gradient rows in cache; device:
    // one chunk per block, for parallelism.
    if (std::is_same<memory_space, Kokkos::HostSpace>::value) return std::min(n_blocks, 16);
    return n_blocks;
  }

  /// Launches one step's kernels and returns without waiting for the device.
  void one_step(const data_type& data) {
    const int batch = m_settings.batch_size, chunks = m_chunks, levels = m_objective.n_levels();
    const int n_blocks = (batch + Block - 1) / Block;
    const std::int64_t n_data = std::int64_t(data.extent(0));
    const std::uint64_t seed = m_settings.seed;
    const auto step = std::uint32_t(m_step);
    const int rank = m_exchange ? m_exchange->rank() : 0, size = m_exchange ? m_exchange->size() : 1;
    const int c0 = first_chunk(chunks, rank, size), c1 = first_chunk(chunks, rank + 1, size);
    if (c1 > c0)
      Kokkos::parallel_for("scorekit::Trainer::gradient", Kokkos::RangePolicy<ExecSpace>(c0, c1),
                           detail::GradientChunks<Net, Objective, Real, Block, memory_space>{
                               m_objective, m_grad, m_stats, m_work, m_params, data, m_work_per_chunk, chunks,
                               n_blocks, batch, levels, n_data, seed, step, m_failure});
    const auto& gradient = m_exchange ? exchange_chunks() : m_grad;
    const detail::LossWindow<Real, memory_space> loss{m_stats, m_window, m_failure,
                                                      chunks,  levels,   loss_key(m_step)};
    if constexpr (runs_on_host_v<memory_space>) {
      // One work item on a CPU: the calling thread, rather than a parallel region of its own.
      ExecSpace().fence();
      loss(0);
    } else {
      Kokkos::parallel_for("scorekit::Trainer::loss", Kokkos::RangePolicy<ExecSpace>(0, 1), loss);
    }
    m_adam.step_unless(m_failure, gradient_key(m_step), m_params, gradient, Real(1) / Real(batch));
    m_ema->update_unless(m_failure, m_params);
    ++m_step;
  }

  /// A data-parallel step: every process gets every chunk's loss statistics; returns the chunk-ordered
  /// sum of the gradient rows.
  const Kokkos::View<Real**, Kokkos::LayoutRight, memory_space>& exchange_chunks() {
    const auto& sum = m_staged->sum(*m_exchange, m_grad);
    const auto stats = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), m_stats);
    m_exchange->share_rows(stats.data(), m_chunks, stats.extent(1));
    Kokkos::deep_copy(m_stats, stats);
    return sum;
  }

  // The failure flag's keys (detail::FailureKeys).
  static constexpr std::int64_t no_failure = detail::FailureKeys::none;
  static constexpr long max_steps = detail::FailureKeys::max_steps;
  static std::int64_t loss_key(long step) { return detail::FailureKeys::loss(step); }
  static std::int64_t gradient_key(long step) { return detail::FailureKeys::gradient(step); }

  /// A sync point: waits for the launched steps and throws non_finite_loss when one of them failed.
  void check() {
    if (auto failure = take_failure()) throw *failure;
  }

  /// Reads the flag; when a step failed, rewinds step() and Adam and returns the exception naming it.
  std::unique_ptr<non_finite_loss> take_failure() {
    return detail::take_failure("scorekit::Trainer", m_failure, m_adam, m_window, m_step);
  }

  void log_line(const std::vector<LevelLoss>& levels, double steps_per_second) const {
    detail::log_progress(*m_settings.log, m_step, levels, steps_per_second, 1);
  }

  Objective m_objective;
  TrainSettings m_settings;
  vector_type m_params;
  nn::Adam<Real, ExecSpace> m_adam;
  std::unique_ptr<nn::Ema<Real, ExecSpace>> m_ema;
  Kokkos::View<Real**, Kokkos::LayoutRight, memory_space> m_grad, m_stats;
  Kokkos::View<Real*, memory_space> m_work;
  Kokkos::View<double*, memory_space> m_window;  ///< see detail::LossWindow
  using failure_type = Kokkos::View<std::int64_t, memory_space>;
  failure_type m_failure;  ///< no_failure, or the key of the first failed step (see loss_key)
  int m_chunks = 1, m_work_per_chunk = 0;
  long m_step = 0;
  std::shared_ptr<StepExchange> m_exchange;                           ///< null: this process alone
  std::unique_ptr<detail::StagedGradient<ExecSpace, Real>> m_staged;  ///< with an exchange
};

}  // namespace train
}  // namespace scorekit
