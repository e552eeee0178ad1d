// Training on the batched path: an image score network (score/image_score.hpp) trained by batched
// denoising score matching (objective/batch_denoising.hpp: NCSN's multi-sigma ladder or score_sde's
// continuous-time objective), with the fused Trainer's tools and contracts (train/trainer.hpp): Adam,
// the EMA of the weights, atomic checkpoints with bitwise resume, a progress line, and a NaN or
// infinite loss or gradient reported as non_finite_loss naming the first bad step, the weights, the
// EMA, Adam's state and step() left as before it.
//
// One step: draw the minibatch (one kernel), then per micro-batch (TrainSettings::gradient_chunks of
// them, one by default: the whole minibatch) one batched forward of the network, the loss and its output
// adjoint (one kernel) and one batched backward into the micro-batch's gradient row; the loss bookkeeping
// (one work item, fixed order), Adam (which adds the rows in order) and the EMA (skipped on the device
// once a step failed). Micro-batches are what a data-parallel run shares out (train/exchange.hpp). The
// products are the BLAS' (Kokkos Kernels), on host backends in tiles fixed by the shape, one single-threaded
// BLAS call each (core/blas.hpp); scorekit's own kernels reduce in a fixed order. So a run is the same bits
// on Serial and OpenMP with any thread count, for a given BLAS (tests/test_thread_counts.cpp).
// scorekit-requires: SCOREKIT_HAVE_KOKKOS_KERNELS
#pragma once

#include <scorekit/core/batch_model.hpp>
#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/nn/adam.hpp>
#include <scorekit/nn/checkpoint.hpp>
#include <scorekit/nn/ema.hpp>
#include <scorekit/nn/init.hpp>
#include <scorekit/objective/batch_denoising.hpp>
#include <scorekit/score/image_score.hpp>
#include <scorekit/train/trainer.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace scorekit {
namespace train {

namespace detail {

/// The loss bookkeeping of one batched step, one work item: the per-sample losses added in sample order
/// into the step's mean loss (window(0)) and per level into the logging window (window(1 + 2 l) the
/// loss sum, window(2 + 2 l) the count). A NaN or infinite loss records `key`; once the flag is set
/// the kernel does nothing.
template <class Mem>
struct BatchLossWindow {
  Kokkos::View<const double*, Mem> loss;
  Kokkos::View<const int*, Mem> level;
  Kokkos::View<double*, Mem> window;
  Kokkos::View<std::int64_t, Mem> failure;
  std::int64_t key;
  KOKKOS_INLINE_FUNCTION void operator()(const int) const {
    if (failure() != INT64_MAX) return;
    const int n = int(loss.extent(0));
    double sum = 0;
    for (int i = 0; i < n; ++i) sum += loss(i);
    if (!(sum - sum == 0)) {
      Kokkos::atomic_fetch_min(failure.data(), key);
      window(0) = sum / n;
      return;
    }
    window(0) = sum / n;
    for (int i = 0; i < n; ++i) {
      window(1 + 2 * level(i)) += loss(i);
      window(2 + 2 * level(i)) += 1;
    }
  }
};

}  // namespace detail

template <class Real, class Exec, class Draw>
class BatchTrainer {
 public:
  using memory_space = typename Exec::memory_space;
  using vector_type = Kokkos::View<Real*, memory_space>;
  using data_type = ConstBatchView<Real, memory_space>;
  using network_type = nn::image::Network<Real, Exec>;
  using model_type = ImageScoreModel<Real, Exec>;

