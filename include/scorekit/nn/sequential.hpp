// Composition of layers by type:
//
//   using Net = scorekit::nn::Sequential<Dense<2, 128>, Softplus, Dense<128, 128>, Softplus, Dense<128, 2>>;
//
// An activation tag (Softplus, Tanh, Silu, Elu) takes the width of the layer before it. Every size is a
// compile-time constant, so a whole forward, forward-mode and backward pass for a block of samples runs
// inside one kernel on buffers of fixed size, with no heap temporaries.
//
// The tape of a dual block (see nn/layers.hpp) holds each layer's input and extra rows, then the
// network's output, all [rows][W]: fill input() with x (and the tangent directions), call forward(),
// read output(); seed an adjoint of the output and call backward() for the parameter gradient and,
// optionally, the adjoint of the input.
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/kokkos.hpp>
#include <scorekit/nn/layers.hpp>

#include <string>
#include <type_traits>
#include <vector>

namespace scorekit {
namespace nn {

namespace detail {

// Binds activation tags to the width before them.
template <class Layer, int Width, bool = is_activation_tag<Layer>::value>
struct bind {
  using type = Layer;
};
template <class Tag, int Width>
struct bind<Tag, Width, true> {
  using type = Activation<Tag, Width>;
};

template <class... Bound>
struct Chain;

template <>
struct Chain<> {
  static constexpr int n_params = 0, tape_rows = 0, max_width = 0, max_in = 0;
  static std::string name() { return ""; }
  static void append_segments(std::vector<Segment>&, int) {}
  static void append_tensors(std::vector<ParameterTensor>&, int, int, const std::vector<std::string>&) {}
};

template <class L, class... Rest>
struct Chain<L, Rest...> {
  using Next = Chain<Rest...>;
  static constexpr int n_params = L::n_params + Next::n_params;
  static constexpr int tape_rows = L::in + L::extra + Next::tape_rows;  // excluding the final output
  static constexpr int max_width = (L::in > L::out ? L::in : L::out) > Next::max_width
                                       ? (L::in > L::out ? L::in : L::out)
                                       : Next::max_width;
  static constexpr int max_in = L::in > Next::max_in ? L::in : Next::max_in;

  static std::string name() {
    const std::string rest = Next::name();
    return rest.empty() ? L::name() : L::name() + "," + rest;
  }
  static void append_segments(std::vector<Segment>& s, int offset) {
    L::append_segments(s, offset);
    Next::append_segments(s, offset + L::n_params);
  }
  static void append_tensors(std::vector<ParameterTensor>& t, int offset, int index,
                             const std::vector<std::string>& names) {
    if (L::n_params > 0) {
      const std::string name = names.empty() ? std::to_string(index) : names[std::size_t(index)];
      if (name.empty())
        throw invalid_argument(scorekit::detail::concat("scorekit::nn::Sequential::parameter_tensors: layer ",
                                                        index, " (", L::name(),
                                                        ") has parameters but no name"));
      L::append_tensors(t, offset, name + ".");
    }
    Next::append_tensors(t, offset + L::n_params, index + 1, names);
  }

  template <int B, int K, class Real>
  KOKKOS_INLINE_FUNCTION static void forward(const Real* p, const int* level, Real* tape) {
    constexpr int W = B * (1 + K);
    Real* x = tape;
    Real* extra = tape + L::in * W;
    Real* y = extra + L::extra * W;
    L::template forward<B, K>(p, level, x, extra, y);
    if constexpr (sizeof...(Rest) > 0) Next::template forward<B, K>(p + L::n_params, level, y);
  }
};

template <class Bound, int Width, class... Layers>
struct bind_all;
template <class... Bound, int Width>
struct bind_all<Chain<Bound...>, Width> {
  using type = Chain<Bound...>;
};
template <class... Bound, int Width, class L, class... Rest>
struct bind_all<Chain<Bound...>, Width, L, Rest...> {
  using bound = typename bind<L, Width>::type;
  static_assert(
      Width < 0 || bound::in == Width,
      "scorekit::nn::Sequential: a layer's input size must equal the output size of the layer before it");
  using type = typename bind_all<Chain<Bound..., bound>, bound::out, Rest...>::type;
};

}  // namespace detail

template <class First, class... Rest>
class Sequential {
  static_assert(
      !detail::is_activation_tag<First>::value,
      "scorekit::nn::Sequential: the first layer must have sizes (e.g. Dense<In, Out>), not an activation");
  using chain = typename detail::bind_all<detail::Chain<>, -1, First, Rest...>::type;

  template <class C>
  struct last_out;
  template <class L>
  struct last_out<detail::Chain<L>> {
    static constexpr int value = L::out;
  };
  template <class L, class M, class... R>
  struct last_out<detail::Chain<L, M, R...>> : last_out<detail::Chain<M, R...>> {};

