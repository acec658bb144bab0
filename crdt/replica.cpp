#include "crdt/replica.hpp"

#include <algorithm>
#include <random>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>

#include "cnode/distribution.hpp"
#include "cnode/gen.hpp"
#include "cnode/log.hpp"
#include "crdt/codec.hpp"
#include "etf/format.hpp"

namespace cnode::crdt {

namespace {

term A(const char* s) { return term(atom(s)); }
const atom crdt_name("crdt");
term error_term(const term& why) { return term::tuple({A("error"), why}); }
term badarg() { return error_term(A("badarg")); }

// The reply for a failed local operation.
term failure_term(const failure& f) {
  if (f.type) return error_term(term::tuple({A("wrong_type"), A(type_atom(*f.type))}));
  return error_term(A(error_atom(static_cast<error>(f.ec.value()))));
}

std::string show(const term& t) {
  std::string s = etf::to_string(t);
  if (s.size() > 120) s = s.substr(0, 117) + "...";
  return s;
}

}  // namespace

replica::replica(replica_config cfg, distribution& d, std::unique_ptr<state_dir> dir, std::optional<snapshot> restored)
    : cfg_(std::move(cfg)), d_(d), dir_(std::move(dir)), restored_(std::move(restored)) {}

replica::~replica() = default;

std::int64_t replica::now_ms() const {
  const auto t = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  return t.count() + cfg_.clock_offset_ms;
}

bool replica::listed(atom n) const { return listed_.contains(n); }

void replica::prepare(atom self_node) {
  self_node_ = self_node;
  std::random_device rd;
  incarnation_ = ((std::uint64_t{rd()} << 32) | rd()) & ((std::uint64_t{1} << 48) - 1);
  for (const auto& r : cfg_.replicas)
    if (atom(r) != self_node_) listed_.insert(atom(r));
  const std::string node(self_node.text());
  if (restored_) {
    if (restored_->node != self_node)
      throw std::runtime_error(dir_->state_file().string() + " was written by " + std::string(restored_->node.text()) +
                               ", not by " + node +
                               ": two nodes must not share a state (they would make the same dots)");
    writer_ = restored_->writer;
  } else {
    // A fresh writer id for state that starts empty: the dots this node made in an earlier life are not reused.
    if (node.size() > 240) throw std::runtime_error("node name too long for the CRDT service's replica ids");
    char suffix[16];
    std::snprintf(suffix, sizeof suffix, "#%012llx", static_cast<unsigned long long>(incarnation_));
    writer_ = atom(node + suffix);
  }
  store_options o;
  o.writer = writer_;
  o.max_buffered_deltas = cfg_.max_buffered_deltas;
  o.max_clock_offset_ms = cfg_.max_clock_offset_ms;
  // On a reliable connection an interval is acked within a round trip; a resend only for what a dropped connection
  // lost (a new connection resends at once, see node_up).
  o.retransmit_ms = std::max<std::int64_t>(1000, 5 * static_cast<std::int64_t>(cfg_.sync_ms));
  store_.emplace(self_node_, o);
  for (atom p : listed_) store_->add_peer(p);
  if (restored_) {
    store_->restore(std::move(restored_->state), now_ms());
    log::info("crdt: {} objects read back from {} (writer {})", store_->state().size(), dir_->state_file().string(),
              writer_.text());
    restored_.reset();
  }
}

void replica::request_stop(oneshot<bool> done) {
  std::lock_guard lk(stop_mu_);
  stop_done_ = std::move(done);
}

asio::awaitable<void> replica::run(process& self) {
  if (dir_) {
    auto ex = self.node().get_executor();
    auto& n = self.node();
    const term pid = self.pid();
    // The outcome goes to the process as a message, posted to the node's executor (which outlives this thread's
    // work: the writer is joined before the io_context goes).
    writer_thread_ = std::make_unique<background_writer>(*dir_, [ex, &n, pid](std::uint64_t gen, const std::string& err) {
      term outcome = err.empty() ? A("ok") : error_term(term::binary(err));
      term msg = term::tuple({A("$crdt_persisted"), term(gen), std::move(outcome)});
      asio::post(ex, [&n, pid, msg = std::move(msg)]() mutable { n.send({}, pid, std::move(msg)); });
    });
  }
  d_.monitor_nodes(self.pid(), true, true);
  for (atom n : d_.nodes(true, true))
    if (listed(n)) node_up(self, n);
  keep_connected(self);
  const auto period = std::chrono::milliseconds(cfg_.sync_ms);
  auto next_tick = clock::now() + period;
  for (;;) {
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_tick - clock::now());
    auto m = co_await self.receive(std::max(wait, std::chrono::milliseconds(0)));
    if (m) handle(self, *m);
    if (clock::now() >= next_tick) {
      tick(self);
      next_tick += period;
      if (next_tick < clock::now()) next_tick = clock::now() + period;
    }
  }
}

