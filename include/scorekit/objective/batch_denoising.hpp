// Denoising score matching on the batched path (any BatchScoreModel, core/batch_model.hpp): per sample
// of a minibatch, a noise level, z ~ N(0, I), the model asked at y = x + sigma z, and the loss
//   weight / 2 * || s(y, sigma) + z / sigma ||^2,
// whose minimiser over s is the score of the data perturbed by N(0, sigma^2 I). Where sigma comes from
// is a policy (a NoiseDraw, device-callable, mapping one uniform u to the draw):
// - SigmaLadder: NCSN's multi-sigma objective (Song and Ermon 2019), a level uniform on a ladder,
//   weight sigma^power (power 2: NCSN's lambda = sigma^2; 0: unweighted; -2: inverse);
// - ContinuousTime<SDE>: score_sde's continuous-time objective (Song et al. 2021, eq. 7) for a noising
//   SDE (VE, VP, sub-VP): t uniform on [eps, T], x_t = a(t) x + s(t) z; the model is noise-conditional,
//   so it is asked at x_t / a = x + sigma z with sigma = s / a (sde/sde_common.hpp), and the weight is
//   lambda(t) = s(t)^2 (the marginal variance; in the variables of the model sigma^2), or, with
//   likelihood weighting, g(t)^2 (Song, Durkan, Murray and Ermon 2021), g(t)^2 / a(t)^2 in the model's
//   variables.
// The draws are those of the fused objective (objective/denoising.hpp): the minibatch index from
// CounterRng(seed, slot, step, RngStream::init), the level or time and then z from
// sample_rng(key, slot, TrainingStream::perturbation), so the same seed means the same noise on both
// paths.
#pragma once

#include <scorekit/core/batch_model.hpp>
#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/objective/objective_common.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace scorekit {
namespace objective {

/// One draw of a noise level: the model is asked at sigma; the data are scaled by `scale` (a(t)) only in
/// the SDE's variables, which the objective never needs (it works in the model's, x + sigma z).
template <class Real>
struct NoiseDrawResult {
  Real sigma = 1;
  Real weight = 1;
  int level = 0;  ///< the bin the loss is logged under
};

/// NCSN's ladder: a level uniform on 0 .. L-1, weight sigma^power.
template <class Real, class Mem>
class SigmaLadder {
 public:
  SigmaLadder(const std::vector<double>& sigmas, double power = 2) : power_(power) {
    if (sigmas.empty()) throw invalid_argument("scorekit::objective::SigmaLadder: the ladder is empty");
    for (double s : sigmas)
      if (!(s > 0) || !std::isfinite(s))
        throw invalid_argument(scorekit::detail::concat("scorekit::objective::SigmaLadder: noise level ", s,
                                                        "; every level must be finite and > 0"));
    if (!std::isfinite(power))
      throw invalid_argument("scorekit::objective::SigmaLadder: the weighting power must be finite");
    sigmas_ = Kokkos::View<Real*, Mem>("scorekit::objective::SigmaLadder::sigmas", sigmas.size());
    const auto h = Kokkos::create_mirror_view(sigmas_);
    for (std::size_t i = 0; i < sigmas.size(); ++i) h(i) = Real(sigmas[i]);
    Kokkos::deep_copy(sigmas_, h);
    min_ = *std::min_element(sigmas.begin(), sigmas.end());
    max_ = *std::max_element(sigmas.begin(), sigmas.end());
  }
  std::string name() const {
    return scorekit::detail::concat("multi-sigma DSM (", n_levels(), " levels, lambda = sigma^", power_, ")");
  }
  int n_levels() const { return int(sigmas_.extent(0)); }
  double sigma_min() const { return min_; }
  double sigma_max() const { return max_; }
  KOKKOS_INLINE_FUNCTION NoiseDrawResult<Real> operator()(Real u) const {
    const int n = int(sigmas_.extent(0));
    int l = int(u * Real(n));
    l = l < n ? l : n - 1;
    const Real s = sigmas_(l);
    return {s, power_ == 2 ? s * s : Real(math::exp(Real(power_) * math::log(s))), l};
  }

