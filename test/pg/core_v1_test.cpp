// scope_core speaking OTP 29's pg protocol (version 1, data_publisher.erl) to peers that discover it with
// {discover, Pid, 1}, and version 0 to the others, in the same scope.
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
  std::vector<term> to(const term& dest) const {
    std::vector<term> r;
    for (const auto& s : out)
      if (s.dest == dest) r.push_back(s.msg);
    return r;
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
term M(std::initializer_list<std::pair<term, term>> kv) { return term::map(kv); }
term N() { return term::nil(); }
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
  term p29 = pid("new@h", 50);  // an OTP 29 scope
  term p25 = pid("old@h", 60);  // an OTP 25/27 scope
  term discover1(const term& p) { return T({A("discover"), p, term(1)}); }
  term down(const term& ref, const term& who, const char* reason = "noconnection") {
    return T({A("DOWN"), ref, A("process"), who, A(reason)});
  }
  term cast(term m) { return T({A("$gen_cast"), std::move(m)}); }
};

}  // namespace

TEST_CASE_FIXTURE(fixture, "a version 1 discover: local_data cast, monitor, discover 1 back; once known only the cast") {
  term m1 = pid("me@h", 10);
  core.join_local(A("g"), L({m1, m1}));
  io.clear();
  CHECK(core.handle_info(discover1(p29)));
  REQUIRE(io.out.size() == 2);
  CHECK(io.out[0].dest == p29);
  CHECK_FALSE(io.out[0].noconnect);  // gen_server:cast
  CHECK(io.out[0].msg == cast(T({A("local_data"), self, term(1), M({{A("g"), L({m1, m1})}})})));
  CHECK(io.out[1].msg == discover1(self));
  CHECK(io.out[1].noconnect);
  REQUIRE(io.monitors.size() == 1);
  CHECK(io.monitors[0].first == p29);
  CHECK(core.peer_version(p29) == 1);
  io.clear();
  CHECK(core.handle_info(discover1(p29)));
  REQUIRE(io.out.size() == 1);
  CHECK(io.out[0].msg == cast(T({A("local_data"), self, term(1), M({{A("g"), L({m1, m1})}})})));
  CHECK(io.monitors.empty());
}

TEST_CASE_FIXTURE(fixture, "a discover for a newer version is answered in version 1; a non-integer one in 0") {
  CHECK(core.handle_info(T({A("discover"), p29, term(7)})));
  REQUIRE(io.out.size() == 2);
  CHECK(io.out[0].msg == cast(T({A("local_data"), self, term(1), M({})})));
  CHECK(io.out[1].msg == discover1(self));
  io.clear();
  CHECK(core.handle_info(T({A("discover"), p25, A("future")})));
  REQUIRE(io.out.size() == 2);
  CHECK(io.out[0].msg == cast(T({A("sync"), self, N()})));
  CHECK(io.out[1].msg == T({A("discover"), self}));
  CHECK(core.peer_version(p25) == 0);
}

TEST_CASE_FIXTURE(fixture, "nodeup and init discover with version 0, which every pg since 23 understands") {
  core.init({atom("new@h")});
  REQUIRE(io.out.size() == 1);
  CHECK(io.out[0].msg == T({A("discover"), self}));
  io.clear();
  CHECK(core.handle_info(T({A("nodeup"), A("new@h")})));
  REQUIRE(io.out.size() == 1);
  CHECK(io.out[0].msg == T({A("discover"), self}));
}

TEST_CASE_FIXTURE(fixture, "OTP 29's answer to our version 0 discover: sync, then discover 1, which moves it to 1") {
  term r = pid("new@h", 7), m = pid("me@h", 4);
  core.join_local(A("mine"), m);
  io.clear();
  // data_publisher answers {discover, Pid} with the translated local data (a sync) and, for a new peer,
  // {discover, self(), 1}
  CHECK(core.handle_cast(T({A("sync"), p29, L({T({A("g"), L({r})})})})));
  CHECK(core.peer_version(p29) == 0);
  CHECK(core.handle_info(discover1(p29)));
  CHECK(core.peer_version(p29) == 1);
  REQUIRE(io.to(p29).size() == 1);  // known from the sync: only the local_data, no second monitor or discover
  CHECK(io.to(p29)[0] == cast(T({A("local_data"), self, term(1), M({{A("mine"), L({m})}})})));
  // a later sync from it (it answers each of our version 0 discovers so) keeps version 1
  CHECK(core.handle_cast(T({A("sync"), p29, L({T({A("g"), L({r})})})})));
  CHECK(core.peer_version(p29) == 1);
  CHECK(core.get_members(A("g")) == L({r}));
}

