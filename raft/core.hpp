// Raft's sans-I/O core, in the etcd raft style: state, messages and time in; messages to send, entries to persist
// and entries to apply out (`ready`). Leader election with pre-vote (thesis §9.6) and check-quorum, log replication
// with batching and pipelining, commit only of entries of the leader's own term (§5.4.2), snapshots and log
// compaction (a far-behind or new member is caught up by snapshot), membership change one server at a time (§4.1),
// leadership transfer (TimeoutNow, §3.10) and linearizable reads by ReadIndex (§6.4). The Asio shell (the `raft`
// service) only moves messages over Erlang distribution, persists, applies and fires ticks.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "etf/term.hpp"

namespace cnode::raft {

using etf::term;
using member_id = std::string;  // a node name
using index_t = std::uint64_t;
using term_t = std::uint64_t;

struct entry {
  term_t term = 0;
  index_t index = 0;
  etf::term data;  // the command; nil for the leader's no-op of a new term; a configuration (see members_entry)
  friend bool operator==(const entry& a, const entry& b) { return a.term == b.term && a.index == b.index && a.data == b.data; }
};

// A configuration entry's command: {'$raft_members', [Node]}. Configurations take effect when appended (§4.1).
term members_entry(const std::vector<member_id>& members);
std::optional<std::vector<member_id>> members_of(const term& data);

struct snapshot_meta {
  index_t index = 0;  // the last entry the snapshot covers
  term_t term = 0;    // its term
  std::vector<member_id> members;  // the configuration as of `index`
  friend bool operator==(const snapshot_meta&, const snapshot_meta&) = default;
};

struct snapshot {
  snapshot_meta meta;
  std::string data;  // the state machine's bytes, opaque to the core
};

enum class msg_type : std::uint8_t {
  pre_vote,        // term = the term the sender would stand in; last_index/last_term
  pre_vote_reply,  // granted
  vote,
  vote_reply,
  append,          // prev_index/prev_term, entries, commit; seq (ReadIndex round)
  append_reply,    // success, index = match index (success) or a hint (failure); seq echoed
  timeout_now,     // leadership transfer: stand at once
  install_snapshot,  // snap; answered with an append_reply
};

struct message {
  msg_type type{};
  member_id from, to;
  term_t term = 0;
  index_t last_index = 0, prev_index = 0, commit = 0, index = 0;
  term_t last_term = 0, prev_term = 0;
  bool granted = false, success = false;
  bool force = false;  // a vote of a leadership transfer: not refused for a leader heard recently
  std::uint64_t seq = 0;  // the leader's heartbeat round, echoed in replies (confirms leadership for reads)
  std::vector<entry> entries;
  std::shared_ptr<const snapshot> snap;  // install_snapshot
};

enum class role { follower, pre_candidate, candidate, leader };

// What must be persisted before the messages of the same ready are sent.
struct hard_state {
  term_t term = 0;
  std::optional<member_id> voted_for;
  index_t commit = 0;
  friend bool operator==(const hard_state&, const hard_state&) = default;
};

struct read_state {
  std::uint64_t ctx = 0;  // the caller's handle, from read_index()
  index_t index = 0;      // answer once the state machine has applied this index
};

struct ready {
  std::optional<hard_state> state;  // changed: persist
  std::shared_ptr<const raft::snapshot> snapshot;  // received from the leader: persist, then load into the state machine
  std::vector<entry> to_persist;    // appended (a truncation is expressed by their first index)
  // The leader's appends and snapshots: sent at once, while to_persist is being written (thesis §10.2.1). The
  // leader counts itself towards a commit only up to what the shell reported durable (core::persisted).
  std::vector<message> send_now;
  std::vector<message> messages;    // sent once this ready (and every ready before it) is durable
  std::vector<entry> to_apply;      // committed, in order (after `snapshot` when both are set)
  std::vector<read_state> reads;    // confirmed ReadIndex reads
  std::vector<std::uint64_t> failed_reads;  // reads this member can no longer confirm (it lost the lead)
  // Catch-up phases of new members that ended (the leader's; see core::propose_members).
  struct learner_outcome {
    member_id node;
    enum kind { promoted, timeout, lost_lead } what = promoted;
    index_t index = 0;  // promoted: the index of the configuration entry that makes it a voter
  };
  std::vector<learner_outcome> learners;
  bool empty() const {
    return !state && !snapshot && to_persist.empty() && send_now.empty() && messages.empty() && to_apply.empty() &&
           reads.empty() &&
           failed_reads.empty() && learners.empty();
  }
};

struct config {
  member_id self;
  std::vector<member_id> members;  // the bootstrap configuration, used while log and snapshot hold none
  int election_ticks = 10;         // randomized in [election_ticks, 2 * election_ticks)
  int heartbeat_ticks = 1;
  std::size_t max_batch = 256;     // entries per append
  bool pre_vote = true;
  bool check_quorum = true;
  std::uint64_t seed = 1;          // for the randomized timeout
  // A server added is first a learner (thesis §4.2.1): it is replicated to but neither votes nor counts, in rounds
  // (each round replicates the leader's log as it was when the round began); once a round takes no longer than an
  // election timeout the configuration entry that makes it a voter is appended. More than learner_rounds rounds,
  // or learner_timeout_ticks in all (0: learner_rounds election timeouts), and the change is abandoned
  // (ready::learners, timeout; the configuration unchanged). learner_rounds 0: no catch-up, added at once.
  int learner_rounds = 10;
  int learner_timeout_ticks = 0;
};

enum class change_error { ok, not_leader, in_progress, not_one_server, empty };

class core {
 public:
  explicit core(config c);
  // Restart from what was persisted: the hard state, the newest snapshot (the shell loads it into its state
  // machine itself) and the entries after it.
  void restore(const hard_state& hs, std::shared_ptr<const snapshot> snap, std::vector<entry> log);
  void restore(const hard_state& hs, std::vector<entry> log) { restore(hs, nullptr, std::move(log)); }

