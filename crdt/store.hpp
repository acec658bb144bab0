// The replica store: named objects, each fixed to one type by its first operation, and the anti-entropy of
// Almeida et al. 2018, algorithm 2 (delta-interval based, with acks), with its back-propagation optimisation:
//
//   local op:        d = m(X); X = X join d; the open interval O = O join d
//   sync:            O is sealed as D[c] (origin: us), c = c + 1; then to every peer j with A[j] < c: the join of
//                    the intervals D[A[j]] ... D[c-1] that did not come from j, with seq c, or the full state with
//                    seq c when part of that interval is no longer buffered (a new peer, a peer that fell behind)
//   receive (d, n):  the part of d that is new to X is joined and buffered as D[c] (origin: the sender), c = c + 1
//                    (so it reaches the peers that did not get it directly); answer ack(n)
//   ack(n) from j:   A[j] = max(A[j], n); the intervals every peer acked are dropped
//
// Local operations between two syncs make one interval (the shell syncs on a timer), so the buffer counts sync
// rounds, not operations, and a burst of writes travels as one delta. D holds at most max_buffered_deltas intervals
// and at most about four times the state's own size; past that the oldest go and the peers that still needed them
// get the full state. The store is sans-I/O: operations and messages in, deltas and sync_out/ack_out out (etcd
// raft's Ready); the shell sends what sync() returns and feeds back what arrives.
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
  std::size_t max_buffered_deltas = 1024;     // intervals kept for peers that have not acked them
  std::int64_t max_clock_offset_ms = 60'000;  // a remote timestamp further ahead than this is reported
  // The id that makes this replica's dots and stamps its timestamps; default: the replica's own name. It must be
  // new whenever the state is lost (see causal.hpp), so the service takes a fresh one per incarnation unless a
  // snapshot brings the old one back.
  std::optional<replica_id> writer;
  // An interval a peer has not acked is sent again after this many ms; until then a peer gets nothing new (on a
  // reliable connection the ack is on its way). 0: everything unacked on every sync(), as in the paper.
  std::int64_t retransmit_ms = 0;
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

// One name that two replicas created with different types.
struct type_conflict {
  term name;
  crdt_type ours, theirs;
  bool replaced = false;  // theirs won (type_wins): our object was dropped for it; else theirs was skipped
};

// What merging a sync message did.
struct merge_report {
  ack_out ack;                            // send this back to the sender
  bool changed = false;                   // the state grew
  std::vector<term> changed_names;        // the objects that changed
  std::vector<type_conflict> conflicts;
  std::optional<hlc_timestamp> far_ahead;  // the newest timestamp, if it was beyond the clock offset
  std::int64_t ahead_ms = 0;
};

class replica_store {
 public:
  explicit replica_store(replica_id self, store_options opts = {});

  replica_id self() const noexcept { return self_; }
  replica_id writer() const noexcept { return writer_; }

  // ---- local operations: each returns the delta (already joined), or wrong_type with our type ----
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

  // A state read back from disk: it replaces ours, and every peer gets the full state on the next sync (what the
  // snapshot holds may never have been sent). Its timestamps go through the clock.
  void restore(delta_group state, std::int64_t now_ms);

  // ---- anti-entropy ----
  void add_peer(replica_id peer);  // it gets the full state (or the buffered interval) on the next sync()
  void remove_peer(replica_id peer);
  bool has_peer(replica_id peer) const { return acked_.contains(peer); }
  // The peer lost what it had acked (it restarted): it gets everything again.
  void reset_peer(replica_id peer);
  // The connection to the peer came back: what it has not acked goes again now, not after retransmit_ms.
  void peer_reconnected(replica_id peer);
  std::vector<replica_id> peers() const;
  // Closes the open interval: the local deltas since the last seal become the next interval, D[c].
  void seal();
  // What to send now: seal(), then one message to every peer that has not acked everything (see retransmit_ms).
  std::vector<sync_out> sync(std::int64_t now_ms = 0);
  // The message for one peer, of the sealed intervals only (a shell that writes the state to disk before sending
  // seals, writes, then sends: what is written covers what is sent).
  std::optional<sync_out> sync_to(replica_id peer, std::int64_t now_ms = 0);
  // A sync message from `from` at physical time now_ms (its timestamps go through the clock).
  merge_report handle_sync(replica_id from, const sync_message& msg, std::int64_t now_ms);
  void handle_ack(replica_id from, std::uint64_t seq);

  // Nothing to send: no open interval, every peer acked everything.
  bool idle() const;
  std::uint64_t seq() const noexcept { return counter_; }  // sealed intervals
  std::size_t buffered() const noexcept { return deltas_.size(); }
  std::uint64_t acked(replica_id peer) const;
  // Intervals the peer has not acked (the open one included).
  std::uint64_t unacked(replica_id peer) const;
  const hlc& clock() const noexcept { return clock_; }

 private:
  struct interval {
    delta_group group;
    replica_id origin;
    std::size_t weight = 0;
  };
  struct sent_state {
    std::uint64_t seq = 0;  // what the last message to the peer would have it ack
    std::int64_t at = 0;
  };
  template <class T, class F>
  result<delta_group> local(const term& name, const term* key, F&& mutate);
  void buffer(delta_group d, replica_id origin);
  void collect();

  replica_id self_;
  replica_id writer_;
  store_options opts_;
  hlc clock_;
  delta_group objects_;
  delta_group open_;                              // O: local deltas since the last sync
  std::uint64_t counter_ = 0;                     // c
  std::map<std::uint64_t, interval> deltas_;      // D
  std::size_t buffered_weight_ = 0;
  std::map<replica_id, std::uint64_t> acked_;     // A
  std::map<replica_id, sent_state> sent_;
};

}  // namespace cnode::crdt
