// A runtime-shaped network over NHWC image batches (tensor.hpp): a graph of runtime layers (Conv2d,
// GroupNorm, Activation, AvgPool2d, Upsample2d, or a user's layer with the members tensor.hpp lists),
// elementwise sums, channel concatenations, per-sample feature vectors added to every pixel (the way
// a noise or time embedding enters each block of a U-Net) and conditioned layers, which read a node of
// per-sample features besides their image (instance_norm_plus.hpp's CIN++), built at run time, so
// architectures are sized by parameters (image_unet.hpp builds two). Its parameters are one flat view, each
// layer a segment of it, so Adam, the EMA, initialize() and checkpoints serve it unchanged.
//
//   Network<float, Kokkos::OpenMP> net;
//   const int x = net.image_input(1);                 // node ids, in the order nodes are added
//   const int e = net.features_input(16);             // per-sample features, n x 16 (optional)
//   int h = net.layer(Conv2d(1, 32, 3, padded), x);
//   h = net.add_features(h, net.layer(pointwise_dense(16, 32), e));
//   h = net.layer(Activation<Silu>(), net.layer(GroupNorm(8, 32), h));
//   net.set_output(net.sum(h, ...));
//
// forward() keeps every node's value, and backward() uses them: call backward after the forward of the
// same batch. Buffers (values, adjoints, one shared workspace) are allocated when the batch shape
// changes, never inside a step of a fixed shape. Every member is host-called; the layers' kernels run on
// the execution space instance given. A node whose value feeds several others sums their adjoints in a
// fixed order (the reverse of node order), so backward is deterministic.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/parameter_tensor.hpp>
#include <scorekit/nn/image/tensor.hpp>
#include <scorekit/nn/segment.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace scorekit {
namespace nn {
namespace image {

template <class Real, class Exec>
class Network {
 public:
  using execution_space = Exec;
  using memory_space = typename Exec::memory_space;
  using tensor_type = Tensor<Real, memory_space>;
  using const_tensor_type = ConstTensor<Real, memory_space>;
  using vector_type = Kokkos::View<Real*, memory_space>;
  using const_vector_type = Kokkos::View<const Real*, memory_space>;

  Network() = default;
  Network(Network&&) = default;
  Network& operator=(Network&&) = default;

  /// The image input (at most one; it must be the first node added), with `channels` channels.
  int image_input(int channels) {
    if (!nodes_.empty()) throw invalid_argument(where() + ": image_input() must be the first node added");
    require_positive_count(channels, "image_input: channels");
    Node n;
    n.kind = Kind::image_input;
    n.channels = channels;
    return push(std::move(n));
  }

  /// A per-sample feature vector input (at most one), a batch of n images of 1 x 1 pixels with
  /// `features` channels: a noise or time embedding enters here.
  int features_input(int features) {
    require_started("features_input");
    if (features_node_ >= 0) throw invalid_argument(where() + ": the network already has a features input");
    require_positive_count(features, "features_input: features");
    Node n;
    n.kind = Kind::features_input;
    n.channels = features;
    features_node_ = int(nodes_.size());
    return push(std::move(n));
  }

  /// `layer` applied to the value of node `from`; its parameters take the next segment of the flat view.
  template <class Layer>
  int layer(Layer layer, int from) {
    require_node(from, "layer");
    Node n;
    n.kind = Kind::layer;
    n.a = from;
    n.op = std::make_unique<LayerModel<Layer, false>>(std::move(layer));
    return push_parameterised(std::move(n));
  }

  /// A conditioned layer (one that reads per-sample features besides its image: CIN++,
  /// instance_norm_plus.hpp) applied to the value of node `image`, with the value of node `features` (n x 1
  /// x 1 x layer.feature_size(): the features input, or a node computed from it) as its features. Its
  /// backward gives the image's and the features' adjoints. The concept is the runtime layer's
  /// (tensor.hpp) with a member `int feature_size() const` and the features in the calls:
  ///   forward(exec, params, x, in, features, y, work);
  ///   backward(exec, params, x, in, features, dy, grad, dx, dfeatures, work);   // dfeatures overwritten
  template <class Layer>
  int conditioned_layer(Layer layer, int image, int features) {
    require_node(image, "conditioned_layer");
    require_node(features, "conditioned_layer");
    if (image == features)
      throw invalid_argument(scorekit::detail::concat(where(), ": conditioned_layer(): node ", image,
                                                      " cannot be both the image and the features"));
    Node n;
    n.kind = Kind::conditioned_layer;
    n.a = image;
    n.b = features;
    n.op = std::make_unique<LayerModel<Layer, true>>(std::move(layer));
    return push_parameterised(std::move(n));
  }

