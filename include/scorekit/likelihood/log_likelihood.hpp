// Exact log-likelihoods through the probability-flow ODE (Song et al. 2021, "Score-based generative
// modeling through stochastic differential equations", section 4.3 and appendix D.2), by the
// instantaneous change of variables of Chen, Rubanova, Bettencourt and Duvenaud, "Neural ordinary
// differential equations", NeurIPS 2018, theorem 1: along a solution of dx/dt = f~(x, t),
//   d/dt log p_t(x(t)) = -div f~(x(t), t).
// So the augmented ODE
//   dx/dt = f~(x, t),   d delta/dt = div f~(x, t),   x(eps) = the data point, delta(eps) = 0,
// integrated from t = eps to T gives
//   log p_eps(x) = log p_T(x(T)) + delta(T),
// with p_T replaced by the prior N(0, prior_std^2 I) of the SDE (or any normalised density, e.g. the exact
// p_T of Gaussian-mixture data in tests). eps > 0 (score_sde: 1e-5) keeps the score finite: the result
// is the density of the data perturbed to time eps, not of the data itself.
//
// The divergence comes from any estimator of divergence/ (ExactTrace: d forward-mode products, or the
// model's analytic divergence; Hutchinson<GaussianProbe or RademacherProbe>(M): unbiased). As in FFJORD
// (Grathwohl et al., ICLR 2019) and score_sde, a Hutchinson probe is FIXED over the whole solve: particle i
// redraws it at every evaluation from CounterRng(seed, i, 0, RngStream::divergence_probe), the generator
// estimate_divergence uses. Then delta(T) = int v^T J(x(t), t) v dt along a path x(t) that does not
// depend on v, so E_v[delta(T)] is the exact-trace delta(T): the log-likelihood estimate is unbiased.
//
// Each data point is its own adaptive ODE (integrate/dormand_prince.hpp) on the state (x, delta) of
// length d + 1, tolerances applied to every component as in score_sde's solve_ivp call; all points run
// in one kernel, each bitwise independent of the backend and the thread count.
#pragma once

#include <scorekit/core/batch_model.hpp>
#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/particle_checks.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/core/traits.hpp>
#include <scorekit/core/views.hpp>
#include <scorekit/divergence/estimate_divergence.hpp>
#include <scorekit/divergence/exact_trace.hpp>
#include <scorekit/integrate/batch_replay.hpp>
#include <scorekit/integrate/dormand_prince.hpp>
#include <scorekit/likelihood/flow_divergence.hpp>
#include <scorekit/sde/sde_common.hpp>

#include <cmath>
#include <cstdint>
#include <type_traits>

namespace scorekit {

/// The settings of a likelihood run: the start time eps, the ODE tolerances (score_sde's defaults
/// rtol = atol = 1e-5, eps = 1e-5), the divergence estimator and the seed of its probes.
template <class Estimator = ExactTrace>
struct LikelihoodSettings {
  double t_eps = 1e-5;
  DormandPrinceSettings ode{};
  Estimator estimator{};
  std::uint64_t seed = 0;
  /// The global index of row 0 of x: point i draws its probes as point first_particle + i would, so a
  /// shard of a larger run (distributed/) gives bitwise the same answers as that run.
  std::uint64_t first_particle = 0;
};

/// N(0, std^2 I) in dimension d, normalised: the prior of a noising SDE.
template <class Real>
struct IsotropicGaussianPrior {
  using value_type = Real;
  int d = 1;
  Real std = 1;

