// Classifier guidance (Song et al. 2021, section 5 and appendix I.1; Dhariwal and Nichol 2021): to sample
// p(x | y) with a model of p(x), add the gradient of a noise-conditional log-likelihood to the score,
//   grad_x log p_sigma(x | y) = grad_x log p_sigma(x) + grad_x log p_sigma(y | x),
// where p_sigma(y | x) is the likelihood of y for the noised x (a classifier trained on noised inputs, or
// a closed form such as guidance/mixture_classifier.hpp). With a guidance scale w >= 0 the score is
//   s(x, sigma) + w grad_x log p_sigma(y | x),
// which for w = 1 is the exact conditional score, and for w != 1 the score of the tilted law
// p_sigma(x) p_sigma(y | x)^w (normalised), which sharpens (w > 1) or flattens (w < 1) the conditioning.
// ClassifierGuidedScore is itself a noise-conditional score model, so every sampler and integrator takes
// it, through score_at_time (sde/sde_common.hpp) for the SDEs: there x / a(t) and sigma = s(t) / a(t) are
// what the classifier sees, as the model does.
//
// A Classifier is a copyable value type with, for the y it was built for,
//   KOKKOS_INLINE_FUNCTION void grad_log_likelihood(const Real* x, Real sigma, Real* out, Real* work) const;
//   int workspace_size() const;   // optional: values `work` must hold (0 when absent)
//   int dim() const;              // optional: checked against the model's
// (a form without `work` is accepted too). Real is the model's value_type.
//
// On the batched path (core/batch_model.hpp) the same sum is BatchClassifierGuidedScore, a batch model
// built by classifier_guided(batch_model, batch_classifier, labels, w): each sample n has its own label
// labels(n), so one batch draws every class at once. A batch classifier is
//   using value_type; using memory_space;
//   int dim() const;  int classes() const;
//   template <class ExecSpace>
//   void grad_log_likelihood(const ExecSpace& exec, const ConstBatchView<value_type, memory_space>& x,
//                            const NoiseLevels<value_type, memory_space>& sigma,
//                            const Kokkos::View<const int*, memory_space>& labels,
//                            const BatchView<value_type, memory_space>& out) const;
//     // out(n, :) = grad_x log p_sigma(n)(labels(n) | x(n, :)), called on the host
// such as a noise-conditional image classifier (score/image_classifier.hpp), or per_label(classifiers):
// one per-particle classifier per label (those above, e.g. MixtureComponentClassifier of each component),
// evaluated a sample a work item. The labels index the rows of the batch the sampler passes, which are
// its particles in order (with first_particle, those of this shard).
#pragma once

