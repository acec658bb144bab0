#include "raft/group.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <iterator>

#include "cnode/distribution.hpp"
#include "cnode/functions.hpp"
#include "cnode/gen.hpp"
#include "cnode/log.hpp"
#include "etf/format.hpp"
#include "raft/group_commit.hpp"
#include "raft/wire.hpp"

namespace cnode::raft {

namespace {

using etf::atom;

term a(const char* s) { return term(atom(s)); }
term error(const char* why) { return term::tuple({a("error"), a(why)}); }
bool is(const term& r, const char* t, std::size_t arity) { return r.is_tuple(arity) && r.element(0).is_atom(atom(t)); }
constexpr int max_hops = 3;  // a call handed on between members that disagree on the leader goes back to waiting
constexpr int max_batch_messages = 256;  // handled between two flushes

// Acknowledgements of one leader's appends, in one batch of sends, say one thing: "I hold your log up to the
// highest index" (a leader's log only grows within its term). The last one of each term carries the highest index
// and round; the others go.
void coalesce_acks(std::vector<message>& ms) {
  if (ms.size() < 2) return;
  std::map<std::pair<member_id, term_t>, message*> last;
  std::vector<bool> drop(ms.size(), false);
  for (std::size_t i = ms.size(); i-- > 0;) {
    auto& m = ms[i];
    if (m.type != msg_type::append_reply || !m.success) continue;
    auto [it, fresh] = last.try_emplace({m.to, m.term}, &m);
    if (fresh) continue;
    it->second->index = std::max(it->second->index, m.index);
    it->second->seq = std::max(it->second->seq, m.seq);
    drop[i] = true;
  }
  std::size_t k = 0;
  for (std::size_t i = 0; i < ms.size(); ++i)
    if (!drop[i]) {
      if (k != i) ms[k] = std::move(ms[i]);
      ++k;
    }
  ms.resize(k);
}


// The pid of a gen_call From ({Pid, Tag}, or {Pid, [alias | Ref]}).
std::optional<term> caller_pid(const term& from) {
  if (from.is_tuple(2) && from.element(0).is_pid()) return from.element(0);
  return std::nullopt;
}

// :global's name for the leader and the registrar that keeps it: {raft_leader, Group} -> the leading member's
// group process. A conflict after a partition heals unregisters the loser and tells it (random_notify_name), so
// no group process is ever killed by global's resolver.
asio::awaitable<void> registrar_loop(process& self, function_table& fns, term name, term group_pid) {
  const term global = a("global");
  const term method = term::export_(etf::export_value{atom("global"), atom("random_notify_name"), 3});
  for (;;) {
    auto m = co_await self.receive();
    if (!m) continue;
    std::optional<bool> want;
    // Only the newest wish counts.
    for (auto cur = m; cur; cur = co_await self.receive(std::chrono::milliseconds(0)))
      if (is(*cur, "leader", 2)) want = cur->element(1).is_atom(atom::true_());
    if (!want) continue;
    const term whereis_args = term::list({name});
    auto where = co_await fns.apply(self, global, a("whereis_name"), whereis_args);
    const bool ours = where.value == group_pid;
    if (*want && !ours) {
      const term args = term::list({name, group_pid, method});
      auto r = co_await fns.apply(self, global, a("register_name"), args);
      log::debug("raft: {} registered in :global: {}", etf::to_string(name), etf::to_string(r.value));
    } else if (!*want && ours) {
      const term args = term::list({name});
      co_await fns.apply(self, global, a("unregister_name"), args);
    }
  }
}

}  // namespace

// Replies and events never suspend the group on a busy connection (a frozen client must not stall the others):
// noconnect while the caller's node is connected; a plain send brings the connection up otherwise (a caller that
// reached us through a follower), and a connection that is only coming up is not busy.
void group_process::answer(process& self, const term& from, term reply) {
  if (from.is_tuple(2) && from.element(0).is_pid() && !self.node().is_local(from.element(0)) &&
      !d_.is_connected(from.element(0).node_of()))
    return gen::reply(self, from, std::move(reply));
  gen::reply_noconnect(self, from, std::move(reply));
}

namespace {

class durable_storage final : public group_storage {
 public:
  durable_storage(std::unique_ptr<storage> st, std::shared_ptr<tracer> trace)
      : st_(std::move(st)), gc_(*st_, options(std::move(trace))) {}
  ~durable_storage() override { gc_.stop(); }
  void persist(std::shared_ptr<const snapshot> snap, std::optional<hard_state> state, std::vector<entry> es,
               std::function<void(std::error_code)> done) override {
    gc_.submit(batch{std::move(snap), std::move(state), std::move(es)}, std::move(done));
  }
  void save_snapshot(std::shared_ptr<const snapshot> s, std::function<void(std::error_code)> done) override {
    gc_.submit(batch{std::move(s), {}, {}}, std::move(done));
  }

