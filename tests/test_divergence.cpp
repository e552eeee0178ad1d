// Divergence estimators (divergence/): the exact trace against Jacobians assembled in Eigen, its preference
// for an analytic divergence, Hutchinson's unbiasedness and exact variance, the second order of the
// finite-difference estimator, the probes a training objective replays, determinism and independence of
// the probes, model workspace, and the errors bad input gets. Every statistical tolerance is a stated
// number of standard errors of the estimator it checks; every finite-difference tolerance comes from the
// next term of a Taylor expansion.
#include "backends.hpp"
#include "support.hpp"

#include <catch2/catch.hpp>

#include <scorekit/core/random.hpp>
#include <scorekit/core/views.hpp>
#include <scorekit/density/banana.hpp>
#include <scorekit/density/gaussian_mixture.hpp>
#include <scorekit/divergence/estimate_divergence.hpp>
#include <scorekit/divergence/exact_trace.hpp>
#include <scorekit/divergence/finite_difference.hpp>
#include <scorekit/divergence/hutchinson.hpp>
#include <scorekit/divergence/model_traits.hpp>
#include <scorekit/divergence/probes.hpp>

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

using scorekit_test::Backends;

namespace {

using scorekit::CounterRng;
using scorekit::RngStream;

constexpr int max_dim = 8;

// ---------------------------------------------------------------------------------------------------
// Test models: plain value types with fixed-size storage, usable in every memory space.

// s(x) = A x + b; J = A.
template <class Real>
struct LinearModel {
  using value_type = Real;
  int d = 0;
  Real a[max_dim * max_dim] = {};
  Real b[max_dim] = {};
  KOKKOS_INLINE_FUNCTION int dim() const { return d; }
  KOKKOS_INLINE_FUNCTION void score(const Real* x, Real* out) const {
    for (int i = 0; i < d; ++i) {
      Real acc = 0;
      for (int j = 0; j < d; ++j) acc += a[i * max_dim + j] * x[j];
      out[i] = acc + b[i];
    }
  }
  KOKKOS_INLINE_FUNCTION void jvp(const Real* x, const Real* v, Real* s, Real* jv) const {
    score(x, s);
    for (int i = 0; i < d; ++i) {
      Real acc = 0;
      for (int j = 0; j < d; ++j) acc += a[i * max_dim + j] * v[j];
      jv[i] = acc;
    }
  }
};

// tanh through expm1 (core/kokkos.hpp offers no tanh on every Kokkos version): relative error a few ulps.
template <class Real>
KOKKOS_INLINE_FUNCTION Real tanh_of(Real u) {
  const Real e = scorekit::math::expm1(Real(2) * u);
  return e / (e + Real(2));
}

// s(x) = tanh(A x + b) + B x, score only; J = diag(1 - tanh(u)^2) A + B with u = A x + b.
template <class Real>
struct TanhScore {
  using value_type = Real;
  int d = 0;
  Real a[max_dim * max_dim] = {};
  Real b[max_dim] = {};
  Real bb[max_dim * max_dim] = {};
  KOKKOS_INLINE_FUNCTION int dim() const { return d; }
  KOKKOS_INLINE_FUNCTION void score(const Real* x, Real* out) const {
    for (int i = 0; i < d; ++i) {
      Real u = b[i], lin = 0;
      for (int j = 0; j < d; ++j) {
        u += a[i * max_dim + j] * x[j];
        lin += bb[i * max_dim + j] * x[j];
      }
      out[i] = tanh_of(u) + lin;
    }
  }
};

// The same with forward mode.
template <class Real>
struct TanhModel : TanhScore<Real> {
  KOKKOS_INLINE_FUNCTION void jvp(const Real* x, const Real* v, Real* s, Real* jv) const {
    const int d = this->d;
    for (int i = 0; i < d; ++i) {
      Real u = this->b[i], lin = 0, w = 0, bv = 0;
      for (int j = 0; j < d; ++j) {
        u += this->a[i * max_dim + j] * x[j];
        lin += this->bb[i * max_dim + j] * x[j];
        w += this->a[i * max_dim + j] * v[j];
        bv += this->bb[i * max_dim + j] * v[j];
      }
      const Real t = tanh_of(u);
      s[i] = t + lin;
      jv[i] = (Real(1) - t * t) * w + bv;
    }
  }
};

// A linear model that counts its calls (atomically: the kernels run in parallel).
template <class Real, class MemorySpace>
struct CountingModel : LinearModel<Real> {
  Kokkos::View<int[3], MemorySpace> calls;  // score, jvp, divergence
  KOKKOS_INLINE_FUNCTION void score(const Real* x, Real* out) const {
    Kokkos::atomic_increment(&calls(0));
    LinearModel<Real>::score(x, out);
  }
  KOKKOS_INLINE_FUNCTION void jvp(const Real* x, const Real* v, Real* s, Real* jv) const {
    Kokkos::atomic_increment(&calls(1));
    LinearModel<Real>::jvp(x, v, s, jv);
  }
};

// ... with an analytic divergence too: ExactTrace must use it and no JVP.
template <class Real, class MemorySpace>
struct CountingModelWithDivergence : CountingModel<Real, MemorySpace> {
  KOKKOS_INLINE_FUNCTION Real divergence(const Real* x) const {
    (void)x;
    Kokkos::atomic_increment(&this->calls(2));
    Real trace = 0;
    for (int i = 0; i < this->d; ++i) trace += this->a[i * max_dim + i];
    return trace;
  }
};

// Score and analytic divergence, no forward mode: enough for ExactTrace.
template <class Real>
struct DivergenceOnlyModel {
  using value_type = Real;
  LinearModel<Real> linear;
  KOKKOS_INLINE_FUNCTION int dim() const { return linear.d; }
  KOKKOS_INLINE_FUNCTION void score(const Real* x, Real* out) const { linear.score(x, out); }
  KOKKOS_INLINE_FUNCTION Real divergence(const Real* x) const {
    (void)x;
    Real trace = 0;
    for (int i = 0; i < linear.d; ++i) trace += linear.a[i * max_dim + i];
    return trace;
  }
};

// A linear model that needs workspace and fills all of it with NaN before use: if an estimator handed it
// scratch that overlaps its own, the estimate would be NaN or wrong.
template <class Real>
struct LinearModelWithWorkspace {
  using value_type = Real;
  LinearModel<Real> linear;
  KOKKOS_INLINE_FUNCTION int dim() const { return linear.d; }
  KOKKOS_INLINE_FUNCTION int workspace_size() const { return 2 * linear.d; }
  KOKKOS_INLINE_FUNCTION void score(const Real* x, Real* out, Real* work) const {
    poison(work);
    for (int i = 0; i < linear.d; ++i) {
      Real acc = 0;
      for (int j = 0; j < linear.d; ++j) acc += linear.a[i * max_dim + j] * x[j];
      work[i] = acc;
    }
    for (int i = 0; i < linear.d; ++i) out[i] = work[i] + linear.b[i];
  }
  KOKKOS_INLINE_FUNCTION void jvp(const Real* x, const Real* v, Real* s, Real* jv, Real* work) const {
    score(x, s, work);
    poison(work);
    for (int i = 0; i < linear.d; ++i) {
      Real acc = 0;
      for (int j = 0; j < linear.d; ++j) acc += linear.a[i * max_dim + j] * v[j];
      work[linear.d + i] = acc;
    }
    for (int i = 0; i < linear.d; ++i) jv[i] = work[linear.d + i];
  }
  KOKKOS_INLINE_FUNCTION void poison(Real* work) const {
    for (int i = 0; i < 2 * linear.d; ++i) work[i] = nan;
  }
  Real nan = std::numeric_limits<Real>::quiet_NaN();
};

// An analytic divergence that overflows: the batch driver must report it.
struct OverflowingModel {
  using value_type = double;
  KOKKOS_INLINE_FUNCTION int dim() const { return 1; }
  KOKKOS_INLINE_FUNCTION void score(const double* x, double* out) const { out[0] = x[0]; }
  KOKKOS_INLINE_FUNCTION double divergence(const double* x) const { return 1e308 * x[0]; }
};

// The per-point helper a user's own kernel would write: caller-owned scratch on the stack, the generator
// estimate_divergence documents for particle i, and the dimension passed explicitly (dim() is a host
// member).
template <int MaxWork, class Estimator, class Model, class Real>
KOKKOS_INLINE_FUNCTION Real divergence_at(const Estimator& estimator, const Model& model, int d,
                                          const Real* x, std::uint64_t seed, std::uint64_t particle) {
  Real work[MaxWork];
  CounterRng<Real> rng(seed, particle, 0, RngStream::divergence_probe);
  return estimator.estimate(model, d, x, rng, work);
}

// ---------------------------------------------------------------------------------------------------
// Fixtures and host references.

// Entries scale * N(0, 1) from a fixed generator, rounded to Real (the Eigen references use the rounded
// values, so they are exact for the model actually evaluated).
template <class Real>
void fill_normal(Real* out, int n, double scale, std::uint64_t seed) {
  CounterRng<double> rng(seed, 0, 0, RngStream::init);
  for (int i = 0; i < n; ++i) out[i] = Real(scale * rng.normal());
}

template <class Real>
LinearModel<Real> make_linear(int d, std::uint64_t seed) {
  LinearModel<Real> m;
  m.d = d;
  fill_normal(m.a, max_dim * max_dim, 0.7, seed);
  fill_normal(m.b, max_dim, 0.5, seed + 1);
  return m;
}

template <class Model>
Model make_tanh(int d, std::uint64_t seed) {
  Model m;
  m.d = d;
  fill_normal(m.a, max_dim * max_dim, 0.8, seed);
  fill_normal(m.b, max_dim, 0.4, seed + 1);
  fill_normal(m.bb, max_dim * max_dim, 0.5, seed + 2);
  return m;
}

template <class Real>
Eigen::MatrixXd matrix_of(const Real* a, int d) {
  Eigen::MatrixXd m(d, d);
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j) m(i, j) = double(a[i * max_dim + j]);
  return m;
}
template <class Real>
Eigen::VectorXd vector_of(const Real* b, int d) {
  Eigen::VectorXd v(d);
  for (int i = 0; i < d; ++i) v[i] = double(b[i]);
  return v;
}

