// The sans-I/O core of global: tables, conflict planning and the connection sequence driven by hand.
#include <doctest.h>

#include "registry/core.hpp"

using namespace cnode::global;
using cnode::etf::pid_value;

namespace {

term pid(const char* node, std::uint32_t id) { return term::pid(pid_value{atom(node), id, 0, 1}); }
term t(std::initializer_list<term> l) { return term::tuple(l); }
term A(const char* s) { return term(atom(s)); }

struct fake_io : server_io {
  atom me{"cn@h"};
  std::vector<std::pair<atom, term>> sent, casts;
  std::vector<term> locker;
  std::vector<atom> disconnected, synced;
  std::vector<atom> resolvers_started;
  term resolver_names;
  int refs = 0, demons = 0;
  std::int64_t tag = 100;
  atom self_node() const override { return me; }
  void send_server(atom n, term m) override { sent.emplace_back(n, m); }
  void cast_server(atom n, term m) override { casts.emplace_back(n, m); }
  void to_locker(term m) override { locker.push_back(m); }
  term locker_pid() const override { return pid("cn@h", 7); }
  term monitor(const term&) override { return term(++refs); }
  void demonitor(const term&) override { ++demons; }
  void disconnect(atom n) override { disconnected.push_back(n); }
  void start_resolver(atom n, const term&, const term& his, std::vector<name_entry>) override {
    resolvers_started.push_back(n);
    resolver_names = his;
  }
  void stop_resolver(atom) override {}
  void sync_others(const std::vector<atom>& ns) override { synced.insert(synced.end(), ns.begin(), ns.end()); }
  std::int64_t unique_integer() override { return tag++; }
  std::vector<std::pair<term, term>> local;
  void send_local(const term& p, term m) override { local.emplace_back(p, m); }
  std::chrono::steady_clock::time_point clock{};
  std::chrono::steady_clock::time_point now() const override { return clock; }
  const term* last_cast(const char* tag_name) const {
    for (auto it = casts.rbegin(); it != casts.rend(); ++it)
      if (it->second.is_tuple() && it->second.element(0).is_atom(atom(tag_name))) return &it->second;
    return nullptr;
  }
};

}  // namespace

TEST_CASE("tables: names replace, DOWN removes, locks follow the requester") {
  fake_io io;
  tables tb;
  tb.insert_name(A("x"), pid("a@h", 1), A("m"), io);
  tb.insert_name(A("x"), pid("a@h", 2), A("m"), io);
  REQUIRE(tb.find_name(A("x")) != nullptr);
  CHECK(tb.find_name(A("x"))->pid == pid("a@h", 2));
  CHECK(io.demons == 1);
  tb.down(tb.find_name(A("x"))->ref, io);
  CHECK(tb.find_name(A("x")) == nullptr);

  term id1 = t({A("res"), A("r1")}), id2 = t({A("res"), A("r2")});
  CHECK(tb.set_lock(id1, pid("a@h", 1), io));
  CHECK(tb.set_lock(id1, pid("b@h", 1), io));  // same requester: shared
  CHECK_FALSE(tb.set_lock(id2, pid("c@h", 1), io));
  tb.del_lock(id1, pid("a@h", 1), io);
  CHECK_FALSE(tb.can_set_lock(id2));
  tb.del_lock(id1, pid("b@h", 1), io);
  CHECK(tb.can_set_lock(id2));
}

TEST_CASE("plan_exchange: new names insert, the smaller node resolves conflicts") {
  std::vector<name_entry> ours{{A("same"), pid("cn@h", 1), A("m"), term(1)},
                               {A("clash"), pid("cn@h", 2), A("m2"), term(2)}};
  term his = term::list({t({A("same"), pid("cn@h", 1), A("m")}), t({A("clash"), pid("z@h", 3), A("m")}),
                         t({A("new"), pid("z@h", 4), A("m")})});
  auto p = plan_exchange(ours, his, atom("cn@h"), atom("z@h"));
  CHECK(p.ops.size() == 1);
  REQUIRE(p.conflicts.size() == 1);
  // random_exit_name keeps the pid on the lower node: ours (cn@h < z@h) goes to Resolved.
  finish_conflict(p, p.conflicts[0], pid("cn@h", 2));
  CHECK(p.resolved.size() == 1);
  auto q = plan_exchange(ours, his, atom("zz@h"), atom("z@h"));
  CHECK(q.conflicts.empty());  // the other node resolves
  auto r = plan_exchange(ours, his, atom("cn@h"), atom("z@h"));
  finish_conflict(r, r.conflicts[0], A("none"));
  CHECK(r.ops.size() == 2);
  CHECK(r.resolved.size() == 1);
}

