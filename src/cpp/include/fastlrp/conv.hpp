// Conv2d: forward pass and the backward pass of every LRP rule.
//
// Forward: a Dense layer applied to the patches of its input (im2col), one GEMM per range of
// output pixels. Backward, in two stages:
//   1. over output pixels: the factors S (one row per output pixel) that the rule divides the
//      relevance by (docs/rules.md's R_j / stab(z_j), per weight of a two-weight rule);
//   2. over input pixels: each input pixel gathers the rows of S its taps connect to and
//      multiplies them with the gather weight M_g, M_g[(ky, kx, col), (part, c)] =
//      M[col, part * K + (ky, kx, c)] for the rule's patch-space weight M. Then R_i = a_i G_0
//      (Epsilon, ZPlus, AlphaBeta, Gamma), a_i^+ G_0 + a_i^- G_1 (two-weight rules on signed
//      inputs), a_i G_0 + G_1 (ZBox with per-channel bounds), a_i G_0 - l_i G_1 - h_i G_2
//      (ZBox), G_0 (WSquare). Flat, whose weights are all ones, sums the factors of each output
//      pixel and then those of each input pixel's window directly (flat_backward).
// Every output and every input pixel is one chain of the position-independent GEMM
// (gemm.hpp) in a fixed order, so identical patches give identical values anywhere and no
// result depends on the tiling, the thread count or the batch.
//
// docs/rules.md's c_ij is defined over the receptive field of output j, padding contributing
// nothing: patches hold zeros there, so Epsilon/ZPlus/AlphaBeta/Gamma need no special case;
// Flat, WSquare and ZBox, whose c_ij do not vanish with a_i, use per-position denominators
// or shifts computed once from the patches of an all-ones (or the bounds') image.
#pragma once

#include "fastlrp/isa.hpp"

#include <cstring>

#include "fastlrp/dense.hpp"
#include "fastlrp/spatial.hpp"
#include "fastlrp/simd.hpp"

namespace fastlrp {
inline namespace FASTLRP_ISA_NS {
namespace kernels {

// Elements of one range's patch buffer: a few MiB, so that it stays in the caches.
constexpr Index kPatchElems = Index(1) << 19;

// A backward product's weight, in patch space (patch sums) or in gather form (see above).
template <class T>
struct GatherWeight {
  Index ncols = 0, parts = 0;  // columns of S per tap; blocks of C outputs per input pixel
  RowMatrix<T> Mp;             // patch sums: the patch-space weight (ncols, parts * K)
  RowMatrix<T> M;              // gathers: (taps * ncols, parts * C)

  // From a patch-space weight Mp (ncols, parts * K), K ordered (ky, kx, c).
  void set(const RowMatrix<T>& mp, Index parts_, const Geometry& g, bool patch_sum) {
    ncols = mp.rows();
    parts = parts_;
    if (patch_sum) {
      Mp = mp;
      return;
    }
    const auto& Mp = mp;
    const Index taps = g.kh * g.kw, C = g.C, K = g.K();
    M.resize(taps * ncols, parts * C);
    for (Index tap = 0; tap < taps; ++tap)
      for (Index j = 0; j < ncols; ++j)
        for (Index p = 0; p < parts; ++p)
          for (Index c = 0; c < C; ++c) M(tap * ncols + j, p * C + c) = Mp(j, p * K + tap * C + c);
  }
};

// A band of input rows [iy0, iy1) and the output rows [oy0, oy1) their taps reach.
struct RowBand {
  Index iy0, iy1, oy0, oy1;
};

// out[0 : NV vectors] = src[0][off + ...] + src[1][off + ...] + ... + src[nt - 1][off + ...], each
// lane one chain of adds from zero in tap order; NV independent chains hide the add latency.
template <class T, int NV>
inline void tap_sums(const T* const* src, Index nt, Index off, T* out) {
  using V = simd::Vec<T>;
  typename V::V s[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) s[v] = V::zero();
  for (Index t = 0; t < nt; ++t) {
    const T* q = src[t] + off;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) s[v] = V::add(s[v], V::load(q + v * V::W));
  }
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) V::store(out + v * V::W, s[v]);
}

template <class T>
struct Conv2d {
  Geometry g;
  Index cout = 0;
  Dense<T> lin;              // W as (cout, K) with K ordered (ky, kx, c), W^T, bias, rule, Wcat
  RowMatrix<T> fixed;        // (Ho*Wo, cout): Flat/WSquare denominators, ZBox shift per position
  RowVector<T> low, high;    // ZBox bounds over the input image (H*W*C)
  bool zbox_folded = false;  // ZBox with bounds that depend on the channel only (the usual case)
  GatherWeight<T> gw;        // the backward weight of Epsilon, WSquare and ZBox
  // Two-weight rules (ZPlus, AlphaBeta, Gamma) use some of these forms of their weights, which
  // ones depending on the rule and on the inputs (signed or not, relevance at z < 0 or not).
  // Each is made from W on its first use: under ZPlus below a ReLU, a network holds W^+ twice
  // (its forward and its gather form) instead of eleven copies of every weight.
  enum class Form { Up, UpUn, UVt, GatherU, GatherUV, GatherSigned };
  // Up: (W^+)^T (K, cout); UpUn: (W^+)^T over (W^-)^T (2K, cout), for [P^+ | P^-] patches;
  // UVt: [U; V]^T (K, 2cout); GatherU: U alone;
  // GatherUV: [U; V] (U alone when the rule has no second term); GatherSigned: [U; V] and [V; U]
  // (or U and V) for signed inputs. The Gather forms are GatherWeights, the others matrices.
  OnFirstUse<RowMatrix<T>> Up_, UpUn_, UVt_;
  OnFirstUse<GatherWeight<T>> gw_u_, gw_uv_, gw_signed_;
  std::vector<TapClass> ycls, xcls;  // input rows and columns grouped by the taps that reach them
  AxisTaps ytaps, xtaps;             // the taps of each input row and column
  // The backward's second stage by patch sums: G = S M_p per output pixel (patch space, one
  // GEMM chain over S's columns), then each input value sums its taps' entries of G in the
  // order (ky, kx). Chosen by geometry alone (never by batch or threads): when a sample's G
  // fits in a few MiB, or when the input has fewer than kPatchSumChannels channels (first
  // layers: a gather would copy every tap's row of S to produce 1-3 values per pixel); G is
  // then computed a band of rows at a time (patch_bands). Other layers gather (see above).
  static constexpr Index kPatchSumChannels = 16;
  bool patch_sum = false;

