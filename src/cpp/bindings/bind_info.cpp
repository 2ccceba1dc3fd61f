// Build information and thread control.
#include <pybind11/pybind11.h>

#include <chrono>

#include "fastlrp/common.hpp"

namespace py = pybind11;

namespace fastlrp::bindings {

// GFLOP/s of independent fused multiply-adds on `threads` threads: the ceiling that the
// benchmarks compare the GEMMs with, measured on the machine they run on. The vector width and
// the number of chains follow the ISA the core was compiled for: 16 floats x 24 chains with
// AVX-512 (32 registers), 8 x 12 with AVX2 (16 registers), 4 x 12 otherwise. A 64-byte vector
// without AVX-512 spilled to the stack and measured 5.8 GFLOP/s on an AVX2 machine.
#if defined(__AVX512F__)
constexpr int kLanes = 16, kChains = 24;
#elif defined(__AVX__)
constexpr int kLanes = 8, kChains = 12;
#else
constexpr int kLanes = 4, kChains = 12;
#endif

static double fma_peak(double seconds, int threads) {
  typedef float vec __attribute__((vector_size(4 * kLanes)));
  const long reps = 1 << 20;
  double total_flops = 0, elapsed = 0;
  const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : total_flops)
  {
    vec acc[kChains], x, y;
    for (int i = 0; i < kChains; ++i)
      for (int j = 0; j < kLanes; ++j) acc[i][j] = 0.001f * static_cast<float>(i + j);
    for (int j = 0; j < kLanes; ++j) x[j] = 0.99999f, y[j] = 1e-5f;
    long done = 0;
    do {
      for (long k = 0; k < reps; ++k)
#pragma GCC unroll 24
        for (int i = 0; i < kChains; ++i) acc[i] = acc[i] * x + y;
      done += reps;
    } while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < seconds);
    float sink = 0;
    for (int i = 0; i < kChains; ++i) sink += acc[i][0];
    if (sink == 12345.f) done += 1;  // keeps the loop from being optimised away
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

}  // namespace fastlrp::bindings
