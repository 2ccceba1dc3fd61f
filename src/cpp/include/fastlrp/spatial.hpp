// Geometry of sliding windows over NHWC images, the patches of a convolution's forward product
// (im2col) and of its backward product (gather_block), and the ranges that spread them over
// threads.
//
// Images are stored channels-last, one sample per row of an (N, H*W*C) matrix: every pixel's
// channels are a row of an (N*H*W, C) matrix, so a convolution is one GEMM per range of output
// pixels forward and one per range of input pixels backward.
#pragma once

#include "fastlrp/isa.hpp"

#include <algorithm>
#include <cstring>
#include <exception>
#include <mutex>
#include <utility>
#include <vector>

#include "fastlrp/common.hpp"
#include "fastlrp/simd.hpp"

namespace fastlrp {
inline namespace FASTLRP_ISA_NS {
namespace kernels {

struct Geometry {
  Index C = 0, H = 0, W = 0;                      // input channels, height, width
  Index kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
  // zeros after the image (bottom, right); -1: as many as before (ph, pw). Only the output size
  // depends on them: every kernel reads input (oy sh - ph + ky dh, ...) and treats what falls
  // outside the image as a zero.
  Index ph_end = -1, pw_end = -1;
  Index Ho = 0, Wo = 0;                            // output height, width

  void finish() {
    if (ph_end < 0) ph_end = ph;
    if (pw_end < 0) pw_end = pw;
    Ho = (H + ph + ph_end - dh * (kh - 1) - 1) / sh + 1;
    Wo = (W + pw + pw_end - dw * (kw - 1) - 1) / sw + 1;
    if (C <= 0 || H <= 0 || W <= 0 || kh <= 0 || kw <= 0 || sh <= 0 || sw <= 0 || dh <= 0 || dw <= 0 || ph < 0 ||
        pw < 0 || H + ph + ph_end < dh * (kh - 1) + 1 || W + pw + pw_end < dw * (kw - 1) + 1 || Ho <= 0 || Wo <= 0)
      throw std::invalid_argument("invalid window geometry");
  }
  Index in_size() const { return H * W * C; }
  Index pixels_out() const { return Ho * Wo; }
  Index K() const { return kh * kw * C; }  // patch length, ordered (ky, kx, c)
};

// dst[0:n] = src[0:n]: whole vectors, then the rest one by one (im2col's runs are a kernel
// row, 5 to a few hundred values: a memmove call per run cost more than the copy).
template <class T>
inline void copy_run(const T* src, Index n, T* dst) {
  using V = simd::Vec<T>;
  Index i = 0;
  for (; i + V::W <= n; i += V::W) V::store(dst + i, V::load(src + i));
  for (; i < n; ++i) dst[i] = src[i];
}

// im2col (below) for kernel rows of L = kw * C values that are not whole vectors (first layers:
// 5 values for a 5x5 kernel on one channel, 9 for 3x3 on RGB), which a copy loop would move one
// by one. For each output row, the kh input rows its windows read are first copied into
// zero-padded rows (padding reads zeros, and whole vectors never read past them); then every
// kernel row is copied in whole vectors, which may write up to W - 1 values past its run. Runs
// are written in increasing address order (pixel by pixel, ky within a pixel), so whatever an
// overrun wrote is overwritten by the run it fell into; a run whose vectors would pass the end of
// P is copied exactly.
template <class T>
void im2col_short_runs(const T* x, const Geometry& g, Index q0, Index q1, T* P) {
  using V = simd::Vec<T>;
  const Index C = g.C, K = g.K(), per = g.pixels_out(), L = g.kw * C, nv = (L + V::W - 1) / V::W;
  const Index padded = (g.pw + g.W + g.pw_end) * C + V::W;  // a row's values, its padding, one vector
  thread_local std::vector<T> rows;
  rows.assign(static_cast<std::size_t>(g.kh * padded), T(0));
  std::vector<char> inside(static_cast<std::size_t>(g.kh));
  T* const end = P + (q1 - q0) * K;
  for (Index q = q0; q < q1;) {
    const Index n = q / per, oy = (q % per) / g.Wo, ox0 = q % g.Wo, ox1 = std::min(g.Wo, ox0 + (q1 - q));
    const T* a = x + n * g.in_size();
    for (Index ky = 0; ky < g.kh; ++ky) {
      const Index iy = oy * g.sh - g.ph + ky * g.dh;
      inside[ky] = iy >= 0 && iy < g.H;
      if (inside[ky]) copy_run(a + iy * g.W * C, g.W * C, rows.data() + ky * padded + g.pw * C);  // margins stay 0
    }
    for (Index ox = ox0; ox < ox1; ++ox) {
      T* dst = P + (q - q0 + ox - ox0) * K;
      for (Index ky = 0; ky < g.kh; ++ky, dst += L) {
        if (!inside[ky]) {
          std::fill(dst, dst + L, T(0));
          continue;
        }
        const T* src = rows.data() + ky * padded + ox * g.sw * C;  // input column ox * sw - pw, padded
        if (dst + nv * V::W <= end) {
          for (Index v = 0; v < nv; ++v) V::store(dst + v * V::W, V::load(src + v * V::W));
        } else {
          copy_run(src, L, dst);
        }
      }
    }
    q += ox1 - ox0;
  }
}

// Patches of a flat range of output pixels [q0, q1) over a batch (pixel q = n * Ho * Wo +
// oy * Wo + ox), for the forward product: P (q1 - q0, K) row-major, K ordered (ky, kx, c), or,
// transposed, PT (K, q1 - q0) with row stride ld. Padding contributes zeros.
template <class T, bool Transposed = false>
void im2col(const T* x, const Geometry& g, Index q0, Index q1, T* P, Index ld = 0) {
  const Index C = g.C, K = g.K(), per = g.pixels_out();
  if (Transposed && C == 1 && g.sw == 1 && g.dw == 1) {
    // one channel, unit x stride and dilation (a first layer on grey images): each row of PT is
    // runs of consecutive image values, one per output row
    for (Index q = q0; q < q1;) {
      const Index n = q / per, oy = (q % per) / g.Wo, ox0 = q % g.Wo, ox1 = std::min(g.Wo, ox0 + (q1 - q));
      const T* a = x + n * g.in_size();
      for (Index ky = 0; ky < g.kh; ++ky) {
        const Index iy = oy * g.sh - g.ph + ky * g.dh;
        for (Index kx = 0; kx < g.kw; ++kx) {
          T* row = P + (ky * g.kw + kx) * ld + (q - q0);
          for (Index ox = ox0; ox < ox1; ++ox) {
            const Index ix = ox - g.pw + kx;
            row[ox - ox0] = (iy >= 0 && iy < g.H && ix >= 0 && ix < g.W) ? a[iy * g.W + ix] : T(0);
          }
        }
      }
      q += ox1 - ox0;
    }
    return;
  }
  if constexpr (!Transposed) {
    if (g.dw == 1 && (g.kw * C) % simd::Vec<T>::W != 0) {
      im2col_short_runs(x, g, q0, q1, P);
      return;
    }
  }
  for (Index q = q0; q < q1; ++q) {
    const Index n = q / per, oy = (q % per) / g.Wo, ox = q % g.Wo, r = q - q0;
    const T* a = x + n * g.in_size();
    for (Index ky = 0; ky < g.kh; ++ky) {
      const Index iy = oy * g.sh - g.ph + ky * g.dh;
      for (Index kx = 0; kx < g.kw; ++kx) {
        const Index ix = ox * g.sw - g.pw + kx * g.dw, k0 = (ky * g.kw + kx) * C;
        const bool inside = iy >= 0 && iy < g.H && ix >= 0 && ix < g.W;
        const T* src = a + (iy * g.W + ix) * C;
        if constexpr (Transposed) {
          for (Index c = 0; c < C; ++c) P[(k0 + c) * ld + r] = inside ? src[c] : T(0);
        } else if (inside && kx == 0 && g.dw == 1 && ix + g.kw <= g.W) {  // the kernel row in one run
          copy_run(src, g.kw * C, P + r * K + k0);
          break;
        } else if (inside) {
          copy_run(src, C, P + r * K + k0);
        } else {
          std::fill(P + r * K + k0, P + r * K + k0 + C, T(0));
        }
      }
    }
  }
}

// The backward product as a gather. Input pixel (iy, ix) receives from output pixel (oy, ox)
// through tap (ky, kx) when iy + ph - ky dh = oy sh and ix + pw - kx dw = ox sw; each input pixel
// gathers the rows of S (one per output pixel) of its taps, in the order (ky, kx), and one GEMM
// chain over them gives its relevance factors: no scatter, no two threads writing one value,
// the same order for every pixel. A tap that reaches no output (padding, between the steps of
// a stride) would add an exact zero; pixels are grouped by the taps they do have, so that
// those zeros are skipped instead of multiplied, which changes no bit.

// The positions along one axis (iy, or ix) grouped by their list of valid taps (ky, or kx).
struct TapClass {
  std::vector<Index> pos;   // input rows (or columns) of the class, ascending
  std::vector<Index> taps;  // their valid taps, ascending
  std::vector<Index> outs;  // per pos and tap: the output row (or column) reached
};

inline std::vector<TapClass> tap_classes(Index size, Index k, Index stride, Index pad, Index dil, Index out) {
  std::vector<TapClass> classes;
  for (Index i = 0; i < size; ++i) {
    std::vector<Index> taps, outs;
    for (Index t = 0; t < k; ++t) {
      const Index u = i + pad - t * dil;
      if (u >= 0 && u % stride == 0 && u / stride < out) {
        taps.push_back(t);
        outs.push_back(u / stride);
      }
    }
    auto it = std::find_if(classes.begin(), classes.end(), [&](const TapClass& c) { return c.taps == taps; });
    if (it == classes.end()) {
      classes.push_back({{}, taps, {}});
      it = classes.end() - 1;
    }
    it->pos.push_back(i);
    it->outs.insert(it->outs.end(), outs.begin(), outs.end());
  }
  return classes;
}

// Per input row (or column) i: its valid taps tap[begin[i] .. begin[i+1]) (ascending) and the
// output row (or column) out[...] each reaches.
struct AxisTaps {
  std::vector<Index> begin, tap, out;
};

inline AxisTaps axis_taps(Index size, Index k, Index stride, Index pad, Index dil, Index outs) {
  AxisTaps a;
  for (Index i = 0; i < size; ++i) {
    a.begin.push_back(static_cast<Index>(a.tap.size()));
    for (Index t = 0; t < k; ++t) {
      const Index u = i + pad - t * dil;
      if (u >= 0 && u % stride == 0 && u / stride < outs) {
        a.tap.push_back(t);
        a.out.push_back(u / stride);
      }
    }
  }
  a.begin.push_back(static_cast<Index>(a.tap.size()));
  return a;
}

// One block of a gather: pixels [r0, r1) of the product of a row class and a column class, in
// sample n (pixel r -> row class position r / |cols|, column class position r % |cols|).
struct GatherBlock {
  Index n, yc, xc, r0, r1;
};

// Pg (r1 - r0, |ky| |kx| ncols) row-major: for each pixel of the block, the S rows (row stride
// sld, first ncols columns) of its taps in the order (ky, kx, column).
template <class T>
void gather_block(const T* S, Index sld, Index ncols, const Geometry& g, const TapClass& yc, const TapClass& xc,
                  const GatherBlock& b, T* Pg) {
  const Index ny = static_cast<Index>(yc.taps.size()), nx = static_cast<Index>(xc.taps.size());
  const Index L = ny * nx * ncols, cols = static_cast<Index>(xc.pos.size());
  const T* s = S + b.n * g.pixels_out() * sld;
  for (Index r = b.r0; r < b.r1; ++r) {
    const Index py = r / cols, px = r % cols, row = r - b.r0;
    for (Index a = 0; a < ny; ++a) {
      const Index oy = yc.outs[py * ny + a];
      for (Index c = 0; c < nx; ++c) {
        const T* src = s + (oy * g.Wo + xc.outs[px * nx + c]) * sld;
        copy_run(src, ncols, Pg + row * L + (a * nx + c) * ncols);
      }
    }
  }
}

// [0, total) cut into ranges of about `target` (at least enough for every thread twice).
inline std::vector<std::pair<Index, Index>> ranges_of(Index total, Index target, int threads) {
  target = std::max<Index>(1, std::min(target, (total + 2 * threads - 1) / (2 * threads)));
  std::vector<std::pair<Index, Index>> r;
  for (Index b = 0; b < total; b += target) r.emplace_back(b, std::min(total, b + target));
  return r;
}

// Runs f(begin, end) over the ranges on `threads` threads.
template <class F>
void run_ranges(const std::vector<std::pair<Index, Index>>& ranges, int threads, F&& f) {
  std::exception_ptr error;
  std::mutex m;
  const Index count = static_cast<Index>(ranges.size());
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1 && count > 1)
  for (Index t = 0; t < count; ++t) {
    try {
      f(ranges[t].first, ranges[t].second);
    } catch (...) {
      std::lock_guard<std::mutex> g(m);
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

// Runs f(begin, end) over [0, total) cut into one range per thread.
template <class F>
void parallel_ranges(Index total, int threads, F&& f) {
  const Index parts = std::max<Index>(1, std::min<Index>(threads, total / 4096));
  if (parts <= 1) {
    f(Index(0), total);
    return;
  }
#pragma omp parallel for num_threads(static_cast<int>(parts)) schedule(static, 1)
  for (Index p = 0; p < parts; ++p) f(total * p / parts, total * (p + 1) / parts);
}

// Runs f(row, first_column, length) over an (N, I) row-major array cut into one flat range per
// thread, so that a batch of one large image is shared too.
template <class F>
void for_segments(Index N, Index I, int threads, F&& f) {
  parallel_ranges(N * I, threads, [&](Index b, Index e) {
    for (Index n = b / I; n < N && n * I < e; ++n) {
      const Index c0 = std::max(b, n * I) - n * I, c1 = std::min(e, (n + 1) * I) - n * I;
      if (c1 > c0) f(n, c0, c1 - c0);
    }
  });
}

template <class T>
void fill_zero(T* p, Index count, int threads) {
  parallel_ranges(count, threads, [&](Index b, Index e) { std::fill(p + b, p + e, T(0)); });
}

}  // namespace kernels
}  // namespace FASTLRP_ISA_NS
}  // namespace fastlrp
