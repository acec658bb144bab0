// Dots and causal contexts (Almeida, Shoker, Baquero, "Delta State Replicated Data Types", JPDC 2018, section 5):
// a dot (replica, n) names the n-th event of a replica; a causal context is a set of dots, kept as a compact version
// vector (every dot 1..vv[r] of replica r) plus a dot cloud of the dots beyond a gap. Contexts of deltas are
// usually not contiguous, so the cloud is needed for them and for states that merged deltas out of order.
//
// The representation is canonical (the cloud never holds a dot the vector covers, the vector has no zero entries),
// so == is equality of the dot sets.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <set>

#include "etf/atom.hpp"

namespace cnode::crdt {

// A replica is named by its node name. A replica that lost its state must not come back under the same name: it
// would hand out dots it handed out before.
using replica_id = etf::atom;

struct dot {
  replica_id replica;
  std::uint64_t counter = 0;  // 1, 2, ...
  friend bool operator==(const dot&, const dot&) = default;
  friend std::strong_ordering operator<=>(const dot&, const dot&) = default;
};

class causal_context {
 public:
  using version_vector = std::map<replica_id, std::uint64_t>;

  bool contains(const dot& d) const;
  // The next dot of replica r: one past the highest dot of r this context knows.
  dot next(replica_id r) const;
  void insert(const dot& d);
  // Takes in the dots 1..n of replica r.
  void advance(replica_id r, std::uint64_t n);
  void join(const causal_context& o);
  bool empty() const noexcept { return vv_.empty() && cloud_.empty(); }
  std::size_t size() const noexcept;  // number of dots, capped at SIZE_MAX

  const version_vector& vector() const noexcept { return vv_; }
  const std::set<dot>& cloud() const noexcept { return cloud_; }

  friend bool operator==(const causal_context&, const causal_context&) = default;

 private:
  void compact();
  version_vector vv_;
  std::set<dot> cloud_;
};

}  // namespace cnode::crdt
