// Training the image classifier of nn/image/classifier.hpp by cross-entropy.
//
// ClassifierTrainer trains it with the mean cross-entropy of minibatches drawn with replacement by
// CounterRng(seed, step, slot), Adam, atomic checkpoints and bitwise resume. Its evaluation members read
// the current weights unless set_parameters() gives others.
// Optional noise augmentation (noise_max > 0) trains on x + sigma z with sigma = noise_max u^2, u
// uniform, which keeps the classifier usable on slightly noisy inputs; the network is not told sigma.
// A noise-conditional network (ClassifierSettings::embedding > 0) is the classifier of classifier
// guidance: it trains on x + sigma z with sigma log-uniform on [noise_min, noise_max] (the levels of a VE
// SDE at uniform times) and is told sigma through the Fourier features of log sigma
// (score/noise_features.hpp); guide() is then the batch classifier that classifier_guided takes
// (score/image_classifier.hpp).
// scorekit-requires: SCOREKIT_HAVE_KOKKOS_KERNELS
#pragma once

#include <scorekit/core/batch_model.hpp>
#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/nn/adam.hpp>
#include <scorekit/nn/checkpoint.hpp>
#include <scorekit/nn/image/classifier.hpp>
#include <scorekit/nn/init.hpp>
#include <scorekit/score/image_classifier.hpp>
#include <scorekit/score/noise_features.hpp>
#include <scorekit/train/trainer.hpp>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace scorekit {
namespace train {

struct ClassifierTrainSettings {
  int batch_size = 128;
  std::uint64_t seed = 0;
  nn::AdamSettings adam{};
  double noise_max = 0;  ///< noise augmentation: sigma = noise_max u^2 (0: none)
  /// A noise-conditional network's levels: sigma = noise_min (noise_max / noise_min)^u, 0 < noise_min <=
  /// noise_max (0 for a network that is not noise-conditional).
  double noise_min = 0;
};

namespace detail {

/// x(i, j) + sigma z_ij, z_ij from CounterRng(seed, i): images noised for an evaluation at level sigma.
template <class Real, class Mem>
struct NoisedCopy {
  ConstBatchView<Real, Mem> x;
  BatchView<Real, Mem> out;
  Real sigma;
  std::uint64_t seed;
  KOKKOS_INLINE_FUNCTION void operator()(const int i) const {
    CounterRng<Real> rng(seed, std::uint64_t(i), 0);
    for (int j = 0; j < int(x.extent(1)); ++j) out(i, j) = x(i, j) + sigma * rng.normal();
  }
};

/// Per row of logits: loss = logsumexp(z) - z_y, and dz = (softmax(z) - onehot(y)) * scale.
template <class Real, class Mem>
struct CrossEntropy {
  Kokkos::View<const Real**, Kokkos::LayoutRight, Mem> z;
  Kokkos::View<const int*, Mem> y;
  Kokkos::View<Real**, Kokkos::LayoutRight, Mem> dz;
  Real scale;
  KOKKOS_INLINE_FUNCTION void operator()(const int i, double& loss, int& correct) const {
    const int k = int(z.extent(1));
    Real top = z(i, 0);
    int arg = 0;
    for (int j = 1; j < k; ++j)
      if (z(i, j) > top) {
        top = z(i, j);
        arg = j;
      }
    Real sum = 0;
    for (int j = 0; j < k; ++j) sum += math::exp(z(i, j) - top);
    const Real lse = top + math::log(sum);
    loss += double(lse - z(i, y(i)));
    correct += arg == y(i) ? 1 : 0;
    if (dz.extent(0) > 0)
      for (int j = 0; j < k; ++j)
        dz(i, j) = (math::exp(z(i, j) - lse) - (j == y(i) ? Real(1) : Real(0))) * scale;
  }
};

/// Slot `slot` of a minibatch: an image drawn with replacement by CounterRng(seed, step, slot), its label,
/// and with noise_max > 0 the noise sigma z, sigma = noise_max u^2, or with noise_min > 0 (a
/// noise-conditional network) sigma = noise_min (noise_max / noise_min)^u, written to sb.
template <class Real, class Mem>
struct ClassifierDraw {
  ConstBatchView<Real, Mem> data;
  Kokkos::View<const int*, Mem> labels;
  BatchView<Real, Mem> xb;
  Kokkos::View<int*, Mem> yb;
  Kokkos::View<Real*, Mem> sb;
  std::uint64_t seed, step;
  Real noise_min, noise_max;
  KOKKOS_INLINE_FUNCTION void operator()(const int slot) const {
    CounterRng<Real> rng(seed, step, std::uint64_t(slot));
    const std::int64_t n = std::int64_t(data.extent(0));
    const std::int64_t drawn = std::int64_t(rng.uniform() * Real(n));
    const std::int64_t i = drawn < n ? drawn : n - 1;
    yb(slot) = labels(i);
    const Real u = rng.uniform();
    const Real sigma =
        noise_min > 0 ? noise_min * math::exp(u * math::log(noise_max / noise_min)) : noise_max * u * u;
    sb(slot) = sigma;
    const int d = int(xb.extent(1));
    for (int j = 0; j < d; ++j) xb(slot, j) = data(i, j) + (noise_max > 0 ? sigma * rng.normal() : Real(0));
  }
};

}  // namespace detail

template <class Real, class Exec>
class ClassifierTrainer {
 public:
  using network_type = nn::image::Network<Real, Exec>;
  using memory_space = typename Exec::memory_space;
  using vector_type = Kokkos::View<Real*, memory_space>;
  using tensor_type = nn::image::Tensor<Real, memory_space>;
  using data_type = ConstBatchView<Real, memory_space>;
  using labels_type = Kokkos::View<const int*, memory_space>;

