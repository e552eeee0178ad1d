// Adam (Kingma and Ba, "Adam: a method for stochastic optimization", ICLR 2015, Algorithm 1) on one
// flat parameter view. The gradient arrives as C partial sums ("chunks", e.g. one per block of the
// batch), added in the fixed order chunk 0, 1, ..., C-1 by every backend, so that the step is bitwise
// the same for any thread count. A gradient with a NaN or infinite entry is refused before anything
// changes, so a training loop can catch the error, lower the learning rate and retry, or stop with the
// last good state intact. step() checks on the host and throws at once (it waits for the device);
// step_unless() only launches its kernels, records a bad gradient in a flag on the device and skips
// the update there, so that a training loop never waits for the device between steps (train/).
//
// With g the summed, scaled gradient and t the 1-based step number, each step computes
//   m <- beta1 m + (1 - beta1) g,  v <- beta2 v + (1 - beta2) g^2,
//   p <- p - (lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + epsilon),
// which is Algorithm 1 with the bias corrections folded into the step size, as PyTorch's Adam does
// (epsilon is added to the bias-corrected sqrt(v), as in the paper). The corrections are computed in
// double on the host.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

namespace scorekit {
namespace nn {

/// Adam's hyper-parameters; the defaults are the paper's (sec. 2), as in NCSN and NCSNv2 except their
/// learning rates (1e-3 for the toy NCSN, 1e-4 for NCSNv2's image models).
struct AdamSettings {
  double learning_rate = 1e-3;  ///< > 0
  double beta1 = 0.9;           ///< decay of the first moment, in [0, 1)
  double beta2 = 0.999;         ///< decay of the second moment, in [0, 1)
  double epsilon = 1e-8;        ///< > 0, added to sqrt(v-hat)
};

/// Throws invalid_argument naming the first setting out of range.
inline void validate(const AdamSettings& s, const char* where = "scorekit::nn::AdamSettings") {
  require_positive(s.learning_rate, "learning_rate", where);
  require_positive(s.epsilon, "epsilon", where);
  if (!(s.beta1 >= 0 && s.beta1 < 1))
    throw invalid_argument(scorekit::detail::concat(where, ": beta1 must be in [0, 1), got ", s.beta1));
  if (!(s.beta2 >= 0 && s.beta2 < 1))
    throw invalid_argument(scorekit::detail::concat(where, ": beta2 must be in [0, 1), got ", s.beta2));
}

/// A gradient entry was NaN or infinite; thrown by Adam::step, which then changed nothing.
class non_finite_gradient : public invalid_argument {
 public:
  non_finite_gradient(const std::string& what, std::int64_t parameter, std::int64_t step)
      : invalid_argument(what), m_parameter(parameter), m_step(step) {}
  /// Index (into the flat parameter view) of the lowest non-finite entry.
  std::int64_t parameter() const noexcept { return m_parameter; }
  /// 1-based number of the step that was refused (steps() + 1 at the time).
  std::int64_t step() const noexcept { return m_step; }

 private:
  std::int64_t m_parameter, m_step;
};

namespace detail {

/// Adam's first kernel: work item t sums the gradient chunks of parameters [t Tile, (t + 1) Tile) in
/// row order and scales them into g. On a CPU a tile is a vector loop (256 parameters), on a GPU one
/// parameter (Tile 1). A tile with a NaN or infinite entry records `key + i` for its lowest such
/// parameter i in *failure by an atomic minimum, so the flag ends at key + the lowest bad index (or at
/// an earlier, smaller key); the kernel never reads the flag.
template <class Real, class Mem, int Tile>
struct AdamSumGradient {
  Kokkos::View<const Real**, Kokkos::LayoutRight, Mem> chunks;
  Kokkos::View<Real*, Mem> g;
  Kokkos::View<std::int64_t, Mem> failure;
  Real scale;
  int n;
  std::int64_t key;

