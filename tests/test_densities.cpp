// The densities (Gaussian mixtures and their perturbations, the noise-conditional mixture score, banana,
// star, funnel), the exact-sampling driver and the user-facing conformance checks.
//
// What is proved:
//  * every score is the gradient of its log_prob and every Laplacian the divergence of its score
//    (scorekit::testing, tolerance derived from the finite-difference error), at modes, between modes
//    and at 40 standard deviations from every mode, where a naive sum of exp would underflow;
//  * the mixture log-density equals an independent Eigen (Cholesky) evaluation, and the noise-conditional
//    score agrees between tabulated and untabulated noise levels and with GaussianMixture::perturbed;
//  * exp(log_prob) integrates to 1 in 2-D, to within the quadrature error;
//  * draw_exact produces the closed-form means and covariances (within 5 standard errors), and the
//    draws satisfy Stein's identities E[s] = 0, E[Laplacian + |s|^2] = 0 with scores evaluated INSIDE a
//    Kokkos kernel on every backend;
//  * bad input throws the right exception with a message naming the problem;
//  * the checks accept a density written by an outsider and reject wrong scores and Laplacians.
//
// Statistical rule used throughout: a sample mean of N i.i.d. values z_i is accepted when it lies
// within 5 standard errors of the exact value, SE = sqrt(S^2 / N) with S^2 = sum (z_i - zbar)^2 / (N - 1)
// the sample variance of the z_i. For a covariance entry C_jk the z_i are the centred products
// (x_ij - xbar_j)(x_ik - xbar_k). A 5-SE deviation has two-sided normal probability 5.7e-7, so with the
// about 1500 comparisons of the whole file (both backends) a false alarm has probability about 1e-3 (and
// seeds are fixed, so a pass is reproducible).
#include "backends.hpp"
#include "contraction/contraction.hpp"

#include <scorekit/core/traits.hpp>
#include <scorekit/core/views.hpp>
#include <scorekit/density/banana.hpp>
#include <scorekit/density/draw.hpp>
#include <scorekit/density/funnel.hpp>
#include <scorekit/density/gaussian_mixture.hpp>
#include <scorekit/density/star.hpp>
#include <scorekit/score/perturbed_mixture.hpp>
#include <scorekit/testing/density_checks.hpp>

#include <catch2/catch.hpp>

#include <Eigen/Cholesky>
#include <Eigen/Dense>
#include <Eigen/Eigenvalues>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

namespace {

using scorekit::CovarianceKind;
using scorekit::GaussianMixture;
using scorekit::testing::check_laplacian;
using scorekit::testing::check_score;
using HostMem = Kokkos::HostSpace;
constexpr double pi = 3.14159265358979323846;

// ---------------------------------------------------------------------------------------------------
// Mixture fixtures, described by their Eigen parameters so that a reference can be computed
// independently of the library.

struct MixtureSpec {
  std::string name;
  Eigen::VectorXd weights;
  Eigen::MatrixXd means;  // K x d
  CovarianceKind kind = CovarianceKind::isotropic;
  bool single_gaussian = false;  // built with scorekit::gaussian()
  Eigen::VectorXd iso;           // K
  Eigen::MatrixXd diag;          // K x d
  std::vector<Eigen::MatrixXd> full;

  int dim() const { return int(means.cols()); }
  int components() const { return int(means.rows()); }
  Eigen::MatrixXd covariance(int k) const {
    const int d = dim();
    if (kind == CovarianceKind::isotropic) return iso[k] * Eigen::MatrixXd::Identity(d, d);
    if (kind == CovarianceKind::diagonal) return diag.row(k).transpose().asDiagonal();
    return full[std::size_t(k)];
  }
  template <class Real, class Mem>
  GaussianMixture<Real, Mem> build() const {
    if (single_gaussian) return scorekit::gaussian<Real, Mem>(means.row(0).transpose(), full[0]);
    if (kind == CovarianceKind::isotropic) return GaussianMixture<Real, Mem>::isotropic(weights, means, iso);
    if (kind == CovarianceKind::diagonal) return GaussianMixture<Real, Mem>::diagonal(weights, means, diag);
    return GaussianMixture<Real, Mem>::full(weights, means, full);
  }
  // Covariance of component k of a X + sigma Z.
  Eigen::MatrixXd perturbed_covariance(int k, double a, double sigma) const {
    return a * a * covariance(k) + sigma * sigma * Eigen::MatrixXd::Identity(dim(), dim());
  }
};

// A deterministic "pseudo-random" number in [-1, 1] (fixtures only; no generator needed).
double fixed_value(int i, int j, int k) { return std::sin(1.7 * i + 2.3 * j + 0.9 * k + 0.4); }

std::vector<MixtureSpec> mixture_specs() {
  std::vector<MixtureSpec> specs;
  for (int d : {2, 5}) {
    const int K = d == 2 ? 3 : 4;
    MixtureSpec base;
    base.weights = Eigen::VectorXd(K);
    base.means = Eigen::MatrixXd(K, d);
    for (int k = 0; k < K; ++k) {
      base.weights[k] = 0.5 + 0.4 * fixed_value(k, 0, 1);  // unnormalised, in [0.1, 0.9]
      for (int j = 0; j < d; ++j) base.means(k, j) = 3 * fixed_value(k, j, 2);
    }
    MixtureSpec iso = base, diag = base, full = base;
    iso.name = "isotropic " + std::to_string(d) + "-D";
    iso.kind = CovarianceKind::isotropic;
    iso.iso = Eigen::VectorXd(K);
    diag.name = "diagonal " + std::to_string(d) + "-D";
    diag.kind = CovarianceKind::diagonal;
    diag.diag = Eigen::MatrixXd(K, d);
    full.name = "full " + std::to_string(d) + "-D";
    full.kind = CovarianceKind::full;
    for (int k = 0; k < K; ++k) {
      iso.iso[k] = 0.6 + 0.3 * fixed_value(k, 1, 3);
      for (int j = 0; j < d; ++j) diag.diag(k, j) = 0.6 + 0.3 * fixed_value(k, j, 4);
      Eigen::MatrixXd A(d, d);
      for (int i = 0; i < d; ++i)
        for (int j = 0; j < d; ++j) A(i, j) = 0.5 * fixed_value(k, i, 5 + j);
      full.full.push_back(A * A.transpose() + 0.4 * Eigen::MatrixXd::Identity(d, d));
    }
    MixtureSpec gauss;
    gauss.name = "gaussian() " + std::to_string(d) + "-D";
    gauss.kind = CovarianceKind::full;
    gauss.single_gaussian = true;
    gauss.weights = Eigen::VectorXd::Ones(1);
    gauss.means = base.means.topRows(1);
    gauss.full = {full.full[1]};
    specs.insert(specs.end(), {iso, diag, full, gauss});
  }
  return specs;
}

// (a, sigma) of the laws a X + sigma Z tested: the base mixture, a VP-like and a VE-like perturbation.
const std::vector<std::pair<double, double>> perturbations = {{1.0, 0.0}, {0.7, 0.5}, {1.0, 2.0}};

// Reference log-density of a X + sigma Z: Cholesky per component and a two-pass log-sum-exp. Also
// returns S = max_k sum of the magnitudes of the terms of l_k (for round-off bounds) and the condition
// number of the worst component covariance.
struct Reference {
  double log_prob;
  double term_scale;
  double condition;
};
Reference reference_log_prob(const MixtureSpec& spec, double a, double sigma, const Eigen::VectorXd& x) {
  const int K = spec.components(), d = spec.dim();
  std::vector<double> l(std::size_t(K), 0.0);
  Reference r{0, 0, 1};
  for (int k = 0; k < K; ++k) {
    const Eigen::MatrixXd C = spec.perturbed_covariance(k, a, sigma);
    const Eigen::LLT<Eigen::MatrixXd> llt(C);
    const Eigen::VectorXd z = llt.matrixL().solve(x - a * spec.means.row(k).transpose());
    double logdet = 0, abs_logdet = 0;
    for (int i = 0; i < d; ++i) {
      logdet += 2 * std::log(llt.matrixL()(i, i));
      abs_logdet += std::fabs(2 * std::log(llt.matrixL()(i, i)));
    }
    const double logw = std::log(spec.weights[k] / spec.weights.sum());
    l[std::size_t(k)] = logw - 0.5 * d * std::log(2 * pi) - 0.5 * logdet - 0.5 * z.squaredNorm();
    r.term_scale = std::max(r.term_scale, std::fabs(logw) + 0.5 * d * std::log(2 * pi) + 0.5 * abs_logdet +
                                              0.5 * z.squaredNorm());
    const Eigen::VectorXd ev = Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(C).eigenvalues();
    r.condition = std::max(r.condition, ev.maxCoeff() / ev.minCoeff());
  }
  const double m = *std::max_element(l.begin(), l.end());
  double s = 0;
  for (double lk : l) s += std::exp(lk - m);
  r.log_prob = m + std::log(s);
  return r;
}

// The largest component-score magnitude max_k ||C_k^{-1} (x - a mu_k)||_inf at x.
double component_score_scale(const MixtureSpec& spec, double a, double sigma, const Eigen::VectorXd& x) {
  double g = 0;
  for (int k = 0; k < spec.components(); ++k) {
    const Eigen::MatrixXd C = spec.perturbed_covariance(k, a, sigma);
    g = std::max(g, C.llt().solve(x - a * spec.means.row(k).transpose()).cwiseAbs().maxCoeff());
  }
  return g;
}

double min_distance_to_modes(const MixtureSpec& spec, double a, const Eigen::VectorXd& x) {
  double dist = std::numeric_limits<double>::infinity();
  for (int k = 0; k < spec.components(); ++k)
    dist = std::min(dist, (x - a * spec.means.row(k).transpose()).norm());
  return dist;
}

Eigen::VectorXd far_point_for(const MixtureSpec& spec, double a) {
  Eigen::VectorXd x = a * spec.means.row(0).transpose();
  double spread = 0;
  for (int k = 0; k < spec.components(); ++k)
    spread = std::max(spread, a * (spec.means.row(k) - spec.means.row(0)).norm());
  x[0] += 40 + spread;
  return x;
}

// Points where a mixture is checked: each (scaled) mode, the midpoints between modes, two generic points,
// and one point at distance >= 40 from every mode.
std::vector<std::vector<double>> mixture_points(const MixtureSpec& spec, double a) {
  const int K = spec.components(), d = spec.dim();
  std::vector<std::vector<double>> pts;
  const auto push = [&](const Eigen::VectorXd& v) { pts.emplace_back(v.data(), v.data() + v.size()); };
  for (int k = 0; k < K; ++k) push(a * spec.means.row(k).transpose());
  for (int k = 0; k < K; ++k)
    for (int m = k + 1; m < K; ++m) push(0.5 * a * (spec.means.row(k) + spec.means.row(m)).transpose());
  Eigen::VectorXd g(d);
  for (int j = 0; j < d; ++j) g[j] = 1.3 * fixed_value(j, 7, 11);
  push(g);
  push(-2 * g);
  push(far_point_for(spec, a));
  return pts;
}

// Adapter: a noise-conditional model at one fixed noise level, seen as a Density.
template <class Model>
struct AtNoise {
  using value_type = typename Model::value_type;
  using memory_space = typename Model::memory_space;
  Model model;
  value_type sigma;
  KOKKOS_INLINE_FUNCTION int dim() const { return model.dim(); }
  KOKKOS_INLINE_FUNCTION int workspace_size() const { return model.workspace_size(); }
  KOKKOS_INLINE_FUNCTION value_type log_prob(const value_type* x, value_type* work) const {
    return model.log_prob(x, sigma, work);
  }
  KOKKOS_INLINE_FUNCTION void score(const value_type* x, value_type* out, value_type* work) const {
    model.score(x, sigma, out, work);
  }
};

void require_pass(const scorekit::testing::DensityCheck& r, const std::string& what) {
  INFO(what << ": " << r.message());
  REQUIRE(r.passed);
}

}  // namespace

