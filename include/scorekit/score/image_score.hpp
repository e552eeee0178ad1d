// A noise-conditional score network over images as a BatchScoreModel (core/batch_model.hpp): a runtime
// Network (nn/image/network.hpp) evaluated on the whole batch, each sample a row of D = h w c scalars
// (the NHWC image, so the batch is the network's input matrix with no copy). The noise level reaches
// the network in the ways of the literature, alone or together:
// - the one-hot of the index of sigma on a given ladder of levels (NCSN, Song and Ermon 2019: the level
//   index selects per-level tables; with nn/image/refinenet.hpp's CIN++ fed by these features the tables
//   are CIN++'s (gamma, beta, alpha)): level_sigmas; every sigma must be a level of the ladder to a
//   relative 1e-5 (float rounding of the levels), else score() throws naming the sample and its sigma;
// - Gaussian Fourier features of log sigma (score_sde: Tancik et al. 2020 features of the time or noise
//   level, fed to the network's features input and from there through dense layers into every block;
//   score/noise_features.hpp FourierFeatures, with fourier_seed and fourier_scale);
// - the output divided by sigma (NCSNv2, "Improved techniques", technique 3: s(x, sigma) = net(x) /
//   sigma, which makes the network's output of unit scale at every level).
// NCSN is the level index alone (divide_by_sigma = false); NCSNv2 the output divided by sigma with no
// features, or with the level index as well; score_sde the Fourier features, with or without the division.
// Every call checks its batch on the device and reports on the host before the network runs: a NaN or
// infinite input, or a noise level outside the range the network was trained on, [sigma_min,
// sigma_max] (with a relative slack of 1e-5 for the rounding of a schedule's end points), throws and
// names the first such sample.
//
// Training (train/batch_trainer.hpp) calls score() and then backward() on the same batch: the
// parameter gradient of <dout, s(x, sigma)>.
// scorekit-requires: SCOREKIT_HAVE_KOKKOS_KERNELS
#pragma once

#include <scorekit/core/batch_model.hpp>
#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/nn/image/network.hpp>
#include <scorekit/score/noise_features.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace scorekit {

struct ImageScoreSettings {
  int height = 0, width = 0, channels = 0;
  /// The trained range of noise levels, 0 < sigma_min <= sigma_max. With level_sigmas, both 0 take the
  /// ladder's range, and the check of each sigma is that it is a level of the ladder.
  double sigma_min = 0, sigma_max = 0;
  int fourier_features = 0;   ///< F (even; 0: none), the network's feature_size()
  double fourier_scale = 16;  ///< the scale of the fixed frequencies w_j
  std::uint64_t fourier_seed = 0;
  /// The ladder of noise levels (any order, distinct by more than a relative 2e-5) when the features are
  /// the one-hot of sigma's index on it (NCSN): the network's feature_size() is then its length. Empty:
  /// no level index. Not together with fourier_features.
  std::vector<double> level_sigmas;
  bool divide_by_sigma = true;
};

template <class Real, class Exec>
class ImageScoreModel {
 public:
  using value_type = Real;
  using execution_space = Exec;
  using memory_space = typename Exec::memory_space;
  using network_type = nn::image::Network<Real, Exec>;
  using params_type = Kokkos::View<const Real*, memory_space>;

