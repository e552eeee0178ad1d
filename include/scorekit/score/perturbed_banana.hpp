// The noise-conditional score of the banana (density/banana.hpp): s(x, sigma) = grad_x log p_sigma(x) with
// p_sigma = p * N(0, sigma^2 I), the law of X + sigma Z, X ~ banana, Z ~ N(0, I). Unlike a Gaussian
// mixture, the banana's perturbed density has no closed form; this is what annealed Langevin needs to
// sample it, and the ground truth a learned noise-conditional score of the banana is checked against.
//
// DERIVATION. Write X = phi(Y), Y ~ N(0, diag(s1^2, 1, ..., 1)), phi(y) = (y1, y2 + b (y1^2 - s1^2),
// y3, ...), and x = X + sigma Z. Coordinates k >= 3 are N(0, 1 + sigma^2) and independent of the rest.
// For the first two, condition on y1:
//  * x1 = y1 + sigma z1, so x1 ~ N(0, c) with c = s1^2 + sigma^2, and y1 | x1 ~ N(m, tau^2) with
//      m = x1 s1^2 / c,   tau^2 = s1^2 sigma^2 / c        (the Gaussian posterior of y1 given x1);
//  * given y1, x2 = y2 + b (y1^2 - s1^2) + sigma z2 ~ N(b (y1^2 - s1^2), v), v = 1 + sigma^2, and it is
//    independent of x1 given y1 (z1, z2 and y2 are independent).
// Integrating y2 and z2 out analytically and y1 against its posterior given x1,
//   p_sigma(x) = N(x1; 0, c) * I(x) * prod_{k>=3} N(x_k; 0, v),
//   I(x) = E_{u ~ N(0,1)} [ N(r(u); 0, v) ],   r(u) = x2 - b (y(u)^2 - s1^2),   y(u) = m + tau u.   (1)
// The one-dimensional expectation is a Gauss-Hermite sum over nodes u_i with normalised probabilists'
// weights w_i (sum w_i = 1), taken in log space with a streaming log-sum-exp (a running maximum M of
// l_i = log w_i - r_i^2 / (2 v), rescaling the partial sums when it grows), so that points far from the
// banana, where every N(r_i; 0, v) underflows, still get a finite log-density.
//
// SCORE. Differentiate the quadrature sum itself, log I_n(x) = log sum_i w_i N(r_i(x); 0, v). The nodes
// u_i are fixed and y_i = m(x1) + tau u_i with dm/dx1 = s1^2 / c, so dr_i/dx2 = 1 and
// dr_i/dx1 = -2 b y_i s1^2 / c. With the posterior node weights pi_i = w_i N(r_i; 0, v) / sum_j (...),
//   d/dx1 log p = -x1 / c + (2 b s1^2 / (c v)) sum_i pi_i r_i y_i,
//   d/dx2 log p = -sum_i pi_i r_i / v,        d/dx_k log p = -x_k / v   (k >= 3).
// This is Tweedie's posterior-mean form (E[X | x] - x) / sigma^2 evaluated with the same weights (e.g.
// E[X2 | x] = x2 - (sigma^2 / v) E[r | x] since E[y2 | y2 + sigma z2 = r] = r / v), and, because it
// differentiates the sum that log_prob returns, score() is the EXACT gradient of log_prob() for any number
// of nodes: the quadrature error is the same smooth function of x in both, never a mismatch between them.
// At sigma = 0: c = s1^2, v = 1, tau = 0, m = x1, every node sits at y = x1 and both reduce to the
// banana's own log-density and score; sigma = 0 takes that path exactly (one evaluation, no sum).
//
// QUADRATURE ACCURACY. As a function of u the integrand of (1) is exp(-r(u)^2 / (2 v)): smooth (entire),
// so Gauss-Hermite converges, at a rate set by how narrow it is against the N(0, 1) weight. Where the
// posterior puts y1 = y, |dr/du| = 2 |b| tau |y|, so the integrand has width sqrt(v) / (2 |b| tau |y|) in
// u, and the nodes near u = 0, about pi / sqrt(n) apart, must resolve it. The ratio
//   kappa(x, sigma) = 2 |b| tau Y / sqrt(1 + sigma^2),
//   Y = max(|m| + 2 tau, min(y_arm, |m| + 5 tau)),   y_arm = sqrt(max(0, x2 / b + s1^2)),           (2)
// measures this: y_arm is where the banana's arm crosses height x2 (r = 0 there), which is where the
// posterior of y1 moves to when it lies within a few tau of m; Y bounds |y| over the posterior's bulk.
// (At m = 0 and x2 low, kappa = 4 |b| tau^2 / sqrt(1 + sigma^2): the curvature term alone.) Measured
// against n = 1200 nodes at 96000 exact draws of p_sigma (eight bananas, sigma_1 from 0.3 to 30, b from
// -1 to 2, and sigma from 0.1 to 20), every point with
//   n >= 16 + 12 kappa^2                                                                              (3)
// had |error| < 1e-6 (the worst 3e-7) in log p_sigma and in each score component relative to
// max(1, |score|), for every n from 16 to 768 that satisfies (3); kappa()
// evaluates (2), and tests/test_perturbed_banana.cpp checks (3) at hard points. For the common bananas,
// at the default n = 64 (worst of 2000 exact draws at each sigma in {0.05, 0.3, 1, 2, 5, 20}):
//  * sigma_1 = 1, b = 0.5 (the usual 2-D picture): error < 1e-11 in log p_sigma, < 1e-10 in the score;
//  * sigma_1 = 10, b = 0.03 (Haario et al., moderately twisted): < 1e-11;
//  * sigma_1 = 10, b = 0.1 (Haario et al., strongly twisted): kappa reaches 8 for sigma in [1, 5]. There
//    n = 64 is exact at the median draw (< 1e-9) but not in the tails: at sigma = 2 the 90th, 99th and
//    100th percentiles of the error are 1e-6, 2e-3 and 4e-2 in log p_sigma, 7e-6, 1e-2 and 0.4 in the
//    score; n = 384 brings every error below 1e-6 (1e-8 in log p_sigma), n = 512 below 1e-8.
// Whatever n, the approximation is itself a normalised density: each node contributes a normalised
// Gaussian in x2 and the weights sum to one, so exp(log_prob) integrates to exactly 1 for every n, and
// score() is its exact gradient. The cost is n exponentials per evaluation; the rule is computed once, at
// construction.
//
// NOISE LEVELS. score() and log_prob() run inside kernels and cannot throw. sigma = 0 gives the banana;
// only sigma^2 enters, so sigma < 0 acts as |sigma|; a NaN or infinite sigma gives NaN, which the
// samplers' non-finite check reports. Validate a noise ladder on the host (check_noise_ladder in
// sample/annealed_langevin.hpp, or require_noise_level below).
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/density/banana.hpp>

