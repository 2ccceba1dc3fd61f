// A sequential network run entirely in C++: forward pass, start relevance, and the backward
// pass of every layer's rule in one call (no Python between layers).
//
// Samples are independent, so a batch is cut into one chunk per thread and each thread runs
// the whole network on its chunk: no synchronisation between layers, weights shared read-only.
#pragma once

#include <exception>
#include <mutex>
#include <optional>
#include <vector>

#include "fastlrp/common.hpp"
#include "fastlrp/dense.hpp"
#include "fastlrp/elementwise.hpp"

namespace fastlrp::kernels {

enum class LayerKind : int { Dense = 0, Activation = 1, Affine = 2 };

template <class T>
struct Layer {
  LayerKind kind;
  Index in = 0, out = 0;
  Dense<T> dense;
  Affine<T> affine;
  Activation act = Activation::Identity;
  T act_param = T(0);

  template <class In>
  void forward(const In& A, RowMatrix<T>& Y) const {
    switch (kind) {
      case LayerKind::Dense:
        Y.resize(A.rows(), out);
        dense.forward(A, Y);
        return;
      case LayerKind::Affine: affine.forward(A, Y); return;
      case LayerKind::Activation: activation_forward<T>(act, act_param, A, Y); return;
    }
  }

  template <class In>
  void backward(const In& A, const RowMatrix<T>& Z, const RowMatrix<T>& R, RowMatrix<T>& Rin) const {
    switch (kind) {
      case LayerKind::Dense: dense.backward(A, Z, R, Rin); return;
      case LayerKind::Affine: affine.backward(A, Z, R, Rin); return;
      case LayerKind::Activation: Rin = R; return;  // Pass
    }
  }
};

// What explain() hands back; arrays cover the whole batch.
template <class T>
struct Explanation {
  RowMatrix<T> relevance;               // (N, in)
  RowMatrix<T> output;                  // (N, out): logits, before a skipped output nonlinearity
  RowMatrix<T> conservation;            // (N, L + 1): relevance sum at every layer boundary
  std::vector<RowMatrix<T>> layers;     // layerwise: L + 1 arrays, input first, start last
  Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1> targets;  // class per sample (empty: seeded)
};

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

  void add_dense(RowMatrix<T> W, RowVector<T> b, RuleParams rule, const std::vector<T>& low, const std::vector<T>& high) {
    Layer<T> l;
    l.kind = LayerKind::Dense;
    l.in = W.cols();
    l.out = W.rows();
    l.dense.W = std::move(W);
    l.dense.b = std::move(b);
    l.dense.rule = rule;
    l.dense.prepare(low, high);
    push(std::move(l));
  }

  void add_activation(Activation act, T param, Index width) {
    Layer<T> l;
    l.kind = LayerKind::Activation;
    l.act = act;
    l.act_param = param;
    l.in = l.out = width;
    push(std::move(l));
  }

  void add_affine(RowVector<T> scale, RowVector<T> shift, RuleParams rule) {
    Layer<T> l;
    l.kind = LayerKind::Affine;
    l.in = l.out = scale.size();
    l.affine.scale = std::move(scale);
    l.affine.shift = std::move(shift);
    l.affine.rule = rule;
    push(std::move(l));
  }

  // The full model's output (output nonlinearity included).
  RowMatrix<T> forward(const ConstMatrixMap<T>& X) const {
    check_input(X);
    RowMatrix<T> Y(X.rows(), out_features());
    parallel_chunks(X.rows(), [&](Index r0, Index n) {
      RowMatrix<T> a = X.middleRows(r0, n), next;
      for (const auto& l : layers) {
        l.forward(a, next);
        a.swap(next);
      }
      Y.middleRows(r0, n) = a;
    });
    return Y;
  }

  // mode: targets given (one per sample), or start relevance given (N, out), or neither
  // (the predicted class).
  Explanation<T> explain(const ConstMatrixMap<T>& X, const std::optional<Eigen::Map<const Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1>>>& targets,
                         const std::optional<ConstMatrixMap<T>>& start, bool layerwise) const {
    check_input(X);
    const Index N = X.rows(), L = static_cast<Index>(layers.size());
    const Index Lf = skips_last() ? L - 1 : L;  // layers run forward before the start
    const Index out = layers[Lf - 1 >= 0 ? Lf - 1 : 0].out;
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
    parallel_chunks(N, [&](Index r0, Index n) {
      std::vector<RowMatrix<T>> acts(Lf + 1);
      acts[0] = X.middleRows(r0, n);
      for (Index k = 0; k < Lf; ++k) layers[k].forward(acts[k], acts[k + 1]);
      const RowMatrix<T>& logits = acts[Lf];
      e.output.middleRows(r0, n) = logits;
      RowMatrix<T> R;
      if (start) {
        R = start->middleRows(r0, n);
      } else {
        R = RowMatrix<T>::Zero(n, out);
        for (Index r = 0; r < n; ++r) {
          Index t;
          if (targets) {
            t = (*targets)(r0 + r);
          } else {
            logits.row(r).maxCoeff(&t);  // first maximum, as numpy's argmax
          }
          e.targets(r0 + r) = t;
          R(r, t) = logits(r, t);
        }
      }
      for (Index k = L; k >= Lf; --k) {  // the start, and a skipped output nonlinearity
        e.conservation.col(k).segment(r0, n) = R.rowwise().sum();
        if (layerwise) e.layers[k].middleRows(r0, n) = R;
      }
      RowMatrix<T> Rin;
      for (Index k = Lf - 1; k >= 0; --k) {
        layers[k].backward(acts[k], acts[k + 1], R, Rin);
        R.swap(Rin);
        e.conservation.col(k).segment(r0, n) = R.rowwise().sum();
        if (layerwise) e.layers[k].middleRows(r0, n) = R;
      }
      e.relevance.middleRows(r0, n) = R;
    });
    return e;
  }

 private:
  void push(Layer<T> l) {
    if (!layers.empty() && layers.back().out != l.in)
      throw std::invalid_argument("layer " + std::to_string(layers.size()) + " takes " + std::to_string(l.in) +
                                  " features but the previous layer gives " + std::to_string(layers.back().out));
    layers.push_back(std::move(l));
  }

  template <class M>
  static void check_finite(const M& X, const char* what) {
    const T* p = X.data();
    const Index size = X.size();
    bool ok = true;
    for (Index i = 0; i < size; ++i) ok &= std::isfinite(p[i]);
    if (!ok) throw std::invalid_argument(std::string(what) + " contains NaN or Inf; expected finite values");
  }

  void check_input(const ConstMatrixMap<T>& X) const {
    if (layers.empty()) throw std::invalid_argument("the network has no layers");
    if (X.cols() != in_features())
      throw std::invalid_argument("expected input with " + std::to_string(in_features()) + " features, got " +
                                  std::to_string(X.cols()));
    check_finite(X, "input");
  }

  // Runs f(first_row, rows) over the batch in one chunk per thread; rethrows the first error.
  template <class F>
  static void parallel_chunks(Index N, F&& f) {
    const Index chunks = std::max<Index>(1, std::min<Index>(num_threads(), N));
    if (chunks == 1) {
      f(0, N);
      return;
    }
    std::exception_ptr error;
    std::mutex m;
#pragma omp parallel for num_threads(static_cast<int>(chunks)) schedule(static, 1)
    for (Index c = 0; c < chunks; ++c) {
      const Index r0 = N * c / chunks, r1 = N * (c + 1) / chunks;
      try {
        f(r0, r1 - r0);
      } catch (...) {
        std::lock_guard<std::mutex> g(m);
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
  }
};

}  // namespace fastlrp::kernels