  Index in_size() const { return g.in_size(); }
  Index out_size() const { return g.pixels_out() * cout; }
  // A 1x1 convolution with unit stride and no padding (ResNet's bottlenecks, DenseNet's
  // transitions): patches are the input's own rows, forward and backward.
  bool pointwise() const {
    return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0 && g.ph_end == 0 && g.pw_end == 0;
  }
  bool two_weight() const {
    const RuleKind k = lin.rule.kind;
    return k == RuleKind::ZPlus || k == RuleKind::AlphaBeta || k == RuleKind::Gamma;
  }

  const RowMatrix<T>& matrix_form(Form f) const {
    switch (f) {
      case Form::Up:
        return Up_.get([&] { return RowMatrix<T>(lin.W.cwiseMax(T(0)).transpose()); });
      case Form::UpUn:
        return UpUn_.get([&] {
          RowMatrix<T> m(2 * g.K(), cout);
          m.topRows(g.K()) = lin.W.cwiseMax(T(0)).transpose();
          m.bottomRows(g.K()) = lin.W.cwiseMin(T(0)).transpose();
          return m;
        });
      case Form::UVt:
        return UVt_.get([&] { return RowMatrix<T>(lin.pair_weights().transpose()); });
      default:
        throw std::logic_error("matrix_form: a Gather form is a GatherWeight (gather_form)");
    }
  }

  const GatherWeight<T>& gather_form(Form f) const {
    auto make = [&] {
      const RowMatrix<T> UV = lin.pair_weights();
      const Index o = cout, K = g.K(), nz = lin.needs_second_term() ? 2 * o : o;
      GatherWeight<T> w;
      if (f == Form::GatherU) {
        w.set(UV.topRows(o), 1, g, patch_sum);
      } else if (f == Form::GatherUV) {
        w.set(UV.topRows(nz), 1, g, patch_sum);
      } else {
        RowMatrix<T> both(nz, 2 * K);  // G_0 = S [U; V] (or S_1 U), G_1 = S [V; U] (or S_1 V)
        both.leftCols(K) = UV.topRows(nz);
        if (nz == 2 * o)
          both.rightCols(K) << UV.bottomRows(o), UV.topRows(o);
        else
          both.rightCols(K) = UV.bottomRows(o);
        w.set(both, 2, g, patch_sum);
      }
      return w;
    };
    if (f == Form::GatherU) return gw_u_.get(make);
    if (f == Form::GatherUV) return gw_uv_.get(make);
    return gw_signed_.get(make);
  }

  void prepare(const std::vector<T>& low_img, const std::vector<T>& high_img) {
    cout = lin.W.rows();
    lin.prepare({}, {}, /*with_pair=*/false);
    Up_.reset();
    UpUn_.reset();
    UVt_.reset();
    gw_u_.reset();
    gw_uv_.reset();
    gw_signed_.reset();
    const Index K = g.K(), P = g.pixels_out();
    auto patches_of = [&](const RowVector<T>& img) {
      RowMatrix<T> M(P, K);
      im2col(img.data(), g, 0, P, M.data());
      return M;
    };
    const RowMatrix<T> W = lin.W;
    ycls = tap_classes(g.H, g.kh, g.sh, g.ph, g.dh, g.Ho);
    xcls = tap_classes(g.W, g.kw, g.sw, g.pw, g.dw, g.Wo);
    ytaps = axis_taps(g.H, g.kh, g.sh, g.ph, g.dh, g.Ho);
    xtaps = axis_taps(g.W, g.kw, g.sw, g.pw, g.dw, g.Wo);
    patch_sum = P * 3 * K * static_cast<Index>(sizeof(T)) <= (Index(8) << 20) || g.C < kPatchSumChannels;
    switch (lin.rule.kind) {
      case RuleKind::Epsilon:
        gw.set(W, 1, g, patch_sum);
        break;
      case RuleKind::ZPlus:
      case RuleKind::AlphaBeta:
      case RuleKind::Gamma:
        break;  // the forms of the weights are made on first use (matrix_form, gather_form)
      case RuleKind::Flat:
      case RuleKind::WSquare: {
        const RowMatrix<T> w = lin.rule.kind == RuleKind::Flat ? RowMatrix<T>::Ones(cout, K) : lin.Wcat;
        const RowMatrix<T> wt = w.transpose();
        const RowMatrix<T> ones = patches_of(RowVector<T>::Ones(g.in_size()));
        fixed.resize(P, cout);
        gemm<T>(P, cout, K, ones.data(), K, wt.data(), cout, fixed.data(), cout);
        if (lin.rule.kind == RuleKind::WSquare) gw.set(w, 1, g, patch_sum);  // Flat: flat_backward
        break;
      }
      case RuleKind::ZBox: {
        low = Eigen::Map<const RowVector<T>>(low_img.data(), g.in_size());
        high = Eigen::Map<const RowVector<T>>(high_img.data(), g.in_size());
        // shift_j = sum_i l_i w_ij^+ + h_i w_ij^-, per output position
        const RowMatrix<T> wpt = lin.Wcat.middleCols(K, K).transpose(), wnt = lin.Wcat.rightCols(K).transpose();
        const RowMatrix<T> pl = patches_of(low), ph = patches_of(high);
        fixed.resize(P, cout);
        gemm<T>(P, cout, K, pl.data(), K, wpt.data(), cout, fixed.data(), cout);
        gemm<T>(P, cout, K, ph.data(), K, wnt.data(), cout, fixed.data(), cout, true);
        const Index C = g.C, HW = g.H * g.W;
        zbox_folded = true;
        for (Index i = C; i < HW * C && zbox_folded; ++i)
          zbox_folded = low[i] == low[i % C] && high[i] == high[i % C];
        if (zbox_folded) {  // [W, B] with B_jk = -l_c(k) w_jk^+ - h_c(k) w_jk^-
          RowMatrix<T> wzb(cout, 2 * K);
          wzb.leftCols(K) = W;
          for (Index k = 0; k < K; ++k)
            wzb.col(K + k) = -low[k % C] * lin.Wcat.col(K + k) - high[k % C] * lin.Wcat.col(2 * K + k);
          gw.set(wzb, 2, g, patch_sum);
        } else {
          gw.set(lin.Wcat, 3, g, patch_sum);
        }
        break;
      }
      default:
        break;
    }
  }

