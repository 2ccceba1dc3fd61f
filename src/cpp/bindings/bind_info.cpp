// Build information and thread control.
#include <pybind11/pybind11.h>

#include "fastlrp/common.hpp"

namespace py = pybind11;

namespace fastlrp::bindings {

void register_info(py::module_& m) {
  m.def("has_openmp", []() {
#ifdef _OPENMP
    return true;
#else
    return false;
#endif
  }, "Whether the extension was built with OpenMP.");
  m.def("has_cuda", []() { return false; }, "Whether the extension was built with CUDA kernels.");
  m.def("simd", []() { return std::string(Eigen::SimdInstructionSetsInUse()); }, "SIMD instruction sets Eigen uses.");
  m.def("native_build", []() {
#ifdef FASTLRP_NATIVE_BUILD
    return true;
#else
    return false;
#endif
  }, "Whether the extension was compiled with -march=native.");
  m.def("set_num_threads", &fastlrp::set_num_threads, py::arg("n"), "Threads for every kernel (0: all cores).");
  m.def("get_num_threads", &fastlrp::num_threads, "Threads the kernels use.");
  m.def("max_threads", &fastlrp::max_threads, "Cores available.");
}

}  // namespace fastlrp::bindings
