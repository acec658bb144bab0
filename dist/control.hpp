#pragma once
// The distribution control messages (erl_dist_protocol "Protocol between Connected Nodes", dist.h `enum dop`):
// one typed struct per op, decoded from a packet after the 4-byte length and encoded into one. Sans-I/O.
//
// Decoding never throws on peer bytes: a malformed packet gives a control_error (or, for a malformed term, the
// etf::error) and the byte offset at which it was found. The shape rules are the ones erts applies in
// dist.c:erts_net_message (arity per op, pids where pids are needed, refs where refs are needed), minus the checks
// that need to know which node is local: those belong to the runtime.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <variant>
#include <vector>

#include "etf/atom.hpp"
#include "etf/codec.hpp"
#include "etf/term.hpp"

namespace cnode::dist {

enum class op : std::uint8_t {
  link = 1,
  send = 2,
  exit = 3,
  unlink = 4,
  node_link = 5,
  reg_send = 6,
  group_leader = 7,
  exit2 = 8,
  send_tt = 12,
  exit_tt = 13,
  reg_send_tt = 16,
  exit2_tt = 18,
  monitor_p = 19,
  demonitor_p = 20,
  monitor_p_exit = 21,
  send_sender = 22,
  send_sender_tt = 23,
  payload_exit = 24,
  payload_exit_tt = 25,
  payload_exit2 = 26,
  payload_exit2_tt = 27,
  payload_monitor_p_exit = 28,
  spawn_request = 29,
  spawn_request_tt = 30,
  spawn_reply = 31,
  spawn_reply_tt = 32,
  alias_send = 33,
  alias_send_tt = 34,
  unlink_id = 35,
  unlink_id_ack = 36,
};

// The protocol's name, e.g. "SEND_SENDER_TT"; "UNKNOWN" for a value outside the enum.
std::string_view to_string(op o) noexcept;
// The op for a wire number, if it is one of ours (37, ALTACT_SIG_SEND, is not: nothing before OTP 28 sends it).
std::optional<op> op_from_wire(std::uint8_t v) noexcept;
// Whether a second term (message, exit reason, argument list) follows the control tuple for this op.
bool has_payload(op o) noexcept;
// The _TT twin of an op, or nullopt for ops that carry no trace token (LINK, MONITOR_P, UNLINK_ID, ...).
std::optional<op> traced(op o) noexcept;

// One struct per op; field names as in erl_dist_protocol. Pids, refs, names and reasons stay etf::term so that the
// runtime sees exactly what came off the wire; the decoder has already checked their types. Equality is =:= on
// every field.
#define CNODE_DIST_EQ(T) bool operator==(const T&) const = default
// {1, FromPid, ToPid}
struct link_msg { etf::term from, to; CNODE_DIST_EQ(link_msg); };
// {2, '', ToPid} + Message
struct send_msg { etf::term to; CNODE_DIST_EQ(send_msg); };
// {3, FromPid, ToPid, Reason}
struct exit_msg { etf::term from, to, reason; CNODE_DIST_EQ(exit_msg); };
// {4, FromPid, ToPid}: the old link protocol; OTP 25 still sends it to peers without DFLAG_UNLINK_ID
struct unlink_msg { etf::term from, to; CNODE_DIST_EQ(unlink_msg); };
// {5}
struct node_link_msg { CNODE_DIST_EQ(node_link_msg); };
// {6, FromPid, '', ToName} + Message
struct reg_send_msg { etf::term from; etf::atom to_name; CNODE_DIST_EQ(reg_send_msg); };
// {7, FromPid, ToPid}: FromPid becomes ToPid's group leader
struct group_leader_msg { etf::term from, to; CNODE_DIST_EQ(group_leader_msg); };
// {8, FromPid, ToPid, Reason}
struct exit2_msg { etf::term from, to, reason; CNODE_DIST_EQ(exit2_msg); };
// {19, FromPid, ToProc, Ref}: ToProc is a pid or a registered name (atom)
struct monitor_p_msg { etf::term from, to_proc, ref; CNODE_DIST_EQ(monitor_p_msg); };
// {20, FromPid, ToProc, Ref}
struct demonitor_p_msg { etf::term from, to_proc, ref; CNODE_DIST_EQ(demonitor_p_msg); };
// {21, FromProc, ToPid, Ref, Reason}: FromProc is a pid or a name
struct monitor_p_exit_msg { etf::term from_proc, to_pid, ref, reason; CNODE_DIST_EQ(monitor_p_exit_msg); };
// {22, FromPid, ToPid} + Message
struct send_sender_msg { etf::term from, to; CNODE_DIST_EQ(send_sender_msg); };
// {24, FromPid, ToPid} + Reason
struct payload_exit_msg { etf::term from, to; CNODE_DIST_EQ(payload_exit_msg); };
// {26, FromPid, ToPid} + Reason
struct payload_exit2_msg { etf::term from, to; CNODE_DIST_EQ(payload_exit2_msg); };
// {28, FromProc, ToPid, Ref} + Reason
struct payload_monitor_p_exit_msg { etf::term from_proc, to_pid, ref; CNODE_DIST_EQ(payload_monitor_p_exit_msg); };
// {29, ReqId, From, GroupLeader, {Module, Function, Arity}, OptList} + ArgList
struct spawn_request_msg {
  etf::term req_id, from, group_leader, mfa, opt_list;
  CNODE_DIST_EQ(spawn_request_msg);
};
// {31, ReqId, To, Flags, Result}: Result is the new pid, or an atom naming the failure
struct spawn_reply_msg {
  static constexpr std::uint32_t flag_link = 1, flag_monitor = 2;
  etf::term req_id, to;
  std::uint32_t flags = 0;
  etf::term result;
  CNODE_DIST_EQ(spawn_reply_msg);
};
// {33, FromPid, Alias} + Message
struct alias_send_msg { etf::term from, alias; CNODE_DIST_EQ(alias_send_msg); };
// {35, Id, FromPid, ToPid}: Id in 1..2^64-1
struct unlink_id_msg { std::uint64_t id = 0; etf::term from, to; CNODE_DIST_EQ(unlink_id_msg); };
// {36, Id, FromPid, ToPid}
struct unlink_id_ack_msg { std::uint64_t id = 0; etf::term from, to; CNODE_DIST_EQ(unlink_id_ack_msg); };
#undef CNODE_DIST_EQ

// The _TT variants decode into the same structs with the trace token in control_message::trace_token.
using control_body = std::variant<link_msg, send_msg, exit_msg, unlink_msg, node_link_msg, reg_send_msg,
                                  group_leader_msg, exit2_msg, monitor_p_msg, demonitor_p_msg, monitor_p_exit_msg,
                                  send_sender_msg, payload_exit_msg, payload_exit2_msg, payload_monitor_p_exit_msg,
                                  spawn_request_msg, spawn_reply_msg, alias_send_msg, unlink_id_msg,
                                  unlink_id_ack_msg>;

// The untraced op a body encodes to.
op body_op(const control_body& b) noexcept;

struct control_message {
  control_body body;
  std::optional<etf::term> trace_token;  // the _TT forms
  std::optional<etf::term> payload;      // the message / reason / arg list that follows the control tuple
  // The op number it encodes to: the _TT twin when trace_token is set and the op has one.
  op wire_op() const noexcept;
  bool operator==(const control_message&) const = default;
};

// The receiving side of a connection's atom cache (erl_ext_dist "Distribution Header"): 8 segments of 256 entries,
// filled by NewAtomCacheRef entries in headers and read by CachedAtomRef entries in later ones. One per connection;
// it lives as long as the connection (erts resets it only on a new connection). The 2 048 entries (32 KiB) are
// allocated by the first set(): a connection whose peer never uses the cache (cnode's own sending side is off by
// default) costs one pointer. The sending side's cache (atom_out_cache) is the same type.
class atom_cache {
 public:
  static constexpr std::size_t size = 2048;
  atom_cache() = default;
  atom_cache(const atom_cache& o) : entries_(o.entries_ ? std::make_unique<table>(*o.entries_) : nullptr) {}
  atom_cache& operator=(const atom_cache& o) {
    if (this != &o) entries_ = o.entries_ ? std::make_unique<table>(*o.entries_) : nullptr;
    return *this;
  }
  atom_cache(atom_cache&&) noexcept = default;
  atom_cache& operator=(atom_cache&&) noexcept = default;

