// Raft's sans-I/O core, in the etcd raft style: state, messages and time in; messages to send, entries to persist
// and entries to apply out (`ready`). Leader election with pre-vote (thesis §9.6) and check-quorum, log replication
// with batching, commit only of entries of the leader's own term (§5.4.2). The Asio shell (later: the `raft`
// service) only moves messages over Erlang distribution, persists, applies and fires ticks.
#pragma once

#include <cstdint>
#include <map>
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
  etf::term data;  // the command; nil for the leader's no-op of a new term
  friend bool operator==(const entry& a, const entry& b) { return a.term == b.term && a.index == b.index && a.data == b.data; }
};

enum class msg_type : std::uint8_t {
  pre_vote,        // term = the term the sender would stand in; last_index/last_term
  pre_vote_reply,  // granted
  vote,
  vote_reply,
  append,          // prev_index/prev_term, entries, commit
  append_reply,    // success, index = match index (success) or a hint (failure)
  timeout_now,     // leadership transfer: stand at once
};

struct message {
  msg_type type{};
  member_id from, to;
  term_t term = 0;
  index_t last_index = 0, prev_index = 0, commit = 0, index = 0;
  term_t last_term = 0, prev_term = 0;
  bool granted = false, success = false;
  bool force = false;  // a vote of a leadership transfer: not refused for a leader heard recently
  std::vector<entry> entries;
};

enum class role { follower, pre_candidate, candidate, leader };

// What must be persisted before the messages of the same ready are sent.
struct hard_state {
  term_t term = 0;
  std::optional<member_id> voted_for;
  index_t commit = 0;
  friend bool operator==(const hard_state&, const hard_state&) = default;
};

struct ready {
  std::optional<hard_state> state;  // changed: persist
  std::vector<entry> to_persist;    // appended (a truncation is expressed by their first index)
  std::vector<message> messages;
  std::vector<entry> to_apply;      // committed, in order
  bool empty() const { return !state && to_persist.empty() && messages.empty() && to_apply.empty(); }
};

struct config {
  member_id self;
  std::vector<member_id> members;  // self included
  int election_ticks = 10;         // randomized in [election_ticks, 2 * election_ticks)
  int heartbeat_ticks = 1;
  std::size_t max_batch = 256;     // entries per append
  bool pre_vote = true;
  bool check_quorum = true;
  std::uint64_t seed = 1;          // for the randomized timeout
};

class core {
 public:
  explicit core(config c);
  // Restart from what was persisted.
  void restore(const hard_state& hs, std::vector<entry> log);

  void tick();                         // one tick of the logical clock
  void step(const message& m);         // a message from a peer
  // The leader appends the command; its index, or nullopt when not the leader.
  std::optional<index_t> propose(term data);
  // Leadership transfer to `to` (must be a member and up to date; the leader sends timeout_now once it is).
  bool transfer_leadership(const member_id& to);
  ready take_ready();  // what happened since the last call

  role current_role() const noexcept { return role_; }
  term_t current_term() const noexcept { return term_; }
  std::optional<member_id> leader() const { return leader_; }
  index_t commit_index() const noexcept { return commit_; }
  index_t last_index() const noexcept { return log_.empty() ? 0 : log_.back().index; }
  const std::vector<entry>& log() const noexcept { return log_; }
  const config& cfg() const noexcept { return cfg_; }

 private:
  term_t term_at(index_t i) const;
  void become_follower(term_t t, std::optional<member_id> leader);
  void become_pre_candidate();
  void become_candidate();
  void become_leader();
  void campaign(bool pre);
  void send(message m);
  void send_append(const member_id& to, bool heartbeat_only = false);
  void broadcast_append();
  void maybe_commit();
  bool up_to_date(index_t last_index, term_t last_term) const;
  void handle_append(const message& m);
  void handle_append_reply(const message& m);
  void handle_vote(const message& m);
  void handle_vote_reply(const message& m);
  void append_local(std::vector<entry> es);
  int quorum() const { return static_cast<int>(cfg_.members.size()) / 2 + 1; }
  void reset_election_timer();
  void mark_state();

  config cfg_;
  std::mt19937_64 rng_;
  role role_ = role::follower;
  term_t term_ = 0;
  std::optional<member_id> voted_for_;
  std::optional<member_id> leader_;
  std::vector<entry> log_;  // index i at log_[i - 1]
  index_t commit_ = 0, applied_ = 0;
  int election_elapsed_ = 0, heartbeat_elapsed_ = 0, election_timeout_ = 0;
  std::map<member_id, bool> votes_;
  struct progress {
    index_t next = 1, match = 0;
    bool recent_active = false;
  };
  std::map<member_id, progress> progress_;
  std::optional<member_id> transfer_to_;
  bool transfer_campaign_ = false;  // the campaign a timeout_now started: its votes are forced
  hard_state last_state_;
  ready ready_;
};

}  // namespace cnode::raft
