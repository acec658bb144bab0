#include "crdt/store.hpp"

#include <algorithm>

namespace cnode::crdt {

namespace {

// d joined into `into`: for a delta of one key (key given) only that key's entries are visited.
template <class T>
void apply(T& into, const T& d, const term* key) {
  if constexpr (requires { into.kernel; }) {
    if (key) {
      into.kernel.join_key(d.kernel, *key);
      return;
    }
  }
  into.join(d);
}

// o joined into g[name]; of two types for one name the winner's object is kept (type_wins), so that an interval
// still holding the loser's deltas from before a conflict carries the winner's.
void merge_into(delta_group& g, const term& name, const object& o) {
  auto [slot, fresh] = g.try_emplace(name, o);
  if (fresh) return;
  if (slot->second.index() == o.index()) join(slot->second, o);
  else if (type_wins(type_of(o), type_of(slot->second))) slot->second = o;
}

std::size_t weight(const delta_group& g) {
  std::size_t n = 0;
  for (const auto& [name, o] : g) n += 1 + crdt::weight(o);
  return n;
}

void newest_timestamp(const object& o, std::optional<hlc_timestamp>& best) {
  auto take = [&](const hlc_timestamp& ts) {
    if (!best || ts > *best) best = ts;
  };
  if (auto* r = std::get_if<lww_register>(&o)) {
    if (r->cell) take(r->cell->ts);
  } else if (auto* m = std::get_if<aw_lww_map>(&o)) {
    for (const auto& [k, ds] : m->kernel.entries)
      for (const auto& [dt, c] : ds) take(c.ts);
  }
}

}  // namespace

replica_store::replica_store(replica_id self, store_options opts)
    : self_(self), writer_(opts.writer.value_or(self)), opts_(opts), clock_(writer_, opts.max_clock_offset_ms) {}

template <class T, class F>
result<delta_group> replica_store::local(const term& name, const term* key, F&& mutate) {
  auto it = objects_.find(name);
  if (it == objects_.end()) it = objects_.emplace(name, T{}).first;
  T* obj = std::get_if<T>(&it->second);
  if (!obj) return failure{make_error_code(error::wrong_type), type_of(it->second)};
  T d = mutate(*obj);  // joined into *obj already
  // Also with no peer: sealing it moves the counter, so a peer that comes later is behind and gets the state.
  auto [slot, fresh] = open_.try_emplace(name, d);
  if (!fresh) apply(std::get<T>(slot->second), d, key);
  delta_group g;
  g.emplace(name, std::move(d));
  return g;
}

result<delta_group> replica_store::counter_add(const term& name, std::int64_t amount) {
  return local<pn_counter>(name, nullptr, [&](pn_counter& c) {
    auto d = c.add(writer_, amount);
    c.join(d);
    return d;
  });
}
result<delta_group> replica_store::set_add(const term& name, const term& element) {
  return local<aw_or_set>(name, &element, [&](aw_or_set& s) { return aw_or_set{s.kernel.write_here(writer_, element, unit{})}; });
}
result<delta_group> replica_store::set_remove(const term& name, const term& element) {
  return local<aw_or_set>(name, &element, [&](aw_or_set& s) { return aw_or_set{s.kernel.remove_here(element)}; });
}
result<delta_group> replica_store::register_set(const term& name, const term& v, std::int64_t now_ms) {
  auto it = objects_.find(name);
  if (it != objects_.end() && !std::holds_alternative<lww_register>(it->second))
    return failure{make_error_code(error::wrong_type), type_of(it->second)};
  const hlc_timestamp ts = clock_.now(now_ms);
  return local<lww_register>(name, nullptr, [&](lww_register& r) {
    auto d = r.set(v, ts);
    r.join(d);
    return d;
  });
}
result<delta_group> replica_store::map_put(const term& name, const term& key, const term& v, std::int64_t now_ms) {
  auto it = objects_.find(name);
  if (it != objects_.end() && !std::holds_alternative<aw_lww_map>(it->second))
    return failure{make_error_code(error::wrong_type), type_of(it->second)};
  const hlc_timestamp ts = clock_.now(now_ms);
  return local<aw_lww_map>(name, &key, [&](aw_lww_map& m) { return aw_lww_map{m.kernel.write_here(writer_, key, lww_cell{ts, v})}; });
}
result<delta_group> replica_store::map_remove(const term& name, const term& key) {
  return local<aw_lww_map>(name, &key, [&](aw_lww_map& m) { return aw_lww_map{m.kernel.remove_here(key)}; });
}
result<delta_group> replica_store::clear(const term& name) {
  auto it = objects_.find(name);
  if (it == objects_.end()) return error::not_found;
  if (std::holds_alternative<aw_or_set>(it->second))
    return local<aw_or_set>(name, nullptr, [](aw_or_set& s) {
      auto d = s.clear();
      s.join(d);
      return d;
    });
  if (std::holds_alternative<aw_lww_map>(it->second))
    return local<aw_lww_map>(name, nullptr, [](aw_lww_map& m) {
      auto d = m.clear();
      m.join(d);
      return d;
    });
  return failure{make_error_code(error::wrong_type), type_of(it->second)};
}

result<term> replica_store::value(const term& name) const {
  auto it = objects_.find(name);
  if (it == objects_.end()) return error::not_found;
  return crdt::value(it->second);
}

const object* replica_store::find(const term& name) const {
  auto it = objects_.find(name);
  return it == objects_.end() ? nullptr : &it->second;
}

std::vector<term> replica_store::names() const {
  std::vector<term> v;
  v.reserve(objects_.size());
  for (const auto& [k, o] : objects_) v.push_back(k);
  return v;
}

void replica_store::restore(delta_group state, std::int64_t now_ms) {
  std::optional<hlc_timestamp> newest;
  for (const auto& [name, o] : state) newest_timestamp(o, newest);
  if (newest) clock_.update(*newest, now_ms);
  objects_ = std::move(state);
  open_.clear();
  deltas_.clear();
  buffered_weight_ = 0;
  // No interval is buffered and every peer is at 0 < c: the next sync sends them the full state.
  counter_ = objects_.empty() ? 0 : 1;
  for (auto& [p, a] : acked_) a = 0;
  sent_.clear();
}

void replica_store::seal() {
  if (open_.empty()) return;
  delta_group d = std::move(open_);
  open_.clear();
  buffer(std::move(d), self_);
}

void replica_store::buffer(delta_group d, replica_id origin) {
  const std::size_t w = weight(d);
  buffered_weight_ += w;
  deltas_.emplace(counter_++, interval{std::move(d), origin, w});
  // Past the bound, or once the buffer outweighs the state several times (then the full state is the cheaper
  // message for whoever still needs the oldest intervals), the oldest go.
  std::size_t state_weight = 0;
  for (const auto& [name, o] : objects_) state_weight += 1 + crdt::weight(o);
  while (deltas_.size() > 1 &&
         (deltas_.size() > opts_.max_buffered_deltas || buffered_weight_ > 4 * state_weight + 1024)) {
    buffered_weight_ -= deltas_.begin()->second.weight;
    deltas_.erase(deltas_.begin());
  }
  if (deltas_.size() > opts_.max_buffered_deltas) {  // max_buffered_deltas == 0
    buffered_weight_ = 0;
    deltas_.clear();
  }
  collect();
}

// Drops the intervals every peer has acked; with no peers nothing needs keeping (a new peer gets the full state).
void replica_store::collect() {
  std::uint64_t low = counter_;
  for (const auto& [p, a] : acked_) low = std::min(low, a);
  auto end = deltas_.lower_bound(low);
  for (auto it = deltas_.begin(); it != end; ++it) buffered_weight_ -= it->second.weight;
  deltas_.erase(deltas_.begin(), end);
}

void replica_store::add_peer(replica_id peer) {
  if (peer == self_) return;
  acked_.emplace(peer, 0);
}

void replica_store::remove_peer(replica_id peer) {
  acked_.erase(peer);
  sent_.erase(peer);
  collect();
}

void replica_store::reset_peer(replica_id peer) {
  auto it = acked_.find(peer);
  if (it == acked_.end()) return;
  it->second = 0;
  sent_.erase(peer);
}

void replica_store::peer_reconnected(replica_id peer) { sent_.erase(peer); }

std::vector<replica_id> replica_store::peers() const {
  std::vector<replica_id> v;
  for (const auto& [p, a] : acked_) v.push_back(p);
  return v;
}

std::uint64_t replica_store::acked(replica_id peer) const {
  auto it = acked_.find(peer);
  return it == acked_.end() ? 0 : it->second;
}

std::uint64_t replica_store::unacked(replica_id peer) const {
  auto it = acked_.find(peer);
  if (it == acked_.end()) return 0;
  return counter_ - it->second + (open_.empty() ? 0 : 1);
}

bool replica_store::idle() const {
  if (!open_.empty()) return false;
  for (const auto& [p, a] : acked_)
    if (a < counter_) return false;
  return true;
}

std::optional<sync_out> replica_store::sync_to(replica_id peer, std::int64_t now_ms) {
  auto it = acked_.find(peer);
  if (it == acked_.end() || it->second >= counter_) return std::nullopt;
  auto& sent = sent_[peer];
  if (opts_.retransmit_ms > 0 && sent.seq > it->second && now_ms - sent.at < opts_.retransmit_ms)
    return std::nullopt;  // the last message is unacked and young: its ack is on its way
  const std::uint64_t from = it->second;
  sync_out out{peer, {}};
  out.msg.seq = counter_;
  if (!deltas_.empty() && deltas_.begin()->first <= from) {
    for (auto d = deltas_.lower_bound(from); d != deltas_.end(); ++d) {
      if (d->second.origin == peer) continue;  // it has those: it sent them
      for (const auto& [name, obj] : d->second.group) merge_into(out.msg.group, name, obj);
    }
    if (out.msg.group.empty()) {
      // All that it lacks came from it: nothing to send, and nothing it needs to ack.
      it->second = counter_;
      sent_.erase(peer);
      collect();
      return std::nullopt;
    }
  } else {
    out.msg.full_state = true;
    out.msg.group = objects_;
  }
  sent = {counter_, now_ms};
  return out;
}

std::vector<sync_out> replica_store::sync(std::int64_t now_ms) {
  seal();
  std::vector<sync_out> v;
  for (const auto& p : peers())
    if (auto s = sync_to(p, now_ms)) v.push_back(std::move(*s));
  return v;
}

merge_report replica_store::handle_sync(replica_id from, const sync_message& msg, std::int64_t now_ms) {
  merge_report rep;
  rep.ack = {from, msg.seq};
  delta_group fresh, ours_again;
  std::optional<hlc_timestamp> newest;
  for (const auto& [name, obj] : msg.group) {
    newest_timestamp(obj, newest);
    auto it = objects_.find(name);
    if (it == objects_.end()) {
      objects_.emplace(name, obj);
      fresh.emplace(name, obj);
      rep.changed_names.push_back(name);
      continue;
    }
    if (it->second.index() != obj.index()) {
      const crdt_type ours = type_of(it->second), theirs = type_of(obj);
      if (type_wins(theirs, ours)) {
        // Ours loses everywhere: drop it (and our pending deltas of it) for theirs.
        rep.conflicts.push_back({name, ours, theirs, true});
        it->second = obj;
        open_.erase(name);
        fresh.emplace(name, obj);
        rep.changed_names.push_back(name);
      } else {
        // Theirs loses: skipped here, and our whole object goes out again so that they can replace theirs with
        // all of it (what they acked of it before was skipped by them).
        rep.conflicts.push_back({name, ours, theirs, false});
        ours_again.emplace(name, it->second);
      }
      continue;
    }
    if (join_changed(it->second, obj)) {
      // What goes on to the other peers is the received delta: joining it is what changed our state.
      fresh.emplace(name, obj);
      rep.changed_names.push_back(name);
    }
  }
  if (newest) {
    auto u = clock_.update(*newest, now_ms);
    if (u.far_ahead) {
      rep.far_ahead = newest;
      rep.ahead_ms = u.ahead_ms;
    }
  }
  if (!fresh.empty()) {
    rep.changed = true;
    buffer(std::move(fresh), from);
  }
  if (!ours_again.empty()) buffer(std::move(ours_again), self_);
  return rep;
}

void replica_store::handle_ack(replica_id from, std::uint64_t seq) {
  auto it = acked_.find(from);
  if (it == acked_.end()) return;
  it->second = std::max(it->second, std::min(seq, counter_));
  collect();
}

}  // namespace cnode::crdt
