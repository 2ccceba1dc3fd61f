// Element-wise layers: activations (relevance passes through them unchanged, docs/rules.md's Pass),
// the row-wise output nonlinearities, and an affine map (a BatchNorm that could not be folded).
#pragma once

#include "fastlrp/isa.hpp"

#include "fastlrp/common.hpp"
#include "fastlrp/gemm.hpp"
#include "fastlrp/rules.hpp"
#include "fastlrp/vmath.hpp"

namespace fastlrp {
inline namespace FASTLRP_ISA_NS {
namespace kernels {

enum class Activation : int {
  Identity = 0,  // also Dropout (inference) and Flatten of a flat input
  ReLU = 1,
  LeakyReLU = 2,  // param: negative slope
  Tanh = 3,
  Sigmoid = 4,
  ELU = 5,  // param: alpha
  SELU = 6,
  Softmax = 7,
  LogSoftmax = 8,
  SiLU = 9,
  GELU = 10,  // param: 0 the erf form, 1 the tanh approximation (torch's approximate="tanh")
  Hardswish = 11,
  Hardsigmoid = 12,
  ReLU6 = 13,
  Mish = 14,
};

// Output nonlinearities that the backward pass skips when they end the model (docs/rules.md).
inline bool is_output_nonlinearity(Activation a) {
  return a == Activation::Softmax || a == Activation::LogSoftmax || a == Activation::Sigmoid;
}

template <class T>
void activation_forward(Activation kind, T param, const ConstMatrixMap<T>& A, MatrixMap<T> Y) {
  switch (kind) {
    case Activation::Identity: Y = A; return;
    case Activation::ReLU: Y = A.cwiseMax(T(0)); return;
    case Activation::LeakyReLU: Y = A.unaryExpr([param](T v) { return v >= T(0) ? v : param * v; }); return;
    case Activation::Tanh:  // the C library's tanh and exp on every element: Eigen's vector versions
      // differ from the scalar ones in the last bits, and which one an element gets depends on its
      // position; ties must stay ties
      Y = A.unaryExpr([](T v) { return std::tanh(v); });
      return;
    case Activation::Sigmoid:
      // vmath: vectorised, and the same bits in every lane (A and Y are contiguous)
      for (Index i = 0; i < A.size(); ++i) Y.data()[i] = vmath::sigmoid(A.data()[i]);
      return;
    case Activation::ELU: Y = A.unaryExpr([param](T v) { return v > T(0) ? v : param * std::expm1(v); }); return;
    case Activation::SELU: {
      const T alpha = T(1.6732632423543772848170429916717), scale = T(1.0507009873554804934193349852946);
      Y = A.unaryExpr([=](T v) { return v > T(0) ? scale * v : scale * alpha * std::expm1(v); });
      return;
    }
    case Activation::SiLU:
      for (Index i = 0; i < A.size(); ++i) {
        const T v = A.data()[i];
        Y.data()[i] = v * vmath::sigmoid(v);
      }
      return;
    case Activation::GELU:
      if (param == T(0)) {
        Y = A.unaryExpr([](T v) { return T(0.5) * v * (T(1) + std::erf(v * T(0.70710678118654752440084436210485))); });
      } else {
        const T k = T(0.79788456080286535587989211986876);  // sqrt(2 / pi)
        Y = A.unaryExpr([k](T v) { return T(0.5) * v * (T(1) + std::tanh(k * (v + T(0.044715) * v * v * v))); });
      }
      return;
    case Activation::Hardswish:
      Y = A.unaryExpr([](T v) { return v * std::min(std::max(v + T(3), T(0)), T(6)) / T(6); });
      return;
    case Activation::Hardsigmoid:
      Y = A.unaryExpr([](T v) { return std::min(std::max(v + T(3), T(0)), T(6)) / T(6); });
      return;
    case Activation::ReLU6: Y = A.unaryExpr([](T v) { return std::min(std::max(v, T(0)), T(6)); }); return;
    case Activation::Mish:  // x tanh(softplus(x)); softplus(x) = x above 20, as torch
      Y = A.unaryExpr([](T v) { return v * std::tanh(v > T(20) ? v : std::log1p(std::exp(v))); });
      return;
    case Activation::Softmax:
    case Activation::LogSoftmax: {
      for (Index r = 0; r < A.rows(); ++r) {
        const T m = A.row(r).maxCoeff();
        const RowVector<T> shifted = A.row(r).array() - m;
        const RowVector<T> e = shifted.unaryExpr([](T v) { return std::exp(v); });
        const T sum = ordered_sum(e.data(), e.size());
        if (kind == Activation::Softmax)
          Y.row(r) = e / sum;
        else
          Y.row(r) = shifted.array() - std::log(sum);
      }
      return;
    }
  }
}

// y_i = a_i * scale_i + shift_i: a BatchNorm that could not be folded into a linear layer.
template <class T>
struct Affine {
  RowVector<T> scale, shift;
  RuleParams rule;  // Epsilon (as a diagonal linear map) or Pass; forward: Layer::forward, by segments

  void backward(const ConstMatrixMap<T>& A, const ConstMatrixMap<T>& Z, const ConstMatrixMap<T>& R, MatrixMap<T> Rin) const {
    if (rule.kind == RuleKind::Pass) {
      Rin = R;
      return;
    }
    const T eps = T(rule.epsilon);
    for (Index r = 0; r < R.rows(); ++r)
      for (Index j = 0; j < R.cols(); ++j) Rin(r, j) = A(r, j) * scale(j) * safe_ratio(R(r, j), Z(r, j), eps);
  }
};

}  // namespace kernels
}  // namespace FASTLRP_ISA_NS
}  // namespace fastlrp
