// A feed-forward graph of layers run entirely in C++ (docs/rules.md, "Graphs"): nodes in
// topological order, each one layer (network.hpp's Layer) or a join (Add, Concat) of earlier
// nodes' outputs; the forward pass in that order, LRP in reverse, in one call.
//
// Relevance at a node's output is the sum of what its consumers send back (fan-out sums),
// added in reverse topological order of the consumers, so the result does not depend on
// anything but the graph. A node's relevance buffer is handed to its input (Pass) or freed as
// soon as the node's backward step is done; activations live until the backward pass ends.
// Threads: as Network (run_batch): one chunk of samples per thread for dense-only graphs, one
// team of threads per layer when the graph has spatial layers.
#pragma once

#include "fastlrp/isa.hpp"

#include <string>
#include <vector>

#include "fastlrp/network.hpp"

namespace fastlrp {
inline namespace FASTLRP_ISA_NS {
namespace kernels {

enum class NodeKind : int { Layer = 0, Add = 1, Concat = 2, Mul = 3 };

template <class T>
struct Node {
  NodeKind kind = NodeKind::Layer;
  Layer<T> layer;                // NodeKind::Layer
  std::vector<int> inputs;       // node ids; -1 is the graph's input
  Index out = 0;                 // output width per sample
  Index pixels = 1;              // Concat: pixels per sample (1 for flat features); Mul: pixels a
                                 // per-channel gate is broadcast over (1: gate as large as the signal)
  std::vector<Index> channels;   // Concat: channels of every input, in order
  RuleParams rule;               // Add: its Epsilon stabiliser
};

// Buffers of a thread's graph calls, kept between calls (as the Workspace keeps its blocks, up
// to the same limit): a ResNet's activation and relevance buffers come in a few sizes, and
// taking them back avoids faulting fresh pages on every call (a sixth of an explanation's time
// when every buffer was new).
template <class T>
class BufferPool {
 public:
  RowMatrix<T> take(Index rows, Index cols) {
    const Index size = rows * cols;
    for (std::size_t i = 0; i < free_.size(); ++i)
      if (free_[i].size() == size) {
        RowMatrix<T> m = std::move(free_[i]);
        free_[i] = std::move(free_.back());
        free_.pop_back();
        bytes_ -= static_cast<std::size_t>(size) * sizeof(T);
        m.resize(rows, cols);  // the same size: no new allocation
        return m;
      }
    return RowMatrix<T>(rows, cols);
  }
  void give(RowMatrix<T>&& m) {
    const std::size_t b = static_cast<std::size_t>(m.size()) * sizeof(T);
    if (b == 0 || bytes_ + b > Workspace::keep_bytes()) return;  // dropped: freed by m's destructor
    bytes_ += b;
    free_.push_back(std::move(m));
  }

 private:
  std::vector<RowMatrix<T>> free_;
  std::size_t bytes_ = 0;
};

template <class T>
BufferPool<T>& thread_pool() {
  thread_local BufferPool<T> pool;
  return pool;
}

template <class T>
class Graph {
 public:
  Index in_width = 0;
  std::vector<Node<T>> nodes;

  explicit Graph(Index input_width = 0) : in_width(input_width) {}

  Index width_of(int id) const { return id < 0 ? in_width : nodes[static_cast<std::size_t>(id)].out; }

  void add_layer(Layer<T> l, int input) {
    check_inputs({input});
    if (width_of(input) != l.in)
      throw std::invalid_argument("node " + std::to_string(nodes.size()) + " takes " + std::to_string(l.in) +
                                  " values per sample but its input gives " + std::to_string(width_of(input)));
    const Index out = l.out;
    nodes.push_back(Node<T>{NodeKind::Layer, std::move(l), {input}, out, 1, {}, RuleParams{}});  // not assignable
  }

  void add_add(const std::vector<int>& inputs, RuleParams rule) {
    check_inputs(inputs);
    if (inputs.size() < 2) throw std::invalid_argument("Add needs at least two inputs");
    for (int i : inputs)
      if (width_of(i) != width_of(inputs[0])) throw std::invalid_argument("Add inputs differ in size");
    Node<T> n;
    n.kind = NodeKind::Add;
    n.inputs = inputs;
    n.out = width_of(inputs[0]);
    n.rule = rule;
    nodes.push_back(std::move(n));
  }

  void add_concat(const std::vector<int>& inputs, Index pixels, const std::vector<Index>& channels) {
    check_inputs(inputs);
    if (inputs.empty() || channels.size() != inputs.size() || pixels <= 0)
      throw std::invalid_argument("Concat needs one channel count per input");
    Index total = 0;
    for (std::size_t k = 0; k < inputs.size(); ++k) {
      if (channels[k] <= 0 || width_of(inputs[k]) != pixels * channels[k])
        throw std::invalid_argument("Concat input " + std::to_string(k) + " does not have pixels x channels values");
      total += channels[k];
    }
    Node<T> n;
    n.kind = NodeKind::Concat;
    n.inputs = inputs;
    n.pixels = pixels;
    n.channels = channels;
    n.out = pixels * total;
    nodes.push_back(std::move(n));
  }

  // A gate y = signal * gate (docs/rules.md, "Graphs"): inputs {signal, gate}.
  void add_mul(int signal, int gate, Index pixels) {
    check_inputs({signal, gate});
    if (pixels <= 0 || width_of(gate) * pixels != width_of(signal))
      throw std::invalid_argument("Mul: the gate (" + std::to_string(width_of(gate)) + " values) broadcast over " +
                                  std::to_string(pixels) + " pixels does not match the signal (" +
                                  std::to_string(width_of(signal)) + " values)");
    Node<T> n;
    n.kind = NodeKind::Mul;
    n.inputs = {signal, gate};
    n.pixels = pixels;
    n.out = width_of(signal);
    nodes.push_back(std::move(n));
  }

  Index out_width() const { return nodes.empty() ? 0 : nodes.back().out; }

  bool skips_last() const {
    if (nodes.empty()) return false;
    const Node<T>& l = nodes.back();
    return l.kind == NodeKind::Layer && l.layer.kind == LayerKind::Activation && is_output_nonlinearity(l.layer.act);
  }
  // The node whose output is the logits (-1: the input itself).
  int logits_node() const {
    return skips_last() ? nodes.back().inputs[0] : static_cast<int>(nodes.size()) - 1;
  }
  Index logits_width() const { return width_of(logits_node()); }

  // As Network::team_mode: a graph with spatial layers (or joins of images) runs the batch as
  // one chunk, every layer spreading its work over the threads.
  bool team_mode() const {
    for (const auto& n : nodes)
      if ((n.kind == NodeKind::Layer && n.layer.is_spatial()) || (n.kind != NodeKind::Layer && n.kind != NodeKind::Add && n.pixels > 1))
        return true;
    return false;
  }

  RowMatrix<T> forward(const ConstMatrixMap<T>& X) const {
    check_input(X);
    RowMatrix<T> Y(X.rows(), out_width());
    run_batch(X.rows(), team_mode(), [&](Index r0, Index n, int threads) {
      Activations a;
      run_forward(X, r0, n, threads, a, true);
      rows_of(Y, r0, n) = a.map(static_cast<int>(nodes.size()) - 1);
      for (auto& m : a.own) thread_pool<T>().give(std::move(m));
      thread_workspace().trim();
    });
    return Y;
  }

  Explanation<T> explain(const ConstMatrixMap<T>& X, const std::optional<TargetMap>& targets,
                         const std::optional<ConstMatrixMap<T>>& start, bool layerwise) const {
    check_input(X);
    const Index N = X.rows(), V = static_cast<Index>(nodes.size());
    const int logits = logits_node();
    const Index out = logits_width();
    if (start) check_finite(*start, "start relevance");
    Explanation<T> e;
    e.relevance.resize(N, in_width);
    e.output.resize(N, out);
    e.conservation.setZero(N, V + 1);
    if (!start) e.targets.resize(N);
    if (layerwise) {
      e.layers.resize(V + 1);
      e.layers[0].resize(N, in_width);
      for (Index k = 0; k < V; ++k) e.layers[k + 1].setZero(N, nodes[k].out);
    }

    const std::vector<char> nonneg = nonnegative_outputs();
    // same_sums[i] = k: node i's relevance arrives unchanged from node k, a Pass activation that
    // is node i's only consumer (the same buffer, moved), so its row sums are node k's
    std::vector<int> uses(nodes.size(), 0), same_sums(nodes.size(), -1);
    for (const auto& node : nodes)
      for (int i : node.inputs)
        if (i >= 0) ++uses[static_cast<std::size_t>(i)];
    for (int k = 0; k <= logits; ++k) {
      const Node<T>& node = nodes[static_cast<std::size_t>(k)];
      const int in = node.kind == NodeKind::Layer ? node.inputs[0] : -1;
      if (in >= 0 && node.layer.kind == LayerKind::Activation && uses[static_cast<std::size_t>(in)] == 1)
        same_sums[static_cast<std::size_t>(in)] = k;
    }

    run_batch(N, team_mode(), [&](Index r0, Index n, int threads) {
      Activations a;
      run_forward(X, r0, n, threads, a, false);
      const ConstMatrixMap<T> L = a.map(logits);
      rows_of(e.output, r0, n) = L;

      BufferPool<T>& pool = thread_pool<T>();
      std::vector<RowMatrix<T>> rel(nodes.size() + 1);  // rel[id + 1]: relevance at node id's output
      RowMatrix<T> R0 = pool.take(n, out);
      seed_relevance(L, r0, targets, start, e, MatrixMap<T>(R0.data(), n, out));
      if (skips_last()) {  // the skipped output nonlinearity's output carries the start relevance
        row_sums(R0, e.conservation.col(V).segment(r0, n), threads);
        if (layerwise) rows_of(e.layers[V], r0, n) = R0;
      }
      rel[logits + 1] = std::move(R0);

      for (int k = logits; k >= 0; --k) {
        RowMatrix<T>& R = rel[k + 1];
        const Node<T>& node = nodes[k];
        if (R.size() == 0) {  // reaches nothing that the output uses
          R = pool.take(n, node.out);
          R.setZero();
        }
        if (const int from = same_sums[static_cast<std::size_t>(k)]; from >= 0)
          e.conservation.col(k + 1).segment(r0, n) = e.conservation.col(from + 1).segment(r0, n);
        else
          row_sums(R, e.conservation.col(k + 1).segment(r0, n), threads);
        if (layerwise) rows_of(e.layers[k + 1], r0, n) = R;
        backward_node(k, a, std::move(R), rel, threads, nonneg);
      }
      RowMatrix<T>& Rin = rel[0];
      if (Rin.size() == 0) Rin.setZero(n, in_width);
      row_sums(Rin, e.conservation.col(0).segment(r0, n), threads);
      rows_of(e.relevance, r0, n) = Rin;
      if (layerwise) rows_of(e.layers[0], r0, n) = Rin;
      pool.give(std::move(Rin));
      for (auto& m : a.own) pool.give(std::move(m));
      thread_workspace().trim();
    });
    check_overflow(e);
    return e;
  }

 private:
  // One chunk's activations: owned buffers, and every node's output as a pointer (identity
  // nodes point at their input's).
  struct Activations {
    const T* input = nullptr;
    Index n = 0, in_width = 0;
    std::vector<RowMatrix<T>> own;
    std::vector<const T*> ptr;
    std::vector<Index> width;
    ConstMatrixMap<T> map(int id) const {
      if (id < 0) return ConstMatrixMap<T>(input, n, in_width);
      return ConstMatrixMap<T>(ptr[static_cast<std::size_t>(id)], n, width[static_cast<std::size_t>(id)]);
    }
  };

  void run_forward(const ConstMatrixMap<T>& X, Index r0, Index n, int threads, Activations& a, bool free_early) const {
    const std::size_t V = nodes.size();
    a.input = X.data() + r0 * X.cols();
    a.n = n;
    a.in_width = in_width;
    a.own.assign(V, RowMatrix<T>());
    a.ptr.assign(V, nullptr);
    a.width.assign(V, 0);
    std::vector<int> last_use;
    if (free_early) {  // forward only: a buffer goes as soon as its last consumer has run
      last_use.assign(V, -1);
      for (std::size_t k = 0; k < V; ++k)
        for (int i : nodes[k].inputs)
          if (i >= 0) last_use[static_cast<std::size_t>(i)] = static_cast<int>(k);
    }
    Workspace& ws = thread_workspace();
    ws.reset();
    for (std::size_t k = 0; k < V; ++k) {
      const Node<T>& node = nodes[k];
      a.width[k] = node.out;
      if (node.kind == NodeKind::Layer && node.layer.is_identity()) {
        a.ptr[k] = a.map(node.inputs[0]).data();
        continue;
      }
      RowMatrix<T>& Y = a.own[k];
      Y = thread_pool<T>().take(n, node.out);
      MatrixMap<T> y(Y.data(), n, node.out);
      switch (node.kind) {
        case NodeKind::Layer:
          node.layer.forward(a.map(node.inputs[0]), y, threads);
          break;
        case NodeKind::Add:
          for_segments(n, node.out, threads, [&](Index r, Index c0, Index len) {
            auto dst = y.row(r).segment(c0, len);
            dst = a.map(node.inputs[0]).row(r).segment(c0, len);
            for (std::size_t i = 1; i < node.inputs.size(); ++i) dst += a.map(node.inputs[i]).row(r).segment(c0, len);
          });
          break;
        case NodeKind::Concat:
          concat_forward(node, a, y);
          break;
        case NodeKind::Mul: {
          const Index C = node.out / node.pixels;
          const ConstMatrixMap<T> X = a.map(node.inputs[0]), G = a.map(node.inputs[1]);
          // one run of C values per pixel (or the whole row for a full-size gate)
          const Index runs = n * node.pixels, len = node.pixels == 1 ? node.out : C;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && runs > 1)
          for (Index q = 0; q < runs; ++q) {
            const Index r = q / node.pixels, p = q % node.pixels;
            const T* x = X.row(r).data() + p * len;
            const T* gate = G.row(r).data();  // a per-channel gate: the same C values for every pixel
            T* dst = y.row(r).data() + p * len;
            for (Index c = 0; c < len; ++c) dst[c] = x[c] * gate[c];
          }
          break;
        }
      }
      a.ptr[k] = Y.data();
      if (free_early)
        for (int i : node.inputs)
          if (i >= 0 && last_use[static_cast<std::size_t>(i)] == static_cast<int>(k) && !is_final(i))
            thread_pool<T>().give(std::move(a.own[static_cast<std::size_t>(i)]));
    }
  }

  bool is_final(int id) const { return id == static_cast<int>(nodes.size()) - 1; }

  void concat_forward(const Node<T>& node, const Activations& a, MatrixMap<T> y) const {
    const Index total = node.out / node.pixels;
    for (Index r = 0; r < a.n; ++r) {
      T* dst = y.row(r).data();
      Index c0 = 0;
      for (std::size_t i = 0; i < node.inputs.size(); ++i) {
        const Index C = node.channels[i];
        const T* src = a.map(node.inputs[i]).row(r).data();
        for (Index p = 0; p < node.pixels; ++p)
          copy_run(src + p * C, C, dst + p * total + c0);
        c0 += C;
      }
    }
  }

  // rel[id + 1] += M, or takes M when nothing arrived there yet.
  static void accumulate(std::vector<RowMatrix<T>>& rel, int id, RowMatrix<T>&& M, int threads) {
    RowMatrix<T>& dst = rel[static_cast<std::size_t>(id + 1)];
    if (dst.size() == 0) {
      dst = std::move(M);
      return;
    }
    for_segments(M.rows(), M.cols(), threads, [&](Index r, Index c0, Index len) {
      dst.row(r).segment(c0, len) += M.row(r).segment(c0, len);
    });
    thread_pool<T>().give(std::move(M));
  }

  // Whether each node's output has no negative entries by construction (nonnegative_output).
  std::vector<char> nonnegative_outputs() const {
    std::vector<char> nn(nodes.size(), 0);
    for (std::size_t k = 0; k < nodes.size(); ++k) {
      const Node<T>& node = nodes[k];
      bool all = true;  // every input nonnegative (the graph's input is not assumed to be)
      for (int i : node.inputs) all = all && i >= 0 && nn[static_cast<std::size_t>(i)];
      nn[k] = node.kind == NodeKind::Layer ? nonnegative_output(node.layer, all) : all;  // Add, Concat, Mul
    }
    return nn;
  }

  void backward_node(int k, const Activations& a, RowMatrix<T>&& R, std::vector<RowMatrix<T>>& rel, int threads,
                     const std::vector<char>& nonneg) const {
    const Node<T>& node = nodes[static_cast<std::size_t>(k)];
    const Index n = a.n;
    switch (node.kind) {
      case NodeKind::Layer: {
        const Layer<T>& l = node.layer;
        const int in = node.inputs[0];
        if (l.kind == LayerKind::Activation) {  // Pass
          accumulate(rel, in, std::move(R), threads);
          return;
        }
        // relevance already at the input (its other consumers'): added to in place where the
        // layer can, else through accumulate()
        RowMatrix<T>& there = rel[static_cast<std::size_t>(in + 1)];
        const bool add = there.size() != 0 && l.adds_to_rin();
        RowMatrix<T> Rin = add ? RowMatrix<T>() : thread_pool<T>().take(n, l.in);
        T* rin = add ? there.data() : Rin.data();
        Workspace& ws = thread_workspace();
        const auto mark = ws.mark();
        l.backward(a.map(in), a.map(k), ConstMatrixMap<T>(R.data(), n, R.cols()), MatrixMap<T>(rin, n, l.in), ws,
                   threads, in >= 0 && nonneg[static_cast<std::size_t>(in)], add);
        ws.release(mark);
        thread_pool<T>().give(std::move(R));
        if (!add) accumulate(rel, in, std::move(Rin), threads);
        return;
      }
      case NodeKind::Add: {
        // R_i = x_i * R / stab(z) (docs/rules.md (Graphs): zennit's Norm rule on its Sum layer),
        // in one pass: each input's share is written to its relevance buffer, or added to what
        // already arrived there (in input order, each share rounded before it is added).
        const T eps = T(node.rule.epsilon);
        const ConstMatrixMap<T> Z = a.map(k);
        const std::size_t m = node.inputs.size();
        std::vector<T*> dst(m);
        std::vector<const T*> src(m);
        std::vector<char> add(m);
        for (std::size_t i = 0; i < m; ++i) {
          RowMatrix<T>& d = rel[static_cast<std::size_t>(node.inputs[i] + 1)];
          add[i] = d.size() != 0;
          if (!add[i]) d = thread_pool<T>().take(n, node.out);
          dst[i] = d.data();
          src[i] = a.map(node.inputs[i]).data();
        }
        const Index w = node.out;
        for_segments(n, w, threads, [&](Index r, Index c0, Index len) {
          T* rs = R.row(r).data();
          const T* z = Z.row(r).data();
          stabilized_ratio_run(rs + c0, z + c0, eps, rs + c0, len);  // safe_ratio's operations, in vectors
          for (std::size_t i = 0; i < m; ++i) {
            const T* x = src[i] + r * w;
            T* y = dst[i] + r * w;
            if (add[i])
              for (Index c = c0; c < c0 + len; ++c) y[c] += x[c] * rs[c];
            else
              for (Index c = c0; c < c0 + len; ++c) y[c] = x[c] * rs[c];
          }
        });
        thread_pool<T>().give(std::move(R));
        return;
      }
      case NodeKind::Mul:  // the signal takes all relevance, the gate (inputs[1]) none
        accumulate(rel, node.inputs[0], std::move(R), threads);
        return;
      case NodeKind::Concat: {
        const Index total = node.out / node.pixels;
        Index c0 = 0;
        for (std::size_t i = 0; i < node.inputs.size(); ++i) {
          const Index C = node.channels[i];
          RowMatrix<T> Ri = thread_pool<T>().take(n, node.pixels * C);
          for (Index r = 0; r < n; ++r) {
            const T* src = R.row(r).data();
            T* dst = Ri.row(r).data();
            for (Index p = 0; p < node.pixels; ++p) copy_run(src + p * total + c0, C, dst + p * C);
          }
          c0 += C;
          accumulate(rel, node.inputs[i], std::move(Ri), threads);
        }
        thread_pool<T>().give(std::move(R));
        return;
      }
    }
  }

  void check_inputs(const std::vector<int>& inputs) const {
    for (int i : inputs)
      if (i < -1 || i >= static_cast<int>(nodes.size()))
        throw std::invalid_argument("node " + std::to_string(nodes.size()) + ": input " + std::to_string(i) +
                                    " is not an earlier node");
  }

  void check_input(const ConstMatrixMap<T>& X) const {
    if (nodes.empty()) throw std::invalid_argument("the graph has no nodes");
    if (X.cols() != in_width)
      throw std::invalid_argument("expected input with " + std::to_string(in_width) + " values per sample, got " +
                                  std::to_string(X.cols()));
    check_finite(X, "input");
  }
};

}  // namespace kernels
}  // namespace FASTLRP_ISA_NS
}  // namespace fastlrp
