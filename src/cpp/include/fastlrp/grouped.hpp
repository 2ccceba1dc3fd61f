// Grouped and depthwise convolutions (groups > 1): direct loops over NHWC data, vectorised along
// the channels, for the forward pass and every LRP rule (docs/rules.md, "Graphs": each group is
// its own convolution, Flat and WSquare denominators per group).
//
// Every rule is written with two primitives on weights stored tap by tap ([t][ci][o], t = ky*kw +
// kx, ci the input channel within the group, o the output channel):
//   taps_forward:  Z[p, o]  (+)= sum over in-bounds taps t, then ci, of X[p + t, g(o)*Cg + ci] w[t][ci][o]
//   taps_backward: G[q, c]  (+)= sum over taps t that reach q, then over the group's outputs o, of
//                                S[q - t, o] w[t][c % Cg][o]
// Each output is one chain in a fixed order (taps, then channels), whatever its position, the
// thread or the batch: ties stay ties and results do not depend on the thread count. Taps in the
// padding are skipped (they would add zeros). Separate multiplies and adds (-ffp-contract=off)
// make a vectorised body and a scalar tail round alike. Depthwise layers have several loop
// orders for the same chains: 3x3 stride-1 layers with one column of padding each side (the
// mobile networks' own) an unrolled kernel forward and backward (dw3x3_row),
// other wide rows a pixel-blocked one, the rest a channel-blocked one.
#pragma once

#include "fastlrp/isa.hpp"

#include <algorithm>
#include <type_traits>
#include <vector>

#include "fastlrp/common.hpp"
#include "fastlrp/dw3x3_sse.hpp"
#include "fastlrp/rules.hpp"
#include "fastlrp/simd.hpp"
#include "fastlrp/spatial.hpp"
#include "fastlrp/workspace.hpp"

