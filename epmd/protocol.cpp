#include "epmd/protocol.hpp"

#include <charconv>

#include <fmt/format.h>

namespace cnode::epmd {

namespace {

void put_u16(bytes& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}

std::uint16_t get_u16(byte_view b, std::size_t at) {
  return static_cast<std::uint16_t>((b[at] << 8) | b[at + 1]);
}

std::uint32_t get_u32(byte_view b, std::size_t at) {
  return (std::uint32_t{b[at]} << 24) | (std::uint32_t{b[at + 1]} << 16) | (std::uint32_t{b[at + 2]} << 8) |
         std::uint32_t{b[at + 3]};
}

void put_string(bytes& out, std::string_view s) { out.insert(out.end(), s.begin(), s.end()); }

std::string to_string(byte_view b) { return std::string(b.begin(), b.end()); }

// Wraps a payload in its 2-byte length prefix.
bytes packet(bytes payload) {
  bytes out;
  out.reserve(payload.size() + 2);
  put_u16(out, static_cast<std::uint16_t>(payload.size()));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

request_parse fail(error e, std::size_t offset, std::string detail) {
  request_parse r;
  r.ec = e;
  r.offset = offset;
  r.detail = std::move(detail);
  return r;
}

request_parse ok(request r) {
  request_parse p;
  p.value = std::move(r);
  return p;
}

}  // namespace

int utf8_length(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  std::size_t left = s.size();
  int chars = 0;
  auto cont = [](unsigned char c) { return (c & 0xC0) == 0x80; };
  while (left) {
    unsigned char c = *p;
    std::size_t n;
    if ((c & 0x80) == 0) {
      n = 1;
    } else if ((c & 0xE0) == 0xC0) {
      if (left < 2 || !cont(p[1]) || c < 0xC2) return -1;  // C0/C1 would be overlong
      n = 2;
    } else if ((c & 0xF0) == 0xE0) {
      if (left < 3 || !cont(p[1]) || !cont(p[2]) || (c == 0xE0 && p[1] < 0xA0)) return -1;
      if ((c & 0x0F) == 0x0D && (p[1] & 0x20) != 0) return -1;  // UTF-16 surrogates
      n = 3;
    } else if ((c & 0xF8) == 0xF0) {
      if (left < 4 || !cont(p[1]) || !cont(p[2]) || !cont(p[3]) || (c == 0xF0 && p[1] < 0x90)) return -1;
      if ((c & 0x07) > 4 || ((c & 0x07) == 4 && (p[1] & 0x3F) > 0x0F)) return -1;  // above U+10FFFF
      n = 4;
    } else {
      return -1;
    }
    p += n;
    left -= n;
    ++chars;
  }
  return chars;
}

bytes encode_request(const request& r) {
  bytes payload;
  std::visit(
      [&](const auto& req) {
        using T = std::decay_t<decltype(req)>;
        if constexpr (std::is_same_v<T, alive2_request>) {
          const node_info& n = req.node;
          payload.push_back(tag::alive2_req);
          put_u16(payload, n.port);
          payload.push_back(n.type);
          payload.push_back(n.protocol);
          put_u16(payload, n.highest_version);
          put_u16(payload, n.lowest_version);
          put_u16(payload, static_cast<std::uint16_t>(n.name.size()));
          put_string(payload, n.name);
          put_u16(payload, static_cast<std::uint16_t>(n.extra.size()));
          put_string(payload, n.extra);
        } else if constexpr (std::is_same_v<T, port_please2_request>) {
          payload.push_back(tag::port_please2_req);
          put_string(payload, req.name);
        } else if constexpr (std::is_same_v<T, names_request>) {
          payload.push_back(tag::names_req);
        } else if constexpr (std::is_same_v<T, dump_request>) {
          payload.push_back(tag::dump_req);
        } else if constexpr (std::is_same_v<T, kill_request>) {
          payload.push_back(tag::kill_req);
        } else {
          payload.push_back(tag::stop_req);
          put_string(payload, req.name);
        }
      },
      r);
  return packet(std::move(payload));
}

frame_check check_frame(byte_view received) {
  frame_check f;
  if (received.size() < 2) return f;
  std::size_t length = get_u16(received, 0);
  if (length == 0 || length > max_request_payload) {
    f.status = frame_check::state::failed;
    f.ec = error::invalid_packet_size;
    return f;
  }
  f.packet_size = length + 2;
  if (received.size() > f.packet_size) {
    // epmd reads up to its buffer size before it knows the length; extra bytes in that read end the connection.
    f.status = frame_check::state::failed;
    f.ec = error::bytes_after_packet;
  } else if (received.size() == f.packet_size) {
    f.status = frame_check::state::complete;
  }
  return f;
}

request_parse parse_request(byte_view payload) {
  if (payload.empty()) return fail(error::request_too_short, 0, "empty request");
  const std::size_t size = payload.size();
  switch (payload[0]) {
    case tag::alive2_req: {
      // epmd_srv.c do_request: "at least one character for the node name" is its comment, but the test is
      // bsize <= 13, so a 0-length name followed by a spare byte is accepted (and is, by the real epmd).
      if (size <= 13) return fail(error::request_too_short, size, fmt::format("ALIVE2_REQ of {} bytes", size));
      node_info n;
      n.port = get_u16(payload, 1);
      n.type = payload[3];
      n.protocol = payload[4];
      n.highest_version = get_u16(payload, 5);
      n.lowest_version = get_u16(payload, 7);
      std::size_t nlen = get_u16(payload, 9);
      if (nlen + 13 > size)
        return fail(error::name_size_error, 9, fmt::format("Nlen {} in a {}-byte ALIVE2_REQ", nlen, size));
      std::size_t elen = get_u16(payload, 11 + nlen);
      if (elen + nlen + 13 > size)
        return fail(error::extra_size_error, 11 + nlen,
                    fmt::format("Elen {} in a {}-byte ALIVE2_REQ", elen, size));
      for (std::size_t i = 11; i < 11 + nlen; ++i)
        if (payload[i] == 0) return fail(error::name_contains_nul, i, "NUL in ALIVE2_REQ node name");
      n.name = to_string(payload.subspan(11, nlen));
      n.extra = to_string(payload.subspan(13 + nlen, elen));
      return ok(alive2_request{std::move(n)});
    }
    case tag::port_please2_req: {
      std::size_t end = size;
      if (payload[end - 1] == 0) --end;  // old clients sent the name NUL-terminated
      if (end <= 1) return fail(error::request_too_short, end, "PORT_PLEASE2_REQ without a name");
      for (std::size_t i = 1; i < end; ++i)
        if (payload[i] == 0) return fail(error::name_contains_nul, i, "NUL in PORT_PLEASE2_REQ node name");
      std::string name = to_string(payload.subspan(1, end - 1));
      int chars = utf8_length(name);
      if (chars < 1 || chars > static_cast<int>(max_name_chars))
        return fail(error::invalid_node_name, 1, "PORT_PLEASE2_REQ name is not 1..255 UTF-8 characters");
      return ok(port_please2_request{std::move(name)});
    }
    case tag::names_req:
      return ok(names_request{});
    case tag::dump_req:
      return ok(dump_request{});
    case tag::kill_req:
      return ok(kill_request{});
    case tag::stop_req: {
      // epmd treats the rest as a C string; the server checks for an empty name only after its permission
      // checks, as epmd does, so an empty name parses here.
      std::size_t end = 1;
      while (end < size && payload[end] != 0) ++end;
      return ok(stop_request{to_string(payload.subspan(1, end - 1))});
    }
    default:
      return fail(error::unknown_request, 0, fmt::format("unknown request tag {}", payload[0]));
  }
}

std::optional<error> validate_registration(const node_info& node) {
  if (node.name.size() > max_name_bytes) return error::name_too_long;
  int chars = utf8_length(node.name);
  if (chars > static_cast<int>(max_name_chars)) return error::name_too_long;
  if (chars < 0) return error::invalid_name_encoding;
  if (node.extra.size() > max_extra_bytes) return error::extra_too_long;
  return std::nullopt;
}

bytes encode_alive2_response(bool ok, std::uint32_t creation, bool extended) {
  bytes out;
  out.push_back(extended ? tag::alive2_x_resp : tag::alive2_resp);
  out.push_back(ok ? 0 : 1);
  if (extended) {
    append_u32(out, creation);
  } else {
    put_u16(out, static_cast<std::uint16_t>(creation));
  }
  return out;
}

bytes encode_port2_response(const node_info& n) {
  bytes out;
  out.reserve(14 + n.name.size() + n.extra.size());
  out.push_back(tag::port2_resp);
  out.push_back(0);
  put_u16(out, n.port);
  out.push_back(n.type);
  out.push_back(n.protocol);
  put_u16(out, n.highest_version);
  put_u16(out, n.lowest_version);
  put_u16(out, static_cast<std::uint16_t>(n.name.size()));
  put_string(out, n.name);
  put_u16(out, static_cast<std::uint16_t>(n.extra.size()));
  put_string(out, n.extra);
  return out;
}

bytes encode_port2_not_found() { return bytes{tag::port2_resp, 1}; }

void append_u32(bytes& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
}

void append_names_line(bytes& out, std::string_view name, std::uint16_t port) {
  put_string(out, "name ");
  put_string(out, name);
  fmt::format_to(std::back_inserter(out), " at port {}\n", port);
}

// DUMP lines end in "\n" followed by the C string's terminating NUL: epmd sends len = snprintf result + 1.
void append_dump_active_line(bytes& out, std::string_view name, std::uint16_t port, int fd) {
  put_string(out, "active name     <");
  put_string(out, name);
  fmt::format_to(std::back_inserter(out), "> at port {}, fd = {}\n", port, fd);
  out.push_back(0);
}

void append_dump_unused_line(bytes& out, std::string_view name, std::uint16_t port, int fd) {
  put_string(out, "old/unused name <");
  put_string(out, name);
  fmt::format_to(std::back_inserter(out), ">, port = {}, fd = {} \n", port, fd);
  out.push_back(0);
}

alive2_parse parse_alive2_response(byte_view b) {
  alive2_parse p;
  if (b.empty()) return p;
  if (b[0] == tag::alive2_x_resp) {
    if (b.size() < 6) return p;
    p.value = {true, b[1], get_u32(b, 2)};
  } else if (b[0] == tag::alive2_resp) {
    if (b.size() < 4) return p;
    p.value = {false, b[1], get_u16(b, 2)};
  } else {
    p.state = parse_state::failed;
    p.ec = error::unexpected_response;
    return p;
  }
  p.state = parse_state::done;
  return p;
}

port2_parse parse_port2_response(byte_view b) {
  port2_parse p;
  if (b.empty()) return p;
  if (b[0] != tag::port2_resp) {
    p.state = parse_state::failed;
    p.ec = error::unexpected_response;
    return p;
  }
  if (b.size() < 2) return p;
  p.value.result = b[1];
  if (b[1] != 0) {
    p.state = parse_state::done;
    return p;
  }
  if (b.size() < 12) return p;
  node_info& n = p.value.node;
  n.port = get_u16(b, 2);
  n.type = b[4];
  n.protocol = b[5];
  n.highest_version = get_u16(b, 6);
  n.lowest_version = get_u16(b, 8);
  std::size_t nlen = get_u16(b, 10);
  if (b.size() < 12 + nlen + 2) return p;
  std::size_t elen = get_u16(b, 12 + nlen);
  if (b.size() < 14 + nlen + elen) return p;
  n.name = to_string(b.subspan(12, nlen));
  n.extra = to_string(b.subspan(14 + nlen, elen));
  p.state = parse_state::done;
  return p;
}

names_parse parse_names_response(byte_view all) {
  names_parse p;
  if (all.size() < 4) {
    p.ec = error::truncated_response;
    return p;
  }
  names_response r;
  r.epmd_port = get_u32(all, 0);
  std::string_view text(reinterpret_cast<const char*>(all.data()) + 4, all.size() - 4);
  while (!text.empty()) {
    std::size_t eol = text.find('\n');
    if (eol == std::string_view::npos) {
      p.ec = error::truncated_response;
      return p;
    }
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol + 1);
    // "name ~ts at port ~p": the name may itself contain " at port ", so split at the last one.
    constexpr std::string_view prefix = "name ", middle = " at port ";
    std::size_t at = line.rfind(middle);
    unsigned port = 0;
    if (!line.starts_with(prefix) || at == std::string_view::npos || at < prefix.size()) {
      p.ec = error::malformed_response;
      return p;
    }
    std::string_view digits = line.substr(at + middle.size());
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (ec != std::errc{} || ptr != digits.data() + digits.size() || digits.empty() || port > 65535) {
      p.ec = error::malformed_response;
      return p;
    }
    r.nodes.push_back({std::string(line.substr(prefix.size(), at - prefix.size())), static_cast<std::uint16_t>(port)});
  }
  p.value = std::move(r);
  return p;
}

}  // namespace cnode::epmd
