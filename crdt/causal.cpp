#include "crdt/causal.hpp"

#include <algorithm>
#include <iterator>
#include <limits>

namespace cnode::crdt {

bool causal_context::contains(const dot& d) const {
  auto it = vv_.find(d.replica);
  if (it != vv_.end() && d.counter <= it->second) return true;
  return cloud_.contains(d);
}

dot causal_context::next(replica_id r) const {
  std::uint64_t n = 0;
  if (auto it = vv_.find(r); it != vv_.end()) n = it->second;
  // The cloud's highest dot of r: the last one before (r+1, 0) in dot order.
  auto it = cloud_.lower_bound(dot{r, std::numeric_limits<std::uint64_t>::max()});
  if (it != cloud_.end() && it->replica == r) n = std::max(n, it->counter);
  if (it != cloud_.begin()) {
    auto prev = std::prev(it);
    if (prev->replica == r) n = std::max(n, prev->counter);
  }
  return {r, n + 1};
}

void causal_context::insert(const dot& d) {
  if (d.counter == 0 || contains(d)) return;
  cloud_.insert(d);
  compact();
}

void causal_context::advance(replica_id r, std::uint64_t n) {
  if (n == 0) return;
  auto& mine = vv_[r];
  if (n > mine) mine = n;
  compact();
}

void causal_context::join(const causal_context& o) {
  for (const auto& [r, n] : o.vv_) {
    auto& mine = vv_[r];
    if (n > mine) mine = n;
  }
  cloud_.insert(o.cloud_.begin(), o.cloud_.end());
  compact();
}

std::size_t causal_context::size() const noexcept {
  std::size_t n = cloud_.size();
  for (const auto& [r, c] : vv_) {
    if (c > std::numeric_limits<std::size_t>::max() - n) return std::numeric_limits<std::size_t>::max();
    n += c;
  }
  return n;
}

// The cloud is sorted by (replica, counter), so one pass moves every dot that extends its replica's vector.
void causal_context::compact() {
  for (auto it = cloud_.begin(); it != cloud_.end();) {
    auto vit = vv_.find(it->replica);
    std::uint64_t have = vit == vv_.end() ? 0 : vit->second;
    if (it->counter <= have) {
      it = cloud_.erase(it);
    } else if (it->counter == have + 1) {
      if (vit == vv_.end()) vv_.emplace(it->replica, it->counter);
      else vit->second = it->counter;
      it = cloud_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace cnode::crdt
