// The vector type of the ISA level this translation unit is compiled for: AVX-512 (x86-64-v4),
// AVX2 + FMA (v3), SSE (v2 and any x86-64) or one scalar lane elsewhere.
//
// Only what the GEMM micro-kernel (gemm.hpp), the depthwise kernels (grouped.hpp) and the
// convolution's patch sums (conv.hpp) need: loads and stores of a whole vector or of its first n
// lanes, a broadcast, a multiply-add, an add, max and min. Lanes never mix, so a value computed in lane 3 of a full vector is bit-identical to the
// same value computed in lane 0 of a partial one: every output's arithmetic is the same wherever
// it sits.
#pragma once

#include "fastlrp/isa.hpp"

#include <cstring>

#if defined(__AVX512F__) || defined(__AVX2__) || defined(__SSE2__)
#include <immintrin.h>
#endif

namespace fastlrp {
inline namespace FASTLRP_ISA_NS {
namespace simd {

#if defined(__AVX512F__)
constexpr const char* kLevel = "AVX-512";
constexpr int kBytes = 64;
#elif defined(__AVX2__) && defined(__FMA__)
constexpr const char* kLevel = "AVX2+FMA";
constexpr int kBytes = 32;
#elif defined(__SSE2__)
constexpr const char* kLevel = "SSE";
constexpr int kBytes = 16;
#else
constexpr const char* kLevel = "scalar";
constexpr int kBytes = 0;
#endif

template <class T>
struct Vec;

#if defined(__AVX512F__)
template <>
struct Vec<float> {
  using V = __m512;
  static constexpr int W = 16;
  static __mmask16 m(int n) { return static_cast<__mmask16>((1u << n) - 1); }
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V load_part(const float* p, int n) { return _mm512_maskz_loadu_ps(m(n), p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static void store_part(float* p, V v, int n) { _mm512_mask_storeu_ps(p, m(n), v); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
};
template <>
struct Vec<double> {
  using V = __m512d;
  static constexpr int W = 8;
  static __mmask8 m(int n) { return static_cast<__mmask8>((1u << n) - 1); }
  static V zero() { return _mm512_setzero_pd(); }
  static V set1(double x) { return _mm512_set1_pd(x); }
  static V load(const double* p) { return _mm512_loadu_pd(p); }
  static V load_part(const double* p, int n) { return _mm512_maskz_loadu_pd(m(n), p); }
  static void store(double* p, V v) { _mm512_storeu_pd(p, v); }
  static void store_part(double* p, V v, int n) { _mm512_mask_storeu_pd(p, m(n), v); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V max(V a, V b) { return _mm512_max_pd(a, b); }
  static V min(V a, V b) { return _mm512_min_pd(a, b); }
};
#elif defined(__AVX2__) && defined(__FMA__)
// Lane masks for AVX2's masked loads and stores: the first n of W lanes.
alignas(32) inline const int kMask32[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
alignas(32) inline const long long kMask64[8] = {-1, -1, -1, -1, 0, 0, 0, 0};
template <>
struct Vec<float> {
  using V = __m256;
  static constexpr int W = 8;
  static __m256i m(int n) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMask32 + 8 - n)); }
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V load_part(const float* p, int n) { return _mm256_maskload_ps(p, m(n)); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static void store_part(float* p, V v, int n) { _mm256_maskstore_ps(p, m(n), v); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
};
template <>
struct Vec<double> {
  using V = __m256d;
  static constexpr int W = 4;
  static __m256i m(int n) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMask64 + 4 - n)); }
  static V zero() { return _mm256_setzero_pd(); }
  static V set1(double x) { return _mm256_set1_pd(x); }
  static V load(const double* p) { return _mm256_loadu_pd(p); }
  static V load_part(const double* p, int n) { return _mm256_maskload_pd(p, m(n)); }
  static void store(double* p, V v) { _mm256_storeu_pd(p, v); }
  static void store_part(double* p, V v, int n) { _mm256_maskstore_pd(p, m(n), v); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V max(V a, V b) { return _mm256_max_pd(a, b); }
  static V min(V a, V b) { return _mm256_min_pd(a, b); }
};
#elif defined(__SSE2__)
// No FMA at this level: a multiply, then an add, each rounded (the scalar tails do the same;
// the build turns off contraction so that the compiler never fuses one and not the other).
template <>
struct Vec<float> {
  using V = __m128;
  static constexpr int W = 4;
  static V zero() { return _mm_setzero_ps(); }
  static V set1(float x) { return _mm_set1_ps(x); }
  static V load(const float* p) { return _mm_loadu_ps(p); }
  static V load_part(const float* p, int n) {
    alignas(16) float t[4] = {0, 0, 0, 0};
    std::memcpy(t, p, sizeof(float) * n);
    return _mm_load_ps(t);
  }
  static void store(float* p, V v) { _mm_storeu_ps(p, v); }
  static void store_part(float* p, V v, int n) {
    alignas(16) float t[4];
    _mm_store_ps(t, v);
    std::memcpy(p, t, sizeof(float) * n);
  }
  static V fmadd(V a, V b, V c) { return _mm_add_ps(_mm_mul_ps(a, b), c); }
  static V add(V a, V b) { return _mm_add_ps(a, b); }
  static V max(V a, V b) { return _mm_max_ps(a, b); }
  static V min(V a, V b) { return _mm_min_ps(a, b); }
};
template <>
struct Vec<double> {
  using V = __m128d;
  static constexpr int W = 2;
  static V zero() { return _mm_setzero_pd(); }
  static V set1(double x) { return _mm_set1_pd(x); }
  static V load(const double* p) { return _mm_loadu_pd(p); }
  static V load_part(const double* p, int) { return _mm_load_sd(p); }  // n == 1
  static void store(double* p, V v) { _mm_storeu_pd(p, v); }
  static void store_part(double* p, V v, int) { _mm_store_sd(p, v); }
  static V fmadd(V a, V b, V c) { return _mm_add_pd(_mm_mul_pd(a, b), c); }
  static V add(V a, V b) { return _mm_add_pd(a, b); }
  static V max(V a, V b) { return _mm_max_pd(a, b); }
  static V min(V a, V b) { return _mm_min_pd(a, b); }
};
#else
template <class T>
struct Vec {
  using V = T;
  static constexpr int W = 1;
  static V zero() { return T(0); }
  static V set1(T x) { return x; }
  static V load(const T* p) { return *p; }
  static V load_part(const T* p, int) { return *p; }
  static void store(T* p, V v) { *p = v; }
  static void store_part(T* p, V v, int) { *p = v; }
  static V fmadd(V a, V b, V c) { return a * b + c; }
  static V add(V a, V b) { return a + b; }
  static V max(V a, V b) { return a < b ? b : a; }
  static V min(V a, V b) { return b < a ? b : a; }
};
#endif

// Element-wise loops over whole vectors written with GCC's vector extensions (lane-wise
// arithmetic, comparisons and ?: selections): Lanes<T> values of the level's width, one where
// there is no vector unit. Loaded and stored with memcpy (no alignment needed).
template <class T>
constexpr int kLanes = kBytes > 0 ? kBytes / static_cast<int>(sizeof(T)) : 1;
template <class T>
struct LanesOf {  // (an alias template would drop the attribute)
  typedef T type __attribute__((vector_size(kLanes<T> * sizeof(T))));
  static_assert(sizeof(type) == kLanes<T> * sizeof(T), "a vector of kLanes values");
};
template <class T>
using Lanes = typename LanesOf<T>::type;

template <class T>
inline Lanes<T> load_lanes(const T* p) {
  Lanes<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T>
inline void store_lanes(T* p, Lanes<T> v) {
  std::memcpy(p, &v, sizeof v);
}

// safe_ratio (common.hpp) lane by lane, with the same operations: r / stab(z), 0 where stab(z)
// is 0 (that lane's quotient is computed and selected away)
template <class T>
inline Lanes<T> safe_ratio_lanes(Lanes<T> r, Lanes<T> z, T eps) {
  const Lanes<T> zero = Lanes<T>{}, e = zero + eps;
  const Lanes<T> d = z >= zero ? z + e : z - e;
  const Lanes<T> q = r / d;
  return d == zero ? zero : q;
}

}  // namespace simd
}  // namespace FASTLRP_ISA_NS
}  // namespace fastlrp
