// fastlrp's one matrix product, C = A B (+ C), with position-independent arithmetic.
//
// Every output C_ij is one chain of multiply-adds over k = 0, 1, ..., K-1 in that order,
// starting from zero (or from C_ij when accumulating): acc = fma(A_ik, B_kj, acc). Vector lanes
// run along j only, never along k, and a partial vector (a column tail) is a masked vector of
// the same instruction, so C_ij comes out bit-identical wherever it sits: in the body or a
// tail, in any row of any tile, on any thread, in a batch of any size. Blocking over k stores
// the chain's value in C and continues from it, which changes nothing either; blocking and
// packing A and B (per call, or B once ahead in a PackedB) only change where operands are read
// from, and skipping the terms whose A_ik is zero (when A is mostly zeros, as activations after
// a ReLU are) gives the full chain's bits too (gemm_sparse). This is what makes ties stay ties
// (identical input patches give identical outputs) and explanations independent of the thread
// count and the batch (docs/reliability.md). Eigen's
// GEMM, which fastlrp used before, vectorises the last rows of a block along k and picks its
// k-blocking from the matrix sizes: the same output came out in different bits in different
// places.
//
// Threading is the caller's: `product` splits the columns of C over threads (never k).
#pragma once

#include "fastlrp/isa.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "fastlrp/common.hpp"
#include "fastlrp/simd.hpp"

