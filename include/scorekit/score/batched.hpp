// batched(model): any noise-conditional score model as a BatchScoreModel (core/batch_model.hpp), so that
// the samplers and integrators run it batch-synchronously. A model with a batched score of its own (one
// that is both kinds) is forwarded to it; a per-particle model is evaluated by one kernel over the batch,
// a sample a work item, with a workspace kept between calls (no allocation once the batch size is
// reached). The per-particle path therefore gives the same bits as the fused kernels, which the tests use
// to check that both paths step the same way.
#pragma once

#include <scorekit/core/batch_model.hpp>
#include <scorekit/core/traits.hpp>
#include <scorekit/divergence/model_traits.hpp>

#include <string>

namespace scorekit {

template <class Model, class MemorySpace = detail::memory_space_of_t<Model>>
class Batched {
 public:
  using value_type = typename Model::value_type;
  using memory_space = MemorySpace;
  using model_type = Model;

  explicit Batched(const Model& model) : m_model(model), m_dim(model.dim()) {
    static_assert(is_noise_conditional_score_v<Model> || is_batch_score_model_v<Model>,
                  "scorekit::batched needs a noise-conditional score model (core/traits.hpp) or a batch "
                  "score model (core/batch_model.hpp)");
  }

  KOKKOS_INLINE_FUNCTION int dim() const { return m_dim; }
  const Model& model() const { return m_model; }

  /// out(n, :) = s(x(n, :), sigma(n)) for every sample n.
  template <class ExecSpace>
  void score(const ExecSpace& exec, const ConstBatchView<value_type, MemorySpace>& x,
             const NoiseLevels<value_type, MemorySpace>& sigma,
             const BatchView<value_type, MemorySpace>& out) const {
    const char* where = "scorekit::Batched::score";
    detail::check_batch_shapes(x, sigma, out, m_dim, where);
    if constexpr (is_batch_score_model_v<Model>) {
      m_model.score(exec, x, sigma, out);
    } else {
      const std::int64_t n = std::int64_t(x.extent(0));
      reserve(n);
      const auto model = m_model;
      const auto work = m_work;
      Kokkos::parallel_for(
          "scorekit::Batched::score", Kokkos::RangePolicy<ExecSpace>(exec, 0, n),
          KOKKOS_LAMBDA(const std::int64_t i) {
            noise_conditional_score(model, &x(i, 0), sigma(i), &out(i, 0), &work(i, 0));
          });
    }
  }

  /// s(n, :) = the score and out(n, :) = (d s / d x) v(n, :): the per-particle model's jvp(x, sigma, v, s,
  /// jv[, work]) in one kernel, or a batch model's own jvp.
  template <class ExecSpace, class M = Model,
            std::enable_if_t<has_noise_conditional_jvp_v<M> || has_batch_jvp_v<M>, int> = 0>
  void jvp(const ExecSpace& exec, const ConstBatchView<value_type, MemorySpace>& x,
           const NoiseLevels<value_type, MemorySpace>& sigma,
           const ConstBatchView<value_type, MemorySpace>& v, const BatchView<value_type, MemorySpace>& s,
           const BatchView<value_type, MemorySpace>& out) const {
    const char* where = "scorekit::Batched::jvp";
    detail::check_batch_shapes(x, sigma, out, m_dim, where);
    detail::check_batch_shapes(v, sigma, s, m_dim, where);
    if constexpr (has_batch_jvp_v<Model>)
      m_model.jvp(exec, x, sigma, v, s, out);
    else
      per_particle_jvp(exec, x, sigma, v, s, out);
  }

  /// A batch model's own vjp (see core/batch_model.hpp).
  template <class ExecSpace, class M = Model, std::enable_if_t<has_batch_vjp_v<M>, int> = 0>
  void vjp(const ExecSpace& exec, const ConstBatchView<value_type, MemorySpace>& x,
           const NoiseLevels<value_type, MemorySpace>& sigma,
           const ConstBatchView<value_type, MemorySpace>& v, const BatchView<value_type, MemorySpace>& s,
           const BatchView<value_type, MemorySpace>& out) const {
    m_model.vjp(exec, x, sigma, v, s, out);
  }

  // Public only because nvcc rejects device lambdas in private members (and in members constrained by
  // enable_if, whose launch stubs it cannot name).

  /// jvp's kernel for a per-particle model: one work item a sample.
  template <class ExecSpace>
  void per_particle_jvp(const ExecSpace& exec, const ConstBatchView<value_type, MemorySpace>& x,
                        const NoiseLevels<value_type, MemorySpace>& sigma,
                        const ConstBatchView<value_type, MemorySpace>& v,
                        const BatchView<value_type, MemorySpace>& s,
                        const BatchView<value_type, MemorySpace>& out) const {
    const std::int64_t n = std::int64_t(x.extent(0));
    reserve(n);
    const auto model = m_model;
    const auto work = m_work;
    Kokkos::parallel_for(
        "scorekit::Batched::jvp", Kokkos::RangePolicy<ExecSpace>(exec, 0, n),
        KOKKOS_LAMBDA(const std::int64_t i) {
          noise_conditional_jvp(model, &x(i, 0), sigma(i), &v(i, 0), &s(i, 0), &out(i, 0), &work(i, 0));
        });
  }

  /// Grows the per-particle workspaces to n samples.
  void reserve(std::int64_t n) const {
    const int ws = workspace_size(m_model);
    if (std::int64_t(m_work.extent(0)) < n || int(m_work.extent(1)) < (ws > 0 ? ws : 1))
      m_work = Kokkos::View<value_type**, Kokkos::LayoutRight, MemorySpace>(
          Kokkos::view_alloc(std::string("scorekit::Batched::workspace"), Kokkos::WithoutInitializing), n,
          ws > 0 ? ws : 1);
  }

 private:
  Model m_model;
  int m_dim;
  // The per-particle workspaces, grown to the largest batch seen. Not safe for calls from two host
  // threads at once.
  mutable Kokkos::View<value_type**, Kokkos::LayoutRight, MemorySpace> m_work;
};

/// model as a BatchScoreModel (see Batched).
template <class Model>
Batched<Model> batched(const Model& model) {
  return Batched<Model>(model);
}

}  // namespace scorekit