  void tick();                         // one tick of the logical clock
  void step(const message& m);         // a message from a peer
  // The leader appends the command; its index, or nullopt when not the leader.
  std::optional<index_t> propose(term data);
  // One server added or removed (§4.1): appends the new configuration. Refused while one is uncommitted, while a
  // new member is catching up, or before the leader has committed an entry of its term. An added server is first
  // caught up as a learner (config::learner_rounds): then `*at` is 0 and the outcome comes in ready::learners.
  change_error propose_members(std::vector<member_id> members, index_t* at = nullptr);
  // The servers catching up before they are added (the leader's; empty elsewhere).
  std::vector<member_id> learners() const;
  // Leadership transfer to `to` (must be a member and up to date; the leader sends timeout_now once it is).
  bool transfer_leadership(const member_id& to);
  // A linearizable read: confirmed in a later ready's `reads` once a quorum has acknowledged this leader after the
  // call; false when not the leader.
  bool read_index(std::uint64_t ctx);
  // The shell has a snapshot of its state machine as of `upto` (<= applied): the log up to it is dropped.
  std::shared_ptr<const snapshot> compact(index_t upto, std::string data);
  ready take_ready();  // what happened since the last call
  bool has_ready() const;  // take_ready() would not be empty
  // The shell made our log durable up to `index`, whose entry had term `term` when it was handed out (the last
  // entry of a ready's to_persist, or its snapshot's index and term). Ignored when that entry has since been
  // replaced or compacted. Readies must be reported in the order they were taken.
  void persisted(index_t index, term_t term);
  index_t persisted_index() const noexcept { return persisted_; }  // our log is durable up to here

  role current_role() const noexcept { return role_; }
  term_t current_term() const noexcept { return term_; }
  std::optional<member_id> leader() const { return leader_; }
  index_t commit_index() const noexcept { return commit_; }
  index_t applied_index() const noexcept { return applied_; }
  index_t first_index() const noexcept { return snap_index_ + 1; }
  index_t last_index() const noexcept { return snap_index_ + log_.size(); }
  index_t snapshot_index() const noexcept { return snap_index_; }
  const std::shared_ptr<const snapshot>& last_snapshot() const noexcept { return snap_; }  // null: none
  term_t term_at(index_t i) const;  // 0 when unknown (compacted or beyond the log)
  const entry& at(index_t i) const { return log_[i - snap_index_ - 1]; }  // first_index() <= i <= last_index()
  const std::vector<entry>& log() const noexcept { return log_; }  // entries first_index()..last_index()
  const config& cfg() const noexcept { return cfg_; }
  const std::vector<member_id>& members() const noexcept { return members_; }
  bool is_member(const member_id& m) const;
  // The progress of each other member as the leader sees it; empty on a follower.
  struct peer_progress {
    index_t match = 0;
    bool recently_active = false;  // heard from within the last election timeout
  };
  std::map<member_id, peer_progress> peers() const;