// ===================================================================================================
// Scores and Laplacians against finite differences

TEST_CASE("mixture scores and Laplacians match finite differences, including far from every mode",
          "[density][mixture]") {
  for (const MixtureSpec& spec : mixture_specs())
    for (const auto& [a, sigma] : perturbations) {
      const auto base = spec.build<double, HostMem>();
      const auto mix = (a == 1.0 && sigma == 0.0) ? base : base.perturbed(a, sigma);
      const auto points = mixture_points(spec, a);
      const std::string what =
          spec.name + " perturbed(" + std::to_string(a) + ", " + std::to_string(sigma) + ")";
      REQUIRE(min_distance_to_modes(spec, a, far_point_for(spec, a)) >= 40);
      require_pass(check_score(mix, points), what);
      require_pass(check_laplacian(mix, points), what);
    }
}

TEST_CASE("mixture log_prob equals an independent Cholesky evaluation, even where exp underflows",
          "[density][mixture]") {
  // At the far point every component has l_k < -700 in 5-D, so sum_k exp(l_k) underflows to 0 in double
  // and a naive log would return -inf; the streaming log-sum-exp must not. The two computations differ
  // only by rounding: each rounds at most (d + 2)^2 operations per component on terms of total size S
  // (Reference::term_scale), amplified by the condition number kappa of the covariance (the eigen- vs
  // Cholesky factorisations), so |difference| <= (d + 2)^2 kappa eps S.
  const double eps = std::numeric_limits<double>::epsilon();
  bool saw_underflow = false;
  for (const MixtureSpec& spec : mixture_specs())
    for (const auto& [a, sigma] : perturbations) {
      const auto base = spec.build<double, HostMem>();
      const auto mix = (a == 1.0 && sigma == 0.0) ? base : base.perturbed(a, sigma);
      std::vector<double> work(std::size_t(mix.workspace_size()));
      for (const auto& p : mixture_points(spec, a)) {
        const Eigen::VectorXd x = Eigen::Map<const Eigen::VectorXd>(p.data(), Eigen::Index(p.size()));
        const Reference ref = reference_log_prob(spec, a, sigma, x);
        const double got = mix.log_prob(p.data(), work.data());
        const double d2 = double(spec.dim() + 2) * (spec.dim() + 2);
        INFO(spec.name << " a = " << a << " sigma = " << sigma << " ref = " << ref.log_prob
                       << " got = " << got);
        REQUIRE(std::isfinite(got));
        REQUIRE(std::fabs(got - ref.log_prob) <= d2 * ref.condition * eps * ref.term_scale);
        if (ref.log_prob < -745) saw_underflow = true;  // exp(-745) is below the smallest double
      }
    }
  REQUIRE(saw_underflow);  // the fixture really exercises the underflow regime
}

TEST_CASE("float mixtures pass the score and Laplacian checks", "[density][mixture][float]") {
  for (const MixtureSpec& spec : mixture_specs()) {
    const auto mix = spec.build<float, HostMem>();
    const auto points = mixture_points(spec, 1.0);
    require_pass(check_score(mix, points), "float " + spec.name);
    require_pass(check_laplacian(mix, points), "float " + spec.name);
    const auto pert = mix.perturbed(0.7f, 0.5f);
    require_pass(check_score(pert, mixture_points(spec, 0.7)), "float perturbed " + spec.name);
    require_pass(check_laplacian(pert, mixture_points(spec, 0.7)), "float perturbed " + spec.name);
  }
}

