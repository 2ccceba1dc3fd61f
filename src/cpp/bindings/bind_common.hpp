// Helpers shared by the bindings: numpy arrays as Eigen maps, keeping arrays alive, rules.
#pragma once

#include "fastlrp/isa.hpp"

#include <pybind11/eigen.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <vector>
#include <string>

#include "fastlrp/common.hpp"
#include "fastlrp/network.hpp"

namespace fastlrp {
inline namespace FASTLRP_ISA_NS {
namespace bindings {

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

// A Gather layer from a 1-D int64 index array (fastlrp.layers' channel shuffles, slices, pads).
template <class T>
kernels::Layer<T> gather_layer(Index in, const CArray<std::int64_t>& idx) {
  static_assert(sizeof(Index) == sizeof(std::int64_t), "Index must be 64-bit");
  if (idx.ndim() != 1) throw std::invalid_argument("gather index must be 1-D, got " + std::to_string(idx.ndim()) + "-D");
  return kernels::make_gather<T>(in, reinterpret_cast<const Index*>(idx.data()), static_cast<Index>(idx.size()));
}

// A rule from Python (fastlrp.rules builds core.RuleParams), checked.
inline RuleParams checked_rule(RuleParams r) {
  if (!(r.stabilizer >= 0.0)) throw std::invalid_argument("the stabilizer must be >= 0");
  if (!(r.epsilon >= 0.0)) throw std::invalid_argument("epsilon must be >= 0");
  return r;
}

inline kernels::Geometry geometry(Index C, Index H, Index W, Index kh, Index kw, Index sh, Index sw, Index ph, Index pw,
                                  Index dh, Index dw, Index ph_end = -1, Index pw_end = -1) {
  kernels::Geometry g;
  g.C = C, g.H = H, g.W = W, g.kh = kh, g.kw = kw, g.sh = sh, g.sw = sw, g.ph = ph, g.pw = pw, g.dh = dh, g.dw = dw;
  if (ph_end < -1 || pw_end < -1) throw std::invalid_argument("padding after the image must be >= 0");
  g.ph_end = ph_end, g.pw_end = pw_end;
  return g;
}

inline kernels::Activation activation_kind(int kind) {
  if (kind < 0 || kind > static_cast<int>(kernels::Activation::Mish))
    throw std::invalid_argument("unknown activation " + std::to_string(kind));
  return static_cast<kernels::Activation>(kind);
}

template <class T>
std::vector<T> as_vector(const CArray<T>& a) {
  return std::vector<T>(a.data(), a.data() + a.size());
}

// The layers both bindings build from numpy arrays, checked (weights viewed, not copied).
template <class T>
kernels::Layer<T> dense_layer(const CArray<T>& W, const CArray<T>& b, const RuleParams& rule, const CArray<T>& low,
                              const CArray<T>& high) {
  ConstMatrixMap<T> w = as_matrix(W, "weight");
  if (b.size() != w.rows()) throw std::invalid_argument("bias size does not match the weight's rows");
  const RuleParams r = checked_rule(rule);
  if (r.kind == RuleKind::ZBox && (low.size() != w.cols() || high.size() != w.cols()))
    throw std::invalid_argument("ZBox bounds must have one entry per input feature");
  return kernels::make_dense<T>(w.data(), w.rows(), w.cols(), keep_alive(W), as_row(b), r, as_vector(low),
                                as_vector(high));
}

template <class T>
kernels::Layer<T> conv_layer(const kernels::Geometry& g, Index groups, const CArray<T>& weight, const CArray<T>& bias,
                             const RuleParams& rule, const CArray<T>& low, const CArray<T>& high) {
  ConstMatrixMap<T> w = as_matrix(weight, "conv weight");
  if (bias.size() != w.rows()) throw std::invalid_argument("bias size does not match the conv weight");
  if (groups != 1)  // the weights are copied into the grouped kernels' tap-major layout
    return kernels::make_grouped_conv<T>(g, groups, w.data(), w.rows(), w.cols(), as_row(bias), checked_rule(rule),
                                         as_vector(low), as_vector(high));
  return kernels::make_conv<T>(g, w.data(), w.rows(), w.cols(), keep_alive(weight), as_row(bias), checked_rule(rule),
                               as_vector(low), as_vector(high));
}

using Targets = std::optional<py::array_t<std::int64_t, py::array::c_style>>;

// One class per sample, each in [0, classes): checked, then viewed.
inline std::optional<Eigen::Map<const Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1>>> target_map(const Targets& targets,
                                                                                                  Index samples,
                                                                                                  Index classes) {
  if (!targets) return std::nullopt;
  if (targets->size() != samples) throw std::invalid_argument("need one target per sample");
  for (Index i = 0; i < targets->size(); ++i)
    if (targets->data()[i] < 0 || targets->data()[i] >= classes) throw std::invalid_argument("target out of range");
  return Eigen::Map<const Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1>>(targets->data(), targets->size());
}

// An explanation as Python's (relevance, output, conservation, layers or None, targets or None).
template <class E>
py::tuple explanation_tuple(E&& e, bool layerwise, bool seeded) {
  py::object layers = py::none();
  if (layerwise) {
    py::list l;
    for (auto& a : e.layers) l.append(py::cast(std::move(a)));
    layers = l;
  }
  py::object tg = seeded ? py::object(py::none()) : py::cast(std::move(e.targets));
  return py::make_tuple(py::cast(std::move(e.relevance)), py::cast(std::move(e.output)), py::cast(std::move(e.conservation)),
                        layers, tg);
}

}  // namespace bindings
}  // namespace FASTLRP_ISA_NS
}  // namespace fastlrp
