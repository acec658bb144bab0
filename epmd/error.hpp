// Errors of the EPMD layer: request/response codec errors (bytes from the network) and client outcomes.
// Pattern: Boost.Beast's http/error.hpp — an enum, its own category, is_error_code_enum, make_error_code.
#pragma once

#include <string>
#include <system_error>

#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

namespace cnode::epmd {

enum class error {
  // Framing of requests (server side). epmd_srv.c do_read: a length of 0 or one that does not fit its buffer.
  invalid_packet_size = 1,
  bytes_after_packet,        // more bytes arrived than the length prefix announced
  // Request payloads (server side).
  unknown_request,           // first byte is not a request epmd knows ("got garbage")
  request_too_short,         // e.g. ALIVE2_REQ of 13 bytes or less, PORT_PLEASE2_REQ without a name
  name_size_error,           // ALIVE2_REQ: Nlen runs past the packet
  extra_size_error,          // ALIVE2_REQ: Elen runs past the packet
  name_contains_nul,         // a node name with a 0 byte
  invalid_node_name,         // PORT_PLEASE2_REQ: not UTF-8 or not 1..255 characters
  // Registration refusals (server side; answered with Result = 1, creation 99, as epmd does).
  name_too_long,
  invalid_name_encoding,
  extra_too_long,
  name_in_use,
  // Responses (client side).
  unexpected_response,       // a tag that does not answer the request we sent
  truncated_response,        // the connection closed in the middle of a response
  malformed_response,        // a response whose fields contradict each other or its text form
  registration_refused,      // ALIVE2 result != 0
  node_not_found,            // PORT2_RESP result != 0
  // Client environment.
  no_epmd,                   // nothing answers at host:port
  timeout,
  resolve_failed,
  invalid_argument,          // e.g. a node name without '@', or an alive name that is empty
};

class error_category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "cnode.epmd"; }
  std::string message(int ev) const override;
};

const boost::system::error_category& epmd_category() noexcept;

inline boost::system::error_code make_error_code(error e) noexcept {
  return {static_cast<int>(e), epmd_category()};
}

// A failure with the sentence that says what happened ("name cnode already registered at 127.0.0.1:4369").
struct failure {
  boost::system::error_code code;
  std::string message;
};

// Thrown by the throwing convenience overloads; what() is the full sentence.
class epmd_exception : public boost::system::system_error {
 public:
  explicit epmd_exception(failure f) : boost::system::system_error(f.code, f.message), failure_(std::move(f)) {}
  const failure& details() const noexcept { return failure_; }

 private:
  failure failure_;
};

}  // namespace cnode::epmd

namespace boost::system {
template <>
struct is_error_code_enum<cnode::epmd::error> : std::true_type {};
}  // namespace boost::system
