// Data-parallel training over MPI, for both trainers (train/trainer.hpp and train/batch_trainer.hpp):
// every rank holds the whole dataset and the same settings, draws the same minibatch indices from the
// counter-based generator, computes its contiguous run of the step's gradient chunks, and the chunks
// are summed in chunk order (distributed/exchange.hpp). So the weights after N steps are the same bits
// for any number of ranks, and the same as one process training alone with the same gradient_chunks.
//
//   distributed::Communicator comm;                  // after distributed::Environment
//   train::Trainer<Net, Objective> trainer(objective, settings);
//   distributed::data_parallel(comm, trainer, data);  // checks settings and data agree, then shares steps
//   trainer.train(data, steps);                      // on every rank
//   distributed::save(comm, trainer, "run.ckpt");    // rank 0 writes, atomically
// scorekit-requires: SCOREKIT_HAVE_MPI
#pragma once

#include <scorekit/core/kokkos.hpp>
#include <scorekit/distributed/communicator.hpp>
#include <scorekit/distributed/exchange.hpp>

#include <memory>
#include <string>
#include <type_traits>

namespace scorekit {
namespace distributed {

namespace detail {
/// 64-bit fingerprint of a view's values (copied to the host).
template <class View>
std::uint64_t fingerprint(const View& v) {
  const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  static_assert(std::is_same<typename std::decay_t<decltype(h)>::array_layout, Kokkos::LayoutRight>::value ||
                    unsigned(View::rank) == 1,
                "scorekit::distributed: fingerprints are of contiguous views");
  return fnv1a(h.data(), h.span() * sizeof(typename View::value_type));
}
}  // namespace detail

/// Makes `trainer` (a Trainer or a BatchTrainer) one rank of a data-parallel run on `comm`. First checks,
/// on every rank alike, that the ranks agree on the trainer's signature, settings, chunks, step and
/// weights and on `data` (a 64-bit fingerprint of each; rank_failed names the ranks that differ), and
/// that there are at least as many gradient chunks as ranks (invalid_argument: a rank would idle).
template <class Trainer, class Data>
void data_parallel(const Communicator& comm, Trainer& trainer, const Data& data) {
  const auto& s = trainer.settings();
  const std::string description = scorekit::detail::concat(
      trainer.signature(), " | seed ", s.seed, " | batch ", s.batch_size, " | chunks ", trainer.chunks(),
      " | adam ", s.adam.learning_rate, " ", s.adam.beta1, " ", s.adam.beta2, " ", s.adam.epsilon, " | ema ",
      s.ema_rate, " | step ", trainer.step(), " | weights ", detail::fingerprint(trainer.parameters()),
      " | data ", data.extent(0), " x ", data.extent(1), " ", detail::fingerprint(data));
  require_same(comm, description, "the training settings, weights or data");
  if (trainer.chunks() < comm.size())
    throw invalid_argument(scorekit::detail::concat(
        "scorekit::distributed::data_parallel: the trainer splits a step into ", trainer.chunks(),
        " gradient chunks, fewer than the ", comm.size(),
        " ranks; set TrainSettings::gradient_chunks to at least the number of ranks (a multiple of it "
        "balances the work)"));
  trainer.set_exchange(std::make_shared<MpiExchange>(comm));
}

/// Rank 0 writes the checkpoint (atomically: nn/checkpoint.hpp); a failure there is a rank_failed on every
/// rank. The checkpoint is that of one process: it resumes on any number of ranks.
template <class Trainer>
void save(const Communicator& comm, const Trainer& trainer, const std::string& path) {
  collective(comm, "writing the checkpoint", [&] {
    if (comm.rank() == 0) trainer.save(path);
  });
}

/// Every rank loads the checkpoint (a file all ranks can read); a rank that cannot (missing, corrupt, of
/// another run) makes every rank throw rank_failed naming it and the reason. Then checks that all ranks
/// hold the same weights.
template <class Trainer>
void load(const Communicator& comm, Trainer& trainer, const std::string& path) {
  collective(comm, "loading the checkpoint", [&] { trainer.load(path); });
  require_same(comm,
               std::to_string(detail::fingerprint(trainer.parameters())) + " at step " +
                   std::to_string(trainer.step()),
               "the weights loaded from '" + path + "'");
}

}  // namespace distributed
}  // namespace scorekit