namespace fastlrp {
inline namespace FASTLRP_ISA_NS {
namespace kernels {

namespace gemm_detail {

constexpr int kMR = 6;                                 // rows per micro-kernel
constexpr int kNV = simd::kBytes >= 64 ? 4 : 2;        // vectors of columns per micro-kernel
constexpr Index kKC = 256;                             // k per block (the B panel stays in L1/L2)
constexpr Index kMC = 96;                              // rows per block of A (stays in L2)
// A is packed when this many vectors of B's columns pass over each block of it: packing costs
// a load and a store per value of A, which 16 vector multiply-adds per value repay.
constexpr Index kPackAVectors = 16;

// C[0:R, 0:NV vectors] over kc steps; with Tail, the last vector has `rem` lanes. B: a packed
// panel (whole vectors, zero padding) or, unpacked, B's own rows (the tail vector masked).
// A: packed (kc steps of kMR values, one per row; at SSE each value as a whole vector, see
// kBroadcastA) or, unpacked, A's own rows (lda apart).
// Pack: kRows (A and B unpacked), kPanelB (B packed), kPanelAB (both packed).
enum Pack { kRows, kPanelB, kPanelAB };
// SSE has no broadcast from memory: each A_ik the micro-kernel broadcasts costs a load and a
// shuffle, and the shuffles compete with the multiplies and adds for the FP pipes. At that level
// packed A holds every value already broadcast to a whole vector (W copies), loaded as they are.
// The arithmetic is the same; only where the operand comes from changes.
constexpr bool kBroadcastA = simd::kBytes == 16;
template <class T, int R, int NV, bool Tail, int Pk>
void micro(Index kc, const T* A, Index lda, const T* B, Index ldb, T* C, Index ldc, int rem, bool load_c) {
  using S = simd::Vec<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  // Packed A: row r of step k at A[k * kMR + r] (broadcast: the vector at A[(k * kMR + r) * W]);
  // unpacked: A[r * lda + k].
  constexpr bool Packed = Pk != kRows;
  constexpr bool Bcast = Pk == kPanelAB && kBroadcastA;  // packed A: vectors, not values
  const Index ar = Pk == kPanelAB ? (Bcast ? W : 1) : lda, ak = Pk == kPanelAB ? (Bcast ? kMR * W : kMR) : 1;
  V acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      if (!load_c)
        acc[r][v] = S::zero();
      else if (Tail && v == NV - 1)
        acc[r][v] = S::load_part(C + r * ldc + v * W, rem);
      else
        acc[r][v] = S::load(C + r * ldc + v * W);
    }
  for (Index k = 0; k < kc; ++k) {
    V b[NV];
    const T* bk = B + k * ldb;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      b[v] = (!Packed && Tail && v == NV - 1) ? S::load_part(bk + v * W, rem) : S::load(bk + v * W);
    const T* a = A + k * ak;
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      V ar_k;
      if constexpr (Bcast)
        ar_k = S::load(a + r * ar);
      else
        ar_k = S::set1(a[r * ar]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = S::fmadd(ar_k, b[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      if (Tail && v == NV - 1)
        S::store_part(C + r * ldc + v * W, acc[r][v], rem);
      else
        S::store(C + r * ldc + v * W, acc[r][v]);
    }
}

template <class T, int R, int Pk>
void micro_rows(int nv, bool tail, Index kc, const T* A, Index lda, const T* B, Index ldb, T* C, Index ldc, int rem,
                bool load_c) {
#define FASTLRP_MICRO_CASE(NV)                                                    \
  case NV:                                                                        \
    if constexpr (NV <= kNV) {                                                    \
      if (tail)                                                                   \
        micro<T, R, NV, true, Pk>(kc, A, lda, B, ldb, C, ldc, rem, load_c);       \
      else                                                                        \
        micro<T, R, NV, false, Pk>(kc, A, lda, B, ldb, C, ldc, rem, load_c);      \
    }                                                                             \
    return;
  switch (nv) {
    FASTLRP_MICRO_CASE(1)
    FASTLRP_MICRO_CASE(2)
    FASTLRP_MICRO_CASE(3)
    FASTLRP_MICRO_CASE(4)
  }
#undef FASTLRP_MICRO_CASE
}

template <class T, int Pk>
void micro_any(int mr, int nv, bool tail, Index kc, const T* A, Index lda, const T* B, Index ldb, T* C, Index ldc,
               int rem, bool load_c) {
  switch (mr) {
    case 1: return micro_rows<T, 1, Pk>(nv, tail, kc, A, lda, B, ldb, C, ldc, rem, load_c);
    case 2: return micro_rows<T, 2, Pk>(nv, tail, kc, A, lda, B, ldb, C, ldc, rem, load_c);
    case 3: return micro_rows<T, 3, Pk>(nv, tail, kc, A, lda, B, ldb, C, ldc, rem, load_c);
    case 4: return micro_rows<T, 4, Pk>(nv, tail, kc, A, lda, B, ldb, C, ldc, rem, load_c);
    case 5: return micro_rows<T, 5, Pk>(nv, tail, kc, A, lda, B, ldb, C, ldc, rem, load_c);
    case 6: return micro_rows<T, 6, Pk>(nv, tail, kc, A, lda, B, ldb, C, ldc, rem, load_c);
  }
}

// B's block of kc rows from row k0, packed as panels of NB columns, each contiguous (kc x NB;
// columns past n zero): rows of B lie ldb apart, a page or more for wide layers, and read panel
// by panel every row was a TLB miss. One pass reads B's rows in order.
template <class T>
void pack_b_block(const T* B, Index ldb, Index n, Index k0, Index kc, T* Bp) {
  using S = simd::Vec<T>;
  constexpr int W = S::W;
  constexpr Index NB = kNV * W;
  const Index panels = (n + NB - 1) / NB;
  for (Index kk = 0; kk < kc; ++kk) {
    const T* src = B + (k0 + kk) * ldb;
    Index p = 0;
    for (; (p + 1) * NB <= n; ++p) {  // whole panels: vector copies (a memmove call each cost more)
      T* dst = Bp + (p * kc + kk) * NB;
#pragma GCC unroll 4
      for (int v = 0; v < kNV; ++v) S::store(dst + v * W, S::load(src + p * NB + v * W));
    }
    if (p < panels) {
      T* dst = Bp + (p * kc + kk) * NB;
      for (Index c = 0; c < NB; ++c) dst[c] = p * NB + c < n ? src[p * NB + c] : T(0);
    }
  }
}

// C[:, 0:n] (+)= A times the panels of B that block(k0, kc) returns for each block of kc rows
// (panel p at block(k0, kc) + p * kc * NB). A's block of kMC rows, packed as micro-panels of kMR
// rows (kc steps of kMR values), stays in L2 while every B panel passes over it; each B panel
// stays in L1 over the block's rows.
template <class T, class Block>
void gemm_panels(Index m, Index n, Index k, const T* A, Index lda, Block&& block, T* C, Index ldc, bool accumulate) {
  constexpr int W = simd::Vec<T>::W;
  constexpr Index NB = kNV * W;
  static thread_local std::vector<T> packed_a;
  const Index panels = (n + NB - 1) / NB;
  // With broadcast vectors (SSE), packing saves a shuffle per value for every panel after the first.
  const bool pack_a = kBroadcastA ? panels >= 2 : panels * kNV >= kPackAVectors;
  constexpr Index AW = kBroadcastA ? W : 1;  // packed values per value of A
  const Index mc_max = std::min(kMC, (m + kMR - 1) / kMR * kMR);
  if (pack_a && packed_a.size() < static_cast<std::size_t>(kKC * mc_max * AW)) packed_a.resize(kKC * mc_max * AW);
  T* Ap = packed_a.data();
  for (Index k0 = 0; k0 < k; k0 += kKC) {
    const Index kc = std::min(kKC, k - k0);
    const bool load_c = accumulate || k0 > 0;
    const T* Bp = block(k0, kc);
    for (Index i0 = 0; i0 < m; i0 += kMC) {
      const Index mc = std::min(kMC, m - i0);
      for (Index i = 0; pack_a && i < mc; i += kMR) {
        const Index mr = std::min<Index>(kMR, mc - i);
        T* dst = Ap + i * kc * AW;
        const T* src = A + (i0 + i) * lda + k0;
        for (Index r = 0; r < mr; ++r)
          for (Index kk = 0; kk < kc; ++kk) {
            if constexpr (kBroadcastA)
              simd::Vec<T>::store(dst + (kk * kMR + r) * W, simd::Vec<T>::set1(src[r * lda + kk]));
            else
              dst[kk * kMR + r] = src[r * lda + kk];
          }
      }
      for (Index p = 0; p < panels; ++p) {
        const Index j = p * NB, nb = std::min(NB, n - j);
        const int nv = static_cast<int>((nb + W - 1) / W);
        const int rem = static_cast<int>(nb - (nv - 1) * W);
        const bool tail = rem < W;
        for (Index i = 0; i < mc; i += kMR) {
          const int mr = static_cast<int>(std::min<Index>(kMR, mc - i));
          if (pack_a)
            micro_any<T, kPanelAB>(mr, nv, tail, kc, Ap + i * kc * AW, kMR, Bp + p * kc * NB, NB, C + (i0 + i) * ldc + j,
                                   ldc, rem, load_c);
          else
            micro_any<T, kPanelB>(mr, nv, tail, kc, A + (i0 + i) * lda + k0, lda, Bp + p * kc * NB, NB,
                                  C + (i0 + i) * ldc + j, ldc, rem, load_c);
        }
      }
    }
  }
}

// A few rows (a batch of one or two through a dense layer): B is read once, so packing it would
// only triple the traffic; the micro-kernels read B's rows as they are.
template <class T>
void gemm_rows(Index m, Index n, Index k, const T* A, Index lda, const T* B, Index ldb, T* C, Index ldc,
               bool accumulate) {
  constexpr int W = simd::Vec<T>::W;
  constexpr Index NB = kNV * W;
  for (Index k0 = 0; k0 < k; k0 += kKC) {
    const Index kc = std::min(kKC, k - k0);
    for (Index j = 0; j < n; j += NB) {
      const Index nb = std::min(NB, n - j);
      const int nv = static_cast<int>((nb + W - 1) / W);
      const int rem = static_cast<int>(nb - (nv - 1) * W);
      micro_any<T, kRows>(static_cast<int>(m), nv, rem < W, kc, A + k0, lda, B + k0 * ldb + j, ldb, C + j, ldc, rem,
                          accumulate || k0 > 0);
    }
  }
}

template <class T>
bool gemm_trivial(Index m, Index n, Index k, T* C, Index ldc, bool accumulate) {
  if (m <= 0 || n <= 0) return true;
  if (k <= 0) {
    if (!accumulate)
      for (Index i = 0; i < m; ++i) std::fill(C + i * ldc, C + i * ldc + n, T(0));
    return true;
  }
  return false;
}


// ---- The zeros of A, skipped ----
// Activations after a ReLU and relevance below one are about half zeros. A term whose A_ik is
// zero (either sign) adds a zero product, which leaves the chain's value as it is -- except that
// a running value of -0 plus a +0 product is +0. The chain starts at +0 and only goes to -0 when
// a product underflows to zero, so a chain without A's zero terms ends in the same bits as the
// full chain, unless it ends at -0: those outputs (found in one pass, and in practice never)
// are recomputed with the full chain. So skipping is exact, and the choice whether to skip
// (by the density of A) cannot change a result.
//
// Each row of A is compressed to its nonzero values and their k. A pass takes kSparseGroup
// panels of B (12 vectors of columns, held in registers as one row of C) and a slab of
// kSparseK(T) rows of them, which stays in L1; each nonzero A_ik adds A_ik times row k of the
// slab to the row of C. The cost is the nonzeros', one load of B per multiply-add from L1.
constexpr int kSparseGroup = kNV == 4 ? 3 : 6;
template <class T>
constexpr Index kSparseK() {
  constexpr Index bytes = Index(kSparseGroup) * kNV * simd::Vec<T>::W * Index(sizeof(T));
  return std::min(kKC, std::max<Index>(16, (Index(24) << 10) / bytes));
}
// Zeros are skipped when A has at most this fraction of nonzeros and C at least one full pass of
// columns (fewer accumulators per nonzero repay the load of B per multiply-add only at lower
// densities: skip_zeros). Measured
// break-even densities on the MLP's and ResNet's shapes (bench/README.md): AVX2 about 0.6
// (float64) and 0.5 (float32), a nonzero costing about 1.4 dense multiply-adds; SSE, whose
// dense kernel is bound by its broadcasts, about 0.65 and 0.85.
template <class T>
constexpr double kSparseMaxDensity = simd::kBytes == 16 ? (sizeof(T) == 8 ? 0.6 : 0.75)
                                                        : (sizeof(T) == 8 ? 0.55 : 0.45);

template <class T>
struct SparseRows {
  std::vector<T> val;     // nonzero values, row by row
  std::vector<int> idx;   // their k
  Index slabs = 0;        // slabs of kSparseK(T) values of k
  std::vector<Index> at;  // row i's nonzeros in slab t: [at[t * m + i], at[(t + 1) * m + i])
};

template <class T>
Index count_nonzero(Index m, Index k, const T* A, Index lda) {
  Index c = 0;
  for (Index i = 0; i < m; ++i) {
    const T* a = A + i * lda;
    Index ci = 0;
    for (Index kk = 0; kk < k; ++kk) ci += a[kk] != T(0);
    c += ci;
  }
  return c;
}

// Appends the nonzeros of a[k0, k1) (their values to val, their k to idx) at p; returns the new
// p. A value counts as nonzero when `v != 0` (NaN included, -0 not), in vectors where the level
// has them: the nonzero lanes are moved to the front of the vector (AVX-512's compress; AVX2: a
// permutation looked up by the lane mask) and the whole vector is stored, so up to one vector
// past the new p is overwritten. The caller's buffers hold every value of the rows: a store at p
// never passes the end, as p <= (values before k0) and k0 + one vector <= k1.
#if defined(__AVX2__) && !defined(__AVX512F__)
struct CompressTable {
  alignas(32) std::int32_t lane[256][8];  // lane[mask]: the set bits of mask, lowest first
  alignas(16) std::int32_t lane4[16][4];  // the same for 4-lane masks
  alignas(32) std::int32_t pair4[16][8];  // 4 doubles as 8 floats: lanes 2i, 2i + 1 of each set bit
  constexpr CompressTable() : lane(), lane4(), pair4() {
    for (int m = 0; m < 256; ++m) {
      int n = 0;
      for (int b = 0; b < 8; ++b)
        if (m >> b & 1) lane[m][n++] = b;
    }
    for (int m = 0; m < 16; ++m) {
      int n = 0;
      for (int b = 0; b < 4; ++b)
        if (m >> b & 1) {
          lane4[m][n] = b;
          pair4[m][2 * n] = 2 * b;
          pair4[m][2 * n + 1] = 2 * b + 1;
          ++n;
        }
    }
  }
};
inline constexpr CompressTable kCompress{};
#endif

template <class T>
inline Index compress_range(const T* a, Index k0, Index k1, T* val, int* idx, Index p) {
  Index kk = k0;
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4) {
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (; kk + 16 <= k1; kk += 16) {
      const __m512 v = _mm512_loadu_ps(a + kk);
      const __mmask16 m = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NEQ_UQ);
      _mm512_storeu_ps(val + p, _mm512_maskz_compress_ps(m, v));
      _mm512_storeu_si512(idx + p, _mm512_maskz_compress_epi32(m, _mm512_add_epi32(iota, _mm512_set1_epi32(int(kk)))));
      p += __builtin_popcount(m);
    }
  } else {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (; kk + 8 <= k1; kk += 8) {
      const __m512d v = _mm512_loadu_pd(a + kk);
      const __mmask8 m = _mm512_cmp_pd_mask(v, _mm512_setzero_pd(), _CMP_NEQ_UQ);
      _mm512_storeu_pd(val + p, _mm512_maskz_compress_pd(m, v));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx + p),
                          _mm256_maskz_compress_epi32(m, _mm256_add_epi32(iota, _mm256_set1_epi32(int(kk)))));
      p += __builtin_popcount(m);
    }
  }
#elif defined(__AVX2__)
  if constexpr (sizeof(T) == 4) {
    for (; kk + 8 <= k1; kk += 8) {
      const __m256 v = _mm256_loadu_ps(a + kk);
      const int m = _mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NEQ_UQ));
      const __m256i perm = _mm256_load_si256(reinterpret_cast<const __m256i*>(kCompress.lane[m]));
      _mm256_storeu_ps(val + p, _mm256_permutevar8x32_ps(v, perm));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx + p), _mm256_add_epi32(perm, _mm256_set1_epi32(int(kk))));
      p += __builtin_popcount(m);
    }
  } else {
    for (; kk + 4 <= k1; kk += 4) {
      const __m256d v = _mm256_loadu_pd(a + kk);
      const int m = _mm256_movemask_pd(_mm256_cmp_pd(v, _mm256_setzero_pd(), _CMP_NEQ_UQ));
      const __m256i perm = _mm256_load_si256(reinterpret_cast<const __m256i*>(kCompress.pair4[m]));
      _mm256_storeu_ps(reinterpret_cast<float*>(val + p), _mm256_permutevar8x32_ps(_mm256_castpd_ps(v), perm));
      const __m128i lanes = _mm_load_si128(reinterpret_cast<const __m128i*>(kCompress.lane4[m]));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(idx + p), _mm_add_epi32(lanes, _mm_set1_epi32(int(kk))));
      p += __builtin_popcount(m);
    }
  }