  ClassifierTrainer(const nn::image::ClassifierSettings& s, int height, int width,
                    ClassifierTrainSettings train = {}, std::uint64_t init_seed = 0)
      : s_(s), h_(height), w_(width), t_(train) {
    const char* where = "scorekit::nn::image::ClassifierTrainer";
    if (train.batch_size < 1)
      throw invalid_argument(
          scorekit::detail::concat(where, ": batch_size must be at least 1, got ", train.batch_size));
    if (!(train.noise_max >= 0 && std::isfinite(train.noise_max)))
      throw invalid_argument(
          scorekit::detail::concat(where, ": noise_max must be finite and >= 0, got ", train.noise_max));
    if (s.embedding > 0 && !(train.noise_min > 0 && train.noise_min <= train.noise_max))
      throw invalid_argument(scorekit::detail::concat(
          where, ": a noise-conditional classifier (embedding ", s.embedding,
          ") needs the levels it trains on, 0 < noise_min <= noise_max; got noise_min ", train.noise_min,
          ", noise_max ", train.noise_max));
    if (s.embedding == 0 && train.noise_min != 0)
      throw invalid_argument(scorekit::detail::concat(where, ": noise_min (", train.noise_min,
                                                      ") is for a noise-conditional classifier; this one has "
                                                      "no embedding (ClassifierSettings::embedding = 0)"));
    fourier_ = FourierFeatures<Real, memory_space>(s.embedding, s.fourier_scale, s.fourier_seed);
    auto built = nn::image::conv_classifier<Real, Exec>(s, height, width);
    features_node_ = built.features_node;
    net_ = std::make_shared<nn::image::Network<Real, Exec>>(std::move(built.net));
    params_ = vector_type("scorekit::ClassifierTrainer::params", std::size_t(net_->n_params()));
    grad_ = vector_type("scorekit::ClassifierTrainer::gradient", std::size_t(net_->n_params()));
    const auto segments = net_->segments();
    nn::initialize(params_, segments.data(), int(segments.size()), nn::Init::he_uniform, init_seed);
    adam_ = std::make_unique<nn::Adam<Real, Exec>>(net_->n_params(), train.adam);
    eval_params_ = params_;
  }

  int dim() const { return h_ * w_ * s_.in_channels; }
  int classes() const { return s_.classes; }
  int feature_size() const { return s_.hidden; }
  bool noise_conditional() const { return s_.embedding > 0; }
  long step() const { return step_; }
  const vector_type& parameters() const { return params_; }
  nn::image::Network<Real, Exec>& network() const { return *net_; }
  /// The weights the evaluation members read (the current weights unless set).
  void set_parameters(Kokkos::View<const Real*, memory_space> p) {
    if (p.extent(0) != params_.extent(0))
      throw dimension_mismatch(
          scorekit::detail::concat("scorekit::ClassifierTrainer::set_parameters: ", p.extent(0),
                                   " parameters, the network has ", params_.extent(0)));
    eval_params_ = p;
  }

