// Shared types and small helpers of the fastlrp kernels (no pybind11 here).
#pragma once

#include "fastlrp/isa.hpp"

#include <Eigen/Dense>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastlrp {
inline namespace FASTLRP_ISA_NS {

using Index = Eigen::Index;

template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;
template <class T>
using RowVector = Eigen::Matrix<T, 1, Eigen::Dynamic>;
template <class T>
using MatrixMap = Eigen::Map<RowMatrix<T>>;
template <class T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>>;
template <class T>
using ColMatrixMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>>;

// Thread count used by every kernel. Kept here (not in OpenMP's per-thread ICV) so that a
// value set from one Python thread holds for calls made from any other thread.
inline std::atomic<int>& num_threads_setting() {
  static std::atomic<int> n{0};  // 0: all cores
  return n;
}

inline int max_threads() {
#ifdef _OPENMP
  return omp_get_num_procs();
#else
  return 1;
#endif
}

inline int num_threads() {
  int n = num_threads_setting().load();
  return n > 0 ? n : max_threads();
}

inline void set_num_threads(int n) {
  if (n < 0) throw std::invalid_argument("num_threads must be >= 0 (0 = all cores), got " + std::to_string(n));
  num_threads_setting().store(n);
}

// A value made on its first use, once: the first caller runs `make`, concurrent callers wait
// for it. Rules' weight variants that only some inputs need are made this way, so that a
// model holds only the copies its explanations use. Movable (the state sits behind a pointer);
// reset() forgets the value, for a layer prepared again.
template <class X>
class OnFirstUse {
 public:
  template <class Make>
  const X& get(Make&& make) const {
    std::call_once(s_->once, [&] { s_->value = make(); });
    return s_->value;
  }
  void reset() { s_ = std::make_unique<State>(); }

 private:
  struct State {
    std::once_flag once;
    X value;
  };
  std::unique_ptr<State> s_ = std::make_unique<State>();
};

// s(z) = +1 for z >= 0, -1 otherwise; stab(z) = z + eps * s(z).
template <class T>
inline T stabilize(T z, T eps) {
  return z >= T(0) ? z + eps : z - eps;
}

// r / stab(z), with a zero denominator passing no relevance (docs/rules.md: R_j / 0 := 0).
template <class T>
inline T safe_ratio(T r, T z, T eps) {
  const T d = stabilize(z, eps);
  return d == T(0) ? T(0) : r / d;
}

}  // namespace FASTLRP_ISA_NS
}  // namespace fastlrp
