// The KV state machine's snapshot bytes: kv_serializer gives serialize()'s bytes (term_to_binary of
// {kv, Data, Locks}) however it is stepped, whatever the machine does meanwhile, and restore() takes them back.
#include <doctest.h>

#include <map>
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