#include <scorekit/core/batch_model.hpp>

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/traits.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace scorekit {
namespace detail {

template <class C, class Real, class = void>
struct has_grad_log_likelihood_4 : std::false_type {};
template <class C, class Real>
struct has_grad_log_likelihood_4<
    C, Real,
    std::void_t<decltype(std::declval<const C&>().grad_log_likelihood(
        std::declval<const Real*>(), std::declval<Real>(), std::declval<Real*>(), std::declval<Real*>()))>>
    : std::true_type {};
template <class C, class Real, class = void>
struct has_grad_log_likelihood_3 : std::false_type {};
template <class C, class Real>
struct has_grad_log_likelihood_3<
    C, Real,
    std::void_t<decltype(std::declval<const C&>().grad_log_likelihood(
        std::declval<const Real*>(), std::declval<Real>(), std::declval<Real*>()))>> : std::true_type {};

/// c.grad_log_likelihood(x, sigma, out[, work]), whichever form C has.
template <class C, class Real>
KOKKOS_INLINE_FUNCTION void grad_log_likelihood(const C& c, const Real* x, Real sigma, Real* out,
                                                Real* work) {
  if constexpr (has_grad_log_likelihood_4<C, Real>::value)
    c.grad_log_likelihood(x, sigma, out, work);
  else
    ((void)work, c.grad_log_likelihood(x, sigma, out));
}

}  // namespace detail

/// True when C can serve as a classifier for a model with value_type Real.
template <class C, class Real>
constexpr bool is_classifier_v =
    detail::has_grad_log_likelihood_4<C, Real>::value || detail::has_grad_log_likelihood_3<C, Real>::value;

/// A noise-conditional model plus w times a classifier's grad log p_sigma(y | x) (see the file comment).
template <class Model, class Classifier>
class ClassifierGuidedScore {
 public:
  using value_type = typename Model::value_type;
  using model_type = Model;
  using classifier_type = Classifier;

  /// scale: the guidance weight w, finite and >= 0 (0 returns the model's score unchanged, bitwise).
  ClassifierGuidedScore(const Model& model, const Classifier& classifier, value_type scale)
      : m_model(model), m_classifier(classifier), m_scale(scale), m_dim(model.dim()) {
    assert_noise_conditional_score<Model>();
    static_assert(
        is_classifier_v<Classifier, value_type>,
        "scorekit: a classifier needs a member `KOKKOS_INLINE_FUNCTION void grad_log_likelihood(const "
        "value_type* x, value_type sigma, value_type* out, value_type* work) const` (see "
        "guidance/classifier_guidance.hpp)");
    const char* where = "scorekit::ClassifierGuidedScore";
    if (!(scale >= value_type(0)) || !std::isfinite(double(scale)))
      throw invalid_argument(
          detail::concat(where, ": the guidance scale w must be finite and >= 0, got ", scale));
    if constexpr (policy_traits<Classifier>::has_dim)
      require_dimension(classifier.dim(), model.dim(), "the classifier", where);
  }

  KOKKOS_INLINE_FUNCTION int dim() const { return m_dim; }
  /// The model's workspace, or d values for the classifier's gradient and then the classifier's own.
  KOKKOS_INLINE_FUNCTION int workspace_size() const {
    const int model = scorekit::workspace_size(m_model),
              classifier = m_dim + scorekit::workspace_size(m_classifier);
    return model > classifier ? model : classifier;  // std::max is host-only under nvcc
  }
  const Model& model() const { return m_model; }
  const Classifier& classifier() const { return m_classifier; }
  KOKKOS_INLINE_FUNCTION value_type scale() const { return m_scale; }

  KOKKOS_INLINE_FUNCTION void score(const value_type* x, value_type sigma, value_type* out,
                                    value_type* work) const {
    noise_conditional_score(m_model, x, sigma, out, work);
    if (m_scale == value_type(0)) return;
    value_type* g = work;  // the model is done with its workspace
    detail::grad_log_likelihood(m_classifier, x, sigma, g, work + m_dim);
    for (int j = 0; j < m_dim; ++j) out[j] += m_scale * g[j];
  }

 private:
  Model m_model;
  Classifier m_classifier;
  value_type m_scale;
  int m_dim;
};

template <class Model, class Classifier>
ClassifierGuidedScore<Model, Classifier> classifier_guided(const Model& model, const Classifier& classifier,
                                                           typename Model::value_type scale) {
  return ClassifierGuidedScore<Model, Classifier>(model, classifier, scale);
}

namespace detail {
template <class C, class = void>
struct is_batch_classifier : std::false_type {};
template <class C>
struct is_batch_classifier<
    C, std::void_t<
           typename C::value_type, typename C::memory_space, decltype(int(std::declval<const C&>().dim())),
           decltype(int(std::declval<const C&>().classes())),
           decltype(std::declval<const C&>().grad_log_likelihood(
               std::declval<const typename C::memory_space::execution_space&>(),
               std::declval<const ConstBatchView<typename C::value_type, typename C::memory_space>&>(),
               std::declval<const NoiseLevels<typename C::value_type, typename C::memory_space>&>(),
               std::declval<const Kokkos::View<const int*, typename C::memory_space>&>(),
               std::declval<const BatchView<typename C::value_type, typename C::memory_space>&>()))>>
    : std::true_type {};

}  // namespace detail

/// True when C is a batch classifier (see the file comment).
template <class C>
constexpr bool is_batch_classifier_v = detail::is_batch_classifier<C>::value;

/// One per-particle classifier per label as a batch classifier: sample n is evaluated by classifier
/// labels(n), a sample a work item (one kernel per label), with a workspace kept between calls.
template <class Classifier, class MemorySpace = detail::memory_space_of_t<Classifier>>
class PerLabelClassifier {
 public:
  using value_type = typename Classifier::value_type;
  using memory_space = MemorySpace;

  explicit PerLabelClassifier(std::vector<Classifier> per_label) : m_per_label(std::move(per_label)) {
    static_assert(is_classifier_v<Classifier, value_type>,
                  "scorekit::per_label needs per-particle classifiers (guidance/classifier_guidance.hpp)");
    const char* where = "scorekit::per_label";
    if (m_per_label.size() < 2)
      throw invalid_argument(
          detail::concat(where, ": ", m_per_label.size(), " classifiers; a label needs at least 2"));
    if constexpr (policy_traits<Classifier>::has_dim) {
      m_dim = m_per_label[0].dim();
      for (std::size_t k = 1; k < m_per_label.size(); ++k)
        require_dimension(m_per_label[k].dim(), m_dim, detail::concat("classifier ", k).c_str(), where);
    }
    for (const Classifier& c : m_per_label) {
      const int w = scorekit::workspace_size(c);
      m_workspace = w > m_workspace ? w : m_workspace;
    }
  }

  /// The classifiers' dimension (0 when they do not say).
  int dim() const { return m_dim; }
  int classes() const { return int(m_per_label.size()); }

  template <class ExecSpace>
  void grad_log_likelihood(const ExecSpace& exec, const ConstBatchView<value_type, MemorySpace>& x,
                           const NoiseLevels<value_type, MemorySpace>& sigma,
                           const Kokkos::View<const int*, MemorySpace>& labels,
                           const BatchView<value_type, MemorySpace>& out) const {
    const char* where = "scorekit::PerLabelClassifier::grad_log_likelihood";
    detail::check_batch_shapes(x, sigma, out, m_dim > 0 ? m_dim : int(x.extent(1)), where);
    if (labels.extent(0) != x.extent(0))
      throw dimension_mismatch(
          detail::concat(where, ": ", x.extent(0), " samples but ", labels.extent(0), " labels"));
    const std::int64_t n = std::int64_t(x.extent(0));
    if (std::int64_t(m_work.extent(0)) < n)
      m_work = Kokkos::View<value_type**, Kokkos::LayoutRight, MemorySpace>(
          Kokkos::view_alloc(std::string("scorekit::PerLabelClassifier::workspace"),
                             Kokkos::WithoutInitializing),
          n, m_workspace > 0 ? m_workspace : 1);
    for (int k = 0; k < classes(); ++k) launch(exec, k, x, sigma, labels, out);
  }

  // Public only because nvcc rejects device lambdas in private members.
  template <class ExecSpace>
  void launch(const ExecSpace& exec, int k, const ConstBatchView<value_type, MemorySpace>& x,
              const NoiseLevels<value_type, MemorySpace>& sigma,
              const Kokkos::View<const int*, MemorySpace>& labels,
              const BatchView<value_type, MemorySpace>& out) const {
    const Classifier c = m_per_label[std::size_t(k)];
    const auto work = m_work;
    Kokkos::parallel_for(
        "scorekit::PerLabelClassifier::grad_log_likelihood",
        Kokkos::RangePolicy<ExecSpace>(exec, 0, std::int64_t(x.extent(0))),
        KOKKOS_LAMBDA(const std::int64_t i) {
          if (labels(i) == k) detail::grad_log_likelihood(c, &x(i, 0), sigma(i), &out(i, 0), &work(i, 0));
        });
  }

 private:
  std::vector<Classifier> m_per_label;
  int m_dim = 0;
  int m_workspace = 0;
  mutable Kokkos::View<value_type**, Kokkos::LayoutRight, MemorySpace> m_work;
};

/// per_label({c_0, c_1, ...}): classifier k for the samples labelled k (see PerLabelClassifier).
template <class Classifier>
PerLabelClassifier<Classifier> per_label(std::vector<Classifier> per_label_classifiers) {
  return PerLabelClassifier<Classifier>(std::move(per_label_classifiers));
}

/// A batch model plus w times a batch classifier's grad log p_sigma(labels(n) | x(n, :)), sample n guided
/// towards its own label: the batched path's ClassifierGuidedScore (see the file comment).
template <class Model, class Classifier>
class BatchClassifierGuidedScore {
 public:
  using value_type = typename Model::value_type;
  using memory_space = typename Model::memory_space;
  using model_type = Model;
  using classifier_type = Classifier;
  using labels_type = Kokkos::View<const int*, memory_space>;

  /// labels: one a sample of the batches to come, each in 0..classes-1; scale: w, finite and >= 0 (0
  /// returns the model's score unchanged, bitwise, and does not call the classifier).
  BatchClassifierGuidedScore(const Model& model, const Classifier& classifier, labels_type labels,
                             value_type scale)
      : m_model(model), m_classifier(classifier), m_labels(labels), m_scale(scale) {
    static_assert(is_batch_score_model_v<Model>,
                  "scorekit: classifier_guided with a batch classifier needs a "
                  "batch score model (core/batch_model.hpp; batched(model) "
                  "makes one of a per-particle model)");
    static_assert(std::is_same<typename Classifier::value_type, value_type>::value &&
                      std::is_same<typename Classifier::memory_space, memory_space>::value,
                  "scorekit: the batch classifier's value_type and memory_space must be the model's");
    const char* where = "scorekit::BatchClassifierGuidedScore";
    if (!(scale >= value_type(0)) || !std::isfinite(double(scale)))
      throw invalid_argument(
          detail::concat(where, ": the guidance scale w must be finite and >= 0, got ", scale));
    if (classifier.dim() > 0) require_dimension(classifier.dim(), model.dim(), "the classifier", where);
    if (labels.extent(0) == 0) throw invalid_argument(detail::concat(where, ": no labels"));
    detail::require_labels(typename memory_space::execution_space(), labels, classifier.classes(), where);
  }

  KOKKOS_INLINE_FUNCTION int dim() const { return m_model.dim(); }
  const Model& model() const { return m_model; }
  const Classifier& classifier() const { return m_classifier; }
  const labels_type& labels() const { return m_labels; }
  value_type scale() const { return m_scale; }

  template <class ExecSpace>
  void score(const ExecSpace& exec, const ConstBatchView<value_type, memory_space>& x,
             const NoiseLevels<value_type, memory_space>& sigma,
             const BatchView<value_type, memory_space>& out) const {
    const char* where = "scorekit::BatchClassifierGuidedScore::score";
    detail::check_batch_shapes(x, sigma, out, dim(), where);
    if (x.extent(0) != m_labels.extent(0))
      throw dimension_mismatch(detail::concat(where, ": a batch of ", x.extent(0), " samples but ",
                                              m_labels.extent(0), " labels; give one label a sample"));
    m_model.score(exec, x, sigma, out);
    if (m_scale == value_type(0)) return;
    if (m_g.extent(0) != x.extent(0) || m_g.extent(1) != x.extent(1))
      m_g = BatchView<value_type, memory_space>(
          Kokkos::view_alloc(std::string("scorekit::BatchClassifierGuidedScore::gradient"),
                             Kokkos::WithoutInitializing),
          x.extent(0), x.extent(1));
    m_classifier.grad_log_likelihood(exec, x, sigma, m_labels, m_g);
    add_scaled(exec, out);
  }

  // Public only because nvcc rejects device lambdas in private members.
  template <class ExecSpace>
  void add_scaled(const ExecSpace& exec, const BatchView<value_type, memory_space>& out) const {
    const auto g = m_g;
    const value_type w = m_scale;
    const std::int64_t d = std::int64_t(out.extent(1));
    Kokkos::parallel_for(
        "scorekit::BatchClassifierGuidedScore::add",
        Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::int64_t>>(exec, 0,
                                                                        std::int64_t(out.extent(0)) * d),
        KOKKOS_LAMBDA(const std::int64_t e) { out(e / d, e % d) += w * g(e / d, e % d); });
  }

 private:
  Model m_model;
  Classifier m_classifier;
  labels_type m_labels;
  value_type m_scale;
  mutable BatchView<value_type, memory_space> m_g;
};

/// classifier_guided(batch_model, batch_classifier, labels, w): see BatchClassifierGuidedScore.
template <class Model, class Classifier, std::enable_if_t<is_batch_classifier_v<Classifier>, int> = 0>
BatchClassifierGuidedScore<Model, Classifier> classifier_guided(
    const Model& model, const Classifier& classifier,
    Kokkos::View<const int*, typename Model::memory_space> labels, typename Model::value_type scale) {
  return BatchClassifierGuidedScore<Model, Classifier>(model, classifier, labels, scale);
}

}  // namespace scorekit