#include <Eigen/Core>
#include <Eigen/Eigenvalues>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

// Loops over coordinates 3..d: see SCOREKIT_ARRAY_BOUNDS_FALSE_POSITIVE_BEGIN.
SCOREKIT_ARRAY_BOUNDS_FALSE_POSITIVE_BEGIN

namespace scorekit {
namespace detail {

/// An n-node Gauss-Hermite rule for E_{u ~ N(0,1)} f(u) (probabilists' weight exp(-u^2 / 2)): nodes in
/// increasing order and the logarithms of the weights, normalised to sum to one.
struct GaussHermiteRule {
  std::vector<double> nodes;
  std::vector<double> log_weights;
};

/// Orthonormal Hermite polynomials p_k (E p_j p_k = delta_jk under N(0,1)) by their three-term recurrence
/// x p_k = sqrt(k + 1) p_{k+1} + sqrt(k) p_{k-1}: returns p_{n-1}(x) and p_n(x) and log sum_{k<n} p_k(x)^2,
/// all on a common scale exp(log_scale) that is rescaled on the way so that nothing overflows (p_k(x)
/// grows like exp(x^2 / 4), past double range for n in the hundreds).
inline void orthonormal_hermite(int n, double x, double& p_last, double& p_n, double& log_sum_squares) {
  const double big = 1e100;
  double p_prev = 0, p = 1, sum = 1, log_scale = 0;  // p_0 = 1
  for (int k = 0; k + 1 < n; ++k) {
    const double next = (x * p - std::sqrt(double(k)) * p_prev) / std::sqrt(double(k + 1));
    p_prev = p;
    p = next;
    sum += p * p;
    if (std::fabs(p) > big) {
      p /= big;
      p_prev /= big;
      sum /= big * big;
      log_scale += std::log(big);
    }
  }
  p_last = p;
  p_n = (x * p - std::sqrt(double(n - 1)) * p_prev) / std::sqrt(double(n));
  log_sum_squares = std::log(sum) + 2 * log_scale;
}

/// The Gauss-Hermite rule of n >= 2 nodes. Nodes by Golub and Welsch ("Calculation of Gauss quadrature
/// rules", Math. Comp. 23, 1969): the eigenvalues of the symmetric Jacobi matrix of the monic recurrence
/// He_{k+1} = x He_k - k He_{k-1} (zero diagonal, off-diagonal sqrt(1), ..., sqrt(n - 1)), then one Newton
/// step on p_n each. Weights by the Christoffel function w_i = 1 / sum_{k<n} p_k(x_i)^2 rather than from
/// the squared first eigenvector components: an eigensolver gives those with ABSOLUTE accuracy eps, so
/// the outer weights (1e-56 at n = 64) would have no correct digit, while the sum of squares is accurate
/// to a relative few eps wherever the node is. The rule is symmetrised (u_i = -u_{n-1-i}, equal weights).
inline GaussHermiteRule gauss_hermite_rule(int n) {
  if (n < 2)
    throw invalid_argument(concat("gauss_hermite_rule: the number of nodes must be at least 2, got ", n));
  Eigen::VectorXd diag = Eigen::VectorXd::Zero(n), sub(n - 1);
  for (int k = 1; k < n; ++k) sub[k - 1] = std::sqrt(double(k));
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver;
  solver.computeFromTridiagonal(diag, sub, Eigen::EigenvaluesOnly);
  if (solver.info() != Eigen::Success)
    throw error(concat("gauss_hermite_rule: the Jacobi eigenvalue iteration failed for n = ", n));
  GaussHermiteRule rule;
  rule.nodes.resize(std::size_t(n));
  rule.log_weights.resize(std::size_t(n));
  for (int i = 0; i < n; ++i) {
    double x = solver.eigenvalues()[i], p_last, p_n, log_s;
    orthonormal_hermite(n, x, p_last, p_n, log_s);
    x -= p_n / (std::sqrt(double(n)) * p_last);  // p_n' = sqrt(n) p_{n-1}
    orthonormal_hermite(n, x, p_last, p_n, log_s);
    rule.nodes[std::size_t(i)] = x;
    rule.log_weights[std::size_t(i)] = -log_s;
  }
  for (int i = 0; i < n / 2; ++i) {
    const std::size_t lo = std::size_t(i), hi = std::size_t(n - 1 - i);
    const double u = 0.5 * (rule.nodes[hi] - rule.nodes[lo]);
    const double lw = 0.5 * (rule.log_weights[hi] + rule.log_weights[lo]);
    rule.nodes[lo] = -u;
    rule.nodes[hi] = u;
    rule.log_weights[lo] = rule.log_weights[hi] = lw;
  }
  if (n % 2 == 1) rule.nodes[std::size_t(n / 2)] = 0;
  // Normalise (the exact weights sum to one; this removes the rounding of the sum).
  double max_lw = -std::numeric_limits<double>::infinity(), sum = 0;
  for (double lw : rule.log_weights) max_lw = std::max(max_lw, lw);
  for (double lw : rule.log_weights) sum += std::exp(lw - max_lw);
  const double log_total = max_lw + std::log(sum);
  for (double& lw : rule.log_weights) lw -= log_total;
  return rule;
}

}  // namespace detail

/// Noise-conditional score model of the banana perturbed by N(0, sigma^2 I): log p_sigma and its
/// gradient by an n-node Gauss-Hermite rule over the one remaining integral (see the file comment for the
/// derivation and for how to choose n). Copyable into kernels; the rule lives in MemorySpace.
template <class Real = double, class MemorySpace = Kokkos::DefaultExecutionSpace::memory_space>
class PerturbedBananaScore {
 public:
  using value_type = Real;
  using memory_space = MemorySpace;

