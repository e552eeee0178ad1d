// The batched execution path's model concept. A BatchScoreModel evaluates a noise-conditional score for a
// whole batch in one host-called member, so that its evaluation can be GEMM-shaped kernels over all
// samples (a convolutional network, a mixture's precision tables) rather than one work item per sample:
//
//   using value_type = float or double;
//   using memory_space = ...;                              // where x, sigma and out live
//   KOKKOS_INLINE_FUNCTION int dim() const;                // D (device-callable, like every dim())
//   template <class ExecSpace>
//   void score(const ExecSpace& exec, const ConstBatchView<value_type, memory_space>& x,   // N x D
//              const NoiseLevels<value_type, memory_space>& sigma,                          // N
//              const BatchView<value_type, memory_space>& out) const;                       // N x D
//
// `score` is called on the host and enqueues its work on `exec` (it need not fence); out(n, :) is
// grad_x log p_sigma(n)(x(n, :)), each sample with its own noise level, which is what lets integrators
// whose particles sit at different times (and continuous-time training) make one call. It throws
// invalid_argument for shapes that do not match (detail::check_batch_shapes says it the same way for
// every model).
//
// Optionally, the products the divergence estimators need (likelihood/log_likelihood.hpp runs on the
// batched path with either):
//   template <class ExecSpace>
//   void jvp(const ExecSpace& exec, x, sigma, const ConstBatchView<value_type, memory_space>& v,
//            const BatchView<value_type, memory_space>& s, const BatchView<value_type, memory_space>& out)
//       const;   // s(n, :) = the score, out(n, :) = J_n v(n, :), J_n = d s / d x at sample n
//   void vjp(same arguments) const;   // s(n, :) = the score, out(n, :) = J_n^T v(n, :)
// A network has the vector-Jacobian product for the cost of a backward pass (ImageScoreModel); batched()
// gives the Jacobian-vector product of a per-particle model that has one. The trace estimators read the
// product only through v^T (J v) or its diagonal entries, which J^T gives alike, so either serves them.
//
// The samplers and integrators take a batch model wherever they take a per-particle one: annealed_langevin
// and integrate (through reverse_sde / probability_flow) then run batch-synchronously, one batched score
// call a model evaluation, with the same step definitions and the same noise, CounterRng(seed, particle,
// step), as their fused per-particle kernels. score/batched.hpp turns any per-particle noise-conditional
// model into a batch model.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/traits.hpp>

#include <cstdint>
#include <type_traits>
#include <utility>