 private:
  static group_commit_options options(std::shared_ptr<tracer> trace) {
    group_commit_options o;
    if (trace)
      o.observe = [trace](const sync_record& r) {
        trace->event_at('W', r.started, r.batches, r.entries, r.started - r.queued);
        trace->event_at('F', r.syncing, r.ended - r.syncing, r.ended - r.started, 0);
      };
    return o;
  }
  std::unique_ptr<storage> st_;
  group_commit gc_;
};

}  // namespace

std::unique_ptr<group_storage> make_durable_storage(std::unique_ptr<storage> st, std::shared_ptr<tracer> trace) {
  return std::make_unique<durable_storage>(std::move(st), std::move(trace));
}

group_process::group_process(group_config g, timing t, distribution& d, function_table& fns, bool global_running,
                             std::unique_ptr<group_storage> storage, recovered rec)
    : g_(std::move(g)), t_(t), d_(d), fns_(fns), global_running_(global_running), storage_(std::move(storage)),
      recovered_(std::move(rec)) {}

group_process::~group_process() { *alive_ = false; }

asio::awaitable<void> group_process::run(process& self) {
  raft::config c;
  c.self = self.node().name();
  c.members = g_.members;
  c.heartbeat_ticks = 1;
  c.election_ticks = std::max(2, t_.election_ms / std::max(1, t_.heartbeat_ms));
  c.pre_vote = t_.pre_vote;
  c.seed = static_cast<std::uint64_t>(clock::now().time_since_epoch().count());
  // A new member's catch-up as a learner may take up to the request timeout (then {error, timeout}).
  c.learner_timeout_ticks = std::max(1, t_.request_timeout_ms / std::max(1, t_.heartbeat_ms));
  core_.emplace(c);
  if (recovered_.snap || !recovered_.log.empty() || recovered_.state.term) {
    if (recovered_.snap && !kv_.restore(recovered_.snap->data))
      throw std::runtime_error("raft group " + g_.name + ": the snapshot in the data directory is not a KV state");
    last_applied_ = recovered_.snap ? recovered_.snap->meta.index : 0;
    core_->restore(recovered_.state, recovered_.snap, std::move(recovered_.log));
    log::info("raft: group {} recovered term {}, snapshot at {}, log to {}, commit {}", g_.name, core_->current_term(),
              core_->snapshot_index(), core_->last_index(), core_->commit_index());
  }
  synced_ = recovered_.state;
  recovered_ = {};
  if (global_running_) {
    spawn_options o;
    o.link = self.pid();
    const term name = term::tuple({a("raft_leader"), term(atom(g_.name))});
    registrar_ = self.node().spawn(
        [&fns = fns_, name, gp = self.pid()](process& p) -> asio::awaitable<void> {
          co_await registrar_loop(p, fns, name, gp);
        },
        std::move(o));
  }
  keep_connected(self);
  auto next_tick = clock::now() + std::chrono::milliseconds(t_.heartbeat_ms);
  for (;;) {
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_tick - clock::now());
    auto m = co_await self.receive(std::max(wait, std::chrono::milliseconds(0)));
    const std::uint64_t t0 = trace_ ? tracer::now_ns() : 0;
    const auto cpu0 = trace_ ? tracer::thread_cpu() : tracer::cpu_sample{};
    int handled = 0;
    if (m) {
      handle(self, *m);
      ++handled;
      // What else is queued is handled before the next flush: concurrent calls and acknowledgements make one ready
      // (one append per follower, one write, one acknowledgement), not one each.
      for (int k = 1; k < max_batch_messages; ++k) {
        auto more = co_await self.receive(std::chrono::milliseconds(0));
        if (!more) break;
        handle(self, *more);
        ++handled;
      }
    }
    if (clock::now() >= next_tick) {
      if (trace_) trace_->flush();
      core_->tick();
      next_tick += std::chrono::milliseconds(t_.heartbeat_ms);
      if (next_tick < clock::now()) next_tick = clock::now() + std::chrono::milliseconds(t_.heartbeat_ms);
      expire(self);
      // A newer commit index that no write took along: written now that the disk is idle.
      if (deferred_ && held_.empty()) {
        auto st = std::move(deferred_);
        deferred_.reset();
        write(self, nullptr, std::move(st), {});
        held_.push_back(held{{}, 0, 0, false});
        if (trace_) trace_->event('T', 0, 0, 0);
      }
      if (++ticks_ % 10 == 0) {
        keep_connected(self);
        if (leading_ && !registrar_.is_nil()) self.send(registrar_, term::tuple({a("leader"), term(true)}));
      }
    }
    flush(self);
    if (trace_) {
      trace_->event_at('L', t0, handled, tracer::now_ns() - t0, self.message_queue_len());
      const auto cpu1 = tracer::thread_cpu();
      if (cpu1.thread == cpu0.thread)  // the loop ran on one thread: its CPU time, and how often it was preempted
        trace_->event_at('U', t0, cpu1.ns - cpu0.ns, cpu1.involuntary - cpu0.involuntary,
                         cpu1.voluntary - cpu0.voluntary);
    }
  }
}