  /// The default number of nodes: error < 1e-6 wherever kappa <= 2 (eq. (3) of the file comment), which
  /// covers the typical set of the moderately twisted bananas; pass more for strongly twisted ones.
  static constexpr int default_nodes = 64;

  /// n_nodes >= 2 (throws invalid_argument otherwise).
  explicit PerturbedBananaScore(const Banana<Real>& banana, int n_nodes = default_nodes)
      : m_banana(banana),
        m_dim(banana.dim()),
        m_n(n_nodes),
        m_b(banana.curvature()),
        m_s1_sq(banana.sigma_1() * banana.sigma_1()) {
    if (n_nodes < 2)
      throw invalid_argument(detail::concat(
          "PerturbedBananaScore: the number of Gauss-Hermite nodes must be at least 2, got ", n_nodes));
    const detail::GaussHermiteRule rule = detail::gauss_hermite_rule(n_nodes);
    m_nodes = Kokkos::View<Real*, MemorySpace>("scorekit::perturbed_banana::nodes", std::size_t(n_nodes));
    m_log_weights =
        Kokkos::View<Real*, MemorySpace>("scorekit::perturbed_banana::log_weights", std::size_t(n_nodes));
    auto h_nodes = Kokkos::create_mirror_view(m_nodes);
    auto h_log_weights = Kokkos::create_mirror_view(m_log_weights);
    for (int i = 0; i < n_nodes; ++i) {
      h_nodes(i) = Real(rule.nodes[std::size_t(i)]);
      h_log_weights(i) = Real(rule.log_weights[std::size_t(i)]);
    }
    Kokkos::deep_copy(m_nodes, h_nodes);
    Kokkos::deep_copy(m_log_weights, h_log_weights);
  }

