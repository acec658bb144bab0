// scope_core driven with terms, as the scope process would drive it; what it sends and monitors is recorded.
#include <doctest.h>

#include <algorithm>

#include "etf/format.hpp"
#include "pg/core.hpp"

using namespace cnode::pg;
using cnode::etf::pid_value;
using cnode::etf::ref_value;

namespace {

struct sent {
  term dest, msg;
  bool noconnect;
};

struct fake_io : scope_io {
  std::vector<sent> out;
  std::vector<std::pair<term, term>> monitors;  // {pid, ref}
  std::vector<term> demonitors;
  std::uint32_t next_ref = 1;
  void send(const term& dest, term msg, bool noconnect) override { out.push_back({dest, std::move(msg), noconnect}); }
  term monitor(const term& pid) override {
    ref_value v{atom("me@h"), 1, 1, {next_ref++}};
    term ref = term::reference(v);
    monitors.emplace_back(pid, ref);
    return ref;
  }
  void demonitor(const term& ref) override { demonitors.push_back(ref); }
  term ref_of(const term& pid) const {
    for (auto it = monitors.rbegin(); it != monitors.rend(); ++it)
      if (it->first == pid) return it->second;
    return {};
  }
  void clear() {
    out.clear();
    monitors.clear();
    demonitors.clear();
  }
};

term pid(const char* node, std::uint32_t id) { return term::pid(pid_value{atom(node), id, 0, 1}); }
term A(const char* s) { return term(atom(s)); }
term L(std::initializer_list<term> t) { return term::list(t); }
term T(std::initializer_list<term> t) { return term::tuple(t); }
std::string str(const term& t) { return cnode::etf::to_string(t); }

term sorted(const term& list) {
  std::vector<term> v;
  list.list_to_vector(v);
  std::sort(v.begin(), v.end());
  return term::list(std::move(v));
}

struct fixture {
  fake_io io;
  term self = pid("me@h", 1);
  scope_core core{atom("pg"), self, io};
  term peer = pid("ex@h", 50);
  // Makes `peer` a known peer with the given groups.
  void add_peer(const term& p, term groups = term::nil()) {
    CHECK(core.handle_cast(T({A("sync"), p, groups})));
  }
  term down(const term& ref, const term& who, const char* reason = "noconnection") {
    return T({A("DOWN"), ref, A("process"), who, A(reason)});
  }
};

}  // namespace

TEST_CASE_FIXTURE(fixture, "init and nodeup send discover to {Scope, Node}; nodedown does nothing") {
  core.init({atom("a@h"), atom("me@h"), atom("b@h")});
  REQUIRE(io.out.size() == 2);
  CHECK(str(io.out[0].dest) == "{pg,a@h}");
  CHECK(io.out[0].msg == T({A("discover"), self}));
  CHECK(io.out[0].noconnect);
  io.clear();
  CHECK(core.handle_info(T({A("nodeup"), A("c@h")})));
  REQUIRE(io.out.size() == 1);
  CHECK(str(io.out[0].dest) == "{pg,c@h}");
  CHECK_FALSE(io.out[0].noconnect);  // OTP 25 uses a plain ! here (pg.erl:443)
  io.clear();
  CHECK(core.handle_info(T({A("nodedown"), A("c@h")})));
  CHECK(io.out.empty());
}

TEST_CASE_FIXTURE(fixture, "discover from a new peer: sync, monitor, discover back; from a known one: sync only") {
  term m1 = pid("me@h", 10);
  CHECK(str(core.join_local(A("g"), m1)) == "ok");
  io.clear();
  CHECK(core.handle_info(T({A("discover"), peer})));
  REQUIRE(io.out.size() == 2);
  CHECK(io.out[0].dest == peer);
  CHECK(io.out[0].msg == T({A("$gen_cast"), T({A("sync"), self, L({T({A("g"), L({m1})})})})}));
  CHECK(io.out[1].msg == T({A("discover"), self}));
  CHECK(io.out[1].noconnect);
  REQUIRE(io.monitors.size() == 1);
  CHECK(io.monitors[0].first == peer);
  io.clear();
  CHECK(core.handle_info(T({A("discover"), peer})));
  CHECK(io.out.size() == 1);
  CHECK(io.monitors.empty());
}