namespace scorekit {

/// A batch of N samples of dimension D, one sample a row.
template <class Real, class MemorySpace>
using BatchView = Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace>;
template <class Real, class MemorySpace>
using ConstBatchView = Kokkos::View<const Real**, Kokkos::LayoutRight, MemorySpace>;
/// One noise level a sample.
template <class Real, class MemorySpace>
using NoiseLevels = Kokkos::View<const Real*, MemorySpace>;

namespace detail {

template <class T, class = void>
struct is_batch_score_model : std::false_type {};
template <class T>
struct is_batch_score_model<
    T, std::void_t<
           typename T::value_type, typename T::memory_space, decltype(int(std::declval<const T&>().dim())),
           decltype(std::declval<const T&>().score(
               std::declval<const typename T::memory_space::execution_space&>(),
               std::declval<const ConstBatchView<typename T::value_type, typename T::memory_space>&>(),
               std::declval<const NoiseLevels<typename T::value_type, typename T::memory_space>&>(),
               std::declval<const BatchView<typename T::value_type, typename T::memory_space>&>()))>>
    : std::true_type {};

template <class T, class = void>
struct memory_space_of {
  using type = Kokkos::DefaultExecutionSpace::memory_space;
};
template <class T>
struct memory_space_of<T, std::void_t<typename T::memory_space>> {
  using type = typename T::memory_space;
};
/// T's memory_space, or the default execution space's for a type that declares none.
template <class T>
using memory_space_of_t = typename memory_space_of<T>::type;

/// The host checks every batch model makes before launching: N >= 1, x N x D, sigma N, out N x D.
template <class X, class S, class O>
void check_batch_shapes(const X& x, const S& sigma, const O& out, int dim, const char* where) {
  if (x.extent(0) == 0) throw invalid_argument(detail::concat(where, ": the batch is empty (N = 0)"));
  if (std::int64_t(x.extent(1)) != dim)
    throw invalid_argument(detail::concat(where, ": the batch is ", x.extent(0), " x ", x.extent(1),
                                          " but the model's dimension is ", dim));
  if (sigma.extent(0) != x.extent(0))
    throw invalid_argument(
        detail::concat(where, ": ", x.extent(0), " samples but ", sigma.extent(0), " noise levels"));
  if (out.extent(0) != x.extent(0) || out.extent(1) != x.extent(1))
    throw invalid_argument(detail::concat(where, ": the output is ", out.extent(0), " x ", out.extent(1),
                                          " but the batch is ", x.extent(0), " x ", x.extent(1)));
}

}  // namespace detail

namespace detail {

/// The lowest index of a label outside 0..k-1 (a Min reduction; its identity when there is none). A
/// named functor: nvcc takes no device lambda in a private member, where the callers check.
template <class Mem>
struct FirstLabelOutside {
  Kokkos::View<const int*, Mem> labels;
  int k;
  KOKKOS_INLINE_FUNCTION void operator()(const int i, int& first) const {
    if ((labels(i) < 0 || labels(i) >= k) && i < first) first = i;
  }
};

/// Throws invalid_argument naming the first of `labels` (one a sample) outside 0..classes-1.
template <class Exec, class Mem>
void require_labels(const Exec& exec, const Kokkos::View<const int*, Mem>& labels, int classes,
                    const char* where) {
  const int n = int(labels.extent(0));
  int bad = n;
  Kokkos::parallel_reduce("scorekit::require_labels", Kokkos::RangePolicy<Exec>(exec, 0, n),
                          FirstLabelOutside<Mem>{labels, classes}, Kokkos::Min<int>(bad));
  if (bad < n) {
    int value = 0;
    Kokkos::deep_copy(value, Kokkos::subview(labels, std::size_t(bad)));
    throw invalid_argument(
        concat(where, ": the label of sample ", bad, " is ", value, ", not a class in 0..", classes - 1));
  }
}

}  // namespace detail

namespace detail {
template <class T, class = void>
struct has_batch_jvp : std::false_type {};
template <class T>
struct has_batch_jvp<
    T, std::void_t<decltype(std::declval<const T&>().jvp(
           std::declval<const typename T::memory_space::execution_space&>(),
           std::declval<const ConstBatchView<typename T::value_type, typename T::memory_space>&>(),
           std::declval<const NoiseLevels<typename T::value_type, typename T::memory_space>&>(),
           std::declval<const ConstBatchView<typename T::value_type, typename T::memory_space>&>(),
           std::declval<const BatchView<typename T::value_type, typename T::memory_space>&>(),
           std::declval<const BatchView<typename T::value_type, typename T::memory_space>&>()))>>
    : std::true_type {};
template <class T, class = void>
struct has_batch_vjp : std::false_type {};
template <class T>
struct has_batch_vjp<
    T, std::void_t<decltype(std::declval<const T&>().vjp(
           std::declval<const typename T::memory_space::execution_space&>(),
           std::declval<const ConstBatchView<typename T::value_type, typename T::memory_space>&>(),
           std::declval<const NoiseLevels<typename T::value_type, typename T::memory_space>&>(),
           std::declval<const ConstBatchView<typename T::value_type, typename T::memory_space>&>(),
           std::declval<const BatchView<typename T::value_type, typename T::memory_space>&>(),
           std::declval<const BatchView<typename T::value_type, typename T::memory_space>&>()))>>
    : std::true_type {};
}  // namespace detail

/// True when T is a BatchScoreModel (see above).
template <class T>
constexpr bool is_batch_score_model_v = detail::is_batch_score_model<T>::value;

/// True when T is a batch model and not also a per-particle noise-conditional one: what makes the
/// samplers and integrators take the batched path (batched(model), score/batched.hpp, is one).
template <class T>
constexpr bool is_batch_only_v = is_batch_score_model_v<T> && !is_noise_conditional_score_v<T>;

/// True when a batch model has jvp(exec, x, sigma, v, s, out), resp. vjp(...) (see above).
template <class T>
constexpr bool has_batch_jvp_v = detail::has_batch_jvp<T>::value;
template <class T>
constexpr bool has_batch_vjp_v = detail::has_batch_vjp<T>::value;

}  // namespace scorekit