  KOKKOS_INLINE_FUNCTION int dim() const { return d; }
  KOKKOS_INLINE_FUNCTION Real log_prob(const Real* x) const {
    Real r2 = 0;
    for (int j = 0; j < d; ++j) r2 += x[j] * x[j];
    return Real(-0.5) * (r2 / (std * std) + Real(d) * math::log(Real(2) * math::pi<Real>() * std * std));
  }
};

/// Per data point: log p_eps(x) = prior_log_p + delta, its two terms, and the latent x(T); plus the cost,
/// where a function evaluation is one right-hand side of the augmented ODE: one drift (a score call) and
/// one divergence estimate (ExactTrace: the model's analytic divergence, or d JVPs; Hutchinson: M JVPs).
template <class Real, class MemorySpace>
struct LikelihoodResult : OdeStatistics {
  Kokkos::View<Real*, MemorySpace> log_p;                ///< log p_eps(x_i)
  Kokkos::View<Real*, MemorySpace> prior_log_p;          ///< log prior(x_i(T))
  Kokkos::View<Real*, MemorySpace> delta;                ///< int_eps^T div f~(x_i(t), t) dt
  ParticleView<Real, MemorySpace> latent;                ///< x_i(T)
  Kokkos::View<std::int64_t*, MemorySpace> evaluations;  ///< ODE right-hand sides of each point
};

namespace detail {

/// The right-hand side of the augmented ODE on (x, delta) for particle i.
template <class SDE, class Model, class Estimator>
struct LikelihoodRhs {
  using Real = typename Model::value_type;
  const SDE& sde;
  const Model& model;
  const Estimator& estimator;
  int d;
  int estimator_ws;
  std::uint64_t seed;
  std::uint64_t particle;
  Real* work;

  KOKKOS_INLINE_FUNCTION void operator()(Real t, const Real* y, Real* dydt) const {
    const ProbabilityFlowAtTime<SDE, Model> flow(sde, model, d, t);
    flow.score(y, dydt, work + estimator_ws);
    // A fresh generator each time: the same probes at every evaluation of the solve.
    CounterRng<Real> rng(seed, particle, 0, RngStream::divergence_probe);
    dydt[d] = estimator.estimate(flow, d, y, rng, work);
  }
};

/// ask of solve_replayed for the likelihood: a score, or the product the estimator asks for (the model's
/// jvp, else its vjp). A named type: nvcc takes no function-local type as a template argument of a
/// function with device lambdas.
template <class ExecSpace, class Model>
struct LikelihoodAsk {
  ExecSpace exec;
  const Model& model;
  template <class Real, class Mem>
  void operator()(int kind, const ReplayBuffers<Real, Mem>& b, const BatchView<Real, Mem>& s,
                  const BatchView<Real, Mem>& jv) const {
    const ConstBatchView<Real, Mem> q(b.query);
    const NoiseLevels<Real, Mem> sigma(b.query_sigma);
    if (kind == 0) {
      model.score(exec, q, sigma, s);
    } else if constexpr (has_batch_jvp_v<Model>) {
      model.jvp(exec, q, sigma, ConstBatchView<Real, Mem>(b.query_v), s, jv);
    } else if constexpr (has_batch_vjp_v<Model>) {
      model.vjp(exec, q, sigma, ConstBatchView<Real, Mem>(b.query_v), s, jv);
    }
  }
};

/// with_rhs of solve_replayed (integrate/dormand_prince.hpp) for the likelihood: LikelihoodRhs around the
/// replay of a batch model.
template <class SDE, class Estimator>
struct LikelihoodWithReplay {
  SDE sde;
  Estimator estimator;
  int d;
  int estimator_ws;
  std::uint64_t seed;
  std::uint64_t first;  ///< the global index of row 0
  template <class Replay, class Real, class F>
  KOKKOS_INLINE_FUNCTION int operator()(const Replay& replay, std::int64_t i, Real* work, const F& f) const {
    const Replay model = replay;
    f(LikelihoodRhs<SDE, Replay, Estimator>{sde, model, estimator, d, estimator_ws, seed,
                                            first + std::uint64_t(i), work});
    return model.calls();
  }
};

/// The per-point outputs of a run, and how a point's final augmented state y = (x(T), delta) fills them:
/// one definition for the fused and the batched path.
template <class Real, class Mem>
struct LikelihoodOutputs {
  Kokkos::View<Real*, Mem> log_p, prior_log_p, delta;
  ParticleView<Real, Mem> latent;

  LikelihoodOutputs(std::int64_t n, int d)
      : log_p("scorekit::log_likelihood::log_p", n),
        prior_log_p("scorekit::log_likelihood::prior_log_p", n),
        delta("scorekit::log_likelihood::delta", n),
        latent("scorekit::log_likelihood::latent", n, d) {}

