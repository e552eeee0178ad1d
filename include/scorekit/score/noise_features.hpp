// How a network over images is told the noise level of each sample, and the checks of a noised batch:
// shared by the score network (score/image_score.hpp), the noise-conditional classifier of classifier
// guidance (score/image_classifier.hpp) and its trainer (train/classifier_trainer.hpp), so that a level
// becomes the same features everywhere.
// - FourierFeatures: Gaussian Fourier features of log sigma (score_sde; Tancik et al. 2020),
//   e_j = sin(2 pi w_j log sigma), e_{j + F/2} = cos(2 pi w_j log sigma), with fixed w_j = scale z_j,
//   z_j ~ N(0, 1) from CounterRng(seed, j, 0, RngStream::init).
// - detail::level_of: the index of a level of a ladder (NCSN's one-hot conditioning).
// - detail::find_bad_samples: the first sample with a non-finite entry, and the first whose noise level is
//   outside [lo, hi] or, with a ladder, not one of its levels, found on the device.
#pragma once

#include <scorekit/core/batch_model.hpp>
#include <scorekit/core/elementary.hpp>
#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/random.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace scorekit {

template <class Real, class MemorySpace>
class FourierFeatures {
 public:
  using features_type = Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace>;

  FourierFeatures() = default;
  /// F features (even, >= 0) with frequencies scale z_j from `seed`.
  FourierFeatures(int features, double scale, std::uint64_t seed)
      : m_w("scorekit::FourierFeatures::frequencies", std::size_t(features > 0 ? features / 2 : 0)) {
    if (features < 0 || features % 2 != 0)
      throw invalid_argument(detail::concat("scorekit::FourierFeatures: the number of features (", features,
                                            ") must be even and not negative"));
    const auto h = Kokkos::create_mirror_view(m_w);
    for (int j = 0; j < features / 2; ++j)
      h(j) = Real(scale * CounterRng<double>(seed, std::uint64_t(j), 0, RngStream::init).normal());
    Kokkos::deep_copy(m_w, h);
  }

  int size() const { return 2 * int(m_w.extent(0)); }

  /// The frequencies w_j, on the host.
  std::vector<Real> frequencies() const {
    const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), m_w);
    return std::vector<Real>(h.data(), h.data() + h.extent(0));
  }
  /// Replaces the frequencies (those of a model trained elsewhere). Throws invalid_argument on another
  /// count or a non-finite value.
  void set_frequencies(const std::vector<Real>& w, const char* where) {
    if (w.size() != m_w.extent(0))
      throw invalid_argument(
          detail::concat(where, ": ", w.size(), " frequencies, the model has ", m_w.extent(0)));
    const auto h = Kokkos::create_mirror_view(m_w);
    for (std::size_t j = 0; j < w.size(); ++j) {
      if (!std::isfinite(w[j]))
        throw invalid_argument(detail::concat(where, ": frequency ", j, " is ", w[j]));
      h(j) = w[j];
    }
    Kokkos::deep_copy(m_w, h);
  }

  /// f(n, :) = the features of sigma(n), for every sample n (f: N x size()).
  template <class Exec>
  void fill(const Exec& exec, const NoiseLevels<Real, MemorySpace>& sigma, const features_type& f) const {
    const int half = int(m_w.extent(0));
    if (half == 0) return;
    const auto w = m_w;
    const auto out = f;
    const NoiseLevels<Real, MemorySpace> s = sigma;
    Kokkos::parallel_for(
        "scorekit::FourierFeatures::fill",
        Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0,
                                                                   std::int64_t(sigma.extent(0)) * half),
        KOKKOS_LAMBDA(const std::int64_t e) {
          const std::int64_t n = e / half;
          const int j = int(e % half);
          const Real phase = Real(2) * math::pi<Real>() * w(j) * math::log(s(n));
          out(n, j) = math::sin(phase);
          out(n, half + j) = math::cos(phase);
        });
  }

 private:
  Kokkos::View<Real*, MemorySpace> m_w;
};

namespace detail {

/// The index of the level of `ladder` within a relative 1e-5 of sigma, -1 when none.
template <class Real, class MemorySpace>
KOKKOS_INLINE_FUNCTION int level_of(const Kokkos::View<Real*, MemorySpace>& ladder, Real sigma) {
  const int L = int(ladder.extent(0));
  for (int l = 0; l < L; ++l) {
    const Real d = sigma - ladder(l);
    if ((d < 0 ? -d : d) <= Real(1e-5) * ladder(l)) return l;
  }
  return -1;
}

/// {the first sample with a NaN or infinite entry, the first whose noise level is outside [lo, hi] or
/// (with a non-empty ladder) not one of its levels}, each N when there is none.
template <class Exec, class Real, class MemorySpace>
std::pair<int, int> find_bad_samples(const Exec& exec, const ConstBatchView<Real, MemorySpace>& x,
                                     const NoiseLevels<Real, MemorySpace>& sigma, Real lo, Real hi,
                                     const Kokkos::View<Real*, MemorySpace>& ladder) {
  const int n = int(x.extent(0)), d = int(x.extent(1));
  const ConstBatchView<Real, MemorySpace> x_ = x;
  const NoiseLevels<Real, MemorySpace> s = sigma;
  const auto levels = ladder;
  const bool on_ladder = ladder.extent(0) > 0;
  int bad_x = n, bad_sigma = n;
  Kokkos::parallel_reduce(
      "scorekit::find_bad_samples", Kokkos::RangePolicy<Exec>(exec, 0, n),
      KOKKOS_LAMBDA(const int i, int& first_x, int& first_sigma) {
        Real acc = 0;
        for (int j = 0; j < d; ++j) acc += x_(i, j) - x_(i, j);  // NaN exactly when an entry is not finite
        if (!(acc == Real(0)) && i < first_x) first_x = i;
        const bool off = on_ladder ? level_of(levels, s(i)) < 0 : !(s(i) >= lo && s(i) <= hi);
        if (off && i < first_sigma) first_sigma = i;
      },
      Kokkos::Min<int>(bad_x), Kokkos::Min<int>(bad_sigma));
  return {bad_x, bad_sigma};
}

/// Throws invalid_argument naming the first sample with a non-finite entry or a noise level outside the
/// trained range [lo, hi] (`what`: what the range is, for the message). No ladder.
template <class Exec, class Real, class MemorySpace>
void require_noised_batch(const Exec& exec, const ConstBatchView<Real, MemorySpace>& x,
                          const NoiseLevels<Real, MemorySpace>& sigma, double sigma_min, double sigma_max,
                          const char* where) {
  const auto bad = find_bad_samples(exec, x, sigma, Real(sigma_min * (1 - 1e-5)),
                                    Real(sigma_max * (1 + 1e-5)), Kokkos::View<Real*, MemorySpace>());
  const int n = int(x.extent(0));
  if (bad.first < n)
    throw invalid_argument(
        concat(where, ": sample ", bad.first, " of the batch has a NaN or infinite entry"));
  if (bad.second < n) {
    Real value = 0;
    Kokkos::deep_copy(value, Kokkos::subview(sigma, std::size_t(bad.second)));
    throw invalid_argument(concat(where, ": sample ", bad.second, " has noise level ", value,
                                  ", outside the range the network was trained on, [", sigma_min, ", ",
                                  sigma_max, "]"));
  }
}

}  // namespace detail
}  // namespace scorekit