  // Output pixels per range of a product with patches of length `len`: a few MiB of patches,
  // but at least 384 rows, so that packing the weights (once per GEMM call) stays a small part
  // of the call (VGG-16's 3x3x512 layers: 113 rows per range ran at 28 % of the FMA ceiling).
  static Index range_pixels(Index len) { return std::max<Index>(384, kPatchElems / std::max<Index>(1, len)); }

  void forward(const ConstMatrixMap<T>& A, MatrixMap<T> Z, int threads) const {
    const Index N = A.rows(), K = g.K();
    // Fewer output channels than a vector has lanes: the transposed product Z^T = W P^T runs
    // its lanes along pixels instead; each output is the same chain.
    const bool transposed = cout < simd::Vec<T>::W && !pointwise();
    run_ranges(ranges_of(N * g.pixels_out(), range_pixels(K), threads), threads, [&](Index q0, Index q1) {
      Workspace& ws = thread_workspace();
      const auto mark = ws.mark();
      const Index rows = q1 - q0;
      T* z = Z.data() + q0 * cout;
      if (pointwise()) {
        gemm<T>(rows, cout, K, A.data() + q0 * K, K, lin.Wt.data(), cout, z, cout);
      } else if (transposed) {
        T* PT = ws.take<T>(K * rows);
        T* ZT = ws.take<T>(cout * rows);
        im2col<T, true>(A.data(), g, q0, q1, PT, rows);
        gemm<T>(cout, rows, K, lin.W.data(), K, PT, rows, ZT, rows);
        for (Index r = 0; r < rows; ++r)
          for (Index j = 0; j < cout; ++j) z[r * cout + j] = ZT[j * rows + r];
      } else {
        T* P = ws.take<T>(rows * K);
        im2col(A.data(), g, q0, q1, P);
        gemm<T>(rows, cout, K, P, K, lin.Wt.data(), cout, z, cout);
      }
      MatrixMap<T>(z, rows, cout).rowwise() += lin.b;
      ws.release(mark);
    });
  }

