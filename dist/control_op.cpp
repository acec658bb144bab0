// The op table (names, payload, _TT twins) and the control_error category.
#include <string>

#include "dist/control.hpp"

namespace cnode::dist {

std::string_view to_string(op o) noexcept {
  switch (o) {
    case op::link: return "LINK";
    case op::send: return "SEND";
    case op::exit: return "EXIT";
    case op::unlink: return "UNLINK";
    case op::node_link: return "NODE_LINK";
    case op::reg_send: return "REG_SEND";
    case op::group_leader: return "GROUP_LEADER";
    case op::exit2: return "EXIT2";
    case op::send_tt: return "SEND_TT";
    case op::exit_tt: return "EXIT_TT";
    case op::reg_send_tt: return "REG_SEND_TT";
    case op::exit2_tt: return "EXIT2_TT";
    case op::monitor_p: return "MONITOR_P";
    case op::demonitor_p: return "DEMONITOR_P";
    case op::monitor_p_exit: return "MONITOR_P_EXIT";
    case op::send_sender: return "SEND_SENDER";
    case op::send_sender_tt: return "SEND_SENDER_TT";
    case op::payload_exit: return "PAYLOAD_EXIT";
    case op::payload_exit_tt: return "PAYLOAD_EXIT_TT";
    case op::payload_exit2: return "PAYLOAD_EXIT2";
    case op::payload_exit2_tt: return "PAYLOAD_EXIT2_TT";
    case op::payload_monitor_p_exit: return "PAYLOAD_MONITOR_P_EXIT";
    case op::spawn_request: return "SPAWN_REQUEST";
    case op::spawn_request_tt: return "SPAWN_REQUEST_TT";
    case op::spawn_reply: return "SPAWN_REPLY";
    case op::spawn_reply_tt: return "SPAWN_REPLY_TT";
    case op::alias_send: return "ALIAS_SEND";
    case op::alias_send_tt: return "ALIAS_SEND_TT";
    case op::unlink_id: return "UNLINK_ID";
    case op::unlink_id_ack: return "UNLINK_ID_ACK";
  }
  return "UNKNOWN";
}

std::optional<op> op_from_wire(std::uint8_t v) noexcept {
  // 9-11, 14, 15 and 17 were retired long ago (dist.h keeps no names for them).
  if (v == 0 || v > 36 || (v >= 9 && v <= 11) || v == 14 || v == 15 || v == 17) return std::nullopt;
  return static_cast<op>(v);
}

bool has_payload(op o) noexcept {
  switch (o) {
    case op::send:
    case op::send_tt:
    case op::reg_send:
    case op::reg_send_tt:
    case op::send_sender:
    case op::send_sender_tt:
    case op::payload_exit:
    case op::payload_exit_tt:
    case op::payload_exit2:
    case op::payload_exit2_tt:
    case op::payload_monitor_p_exit:
    case op::spawn_request:
    case op::spawn_request_tt:
    case op::alias_send:
    case op::alias_send_tt:
      return true;
    default:
      return false;
  }
}

std::optional<op> traced(op o) noexcept {
  switch (o) {
    case op::send: return op::send_tt;
    case op::exit: return op::exit_tt;
    case op::reg_send: return op::reg_send_tt;
    case op::exit2: return op::exit2_tt;
    case op::send_sender: return op::send_sender_tt;
    case op::payload_exit: return op::payload_exit_tt;
    case op::payload_exit2: return op::payload_exit2_tt;
    case op::spawn_request: return op::spawn_request_tt;
    case op::spawn_reply: return op::spawn_reply_tt;
    case op::alias_send: return op::alias_send_tt;
    default: return std::nullopt;
  }
}

op body_op(const control_body& b) noexcept {
  // The variant's alternatives are listed in this order in control.hpp.
  static constexpr op by_index[] = {
      op::link,          op::send,           op::exit,           op::unlink,
      op::node_link,     op::reg_send,       op::group_leader,   op::exit2,
      op::monitor_p,     op::demonitor_p,    op::monitor_p_exit, op::send_sender,
      op::payload_exit,  op::payload_exit2,  op::payload_monitor_p_exit,
      op::spawn_request, op::spawn_reply,    op::alias_send,     op::unlink_id,
      op::unlink_id_ack,
  };
  static_assert(std::size(by_index) == std::variant_size_v<control_body>);
  return by_index[b.index()];
}

op control_message::wire_op() const noexcept {
  op base = body_op(body);
  if (trace_token) {
    if (auto t = traced(base)) return *t;
  }
  return base;
}

namespace {

class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "cnode.dist.control"; }

  std::string message(int ev) const override {
    switch (static_cast<control_error>(ev)) {
      case control_error::empty_packet: return "empty packet (a tick is not a control message)";
      case control_error::bad_packet_type: return "packet starts with neither 112 (pass-through) nor 131";
      case control_error::bad_header: return "unknown distribution header tag";
      case control_error::fragments_unsupported: return "fragmented distribution message (FRAGMENTS not advertised)";
      case control_error::truncated: return "packet ends inside the distribution header";
      case control_error::bad_atom_text: return "invalid atom text in the atom cache header";
      case control_error::atom_cache_miss: return "reference to an atom cache entry never set";
      case control_error::missing_version: return "term not preceded by 131 in a pass-through packet";
      case control_error::not_a_tuple: return "control message is not a tuple";
      case control_error::bad_op: return "control tuple does not start with a small integer";
      case control_error::unknown_op: return "unknown control message op";
      case control_error::bad_arity: return "control tuple has the wrong arity for its op";
      case control_error::bad_field: return "control tuple element of the wrong type";
      case control_error::missing_payload: return "control message lacks its payload";
      case control_error::unexpected_payload: return "payload after a control message that takes none";
      case control_error::bad_payload: return "payload of the wrong shape";
      case control_error::trailing_bytes: return "bytes after the payload";
    }
    return "unknown cnode.dist.control error";
  }
};

}  // namespace

const std::error_category& control_category() noexcept {
  static const category instance;
  return instance;
}

}  // namespace cnode::dist
