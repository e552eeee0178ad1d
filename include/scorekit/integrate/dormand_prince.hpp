// Adaptive Dormand-Prince 5(4) for ODEs: the explicit Runge-Kutta pair of Dormand and Prince, "A family
// of embedded Runge-Kutta formulae", J. Comput. Appl. Math. 6(1), 1980 (table 2, RK5(4)7M), in the form
// of Hairer, Norsett and Wanner, "Solving Ordinary Differential Equations I", 2nd ed., section II.4-5,
// and of scipy.integrate.solve_ivp(method='RK45'), which score_sde uses for its probability-flow sampler
// and its likelihood. Seven stages, first same as last (FSAL): the last stage is f at the new point, so
// an accepted step costs 6 new evaluations. The step is advanced with the 5th-order solution (local
// extrapolation); the difference from the embedded 4th-order one estimates the local error.
//
// Error control (as scipy's RK45): with y the state before the step and y' after it,
//   err = sqrt(1/m sum_i (e_i / sc_i)^2),   sc_i = atol + rtol max(|y_i|, |y'_i|),
// e = h sum_k E_k K_k the embedded error estimate; the step is accepted when err < 1. The next step is
//   h' = h min(10, 0.9 err^(-1/5))   after an accepted step (never larger than h after a rejection),
//   h' = h max(0.2, 0.9 err^(-1/5))  after a rejected one (0.2 h when err is NaN or infinite: a stage
//                                    overflowed, and a smaller step may recover).
// A step is cut to land exactly on t1. The first step, unless given, is Hairer's rule (op. cit., II.4,
// "Starting step size"; scipy's select_initial_step): with sc_i = atol + rtol |y0_i| and f0 = f(t0, y0),
//   d0 = rms(y0 / sc), d1 = rms(f0 / sc), h0 = 0.01 d0 / d1 (1e-6 when d0 or d1 < 1e-5), capped at |t1 - t0|,
//   d2 = rms((f(t0 + h0, y0 + h0 f0) - f0) / sc) / h0,
//   h1 = (0.01 / max(d1, d2))^(1/5) (max(1e-6, 1e-3 h0) when both are <= 1e-15),
//   h = min(100 h0, h1, |t1 - t0|),
// which costs one evaluation. So a particle's function evaluations are exactly
//   NFE = 1 + [1 if the first step is automatic] + 6 (accepted + rejected steps).
// As in scipy, a new step is never smaller than min_step = 10 eps |t| (eps the machine epsilon), and a
// particle fails when rejections push its step below min_step (a stiff or singular problem; reported as
// non-finite when the last error estimate was NaN or infinite) or when its attempted steps (accepted +
// rejected) reach max_steps. On the same problem this gives scipy's step sequence: the same evaluation
// counts and states equal to rounding (tests/test_dormand_prince.cpp checks scipy 1.17's numbers).
//
// Every particle has its own step sequence, inside one kernel: the result of a particle depends only on
// its own initial state (bitwise the same for every backend and thread count), and an easy particle does
// not pay for a hard one. (score_sde instead solves the whole batch as one ODE with one step sequence.)
//
// The stepping routine detail::dormand_prince_solve works on any right-hand side functor over a state of
// length m, with caller-owned scratch, so the likelihood (likelihood/log_likelihood.hpp) reuses it on
// the state augmented with the log-determinant.
#pragma once

#include <scorekit/integrate/integrate_common.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace scorekit {

/// Tolerances and limits of an adaptive Dormand-Prince run (defaults: score_sde's sampler and likelihood).
struct DormandPrinceSettings {
  double rtol = 1e-5;               ///< relative tolerance, > 0
  double atol = 1e-5;               ///< absolute tolerance, > 0
  double first_step = 0;            ///< |h| of the first step (cut to |t1 - t0|); 0: Hairer's rule
  std::int64_t max_steps = 100000;  ///< attempted steps (accepted + rejected) a particle may take
};

/// What an adaptive run costs, over all particles.
struct OdeStatistics {
  /// Right-hand side evaluations, summed over particles (for the probability-flow ODE: score calls).
  std::int64_t n_function_evaluations = 0;
  /// Per particle: the counterpart of score_sde's `nfe` (which counts evaluations of the whole batch,
  /// solved as one ODE, so the hardest particle sets it; compare it with max_evaluations too).
  double mean_evaluations = 0;
  std::int64_t max_evaluations = 0;  ///< the most any particle needed
  std::int64_t accepted_steps = 0;   ///< summed over particles
  std::int64_t rejected_steps = 0;   ///< summed over particles
  double seconds = 0;                ///< wall time of the run, fenced
};

