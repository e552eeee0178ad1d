// A noise-conditional image classifier as a batch classifier (guidance/classifier_guidance.hpp): what
// classifier guidance adds to a score network's score on the batched path,
//   out(n, :) = grad_x log p_sigma(n)(labels(n) | x(n, :)),
// for a runtime Network (nn/image/network.hpp, e.g. conv_classifier with embedding > 0) that maps an
// image and the Fourier features of log sigma (score/noise_features.hpp) to logits. The gradient is one
// forward and one backward: the logits' adjoint of log softmax(z)_y is onehot(y) - softmax(z), and the
// network's input adjoint carries it back to the image (no parameter gradient is computed).
// A network without a features input is evaluated on the noised image alone (a classifier trained with
// noise augmentation); it is then not told sigma.
// Every call checks its batch as ImageScoreModel does (a NaN or infinite entry, a noise level outside
// [sigma_min, sigma_max], a label outside 0..classes-1: each an error naming the first such sample).
// scorekit-requires: SCOREKIT_HAVE_KOKKOS_KERNELS
#pragma once

#include <scorekit/core/batch_model.hpp>
#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/nn/image/network.hpp>
#include <scorekit/score/noise_features.hpp>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>

namespace scorekit {

struct ImageClassifierSettings {
  int height = 0, width = 0, channels = 0;
  int classes = 0;
  /// The noise levels the classifier was trained on, 0 < sigma_min <= sigma_max.
  double sigma_min = 0, sigma_max = 0;
  int fourier_features = 0;  ///< F (even), the network's feature_size(); 0: the network takes no features
  double fourier_scale = 16;
  std::uint64_t fourier_seed = 0;
};

namespace detail {

/// Per sample: dz(n, :) = onehot(y(n)) - softmax(z(n, :)), the gradient of log softmax(z)_y in z, and
/// log p(y | x) = z_y - logsumexp(z) in log_p (when not empty).
template <class Real, class Mem>
struct LogSoftmaxAdjoint {
  Kokkos::View<const Real**, Kokkos::LayoutRight, Mem> z;
  Kokkos::View<const int*, Mem> y;
  Kokkos::View<Real**, Kokkos::LayoutRight, Mem> dz;
  Kokkos::View<Real*, Mem> log_p;
  KOKKOS_INLINE_FUNCTION void operator()(const int n) const {
    const int k = int(z.extent(1));
    Real top = z(n, 0);
    for (int j = 1; j < k; ++j) top = z(n, j) > top ? z(n, j) : top;
    Real sum = 0;
    for (int j = 0; j < k; ++j) sum += math::exp(z(n, j) - top);
    const Real lse = top + math::log(sum);
    for (int j = 0; j < k; ++j) dz(n, j) = (j == y(n) ? Real(1) : Real(0)) - math::exp(z(n, j) - lse);
    if (log_p.extent(0) > 0) log_p(n) = z(n, y(n)) - lse;
  }
};

}  // namespace detail

template <class Real, class Exec>
class ImageClassifierModel {
 public:
  using value_type = Real;
  using execution_space = Exec;
  using memory_space = typename Exec::memory_space;
  using network_type = nn::image::Network<Real, Exec>;
  using params_type = Kokkos::View<const Real*, memory_space>;
  using labels_type = Kokkos::View<const int*, memory_space>;

