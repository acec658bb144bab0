// A process's mailbox: the messages it has not received yet, in arrival order. A vector read from a head index:
// taking the first message (the usual receive) is a move and an increment, and an empty mailbox holds no heap at all
// (a std::deque allocates a map and a 512-byte block as soon as it exists: most of an idle process's memory).
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include "etf/term.hpp"

namespace cnode {

class mailbox {
 public:
  std::size_t size() const noexcept { return items_.size() - head_; }
  bool empty() const noexcept { return size() == 0; }
  // The i-th waiting message (0: the oldest).
  const etf::term& operator[](std::size_t i) const noexcept { return items_[head_ + i]; }
  void push_back(etf::term t) { items_.push_back(std::move(t)); }

  // Removes the i-th waiting message and returns it; the others keep their order.
  etf::term take(std::size_t i) {
    etf::term t = std::move(items_[head_ + i]);
    if (i == 0) {
      ++head_;
      if (head_ == items_.size()) {
        clear();
      } else if (head_ >= 64 && head_ * 2 >= items_.size()) {
        // What was taken from the front goes once it is half the vector: each message is moved O(1) times.
        items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
        head_ = 0;
      }
    } else {
      items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(head_ + i));
    }
    return t;
  }

  // Removes every waiting message for which pred is true.
  template <typename Pred>
  void remove_if(Pred pred) {
    std::size_t out = head_;
    for (std::size_t i = head_; i < items_.size(); ++i) {
      if (pred(std::as_const(items_[i]))) continue;
      if (out != i) items_[out] = std::move(items_[i]);
      ++out;
    }
    items_.resize(out);
    if (head_ == items_.size()) clear();
  }

  // The storage stays for the next messages unless a flood made it large.
  void clear() noexcept {
    items_.clear();
    head_ = 0;
    release_if_large();
  }

 private:
  void release_if_large() noexcept {
    if (items_.capacity() > 1024) std::vector<etf::term>().swap(items_);
  }

  std::vector<etf::term> items_;
  std::size_t head_ = 0;
};

}  // namespace cnode
