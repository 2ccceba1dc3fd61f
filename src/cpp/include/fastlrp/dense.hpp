// Dense (fully connected) layer: forward pass and the backward pass of every LRP rule.
//
// Every rule is computed as rules.md prescribes: a forward-style product, an element-wise
// divide, a transposed product and an element-wise multiply -- never an (N, in, out) tensor.
#pragma once

#include <vector>

#include "fastlrp/common.hpp"
#include "fastlrp/rules.hpp"

namespace fastlrp::kernels {

template <class T>
struct Dense {
  RowMatrix<T> W;  // (out, in), as torch.nn.Linear
  RowVector<T> b;  // (out)
  RuleParams rule;

  // Prepared once per rule (rules.md's modified weights), reused by every call.
  // Two-weight rules (ZPlus, AlphaBeta, Gamma) use a weight pair (U, V):
  //   z1_j = sum_i a_i^+ u_ij + a_i^- v_ij + bu_j,   z2_j = sum_i a_i^+ v_ij + a_i^- u_ij + bv_j.
  RowMatrix<T> UV;      // [U; V]           (2out, in): inputs without negative entries
  RowMatrix<T> UVVU;    // [[U, V], [V, U]] (2out, 2in): signed inputs
  RowVector<T> bu, bv;
  RowMatrix<T> Wcat;    // ZBox: [W, W^+, W^-] (out, 3in); WSquare: W^2 (out, in)
  RowVector<T> low, high, zbox_shift;  // ZBox bounds (in) and sum_i l_i w_ij^+ + h_i w_ij^-
  RowVector<T> wsq_den;                // WSquare: sum_i w_ij^2

  Index in() const { return W.cols(); }
  Index out() const { return W.rows(); }

  bool needs_second_term() const {
    return rule.kind == RuleKind::Gamma || (rule.kind == RuleKind::AlphaBeta && rule.beta != 0.0);
  }

  void prepare(const std::vector<T>& low_in, const std::vector<T>& high_in) {
    const Index o = out(), i = in();
    const RowMatrix<T> Wp = W.cwiseMax(T(0)), Wn = W.cwiseMin(T(0));
    const RowVector<T> bp = b.cwiseMax(T(0)), bn = b.cwiseMin(T(0));
    switch (rule.kind) {
      case RuleKind::ZPlus:
      case RuleKind::AlphaBeta:
      case RuleKind::Gamma: {
        RowMatrix<T> U, V;
        if (rule.kind == RuleKind::Gamma) {
          const T g = T(rule.gamma);
          U = W + g * Wp;
          V = W + g * Wn;
          bu = b + g * bp;
          bv = b + g * bn;
        } else {
          U = Wp;
          V = Wn;
          bu = bp;
          bv = bn;
        }
        UV.resize(2 * o, i);
        UV << U, V;
        UVVU.resize(2 * o, 2 * i);
        UVVU << U, V, V, U;
        break;
      }
      case RuleKind::ZBox: {
        low = Eigen::Map<const RowVector<T>>(low_in.data(), i);
        high = Eigen::Map<const RowVector<T>>(high_in.data(), i);
        Wcat.resize(o, 3 * i);
        Wcat << W, Wp, Wn;
        zbox_shift = low * Wp.transpose() + high * Wn.transpose();
        break;
      }
      case RuleKind::WSquare:
        Wcat = W.array().square().matrix();
        wsq_den = Wcat.rowwise().sum().transpose();
        break;
      default:
        break;
    }
  }

  // Z = A W^T + b
  template <class In, class Out>
  void forward(const In& A, Out& Z) const {
    Z.noalias() = A * W.transpose();
    Z.rowwise() += b;
  }

