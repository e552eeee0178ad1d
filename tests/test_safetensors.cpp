// safetensors (io/safetensors.hpp) and network parameters through it (io/parameters.hpp): the names,
// shapes and axis orders PyTorch gives the same layers, bitwise round trips for both network paths,
// the file NumPy writes by the format's specification (hidden, run by ctest's numpy_fixtures), and every
// kind of lying or foreign file refused by name with the parameters left as they were.
// scorekit-requires: SCOREKIT_HAVE_NLOHMANN_JSON
// scorekit-requires: SCOREKIT_HAVE_KOKKOS_KERNELS
#include "support.hpp"

#include <catch2/catch.hpp>

#include <scorekit/density/draw.hpp>
#include <scorekit/io/parameters.hpp>
#include <scorekit/io/safetensors.hpp>
#include <scorekit/nn/image/conv2d.hpp>
#include <scorekit/nn/image/group_norm.hpp>
#include <scorekit/nn/image/network.hpp>
#include <scorekit/nn/image/refinenet.hpp>
#include <scorekit/nn/image/unet.hpp>
#include <scorekit/nn/sequential.hpp>
#include <scorekit/objective/batch_denoising.hpp>
#include <scorekit/objective/denoising.hpp>
#include <scorekit/schedule/geometric.hpp>
#include <scorekit/train/export.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace {

using Bytes = std::vector<std::uint8_t>;
using scorekit_test::TempDir;
using Host = Kokkos::DefaultHostExecutionSpace;
using Mlp =
    scorekit::nn::Sequential<scorekit::nn::Dense<2, 5>, scorekit::nn::Softplus, scorekit::nn::Dense<5, 3>,
                             scorekit::nn::Tanh, scorekit::nn::ConditionalDense<3, 2, 4>>;

Bytes slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void spit(const std::string& path, const Bytes& b) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  }
  scorekit_test::add_fuzz_seed(path);
}

/// A safetensors file with the given header text (padded to 8) and data bytes.
Bytes file_of(std::string header, const Bytes& data) {
  header.append((8 - header.size() % 8) % 8, ' ');
  Bytes b;
  for (int k = 0; k < 8; ++k) b.push_back(std::uint8_t(std::uint64_t(header.size()) >> (8 * k)));
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

template <class T>
std::vector<T> decode(const Bytes& b) {
  std::vector<T> v(b.size() / sizeof(T));
  std::memcpy(v.data(), b.data(), b.size());
  return v;
}

/// Parameters 0.5 + k / 64 at flat index k: every value distinct, exact in float.
template <class Real>
Kokkos::View<Real*, Kokkos::HostSpace> counting(int n) {
  Kokkos::View<Real*, Kokkos::HostSpace> p("p", std::size_t(n));
  for (int k = 0; k < n; ++k) p(std::size_t(k)) = Real(0.5 + k / 64.0);
  return p;
}

template <class F>
std::string io_error_of(F f) {
  return scorekit_test::message_of<scorekit::io_error>(f);
}

}  // namespace

