// Property tests of every type over seeded random histories: the join is a semilattice join, merging the deltas
// equals merging the states, and the add-wins and last-writer-wins rules hold against sequential specifications.
#include <doctest.h>

#include <map>
#include <optional>
#include <set>

#include "test/crdt_core/support.hpp"

using namespace crdt_test;

namespace {

term value_of(const pn_counter& x) { return x.value(); }
term value_of(const aw_or_set& x) { return x.value(); }
term value_of(const lww_register& x) { return x.value(); }
term value_of(const aw_lww_map& x) { return x.value(); }

template <class T>
void check_lattice(std::uint64_t base) {
  for (auto seed : seeds(base, 150)) {
    INFO("seed=" << seed << " (replay: CNODE_SEED=" << seed << ")");
    rng_t rng(seed);
    history<T> h(rng, 3, 60);
    const T &a = h.states[0], &b = h.states[1], &c = h.states[2];
    CHECK(joined(a, b) == joined(b, a));                        // commutative
    CHECK(joined(joined(a, b), c) == joined(a, joined(b, c)));  // associative
    CHECK(joined(a, a) == a);                                   // idempotent
    CHECK(joined(joined(a, b), a) == joined(a, b));             // a join is an upper bound
    T all = joined(joined(a, b), c);
    CHECK(value_of(joined(joined(c, b), a)) == value_of(all));

    // Every replica's state is the join of some of the deltas, so the join of all deltas, applied in any order and
    // any number of times, is the join of all states.
    std::vector<T> ds = h.deltas;
    std::shuffle(ds.begin(), ds.end(), rng);
    T from_deltas;
    for (std::size_t i = 0; i < ds.size(); ++i) {
      from_deltas.join(ds[i]);
      if (chance(rng, 0.2)) from_deltas.join(ds[pick(rng, i + 1)]);  // a duplicate, late
    }
    CHECK(from_deltas == all);
    // A delta joined into the state it was made from is what the mutator applied: joining it again changes nothing.
    for (const auto& d : h.deltas) CHECK(joined(all, d) == all);
  }
}

}  // namespace

TEST_CASE("pn_counter: join laws, delta merging = state merging") { check_lattice<pn_counter>(1000); }
TEST_CASE("aw_or_set: join laws, delta merging = state merging") { check_lattice<aw_or_set>(2000); }
TEST_CASE("lww_register: join laws, delta merging = state merging") { check_lattice<lww_register>(3000); }
TEST_CASE("aw_lww_map: join laws, delta merging = state merging") { check_lattice<aw_lww_map>(4000); }

TEST_CASE("sequential specifications: one replica behaves like a counter, a set, a register and a map") {
  for (auto seed : seeds(5000, 100)) {
    INFO("seed=" << seed);
    rng_t rng(seed);
    const atom me("a@h");
    hlc clock(me);
    std::int64_t now = 0;
    pn_counter c;
    std::int64_t c_model = 0;
    aw_or_set s;
    std::set<term, term_less> s_model;
    lww_register r;
    term r_model = term(atom("undefined"));
    aw_lww_map m;
    std::map<term, term, term_less> m_model;
    for (int i = 0; i < 80; ++i) {
      now += static_cast<std::int64_t>(pick(rng, 2));
      const std::int64_t n = static_cast<std::int64_t>(pick(rng, 21)) - 10;
      c.join(c.add(me, n));
      c_model += n;
      const term e = random_value(rng), v = random_value(rng);
      switch (pick(rng, 3)) {
        case 0: s.join(s.remove(e)), s_model.erase(e), m.join(m.remove(e)), m_model.erase(e); break;
        case 1: s.join(s.clear()), s_model.clear(), m.join(m.clear()), m_model.clear(); break;
        default: s.join(s.add(me, e)), s_model.insert(e), m.join(m.put(me, e, v, clock.now(now))), m_model[e] = v;
      }
      r.join(r.set(v, clock.now(now)));
      r_model = v;
      CHECK(c.value() == term(c_model));
      CHECK(s.value() == term::list(std::vector<term>(s_model.begin(), s_model.end())));
      for (const auto& x : s_model) CHECK(s.contains(x));
      CHECK(r.value() == r_model);
      std::vector<std::pair<term, term>> kvs(m_model.begin(), m_model.end());
      CHECK(m.value() == term::map(std::move(kvs)));
    }
  }
}

TEST_CASE("aw_or_set: a concurrent add wins over a remove; a remove wins over the adds it observed") {
  const atom a("a@h"), b("b@h");
  const term x = term(atom("x"));
  aw_or_set sa, sb;
  sa.join(sa.add(a, x));
  sb.join(sa);
  auto rm = sa.remove(x);     // a removes the x it has seen
  auto add = sb.add(b, x);    // b adds x again, concurrently
  sa.join(rm);
  sb.join(add);
  CHECK_FALSE(sa.contains(x));
  CHECK(joined(sa, sb).contains(x));
  CHECK(joined(sb, sa).contains(x));
  // Now both have seen b's add: a remove of it is final.
  sa.join(sb);
  sb.join(sa);
  sa.join(sa.remove(x));
  CHECK_FALSE(joined(sb, sa).contains(x));
  // A remove that arrives before the add it observed still wins: the add's dot is in the remove's context.
  aw_or_set src, dst;
  auto add1 = src.add(a, x);
  src.join(add1);
  auto rm1 = src.remove(x);
  dst.join(rm1);
  dst.join(add1);
  CHECK_FALSE(dst.contains(x));
}

