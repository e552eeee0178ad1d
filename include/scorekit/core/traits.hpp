// The Density and noise-conditional ScoreModel concepts: detection of each member, one static_assert per
// requirement whose message names what is missing, and dispatch helpers that let a type either take
// caller-owned workspace (declare `KOKKOS_INLINE_FUNCTION int workspace_size() const`) or not.
//
// The device contract: a policy is copied by value into kernels, and every member a kernel calls must be
// device-callable (`KOKKOS_INLINE_FUNCTION` or `KOKKOS_FUNCTION`): `dim()`, `workspace_size()`,
// `block_size()` and the evaluations below. Set-up (constructors, validation that throws) stays on the
// host. nvcc only warns when device code calls a host member and then drops the call, so scorekit's CUDA
// builds make that warning an error; under nvcc, `assert_*` below also call every device member from
// device-callable code (`device_contract_probe`), so a member that is not device-callable is reported
// there, next to a comment naming it.
//
// A Density is any copyable type with
//   using value_type = float or double;
//   KOKKOS_INLINE_FUNCTION int dim() const;
//   KOKKOS_INLINE_FUNCTION value_type log_prob(const value_type* x) const;          // up to a constant
//   KOKKOS_INLINE_FUNCTION void score(const value_type* x, value_type* out) const;  // grad log p
// and optionally
//   KOKKOS_INLINE_FUNCTION value_type laplacian(const value_type* x) const;         // div grad log p
//   KOKKOS_INLINE_FUNCTION int workspace_size() const;  // then every member above takes a trailing
//                                                       // `value_type* work`
//
// A noise-conditional ScoreModel (what annealed Langevin needs) has value_type, dim() and
//   KOKKOS_INLINE_FUNCTION void score(const value_type* x, value_type sigma, value_type* out) const;
// (with the same optional workspace), and optionally, to evaluate a block of particles at once,
//   static constexpr int max_block;
//   KOKKOS_INLINE_FUNCTION int block_size() const;  // the block the model wants now,
//                                                   // 1 ..= max_block (1: no blocking)
//   KOKKOS_INLINE_FUNCTION void score_block(int nb, const value_type* x, int x_stride,
//                                           value_type sigma, value_type* out, int out_stride,
//                                           value_type* work, int work_stride) const;
//                                           // nb <= max_block particles
// where particle b's workspace starts at work + b * work_stride and the samplers guarantee that the
// nb workspaces are one contiguous region of nb * work_stride values (a model may use it as a whole).
#pragma once

#include <scorekit/core/kokkos.hpp>

#include <type_traits>
#include <utility>