TEST_CASE_FIXTURE(fixture, "local joins: one monitor per member, broadcast to peers, counted joins") {
  add_peer(peer);
  io.clear();
  term m1 = pid("me@h", 10), m2 = pid("me@h", 11);
  CHECK(str(core.join_local(A("g"), m1)) == "ok");
  CHECK(str(core.join_local(A("g"), L({m1, m2}))) == "ok");
  CHECK(io.monitors.size() == 2);
  REQUIRE(io.out.size() == 2);
  CHECK(io.out[0].msg == T({A("join"), self, A("g"), m1}));
  CHECK(io.out[1].msg == T({A("join"), self, A("g"), L({m1, m2})}));
  CHECK(io.out[1].noconnect);
  CHECK(core.get_members(A("g")) == L({m1, m2, m1}));  // pg's order: Pids ++ All
  CHECK(core.get_local_members(A("g")) == L({m1, m2, m1}));
  io.clear();
  CHECK(str(core.leave_local(A("g"), m1)) == "ok");
  CHECK(core.get_members(A("g")) == L({m2, m1}));
  CHECK(io.demonitors.empty());  // still a member once
  CHECK(io.out[0].msg == T({A("leave"), self, m1, L({A("g")})}));
  CHECK(str(core.leave_local(A("g"), m1)) == "ok");
  CHECK(io.demonitors.size() == 1);
  io.clear();
  CHECK(str(core.leave_local(A("g"), m1)) == "not_joined");
  CHECK(io.out.empty());
  CHECK(str(core.leave_local(A("other"), m2)) == "not_joined");
  CHECK(str(core.which_groups()) == "[g]");
  CHECK(str(core.leave_local(A("g"), m2)) == "ok");
  CHECK(str(core.which_groups()) == "[]");
}

TEST_CASE_FIXTURE(fixture, "calls: join_local/leave_local with remote pids are refused") {
  auto r = core.handle_call(T({A("join_local"), A("g"), pid("ex@h", 3)}), pid("me@h", 9));
  REQUIRE(r);
  CHECK(str(*r) == "badarg");
  CHECK(core.which_groups() == term::nil());
  r = core.handle_call(T({A("join_local"), A("g"), pid("me@h", 3)}), pid("me@h", 9));
  CHECK(str(*r) == "ok");
  CHECK_FALSE(core.handle_call(A("whatever"), pid("me@h", 9)));
}

TEST_CASE_FIXTURE(fixture, "remote join and leave only from known peers") {
  term r1 = pid("ex@h", 7), r2 = pid("ex@h", 8);
  CHECK(core.handle_info(T({A("join"), peer, A("g"), r1})));
  CHECK(core.get_members(A("g")) == term::nil());  // not in the overlay: ignored (pg.erl:372)
  add_peer(peer);
  CHECK(core.handle_info(T({A("join"), peer, A("g"), r1})));
  CHECK(core.handle_info(T({A("join"), peer, A("h"), L({r1, r2})})));
  CHECK(core.get_members(A("g")) == L({r1}));
  CHECK(core.get_local_members(A("g")) == term::nil());
  CHECK(core.handle_info(T({A("leave"), peer, r1, L({A("g"), A("h"), A("never")})})));
  CHECK(core.get_members(A("g")) == term::nil());
  CHECK(core.get_members(A("h")) == L({r2}));
  CHECK(core.handle_info(T({A("leave"), peer, L({r2}), L({A("h")})})));
  CHECK(core.which_groups() == term::nil());
}

TEST_CASE_FIXTURE(fixture, "sync replaces the peer's groups; DOWN of the peer removes them") {
  term r1 = pid("ex@h", 7), r2 = pid("ex@h", 8), m = pid("me@h", 4);
  core.join_local(A("b"), m);
  add_peer(peer, L({T({A("a"), L({r1})}), T({A("b"), L({r1, r2})})}));
  REQUIRE(io.monitors.size() == 2);
  CHECK(io.monitors[1].first == peer);
  CHECK(core.get_members(A("b")) == L({r1, r2, m}));
  // a resync: a gone, b changed, c new
  add_peer(peer, L({T({A("b"), L({r2})}), T({A("c"), L({r1})})}));
  CHECK(core.get_members(A("a")) == term::nil());
  CHECK(core.get_members(A("b")) == L({r2, m}));
  CHECK(core.get_members(A("c")) == L({r1}));
  CHECK(io.monitors.size() == 2);  // a known peer is not monitored twice
  term ref = io.ref_of(peer);
  CHECK(core.handle_info(down(pid("me@h", 99), peer)));  // another ref: not the peer's monitor
  CHECK(core.get_members(A("c")) == L({r1}));
  CHECK(core.handle_info(down(ref, peer)));
  CHECK(core.get_members(A("b")) == L({m}));
  CHECK(core.get_members(A("c")) == term::nil());
  CHECK_FALSE(core.knows_peer(peer));
  io.clear();
  core.join_local(A("b"), m);
  CHECK(io.out.empty());  // no peers left to tell
}