TEST_CASE_FIXTURE(fixture, "joins, leaves and exits go to each peer in its own version") {
  CHECK(core.handle_info(discover1(p29)));
  CHECK(core.handle_info(T({A("discover"), p25})));
  io.clear();
  term m1 = pid("me@h", 10), m2 = pid("me@h", 11);
  core.join_local(A("g"), m1);
  term m1ref = io.ref_of(m1);
  core.join_local(A("g"), L({m1, m2}));
  core.join_local(A("h"), m1);
  CHECK(io.to(p25) == std::vector<term>{T({A("join"), self, A("g"), m1}), T({A("join"), self, A("g"), L({m1, m2})}),
                                        T({A("join"), self, A("h"), m1})});
  CHECK(io.to(p29) == std::vector<term>{T({A("update"), self, L({T({A("g"), L({m1}), N()})})}),
                                        T({A("update"), self, L({T({A("g"), L({m1, m2}), N()})})}),
                                        T({A("update"), self, L({T({A("h"), L({m1}), N()})})})});
  io.clear();
  // a leave of a list with a pid that is not in the group: OTP 29 sends the whole list too
  term stranger = pid("me@h", 12);
  CHECK(str(core.leave_local(A("g"), L({m2, stranger}))) == "ok");
  CHECK(io.to(p25) == std::vector<term>{T({A("leave"), self, L({m2, stranger}), L({A("g")})})});
  CHECK(io.to(p29) == std::vector<term>{T({A("update"), self, L({T({A("g"), N(), L({m2, stranger})})})})});
  io.clear();
  // m1 exits, in g twice and in h once: one leave for OTP 25, one remove per join for OTP 29
  CHECK(core.handle_info(down(m1ref, m1, "normal")));
  CHECK(io.to(p25) == std::vector<term>{T({A("leave"), self, m1, L({A("h"), A("g"), A("g")})})});
  CHECK(io.to(p29) == std::vector<term>{T({A("update"), self, L({T({A("h"), N(), L({m1})}),
                                                                  T({A("g"), N(), L({m1})}),
                                                                  T({A("g"), N(), L({m1})})})})});
  CHECK(core.which_groups() == N());
}

TEST_CASE_FIXTURE(fixture, "local_data from a new peer: monitored, its members added and announced, version 1") {
  term w = pid("me@h", 30), r1 = pid("new@h", 7), r2 = pid("new@h", 8);
  term sref = core.handle_call(A("monitor"), w)->element(0);
  io.clear();
  CHECK(core.handle_cast(T({A("local_data"), p29, term(1), M({{A("a"), L({r1})}, {A("b"), L({r1, r2})}})})));
  CHECK(core.handle_info(down(term(42), p29)));  // not the peer's monitor: nothing
  CHECK(core.get_members(A("a")) == L({r1}));
  REQUIRE(io.monitors.size() == 1);
  CHECK(io.monitors[0].first == p29);
  CHECK(core.peer_version(p29) == 1);
  CHECK(core.get_members(A("a")) == L({r1}));
  CHECK(core.get_members(A("b")) == L({r1, r2}));
  CHECK(core.get_local_members(A("b")) == N());
  CHECK(sorted(term::list(io.to(w))) ==
        sorted(L({T({sref, A("join"), A("a"), L({r1})}), T({sref, A("join"), A("b"), L({r1, r2})})})));
  CHECK(io.to(p29).empty());  // data_publisher sends no discover after local_data, nor do we
  io.clear();
  // a second local_data is a diff: a gone, b loses r2 and gains r1 again, c new
  CHECK(core.handle_info(T({A("local_data"), p29, term(1), M({{A("b"), L({r1, r1})}, {A("c"), L({r2})}})})));
  CHECK(core.get_members(A("a")) == N());
  CHECK(sorted(core.get_members(A("b"))) == L({r1, r1}));
  CHECK(core.get_members(A("c")) == L({r2}));
  CHECK(io.monitors.empty());
  CHECK(sorted(term::list(io.to(w))) ==
        sorted(L({T({sref, A("leave"), A("a"), L({r1})}), T({sref, A("join"), A("b"), L({r1})}),
                  T({sref, A("leave"), A("b"), L({r2})}), T({sref, A("join"), A("c"), L({r2})})})));
}

