// Deltas, states and the anti-entropy messages as terms, so that they travel over Erlang distribution (and an
// Elixir node can read them). Decoding is total: any term gives an object or error::malformed, never a crash, and
// what it accepts satisfies the types' invariants (dots >= 1, every stored dot in its context, no empty entries).
//
//   dot            {Replica :: atom(), N :: pos_integer()}
//   context        {[{Replica, Max}], [Dot | {Replica, First, Last}]}   version vector, dot cloud (runs as ranges)
//   timestamp      {PhysicalMs :: integer(), Logical :: non_neg_integer(), Node :: atom()}
//   pn_counter     {pn_counter, [{Replica, P, N}]}
//   aw_or_set      {aw_or_set, [{Element, [Dot]}], Context}
//   lww_register   {lww_register, undefined | {Timestamp, Value}}
//   aw_lww_map     {aw_lww_map, [{Key, [{Dot, Timestamp, Value}]}], Context}
//   group          [{Name, Object}]
//   sync message   {crdt_sync, From :: atom(), delta | state, Seq, Group}
//   ack            {crdt_ack, From :: atom(), Seq}
#pragma once

#include <variant>

#include "crdt/store.hpp"

namespace cnode::crdt {

term encode(const dot& d);
term encode(const causal_context& c);
term encode(const hlc_timestamp& ts);
term encode(const object& o);
term encode(const delta_group& g);
term encode_sync(replica_id from, const sync_message& m);
term encode_ack(replica_id from, std::uint64_t seq);

result<dot> decode_dot(const term& t);
result<causal_context> decode_context(const term& t);
result<hlc_timestamp> decode_timestamp(const term& t);
result<object> decode_object(const term& t);
result<delta_group> decode_group(const term& t);

struct inbound_sync {
  replica_id from;
  sync_message msg;
};
struct inbound_ack {
  replica_id from;
  std::uint64_t seq = 0;
};
using inbound = std::variant<inbound_sync, inbound_ack>;
result<inbound> decode_message(const term& t);

}  // namespace cnode::crdt