TEST_CASE("PerturbedMixtureScore: tabulated and untabulated noise levels agree and match perturbed()",
          "[density][mixture][perturbed_score]") {
  // The tabulated path reads 1 / v and the log-normaliser precomputed; the untabulated path computes
  // them on the fly; perturbed(1, sigma) tabulates them as its own level. All three round differently,
  // nothing else. Per component, l_k is a sum of at most 2 d + 6 rounded terms of total size S, so the
  // log-densities differ by at most delta = (2 d + 6) eps S. A relative change delta in every component
  // weight moves the score by at most 2 delta G (G = the largest component score, max_k ||g_k||_inf),
  // and the weighted sum of K component scores adds (K + 4) eps G of its own.
  const double eps = std::numeric_limits<double>::epsilon();
  const std::vector<double> ladder = {0.1, 0.5, 2.0};
  for (const MixtureSpec& spec : mixture_specs()) {
    const auto mix = spec.build<double, HostMem>();
    const scorekit::PerturbedMixtureScore<double, HostMem> tabulated(mix, ladder), untabulated(mix);
    std::vector<double> work(std::size_t(tabulated.workspace_size())), s1(std::size_t(spec.dim())),
        s2(s1.size()), s3(s1.size());
    for (double sigma : {0.5, 0.37}) {  // 0.5 is tabulated, 0.37 is not
      REQUIRE((tabulated.level_of(sigma) >= 0) == (sigma == 0.5));
      REQUIRE(untabulated.level_of(sigma) == -1);
      const auto pert = mix.perturbed(1.0, sigma);
      for (const auto& p : mixture_points(spec, 1.0)) {
        const Eigen::VectorXd x = Eigen::Map<const Eigen::VectorXd>(p.data(), Eigen::Index(p.size()));
        const Reference ref = reference_log_prob(spec, 1.0, sigma, x);
        const double delta = (2.0 * spec.dim() + 6) * eps * ref.term_scale;
        const double G = component_score_scale(spec, 1.0, sigma, x);
        const double score_tol = (2 * delta + (spec.components() + 4) * eps) * G;
        const double l1 = tabulated.log_prob(p.data(), sigma, work.data());
        const double l2 = untabulated.log_prob(p.data(), sigma, work.data());
        const double l3 = pert.log_prob(p.data(), work.data());
        tabulated.score(p.data(), sigma, s1.data(), work.data());
        untabulated.score(p.data(), sigma, s2.data(), work.data());
        pert.score(p.data(), s3.data(), work.data());
        INFO(spec.name << " sigma = " << sigma << " l = " << l1 << ", " << l2 << ", " << l3);
        REQUIRE(std::fabs(l1 - l2) <= 2 * delta);
        REQUIRE(std::fabs(l1 - l3) <= 2 * delta);
        for (std::size_t j = 0; j < s1.size(); ++j) {
          REQUIRE(std::fabs(s1[j] - s2[j]) <= 2 * score_tol);
          REQUIRE(std::fabs(s1[j] - s3[j]) <= 2 * score_tol);
        }
      }
      using Model = scorekit::PerturbedMixtureScore<double, HostMem>;
      const auto points = mixture_points(spec, 1.0);
      require_pass(check_score(AtNoise<Model>{tabulated, sigma}, points), spec.name + " tabulated model");
      require_pass(check_score(AtNoise<Model>{untabulated, sigma}, points), spec.name + " untabulated model");
    }
    // The model keeps the mixture it was given: mixture() still evaluates the unperturbed density.
    for (const auto& p : mixture_points(spec, 1.0))
      for (const auto* model : {&tabulated, &untabulated})
        REQUIRE(model->mixture().log_prob(p.data(), work.data()) == mix.log_prob(p.data(), work.data()));
  }
}

TEST_CASE("level_of finds exactly the tabulated noise levels", "[density][mixture][perturbed_score]") {
  // The search runs with selects over the sorted levels: every level must be found at its own index
  // (with duplicates removed and the input unsorted), and nothing between, below or above the levels.
  const auto mix = scorekit::GaussianMixture<double, HostMem>::isotropic(
      Eigen::VectorXd::Ones(1), Eigen::MatrixXd::Zero(1, 2), Eigen::VectorXd::Ones(1));
  for (int n : {1, 2, 3, 4, 7, 8, 9, 1001}) {
    std::vector<double> levels;
    for (int i = n - 1; i >= 0; --i) levels.push_back(0.01 * std::pow(1.01, i));  // descending
    levels.push_back(levels.front());                                             // a duplicate
    const scorekit::PerturbedMixtureScore<double, HostMem> model(mix, levels);
    std::sort(levels.begin(), levels.end());
    levels.erase(std::unique(levels.begin(), levels.end()), levels.end());
    INFO(n << " levels");
    REQUIRE(int(levels.size()) == n);
    for (int i = 0; i < n; ++i) {
      const double s = levels[std::size_t(i)];
      REQUIRE(model.level_of(s) == i);
      REQUIRE(model.level_of(std::nextafter(s, 0.0)) == -1);
      REQUIRE(model.level_of(std::nextafter(s, 1e300)) == -1);
    }
    REQUIRE(model.level_of(0.0) == -1);
    REQUIRE(model.level_of(1e300) == -1);
    REQUIRE(model.level_of(std::numeric_limits<double>::quiet_NaN()) == -1);
  }
  const scorekit::PerturbedMixtureScore<double, HostMem> none(mix);
  REQUIRE(none.level_of(0.5) == -1);
}

TEST_CASE(
    "An isotropic or diagonal mixture's score_block is score() lane by lane, with and without FMA "
    "contraction",
    "[density][mixture][block][contraction]") {
  // score_lanes is one definition for a panel and for one particle; built with and without contraction
  // (tests/contraction/), the panels (vectorised where the build's target allows) must give every
  // particle the bits of its own evaluation, NaN and overflowing rows included. 37 rows: a block of 32
  // (four panels) and a tail of 5; a tabulated level (the perturbed mixture's own) and an untabulated one.
  using ScoresFn = void (*)(const scorekit_test::HostMixture&, const double*, int, double, double, int,
                            double*, double*, double*);
  std::vector<std::pair<const char*, ScoresFn>> builds = {
      {"without contraction", &scorekit_test::contraction_off::mixture_scores}};
#ifdef SCOREKIT_TEST_CONTRACTION_ON
  if (scorekit_test::cpu_runs_contraction_on())
    builds.push_back({"with contraction", &scorekit_test::contraction_on::mixture_scores});
#endif
  for (const MixtureSpec& spec : mixture_specs()) {
    if (spec.kind == CovarianceKind::full) continue;
    const auto base = spec.build<double, HostMem>();
    const int d = spec.dim(), n = 37;
    const auto pts = mixture_points(spec, 1.0);
    std::vector<double> x(std::size_t(n * d));
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < d; ++j)
        x[std::size_t(i * d + j)] = pts[std::size_t(i) % pts.size()][std::size_t(j)] + 0.05 * i;
    x[std::size_t(9 * d)] = std::numeric_limits<double>::quiet_NaN();
    x[std::size_t(20 * d + 1)] = 1e200;
    for (const auto& [a, sigma, level] : {std::tuple<double, double, int>{1.0, 0.5, 0}, {0.8, 0.37, -1}}) {
      const auto mix = level == 0 ? base.perturbed(a, sigma) : base;
      std::vector<double> block(x.size()), single(x.size()),
          work(std::size_t(mix.max_block * mix.workspace_size()));
      for (const auto& [name, scores] : builds) {
        INFO(spec.name << ", " << name << ", level " << level);
        scores(mix, x.data(), n, a, sigma, level, block.data(), single.data(), work.data());
        REQUIRE(std::memcmp(block.data(), single.data(), block.size() * sizeof(double)) == 0);
        REQUIRE(std::isnan(single[std::size_t(9 * d)]));
        REQUIRE(std::isfinite(single[std::size_t(8 * d)]));
      }
    }
  }
}

TEST_CASE("score_block agrees with score for full blocks, tail blocks and untabulated levels",
          "[density][mixture][perturbed_score][block]") {
  // Isotropic and diagonal covariances: score_block's panels and score() run one definition
  // (GaussianMixture::score_lanes) lane by lane, so they must agree bit for bit. Full covariances:
  // score_block sums the precision products in another order than score() (per particle of a
  // transposed panel), nothing else. With T = max_k,r sum_c |P_k,rc| |diff_c| and D1 = max_k ||diff||_1,
  // each product g_r differs by at most 2 d eps T, so each l_k by delta = 2 d eps T (D1 + 1); the
  // responsibilities then move the score by at most 2 delta G, the products themselves by 2 d eps T, and
  // the weighted sum of K component scores adds (K + 4) eps G of its own.
  const double eps = std::numeric_limits<double>::epsilon();
  for (const MixtureSpec& spec : mixture_specs()) {
    const auto mix = spec.build<double, HostMem>();
    const scorekit::PerturbedMixtureScore<double, HostMem> model(mix, {0.5});
    const int d = spec.dim(), B = model.max_block, P = scorekit::GaussianMixture<double, HostMem>::panel;
    REQUIRE(model.block_size() == B);  // on the host, every kind
    const int ws = model.workspace_size();
    for (double sigma : {0.5, 0.37}) {  // tabulated (panel path for full covariances), untabulated
      for (int nb : {B, P + 3, 3}) {    // a whole block of panels, a panel and a tail, a tail alone
        auto pts = mixture_points(spec, 1.0);
        while (int(pts.size()) < nb) pts.push_back(pts[pts.size() % 3]);
        std::vector<double> x(std::size_t(nb * d)), out(std::size_t(nb * d)),
            work(std::size_t(nb * (ws + 1)));
        for (int b = 0; b < nb; ++b)
          for (int j = 0; j < d; ++j) x[std::size_t(b * d + j)] = pts[std::size_t(b)][std::size_t(j)];
        model.score_block(nb, x.data(), d, sigma, out.data(), d, work.data(), ws + 1);
        for (int b = 0; b < nb; ++b) {
          std::vector<double> single(static_cast<std::size_t>(d));
          model.score(&x[std::size_t(b * d)], sigma, single.data(), work.data());
          const Eigen::VectorXd xb = Eigen::Map<const Eigen::VectorXd>(&x[std::size_t(b * d)], d);
          double T = 0, D1 = 0;
          for (int k = 0; k < spec.components(); ++k) {
            const Eigen::VectorXd diff = xb - spec.means.row(k).transpose();
            const Eigen::MatrixXd P = spec.perturbed_covariance(k, 1.0, sigma).inverse();
            T = std::max(T, (P.cwiseAbs() * diff.cwiseAbs()).maxCoeff());
            D1 = std::max(D1, diff.cwiseAbs().sum());
          }
          const double delta = 2.0 * d * eps * T * (D1 + 1);
          const double G = component_score_scale(spec, 1.0, sigma, xb);
          const double tol = 2 * delta * G + 2.0 * d * eps * T + (spec.components() + 4) * eps * G;
          INFO(spec.name << ", sigma " << sigma << ", block of " << nb << ", particle " << b);
          for (int j = 0; j < d; ++j) {
            if (spec.kind == CovarianceKind::full)
              REQUIRE(std::fabs(out[std::size_t(b * d + j)] - single[std::size_t(j)]) <= tol);
            else
              REQUIRE(out[std::size_t(b * d + j)] == single[std::size_t(j)]);
          }
        }
      }
    }
  }
}