  /// The batch classifier of classifier guidance (guidance/classifier_guidance.hpp): this network and the
  /// weights the evaluation members read, on the trained levels [noise_min, noise_max]. It shares the
  /// network's buffers with the trainer: call one at a time.
  ImageClassifierModel<Real, Exec> guide() const {
    if (!noise_conditional())
      throw invalid_argument(
          "scorekit::ClassifierTrainer::guide: the classifier is not noise-conditional (ClassifierSettings::"
          "embedding = 0); classifier guidance needs one trained on noised images and told their level");
    ImageClassifierSettings g;
    g.height = h_;
    g.width = w_;
    g.channels = s_.in_channels;
    g.classes = s_.classes;
    g.sigma_min = t_.noise_min;
    g.sigma_max = t_.noise_max;
    g.fourier_features = s_.embedding;
    g.fourier_scale = s_.fourier_scale;
    g.fourier_seed = s_.fourier_seed;
    return ImageClassifierModel<Real, Exec>(net_, eval_params_, g);
  }

  /// Trains for n_steps minibatches of (data, labels); returns the mean loss and accuracy of the last
  /// `window` steps (or all, if fewer). Throws non_finite_loss (naming the step) on a NaN loss.
  struct Report {
    double loss = 0, accuracy = 0;
    long steps = 0;
  };
  Report train(const data_type& data, const labels_type& labels, long n_steps, long window = 50) {
    const char* where = "scorekit::ClassifierTrainer::train";
    check_data(data, labels, where);
    const Exec exec;
    const int b = t_.batch_size, d = dim();
    if (xb_.extent(0) != std::size_t(b)) {
      xb_ = BatchView<Real, memory_space>("scorekit::ClassifierTrainer::x", std::size_t(b), std::size_t(d));
      yb_ = Kokkos::View<int*, memory_space>("scorekit::ClassifierTrainer::y", std::size_t(b));
      logits_ = tensor_type("scorekit::ClassifierTrainer::logits", std::size_t(b), std::size_t(s_.classes));
      dlogits_ = tensor_type("scorekit::ClassifierTrainer::dlogits", std::size_t(b), std::size_t(s_.classes));
      sb_ = Kokkos::View<Real*, memory_space>("scorekit::ClassifierTrainer::sigma", std::size_t(b));
      if (noise_conditional())
        features_ =
            tensor_type("scorekit::ClassifierTrainer::features", std::size_t(b), std::size_t(s_.embedding));
    }
    Report r;
    double loss_sum = 0;
    long correct_sum = 0, counted = 0;
    for (long s = 0; s < n_steps; ++s) {
      draw_batch(exec, data, labels);
      const nn::image::ImageShape in{b, h_, w_, s_.in_channels};
      if (noise_conditional()) fourier_.fill(exec, NoiseLevels<Real, memory_space>(sb_), features_);
      net_->forward(exec, params_,
                    typename nn::image::Network<Real, Exec>::const_tensor_type(xb_.data(), in.rows(),
                                                                               std::size_t(s_.in_channels)),
                    in, features_, logits_);
      double loss = 0;
      int correct = 0;
      Kokkos::parallel_reduce(
          "scorekit::ClassifierTrainer::cross_entropy", Kokkos::RangePolicy<Exec>(exec, 0, b),
          detail::CrossEntropy<Real, memory_space>{logits_, yb_, dlogits_, Real(1) / Real(b)}, loss, correct);
      if (!std::isfinite(loss))
        throw non_finite_loss(
            scorekit::detail::concat(where, ": the loss became NaN or infinite at step ", step_,
                                     " (reduce the learning rate); the weights are those before it"),
            step_);
      Kokkos::deep_copy(exec, grad_, Real(0));
      net_->backward(exec, params_, dlogits_, grad_);
      adam_->step(params_, grad_);
      ++step_;
      ++r.steps;
      if (n_steps - s <= window) {
        loss_sum += loss / b;
        correct_sum += correct;
        counted += b;
      }
    }
    if (counted > 0) {
      r.loss = loss_sum / double(counted / b);
      r.accuracy = double(correct_sum) / double(counted);
    }
    return r;
  }

