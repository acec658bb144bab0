#include "raft/core.hpp"

#include <algorithm>
#include <functional>

namespace cnode::raft {

namespace {
const etf::atom& members_tag() {
  static const etf::atom a("$raft_members");
  return a;
}
}  // namespace

term members_entry(const std::vector<member_id>& members) {
  std::vector<term> ms;
  ms.reserve(members.size());
  for (const auto& m : members) ms.emplace_back(etf::atom(m));
  return term::tuple({term(members_tag()), term::list(std::move(ms))});
}

std::optional<std::vector<member_id>> members_of(const term& data) {
  if (!data.is_tuple(2) || !data.element(0).is_atom(members_tag())) return std::nullopt;
  std::vector<term> ms;
  term tail;
  if (!data.element(1).list_to_vector(ms, &tail) || !tail.is_nil()) return std::nullopt;
  std::vector<member_id> out;
  for (const auto& m : ms) {
    if (!m.is_atom()) return std::nullopt;
    out.emplace_back(m.atom_value().text());
  }
  return out;
}

core::core(config c) : cfg_(std::move(c)), rng_(cfg_.seed ^ std::hash<std::string>{}(cfg_.self)) {
  reload_members();
  reset_election_timer();
}

void core::restore(const hard_state& hs, std::shared_ptr<const snapshot> snap, std::vector<entry> log) {
  term_ = hs.term;
  voted_for_ = hs.voted_for;
  snap_ = std::move(snap);
  snap_index_ = snap_ ? snap_->meta.index : 0;
  snap_term_ = snap_ ? snap_->meta.term : 0;
  log_.clear();
  for (auto& e : log)
    if (e.index > snap_index_) log_.push_back(std::move(e));
  commit_ = std::max(snap_index_, std::min(hs.commit, last_index()));
  persisted_ = last_index();  // what was recovered is on disk
  applied_ = snap_index_;  // the shell loads the snapshot; the committed entries after it are applied again
  last_state_ = hs;
  role_ = role::follower;
  leader_.reset();
  reads_.clear();
  reload_members();
  reset_election_timer();
}

term_t core::term_at(index_t i) const {
  if (i == snap_index_) return snap_term_;
  if (i < snap_index_ || i > last_index()) return 0;
  return at(i).term;
}

bool core::is_member(const member_id& m) const {
  return std::find(members_.begin(), members_.end(), m) != members_.end();
}

void core::reload_members() {
  config_index_ = 0;
  for (index_t i = last_index(); i > snap_index_; --i)
    if (auto ms = members_of(at(i).data)) {
      members_ = std::move(*ms);
      config_index_ = i;
      break;
    }
  if (!config_index_) members_ = snap_ && !snap_->meta.members.empty() ? snap_->meta.members : cfg_.members;
  // The leader's view of the others follows the configuration; new members start from the end of the log.
  for (auto it = progress_.begin(); it != progress_.end();)
    it = is_member(it->first) || is_learner(it->first) ? std::next(it) : progress_.erase(it);
  for (const auto& m : members_)
    if (m != cfg_.self && !progress_.count(m)) progress_[m] = progress{last_index() + 1, 0, true, 0, 0};
  if (transfer_to_ && !is_member(*transfer_to_)) transfer_to_.reset();
}

void core::reset_election_timer() {
  election_elapsed_ = 0;
  election_timeout_ =
      cfg_.election_ticks + static_cast<int>(std::uniform_int_distribution<int>(0, cfg_.election_ticks - 1)(rng_));
}

void core::send(message m) {
  m.from = cfg_.self;
  // Only a leader sends these, in a term it persisted before asking for votes; their entries it counts for itself
  // only once durable (maybe_commit), so they need not wait for its own write.
  const bool now = m.type == msg_type::append || m.type == msg_type::install_snapshot;
  (now ? ready_.send_now : ready_.messages).push_back(std::move(m));
}

void core::fail_reads() {
  for (const auto& r : reads_) ready_.failed_reads.push_back(r.ctx);
  reads_.clear();
}

void core::become_follower(term_t t, std::optional<member_id> leader) {
  if (t > term_) {
    term_ = t;
    voted_for_.reset();
  }
  if (role_ == role::leader) {
    fail_reads();
    end_learners(ready::learner_outcome::lost_lead);
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
  for (auto& [id, pr] : progress_) pr = progress{last_index() + 1, 0, true, 0, 0};
  // A no-op of the new term: entries of earlier terms commit only with one of ours (§5.4.2).
  term_start_ = last_index() + 1;
  append_local({entry{term_, term_start_, term()}});
  broadcast_append();
  maybe_commit();
}

void core::campaign(bool pre) {
  if (!is_member(cfg_.self)) return;  // a joiner or a removed member never stands
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
  ++ticks_;
  if (role_ == role::leader) {
    if (!learners_.empty()) {
      std::vector<member_id> ls;
      for (const auto& [id, l] : learners_) ls.push_back(id);
      for (const auto& id : ls) learner_progress(id);
    }
    for (auto& [id, pr] : progress_) {
      if (pr.snapshot_wait > 0) --pr.snapshot_wait;
      ++pr.quiet_ticks;
    }
    if (++heartbeat_elapsed_ >= cfg_.heartbeat_ticks) {
      heartbeat_elapsed_ = 0;
      broadcast_append();
    }
    if (++election_elapsed_ >= election_timeout_) {
      election_elapsed_ = 0;
      if (cfg_.check_quorum) {
        int active = is_member(cfg_.self) ? 1 : 0;
        for (auto& [id, pr] : progress_) {
          active += pr.recent_active && !is_learner(id) ? 1 : 0;
          pr.recent_active = false;
        }
        // A leader that has not heard from a majority for an election timeout steps down: it may be cut off.
        if (active < quorum()) become_follower(term_, std::nullopt);
      }
      transfer_to_.reset();  // a transfer that did not happen within a timeout is abandoned
    }
    return;
  }
  if (++election_elapsed_ >= election_timeout_) {
    if (is_member(cfg_.self)) campaign(cfg_.pre_vote);
    else reset_election_timer();
  }
}

bool core::up_to_date(index_t li, term_t lt) const {
  const term_t ours = term_at(last_index());
  return lt > ours || (lt == ours && li >= last_index());
}

void core::step(const message& m) {
  if (m.to != cfg_.self) return;
  const bool vote_request = m.type == msg_type::vote || m.type == msg_type::pre_vote;
  const bool from_leader =
      m.type == msg_type::append || m.type == msg_type::install_snapshot || m.type == msg_type::timeout_now;
  // Requests are served without consulting our configuration (thesis §4.1): a member that has not yet seen the
  // entry that added it, or another member, must still hear the new leader and be able to vote for it. Only the
  // counting of votes and acknowledgements follows the configuration. A removed member that does not know it was
  // removed cannot disrupt: its pre-votes fail (its log lacks the removal) and recently-led members ignore it.
  if (m.term > term_) {
    // Heard from a leader within the election timeout: a vote request is a disruption (a member cut off and
    // back), refused without taking its term (thesis §4.2.3, with pre-vote §9.6). A leader is in its lease for as
    // long as it leads: check-quorum steps it down once a majority is silent for an election timeout (its
    // election_elapsed_ runs to the randomized timeout, past election_ticks, so it cannot be the measure here).
    const bool in_lease = role_ == role::leader || (leader_ && election_elapsed_ < cfg_.election_ticks);
    if (vote_request && cfg_.check_quorum && !m.force && in_lease) return;
    if (m.type == msg_type::pre_vote) {
      // answered below without changing our term
    } else if (m.type == msg_type::pre_vote_reply && m.granted) {
      // the term of a granted pre-vote is the one we would stand in
    } else if (from_leader) {
      become_follower(m.term, m.from);
    } else {
      become_follower(m.term, std::nullopt);
    }
  } else if (m.term < term_) {
    if (m.type == msg_type::append || m.type == msg_type::install_snapshot) {
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
    case msg_type::install_snapshot: handle_snapshot(m); break;
    case msg_type::append_reply: handle_append_reply(m); break;
    case msg_type::timeout_now:
      if (role_ != role::leader) {
        transfer_campaign_ = true;
        campaign(false);
        transfer_campaign_ = false;
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
  for (const auto& [id, g] : votes_)
    if (is_member(id)) (g ? yes : no)++;
  if (yes >= quorum()) {
    if (pre) campaign(false);
    else become_leader();
  } else if (no >= quorum()) {
    become_follower(term_, std::nullopt);
  }
}

void core::append_local(std::vector<entry> es) {
  bool config = false;
  for (auto& e : es) {
    config = config || members_of(e.data).has_value();
    ready_.to_persist.push_back(e);
    log_.push_back(std::move(e));
  }
  if (config) reload_members();
}

void core::truncate_from(index_t i) {
  // A conflicting suffix (never a committed one: log matching and leader completeness) goes; a configuration in it
  // goes with it (§4.1: the previous one is in force again).
  log_.resize(i - snap_index_ - 1);
  persisted_ = std::min(persisted_, i - 1);  // a write of the replaced entries still under way no longer counts
  // Entries of this ready not yet persisted from i on are replaced too: the storage takes one contiguous run.
  std::erase_if(ready_.to_persist, [&](const entry& e) { return e.index >= i; });
  if (config_index_ >= i) reload_members();
}

void core::send_append(const member_id& to) {
  auto& pr = progress_[to];
  pr.sent = true;
  if (pr.next <= snap_index_) {
    // What it needs is compacted away: the snapshot, at most once per election timeout while it is on its way.
    if (!snap_ || pr.snapshot_wait > 0) return;
    message m;
    m.type = msg_type::install_snapshot;
    m.to = to;
    m.term = term_;
    m.snap = snap_;
    m.commit = commit_;
    m.seq = seq_;
    pr.snapshot_wait = cfg_.election_ticks;
    send(std::move(m));
    return;
  }
  message m;
  m.type = msg_type::append;
  m.to = to;
  m.term = term_;
  m.prev_index = pr.next - 1;
  m.prev_term = term_at(m.prev_index);
  for (index_t i = pr.next; i <= last_index() && m.entries.size() < cfg_.max_batch; ++i) m.entries.push_back(at(i));
  m.commit = commit_;
  m.seq = seq_;
  // Pipelining: the next append goes on from here without waiting for the reply; a failure rewinds it.
  if (!m.entries.empty()) pr.next = m.entries.back().index + 1;
  send(std::move(m));
}

void core::broadcast_append() {
  for (auto& [id, pr] : progress_) send_append(id);
}

message core::heard_leader(const message& m) {
  // An append or a snapshot of the current term: its sender leads; the reply echoes its heartbeat round.
  if (role_ != role::follower) become_follower(term_, m.from);
  leader_ = m.from;
  election_elapsed_ = 0;
  message r;
  r.type = msg_type::append_reply;
  r.to = m.from;
  r.term = term_;
  r.seq = m.seq;
  return r;
}

void core::handle_append(const message& m) {
  message r = heard_leader(m);
  // What precedes our snapshot is committed, so it matches the leader's: skip it.
  index_t prev = m.prev_index;
  term_t prev_term = m.prev_term;
  std::size_t skip = 0;
  if (prev < snap_index_) {
    while (skip < m.entries.size() && m.entries[skip].index <= snap_index_) ++skip;
    prev = snap_index_;
    prev_term = snap_term_;
    if (skip == 0 && !m.entries.empty() && m.entries.front().index != snap_index_ + 1) {
      r.success = false;
      r.index = last_index();
      send(std::move(r));
      return;
    }
  }
  if (prev > last_index() || term_at(prev) != prev_term) {
    r.success = false;
    r.index = prev > last_index() ? last_index() : (prev <= snap_index_ ? snap_index_ : prev - 1);
    send(std::move(r));
    return;
  }
  index_t i = prev;
  std::vector<entry> fresh;
  for (std::size_t k = skip; k < m.entries.size(); ++k) {
    const auto& e = m.entries[k];
    ++i;
    if (fresh.empty() && i <= last_index()) {
      if (term_at(i) == e.term) continue;
      truncate_from(i);
    }
    fresh.push_back(e);
  }
  append_local(std::move(fresh));
  const index_t last_new = prev + (m.entries.size() - skip);
  const index_t new_commit = std::min(m.commit, last_new);
  if (new_commit > commit_) commit_ = new_commit;
  r.success = true;
  r.index = last_new;
  send(std::move(r));
}

void core::handle_snapshot(const message& m) {
  message r = heard_leader(m);
  r.success = true;
  if (!m.snap || m.snap->meta.index <= commit_) {
    r.index = commit_;  // we have all it holds (committed entries match the leader's)
    send(std::move(r));
    return;
  }
  const auto& meta = m.snap->meta;
  if (meta.index <= last_index() && term_at(meta.index) == meta.term) {
    log_.erase(log_.begin(), log_.begin() + static_cast<std::ptrdiff_t>(meta.index - snap_index_));  // keep the rest
  } else {
    log_.clear();
    persisted_ = std::min(persisted_, meta.index);  // what stays durable is committed: the snapshot holds it
  }
  // Entries of this ready not yet persisted that the snapshot covers (or whose log is gone) are not written.
  std::erase_if(ready_.to_persist, [&](const entry& e) { return e.index <= meta.index || log_.empty(); });
  snap_ = m.snap;
  snap_index_ = meta.index;
  snap_term_ = meta.term;
  commit_ = std::max(commit_, meta.index);
  applied_ = meta.index;
  ready_.snapshot = m.snap;
  ready_.to_apply.clear();  // anything applied after the snapshot is applied again from it
  reload_members();
  r.index = meta.index;
  send(std::move(r));
}

void core::send_timeout_now(const member_id& to) {
  message t;
  t.type = msg_type::timeout_now;
  t.to = to;
  t.term = term_;
  send(std::move(t));
}

void core::handle_append_reply(const message& m) {
  if (role_ != role::leader) return;
  auto it = progress_.find(m.from);
  if (it == progress_.end()) return;
  auto& pr = it->second;
  pr.recent_active = true;
  pr.quiet_ticks = 0;
  pr.acked_seq = std::max(pr.acked_seq, m.seq);
  confirm_reads();
  if (m.success) {
    pr.match = std::max(pr.match, m.index);
    pr.next = std::max(pr.next, pr.match + 1);
    if (pr.match >= snap_index_) pr.snapshot_wait = 0;
    if (is_learner(m.from)) learner_progress(m.from);
    maybe_commit();
    if (role_ != role::leader) return;
    if (transfer_to_ && *transfer_to_ == m.from && pr.match == last_index()) send_timeout_now(m.from);
    if (pr.next <= last_index()) send_append(m.from);
  } else {
    pr.next = std::max<index_t>(1, std::min(pr.next - 1, m.index + 1));
    if (pr.next <= pr.match) pr.next = pr.match + 1;
    send_append(m.from);
  }
}

void core::maybe_commit() {
  std::vector<index_t> matches;
  // Ourselves only up to what is durable: the appends went out while our write runs (never count an entry a
  // crash could still lose).
  if (is_member(cfg_.self)) matches.push_back(std::min(persisted_, last_index()));
  for (const auto& [id, pr] : progress_)
    if (!is_learner(id)) matches.push_back(pr.match);
  std::sort(matches.begin(), matches.end(), std::greater<>());
  if (matches.size() < static_cast<std::size_t>(quorum())) return;
  const index_t n = matches[quorum() - 1];
  if (n > commit_ && term_at(n) == term_) {
    commit_ = n;
    commit_bcast_ = true;  // followers learn the commit index with this ready (flush_broadcasts)
    confirm_reads();       // reads waiting for the term's first commit
  }
  // A leader that is not in the committed configuration hands over and steps down (§4.2.2).
  if (!is_member(cfg_.self) && commit_ >= config_index_) {
    member_id best;
    index_t best_match = 0;
    for (const auto& [id, pr] : progress_)
      if (!is_learner(id) && pr.match >= best_match) {
        best = id;
        best_match = pr.match;
      }
    if (!best.empty()) send_timeout_now(best);
    become_follower(term_, std::nullopt);
  }
}

std::optional<index_t> core::propose(term data) {
  if (role_ != role::leader || transfer_to_) return std::nullopt;
  const index_t i = last_index() + 1;
  append_local({entry{term_, i, std::move(data)}});
  // Followers up to date get it with the ready, every proposal since the last one in one append; the others on
  // their reply.
  if (!bcast_from_) bcast_from_ = i;
  maybe_commit();
  return i;
}

change_error core::propose_members(std::vector<member_id> ms, index_t* at_index) {
  if (role_ != role::leader || transfer_to_) return change_error::not_leader;
  if (commit_ < term_start_ || config_index_ > commit_ || !learners_.empty()) return change_error::in_progress;
  std::sort(ms.begin(), ms.end());
  ms.erase(std::unique(ms.begin(), ms.end()), ms.end());
  if (ms.empty()) return change_error::empty;
  auto cur = members_;
  std::sort(cur.begin(), cur.end());
  std::vector<member_id> diff;
  std::set_symmetric_difference(cur.begin(), cur.end(), ms.begin(), ms.end(), std::back_inserter(diff));
  if (diff.size() != 1) return change_error::not_one_server;
  if (ms.size() > members_.size() && cfg_.learner_rounds > 0) {
    // A learner first (§4.2.1): replicated to from the end of our log back (a snapshot if it needs one), not
    // counted; the configuration entry comes once it keeps up (learner_progress).
    const member_id& node = diff.front();
    learners_[node] = learner{0, ticks_, ticks_, last_index(), false};
    progress_[node] = progress{last_index() + 1, 0, true, 0, 0};
    send_append(node);
    if (at_index) *at_index = 0;
    return change_error::ok;
  }
  auto i = propose(members_entry(ms));
  if (!i) return change_error::not_leader;
  if (at_index) *at_index = *i;
  return change_error::ok;
}

bool core::transfer_leadership(const member_id& to) {
  if (role_ != role::leader || to == cfg_.self || !is_member(to)) return false;
  auto it = progress_.find(to);
  if (it == progress_.end()) return false;
  transfer_to_ = to;
  election_elapsed_ = 0;
  if (it->second.match == last_index()) send_timeout_now(to);
  else send_append(to);
  return true;
}

bool core::read_index(std::uint64_t ctx) {
  if (role_ != role::leader) return false;
  // Everything committed before the call is at or below this: our commit index, or our no-op (which follows every
  // entry an earlier leader can have committed).
  reads_.push_back({ctx, ++seq_, std::max(commit_, term_start_)});
  confirm_reads();
  if (!reads_.empty()) broadcast_append();  // a heartbeat round that carries the new seq
  return true;
}

void core::confirm_reads() {
  if (role_ != role::leader) return;
  while (!reads_.empty()) {
    const auto& r = reads_.front();
    if (commit_ < term_start_) return;  // the term's first entry must commit before any read is answered
    int acks = is_member(cfg_.self) ? 1 : 0;
    for (const auto& [id, pr] : progress_) acks += pr.acked_seq >= r.seq && !is_learner(id) ? 1 : 0;
    if (acks < quorum()) return;
    ready_.reads.push_back({r.ctx, r.index});
    reads_.pop_front();
  }
}

std::shared_ptr<const snapshot> core::compact(index_t upto, std::string data) {
  if (upto <= snap_index_ || upto > applied_) return snap_;
  auto s = std::make_shared<snapshot>();
  s->meta.index = upto;
  s->meta.term = term_at(upto);
  // The configuration as of `upto`: the newest configuration entry at or below it, else the older snapshot's.
  bool found = false;
  for (index_t i = upto; i > snap_index_; --i)
    if (auto ms = members_of(at(i).data)) {
      s->meta.members = std::move(*ms);
      found = true;
      break;
    }
  if (!found) s->meta.members = snap_ && !snap_->meta.members.empty() ? snap_->meta.members : cfg_.members;
  s->data = std::move(data);
  log_.erase(log_.begin(), log_.begin() + static_cast<std::ptrdiff_t>(upto - snap_index_));
  snap_index_ = upto;
  snap_term_ = s->meta.term;
  snap_ = s;
  return snap_;
}

std::vector<member_id> core::learners() const {
  std::vector<member_id> out;
  for (const auto& [id, l] : learners_) out.push_back(id);
  return out;
}

void core::learner_progress(const member_id& m) {
  auto it = learners_.find(m);
  if (it == learners_.end() || role_ != role::leader) return;
  auto& l = it->second;
  const auto& pr = progress_[m];
  const std::uint64_t round_limit = static_cast<std::uint64_t>(cfg_.election_ticks);
  if (!l.caught_up && pr.match >= l.round_target) {
    // A round ends: within an election timeout, it is close enough to keep up as a voter; else another round
    // towards where our log is now.
    ++l.rounds;
    if (ticks_ - l.round_started <= round_limit) {
      l.caught_up = true;
    } else {
      l.round_started = ticks_;
      l.round_target = last_index();
    }
  }
  const std::uint64_t limit = cfg_.learner_timeout_ticks > 0
                                  ? static_cast<std::uint64_t>(cfg_.learner_timeout_ticks)
                                  : static_cast<std::uint64_t>(cfg_.learner_rounds) * round_limit;
  if (!l.caught_up && (l.rounds >= cfg_.learner_rounds || ticks_ - l.started > limit)) {
    ready_.learners.push_back({m, ready::learner_outcome::timeout, 0});
    learners_.erase(it);
    progress_.erase(m);
    return;
  }
  // Promoted once nothing else is in progress (our term's first entry committed, no configuration uncommitted).
  if (!l.caught_up || commit_ < term_start_ || config_index_ > commit_ || transfer_to_) return;
  auto ms = members_;
  ms.push_back(m);
  learners_.erase(it);
  if (auto i = propose(members_entry(ms))) {
    ready_.learners.push_back({m, ready::learner_outcome::promoted, *i});
  } else {
    ready_.learners.push_back({m, ready::learner_outcome::lost_lead, 0});
    progress_.erase(m);
  }
}

void core::end_learners(ready::learner_outcome::kind why) {
  for (const auto& [id, l] : learners_) {
    ready_.learners.push_back({id, why, 0});
    if (!is_member(id)) progress_.erase(id);
  }
  learners_.clear();
}

std::map<member_id, core::peer_progress> core::peers() const {
  std::map<member_id, peer_progress> out;
  if (role_ == role::leader)
    for (const auto& [id, pr] : progress_) out[id] = peer_progress{pr.match, pr.quiet_ticks < cfg_.election_ticks};
  return out;
}

void core::persisted(index_t index, term_t t) {
  if (index <= persisted_ || index > last_index() || index < snap_index_ || term_at(index) != t) return;
  persisted_ = index;
  if (role_ == role::leader) maybe_commit();
}

bool core::has_ready() const {
  return !ready_.empty() || commit_ > applied_ || !(hard_state{term_, voted_for_, commit_} == last_state_) ||
         (role_ == role::leader && (bcast_from_ || commit_bcast_));
}

void core::flush_broadcasts() {
  if (role_ == role::leader)
    for (auto& [id, pr] : progress_) {
      if (bcast_from_ && pr.next >= bcast_from_ && pr.next <= last_index()) send_append(id);
      else if (commit_bcast_ && !pr.sent) send_append(id);
    }
  bcast_from_ = 0;
  commit_bcast_ = false;
  for (auto& [id, pr] : progress_) pr.sent = false;
}

ready core::take_ready() {
  flush_broadcasts();
  for (index_t i = applied_ + 1; i <= commit_; ++i) ready_.to_apply.push_back(at(i));
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