#endif
  for (; kk < k1; ++kk) {
    const T v = a[kk];
    val[p] = v;  // written whether kept or not (no branch)
    idx[p] = static_cast<int>(kk);
    p += v != T(0);
  }
  return p;
}

// Sized for every value of the rows (at most kSparseBlockValues): no second count of the nonzeros.
template <class T>
void compress_rows(Index m, Index k, const T* A, Index lda, SparseRows<T>& s) {
  if (s.val.size() < static_cast<std::size_t>(m * k)) {
    s.val.resize(static_cast<std::size_t>(m * k));
    s.idx.resize(static_cast<std::size_t>(m * k));
  }
  constexpr Index KS = kSparseK<T>();
  s.slabs = (k + KS - 1) / KS;
  s.at.resize(static_cast<std::size_t>(m * (s.slabs + 1)));
  T* val = s.val.data();
  int* idx = s.idx.data();
  Index p = 0;
  for (Index i = 0; i < m; ++i) {
    const T* a = A + i * lda;
    Index* at = s.at.data() + i;
    for (Index t = 0; t < s.slabs; ++t) {
      at[t * m] = p;
      p = compress_range(a, t * KS, std::min(k, (t + 1) * KS), val, idx, p);
    }
    at[s.slabs * m] = p;
  }
}