TEST_CASE("PerturbedMixtureScore of an already perturbed mixture composes the noise",
          "[density][mixture][perturbed_score]") {
  // a X + s Z + sigma Z' has the law of a X + sqrt(s^2 + sigma^2) Z: the model of mix.perturbed(a, s) at
  // sigma must equal mix.perturbed(a, sqrt(s^2 + sigma^2)), tabulated or not. Same rounding bound as the
  // test above (the only difference is where 1 / v and the normaliser are computed).
  const double eps = std::numeric_limits<double>::epsilon();
  for (const MixtureSpec& spec : mixture_specs()) {
    const auto mix = spec.build<double, HostMem>();
    const auto base = mix.perturbed(0.7, 0.5);
    const scorekit::PerturbedMixtureScore<double, HostMem> tabulated(base, {1.2}), untabulated(base);
    const auto direct = mix.perturbed(0.7, std::sqrt(0.25 + 1.44));
    std::vector<double> work(std::size_t(tabulated.workspace_size())), s1(std::size_t(spec.dim())),
        s2(s1.size()), s3(s1.size());
    for (const auto& p : mixture_points(spec, 0.7)) {
      const Eigen::VectorXd x = Eigen::Map<const Eigen::VectorXd>(p.data(), Eigen::Index(p.size()));
      const Reference ref = reference_log_prob(spec, 0.7, std::sqrt(1.69), x);
      const double delta = (2.0 * spec.dim() + 6) * eps * ref.term_scale;
      const double score_tol =
          (2 * delta + (spec.components() + 4) * eps) * component_score_scale(spec, 0.7, std::sqrt(1.69), x);
      const double l3 = direct.log_prob(p.data(), work.data());
      INFO(spec.name);
      REQUIRE(std::fabs(tabulated.log_prob(p.data(), 1.2, work.data()) - l3) <= 2 * delta);
      REQUIRE(std::fabs(untabulated.log_prob(p.data(), 1.2, work.data()) - l3) <= 2 * delta);
      tabulated.score(p.data(), 1.2, s1.data(), work.data());
      untabulated.score(p.data(), 1.2, s2.data(), work.data());
      direct.score(p.data(), s3.data(), work.data());
      for (std::size_t j = 0; j < s1.size(); ++j) {
        REQUIRE(std::fabs(s1[j] - s3[j]) <= 2 * score_tol);
        REQUIRE(std::fabs(s2[j] - s3[j]) <= 2 * score_tol);
      }
    }
  }
}

TEST_CASE("banana: score and Laplacian match finite differences", "[density][banana]") {
  // Haario et al.'s moderately and strongly twisted 8-D bananas, a 2-D one bent the other way, a plain
  // Gaussian (b = 0), and float.
  const std::vector<scorekit::Banana<double>> bananas = {
      {8, 0.03, 10.0}, {8, 0.1, 10.0}, {2, -0.5, 1.0}, {3, 0.0, 2.0}};
  for (const auto& banana : bananas) {
    std::vector<std::vector<double>> pts;
    const int d = banana.dim();
    for (double x0 : {0.0, 1.0, -3.0, 25.0})
      for (double x1 : {0.0, 2.0, -40.0}) {
        std::vector<double> p(std::size_t(d), 0.3);
        p[0] = x0 * banana.sigma_1() / 10;
        p[1] = x1;
        pts.push_back(p);
      }
    const std::string what = "banana d = " + std::to_string(d) + " b = " + std::to_string(banana.curvature());
    require_pass(check_score(banana, pts), what);
    require_pass(check_laplacian(banana, pts), what);
  }
  const scorekit::Banana<float> fb(2, 0.5f, 1.0f);
  const std::vector<std::vector<double>> fpts = {{0, 0}, {1, -0.5}, {-2, 3}, {3, 4}};
  require_pass(check_score(fb, fpts), "float banana");
  require_pass(check_laplacian(fb, fpts), "float banana");
}

TEST_CASE("funnel: score and Laplacian match finite differences from the neck to the mouth",
          "[density][funnel]") {
  for (const auto& funnel :
       {scorekit::Funnel<double>(2), scorekit::Funnel<double>(10), scorekit::Funnel<double>(5, 1.0)}) {
    std::vector<std::vector<double>> pts;
    const int d = funnel.dim();
    for (double v : {-7.0, -2.0, 0.0, 3.0, 8.0})
      for (double t : {0.0, 0.7, -2.5}) {  // x_i = t * e^{v/2} (i-dependent sign), i.e. t standard deviations
        std::vector<double> p(static_cast<std::size_t>(d));
        p[0] = v;
        for (int i = 1; i < d; ++i) p[std::size_t(i)] = (i % 2 ? t : -t) * std::exp(v / 2);
        pts.push_back(p);
      }
    const std::string what =
        "funnel d = " + std::to_string(d) + " scale = " + std::to_string(funnel.v_scale());
    require_pass(check_score(funnel, pts), what);
    require_pass(check_laplacian(funnel, pts), what);
  }
  const scorekit::Funnel<float> ff(3);
  const std::vector<std::vector<double>> fpts = {{0, 0.5, -1}, {-3, 0.1, 0.2}, {2, 3, -4}};
  require_pass(check_score(ff, fpts), "float funnel");
  require_pass(check_laplacian(ff, fpts), "float funnel");
}

TEST_CASE("star: a GaussianMixture on the rose r = 1 + sin(5 theta) with Dirichlet(1) weights",
          "[density][star]") {
  const auto star = scorekit::star_mixture<double, HostMem>(2024);
  REQUIRE(star.dim() == 2);
  REQUIRE(star.n_components() == 250);
  REQUIRE(star.covariance_kind() == CovarianceKind::isotropic);
  auto means = scorekit::to_host(star.means());
  auto lambda = scorekit::to_host(star.eigenvalues());
  for (int k = 0; k < 250; ++k) {
    const double theta = 2 * pi * k / 250, r = 1 + std::sin(5 * theta);
    REQUIRE(means(k, 0) == Approx(r * std::cos(theta)).margin(1e-15));
    REQUIRE(means(k, 1) == Approx(r * std::sin(theta)).margin(1e-15));
    REQUIRE(lambda(k, 0) == 0.01);  // scale is the variance
    REQUIRE(lambda(k, 1) == 0.01);
  }
  // Scores at points on the curve, at the centre where the petals meet, off the curve, and at distance
  // >= 40 from every mean (all means lie within radius 2).
  const std::vector<std::vector<double>> pts = {{0, 0},     {2, 0},      {0.3, 1.9}, {-1.2, -0.6},
                                                {0.9, 0.9}, {0.05, 0.1}, {42, 0},    {-30, 30}};
  require_pass(check_score(star, pts), "star");
  require_pass(check_laplacian(star, pts), "star");

  // Same seed, same weights; another seed, other weights.
  const auto lw = [](const GaussianMixture<double, HostMem>& m) {
    return scorekit::to_host(m.log_weights());
  };
  const auto w1 = lw(star), w2 = lw(scorekit::star_mixture<double, HostMem>(2024)),
             w3 = lw(scorekit::star_mixture<double, HostMem>(2025));
  bool differs = false;
  for (int k = 0; k < 250; ++k) {
    REQUIRE(w1(k) == w2(k));
    differs = differs || w1(k) != w3(k);
  }
  REQUIRE(differs);

  // The weights are Dirichlet(1, ..., 1): normalised Exp(1) variates, whose squared coefficient of
  // variation CV^2 = m2 / m1^2 - 1 (m1, m2 the first two sample moments of the weights) estimates
  // Var E / (E E)^2 = 1 (uniform-then-normalised weights would give 1/3). Its standard error by the delta
  // method: grad = (-2 m2 / m1^3, 1 / m1^2) against the sample covariance of (w, w^2) over N.
  const int n = 20000;
  const auto many = lw(scorekit::star_mixture<double, HostMem>(7, n));
  std::vector<double> w(static_cast<std::size_t>(n));
  for (int k = 0; k < n; ++k) w[std::size_t(k)] = std::exp(many(k)) * n;  // scale is irrelevant to CV
  double m1 = 0, m2 = 0, m3 = 0, m4 = 0;
  for (double v : w) {
    m1 += v / n;
    m2 += v * v / n;
    m3 += v * v * v / n;
    m4 += v * v * v * v / n;
  }
  const double var1 = m2 - m1 * m1, var2 = m4 - m2 * m2, cov12 = m3 - m1 * m2;
  const double g1 = -2 * m2 / (m1 * m1 * m1), g2 = 1 / (m1 * m1);
  const double se = std::sqrt((g1 * g1 * var1 + 2 * g1 * g2 * cov12 + g2 * g2 * var2) / n);
  const double cv2 = m2 / (m1 * m1) - 1;
  INFO("CV^2 = " << cv2 << " SE = " << se);
  REQUIRE(std::fabs(cv2 - 1) <= 5 * se);
  REQUIRE(5 * se < (1 - 1.0 / 3) / 2);  // the test separates Dirichlet(1) from uniform weights
}

