// Conformance checks a user runs on their own Density, on the host: is the score the gradient of
// log_prob, and is the Laplacian the divergence of the score? Both compare against central finite
// differences, with a tolerance DERIVED from the finite-difference error, not chosen by hand.
//
// The rule (for one derivative f' of a function f: log_prob for the score, a score component for the
// Laplacian). With the central difference D(t) = (f(x + t) - f(x - t)) / (2 t):
//  * truncation: D(t) = f' + f''' t^2 / 6 + O(t^4), so D(h) - D(h/2) = (3/4) f''' h^2 / 6 + O(h^4) is
//    three times the truncation error of D(h/2), and the Richardson extrapolation
//    R = (4 D(h/2) - D(h)) / 3 cancels the h^2 term (error O(h^4)). The check compares the analytic
//    value with R and allows  tau = |D(h) - D(h/2)|: in the asymptotic regime that is the size of the
//    h^2 term itself, far above R's remaining O(h^4) error; a wrong derivative off by delta is
//    caught once |delta| exceeds tau + rho, i.e. about f''' h^2 / 8.
//  * round-off: each evaluation is assumed accurate to u * max(1, |value|), u = roundoff_ulps * eps
//    of the density's value_type (magnitudes below one are floored at one: an absolute round-off of
//    one ulp of 1 in the terms that cancel). Then D(t) carries at most 2 u F / (2 t) with F the largest
//    |f| on the stencil, R carries rho = (4 e(h/2) + e(h)) / 3 = 3 u F / h, and the analytic value its
//    own u * max(1, |value|) (for the Laplacian, u * max(1, |L|, |s|^2): Delta log p = Delta p / p - |s|^2
//    is a difference of two terms of size |s|^2).
//  allowed = tau + rho + atol + rtol * |analytic|;   the check passes when |analytic - R| <= allowed
//  for every point and coordinate (atol = rtol = 0 by default: the bound alone decides).
// The step for coordinate i is h * max(1, |x_i|) (default h = eps^(1/3), which balances the h^2 and the
// u / h terms), and the exact step taken, (x_i + t) - x_i, is used in the quotient. The step should be
// small against the density's length scale: pass a smaller h for densities narrower than about 1e-3.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/traits.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace scorekit {
namespace testing {

/// Settings of check_score and check_laplacian.
struct FiniteDifferenceOptions {
  /// Relative step; 0 means cbrt(eps) of the density's value_type (6.1e-6 for double, 4.9e-3 for float).
  double h = 0;
  /// Extra relative allowance on top of the derived bound (default none).
  double rtol = 0;
  /// Extra absolute allowance on top of the derived bound (default none).
  double atol = 0;
  /// Assumed accuracy of one evaluation, in units of eps * max(1, |value|): a few roundings in the sums
  /// a log-density is made of. Raise it for densities computed with long cancelling sums.
  double roundoff_ulps = 16;
};

/// The outcome of a check: whether it passed, the worst case (largest error / allowed ratio) and a
/// readable message.
struct DensityCheck {
  std::string check;  ///< "check_score" or "check_laplacian"
  bool passed = true;
  std::size_t n_points = 0;
  std::size_t n_failures = 0;  ///< (point, coordinate) pairs over their allowance
  double max_abs_error = 0;    ///< largest |analytic - finite difference| over every point and coordinate
  // The worst case, by error / allowed:
  std::size_t worst_point = 0;
  int worst_coordinate = -1;     ///< score component; -1 for the Laplacian
  std::vector<double> worst_x;   ///< the point itself
  double analytic = 0;           ///< the density's value there
  double finite_difference = 0;  ///< the Richardson-extrapolated finite difference there
  double error = 0;              ///< |analytic - finite_difference| there
  double allowed = 0;            ///< the allowance there (truncation + round_off + atol + rtol |analytic|)
  double truncation = 0;         ///< |D(h) - D(h/2)| there
  double round_off = 0;          ///< the round-off bound there
  double h = 0;                  ///< the relative step used
  std::string non_finite;        ///< set when an evaluation returned NaN or infinity (then passed is false)

  explicit operator bool() const { return passed; }

