// batched(model): any noise-conditional score model as a BatchScoreModel (core/batch_model.hpp), so that
// the samplers and integrators run it batch-synchronously. A model with a batched score of its own (one
// that is both kinds) is forwarded to it; a per-particle model is evaluated by one kernel over the batch,
// a sample a work item, with a workspace kept between calls (no allocation once the batch size is
// reached). The per-particle path therefore gives the same bits as the fused kernels, which the tests use
// to check that both paths step the same way.
#pragma once

#include <scorekit/core/batch_model.hpp>
#include <scorekit/core/traits.hpp>

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
      const int ws = workspace_size(m_model);
      if (std::int64_t(m_work.extent(0)) < n || int(m_work.extent(1)) < (ws > 0 ? ws : 1))
        m_work = Kokkos::View<value_type**, Kokkos::LayoutRight, MemorySpace>(
            Kokkos::view_alloc(std::string("scorekit::Batched::workspace"), Kokkos::WithoutInitializing), n,
            ws > 0 ? ws : 1);
      const auto model = m_model;
      const auto work = m_work;
      Kokkos::parallel_for(
          "scorekit::Batched::score", Kokkos::RangePolicy<ExecSpace>(exec, 0, n),
          KOKKOS_LAMBDA(const std::int64_t i) {
            noise_conditional_score(model, &x(i, 0), sigma(i), &out(i, 0), &work(i, 0));
          });
    }
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
