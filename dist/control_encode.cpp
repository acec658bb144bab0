// Encoding control messages in the pass-through form: 112, 131, Control, [131, Payload]. Control is written as
// SMALL_TUPLE_EXT followed by its elements, without building a tuple term first.
#include <stdexcept>
#include <string>

#include "dist/control.hpp"
#include "etf/codec.hpp"

namespace cnode::dist {
namespace {

constexpr std::uint8_t pass_through = 112;

// The tuple's elements after the op, in wire order, the trace token not yet placed.
struct fields {
  etf::term v[6];
  std::size_t n = 0;
  void add(etf::term t) { v[n++] = std::move(t); }
};

// '' in the Unused slot of SEND and REG_SEND, as erts writes it (dist.c: am_Empty).
etf::term unused() { return etf::term(etf::atom()); }

fields fields_of(const control_body& body) {
  fields f;
  std::visit(
      [&](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, link_msg> || std::is_same_v<T, unlink_msg> ||
                      std::is_same_v<T, group_leader_msg> || std::is_same_v<T, send_sender_msg> ||
                      std::is_same_v<T, payload_exit_msg> || std::is_same_v<T, payload_exit2_msg>) {
          f.add(m.from);
          f.add(m.to);
        } else if constexpr (std::is_same_v<T, send_msg>) {
          f.add(unused());
          f.add(m.to);
        } else if constexpr (std::is_same_v<T, exit_msg> || std::is_same_v<T, exit2_msg>) {
          f.add(m.from);
          f.add(m.to);
          f.add(m.reason);  // the token goes before it (EXIT_TT, EXIT2_TT)
        } else if constexpr (std::is_same_v<T, node_link_msg>) {
        } else if constexpr (std::is_same_v<T, reg_send_msg>) {
          f.add(m.from);
          f.add(unused());
          f.add(etf::term(m.to_name));
        } else if constexpr (std::is_same_v<T, monitor_p_msg> || std::is_same_v<T, demonitor_p_msg>) {
          f.add(m.from);
          f.add(m.to_proc);
          f.add(m.ref);
        } else if constexpr (std::is_same_v<T, monitor_p_exit_msg>) {
          f.add(m.from_proc);
          f.add(m.to_pid);
          f.add(m.ref);
          f.add(m.reason);
        } else if constexpr (std::is_same_v<T, payload_monitor_p_exit_msg>) {
          f.add(m.from_proc);
          f.add(m.to_pid);
          f.add(m.ref);
        } else if constexpr (std::is_same_v<T, spawn_request_msg>) {
          f.add(m.req_id);
          f.add(m.from);
          f.add(m.group_leader);
          f.add(m.mfa);
          f.add(m.opt_list);
        } else if constexpr (std::is_same_v<T, spawn_reply_msg>) {
          f.add(m.req_id);
          f.add(m.to);
          f.add(etf::term(m.flags));
          f.add(m.result);
        } else if constexpr (std::is_same_v<T, alias_send_msg>) {
          f.add(m.from);
          f.add(m.alias);
        } else {
          static_assert(std::is_same_v<T, unlink_id_msg> || std::is_same_v<T, unlink_id_ack_msg>);
          f.add(etf::term(m.id));
          f.add(m.from);
          f.add(m.to);
        }
      },
      body);
  return f;
}

}  // namespace

void encode_control(const control_message& m, std::vector<std::uint8_t>& out, packet_form form) {
  encode_control(m, out, form, nullptr, 0);
}

void encode_control(const control_message& m, std::vector<std::uint8_t>& out, packet_form form,
                    std::vector<etf::external_binary>* externals, std::size_t external_min) {
  encode_control(m, out, form, externals, external_min, nullptr);
}

void encode_control(const control_message& m, std::vector<std::uint8_t>& out, packet_form form,
                    std::vector<etf::external_binary>* externals, std::size_t external_min,
                    etf::atom_ref_table* atom_refs) {
  op base = body_op(m.body);
  op wire = m.wire_op();
  if (m.trace_token && wire == base)
    throw std::invalid_argument(std::string("control message ") + std::string(to_string(base)) +
                                " has no trace token form");
  if (has_payload(base) != m.payload.has_value())
    throw std::invalid_argument(std::string("control message ") + std::string(to_string(base)) +
                                (m.payload ? " takes no payload" : " needs a payload"));

  fields f = fields_of(m.body);
  std::size_t arity = 1 + f.n + (m.trace_token ? 1 : 0);
  // EXIT_TT and EXIT2_TT put the token before the reason; every other _TT form puts it last.
  bool token_before_last = wire == op::exit_tt || wire == op::exit2_tt;

  if (atom_refs) form = packet_form::header;
  const etf::encode_options inner{.utf8_atoms = true, .compression_level = -1, .version = false,
                                  .atom_refs = atom_refs};
  std::size_t mark = out.size();
  const std::size_t ext_mark = externals ? externals->size() : 0;
  try {
    const bool headered = form == packet_form::header;
    if (atom_refs) {
      // No header: the connection writes it when it orders the packet (its output cache decides new or cached).
    } else if (headered) {
      // 131, 68, 0: a normal distribution header without atom cache references.
      out.insert(out.end(), {etf::version_magic, 68, 0});
    } else {
      out.push_back(pass_through);
      out.push_back(etf::version_magic);
    }
    out.push_back(etf::tag::small_tuple);
    out.push_back(static_cast<std::uint8_t>(arity));
    etf::encode(etf::term(static_cast<int>(wire)), out, inner);
    for (std::size_t i = 0; i < f.n; ++i) {
      if (m.trace_token && token_before_last && i + 1 == f.n) etf::encode(*m.trace_token, out, inner);
      etf::encode(f.v[i], out, inner);
    }
    if (m.trace_token && !token_before_last) etf::encode(*m.trace_token, out, inner);
    if (m.payload) {
      if (!headered) out.push_back(etf::version_magic);
      etf::encode_options po = inner;
      po.external_min = external_min;
      po.externals = externals;
      etf::encode(*m.payload, out, po);
    }
  } catch (...) {
    out.resize(mark);  // no half-written packet left behind
    if (atom_refs) atom_refs->clear();
    if (externals) externals->erase(externals->begin() + static_cast<std::ptrdiff_t>(ext_mark), externals->end());
    throw;
  }
}

std::vector<std::uint8_t> encode_control(const control_message& m, packet_form form) {
  std::vector<std::uint8_t> out;
  encode_control(m, out, form);
  return out;
}

}  // namespace cnode::dist
