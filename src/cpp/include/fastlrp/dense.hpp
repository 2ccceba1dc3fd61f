// Dense (fully connected) layer: forward pass and the backward pass of every LRP rule.
//
// Every rule is computed as docs/rules.md prescribes: a forward-style product, an element-wise
// divide, a transposed product and an element-wise multiply -- never an (N, in, out) tensor.
#pragma once

#include "fastlrp/isa.hpp"

#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "fastlrp/common.hpp"
#include "fastlrp/gemm.hpp"
#include "fastlrp/rules.hpp"
#include "fastlrp/simd.hpp"
#include "fastlrp/workspace.hpp"

namespace fastlrp {
inline namespace FASTLRP_ISA_NS {
namespace kernels {

// S = R / stab(Z) on n contiguous values, in vectors (GCC's vector extensions; lanes that
// divide by zero are selected away; safe_ratio's operations). s may be r or z.
template <class T>
inline void stabilized_ratio_run(const T* r, const T* z, T eps, T* s, Index n) {
  constexpr Index L = simd::kLanes<T>;
  Index i = 0;
  for (; i + L <= n; i += L)
    simd::store_lanes(s + i, simd::safe_ratio_lanes(simd::load_lanes(r + i), simd::load_lanes(z + i), eps));
  for (; i < n; ++i) s[i] = safe_ratio(r[i], z[i], eps);
}

// Rows of an Eigen operand are contiguous runs: stored row-major (or a single row) with unit
// inner stride.
template <class X>
constexpr bool contiguous_rows() {
  using D = std::decay_t<X>;
  return (int(Eigen::internal::traits<D>::Flags) & Eigen::DirectAccessBit) && D::InnerStrideAtCompileTime == 1 &&
         (D::IsRowMajor || D::RowsAtCompileTime == 1);
}

// S = R / stab(Z) element-wise, 0 where the stabilised denominator is exactly 0. Operands
// stored in contiguous rows go through stabilized_ratio_run row by row; expressions (a
// replicated or scaled denominator) through Eigen's select, one value at a time: the same
// operations, so the same bits either way.
template <class T, class RX, class ZX, class SX>
inline void stabilized_ratio(const RX& R, const ZX& Z, T eps, SX&& S) {
  if constexpr (contiguous_rows<RX>() && contiguous_rows<ZX>() && contiguous_rows<SX>()) {
    for (Index i = 0; i < S.rows(); ++i)
      stabilized_ratio_run(R.data() + i * R.outerStride(), Z.data() + i * Z.outerStride(), eps,
                           S.data() + i * S.outerStride(), S.cols());
  } else {
    const auto& z = Z.array();
    const auto d = (z >= T(0)).select(z + eps, z - eps);
    S.array() = (d == T(0)).select(T(0), R.array() / d);
  }
}

// S from the forward products of a two-weight rule (ZPlus, AlphaBeta, Gamma), in place:
// on entry S holds [z1 | z2] without biases (z2 only when the rule needs it), on exit the
// factors that the backward product multiplies with [U; V]. Z is the original pre-activation.
template <class T, class MS, class MR, class MZ>
void two_weight_ratio(const RuleParams& rule, MS&& S, const MR& R, const MZ& Z, const RowVector<T>& bu,
                      const RowVector<T>& bv, bool second) {
  const T eps_s = T(rule.stabilizer);
  const Index o = R.cols();
  auto S1 = S.leftCols(o);
  S1.rowwise() += bu;
  stabilized_ratio(R, S1, eps_s, S1);
  if (rule.kind == RuleKind::AlphaBeta) {
    S1 *= T(rule.alpha);
    if (second) {
      auto S2 = S.rightCols(o);
      S2.rowwise() += bv;
      stabilized_ratio(R, S2, eps_s, S2);
      S2 *= -T(rule.beta);
    }
  } else if (rule.kind == RuleKind::Gamma) {  // the sign of the original z_j picks the variant
    auto S2 = S.rightCols(o);
    S2.rowwise() += bv;
    stabilized_ratio(R, S2, eps_s, S2);
    S1.array() = (Z.array() > T(0)).select(S1.array(), T(0));
    S2.array() = (Z.array() < T(0)).select(S2.array(), T(0));
  }
}

template <class T>
struct Dense {
  // W (out, in), as torch.nn.Linear: a view of the caller's weights (kept alive by W_keep),
  // so a model's weights are in memory once, not once per explainer and dtype.
  Eigen::Map<const RowMatrix<T>> W{nullptr, 0, 0};
  std::shared_ptr<const void> W_keep;
  RowVector<T> b;  // (out)
  RuleParams rule;

  Dense() = default;
  Dense(Dense&&) = default;
  Dense& operator=(Dense&&) = default;
  Dense(const Dense&) = delete;  // W may view memory that only W_keep owns

  void set_weight(const T* data, Index rows, Index cols, std::shared_ptr<const void> keep) {
    W_keep = std::move(keep);
    new (&W) Eigen::Map<const RowMatrix<T>>(data, rows, cols);
  }

  // Prepared once per rule (docs/rules.md's modified weights), reused by every call.
  // Two-weight rules (ZPlus, AlphaBeta, Gamma) use a weight pair (U, V):
  //   z1_j = sum_i a_i^+ u_ij + a_i^- v_ij + bu_j,   z2_j = sum_i a_i^+ v_ij + a_i^- u_ij + bv_j.
  RowMatrix<T> Wt;      // W^T (in, out): the forward product's right operand (gemm.hpp)
  RowMatrix<T> UV;      // [U; V] (2out, in)
  RowMatrix<T> UVt;     // [U; V]^T (in, 2out)
  RowVector<T> bu, bv;
  RowMatrix<T> Wcat;    // ZBox: [W, W^+, W^-] (out, 3in); WSquare: W^2 (out, in)
  RowVector<T> low, high, zbox_shift;  // ZBox bounds (in) and sum_i l_i w_ij^+ + h_i w_ij^-
  RowVector<T> wsq_den;                // WSquare: sum_i w_ij^2

  Index in() const { return W.cols(); }
  Index out() const { return W.rows(); }

  bool needs_second_term() const {
    return rule.kind == RuleKind::Gamma || (rule.kind == RuleKind::AlphaBeta && rule.beta != 0.0);
  }

  // [U; V] (2out, in) of a two-weight rule, from W.
  RowMatrix<T> pair_weights() const {
    const Index o = out();
    RowMatrix<T> uv(2 * o, in());
    if (rule.kind == RuleKind::Gamma) {
      const T g = T(rule.gamma);
      uv.topRows(o) = W + g * W.cwiseMax(T(0));
      uv.bottomRows(o) = W + g * W.cwiseMin(T(0));
    } else {
      uv.topRows(o) = W.cwiseMax(T(0));
      uv.bottomRows(o) = W.cwiseMin(T(0));
    }
    return uv;
  }

  // with_pair = false: a two-weight rule's [U; V] and its transpose are not made (Conv2d makes
  // the forms it uses from W, on first use); the biases bu, bv are.
  void prepare(const std::vector<T>& low_in, const std::vector<T>& high_in, bool with_pair = true) {
    const Index o = out(), i = in();
    Wt = W.transpose();
    const RowVector<T> bp = b.cwiseMax(T(0)), bn = b.cwiseMin(T(0));
    const auto Wp = W.cwiseMax(T(0));  // expressions: evaluated only where a rule needs them
    const auto Wn = W.cwiseMin(T(0));
    switch (rule.kind) {
      case RuleKind::ZPlus:
      case RuleKind::AlphaBeta:
      case RuleKind::Gamma: {
        if (rule.kind == RuleKind::Gamma) {
          const T g = T(rule.gamma);
          bu = b + g * bp;
          bv = b + g * bn;
        } else {
          bu = bp;
          bv = bn;
        }
        if (with_pair) {
          UV = pair_weights();
          UVt = UV.transpose();
        }
        break;
      }
      case RuleKind::ZBox: {
        Wcat.resize(o, 3 * i);
        Wcat << W, Wp, Wn;
        if (static_cast<Index>(low_in.size()) == i) {  // a convolution passes none: it shifts per position
          low = Eigen::Map<const RowVector<T>>(low_in.data(), i);
          high = Eigen::Map<const RowVector<T>>(high_in.data(), i);
          zbox_shift = low * Wp.transpose() + high * Wn.transpose();
        }
        break;
      }
      case RuleKind::WSquare:
        Wcat = W.array().square().matrix();
        wsq_den.resize(o);
        for (Index j = 0; j < o; ++j) wsq_den(j) = ordered_sum(Wcat.row(j).data(), Wcat.cols());
        break;

      default:
        break;
    }
  }

  // W^T and W packed for the products of a dense layer (pack_weights), or empty
  PackedB<T> Wt_packed, W_packed;
  // Pack the weights once for the forward and the Epsilon backward products, unless they are so
  // large that a copy costs more memory than the per-call packing costs time (VGG's classifier).
  void pack_weights() {
    if (W.size() * Index(sizeof(T)) > kPrepackMaxBytes) return;
    Wt_packed.pack(Wt.data(), Wt.rows(), Wt.cols(), Wt.cols());
    if (rule.kind == RuleKind::Epsilon) W_packed.pack(W.data(), W.rows(), W.cols(), W.cols());
  }
  static constexpr Index kPrepackMaxBytes = Index(32) << 20;

  // Z = A W^T + b
  void forward(const ConstMatrixMap<T>& A, MatrixMap<T> Z, int threads) const {
    if (!Wt_packed.empty())
      product(A, Wt, Wt_packed, Z, threads);
    else
      product(A, Wt, Z, threads);
    Z.rowwise() += b;
  }

  // Rin (n, in) from R (n, out), the input activation A (n, in) and this layer's output Z.
  // nonnegative_input: the caller knows A has no negative entries (network.hpp,
  // nonnegative_output), so the scan for them is skipped; the result is the same either way.
  void backward(const ConstMatrixMap<T>& A, const ConstMatrixMap<T>& Z, const ConstMatrixMap<T>& R, MatrixMap<T> Rin,
                Workspace& ws, int threads, bool nonnegative_input = false) const {
    const Index n = A.rows(), o = out(), i = in();
    const T eps_s = T(rule.stabilizer);
    const auto mark = ws.mark();
    switch (rule.kind) {
      case RuleKind::Epsilon: {
        MatrixMap<T> S = ws.matrix<T>(n, o);
        stabilized_ratio(R, Z, T(rule.epsilon), S);
        if (!W_packed.empty())
          product(S, W, W_packed, Rin, threads);
        else
          product(S, W, Rin, threads);
        Rin.array() *= A.array();
        break;
      }
      case RuleKind::ZPlus:
      case RuleKind::AlphaBeta:
      case RuleKind::Gamma:
        two_weight_backward(A, Z, R, Rin, ws, threads, nonnegative_input);
        break;
      case RuleKind::ZBox: {
        MatrixMap<T> S = ws.matrix<T>(n, o);
        product(A, Wt, S, threads);
        S.rowwise() -= zbox_shift;
        stabilized_ratio(R, S, eps_s, S);
        MatrixMap<T> G = ws.matrix<T>(n, 3 * i);
        product(S, Wcat, G, threads);
        Rin = A.array() * G.leftCols(i).array();
        Rin.array() -= G.middleCols(i, i).array().rowwise() * low.array();
        Rin.array() -= G.rightCols(i).array().rowwise() * high.array();
        break;
      }
      case RuleKind::WSquare: {
        MatrixMap<T> S = ws.matrix<T>(n, o);
        stabilized_ratio(R, wsq_den.replicate(n, 1), eps_s, S);
        product(S, Wcat, Rin, threads);
        break;
      }
      case RuleKind::Flat: {
        // every input is connected to every output: z_j = in, so R_i = sum_j R_j / stab(in)
        const T den = stabilize(T(i), eps_s);
        for (Index r = 0; r < n; ++r) Rin.row(r).setConstant(ordered_sum(R.row(r).data(), R.cols()) / den);
        break;
      }
      case RuleKind::Pass:
        throw std::invalid_argument("Pass cannot be applied to a Dense layer");
    }
    ws.release(mark);
  }

 private:
  void two_weight_backward(const ConstMatrixMap<T>& A, const ConstMatrixMap<T>& Z, const ConstMatrixMap<T>& R,
                           MatrixMap<T>& Rin, Workspace& ws, int threads, bool nonnegative_input) const {
    const Index n = A.rows(), o = out(), i = in();
    const bool second = needs_second_term();
    const Index nz = second ? 2 * o : o;
    // Inputs after a ReLU have no negative entries: then a^- = 0 and half the products vanish.
    const bool signed_input = n > 0 && !nonnegative_input && A.minCoeff() < T(0);
    MatrixMap<T> S = ws.matrix<T>(n, 2 * o);
    if (!signed_input) {
      MatrixMap<T> Sn(S.data(), n, nz);
      product(A, UVt.leftCols(nz), Sn, threads);
      two_weight_ratio<T>(rule, Sn, R, Z, bu, bv, second);
      // Gamma below a ReLU: no relevance where z < 0, so S2 = 0 and only U is needed (conv.hpp)
      if (rule.kind == RuleKind::Gamma && !(Sn.rightCols(o).array() != T(0)).any())
        product(Sn.leftCols(o), UV.topRows(o), Rin, threads);
      else
        product(Sn, UV.topRows(nz), Rin, threads);
      Rin.array() *= A.array();
      return;
    }
    // Signed inputs: z1 = a+ U^T + a- V^T and z2 = a+ V^T + a- U^T from [a+; a-] [U; V]^T, and
    // back: g+ = s1 U + s2 V = [s1, s2] [U; V], g- = s1 V + s2 U = [s2, s1] [U; V].
    MatrixMap<T> Ap = ws.matrix<T>(n, i), An = ws.matrix<T>(n, i);
    Ap = A.cwiseMax(T(0));
    An = A.cwiseMin(T(0));
    MatrixMap<T> Q = ws.matrix<T>(n, 2 * o);
    product(Ap, UVt, S, threads);  // [a+ U^T, a+ V^T]
    product(An, UVt, Q, threads);  // [a- U^T, a- V^T]
    S.leftCols(o) += Q.rightCols(o);
    S.rightCols(o) += Q.leftCols(o);
    two_weight_ratio<T>(rule, S, R, Z, bu, bv, true);
    if (!second) S.rightCols(o).setZero();
    Q.leftCols(o) = S.rightCols(o);
    Q.rightCols(o) = S.leftCols(o);
    MatrixMap<T> G = ws.matrix<T>(n, i);
    product(S, UV, Rin, threads);
    product(Q, UV, G, threads);
    Rin.array() = Ap.array() * Rin.array() + An.array() * G.array();
  }
};

}  // namespace kernels
}  // namespace FASTLRP_ISA_NS
}  // namespace fastlrp
