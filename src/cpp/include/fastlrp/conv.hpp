// Conv2d: forward pass and the backward pass of every LRP rule, as a Dense layer applied to
// the patches of its input (im2col), one GEMM per tile of output pixels.
//
// docs/rules.md's c_ij is defined over the receptive field of output j, padding contributing
// nothing: patches hold zeros there, so Epsilon/ZPlus/AlphaBeta/Gamma need no special case;
// Flat, WSquare and ZBox, whose c_ij do not vanish with a_i, use per-position denominators
// or shifts computed once from the patches of an all-ones (or the bounds') image.
#pragma once

#include "fastlrp/dense.hpp"
#include "fastlrp/spatial.hpp"

namespace fastlrp::kernels {

// Output pixels per tile: large enough for an efficient GEMM, small enough for the caches.
constexpr Index kTilePixels = 1024;

template <class T>
struct Conv2d {
  Geometry g;
  Index cout = 0;
  Dense<T> lin;              // W as (cout, K) with K ordered (ky, kx, c), bias, rule, prepared weights
  RowMatrix<T> Wx;           // Flat: ones (cout, K); WSquare: W^2 (lin.Wcat)
  RowMatrix<T> fixed;        // (Ho*Wo, cout): Flat/WSquare denominators, ZBox shift per position
  RowVector<T> low, high;    // ZBox bounds over the input image (H*W*C)
  RowMatrix<T> Wp;           // two-weight rules: W^+
  // ZBox with bounds that depend on the channel only (scalar or per-channel, the usual case):
  // [W, B] with B_jk = -l_c(k) w_jk^+ - h_c(k) w_jk^-, so that c_ij summed over j is
  // a_i (S W)_ik + (S B)_ik in patch space; empty for bounds that vary over pixels.
  RowMatrix<T> Wzb;

  Index in_size() const { return g.in_size(); }
  Index out_size() const { return g.pixels_out() * cout; }
  // im2col_planar applies (one channel, unit x stride and dilation): the forward and the
  // Epsilon, Flat and folded-ZBox backward work on transposed patches (column-major products).
  bool planar() const { return g.C == 1 && g.sw == 1 && g.dw == 1; }
  // A 1x1 convolution with unit stride and no padding (ResNet's bottlenecks, DenseNet's
  // transitions): a tile's patches are the tile's own rows of the input, and every input pixel
  // gets exactly one output's contribution, so im2col and col2im are the identity and skipped.
  bool pointwise() const { return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0; }
  // The input rows of a tile's pixels (pointwise only).
  const T* tile_input(const T* a, const Tile& t) const { return a + t.first_pixel(g) * g.C; }

  void prepare(const std::vector<T>& low_img, const std::vector<T>& high_img) {
    cout = lin.W.rows();
    lin.prepare({}, {});
    const Index K = g.K(), P = g.pixels_out();
    if (lin.rule.kind == RuleKind::ZPlus || lin.rule.kind == RuleKind::AlphaBeta || lin.rule.kind == RuleKind::Gamma)
      Wp = lin.W.cwiseMax(T(0));
    auto patches_of = [&](const RowVector<T>& img) {
      RowMatrix<T> M(P, K);
      im2col(img.data(), g, 0, g.Ho, M.data());
      return M;
    };
    switch (lin.rule.kind) {
      case RuleKind::Flat:
      case RuleKind::WSquare: {
        if (lin.rule.kind == RuleKind::Flat) Wx = RowMatrix<T>::Ones(cout, K);
        const RowMatrix<T>& w = lin.rule.kind == RuleKind::Flat ? Wx : lin.Wcat;
        fixed.noalias() = patches_of(RowVector<T>::Ones(g.in_size())) * w.transpose();
        break;
      }
      case RuleKind::ZBox: {
        low = Eigen::Map<const RowVector<T>>(low_img.data(), g.in_size());
        high = Eigen::Map<const RowVector<T>>(high_img.data(), g.in_size());
        const Index k = K;
        fixed.noalias() = patches_of(low) * lin.Wcat.middleCols(k, k).transpose();
        fixed.noalias() += patches_of(high) * lin.Wcat.rightCols(k).transpose();
        const Index C = g.C, HW = g.H * g.W;
        Wzb.resize(0, 0);
        bool per_channel = true;
        for (Index i = C; i < HW * C && per_channel; ++i)
          per_channel = low[i] == low[i % C] && high[i] == high[i % C];
        if (per_channel) {
          Wzb.resize(cout, 2 * k);
          Wzb.leftCols(k) = lin.W;
          for (Index c = 0; c < k; ++c)
            Wzb.col(k + c) = -low[c % C] * lin.Wcat.col(k + c) - high[c % C] * lin.Wcat.col(2 * k + c);
        }
        break;
      }
      default:
        break;
    }
  }

