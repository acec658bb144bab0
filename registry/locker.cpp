// global's locker (global.erl:2020-2470) and the lock client calls it shares with the registrar and the API.
#include <algorithm>
#include <random>
#include <string>

#include <unistd.h>

#include "cnode/gen.hpp"
#include "cnode/log.hpp"
#include "registry/service.hpp"

namespace cnode::global::detail {

namespace {

struct atoms {
  atom gen_call{"$gen_call"}, down{"DOWN"}, set_lock{"set_lock"}, del_lock{"del_lock"}, his_the_locker{"his_the_locker"},
      cancel{"cancel"}, lock_set{"lock_set"}, add_to_known{"add_to_known"}, remove_from_known{"remove_from_known"},
      lock_is_set{"lock_is_set"}, new_nodes_fun{"$new_nodes"}, undefined{"undefined"}, gen_cast{"$gen_cast"};
};
const atoms& at() {
  static const atoms a;
  return a;
}

bool is(const term& t, atom tag, std::size_t arity) { return t.is_tuple(arity) && t.element(0).is_atom(tag); }

term dest_of(node& n, atom node_name) {
  return node_name == n.name_atom() ? term(gns) : term::tuple({term(gns), term(node_name)});
}

void cast(process& self, atom to, term req) {
  self.send(dest_of(self.node(), to), term::tuple({term(at().gen_cast), std::move(req)}));
}

term atom_list(const std::vector<atom>& v) {
  std::vector<term> out(v.begin(), v.end());
  return term::list(std::move(out));
}

std::vector<atom> without(std::vector<atom> a, const std::vector<atom>& b) {
  a.erase(std::remove_if(a.begin(), a.end(), [&](atom x) { return std::find(b.begin(), b.end(), x) != b.end(); }),
          a.end());
  return a;
}

}  // namespace

asio::awaitable<std::vector<std::pair<atom, term>>> multi_call(process& self, const std::vector<atom>& nodes,
                                                               const term& req) {
  struct out {
    atom node;
    term mref, tag;
  };
  std::vector<out> waiting;
  const term ref = self.make_ref();
  for (atom nd : nodes) {
    term dest = dest_of(self.node(), nd);
    term mref = self.monitor(dest);
    term tag = term::tuple({ref, term(nd)});  // multi_call's {Ref, Node} (gen_server.erl)
    self.send(dest, term::tuple({term(at().gen_call), term::tuple({self.pid(), tag}), req}));
    waiting.push_back({nd, mref, tag});
  }
  std::vector<std::pair<atom, term>> replies;
  while (!waiting.empty()) {
    auto m = co_await self.receive(
        [&](const term& t) {
          for (auto& w : waiting)
            if ((t.is_tuple(2) && t.element(0) == w.tag) || (is(t, at().down, 5) && t.element(1) == w.mref))
              return true;
          return false;
        },
        std::chrono::minutes(2));
    if (!m) break;  // BEAM waits forever; a node that never answers is counted as bad
    for (auto it = waiting.begin(); it != waiting.end(); ++it) {
      if (m->is_tuple(2) && m->element(0) == it->tag) {
        self.demonitor(it->mref, true);
        replies.emplace_back(it->node, m->element(1));
        waiting.erase(it);
        break;
      }
      if (is(*m, at().down, 5) && m->element(1) == it->mref) {
        waiting.erase(it);
        break;
      }
    }
  }
  for (auto& w : waiting) self.demonitor(w.mref, true);
  co_return replies;
}

asio::awaitable<bool> set_lock_on_nodes(process& self, const term& id, const std::vector<atom>& nodes) {
  if (nodes.empty()) co_return true;
  service& s = *current(self.node());
  const atom me = self.node().name_atom();
  // local_lock_check/2: probe our own table before bothering the others.
  if (nodes.size() > 1 && std::find(nodes.begin(), nodes.end(), me) != nodes.end() && !s.core->can_set_lock(id))
    co_return false;
  const term req = term::tuple({term(at().set_lock), id});
  auto replies = co_await multi_call(self, nodes, req);
  std::vector<atom> yes;
  bool all = true;
  for (auto& [nd, r] : replies) {
    if (r.is_atom(atom::true_())) yes.push_back(nd);
    else all = false;
  }
  if (all) co_return true;
  const term del = term::tuple({term(at().del_lock), id});
  if (replies.size() > 1) co_await multi_call(self, yes, del);
  co_return false;
}

asio::awaitable<void> del_lock_on_nodes(process& self, const term& id, const std::vector<atom>& nodes) {
  if (nodes.empty()) co_return;
  const term del = term::tuple({term(at().del_lock), id});
  co_await multi_call(self, nodes, del);
}

asio::awaitable<void> delete_global_lock(process& self, const term& id, std::vector<atom> nodes) {
  if (nodes.empty()) co_return;
  atom boss = the_boss(nodes);
  const std::vector<atom> just_boss(1, boss);
  co_await del_lock_on_nodes(self, id, without(nodes, just_boss));
  co_await del_lock_on_nodes(self, id, just_boss);
}

asio::awaitable<void> random_sleep(process& self, int times) {
  thread_local std::mt19937 rng{std::random_device{}()};
  int tmax = times > 5 ? 8000 : ((1 << times) * 1000) / 8;
  int t = std::uniform_int_distribution<int>(1, std::max(1, tmax))(rng);
  std::function<bool(const term&)> none = [](const term&) { return false; };  // named: GCC 12 (README)
  co_await self.receive(none, std::chrono::milliseconds(t));
}

namespace {

struct him {
  atom node;
  term locker, vsn, my_tag, his_tag;
};

struct locker_state {
  std::vector<him> others;
  std::vector<atom> known;
  bool just_synced = false;
};

void remove_node(locker_state& st, atom nd, const term& tag) {
  for (auto it = st.others.begin(); it != st.others.end(); ++it) {
    if (it->node == nd && it->my_tag == tag) {
      st.others.erase(it);
      return;
    }
  }
}

const him* find_node(const locker_state& st, atom nd) {
  for (auto& h : st.others)
    if (h.node == nd) return &h;
  return nullptr;
}

void update_known(locker_state& st, const term& m) {
  if (is(m, at().add_to_known, 2)) {
    std::vector<term> v;
    if (m.element(1).list_to_vector(v))
      for (auto& t : v)
        if (t.is_atom()) st.known.push_back(t.atom_value());
  } else if (is(m, at().remove_from_known, 2) && m.element(1).is_atom()) {
    auto it = std::find(st.known.begin(), st.known.end(), m.element(1).atom_value());
    if (it != st.known.end()) st.known.erase(it);
  }
}

void call_fun(process& self, const term& fun) {
  // The {new_nodes, ...} cast to our old partition, before the lock goes (global.erl:1680).
  if (!is(fun, at().new_nodes_fun, 3)) return;
  std::vector<term> targets;
  if (!fun.element(2).list_to_vector(targets)) return;
  for (auto& t : targets)
    if (t.is_atom()) cast(self, t.atom_value(), fun.element(1));
}

void send_lock_set(process& self, const locker_state& st, bool set, const term& his_locker, const term& his_tag) {
  cast(self, his_locker.node_of(),
       term::tuple({term(at().lock_set), self.pid(), term(set), atom_list(st.known), his_tag}));
}

// lock_nodes_safely/3 (global.erl:2273): the boss first, then us and Extra, then the rest of our partition.
asio::awaitable<bool> lock_nodes_safely(process& self, locker_state& st, const term& lock_id,
                                        const std::vector<atom>& extra) {
  service& s = *current(self.node());
  const atom me = self.node().name_atom();
  std::vector<atom> all = st.known;
  all.push_back(me);
  std::vector<atom> first{the_boss(all)};
  if (!(first[0] == me || s.core->can_set_lock(lock_id))) co_return false;
  if (!co_await set_lock_on_nodes(self, lock_id, first)) co_return false;
  // update_locker_known/1: take the known-node updates already queued.
  for (;;) {
    auto m = co_await self.receive(
        [](const term& t) { return is(t, at().add_to_known, 2) || is(t, at().remove_from_known, 2); },
        std::chrono::milliseconds(0));
    if (!m) break;
    update_known(st, *m);
  }
  std::vector<atom> second{me};
  second.insert(second.end(), extra.begin(), extra.end());
  second = without(second, first);
  if (!co_await set_lock_on_nodes(self, lock_id, second)) {
    co_await del_lock_on_nodes(self, lock_id, first);
    co_return false;
  }
  if (!co_await set_lock_on_nodes(self, lock_id, without(st.known, first))) {
    std::vector<atom> so_far = first;
    so_far.insert(so_far.end(), second.begin(), second.end());
    co_await del_lock_on_nodes(self, lock_id, so_far);
    co_return false;
  }
  co_return true;
}

asio::awaitable<void> wait_cancel_lock(process& self, atom nd, const term& lock_id, const term& my_tag,
                                       std::vector<atom> known) {
  auto m = co_await self.receive([&](const term& t) {
    return is(t, at().cancel, 4) && t.element(1).is_atom(nd) && t.element(2) == my_tag;
  });
  call_fun(self, m->element(3));
  co_await delete_global_lock(self, lock_id, std::move(known));
}

asio::awaitable<void> lock_is_set_true(process& self, locker_state& st, const him& h, const term& lock_id,
                                       std::vector<atom> known1) {
  cast(self, self.node().name_atom(), term::tuple({term(at().lock_is_set), term(h.node), h.my_tag, lock_id}));
  co_await wait_cancel_lock(self, h.node, lock_id, h.my_tag, std::move(known1));
  st.just_synced = true;
  remove_node(st, h.node, h.my_tag);
}

// lock_is_set/5 (global.erl:2404): our partition and his node are locked; wait for his side.
asio::awaitable<void> lock_is_set(process& self, locker_state& st, him h, const term& lock_id,
                                  std::vector<atom> known1) {
  for (;;) {
    auto m = co_await self.receive([&](const term& t) {
      if ((is(t, at().lock_set, 5) || is(t, at().lock_set, 4)) && t.element(1).is_pid() &&
          t.element(1).node_of() == h.node)
        return true;
      return is(t, at().cancel, 4) && t.element(1).is_atom(h.node) && t.element(2) == h.my_tag;
    });
    if (is(*m, at().cancel, 4)) {
      call_fun(self, m->element(3));
      co_await delete_global_lock(self, lock_id, known1);
      remove_node(st, h.node, h.my_tag);
      co_return;
    }
    bool set = m->element(2).is_atom(atom::true_());
    bool tag_ok = m->tuple_size() == 4 || m->element(4) == h.my_tag;
    if (!tag_ok) continue;  // an old session's answer
    if (set) {
      co_await lock_is_set_true(self, st, h, lock_id, std::move(known1));
    } else {
      co_await delete_global_lock(self, lock_id, std::move(known1));
    }
    co_return;
  }
}

bool is_node_local(atom node) {
  static const std::string host = [] {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0) return std::string();
    std::string h(buf);
    return h.substr(0, h.find('.'));  // inet:gethostname/0 gives the short name
  }();
  const std::string_view n = node.text();
  const auto at_sign = n.find('@');
  return !host.empty() && at_sign != std::string_view::npos && n.substr(at_sign + 1) == host;
}

asio::awaitable<void> select_node(process& self, locker_state& st) {
  std::vector<him> others;
  for (auto& h : st.others)
    if (std::find(st.known.begin(), st.known.end(), h.node) == st.known.end()) others.push_back(h);
  st.others = others;
  if (others.empty()) co_return;
  // Requests from nodes on this host are chosen first (select_node/1, is_node_local/1: the host part of the node
  // name equals inet:gethostname()).
  std::vector<him> local;
  for (auto& h : others)
    if (is_node_local(h.node)) local.push_back(h);
  const std::vector<him>& pool = local.empty() ? others : local;
  thread_local std::mt19937 rng{std::random_device{}()};
  him h = pool[std::uniform_int_distribution<std::size_t>(0, pool.size() - 1)(rng)];
  term lock_id = locker_lock_id(self.pid(), h.locker);
  // [HisNode] as Extra prevents deadlock (global.erl:2244).
  const std::vector<atom> extra(1, h.node);
  if (!co_await lock_nodes_safely(self, st, lock_id, extra)) co_return;
  std::vector<atom> known1{self.node().name_atom(), h.node};
  known1.insert(known1.end(), st.known.begin(), st.known.end());
  send_lock_set(self, st, true, h.locker, h.his_tag);
  co_await lock_is_set(self, st, h, lock_id, std::move(known1));
}

asio::awaitable<void> locker_message(process& self, locker_state& st, const term& m) {
  if (is(m, at().his_the_locker, 5) && m.element(1).is_pid()) {
    const term& vsn = m.element(2);
    st.others.push_back(him{m.element(1).node_of(), m.element(1), vsn.is_tuple(2) ? vsn.element(0) : term(8),
                            m.element(4), m.element(3)});
  } else if (is(m, at().cancel, 4) && m.element(1).is_atom()) {
    // A cancel tagged undefined may be an old nodedown; it must not cancel a new nodeup (global.erl:2132).
    if (!m.element(2).is_atom(at().undefined)) remove_node(st, m.element(1).atom_value(), m.element(2));
  } else if ((is(m, at().lock_set, 5) || is(m, at().lock_set, 4)) && m.element(1).is_pid()) {
    if (!m.element(2).is_atom(atom::true_())) co_return;
    const term& pid = m.element(1);
    const him* found = find_node(st, pid.node_of());
    if (!found || (m.tuple_size() == 5 && !(found->my_tag == m.element(4)))) {
      self.send(pid, term::tuple({term(at().lock_set), self.pid(), term(false), atom_list(st.known)}));
      co_return;
    }
    him h = *found;
    // He locked his side first: lock ours with the same id and answer (global.erl:2152).
    term lock_id = locker_lock_id(self.pid(), pid);
    const std::vector<atom> no_extra;
    bool ok = co_await lock_nodes_safely(self, st, lock_id, no_extra);
    send_lock_set(self, st, ok, pid, h.his_tag);
    if (ok) {
      std::vector<atom> known2{self.node().name_atom()};
      known2.insert(known2.end(), st.known.begin(), st.known.end());
      cast(self, self.node().name_atom(), term::tuple({term(at().lock_is_set), term(h.node), h.my_tag, lock_id}));
      co_await wait_cancel_lock(self, h.node, lock_id, h.my_tag, std::move(known2));
      st.just_synced = true;
      remove_node(st, h.node, h.my_tag);
    } else {
      st.just_synced = false;
    }
  } else if (is(m, at().add_to_known, 2) || is(m, at().remove_from_known, 2)) {
    update_known(st, m);
  } else {
    log::debug("global locker: unexpected message ignored");
  }
}

}  // namespace

asio::awaitable<void> locker(process& self) {
  locker_state st;
  st.known = current(self.node())->core->known();
  for (;;) {
    auto m = co_await self.receive(std::chrono::milliseconds(0));
    if (m) {
      co_await locker_message(self, st, *m);
      continue;
    }
    std::chrono::milliseconds timeout = infinity;
    if (!st.others.empty()) {
      if (st.just_synced) timeout = std::chrono::milliseconds(0);
      else if (st.known.empty()) timeout = std::chrono::milliseconds(200);
      else timeout = std::chrono::milliseconds(std::min<std::size_t>(1000 + 100 * st.known.size(), 3000));
    }
    st.just_synced = false;
    m = co_await self.receive(timeout);
    if (m) co_await locker_message(self, st, *m);
    else if (!current(self.node())->core->is_global_lock_set()) co_await select_node(self, st);
  }
}

}  // namespace cnode::global::detail