void group_process::keep_connected(process& self) {
  // Raft's sends are noconnect: the connections to the members are brought up here, out of the group's way.
  auto up = d_.nodes(true, true);
  std::set<std::string> want(g_.members.begin(), g_.members.end());
  want.insert(core_->members().begin(), core_->members().end());
  for (const auto& l : core_->learners()) want.insert(l);
  for (const auto& m : want) {
    if (m == self.node().name()) continue;
    const atom n(m);
    if (std::find(up.begin(), up.end(), n) != up.end()) continue;
    asio::co_spawn(self.node().get_executor(), [&d = d_, n]() -> asio::awaitable<void> { co_await d.connect(n); },
                   asio::detached);
  }
}

void group_process::handle(process& self, const term& m) {
  gen::incoming_call c;
  const auto deadline = clock::now() + std::chrono::milliseconds(t_.request_timeout_ms);
  if (gen::is_call(m, c)) return handle_call(self, c.from, c.request, deadline, 0);
  // {'$raft', Group, FromNode, Msg}: from any node (a member not yet in our configuration must be heard, §4.1).
  if (m.is_tuple(4) && m.element(0).is_atom(atom("$raft")) && m.element(2).is_atom()) {
    const std::string from(m.element(2).atom_value().text());
    if (installing_ && is_resend(m.element(3))) return;  // dropped before its bytes are copied out of the message
    term snap_bytes;  // an install_snapshot's state bytes, not copied out here (install_step copies them in steps)
    auto msg = decode(m.element(3), from, self.node().name(), &snap_bytes);
    if (!msg) {
      log::warning("raft: group {}: a malformed message from {} dropped", g_.name, from);
      return;
    }
    // A snapshot the core would take is loaded in steps first (begin_install); one that is not a KV state is
    // refused then, before the core takes it. One at or below the commit index holds nothing new: the core answers it.
    // (The core takes no snapshot at or below its commit index: it does not need the bytes of one.)
    if (msg->type == msg_type::install_snapshot && msg->snap->meta.index > core_->commit_index())
      return begin_install(self, std::move(*msg), std::move(snap_bytes));
    if (trace_ && msg->type == msg_type::append_reply) {
      const auto at = std::find(g_.members.begin(), g_.members.end(), from);
      trace_->event('A', static_cast<std::uint64_t>(at - g_.members.begin()) + 1, msg->index, msg->success);
    } else if (trace_ && msg->type == msg_type::append) {
      trace_->event('E', msg->entries.empty() ? 0 : msg->entries.front().index,
                    msg->entries.empty() ? 0 : msg->entries.back().index, msg->commit);
    }
    core_->step(*msg);
    return;
  }
  // {'$raft_fwd', Hops, From, Request}: a call a member handed on.
  if (is(m, "$raft_fwd", 4) && m.element(1).is_small()) {
    return handle_call(self, m.element(2), m.element(3), deadline, static_cast<int>(m.element(1).small()));
  }
  if (is(m, "$raft_synced", 2) && !held_.empty()) {
    if (!m.element(1).is_atom(atom("ok"))) {
      // Nothing of this ready may be acted on (acknowledged, voted, applied): this member stops; the group goes on
      // without it, and a restart recovers what was durable.
      const auto b = m.element(1).element(1).bytes();
      const std::string why(reinterpret_cast<const char*>(b.data()), b.size());
      log::error("raft: group {}: writing the log failed ({}); this member stops", g_.name, why);
      throw process_exit(term::tuple({a("raft_storage_failed"), term::binary(why)}));
    }
    synced(self);
    return;
  }
  if (is(m, "$raft_snapshot_saved", 1)) {
    snapshot_saving_ = false;
    return;
  }
  if (is(m, "$raft_snapshot_step", 1)) return snapshot_step(self);
  if (is(m, "$raft_install_step", 2) && m.element(1).is_small())
    return install_step(self, static_cast<std::uint64_t>(m.element(1).small()));
  if (is(m, "$raft_free_step", 1)) return free_step(self);
  if (is(m, "DOWN", 5)) return handle_down(self, m.element(1));
}

void group_process::forward(process& self, const term& from, const term& request, clock::time_point deadline,
                            int hops) {
  auto l = core_->leader();
  if (l && *l != self.node().name() && hops < max_hops) {
    ++stats_.forwarded;
    forwarded_.push_back({from, *l, deadline});
    self.send_noconnect(term::tuple({term(atom(g_.name)), term(atom(*l))}),
                        term::tuple({a("$raft_fwd"), term(std::int64_t{hops + 1}), from, request}));
    return;
  }
  waiting_.push_back({from, request, deadline, 0});
}

