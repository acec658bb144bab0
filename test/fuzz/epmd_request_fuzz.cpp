// libFuzzer target for the EPMD server's request side and the client's response parsers. The input is read as a
// stream of EPMD packets from a few connections, fed through the same framing, parsing and registry calls the
// server makes; nothing may crash, read out of bounds or break the registry's invariants.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "epmd/protocol.hpp"
#include "epmd/registry.hpp"

using namespace cnode::epmd;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

std::size_t count_lines(const bytes& b) {
  std::size_t n = 0;
  for (std::size_t i = 4; i < b.size(); ++i) n += b[i] == '\n';
  return n;
}

void serve(registry& reg, connection_id conn, const request& req, std::uint64_t now) {
  if (auto* a = std::get_if<alive2_request>(&req)) {
    auto out = reg.register_node(conn, static_cast<int>(conn), a->node, now);
    check(out.ok != out.refusal.has_value());
    bytes resp = encode_alive2_response(out.ok, out.creation, a->node.highest_version >= 6);
    auto p = parse_alive2_response(resp);
    check(p.state == parse_state::done && p.value.result == (out.ok ? 0 : 1));
    if (out.ok) {
      const registered_node* n = reg.find(a->node.name);
      check(n && n->info == a->node);
      bytes pr = encode_port2_response(n->info);
      auto pp = parse_port2_response(pr);
      check(pp.state == parse_state::done && pp.value.node == n->info);
    }
  } else if (auto* p = std::get_if<port_please2_request>(&req)) {
    const registered_node* n = reg.find(p->name);
    bytes resp = n ? encode_port2_response(n->info) : encode_port2_not_found();
    check(parse_port2_response(resp).state == parse_state::done);
  } else if (std::holds_alternative<names_request>(req)) {
    bytes names = reg.names_response(4369);
    check(count_lines(names) >= reg.active_count());  // names may contain '\n' themselves
    (void)parse_names_response(names);
  } else if (std::holds_alternative<dump_request>(req)) {
    (void)reg.dump_response(4369);
  } else if (auto* s = std::get_if<stop_request>(&req)) {
    if (!s->name.empty()) {
      auto conn_of = reg.unregister_name(s->name);
      if (conn_of) check(!reg.find(s->name));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  byte_view all(data, size);

  // The whole input as the first bytes a server reads, and as one payload.
  (void)check_frame(all);
  auto direct = parse_request(all);
  check(direct.value.has_value() != static_cast<bool>(direct.ec));
  check(direct.offset <= size);

  // The whole input as each response the client parses.
  (void)parse_alive2_response(all);
  auto port2 = parse_port2_response(all);
  if (port2.state == parse_state::done && port2.value.result == 0)
    check(port2.value.node.name.size() + port2.value.node.extra.size() + 14 <= size);
  (void)parse_names_response(all);

  // A stream of packets from four connections; a connection byte, then a packet, while the input lasts.
  registry reg(8);
  std::uint64_t now = 1795338296;
  std::size_t at = 0;
  while (at + 1 < size) {
    connection_id conn = data[at] & 3;
    bool close_it = data[at] & 4;
    ++at;
    byte_view rest = all.subspan(at);
    auto frame = check_frame(rest.first(std::min<std::size_t>(rest.size(), max_request_payload + 2)));
    if (frame.status != frame_check::state::complete && frame.packet_size == 0) break;
    std::size_t take = frame.packet_size ? std::min(frame.packet_size, rest.size()) : rest.size();
    if (frame.status == frame_check::state::complete || frame.packet_size <= rest.size()) {
      auto parsed = parse_request(rest.subspan(2, take - 2));
      if (parsed.value) serve(reg, conn, *parsed.value, now++);
    }
    at += take;
    if (close_it) {
      auto name = reg.unregister_connection(conn);
      if (name) check(!reg.find(*name) || reg.find(*name)->connection != conn);
      check(!reg.is_registered_connection(conn));
    }
  }
  std::size_t active = 0;
  reg.for_each_active([&](const registered_node&) { ++active; });
  check(active == reg.active_count());
  check(reg.unused_count() <= 8 + 1 + 4);
  return 0;
}