  // nonnegative_input: the caller knows A has no negative entries (network.hpp,
  // nonnegative_output), so the scan for them is skipped; the result is the same either way.
  // add_to_rin: Rin already holds relevance from other consumers of the input, and each
  // value's share is added to it (rounded first, as a separate Rin += share would), which
  // saves that pass over both arrays.
  void backward(const ConstMatrixMap<T>& A, const ConstMatrixMap<T>& Z, const ConstMatrixMap<T>& R, MatrixMap<T> Rin,
                Workspace& ws, int threads, bool nonnegative_input = false, bool add_to_rin = false) const {
    const Index N = A.rows(), P = g.pixels_out(), NP = N * P;
    const RuleKind kind = lin.rule.kind;
    // Inputs after a ReLU have no negative entries: then a^- = 0 and half the products vanish.
    // With signed inputs anywhere in the batch, every sample takes the signed path, whose
    // extra terms are exact zeros for a sample without negative inputs: the same bits.
    const bool signed_input = two_weight() && N > 0 && !nonnegative_input && A.minCoeff() < T(0);
    const bool second = lin.needs_second_term();
    const Index o = cout;
    if (kind == RuleKind::Flat) {
      flat_backward(R, Rin, ws, threads, add_to_rin);
      return;
    }
    const auto mark = ws.mark();

    // Stage 1: S over output pixels, (N * P, ncols).
    const Index ncols = two_weight() ? (signed_input || second ? 2 * o : o) : o;
    if (pointwise() && (kind == RuleKind::Epsilon || kind == RuleKind::ZPlus || kind == RuleKind::AlphaBeta)) {
      pointwise_backward(A, Z, R, Rin, ncols, signed_input, add_to_rin, threads);
      ws.release(mark);
      return;
    }
    MatrixMap<T> S = ws.matrix<T>(NP, ncols);
    const ConstMatrixMap<T> Rp(R.data(), NP, o), Zp(Z.data(), NP, o);
    switch (kind) {
      case RuleKind::Epsilon:
        for_segments(NP, o, threads, [&](Index r, Index c0, Index len) {
          stabilized_ratio(Rp.row(r).segment(c0, len), Zp.row(r).segment(c0, len), T(lin.rule.epsilon),
                           S.row(r).segment(c0, len));
        });
        break;
      case RuleKind::WSquare:
        for_segments(N, P * o, threads, [&](Index n, Index c0, Index len) {
          const Index r0 = n * P * o + c0;
          const Eigen::Map<const RowVector<T>> r(R.data() + r0, len), d(fixed.data() + c0, len);
          stabilized_ratio(r, d, T(lin.rule.stabilizer), Eigen::Map<RowVector<T>>(S.data() + r0, len));
        });
        break;
      case RuleKind::ZBox:  // z_j - b_j - shift_j: sum_i a_i w_ij is the forward output without its bias
        // by output pixel (row r = n P + p), so that the bias and the shift index along with z
        for_segments(NP, o, threads, [&](Index r, Index c0, Index len) {
          T* s = S.row(r).data() + c0;
          const T* z = Zp.row(r).data() + c0;
          const T* f = fixed.data() + (r % P) * o + c0;
          const T* b = lin.b.data() + c0;
          for (Index k = 0; k < len; ++k) s[k] = z[k] - b[k] - f[k];
          Eigen::Map<RowVector<T>> sv(s, len);
          stabilized_ratio(Rp.row(r).segment(c0, len), sv, T(lin.rule.stabilizer), sv);
        });
        break;
      case RuleKind::ZPlus:
      case RuleKind::AlphaBeta:
      case RuleKind::Gamma:
        two_weight_factors(A, Z, R, S, signed_input, threads);
        break;
      case RuleKind::Flat:  // done by flat_backward above
        break;
      case RuleKind::Pass:
        throw std::invalid_argument("Pass cannot be applied to a Conv2d layer");
    }
    const T* Sd = S.data();
    const Index sld = S.cols();  // rows of S hold sld >= G.ncols columns; a gather reads the first G.ncols

    // Stage 2: gather over input pixels, then R_i by rule.
    const GatherWeight<T>* gwp = &gw;
    if (signed_input)
      gwp = &gather_form(Form::GatherSigned);
    else if (kind == RuleKind::Gamma && !(S.rightCols(o).array() != T(0)).any())
      gwp = &gather_form(Form::GatherU);  // S_2 = 0: S [U; V] = S_1 U, the same chains without their zero terms
    else if (two_weight())
      gwp = &gather_form(Form::GatherUV);
    const GatherWeight<T>& G = *gwp;
    const Index C = g.C, taps = g.kh * g.kw, out = G.parts * C, nc = G.ncols;
    auto combine = [&](Index n, Index i0, const T* gv) { combine_pixel(A, Rin, n, i0, gv, signed_input, add_to_rin); };
    if (patch_sum) {
      const Index K = g.K(), PK = G.parts * K;
      // Offsets into G of each row tap and each column tap (their sum addresses a tap's entries)
      std::vector<Index> ysum(ytaps.tap.size()), xsum(xtaps.tap.size());
      for (std::size_t a = 0; a < ysum.size(); ++a) ysum[a] = ytaps.out[a] * g.Wo * PK + ytaps.tap[a] * g.kw * C;
      for (std::size_t b = 0; b < xsum.size(); ++b) xsum[b] = xtaps.out[b] * PK + xtaps.tap[b] * C;
      const std::vector<RowBand> bands = patch_bands(PK);
      Index band_rows = 0;
      for (const RowBand& band : bands) band_rows = std::max(band_rows, band.oy1 - band.oy0);
      // samples [n0, n1): more than one only when a sample's G is one band over every output row
      auto samples = [&](Index n0, Index n1, int inner) {
        Workspace& tw = thread_workspace();
        const auto tmark = tw.mark();
        T* Gs = tw.take<T>((n1 - n0) * band_rows * g.Wo * PK);
        Index base = 0;  // the offset into a sample's G of the band's first row
        using StridedMap = Eigen::Map<const RowMatrix<T>, 0, Eigen::OuterStride<>>;
        // Each input value sums its taps' entries of G in the order (ky, kx), from zero, in
        // vectors along channels (the last channels one by one): the same chain of adds for
        // every value, wherever it sits.
        // input rows [y0, y1) of sample n, from its G (Gn)
        auto rows = [&](Index n, const T* Gn, Index y0, Index y1) {
          using V = simd::Vec<T>;
          constexpr Index W = V::W;
          // Fewer channels than a vector: 8 pixels' chains side by side (scalar, interleaved),
          // so that no chain waits on the previous add's latency.
          constexpr Index kGroup = 8;
          const Index L = C < W ? kGroup : 1;
          std::vector<T> acc(L * out);
          std::vector<const T*> src(L * taps);
          Index nt[kGroup];
          for (Index iy = y0; iy < y1; ++iy)
            for (Index ix0 = 0; ix0 < g.W; ix0 += L) {
              const Index np = std::min(L, g.W - ix0);
              bool uniform = np == L;  // every pixel of the group has the same number of taps
              for (Index l = 0; l < np; ++l) {
                const Index ix = ix0 + l;
                const T** sl = src.data() + l * taps;
                Index m = 0;
                for (Index a = ytaps.begin[iy]; a < ytaps.begin[iy + 1]; ++a) {
                  const T* gy = Gn + (ysum[a] - base);
                  for (Index b = xtaps.begin[ix]; b < xtaps.begin[ix + 1]; ++b) sl[m++] = gy + xsum[b];
                }
                nt[l] = m;
                uniform = uniform && m == nt[0];
              }
              if (L == 1) {
                for (Index p = 0; p < G.parts; ++p) {
                  Index c = 0;
                  for (; c + 4 * W <= C; c += 4 * W) tap_sums<T, 4>(src.data(), nt[0], p * K + c, acc.data() + p * C + c);
                  for (; c + W <= C; c += W) tap_sums<T, 1>(src.data(), nt[0], p * K + c, acc.data() + p * C + c);
                  for (; c < C; ++c) {
                    T s = T(0);
                    for (Index t = 0; t < nt[0]; ++t) s += src[t][p * K + c];
                    acc[p * C + c] = s;
                  }
                }
              } else {
                for (Index p = 0; p < G.parts; ++p)
                  for (Index c = 0; c < C; ++c) {
                    const Index off = p * K + c;
                    T s[kGroup] = {};
                    if (uniform) {
                      for (Index t = 0; t < nt[0]; ++t)
#pragma GCC unroll 8
                        for (Index l = 0; l < kGroup; ++l) s[l] += src[l * taps + t][off];
                    } else {
                      for (Index l = 0; l < np; ++l)
                        for (Index t = 0; t < nt[l]; ++t) s[l] += src[l * taps + t][off];
                    }
                    for (Index l = 0; l < np; ++l) acc[l * out + p * C + c] = s[l];
                  }
              }
              for (Index l = 0; l < np; ++l) combine(n, (iy * g.W + ix0 + l) * C, acc.data() + l * out);
            }
        };
        for (const RowBand& band : bands) {
          const Index prow = (band.oy1 - band.oy0) * g.Wo;
          base = band.oy0 * g.Wo * PK;
          // the samples' rows of S are consecutive (one band holds all of a sample's rows when
          // there are several samples): one product for all of them
          if (prow > 0)
            product(StridedMap(Sd + (n0 * P + band.oy0 * g.Wo) * sld, (n1 - n0) * prow, nc, Eigen::OuterStride<>(sld)),
                    G.Mp, MatrixMap<T>(Gs, (n1 - n0) * prow, PK), inner);
          const Index h = band.iy1 - band.iy0;
          for (Index n = n0; n < n1; ++n) {
            const T* Gn = Gs + (n - n0) * prow * PK;
            if (inner > 1) {
#pragma omp parallel for num_threads(inner) schedule(static)
              for (Index t = 0; t < inner; ++t) rows(n, Gn, band.iy0 + h * t / inner, band.iy0 + h * (t + 1) / inner);
            } else {
              rows(n, Gn, band.iy0, band.iy1);
            }
          }
        }
        tw.release(tmark);
      };
      if (N >= threads || threads <= 1) {
        // Samples whose whole G fits in a band go through the product several at a time (up to
        // 8 MiB of G, at most a thread's share of the batch): the product packs Mp once per
        // call, and for deep layers (few output pixels, a large Mp) packing it for every sample
        // took a large part of the backward (bench/README.md, fifteenth session). Each row of G
        // is the same chain in any group, so the grouping changes no bit.
        Index per = 1;
        if (bands.size() == 1 && bands[0].oy0 == 0 && bands[0].oy1 == g.Ho) {
          const Index sample_bytes = std::max<Index>(1, P * PK * static_cast<Index>(sizeof(T)));
          per = std::clamp<Index>((Index(8) << 20) / sample_bytes, 1, (N + threads - 1) / threads);
        }
        std::vector<std::pair<Index, Index>> groups;
        for (Index n0 = 0; n0 < N; n0 += per) groups.emplace_back(n0, std::min(N, n0 + per));
        run_ranges(groups, threads, [&](Index n0, Index n1) { samples(n0, n1, 1); });
      } else {
        for (Index n = 0; n < N; ++n) samples(n, n + 1, threads);
      }
      ws.release(mark);
      return;
    }
    std::vector<std::pair<Index, Index>> items;  // indices into blocks
    std::vector<GatherBlock> blocks;
    for (Index n = 0; n < N; ++n)
      for (Index yc = 0; yc < static_cast<Index>(ycls.size()); ++yc)
        for (Index xc = 0; xc < static_cast<Index>(xcls.size()); ++xc) {
          const Index pixels = static_cast<Index>(ycls[yc].pos.size() * xcls[xc].pos.size());
          const Index Lg = static_cast<Index>(ycls[yc].taps.size() * xcls[xc].taps.size()) * nc;
          const Index step = std::min(pixels, range_pixels(Lg));
          for (Index r = 0; r < pixels; r += step) blocks.push_back({n, yc, xc, r, std::min(pixels, r + step)});
        }
    for (Index i = 0; i < static_cast<Index>(blocks.size()); ++i) items.emplace_back(i, i + 1);
    run_ranges(items, threads, [&](Index bi, Index) {
      const GatherBlock& b = blocks[bi];
      const TapClass &yc = ycls[b.yc], &xc = xcls[b.xc];
      Workspace& tw = thread_workspace();
      const auto tmark = tw.mark();
      const Index rows = b.r1 - b.r0, ny = static_cast<Index>(yc.taps.size()), nx = static_cast<Index>(xc.taps.size());
      const Index Lg = ny * nx * nc, cols = static_cast<Index>(xc.pos.size());
      T* Gv = tw.take<T>(rows * out);
      // the chain over this class's taps, one GEMM per run of consecutive taps in a kernel row
      // (rows of M_g are contiguous there), continuing from the previous run's values
      auto for_runs = [&](auto&& f) {
        bool first = true;
        for (Index a = 0; a < ny; ++a)
          for (Index c0 = 0; c0 < nx;) {
            Index c1 = c0 + 1;
            while (c1 < nx && xc.taps[c1] == xc.taps[c1 - 1] + 1) ++c1;
            const Index tap0 = yc.taps[a] * g.kw + xc.taps[c0];
            f(tap0 * nc, (a * nx + c0) * nc, (c1 - c0) * nc, first);
            first = false;
            c0 = c1;
          }
        return first;  // true: no taps at all
      };
      bool none = false;
      const T* Pg;
      Index ldp = Lg;
      if (pointwise()) {  // one class, pixels in image order, one tap: the rows of S themselves
        Pg = Sd + (b.n * g.pixels_out() + b.r0) * sld;
        ldp = sld;
      } else {
        T* own = tw.take<T>(rows * Lg);
        gather_block(Sd, sld, nc, g, yc, xc, b, own);
        Pg = own;
      }
      none = for_runs([&](Index mrow, Index pcol, Index len, bool first) {
        gemm<T>(rows, out, len, Pg + pcol, ldp, G.M.data() + mrow * out, out, Gv, out, !first);
      });
      if (none) std::fill(Gv, Gv + rows * out, T(0));
      for (Index r = b.r0; r < b.r1; ++r)
        combine(b.n, (yc.pos[r / cols] * g.W + xc.pos[r % cols]) * C, Gv + (r - b.r0) * out);
      tw.release(tmark);
    });
    ws.release(mark);
  }