TEST_CASE("locker lock id and boss") {
  term a = pid("a@h", 1), b = pid("b@h", 1);
  CHECK(locker_lock_id(a, b) == locker_lock_id(b, a));
  CHECK(the_boss({atom("a@h"), atom("c@h"), atom("b@h")}) == atom("c@h"));
}

TEST_CASE("connection sequence with one BEAM peer ends with it known") {
  fake_io io;
  server_core core(io);
  atom peer("ex@h");
  core.nodeup(peer);
  const term* ic = io.last_cast("init_connect");
  REQUIRE(ic != nullptr);
  term my_tag = ic->element(1).element(1);
  CHECK(ic->element(1).element(0) == term(8));
  // his init_connect → init_connect_ack and his_the_locker to our locker
  term his_locker = pid("ex@h", 50);
  REQUIRE(core.handle_cast(t({A("init_connect"), t({term(8), term(-5)}), term(peer),
                              t({A("locker"), A("no_longer_a_pid"), term::nil(), his_locker})})));
  REQUIRE(!io.sent.empty());
  CHECK(io.sent.back().second == t({A("init_connect_ack"), term(io.me), term(-5), my_tag}));
  CHECK(io.locker.back().element(0).is_atom(atom("his_the_locker")));
  // an ack that matches our tags changes nothing
  auto before = io.sent.size();
  CHECK(core.handle_info(t({A("init_connect_ack"), term(peer), my_tag, term(-5)})));
  CHECK(io.sent.size() == before);
  // lock set on both sides: exchange goes out with his tag; his exchange starts the resolver
  term lock_id = locker_lock_id(io.locker_pid(), his_locker);
  core.handle_cast(t({A("lock_is_set"), term(peer), my_tag, lock_id}));
  CHECK(io.last_cast("exchange")->element(4) == term(-5));
  term his_names = term::list({t({A("n1"), pid("ex@h", 9), A("m")})});
  core.handle_cast(t({A("exchange"), term(peer), his_names, term::nil(), my_tag}));
  REQUIRE(io.resolvers_started.size() == 1);
  auto plan = plan_exchange({}, io.resolver_names, io.me, peer);
  core.handle_cast(t({A("exchange_ops"), term(peer), my_tag, term::list(plan.ops), term::list(plan.resolved)}));
  CHECK(io.last_cast("resolved")->element(6) == term(-5));
  core.handle_cast(t({A("resolved"), term(peer), term::nil(), term::list({t({A("other@h"), term(8)})}), A("unused"),
                      term::nil(), my_tag}));
  auto k = core.known();
  CHECK(k.size() == 2);
  CHECK(io.synced == std::vector<atom>{atom("other@h")});
  CHECK(core.where(A("n1"), [](const term&) { return true; }) == pid("ex@h", 9));
  // the locker is told to cancel, with the new_nodes fun
  bool cancel = false;
  for (auto& m : io.locker)
    if (m.is_tuple(4) && m.element(0).is_atom(atom("cancel")) && m.element(1) == term(peer)) cancel = true;
  CHECK(cancel);
  // set_lock/del_lock calls
  CHECK(core.handle_call(t({A("set_lock"), lock_id}), his_locker) == term(true));
  CHECK(core.is_global_lock_set());
  CHECK(core.handle_call(t({A("del_lock"), lock_id}), his_locker) == term(true));
  CHECK_FALSE(core.is_global_lock_set());
  // nodedown: lost_connection to the other known node
  core.nodedown(peer);
  REQUIRE(!io.sent.empty());
  CHECK(io.sent.back().first == atom("other@h"));
  CHECK(io.sent.back().second.element(0).is_atom(atom("lost_connection")));
}