void replica::handle(process& self, const term& m) {
  gen::incoming_call c;
  if (gen::is_call(m, c)) return handle_call(self, c.from, c.request);
  if (m.is_tuple(2) && m.element(1).is_atom()) {
    if (m.element(0).is_atom(atom("nodeup"))) return node_up(self, m.element(1).atom_value());
    if (m.element(0).is_atom(atom("nodedown"))) return node_down(m.element(1).atom_value());
  }
  if (m.is_tuple(5) && m.element(0).is_atom(atom("DOWN"))) return subscriber_down(m.element(3));
  if (m.is_tuple(3) && m.element(0).is_atom(atom("$crdt_persisted")) && m.element(1).is_small())
    return on_persisted(self, static_cast<std::uint64_t>(m.element(1).small()), m.element(2));
  if (m.is_atom(atom("$crdt_stop"))) {
    stopping_ = true;
    return maybe_finish_stop(self);
  }
  if (m.is_tuple() && m.tuple_size() >= 3 && m.element(0).is_atom()) {
    const atom tag = m.element(0).atom_value();
    if (tag == atom("crdt_hello")) {
      if (m.is_tuple(3) && m.element(1).is_atom() && m.element(2).is_small() && m.element(2).small() >= 0)
        return handle_hello(self, m.element(1).atom_value(), static_cast<std::uint64_t>(m.element(2).small()));
    } else if (tag == atom("crdt_sync") || tag == atom("crdt_ack")) {
      return handle_peer_message(self, m);
    }
  }
  const auto now = clock::now();
  if (now - malformed_logged_ > std::chrono::seconds(10)) {
    malformed_logged_ = now;
    log::warning("crdt: dropped a message that is no request and no replica's: {}", show(m));
  }
  stats_.malformed.fetch_add(1, std::memory_order_relaxed);
}

// ---- requests from Elixir ----------------------------------------------------------------------------------------

void replica::handle_call(process& self, const term& from, const term& r) {
  auto& s = *store_;
  auto done = [&](const result<delta_group>& res, const term& name) {
    if (!res) {
      stats_.wrong_type.fetch_add(1, std::memory_order_relaxed);
      return gen::reply(self, from, failure_term(res.fail()));
    }
    stats_.writes.fetch_add(1, std::memory_order_relaxed);
    changed(name);
    gen::reply(self, from, A("ok"));
  };
  auto refuse = [&] {
    stats_.bad_requests.fetch_add(1, std::memory_order_relaxed);
    gen::reply(self, from, badarg());
  };
  if (r.is_atom(atom("status"))) return gen::reply(self, from, status(self));
  if (!r.is_tuple() || r.tuple_size() < 2 || !r.element(0).is_atom()) return refuse();
  const atom tag = r.element(0).atom_value();
  const std::size_t n = r.tuple_size();
  const term& name = r.element(1);
  if (tag == atom("counter_add") && n == 3) {
    if (!r.element(2).is_small()) return refuse();  // an integer that fits 64 bits
    return done(s.counter_add(name, r.element(2).small()), name);
  }
  if (tag == atom("set_add") && n == 3) return done(s.set_add(name, r.element(2)), name);
  if (tag == atom("set_remove") && n == 3) return done(s.set_remove(name, r.element(2)), name);
  if (tag == atom("map_put") && n == 4) return done(s.map_put(name, r.element(2), r.element(3), now_ms()), name);
  if (tag == atom("map_remove") && n == 3) return done(s.map_remove(name, r.element(2)), name);
  if (tag == atom("register_put") && n == 3) return done(s.register_set(name, r.element(2), now_ms()), name);
  if (tag == atom("value") && n == 2) {
    stats_.reads.fetch_add(1, std::memory_order_relaxed);
    auto v = s.value(name);
    return gen::reply(self, from, v ? term::tuple({A("ok"), *v}) : A("not_found"));
  }
  if (tag == atom("map_get") && n == 3) {
    stats_.reads.fetch_add(1, std::memory_order_relaxed);
    const object* o = s.find(name);
    if (!o) return gen::reply(self, from, A("not_found"));
    const auto* m = std::get_if<aw_lww_map>(o);
    if (!m) {
      stats_.wrong_type.fetch_add(1, std::memory_order_relaxed);
      return gen::reply(self, from, failure_term({make_error_code(error::wrong_type), type_of(*o)}));
    }
    const lww_cell* c = m->get(r.element(2));
    return gen::reply(self, from, c ? term::tuple({A("ok"), c->value}) : A("not_found"));
  }
  if ((tag == atom("subscribe") || tag == atom("unsubscribe")) && n == 2) {
    const term pid = from.element(0);
    if (tag == atom("subscribe")) subscribe(self, pid, name);
    else unsubscribe(self, pid, name);
    return gen::reply(self, from, A("ok"));
  }
  refuse();
}

