// The reverse-time SDE and the probability-flow ODE of a noising SDE with a score model (Song et al.
// 2021, eqs. 6 and 13):
//   reverse SDE:       dx = [f(t) x - g(t)^2 grad log p_t(x)] dt + g(t) dW-bar   (t running from T to 0)
//   probability flow:  dx = [f(t) x - g(t)^2 grad log p_t(x) / 2] dt
// Both are DriftDiffusion systems (see sde/langevin.hpp) written in forward time: an integrator runs them
// backwards by stepping from t to t' < t. The score comes from any noise-conditional model through
// score_at_time (sde/sde_common.hpp), so a guided or conditioned model (guidance/) plugs in unchanged.
#pragma once

#include <scorekit/core/batch_model.hpp>
#include <scorekit/sde/sde_common.hpp>

namespace scorekit {
namespace detail {

/// Selects the constructors that rebuild a system around another model inside a kernel (with_model).
struct rebind_model_tag {};

/// What ReverseSDE and ProbabilityFlowODE share: the SDE, the model and the drift with a factor on g^2 s.
template <class SDE, class Model>
class ScoreDrivenDrift {
 public:
  using value_type = typename Model::value_type;
  using sde_type = SDE;
  using model_type = Model;

  ScoreDrivenDrift(const SDE& sde, const Model& model, value_type score_factor)
      : m_sde(sde), m_model(model), m_dim(model.dim()), m_factor(score_factor) {
    assert_noising_sde<SDE>();
    // A batch model (core/batch_model.hpp) makes integrate() run batch-synchronously; drift() is then
    // called only on the system with_model() rebuilds around each particle's view of the batch.
    if constexpr (!is_batch_only_v<Model>) assert_noise_conditional_score<Model>();
    static_assert(std::is_same<typename SDE::value_type, value_type>::value,
                  "scorekit: the SDE and the score model must have the same value_type");
  }

  KOKKOS_INLINE_FUNCTION ScoreDrivenDrift(rebind_model_tag, const SDE& sde, const Model& model,
                                          value_type score_factor)
      : m_sde(sde), m_model(model), m_dim(model.dim()), m_factor(score_factor) {}

  KOKKOS_INLINE_FUNCTION int dim() const { return m_dim; }
  KOKKOS_INLINE_FUNCTION int workspace_size() const { return time_score_workspace_size(m_model); }
  KOKKOS_INLINE_FUNCTION const SDE& sde() const { return m_sde; }
  KOKKOS_INLINE_FUNCTION const Model& model() const { return m_model; }

  /// f(t) x - factor g(t)^2 grad log p_t(x): drift_block() of one particle.
  KOKKOS_INLINE_FUNCTION void drift(const value_type* x, value_type t, value_type* out,
                                    value_type* work) const {
    drift_block(1, x, m_dim, t, out, m_dim, work, 0);
  }

  /// The most particles drift_block() takes at once, and the block it makes faster (the model's, when
  /// it has score_block(): see core/traits.hpp; else 1).
  static constexpr int max_block = detail::model_max_block<Model>();
  KOKKOS_INLINE_FUNCTION int block_size() const {
    if constexpr (policy_traits<Model>::has_score_block)
      return m_model.block_size();
    else
      return 1;
  }

  /// drift() of nb <= max_block particles at one time t: particle b at x + b x_stride, its drift to
  /// out + b out_stride, its workspace at work + b work_stride (work_stride >= workspace_size(); the
  /// block's workspaces one span, as score_block wants). The SDE's coefficients at t are computed once
  /// for the block, and the scores come from one score_block() call when the model has one and the
  /// kernel's scale a(t) is 1 (VE; for a(t) != 1 the model is asked particle by particle at x / a(t)). A
  /// particle's drift is the bits drift() gives it, provided the model's score_block() gives a particle
  /// the bits of its score() (drift() is a block of one).
  KOKKOS_INLINE_FUNCTION void drift_block(int nb, const value_type* x, int x_stride, value_type t,
                                          value_type* out, int out_stride, value_type* work,
                                          int work_stride) const {
    score_block_at_marginal(m_model, nb, m_dim, x, x_stride, m_sde.marginal(t), out, out_stride, work,
                            work_stride);
    const value_type f = m_sde.drift_coefficient(t), g = m_sde.diffusion(t);
    const value_type c = -m_factor * g * g;
    detail::for_each_coordinate(nb, m_dim, x_stride, out_stride,
                                [&](int i, int k) { out[k] = combined(x[i], f, c, out[k]); });
  }

 protected:
  /// f x + c s: a coordinate of the drift from the score's, s.
  KOKKOS_FORCEINLINE_FUNCTION static value_type combined(value_type x, value_type f, value_type c,
                                                         value_type s) {
    return f * x + c * s;
  }

  SDE m_sde;
  Model m_model;
  int m_dim;
  value_type m_factor;
};

}  // namespace detail

/// The reverse-time SDE: drift f x - g^2 s, diffusion g.
template <class SDE, class Model>
class ReverseSDE : public detail::ScoreDrivenDrift<SDE, Model> {
 public:
  using value_type = typename Model::value_type;
  ReverseSDE(const SDE& sde, const Model& model) : detail::ScoreDrivenDrift<SDE, Model>(sde, model, 1) {}
  KOKKOS_INLINE_FUNCTION ReverseSDE(detail::rebind_model_tag tag, const SDE& sde, const Model& model)
      : detail::ScoreDrivenDrift<SDE, Model>(tag, sde, model, 1) {}
  KOKKOS_INLINE_FUNCTION value_type diffusion(value_type t) const { return this->m_sde.diffusion(t); }
  /// The same system around another model (callable in kernels; no checks).
  template <class Other>
  KOKKOS_INLINE_FUNCTION ReverseSDE<SDE, Other> with_model(const Other& other) const {
    return ReverseSDE<SDE, Other>(detail::rebind_model_tag{}, this->m_sde, other);
  }
};

/// The probability-flow ODE: drift f x - g^2 s / 2, no noise. Its solution has the marginals p_t of the
/// SDE, so integrating it from the prior gives samples and, with the divergence of the drift, exact
/// likelihoods (likelihood/).
template <class SDE, class Model>
class ProbabilityFlowODE : public detail::ScoreDrivenDrift<SDE, Model> {
 public:
  using value_type = typename Model::value_type;
  ProbabilityFlowODE(const SDE& sde, const Model& model)
      : detail::ScoreDrivenDrift<SDE, Model>(sde, model, value_type(0.5)) {}
  KOKKOS_INLINE_FUNCTION ProbabilityFlowODE(detail::rebind_model_tag tag, const SDE& sde, const Model& model)
      : detail::ScoreDrivenDrift<SDE, Model>(tag, sde, model, value_type(0.5)) {}
  KOKKOS_INLINE_FUNCTION value_type diffusion(value_type) const { return value_type(0); }
  /// The same system around another model (callable in kernels; no checks).
  template <class Other>
  KOKKOS_INLINE_FUNCTION ProbabilityFlowODE<SDE, Other> with_model(const Other& other) const {
    return ProbabilityFlowODE<SDE, Other>(detail::rebind_model_tag{}, this->m_sde, other);
  }
};

template <class SDE, class Model>
ReverseSDE<SDE, Model> reverse_sde(const SDE& sde, const Model& model) {
  return ReverseSDE<SDE, Model>(sde, model);
}
template <class SDE, class Model>
ProbabilityFlowODE<SDE, Model> probability_flow(const SDE& sde, const Model& model) {
  return ProbabilityFlowODE<SDE, Model>(sde, model);
}

}  // namespace scorekit
