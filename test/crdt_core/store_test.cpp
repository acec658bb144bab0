// The replica store: objects fixed to a type, local operations and their deltas, the anti-entropy bookkeeping
// (sequence numbers, acks, GC, the bounded buffer and the full-state fallback), and a deterministic simulation of
// three replicas over a lossy, duplicating, reordering network with a partition that heals.
#include <doctest.h>

#include "crdt/codec.hpp"
#include "test/crdt_core/support.hpp"

using namespace crdt_test;

namespace {
term A(const char* s) { return term(atom(s)); }
const atom na("a@h"), nb("b@h"), nc("c@h");
}  // namespace

TEST_CASE("an object is fixed to the type of its first operation") {
  replica_store s(na);
  REQUIRE(s.counter_add(A("n"), 3));
  auto bad = s.set_add(A("n"), A("x"));
  REQUIRE_FALSE(bad);
  CHECK(bad.error_code() == error::wrong_type);
  CHECK(bad.fail().type == crdt_type::pn_counter);
  CHECK(s.register_set(A("n"), term(1), 10).fail().type == crdt_type::pn_counter);
  CHECK(s.map_put(A("n"), term(1), term(2), 10).fail().type == crdt_type::pn_counter);
  CHECK(s.clear(A("n")).fail().type == crdt_type::pn_counter);
  CHECK(*s.value(A("n")) == term(3));
  CHECK(s.value(A("missing")).error_code() == error::not_found);
  CHECK(s.clear(A("missing")).error_code() == error::not_found);
  REQUIRE(s.set_add(A("s"), A("x")));
  CHECK(s.map_remove(A("s"), A("x")).fail().type == crdt_type::aw_or_set);
  CHECK(s.seq() == 2);  // failed operations leave no delta
}

TEST_CASE("local operations return their delta; the delta brings another replica to the same value") {
  replica_store a(na), b(nb);
  auto d1 = a.set_add(A("s"), A("x"));
  auto d2 = a.set_add(A("s"), A("y"));
  auto d3 = a.set_remove(A("s"), A("x"));
  auto d4 = a.map_put(A("m"), A("k"), term(1), 100);
  auto d5 = a.register_set(A("r"), A("v"), 100);
  for (auto* d : {&d1, &d2, &d3, &d4, &d5}) {
    REQUIRE(*d);
    b.handle_sync(na, sync_message{false, 0, **d}, 100);
  }
  CHECK(str(*b.value(A("s"))) == "[y]");
  CHECK(b.state() == a.state());
}

TEST_CASE("anti-entropy: intervals since the last ack, acks, GC, and the full state for a new peer") {
  replica_store a(na), b(nb);
  a.add_peer(nb);
  CHECK(a.sync().empty());  // nothing to say
  REQUIRE(a.counter_add(A("n"), 1));
  REQUIRE(a.counter_add(A("n"), 2));
  CHECK(a.buffered() == 2);
  auto out = a.sync();
  REQUIRE(out.size() == 1);
  CHECK(out[0].peer == nb);
  CHECK_FALSE(out[0].msg.full_state);  // b acked 0 and D still starts at 0
  CHECK(out[0].msg.seq == 2);
  auto rep = b.handle_sync(na, out[0].msg, 0);
  CHECK(rep.changed);
  CHECK(rep.ack.peer == na);
  CHECK(rep.ack.seq == 2);
  CHECK(a.sync().size() == 1);  // unacked: sent again
  a.handle_ack(nb, rep.ack.seq);
  CHECK(a.acked(nb) == 2);
  CHECK(a.buffered() == 0);  // acked by every peer
  CHECK(a.sync().empty());
  REQUIRE(a.counter_add(A("n"), 4));
  out = a.sync();
  REQUIRE(out.size() == 1);
  CHECK_FALSE(out[0].msg.full_state);
  CHECK(out[0].msg.group.size() == 1);
  a.handle_ack(nb, 0);  // an old ack changes nothing
  CHECK(a.acked(nb) == 2);

  // A new peer: the interval it needs was collected, so it gets the full state.
  a.add_peer(nc);
  auto to_c = a.sync_to(nc);
  REQUIRE(to_c);
  CHECK(to_c->msg.full_state);
  CHECK(to_c->msg.group == a.state());
  CHECK(a.buffered() == 1);  // kept for b and c
  a.handle_ack(nb, 3);
  CHECK(a.buffered() == 1);  // c has not acked
  a.handle_ack(nc, 3);
  CHECK(a.buffered() == 0);
  // A peer that goes away no longer holds deltas back.
  REQUIRE(a.counter_add(A("n"), 1));
  a.remove_peer(nc);
  a.handle_ack(nb, 4);
  CHECK(a.buffered() == 0);

  // A merge that changes nothing buffers nothing (so nothing echoes back).
  replica_store c(nc);
  c.add_peer(na);
  auto full = a.state();
  c.handle_sync(na, sync_message{true, 4, full}, 0);
  const auto seq = c.seq();
  auto again = c.handle_sync(na, sync_message{true, 4, full}, 0);
  CHECK_FALSE(again.changed);
  CHECK(c.seq() == seq);
}

