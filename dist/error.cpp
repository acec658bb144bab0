#include "dist/error.hpp"

#include <string>

namespace cnode::dist {
namespace {

class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "cnode.dist"; }

  std::string message(int ev) const override {
    switch (static_cast<error>(ev)) {
      case error::bad_message: return "malformed or unexpected handshake message";
      case error::bad_node_name: return "invalid node name";
      case error::name_mismatch: return "challenge from another node than the one dialled";
      case error::bad_cookie: return "invalid challenge digest (cookie mismatch)";
      case error::missing_flags: return "peer lacks mandatory distribution flags";
      case error::unexpected_status: return "unexpected handshake status";
      case error::not_allowed: return "connection not allowed";
      case error::nok: return "simultaneous connect: the other connection is kept";
      case error::alive_refused: return "replacement of a live connection refused";
      case error::already_pending: return "a connection to this node is already being replaced";
      case error::setup_timeout: return "handshake step timed out (net_setuptime)";
      case error::connection_closed: return "connection closed by peer";
      case error::tls_failed: return "TLS handshake failed";
      case error::net_tick_timeout: return "net tick timeout: nothing received during net_ticktime";
      case error::disconnected: return "disconnected";
      case error::packet_too_large: return "packet larger than the configured maximum";
      case error::send_timeout: return "write made no progress during net_ticktime";
      case error::handler_failed: return "the packet handler failed";
      case error::cookie_file_access: return "cookie file must be accessible by owner only";
      case error::cookie_file_io: return "cannot read or create the cookie file";
      case error::bad_cookie_characters: return "bad characters in cookie";
      case error::cookie_too_short: return "too short cookie string";
      case error::no_home: return "no home for cookie file";
    }
    return "unknown cnode.dist error";
  }
};

}  // namespace

const std::error_category& dist_category() noexcept {
  static const category instance;
  return instance;
}

std::string_view reason_name(std::error_code ec) noexcept {
  if (ec.category() != dist_category()) return ec ? "connection_error" : "normal";
  switch (static_cast<error>(ec.value())) {
    case error::bad_message: return "bad_message";
    case error::bad_node_name: return "bad_node_name";
    case error::name_mismatch: return "name_mismatch";
    case error::bad_cookie: return "bad_cookie";
    case error::missing_flags: return "check_dflags_failed";  // dist_util.erl:308
    case error::unexpected_status: return "recv_status_failed";
    case error::not_allowed: return "not_allowed";
    case error::nok: return "nok";
    case error::alive_refused: return "alive_refused";
    case error::already_pending: return "already_pending";
    case error::setup_timeout: return "setup_timer_timeout";  // dist_util.erl:1172
    case error::connection_closed: return "connection_closed";
    case error::tls_failed: return "tls_handshake_failed";
    case error::net_tick_timeout: return "net_tick_timeout";
    case error::disconnected: return "disconnected";
    case error::packet_too_large: return "packet_too_large";
    case error::send_timeout: return "send_timeout";
    case error::handler_failed: return "handler_failed";
    case error::cookie_file_access: return "cookie_file_access";
    case error::cookie_file_io: return "cookie_file_io";
    case error::bad_cookie_characters: return "bad_cookie_characters";
    case error::cookie_too_short: return "cookie_too_short";
    case error::no_home: return "no_home";
  }
  return "unknown";
}

}  // namespace cnode::dist
