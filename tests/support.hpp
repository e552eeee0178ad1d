// Small helpers shared by the tests: particle initialisation, host copies, standard errors.
#pragma once

#include <scorekit/core/file.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/core/views.hpp>
#include <scorekit/density/gaussian_mixture.hpp>

#include <Eigen/Dense>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace scorekit_test {

/// A host Eigen matrix (N x d, double) from a particle view.
template <class View>
Eigen::MatrixXd to_eigen(const View& x) {
  auto h = scorekit::to_host(x);
  Eigen::MatrixXd m(h.extent(0), h.extent(1));
  for (std::size_t i = 0; i < h.extent(0); ++i)
    for (std::size_t j = 0; j < h.extent(1); ++j) m(Eigen::Index(i), Eigen::Index(j)) = double(h(i, j));
  return m;
}

/// Fills a view on the host (any memory space) with f(i, j).
template <class View, class F>
void fill_host(const View& x, F f) {
  auto h = Kokkos::create_mirror_view(x);
  for (std::size_t i = 0; i < h.extent(0); ++i)
    for (std::size_t j = 0; j < h.extent(1); ++j) h(i, j) = typename View::non_const_value_type(f(i, j));
  Kokkos::deep_copy(x, h);
}

/// A 3-D mixture of two full-covariance Gaussians (weights 0.4, 0.6; means 0 and (3, 3, 3)): its
/// per-level precision table makes annealed Langevin run in blocks of particles (score_block).
template <class Real, class Mem>
scorekit::GaussianMixture<Real, Mem> full_covariance_mixture() {
  Eigen::Matrix3d c0, c1;
  c0 << 2.0, 0.6, 0.1, 0.6, 1.0, -0.3, 0.1, -0.3, 0.5;
  c1 << 0.5, 0.1, 0.0, 0.1, 0.8, 0.2, 0.0, 0.2, 1.5;
  Eigen::MatrixXd mu(2, 3);
  mu << 0, 0, 0, 3, 3, 3;
  return scorekit::GaussianMixture<Real, Mem>::full(Eigen::Vector2d(0.4, 0.6), mu, {c0, c1});
}

/// A model's per-particle score alone (no score_block): the drivers then take their one-particle
/// kernels (annealed Langevin, integrate()), the arithmetic the batched path and the blocks are checked
/// against.
template <class Model>
struct PerParticleOnly {
  using value_type = typename Model::value_type;
  using memory_space = typename Model::memory_space;
  Model model;
  KOKKOS_INLINE_FUNCTION int dim() const { return model.dim(); }
  KOKKOS_INLINE_FUNCTION int workspace_size() const { return model.workspace_size(); }
  KOKKOS_INLINE_FUNCTION void score(const value_type* x, value_type sigma, value_type* out,
                                    value_type* work) const {
    model.score(x, sigma, out, work);
  }
};

/// True when two views hold bitwise-identical values.
template <class A, class B>
bool bitwise_equal(const A& a, const B& b) {
  auto ha = scorekit::to_host(a);
  auto hb = scorekit::to_host(b);
  if (ha.size() != hb.size()) return false;
  return std::memcmp(ha.data(), hb.data(), ha.size() * sizeof(typename A::non_const_value_type)) == 0;
}

/// Standard error of a sample covariance entry of a Gaussian: Var(S_ij) = (S_ii S_jj + S_ij^2) / (N - 1).
inline double covariance_standard_error(const Eigen::MatrixXd& cov, int i, int j, double n) {
  return std::sqrt((cov(i, i) * cov(j, j) + cov(i, j) * cov(i, j)) / (n - 1));
}

/// A fresh directory under the system temporary directory, removed with everything in it at the end.
/// The message of the exception of type E that f throws; throws std::logic_error, which fails the test,
/// when f throws nothing (an exception of another type propagates and fails it too).
template <class E, class F>
std::string message_of(F f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  throw std::logic_error("message_of: no exception was thrown");
}

/// Copies a file a test wrote or damaged into the fuzz corpus folder SCOREKIT_FUZZ_CORPUS names (ctest's
/// fuzz_<name>_seeds, scripts/fuzz.sh), under a name made of its size and CRC-32 so that reruns add
/// nothing new; does nothing when the variable is unset.
inline void add_fuzz_seed(const std::string& path) {
  const char* corpus = std::getenv("SCOREKIT_FUZZ_CORPUS");
  if (!corpus || !std::filesystem::is_regular_file(path)) return;
  std::filesystem::create_directories(corpus);
  const std::vector<std::uint8_t> b = scorekit::detail::read_file(path, "add_fuzz_seed");
  const std::string name =
      "seed_" + std::to_string(b.size()) + "_" + std::to_string(scorekit::detail::crc32(b.data(), b.size()));
  std::filesystem::copy_file(path, std::filesystem::path(corpus) / name,
                             std::filesystem::copy_options::overwrite_existing);
}

struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& tag) {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("scorekit_test_" + tag + "_" + std::to_string(scorekit::detail::process_id()) + "_" +
            std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
  /// Names of everything in the directory (to find leftover temporary files).
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(path))
      out.push_back(e.path().filename().string());
    return out;
  }
};

/// The means (-5, -5) and (5, 5) of the 2-D test mixtures, one per row.
inline Eigen::MatrixXd two_mode_means() {
  Eigen::MatrixXd means(2, 2);
  means << -5, -5, 5, 5;
  return means;
}

/// 0.2 N((-5,-5), v0 I) + 0.8 N((5,5), v1 I): the 2-D mixture the sampler tests draw from.
template <class Real, class Mem>
scorekit::GaussianMixture<Real, Mem> two_modes(double v0, double v1) {
  return scorekit::GaussianMixture<Real, Mem>::isotropic(Eigen::Vector2d(0.2, 0.8), two_mode_means(),
                                                         Eigen::Vector2d(v0, v1));
}

}  // namespace scorekit_test