/// The result of solve_ode: the final states (the view that was passed in) and the cost.
template <class Real, class MemorySpace>
struct OdeResult : OdeStatistics {
  ParticleView<Real, MemorySpace> samples;
  /// Function evaluations of each particle.
  Kokkos::View<std::int64_t*, MemorySpace> evaluations;
};

namespace detail {

/// How a particle's solve ended.
enum class OdeStatus : int { success = 0, max_steps = 1, step_too_small = 2, non_finite = 3 };

/// The settings as the kernel needs them.
template <class Real>
struct DormandPrinceControl {
  Real rtol, atol, first_step;
  Real min_step_factor;  // 10 machine epsilons: the smallest step is 10 eps |t|
  Real tiny;             // and never below the smallest normal number
  std::int64_t max_steps;
};

/// One particle's account.
template <class Real>
struct DormandPrinceStats {
  std::int64_t evaluations = 0, accepted = 0, rejected = 0;
  Real t = 0;  // the time reached
  OdeStatus status = OdeStatus::success;
};

/// Scratch values dormand_prince_solve needs for a state of length m: the seven stages and a state.
KOKKOS_INLINE_FUNCTION constexpr int dormand_prince_scratch_size(int m) { return 8 * m; }

/// The Butcher tableau of RK5(4)7M (Dormand and Prince 1980, table 2) and E = b5 - b4 (scipy's sign).
template <class Real>
struct DormandPrinceTableau {
  static KOKKOS_INLINE_FUNCTION Real c(int s) {
    constexpr double v[7] = {0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1, 1};
    return Real(v[s]);
  }
  /// a(s, j), j < s, s = 1..6 (row 6 equals b: the 7th stage is evaluated at the new state).
  static KOKKOS_INLINE_FUNCTION Real a(int s, int j) {
    constexpr double v[7][6] = {{0, 0, 0, 0, 0, 0},
                                {1.0 / 5, 0, 0, 0, 0, 0},
                                {3.0 / 40, 9.0 / 40, 0, 0, 0, 0},
                                {44.0 / 45, -56.0 / 15, 32.0 / 9, 0, 0, 0},
                                {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729, 0, 0},
                                {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656, 0},
                                {35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84}};
    return Real(v[s][j]);
  }
  /// The error weights, e = h sum_k e(k) K_k.
  static KOKKOS_INLINE_FUNCTION Real e(int k) {
    constexpr double v[7] = {-71.0 / 57600,    0,           71.0 / 16695, -71.0 / 1920,
                             17253.0 / 339200, -22.0 / 525, 1.0 / 40};
    return Real(v[k]);
  }
};

/// sqrt(1/m sum (v_i / (atol + rtol |y_i|))^2).
template <class Real>
KOKKOS_INLINE_FUNCTION Real scaled_rms(const Real* v, const Real* y, int m, Real atol, Real rtol) {
  Real sum = 0;
  for (int i = 0; i < m; ++i) {
    const Real r = v[i] / (atol + rtol * math::fabs(y[i]));
    sum += r * r;
  }
  return math::sqrt(sum / Real(m));
}

/// Where one particle's solve stands between attempts: what dormand_prince_start sets up and each
/// dormand_prince_attempt advances. The stages K_0 .. K_6 live in the scratch; K_0 (f at the current
/// state) and K_6 swap places after an accepted step (first same as last), so `first` says which slot
/// holds K_0 (0 or 6).
template <class Real>
struct DormandPrinceState {
  DormandPrinceStats<Real> st;
  Real t = 0, t1 = 0, dir = 1;
  Real h = 0;  // |h| of the next attempt
  std::int64_t attempts = 0;
  bool last_error_finite = true;
  bool rejected_since_accept = false;
  bool done = false;
  int first = 0;
};

/// The start of a solve of dy/dt = rhs(t, y) from t0 to t1 (either direction): f(t0, y0), and the first
/// step (given, or Hairer's rule: one more evaluation). rhs is called as rhs(t, y, dydt) with const y;
/// scratch holds dormand_prince_scratch_size(m) values.
template <class Real, class Rhs>
KOKKOS_INLINE_FUNCTION DormandPrinceState<Real> dormand_prince_start(const Rhs& rhs, const Real* y, int m,
                                                                     Real t0, Real t1,
                                                                     const DormandPrinceControl<Real>& c,
                                                                     Real* scratch) {
  DormandPrinceState<Real> s;
  Real* k0 = scratch;
  Real* k1 = scratch + m;
  Real* z = scratch + 7 * m;  // a stage's argument; after stage 6, the new state
  s.dir = t1 >= t0 ? Real(1) : Real(-1);
  s.t = t0;
  s.t1 = t1;
  s.st.t = t0;

  rhs(s.t, y, k0);
  s.st.evaluations = 1;

  Real h = c.first_step;  // |h|
  const Real span = math::fabs(t1 - t0);
  if (!(h > Real(0))) {
    // Hairer's starting step (see the file comment); z and K_1 are free until the first step.
    const Real d0 = scaled_rms(y, y, m, c.atol, c.rtol);
    const Real d1 = scaled_rms(static_cast<const Real*>(k0), y, m, c.atol, c.rtol);
    Real h0 = (d0 < Real(1e-5) || d1 < Real(1e-5)) ? Real(1e-6) : Real(0.01) * d0 / d1;
    if (h0 > span) h0 = span;
    for (int i = 0; i < m; ++i) z[i] = y[i] + h0 * s.dir * k0[i];
    rhs(s.t + h0 * s.dir, static_cast<const Real*>(z), k1);
    s.st.evaluations += 1;
    for (int i = 0; i < m; ++i) z[i] = k1[i] - k0[i];
    const Real d2 = scaled_rms(static_cast<const Real*>(z), y, m, c.atol, c.rtol) / h0;
    Real h1;
    if (d1 <= Real(1e-15) && d2 <= Real(1e-15)) {
      h1 = h0 * Real(1e-3);
      if (h1 < Real(1e-6)) h1 = Real(1e-6);
    } else {
      const Real dmax = d1 > d2 ? d1 : d2;
      h1 = math::exp(Real(0.2) * math::log(Real(0.01) / dmax));
    }
    h = Real(100) * h0;
    if (h1 < h) h = h1;
    if (!(h > Real(0))) h = Real(1e-6);  // d1 or d2 NaN: the first step will say so
  }
  if (h > span) h = span;
  s.h = h;
  return s;
}

/// One attempted step of a solve (6 evaluations), or none when the solve has ended (reached t1, or
/// failed: st.status says how); returns false then, and sets s.done. y is updated when the step is
/// accepted.
template <class Real, class Rhs>
KOKKOS_INLINE_FUNCTION bool dormand_prince_attempt(const Rhs& rhs, Real* y, int m,
                                                   const DormandPrinceControl<Real>& c, Real* scratch,
                                                   DormandPrinceState<Real>& s) {
  using tab = DormandPrinceTableau<Real>;
  if (s.done) return false;
  Real* k[7];
  for (int j = 0; j < 7; ++j) k[j] = scratch + j * m;
  if (s.first != 0) {
    k[0] = scratch + 6 * m;
    k[6] = scratch;
  }
  Real* z = scratch + 7 * m;
  const Real t = s.t, t1 = s.t1, dir = s.dir;
  if (!(dir * (t1 - t) > Real(0))) {
    s.done = true;
    s.st.t = t;
    return false;
  }
  if (s.attempts >= c.max_steps) {
    s.st.status = OdeStatus::max_steps;
    s.done = true;
    s.st.t = t;
    return false;
  }
  Real min_step = c.min_step_factor * math::fabs(t);
  if (min_step < c.tiny) min_step = c.tiny;
  if (!s.rejected_since_accept && s.h < min_step) s.h = min_step;  // a new step starts at least this large
  if (!(s.h >= min_step)) {                                        // rejected down to it
    s.st.status = s.last_error_finite ? OdeStatus::step_too_small : OdeStatus::non_finite;
    s.done = true;
    s.st.t = t;
    return false;
  }
  Real t_new = t + dir * s.h;
  if (dir * (t_new - t1) > Real(0)) t_new = t1;
  const Real hs = t_new - t;  // signed step
  ++s.attempts;

  for (int st = 1; st < 7; ++st) {
    for (int i = 0; i < m; ++i) {
      Real acc = 0;
      for (int j = 0; j < st; ++j) acc += tab::a(st, j) * k[j][i];
      z[i] = y[i] + hs * acc;
    }
    rhs(st == 6 ? t_new : t + tab::c(st) * hs, static_cast<const Real*>(z), k[st]);
  }
  s.st.evaluations += 6;

  Real sum = 0;
  bool finite = true;
  for (int i = 0; i < m; ++i) {
    finite = finite && math::isfinite(z[i]);
    Real e = 0;
    for (int j = 0; j < 7; ++j) e += tab::e(j) * k[j][i];
    const Real ay = math::fabs(y[i]), az = math::fabs(z[i]);
    const Real r = hs * e / (c.atol + c.rtol * (ay > az ? ay : az));
    sum += r * r;
  }
  // An infinite new state can have a finite scaled error (sc_i is infinite too): refuse it.
  const Real err = math::sqrt(sum / Real(m));
  s.last_error_finite = finite && math::isfinite(err);

  if (s.last_error_finite && err < Real(1)) {
    Real factor = Real(10);
    if (err > Real(0)) {
      const Real f = Real(0.9) * math::exp(Real(-0.2) * math::log(err));
      if (f < factor) factor = f;
    }
    if (s.rejected_since_accept && factor > Real(1)) factor = Real(1);
    s.h = math::fabs(hs) * factor;
    for (int i = 0; i < m; ++i) y[i] = z[i];
    s.first = 6 - s.first;  // K_6 = f(t_new, y_new) is the next step's K_0
    s.t = t_new;
    ++s.st.accepted;
    s.rejected_since_accept = false;
  } else {
    Real factor = Real(0.2);
    if (s.last_error_finite) {
      const Real f = Real(0.9) * math::exp(Real(-0.2) * math::log(err));
      if (f > factor) factor = f;
    }
    s.h = math::fabs(hs) * factor;
    ++s.st.rejected;
    s.rejected_since_accept = true;
  }
  s.st.t = s.t;
  return true;
}

/// Integrates dy/dt = rhs(t, y) from t0 to t1 (either direction) in place: dormand_prince_start, then
/// dormand_prince_attempt until the solve ends. rhs is called as rhs(t, y, dydt) with const y; scratch
/// holds dormand_prince_scratch_size(m) values. Sequential and deterministic: the same inputs give bitwise
/// the same output anywhere.
template <class Real, class Rhs>
KOKKOS_INLINE_FUNCTION DormandPrinceStats<Real> dormand_prince_solve(const Rhs& rhs, Real* y, int m, Real t0,
                                                                     Real t1,
                                                                     const DormandPrinceControl<Real>& c,
                                                                     Real* scratch) {
  DormandPrinceState<Real> s = dormand_prince_start(rhs, static_cast<const Real*>(y), m, t0, t1, c, scratch);
  while (dormand_prince_attempt(rhs, y, m, c, scratch, s)) {
  }
  return s.st;
}

/// Checks the tolerances and limits.
inline void check_dormand_prince_settings(const DormandPrinceSettings& s, const char* where) {
  require_positive(s.rtol, "rtol", where);
  require_positive(s.atol, "atol", where);
  if (!(s.first_step >= 0) || !std::isfinite(s.first_step))
    throw invalid_argument(
        detail::concat(where, ": first_step must be finite and >= 0 (0: automatic), got ", s.first_step));
  if (s.max_steps < 1)
    throw invalid_argument(detail::concat(where, ": max_steps must be >= 1, got ", s.max_steps));
}

template <class Real>
DormandPrinceControl<Real> dormand_prince_control(const DormandPrinceSettings& s) {
  return DormandPrinceControl<Real>{Real(s.rtol),
                                    Real(s.atol),
                                    Real(s.first_step),
                                    Real(10) * std::numeric_limits<Real>::epsilon(),
                                    std::numeric_limits<Real>::min(),
                                    s.max_steps};
}

/// Checks the ends of an integration interval: finite, different, inside [0, t_max].
inline void check_ode_interval(double t0, double t1, double t_max, const char* where) {
  if (!std::isfinite(t0) || !std::isfinite(t1))
    throw invalid_argument(detail::concat(where, ": the times must be finite, got ", t0, " and ", t1));
  if (t0 == t1) throw invalid_argument(detail::concat(where, ": t0 and t1 are equal (", t0, ")"));
  for (double t : {t0, t1})
    if (t < 0 || t > t_max)
      throw invalid_argument(detail::concat(where, ": time ", t, " lies outside [0, ", t_max, "]"));
}

/// Per-particle accounts of a run on the device, and what the host makes of them.
template <class Real, class MemorySpace>
struct OdeAccounts {
  Kokkos::View<std::int64_t*, MemorySpace> evaluations, accepted, rejected;
  Kokkos::View<int*, MemorySpace> status;
  Kokkos::View<Real*, MemorySpace> t_reached;

