#include "crdt/causal.hpp"

#include <algorithm>
#include <iterator>
#include <limits>

namespace cnode::crdt {

namespace {
std::uint64_t vv_of(const causal_context::version_vector& vv, replica_id r) {
  auto it = vv.find(r);
  return it == vv.end() ? 0 : it->second;
}
}  // namespace

bool causal_context::contains(const dot& d) const {
  if (d.counter == 0) return false;
  if (d.counter <= vv_of(vv_, d.replica)) return true;
  auto cit = cloud_.find(d.replica);
  if (cit == cloud_.end()) return false;
  auto it = cit->second.upper_bound(d.counter);
  if (it == cit->second.begin()) return false;
  return std::prev(it)->second >= d.counter;
}

dot causal_context::next(replica_id r) const {
  std::uint64_t n = vv_of(vv_, r);
  if (auto cit = cloud_.find(r); cit != cloud_.end() && !cit->second.empty())
    n = std::max(n, cit->second.rbegin()->second);
  return {r, n + 1};
}

void causal_context::settle(replica_id r, std::uint64_t n) {
  auto cit = cloud_.find(r);
  if (cit != cloud_.end()) {
    auto& rs = cit->second;
    // Ranges are sorted and do not touch: once one starts past n + 1, so do the rest.
    while (!rs.empty() && rs.begin()->first - 1 <= n) {
      n = std::max(n, rs.begin()->second);
      rs.erase(rs.begin());
    }
    if (rs.empty()) cloud_.erase(cit);
  }
  vv_[r] = n;
}

void causal_context::insert_range(replica_id r, std::uint64_t first, std::uint64_t last) {
  first = std::max<std::uint64_t>(first, 1);
  if (last < first) return;
  const std::uint64_t have = vv_of(vv_, r);
  if (last <= have) return;
  first = std::max(first, have + 1);
  if (first == have + 1) return settle(r, last);
  auto& rs = cloud_[r];
  auto it = rs.upper_bound(first);
  if (it != rs.begin()) {
    auto p = std::prev(it);
    if (p->second >= first - 1) {  // overlaps or touches the range before
      first = p->first;
      last = std::max(last, p->second);
      it = rs.erase(p);
    }
  }
  while (it != rs.end() && it->first - 1 <= last) {
    last = std::max(last, it->second);
    it = rs.erase(it);
  }
  rs.emplace(first, last);
}

void causal_context::advance(replica_id r, std::uint64_t n) {
  if (n == 0 || n <= vv_of(vv_, r)) return;
  settle(r, n);
}

void causal_context::join(const causal_context& o) {
  for (const auto& [r, n] : o.vv_) advance(r, n);
  for (const auto& [r, rs] : o.cloud_)
    for (const auto& [first, last] : rs) insert_range(r, first, last);
}

std::size_t causal_context::size() const noexcept {
  constexpr std::size_t cap = std::numeric_limits<std::size_t>::max();
  std::size_t n = 0;
  auto add = [&](std::uint64_t k) {
    if (k > cap - n) n = cap;
    else n += k;
  };
  for (const auto& [r, c] : vv_) add(c);
  for (const auto& [r, rs] : cloud_)
    for (const auto& [first, last] : rs) add(last - first + 1);
  return n;
}

std::size_t causal_context::weight() const noexcept {
  std::size_t n = vv_.size();
  for (const auto& [r, rs] : cloud_) n += rs.size();
  return n;
}

}  // namespace cnode::crdt
