// Geometry of sliding windows over NHWC images, im2col/col2im, and the tiling that spreads a
// convolution over threads.
//
// Images are stored channels-last, one sample per row of an (N, H*W*C) matrix: a window's
// kw*C values of one image row are contiguous, and every output pixel's channels are a row of
// an (N*Ho*Wo, C) matrix, so a convolution is one GEMM per tile of output pixels.
#pragma once

#include <algorithm>
#include <cstring>
#include <exception>
#ifdef __AVX512F__
#include <immintrin.h>
#endif
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
  // Output rows per tile so that tiles t and t + 2 of a sample never touch the same input row.
  Index phase_rows() const { return std::max<Index>(1, ((kh - 1) * dh + 1 + sh - 1) / sh); }
  // [lo, hi): the output columns whose input column ox - pw + kx lies inside the image (unit x
  // stride and dilation, as im2col_planar)
  std::pair<Index, Index> inside_columns(Index kx) const {
    const Index lo = std::min(Wo, std::max<Index>(0, pw - kx));
    return {lo, std::max(lo, std::min<Index>(Wo, W + pw - kx))};
  }
};

// Short runs: im2col copies, and col2im adds, kw*C values at a time (5 for a 5x5 kernel over
// one channel). A call to memcpy or a scalar loop costs more than the copy itself there; with
// AVX-512 a run of up to one vector is one masked load and store. Add: dst += src, else dst = src.
template <bool Add, class T>
inline void short_run(T* dst, const T* src, Index n) {
#ifdef __AVX512F__
  if (n * static_cast<Index>(sizeof(T)) <= 64) {
    if constexpr (sizeof(T) == 8) {
      const __mmask8 m = static_cast<__mmask8>((1u << n) - 1);
      __m512d v = _mm512_maskz_loadu_pd(m, src);
      if constexpr (Add) v = _mm512_add_pd(v, _mm512_maskz_loadu_pd(m, dst));
      _mm512_mask_storeu_pd(dst, m, v);
    } else {
      const __mmask16 m = static_cast<__mmask16>((1u << n) - 1);
      __m512 v = _mm512_maskz_loadu_ps(m, src);
      if constexpr (Add) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, dst));
      _mm512_mask_storeu_ps(dst, m, v);
    }
    return;
  }
#endif
  if constexpr (Add) {
    for (Index c = 0; c < n; ++c) dst[c] += src[c];
  } else {
    std::memcpy(dst, src, sizeof(T) * n);
  }
}

// P (rows, K): the patches of output rows [y0, y1) of one sample (a: its H*W*C values).
template <class T>
void im2col(const T* a, const Geometry& g, Index y0, Index y1, T* P) {
  const Index C = g.C, K = g.K();
  Index r = 0;
  for (Index oy = y0; oy < y1; ++oy)
    for (Index ox = 0; ox < g.Wo; ++ox, ++r) {
      T* dst = P + r * K;
      const Index ix0 = ox * g.sw - g.pw;
      const bool row_inside = g.dw == 1 && ix0 >= 0 && ix0 + g.kw <= g.W;
      for (Index ky = 0; ky < g.kh; ++ky) {
        const Index iy = oy * g.sh - g.ph + ky * g.dh;
        if (row_inside) {  // the kernel row's kw*C values are contiguous in the image
          if (iy < 0 || iy >= g.H)
            std::memset(dst, 0, sizeof(T) * C * g.kw);
          else
            short_run<false>(dst, a + (iy * g.W + ix0) * C, C * g.kw);
          dst += C * g.kw;
          continue;
        }
        for (Index kx = 0; kx < g.kw; ++kx, dst += C) {
          const Index ix = ox * g.sw - g.pw + kx * g.dw;
          if (iy < 0 || iy >= g.H || ix < 0 || ix >= g.W)
            std::memset(dst, 0, sizeof(T) * C);
          else
            short_run<false>(dst, a + (iy * g.W + ix) * C, C);
        }
      }
    }
}

