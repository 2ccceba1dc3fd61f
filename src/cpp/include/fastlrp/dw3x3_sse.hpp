// The SSE (x86-64-v2) body of the depthwise 3x3 kernel (grouped.hpp, dw3x3_rows): groups of 6
// output pixels of one vector of 4 float channels, all three source rows present.
//
// Why assembly: at this level there is no FMA and no three-operand form, so every multiply-add is
// a load, a multiply and an add through a scratch register. Six chains side by side need 9
// weights + 6 accumulators + 1 scratch = all 16 XMM registers; GCC's allocation of the same loop
// written with intrinsics spilled weights and accumulators to the stack (and merged loads of one
// column into registers it then had to spill), so the kernel kept 3 chains, which the 3-cycle add
// latency bounds. Written out, the loop keeps all 16 in registers: 1.3x the 3-pixel kernel's
// rate from L1 (bench/README.md, seventeenth session).
//
// The arithmetic is the same chain as every other depthwise kernel's, in the same order: start
// (the bias, or the value already in the output), then for ky = 0..2, kx = 0..2:
// acc = acc + x * w[ky][kx], a rounded multiply, then a rounded add. So the values are the same
// bits as the intrinsics kernels' (tests/test_isa.py checks it at every level).
#pragma once

#include "fastlrp/isa.hpp"

#if defined(__x86_64__) && defined(__SSE2__) && !defined(__AVX__) && defined(__GNUC__)
#define FASTLRP_DW3X3_SSE_ASM 1

