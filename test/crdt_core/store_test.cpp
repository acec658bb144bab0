// The replica store: objects fixed to a type, local operations and their deltas, the anti-entropy bookkeeping
// (sequence numbers, acks, GC, the bounded buffer and the full-state fallback), and a deterministic simulation of
// three replicas over a lossy, duplicating, reordering network with a partition that heals.
#include <doctest.h>

#include "crdt/codec.hpp"
#include "test/crdt_core/support.hpp"
#include "test/support/sim.hpp"

using namespace crdt_test;

namespace {
term A(const char* s) { return term(atom(s)); }
const atom na("a@h"), nb("b@h"), nc("c@h");
}  // namespace

TEST_CASE("an object is fixed to the type of its first operation") {
  replica_store s(na);
  s.add_peer(nb);
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
  auto out = s.sync();
  REQUIRE(out.size() == 1);
  CHECK(out[0].msg.group.size() == 2);  // failed operations left no delta
  CHECK(s.seq() == 1);                  // one interval for everything since the last sync
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

TEST_CASE("the writer id makes the dots and timestamps; the replica's name addresses it") {
  replica_store a(na, store_options{.writer = atom("a@h#1")});
  CHECK(a.self() == na);
  CHECK(a.writer() == atom("a@h#1"));
  REQUIRE(a.set_add(A("s"), A("x")));
  REQUIRE(a.map_put(A("m"), A("k"), term(1), 100));
  REQUIRE(a.counter_add(A("n"), 2));
  const auto& set = std::get<aw_or_set>(*a.find(A("s")));
  CHECK(set.kernel.entries.begin()->second.begin()->first == dot{atom("a@h#1"), 1});
  CHECK(std::get<aw_lww_map>(*a.find(A("m"))).get(A("k"))->ts.node == atom("a@h#1"));
  CHECK(std::get<pn_counter>(*a.find(A("n"))).entries.contains(atom("a@h#1")));
}

TEST_CASE("anti-entropy: one interval per sync, acks, GC, and the full state for a new peer") {
  replica_store a(na), b(nb);
  a.add_peer(nb);
  CHECK(a.sync().empty());  // nothing to say
  CHECK(a.idle());
  REQUIRE(a.counter_add(A("n"), 1));
  REQUIRE(a.counter_add(A("n"), 2));
  CHECK_FALSE(a.idle());
  CHECK(a.unacked(nb) == 1);  // the open interval
  auto out = a.sync();
  CHECK(a.buffered() == 1);
  REQUIRE(out.size() == 1);
  CHECK(out[0].peer == nb);
  CHECK_FALSE(out[0].msg.full_state);  // b acked 0 and D still starts at 0
  CHECK(out[0].msg.seq == 1);
  auto rep = b.handle_sync(na, out[0].msg, 0);
  CHECK(rep.changed);
  REQUIRE(rep.changed_names.size() == 1);
  CHECK(rep.changed_names[0] == A("n"));
  CHECK(rep.ack.peer == na);
  CHECK(rep.ack.seq == 1);
  CHECK(*b.value(A("n")) == term(3));
  CHECK(a.sync().size() == 1);  // unacked: sent again (retransmit_ms 0)
  a.handle_ack(nb, rep.ack.seq);
  CHECK(a.acked(nb) == 1);
  CHECK(a.buffered() == 0);  // acked by every peer
  CHECK(a.sync().empty());
  CHECK(a.idle());
  REQUIRE(a.counter_add(A("n"), 4));
  out = a.sync();
  REQUIRE(out.size() == 1);
  CHECK_FALSE(out[0].msg.full_state);
  CHECK(out[0].msg.group.size() == 1);
  CHECK(out[0].msg.seq == 2);
  a.handle_ack(nb, 0);  // an old ack changes nothing
  CHECK(a.acked(nb) == 1);

  // A new peer: the interval it needs was collected, so it gets the full state.
  a.add_peer(nc);
  auto to_c = a.sync_to(nc);
  REQUIRE(to_c);
  CHECK(to_c->msg.full_state);
  CHECK(to_c->msg.group == a.state());
  CHECK(a.buffered() == 1);  // kept for b and c
  a.handle_ack(nb, 2);
  CHECK(a.buffered() == 1);  // c has not acked
  a.handle_ack(nc, 2);
  CHECK(a.buffered() == 0);
  // A peer that goes away no longer holds deltas back.
  REQUIRE(a.counter_add(A("n"), 1));
  CHECK(a.sync().size() == 2);
  a.remove_peer(nc);
  a.handle_ack(nb, 3);
  CHECK(a.buffered() == 0);
  // sync_to sends sealed intervals only: the open one waits for seal()
  REQUIRE(a.counter_add(A("n"), 1));
  CHECK_FALSE(a.sync_to(nb));
  a.seal();
  CHECK(a.buffered() == 1);
  REQUIRE(a.sync_to(nb));
  a.handle_ack(nb, 4);

  // A merge that changes nothing buffers nothing (so nothing echoes back).
  replica_store c(nc);
  c.add_peer(na);
  auto full = a.state();
  c.handle_sync(na, sync_message{true, 5, full}, 0);
  const auto seq = c.seq();
  auto again = c.handle_sync(na, sync_message{true, 4, full}, 0);
  CHECK_FALSE(again.changed);
  CHECK(again.changed_names.empty());
  CHECK(c.seq() == seq);
}

TEST_CASE("anti-entropy: what a peer sent is not sent back to it (back-propagation)") {
  replica_store a(na), b(nb);
  b.add_peer(na);
  b.add_peer(nc);
  REQUIRE(a.set_add(A("s"), A("x")));
  a.add_peer(nb);
  auto out = a.sync();
  REQUIRE(out.size() == 1);
  b.handle_sync(na, out[0].msg, 0);
  // b forwards a's delta to c, not to a; a's position moves on without a message.
  auto from_b = b.sync();
  REQUIRE(from_b.size() == 1);
  CHECK(from_b[0].peer == nc);
  CHECK(b.acked(na) == b.seq());
  REQUIRE(b.set_add(A("s"), A("y")));
  from_b = b.sync();
  REQUIRE(from_b.size() == 2);  // its own write goes to both
  for (const auto& o : from_b)
    if (o.peer == na) CHECK(str(value(o.msg.group.at(A("s")))) == "[y]");
}

TEST_CASE("anti-entropy: with retransmit_ms an unacked peer waits for its ack, then gets what is new") {
  replica_store a(na, store_options{.retransmit_ms = 1000});
  a.add_peer(nb);
  REQUIRE(a.counter_add(A("n"), 1));
  REQUIRE(a.sync(0).size() == 1);
  REQUIRE(a.counter_add(A("n"), 1));
  CHECK(a.sync(200).empty());  // the first is unacked and young
  a.handle_ack(nb, 1);
  auto out = a.sync(400);
  REQUIRE(out.size() == 1);
  CHECK(out[0].msg.seq == 2);
  CHECK(a.sync(600).empty());
  auto again = a.sync(1400);  // no ack for a second: sent again
  REQUIRE(again.size() == 1);
  CHECK(again[0].msg.seq == 2);
  a.peer_reconnected(nb);  // a new connection: at once, not after the timeout
  CHECK(a.sync(1500).size() == 1);
  // A peer that restarted (lost what it acked) gets everything again.
  a.handle_ack(nb, 2);
  CHECK(a.idle());
  a.reset_peer(nb);
  auto all = a.sync(1600);
  REQUIRE(all.size() == 1);
  CHECK(all[0].msg.full_state);
}

TEST_CASE("anti-entropy: past the buffer bound a lagging peer falls back to the full state") {
  replica_store a(na, store_options{.max_buffered_deltas = 4});
  a.add_peer(nb);
  a.add_peer(nc);
  for (int i = 0; i < 3; ++i) {
    REQUIRE(a.set_add(A("s"), term(i)));
    a.seal();
    (void)a.sync_to(nc);
  }
  a.handle_ack(nc, a.seq());
  CHECK_FALSE(a.sync_to(nb)->msg.full_state);
  for (int i = 3; i < 10; ++i) {
    REQUIRE(a.set_add(A("s"), term(i)));
    a.seal();
    (void)a.sync_to(nc);
  }
  CHECK(a.seq() == 10);
  CHECK(a.buffered() == 4);
  CHECK(a.sync_to(nb)->msg.full_state);  // b's interval starts at 0, which is gone
  CHECK(a.sync_to(nc)->msg.full_state);  // c acked 3, but D holds 6..9 now
  a.handle_ack(nc, 8);
  auto to_c = a.sync_to(nc);
  CHECK_FALSE(to_c->msg.full_state);  // 8 and 9 are still buffered
  CHECK(to_c->msg.seq == 10);
  CHECK(a.buffered() == 4);  // b holds them: it has acked nothing
}

TEST_CASE("anti-entropy: the buffer stays within a few times the state's size") {
  replica_store a(na);
  a.add_peer(nb);  // never acks
  for (int i = 0; i < 1000; ++i) {
    REQUIRE(a.counter_add(A("n"), 1));
    (void)a.sync();
  }
  CHECK(a.buffered() < 1000);  // the state is one counter entry: the intervals outweigh it
  CHECK(a.sync_to(nb)->msg.full_state);
}

TEST_CASE("a name created with two types: the type that sorts first wins on both replicas") {
  replica_store a(na), b(nb, store_options{.max_clock_offset_ms = 1000});
  a.add_peer(nb);
  b.add_peer(na);
  REQUIRE(a.set_add(A("x"), term(1)));   // aw_or_set
  REQUIRE(b.counter_add(A("x"), 1));     // pn_counter: loses (aw_or_set < pn_counter)
  auto from_a = a.sync();
  auto from_b = b.sync();
  auto rep_b = b.handle_sync(na, from_a[0].msg, 0);
  REQUIRE(rep_b.conflicts.size() == 1);
  CHECK(rep_b.conflicts[0].ours == crdt_type::pn_counter);
  CHECK(rep_b.conflicts[0].theirs == crdt_type::aw_or_set);
  CHECK(rep_b.conflicts[0].replaced);
  CHECK(rep_b.changed);
  auto rep_a = a.handle_sync(nb, from_b[0].msg, 0);
  REQUIRE(rep_a.conflicts.size() == 1);
  CHECK_FALSE(rep_a.conflicts[0].replaced);
  CHECK_FALSE(rep_a.changed);
  CHECK(str(*a.value(A("x"))) == "[1]");
  CHECK(str(*b.value(A("x"))) == "[1]");
  CHECK(b.counter_add(A("x"), 1).fail().type == crdt_type::aw_or_set);
  // a sends its whole object again, so that b holds all of it
  a.handle_ack(nb, rep_b.ack.seq);
  auto again = a.sync();
  REQUIRE(again.size() == 1);
  CHECK(again[0].msg.group.at(A("x")) == a.state().at(A("x")));
}

TEST_CASE("a far-ahead timestamp is reported, merged, and not taken into the clock") {
  replica_store a(na), b(nb, store_options{.max_clock_offset_ms = 1000});
  REQUIRE(a.register_set(A("r"), term(1), 10'000));
  auto rep = b.handle_sync(na, sync_message{false, 2, *a.register_set(A("r"), term(2), 10'000)}, 0);
  CHECK(rep.changed);
  REQUIRE(rep.far_ahead);
  CHECK(rep.ahead_ms == 10'000);
  CHECK(b.clock().last().physical_ms < 10'000);
  CHECK(*b.value(A("r")) == term(2));
}

TEST_CASE("restore: a state read back replaces ours and goes out whole to every peer") {
  replica_store a(na);
  REQUIRE(a.map_put(A("m"), A("k"), term(1), 5'000));
  replica_store b(nb, store_options{.writer = atom("b@h#2")});
  b.add_peer(na);
  b.restore(a.state(), 100);
  CHECK(b.state() == a.state());
  CHECK(b.clock().last().physical_ms >= 5'000);  // never behind what it stamped before
  auto out = b.sync();
  REQUIRE(out.size() == 1);
  CHECK(out[0].msg.full_state);
}

namespace {

// Three stores talking through the fake network in encoded terms, each calling sync() every 5 ms.
struct cluster {
  std::vector<atom> ids{na, nb, nc};
  std::vector<replica_store> stores;
  cnode::test::sim_network<int, term> net;
  std::int64_t now = 0;
  int malformed = 0;
  int full_states = 0;  // full-state messages sent
  store_options opts;
  // What each replica last wrote to its "disk": its state and writer id, taken before every send (the service's
  // rule: nothing leaves a replica that its snapshot does not hold).
  std::vector<std::pair<delta_group, atom>> snapshots;
  int incarnations = 0;
  std::int64_t expected_ops = 0;  // every replica adds 1 to "ops" with each operation; crashes lose some (crash())

  static std::uint64_t ops_of(const delta_group& g, atom writer) {
    auto it = g.find(A("ops"));
    if (it == g.end()) return 0;
    const auto& e = std::get<pn_counter>(it->second).entries;
    auto w = e.find(writer);
    return w == e.end() ? 0 : w->second.p;
  }

  cluster(std::uint64_t seed, store_options o) : net(seed), opts(o) {
    for (auto id : ids) {
      stores.emplace_back(id, opts);
      snapshots.emplace_back(delta_group{}, id);
    }
    for (auto& s : stores)
      for (auto id : ids) s.add_peer(id);
  }

  // Replica i crashes: what was in flight to or from it is lost. It comes back from its snapshot with the same
  // writer id, or empty with a fresh one (as the service does without --data-dir); the others are told it restarted
  // (the service's hello with a new incarnation) and send it everything.
  void crash(int i, bool from_snapshot) {
    net.drop_endpoint(i);
    const auto ui = static_cast<std::size_t>(i);
    store_options o = opts;
    o.writer = from_snapshot ? snapshots[ui].second : atom(str(term(ids[ui])) + "#" + std::to_string(++incarnations));
    // The oracle: of this replica's own increments of "ops", what is neither on its disk nor at a peer is lost.
    const atom w = stores[ui].writer();
    std::uint64_t kept = from_snapshot ? ops_of(snapshots[ui].first, w) : 0;
    for (std::size_t j = 0; j < stores.size(); ++j)
      if (j != ui) kept = std::max(kept, ops_of(stores[j].state(), w));
    expected_ops -= static_cast<std::int64_t>(ops_of(stores[ui].state(), w) - kept);
    stores[ui] = replica_store(ids[ui], o);
    for (auto id : ids) stores[ui].add_peer(id);
    if (from_snapshot) stores[ui].restore(snapshots[ui].first, now);
    snapshots[ui] = {stores[ui].state(), stores[ui].writer()};
    for (std::size_t j = 0; j < stores.size(); ++j)
      if (j != ui) stores[j].reset_peer(ids[ui]);
  }
  int index(atom id) const { return static_cast<int>(std::find(ids.begin(), ids.end(), id) - ids.begin()); }

  void random_op(int i) {
    auto& rng = net.rng();
    auto& s = stores[static_cast<std::size_t>(i)];
    REQUIRE(s.counter_add(A("ops"), 1));
    ++expected_ops;
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
        for (auto& out : stores[static_cast<std::size_t>(i)].sync(now)) {
          snapshots[static_cast<std::size_t>(i)] = {stores[static_cast<std::size_t>(i)].state(),
                                                    stores[static_cast<std::size_t>(i)].writer()};
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
      if (!s.idle()) return false;
    return true;
  }
};

int simulate(std::uint64_t seed, store_options opts, int* full_states = nullptr, bool crashes = false) {
  INFO("seed=" << seed << " (replay: CNODE_SEED=" << seed << ")");
  cluster c(seed, opts);
  c.net.set_faults({.drop = 0.2, .duplicate = 0.1, .min_delay_ms = 1, .max_delay_ms = 25});  // messages overtake
  for (int i = 0; i < 300; ++i) c.step(true);
  c.net.partition({0}, {0, 1, 2});  // a@h alone on one side
  for (int i = 0; i < 300; ++i) {
    c.step(true);
    // c@h crashes twice while a@h is cut off: once losing everything, once back from its snapshot
    if (crashes && i == 100) c.crash(2, false);
    if (crashes && i == 200) c.crash(2, true);
  }
  c.net.heal();
  for (int i = 0; i < 200; ++i) c.step(true);
  int rounds = 0;
  while (!(c.converged() && c.quiet()) && rounds < 20'000) {
    c.step(false);
    ++rounds;
  }
  CHECK(c.malformed == 0);
  REQUIRE(c.converged());
  CHECK(*c.stores[0].value(A("ops")) == term(c.expected_ops));  // no write lost but what crashes lost
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

TEST_CASE("simulation: a replica that crashes (losing its state, or back from its snapshot) converges with the rest") {
  int worst = 0;
  for (auto seed : seeds(9700, 20)) worst = std::max(worst, simulate(seed, store_options{}, nullptr, true));
  // As the service runs it: a peer that has not acked waits for its ack, or retransmit_ms.
  for (auto seed : seeds(9800, 20))
    worst = std::max(worst, simulate(seed, store_options{.retransmit_ms = 30}, nullptr, true));
  MESSAGE("converged at most " << worst << " simulated ms after the last operation");
}

TEST_CASE("simulation: with a small delta buffer the lagging replica is brought back by full states") {
  int worst = 0;
  int full = 0;
  for (auto seed : seeds(9500, 15)) worst = std::max(worst, simulate(seed, store_options{.max_buffered_deltas = 8}, &full));
  CHECK(full > 0);
  MESSAGE("converged at most " << worst << " simulated ms after the last operation");
}