// u = A x + b and J = diag(1 - tanh(u)^2) A + B of the tanh model, in double.
template <class Real>
Eigen::MatrixXd tanh_jacobian(const TanhScore<Real>& m, const Eigen::VectorXd& x) {
  const Eigen::MatrixXd a = matrix_of(m.a, m.d);
  const Eigen::VectorXd u = a * x + vector_of(m.b, m.d);
  Eigen::MatrixXd j = matrix_of(m.bb, m.d);
  for (int i = 0; i < m.d; ++i) {
    const double t = std::tanh(u[i]);
    j.row(i) += (1 - t * t) * a.row(i);
  }
  return j;
}

// N x d points scale * N(0, 1), as a particle view in Exec's memory space and as a host matrix (the
// view's values, so both are the same points).
template <class Real, class Exec>
scorekit::ParticleView<Real, typename Exec::memory_space> make_points(std::int64_t n, int d, double scale,
                                                                      std::uint64_t seed) {
  scorekit::ParticleView<Real, typename Exec::memory_space> x("x", n, d);
  auto h = Kokkos::create_mirror_view(x);
  for (std::int64_t i = 0; i < n; ++i) {
    CounterRng<double> rng(seed, std::uint64_t(i), 0, RngStream::init);
    for (int j = 0; j < d; ++j) h(i, j) = Real(scale * rng.normal());
  }
  Kokkos::deep_copy(x, h);
  return x;
}
template <class View>
Eigen::VectorXd row_of(const View& x, std::int64_t i) {
  auto h = scorekit::to_host(x);
  Eigen::VectorXd v(h.extent(1));
  for (std::size_t j = 0; j < h.extent(1); ++j) v[Eigen::Index(j)] = double(h(i, j));
  return v;
}

