// BatchedMixtureScore (score/batched_mixture.hpp): its GEMM-shaped score against a long double reference
// of the same mixture, within a first-order forward error bound computed per output from the reference's
// own intermediate values; and the batched samplers with it against the exact answer.
// scorekit-requires: SCOREKIT_HAVE_KOKKOS_KERNELS
#include "backends.hpp"
#include "support.hpp"

#include <scorekit/core/random.hpp>
#include <scorekit/density/draw.hpp>
#include <scorekit/integrate/predictor_corrector.hpp>
#include <scorekit/integrate/reverse_diffusion.hpp>
#include <scorekit/metrics/mmd.hpp>
#include <scorekit/score/batched_mixture.hpp>
#include <scorekit/sde/reverse.hpp>
#include <scorekit/sde/variance_exploding.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

using scorekit_test::Backends;

namespace {

/// K components in d dimensions with random full covariances A A^T / d + 0.3 I and means 2 N(0, 1).
template <class Real, class Mem>
scorekit::GaussianMixture<Real, Mem> random_full_mixture(int k, int d, std::uint64_t seed) {
  scorekit::CounterRng<double> rng(seed, 0, 0);
  Eigen::VectorXd w(k);
  Eigen::MatrixXd mu(k, d);
  std::vector<Eigen::MatrixXd> cov;
  for (int c = 0; c < k; ++c) {
    w[c] = 0.5 + rng.uniform();
    for (int j = 0; j < d; ++j) mu(c, j) = 2 * rng.normal();
    Eigen::MatrixXd a(d, d);
    for (int i = 0; i < d; ++i)
      for (int j = 0; j < d; ++j) a(i, j) = rng.normal();
    Eigen::MatrixXd s = a * a.transpose() / double(d);
    s.diagonal().array() += 0.3;
    cov.push_back(s);
  }
  return scorekit::GaussianMixture<Real, Mem>::full(w, mu, cov);
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("The batched mixture score is the exact score within its rounding bound",
                        "[batched][mixture]", Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  auto check = [](auto zero) {
    using Real = decltype(zero);
    const int k = 5, d = 8, n = 60;
    const auto mix = random_full_mixture<Real, Mem>(k, d, 17);
    const std::vector<Real> table = {Real(0.1), Real(0.5), Real(2)};
    const scorekit::BatchedMixtureScore<Real, Mem> model(mix, table);
    scorekit::BatchView<Real, Mem> x("x", n, d), out("out", n, d);
    Kokkos::View<Real*, Mem> sigma("sigma", n);
    // Samples near the components and between them; the noise levels alternate between tabulated and
    // untabulated ones, so both ways of forming 1 / var and log det are checked.
    scorekit::draw_exact(Exec(), mix.perturbed(Real(1), Real(0.7)), x, 5);
    auto h_sigma = Kokkos::create_mirror_view(sigma);
    const Real levels[6] = {Real(0.1), Real(0.3), Real(0.5), Real(1.3), Real(2), Real(0.02)};
    for (int s = 0; s < n; ++s) h_sigma(s) = levels[s % 6];
    Kokkos::deep_copy(sigma, h_sigma);
    model.score(Exec(), x, sigma, out);
    Exec().fence();

    const auto hx = scorekit::to_host(x);
    const auto hout = scorekit::to_host(out);
    const auto Q = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), mix.eigenvectors());  // (k, i, j)
    const auto lam = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), mix.eigenvalues());
    const auto mean = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), mix.means());
    const auto lw = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), mix.log_weights());
    using L = long double;
    const L u = L(std::numeric_limits<Real>::epsilon()) / 2;
    auto gamma = [&](int m) { return m * u / (1 - m * u); };
    // exp and log (Kokkos' math, i.e. libm or CUDA's): within 2 ulp = 4 u.
    const L e_fun = 4 * u;
    double worst = 0;
    for (int s = 0; s < n; ++s) {
      const L sig = h_sigma(s);
      bool tabulated = false;
      for (Real t : table) tabulated = tabulated || t == h_sigma(s);
      // Relative error of 1 / var: the table rounds a double to Real; on the fly 6 roundings.
      const L e_iv = tabulated ? gamma(2) : gamma(6);
      const std::size_t kd = std::size_t(k * d), kk = std::size_t(k);
      std::vector<L> z(kd), ez(kd), iv(kd), l(kk), el(kk);
      for (int c = 0; c < k; ++c) {
        L quad = 0, ld = 0, equad = 0, eld = 0, sum_z2iv = 0, sum_abs_log = 0;
        for (int i = 0; i < d; ++i) {
          L zi = 0, shift = 0, abs_prod = 0;
          for (int j = 0; j < d; ++j) {
            zi += L(Q(c, i, j)) * L(hx(s, j));
            shift += L(Q(c, i, j)) * L(mean(c, j));
            abs_prod += std::abs(L(Q(c, i, j)) * L(hx(s, j)));
          }
          zi -= shift;
          const L var = L(lam(c, i)) + sig * sig;
          const std::size_t ci = std::size_t(c * d + i);
          z[ci] = zi;
          iv[ci] = 1 / var;
          // GEMM dot of length d, the rounded shift, the subtraction.
          ez[ci] = gamma(d) * abs_prod + 2 * u * std::abs(shift) + u * std::abs(zi);
          quad += zi * zi / var;
          sum_z2iv += zi * zi / var;
          equad += 2 * std::abs(zi) * ez[ci] / var + zi * zi / var * (e_iv + 2 * u);
          ld += std::log(var);
          sum_abs_log += std::abs(std::log(var));
          eld += tabulated ? 0 : (gamma(6) + e_fun * std::abs(std::log(var)));
        }
        equad += gamma(d) * sum_z2iv;
        eld = tabulated ? 2 * u * std::abs(ld) : eld + gamma(d) * sum_abs_log;
        l[std::size_t(c)] = L(lw(c)) - (ld + quad) / 2;
        el[std::size_t(c)] = (eld + equad) / 2 + gamma(3) * (std::abs(L(lw(c))) + std::abs(ld) + quad);
      }
      L lmax = l[0];
      for (int c = 1; c < k; ++c) lmax = std::max(lmax, l[std::size_t(c)]);
      L zsum = 0;
      for (int c = 0; c < k; ++c) zsum += std::exp(l[std::size_t(c)] - lmax);
      std::vector<L> r(kk);
      L mean_el = 0;
      for (int c = 0; c < k; ++c) {
        r[std::size_t(c)] = std::exp(l[std::size_t(c)] - lmax) / zsum;
        mean_el += r[std::size_t(c)] * el[std::size_t(c)];
      }
      for (int j = 0; j < d; ++j) {
        L ref = 0, bound = 0, abs_terms = 0;
        for (int c = 0; c < k; ++c) {
          // Softmax: the errors of l, two exps per weight, K + 2 roundings in the sum, rescale and
          // division, and K rescales of a streamed weight.
          const L rc = r[std::size_t(c)];
          const L er = rc * (el[std::size_t(c)] + mean_el + 2 * e_fun + gamma(2 * k + 2));
          for (int i = 0; i < d; ++i) {
            const std::size_t ci = std::size_t(c * d + i);
            const L g = -z[ci] * iv[ci];
            const L eg = ez[ci] * iv[ci] + std::abs(z[ci]) * iv[ci] * (e_iv + u);
            const L q = L(Q(c, i, j));
            ref += q * rc * g;
            bound += std::abs(q) * (er * std::abs(g) + rc * eg + u * rc * std::abs(g));
            abs_terms += std::abs(q * rc * g);
          }
        }
        bound += gamma(k * d) * abs_terms;
        const L err = std::abs(L(hout(s, j)) - ref);
        // Twice the first-order bound: the second-order terms are far below it at these sizes.
        INFO("sample " << s << " coordinate " << j << ": error " << double(err) << ", bound "
                       << double(2 * bound));
        if (!(err <= 2 * bound)) CHECK(double(err) <= double(2 * bound));
        worst = std::max(worst, double(err / (2 * bound)));
      }
    }
    INFO("largest error / bound: " << worst);
    CHECK(worst <= 1.0);
    CHECK(worst > 0.0);  // the comparison is not vacuous: the two are computed differently
  };
  check(double(0));
  check(float(0));
}