 private:
  // Copied into kernels: device-copyable members only (no std::vector).
  Kokkos::View<Real*, Mem> sigmas_;
  double min_ = 0, max_ = 0;
  double power_;
};

/// score_sde's continuous-time objective for a noising SDE (see the top of this file).
template <class SDE>
class ContinuousTime {
 public:
  using Real = typename SDE::value_type;
  ContinuousTime(const SDE& sde, double eps = 1e-5, bool likelihood_weighting = false)
      : sde_(sde), eps_(Real(eps)), likelihood_(likelihood_weighting) {
    if (!(eps > 0) || !(eps < double(sde.t_max())))
      throw invalid_argument(scorekit::detail::concat("scorekit::objective::ContinuousTime: eps (", eps,
                                                      ") must lie in (0, T = ", double(sde.t_max()), ")"));
  }
  std::string name() const {
    return likelihood_ ? "continuous-time DSM (likelihood weighting)"
                       : "continuous-time DSM (lambda = s(t)^2)";
  }
  int n_levels() const { return 1; }
  double sigma_min() const { return double(sde_.marginal(eps_).sigma()); }
  double sigma_max() const { return double(sde_.marginal(sde_.t_max()).sigma()); }
  KOKKOS_INLINE_FUNCTION NoiseDrawResult<Real> operator()(Real u) const {
    const Real t = eps_ + (sde_.t_max() - eps_) * u;
    const auto m = sde_.marginal(t);
    const Real sigma = m.std / m.scale;
    if (likelihood_) {
      const Real g = sde_.diffusion(t) / m.scale;
      return {sigma, g * g, 0};
    }
    return {sigma, sigma * sigma, 0};
  }