 private:
  // R_i by rule from the gathered factors gv (parts * C) of input pixel i0 / C of sample n
  void combine_pixel(const ConstMatrixMap<T>& A, MatrixMap<T>& Rin, Index n, Index i0, const T* gv, bool signed_input,
                     bool add_to_rin) const {
    const RuleKind kind = lin.rule.kind;
    const Index C = g.C;
    const T* a = A.data() + n * A.cols() + i0;
    T* const dst = Rin.data() + n * Rin.cols() + i0;
    T* rin = dst;  // the shares: written to Rin, or first to a row of this thread's when added
    static thread_local std::vector<T> shares;
    if (add_to_rin) {
      if (shares.size() < static_cast<std::size_t>(C)) shares.resize(static_cast<std::size_t>(C));
      rin = shares.data();
    }
    if (kind == RuleKind::WSquare) {
      for (Index c = 0; c < C; ++c) rin[c] = gv[c];
    } else if (signed_input) {
      for (Index c = 0; c < C; ++c) rin[c] = std::max(a[c], T(0)) * gv[c] + std::min(a[c], T(0)) * gv[C + c];
    } else if (kind == RuleKind::ZBox && zbox_folded) {
      for (Index c = 0; c < C; ++c) rin[c] = a[c] * gv[c] + gv[C + c];
    } else if (kind == RuleKind::ZBox) {
      const T* l = low.data() + i0;
      const T* h = high.data() + i0;
      for (Index c = 0; c < C; ++c) rin[c] = a[c] * gv[c] - l[c] * gv[C + c] - h[c] * gv[2 * C + c];
    } else {
      for (Index c = 0; c < C; ++c) rin[c] = a[c] * gv[c];
    }
    if (add_to_rin)
      for (Index c = 0; c < C; ++c) dst[c] += rin[c];
  }

