// Helpers shared by the bindings: numpy arrays as Eigen maps, keeping arrays alive, rules.
#pragma once

#include <pybind11/eigen.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "fastlrp/common.hpp"
#include "fastlrp/rules.hpp"

namespace fastlrp::bindings {

namespace py = pybind11;



template <class T>
using CArray = py::array_t<T, py::array::c_style>;

template <class T>
ConstMatrixMap<T> as_matrix(const CArray<T>& a, const char* what) {
  if (a.ndim() != 2) throw std::invalid_argument(std::string(what) + " must be 2-D, got " + std::to_string(a.ndim()) + "-D");
  return ConstMatrixMap<T>(a.data(), a.shape(0), a.shape(1));
}

template <class T>
RowVector<T> as_row(const CArray<T>& a) {
  return Eigen::Map<const RowVector<T>>(a.data(), a.size());
}

// Keeps a numpy array alive while C++ views its data; released with the GIL held.
template <class T>
std::shared_ptr<const void> keep_alive(const CArray<T>& a) {
  return std::shared_ptr<const void>(new py::object(a), [](const void* p) {
    py::gil_scoped_acquire gil;
    delete static_cast<const py::object*>(p);
  });
}

inline RuleParams make_rule(int kind, double epsilon, double alpha, double beta, double gamma, double stabilizer = kStabilizer) {
  if (kind < 0 || kind > static_cast<int>(RuleKind::Flat)) throw std::invalid_argument("unknown rule kind " + std::to_string(kind));
  RuleParams r;
  r.kind = static_cast<RuleKind>(kind);
  r.epsilon = epsilon;
  r.alpha = alpha;
  r.beta = beta;
  r.gamma = gamma;
  if (!(stabilizer >= 0.0)) throw std::invalid_argument("the stabilizer must be >= 0");
  r.stabilizer = stabilizer;
  return r;
}

// A rule from Python (fastlrp.rules builds core.RuleParams), checked.
inline RuleParams checked_rule(RuleParams r) {
  if (!(r.stabilizer >= 0.0)) throw std::invalid_argument("the stabilizer must be >= 0");
  if (!(r.epsilon >= 0.0)) throw std::invalid_argument("epsilon must be >= 0");
  return r;
}

}  // namespace fastlrp::bindings