// One pass: rows [0, m) of C's `cols` columns (G panels, the last possibly partial) += the
// nonzeros of each row in [k0, k0 + kc) times the panels at Bp (panel g at Bp + g * pstride,
// row kk at + (kk - k0) * NB), slab by slab of KS rows copied together.
template <class T, int G>
void sparse_pass(Index m, const SparseRows<T>& s, Index k0, Index kc, const T* Bp, Index pstride, T* C, Index ldc,
                 Index cols) {
  using S = simd::Vec<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  constexpr Index NB = kNV * W;
  constexpr int NV = G * kNV;
  constexpr Index KS = kSparseK<T>();
  const bool full = cols == G * NB;
  alignas(64) T buf[G * NB];
  alignas(64) T slab[KS * G * NB];  // rows [kb, kb + KS) of the G panels, row by row
  const T* val = s.val.data();
  const int* idx = s.idx.data();
  for (Index ks = 0; ks < kc; ks += KS) {
    const Index kb = k0 + ks, kn = std::min(KS, kc - ks);
    for (Index kk = 0; kk < kn; ++kk)
#pragma GCC unroll 16
      for (int g = 0; g < G; ++g)
#pragma GCC unroll 8
        for (int v = 0; v < kNV; ++v)
          S::store(slab + kk * (G * NB) + g * NB + v * W, S::load(Bp + g * pstride + (ks + kk) * NB + v * W));
    const Index* at = s.at.data() + kb / KS * m;
    for (Index i = 0; i < m; ++i) {
      Index p = at[i];
      const Index q = at[m + i];
      if (q == p) continue;
      T* c = full ? C + i * ldc : buf;
      if (!full) std::copy(C + i * ldc, C + i * ldc + cols, buf);
      V acc[NV];
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[v] = S::load(c + v * W);
      for (; p < q; ++p) {
        const V a = S::set1(val[p]);
        const T* b = slab + (idx[p] - kb) * (G * NB);
#pragma GCC unroll 16
        for (int v = 0; v < NV; ++v) acc[v] = S::fmadd(a, S::load(b + v * W), acc[v]);
      }
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) S::store(c + v * W, acc[v]);
      if (!full) std::copy(buf, buf + cols, C + i * ldc);
    }
  }
}

