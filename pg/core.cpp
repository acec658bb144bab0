#include "pg/core.hpp"

#include <algorithm>
#include <tuple>

namespace cnode::pg {

namespace {

struct atoms {
  atom discover{"discover"}, sync{"sync"}, join{"join"}, leave{"leave"}, down{"DOWN"}, process{"process"},
      nodeup{"nodeup"}, nodedown{"nodedown"}, join_local{"join_local"}, leave_local{"leave_local"},
      monitor{"monitor"}, demonitor{"demonitor"}, ok{"ok"}, not_joined{"not_joined"}, gen_cast{"$gen_cast"},
      badarg{"badarg"}, update{"update"}, local_data{"local_data"};
};
const atoms& at() {
  static const atoms a;
  return a;
}

// Removes the first occurrence in pg's list order, i.e. the last one in our reversed storage.
bool delete_one(std::vector<term>& rev, const term& x) {
  for (auto it = rev.rbegin(); it != rev.rend(); ++it) {
    if (*it == x) {
      rev.erase(std::next(it).base());
      return true;
    }
  }
  return false;
}

// All -- Pids
void subtract(std::vector<term>& rev, const std::vector<term>& pids) {
  for (const auto& p : pids) delete_one(rev, p);
}

// Pids ++ All (pids in list order).
void prepend(std::vector<term>& rev, const std::vector<term>& pids) {
  rev.insert(rev.end(), pids.rbegin(), pids.rend());
}

bool same_list(const std::vector<term>& rev, const std::vector<term>& list_order) {
  return rev.size() == list_order.size() && std::equal(rev.rbegin(), rev.rend(), list_order.begin());
}

// Erlang's A -- B, both in list order.
std::vector<term> list_minus(std::vector<term> a, const std::vector<term>& b) {
  for (const auto& x : b) {
    auto it = std::find(a.begin(), a.end(), x);
    if (it != a.end()) a.erase(it);
  }
  return a;
}

// The version a discover's third element asks for: pg 26+ treat any term there as "a future version"; we speak the
// newest we know that is not newer than the peer's.
int version_of(const term& v) {
  if (v.is_small() && v.small() >= protocol_version) return protocol_version;
  return 0;
}

}  // namespace

term pids_to_list(const std::vector<term>& reversed) {
  return term::list(std::vector<term>(reversed.rbegin(), reversed.rend()));
}

scope_core::scope_core(atom scope, term self_pid, scope_io& io)
    : scope_(scope), self_(std::move(self_pid)), self_node_(self_.node_of()), io_(io) {}

bool scope_core::is_local_pid(const term& t) const { return t.is_pid() && t.node_of() == self_node_; }

bool scope_core::pid_or_pids(const term& t, pid_vec& out) {
  out.clear();
  if (t.is_pid()) {
    out.push_back(t);
    return true;
  }
  term tail;
  if (!t.is_list() || !t.list_to_vector(out, &tail) || !tail.is_nil()) return false;
  return std::all_of(out.begin(), out.end(), [](const term& p) { return p.is_pid(); });
}

// Version 0 to every node: an OTP 25 scope crashes on {discover, Pid, 1}; an OTP 29 one answers version 0 with its
// own {discover, Pid, 1}, which moves it to version 1 here.
void scope_core::init(const std::vector<atom>& nodes) {
  for (atom n : nodes) {
    if (n == self_node_) continue;
    io_.send(term::tuple({term(scope_), term(n)}), discover_msg(0), true);
  }
}

term scope_core::discover_msg(int version) const {
  if (version == 0) return term::tuple({term(at().discover), self_});
  return term::tuple({term(at().discover), self_, term(version)});
}

// ---- calls ----

std::optional<term> scope_core::handle_call(const term& r, const term& from) {
  pid_vec pids;
  if ((r.is_tuple(3) && r.element(0).is_atom(at().join_local)) ||
      (r.is_tuple(3) && r.element(0).is_atom(at().leave_local))) {
    // pg:join/3 checks locality in the caller (ensure_local, pg.erl:462); a remote caller may not have.
    if (!pid_or_pids(r.element(2), pids) ||
        !std::all_of(pids.begin(), pids.end(), [&](const term& p) { return is_local_pid(p); }))
      return term(at().badarg);
    return r.element(0).is_atom(at().join_local) ? join_local(r.element(1), r.element(2))
                                                 : leave_local(r.element(1), r.element(2));
  }
  if (r.is_atom(at().monitor)) {  // pg.erl:305
    std::vector<std::pair<term, term>> kvs;
    kvs.reserve(table_.size());
    for (const auto& [g, row] : table_) kvs.emplace_back(g, pids_to_list(row.all));
    term mref = io_.monitor(from);
    scope_monitors_[mref] = from;
    return term::tuple({mref, term::map(std::move(kvs))});
  }
  if (r.is_tuple(2) && r.element(0).is_atom(at().monitor)) {  // pg.erl:312
    const term& group = r.element(1);
    term members = get_members(group);
    term mref = io_.monitor(from);
    group_monitors_[mref] = {from, group};
    monitored_groups_[group].emplace_back(from, mref);
    return term::tuple({mref, members});
  }
  if (r.is_tuple(2) && r.element(0).is_atom(at().demonitor)) {  // pg.erl:320
    const term& ref = r.element(1);
    if (scope_monitors_.erase(ref)) {
      io_.demonitor(ref);
      return term(at().ok);
    }
    if (group_monitors_.contains(ref)) {
      io_.demonitor(ref);
      drop_monitor(ref);
      return term(at().ok);
    }
    return term(false);
  }
  return std::nullopt;
}

term scope_core::join_local(const term& group, const term& pid_or_pids_term) {
  pid_vec pids;
  if (!pid_or_pids(pid_or_pids_term, pids)) return term(at().badarg);
  for (const auto& p : pids) {  // join_local/3, pg.erl:514: one monitor per member, a group entry per join
    auto it = local_.find(p);
    if (it != local_.end()) {
      it->second.groups.push_back(group);
    } else {
      term mref = io_.monitor(p);
      local_.emplace(p, local_entry{std::move(mref), {group}});
    }
  }
  join_update(group, pids, true);
  broadcast(term::tuple({term(at().join), self_, group, pid_or_pids_term}),
            term::tuple({term(at().update), self_,
                         term::list({term::tuple({group, term::list(std::vector<term>(pids)), term::nil()})})}));
  return term(at().ok);
}

term scope_core::leave_local(const term& group, const term& pid_or_pids_term) {
  pid_vec pids;
  if (!pid_or_pids(pid_or_pids_term, pids)) return term(at().badarg);
  bool changed = false;
  for (const auto& p : pids) {  // leave_local/3, pg.erl:563
    auto it = local_.find(p);
    if (it == local_.end()) continue;
    auto& gs = it->second.groups;
    if (gs.size() == 1 && gs.front() == group) {
      io_.demonitor(it->second.mref);
      local_.erase(it);
      changed = true;
    } else if (delete_one(gs, group)) {
      changed = true;
    }
  }
  if (!changed) return term(at().not_joined);
  leave_local_update(group, pids);
  // OTP 29's leave/3 also sends every pid it was given, joined or not (pg.erl OTP 29, leave/3).
  broadcast(term::tuple({term(at().leave), self_, pid_or_pids_term, term::list({group})}),
            term::tuple({term(at().update), self_,
                         term::list({term::tuple({group, term::nil(), term::list(std::vector<term>(pids))})})}));
  return term(at().ok);
}

// ---- casts and messages ----

bool scope_core::handle_cast(const term& r) {
  if (r.is_tuple(3) && r.element(0).is_atom(at().sync) && r.element(1).is_pid() && r.element(2).is_list()) {
    handle_sync(r.element(1), r.element(2));
    return true;
  }
  // data_publisher's handle_cast is its handle_info: local_data comes as a cast (the discover answer) or plain.
  if (r.is_tuple(4) && r.element(0).is_atom(at().local_data)) return handle_info(r);
  return false;
}

bool scope_core::handle_info(const term& m) {
  if (!m.is_tuple() || m.tuple_size() < 2 || !m.element(0).is_atom()) return false;
  const atom tag = m.element(0).atom_value();
  pid_vec pids;
  if (tag == at().discover && m.is_tuple(2) && m.element(1).is_pid()) {
    handle_discover(m.element(1), 0);
    return true;
  }
  if (tag == at().discover && m.is_tuple(3) && m.element(1).is_pid()) {  // OTP 29 (pg 26+ accept it)
    handle_discover(m.element(1), version_of(m.element(2)));
    return true;
  }
  if (tag == at().local_data && m.is_tuple(4) && m.element(1).is_pid() && m.element(3).is_map()) {
    handle_local_data(m.element(1), m.element(3));
    return true;
  }
  if (tag == at().update && m.is_tuple(3) && m.element(1).is_pid() && m.element(2).is_list()) {
    handle_update(m.element(1), m.element(2));
    return true;
  }
  if (tag == at().join && m.is_tuple(4) && m.element(1).is_pid() && pid_or_pids(m.element(3), pids)) {
    handle_join(m.element(1), m.element(2), m.element(3), pids);
    return true;
  }
  if (tag == at().leave && m.is_tuple(4) && m.element(1).is_pid() && pid_or_pids(m.element(2), pids)) {
    std::vector<term> groups;
    term tail;
    if (!m.element(3).list_to_vector(groups, &tail) || !tail.is_nil()) return false;
    handle_leave(m.element(1), m.element(2), pids, groups);
    return true;
  }
  if (tag == at().down && m.is_tuple(5) && m.element(2).is_atom(at().process)) {
    handle_down(m.element(1), m.element(3));
    return true;
  }
  if (tag == at().nodeup && m.element(1).is_atom()) {  // pg.erl:438: discover whether the node runs this scope
    if (m.element(1).atom_value() != self_node_)
      io_.send(term::tuple({term(scope_), m.element(1)}), discover_msg(0), false);
    return true;
  }
  if (tag == at().nodedown) return true;  // pg.erl:434: the 'DOWN' of the peer's scope does the work
  return false;
}

// pg.erl:398 (OTP 25); data_publisher.erl handle_info({discover, ...}) (OTP 29). Our answer carries the version we
// speak to the peer, which an OTP 29 scope keeps for us (it stores the Vsn of our local_data).
void scope_core::handle_discover(const term& peer, int version) {
  term answer = version == 0 ? term::tuple({term(at().sync), self_, all_local_pids()})
                             : term::tuple({term(at().local_data), self_, term(version), local_data()});
  io_.send(peer, term::tuple({term(at().gen_cast), std::move(answer)}), false);
  auto it = remote_.find(peer);
  if (it != remote_.end()) {
    it->second.version = version;
    return;
  }
  term mref = io_.monitor(peer);
  io_.send(peer, discover_msg(version), true);
  remote_.emplace(peer, peer_entry{std::move(mref), {}, version});
}

void scope_core::handle_sync(const term& peer, const term& groups_term) {  // handle_sync/6, pg.erl:480
  std::vector<term> entries;
  term tail;
  if (!groups_term.list_to_vector(entries, &tail) || !tail.is_nil()) return;
  std::vector<std::pair<term, pid_vec>> groups;
  groups.reserve(entries.size());
  for (const auto& e : entries) {
    pid_vec pids;
    if (!e.is_tuple(2) || !e.element(1).is_list() || !pid_or_pids(e.element(1), pids)) return;  // malformed: drop
    groups.emplace_back(e.element(0), std::move(pids));
  }
  auto it = remote_.find(peer);
  if (it == remote_.end()) it = remote_.emplace(peer, peer_entry{io_.monitor(peer), {}}).first;
  auto old = std::move(it->second.groups);
  std::unordered_map<term, pid_vec> fresh;
  fresh.reserve(groups.size());
  for (auto& [group, pids] : groups) {  // sync_groups/5, pg.erl:495
    auto o = old.find(group);
    if (o == old.end()) {
      join_update(group, pids, false);
    } else {
      if (!same_list(o->second, pids)) {
        // AllNewPids = Pids ++ AllOldPids -- OldPids, without notifications (as OTP 25 does)
        auto& row = table_[group];
        subtract(row.all, std::vector<term>(o->second.rbegin(), o->second.rend()));
        prepend(row.all, pids);
      }
      old.erase(o);
    }
    pid_vec rev(pids.rbegin(), pids.rend());
    fresh[group] = std::move(rev);
  }
  for (auto& [group, rev] : old) leave_remote_update(pid_vec(rev.rbegin(), rev.rend()), {group});
  it->second.groups = std::move(fresh);
}

// data_publisher.erl handle_info({local_data, ...}) with pg's data_diff/2: the peer's whole local data replaces
// what we had of it, as the adds and removes between the two. Not followed by a discover (data_publisher sends
// none either). A peer that sends local_data speaks version 1.
void scope_core::handle_local_data(const term& peer, const term& data) {
  std::vector<std::pair<term, pid_vec>> groups;  // pids in list order
  groups.reserve(data.map_size());
  auto keys = data.map_keys();
  auto values = data.map_values();
  for (std::size_t i = 0; i < keys.size(); ++i) {
    pid_vec pids;
    if (!values[i].is_list() || !pid_or_pids(values[i], pids)) return;  // malformed: drop
    groups.emplace_back(keys[i], std::move(pids));
  }
  auto it = remote_.find(peer);
  if (it == remote_.end()) it = remote_.emplace(peer, peer_entry{io_.monitor(peer), {}, protocol_version}).first;
  it->second.version = protocol_version;
  auto old = std::move(it->second.groups);
  std::unordered_map<term, pid_vec> fresh;
  fresh.reserve(groups.size());
  for (auto& [group, pids] : groups) {
    pid_vec old_pids;
    if (auto o = old.find(group); o != old.end()) {
      old_pids.assign(o->second.rbegin(), o->second.rend());
      old.erase(o);
    }
    pid_vec add = list_minus(pids, old_pids), remove = list_minus(old_pids, pids);
    if (!add.empty() || !remove.empty()) remote_update(group, add, remove);
    if (!pids.empty()) fresh[group] = pid_vec(pids.rbegin(), pids.rend());
  }
  for (auto& [group, rev] : old) remote_update(group, {}, pid_vec(rev.rbegin(), rev.rend()));
  it->second.groups = std::move(fresh);
}

// data_publisher.erl handle_info({update, ...}): [{Group, Add, Remove}] from a known peer; from an unknown one
// (a message racing the peer's 'DOWN', or a node outside the overlay) it is dropped, as OTP 29 does.
void scope_core::handle_update(const term& peer, const term& update) {
  auto it = remote_.find(peer);
  if (it == remote_.end()) return;
  std::vector<term> entries;
  term tail;
  if (!update.list_to_vector(entries, &tail) || !tail.is_nil()) return;
  std::vector<std::tuple<term, pid_vec, pid_vec>> changes;
  changes.reserve(entries.size());
  for (const auto& e : entries) {
    pid_vec add, remove;
    if (!e.is_tuple(3) || !e.element(1).is_list() || !e.element(2).is_list() || !pid_or_pids(e.element(1), add) ||
        !pid_or_pids(e.element(2), remove))
      return;  // malformed: drop the whole update
    changes.emplace_back(e.element(0), std::move(add), std::move(remove));
  }
  auto& map = it->second.groups;
  for (auto& [group, add, remove] : changes) {
    remote_update(group, add, remove);
    auto& rev = map[group];  // update_local_data/2: Add ++ (Pids -- Remove)
    subtract(rev, remove);
    prepend(rev, add);
    if (rev.empty()) map.erase(group);
  }
}

void scope_core::handle_join(const term& peer, const term& group, const term&, const pid_vec& pids) {
  auto it = remote_.find(peer);
  if (it == remote_.end()) return;  // pg.erl:372: a peer outside the overlay, or a join racing its 'DOWN'
  join_update(group, pids, false);
  prepend(it->second.groups[group], pids);
}

void scope_core::handle_leave(const term& peer, const term&, const pid_vec& pids, const std::vector<term>& groups) {
  auto it = remote_.find(peer);
  if (it == remote_.end()) return;  // pg.erl:388
  leave_remote_update(pids, groups);
  auto& map = it->second.groups;
  for (const auto& g : groups) {  // leave_remote/3, pg.erl:637 (a group the peer never joined: skipped)
    auto gi = map.find(g);
    if (gi == map.end()) continue;
    subtract(gi->second, pids);
    if (gi->second.empty()) map.erase(gi);
  }
}

void scope_core::handle_down(const term& mref, const term& pid) {
  if (is_local_pid(pid)) {  // pg.erl:410: a local member exits
    auto it = local_.find(pid);
    if (it == local_.end() || !(it->second.mref == mref)) {
      drop_monitor(mref);
      return;
    }
    std::vector<term> groups(it->second.groups.rbegin(), it->second.groups.rend());  // pg's list order
    local_.erase(it);
    for (const auto& g : groups) leave_local_update(g, {pid});
    std::vector<term> removes;  // translate_message({'DOWN', pg, ...}) of OTP 29: one {G, [], [Pid]} per join
    removes.reserve(groups.size());
    for (const auto& g : groups) removes.push_back(term::tuple({g, term::nil(), term::list({pid})}));
    broadcast(term::tuple({term(at().leave), self_, pid, term::list(std::move(groups))}),
              term::tuple({term(at().update), self_, term::list(std::move(removes))}));
    return;
  }
  auto it = remote_.find(pid);  // pg.erl:423: the peer's scope or its node went down
  if (it == remote_.end() || !(it->second.mref == mref)) {
    drop_monitor(mref);
    return;
  }
  auto groups = std::move(it->second.groups);
  remote_.erase(it);
  for (auto& [g, rev] : groups) leave_remote_update(pid_vec(rev.rbegin(), rev.rend()), {g});
}

// ---- the group table ----

void scope_core::join_update(const term& group, const pid_vec& pids, bool local) {
  auto& row = table_[group];
  prepend(row.all, pids);
  if (local) prepend(row.local, pids);
  notify(at().join, group, pids);
}

void scope_core::leave_local_update(const term& group, const pid_vec& pids) {  // pg.erl:577
  auto it = table_.find(group);
  if (it == table_.end()) return;  // a 'DOWN' still queued while the process left (pg.erl:587)
  subtract(it->second.all, pids);
  if (it->second.all.empty()) table_.erase(it);
  else subtract(it->second.local, pids);
  notify(at().leave, group, pids);
}

void scope_core::leave_remote_update(const pid_vec& pids, const std::vector<term>& groups) {  // pg.erl:612
  for (const auto& g : groups) {
    auto it = table_.find(g);
    if (it == table_.end()) continue;
    subtract(it->second.all, pids);
    if (it->second.all.empty() && it->second.local.empty()) table_.erase(it);
    notify(at().leave, g, pids);
  }
}

void scope_core::remote_update(const term& group, const pid_vec& add, const pid_vec& remove) {
  auto it = table_.find(group);
  if (it != table_.end()) {
    subtract(it->second.all, remove);
    prepend(it->second.all, add);
    if (it->second.all.empty() && it->second.local.empty()) table_.erase(it);
  } else if (!add.empty()) {
    table_[group].all.assign(add.rbegin(), add.rend());
  }
  // notify/5 (pg.erl OTP 29): the join, then the leave, each only when not empty
  if (!add.empty()) notify(at().join, group, add);
  if (!remove.empty()) notify(at().leave, group, remove);
}

void scope_core::notify(atom action, const term& group, const pid_vec& pids) {  // notify_group/5, pg.erl:677
  if (scope_monitors_.empty() && monitored_groups_.empty()) return;
  term list = term::list(std::vector<term>(pids));
  for (const auto& [ref, watcher] : scope_monitors_)
    io_.send(watcher, term::tuple({ref, term(action), group, list}), true);
  auto it = monitored_groups_.find(group);
  if (it == monitored_groups_.end()) return;
  for (const auto& [watcher, ref] : it->second) io_.send(watcher, term::tuple({ref, term(action), group, list}), true);
}

term scope_core::all_local_pids() const {  // pg.erl:649
  std::unordered_map<term, std::vector<term>> by_group;
  for (const auto& [pid, e] : local_)
    for (const auto& g : e.groups) by_group[g].push_back(pid);
  std::vector<term> out;
  out.reserve(by_group.size());
  for (auto& [g, pids] : by_group) out.push_back(term::tuple({g, term::list(std::move(pids))}));
  return term::list(std::move(out));
}

term scope_core::local_data() const {  // data_publisher's local_data: #{Group => Pids}
  std::unordered_map<term, std::vector<term>> by_group;
  for (const auto& [pid, e] : local_)
    for (const auto& g : e.groups) by_group[g].push_back(pid);
  std::vector<std::pair<term, term>> kvs;
  kvs.reserve(by_group.size());
  for (auto& [g, pids] : by_group) kvs.emplace_back(g, term::list(std::move(pids)));
  return term::map(std::move(kvs));
}

void scope_core::broadcast(const term& v0, const term& v1) {  // pg.erl:660: noconnect, never nosuspend
  for (const auto& [peer, e] : remote_) io_.send(peer, e.version == 0 ? v0 : v1, true);
}

void scope_core::drop_monitor(const term& mref) {  // maybe_drop_monitor/2, pg.erl:663
  if (scope_monitors_.erase(mref)) return;
  auto it = group_monitors_.find(mref);
  if (it == group_monitors_.end()) return;
  auto [watcher, group] = it->second;
  group_monitors_.erase(it);
  auto mg = monitored_groups_.find(group);
  if (mg == monitored_groups_.end()) return;
  std::erase_if(mg->second, [&](const auto& wr) { return wr.second == mref; });
  if (mg->second.empty()) monitored_groups_.erase(mg);
}

// ---- reads ----

term scope_core::get_members(const term& group) const {
  auto it = table_.find(group);
  return it == table_.end() ? term::nil() : pids_to_list(it->second.all);
}

term scope_core::get_local_members(const term& group) const {
  auto it = table_.find(group);
  return it == table_.end() ? term::nil() : pids_to_list(it->second.local);
}

term scope_core::which_groups() const {
  std::vector<term> out;
  out.reserve(table_.size());
  for (const auto& [g, row] : table_) out.push_back(g);
  return term::list(std::move(out));
}

term scope_core::which_local_groups() const {
  std::vector<term> out;
  for (const auto& [g, row] : table_)
    if (!row.local.empty()) out.push_back(g);
  return term::list(std::move(out));
}

}  // namespace cnode::pg