TEST_CASE("safetensors: a Sequential's tensors are torch.nn.Sequential's, in PyTorch's layout",
          "[safetensors]") {
  const auto tensors = Mlp::parameter_tensors();
  std::vector<std::string> names;
  for (const auto& t : tensors) names.push_back(t.name);
  CHECK(names == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias", "4.lin.weight",
                                          "4.embed.weight"});
  CHECK(tensors[0].shape == std::vector<std::int64_t>{5, 2});
  CHECK(tensors[5].shape == std::vector<std::int64_t>{4, 2});
  std::int64_t total = 0;
  for (const auto& t : tensors) total += t.size();
  CHECK(total == Mlp::n_params);

  // Named as the attributes of a module: benchmarks/torch_train.py's NoiseConditionalNet (l1, l2:
  // ConditionalDense with lin and embed; l3: nn.Linear) has exactly these keys and shapes.
  using Ncsn = scorekit::nn::Sequential<scorekit::nn::ConditionalDense<2, 128, 10>, scorekit::nn::Softplus,
                                        scorekit::nn::ConditionalDense<128, 128, 10>, scorekit::nn::Softplus,
                                        scorekit::nn::Dense<128, 2>>;
  std::map<std::string, std::vector<std::int64_t>> ncsn;
  for (const auto& t : Ncsn::parameter_tensors({"l1", "", "l2", "", "l3"})) ncsn[t.name] = t.shape;
  CHECK(ncsn == std::map<std::string, std::vector<std::int64_t>>{{"l1.lin.weight", {128, 2}},
                                                                 {"l1.embed.weight", {10, 128}},
                                                                 {"l2.lin.weight", {128, 128}},
                                                                 {"l2.embed.weight", {10, 128}},
                                                                 {"l3.weight", {2, 128}},
                                                                 {"l3.bias", {2}}});
  CHECK_THROWS_WITH(Ncsn::parameter_tensors({"l1", "", "l2"}), Catch::Contains("3 names for 5 layers"));
  CHECK_THROWS_WITH(Ncsn::parameter_tensors({"l1", "", "", "", "l3"}),
                    Catch::Contains("layer 2 (ConditionalDense<128,128,10>) has parameters but no name"));

  TempDir dir("safetensors_mlp");
  const std::string path = dir.file("mlp.safetensors");
  const auto p = counting<float>(Mlp::n_params);
  scorekit::io::save_parameters(path, tensors, p, {{"architecture", Mlp::name()}});
  scorekit_test::add_fuzz_seed(path);
  const scorekit::io::Safetensors s = scorekit::io::read_safetensors(path);
  CHECK(s.metadata.at("architecture") == Mlp::name());
  // nn.Linear's weight is (out, in) row-major, as Dense stores it: the file holds the flat values in order.
  const auto w2 = decode<float>(s.tensors.at("2.weight").bytes);
  REQUIRE(w2.size() == 15);
  for (std::size_t k = 0; k < 15; ++k) CHECK(w2[k] == p(std::size_t(tensors[2].offset) + k));
  CHECK(s.tensors.at("2.weight").dtype == "F32");

  Kokkos::View<float*, Kokkos::HostSpace> q("q", Mlp::n_params);
  const auto metadata = scorekit::io::load_parameters(path, tensors, q);
  CHECK(metadata.at("architecture") == Mlp::name());
  CHECK(scorekit_test::bitwise_equal(p, q));
  // The same content gives the same bytes.
  scorekit::io::save_parameters(dir.file("again.safetensors"), tensors, q, {{"architecture", Mlp::name()}});
  CHECK(slurp(dir.file("again.safetensors")) == slurp(path));
}

TEST_CASE("safetensors: a convolution's weights go out as (c_out, c_in, k, k) and come back bitwise",
          "[safetensors]") {
  using namespace scorekit::nn::image;
  Network<double, Host> net;
  const int x = net.image_input(2);
  const int c = net.layer(Conv2d(2, 3, 3), x);
  const int g = net.layer(GroupNorm(1, 3), c);
  net.name_layer(c, "conv");
  net.set_output(g);
  const auto tensors = net.parameter_tensors();
  REQUIRE(tensors.size() == 4);
  CHECK(tensors[0].name == "conv.weight");
  CHECK(tensors[0].shape == std::vector<std::int64_t>{3, 2, 3, 3});
  CHECK(tensors[1].name == "conv.bias");
  CHECK(tensors[2].name == "layers.2.weight");  // unnamed: by node id
  CHECK(tensors[3].name == "layers.2.bias");

  TempDir dir("safetensors_conv");
  const std::string path = dir.file("conv.safetensors");
  const auto p = counting<double>(net.n_params());
  scorekit::io::save_parameters(path, tensors, p);
  const scorekit::io::Safetensors s = scorekit::io::read_safetensors(path);
  const auto w = decode<double>(s.tensors.at("conv.weight").bytes);
  // PyTorch's element (co, ci, ky, kx) is Conv2d's row (ky 3 + kx) 2 + ci, column co (conv2d.hpp).
  for (int co = 0; co < 3; ++co)
    for (int ci = 0; ci < 2; ++ci)
      for (int ky = 0; ky < 3; ++ky)
        for (int kx = 0; kx < 3; ++kx)
          CHECK(w[std::size_t(((co * 2 + ci) * 3 + ky) * 3 + kx)] ==
                p(std::size_t(((ky * 3 + kx) * 2 + ci) * 3 + co)));
  Kokkos::View<double*, Kokkos::HostSpace> q("q", std::size_t(net.n_params()));
  scorekit::io::load_parameters(path, tensors, q);
  CHECK(scorekit_test::bitwise_equal(p, q));
  // Two layers under one name would write one tensor twice.
  net.name_layer(g, "conv");
  CHECK_THROWS_WITH(net.parameter_tensors(),
                    Catch::Contains("two parameter tensors are named 'conv.weight'"));
}