void group_process::propose(process& self, const term& from, const term& request, term command,
                            clock::time_point deadline) {
  auto idx = core_->propose(std::move(command));
  if (!idx) return forward(self, from, request, deadline, 0);  // a transfer is on: the next leader takes it
  ++stats_.proposals;
  if (trace_) {
    // The benchmark's traced callers put <<Caller:32, Seq:32, ...>>: both go with the event, to match their times.
    std::uint64_t caller = 0, seq = 0;
    if (request.is_tuple(3) && request.element(2).is_binary() && request.element(2).bytes().size() >= 8) {
      const auto v = request.element(2).bytes();
      for (int k = 0; k < 4; ++k) caller = caller << 8 | v[k], seq = seq << 8 | v[4 + k];
    }
    trace_->event('P', *idx, caller, seq);
  }
  pending_[*idx] = pending_call{from, core_->current_term(), deadline};
}

void group_process::handle_call(process& self, const term& from, const term& r, clock::time_point deadline,
                                int hops) {
  if (r.is_atom(atom("status"))) return answer(self, from, status());
  if (is(r, "get", 3) && r.element(2).is_atom(atom("local"))) return answer(self, from, kv_.get(r.element(1)));
  if (is(r, "watch", 2)) {
    auto pid = caller_pid(from);
    if (!pid) return answer(self, from, error("badarg"));
    term ref = self.make_ref();
    watchers_[etf::to_string(r.element(1))].push_back({ref, *pid, self.monitor(*pid), r.element(1)});
    return answer(self, from, term::tuple({a("ok"), ref}));
  }
  if (is(r, "unwatch", 2)) {
    for (auto& [k, ws] : watchers_)
      std::erase_if(ws, [&](const watcher& w) {
        if (!(w.ref == r.element(1))) return false;
        self.demonitor(w.monitor, true);
        return true;
      });
    std::erase_if(watchers_, [](const auto& kv) { return kv.second.empty(); });
    return answer(self, from, a("ok"));
  }
  const bool leader = core_->current_role() == role::leader;
  if (is(r, "get", 2)) {
    if (!leader) return forward(self, from, r, deadline, hops);
    const auto ctx = next_read_++;
    ++stats_.reads;
    reads_[ctx] = pending_read{from, r.element(1), deadline, 0};
    core_->read_index(ctx);
    return;
  }
  if ((is(r, "add_member", 2) || is(r, "remove_member", 2)) && r.element(1).is_atom()) {
    if (!leader) return forward(self, from, r, deadline, hops);
    const std::string node(r.element(1).atom_value().text());
    auto ms = core_->members();
    const bool present = std::find(ms.begin(), ms.end(), node) != ms.end();
    const bool add = is(r, "add_member", 2);
    if (add == present) return answer(self, from, error(add ? "already_member" : "not_member"));
    if (add && adding_.count(node)) return answer(self, from, error("change_in_progress"));
    if (node.find('@') == std::string::npos) return answer(self, from, error("badarg"));
    if (add) ms.push_back(node);
    else std::erase(ms, node);
    index_t at = 0;
    switch (core_->propose_members(ms, &at)) {
      case change_error::ok:
        // at 0: the node is a learner catching up; the core says when it is promoted (or not: apply_ready).
        (at ? pending_[at] : adding_[node]) = pending_call{from, core_->current_term(), deadline};
        return;
      case change_error::in_progress: return answer(self, from, error("change_in_progress"));
      case change_error::empty: return answer(self, from, error("last_member"));
      case change_error::not_leader: return forward(self, from, r, deadline, hops);
      case change_error::not_one_server: return answer(self, from, error("badarg"));
    }
    return;
  }
  if (is(r, "transfer_leadership", 2) && r.element(1).is_atom()) {
    const std::string to(r.element(1).atom_value().text());
    if (!core_->is_member(to)) return answer(self, from, error("not_member"));
    if (core_->leader() == to && leader == (to == self.node().name())) return answer(self, from, a("ok"));
    if (!leader) return forward(self, from, r, deadline, hops);
    if (!core_->transfer_leadership(to)) return answer(self, from, error("unavailable"));
    transfers_.push_back({from, to, deadline});
    return;
  }
  if (r.is_atom(atom("$raft_handover"))) {
    // The node is stopping: a leader hands over to the most up-to-date member first.
    if (!leader) return answer(self, from, a("ok"));
    // Only to a member heard from lately: the last member standing stops at once.
    member_id best;
    index_t best_match = 0;
    for (const auto& [id, p] : core_->peers())
      if (core_->is_member(id) && p.recently_active && (best.empty() || p.match > best_match)) {
        best = id;
        best_match = p.match;
      }
    if (best.empty() || !core_->transfer_leadership(best)) return answer(self, from, a("ok"));
    log::info("raft: group {}: handing leadership to {} before stopping", g_.name, best);
    transfers_.push_back({from, best, deadline});
    return;
  }
  if (!kv_machine::is_command(r)) return answer(self, from, error("badarg"));
  if (!leader) return forward(self, from, r, deadline, hops);
  if (is(r, "lock", 3)) {
    auto pid = caller_pid(from);
    if (!pid) return answer(self, from, error("badarg"));
    return propose(self, from, r, term::tuple({a("lock"), r.element(1), r.element(2), *pid}), deadline);
  }
  propose(self, from, r, r, deadline);
}