TEMPLATE_LIST_TEST_CASE("At one tabulated level the batched mixture score is exact within its rounding bound",
                        "[batched][mixture]", Backends) {
  // Every sample at the same tabulated level: the one-GEMM path through the level's precision matrices
  // (tabulated in double, rounded to Real). The bound follows its operations as the test above does.
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  auto check = [](auto zero) {
    using Real = decltype(zero);
    const int k = 5, d = 11, n = 40;
    const auto mix = random_full_mixture<Real, Mem>(k, d, 29);
    const scorekit::BatchedMixtureScore<Real, Mem> model(mix, {Real(0.05), Real(0.4), Real(3)});
    scorekit::BatchView<Real, Mem> x("x", n, d), out("out", n, d);
    Kokkos::View<Real*, Mem> sigma("sigma", n);
    scorekit::draw_exact(Exec(), mix.perturbed(Real(1), Real(0.4)), x, 6);
    Kokkos::deep_copy(sigma, Real(0.4));
    CHECK(model.uniform_level(Exec(), sigma) == 1);
    model.score(Exec(), x, sigma, out);
    Exec().fence();

    const auto hx = scorekit::to_host(x);
    const auto hout = scorekit::to_host(out);
    const auto Q = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), mix.eigenvectors());
    const auto lam = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), mix.eigenvalues());
    const auto mean = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), mix.means());
    const auto lw = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), mix.log_weights());
    using L = long double;
    const L u = L(std::numeric_limits<Real>::epsilon()) / 2,
            ud = L(std::numeric_limits<double>::epsilon()) / 2;
    auto gamma = [](int m, L unit) { return m * unit / (1 - m * unit); };
    const L e_fun = 4 * u, sig2 = L(Real(0.4)) * L(Real(0.4));
    double worst = 0;
    for (int s = 0; s < n; ++s) {
      const std::size_t kk = std::size_t(k), dd = std::size_t(d);
      std::vector<L> v(kk * dd), ev(kk * dd), l(kk), el(kk);
      for (int c = 0; c < k; ++c) {
        // P (exact for the stored Q and lambda), and the bound on its tabulated entries' error.
        std::vector<L> P(dd * dd, 0), eP(dd * dd, 0);
        for (int e = 0; e < d; ++e) {
          const L iv = 1 / (L(lam(c, e)) + sig2);
          for (int i = 0; i < d; ++i)
            for (int j = 0; j < d; ++j) {
              P[std::size_t(i * d + j)] += L(Q(c, e, i)) * L(Q(c, e, j)) * iv;
              eP[std::size_t(i * d + j)] +=
                  std::abs(L(Q(c, e, i)) * L(Q(c, e, j))) * iv * gamma(2 * d + 4, ud);
            }
        }
        for (std::size_t ij = 0; ij < dd * dd; ++ij) eP[ij] += u * std::abs(P[ij]);
        L quad = 0, equad = 0, abs_quad = 0;
        for (int i = 0; i < d; ++i) {
          L vi = 0, pmu = 0, ey = 0, epmu = 0, abs_px = 0, abs_pmu = 0;
          for (int j = 0; j < d; ++j) {
            const L pij = P[std::size_t(i * d + j)], e = eP[std::size_t(i * d + j)];
            vi += pij * (L(hx(s, j)) - L(mean(c, j)));
            pmu += pij * L(mean(c, j));
            abs_px += std::abs(pij * L(hx(s, j)));
            abs_pmu += std::abs(pij * L(mean(c, j)));
            ey += e * std::abs(L(hx(s, j)));
            epmu += e * std::abs(L(mean(c, j)));
          }
          const std::size_t ci = std::size_t(c * d + i);
          v[ci] = vi;
          // Y = X P (GEMM of length d), P a mu (double, rounded), the subtraction.
          ev[ci] = gamma(d, u) * abs_px + ey + epmu + gamma(d, ud) * abs_pmu + u * std::abs(pmu) +
                   u * std::abs(vi);
          const L diff = L(hx(s, i)) - L(mean(c, i));
          quad += diff * vi;
          abs_quad += std::abs(diff * vi);
          equad +=
              std::abs(diff) * ev[ci] + std::abs(vi) * (u * std::abs(L(mean(c, i))) + u * std::abs(diff));
        }
        equad += gamma(d + 1, u) * abs_quad;
        L ld = 0;
        for (int e = 0; e < d; ++e) ld += std::log(L(lam(c, e)) + sig2);
        l[std::size_t(c)] = L(lw(c)) - (ld + quad) / 2;
        el[std::size_t(c)] =
            (2 * u * std::abs(ld) + equad) / 2 + gamma(3, u) * (std::abs(L(lw(c))) + std::abs(ld) + quad);
      }
      L lmax = l[0];
      for (int c = 1; c < k; ++c) lmax = std::max(lmax, l[std::size_t(c)]);
      L zsum = 0;
      for (int c = 0; c < k; ++c) zsum += std::exp(l[std::size_t(c)] - lmax);
      std::vector<L> r(kk);
      L mean_el = 0;
      for (int c = 0; c < k; ++c) {
        r[std::size_t(c)] = std::exp(l[std::size_t(c)] - lmax) / zsum;
        mean_el += r[std::size_t(c)] * el[std::size_t(c)];
      }
      for (int i = 0; i < d; ++i) {
        L ref = 0, bound = 0, abs_terms = 0;
        for (int c = 0; c < k; ++c) {
          const L rc = r[std::size_t(c)], vi = v[std::size_t(c * d + i)];
          const L er = rc * (el[std::size_t(c)] + mean_el + 2 * e_fun + gamma(2 * k + 2, u));
          ref -= rc * vi;
          bound += er * std::abs(vi) + rc * ev[std::size_t(c * d + i)];
          abs_terms += rc * std::abs(vi);
        }
        bound += gamma(2 * k + 2, u) * abs_terms;
        const L err = std::abs(L(hout(s, i)) - ref);
        if (!(err <= 2 * bound)) {
          INFO("sample " << s << " coordinate " << i << ": error " << double(err) << ", bound "
                         << double(2 * bound));
          CHECK(double(err) <= double(2 * bound));
        }
        worst = std::max(worst, double(err / (2 * bound)));
      }
    }
    INFO("largest error / bound: " << worst);
    CHECK(worst <= 1.0);
    CHECK(worst > 0.0);
  };
  check(double(0));
  check(float(0));
}

