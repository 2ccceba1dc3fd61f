// Binds kernels::Graph<T> for float and double, and the typed rule boundary (RuleKind,
// RuleParams) that Python's fastlrp.rules lowers every rule to.
#include "fastlrp/isa.hpp"
#include "bind_common.hpp"
#include "fastlrp/graph.hpp"

namespace fastlrp {
inline namespace FASTLRP_ISA_NS {
namespace bindings {

using kernels::Graph;

namespace {

template <class T>
void bind_graph(py::module_& m, const char* name) {
  using G = Graph<T>;
  py::class_<G>(m, name, "A feed-forward graph of layers whose forward and LRP passes run in C++ (graph.hpp).")
      .def(py::init<Index>(), py::arg("input_width"))
      .def(
          "add_dense",
          [](G& g, int input, const CArray<T>& W, const CArray<T>& b, const RuleParams& rule, const CArray<T>& low,
             const CArray<T>& high) { g.add_layer(dense_layer(W, b, rule, low, high), input); },
          py::arg("input"), py::arg("weight").noconvert(), py::arg("bias").noconvert(), py::arg("rule"),
          py::arg("low").noconvert(), py::arg("high").noconvert(), "A Dense node (weight (out, in), viewed, not copied).")
      .def(
          "add_conv",
          [](G& g, int input, Index C, Index H, Index W, const CArray<T>& weight, const CArray<T>& bias, Index kh, Index kw,
             Index sh, Index sw, Index ph, Index pw, Index dh, Index dw, Index groups, const RuleParams& rule,
             const CArray<T>& low, const CArray<T>& high, Index ph_end, Index pw_end) {
            g.add_layer(conv_layer(geometry(C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, ph_end, pw_end), groups, weight, bias, rule, low, high), input);
          },
          py::arg("input"), py::arg("C"), py::arg("H"), py::arg("W"), py::arg("weight").noconvert(),
          py::arg("bias").noconvert(), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"), py::arg("ph"),
          py::arg("pw"), py::arg("dh"), py::arg("dw"), py::arg("groups"), py::arg("rule"), py::arg("low").noconvert(),
          py::arg("high").noconvert(), py::arg("ph_end") = -1, py::arg("pw_end") = -1, "A Conv2d node over an NHWC image; weight (out, kh*kw*C/groups) in (ky, kx, c) order.")
      .def(
          "add_pool",
          [](G& g, int input, int kind, Index C, Index H, Index W, Index kh, Index kw, Index sh, Index sw, Index ph, Index pw,
             bool count_include_pad, bool proportional, const RuleParams& rule, const CArray<T>& low,
             bool ceil_mode) {
            g.add_layer(kernels::make_pool<T>(kernels::Pool2d<T>::make(kind, C, H, W, kh, kw, sh, sw, ph, pw,
                                                                       count_include_pad, proportional, checked_rule(rule),
                                                                       as_vector(low), ceil_mode)),
                        input);
          },
          py::arg("input"), py::arg("kind"), py::arg("C"), py::arg("H"), py::arg("W"), py::arg("kh"), py::arg("kw"),
          py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"), py::arg("count_include_pad"),
          py::arg("proportional"), py::arg("rule"), py::arg("low").noconvert(), py::arg("ceil_mode") = false,
          "A pooling node (kind 0 avg, 1 sum, 2 max, 3 adaptive avg).")
      .def(
          "add_flatten", [](G& g, int input, Index C, Index H, Index W) { g.add_layer(kernels::make_flatten<T>(C, H, W), input); },
          py::arg("input"), py::arg("C"), py::arg("H"), py::arg("W"), "A Flatten node: NHWC image into NCHW order.")
      .def(
          "add_gather",
          [](G& g, int input, Index in, const CArray<std::int64_t>& index) { g.add_layer(gather_layer<T>(in, index), input); },
          py::arg("input"), py::arg("in_width"), py::arg("index").noconvert(),
          "A Gather node: output j copies input index[j] (-1: zero); indices distinct; LRP moves relevance back.")
      .def(
          "add_activation",
          [](G& g, int input, int kind, double param, Index width) {
            g.add_layer(kernels::make_activation<T>(activation_kind(kind), T(param), width), input);
          },
          py::arg("input"), py::arg("kind"), py::arg("param"), py::arg("width"), "An element-wise node.")
      .def(
          "add_affine",
          [](G& g, int input, const CArray<T>& scale, const CArray<T>& shift, const RuleParams& rule) {
            if (scale.size() != shift.size()) throw std::invalid_argument("scale and shift differ in size");
            g.add_layer(kernels::make_affine<T>(as_row(scale), as_row(shift), checked_rule(rule)), input);
          },
          py::arg("input"), py::arg("scale").noconvert(), py::arg("shift").noconvert(), py::arg("rule"),
          "An element-wise affine node (an unfolded BatchNorm).")
      .def("add_add", [](G& g, const std::vector<int>& inputs, const RuleParams& rule) { g.add_add(inputs, checked_rule(rule)); },
           py::arg("inputs"), py::arg("rule"), "An Add node over equally shaped inputs (LRP: Epsilon by input contribution).")
      .def("add_concat", &G::add_concat, py::arg("inputs"), py::arg("pixels"), py::arg("channels"),
           "A Concat node along channels (NHWC: per pixel), or along features (pixels = 1).")
      .def("add_mul", &G::add_mul, py::arg("signal"), py::arg("gate"), py::arg("pixels"),
           "A gate node signal * gate: the gate the same size as the signal (pixels = 1) or one value per channel "
           "broadcast over `pixels` pixels. LRP: the signal takes all relevance, the gate none.")
      .def_property_readonly("num_nodes", [](const G& g) { return g.nodes.size(); })
      .def_property_readonly("skips_last", &G::skips_last)
      .def(
          "forward",
          [](const G& g, const CArray<T>& x) {
            ConstMatrixMap<T> X = as_matrix(x, "input");
            py::gil_scoped_release release;  // x is read only and kept alive by the caller
            return g.forward(X);
          },
          py::arg("x").noconvert(), "The output node's values for a batch x (N, input width).")
      .def(
          "explain",
          [](const G& g, const CArray<T>& x, const Targets& targets, std::optional<CArray<T>> start, bool layerwise) {
            ConstMatrixMap<T> X = as_matrix(x, "input");
            const auto t = target_map(targets, X.rows(), g.logits_width());
            std::optional<ConstMatrixMap<T>> s;
            if (start) {
              s.emplace(as_matrix(*start, "start relevance"));
              if (s->rows() != X.rows() || s->cols() != g.logits_width())
                throw std::invalid_argument("start relevance must be (N, logits)");
            }
            kernels::Explanation<T> e;
            {
              py::gil_scoped_release release;  // inputs read only; results in fresh buffers
              e = g.explain(X, t, s, layerwise);
            }
            return explanation_tuple(std::move(e), layerwise, start.has_value());
          },
          py::arg("x").noconvert(), py::arg("targets"), py::arg("start"), py::arg("layerwise"),
          "Forward pass and LRP: (relevance, output, conservation (N, 1 + nodes), layers (input, then every node's "
          "output) or None, targets).");
}

}  // namespace

void register_graph(py::module_& m) {
  py::enum_<RuleKind>(m, "RuleKind", "The LRP rule families of the core (rules.hpp).")
      .value("Pass", RuleKind::Pass)
      .value("Epsilon", RuleKind::Epsilon)
      .value("ZPlus", RuleKind::ZPlus)
      .value("AlphaBeta", RuleKind::AlphaBeta)
      .value("Gamma", RuleKind::Gamma)
      .value("ZBox", RuleKind::ZBox)
      .value("WSquare", RuleKind::WSquare)
      .value("Flat", RuleKind::Flat);
  py::class_<RuleParams>(m, "RuleParams", "One rule's family and parameters, as the kernels take them.")
      .def(py::init([](RuleKind kind, double epsilon, double alpha, double beta, double gamma, double stabilizer) {
             RuleParams r;
             r.kind = kind, r.epsilon = epsilon, r.alpha = alpha, r.beta = beta, r.gamma = gamma, r.stabilizer = stabilizer;
             return checked_rule(r);
           }),
           py::arg("kind"), py::arg("epsilon") = 1e-6, py::arg("alpha") = 2.0, py::arg("beta") = 1.0,
           py::arg("gamma") = 0.25, py::arg("stabilizer") = kStabilizer)
      .def_readonly("kind", &RuleParams::kind)
      .def_readonly("epsilon", &RuleParams::epsilon)
      .def_readonly("alpha", &RuleParams::alpha)
      .def_readonly("beta", &RuleParams::beta)
      .def_readonly("gamma", &RuleParams::gamma)
      .def_readonly("stabilizer", &RuleParams::stabilizer)
      .def("__repr__", [](const RuleParams& r) {
        return std::string("RuleParams(") + rule_name(r.kind) + ", epsilon=" + std::to_string(r.epsilon) +
               ", alpha=" + std::to_string(r.alpha) + ", beta=" + std::to_string(r.beta) +
               ", gamma=" + std::to_string(r.gamma) + ", stabilizer=" + std::to_string(r.stabilizer) + ")";
      });
  bind_graph<float>(m, "Graph_float32");
  bind_graph<double>(m, "Graph_float64");
}

}  // namespace bindings
}  // namespace FASTLRP_ISA_NS
}  // namespace fastlrp
