// What a divergence estimator needs of a model: detection of the optional forward-mode and analytic-trace
// members, uniform calls whether or not the model takes workspace, and the checks that turn a wrong model
// into one readable compile error.
//
// A model is any copyable type (a Density, an analytic score, a network wrapper: no base class) with
//   using value_type = float or double;
//   KOKKOS_INLINE_FUNCTION int dim() const;
//   KOKKOS_INLINE_FUNCTION void score(const value_type* x, value_type* out) const;
// and optionally
//   // forward mode: s = s(x) and jv = (ds/dx) v, one Jacobian-vector product
//   KOKKOS_INLINE_FUNCTION void jvp(const value_type* x, const value_type* v, value_type* s,
//                                   value_type* jv) const;
//   // the exact trace of ds/dx
//   KOKKOS_INLINE_FUNCTION value_type divergence(const value_type* x) const;
//   KOKKOS_INLINE_FUNCTION int workspace_size() const;  // then every member above takes a trailing
//                                                       // `value_type* work`
// A Density's `laplacian(x)` (core/traits.hpp) is the divergence of its score and is used the same way
// when the model has no `divergence` member.
#pragma once

#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/traits.hpp>

#include <type_traits>
#include <utility>

namespace scorekit {
namespace detail {

// jvp(x, v, s, jv) / jvp(x, v, s, jv, work)
template <class T, class = void>
struct has_jvp_4 : std::false_type {};
template <class T>
struct has_jvp_4<
    T, std::void_t<decltype(std::declval<const T&>().jvp(std::declval<cptr<T>>(), std::declval<cptr<T>>(),
                                                         std::declval<ptr<T>>(), std::declval<ptr<T>>()))>>
    : std::true_type {};
template <class T, class = void>
struct has_jvp_5 : std::false_type {};
template <class T>
struct has_jvp_5<T, std::void_t<decltype(std::declval<const T&>().jvp(
                        std::declval<cptr<T>>(), std::declval<cptr<T>>(), std::declval<ptr<T>>(),
                        std::declval<ptr<T>>(), std::declval<ptr<T>>()))>> : std::true_type {};

// divergence(x) / divergence(x, work)
template <class T, class = void>
struct has_divergence_1 : std::false_type {};
template <class T>
struct has_divergence_1<
    T, std::void_t<decltype(real_t<T>(std::declval<const T&>().divergence(std::declval<cptr<T>>())))>>
    : std::true_type {};
template <class T, class = void>
struct has_divergence_2 : std::false_type {};
template <class T>
struct has_divergence_2<T, std::void_t<decltype(real_t<T>(std::declval<const T&>().divergence(
                               std::declval<cptr<T>>(), std::declval<ptr<T>>())))>> : std::true_type {};

// jvp(x, sigma, v, s, jv) / jvp(x, sigma, v, s, jv, work)
template <class T, class = void>
struct has_nc_jvp_5 : std::false_type {};
template <class T>
struct has_nc_jvp_5<T, std::void_t<decltype(std::declval<const T&>().jvp(
                           std::declval<cptr<T>>(), std::declval<real_t<T>>(), std::declval<cptr<T>>(),
                           std::declval<ptr<T>>(), std::declval<ptr<T>>()))>> : std::true_type {};
template <class T, class = void>
struct has_nc_jvp_6 : std::false_type {};
template <class T>
struct has_nc_jvp_6<T, std::void_t<decltype(std::declval<const T&>().jvp(
                           std::declval<cptr<T>>(), std::declval<real_t<T>>(), std::declval<cptr<T>>(),
                           std::declval<ptr<T>>(), std::declval<ptr<T>>(), std::declval<ptr<T>>()))>>
    : std::true_type {};

}  // namespace detail

/// What a model offers a divergence estimator, as compile-time booleans.
template <class T>
struct divergence_model_traits {
  using value_type = detail::real_t<T>;
  static constexpr bool has_value_type = policy_traits<T>::has_value_type;
  static constexpr bool has_dim = policy_traits<T>::has_dim;
  static constexpr bool has_workspace = policy_traits<T>::has_workspace;
  static constexpr bool has_score = policy_traits<T>::has_score;
  static constexpr bool has_jvp = has_workspace ? detail::has_jvp_5<T>::value : detail::has_jvp_4<T>::value;
  static constexpr bool has_divergence =
      has_workspace ? detail::has_divergence_2<T>::value : detail::has_divergence_1<T>::value;
  static constexpr bool has_laplacian = policy_traits<T>::has_laplacian;
  /// divergence(x), or a Density's laplacian(x): the exact trace without Jacobian-vector products.
  static constexpr bool has_analytic_divergence = has_divergence || has_laplacian;
};

// The noise-conditional form, jvp(x, sigma, v, s, jv[, work]): s = s_sigma(x), jv = (d s_sigma / dx) v
// (likelihood/flow_divergence.hpp, and batched(model) in score/batched.hpp).

/// True when a noise-conditional model has jvp(x, sigma, v, s, jv[, work]).
template <class T>
constexpr bool has_noise_conditional_jvp_v =
    policy_traits<T>::has_workspace ? detail::has_nc_jvp_6<T>::value : detail::has_nc_jvp_5<T>::value;

/// s = s_sigma(x) and jv = (d s_sigma / dx) v through the model's noise-conditional jvp.
template <class Model, class Real>
KOKKOS_INLINE_FUNCTION void noise_conditional_jvp(const Model& model, const Real* x, Real sigma,
                                                  const Real* v, Real* s, Real* jv, Real* work) {
  if constexpr (policy_traits<Model>::has_workspace && detail::has_nc_jvp_6<Model>::value)
    model.jvp(x, sigma, v, s, jv, work);
  else if constexpr (!policy_traits<Model>::has_workspace && detail::has_nc_jvp_5<Model>::value)
    ((void)work, model.jvp(x, sigma, v, s, jv));
  else
    ((void)model, (void)x, (void)sigma, (void)v, (void)s, (void)jv, (void)work);
}

namespace detail {

/// The requirements every estimator has of a model evaluated at points of type Real: value_type, dim(),
/// score(), and Real == value_type. Naming `model_requirements<Model, Real>::value` instantiates the
/// class, so each failed requirement is one static_assert; each fires only when everything before it
/// holds, so a wrong model gets exactly one message.
template <class Model, class Real>
struct model_requirements {
  using tr = divergence_model_traits<Model>;
  static_assert(tr::has_value_type,
                "scorekit: the type needs `using value_type = double;` (or float) as a member");
  static_assert(!tr::has_value_type || tr::has_dim,
                "scorekit: the type needs a member `KOKKOS_INLINE_FUNCTION int dim() const`");
  static_assert(!(tr::has_value_type && tr::has_dim) || tr::has_score,
                "scorekit: a divergence estimator needs a model with a member `KOKKOS_INLINE_FUNCTION void "
                "score(const value_type* x, value_type* out) const` (with a trailing `value_type* work` "
                "when it declares workspace_size())");
  static_assert(!(tr::has_value_type && tr::has_dim && tr::has_score) ||
                    std::is_same<Real, typename tr::value_type>::value,
                "scorekit: a divergence estimator's points must have the model's value_type as scalar type");
  static constexpr bool value = tr::has_value_type && tr::has_dim && tr::has_score &&
                                std::is_same<Real, typename tr::value_type>::value;
};

}  // namespace detail

// Uniform calls, whether or not the model takes workspace. When the member is missing they do nothing:
// the estimator's static_assert has already produced the one error message.

/// s = s(x) and jv = (ds/dx) v through the model's jvp member.
template <class Model, class Real>
KOKKOS_INLINE_FUNCTION void jacobian_vector_product(const Model& model, const Real* x, const Real* v, Real* s,
                                                    Real* jv, Real* work) {
  if constexpr (policy_traits<Model>::has_workspace && detail::has_jvp_5<Model>::value)
    model.jvp(x, v, s, jv, work);
  else if constexpr (!policy_traits<Model>::has_workspace && detail::has_jvp_4<Model>::value)
    ((void)work, model.jvp(x, v, s, jv));
  else
    ((void)model, (void)x, (void)v, (void)s, (void)jv, (void)work);
}

/// The model's exact divergence: its divergence member, else its laplacian member (a Density).
template <class Model, class Real>
KOKKOS_INLINE_FUNCTION Real analytic_divergence(const Model& model, const Real* x, Real* work) {
  using tr = divergence_model_traits<Model>;
  if constexpr (tr::has_workspace && detail::has_divergence_2<Model>::value)
    return model.divergence(x, work);
  else if constexpr (!tr::has_workspace && detail::has_divergence_1<Model>::value)
    return ((void)work, model.divergence(x));
  else if constexpr (tr::has_laplacian)
    return laplacian(model, x, work);
  else
    return ((void)model, (void)x, (void)work, Real(0));
}

}  // namespace scorekit
