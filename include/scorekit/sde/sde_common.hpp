// What the noising SDEs share. A noising SDE (VE, VP, sub-VP) is linear in x,
//   dx = f(t) x dt + g(t) dW,   t in [0, T],
// so its transition from the data is Gaussian: p_0t(x_t | x_0) = N(a(t) x_0, s(t)^2 I). A type is a
// NoisingSDE when it has
//   using value_type = float or double;
//   KOKKOS_INLINE_FUNCTION value_type drift_coefficient(value_type t) const;  // f(t)
//   KOKKOS_INLINE_FUNCTION value_type diffusion(value_type t) const;          // g(t)
//   KOKKOS_INLINE_FUNCTION MarginalKernel<value_type> marginal(value_type t) const;  // a(t), s(t)
//   KOKKOS_INLINE_FUNCTION value_type t_max() const;      // T
//   KOKKOS_INLINE_FUNCTION value_type prior_std() const;  // the prior the reverse process starts from is
//   N(0, prior_std^2 I)
//
// The marginal of x_t is then the data law scaled by a(t) and convolved with N(0, s(t)^2 I), and its score
// is that of a noise-conditional model at the noise level sigma = s(t) / a(t), evaluated at x / a(t):
//   grad log p_t(x) = s_sigma(x / a) / a.
// So every noise-conditional score model (an exact mixture score, an NCSN network) serves every SDE;
// `score_at_time` below does that change of variables.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/traits.hpp>

#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>

namespace scorekit {

/// p_0t(x_t | x_0) = N(scale x_0, std^2 I).
template <class Real>
struct MarginalKernel {
  Real scale = 1;
  Real std = 0;
  /// The noise level of x_t / scale: what a noise-conditional model is asked at time t.
  KOKKOS_INLINE_FUNCTION Real sigma() const { return std / scale; }
};

namespace detail {

template <class T, class = void>
struct is_noising_sde : std::false_type {};
template <class T>
struct is_noising_sde<
    T, std::void_t<typename T::value_type,
                   decltype(typename T::value_type(
                       std::declval<const T&>().drift_coefficient(std::declval<typename T::value_type>()))),
                   decltype(typename T::value_type(
                       std::declval<const T&>().diffusion(std::declval<typename T::value_type>()))),
                   decltype(std::declval<const T&>().marginal(std::declval<typename T::value_type>()).std),
                   decltype(typename T::value_type(std::declval<const T&>().t_max())),
                   decltype(typename T::value_type(std::declval<const T&>().prior_std()))>> : std::true_type {
};

/// Checks a time against [0, T]: finite and in range.
template <class Real>
void check_time(Real t, Real t_max, const char* what, const char* where) {
  if (!(t >= Real(0)) || !(t <= t_max))
    throw invalid_argument(detail::concat(where, ": ", what, " must lie in [0, ", t_max, "], got ", t));
}

/// Checks a finite SDE parameter.
template <class Real>
void require_finite(Real value, const char* what, const char* where) {
  if (!(std::abs(double(value)) < std::numeric_limits<double>::infinity()))
    throw invalid_argument(detail::concat(where, ": ", what, " must be finite, got ", value));
}

}  // namespace detail

/// True when T is a NoisingSDE.
template <class T>
constexpr bool is_noising_sde_v = detail::is_noising_sde<T>::value;

template <class T>
constexpr void assert_noising_sde() {
  static_assert(is_noising_sde_v<T>,
                "scorekit: a noising SDE needs value_type and members drift_coefficient(t), diffusion(t), "
                "marginal(t) (a MarginalKernel), t_max() and prior_std() (see sde/sde_common.hpp)");
}

/// Workspace that score_at_time needs: the model's own, then d values for x / a(t).
template <class Model>
KOKKOS_INLINE_FUNCTION int time_score_workspace_size(const Model& model) {
  return workspace_size(model) + model.dim();
}

/// grad_x log p_t(x) for a marginal kernel already known (see score_at_time).
template <class Model, class Real>
KOKKOS_INLINE_FUNCTION void score_at_marginal(const Model& model, int d, const Real* x,
                                              const MarginalKernel<Real>& k, Real* out, Real* work) {
  Real* model_work = work + d;
  if (k.scale == Real(1)) {
    noise_conditional_score(model, x, k.std, out, model_work);
    return;
  }
  const Real inv = Real(1) / k.scale;
  for (int j = 0; j < d; ++j) work[j] = x[j] * inv;
  noise_conditional_score(model, static_cast<const Real*>(work), k.std * inv, out, model_work);
  for (int j = 0; j < d; ++j) out[j] *= inv;
}

/// score_at_marginal for nb particles: particle b at x + b x_stride, its score to out + b out_stride, its
/// time_score_workspace_size(model) values of workspace at work + b work_stride (the block's workspaces
/// one span, as score_block wants). One score_block() call when the model has one, nb > 1 and the
/// kernel's scale is 1 (VE); else particle by particle. A particle gets score_at_marginal's bits when the
/// model's score_block gives each particle its score()'s.
template <class Model, class Real>
KOKKOS_INLINE_FUNCTION void score_block_at_marginal(const Model& model, int nb, int d, const Real* x,
                                                    int x_stride, const MarginalKernel<Real>& k, Real* out,
                                                    int out_stride, Real* work, int work_stride) {
  if constexpr (policy_traits<Model>::has_score_block) {
    if (nb > 1 && k.scale == Real(1)) {
      model.score_block(nb, x, x_stride, k.std, out, out_stride, work, work_stride);
      return;
    }
  }
  for (int b = 0; b < nb; ++b)
    score_at_marginal(model, d, x + b * x_stride, k, out + b * out_stride, work + b * work_stride);
}

/// grad_x log p_t(x) from a noise-conditional model: s_sigma(x / a) / a with sigma = s(t) / a(t). `work`
/// holds time_score_workspace_size(model) values.
template <class SDE, class Model, class Real>
KOKKOS_INLINE_FUNCTION void score_at_time(const SDE& sde, const Model& model, int d, const Real* x, Real t,
                                          Real* out, Real* work) {
  score_at_marginal(model, d, x, sde.marginal(t), out, work);
}

}  // namespace scorekit