template <class T>
void sparse_pass_any(int g, Index m, const SparseRows<T>& s, Index k0, Index kc, const T* Bp, Index pstride, T* C,
                     Index ldc, Index cols) {
  switch (g) {
#define FASTLRP_SPARSE_CASE(G)                                                                  \
  case G:                                                                                       \
    if constexpr (G <= kSparseGroup) sparse_pass<T, G>(m, s, k0, kc, Bp, pstride, C, ldc, cols); \
    return;
    FASTLRP_SPARSE_CASE(1)
    FASTLRP_SPARSE_CASE(2)
    FASTLRP_SPARSE_CASE(3)
    FASTLRP_SPARSE_CASE(4)
    FASTLRP_SPARSE_CASE(5)
    FASTLRP_SPARSE_CASE(6)
#undef FASTLRP_SPARSE_CASE
  }
}

// Rows of A compressed at a time: bounds the compressed copy (values and k, about the size of
// those rows of A) however large the batch; rows are independent, so the split changes nothing.
constexpr Index kSparseBlockValues = Index(1) << 20;

// C[:, 0:n] = A B with A's zeros skipped; block(k0, kc) returns B's packed panels for rows
// [k0, k0 + kc) as in gemm_panels; B itself (row stride ldb) for the recomputed -0 outputs.
template <class T, class Block>
void gemm_sparse(Index m, Index n, Index k, const T* A, Index lda, Block&& block, const T* B, Index ldb, T* C,
                 Index ldc) {
  using S = simd::Vec<T>;
  constexpr Index NB = kNV * S::W;
  static_assert(kKC % kSparseK<T>() == 0, "a slab never straddles two blocks of B");
  static thread_local SparseRows<T> s;
  const Index panels = (n + NB - 1) / NB;
  const Index mb = std::max<Index>(1, kSparseBlockValues / k);
  for (Index i0 = 0; i0 < m; i0 += mb) {
    const Index rows = std::min(mb, m - i0);
    const T* Ai = A + i0 * lda;
    T* Ci = C + i0 * ldc;
    compress_rows(rows, k, Ai, lda, s);
    for (Index i = 0; i < rows; ++i) std::fill(Ci + i * ldc, Ci + i * ldc + n, T(0));
    for (Index k0 = 0; k0 < k; k0 += kKC) {
      const Index kc = std::min(kKC, k - k0);
      const T* Bp = block(k0, kc);
      for (Index p = 0; p < panels; p += kSparseGroup) {
        const int g = static_cast<int>(std::min<Index>(kSparseGroup, panels - p));
        sparse_pass_any<T>(g, rows, s, k0, kc, Bp + p * kc * NB, kc * NB, Ci + p * NB, ldc,
                           std::min(Index(g) * NB, n - p * NB));
      }
    }
  }
  // The outputs that ended at -0: the full chain decides their sign. (Without a fused
  // multiply-add a chain from +0 never reaches -0: an underflowed product is rounded first and
  // +0 + -0 is +0.)
  if constexpr (simd::kBytes >= 32) {
    using U = std::conditional_t<sizeof(T) == 8, std::uint64_t, std::uint32_t>;
    constexpr U kNegZero = U(1) << (8 * sizeof(T) - 1);
    for (Index i = 0; i < m; ++i) {
      T* row = C + i * ldc;
      U hit = 0;
      for (Index j = 0; j < n; ++j) {
        U u;
        std::memcpy(&u, row + j, sizeof u);
        hit |= u == kNegZero;
      }
      for (Index j = 0; hit && j < n; ++j) {
        if (row[j] != T(0) || !std::signbit(row[j])) continue;
        auto acc = S::zero();
        for (Index kk = 0; kk < k; ++kk) acc = S::fmadd(S::set1(A[i * lda + kk]), S::set1(B[kk * ldb + j]), acc);
        alignas(64) T lane[S::W];
        S::store(lane, acc);
        row[j] = lane[0];
      }
    }
  }
}

