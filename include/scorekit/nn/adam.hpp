// Adam (Kingma and Ba, "Adam: a method for stochastic optimization", ICLR 2015, Algorithm 1) on one
// flat parameter view. The gradient arrives as C partial sums ("chunks", e.g. one per block of the
// batch), added in the fixed order chunk 0, 1, ..., C-1 by every backend, so that the step is bitwise
// the same for any thread count. A gradient with a NaN or infinite entry is refused before anything
// changes, so a training loop can catch the error, lower the learning rate and retry, or stop with the
// last good state intact.
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

template <class Real, class ExecSpace>
class Adam {
 public:
  using value_type = Real;
  using execution_space = ExecSpace;
  using memory_space = typename ExecSpace::memory_space;
  using vector_type = Kokkos::View<Real*, memory_space>;
  using const_vector_type = Kokkos::View<const Real*, memory_space>;
  using chunks_type = Kokkos::View<const Real**, Kokkos::LayoutRight, memory_space>;

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
  }

  /// One step with gradient (sum over the rows of gradient_chunks, in row order) * scale. Throws
  /// dimension_mismatch when the extents disagree with n_params, and non_finite_gradient (naming the
  /// lowest bad parameter index and this step's number) when an entry of the gradient is NaN or
  /// infinite; then params, the moments and steps() are unchanged (last_gradient() shows the bad
  /// gradient).
  void step(const vector_type& params, const chunks_type& gradient_chunks, Real scale = Real(1)) {
    constexpr const char* where = "scorekit::nn::Adam::step";
    require_dimension(std::int64_t(params.extent(0)), m_n, "the parameter view", where);
    require_dimension(std::int64_t(gradient_chunks.extent(1)), m_n, "a gradient chunk", where);
    if (gradient_chunks.extent(0) == 0)
      throw invalid_argument(scorekit::detail::concat(where, ": no gradient chunks (0 rows)"));
    ScopedRegion region(where);
    const int n = int(m_n);
    const int chunks = int(gradient_chunks.extent(0));
    const vector_type g = m_g;
    const chunks_type c = gradient_chunks;

    // Sum in fixed order and scale, in vectorised tiles of `tile` parameters; count the non-finite entries
    // (x - x is 0 exactly when x is finite), and only when there are some, find the lowest.
    constexpr int tile = 256;
    const int n_tiles = (n + tile - 1) / tile;
    const std::size_t ldc = c.stride(0);
    const Real* c0 = c.data();
    Real* gp = g.data();
    int n_bad = 0;
    Kokkos::parallel_reduce(
        "scorekit::nn::Adam::sum_gradient", Kokkos::RangePolicy<ExecSpace>(m_exec, 0, n_tiles),
        KOKKOS_LAMBDA(const int t, int& bad) {
          const int i0 = t * tile, i1 = i0 + tile < n ? i0 + tile : n;
          // Row by row, so that each loop is a plain vector loop (same order of addition per entry).
          SCOREKIT_SIMD
          for (int i = i0; i < i1; ++i) gp[i] = c0[i];
          for (int k = 1; k < chunks; ++k) {
            const Real* ck = c0 + k * ldc;
            SCOREKIT_SIMD
            for (int i = i0; i < i1; ++i) gp[i] += ck[i];
          }
          int local = 0;
          SCOREKIT_SIMD_SUM(local)
          for (int i = i0; i < i1; ++i) {
            const Real gi = gp[i] * scale;
            gp[i] = gi;
            local += (gi - gi == Real(0)) ? 0 : 1;
          }
          bad += local;
        },
        n_bad);
    std::int64_t first_bad = std::numeric_limits<std::int64_t>::max();
    if (n_bad > 0)
      Kokkos::parallel_reduce(
          "scorekit::nn::Adam::first_non_finite", Kokkos::RangePolicy<ExecSpace>(m_exec, 0, n),
          KOKKOS_LAMBDA(const int i, std::int64_t& bad) {
            if (!math::isfinite(gp[i]) && std::int64_t(i) < bad) bad = i;
          },
          Kokkos::Min<std::int64_t>(first_bad));
    if (first_bad != std::numeric_limits<std::int64_t>::max()) {
      Real value = 0;
      Kokkos::deep_copy(value, Kokkos::subview(g, std::size_t(first_bad)));
      throw non_finite_gradient(
          scorekit::detail::concat(where, ": the gradient of parameter ", first_bad, " is ", value,
                                   " at step ", m_steps + 1,
                                   "; the step was refused and the parameters and moments are unchanged"),
          first_bad, m_steps + 1);
    }

    const std::int64_t t = m_steps + 1;
    const double b1 = m_settings.beta1, b2 = m_settings.beta2;
    const double correction1 = 1 - std::pow(b1, double(t)), correction2 = 1 - std::pow(b2, double(t));
    const Real beta1 = Real(b1), beta2 = Real(b2), one_minus_beta1 = Real(1 - b1),
               one_minus_beta2 = Real(1 - b2);
    const Real step_size = Real(m_settings.learning_rate / correction1);
    const Real inv_sqrt_correction2 = Real(1 / std::sqrt(correction2));
    const Real eps = Real(m_settings.epsilon);
    Real* mp = m_m.data();
    Real* vp = m_v.data();
    Real* pp = params.data();
    Kokkos::parallel_for(
        "scorekit::nn::Adam::update", Kokkos::RangePolicy<ExecSpace>(m_exec, 0, n_tiles),
        KOKKOS_LAMBDA(const int t) {
          const int i0 = t * tile, i1 = i0 + tile < n ? i0 + tile : n;
          SCOREKIT_SIMD
          for (int i = i0; i < i1; ++i) {
            const Real gi = gp[i];
            const Real mi = beta1 * mp[i] + one_minus_beta1 * gi;
            const Real vi = beta2 * vp[i] + one_minus_beta2 * (gi * gi);
            mp[i] = mi;
            vp[i] = vi;
            pp[i] -= step_size * (mi / (math::sqrt(vi) * inv_sqrt_correction2 + eps));
          }
        });
    m_exec.fence();
    m_steps = t;
  }

  /// step() with a single gradient vector.
  void step(const vector_type& params, const const_vector_type& gradient, Real scale = Real(1)) {
    const chunks_type one(gradient.data(), 1, gradient.extent(0));
    step(params, one, scale);
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
  AdamSettings m_settings;
  ExecSpace m_exec;
  std::int64_t m_n;
  std::int64_t m_steps = 0;
  vector_type m_m, m_v, m_g;
};

}  // namespace nn
}  // namespace scorekit