  KOKKOS_INLINE_FUNCTION void operator()(const int t) const {
    const int i0 = t * Tile, i1 = i0 + Tile < n ? i0 + Tile : n;
    const int n_chunks = int(chunks.extent(0));
    const std::size_t ldc = chunks.stride(0);
    const Real* c0 = chunks.data();
    Real* gp = g.data();
    // Row by row, so that each loop is a plain vector loop (same order of addition per entry).
    SCOREKIT_SIMD
    for (int i = i0; i < i1; ++i) gp[i] = c0[i];
    for (int k = 1; k < n_chunks; ++k) {
      const Real* ck = c0 + k * ldc;
      SCOREKIT_SIMD
      for (int i = i0; i < i1; ++i) gp[i] += ck[i];
    }
    // Count the non-finite entries (x - x is 0 exactly when x is finite), and only when there are
    // some, find the lowest.
    int bad = 0;
    SCOREKIT_SIMD_SUM(bad)
    for (int i = i0; i < i1; ++i) {
      const Real gi = gp[i] * scale;
      gp[i] = gi;
      bad += (gi - gi == Real(0)) ? 0 : 1;
    }
    if (bad > 0)
      for (int i = i0; i < i1; ++i)
        if (!math::isfinite(gp[i])) {
          Kokkos::atomic_fetch_min(failure.data(), key + std::int64_t(i));
          break;
        }
  }
};

/// Adam's second kernel: the update of the moments and parameters [t Tile, (t + 1) Tile) from the
/// summed gradient g; the whole kernel does nothing while *failure holds a failure (is not INT64_MAX).
/// The one definition of the Adam update, used by Adam::step and Adam::step_unless.
template <class Real, class Mem, int Tile>
struct AdamUpdate {
  Kokkos::View<const Real*, Mem> g;
  Kokkos::View<Real*, Mem> m, v, params;
  Kokkos::View<const std::int64_t, Mem> failure;
  Real beta1, beta2, one_minus_beta1, one_minus_beta2, step_size, inv_sqrt_correction2, eps;
  int n;

  KOKKOS_INLINE_FUNCTION void operator()(const int t) const {
    if (failure() != INT64_MAX) return;
    const int i0 = t * Tile, i1 = i0 + Tile < n ? i0 + Tile : n;
    const Real* gp = g.data();
    Real* mp = m.data();
    Real* vp = v.data();
    Real* pp = params.data();
    SCOREKIT_SIMD
    for (int i = i0; i < i1; ++i) {
      const Real gi = gp[i];
      const Real mi = beta1 * mp[i] + one_minus_beta1 * gi;
      const Real vi = beta2 * vp[i] + one_minus_beta2 * (gi * gi);
      mp[i] = mi;
      vp[i] = vi;
      pp[i] -= step_size * (mi / (math::sqrt(vi) * inv_sqrt_correction2 + eps));
    }
  }
};

}  // namespace detail

template <class Real, class ExecSpace>
class Adam {
 public:
  using value_type = Real;
  using execution_space = ExecSpace;
  using memory_space = typename ExecSpace::memory_space;
  using vector_type = Kokkos::View<Real*, memory_space>;
  using const_vector_type = Kokkos::View<const Real*, memory_space>;
  using chunks_type = Kokkos::View<const Real**, Kokkos::LayoutRight, memory_space>;
  /// A failure flag on the device, for step_unless: `no_failure` while all is well, else the smallest
  /// key recorded by the work that failed (the caller chooses the keys; see step_unless).
  using failure_type = Kokkos::View<std::int64_t, memory_space>;
  static constexpr std::int64_t no_failure = INT64_MAX;

  /// State for `n_params` parameters, moments zero, no step taken. Throws invalid_argument when
  /// n_params <= 0 or a setting is out of range.
  Adam(int n_params, AdamSettings settings = AdamSettings(), ExecSpace exec = ExecSpace())
      : m_settings(settings), m_exec(exec), m_n(n_params) {
    validate(settings, "scorekit::nn::Adam");
    if (n_params <= 0)
      throw invalid_argument(
          scorekit::detail::concat("scorekit::nn::Adam: n_params must be positive, got ", n_params));
    m_m = vector_type("scorekit::nn::Adam::m", std::size_t(n_params));
    m_v = vector_type("scorekit::nn::Adam::v", std::size_t(n_params));
    m_g = vector_type("scorekit::nn::Adam::gradient", std::size_t(n_params));
    m_failure = failure_type("scorekit::nn::Adam::failure");
  }

