// Layers with compile-time sizes. Each works on a *dual block*: B samples and, for each, K tangent
// vectors carried through forward mode, stored as rows of W = B (1 + K) columns. Column k B + b holds
// sample b's primal value (k = 0) or its k-th tangent (k >= 1). One pass over a dual block gives the
// outputs s(x_b) and the Jacobian-vector products J(x_b) v_bk together; the backward pass then gives
// the parameter gradient of any loss of (s, J v), which is what implicit and sliced score matching need,
// and of plain losses when K = 0. B = 1 is the single-sample case.
//
// A layer is a type with
//   static constexpr int in, out, n_params, extra;   // extra: tape rows it keeps besides its input
//   template <int B, int K, class Real> KOKKOS_INLINE_FUNCTION static void forward(p, level, x, extra_rows,
//   y); template <int B, int K, class Real> KOKKOS_INLINE_FUNCTION static void backward(p, level, x,
//   extra_rows,
//                                                                            dy, grad, dx, scratch);
// (both run inside kernels: the device contract), plus a host `static std::string name()`.
// where p points at the layer's parameters, level[b] is sample b's noise level (used by conditional
// layers), x is the [in][W] input block, y the [out][W] output block, dy the adjoint of y (it may be
// overwritten), grad accumulates the parameter gradient (+=), and dx (null when not wanted) receives the
// adjoint of x. scratch holds at least in * W values.
#pragma once

#include <scorekit/core/kokkos.hpp>
#include <scorekit/core/parameter_tensor.hpp>
#include <scorekit/nn/activations.hpp>
#include <scorekit/nn/block_gemm.hpp>
#include <scorekit/nn/segment.hpp>

#include <string>
#include <type_traits>
#include <vector>

namespace scorekit {
namespace nn {

namespace detail {

// The adjoint of a linear map y = A x (A = W[out][in] row-major, no bias) on a dual block: the weight
// gradient sum over all columns of dy x^T (the primal and every tangent contribute: d(J v)/dW has the
// same outer-product form), and dx = A^T dy.
template <int In, int Out, int W, class Real>
KOKKOS_INLINE_FUNCTION void linear_backward(const Real* a, const Real* x, const Real* dy, Real* grad_a,
                                            Real* dx, Real* scratch) {
  transpose_block<In, W>(x, scratch);                               // x^T: [W][In]
  block_gemm<Out, W, In, true>(dy, W, 1, scratch, In, grad_a, In);  // grad_a[o][i] += sum_c dy[o][c] x[i][c]
  if (dx) block_gemm<In, Out, W, false>(a, 1, In, dy, W, dx, W);    // dx[i][c] = sum_o a[o][i] dy[o][c]
}

}  // namespace detail

/// y = W x + b with W of shape [Out][In] (row-major, as PyTorch's nn.Linear), then b[Out].
template <int In, int Out>
struct Dense {
  static_assert(In > 0 && Out > 0, "scorekit::nn::Dense: sizes must be positive");
  static constexpr int in = In, out = Out, n_params = Out * In + Out, extra = 0;

  static std::string name() { return "Dense<" + std::to_string(In) + "," + std::to_string(Out) + ">"; }
  static void append_segments(std::vector<Segment>& s, int offset) {
    s.push_back(Segment{ParameterKind::weight, offset, Out * In, In, Out});
    s.push_back(Segment{ParameterKind::bias, offset + Out * In, Out, In, Out});
  }
  /// As torch.nn.Linear(In, Out): "<prefix>weight" (Out, In) and "<prefix>bias" (Out).
  static void append_tensors(std::vector<ParameterTensor>& t, int offset, const std::string& prefix) {
    t.push_back(ParameterTensor{prefix + "weight", offset, {Out, In}, {}});
    t.push_back(ParameterTensor{prefix + "bias", offset + Out * In, {Out}, {}});
  }

  template <int B, int K, class Real>
  KOKKOS_INLINE_FUNCTION static void forward(const Real* p, const int*, const Real* x, Real*, Real* y) {
    constexpr int W = B * (1 + K);
    detail::block_gemm<Out, In, W, false>(p, In, 1, x, W, y, W);
    const Real* bias = p + Out * In;
    for (int o = 0; o < Out; ++o) {
      SCOREKIT_SIMD
      for (int b = 0; b < B; ++b) y[o * W + b] += bias[o];  // tangents carry no bias
    }
  }

  template <int B, int K, class Real>
  KOKKOS_INLINE_FUNCTION static void backward(const Real* p, const int*, const Real* x, const Real*, Real* dy,
                                              Real* grad, Real* dx, Real* scratch) {
    constexpr int W = B * (1 + K);
    detail::linear_backward<In, Out, W>(p, x, dy, grad, dx, scratch);
    Real* grad_bias = grad + Out * In;
    for (int o = 0; o < Out; ++o) {
      Real sum = Real(0);
      for (int b = 0; b < B; ++b) sum += dy[o * W + b];
      grad_bias[o] += sum;
    }
  }
};

/// The conditional layer of the seed paper's toy noise-conditional network: an unbiased linear map whose
/// output is scaled elementwise by a learned embedding of the noise level,
///   y = gamma[level] * (W x),   W of shape [Out][In], gamma of shape [Levels][Out].
template <int In, int Out, int Levels>
struct ConditionalDense {
  static_assert(In > 0 && Out > 0 && Levels > 0, "scorekit::nn::ConditionalDense: sizes must be positive");
  static constexpr int in = In, out = Out, n_params = Out * In + Levels * Out;
  static constexpr int extra = Out;  // u = W x, before the scaling
  static constexpr int levels = Levels;

