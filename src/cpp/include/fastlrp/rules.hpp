// The LRP rules of docs/rules.md as parameters; the arithmetic lives with each layer.
#pragma once

#include "fastlrp/isa.hpp"

#include <string>

namespace fastlrp {
inline namespace FASTLRP_ISA_NS {

enum class RuleKind : int {
  Pass = 0,       // element-wise layers: R_in = R_out
  Epsilon = 1,    // c_ij = a_i w_ij, d_j = b_j, stabiliser epsilon (0: LRP-0)
  ZPlus = 2,      // c_ij = (a_i w_ij)^+, d_j = b_j^+
  AlphaBeta = 3,  // alpha * positive part - beta * negative part
  Gamma = 4,      // generalised LRP-gamma, sign of z_j picks the variant
  ZBox = 5,       // c_ij = a_i w_ij - l_i w_ij^+ - h_i w_ij^-, d_j = 0
  WSquare = 6,    // c_ij = w_ij^2, d_j = 0
  Flat = 7,       // c_ij = 1 for every connected input, d_j = 0
};

inline const char* rule_name(RuleKind k) {
  switch (k) {
    case RuleKind::Pass: return "Pass";
    case RuleKind::Epsilon: return "Epsilon";
    case RuleKind::ZPlus: return "ZPlus";
    case RuleKind::AlphaBeta: return "AlphaBeta";
    case RuleKind::Gamma: return "Gamma";
    case RuleKind::ZBox: return "ZBox";
    case RuleKind::WSquare: return "WSquare";
    case RuleKind::Flat: return "Flat";
  }
  return "?";
}

// Stabiliser of every rule but Epsilon (which brings its own): docs/rules.md's eps_s.
constexpr double kStabilizer = 1e-6;

struct RuleParams {
  RuleKind kind = RuleKind::Pass;
  double epsilon = 1e-6;
  double alpha = 2.0;
  double beta = 1.0;
  double gamma = 0.25;
  // eps_s of every rule but Epsilon: 1e-6 in the default convention; fastlrp.toolbox passes
  // the toolbox's own (1e-16 for alphabeta, 0 for flat and ww).
  double stabilizer = kStabilizer;
};

}  // namespace FASTLRP_ISA_NS
}  // namespace fastlrp
