#include "crdt/store.hpp"

#include <algorithm>

namespace cnode::crdt {

replica_store::replica_store(replica_id self, store_options opts)
    : self_(self), opts_(opts), clock_(self, opts.max_clock_offset_ms) {}

template <class T, class F>
result<delta_group> replica_store::local(const term& name, F&& mutate) {
  auto it = objects_.find(name);
  if (it == objects_.end()) it = objects_.emplace(name, T{}).first;
  T* obj = std::get_if<T>(&it->second);
  if (!obj) return failure{make_error_code(error::wrong_type), type_of(it->second)};
  T d = mutate(*obj);
  obj->join(d);
  delta_group g;
  g.emplace(name, std::move(d));
  buffer(g);
  return g;
}

result<delta_group> replica_store::counter_add(const term& name, std::int64_t amount) {
  return local<pn_counter>(name, [&](const pn_counter& c) { return c.add(self_, amount); });
}
result<delta_group> replica_store::set_add(const term& name, const term& element) {
  return local<aw_or_set>(name, [&](const aw_or_set& s) { return s.add(self_, element); });
}
result<delta_group> replica_store::set_remove(const term& name, const term& element) {
  return local<aw_or_set>(name, [&](const aw_or_set& s) { return s.remove(element); });
}
result<delta_group> replica_store::register_set(const term& name, const term& v, std::int64_t now_ms) {
  auto it = objects_.find(name);
  if (it != objects_.end() && !std::holds_alternative<lww_register>(it->second))
    return failure{make_error_code(error::wrong_type), type_of(it->second)};
  const hlc_timestamp ts = clock_.now(now_ms);
  return local<lww_register>(name, [&](const lww_register& r) { return r.set(v, ts); });
}
result<delta_group> replica_store::map_put(const term& name, const term& key, const term& v, std::int64_t now_ms) {
  auto it = objects_.find(name);
  if (it != objects_.end() && !std::holds_alternative<aw_lww_map>(it->second))
    return failure{make_error_code(error::wrong_type), type_of(it->second)};
  const hlc_timestamp ts = clock_.now(now_ms);
  return local<aw_lww_map>(name, [&](const aw_lww_map& m) { return m.put(self_, key, v, ts); });
}
result<delta_group> replica_store::map_remove(const term& name, const term& key) {
  return local<aw_lww_map>(name, [&](const aw_lww_map& m) { return m.remove(key); });
}
result<delta_group> replica_store::clear(const term& name) {
  auto it = objects_.find(name);
  if (it == objects_.end()) return error::not_found;
  if (std::holds_alternative<aw_or_set>(it->second))
    return local<aw_or_set>(name, [](const aw_or_set& s) { return s.clear(); });
  if (std::holds_alternative<aw_lww_map>(it->second))
    return local<aw_lww_map>(name, [](const aw_lww_map& m) { return m.clear(); });
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
  for (const auto& [k, o] : objects_) v.push_back(k);
  return v;
}

void replica_store::buffer(delta_group d) {
  deltas_.emplace(counter_++, std::move(d));
  while (deltas_.size() > opts_.max_buffered_deltas) deltas_.erase(deltas_.begin());
  collect();
}

// Drops the deltas every peer has acked; with no peers nothing needs keeping (a new peer gets the full state).
void replica_store::collect() {
  if (acked_.empty()) {
    deltas_.clear();
    return;
  }
  std::uint64_t low = counter_;
  for (const auto& [p, a] : acked_) low = std::min(low, a);
  deltas_.erase(deltas_.begin(), deltas_.lower_bound(low));
}

void replica_store::add_peer(replica_id peer) {
  if (peer == self_) return;
  acked_.emplace(peer, 0);
}

void replica_store::remove_peer(replica_id peer) {
  acked_.erase(peer);
  collect();
}

std::vector<replica_id> replica_store::peers() const {
  std::vector<replica_id> v;
  for (const auto& [p, a] : acked_) v.push_back(p);
  return v;
}

std::uint64_t replica_store::acked(replica_id peer) const {
  auto it = acked_.find(peer);
  return it == acked_.end() ? 0 : it->second;
}

std::optional<sync_out> replica_store::sync_to(replica_id peer) const {
  auto it = acked_.find(peer);
  if (it == acked_.end() || it->second >= counter_) return std::nullopt;
  const std::uint64_t from = it->second;
  sync_out out{peer, {}};
  out.msg.seq = counter_;
  if (!deltas_.empty() && deltas_.begin()->first <= from) {
    for (auto d = deltas_.lower_bound(from); d != deltas_.end(); ++d)
      for (const auto& [name, obj] : d->second) {
        auto [slot, fresh] = out.msg.group.try_emplace(name, obj);
        if (!fresh) join(slot->second, obj);
      }
  } else {
    out.msg.full_state = true;
    out.msg.group = objects_;
  }
  return out;
}

std::vector<sync_out> replica_store::sync() const {
  std::vector<sync_out> v;
  for (const auto& [p, a] : acked_)
    if (auto s = sync_to(p)) v.push_back(std::move(*s));
  return v;
}

namespace {
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

merge_report replica_store::handle_sync(replica_id from, const sync_message& msg, std::int64_t now_ms) {
  merge_report rep;
  rep.ack = {from, msg.seq};
  delta_group fresh;
  std::optional<hlc_timestamp> newest;
  for (const auto& [name, obj] : msg.group) {
    newest_timestamp(obj, newest);
    auto it = objects_.find(name);
    if (it == objects_.end()) {
      objects_.emplace(name, obj);
      fresh.emplace(name, obj);
      continue;
    }
    if (it->second.index() != obj.index()) {
      rep.conflicts.emplace_back(name, type_of(it->second));
      continue;
    }
    object joined = it->second;
    join(joined, obj);
    if (!(joined == it->second)) {
      it->second = std::move(joined);
      // What goes on to the other peers is the received delta: joining it is what changed our state.
      fresh.emplace(name, obj);
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
    buffer(std::move(fresh));
  }
  return rep;
}

void replica_store::handle_ack(replica_id from, std::uint64_t seq) {
  auto it = acked_.find(from);
  if (it == acked_.end()) return;
  it->second = std::max(it->second, std::min(seq, counter_));
  collect();
}

}  // namespace cnode::crdt