TEMPLATE_LIST_TEST_CASE("The batched mixture score refuses bad shapes", "[batched][mixture][errors]",
                        Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const auto mix = random_full_mixture<double, Mem>(2, 3, 1);
  const scorekit::BatchedMixtureScore<double, Mem> model(mix);
  scorekit::BatchView<double, Mem> x("x", 4, 3), out("out", 4, 3), wrong("wrong", 4, 2);
  Kokkos::View<double*, Mem> sigma("sigma", 4);
  CHECK_THROWS_WITH(model.score(Exec(), wrong, sigma, out), Catch::Contains("model's dimension is 3"));
  CHECK_THROWS_WITH(model.score(Exec(), x, sigma, wrong), Catch::Contains("the output is 4 x 2"));
}

TEMPLATE_LIST_TEST_CASE("Predictor-corrector with the batched mixture score reproduces the mixture",
                        "[batched][mixture][integrate]", Backends) {
  // VE reverse SDE from exact draws of p_T to t = 1e-3 with 200 steps of reverse diffusion plus one
  // Langevin corrector step, all through the GEMM path, then MMD^2_u of 1000 samples against 1000 exact
  // draws of p_{1e-3} below 5 null_sd (metrics/mmd.hpp: Cantelli level 1/26 for any law).
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const auto mix = random_full_mixture<double, Mem>(3, 4, 9);
  const scorekit::VarianceExplodingSDE<double> ve(0.01, 20);
  const int n = 1000, steps = 200;
  scorekit::IntegrateSettings s;
  s.times = scorekit::uniform_times(1.0, 1e-3, steps);
  s.seed = 21;
  std::vector<double> levels;
  for (double t : s.times) levels.push_back(ve.marginal(t).std);
  const scorekit::BatchedMixtureScore<double, Mem> model(mix, levels);
  scorekit::ParticleView<double, Mem> x("x", n, 4), y("y", n, 4);
  scorekit::draw_exact(Exec(), mix.perturbed(1.0, ve.marginal(1.0).std), x, 22);
  const auto r = scorekit::integrate(
      Exec(), scorekit::reverse_sde(ve, model),
      scorekit::predictor_corrector(scorekit::ReverseDiffusion{}, scorekit::LangevinCorrector(0.16, 1)), x,
      s);
  CHECK(r.n_score_evaluations == std::int64_t(n) * steps * 2);
  scorekit::draw_exact(Exec(), mix.perturbed(1.0, ve.marginal(1e-3).std), y, 23);
  const auto mmd = scorekit::mmd_squared(Exec(), x, y);
  INFO("MMD^2 " << mmd.mmd2 << ", null sd " << mmd.null_sd);
  CHECK(mmd.mmd2 < 5 * mmd.null_sd);
}