  /// `net` takes images of settings.channels channels and returns as many; `params` is its flat
  /// parameter view (the model reads it at every call: a trainer's weights or their EMA).
  ImageScoreModel(std::shared_ptr<network_type> net, params_type params, const ImageScoreSettings& settings)
      : net_(std::move(net)), params_(params), s_(settings) {
    const char* where = "scorekit::ImageScoreModel";
    if (!net_) throw invalid_argument(scorekit::detail::concat(where, ": the network is null"));
    if (!s_.level_sigmas.empty()) {
      if (s_.fourier_features != 0)
        throw invalid_argument(scorekit::detail::concat(
            where, ": both level_sigmas (", s_.level_sigmas.size(), " levels) and fourier_features (",
            s_.fourier_features, ") are set; the features are one or the other"));
      std::vector<double> sorted = s_.level_sigmas;
      std::sort(sorted.begin(), sorted.end());
      for (std::size_t l = 0; l < sorted.size(); ++l) {
        if (!(sorted[l] > 0) || !std::isfinite(sorted[l]))
          throw invalid_argument(scorekit::detail::concat(where, ": the ladder has the level ", sorted[l],
                                                          "; every level must be finite and > 0"));
        if (l > 0 && sorted[l] - sorted[l - 1] <= 2e-5 * sorted[l])
          throw invalid_argument(scorekit::detail::concat(
              where, ": the ladder's levels ", sorted[l - 1], " and ", sorted[l],
              " are within a relative 2e-5 of each other, so a sigma cannot name one of them"));
      }
    }
    if (!s_.level_sigmas.empty() && s_.sigma_min == 0 && s_.sigma_max == 0) {
      // The ladder's range, when not given.
      s_.sigma_min = *std::min_element(s_.level_sigmas.begin(), s_.level_sigmas.end());
      s_.sigma_max = *std::max_element(s_.level_sigmas.begin(), s_.level_sigmas.end());
    }
    if (s_.height <= 0 || s_.width <= 0 || s_.channels <= 0)
      throw invalid_argument(scorekit::detail::concat(where, ": the image shape ", s_.height, " x ", s_.width,
                                                      " x ", s_.channels, " must be positive"));
    if (!(s_.sigma_min > 0) || !(s_.sigma_max >= s_.sigma_min) || !std::isfinite(s_.sigma_max))
      throw invalid_argument(scorekit::detail::concat(where, ": the noise range [", s_.sigma_min, ", ",
                                                      s_.sigma_max,
                                                      "] must be finite with 0 < sigma_min <= sigma_max"));
    if (s_.fourier_features < 0 || s_.fourier_features % 2 != 0)
      throw invalid_argument(scorekit::detail::concat(where, ": fourier_features (", s_.fourier_features,
                                                      ") must be even and not negative"));
    if (feature_size() != net_->feature_size())
      throw dimension_mismatch(scorekit::detail::concat(
          where, ": ",
          s_.level_sigmas.empty()
              ? scorekit::detail::concat(s_.fourier_features, " Fourier features")
              : scorekit::detail::concat("the one-hot of ", s_.level_sigmas.size(), " levels"),
          ", but the network's features input takes ", net_->feature_size()));
    const nn::image::ImageShape one{1, s_.height, s_.width, s_.channels};
    if (net_->output_shape(one) != one)
      throw dimension_mismatch(scorekit::detail::concat(where, ": the network maps ", to_string(one), " to ",
                                                        to_string(net_->output_shape(one)),
                                                        "; a score network must return its input's shape"));
    require_parameters(params_);
    fourier_ = FourierFeatures<Real, memory_space>(s_.fourier_features, s_.fourier_scale, s_.fourier_seed);
    ladder_ =
        Kokkos::View<Real*, memory_space>("scorekit::ImageScoreModel::level_sigmas", s_.level_sigmas.size());
    const auto hl = Kokkos::create_mirror_view(ladder_);
    for (std::size_t l = 0; l < s_.level_sigmas.size(); ++l) hl(l) = Real(s_.level_sigmas[l]);
    Kokkos::deep_copy(ladder_, hl);
  }

  KOKKOS_INLINE_FUNCTION int dim() const { return s_.height * s_.width * s_.channels; }
  /// The features the network takes per sample: the levels of the ladder, or the Fourier features.
  int feature_size() const {
    return s_.level_sigmas.empty() ? s_.fourier_features : int(s_.level_sigmas.size());
  }
  const ImageScoreSettings& settings() const { return s_; }
  network_type& network() const { return *net_; }
  params_type parameters() const { return params_; }
  /// Reads another parameter view from now on (the EMA of a trainer, a loaded checkpoint).
  void set_parameters(params_type params) {
    require_parameters(params);
    params_ = params;
  }

  /// The fixed Fourier frequencies w_j (F/2 of them; the U-Net module's buffer fourier.w in
  /// benchmarks/torch_image.py), on the host.
  std::vector<Real> frequencies() const { return fourier_.frequencies(); }
  /// Replaces the Fourier frequencies (those of a model trained elsewhere, read with its weights by
  /// io/parameters.hpp load_parameters). Throws invalid_argument on another count or a non-finite value.
  void set_frequencies(const std::vector<Real>& w) {
    fourier_.set_frequencies(w, "scorekit::ImageScoreModel::set_frequencies");
  }

