// Build information and thread control.
#include "fastlrp/isa.hpp"
#include <pybind11/pybind11.h>

#include <chrono>

#include "fastlrp/common.hpp"
#include "fastlrp/simd.hpp"

namespace py = pybind11;

namespace fastlrp {
inline namespace FASTLRP_ISA_NS {
namespace bindings {

// GFLOP/s of independent multiply-adds on `threads` threads: the ceiling that the benchmarks
// compare the GEMMs with, measured on the machine they run on, with the vector type and the
// multiply-add of the ISA level this module was compiled for (simd.hpp, the GEMM's own): 16
// floats x 24 chains with AVX-512 (32 registers), 8 x 12 with AVX2 + FMA, 4 x 12 with SSE
// (a multiply and an add: x86-64-v2 has no FMA). A 64-byte vector without AVX-512 spilled to
// the stack and measured 5.8 GFLOP/s on an AVX2 machine; hence the level's own type.
constexpr int kChains = simd::kBytes >= 64 ? 24 : 12;

static double fma_peak(double seconds, int threads) {
  using S = simd::Vec<float>;
  using V = S::V;
  constexpr int kLanes = S::W;
  const long reps = 1 << 20;
  double total_flops = 0, elapsed = 0;
  const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : total_flops)
  {
    V acc[kChains];
    for (int i = 0; i < kChains; ++i) acc[i] = S::set1(0.001f * static_cast<float>(i));
    const V x = S::set1(0.99999f), y = S::set1(1e-5f);
    long done = 0;
    do {
      for (long k = 0; k < reps; ++k)
#pragma GCC unroll 24
        for (int i = 0; i < kChains; ++i) acc[i] = S::fmadd(acc[i], x, y);
      done += reps;
    } while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < seconds);
    alignas(64) float sink[kLanes > 0 ? kLanes : 1];
    float total = 0;
    for (int i = 0; i < kChains; ++i) {
      S::store(sink, acc[i]);
      total += sink[0];
    }
    if (total == 12345.f) done += 1;  // keeps the loop from being optimised away
    total_flops += 2.0 * kLanes * kChains * static_cast<double>(done);
  }
  elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return total_flops / elapsed / 1e9;
}

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
  m.def("isa", []() { return std::string(FASTLRP_ISA_LEVEL); }, "The ISA level this module was compiled for (v2, v3, v4 or native).");
  m.def("vector_isa", []() { return std::string(simd::kLevel); }, "The vector instructions of fastlrp's own GEMM.");
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
  m.def(
      "fma_peak",
      [](double seconds, int threads) {
        py::gil_scoped_release release;  // pure arithmetic on local registers
        return fma_peak(seconds, threads);
      },
      py::arg("seconds") = 0.5, py::arg("threads") = 1, "Measured GFLOP/s of an FMA loop (the machine's ceiling).");
}

}  // namespace bindings
}  // namespace FASTLRP_ISA_NS
}  // namespace fastlrp