 public:
  static constexpr int in = First::in;
  static constexpr int out = last_out<chain>::value;
  static constexpr int n_params = chain::n_params;
  /// Layers, activations counted.
  static constexpr int n_layers = 1 + int(sizeof...(Rest));
  static constexpr int max_width = chain::max_width;

  /// Rows of W = B (1 + K) values in the tape of a dual block of B samples with K tangents each.
  template <int B, int K>
  static constexpr int tape_size = (chain::tape_rows + out) * B*(1 + K);
  /// Values of scratch backward() needs.
  template <int B, int K>
  static constexpr int backward_scratch_size = (2 * chain::max_width + chain::max_in) * B*(1 + K);
  template <int B, int K>
  static constexpr int output_offset = chain::tape_rows* B*(1 + K);

  /// The layers, comma-separated, e.g. "Dense<2,128>,Softplus,Dense<128,2>": part of a checkpoint's
  /// signature.
  static std::string name() { return "Sequential<" + chain::name() + ">"; }

  /// The parameters as PyTorch names them (for io/safetensors.hpp): by default as torch.nn.Sequential of
  /// the same layers (layer i's keys start "i.", activations counted); or with `names`, one per layer
  /// (activations included, their names unused), as the attributes of a module of your own: {"l1", "",
  /// "l2", "", "l3"} gives the keys of benchmarks/torch_train.py's NoiseConditionalNet.
  static std::vector<ParameterTensor> parameter_tensors(const std::vector<std::string>& names = {}) {
    if (!names.empty() && names.size() != std::size_t(n_layers))
      throw invalid_argument(scorekit::detail::concat(
          "scorekit::nn::Sequential::parameter_tensors: ", names.size(), " names for ", n_layers, " layers"));
    std::vector<ParameterTensor> t;
    chain::append_tensors(t, 0, 0, names);
    return t;
  }

  /// The parameter segments (offsets into the flat parameter vector) for initialisation.
  static std::vector<Segment> segments() {
    std::vector<Segment> s;
    chain::append_segments(s, 0);
    return s;
  }

  template <int B, int K, class Real>
  KOKKOS_INLINE_FUNCTION static Real* output(Real* tape) {
    return tape + output_offset<B, K>;
  }

  /// tape[0 .. in * W) holds the input block; fills the rest, the output last.
  template <int B, int K, class Real>
  KOKKOS_INLINE_FUNCTION static void forward(const Real* params, const int* level, Real* tape) {
    chain::template forward<B, K>(params, level, tape);
  }

  /// Given the tape of forward() and the adjoint `seed` ([out][W], overwritten) of a loss with respect
  /// to the output block, adds the loss's parameter gradient into grad[0 .. n_params) and, when
  /// input_adjoint is not null, writes the adjoint of the input block ([in][W]) there.
  template <int B, int K, class Real>
  KOKKOS_INLINE_FUNCTION static void backward(const Real* params, const int* level, const Real* tape,
                                              Real* seed, Real* grad, std::common_type_t<Real>* input_adjoint,
                                              Real* scratch) {
    constexpr int W = B * (1 + K);
    Real* buffer0 = scratch;
    Real* buffer1 = scratch + chain::max_width * W;
    Real* transpose = buffer1 + chain::max_width * W;
    // The first layer writes into the caller's input_adjoint (maybe null), the later ones into the two
    // scratch buffers by turns.
    backward_layers<B, K>(static_cast<chain*>(nullptr), params, level, tape, seed, grad, input_adjoint,
                          buffer0, buffer1, transpose);
  }

 private:
  // Layer L writes its input adjoint into `target`; the layers after it leave the adjoint of L's output
  // in `mine`, using `spare` (and then `mine`) for their own outputs.
  template <int B, int K, class Real, class L, class... R>
  KOKKOS_INLINE_FUNCTION static void backward_layers(detail::Chain<L, R...>*, const Real* p, const int* level,
                                                     const Real* tape, Real* seed, Real* grad, Real* target,
                                                     Real* mine, Real* spare, Real* transpose) {
    constexpr int W = B * (1 + K);
    const Real* x = tape;
    const Real* extra = tape + L::in * W;
    Real* dy = seed;
    if constexpr (sizeof...(R) > 0) {
      backward_layers<B, K>(static_cast<detail::Chain<R...>*>(nullptr), p + L::n_params, level,
                            extra + L::extra * W, seed, grad + L::n_params, mine, spare, mine, transpose);
      dy = mine;
    }
    L::template backward<B, K>(p, level, x, extra, dy, grad, target, transpose);
  }
};

}  // namespace nn
}  // namespace scorekit