  template <class Prior>
  KOKKOS_INLINE_FUNCTION void store(std::int64_t i, const Real* y, int d, const Prior& prior,
                                    Real* work) const {
    for (int j = 0; j < d; ++j) latent(i, j) = y[j];
    const Real lp = log_prob(prior, y, work);
    prior_log_p(i) = lp;
    delta(i) = y[d];
    log_p(i) = lp + y[d];
  }

  void into(LikelihoodResult<Real, Mem>& r) const {
    r.log_p = log_p;
    r.prior_log_p = prior_log_p;
    r.delta = delta;
    r.latent = latent;
  }
};

/// log_likelihood's kernel for a per-particle model: every point's whole solve in one work item.
template <class ExecSpace, class SDE, class Model, class View, class Estimator, class Prior>
LikelihoodResult<typename Model::value_type, typename ExecSpace::memory_space> log_likelihood_fused(
    const ExecSpace& exec, const SDE& sde, const Model& model, const View& x,
    const LikelihoodSettings<Estimator>& settings, const Prior& prior, const char* where) {
  using Real = typename Model::value_type;
  using Mem = typename ExecSpace::memory_space;
  using Flow = ProbabilityFlowAtTime<SDE, Model>;
  const double t_max = double(sde.t_max());
  const double t_eps = settings.t_eps;
  const int d = model.dim();
  const std::int64_t n = std::int64_t(x.extent(0));
  const Estimator estimator = settings.estimator;
  const int m = d + 1;
  const int estimator_ws = estimator.workspace_size(d);
  const Flow sizing(sde, model, d, Real(t_eps));
  int work_size = estimator_ws + sizing.workspace_size();
  if (workspace_size(prior) > work_size) work_size = workspace_size(prior);
  const int width = m + detail::dormand_prince_scratch_size(m) + work_size;
  auto scratch = detail::make_scratch<Real, Mem>(n, width, where, "::scratch");

  const LikelihoodOutputs<Real, Mem> outputs(n, d);
  detail::OdeAccounts<Real, Mem> accounts(n, where);
  NonFiniteFlag<Mem> bad(n);
  const auto control = detail::dormand_prince_control<Real>(settings.ode);
  const Real t0 = Real(t_eps), t1 = Real(t_max);
  const std::uint64_t seed = settings.seed, first = settings.first_particle;

  ScopedRegion region(where);
  Kokkos::Timer timer;
  Kokkos::parallel_for(
      "scorekit::log_likelihood", Kokkos::RangePolicy<ExecSpace>(exec, 0, n),
      KOKKOS_LAMBDA(const std::int64_t i) {
        Real* y = &scratch(i, 0);
        Real* ode_scratch = y + m;
        Real* work = ode_scratch + detail::dormand_prince_scratch_size(m);
        for (int j = 0; j < d; ++j) y[j] = x(i, j);
        y[d] = 0;
        const detail::LikelihoodRhs<SDE, Model, Estimator> rhs{
            sde, model, estimator, d, estimator_ws, seed, first + std::uint64_t(i), work};
        const auto st = detail::dormand_prince_solve(rhs, y, m, t0, t1, control, ode_scratch);
        accounts.store(i, st);
        if (st.status == detail::OdeStatus::non_finite) bad.record(i, st.accepted + st.rejected);
        outputs.store(i, y, d, prior, work);
      });
  exec.fence();
  const double seconds = timer.seconds();
  LikelihoodResult<Real, Mem> result;
  outputs.into(result);
  static_cast<OdeStatistics&>(result) = accounts.finish(bad, where, t_eps, t_max, settings.ode);
  result.seconds = seconds;
  result.evaluations = accounts.evaluations;
  return result;
}

/// log_likelihood for a batch model (core/batch_model.hpp): the same right-hand side, LikelihoodRhs, each
/// point its own adaptive solve, replayed through solve_replayed (integrate/dormand_prince.hpp) so that
/// every model evaluation of a round is one batched call: the score, or the product the estimator asks for
/// (the model's jvp, else its vjp, which serves every trace estimator alike: core/batch_model.hpp).
template <class ExecSpace, class SDE, class Model, class View, class Estimator, class Prior>
LikelihoodResult<typename Model::value_type, typename ExecSpace::memory_space> log_likelihood_batched(
    const ExecSpace& exec, const SDE& sde, const Model& model, const View& x,
    const LikelihoodSettings<Estimator>& settings, const Prior& prior, const char* where) {
  using Real = typename Model::value_type;
  using Mem = typename ExecSpace::memory_space;
  using Replay = ReplayModel<Real, Mem>;
  static_assert(std::is_same<typename Model::memory_space, Mem>::value,
                "scorekit::log_likelihood: the batch model's memory_space must be the execution space's "
                "(batched(model) takes it from the model, or the default execution space's)");
  const int d = model.dim();
  const int m = d + 1;
  const std::int64_t n = std::int64_t(x.extent(0));
  const Estimator estimator = settings.estimator;
  const int estimator_ws = estimator.workspace_size(d);
  const ProbabilityFlowAtTime<SDE, Replay> sizing(sde, Replay(nullptr, 0, 0, d), d, Real(settings.t_eps));
  const int rhs_ws = estimator_ws + sizing.workspace_size();
  const int prior_ws = workspace_size(prior);
  // The augmented states (x, delta), a row each.
  const auto y = make_scratch<Real, Mem>(n, m, where, "::states");
  Kokkos::parallel_for(
      "scorekit::log_likelihood::start", Kokkos::RangePolicy<ExecSpace>(exec, 0, n),
      KOKKOS_LAMBDA(const std::int64_t i) {
        for (int j = 0; j < d; ++j) y(i, j) = x(i, j);
        y(i, d) = 0;
      });
  const LikelihoodAsk<ExecSpace, Model> ask{exec, model};
  const LikelihoodWithReplay<SDE, Estimator> with_rhs{sde,          estimator,     d,
                                                      estimator_ws, settings.seed, settings.first_particle};
  OdeAccounts<Real, Mem> accounts(n, where);
  LikelihoodResult<Real, Mem> result;
  static_cast<OdeStatistics&>(result) = solve_replayed(exec, d, with_rhs, rhs_ws, ask, y, settings.t_eps,
                                                       double(sde.t_max()), settings.ode, accounts, where);
  result.evaluations = accounts.evaluations;
  const LikelihoodOutputs<Real, Mem> outputs(n, d);
  outputs.into(result);
  const auto work = make_scratch<Real, Mem>(n, prior_ws, where, "::prior_workspace");
  Kokkos::parallel_for(
      "scorekit::log_likelihood::finish", Kokkos::RangePolicy<ExecSpace>(exec, 0, n),
      KOKKOS_LAMBDA(const std::int64_t i) { outputs.store(i, &y(i, 0), d, prior, &work(i, 0)); });
  exec.fence();
  return result;
}

}  // namespace detail

/// log p_eps(x_i) for every row of x (N x d, any layout, not modified) under the probability-flow ODE of
/// `sde` with the noise-conditional score model `model`, with log p_T replaced by `prior` (any normalised
/// density with log_prob(x[, work]) and dim(): IsotropicGaussianPrior{d, sde.prior_std()} in the overload
/// without it). Throws invalid_argument for t_eps outside (0, T), bad ODE settings, x with the wrong
/// number of columns (dimension_mismatch) or a NaN or infinite coordinate (naming the particle), and
/// whatever solve_ode throws when the ODE fails (non_finite_error, max_steps). A batch model
/// (core/batch_model.hpp) runs on the batched path: every model evaluation of a round of steps is one
/// batched call, with the same steps and probes as the fused kernel.
template <class ExecSpace, class SDE, class Model, class View, class Estimator, class Prior>
LikelihoodResult<typename Model::value_type, typename ExecSpace::memory_space> log_likelihood(
    const ExecSpace& exec, const SDE& sde, const Model& model, const View& x,
    const LikelihoodSettings<Estimator>& settings, const Prior& prior) {
  using Real = typename Model::value_type;
  assert_noising_sde<SDE>();
  constexpr bool batch = is_batch_only_v<Model>;
  if constexpr (!batch) assert_noise_conditional_score<Model>();
  static_assert(std::is_same<typename SDE::value_type, Real>::value,
                "scorekit::log_likelihood: the SDE and the score model must have the same value_type");
  static_assert(is_divergence_estimator_v<Estimator>,
                "scorekit::log_likelihood: the estimator needs the members of divergence/exact_trace.hpp");
  constexpr bool exact = std::is_same<Estimator, ExactTrace>::value;
  constexpr bool batch_products = has_batch_jvp_v<Model> || has_batch_vjp_v<Model>;
  static_assert(!batch || batch_products || !(exact || Estimator::uses_jvp),
                "scorekit::log_likelihood: this divergence estimator needs a batch model with `jvp(exec, x, "
                "sigma, v, s, out)` or `vjp(exec, x, sigma, v, s, out)` (see core/batch_model.hpp)");
  static_assert(
      batch || !exact || has_noise_conditional_jvp_v<Model> || has_noise_conditional_divergence_v<Model>,
      "scorekit::log_likelihood with ExactTrace needs a model with `divergence(x, sigma[, work])` or "
      "`jvp(x, sigma, v, s, jv[, work])` (see likelihood/flow_divergence.hpp)");
  static_assert(batch || exact || !Estimator::uses_jvp || has_noise_conditional_jvp_v<Model>,
                "scorekit::log_likelihood: this divergence estimator needs a model with `jvp(x, sigma, v, s, "
                "jv[, work])` (see likelihood/flow_divergence.hpp)");
  static_assert(
      policy_traits<Prior>::has_log_prob,
      "scorekit::log_likelihood: the prior needs `KOKKOS_INLINE_FUNCTION value_type log_prob(const "
      "value_type* x) const` (with a trailing `value_type* work` when it declares workspace_size())");
  static_assert(std::is_same<typename Prior::value_type, Real>::value,
                "scorekit::log_likelihood: the prior must have the model's value_type");
  detail::check_particle_view<ExecSpace, View>();
  static_assert(std::is_same<typename View::non_const_value_type, Real>::value,
                "scorekit::log_likelihood: the data's scalar type must be the model's value_type");

  const char* where = "scorekit::log_likelihood";
  const double t_max = double(sde.t_max());
  const double t_eps = settings.t_eps;
  if (!(t_eps > 0) || !(t_eps < t_max))
    throw invalid_argument(
        detail::concat(where, ": t_eps must lie strictly between 0 and T = ", t_max, ", got ", t_eps));
  detail::check_dormand_prince_settings(settings.ode, where);
  const int d = model.dim();
  require_dimension(std::int64_t(x.extent(1)), d, "each data point", where);
  require_dimension(prior.dim(), d, "the prior", where);
  const std::int64_t n = std::int64_t(x.extent(0));
  if (n == 0) throw invalid_argument(detail::concat(where, ": no data points"));
  if (n >= (std::int64_t(1) << 32))
    throw invalid_argument(detail::concat(where, ": at most 2^32 - 1 data points, got ", n));
  detail::require_finite_particles(exec, x, where);
  if constexpr (is_batch_only_v<Model>)
    return detail::log_likelihood_batched(exec, sde, model, x, settings, prior, where);
  else
    return detail::log_likelihood_fused(exec, sde, model, x, settings, prior, where);
}

/// log_likelihood with the SDE's prior N(0, prior_std^2 I).
template <class ExecSpace, class SDE, class Model, class View, class Estimator = ExactTrace>
LikelihoodResult<typename Model::value_type, typename ExecSpace::memory_space> log_likelihood(
    const ExecSpace& exec, const SDE& sde, const Model& model, const View& x,
    const LikelihoodSettings<Estimator>& settings = {}) {
  using Real = typename Model::value_type;
  return log_likelihood(exec, sde, model, x, settings,
                        IsotropicGaussianPrior<Real>{model.dim(), Real(sde.prior_std())});
}

}  // namespace scorekit
