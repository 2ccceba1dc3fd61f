// A sequential network run entirely in C++: forward pass, start relevance, and the backward
// pass of every layer's rule in one call (no Python between layers).
//
// Samples are independent, so a batch is cut into one chunk per thread and each thread runs
// the whole network on its chunk: no synchronisation between layers, weights shared read-only.
// Networks with convolutions or pools run the batch as one chunk instead and every layer
// spreads its own work over the threads (tiles of output pixels, weight rows, channel blocks):
// one image holds enough work for every core, and a few images would not split evenly.
#pragma once

#include "fastlrp/isa.hpp"

#include <algorithm>
#include <exception>
#include <mutex>
#include <optional>
#include <vector>

#include "fastlrp/common.hpp"
#include "fastlrp/conv.hpp"
#include "fastlrp/dense.hpp"
#include "fastlrp/elementwise.hpp"
#include "fastlrp/grouped.hpp"
#include "fastlrp/pool.hpp"
#include "fastlrp/simd.hpp"
#include "fastlrp/workspace.hpp"

namespace fastlrp {
inline namespace FASTLRP_ISA_NS {
namespace kernels {

enum class LayerKind : int {
  Dense = 0, Activation = 1, Affine = 2, Conv = 3, Pool = 4, Flatten = 5, GroupedConv = 6, Gather = 7
};

template <class T>
struct Layer {
  LayerKind kind;
  Index in = 0, out = 0;
  Dense<T> dense;
  Affine<T> affine;
  Conv2d<T> conv;
  GroupedConv<T> grouped;
  Pool2d<T> pool;
  Activation act = Activation::Identity;
  T act_param = T(0);
  Index C = 0, H = 0, W = 0;  // Flatten: the NHWC image it turns into NCHW order
  // Gather (channel shuffles and slices, zero padding): y[j] = x[gather[j]], 0 where -1; the
  // sources are distinct, so LRP (Pass: relevance moves with its value) is the inverse gather
  // Rin[i] = R[scatter[i]], 0 where -1 (an input that reaches no output gets none).
  std::vector<Index> gather, scatter;

  // Identity-like layers share their input's buffer instead of copying it.
  bool is_identity() const { return kind == LayerKind::Activation && act == Activation::Identity; }
  bool is_spatial() const {
    return kind == LayerKind::Conv || kind == LayerKind::GroupedConv || kind == LayerKind::Pool || kind == LayerKind::Flatten;
  }

  // Defined in src/cpp/layer.cpp and compiled there once per kernel module, for float and
  // double: every kernel's code is in that one translation unit, not in each binding's.
  void forward(const ConstMatrixMap<T>& A, MatrixMap<T> Y, int threads) const;
  // nonnegative_input: A is known to have no negative entries (nonnegative_output below).
  // add_to_rin (Conv2d only, adds_to_rin()): Rin's values are kept and the shares added to them.
  void backward(const ConstMatrixMap<T>& A, const ConstMatrixMap<T>& Z, const ConstMatrixMap<T>& R, MatrixMap<T> Rin,
                Workspace& ws, int threads, bool nonnegative_input = false, bool add_to_rin = false) const;
  bool adds_to_rin() const { return kind == LayerKind::Conv; }

  // NHWC image <-> NCHW-ordered features (so that a torch model's next Dense applies as is).
  void flatten(const ConstMatrixMap<T>& X, MatrixMap<T> Y, bool inverse) const {
    for (Index n = 0; n < X.rows(); ++n) {
      const T* x = X.row(n).data();
      T* y = Y.row(n).data();
      for (Index p = 0; p < H * W; ++p)
        for (Index c = 0; c < C; ++c) {
          if (inverse)
            y[p * C + c] = x[c * H * W + p];
          else
            y[c * H * W + p] = x[p * C + c];
        }
    }
  }
};

// Whether layer l's output can have no negative entry when its input has none
// (input_nonnegative) or whatever its input: the outputs of ReLU-type activations, and pools,
// flattens and gathers of such outputs. Dense, Conv2d and grouped layers told that their input
// is nonnegative skip their scan of it for negative entries (which decides the path of the
// two-weight rules, so the result is the same): a pass over every input activation, single-
// threaded, about 1.5 % of a ResNet-50 explanation (bench/README.md, sixteenth session).
template <class T>
bool nonnegative_output(const Layer<T>& l, bool input_nonnegative) {
  switch (l.kind) {
    case LayerKind::Activation:
      switch (l.act) {
        case Activation::ReLU:
        case Activation::Sigmoid:
        case Activation::Softmax:
        case Activation::Hardsigmoid:
        case Activation::ReLU6:
          return true;
        case Activation::Identity:
          return input_nonnegative;
        default:
          return false;
      }
    case LayerKind::Pool:     // maxima and averages (positive weights) of the inputs
    case LayerKind::Flatten:  // the same values
    case LayerKind::Gather:   // the same values, or zeros
      return input_nonnegative;
    default:
      return false;
  }
}

// Runs f(first_row, rows, threads) over a batch of N samples: one chunk per thread (each with
// 1 thread), or, in team mode or for a single sample, one chunk with every thread.
template <class F>
void run_batch(Index N, bool team, F&& f) {
  const int threads = num_threads();
  const Index chunks = team ? 1 : std::max<Index>(1, std::min<Index>(threads, N));
  if (chunks == 1) {
    f(0, N, threads);
    return;
  }
  std::exception_ptr error;
  std::mutex m;
#pragma omp parallel for num_threads(static_cast<int>(chunks)) schedule(static, 1)
  for (Index c = 0; c < chunks; ++c) {
    const Index r0 = N * c / chunks, r1 = N * (c + 1) / chunks;
    try {
      f(r0, r1 - r0, 1);
    } catch (...) {
      std::lock_guard<std::mutex> g(m);
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

// Layer factories shared by Network (a chain) and Graph (graph.hpp); make_dense and make_conv
// prepare the rule's weights (src/cpp/layer.cpp).
template <class T>
Layer<T> make_dense(const T* W, Index out, Index in, std::shared_ptr<const void> keep, RowVector<T> b, RuleParams rule,
                    const std::vector<T>& low, const std::vector<T>& high);
template <class T>
Layer<T> make_conv(const Geometry& g, const T* W, Index out, Index K, std::shared_ptr<const void> keep, RowVector<T> b,
                   RuleParams rule, const std::vector<T>& low, const std::vector<T>& high);

// groups > 1 (weight (out, kh*kw*C/groups)): grouped.hpp's direct kernels
template <class T>
Layer<T> make_grouped_conv(const Geometry& g, Index groups, const T* W, Index out, Index K, RowVector<T> b,
                           RuleParams rule, const std::vector<T>& low, const std::vector<T>& high);

template <class T>
Layer<T> make_activation(Activation act, T param, Index width) {
  Layer<T> l;
  l.kind = LayerKind::Activation;
  l.act = act;
  l.act_param = param;
  l.in = l.out = width;
  return l;
}

template <class T>
Layer<T> make_pool(Pool2d<T> pool) {
  Layer<T> l;
  l.kind = LayerKind::Pool;
  l.in = pool.in_size();
  l.out = pool.out_size();
  l.pool = std::move(pool);
  return l;
}

template <class T>
Layer<T> make_flatten(Index C, Index H, Index W) {
  Layer<T> l;
  l.kind = LayerKind::Flatten;
  l.C = C;
  l.H = H;
  l.W = W;
  l.in = l.out = C * H * W;
  return l;
}

template <class T>
Layer<T> make_gather(Index in, const Index* idx, Index out) {
  Layer<T> l;
  l.kind = LayerKind::Gather;
  l.in = in;
  l.out = out;
  l.gather.assign(idx, idx + out);
  l.scatter.assign(static_cast<std::size_t>(in), -1);
  for (Index j = 0; j < out; ++j) {
    const Index i = idx[j];
    if (i < -1 || i >= in)
      throw std::invalid_argument("gather index " + std::to_string(i) + " at output " + std::to_string(j) +
                                  " is outside the input's " + std::to_string(in) + " values (or -1 for a zero)");
    if (i >= 0) {
      if (l.scatter[static_cast<std::size_t>(i)] != -1)
        throw std::invalid_argument("gather index " + std::to_string(i) + " is used twice; each input may feed one output");
      l.scatter[static_cast<std::size_t>(i)] = j;
    }
  }
  return l;
}

template <class T>
Layer<T> make_affine(RowVector<T> scale, RowVector<T> shift, RuleParams rule) {
  Layer<T> l;
  l.kind = LayerKind::Affine;
  l.in = l.out = scale.size();
  l.affine.scale = std::move(scale);
  l.affine.shift = std::move(shift);
  l.affine.rule = rule;
  return l;
}

using TargetMap = Eigen::Map<const Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1>>;

// What explain() hands back (Network and Graph); arrays cover the whole batch.
template <class T>
struct Explanation {
  RowMatrix<T> relevance;               // (N, in)
  RowMatrix<T> output;                  // (N, out): logits, before a skipped output nonlinearity
  RowMatrix<T> conservation;            // (N, L + 1): relevance sum at every layer (Graph: node) boundary
  std::vector<RowMatrix<T>> layers;     // layerwise: Network: every layer's input, then the start;
                                        // Graph: the input, then every node's output
  Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1> targets;  // class per sample (empty: seeded)
};

// x * 0 is a zero for finite x and NaN for NaN and infinities: summed in vectors, one NaN makes
// the sum NaN (a test per value, one at a time, took a fifth of a wide dense layer's forward).
template <class M>
void check_finite(const M& X, const char* what) {
  using T = typename M::Scalar;
  using V = simd::Vec<T>;
  const T* p = X.data();
  const Index n = X.size();
  typename V::V acc = V::zero();
  const typename V::V zero = V::zero();
  Index i = 0;
  for (; i + V::W <= n; i += V::W) acc = V::fmadd(V::load(p + i), zero, acc);
  T lanes[V::W];
  V::store(lanes, acc);
  bool ok = true;
  for (int l = 0; l < V::W; ++l) ok &= std::isfinite(lanes[l]);
  for (; i < n; ++i) ok &= std::isfinite(p[i]);
  if (!ok) throw std::invalid_argument(std::string(what) + " contains NaN or Inf; expected finite values");
}

// The start relevance of rows [r0, r0 + n) into R (n, logits): the given start, or the logit
// of the target class (given, or the predicted one: the first maximum, as numpy's argmax).
template <class T>
void seed_relevance(const ConstMatrixMap<T>& logits, Index r0, const std::optional<TargetMap>& targets,
                    const std::optional<ConstMatrixMap<T>>& start, Explanation<T>& e, MatrixMap<T> R) {
  const Index n = logits.rows();
  if (start) {
    R = start->middleRows(r0, n);
    return;
  }
  R.setZero();
  for (Index r = 0; r < n; ++r) {
    Index t;
    if (targets)
      t = (*targets)(r0 + r);
    else
      logits.row(r).maxCoeff(&t);
    e.targets(r0 + r) = t;
    R(r, t) = logits(r, t);
  }
}

// Finite inputs and weights can still overflow the dtype on the way (activations past ~3e38
// in float32): say so instead of handing back Inf or NaN.
template <class T>
void check_overflow(const Explanation<T>& e) {
  if (!e.relevance.allFinite() || !e.output.allFinite())
    throw std::invalid_argument(std::string("the explanation overflowed ") + (sizeof(T) == 4 ? "float32" : "float64") +
                                " (Inf or NaN in the activations or relevances): inputs or weights are too large "
                                "for this dtype; rescale them or use float64");
}


template <class T>
MatrixMap<T> rows_of(RowMatrix<T>& M, Index r0, Index n) {
  return MatrixMap<T>(M.data() + r0 * M.cols(), n, M.cols());
}

template <class T>
class Network {
 public:
  std::vector<Layer<T>> layers;

  Index in_features() const { return layers.empty() ? 0 : layers.front().in; }
  Index out_features() const { return layers.empty() ? 0 : layers.back().out; }

  // True when the last layer is an output nonlinearity that the backward pass skips.
  bool skips_last() const {
    return !layers.empty() && layers.back().kind == LayerKind::Activation && is_output_nonlinearity(layers.back().act);
  }
  Index forward_layers() const { return static_cast<Index>(layers.size()) - (skips_last() ? 1 : 0); }
  // Width of the logits: the output before a skipped nonlinearity.
  Index logits_features() const { return skips_last() ? layers.back().in : out_features(); }

  // Appends a layer built by one of the factories above (checked against the previous one).
  void add(Layer<T> l) { push(std::move(l)); }

  void add_activation(Activation act, T param, Index width) { push(make_activation<T>(act, param, width)); }
  void add_pool(Pool2d<T> pool) { push(make_pool<T>(std::move(pool))); }
  void add_flatten(Index C, Index H, Index W) { push(make_flatten<T>(C, H, W)); }
  void add_affine(RowVector<T> scale, RowVector<T> shift, RuleParams rule) {
    push(make_affine<T>(std::move(scale), std::move(shift), rule));
  }

  bool team_mode() const {
    for (const auto& l : layers)
      if (l.is_spatial()) return true;
    return false;
  }

  // The full model's output (output nonlinearity included).
  RowMatrix<T> forward(const ConstMatrixMap<T>& X) const {
    RowMatrix<T> Y(X.rows(), out_features());
    forward_chunks(X, [&](const std::vector<ConstMatrixMap<T>>&, Index, Index) {}, &Y);
    return Y;
  }

  // Every layer's output for the batch (outputs[k] is layer k's, N x width): what explain()
  // can reuse instead of running the forward pass again (the toolbox's forward-then-lrp).
  std::vector<RowMatrix<T>> forward_all(const ConstMatrixMap<T>& X) const {
    const Index L = static_cast<Index>(layers.size());
    std::vector<RowMatrix<T>> outputs(L);
    for (Index k = 0; k < L; ++k) outputs[k].resize(X.rows(), layers[k].out);
    forward_chunks(X, [](const std::vector<ConstMatrixMap<T>>&, Index, Index) {}, nullptr, &outputs);
    return outputs;
  }

  // Forward pass and LRP. targets: one class per sample; start: the start relevance (N, out);
  // neither: the predicted class. given: forward_all()'s outputs for this X, used instead of
  // running the forward pass again.
  Explanation<T> explain(const ConstMatrixMap<T>& X, const std::optional<TargetMap>& targets,
                         const std::optional<ConstMatrixMap<T>>& start, bool layerwise,
                         const std::vector<ConstMatrixMap<T>>* given = nullptr) const {
    check_input(X);
    if (given) {
      if (given->size() < static_cast<std::size_t>(forward_layers()))
        throw std::invalid_argument("given activations: expected one per layer");
      for (Index k = 0; k < forward_layers(); ++k)
        if ((*given)[k].rows() != X.rows() || (*given)[k].cols() != layers[k].out)
          throw std::invalid_argument("given activations: layer " + std::to_string(k) + " has the wrong shape");
    }
    const Index N = X.rows(), L = static_cast<Index>(layers.size()), Lf = forward_layers();
    const Index out = logits_features();
    if (start) check_finite(*start, "start relevance");
    Explanation<T> e;
    e.relevance.resize(N, in_features());
    e.output.resize(N, out);
    e.conservation.resize(N, L + 1);
    if (!start) e.targets.resize(N);
    if (layerwise) {
      e.layers.resize(L + 1);
      for (Index k = 0; k < L; ++k) e.layers[k].resize(N, layers[k].in);
      e.layers[L].resize(N, out);
    }
    Index max_width = out;
    for (const auto& l : layers) max_width = std::max(max_width, l.in);
    // nonneg[k]: layer k's input has no negative entries by construction (not assumed of given
    // activations, which the caller made)
    std::vector<char> nonneg(layers.size(), 0);
    if (!given)
      for (std::size_t k = 1; k < layers.size(); ++k) nonneg[k] = nonnegative_output(layers[k - 1], nonneg[k - 1] != 0);

    run_batch(N, [&](Index r0, Index n, int threads) {
      Workspace& ws = thread_workspace();
      ws.reset();
      std::vector<ConstMatrixMap<T>> acts;
      acts.reserve(Lf + 1);
      acts.emplace_back(X.data() + r0 * X.cols(), n, X.cols());
      if (given) {
        for (Index k = 0; k < Lf; ++k) acts.emplace_back((*given)[k].data() + r0 * (*given)[k].cols(), n, (*given)[k].cols());
      } else {
        run_forward(acts, Lf, ws, nullptr, 0, threads);
      }
      const ConstMatrixMap<T>& logits = acts[Lf];
      rows_of(e.output, r0, n) = logits;

      // Relevance buffers: with layerwise the result arrays themselves, else two ping-pong
      // buffers of the widest layer.
      T* ping = ws.take<T>(n * max_width);
      T* pong = ws.take<T>(n * max_width);
      auto buffer = [&](Index k, T* scratch) -> MatrixMap<T> {
        if (k == 0) return rows_of(e.relevance, r0, n);
        if (layerwise) return rows_of(e.layers[k], r0, n);
        return MatrixMap<T>(scratch, n, k < L ? layers[k].in : out);
      };

      MatrixMap<T> R = buffer(Lf, ping);
      seed_relevance(logits, r0, targets, start, e, R);
      for (Index k = L; k >= Lf; --k) {  // the start, and a skipped output nonlinearity
        row_sums(R, e.conservation.col(k).segment(r0, n), threads);
        if (layerwise && k != Lf) rows_of(e.layers[k], r0, n) = R;
      }
      for (Index k = Lf - 1; k >= 0; --k) {
        if (!layerwise && k > 0 && layers[k].kind == LayerKind::Activation) {  // Pass: nothing to copy
          e.conservation.col(k).segment(r0, n) = e.conservation.col(k + 1).segment(r0, n);
          continue;
        }
        MatrixMap<T> Rin = buffer(k, R.data() == ping ? pong : ping);
        layers[k].backward(acts[k], acts[k + 1], ConstMatrixMap<T>(R.data(), n, R.cols()), Rin, ws, threads,
                           nonneg[static_cast<std::size_t>(k)] != 0);
        new (&R) MatrixMap<T>(Rin.data(), n, Rin.cols());
        row_sums(R, e.conservation.col(k).segment(r0, n), threads);
      }
      if (layerwise) rows_of(e.layers[0], r0, n) = R;
      ws.trim();
    });
    check_overflow(e);
    return e;
  }

 private:
  // Runs layers [0, count) on acts[0], appending each output to acts; with Y, the last output
  // is written there instead of to scratch.
  // With outs (one matrix per layer), every layer writes its output straight there.
  void run_forward(std::vector<ConstMatrixMap<T>>& acts, std::size_t count, Workspace& ws, RowMatrix<T>* Y, Index r0,
                   int threads, std::vector<RowMatrix<T>>* outs = nullptr) const {
    const Index n = acts[0].rows();
    for (std::size_t k = 0; k < count; ++k) {
      const Layer<T>& l = layers[k];
      if (l.is_identity()) {
        if (outs) rows_of((*outs)[k], r0, n) = acts.back();
        acts.push_back(acts.back());
        continue;
      }
      MatrixMap<T> out = outs ? rows_of((*outs)[k], r0, n)
                              : (Y && k + 1 == count) ? rows_of(*Y, r0, n) : ws.matrix<T>(n, l.out);
      l.forward(acts.back(), out, threads);
      acts.emplace_back(out.data(), n, l.out);
    }
    if (Y && (count == 0 || layers[count - 1].is_identity())) rows_of(*Y, r0, n) = acts.back();
  }

  // The forward pass of every layer, chunk by chunk (see run_batch); take(acts, r0, n) sees
  // each chunk's activations before its workspace is reused; with Y, the output goes there,
  // with outs every layer's output.
  template <class F>
  void forward_chunks(const ConstMatrixMap<T>& X, F&& take, RowMatrix<T>* Y,
                      std::vector<RowMatrix<T>>* outs = nullptr) const {
    check_input(X);
    run_batch(X.rows(), [&](Index r0, Index n, int threads) {
      Workspace& ws = thread_workspace();
      ws.reset();
      std::vector<ConstMatrixMap<T>> acts;
      acts.reserve(layers.size() + 1);
      acts.emplace_back(X.data() + r0 * X.cols(), n, X.cols());
      run_forward(acts, layers.size(), ws, Y, r0, threads, outs);
      take(acts, r0, n);
      ws.trim();
    });
  }

  void push(Layer<T> l) {
    if (!layers.empty() && layers.back().out != l.in)
      throw std::invalid_argument("layer " + std::to_string(layers.size()) + " takes " + std::to_string(l.in) +
                                  " features but the previous layer gives " + std::to_string(layers.back().out));
    layers.push_back(std::move(l));
  }

  void check_input(const ConstMatrixMap<T>& X) const {
    if (layers.empty()) throw std::invalid_argument("the network has no layers");
    if (X.cols() != in_features())
      throw std::invalid_argument("expected input with " + std::to_string(in_features()) + " features, got " +
                                  std::to_string(X.cols()));
    check_finite(X, "input");
  }

  template <class F>
  void run_batch(Index N, F&& f) const {
    kernels::run_batch(N, team_mode(), std::forward<F>(f));
  }
};

}  // namespace kernels
}  // namespace FASTLRP_ISA_NS
}  // namespace fastlrp
