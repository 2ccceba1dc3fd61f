// One compiled module of fastlrp's kernels (fastlrp._core_v2, _v3, _v4 or _native, named by
// FASTLRP_MODULE; fastlrp/_core.py picks one at import): routes only; each area registers its
// own bindings.
#include "fastlrp/isa.hpp"
#include <pybind11/pybind11.h>

namespace fastlrp {
inline namespace FASTLRP_ISA_NS {
namespace bindings {
void register_info(pybind11::module_& m);
void register_network(pybind11::module_& m);
void register_graph(pybind11::module_& m);
}  // namespace bindings
}  // namespace FASTLRP_ISA_NS
}  // namespace fastlrp

#ifndef FASTLRP_MODULE
#define FASTLRP_MODULE _core_native
#endif

PYBIND11_MODULE(FASTLRP_MODULE, m) {
  m.doc() = "fastlrp's compiled kernels (networks and graphs of layers, LRP rules)";
  fastlrp::bindings::register_info(m);
  fastlrp::bindings::register_network(m);
  fastlrp::bindings::register_graph(m);
}