namespace scorekit {
namespace detail {

template <class T, class = void>
struct has_value_type : std::false_type {};
template <class T>
struct has_value_type<T, std::void_t<typename T::value_type>>
    : std::is_floating_point<typename T::value_type> {};

template <class T, class = void>
struct value_type_of {
  using type = double;  // placeholder so later checks do not cascade when value_type is missing
};
template <class T>
struct value_type_of<T, std::void_t<typename T::value_type>> {
  using type = typename T::value_type;
};
template <class T>
using real_t = typename value_type_of<T>::type;

template <class T, class = void>
struct has_dim : std::false_type {};
template <class T>
struct has_dim<T, std::void_t<decltype(int(std::declval<const T&>().dim()))>> : std::true_type {};

template <class T, class = void>
struct has_workspace_size : std::false_type {};
template <class T>
struct has_workspace_size<T, std::void_t<decltype(int(std::declval<const T&>().workspace_size()))>>
    : std::true_type {};

template <class T>
using cptr = const real_t<T>*;
template <class T>
using ptr = real_t<T>*;

// log_prob(x) / log_prob(x, work)
template <class T, class = void>
struct has_log_prob_1 : std::false_type {};
template <class T>
struct has_log_prob_1<
    T, std::void_t<decltype(real_t<T>(std::declval<const T&>().log_prob(std::declval<cptr<T>>())))>>
    : std::true_type {};
template <class T, class = void>
struct has_log_prob_2 : std::false_type {};
template <class T>
struct has_log_prob_2<T, std::void_t<decltype(real_t<T>(std::declval<const T&>().log_prob(
                             std::declval<cptr<T>>(), std::declval<ptr<T>>())))>> : std::true_type {};

// score(x, out) / score(x, out, work)
template <class T, class = void>
struct has_score_2 : std::false_type {};
template <class T>
struct has_score_2<
    T, std::void_t<decltype(std::declval<const T&>().score(std::declval<cptr<T>>(), std::declval<ptr<T>>()))>>
    : std::true_type {};
template <class T, class = void>
struct has_score_3 : std::false_type {};
template <class T>
struct has_score_3<T, std::void_t<decltype(std::declval<const T&>().score(
                          std::declval<cptr<T>>(), std::declval<ptr<T>>(), std::declval<ptr<T>>()))>>
    : std::true_type {};

// laplacian(x) / laplacian(x, work)
template <class T, class = void>
struct has_laplacian_1 : std::false_type {};
template <class T>
struct has_laplacian_1<
    T, std::void_t<decltype(real_t<T>(std::declval<const T&>().laplacian(std::declval<cptr<T>>())))>>
    : std::true_type {};
template <class T, class = void>
struct has_laplacian_2 : std::false_type {};
template <class T>
struct has_laplacian_2<T, std::void_t<decltype(real_t<T>(std::declval<const T&>().laplacian(
                              std::declval<cptr<T>>(), std::declval<ptr<T>>())))>> : std::true_type {};

// noise-conditional score(x, sigma, out) / score(x, sigma, out, work)
template <class T, class = void>
struct has_nc_score_3 : std::false_type {};
template <class T>
struct has_nc_score_3<T, std::void_t<decltype(std::declval<const T&>().score(
                             std::declval<cptr<T>>(), std::declval<real_t<T>>(), std::declval<ptr<T>>()))>>
    : std::true_type {};
template <class T, class = void>
struct has_nc_score_4 : std::false_type {};
template <class T>
struct has_nc_score_4<
    T, std::void_t<decltype(std::declval<const T&>().score(std::declval<cptr<T>>(), std::declval<real_t<T>>(),
                                                           std::declval<ptr<T>>(), std::declval<ptr<T>>()))>>
    : std::true_type {};

// score_block(nb, x, x_stride, sigma, out, out_stride, work, work_stride) and max_block
template <class T, class = void>
struct has_nc_score_block : std::false_type {};
template <class T>
struct has_nc_score_block<
    T, std::void_t<decltype(std::declval<const T&>().score_block(
                       int(), std::declval<cptr<T>>(), int(), std::declval<real_t<T>>(),
                       std::declval<ptr<T>>(), int(), std::declval<ptr<T>>(), int())),
                   decltype(int(T::max_block)), decltype(int(std::declval<const T&>().block_size()))>>
    : std::true_type {};

/// T::max_block for a model with score_block, else 1.
template <class T>
constexpr int model_max_block() {
  if constexpr (has_nc_score_block<T>::value)
    return T::max_block;
  else
    return 1;
}

}  // namespace detail

/// What a type offers, as compile-time booleans.
template <class T>
struct policy_traits {
  using value_type = detail::real_t<T>;
  static constexpr bool has_value_type = detail::has_value_type<T>::value;
  static constexpr bool has_dim = detail::has_dim<T>::value;
  static constexpr bool has_workspace = detail::has_workspace_size<T>::value;
  static constexpr bool has_log_prob =
      has_workspace ? detail::has_log_prob_2<T>::value : detail::has_log_prob_1<T>::value;
  static constexpr bool has_score =
      has_workspace ? detail::has_score_3<T>::value : detail::has_score_2<T>::value;
  static constexpr bool has_laplacian =
      has_workspace ? detail::has_laplacian_2<T>::value : detail::has_laplacian_1<T>::value;
  static constexpr bool has_noise_conditional_score =
      has_workspace ? detail::has_nc_score_4<T>::value : detail::has_nc_score_3<T>::value;
  static constexpr bool has_score_block = detail::has_nc_score_block<T>::value;
};

/// True when T is a Density whose score is available (what ULA needs).
template <class T>
constexpr bool is_score_density_v =
    policy_traits<T>::has_value_type&& policy_traits<T>::has_dim&& policy_traits<T>::has_score;
/// True when T is a full Density (log_prob and score: what MALA and HMC need).
template <class T>
constexpr bool is_density_v = is_score_density_v<T>&& policy_traits<T>::has_log_prob;
/// True when T is a noise-conditional score model (what annealed Langevin needs).
template <class T>
constexpr bool is_noise_conditional_score_v = policy_traits<T>::has_value_type&& policy_traits<T>::has_dim&&
    policy_traits<T>::has_noise_conditional_score;

namespace detail {
/// The members every kernel may call, called from device-callable code. Instantiated (by address) only by
/// device compilers: nvcc and hipcc then check that each is device-callable, and an error here names the
/// member that is a host function.
template <class T>
KOKKOS_INLINE_FUNCTION void device_contract_probe(const T& t) {
  // scorekit device contract: `dim()` is called inside kernels; declare it KOKKOS_INLINE_FUNCTION.
  (void)t.dim();
  // scorekit device contract: `workspace_size()` is called inside kernels; declare it
  // KOKKOS_INLINE_FUNCTION.
  if constexpr (has_workspace_size<T>::value) (void)t.workspace_size();
  // scorekit device contract: `block_size()` is called inside kernels; declare it KOKKOS_INLINE_FUNCTION.
  if constexpr (has_nc_score_block<T>::value) (void)t.block_size();
}
}  // namespace detail

// Each assertion fires only when everything before it holds, so a wrong type gets exactly one message.
template <class T>
constexpr void assert_common() {
  using tr = policy_traits<T>;
  static_assert(tr::has_value_type,
                "scorekit: the type needs `using value_type = double;` (or float) as a member");
  static_assert(!tr::has_value_type || tr::has_dim,
                "scorekit: the type needs a member `KOKKOS_INLINE_FUNCTION int dim() const`");
#if defined(__CUDACC__) || defined(__HIPCC__)
  if constexpr (tr::has_value_type && tr::has_dim) (void)&detail::device_contract_probe<T>;
#endif
}

/// Checks that T can be sampled by score-only samplers (ULA).
template <class T>
constexpr void assert_score_density() {
  using tr = policy_traits<T>;
  assert_common<T>();
  static_assert(!(tr::has_value_type && tr::has_dim) || tr::has_score,
                "scorekit: a Density needs a member `KOKKOS_INLINE_FUNCTION void score(const "
                "value_type* x, value_type* out) const` (with a trailing `value_type* work` when it "
                "declares workspace_size())");
}

/// Checks that T is a full Density (MALA, HMC).
template <class T>
constexpr void assert_density() {
  using tr = policy_traits<T>;
  assert_score_density<T>();
  static_assert(!is_score_density_v<T> || tr::has_log_prob,
                "scorekit: a Density needs a member `KOKKOS_INLINE_FUNCTION value_type log_prob(const "
                "value_type* x) const` (with a trailing `value_type* work` when it declares "
                "workspace_size())");
}

/// Checks that T is a noise-conditional score model (annealed Langevin).
template <class T>
constexpr void assert_noise_conditional_score() {
  using tr = policy_traits<T>;
  assert_common<T>();
  static_assert(!(tr::has_value_type && tr::has_dim) || tr::has_noise_conditional_score,
                "scorekit: a noise-conditional score model needs a member `KOKKOS_INLINE_FUNCTION void "
                "score(const value_type* x, value_type sigma, value_type* out) const` (with a trailing "
                "`value_type* work` when it declares workspace_size())");
}

/// Number of workspace values one evaluation of `t` needs (0 when it declares none).
template <class T>
KOKKOS_INLINE_FUNCTION int workspace_size(const T& t) {
  if constexpr (policy_traits<T>::has_workspace)
    return t.workspace_size();
  else
    return ((void)t, 0);
}

// Uniform calls, whether or not the type takes workspace. When the member is missing they do nothing:
// the assert_* above has already produced the one error message.
template <class T, class Real>
KOKKOS_INLINE_FUNCTION Real log_prob(const T& t, const Real* x, Real* work) {
  if constexpr (policy_traits<T>::has_workspace && detail::has_log_prob_2<T>::value)
    return t.log_prob(x, work);
  else if constexpr (detail::has_log_prob_1<T>::value)
    return ((void)work, t.log_prob(x));
  else
    return ((void)t, (void)x, (void)work, Real(0));
}

template <class T, class Real>
KOKKOS_INLINE_FUNCTION void score(const T& t, const Real* x, Real* out, Real* work) {
  if constexpr (policy_traits<T>::has_workspace && detail::has_score_3<T>::value)
    t.score(x, out, work);
  else if constexpr (detail::has_score_2<T>::value)
    ((void)work, t.score(x, out));
  else
    ((void)t, (void)x, (void)out, (void)work);
}

template <class T, class Real>
KOKKOS_INLINE_FUNCTION Real laplacian(const T& t, const Real* x, Real* work) {
  if constexpr (policy_traits<T>::has_workspace && detail::has_laplacian_2<T>::value)
    return t.laplacian(x, work);
  else if constexpr (detail::has_laplacian_1<T>::value)
    return ((void)work, t.laplacian(x));
  else
    return ((void)t, (void)x, (void)work, Real(0));
}

template <class T, class Real>
KOKKOS_INLINE_FUNCTION void noise_conditional_score(const T& t, const Real* x, Real sigma, Real* out,
                                                    Real* work) {
  if constexpr (policy_traits<T>::has_workspace && detail::has_nc_score_4<T>::value)
    t.score(x, sigma, out, work);
  else if constexpr (detail::has_nc_score_3<T>::value)
    ((void)work, t.score(x, sigma, out));
  else
    ((void)t, (void)x, (void)sigma, (void)out, (void)work);
}

}  // namespace scorekit