  void forward(const ConstMatrixMap<T>& A, MatrixMap<T> Z, int threads) const {
    const Index N = A.rows(), K = g.K();
    const auto tiles = make_tiles(N, g, kTilePixels, 1, threads);
    run_tiles(tiles, false, threads, [&](const Tile& t) {
      Workspace& ws = thread_workspace();
      const auto mark = ws.mark();
      const Index rows = t.pixels(g);
      MatrixMap<T> Zt(Z.data() + t.first_pixel(g) * cout, rows, cout);
      if (planar()) {
        MatrixMap<T> PT = ws.matrix<T>(K, rows);
        im2col_planar_tile(A.data(), g, t, PT.data());
        ColMatrixMap<T> Zc(ws.take<T>(rows * cout), rows, cout);
        Zc.noalias() = PT.transpose() * lin.W.transpose();
        Zt = Zc;
        Zt.rowwise() += lin.b;
        ws.release(mark);
        return;
      }
      if (pointwise()) {
        Zt.noalias() = ConstMatrixMap<T>(tile_input(A.data(), t), rows, K) * lin.W.transpose();
      } else {
        MatrixMap<T> patches = ws.matrix<T>(rows, K);
        im2col_tile(A.data(), g, t, patches.data());
        Zt.noalias() = patches * lin.W.transpose();
      }
      Zt.rowwise() += lin.b;
      ws.release(mark);
    });
  }