// ===================================================================================================
// Normalisation: exp(log_prob) integrates to 1 (2-D)

namespace {

struct Quadrature {
  double integral = 0;
  double abs_log_mass = 0;  // the quadrature of |log p| p: scales the round-off of exp(log p)
};

// Trapezoid rule on [a0, b0] x [a1, b1] with n0 x n1 intervals, compensated (Kahan) summation.
// `logf(x0, x1)` returns the log of the integrand.
template <class F>
Quadrature trapezoid_2d(F&& logf, double a0, double b0, int n0, double a1, double b1, int n1) {
  const double h0 = (b0 - a0) / n0, h1 = (b1 - a1) / n1;
  double sum = 0, c = 0, abs_sum = 0;
  for (int i = 0; i <= n0; ++i)
    for (int j = 0; j <= n1; ++j) {
      const double w = h0 * h1 * ((i == 0 || i == n0) ? 0.5 : 1.0) * ((j == 0 || j == n1) ? 0.5 : 1.0);
      const double l = logf(a0 + i * h0, a1 + j * h1);
      const double term = w * std::exp(l);
      const double y = term - c, t = sum + y;
      c = (t - sum) - y;
      sum = t;
      abs_sum += term * std::fabs(l);
    }
  return {sum, abs_sum};
}

// Requires |I - 1| <= |I_n - I_2n| + tail + round-off, with I = I_2n. For the smooth, rapidly decaying
// integrands here the trapezoid error falls at least fourfold when the grid is halved, so |I_n - I_2n|
// bounds the error of I_2n. tail bounds the mass outside the box. Round-off: every log p is assumed
// accurate to 16 eps |log p| (the same assumption as scorekit::testing), which moves the integral by at
// most 16 eps * quadrature(|log p| p); the compensated sum and the weights add 8 eps.
template <class F>
void require_normalised(F&& logf, double a0, double b0, int n0, double a1, double b1, int n1, double tail,
                        const std::string& what) {
  const double eps = std::numeric_limits<double>::epsilon();
  const Quadrature coarse = trapezoid_2d(logf, a0, b0, n0, a1, b1, n1);
  const Quadrature fine = trapezoid_2d(logf, a0, b0, 2 * n0, a1, b1, 2 * n1);
  const double bound =
      std::fabs(coarse.integral - fine.integral) + tail + 16 * eps * fine.abs_log_mass + 8 * eps;
  INFO(what << ": integral " << fine.integral << " (coarse " << coarse.integral << "), bound " << bound);
  REQUIRE(std::fabs(fine.integral - 1) <= bound);
  REQUIRE(bound < 1e-9);  // sharp enough that any error in a normalising constant shows
}

// P(|N(0, 1)| > L)
double two_sided_tail(double L) { return std::erfc(L / std::sqrt(2.0)); }

}  // namespace

TEST_CASE("2-D densities are normalised", "[density][normalisation]") {
  const double L = 9;  // box half-width in standard deviations
  for (const MixtureSpec& spec : mixture_specs()) {
    if (spec.dim() != 2) continue;
    for (const auto& [a, sigma] : perturbations) {
      const auto base = spec.build<double, HostMem>();
      const auto mix = (a == 1.0 && sigma == 0.0) ? base : base.perturbed(a, sigma);
      // Box: every component mean +- L times its largest standard deviation; outside it, each component
      // puts at most 2 P(|N(0,1)| > L) (one per coordinate).
      double lo0 = 1e300, hi0 = -1e300, lo1 = 1e300, hi1 = -1e300, min_sd = 1e300;
      for (int k = 0; k < spec.components(); ++k) {
        const Eigen::VectorXd ev =
            Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(spec.perturbed_covariance(k, a, sigma))
                .eigenvalues();
        const double sd = std::sqrt(ev.maxCoeff());
        min_sd = std::min(min_sd, std::sqrt(ev.minCoeff()));
        lo0 = std::min(lo0, a * spec.means(k, 0) - L * sd);
        hi0 = std::max(hi0, a * spec.means(k, 0) + L * sd);
        lo1 = std::min(lo1, a * spec.means(k, 1) - L * sd);
        hi1 = std::max(hi1, a * spec.means(k, 1) + L * sd);
      }
      // Coarse grid spacing about half the smallest standard deviation.
      const int n0 = int(std::ceil((hi0 - lo0) / (0.5 * min_sd))),
                n1 = int(std::ceil((hi1 - lo1) / (0.5 * min_sd)));
      std::vector<double> work(std::size_t(mix.workspace_size()));
      const auto logf = [&](double x0, double x1) {
        const double x[2] = {x0, x1};
        return mix.log_prob(x, work.data());
      };
      require_normalised(logf, lo0, hi0, n0, lo1, hi1, n1, 2 * two_sided_tail(L),
                         spec.name + " perturbed(" + std::to_string(a) + ", " + std::to_string(sigma) + ")");
    }
  }
  {
    // Banana: outside the box |y_1| <= L sigma_1 and |y_2| <= L, which the box below contains.
    const double b = 0.5, s1 = 1;
    const scorekit::Banana<double> banana(2, b, s1);
    std::vector<double> x(2);  // (a vector, not a double[2]: GCC cannot see that dim() == 2)
    const auto logf = [&](double x0, double x1) {
      x[0] = x0;
      x[1] = x1;
      return banana.log_prob(x.data());
    };
    require_normalised(logf, -L * s1, L * s1, 360, -b * s1 * s1 - L, b * (L * L - 1) * s1 * s1 + L, 240,
                       2 * two_sided_tail(L), "banana");
  }
  {
    // Funnel with Neal's scale 3: integrate in (v, t) with x = e^{v/2} t, dx = e^{v/2} dt, which makes
    // the integrand N(v; 0, 9) N(t; 0, 1) when the normaliser is right (a plain grid in x cannot resolve
    // both the neck and the mouth).
    const scorekit::Funnel<double> funnel(2, 3.0);
    const auto logf = [&](double v, double t) {
      const double x[2] = {v, std::exp(v / 2) * t};
      return funnel.log_prob(x) + v / 2;
    };
    require_normalised(logf, -L * 3, L * 3, 54, -L, L, 36, 2 * two_sided_tail(L), "funnel");
  }
  {
    const auto star = scorekit::star_mixture<double, HostMem>(11);
    std::vector<double> work(std::size_t(star.workspace_size()));
    const auto logf = [&](double x0, double x1) {
      const double x[2] = {x0, x1};
      return star.log_prob(x, work.data());
    };
    const double half = 2 + L * 0.1;  // means within radius 2, standard deviation 0.1
    require_normalised(logf, -half, half, 116, -half, half, 116, 2 * two_sided_tail(L), "star");
  }
}

// ===================================================================================================
// Exact draws on every backend