TEST_CASE("safetensors: lying, foreign or mismatched files are refused by name; the weights stay",
          "[safetensors]") {
  TempDir dir("safetensors_bad");
  const std::string path = dir.file("bad.safetensors");
  const auto tensors = Mlp::parameter_tensors();
  const auto p = counting<float>(Mlp::n_params);
  scorekit::io::save_parameters(path, tensors, p);
  const Bytes good = slurp(path);
  auto read_error = [&](const Bytes& b) {
    spit(path, b);
    return io_error_of([&] { scorekit::io::read_safetensors(path); });
  };
  const Bytes four(4, 0);
  CHECK_THAT(read_error({1, 2, 3}), Catch::Contains("bad.safetensors") && Catch::Contains("truncated"));
  Bytes liar = good;
  liar[5] = 0x7F;
  CHECK_THAT(read_error(liar), Catch::Contains("the header length is") && Catch::Contains("holds only"));
  CHECK_THAT(read_error(file_of("{\"a\": ", four)), Catch::Contains("the header is not JSON"));
  CHECK_THAT(read_error(file_of("[1, 2]", {})), Catch::Contains("not a JSON object"));
  CHECK_THAT(read_error(file_of(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                    "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
                                four)),
             Catch::Contains("gives the key 'a' twice"));
  CHECK_THAT(read_error(file_of(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", four)),
             Catch::Contains("tensor 'a': its data_offsets [0, 8) lie outside the 4 bytes"));
  CHECK_THAT(read_error(file_of(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}})", four)),
             Catch::Contains("hold 4 bytes, but F32 of this shape needs 8"));
  CHECK_THAT(read_error(file_of(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                    "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
                                four)),
             Catch::Contains("overlap"));
  CHECK_THAT(
      read_error(file_of(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", Bytes(8))),
      Catch::Contains("tensor 'a' starts at byte 4") && Catch::Contains("hole"));
  CHECK_THAT(
      read_error(file_of(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", Bytes(8))),
      Catch::Contains("the tensors cover 4 of the 8 bytes"));
  CHECK_THAT(read_error(file_of(R"({"a": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 4]}})", four)),
             Catch::Contains("unknown dtype 'Q7'"));
  CHECK_THAT(read_error(file_of(R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", four)),
             Catch::Contains("non-negative integer"));
  // Empty, but a size past 2^63 (it would read back negative) or sizes multiplying past 2^62.
  CHECK_THAT(read_error(file_of(R"({"a": {"dtype": "F32", "shape": [0, 18446744073709551615],
                                          "data_offsets": [0, 0]}})",
                                {})),
             Catch::Contains("its shape is too large for any file"));
  CHECK_THAT(read_error(file_of(R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296, 0],
                                          "data_offsets": [0, 0]}})",
                                {})),
             Catch::Contains("its shape is too large for any file"));
  CHECK_THAT(read_error(file_of(R"({"a": {"dtype": "F32", "shape": [1]}})", four)),
             Catch::Contains("not an object of exactly dtype, shape and data_offsets"));
  CHECK_THAT(read_error(file_of(R"({"__metadata__": {"k": 1}})", {})),
             Catch::Contains("__metadata__ entry 'k' is not a string"));
  CHECK_THAT(
      read_error(file_of(std::string("{\"a\\u0000\\n\": {\"dtype\": \"Q\", \"shape\": [], \"data_offsets\": "
                                     "[0, 0]}}"),
                         {})),
      Catch::Contains("tensor 'a\\x00\\x0A': unknown dtype"));

  // Against the network: every mismatch is named, and the parameters are left as they were.
  Kokkos::View<float*, Kokkos::HostSpace> q("q", Mlp::n_params);
  Kokkos::deep_copy(q, 7.0f);
  auto load_error = [&](const scorekit::io::Safetensors& s) {
    scorekit::io::write_safetensors(path, s);
    scorekit_test::add_fuzz_seed(path);
    return io_error_of([&] { scorekit::io::load_parameters(path, tensors, q); });
  };
  spit(path, good);
  const scorekit::io::Safetensors ok = scorekit::io::read_safetensors(path);
  scorekit::io::Safetensors s = ok;
  s.tensors.erase("2.bias");
  CHECK_THAT(load_error(s), Catch::Contains("tensor '2.bias' is missing"));
  s = ok;
  s.tensors["extra"] = {"F32", {1}, Bytes(4)};
  CHECK_THAT(load_error(s), Catch::Contains("tensor 'extra' is not a tensor of this network"));
  s = ok;
  s.tensors["2.weight"].shape = {5, 3};
  CHECK_THAT(load_error(s), Catch::Contains("tensor '2.weight' has shape (5, 3), this network's is (3, 5)"));
  s = ok;
  s.tensors["0.bias"] = {"F64", {5}, Bytes(40)};
  CHECK_THAT(load_error(s), Catch::Contains("tensor '0.bias' holds F64, this network takes F32"));
  s = ok;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(s.tensors["4.embed.weight"].bytes.data() + 12, &nan, 4);
  CHECK_THAT(load_error(s), Catch::Contains("tensor '4.embed.weight' holds nan at value 3"));
  for (int k = 0; k < Mlp::n_params; ++k) REQUIRE(q(std::size_t(k)) == 7.0f);
  // NaN weights are not written either.
  auto bad = counting<float>(Mlp::n_params);
  bad(3) = -std::numeric_limits<float>::infinity();
  CHECK_THROWS_AS(scorekit::io::save_parameters(dir.file("nan.safetensors"), tensors, bad),
                  scorekit::invalid_argument);
}