// acc += the patches G (rows, ld) from column `col` on, scattered back to one sample's image.
template <class T>
void col2im(const T* G, Index ld, Index col, const Geometry& g, Index y0, Index y1, T* acc) {
  const Index C = g.C;
  Index r = 0;
  for (Index oy = y0; oy < y1; ++oy)
    for (Index ox = 0; ox < g.Wo; ++ox, ++r) {
      const T* src = G + r * ld + col;
      const Index ix0 = ox * g.sw - g.pw;
      const bool row_inside = g.dw == 1 && ix0 >= 0 && ix0 + g.kw <= g.W;
      for (Index ky = 0; ky < g.kh; ++ky) {
        const Index iy = oy * g.sh - g.ph + ky * g.dh;
        if (row_inside) {  // one contiguous run of kw*C values
          if (iy >= 0 && iy < g.H) {
            short_run<true>(acc + (iy * g.W + ix0) * C, src, C * g.kw);
          }
          src += C * g.kw;
          continue;
        }
        for (Index kx = 0; kx < g.kw; ++kx, src += C) {
          const Index ix = ox * g.sw - g.pw + kx * g.dw;
          if (iy < 0 || iy >= g.H || ix < 0 || ix >= g.W) continue;
          short_run<true>(acc + (iy * g.W + ix) * C, src, C);
        }
      }
    }
}

// One input channel, unit stride and dilation along x (a first layer on grey images): the
// patches transposed, PT (K, rows) with row stride ld, are whole contiguous runs of an image
// row, Wo values each, instead of K runs of kw values per output pixel.
template <class T>
void im2col_planar(const T* a, const Geometry& g, Index y0, Index y1, T* PT, Index ld) {
  const Index Wo = g.Wo;
  for (Index ky = 0; ky < g.kh; ++ky)
    for (Index kx = 0; kx < g.kw; ++kx) {
      T* row = PT + (ky * g.kw + kx) * ld;
      const auto [lo, hi] = g.inside_columns(kx);
      for (Index oy = y0; oy < y1; ++oy, row += Wo) {
        const Index iy = oy * g.sh - g.ph + ky * g.dh;
        if (iy < 0 || iy >= g.H) {
          std::fill(row, row + Wo, T(0));
          continue;
        }
        std::fill(row, row + lo, T(0));
        std::memcpy(row + lo, a + iy * g.W + lo - g.pw + kx, sizeof(T) * (hi - lo));
        std::fill(row + hi, row + Wo, T(0));
      }
    }
}

// acc += the transposed patches GT (K, rows) scattered back: im2col_planar's inverse.
template <class T>
void col2im_planar(const T* GT, Index ld, const Geometry& g, Index y0, Index y1, T* acc) {
  const Index Wo = g.Wo;
  for (Index ky = 0; ky < g.kh; ++ky)
    for (Index kx = 0; kx < g.kw; ++kx) {
      const T* row = GT + (ky * g.kw + kx) * ld;
      const auto [lo, hi] = g.inside_columns(kx);
      for (Index oy = y0; oy < y1; ++oy, row += Wo) {
        const Index iy = oy * g.sh - g.ph + ky * g.dh;
        if (iy < 0 || iy >= g.H) continue;
        T* d = acc + iy * g.W + lo - g.pw + kx;
        for (Index ox = lo; ox < hi; ++ox) d[ox - lo] += row[ox];
      }
    }
}

struct Tile {
  Index n0, n1;  // samples [n0, n1); with more than one, whole images
  Index y0, y1;  // output rows [y0, y1) of each
  Index phase;   // 0 or 1: tiles of one phase never share input rows
  Index pixels(const Geometry& g) const { return (n1 - n0) * (y1 - y0) * g.Wo; }
  Index first_pixel(const Geometry& g) const { return n0 * g.pixels_out() + y0 * g.Wo; }
};