TEST_CASE("remove_connection disconnects a known node; junk is ignored") {
  fake_io io;
  server_core core(io);
  core.handle_cast(t({A("new_nodes"), A("x@h"), term::nil(), term::nil(), term::list({t({A("y@h"), term(8)})}),
                      term::nil()}));
  CHECK(core.known() == std::vector<atom>{atom("y@h")});
  CHECK(core.handle_info(t({A("remove_connection"), A("y@h")})));
  CHECK(io.disconnected == std::vector<atom>{atom("y@h")});
  CHECK(core.known().empty());
  CHECK_FALSE(core.handle_cast(A("junk")));
  CHECK(core.handle_cast(t({A("init_connect"), A("bad"), A("x@h"), A("junk")})));
  CHECK_FALSE(core.handle_call(t({A("nope")}), term()).has_value());
}

namespace {
bool has(const server_core& core, const char* name) {
  return core.where(A(name), [](const term&) { return true; }).has_value();
}
term global_lock(const char* requester) { return t({A("global"), A(requester)}); }
}  // namespace

TEST_CASE("lock_still_set: a register whose lock went down with its holder is undone; del_lock clears that") {
  fake_io io;
  server_core core(io);
  term reg = pid("a@h", 3), other = pid("b@h", 4);
  // Held by the registrar: its register stays, another pid's does not.
  REQUIRE(core.handle_call(t({A("set_lock"), global_lock("r1")}), reg) == term(true));
  const term lock_ref = term(io.refs);  // the fake's monitor refs count up
  CHECK(core.handle_call(t({A("register"), A("n1"), pid("a@h", 10), A("m")}), reg) == A("yes"));
  CHECK(has(core, "n1"));
  CHECK(core.handle_call(t({A("register"), A("n2"), pid("a@h", 11), A("m")}), other) == A("yes"));
  CHECK_FALSE(has(core, "n2"));
  // The holder dies (its node went down): the lock goes with a DOWN, and a register that arrives late is undone.
  CHECK(core.handle_info(t({A("DOWN"), lock_ref, A("process"), reg, A("noconnection")})));
  CHECK_FALSE(core.is_global_lock_set());
  CHECK(core.handle_call(t({A("register"), A("n3"), pid("a@h", 12), A("m")}), reg) == A("yes"));
  CHECK_FALSE(has(core, "n3"));
  // A lock taken and released normally clears the flag.
  REQUIRE(core.handle_call(t({A("set_lock"), global_lock("r2")}), other) == term(true));
  REQUIRE(core.handle_call(t({A("del_lock"), global_lock("r2")}), other) == term(true));
  CHECK(core.handle_call(t({A("register"), A("n4"), pid("a@h", 13), A("m")}), reg) == A("yes"));
  CHECK(has(core, "n4"));
}

TEST_CASE("lock_still_set: ops from new_nodes go in only under the lock they name") {
  fake_io io;
  server_core core(io);
  term locker = pid("x@h", 1);
  REQUIRE(core.handle_call(t({A("set_lock"), global_lock("L")}), locker) == term(true));
  auto new_nodes = [&](const char* name, const char* lock_requester) {
    term ops = term::list({t({A("insert"), t({A(name), pid("x@h", 20), A("m")})})});
    term extra = term::list({t({A("vsn"), term(8)}), t({A("lock"), global_lock(lock_requester)})});
    core.handle_cast(t({A("new_nodes"), A("x@h"), ops, term::nil(), term::nil(), extra}));
  };
  new_nodes("good", "L");
  CHECK(has(core, "good"));
  new_nodes("stale", "older");
  CHECK_FALSE(has(core, "stale"));
}

