// Per-thread scratch memory reused across calls.
//
// A call's buffers (activations, relevances, rule temporaries) are carved from one block that
// stays allocated between calls: fresh large allocations cost a page fault per 4 KiB page,
// which measured as a third of an MLP explanation's time at batch 1024.
#pragma once

#include "fastlrp/isa.hpp"

#include <algorithm>
#include <cstdlib>
#include <unistd.h>
#include <memory>
#include <new>
#include <vector>

#include "fastlrp/common.hpp"

namespace fastlrp {
inline namespace FASTLRP_ISA_NS {

class Workspace {
 public:
  struct Mark {
    std::size_t block, offset;
  };

  // Workspaces up to this size stay allocated between calls; larger ones are returned to the
  // system. An eighth of the machine's memory, at most 4 GiB (it was 256 MiB): re-faulting
  // VGG-16's 1 GiB workspace at batch 8 on every call cost 5-10 % of the call (median of 4
  // calls, two runs each: 4.89 and 5.14 s returned, 4.69 and 4.57 s kept).
  static std::size_t keep_bytes() {
    static const std::size_t keep = [] {
      std::size_t cap = std::size_t(4) << 30;
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
      const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
      if (pages > 0 && page > 0) cap = std::min(cap, static_cast<std::size_t>(pages) * static_cast<std::size_t>(page) / 8);
#endif
      return std::max(cap, std::size_t(256) << 20);
    }();
    return keep;
  }

  // Start of a call: fold the blocks of the previous call into one block of their total size.
  void reset() {
    if (blocks_.size() > 1 || (!blocks_.empty() && blocks_[0].size > keep_bytes())) {
      std::size_t total = peak_;
      blocks_.clear();
      if (total > 0 && total <= keep_bytes()) add_block(total);
    }
    current_ = 0;
    offset_ = 0;
    used_ = 0;
    peak_ = 0;
  }

  // End of a call: give back oversized memory.
  void trim() {
    std::size_t total = 0;
    for (auto& b : blocks_) total += b.size;
    if (total > keep_bytes()) blocks_.clear();
  }

  template <class T>
  MatrixMap<T> matrix(Index rows, Index cols) {
    return MatrixMap<T>(take<T>(static_cast<std::size_t>(rows * cols)), rows, cols);
  }

  template <class T>
  T* take(std::size_t count) {
    std::size_t bytes = round_up(count * sizeof(T));
    if (bytes == 0) bytes = kAlign;
    while (current_ < blocks_.size() && offset_ + bytes > blocks_[current_].size) {
      ++current_;
      offset_ = 0;
    }
    if (current_ == blocks_.size()) {
      add_block(std::max(bytes, blocks_.empty() ? std::size_t(1) << 20 : 2 * blocks_.back().size));
      offset_ = 0;
    }
    T* p = reinterpret_cast<T*>(blocks_[current_].data.get() + offset_);
    offset_ += bytes;
    used_ += bytes;
    peak_ = std::max(peak_, used_);
    return p;
  }

  Mark mark() const { return {current_, offset_}; }
  void release(const Mark& m) {
    current_ = m.block;
    offset_ = m.offset;
    std::size_t used = offset_;
    for (std::size_t b = 0; b < current_; ++b) used += blocks_[b].size;
    used_ = used;
  }

 private:
  static constexpr std::size_t kAlign = 64;
  static std::size_t round_up(std::size_t b) { return (b + kAlign - 1) / kAlign * kAlign; }

  struct Free {
    void operator()(char* p) const { std::free(p); }
  };
  struct Block {
    std::unique_ptr<char, Free> data;
    std::size_t size;
  };

  void add_block(std::size_t bytes) {
    bytes = round_up(bytes);
    char* p = static_cast<char*>(std::aligned_alloc(kAlign, bytes));
    if (!p) throw std::bad_alloc();
    blocks_.push_back(Block{std::unique_ptr<char, Free>(p), bytes});
  }

  std::vector<Block> blocks_;
  std::size_t current_ = 0, offset_ = 0, used_ = 0, peak_ = 0;
};

// One workspace per thread (OpenMP workers persist, so theirs are reused across calls).
inline Workspace& thread_workspace() {
  thread_local Workspace ws;
  return ws;
}

}  // namespace FASTLRP_ISA_NS
}  // namespace fastlrp
