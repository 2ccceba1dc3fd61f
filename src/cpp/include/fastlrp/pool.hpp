// Pooling layers over NHWC images: average-type pools (AvgPool2d, SumPool2d,
// AdaptiveAvgPool2d) as fixed-weight linear maps under any LRP rule, and MaxPool2d with its
// winner-take-all or proportional ("avg") relevance.
//
// Channels never mix in a pool, so the work is split over samples or channel blocks and no
// two threads ever write the same relevance.
#pragma once

#include "fastlrp/isa.hpp"

#include <vector>

#include "fastlrp/common.hpp"
#include "fastlrp/dense.hpp"
#include "fastlrp/rules.hpp"
#include "fastlrp/spatial.hpp"

namespace fastlrp {
inline namespace FASTLRP_ISA_NS {
namespace kernels {

template <class T>
struct Pool2d {
  Index C = 0, H = 0, W = 0, Ho = 0, Wo = 0;
  std::vector<Index> ylo, yhi, xlo, xhi;  // in-bounds input window of each output row / column
  std::vector<T> weight;                  // per output pixel: the linear pool's weight
  bool is_max = false;
  bool max_proportional = false;          // MaxPool2d(mode="avg")
  bool tiles_exactly = false;             // every input element in exactly one window
  RuleParams rule;

  Index in_size() const { return H * W * C; }
  Index out_size() const { return Ho * Wo * C; }
  Index count(Index oy, Index ox) const { return (yhi[oy] - ylo[oy]) * (xhi[ox] - xlo[ox]); }

  using Vec = Eigen::Array<T, Eigen::Dynamic, 1>;
  using VecMap = Eigen::Map<Vec>;
  using ConstVecMap = Eigen::Map<const Vec>;

  // f(n, c0, cb) over every sample and channel block, split over threads.
  template <class F>
  void for_blocks(Index N, int threads, F&& f) const {
    const Index blocks = (N >= threads || C < 32) ? 1 : std::min<Index>(threads, C / 16);
    const Index jobs = N * blocks;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && jobs > 1)
    for (Index j = 0; j < jobs; ++j) {
      const Index n = j / blocks, b = j % blocks;
      const Index c0 = C * b / blocks, c1 = C * (b + 1) / blocks;
      f(n, c0, c1 - c0);
    }
  }

  // The hot loops run over one pixel's channels with plain pointers: a window holds only a few
  // short channel vectors, and Eigen expressions over them cost more than the arithmetic.
  void forward(const ConstMatrixMap<T>& A, MatrixMap<T> Z, int threads) const {
    for_blocks(A.rows(), threads, [&](Index n, Index c0, Index cb) {
      const T* a = A.row(n).data();
      T* z = Z.row(n).data();
      for (Index oy = 0; oy < Ho; ++oy)
        for (Index ox = 0; ox < Wo; ++ox) {
          T* out = z + (oy * Wo + ox) * C + c0;
          bool first = true;
          for (Index iy = ylo[oy]; iy < yhi[oy]; ++iy)
            for (Index ix = xlo[ox]; ix < xhi[ox]; ++ix) {
              const T* v = a + (iy * W + ix) * C + c0;
              if (first)
                for (Index c = 0; c < cb; ++c) out[c] = v[c];
              else if (is_max)
                for (Index c = 0; c < cb; ++c) out[c] = std::max(out[c], v[c]);
              else
                for (Index c = 0; c < cb; ++c) out[c] += v[c];
              first = false;
            }
          if (!is_max) {
            const T w = weight[oy * Wo + ox];
            for (Index c = 0; c < cb; ++c) out[c] *= w;
          }
        }
    });
  }

  void backward(const ConstMatrixMap<T>& A, const ConstMatrixMap<T>& Z, const ConstMatrixMap<T>& R, MatrixMap<T> Rin,
                int threads) const {
    // Windows that tile the input exactly (stride = kernel, no remainder) write each input's
    // relevance once (put: =); otherwise Rin is cleared first and windows add up (put: +=).
    if (!tiles_exactly) fill_zero(Rin.data(), Rin.size(), threads);
    auto put = [this](auto&& out, const auto& e) {
      if (tiles_exactly)
        out = e;
      else
        out += e;
    };
    const T eps_s = T(rule.stabilizer);
    for_blocks(A.rows(), threads, [&](Index n, Index c0, Index cb) {
      const T* a = A.row(n).data();
      T* rin = Rin.row(n).data();
      Vec s1(cb), s2(cb), zsum(cb), zneg(cb);
      for (Index oy = 0; oy < Ho; ++oy)
        for (Index ox = 0; ox < Wo; ++ox) {
          const Index j = (oy * Wo + ox) * C + c0;
          ConstVecMap r(R.row(n).data() + j, cb), z(Z.row(n).data() + j, cb);
          auto window = [&](auto&& g) {
            for (Index iy = ylo[oy]; iy < yhi[oy]; ++iy)
              for (Index ix = xlo[ox]; ix < xhi[ox]; ++ix) {
                const Index i = (iy * W + ix) * C + c0;
                g(ConstVecMap(a + i, cb), VecMap(rin + i, cb), i);
              }
          };
          const bool winner = is_max && !max_proportional && rule.kind != RuleKind::Flat && rule.kind != RuleKind::WSquare;
          if (winner || (!is_max && rule.kind == RuleKind::Epsilon)) {  // the common cases, on pointers
            const T* rp = R.row(n).data() + j;
            const T* zp = Z.row(n).data() + j;
            T* sp = s1.data();
            if (winner) {  // ties split evenly: count the maxima, then share
              for (Index c = 0; c < cb; ++c) sp[c] = T(0);
              for (Index iy = ylo[oy]; iy < yhi[oy]; ++iy)
                for (Index ix = xlo[ox]; ix < xhi[ox]; ++ix) {
                  const T* v = a + (iy * W + ix) * C + c0;
                  for (Index c = 0; c < cb; ++c) sp[c] += v[c] == zp[c] ? T(1) : T(0);
                }
              for (Index c = 0; c < cb; ++c) sp[c] = rp[c] / sp[c];
            } else {  // R_i = a_i w R_j / stab(z_j)
              const T w = weight[oy * Wo + ox], eps = T(rule.epsilon);
              for (Index c = 0; c < cb; ++c) {
                const T d = zp[c] >= T(0) ? zp[c] + eps : zp[c] - eps;
                sp[c] = d == T(0) ? T(0) : w * (rp[c] / d);
              }
            }
            for (Index iy = ylo[oy]; iy < yhi[oy]; ++iy)
              for (Index ix = xlo[ox]; ix < xhi[ox]; ++ix) {
                const T* v = a + (iy * W + ix) * C + c0;
                T* o = rin + (iy * W + ix) * C + c0;
                if (winner && tiles_exactly)
                  for (Index c = 0; c < cb; ++c) o[c] = v[c] == zp[c] ? sp[c] : T(0);
                else if (winner)
                  for (Index c = 0; c < cb; ++c) o[c] += v[c] == zp[c] ? sp[c] : T(0);
                else if (tiles_exactly)
                  for (Index c = 0; c < cb; ++c) o[c] = v[c] * sp[c];
                else
                  for (Index c = 0; c < cb; ++c) o[c] += v[c] * sp[c];
              }
            continue;
          }
          // MaxPool under Flat / WSquare (the toolbox's 'flat' and 'ww') spreads uniformly over
          // the window: the linear Flat branch below with weight 1.
          if (is_max && rule.kind != RuleKind::Flat && rule.kind != RuleKind::WSquare) {
            if (max_proportional) {  // R_i = a_i R_j / stab(sum of the window)
              zsum.setZero();
              window([&](auto v, auto, Index) { zsum += v; });
              stabilized_ratio(r, zsum, eps_s, s1);
              window([&](auto v, auto out, Index) { put(out, v * s1); });
            } else {  // winner takes all, ties split evenly
              zsum.setZero();
              window([&](auto v, auto, Index) { zsum += (v == z).template cast<T>(); });
              s1 = r / zsum;
              window([&](auto v, auto out, Index) { put(out, (v == z).select(s1, T(0))); });
            }
            continue;
          }
          const T w = is_max ? T(1) : weight[oy * Wo + ox];
          switch (rule.kind) {
            case RuleKind::Epsilon:
              stabilized_ratio(r, z, T(rule.epsilon), s1);
              s1 *= w;
              window([&](auto v, auto out, Index) { put(out, v * s1); });
              break;
            case RuleKind::ZPlus:
            case RuleKind::AlphaBeta: {
              zsum.setZero();
              zneg.setZero();
              window([&](auto v, auto, Index) {
                zsum += v.max(T(0));
                zneg += v.min(T(0));
              });
              const T alpha = rule.kind == RuleKind::ZPlus ? T(1) : T(rule.alpha);
              const T beta = rule.kind == RuleKind::ZPlus ? T(0) : T(rule.beta);
              stabilized_ratio(r, zsum * w, eps_s, s1);
              stabilized_ratio(r, zneg * w, eps_s, s2);
              s1 *= alpha * w;
              s2 *= -beta * w;
              window([&](auto v, auto out, Index) { put(out, v.max(T(0)) * s1 + v.min(T(0)) * s2); });
              break;
            }
            case RuleKind::Gamma: {
              const T g1 = T(1) + T(rule.gamma);
              zsum.setZero();
              zneg.setZero();
              window([&](auto v, auto, Index) {
                zsum += v.max(T(0));
                zneg += v.min(T(0));
              });
              // z > 0: c = w((1+g) a^+ + a^-); z < 0: c = w(a^+ + (1+g) a^-)
              stabilized_ratio(r, w * (g1 * zsum + zneg), eps_s, s1);
              stabilized_ratio(r, w * (zsum + g1 * zneg), eps_s, s2);
              s1 = (z > T(0)).select(s1 * w, T(0));
              s2 = (z < T(0)).select(s2 * w, T(0));
              window([&](auto v, auto out, Index) {
                put(out, (g1 * v.max(T(0)) + v.min(T(0))) * s1 + (v.max(T(0)) + g1 * v.min(T(0))) * s2);
              });
              break;
            }
            case RuleKind::ZBox: {
              zsum.setZero();
              window([&](auto v, auto, Index i) { zsum += v - ConstVecMap(low.data() + i, cb); });
              stabilized_ratio(r, zsum * w, eps_s, s1);
              s1 *= w;
              window([&](auto v, auto out, Index i) { put(out, (v - ConstVecMap(low.data() + i, cb)) * s1); });
              break;
            }
            case RuleKind::WSquare:
            case RuleKind::Flat: {
              const T c = rule.kind == RuleKind::Flat ? T(1) : w * w;
              zsum.setConstant(c * T(count(oy, ox)));
              stabilized_ratio(r, zsum, eps_s, s1);
              s1 *= c;
              window([&](auto, auto out, Index) { put(out, s1); });
              break;
            }
            case RuleKind::Pass:
              throw std::invalid_argument("Pass cannot be applied to a pooling layer");
          }
        }
    });
  }

  std::vector<T> low;  // ZBox: lower bounds over the input image (H*W*C); high is unused (w > 0)

  // kind: 0 AvgPool2d, 1 SumPool2d (window sum / sqrt(kh*kw)), 2 MaxPool2d, 3 AdaptiveAvgPool2d
  // (kh, kw are then the output size).
  // ceil_mode (torch's): the output size rounds up, keeping only windows that start inside the
  // input or its left padding; a window past the padded input counts, for AvgPool2d with
  // count_include_pad, only its part inside the padded input.
  static Pool2d make(int kind, Index C, Index H, Index W, Index kh, Index kw, Index sh, Index sw, Index ph, Index pw,
                     bool count_include_pad, bool max_proportional, RuleParams rule, std::vector<T> low,
                     bool ceil_mode = false) {
    Pool2d p;
    p.C = C;
    p.H = H;
    p.W = W;
    p.is_max = kind == 2;
    p.max_proportional = max_proportional;
    p.rule = rule;
    p.low = std::move(low);
    if (C <= 0 || H <= 0 || W <= 0 || kh <= 0 || kw <= 0) throw std::invalid_argument("invalid pooling geometry");
    auto axis = [&](Index n_in, Index k, Index s, Index pad, bool adaptive, std::vector<Index>& lo, std::vector<Index>& hi) {
      if (!adaptive && (s <= 0 || pad < 0 || 2 * pad > k || n_in + 2 * pad < k))
        throw std::invalid_argument("invalid pooling geometry");
      Index n_out = adaptive ? k : (n_in + 2 * pad - k) / s + 1;
      if (!adaptive && ceil_mode) {
        n_out = (n_in + 2 * pad - k + s - 1) / s + 1;
        if ((n_out - 1) * s >= n_in + pad) --n_out;  // the last window must start inside
      }
      if (n_out <= 0) throw std::invalid_argument("invalid pooling geometry");
      for (Index o = 0; o < n_out; ++o) {
        Index a, b;
        if (adaptive) {
          a = (o * n_in) / n_out;
          b = ((o + 1) * n_in + n_out - 1) / n_out;
        } else {
          a = o * s - pad;
          b = a + k;
        }
        lo.push_back(std::max<Index>(a, 0));
        hi.push_back(std::min<Index>(b, n_in));
      }
      return n_out;
    };
    p.Ho = axis(H, kh, sh, ph, kind == 3, p.ylo, p.yhi);
    p.Wo = axis(W, kw, sw, pw, kind == 3, p.xlo, p.xhi);
    auto tiles = [](const std::vector<Index>& lo, const std::vector<Index>& hi, Index n_in) {
      Index next = 0;
      for (size_t o = 0; o < lo.size(); ++o) {
        if (lo[o] != next) return false;
        next = hi[o];
      }
      return next == n_in;
    };
    p.tiles_exactly = tiles(p.ylo, p.yhi, H) && tiles(p.xlo, p.xhi, W);
    p.weight.resize(p.Ho * p.Wo);
    for (Index oy = 0; oy < p.Ho; ++oy)
      for (Index ox = 0; ox < p.Wo; ++ox) {
        const Index cnt = p.count(oy, ox);
        if (cnt <= 0) throw std::invalid_argument("a pooling window lies entirely in the padding");
        T w = T(1) / T(cnt);
        if (kind == 0 && count_include_pad) {  // the window's extent inside the padded input
          const Index y0 = oy * sh - ph, x0 = ox * sw - pw;
          w = T(1) / T((std::min(y0 + kh, H + ph) - y0) * (std::min(x0 + kw, W + pw) - x0));
        }
        if (kind == 1) w = T(1) / std::sqrt(T(kh * kw));
        p.weight[oy * p.Wo + ox] = w;
      }
    if (rule.kind == RuleKind::ZBox && static_cast<Index>(p.low.size()) != p.in_size())
      throw std::invalid_argument("ZBox bounds must cover the pool's input image");
    return p;
  }
};

}  // namespace kernels
}  // namespace FASTLRP_ISA_NS
}  // namespace fastlrp