term replica::status(process& self) const {
  const auto& s = *store_;
  std::vector<term> in_contact, peers;
  std::vector<std::pair<term, term>> unacked, bytes_out;
  for (atom p : s.peers()) {
    peers.emplace_back(p);
    if (contact_.contains(p)) in_contact.emplace_back(p);
    unacked.emplace_back(term(p), term(s.unacked(p)));
  }
  for (const auto& c : d_.connections())
    if (s.has_peer(c.node)) bytes_out.emplace_back(term(c.node), term(c.stats.bytes_out));
  std::size_t subs = 0;
  for (const auto& [name, pids] : subscribers_) subs += pids.size();
  (void)self;
  return term::map({
      {A("replicas"), term::list(std::move(in_contact))},
      {A("peers"), term::list(std::move(peers))},
      {A("sync_ms"), term(cfg_.sync_ms)},
      {A("names"), term::list(s.names())},
      {A("unacked"), term::map(std::move(unacked))},
      {A("bytes_out"), term::map(std::move(bytes_out))},
      {A("buffered"), term(s.buffered())},
      {A("node"), term(self_node_)},
      {A("writer"), term(writer_)},
      {A("incarnation"), term(incarnation_)},
      {A("subscriptions"), term(subs)},
      {A("data_dir"), dir_ ? term::binary(dir_->dir().string()) : A("nil")},
      {A("clock"), term::tuple({term(s.clock().last().physical_ms), term(s.clock().last().logical)})},
  });
}

// ---- peers -------------------------------------------------------------------------------------------------------

bool replica::accept_unlisted(atom n) const {
  if (n == self_node_) return false;
  if (listed(n) || store_->has_peer(n)) return true;
  auto up = d_.nodes(true, true);
  return std::find(up.begin(), up.end(), n) != up.end();
}

void replica::send_hello(process& self, atom to) {
  self.send_noconnect(term::tuple({term(crdt_name), term(to)}),
                      term::tuple({A("crdt_hello"), term(self_node_), term(incarnation_)}));
}

void replica::node_up(process& self, atom n) {
  if (!listed(n) && !store_->has_peer(n)) return;
  send_hello(self, n);
  store_->peer_reconnected(n);  // what went over the old connection may be lost: resend what is unacked now
}

void replica::node_down(atom n) {
  contact_.erase(n);
  // A replica we do not list is forgotten (if it comes back it starts with the full state); a listed one keeps its
  // place, so that after a partition it gets exactly what it has not acked.
  if (!listed(n) && store_->has_peer(n)) {
    store_->remove_peer(n);
    log::info("crdt: replica {} (not in --crdt) went away", n.text());
  }
}

void replica::handle_hello(process& self, atom from, std::uint64_t inc) {
  if (!accept_unlisted(from)) return;
  if (!store_->has_peer(from)) {
    store_->add_peer(from);
    log::info("crdt: replica {} (not in --crdt) joined; it gets the full state", from.text());
    send_hello(self, from);  // it lists us; we did not list it, so we did not greet it on nodeup
  } else if (auto it = incarnations_.find(from); it != incarnations_.end() && it->second != inc) {
    store_->reset_peer(from);
    log::info("crdt: replica {} restarted; it gets the full state", from.text());
  } else {
    store_->peer_reconnected(from);
  }
  incarnations_[from] = inc;
  contact_.insert(from);
}