  template <class E>
  void score(const E& exec, const ConstBatchView<Real, memory_space>& x,
             const NoiseLevels<Real, memory_space>& sigma, const BatchView<Real, memory_space>& out) const {
    static_assert(
        std::is_same<E, Exec>::value,
        "scorekit::ImageScoreModel::score: call it on the execution space its network was built for");
    constexpr const char* where = "scorekit::ImageScoreModel::score";
    detail::check_batch_shapes(x, sigma, out, dim(), where);
    check_batch(exec, x, sigma, where);
    const int n = int(x.extent(0));
    const nn::image::ImageShape in{n, s_.height, s_.width, s_.channels};
    const std::int64_t rows = in.rows();
    if (features_.extent(0) != std::size_t(n) && feature_size() > 0) {
      // Grown, never shrunk: batches of alternating sizes (a training step's micro-batches) reuse it.
      const std::size_t size = std::size_t(n) * std::size_t(feature_size());
      if (features_storage_.extent(0) < size)
        features_storage_ = Kokkos::View<Real*, memory_space>("scorekit::ImageScoreModel::features", size);
      features_ = nn::image::Tensor<Real, memory_space>(features_storage_.data(), std::size_t(n),
                                                        std::size_t(feature_size()));
    }
    fill_features(exec, sigma);
    const typename network_type::const_tensor_type xt(x.data(), std::size_t(rows), std::size_t(s_.channels));
    const typename network_type::tensor_type yt(out.data(), std::size_t(rows), std::size_t(s_.channels));
    net_->forward(exec, params_, xt, in,
                  feature_size() > 0 ? features_ : typename network_type::const_tensor_type(), yt);
    if (s_.divide_by_sigma) scale_rows(exec, out, sigma);
    sigma_ = sigma;
  }

  /// After score() on a batch: grad += (d s / d params)^T dout (dout N x D; overwritten by the call as
  /// scratch when the output is divided by sigma).
  void backward(const Exec& exec, const BatchView<Real, memory_space>& dout,
                const Kokkos::View<Real*, memory_space>& grad) const {
    constexpr const char* where = "scorekit::ImageScoreModel::backward";
    if (sigma_.extent(0) == 0)
      throw invalid_argument(scorekit::detail::concat(where, ": call score() on the batch first"));
    if (dout.extent(0) != sigma_.extent(0) || std::int64_t(dout.extent(1)) != dim())
      throw dimension_mismatch(scorekit::detail::concat(where, ": the output adjoint is ", dout.extent(0),
                                                        " x ", dout.extent(1), ", the last batch was ",
                                                        sigma_.extent(0), " x ", dim()));
    if (s_.divide_by_sigma) scale_rows(exec, dout, sigma_);
    const std::int64_t rows = std::int64_t(dout.extent(0)) * s_.height * s_.width;
    const typename network_type::const_tensor_type dy(dout.data(), std::size_t(rows),
                                                      std::size_t(s_.channels));
    net_->backward(exec, params_, dy, grad);
  }

  /// s = s(x, sigma) and out(n, :) = v(n, :)^T (d s / d x)(x(n, :), sigma(n)), the vector-Jacobian
  /// product (core/batch_model.hpp): one forward and one backward of the network, which skips the
  /// parameter gradient. Leaves the batch in place for backward() like score().
  template <class E>
  void vjp(const E& exec, const ConstBatchView<Real, memory_space>& x,
           const NoiseLevels<Real, memory_space>& sigma, const ConstBatchView<Real, memory_space>& v,
           const BatchView<Real, memory_space>& s, const BatchView<Real, memory_space>& out) const {
    constexpr const char* where = "scorekit::ImageScoreModel::vjp";
    detail::check_batch_shapes(x, sigma, out, dim(), where);
    if (v.extent(0) != x.extent(0) || v.extent(1) != x.extent(1))
      throw dimension_mismatch(scorekit::detail::concat(where, ": the direction is ", v.extent(0), " x ",
                                                        v.extent(1), " but the batch is ", x.extent(0), " x ",
                                                        x.extent(1)));
    score(exec, x, sigma, s);
    if (dy_.extent(0) != x.extent(0))
      dy_ = BatchView<Real, memory_space>(
          Kokkos::view_alloc(std::string("scorekit::ImageScoreModel::direction"),
                             Kokkos::WithoutInitializing),
          x.extent(0), x.extent(1));
    Kokkos::deep_copy(exec, dy_, v);
    if (s_.divide_by_sigma) scale_rows(exec, dy_, sigma);
    const std::int64_t rows = std::int64_t(x.extent(0)) * s_.height * s_.width;
    const typename network_type::const_tensor_type dy(dy_.data(), std::size_t(rows),
                                                      std::size_t(s_.channels));
    const typename network_type::tensor_type dx(out.data(), std::size_t(rows), std::size_t(s_.channels));
    net_->backward(exec, params_, dy, typename network_type::vector_type(), dx);
  }

