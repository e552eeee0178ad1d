// Exceptions. Every check that can fail on user input throws one of these with a message that names
// the problem, the offending value and where it came from.
#pragma once

#include <cstdint>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

namespace scorekit {

/// Base of every exception scorekit throws.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A bad argument: a non-positive step size or noise level, an empty schedule, a wrong dimension.
class invalid_argument : public error {
 public:
  using error::error;
};

/// Views or objects whose dimensions do not agree.
class dimension_mismatch : public invalid_argument {
 public:
  using invalid_argument::invalid_argument;
};

/// A NaN or infinity appeared in a run. Names the first (earliest step, then lowest index) particle.
class non_finite_error : public error {
 public:
  non_finite_error(const std::string& where, std::int64_t particle, std::int64_t step)
      : error(where + ": particle " + std::to_string(particle) + " became NaN or infinite at step " +
              std::to_string(step) + " (reduce the step size, or check the score for overflow)"),
        m_particle(particle),
        m_step(step) {}
  std::int64_t particle() const noexcept { return m_particle; }
  std::int64_t step() const noexcept { return m_step; }

 private:
  std::int64_t m_particle;
  std::int64_t m_step;
};

/// A file that cannot be read or written, or whose content is corrupt.
class io_error : public error {
 public:
  using error::error;
};

namespace detail {
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  out.precision(17);
  (out << ... << args);
  return out.str();
}
}  // namespace detail

/// Throws invalid_argument when `value` is not a finite number > 0.
template <class Real>
void require_positive(Real value, const char* what, const char* where) {
  if (!(value > Real(0)) || !(value < std::numeric_limits<Real>::infinity()))
    throw invalid_argument(detail::concat(where, ": ", what, " must be positive and finite, got ", value));
}

/// Throws dimension_mismatch when two extents differ.
inline void require_dimension(std::int64_t actual, std::int64_t expected, const char* what,
                              const char* where) {
  if (actual != expected)
    throw dimension_mismatch(
        detail::concat(where, ": ", what, " has dimension ", actual, ", expected ", expected));
}

}  // namespace scorekit
