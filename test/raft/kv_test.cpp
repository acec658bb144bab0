// The KV state machine's snapshot bytes: kv_serializer gives serialize()'s bytes (term_to_binary of
// {kv, Data, Locks}) however it is stepped, whatever the machine does meanwhile (writes, deletes and inserts of keys
// before, at and after the serializer's cursor, lock grants and releases, a restore, a second serializer, the machine
// destroyed), and restore() takes them back. kv_loader loads them in steps while the machine goes on (requests
// answered from its own state, a second install, a serializer meanwhile), and kv_reaper frees states in steps.
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
using cnode::raft::kv_loader;
using cnode::raft::kv_machine;
using cnode::raft::kv_reaper;
using cnode::raft::kv_serializer;
using cnode::raft::kv_state;

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

namespace {
// Loads `bytes` `per` entries a step; between steps `between` runs (requests on the machine, say).
template <class F>
kv_loader::progress load(kv_loader& l, std::size_t per, F&& between) {
  auto p = kv_loader::progress::more;
  while ((p = l.step(per)) == kv_loader::progress::more) between();
  return p;
}
}  // namespace

TEST_CASE("kv install: a stepped load gives restore()'s state; the machine answers from its own meanwhile") {
  kv_machine leader;
  std::uint64_t index = 0;
  for (int i = 0; i < 1000; ++i) leader.apply(put(term(i), bin(named("v", i))), ++index);
  for (const char* name : {"a", "b"}) REQUIRE(leader.apply(term::tuple({A("lock"), A(name), term(900), owner()}), ++index).granted);
  const auto bytes = leader.serialize();
  for (std::size_t per : {1u, 3u, 512u, 1002u, 5000u}) {
    kv_machine m;  // a follower behind the leader: keys 0..9 and a key the leader has not
    for (int i = 0; i < 10; ++i) m.apply(put(term(i), A("old")), i + 1);
    m.apply(put(A("gone"), A("old")), 11);
    kv_loader l(bytes);
    int requests = 0;
    const auto p = load(l, per, [&] {
      // The state being loaded is not the machine's: gets and writes meanwhile see and change the old state.
      CHECK(m.get(term(3)) == ok_get(A("old")));
      CHECK(m.get(term(500)) == A("not_found"));
      m.apply(put(term(5), A("meanwhile")), 20);
      ++requests;
    });
    REQUIRE(p == kv_loader::progress::done);
    CHECK(requests == (per >= 1002 ? 0 : static_cast<int>((1002 + per - 1) / per) - 1));
    CHECK(l.loaded() == 1002);
    const kv_state old = m.replace(l.take());
    CHECK(old.data.size() == 11);
    CHECK(old.data.at(term(5)) == (requests ? A("meanwhile") : A("old")));
    CHECK(m.size() == 1000);
    CHECK(m.locks().size() == 2);
    CHECK(m.get(A("gone")) == A("not_found"));
    CHECK(m.get(term(5)) == ok_get(bin("v5")));
    CHECK(m.serialize() == bytes);
    kv_machine r;
    REQUIRE(r.restore(bytes));
    CHECK(r.serialize() == m.serialize());
  }
}

TEST_CASE("kv install: bad bytes are refused in some step, the machine untouched") {
  kv_machine src;
  for (int i = 0; i < 100; ++i) src.apply(put(term(i), term(i)), i + 1);
  REQUIRE(src.apply(term::tuple({A("lock"), A("l"), term(900), owner()}), 200).granted);
  const auto good = src.serialize();
  kv_machine m;
  m.apply(put(A("mine"), A("v")), 1);
  std::vector<std::string> bad = {
      "",
      good.substr(0, good.size() - 1),  // cut short
      good + "x",                       // trailing bytes
      encoded(term::tuple({A("kv"), term::list({term(1)}), term::list({})})),  // an entry that is no pair
      encoded(term::tuple({A("kv"), term::list({}), term::list({term::tuple({A("l"), A("nopid"), term(1), term(5)})})})),
      encoded(term::tuple({A("vk"), term::list({}), term::list({})})),
      encoded(term::tuple({A("kv"), term::list({}), term::list({}), term::list({})})),
  };
  // A flipped byte in an entry past the first step: found there, not before.
  // 131, {kv (ATOM_EXT), a LIST_EXT of {I, I} (SMALL_INTEGER_EXT: 6 bytes each): entry 50's tuple tag made unknown.
  std::string flipped = good;
  const std::size_t at = 3 + 5 + 5 + 6 * 50;
  REQUIRE(static_cast<std::uint8_t>(flipped[at]) == cnode::etf::tag::small_tuple);
  flipped[at] = static_cast<char>(0xff);
  bad.push_back(flipped);
  for (const auto& b : bad) {
    kv_loader l(b);
    CHECK(load(l, 7, [] {}) == kv_loader::progress::bad);
    CHECK(l.step(7) == kv_loader::progress::bad);  // and stays so
    CHECK_FALSE(m.restore(b));
  }
  {
    kv_loader l(flipped);
    CHECK(l.step(7) == kv_loader::progress::more);
  }
  CHECK(m.size() == 1);
  CHECK(m.get(A("mine")) == ok_get(A("v")));
  // Other encodings restore() takes (a compressed term) are loaded whole, in one step.
  std::vector<term> pairs;
  for (int i = 0; i < 200; ++i) pairs.push_back(term::tuple({term(i), bin(std::string(40, 'z'))}));
  auto z = cnode::etf::encode(term::tuple({A("kv"), term::list(std::move(pairs)), term::list({})}),
                              {.compression_level = 6});
  REQUIRE(z.size() > 1);
  REQUIRE(z[1] == cnode::etf::tag::compressed);
  kv_loader lz(std::string_view(reinterpret_cast<const char*>(z.data()), z.size()));
  CHECK(lz.step(1) == kv_loader::progress::done);
  kv_machine mz;
  mz.replace(lz.take());
  CHECK(mz.get(term(1)) == ok_get(bin(std::string(40, 'z'))));
  CHECK(mz.size() == 200);
}

