// The EPMD wire protocol, sans I/O: encoders for every request and response, an incremental parser for each
// response the client reads, and the server's request framer and parser. Nothing here touches a socket, and no
// parser reads past the bytes it is given or trusts a length field before checking it against them.
//
// Reference: erts/doc erl_dist_protocol.html ("EPMD Protocol") and, where it is silent, what the OTP 25 `epmd`
// binary does on the wire (epmd_srv.c behaviour: checks, their order, and which failures are answered and which
// just close the connection). The observations are written down in epmd/README.section.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "epmd/error.hpp"

namespace cnode::epmd {

using bytes = std::vector<std::uint8_t>;
using byte_view = std::span<const std::uint8_t>;

inline constexpr std::uint16_t default_port = 4369;

namespace tag {
inline constexpr std::uint8_t alive2_req = 120;      // 'x'
inline constexpr std::uint8_t alive2_x_resp = 118;   // 'v', 32-bit creation (highest version >= 6)
inline constexpr std::uint8_t alive2_resp = 121;     // 'y', 16-bit creation
inline constexpr std::uint8_t port_please2_req = 122;  // 'z'
inline constexpr std::uint8_t port2_resp = 119;      // 'w'
inline constexpr std::uint8_t names_req = 110;       // 'n'
inline constexpr std::uint8_t dump_req = 100;        // 'd'
inline constexpr std::uint8_t kill_req = 107;        // 'k'
inline constexpr std::uint8_t stop_req = 115;        // 's'
}  // namespace tag

enum class node_type : std::uint8_t { hidden = 72, normal = 77 };

// epmd_int.h: MAXSYMLEN = 255*4 bytes, at most 255 characters; INBUF_SIZE = 3*MAXSYMLEN including the 2-byte
// length, and a packet must leave one byte spare, so the largest request payload is 3057 bytes.
inline constexpr std::size_t max_name_bytes = 255 * 4;
inline constexpr std::size_t max_name_chars = 255;
inline constexpr std::size_t max_extra_bytes = 255 * 4;
inline constexpr std::size_t max_request_payload = 3 * 255 * 4 - 3;
// What epmd answers in the creation field of a refused registration.
inline constexpr std::uint32_t refused_creation = 99;

// A registered node as PORT2_RESP describes it (and as the server's registry stores it).
struct node_info {
  std::string name;  // the alive part, without @host
  std::uint16_t port = 0;
  std::uint8_t type = static_cast<std::uint8_t>(node_type::normal);
  std::uint8_t protocol = 0;  // 0 = TCP/IPv4
  std::uint16_t highest_version = 6;
  std::uint16_t lowest_version = 5;
  std::string extra;
  friend bool operator==(const node_info&, const node_info&) = default;
};

// ---- Requests ----------------------------------------------------------------------------------------------------

struct alive2_request {
  node_info node;
};
struct port_please2_request {
  std::string name;
};
struct names_request {};
struct dump_request {};
struct kill_request {};
struct stop_request {
  std::string name;  // up to the first NUL, as epmd reads it
};
using request = std::variant<alive2_request, port_please2_request, names_request, dump_request, kill_request,
                             stop_request>;

// Each returns the whole packet, 2-byte length prefix included.
bytes encode_request(const request& r);

// Server side framing of one request (epmd_srv.c do_read): a 2-byte length, then that many bytes.
struct frame_check {
  enum class state { need_more, complete, failed } status = state::need_more;
  std::size_t packet_size = 0;  // header + payload, when known
  boost::system::error_code ec;
};
frame_check check_frame(byte_view received);

struct request_parse {
  std::optional<request> value;
  boost::system::error_code ec;  // set when value is empty
  std::size_t offset = 0;        // byte offset in the payload where the problem is
  std::string detail;            // one line for the log
};
// payload: the bytes after the length prefix.
request_parse parse_request(byte_view payload);

// Checks that make epmd answer an ALIVE2_REQ with Result = 1 (node_reg2 in epmd_srv.c), in epmd's order.
std::optional<error> validate_registration(const node_info& node);

// Number of characters of a UTF-8 string under epmd's rules (no overlongs, no surrogates, <= U+10FFFF), or -1.
int utf8_length(std::string_view s);

// ---- Responses: encoders (server side) ----------------------------------------------------------------------------

bytes encode_alive2_response(bool ok, std::uint32_t creation, bool extended);
bytes encode_port2_response(const node_info& node);
bytes encode_port2_not_found();
// NAMES_RESP and DUMP_RESP: a 4-byte port header, then one text line a node.
void append_u32(bytes& out, std::uint32_t v);
void append_names_line(bytes& out, std::string_view name, std::uint16_t port);
void append_dump_active_line(bytes& out, std::string_view name, std::uint16_t port, int fd);
void append_dump_unused_line(bytes& out, std::string_view name, std::uint16_t port, int fd);

// ---- Responses: incremental parsers (client side) ----------------------------------------------------------------

enum class parse_state { need_more, done, failed };

struct alive2_response {
  bool extended = true;  // ALIVE2_X_RESP (32-bit creation) or ALIVE2_RESP (16-bit)
  std::uint8_t result = 0;
  std::uint32_t creation = 0;
};
struct alive2_parse {
  parse_state state = parse_state::need_more;
  alive2_response value;
  boost::system::error_code ec;
};
alive2_parse parse_alive2_response(byte_view received);

struct port2_response {
  std::uint8_t result = 0;
  node_info node;  // when result == 0
};
struct port2_parse {
  parse_state state = parse_state::need_more;
  port2_response value;
  boost::system::error_code ec;
};
port2_parse parse_port2_response(byte_view received);

struct name_entry {
  std::string name;
  std::uint16_t port = 0;
  friend bool operator==(const name_entry&, const name_entry&) = default;
};
struct names_response {
  std::uint32_t epmd_port = 0;
  std::vector<name_entry> nodes;
};
struct names_parse {
  std::optional<names_response> value;
  boost::system::error_code ec;
};
// The whole response, read until EPMD closed the connection.
names_parse parse_names_response(byte_view all);

}  // namespace cnode::epmd