void replica::handle_peer_message(process& self, const term& m) {
  auto in = decode_message(m);
  if (!in) {
    stats_.malformed.fetch_add(1, std::memory_order_relaxed);
    const auto now = clock::now();
    if (now - malformed_logged_ > std::chrono::seconds(10)) {
      malformed_logged_ = now;
      log::warning("crdt: dropped a malformed replica message: {}", show(m));
    }
    return;
  }
  if (auto* a = std::get_if<inbound_ack>(&*in)) {
    store_->handle_ack(a->from, a->seq);
    return;
  }
  auto& s = std::get<inbound_sync>(*in);
  if (!accept_unlisted(s.from)) return;
  if (!store_->has_peer(s.from)) {
    store_->add_peer(s.from);
    log::info("crdt: replica {} (not in --crdt) sent deltas; it gets the full state", s.from.text());
  }
  contact_.insert(s.from);
  stats_.syncs_received.fetch_add(1, std::memory_order_relaxed);
  auto rep = store_->handle_sync(s.from, s.msg, now_ms());
  self.send_noconnect(term::tuple({term(crdt_name), term(s.from)}), encode_ack(self_node_, rep.ack.seq));
  stats_.acks_sent.fetch_add(1, std::memory_order_relaxed);
  if (rep.changed) stats_.merges_changed.fetch_add(1, std::memory_order_relaxed);
  for (const auto& name : rep.changed_names) changed(name);
  for (const auto& c : rep.conflicts) {
    stats_.conflicts.fetch_add(1, std::memory_order_relaxed);
    log::warning("crdt: {} is a {} here and a {} on {}: the {} is kept everywhere{}", show(c.name), type_atom(c.ours),
                 type_atom(c.theirs), s.from.text(), type_atom(c.replaced ? c.theirs : c.ours),
                 c.replaced ? " (this replica's writes to it are dropped)" : "");
  }
  if (rep.far_ahead) {
    stats_.far_ahead.fetch_add(1, std::memory_order_relaxed);
    const auto now = clock::now();
    auto& last = far_ahead_logged_[s.from];
    if (now - last > std::chrono::minutes(1)) {
      last = now;
      log::warning("crdt: a timestamp from {} (written by {}) is {} ms ahead of this node's clock (more than {} ms): "
                   "merged, but not taken into this node's clock; check the clocks",
                   s.from.text(), rep.far_ahead->node.text(), rep.ahead_ms, cfg_.max_clock_offset_ms);
    }
  }
}

void replica::keep_connected(process& self) {
  auto up = d_.nodes(true, true);
  for (atom n : listed_) {
    if (std::find(up.begin(), up.end(), n) != up.end()) continue;
    // The sends are noconnect: connections come from here, off the process.
    asio::co_spawn(self.node().get_executor(), [&d = d_, n]() -> asio::awaitable<void> { co_await d.connect(n); },
                   asio::detached);
  }
}

// ---- the sync round ----------------------------------------------------------------------------------------------

void replica::changed(const term& name) {
  dirty_ = true;
  if (subscribers_.contains(name)) changed_.insert(name);
}

void replica::tick(process& self) {
  ++ticks_;
  store_->seal();
  if (dir_) {
    // Nothing leaves before the disk has it: the sends go once this round's write is done (on_persisted).
    if (!persist_in_flight_ && dirty_) start_persist(self);
    else if (!persist_in_flight_) send_syncs(self);
  } else {
    send_syncs(self);
  }
  notify(self);
  if (ticks_ % static_cast<std::uint64_t>(std::max(1, 1000 / std::max(1, cfg_.sync_ms))) == 0) keep_connected(self);
  publish_stats();
  if (!stopping_) {
    std::lock_guard lk(stop_mu_);
    if (stop_done_) {
      stopping_ = true;
      maybe_finish_stop(self);
    }
  }
}

void replica::start_persist(process& self) {
  (void)self;
  auto bytes = encode_snapshot(snapshot{self_node_, writer_, store_->state()});
  stats_.persisted_bytes.store(bytes.size(), std::memory_order_relaxed);
  dirty_ = false;
  persist_in_flight_ = true;
  writer_thread_->write(std::move(bytes), ++persist_generation_);
}

void replica::on_persisted(process& self, std::uint64_t generation, const term& outcome) {
  if (generation != persist_generation_) return;
  persist_in_flight_ = false;
  if (outcome.is_atom(atom("ok"))) {
    stats_.persists.fetch_add(1, std::memory_order_relaxed);
    send_syncs(self);
  } else {
    // Held back: what the disk does not have must not reach a peer. Tried again on the next round.
    dirty_ = true;
    stats_.persist_failures.fetch_add(1, std::memory_order_relaxed);
    const auto now = clock::now();
    if (now - persist_error_logged_ > std::chrono::seconds(10)) {
      persist_error_logged_ = now;
      std::string why = show(outcome);
      if (outcome.is_tuple(2) && outcome.element(1).is_binary()) {
        auto b = outcome.element(1).bytes();
        why.assign(b.begin(), b.end());
      }
      log::error("crdt: cannot write the state ({}); nothing is sent to the other replicas until it can", why);
    }
  }
  maybe_finish_stop(self);
}

