// The batched path gives the same bits for any thread count: blas::gemm (host tiles fixed by the shape,
// each one single-threaded BLAS call) and a whole BatchTrainer run, computed on every thread of the
// OpenMP backend and again on one thread (a partition of the pool of one thread: OpenMP::partition_master
// in Kokkos 3, partition_space in Kokkos 4), and on Serial. Where OpenMP is off or has one thread, only
// Serial against itself is left and the cases say so.
// scorekit-requires: SCOREKIT_HAVE_KOKKOS_KERNELS
#include "support.hpp"

#include <scorekit/core/blas.hpp>
#include <scorekit/nn/image/unet.hpp>
#include <scorekit/objective/batch_denoising.hpp>
#include <scorekit/train/batch_trainer.hpp>

#include <catch2/catch.hpp>

#include <cstring>
#if defined(KOKKOS_ENABLE_OPENMP)
#include <omp.h>
#endif
#include <functional>
#include <memory>
#include <random>
#include <vector>

namespace {

/// Runs f(exec) on an OpenMP instance of one thread.
#if defined(KOKKOS_ENABLE_OPENMP)
void on_one_thread(const std::function<void(const Kokkos::OpenMP&)>& f) {
#if KOKKOS_VERSION >= 40000
  const auto parts =
      Kokkos::Experimental::partition_space(Kokkos::OpenMP(), 1, Kokkos::OpenMP::concurrency() - 1);
  REQUIRE(parts[0].concurrency() == 1);
  f(parts[0]);
#else
  // partition_master partitions only where nested parallel regions may be active.
  const int levels = omp_get_max_active_levels();
  omp_set_max_active_levels(2);
  Kokkos::OpenMP::partition_master(
      [&](int id, int) {
        if (id != 0) return;
        REQUIRE(Kokkos::OpenMP::impl_thread_pool_size() == 1);
        f(Kokkos::OpenMP());
      },
      Kokkos::OpenMP::concurrency(), 1);
  omp_set_max_active_levels(levels);
#endif
}
#endif

template <class Exec>
std::vector<float> product(const Exec& exec, const char* ta, const char* tb, int m, int n, int k) {
  using Mem = typename Exec::memory_space;
  std::mt19937_64 gen(1);
  std::uniform_real_distribution<float> u(-1, 1);
  const bool at = ta[0] == 'T', bt = tb[0] == 'T';
  Kokkos::View<float**, Kokkos::LayoutRight, Mem> A("A", at ? k : m, at ? m : k),
      B("B", bt ? n : k, bt ? k : n), C("C", m, n);
  for (std::size_t i = 0; i < A.span(); ++i) A.data()[i] = u(gen);
  for (std::size_t i = 0; i < B.span(); ++i) B.data()[i] = u(gen);
  scorekit::blas::gemm(exec, ta, tb, 1.0f, A, B, 0.0f, C);
  return std::vector<float>(C.data(), C.data() + C.span());
}

}  // namespace

TEST_CASE("blas::gemm gives the same bits on any number of threads", "[blas][threads]") {
  struct Shape {
    const char *ta, *tb;
    int m, n, k;
  };
  // The shapes of the convolutions' products: patches times weights, the weight gradient (a long
  // reduction), the input adjoint; and products with odd edges.
  for (const Shape& s :
       {Shape{"N", "N", 16384, 16, 9}, Shape{"T", "N", 288, 64, 4096}, Shape{"N", "T", 4096, 288, 32},
        Shape{"N", "N", 1000, 130, 77}, Shape{"T", "T", 517, 300, 65}}) {
    INFO(s.ta << s.tb << " " << s.m << " x " << s.n << " x " << s.k);
    const auto serial = product(Kokkos::Serial(), s.ta, s.tb, s.m, s.n, s.k);
#if defined(KOKKOS_ENABLE_OPENMP)
    const auto all = product(Kokkos::OpenMP(), s.ta, s.tb, s.m, s.n, s.k);
    CHECK(all == serial);
    if (Kokkos::OpenMP::concurrency() > 1) {
      std::vector<float> one;
      on_one_thread([&](const Kokkos::OpenMP& exec) { one = product(exec, s.ta, s.tb, s.m, s.n, s.k); });
      CHECK(one == all);
    } else {
      WARN("OpenMP has one thread here: only Serial against OpenMP is checked");
    }
#else
    WARN("no OpenMP backend: nothing to compare Serial with");
#endif
  }
}

// The trainer runs on the default OpenMP instance, which partition_master (Kokkos 3) narrows to the
// partition; Kokkos 4's partition_space gives instances the trainer does not take.
#if defined(KOKKOS_ENABLE_OPENMP) && KOKKOS_VERSION < 40000
namespace {

std::vector<float> train_unet() {
  using Exec = Kokkos::OpenMP;
  using Mem = Exec::memory_space;
  using Draw = scorekit::objective::SigmaLadder<float, Mem>;
  scorekit::nn::image::UNetSettings u;
  u.channels = {16, 32};
  u.groups = 4;
  u.embedding = 16;
  auto net =
      std::make_shared<scorekit::nn::image::Network<float, Exec>>(scorekit::nn::image::unet<float, Exec>(u));
  scorekit::ImageScoreSettings image;
  image.height = image.width = 16;
  image.channels = 1;
  image.fourier_features = 16;
  scorekit::train::TrainSettings t;
  t.batch_size = 32;
  t.log = nullptr;
  scorekit::train::BatchTrainer<float, Exec, Draw> trainer(net, image, Draw({0.1, 0.5, 2.0}), t, 1);
  scorekit::BatchView<float, Mem> data("data", 64, 256);
  std::mt19937_64 gen(1);
  std::normal_distribution<float> z;
  for (std::size_t i = 0; i < data.span(); ++i) data.data()[i] = z(gen);
  trainer.train(scorekit::ConstBatchView<float, Mem>(data), 3);
  const auto p = trainer.parameters();
  return std::vector<float>(p.data(), p.data() + p.extent(0));
}

}  // namespace

TEST_CASE("BatchTrainer gives the same weights on any number of threads", "[image][threads]") {
  if (Kokkos::OpenMP::concurrency() < 2) {
    WARN("OpenMP has one thread here: nothing to compare");
    return;
  }
  const auto all = train_unet();
  std::vector<float> one;
  on_one_thread([&](const Kokkos::OpenMP& exec) { (void)exec, one = train_unet(); });
  CHECK(one == all);
}
#endif