  /// Weights of `net` initialised by `init` from init_seed; the model's noise range is the draw's.
  BatchTrainer(std::shared_ptr<network_type> net, ImageScoreSettings image, Draw draw, TrainSettings settings,
               std::uint64_t init_seed = 0, nn::Init init = nn::Init::he_uniform)
      : draw_(draw),
        settings_(settings),
        params_("scorekit::BatchTrainer::params", std::size_t(checked(net)->n_params())),
        adam_(net->n_params(), settings.adam),
        model_(nullptr) {
    constexpr const char* where = "scorekit::BatchTrainer";
    if (settings.batch_size < 1)
      throw invalid_argument(
          scorekit::detail::concat(where, ": batch_size must be at least 1, got ", settings.batch_size));
    if (!(settings.ema_rate >= 0 && settings.ema_rate < 1))
      throw invalid_argument(
          scorekit::detail::concat(where, ": ema_rate must be in [0, 1), got ", settings.ema_rate));
    if (settings.log_every < 0 || settings.check_every < 0 || settings.gradient_chunks < 0)
      throw invalid_argument(
          scorekit::detail::concat(where, ": log_every, check_every and gradient_chunks must be >= 0"));
    chunks_ = std::min(std::max(settings.gradient_chunks, 1), settings.batch_size);
    image.sigma_min = draw.sigma_min();
    image.sigma_max = draw.sigma_max();
    const auto segments = net->segments();
    nn::initialize(params_, segments.data(), int(segments.size()), init, init_seed);
    model_ = std::make_unique<model_type>(net, params_, image);
    ema_ = std::make_unique<nn::Ema<Real, Exec>>(params_, Real(settings.ema_rate));
    batch_ = objective::DenoisingBatch<Real, memory_space>(settings.batch_size, model_->dim());
    out_ = BatchView<Real, memory_space>("scorekit::BatchTrainer::out", std::size_t(settings.batch_size),
                                         std::size_t(model_->dim()));
    grad_ = Kokkos::View<Real**, Kokkos::LayoutRight, memory_space>("scorekit::BatchTrainer::gradient",
                                                                    std::size_t(chunks_), params_.extent(0));
    window_ = Kokkos::View<double*, memory_space>("scorekit::BatchTrainer::loss_window",
                                                  std::size_t(1 + 2 * draw.n_levels()));
    failure_ = Kokkos::View<std::int64_t, memory_space>("scorekit::BatchTrainer::failure");
    Kokkos::deep_copy(failure_, no_failure);
  }