TEST_CASE("names_ext: register_ext, get_names_ext, carried by exchanges, removed with the name") {
  fake_io io;
  server_core core(io);
  term p = pid("a@h", 5);
  CHECK(core.handle_call(t({A("register_ext"), A("e1"), p, A("m"), A("a@h")}), term()) == A("yes"));
  CHECK(core.handle_call(A("get_names_ext"), term()) == term::list({t({A("e1"), p, A("a@h")})}));
  CHECK(core.handle_call(t({A("unregister"), A("e1")}), term()) == A("ok"));
  CHECK(core.handle_call(A("get_names_ext"), term()) == term::nil());
  // new_nodes with a Names_ext entry matching an insert: stored as an external name.
  term q = pid("x@h", 6);
  term ops = term::list({t({A("insert"), t({A("e2"), q, A("m")})}), t({A("insert"), t({A("plain"), q, A("m")})})});
  core.handle_cast(t({A("new_nodes"), A("x@h"), ops, term::list({t({A("e2"), q, A("x@h")})}), term::nil(),
                      term::nil()}));
  CHECK(has(core, "e2"));
  CHECK(has(core, "plain"));
  CHECK(core.handle_call(A("get_names_ext"), term()) == term::list({t({A("e2"), q, A("x@h")})}));
  // and sent along in our resolved
  atom peer("ex@h");
  core.nodeup(peer);
  term my_tag = io.last_cast("init_connect")->element(1).element(1);
  core.handle_cast(t({A("exchange_ops"), term(peer), my_tag, term::nil(), term::nil()}));
  CHECK(io.last_cast("resolved")->element(5) == term::list({t({A("e2"), q, A("x@h")})}));
  // its DOWN removes it from both tables
  const term ref = term(io.refs - 1);  // e2 was inserted just before plain
  CHECK(core.handle_info(t({A("DOWN"), ref, A("process"), q, A("normal")})));
  CHECK_FALSE(has(core, "e2"));
  CHECK(core.handle_call(A("get_names_ext"), term()) == term::nil());
}

TEST_CASE("lost_connection: a repeat is dropped for an hour, then handled again") {
  fake_io io;
  server_core core(io);
  core.handle_cast(t({A("new_nodes"), A("x@h"), term::nil(), term::nil(),
                      term::list({t({A("y@h"), term(8)}), t({A("z@h"), term(8)})}), term::nil()}));
  term lc = t({A("lost_connection"), A("y@h"), term(77), term(1), A("q@h")});
  auto forwarded = [&] {
    std::size_t n = 0;
    for (auto& [to, m] : io.sent)
      if (m == lc) ++n;
    io.sent.clear();
    return n;
  };
  CHECK(core.handle_info(lc));
  CHECK(forwarded() == 1);  // to z@h, not back to y@h
  CHECK(core.handle_info(lc));
  CHECK(forwarded() == 0);
  io.clock += std::chrono::minutes(59);
  CHECK(core.handle_info(lc));
  CHECK(forwarded() == 0);
  io.clock += std::chrono::minutes(2);
  CHECK(core.handle_info(lc));
  CHECK(forwarded() == 1);
}

TEST_CASE("leave: a stopping node reports no lost connections and acts on none") {
  fake_io io;
  server_core core(io);
  core.handle_cast(t({A("new_nodes"), A("x@h"), term::nil(), term::nil(),
                      term::list({t({A("y@h"), term(8)}), t({A("z@h"), term(8)})}), term::nil()}));
  REQUIRE(core.known().size() == 2);
  core.leave();
  io.sent.clear();
  io.casts.clear();
  // Its connections close one by one: nothing goes to the nodes still connected.
  core.nodedown(atom("y@h"));
  CHECK(io.sent.empty());
  // Nor does a lost_connection from another node make it disconnect anybody or pass it on.
  CHECK(core.handle_info(t({A("lost_connection"), A("z@h"), term(77), term(1), A("x@h")})));
  CHECK(io.sent.empty());
  CHECK(io.disconnected.empty());
  // And a node that comes up is not synced with.
  core.nodeup(atom("w@h"));
  CHECK(io.sent.empty());
  CHECK_FALSE(io.last_cast("init_connect"));
}

TEST_CASE("syncers: told when a node gets in sync; nothing to wait for when all are synced") {
  fake_io io;
  server_core core(io);
  term syncer = pid("cn@h", 40);
  auto wait = core.add_syncer(syncer, {atom("x@h"), io.me, atom("x@h")});
  CHECK(wait == std::vector<atom>{atom("x@h")});
  core.handle_cast(t({A("in_sync"), A("x@h"), term(true)}));
  REQUIRE(io.local.size() == 1);
  CHECK(io.local[0].first == syncer);
  CHECK(io.local[0].second == t({A("synced"), term::list({A("x@h")})}));
  core.remove_syncer(syncer);
  CHECK(core.add_syncer(syncer, {atom("x@h")}).empty());
}
