// fastlrp._core: routes only; each area registers its own bindings.
#include <pybind11/pybind11.h>

namespace fastlrp::bindings {
void register_info(pybind11::module_& m);
void register_network(pybind11::module_& m);
void register_graph(pybind11::module_& m);
}  // namespace fastlrp::bindings

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastlrp's compiled kernels (networks and graphs of layers, LRP rules)";
  fastlrp::bindings::register_info(m);
  fastlrp::bindings::register_network(m);
  fastlrp::bindings::register_graph(m);
}