  // Pointwise convolutions (1x1, stride 1, no padding) under Epsilon, ZPlus and AlphaBeta: input
  // pixel i takes relevance from output pixel i alone, so both stages run on one range of pixels
  // after the other, its rows of S kept in the caches instead of written out for all pixels
  // and read back (S has up to 4 times the input's values on ResNet-50's 1x1 layers;
  // bench/README.md, sixteenth session). Each row is the same chain as in the two-stage path
  // (the gather weight of a 1x1 kernel is its patch-space weight), so the bits are the same.
  void pointwise_backward(const ConstMatrixMap<T>& A, const ConstMatrixMap<T>& Z, const ConstMatrixMap<T>& R,
                          MatrixMap<T>& Rin, Index ncols, bool signed_input, bool add_to_rin, int threads) const {
    const Index P = g.pixels_out(), NP = A.rows() * P, o = cout, C = g.C;
    const RuleKind kind = lin.rule.kind;
    const GatherWeight<T>& G = signed_input ? gather_form(Form::GatherSigned) : two_weight() ? gather_form(Form::GatherUV) : gw;
    const T* M = patch_sum ? G.Mp.data() : G.M.data();  // (ncols, parts * C) either way for one tap
    const TwoWeightForms f = two_weight() ? two_weight_forms(signed_input) : TwoWeightForms{};
    const Index out = G.parts * C, nc = G.ncols;
    run_ranges(ranges_of(NP, range_pixels(g.K() + ncols + out), threads), threads, [&](Index q0, Index q1) {
      Workspace& tw = thread_workspace();
      const auto mark = tw.mark();
      const Index rows = q1 - q0;
      T* S = tw.take<T>(rows * ncols);
      if (kind == RuleKind::Epsilon) {
        for (Index r = 0; r < rows; ++r) {
          const Eigen::Map<const RowVector<T>> rr(R.data() + (q0 + r) * o, o), z(Z.data() + (q0 + r) * o, o);
          Eigen::Map<RowVector<T>> sr(S + r * ncols, o);
          stabilized_ratio(rr, z, T(lin.rule.epsilon), sr);
        }
      } else {
        two_weight_rows(A, Z, R, q0, q1, S, ncols, signed_input, f);
      }
      T* Gv = tw.take<T>(rows * out);
      gemm<T>(rows, out, nc, S, ncols, M, out, Gv, out);
      for (Index r = 0; r < rows; ++r)
        combine_pixel(A, Rin, (q0 + r) / P, ((q0 + r) % P) * C, Gv + r * out, signed_input, add_to_rin);
      tw.release(mark);
    });
  }