TEST_CASE("aw_or_set: the value is a list in Erlang term order") {
  const atom a("a@h");
  aw_or_set s;
  for (term e : {term::binary("z"), term(atom("b")), term(3), term::tuple({term(1)}), term(atom("a")), term(-1)})
    s.join(s.add(a, e));
  CHECK(str(s.value()) == "[-1,3,a,b,{1},<<\"z\">>]");
}

TEST_CASE("lww_register: the largest hybrid timestamp wins, ties by node name, whatever the merge order") {
  const atom a("a@h"), b("b@h");
  lww_register ra, rb;
  auto wa = ra.set(term(1), {100, 0, a});
  auto wb = rb.set(term(2), {100, 0, b});  // same physical and logical time: b > a by name
  CHECK(joined(joined(ra, wa), wb).value() == term(2));
  CHECK(joined(joined(rb, wb), wa).value() == term(2));
  auto wa2 = ra.set(term(3), {100, 1, a});  // a later logical tick beats the name
  CHECK(joined(joined(joined(ra, wa2), wb), wa).value() == term(3));
  CHECK(lww_register{}.value() == term(atom("undefined")));
}

TEST_CASE("aw_lww_map: add-wins keys, last-writer-wins values") {
  const atom a("a@h"), b("b@h");
  const term k = term(atom("k"));
  hlc ca(a), cb(b);
  aw_lww_map ma, mb;
  ma.join(ma.put(a, k, term(1), ca.now(10)));
  mb.join(ma);
  // concurrent: a removes k, b writes k: the write survives
  ma.join(ma.remove(k));
  mb.join(mb.put(b, k, term(2), cb.now(11)));
  CHECK(joined(ma, mb).value() == term::map({{k, term(2)}}));
  CHECK(joined(mb, ma).value() == term::map({{k, term(2)}}));
  // concurrent writes: both kept, the later timestamp is the value
  aw_lww_map x, y;
  x.join(x.put(a, k, term(10), ca.now(50)));
  y.join(y.put(b, k, term(20), cb.now(40)));
  auto xy = joined(x, y);
  CHECK(xy.kernel.entries.at(k).size() == 2);
  CHECK(xy.get(k)->value == term(10));
  CHECK(joined(y, x).value() == xy.value());
  // a later write at either replica replaces both
  xy.join(xy.put(b, k, term(30), cb.now(60)));
  CHECK(xy.kernel.entries.at(k).size() == 1);
  CHECK(xy.value() == term::map({{k, term(30)}}));
}

TEST_CASE("pn_counter: increments and decrements of every replica add up, int64 extremes included") {
  const atom a("a@h"), b("b@h");
  pn_counter x, y;
  x.join(x.add(a, INT64_MAX));
  x.join(x.add(a, INT64_MAX));
  y.join(y.add(b, INT64_MIN));
  y.join(y.add(b, 5));
  auto v = joined(x, y).value();
  CHECK(v.big() == cnode::etf::big_int(INT64_MAX) * 2 + cnode::etf::big_int(INT64_MIN) + 5);
}

