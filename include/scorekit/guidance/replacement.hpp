// Guidance by replacement (Song et al. 2021, "Score-based generative modeling through stochastic
// differential equations", appendix I.2): after every step of a reverse-time integrator, the part of the
// state that an observation fixes is overwritten by a draw of what that part's law is at the new time
// given the observation (a noised copy of the observation). Inpainting, colorization and the generic
// linear inverse problem method differ only in what they overwrite, so each is a small Replacement value
// type and one wrapper, ReplacementIntegrator<Inner, Replacement>, turns any Integrator
// (integrate/integrate_common.hpp) into a guided one:
//
//   step(system, x, t, t', noise, ...) = inner.step(system, x, t, t', noise, ...);
//                                        replacement.replace(system.sde(), x, t', noise, rng)
//
// The system must be built from a noising SDE (ReverseSDE or ProbabilityFlowODE, sde/reverse.hpp): the
// noised observation at t' needs the kernel p_0t' = N(a(t') x_0, s(t')^2 I). The replacement draws its
// normals from the step's own generator after the inner step's, so a run stays bitwise reproducible. With
// `noise` false (the final step of a run with remove_last_noise) the replacement writes the kernel's mean
// a(t') y, as score_sde's samplers return x_mean.
//
// A Replacement is a value type with
//   using value_type = Real;
//   KOKKOS_INLINE_FUNCTION int dim() const;            // the state dimension it expects
//   std::int64_t rows() const;                         // host: observation rows, 1 (shared) or one per
//   particle KOKKOS_INLINE_FUNCTION void replace(const SDE& sde, Real* x, Real t, bool noise,
//                                       CounterRng<Real>& rng) const;
// Which particle a state belongs to: the step's generator is keyed with it (rng.particle(), the
// Integrator concept in integrate/integrate_common.hpp), so a replacement with one observation row per
// particle reads row rng.particle(). A particle without a row (a bare integrate() on more particles than
// observation rows; integrate_guided() below refuses it on the host) is set to NaN, which integrate()
// reports as a non-finite particle, rather than read out of bounds.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/particle_checks.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/core/views.hpp>
#include <scorekit/integrate/integrate_common.hpp>
#include <scorekit/sde/sde_common.hpp>

#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

namespace scorekit {

namespace detail {

template <class T, class = void>
struct system_has_sde : std::false_type {};
template <class T>
struct system_has_sde<
    T, std::void_t<decltype(std::declval<const T&>().sde().marginal(std::declval<typename T::value_type>()))>>
    : std::true_type {};

/// a y + s z for one known value (z from the generator when `noise`, else 0).
template <class Real>
KOKKOS_INLINE_FUNCTION Real noised_observation(const MarginalKernel<Real>& k, Real y, bool noise,
                                               CounterRng<Real>& rng) {
  return noise ? k.scale * y + k.std * rng.normal() : k.scale * y;
}

template <class Real>
KOKKOS_INLINE_FUNCTION void set_nan(Real* x, int d, Real nan) {
  for (int j = 0; j < d; ++j) x[j] = nan;
}

/// The observation row of the particle `rng` is keyed with: 0 for a shared observation (rows == 1),
/// else the particle index, or -1 when that particle has no row.
template <class Real>
KOKKOS_INLINE_FUNCTION std::int64_t observation_row(std::int64_t rows, const CounterRng<Real>& rng) {
  if (rows == 1) return 0;
  const std::uint64_t i = rng.particle();
  return i < std::uint64_t(rows) ? std::int64_t(i) : -1;
}

/// Checks that an observation has at least one row.
inline void check_rows(std::int64_t rows, const char* what, const char* where) {
  if (rows < 1) throw invalid_argument(detail::concat(where, ": ", what, " has no rows"));
}

}  // namespace detail

/// Any Integrator followed, every step, by a replacement of the observed part of the state (see the file
/// comment). Itself an Integrator, so integrate() and every driver take it.
template <class Inner, class Replacement>
class ReplacementIntegrator {
 public:
  using inner_type = Inner;
  using replacement_type = Replacement;
  static constexpr int n_vectors = Inner::n_vectors;

