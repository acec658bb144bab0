// The term encoding: every object round-trips, and decoding any damaged or random term returns malformed instead
// of crashing or accepting something that breaks the types' invariants.
#include <doctest.h>

#include "crdt/codec.hpp"
#include "etf/codec.hpp"
#include "test/crdt_core/support.hpp"

using namespace crdt_test;

namespace {

template <class T>
object random_object(rng_t& rng) {
  history<T> h(rng, 3, 1 + static_cast<int>(pick(rng, 30)));
  return object{h.states[pick(rng, 3)]};
}

object any_object(rng_t& rng) {
  switch (pick(rng, 4)) {
    case 0: return random_object<pn_counter>(rng);
    case 1: return random_object<aw_or_set>(rng);
    case 2: return random_object<lww_register>(rng);
    default: return random_object<aw_lww_map>(rng);
  }
}

// One random change somewhere inside t: a subterm replaced, a tuple shortened, a list element dropped.
term mutate(const term& t, rng_t& rng, int depth = 0) {
  if (depth > 6 || chance(rng, 0.15)) {
    switch (pick(rng, 7)) {
      case 0: return term(-1);
      case 1: return term(0);
      case 2: return term(atom("junk"));
      case 3: return term::nil();
      case 4: return term::tuple({});
      case 5: return term::from_big(cnode::etf::big_int(1) << 70);
      default: return term::binary("x");
    }
  }
  if (t.is_tuple() && t.tuple_size() > 0) {
    std::vector<term> v(t.elements().begin(), t.elements().end());
    if (chance(rng, 0.1)) v.pop_back();
    else if (chance(rng, 0.05)) v.push_back(term(1));
    else if (!v.empty()) {
      auto i = pick(rng, v.size());
      v[i] = mutate(v[i], rng, depth + 1);
    }
    return term::tuple(std::move(v));
  }
  if (t.is_cons()) {
    std::vector<term> v;
    term tail;
    if (!t.list_to_vector(v, &tail)) return t;
    if (chance(rng, 0.1)) return term::improper_list(std::move(v), term(atom("tail")));
    if (chance(rng, 0.1)) v.erase(v.begin() + static_cast<std::ptrdiff_t>(pick(rng, v.size())));
    else {
      auto i = pick(rng, v.size());
      v[i] = mutate(v[i], rng, depth + 1);
    }
    return term::list(std::move(v));
  }
  return mutate(t, rng, 7);
}

// What a decoded object must satisfy, whatever bytes it came from.
template <class P>
bool kernel_ok(const dot_kernel<P>& k) {
  for (const auto& [key, ds] : k.entries) {
    if (ds.empty()) return false;
    for (const auto& [d, p] : ds)
      if (d.counter == 0 || !k.context.contains(d)) return false;
  }
  return true;
}
bool invariants_ok(const object& o) {
  if (auto* s = std::get_if<aw_or_set>(&o)) return kernel_ok(s->kernel);
  if (auto* m = std::get_if<aw_lww_map>(&o)) return kernel_ok(m->kernel);
  return true;
}

}  // namespace

TEST_CASE("objects, groups and messages round-trip through terms and the external format") {
  for (auto seed : seeds(7000, 200)) {
    INFO("seed=" << seed);
    rng_t rng(seed);
    const object o = any_object(rng);
    const term t = encode(o);
    auto back = decode_object(t);
    REQUIRE(back);
    CHECK(*back == o);
    // through the bytes that would cross the distribution
    auto bytes = cnode::etf::encode(t);
    auto again = cnode::etf::decode(bytes);
    REQUIRE(again);
    CHECK(*decode_object(again.value) == o);

    delta_group g;
    g.emplace(term(atom("o1")), o);
    g.emplace(term::binary("o2"), any_object(rng));
    sync_message m{chance(rng, 0.5), pick(rng, 1000), g};
    auto msg = decode_message(encode_sync(atom("a@h"), m));
    REQUIRE(msg);
    auto* s = std::get_if<inbound_sync>(&*msg);
    REQUIRE(s);
    CHECK(s->from == atom("a@h"));
    CHECK(s->msg == m);
    auto ack = decode_message(encode_ack(atom("b@h"), 42));
    REQUIRE(ack);
    CHECK(std::get<inbound_ack>(*ack).seq == 42);
  }
}