// estimate_divergence into a fresh host vector.
template <class Exec, class Estimator, class Model, class View>
std::vector<double> divergences(const Estimator& est, const Model& model, const View& x, std::uint64_t seed) {
  using Real = typename Model::value_type;
  Kokkos::View<Real*, typename Exec::memory_space> out("out", x.extent(0));
  scorekit::estimate_divergence(Exec(), est, model, x, seed, out);
  auto h = scorekit::to_host(out);
  return std::vector<double>(h.data(), h.data() + h.extent(0));
}

// The probes an estimator uses for particle i, replayed on the host through its probe() member.
template <class Estimator>
std::vector<Eigen::VectorXd> probes_of(const Estimator& est, int d, std::uint64_t seed, std::uint64_t i) {
  CounterRng<double> rng(seed, i, 0, RngStream::divergence_probe);
  std::vector<Eigen::VectorXd> probes;
  for (int k = 0; k < est.n_probes(d); ++k) {
    Eigen::VectorXd v(d);
    est.probe(k, d, rng, v.data());
    probes.push_back(v);
  }
  return probes;
}

struct Moments {
  double mean = 0, var = 0, m4 = 0;  // sample mean, unbiased variance, fourth central moment
};
Moments moments_of(const std::vector<double>& v) {
  Moments m;
  const double n = double(v.size());
  for (double x : v) m.mean += x;
  m.mean /= n;
  for (double x : v) {
    const double c = (x - m.mean) * (x - m.mean);
    m.var += c;
    m.m4 += c * c;
  }
  m.var /= n - 1;
  m.m4 /= n;
  return m;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------

TEMPLATE_LIST_TEST_CASE("ExactTrace through d JVPs equals the trace of the Jacobian assembled in Eigen",
                        "[divergence]", Backends) {
  using Exec = TestType;
  const auto check = [](auto real_tag) {
    using Real = decltype(real_tag);
    const double eps = double(std::numeric_limits<Real>::epsilon());
    const std::int64_t n = 9;
    INFO((sizeof(Real) == 8 ? "double" : "float"));

    {  // linear model s = A x + b
      const int d = 5;
      const auto model = make_linear<Real>(d, 31);
      const auto x = make_points<Real, Exec>(n, d, 1.0, 32);
      const auto out = divergences<Exec>(scorekit::ExactTrace{}, model, x, 0);
      const Eigen::MatrixXd a = matrix_of(model.a, d);
      // jv = A e_i is exact (every other product is by 0), so the only rounding is the sum of d
      // diagonal entries: |error| <= (d - 1) eps sum |A_ii| (Higham, "Accuracy and stability of
      // numerical algorithms", 2002, eq. 4.4).
      const double tol = (d - 1) * eps * a.diagonal().cwiseAbs().sum();
      for (std::int64_t i = 0; i < n; ++i) {
        INFO("particle " << i << ": " << out[std::size_t(i)] << " vs " << a.trace());
        REQUIRE(std::abs(out[std::size_t(i)] - a.trace()) <= tol);
      }
    }

    {  // nonlinear model s = tanh(A x + b) + B x
      const int d = 6;
      const auto model = make_tanh<TanhModel<Real>>(d, 41);
      const auto x = make_points<Real, Exec>(n, d, 1.0, 42);
      const auto out = divergences<Exec>(scorekit::ExactTrace{}, model, x, 0);
      const Eigen::MatrixXd a = matrix_of(model.a, d), bb = matrix_of(model.bb, d);
      for (std::int64_t i = 0; i < n; ++i) {
        const Eigen::VectorXd xi = row_of(x, i);
        const Eigen::MatrixXd j = tanh_jacobian(model, xi);
        // The fixture itself: the Jacobian assembled column by column from the model's jvp (on the
        // host) is the analytic one.
        Eigen::MatrixXd from_jvp(d, d);
        const std::size_t nd = static_cast<std::size_t>(d);
        std::vector<Real> xr(nd), v(nd), s(nd), jv(nd);
        for (int c = 0; c < d; ++c) xr[std::size_t(c)] = Real(xi[c]);
        for (int c = 0; c < d; ++c) {
          for (int r = 0; r < d; ++r) v[std::size_t(r)] = Real(r == c);
          model.jvp(xr.data(), v.data(), s.data(), jv.data());
          for (int r = 0; r < d; ++r) from_jvp(r, c) = double(jv[std::size_t(r)]);
        }
        // Rounding of an entry J_rc = (1 - t_r^2) A_rc + B_rc computed with e_c as probe: w_r = A_rc and
        // (B e_c)_r = B_rc exactly, so the errors are in u_r = b_r + sum_j A_rj x_j (at most du_r =
        // (d + 1) eps (|b_r| + sum_j |A_rj x_j|), Higham, "Accuracy and stability of numerical
        // algorithms", eq. 3.5; |d(1 - t^2)/du| <= 1), in t = tanh(u) (expm1, a sum and a division:
        // relative 4 eps, so 8 eps in t^2), in 1 - t^2 (2 eps more), and in the product and the sum (eps
        // each). The trace adds the sum of d entries: (d - 1) eps sum |J_ii| (Higham eq. 4.4).
        Eigen::MatrixXd entry_tol(d, d);
        for (int r = 0; r < d; ++r) {
          const double du =
              (d + 1) * eps * (std::abs(double(model.b[r])) + a.row(r).cwiseAbs().dot(xi.cwiseAbs()));
          for (int c = 0; c < d; ++c)
            entry_tol(r, c) =
                std::abs(a(r, c)) * (du + 11 * eps) + eps * (std::abs(a(r, c)) + std::abs(bb(r, c)));
        }
        const double tol = entry_tol.diagonal().sum() + (d - 1) * eps * j.diagonal().cwiseAbs().sum();
        INFO("particle " << i << ": " << out[std::size_t(i)] << " vs " << j.trace() << ", tolerance " << tol);
        REQUIRE(std::abs(out[std::size_t(i)] - j.trace()) <= tol);
        // The fixture: each column from the model's jvp is the analytic one, entry by entry.
        REQUIRE(((from_jvp - j).cwiseAbs().array() <= entry_tol.array()).all());
      }
    }
  };
  check(double());
  check(float());
}

TEMPLATE_LIST_TEST_CASE("ExactTrace prefers the model's analytic divergence and counts its evaluations",
                        "[divergence]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const int d = 4;
  const std::int64_t n = 37;
  const auto x = make_points<double, Exec>(n, d, 1.0, 51);
  const auto linear = make_linear<double>(d, 52);
  const double trace = matrix_of(linear.a, d).trace();
  const auto counts = [](const Kokkos::View<int[3], Mem>& calls) {
    auto h = scorekit::to_host(calls);
    return std::vector<int>{h(0), h(1), h(2)};
  };

  CountingModelWithDivergence<double, Mem> with_div;
  static_cast<LinearModel<double>&>(with_div) = linear;
  with_div.calls = Kokkos::View<int[3], Mem>("calls");
  static_assert(scorekit::divergence_model_traits<decltype(with_div)>::has_divergence, "fixture");
  static_assert(scorekit::divergence_model_traits<decltype(with_div)>::has_jvp, "fixture");
  auto out = divergences<Exec>(scorekit::ExactTrace{}, with_div, x, 0);
  for (double v : out) REQUIRE(v == trace);  // the analytic value, untouched
  REQUIRE(counts(with_div.calls) == std::vector<int>{0, 0, int(n)});

  // Without it: d JVPs a particle.
  CountingModel<double, Mem> jvp_only;
  static_cast<LinearModel<double>&>(jvp_only) = linear;
  jvp_only.calls = Kokkos::View<int[3], Mem>("calls");
  out = divergences<Exec>(scorekit::ExactTrace{}, jvp_only, x, 0);
  for (double v : out) REQUIRE(v == Approx(trace).epsilon(1e-14));
  REQUIRE(counts(jvp_only.calls) == std::vector<int>{0, int(n) * d, 0});

  // Hutchinson uses M JVPs even when an analytic divergence exists; finite differences 2 M scores.
  Kokkos::deep_copy(with_div.calls, 0);
  divergences<Exec>(scorekit::Hutchinson<scorekit::GaussianProbe>(3), with_div, x, 0);
  REQUIRE(counts(with_div.calls) == std::vector<int>{0, 3 * int(n), 0});
  Kokkos::deep_copy(with_div.calls, 0);
  divergences<Exec>(scorekit::FiniteDifferenceDivergence<scorekit::RademacherProbe>(5, 1e-3), with_div, x, 0);
  REQUIRE(counts(with_div.calls) == std::vector<int>{10 * int(n), 0, 0});

  // A model with score and divergence only (no forward mode) is enough for ExactTrace.
  DivergenceOnlyModel<double> div_only{linear};
  out = divergences<Exec>(scorekit::ExactTrace{}, div_only, x, 0);
  for (double v : out) REQUIRE(v == trace);

  // A Density's laplacian counts as its analytic divergence, with and without workspace.
  const scorekit::Banana<double> banana(d, 0.3, 1.5);
  out = divergences<Exec>(scorekit::ExactTrace{}, banana, x, 0);
  for (std::int64_t i = 0; i < n; ++i) {
    const Eigen::VectorXd xi = row_of(x, i);
    REQUIRE(out[std::size_t(i)] == banana.laplacian(xi.data()));
  }
  Eigen::MatrixXd means(2, d);
  means.setZero();
  means(1, 0) = 2;
  const auto mixture = scorekit::GaussianMixture<double, Mem>::isotropic(Eigen::Vector2d(0.3, 0.7), means,
                                                                         Eigen::Vector2d(0.5, 1.5));
  static_assert(scorekit::divergence_model_traits<decltype(mixture)>::has_analytic_divergence, "fixture");
  out = divergences<Exec>(scorekit::ExactTrace{}, mixture, x, 0);
  Kokkos::View<double*, Mem> direct("direct", n);
  Kokkos::View<double**, Kokkos::LayoutRight, Mem> work("work", n, mixture.workspace_size());
  Kokkos::parallel_for(
      Kokkos::RangePolicy<Exec>(0, n),
      KOKKOS_LAMBDA(const std::int64_t i) { direct(i) = mixture.laplacian(&x(i, 0), &work(i, 0)); });
  auto direct_h = scorekit::to_host(direct);
  for (std::int64_t i = 0; i < n; ++i) REQUIRE(out[std::size_t(i)] == direct_h(i));
}

// Hutchinson's estimate with M probes, T_M = (1/M) sum_k v_k^T J v_k, at one point, replicated over R
// particles (each with its own probes). Exact: E[T_M] = tr J and Var(T_M) = Var(v^T J v) / M with
// Var(v^T J v) = 2 ||S||_F^2 (Gaussian) or 2 (||S||_F^2 - sum_i S_ii^2) (Rademacher), S = (J + J^T) / 2.
// The estimator is unbiased, so its mean squared error is that variance: the error falls as 1/sqrt(M).
//
// Tolerances, 4.5 standard errors each (two-sided normal tail 7e-6 per check):
//  - the sample mean of R replicates has SE sqrt(Var(T_M) / R), with the exact variance;
//  - the unbiased sample variance s^2 has Var(s^2) = (mu_4 - sigma^4 (R - 3) / (R - 1)) / R for iid
//    replicates (e.g. Kendall and Stuart, "The advanced theory of statistics", vol. 1, eq. 10.13), with the
//    fourth central moment mu_4 and sigma^2 estimated from the same sample (plug-in).
template <class Exec, class Probe>
void check_hutchinson_moments(bool gaussian) {
  const int d = 5;
  const std::int64_t replicates = 20000;
  const auto model = make_tanh<TanhModel<double>>(d, 61);
  const Eigen::VectorXd point = row_of(make_points<double, Exec>(1, d, 1.0, 62), 0);
  scorekit::ParticleView<double, typename Exec::memory_space> x("x", replicates, d);
  scorekit_test::fill_host(x, [&](std::size_t, std::size_t j) { return point[Eigen::Index(j)]; });
  const Eigen::MatrixXd j = tanh_jacobian(model, point);
  const Eigen::MatrixXd s = (j + j.transpose()) / 2;
  const double var1 = gaussian ? 2 * s.squaredNorm() : 2 * (s.squaredNorm() - s.diagonal().squaredNorm());
  const double trace = j.trace();
  for (int m : {1, 4, 16, 64}) {
    const auto out = divergences<Exec>(scorekit::Hutchinson<Probe>(m), model, x, 1000 + std::uint64_t(m));
    const Moments mo = moments_of(out);
    const double var_m = var1 / m;
    const double se_mean = std::sqrt(var_m / double(replicates));
    const double r = double(replicates);
    const double se_var = std::sqrt((mo.m4 - mo.var * mo.var * (r - 3) / (r - 1)) / r);
    INFO((gaussian ? "Gaussian" : "Rademacher")
         << " probes, M = " << m << ": mean " << mo.mean << " vs tr J " << trace << " (SE " << se_mean
         << "), variance " << mo.var << " vs exact " << var_m << " (SE " << se_var << ")");
    REQUIRE(std::abs(mo.mean - trace) <= 4.5 * se_mean);
    REQUIRE(std::abs(mo.var - var_m) <= 4.5 * se_var);
  }
}

TEMPLATE_LIST_TEST_CASE("Hutchinson is unbiased with the exact variance, so its error falls as 1/sqrt(M)",
                        "[divergence]", Backends) {
  using Exec = TestType;
  check_hutchinson_moments<Exec, scorekit::GaussianProbe>(true);
  check_hutchinson_moments<Exec, scorekit::RademacherProbe>(false);
}

TEST_CASE("Each estimator's estimate is the weighted sum of v^T J v over the probes probe() replays",
          "[divergence]") {
  // What a training objective relies on: it draws the probes with probe(k, ...) on the generator
  // estimate_divergence documents and pushes them through a network's batched forward mode.
  const int d = 5;
  const auto model = make_tanh<TanhModel<double>>(d, 71);
  CounterRng<double> point_rng(72, 0, 0, RngStream::init);
  Eigen::VectorXd x(d);
  for (int j = 0; j < d; ++j) x[j] = point_rng.normal();
  const Eigen::MatrixXd jac = tanh_jacobian(model, x);
  const auto replay = [&](const auto& est, std::uint64_t seed) {
    double sum = 0;
    for (const auto& v : probes_of(est, d, seed, 3)) sum += v.dot(jac * v);
    return est.probe_weight(d) * sum;
  };
  const auto estimate = [&](const auto& est, std::uint64_t seed) {
    std::vector<double> work(std::size_t(est.workspace_size(d)));
    CounterRng<double> rng(seed, 3, 0, RngStream::divergence_probe);
    return est.estimate(model, x.data(), rng, work.data());
  };
  // Rounding of v^T J v over M probes: far below 1e-12 relative for these sizes.
  const scorekit::ExactTrace exact;
  REQUIRE(exact.n_probes(d) == d);
  REQUIRE(exact.probe_weight(d) == 1.0);
  REQUIRE(exact.template probe_weight<float>(d) == 1.0f);
  const auto unit = probes_of(exact, d, 1, 0);
  for (int k = 0; k < d; ++k) REQUIRE(unit[std::size_t(k)] == Eigen::VectorXd::Unit(d, k));
  REQUIRE(estimate(exact, 1) == Approx(replay(exact, 1)).epsilon(1e-12));

  const scorekit::Hutchinson<scorekit::GaussianProbe> gauss(7);
  const scorekit::Hutchinson<scorekit::RademacherProbe> rademacher(6);
  REQUIRE(gauss.n_probes(d) == 7);
  REQUIRE(gauss.probe_weight(d) == 1.0 / 7);
  REQUIRE(estimate(gauss, 5) == Approx(replay(gauss, 5)).epsilon(1e-12));
  REQUIRE(estimate(rademacher, 5) == Approx(replay(rademacher, 5)).epsilon(1e-12));
  for (const auto& v : probes_of(rademacher, d, 5, 3))
    for (int j = 0; j < d; ++j) REQUIRE(std::abs(v[j]) == 1.0);

  // The finite-difference estimator draws the same directions from the same generator.
  const scorekit::FiniteDifferenceDivergence<scorekit::GaussianProbe> fd(7, 1e-3);
  REQUIRE(fd.n_probes(d) == 7);
  REQUIRE(fd.probe_weight(d) == 1.0 / 7);
  REQUIRE(fd.step() == 1e-3);
  const auto pg = probes_of(gauss, d, 5, 3), pf = probes_of(fd, d, 5, 3);
  for (std::size_t k = 0; k < pg.size(); ++k) REQUIRE(pg[k] == pf[k]);
  REQUIRE(scorekit::ExactTrace::uses_jvp);
  REQUIRE(scorekit::Hutchinson<scorekit::GaussianProbe>::uses_jvp);
  REQUIRE_FALSE(scorekit::FiniteDifferenceDivergence<scorekit::GaussianProbe>::uses_jvp);
}

// The central difference along v of f(t) = v^T s(x + t v) (Taylor with Lagrange remainders about 0):
//   (f(h) - f(-h)) / (2h) = f'(0) + f'''(0) h^2 / 6 + (f^(5)(xi_1) + f^(5)(xi_2)) h^4 / 240,
// so for the tanh model (the B x part is linear and drops out of f''' and f^(5)), with w = A v,
//   f'(0) = v^T J v,  f'''(0) = sum_i v_i tanh'''(u_i) w_i^3,  tanh''' = -6 t^4 + 8 t^2 - 2,
//   |f^(5)| <= 16 sum_i |v_i| |w_i|^5            (max |tanh^(5)| = 16, at 0).
// Averaged over the M fixed probes the error is e(h) = c h^2 + R(h), c = mean f'''(0) / 6,
// |R(h)| <= K h^4 + rho(h), K = mean 16 sum_i |v_i| |w_i|^5 / 120, and rho(h) the rounding of the
// difference quotient: each score component is computed with absolute error at most (d + 4) eps times the
// sum of the magnitudes it adds up (Higham eq. 3.5, plus tanh), and x +- h v is off by eps (|x| + h |v|),
// which J carries into s; both quotients are divided by 2h (the bound below doubles it for safety of
// the constant, not tuned). The error ratio e(h) / e(h/2) must then lie in the interval these bounds
// allow, which is near 4 because K h^2 << c here.
TEMPLATE_LIST_TEST_CASE("Finite-difference divergence converges at second order in h", "[divergence]",
                        Backends) {
  using Exec = TestType;
  const int d = 4, n = 3, m = 3;
  const auto model = make_tanh<TanhScore<double>>(d, 81);
  const auto x = make_points<double, Exec>(n, d, 0.7, 82);
  const std::uint64_t seed = 83;
  const double eps = std::numeric_limits<double>::epsilon();
  const Eigen::MatrixXd a = matrix_of(model.a, d), bb = matrix_of(model.bb, d);
  const Eigen::VectorXd b = vector_of(model.b, d);
  const std::vector<double> steps{0.04, 0.02, 0.01};
  std::vector<std::vector<double>> fd;
  for (double h : steps)
    fd.push_back(divergences<Exec>(scorekit::FiniteDifferenceDivergence<scorekit::GaussianProbe>(m, h), model,
                                   x, seed));
  for (int i = 0; i < n; ++i) {
    const Eigen::VectorXd xi = row_of(x, i);
    const Eigen::MatrixXd j = tanh_jacobian(model, xi);
    const Eigen::VectorXd u = a * xi + b;
    const auto probes = probes_of(scorekit::FiniteDifferenceDivergence<scorekit::GaussianProbe>(m, 1), d,
                                  seed, std::uint64_t(i));
    double exact = 0, c = 0, k = 0;
    for (const auto& v : probes) {
      const Eigen::VectorXd w = a * v;
      exact += v.dot(j * v) / m;
      for (int r = 0; r < d; ++r) {
        const double t = std::tanh(u[r]);
        c += v[r] * (-6 * std::pow(t, 4) + 8 * t * t - 2) * std::pow(w[r], 3) / (6 * m);
        k += 16 * std::abs(v[r]) * std::pow(std::abs(w[r]), 5) / (120 * m);
      }
    }
    const auto rho = [&](double h) {
      double sum = 0;
      for (const auto& v : probes) {
        const Eigen::VectorXd y = xi.cwiseAbs() + h * v.cwiseAbs();
        const Eigen::VectorXd score_err =
            (d + 4) * eps * ((a.cwiseAbs() + bb.cwiseAbs()) * y + b.cwiseAbs() + Eigen::VectorXd::Ones(d));
        const Eigen::VectorXd shift_err = j.cwiseAbs() * (eps * y);
        sum += v.cwiseAbs().dot(score_err + shift_err) / m;
      }
      return 2 * 2 * sum / (2 * h);  // two evaluations, doubled
    };
    std::vector<double> err(steps.size()), bound(steps.size());
    for (std::size_t s = 0; s < steps.size(); ++s) {
      const double h = steps[s];
      err[s] = fd[s][std::size_t(i)] - exact;
      bound[s] = k * std::pow(h, 4) + rho(h);
      INFO("particle " << i << ", h = " << h << ": error " << err[s] << ", leading term c h^2 = " << c * h * h
                       << ", remainder bound " << bound[s]);
      REQUIRE(std::abs(err[s] - c * h * h) <= bound[s]);
    }
    for (std::size_t s = 0; s + 1 < steps.size(); ++s) {
      const double h = steps[s];
      // e(h) in [c h^2 - B(h), c h^2 + B(h)], e(h/2) in [c h^2/4 - B(h/2), ...]: the ratio's interval.
      const double lo1 = c * h * h - bound[s], hi1 = c * h * h + bound[s];
      const double lo2 = c * h * h / 4 - bound[s + 1], hi2 = c * h * h / 4 + bound[s + 1];
      REQUIRE(lo2 * hi2 > 0);  // e(h/2) is bounded away from 0, so the ratio is meaningful
      const double q[4] = {lo1 / lo2, lo1 / hi2, hi1 / lo2, hi1 / hi2};
      const double qlo = *std::min_element(q, q + 4), qhi = *std::max_element(q, q + 4);
      const double ratio = err[s] / err[s + 1];
      INFO("particle " << i << ", h = " << h << ": error ratio " << ratio << ", allowed [" << qlo << ", "
                       << qhi << "]");
      REQUIRE(qlo > 3);  // the bounds are tight enough to tell order 2 (ratio 4) from order 1 (ratio 2)
      REQUIRE(qhi < 5);
      REQUIRE(ratio >= qlo);
      REQUIRE(ratio <= qhi);
    }
  }
}

TEMPLATE_LIST_TEST_CASE("Probes are deterministic for a seed and independent across particles",
                        "[divergence][threads]", Backends) {
  using Exec = TestType;
  const int d = 5;
  const std::int64_t n = 20000;
  const auto model = make_tanh<TanhModel<double>>(d, 91);
  const auto x0 = make_points<double, Exec>(1, d, 1.0, 92);
  scorekit::ParticleView<double, typename Exec::memory_space> x("x", n, d);
  const Eigen::VectorXd p = row_of(x0, 0);
  scorekit_test::fill_host(x, [&](std::size_t, std::size_t j) { return p[Eigen::Index(j)]; });
  const scorekit::Hutchinson<scorekit::GaussianProbe> est(1);

  // Same seed, same bits; and the same as the per-point helper in a user's kernel and on the host, with
  // the generator the batch driver documents.
  const auto first = divergences<Exec>(est, model, x, 7);
  REQUIRE(first == divergences<Exec>(est, model, x, 7));
  Kokkos::View<double*, typename Exec::memory_space> user("user", n);
  Kokkos::parallel_for(
      Kokkos::RangePolicy<Exec>(0, n), KOKKOS_LAMBDA(const std::int64_t i) {
        user(i) = divergence_at<3 * max_dim>(est, model, d, &x(i, 0), 7, std::uint64_t(i));
      });
  auto user_h = scorekit::to_host(user);
  for (std::int64_t i = 0; i < n; ++i) REQUIRE(user_h(i) == first[std::size_t(i)]);
  for (std::int64_t i = 0; i < n; i += 997) {
    std::vector<double> work(std::size_t(est.workspace_size(d)));
    CounterRng<double> rng(7, std::uint64_t(i), 0, RngStream::divergence_probe);
    REQUIRE(est.estimate(model, p.data(), rng, work.data()) == first[std::size_t(i)]);
  }

  // Particles in any layout, and batches small enough for one scratch row a particle (no token).
  for (std::int64_t rows : {1, 2}) {
    Kokkos::View<double**, Kokkos::LayoutLeft, typename Exec::memory_space> left("left", rows, d);
    Kokkos::parallel_for(
        Kokkos::RangePolicy<Exec>(0, rows), KOKKOS_LAMBDA(const std::int64_t i) {
          for (int j = 0; j < d; ++j) left(i, j) = x(i, j);
        });
    const auto small = divergences<Exec>(est, model, left, 7);
    for (std::int64_t i = 0; i < rows; ++i) REQUIRE(small[std::size_t(i)] == first[std::size_t(i)]);
  }

  // Another seed, other probes.
  const auto second = divergences<Exec>(est, model, x, 8);
  std::int64_t same = 0;
  for (std::int64_t i = 0; i < n; ++i) same += first[std::size_t(i)] == second[std::size_t(i)];
  REQUIRE(same == 0);

  // Neighbouring particles (lag 1) and two seeds are uncorrelated: the sample correlation of n
  // independent pairs has SE 1/sqrt(n); require |r| < 4.5/sqrt(n).
  const Moments mo = moments_of(first), mo2 = moments_of(second);
  double lag = 0, cross = 0;
  for (std::int64_t i = 0; i + 1 < n; ++i)
    lag += (first[std::size_t(i)] - mo.mean) * (first[std::size_t(i + 1)] - mo.mean);
  for (std::int64_t i = 0; i < n; ++i)
    cross += (first[std::size_t(i)] - mo.mean) * (second[std::size_t(i)] - mo2.mean);
  const double r_lag = lag / (double(n - 1) * mo.var);
  const double r_cross = cross / (double(n - 1) * std::sqrt(mo.var * mo2.var));
  INFO("lag-1 correlation " << r_lag << ", across seeds " << r_cross);
  REQUIRE(std::abs(r_lag) < 4.5 / std::sqrt(double(n)));
  REQUIRE(std::abs(r_cross) < 4.5 / std::sqrt(double(n)));
}

TEST_CASE("Rademacher probes are fair, independent signs, also across 128-bit blocks", "[divergence]") {
  // 300 coordinates span three Philox blocks. Over N probes the mean of a coordinate has SE 1/sqrt(N) and
  // the correlation of two coordinates SE 1/sqrt(N); require 4.5 SE, for coordinates next to each other,
  // across a block boundary (127, 128) and from one probe to the next.
  const int d = 300, n = 20000;
  std::vector<std::vector<double>> v(n, std::vector<double>(d));
  for (int p = 0; p < n / 2; ++p) {  // two successive probes from each generator
    CounterRng<double> rng(5, std::uint64_t(p), 0, RngStream::divergence_probe);
    scorekit::RademacherProbe::draw(rng, d, v[std::size_t(2 * p)].data());
    scorekit::RademacherProbe::draw(rng, d, v[std::size_t(2 * p + 1)].data());
  }
  const double bound = 4.5 / std::sqrt(double(n));
  for (int j : {0, 31, 32, 127, 128, 255, 256, 299}) {
    double mean = 0;
    for (int i = 0; i < n; ++i) mean += v[std::size_t(i)][std::size_t(j)] / n;
    INFO("coordinate " << j);
    REQUIRE(std::abs(mean) < bound);
  }
  for (auto pair : {std::pair<int, int>{0, 1}, {31, 32}, {127, 128}, {255, 256}, {5, 133}}) {
    double c = 0;
    for (int i = 0; i < n; ++i)
      c += v[std::size_t(i)][std::size_t(pair.first)] * v[std::size_t(i)][std::size_t(pair.second)] / n;
    INFO("coordinates " << pair.first << ", " << pair.second);
    REQUIRE(std::abs(c) < bound);
  }
  double c = 0;  // probe 2k against probe 2k + 1 of one generator
  for (int i = 0; i + 1 < n; i += 2) c += v[std::size_t(i)][7] * v[std::size_t(i + 1)][7] / (n / 2);
  REQUIRE(std::abs(c) < 4.5 / std::sqrt(double(n / 2)));
}

TEMPLATE_LIST_TEST_CASE("A model's own workspace follows the estimator's and never overlaps it",
                        "[divergence]", Backends) {
  using Exec = TestType;
  const int d = 5;
  const std::int64_t n = 11;
  const auto x = make_points<double, Exec>(n, d, 1.0, 101);
  LinearModelWithWorkspace<double> with_ws{make_linear<double>(d, 102)};
  const auto& plain = with_ws.linear;
  REQUIRE(scorekit::divergence_workspace_size(scorekit::ExactTrace{}, with_ws) == 3 * d + 2 * d);
  REQUIRE(scorekit::divergence_workspace_size(scorekit::ExactTrace{}, plain) == 3 * d);
  const auto same = [&](const auto& est) {
    const auto a = divergences<Exec>(est, with_ws, x, 3);
    const auto b = divergences<Exec>(est, plain, x, 3);
    for (std::int64_t i = 0; i < n; ++i) {
      INFO("particle " << i);
      REQUIRE(a[std::size_t(i)] == b[std::size_t(i)]);
    }
  };
  same(scorekit::ExactTrace{});
  same(scorekit::Hutchinson<scorekit::RademacherProbe>(4));
  same(scorekit::FiniteDifferenceDivergence<scorekit::GaussianProbe>(4, 1e-2));
}

TEMPLATE_LIST_TEST_CASE("Bad input gets a clear exception", "[divergence]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  using Catch::Matchers::Contains;
  using scorekit::FiniteDifferenceDivergence;
  using scorekit::GaussianProbe;
  using scorekit::Hutchinson;
  CHECK_THROWS_AS(Hutchinson<GaussianProbe>(0), scorekit::invalid_argument);
  CHECK_THROWS_WITH(Hutchinson<GaussianProbe>(-3), Contains("number of probes must be at least 1, got -3"));
  CHECK_THROWS_WITH(FiniteDifferenceDivergence<GaussianProbe>(0, 0.1),
                    Contains("number of probes must be at least 1, got 0"));
  for (double h :
       {0.0, -0.1, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    INFO("h = " << h);
    CHECK_THROWS_AS(FiniteDifferenceDivergence<GaussianProbe>(2, h), scorekit::invalid_argument);
    CHECK_THROWS_WITH(FiniteDifferenceDivergence<GaussianProbe>(2, h),
                      Contains("FiniteDifferenceDivergence: the step h must be positive and finite"));
  }

  const int d = 3;
  const auto model = make_linear<double>(d, 111);
  const scorekit::ExactTrace exact;
  const auto x = make_points<double, Exec>(6, d, 1.0, 112);
  const auto wide = make_points<double, Exec>(6, d + 1, 1.0, 113);
  Kokkos::View<double*, Mem> out("out", 6), short_out("short", 5);
  CHECK_THROWS_AS(scorekit::estimate_divergence(Exec(), exact, model, wide, 1, out),
                  scorekit::dimension_mismatch);
  CHECK_THROWS_WITH(scorekit::estimate_divergence(Exec(), exact, model, wide, 1, out),
                    Contains("estimate_divergence: each particle has dimension 4, expected 3"));
  CHECK_THROWS_AS(scorekit::estimate_divergence<Exec>(exact, model, x, 1, short_out),
                  scorekit::dimension_mismatch);
  CHECK_THROWS_WITH(scorekit::estimate_divergence<Exec>(exact, model, x, 1, short_out),
                    Contains("out has 5 entries, expected 6"));

  auto h = Kokkos::create_mirror_view(x);
  Kokkos::deep_copy(h, x);
  h(4, 1) = std::numeric_limits<double>::quiet_NaN();
  h(5, 0) = std::numeric_limits<double>::infinity();
  Kokkos::deep_copy(x, h);
  CHECK_THROWS_WITH(scorekit::estimate_divergence<Exec>(exact, model, x, 1, out),
                    Contains("particle 4 has a NaN or infinite coordinate"));

  const auto big = make_points<double, Exec>(4, 1, 1.0, 114);
  scorekit_test::fill_host(big, [](std::size_t i, std::size_t) { return i >= 2 ? 10.0 : 0.5; });
  Kokkos::View<double*, Mem> out4("out4", 4);
  CHECK_THROWS_WITH(scorekit::estimate_divergence<Exec>(exact, OverflowingModel{}, big, 1, out4),
                    Contains("divergence estimate at particle 2 is NaN or infinite"));

  // An empty batch is fine.
  scorekit::ParticleView<double, Mem> none("none", 0, d);
  Kokkos::View<double*, Mem> out0("out0", 0);
  CHECK_NOTHROW(scorekit::estimate_divergence<Exec>(exact, model, none, 1, out0));
}