  /// Logits (n x classes) and, when `features` is not empty, the penultimate features (n x hidden) of
  /// the images x (n x D), in chunks of `chunk` images. sigma: the noise level the images carry, which a
  /// noise-conditional classifier is told (it must be in [noise_min, noise_max]); 0 for a classifier that
  /// is not noise-conditional.
  void evaluate(const data_type& x, const tensor_type& logits, const tensor_type& features = tensor_type(),
                int chunk = 256, double sigma = 0) const {
    const char* where = "scorekit::ClassifierTrainer::evaluate";
    check_sigma(sigma, where);
    require_dimension(std::int64_t(x.extent(1)), dim(), "the images' columns (h w c)", where);
    require_dimension(std::int64_t(logits.extent(0)), std::int64_t(x.extent(0)), "the logits' rows", where);
    require_dimension(std::int64_t(logits.extent(1)), s_.classes, "the logits' columns", where);
    if (features.extent(0) > 0) {
      require_dimension(std::int64_t(features.extent(0)), std::int64_t(x.extent(0)), "the features' rows",
                        where);
      require_dimension(std::int64_t(features.extent(1)), s_.hidden, "the features' columns", where);
    }
    const Exec exec;
    const std::int64_t n = std::int64_t(x.extent(0));
    for (std::int64_t first = 0; first < n; first += chunk) {
      const int m = int(std::min<std::int64_t>(chunk, n - first));
      const nn::image::ImageShape in{m, h_, w_, s_.in_channels};
      const auto xs = Kokkos::subview(x, std::make_pair(first, first + m), Kokkos::ALL());
      const auto ls = Kokkos::subview(logits, std::make_pair(first, first + m), Kokkos::ALL());
      tensor_type fs;
      if (noise_conditional()) {
        const Kokkos::View<Real*, memory_space> levels("scorekit::ClassifierTrainer::levels", std::size_t(m));
        Kokkos::deep_copy(exec, levels, Real(sigma));
        fs = tensor_type("scorekit::ClassifierTrainer::features", std::size_t(m), std::size_t(s_.embedding));
        fourier_.fill(exec, NoiseLevels<Real, memory_space>(levels), fs);
      }
      net_->forward(exec, eval_params_,
                    typename nn::image::Network<Real, Exec>::const_tensor_type(xs.data(), in.rows(),
                                                                               std::size_t(s_.in_channels)),
                    in, fs, ls);
      if (features.extent(0) > 0)
        Kokkos::deep_copy(exec, Kokkos::subview(features, std::make_pair(first, first + m), Kokkos::ALL()),
                          net_->value(features_node_));
    }
    exec.fence();
  }

  /// The share of x classified as its label, and the mean cross-entropy. With sigma > 0 the images are
  /// noised first, x + sigma z (z from CounterRng(noise_seed, image)), and a noise-conditional classifier
  /// is told sigma.
  Report accuracy(const data_type& x, const labels_type& labels, double sigma = 0,
                  std::uint64_t noise_seed = 0) const {
    const char* where = "scorekit::ClassifierTrainer::accuracy";
    check_data(x, labels, where);
    check_sigma(sigma, where);
    const tensor_type logits("scorekit::ClassifierTrainer::logits", x.extent(0), std::size_t(s_.classes));
    if (sigma > 0) {
      const BatchView<Real, memory_space> noised("scorekit::ClassifierTrainer::noised", x.extent(0),
                                                 x.extent(1));
      Kokkos::parallel_for("scorekit::ClassifierTrainer::noise",
                           Kokkos::RangePolicy<Exec>(Exec(), 0, int(x.extent(0))),
                           detail::NoisedCopy<Real, memory_space>{x, noised, Real(sigma), noise_seed});
      evaluate(noised, logits, tensor_type(), 256, sigma);
    } else {
      evaluate(x, logits);
    }
    double loss = 0;
    int correct = 0;
    Kokkos::parallel_reduce("scorekit::ClassifierTrainer::accuracy",
                            Kokkos::RangePolicy<Exec>(Exec(), 0, std::int64_t(x.extent(0))),
                            detail::CrossEntropy<Real, memory_space>{logits, labels, tensor_type(), Real(1)},
                            loss, correct);
    Report r;
    r.loss = loss / double(x.extent(0));
    r.accuracy = double(correct) / double(x.extent(0));
    return r;
  }