  /// One step with gradient (sum over the rows of gradient_chunks, in row order) * scale. Throws
  /// dimension_mismatch when the extents disagree with n_params, and non_finite_gradient (naming the
  /// lowest bad parameter index and this step's number) when an entry of the gradient is NaN or
  /// infinite; then params, the moments and steps() are unchanged (last_gradient() shows the bad
  /// gradient). Waits for the device (to know whether to throw); a training loop that must not wait
  /// uses step_unless.
  void step(const vector_type& params, const chunks_type& gradient_chunks, Real scale = Real(1)) {
    constexpr const char* where = "scorekit::nn::Adam::step";
    check_extents(params, gradient_chunks, where);
    ScopedRegion region(where);
    Kokkos::deep_copy(m_failure, no_failure);
    sum_gradient(gradient_chunks, scale, m_failure, 0);
    std::int64_t first_bad = no_failure;
    Kokkos::deep_copy(first_bad, m_failure);
    if (first_bad != no_failure) {
      Real value = 0;
      Kokkos::deep_copy(value, Kokkos::subview(m_g, std::size_t(first_bad)));
      throw non_finite_gradient(
          scorekit::detail::concat(where, ": the gradient of parameter ", first_bad, " is ", value,
                                   " at step ", m_steps + 1,
                                   "; the step was refused and the parameters and moments are unchanged"),
          first_bad, m_steps + 1);
    }
    update(params, m_failure);
    m_exec.fence();
  }

  /// step() with a single gradient vector.
  void step(const vector_type& params, const const_vector_type& gradient, Real scale = Real(1)) {
    const chunks_type one(gradient.data(), 1, gradient.extent(0));
    step(params, one, scale);
  }

  /// step() for a training loop that must not wait for the device: launches the step's kernels and
  /// returns. The device checks the gradient: when its entry i is NaN or infinite, `key + i` is
  /// recorded in `failure` (an atomic minimum: the flag keeps the smallest key recorded, so give later
  /// work larger keys; i is the lowest bad index when this call records the smallest key). The update
  /// of params and the moments is skipped on the device whenever `failure` holds a failure when it
  /// runs, recorded by this call or by earlier work (e.g. a loss check), so after the first failure
  /// the state stays that of before it. steps() counts every call (the host cannot know); when the
  /// caller finds a failure it sets the count back with rewind(). last_gradient() is this call's
  /// summed gradient. Throws dimension_mismatch as step() does, and invalid_argument unless
  /// 0 <= key <= no_failure - n_params.
  void step_unless(const failure_type& failure, std::int64_t key, const vector_type& params,
                   const chunks_type& gradient_chunks, Real scale = Real(1)) {
    constexpr const char* where = "scorekit::nn::Adam::step_unless";
    check_extents(params, gradient_chunks, where);
    if (key < 0 || key > no_failure - m_n)
      throw invalid_argument(
          scorekit::detail::concat(where, ": the key must be in [0, ", no_failure - m_n, "], got ", key));
    ScopedRegion region(where);
    sum_gradient(gradient_chunks, scale, failure, key);
    update(params, failure);
  }

  /// Sets the step count back to `steps` (between 0 and steps()) after a failure recorded by
  /// step_unless: the calls after it counted steps whose updates the device skipped. The moments are
  /// not touched (the device kept them). Throws invalid_argument when steps is out of range.
  void rewind(std::int64_t steps) {
    if (steps < 0 || steps > m_steps)
      throw invalid_argument(scorekit::detail::concat("scorekit::nn::Adam::rewind: steps must be in [0, ",
                                                      m_steps, "], got ", steps));
    m_steps = steps;
  }

  /// Steps taken so far (the t of the last step).
  std::int64_t steps() const { return m_steps; }
  /// The first-moment estimate m (not bias-corrected).
  const_vector_type moment1() const { return m_m; }
  /// The second-moment estimate v (not bias-corrected).
  const_vector_type moment2() const { return m_v; }
  /// The summed, scaled gradient of the most recent call to step() (also of a refused one), e.g. to
  /// log its norm.
  const_vector_type last_gradient() const { return m_g; }
  const AdamSettings& settings() const { return m_settings; }
  int size() const { return int(m_n); }