 private:
  SDE sde_;
  Real eps_;
  bool likelihood_;
};

/// The buffers of one minibatch: the perturbed samples y, their noise z, sigma, weight and level, the
/// per-sample losses and the adjoint of the model's output.
template <class Real, class Mem>
struct DenoisingBatch {
  BatchView<Real, Mem> y, z, dout;
  Kokkos::View<Real*, Mem> sigma, weight;
  Kokkos::View<double*, Mem> loss;
  Kokkos::View<int*, Mem> level;
  DenoisingBatch() = default;
  DenoisingBatch(int batch, int dim)
      : y("scorekit::objective::DenoisingBatch::y", std::size_t(batch), std::size_t(dim)),
        z("scorekit::objective::DenoisingBatch::z", std::size_t(batch), std::size_t(dim)),
        dout("scorekit::objective::DenoisingBatch::dout", std::size_t(batch), std::size_t(dim)),
        sigma("scorekit::objective::DenoisingBatch::sigma", std::size_t(batch)),
        weight("scorekit::objective::DenoisingBatch::weight", std::size_t(batch)),
        loss("scorekit::objective::DenoisingBatch::loss", std::size_t(batch)),
        level("scorekit::objective::DenoisingBatch::level", std::size_t(batch)) {}
  int size() const { return int(y.extent(0)); }
  /// Samples [first, last) of the minibatch: views of these buffers (a micro-batch of a step whose
  /// gradient is summed from chunks: train/batch_trainer.hpp).
  DenoisingBatch rows(int first, int last) const {
    const auto r = std::make_pair(std::size_t(first), std::size_t(last));
    DenoisingBatch b;
    b.y = Kokkos::subview(y, r, Kokkos::ALL);
    b.z = Kokkos::subview(z, r, Kokkos::ALL);
    b.dout = Kokkos::subview(dout, r, Kokkos::ALL);
    b.sigma = Kokkos::subview(sigma, r);
    b.weight = Kokkos::subview(weight, r);
    b.loss = Kokkos::subview(loss, r);
    b.level = Kokkos::subview(level, r);
    return b;
  }
};

/// Draws minibatch `step` from `data` (n x D) into b: sampled with replacement, each slot's level or
/// time and noise (see the top of this file).
template <class Exec, class Draw, class Real, class Mem>
void draw_denoising_batch(const Exec& exec, const Draw& draw, const ConstBatchView<Real, Mem>& data,
                          std::uint64_t seed, std::uint32_t step, const DenoisingBatch<Real, Mem>& b) {
  const int d = int(data.extent(1));
  const std::int64_t n_data = std::int64_t(data.extent(0));
  if (n_data == 0) throw invalid_argument("scorekit::objective::draw_denoising_batch: the dataset is empty");
  if (std::int64_t(b.y.extent(1)) != d)
    throw dimension_mismatch(
        scorekit::detail::concat("scorekit::objective::draw_denoising_batch: the data have ", d,
                                 " columns, the batch buffers ", b.y.extent(1)));
  const DenoisingBatch<Real, Mem> buf = b;
  const ConstBatchView<Real, Mem> x = data;
  Kokkos::parallel_for(
      "scorekit::objective::draw_denoising_batch", Kokkos::RangePolicy<Exec>(exec, 0, b.size()),
      KOKKOS_LAMBDA(const int i) {
        CounterRng<Real> pick(seed, std::uint64_t(i), step, RngStream::init);
        std::int64_t row = std::int64_t(pick.uniform() * Real(n_data));
        row = row < n_data ? row : n_data - 1;
        auto rng = sample_rng<Real>(SampleKey{seed, step, 0}, i, TrainingStream::perturbation);
        const NoiseDrawResult<Real> r = draw(rng.uniform());
        buf.sigma(i) = r.sigma;
        buf.weight(i) = r.weight;
        buf.level(i) = r.level;
        for (int j = 0; j < d; ++j) {
          const Real zj = rng.normal();
          buf.z(i, j) = zj;
          buf.y(i, j) = x(row, j) + r.sigma * zj;
        }
      });
}

/// With out = s(y, sigma) for the batch: each sample's loss (in double) and dout = d(mean loss) / d out,
/// the mean over `minibatch` samples (0: b's; b may be a micro-batch of a larger minibatch).
template <class Exec, class Real, class Mem>
void denoising_loss(const Exec& exec, const BatchView<Real, Mem>& out, const DenoisingBatch<Real, Mem>& b,
                    int minibatch = 0) {
  const int d = int(out.extent(1));
  const Real inv_batch = Real(1) / Real(minibatch > 0 ? minibatch : b.size());
  const DenoisingBatch<Real, Mem> buf = b;
  const BatchView<Real, Mem> o = out;
  Kokkos::parallel_for(
      "scorekit::objective::denoising_loss", Kokkos::RangePolicy<Exec>(exec, 0, b.size()),
      KOKKOS_LAMBDA(const int i) {
        const Real inv_sigma = Real(1) / buf.sigma(i), w = buf.weight(i);
        double sum = 0;
        for (int j = 0; j < d; ++j) {
          const Real r = o(i, j) + buf.z(i, j) * inv_sigma;
          sum += double(r) * double(r);
          buf.dout(i, j) = w * r * inv_batch;
        }
        buf.loss(i) = 0.5 * double(w) * sum;
      });
}

/// The per-sample denoising losses of minibatch `step` for any batch model (no gradient): what a trained
/// model scores, and, at an exact score, the objective's floor.
template <class Exec, class Model, class Draw, class Real, class Mem>
std::vector<double> evaluate_denoising(const Exec& exec, const Model& model, const Draw& draw,
                                       const ConstBatchView<Real, Mem>& data, std::uint64_t seed,
                                       std::uint32_t step, int batch) {
  if (batch < 1)
    throw invalid_argument("scorekit::objective::evaluate_denoising: the batch must hold a sample");
  DenoisingBatch<Real, Mem> b(batch, int(data.extent(1)));
  BatchView<Real, Mem> out("scorekit::objective::evaluate_denoising::out", std::size_t(batch),
                           data.extent(1));
  draw_denoising_batch(exec, draw, data, seed, step, b);
  model.score(exec, b.y, b.sigma, out);
  denoising_loss(exec, out, b);
  const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), b.loss);
  return std::vector<double>(h.data(), h.data() + h.extent(0));
}

}  // namespace objective
}  // namespace scorekit
