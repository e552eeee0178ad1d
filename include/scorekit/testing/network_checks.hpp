// Conformance checks for a network type (a Sequential, or a user's own layer inside one), on the host:
// are its forward-mode tangents the directional derivatives of its outputs, and are its parameter and
// input gradients the derivatives of a loss of (outputs, tangents)? Every comparison is against a central
// finite difference with the Richardson-derived tolerance of testing/density_checks.hpp:
//   allowed = |D(h) - D(h/2)| + 3 u F / h,   passes when |analytic - (4 D(h/2) - D(h)) / 3| <= allowed,
// where u = roundoff_ulps * eps and F the largest |value| (floored at one) on the stencil.
//
// The loss is linear in the dual block's output, L = <c, Y> for a random coefficient block c, so that its
// gradient is exactly what backward() returns for the seed c; its dependence on the parameters is
// through the tangents too (J v depends on theta), which is how the second-derivative terms are checked.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/nn/sequential.hpp>
#include <scorekit/objective/objective_common.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace scorekit {
namespace testing {

struct NetworkCheckResult {
  bool passed = true;
  int n_checked = 0;
  double worst_ratio = 0;  ///< max |analytic - extrapolated| / allowed over all checks (passes when <= 1)
  std::string worst;       ///< which quantity gave worst_ratio
};

namespace detail {

/// Richardson check of one derivative: f(t) evaluated at t = +-h, +-h/2.
template <class F>
void richardson_compare(F&& f, double analytic, double h, double u, const std::string& what,
                        NetworkCheckResult& result) {
  const double fp = f(h), fm = f(-h), fp2 = f(h / 2), fm2 = f(-h / 2);
  const double d1 = (fp - fm) / (2 * h), d2 = (fp2 - fm2) / h;
  const double extrapolated = (4 * d2 - d1) / 3;
  const double big = std::max({1.0, std::fabs(fp), std::fabs(fm), std::fabs(fp2), std::fabs(fm2)});
  const double allowed = std::fabs(d1 - d2) + 3 * u * big / h + u * std::max(1.0, std::fabs(analytic));
  const double ratio = std::fabs(analytic - extrapolated) / allowed;
  ++result.n_checked;
  if (!(ratio <= 1)) result.passed = false;
  if (!(ratio <= result.worst_ratio)) {
    result.worst_ratio = ratio;
    result.worst = what + ": analytic " + std::to_string(analytic) + ", finite difference " +
                   std::to_string(extrapolated) + ", allowed " + std::to_string(allowed);
  }
}

}  // namespace detail

/// Checks Net on one dual block of B samples with K tangents: x and the tangent directions drawn from a
/// standard normal, levels from level_of(b), parameters as given (host vector of Net::n_params), loss
/// coefficients standard normal. Checks every tangent against the directional derivative, every
/// parameter gradient entry (or every `parameter_stride`-th) and every input adjoint entry.
template <class Net, int B, int K, class Real, class LevelOf>
NetworkCheckResult check_network(const std::vector<Real>& params, LevelOf level_of, std::uint64_t seed = 1,
                                 int parameter_stride = 1, double h = -1, double roundoff_ulps = 64) {
  if (int(params.size()) != Net::n_params)
    throw dimension_mismatch(scorekit::detail::concat("check_network: ", params.size(), " parameters given, ",
                                                      Net::name(), " has ", Net::n_params));
  constexpr int W = B * (1 + K);
  const double eps = std::numeric_limits<Real>::epsilon();
  if (h <= 0) h = std::cbrt(eps);
  const double u = roundoff_ulps * eps;
  int level[B];
  for (int b = 0; b < B; ++b) level[b] = level_of(b);

  CounterRng<Real> rng(seed, 0, 0, RngStream::user);
  std::vector<Real> input(Net::in * W), coef(Net::out * W);
  for (auto& v : input) v = rng.normal();
  for (auto& v : coef) v = rng.normal();

  std::vector<Real> tape(Net::template tape_size<B, K>);
  // The loss <coef, output block> at the given parameters and input.
  auto loss = [&](const std::vector<Real>& p, const std::vector<Real>& in) {
    std::copy(in.begin(), in.end(), tape.begin());
    Net::template forward<B, K>(p.data(), level, tape.data());
    const Real* y = Net::template output<B, K>(tape.data());
    double sum = 0;
    for (int i = 0; i < Net::out * W; ++i) sum += double(coef[i]) * double(y[i]);
    return sum;
  };

  NetworkCheckResult result;
  // Tangents against directional derivatives of the primal outputs.
  std::copy(input.begin(), input.end(), tape.begin());
  Net::template forward<B, K>(params.data(), level, tape.data());
  std::vector<Real> out(Net::template output<B, K>(tape.data()),
                        Net::template output<B, K>(tape.data()) + Net::out * W);
  for (int k = 1; k <= K; ++k)
    for (int b = 0; b < B; ++b)
      for (int o = 0; o < Net::out; ++o) {
        auto f = [&](double t) {
          std::vector<Real> moved = input;
          for (int i = 0; i < Net::in; ++i) moved[i * W + b] += Real(t) * input[i * W + k * B + b];
          std::copy(moved.begin(), moved.end(), tape.begin());
          Net::template forward<B, K>(params.data(), level, tape.data());
          return double(Net::template output<B, K>(tape.data())[o * W + b]);
        };
        detail::richardson_compare(f, double(out[o * W + k * B + b]), h, u,
                                   "tangent " + std::to_string(k) + " of sample " + std::to_string(b) +
                                       ", output " + std::to_string(o),
                                   result);
      }

  // Parameter gradient and input adjoint of the loss.
  std::copy(input.begin(), input.end(), tape.begin());
  Net::template forward<B, K>(params.data(), level, tape.data());
  std::vector<Real> seed_block = coef, grad(Net::n_params, Real(0)), input_adjoint(Net::in * W);
  std::vector<Real> scratch(Net::template backward_scratch_size<B, K>);
  Net::template backward<B, K>(params.data(), level, tape.data(), seed_block.data(), grad.data(),
                               input_adjoint.data(), scratch.data());
  for (int j = 0; j < Net::n_params; j += parameter_stride) {
    auto f = [&](double t) {
      std::vector<Real> p = params;
      p[j] += Real(t);
      return loss(p, input);
    };
    detail::richardson_compare(f, double(grad[j]), h, u, "parameter " + std::to_string(j), result);
  }
  for (int i = 0; i < Net::in * W; ++i) {
    auto f = [&](double t) {
      std::vector<Real> in = input;
      in[i] += Real(t);
      return loss(params, in);
    };
    detail::richardson_compare(f, double(input_adjoint[i]), h, u, "input adjoint " + std::to_string(i),
                               result);
  }
  return result;
}

/// Checks an Objective's parameter gradient on one block of nb <= B data rows (x: nb * Net::in values)
/// against central finite differences of its summed loss (the same key, so the same noise and probes).
/// Every `parameter_stride`-th parameter is checked.
template <class Net, int B, class Objective, class Real>
NetworkCheckResult check_objective(const Objective& objective, const std::vector<Real>& params,
                                   const std::vector<Real>& x, int nb, objective::SampleKey key,
                                   int parameter_stride = 1, double h = -1, double roundoff_ulps = 256) {
  if (int(params.size()) != Net::n_params || int(x.size()) < nb * Net::in || nb < 1 || nb > B)
    throw dimension_mismatch(scorekit::detail::concat(
        "check_objective: ", params.size(), " parameters (", Net::name(), " has ", Net::n_params, "), ",
        x.size(), " data values for ", nb, " rows of ", Net::in, " (at most ", B, " rows)"));
  const double eps = std::numeric_limits<Real>::epsilon();
  if (h <= 0) h = std::cbrt(eps);
  const double u = roundoff_ulps * eps;
  const int levels = objective.n_levels();
  std::vector<Real> work(
      std::size_t(Objective::template workspace_size<Net, B>() + objective.extra_workspace_size()));
  std::vector<Real> stats(2 * std::size_t(levels));
  auto loss = [&](const std::vector<Real>& p, std::vector<Real>& grad) {
    std::fill(stats.begin(), stats.end(), Real(0));
    objective.template accumulate<Net, B>(p.data(), nb, x.data(), key, grad.data(), stats.data(),
                                          work.data());
    double sum = 0;
    for (int l = 0; l < levels; ++l) sum += double(stats[2 * l]);
    return sum;
  };
  std::vector<Real> grad(Net::n_params, Real(0)), scratch(Net::n_params, Real(0));
  loss(params, grad);
  NetworkCheckResult result;
  for (int j = 0; j < Net::n_params; j += parameter_stride) {
    auto f = [&](double t) {
      std::vector<Real> p = params;
      p[j] += Real(t);
      return loss(p, scratch);
    };
    detail::richardson_compare(f, double(grad[j]), h, u,
                               objective.name() + ", parameter " + std::to_string(j), result);
  }
  return result;
}

}  // namespace testing
}  // namespace scorekit