// Concurrent histories against an oracle of events: an add/put of key k is a dot; it is killed when a later remove,
// clear or add/put of k at some replica has observed it. After every replica has everything, k is present iff one of
// its dots was never killed, and (in the map) its value is the surviving write with the largest timestamp; the
// register's value is the write with the largest timestamp of all.
TEST_CASE("concurrent histories: add-wins and last-writer-wins against an event oracle") {
  for (auto seed : seeds(6000, 150)) {
    INFO("seed=" << seed << " (replay: CNODE_SEED=" << seed << ")");
    rng_t rng(seed);
    const int n = 3;
    std::vector<atom> ids{atom("a@h"), atom("b@h"), atom("c@h")};
    std::vector<hlc> clocks{hlc(ids[0]), hlc(ids[1]), hlc(ids[2])};
    std::vector<aw_or_set> sets(n);
    std::vector<aw_lww_map> maps(n);
    std::vector<lww_register> regs(n);
    std::map<dot, term> set_adds;       // dot -> element
    std::map<dot, lww_cell> map_puts;   // dot -> write (key below)
    std::map<dot, term> map_keys;
    std::set<dot> killed;
    std::optional<lww_cell> last_write;
    std::int64_t now = 0;
    auto observe = [&](const auto& kernel, const term* key) {
      for (const auto& [k, ds] : kernel.entries)
        if (!key || cnode::etf::exact_equal(k, *key))
          for (const auto& [d, p] : ds) killed.insert(d);
    };
    for (int step = 0; step < 80; ++step) {
      now += static_cast<std::int64_t>(pick(rng, 3));
      const auto i = pick(rng, n);
      const term e = random_value(rng);
      const auto kind = pick(rng, 10);
      if (kind < 3) {  // gossip: one replica takes another's state
        const auto j = pick(rng, n);
        sets[i].join(sets[j]);
        maps[i].join(maps[j]);
        regs[i].join(regs[j]);
      } else if (kind < 6) {
        observe(sets[i].kernel, &e);
        auto d = sets[i].add(ids[i], e);
        set_adds.emplace(d.kernel.entries.begin()->second.begin()->first, e);
        sets[i].join(d);
        const term v = random_value(rng);
        const auto ts = clocks[i].now(now + static_cast<std::int64_t>(i) * 2);
        observe(maps[i].kernel, &e);
        auto md = maps[i].put(ids[i], e, v, ts);
        const dot nd = md.kernel.entries.begin()->second.begin()->first;
        map_puts.emplace(nd, lww_cell{ts, v});
        map_keys.emplace(nd, e);
        maps[i].join(md);
        const lww_cell w{clocks[i].now(now), v};
        if (!last_write || wins_over(w, *last_write)) last_write = w;
        regs[i].join(regs[i].set(w.value, w.ts));
      } else if (kind < 9) {
        observe(sets[i].kernel, &e);
        sets[i].join(sets[i].remove(e));
        observe(maps[i].kernel, &e);
        maps[i].join(maps[i].remove(e));
      } else {
        observe(sets[i].kernel, nullptr);
        sets[i].join(sets[i].clear());
        observe(maps[i].kernel, nullptr);
        maps[i].join(maps[i].clear());
      }
    }
    aw_or_set all_sets;
    aw_lww_map all_maps;
    lww_register all_regs;
    for (int i = 0; i < n; ++i) all_sets.join(sets[i]), all_maps.join(maps[i]), all_regs.join(regs[i]);

    std::set<term, term_less> expected_set;
    for (const auto& [d, e] : set_adds)
      if (!killed.contains(d)) expected_set.insert(e);
    CHECK(all_sets.value() == term::list(std::vector<term>(expected_set.begin(), expected_set.end())));

    std::map<term, lww_cell, term_less> expected_map;
    for (const auto& [d, w] : map_puts) {
      if (killed.contains(d)) continue;
      auto [it, fresh] = expected_map.try_emplace(map_keys.at(d), w);
      if (!fresh && wins_over(w, it->second)) it->second = w;
    }
    std::vector<std::pair<term, term>> kvs;
    for (const auto& [k, w] : expected_map) kvs.emplace_back(k, w.value);
    CHECK(all_maps.value() == term::map(std::move(kvs)));

    CHECK(all_regs.value() == (last_write ? last_write->value : term(atom("undefined"))));
  }
}

TEST_CASE("join_key equals the full join for the deltas of one key (the local operations' fast path)") {
  for (auto seed : seeds(7700, 100)) {
    INFO("seed=" << seed << " (replay: CNODE_SEED=" << seed << ")");
    rng_t rng(seed);
    history<aw_lww_map> h(rng, 3, 60);
    hlc clock(h.ids[0]);
    aw_lww_map state = h.states[0], fast = state, open, open_fast;
    for (int i = 0; i < 40; ++i) {
      const term key = random_value(rng);
      aw_lww_map d = chance(rng, 0.3) ? state.remove(key) : state.put(h.ids[0], key, random_value(rng), clock.now(2000 + i));
      CHECK(state.join(d) == fast.kernel.join_key(d.kernel, key));  // the same answer to "did it change"
      open.join(d);
      open_fast.kernel.join_key(d.kernel, key);
      REQUIRE(fast == state);
      REQUIRE(open_fast == open);
    }
    history<aw_or_set> hs(rng, 3, 60);
    aw_or_set s = hs.states[1], sf = s;
    for (int i = 0; i < 40; ++i) {
      const term e = random_value(rng);
      aw_or_set d = chance(rng, 0.4) ? s.remove(e) : s.add(hs.ids[1], e);
      s.join(d);
      sf.kernel.join_key(d.kernel, e);
      REQUIRE(sf == s);
    }
  }
}

TEST_CASE("write_here and remove_here leave the kernel as the delta's join does, and return that delta") {
  for (auto seed : seeds(7900, 100)) {
    INFO("seed=" << seed << " (replay: CNODE_SEED=" << seed << ")");
    rng_t rng(seed);
    history<aw_lww_map> h(rng, 3, 60);
    hlc clock(h.ids[1]);
    aw_lww_map joined = h.states[1], here = joined;
    for (int i = 0; i < 40; ++i) {
      const term key = random_value(rng);
      if (chance(rng, 0.3)) {
        auto d = joined.remove(key);
        joined.join(d);
        CHECK(aw_lww_map{here.kernel.remove_here(key)} == d);
      } else {
        const auto ts = clock.now(3000 + i);
        const term v = random_value(rng);
        auto d = joined.put(h.ids[1], key, v, ts);
        joined.join(d);
        CHECK(aw_lww_map{here.kernel.write_here(h.ids[1], key, lww_cell{ts, v})} == d);
      }
      REQUIRE(here == joined);
    }
  }
}