  OdeAccounts(std::int64_t n, const char* where)
      : evaluations(std::string(where) + "::evaluations", n),
        accepted(std::string(where) + "::accepted", n),
        rejected(std::string(where) + "::rejected", n),
        status(std::string(where) + "::status", n),
        t_reached(std::string(where) + "::t_reached", n) {}

  KOKKOS_INLINE_FUNCTION void store(std::int64_t i, const DormandPrinceStats<Real>& s) const {
    evaluations(i) = s.evaluations;
    accepted(i) = s.accepted;
    rejected(i) = s.rejected;
    status(i) = int(s.status);
    t_reached(i) = s.t;
  }

  /// Fills the statistics and throws for failed particles: non_finite_error (through `bad`, which the
  /// kernel set) first, then invalid_argument for particles out of steps, then for steps too small.
  template <class Flag>
  OdeStatistics finish(const Flag& bad, const char* where, double t0, double t1,
                       const DormandPrinceSettings& settings) const {
    bad.throw_if_set(where);
    auto h_nfe = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), evaluations);
    auto h_acc = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), accepted);
    auto h_rej = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), rejected);
    auto h_status = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), status);
    auto h_t = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), t_reached);
    const std::int64_t n = std::int64_t(h_nfe.extent(0));
    OdeStatistics out;
    std::int64_t n_failed[4] = {0, 0, 0, 0}, first_failed[4] = {-1, -1, -1, -1};
    for (std::int64_t i = 0; i < n; ++i) {
      out.n_function_evaluations += h_nfe(i);
      if (h_nfe(i) > out.max_evaluations) out.max_evaluations = h_nfe(i);
      out.accepted_steps += h_acc(i);
      out.rejected_steps += h_rej(i);
      const int s = h_status(i);
      if (s > 0 && s < 4) {
        if (n_failed[s]++ == 0) first_failed[s] = i;
      }
    }
    out.mean_evaluations = n > 0 ? double(out.n_function_evaluations) / double(n) : 0.0;
    const int s_max = int(OdeStatus::max_steps), s_small = int(OdeStatus::step_too_small);
    if (n_failed[s_max] > 0) {
      const std::int64_t i = first_failed[s_max];
      throw invalid_argument(detail::concat(
          where, ": ", n_failed[s_max], " of ", n, " particles used up max_steps = ", settings.max_steps,
          " attempted steps before reaching t1 = ", t1, " from t0 = ", t0, " (the first, particle ", i,
          ", stopped at t = ", double(h_t(i)), "); raise max_steps or loosen rtol / atol"));
    }
    if (n_failed[s_small] > 0) {
      const std::int64_t i = first_failed[s_small];
      throw invalid_argument(detail::concat(where, ": ", n_failed[s_small], " of ", n,
                                            " particles needed a step below 10 machine epsilons of t "
                                            "(the first, particle ",
                                            i, ", at t = ", double(h_t(i)), " on the way from ", t0, " to ",
                                            t1, "): the ODE is too stiff or singular there for rtol = ",
                                            settings.rtol, ", atol = ", settings.atol));
    }
    return out;
  }
};