  KOKKOS_INLINE_FUNCTION int dim() const { return m_dim; }
  KOKKOS_INLINE_FUNCTION int n_nodes() const { return m_n; }
  const Banana<Real>& banana() const { return m_banana; }

  /// Host-side check of a noise level before it goes into kernels: throws invalid_argument unless sigma
  /// is finite and >= 0 (0 is the banana itself).
  static void require_noise_level(Real sigma) {
    if (!(sigma >= Real(0)) || !(sigma < std::numeric_limits<Real>::infinity()))
      throw invalid_argument(
          detail::concat("PerturbedBananaScore: the noise level sigma must be finite and >= 0, got ", sigma));
  }

  /// log p_sigma(x), normalised (up to the quadrature error; see the file comment).
  KOKKOS_INLINE_FUNCTION Real log_prob(const Real* x, Real sigma) const {
    return evaluate<false>(x, sigma, nullptr);
  }

  /// grad_x log p_sigma(x): the exact gradient of log_prob(x, sigma).
  KOKKOS_INLINE_FUNCTION void score(const Real* x, Real sigma, Real* out) const {
    evaluate<true>(x, sigma, out);
  }

  /// The quadrature difficulty kappa(x, sigma) of the file comment, eq. (2): n >= 16 + 12 kappa^2 nodes
  /// keep the error below about 1e-6 (eq. (3)).
  KOKKOS_INLINE_FUNCTION Real kappa(const Real* x, Real sigma) const {
    const Real s2 = sigma * sigma, c = m_s1_sq + s2, v = Real(1) + s2;
    const Real m = math::fabs(x[0] * m_s1_sq / c), tau = math::sqrt(m_s1_sq * s2 / c);
    if (m_b == Real(0)) return Real(0);  // no twist: the integrand is constant in u
    const Real arm_sq = x[1] / m_b + m_s1_sq;
    const Real arm = arm_sq > Real(0) ? math::sqrt(arm_sq) : Real(0);
    const Real far = m + Real(5) * tau, near = m + Real(2) * tau;
    const Real y = arm < far ? (arm > near ? arm : near) : far;
    return Real(2) * math::fabs(m_b) * tau * y / math::sqrt(v);
  }