namespace fastlrp {
inline namespace FASTLRP_ISA_NS {
namespace kernels {

template <class T>
struct GroupedConv {
  Geometry g;            // g.C: all input channels
  Index groups = 1, O = 0, Cg = 0, Og = 0;
  RowVector<T> b;        // (O)
  RuleParams rule;
  // tap-major weights [t][ci][o]: W, and what the rule needs
  std::vector<T> w, wu, wv, wp, wn, wsq, ones;
  RowVector<T> bu, bv;
  RowVector<T> low, high;  // ZBox bounds over the input image (NHWC)
  std::vector<T> den;      // per output (Ho*Wo*O): Flat's and WSquare's denominators, ZBox's l W+ + h W-

  Index in_size() const { return g.in_size(); }
  Index out_size() const { return g.pixels_out() * O; }
  Index taps() const { return g.kh * g.kw; }

  bool needs_second_term() const {
    return rule.kind == RuleKind::Gamma || (rule.kind == RuleKind::AlphaBeta && rule.beta != 0.0);
  }

  // W: (O, kh*kw*Cg) row-major, each row in (ky, kx, ci) order.
  void set_weight(const T* W) {
    const Index K = taps() * Cg;
    w.assign(static_cast<std::size_t>(K * O), T(0));
    for (Index o = 0; o < O; ++o)
      for (Index k = 0; k < K; ++k) w[static_cast<std::size_t>(k * O + o)] = W[o * K + k];  // k = t*Cg + ci
  }

  void prepare(const std::vector<T>& low_in, const std::vector<T>& high_in) {
    auto map = [&](auto f) {
      std::vector<T> v(w.size());
      std::transform(w.begin(), w.end(), v.begin(), f);
      return v;
    };
    const auto pos = [](T v) { return std::max(v, T(0)); };
    const auto neg = [](T v) { return std::min(v, T(0)); };
    switch (rule.kind) {
      case RuleKind::ZPlus:
      case RuleKind::AlphaBeta:
        wu = map(pos);
        wv = map(neg);
        bu = b.cwiseMax(T(0));
        bv = b.cwiseMin(T(0));
        break;
      case RuleKind::Gamma: {
        const T gm = T(rule.gamma);
        wu = map([&](T v) { return v + gm * pos(v); });
        wv = map([&](T v) { return v + gm * neg(v); });
        bu = b + gm * b.cwiseMax(T(0));
        bv = b + gm * b.cwiseMin(T(0));
        break;
      }
      case RuleKind::ZBox: {
        wp = map(pos);
        wn = map(neg);
        low = Eigen::Map<const RowVector<T>>(low_in.data(), in_size());
        high = Eigen::Map<const RowVector<T>>(high_in.data(), in_size());
        den.assign(static_cast<std::size_t>(out_size()), T(0));
        taps_forward(low.data(), 1, wp.data(), den.data(), 1, false);
        taps_forward(high.data(), 1, wn.data(), den.data(), 1, true);
        break;
      }
      case RuleKind::WSquare: {
        wsq = map([](T v) { return v * v; });
        const std::vector<T> img(static_cast<std::size_t>(in_size()), T(1));
        den.assign(static_cast<std::size_t>(out_size()), T(0));
        taps_forward(img.data(), 1, wsq.data(), den.data(), 1, false);
        break;
      }
      case RuleKind::Flat: {
        ones.assign(w.size(), T(1));
        const std::vector<T> img(static_cast<std::size_t>(in_size()), T(1));
        den.assign(static_cast<std::size_t>(out_size()), T(0));
        taps_forward(img.data(), 1, ones.data(), den.data(), 1, false);
        break;
      }
      default:
        break;
    }
  }

  void forward(const ConstMatrixMap<T>& A, MatrixMap<T> Z, int threads) const {
    taps_forward(A.data(), A.rows(), w.data(), Z.data(), threads, false, nullptr, b.data());
    if (!depthwise()) add_bias(Z, b, threads);  // depthwise rows start their chains from the bias
  }

  // nonnegative_input: the caller knows A has no negative entries (network.hpp,
  // nonnegative_output), so the scan for them is skipped; the result is the same either way.
  void backward(const ConstMatrixMap<T>& A, const ConstMatrixMap<T>& Z, const ConstMatrixMap<T>& R, MatrixMap<T> Rin,
                Workspace& ws, int threads, bool nonnegative_input = false) const {
    const Index n = A.rows(), P = out_size(), I = in_size();
    const T eps_s = T(rule.stabilizer);
    const auto mark = ws.mark();
    T* S = ws.take<T>(static_cast<std::size_t>(n * P));
    switch (rule.kind) {
      case RuleKind::Epsilon: {
        const T eps = T(rule.epsilon);
        elementwise(n, P, threads, [&](Index i, Index) { S[i] = safe_ratio(R.data()[i], Z.data()[i], eps); });
        taps_backward(S, n, w.data(), Rin.data(), threads, false);
        elementwise(n, I, threads, [&](Index i, Index) { Rin.data()[i] *= A.data()[i]; });
        break;
      }
      case RuleKind::ZBox: {
        taps_forward(A.data(), n, w.data(), S, threads, false);
        elementwise(n, P, threads, [&](Index i, Index j) { S[i] = safe_ratio(R.data()[i], S[i] - den[j], eps_s); });
        T* G = ws.take<T>(static_cast<std::size_t>(n * I));
        taps_backward(S, n, w.data(), Rin.data(), threads, false);
        elementwise(n, I, threads, [&](Index i, Index) { Rin.data()[i] *= A.data()[i]; });
        taps_backward(S, n, wp.data(), G, threads, false);
        elementwise(n, I, threads, [&](Index i, Index j) { Rin.data()[i] -= low[j] * G[i]; });
        taps_backward(S, n, wn.data(), G, threads, false);
        elementwise(n, I, threads, [&](Index i, Index j) { Rin.data()[i] -= high[j] * G[i]; });
        break;
      }
      case RuleKind::WSquare:
      case RuleKind::Flat:
        elementwise(n, P, threads, [&](Index i, Index j) { S[i] = safe_ratio(R.data()[i], den[j], eps_s); });
        taps_backward(S, n, rule.kind == RuleKind::Flat ? ones.data() : wsq.data(), Rin.data(), threads, false);
        break;
      case RuleKind::ZPlus:
      case RuleKind::AlphaBeta:
      case RuleKind::Gamma:
        two_weight_backward(A, Z, R, Rin, S, ws, threads, nonnegative_input);
        break;
      case RuleKind::Pass:
        throw std::invalid_argument("Pass cannot be applied to a Conv2d layer");
    }
    ws.release(mark);
  }

  // Z (n, Ho*Wo*O) (+)= the tapped product of X (n, H*W*C) with wt; with wneg, of X^+ with wt
  // plus X^- with wneg (two-weight rules on signed inputs), in one pass over X.
  void taps_forward(const T* X, Index n, const T* wt, T* Z, int threads, bool accumulate,
                    const T* wneg = nullptr, const T* bias = nullptr) const {
    const Geometry& q = g;
    const Index C = q.C, rowlen = q.Wo * O;
    const Index rows = n * q.Ho;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && rows > 1)
    for (Index r = 0; r < rows; ++r) {
      const Index s = r / q.Ho, oy = r % q.Ho;
      T* zrow = Z + r * rowlen;
      if (depthwise()) {
        if (wneg)
          dw_forward_row<true>(X + s * q.in_size(), oy, wt, wneg, zrow, accumulate, bias);
        else
          dw_forward_row<false>(X + s * q.in_size(), oy, wt, nullptr, zrow, accumulate, bias);
        continue;
      }
      if (!accumulate) std::fill(zrow, zrow + rowlen, T(0));
      for (Index ky = 0; ky < q.kh; ++ky) {
        const Index iy = oy * q.sh - q.ph + ky * q.dh;
        if (iy < 0 || iy >= q.H) continue;
        const T* xrow = X + s * q.in_size() + iy * q.W * C;
        for (Index kx = 0; kx < q.kw; ++kx) {
          const T* wtap = wt + (ky * q.kw + kx) * Cg * O;
          const T* ntap = wneg ? wneg + (ky * q.kw + kx) * Cg * O : nullptr;
          for (Index ox = 0; ox < q.Wo; ++ox) {
            const Index ix = ox * q.sw - q.pw + kx * q.dw;
            if (ix < 0 || ix >= q.W) continue;
            if (ntap)
              pixel_forward<true>(xrow + ix * C, wtap, ntap, zrow + ox * O);
            else
              pixel_forward<false>(xrow + ix * C, wtap, nullptr, zrow + ox * O);
          }
        }
      }
    }
  }

  // G (n, H*W*C) (+)= the tapped transposed product of S (n, Ho*Wo*O) with wt: a gather over
  // input pixels, taps in order. With S2 and w2 it adds S2's product with w2; with G2 it also
  // gathers G2 (+)= S w2 (+ S2 wt): the two-weight rules' g+ and g- in one pass.
  void taps_backward(const T* S, Index n, const T* wt, T* G, int threads, bool accumulate, const T* S2 = nullptr,
                     const T* w2 = nullptr, T* G2 = nullptr) const {
    const Geometry& q = g;
    const Index C = q.C, rowlen = q.W * C;
    const Index rows = n * q.H;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && rows > 1)
    for (Index r = 0; r < rows; ++r) {
      const Index s = r / q.H, iy = r % q.H;
      T* grow = G + r * rowlen;
      T* grow2 = G2 ? G2 + r * rowlen : nullptr;
      if (depthwise()) {
        const T* Ss = S + s * out_size();
        const T* S2s = S2 ? S2 + s * out_size() : nullptr;
        if (S2 && G2) {
          dw_backward_row<true, true>(Ss, S2s, iy, wt, w2, grow, grow2, accumulate);
        } else if (S2) {
          dw_backward_row<true, false>(Ss, S2s, iy, wt, w2, grow, nullptr, accumulate);
        } else if (unrolled_3x3()) {
          // G2 = S w2 is a gather of its own with the same chains: two passes of the unrolled kernel
          dw3x3_row<true>(Ss, iy, wt, grow, accumulate, nullptr);
          if (G2) dw3x3_row<true>(Ss, iy, w2, grow2, accumulate, nullptr);
        } else if (G2) {
          dw_backward_row<false, true>(Ss, nullptr, iy, wt, w2, grow, grow2, accumulate);
        } else {
          dw_backward_row<false, false>(Ss, nullptr, iy, wt, nullptr, grow, nullptr, accumulate);
        }
        continue;
      }
      if (!accumulate) {
        std::fill(grow, grow + rowlen, T(0));
        if (grow2) std::fill(grow2, grow2 + rowlen, T(0));
      }
      for (Index ky = 0; ky < q.kh; ++ky) {
        const Index ny = iy + q.ph - ky * q.dh;
        if (ny < 0 || ny % q.sh != 0 || ny / q.sh >= q.Ho) continue;
        const Index srow = (s * q.Ho + ny / q.sh) * q.Wo * O;
        for (Index kx = 0; kx < q.kw; ++kx) {
          const Index t = (ky * q.kw + kx) * Cg * O;
          for (Index ix = 0; ix < q.W; ++ix) {
            const Index nx = ix + q.pw - kx * q.dw;
            if (nx < 0 || nx % q.sw != 0 || nx / q.sw >= q.Wo) continue;
            const Index sp = srow + (nx / q.sw) * O;
            if (S2 && G2)
              pixel_backward<true, true>(S + sp, S2 + sp, wt + t, w2 + t, grow + ix * C, grow2 + ix * C);
            else if (S2)
              pixel_backward<true, false>(S + sp, S2 + sp, wt + t, w2 + t, grow + ix * C, nullptr);
            else if (G2)
              pixel_backward<false, true>(S + sp, nullptr, wt + t, w2 + t, grow + ix * C, grow2 + ix * C);
            else
              pixel_backward<false, false>(S + sp, nullptr, wt + t, nullptr, grow + ix * C, nullptr);
          }
        }
      }
    }
  }

 private:
  bool depthwise() const { return Cg == 1 && Og == 1; }

  // Depthwise rows: blocks of kNV vectors of channels accumulate over all taps in registers (one
  // multiply-add chain per output, taps in (ky, kx) order, taps in the padding skipped) and are
  // stored once. The last block's last vector is a partial one (masked loads and stores): the
  // same instructions for every channel.
  static constexpr int kNV = 6;  // 48 floats on AVX2: MobileNet's and EfficientNet's channel counts are multiples
  using VT = simd::Vec<T>;
  using V = typename VT::V;

  static V load_v(const T* p, int v, int full, int part) {
    return v < full ? VT::load(p + v * VT::W) : VT::load_part(p + v * VT::W, part);
  }
  static void store_v(T* p, V x, int v, int full, int part) {
    if (v < full)
      VT::store(p + v * VT::W, x);
    else
      VT::store_part(p + v * VT::W, x, part);
  }

  // one output row: z[ox][c] (+)= sum over taps of x[..][c] w[t][c] (Signed: x^+ w + x^- wn).
  // Whole blocks of kNV vectors run a branch-free body; the channels after them a masked one.
  // bias (O values, or null): the chains start from it instead of from zero
  template <bool Signed>
  void dw_forward_row(const T* X, Index oy, const T* wt, const T* wn, T* zrow, bool accumulate, const T* bias) const {
    if constexpr (!Signed) {
      if (unrolled_3x3()) {
        dw3x3_row<false>(X, oy, wt, zrow, accumulate, bias);
        return;
      }
      if (g.kh * g.kw <= kMaxTaps && g.Wo >= kPixMinWidth) {
        dw_forward_row_pixels(X, oy, wt, zrow, accumulate, bias);
        return;
      }
    }
    constexpr Index B = kNV * VT::W;
    Index c0 = 0;
    for (; c0 + B <= O; c0 += B) dw_forward_block<Signed, true>(X, oy, wt, wn, zrow, accumulate, bias, c0, kNV, 0);
    if (c0 < O) {
      const Index cn = O - c0;
      dw_forward_block<Signed, false>(X, oy, wt, wn, zrow, accumulate, bias, c0, static_cast<int>(cn / VT::W),
                                      static_cast<int>(cn % VT::W));
    }
  }

  // One output row, one vector of channels at a time: the vector's kh*kw tap weights stay in
  // registers and kPix output pixels accumulate side by side, so every multiply-add reads one
  // input vector and no weight (the blocked kernel below reads both). Each output is the same
  // chain as there (the bias or the accumulated value, then the taps in (ky, kx) order, taps in
  // the padding skipped): only the loop order differs, not one bit of the result.
  // Rows narrower than kPixMinWidth (7x7 images: most pixels touch the padding) keep the
  // blocked kernel, which measured faster there (bench/bench_depthwise.py).
  static constexpr int kMaxTaps = 9;
  static constexpr int kPix = 4;
  static constexpr Index kPixMinWidth = 12;

  // 3x3, stride 1, one column of zeros each side (MobileNet's and EfficientNet's depthwise
  // layers), forward (Back = false: one output row oy of X) and the backward gather of one
  // weight (Back = true: one input row iy of the factors S, as dw_backward_block computes it):
  // the taps unrolled, one vector's 3 NR weights in registers, kPix3 pixels side by side. Each
  // value is the same chain as the general kernels': start (the bias, the accumulated value or
  // zero), then the taps in (ky, kx) order, those outside the source skipped. The source pixel
  // of tap (ky, kx) for pixel (y, x) is (y - ph + ky, x - 1 + kx) forward and
  // (y + ph - ky, x + 1 - kx) backward: d = +1 or -1 below.
  // SSE (v2): 3 pixels here. Without VEX's three-operand forms and FMA, each multiply-add needs a
  // scratch register, and the compiler spilled 6 pixels' accumulators with 9 weights to the stack:
  // 3 ran 4-19 % faster than 6 on MobileNetV2's shapes (bench/README.md, thirteenth session).
  // Float rows with all three source rows run groups of 6 written in assembly (dw3x3_sse.hpp),
  // which keeps them in registers; this loop takes the pixels after them.
  static constexpr int kPix3 = simd::kBytes >= 32 ? 6 : 3;
  static constexpr float kZeros[4] = {0, 0, 0, 0};  // the chains' start without a bias
  bool unrolled_3x3() const {  // the geometry dw3x3_row computes
    return g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.pw == 1 && g.Wo == g.W &&
           g.W >= 3;
  }
  template <bool Back>
  void dw3x3_row(const T* src, Index y, const T* wt, T* out, bool accumulate, const T* bias) const {
    const Geometry& q = g;
    constexpr Index d = Back ? -1 : 1;
    const Index base = Back ? y + q.ph : y - q.ph, limit = Back ? q.Ho : q.H;  // source row of ky: base + d ky
    Index ky0 = 0, ky1 = 3;  // taps whose source row exists
    while (ky0 < 3 && (base + d * ky0 < 0 || base + d * ky0 >= limit)) ++ky0;
    while (ky1 > ky0 && (base + d * (ky1 - 1) < 0 || base + d * (ky1 - 1) >= limit)) --ky1;
    const T* rows[3] = {nullptr, nullptr, nullptr};
    for (Index ky = ky0; ky < ky1; ++ky) rows[ky - ky0] = src + (base + d * ky) * q.W * O;  // Wo == W
    // the rows the next y reads first and writes: the source row that enters (y + 1 - ph + 2
    // forward, y + 1 + ph backward) and the next output row, fetched while this row is computed
    const Index enter = Back ? base + 1 : base + 3;
    const bool more = y + 1 < (Back ? q.H : q.Ho);
    const Ahead ahead{more && enter >= 0 && enter < limit ? src + enter * q.W * O : nullptr, more ? out + q.W * O : nullptr};
    switch (ky1 - ky0) {
      case 3: return dw3x3_rows<3, Back>(rows, wt + ky0 * 3 * O, out, accumulate, bias, ahead);
      case 2: return dw3x3_rows<2, Back>(rows, wt + ky0 * 3 * O, out, accumulate, bias, ahead);
      case 1: return dw3x3_rows<1, Back>(rows, wt + ky0 * 3 * O, out, accumulate, bias, ahead);
      default: return dw3x3_rows<0, Back>(rows, wt, out, accumulate, bias, ahead);
    }
  }

  // The next row's source and output, prefetched a slice per vector of channels while this row
  // is computed. A vector's pass reads its rows at a stride of C values; with the next rows
  // fetched ahead, MobileNetV2's shapes ran 1.1-1.6x faster at v2 and v3 (bench/README.md,
  // seventeenth session). Prefetches change no value.
  struct Ahead {
    const T* src;
    T* out;
  };

  template <int NR, bool Back>
  void dw3x3_rows(const T* const* rows, const T* wt, T* out, bool accumulate, const T* bias, Ahead ahead) const {
    const Index C = O, Wd = g.W;
    constexpr Index d = Back ? -1 : 1;
    constexpr Index kLine = 64 / sizeof(T);
    auto vector = [&](Index c, auto partial_tag) {
      {  // this vector's share of the next rows: values [c Wd, (c + W) Wd) of each
        const Index e = std::min(c + VT::W, C) * Wd;
        if (ahead.src)
          for (Index f = c * Wd; f < e; f += kLine) __builtin_prefetch(ahead.src + f, 0, 3);
        if (ahead.out)
          for (Index f = c * Wd; f < e; f += kLine) __builtin_prefetch(ahead.out + f, 1, 3);
      }
      constexpr bool partial = decltype(partial_tag)::value;
      const int part = static_cast<int>(C - c);
      auto ld = [&](const T* p) {
        if constexpr (partial)
          return VT::load_part(p, part);
        else
          return VT::load(p);
      };
      auto put = [&](T* op, V v) {
        if constexpr (partial)
          VT::store_part(op, v, part);
        else
          VT::store(op, v);
      };
      V w[NR * 3 + 1];
#pragma GCC unroll 9
      for (int t = 0; t < NR * 3; ++t) w[t] = ld(wt + t * O + c);
      const V b0 = bias ? ld(bias + c) : VT::zero();
      auto start = [&](const T* op) { return accumulate ? ld(op) : b0; };
      // one pixel whose taps kx in [k0, k1) have a source pixel
      auto edge = [&](Index x, int k0, int k1) {
        T* op = out + x * C + c;
        V acc = start(op);
#pragma GCC unroll 3
        for (int r = 0; r < NR; ++r)
#pragma GCC unroll 3
          for (int kx = k0; kx < k1; ++kx) acc = VT::fmadd(ld(rows[r] + (x + d * (kx - 1)) * C + c), w[r * 3 + kx], acc);
        put(op, acc);
      };
      edge(0, Back ? 0 : 1, Back ? 2 : 3);
      Index x = 1;
#ifdef FASTLRP_DW3X3_SSE_ASM
      if constexpr (std::is_same_v<T, float> && NR == 3 && !partial) {  // groups of 6 (dw3x3_sse.hpp)
        if (const Index groups = (Wd - 2) / 6; groups > 0) {
          alignas(16) float wv[9 * 4];
          for (int t = 0; t < 9; ++t) VT::store(wv + 4 * t, w[t]);
          const float* r[3] = {rows[0] + c, rows[1] + c, rows[2] + c};  // at column x - 1 = 0
          if (accumulate)
            dw3x3_sse_groups<Back, true>(r[0], r[1], r[2], out + C + c, wv, nullptr, C, groups);
          else
            dw3x3_sse_groups<Back, false>(r[0], r[1], r[2], out + C + c, wv, bias ? bias + c : kZeros, C, groups);
          x += 6 * groups;
        }
      }
#endif
      for (; x + kPix3 <= Wd - 1; x += kPix3) {
        V acc[kPix3];
#pragma GCC unroll 8
        for (int p = 0; p < kPix3; ++p) acc[p] = start(out + (x + p) * C + c);
#pragma GCC unroll 3
        for (int r = 0; r < NR; ++r) {
          const T* sr = rows[r] + x * C + c;
#pragma GCC unroll 3
          for (int kx = 0; kx < 3; ++kx)
#pragma GCC unroll 8
            for (int p = 0; p < kPix3; ++p) acc[p] = VT::fmadd(ld(sr + (p + d * (kx - 1)) * C), w[r * 3 + kx], acc[p]);
        }
#pragma GCC unroll 8
        for (int p = 0; p < kPix3; ++p) put(out + (x + p) * C + c, acc[p]);
      }
      for (; x < Wd - 1; ++x) edge(x, 0, 3);
      edge(Wd - 1, Back ? 1 : 0, Back ? 3 : 2);
    };
    Index c = 0;
    for (; c + VT::W <= C; c += VT::W) vector(c, std::false_type{});
    if (c < C) vector(c, std::true_type{});
  }

  void dw_forward_row_pixels(const T* X, Index oy, const T* wt, T* zrow, bool accumulate, const T* bias) const {
    const Geometry& q = g;
    const Index C = O;
    Index ky0 = 0, ky1 = q.kh;  // taps whose input row is inside the image
    while (ky0 < q.kh && oy * q.sh - q.ph + ky0 * q.dh < 0) ++ky0;
    while (ky1 > ky0 && oy * q.sh - q.ph + (ky1 - 1) * q.dh >= q.H) --ky1;
    // output columns whose every tap column is inside the image
    Index lo = 0, hi = q.Wo;
    while (lo < q.Wo && lo * q.sw - q.pw < 0) ++lo;
    while (hi > lo && (hi - 1) * q.sw - q.pw + (q.kw - 1) * q.dw >= q.W) --hi;
    const T* rows[kMaxTaps];
    for (Index ky = ky0; ky < ky1; ++ky) rows[ky - ky0] = X + (oy * q.sh - q.ph + ky * q.dh) * q.W * C;
    const int nrows = static_cast<int>(ky1 - ky0);
    // one vector of channels from c (the last one partial: masked loads and stores)
    auto vector = [&](Index c, auto partial_tag) {
      constexpr bool partial = decltype(partial_tag)::value;
      const int part = static_cast<int>(C - c);
      auto ld = [&](const T* p) {
        if constexpr (partial)
          return VT::load_part(p, part);
        else
          return VT::load(p);
      };
      auto put = [&](T* zp, V v) {
        if constexpr (partial)
          VT::store_part(zp, v, part);
        else
          VT::store(zp, v);
      };
      V w[kMaxTaps];
      for (int r = 0; r < nrows; ++r)
        for (Index kx = 0; kx < q.kw; ++kx) w[r * q.kw + kx] = ld(wt + ((ky0 + r) * q.kw + kx) * O + c);
      auto start = [&](const T* zp) { return accumulate ? ld(zp) : bias ? ld(bias + c) : VT::zero(); };
      auto one = [&](Index ox) {  // a pixel with taps in the padding
        T* zp = zrow + ox * C + c;
        V acc = start(zp);
        const Index xb = ox * q.sw - q.pw;
        for (int r = 0; r < nrows; ++r)
          for (Index kx = 0; kx < q.kw; ++kx) {
            const Index ix = xb + kx * q.dw;
            if (ix < 0 || ix >= q.W) continue;
            acc = VT::fmadd(ld(rows[r] + ix * C + c), w[r * q.kw + kx], acc);
          }
        put(zp, acc);
      };
      Index ox = 0;
      for (; ox < lo; ++ox) one(ox);
      const Index step = q.sw * C, kstep = q.dw * C;
      for (; ox + kPix <= hi; ox += kPix) {
        V acc[kPix];
        for (int p = 0; p < kPix; ++p) acc[p] = start(zrow + (ox + p) * C + c);
        const Index x0 = (ox * q.sw - q.pw) * C + c;
        int t = 0;
        for (int r = 0; r < nrows; ++r) {
          const T* xr = rows[r] + x0;
          for (Index kx = 0; kx < q.kw; ++kx, ++t, xr += kstep)
            for (int p = 0; p < kPix; ++p) acc[p] = VT::fmadd(ld(xr + p * step), w[t], acc[p]);
        }
        for (int p = 0; p < kPix; ++p) put(zrow + (ox + p) * C + c, acc[p]);
      }
      for (; ox < q.Wo; ++ox) one(ox);
    };
    Index c = 0;
    for (; c + VT::W <= C; c += VT::W) vector(c, std::false_type{});
    if (c < C) vector(c, std::true_type{});
  }

  template <bool Signed, bool Whole>
  void dw_forward_block(const T* X, Index oy, const T* wt, const T* wn, T* zrow, bool accumulate, const T* bias,
                        Index c0, int full, int part) const {
    const Geometry& q = g;
    const Index C = O;
    const int nv = Whole ? kNV : full + (part ? 1 : 0);
    auto ld = [&](const T* p, int v) { return Whole ? VT::load(p + v * VT::W) : load_v(p, v, full, part); };
    Index ky0 = 0, ky1 = q.kh;  // taps whose input row is inside the image
    while (ky0 < q.kh && oy * q.sh - q.ph + ky0 * q.dh < 0) ++ky0;
    while (ky1 > ky0 && oy * q.sh - q.ph + (ky1 - 1) * q.dh >= q.H) --ky1;
    for (Index ox = 0; ox < q.Wo; ++ox) {
      T* zp = zrow + ox * C + c0;
      V acc[kNV];
      for (int v = 0; v < kNV; ++v) {
        acc[v] = VT::zero();
        if (v < nv && accumulate)
          acc[v] = ld(zp, v);
        else if (v < nv && bias)
          acc[v] = ld(bias + c0, v);
      }
      const Index xb = ox * q.sw - q.pw;
      for (Index ky = ky0; ky < ky1; ++ky) {
        const T* xrow = X + (oy * q.sh - q.ph + ky * q.dh) * q.W * C + c0;
        const T* wrow = wt + ky * q.kw * O + c0;
        const T* nrow = Signed ? wn + ky * q.kw * O + c0 : nullptr;
        for (Index kx = 0; kx < q.kw; ++kx) {
          const Index ix = xb + kx * q.dw;
          if (ix < 0 || ix >= q.W) continue;
          const T* xp = xrow + ix * C;
          for (int v = 0; v < kNV; ++v) {
            if (v >= nv) break;
            const V a = ld(xp, v);
            if (Signed) {
              acc[v] = VT::fmadd(VT::max(a, VT::zero()), ld(wrow + kx * O, v), acc[v]);
              acc[v] = VT::fmadd(VT::min(a, VT::zero()), ld(nrow + kx * O, v), acc[v]);
            } else {
              acc[v] = VT::fmadd(a, ld(wrow + kx * O, v), acc[v]);
            }
          }
        }
      }
      for (int v = 0; v < kNV; ++v)
        if (v < nv) {
          if (Whole)
            VT::store(zp + v * VT::W, acc[v]);
          else
            store_v(zp, acc[v], v, full, part);
        }
    }
  }

  // one input row: g[ix][c] (+)= sum over the taps that reach it of s[..][c] w[t][c] (+ s2 w2);
  // Second: g2 (+)= s w2 (+ s2 w)
  template <bool HasS2, bool Second>
  void dw_backward_row(const T* S, const T* S2, Index iy, const T* wt, const T* w2, T* grow, T* grow2,
                       bool accumulate) const {
    constexpr Index B = kNV * VT::W;
    Index c0 = 0;
    for (; c0 + B <= O; c0 += B)
      dw_backward_block<HasS2, Second, true>(S, S2, iy, wt, w2, grow, grow2, accumulate, c0, kNV, 0);
    if (c0 < O) {
      const Index cn = O - c0;
      dw_backward_block<HasS2, Second, false>(S, S2, iy, wt, w2, grow, grow2, accumulate, c0,
                                              static_cast<int>(cn / VT::W), static_cast<int>(cn % VT::W));
    }
  }

  template <bool HasS2, bool Second, bool Whole>
  void dw_backward_block(const T* S, const T* S2, Index iy, const T* wt, const T* w2, T* grow, T* grow2,
                         bool accumulate, Index c0, int full, int part) const {
    const Geometry& q = g;
    const Index C = O;
    const int nv = Whole ? kNV : full + (part ? 1 : 0);
    auto ld = [&](const T* p, int v) { return Whole ? VT::load(p + v * VT::W) : load_v(p, v, full, part); };
    for (Index ix = 0; ix < q.W; ++ix) {
      T* gp = grow + ix * C + c0;
      T* gp2 = Second ? grow2 + ix * C + c0 : nullptr;
      V a[kNV], b[kNV];
      for (int v = 0; v < kNV; ++v) {
        a[v] = VT::zero();
        b[v] = VT::zero();
        if (v < nv && accumulate) {
          a[v] = ld(gp, v);
          if (Second) b[v] = ld(gp2, v);
        }
      }
      for (Index ky = 0; ky < q.kh; ++ky) {
        const Index ny = iy + q.ph - ky * q.dh;
        if (ny < 0 || ny % q.sh != 0 || ny / q.sh >= q.Ho) continue;
        for (Index kx = 0; kx < q.kw; ++kx) {
          const Index nx = ix + q.pw - kx * q.dw;
          if (nx < 0 || nx % q.sw != 0 || nx / q.sw >= q.Wo) continue;
          const Index sp = ((ny / q.sh) * q.Wo + nx / q.sw) * O + c0;
          const Index t = (ky * q.kw + kx) * O + c0;
          for (int v = 0; v < kNV; ++v) {
            if (v >= nv) break;
            const V sv = ld(S + sp, v);
            const V wu = ld(wt + t, v);
            a[v] = VT::fmadd(sv, wu, a[v]);
            if (HasS2 || Second) {
              const V wv = ld(w2 + t, v);
              if (HasS2) {
                const V s2 = ld(S2 + sp, v);
                a[v] = VT::fmadd(s2, wv, a[v]);
                if (Second) {
                  b[v] = VT::fmadd(sv, wv, b[v]);
                  b[v] = VT::fmadd(s2, wu, b[v]);
                }
              } else if (Second) {
                b[v] = VT::fmadd(sv, wv, b[v]);
              }
            }
          }
        }
      }
      for (int v = 0; v < kNV; ++v)
        if (v < nv) {
          if (Whole) {
            VT::store(gp + v * VT::W, a[v]);
            if (Second) VT::store(gp2 + v * VT::W, b[v]);
          } else {
            store_v(gp, a[v], v, full, part);
            if (Second) store_v(gp2, b[v], v, full, part);
          }
        }
    }
  }

  // Grouped (not depthwise) pixels: z[o] += x[g(o)*Cg + ci] * w[ci][o], ci in order; Signed:
  // x^+ w[ci][o] + x^- wn[ci][o]
  template <bool Signed>
  void pixel_forward(const T* __restrict x, const T* __restrict wt, const T* __restrict wn, T* __restrict z) const {
    for (Index gi = 0; gi < groups; ++gi)
      for (Index ci = 0; ci < Cg; ++ci) {
        const T xv = x[gi * Cg + ci], xp = std::max(xv, T(0)), xn = std::min(xv, T(0));
        const T* wr = wt + ci * O + gi * Og;
        const T* nr = Signed ? wn + ci * O + gi * Og : nullptr;
        T* zr = z + gi * Og;
        for (Index oo = 0; oo < Og; ++oo) {
          if (Signed)
            zr[oo] = zr[oo] + xp * wr[oo] + xn * nr[oo];
          else
            zr[oo] += xv * wr[oo];
        }
      }
  }

  // g[c] += sum over the group's outputs o, in order, of s[o] w[c % Cg][o] (+ s2[o] w2[..][o]);
  // Second: g2[c] += s[o] w2[..][o] (+ s2[o] w[..][o])
  template <bool HasS2, bool Second>
  void pixel_backward(const T* __restrict s, const T* __restrict s2, const T* __restrict wt, const T* __restrict w2,
                      T* __restrict gr, T* __restrict gr2) const {
    for (Index gi = 0; gi < groups; ++gi)
      for (Index ci = 0; ci < Cg; ++ci) {
        const Index k = ci * O + gi * Og, c = gi * Cg + ci;
        T a = gr[c], b = Second ? gr2[c] : T(0);
        for (Index oo = 0; oo < Og; ++oo) {
          a = a + s[gi * Og + oo] * wt[k + oo];
          if (HasS2) a = a + s2[gi * Og + oo] * w2[k + oo];
          if (Second) {
            b = b + s[gi * Og + oo] * w2[k + oo];
            if (HasS2) b = b + s2[gi * Og + oo] * wt[k + oo];
          }
        }
        gr[c] = a;
        if (Second) gr2[c] = b;
      }
  }

  // f(flat index, index within the sample) over an (n, width) array, shared by the threads
  template <class F>
  static void elementwise(Index n, Index width, int threads, F&& f) {
    for_segments(n, width, threads, [&](Index r, Index c0, Index len) {
      for (Index j = c0; j < c0 + len; ++j) f(r * width + j, j);
    });
  }

  void add_bias(MatrixMap<T>& Z, const RowVector<T>& bias, int threads) const {
    const Index pixels = Z.rows() * g.pixels_out();
    const T* bv = bias.data();
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && pixels > 1)
    for (Index p = 0; p < pixels; ++p) {
      T* z = Z.data() + p * O;
      for (Index o = 0; o < O; ++o) z[o] += bv[o];
    }
  }