// Hidden: run by ctest's numpy_fixtures after tests/fixtures/make_numpy_fixtures.py wrote the file by the
// format's specification with NumPy alone.
TEST_CASE("safetensors: the file written by the specification with NumPy reads as written", "[.numpy]") {
  const char* env = std::getenv("SCOREKIT_NUMPY_FIXTURES");
  REQUIRE(env != nullptr);
  const std::string path = std::string(env) + "/fixture.safetensors";
  scorekit_test::add_fuzz_seed(path);
  const scorekit::io::Safetensors s = scorekit::io::read_safetensors(path);
  CHECK(s.metadata.at("written_by") == "make_numpy_fixtures.py");
  REQUIRE(s.tensors.size() == 3);
  auto grid = [](std::size_t n, double scale, double offset) {
    std::vector<double> v(n);
    for (std::size_t k = 0; k < n; ++k) v[k] = offset + scale * double(k);
    return v;
  };
  const auto& w0 = s.tensors.at("layer0.weight");
  CHECK(w0.dtype == "F32");
  CHECK(w0.shape == std::vector<std::int64_t>{3, 2});
  const auto f = decode<float>(w0.bytes);
  CHECK(std::vector<double>(f.begin(), f.end()) == grid(6, 0.25, -1.0));
  const auto b0 = decode<float>(s.tensors.at("layer0.bias").bytes);
  CHECK(std::vector<double>(b0.begin(), b0.end()) == grid(3, 0.5, 0.0));
  CHECK(decode<double>(s.tensors.at("layer1.weight").bytes) == grid(3, -0.125, 2.0));
}

