// A trained network's weights for PyTorch: the EMA parameters of a Trainer or a BatchTrainer as a
// safetensors file (io/parameters.hpp) under PyTorch's names, with metadata that says what they are:
// "architecture" (the layers), "objective" (the objective or noise draw with its noise levels or SDE),
// "value_type", "step" and "signature" (what a checkpoint of the run must match). For an image model with
// Fourier features the frequencies go along as the buffer "fourier.w" (torch_image.py's UNet). Needs
// nlohmann-json, as io/safetensors.hpp.
// scorekit-requires: SCOREKIT_HAVE_NLOHMANN_JSON
// scorekit-requires: SCOREKIT_HAVE_KOKKOS_KERNELS
#pragma once

#include <scorekit/io/parameters.hpp>
#include <scorekit/train/batch_trainer.hpp>
#include <scorekit/train/trainer.hpp>

#include <map>
#include <string>
#include <vector>

namespace scorekit {
namespace train {

/// Writes the EMA weights of a compile-time network's Trainer; `names` as Sequential::parameter_tensors
/// (empty: torch.nn.Sequential's indices).
template <class Net, class Objective, class ExecSpace, class Real, int Block>
void export_weights(const Trainer<Net, Objective, ExecSpace, Real, Block>& trainer, const std::string& path,
                    const std::vector<std::string>& names = {}) {
  io::save_parameters(path, Net::parameter_tensors(names), trainer.ema_parameters(),
                      {{"architecture", Net::name()},
                       {"objective", trainer.objective().name()},
                       {"value_type", sizeof(Real) == 4 ? "float32" : "float64"},
                       {"step", std::to_string(trainer.step())},
                       {"signature", trainer.signature()}});
}

/// Writes the EMA weights of an image network's BatchTrainer, with the Fourier frequencies when the
/// model has them.
template <class Real, class Exec, class Draw>
void export_weights(const BatchTrainer<Real, Exec, Draw>& trainer, const std::string& path) {
  const auto& model = trainer.model();
  std::map<std::string, std::vector<Real>> buffers;
  if (model.settings().fourier_features > 0) buffers["fourier.w"] = model.frequencies();
  io::save_parameters(path, model.network().parameter_tensors(), trainer.ema_parameters(),
                      {{"architecture", model.network().summary()},
                       {"objective", trainer.draw().name()},
                       {"value_type", sizeof(Real) == 4 ? "float32" : "float64"},
                       {"step", std::to_string(trainer.step())},
                       {"signature", trainer.signature()}},
                      buffers);
}

}  // namespace train
}  // namespace scorekit