  void two_weight_backward(const ConstMatrixMap<T>& A, const ConstMatrixMap<T>& Z, const ConstMatrixMap<T>& R,
                           MatrixMap<T>& Rin, T* S1, Workspace& ws, int threads, bool nonnegative_input) const {
    const Index n = A.rows(), P = out_size(), I = in_size();
    const bool second = needs_second_term();
    const bool signed_input = n > 0 && !nonnegative_input && A.minCoeff() < T(0);
    T* S2 = ws.take<T>(static_cast<std::size_t>(n * P));
    if (!signed_input) {
      taps_forward(A.data(), n, wu.data(), S1, threads, false);
      if (second) taps_forward(A.data(), n, wv.data(), S2, threads, false);
    } else {
      // z1 = a+ U + a- V, z2 = a+ V + a- U (docs/rules.md: (a w)^+ and (a w)^- for AlphaBeta)
      taps_forward(A.data(), n, wu.data(), S1, threads, false, wv.data());
      if (second) taps_forward(A.data(), n, wv.data(), S2, threads, false, wu.data());
    }
    const T eps_s = T(rule.stabilizer), alpha = T(rule.alpha), beta = T(rule.beta);
    const RuleKind kind = rule.kind;
    elementwise(n, P, threads, [&](Index i, Index j) {
      const Index o = j % O;
      const T r = R.data()[i];
      if (kind == RuleKind::Gamma) {  // the sign of the original z picks the variant
        const T z = Z.data()[i];
        const T s1 = z > T(0) ? safe_ratio(r, S1[i] + bu[o], eps_s) : T(0);
        const T s2 = z < T(0) ? safe_ratio(r, S2[i] + bv[o], eps_s) : T(0);
        S1[i] = s1;
        S2[i] = s2;
      } else {
        T s1 = safe_ratio(r, S1[i] + bu[o], eps_s);
        if (kind == RuleKind::AlphaBeta) s1 *= alpha;
        S2[i] = second ? safe_ratio(r, S2[i] + bv[o], eps_s) * -beta : T(0);
        S1[i] = s1;
      }
    });
    if (!signed_input) {
      if (second)
        taps_backward(S1, n, wu.data(), Rin.data(), threads, false, S2, wv.data());
      else
        taps_backward(S1, n, wu.data(), Rin.data(), threads, false);
      elementwise(n, I, threads, [&](Index i, Index) { Rin.data()[i] *= A.data()[i]; });
      return;
    }
    // g+ = s1 U + s2 V, g- = s1 V + s2 U in one gather; R_in = a+ g+ + a- g-
    T* Gn = ws.take<T>(static_cast<std::size_t>(n * I));
    taps_backward(S1, n, wu.data(), Rin.data(), threads, false, second ? S2 : nullptr, wv.data(), Gn);
    elementwise(n, I, threads, [&](Index i, Index) {
      const T a = A.data()[i];
      Rin.data()[i] = std::max(a, T(0)) * Rin.data()[i] + std::min(a, T(0)) * Gn[i];
    });
  }
};

}  // namespace kernels
}  // namespace FASTLRP_ISA_NS
}  // namespace fastlrp
