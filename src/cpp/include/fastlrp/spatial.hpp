// Geometry of sliding windows over NHWC images, the patches of a convolution's forward product
// (im2col) and of its backward product (gather_rows), and the ranges that spread them over
// threads.
//
// Images are stored channels-last, one sample per row of an (N, H*W*C) matrix: every pixel's
// channels are a row of an (N*H*W, C) matrix, so a convolution is one GEMM per range of output
// pixels forward and one per range of input pixels backward.
#pragma once

#include <algorithm>
#include <cstring>
#include <exception>
#include <mutex>
#include <utility>
#include <vector>

#include "fastlrp/common.hpp"

namespace fastlrp::kernels {

struct Geometry {
  Index C = 0, H = 0, W = 0;                      // input channels, height, width
  Index kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
  Index Ho = 0, Wo = 0;                            // output height, width

  void finish() {
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) / sh + 1;
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
    if (C <= 0 || H <= 0 || W <= 0 || kh <= 0 || kw <= 0 || sh <= 0 || sw <= 0 || dh <= 0 || dw <= 0 || ph < 0 ||
        pw < 0 || Ho <= 0 || Wo <= 0)
      throw std::invalid_argument("invalid window geometry");
  }
  Index in_size() const { return H * W * C; }
  Index pixels_out() const { return Ho * Wo; }
  Index K() const { return kh * kw * C; }  // patch length, ordered (ky, kx, c)
};

// Patches of a flat range of output pixels [q0, q1) over a batch (pixel q = n * Ho * Wo +
// oy * Wo + ox), for the forward product: P (q1 - q0, K) row-major, K ordered (ky, kx, c), or,
// transposed, PT (K, q1 - q0) with row stride ld. Padding contributes zeros.
template <class T, bool Transposed = false>
void im2col(const T* x, const Geometry& g, Index q0, Index q1, T* P, Index ld = 0) {
  const Index C = g.C, K = g.K(), per = g.pixels_out();
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
        } else if (inside) {
          std::memcpy(P + r * K + k0, src, sizeof(T) * C);
        } else {
          std::fill(P + r * K + k0, P + r * K + k0 + C, T(0));
        }
      }
    }
  }
}

// The backward product as a gather: for a flat range of input pixels [p0, p1), the rows of S
// (N * Ho * Wo, ncols of a row stride sld; one per output pixel) that each tap (ky, kx) of the kernel connects to
// the pixel, zeros where the tap reaches no output (padding, or between the steps of a
// stride). Pg (p1 - p0, taps * ncols) row-major, ordered (ky, kx, column), or transposed,
// PgT (taps * ncols, p1 - p0) with row stride ld. Times a gather weight (conv.hpp) this gives
// each input pixel its relevance as one chain over (ky, kx, column): no scatter, no two
// threads writing one value, the same order for every pixel.
template <class T, bool Transposed = false>
void gather_rows(const T* S, Index sld, Index ncols, const Geometry& g, Index p0, Index p1, T* Pg, Index ld = 0) {
  const Index per = g.H * g.W, taps = g.kh * g.kw, L = taps * ncols;
  for (Index p = p0; p < p1; ++p) {
    const Index n = p / per, iy = (p % per) / g.W, ix = p % g.W, r = p - p0;
    const T* s = S + n * g.pixels_out() * sld;
    for (Index ky = 0; ky < g.kh; ++ky) {
      const Index ty = iy + g.ph - ky * g.dh, oy = ty / g.sh;
      const bool yin = ty >= 0 && ty % g.sh == 0 && oy < g.Ho;
      for (Index kx = 0; kx < g.kw; ++kx) {
        const Index tx = ix + g.pw - kx * g.dw, ox = tx / g.sw, k0 = (ky * g.kw + kx) * ncols;
        const bool inside = yin && tx >= 0 && tx % g.sw == 0 && ox < g.Wo;
        const T* src = s + (oy * g.Wo + ox) * sld;
        if constexpr (Transposed) {
          for (Index c = 0; c < ncols; ++c) Pg[(k0 + c) * ld + r] = inside ? src[c] : T(0);
        } else if (inside) {
          std::memcpy(Pg + r * L + k0, src, sizeof(T) * ncols);
        } else {
          std::fill(Pg + r * L + k0, Pg + r * L + k0 + ncols, T(0));
        }
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

}  // namespace fastlrp::kernels