template <class T, class = void>
struct has_diffusion_member : std::false_type {};
template <class T>
struct has_diffusion_member<T, std::void_t<decltype(double(std::declval<const T&>().diffusion(
                                   std::declval<typename T::value_type>())))>> : std::true_type {};

/// Refuses a system with noise: its diffusion g(t) must be 0 at t0, t1 and 15 points between (a host
/// check; a system whose diffusion is nonzero only elsewhere is integrated as its drift alone).
template <class System>
void require_deterministic(const System& system, double t0, double t1, const char* where) {
  using Real = typename System::value_type;
  if constexpr (has_diffusion_member<System>::value) {
    for (int k = 0; k <= 16; ++k) {
      const double t = t0 + (t1 - t0) * k / 16;
      const double g = double(system.diffusion(Real(t)));
      if (g != 0)
        throw invalid_argument(detail::concat(where, ": the system has noise (diffusion g(", t, ") = ", g,
                                              "); an ODE solver integrates deterministic systems only (use "
                                              "probability_flow(sde, model), not reverse_sde)"));
    }
  } else {
    (void)system, (void)t0, (void)t1, (void)where;
  }
}

/// The right-hand side of a DriftDiffusion system's ODE: dx/dt = system.drift(x, t).
template <class System>
struct SystemRhs {
  using Real = typename System::value_type;
  const System& system;
  Real* work;
  KOKKOS_INLINE_FUNCTION void operator()(Real t, const Real* x, Real* dxdt) const {
    system.drift(x, t, dxdt, work);
  }
};