void replica::maybe_finish_stop(process& self) {
  if (!stopping_ || persist_in_flight_) return;
  store_->seal();
  if (dir_ && dirty_) return start_persist(self);  // on_persisted comes back here
  if (!dir_) send_syncs(self);
  std::lock_guard lk(stop_mu_);
  if (stop_done_) {
    stop_done_->set(true);
    stop_done_.reset();
  }
}

void replica::send_syncs(process& self) {
  const std::int64_t now = now_ms();
  std::map<atom, std::size_t> queued;
  for (const auto& c : d_.connections()) queued[c.node] = c.stats.queued_bytes;
  const std::size_t limit = d_.config().outbound_limit;
  for (atom p : store_->peers()) {
    auto q = queued.find(p);
    if (q == queued.end()) continue;  // not connected: nothing would arrive
    if (q->second >= limit) {         // busy (a frozen or slow peer): its turn comes when its queue drains
      stats_.busy_skips.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    auto out = store_->sync_to(p, now);
    if (!out) continue;
    stats_.syncs_sent.fetch_add(1, std::memory_order_relaxed);
    if (out->msg.full_state) stats_.full_states_sent.fetch_add(1, std::memory_order_relaxed);
    self.send_noconnect(term::tuple({term(crdt_name), term(p)}), encode_sync(self_node_, out->msg));
  }
}

// ---- subscriptions -----------------------------------------------------------------------------------------------

void replica::subscribe(process& self, const term& pid, const term& name) {
  auto it = by_pid_.find(pid);
  if (it == by_pid_.end()) it = by_pid_.emplace(pid, subscriber{self.monitor(pid), {}}).first;
  it->second.names.insert(name);
  subscribers_[name].insert(pid);
}

void replica::unsubscribe(process& self, const term& pid, const term& name) {
  auto it = by_pid_.find(pid);
  if (it == by_pid_.end()) return;
  it->second.names.erase(name);
  if (auto s = subscribers_.find(name); s != subscribers_.end()) {
    s->second.erase(pid);
    if (s->second.empty()) {
      subscribers_.erase(s);
      last_notified_.erase(name);
      changed_.erase(name);
    }
  }
  if (it->second.names.empty()) {
    self.demonitor(it->second.monitor, true);
    by_pid_.erase(it);
  }
}

void replica::subscriber_down(const term& pid) {
  auto it = by_pid_.find(pid);
  if (it == by_pid_.end()) return;
  for (const auto& name : it->second.names) {
    auto s = subscribers_.find(name);
    if (s == subscribers_.end()) continue;
    s->second.erase(pid);
    if (s->second.empty()) {
      subscribers_.erase(s);
      last_notified_.erase(name);
      changed_.erase(name);
    }
  }
  by_pid_.erase(it);
}

// At most one {crdt_changed, Name, Value} per name and round, and only when the value is not what was sent last.
void replica::notify(process& self) {
  for (const auto& name : changed_) {
    auto subs = subscribers_.find(name);
    if (subs == subscribers_.end()) continue;
    auto v = store_->value(name);
    if (!v) continue;
    auto [last, fresh] = last_notified_.try_emplace(name, *v);
    if (!fresh) {
      if (etf::compare_exact(last->second, *v) == 0) continue;
      last->second = *v;
    }
    const term msg = term::tuple({A("crdt_changed"), name, *v});
    for (const auto& pid : subs->second) {
      self.send_noconnect(pid, msg);
      stats_.notifications.fetch_add(1, std::memory_order_relaxed);
    }
  }
  changed_.clear();
}

void replica::publish_stats() {
  stats_.names.store(store_->state().size(), std::memory_order_relaxed);
  stats_.peers.store(store_->peers().size(), std::memory_order_relaxed);
  stats_.in_contact.store(contact_.size(), std::memory_order_relaxed);
  stats_.buffered.store(store_->buffered(), std::memory_order_relaxed);
  stats_.subscribers.store(by_pid_.size(), std::memory_order_relaxed);
}

}  // namespace cnode::crdt