  // Flat: every c_ij is 1, so an output pixel's factors R_j / stab(d_j) enter only through their
  // sum s over its channels, and every channel of input pixel i receives the sum of s over the
  // output pixels whose windows hold i. Both sums run in the order the general path used (the
  // channels in ordered_sum's order; the taps (ky, kx) ascending, from zero): the same bits as
  // a gather product with a weight of ones, without its (pixels x window) matrix of copies of s
  // (2 % of a ResNet-50 explanation, bench/README.md, sixteenth session).
  void flat_backward(const ConstMatrixMap<T>& R, MatrixMap<T> Rin, Workspace& ws, int threads, bool add_to_rin) const {
    const Index N = R.rows(), P = g.pixels_out(), NP = N * P, o = cout, C = g.C;
    const auto mark = ws.mark();
    T* sums = ws.take<T>(NP);
    const T eps = T(lin.rule.stabilizer);
    parallel_ranges(NP, threads, [&](Index b, Index e) {
      std::vector<T> row(static_cast<std::size_t>(o));
      Eigen::Map<RowVector<T>> s(row.data(), o);
      for (Index r = b; r < e; ++r) {
        const Eigen::Map<const RowVector<T>> rr(R.data() + r * o, o), d(fixed.data() + (r % P) * o, o);
        stabilized_ratio(rr, d, eps, s);
        sums[r] = ordered_sum(row.data(), o);
      }
    });
    parallel_ranges(N * g.H, threads, [&](Index b, Index e) {
      for (Index q = b; q < e; ++q) {
        const Index n = q / g.H, iy = q % g.H;
        const T* sn = sums + n * P;
        T* rin = Rin.data() + n * Rin.cols() + iy * g.W * C;
        for (Index ix = 0; ix < g.W; ++ix) {
          T v = T(0);
          for (Index a = ytaps.begin[iy]; a < ytaps.begin[iy + 1]; ++a) {
            const T* sy = sn + ytaps.out[a] * g.Wo;
            for (Index t = xtaps.begin[ix]; t < xtaps.begin[ix + 1]; ++t) v += sy[xtaps.out[t]];
          }
          if (add_to_rin)
            for (Index c = 0; c < C; ++c) rin[ix * C + c] += v;
          else
            std::fill(rin + ix * C, rin + (ix + 1) * C, v);
        }
      }
    });
    ws.release(mark);
  }

  // Gamma's factors for one row of output pixels' channels (o of them), in place: on entry q
  // holds Q (see two_weight_factors), on exit S_1 (q) and S_2 (s2). The operations are
  // two_weight_ratio's, in the same order (the same bits), one pass in vectors (simd::Lanes;
  // the ratio is safe_ratio's, lane by lane).
  void gamma_factors_row(Index o, const T* z, const T* R, T* q, T* s2, T gm, T eps) const {
    const T g1 = T(1) + gm;
    const T *b = lin.b.data(), *bu = lin.bu.data(), *bv = lin.bv.data();
    using VT = simd::Lanes<T>;
    constexpr Index L = simd::kLanes<T>;
    auto ld = [](const T* p) { return simd::load_lanes(p); };
    const VT zero = VT{}, gv = zero + gm, g1v = zero + g1;
    Index j = 0;
    for (; j + L <= o; j += L) {
      const VT zj = ld(z + j), zb = zj - ld(b + j), qj = ld(q + j);
      const VT d1 = (zb + gv * qj) + ld(bu + j), d2 = (g1v * zb - gv * qj) + ld(bv + j);
      const VT rj = simd::safe_ratio_lanes(ld(R + j), zj > zero ? d1 : d2, eps);
      simd::store_lanes(q + j, zj > zero ? rj : zero);
      simd::store_lanes(s2 + j, zj < zero ? rj : zero);
    }
    for (; j < o; ++j) {
      const T zj = z[j], zb = zj - b[j], qj = q[j];
      const T rj = safe_ratio(R[j], zj > T(0) ? (zb + gm * qj) + bu[j] : (g1 * zb - gm * qj) + bv[j], eps);
      q[j] = zj > T(0) ? rj : T(0);
      s2[j] = zj < T(0) ? rj : T(0);
    }
  }

  // Bands of input rows for patch sums with PK patch-space columns: one band when a sample's G
  // fits in 8 MiB, otherwise bands whose output rows' G takes at most 4 MiB (at least one input
  // row each). Banding changes no value: every entry of G is the same chain in any band.
  std::vector<RowBand> patch_bands(Index PK) const {
    const Index row_bytes = g.Wo * PK * static_cast<Index>(sizeof(T));
    if (g.Ho * row_bytes <= (Index(8) << 20)) return {{0, g.H, 0, g.Ho}};
    const Index max_rows = std::max<Index>(1, (Index(4) << 20) / row_bytes);
    auto lo = [&](Index iy) {  // first output row of input row iy (g.Ho when it has no taps)
      Index v = g.Ho;
      for (Index a = ytaps.begin[iy]; a < ytaps.begin[iy + 1]; ++a) v = std::min(v, ytaps.out[a]);
      return v;
    };
    auto hi = [&](Index iy) {  // one past its last (0 when it has no taps)
      Index v = 0;
      for (Index a = ytaps.begin[iy]; a < ytaps.begin[iy + 1]; ++a) v = std::max(v, ytaps.out[a] + 1);
      return v;
    };
    std::vector<RowBand> bands;
    for (Index iy = 0; iy < g.H;) {
      Index o0 = lo(iy), o1 = hi(iy), e = iy + 1;
      for (; e < g.H; ++e) {
        const Index n0 = std::min(o0, lo(e)), n1 = std::max(o1, hi(e));
        if (n1 > n0 && n1 - n0 > max_rows) break;
        o0 = n0;
        o1 = n1;
      }
      if (o1 <= o0) o0 = o1 = 0;  // no taps at all
      bands.push_back({iy, e, o0, o1});
      iy = e;
    }
    return bands;
  }

  // S for ZPlus, AlphaBeta and Gamma, by ranges of output pixels (each needs its patches).
  // The weight forms of a two-weight rule's first products, made (once) before threads start.
  struct TwoWeightForms {
    bool stacked = false, uses_pair = false;
    const T *Wpt = nullptr, *UpUn = nullptr, *UVt = nullptr;
  };
  TwoWeightForms two_weight_forms(bool signed_input) const {
    const RuleKind kind = lin.rule.kind;
    const bool second = lin.needs_second_term();
    TwoWeightForms f;
    // Signed patches are split into [P^+ | P^-] per row. Gamma's Q and the first product of ZPlus
    // (and AlphaBeta without beta), P^+ (W^+)^T + P^- (W^-)^T, are then one product over 2K terms
    // with the stacked weight UpUn: the same chains as a product and a second one accumulated
    // onto it, with C written once (for narrow K, as in mobile networks' 1x1 convolutions, the
    // second pass over C cost as much as its arithmetic).
    f.stacked = signed_input && (kind == RuleKind::Gamma || !second);
    f.uses_pair = kind != RuleKind::Gamma && second;  // AlphaBeta with beta: [z1 | z2]
    f.Wpt = f.uses_pair || f.stacked ? nullptr : matrix_form(Form::Up).data();
    f.UpUn = f.stacked ? matrix_form(Form::UpUn).data() : nullptr;
    f.UVt = f.uses_pair ? matrix_form(Form::UVt).data() : nullptr;
    return f;
  }