  /// a + b, elementwise (equal shapes).
  int sum(int a, int b) { return binary(Kind::sum, a, b, "sum"); }
  /// The channels of a followed by those of b (equal batch, height and width).
  int concat(int a, int b) { return binary(Kind::concat, a, b, "concat"); }
  /// image(i, y, x, c) + features(i, c): b must be a feature node (1 x 1 pixels) with a's channels.
  int add_features(int image, int features) {
    return binary(Kind::add_features, image, features, "add_features");
  }

  void set_output(int node) {
    require_node(node, "set_output");
    output_ = node;
  }

  int n_nodes() const { return int(nodes_.size()); }
  int n_params() const { return n_params_; }
  bool has_features() const { return features_node_ >= 0; }
  int feature_size() const { return features_node_ >= 0 ? nodes_[std::size_t(features_node_)].channels : 0; }
  int in_channels() const {
    require_complete("in_channels");
    return nodes_[0].channels;
  }

  /// Every layer's segments, at their offsets in the flat view.
  std::vector<Segment> segments() const {
    std::vector<Segment> all;
    for (const Node& n : nodes_)
      if (n.op)
        for (const Segment& s : n.op->segments(n.param_offset)) all.push_back(s);
    return all;
  }

  /// Names the parameters of layer node `node` in parameter_tensors() (e.g. "down.0.conv", as the
  /// attribute path of the same layer in a PyTorch module); unnamed layers are "layers.<node id>".
  void name_layer(int node, std::string name) {
    require_node(node, "name_layer");
    if (!nodes_[std::size_t(node)].op)
      throw invalid_argument(
          scorekit::detail::concat(where(), ": name_layer(): node ", node, " is not a layer"));
    if (name.empty()) throw invalid_argument(where() + ": name_layer(): the name is empty");
    nodes_[std::size_t(node)].name = std::move(name);
  }

  /// The parameters as named tensors in PyTorch's conventions (core/parameter_tensor.hpp), layer by layer
  /// in node order: "<layer name>.weight" and so on (each layer's tensors() or, for a layer without it,
  /// one 1-d tensor per segment). Throws invalid_argument when two tensors get one name.
  std::vector<ParameterTensor> parameter_tensors() const {
    std::vector<ParameterTensor> all;
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      const Node& n = nodes_[i];
      if (!n.op) continue;
      const std::string prefix = (n.name.empty() ? "layers." + std::to_string(i) : n.name) + ".";
      for (ParameterTensor& t : n.op->tensors(n.param_offset, prefix)) {
        for (const ParameterTensor& u : all)
          if (u.name == t.name)
            throw invalid_argument(scorekit::detail::concat(where(), ": two parameter tensors are named '",
                                                            t.name, "' (see name_layer())"));
        all.push_back(std::move(t));
      }
    }
    return all;
  }

  /// One line per node: its id, what it is, its inputs and, once a shape has been prepared, its shape.
  std::string summary() const {
    std::string s;
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      const Node& n = nodes_[i];
      s += scorekit::detail::concat(i, ": ", describe(n));
      if (n.a >= 0) s += scorekit::detail::concat(" <- ", n.a);
      if (n.b >= 0) s += scorekit::detail::concat(", ", n.b);
      if (prepared_.n > 0) s += " -> " + to_string(n.shape);
      s += "\n";
    }
    return s;
  }

  /// Multiply-adds of one forward on a batch of shape `in`, summed over the layers that count theirs (a
  /// member multiply_adds(in), as Conv2d has): the figure GFLOP/s are read against.
  double multiply_adds(const ImageShape& in) const {
    const std::vector<ImageShape> shapes = propagate(in);
    double sum = 0;
    for (const Node& n : nodes_)
      if (n.op) sum += n.op->multiply_adds(shapes[std::size_t(n.a)]);
    return sum;
  }

