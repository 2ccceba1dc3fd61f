// Binds kernels::Network<T> for float and double through one template.
#include "fastlrp/isa.hpp"
#include <pybind11/eigen.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "fastlrp/network.hpp"
#include "bind_common.hpp"


namespace fastlrp {
inline namespace FASTLRP_ISA_NS {
namespace bindings {

using kernels::Activation;
using kernels::Network;

template <class T>
void bind_for(py::module_& m, const char* name) {
  using Net = Network<T>;
  py::class_<Net>(m, name, "A sequential network whose forward and LRP passes run in C++.")
      .def(py::init<>())
      .def(
          "add_dense",
          [](Net& net, const CArray<T>& W, const CArray<T>& b, const RuleParams& rule, const CArray<T>& low,
             const CArray<T>& high) { net.add(dense_layer(W, b, rule, low, high)); },
          py::arg("weight").noconvert(), py::arg("bias").noconvert(), py::arg("rule"), py::arg("low").noconvert(),
          py::arg("high").noconvert(),
          "Append a Dense layer with its rule (the weight array is kept and viewed, not copied; it must not change).")
      .def(
          "add_activation",
          [](Net& net, int kind, double param, Index width) {
            net.add_activation(activation_kind(kind), T(param), width);
          },
          py::arg("kind"), py::arg("param"), py::arg("width"), "Append an element-wise layer.")
      .def(
          "add_affine",
          [](Net& net, const CArray<T>& scale, const CArray<T>& shift, const RuleParams& rule) {
            if (scale.size() != shift.size()) throw std::invalid_argument("scale and shift differ in size");
            net.add_affine(as_row(scale), as_row(shift), checked_rule(rule));
          },
          py::arg("scale").noconvert(), py::arg("shift").noconvert(), py::arg("rule"),
          "Append an element-wise affine layer (an unfolded BatchNorm).")
      .def(
          "add_conv",
          [](Net& net, Index C, Index H, Index W, const CArray<T>& weight, const CArray<T>& bias, Index kh, Index kw,
             Index sh, Index sw, Index ph, Index pw, Index dh, Index dw, Index groups, const RuleParams& rule,
             const CArray<T>& low, const CArray<T>& high, Index ph_end, Index pw_end) {
            net.add(conv_layer(geometry(C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, ph_end, pw_end), groups, weight, bias, rule, low, high));
          },
          py::arg("C"), py::arg("H"), py::arg("W"), py::arg("weight").noconvert(), py::arg("bias").noconvert(),
          py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"), py::arg("dh"),
          py::arg("dw"), py::arg("groups"), py::arg("rule"), py::arg("low").noconvert(), py::arg("high").noconvert(),
          py::arg("ph_end") = -1, py::arg("pw_end") = -1,
          "Append a Conv2d over an NHWC image; weight (out, kh*kw*C/groups) in (ky, kx, c) order.")
      .def(
          "add_pool",
          [](Net& net, int kind, Index C, Index H, Index W, Index kh, Index kw, Index sh, Index sw, Index ph, Index pw,
             bool count_include_pad, bool proportional, const RuleParams& rule, const CArray<T>& low,
             bool ceil_mode) {
            net.add_pool(kernels::Pool2d<T>::make(kind, C, H, W, kh, kw, sh, sw, ph, pw, count_include_pad, proportional,
                                                  checked_rule(rule), as_vector(low), ceil_mode));
          },
          py::arg("kind"), py::arg("C"), py::arg("H"), py::arg("W"), py::arg("kh"), py::arg("kw"), py::arg("sh"),
          py::arg("sw"), py::arg("ph"), py::arg("pw"), py::arg("count_include_pad"), py::arg("proportional"),
          py::arg("rule"), py::arg("low").noconvert(), py::arg("ceil_mode") = false,
          "Append a pooling layer (0 avg, 1 sum, 2 max, 3 adaptive avg).")
      .def(
          "add_gather", [](Net& net, Index in, const CArray<std::int64_t>& index) { net.add(gather_layer<T>(in, index)); },
          py::arg("in_width"), py::arg("index").noconvert(),
          "Append a Gather: output j copies input index[j] (-1: zero); indices distinct; LRP moves relevance back.")
      .def("add_flatten", &Net::add_flatten, py::arg("C"), py::arg("H"), py::arg("W"),
           "Append a Flatten of an NHWC image into NCHW order.")
      .def_property_readonly("in_features", &Net::in_features)
      .def_property_readonly("out_features", &Net::out_features)
      .def_property_readonly("skips_last", &Net::skips_last)
      .def(
          "forward",
          [](const Net& net, const CArray<T>& x) {
            ConstMatrixMap<T> X = as_matrix(x, "input");
            // Safe without the GIL: x is kept alive by the caller's reference and read only;
            // the network is not modified after construction.
            py::gil_scoped_release release;
            return net.forward(X);
          },
          py::arg("x").noconvert(), "The model's output for a batch x (N, in).")
      .def(
          "forward_all",
          [](const Net& net, const CArray<T>& x) {
            ConstMatrixMap<T> X = as_matrix(x, "input");
            std::vector<RowMatrix<T>> outs;
            {
              // Safe without the GIL: as forward().
              py::gil_scoped_release release;
              outs = net.forward_all(X);
            }
            py::list l;
            for (auto& a : outs) l.append(py::cast(std::move(a)));
            return l;
          },
          py::arg("x").noconvert(), "Every layer's output for a batch x (a list, one (N, width) array per layer).")
      .def(
          "explain",
          [](const Net& net, const CArray<T>& x, const Targets& targets, std::optional<CArray<T>> start, bool layerwise,
             std::optional<std::vector<CArray<T>>> given) {
            ConstMatrixMap<T> X = as_matrix(x, "input");
            std::vector<ConstMatrixMap<T>> given_maps;
            if (given)
              for (const auto& a : *given) given_maps.push_back(as_matrix(a, "given activation"));
            const auto t = target_map(targets, X.rows(), net.logits_features());
            std::optional<ConstMatrixMap<T>> s;
            if (start) s.emplace(as_matrix(*start, "start relevance"));
            kernels::Explanation<T> e;
            {
              // Safe without the GIL: inputs are read only and owned by the caller; results
              // are written to fresh C++ buffers that Python sees only after this block.
              py::gil_scoped_release release;
              e = net.explain(X, t, s, layerwise, given ? &given_maps : nullptr);
            }
            return explanation_tuple(std::move(e), layerwise, start.has_value());
          },
          py::arg("x").noconvert(), py::arg("targets"), py::arg("start"), py::arg("layerwise"),
          py::arg("given") = py::none(),
          "Forward pass and LRP in one call: (relevance, output, conservation, layers, targets); with given "
          "(forward_all's outputs for x) the forward pass is not run again.");
}

void register_network(py::module_& m) {
  bind_for<float>(m, "Network_float32");
  bind_for<double>(m, "Network_float64");
}

}  // namespace bindings
}  // namespace FASTLRP_ISA_NS
}  // namespace fastlrp