namespace {

struct SampleMoments {
  Eigen::VectorXd mean, mean_se;
  Eigen::MatrixXd cov, cov_se;
};

template <class HostView>
SampleMoments sample_moments(const HostView& x) {
  const std::int64_t n = std::int64_t(x.extent(0));
  const int d = int(x.extent(1));
  SampleMoments m{Eigen::VectorXd::Zero(d), Eigen::VectorXd::Zero(d), Eigen::MatrixXd::Zero(d, d),
                  Eigen::MatrixXd::Zero(d, d)};
  for (std::int64_t i = 0; i < n; ++i)
    for (int j = 0; j < d; ++j) m.mean[j] += double(x(i, j)) / double(n);
  for (int j = 0; j < d; ++j)
    for (int k = j; k < d; ++k) {
      double s = 0, s2 = 0;
      for (std::int64_t i = 0; i < n; ++i) {
        const double z = (double(x(i, j)) - m.mean[j]) * (double(x(i, k)) - m.mean[k]);
        s += z;
        s2 += z * z;
      }
      const double c = s / double(n);
      const double var_z = (s2 - double(n) * c * c) / double(n - 1);
      m.cov(j, k) = m.cov(k, j) = c;
      m.cov_se(j, k) = m.cov_se(k, j) = std::sqrt(var_z / double(n));
    }
  for (int j = 0; j < d; ++j) m.mean_se[j] = std::sqrt(m.cov(j, j) * double(n) / double(n - 1) / double(n));
  return m;
}

void require_moments(const SampleMoments& m, const Eigen::VectorXd& mean, const Eigen::MatrixXd& cov,
                     const std::string& what) {
  for (Eigen::Index j = 0; j < mean.size(); ++j) {
    INFO(what << ": mean[" << j << "] sample " << m.mean[j] << " exact " << mean[j] << " SE "
              << m.mean_se[j]);
    REQUIRE(std::fabs(m.mean[j] - mean[j]) <= 5 * m.mean_se[j]);
  }
  for (Eigen::Index j = 0; j < mean.size(); ++j)
    for (Eigen::Index k = j; k < mean.size(); ++k) {
      INFO(what << ": cov(" << j << ", " << k << ") sample " << m.cov(j, k) << " exact " << cov(j, k)
                << " SE " << m.cov_se(j, k));
      REQUIRE(std::fabs(m.cov(j, k) - cov(j, k)) <= 5 * m.cov_se(j, k));
    }
}

// Draws n particles in Exec's memory space and returns a host copy.
template <class Exec, class Density>
auto draw_on(const Density& density, std::int64_t n, std::uint64_t seed) {
  using Real = typename Density::value_type;
  auto x = scorekit::make_particles<Real>(Exec(), n, density.dim());
  scorekit::draw_exact(Exec(), density, x, seed);
  return scorekit::to_host(x);
}

// Mixture moments: mean = sum_k w_k a mu_k, cov = sum_k w_k (a^2 Sigma_k + sigma^2 I + a^2 mu_k mu_k^T)
// - mean mean^T.
void mixture_moments(const Eigen::VectorXd& weights, const Eigen::MatrixXd& means,
                     const std::vector<Eigen::MatrixXd>& covs, Eigen::VectorXd& mean, Eigen::MatrixXd& cov) {
  const Eigen::VectorXd w = weights / weights.sum();
  const int d = int(means.cols());
  mean = Eigen::VectorXd::Zero(d);
  cov = Eigen::MatrixXd::Zero(d, d);
  for (int k = 0; k < int(w.size()); ++k) {
    const Eigen::VectorXd mu = means.row(k).transpose();
    mean += w[k] * mu;
    cov += w[k] * (covs[std::size_t(k)] + mu * mu.transpose());
  }
  cov -= mean * mean.transpose();
}

// Stein's identities for X ~ p (p smooth and decaying): E[s(X)] = 0 and E[Laplacian(X) + |s(X)|^2] =
// E[Delta p / p] = integral of Delta p = 0. The scores and Laplacians are evaluated INSIDE a Kokkos kernel
// on Exec, each particle with its own workspace row.
template <class Exec, class Density, class Particles>
void require_stein(const Density& density, const Particles& x, const std::string& what) {
  using Real = typename Density::value_type;
  using Mem = typename Exec::memory_space;
  const int d = density.dim();
  const std::int64_t n = std::int64_t(x.extent(0));
  const int ws = std::max(1, scorekit::workspace_size(density));
  Kokkos::View<Real**, Kokkos::LayoutRight, Mem> work("test::work", n, ws), out("test::stein", n, d + 1);
  Kokkos::parallel_for(
      "test::stein_statistics", Kokkos::RangePolicy<Exec>(0, n), KOKKOS_LAMBDA(const int i) {
        Real* s = &out(i, 0);
        scorekit::score(density, &x(i, 0), s, &work(i, 0));
        Real s2 = 0;
        for (int j = 0; j < d; ++j) s2 += s[j] * s[j];
        out(i, d) = scorekit::laplacian(density, &x(i, 0), &work(i, 0)) + s2;
      });
  const auto h = scorekit::to_host(out);
  for (int j = 0; j <= d; ++j) {
    double sum = 0, sum2 = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      sum += double(h(i, j));
      sum2 += double(h(i, j)) * double(h(i, j));
    }
    const double mean = sum / double(n);
    const double se = std::sqrt((sum2 - double(n) * mean * mean) / double(n - 1) / double(n));
    INFO(what << ": Stein statistic " << (j < d ? "s[" + std::to_string(j) + "]" : std::string("lap + |s|^2"))
              << " mean " << mean << " SE " << se);
    REQUIRE(std::fabs(mean) <= 5 * se);
  }
}

// One exact draw of n particles on Exec, then the closed-form moments on a host copy and, when `stein`,
// Stein's identities evaluated in a kernel on the same particles.
template <class Exec, class Density>
void require_exact_draws(const Density& density, std::int64_t n, std::uint64_t seed,
                         const Eigen::VectorXd& mean, const Eigen::MatrixXd& cov, const std::string& what,
                         bool stein = true) {
  using Real = typename Density::value_type;
  auto x = scorekit::make_particles<Real>(Exec(), n, density.dim());
  scorekit::draw_exact(Exec(), density, x, seed);
  require_moments(sample_moments(scorekit::to_host(x)), mean, cov, what);
  if (stein) require_stein<Exec>(density, x, what);
}

}  // namespace

TEMPLATE_LIST_TEST_CASE(
    "draw_exact: mixture draws have the closed-form moments and satisfy Stein's identities",
    "[density][draw][mixture]", scorekit_test::Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const std::int64_t n = 40000;
  std::uint64_t seed = 100;
  for (const MixtureSpec& spec : mixture_specs())
    for (const auto& [a, sigma] : perturbations) {
      const auto base = spec.build<double, Mem>();
      const auto mix = (a == 1.0 && sigma == 0.0) ? base : base.perturbed(a, sigma);
      std::vector<Eigen::MatrixXd> covs;
      for (int k = 0; k < spec.components(); ++k) covs.push_back(spec.perturbed_covariance(k, a, sigma));
      Eigen::VectorXd mean;
      Eigen::MatrixXd cov;
      mixture_moments(spec.weights, a * spec.means, covs, mean, cov);
      const std::string what =
          spec.name + " perturbed(" + std::to_string(a) + ", " + std::to_string(sigma) + ")";
      require_exact_draws<Exec>(mix, n, ++seed, mean, cov, what);
    }
  // float
  for (const MixtureSpec& spec : mixture_specs()) {
    if (spec.kind != CovarianceKind::full || spec.single_gaussian) continue;
    const auto mix = spec.build<float, Mem>();
    Eigen::VectorXd mean;
    Eigen::MatrixXd cov;
    mixture_moments(spec.weights, spec.means, spec.full, mean, cov);
    require_exact_draws<Exec>(mix, n, ++seed, mean, cov, "float " + spec.name);
  }
}

