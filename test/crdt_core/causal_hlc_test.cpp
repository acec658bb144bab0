// Causal contexts (compaction, join, next dot) and the hybrid logical clock.
#include <doctest.h>

#include <set>

#include "crdt/causal.hpp"
#include "crdt/hlc.hpp"
#include "test/crdt_core/support.hpp"

using namespace crdt_test;

TEST_CASE("a causal context compacts contiguous dots into its version vector") {
  const atom a("a@h"), b("b@h");
  causal_context c;
  c.insert({a, 2});
  CHECK(c.vector().empty());
  CHECK(c.cloud().size() == 1);
  CHECK(c.contains({a, 2}));
  CHECK_FALSE(c.contains({a, 1}));
  c.insert({a, 1});
  CHECK(c.cloud().empty());
  CHECK(c.vector().at(a) == 2);
  CHECK(c.next(a) == dot{a, 3});
  CHECK(c.next(b) == dot{b, 1});
  c.insert({b, 5});
  CHECK(c.next(b) == dot{b, 6});  // past the cloud's highest dot
  c.insert({a, 0});                // not a dot: ignored
  CHECK(c.size() == 3);
}

TEST_CASE("a run of dots past a gap is one range of the cloud, whatever the order it arrives in") {
  const atom a("a@h");
  causal_context c;
  c.advance(a, 3);
  for (std::uint64_t n = 1000; n >= 10; --n) c.insert({a, n});  // backwards: every insert touches the next range
  CHECK(c.weight() == 2);                                         // the vector entry and one range
  REQUIRE(c.cloud().at(a).size() == 1);
  CHECK(c.cloud().at(a).begin()->first == 10);
  CHECK(c.cloud().at(a).begin()->second == 1000);
  CHECK(c.size() == 3 + 991);
  CHECK(c.contains({a, 10}));
  CHECK(c.contains({a, 1000}));
  CHECK_FALSE(c.contains({a, 9}));
  CHECK_FALSE(c.contains({a, 1001}));
  CHECK(c.next(a) == dot{a, 1001});
  c.insert_range(a, 20, 2000);  // overlaps and extends
  c.insert_range(a, 5, 6);      // a second range
  CHECK(c.cloud().at(a).size() == 2);
  c.insert_range(a, 4, 9);  // fills the gaps: all in the vector
  CHECK(c.cloud().empty());
  CHECK(c.vector().at(a) == 2000);
  c.insert_range(a, 5, 4);  // empty
  c.insert_range(a, 0, 0);  // not a dot
  CHECK(c.weight() == 1);
}

TEST_CASE("joining contexts is the union of their dot sets, canonical whatever the order") {
  for (auto seed : seeds(100, 200)) {
    INFO("seed=" << seed);
    rng_t rng(seed);
    const atom ids[] = {atom("a@h"), atom("b@h"), atom("c@h")};
    std::set<dot> all;
    causal_context x, y, z;
    for (int i = 0; i < 40; ++i) {
      dot d{ids[pick(rng, 3)], 1 + pick(rng, 12)};
      all.insert(d);
      (i % 3 == 0 ? x : i % 3 == 1 ? y : z).insert(d);
    }
    causal_context xy = x, yx = y;
    xy.join(y);
    yx.join(x);
    CHECK(xy == yx);
    causal_context xy_z = xy, x_yz = x, yz = y;
    xy_z.join(z);
    yz.join(z);
    x_yz.join(yz);
    CHECK(xy_z == x_yz);
    causal_context built;
    for (auto it = all.rbegin(); it != all.rend(); ++it) built.insert(*it);  // in reverse: the worst order
    CHECK(built == xy_z);
    for (const auto& d : all) CHECK(built.contains(d));
    CHECK(built.size() == all.size());
    causal_context again = built;
    again.join(built);
    CHECK(again == built);
  }
}

TEST_CASE("hlc: now() is strictly monotonic, and follows physical time when it moves") {
  hlc c(atom("a@h"));
  auto t1 = c.now(100);
  CHECK(t1 == hlc_timestamp{100, 0, atom("a@h")});
  auto t2 = c.now(100);
  CHECK(t2 == hlc_timestamp{100, 1, atom("a@h")});
  auto t3 = c.now(90);  // the physical clock stepped back: l stays, c counts
  CHECK(t3 == hlc_timestamp{100, 2, atom("a@h")});
  CHECK(t1 < t2);
  CHECK(t2 < t3);
  CHECK(c.now(150) == hlc_timestamp{150, 0, atom("a@h")});
}

TEST_CASE("hlc: update() follows Kulkarni et al.'s receive rule") {
  hlc c(atom("b@h"));
  c.now(100);  // (100, 0)
  // m.l ahead of both: c = m.c + 1
  auto u = c.update({200, 5, atom("a@h")}, 150);
  CHECK_FALSE(u.far_ahead);
  CHECK(u.ts == hlc_timestamp{200, 6, atom("b@h")});
  // l == l' == m.l: max(c, m.c) + 1
  CHECK(c.update({200, 9, atom("a@h")}, 150).ts == hlc_timestamp{200, 10, atom("b@h")});
  // l == l' only: c + 1
  CHECK(c.update({100, 50, atom("a@h")}, 150).ts == hlc_timestamp{200, 11, atom("b@h")});
  // physical time overtakes everything: c = 0
  CHECK(c.update({210, 3, atom("a@h")}, 300).ts == hlc_timestamp{300, 0, atom("b@h")});
  // the timestamp after a receive is larger than the one received
  hlc d(atom("c@h"));
  hlc_timestamp m{1000, 7, atom("z@h")};
  CHECK(d.update(m, 10).ts > hlc_timestamp{1000, 7, atom("a@h")});
}

TEST_CASE("hlc: a received timestamp far ahead is reported and not taken into the clock") {
  hlc c(atom("a@h"), 1000);
  c.now(5000);
  auto u = c.update({7000, 0, atom("evil@h")}, 5000);
  CHECK(u.far_ahead);
  CHECK(u.ahead_ms == 2000);
  CHECK(u.ts.physical_ms == 5000);
  CHECK(c.last().physical_ms == 5000);
  auto ok = c.update({6000, 0, atom("b@h")}, 5000);  // within the offset
  CHECK_FALSE(ok.far_ahead);
  CHECK(ok.ts.physical_ms == 6000);
}