  void two_weight_factors(const ConstMatrixMap<T>& A, const ConstMatrixMap<T>& Z, const ConstMatrixMap<T>& R,
                          MatrixMap<T>& S, bool signed_input, int threads) const {
    const TwoWeightForms f = two_weight_forms(signed_input);
    run_ranges(ranges_of(A.rows() * g.pixels_out(), range_pixels(2 * g.K()), threads), threads, [&](Index q0, Index q1) {
      two_weight_rows(A, Z, R, q0, q1, S.data() + q0 * S.cols(), S.cols(), signed_input, f);
    });
  }

  // Rows [q0, q1) of S (ncols columns, at Sq) for ZPlus, AlphaBeta and Gamma.
  void two_weight_rows(const ConstMatrixMap<T>& A, const ConstMatrixMap<T>& Z, const ConstMatrixMap<T>& R, Index q0,
                       Index q1, T* Sq, Index ncols, bool signed_input, const TwoWeightForms& f) const {
    const Index K = g.K(), o = cout;
    const RuleKind kind = lin.rule.kind;
    const bool second = lin.needs_second_term();
    const T gm = T(lin.rule.gamma);
    const bool stacked = f.stacked;
    const T *Wpt = f.Wpt, *UpUn = f.UpUn, *UVt = f.UVt;
    {
      Workspace& tw = thread_workspace();
      const auto mark = tw.mark();
      const Index rows = q1 - q0;
      const ConstMatrixMap<T> Rt(R.data() + q0 * o, rows, o), Zt(Z.data() + q0 * o, rows, o);
      MatrixMap<T> St(Sq, rows, ncols);
      const T* p = A.data() + q0 * K;  // pointwise: the input rows are the patches
      if (!pointwise()) {
        T* own = tw.take<T>(rows * K);
        im2col(A.data(), g, q0, q1, own);
        p = own;
      }
      const T* pn = nullptr;  // the negative parts of signed patches
      Index ldp = K;
      if (signed_input) {  // row r: [p^+ | p^-]
        T* pp = tw.take<T>(rows * 2 * K);
        for (Index r = 0; r < rows; ++r) {
          const T* src = p + r * K;
          T* pos = pp + r * 2 * K;
          T* neg = pos + K;
          for (Index k = 0; k < K; ++k) {
            pos[k] = std::max(src[k], T(0));
            neg[k] = std::min(src[k], T(0));
          }
        }
        p = pp;
        pn = pp + K;
        ldp = 2 * K;
      }
      if (kind == RuleKind::Gamma) {
        // Q = sum_i a_i^+ w_ij^+ + a_i^- w_ij^-; with z - b = sum_i a_i w_ij (the forward
        // output without its bias): z1 = P (W + g W^+)^T = z - b + g Q and
        // z2 = P (W + g W^-)^T = (1+g)(z - b) - g Q, both at least |z - b| from zero.
        auto S1 = St.leftCols(o);
        auto S2 = St.rightCols(o);
        if (stacked)
          gemm<T>(rows, o, 2 * K, p, ldp, UpUn, o, S1.data(), ncols);
        else
          gemm<T>(rows, o, K, p, K, Wpt, o, S1.data(), ncols);
        // Then two_weight_ratio's Gamma steps, row by row in one pass while the row is in L1
        // (the same operations in the same order, so the same bits): d = z1 or z2 plus its
        // bias, S = R / stab(d), kept where the sign of z picks that variant.
        for (Index r = 0; r < rows; ++r)
          gamma_factors_row(o, Zt.data() + r * o, Rt.data() + r * o, S1.data() + r * ncols, S2.data() + r * ncols,
                            gm, T(lin.rule.stabilizer));
      } else if (stacked) {
        // ZPlus, AlphaBeta with beta = 0 on signed patches: z1 = P+ U^T + P- V^T only (the same
        // chains as the first half of the two-term products below)
        gemm<T>(rows, o, 2 * K, p, ldp, UpUn, o, St.data(), ncols);
      } else if (second) {
        // [z1 | z2] = P+ [U; V]^T + P- [V; U]^T. AlphaBeta's z2 gets its own product: as
        // z - b - z1 it would lose its digits whenever the negative part is small next to z1.
        gemm<T>(rows, 2 * o, K, p, ldp, UVt, 2 * o, St.data(), ncols);
        if (pn) {
          gemm<T>(rows, o, K, pn, ldp, UVt + o, 2 * o, St.data(), ncols, true);
          gemm<T>(rows, o, K, pn, ldp, UVt, 2 * o, St.data() + o, ncols, true);
        }
      } else {  // ZPlus, AlphaBeta with beta = 0 on inputs without negatives: z1 = P (W^+)^T
        gemm<T>(rows, o, K, p, K, Wpt, o, St.data(), ncols);
      }
      if (kind != RuleKind::Gamma) {  // Gamma's factors were made above, row by row
        two_weight_ratio<T>(lin.rule, St, Rt, Zt, lin.bu, lin.bv, second);  // ncols == o implies !second
        if (ncols == 2 * o && !second) St.rightCols(o).setZero();
      }
      tw.release(mark);
    }
  }
};

}  // namespace kernels
}  // namespace FASTLRP_ISA_NS
}  // namespace fastlrp