  /// `net` maps settings.channels channels (and, with fourier_features, F features) to `classes` logits
  /// per image; `params` is its flat parameter view, read at every call.
  ImageClassifierModel(std::shared_ptr<network_type> net, params_type params,
                       const ImageClassifierSettings& settings)
      : net_(std::move(net)), params_(params), s_(settings) {
    const char* where = "scorekit::ImageClassifierModel";
    if (!net_) throw invalid_argument(detail::concat(where, ": the network is null"));
    if (s_.height <= 0 || s_.width <= 0 || s_.channels <= 0 || s_.classes < 2)
      throw invalid_argument(detail::concat(where, ": the image shape ", s_.height, " x ", s_.width, " x ",
                                            s_.channels, " must be positive and the classes (", s_.classes,
                                            ") at least 2"));
    if (!(s_.sigma_min > 0) || !(s_.sigma_max >= s_.sigma_min) || !std::isfinite(s_.sigma_max))
      throw invalid_argument(detail::concat(where, ": the noise range [", s_.sigma_min, ", ", s_.sigma_max,
                                            "] must be finite with 0 < sigma_min <= sigma_max"));
    fourier_ = FourierFeatures<Real, memory_space>(s_.fourier_features, s_.fourier_scale, s_.fourier_seed);
    if (s_.fourier_features != net_->feature_size())
      throw dimension_mismatch(detail::concat(where, ": ", s_.fourier_features,
                                              " Fourier features, but the network's features input takes ",
                                              net_->feature_size()));
    const nn::image::ImageShape one{1, s_.height, s_.width, s_.channels};
    const nn::image::ImageShape logits{1, 1, 1, s_.classes};
    if (net_->output_shape(one) != logits)
      throw dimension_mismatch(detail::concat(where, ": the network maps ", to_string(one), " to ",
                                              to_string(net_->output_shape(one)), "; a classifier of ",
                                              s_.classes, " classes returns ", to_string(logits)));
    require_parameters(params_);
  }

  KOKKOS_INLINE_FUNCTION int dim() const { return s_.height * s_.width * s_.channels; }
  int classes() const { return s_.classes; }
  const ImageClassifierSettings& settings() const { return s_; }
  network_type& network() const { return *net_; }
  params_type parameters() const { return params_; }
  void set_parameters(params_type params) {
    require_parameters(params);
    params_ = params;
  }

  /// logits(n, :) for the noised images x (N x D) at noise levels sigma (N).
  template <class E>
  void logits(const E& exec, const ConstBatchView<Real, memory_space>& x,
              const NoiseLevels<Real, memory_space>& sigma, const BatchView<Real, memory_space>& out) const {
    static_assert(std::is_same<E, Exec>::value,
                  "scorekit::ImageClassifierModel: call it on the execution space its network was built for");
    constexpr const char* where = "scorekit::ImageClassifierModel::logits";
    check(exec, x, sigma, where);
    if (out.extent(0) != x.extent(0) || int(out.extent(1)) != s_.classes)
      throw dimension_mismatch(detail::concat(where, ": the logits are ", out.extent(0), " x ", out.extent(1),
                                              ", the batch needs ", x.extent(0), " x ", s_.classes));
    forward(exec, x, sigma, out);
  }