  ReplacementIntegrator(const Inner& inner, const Replacement& replacement)
      : m_inner(inner), m_replacement(replacement) {}

  const Inner& inner() const { return m_inner; }
  const Replacement& replacement() const { return m_replacement; }

  template <class System>
  static void check(const System& system) {
    static_assert(detail::system_has_sde<System>::value,
                  "scorekit: guidance by replacement needs a system built from a noising SDE (ReverseSDE or "
                  "ProbabilityFlowODE, with a member sde()): the noised observation needs its kernel p_0t");
    Inner::check(system);
  }
  int evaluations(double t, double t_next) const { return m_inner.evaluations(t, t_next); }

  template <class System, class Real>
  KOKKOS_INLINE_FUNCTION void step(const System& system, Real* x, Real t, Real t_next, bool noise,
                                   Real* vectors, Real* work, CounterRng<Real>& rng) const {
    m_inner.step(system, x, t, t_next, noise, vectors, work, rng);
    if (system.dim() != m_replacement.dim()) {  // a wrong pairing; integrate_guided() refuses it first
      detail::set_nan(x, system.dim(), m_nan);
      return;
    }
    m_replacement.replace(system.sde(), x, t_next, noise, rng);
  }

 private:
  Inner m_inner;
  Replacement m_replacement;
  typename Replacement::value_type m_nan = std::numeric_limits<typename Replacement::value_type>::quiet_NaN();
};

template <class Inner, class Replacement>
ReplacementIntegrator<Inner, Replacement> replacement_integrator(const Inner& inner,
                                                                 const Replacement& replacement) {
  return ReplacementIntegrator<Inner, Replacement>(inner, replacement);
}

/// Runs a guided integrator as integrate() does, after checking what the Integrator concept cannot (the
/// replacement's dimension against the system's, one observation row or one per particle) and
/// after replacing the observed part of the initial state at t_0 as well, so that the first step already
/// sees a noised observation (as score_sde's inpainter starts from data * mask + prior * (1 - mask)).
/// The initial replacement draws from CounterRng(seed, i, 0), a counter no step uses.
template <class ExecSpace, class System, class Inner, class Replacement, class View>
SamplerResult<typename System::value_type, typename View::memory_space> integrate_guided(
    const ExecSpace& exec, const System& system, const ReplacementIntegrator<Inner, Replacement>& integrator,
    const View& x, const IntegrateSettings& settings) {
  using Real = typename System::value_type;
  const char* where = "scorekit::integrate_guided";
  // integrate() checks the inner integrator against the system it steps (on the batched path, the
  // system around the batch's stand-in model); here only what the replacement needs of it.
  static_assert(detail::system_has_sde<System>::value,
                "scorekit: guidance by replacement needs a system built from a noising SDE (ReverseSDE or "
                "ProbabilityFlowODE, with a member sde()): the noised observation needs its kernel p_0t");
  // The initial replacement below works on a pointer to each particle's row, before integrate() checks.
  detail::check_particle_view<ExecSpace, View, detail::ParticleLayout::contiguous_rows>();
  const Replacement r = integrator.replacement();  // copied into the kernel below
  require_dimension(r.dim(), system.dim(), "the observation (state dimension)", where);
  if (r.rows() > 1)
    require_dimension(std::int64_t(x.extent(0)), r.rows(), "the particles (one per observation row)", where);
  detail::check_time_grid(settings.times, 0.0, detail::system_t_max(system), where);
  if (x.extent(0) > 0 && int(x.extent(1)) == system.dim()) {
    const auto sde = system.sde();
    const Real t0 = Real(settings.times.front());
    const std::uint64_t seed = settings.seed, first = settings.first_particle;
    const View xs = x;
    Kokkos::parallel_for(
        "scorekit::integrate_guided::initial_replacement",
        Kokkos::RangePolicy<ExecSpace>(exec, 0, std::int64_t(x.extent(0))),
        KOKKOS_LAMBDA(const std::int64_t i) {
          CounterRng<Real> rng(seed, first + std::uint64_t(i), 0);
          r.replace(sde, &xs(i, 0), t0, true, rng);
        });
  }
  return integrate(exec, system, integrator, x, settings);
}

}  // namespace scorekit
