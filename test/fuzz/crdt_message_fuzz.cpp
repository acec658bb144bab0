// libFuzzer target: what another replica may send the `crdt` service, as external-format bytes (the distribution
// decodes a message, the service decodes the term, crdt/codec.hpp). A decoded sync is merged into a store that
// already holds objects of every type under names the input may reuse, an ack is applied; then the store syncs.
// Invariants: no crash; a merged state re-encodes and decodes to itself; merging the same message twice changes
// nothing the second time (the join is idempotent).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "crdt/codec.hpp"
#include "etf/codec.hpp"

using namespace cnode::crdt;
using cnode::etf::atom;

namespace {
[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "crdt_message_fuzz: %s\n", what);
  std::abort();
}

replica_store seeded() {
  replica_store s(atom("a@h"), store_options{.max_buffered_deltas = 16, .max_clock_offset_ms = 1000});
  s.add_peer(atom("b@h"));
  (void)s.counter_add(term(atom("n")), 3);
  (void)s.set_add(term(atom("s")), term(1));
  (void)s.map_put(term(atom("m")), term(1), term(2), 100);
  (void)s.register_set(term(atom("r")), term(1), 100);
  (void)s.sync(100);
  return s;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  cnode::etf::decode_options opts;
  opts.max_inflated_size = std::size_t{16} << 20;
  auto d = cnode::etf::decode(std::span<const std::uint8_t>(data, size), opts);
  if (!d) return 0;
  auto in = decode_message(d.value);
  if (!in) return 0;
  replica_store s = seeded();
  if (auto* a = std::get_if<inbound_ack>(&*in)) {
    s.handle_ack(a->from, a->seq);
  } else {
    const auto& m = std::get<inbound_sync>(*in);
    s.add_peer(m.from);
    (void)s.handle_sync(m.from, m.msg, 200);
    const auto after = s.state();
    auto twice = s.handle_sync(m.from, m.msg, 200);
    if (twice.changed || !(s.state() == after)) fail("merging a message twice changed the state");
    auto back = decode_group(encode(s.state()));
    if (!back || !(*back == s.state())) fail("the merged state does not round-trip");
  }
  for (const auto& out : s.sync(300))
    if (!decode_message(encode_sync(s.self(), out.msg))) fail("a message the store made does not decode");
  return 0;
}