  // Public only because nvcc rejects device lambdas in private members.

  /// out(n, :) /= sigma(n).
  template <class V>
  static void scale_rows(const Exec& exec, const V& out, const NoiseLevels<Real, memory_space>& sigma) {
    const std::int64_t d = std::int64_t(out.extent(1));
    const V o = out;
    const NoiseLevels<Real, memory_space> s = sigma;
    Kokkos::parallel_for(
        "scorekit::ImageScoreModel::divide_by_sigma",
        Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, std::int64_t(out.extent(0)) * d),
        KOKKOS_LAMBDA(const std::int64_t e) { o(e / d, e % d) /= s(e / d); });
  }

  /// The features of every sample: the one-hot of its level index (check_batch has found every sigma on
  /// the ladder), or its Fourier features.
  void fill_features(const Exec& exec, const NoiseLevels<Real, memory_space>& sigma) const {
    if (!s_.level_sigmas.empty()) {
      const auto f = features_;
      const auto ladder = ladder_;
      const NoiseLevels<Real, memory_space> s = sigma;
      const int L = int(s_.level_sigmas.size());
      Kokkos::parallel_for(
          "scorekit::ImageScoreModel::level_index", Kokkos::RangePolicy<Exec>(exec, 0, int(sigma.extent(0))),
          KOKKOS_LAMBDA(const int n) {
            const int l = detail::level_of(ladder, s(n));
            for (int j = 0; j < L; ++j) f(n, j) = j == l ? Real(1) : Real(0);
          });
      return;
    }
    fourier_.fill(exec, sigma, features_);
  }

  /// Throws naming the first sample with a NaN or infinite entry, or the first whose noise level is outside
  /// the trained range or (with a ladder) not one of its levels, found on the device.
  void check_batch(const Exec& exec, const ConstBatchView<Real, memory_space>& x,
                   const NoiseLevels<Real, memory_space>& sigma, const char* where) const {
    if (s_.level_sigmas.empty()) {
      detail::require_noised_batch(exec, x, sigma, s_.sigma_min, s_.sigma_max, where);
      return;
    }
    const int n = int(x.extent(0));
    const auto [bad_x, bad_sigma] = detail::find_bad_samples(exec, x, sigma, Real(0), Real(0), ladder_);
    if (bad_x < n)
      throw invalid_argument(
          scorekit::detail::concat(where, ": sample ", bad_x, " of the batch has a NaN or infinite entry"));
    if (bad_sigma < n) {
      Real value = 0;
      Kokkos::deep_copy(value, Kokkos::subview(sigma, std::size_t(bad_sigma)));
      throw invalid_argument(scorekit::detail::concat(
          where, ": sample ", bad_sigma, " has noise level ", value, ", which is not a level of the ladder (",
          s_.level_sigmas.size(), " levels in [",
          *std::min_element(s_.level_sigmas.begin(), s_.level_sigmas.end()), ", ",
          *std::max_element(s_.level_sigmas.begin(), s_.level_sigmas.end()),
          "]) to a relative 1e-5; the network is conditioned on the level index"));
    }
  }

 private:
  template <class V>
  void require_parameters(const V& p) const {
    if (int(p.extent(0)) != net_->n_params())
      throw dimension_mismatch(scorekit::detail::concat("scorekit::ImageScoreModel: ", p.extent(0),
                                                        " parameters given, the network has ",
                                                        net_->n_params()));
  }

  std::shared_ptr<network_type> net_;
  params_type params_;
  ImageScoreSettings s_;
  FourierFeatures<Real, memory_space> fourier_;
  Kokkos::View<Real*, memory_space> ladder_;                ///< level_sigmas on the device
  mutable nn::image::Tensor<Real, memory_space> features_;  ///< a view of features_storage_
  mutable Kokkos::View<Real*, memory_space> features_storage_;
  mutable NoiseLevels<Real, memory_space> sigma_;
  mutable BatchView<Real, memory_space> dy_;  // vjp's scaled direction
};

}  // namespace scorekit