TEST_CASE("the documented shapes") {
  const atom a("a@h");
  aw_or_set s;
  s.join(s.add(a, term(atom("x"))));
  CHECK(str(encode(object{s})) == "{aw_or_set,[{x,[{a@h,1}]}],{[{a@h,1}],[]}}");
  lww_register r;
  r.join(r.set(term(7), {5, 1, a}));
  CHECK(str(encode(object{r})) == "{lww_register,{{5,1,a@h},7}}");
  pn_counter c;
  c.join(c.add(a, -2));
  CHECK(str(encode(object{c})) == "{pn_counter,[{a@h,0,2}]}");
  // A cloud: single dots as {Replica, N}, runs as {Replica, First, Last}.
  causal_context ctx;
  ctx.insert({a, 3});
  for (std::uint64_t n = 10; n <= 20; ++n) ctx.insert({a, n});
  CHECK(str(encode(ctx)) == "{[],[{a@h,3},{a@h,10,20}]}");
  auto back = decode_context(encode(ctx));
  REQUIRE(back);
  CHECK(*back == ctx);
}

TEST_CASE("context ranges and dot counters are bounded") {
  const term a(atom("a@h"));
  auto ctx = [](std::initializer_list<term> cloud) { return term::tuple({term::nil(), term::list(cloud)}); };
  CHECK_FALSE(decode_context(ctx({term::tuple({a, term(5), term(4)})})));  // last before first
  CHECK_FALSE(decode_context(ctx({term::tuple({a, term(0), term(4)})})));  // dot 0
  CHECK_FALSE(decode_context(ctx({term::tuple({a, term(1), term(std::uint64_t{1} << 62)})})));
  CHECK_FALSE(decode_dot(term::tuple({a, term(std::uint64_t{1} << 62)})));
  CHECK_FALSE(decode_context(term::tuple({term::list({term::tuple({a, term(std::uint64_t{1} << 62)})}), term::nil()})));
  // a huge range costs one entry
  auto big = decode_context(ctx({term::tuple({a, term(2), term((std::uint64_t{1} << 62) - 1)})}));
  REQUIRE(big);
  CHECK(big->weight() == 1);
}

TEST_CASE("decoding damaged and random terms never crashes and never breaks an invariant") {
  int rejected = 0, accepted = 0;
  for (auto seed : seeds(8000, 400)) {
    INFO("seed=" << seed);
    rng_t rng(seed);
    delta_group g;
    g.emplace(term(atom("o")), any_object(rng));
    const term good = encode_sync(atom("a@h"), sync_message{false, 3, g});
    term bad = good;
    for (int i = 0, n = 1 + static_cast<int>(pick(rng, 3)); i < n; ++i) bad = mutate(bad, rng);
    auto r = decode_message(bad);
    if (!r) {
      CHECK(r.error_code() == error::malformed);
      ++rejected;
      continue;
    }
    ++accepted;
    if (auto* s = std::get_if<inbound_sync>(&*r))
      for (const auto& [name, o] : s->msg.group) CHECK(invariants_ok(o));
  }
  CHECK(rejected > 0);
  for (term t : {term(1), term::nil(), term::tuple({}), term::tuple({term(atom("crdt_sync"))}),
                 term::tuple({term(atom("aw_or_set")), term::nil(), term::nil()}),
                 term::tuple({term(atom("aw_or_set")), term::list({term::tuple({term(1), term::nil()})}),
                              term::tuple({term::nil(), term::nil()})}),  // an entry with no dots
                 term::tuple({term(atom("aw_or_set")),
                              term::list({term::tuple({term(1), term::list({term::tuple({term(atom("a")), term(1)})})})}),
                              term::tuple({term::nil(), term::nil()})}),  // a dot outside the context
                 term::tuple({term(atom("lww_register")), term::tuple({term(1), term(2)})}),
                 term::tuple({term(atom("pn_counter")), term::list({term::tuple({term(atom("a")), term(-1), term(0)})})})})
    CHECK_FALSE(decode_object(t));
}