/// The batched path's Dormand-Prince solve: every row i of y (N x m) is its own adaptive ODE, whose
/// right-hand side makes model evaluations through a ReplayModel (integrate/batch_replay.hpp):
/// `with_rhs(replay, i, work_i, f)` builds the right-hand side around `replay` (work_i: rhs_workspace values
/// of particle i), calls f(rhs) and returns the evaluations the replay made. Every particle keeps its own
/// step sequence as in the fused kernel, and the particles advance in rounds of one attempted step each (6
/// right-hand sides; a particle whose solve has ended makes none), every evaluation one batched call at
/// each particle's own point (`ask(k, answers, answers_jv)`: a score when kinds[k % c] is 0, a product
/// otherwise), so that the steps are dormand_prince_start and dormand_prince_attempt themselves. A
/// probe runs one right-hand side first to learn c, its evaluations, and their kinds (the same for every
/// particle and every call; a recording pass checks it). A pass before the last works on a copy of the
/// particle's state and solver state; the stage values it leaves in the scratch are recomputed by the last
/// pass. One count of the unfinished particles is read on the host a round. Returns the statistics (and
/// throws as solve_ode does); accounts holds each particle's.
template <class ExecSpace, class Real, class Mem, class WithRhs, class Ask>
OdeStatistics solve_replayed(const ExecSpace& exec, int d, const WithRhs& with_rhs, int rhs_workspace,
                             const Ask& ask, const Kokkos::View<Real**, Kokkos::LayoutRight, Mem>& y,
                             double t0, double t1, const DormandPrinceSettings& settings,
                             OdeAccounts<Real, Mem>& accounts, const char* where) {
  using Replay = ReplayModel<Real, Mem>;
  using Policy = Kokkos::RangePolicy<ExecSpace>;
  const std::int64_t n = std::int64_t(y.extent(0));
  const int m = int(y.extent(1));
  const auto scratch = make_scratch<Real, Mem>(n, dormand_prince_scratch_size(m), where, "::scratch");
  const auto work = make_scratch<Real, Mem>(n, rhs_workspace, where, "::workspace");
  const auto copy = make_scratch<Real, Mem>(n, m, where, "::copy");
  const Kokkos::View<DormandPrinceState<Real>*, Mem> state(std::string(where) + "::state", std::size_t(n));
  NonFiniteFlag<Mem> bad(n);
  const auto control = dormand_prince_control<Real>(settings);
  const Real rt0 = Real(t0), rt1 = Real(t1);

  // The probe: one right-hand side of particle 0, counted, then again with its kinds noted.
  ReplayBuffers<Real, Mem> probe_buffers(1, 1, d, where);
  int c = 0;
  for (int round = 0; round < 2; ++round) {  // (no lambda around it: nvcc needs a named enclosing function)
    if (round == 1) {
      if (c < 1)
        throw std::logic_error(detail::concat(where, ": the right-hand side makes no model evaluation"));
      probe_buffers.kinds = Kokkos::View<int*, Mem>(std::string(where) + "::kinds", std::size_t(c));
    }
    const ReplayBuffers<Real, Mem> b = probe_buffers;
    Kokkos::parallel_for(
        "scorekit::solve_ode::probe", Policy(exec, 0, 1), KOKKOS_LAMBDA(const std::int64_t) {
          for (int j = 0; j < m; ++j) copy(0, j) = y(0, j);
          const Replay replay(&b, 0, Replay::probe, d);
          with_rhs(replay, std::int64_t(0), &work(0, 0),
                   [&](const auto& rhs) { rhs(rt0, &copy(0, 0), &scratch(0, 0)); });
        });
    Kokkos::deep_copy(exec, c, probe_buffers.probed);
    exec.fence();
  }
  const auto h_kinds = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), probe_buffers.kinds);
  bool products = false;
  for (int k = 0; k < c; ++k) products = products || h_kinds(k) != 0;

  const int attempt_calls = 6 * c;
  const int start_calls = (settings.first_step > 0 ? 1 : 2) * c;
  ReplayBuffers<Real, Mem> buffers(attempt_calls, n, d, where, products);
  buffers.kinds = probe_buffers.kinds;
  using Slab = Kokkos::View<Real**, Kokkos::LayoutRight, Mem>;
  auto slab = [&](const Kokkos::View<Real***, Kokkos::LayoutRight, Mem>& v, int k) {
    return v.extent(0) == 0 ? Slab()
                            : Slab(v.data() + std::size_t(k) * std::size_t(n) * std::size_t(d), n, d);
  };
  auto ask_pass = [&](int k) {
    ask(h_kinds(k % c), buffers, slab(buffers.answers, k), slab(buffers.answers_jv, k));
  };

  ScopedRegion region(where);
  Kokkos::Timer timer;
  // The start: f(t0, y0) and the first step, in start_calls + 1 passes.
  for (int pass = 0; pass <= start_calls; ++pass) {
    const bool last = pass == start_calls;
    Kokkos::parallel_for(
        "scorekit::solve_ode::start", Policy(exec, 0, n), KOKKOS_LAMBDA(const std::int64_t i) {
          const Replay replay(&buffers, i, pass, d);
          DormandPrinceState<Real> s;
          const int made = with_rhs(replay, i, &work(i, 0), [&](const auto& rhs) {
            s = dormand_prince_start(rhs, static_cast<const Real*>(&y(i, 0)), m, rt0, rt1, control,
                                     &scratch(i, 0));
          });
          if (!last) return;
          if (made != start_calls) buffers.miscounted() = 1;
          buffers.clear_poisoned(i);
          state(i) = s;
        });
    if (!last) ask_pass(pass);
  }
  // Rounds of one attempt each, until every particle's solve has ended.
  for (;;) {
    for (int pass = 0; pass <= attempt_calls; ++pass) {
      const bool last = pass == attempt_calls;
      Kokkos::parallel_for(
          "scorekit::solve_ode::attempt", Policy(exec, 0, n), KOKKOS_LAMBDA(const std::int64_t i) {
            if (state(i).done) return;
            const Replay replay(&buffers, i, pass, d);
            DormandPrinceState<Real> s = state(i);
            if (!last) {
              Real* yc = &copy(i, 0);
              for (int j = 0; j < m; ++j) yc[j] = y(i, j);
              with_rhs(replay, i, &work(i, 0), [&](const auto& rhs) {
                dormand_prince_attempt(rhs, yc, m, control, &scratch(i, 0), s);
              });
              return;
            }
            bool attempted = false;
            const int made = with_rhs(replay, i, &work(i, 0), [&](const auto& rhs) {
              attempted = dormand_prince_attempt(rhs, &y(i, 0), m, control, &scratch(i, 0), s);
            });
            if (made != (attempted ? attempt_calls : 0)) buffers.miscounted() = 1;
            buffers.clear_poisoned(i);
            state(i) = s;
          });
      if (!last) ask_pass(pass);
    }
    std::int64_t running = 0;
    Kokkos::parallel_reduce(
        "scorekit::solve_ode::running", Policy(exec, 0, n),
        KOKKOS_LAMBDA(const std::int64_t i, std::int64_t& sum) { sum += state(i).done ? 0 : 1; }, running);
    if (running == 0) break;
  }
  Kokkos::parallel_for(
      "scorekit::solve_ode::accounts", Policy(exec, 0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        const auto st = state(i).st;
        accounts.store(i, st);
        if (st.status == OdeStatus::non_finite) bad.record(i, st.accepted + st.rejected);
      });
  exec.fence();
  const double seconds = timer.seconds();
  int miscounted = 0;
  Kokkos::deep_copy(miscounted, buffers.miscounted);
  if (miscounted)
    throw std::logic_error(detail::concat(where, ": a Dormand-Prince step made other than its evaluations"));
  OdeStatistics out = accounts.finish(bad, where, t0, t1, settings);
  out.seconds = seconds;
  return out;
}

