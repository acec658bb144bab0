#include "epmd/error.hpp"

namespace cnode::epmd {

std::string error_category::message(int ev) const {
  switch (static_cast<error>(ev)) {
    case error::invalid_packet_size: return "invalid EPMD packet size";
    case error::bytes_after_packet: return "more bytes than the EPMD packet length announced";
    case error::unknown_request: return "unknown EPMD request";
    case error::request_too_short: return "EPMD request too short";
    case error::name_size_error: return "node name length runs past the ALIVE2_REQ packet";
    case error::extra_size_error: return "extra length runs past the ALIVE2_REQ packet";
    case error::name_contains_nul: return "node name contains a NUL byte";
    case error::invalid_node_name: return "invalid node name";
    case error::name_too_long: return "node name too long";
    case error::invalid_name_encoding: return "node name is not valid UTF-8";
    case error::extra_too_long: return "extra data too long";
    case error::name_in_use: return "node name already registered";
    case error::unexpected_response: return "unexpected EPMD response";
    case error::truncated_response: return "EPMD closed the connection in the middle of a response";
    case error::malformed_response: return "malformed EPMD response";
    case error::registration_refused: return "EPMD refused the registration";
    case error::node_not_found: return "node not registered in EPMD";
    case error::no_epmd: return "no EPMD answering";
    case error::timeout: return "EPMD request timed out";
    case error::resolve_failed: return "cannot resolve host";
    case error::invalid_argument: return "invalid argument";
  }
  return "unknown cnode.epmd error";
}

const boost::system::error_category& epmd_category() noexcept {
  static const error_category category;
  return category;
}

}  // namespace cnode::epmd