  /// Restores a saved state (to resume training): the step count and the two moments, as rank-1
  /// views of n_params values in any memory space. Throws invalid_argument when steps < 0, an extent
  /// is wrong, a moment holds a NaN or infinity, or v holds a negative value; then nothing changes.
  template <class ViewM, class ViewV>
  void set_state(std::int64_t steps, const ViewM& m, const ViewV& v) {
    constexpr const char* where = "scorekit::nn::Adam::set_state";
    static_assert(Kokkos::is_view<ViewM>::value && Kokkos::is_view<ViewV>::value && ViewM::rank == 1 &&
                      ViewV::rank == 1,
                  "scorekit::nn::Adam::set_state: the moments must be rank-1 Kokkos views");
    if (steps < 0)
      throw invalid_argument(scorekit::detail::concat(where, ": steps must be >= 0, got ", steps));
    require_dimension(std::int64_t(m.extent(0)), m_n, "the first moment", where);
    require_dimension(std::int64_t(v.extent(0)), m_n, "the second moment", where);
    auto hm = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), m);
    auto hv = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
    auto new_m = Kokkos::create_mirror_view(m_m);
    auto new_v = Kokkos::create_mirror_view(m_v);
    for (std::int64_t i = 0; i < m_n; ++i) {
      const Real mi = Real(hm(i)), vi = Real(hv(i));
      if (!std::isfinite(mi) || !std::isfinite(vi) || vi < 0)
        throw invalid_argument(scorekit::detail::concat(where, ": entry ", i, " has m = ", mi, ", v = ", vi,
                                                        " (m must be finite, v finite and >= 0)"));
      new_m(i) = mi;
      new_v(i) = vi;
    }
    Kokkos::deep_copy(m_m, new_m);
    Kokkos::deep_copy(m_v, new_v);
    m_steps = steps;
  }

 private:
  // On a CPU, vectorised tiles of 256 parameters per work item; on a GPU one parameter per thread.
  static constexpr int tile = runs_on_host_v<memory_space> ? 256 : 1;

  void check_extents(const vector_type& params, const chunks_type& gradient_chunks, const char* where) const {
    require_dimension(std::int64_t(params.extent(0)), m_n, "the parameter view", where);
    require_dimension(std::int64_t(gradient_chunks.extent(1)), m_n, "a gradient chunk", where);
    if (gradient_chunks.extent(0) == 0)
      throw invalid_argument(scorekit::detail::concat(where, ": no gradient chunks (0 rows)"));
  }

  /// Launches the sum of the chunks into m_g, recording a non-finite entry i as key + i in failure.
  void sum_gradient(const chunks_type& gradient_chunks, Real scale, const failure_type& failure,
                    std::int64_t key) const {
    const int n = int(m_n);
    Kokkos::parallel_for(
        "scorekit::nn::Adam::sum_gradient", Kokkos::RangePolicy<ExecSpace>(m_exec, 0, (n + tile - 1) / tile),
        detail::AdamSumGradient<Real, memory_space, tile>{gradient_chunks, m_g, failure, scale, n, key});
  }

  /// Launches step m_steps + 1's update from m_g (skipped on the device while failure is set) and
  /// counts the step. The bias corrections are computed in double on the host.
  void update(const vector_type& params, const failure_type& failure) {
    const std::int64_t t = m_steps + 1;
    const double b1 = m_settings.beta1, b2 = m_settings.beta2;
    const double correction1 = 1 - std::pow(b1, double(t)), correction2 = 1 - std::pow(b2, double(t));
    const int n = int(m_n);
    Kokkos::parallel_for("scorekit::nn::Adam::update",
                         Kokkos::RangePolicy<ExecSpace>(m_exec, 0, (n + tile - 1) / tile),
                         detail::AdamUpdate<Real, memory_space, tile>{
                             m_g, m_m, m_v, params, failure, Real(b1), Real(b2), Real(1 - b1), Real(1 - b2),
                             Real(m_settings.learning_rate / correction1), Real(1 / std::sqrt(correction2)),
                             Real(m_settings.epsilon), n});
    m_steps = t;
  }

  AdamSettings m_settings;
  ExecSpace m_exec;
  std::int64_t m_n;
  std::int64_t m_steps = 0;
  vector_type m_m, m_v, m_g;
  failure_type m_failure;  ///< step()'s own flag
};

}  // namespace nn
}  // namespace scorekit
