// exp and the logistic function written as plain arithmetic that the compiler vectorises: every
// element, in a vector lane or in the scalar tail, goes through the same IEEE operations
// (-ffp-contract=off), so equal inputs give equal bits wherever they sit. The C library's expf
// is scalar and was an eighth of an EfficientNet forward pass (its SiLUs).
//
// Method (Cody-Waite range reduction and a polynomial, as the Cephes library computes exp):
// x = n ln2 + r with n = round(x / ln2), |r| <= ln2 / 2; exp(x) = 2^n p(r). float: a degree-7
// minimax-style polynomial (Cephes' expf coefficients), about 1 ulp; double: the Taylor series to
// degree 13 (truncation below 5e-18 relative on |r| <= ln2 / 2). n is read from the bits of
// x / ln2 + 1.5 * 2^m (the round-to-nearest trick) so that only integer adds and shifts remain.
#pragma once

#include "fastlrp/isa.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace fastlrp {
inline namespace FASTLRP_ISA_NS {
namespace vmath {

template <class To, class From>
inline To bits(From v) {
  static_assert(sizeof(To) == sizeof(From), "bit cast between equal sizes");
  To out;
  std::memcpy(&out, &v, sizeof(To));
  return out;
}

inline float exp(float x) {
  const float lo = -87.33654f, hi = 88.37626f;  // exp(lo) is the smallest normal float
  const bool under = x < lo;
  x = std::min(std::max(x, lo), hi);
  const float magic = 12582912.0f;  // 1.5 * 2^23
  const float t = x * 1.44269504088896341f + magic;
  const float n = t - magic;
  const std::int32_t i = bits<std::int32_t>(t) - bits<std::int32_t>(magic);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const float y = p * bits<float>((i + 127) << 23);
  return under ? 0.0f : y;
}

inline double exp(double x) {
  const double lo = -708.39641853226408, hi = 709.0;  // exp(lo) is the smallest normal double
  const bool under = x < lo;
  x = std::min(std::max(x, lo), hi);
  const double magic = 6755399441055744.0;  // 1.5 * 2^52
  const double t = x * 1.4426950408889634074 + magic;
  const double n = t - magic;
  const std::int64_t i = bits<std::int64_t>(t) - bits<std::int64_t>(magic);
  double r = x - n * 6.93147180369123816490e-01;  // ln2 split in a high part with trailing zeros
  r = r - n * 1.90821492927058770002e-10;
  double p = 1.0 / 6227020800.0;  // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const double y = p * bits<double>((i + 1023) << 52);
  return under ? 0.0 : y;
}

// 1 / (1 + exp(-v)), written so that exp never overflows. Every operation runs for every
// element and only values are selected: the compiler does not speculate a division that a
// branch guards (trapping math), so a branch would keep the loop scalar.
template <class T>
inline T sigmoid(T v) {
  const T e = vmath::exp(-std::fabs(v));  // exp(-|v|), in (0, 1]
  const T num = v >= T(0) ? T(1) : e;
  return num / (T(1) + e);
}

}  // namespace vmath
}  // namespace FASTLRP_ISA_NS
}  // namespace fastlrp
