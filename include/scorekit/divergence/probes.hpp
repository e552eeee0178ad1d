// Random probe vectors for stochastic trace estimators. Any v with E[v] = 0 and E[v v^T] = I gives
// E[v^T J v] = tr J (Hutchinson 1990); the probe law sets the variance. For a fixed matrix J with
// symmetric part S = (J + J^T) / 2:
//   Gaussian   v ~ N(0, I):          Var(v^T J v) = 2 ||S||_F^2
//   Rademacher v_i = +-1, p = 1/2:   Var(v^T J v) = 2 (||S||_F^2 - sum_i S_ii^2)
// (Hutchinson 1990; Avron and Toledo 2011, "Randomized algorithms for estimating the trace of an
// implicit symmetric positive semi-definite matrix", JACM 58(2), section 2). Rademacher probes have the
// least variance of all probes with independent entries; Gaussian ones are the "sliced" score matching
// projections of Song, Garg, Shi and Ermon (UAI 2019).
//
// A probe law is any type with
//   template <class Real>
//   KOKKOS_INLINE_FUNCTION static void draw(CounterRng<Real>& rng, int dim, Real* v);
// that fills v[0..dim) from rng, consuming it in order (so a fresh generator replays the same probes).
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/random.hpp>

#include <cstdint>
#include <type_traits>
#include <utility>

namespace scorekit {

/// v ~ N(0, I).
struct GaussianProbe {
  template <class Real>
  KOKKOS_INLINE_FUNCTION static void draw(CounterRng<Real>& rng, int dim, Real* v) {
    rng.fill_normal(v, dim);
  }
};

/// v_i = -1 or +1 with probability 1/2 each, independently: one bit per coordinate, from as many
/// 128-bit Philox blocks as the dimension needs (each probe starts on a fresh block).
struct RademacherProbe {
  template <class Real>
  KOKKOS_INLINE_FUNCTION static void draw(CounterRng<Real>& rng, int dim, Real* v) {
    for (int j0 = 0; j0 < dim; j0 += 128) {
      const Philox4x32Block b = rng.bits();
      const int n = dim - j0 < 128 ? dim - j0 : 128;
      for (int j = 0; j < n; ++j) v[j0 + j] = ((b.v[j >> 5] >> (j & 31)) & 1u) ? Real(1) : Real(-1);
    }
  }
};

namespace detail {
template <class P, class = void>
struct is_probe_law : std::false_type {};
template <class P>
struct is_probe_law<
    P, std::void_t<decltype(P::draw(std::declval<CounterRng<double>&>(), int(), std::declval<double*>()))>>
    : std::true_type {};
}  // namespace detail

/// True when P is a probe law (has `static void draw(CounterRng<Real>&, int dim, Real* v)`).
template <class P>
constexpr bool is_probe_law_v = detail::is_probe_law<P>::value;

namespace detail {

/// What the random-probe estimators (Hutchinson, FiniteDifferenceDivergence) share: M probes of law
/// Probe, each weighted 1/M, and estimate(model, x, rng, work) with dim = model.dim(), forwarded to
/// Derived's estimate(model, dim, x, rng, work).
template <class Probe, class Derived>
class RandomProbes {
 public:
  using probe_type = Probe;

  /// M, whatever the dimension.
  KOKKOS_INLINE_FUNCTION int n_probes(int dim) const { return ((void)dim, m_probes); }
  KOKKOS_INLINE_FUNCTION int n_probes() const { return m_probes; }

  /// The next probe from rng (k is not used: the probes are drawn in order, so calling probe(0 .. M-1)
  /// on a fresh generator gives exactly the vectors estimate() uses with that generator).
  template <class Real>
  KOKKOS_INLINE_FUNCTION void probe(int k, int dim, CounterRng<Real>& rng, Real* v) const {
    (void)k;
    Probe::draw(rng, dim, v);
  }

  /// 1 / M.
  template <class Real = double>
  KOKKOS_INLINE_FUNCTION Real probe_weight(int dim) const {
    return ((void)dim, Real(1) / Real(m_probes));
  }

  /// estimate() with dim = model.dim() (a host call: on a GPU backend the model's dim() must then be
  /// KOKKOS_INLINE_FUNCTION; otherwise pass the dimension).
  template <class Model, class Real>
  KOKKOS_INLINE_FUNCTION Real estimate(const Model& model, const Real* x, CounterRng<Real>& rng,
                                       Real* work) const {
    return static_cast<const Derived&>(*this).estimate(model, model.dim(), x, rng, work);
  }

 protected:
  RandomProbes(int n_probes, const char* who) : m_probes(n_probes) {
    if (n_probes < 1)
      throw invalid_argument(concat(who, ": the number of probes must be at least 1, got ", n_probes));
  }
  int m_probes;
};

}  // namespace detail

}  // namespace scorekit