TEST_CASE("anti-entropy: past the buffer bound a lagging peer falls back to the full state") {
  replica_store a(na, store_options{4, 60'000});
  a.add_peer(nb);
  a.add_peer(nc);
  for (int i = 0; i < 3; ++i) REQUIRE(a.set_add(A("s"), term(i)));
  a.handle_ack(nc, a.seq());
  CHECK_FALSE(a.sync_to(nb)->msg.full_state);
  for (int i = 3; i < 10; ++i) REQUIRE(a.set_add(A("s"), term(i)));
  CHECK(a.buffered() == 4);
  CHECK(a.sync_to(nb)->msg.full_state);       // b's interval starts at 0, which is gone
  CHECK(a.sync_to(nc)->msg.full_state);  // c acked 3, but D holds 6..9 now
  a.handle_ack(nc, 8);
  auto to_c = a.sync_to(nc);
  CHECK_FALSE(to_c->msg.full_state);  // 8 and 9 are still buffered
  CHECK(to_c->msg.seq == 10);
  CHECK(a.buffered() == 4);           // b holds them: it has acked nothing
}

TEST_CASE("a remote object of another type is reported and skipped; a far-ahead timestamp is reported") {
  replica_store a(na), b(nb, store_options{1024, 1000});
  REQUIRE(a.set_add(A("x"), term(1)));
  REQUIRE(b.counter_add(A("x"), 1));
  auto rep = b.handle_sync(na, sync_message{true, 1, a.state()}, 0);
  REQUIRE(rep.conflicts.size() == 1);
  CHECK(rep.conflicts[0].second == crdt_type::pn_counter);
  CHECK_FALSE(rep.changed);
  REQUIRE(a.register_set(A("r"), term(1), 10'000));
  rep = b.handle_sync(na, sync_message{false, 2, *a.register_set(A("r"), term(2), 10'000)}, 0);
  CHECK(rep.changed);
  REQUIRE(rep.far_ahead);
  CHECK(rep.ahead_ms == 10'000);
  CHECK(b.clock().last().physical_ms < 10'000);
}

namespace {

// Three stores talking through the fake network in encoded terms, each calling sync() every 5 ms.
struct cluster {
  std::vector<atom> ids{na, nb, nc};
  std::vector<replica_store> stores;
  fake_network<term> net;
  std::int64_t now = 0;
  int malformed = 0;
  int full_states = 0;  // full-state messages sent

  cluster(std::uint64_t seed, store_options opts) : net(seed) {
    for (auto id : ids) stores.emplace_back(id, opts);
    for (auto& s : stores)
      for (auto id : ids) s.add_peer(id);
  }
  int index(atom id) const { return static_cast<int>(std::find(ids.begin(), ids.end(), id) - ids.begin()); }

  void random_op(int i) {
    auto& rng = net.rng();
    auto& s = stores[static_cast<std::size_t>(i)];
    const std::int64_t t = now + i * 7;  // skewed clocks
    switch (pick(rng, 7)) {
      case 0: (void)s.counter_add(A("hits"), static_cast<std::int64_t>(pick(rng, 7)) - 3); break;
      case 1: (void)s.set_add(A("members"), random_value(rng)); break;
      case 2: (void)s.set_remove(A("members"), random_value(rng)); break;
      case 3: (void)s.register_set(A("leader"), random_value(rng), t); break;
      case 4: (void)s.map_put(A("config"), random_value(rng), random_value(rng), t); break;
      case 5: (void)s.map_remove(A("config"), random_value(rng)); break;
      default:  // an operation of the wrong type: refused, no delta
        if (s.find(A("hits"))) CHECK(s.set_add(A("hits"), term(1)).error_code() == error::wrong_type);
    }
  }

  void step(bool ops) {
    now += 1;
    auto& rng = net.rng();
    if (ops && chance(rng, 0.5)) random_op(static_cast<int>(pick(rng, 3)));
    if (now % 5 == 0)
      for (int i = 0; i < 3; ++i)
        for (auto& out : stores[static_cast<std::size_t>(i)].sync()) {
          full_states += out.msg.full_state;
          net.send(i, index(out.peer), encode_sync(ids[static_cast<std::size_t>(i)], out.msg), now);
        }
    for (auto& e : net.due(now)) {
      auto in = decode_message(e.msg);
      if (!in) {
        ++malformed;
        continue;
      }
      auto& to = stores[static_cast<std::size_t>(e.to)];
      if (auto* s = std::get_if<inbound_sync>(&*in)) {
        auto rep = to.handle_sync(s->from, s->msg, now);
        net.send(e.to, e.from, encode_ack(to.self(), rep.ack.seq), now);
      } else {
        auto& a = std::get<inbound_ack>(*in);
        to.handle_ack(a.from, a.seq);
      }
    }
  }

  bool converged() const {
    for (std::size_t i = 1; i < stores.size(); ++i)
      if (!(stores[i].state() == stores[0].state())) return false;
    return true;
  }
  bool quiet() const {
    for (const auto& s : stores)
      if (!s.sync().empty()) return false;
    return true;
  }
};

int simulate(std::uint64_t seed, store_options opts, int* full_states = nullptr) {
  INFO("seed=" << seed << " (replay: CNODE_SEED=" << seed << ")");
  cluster c(seed, opts);
  c.net.drop = 0.2;
  c.net.duplicate = 0.1;
  c.net.min_delay = 1;
  c.net.max_delay = 25;  // messages overtake each other
  for (int i = 0; i < 300; ++i) c.step(true);
  c.net.cut(0, 1);  // a@h alone on one side
  c.net.cut(0, 2);
  for (int i = 0; i < 300; ++i) c.step(true);
  c.net.heal();
  for (int i = 0; i < 200; ++i) c.step(true);
  int rounds = 0;
  while (!(c.converged() && c.quiet()) && rounds < 20'000) {
    c.step(false);
    ++rounds;
  }
  CHECK(c.malformed == 0);
  REQUIRE(c.converged());
  CHECK(c.quiet());
  for (auto& s : c.stores) {
    CHECK(s.buffered() == 0);  // everything acked by everyone, so collected
    for (const auto& name : c.stores[0].names()) CHECK(*s.value(name) == *c.stores[0].value(name));
  }
  if (full_states) *full_states += c.full_states;
  return rounds;
}

}  // namespace

TEST_CASE("simulation: 3 replicas converge after loss, duplication, reordering and a healed partition") {
  int worst = 0;
  for (auto seed : seeds(9000, 30)) worst = std::max(worst, simulate(seed, store_options{}));
  MESSAGE("converged at most " << worst << " simulated ms after the last operation");
}

TEST_CASE("simulation: with a small delta buffer the lagging replica is brought back by full states") {
  int worst = 0;
  int full = 0;
  for (auto seed : seeds(9500, 15)) worst = std::max(worst, simulate(seed, store_options{8, 60'000}, &full));
  CHECK(full > 0);
  MESSAGE("converged at most " << worst << " simulated ms after the last operation");
}
