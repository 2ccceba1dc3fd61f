// fastlrp's GEMM (src/cpp/include/fastlrp/gemm.hpp) against the definition it promises: every
// output is one chain of multiply-adds over k in order (fused where the ISA has FMA), the same
// bits including the sign of zero, for shapes with row and column tails, k-blocking, sparse
// rows (the zero-skipping path), and accumulation into C. Built and run by
// tests/test_gemm_exact.py at each ISA level the CPU runs; prints "total bad 0" when exact.
#include "fastlrp/gemm.hpp"
#include <random>
#include <cstdio>
#include <cmath>
using namespace fastlrp::kernels;
template <class T> int check(int m, int n, int k, double zero_frac, bool acc) {
  std::mt19937 g(m * 1000 + n * 10 + k);
  std::normal_distribution<double> d;
  std::uniform_real_distribution<double> u;
  std::vector<T> A(m * k), B(k * n), C(m * n), R(m * n);
  for (auto& x : A) x = u(g) < zero_frac ? T(0) : T(d(g));
  for (auto& x : B) x = T(d(g));
  for (int i = 0; i < m * n; ++i) C[i] = R[i] = acc ? T(d(g)) : T(0);
  gemm<T>(m, n, k, A.data(), k, B.data(), n, C.data(), n, acc);
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
  for (int m : {1, 5, 7, 100, 130}) for (int n : {1, 3, 16, 17, 64, 70, 200}) for (int k : {1, 9, 300, 600})
    for (double z : {0.0, 0.5, 0.9}) for (bool acc : {false, true}) {
      int b = check<float>(m, n, k, z, acc) + check<double>(m, n, k, z, acc);
      if (b) { printf("bad m=%d n=%d k=%d z=%g acc=%d: %d\n", m, n, k, z, acc, b); bad += b; }
    }
  printf("total bad %d\n", bad);
}