TEMPLATE_LIST_TEST_CASE("draw_exact: banana, funnel and star draws have the closed-form moments",
                        "[density][draw]", scorekit_test::Backends) {
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const std::int64_t n = 40000;
  {
    for (const auto& banana :
         {scorekit::Banana<double>(8, 0.1, 10.0), scorekit::Banana<double>(2, -0.5, 1.0)}) {
      const int d = banana.dim();
      const double s1 = banana.sigma_1(), b = banana.curvature();
      Eigen::MatrixXd cov = Eigen::MatrixXd::Identity(d, d);
      cov(0, 0) = s1 * s1;
      cov(1, 1) = 1 + 2 * b * b * s1 * s1 * s1 * s1;
      const std::string what = "banana d = " + std::to_string(d);
      require_exact_draws<Exec>(banana, n, 1, Eigen::VectorXd::Zero(d), cov, what);
    }
    const scorekit::Banana<float> fb(3, 0.5f, 1.0f);
    Eigen::MatrixXd cov = Eigen::MatrixXd::Identity(3, 3);
    cov(1, 1) = 1 + 2 * 0.25;
    require_exact_draws<Exec>(fb, n, 3, Eigen::VectorXd::Zero(3), cov, "float banana");
  }
  {
    // Funnel with scale 1: Var x_i = E e^v = e^{1/2}. (With Neal's scale 3 the x_i have kurtosis
    // 3 e^9, so their sample covariance has no usable standard error; see the next block.)
    const scorekit::Funnel<double> funnel(5, 1.0);
    Eigen::MatrixXd cov = std::exp(0.5) * Eigen::MatrixXd::Identity(5, 5);
    cov(0, 0) = 1;
    require_exact_draws<Exec>(funnel, n, 4, Eigen::VectorXd::Zero(5), cov, "funnel s = 1");
  }
  {
    // Funnel with Neal's scale 3, through log x_i^2 = v + log chi^2_1: E = E[log chi^2_1] = -gamma - log 2,
    // Var = 9 + psi'(1/2) = 9 + pi^2 / 2, Cov(v, log x_i^2) = Var v = 9, and Var v = 9, E v = 0.
    const scorekit::Funnel<double> funnel(4, 3.0);
    const auto h = draw_on<Exec>(funnel, n, 6);
    Kokkos::View<double**, Kokkos::LayoutRight, Kokkos::HostSpace> t("log_squares", n, 4);
    for (std::int64_t i = 0; i < n; ++i) {
      t(i, 0) = h(i, 0);
      for (int j = 1; j < 4; ++j) t(i, j) = std::log(h(i, j) * h(i, j));
    }
    const double euler_gamma = 0.57721566490153286061;
    Eigen::VectorXd mean = Eigen::VectorXd::Constant(4, -euler_gamma - std::log(2.0));
    mean[0] = 0;
    Eigen::MatrixXd cov = Eigen::MatrixXd::Constant(4, 4, 9.0);  // Cov(log x_i^2, log x_j^2) = Var v
    for (int j = 1; j < 4; ++j) cov(j, j) = 9 + pi * pi / 2;
    require_moments(sample_moments(t), mean, cov, "funnel s = 3 (log x^2)");
  }
  {
    const auto star = scorekit::star_mixture<double, Mem>(99);
    const auto mu = scorekit::to_host(star.means());
    const auto lw = scorekit::to_host(star.log_weights());
    Eigen::VectorXd w(250);
    Eigen::MatrixXd means(250, 2);
    std::vector<Eigen::MatrixXd> covs;
    for (int k = 0; k < 250; ++k) {
      w[k] = std::exp(lw(k));
      means(k, 0) = mu(k, 0);
      means(k, 1) = mu(k, 1);
      covs.push_back(0.01 * Eigen::MatrixXd::Identity(2, 2));
    }
    Eigen::VectorXd mean;
    Eigen::MatrixXd cov;
    mixture_moments(w, means, covs, mean, cov);
    require_exact_draws<Exec>(star, n, 7, mean, cov, "star");
  }
}

TEMPLATE_LIST_TEST_CASE("fill_uniform and fill_normal have the right moments", "[density][draw]",
                        scorekit_test::Backends) {
  using Exec = TestType;
  const std::int64_t n = 40000;
  auto x = scorekit::make_particles<double>(Exec(), n, 3);
  scorekit::fill_uniform(Exec(), x, -2.0, 5.0, 17);
  auto h = scorekit::to_host(x);
  for (std::int64_t i = 0; i < n; ++i)
    for (int j = 0; j < 3; ++j) REQUIRE((h(i, j) >= -2.0 && h(i, j) <= 5.0));
  require_moments(sample_moments(h), Eigen::VectorXd::Constant(3, 1.5),
                  Eigen::MatrixXd::Identity(3, 3) * (49.0 / 12), "uniform[-2, 5]");
  auto y = scorekit::make_particles<float>(Exec(), n, 2);
  scorekit::fill_normal(Exec(), y, 1.5f, 0.25f, 18);
  require_moments(sample_moments(scorekit::to_host(y)), Eigen::VectorXd::Constant(2, 1.5),
                  Eigen::MatrixXd::Identity(2, 2) * 0.0625, "normal(1.5, 0.25^2)");
}

TEMPLATE_LIST_TEST_CASE("draw_exact is bitwise the per-particle draw, whatever the thread count",
                        "[density][draw][threads]", scorekit_test::Backends) {
  // The reference is a plain host loop over particles with the same generators; every backend and
  // thread count must reproduce it bit for bit (host backends: no FMA contraction differs between them).
  using Exec = TestType;
  using Mem = typename Exec::memory_space;
  const std::int64_t n = 2000;
  const auto check = [&](const auto& density, std::uint64_t seed) {
    using Real = typename std::decay_t<decltype(density)>::value_type;
    const auto h = draw_on<Exec>(density, n, seed);
    std::vector<Real> row(std::size_t(density.dim()));
    for (std::int64_t i = 0; i < n; ++i) {
      scorekit::CounterRng<Real> rng(seed, std::uint64_t(i), 0, scorekit::RngStream::init);
      density.draw(rng, row.data());
      for (int j = 0; j < density.dim(); ++j) REQUIRE(h(i, j) == row[std::size_t(j)]);
    }
  };
  check(scorekit::star_mixture<double, Mem>(5), 31);
  check(scorekit::Funnel<float>(4), 32);
  check(scorekit::Banana<double>(3, 0.1, 10.0), 33);
  check(mixture_specs()[2].build<double, Mem>(), 34);
}

// ===================================================================================================
// Bad input

TEST_CASE("bad density parameters throw with a message naming the problem", "[density][errors]") {
  using Mix = GaussianMixture<double, HostMem>;
  using Catch::Matchers::Contains;
  using scorekit::dimension_mismatch;
  using scorekit::invalid_argument;
  const Eigen::VectorXd w2 = Eigen::VectorXd::Ones(2);
  const Eigen::MatrixXd m2 = Eigen::MatrixXd::Zero(2, 2);
  REQUIRE_THROWS_WITH(Mix::isotropic(w2, m2, Eigen::Vector2d(1.0, 0.0)), Contains("component variance"));
  REQUIRE_THROWS_WITH(Mix::isotropic(w2, m2, Eigen::Vector2d(1.0, -1.0)), Contains("must be positive"));
  REQUIRE_THROWS_WITH(Mix::isotropic(Eigen::Vector2d(1.0, 0.0), m2, w2), Contains("mixture weight"));
  REQUIRE_THROWS_WITH(Mix::isotropic(Eigen::Vector2d(1.0, -0.5), m2, w2), Contains("mixture weight"));
  REQUIRE_THROWS_WITH(Mix::diagonal(w2, m2, Eigen::MatrixXd::Constant(2, 2, -1.0)),
                      Contains("diagonal variance"));
  REQUIRE_THROWS_AS(Mix::isotropic(Eigen::VectorXd::Ones(3), m2, w2), dimension_mismatch);
  REQUIRE_THROWS_WITH(Mix::isotropic(Eigen::VectorXd::Ones(3), m2, w2), Contains("weights"));
  REQUIRE_THROWS_AS(Mix::diagonal(w2, m2, Eigen::MatrixXd::Ones(2, 3)), dimension_mismatch);
  Eigen::MatrixXd nan_means = m2;
  nan_means(1, 0) = std::nan("");
  REQUIRE_THROWS_WITH(Mix::isotropic(w2, nan_means, w2), Contains("NaN"));
  Eigen::Matrix2d nonsym;
  nonsym << 1, 0.5, 0.2, 1;
  REQUIRE_THROWS_WITH(Mix::full(w2, m2, {nonsym, nonsym}), Contains("not symmetric"));
  Eigen::Matrix2d indefinite;
  indefinite << 1, 2, 2, 1;
  REQUIRE_THROWS_WITH(Mix::full(w2, m2, {indefinite, indefinite}), Contains("not positive definite"));
  REQUIRE_THROWS_AS(Mix::full(w2, m2, {Eigen::Matrix3d::Identity(), Eigen::Matrix3d::Identity()}),
                    dimension_mismatch);
  REQUIRE_THROWS_AS(Mix::full(w2, m2, {Eigen::Matrix2d::Identity()}), dimension_mismatch);
  REQUIRE_THROWS_AS(
      (scorekit::gaussian<double, HostMem>(Eigen::Vector3d::Zero(), Eigen::Matrix2d::Identity())),
      dimension_mismatch);
  const Mix ok = Mix::isotropic(w2, m2, w2);
  REQUIRE_THROWS_WITH(ok.perturbed(0.0, 1.0), Contains("scale a"));
  REQUIRE_THROWS_WITH(ok.perturbed(1.0, -0.1), Contains("sigma"));
  REQUIRE_THROWS_WITH(ok.perturbed(1.0, std::nan("")), Contains("sigma"));
  REQUIRE_THROWS_WITH((scorekit::PerturbedMixtureScore<double, HostMem>(ok, {0.5, 0.0})),
                      Contains("noise level"));

  REQUIRE_THROWS_WITH(scorekit::Banana<double>(1, 0.5, 1.0), Contains("dimension must be at least 2"));
  REQUIRE_THROWS_WITH(scorekit::Banana<double>(2, 0.5, 0.0), Contains("sigma_1"));
  REQUIRE_THROWS_WITH(scorekit::Banana<double>(2, 0.5, -1.0), Contains("sigma_1"));
  REQUIRE_THROWS_WITH(scorekit::Banana<double>(2, std::nan(""), 1.0), Contains("curvature"));
  REQUIRE_THROWS_AS(scorekit::Banana<float>(2, INFINITY, 1.0f), invalid_argument);
  REQUIRE_THROWS_WITH(scorekit::Funnel<double>(1), Contains("dimension must be at least 2"));
  REQUIRE_THROWS_WITH(scorekit::Funnel<double>(3, -3.0), Contains("scale of v"));
  REQUIRE_THROWS_WITH(scorekit::Funnel<double>(3, std::nan("")), Contains("scale of v"));
  REQUIRE_THROWS_WITH((scorekit::star_mixture<double, HostMem>(1, 0)), Contains("number of components"));
  REQUIRE_THROWS_WITH((scorekit::star_mixture<double, HostMem>(1, 250, 0.0)),
                      Contains("variance of each component"));
}