/// with_rhs of solve_replayed for a DriftDiffusion system: its drift around the replay.
template <class Prototype>
struct SystemWithReplay {
  Prototype prototype;  // the system around a ReplayModel
  template <class Replay, class Real, class F>
  KOKKOS_INLINE_FUNCTION int operator()(const Replay& replay, std::int64_t, Real* work, const F& f) const {
    const auto stepped = prototype.with_model(replay);
    f(SystemRhs<std::decay_t<decltype(stepped)>>{stepped, work});
    return stepped.model().calls();
  }
};

/// ask of solve_replayed for a system: every evaluation a score. A named type: nvcc takes no
/// function-local type as a template argument of a function with device lambdas.
template <class ExecSpace, class Model>
struct ScoreAsk {
  ExecSpace exec;
  const Model& model;
  template <class Real, class Mem>
  void operator()(int, const ReplayBuffers<Real, Mem>& b, const BatchView<Real, Mem>& answer,
                  const BatchView<Real, Mem>&) const {
    model.score(exec, ConstBatchView<Real, Mem>(b.query), NoiseLevels<Real, Mem>(b.query_sigma), answer);
  }
};

/// solve_ode for a system around a batch model (core/batch_model.hpp), through solve_replayed.
template <class ExecSpace, class System, class View>
OdeResult<typename System::value_type, typename View::memory_space> solve_ode_batched(
    const ExecSpace& exec, const System& system, const View& x, double t0, double t1,
    const DormandPrinceSettings& settings, const char* where) {
  using Real = typename System::value_type;
  using Mem = typename View::memory_space;
  using Replay = ReplayModel<Real, Mem>;
  const auto& model = system.model();
  const int d = model.dim();
  const auto prototype = system.with_model(Replay(nullptr, 0, 0, d));
  const std::int64_t n = check_particles(prototype, x, where);
  // The states as the solver's N x d matrix (x itself when it is one).
  Kokkos::View<Real**, Kokkos::LayoutRight, Mem> y;
  constexpr bool same_layout = std::is_same<typename View::array_layout, Kokkos::LayoutRight>::value;
  if constexpr (same_layout)
    y = x;
  else {
    y = make_scratch<Real, Mem>(n, d, where, "::states");
    Kokkos::deep_copy(exec, y, x);
  }
  const ScoreAsk<ExecSpace, std::decay_t<decltype(model)>> ask{exec, model};
  OdeAccounts<Real, Mem> accounts(n, where);
  OdeResult<Real, Mem> result;
  static_cast<OdeStatistics&>(result) =
      solve_replayed(exec, d, SystemWithReplay<std::decay_t<decltype(prototype)>>{prototype},
                     prototype.workspace_size(), ask, y, t0, t1, settings, accounts, where);
  if constexpr (!same_layout) Kokkos::deep_copy(exec, x, y);
  exec.fence();
  result.samples = x;
  result.evaluations = accounts.evaluations;
  return result;
}

}  // namespace detail