TEST_CASE_FIXTURE(fixture, "a local member exiting leaves every group it joined, told to peers in one leave") {
  add_peer(peer);
  term m = pid("me@h", 4);
  core.join_local(A("a"), m);
  core.join_local(A("b"), m);
  core.join_local(A("a"), m);
  term ref = io.ref_of(m);
  io.clear();
  CHECK(core.handle_info(down(ref, m, "normal")));
  REQUIRE(io.out.size() == 1);
  CHECK(io.out[0].msg == T({A("leave"), self, m, L({A("a"), A("b"), A("a")})}));
  CHECK(core.which_groups() == term::nil());
}

TEST_CASE_FIXTURE(fixture, "scope and group monitors get join and leave events") {
  term w = pid("me@h", 30), m = pid("me@h", 4), r = pid("ex@h", 5);
  add_peer(peer, L({T({A("x"), L({r})})}));
  auto rep = core.handle_call(A("monitor"), w);
  REQUIRE(rep);
  term sref = rep->element(0);
  CHECK(str(rep->element(1)).find("x => [") != std::string::npos);
  auto grep = core.handle_call(T({A("monitor"), A("g")}), w);
  REQUIRE(grep);
  term gref = grep->element(0);
  CHECK(grep->element(1) == term::nil());
  io.clear();
  core.join_local(A("g"), m);
  std::vector<term> events;
  for (auto& s : io.out)
    if (s.dest == w) events.push_back(s.msg);
  REQUIRE(events.size() == 2);
  CHECK(events[0] == T({sref, A("join"), A("g"), L({m})}));
  CHECK(events[1] == T({gref, A("join"), A("g"), L({m})}));
  io.clear();
  CHECK(core.handle_info(down(term(42), peer)));  // not a monitor we hold: nothing
  CHECK(str(*core.handle_call(T({A("demonitor"), gref}), w)) == "ok");
  CHECK(str(*core.handle_call(T({A("demonitor"), gref}), w)) == "false");
  core.leave_local(A("g"), m);
  events.clear();
  for (auto& s : io.out)
    if (s.dest == w) events.push_back(s.msg);
  REQUIRE(events.size() == 1);
  CHECK(events[0] == T({sref, A("leave"), A("g"), L({m})}));
  // the watcher dies: its monitor is dropped
  io.clear();
  CHECK(core.handle_info(down(sref, w, "normal")));
  core.join_local(A("g"), m);
  CHECK(std::none_of(io.out.begin(), io.out.end(), [&](const sent& s) { return s.dest == w; }));
}

TEST_CASE_FIXTURE(fixture, "a watcher that is also a member: either DOWN first is handled") {
  term w = pid("me@h", 30);
  core.join_local(A("g"), w);
  term mref = io.ref_of(w);
  auto rep = core.handle_call(A("monitor"), w);
  term sref = rep->element(0);
  CHECK(core.handle_info(down(sref, w, "normal")));  // OTP 25 would crash here with a case_clause
  CHECK(core.get_members(A("g")) == L({w}));
  CHECK(core.handle_info(down(mref, w, "normal")));
  CHECK(core.get_members(A("g")) == term::nil());
}

TEST_CASE_FIXTURE(fixture, "unexpected or malformed messages are ignored without output") {
  add_peer(peer);
  io.clear();
  CHECK_FALSE(core.handle_info(A("hello")));
  CHECK_FALSE(core.handle_info(T({A("discover"), A("notapid")})));
  CHECK_FALSE(core.handle_info(T({A("join"), peer, A("g"), L({A("x")})})));
  CHECK_FALSE(core.handle_info(T({A("leave"), peer, pid("ex@h", 1), A("notalist")})));
  CHECK_FALSE(core.handle_info(T({A("update"), peer, A("notalist")})));
  CHECK_FALSE(core.handle_info(T({A("local_data"), peer, 1, L({})})));  // not a map
  CHECK_FALSE(core.handle_cast(A("sync")));
  CHECK(core.handle_cast(T({A("sync"), peer, L({A("bad")})})));  // a sync with a bad entry changes nothing
  CHECK(io.out.empty());
  CHECK(core.which_groups() == term::nil());
}

TEST_CASE_FIXTURE(fixture, "which_local_groups and many groups") {
  term m = pid("me@h", 4), r = pid("ex@h", 5);
  add_peer(peer, L({T({A("remote_only"), L({r})})}));
  for (int i = 0; i < 1000; ++i) core.join_local(term(i), m);
  CHECK(core.group_count() == 1001);
  std::vector<term> v;
  core.which_local_groups().list_to_vector(v);
  CHECK(v.size() == 1000);
  CHECK(sorted(core.get_members(A("remote_only"))) == L({r}));
}
