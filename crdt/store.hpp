// The replica store: named objects, each fixed to one type by its first operation, and the anti-entropy of
// Almeida et al. 2018, algorithm 2 (delta-interval based, with acks):
//
//   local op:        d = m(X); X = X join d; D[c] = d; c = c + 1
//   sync to peer j:  if A[j] < c: the interval D[A[j]] join ... join D[c-1] with seq c, or the full state with
//                    seq c when part of that interval is no longer buffered (a new peer, a peer that fell behind)
//   receive (d, n):  the part of d that is new to X is joined and buffered as D[c], c = c + 1 (so it reaches the
//                    peers that did not get it directly); answer ack(n)
//   ack(n) from j:   A[j] = max(A[j], n); the deltas every peer acked are dropped
//
// D holds at most max_buffered_deltas intervals; past that the oldest go and the peers that still needed them get
// the full state. The store is sans-I/O: operations and messages in, deltas and sync_out/ack_out out (etcd raft's
// Ready); the shell sends what sync() returns on its timer and feeds back what arrives.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "crdt/error.hpp"
#include "crdt/hlc.hpp"
#include "crdt/types.hpp"

namespace cnode::crdt {

// Objects (or deltas of objects) by name.
using delta_group = std::map<term, object, term_less>;

struct store_options {
  std::size_t max_buffered_deltas = 1024;  // intervals kept for peers that have not acked them
  std::int64_t max_clock_offset_ms = 60'000;  // a remote timestamp further ahead than this is reported
};

struct sync_message {
  bool full_state = false;  // group is the sender's whole state, not an interval of deltas
  std::uint64_t seq = 0;    // the sender's counter after this interval: what the receiver acks
  delta_group group;
  friend bool operator==(const sync_message&, const sync_message&) = default;
};

struct sync_out {
  replica_id peer;
  sync_message msg;
};

struct ack_out {
  replica_id peer;
  std::uint64_t seq = 0;
};

// What merging a sync message did.
struct merge_report {
  ack_out ack;                                  // send this back to the sender
  bool changed = false;                         // the state grew
  std::vector<std::pair<term, crdt_type>> conflicts;  // objects skipped: name and our type (theirs differs)
  std::optional<hlc_timestamp> far_ahead;       // the newest timestamp, if it was beyond the clock offset
  std::int64_t ahead_ms = 0;
};

class replica_store {
 public:
  explicit replica_store(replica_id self, store_options opts = {});

  replica_id self() const noexcept { return self_; }

  // ---- local operations: each returns the delta (already joined and buffered), or wrong_type with our type ----
  result<delta_group> counter_add(const term& name, std::int64_t amount);
  result<delta_group> set_add(const term& name, const term& element);
  result<delta_group> set_remove(const term& name, const term& element);
  result<delta_group> register_set(const term& name, const term& value, std::int64_t now_ms);
  result<delta_group> map_put(const term& name, const term& key, const term& value, std::int64_t now_ms);
  result<delta_group> map_remove(const term& name, const term& key);
  // Empties a set or map (the dots observed here); a counter or register: wrong_type.
  result<delta_group> clear(const term& name);

  // ---- reads ----
  result<term> value(const term& name) const;  // not_found for an object no operation has created
  const object* find(const term& name) const;
  const delta_group& state() const noexcept { return objects_; }
  std::vector<term> names() const;

  // ---- anti-entropy ----
  void add_peer(replica_id peer);  // it gets the full state (or the buffered interval) on the next sync()
  void remove_peer(replica_id peer);
  std::vector<replica_id> peers() const;
  // What to send now: one message to every peer that has not acked everything. Unacked messages are sent again on
  // the next call, so the shell calls this on a timer and after local operations.
  std::vector<sync_out> sync() const;
  std::optional<sync_out> sync_to(replica_id peer) const;
  // A sync message from `from` at physical time now_ms (its timestamps go through the clock).
  merge_report handle_sync(replica_id from, const sync_message& msg, std::int64_t now_ms);
  void handle_ack(replica_id from, std::uint64_t seq);

  std::uint64_t seq() const noexcept { return counter_; }
  std::size_t buffered() const noexcept { return deltas_.size(); }
  std::uint64_t acked(replica_id peer) const;
  const hlc& clock() const noexcept { return clock_; }

 private:
  template <class T, class F>
  result<delta_group> local(const term& name, F&& mutate);
  void buffer(delta_group d);
  void collect();

  replica_id self_;
  store_options opts_;
  hlc clock_;
  delta_group objects_;
  std::uint64_t counter_ = 0;                   // c
  std::map<std::uint64_t, delta_group> deltas_;  // D
  std::map<replica_id, std::uint64_t> acked_;    // A
};

}  // namespace cnode::crdt