  /// Trains for n_steps minibatches of `data` (n x D, D = h w c of the images). Throws as Trainer::train.
  TrainReport train(const data_type& data, long n_steps) {
    constexpr const char* where = "scorekit::BatchTrainer::train";
    require_dimension(std::int64_t(data.extent(1)), model_->dim(), "the data's columns (h w c)", where);
    if (data.extent(0) == 0)
      throw invalid_argument(scorekit::detail::concat(where, ": the dataset is empty"));
    if (n_steps < 0)
      throw invalid_argument(scorekit::detail::concat(where, ": n_steps must be >= 0, got ", n_steps));
    detail::require_finite_data(Exec(), data, where, "image");
    if (n_steps > 0 && n_steps > max_steps - step_)
      throw invalid_argument(scorekit::detail::concat(
          where, ": ", step_, " + ", n_steps, " steps exceed the limit of ", max_steps, " steps of a run"));
    ScopedRegion region(where);
    const int levels = draw_.n_levels();
    TrainReport report;
    const auto start = std::chrono::steady_clock::now();
    auto window_start = start;
    long window_steps = 0;
    Kokkos::deep_copy(Exec(), window_, 0.0);
    try {
      for (long s = 0; s < n_steps; ++s) {
        one_step(data);
        ++report.steps;
        ++window_steps;
        const bool last = s + 1 == n_steps;
        const bool log = settings_.log_every > 0 && step_ % settings_.log_every == 0;
        if (log || last) {
          check();
          const auto window = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), window_);
          report.final_loss = window(0);
          report.levels.assign(std::size_t(levels), LevelLoss{});
          for (int l = 0; l < levels; ++l) {
            const double sum = window(1 + 2 * l), count = window(2 + 2 * l);
            report.levels[std::size_t(l)] = LevelLoss{count > 0 ? sum / count : 0.0, count};
          }
          const auto now = std::chrono::steady_clock::now();
          const double elapsed = std::chrono::duration<double>(now - start).count();
          if (settings_.log_every > 0 && settings_.log)
            detail::log_progress(*settings_.log, step_, report.levels,
                                 window_steps / std::chrono::duration<double>(now - window_start).count(), 2,
                                 elapsed / double(s + 1) * double(n_steps - s - 1));
          if (!last) {
            Kokkos::deep_copy(Exec(), window_, 0.0);
            window_start = now;
            window_steps = 0;
          }
        } else if (settings_.check_every > 0 && step_ % settings_.check_every == 0) {
          check();
        }
      }
    } catch (...) {
      take_failure();
      throw;
    }
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return report;
  }

  const vector_type& parameters() const { return params_; }
  Kokkos::View<const Real*, memory_space> ema_parameters() const { return ema_->shadow(); }
  /// The model on the current weights (a copy: set_parameters(ema_parameters()) on it to sample with
  /// the EMA; it shares the network's buffers, so use one model at a time).
  const model_type& model() const { return *model_; }
  long step() const { return step_; }
  const TrainSettings& settings() const { return settings_; }
  /// The micro-batches a step's gradient is summed from, in order (TrainSettings::gradient_chunks).
  int chunks() const { return chunks_; }

  /// As Trainer::set_exchange: this process computes its micro-batches of each step, the exchange sums
  /// the gradient rows in chunk order and shares the per-sample losses. Null: this process alone.
  void set_exchange(std::shared_ptr<StepExchange> exchange) {
    exchange_ = std::move(exchange);
    if (exchange_ && !staged_)
      staged_ = std::make_unique<detail::StagedGradient<Exec, Real>>(grad_, "scorekit::BatchTrainer");
  }
  const std::shared_ptr<StepExchange>& exchange() const { return exchange_; }
  /// The noise draw of the objective (its levels or SDE).
  const Draw& draw() const { return draw_; }

  std::string signature() const {
    return scorekit::detail::concat("image network (", model_->network().n_params(), " parameters, ",
                                    model_->network().n_nodes(), " nodes) | ", draw_.name(), " | ",
                                    sizeof(Real) == 4 ? "float" : "double");
  }

  /// As Trainer::save: weights, EMA, Adam's state and the step, atomically.
  void save(const std::string& path) const {
    std::int64_t failure = no_failure;
    Kokkos::deep_copy(failure, failure_);
    if (failure != no_failure)
      throw error(scorekit::detail::concat("scorekit::BatchTrainer::save: step ", failure >> 32,
                                           " failed and was not yet reported; nothing was written to '", path,
                                           "'"));
    nn::Checkpoint cp;
    cp.set_signature(signature());
    cp.set_step(std::uint64_t(step_));
    cp.set_metadata("seed", std::to_string(settings_.seed));
    cp.set_metadata("batch_size", std::to_string(settings_.batch_size));
    cp.set_metadata("gradient_chunks", std::to_string(chunks_));
    detail::add_training_state(cp, params_, *ema_, adam_);
    nn::save_checkpoint(path, cp);
  }

  /// As Trainer::load: the same signature, seed, batch size and chunks, or invalid_argument (a checkpoint
  /// without the chunks entry was written with one).
  void load(const std::string& path) {
    const nn::Checkpoint cp = nn::load_checkpoint(path);
    cp.require_signature(signature());
    for (const auto& kv : {std::make_pair(std::string("seed"), std::to_string(settings_.seed)),
                           std::make_pair(std::string("batch_size"), std::to_string(settings_.batch_size)),
                           std::make_pair(std::string("gradient_chunks"), std::to_string(chunks_))})
      if ((cp.has_metadata(kv.first) ? cp.metadata(kv.first) : std::string("1")) != kv.second)
        throw invalid_argument(scorekit::detail::concat(
            "BatchTrainer::load: '", path, "' was written with ", kv.first, " = ",
            cp.has_metadata(kv.first) ? cp.metadata(kv.first) : std::string("1"), ", this trainer has ",
            kv.second, "; resuming would not continue the same run"));
    detail::restore_training_state(cp, params_, *ema_, adam_);
    step_ = long(cp.step());
  }

 private:
  static constexpr std::int64_t no_failure = detail::FailureKeys::none;
  static constexpr long max_steps = detail::FailureKeys::max_steps;
  static std::int64_t loss_key(long step) { return detail::FailureKeys::loss(step); }
  static std::int64_t gradient_key(long step) { return detail::FailureKeys::gradient(step); }

  static const std::shared_ptr<network_type>& checked(const std::shared_ptr<network_type>& net) {
    if (!net) throw invalid_argument("scorekit::BatchTrainer: the network is null");
    return net;
  }

  void one_step(const data_type& data) {
    const Exec exec;
    objective::draw_denoising_batch(exec, draw_, data, settings_.seed, std::uint32_t(step_), batch_);
    // This process's micro-batches (all of them alone), each a forward, its loss and a backward into
    // its own gradient row.
    const int batch = settings_.batch_size;
    const int rank = exchange_ ? exchange_->rank() : 0, size = exchange_ ? exchange_->size() : 1;
    for (int c = first_chunk(chunks_, rank, size); c < first_chunk(chunks_, rank + 1, size); ++c) {
      const int b0 = sample_bound(c), b1 = sample_bound(c + 1);
      const auto part = batch_.rows(b0, b1);
      const BatchView<Real, memory_space> out =
          Kokkos::subview(out_, std::make_pair(std::size_t(b0), std::size_t(b1)), Kokkos::ALL);
      model_->score(exec, part.y, part.sigma, out);
      objective::denoising_loss(exec, out, part, batch);
      const Kokkos::View<Real*, memory_space> row = Kokkos::subview(grad_, c, Kokkos::ALL);
      Kokkos::deep_copy(exec, row, Real(0));
      model_->backward(exec, part.dout, row);
    }
    const auto& gradient = exchange_ ? exchange_chunks() : grad_;
    const detail::BatchLossWindow<memory_space> loss{batch_.loss, batch_.level, window_, failure_,
                                                     loss_key(step_)};
    if constexpr (runs_on_host_v<memory_space>) {
      exec.fence();
      loss(0);
    } else {
      Kokkos::parallel_for("scorekit::BatchTrainer::loss", Kokkos::RangePolicy<Exec>(exec, 0, 1), loss);
    }
    adam_.step_unless(failure_, gradient_key(step_), params_, gradient, Real(1));
    ema_->update_unless(failure_, params_);
    ++step_;
  }

  /// The first sample of micro-batch c (c = chunks_: the batch size): the minibatch split as the chunks
  /// are split among processes.
  int sample_bound(int c) const { return first_chunk(settings_.batch_size, c, chunks_); }

  /// A data-parallel step: every process gets every sample's loss; returns the chunk-ordered sum of the
  /// gradient rows.
  const Kokkos::View<Real**, Kokkos::LayoutRight, memory_space>& exchange_chunks() {
    const auto& sum = staged_->sum(*exchange_, grad_);
    const auto loss = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), batch_.loss);
    std::vector<std::size_t> bounds(std::size_t(chunks_) + 1);
    for (int c = 0; c <= chunks_; ++c) bounds[std::size_t(c)] = std::size_t(sample_bound(c)) * sizeof(double);
    exchange_->share(loss.data(), bounds);
    Kokkos::deep_copy(batch_.loss, loss);
    return sum;
  }

  void check() {
    if (auto failure = take_failure()) throw *failure;
  }

  std::unique_ptr<non_finite_loss> take_failure() {
    return detail::take_failure("scorekit::BatchTrainer", failure_, adam_, window_, step_);
  }

  Draw draw_;
  TrainSettings settings_;
  vector_type params_;
  Kokkos::View<Real**, Kokkos::LayoutRight, memory_space> grad_;  ///< chunks x P: a row per micro-batch
  std::shared_ptr<StepExchange> exchange_;                        ///< null: this process alone
  std::unique_ptr<detail::StagedGradient<Exec, Real>> staged_;    ///< with an exchange
  int chunks_ = 1;
  nn::Adam<Real, Exec> adam_;
  std::unique_ptr<model_type> model_;
  std::unique_ptr<nn::Ema<Real, Exec>> ema_;
  objective::DenoisingBatch<Real, memory_space> batch_;
  BatchView<Real, memory_space> out_;
  Kokkos::View<double*, memory_space> window_;
  Kokkos::View<std::int64_t, memory_space> failure_;
  long step_ = 0;
};

}  // namespace train
}  // namespace scorekit