TEST_CASE("safetensors: the U-Net's tensors are the keys and shapes of benchmarks/torch_image.py's UNet",
          "[safetensors]") {
  scorekit::nn::image::UNetSettings u;
  u.channels = {4, 8};
  u.groups = 2;
  u.embedding = 6;
  const auto net = scorekit::nn::image::unet<float, Host>(u);
  const auto tensors = net.parameter_tensors();
  std::map<std::string, std::vector<std::int64_t>> shapes;
  std::int64_t total = 0;
  for (const auto& t : tensors) {
    shapes[t.name] = t.shape;
    total += t.size();
  }
  // torch_image.py: UNet(channels=(4, 8)) with EMBED = 6 and GroupNorm(2, c) has these parameters.
  const std::map<std::string, std::vector<std::int64_t>> torch = {{"embed.weight", {6, 6}},
                                                                  {"embed.bias", {6}},
                                                                  {"enc.0.conv.weight", {4, 1, 3, 3}},
                                                                  {"enc.0.dense.weight", {4, 6}},
                                                                  {"enc.0.dense.bias", {4}},
                                                                  {"enc.0.norm.weight", {4}},
                                                                  {"enc.0.norm.bias", {4}},
                                                                  {"enc.1.conv.weight", {8, 4, 3, 3}},
                                                                  {"enc.1.dense.weight", {8, 6}},
                                                                  {"enc.1.dense.bias", {8}},
                                                                  {"enc.1.norm.weight", {8}},
                                                                  {"enc.1.norm.bias", {8}},
                                                                  {"dec.0.conv.weight", {4, 8, 3, 3}},
                                                                  {"dec.0.dense.weight", {4, 6}},
                                                                  {"dec.0.dense.bias", {4}},
                                                                  {"dec.0.norm.weight", {4}},
                                                                  {"dec.0.norm.bias", {4}},
                                                                  {"out.weight", {1, 8, 3, 3}},
                                                                  {"out.bias", {1}}};
  CHECK(shapes == torch);
  CHECK(total == net.n_params());  // every parameter in exactly one tensor

  // With the score model's Fourier frequencies as the buffer fourier.w, both ways.
  TempDir dir("safetensors_unet");
  const std::string path = dir.file("unet.safetensors");
  const auto p = counting<float>(net.n_params());
  const std::vector<float> w = {0.5f, -1.25f, 3.0f};
  scorekit::io::save_parameters(path, tensors, p, {}, {{"fourier.w", w}});
  Kokkos::View<float*, Kokkos::HostSpace> q("q", std::size_t(net.n_params()));
  std::map<std::string, std::vector<float>> buffers = {{"fourier.w", {}}};
  scorekit::io::load_parameters(path, tensors, q, &buffers);
  CHECK(buffers.at("fourier.w") == w);
  CHECK(scorekit_test::bitwise_equal(p, q));
  // Without asking for the buffer, it is a tensor this network does not have.
  CHECK_THAT(io_error_of([&] { scorekit::io::load_parameters(path, tensors, q); }),
             Catch::Contains("tensor 'fourier.w' is not a tensor of this network"));
  buffers = {{"fourier.w", std::vector<float>(4)}};
  CHECK_THAT(io_error_of([&] { scorekit::io::load_parameters(path, tensors, q, &buffers); }),
             Catch::Contains("buffer 'fourier.w' has 3 values, this model's has 4"));
}

TEST_CASE(
    "safetensors: RefineNet-lite's tensors are torch_image.py's RefineNetLite's; CIN++ as one embedding",
    "[safetensors]") {
  scorekit::nn::image::RefineNetSettings r;
  r.channels = {4, 6, 6};
  r.features = 5;  // levels
  const auto net = scorekit::nn::image::refinenet_lite<double, Host>(r);
  const auto tensors = net.parameter_tensors();
  std::map<std::string, scorekit::ParameterTensor> by_name;
  std::int64_t total = 0;
  for (const auto& t : tensors) {
    CHECK(t.name.rfind("layers.", 0) == std::string::npos);  // every layer named
    by_name[t.name] = t;
    total += t.size();
  }
  CHECK(total == net.n_params());
  // A few keys of RefineNetLite(channels=(4, 6, 6)) with LEVELS = 5, and their shapes.
  const std::map<std::string, std::vector<std::int64_t>> torch = {
      {"begin.weight", {4, 1, 3, 3}},
      {"res.0.norm1.embed.weight", {5, 12}},
      {"res.1.conv1.weight", {4, 4, 3, 3}},
      {"res.1.conv2.weight", {6, 4, 3, 3}},
      {"res.1.shortcut.weight", {6, 4, 1, 1}},
      {"res.2.conv1.weight", {6, 6, 3, 3}},
      {"refine.0.adapt.0.norms.1.embed.weight", {5, 18}},
      {"refine.0.adapt.0.convs.1.weight", {6, 6, 3, 3}},
      {"refine.1.msf_convs.1.weight", {4, 6, 3, 3}},
      {"refine.1.crp_convs.0.weight", {4, 4, 3, 3}},
      {"refine.2.out.convs.0.weight", {4, 4, 3, 3}},
      {"end_norm.embed.weight", {5, 12}},
      {"end.weight", {1, 4, 3, 3}},
      {"end.bias", {1}}};
  for (const auto& kv : torch) {
    INFO(kv.first);
    REQUIRE(by_name.count(kv.first) == 1);
    CHECK(by_name.at(kv.first).shape == kv.second);
  }
  CHECK(by_name.count("res.0.shortcut.weight") == 0);        // 4 -> 4 channels, no down-sampling: identity
  CHECK(by_name.count("refine.0.msf_convs.0.weight") == 0);  // the deepest block does not fuse (6 -> 6)

  // The embedding's element (level l, k C + j) is CIN++'s block k, row l, channel j (instance_norm_plus.hpp).
  const auto& e = by_name.at("end_norm.embed.weight");
  const std::vector<std::int64_t> at = e.stored_positions();
  const std::int64_t c = 4, levels = 5;
  for (std::int64_t l = 0; l < levels; ++l)
    for (std::int64_t k = 0; k < 3; ++k)
      for (std::int64_t j = 0; j < c; ++j)
        CHECK(at[std::size_t(l * 3 * c + k * c + j)] == k * levels * c + l * c + j);
}

