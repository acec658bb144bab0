#include "etf/buffer_pool.hpp"

#include <algorithm>

namespace cnode::etf {

std::vector<std::uint8_t> buffer_pool::take(std::size_t n) {
  auto v = take_kept(n);
  v.clear();
  if (v.capacity() < n) v.reserve(n);
  return v;
}

std::vector<std::uint8_t> buffer_pool::take_sized(std::size_t n) {
  auto v = take_kept(n);
  v.resize(n);  // a shrink writes nothing; growing zero-fills only past what the buffer held
  return v;
}

std::vector<std::uint8_t> buffer_pool::take_kept(std::size_t n) {
  std::vector<std::uint8_t> out;
  if (n >= limits_.min_capacity) {
    std::vector<std::uint8_t> found;
    {
      std::lock_guard lk(mu_);
      const auto now = clock::now();
      trim_locked(now);
      std::size_t best = kept_.size();
      for (std::size_t i = 0; i < kept_.size(); ++i) {
        const std::size_t c = kept_[i].v.capacity();
        if (c >= n && c / 2 <= n && (best == kept_.size() || c < kept_[best].v.capacity())) best = i;
      }
      if (best != kept_.size()) {
        kept_bytes_ -= kept_[best].v.capacity();
        found = std::move(kept_[best].v);
        kept_.erase(kept_.begin() + static_cast<std::ptrdiff_t>(best));
        ++hits_;
      } else {
        ++misses_;
      }
    }
    if (found.capacity() >= n) return found;
  }
  return out;
}

void buffer_pool::give(std::vector<std::uint8_t>&& v) noexcept {
  const std::size_t c = v.capacity();
  if (c < limits_.min_capacity || c > limits_.max_bytes) return;  // v frees its memory as the caller drops it
  {
    std::lock_guard lk(mu_);
    const auto now = clock::now();
    trim_locked(now);
    // Make room by dropping the oldest.
    while (kept_bytes_ + c > limits_.max_bytes && !kept_.empty()) {
      kept_bytes_ -= kept_.front().v.capacity();
      kept_.erase(kept_.begin());
    }
    try {
      kept_.push_back(entry{std::move(v), now});
      kept_bytes_ += c;
    } catch (...) {  // no room for the entry itself: the buffer is freed instead
    }
  }
}

void buffer_pool::trim_locked(clock::time_point now) noexcept {
  std::size_t drop = 0;
  while (drop < kept_.size() && (now == clock::time_point::max() || now - kept_[drop].since > limits_.max_idle)) {
    kept_bytes_ -= kept_[drop].v.capacity();
    ++drop;
  }
  kept_.erase(kept_.begin(), kept_.begin() + static_cast<std::ptrdiff_t>(drop));
}

void buffer_pool::trim(clock::time_point now) noexcept {
  std::lock_guard lk(mu_);
  trim_locked(now);
}

std::size_t buffer_pool::kept_bytes() const {
  std::lock_guard lk(mu_);
  return kept_bytes_;
}
std::size_t buffer_pool::kept_buffers() const {
  std::lock_guard lk(mu_);
  return kept_.size();
}
std::uint64_t buffer_pool::hits() const {
  std::lock_guard lk(mu_);
  return hits_;
}
std::uint64_t buffer_pool::misses() const {
  std::lock_guard lk(mu_);
  return misses_;
}

buffer_pool& big_buffers() noexcept {
  static buffer_pool* p = new buffer_pool();  // never destroyed: bytes nodes may be freed after main returns
  return *p;
}

}  // namespace cnode::etf