  std::string message() const {
    std::ostringstream out;
    out.precision(6);
    if (!non_finite.empty()) {
      out << check << " FAILED: " << non_finite;
      return out.str();
    }
    const std::string what =
        worst_coordinate >= 0 ? "score[" + std::to_string(worst_coordinate) + "]" : std::string("laplacian");
    out << check << (passed ? " passed" : " FAILED") << " at " << n_points << " points (h = " << h;
    if (!passed) out << ", " << n_failures << " values over their allowance";
    out << "); worst at point " << worst_point << " x = (";
    for (std::size_t j = 0; j < worst_x.size(); ++j) out << (j ? ", " : "") << worst_x[j];
    out << "): " << what << " = " << analytic << ", finite difference = " << finite_difference
        << ", |error| = " << error << (passed ? " <= " : " > ") << "allowed " << allowed << " (truncation "
        << truncation << " + round-off " << round_off << " + atol/rtol)";
    if (!passed && worst_coordinate >= 0)
      out << "; check that score() is the gradient of log_prob() (sign, factor, missing term)";
    if (!passed && worst_coordinate < 0) out << "; check that laplacian() is the divergence of score()";
    return out.str();
  }
};

using ScoreCheck = DensityCheck;
using LaplacianCheck = DensityCheck;

namespace density_check_detail {

template <class D, class = void>
struct memory_space_of {
  using type = Kokkos::HostSpace;  // no views: any memory space is fine
};
template <class D>
struct memory_space_of<D, std::void_t<typename D::memory_space>> {
  using type = typename D::memory_space;
};

template <class D>
constexpr void assert_host_density() {
  scorekit::assert_density<D>();
  static_assert(
      Kokkos::SpaceAccessibility<Kokkos::HostSpace, typename memory_space_of<D>::type>::accessible,
      "scorekit::testing: the density checks run on the host, but this density's views live in a memory "
      "space the host cannot read; build a copy in Kokkos::HostSpace for the check");
}

inline std::vector<std::vector<double>> rows_of(const Eigen::MatrixXd& points) {
  std::vector<std::vector<double>> rows(std::size_t(points.rows()));
  for (Eigen::Index i = 0; i < points.rows(); ++i)
    for (Eigen::Index j = 0; j < points.cols(); ++j) rows[std::size_t(i)].push_back(points(i, j));
  return rows;
}

inline void validate(const FiniteDifferenceOptions& opt, std::size_t n_points, const char* where) {
  if (!(opt.h >= 0) || !std::isfinite(opt.h))
    throw invalid_argument(
        scorekit::detail::concat(where, ": the step h must be >= 0 (0 = default), got ", opt.h));
  if (!(opt.rtol >= 0) || !(opt.atol >= 0) || !(opt.roundoff_ulps >= 0))
    throw invalid_argument(scorekit::detail::concat(where, ": rtol, atol and roundoff_ulps must be >= 0"));
  if (n_points == 0)
    throw invalid_argument(scorekit::detail::concat(where, ": needs at least one point to check"));
}

// One derivative estimated from evaluations g(x + t e_i) at t = +-h_i, +-h_i / 2.
struct Derivative {
  double extrapolated = 0;  // R
  double truncation = 0;    // |D(h) - D(h/2)|
  double round_off = 0;     // (4 e(h/2) + e(h)) / 3
  bool finite = true;
};

// g(x) returns the value (as double) at a point of Real; u = roundoff_ulps * eps.
template <class Real, class G>
Derivative derivative(std::vector<Real>& x, int i, double step, double u, G&& g) {
  const Real xi = x[std::size_t(i)];
  double D[2], e[2];
  bool finite = true;
  for (int s = 0; s < 2; ++s) {
    const double t = s == 0 ? step : step / 2;
    const Real xp = Real(double(xi) + t), xm = Real(double(xi) - t);
    const double span = (double(xp) - double(xi)) + (double(xi) - double(xm));
    if (!(span > 0))
      throw invalid_argument(scorekit::detail::concat("scorekit::testing: the finite-difference step ", t,
                                                      " is below the resolution of coordinate ", i, " = ",
                                                      double(xi), "; pass a larger h"));
    x[std::size_t(i)] = xp;
    const double fp = g(x.data());
    x[std::size_t(i)] = xm;
    const double fm = g(x.data());
    x[std::size_t(i)] = xi;
    finite = finite && std::isfinite(fp) && std::isfinite(fm);
    D[s] = (fp - fm) / span;
    e[s] = 2 * u * std::max({1.0, std::fabs(fp), std::fabs(fm)}) / span;
  }
  Derivative r;
  r.finite = finite;
  r.extrapolated = (4 * D[1] - D[0]) / 3;
  r.truncation = std::fabs(D[0] - D[1]);
  r.round_off = (4 * e[1] + e[0]) / 3;
  return r;
}

// Records one comparison into the result; returns nothing, updates worst case and failures.
inline void record(DensityCheck& r, std::size_t point, int coordinate, const std::vector<double>& x,
                   double analytic, double fd, double truncation, double round_off,
                   const FiniteDifferenceOptions& opt) {
  const double err = std::fabs(analytic - fd);
  const double allowed = truncation + round_off + opt.atol + opt.rtol * std::fabs(analytic);
  r.max_abs_error = std::max(r.max_abs_error, err);
  const bool ok = err <= allowed;
  if (!ok) {
    ++r.n_failures;
    r.passed = false;
  }
  // Worst = largest ratio error / allowed (an exact zero allowance with an error counts as infinite).
  const double ratio = allowed > 0 ? err / allowed : (err > 0 ? std::numeric_limits<double>::infinity() : 0);
  const double worst_ratio =
      r.allowed > 0 ? r.error / r.allowed : (r.error > 0 ? std::numeric_limits<double>::infinity() : -1);
  if (r.worst_x.empty() || ratio > worst_ratio) {
    r.worst_point = point;
    r.worst_coordinate = coordinate;
    r.worst_x = x;
    r.analytic = analytic;
    r.finite_difference = fd;
    r.error = err;
    r.allowed = allowed;
    r.truncation = truncation;
    r.round_off = round_off;
  }
}

inline std::string describe_point(std::size_t p, const std::vector<double>& x) {
  std::ostringstream out;
  out.precision(17);
  out << "point " << p << " x = (";
  for (std::size_t j = 0; j < x.size(); ++j) out << (j ? ", " : "") << x[j];
  out << ")";
  return out.str();
}

template <class Density>
std::vector<typename Density::value_type> to_real(const Density& density, const std::vector<double>& p,
                                                  std::size_t index, const char* where) {
  require_dimension(std::int64_t(p.size()), density.dim(), scorekit::detail::concat("point ", index).c_str(),
                    where);
  return std::vector<typename Density::value_type>(p.begin(), p.end());
}

/// What both checks set up before visiting the points: the result (named, with its step h), the
/// round-off unit u = roundoff_ulps eps, the density's workspace and a score buffer.
template <class Density>
struct CheckSetup {
  using Real = typename Density::value_type;
  int d;
  double u;
  std::vector<Real> work, s;
  CheckSetup(const Density& density, std::size_t n_points, const FiniteDifferenceOptions& options,
             DensityCheck& r, const char* check, const char* where)
      : d(density.dim()),
        u(options.roundoff_ulps * double(std::numeric_limits<Real>::epsilon())),
        work(std::size_t(std::max(1, scorekit::workspace_size(density)))),
        s(static_cast<std::size_t>(density.dim())) {
    validate(options, n_points, where);
    r.check = check;
    r.n_points = n_points;
    r.h = options.h > 0 ? options.h : std::cbrt(double(std::numeric_limits<Real>::epsilon()));
  }
};

}  // namespace density_check_detail

/// Checks score(x) against finite differences of log_prob at each point (see the file comment for the
/// tolerance rule). points: one vector of density.dim() coordinates each.
template <class Density>
ScoreCheck check_score(const Density& density, const std::vector<std::vector<double>>& points,
                       const FiniteDifferenceOptions& options = {}) {
  density_check_detail::assert_host_density<Density>();
  using Real = typename Density::value_type;
  const char* where = "scorekit::testing::check_score";
  ScoreCheck r;
  density_check_detail::CheckSetup<Density> setup(density, points.size(), options, r, "check_score", where);
  const int d = setup.d;
  const double u = setup.u;
  auto& work = setup.work;
  auto& s = setup.s;
  for (std::size_t p = 0; p < points.size(); ++p) {
    std::vector<Real> x = density_check_detail::to_real(density, points[p], p, where);
    const std::vector<double> xd(x.begin(), x.end());
    scorekit::score(density, x.data(), s.data(), work.data());
    for (int i = 0; i < d; ++i)
      if (!std::isfinite(double(s[std::size_t(i)]))) {
        r.passed = false;
        r.non_finite = "score()[" + std::to_string(i) + "] is NaN or infinite at " +
                       density_check_detail::describe_point(p, xd);
        return r;
      }
    const auto log_p = [&](const Real* y) { return double(scorekit::log_prob(density, y, work.data())); };
    if (!std::isfinite(log_p(x.data()))) {
      r.passed = false;
      r.non_finite = "log_prob() is NaN or infinite at " + density_check_detail::describe_point(p, xd);
      return r;
    }
    for (int i = 0; i < d; ++i) {
      const double step = r.h * std::max(1.0, std::fabs(xd[std::size_t(i)]));
      const density_check_detail::Derivative D = density_check_detail::derivative(x, i, step, u, log_p);
      if (!D.finite) {
        r.passed = false;
        r.non_finite = "log_prob() is NaN or infinite near " + density_check_detail::describe_point(p, xd) +
                       " (coordinate " + std::to_string(i) + " moved by the finite-difference step)";
        return r;
      }
      const double si = double(s[std::size_t(i)]);
      density_check_detail::record(r, p, i, xd, si, D.extrapolated, D.truncation,
                                   D.round_off + u * std::max(1.0, std::fabs(si)), options);
    }
  }
  return r;
}

/// check_score at the rows of an Eigen matrix (one point a row).
template <class Density>
ScoreCheck check_score(const Density& density, const Eigen::MatrixXd& points,
                       const FiniteDifferenceOptions& options = {}) {
  return check_score(density, density_check_detail::rows_of(points), options);
}

/// Checks laplacian(x) against sum_i (s_i(x + h e_i) - s_i(x - h e_i)) / 2h (Richardson-extrapolated,
/// see the file comment) at each point. The density must have a laplacian member.
template <class Density>
LaplacianCheck check_laplacian(const Density& density, const std::vector<std::vector<double>>& points,
                               const FiniteDifferenceOptions& options = {}) {
  density_check_detail::assert_host_density<Density>();
  static_assert(!is_density_v<Density> || policy_traits<Density>::has_laplacian,
                "scorekit::testing::check_laplacian: the density needs a member `KOKKOS_INLINE_FUNCTION "
                "value_type laplacian(const value_type* x) const` (with a trailing `value_type* work` "
                "when it declares workspace_size())");
  using Real = typename Density::value_type;
  const char* where = "scorekit::testing::check_laplacian";
  LaplacianCheck r;
  density_check_detail::CheckSetup<Density> setup(density, points.size(), options, r, "check_laplacian",
                                                  where);
  const int d = setup.d;
  const double u = setup.u;
  auto& work = setup.work;
  auto& s = setup.s;
  for (std::size_t p = 0; p < points.size(); ++p) {
    std::vector<Real> x = density_check_detail::to_real(density, points[p], p, where);
    const std::vector<double> xd(x.begin(), x.end());
    const double lap = double(scorekit::laplacian(density, x.data(), work.data()));
    scorekit::score(density, x.data(), s.data(), work.data());
    double s2 = 0;
    for (int i = 0; i < d; ++i) s2 += double(s[std::size_t(i)]) * double(s[std::size_t(i)]);
    if (!std::isfinite(lap) || !std::isfinite(s2)) {
      r.passed = false;
      r.non_finite =
          "laplacian() or score() is NaN or infinite at " + density_check_detail::describe_point(p, xd);
      return r;
    }
    double fd = 0, truncation = 0, round_off = u * std::max({1.0, std::fabs(lap), s2});
    for (int i = 0; i < d; ++i) {
      const auto score_i = [&](const Real* y) {
        scorekit::score(density, y, s.data(), work.data());
        return double(s[std::size_t(i)]);
      };
      const double step = r.h * std::max(1.0, std::fabs(xd[std::size_t(i)]));
      const density_check_detail::Derivative D = density_check_detail::derivative(x, i, step, u, score_i);
      if (!D.finite) {
        r.passed = false;
        r.non_finite = "score() is NaN or infinite near " + density_check_detail::describe_point(p, xd) +
                       " (coordinate " + std::to_string(i) + " moved by the finite-difference step)";
        return r;
      }
      fd += D.extrapolated;
      truncation += D.truncation;
      round_off += D.round_off;
    }
    density_check_detail::record(r, p, -1, xd, lap, fd, truncation, round_off, options);
  }
  return r;
}

/// check_laplacian at the rows of an Eigen matrix (one point a row).
template <class Density>
LaplacianCheck check_laplacian(const Density& density, const Eigen::MatrixXd& points,
                               const FiniteDifferenceOptions& options = {}) {
  return check_laplacian(density, density_check_detail::rows_of(points), options);
}

}  // namespace testing
}  // namespace scorekit