TEST_CASE("safetensors: a trainer's EMA weights export with what they are", "[safetensors]") {
  using Mem = Host::memory_space;
  TempDir dir("safetensors_export");
  // The compile-time path: names of a module's attributes, the objective's noise levels in the metadata.
  using Objective = scorekit::objective::DenoisingScoreMatching<float, Mem>;
  scorekit::train::TrainSettings settings;
  settings.batch_size = 16;
  settings.log = nullptr;
  scorekit::train::Trainer<Mlp, Objective, Host, float> trainer(
      Objective(scorekit::geometric_schedule(1.0, 0.1, 4)), settings, 3);
  auto data = scorekit::make_particles<float>(Host(), 64, 2);
  scorekit::fill_normal(Host(), data, 0.0f, 1.0f, 2);
  trainer.train(data, 3);
  const std::string path = dir.file("mlp.safetensors");
  scorekit::train::export_weights(trainer, path);
  const auto s = scorekit::io::read_safetensors(path);
  CHECK(s.metadata.at("architecture") == Mlp::name());
  CHECK(s.metadata.at("objective") == trainer.objective().name());
  CHECK(s.metadata.at("step") == "3");
  Kokkos::View<float*, Kokkos::HostSpace> q("q", Mlp::n_params);
  scorekit::io::load_parameters(path, Mlp::parameter_tensors(), q);
  CHECK(scorekit_test::bitwise_equal(trainer.ema_parameters(), q));

  // The batched path: the U-Net's tensors and its Fourier frequencies as fourier.w.
  using Draw = scorekit::objective::SigmaLadder<float, Mem>;
  scorekit::nn::image::UNetSettings u;
  u.channels = {4, 8};
  u.groups = 2;
  u.embedding = 6;
  auto net =
      std::make_shared<scorekit::nn::image::Network<float, Host>>(scorekit::nn::image::unet<float, Host>(u));
  scorekit::ImageScoreSettings image;
  image.height = image.width = 4;
  image.channels = 1;
  image.fourier_features = 6;
  scorekit::train::BatchTrainer<float, Host, Draw> images(net, image, Draw({0.1, 0.5, 2.0}), settings, 5);
  auto x = scorekit::make_particles<float>(Host(), 8, 16);
  scorekit::fill_normal(Host(), x, 0.0f, 1.0f, 4);
  images.train(x, 2);
  const std::string unet_path = dir.file("unet.safetensors");
  scorekit::train::export_weights(images, unet_path);
  std::map<std::string, std::vector<float>> buffers = {{"fourier.w", {}}};
  Kokkos::View<float*, Kokkos::HostSpace> r("r", std::size_t(net->n_params()));
  const auto metadata = scorekit::io::load_parameters(unet_path, net->parameter_tensors(), r, &buffers);
  CHECK(scorekit_test::bitwise_equal(images.ema_parameters(), r));
  CHECK(buffers.at("fourier.w") == images.model().frequencies());
  CHECK(metadata.at("objective") == images.draw().name());
  CHECK(metadata.at("step") == "2");
}
