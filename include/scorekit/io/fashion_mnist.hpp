// Fashion-MNIST (Xiao, Rasul and Vollgraf 2017: 60,000 training and 10,000 test images of 28 x 28 grey
// pixels, ten classes of clothing) from the four gzipped IDX files of Debian's dataset-fashion-mnist
// package (/usr/share/datasets/fashion-mnist), and the two ways images enter a score model: scaled to
// [0, 1] (p / 255, what score models train on) or uniformly dequantised ((p + u) / 256 with u uniform on
// (0, 1), what a likelihood in bits per dimension is computed on), optionally average-pooled 2 x 2 to
// 14 x 14 for fast runs. Images become one row each of a host view, pixels row-major: the NHWC tensor of
// one channel that nn/image/ takes (tensor.hpp), and the N x D particles every sampler takes.
//
// read_labelled_images checks a pair of files against each other: images of rank 3 and labels of rank 1,
// both unsigned bytes, as many labels as images, every label below the number of classes; each refusal
// an io_error naming the file and the problem.
// scorekit-requires: SCOREKIT_HAVE_ZLIB
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/random.hpp>
#include <scorekit/io/idx.hpp>

#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <vector>

namespace scorekit {
namespace io {

/// Images with a class label each: n images of h x w one-byte pixels, row-major, and n labels.
struct LabelledImages {
  int n = 0, h = 0, w = 0;
  std::vector<std::uint8_t> pixels;  ///< n h w, image i's pixel (y, x) at (i h + y) w + x
  std::vector<std::uint8_t> labels;  ///< n
};

/// Reads an image file (IDX, rank 3, unsigned bytes) and its label file (rank 1, unsigned bytes), and
/// checks them against each other (see the top of this file).
inline LabelledImages read_labelled_images(const std::string& images_path, const std::string& labels_path,
                                           int classes = 10) {
  const std::string where = "scorekit::io::read_labelled_images: ";
  IdxArray images = read_idx(images_path);
  IdxArray labels = read_idx(labels_path);
  const std::string ip = detail::printable(images_path), lp = detail::printable(labels_path);
  if (images.type != IdxType::u8 || images.rank() != 3)
    throw io_error(scorekit::detail::concat(where, ip, " holds a rank-", images.rank(), " array of ",
                                            idx_type_name(images.type),
                                            ", not images (rank 3: count x height x width, unsigned bytes)"));
  if (labels.type != IdxType::u8 || labels.rank() != 1)
    throw io_error(scorekit::detail::concat(where, lp, " holds a rank-", labels.rank(), " array of ",
                                            idx_type_name(labels.type),
                                            ", not labels (rank 1 of unsigned bytes)"));
  if (images.dims[0] != labels.dims[0])
    throw io_error(scorekit::detail::concat(where, ip, " holds ", images.dims[0], " images but ", lp,
                                            " holds ", labels.dims[0], " labels: not a pair"));
  if (images.dims[0] > 2147483647 || images.dims[1] > 65535 || images.dims[2] > 65535)
    throw io_error(scorekit::detail::concat(where, ip, " holds ", images.dims[0], " images of ",
                                            images.dims[1], " x ", images.dims[2],
                                            " pixels: too many or too large"));
  LabelledImages out;
  out.n = int(images.dims[0]);
  out.h = int(images.dims[1]);
  out.w = int(images.dims[2]);
  for (int i = 0; i < out.n; ++i)
    if (labels.bytes[std::size_t(i)] >= classes)
      throw io_error(scorekit::detail::concat(where, lp, ": label ", i, " is ",
                                              int(labels.bytes[std::size_t(i)]), ", but there are ", classes,
                                              " classes (0 to ", classes - 1, ")"));
  out.pixels = std::move(images.bytes);
  out.labels = std::move(labels.bytes);
  return out;
}

enum class FashionMnistSplit { train, test };

/// Where Debian's dataset-fashion-mnist installs the four files.
inline std::string fashion_mnist_debian_dir() { return "/usr/share/datasets/fashion-mnist"; }

/// The ten class names, in label order.
inline const char* fashion_mnist_class_name(int label) {
  static const char* const names[] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                      "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  if (label < 0 || label > 9)
    throw invalid_argument(scorekit::detail::concat("scorekit::io::fashion_mnist_class_name: label ", label,
                                                    " is not one of Fashion-MNIST's 0 to 9"));
  return names[label];
}

/// Loads the training (60,000) or test (10,000) images of Fashion-MNIST from `dir` (by default Debian's
/// folder), 28 x 28 each. A missing file is an io_error that says which package installs it.
inline LabelledImages load_fashion_mnist(FashionMnistSplit split,
                                         const std::string& dir = fashion_mnist_debian_dir()) {
  const std::string prefix = split == FashionMnistSplit::train ? "train" : "t10k";
  const std::string images = dir + "/" + prefix + "-images-idx3-ubyte.gz";
  const std::string labels = dir + "/" + prefix + "-labels-idx1-ubyte.gz";
  for (const std::string& file : {images, labels}) {
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0)
      throw io_error(scorekit::detail::concat(
          "scorekit::io::load_fashion_mnist: ", detail::printable(file),
          " does not exist; Fashion-MNIST comes from Debian's package dataset-fashion-mnist (`apt-get "
          "install "
          "dataset-fashion-mnist`, which scripts/setup.sh runs), or pass the folder that holds the four "
          "files"));
  }
  LabelledImages out = read_labelled_images(images, labels, 10);
  if (out.h != 28 || out.w != 28)
    throw io_error(scorekit::detail::concat("scorekit::io::load_fashion_mnist: ", detail::printable(images),
                                            " holds images of ", out.h, " x ", out.w,
                                            " pixels; Fashion-MNIST's are 28 x 28"));
  return out;
}

/// How pixel bytes p become values in [0, 1].
struct PixelScaling {
  /// false: p / 255 (0 and 255 map to 0 and 1). true: (p + u) / 256 with u uniform on (0, 1) from
  /// CounterRng(seed, image, epoch, RngStream::user), a continuous density on [0, 1]^D whose likelihood
  /// bounds the discrete data's (Theis et al. 2016), the convention of bits per dimension.
  bool dequantise = false;
  std::uint64_t seed = 0;
  std::uint64_t epoch = 0;  ///< fresh noise per epoch with the same seed
};

/// The images [first, first + count) as rows of a host view (n x h w), scaled by `scaling`, and pooled
/// 2 x 2 when `pool` (the mean of each 2 x 2 block after scaling; h and w must be even): 28 x 28 to 14 x 14.
template <class Real>
Kokkos::View<Real**, Kokkos::LayoutRight, Kokkos::HostSpace> images_to_rows(const LabelledImages& data,
                                                                            PixelScaling scaling = {},
                                                                            bool pool = false, int first = 0,
                                                                            int count = -1) {
  const std::string where = "scorekit::io::images_to_rows";
  if (count < 0) count = data.n - first;
  if (first < 0 || first + count > data.n)
    throw invalid_argument(
        scorekit::detail::concat(where, ": images [", first, ", ", first + count, ") asked of ", data.n));
  if (pool && (data.h % 2 != 0 || data.w % 2 != 0))
    throw invalid_argument(scorekit::detail::concat(where,
                                                    ": 2 x 2 pooling needs an even height and width, the "
                                                    "images are ",
                                                    data.h, " x ", data.w));
  const int f = pool ? 2 : 1, h = data.h / f, w = data.w / f;
  Kokkos::View<Real**, Kokkos::LayoutRight, Kokkos::HostSpace> rows(
      Kokkos::view_alloc(where, Kokkos::WithoutInitializing), std::size_t(count), std::size_t(h) * w);
  const std::size_t plane = std::size_t(data.h) * data.w;
  std::vector<Real> v(plane);  // one image's values before pooling
  for (int i = 0; i < count; ++i) {
    const std::uint8_t* p = data.pixels.data() + std::size_t(first + i) * plane;
    CounterRng<Real> rng(scaling.seed, std::uint64_t(first + i), scaling.epoch, RngStream::user);
    // Each source pixel's value in row-major order (the generator consumed in that order).
    for (std::size_t q = 0; q < plane; ++q)
      v[q] = scaling.dequantise ? (Real(p[q]) + rng.uniform()) / Real(256) : Real(p[q]) / Real(255);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        Real s = 0;
        for (int dy = 0; dy < f; ++dy)
          for (int dx = 0; dx < f; ++dx)
            s += v[std::size_t(y * f + dy) * std::size_t(data.w) + std::size_t(x * f + dx)];
        rows(std::size_t(i), std::size_t(y) * w + std::size_t(x)) = s / Real(f * f);
      }
  }
  return rows;
}

}  // namespace io
}  // namespace scorekit
