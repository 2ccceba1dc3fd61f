// Every kernel of a kernel module, compiled once per module for float and double: the layers'
// forward and backward passes (dense.hpp, conv.hpp, pool.hpp, elementwise.hpp) and the
// factories that prepare a rule's weights. The bindings and network.hpp / graph.hpp only
// declare these, so that the kernels' templates are not compiled again in every binding.
#include "fastlrp/network.hpp"

namespace fastlrp {
inline namespace FASTLRP_ISA_NS {
namespace kernels {

// Y[n, j] = X[n, idx[j]], 0 where idx[j] == -1: copies only, bit-exact.
template <class T>
static void gather_rows(const ConstMatrixMap<T>& X, MatrixMap<T>& Y, const std::vector<Index>& idx, int threads) {
  for_segments(X.rows(), Y.cols(), threads, [&](Index n, Index c0, Index len) {
    const T* x = X.row(n).data();
    T* y = Y.row(n).data();
    const Index* k = idx.data();
    for (Index j = c0; j < c0 + len; ++j) y[j] = k[j] < 0 ? T(0) : x[k[j]];
  });
}

template <class T>
void Layer<T>::forward(const ConstMatrixMap<T>& A, MatrixMap<T> Y, int threads) const {
  switch (kind) {
    case LayerKind::Dense: dense.forward(A, Y, threads); return;
    case LayerKind::Conv: conv.forward(A, Y, threads); return;
    case LayerKind::GroupedConv: grouped.forward(A, Y, threads); return;
    case LayerKind::Pool: pool.forward(A, Y, threads); return;
    case LayerKind::Flatten: flatten(A, Y, false); return;
    case LayerKind::Gather: gather_rows(A, Y, gather, threads); return;
    case LayerKind::Affine:
      for_segments(A.rows(), in, threads, [&](Index n, Index c0, Index len) {
        Y.row(n).segment(c0, len).array() =
            A.row(n).segment(c0, len).array() * affine.scale.segment(c0, len).array() + affine.shift.segment(c0, len).array();
      });
      return;
    case LayerKind::Activation:
      if (act == Activation::Softmax || act == Activation::LogSoftmax) {
        activation_forward<T>(act, act_param, A, Y);
        return;
      }
      for_segments(A.rows(), in, threads, [&](Index n, Index c0, Index len) {
        activation_forward<T>(act, act_param, ConstMatrixMap<T>(A.row(n).data() + c0, 1, len),
                              MatrixMap<T>(Y.row(n).data() + c0, 1, len));
      });
      return;
  }
}

template <class T>
void Layer<T>::backward(const ConstMatrixMap<T>& A, const ConstMatrixMap<T>& Z, const ConstMatrixMap<T>& R,
                      MatrixMap<T> Rin, Workspace& ws, int threads, bool nonnegative_input, bool add_to_rin) const {
  if (add_to_rin && !adds_to_rin()) throw std::logic_error("this layer cannot add its relevance to its input's");
  switch (kind) {
    case LayerKind::Dense: dense.backward(A, Z, R, Rin, ws, threads, nonnegative_input); return;
    case LayerKind::Conv: conv.backward(A, Z, R, Rin, ws, threads, nonnegative_input, add_to_rin); return;
    case LayerKind::GroupedConv: grouped.backward(A, Z, R, Rin, ws, threads, nonnegative_input); return;
    case LayerKind::Pool: pool.backward(A, Z, R, Rin, threads); return;
    case LayerKind::Flatten: flatten(R, Rin, true); return;
    case LayerKind::Gather: gather_rows(R, Rin, scatter, threads); return;
    case LayerKind::Affine: affine.backward(A, Z, R, Rin); return;
    case LayerKind::Activation:  // Pass
      for_segments(R.rows(), in, threads, [&](Index n, Index c0, Index len) {
        Rin.row(n).segment(c0, len) = R.row(n).segment(c0, len);
      });
      return;
  }
}

template <class T>
Layer<T> make_dense(const T* W, Index out, Index in, std::shared_ptr<const void> keep, RowVector<T> b, RuleParams rule,
                    const std::vector<T>& low, const std::vector<T>& high) {
  Layer<T> l;
  l.kind = LayerKind::Dense;
  l.in = in;
  l.out = out;
  l.dense.set_weight(W, out, in, std::move(keep));
  l.dense.b = std::move(b);
  l.dense.rule = rule;
  l.dense.prepare(low, high);
  l.dense.pack_weights();
  return l;
}

template <class T>
Layer<T> make_conv(const Geometry& g, const T* W, Index out, Index K, std::shared_ptr<const void> keep, RowVector<T> b,
                   RuleParams rule, const std::vector<T>& low, const std::vector<T>& high) {
  Layer<T> l;
  l.kind = LayerKind::Conv;
  l.conv.g = g;
  l.conv.g.finish();
  if (K != l.conv.g.K()) throw std::invalid_argument("conv weight does not match kh*kw*C");
  l.conv.lin.set_weight(W, out, K, std::move(keep));
  l.conv.lin.b = std::move(b);
  l.conv.lin.rule = rule;
  if (rule.kind == RuleKind::ZBox && (static_cast<Index>(low.size()) != l.conv.g.in_size() ||
                                      static_cast<Index>(high.size()) != l.conv.g.in_size()))
    throw std::invalid_argument("ZBox bounds must cover the conv input image");
  l.conv.prepare(low, high);
  l.in = l.conv.in_size();
  l.out = l.conv.out_size();
  return l;
}

template <class T>
Layer<T> make_grouped_conv(const Geometry& g, Index groups, const T* W, Index out, Index K, RowVector<T> b,
                           RuleParams rule, const std::vector<T>& low, const std::vector<T>& high) {
  Layer<T> l;
  l.kind = LayerKind::GroupedConv;
  GroupedConv<T>& c = l.grouped;
  c.g = g;
  c.g.finish();
  if (groups <= 0 || c.g.C % groups != 0 || out % groups != 0)
    throw std::invalid_argument("groups (" + std::to_string(groups) + ") must divide the input channels (" +
                                std::to_string(c.g.C) + ") and the output channels (" + std::to_string(out) + ")");
  c.groups = groups;
  c.O = out;
  c.Cg = c.g.C / groups;
  c.Og = out / groups;
  if (K != c.g.kh * c.g.kw * c.Cg) throw std::invalid_argument("grouped conv weight does not match kh*kw*C/groups");
  if (b.size() != out) throw std::invalid_argument("bias size does not match the conv weight");
  c.b = std::move(b);
  c.rule = rule;
  if (rule.kind == RuleKind::ZBox &&
      (static_cast<Index>(low.size()) != c.g.in_size() || static_cast<Index>(high.size()) != c.g.in_size()))
    throw std::invalid_argument("ZBox bounds must cover the conv input image");
  c.set_weight(W);
  c.prepare(low, high);
  l.in = c.in_size();
  l.out = c.out_size();
  return l;
}

template struct Layer<float>;
template struct Layer<double>;
template Layer<float> make_dense<float>(const float*, Index, Index, std::shared_ptr<const void>, RowVector<float>,
                                       RuleParams, const std::vector<float>&, const std::vector<float>&);
template Layer<double> make_dense<double>(const double*, Index, Index, std::shared_ptr<const void>, RowVector<double>,
                                          RuleParams, const std::vector<double>&, const std::vector<double>&);
template Layer<float> make_conv<float>(const Geometry&, const float*, Index, Index, std::shared_ptr<const void>,
                                      RowVector<float>, RuleParams, const std::vector<float>&, const std::vector<float>&);
template Layer<double> make_conv<double>(const Geometry&, const double*, Index, Index, std::shared_ptr<const void>,
                                         RowVector<double>, RuleParams, const std::vector<double>&,
                                         const std::vector<double>&);

template Layer<float> make_grouped_conv<float>(const Geometry&, Index, const float*, Index, Index, RowVector<float>,
                                              RuleParams, const std::vector<float>&, const std::vector<float>&);
template Layer<double> make_grouped_conv<double>(const Geometry&, Index, const double*, Index, Index, RowVector<double>,
                                                 RuleParams, const std::vector<double>&, const std::vector<double>&);

}  // namespace kernels
}  // namespace FASTLRP_ISA_NS
}  // namespace fastlrp
