// fastlrp's GEMM (src/cpp/include/fastlrp/gemm.hpp) against the definition it promises: every
// output is one chain of multiply-adds over k in order (fused where the ISA has FMA), the same
// bits including the sign of zero, for shapes with row and column tails, k-blocking, sparse
// rows (A's zeros skipped, also where products underflow to zeros of either sign, and A long
// enough to be compressed in two blocks of rows), accumulation into C, and B packed ahead
// (PackedB, as dense layers keep their weights), whole or a range of its panels at a time (as
// threads split it). Built and run by
// tests/test_gemm_exact.py at each ISA level the CPU runs; prints "total bad 0" when exact.
#include "fastlrp/gemm.hpp"
#include <random>
#include <cstdio>
#include <cmath>
using namespace fastlrp::kernels;
// tiny: A's nonzeros and half of B are so small that their products underflow to zero of either
// sign, so that many chains end at +0 or -0: skipping A's zeros (gemm.hpp) must not change which.
template <class T> int check(int m, int n, int k, double zero_frac, bool acc, int packed, bool tiny = false) {
  std::mt19937 g(m * 1000 + n * 10 + k);
  std::normal_distribution<double> d;
  std::uniform_real_distribution<double> u;
  std::vector<T> A(m * k), B(k * n), C(m * n), R(m * n);
  const T t = tiny ? T(sizeof(T) == 8 ? 1e-170 : 1e-25) : T(1);
  // A's zeros of both signs: a skipped -0 term must leave the chain's bits as the full chain's
  for (auto& x : A) x = u(g) < zero_frac ? (u(g) < 0.5 ? T(0) : -T(0)) : T(d(g)) * t;
  for (auto& x : B) x = u(g) < 0.5 ? T(d(g)) * t : T(d(g));
  for (int i = 0; i < m * n; ++i) C[i] = R[i] = acc ? T(d(g)) : T(0);
  if (packed == 0) {
    gemm<T>(m, n, k, A.data(), k, B.data(), n, C.data(), n, acc);
  } else {  // 1: all panels in one call; 2: panel by panel
    PackedB<T> pb;
    pb.pack(B.data(), k, n, n);
    const long panels = pb.panels();
    if (packed == 1)
      gemm_packed<T>(m, A.data(), k, B.data(), n, pb, 0, panels, C.data(), n, acc);
    else
      for (long p = 0; p < panels; ++p) gemm_packed<T>(m, A.data(), k, B.data(), n, pb, p, p + 1, C.data(), n, acc);
  }
  int bad = 0;
  for (int i = 0; i < m; ++i) for (int j = 0; j < n; ++j) {
    T s = acc ? R[i * n + j] : T(0);
    for (int kk = 0; kk < k; ++kk) {
#ifdef __FMA__
      s = std::fma(A[i * k + kk], B[kk * n + j], s);
#else
      s = s + A[i * k + kk] * B[kk * n + j];
#endif
    }
    if (!(s == C[i * n + j]) || std::signbit(s) != std::signbit(C[i*n+j])) ++bad;
  }
  return bad;
}
int main() {
  int bad = 0;
  for (int m : {1, 5, 7, 100, 130}) for (int n : {1, 3, 16, 17, 64, 70, 200, 300}) for (int k : {1, 9, 300, 600})
    for (double z : {0.0, 0.5, 0.9}) for (bool acc : {false, true}) for (int packed : {0, 1, 2}) {
      int b = check<float>(m, n, k, z, acc, packed) + check<double>(m, n, k, z, acc, packed);
      if (b) { printf("bad m=%d n=%d k=%d z=%g acc=%d packed=%d: %d\n", m, n, k, z, acc, packed, b); bad += b; }
    }
  for (int m : {7, 100}) for (int n : {200, 300}) for (int k : {9, 300}) for (double z : {0.5, 0.9})
    for (int packed : {0, 1}) {
      int b = check<float>(m, n, k, z, false, packed, true) + check<double>(m, n, k, z, false, packed, true);
      if (b) { printf("bad tiny m=%d n=%d k=%d z=%g packed=%d: %d\n", m, n, k, z, packed, b); bad += b; }
    }
  // k so long that the zero-skipping path compresses A in two blocks of rows
  for (int packed : {0, 1}) {
    int b = check<float>(100, 100, 12000, 0.9, false, packed) + check<double>(100, 100, 12000, 0.9, false, packed);
    if (b) { printf("bad long k packed=%d: %d\n", packed, b); bad += b; }
  }
  printf("total bad %d\n", bad);
}
