#include "raft/core.hpp"

#include <algorithm>
#include <functional>

namespace cnode::raft {

core::core(config c) : cfg_(std::move(c)), rng_(cfg_.seed ^ std::hash<std::string>{}(cfg_.self)) {
  for (const auto& m : cfg_.members)
    if (m != cfg_.self) progress_[m] = progress{};
  reset_election_timer();
}

void core::restore(const hard_state& hs, std::vector<entry> log) {
  term_ = hs.term;
  voted_for_ = hs.voted_for;
  log_ = std::move(log);
  commit_ = std::min(hs.commit, last_index());
  applied_ = 0;  // the state machine is rebuilt from the log: every committed entry is applied again
  last_state_ = hs;
  role_ = role::follower;
  leader_.reset();
  reset_election_timer();
}

term_t core::term_at(index_t i) const {
  if (i == 0 || i > log_.size()) return 0;
  return log_[i - 1].term;
}

void core::reset_election_timer() {
  election_elapsed_ = 0;
  election_timeout_ =
      cfg_.election_ticks + static_cast<int>(std::uniform_int_distribution<int>(0, cfg_.election_ticks - 1)(rng_));
}

void core::send(message m) {
  m.from = cfg_.self;
  ready_.messages.push_back(std::move(m));
}

void core::become_follower(term_t t, std::optional<member_id> leader) {
  if (t > term_) {
    term_ = t;
    voted_for_.reset();
  }
  role_ = role::follower;
  leader_ = std::move(leader);
  transfer_to_.reset();
  reset_election_timer();
}

void core::become_pre_candidate() {
  role_ = role::pre_candidate;
  leader_.reset();
  votes_.clear();
  votes_[cfg_.self] = true;
  reset_election_timer();
}

void core::become_candidate() {
  role_ = role::candidate;
  ++term_;
  voted_for_ = cfg_.self;
  leader_.reset();
  votes_.clear();
  votes_[cfg_.self] = true;
  reset_election_timer();
}

void core::become_leader() {
  role_ = role::leader;
  leader_ = cfg_.self;
  heartbeat_elapsed_ = 0;
  election_elapsed_ = 0;
  for (auto& [id, pr] : progress_) pr = progress{last_index() + 1, 0, true};
  // A no-op of the new term: entries of earlier terms commit only with one of ours (§5.4.2).
  append_local({entry{term_, last_index() + 1, term()}});
  broadcast_append();
  maybe_commit();
}

void core::campaign(bool pre) {
  if (pre) become_pre_candidate();
  else become_candidate();
  if (static_cast<int>(votes_.size()) >= quorum()) {  // a group of one
    if (pre) return campaign(false);
    return become_leader();
  }
  for (const auto& [id, pr] : progress_) {
    message m;
    m.type = pre ? msg_type::pre_vote : msg_type::vote;
    m.to = id;
    m.term = pre ? term_ + 1 : term_;
    m.last_index = last_index();
    m.last_term = term_at(last_index());
    m.force = !pre && transfer_campaign_;
    send(std::move(m));
  }
  transfer_campaign_ = false;
}

void core::tick() {
  if (role_ == role::leader) {
    if (++heartbeat_elapsed_ >= cfg_.heartbeat_ticks) {
      heartbeat_elapsed_ = 0;
      broadcast_append();
    }
    if (++election_elapsed_ >= election_timeout_) {
      election_elapsed_ = 0;
      if (cfg_.check_quorum) {
        int active = 1;
        for (auto& [id, pr] : progress_) {
          active += pr.recent_active ? 1 : 0;
          pr.recent_active = false;
        }
        // A leader that has not heard from a majority for an election timeout steps down: it may be cut off.
        if (active < quorum()) become_follower(term_, std::nullopt);
      }
      transfer_to_.reset();  // a transfer that did not happen within a timeout is abandoned
    }
    return;
  }
  if (++election_elapsed_ >= election_timeout_) campaign(cfg_.pre_vote);
}

bool core::up_to_date(index_t li, term_t lt) const {
  const term_t ours = term_at(last_index());
  return lt > ours || (lt == ours && li >= last_index());
}

void core::step(const message& m) {
  if (m.to != cfg_.self) return;
  if (std::find(cfg_.members.begin(), cfg_.members.end(), m.from) == cfg_.members.end()) return;
  const bool vote_request = m.type == msg_type::vote || m.type == msg_type::pre_vote;
  if (m.term > term_) {
    // Heard from a leader within the election timeout: a vote request is a disruption (a member cut off and
    // back), refused without taking its term (thesis §4.2.3, with pre-vote §9.6).
    if (vote_request && cfg_.check_quorum && !m.force && leader_ && election_elapsed_ < cfg_.election_ticks) return;
    if (m.type == msg_type::pre_vote) {
      // answered below without changing our term
    } else if (m.type == msg_type::pre_vote_reply && m.granted) {
      // the term of a granted pre-vote is the one we would stand in
    } else if (m.type == msg_type::append || m.type == msg_type::timeout_now) {
      become_follower(m.term, m.from);
    } else {
      become_follower(m.term, std::nullopt);
    }
  } else if (m.term < term_) {
    if (m.type == msg_type::append) {
      message r;
      r.type = msg_type::append_reply;
      r.to = m.from;
      r.term = term_;
      r.success = false;
      send(std::move(r));  // a stale leader learns the newer term and steps down
    } else if (vote_request) {
      message r;
      r.type = m.type == msg_type::pre_vote ? msg_type::pre_vote_reply : msg_type::vote_reply;
      r.to = m.from;
      r.term = term_;
      r.granted = false;
      send(std::move(r));
    }
    return;
  }
  switch (m.type) {
    case msg_type::pre_vote:
    case msg_type::vote: handle_vote(m); break;
    case msg_type::pre_vote_reply:
    case msg_type::vote_reply: handle_vote_reply(m); break;
    case msg_type::append: handle_append(m); break;
    case msg_type::append_reply: handle_append_reply(m); break;
    case msg_type::timeout_now:
      if (role_ != role::leader) {
        transfer_campaign_ = true;
        campaign(false);
      }
      break;
  }
}

void core::handle_vote(const message& m) {
  const bool pre = m.type == msg_type::pre_vote;
  const bool can_vote = voted_for_ == m.from || (!voted_for_ && !leader_) || (pre && m.term > term_);
  const bool grant = can_vote && up_to_date(m.last_index, m.last_term);
  message r;
  r.type = pre ? msg_type::pre_vote_reply : msg_type::vote_reply;
  r.to = m.from;
  r.term = grant && pre ? m.term : term_;
  r.granted = grant;
  if (grant && !pre) {
    voted_for_ = m.from;
    reset_election_timer();
  }
  send(std::move(r));
}

void core::handle_vote_reply(const message& m) {
  const bool pre = m.type == msg_type::pre_vote_reply;
  if (pre ? role_ != role::pre_candidate : role_ != role::candidate) return;
  if (pre && m.granted && m.term != term_ + 1) return;
  votes_[m.from] = m.granted;
  int yes = 0, no = 0;
  for (const auto& [id, g] : votes_) (g ? yes : no)++;
  if (yes >= quorum()) {
    if (pre) campaign(false);
    else become_leader();
  } else if (no >= quorum()) {
    become_follower(term_, std::nullopt);
  }
}

void core::append_local(std::vector<entry> es) {
  for (auto& e : es) {
    ready_.to_persist.push_back(e);
    log_.push_back(std::move(e));
  }
}

void core::send_append(const member_id& to, bool) {
  auto& pr = progress_[to];
  message m;
  m.type = msg_type::append;
  m.to = to;
  m.term = term_;
  m.prev_index = pr.next - 1;
  m.prev_term = term_at(m.prev_index);
  for (index_t i = pr.next; i <= last_index() && m.entries.size() < cfg_.max_batch; ++i) m.entries.push_back(log_[i - 1]);
  m.commit = commit_;
  // Pipelining: the next append goes on from here without waiting for the reply; a failure rewinds it.
  if (!m.entries.empty()) pr.next = m.entries.back().index + 1;
  send(std::move(m));
}

void core::broadcast_append() {
  for (auto& [id, pr] : progress_) send_append(id);
}

void core::handle_append(const message& m) {
  if (role_ != role::follower) become_follower(term_, m.from);
  leader_ = m.from;
  election_elapsed_ = 0;
  message r;
  r.type = msg_type::append_reply;
  r.to = m.from;
  r.term = term_;
  if (m.prev_index > last_index() || term_at(m.prev_index) != m.prev_term) {
    r.success = false;
    r.index = m.prev_index > last_index() ? last_index() : (m.prev_index == 0 ? 0 : m.prev_index - 1);
    send(std::move(r));
    return;
  }
  index_t i = m.prev_index;
  std::vector<entry> fresh;
  for (const auto& e : m.entries) {
    ++i;
    if (i <= last_index()) {
      if (term_at(i) == e.term) continue;
      // A conflicting suffix (never a committed one: log matching and leader completeness) goes.
      log_.resize(i - 1);
    }
    fresh.push_back(e);
  }
  append_local(std::move(fresh));
  const index_t last_new = m.prev_index + m.entries.size();
  const index_t new_commit = std::min(m.commit, last_new);
  if (new_commit > commit_) commit_ = new_commit;
  r.success = true;
  r.index = last_new;
  send(std::move(r));
}

void core::handle_append_reply(const message& m) {
  if (role_ != role::leader) return;
  auto it = progress_.find(m.from);
  if (it == progress_.end()) return;
  auto& pr = it->second;
  pr.recent_active = true;
  if (m.success) {
    pr.match = std::max(pr.match, m.index);
    pr.next = std::max(pr.next, pr.match + 1);
    maybe_commit();
    if (transfer_to_ && *transfer_to_ == m.from && pr.match == last_index()) {
      message t;
      t.type = msg_type::timeout_now;
      t.to = m.from;
      t.term = term_;
      send(std::move(t));
    }
    if (pr.next <= last_index()) send_append(m.from);
  } else {
    pr.next = std::max<index_t>(1, std::min(pr.next - 1, m.index + 1));
    if (pr.next <= pr.match) pr.next = pr.match + 1;
    send_append(m.from);
  }
}

void core::maybe_commit() {
  std::vector<index_t> matches{last_index()};
  for (const auto& [id, pr] : progress_) matches.push_back(pr.match);
  std::sort(matches.begin(), matches.end(), std::greater<>());
  const index_t n = matches[quorum() - 1];
  if (n > commit_ && term_at(n) == term_) {
    commit_ = n;
    broadcast_append();  // followers learn the commit index at once
  }
}

std::optional<index_t> core::propose(term data) {
  if (role_ != role::leader || transfer_to_) return std::nullopt;
  const index_t i = last_index() + 1;
  append_local({entry{term_, i, std::move(data)}});
  for (auto& [id, pr] : progress_)
    if (pr.next == i) send_append(id);  // followers already up to date get it now; the others on their reply
  maybe_commit();
  return i;
}

bool core::transfer_leadership(const member_id& to) {
  if (role_ != role::leader || to == cfg_.self) return false;
  auto it = progress_.find(to);
  if (it == progress_.end()) return false;
  transfer_to_ = to;
  election_elapsed_ = 0;
  if (it->second.match == last_index()) {
    message t;
    t.type = msg_type::timeout_now;
    t.to = to;
    t.term = term_;
    send(std::move(t));
  } else {
    send_append(to);
  }
  return true;
}

ready core::take_ready() {
  for (index_t i = applied_ + 1; i <= commit_; ++i) ready_.to_apply.push_back(log_[i - 1]);
  applied_ = commit_;
  hard_state hs{term_, voted_for_, commit_};
  if (!(hs == last_state_)) {
    ready_.state = hs;
    last_state_ = hs;
  }
  ready out = std::move(ready_);
  ready_ = ready{};
  return out;
}

}  // namespace cnode::raft
