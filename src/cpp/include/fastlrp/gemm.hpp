// Matrix products of the dense kernels, with a split for tiny batches.
//
// For a batch of one sample a product is a matrix-vector product that streams the weights
// from memory. With one chunk of the batch per thread (network.hpp) a single sample would run
// on one core; here both cores each take half of the weight rows instead, so each core's half
// of the weights stays in its own L2 cache across the forward and backward passes. Networks
// with convolutions (one team of threads per layer) split their dense layers the same way.
#pragma once

#include "fastlrp/common.hpp"
#include "fastlrp/workspace.hpp"

namespace fastlrp::kernels {

// Products smaller than this many weights are not worth a fork/join.
constexpr Index kSplitMinWeights = 1 << 14;

// `threads`: the threads this call may use (1 inside a per-thread chunk of a batch).
inline int split_threads(int threads, Index weights) {
#ifdef _OPENMP
  if (threads <= 1 || weights < kSplitMinWeights || omp_in_parallel()) return 1;
  return threads;
#else
  (void)threads;
  (void)weights;
  return 1;
#endif
}

// C = A B^T, B row-major (out, in): the forward product. Split over the rows of B.
template <class T, class MA, class MB, class MC>
void product_nt(const MA& A, const MB& B, MC&& C, int threads) {
  threads = split_threads(threads, B.size());
  if (threads <= 1) {
    C.noalias() = A * B.transpose();
    return;
  }
  const Index o = B.rows();
#pragma omp parallel for num_threads(threads) schedule(static, 1)
  for (int t = 0; t < threads; ++t) {
    const Index j0 = o * t / threads, j1 = o * (t + 1) / threads;
    C.middleCols(j0, j1 - j0).noalias() = A * B.middleRows(j0, j1 - j0).transpose();
  }
}

// C = S B, B row-major (out, in): the backward product. Split over the rows of B (the same
// rows each thread read in product_nt), each thread summing into its own partial result.
template <class T, class MS, class MB, class MC>
void product_nn(const MS& S, const MB& B, MC&& C, Workspace& ws, int threads) {
  threads = split_threads(threads, B.size());
  if (threads <= 1) {
    C.noalias() = S * B;
    return;
  }
  const Index o = B.rows(), n = S.rows(), i = B.cols();
  const auto mark = ws.mark();
  MatrixMap<T> partial = ws.matrix<T>(n * (threads - 1), i);
#pragma omp parallel for num_threads(threads) schedule(static, 1)
  for (int t = 0; t < threads; ++t) {
    const Index j0 = o * t / threads, j1 = o * (t + 1) / threads;
    if (t == 0)
      C.noalias() = S.middleCols(j0, j1 - j0) * B.middleRows(j0, j1 - j0);
    else
      partial.middleRows(n * (t - 1), n).noalias() = S.middleCols(j0, j1 - j0) * B.middleRows(j0, j1 - j0);
  }
  for (int t = 1; t < threads; ++t) C += partial.middleRows(n * (t - 1), n);
  ws.release(mark);
}

}  // namespace fastlrp::kernels