  const etf::atom* find(std::size_t index) const noexcept {
    return entries_ && index < size && (*entries_)[index] ? &*(*entries_)[index] : nullptr;
  }
  // Throws std::bad_alloc only on the first set of a connection (the table's allocation).
  void set(std::size_t index, etf::atom a) {
    if (index >= size) return;
    if (!entries_) entries_ = std::make_unique<table>();
    (*entries_)[index] = std::move(a);
  }
  void clear() noexcept { entries_.reset(); }
  bool allocated() const noexcept { return entries_ != nullptr; }

 private:
  using table = std::array<std::optional<etf::atom>, size>;
  std::unique_ptr<table> entries_;
};

enum class control_error {
  empty_packet = 1,       // a zero-length payload: that is a tick, not a control message
  bad_packet_type,        // first byte neither 112 (pass-through) nor 131 (distribution header)
  bad_header,             // 131 followed by something other than 68/69/70
  fragments_unsupported,  // 131,69 / 131,70 given to decode_control: fragments go through inbound_reader
  truncated,              // the packet ends inside the header or before the control tuple
  bad_atom_text,          // a NewAtomCacheRef whose text is not a valid atom
  atom_cache_miss,        // a CachedAtomRef to an entry never set (or no cache given)
  missing_version,        // pass-through form: the control term or the payload is not preceded by 131
  not_a_tuple,            // the control term is not a tuple
  bad_op,                 // the tuple's first element is not a small integer
  unknown_op,             // an op number this protocol version does not define
  bad_arity,              // the tuple has the wrong number of elements for its op
  bad_field,              // an element of the wrong type (a non-pid where a pid is required, ...)
  missing_payload,        // the op needs a message/reason/arg list and none follows
  unexpected_payload,     // bytes after the control tuple of an op that takes no payload
  bad_payload,            // a payload of the wrong shape (SPAWN_REQUEST's ArgList must be a proper list)
  trailing_bytes,         // bytes after the payload
};

const std::error_category& control_category() noexcept;
inline std::error_code make_error_code(control_error e) noexcept { return {static_cast<int>(e), control_category()}; }

struct decode_outcome {
  control_message msg;
  // A control_error, or an etf::error for a malformed term (with the term's own offset).
  std::error_code ec;
  // On success: bytes consumed (== len). On failure: offset of the offending byte from the start of the packet.
  std::size_t offset = 0;
  explicit operator bool() const noexcept { return !ec; }
};

// Decodes one packet payload packet[start, start+len) (after the 4-byte length; not a tick): pass-through
// (112, 131, Control, [131, Payload]) or behind a normal distribution header (131, 68, N, Flags, AtomCacheRefs,
// then Control and Payload without 131), resolving atom cache refs through `cache` and updating it with the new
// entries. Fragments (69/70) are refused here: dist/fragment.hpp's inbound_reader reassembles them. Binaries of 64 bytes or more in the payload refer into `packet`.
decode_outcome decode_control(const etf::shared_bytes& packet, std::size_t start, std::size_t len,
                              atom_cache* cache = nullptr);

// Decodes the part after a distribution header, packet[start, start+len): the control term and the payload
// without 131 prefixes, ATOM_CACHE_REF indices resolving through `refs` (inbound_message from inbound_reader).
decode_outcome decode_control_body(const etf::shared_bytes& packet, std::size_t start, std::size_t len,
                                   std::span<const etf::atom> refs);
// The same over bytes that are not kept (a read buffer): every binary of the result is a copy. For small packets,
// where copying the packet into a shared buffer would cost more than copying their binaries.
decode_outcome decode_control_body(std::span<const std::uint8_t> body, std::span<const etf::atom> refs);

// Appends the pass-through encoding (112, 131, Control, [131, Payload]) with UTF-8 atoms: what OTP 25 sends to a
// peer without DIST_HDR_ATOM_CACHE. The message must be well formed: a payload exactly for the ops that take one
// and a trace token only on ops that have a _TT form; anything else throws std::invalid_argument (a programming
// error, not a peer's). Field types are not checked: a runtime that puts an atom where a pid goes gets that atom
// on the wire, and the peer drops the connection.
// packet_form::header writes 131, 68, 0, Control, Payload instead (no 131 before either term): the form a peer
// with DIST_HDR_ATOM_CACHE or FRAGMENTS requires.
enum class packet_form : std::uint8_t { pass_through, header };
void encode_control(const control_message& m, std::vector<std::uint8_t>& out,
                    packet_form form = packet_form::pass_through);
std::vector<std::uint8_t> encode_control(const control_message& m, packet_form form = packet_form::pass_through);
// The same, with the payload's binaries of at least external_min bytes left out of out and listed in *externals
// (etf::encode_options::externals: out with their bytes inserted is the packet encode_control writes).
void encode_control(const control_message& m, std::vector<std::uint8_t>& out, packet_form form,
                    std::vector<etf::external_binary>* externals, std::size_t external_min);
// With atom_refs (cleared by the caller before): the control term and payload only, no header and no 131 prefixes,
// their atoms as ATOM_CACHE_REF into atom_refs->atoms() where the table allows (etf::atom_ref_table). The header
// is written by the connection when it orders the packet (out_packet::refs, atom_out_cache).
void encode_control(const control_message& m, std::vector<std::uint8_t>& out, packet_form form,
                    std::vector<etf::external_binary>* externals, std::size_t external_min,
                    etf::atom_ref_table* atom_refs);

}  // namespace cnode::dist

template <>
struct std::is_error_code_enum<cnode::dist::control_error> : std::true_type {};