  void backward(const ConstMatrixMap<T>& A, const ConstMatrixMap<T>& Z, const ConstMatrixMap<T>& R, MatrixMap<T> Rin,
                Workspace& ws, int threads) const {
    const Index N = A.rows(), K = g.K(), I = g.in_size();
    const RuleKind kind = lin.rule.kind;
    const bool two_weight = kind == RuleKind::ZPlus || kind == RuleKind::AlphaBeta || kind == RuleKind::Gamma;
    const bool signed_input = two_weight && N > 0 && A.minCoeff() < T(0);
    const bool second = lin.needs_second_term();
    const Index nz = second ? 2 * cout : cout;
    // accumulators over the input image: Rin itself, plus one for a^- (signed two-weight
    // rules) or two for bounds that vary over pixels (ZBox)
    const bool zbox_folded = kind == RuleKind::ZBox && Wzb.size() > 0;
    const Index extra = signed_input ? 1 : (kind == RuleKind::ZBox && !zbox_folded) ? 2 : 0;
    MatrixMap<T> acc = ws.matrix<T>(extra * N, I);
    // pointwise Epsilon and two-weight rules write every input value once: nothing to clear
    const bool overwrites = pointwise() && !planar() && !signed_input && (kind == RuleKind::Epsilon || two_weight);
    if (!overwrites) fill_zero(Rin.data(), N * I, threads);
    fill_zero(acc.data(), extra * N * I, threads);
    auto acc_of = [&](Index b) { return b == 0 ? Rin.data() : acc.data() + (b - 1) * N * I; };

    const auto tiles = make_tiles(N, g, kTilePixels, g.phase_rows(), threads);
    run_tiles(tiles, true, threads, [&](const Tile& t) {
      Workspace& tw = thread_workspace();
      const auto mark = tw.mark();
      const Index rows = t.pixels(g), first = t.first_pixel(g);
      const ConstMatrixMap<T> Rt(R.data() + first * cout, rows, cout), Zt(Z.data() + first * cout, rows, cout);
      auto patches = [&]() {
        MatrixMap<T> p = tw.matrix<T>(rows, K);
        im2col_tile(A.data(), g, t, p.data());
        return p;
      };
      switch (kind) {
        case RuleKind::Epsilon: {
          MatrixMap<T> S = tw.matrix<T>(rows, cout);
          stabilized_ratio(Rt, Zt, T(lin.rule.epsilon), S);
          if (planar()) {  // G^T (K, rows), row-major: S W with a column-major result
            ColMatrixMap<T> Gc(tw.take<T>(rows * K), rows, K);
            Gc.noalias() = S * lin.W;
            col2im_planar_tile(Gc.data(), rows, g, t, acc_of(0));
            break;
          }
          if (pointwise()) {  // col2im of one contribution per pixel into zeros: the product itself
            MatrixMap<T>(acc_of(0) + first * K, rows, K).noalias() = S * lin.W;
            break;
          }
          MatrixMap<T> G = tw.matrix<T>(rows, K);
          G.noalias() = S * lin.W;
          col2im_tile(G.data(), K, 0, g, t, acc_of(0));
          break;
        }
        case RuleKind::ZPlus:
        case RuleKind::AlphaBeta:
        case RuleKind::Gamma: {
          if (signed_input) {
            MatrixMap<T> p = patches();  // as Dense::two_weight_backward, on the patches
            const Index o = cout;
            MatrixMap<T> pp = tw.matrix<T>(rows, K), pn = tw.matrix<T>(rows, K);
            pp = p.cwiseMax(T(0));
            pn = p.cwiseMin(T(0));
            MatrixMap<T> S = tw.matrix<T>(rows, 2 * o), Q = tw.matrix<T>(rows, 2 * o);
            S.noalias() = pp * lin.UV.transpose();
            Q.noalias() = pn * lin.UV.transpose();
            S.leftCols(o) += Q.rightCols(o);
            S.rightCols(o) += Q.leftCols(o);
            two_weight_ratio<T>(lin.rule, S, Rt, Zt, lin.bu, lin.bv, true);
            if (!second) S.rightCols(o).setZero();
            Q.leftCols(o) = S.rightCols(o);
            Q.rightCols(o) = S.leftCols(o);
            MatrixMap<T> G = tw.matrix<T>(rows, K);
            G.noalias() = S * lin.UV;
            col2im_tile(G.data(), K, 0, g, t, acc_of(0));
            G.noalias() = Q * lin.UV;
            col2im_tile(G.data(), K, 0, g, t, acc_of(1));
            break;
          }
          const T* pdata = tile_input(A.data(), t);
          if (!pointwise()) {
            MatrixMap<T> own = patches();
            pdata = own.data();
          }
          const ConstMatrixMap<T> p(pdata, rows, K);
          MatrixMap<T> S = tw.matrix<T>(rows, nz);
          // Without negative inputs, one product Q = P (W^+)^T and the forward output
          // z - b = P W^T give: ZPlus z1 = Q; Gamma z1 = P (W + g W^+)^T = z - b + g Q and
          // z2 = P (W + g W^-)^T = (1+g)(z - b) - g Q (both denominators at least |z| from 0).
          // AlphaBeta's z2 = P (W^-)^T gets its own product: as z - b - Q it would lose its
          // digits whenever the negative part is small next to Q (float32: 1e-7 Q / |z2|).
          auto S1 = S.leftCols(cout);
          if (second && kind == RuleKind::AlphaBeta) {  // [z1 | z2] = P [W^+; W^-]^T, one product
            S.noalias() = p * lin.UV.transpose();
          } else {
            S1.noalias() = p * Wp.transpose();
          }
          if (second && kind == RuleKind::Gamma) {
            auto S2 = S.rightCols(cout);
            const T gm = T(lin.rule.gamma);
            for (Index r = 0; r < rows; ++r) {
              auto zb = Zt.row(r).array() - lin.b.array();
              auto q = S1.row(r).array();
              S2.row(r).array() = (T(1) + gm) * zb - gm * q;
              q = zb + gm * q;
            }
          }
          two_weight_ratio<T>(lin.rule, S, Rt, Zt, lin.bu, lin.bv, second);
          // pointwise: col2im of one contribution per pixel into zeros is the product itself
          MatrixMap<T> G = pointwise() ? MatrixMap<T>(acc_of(0) + first * K, rows, K) : tw.matrix<T>(rows, K);
          // Gamma: relevance that reached an output with z_j < 0 is the only user of V. Below a
          // ReLU it is zero (the layer above multiplies by a_j = 0), and then S2 = 0 exactly and
          // S [U; V] = S1 U: a third of the backward work skipped, the same numbers.
          if (kind == RuleKind::Gamma && !(S.rightCols(cout).array() != T(0)).any())
            G.noalias() = S.leftCols(cout) * lin.UV.topRows(cout);
          else
            G.noalias() = S * lin.UV.topRows(nz);
          if (!pointwise()) col2im_tile(G.data(), K, 0, g, t, acc_of(0));
          break;
        }
        case RuleKind::ZBox: {
          // sum_i a_i w_ij is the forward output without its bias: no product needed
          MatrixMap<T> S = tw.matrix<T>(rows, cout);
          S = Zt;
          S.rowwise() -= lin.b;
          for (Index n = t.n0; n < t.n1; ++n) S.middleRows((n - t.n0) * (rows / (t.n1 - t.n0)), rows / (t.n1 - t.n0)) -= fixed.middleRows(t.y0 * g.Wo, rows / (t.n1 - t.n0));
          stabilized_ratio(Rt, S, T(lin.rule.stabilizer), S);
          if (zbox_folded && planar()) {  // as below, on transposed patches
            ColMatrixMap<T> Gc(tw.take<T>(rows * 2 * K), rows, 2 * K);
            Gc.noalias() = S * Wzb;
            MatrixMap<T> PT = tw.matrix<T>(K, rows);
            im2col_planar_tile(A.data(), g, t, PT.data());
            const ConstMatrixMap<T> G1(Gc.data(), K, rows), G2(Gc.data() + K * rows, K, rows);
            PT.array() = PT.array() * G1.array() + G2.array();
            col2im_planar_tile(PT.data(), rows, g, t, acc_of(0));
            break;
          }
          if (zbox_folded) {  // patch space: a_i (S W)_ik + (S B)_ik, then one scatter
            MatrixMap<T> G = tw.matrix<T>(rows, 2 * K);
            G.noalias() = S * Wzb;
            MatrixMap<T> p = patches();
            p.array() = p.array() * G.leftCols(K).array() + G.rightCols(K).array();
            col2im_tile(p.data(), K, 0, g, t, acc_of(0));
            break;
          }
          MatrixMap<T> G = tw.matrix<T>(rows, 3 * K);
          G.noalias() = S * lin.Wcat;
          for (Index b = 0; b < 3; ++b) col2im_tile(G.data(), 3 * K, b * K, g, t, acc_of(b));
          break;
        }
        case RuleKind::WSquare:
        case RuleKind::Flat: {
          MatrixMap<T> S = tw.matrix<T>(rows, cout);
          {
            const Index per = rows / (t.n1 - t.n0);  // the denominators repeat for every image
            for (Index n = t.n0; n < t.n1; ++n)
              stabilized_ratio(Rt.middleRows((n - t.n0) * per, per), fixed.middleRows(t.y0 * g.Wo, per), T(lin.rule.stabilizer),
                               S.middleRows((n - t.n0) * per, per));
          }
          if (kind == RuleKind::Flat && planar()) {  // every row of G^T is the row sums
            Eigen::Map<Vector<T>> sums(tw.take<T>(rows), rows);
            sums = S.rowwise().sum();
            col2im_planar_tile(sums.data(), 0, g, t, acc_of(0));
            break;
          }
          MatrixMap<T> G = tw.matrix<T>(rows, K);
          if (kind == RuleKind::Flat)  // S times a matrix of ones: each patch row is its row sum
            G = S.rowwise().sum().replicate(1, K);
          else
            G.noalias() = S * lin.Wcat;
          col2im_tile(G.data(), K, 0, g, t, acc_of(0));
          break;
        }
        case RuleKind::Pass:
          throw std::invalid_argument("Pass cannot be applied to a Conv2d layer");
      }
      tw.release(mark);
    });

    // R_i = a_i * (sum of the scattered factors), by rule
    if (kind == RuleKind::WSquare || kind == RuleKind::Flat || zbox_folded) return;
    for_segments(N, I, threads, [&](Index n, Index c0, Index len) {
      auto a = A.row(n).segment(c0, len).array();
      auto out = Rin.row(n).segment(c0, len).array();
      if (signed_input) {
        out = a.max(T(0)) * out + a.min(T(0)) * acc.row(n).segment(c0, len).array();
      } else if (kind == RuleKind::ZBox) {
        out = a * out - low.segment(c0, len).array() * acc.row(n).segment(c0, len).array() -
              high.segment(c0, len).array() * acc.row(N + n).segment(c0, len).array();
      } else {
        out *= a;
      }
    });
  }
};

}  // namespace fastlrp::kernels