// Whether gemm skips A's zeros: A mostly zeros and C wide enough.
// Narrower C, down to 8 vectors of columns (two thirds of a pass at AVX2), holds fewer
// accumulators per nonzero: there zeros are skipped below 0.6 times that density (measured on
// ResNet-50's backward shapes, 1536 x 512 x 64 float32 at AVX2: 0.79 of the dense time at density
// 0.25, 0.58 at 0.15; 1.22 with 4 vectors, so not below 8).
// The density is that of at most kDensityRows rows spread evenly over A: either path gives the
// same bits, so the estimate decides only the time, and counting every row of A on every call
// was a pass over A as long as a narrow product's own reads of it.
constexpr Index kDensityRows = 64;
template <class T>
bool skip_zeros(Index m, Index n, Index k, const T* A, Index lda, bool accumulate) {
  constexpr Index W = simd::Vec<T>::W;
  if (accumulate || n < 8 * W) return false;
  const double limit = n >= kSparseGroup * kNV * W ? kSparseMaxDensity<T> : 0.6 * kSparseMaxDensity<T>;
  const Index rows = std::min(m, kDensityRows);  // every row of a smaller A
  Index c = 0;
  for (Index j = 0; j < rows; ++j) c += count_nonzero(1, k, A + (j * m / rows) * lda, lda);
  return double(c) <= limit * double(rows) * double(k);
}

}  // namespace gemm_detail