TEST_CASE_FIXTURE(fixture, "updates from a known version 1 peer add and remove; its 'DOWN' removes what is left") {
  term r1 = pid("new@h", 7), r2 = pid("new@h", 8), m = pid("me@h", 4);
  core.join_local(A("g"), m);
  term u = T({A("update"), p29, L({T({A("g"), L({r1, r2}), N()})})});
  CHECK(core.handle_info(u));
  CHECK(core.get_members(A("g")) == L({m}));  // not a peer yet: dropped, as data_publisher does
  CHECK(core.handle_cast(T({A("local_data"), p29, term(1), M({})})));
  term pref = io.ref_of(p29);
  CHECK(core.handle_info(u));
  CHECK(core.get_members(A("g")) == L({r1, r2, m}));
  CHECK(core.get_local_members(A("g")) == L({m}));
  // one update, several groups; a remove of a pid the group lacks is harmless
  CHECK(core.handle_info(T({A("update"), p29, L({T({A("g"), N(), L({r1, pid("new@h", 99)})}),
                                                  T({A("h"), L({r1}), N()})})})));
  CHECK(core.get_members(A("g")) == L({r2, m}));
  CHECK(core.get_members(A("h")) == L({r1}));
  CHECK(core.handle_info(T({A("update"), p29, L({T({A("h"), N(), L({r1})})})})));
  CHECK(core.get_members(A("h")) == N());
  CHECK(str(core.which_groups()) == "[g]");
  // malformed: the whole update is dropped
  CHECK(core.handle_info(T({A("update"), p29, L({T({A("x"), L({r1}), N()}), T({A("y"), A("bad"), N()})})})));
  CHECK(core.get_members(A("x")) == N());
  CHECK(core.handle_info(down(pref, p29)));
  CHECK(core.get_members(A("g")) == L({m}));
  CHECK_FALSE(core.knows_peer(p29));
}

TEST_CASE_FIXTURE(fixture, "version 0 messages from a version 1 peer still count (both forms are accepted)") {
  term r1 = pid("new@h", 7);
  CHECK(core.handle_info(discover1(p29)));
  CHECK(core.handle_info(T({A("join"), p29, A("g"), r1})));
  CHECK(core.get_members(A("g")) == L({r1}));
  CHECK(core.handle_info(T({A("update"), p29, L({T({A("g"), L({r1}), N()})})})));
  CHECK(core.get_members(A("g")) == L({r1, r1}));
  CHECK(core.handle_info(T({A("leave"), p29, r1, L({A("g")})})));
  CHECK(core.handle_info(T({A("update"), p29, L({T({A("g"), N(), L({r1})})})})));
  CHECK(core.get_members(A("g")) == N());
  CHECK(core.peer_version(p29) == 1);
}

TEST_CASE_FIXTURE(fixture, "a thundering herd: 200 peers of both versions discover at once and all get answers") {
  term m = pid("me@h", 4);
  core.join_local(A("g"), m);
  io.clear();
  std::vector<term> peers;
  for (std::uint32_t i = 0; i < 200; ++i) {
    term p = pid(i % 2 ? "new@h" : "old@h", 1000 + i);
    peers.push_back(p);
    CHECK(core.handle_info(i % 2 ? discover1(p) : T({A("discover"), p})));
    // and each sends its own data right away: one member per peer in g
    term r = pid(i % 2 ? "new@h" : "old@h", 5000 + i);
    if (i % 2)
      CHECK(core.handle_cast(T({A("local_data"), p, term(1), M({{A("g"), L({r})}})})));
    else
      CHECK(core.handle_cast(T({A("sync"), p, L({T({A("g"), L({r})})})})));
  }
  CHECK(core.peer_count() == 200);
  CHECK(io.monitors.size() == 200);
  std::vector<term> v;
  core.get_members(A("g")).list_to_vector(v);
  CHECK(v.size() == 201);
  for (std::uint32_t i = 0; i < 200; ++i) {
    auto got = io.to(peers[i]);
    REQUIRE(got.size() == 2);
    if (i % 2)
      CHECK(got[0] == cast(T({A("local_data"), self, term(1), M({{A("g"), L({m})}})})));
    else
      CHECK(got[0] == cast(T({A("sync"), self, L({T({A("g"), L({m})})})})));
    CHECK(core.peer_version(peers[i]) == (i % 2 ? 1 : 0));
  }
  // one join now reaches all 200, each in its version
  io.clear();
  core.join_local(A("h"), m);
  CHECK(io.out.size() == 200);
  CHECK(std::all_of(io.out.begin(), io.out.end(), [](const sent& s) {
    return s.msg.element(0).is_atom(atom(s.dest.node_of() == atom("new@h") ? "update" : "join"));
  }));
}