/// Integrates dx/dt = system.drift(x, t) from t0 to t1 (either direction: t0 > t1 runs backwards, as a
/// probability-flow sampler does from T to eps) for every particle of x (N x d, overwritten), each with
/// its own adaptive step sequence. The system is any DriftDiffusion system (sde/langevin.hpp,
/// sde/reverse.hpp) whose diffusion is zero (checked on the host, see detail::require_deterministic).
/// Throws invalid_argument for bad settings, times outside the system's range, a NaN or infinite initial
/// state, or particles that used up max_steps / needed a step too small (naming how many and where the
/// first stopped); non_finite_error when a state became NaN or infinite (naming the particle and the
/// attempted step).
template <class ExecSpace, class System, class View>
OdeResult<typename System::value_type, typename View::memory_space> solve_ode(
    const ExecSpace& exec, const System& system, const View& x, double t0, double t1,
    const DormandPrinceSettings& settings = {}) {
  using Real = typename System::value_type;
  using Mem = typename View::memory_space;
  const char* where = "scorekit::solve_ode";
  detail::check_dormand_prince_settings(settings, where);
  detail::check_ode_interval(t0, t1, detail::system_t_max(system), where);
  detail::require_deterministic(system, t0, t1, where);
  if constexpr (detail::has_batch_model<System>::value) {
    return detail::solve_ode_batched(exec, system, x, t0, t1, settings, where);
  } else {
    const std::int64_t n = detail::check_particles(system, x, where);
    const int d = system.dim();
    const int ws = system.workspace_size();
    auto scratch =
        detail::make_scratch<Real, Mem>(n, detail::dormand_prince_scratch_size(d), where, "::scratch");
    auto work = detail::make_scratch<Real, Mem>(n, ws, where, "::workspace");
    detail::OdeAccounts<Real, Mem> accounts(n, where);
    NonFiniteFlag<Mem> bad(n);
    const auto control = detail::dormand_prince_control<Real>(settings);
    const Real rt0 = Real(t0), rt1 = Real(t1);

    ScopedRegion region(where);
    Kokkos::Timer timer;
    Kokkos::parallel_for(
        "scorekit::solve_ode", Kokkos::RangePolicy<ExecSpace>(exec, 0, n),
        KOKKOS_LAMBDA(const std::int64_t i) {
          Real* xi = &x(i, 0);
          const detail::SystemRhs<System> rhs{system, &work(i, 0)};
          const auto st = detail::dormand_prince_solve(rhs, xi, d, rt0, rt1, control, &scratch(i, 0));
          accounts.store(i, st);
          if (st.status == detail::OdeStatus::non_finite) bad.record(i, st.accepted + st.rejected);
        });
    exec.fence();
    const double seconds = timer.seconds();
    OdeResult<Real, Mem> result;
    static_cast<OdeStatistics&>(result) = accounts.finish(bad, where, t0, t1, settings);
    result.seconds = seconds;
    result.samples = x;
    result.evaluations = accounts.evaluations;
    return result;
  }
}

}  // namespace scorekit
