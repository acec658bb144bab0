#include "registry/core.hpp"

#include <algorithm>
#include <random>

namespace cnode::global {

namespace {

struct atoms {
  atom global{"global"}, insert{"insert"}, del{"delete"}, none{"none"}, badrpc{"badrpc"}, init_connect{"init_connect"},
      init_connect_ack{"init_connect_ack"}, locker{"locker"}, his_the_locker{"his_the_locker"}, cancel{"cancel"},
      no_fun{"no_fun"}, cancel_connect{"cancel_connect"}, lock_is_set{"lock_is_set"}, exchange{"exchange"},
      exchange_ops{"exchange_ops"}, resolved{"resolved"}, unused{"unused"}, new_nodes{"new_nodes"},
      in_sync{"in_sync"}, lock_set{"lock_set"}, add_to_known{"add_to_known"}, remove_from_known{"remove_from_known"},
      register_{"register"}, unregister{"unregister"}, register_ext{"register_ext"}, set_lock{"set_lock"},
      del_lock{"del_lock"}, get_known{"get_known"}, get_synced{"get_synced"}, get_protocol_version{"get_protocol_version"},
      get_names_ext{"get_names_ext"}, yes{"yes"}, ok{"ok"}, lost_connection{"lost_connection"},
      remove_connection{"remove_connection"}, extra_nodedown{"extra_nodedown"}, down{"DOWN"}, process{"process"},
      async_del_name{"async_del_name"}, async_del_lock{"async_del_lock"}, vsn{"vsn"}, lock{"lock"},
      new_nodes_fun{"$new_nodes"};
};
const atoms& at() {
  static const atoms a;
  return a;
}

bool is(const term& t, atom tag, std::size_t arity) { return t.is_tuple(arity) && t.element(0).is_atom(tag); }

std::vector<term> to_vec(const term& l) {
  std::vector<term> v;
  if (!l.list_to_vector(v)) v.clear();
  return v;
}

term atom_list(const std::vector<atom>& v) {
  std::vector<term> out(v.begin(), v.end());
  return term::list(std::move(out));
}

}  // namespace

// ---------------------------------------------------------------- tables

void tables::insert_name(const term& name, const term& pid, const term& method, server_io& io) {
  delete_name(name, io);
  term ref = io.monitor(pid);
  names_[name] = name_entry{name, pid, method, ref};
  ref_name_[ref] = name;
}

void tables::insert_name_ext(const term& name, const term& pid, const term& method, atom reg_node, server_io& io) {
  insert_name(name, pid, method, io);
  ext_[name] = {pid, reg_node};
}

void tables::delete_name(const term& name, server_io& io) {
  auto it = names_.find(name);
  if (it == names_.end()) return;
  io.demonitor(it->second.ref);
  ref_name_.erase(it->second.ref);
  names_.erase(it);
  remove_ext(name);
}

void tables::remove_ext(const term& name) { ext_.erase(name); }

term tables::names_ext() const {
  std::vector<term> v;
  v.reserve(ext_.size());
  for (auto& [name, e] : ext_) v.push_back(term::tuple({name, e.first, term(e.second)}));
  return term::list(std::move(v));
}

void tables::lock_gone(const term& resource, bool down) {
  if (resource.is_atom(at().global)) global_lock_down_ = down;
}

bool tables::lock_still_set(const term& from, const term& lock_id) const {
  auto it = locks_.find(term(at().global));
  if (it == locks_.end()) return !global_lock_down_;
  if (from.is_pid()) {
    for (auto& [p, r] : it->second.holders)
      if (p == from) return true;
    return false;
  }
  return lock_id.is_tuple(2) && lock_id.element(0).is_atom(at().global) && it->second.requester == lock_id.element(1);
}

const name_entry* tables::find_name(const term& name) const {
  auto it = names_.find(name);
  return it == names_.end() ? nullptr : &it->second;
}

std::vector<name_entry> tables::names() const {
  std::vector<name_entry> v;
  v.reserve(names_.size());
  for (auto& [k, e] : names_) v.push_back(e);
  return v;
}

bool tables::can_set_lock(const term& id) const {
  if (!id.is_tuple(2)) return false;
  auto it = locks_.find(id.element(0));
  return it == locks_.end() || it->second.requester == id.element(1);
}

bool tables::set_lock(const term& id, const term& pid, server_io& io) {
  if (!can_set_lock(id)) return false;
  auto& e = locks_[id.element(0)];
  e.requester = id.element(1);
  for (auto& [p, r] : e.holders)
    if (p == pid) return true;
  e.holders.emplace_back(pid, io.monitor(pid));
  return true;
}

void tables::del_lock(const term& id, const term& pid, server_io& io) {
  if (!id.is_tuple(2)) return;
  auto it = locks_.find(id.element(0));
  if (it == locks_.end() || !(it->second.requester == id.element(1))) return;
  auto& h = it->second.holders;
  for (auto i = h.begin(); i != h.end(); ++i) {
    if (i->first == pid) {
      io.demonitor(i->second);
      h.erase(i);
      break;
    }
  }
  if (h.empty()) {
    lock_gone(it->first, false);
    locks_.erase(it);
  }
}

void tables::down(const term& ref, server_io& io) {
  for (auto it = locks_.begin(); it != locks_.end();) {
    auto& h = it->second.holders;
    h.erase(std::remove_if(h.begin(), h.end(), [&](const auto& pr) { return pr.second == ref; }), h.end());
    if (h.empty()) lock_gone(it->first, true);
    it = h.empty() ? locks_.erase(it) : std::next(it);
  }
  auto n = ref_name_.find(ref);
  if (n != ref_name_.end()) {
    term name = n->second;
    ref_name_.erase(n);
    auto e = names_.find(name);
    if (e != names_.end() && e->second.ref == ref) {
      names_.erase(e);
      remove_ext(name);
    }
  }
  (void)io;
}

// ---------------------------------------------------------------- exchange

exchange_plan plan_exchange(const std::vector<name_entry>& ours, const term& his_names, atom self, atom his_node) {
  std::map<term, const name_entry*> mine;
  for (auto& e : ours) mine[e.name] = &e;
  exchange_plan p;
  for (const term& t : to_vec(his_names)) {
    if (!t.is_tuple(3)) continue;
    const term &name = t.element(0), &pid = t.element(1), &method = t.element(2);
    auto it = mine.find(name);
    if (it == mine.end()) {
      p.ops.push_back(term::tuple({term(at().insert), t}));
    } else if (it->second->pid == pid) {
      continue;
    } else if (self < his_node) {
      // The smaller node resolves, so all resolve funs of one conflict run in one partition (global.erl:2557).
      p.conflicts.push_back(conflict{name, pid, method, it->second->pid, it->second->method});
    }
    // else: the other node resolves it.
  }
  return p;
}

void finish_conflict(exchange_plan& p, const conflict& c, const term& result) {
  if (result.is_pid() && result == c.pid) {
    p.ops.push_back(term::tuple({term(at().insert), term::tuple({c.name, c.pid, c.method})}));
  } else if (result.is_pid() && result == c.pid2) {
    p.resolved.push_back(term::tuple({term(at().insert), term::tuple({c.name, c.pid2, c.method2})}));
  } else if (is(result, at().badrpc, 2)) {
    p.ops.push_back(term::tuple({term(at().insert), term::tuple({c.name, c.pid, c.method})}));
  } else {  // none, or anything else (global.erl:2572, 2579)
    term op = term::tuple({term(at().del), c.name});
    p.ops.push_back(op);
    p.resolved.push_back(op);
  }
}

term locker_lock_id(const term& a, const term& b) {
  return term::tuple({term(at().global), a < b ? term::list({a, b}) : term::list({b, a})});
}

atom the_boss(std::vector<atom> nodes) { return *std::max_element(nodes.begin(), nodes.end()); }

// ---------------------------------------------------------------- server_core

server_core::server_core(server_io& io, bool hidden) : io_(io), hidden_(hidden) {
  // The creation extension makes lost_connection ids unique per incarnation (global.erl:760).
  std::random_device rd;
  creation_ext_ = term(static_cast<std::int64_t>((std::uint64_t(rd()) << 20) ^ rd()));
}

std::optional<term> server_core::where(const term& name, const std::function<bool(const term&)>& local_alive) const {
  std::lock_guard lk(mu_);
  const name_entry* e = tables_.find_name(name);
  if (!e) return std::nullopt;
  if (e->pid.node_of() == io_.self_node() && !local_alive(e->pid)) return std::nullopt;
  return e->pid;
}

std::vector<term> server_core::registered_names() const {
  std::lock_guard lk(mu_);
  std::vector<term> v;
  for (auto& e : tables_.names()) v.push_back(e.name);
  return v;
}

std::vector<atom> server_core::known() const {
  std::lock_guard lk(mu_);
  std::vector<atom> v;
  for (auto& [n, _] : known_) v.push_back(n);
  return v;
}

std::vector<atom> server_core::synced() const {
  std::lock_guard lk(mu_);
  return synced_;
}

bool server_core::is_global_lock_set() const {
  std::lock_guard lk(mu_);
  return tables_.is_lock_set(term(at().global));
}

bool server_core::has_pid(const term& pid) const {
  std::lock_guard lk(mu_);
  for (auto& e : tables_.names())
    if (e.pid == pid) return true;
  return false;
}

bool server_core::can_set_lock(const term& id) const {
  std::lock_guard lk(mu_);
  return tables_.can_set_lock(id);
}

std::optional<term> server_core::tag_my(atom n) const {
  auto it = peers_.find(n);
  if (it == peers_.end()) return std::nullopt;
  return it->second.my_tag;
}

term server_core::his_tag(atom n) const {
  auto it = peers_.find(n);
  return it != peers_.end() && it->second.his_tag ? *it->second.his_tag : term(atom("undefined"));
}

std::optional<term> server_core::handle_call(const term& req, const term& from_pid) {
  std::lock_guard lk(mu_);
  if (is(req, at().register_, 4) && req.element(2).is_pid()) {
    insert_checked(req.element(1), req.element(2), req.element(3), std::nullopt, from_pid, term());
    return term(at().yes);
  }
  if (is(req, at().unregister, 2)) {
    tables_.delete_name(req.element(1), io_);
    return term(at().ok);
  }
  if (is(req, at().register_ext, 5) && req.element(2).is_pid() && req.element(4).is_atom()) {
    insert_checked(req.element(1), req.element(2), req.element(3), req.element(4).atom_value(), from_pid, term());
    return term(at().yes);
  }
  if (is(req, at().set_lock, 2)) return term(tables_.set_lock(req.element(1), from_pid, io_));
  if (is(req, at().del_lock, 2)) {
    tables_.del_lock(req.element(1), from_pid, io_);
    return term(true);
  }
  if (req.is_atom(at().get_known)) {
    // mk_known_list(0, S): plain node names, in the order global's fold over its small map gives (descending).
    std::vector<term> v;
    for (auto& [n, vsn] : known_) v.push_back(term(n));
    std::sort(v.begin(), v.end(), [](const term& x, const term& y) { return y < x; });
    return term::list(std::move(v));
  }
  if (req.is_atom(at().get_synced)) return atom_list(synced_);
  if (req.is_atom(at().get_protocol_version)) return term(protocol_vsn);
  if (req.is_atom(at().get_names_ext)) return tables_.names_ext();
  return std::nullopt;
}

bool server_core::handle_cast(const term& req) {
  std::lock_guard lk(mu_);
  auto node_at = [&](std::size_t i) { return req.element(i).is_atom(); };
  if (is(req, at().init_connect, 4) && node_at(2)) {
    const term& vsn = req.element(1);
    atom node = req.element(2).atom_value();
    // Newer versions understand older ones; a longer tuple is a newer peer (global.erl:886).
    if (!vsn.is_tuple() || vsn.tuple_size() < 2 || !vsn.element(0).is_small()) return true;
    std::int64_t his = vsn.element(0).small();
    term use = his > protocol_vsn || vsn.tuple_size() > 2 ? term(protocol_vsn) : vsn.element(0);
    init_connect(use, node, req.element(3), vsn.element(1), his);
    return true;
  }
  if (is(req, at().lock_is_set, 4) && node_at(1)) {
    atom node = req.element(1).atom_value();
    if (tag_my(node) == req.element(2)) lock_is_set(node, req.element(3));
    else cancel_locker(node, req.element(2), term(at().no_fun));
    return true;
  }
  if (is(req, at().exchange, 5) && node_at(1)) {
    atom node = req.element(1).atom_value();
    if (tag_my(node) == req.element(4)) exchange(node, req.element(2));
    else cancel_locker(node, req.element(4), term(at().no_fun));
    return true;
  }
  if (is(req, at().exchange_ops, 5) && node_at(1)) {
    atom node = req.element(1).atom_value();
    const term& tag = req.element(2);
    if (tag_my(node) != tag) {
      cancel_locker(node, tag, term(at().no_fun));
      return true;
    }
    io_.cast_server(node, term::tuple({term(at().resolved), term(io_.self_node()), req.element(4), mk_known_list(),
                                       term(at().unused), tables_.names_ext(), his_tag(node)}));
    auto& p = peers_[node];
    p.save_ops = req.element(3);
    if (p.saved_resolved) {
      auto s = *p.saved_resolved;
      resolved(node, s[2], s[0], s[1]);
    }
    return true;
  }
  if (is(req, at().resolved, 7) && node_at(1)) {
    atom node = req.element(1).atom_value();
    if (tag_my(node) != req.element(6)) {
      cancel_locker(node, req.element(6), term(at().no_fun));
      return true;
    }
    auto& p = peers_[node];
    if (p.save_ops) resolved(node, req.element(2), req.element(3), req.element(5));
    else p.saved_resolved = std::array<term, 3>{req.element(3), req.element(5), req.element(2)};
    return true;
  }
  if (is(req, at().new_nodes, 6) && node_at(1)) {
    new_nodes(req.element(2), req.element(1).atom_value(), req.element(3), req.element(4), req.element(5));
    return true;
  }
  if (is(req, at().in_sync, 3) && node_at(1)) {
    atom node = req.element(1).atom_value();
    if (std::find(synced_.begin(), synced_.end(), node) == synced_.end()) synced_.push_back(node);
    tell_syncers(node);
    pending_.erase(node);
    cancel_locker(node, tag_my(node), term(at().no_fun));
    reset_node_state(node);
    return true;
  }
  if (is(req, at().lock_set, 5) && req.element(1).is_pid()) {
    if (tag_my(req.element(1).node_of()) == req.element(4)) io_.to_locker(req);
    return true;
  }
  if (is(req, at().lock_set, 4)) {
    io_.to_locker(req);
    return true;
  }
  if (is(req, at().async_del_name, 3) || is(req, at().async_del_lock, 3)) return true;
  return false;
}

bool server_core::handle_info(const term& msg) {
  std::lock_guard lk(mu_);
  if (is(msg, at().down, 5)) {
    tables_.down(msg.element(1), io_);
    return true;
  }
  if (is(msg, at().lost_connection, 5) && msg.element(1).is_atom() && msg.element(4).is_atom()) {
    lost_connection(msg);
    return true;
  }
  if (is(msg, at().remove_connection, 2) && msg.element(1).is_atom()) {
    remove_connection(msg.element(1).atom_value());
    return true;
  }
  if (is(msg, at().cancel_connect, 3) && msg.element(1).is_atom()) {
    atom node = msg.element(1).atom_value();
    auto my = tag_my(node);
    if (my && *my == msg.element(2)) {
      cancel_locker(node, my, term(at().no_fun));
      reset_node_state(node);
      pending_.erase(node);
      restart_connect(node, my);
    }
    return true;
  }
  if (is(msg, at().init_connect_ack, 4) && msg.element(1).is_atom()) {
    atom node = msg.element(1).atom_value();
    auto my = tag_my(node);
    auto it = peers_.find(node);
    bool his_ok = it != peers_.end() && it->second.his_tag && *it->second.his_tag == msg.element(3);
    if (!(my && *my == msg.element(2) && his_ok)) {
      // Out of sync: cancel this attempt and start over (global.erl:1319).
      io_.send_server(node, term::tuple({term(at().cancel_connect), term(io_.self_node()), msg.element(3)}));
      restart_connect(node, my);
    }
    return true;
  }
  if (is(msg, at().extra_nodedown, 2) && msg.element(1).is_atom()) {
    atom node = msg.element(1).atom_value();
    handle_nodedown(node, down_kind::disconnected);
    return true;
  }
  return false;
}

void server_core::nodeup(atom node) {
  std::lock_guard lk(mu_);
  nodeup_locked(node);
}

void server_core::nodeup_locked(atom node) {
  if (hidden_ || leaving_ || node == io_.self_node()) return;
  // handle_nodeup (global.erl:2678): already known or in progress → nothing.
  if (known_.count(node) || resolvers_.count(node)) return;
  auto& p = peers_[node];
  if (p.pre_connect) {
    auto pc = *p.pre_connect;
    p.pre_connect.reset();
    // Resent to ourselves in global; handled right after the init_connect below is cast.
    io_.cast_server(io_.self_node(), term::tuple({term(at().init_connect), term::tuple({pc[0], pc[2]}),
                                                  term(node), pc[1]}));
  }
  term tag(io_.unique_integer());
  p.my_tag = tag;
  std::vector<std::pair<term, term>> km;
  for (auto& [n, v] : known_) km.emplace_back(term(n), term(v));
  term locker_msg = term::tuple({term(at().locker), term(atom("no_longer_a_pid")), term::map(std::move(km)),
                                 io_.locker_pid()});
  io_.cast_server(node, term::tuple({term(at().init_connect), term::tuple({term(protocol_vsn), tag}),
                                     term(io_.self_node()), locker_msg}));
  resolvers_[node] = tag;
}

void server_core::nodedown(atom node) {
  std::lock_guard lk(mu_);
  if (hidden_ || leaving_) return;
  handle_nodedown(node, down_kind::disconnected);
}

void server_core::leave() {
  std::lock_guard lk(mu_);
  leaving_ = true;
}

void server_core::init_connect(const term& vsn, atom node, const term& init_msg, const term& his_tag,
                               std::int64_t his_vsn) {
  if (pending_.count(node)) {
    // A second attempt while one is in progress: cancel both and restart (global.erl:1535).
    io_.send_server(node, term::tuple({term(at().cancel_connect), term(io_.self_node()), his_tag}));
    restart_connect(node, tag_my(node));
  }
  auto& p = peers_[node];
  p.prot_vsn = vsn;
  p.his_tag = his_tag;
  auto r = resolvers_.find(node);
  if (r != resolvers_.end() && p.my_tag) {
    if (!is(init_msg, at().locker, 4)) return;
    term his_locker = init_msg.element(3);
    io_.to_locker(term::tuple({term(at().his_the_locker), his_locker, term::tuple({vsn, term::nil()}), his_tag,
                               *p.my_tag}));
    io_.send_server(node, term::tuple({term(at().init_connect_ack), term(io_.self_node()), his_tag, *p.my_tag}));
    pending_[node] = his_vsn;
  } else {
    p.pre_connect = std::array<term, 3>{vsn, init_msg, his_tag};
  }
}

void server_core::restart_connect(atom node, const std::optional<term>& my_tag) {
  cancel_locker(node, my_tag, term(at().no_fun));
  reset_node_state(node);
  pending_.erase(node);
  resolvers_.erase(node);
  if (my_tag && my_tag->is_integer()) nodeup_locked(node);
}

void server_core::send_cancel_connect(atom node, const std::optional<term>& my_tag) {
  if (!pending_.count(node) || !my_tag || tag_my(node) != my_tag) return;
  io_.send_server(node, term::tuple({term(at().cancel_connect), term(io_.self_node()), his_tag(node)}));
}

void server_core::cancel_locker(atom node, const std::optional<term>& tag, term fun) {
  term t = tag ? *tag : term(atom("undefined"));
  io_.to_locker(term::tuple({term(at().cancel), term(node), t, std::move(fun)}));
  send_cancel_connect(node, tag);
  auto r = resolvers_.find(node);
  if (r != resolvers_.end() && tag && r->second == *tag) {
    io_.stop_resolver(node);
    resolvers_.erase(r);
  }
}

void server_core::lock_is_set(atom node, const term& lock_id) {
  std::vector<term> names;
  for (auto& e : tables_.names()) names.push_back(term::tuple({e.name, e.pid, e.method}));
  io_.cast_server(node, term::tuple({term(at().exchange), term(io_.self_node()), term::list(std::move(names)),
                                     term::nil(), his_tag(node)}));
  auto& p = peers_[node];
  p.lock_id = lock_id;
  if (p.wait_exchange) {
    term w = *p.wait_exchange;
    p.wait_exchange.reset();
    p.lock_is_set = true;
    exchange(node, w);
  } else {
    p.lock_is_set = true;
  }
}

void server_core::exchange(atom node, const term& names) {
  auto& p = peers_[node];
  if (p.lock_is_set) {
    p.lock_is_set = false;
    auto r = resolvers_.find(node);
    if (r != resolvers_.end()) io_.start_resolver(node, r->second, names, tables_.names());
  } else {
    p.wait_exchange = names;
  }
}

term server_core::mk_known_list() const {
  std::vector<term> v;
  for (auto& [n, vsn] : known_) v.push_back(term::tuple({term(n), term(vsn)}));
  return term::list(std::move(v));
}

std::int64_t server_core::node_vsn(atom n) const {
  if (n == io_.self_node()) return protocol_vsn;
  if (auto k = known_.find(n); k != known_.end()) return k->second;
  if (auto k = pending_.find(n); k != pending_.end()) return k->second;
  return 0;
}

std::vector<atom> server_core::add_to_known(const term& nodes) {
  std::vector<atom> added;
  for (const term& t : to_vec(nodes)) {
    atom n;
    std::int64_t v = 0;
    if (t.is_atom()) n = t.atom_value();
    else if (t.is_tuple(2) && t.element(0).is_atom() && t.element(1).is_small()) {
      n = t.element(0).atom_value();
      v = t.element(1).small();
    } else continue;
    if (n == io_.self_node()) continue;
    if (!known_.count(n)) {
      known_[n] = v;
      added.push_back(n);
    } else if (known_[n] < 0) {
      known_[n] = v;
    }
  }
  return added;
}

// do_ops/5 (global.erl:1878): inserts that match a {Name, Pid, RegNode} of Names_ext first, as external names;
// then the other inserts; then the deletes. Each insert is undone if the lock it came under is gone.
void server_core::do_ops(const term& ops, const term& conn, const term& names_ext, const term& extra) {
  std::vector<term> dels, plain;
  std::vector<std::pair<term, atom>> xins;
  const auto ext = to_vec(names_ext);
  for (const term& op : to_vec(ops)) {
    if (is(op, at().insert, 2) && op.element(1).is_tuple(3) && op.element(1).element(1).is_pid()) {
      const term& e = op.element(1);
      auto x = std::find_if(ext.begin(), ext.end(), [&](const term& t) {
        return t.is_tuple(3) && t.element(0) == e.element(0) && t.element(1) == e.element(1) && t.element(2).is_atom();
      });
      if (x != ext.end()) xins.emplace_back(e, x->element(2).atom_value());
      else plain.push_back(e);
    } else if (is(op, at().del, 2)) {
      dels.push_back(op.element(1));
    }
  }
  for (auto& [e, reg] : xins) insert_checked(e.element(0), e.element(1), e.element(2), reg, conn, extra);
  for (auto& e : plain) insert_checked(e.element(0), e.element(1), e.element(2), std::nullopt, conn, extra);
  for (auto& d : dels) tables_.delete_name(d, io_);
}

// insert_global_name/6 (global.erl:1942): the name goes in, and out again at once if the lock it was registered
// under has gone meanwhile (its node went down and came back, and the DOWN removed the lock).
void server_core::insert_checked(const term& name, const term& pid, const term& method,
                                 const std::optional<atom>& reg_node, const term& from, const term& extra) {
  if (reg_node) tables_.insert_name_ext(name, pid, method, *reg_node, io_);
  else tables_.insert_name(name, pid, method, io_);
  term lock_id;
  for (const term& x : to_vec(extra))
    if (is(x, at().lock, 2)) lock_id = x.element(1);
  if (!tables_.lock_still_set(from, lock_id)) tables_.delete_name(name, io_);
}

std::vector<atom> server_core::add_syncer(const term& pid, const std::vector<atom>& nodes) {
  std::lock_guard lk(mu_);
  std::vector<atom> wait;
  for (atom n : nodes)
    if (n != io_.self_node() && std::find(synced_.begin(), synced_.end(), n) == synced_.end() &&
        std::find(wait.begin(), wait.end(), n) == wait.end())
      wait.push_back(n);
  if (!wait.empty()) syncers_.push_back(pid);
  return wait;
}

void server_core::remove_syncer(const term& pid) {
  std::lock_guard lk(mu_);
  syncers_.erase(std::remove(syncers_.begin(), syncers_.end(), pid), syncers_.end());
}

void server_core::tell_syncers(atom node) {
  for (const term& p : syncers_) io_.send_local(p, term::tuple({term(atom("synced")), term::list({term(node)})}));
}

void server_core::resolved(atom node, const term& his_resolved, const term& his_known, const term& names_ext) {
  auto& p = peers_[node];
  std::vector<term> ops = to_vec(p.save_ops.value_or(term::nil()));
  for (auto& o : to_vec(his_resolved)) ops.push_back(o);
  term ops_t = term::list(ops);
  auto old_known = known_;
  // [Node | HisKnown] with versions (make_node_vsn_list).
  std::vector<term> nn{term::tuple({term(node), term(node_vsn(node))})};
  std::vector<atom> his_nodes;
  for (const term& t : to_vec(his_known)) {
    atom n;
    term v;
    if (t.is_atom()) n = t.atom_value(), v = term(node_vsn(n));
    else if (t.is_tuple(2) && t.element(0).is_atom()) n = t.element(0).atom_value(), v = t.element(1);
    else continue;
    if (v.is_small() && v.small() == 0) v = term(node_vsn(n));
    nn.push_back(term::tuple({term(n), v}));
    his_nodes.push_back(n);
  }
  term new_nodes_t = term::list(nn);
  io_.sync_others(his_nodes);
  term extra = term::list({term::tuple({term(at().vsn), p.prot_vsn.value_or(term(protocol_vsn))}),
                           term::tuple({term(at().lock), p.lock_id.value_or(term(atom("undefined")))})});
  do_ops(ops_t, term(io_.self_node()), names_ext, extra);
  tell_syncers(node);
  for (atom c : his_nodes) {
    pending_.erase(c);
    cancel_locker(c, tag_my(c), term(at().no_fun));
    reset_node_state(c);
  }
  // The locker that took the lock casts new_nodes to our old partition before it deletes the lock, so del_lock
  // reaches them after new_nodes (global.erl:1680).
  std::vector<term> targets;
  for (auto& [n, v] : old_known) targets.push_back(term(n));
  term fun = term::tuple({term(at().new_nodes_fun),
                          term::tuple({term(at().new_nodes), term(io_.self_node()), ops_t, names_ext.is_list() ? names_ext : term::nil(), new_nodes_t, extra}),
                          term::list(std::move(targets))});
  pending_.erase(node);
  cancel_locker(node, tag_my(node), fun);
  reset_node_state(node);
  auto added = add_to_known(new_nodes_t);
  io_.to_locker(term::tuple({term(at().add_to_known), atom_list(added)}));
  if (std::find(synced_.begin(), synced_.end(), node) == synced_.end()) synced_.push_back(node);
}

void server_core::new_nodes(const term& ops, atom conn_node, const term& names_ext, const term& nodes,
                            const term& extra) {
  auto added = add_to_known(nodes);
  io_.sync_others(added);
  do_ops(ops, term(conn_node), names_ext, extra);
  io_.to_locker(term::tuple({term(at().add_to_known), atom_list(added)}));
}

void server_core::handle_nodedown(atom node, down_kind what) {
  cancel_locker(node, tag_my(node), term(at().no_fun));
  io_.to_locker(term::tuple({term(at().remove_from_known), term(node)}));
  reset_node_state(node);
  resolvers_.erase(node);
  switch (what) {
    case down_kind::remove_connection:
      removing_.insert(node);
      break;
    case down_kind::ignore_node:
      removing_.erase(node);
      break;
    case down_kind::disconnected:
      if (removing_.erase(node) == 0 && (known_.count(node) || pending_.count(node))) {
        // inform_connection_loss (global.erl:2748): prevent_overlapping_partitions.
        multicast(term::tuple({term(at().lost_connection), term(io_.self_node()), creation_ext_,
                               term(io_.unique_integer()), term(node)}),
                  node);
      }
      break;
  }
  pending_.erase(node);
  known_.erase(node);
  synced_.erase(std::remove(synced_.begin(), synced_.end(), node), synced_.end());
}

void server_core::multicast(const term& msg, atom except) {
  std::set<atom> to;
  for (auto& [n, v] : known_) to.insert(n);
  for (auto& [n, v] : pending_) to.insert(n);
  to.erase(except);
  for (atom n : to) io_.send_server(n, msg);
}

void server_core::lost_connection(const term& msg) {
  if (leaving_) return;
  atom a = msg.element(1).atom_value(), b = msg.element(4).atom_value();
  const term &xcre = msg.element(2), &opid = msg.element(3);
  auto key = std::make_pair(a, b);
  // Entries are kept an hour (global.erl's lost_conn_info_cleanup_time); older ones go here.
  const auto now = io_.now();
  std::erase_if(lost_, [&](const auto& kv) { return now - kv.second.at >= std::chrono::hours(1); });
  auto it = lost_.find(key);
  if (it != lost_.end() && it->second.xcreation == xcre && !(it->second.op_id < opid)) return;  // seen already
  multicast(msg, a);
  lost_[key] = lost_info{xcre, opid, now};
  atom rm = b == io_.self_node() ? a : b;  // global.erl:1223
  if (!potentially_known(rm)) return;
  io_.send_server(rm, term::tuple({term(at().remove_connection), term(io_.self_node())}));
  handle_nodedown(rm, down_kind::remove_connection);
}

void server_core::remove_connection(atom node) {
  if (!potentially_known(node)) return;
  io_.disconnect(node);
  handle_nodedown(node, down_kind::remove_connection);
}

}  // namespace cnode::global
