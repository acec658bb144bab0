// Dots and causal contexts (Almeida, Shoker, Baquero, "Delta State Replicated Data Types", JPDC 2018, section 5):
// a dot (replica, n) names the n-th event of a replica; a causal context is a set of dots, kept as a compact version
// vector (every dot 1..vv[r] of replica r) plus a dot cloud of the dots beyond a gap. Contexts of deltas are
// usually not contiguous, so the cloud is needed for them and for states that merged deltas out of order.
//
// The cloud is kept as ranges of dots per replica: the context of an anti-entropy interval is typically a run of
// one replica's dots (n+1 .. n+k) past a gap, which then costs one range instead of k dots, in memory and on the
// wire, and inserting a dot costs O(log) however large the cloud.
//
// The representation is canonical (the cloud never holds a dot the vector covers, its ranges neither overlap nor
// touch, the vector has no zero entries), so == is equality of the dot sets.
#pragma once

#include <compare>
#include <cstdint>
#include <map>

#include "etf/atom.hpp"

namespace cnode::crdt {

// A replica is named by an atom. A replica that lost its state must not come back under the same name: it would
// hand out dots it handed out before (the service gives every incarnation without a snapshot a fresh name).
using replica_id = etf::atom;

// Counters at or past this are refused by the decoder, so that next() never wraps.
inline constexpr std::uint64_t max_dot_counter = std::uint64_t{1} << 62;

struct dot {
  replica_id replica;
  std::uint64_t counter = 0;  // 1, 2, ...
  friend bool operator==(const dot&, const dot&) = default;
  friend std::strong_ordering operator<=>(const dot&, const dot&) = default;
};

class causal_context {
 public:
  using version_vector = std::map<replica_id, std::uint64_t>;
  using ranges = std::map<std::uint64_t, std::uint64_t>;  // first dot -> last dot (inclusive)
  using dot_cloud = std::map<replica_id, ranges>;

  bool contains(const dot& d) const;
  // The next dot of replica r: one past the highest dot of r this context knows.
  dot next(replica_id r) const;
  void insert(const dot& d) { insert_range(d.replica, d.counter, d.counter); }
  // Takes in the dots first..last of replica r (dot 0 is not a dot and is skipped).
  void insert_range(replica_id r, std::uint64_t first, std::uint64_t last);
  // Takes in the dots 1..n of replica r.
  void advance(replica_id r, std::uint64_t n);
  void join(const causal_context& o);
  bool empty() const noexcept { return vv_.empty() && cloud_.empty(); }
  std::size_t size() const noexcept;  // number of dots, capped at SIZE_MAX
  // Entries of the representation (vector entries + cloud ranges): what it costs to store or send.
  std::size_t weight() const noexcept;

  const version_vector& vector() const noexcept { return vv_; }
  const dot_cloud& cloud() const noexcept { return cloud_; }

  friend bool operator==(const causal_context&, const causal_context&) = default;

 private:
  // vv_[r] = n, and the cloud ranges of r that n reaches are taken into it.
  void settle(replica_id r, std::uint64_t n);
  version_vector vv_;
  dot_cloud cloud_;
};

}  // namespace cnode::crdt