  // R_in from R (relevance at the output), A (input activation), Z (this layer's output).
  template <class In>
  void backward(const In& A, const RowMatrix<T>& Z, const RowMatrix<T>& R, RowMatrix<T>& Rin) const {
    const Index n = A.rows(), o = out(), i = in();
    const T eps_s = T(kStabilizer);
    switch (rule.kind) {
      case RuleKind::Epsilon: {
        const T eps = T(rule.epsilon);
        RowMatrix<T> S(n, o);
        for (Index r = 0; r < n; ++r)
          for (Index j = 0; j < o; ++j) S(r, j) = safe_ratio(R(r, j), Z(r, j), eps);
        Rin.noalias() = S * W;
        Rin.array() *= A.array();
        return;
      }
      case RuleKind::ZPlus:
      case RuleKind::AlphaBeta:
      case RuleKind::Gamma: {
        two_weight_backward(A, Z, R, Rin);
        return;
      }
      case RuleKind::ZBox: {
        RowMatrix<T> S(n, o);
        S.noalias() = A * W.transpose();
        S.rowwise() -= zbox_shift;
        for (Index r = 0; r < n; ++r)
          for (Index j = 0; j < o; ++j) S(r, j) = safe_ratio(R(r, j), S(r, j), eps_s);
        RowMatrix<T> G(n, 3 * i);
        G.noalias() = S * Wcat;
        Rin = A.array() * G.leftCols(i).array();
        Rin.array() -= G.middleCols(i, i).array().rowwise() * low.array();
        Rin.array() -= G.rightCols(i).array().rowwise() * high.array();
        return;
      }
      case RuleKind::WSquare: {
        RowMatrix<T> S(n, o);
        for (Index r = 0; r < n; ++r)
          for (Index j = 0; j < o; ++j) S(r, j) = safe_ratio(R(r, j), wsq_den(j), eps_s);
        Rin.noalias() = S * Wcat;
        return;
      }
      case RuleKind::Flat: {
        // every input is connected to every output: z_j = in, so R_i = sum_j R_j / stab(in)
        const T den = stabilize(T(i), eps_s);
        Rin.resize(n, i);
        for (Index r = 0; r < n; ++r) Rin.row(r).setConstant(R.row(r).sum() / den);
        return;
      }
      case RuleKind::Pass:
        throw std::invalid_argument("Pass cannot be applied to a Dense layer");
    }
  }

 private:
  template <class In>
  void two_weight_backward(const In& A, const RowMatrix<T>& Z, const RowMatrix<T>& R, RowMatrix<T>& Rin) const {
    const Index n = A.rows(), o = out(), i = in();
    const T eps_s = T(kStabilizer);
    const bool second = needs_second_term();
    const Index nz = second ? 2 * o : o;
    // Inputs after a ReLU have no negative entries: then a^- = 0 and half the products vanish.
    const bool signed_input = n > 0 && A.minCoeff() < T(0);
    RowMatrix<T> Acat;
    RowMatrix<T> S(n, nz);
    if (signed_input) {
      Acat.resize(n, 2 * i);
      Acat.leftCols(i) = A.cwiseMax(T(0));
      Acat.rightCols(i) = A.cwiseMin(T(0));
      S.noalias() = Acat * UVVU.topRows(nz).transpose();
    } else {
      S.noalias() = A * UV.topRows(nz).transpose();
    }
    switch (rule.kind) {
      case RuleKind::ZPlus:
        for (Index r = 0; r < n; ++r)
          for (Index j = 0; j < o; ++j) S(r, j) = safe_ratio(R(r, j), S(r, j) + bu(j), eps_s);
        break;
      case RuleKind::AlphaBeta: {
        const T alpha = T(rule.alpha), beta = T(rule.beta);
        for (Index r = 0; r < n; ++r)
          for (Index j = 0; j < o; ++j) {
            S(r, j) = alpha * safe_ratio(R(r, j), S(r, j) + bu(j), eps_s);
            if (second) S(r, o + j) = -beta * safe_ratio(R(r, j), S(r, o + j) + bv(j), eps_s);
          }
        break;
      }
      default: {  // Gamma: the sign of the original pre-activation picks the variant
        for (Index r = 0; r < n; ++r)
          for (Index j = 0; j < o; ++j) {
            const T z = Z(r, j);
            S(r, j) = z > T(0) ? safe_ratio(R(r, j), S(r, j) + bu(j), eps_s) : T(0);
            S(r, o + j) = z < T(0) ? safe_ratio(R(r, j), S(r, o + j) + bv(j), eps_s) : T(0);
          }
        break;
      }
    }
    if (signed_input) {
      RowMatrix<T> G(n, 2 * i);
      G.noalias() = S * UVVU.topRows(nz);
      Rin = Acat.leftCols(i).array() * G.leftCols(i).array() + Acat.rightCols(i).array() * G.rightCols(i).array();
    } else {
      Rin.noalias() = S * UV.topRows(nz);
      Rin.array() *= A.array();
    }
  }
};

}  // namespace fastlrp::kernels