TEST_CASE("bad sampling arguments throw with a message naming the problem", "[density][errors][draw]") {
  using Catch::Matchers::Contains;
  const Kokkos::DefaultHostExecutionSpace exec;
  scorekit::ParticleView<double, Kokkos::HostSpace> x("x", 10, 3);
  REQUIRE_THROWS_AS(scorekit::draw_exact(exec, scorekit::Funnel<double>(2), x, 1),
                    scorekit::dimension_mismatch);
  REQUIRE_THROWS_WITH(scorekit::draw_exact(exec, scorekit::Funnel<double>(2), x, 1), Contains("draw_exact"));
  REQUIRE_THROWS_WITH(scorekit::fill_uniform(exec, x, 1.0, 1.0, 1), Contains("lo < hi"));
  REQUIRE_THROWS_WITH(scorekit::fill_uniform(exec, x, 0.0, INFINITY, 1), Contains("lo < hi"));
  REQUIRE_THROWS_WITH(scorekit::fill_normal(exec, x, 0.0, 0.0, 1), Contains("standard deviation"));
  REQUIRE_THROWS_WITH(scorekit::fill_normal(exec, x, std::nan(""), 1.0, 1), Contains("mean"));
}

// ===================================================================================================
// The conformance checks, on densities written by an outsider

namespace {

// A user's density: a plain struct, no workspace, two-argument score. Unnormalised: the double well
// log p(x) = -(x_0^2 - 1)^2 - x_1^2 / 2 (its normaliser is not closed form, and the checks never need it).
struct DoubleWell {
  using value_type = double;
  KOKKOS_INLINE_FUNCTION int dim() const { return 2; }
  KOKKOS_INLINE_FUNCTION double log_prob(const double* x) const {
    return -(x[0] * x[0] - 1) * (x[0] * x[0] - 1) - 0.5 * x[1] * x[1];
  }
  KOKKOS_INLINE_FUNCTION void score(const double* x, double* out) const {
    out[0] = -4 * x[0] * (x[0] * x[0] - 1);
    out[1] = -x[1];
  }
  KOKKOS_INLINE_FUNCTION double laplacian(const double* x) const { return -(12 * x[0] * x[0] - 4) - 1; }
};

// The same with a score off by a relative 1e-7 in one component: the check must notice.
struct DoubleWellSlightlyWrongScore : DoubleWell {
  KOKKOS_INLINE_FUNCTION void score(const double* x, double* out) const {
    DoubleWell::score(x, out);
    out[0] *= 1 + 1e-7;
  }
};

// The same with the classic mistake of a Laplacian that forgets one coordinate's term.
struct DoubleWellWrongLaplacian : DoubleWell {
  KOKKOS_INLINE_FUNCTION double laplacian(const double* x) const { return -(12 * x[0] * x[0] - 4); }
};

// One dimension, log p = -x^4 / 4 (unnormalised): third derivative of log p is -6 x, nonzero at x = 1.5.
struct Quartic {
  using value_type = double;
  KOKKOS_INLINE_FUNCTION int dim() const { return 1; }
  KOKKOS_INLINE_FUNCTION double log_prob(const double* x) const { return -0.25 * x[0] * x[0] * x[0] * x[0]; }
  KOKKOS_INLINE_FUNCTION void score(const double* x, double* out) const { out[0] = -x[0] * x[0] * x[0]; }
};

// Returns NaN away from the origin (an overflow bug, say).
struct Broken : DoubleWell {
  KOKKOS_INLINE_FUNCTION double log_prob(const double* x) const {
    return x[0] > 1 ? scorekit::math::quiet_nan<double>() : DoubleWell::log_prob(x);
  }
};

}  // namespace

TEST_CASE("the conformance checks accept a user's density and reject wrong ones", "[testing][density]") {
  using Catch::Matchers::Contains;
  using scorekit::testing::FiniteDifferenceOptions;
  const std::vector<std::vector<double>> pts = {{0, 0}, {1, 0.5}, {-1.3, 2}, {0.4, -3}, {7, 1}};
  static_assert(scorekit::is_density_v<DoubleWell>, "a plain struct is a Density");
  require_pass(check_score(DoubleWell{}, pts), "user density");
  require_pass(check_laplacian(DoubleWell{}, pts), "user density");

  Eigen::MatrixXd m(2, 2);
  m << 0.1, 0.2, -0.5, 1.5;
  require_pass(check_score(DoubleWell{}, m), "user density, Eigen points");

  const auto wrong = check_score(DoubleWellSlightlyWrongScore{}, pts);
  INFO(wrong.message());
  REQUIRE_FALSE(wrong.passed);
  REQUIRE(wrong.worst_coordinate == 0);
  REQUIRE_THAT(wrong.message(), Contains("FAILED") && Contains("score[0]"));
  // A relative error of 1e-7 is far above the derived allowance: the tolerance is tight, not generous.
  REQUIRE(wrong.error > 10 * wrong.allowed);
  // The same density passes when the caller explicitly allows that much relative error.
  FiniteDifferenceOptions loose;
  loose.rtol = 2e-7;
  require_pass(check_score(DoubleWellSlightlyWrongScore{}, pts, loose), "rtol covers the error");

  const auto wrong_lap = check_laplacian(DoubleWellWrongLaplacian{}, pts);
  REQUIRE_FALSE(wrong_lap.passed);
  REQUIRE_THAT(wrong_lap.message(), Contains("laplacian"));
  REQUIRE(wrong_lap.n_failures == pts.size());  // off by exactly 1 everywhere

  const auto broken = check_score(Broken{}, pts);
  REQUIRE_FALSE(broken.passed);
  REQUIRE_THAT(broken.message(), Contains("NaN") && Contains("log_prob"));

  REQUIRE_THROWS_AS(check_score(DoubleWell{}, std::vector<std::vector<double>>{{0.0, 1.0}, {1.0, 2.0, 3.0}}),
                    scorekit::dimension_mismatch);
  REQUIRE_THROWS_WITH(check_score(DoubleWell{}, std::vector<std::vector<double>>{}),
                      Contains("at least one point"));
  FiniteDifferenceOptions bad;
  bad.h = -1;
  REQUIRE_THROWS_WITH(check_score(DoubleWell{}, pts, bad), Contains("step h"));
}

TEST_CASE("the checks' allowance follows the finite-difference error: smaller with a better step",
          "[testing][density]") {
  // With h ten times smaller the truncation estimate |D(h) - D(h/2)| falls about a hundredfold (it is
  // O(h^2)) at a point where the third derivative is far from zero.
  scorekit::testing::FiniteDifferenceOptions coarse, fine;
  coarse.h = 1e-3;
  fine.h = 1e-4;
  const std::vector<std::vector<double>> pt = {{1.5}};
  const auto rc = check_score(Quartic{}, pt, coarse), rf = check_score(Quartic{}, pt, fine);
  require_pass(rc, "h = 1e-3");
  require_pass(rf, "h = 1e-4");
  REQUIRE(rc.truncation / rf.truncation == Approx(100).epsilon(0.01));
}