 private:
  // log p_sigma(x); with Score, also writes grad log p_sigma to out (derivation in the file comment).
  template <bool Score>
  KOKKOS_INLINE_FUNCTION Real evaluate(const Real* x, Real sigma, Real* out) const {
    const Real s2 = sigma * sigma;
    const Real c = m_s1_sq + s2, v = Real(1) + s2;
    const Real m = x[0] * m_s1_sq / c, tau = math::sqrt(m_s1_sq * s2 / c);
    const Real half_inv_v = Real(0.5) / v;
    // log_i = log I_n(x); s0, s_r, s_ry = the sums of exp(l_i - M) times 1, r_i and r_i y_i.
    Real log_i = 0, s0 = 1, s_r = 0, s_ry = 0;
    if (tau == Real(0)) {  // sigma = 0 (or so small that tau underflows): the banana itself
      const Real r = x[1] - m_b * (m * m - m_s1_sq);
      log_i = -r * r * half_inv_v;
      s_r = r;
      s_ry = r * m;
    } else {
      // The running maximum starts at the first node (s0 = 1 there).
      Real y = m + tau * m_nodes(0);
      Real r = x[1] - m_b * (y * y - m_s1_sq);
      Real max_l = m_log_weights(0) - r * r * half_inv_v;
      s_r = r;
      s_ry = r * y;
      for (int i = 1; i < m_n; ++i) {
        y = m + tau * m_nodes(i);
        r = x[1] - m_b * (y * y - m_s1_sq);
        const Real l = m_log_weights(i) - r * r * half_inv_v;
        if (l > max_l) {  // rescale the partial sums to the new maximum
          const Real shrink = math::exp(max_l - l);
          s0 = s0 * shrink + Real(1);
          if constexpr (Score) {
            s_r = s_r * shrink + r;
            s_ry = s_ry * shrink + r * y;
          }
          max_l = l;
        } else {
          const Real e = math::exp(l - max_l);
          s0 += e;
          if constexpr (Score) {
            s_r += e * r;
            s_ry += e * r * y;
          }
        }
      }
      log_i = max_l + math::log(s0);
    }
    Real quad = x[0] * x[0] / c, rest = 0;
    for (int k = 2; k < m_dim; ++k) rest += x[k] * x[k];
    quad += rest / v;
    if constexpr (Score) {
      const Real inv_v = Real(1) / v;
      out[0] = -x[0] / c + Real(2) * m_b * m_s1_sq / c * (s_ry / s0) * inv_v;
      out[1] = -(s_r / s0) * inv_v;
      for (int k = 2; k < m_dim; ++k) out[k] = -x[k] * inv_v;
    }
    const Real log_two_pi = math::log(Real(2) * math::pi<Real>());
    return log_i -
           Real(0.5) * (quad + Real(m_dim) * log_two_pi + math::log(c) + Real(m_dim - 1) * math::log(v));
  }

  Banana<Real> m_banana;
  int m_dim;
  int m_n;
  Real m_b;
  Real m_s1_sq;
  Kokkos::View<Real*, MemorySpace> m_nodes;        // u_i
  Kokkos::View<Real*, MemorySpace> m_log_weights;  // log w_i, sum w_i = 1
};

}  // namespace scorekit

SCOREKIT_ARRAY_BOUNDS_FALSE_POSITIVE_END