// Tiles of about `target_pixels` output pixels: several whole small images, or bands of at
// least `min_rows` output rows of a large one. The output pixels of a tile are consecutive
// rows of the (N*Ho*Wo, C) output, so each tile is one GEMM.
inline std::vector<Tile> make_tiles(Index N, const Geometry& g, Index target_pixels, Index min_rows, int threads) {
  std::vector<Tile> tiles;
  const Index per_image = g.pixels_out();
  if (per_image * 2 <= target_pixels) {  // small images: whole images per tile, no shared rows
    Index images = std::max<Index>(1, target_pixels / per_image);
    while (images > 1 && (N + images - 1) / images < 2 * threads) images = (images + 1) / 2;
    for (Index n = 0; n < N; n += images) tiles.push_back({n, std::min(N, n + images), 0, g.Ho, 0});
    return tiles;
  }
  Index rows = std::max<Index>(min_rows, (target_pixels + g.Wo - 1) / g.Wo);
  // enough tiles to keep every thread busy in each phase
  while (rows > min_rows && N * ((g.Ho + rows - 1) / rows) < 4 * threads) rows = std::max(min_rows, rows / 2);
  for (Index n = 0; n < N; ++n)
    for (Index y = 0, t = 0; y < g.Ho; y += rows, ++t) tiles.push_back({n, n + 1, y, std::min(g.Ho, y + rows), t % 2});
  return tiles;
}

// im2col / col2im over a tile: image by image (x, acc: row n of an (N, H*W*C) matrix).
template <class T>
void im2col_tile(const T* x, const Geometry& g, const Tile& t, T* P) {
  const Index per = (t.y1 - t.y0) * g.Wo * g.K();
  for (Index n = t.n0; n < t.n1; ++n) im2col(x + n * g.in_size(), g, t.y0, t.y1, P + (n - t.n0) * per);
}

// The same over a tile, as transposed patches (K, rows of the tile).
template <class T>
void im2col_planar_tile(const T* x, const Geometry& g, const Tile& t, T* PT) {
  const Index rows = t.pixels(g), per = rows / (t.n1 - t.n0);
  for (Index n = t.n0; n < t.n1; ++n) im2col_planar(x + n * g.in_size(), g, t.y0, t.y1, PT + (n - t.n0) * per, rows);
}

// acc += GT (K, rows of the tile; ld 0: one row for every k) scattered back.
template <class T>
void col2im_planar_tile(const T* GT, Index ld, const Geometry& g, const Tile& t, T* acc) {
  const Index per = t.pixels(g) / (t.n1 - t.n0);
  for (Index n = t.n0; n < t.n1; ++n) col2im_planar(GT + (n - t.n0) * per, ld, g, t.y0, t.y1, acc + n * g.in_size());
}

template <class T>
void col2im_tile(const T* G, Index ld, Index col, const Geometry& g, const Tile& t, T* acc) {
  const Index per = (t.y1 - t.y0) * g.Wo * ld;
  for (Index n = t.n0; n < t.n1; ++n) col2im(G + (n - t.n0) * per, ld, col, g, t.y0, t.y1, acc + n * g.in_size());
}

// Runs f(tile) over the tiles on `threads` threads; with `phased`, phase 0 tiles first, then
// phase 1 (so tiles that scatter into shared input rows never run at the same time).
template <class F>
void run_tiles(const std::vector<Tile>& tiles, bool phased, int threads, F&& f) {
  std::exception_ptr error;
  std::mutex m;
  for (Index phase = 0; phase < (phased ? 2 : 1); ++phase) {
    const Index count = static_cast<Index>(tiles.size());
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1)
    for (Index t = 0; t < count; ++t) {
      if (phased && tiles[t].phase != phase) continue;
      try {
        f(tiles[t]);
      } catch (...) {
        std::lock_guard<std::mutex> g(m);
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
  }
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