  std::string signature() const {
    return scorekit::detail::concat(
        "image classifier (", net_->n_params(), " parameters, ", net_->n_nodes(), " nodes, ", h_, " x ", w_,
        " x ", s_.in_channels, ", ", s_.classes, " classes",
        noise_conditional()
            ? scorekit::detail::concat(", noise-conditional: ", s_.embedding, " Fourier features of scale ",
                                       s_.fourier_scale, " and seed ", s_.fourier_seed, ", levels ",
                                       t_.noise_min, " to ", t_.noise_max)
            : std::string(),
        ") | ", sizeof(Real) == 4 ? "float" : "double");
  }

  /// Weights, Adam's state and the step, atomically (nn/checkpoint.hpp).
  void save(const std::string& path) const {
    nn::Checkpoint cp;
    cp.set_signature(signature());
    cp.set_step(std::uint64_t(step_));
    cp.set_metadata("seed", std::to_string(t_.seed));
    cp.add("params", params_);
    cp.add("adam_m", adam_->moment1());
    cp.add("adam_v", adam_->moment2());
    const std::uint64_t adam_steps = std::uint64_t(adam_->steps());
    cp.add("adam_steps", &adam_steps, 1);
    nn::save_checkpoint(path, cp);
  }

  /// Restores what save() wrote; the signature must match (io_error naming both otherwise).
  void load(const std::string& path) {
    const nn::Checkpoint cp = nn::load_checkpoint(path);
    cp.require_signature(signature());
    const std::size_t n = params_.extent(0);
    vector_type p("params", n), m("m", n), v("v", n);
    cp.get_into("params", p);
    cp.get_into("adam_m", m);
    cp.get_into("adam_v", v);
    const auto adam_steps = cp.template get<std::uint64_t>("adam_steps", 1);
    Kokkos::deep_copy(params_, p);
    adam_->set_state(std::int64_t(adam_steps[0]), m, v);
    step_ = long(cp.step());
  }

 private:
  void check_data(const data_type& x, const labels_type& labels, const char* where) const {
    require_dimension(std::int64_t(x.extent(1)), dim(), "the images' columns (h w c)", where);
    require_dimension(std::int64_t(labels.extent(0)), std::int64_t(x.extent(0)), "the labels", where);
    if (x.extent(0) == 0) throw invalid_argument(scorekit::detail::concat(where, ": no images"));
    detail::require_finite_data(Exec(), x, where, "image");
    scorekit::detail::require_labels(Exec(), labels, s_.classes, where);
  }

  void check_sigma(double sigma, const char* where) const {
    if (noise_conditional() && !(sigma >= t_.noise_min * (1 - 1e-5) && sigma <= t_.noise_max * (1 + 1e-5)))
      throw invalid_argument(scorekit::detail::concat(
          where, ": the noise level ", sigma, " is outside the range the classifier was trained on, [",
          t_.noise_min, ", ", t_.noise_max, "]"));
    if (!noise_conditional() && !(sigma >= 0 && std::isfinite(sigma)))
      throw invalid_argument(
          scorekit::detail::concat(where, ": the noise level must be finite and >= 0, got ", sigma));
  }

  void draw_batch(const Exec& exec, const data_type& data, const labels_type& labels) {
    Kokkos::parallel_for(
        "scorekit::ClassifierTrainer::draw", Kokkos::RangePolicy<Exec>(exec, 0, int(xb_.extent(0))),
        detail::ClassifierDraw<Real, memory_space>{data, labels, xb_, yb_, sb_, t_.seed, std::uint64_t(step_),
                                                   Real(t_.noise_min), Real(t_.noise_max)});
  }

  nn::image::ClassifierSettings s_;
  int h_ = 0, w_ = 0;
  ClassifierTrainSettings t_;
  int features_node_ = -1;
  std::shared_ptr<nn::image::Network<Real, Exec>> net_;
  vector_type params_, grad_;
  Kokkos::View<const Real*, memory_space> eval_params_;
  std::unique_ptr<nn::Adam<Real, Exec>> adam_;
  BatchView<Real, memory_space> xb_;
  Kokkos::View<int*, memory_space> yb_;
  Kokkos::View<Real*, memory_space> sb_;
  tensor_type logits_, dlogits_, features_;
  FourierFeatures<Real, memory_space> fourier_;
  long step_ = 0;
};

}  // namespace train
}  // namespace scorekit