void group_process::send(process& self, std::vector<message>& ms) {
  coalesce_acks(ms);
  for (auto& msg : ms) {
    if (msg.type == msg_type::install_snapshot) ++stats_.snapshots_sent;
    const atom to(msg.to);
    term wire = term::tuple({a("$raft"), term(atom(g_.name)), term(self.node().name_atom()), encode(msg)});
    self.send_noconnect(term::tuple({term(atom(g_.name)), term(to)}), std::move(wire));
  }
  ms.clear();
}

void group_process::write(process& self, std::shared_ptr<const snapshot> snap, std::optional<hard_state> st,
                          std::vector<entry> es) {
  if (st) synced_ = *st;
  std::weak_ptr<bool> alive = alive_;
  storage_->persist(std::move(snap), std::move(st), std::move(es),
                    [&n = self.node(), pid = self.pid(), alive](std::error_code ec) {
                      if (alive.expired()) return;
                      term result = ec ? term::tuple({a("error"), term::binary(ec.message())}) : a("ok");
                      n.send(pid, pid, term::tuple({a("$raft_synced"), std::move(result)}));
                    });
}

void group_process::flush(process& self) {
  // Every ready is taken at once, also while earlier writes run (group commit gathers what is submitted meanwhile
  // into its next fdatasync); a handful per call, as a commit or a read may make another.
  for (int round = 0; round < 8 && core_->has_ready(); ++round) {
    ready rd = core_->take_ready();
    send(self, rd.send_now);  // the leader's appends: the followers write while we do (thesis §10.2.1)
    held h;
    if (!rd.to_persist.empty()) h.index = rd.to_persist.back().index, h.term = rd.to_persist.back().term;
    else if (rd.snapshot) h.index = rd.snapshot->meta.index, h.term = rd.snapshot->meta.term;
    h.messages = std::move(rd.messages);
    // A term or a vote must be durable before the messages that depend on it go; a newer commit index alone need
    // not be (a restarted member learns it from the leader): it goes with the next write.
    const bool vote = rd.state && (rd.state->term != synced_.term || rd.state->voted_for != synced_.voted_for);
    const bool writes = storage_ && (rd.snapshot || !rd.to_persist.empty() || vote);
    if (trace_) trace_->event(writes ? 'T' : 'N', h.index, rd.to_persist.size(), rd.send_now.size());
    if (writes) {
      auto st = rd.state ? rd.state : deferred_;
      deferred_.reset();
      write(self, rd.snapshot, std::move(st), std::move(rd.to_persist));
      held_.push_back(std::move(h));
    } else {
      if (storage_ && rd.state) deferred_ = rd.state;
      if (!storage_ && h.index) core_->persisted(h.index, h.term);
      h.done = true;
      if (held_.empty()) send(self, h.messages);
      else held_.push_back(std::move(h));
    }
    apply_ready(self, rd);
  }
}

void group_process::synced(process& self) {
  // Completions come in submission order: the oldest write not yet durable is this one.
  for (auto& h : held_)
    if (!h.done) {
      h.done = true;
      if (trace_) trace_->event('S', h.index, h.messages.size());
      break;
    }
  std::vector<message> out;
  while (!held_.empty() && held_.front().done) {
    held h = std::move(held_.front());
    held_.pop_front();
    if (h.index) core_->persisted(h.index, h.term);
    if (out.empty()) out = std::move(h.messages);
    else std::move(h.messages.begin(), h.messages.end(), std::back_inserter(out));
  }
  send(self, out);
}

