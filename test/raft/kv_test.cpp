// The KV state machine's snapshot bytes: kv_serializer gives serialize()'s bytes (term_to_binary of
// {kv, Data, Locks}) however it is stepped, whatever the machine does meanwhile (writes, deletes and inserts of keys
// before, at and after the serializer's cursor, lock grants and releases, a restore, a second serializer, the machine
// destroyed), and restore() takes them back.
#include <doctest.h>

#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "etf/codec.hpp"
#include "raft/kv.hpp"

using cnode::etf::atom;
using cnode::etf::term;
using cnode::raft::kv_machine;
using cnode::raft::kv_serializer;

namespace {
term A(const char* s) { return term(atom(s)); }
term bin(const std::string& s) { return term::binary(std::string_view(s)); }
term owner() { return term::pid({atom("a@h"), 7, 0, 1}); }

std::string encoded(const term& t) {
  auto b = cnode::etf::encode(t);
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

std::string stepped(const kv_machine& m, std::size_t per_step, kv_machine* mutate = nullptr) {
  kv_serializer s(m);
  int i = 0;
  while (!s.step(per_step)) {
    if (mutate) mutate->apply(term::tuple({A("put"), bin("late-" + std::to_string(i)), term(i)}), 100000 + i);
    ++i;
  }
  return s.take();
}
}  // namespace

TEST_CASE("kv snapshot: an empty machine is {kv, [], []}") {
  kv_machine m;
  const auto want = encoded(term::tuple({A("kv"), term::list({}), term::list({})}));
  CHECK(m.serialize() == want);
  CHECK(stepped(m, 1) == want);
}

TEST_CASE("kv snapshot: stepped bytes are term_to_binary's, and restore takes them back") {
  kv_machine m;
  std::map<term, term> data;
  std::uint64_t index = 0;
  for (int i = 0; i < 1000; ++i) {
    term k = bin("key-" + std::to_string(i)), v = i % 3 ? term(i) : term::tuple({A("v"), bin(std::string(70, 'x'))});
    m.apply(term::tuple({A("put"), k, v}), ++index);
    data.insert_or_assign(k, v);
  }
  m.apply(term::tuple({A("delete"), bin("key-5")}), ++index);
  data.erase(bin("key-5"));
  std::vector<term> locks;
  for (const char* name : {"l1", "l2", "l3"}) {
    ++index;
    REQUIRE(m.apply(term::tuple({A("lock"), A(name), term(5000), owner()}), index).reply ==
            term::tuple({A("ok"), term(index)}));
    locks.push_back(term::tuple({A(name), owner(), term(index), term(5000)}));
  }
  std::vector<term> kvs;
  for (const auto& [k, v] : data) kvs.push_back(term::tuple({k, v}));
  const auto want = encoded(term::tuple({A("kv"), term::list(std::move(kvs)), term::list(std::move(locks))}));
  CHECK(m.serialize() == want);
  for (std::size_t per : {1u, 7u, 999u, 1000u, 1003u, 5000u}) CHECK(stepped(m, per) == want);
  // Changes made between steps are not in the bytes: the state is the one captured at the start.
  kv_machine copy;
  REQUIRE(copy.restore(want));
  CHECK(stepped(copy, 10, &copy) == want);
  CHECK(copy.get(bin("late-0")) == term::tuple({A("ok"), term(0)}));
  // restore: the same state back.
  kv_machine back;
  REQUIRE(back.restore(want));
  CHECK(back.size() == 999);
  CHECK(back.get(bin("key-4")) == term::tuple({A("ok"), term(4)}));
  CHECK(back.get(bin("key-5")) == A("not_found"));
  CHECK(back.locks().size() == 3);
  CHECK(back.serialize() == want);
}

namespace {
term put(const term& k, const term& v) { return term::tuple({A("put"), k, v}); }
term del(const term& k) { return term::tuple({A("delete"), k}); }
term ok_get(const term& v) { return term::tuple({A("ok"), v}); }
std::string named(const char* prefix, int i) {
  std::string s(prefix);
  s += std::to_string(i);
  return s;
}
}  // namespace

TEST_CASE("kv snapshot: writes before, at and past the cursor between steps leave the captured state") {
  // Keys 0..99, 10 a step: after the first step the cursor is key 9, after the second key 19.
  kv_machine m;
  std::uint64_t index = 0;
  for (int i = 0; i < 100; ++i) m.apply(put(term(i), term(i * 10)), ++index);
  REQUIRE(m.apply(term::tuple({A("lock"), A("l5"), term(5000), owner()}), ++index).granted);
  REQUIRE(m.apply(term::tuple({A("lock"), A("l7"), term(5000), owner()}), ++index).granted);
  const auto want = m.serialize();
  kv_serializer s(m);
  REQUIRE_FALSE(s.step(10));
  m.apply(put(term(9), A("at")), ++index);      // at the cursor: encoded already
  m.apply(put(term(8), A("before")), ++index);  // before it
  m.apply(del(term(3)), ++index);
  m.apply(put(term(10), A("next")), ++index);   // the next key to encode
  m.apply(del(term(11)), ++index);              // deleted ahead: still in the bytes
  m.apply(put(term(10.5), A("new")), ++index);  // inserted ahead, absent at capture: not in them
  m.apply(put(term(1000), A("new")), ++index);  // past the last key
  m.apply(put(term(50), A("once")), ++index);   // written twice: the first write saves the captured value
  m.apply(put(term(50), A("twice")), ++index);
  m.apply(del(term(60)), ++index);              // deleted then put back
  m.apply(put(term(60), A("back")), ++index);
  m.apply(put(term(20.0), A("float")), ++index);  // 20.0 == 20 in term order: the map's key stays 20
  m.apply(term::tuple({A("incr"), term(30), term(1)}), ++index);
  m.apply(term::tuple({A("cas"), term(31), term(310), A("cas")}), ++index);
  m.apply(del(term(99)), ++index);              // the last key
  REQUIRE(m.apply(term::tuple({A("unlock"), A("l5"), term(101)}), index + 1).reply == A("ok"));
  ++index;
  REQUIRE(m.apply(term::tuple({A("lock"), A("l6"), term(5000), owner()}), ++index).granted);
  REQUIRE_FALSE(s.step(10));  // cursor 19
  m.apply(put(term(19), A("at")), ++index);
  m.apply(del(term(20)), ++index);  // the next key, saved once already: its captured value stays
  m.apply(put(term(19.5), A("new")), ++index);
  m.apply(del(term(10.5)), ++index);  // before the cursor, never in the snapshot
  while (!s.step(10)) {
    ++index;
    m.apply(put(term(static_cast<std::int64_t>(index)), A("late")), index);
  }
  CHECK(s.take() == want);
  CHECK(m.get(term(50)) == ok_get(A("twice")));
  CHECK(m.get(term(11)) == A("not_found"));
  CHECK(m.get(term(30)) == ok_get(term(301)));
  CHECK(m.locks().count(kv_machine::lock_key(A("l6"))) == 1);
  kv_machine back;
  REQUIRE(back.restore(want));
  CHECK(back.get(term(11)) == ok_get(term(110)));
  CHECK(back.get(term(20)) == ok_get(term(200)));
  CHECK(back.locks().size() == 2);
}

TEST_CASE("kv snapshot: a restore or the machine's end while a serializer is in flight") {
  kv_machine other;
  for (int i = 0; i < 50; ++i) other.apply(put(bin(named("o", i)), term(i)), i + 1);
  const auto other_bytes = other.serialize();
  SUBCASE("restore") {
    kv_machine m;
    for (int i = 0; i < 100; ++i) m.apply(put(term(i), term(i)), i + 1);
    const auto want = m.serialize();
    kv_serializer s(m);
    REQUIRE_FALSE(s.step(30));
    m.apply(put(term(40), A("changed")), 200);  // saved before the restore
    m.apply(del(term(41)), 201);
    REQUIRE(m.restore(other_bytes));
    m.apply(put(term(45), A("after")), 202);  // on the new state: the serializer no longer follows it
    m.apply(del(bin("o3")), 203);
    while (!s.step(7)) {
    }
    CHECK(s.take() == want);
    CHECK(m.size() == 50);
    CHECK(m.get(term(40)) == A("not_found"));
    CHECK(m.get(term(45)) == ok_get(A("after")));
    // A serializer made after the restore sees the new state.
    kv_serializer s2(m);
    while (!s2.step(3)) {
    }
    other.apply(put(term(45), A("after")), 202);
    other.apply(del(bin("o3")), 203);
    CHECK(s2.take() == other.serialize());
  }
  SUBCASE("the machine destroyed first") {
    auto m = std::make_unique<kv_machine>();
    for (int i = 0; i < 100; ++i) m->apply(put(term(i), term(i)), i + 1);
    const auto want = m->serialize();
    kv_serializer s(*m);
    REQUIRE_FALSE(s.step(30));
    m->apply(del(term(70)), 200);
    m.reset();
    while (!s.step(7)) {
    }
    CHECK(s.take() == want);
  }
  SUBCASE("the serializer destroyed first, then writes") {
    kv_machine m;
    for (int i = 0; i < 100; ++i) m.apply(put(term(i), term(i)), i + 1);
    {
      kv_serializer s(m);
      REQUIRE_FALSE(s.step(30));
    }
    m.apply(put(term(70), A("x")), 200);
    CHECK(m.get(term(70)) == ok_get(A("x")));
  }
}

TEST_CASE("kv snapshot: random writes, locks, restores and a second serializer between random steps") {
  // Every serializer's bytes must be serialize()'s at its start; keys are drawn from a small space (integers, the
  // floats between them and equal to them, binaries) so that writes land before, at and past the cursor.
  std::mt19937 rng(12345);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  auto key = [&]() -> term {
    const int i = pick(120);
    switch (pick(4)) {
      case 0: return term(static_cast<double>(i) + 0.5);
      case 1: return term(static_cast<double>(i));  // == i in term order
      case 2: return bin(named("k", i));
      default: return term(i);
    }
  };
  std::vector<std::string> states;  // restorable states
  for (int r = 0; r < 3; ++r) {
    kv_machine t;
    for (int i = 0; i < 40 * r; ++i) t.apply(put(key(), term(i)), i + 1);
    states.push_back(t.serialize());
  }
  std::uint64_t index = 0;
  int checked = 0, restores = 0, seconds = 0;
  for (int round = 0; round < 300; ++round) {
    kv_machine m;
    const int n = pick(200);
    for (int i = 0; i < n; ++i) m.apply(put(key(), term(i)), ++index);
    for (int i = 0; i < pick(8); ++i) m.apply(term::tuple({A("lock"), term(pick(12)), term(5000), owner()}), ++index);
    auto op = [&] {
      const int o = pick(100);
      ++index;
      if (o < 35) m.apply(put(key(), term(static_cast<std::int64_t>(index))), index);
      else if (o < 60) m.apply(del(key()), index);
      else if (o < 68) m.apply(term::tuple({A("incr"), key(), term(1)}), index);
      else if (o < 75) m.apply(term::tuple({A("cas"), key(), term(pick(200)), A("c")}), index);
      else if (o < 85) m.apply(term::tuple({A("lock"), term(pick(12)), term(5000), owner()}), index);
      else if (o < 95 && !m.locks().empty()) {
        auto it = m.locks().begin();
        std::advance(it, pick(static_cast<int>(m.locks().size())));
        const auto l = it->second;
        if (pick(2)) m.apply(term::tuple({A("unlock"), l.name, term(l.token)}), index);
        else m.apply(term::tuple({A("put_fenced"), key(), A("f"), term::tuple({l.name, term(l.token)})}), index);
      } else if (o >= 99) {
        REQUIRE(m.restore(states[static_cast<std::size_t>(pick(3))]));
        ++restores;
      }
    };
    const auto want = m.serialize();
    kv_serializer s(m);
    std::unique_ptr<kv_serializer> second;
    std::string want2;
    bool done = false, done2 = true;
    while (!done || !done2) {
      if (!done) done = s.step(1 + static_cast<std::size_t>(pick(25)));
      if (second && !done2) done2 = second->step(1 + static_cast<std::size_t>(pick(25)));
      if (!second && pick(10) == 0) {
        want2 = m.serialize();
        second = std::make_unique<kv_serializer>(m);
        done2 = false;
        ++seconds;
      }
      for (int i = pick(6); i > 0; --i) op();
    }
    CHECK(s.take() == want);
    ++checked;
    if (second) {
      CHECK(second->take() == want2);
      ++checked;
    }
    kv_machine back;
    REQUIRE(back.restore(want));
  }
  CHECK(checked > 300);
  CHECK(restores > 10);
  CHECK(seconds > 50);
}