 private:
  void become_follower(term_t t, std::optional<member_id> leader);
  void become_pre_candidate();
  void become_candidate();
  void become_leader();
  void campaign(bool pre);
  void send(message m);
  void send_append(const member_id& to);
  void broadcast_append();
  void maybe_commit();
  bool up_to_date(index_t last_index, term_t last_term) const;
  message heard_leader(const message& m);
  void handle_append(const message& m);
  void handle_snapshot(const message& m);
  void handle_append_reply(const message& m);
  void handle_vote(const message& m);
  void handle_vote_reply(const message& m);
  void append_local(std::vector<entry> es);
  void truncate_from(index_t i);
  void reload_members();  // the configuration of the log's newest configuration entry, the snapshot's, or cfg's
  int quorum() const { return static_cast<int>(members_.size()) / 2 + 1; }
  void reset_election_timer();
  void confirm_reads();
  void fail_reads();
  void send_timeout_now(const member_id& to);
  bool is_learner(const member_id& m) const { return learners_.count(m) != 0; }
  void learner_progress(const member_id& m);  // after its match moved, or a tick: next round, promote, give up
  void end_learners(ready::learner_outcome::kind why);

  config cfg_;
  std::mt19937_64 rng_;
  role role_ = role::follower;
  term_t term_ = 0;
  std::optional<member_id> voted_for_;
  std::optional<member_id> leader_;
  std::vector<entry> log_;  // index i at log_[i - snap_index_ - 1]
  index_t snap_index_ = 0;
  term_t snap_term_ = 0;
  std::shared_ptr<const snapshot> snap_;
  std::vector<member_id> members_;
  index_t config_index_ = 0;  // the index of the newest configuration entry in the log (0: none)
  index_t commit_ = 0, applied_ = 0;
  index_t persisted_ = 0;  // the prefix of log_ known durable (a leader counts itself only up to it)
  index_t term_start_ = 0;  // the index of this leader's no-op
  int election_elapsed_ = 0, heartbeat_elapsed_ = 0, election_timeout_ = 0;
  std::map<member_id, bool> votes_;
  struct progress {
    index_t next = 1, match = 0;
    bool recent_active = false;
    std::uint64_t acked_seq = 0;
    int snapshot_wait = 0;  // ticks before a snapshot is sent again
    int quiet_ticks = 0;    // since it was last heard from
    bool sent = false;      // an append or a snapshot went to it in the ready being built
  };
  std::map<member_id, progress> progress_;
  struct learner {
    int rounds = 0;
    std::uint64_t started = 0, round_started = 0;  // ticks_
    index_t round_target = 0;  // the leader's last index when the round began
    bool caught_up = false;    // promote once no other change is in progress
  };
  std::map<member_id, learner> learners_;
  std::uint64_t ticks_ = 0;
  std::optional<member_id> transfer_to_;
  bool transfer_campaign_ = false;  // the campaign a timeout_now started: its votes are forced
  std::uint64_t seq_ = 0;
  // Batched at take_ready (the shell takes a ready after handling everything queued): proposals since the last
  // ready go to the followers that were up to date in one append each, and a commit index that moved goes to
  // every follower that got nothing else.
  index_t bcast_from_ = 0;  // the first index proposed since the last ready (0: none)
  bool commit_bcast_ = false;
  void flush_broadcasts();
  struct pending_read {
    std::uint64_t ctx, seq;
    index_t index;
  };
  std::deque<pending_read> reads_;
  hard_state last_state_;
  ready ready_;
};

}  // namespace cnode::raft