// C (m x n, row stride ldc) = A (m x k, row stride lda) B (k x n, row stride ldb), plus C's
// previous value when `accumulate`. Single-threaded.
template <class T>
void gemm(Index m, Index n, Index k, const T* A, Index lda, const T* B, Index ldb, T* C, Index ldc,
          bool accumulate = false) {
  using namespace gemm_detail;
  constexpr Index NB = kNV * simd::Vec<T>::W;
  if (gemm_trivial(m, n, k, C, ldc, accumulate)) return;
  // A few rows read B once: packing it for the sparse path would cost more than the zeros save.
  const bool sparse = m > kMR && skip_zeros(m, n, k, A, lda, accumulate);
  if (!sparse && m <= kMR) return gemm_rows(m, n, k, A, lda, B, ldb, C, ldc, accumulate);
  static thread_local std::vector<T> packed;
  const Index panels = (n + NB - 1) / NB;
  if (packed.size() < static_cast<std::size_t>(kKC * panels * NB)) packed.resize(kKC * panels * NB);
  auto block = [&](Index k0, Index kc) {
    pack_b_block(B, ldb, n, k0, kc, packed.data());
    return static_cast<const T*>(packed.data());
  };
  if (sparse) return gemm_sparse(m, n, k, A, lda, block, B, ldb, C, ldc);
  gemm_panels(m, n, k, A, lda, block, C, ldc, accumulate);
}

// A fixed right-hand side (a layer's weights), packed once as gemm packs B on every call: for
// each block of kKC rows, its panels of NB columns. The products are the same chains as with
// the matrix itself (bit for bit); only the copy per call is saved.
template <class T>
struct PackedB {
  Index k = 0, n = 0;
  std::vector<T> data;  // block k0: at k0 * panels * NB; its panel p at + p * kc * NB

  static constexpr Index NB = gemm_detail::kNV * simd::Vec<T>::W;
  Index panels() const { return (n + NB - 1) / NB; }
  bool empty() const { return data.empty(); }
  void pack(const T* B, Index rows, Index cols, Index ldb) {
    k = rows, n = cols;
    data.assign(static_cast<std::size_t>(k * panels() * NB), T(0));
    for (Index k0 = 0; k0 < k; k0 += gemm_detail::kKC)
      gemm_detail::pack_b_block(B, ldb, n, k0, std::min(gemm_detail::kKC, k - k0), data.data() + k0 * panels() * NB);
  }
};

// C (m x [panel p0 * NB, panel p1 * NB) ∩ [0, n)) (+)= A (m x k) times those columns of B,
// packed in pb (B itself, row stride ldb, for products of a few rows, which do not pack).
template <class T>
void gemm_packed(Index m, const T* A, Index lda, const T* B, Index ldb, const PackedB<T>& pb, Index p0, Index p1,
                 T* C, Index ldc, bool accumulate = false) {
  using namespace gemm_detail;
  constexpr Index NB = PackedB<T>::NB;
  const Index j0 = p0 * NB, n = std::min(pb.n, p1 * NB) - j0;
  if (gemm_trivial(m, n, pb.k, C + j0, ldc, accumulate)) return;
  const bool sparse = skip_zeros(m, n, pb.k, A, lda, accumulate);
  if (!sparse && m <= kMR) return gemm_rows(m, n, pb.k, A, lda, B + j0, ldb, C + j0, ldc, accumulate);
  const Index panels = pb.panels();
  auto block = [&](Index k0, Index kc) { return pb.data.data() + k0 * panels * NB + p0 * kc * NB; };
  if (sparse) return gemm_sparse(m, n, pb.k, A, lda, block, B + j0, ldb, C + j0, ldc);
  gemm_panels(m, n, pb.k, A, lda, block, C + j0, ldc, accumulate);
}

// Products smaller than this many multiply-adds are not worth a fork/join.
constexpr Index kSplitMinWork = Index(1) << 16;