  /// The output shape for an input of shape `in` (and features of the batch's size); throws
  /// dimension_mismatch naming the first node that does not fit.
  ImageShape output_shape(const ImageShape& in) const {
    std::vector<ImageShape> shapes = propagate(in);
    return shapes[std::size_t(output_)];
  }

  /// Allocates the values, adjoints and workspace for batches of shape `in` (forward() does it when the
  /// shape changes).
  void prepare(const ImageShape& in) {
    if (in == prepared_) return;
    const std::vector<ImageShape> shapes = propagate(in);
    std::size_t work = 0, largest = 0, largest_features = 0;
    // The buffers only grow: a batch no larger than one seen before (the micro-batches of a training
    // step, a sampler's batches beside training's) reuses them instead of allocating again.
    auto at_least = [](vector_type& storage, std::size_t size, const char* label) {
      if (storage.extent(0) < size)
        storage = vector_type(Kokkos::view_alloc(Kokkos::WithoutInitializing, std::string(label)), size);
      return storage.data();
    };
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      Node& n = nodes_[i];
      n.shape = shapes[i];
      const auto r = std::size_t(n.shape.rows()), c = std::size_t(n.shape.c);
      if (n.kind != Kind::image_input && n.kind != Kind::features_input)
        n.value = tensor_type(at_least(n.value_storage, r * c, "scorekit::nn::image::Network::value"), r, c);
      n.adjoint =
          tensor_type(at_least(n.adjoint_storage, r * c, "scorekit::nn::image::Network::adjoint"), r, c);
      if (n.op) work = std::max(work, n.op->workspace_size(shapes[std::size_t(n.a)]));
      if (n.kind == Kind::conditioned_layer)
        largest_features = std::max(largest_features, std::size_t(shapes[std::size_t(n.b)].size()));
      largest = std::max(largest, r * c);
    }
    at_least(work_storage_, std::max<std::size_t>(work, 1), "scorekit::nn::image::Network::workspace");
    work_ = vector_type(work_storage_.data(), std::max<std::size_t>(work, 1));
    at_least(scratch_storage_, largest + largest_features, "scorekit::nn::image::Network::scratch");
    scratch_ = vector_type(scratch_storage_.data(), largest + largest_features);
    scratch_features_ = largest;
    prepared_ = in;
  }

  /// y = net(params, x, features): x of shape `in`, features n x feature_size() (an empty view when the
  /// network has no features input), y of output_shape(in). Keeps the values for backward().
  void forward(const Exec& exec, const const_vector_type& params, const const_tensor_type& x,
               const ImageShape& in, const const_tensor_type& features, const tensor_type& y) {
    require_complete("forward");
    const std::string w = where() + " forward";
    require_parameters(params, n_params_, w, "the parameters");
    prepare(in);
    detail::require_tensor(x, in, w, "the input");
    if (features_node_ >= 0)
      detail::require_tensor(features, nodes_[std::size_t(features_node_)].shape, w, "the features");
    detail::require_tensor(y, nodes_[std::size_t(output_)].shape, w, "the output");
    ScopedRegion region("scorekit::nn::image::Network::forward");
    x_ = x;
    f_ = features;
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      Node& n = nodes_[i];
      switch (n.kind) {
        case Kind::image_input:
        case Kind::features_input:
          break;
        case Kind::layer:
        case Kind::conditioned_layer:
          n.op->forward(exec, layer_params(params, n), value(n.a), nodes_[std::size_t(n.a)].shape,
                        n.kind == Kind::layer ? const_tensor_type() : value(n.b), n.value, work_);
          break;
        case Kind::sum:
        case Kind::concat:
        case Kind::add_features:
          combine(exec, value(n.a), value(n.b), nodes_[std::size_t(n.a)].shape,
                  nodes_[std::size_t(n.b)].shape, n.value,
                  n.kind == Kind::sum      ? 0
                  : n.kind == Kind::concat ? 1
                                           : 2);
          break;
      }
    }
    Kokkos::deep_copy(exec, y, value(output_));
  }

  /// After forward() on the same batch: grad (when not empty) += (d net / d params)^T dy; dx (when not
  /// empty) = the input adjoint, dfeatures (when not empty) = the features' adjoint. With an empty grad no
  /// parameter gradient is computed (a vector-Jacobian product: about a third less work for convolutions);
  /// the adjoints are the same bits as with one.
  void backward(const Exec& exec, const const_vector_type& params, const const_tensor_type& dy,
                const vector_type& grad, const tensor_type& dx = tensor_type(),
                const tensor_type& dfeatures = tensor_type()) {
    require_complete("backward");
    const std::string w = where() + " backward";
    if (prepared_.n == 0 || x_.data() == nullptr)
      throw invalid_argument(w + ": call forward() on the batch first");
    require_parameters(params, n_params_, w, "the parameters");
    const bool want_grad = grad.extent(0) != 0;
    if (want_grad) require_parameters(grad, n_params_, w, "the gradient");
    detail::require_tensor(dy, nodes_[std::size_t(output_)].shape, w, "the output adjoint");
    if (dx.extent(0) != 0) detail::require_tensor(dx, nodes_[0].shape, w, "the input adjoint");
    if (dfeatures.extent(0) != 0) {
      if (features_node_ < 0)
        throw invalid_argument(w + ": a features adjoint was given but the network has no features input");
      detail::require_tensor(dfeatures, nodes_[std::size_t(features_node_)].shape, w, "the features adjoint");
    }
    ScopedRegion region("scorekit::nn::image::Network::backward");
    // Every node's adjoint is wanted except the inputs', which are computed only when asked for.
    const std::size_t N = nodes_.size();
    if (!want_grad) {  // a layer that cannot skip its gradient writes it to a discarded scratch
      std::size_t largest = 0;
      for (const Node& n : nodes_)
        if (n.op && !n.op->optional_gradient()) largest = std::max(largest, std::size_t(n.op->n_params()));
      if (grad_scratch_.extent(0) < largest)
        grad_scratch_ = vector_type("scorekit::nn::image::Network::scratch_gradient", largest);
    }
    std::vector<char> needed(N, 1), written(N, 0);
    needed[0] = dx.extent(0) != 0;
    if (features_node_ >= 0) needed[std::size_t(features_node_)] = dfeatures.extent(0) != 0;
    for (std::size_t k = N; k-- > 0;) {
      Node& n = nodes_[k];
      if (n.kind == Kind::image_input || n.kind == Kind::features_input) continue;
      if (!written[k] && int(k) != output_) continue;  // no consumer: contributes nothing
      const const_tensor_type d = int(k) == output_ && !written[k] ? dy : const_tensor_type(n.adjoint);
      if (int(k) == output_ && written[k]) add_into(exec, n.adjoint, dy);
      switch (n.kind) {
        case Kind::layer: {
          const bool want = needed[std::size_t(n.a)] != 0;
          const tensor_type target = want ? adjoint_target(n.a, written) : tensor_type();
          n.op->backward(exec, layer_params(params, n), value(n.a), nodes_[std::size_t(n.a)].shape,
                         const_tensor_type(), d, layer_grad(grad, n), target, tensor_type(), work_);
          if (want) finish_adjoint(exec, n.a, target, written);
          break;
        }
        case Kind::conditioned_layer: {
          // Both adjoints at once: the features' goes to the second part of the scratch when its node
          // has one already.
          const bool want = needed[std::size_t(n.a)] != 0, want_f = needed[std::size_t(n.b)] != 0;
          const tensor_type target = want ? adjoint_target(n.a, written) : tensor_type();
          const tensor_type target_f =
              want_f ? adjoint_target(n.b, written, scratch_features_) : tensor_type();
          n.op->backward(exec, layer_params(params, n), value(n.a), nodes_[std::size_t(n.a)].shape,
                         value(n.b), d, layer_grad(grad, n), target, target_f, work_);
          if (want) finish_adjoint(exec, n.a, target, written);
          if (want_f) finish_adjoint(exec, n.b, target_f, written);
          break;
        }
        case Kind::sum:
          for (const int from : std::array<int, 2>{n.a, n.b})
            if (needed[std::size_t(from)]) {
              const tensor_type target = adjoint_target(from, written);
              Kokkos::deep_copy(exec, target, d);
              finish_adjoint(exec, from, target, written);
            }
          break;
        case Kind::concat:
        case Kind::add_features:
          for (int side = 0; side < 2; ++side) {
            const int from = side == 0 ? n.a : n.b;
            if (!needed[std::size_t(from)]) continue;
            const tensor_type target = adjoint_target(from, written);
            split_adjoint(exec, d, nodes_[std::size_t(n.a)].shape, (n.kind == Kind::concat ? 0 : 2) + side,
                          target);
            finish_adjoint(exec, from, target, written);
          }
          break;
        default:
          break;
      }
    }
    if (dx.extent(0) != 0) {
      if (written[0])
        Kokkos::deep_copy(exec, dx, nodes_[0].adjoint);
      else
        Kokkos::deep_copy(exec, dx, Real(0));
    }
    if (dfeatures.extent(0) != 0) {
      if (written[std::size_t(features_node_)])
        Kokkos::deep_copy(exec, dfeatures, nodes_[std::size_t(features_node_)].adjoint);
      else
        Kokkos::deep_copy(exec, dfeatures, Real(0));
    }
  }

  /// The value node `id` took in the last forward() (for tests and inspection): a view of the network's
  /// buffers, valid until the next forward() (which may reallocate them for a larger batch).
  const_tensor_type value(int id) const {
    const Node& n = nodes_[std::size_t(id)];
    if (n.kind == Kind::image_input) return x_;
    if (n.kind == Kind::features_input) return f_;
    return n.value;
  }

 private:
  enum class Kind { image_input, features_input, layer, conditioned_layer, sum, concat, add_features };

  template <class L, class = void>
  struct names_tensors : std::false_type {};
  template <class L>
  struct names_tensors<
      L, std::void_t<decltype(std::declval<const L&>().tensors(0, std::declval<const std::string&>()))>>
      : std::true_type {};
  template <class L, class = void>
  struct counts_multiply_adds : std::false_type {};
  template <class L>
  struct counts_multiply_adds<L, std::void_t<decltype(std::declval<const L&>().multiply_adds(ImageShape{}))>>
      : std::true_type {};

  /// The layer interface, type-erased so that architectures are built at run time; a plain layer ignores
  /// the features (and has feature_size() 0).
  struct LayerBase {
    virtual ~LayerBase() = default;
    virtual std::string name() const = 0;
    virtual int feature_size() const = 0;
    virtual ImageShape output_shape(const ImageShape& in) const = 0;
    virtual int n_params() const = 0;
    virtual bool optional_gradient() const = 0;
    virtual std::vector<Segment> segments(int offset) const = 0;
    virtual std::vector<ParameterTensor> tensors(int offset, const std::string& prefix) const = 0;
    virtual std::size_t workspace_size(const ImageShape& in) const = 0;
    virtual double multiply_adds(const ImageShape& in) const = 0;
    virtual void forward(const Exec&, const const_vector_type&, const const_tensor_type&, const ImageShape&,
                         const const_tensor_type&, const tensor_type&, const vector_type&) const = 0;
    virtual void backward(const Exec&, const const_vector_type&, const const_tensor_type&, const ImageShape&,
                          const const_tensor_type&, const const_tensor_type&, const vector_type&,
                          const tensor_type&, const tensor_type&, const vector_type&) const = 0;
  };
  /// A layer behind LayerBase; a conditioned layer (Conditioned) also takes the features and returns their
  /// adjoint, a plain one ignores them.
  template <class Layer, bool Conditioned>
  struct LayerModel final : LayerBase {
    explicit LayerModel(Layer l) : layer(std::move(l)) {}
    std::string name() const override { return layer.name(); }
    int feature_size() const override {
      if constexpr (Conditioned)
        return layer.feature_size();
      else
        return 0;
    }
    ImageShape output_shape(const ImageShape& in) const override { return layer.output_shape(in); }
    int n_params() const override { return layer.n_params(); }
    bool optional_gradient() const override { return detail::has_optional_gradient<Layer>::value; }
    std::vector<Segment> segments(int offset) const override { return layer.segments(offset); }
    std::vector<ParameterTensor> tensors(int offset, const std::string& prefix) const override {
      if constexpr (names_tensors<Layer>::value) {
        return layer.tensors(offset, prefix);
      } else {
        // A layer that does not name its tensors: one 1-d tensor per segment, named by its kind.
        std::vector<ParameterTensor> t;
        const std::vector<Segment> segs = layer.segments(offset);
        for (std::size_t k = 0; k < segs.size(); ++k)
          t.push_back(ParameterTensor{prefix + parameter_kind_name(segs[k].kind) + std::to_string(k),
                                      segs[k].offset,
                                      {segs[k].size},
                                      {}});
        return t;
      }
    }
    std::size_t workspace_size(const ImageShape& in) const override { return layer.workspace_size(in); }
    double multiply_adds(const ImageShape& in) const override {
      if constexpr (counts_multiply_adds<Layer>::value)
        return layer.multiply_adds(in);
      else
        return 0;
    }
    void forward(const Exec& exec, const const_vector_type& p, const const_tensor_type& x,
                 const ImageShape& in, const const_tensor_type& f, const tensor_type& y,
                 const vector_type& work) const override {
      if constexpr (Conditioned)
        layer.forward(exec, p, x, in, f, y, work);
      else
        layer.forward(exec, p, x, in, y, work);
    }
    void backward(const Exec& exec, const const_vector_type& p, const const_tensor_type& x,
                  const ImageShape& in, const const_tensor_type& f, const const_tensor_type& dy,
                  const vector_type& grad, const tensor_type& dx, const tensor_type& df,
                  const vector_type& work) const override {
      if constexpr (Conditioned)
        layer.backward(exec, p, x, in, f, dy, grad, dx, df, work);
      else
        layer.backward(exec, p, x, in, dy, grad, dx, work);
    }
    Layer layer;
  };

  struct Node {
    Kind kind = Kind::layer;
    int a = -1, b = -1;
    int channels = 0;  ///< inputs only
    std::unique_ptr<LayerBase> op;
    std::string name;  ///< name_layer()'s, for parameter_tensors()
    int param_offset = 0;
    ImageShape shape;
    tensor_type value, adjoint;                  ///< views of the storage below, shaped for the last batch
    vector_type value_storage, adjoint_storage;  ///< grown to the largest batch seen (prepare())
  };

  static std::string where() { return "scorekit::nn::image::Network"; }

  static void require_positive_count(int v, const char* what) {
    if (v <= 0)
      throw invalid_argument(scorekit::detail::concat(where(), ": ", what, " must be positive, got ", v));
  }
  void require_started(const char* what) const {
    if (nodes_.empty()) throw invalid_argument(where() + ": " + what + "(): add the image_input() first");
  }
  void require_node(int id, const char* what) const {
    require_started(what);
    if (id < 0 || id >= int(nodes_.size()))
      throw invalid_argument(scorekit::detail::concat(where(), ": ", what, "(): node ", id,
                                                      " does not exist (the network has ", nodes_.size(),
                                                      " nodes)"));
  }
  void require_complete(const char* what) const {
    if (nodes_.empty() || output_ < 0)
      throw invalid_argument(where() + ": " + what +
                             "(): the network needs an image_input() and set_output() first");
  }
  template <class V>
  static void require_parameters(const V& v, int n, const std::string& w, const char* what) {
    detail::require_parameters(v, n, w, what);
  }

  int push(Node n) {
    nodes_.push_back(std::move(n));
    prepared_ = ImageShape{};
    return int(nodes_.size()) - 1;
  }

  /// push() for a node with a layer: its parameters take the next segment of the flat view.
  int push_parameterised(Node n) {
    n.param_offset = n_params_;
    const int np = n.op->n_params();
    if (np < 0 || std::int64_t(n_params_) + np > 2147483647)
      throw invalid_argument(where() + ": " + n.op->name() + ": the parameter count does not fit an int");
    n_params_ += np;
    return push(std::move(n));
  }

  int binary(Kind kind, int a, int b, const char* what) {
    require_node(a, what);
    require_node(b, what);
    Node n;
    n.kind = kind;
    n.a = a;
    n.b = b;
    return push(std::move(n));
  }

  std::string describe(const Node& n) const {
    switch (n.kind) {
      case Kind::image_input:
        return scorekit::detail::concat("image input (", n.channels, " channels)");
      case Kind::features_input:
        return scorekit::detail::concat("features input (", n.channels, ")");
      case Kind::layer:
        return n.op->name();
      case Kind::conditioned_layer:
        return n.op->name() + " (conditioned)";
      case Kind::sum:
        return "sum";
      case Kind::concat:
        return "concat";
      case Kind::add_features:
        return "add_features";
    }
    return "?";
  }

  std::vector<ImageShape> propagate(const ImageShape& in) const {
    require_complete("output_shape");
    detail::require_valid_shape(in, where(), "input");
    if (in.c != nodes_[0].channels)
      throw dimension_mismatch(scorekit::detail::concat(where(), ": the input has ", in.c,
                                                        " channels (shape ", to_string(in),
                                                        "), the network takes ", nodes_[0].channels));
    std::vector<ImageShape> s(nodes_.size());
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      const Node& n = nodes_[i];
      const std::string at = scorekit::detail::concat(where(), ": node ", i, " (", describe(n), ")");
      switch (n.kind) {
        case Kind::image_input:
          s[i] = in;
          break;
        case Kind::features_input:
          s[i] = ImageShape{in.n, 1, 1, n.channels};
          break;
        case Kind::layer:
          try {
            s[i] = n.op->output_shape(s[std::size_t(n.a)]);
          } catch (const dimension_mismatch& e) {
            throw dimension_mismatch(at + ": " + e.what());
          }
          break;
        case Kind::conditioned_layer: {
          try {
            s[i] = n.op->output_shape(s[std::size_t(n.a)]);
          } catch (const dimension_mismatch& e) {
            throw dimension_mismatch(at + ": " + e.what());
          }
          const ImageShape a = s[std::size_t(n.a)], b = s[std::size_t(n.b)];
          if (b != ImageShape{a.n, 1, 1, n.op->feature_size()})
            throw dimension_mismatch(
                scorekit::detail::concat(at, ": its features (node ", n.b, ") are ", to_string(b),
                                         " but the layer takes ", a.n, " x 1 x 1 x ", n.op->feature_size(),
                                         " (the batch's size, 1 x 1 pixels, its feature_size())"));
          break;
        }
        case Kind::sum:
          if (s[std::size_t(n.a)] != s[std::size_t(n.b)])
            throw dimension_mismatch(at + ": adds " + to_string(s[std::size_t(n.a)]) + " and " +
                                     to_string(s[std::size_t(n.b)]));
          s[i] = s[std::size_t(n.a)];
          break;
        case Kind::concat: {
          const ImageShape a = s[std::size_t(n.a)], b = s[std::size_t(n.b)];
          if (a.n != b.n || a.h != b.h || a.w != b.w)
            throw dimension_mismatch(at + ": concatenates " + to_string(a) + " and " + to_string(b) +
                                     " (batch, height and width must agree)");
          s[i] = ImageShape{a.n, a.h, a.w, a.c + b.c};
          break;
        }
        case Kind::add_features: {
          const ImageShape a = s[std::size_t(n.a)], b = s[std::size_t(n.b)];
          if (b.h != 1 || b.w != 1 || b.n != a.n || b.c != a.c)
            throw dimension_mismatch(
                at + ": adds features " + to_string(b) + " to " + to_string(a) +
                " (the features must be the batch's size, 1 x 1 pixels, the image's channels)");
          s[i] = a;
          break;
        }
      }
    }
    return s;
  }

  const_vector_type layer_params(const const_vector_type& params, const Node& n) const {
    return const_vector_type(params.data() + n.param_offset, std::size_t(n.op->n_params()));
  }
  /// The layer's part of grad; with grad empty, an empty view for a layer that can skip its gradient,
  /// else the scratch (its values discarded).
  vector_type layer_grad(const vector_type& grad, const Node& n) const {
    const std::size_t np = std::size_t(n.op->n_params());
    if (grad.extent(0) != 0) return vector_type(grad.data() + n.param_offset, np);
    if (np == 0 || n.op->optional_gradient()) return vector_type();
    return vector_type(grad_scratch_.data(), np);
  }

  /// Where the adjoint for node `id` is written: its own buffer the first time, else the scratch (then
  /// added by finish_adjoint).
  /// (`at`: where in the scratch, for the second adjoint of a conditioned layer.)
  tensor_type adjoint_target(int id, const std::vector<char>& written, std::size_t at = 0) const {
    const Node& n = nodes_[std::size_t(id)];
    if (!written[std::size_t(id)]) return n.adjoint;
    return tensor_type(scratch_.data() + at, n.adjoint.extent(0), n.adjoint.extent(1));
  }
  void finish_adjoint(const Exec& exec, int id, const tensor_type& target, std::vector<char>& written) const {
    const Node& n = nodes_[std::size_t(id)];
    if (written[std::size_t(id)]) add_into(exec, n.adjoint, target);
    written[std::size_t(id)] = 1;
  }

 public:
  // The kernels below are public only because nvcc rejects device lambdas in private members.

  /// a += b, elementwise.
  static void add_into(const Exec& exec, const tensor_type& a, const const_tensor_type& b) {
    Real* const ap = a.data();
    const Real* const bp = b.data();
    Kokkos::parallel_for(
        "scorekit::nn::image::Network::add_adjoint",
        Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, std::int64_t(a.size())),
        KOKKOS_LAMBDA(const std::int64_t e) { ap[e] += bp[e]; });
  }

  /// The forward of sum, concat and add_features: one work item per row (pixel), its channels a vector
  /// loop.
  /// mode: 0 sum, 1 concat, 2 add_features. (Plain ints in these signatures: nvcc's generated launch
  /// stubs name the parameter types, so they cannot be private types.)
  static void combine(const Exec& exec, const const_tensor_type& a, const const_tensor_type& b,
                      const ImageShape& sa, const ImageShape& sb, const tensor_type& y, int mode) {
    const int ca = sa.c, cb = sb.c, cy = int(y.extent(1));
    const std::int64_t hw = std::int64_t(sa.h) * sa.w;
    const Real* const ap = a.data();
    const Real* const bp = b.data();
    Real* const yp = y.data();
    Kokkos::parallel_for(
        "scorekit::nn::image::Network::combine",
        Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, std::int64_t(y.extent(0))),
        KOKKOS_LAMBDA(const std::int64_t row) {
          Real* out = yp + row * cy;
          const Real* x = ap + row * ca;
          if (mode == 0) {
            const Real* z = bp + row * cb;
            for (int j = 0; j < cy; ++j) out[j] = x[j] + z[j];
          } else if (mode == 1) {
            const Real* z = bp + row * cb;
            for (int j = 0; j < ca; ++j) out[j] = x[j];
            for (int j = 0; j < cb; ++j) out[ca + j] = z[j];
          } else {
            const Real* z = bp + (row / hw) * cb;
            for (int j = 0; j < cy; ++j) out[j] = x[j] + z[j];
          }
        });
  }

  /// The adjoint of concat or add_features for one side: side 0 (a) or 1 (b).
  /// mode: 0 concat's a, 1 concat's b, 2 add_features' image, 3 add_features' features; sa: a's shape.
  static void split_adjoint(const Exec& exec, const const_tensor_type& d, const ImageShape& sa, int mode,
                            const tensor_type& target) {
    const int ca = sa.c, cd = int(d.extent(1)), ct = int(target.extent(1));
    const std::int64_t hw = std::int64_t(sa.h) * sa.w;
    const Real* const dp = d.data();
    Real* const tp = target.data();
    Kokkos::parallel_for(
        "scorekit::nn::image::Network::split_adjoint",
        Kokkos::RangePolicy<Exec, Kokkos::IndexType<std::int64_t>>(exec, 0, std::int64_t(target.extent(0))),
        KOKKOS_LAMBDA(const std::int64_t row) {
          Real* out = tp + row * ct;
          if (mode == 0 || mode == 2) {  // concat's first ca channels, or add_features' image: a copy
            const Real* from = dp + row * cd;
            for (int j = 0; j < ct; ++j) out[j] = from[j];
          } else if (mode == 1) {  // concat, b: the channels after ca
            const Real* from = dp + row * cd + ca;
            for (int j = 0; j < ct; ++j) out[j] = from[j];
          } else {  // add_features, the features: row is the sample; the sum over its pixels in order
            for (int j = 0; j < ct; ++j) out[j] = Real(0);
            for (std::int64_t q = 0; q < hw; ++q) {
              const Real* from = dp + (row * hw + q) * cd;
              for (int j = 0; j < ct; ++j) out[j] += from[j];
            }
          }
        });
  }

 private:
  std::vector<Node> nodes_;
  int n_params_ = 0;
  int features_node_ = -1;
  int output_ = -1;
  ImageShape prepared_{};
  vector_type work_, scratch_;                  ///< views of the storage below
  vector_type work_storage_, scratch_storage_;  ///< grown to the largest batch seen (prepare())
  vector_type grad_scratch_;          ///< backward() without a gradient: for layers that cannot skip theirs
  std::size_t scratch_features_ = 0;  ///< where a conditioned layer's features adjoint may go in scratch_
  const_tensor_type x_, f_;
};

}  // namespace image
}  // namespace nn
}  // namespace scorekit