// The state machine's side of a ready, at once: committed entries are durable on a majority (this member's own
// write may still run: the state machine is rebuilt from snapshot and log after a restart), confirmed reads,
// catch-up outcomes; a snapshot from the leader is loaded (its acknowledgement waits for its write).
void group_process::apply_ready(process& self, ready& rd) {
  if (rd.snapshot) {
    // Watched keys the snapshot changes get their event, as if the entries it stands for had been applied.
    std::vector<std::pair<term, term>> watched;  // key, value before
    for (const auto& [k, ws] : watchers_)
      if (!ws.empty()) watched.emplace_back(ws.front().key, kv_.get(ws.front().key));
    // Our own snapshot in flight is older than this one (compact would drop it): it goes, and does not keep the
    // old state alive.
    if (snap_build_) {
      snap_build_.reset();
      snapshot_saving_ = false;
    }
    if (loaded_ && loaded_snap_ == rd.snapshot) {
      reap(self, kv_.replace(std::move(*loaded_)));
    } else if (!kv_.restore(rd.snapshot->data)) {  // not loaded in steps (begin_install loads every one the core takes)
      log::error("raft: group {}: a snapshot could not be loaded", g_.name);
    }
    if (loaded_) reap(self, std::move(*loaded_));
    loaded_.reset();
    loaded_snap_.reset();
    last_applied_ = rd.snapshot->meta.index;
    for (const auto& [k, before] : watched)
      if (!(kv_.get(k) == before)) notify_watchers(self, k);
    log::info("raft: group {}: installed a snapshot at {} from the leader", g_.name, last_applied_);
  }
  for (const auto& e : rd.to_apply) apply(self, e);
  if (trace_ && !rd.to_apply.empty()) trace_->event('K', rd.to_apply.back().index, rd.to_apply.size());
  for (const auto& l : rd.learners) {
    auto it = adding_.find(l.node);
    if (it == adding_.end()) continue;
    switch (l.what) {
      case ready::learner_outcome::promoted:
        log::info("raft: group {}: {} caught up as a learner; adding it as a voter at {}", g_.name, l.node, l.index);
        pending_[l.index] = it->second;
        break;
      case ready::learner_outcome::timeout:
        log::warning("raft: group {}: {} did not catch up in time; not added", g_.name, l.node);
        answer(self, it->second.from, error("timeout"));
        break;
      case ready::learner_outcome::lost_lead: answer(self, it->second.from, error("unavailable")); break;
    }
    adding_.erase(it);
  }
  for (const auto& r : rd.reads) {
    auto it = reads_.find(r.ctx);
    if (it == reads_.end()) continue;
    it->second.index = r.index;
    reads_at_.emplace(r.index, std::move(it->second));
    reads_.erase(it);
  }
  for (auto ctx : rd.failed_reads) {
    auto it = reads_.find(ctx);
    if (it == reads_.end()) continue;
    // This member lost the lead: the read goes to whoever leads now.
    waiting_.push_back({it->second.from, term::tuple({a("get"), it->second.key}), it->second.deadline, 0});
    reads_.erase(it);
  }
  answer_reads(self);
  check_leadership(self);
  maybe_snapshot(self);
  // Calls that waited for a leader go on once there is one.
  if (!waiting_.empty() && core_->leader()) {
    auto w = std::move(waiting_);
    waiting_.clear();
    for (auto& x : w) handle_call(self, x.from, x.request, x.deadline, 0);
  }
  publish_stats();
}

void group_process::apply(process& self, const entry& e) {
  last_applied_ = e.index;
  term result = a("ok");
  if (!e.data.is_nil() && !members_of(e.data)) {
    auto r = kv_.apply(e.data, e.index);
    result = std::move(r.reply);
    if (r.changed) notify_watchers(self, *r.changed);
    if (r.granted && leading_) {
      const auto& l = kv_.locks().at(*r.granted);
      lock_watches_[*r.granted] = lock_watch{self.monitor(l.owner), l.token, l.name,
                                             clock::now() + std::chrono::milliseconds(l.ttl_ms), false};
    }
  }
  if (members_of(e.data)) log::info("raft: group {}: members now {}", g_.name, etf::to_string(e.data.element(1)));
  auto it = pending_.find(e.index);
  if (it == pending_.end()) return;
  // Our proposal at this index was committed only if the entry is ours (same term); else it was replaced.
  if (it->second.in_term == e.term) answer(self, it->second.from, std::move(result));
  else answer(self, it->second.from, error("unavailable"));
  pending_.erase(it);
}

void group_process::answer_reads(process& self) {
  while (!reads_at_.empty() && reads_at_.begin()->first <= last_applied_) {
    auto& r = reads_at_.begin()->second;
    answer(self, r.from, kv_.get(r.key));
    reads_at_.erase(reads_at_.begin());
  }
}

void group_process::check_leadership(process& self) {
  const bool now = core_->current_role() == role::leader;
  if (now != leading_) {
    leading_ = now;
    if (now) {
      // A new leader takes over the locks from the replicated state: it monitors every owner again and gives each
      // lock its full ttl from now (a lock may outlive its ttl by up to the time the change of leader took; it is
      // never released early).
      for (const auto& [key, l] : kv_.locks())
        lock_watches_[key] =
            lock_watch{self.monitor(l.owner), l.token, l.name, clock::now() + std::chrono::milliseconds(l.ttl_ms), false};
      log::info("raft: group {}: leader in term {}", g_.name, core_->current_term());
    } else {
      for (auto& [key, w] : lock_watches_) self.demonitor(w.monitor, true);
      lock_watches_.clear();
    }
    if (!registrar_.is_nil()) self.send(registrar_, term::tuple({a("leader"), term(now)}));
  }
  // Transfers end when the target leads (or this member learnt of another leader).
  std::erase_if(transfers_, [&](const pending_transfer& t) {
    auto l = core_->leader();
    if (!l || *l == self.node().name()) return false;
    answer(self, t.from, *l == t.to ? a("ok") : error("unavailable"));
    return true;
  });
}

