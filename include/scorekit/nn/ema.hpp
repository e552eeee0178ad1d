// An exponential moving average of a network's parameters, the "shadow" weights that NCSNv2 samples
// with (Song and Ermon, "Improved techniques for training score-based generative models", NeurIPS 2020,
// Technique 5, rate 0.999): after each optimiser step, shadow <- rate shadow + (1 - rate) params.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>

#include <cmath>
#include <cstdint>

namespace scorekit {
namespace nn {

namespace detail {

/// shadow <- rate shadow + (1 - rate) params, element i; the whole kernel does nothing while
/// `checked` and *failure holds a failure (is not INT64_MAX). The one definition of the EMA update.
template <class Real, class Mem>
struct EmaUpdate {
  Kokkos::View<Real*, Mem> shadow;
  Kokkos::View<const Real*, Mem> params;
  Kokkos::View<const std::int64_t, Mem> failure;
  Real rate, one_minus_rate;
  bool checked;

  KOKKOS_INLINE_FUNCTION void operator()(const std::size_t i) const {
    if (checked && failure() != INT64_MAX) return;
    shadow(i) = rate * shadow(i) + one_minus_rate * params(i);
  }
};

}  // namespace detail

template <class Real, class ExecSpace>
class Ema {
 public:
  using value_type = Real;
  using execution_space = ExecSpace;
  using memory_space = typename ExecSpace::memory_space;
  using vector_type = Kokkos::View<Real*, memory_space>;
  using const_vector_type = Kokkos::View<const Real*, memory_space>;

  /// A shadow that starts as a copy of `params`. Throws invalid_argument unless 0 <= rate < 1.
  Ema(const const_vector_type& params, Real rate, ExecSpace exec = ExecSpace()) : m_rate(rate), m_exec(exec) {
    if (!(rate >= Real(0) && rate < Real(1)))
      throw invalid_argument(
          scorekit::detail::concat("scorekit::nn::Ema: rate must be in [0, 1), got ", rate));
    if (params.extent(0) == 0) throw invalid_argument("scorekit::nn::Ema: the parameter view is empty");
    m_shadow = vector_type(Kokkos::view_alloc(Kokkos::WithoutInitializing, "scorekit::nn::Ema::shadow"),
                           params.extent(0));
    Kokkos::deep_copy(m_exec, m_shadow, params);
    m_exec.fence();
  }

  /// A failure flag on the device, as nn::Adam::step_unless keeps it: INT64_MAX while all is well.
  using failure_type = Kokkos::View<const std::int64_t, memory_space>;

  /// shadow <- rate shadow + (1 - rate) params, and waits for it. Throws dimension_mismatch when the
  /// sizes differ.
  void update(const const_vector_type& params) {
    launch(params, failure_type(), false, "scorekit::nn::Ema::update");
    m_exec.fence();
  }

  /// update() for a training loop that must not wait for the device: launches the update and returns;
  /// the device skips it when `failure` holds a failure (is not INT64_MAX) when it runs, so after a
  /// failed step the shadow stays that of before it.
  void update_unless(const failure_type& failure, const const_vector_type& params) {
    launch(params, failure, true, "scorekit::nn::Ema::update_unless");
  }

  /// The averaged parameters (copy them into a network's parameter view to evaluate it).
  const_vector_type shadow() const { return m_shadow; }
  Real rate() const { return m_rate; }
  int size() const { return int(m_shadow.extent(0)); }

  /// Replaces the shadow (to resume training) by a rank-1 view of the same size in any memory space.
  /// Throws invalid_argument when the size differs or a value is NaN or infinite; then nothing changes.
  template <class View>
  void set_shadow(const View& shadow) {
    constexpr const char* where = "scorekit::nn::Ema::set_shadow";
    static_assert(Kokkos::is_view<View>::value && View::rank == 1,
                  "scorekit::nn::Ema::set_shadow: the shadow must be a rank-1 Kokkos view");
    require_dimension(std::int64_t(shadow.extent(0)), std::int64_t(m_shadow.extent(0)), "the shadow", where);
    auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), shadow);
    auto copy = Kokkos::create_mirror_view(m_shadow);
    for (std::size_t i = 0; i < h.extent(0); ++i) {
      const Real value = Real(h(i));
      if (!std::isfinite(value))
        throw invalid_argument(scorekit::detail::concat(where, ": entry ", i, " is ", value));
      copy(i) = value;
    }
    Kokkos::deep_copy(m_shadow, copy);
  }

 private:
  void launch(const const_vector_type& params, const failure_type& failure, bool checked, const char* where) {
    require_dimension(std::int64_t(params.extent(0)), std::int64_t(m_shadow.extent(0)), "the parameter view",
                      where);
    Kokkos::parallel_for(
        "scorekit::nn::Ema::update", Kokkos::RangePolicy<ExecSpace>(m_exec, 0, m_shadow.extent(0)),
        detail::EmaUpdate<Real, memory_space>{m_shadow, params, failure, m_rate, Real(1) - m_rate, checked});
  }

  Real m_rate;
  ExecSpace m_exec;
  vector_type m_shadow;
};

}  // namespace nn
}  // namespace scorekit