// C = A B (+ C) on Eigen row-major operands (matrices, maps or their blocks), the columns of C
// split over `threads` threads when the product is large enough and we are not already inside
// a parallel region. A split never cuts a chain over k, so the result is the same for any split.
template <class MA, class MB, class MC>
void product(const MA& A, const MB& B, MC&& C, int threads, bool accumulate = false) {
  using T = typename std::decay_t<MC>::Scalar;
  static_assert(std::decay_t<MA>::IsRowMajor || std::decay_t<MA>::RowsAtCompileTime == 1, "A must be row-major");
  static_assert(std::decay_t<MB>::IsRowMajor || std::decay_t<MB>::RowsAtCompileTime == 1, "B must be row-major");
  static_assert(std::decay_t<MC>::IsRowMajor || std::decay_t<MC>::RowsAtCompileTime == 1, "C must be row-major");
  const Index m = A.rows(), k = A.cols(), n = B.cols();
  if (B.rows() != k || C.rows() != m || C.cols() != n) throw std::logic_error("product: shapes do not match");
  const T* a = A.data();
  const T* b = B.data();
  T* c = C.data();
  const Index lda = A.outerStride(), ldb = B.outerStride(), ldc = C.outerStride();
  constexpr Index W = simd::Vec<T>::W;
  int parts = 1;
#ifdef _OPENMP
  if (threads > 1 && !omp_in_parallel() && m * n * k >= kSplitMinWork && n >= 2 * W)
    parts = static_cast<int>(std::min<Index>(threads, n / W));
#endif
  if (parts <= 1) {
    gemm<T>(m, n, k, a, lda, b, ldb, c, ldc, accumulate);
    return;
  }
  const Index blocks = (n + W - 1) / W;
#pragma omp parallel for num_threads(parts) schedule(static, 1)
  for (int p = 0; p < parts; ++p) {
    const Index j0 = std::min(n, blocks * p / parts * W), j1 = std::min(n, blocks * (p + 1) / parts * W);
    if (j1 > j0) gemm<T>(m, j1 - j0, k, a, lda, b + j0, ldb, c + j0, ldc, accumulate);
  }
}

// C = A B (+ C) with B also packed (PackedB of Bm), the panels of C split over `threads`.
template <class MA, class MB, class MC>
void product(const MA& A, const MB& Bm, const PackedB<typename std::decay_t<MC>::Scalar>& B, MC&& C, int threads,
             bool accumulate = false) {
  using T = typename std::decay_t<MC>::Scalar;
  static_assert(std::decay_t<MA>::IsRowMajor || std::decay_t<MA>::RowsAtCompileTime == 1, "A must be row-major");
  static_assert(std::decay_t<MC>::IsRowMajor || std::decay_t<MC>::RowsAtCompileTime == 1, "C must be row-major");
  const Index m = A.rows(), k = A.cols(), n = B.n;
  if (B.k != k || Bm.rows() != k || Bm.cols() != n || C.rows() != m || C.cols() != n)
    throw std::logic_error("product: shapes do not match");
  const Index panels = B.panels();
  int parts = 1;
#ifdef _OPENMP
  if (threads > 1 && !omp_in_parallel() && m * n * k >= kSplitMinWork && panels >= 2)
    parts = static_cast<int>(std::min<Index>(threads, panels));
#endif
  if (parts <= 1) {
    gemm_packed<T>(m, A.data(), A.outerStride(), Bm.data(), Bm.outerStride(), B, 0, panels, C.data(), C.outerStride(),
                   accumulate);
    return;
  }
#pragma omp parallel for num_threads(parts) schedule(static, 1)
  for (int p = 0; p < parts; ++p)
    gemm_packed<T>(m, A.data(), A.outerStride(), Bm.data(), Bm.outerStride(), B, panels * p / parts,
                   panels * (p + 1) / parts, C.data(), C.outerStride(), accumulate);
}

// The sum of n values in index order: one chain, the same bits for the same values wherever
// they sit (Eigen's sum() starts its vectors at the first aligned address, which moves with
// the row's position in a batch).
template <class T>
inline T ordered_sum(const T* p, Index n) {
  T s = T(0);
  for (Index i = 0; i < n; ++i) s += p[i];
  return s;
}

// The sum of n values as kSumLanes chains (lane l adds values l, l + kSumLanes, ... in order),
// then the lanes added pairwise in a fixed tree: a fixed order that depends on n alone, not on
// the address, the thread or the ISA level (plain adds; the compiler's vectors only carry the
// lanes). About 20 times as fast as one chain, which waits for each add's latency.
constexpr int kSumLanes = 32;
template <class T>
inline T lane_sum(const T* p, Index n) {
  T acc[kSumLanes] = {};
  Index i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes)
#pragma GCC unroll 32
    for (int l = 0; l < kSumLanes; ++l) acc[l] += p[i + l];
  for (int l = 0; i + l < n; ++l) acc[l] += p[i + l];
  for (int w = kSumLanes / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

// out(r) = the lane sum of row r of M (the relevance totals per layer), rows over threads.
template <class M, class V>
void row_sums(const M& m, V&& out, int threads = 1) {
  const Index rows = m.rows();
  (void)threads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && rows > 1 && !omp_in_parallel())
#endif
  for (Index r = 0; r < rows; ++r) out(r) = lane_sum(&m(r, 0), m.cols());
}

}  // namespace kernels
}  // namespace FASTLRP_ISA_NS
}  // namespace fastlrp
