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
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/traits.hpp>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <utility>

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
    value_type* classifier_work = work + m_dim;
    if constexpr (detail::has_grad_log_likelihood_4<Classifier, value_type>::value)
      m_classifier.grad_log_likelihood(x, sigma, g, classifier_work);
    else
      ((void)classifier_work, m_classifier.grad_log_likelihood(x, sigma, g));
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

}  // namespace scorekit