  static std::string name() {
    return "ConditionalDense<" + std::to_string(In) + "," + std::to_string(Out) + "," +
           std::to_string(Levels) + ">";
  }
  static void append_segments(std::vector<Segment>& s, int offset) {
    s.push_back(Segment{ParameterKind::weight, offset, Out * In, In, Out});
    s.push_back(Segment{ParameterKind::embedding, offset + Out * In, Levels * Out, Levels, Out});
  }
  /// As benchmarks/torch_train.py's ConditionalDense: torch.nn.Linear(In, Out, bias=False) as `lin` and
  /// torch.nn.Embedding(Levels, Out) as `embed`: "<prefix>lin.weight" (Out, In) and "<prefix>embed.weight"
  /// (Levels, Out).
  static void append_tensors(std::vector<ParameterTensor>& t, int offset, const std::string& prefix) {
    t.push_back(ParameterTensor{prefix + "lin.weight", offset, {Out, In}, {}});
    t.push_back(ParameterTensor{prefix + "embed.weight", offset + Out * In, {Levels, Out}, {}});
  }

  template <int B, int K, class Real>
  KOKKOS_INLINE_FUNCTION static void forward(const Real* p, const int* level, const Real* x, Real* u,
                                             Real* y) {
    constexpr int W = B * (1 + K);
    detail::block_gemm<Out, In, W, false>(p, In, 1, x, W, u, W);
    const Real* gamma = p + Out * In;
    for (int o = 0; o < Out; ++o)
      for (int k = 0; k <= K; ++k) {
        SCOREKIT_SIMD
        for (int b = 0; b < B; ++b) y[o * W + k * B + b] = gamma[level[b] * Out + o] * u[o * W + k * B + b];
      }
  }

  template <int B, int K, class Real>
  KOKKOS_INLINE_FUNCTION static void backward(const Real* p, const int* level, const Real* x, const Real* u,
                                              Real* dy, Real* grad, Real* dx, Real* scratch) {
    constexpr int W = B * (1 + K);
    const Real* gamma = p + Out * In;
    Real* grad_gamma = grad + Out * In;
    for (int o = 0; o < Out; ++o)
      for (int b = 0; b < B; ++b) {
        const Real g = gamma[level[b] * Out + o];
        Real sum = Real(0);
        for (int k = 0; k <= K; ++k) {
          const int c = o * W + k * B + b;
          sum += dy[c] * u[c];
          dy[c] *= g;  // now the adjoint of u
        }
        grad_gamma[level[b] * Out + o] += sum;
      }
    detail::linear_backward<In, Out, W>(p, x, dy, grad, dx, scratch);
  }
};

/// An activation applied elementwise to N values (Sequential binds N to the width before it). The
/// forward pass keeps f'(x) and f''(x) of the primal columns in its two extra rows, so the backward pass
/// evaluates no function again.
template <class F, int N>
struct Activation {
  static constexpr int in = N, out = N, n_params = 0, extra = 2 * N;

  static std::string name() { return F::name; }
  static void append_segments(std::vector<Segment>&, int) {}
  static void append_tensors(std::vector<ParameterTensor>&, int, const std::string&) {}

  template <int B, int K, class Real>
  KOKKOS_INLINE_FUNCTION static void forward(const Real*, const int*, const Real* x, Real* slopes, Real* y) {
    constexpr int W = B * (1 + K);
    for (int i = 0; i < N; ++i) {
      const Real* xi = x + i * W;
      Real* yi = y + i * W;
      Real* d1i = slopes + i * W;
      Real* d2i = slopes + (N + i) * W;
      SCOREKIT_SIMD
      for (int b = 0; b < B; ++b) {
        Real v, d1, d2;
        detail::evaluate_activation<F>(xi[b], v, d1, d2);
        yi[b] = v;
        d1i[b] = d1;
        d2i[b] = d2;
        for (int k = 1; k <= K; ++k) yi[k * B + b] = d1 * xi[k * B + b];  // f'(x) t
      }
    }
  }

  // Primal: dx = f'(x) dy + f''(x) sum_k t_k dt_k; tangent k: dt_k = f'(x) dt_k'.
  template <int B, int K, class Real>
  KOKKOS_INLINE_FUNCTION static void backward(const Real*, const int*, const Real* x, const Real* slopes,
                                              Real* dy, Real*, Real* dx, Real*) {
    if (!dx) return;
    constexpr int W = B * (1 + K);
    for (int i = 0; i < N; ++i) {
      const Real* xi = x + i * W;
      const Real* dyi = dy + i * W;
      const Real* d1i = slopes + i * W;
      const Real* d2i = slopes + (N + i) * W;
      Real* dxi = dx + i * W;
      SCOREKIT_SIMD
      for (int b = 0; b < B; ++b) {
        const Real d1 = d1i[b];
        Real second = Real(0);
        for (int k = 1; k <= K; ++k) {
          second += xi[k * B + b] * dyi[k * B + b];
          dxi[k * B + b] = d1 * dyi[k * B + b];
        }
        dxi[b] = d1 * dyi[b] + d2i[b] * second;
      }
    }
  }
};

namespace detail {
template <class T, class = void>
struct is_activation_tag : std::false_type {};
template <class T>
struct is_activation_tag<T, std::void_t<decltype(T::name), decltype(&T::template value<double>)>>
    : std::true_type {};
}  // namespace detail

}  // namespace nn
}  // namespace scorekit