TEST_CASE("kv install: a second install replaces the first mid-way; a serializer in flight keeps its capture") {
  kv_machine a, b;
  for (int i = 0; i < 300; ++i) a.apply(put(term(i), A("a")), i + 1);
  for (int i = 200; i < 700; ++i) b.apply(put(term(i), A("b")), i + 1);
  REQUIRE(b.apply(term::tuple({A("lock"), A("lb"), term(900), owner()}), 800).granted);
  const auto bytes_a = a.serialize(), bytes_b = b.serialize();
  kv_machine m;
  for (int i = 0; i < 50; ++i) m.apply(put(term(i), A("m")), i + 1);
  const auto want_m = m.serialize();
  kv_serializer capture(m);  // the member's own snapshot, begun before the installs
  REQUIRE_FALSE(capture.step(5));
  kv_reaper reaper;
  kv_loader first(bytes_a);
  REQUIRE(first.step(100) == kv_loader::progress::more);
  m.apply(put(term(7), A("meanwhile")), 60);
  REQUIRE_FALSE(capture.step(5));
  // A newer snapshot arrives: the first load is dropped, what it loaded freed in steps.
  reaper.add(first.take());
  CHECK(reaper.entries() == 100);
  kv_loader second(bytes_b);
  int steps = 0;
  REQUIRE(load(second, 64, [&] {
            ++steps;
            reaper.step(16);
            m.apply(put(term(1000 + steps), A("meanwhile")), 60 + steps);
            capture.step(1);
          }) == kv_loader::progress::done);
  // The serializer is still walking the old state: replace leaves it that state, and hands back nothing to free.
  const kv_state old = m.replace(second.take());
  CHECK(old.entries() == 0);
  CHECK(m.serialize() == bytes_b);
  m.apply(put(term(5), A("after")), 900);
  while (!capture.step(5)) {
  }
  CHECK(capture.take() == want_m);
  while (!reaper.step(16)) {
  }
  CHECK(reaper.empty());
  CHECK(m.get(term(5)) == ok_get(A("after")));
  CHECK(m.get(term(250)) == ok_get(A("b")));
  CHECK(m.get(term(7)) == A("not_found"));
  CHECK(m.size() == 501);
  // Without a serializer in flight the old state comes back whole, for the reaper.
  kv_loader third(bytes_a);
  REQUIRE(load(third, 1000, [] {}) == kv_loader::progress::done);
  kv_state back = m.replace(third.take());
  CHECK(back.data.size() == 501);
  CHECK(back.locks.size() == 1);
  reaper.add(std::move(back));
  std::size_t before = reaper.entries(), stepped = 0;
  while (!reaper.step(100)) {
    ++stepped;
    CHECK(reaper.entries() == before - 100 * stepped);
  }
  CHECK(stepped == 5);
  CHECK(m.serialize() == bytes_a);
}

TEST_CASE("kv install: random states loaded in random steps between random requests match restore()") {
  std::mt19937 rng(777);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  kv_reaper reaper;
  for (int round = 0; round < 200; ++round) {
    kv_machine src;
    std::uint64_t index = 0;
    for (int i = pick(300); i > 0; --i) {
      term k = pick(2) ? term(pick(500)) : bin(named("k", pick(500)));
      src.apply(put(k, pick(3) ? term(i) : term::tuple({A("v"), bin(std::string(static_cast<std::size_t>(pick(90)), 'x'))})), ++index);
    }
    for (int i = pick(5); i > 0; --i) src.apply(term::tuple({A("lock"), term(pick(9)), term(900), owner()}), ++index);
    const auto bytes = src.serialize();
    kv_machine m;
    for (int i = pick(100); i > 0; --i) m.apply(put(term(pick(500)), A("old")), i);
    const auto old_bytes = m.serialize();
    kv_machine mirror;  // what m must hold: the old state plus the requests meanwhile
    REQUIRE(mirror.restore(old_bytes));
    kv_loader l(bytes);
    auto p = kv_loader::progress::more;
    while ((p = l.step(1 + static_cast<std::size_t>(pick(40)))) == kv_loader::progress::more) {
      const term k = term(pick(500));
      const term c = pick(2) ? put(k, A("w")) : del(k);
      m.apply(c, 1000);
      mirror.apply(c, 1000);
      CHECK(m.get(k) == mirror.get(k));
      reaper.step(1 + static_cast<std::size_t>(pick(30)));
    }
    REQUIRE(p == kv_loader::progress::done);
    kv_state old = m.replace(l.take());
    kv_machine was;
    was.replace(std::move(old));
    CHECK(was.serialize() == mirror.serialize());
    reaper.add(was.replace({}));
    CHECK(m.serialize() == bytes);
  }
  while (!reaper.step(100)) {
  }
}