void group_process::expire(process& self) {
  const auto now = clock::now();
  const term unavailable = error("unavailable");
  auto give_up = [&](const term& from) {
    ++stats_.unavailable;
    answer(self, from, unavailable);
  };
  for (auto it = pending_.begin(); it != pending_.end();) {
    // A proposal of a term that is over, or past its deadline, may or may not commit: the caller is told so.
    if (it->second.deadline <= now || (core_->current_role() != role::leader && it->second.in_term != core_->current_term())) {
      give_up(it->second.from);
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
  std::erase_if(waiting_, [&](const waiting_call& w) { return w.deadline <= now && (give_up(w.from), true); });
  std::erase_if(reads_, [&](const auto& kv) { return kv.second.deadline <= now && (give_up(kv.second.from), true); });
  for (auto it = reads_at_.begin(); it != reads_at_.end();) {
    if (it->second.deadline <= now) {
      give_up(it->second.from);
      it = reads_at_.erase(it);
    } else {
      ++it;
    }
  }
  // A call handed to a leader that was killed or cut off before answering: its caller hears {error, unavailable}
  // at the deadline instead of waiting for its own timeout (a leader still leading answers it itself).
  while (!forwarded_.empty() && forwarded_.front().deadline <= now) {
    const auto& f = forwarded_.front();
    if (core_->leader() != f.leader) give_up(f.from);
    forwarded_.pop_front();
  }
  std::erase_if(transfers_, [&](const pending_transfer& t) {
    if (t.deadline > now) return false;
    answer(self, t.from, error("timeout"));
    return true;
  });
  // Locks whose ttl ran out on this leader's clock are released through the log.
  if (core_->current_role() == role::leader)
    for (auto& [key, w] : lock_watches_)
      if (!w.release_proposed && w.expires <= now) {
        w.release_proposed = core_->propose(term::tuple({a("$release"), w.name, term(w.token)})).has_value();
      }
}

void group_process::handle_down(process& self, const term& ref) {
  for (auto& [key, w] : lock_watches_)
    if (w.monitor == ref) {
      // The owner died (any reason, noconnection too): the lock goes, through the log.
      if (!w.release_proposed && core_->current_role() == role::leader)
        w.release_proposed = core_->propose(term::tuple({a("$release"), w.name, term(w.token)})).has_value();
      return;
    }
  for (auto& [k, ws] : watchers_) std::erase_if(ws, [&](const watcher& w) { return w.monitor == ref; });
  std::erase_if(watchers_, [](const auto& kv) { return kv.second.empty(); });
  (void)self;
}

void group_process::notify_watchers(process& self, const term& key) {
  auto it = watchers_.find(etf::to_string(key));
  if (it == watchers_.end()) return;
  const term value = kv_.get(key);
  for (const auto& w : it->second) self.send_noconnect(w.pid, term::tuple({a("kv_event"), w.ref, key, value}));
}

void group_process::maybe_snapshot(process& self) {
  // Released locks are dropped from the leader's watch once the state no longer holds them.
  std::erase_if(lock_watches_, [&](const auto& kv) {
    auto it = kv_.locks().find(kv.first);
    if (it != kv_.locks().end() && it->second.token == kv.second.token) return false;
    self.demonitor(kv.second.monitor, true);
    return true;
  });
  if (snapshot_saving_ || last_applied_ < core_->snapshot_index() + t_.snapshot_entries) return;
  snapshot_saving_ = true;
  snap_build_.emplace(kv_);
  snap_build_index_ = last_applied_;
  snapshot_step(self);
}

void group_process::snapshot_step(process& self) {
  if (!snap_build_) return;
  if (!snap_build_->step(snapshot_step_entries)) {
    self.send(self.pid(), term::tuple({a("$raft_snapshot_step")}));
    return;
  }
  std::string bytes = snap_build_->take();
  snap_build_.reset();
  // A snapshot from the leader may have been installed meanwhile, past this one: then this one is dropped.
  auto s = core_->compact(snap_build_index_, std::move(bytes));
  if (!storage_ || !s || s->meta.index != snap_build_index_) {
    snapshot_saving_ = false;
    return;
  }
  std::weak_ptr<bool> alive = alive_;
  storage_->save_snapshot(s, [&n = self.node(), pid = self.pid(), alive, name = g_.name](std::error_code ec) {
    // The log still holds everything the snapshot covers until it is saved: a failure costs only disk space.
    if (ec) log::error("raft: group {}: saving a snapshot failed: {}", name, ec.message());
    if (!alive.expired()) n.send(pid, pid, term::tuple({a("$raft_snapshot_saved")}));
  });
}

// The leader's install_snapshot of the snapshot being loaded ({Type, ..., {Index, Term, Members, Bytes}} as
// raft/wire.cpp encodes it), sent again while no answer came.
bool group_process::is_resend(const term& t) const {
  if (!t.is_tuple(14) || !t.element(0).is_small() ||
      t.element(0).small() != static_cast<std::int64_t>(msg_type::install_snapshot) || !t.element(13).is_tuple(4))
    return false;
  const auto& s = t.element(13);
  const auto& meta = installing_->msg.snap->meta;
  return s.element(0) == term(meta.index) && s.element(1) == term(meta.term);
}

void group_process::begin_install(process& self, message msg, term bytes) {
  // The leader sends the snapshot again (once per election timeout) while it has no answer: the one in flight stands.
  if (installing_ && installing_->msg.snap->meta.index == msg.snap->meta.index &&
      installing_->msg.snap->meta.term == msg.snap->meta.term)
    return;
  if (installing_) reap(self, installing_->loader.take());  // a newer one: what was loaded of the older goes
  auto held = std::make_shared<const term>(std::move(bytes));  // not moved again: a short binary's bytes are inline
  const auto b = held->bytes();
  const std::string_view view(reinterpret_cast<const char*>(b.data()), b.size());
  installing_.emplace(install{std::move(msg), held, kv_loader(view, held), {}, ++install_generation_});
  installing_->data.reserve(view.size());  // pages are touched only as the steps copy into them
  install_step(self, installing_->generation);
}

void group_process::install_step(process& self, std::uint64_t generation) {
  if (!installing_ || installing_->generation != generation) return;  // replaced or finished meanwhile
  auto& in = *installing_;
  // The core's copy of the bytes (kept to persist and to send on), install_copy_bytes a step.
  const auto b = in.bytes->bytes();
  const std::size_t n = std::min(install_copy_bytes, b.size() - in.data.size());
  in.data.append(reinterpret_cast<const char*>(b.data()) + in.data.size(), n);
  auto p = in.loaded ? kv_loader::progress::done : in.loader.step(install_step_entries);
  in.loaded = p == kv_loader::progress::done;
  if (in.loaded && in.data.size() < b.size()) p = kv_loader::progress::more;
  switch (p) {
    case kv_loader::progress::more:
      self.send(self.pid(), term::tuple({a("$raft_install_step"), term(generation)}));
      return;
    case kv_loader::progress::bad:
      log::warning("raft: group {}: a snapshot from {} that is not a KV state dropped", g_.name,
                   installing_->msg.from);
      reap(self, installing_->loader.take());
      installing_.reset();
      return;
    case kv_loader::progress::done: break;
  }
  message msg = std::move(in.msg);
  auto snap = std::make_shared<snapshot>();
  snap->meta = msg.snap->meta;
  snap->data = std::move(in.data);
  msg.snap = std::move(snap);
  kv_state state = in.loader.take();
  installing_.reset();
  if (loaded_) reap(self, std::move(*loaded_));
  loaded_ = std::move(state);
  loaded_snap_ = msg.snap;
  core_->step(msg);
  // The core takes it (its ready carries it: swapped in by apply_ready) unless the leader's term is over or the
  // commit index passed it meanwhile; flushed now, so no other install can come between.
  flush(self);
  if (loaded_) {
    reap(self, std::move(*loaded_));
    loaded_.reset();
    loaded_snap_.reset();
  }
}

void group_process::reap(process& self, kv_state s) {
  reaper_.add(std::move(s));
  if (reaper_.empty() || reaping_) return;
  reaping_ = true;
  self.send(self.pid(), term::tuple({a("$raft_free_step")}));
}

void group_process::free_step(process& self) {
  reaping_ = false;
  if (reaper_.step(free_step_entries)) return;
  reaping_ = true;
  self.send(self.pid(), term::tuple({a("$raft_free_step")}));
}

term group_process::status() const {
  std::vector<term> ms, ls;
  for (const auto& m : core_->members()) ms.emplace_back(atom(m));
  for (const auto& m : core_->learners()) ls.emplace_back(atom(m));
  static const char* roles[] = {"follower", "pre_candidate", "candidate", "leader"};
  auto l = core_->leader();
  return term::map({{a("role"), a(roles[static_cast<int>(core_->current_role())])},
                    {a("term"), term(core_->current_term())},
                    {a("leader"), l ? term(atom(*l)) : a("nil")},
                    {a("commit_index"), term(core_->commit_index())},
                    {a("last_applied"), term(last_applied_)},
                    {a("last_index"), term(core_->last_index())},
                    {a("snapshot_index"), term(core_->snapshot_index())},
                    {a("members"), term::list(std::move(ms))},
                    {a("learners"), term::list(std::move(ls))},
                    {a("keys"), term(static_cast<std::uint64_t>(kv_.size()))},
                    {a("locks"), term(static_cast<std::uint64_t>(kv_.locks().size()))},
                    {a("durable"), term(storage_ != nullptr)}});
}

void group_process::publish_stats() {
  stats_.role = static_cast<int>(core_->current_role());
  stats_.leader = core_->current_role() == role::leader;
  stats_.term = core_->current_term();
  stats_.commit = core_->commit_index();
  stats_.applied = last_applied_;
  stats_.last_index = core_->last_index();
  stats_.snapshot_index = core_->snapshot_index();
  stats_.keys = kv_.size();
  stats_.locks = kv_.locks().size();
}

}  // namespace cnode::raft