namespace fastlrp {
inline namespace FASTLRP_ISA_NS {
namespace kernels {

// Addresses of columns 0..7 of a row from its base b (column j at b + j * cb bytes).
#define FL_DW_COL0(b) "(" b ")"
#define FL_DW_COL1(b) "(" b ",%[cb],1)"
#define FL_DW_COL2(b) "(" b ",%[cb],2)"
#define FL_DW_COL3(b) "(" b ",%[cb3],1)"
#define FL_DW_COL4(b) "(" b ",%[cb],4)"
#define FL_DW_COL5(b) "(" b ",%[cb5],1)"
#define FL_DW_COL6(b) "(" b ",%[cb3],2)"
#define FL_DW_COL7(b) "(" b ",%[cb7],1)"
// acc (xmm9 + pixel) += source * weight (xmm0 + tap), through xmm15
#define FL_DW_TAP(src, w, acc) \
  "movups " src ", %%xmm15\n\tmulps %%xmm" w ", %%xmm15\n\taddps %%xmm15, %%xmm" acc "\n\t"
// one tap for the 6 pixels, pixel p reading column A<p>
#define FL_DW_SIX(b, w, A0, A1, A2, A3, A4, A5)                                                    \
  FL_DW_TAP(A0(b), w, "9") FL_DW_TAP(A1(b), w, "10") FL_DW_TAP(A2(b), w, "11") FL_DW_TAP(A3(b), w, "12") \
  FL_DW_TAP(A4(b), w, "13") FL_DW_TAP(A5(b), w, "14")
// the three taps of one source row; b is the row at column x - 1. Forward, pixel x + p reads
// column p + kx; backward (the gather), column p + 2 - kx.
#define FL_DW_ROW_FORWARD(b, w0, w1, w2)                                                          \
  FL_DW_SIX(b, w0, FL_DW_COL0, FL_DW_COL1, FL_DW_COL2, FL_DW_COL3, FL_DW_COL4, FL_DW_COL5)        \
  FL_DW_SIX(b, w1, FL_DW_COL1, FL_DW_COL2, FL_DW_COL3, FL_DW_COL4, FL_DW_COL5, FL_DW_COL6)        \
  FL_DW_SIX(b, w2, FL_DW_COL2, FL_DW_COL3, FL_DW_COL4, FL_DW_COL5, FL_DW_COL6, FL_DW_COL7)
#define FL_DW_ROW_BACKWARD(b, w0, w1, w2)                                                         \
  FL_DW_SIX(b, w0, FL_DW_COL2, FL_DW_COL3, FL_DW_COL4, FL_DW_COL5, FL_DW_COL6, FL_DW_COL7)        \
  FL_DW_SIX(b, w1, FL_DW_COL1, FL_DW_COL2, FL_DW_COL3, FL_DW_COL4, FL_DW_COL5, FL_DW_COL6)        \
  FL_DW_SIX(b, w2, FL_DW_COL0, FL_DW_COL1, FL_DW_COL2, FL_DW_COL3, FL_DW_COL4, FL_DW_COL5)
// the accumulators' start: the output's own values, or the same 4 values (the bias) for all
#define FL_DW_START_OUTPUT                                                                            \
  "movups (%[o]), %%xmm9\n\tmovups (%[o],%[cb],1), %%xmm10\n\tmovups (%[o],%[cb],2), %%xmm11\n\t" \
  "movups (%[o],%[cb3],1), %%xmm12\n\tmovups (%[o],%[cb],4), %%xmm13\n\tmovups (%[o],%[cb5],1), %%xmm14\n\t"
#define FL_DW_START_BIAS                                                                  \
  "movups (%[start]), %%xmm9\n\tmovups (%[start]), %%xmm10\n\tmovups (%[start]), %%xmm11\n\t" \
  "movups (%[start]), %%xmm12\n\tmovups (%[start]), %%xmm13\n\tmovups (%[start]), %%xmm14\n\t"
#define FL_DW_LOOP(START, ROW)                                                                         \
  "movaps 0(%[w]), %%xmm0\n\tmovaps 16(%[w]), %%xmm1\n\tmovaps 32(%[w]), %%xmm2\n\t"                  \
  "movaps 48(%[w]), %%xmm3\n\tmovaps 64(%[w]), %%xmm4\n\tmovaps 80(%[w]), %%xmm5\n\t"                 \
  "movaps 96(%[w]), %%xmm6\n\tmovaps 112(%[w]), %%xmm7\n\tmovaps 128(%[w]), %%xmm8\n\t"               \
  "1:\n\t" START ROW("%[r0]", "0", "1", "2") ROW("%[r1]", "3", "4", "5") ROW("%[r2]", "6", "7", "8") \
  "movups %%xmm9, (%[o])\n\tmovups %%xmm10, (%[o],%[cb],1)\n\tmovups %%xmm11, (%[o],%[cb],2)\n\t"      \
  "movups %%xmm12, (%[o],%[cb3],1)\n\tmovups %%xmm13, (%[o],%[cb],4)\n\tmovups %%xmm14, (%[o],%[cb5],1)\n\t" \
  "lea (%[r0],%[cb3],2), %[r0]\n\tlea (%[r1],%[cb3],2), %[r1]\n\tlea (%[r2],%[cb3],2), %[r2]\n\t"     \
  "lea (%[o],%[cb3],2), %[o]\n\tdec %[n]\n\tjnz 1b\n\t"
#define FL_DW_OPERANDS                                                                                \
  : [r0] "+r"(r0), [r1] "+r"(r1), [r2] "+r"(r2), [o] "+r"(out), [n] "+r"(groups)                    \
  : [w] "r"(w), [start] "r"(start), [cb] "r"(cb), [cb3] "r"(cb3), [cb5] "r"(cb5), [cb7] "r"(cb7)     \
  : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
    "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"

// groups (>= 1) of 6 pixels x, ..., x + 5 of one vector of channels. r0, r1, r2: the source
// rows of the weights' rows 0, 1, 2 (as dw3x3_rows orders them), at column x - 1 and the
// vector's first channel; out: pixel x's first channel; C: the channels (the pixel stride);
// w: the 9 taps' weight vectors in (row, kx) order, 4 floats each, 16-byte aligned. The chains
// start from out's values (FromOutput) or from the 4 values at start (the bias, or zeros).
template <bool Back, bool FromOutput>
inline void dw3x3_sse_groups(const float* r0, const float* r1, const float* r2, float* out, const float* w,
                             const float* start, long C, long groups) {
  const long cb = C * static_cast<long>(sizeof(float)), cb3 = 3 * cb, cb5 = 5 * cb, cb7 = 7 * cb;
  if constexpr (Back && FromOutput)
    asm volatile(FL_DW_LOOP(FL_DW_START_OUTPUT, FL_DW_ROW_BACKWARD) FL_DW_OPERANDS);
  else if constexpr (Back)
    asm volatile(FL_DW_LOOP(FL_DW_START_BIAS, FL_DW_ROW_BACKWARD) FL_DW_OPERANDS);
  else if constexpr (FromOutput)
    asm volatile(FL_DW_LOOP(FL_DW_START_OUTPUT, FL_DW_ROW_FORWARD) FL_DW_OPERANDS);
  else
    asm volatile(FL_DW_LOOP(FL_DW_START_BIAS, FL_DW_ROW_FORWARD) FL_DW_OPERANDS);
}

#undef FL_DW_COL0
#undef FL_DW_COL1
#undef FL_DW_COL2
#undef FL_DW_COL3
#undef FL_DW_COL4
#undef FL_DW_COL5
#undef FL_DW_COL6
#undef FL_DW_COL7
#undef FL_DW_TAP
#undef FL_DW_SIX
#undef FL_DW_ROW_FORWARD
#undef FL_DW_ROW_BACKWARD
#undef FL_DW_START_OUTPUT
#undef FL_DW_START_BIAS
#undef FL_DW_LOOP
#undef FL_DW_OPERANDS

}  // namespace kernels
}  // namespace FASTLRP_ISA_NS
}  // namespace fastlrp

#endif