  /// out(n, :) = grad_x log p_sigma(n)(labels(n) | x(n, :)), and with log_p not empty log_p(n) =
  /// log p_sigma(n)(labels(n) | x(n, :)).
  template <class E>
  void grad_log_likelihood(const E& exec, const ConstBatchView<Real, memory_space>& x,
                           const NoiseLevels<Real, memory_space>& sigma, const labels_type& labels,
                           const BatchView<Real, memory_space>& out,
                           const Kokkos::View<Real*, memory_space>& log_p = {}) const {
    static_assert(std::is_same<E, Exec>::value,
                  "scorekit::ImageClassifierModel: call it on the execution space its network was built for");
    constexpr const char* where = "scorekit::ImageClassifierModel::grad_log_likelihood";
    detail::check_batch_shapes(x, sigma, out, dim(), where);
    if (labels.extent(0) != x.extent(0))
      throw dimension_mismatch(
          detail::concat(where, ": ", x.extent(0), " samples but ", labels.extent(0), " labels"));
    if (log_p.extent(0) != 0 && log_p.extent(0) != x.extent(0))
      throw dimension_mismatch(
          detail::concat(where, ": ", x.extent(0), " samples but log_p holds ", log_p.extent(0)));
    check(exec, x, sigma, where);
    detail::require_labels(exec, labels, s_.classes, where);
    const std::size_t n = x.extent(0), k = std::size_t(s_.classes);
    if (z_.extent(0) != n) {
      z_ = BatchView<Real, memory_space>(
          Kokkos::view_alloc(std::string("scorekit::ImageClassifierModel::logits"),
                             Kokkos::WithoutInitializing),
          n, k);
      dz_ = BatchView<Real, memory_space>(
          Kokkos::view_alloc(std::string("scorekit::ImageClassifierModel::logits_adjoint"),
                             Kokkos::WithoutInitializing),
          n, k);
    }
    forward(exec, x, sigma, z_);
    Kokkos::parallel_for("scorekit::ImageClassifierModel::log_softmax_adjoint",
                         Kokkos::RangePolicy<Exec>(exec, 0, int(n)),
                         detail::LogSoftmaxAdjoint<Real, memory_space>{z_, labels, dz_, log_p});
    const std::int64_t rows = std::int64_t(n) * s_.height * s_.width;
    net_->backward(
        exec, params_, dz_, typename network_type::vector_type(),
        typename network_type::tensor_type(out.data(), std::size_t(rows), std::size_t(s_.channels)));
  }

 private:
  template <class V>
  void require_parameters(const V& p) const {
    if (int(p.extent(0)) != net_->n_params())
      throw dimension_mismatch(detail::concat("scorekit::ImageClassifierModel: ", p.extent(0),
                                              " parameters given, the network has ", net_->n_params()));
  }

  void check(const Exec& exec, const ConstBatchView<Real, memory_space>& x,
             const NoiseLevels<Real, memory_space>& sigma, const char* where) const {
    if (x.extent(0) == 0) throw invalid_argument(detail::concat(where, ": the batch is empty (N = 0)"));
    if (int(x.extent(1)) != dim())
      throw dimension_mismatch(detail::concat(where, ": the batch is ", x.extent(0), " x ", x.extent(1),
                                              " but the images have ", dim(), " values"));
    if (sigma.extent(0) != x.extent(0))
      throw dimension_mismatch(
          detail::concat(where, ": ", x.extent(0), " samples but ", sigma.extent(0), " noise levels"));
    detail::require_noised_batch(exec, x, sigma, s_.sigma_min, s_.sigma_max, where);
  }

  /// The network on the batch (checked), logits into z.
  void forward(const Exec& exec, const ConstBatchView<Real, memory_space>& x,
               const NoiseLevels<Real, memory_space>& sigma, const BatchView<Real, memory_space>& z) const {
    const int n = int(x.extent(0));
    const nn::image::ImageShape in{n, s_.height, s_.width, s_.channels};
    if (s_.fourier_features > 0 && features_.extent(0) != std::size_t(n))
      features_ = nn::image::Tensor<Real, memory_space>(
          Kokkos::view_alloc(std::string("scorekit::ImageClassifierModel::features"),
                             Kokkos::WithoutInitializing),
          std::size_t(n), std::size_t(s_.fourier_features));
    if (s_.fourier_features > 0) fourier_.fill(exec, sigma, features_);
    net_->forward(
        exec, params_,
        typename network_type::const_tensor_type(x.data(), std::size_t(in.rows()), std::size_t(s_.channels)),
        in, s_.fourier_features > 0 ? features_ : typename network_type::const_tensor_type(),
        typename network_type::tensor_type(z.data(), std::size_t(n), std::size_t(s_.classes)));
  }

  std::shared_ptr<network_type> net_;
  params_type params_;
  ImageClassifierSettings s_;
  FourierFeatures<Real, memory_space> fourier_;
  mutable nn::image::Tensor<Real, memory_space> features_;
  mutable BatchView<Real, memory_space> z_, dz_;
};

}  // namespace scorekit
